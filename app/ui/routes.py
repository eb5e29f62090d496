"""Serve the web UI under /ui: a few HTML pages and their static files, no build step.

Every page is `templates/layout.html` (shared nav bar) around `templates/<page>.html`; the
pages' scripts call the JSON API with fetch() and insert API data with textContent only.
The router stays out of the OpenAPI schema (`include_in_schema=False` where it is included).
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

# path segment -> nav label; the order is the nav bar's
PAGES: dict[str, str] = {
    "catalogue": "Catalogue",
    "match": "Match tester",
    "review": "Review queue",
    "models": "Models",
    "jobs": "Jobs",
}
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# No inline script or style, nothing from another origin: API data can never run as code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


def _nav(active: str) -> str:
    links = []
    for slug, label in PAGES.items():
        current = ' aria-current="page" class="active"' if slug == active else ""
        links.append(f'<a href="/ui/{slug}"{current}>{label}</a>')
    return "\n      ".join(links)


@cache
def render_page(page: str) -> str:
    """The page's HTML: the layout filled with the nav bar, the page body and its script."""
    layout = (TEMPLATE_DIR / "layout.html").read_text(encoding="utf-8")
    body = (TEMPLATE_DIR / f"{page}.html").read_text(encoding="utf-8")
    return (
        layout.replace("{{title}}", PAGES[page])
        .replace("{{page}}", page)
        .replace("{{nav}}", _nav(page))
        .replace("{{body}}", body)
    )


@lru_cache(maxsize=1)
def static_files() -> dict[str, Path]:
    """The files under static/ by name: only these are served (no path is ever joined)."""
    return {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES}


@router.get("")
@router.get("/")
async def ui_home() -> RedirectResponse:
    return RedirectResponse("/ui/catalogue", status_code=302)


@router.get("/static/{name}")
async def ui_static(name: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    path = static_files().get(name)
    if path is None:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)


@router.get("/{page}", response_class=HTMLResponse)
async def ui_page(page: Annotated[str, PathParam(max_length=32)]) -> HTMLResponse:
    if page not in PAGES:
        raise HTTPException(404, f"no UI page {page!r}; pages: {', '.join(PAGES)}")
    return HTMLResponse(render_page(page), headers=SECURITY_HEADERS)
