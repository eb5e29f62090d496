"""R4, upsert + delete variant: match clients run while one thread updates, creates and deletes
products through /v1/products/{id} and another swaps in rebuilt indexes. No 5xx; no torn read
(every candidate's metadata belongs to its id, no id twice in one answer, every id is a real
product); each client sees index versions that never go back; afterwards DB == index.
(The model-promotion swap under traffic is tests/app/registry/test_promotion.py.)"""

from __future__ import annotations

import random
import re
import threading
import time

from sqlalchemy import select

from app.db.tables import Product
from tests.helpers import product

N_START, N_MAX = 60, 90
N_WRITES = 45
SEED = 5


def _title(n: int, rev: int) -> str:
    return product(n)["title"] + (f" rev {rev}" if rev else "")


def test_match_during_upserts_deletes_and_index_swaps(client, admin_headers):
    for n in range(1, N_START + 1):
        body = product(n)
        assert client.put(f"/v1/products/{body.pop('external_id')}", json=body).status_code == 201

    stop = threading.Event()
    answers: list[list[tuple[int, int | None, list[dict]]]] = [[], [], []]
    writes: list[tuple[str, int]] = []
    swaps: list[int] = []
    errors: list[BaseException] = []

    def matcher(seen: list, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                n = rng.randint(1, N_MAX)
                res = client.post("/v1/match", json={"offer": {"title": product(n)["title"]}, "top_k": 5})
                body = res.json() if res.status_code == 200 else {}
                seen.append((res.status_code, body.get("index_version"), body.get("candidates", [])))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer() -> None:
        rng = random.Random(SEED)
        try:
            for rev in range(1, N_WRITES + 1):
                n = rng.randint(1, N_MAX)
                ext = product(n)["external_id"]
                if rng.random() < 0.3:
                    res = client.delete(f"/v1/products/{ext}")
                    writes.append(("delete", res.status_code))
                else:
                    body = {**product(n), "title": _title(n, rev)}
                    body.pop("external_id")
                    res = client.put(f"/v1/products/{ext}", json=body)
                    writes.append(("put", res.status_code))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    def swapper() -> None:
        try:
            while not stop.wait(0.3):
                swaps.append(client.post("/v1/admin/index/rebuild", headers=admin_headers).status_code)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=matcher, args=(seen, i)) for i, seen in enumerate(answers)]
    threads += [threading.Thread(target=writer), threading.Thread(target=swapper)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert time.monotonic() - started < 120

    assert len(writes) == N_WRITES and swaps, (writes, swaps)
    assert all(code in (200, 201) for op, code in writes if op == "put"), writes
    assert all(code in (204, 404) for op, code in writes if op == "delete"), writes
    assert all(code == 200 for code in swaps), swaps

    id_pattern = re.compile(r"^p-(\d{5})$")
    for seen in answers:
        assert len(seen) >= 10, len(seen)
        assert all(code == 200 for code, _, _ in seen), [c for c, _, _ in seen if c != 200][:5]
        versions = [v for _, v, _ in seen]
        assert all(isinstance(v, int) for v in versions)
        assert versions == sorted(versions), "a client saw the index go back to an older version"
        for _, _, candidates in seen:
            ids = [c["external_id"] for c in candidates]
            assert len(ids) == len(set(ids)) and len(ids) <= 5, ids
            for c in candidates:
                m = id_pattern.match(c["external_id"])
                assert m, c
                n = int(m.group(1))
                assert 1 <= n <= N_MAX
                # Metadata from the same product row as the id: its own title (any revision) and brand.
                assert c["title"] == product(n)["title"] or c["title"].startswith(product(n)["title"] + " rev "), c
                assert c["brand"] == product(n)["brand"], c

    services = client.app.state.services
    services.catch_up()
    report = client.get("/v1/admin/index", headers=admin_headers).json()
    assert report["consistent"], report
    with services.factory() as s:
        db_ids = set(s.scalars(select(Product.id)))
    assert set(services.index.index.ids().tolist()) == db_ids
