"""Security: admin routes need the admin token; server-side paths stay inside their folder;
model artefacts are only ever safetensors + JSON; no SQL is built from strings in app/."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import torch

from app.registry import folders
from models.artefacts import Manifest, ManifestError, assert_safe_weights, write_manifest
from models.bi_encoder import BiEncoder
from tests.conftest import TINY_CONFIG
from tests.helpers import product, wait_job

REPO = Path(__file__).resolve().parents[2]
ADMIN_PREFIX = "/v1/admin"


def _admin_operations(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    ops = []
    for path, methods in app.openapi()["paths"].items():
        if path.startswith(ADMIN_PREFIX):
            ops += [(method.upper(), re.sub(r"\{[^}]+\}", "x", path)) for method in methods]
    return ops


def test_every_admin_route_needs_the_admin_token(client, admin_headers):
    ops = _admin_operations(client.app)
    assert len(ops) >= 8, ops  # index, repair, rebuild, models, promote, rollback(s), retrain
    # Routes hidden from the schema must not carry admin operations past this enumeration.
    hidden = [
        r.path
        for r in client.app.routes
        if "admin" in getattr(r, "path", "") and not getattr(r, "include_in_schema", True)
    ]
    assert not hidden, hidden
    wrong = [
        {"Authorization": "Bearer not-the-admin-token-at-all"},
        {"Authorization": "Bearer " + admin_headers["Authorization"].split()[1][:-1]},  # one char short
    ]
    for method, path in ops:
        res = client.request(method, path)
        assert res.status_code == 401, (method, path, res.status_code, res.text)
        assert res.headers.get("www-authenticate") == "Bearer"
        basic = client.request(method, path, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        assert basic.status_code == 401, (method, path, basic.text)
        for headers in wrong:
            res = client.request(method, path, headers=headers)
            assert res.status_code == 403, (method, path, res.status_code, res.text)
    # The right token passes authentication (whatever the operation then answers).
    assert client.get(f"{ADMIN_PREFIX}/models", headers=admin_headers).status_code == 200


def test_server_side_ingest_paths_are_confined(client, settings, tmp_path):
    allowed = Path(settings.ingest_allowed_dir)
    (allowed / "sub").mkdir(parents=True, exist_ok=True)
    body = f"external_id,title\n{product(1)['external_id']},{product(1)['title']}\n"
    (allowed / "sub" / "ok.csv").write_text(body)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(body)
    (allowed / "link-to-file.csv").symlink_to(outside / "secret.csv")
    (allowed / "link-to-dir").symlink_to(outside, target_is_directory=True)
    (allowed / "inner-link.csv").symlink_to(allowed / "sub" / "ok.csv")

    refused = {
        "../outside/secret.csv": 403,
        "sub/../../outside/secret.csv": 403,
        str(outside / "secret.csv"): 403,  # absolute
        "/etc/passwd": 403,
        "link-to-file.csv": 403,  # a symlink out of the folder
        "link-to-dir/secret.csv": 403,  # a symlinked folder out of the folder
        "sub/ok.csv\x00.csv": 422,
        "": 422,
        "missing.csv": 404,
    }
    for path, code in refused.items():
        res = client.post("/v1/ingest", data={"path": path})
        assert res.status_code == code, (path, res.status_code, res.text)
        detail = str(res.json()["detail"])
        assert str(outside) not in detail and str(allowed.resolve()) not in detail, detail  # no resolved paths
    for path in ("sub/ok.csv", "inner-link.csv"):  # inside, directly or through an inner link
        res = client.post("/v1/ingest", data={"path": path})
        assert res.status_code == 202, path
        assert wait_job(client, res.json()["job_id"])["state"] == "completed", path


def test_retrain_sources_are_names_not_paths(client, admin_headers):
    for source in ("../../etc", "/etc/passwd", "feedback/../../x"):
        res = client.post("/v1/admin/retrain", headers=admin_headers, json={"target": "matcher", "sources": [source]})
        assert res.status_code == 422, (source, res.text)
        assert "sources" in res.text, res.text


def _artefact(folder: Path) -> Path:
    torch.manual_seed(0)
    BiEncoder.from_config(TINY_CONFIG, max_length=32).save(folder)
    write_manifest(folder, Manifest(kind="bi-encoder", backbone="tiny", metrics={}))
    return folder


def test_saved_artefacts_are_safetensors_and_json_only(tmp_path):
    folder = _artefact(tmp_path / "m")
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".txt"}, suffixes
    assert_safe_weights(folder)
    BiEncoder.from_pretrained(folder)  # loads


@pytest.mark.parametrize("name", ["pytorch_model.bin", "weights.pt", "model.pkl", "sub/extra.pickle"])
def test_model_folder_with_a_pickle_is_refused(tmp_path, client, name):
    folder = _artefact(tmp_path / "m")
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x80\x04K\x01.")  # a valid pickle of the int 1
    with pytest.raises(ManifestError, match="only safetensors"):
        folders.register(client.app.state.services.factory, folder, tmp_path / "models")
    with pytest.raises(ManifestError, match="only safetensors"):
        BiEncoder.from_pretrained(folder)
    from models.lea import LeaCrossEncoder

    with pytest.raises(ManifestError, match="only safetensors"):
        LeaCrossEncoder.load(folder)


# -- no SQL from strings -------------------------------------------------------------------------

_SQL_SINKS = {"text", "execute", "exec_driver_sql", "executescript", "executemany"}


def _is_built_string(node: ast.AST) -> bool:
    """f-strings, '...' % x, '...' + x and '...'.format(...): strings assembled at run time."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join")


def _sql_from_strings(source: str) -> list[int]:
    hits = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in _SQL_SINKS and _is_built_string(node.args[0]):
            hits.append(node.lineno)
    return hits


def test_the_sql_check_catches_built_strings():
    bad = 'text(f"SELECT * FROM t WHERE id = {x}")\nconn.execute("DELETE FROM t WHERE id = %s" % x)\n'
    bad += 'cur.execute("SELECT " + col)\nsession.execute(text("SELECT {}".format(x)))\n'
    assert _sql_from_strings(bad) == [1, 2, 3, 4]
    assert _sql_from_strings('text("SELECT 1")\nconn.execute(stmt, {"x": 1})\n') == []


def test_no_sql_built_from_strings_in_app():
    offenders = []
    for path in sorted((REPO / "app").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(REPO)}:{line}" for line in _sql_from_strings(source)]
        offenders += [
            f"{path.relative_to(REPO)}:{source[: m.start()].count(os.linesep) + 1}"
            for m in re.finditer(r"""\btext\(\s*f["']""", source)
        ]
    assert not offenders, f"SQL assembled from strings (use bound parameters): {sorted(set(offenders))}"
