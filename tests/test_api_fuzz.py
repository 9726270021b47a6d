"""A bounded fuzz run over the OpenAPI schema (schemathesis): whatever a client sends, no 5xx.

Every operation gets a fixed number of generated requests (valid and invalid), derandomised so a
failure reproduces. Responses must not be server errors and must match the documented schemas.
A captioner is plugged in so that /api/caption's designed 503 ("no captioning model") is not what
gets tested here (tests/test_api.py covers it).
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.planted import PlantedEncoder  # noqa: E402
from tests.test_api import FakeCaptioner, build_catalog, build_library  # noqa: E402

EXAMPLES_PER_OPERATION = 10


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("fuzz")
    library = build_library(base / "roots" / "lib")
    build_catalog(base / "home", library, None)
    app = create_app(
        Settings(home=base / "home", library_roots=[base / "roots"], max_upload_mb=0.2),
        encoder=PlantedEncoder(),
        captioner=FakeCaptioner(),
    )
    # schemathesis runs the app's lifespan itself and keeps it for the session.
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12  # every endpoint of the API is in the schema, and fuzzed
    statuses: dict[str, set[int]] = {}
    for operation in operations:
        try:
            fuzz(operation, mode, statuses.setdefault(operation.label, set()))
        except Unsatisfiable:
            # No parameters and no body: nothing to make invalid (healthz, status).
            assert mode == GenerationMode.NEGATIVE
            del statuses[operation.label]
    assert len(statuses) >= 10 and all(statuses.values()), statuses
    seen = set().union(*statuses.values())
    # Not vacuous: valid requests succeed somewhere, invalid ones are refused with 4xx.
    assert (200 in seen) if mode == GenerationMode.POSITIVE else (422 in seen), statuses
    assert all(code < 500 for codes in statuses.values() for code in codes)


def fuzz(operation: Any, mode: GenerationMode, seen: set[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
        seen.add(response.status_code)

    run()
