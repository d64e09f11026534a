"""Evaluation of a model directory through the served path: line completion, HumanEval (and its
infilling variants) in a sandbox, paired comparison of two models, the editor-like protocol."""
