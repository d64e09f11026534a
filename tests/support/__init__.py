"""Helpers the tests share, one module per concept: real servers and Redis, tiny checkpoints and
tokenizers, corpora. Test files import helpers from here, never from each other
(tests/test_import_rules.py checks it)."""
