"""What an operator sees when something is wrong: every failure path of the CLI ends in a
message naming the file, key, option or record and what is wrong, with the exit code of
the convention (0 ok, 1 a run failed or bad records, 2 usage or configuration, 130
interrupted), never a Python traceback and never a secret.

Real parts only: config files and key files on disk, SQLite files, the PostgreSQL server
on 127.0.0.1:5432, the HTTPS sandbox org and the Stripe sandbox, closed ports for what is
unreachable, and the installed ``gtm-connector`` in a subprocess where signals matter.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner, Result

from connector.entrypoints.cli import app
from connector.entrypoints.cli._common import describe_error, report_error
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from tests.fixtures.daemon import free_port

EXE = Path(sys.executable).parent / "gtm-connector"
SF_SECRET_ENV, STRIPE_KEY_ENV = "OPX_SF_SECRET", "OPX_STRIPE_KEY"
STRIPE_KEY = "sk_test_operatorerrors"


def run(*args: str, input: str | None = None) -> Result:  # noqa: A002 - CliRunner's name
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def assert_clean(result: Result) -> None:
    """No traceback, and no exception escaped the command (it exited with a code)."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def write_config(directory: Path, org: SandboxOrg | None, *, alias: str = "acme", stripe_base: str | None = None,
                 top: str = "", auth: str | None = None, login_url: str | None = None, extra: str = "",
                 sf_timeout: float = 5) -> Path:
    """An org file as an operator writes one; ``top`` goes before the first table."""
    directory.mkdir(parents=True, exist_ok=True)
    if auth is None:
        auth = (f'kind = "client_credentials"\nclient_id = "{org.client_id if org else "cid"}"\n'
                f'client_secret = {{ env = "{SF_SECRET_ENV}" }}')
    login = login_url or (org.login_url if org else "https://127.0.0.1:1")
    ca = f'ca_bundle = "{org.ca_file}"\n' if org else ""
    base = f'api_base = "{stripe_base}"\n' if stripe_base else 'api_base = "http://127.0.0.1:1"\n'
    path = directory / f"{alias}.toml"
    path.write_text(f"""{top or f'database_url = "sqlite:///{directory / (alias + ".sqlite3")}"'}
[org]
alias = "{alias}"
org_id = "{org.org_id if org else '00D000000000OPXAAA'}"

[salesforce]
login_url = "{login}"
{ca}timeout_seconds = {sf_timeout:g}

[salesforce.auth]
{auth}

[invoicing]
issuer = "connector"

[stripe]
api_key = {{ env = "{STRIPE_KEY_ENV}" }}
{base}timeout_seconds = 5

[offers]
drafts_dir = "{directory / 'offers'}"
{extra}""")
    return path


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch: pytest.MonkeyPatch, sandbox_org_session: SandboxOrg) -> None:
    monkeypatch.setenv(SF_SECRET_ENV, sandbox_org_session.client_secret)
    monkeypatch.setenv(STRIPE_KEY_ENV, STRIPE_KEY)
    monkeypatch.delenv("GTM_CONFIG_DIR", raising=False)
    monkeypatch.delenv("GTM_DEBUG", raising=False)


# ------------------------------------------------------------------ choosing the org


def test_missing_or_empty_config_dir_and_unknown_alias(tmp_path: Path) -> None:
    result = run("status", "--config-dir", tmp_path / "nope")
    assert result.exit_code == 2 and "nope: config directory does not exist" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run("sync", "--config-dir", tmp_path / "empty")
    assert result.exit_code == 2 and "empty: no valid org config files" in result.stderr
    write_config(tmp_path / "cfg", None)
    result = run("status", "--config-dir", tmp_path / "cfg", "--org", "globex")
    assert result.exit_code == 2
    assert "no config file for org 'globex' (valid orgs here: acme)" in result.stderr
    result = run("status", "--org", "acme", "--config", tmp_path / "cfg" / "acme.toml")
    assert result.exit_code == 2 and "not both" in result.output
    assert_clean(result)


