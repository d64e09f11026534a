"""From the code around the cursor to the prompt's token ids, whatever the API dialect."""

from collections.abc import Hashable
from dataclasses import dataclass

from tokenizers import Tokenizer

from service.prompt.fim import FimRenderer
from service.prompt.healing import heal_prefix
from service.prompt.newlines import detect_newline, to_lf
from service.prompt.prefix_tokens import PrefixTokens, Tokens
from service.prompt.window import Budget, Snippet, StickyWindows, render_snippets

# Tokens a template adds (BOS and three sentinels) plus a token of slack at each cut's seam.
TEMPLATE_TOKENS = 8


class PromptTooLong(ValueError):
    """The tokens asked for leave no room for a prompt in the model's context."""


@dataclass(frozen=True)
class CompletionInput:
    """What every dialect asks: complete at the cursor between `prefix` and `suffix`."""

    prefix: str
    suffix: str = ""
    language: str | None = None
    snippets: tuple[Snippet, ...] = ()
    # Kept prompt beginnings are shared only between requests of equal salt (PrefixTokens).
    cache_salt: str | None = None
    # The editor session (tenant-scoped), whose window edges stay put while it types.
    session: Hashable | None = None


@dataclass(frozen=True)
class Prompt:
    token_ids: list[int]
    forced_prefix: str  # token healing: characters the completion must start with
    prefix: str  # the code before the cursor as the model saw it (LF, clipped)
    suffix: str  # the code after the cursor (LF, clipped); a plain model does not see it
    newline: str  # the client's line end, restored in the returned text


class PromptBuilder:
    def __init__(
        self,
        tokenizer: Tokenizer,
        budget: Budget,
        context_tokens: int,
        fim_order: str = "psm",
        windows: StickyWindows | None = None,
    ):
        # A copy that encodes special-token names in user text as plain text (see fim.py).
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.encode_special_tokens = True
        self.tokenizer_with_specials = tokenizer
        self.prefix_tokens = PrefixTokens(self.tokenizer)  # the last keystroke's beginnings
        self.renderer = FimRenderer.for_tokenizer(tokenizer, fim_order)
        self.budget = budget
        self.windows = windows or StickyWindows()  # where long files' windows begin and end
        self.context_tokens = context_tokens  # the model's positions: prompt + new tokens

    def budget_for(self, max_new_tokens: int) -> Budget:
        room = self.context_tokens - max_new_tokens - TEMPLATE_TOKENS
        if room < 1:
            raise PromptTooLong(
                f"{max_new_tokens} new tokens leave no room for a prompt in this model's "
                f"{self.context_tokens}-token context; ask for fewer"
            )
        return self.budget.within(room)

    def encode(self, text: str) -> Tokens:
        return self.prefix_tokens.plain(text)

    def build(self, request: CompletionInput, max_new_tokens: int) -> Prompt:
        """The prompt for `request`, fitting the model's context with `max_new_tokens` to come."""
        budget = self.budget_for(max_new_tokens)
        newline = detect_newline(request.prefix, request.suffix)
        # Encoding is paid on the event loop by every request (≈1 ms per 4 KB): the code before
        # the cursor is encoded only from where the last keystroke's differs, its window reuses
        # those tokens (`PrefixTokens`), and a text is encoded again only where snippets or
        # clipping the suffix changed it.
        whole_prefix = to_lf(request.prefix)
        prefix_encoding = self.prefix_tokens.encode(whole_prefix, request.cache_salt)
        prefix = self.windows.clip_prefix(
            whole_prefix, prefix_encoding, budget.prefix, request.session, request.cache_salt
        )
        context = render_snippets(
            [Snippet(s.filepath, to_lf(s.body)) for s in request.snippets],
            request.language,
            self.tokenizer,
            budget.snippets,
        )
        if context:
            prefix_encoding = self.encode(context + prefix)
        elif len(prefix) < len(whole_prefix):
            start = len(whole_prefix) - len(prefix)
            prefix_encoding = self.prefix_tokens.from_offset(whole_prefix, prefix_encoding, start)
        healed = heal_prefix(context + prefix, prefix_encoding, self.encode)
        whole_suffix = to_lf(request.suffix)
        suffix_encoding = self.encode(whole_suffix)
        suffix = self.windows.clip_suffix(
            whole_suffix, suffix_encoding, budget.suffix, request.session, request.cache_salt
        )
        if len(suffix) < len(whole_suffix):
            suffix_encoding = self.encode(suffix)
        suffix_ids = suffix_encoding.ids if self.renderer.template.uses_suffix else []
        token_ids = self.renderer.render(healed.token_ids, suffix_ids)
        forced_prefix = healed.forced_prefix
        if not token_ids:  # plain model, one-token prefix: keep it rather than prompt nothing
            token_ids, forced_prefix = (
                self.renderer.render(self.encode(context + prefix).ids, []),
                "",
            )
        return Prompt(token_ids, forced_prefix, prefix, suffix, newline)

    def build_raw(self, text: str) -> Prompt:
        """A prompt taken as is (Tabby's debug raw_prompt): special-token names are tokens."""
        ids = self.tokenizer_with_specials.encode(to_lf(text)).ids  # the post-processor adds BOS
        return Prompt(ids, "", to_lf(text), "", detect_newline(text))
