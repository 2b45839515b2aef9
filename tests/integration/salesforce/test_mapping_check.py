"""The mapping checked against the org's own describe, over HTTPS through the real adapter:
`mapping check`, `mapping draft`, and the check in front of the mirror (sync and the
daemon's jobs). Orgs whose schema differs from the reference are test-only variants of the
sandbox org (a field renamed, an object dropped), started per test."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connector.bootstrap import OrgRuntime, bootstrap
from connector.entrypoints.cli import app
from connector.errors import MappingError
from connector.jobs import run_job
from connector.mappings import mappings_root
from gtm_sandbox.org import SandboxOrg
from tests.fixtures.org import sandbox_config

RENAMED = {"SfdcPartnerOrderItem.PartnerOrderId": "SfdcPartnerOrderId"}
SUGGESTION = ("SfdcPartnerOrderItem.PartnerOrderId: no such field; the org has SfdcPartnerOrderId "
              "(reference to SfdcPartnerOrder)")


@pytest.fixture
def renamed_org() -> Iterator[SandboxOrg]:
    # No data: the demo data set is written with the reference's names.
    with SandboxOrg.start(data=None, renamed=RENAMED) as org:
        yield org


def write_config(path: Path, org: SandboxOrg, monkeypatch: pytest.MonkeyPatch, *, alias: str = "acme",
                 mapping: Path | None = None, api_version: str | None = None) -> Path:
    secret = f"{alias.upper()}_SF_SECRET"
    monkeypatch.setenv(secret, org.client_secret)
    monkeypatch.setenv("MAP_STRIPE_KEY", "sk_test_mapping")
    path.write_text(f"""
database_url = "sqlite:///{path.with_suffix('.sqlite3')}"
{f'mapping = "{mapping}"' if mapping else ''}

[org]
alias = "{alias}"
org_id = "{org.org_id}"

[salesforce]
login_url = "{org.login_url}"
ca_bundle = "{org.ca_file}"
{f'api_version = "{api_version}"' if api_version else ''}

[salesforce.auth]
kind = "client_credentials"
client_id = "{org.client_id}"
client_secret = {{ env = "{secret}" }}

[stripe]
api_key = {{ env = "MAP_STRIPE_KEY" }}