def _garbage(directory: Path) -> str:
    (directory / "key.pem").write_text("not a key\n")
    return "key.pem"


def _encrypted(directory: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "enc.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.BestAvailableEncryption(b"pw")))
    return "enc.pem"


def _not_rsa(directory: Path) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "ec.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return "ec.pem"


def _a_directory(directory: Path) -> str:
    (directory / "keys").mkdir()
    return "keys"


@pytest.mark.parametrize(("make_key", "message"), [
    (_garbage, "key.pem is not a PEM private key"),
    (_encrypted, "enc.pem is encrypted"),
    (_not_rsa, "ec.pem is not an RSA key"),
    (_a_directory, "keys is not a file"),
])
def test_unusable_jwt_private_key_is_a_config_error_naming_the_file(tmp_path: Path, make_key, message: str) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    name = make_key(cfg)
    path = write_config(cfg, None, auth=f'kind = "jwt_bearer"\nclient_id = "cid"\nusername = "u@x.example"\n'
                                        f'private_key_file = "{name}"')
    for result in (run("config", "check", path), run("sync", "--config", path)):
        assert result.exit_code == 2, result.output
        assert f"{path}: salesforce.auth.private_key_file: private key file {cfg / name}" in result.stderr
        assert message in result.stderr and "BEGIN" not in result.output
        assert_clean(result)


@pytest.mark.parametrize(("text", "key", "message"), [
    ("timeout_seconds = = 5", "(syntax)", "not valid TOML"),
    ('colour = "red"', "salesforce.colour", "unknown key"),
])
def test_broken_file_is_named_with_its_key(tmp_path: Path, text: str, key: str, message: str) -> None:
    path = write_config(tmp_path, None)
    original = path.read_text()
    path.write_text(original.replace('timeout_seconds = 5\n\n[salesforce.auth]', text + '\n[salesforce.auth]', 1))
    result = run("status", "--config", path)
    assert result.exit_code == 2 and f"{path}: {key}: {message}" in result.stderr
    assert_clean(result)


def test_missing_secret_env_var_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SF_SECRET_ENV)
    path = write_config(tmp_path, None)
    result = run("sync", "--config", path)
    assert result.exit_code == 2
    assert f"{path}: salesforce.auth.client_secret: environment variable {SF_SECRET_ENV} is not set" in result.stderr


def test_one_bad_file_skips_that_org_only_and_exits_2(tmp_path: Path) -> None:
    write_config(tmp_path, None)
    bad = write_config(tmp_path, None, alias="globex", extra="[sync]\nlookbak_seconds = 5\n")
    result = run("status", "--config-dir", tmp_path, "--json")
    assert result.exit_code == 2
    assert f"{bad}: sync.lookbak_seconds: unknown key (not allowed here) (org skipped)" in result.stderr
    assert [o["org"] for o in json.loads(result.stdout)["orgs"]] == ["acme"]  # the good org still ran


# ------------------------------------------------------------------ the database


@pytest.mark.parametrize(("url", "key_message"), [
    ("not a url", "database_url: must be sqlite:///FILE or postgresql://USER@HOST/DB, got 'not a url'"),
    ("mysql://root:hunter2@127.0.0.1/x", "database_url: must be sqlite:///FILE or postgresql://USER@HOST/DB, "
                                         "got 'mysql://root:***@127.0.0.1/x'"),
])
def test_database_url_that_is_not_one_is_a_config_error(tmp_path: Path, url: str, key_message: str) -> None:
    path = write_config(tmp_path, None, top=f'database_url = "{url}"')
    for result in (run("status", "--config", path), run("config", "check", path)):
        assert result.exit_code == 2 and f"{path}: {key_message}" in result.stderr
        assert "hunter2" not in result.output
        assert_clean(result)


