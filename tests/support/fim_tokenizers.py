"""Small byte-level BPE tokenizers carrying each model family's FIM sentinels, for prompt tests.

Trained in milliseconds on a few lines of Python, so the merges are real (indentation and
identifiers become multi-character tokens, which token healing is about).
"""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "import os\nimport sys\n\n\ndef main():\n    print(os.getcwd())\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for item in items:\n    if item is None:\n        continue\n    total += item\n",
    "    result = compute(value)\n    return result\n",
    "numbers = [1, 2, 3]\nprint(sum(numbers))\n",
] * 20

# Special tokens per family, and whether the family's tokenizer puts a BOS token first.
FAMILY_TOKENS: dict[str, tuple[list[str], str | None]] = {
    "starcoder": (
        ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
        None,
    ),
    "santacoder": (
        ["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"],
        None,
    ),
    "qwen": (
        ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>"],
        None,
    ),
    "codellama": (["<s>", "</s>", "▁<PRE>", "▁<MID>", "▁<SUF>", "▁<EOT>"], "<s>"),
    "deepseek": (
        [
            "<｜begin▁of▁sentence｜>",
            "<｜end▁of▁sentence｜>",
            "<｜fim▁begin｜>",
            "<｜fim▁hole｜>",
            "<｜fim▁end｜>",
        ],
        "<｜begin▁of▁sentence｜>",
    ),
    "plain": (["<|endoftext|>"], None),
}


def build_tokenizer(family: str, vocab_size: int = 400) -> Tokenizer:
    special_tokens, bos = FAMILY_TOKENS[family]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    if bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    return tokenizer
