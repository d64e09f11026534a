"""HTTP API: routes and request/response schemas of the Tabby, OpenAI and llama.cpp dialects."""
