"""`gtm-connector payout-estimate`: a partner checks expected payouts from a file of orders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from connector.entrypoints.cli import payout_estimate

SEED_003 = {
    "id": "00000101",
    "contract_term_months": 12,
    "items": [
        {"quantity": 10, "unit_price_per_month": "50.00", "revenue_share_percent": 15},
        {"quantity": 1, "unit_price_per_month": 200, "revenue_share_percent": 10},
    ],
}
SEED_003_RESULT = {
    "id": "00000101",
    "lines": [
        {"line_total": "6000.00", "revenue_share": "900.00"},
        {"line_total": "2400.00", "revenue_share": "240.00"},
    ],
    "subtotal": "8400.00",
    "revenue_share": "1140.00",
    "expected_payout": "7260.00",
}
ADD_ON = {
    "id": "00000102",
    "contract_term_months": 12,
    "initial_start_date": "2025-01-01",
    "initial_end_date": "2025-12-31",
    "addon_start_date": "2025-03-01",
    "items": [{"quantity": 15, "unit_price_per_month": 50.00, "revenue_share_percent": 15}],
}


def _cli() -> typer.Typer:
    """Only this command on a group, so the test does not depend on other command modules."""
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """gtm-connector (test)"""

    payout_estimate.register(app)
    return app


def _run(stdin: str, *args: str):
    return CliRunner().invoke(_cli(), ["payout-estimate", *args], input=stdin)


def _jsonl(*orders: object) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in orders)


def _records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def with_item(order: dict, index: int, **changes: object) -> dict:
    items = [dict(item) for item in order["items"]]
    items[index].update(changes)
    return {**order, "items": items}


def test_seed_003_order_pays_out_7260() -> None:
    result = _run(_jsonl(SEED_003))
    assert result.exit_code == 0, result.output
    assert _records(result.stdout) == [SEED_003_RESULT]


def test_add_on_order_is_prorated_by_days_by_default() -> None:
    (record,) = _records(_run(_jsonl(ADD_ON)).stdout)
    assert record["subtotal"] == "7545.21"
    assert record["revenue_share"] == "1131.78"
    assert record["expected_payout"] == "6413.43"


def test_monthly_proration_can_be_asked_for() -> None:
    (record,) = _records(_run(_jsonl(ADD_ON), "--proration", "monthly").stdout)
    assert record["subtotal"] == "7500.00"


def test_numbers_are_read_as_decimals_not_floats() -> None:
    # 120.00 x 1.0125% = 1.215 -> 1.22; via float 1.0125 would give 1.21
    order = {"id": "d", "contract_term_months": 12,
             "items": [{"quantity": 1, "unit_price_per_month": 10, "revenue_share_percent": 1.0125}]}
    (record,) = _records(_run(_jsonl(order)).stdout)
    assert record["revenue_share"] == "1.22"


def test_bad_orders_are_reported_and_the_good_ones_still_computed() -> None:
    orders = _jsonl(
        SEED_003,
        with_item(SEED_003, 1, quantity=-3),
        "{not json",
        {**SEED_003, "id": "term", "contract_term_months": 24},
        ADD_ON,
    )
    result = _run(orders)

    assert result.exit_code == 1
    assert _records(result.stdout) == [
        SEED_003_RESULT,
        {"id": "00000101", "error": "items[1].quantity: must be a positive integer, got -3"},
        {"id": None, "error": "line 3: invalid JSON: Expecting property name enclosed in double quotes (column 2)"},
        {"id": "term", "error": "contract_term_months: must be 12 months, got 24"},
        _records(_run(_jsonl(ADD_ON)).stdout)[0],
    ]
    assert "3 of 5 orders could not be estimated" in result.stderr


@pytest.mark.parametrize(
    ("order", "error"),
    [
        (with_item(SEED_003, 0, quantity=2.5), "items[0].quantity: must be a positive integer, got 2.5"),
        (with_item(SEED_003, 0, quantity="ten"), 'items[0].quantity: must be a positive integer, got "ten"'),
        (with_item(SEED_003, 0, unit_price_per_month="5O.00"),
         'items[0].unit_price_per_month: must be an amount, got "5O.00"'),
        (with_item(SEED_003, 0, unit_price_per_month=-1),
         "items[0].unit_price_per_month: must be an amount of 0 or more, got -1"),
        (with_item(SEED_003, 1, revenue_share_percent=100.5),
         "items[1].revenue_share_percent: must be a percentage between 0 and 100, got 100.5"),
        (with_item(SEED_003, 1, revenue_share_percent=None), "items[1].revenue_share_percent: is required"),
        ({**SEED_003, "items": []}, "items: must be a non-empty list of items, got []"),
        ({"id": "x", "items": SEED_003["items"]}, "contract_term_months: is required"),
        ({**SEED_003, "currency": "EUR"}, 'currency: must be USD (the GTM app bills in US dollars only), got "EUR"'),
        ({**ADD_ON, "addon_start_date": "2024-12-31"},
         "addon_start_date 2024-12-31 is before the initial order's start 2025-01-01"),
        ({**ADD_ON, "addon_start_date": "2026-01-01"},
         "addon_start_date 2026-01-01 is after the initial order's end 2025-12-31"),
        ({**ADD_ON, "initial_end_date": "2026-01-01"},
         "initial_end_date: must be 2025-12-31 (initial_start_date + 12 months - 1 day), got 2026-01-01"),
        ({**ADD_ON, "initial_start_date": None, "initial_end_date": None},
         "initial_start_date: is required when addon_start_date is given"),
        ({**ADD_ON, "initial_start_date": None, "initial_end_date": "2024-02-28"},
         "initial_end_date: no 12-month term ends on 2024-02-28 (initial_start_date + 12 months - 1 day); "
         "give initial_start_date"),
        ({**ADD_ON, "addon_start_date": "1 March"}, 'addon_start_date: must be a date like 2025-01-31, got "1 March"'),
        # dates a term cannot be computed from (the end would be in year 10000, the start in year 0)
        ({**ADD_ON, "initial_start_date": "9999-06-01", "initial_end_date": None, "addon_start_date": "2025-03-01"},
         "initial_start_date: 9999-06-01 is outside the supported range 1900-01-01 .. 2999-12-31"),
        ({**ADD_ON, "initial_start_date": None, "initial_end_date": "9999-12-31"},
         "initial_end_date: 9999-12-31 is outside the supported range 1900-01-01 .. 2999-12-31"),
        ({**ADD_ON, "initial_start_date": None, "initial_end_date": "0001-01-01"},
         "initial_end_date: 0001-01-01 is outside the supported range 1900-01-01 .. 2999-12-31"),
        ({**ADD_ON, "addon_start_date": "9999-12-31"},
         "addon_start_date: 9999-12-31 is outside the supported range 1900-01-01 .. 2999-12-31"),
    ],
)
def test_each_bad_order_names_what_and_where(order: dict, error: str) -> None:
    result = _run(_jsonl(order))
    assert result.exit_code == 1
    assert _records(result.stdout) == [{"id": order["id"], "error": error}]


def test_order_without_id_is_located_by_its_line() -> None:
    order = {k: v for k, v in SEED_003.items() if k != "id"}
    (record,) = _records(_run(_jsonl(SEED_003, order)).stdout)[1:]
    assert record == {"id": None, "error": "line 2: id: is required"}


def test_a_json_array_is_accepted_too(tmp_path: Path) -> None:
    orders = tmp_path / "orders.json"
    orders.write_text(json.dumps([SEED_003, "oops"], indent=2), encoding="utf-8")
    result = _run("", "--input", str(orders))
    assert result.exit_code == 1
    assert _records(result.stdout) == [
        SEED_003_RESULT, {"id": None, "error": 'orders[1]: an order must be a JSON object, got "oops"'}]


def test_blank_lines_are_skipped_and_stdin_is_the_default() -> None:
    result = _run("\n\n" + _jsonl(SEED_003) + "\n")
    assert result.exit_code == 0
    assert _records(result.stdout) == [SEED_003_RESULT]


def test_missing_input_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("", "--input", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr and "nope.jsonl" in result.stderr


def test_table_for_people_shows_the_payout_and_totals() -> None:
    result = _run(_jsonl(SEED_003, ADD_ON, with_item(SEED_003, 0, quantity=0)), "--table")
    assert result.exit_code == 1
    assert "7260.00" in result.stdout
    assert "13673.43" in result.stdout  # 7260.00 + 6413.43, bad orders left out
    assert "must be a positive" in result.stdout


def test_table_totals_past_28_digits_are_exact() -> None:
    # each subtotal is 1.2e29 + 12.00; the footer once added them in the 28-digit default context
    huge = {"id": "huge", "contract_term_months": 12,
            "items": [{"quantity": 1, "unit_price_per_month": "10000000000000000000000000000.01",
                       "revenue_share_percent": 0}]}
    result = CliRunner().invoke(_cli(), ["payout-estimate", "--table"], input=_jsonl(huge, {**huge, "id": "h2"}),
                                env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "120000000000000000000000000000.12" in result.stdout  # one order
    assert "240000000000000000000000000000.24" in result.stdout  # the total, to the cent


def test_table_prints_brackets_in_ids_as_they_are() -> None:
    # Order ids are data: rich markup would swallow "[stripe]" and fail on a stray "[/b]".
    result = _run(_jsonl({**SEED_003, "id": "PO[stripe]-7 [/b]"}), "--table")
    assert result.exit_code == 0, result.output
    assert "PO[stripe]-7 [/b]" in result.stdout and "7260.00" in result.stdout


class CountingLines:
    """Hands out lines one at a time and counts how many the command has pulled."""

    def __init__(self, text: str) -> None:
        self._lines = iter(text.splitlines(keepends=True))
        self.pulled = 0

    def __iter__(self) -> CountingLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.pulled += 1
        return line


def test_orders_are_streamed_one_at_a_time() -> None:
    stream = CountingLines(_jsonl(*[SEED_003] * 1000))
    records = payout_estimate.estimate_orders(stream)  # type: ignore[arg-type]
    assert next(records)["expected_payout"] == "7260.00"
    assert stream.pulled == 1
    assert sum(1 for _ in records) == 999


def _installed_cli() -> Path:
    script = Path(sys.executable).with_name("gtm-connector")
    if not script.exists():
        pytest.skip(f"{script} is not installed (run `make test` to install the project)")
    return script


def test_installed_command_computes_seed_003_and_reports_bad_orders() -> None:
    orders = _jsonl(SEED_003, with_item(SEED_003, 1, quantity=-3))
    done = subprocess.run(
        [str(_installed_cli()), "payout-estimate"], input=orders, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    good, bad = _records(done.stdout)
    assert good["expected_payout"] == "7260.00"
    assert bad == {"id": "00000101", "error": "items[1].quantity: must be a positive integer, got -3"}

    done = subprocess.run(
        [str(_installed_cli()), "payout-estimate"], input=_jsonl(SEED_003), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert _records(done.stdout) == [SEED_003_RESULT]
