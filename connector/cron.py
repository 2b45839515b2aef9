"""Crontab expressions -> the APScheduler trigger the daemon runs.

One builder for the daemon and for config validation: a schedule that ``config check``
accepts is one the daemon can build (standard crontab weekdays, UTC, and at least one
fire time), so a bad expression is an error naming the file and key at load time, never
a crash at daemon start.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FIELDS = ("minute", "hour", "day", "month", "day of week")


def crontab_trigger(expr: str, jitter: int = 0) -> CronTrigger:
    """A UTC CronTrigger with standard crontab weekdays (0 and 7 = Sunday). ValueError with
    a short reason when the expression is not a valid 5-field crontab.

    ``CronTrigger.from_crontab`` keeps APScheduler 3's own numbering (0 = Monday), so a
    partner's ``0 2 * * 1`` would run on Tuesdays; numbers are translated to names here."""
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"must have 5 fields ({' '.join(_FIELDS)}), got {len(parts)}")
    fields = dict(zip(("minute", "hour", "day", "month", "day_of_week"), parts, strict=True))
    fields["day_of_week"] = _weekday_names(fields["day_of_week"])
    for name, value in fields.items():  # one at a time, so the message names the field
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as exc:
            # APScheduler: "Error validating expression '25': the last value (25) is higher than ..."
            reason = str(exc).split("': ", 1)[-1] if "Error validating" in str(exc) else str(exc)
            raise ValueError(f"{_FIELDS[list(fields).index(name)]} {value!r}: {reason}") from None
    return CronTrigger(**fields, timezone=UTC, jitter=jitter or None)


def check_crontab(expr: str) -> None:
    """ValueError unless ``expr`` builds a trigger that fires at least once (``0 0 30 2 *``
    is valid syntax but never runs)."""
    trigger = crontab_trigger(expr)
    if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
        raise ValueError("never fires (no such date)")


def _weekday_names(field: str) -> str:
    if not any(ch.isdigit() for ch in field):
        return field  # '*', 'mon-fri', ... mean the same in both
    days: list[int] = []
    for item in field.split(","):
        rng, _, step_s = item.partition("/")
        try:
            step = int(step_s) if step_s else 1
            if rng == "*":
                lo, hi = 0, 6
            elif "-" in rng:
                lo, hi = (int(x) for x in rng.split("-"))
            else:
                lo = hi = int(rng)
                if step_s:
                    hi = 6
        except ValueError:
            raise ValueError(f"day of week {item!r}: use numbers 0-7 or names sun-sat, not both in one range") from None
        if not (0 <= lo <= 7 and 0 <= hi <= 7 and lo <= hi) or step < 1:
            raise ValueError(f"day of week {item!r} out of range 0-7")
        days.extend(range(lo, hi + 1, step))
    names = dict.fromkeys(_CRON_DAYS[d] for d in days)  # ordered, without duplicates
    return ",".join(names)
