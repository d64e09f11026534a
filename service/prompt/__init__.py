"""Prompt building: FIM templates, the context window around the cursor, token healing."""
