"""Fill-in-the-middle templates, one per model family, found from the tokenizer's special tokens.

The prompt is assembled from token ids, never by string formatting then tokenizing: code that
happens to contain `<fim_middle>` is encoded as ordinary text and cannot steer the model.

With no code after the cursor the prompt is the prefix alone, left to right: FIM-trained models
also train on plain text (half of StarCoder's and our documents), and an empty suffix is a FIM
example they almost never saw (measured on our default model: single-line exact match 0.8% as
an empty-suffix PSM prompt, 5.8% left to right). With a suffix, the order is the one the
checkpoint declares in its `tokenizer_config.json` (`"fim_order": "psm" | "spm"`), PSM if none.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

FIM_ORDERS = ("psm", "spm")


@dataclass(frozen=True)
class FimTemplate:
    """Prefix-suffix-middle layout: [bos] PRE prefix SUF suffix MID, the model writes the middle.

    `family` "plain" has no sentinels: the prompt is the prefix alone and the suffix is unused.
    """

    family: str
    prefix_token: str | None = None
    suffix_token: str | None = None
    middle_token: str | None = None

    @property
    def uses_suffix(self) -> bool:
        return self.middle_token is not None


# The sentinels each family was trained with (names as they appear in tokenizer.json).
TEMPLATES = [
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTemplate("santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    FimTemplate("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>"),
    FimTemplate("deepseek-coder", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
]
PLAIN = FimTemplate("plain")


def detect_template(tokenizer: Tokenizer) -> FimTemplate:
    """The first family whose three sentinels are all tokens of `tokenizer`, else plain."""
    for template in TEMPLATES:
        names = (template.prefix_token, template.suffix_token, template.middle_token)
        if all(tokenizer.token_to_id(name) is not None for name in names):
            return template
    return PLAIN


def leading_special_ids(tokenizer: Tokenizer) -> list[int]:
    """What the tokenizer's post-processor puts before any text (a BOS token, or nothing)."""
    with_specials = tokenizer.encode("x", add_special_tokens=True).ids
    without = tokenizer.encode("x", add_special_tokens=False).ids
    return with_specials[: len(with_specials) - len(without)]


def read_fim_order(model_dir: str | Path) -> str:
    """The FIM order a checkpoint declares in its tokenizer_config.json; "psm" if none."""
    path = Path(model_dir) / "tokenizer_config.json"
    order = json.loads(path.read_text()).get("fim_order", "psm") if path.exists() else "psm"
    if order not in FIM_ORDERS:
        raise ValueError(f"{path}: fim_order {order!r} is not one of {FIM_ORDERS}")
    return order


@dataclass(frozen=True)
class FimRenderer:
    """Turns (prefix ids, suffix ids) into the prompt ids of one tokenizer's family."""

    template: FimTemplate
    bos_ids: tuple[int, ...]
    prefix_id: int | None
    suffix_id: int | None
    middle_id: int | None
    order: str = "psm"

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, order: str = "psm") -> "FimRenderer":
        template = detect_template(tokenizer)
        token_id = tokenizer.token_to_id
        return cls(
            template=template,
            bos_ids=tuple(leading_special_ids(tokenizer)),
            prefix_id=token_id(template.prefix_token) if template.prefix_token else None,
            suffix_id=token_id(template.suffix_token) if template.suffix_token else None,
            middle_id=token_id(template.middle_token) if template.middle_token else None,
            order=order,
        )

    def render(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        if not self.template.uses_suffix or not suffix_ids:
            return [*self.bos_ids, *prefix_ids]
        pre, suf, mid = self.prefix_id, self.suffix_id, self.middle_id
        if self.order == "spm":  # StarCoder's SPM variant: the prefix last, next to the middle
            return [*self.bos_ids, pre, suf, *suffix_ids, mid, *prefix_ids]
        return [*self.bos_ids, pre, *prefix_ids, suf, *suffix_ids, mid]
