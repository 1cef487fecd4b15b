"""The build's one step that pyproject.toml cannot hold in a stable form: the C extension.

keccak256 of many cells at once, 8 or 4 side by side with AVX-512 or AVX2 (``codex_node/data/_keccak.c``): the
slot trees' hashing at 5-7x the speed of safe-pysha3. Optional: where it cannot be compiled the install goes on
and ``codex_node/data/merkle.py`` hashes with safe-pysha3, slower but alike. Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("codex_node.data._keccak", sources=["codex_node/data/_keccak.c"], optional=True)])
