"""The bad-input corpus (``tests/reliability/corpus/``): config files, mapping edits and org
records that must each give one clear line naming the file, key or record (no traceback)
while the rest proceeds. Issue 15's cases are in it: an over-large config, a mapping with an
unknown write-back result or a non-table vocabulary entry, oversized and NUL texts, extreme
dates, too many lines, absurd prices and quantities."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.salesforce import SalesforceOrg
from connector.adapters.store import SqlUnitOfWork
from connector.adapters.stripe_billing import StripeBilling
from connector.config import MAX_CONFIG_BYTES, load_config
from connector.domain import OrderLimits
from connector.errors import ConfigError, MappingError
from connector.mappings import load_mapping, mappings_root
from connector.services.invoicing import InvoicingService, InvoicingSettings
from connector.services.mirror import MirrorService
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.integration.stripe.gtm import ORG, PPP_CORE, Clock, GtmOrg, order_id

CORPUS = Path(__file__).parent / "corpus"
CONFIGS = sorted((CORPUS / "configs").glob("*.toml"))
MAPPING_EDITS = sorted((CORPUS / "mappings").glob("*.toml"))
MIRROR_CASES = json.loads((CORPUS / "records" / "mirror.json").read_text())["cases"]
INVOICING_CASES = json.loads((CORPUS / "records" / "invoicing.json").read_text())["cases"]
MAPPING = load_mapping("gtm-v2")


def expected_key(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must say '# expect: <key>'"
    return first.removeprefix("# expect: ").strip()


# ------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_a_bad_config_file_names_its_file_and_key(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"CORPUS_SF_SECRET": "s", "CORPUS_STRIPE_KEY": "sk_test_x"})
    keys = [key for file, key, _ in caught.value.problems if file == str(path)]
    assert expected_key(path) in keys, caught.value.problems
    assert "Traceback" not in str(caught.value)
    assert "sk_live_written_in_the_file" not in str(caught.value)  # a secret never echoed


def test_a_10_mb_config_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = tmp_path / "huge.toml"
    with huge.open("w") as out:
        out.write(CONFIGS[0].read_text())
        out.write(("# " + "x" * 1021 + "\n") * (10 * 1024))
    assert huge.stat().st_size > 10 * MAX_CONFIG_BYTES
    with pytest.raises(ConfigError) as caught:
        load_config(huge)
    assert [(key, "larger than" in message) for _, key, message in caught.value.problems] == [("(file)", True)]


def test_config_check_prints_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CORPUS_SF_SECRET": "s", "CORPUS_STRIPE_KEY": "k"}
    cli = Path(sys.executable).parent / "gtm-connector"
    done = subprocess.run([str(cli), "config", "check", *map(str, CONFIGS)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and "sk_live_written_in_the_file" not in output
    for path in CONFIGS:
        lines = [line for line in output.splitlines() if path.name in line]
        assert lines and any(expected_key(path) in line for line in lines), (path.name, output)


# ------------------------------------------------------------------------------ mappings


@pytest.mark.parametrize("edit", MAPPING_EDITS, ids=[p.stem for p in MAPPING_EDITS])
def test_a_bad_mapping_is_refused_at_load_naming_file_and_key(edit: Path, tmp_path: Path) -> None:
    spec = tomllib.loads(edit.read_text())
    mapping = tmp_path / "partner-mapping"
    shutil.copytree(mappings_root() / "gtm-v2", mapping)
    target = mapping / spec["file"]
    old, new = spec["replace"]
    text = target.read_text()
    assert old in text, f"{edit.name}: the anchor {old!r} is not in {spec['file']} any more"
    target.write_text(text.replace(old, new, 1))

    with pytest.raises(MappingError) as caught:
        load_mapping(mapping)

    assert spec["expect"] in str(caught.value)
    assert str(target) in str(caught.value)


# ------------------------------------------------------------------------------ org records


def _value(spec: Any) -> Any:
    if isinstance(spec, dict) and "repeat" in spec:
        text, times = spec["repeat"]
        return text * times
    return spec


@pytest.mark.parametrize("case", MIRROR_CASES, ids=[c["name"] for c in MIRROR_CASES])
def test_a_bad_org_record_is_quarantined_by_name_and_the_rest_mirrored(
    case: dict[str, Any], sandbox_org: SandboxOrg, gateway: SalesforceOrg, uow_factory: Callable[..., Any],
) -> None:
    obj = MAPPING.objects[case["object"]]
    record = sandbox_org.demo_ids[case["record"]]
    sandbox_org.update(obj.sobject, [{"Id": record, obj.sf_field_for(case["column"]): _value(case["value"])}])

    report = MirrorService(gateway, uow_factory, MAPPING, sandbox_org.org_id).run()

    assert {o.status for o in report.objects} == {"ok"}
    with uow_factory() as uow:
        mirrored = {r["sf_id"] for r in uow.mirror(case["object"]).list(sandbox_org.org_id)}
        letters = {(d.object_name, d.record_id): d for d in uow.dead_letters.open(sandbox_org.org_id, "mirror")}
    assert record not in mirrored
    assert len(mirrored) == len(sandbox_org.records(obj.sobject)) - 1
    letter = letters[(obj.sobject, record)]
    assert case["names"] in letter.reason and (case["code"] is None or letter.error_code == case["code"])


@pytest.mark.parametrize("case", INVOICING_CASES, ids=[c["name"] for c in INVOICING_CASES])
def test_a_bad_order_is_quarantined_and_the_healthy_one_invoiced(
    case: dict[str, Any], stripe_sandbox: StripeSandbox, stripe_billing: StripeBilling,
    uow_factory: Callable[[], SqlUnitOfWork],
) -> None:
    org = GtmOrg(uow_factory).catalogue()
    org.order(1, start=date(2026, 1, 1))
    items = [(PPP_CORE, case.get("quantity", 1), case.get("price", "10.00"))] * case.get("items", 1)
    overrides = {k: case[k] for k in ("currency", "recipient_email") if k in case}
    org.order(2, start=date.fromisoformat(case.get("start", "2026-01-01")), items=items,
              email=case.get("email", "ap@acme.example"), **overrides)
    invoicing = InvoicingService(
        org_id=ORG, uow=uow_factory, billing=stripe_billing, mapping=MAPPING,
        clock=Clock(datetime(2025, 12, 31, tzinfo=UTC)),
        settings=InvoicingSettings(limits=OrderLimits(Decimal("1000000.00"), 100_000)))

    report = invoicing.run()

    assert report.invoiced == [order_id(1)]
    [(order, code, reason)] = report.quarantined
    assert (order, code) == (order_id(2), case["code"]) and "Traceback" not in reason
    assert [i["metadata"]["gtm_order_id"] for i in stripe_sandbox.invoices()] == [order_id(1)]  # no draft left
