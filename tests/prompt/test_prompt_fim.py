"""FIM templates: detected from each family's tokenizer, rendered from token ids."""

import json

import pytest

from service.prompt.fim import FimRenderer, detect_template, read_fim_order
from tests.support.fim_tokenizers import build_tokenizer

FAMILIES = {
    "starcoder": "starcoder",
    "santacoder": "santacoder",
    "qwen": "qwen2.5-coder",
    "codellama": "codellama",
    "deepseek": "deepseek-coder",
    "plain": "plain",
}


@pytest.mark.parametrize("tokenizer_family, expected", FAMILIES.items())
def test_template_detected_from_special_tokens(tokenizer_family, expected):
    assert detect_template(build_tokenizer(tokenizer_family)).family == expected


@pytest.mark.parametrize("tokenizer_family", ["starcoder", "qwen", "codellama", "deepseek"])
def test_render_is_prefix_suffix_middle(tokenizer_family):
    tokenizer = build_tokenizer(tokenizer_family)
    renderer = FimRenderer.for_tokenizer(tokenizer)
    template = renderer.template
    prefix = tokenizer.encode("def add(a, b):\n", add_special_tokens=False).ids
    suffix = tokenizer.encode("\nprint(add(1, 2))\n", add_special_tokens=False).ids
    ids = renderer.render(prefix, suffix)
    token_id = tokenizer.token_to_id
    assert ids == [
        *renderer.bos_ids,
        token_id(template.prefix_token),
        *prefix,
        token_id(template.suffix_token),
        *suffix,
        token_id(template.middle_token),
    ]
    assert len(renderer.bos_ids) == (1 if tokenizer_family in ("codellama", "deepseek") else 0)


def test_spm_order_puts_the_prefix_last():
    tokenizer = build_tokenizer("starcoder")
    renderer = FimRenderer.for_tokenizer(tokenizer, order="spm")
    prefix = tokenizer.encode("def add(a, b):\n", add_special_tokens=False).ids
    suffix = tokenizer.encode("\nprint(add(1, 2))\n", add_special_tokens=False).ids
    pre, suf, mid = (
        tokenizer.token_to_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>")
    )
    assert renderer.render(prefix, suffix) == [pre, suf, *suffix, mid, *prefix]


@pytest.mark.parametrize("order", ["psm", "spm"])
def test_no_suffix_is_left_to_right(order):
    """An empty suffix is a FIM example models rarely saw; plain text is what they know."""
    tokenizer = build_tokenizer("deepseek")
    renderer = FimRenderer.for_tokenizer(tokenizer, order=order)
    prefix = tokenizer.encode("x = 1\n", add_special_tokens=False).ids
    assert renderer.render(prefix, []) == [*renderer.bos_ids, *prefix]


def test_fim_order_is_read_from_the_checkpoint(tmp_path):
    assert read_fim_order(tmp_path) == "psm"  # no tokenizer_config.json
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"fim_order": "spm"}))
    assert read_fim_order(tmp_path) == "spm"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"fim_order": "mps"}))
    with pytest.raises(ValueError, match="fim_order"):
        read_fim_order(tmp_path)


def test_plain_model_gets_prefix_only():
    tokenizer = build_tokenizer("plain")
    renderer = FimRenderer.for_tokenizer(tokenizer)
    prefix = tokenizer.encode("x = 1\n", add_special_tokens=False).ids
    assert renderer.render(prefix, [1, 2, 3]) == prefix


def test_bos_comes_from_the_post_processor():
    tokenizer = build_tokenizer("deepseek")
    renderer = FimRenderer.for_tokenizer(tokenizer)
    assert renderer.bos_ids == (tokenizer.token_to_id("<｜begin▁of▁sentence｜>"),)
    assert FimRenderer.for_tokenizer(build_tokenizer("starcoder")).bos_ids == ()
