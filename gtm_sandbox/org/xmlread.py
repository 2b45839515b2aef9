"""Record bodies in XML (``Content-Type: application/xml``): the REST API's sObject
resources take "Formats: JSON, XML" (Create Records Using sObject Basic Information,
Update Records Using sObject Rows). The record is one element, named as its type (or
``sObject``: the name is not checked), holding one element per field; ``xsi:nil="true"``
is null. Values are text, typed here by the field's describe type so the org validates
them as it does JSON's (a number field's text becomes a number, a boolean's ``true`` /
``false`` a boolean; text that is neither is left for the org to refuse).

The parser is expat with no DTD at all: a ``<!DOCTYPE`` (where every entity declaration
lives) is refused, so no entity expands (billion laughs) and none is fetched (external
entities); only XML's predefined entities and character references remain."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from xml.parsers import expat

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.schema import NUMERIC_TYPES, TEXT_TYPES, ObjectSpec
from gtm_sandbox.org.xmlenc import XML_TYPES

_XSI_NIL = "http://www.w3.org/2001/XMLSchema-instance nil"


def is_xml(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() in XML_TYPES


def answers_in_xml(accept: str | None, content_type: str | None) -> bool:
    """An XML request body asks for an XML answer ("the format for the request and
    response") unless Accept names JSON."""
    return is_xml(content_type) and "json" not in (accept or "").lower()


class _NoDtd(Exception):
    pass


class _Builder:
    """Elements as (name, attributes, text, children); the root kept when closed."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, dict[str, str], list[str], list[Any]]] = []
        self.root: tuple[str, dict[str, str], list[str], list[Any]] | None = None

    def start(self, name: str, attrs: dict[str, str]) -> None:
        element = (name.rpartition(" ")[2], attrs, [], [])
        if self.stack:
            self.stack[-1][3].append(element)
        self.stack.append(element)

    def end(self, name: str) -> None:
        element = self.stack.pop()
        if not self.stack:
            self.root = element

    def text(self, data: str) -> None:
        if self.stack:
            self.stack[-1][2].append(data)


def _refuse_dtd(*_: Any) -> None:
    raise _NoDtd


def parse_record(body: bytes, spec: ObjectSpec) -> dict[str, Any]:
    """The record in ``body`` as the JSON body it stands for; 400 ``XML_PARSER_ERROR`` for
    XML that is malformed, holds a DTD or names a field twice."""
    builder = _Builder()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.text
    try:
        parser.Parse(body, True)
    except _NoDtd:
        raise _error("a DOCTYPE is not allowed in a request body") from None
    except expat.ExpatError as exc:
        raise _error(f"the request body isn't well-formed XML: {exc}") from None
    if builder.root is None:
        raise _error("the request body holds no record element")
    record: dict[str, Any] = {}
    for name, attrs, text, children in builder.root[3]:
        if name in record:
            raise _error(f"the field {name} appears twice")
        if name == "attributes":
            continue
        record[name] = _value(spec, name, attrs, "".join(text), children)
    return record


def _value(spec: ObjectSpec, name: str, attrs: dict[str, str], text: str, children: list[Any]) -> Any:
    if attrs.get(_XSI_NIL, "").strip().lower() in ("true", "1"):
        return None
    if children:  # a parent named by an external ID (<Parent__r><Ext__c>v</Ext__c></Parent__r>)
        return {child[0]: _value(spec, child[0], child[1], "".join(child[2]), child[3]) for child in children}
    f = spec.field(name)
    if f is None or f.type in TEXT_TYPES:
        return text
    if not text.strip():
        return None
    if f.type == "boolean":
        return {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower(), text)
    if f.type in NUMERIC_TYPES:
        try:
            return Decimal(text.strip())
        except InvalidOperation:
            return text
    return text.strip()


def _error(message: str) -> ApiError:
    return ApiError(400, "XML_PARSER_ERROR", message)
