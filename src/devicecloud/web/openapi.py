"""OpenAPI 3.0.3 for the HTTP APIs, built from the app's route table and pydantic models, and a
`/docs` page that works offline.

The document lists every HTTP route under the API prefixes (`API_PREFIXES`) that the app serves,
in the route table's order: each described by its `Operation` (EzData's from
`web/ezdata_schemas.py`, the others given to `routes`), or, for a route none describes yet, by
its path, method and handler's docstring. It says OpenAPI 3.0.3 because the Swagger UI that can
be installed (`swagger-ui-bundle`, Swagger UI 4) reads no 3.1: pydantic's JSON Schemas are
rewritten to 3.0's dialect (`nullable`, `enum` for `const`, one `example`).

`routes(operations)` serves the document at `/openapi.json` and a page at `/docs`: Swagger UI
from the `swagger-ui-bundle` package when it is installed (its files are served from
`/docs/static`, nothing comes from a CDN), with a plain server-rendered listing of every path,
method and schema inside `<noscript>` (and in its place when the package is absent).
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from devicecloud import __version__

REF = "#/components/schemas/{model}"
NO_CONTENT = ""
"""The `response_media_type` of an operation that answers 204 without a body."""


@dataclass(frozen=True)
class Operation:
    """One documented endpoint."""

    method: str
    path: str
    summary: str
    tag: str
    responses: tuple[type[BaseModel], ...]
    description: str = ""
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    query: type[BaseModel] | None = None
    path_params: tuple[str, ...] = ()
    security: str | None = None
    response_media_type: str = "application/json"
    errors: tuple[tuple[int, type[BaseModel]], ...] = ()
    """Other HTTP statuses the endpoint answers, each with its body's model."""
    error_media_type: str = "application/json"
    described: bool = True
    """False for a route no `Operation` describes yet: any status, any content."""


API_PREFIXES = ("/api/", "/devices/", "/sdk/", "/firmware/", "/files/")
"""The paths of the HTTP APIs; the console, the docs and the service's own endpoints are not."""
UNDESCRIBED_TAG = "Not described yet"
SECURITY_SCHEMES = {
    "open_api_key": {
        "type": "apiKey", "in": "header", "name": "authorization",
        "description": "The account's 32-hex open_api_key, raw (a `Bearer ` prefix is accepted).",
    },
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "`Authorization: Bearer <open_api_key>`, the account's key."},
}


def served(table: Sequence[BaseRoute], operations: Sequence[Operation]) -> list[Operation]:
    """The operation of every API route in `table` (mounted ones too), in its order: the one
    `operations` gives for its path and method, or one made from the route itself."""
    known = {(op.method, op.path): op for op in operations}
    found = []
    for route in _http_routes(table, ""):
        path = route.path_format
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append(known.get((method, path)) or _undescribed(route, method))
    return found


def _http_routes(table: Sequence[BaseRoute], prefix: str) -> Iterator[Route]:
    for route in table:
        if isinstance(route, Mount):
            yield from _http_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and (prefix + route.path).startswith(API_PREFIXES):
            yield route if not prefix else Route(prefix + route.path, route.endpoint,
                                                  methods=route.methods)


def _undescribed(route: Route, method: str) -> Operation:
    doc = (route.endpoint.__doc__ or "").strip()
    return Operation(method, route.path_format, doc.splitlines()[0] if doc else route.name,
                     UNDESCRIBED_TAG, (), path_params=tuple(route.param_convertors),
                     described=False)


def document(operations: Sequence[Operation], title: str = "devicecloud") -> dict[str, Any]:
    """The OpenAPI 3.0.3 document describing `operations`."""
    models: dict[str, type[BaseModel]] = {}
    for op in operations:
        for model in (op.body, op.query, *op.responses, *(model for _, model in op.errors)):
            if model is not None:
                models[model.__name__] = model
    _, top = models_json_schema([(m, "validation") for m in models.values()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    tags = list(dict.fromkeys(op.tag for op in operations))
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": __version__},
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": {name: openapi30(schema)
                                   for name, schema in top.get("$defs", {}).items()},
                       "securitySchemes": SECURITY_SCHEMES},
    }


def openapi30(schema: Any) -> Any:
    """A JSON Schema (2020-12, as pydantic writes it) in OpenAPI 3.0's dialect."""
    if isinstance(schema, list):
        return [openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: openapi30(value) if key not in ("properties", "$defs") else
           {name: openapi30(sub) for name, sub in value.items()}
           for key, value in schema.items() if key not in ("examples", "const")}
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if schema.get("examples"):
        out["example"] = schema["examples"][0]
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        out["minimum"], out["exclusiveMinimum"] = schema["exclusiveMinimum"], True
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        out["maximum"], out["exclusiveMaximum"] = schema["exclusiveMaximum"], True
    if out.get("type") == "null":  # only null: 3.0 has no null type
        del out["type"]
        out.update(nullable=True, enum=[None])
    if "anyOf" in out and {"nullable": True, "enum": [None]} in out["anyOf"]:
        rest = [sub for sub in out.pop("anyOf") if sub != {"nullable": True, "enum": [None]}]
        if len(rest) > 1:
            out["anyOf"] = rest
        elif "$ref" in rest[0]:
            out["allOf"] = rest
        else:
            out = {**rest[0], **out}
        out["nullable"] = True
    return out


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "operationId":
                           re.sub(r"[\W_]+", "_", f"{op.method.lower()}_{op.path}").strip("_")}
    if op.description:
        doc["description"] = op.description
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in op.path_params]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            parameter = {"name": name, "in": "query", "required": name in required,
                         "schema": openapi30({k: v for k, v in prop.items()
                                              if k != "description"})}
            if "description" in prop:
                parameter["description"] = prop["description"]
            parameters.append(parameter)
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:  # a body without required fields may be left out altogether
        doc["requestBody"] = {"required": bool(op.body.model_json_schema().get("required")),
                              "content": {op.body_media_type: {"schema": _ref(op.body)}}}
    doc["responses"] = _responses(op)
    if op.security:
        doc["security"] = [{op.security: []}]
    return doc


