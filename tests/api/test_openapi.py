"""The served OpenAPI schema documents every status each operation can answer.

EXPECTED is the specification: per operation, each error status it may answer and the
codes that status carries there. A new operation without a row fails
`test_every_operation_of_the_schema_has_a_row`; a route that starts raising a new error
without documenting it fails here before schemathesis (tests/hardening) meets it on a
real server. Whether an operation needs a token is checked on the app itself: a request
without one is answered 401 exactly by the operations documented as needing a bearer
token, which document 401 and 403. No server: the app is built in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from privacy.keyring import MasterKey
from service.api.app import create_app
from service.api.openapi import error_codes

Codes = dict[str, set[str]]

AUTH: Codes = {"401": {"unauthorized"}, "403": {"forbidden"}}
LIMITS: Codes = {"429": {"too_many_requests"}, "503": {"unavailable"}}
# Its token is looked up in the database: an operation that needs one may also find the
# database unavailable (503 store_unavailable), besides the limits' 503 unavailable.
AUTHENTICATED: Codes = {**AUTH, **LIMITS, "503": {"unavailable", "store_unavailable"}}
QUERY: Codes = {**AUTHENTICATED, "400": {"invalid_query"}, "413": {"payload_too_large"}}

EXPECTED: dict[tuple[str, str], Codes] = {
    ("GET", "/healthz"): {},
    ("GET", "/readyz"): {"503": {"not_ready"}},
    ("GET", "/metrics"): {},
    ("POST", "/v1/events"): {
        **AUTHENTICATED,
        "400": {"bad_request"},
        "413": {"payload_too_large"},
        "415": {"unsupported_media_type"},
    },
    ("GET", "/v1/metrics"): AUTHENTICATED,
    ("GET", "/v1/budget"): AUTHENTICATED,
    ("POST", "/v1/queries/preview"): QUERY,
    ("POST", "/v1/queries"): {
        **QUERY,
        "403": {"forbidden", "budget_exhausted"},
        "500": {"release_failed"},  # charged, but no answer: the charge stands
        # the Spark engine cannot run it (before the charge), or went away (after it)
        "503": {"unavailable", "store_unavailable", "engine_unavailable"},
    },
    ("GET", "/v1/policy"): AUTHENTICATED,
    ("GET", "/v1/audit"): {**AUTHENTICATED, "400": {"bad_request"}},
    ("POST", "/v1/subjects/erase"): {
        **AUTHENTICATED,
        "400": {"bad_request"},
        "413": {"payload_too_large"},
    },
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("openapi"), MasterKey.generate_base64())
    app = create_app(settings)
    yield TestClient(app)  # no lifespan: nothing here is served past authentication
    app.state.tacit.store.close()


@pytest.fixture(scope="module")
def schema(client: TestClient) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/openapi.json").json()
    return served


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }


def documented_errors(operation: dict[str, Any]) -> Codes:
    return {
        status: set(error_codes(response))
        for status, response in operation["responses"].items()
        if int(status) >= 400
    }


def test_every_operation_of_the_schema_has_a_row(schema: dict[str, Any]) -> None:
    assert set(operations(schema)) == set(EXPECTED), "add a row to EXPECTED for each operation"


@pytest.mark.parametrize("operation", EXPECTED, ids=" ".join)
def test_each_operation_documents_exactly_the_errors_it_can_answer(
    schema: dict[str, Any], operation: tuple[str, str]
) -> None:
    assert documented_errors(operations(schema)[operation]) == EXPECTED[operation]


@pytest.mark.parametrize("operation", EXPECTED, ids=" ".join)
def test_an_operation_answering_401_without_a_token_documents_the_bearer_401_and_403(
    client: TestClient, schema: dict[str, Any], operation: tuple[str, str]
) -> None:
    method, path = operation
    documented = operations(schema)[operation]
    refused = client.request(method, path).status_code == 401
    assert (documented.get("security") == [{"bearer": []}]) is refused
    assert ({"401", "403"} <= set(documented["responses"])) is refused


def test_every_error_response_is_the_envelope_narrowed_to_its_codes(
    schema: dict[str, Any],
) -> None:
    for operation in operations(schema).values():
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            body = response["content"]["application/json"]["schema"]
            assert body["allOf"][0] == {"$ref": "#/components/schemas/ErrorEnvelope"}
            codes = list(error_codes(response))
            assert codes
            assert all(f"`{code}`" in response["description"] for code in codes)


def test_every_refusal_of_the_limits_documents_retry_after(schema: dict[str, Any]) -> None:
    for operation in operations(schema).values():
        for status in ("429", "503"):
            if status in operation["responses"]:
                assert "Retry-After" in operation["responses"][status]["headers"]


def test_no_operation_documents_fastapis_422(schema: dict[str, Any]) -> None:
    # Invalid parameters are answered 400 bad_request (service/api/app.py).
    assert not any("422" in op["responses"] for op in operations(schema).values())
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_the_schema_is_the_same_on_every_build(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The routes' responses are shared objects: completing one app's schema must not
    # change what the next app documents.
    def build() -> dict[str, Any]:
        settings = make_settings(tmp_path_factory.mktemp("app"), MasterKey.generate_base64())
        app = create_app(settings)
        try:
            return app.openapi()
        finally:
            app.state.tacit.store.close()

    assert build() == build()
