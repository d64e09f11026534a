"""argparse subcommands for the data stages: prepare, tokenizer, pack.

Each `add_*_parser(subparsers)` registers one subcommand whose handler is `args.run(args)`;
`training/__main__.py` collects them with the model stages' parsers.
"""

from __future__ import annotations

import argparse
import dataclasses

from training.data.config import DataConfig, FilterConfig, load_config


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="training/configs/corpus.yaml", help="YAML config")
    parser.add_argument("--out-dir", help="override out_dir")
    parser.add_argument("--num-proc", type=int, help="override num_proc")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config value, e.g. --set dedup.threshold=0.9",
    )


def config_from_args(args: argparse.Namespace) -> DataConfig:
    overrides = list(args.set)
    overrides += [
        f"filters.{f.name}={getattr(args, f.name)}"
        for f in dataclasses.fields(FilterConfig)
        if getattr(args, f.name, None) is not None
    ]
    cfg = load_config(args.config, overrides)
    if args.out_dir:
        cfg.out_dir = args.out_dir
    if args.num_proc:
        cfg.num_proc = args.num_proc
    return cfg


def run_prepare(args: argparse.Namespace) -> None:
    from training.data.prepare import prepare

    report = prepare(config_from_args(args))
    print(report.table())


def run_tokenizer(args: argparse.Namespace) -> None:
    from training.data.tokenizer import train_tokenizer

    cfg = config_from_args(args)
    path = train_tokenizer(cfg)
    print(f"tokenizer written to {path}")


def run_pack(args: argparse.Namespace) -> None:
    from training.data.pack import pack

    meta = pack(config_from_args(args))
    print(
        {k: v for k, v in meta.items() if k != "val_repos"}, f"{len(meta['val_repos'])} val repos"
    )


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare", help="raw files -> cleaned, deduplicated shards + report"
    )
    add_common(parser)
    group = parser.add_argument_group("filter thresholds (default: the config file's)")
    for f in dataclasses.fields(FilterConfig):
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=type(f.default),
            help=f"CodeParrot default {f.default}",
        )
    parser.set_defaults(run=run_prepare)


def add_tokenizer_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tokenizer", help="train the byte-level BPE tokenizer")
    add_common(parser)
    parser.set_defaults(run=run_tokenizer)


def add_pack_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("pack", help="tokenize and pack train/val token shards")
    add_common(parser)
    parser.set_defaults(run=run_pack)
