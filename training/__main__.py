"""`python -m training <stage>`: each stage module registers its own subcommand."""

import argparse

from training.cli import add_export_parser, add_pipeline_parser, add_sweep_parser, add_train_parser
from training.data.cli import add_pack_parser, add_prepare_parser, add_tokenizer_parser
from training.evaluation.cli import (
    add_compare_parser,
    add_editor_eval_parser,
    add_evaluate_parser,
    add_semantic_eval_parser,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m training")
    subparsers = parser.add_subparsers(dest="stage", required=True)
    for add_parser in (
        add_prepare_parser,
        add_tokenizer_parser,
        add_pack_parser,
        add_train_parser,
        add_export_parser,
        add_evaluate_parser,
        add_compare_parser,
        add_editor_eval_parser,
        add_semantic_eval_parser,
        add_pipeline_parser,
        add_sweep_parser,
    ):
        add_parser(subparsers)
    args, rest = parser.parse_known_args()
    if args.stage in ("editor-eval", "semantic-eval"):
        # Their own options, parsed by their modules (training/evaluation/).
        args.options = rest + args.options
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.run(args)


if __name__ == "__main__":
    main()
