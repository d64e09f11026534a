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


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        default = os.environ.get(env, f.default)
        choices = f.metadata.get("choices")
        if choices and default not in choices:
            parser.error(f"{env}={default!r}: expected one of {', '.join(choices)}")
        shown_default = "unset" if f.default is None else f.default
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
    import uvicorn  # imported here so that --help answers without loading the server

    from service.app import create_app
    from service.logging_setup import configure_logging

    configure_logging(settings.log_level.upper(), log_prompts=settings.log_prompts == "scrubbed")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep the JSON logging configured above
        timeout_graceful_shutdown=5,
    )


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
