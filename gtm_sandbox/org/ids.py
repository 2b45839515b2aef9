"""Salesforce-shaped record ids and timestamps for the sandbox org.

Ids are 18 characters: a 3-character key prefix per object, 12 characters of counter and
the 3-character case-safe checksum Salesforce appends to 15-character ids. Timestamps use
the REST API's wire format (``2025-01-31T12:00:00.000+0000``, UTC, millisecond precision),
which sorts lexicographically in time order, so the store compares them as strings.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"


def checksum(id15: str) -> str:
    """The 3-character suffix that makes a 15-character id case-insensitively unique."""
    out = []
    for chunk in range(3):
        bits = 0
        for i, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << i
        out.append(_CHECKSUM_ALPHABET[bits])
    return "".join(out)


def to_18(record_id: str) -> str:
    """Normalise a 15- or 18-character id to 18 characters; ValueError if malformed."""
    if not _ID_RE.match(record_id or ""):
        raise ValueError(record_id)
    if len(record_id) == 18:
        if checksum(record_id[:15]) != record_id[15:]:
            raise ValueError(record_id)
        return record_id
    return record_id + checksum(record_id)


def is_id(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        to_18(value)
    except ValueError:
        return False
    return True


def make_id(prefix: str, number: int, pod: str = "5g") -> str:
    """Deterministic id: prefix + pod + base62 counter, plus checksum."""
    digits = []
    n = number
    for _ in range(10):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    id15 = prefix + pod + "".join(reversed(digits))
    return id15 + checksum(id15)


def format_stamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.strftime(STAMP_FORMAT)}.{moment.microsecond // 1000:03d}+0000"


_STAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_stamp(text: str) -> datetime:
    """Parse the datetime forms the REST API accepts; naive input is taken as UTC."""
    m = _STAMP_RE.match(text.strip())
    if not m:
        raise ValueError(text)
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro)
    if zone in (None, "Z"):
        return moment.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (moment - sign * offset).replace(tzinfo=UTC)


def canonical_stamp(text: str) -> str:
    """Any accepted datetime text -> the wire format (truncated to milliseconds)."""
    return format_stamp(parse_stamp(text))


class Clock:
    """The org's clock: UTC now at millisecond precision, never going backwards, so
    SystemModstamp order follows write order (and several writes may share one stamp).
    ``advance`` moves it forward (tests and the demo bring an order's start date near);
    it never moves back, so stamps stay ordered."""

    def __init__(self) -> None:
        self._last = ""
        self._lock = threading.Lock()
        self.offset = timedelta(0)

    def moment(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def now(self) -> str:
        stamp = format_stamp(self.moment())
        with self._lock:
            if stamp < self._last:
                stamp = self._last
            self._last = stamp
            return stamp

    def today(self) -> date:
        return self.moment().date()

    def advance(self, *, days: float = 0, seconds: float = 0) -> str:
        delta = timedelta(days=days, seconds=seconds)
        if delta < timedelta(0):
            raise ValueError("the org's clock only moves forward")
        with self._lock:
            self.offset += delta
        return self.now()
