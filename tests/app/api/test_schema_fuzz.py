"""Schemathesis over the whole OpenAPI schema, in-process against the ASGI app on SQLite.

Every operation gets positive data (schema-valid requests) and negative data (requests that
break the schema); then stateful runs chain operations along the links schemathesis infers
(PUT a product -> GET / DELETE it, POST a job -> GET /v1/jobs/{id}, ...). Passing means: no
server error anywhere, no 2xx for a request whose body breaks the schema, and every response
has a documented status and conforms to its schema. Business rules stricter than the schema
(a title needs a letter or digit, a feedback label needs a catalogue product) make "a
schema-valid request refused" expected, so that check is off; the admin token is always sent
(authentication is tested in test_operations.py / test_bad_inputs.py).

Generation is seeded (SCHEMA_FUZZ_SEED, default 16) so CI is reproducible; set another seed or
SCHEMA_FUZZ_EXAMPLES (default 25 per operation and mode) to search further.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import ignored_auth, negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation

from tests.conftest import ADMIN_TOKEN, make_settings

SEED = int(os.environ.get("SCHEMA_FUZZ_SEED", "16"))
EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "25"))
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ALWAYS_EXCLUDED = [positive_data_acceptance, ignored_auth]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, tiny_encoder):
    from fastapi.testclient import TestClient

    from app.db.migrate import upgrade
    from app.main import create_app

    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{folder / 'fuzz.db'}"
    upgrade(url)
    app = create_app(make_settings(folder / "var", url), encoder=tiny_encoder, background_load=False)
    with TestClient(app) as client:
        client.put("/v1/products/seed-1", json={"title": "Seed product one", "brand": "Acme"})
        yield app
    assert app.state.unhandled_errors == 0, "a request reached the catch-all 500 handler"


def _schema(app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # 413 (a body over MAX_BODY_BYTES) is a rejection too; schemathesis's list lacks it.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


def _body_is_negative(case: Any) -> bool:
    meta = case.meta
    info = meta.components.get(ParameterLocation.BODY) if meta is not None else None
    return info is not None and info.mode.is_negative


def _excluded(case: Any) -> list:
    # "No 2xx for a schema-invalid body": negative_data_rejection runs whenever the body breaks
    # the schema. A request whose only fault is in the path, query or headers is still checked
    # for server errors and conformance, but not for rejection: a "wrong type" there is no fault
    # on the wire (any number is also a valid string once it is in a URL), so that check flagged
    # valid requests at random. Repeated query parameters have their own tests
    # (tests/app/api/test_input_limits.py).
    if _body_is_negative(case):
        return ALWAYS_EXCLUDED
    return [*ALWAYS_EXCLUDED, negative_data_rejection]


def _fuzz(operation: Any, mode: GenerationMode) -> str | None:
    """Run one operation in one mode; the failure report, or None."""

    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        case.headers = {**(case.headers or {}), **AUTH}
        case.call_and_validate(excluded_checks=_excluded(case))

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            return f"{operation.label} [{mode.value}]: no request could be generated"
        return None  # nothing to break (no parameters, no body)
    except BaseException as exc:  # noqa: BLE001 - schemathesis raises FailureGroup (an ExceptionGroup)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return f"{operation.label} [{mode.value}]:\n{exc}"
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation(fuzz_app, mode):
    schema = _schema(fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25  # the whole API, admin and jobs included
    failures = [report for op in operations if (report := _fuzz(op, mode)) is not None]
    assert not failures, f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(failures)


def _reset_catalogue(client: Any) -> None:
    """Delete every product but the seed one and put the seed back as the fixture wrote it."""
    for _ in range(20):
        items = client.get("/v1/products", params={"limit": 500}, headers=AUTH).json()["items"]
        extra = [p["external_id"] for p in items if p["external_id"] != "seed-1"]
        if not extra:
            break
        for external_id in extra:
            client.delete(f"/v1/products/{quote(external_id, safe='')}", headers=AUTH)
    else:
        raise AssertionError(f"products that cannot be deleted: {extra[:5]}")
    client.put("/v1/products/seed-1", json={"title": "Seed product one", "brand": "Acme"}, headers=AUTH)


def test_stateful_links(fuzz_app):
    schema = _schema(fuzz_app)
    base = schema.as_state_machine()
    transitions = [name for name in dir(base) if "__" in name and not name.startswith(("_", "RANDOM"))]
    assert len(transitions) >= 10, transitions  # PUT -> GET/DELETE product, POST job -> GET job, ...

    calls: list[str] = []
    client = TestClient(fuzz_app)  # the fixture's client keeps the app started

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Links feed one response into the next request and hypothesis replays examples, so
            # each example starts from the same catalogue (the seed product alone): products left
            # by the last example made the replay draw different data (FlakyStrategyDefinition).
            _reset_catalogue(client)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            calls.append(case.operation.label)
            return {"headers": AUTH}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, excluded_checks=_excluded(case), transport_kwargs=kwargs or None)

    Workflow.run(
        settings=settings(
            max_examples=2 * EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
    )
    assert len(set(calls)) >= 8, sorted(set(calls))  # the chains reached that many operations
