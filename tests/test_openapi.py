"""The OpenAPI document each app serves at /openapi.json is true: every route of both apps
is in it with its method, nothing in it is not a route, and it validates as OpenAPI 3.1
(openapi-spec-validator). Issue 11, part 5."""

from __future__ import annotations

import re

import pytest
import webtest
from openapi_spec_validator import validate

from hail.app import create_app as hail_app
from hailwhale_web.openapi import document
from whale import create_app as whale_app

_IMPLICIT = {"HEAD", "OPTIONS"}  # answered for every route (CORS preflight, Bottle)


def _routes(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route an app declares."""
    return {(route.method.lower(), re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.rule))
            for route in app.routes if route.method not in _IMPLICIT}


def _documented(spec: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, operations in spec["paths"].items()
            for method in operations}


@pytest.fixture(params=["whale", "hail"])
def served(request, store, settings):
    if request.param == "whale":
        app = whale_app(store, settings)
    else:
        app = hail_app(lambda items: None, settings, lambda: {})
    return request.param, app


def test_every_route_is_documented_and_every_documented_path_is_a_route(served):
    name, app = served
    assert _routes(app) == _documented(document(name))


def test_the_served_document_is_valid_openapi(served):
    name, app = served
    answer = webtest.TestApp(app).get("/openapi.json")
    assert answer.content_type == "application/json"
    assert answer.json == document(name)
    validate(answer.json)


def test_query_endpoints_document_the_parameters_they_read():
    """The parameters documented for the queries and events are those the code reads
    (hailwhale.event.KNOWN, and the names parse_query takes)."""
    from hailwhale.event import KNOWN

    spec = document("whale")
    count = {p["name"] for p in spec["paths"]["/count"]["get"]["parameters"]}
    assert count == KNOWN | {"token"}
    import inspect

    from hailwhale import query

    read = set(re.findall(r'params(?:\.get)?\(\s*"(\w+)"', inspect.getsource(query.parse_query)))
    read |= set(re.findall(r'_(?:integer|number)\(params, "(\w+)"', inspect.getsource(
        query.parse_query)))
    plot = {p["name"] for p in spec["paths"]["/plotpoints"]["get"]["parameters"]}
    assert read <= query.KNOWN  # what parse_query reads, it also accepts
    assert plot == query.KNOWN | {"token"}  # and what it accepts is documented
