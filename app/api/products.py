"""Catalogue API: create/update, read, delete and list products."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServicesDep
from app.api.responses import COMMON, errors
from app.db import products as repo
from app.db.tables import Product
from app.pipeline.upsert import upsert_batch
from app.schemas.product import (
    EXTERNAL_ID_PATTERN,
    MAX_ID_CHARS,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductRow,
    ProductWriteResult,
)
from models.product_text import norm_key

router = APIRouter(prefix="/v1/products", tags=["products"], responses=COMMON)

ExternalIdPath = Annotated[
    str,
    Path(min_length=1, max_length=MAX_ID_CHARS, pattern=EXTERNAL_ID_PATTERN, description="your product id"),
]


def to_out(product: Product) -> ProductOut:
    return ProductOut(
        external_id=product.external_id,
        title=product.title,
        brand=product.brand,
        category=product.category,
        price=product.price,
        currency=product.currency,
        description=product.description,
        image_urls=list(product.image_urls or []),
        attributes=dict(product.attributes or {}),
        source=product.source,
        content_hash=product.content_hash,
        created_at=product.created_at,
        updated_at=product.updated_at,
    )


@router.put(
    "/{external_id}",
    response_model=ProductWriteResult,
    responses={201: {"model": ProductWriteResult, "description": "created"}, **errors(409)},
)
async def put_product(external_id: ExternalIdPath, body: ProductIn, services: ServicesDep, response: Response):
    """Create or replace a product. Idempotent: the same body twice changes nothing."""
    try:
        row = ProductRow(external_id=external_id, **body.model_dump())
    except ValueError as exc:
        raise HTTPException(422, f"external_id: {exc}") from exc
    runtime = services.require_runtime()

    def write() -> tuple[Product, bool, bool, int]:
        outcomes, _ = upsert_batch(services.factory, runtime.encoder, [row])
        runtime.index.catch_up()  # the change is searchable before we answer
        version = runtime.index.index.version
        with services.factory() as session:
            product = repo.get_by_external_id(session, row.external_id)
        if product is None:  # deleted by a concurrent request between our write and this read
            raise HTTPException(status.HTTP_409_CONFLICT, f"product {external_id!r} was deleted concurrently")
        return product, outcomes[0].created, outcomes[0].changed, version

    product, created, changed, version = await run_in_threadpool(write)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return ProductWriteResult(product=to_out(product), created=created, changed=changed, index_version=version)


@router.get("/{external_id}", response_model=ProductOut, responses=errors(404))
async def get_product(external_id: ExternalIdPath, services: ServicesDep):
    def read() -> Product | None:
        with services.factory() as session:
            return repo.get_by_external_id(session, external_id)

    product = await run_in_threadpool(read)
    if product is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"product {external_id!r} not found")
    return to_out(product)


@router.delete("/{external_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def delete_product(external_id: ExternalIdPath, services: ServicesDep) -> Response:
    def remove() -> int | None:
        with services.factory() as session, session.begin():
            pid = repo.delete_product(session, external_id)
        if pid is not None:
            services.catch_up()
        return pid

    if await run_in_threadpool(remove) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"product {external_id!r} not found")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("", response_model=ProductPage)
async def list_products(
    services: ServicesDep,
    query: Annotated[str | None, Query(max_length=200, description="substring of the title")] = None,
    brand: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
):
    try:
        after = repo.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise HTTPException(422, "cursor: not a cursor issued by this API") from exc

    def read() -> list[Product]:
        with services.factory() as session:
            return repo.list_products(session, query or None, norm_key(brand), limit + 1, after)

    rows = await run_in_threadpool(read)
    page, more = rows[:limit], len(rows) > limit
    return ProductPage(
        items=[to_out(p) for p in page],
        next_cursor=repo.encode_cursor(page[-1].id) if more and page else None,
    )
