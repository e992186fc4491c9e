"""OpenAPI 3.1 for the JSON APIs, built from pydantic models, and a `/docs` page that works offline.

Each API module lists its `Operation`s; `routes(operations)` serves the document at
`/openapi.json` and a page at `/docs`: Swagger UI from the `swagger-ui-bundle` package when it is
installed (its files are served from `/docs/static`, nothing comes from a CDN), with a plain
server-rendered listing of every path, method and schema inside `<noscript>` (and in its place
when the package is absent).
"""

from __future__ import annotations

import html
import importlib
import importlib.util
from collections.abc import Sequence
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


SECURITY_SCHEMES = {
    "open_api_key": {
        "type": "apiKey", "in": "header", "name": "authorization",
        "description": "The account's 32-hex open_api_key, raw (a `Bearer ` prefix is accepted).",
    },
}


def document(operations: Sequence[Operation], title: str = "devicecloud") -> dict[str, Any]:
    """The OpenAPI 3.1 document describing `operations`."""
    models: dict[str, type[BaseModel]] = {}
    for op in operations:
        for model in (op.body, op.query, *op.responses, *(model for _, model in op.errors)):
            if model is not None:
                models[model.__name__] = model
    _, top = models_json_schema([(m, "validation") for m in models.values()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {"schemas": top.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
    }


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                           "operationId": f"{op.method.lower()}_{op.path.strip('/')}"}
    if op.description:
        doc["description"] = op.description
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in op.path_params]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            parameter = {"name": name, "in": "query", "required": name in required,
                         "schema": {k: v for k, v in prop.items() if k != "description"}}
            if "description" in prop:
                parameter["description"] = prop["description"]
            parameters.append(parameter)
    if parameters:
        doc["parameters"] = parameters
    if op.body is not None:  # a body without required fields may be left out altogether
        doc["requestBody"] = {"required": bool(op.body.model_json_schema().get("required")),
                              "content": {op.body_media_type: {"schema": _ref(op.body)}}}
    if op.response_media_type == "application/json":
        refs = [_ref(model) for model in op.responses]
        schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
        content = {"application/json": {"schema": schema}}
        doc["responses"] = {"200": {"description": "; ".join(
            _first_line(m) for m in op.responses), "content": content}}
    else:
        doc["responses"] = {"200": {"description": "the file", "content": {
            op.response_media_type: {"schema": {"type": "string", "format": "binary"}}}}}
    for status, model in op.errors:
        doc["responses"][str(status)] = {"description": _first_line(model), "content": {
            "application/json": {"schema": _ref(model)}}}
    if op.security:
        doc["security"] = [{op.security: []}]
    return doc


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
            for media_type, content in op["responses"]["200"]["content"].items():
                out += ["<h3>Response (", media_type, ")</h3>",
                        _schema_html(content["schema"], schemas)]
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
<script>window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui",
deepLinking: true}});</script>"""


def routes(operations: Sequence[Operation], title: str = "devicecloud") -> list[BaseRoute]:
    """`/openapi.json`, `/docs` and (with Swagger UI installed) `/docs/static`."""
    spec = document(operations, title)
    spec_bytes = orjson.dumps(spec)
    swagger = swagger_ui_path()
    listing = plain_listing(spec)
    if swagger is not None:
        page = _PAGE.format(title=html.escape(title), head=_SWAGGER_HEAD,
                            body=_SWAGGER_BODY.format(listing=listing))
    else:
        page = _PAGE.format(title=html.escape(title), head="", body=listing)

    async def openapi_json(request: Request) -> Response:
        return Response(spec_bytes, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    found: list[BaseRoute] = [Route("/openapi.json", openapi_json, methods=["GET"]),
                              Route("/docs", docs, methods=["GET"])]
    if swagger is not None:
        found.append(Mount("/docs/static", StaticFiles(directory=swagger), name="swagger-ui"))
    return found