[invoicing]
issuer = "salesforce"
""")
    return path


def cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


# ------------------------------------------------------------------------------ mapping check


def test_the_shipped_mapping_passes_the_check_against_the_sandbox_org(
        sandbox_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "acme.toml", sandbox_org, monkeypatch)
    sandbox_org.reset_counters()
    code, out, err = cli("mapping", "check", "--config", config)
    assert code == 0, out + err
    assert "acme: mapping gtm-v2 at API v66.0: fits the org's describe (12 objects checked)" in out
    # Every describe in one /composite call (12 GET subrequests).
    assert sandbox_org.counters()["calls"].get("composite") == 1
    assert sandbox_org.counters()["subrequests"].get("describe") == 12


def test_a_renamed_field_fails_the_check_with_the_closest_name(
        renamed_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "acme.toml", renamed_org, monkeypatch)
    code, out, err = cli("mapping", "check", "--config", config)
    assert code == 2, out + err
    assert f"acme: {SUGGESTION}" in err.splitlines()[-1] and "Traceback" not in out + err
    code, out, _ = cli("mapping", "check", "--config", config, "--json")
    [doc] = json.loads(out)["orgs"]
    assert code == 2 and doc["ok"] is False
    [problem] = doc["problems"]
    assert (problem["object"], problem["field"], problem["severity"]) == (
        "SfdcPartnerOrderItem", "PartnerOrderId", "error")
    assert problem["message"].startswith(
        "no such field; the org has SfdcPartnerOrderId (reference to SfdcPartnerOrder)")


def test_a_renamed_field_stops_sync_with_exit_2_and_the_message(
        renamed_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "acme.toml", renamed_org, monkeypatch)
    renamed_org.reset_counters()
    code, out, err = cli("sync", "--config", config)
    assert code == 2, out + err
    assert "acme: sync failed" in out and "does not match org acme's describe" in out and "Traceback" not in out + err
    assert SUGGESTION in " ".join(out.split())  # rich wraps the long line
    # Nothing was queried: the check came first.
    assert renamed_org.counters()["calls"].get("composite_batch", 0) == 0
    assert renamed_org.counters()["calls"].get("query", 0) + renamed_org.counters()["calls"].get("queryAll", 0) == 0


def test_a_mapping_mismatch_in_one_org_lets_the_other_orgs_sync(
        renamed_org: SandboxOrg, sandbox_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = write_config(tmp_path / "broken.toml", renamed_org, monkeypatch, alias="broken")
    good = write_config(tmp_path / "good.toml", sandbox_org, monkeypatch, alias="good")
    code, out, _ = cli("sync", "--config", broken, "--config", good, "--json")
    assert code == 2
    runs = {d["org"]: d for d in json.loads(out)["orgs"]}
    assert runs["broken"]["status"] == "failed" and SUGGESTION in runs["broken"]["error"]
    assert runs["good"]["status"] == "ok" and any(o["fetched"] for o in runs["good"]["objects"])


def test_a_dropped_object_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SandboxOrg.start(data=None, dropped=("SfdcPartnerOfferItem", "SfdcPartnerPayout")) as org:
        config = write_config(tmp_path / "acme.toml", org, monkeypatch)
        code, out, _ = cli("mapping", "check", "--config", config, "--json")
    [doc] = json.loads(out)["orgs"]
    assert code == 2
    by_object = {p["object"]: p for p in doc["problems"]}
    assert set(by_object) == {"SfdcPartnerOfferItem", "SfdcPartnerPayout"}
    assert by_object["SfdcPartnerOfferItem"]["severity"] == "error"
    assert by_object["SfdcPartnerOfferItem"]["message"].startswith("no such object in the org at API v66.0 "
                                                                   "(mapping object offer_item")
    assert by_object["SfdcPartnerPayout"]["severity"] == "warning"  # optional: mirrored as "not in this org"


def test_an_api_version_before_the_gtm_objects_names_them(
        sandbox_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "acme.toml", sandbox_org, monkeypatch, api_version="64.0")
    code, out, _ = cli("mapping", "check", "--config", config, "--json")
    [doc] = json.loads(out)["orgs"]
    assert code == 2
    assert {p["object"] for p in doc["problems"] if p["severity"] == "error"} == {
        "SfdcPartnerTermSet", "SfdcPartnerTermSetProduct", "SfdcPartnerProvisionProduct", "SfdcPartnerOffer",
        "SfdcPartnerOfferItem"}
    assert all("at API v64.0" in p["message"] for p in doc["problems"])


# ------------------------------------------------------------------------------ mapping draft


def test_the_draft_from_a_renamed_org_passes_the_check_against_it(
        renamed_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "acme.toml", renamed_org, monkeypatch)
    out_dir = tmp_path / "acme-mapping"
    code, out, err = cli("mapping", "draft", "--config", config, "--out", out_dir)
    assert code == 0, out + err
    assert sorted(p.name for p in out_dir.iterdir()) == ["mapping.toml", "vocabularies.toml", "writeback.toml"]
    text = (out_dir / "mapping.toml").read_text()
    assert 'SfdcPartnerOrderId = { column = "order_id", type = "reference", required = true }  # the template\'s ' \
           'PartnerOrderId' in text
    drafted = write_config(tmp_path / "drafted.toml", renamed_org, monkeypatch, mapping=out_dir)
    code, out, err = cli("mapping", "check", "--config", drafted)
    assert code == 0, out + err
    assert "fits the org's describe" in out
    code, out, err = cli("sync", "--config", drafted)
    assert code == 0, out + err


def test_the_draft_never_overwrites_a_non_empty_folder_without_force(
        sandbox_org: SandboxOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "acme.toml", sandbox_org, monkeypatch)
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "mapping.toml").write_text("# my edits\n")
    sandbox_org.reset_counters()
    code, out, err = cli("mapping", "draft", "--config", config, "--out", out_dir)
    assert code == 2 and "is not empty" in out + err and "--force" in out + err
    assert (out_dir / "mapping.toml").read_text() == "# my edits\n" and sandbox_org.api_calls == 0
    code, out, err = cli("mapping", "draft", "--config", config, "--out", out_dir, "--force")
    assert code == 0, out + err
    assert "[objects.order_item]" in (out_dir / "mapping.toml").read_text()


# ------------------------------------------------------------------------------ in front of the mirror


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def own_org() -> Iterator[SandboxOrg]:
    """An org of this test's own: its schema is changed while it runs."""
    with SandboxOrg.start(data="demo") as org:
        yield org


def runtime_for(org: SandboxOrg, database_url: str, tmp_path: Path, clock: Clock, **config: object) -> OrgRuntime:
    return bootstrap(sandbox_config(org, database_url, data_dir=tmp_path, **config), clock=clock)


