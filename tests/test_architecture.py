"""The layering of docs/architecture.md, as tests.

* The import-linter contracts of ``pyproject.toml`` ([tool.importlinter]) hold for the code as it
  is, and each of them breaks when a violating import is added to the import graph (so the check
  itself cannot silently pass everything).
* All SQL is in ``app/db``: elsewhere in ``app/`` sqlalchemy is imported only for the session
  and engine types and its exceptions, never for query constructs (``select``, ``update``,
  ``func``, ``text``, dialect inserts ...). import-linter sees an outside package as one module,
  so this rule reads the import statements itself; it too is shown to catch a violation.

The type check is tests/test_typing.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = str(ROOT / "pyproject.toml")

# A dev dependency: a missing install fails here instead of skipping the layering check.
from importlinter import configuration  # noqa: E402
from importlinter.application import use_cases  # noqa: E402
from importlinter.application.app_config import settings  # noqa: E402


class _WithExtraImport:
    """A graph builder that adds one import to the real graph (a deliberate violation)."""

    def __init__(self, builder: Any, importer: str, imported: str) -> None:
        self.builder, self.importer, self.imported = builder, importer, imported

    def build(self, **kwargs: Any) -> Any:
        graph = self.builder.build(**kwargs)
        graph.add_import(importer=self.importer, imported=self.imported, line_number=1, line_contents="import")
        return graph


@pytest.fixture
def linter() -> Iterator[None]:
    configuration.configure()
    use_cases._register_built_in_contract_types()
    yield
    configuration.configure()


def _report(**kwargs: Any) -> dict[str, bool]:
    """``{contract id: kept}`` for the contracts in pyproject.toml."""
    options = use_cases.read_user_options(PYPROJECT)
    report = use_cases.create_report(options, cache_dir=None, **kwargs)
    return {contract.contract_options["id"]: check.kept for contract, check in report.get_contracts_and_checks()}


def test_import_contracts_hold() -> None:
    # The command line, as a developer runs it; its output names each broken import chain.
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--config", PYPROJECT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        ("models.bm25", "app.search.lexicon", "models-standalone"),
        ("models.product_text", "training.data.records", "models-standalone"),
        ("training.metrics", "app.core.config", "training-offline"),
        ("app.pipeline.rerank", "training.train_matcher", "serving-without-training"),
        ("app.recommend.service", "training.recommend.train", "serving-without-training"),
        ("app.search.lexicon", "app.pipeline.match", "data-layer"),
        ("app.db.products", "app.api.deps", "data-layer"),
        ("app.core.config", "models.hybrid_blocking", "settings-at-the-bottom"),
        ("app.pipeline.match", "app.registry.folders", "app-layers"),
        ("app.jobs.ingest", "app.services", "app-layers"),
        ("app.registry.folders", "app.jobs.promote", "app-acyclic"),
        ("app.jobs.runner", "app.retrain.job", "app-acyclic"),
        ("app.jobs.match_feed.runner", "app.jobs.match_feed.ray_engine", "app-acyclic"),
    ],
)
def test_each_contract_catches_a_violation(linter: None, importer: str, imported: str, contract: str) -> None:
    assert all(_report().values())
    settings.configure(GRAPH_BUILDER=_WithExtraImport(settings.GRAPH_BUILDER, importer, imported))
    kept = _report()
    assert kept[contract] is False, f"{importer} -> {imported} should break {contract}"


#: What app/ outside app/db may import from sqlalchemy (None: anything of that module).
SQLALCHEMY_OUTSIDE_DB: dict[str, set[str] | None] = {
    "sqlalchemy": {"Engine"},
    "sqlalchemy.orm": {"Session", "sessionmaker"},
    "sqlalchemy.exc": None,
}


def sqlalchemy_outside_db(app_dir: Path) -> list[str]:
    """``file:line name`` of every sqlalchemy import in ``app_dir`` outside its ``db`` package
    that SQLALCHEMY_OUTSIDE_DB does not allow."""
    found = []
    for path in sorted(app_dir.rglob("*.py")):
        if path.relative_to(app_dir).parts[0] == "db":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [(a.name, "*") for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                names = [(str(node.module), a.name) for a in node.names]
            else:
                continue
            for module, name in names:
                allowed = SQLALCHEMY_OUTSIDE_DB.get(module, set())
                if allowed is not None and name not in allowed:
                    found.append(f"{path.relative_to(app_dir.parent)}:{node.lineno} {module}.{name}")
    return found


def test_sql_only_in_app_db() -> None:
    assert sqlalchemy_outside_db(ROOT / "app") == []


def test_sql_rule_catches_a_violation(tmp_path: Path) -> None:
    (tmp_path / "app" / "db").mkdir(parents=True)
    (tmp_path / "app" / "api").mkdir()
    (tmp_path / "app" / "db" / "rows.py").write_text("from sqlalchemy import select, update\n")
    (tmp_path / "app" / "api" / "fine.py").write_text(
        "from sqlalchemy.exc import OperationalError\nfrom sqlalchemy.orm import Session\n"
    )
    assert sqlalchemy_outside_db(tmp_path / "app") == []
    (tmp_path / "app" / "api" / "route.py").write_text(
        "import sqlalchemy\nfrom sqlalchemy import func, select\nfrom sqlalchemy.orm import defer\n"
    )
    assert sqlalchemy_outside_db(tmp_path / "app") == [
        "app/api/route.py:1 sqlalchemy.*",
        "app/api/route.py:2 sqlalchemy.func",
        "app/api/route.py:2 sqlalchemy.select",
        "app/api/route.py:3 sqlalchemy.orm.defer",
    ]
