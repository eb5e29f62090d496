from __future__ import annotations

from tests.helpers import product


def _put(client, n: int, **overrides):
    body = product(n, **overrides)
    ext = body.pop("external_id")
    return client.put(f"/v1/products/{ext}", json=body)


def test_put_creates_then_is_idempotent(client):
    first = _put(client, 1)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True
    again = _put(client, 1)
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["product"]["content_hash"] == first.json()["product"]["content_hash"]


def test_put_update_is_searchable_immediately(client):
    _put(client, 1)
    updated = _put(client, 1, title="Completely different gadget name")
    assert updated.json()["changed"] is True
    res = client.post("/v1/match", json={"offer": {"title": "Completely different gadget name"}, "top_k": 5})
    assert res.status_code == 200, res.text
    top = res.json()["candidates"][0]
    assert top["external_id"] == "p-00001"
    assert top["title"] == "Completely different gadget name"
    assert res.json()["index_version"] >= updated.json()["index_version"]


def test_get_and_delete(client):
    _put(client, 2, attributes={"colour": "red"}, image_urls=["https://example.com/a.jpg"])
    got = client.get("/v1/products/p-00002")
    assert got.status_code == 200
    assert got.json()["attributes"] == {"colour": "red"}
    assert client.delete("/v1/products/p-00002").status_code == 204
    assert client.get("/v1/products/p-00002").status_code == 404
    assert client.delete("/v1/products/p-00002").status_code == 404
    res = client.post("/v1/match", json={"offer": {"title": product(2)["title"]}, "top_k": 5})
    assert all(c["external_id"] != "p-00002" for c in res.json()["candidates"])


def test_list_with_query_brand_and_cursor(client):
    for n in range(1, 8):
        _put(client, n)
    page = client.get("/v1/products", params={"limit": 3}).json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    seen = [p["external_id"] for p in page["items"]]
    while page["next_cursor"]:
        page = client.get("/v1/products", params={"limit": 3, "cursor": page["next_cursor"]}).json()
        seen += [p["external_id"] for p in page["items"]]
    assert seen == [f"p-{n:05d}" for n in range(1, 8)]
    acme = client.get("/v1/products", params={"brand": " ACME "}).json()["items"]
    assert {p["brand"] for p in acme} == {"Acme"}
    hits = client.get("/v1/products", params={"query": "Model 5"}).json()["items"]
    assert [p["external_id"] for p in hits] == ["p-00005"]
    # LIKE wildcards in the query are literal characters.
    assert client.get("/v1/products", params={"query": "%"}).json()["items"] == []


def test_bad_cursor_is_422(client):
    res = client.get("/v1/products", params={"cursor": "not-a-cursor"})
    assert res.status_code == 422
    assert "cursor" in res.text


def test_bad_product_bodies_are_422_and_change_nothing(client):
    _put(client, 3)
    before = client.get("/v1/products/p-00003").json()
    cases = [
        {"brand": "x"},  # missing title
        {"title": ""},
        {"title": "   "},
        {"title": "!!! ---"},
        {"title": 42},
        {"title": "ok", "price": "abc"},
        {"title": "ok", "price": -1},
        {"title": "ok", "unknown_field": 1},
        {"title": "ok", "currency": "euros"},
        {"title": "ok", "image_urls": "not a list"},
    ]
    for body in cases:
        res = client.put("/v1/products/p-00003", json=body)
        assert res.status_code == 422, (body, res.text)
        assert res.json()["detail"], body
    res = client.put("/v1/products/p-00003", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 422
    res = client.put(
        "/v1/products/p-00003",
        content=b'{"title": "x", "price": NaN}',
        headers={"content-type": "application/json"},
    )
    assert res.status_code == 422
    after = client.get("/v1/products/p-00003").json()
    assert after == before


def test_huge_title_is_413(client):
    res = client.put("/v1/products/big", json={"title": "x" * 10_000_000})
    assert res.status_code == 413
    assert "limit" in res.json()["detail"]
    assert client.get("/v1/products/big").status_code == 404


def test_long_title_under_body_limit_is_422(client):
    res = client.put("/v1/products/long", json={"title": "x" * 5000})
    assert res.status_code == 422
    assert "title" in res.text


def test_ids_with_surrounding_whitespace_are_refused(client):
    for bad in ("%20lead", "trail%20", "tab%09"):
        res = client.put(f"/v1/products/{bad}", json={"title": "x"})
        assert res.status_code == 422, (bad, res.text)
    ok = client.put("/v1/products/z%E2%9F%B3%C3%A9", json={"title": "unicode id"})
    assert ok.status_code == 201 and ok.json()["product"]["external_id"] == "z\u27f3\u00e9"
    assert client.get("/v1/products/z%E2%9F%B3%C3%A9").status_code == 200
