"""`gtm-connector db upgrade|current`, as an operator runs it before starting the daemon."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from connector.entrypoints.cli import app

ORG_FILE = """
data_dir = "data"
[org]
alias = "{alias}"
org_id = "00D000000000{suffix}"
[salesforce]
login_url = "https://127.0.0.1"
[salesforce.auth]
kind = "client_credentials"
client_id = "app"
client_secret = {{ env = "NOT_SET_IN_THIS_TEST" }}
[invoicing]
issuer = "connector"

[stripe]
api_key = {{ env = "NOT_SET_EITHER" }}
"""


from .test_migrations import HEAD  # noqa: E402


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["db", *args])
    return result.exit_code, result.output


def test_upgrade_by_url_then_current(database_url: str) -> None:
    code, out = _run("current", "--database-url", database_url)
    assert code == 0 and "not migrated" in out

    code, out = _run("upgrade", "--database-url", database_url)
    assert code == 0 and f"upgraded empty -> {HEAD}" in out

    code, out = _run("upgrade", "--database-url", database_url)
    assert code == 0 and f"already at {HEAD}" in out

    code, out = _run("current", "--database-url", database_url)
    assert code == 0 and f"{HEAD} (up to date)" in out


def test_upgrade_every_org_in_the_config_dir_without_secrets(tmp_path: Path) -> None:
    for alias, suffix in (("acme", "ACMEAA"), ("globex", "GLOBAA")):
        (tmp_path / f"{alias}.toml").write_text(ORG_FILE.format(alias=alias, suffix=suffix))

    code, out = _run("upgrade", "--config-dir", str(tmp_path))

    assert code == 0, out
    assert "acme: sqlite:///" in out and "globex: sqlite:///" in out
    assert (tmp_path / "data" / "acme.sqlite3").exists() and (tmp_path / "data" / "globex.sqlite3").exists()
    code, out = _run("current", "--config", str(tmp_path / "acme.toml"))
    assert code == 0 and "acme:" in out and "(up to date)" in out and "globex" not in out


def test_unreachable_database_is_reported_without_its_password() -> None:
    code, out = _run("current", "--database-url", "postgresql://gtm:s3cret@127.0.0.1:1/gtm")
    assert code == 1
    assert "cannot read" in out and "s3cret" not in out and "gtm:***@" in out
