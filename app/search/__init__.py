"""Vector index over product embeddings: a derived cache of the database, keyed by product id.

Import from here; the modules behind it (backends, id_map, journal, state) are internals.
"""

from __future__ import annotations

from app.search.params import IndexParams
from app.search.persistence import IndexCorrupt, IndexFileError, IndexFormatError
from app.search.state import SearchResult
from app.search.vector_index import VectorIndex

__all__ = [
    "IndexCorrupt",
    "IndexFileError",
    "IndexFormatError",
    "IndexParams",
    "SearchResult",
    "VectorIndex",
]
