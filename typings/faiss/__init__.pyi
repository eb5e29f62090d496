# FAISS, untyped for mypy (pyproject.toml, [tool.mypy] mypy_path): the SWIG-generated stubs that
# faiss ships lack the downcast index classes' attributes (.hnsw, .pq, .nlist ...), several
# classes (SearchParametersHNSW) and the keyword arguments of its parameter objects, so every
# name of the module is Any here rather than wrong.
from typing import Any

def __getattr__(name: str) -> Any: ...
