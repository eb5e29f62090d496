"""Query images for the recommender: upload (base64), local path under an allowed folder, or URL.

Every image is size-checked before decoding, type-checked by its magic bytes (PNG, JPEG,
WebP, GIF), decoded by PIL with a pixel cap (decompression bombs), and only then turned into
one 1280-d EfficientNet-Lite0 vector. URL fetching is off unless ``RECOMMEND_ALLOW_IMAGE_URLS``
is set; even then only http(s) to public addresses, no redirects, with a timeout and a byte
cap. Paths must resolve (symlinks included) below ``RECOMMEND_IMAGE_DIR``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

logger = logging.getLogger(__name__)

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
MAX_PIXELS = 40_000_000


class ImageRejected(ValueError):
    """An image the request supplied is missing, too large, of the wrong type or not allowed."""


@dataclass(frozen=True)
class ImageSource:
    data_base64: str | None = None
    path: str | None = None
    url: str | None = None


def sniff_type(data: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _check_bytes(data: bytes, max_bytes: int, where: str) -> bytes:
    if len(data) == 0:
        raise ImageRejected(f"{where}: empty image")
    if len(data) > max_bytes:
        raise ImageRejected(f"{where}: image of {len(data)} bytes exceeds the limit of {max_bytes}")
    if sniff_type(data) is None:
        raise ImageRejected(f"{where}: not a PNG, JPEG, WebP or GIF image")
    return data


def _from_path(raw: str, allowed: Path | None, max_bytes: int, where: str) -> bytes:
    if allowed is None:
        raise ImageRejected(f"{where}: local image paths are disabled (set RECOMMEND_IMAGE_DIR)")
    root = Path(allowed).resolve()
    path = (root / raw).resolve() if not Path(raw).is_absolute() else Path(raw).resolve()
    if not path.is_relative_to(root):
        raise ImageRejected(f"{where}: path is outside the allowed image folder")
    if not path.is_file():
        raise ImageRejected(f"{where}: no such image file")
    if path.stat().st_size > max_bytes:
        raise ImageRejected(f"{where}: image of {path.stat().st_size} bytes exceeds the limit of {max_bytes}")
    return path.read_bytes()


def _public_host(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved or addr.is_multicast:
            return False
    return True


def _from_url(url: str, allowed: bool, max_bytes: int, timeout: float, where: str) -> bytes:
    if not allowed:
        raise ImageRejected(f"{where}: image URLs are disabled (set RECOMMEND_ALLOW_IMAGE_URLS)")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ImageRejected(f"{where}: only http(s) image URLs are accepted")
    if not _public_host(parsed.hostname):
        raise ImageRejected(f"{where}: the image host is not a public address")
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=False) as res:
            if res.status_code != 200:
                raise ImageRejected(f"{where}: fetching the image answered HTTP {res.status_code}")
            chunks, size = [], 0
            for chunk in res.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ImageRejected(f"{where}: image exceeds the limit of {max_bytes} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise ImageRejected(f"{where}: could not fetch the image ({type(exc).__name__})") from None
    return b"".join(chunks)


def fetch_bytes(source: ImageSource, settings: Any, where: str) -> bytes:
    """The checked bytes of one image (raises :class:`ImageRejected` with a client-facing reason)."""
    max_bytes = int(settings.recommend_image_max_bytes)
    if source.data_base64 is not None:
        try:
            data = base64.b64decode(source.data_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ImageRejected(f"{where}: data_base64 is not valid base64") from None
    elif source.path is not None:
        data = _from_path(source.path, settings.recommend_image_dir, max_bytes, where)
    elif source.url is not None:
        data = _from_url(
            source.url, settings.recommend_allow_image_urls, max_bytes, settings.recommend_image_url_timeout, where
        )
    else:  # the schema forbids this; kept for direct callers
        raise ImageRejected(f"{where}: give one of data_base64, path or url")
    return _check_bytes(data, max_bytes, where)


class QueryImages:
    """Turns the images of a batch of queries into an ``(n, 3, 1280)`` bank + mask (extractor loaded once)."""

    def __init__(self, settings: Any, extractor: Any = None) -> None:
        self.settings = settings
        self._extractor = extractor
        self._lock = threading.Lock()

    def extractor(self) -> Any:
        if self._extractor is None:
            with self._lock:
                if self._extractor is None:
                    from models.vixml import ImageFeatureExtractor

                    self._extractor = ImageFeatureExtractor.packaged()
        return self._extractor

    def bank(self, per_query: list[list[ImageSource]]) -> tuple[np.ndarray, np.ndarray]:
        from models.vixml import MAX_IMAGES, image_bank, load_image

        decoded: list[list[Any]] = []
        for i, sources in enumerate(per_query):
            images = []
            for j, src in enumerate(sources[:MAX_IMAGES]):
                where = f"items[{i}].query.images[{j}]" if len(per_query) > 1 else f"query.images[{j}]"
                data = fetch_bytes(src, self.settings, where)
                try:
                    images.append(load_image(data, MAX_PIXELS))
                except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
                    raise ImageRejected(f"{where}: the image could not be decoded ({type(exc).__name__})") from None
            decoded.append(images)
        return image_bank(decoded, self.extractor())