# Issue 15.5: each of these passed `config check` and then crashed the command that built
# the part (the daemon's trigger, the Salesforce TLS context, the engine). `config check` now
# builds them too, so both name the file and key, and nothing runs for that org.
@pytest.mark.parametrize(("top", "extra", "key", "message", "command"), [
    ("", '[schedules.invoicing]\ncron = "0 2 * * 8"\n', "schedules.invoicing.cron",
     "invalid cron '0 2 * * 8': day of week '8' out of range 0-7", "daemon"),
    ("", '[schedules.mirror]\ncron = "0 25 * * *"\n', "schedules.mirror.cron",
     "invalid cron '0 25 * * *': hour '25'", "daemon"),
    ("", '[schedules.reconcile]\ncron = "0 2 * * mon-5"\n', "schedules.reconcile.cron",
     "invalid cron '0 2 * * mon-5': day of week 'mon-5'", "daemon"),
    ("", '[schedules.writeback]\ncron = "0 0 30 2 *"\n', "schedules.writeback.cron",
     "invalid cron '0 0 30 2 *': never fires", "daemon"),
    ("", "", "salesforce.ca_bundle", "CA bundle {dir}/certs/corp-ca.pem does not exist", "sync"),
    ('database_url = "postgresql://gtm:hunter2@127.0.0.1:54x2/test"', "", "database_url",
     "the port must be a number, got 'postgresql://gtm:***@127.0.0.1:54x2/test'", "status"),
    ('database_url = "postgresql://gtm@127.0.0.1:99999/test"', "", "database_url",
     "port 99999 is out of range (1-65535)", "status"),
    ('database_url = "postgresql+nosuchdriver://gtm@127.0.0.1/test"', "", "database_url",
     "unknown driver 'postgresql+nosuchdriver'", "status"),
    ("", "", "salesforce.login_url", "the port of 'https://127.0.0.1:44x3' must be a number", "sync"),
    ("", "", "stripe.api_base", "the port of 'http://127.0.0.1:99999' must be a number from 1 to 65535", "invoice"),
])
def test_what_config_check_accepts_the_runtime_can_build(tmp_path: Path, top: str, extra: str, key: str,
                                                         message: str, command: str) -> None:
    path = write_config(tmp_path, None, top=top, extra=extra)
    if key == "salesforce.ca_bundle":
        path.write_text(path.read_text().replace("timeout_seconds = 5\n", 'ca_bundle = "certs/corp-ca.pem"\n'
                                                 "timeout_seconds = 5\n", 1))
    if key == "salesforce.login_url":
        path.write_text(path.read_text().replace('login_url = "https://127.0.0.1:1"', 'login_url = "https://127.0.0.1:44x3"'))
    if key == "stripe.api_base":
        path.write_text(path.read_text().replace('api_base = "http://127.0.0.1:1"', 'api_base = "http://127.0.0.1:99999"'))
    expected = f"{path}: {key}: {message.format(dir=tmp_path)}"
    checked = run("config", "check", path)
    assert checked.exit_code == 2 and expected in checked.stderr
    assert_clean(checked)
    if command == "daemon":  # a process with a timeout: a daemon that does start must not hang the suite
        proc = subprocess.run([str(EXE), "daemon", "--config-dir", str(tmp_path), "--port", "0"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        events = [json.loads(line) for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                  if line.startswith("{")]
        (bad,) = [e for e in events if e["event"] == "config.invalid"]
        assert f"{bad['file']}: {bad['key']}: {bad['problem']}".startswith(expected) and bad["action"] == "org skipped"
        assert "Traceback" not in proc.stderr and "bug" not in proc.stderr
        return
    result = run(command, "--config", path)
    assert result.exit_code == 2 and expected in result.stderr, result.output
    assert "hunter2" not in result.output and "bug" not in result.output
    assert_clean(result)


def test_a_ca_bundle_that_holds_no_certificate_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    path = write_config(tmp_path, None)
    path.write_text(path.read_text().replace("timeout_seconds = 5\n", 'ca_bundle = "ca.pem"\ntimeout_seconds = 5\n', 1))
    result = run("config", "check", path)
    assert result.exit_code == 2
    assert f"{path}: salesforce.ca_bundle: CA bundle {tmp_path / 'ca.pem'} holds no PEM certificate" in result.stderr


def test_sqlite_file_that_cannot_be_used(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    path = write_config(tmp_path / "cfg", None, top=f'database_url = "sqlite:///{tmp_path}/a-file/x.sqlite3"')
    result = run("status", "--config", path)
    assert result.exit_code == 2
    assert f"{path}: database_url: sqlite:///{tmp_path}/a-file/x.sqlite3: cannot create the SQLite file's " \
           f"directory {tmp_path}/a-file: File exists" in result.stderr
    (tmp_path / "junk.sqlite3").write_text("this is not a database, it is a note\n" * 200)
    path = write_config(tmp_path / "cfg2", None, top=f'database_url = "sqlite:///{tmp_path}/junk.sqlite3"')
    result = run("status", "--config", path)
    assert result.exit_code == 2 and "database_url:" in result.stderr and "file is not a database" in result.stderr
    assert_clean(result)


def test_an_unmigrated_sqlite_file_is_migrated_by_any_command(tmp_path: Path) -> None:
    (tmp_path / "fresh.sqlite3").write_bytes(b"")
    path = write_config(tmp_path, None, top=f'database_url = "sqlite:///{tmp_path}/fresh.sqlite3"')
    result = run("status", "--config", path, "--json")
    assert result.exit_code == 0, result.output
    result = run("db", "current", "--config", path)
    assert result.exit_code == 0 and "(up to date)" in result.stdout


def test_postgresql_wrong_database_or_closed_port(tmp_path: Path, _pg_server: tuple[str | None, str]) -> None:
    user = _pg_server[0]
    if user is None:
        pytest.skip(f"PostgreSQL not reachable: {_pg_server[1]}")
    path = write_config(tmp_path / "a", None, top=f'database_url = "postgresql://{user}:s3cretpw@127.0.0.1:5432/no_such_db"')
    result = run("status", "--config", path)
    assert result.exit_code == 2, result.output
    assert f"{path}: database_url: postgresql://{user}:***@127.0.0.1:5432/no_such_db: cannot use the database" \
           in result.stderr and 'database "no_such_db" does not exist' in result.stderr
    result = run("db", "current", "--config", path)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    port = free_port()  # nothing listens there: the server may just be down, so a failed run (1)
    path = write_config(tmp_path / "b", None, top=f'database_url = "postgresql://{user}:s3cretpw@127.0.0.1:{port}/test"')
    result = run("status", "--config", path)
    assert result.exit_code == 1 and "Connection refused" in result.stderr
    assert "s3cretpw" not in result.output
    assert_clean(result)


def test_db_commands_with_a_bad_url_or_revision(tmp_path: Path) -> None:
    result = run("db", "current", "--database-url", "nope")
    assert result.exit_code == 2 and "database: nope: not a database URL" in result.stderr
    result = run("db", "upgrade", "--database-url", f"sqlite:///{tmp_path}/x.sqlite3", "--revision", "zzz")
    assert result.exit_code == 2 and "cannot migrate: Can't locate revision identified by 'zzz'" in result.stderr
    assert_clean(result)


# ------------------------------------------------------------------ Salesforce and Stripe


class ResettingListener:
    """A TCP port that accepts and drops every connection, counting them: a login URL that
    answers no TLS handshake."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def test_unreachable_login_url_fails_once_through_the_retry_policy(tmp_path: Path) -> None:
    listener = ResettingListener()
    try:
        path = write_config(tmp_path, None, login_url=f"https://127.0.0.1:{listener.port}")
        result = run("sync", "--config", path)
    finally:
        listener.sock.close()
    assert result.exit_code == 1
    assert f"OAuth token request to https://127.0.0.1:{listener.port} failed" in result.output
    assert listener.accepted == 5  # the policy's 5 attempts, not 5 logins x 5 queries
    assert_clean(result)


def test_wrong_client_secret_names_the_client_and_leaks_nothing(tmp_path: Path, sandbox_org: SandboxOrg,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SF_SECRET_ENV, "wrong-secret-CANARY")
    path = write_config(tmp_path, sandbox_org)
    result = run("sync", "--config", path)
    assert result.exit_code == 1
    assert f"Salesforce refused the client_credentials login for client {sandbox_org.client_id}" in result.output
    assert "CANARY" not in result.output
    assert_clean(result)


def test_stripe_unreachable_or_key_refused(tmp_path: Path, sandbox_org: SandboxOrg, monkeypatch: pytest.MonkeyPatch,
                                           stripe_sandbox: StripeSandbox) -> None:
    closed = write_config(tmp_path / "closed", sandbox_org, stripe_base=f"http://127.0.0.1:{free_port()}")
    assert run("sync", "--config", closed).exit_code == 0
    result = run("invoice", "--config", closed)
    assert result.exit_code == 1 and "invoicing failed" in result.output and "stripe invoices.search:" in result.output
    assert "support@stripe.com" not in result.output  # the SDK's advice is not ours to give
    assert "connection refused); check [stripe] api_base" in result.output
    monkeypatch.setenv(STRIPE_KEY_ENV, "rk_live_CANARY0000")
    refused = write_config(tmp_path / "refused", sandbox_org, stripe_base=stripe_sandbox.api_base)
    assert run("sync", "--config", refused).exit_code == 0
    result = run("invoice", "--config", refused)
    assert result.exit_code == 1 and "Stripe refused the API key or account (401)" in result.output
    assert "CANARY" not in result.output
    assert_clean(result)


# ------------------------------------------------------------------ records and options


def test_replay_unknown_and_already_resolved_letters(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    path = write_config(tmp_path, sandbox_org)
    assert run("sync", "--config", path).exit_code == 0
    [letter] = json.loads(run("dead-letters", "--config", path, "--json").stdout)["dead_letters"]
    result = run("replay", "--config", path, "--id", "4242")
    assert result.exit_code == 2
    assert "dead letter 4242: no such letter in the selected org" in result.stderr
    sandbox_org.update("SfdcPartnerOrderItem", [{"Id": letter["record_id"], "Quantity": 2}])  # the cause, fixed
    result = run("replay", "--config", path, "--id", str(letter["id"]))
    assert result.exit_code == 0 and "resolved" in result.stdout
    result = run("replay", "--config", path, "--id", str(letter["id"]))
    assert result.exit_code == 0 and f"dead letter {letter['id']}: already resolved" in result.stderr
    assert_clean(result)


def test_replay_that_cannot_reach_the_org_says_why(tmp_path: Path, sandbox_org: SandboxOrg,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, sandbox_org)
    assert run("sync", "--config", path).exit_code == 0
    monkeypatch.setenv(SF_SECRET_ENV, "revoked")
    result = run("replay", "--config", path, "--all", "--json")
    assert result.exit_code == 1
    [item] = json.loads(result.stdout)["items"]
    assert item["outcome"] == "still failing" and item["detail"].startswith("replay failed: ")
    assert "Salesforce refused the client_credentials login" in item["detail"] and "Error:" not in item["detail"]


def test_option_values_are_checked_before_anything_runs(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    cases = [
        (("report", "--config", path, "--from", "2025-03-01", "--to", "2025-01-31"), "--from 2025-03-01 is after --to"),
        (("report", "--config", path, "--from", "2025-02-30"), "expected a date YYYY-MM-DD, got '2025-02-30'"),
        (("dead-letters", "--config", path, "--source", "mirorr"),
         "unknown dead-letter source 'mirorr'; valid sources: mirror (sync), offers_push"),
        (("sync", "--config", path, "--objects", "ppc,oders"), "unknown object(s) oders; the mapping gtm-v2 has"),
        (("sandbox", "stripe", "--fee-percent", "abc"), "'abc' is not a number"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.replace("│", " ").split()), (args, result.output)
        assert_clean(result)


def test_offer_create_names_the_options_to_fix_and_writes_nothing(tmp_path: Path) -> None:
    path = write_config(tmp_path, None)
    args = ("offer", "create", "--config", path, "--customer", "Wayne", "--customer-org-id", "00D5g0000012345ABC",
            "--start", "2099-01-01", "--valid-until", "2098-12-01", "--key", "wayne")
    result = run(*args, "--recipient", "nobody", "--item", "Core App:-3:50.00")
    assert result.exit_code == 1
    assert "offer 'wayne' not written" in result.stderr
    assert 'recipient_email: must be an email address (Stripe sends the invoice there), got "nobody" (--recipient)' \
           in result.stderr
    assert "items[0].quantity: must be a positive integer, got -3 (--item 'Core App:-3:50.00')" in result.stderr
    assert "wayne.toml:" not in result.stderr and not (tmp_path / "offers").exists()
    (tmp_path / "offers").mkdir()
    (tmp_path / "offers" / "wayne.toml").write_text("# an existing draft\n")
    result = run(*args, "--recipient", "buyer@wayne.example.com", "--item", "Core App:3:50.00")
    assert result.exit_code == 2 and "a draft with key 'wayne' exists already" in result.stderr
    assert_clean(result)


def test_payout_estimate_on_empty_or_unreadable_input(tmp_path: Path) -> None:
    result = run("payout-estimate", input="")
    assert result.exit_code == 2 and "payout-estimate: stdin is empty" in result.stderr
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    result = run("payout-estimate", "--input", tmp_path / "blank.jsonl", "--table")
    assert result.exit_code == 2 and "blank.jsonl is empty" in result.stderr
    result = run("payout-estimate", input="[]\n")
    assert result.exit_code == 0 and result.stdout == ""  # an explicit empty list is fine
    (tmp_path / "notes.txt").write_text("order one: 10 seats\n")
    result = run("payout-estimate", "--input", tmp_path / "notes.txt")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"id": None, "error": "line 1: invalid JSON: Expecting value (column 1)"}
    (tmp_path / "orders.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00\xff\xfe\x80binary")
    result = run("payout-estimate", "--input", tmp_path / "orders.xlsx")
    assert result.exit_code == 2 and "orders.xlsx is not UTF-8 text" in result.stderr
    assert_clean(result)


def test_demo_options_are_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    for args, message in [
        (("--data-dir", tmp_path / "a-file" / "demo"), "--data-dir: cannot create"),
        (("--data-dir", tmp_path / "d", "--database-url", "postgres:/oops"), "--database-url: 'postgres:/oops'"),
        (("--data-dir", tmp_path / "d", "--config", tmp_path / "nope.toml"), "nope.toml is not a file"),
    ]:
        result = run("demo", *args)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.replace("│", " ").split())
        assert_clean(result)


def test_sandbox_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("sandbox", "stripe", "--port", str(port))
    assert result.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.output
    assert_clean(result)


def test_errors_outside_the_tree_become_one_redacted_line(capsys: pytest.CaptureFixture[str]) -> None:
    lines, code = describe_error(KeyError("ppc"))
    assert code == 1 and lines == ["error: unexpected KeyError: 'ppc' (this is a bug; run again with GTM_DEBUG=1 "
                                   "to see the traceback)"]
    assert report_error(RuntimeError("header Authorization: Bearer 00Dxx!AQ4AQLdTCANARY\nsecond line")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: header Authorization: Bearer ")
    assert "CANARY" not in err and "second line" not in err
    lines, code = describe_error(KeyboardInterrupt())
    assert code == 130 and lines[0].startswith("interrupted")


# ------------------------------------------------------------------ processes and signals


def _lines_until(stream, needle: str, deadline: float) -> list[str]:  # noqa: ANN001
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            break
    return seen


def test_daemon_skips_an_org_whose_file_is_bad_and_runs_the_others(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    write_config(tmp_path, sandbox_org)
    write_config(tmp_path, None, alias="garbled", top='database_url = "sqlite//oops"')
    (tmp_path / "a-file").write_text("")
    write_config(tmp_path, None, alias="nodir", top=f'database_url = "sqlite:///{tmp_path}/a-file/x.sqlite3"')
    proc = subprocess.Popen([str(EXE), "daemon", "--config-dir", str(tmp_path), "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        seen = _lines_until(proc.stderr, "daemon.started", time.monotonic() + 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[1]
    events = [json.loads(line) for line in seen if line.startswith("{")]
    invalid = {e["file"]: e for e in events if e["event"] == "config.invalid"}
    assert invalid[str(tmp_path / "garbled.toml")]["key"] == "database_url"
    assert "cannot create" in invalid[str(tmp_path / "nodir.toml")]["problem"]
    [started] = [e for e in events if e["event"] == "daemon.started"]
    assert started["orgs"] == ["acme"]
    assert proc.returncode == 0 and "Traceback" not in "".join(seen) + rest


@pytest.fixture
def slow_sync(tmp_path: Path, sandbox_org: SandboxOrg) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """`gtm-connector sync` against the sandbox org answering each call after 1.5 s,
    started and waited for until its first query is in flight (after the mapping check)."""
    path = write_config(tmp_path, sandbox_org)
    sandbox_org.set_latency(1.5)
    proc = subprocess.Popen([str(EXE), "sync", "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while sum(sandbox_org.counters()["calls"].values()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the token call, the mapping check's describes and the first query have arrived
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sandbox_org.set_latency(0)


def test_ctrl_c_during_sync_stops_after_the_page_and_commits(slow_sync: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = slow_sync
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "SIGINT: finishing the current page or batch" in err
    assert "interrupted: stopped after the current page or batch; what was done is committed" in err
    assert "sync stopped" in out and "Traceback" not in out + err
    [doc] = json.loads(run("status", "--config", path, "--json").stdout)["orgs"]
    assert doc["last_mirror_run"]["status"] == "stopped"
    synced = [o for o in doc["objects"] if o["cursor"] is not None]
    assert 1 <= len(synced) < len(doc["objects"])  # what was fetched is kept; the rest waits


HELD_S = 30.0  # how long the sandbox holds the sync's first queries (what a first Ctrl-C waits for)


def test_second_ctrl_c_quits_at_once(tmp_path: Path, sandbox_org: SandboxOrg) -> None:
    """The second Ctrl-C quits without waiting for the call in flight. The sandbox holds the
    sync's first queries (one composite batch) for 30 s, under the client's timeout: after
    the first Ctrl-C the sync waits for them; after the second it must be gone well before.
    Timed from the second signal, sent once the first was seen handled (its note on stderr),
    so neither the process start nor the first signal counts: the exit takes 0.2 s on an idle
    2-core machine, under 1 s with 4 busy processes on it."""
    path = write_config(tmp_path, sandbox_org, sf_timeout=2 * HELD_S)
    released = threading.Event()
    sandbox_org.before("composite_batch", lambda: released.wait(HELD_S))  # the first pages of the queries
    proc = subprocess.Popen([str(EXE), "sync", "--config", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        _wait_for(lambda: sandbox_org.counters()["calls"].get("composite_batch", 0) >= 1, 20, "the queries in flight")
        proc.send_signal(signal.SIGINT)
        _wait_for(lambda: any("SIGINT: finishing the current page" in line for line in err), 10, "the first SIGINT")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=2 * HELD_S)
        quit_after = time.monotonic() - signalled
    finally:
        released.set()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(10)
    assert quit_after < HELD_S / 3, f"{quit_after:.1f} s after the second Ctrl-C"
    assert proc.returncode == 130
    assert "interrupted: stopped at once" in "".join(err) and "Traceback" not in "".join(err)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
