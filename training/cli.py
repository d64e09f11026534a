"""argparse subcommands for the model stages: train, export, pipeline, sweep.

Each `add_*_parser(subparsers)` registers one subcommand whose handler is `args.run(args)`
(the convention of `training/data/cli.py` and `training/evaluation/cli.py`); `training/__main__.py`
collects them.
"""

import argparse
import json

from training.config import RunConfig, load_config


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="training/configs/default.yaml", help="YAML config")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override a config value, e.g. --set train.batch_size=4",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config, args.set)


def run_train(args: argparse.Namespace) -> None:
    from training.train import train

    metrics = train(config_from_args(args), until_step=args.until_step)
    print(json.dumps(metrics))


def run_export(args: argparse.Namespace) -> None:
    from training.export import export

    print(f"exported to {export(config_from_args(args), args.out_dir)}")


def run_pipeline(args: argparse.Namespace) -> None:
    from training.pipeline import run_pipeline

    run_pipeline(config_from_args(args), args.start, args.stop)


def run_sweep(args: argparse.Namespace) -> None:
    from training.sweep import run_sweep

    for row in run_sweep(args.config, args.set):
        print(row["name"], f"{row['parameters']:,} params", "final val loss", row["curve"][-1][1])


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train (or resume) the model; torchrun for DDP")
    add_common(parser)
    parser.add_argument("--until-step", type=int, help="stop (and checkpoint) after this step")
    parser.set_defaults(run=run_train)


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="checkpoint -> Hugging Face model directory")
    add_common(parser)
    parser.add_argument("--out-dir", help="override export.out_dir")
    parser.set_defaults(run=run_export)


def add_pipeline_parser(subparsers: argparse._SubParsersAction) -> None:
    from training.pipeline import STAGES

    parser = subparsers.add_parser(
        "pipeline", help="data -> tokenizer -> train -> export -> evaluate"
    )
    add_common(parser)
    parser.add_argument(
        "--from", dest="start", choices=STAGES, default=STAGES[0], help="first stage to run"
    )
    parser.add_argument(
        "--until",
        dest="stop",
        choices=STAGES,
        default=STAGES[-1],
        help="last stage to run (--until pack: the data stages alone)",
    )
    parser.set_defaults(run=run_pipeline)


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sweep", help="scaling sweep: train the config's sweep variants")
    add_common(parser)
    parser.set_defaults(run=run_sweep)
