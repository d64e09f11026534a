"""Request and response bodies of the three dialects: Tabby, OpenAI legacy completions, llama.cpp.

Requests are validated strictly (a string where a number belongs is an error, not a guess);
limits that depend on the server's settings (max_tokens, n) are checked in the routes.

Every list (and map) a body can carry has a cap, refused with a 400 that names the field and the
cap: each item costs work on every request or every generated token (20,000 stop strings slowed
every request on the server 3x), and the body size limit alone allows hundreds of thousands.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.semantic.stopping import StopMode

# Caps on what one body may carry (docs/security.md, "Tenants and faults").
MAX_SNIPPETS = 64  # each of Tabby's declarations and snippet lists, llama.cpp's input_extra
MAX_PROMPTS = 64  # an OpenAI prompt list (n x prompts is also held to --max-n)
MAX_OPENAI_STOPS = 4  # OpenAI's own cap
MAX_INFILL_STOPS = 16
MAX_STOP_CHARS = 256  # each stop string is matched against the text after every token
MAX_LOGIT_BIAS = 300  # OpenAI's own cap (the field is refused unless empty in any case)
# Numbers that size work without a setting to check them against get a cap of their own: an
# n_indent of 2**34 once asked for a 16 GiB string of spaces and took the server down.
MAX_INDENT = 256  # columns
MAX_PREDICT_MS = 3_600_000  # an hour; the server's --request-timeout-s cuts a request sooner

StopString = Annotated[str, Field(max_length=MAX_STOP_CHARS)]

SEED = Field(None, ge=0, lt=2**63)
# Beam search (extensions; the `openai` client sends them in `extra_body`): 1 = no beam search.
NUM_BEAMS = Field(1, ge=1)
BEAM_KNOBS = ("length_penalty", "early_stopping", "num_beam_groups", "diversity_penalty")


class Request(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")


# -- Tabby (POST /v1/completions with `segments`) ------------------------------------------------


class Declaration(Request):
    filepath: str
    body: str


class RelevantSnippet(Request):
    filepath: str
    body: str
    score: float | None = None


class TabbySegments(Request):
    prefix: str
    suffix: str | None = None
    filepath: str | None = None
    git_url: str | None = None
    declarations: list[Declaration] | None = Field(None, max_length=MAX_SNIPPETS)
    relevant_snippets_from_changed_files: list[RelevantSnippet] | None = Field(
        None, max_length=MAX_SNIPPETS
    )
    relevant_snippets_from_recently_opened_files: list[RelevantSnippet] | None = Field(
        None, max_length=MAX_SNIPPETS
    )
    clipboard: str | None = None


class TabbyDebugOptions(Request):
    raw_prompt: str | None = None  # sent to the model as is, no template, no window
    return_prompt: bool = False
    return_snippets: bool = False
    disable_retrieval_augmented_code_completion: bool = False


class TabbyCompletionRequest(Request):
    language: str | None = None
    segments: TabbySegments
    user: str | None = None  # also the editor session: a newer request aborts the older one
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = SEED
    mode: str | None = None
    debug_options: TabbyDebugOptions | None = None
    stop_mode: StopMode = "auto"  # our extension; see service/semantic/stopping.py
    num_beams: int = NUM_BEAMS  # our extension: the best beam is the choice
    # Beam scores are sum_logprobs / num_tokens ** length_penalty. `transformers`' 1.0 chose worse
    # lines than greedy on held-out code; 0.5 chose better ones (docs/training.md, "Decoding").
    length_penalty: float = Field(0.5, ge=-10, le=10)
    semantic: bool | None = None  # our extension: None follows the server's --semantic


class TabbyChoice(BaseModel):
    index: int
    text: str


class TabbyDebugData(BaseModel):
    prompt: str | None = None
    snippets: list[RelevantSnippet] | None = None


class TabbyCompletionResponse(BaseModel):
    id: str
    choices: list[TabbyChoice]
    debug_data: TabbyDebugData | None = None


# -- OpenAI legacy completions (POST /v1/completions with `prompt`) ------------------------------


class OpenAICompletionRequest(Request):
    model: str | None = None  # any name is accepted: one model is served
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int | None = Field(16, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)  # absent: 1, or 0 with num_beams
    top_p: float | None = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1)
    stream: bool = False
    logprobs: int | None = None
    echo: bool = False
    stop: str | list[str] | None = None
    presence_penalty: float | None = 0.0
    frequency_penalty: float | None = 0.0
    best_of: int | None = None
    logit_bias: dict[str, float] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    seed: int | None = SEED
    user: str | None = None
    stop_mode: StopMode = "none"  # our extension: code-aware stopping on request
    # Our extensions: beam search, with `transformers`' meaning of each knob.
    num_beams: int = NUM_BEAMS
    length_penalty: float = Field(1.0, ge=-10, le=10)
    early_stopping: bool | Literal["never"] = False
    num_beam_groups: int = Field(1, ge=1)
    diversity_penalty: float = Field(0.0, ge=0, le=1000)
    semantic: bool | None = None  # our extension: None follows the server's --semantic

    @field_validator("prompt")
    @classmethod
    def one_to_max_prompts(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("the prompt list is empty")
        if isinstance(prompt, list) and len(prompt) > MAX_PROMPTS:
            raise ValueError(f"{len(prompt)} prompts; send at most {MAX_PROMPTS} in one request")
        return prompt

    @field_validator("stop")
    @classmethod
    def at_most_four_stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_OPENAI_STOPS:
            raise ValueError(
                f"{len(stop)} stop sequences; send at most {MAX_OPENAI_STOPS} (OpenAI's limit)"
            )
        stops = [stop] if isinstance(stop, str) else stop or []
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"a stop sequence is longer than {MAX_STOP_CHARS} characters")
        return stop

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    @property
    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def unsupported(self) -> str | None:
        """Why the request asks for something this server does not do, if it does."""
        if self.logprobs:
            return "logprobs is not supported; leave it out or send null"
        if self.echo:
            return "echo is not supported; leave it out or send false"
        if self.best_of not in (None, self.n):
            return "best_of other than n is not supported"
        if self.logit_bias:
            return "logit_bias is not supported; leave it out or send {}"
        if self.presence_penalty or self.frequency_penalty:
            return "presence_penalty and frequency_penalty are not supported; send 0"
        return None


class OpenAIChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class OpenAICompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[OpenAIChoice]
    usage: Usage | None = None


# -- llama.cpp (POST /infill) --------------------------------------------------------------------


class InfillExtra(Request):
    filename: str
    text: str


class InfillRequest(Request):
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[InfillExtra] = Field([], max_length=MAX_SNIPPETS)
    prompt: str = ""  # llama.cpp: text after the middle sentinel, i.e. the start of the middle
    n_predict: int = Field(-1, ge=-1)  # -1: the server's default
    n_indent: int = Field(0, ge=0, le=MAX_INDENT)  # stop at a line indented less than this
    # Stop generating once this much time has passed.
    t_max_predict_ms: int = Field(0, ge=0, le=MAX_PREDICT_MS)
    stop: list[StopString] = Field([], max_length=MAX_INFILL_STOPS)
    cache_prompt: bool = True  # always on: the engine reuses every cached prefix
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=-1, lt=2**63)  # -1: random, as in llama.cpp
    stream: bool = False
    stop_mode: StopMode = "auto"
    semantic: bool | None = None  # our extension: None follows the server's --semantic


class InfillTimings(BaseModel):
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float


class InfillResponse(BaseModel):
    content: str
    stop: bool = True
    stop_type: Literal["eos", "limit", "word", "none"]
    model: str
    tokens_cached: int
    tokens_evaluated: int
    tokens_predicted: int
    timings: InfillTimings


# -- the rest of the Tabby API -------------------------------------------------------------------


class LogEventRequest(Request):
    type: Literal["view", "select", "dismiss"]
    completion_id: str
    choice_index: int = Field(ge=0)
    view_id: str | None = None
    elapsed: int | None = None
    select_kind: Literal["line"] | None = None


class Version(BaseModel):
    build_date: str
    build_timestamp: str
    git_sha: str
    git_describe: str


class HealthState(BaseModel):
    model: str
    chat_model: str | None = None
    device: str
    arch: str
    cpu_info: str
    cpu_count: int
    cuda_devices: list[str]
    version: Version


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "self-hosted"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
