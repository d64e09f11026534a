"""Command line: `python -m service serve [--host H] [--port P] [--model DIR] ...`.

Each flag is also an environment variable SERVICE_<FLAG> (`--redis-url` is SERVICE_REDIS_URL);
a flag given on the command line wins over the variable.
"""

import argparse
import dataclasses
import os
import sys
import types
from pathlib import Path

from service.settings import DEFAULT_MODEL_DIR, ENV_PREFIX, Settings


def value_type(annotation) -> type:
    """The type a flag's string converts to: `int | None` converts to int."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = (a for a in annotation.__args__ if a is not type(None))
    return annotation


def parse_bool(text: str | bool) -> bool:
    """A switch's environment value: 1/true/yes/on or 0/false/no/off (bool("false") is True)."""
    if isinstance(text, bool):
        return text
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        default = os.environ.get(env, f.default)
        choices = f.metadata.get("choices")
        if choices and default not in choices:
            parser.error(f"{env}={default!r}: expected one of {', '.join(choices)}")
        shown_default = "unset" if f.default is None else f.default
        if value_type(f.type) is bool:  # a switch: --name / --no-name
            try:
                default = parse_bool(default)
            except argparse.ArgumentTypeError as error:
                parser.error(f"{env}: {error}")
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"{f.metadata['help']} [env {env}=true|false; default: {f.default}]",
            )
            continue
        parser.add_argument(
            flag,
            dest=f.name,
            type=value_type(f.type),
            default=default,  # argparse converts a string default with `type`
            choices=choices,
            help=f"{f.metadata['help']} [env {env}; default: {shown_default}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Self-hosted low-latency code completion (Tabby, OpenAI and llama.cpp APIs).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve a checkpoint over HTTP",
        description="Serve a checkpoint over HTTP. Every flag is also an environment variable "
        "SERVICE_<FLAG>, e.g. SERVICE_REDIS_URL.",
    )
    add_setting_flags(serve)
    return parser


def missing_checkpoint_message(model: Path) -> str:
    if model == DEFAULT_MODEL_DIR:
        return (
            f"no checkpoint at {model} (the bundled default). Restore it with `git checkout checkpoints/default`, "
            "train it with `python -m training pipeline --config training/configs/default.yaml`, "
            "or serve a Hugging Face format checkpoint directory of your own with "
            "--model DIR (or SERVICE_MODEL=DIR)."
        )
    return f"--model {model}: no config.json there; expected a Hugging Face checkpoint directory"


def serve(settings: Settings) -> None:
    # Imported here so that --help answers without loading the server.
    from service.app import create_app
    from service.logging_setup import configure_logging
    from service.server import run_server

    configure_logging(settings.log_level.upper(), log_prompts=settings.log_prompts == "scrubbed")
    sys.exit(run_server(create_app(settings), settings))


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    args.pop("command")
    try:
        settings = Settings(**args)
    except ValueError as error:
        parser.error(str(error))
    if not (settings.model / "config.json").is_file():
        sys.exit(f"error: {missing_checkpoint_message(settings.model)}")
    serve(settings)


if __name__ == "__main__":
    main()
