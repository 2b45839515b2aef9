"""Saving a sandbox's data to a JSON file and reading it back, so that a later process
(the demo's second run) meets the same org and the same Stripe account.

Values are JSON plus ``Decimal`` (kept exact as ``{"$decimal": "8400.00"}``). Writes go
to a temporary file renamed over the target, so a crash never leaves half a snapshot.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """The file is not a snapshot this sandbox can restore (version, org, or object kinds)."""


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$decimal": format(value, "f")}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot save a {type(value).__name__} in a sandbox snapshot")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$decimal"}:
            return Decimal(value["$decimal"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def write_snapshot(path: Path, kind: str, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_encode({"version": SNAPSHOT_VERSION, "kind": kind, **data})), "utf-8")
    tmp.replace(path)


def read_snapshot(path: Path, kind: str) -> dict[str, Any]:
    try:
        saved = _decode(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{path}: not a readable snapshot ({exc})") from exc
    if not isinstance(saved, dict) or saved.get("version") != SNAPSHOT_VERSION or saved.get("kind") != kind:
        raise SnapshotError(f"{path}: not a version {SNAPSHOT_VERSION} {kind} snapshot")
    return saved
