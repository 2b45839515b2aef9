"""The sandbox org's REST route table: which handler and endpoint name a request gets.
Endpoint names matter beyond routing: counters and fault rules are keyed by them."""

from __future__ import annotations

import pytest

from gtm_sandbox.org.rest import DATA_ROUTES, Request


def _endpoint(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    found = DATA_ROUTES.match(method, [s for s in path.split("/") if s])
    return (found[0].endpoint, found[1]) if found else None


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "", ("resources", {})),
    ("POST", "", ("resources", {})),
    ("GET", "query", ("query", {})),
    ("GET", "queryAll", ("queryAll", {})),
    ("GET", "queryAll/01gSb0000001-2000", ("query_more", {"token": "01gSb0000001-2000"})),
    ("POST", "composite/batch", ("composite_batch", {})),
    ("POST", "composite/sobjects/Account", ("collections_get", {"obj": "Account"})),
    ("PATCH", "composite/sobjects/Account/Ext__c", ("collections_upsert", {"obj": "Account", "fld": "Ext__c"})),
    # literal segments win over placeholders, whatever the order of registration
    ("GET", "sobjects/Account/describe", ("describe", {"obj": "Account"})),
    ("GET", "sobjects/Account/updated", ("get_updated", {"obj": "Account"})),
    ("GET", "sobjects/Account/001Sb00000000001AAA", ("sobject_get", {"obj": "Account", "rid": "001Sb00000000001AAA"})),
    # ...but only among routes of the request's method: PATCH .../describe is a record update
    ("PATCH", "sobjects/Account/describe", ("sobject_update", {"obj": "Account", "rid": "describe"})),
    ("PATCH", "sobjects/Account/Ext__c/a/b", None),
])
def test_requests_reach_their_endpoint(method: str, path: str, expected: tuple[str, dict[str, str]] | None) -> None:
    assert _endpoint(method, path) == expected


def test_a_known_resource_with_another_method_is_told_apart_from_an_unknown_one() -> None:
    assert DATA_ROUTES.match("PUT", ["sobjects", "Account"]) is None
    assert DATA_ROUTES.allowed(["sobjects", "Account"]) == ["HEAD", "GET", "POST"]  # the API answers 405
    assert DATA_ROUTES.allowed(["sobjects", "Account", "001Sb00000000001AAA"]) == ["HEAD", "GET", "PATCH", "DELETE"]
    assert DATA_ROUTES.allowed(["sobjects", "Account", "Id"])[-2:] == ["POST", "DELETE"]  # create by Id (v37.0)
    assert DATA_ROUTES.allowed(["tooling", "query"]) == []  # 404
    assert DATA_ROUTES.allowed(["query", "a", "b"]) == []


def test_an_encoded_slash_in_an_external_id_stays_in_its_segment() -> None:
    req = Request.build("PATCH", "/services/data/v66.0/sobjects/Account/Ext__c/a%2Fb")
    found = DATA_ROUTES.match(req.method, req.segments[3:])
    assert found is not None
    assert (found[0].endpoint, found[1]["value"]) == ("sobject_upsert", "a/b")
