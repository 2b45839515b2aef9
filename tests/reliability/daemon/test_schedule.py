"""Schedules as the partner writes them in the org file, turned into APScheduler triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.config import Schedule, Schedules
from connector.entrypoints.daemon.schedule import GridIntervalTrigger, JobPlan, crontab_trigger, plan_for

NOON = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday


def test_interval_ticks_are_the_same_on_every_host() -> None:
    trigger = GridIntervalTrigger(300)
    # Two daemons started at different moments agree on the ticks.
    first_a = trigger.get_next_fire_time(None, NOON + timedelta(seconds=17))
    first_b = trigger.get_next_fire_time(None, NOON + timedelta(seconds=212))
    assert first_a == first_b == NOON + timedelta(minutes=5)
    assert trigger.tick_of(NOON + timedelta(seconds=299)) == NOON


def test_jitter_delays_a_fire_inside_its_tick_without_drifting() -> None:
    trigger = GridIntervalTrigger(60, jitter=45)
    assert trigger.jitter == 30  # capped: a fire stays in the first half of its tick
    fire = trigger.get_next_fire_time(None, NOON)
    for _ in range(50):
        assert trigger.tick_of(fire) == fire.replace(second=0, microsecond=0)
        assert 0 <= (fire - trigger.tick_of(fire)).total_seconds() <= 30
        fire = trigger.get_next_fire_time(fire, fire)
    assert trigger.tick_of(fire) == NOON + timedelta(minutes=50)  # one tick per minute, no drift


@pytest.mark.parametrize(
    ("expr", "first_fire"),
    [
        ("0 2 * * 1", datetime(2026, 1, 12, 2, 0, tzinfo=UTC)),  # crontab 1 = Monday
        ("0 6 * * 0", datetime(2026, 1, 11, 6, 0, tzinfo=UTC)),  # 0 = Sunday
        ("0 6 * * 7", datetime(2026, 1, 11, 6, 0, tzinfo=UTC)),  # 7 = Sunday too
        ("30 1 * * 1-5", datetime(2026, 1, 8, 1, 30, tzinfo=UTC)),  # next weekday: Thursday
        ("0 0 * * */3", datetime(2026, 1, 10, 0, 0, tzinfo=UTC)),  # Sun, Wed, Sat -> Saturday
        ("*/15 * * * *", datetime(2026, 1, 7, 12, 15, tzinfo=UTC)),
    ],
)
def test_cron_uses_standard_crontab_weekdays_in_utc(expr: str, first_fire: datetime) -> None:
    assert crontab_trigger(expr).get_next_fire_time(None, NOON + timedelta(seconds=1)) == first_fire


def test_a_cron_fire_serves_the_latest_cron_point() -> None:
    plan = JobPlan(crontab_trigger("*/15 * * * *", jitter=10), misfire_grace_s=60, description="")
    assert plan.tick_of(NOON + timedelta(minutes=16, seconds=3)) == NOON + timedelta(minutes=15)
    assert plan.tick_of(NOON + timedelta(minutes=15)) == NOON + timedelta(minutes=15)


def test_plans_follow_the_org_file() -> None:
    schedules = Schedules(
        mirror=Schedule(interval_seconds=120, jitter_seconds=10),
        reconcile=Schedule(cron="30 2 * * *"),
        offers_push=Schedule(enabled=False),
    )
    mirror = plan_for(schedules, "mirror", 60)
    assert mirror is not None and isinstance(mirror.trigger, GridIntervalTrigger)
    assert mirror.trigger.seconds == 120 and mirror.misfire_grace_s == 60
    assert plan_for(schedules, "offers_push", 60) is None
    reconcile = plan_for(schedules, "reconcile", 60)
    assert reconcile is not None and "cron '30 2 * * *'" in reconcile.description
    default = plan_for(schedules, "invoicing", 60)  # not in the file: the default interval
    assert default is not None and default.trigger.seconds == 900  # type: ignore[attr-defined]
