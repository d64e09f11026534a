"""The configuration of the model stages (train, evaluate, export): sections of the same YAML file
that configures the data stages (`training/data/config.py` reads the others).

    model:         the family (GPT-2 or Llama), its shape, CodeParrot's stability options,
                   the weight-tied variant
    train:         optimisation, batch, checkpoints
    curriculum:    named phases, each with its own FIM objective and source mixture
    finetune_sources: extra corpora in their published formats (MBPP, CodeSearchNet)
    evaluate:      which evaluations, how many examples
    export:        where the Hugging Face directory goes
    sweep:         a small scaling sweep: named variants (overrides) of this config
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from transformers import GPT2Config, LlamaConfig, PretrainedConfig

from training.data.config import DataConfig, build, read_yaml, set_value
from training.data.config import load_config as load_data_config
from training.fim import FimConfig


@dataclass
class ModelConfig:
    family: str = "gpt2"  # gpt2 | llama (RoPE, RMSNorm, SwiGLU, grouped-query attention)
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 512
    n_shared_blocks: int | None = None  # gpt2: weight-tied ("universal") variant, k blocks reused
    dropout: float = 0.0
    scale_attn_by_inverse_layer_idx: bool = True  # gpt2: CodeParrot's two stability options
    reorder_and_upcast_attn: bool = True
    n_kv_head: int | None = None  # llama: key/value heads (None: n_head)
    intermediate_size: int | None = None  # llama: SwiGLU width (None: GPT-2's MLP parameters)
    rope_theta: float = 10000.0  # llama

    def hf_config(self, vocab_size: int, eot_id: int) -> PretrainedConfig:
        if self.family == "gpt2":
            return self.gpt2_config(vocab_size, eot_id)
        if self.family == "llama":
            return self.llama_config(vocab_size, eot_id)
        raise ValueError(f"model.family is {self.family!r}: gpt2 or llama")

    def llama_config(self, vocab_size: int, eot_id: int) -> LlamaConfig:
        if self.n_shared_blocks or self.dropout:
            raise ValueError("model.n_shared_blocks and model.dropout are gpt2 options")
        # Three SwiGLU matrices of 8/3 d hold GPT-2's two 4d ones' parameters (rounded to 64).
        width = self.intermediate_size or 64 * round(8 * self.n_embd / 3 / 64)
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.n_embd,
            intermediate_size=width,
            num_hidden_layers=self.n_layer,
            num_attention_heads=self.n_head,
            num_key_value_heads=self.n_kv_head or self.n_head,
            max_position_embeddings=self.n_positions,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
            tie_word_embeddings=True,  # the embedding is most of a small model's parameters
            bos_token_id=eot_id,
            eos_token_id=eot_id,
        )

    def gpt2_config(self, vocab_size: int, eot_id: int) -> GPT2Config:
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=self.n_positions,
            n_ctx=self.n_positions,
            n_embd=self.n_embd,
            n_layer=self.n_layer,
            n_head=self.n_head,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            scale_attn_by_inverse_layer_idx=self.scale_attn_by_inverse_layer_idx,
            reorder_and_upcast_attn=self.reorder_and_upcast_attn,
            bos_token_id=eot_id,
            eos_token_id=eot_id,
            n_shared_blocks=self.n_shared_blocks,
        )


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int | None = None  # torch threads per process; None keeps torch's default
    batch_size: int = 8  # sequences per micro-batch per process
    block_size: int = 512
    grad_accum: int = 1
    num_workers: int = 0  # processes building batches ahead of the GPU; 0 builds them in-line
    init_from: str | None = None  # a Hugging Face model directory to start from (fine-tuning)
    learning_rate: float = 5e-4
    min_lr: float = 5e-5
    warmup_steps: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 500
    eval_batches: int = 8
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 1000


@dataclass
class PhaseConfig:
    steps: int
    fim: FimConfig = field(default_factory=FimConfig)
    mixture: dict[str, float] = field(default_factory=lambda: {"pretrain": 1.0})


@dataclass
class SourceSpec:
    format: str  # mbpp | codesearchnet
    path: str


@dataclass
class LineCompletionConfig:
    files: int = 500  # held-out files, decoded from val.bin: 1,500 cursors, for a ~1-point error
    examples_per_file: int = 3
    multi_line: int = 4  # lines in a multi-line target
    # The prompt window around the cursor: the server's defaults (service/settings.py), so the
    # scores are those of the completions `make serve` gives.
    prefix_tokens: int = 1024
    suffix_tokens: int = 256
    max_new_tokens: int = 48
    seed: int = 0  # the draw of cursors: another seed, another 1,500 (same seed: paired models)
    # Decoding: greedy, or the server's beam search (a request's num_beams / length_penalty)
    num_beams: int = 1
    length_penalty: float = 1.0


@dataclass
class HumanEvalConfig:
    enabled: bool = True
    problems: int | None = None  # the first N problems; None = all 164
    samples: int = 10
    temperature: float = 0.8
    max_new_tokens: int = 128
    timeout_s: float = 5.0
    memory_mb: int = 512
    # Infilling variants built from the same problems (training/evaluation/humaneval_infilling.py), greedy
    # pass@1: "single_line" (1,033 tasks), "multi_line" (5,815), "random_span" (1,640)
    infilling: list[str] = field(
        default_factory=lambda: ["single_line", "multi_line", "random_span"]
    )
    infilling_max_new_tokens: int = 256


@dataclass
class EvalConfig:
    model_dir: str = "checkpoints/default"
    val_tokens: int = 200_000
    batch_size: int = 8
    line_completion: LineCompletionConfig = field(default_factory=LineCompletionConfig)
    humaneval: HumanEvalConfig = field(default_factory=HumanEvalConfig)


@dataclass
class ExportConfig:
    out_dir: str = "checkpoints/default"
    max_megabytes: float = 30.0
    dtype: str = "float32"  # float32 | float16 | bfloat16: the safetensors weights' type
    fim_order: str = "psm"  # psm | spm: the FIM prompt order the server should use (measure it)
    # none | int8: a Llama-style model's linear layers as int8 with a float16 scale per
    # `group_size` input columns (service/models/int8_weights.py), about twice the parameters
    # in the same megabytes; the rest stays in `dtype`
    quantize: str = "none"
    group_size: int = 128


@dataclass
class SweepConfig:
    out_dir: str = "runs/sweep"
    steps: int = 400  # every variant trains this many steps, one phase
    common: list[str] = field(default_factory=list)  # overrides applied to every variant
    variants: dict[str, list[str]] = field(default_factory=dict)  # name -> overrides


@dataclass
class RunConfig:
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    curriculum: dict[str, PhaseConfig]
    finetune_sources: dict[str, SourceSpec]
    evaluate: EvalConfig
    export: ExportConfig
    sweep: SweepConfig

    @property
    def max_steps(self) -> int:
        return sum(phase.steps for phase in self.curriculum.values())


def _phase(values: dict) -> PhaseConfig:
    fim = values.get("fim") or {}
    if "span_kinds" in fim:
        fim = {**fim, "span_kinds": tuple(fim["span_kinds"])}
    return PhaseConfig(
        steps=values["steps"],
        fim=build(FimConfig, fim),
        mixture=values.get("mixture") or {"pretrain": 1.0},
    )


# Sections `--set` can override here; any other key belongs to the data stages' sections.
OVERRIDABLE = ("model", "train", "evaluate", "export", "sweep")


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read every section; `overrides` are `section.field=value` (e.g. `train.batch_size=4`)."""
    raw = read_yaml(path)
    curriculum = raw.get("curriculum") or {"causal_and_fim": {"steps": 1000}}
    ours = [o for o in overrides if o.split(".")[0] in OVERRIDABLE]
    data_overrides = [o for o in overrides if o not in ours]
    cfg = RunConfig(
        data=load_data_config(path, data_overrides),
        model=build(ModelConfig, raw.get("model") or {}),
        train=build(TrainConfig, raw.get("train") or {}),
        curriculum={name: _phase(values) for name, values in curriculum.items()},
        finetune_sources={
            name: build(SourceSpec, spec)
            for name, spec in (raw.get("finetune_sources") or {}).items()
        },
        evaluate=build(EvalConfig, raw.get("evaluate") or {}),
        export=build(ExportConfig, raw.get("export") or {}),
        sweep=build(SweepConfig, raw.get("sweep") or {}),
    )
    for item in ours:
        key, _, value = item.partition("=")
        set_value(cfg, key, value)
    return cfg


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)