def _responses(op: Operation) -> dict[str, Any]:
    if not op.described:
        return {"default": {"description": "not described yet", "content": {"*/*": {}}}}
    if op.response_media_type == NO_CONTENT:
        answers: dict[str, Any] = {"204": {"description": "done; no content"}}
    elif op.response_media_type == "application/json":
        refs = [_ref(model) for model in op.responses]
        schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
        answers = {"200": {"description": "; ".join(_first_line(m) for m in op.responses),
                           "content": {"application/json": {"schema": schema}}}}
    else:
        answers = {"200": {"description": "the file", "content": {
            op.response_media_type: {"schema": {"type": "string", "format": "binary"}}}}}
    for status, model in op.errors:
        answers[str(status)] = {"description": _first_line(model), "content": {
            op.error_media_type: {"schema": _ref(model)}}}
    return answers


def _first_line(model: type[BaseModel]) -> str:
    return (model.__doc__ or model.__name__).strip().splitlines()[0]


# The /docs page ----------------------------------------------------------------------------------

def swagger_ui_path() -> Path | None:
    """Where the installed `swagger-ui-bundle` package keeps Swagger UI, if it is installed."""
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        return None
    bundle = importlib.import_module("swagger_ui_bundle")
    return Path(str(bundle.swagger_ui_path))


def plain_listing(spec: dict[str, Any]) -> str:
    """Every path and method with its parameters, request and response schemas, as HTML."""
    out = ["<h1>", html.escape(spec["info"]["title"]), " API</h1>",
           "<p>The OpenAPI document: <a href=\"/openapi.json\">/openapi.json</a></p>"]
    schemas = spec["components"]["schemas"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            out += ["<section><h2><code>", method.upper(), " ", html.escape(path),
                    "</code></h2><p>", html.escape(op["summary"]), "</p>"]
            if "description" in op:
                out += ["<p>", html.escape(op["description"]), "</p>"]
            if op.get("security"):
                out.append("<p>Header <code>authorization: &lt;open_api_key&gt;</code></p>")
            for parameter in op.get("parameters", ()):
                out += ["<p>", parameter["in"], " parameter <code>",
                        html.escape(parameter["name"]), "</code></p>"]
            body = op.get("requestBody", {}).get("content", {})
            for media_type, content in body.items():
                out += ["<h3>Request (", media_type, ")</h3>", _schema_html(content["schema"],
                                                                            schemas)]
            for status, answer in op["responses"].items():
                for media_type, content in answer.get("content", {}).items():
                    out += ["<h3>Response ", status, " (", html.escape(media_type), ")</h3>",
                            _schema_html(content.get("schema", {}), schemas)]
            out.append("</section>")
    return "".join(out)


def _schema_html(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    names = [ref["$ref"].rsplit("/", 1)[1] for ref in schema.get("oneOf", [schema])
             if "$ref" in ref]
    parts = []
    for name in names:
        text = orjson.dumps(schemas[name], option=orjson.OPT_INDENT_2).decode()
        parts.append(f"<h4>{html.escape(name)}</h4><pre>{html.escape(text)}</pre>")
    return "".join(parts) or f"<pre>{html.escape(orjson.dumps(schema).decode())}</pre>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">{head}</head>
<body>{body}</body></html>"""
_SWAGGER_HEAD = '<link rel="stylesheet" href="/docs/static/swagger-ui.css">'
_SWAGGER_BODY = """<div id="swagger-ui"></div><noscript>{listing}</noscript>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-init.js"></script>"""
_SWAGGER_INIT = b"""window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui",
  deepLinking: true});
"""


def api_document(table: Sequence[BaseRoute], operations: Sequence[Operation] = (),
                 title: str = "devicecloud") -> dict[str, Any]:
    """The document of the API routes of `table`, described by EzData's operations and
    `operations`."""
    from devicecloud.web import ezdata_schemas  # it imports Operation from here

    return document(served(table, (*ezdata_schemas.OPERATIONS, *operations)), title)


def routes(operations: Sequence[Operation], title: str = "devicecloud") -> list[BaseRoute]:
    """`/openapi.json`, `/docs` and (with Swagger UI installed) `/docs/static`; the document is
    made, once, from the route table of the app that serves it."""
    swagger = swagger_ui_path()
    made: dict[str, bytes] = {}

    def page(request: Request) -> tuple[bytes, bytes]:
        if not made:
            spec = api_document(request.app.routes, operations, title)
            listing = plain_listing(spec)
            if swagger is not None:
                body = _PAGE.format(title=html.escape(title), head=_SWAGGER_HEAD,
                                    body=_SWAGGER_BODY.format(listing=listing))
            else:
                body = _PAGE.format(title=html.escape(title), head="", body=listing)
            made.update(spec=orjson.dumps(spec), page=body.encode())
        return made["spec"], made["page"]

    async def openapi_json(request: Request) -> Response:
        return Response(page(request)[0], media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(page(request)[1])

    async def swagger_init(request: Request) -> Response:
        return Response(_SWAGGER_INIT, media_type="text/javascript")

    found: list[BaseRoute] = [Route("/openapi.json", openapi_json, methods=["GET"]),
                              Route("/docs", docs, methods=["GET"])]
    if swagger is not None:
        found += [Route("/docs/swagger-init.js", swagger_init, methods=["GET"]),
                  Mount("/docs/static", StaticFiles(directory=swagger), name="swagger-ui")]
    return found
