"""XML answers for clients that ask for them (``Accept: application/xml``): the REST API
serves JSON and XML alike ("Formats: JSON, XML" on each resource). The JSON answer is
written as Salesforce writes its XML: a record is an element named by its type with
``type`` and ``url`` attributes and one child per field (null as ``xsi:nil``); a query is a
``QueryResult``; errors are ``Errors`` of ``Error``; a save result is ``Result``; the
versions list ``Versions`` of ``Version``; anything else a ``Response`` element. A record
body in XML (create, update, upsert) is read by ``xmlread.py``, and answered in XML."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from gtm_sandbox.org.messages import weighted

XML_TYPES = ("application/xml", "text/xml")
_NIL = ' xsi:nil="true" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def wants_xml(accept: str | None) -> bool:
    """Whether the Accept header prefers XML to JSON (q values, then the order listed)."""
    ranked = [(q, i, media) for i, (media, q) in enumerate(weighted(accept))]
    xml = max(((q, -i) for q, i, m in ranked if m in XML_TYPES), default=(0.0, 0))
    json = max(((q, -i) for q, i, m in ranked if m in ("application/json", "application/*", "*/*")), default=(0.0, 0))
    return xml[0] > 0 and xml > json


def to_xml(obj: Any) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + _root(obj)


def _root(obj: Any) -> str:
    if isinstance(obj, list) and obj and all(isinstance(e, dict) and "errorCode" in e for e in obj):
        return "<Errors>" + "".join(_element("Error", e) for e in obj) + "</Errors>"
    if isinstance(obj, list) and obj and all(isinstance(e, dict) and set(e) == {"label", "url", "version"}
                                             for e in obj):
        return "<Versions>" + "".join(_element("Version", e) for e in obj) + "</Versions>"
    if isinstance(obj, dict) and isinstance(obj.get("attributes"), dict) and obj["attributes"].get("type"):
        return _element(str(obj["attributes"]["type"]), obj)
    if isinstance(obj, dict) and "records" in obj and "totalSize" in obj:
        return _element("QueryResult", obj)
    if isinstance(obj, dict) and {"id", "success", "errors"} <= set(obj):
        return _element("Result", obj)
    if isinstance(obj, list):
        return "<Response>" + "".join(_element("item", e) for e in obj) + "</Response>"
    return _element("Response", obj)


def _element(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_element(name, v) for v in value)
    if value is None:
        return f"<{name}{_NIL}/>"
    if isinstance(value, dict):
        attrs = ""
        attributes = value.get("attributes")
        if isinstance(attributes, dict):
            attrs = "".join(f" {k}={quoteattr(str(v))}" for k, v in attributes.items() if isinstance(v, str))
        body = "".join(_element(str(k), v) for k, v in value.items() if k != "attributes")
        return f"<{name}{attrs}>{body}</{name}>"
    if value is True or value is False:
        text = "true" if value else "false"
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    return f"<{name}>{escape(text)}</{name}>"
