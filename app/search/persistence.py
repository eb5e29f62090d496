"""The index file: one self-checking file, written atomically, with no pickle anywhere.

Layout::

    MAGIC (8 bytes) | header length (uint64 LE) | sha256(header) (32 bytes) | header JSON | payload

The JSON header carries the format version, params, dim, change-log version, live count, the
attribute vocabularies, the section table and the sha256 of the payload. The payload is
`faiss.serialize_index` bytes followed by the id map columns, each written with
`np.save(allow_pickle=False)`. Loading checks the magic, the header checksum, the format
version and the payload checksum before FAISS sees a byte, so a torn or flipped file is refused
with IndexCorrupt instead of crashing or silently answering wrong (qdrant#1735, dedupe#1045).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from app.search.backends import backend_from_index
from app.search.id_map import IdMap
from app.search.params import IndexParams
from app.search.state import IndexState

MAGIC = b"PMVECIDX"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sQ32s")
_FAISS_SECTION = "faiss_index"
_CATALOG_SECTIONS = ("slot_pid", "brand", "category", "live")

Buffer = bytes | bytearray | memoryview | np.ndarray


class IndexFileError(ValueError):
    """An index file that cannot be used."""


class IndexCorrupt(IndexFileError):
    """Truncated, altered or internally inconsistent index file (checksum or structure)."""


class IndexFormatError(IndexFileError):
    """Not an index file of this project, or a format version this code does not read."""


def encode_array(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def decode_array(data: Buffer, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    except ValueError as exc:
        raise IndexCorrupt(f"section {name!r} is not a valid array: {exc}") from exc


def _bytes_view(data: Buffer) -> memoryview:
    return memoryview(data).cast("B")  # type: ignore[arg-type]  # numpy declares its buffer protocol to type checkers only from Python 3.12


def write_index_file(path: str | Path, header: dict[str, Any], sections: Sequence[tuple[str, Buffer]]) -> int:
    """Write header + sections to `path` atomically; returns the file size.

    The bytes go to a temp file in the same folder, which is fsynced and then moved over `path`
    with os.replace, so a crash leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    views = [(name, _bytes_view(data)) for name, data in sections]
    digest = hashlib.sha256()
    table, offset = [], 0
    for name, view in views:
        table.append({"name": name, "offset": offset, "length": view.nbytes})
        digest.update(view)
        offset += view.nbytes
    full = {
        **header,
        "format_version": FORMAT_VERSION,
        "payload_bytes": offset,
        "payload_sha256": digest.hexdigest(),
        "sections": table,
    }
    head = json.dumps(full, sort_keys=True).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, len(head), hashlib.sha256(head).digest())
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(prefix)
            fh.write(head)
            for _, view in views:
                fh.write(view)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return len(prefix) + len(head) + offset


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; not every platform can open a directory, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_all(path: Path) -> bytearray:
    """Read into a writable buffer: FAISS takes a pointer, which numpy refuses for read-only memory."""
    size = path.stat().st_size
    data = bytearray(size)
    with open(path, "rb") as fh:
        got = fh.readinto(data)
    if got != size:
        raise IndexCorrupt(f"{path}: short read ({got} of {size} bytes)")
    return data


def read_index_file(path: str | Path) -> tuple[dict[str, Any], dict[str, memoryview]]:
    """Verify and split a file written by `write_index_file` into its header and sections."""
    path = Path(path)
    data = _read_all(path)
    view = memoryview(data)
    magic = bytes(view[: len(MAGIC)])
    if magic != MAGIC:
        raise IndexFormatError(f"{path}: not a productmatch vector index (magic {magic!r}, expected {MAGIC!r})")
    if len(data) < _PREFIX.size:
        raise IndexCorrupt(f"{path}: truncated before the header")
    _, head_len, head_sha = _PREFIX.unpack_from(data)
    head = view[_PREFIX.size : _PREFIX.size + head_len]
    if head.nbytes != head_len or hashlib.sha256(head).digest() != head_sha:
        raise IndexCorrupt(f"{path}: header checksum mismatch (truncated or altered file)")
    header = json.loads(bytes(head))
    found = header.get("format_version")
    if found != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index file format version {found!r} is not supported; "
            f"this code reads format version {FORMAT_VERSION}"
        )
    payload = view[_PREFIX.size + head_len :]
    expected_bytes, expected_sha = header["payload_bytes"], header["payload_sha256"]
    if payload.nbytes != expected_bytes:
        raise IndexCorrupt(f"{path}: payload is {payload.nbytes} bytes, header says {expected_bytes}")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected_sha:
        raise IndexCorrupt(f"{path}: payload checksum mismatch (expected {expected_sha[:16]}..., got {actual[:16]}...)")
    sections = {s["name"]: payload[s["offset"] : s["offset"] + s["length"]] for s in header["sections"]}
    return header, sections


def dump_state(state: IndexState, dim: int) -> tuple[dict[str, Any], list[tuple[str, Buffer]]]:
    """Header fields and sections of one consistent state (call under the read lock)."""
    cat, backend = state.id_map, state.backend
    sections: list[tuple[str, Buffer]] = [(_FAISS_SECTION, faiss.serialize_index(backend.index))]
    sections += [(name, encode_array(arr)) for name, arr in cat.to_arrays().items()]
    header = {
        "kind": state.params.kind,
        "backend": backend.name,
        "dim": dim,
        "version": state.version,
        "live": cat.n_live,
        "ntotal": backend.ntotal,
        "params": state.params.to_dict(),
        "attributes": {"brand_values": cat.brands.to_list(), "category_values": cat.categories.to_list()},
        "faiss_version": faiss.__version__,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return header, sections


def load_state(path: str | Path) -> tuple[IndexParams, int, IndexState]:
    """Params, dim and state from a verified file; any inconsistency raises IndexCorrupt."""
    header, sections = read_index_file(path)
    try:
        params = IndexParams.from_dict(header["params"])
    except (TypeError, ValueError) as exc:
        raise IndexFormatError(f"{path}: stored params are not readable by this code: {exc}") from exc
    try:
        dim = int(header["dim"])
        index = faiss.deserialize_index(np.frombuffer(sections[_FAISS_SECTION], dtype=np.uint8))
        backend = backend_from_index(header["backend"], index, params)
        arrays = {name: decode_array(sections[name], name) for name in _CATALOG_SECTIONS}
        attrs = header["attributes"]
        id_map = IdMap.from_arrays(not backend.uses_labels, arrays, attrs["brand_values"], attrs["category_values"])
        _check_consistent(header, backend.dim, backend.ntotal, id_map, dim)
        state = IndexState(backend, id_map, int(header["version"]), params)
    except IndexCorrupt:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise IndexCorrupt(f"{path}: inconsistent index file: {exc}") from exc
    return params, dim, state


def _check_consistent(header: dict[str, Any], index_dim: int, ntotal: int, id_map: IdMap, dim: int) -> None:
    if index_dim != dim:
        raise ValueError(f"faiss index has dim {index_dim}, header says {dim}")
    expected_total = id_map.n_slots if not id_map.reuse_slots else id_map.n_live
    if ntotal != expected_total:
        raise ValueError(f"faiss index holds {ntotal} vectors, the id map expects {expected_total}")
    if id_map.n_live != header["live"]:
        raise ValueError(f"the id map has {id_map.n_live} live products, header says {header['live']}")
