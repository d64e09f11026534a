"""The data pipeline's configuration: one YAML file, one dataclass per section."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class DirectorySource:
    """A directory of Python files on disk (e.g. the interpreter's standard library)."""

    path: str  # "{stdlib}" expands to the running interpreter's standard library
    repo_name: str
    license: str
    repo_depth: int = 0  # >0: each sub-directory at this depth becomes its own repository
    exclude: list[str] = field(default_factory=list)  # fnmatch patterns on the relative path


@dataclass
class SourceConfig:
    """Where raw files come from.

    kind "offline": build a corpus from `directories` and pinned `packages` (name==version,
    downloaded with pip into `cache_dir`). kind "codeparrot": read `dataset` (a hub name) or
    `data_files` (local JSON lines / Parquet in CodeParrot's format) through `datasets`.
    """

    kind: str = "offline"
    dataset: str | None = None
    data_files: list[str] = field(default_factory=list)
    split: str = "train"
    cache_dir: str = "data/cache/packages"
    directories: list[DirectorySource] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)


@dataclass
class FilterConfig:
    """CodeParrot's per-file heuristics (preprocessing.py) with their published thresholds."""

    min_size: int = 1024  # bytes; the BigQuery selection was 1 KB-1 MB
    max_size: int = 1024 * 1024
    autogen_scan_lines: int = 5
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alnum_fraction: float = 0.25
    min_chars_per_token: float = 1.5
    config_test_scan_lines: int = 5
    config_test_line_fraction: float = 0.05
    config_test_drop_prob: float = 0.7
    no_keyword_drop_prob: float = 0.7
    max_few_assignments: int = 4  # files with at most this many "=" are dropped


@dataclass
class DedupConfig:
    num_perm: int = 256
    threshold: float = 0.85
    min_tokens: int = 10  # documents with fewer identifier tokens are never near-dups
    partitions: int = 16  # LSH band records spill to this many files, grouped one at a time


@dataclass
class DecontamConfig:
    humaneval: bool = True
    eval_files: list[str] = field(default_factory=list)  # globs of held-out evaluation files
    min_chars: int = 50  # shorter eval paragraphs (whitespace removed) are not searched for


@dataclass
class LicenseConfig:
    allow: list[str] = field(
        default_factory=lambda: [
            "mit",
            "apache-2.0",
            "bsd-2-clause",
            "bsd-3-clause",
            "isc",
            "psf-2.0",
            "mpl-2.0",
            "unlicense",
            "cc0-1.0",
        ]
    )


@dataclass
class SecretsConfig:
    scrub: bool = True


@dataclass
class TokenizerConfig:
    vocab_size: int = 32768
    min_frequency: int = 2
    max_train_bytes: int = 200_000_000  # bounds the trainer's memory on a huge corpus
    # A directory holding tokenizer.json (e.g. an earlier packed corpus): its tokenizer files
    # are copied instead of training one, so a model trained on that corpus keeps its vocabulary.
    reuse_from: str | None = None


@dataclass
class PackConfig:
    seq_len: int = 1024
    val_fraction: float = 0.05  # of repositories, not files
    batch_files: int = 256
    # Explicit held-out repositories (e.g. an earlier corpus's meta.json val_repos); when given
    # they replace the val_fraction choice, so a grown corpus keeps the same validation split.
    val_repos: list[str] | None = None


@dataclass
class DataConfig:
    out_dir: str = "data/default"
    seed: int = 1234
    num_proc: int = 2
    batch_files: int = 64
    source: SourceConfig = field(default_factory=SourceConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontamConfig = field(default_factory=DecontamConfig)
    licenses: LicenseConfig = field(default_factory=LicenseConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pack: PackConfig = field(default_factory=PackConfig)

    @property
    def out(self) -> Path:
        return Path(self.out_dir)


def build(cls: type, values: dict) -> typing.Any:
    """Build dataclass `cls` from a dict, recursing into nested dataclasses; unknown keys fail."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown keys for {cls.__name__}: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = build(hint, value or {})
        elif typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            value = [build(typing.get_args(hint)[0], v) for v in value]
        kwargs[name] = value
    return cls(**kwargs)


def set_value(cfg: DataConfig, dotted: str, raw: str) -> None:
    """Apply one `section.field=value` override; the value is parsed as YAML and type-checked."""
    *path, name = dotted.split(".")
    target = cfg
    for part in path:
        target = getattr(target, part)
    if name not in {f.name for f in dataclasses.fields(target)}:
        raise ValueError(f"unknown option {dotted}")
    value = yaml.safe_load(raw)
    hint = typing.get_type_hints(type(target))[name]
    base = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if float in base and isinstance(value, int):
        value = float(value)
    setattr(target, name, value)


def read_yaml(path: str | Path) -> dict:
    """A YAML config; a `base: other.yaml` key (beside it) supplies the sections it leaves out."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if base := raw.pop("base", None):
        raw = {**read_yaml(Path(path).parent / base), **raw}
    return raw


def load_config(path: str | Path | None, overrides: list[str] = ()) -> DataConfig:
    """Read the data sections of a YAML config (other sections belong to later stages)."""
    raw = read_yaml(path) if path else {}
    names = {f.name for f in dataclasses.fields(DataConfig)}
    cfg = build(DataConfig, {k: v for k, v in (raw or {}).items() if k in names})
    for item in overrides:
        key, _, value = item.partition("=")
        set_value(cfg, key, value)
    return cfg
