"""From the code around the cursor to the prompt's token ids, whatever the API dialect."""

from dataclasses import dataclass

from tokenizers import Tokenizer

from service.prompt.fim import FimRenderer
from service.prompt.healing import heal_prefix
from service.prompt.newlines import detect_newline, to_lf
from service.prompt.window import Snippet, clip_prefix, clip_suffix, render_snippets


@dataclass(frozen=True)
class CompletionInput:
    """What every dialect asks: complete at the cursor between `prefix` and `suffix`."""

    prefix: str
    suffix: str = ""
    language: str | None = None
    snippets: tuple[Snippet, ...] = ()


@dataclass(frozen=True)
class Prompt:
    token_ids: list[int]
    forced_prefix: str  # token healing: characters the completion must start with
    prefix: str  # the code before the cursor as the model saw it (LF, clipped)
    suffix: str  # the code after the cursor as the model saw it (LF, clipped; "" for plain)
    newline: str  # the client's line end, restored in the returned text


class PromptBuilder:
    def __init__(
        self, tokenizer: Tokenizer, prefix_tokens: int, suffix_tokens: int, snippet_tokens: int
    ):
        # A copy that encodes special-token names in user text as plain text (see fim.py).
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.encode_special_tokens = True
        self.renderer = FimRenderer.for_tokenizer(tokenizer)
        self.prefix_tokens = prefix_tokens
        self.suffix_tokens = suffix_tokens
        self.snippet_tokens = snippet_tokens

    @property
    def family(self) -> str:
        return self.renderer.template.family

    def encode(self, text: str):
        return self.tokenizer.encode(text, add_special_tokens=False)

    def build(self, request: CompletionInput) -> Prompt:
        newline = detect_newline(request.prefix, request.suffix)
        prefix = to_lf(request.prefix)
        prefix = clip_prefix(prefix, self.encode(prefix), self.prefix_tokens)
        context = render_snippets(
            [Snippet(s.filepath, to_lf(s.body)) for s in request.snippets],
            request.language,
            self.tokenizer,
            self.snippet_tokens,
        )
        healed = heal_prefix(context + prefix, self.encode(context + prefix))
        suffix = ""
        if self.renderer.template.uses_suffix:
            suffix = to_lf(request.suffix)
            suffix = clip_suffix(suffix, self.encode(suffix), self.suffix_tokens)
        suffix_ids = self.encode(suffix).ids
        token_ids = self.renderer.render(healed.token_ids, suffix_ids)
        forced_prefix = healed.forced_prefix
        if not token_ids:  # plain model, one-token prefix: keep it rather than prompt nothing
            token_ids, forced_prefix = self.renderer.render(self.encode(context + prefix).ids, []), ""
        return Prompt(token_ids, forced_prefix, prefix, suffix, newline)