def test_an_idle_cycle_pays_no_check_and_a_later_rename_is_caught_once_the_interval_passed(
        own_org: SandboxOrg, database_url: str, tmp_path: Path) -> None:
    clock = Clock()
    runtime = runtime_for(own_org, database_url, tmp_path, clock, sync={"describe_recheck_minutes": 30})
    try:
        assert run_job(runtime, "mirror", instance_id="test").status == "ok"
        assert own_org.counters()["calls"].get("composite") == 1  # the check before the first sync
        own_org.reset_counters()
        idle = run_job(runtime, "mirror", instance_id="test")
        assert idle.status == "ok" and idle.counts["written"] == 0
        assert own_org.counters()["calls"] == {"composite_batch": 1}  # the idle queries only: no check
        own_org.rename_field("SfdcCustomerForPartner", "BillingEmail", "BillingEmailAddress")
        clock.now += timedelta(minutes=29)
        assert run_job(runtime, "mirror", instance_id="test").status == "ok"  # not due yet, nothing queried it
        clock.now += timedelta(minutes=2)
        failed = run_job(runtime, "mirror", instance_id="test")
        assert failed.status == "failed"
        assert ("SfdcCustomerForPartner.BillingEmail: no such field; the org has BillingEmailAddress (email)"
                in (failed.error or ""))
    finally:
        runtime.close()


def test_a_query_failing_on_a_renamed_field_rechecks_at_once(
        own_org: SandboxOrg, database_url: str, tmp_path: Path) -> None:
    runtime = runtime_for(own_org, database_url, tmp_path, Clock())
    try:
        assert run_job(runtime, "mirror", instance_id="test").status == "ok"
        own_org.rename_field("SfdcCustomerForPartner", "BillingEmail", "BillingEmailAddress")
        gateway = runtime.salesforce()
        [customer] = gateway.query_all("SELECT Id FROM SfdcCustomerForPartner LIMIT 1")
        gateway.update("SfdcCustomerForPartner", customer["Id"], {"Name": "Renamed Org Customer"})
        own_org.reset_counters()
        failed = run_job(runtime, "mirror", instance_id="test")
        assert failed.status == "failed" and (failed.error or "").startswith("mapping gtm-v2 does not match org acme")
        assert ("SfdcCustomerForPartner.BillingEmail: no such field; the org has BillingEmailAddress"
                in (failed.error or ""))
        assert "INVALID_FIELD" not in (failed.error or "")  # the clear error replaces the SOQL one
        assert own_org.counters()["calls"].get("composite") == 1  # the re-check
    finally:
        runtime.close()


def test_a_new_process_rechecks_with_if_modified_since_and_a_changed_mapping_fully(
        sandbox_org: SandboxOrg, database_url: str, tmp_path: Path) -> None:
    first = runtime_for(sandbox_org, database_url, tmp_path, Clock())
    try:
        result = first.mapping_guard().ensure()
        assert result is not None and len(result.checked) == 12 and result.unchanged == []
    finally:
        first.close()
    second = runtime_for(sandbox_org, database_url, tmp_path, Clock())
    try:
        sandbox_org.reset_counters()
        result = second.mapping_guard().ensure()
        assert result is not None and result.checked == [] and len(result.unchanged) == 12  # all 304
        calls = {k: v for k, v in sandbox_org.counters()["calls"].items() if k != "oauth_token"}
        assert calls == {"composite": 1}
    finally:
        second.close()
    copy = tmp_path / "gtm-v2-copy"
    shutil.copytree(mappings_root() / "gtm-v2", copy)
    with (copy / "mapping.toml").open("a") as f:
        f.write("\n# a partner's edit\n")
    third = runtime_for(sandbox_org, database_url, tmp_path, Clock(), mapping=str(copy))
    try:
        result = third.mapping_guard().ensure()
        assert result is not None and len(result.checked) == 12  # another mapping: no If-Modified-Since
    finally:
        third.close()


def test_the_guard_raises_one_mapping_error_line_per_field(renamed_org: SandboxOrg, database_url: str,
                                                           tmp_path: Path) -> None:
    runtime = runtime_for(renamed_org, database_url, tmp_path, Clock())
    try:
        with pytest.raises(MappingError) as caught:
            runtime.mapping_guard().ensure()
        assert str(caught.value).splitlines()[1:] == ["  " + SUGGESTION]
        with runtime.uow() as uow:
            assert uow.mapping_checks.get(runtime.org_id, "gtm-v2") is None  # only a passed check is kept
    finally:
        runtime.close()
