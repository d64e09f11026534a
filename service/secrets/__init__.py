"""Secrets: the scrubbing rules and the sensitive-file names.

A leaf: it imports nothing from the service, so middleware, logging, the completion code and
training's data preparation all apply the same rules.
"""
