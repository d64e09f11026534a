"""Each API dialect's translation: its request body to engine jobs, engine results to its response."""
