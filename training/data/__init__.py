"""The CodeParrot data pipeline: sources, filters, near-dedup, decontamination, report."""
