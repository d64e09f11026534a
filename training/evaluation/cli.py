"""argparse subcommands for evaluation: evaluate, compare, editor-eval, semantic-eval.

Each `add_*_parser(subparsers)` registers one subcommand whose handler is `args.run(args)`;
`training/__main__.py` collects them with the other stages' parsers.
"""

import argparse
import importlib
import json

from training.cli import add_common, config_from_args


def run_evaluate(args: argparse.Namespace) -> None:
    from training.evaluation.evaluate import evaluate

    print(json.dumps(evaluate(config_from_args(args), args.model_dir), indent=2))


def run_compare(args: argparse.Namespace) -> None:
    from training.evaluation.compare import compare, markdown_table

    try:
        rows = compare(args.model_a, args.model_b, args.samples)
    except (FileNotFoundError, ValueError) as error:  # not evaluated, or on other cursors
        raise SystemExit(f"compare: {error}") from None
    print(f"A = {args.model_a}\nB = {args.model_b}\n")
    print(markdown_table(rows))


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="val loss, line completion, HumanEval of a model dir"
    )
    add_common(parser)
    parser.add_argument("--model-dir", help="override evaluate.model_dir")
    parser.set_defaults(run=run_evaluate)


def add_forwarding_parser(
    subparsers: argparse._SubParsersAction, name: str, module: str, help_text: str
) -> None:
    """A subcommand whose options are its module's own (`module.main(options)`)."""
    parser = subparsers.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("options", nargs=argparse.REMAINDER)

    def run(args: argparse.Namespace) -> None:
        importlib.import_module(module).main(args.options)

    parser.set_defaults(run=run)


def add_editor_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    add_forwarding_parser(
        subparsers,
        "editor-eval",
        "training.evaluation.editor_eval",
        "editor-like cursors on never-seen packages through the served path "
        "(training/evaluation/editor_eval.py; its options follow, e.g. --per-kind 40 --settings-b JSON)",
    )


def add_semantic_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    add_forwarding_parser(
        subparsers,
        "semantic-eval",
        "training.evaluation.semantic_eval",
        "raw greedy, beam and the hybrid semantic pipeline side by side on editor-like "
        "cursors (training/evaluation/semantic_eval.py; its options follow, e.g. --per-kind 40)",
    )


def add_compare_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="two evaluated model dirs, paired on the same line-completion cursors"
    )
    parser.add_argument("model_a", help="a model dir that `evaluate` has scored (the baseline)")
    parser.add_argument("model_b", help="another, scored on the same cursors (the candidate)")
    parser.add_argument("--samples", type=int, default=10_000, help="bootstrap resamples")
    parser.set_defaults(run=run_compare)
