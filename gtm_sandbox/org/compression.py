"""Compressed request and response bodies, as the REST API's Compression Headers page has
them: a request body with ``Content-Encoding: gzip`` or ``deflate`` is decompressed before
processing; a response is compressed (gzip, else deflate) when the request's
``Accept-Encoding`` takes it, and says so in ``Content-Encoding``."""

from __future__ import annotations

import zlib

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.messages import weighted

# zlib window bits: gzip framing, zlib framing (HTTP's "deflate"), raw deflate (what some
# clients send as "deflate" anyway).
_GZIP, _ZLIB, _RAW = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS
# Level 1: a 650 KB query page in under 2 ms; any level is valid gzip to the client.
_LEVEL = 1


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """``body`` decompressed per its Content-Encoding; ``ApiError`` 400 for a body that isn't
    what the header says, 413 past ``limit`` bytes once decompressed, 415 for an encoding
    the API doesn't take."""
    encoding = (content_encoding or "").strip().lower()
    if not body or encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, (_GZIP,), limit, encoding)
    if encoding == "deflate":
        return _inflate(body, (_ZLIB, _RAW), limit, encoding)
    raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Encoding '{content_encoding}' is not supported; use gzip "
                                                  f"or deflate")


def _inflate(body: bytes, windows: tuple[int, ...], limit: int, encoding: str) -> bytes:
    for wbits in windows:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)  # a bomb stops at the limit, never expands further
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise ApiError(413, "REQUEST_TOO_LARGE", "The request body is too large once decompressed.")
        if not inflater.eof:
            break  # truncated
        return out
    raise ApiError(400, "BAD_REQUEST", f"The request body is not valid {encoding} data.")


def response_encoding(accept_encoding: str | None) -> str | None:
    """The coding to compress a response with: gzip, else deflate, if ``Accept-Encoding``
    takes it (a ``q=0`` refuses; ``*`` takes any); None for an uncompressed response."""
    accepted = dict(weighted(accept_encoding))
    for coding in ("gzip", "deflate"):
        q = accepted.get(coding, accepted.get("*", 0.0))
        if q > 0:
            return coding
    return None


def bulk_response_encoding(accept_encoding: str | None) -> str | None:
    """Bulk API 2.0's answers (Use Compression for Bulk API 2.0 Query / Ingest Responses):
    gzip when ``Accept-Encoding`` names gzip; any other value "is ignored, and the response
    isn't compressed" (no deflate, no ``*``)."""
    named = {item.split(";")[0].strip().lower() for item in (accept_encoding or "").split(",")}
    return "gzip" if "gzip" in named and response_encoding(accept_encoding) == "gzip" else None


def encode_body(payload: bytes, coding: str) -> bytes:
    if coding == "gzip":
        compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _GZIP)
    else:
        compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, _ZLIB)
    return compressor.compress(payload) + compressor.flush()
