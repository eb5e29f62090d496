"""Admin operations (bearer token): index check, repair, rebuild and snapshot."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from app.api.deps import AdminDep, ServicesDep
from app.api.responses import COMMON, errors
from app.services import NotReady

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep], responses={**COMMON, **errors(401, 403)}
)


def _index(services):  # type: ignore[no-untyped-def]
    if services.index is None:
        raise NotReady("the index is still loading")
    return services.index


@router.get("/index")
async def index_status(services: ServicesDep) -> dict:
    index = _index(services)
    report = await run_in_threadpool(index.verify, False)
    return {
        "stats": index.index.stats(),
        "consistent": report.consistent,
        "missing": len(report.missing),
        "orphans": len(report.orphans),
    }


@router.post("/index/repair")
async def index_repair(services: ServicesDep) -> dict:
    report = await run_in_threadpool(_index(services).verify, True)
    return {"repaired": report.repaired, "missing": len(report.missing), "orphans": len(report.orphans)}


@router.post("/index/rebuild")
async def index_rebuild(services: ServicesDep) -> dict:
    index = _index(services)
    await run_in_threadpool(index.rebuild)
    path = await run_in_threadpool(index.snapshot)
    return {"stats": index.index.stats(), "snapshot": str(path)}
