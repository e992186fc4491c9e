"""The OpenAPI document: made from the app's route table (a route no operation describes yet is
listed all the same), in OpenAPI 3.0.3's dialect, covering EzData's and ESP-AI's routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from devicecloud.app import create_app
from devicecloud.config import load_settings
from devicecloud.web import api_v1, espai_http, ezdata_http, openapi
from devicecloud.web.api_v1 import events as api_events


async def rename(request: Request) -> Response:
    """Rename a device."""
    return Response()


class Shape(BaseModel):
    kind: Literal["a"] = "a"
    note: str | None = Field(None, examples=["hello"])
    inner: Inner | None = None
    nothing: None = None
    count: int = Field(0, gt=0)


class Inner(BaseModel):
    x: int


Shape.model_rebuild()


def test_every_api_route_of_the_app_is_in_the_document_in_its_order() -> None:
    app = create_app(load_settings({}))
    spec = openapi.api_document(app.routes, (*espai_http.OPERATIONS, *api_v1.OPERATIONS,
                                             *api_events.OPERATIONS))
    assert spec["openapi"] == "3.0.3"
    listed = [(method.upper(), path) for path, methods in spec["paths"].items()
              for method in methods]
    served = [(method, route.path_format) for route in [*ezdata_http.routes(),
                                                        *espai_http.routes(), *api_v1.routes(),
                                                        *api_events.routes()]
              for method in sorted(route.methods - {"HEAD"})]  # type: ignore[attr-defined]
    assert sorted(listed) == sorted(served)
    assert next(iter(spec["paths"])) == "/api/v2/device/registerMac"
    assert all(op["tags"] != [openapi.UNDESCRIBED_TAG]
               for methods in spec["paths"].values() for op in methods.values())
    assert not any(path.startswith(("/console", "/docs", "/healthz", "/metrics"))
                   for path in spec["paths"])


def test_a_route_no_operation_describes_is_listed_from_the_route_itself() -> None:
    table = [Route("/api/v1/devices/{token}/name", rename, methods=["PUT"]),
             Mount("/api/v1/things", routes=[Route("/{thing_id}", rename, methods=["GET"])]),
             Route("/console/elsewhere", rename)]
    paths = openapi.api_document(table)["paths"]
    assert set(paths) == {"/api/v1/devices/{token}/name", "/api/v1/things/{thing_id}"}
    op = paths["/api/v1/devices/{token}/name"]["put"]
    assert op["summary"] == "Rename a device." and op["tags"] == [openapi.UNDESCRIBED_TAG]
    assert op["parameters"] == [{"name": "token", "in": "path", "required": True,
                                 "schema": {"type": "string"}}]
    assert set(op["responses"]) == {"default"}


def test_schemas_are_in_openapi_30s_dialect() -> None:
    spec = openapi.document([openapi.Operation("POST", "/api/x", "x", "t", (Shape,), body=Shape)])
    shape = spec["components"]["schemas"]["Shape"]["properties"]
    assert shape["kind"]["enum"] == ["a"] and "const" not in shape["kind"]
    assert shape["note"] == {"type": "string", "default": None, "title": "Note",
                             "nullable": True, "example": "hello"}
    assert shape["inner"]["allOf"] == [{"$ref": "#/components/schemas/Inner"}]
    assert shape["inner"]["nullable"] is True
    assert shape["nothing"]["nullable"] is True and shape["nothing"]["enum"] == [None]
    assert shape["count"]["minimum"] == 0 and shape["count"]["exclusiveMinimum"] is True
    assert '"type": "null"' not in str(spec) and "examples" not in str(spec)
