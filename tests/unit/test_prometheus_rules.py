"""The daemon's metrics follow Prometheus' conventions, and the example rule file
``config/prometheus/alerts.yml`` only names series and labels the daemon exposes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from connector.metrics import PREFIX, DaemonMetrics

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "alerts.yml"
# PromQL words that are not series names.
_PROMQL = {"sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
           "increase", "rate", "irate", "time", "histogram_quantile", "and", "or", "unless", "offset", "bool",
           "humanizeDuration", "absent", "le"}


def exposed() -> DaemonMetrics:
    metrics = DaemonMetrics()
    metrics.touch_org("acme", ["mirror"])
    metrics.observe_run("acme", "mirror", "ok", 1.0, {}, mirrored={"order": 1}, invoices_created=1)
    metrics.set_api_usage("acme", 10, 90)
    metrics.set_store_figures("acme", dead_letters_open=0, discrepancies=0, invoices_missing=0, invoice_mismatches=0,
                              alerts_pending=0)
    return metrics


def labels_of(metrics: DaemonMetrics) -> dict[str, set[str]]:
    """series name -> the label names it carries."""
    out: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_every_connector_series_is_prefixed_and_has_no_job_label() -> None:
    series = labels_of(exposed())
    ours = {name for name in series if not name.startswith(("process_", "python_"))}
    assert ours and all(name.startswith(PREFIX) for name in ours), sorted(ours)
    assert all("job" not in labels for labels in series.values())
    assert series[f"{PREFIX}job_runs_total"] == {"org", "task", "status"}
    assert series[f"{PREFIX}last_success_timestamp_seconds"] == {"org", "task"}


def test_no_created_series_and_the_process_collectors_are_on() -> None:
    text = exposed().render().decode()
    assert not re.search(r"^\w+_created[{ ]", text, re.M)
    assert "process_resident_memory_bytes" in text and "python_info" in text


def test_the_last_success_gauge_comes_from_ok_runs_and_from_the_store() -> None:
    from datetime import UTC, datetime

    metrics = DaemonMetrics()
    metrics.observe_run("acme", "invoicing", "failed", 1.0, {})
    assert metrics.registry.get_sample_value(f"{PREFIX}last_success_timestamp_seconds",
                                             {"org": "acme", "task": "invoicing"}) is None
    when = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    metrics.set_store_figures("acme", dead_letters_open=None, discrepancies=None,
                              last_success={"invoicing": when, "reconcile": None})
    assert metrics.registry.get_sample_value(f"{PREFIX}last_success_timestamp_seconds",
                                             {"org": "acme", "task": "invoicing"}) == when.timestamp()


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("groups"), list) and doc["groups"]
    out = []
    for group in doc["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        out.extend(group["rules"])
    return out


def test_the_rule_file_is_a_prometheus_rule_file() -> None:
    names = []
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
        assert rule["labels"]["severity"] in ("page", "warn", "info") and rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"])
        assert rule["expr"].count("(") == rule["expr"].count(")") and rule["expr"].count("{") == rule["expr"].count("}")
        names.append(rule["alert"])
    assert len(names) == len(set(names))


def test_every_series_and_label_the_rules_name_is_exposed() -> None:
    series = labels_of(exposed())
    used = 0
    for rule in rules():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not names
        without_ranges = re.sub(r"\[[^\]]*\]", "", expr)
        for name in set(re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\b", without_ranges)):
            if name in _PROMQL or name == "up" or re.fullmatch(r"e\d+", name):
                continue
            if name in {lab for labels in series.values() for lab in labels} | {"job", "instance"}:
                continue  # a label in by (...)
            assert name in series, f"{rule['alert']}: {name} is not a series the daemon exposes"
            used += 1
        for name, matchers in re.findall(r"\b([a-z_]+)\{([^}]*)\}", rule["expr"]):
            if name.startswith(PREFIX):
                keys = set(re.findall(r"(\w+)\s*=~?", matchers))
                assert keys <= series[name], f"{rule['alert']}: {name} has no label(s) {keys - series[name]}"
    assert used >= 10
