"""Fill-in-the-middle templates, one per model family, found from the tokenizer's special tokens.

The prompt is assembled from token ids, never by string formatting then tokenizing: code that
happens to contain `<fim_middle>` is encoded as ordinary text and cannot steer the model.
"""

from dataclasses import dataclass

from tokenizers import Tokenizer


@dataclass(frozen=True)
class FimTemplate:
    """Prefix-suffix-middle layout: [bos] PRE prefix SUF suffix MID, the model writes the middle.

    `family` "plain" has no sentinels: the prompt is the prefix alone and the suffix is unused.
    """

    family: str
    prefix_token: str | None = None
    suffix_token: str | None = None
    middle_token: str | None = None
    # Token a FIM model emits when the middle is done, when it is not the tokenizer's EOS.
    end_token: str | None = None

    @property
    def uses_suffix(self) -> bool:
        return self.middle_token is not None


# The sentinels each family was trained with (names as they appear in tokenizer.json).
TEMPLATES = [
    FimTemplate("starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    FimTemplate("santacoder", "<fim-prefix>", "<fim-suffix>", "<fim-middle>"),
    FimTemplate("qwen2.5-coder", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    FimTemplate("codellama", "▁<PRE>", "▁<SUF>", "▁<MID>", end_token="▁<EOT>"),
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


@dataclass(frozen=True)
class FimRenderer:
    """Turns (prefix ids, suffix ids) into the prompt ids of one tokenizer's family."""

    template: FimTemplate
    bos_ids: tuple[int, ...]
    prefix_id: int | None
    suffix_id: int | None
    middle_id: int | None

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> "FimRenderer":
        template = detect_template(tokenizer)
        token_id = tokenizer.token_to_id
        return cls(
            template=template,
            bos_ids=tuple(leading_special_ids(tokenizer)),
            prefix_id=token_id(template.prefix_token) if template.prefix_token else None,
            suffix_id=token_id(template.suffix_token) if template.suffix_token else None,
            middle_id=token_id(template.middle_token) if template.middle_token else None,
        )

    def render(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        if not self.template.uses_suffix:
            return [*self.bos_ids, *prefix_ids]
        return [
            *self.bos_ids,
            self.prefix_id,
            *prefix_ids,
            self.suffix_id,
            *suffix_ids,
            self.middle_id,
        ]
