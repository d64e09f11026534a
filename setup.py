"""Which packages the distribution ships; everything else is in pyproject.toml.

The kernels keep their folder, kernels/, but import as `completion_kernels`: Hugging Face's
`kernels` distribution (a dependency of transformers since 5.25) owns the import name `kernels`.
The folder has no __init__.py, so from the repository root it never shadows theirs either
(docs/CONTRACTS.md, "Import names"). pyproject.toml alone cannot add a renamed package to the ones
`find` discovers, hence this file.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["service", "service.*", "training", "training.*"]),
        "completion_kernels",
        "completion_kernels.csrc",  # the C++ sources, compiled on the serving machine
    ],
    package_dir={"completion_kernels": "kernels"},
    package_data={"completion_kernels.csrc": ["*.cpp", "*.h"], "training.configs": ["*.yaml"]},
)
