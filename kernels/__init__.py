"""Compute kernels: each a Triton kernel beside the torch reference it must equal."""
