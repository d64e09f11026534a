"""The completion use case, with no HTTP in it: a request's job, its run on the engine (cache,
editor sessions, deadlines, the final text) and the errors a caller maps to its own protocol."""
