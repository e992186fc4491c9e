"""Schemathesis on the OpenAPI document against a real server, on a fixed budget: every documented
operation, fed positive and negative data, answers without a 5xx and with a documented status,
content type, headers and body, and the server logs no traceback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.schemas import APIOperation
from support.espai import Tenant, add_device, new_tenant
from support.server import Server, random_mac

from devicecloud.app import create_app
from devicecloud.config import load_settings
from devicecloud.web import api_v1, espai_http, openapi
from devicecloud.web.api_v1 import events as api_events

EXAMPLES = 15  # per operation and mode: the whole module runs in well under a minute
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance,
          checks.response_headers_conformance]
# The document the server serves (a test below proves it); loaded here so that every operation
# is a test of its own. (`schemathesis.pytest.from_fixture` needs pytest internals 9.x dropped.)
DOCUMENT = openapi.api_document(create_app(load_settings({})).routes,
                                (*espai_http.OPERATIONS, *api_v1.OPERATIONS,
                                 *api_events.OPERATIONS))
# The event stream answers for as long as the client listens: tests/integration/test_events.py
# drives it (and its refusals) instead.
OPERATIONS = [result.ok() for result in schemathesis.openapi.from_dict(DOCUMENT)
              .get_all_operations() if result.ok().path != api_events.EVENTS]


def _has_input(operation: APIOperation) -> bool:
    """Whether data can be invalid for it: it takes a body or query parameters."""
    doc = DOCUMENT["paths"][operation.path][operation.method.lower()]
    return "requestBody" in doc or any(p["in"] == "query" for p in doc.get("parameters", ()))


RUNS = [pytest.param(operation, mode, id=f"{operation.label} {mode.value}")
        for operation in OPERATIONS for mode in GenerationMode
        if mode is GenerationMode.POSITIVE or _has_input(operation)]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own, so that its log is this module's alone."""
    instance = Server(tmp_path_factory.mktemp("schemathesis") / "data").start()
    yield instance
    assert instance.stop() == 0, instance.log()
    assert "Traceback" not in instance.log(), instance.log()


@pytest.fixture(scope="module")
def tenant(target: Server) -> Tenant:
    """An account with a device, so that its list has a row to check."""
    tenant = new_tenant(target)
    assert add_device(target, tenant, random_mac())["success"] is True
    return tenant


def test_the_server_serves_this_document(target: Server) -> None:
    assert httpx.get(f"{target.url}/openapi.json").json() == DOCUMENT


@pytest.mark.parametrize(("operation", "mode"), RUNS)
def test_every_operation_answers_as_documented(operation: APIOperation, mode: GenerationMode,
                                               target: Server, tenant: Tenant) -> None:
    key = {"authorization": f"Bearer {tenant.open_api_key}"}  # as /api/v1 needs it

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=target.url, headers=key, checks=CHECKS, timeout=10)

    answers_as_documented()
