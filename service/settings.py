"""The server's settings: one typed record, filled from command-line flags and environment.

Every field is a flag `--field-name` and an environment variable `SERVICE_FIELD_NAME`; the flag
wins over the variable, the variable over the default. `service/__main__.py` builds the parser from
the fields below, so the help text lives here, next to the setting it explains.
"""

from dataclasses import dataclass, field
from pathlib import Path

from service.secrets.sensitive_files import DEFAULT_SENSITIVE_GLOBS

# The checkpoint `make serve` serves when no --model is given.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "default"

ENV_PREFIX = "SERVICE_"


def setting(default, help: str, **argparse_options):
    """A dataclass field that carries its --help text (and argparse options) as metadata."""
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = setting(8000, "TCP port to listen on")
    model: Path = setting(
        DEFAULT_MODEL_DIR,
        "checkpoint directory in Hugging Face format (config.json, model.safetensors, "
        "tokenizer.json); defaults to the bundled checkpoints/default",
    )
    device: str = setting(
        "auto",
        "where the model runs: cuda when available for auto",
        choices=["auto", "cpu", "cuda"],
    )
    dtype: str = setting(
        "auto",
        "weights, activations and KV cache: for auto, bfloat16 on CUDA and on CPUs with bf16 "
        "instructions (AVX512-BF16, AMX), else float32",
        choices=["auto", "float32", "bfloat16", "float16"],
    )
    redis_url: str | None = setting(
        None, "suggestion cache in Redis (redis://host:6379/0); in-process LRU when unset"
    )
    auth_tokens_file: Path | None = setting(
        None, "file of 'TOKEN TENANT' lines; requests need 'Authorization: Bearer TOKEN' when set"
    )
    public_paths: str = setting(
        "/v1/health,/metrics,/openapi.json,/docs,/docs/oauth2-redirect,/redoc",
        "comma-separated paths that need no token when auth is on (a request there without a "
        "valid token is served without reading its body); '' protects all",
    )
    rate_limit_per_s: float = setting(
        0.0,
        "requests a second allowed per tenant (per client address without auth), in bursts of "
        "--rate-limit-burst (0: no limit)",
    )
    rate_limit_burst: int = setting(20, "requests a token may send at once before the rate applies")
    auth_failures_per_minute: int = setting(
        30,
        "requests with a missing or invalid token one client address may send a minute (all at "
        "once, at most), past which its requests get 429 whatever token they carry; 0: no limit",
    )
    cache_ttl_s: float = setting(300.0, "seconds a cached suggestion lives")
    cache_max_entries: int = setting(10_000, "entries of the in-process cache (without Redis)")
    sensitive_files: str = setting(
        ",".join(DEFAULT_SENSITIVE_GLOBS),
        "comma-separated globs of files that get no completion and never reach the model",
    )
    log_prompts: str = setting(
        "off",
        "debug only: 'scrubbed' adds the scrubbed prompt to the request's log line",
        choices=["off", "scrubbed"],
    )
    max_body_bytes: int = setting(1_000_000, "largest request body accepted; larger ones get 413")
    body_timeout_s: float = setting(
        15.0,
        "seconds a client has to send its whole request body once its headers are in; a slower "
        "one gets 408 and its connection is closed (a client trickling bytes holds nothing)",
    )
    kv_cache_mb: int = setting(256, "memory for the paged KV cache, all layers together")
    max_num_seqs: int = setting(32, "sequences decoding at once (continuous batching)")
    max_waiting: int = setting(128, "queued requests past which new ones get 503 + Retry-After")
    prefill_while_decoding: int = setting(
        128,
        "prompt tokens prefilled per step while others decode: lower answers the first of many "
        "cold requests sooner, higher finishes them all sooner (docs/benchmarks.md)",
    )
    num_threads: int | None = setting(None, "torch CPU threads for the model; all cores when unset")
    speculative_tokens: int = setting(
        4, "greedy requests draft up to this many tokens a step from their own context; 0 = off"
    )
    stream_interval_ms: float = setting(
        20.0,
        "a streamed completion's pieces between its first and last go out at most this often "
        "(fewer event-loop wake-ups under load); 0 = after every model step",
    )
    prefix_tokens: int = setting(
        1024, "token budget for the code before the cursor (cut at a line boundary)"
    )
    suffix_tokens: int = setting(
        256, "token budget for the code after the cursor (cut at a line boundary)"
    )
    tabby_prefix_chars: int = setting(
        1536,
        "the Tabby body's prefix is clipped to its last whole lines within this many characters "
        "first, as Tabby's own server does; the token window (--prefix-tokens) then applies",
    )
    tabby_prefix_imports: bool = setting(
        False,
        "where --tabby-prefix-chars drops the file's beginning, its module-level imports (within "
        "a quarter of those characters) go before the kept lines",
    )
    snippet_tokens: int = setting(
        256, "token budget for Tabby's declarations and snippets, rendered as comment lines"
    )
    window_step: float = setting(
        0.25,
        "share of the prefix and suffix budgets typed between two moves of a long file's window "
        "(its start stays put meanwhile, so keystrokes hit the prefix cache)",
    )
    window_sessions: int = setting(
        4096, "editor sessions whose window edges are remembered (least recently used dropped)"
    )
    max_tokens_limit: int = setting(1024, "largest max_tokens / n_predict a request may ask for")
    max_n: int = setting(8, "largest number of choices (n) a request may ask for")
    max_num_beams: int = setting(
        8, "largest beam search a request may ask for (num_beams, or n when n is larger)"
    )
    line_num_beams: int = setting(
        1,
        "greedy one-line completions (stop mode line, sent or chosen by auto) that ask for no "
        "beams get the best of this many, ranked with --line-length-penalty: more exact lines "
        "for several times the CPU latency (docs/training.md, Decoding); 1 = greedy",
    )
    line_length_penalty: float = setting(
        0.5, "length penalty of --line-num-beams' search (sum_logprobs / tokens ** penalty)"
    )
    block_num_beams: int = setting(
        1,
        "greedy code-aware requests of several lines (stop mode block, sent or chosen by auto) "
        "that ask for no beams get the best of this many (length penalty 0.5), the semantic "
        "engine passing over candidates it drops: 4 meets every target of docs/semantic.md for "
        "3.3x the CPU latency; 1 = greedy",
    )
    request_timeout_s: float = setting(
        30.0, "a generation still running after this many seconds is stopped and returned"
    )
    isolate_tenants: bool = setting(
        False,
        "tenants share no KV prefix-cache blocks nor kept prompt beginnings (no tenant can time "
        "another's prompts; each tenant's first keystroke computes its whole prompt); "
        "suggestion-cache entries are per tenant in any case",
    )
    semantic: bool = setting(
        True,
        "the semantic engine (service/semantic): after `expr.` on a known type the completion "
        "starts with a real member, and suggestions are checked and cleaned against the code; "
        "a request's `semantic` field overrides it",
    )
    unsafe_suggestions: str = setting(
        "drop",
        "with the semantic engine on, a suggestion that introduces an unsafe pattern (eval/exec "
        "of input, shell=True on a formatted string, pickle.loads, yaml.load without a safe "
        "loader, SQL built by string formatting, verify=False) is dropped, ranked after the "
        "safe choices ('last'; a one-choice request still shows it), or allowed; each counted "
        "by rule on /metrics",
        choices=["drop", "last", "allow"],
    )
    drain_timeout_s: float = setting(
        10.0,
        "on SIGTERM: readiness 503 at once, requests in flight get this many seconds to finish "
        "before they are stopped with 503 + Retry-After; keep it below the orchestrator's kill "
        "grace (Kubernetes terminationGracePeriodSeconds, 30 s by default)",
    )
    log_level: str = setting(
        "info", "server log level", choices=["critical", "error", "warning", "info", "debug"]
    )

    def __post_init__(self) -> None:
        for name in ("line_num_beams", "block_num_beams"):
            if not 1 <= (beams := getattr(self, name)) <= self.max_num_beams:
                raise ValueError(
                    f"{name} is {beams}: it must be between 1 and max_num_beams "
                    f"({self.max_num_beams})"
                )
        if self.tabby_prefix_chars < 1:
            raise ValueError(
                f"tabby_prefix_chars is {self.tabby_prefix_chars}: it must be at least 1"
            )
        if not 0 < self.window_step <= 0.5:
            raise ValueError(
                f"window_step is {self.window_step}: it must be above 0 and at most 0.5 (a "
                "window that moves further keeps less than half its budget)"
            )

    @property
    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch  # torch is slow to import; only the server needs it, not --help

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        native_bf16 = self.resolved_device == "cuda" or cpu_has_bf16()
        return "bfloat16" if native_bf16 else "float32"


def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively; emulated, bf16 is slower than float32 there."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
