"""Our model implementations (GPT-2, GPTBigCode, Llama/Qwen2) over a paged KV cache.

`service.models.loader.load_model(path)` builds the right one from a Hugging Face checkpoint.
"""
