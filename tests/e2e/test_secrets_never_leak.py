"""Secrets never reach logs, exception messages, CLI output or the database.

Every secret here is a distinctive canary (all contain ``CANARY``): the Salesforce client
secret and password are set on a sandbox org of this module's own, the Stripe key is one
the Stripe sandbox accepts, the webhook secret signs real sandbox events, and the database
password sits in PostgreSQL URLs. Secrets made at run time are watched for too: every
access token the sandbox org issued and the lines of the JWT private key.

Each flow runs as an operator meets it — the CLI, the daemon process, the webhook
receiver, the adapters — through success and failure (refused credentials, Stripe 401,
Stripe 500s retried until they run out, a key with a stray newline, bad webhook
signatures, a job crashing with a traceback, config files with bad secret references,
``db`` commands on an unreachable database). Afterwards everything a person or a log
shipper could read is scanned: CLI stdout/stderr and tracebacks, rendered JSON log lines
and the raw event dicts handed to structlog, exception ``str``/``repr``/tracebacks, HTTP
bodies (/readyz, /metrics, the receiver's answers) and every column of every table.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner, Result

from connector.adapters.salesforce import build_org_gateway
from connector.adapters.stripe_billing import build_billing_gateway
from connector.adapters.stripe_payouts import build_payouts_gateway
from connector.bootstrap import bootstrap
from connector.config import load_config
from connector.entrypoints.cli import app
from connector.entrypoints.webhook import make_webhook_app, receivers_for, serve
from connector.errors import AuthError, ConfigError, PermanentError, TransientError
from connector.jobs import run_job
from connector.logging import REDACTED, configure
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from gtm_sandbox.stripe.notify import sign
from tests.fixtures.daemon import DaemonLauncher, free_port, new_org_id

REPO = Path(__file__).resolve().parents[2]
MARKER = "CANARY"  # in every canary secret: any fragment of one that shows is a leak


class Canaries:
    """The secrets of this module and what is watched for: the marker, plus secrets issued
    at run time (access tokens, private key lines) that cannot carry it."""

    def __init__(self) -> None:
        tag = secrets.token_hex(6)
        self.sf_secret = f"sfsecret-{MARKER}-{tag}"
        self.sf_wrong_secret = f"sfsecret-{MARKER}-wrong-{tag}"
        self.sf_password = f"sfpassword-{MARKER}-{tag}"
        self.sf_wrong_password = f"sfpassword-{MARKER}-wrong-{tag}"
        self.stripe_key = f"sk_test_{MARKER}stripe{tag}"
        self.stripe_wrong_key = f"sk_live_{MARKER}wrong{tag}"  # the sandbox, like test mode, refuses live keys
        self.webhook_secret = f"whsec_{MARKER}hook{tag}"
        self.webhook_wrong_secret = f"whsec_{MARKER}wrong{tag}"
        self.db_password = f"dbpw-{MARKER}-{tag}"
        self.issued: set[str] = set()

    def learn_tokens(self, org: SandboxOrg) -> int:
        """Remember every access token the org holds now, whole and its part after the org id."""
        with org.control.api.sessions.lock:
            tokens = list(org.control.api.sessions.tokens)
        for token in tokens:
            self.issued.update({token, token.split("!", 1)[1]})
        return len(tokens)

    def learn_private_key(self, pem: str) -> None:
        self.issued.update(line for line in pem.splitlines() if len(line) >= 40 and "PRIVATE KEY" not in line)

    def leaks(self, text: str) -> list[str]:
        return [s for s in (MARKER, *self.issued) if s in text]

    def assert_clean(self, where: str, text: str) -> None:
        found = self.leaks(text)
        if found:
            at = text.find(found[0])
            raise AssertionError(f"{where} shows a secret ({found[0][:24]}…): …{text[max(0, at - 300):at + 120]}…")


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture(scope="module")
def _org(canaries: Canaries) -> Iterator[SandboxOrg]:
    """A sandbox org of this module: its connected app takes the canary secret and password."""
    with SandboxOrg.start(data="demo") as org:
        org.control.api.app.client_secret = canaries.sf_secret
        org.control.api.app.password = canaries.sf_password
        canaries.learn_private_key(org.private_key_file.read_text())
        yield org


@pytest.fixture
def org(_org: SandboxOrg, canaries: Canaries) -> Iterator[SandboxOrg]:
    _org.reset("demo")
    yield _org
    canaries.learn_tokens(_org)


@pytest.fixture
def env(canaries: Canaries, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The secrets where config files point: environment variables."""
    monkeypatch.setenv("LEAK_SF_SECRET", canaries.sf_secret)
    monkeypatch.setenv("LEAK_SF_PASSWORD", canaries.sf_password)
    monkeypatch.setenv("LEAK_STRIPE_KEY", canaries.stripe_key)
    monkeypatch.setenv("LEAK_WEBHOOK_SECRET", canaries.webhook_secret)
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no wrapping that could split a secret
    return monkeypatch


def org_toml(org: SandboxOrg, stripe_box: StripeSandbox | None, tmp_path: Path, *, auth: str = "client_credentials",
             alias: str = "acme", org_id: str | None = None, database: str | None = None,
             private_key_file: Path | None = None, extra: str = "") -> str:
    auths = {
        "client_credentials": f'kind = "client_credentials"\nclient_id = "{org.client_id}"\n'
                              'client_secret = { env = "LEAK_SF_SECRET" }',
        "password": f'kind = "password"\nclient_id = "{org.client_id}"\nusername = "{org.username}"\n'
                    'password = { env = "LEAK_SF_PASSWORD" }\nclient_secret = { env = "LEAK_SF_SECRET" }',
        "jwt_bearer": f'kind = "jwt_bearer"\nclient_id = "{org.client_id}"\nusername = "{org.username}"\n'
                      f'private_key_file = "{private_key_file or org.private_key_file}"',
    }
    api_base = f'api_base = "{stripe_box.api_base}"' if stripe_box else ""
    return f"""{database or f'database_url = "sqlite:///{tmp_path / (alias + ".sqlite3")}"'}

[org]
alias = "{alias}"
org_id = "{org_id or org.org_id}"

[salesforce]
login_url = "{org.login_url}"
ca_bundle = "{org.ca_file}"

[salesforce.auth]
{auths[auth]}

[invoicing]
issuer = "connector"

[stripe]
api_key = {{ env = "LEAK_STRIPE_KEY" }}
{api_base}
webhook_secret = {{ env = "LEAK_WEBHOOK_SECRET" }}

[offers]
drafts_dir = "{tmp_path / 'offers'}"
{extra}"""


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


class Transcript:
    """Everything the flows of one test showed, by where it showed."""

    def __init__(self, canaries: Canaries) -> None:
        self.canaries = canaries
        self.parts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> str:
        self.parts.append((where, text))
        return text

    def cli(self, *args: str) -> Result:
        """Run a command in-process: stdout and stderr (where the logs go) as one output,
        and the traceback of anything it let escape."""
        result = CliRunner().invoke(app, list(args))
        self.add(f"`{' '.join(args[:2])}` output", result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.add(f"`{' '.join(args[:2])}` traceback", "".join(traceback.format_exception(*result.exc_info)))
        return result

    def exception(self, where: str, exc: BaseException) -> None:
        self.add(f"{where} str", str(exc))
        self.add(f"{where} repr", repr(exc))
        self.add(f"{where} traceback", "".join(traceback.format_exception(exc)))

    def database(self, url: str) -> str:
        """Every row of every table, every column."""
        engine = create_engine(url)
        lines = []
        try:
            with engine.connect() as conn:
                for table in inspect(conn).get_table_names():
                    for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                        lines.append(f"{table}: {tuple(row)!r}")
        finally:
            engine.dispose()
        return self.add(f"database {url.rsplit('/', 1)[-1]}", "\n".join(lines))

    def assert_clean(self) -> None:
        assert self.parts, "nothing was captured"
        for where, captured in self.parts:
            self.canaries.assert_clean(where, captured)


@pytest.fixture
def shown(canaries: Canaries) -> Transcript:
    return Transcript(canaries)


class LogTap:
    """connector.logging's own pipeline (JSON lines to stderr, redaction) with one processor
    in front that keeps each raw event as the code handed it to structlog."""

    def __init__(self) -> None:
        self.raw: list[dict[str, Any]] = []

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        self.raw.append(dict(event_dict))
        return event_dict

    def text(self) -> str:
        return "\n".join(repr(e) for e in self.raw)


@pytest.fixture
def log_tap() -> LogTap:
    configure(json=True)
    tap = LogTap()
    structlog.configure(processors=[tap, *structlog.get_config()["processors"]])
    return tap


def job_doc(result: Result) -> dict[str, Any]:
    """The last org's part of the JSON document a `--json` command printed (log lines are JSON too)."""
    docs = [json.loads(line) for line in result.output.splitlines() if line.startswith('{"orgs"')]
    assert docs, result.output
    return docs[-1]["orgs"][-1]


def db_url(tmp_path: Path, alias: str = "acme") -> str:
    return f"sqlite:///{tmp_path / (alias + '.sqlite3')}"


# ------------------------------------------------------------------------------ Salesforce


def test_salesforce_secret_password_key_and_tokens_stay_out_of_cli_logs_and_db(
        org: SandboxOrg, env: pytest.MonkeyPatch, tmp_path: Path, canaries: Canaries, shown: Transcript) -> None:
    config = write(tmp_path / "acme.toml", org_toml(org, None, tmp_path))

    ok = shown.cli("sync", "--config", str(config), "--json")
    assert ok.exit_code == 0 and job_doc(ok)["status"] == "ok", ok.output
    assert canaries.learn_tokens(org) >= 1

    # The session dies mid-run: the adapter logs in again (the dead token is remembered first).
    org.before("query", lambda: canaries.learn_tokens(org))
    org.fail("query", status=401)
    issued = org.counters()["tokens_issued"]
    again = shown.cli("sync", "--config", str(config), "--json", "--full")
    assert again.exit_code == 0 and org.counters()["tokens_issued"] == issued + 2, again.output

    env.setenv("LEAK_SF_SECRET", canaries.sf_wrong_secret)
    refused = shown.cli("sync", "--config", str(config), "--json")
    assert refused.exit_code == 1 and "invalid_client" in job_doc(refused)["error"]
    env.setenv("LEAK_SF_SECRET", canaries.sf_secret)

    password = write(tmp_path / "password.toml", org_toml(org, None, tmp_path, auth="password"))
    ok = shown.cli("run-job", "mirror", "--config", str(password), "--json")
    assert ok.exit_code == 0, ok.output
    env.setenv("LEAK_SF_PASSWORD", canaries.sf_wrong_password)
    refused = shown.cli("run-job", "mirror", "--config", str(password), "--json")
    assert refused.exit_code == 1 and "authentication failure" in job_doc(refused)["error"]

    jwt_ok = write(tmp_path / "jwt.toml", org_toml(org, None, tmp_path, auth="jwt_bearer"))
    ok = shown.cli("run-job", "mirror", "--config", str(jwt_ok), "--json")
    assert ok.exit_code == 0, ok.output
    # A key file that is no key: a ConfigError naming the file, never its content.
    bad_key = write(tmp_path / "bad_key.pem", f"-----BEGIN PRIVATE KEY-----\n{canaries.sf_secret}\n"
                                              "-----END PRIVATE KEY-----\n")
    jwt_bad = write(tmp_path / "jwt_bad.toml", org_toml(org, None, tmp_path, auth="jwt_bearer",
                                                         private_key_file=bad_key))
    refused = shown.cli("run-job", "mirror", "--config", str(jwt_bad), "--json")
    assert refused.exit_code == 2 and "bad_key.pem is not a PEM private key" in refused.output, refused.output

    canaries.learn_tokens(org)
    dump = shown.database(db_url(tmp_path))
    assert "invalid_client" in dump and "authentication failure" in dump  # the failures were recorded
    shown.assert_clean()


def test_adapter_errors_carry_no_secret(org: SandboxOrg, env: pytest.MonkeyPatch, tmp_path: Path,
                                        stripe_sandbox: StripeSandbox, canaries: Canaries,
                                        shown: Transcript) -> None:
    config_path = write(tmp_path / "acme.toml", org_toml(org, stripe_sandbox, tmp_path))

    def raised(where: str, call: Any, kind: type[Exception]) -> None:
        with pytest.raises(kind) as caught:
            call()
        shown.exception(where, caught.value)

    good = build_org_gateway(load_config(config_path))
    token = good.authenticate()
    assert canaries.learn_tokens(org) >= 1
    shown.add("Token repr", repr(token))
    good.close()
    for name, value in (("LEAK_SF_SECRET", canaries.sf_wrong_secret), ("LEAK_SF_PASSWORD", canaries.sf_wrong_password)):
        env.setenv(name, value)
        auth = "password" if name == "LEAK_SF_PASSWORD" else "client_credentials"
        config = load_config(write(tmp_path / f"{auth}.toml", org_toml(org, stripe_sandbox, tmp_path, auth=auth)))
        gateway = build_org_gateway(config)
        raised(f"Salesforce {auth} login refused", gateway.authenticate, AuthError)
        shown.add("gateway settings repr", repr(gateway.settings))
        gateway.close()
        env.setenv("LEAK_SF_SECRET", canaries.sf_secret)

    # A JWT key file that stops being a key after the config was loaded (rotated, truncated):
    # a ConfigError naming the file, not PyJWT's own exception.
    key_file = write(tmp_path / "rotating.pem", org.private_key_file.read_text())
    config = load_config(write(tmp_path / "jwt.toml", org_toml(org, stripe_sandbox, tmp_path, auth="jwt_bearer",
                                                                private_key_file=key_file)))
    write(key_file, f"-----BEGIN PRIVATE KEY-----\n{canaries.sf_secret}\n-----END PRIVATE KEY-----\n")
    gateway = build_org_gateway(config)
    raised("JWT key unusable", gateway.authenticate, ConfigError)
    gateway.close()

    # A line break inside the key (config strips only the ends): requests refuses the header, quoting it.
    for key, kind in ((canaries.stripe_wrong_key, AuthError), (canaries.stripe_key + "\nX", TransientError)):
        env.setenv("LEAK_STRIPE_KEY", key)
        config = load_config(config_path)
        shown.add("config repr", repr(config))
        billing = build_billing_gateway(config)
        raised(f"billing with {kind.__name__}", partial(billing.retrieve_invoice, "in_missing"), kind)
    env.setenv("LEAK_STRIPE_KEY", canaries.stripe_wrong_key)  # payouts retry a TransientError: the refusal is quick
    payouts = build_payouts_gateway(load_config(config_path))
    raised("payouts refused", payouts.list_payouts, AuthError)
    payouts.close()

    env.setenv("LEAK_STRIPE_KEY", canaries.stripe_key)
    billing = build_billing_gateway(load_config(config_path))
    stripe_sandbox.fail_next("*", times=1, fault=500)
    raised("billing 500", lambda: billing.retrieve_invoice("in_missing"), TransientError)
    body = json.dumps({"id": "evt_1", "object": "event", "type": "invoice.paid", "created": 1, "data": {"object": {}}})
    header = sign(canaries.webhook_secret, body.encode(), int(time.time()))
    raised("webhook verify", lambda: billing.verify_event(body.encode(), header, canaries.webhook_wrong_secret),
           PermanentError)
    shown.assert_clean()


# ------------------------------------------------------------------------------ Stripe


def test_stripe_key_stays_out_of_invoicing_and_reconcile_through_refusals_and_outages(
        org: SandboxOrg, stripe_sandbox: StripeSandbox, env: pytest.MonkeyPatch, tmp_path: Path,
        canaries: Canaries, shown: Transcript) -> None:
    config = str(write(tmp_path / "acme.toml", org_toml(org, stripe_sandbox, tmp_path)))
    assert shown.cli("sync", "--config", config, "--json").exit_code == 0

    env.setenv("LEAK_STRIPE_KEY", canaries.stripe_wrong_key)
    refused = shown.cli("invoice", "--config", config, "--json")
    assert refused.exit_code == 1
    assert job_doc(refused)["error"].startswith("stripe invoices.search: Stripe refused the API key")
    refused = shown.cli("reconcile", "--config", config)
    assert refused.exit_code == 1 and "Stripe refused the API key" in refused.stdout

    # A line break inside the key (a pasted two-line value; config strips only the ends): every
    # attempt fails before leaving the process, and requests' error quotes the header it refused.
    env.setenv("LEAK_STRIPE_KEY", canaries.stripe_key + "\nX")
    broken = shown.cli("invoice", "--config", config, "--json")
    assert broken.exit_code == 1 and job_doc(broken)["error"].startswith("stripe invoices.search: cannot reach Stripe")

    env.setenv("LEAK_STRIPE_KEY", canaries.stripe_key)
    stripe_sandbox.reset_counters()
    # every retry of the first read (the search for an invoice Salesforce may have issued)
    stripe_sandbox.fail_next("GET /v1/invoices/search", times=5, fault=500)
    down = shown.cli("invoice", "--config", config, "--json")
    assert down.exit_code == 1 and "Stripe 500" in job_doc(down)["error"], down.output
    assert stripe_sandbox.calls("GET /v1/invoices/search") == 5

    sent = shown.cli("invoice", "--config", config, "--json")
    assert sent.exit_code == 0 and job_doc(sent)["counts"]["invoices_created"] == 1, sent.output
    assert shown.cli("invoice-status", "--config", config, "--json").exit_code == 0
    assert shown.cli("reconcile", "--config", config).exit_code == 0

    dump = shown.database(db_url(tmp_path))
    shown.assert_clean()
    assert "Stripe refused the API key" in dump and "invalid request header" in dump and "in_" in dump  # all recorded


def test_webhook_secret_stays_out_of_answers_logs_and_db(
        org: SandboxOrg, stripe_sandbox: StripeSandbox, env: pytest.MonkeyPatch, tmp_path: Path,
        canaries: Canaries, shown: Transcript, log_tap: LogTap, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = write(tmp_path / "acme.toml", org_toml(org, stripe_sandbox, tmp_path))
    runtime = bootstrap(load_config(config_path))
    try:
        for job in ("mirror", "invoicing"):
            assert run_job(runtime, job, instance_id="leak-test").status == "ok"
        [event] = stripe_sandbox.events(type="invoice.finalized")
        receivers = receivers_for([runtime])
        shown.add("receivers repr", repr(receivers))
        server, thread = serve(make_webhook_app(receivers))
        url = f"http://127.0.0.1:{server.server_address[1]}/stripe/webhook"
        body = json.dumps(event).encode()

        def post(signature: str | None) -> int:
            headers = {"Content-Type": "application/json", **({"Stripe-Signature": signature} if signature else {})}
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    shown.add("receiver answer", resp.read().decode())
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                shown.add("receiver answer", exc.read().decode())
                return int(exc.code)

        try:
            now = int(time.time())
            assert post(sign(canaries.webhook_wrong_secret, body, now)) == 400
            assert post(None) == 400
            assert post(sign(canaries.webhook_secret, body, now - 3600)) == 400  # outside the tolerance
            assert post(sign(canaries.webhook_secret, body, now)) == 200
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
    finally:
        runtime.close()
    logs = shown.add("rendered logs", capsys.readouterr().err)
    shown.add("raw log events", log_tap.text())
    assert '"event": "webhook.rejected"' in logs
    assert event["id"] in shown.database(db_url(tmp_path))  # the verified event was stored
    shown.assert_clean()


# ------------------------------------------------------------------------------ crashes


def test_a_job_crashing_with_secrets_in_its_traceback_logs_them_redacted(
        org: SandboxOrg, stripe_sandbox: StripeSandbox, env: pytest.MonkeyPatch, tmp_path: Path,
        canaries: Canaries, shown: Transcript, log_tap: LogTap, capsys: pytest.CaptureFixture[str]) -> None:
    """A library error quoting a connection URL, an Authorization header, a session id and a
    Stripe key (as drivers and HTTP clients do) reaches the log only as a redacted traceback."""
    runtime = bootstrap(load_config(write(tmp_path / "acme.toml", org_toml(org, stripe_sandbox, tmp_path))))

    def crashing_job(rt: Any, *, log: Any, dry_run: bool = False) -> dict[str, int]:
        token = rt.salesforce().authenticate().access_token
        try:
            raise ValueError(f"header rejected: 'Authorization: Bearer {token}' (session {token}); "
                             f"Stripe key {canaries.stripe_key}")
        except ValueError as exc:
            raise RuntimeError(f"could not connect to postgresql://gtm:{canaries.db_password}@db.internal:5432/gtm"
                               f" or postgresql://gtm@db.internal/gtm?password={canaries.db_password}") from exc

    try:
        outcome = run_job(runtime, "mirror", instance_id="leak-test", registry={"mirror": crashing_job})
    finally:
        runtime.close()
    canaries.learn_tokens(org)
    assert outcome.status == "failed" and outcome.error == "unexpected error (a bug; the log has the traceback)"
    logs = shown.add("rendered logs", capsys.readouterr().err)
    crashed = [json.loads(line) for line in logs.splitlines() if '"job.crashed"' in line]
    assert len(crashed) == 1 and "Traceback" in crashed[0]["exception"]
    assert crashed[0]["exception"].count(REDACTED) >= 6  # the traceback is there, its secrets blanked
    shown.add("raw log events", log_tap.text())
    shown.add("outcome", repr(outcome))
    shown.database(db_url(tmp_path))
    shown.assert_clean()



def test_secrets_handed_to_the_logger_are_blanked_at_any_depth(
        canaries: Canaries, shown: Transcript, capsys: pytest.CaptureFixture[str]) -> None:
    """The redaction processor is the safety net for what a caller passes by mistake."""
    configure(json=True)
    structlog.get_logger("connector").warning(
        "request.failed", request={"headers": {"Authorization": f"Bearer {canaries.stripe_key}"},
                                   "form": {"client_secret": canaries.sf_secret, "password": canaries.sf_password}},
        urls=[f"postgresql://gtm:{canaries.db_password}@db/gtm"], keys=(canaries.webhook_secret,))
    [line] = capsys.readouterr().err.splitlines()
    shown.add("rendered log line", line)
    assert json.loads(line)["request"]["form"]["client_secret"] == REDACTED
    shown.assert_clean()


# ------------------------------------------------------------------------------ config and db


def test_config_check_names_bad_secret_references_without_echoing_secrets(
        env: pytest.MonkeyPatch, tmp_path: Path, canaries: Canaries, shown: Transcript) -> None:
    head = '[org]\nalias = "{alias}"\norg_id = "00D000000000LEAKAA"\n[salesforce]\nlogin_url = "https://127.0.0.1:9"\n'
    literal = write(tmp_path / "literal.toml", head.format(alias="literal") + f'''
database_url = "postgresql://gtm:{canaries.db_password}@db.internal:5432/gtm"
[salesforce.auth]
kind = "client_credentials"
client_id = "app"
client_secret = "{canaries.sf_secret}"
[invoicing]
issuer = "connector"

[stripe]
api_key = "{canaries.stripe_key}"
webhook_secret = ["{canaries.webhook_secret}"]
api_kye = "{canaries.stripe_wrong_key}"
timeout_seconds = "{canaries.stripe_key}"
''')
    unresolved = write(tmp_path / "unresolved.toml", head.format(alias="unresolved") + f'''
[salesforce.auth]
kind = "password"
client_id = "app"
username = "u@example.com"
password = {{ env = "LEAK_UNSET_PASSWORD" }}
client_secret = {{ env = "LEAK_SF_SECRET", file = "sf.secret" }}
[invoicing]
issuer = "connector"

[stripe]
api_key = {{ file = "missing-key.txt" }}
webhook_secret = {{ value = "{canaries.webhook_secret}" }}
''')
    syntax = write(tmp_path / "syntax.toml", head.format(alias="syntax") + f'''
[invoicing]
issuer = "connector"

[stripe]
api_key = "{canaries.stripe_key}
''')
    write(tmp_path / "webhook.secret", canaries.webhook_secret + "\n")
    good = write(tmp_path / "good.toml", head.format(alias="good") + '''
[salesforce.auth]
kind = "client_credentials"
client_id = "app"
client_secret = { env = "LEAK_SF_SECRET" }
[invoicing]
issuer = "connector"

[stripe]
api_key = { env = "LEAK_STRIPE_KEY" }
webhook_secret = { file = "webhook.secret" }
''').read_text()
    good_path = write(tmp_path / "good.toml", 'database_url_env = "LEAK_DB_URL"\n' + good)
    env.setenv("LEAK_DB_URL", f"postgresql://gtm:{canaries.db_password}@db.internal:5432/gtm?sslmode=require")
    files = [str(p) for p in (literal, unresolved, syntax, good_path)]

    for extra in ([], ["--skip-secrets"]):
        proc = subprocess.run([sys.executable, "-m", "connector.entrypoints.cli", "config", "check", *extra, *files],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        shown.add(f"config check {extra} stdout", proc.stdout)
        shown.add(f"config check {extra} stderr", proc.stderr)
        assert proc.returncode == 2, proc.stderr
        assert "good.toml: ok" in proc.stdout
        for key in ("salesforce.auth.client_secret", "stripe.api_key", "stripe.webhook_secret", "stripe.api_kye",
                    "stripe.timeout_seconds"):
            assert f"literal.toml: {key}: " in proc.stderr, proc.stderr
        assert "unresolved.toml: stripe.webhook_secret: expected exactly one of" in proc.stderr
        assert "syntax.toml: (syntax): not valid TOML" in proc.stderr
        if not extra:  # resolving: what could not be read is named, and the URL's password blanked
            assert "gtm:***@db.internal" in proc.stdout
            assert "unresolved.toml: salesforce.auth.password: environment variable LEAK_UNSET_PASSWORD is not set" \
                in proc.stderr
            assert "unresolved.toml: stripe.api_key: cannot read secret file" in proc.stderr
    with pytest.raises(ConfigError) as caught:
        load_config(literal)
    shown.exception("ConfigError", caught.value)
    shown.add("ConfigError problems", repr(caught.value.problems))
    shown.add("valid config repr", repr(load_config(good_path).stripe))
    shown.assert_clean()


def test_db_commands_blank_the_password_of_an_unreachable_database(
        env: pytest.MonkeyPatch, tmp_path: Path, canaries: Canaries, shown: Transcript) -> None:
    port = free_port()  # nothing listens there: every connection is refused
    urls = [f"postgresql://gtm:{canaries.db_password}@127.0.0.1:{port}/test",
            f"postgresql+psycopg://gtm@127.0.0.1:{port}/test?password={canaries.db_password}&sslmode=disable"]
    for url in urls:
        result = shown.cli("db", "upgrade", "--database-url", url)
        assert result.exit_code == 1 and "cannot migrate: OperationalError" in result.output, result.output
        result = shown.cli("db", "current", "--database-url", url)
        assert result.exit_code == 1 and "cannot read: OperationalError" in result.output, result.output
    env.setenv("GTM_DATABASE_URL", urls[0])
    assert "gtm:***@127.0.0.1" in shown.cli("db", "current").output
    env.delenv("GTM_DATABASE_URL")

    env.setenv("LEAK_DB_URL", urls[0])
    config = write(tmp_path / "acme.toml", '''database_url_env = "LEAK_DB_URL"
[org]
alias = "acme"
org_id = "00D000000000LEAKAA"
[salesforce]
login_url = "https://127.0.0.1:9"
[salesforce.auth]
kind = "client_credentials"
client_id = "app"
client_secret = { env = "LEAK_SF_SECRET" }
[invoicing]
issuer = "connector"

[stripe]
api_key = { env = "LEAK_STRIPE_KEY" }
''')
    result = shown.cli("db", "upgrade", "--config", str(config))
    assert result.exit_code == 1 and "acme: postgresql://gtm:***@127.0.0.1" in result.output, result.output
    # An unparsable port is a usage error naming the problem (it used to escape as a
    # traceback, issue 15.5), with the password blanked.
    result = shown.cli("db", "current", "--database-url", f"postgresql://gtm:{canaries.db_password}@127.0.0.1:x/t")
    assert result.exit_code == 2 and "postgresql://gtm:***@127.0.0.1:x/t: the port must be a number" in result.output
    shown.assert_clean()


@pytest.mark.postgres
def test_db_commands_blank_the_password_of_a_live_postgresql(
        pg_url: str, canaries: Canaries, shown: Transcript) -> None:
    user, rest = pg_url.removeprefix("postgresql+psycopg://").split("@", 1)
    url = f"postgresql+psycopg://{user}:{canaries.db_password}@{rest}"  # trust auth: any password will do
    upgraded = shown.cli("db", "upgrade", "--database-url", url)
    assert upgraded.exit_code == 0 and f"{user}:***@" in upgraded.output, upgraded.output
    current = shown.cli("db", "current", "--database-url", url)
    assert current.exit_code == 0 and "up to date" in current.output
    shown.assert_clean()


# ------------------------------------------------------------------------------ the daemon


def test_daemon_logs_probes_and_webhooks_show_no_secret(
        org: SandboxOrg, stripe_sandbox: StripeSandbox, env: pytest.MonkeyPatch, tmp_path: Path,
        canaries: Canaries, shown: Transcript, daemons: DaemonLauncher) -> None:
    """The real daemon process: one org invoices, reconciles and writes back against the
    sandboxes; another's PostgreSQL (password in its URL) is down; webhooks arrive signed
    with the wrong secret and the right one."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    running = ("invoicing", "reconcile", "writeback")
    schedules = "".join(f"\n[schedules.{job}]\n" + ("interval_seconds = 3600\njitter_seconds = 0\n" if job in running
                                                   else "enabled = false\n")
                        for job in ("mirror", "offers_push", "invoicing", "invoice_status", "reconcile", "writeback"))
    daemon_section = "\n[daemon]\nshutdown_grace_seconds = 5\n"
    write(config_dir / "acme.toml", org_toml(org, stripe_sandbox, tmp_path, extra=schedules + daemon_section))
    write(config_dir / "globex.toml", org_toml(org, stripe_sandbox, tmp_path, alias="globex", org_id=new_org_id(),
                                               database='database_url_env = "LEAK_GLOBEX_DB"',
                                               extra=schedules + daemon_section))
    env.setenv("LEAK_GLOBEX_DB", f"postgresql://gtm:{canaries.db_password}@127.0.0.1:{free_port()}/gtm")

    # Mirrored beforehand: whichever job the daemon runs first, there is an order to invoice.
    assert shown.cli("sync", "--config", str(config_dir / "acme.toml")).exit_code == 0

    daemon = daemons.start("leaky", config_dir)
    try:
        finished = daemon.wait_for("job.finished", timeout=30, count=3, org="acme")
        assert {e["job"]: e["status"] for e in finished} == {"invoicing": "ok", "reconcile": "ok", "writeback": "ok"}
        daemon.wait_for("org.bootstrap_failed", org="globex")
        status, body = daemon.get("/readyz")
        assert status == 503 and "unavailable: OperationalError" in shown.add("/readyz", body.decode())
        status, body = daemon.get("/metrics")
        assert status == 200 and "acme" in shown.add("/metrics", body.decode())

        events = stripe_sandbox.events(type="invoice.finalized")
        assert events, "the daemon's invoicing sent no invoice"
        payload = json.dumps(events[0]).encode()
        for path, secret, expected in (("/stripe/webhook", canaries.webhook_wrong_secret, 400),
                                       ("/stripe/webhook/acme", canaries.webhook_wrong_secret, 400),
                                       ("/stripe/webhook", canaries.webhook_secret, 200)):
            request = urllib.request.Request(daemon.base + path, data=payload, method="POST", headers={
                "Content-Type": "application/json", "Stripe-Signature": sign(secret, payload, int(time.time()))})
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    status, answer = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status, answer = exc.code, exc.read()
            shown.add(f"POST {path}", answer.decode())
            assert status == expected, answer
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait_exit(timeout=20)
    canaries.learn_tokens(org)
    log = shown.add("daemon log", daemon.log_path.read_text())
    assert '"event": "webhook.rejected"' in log and '"event": "salesforce.authenticated"' in log
    shown.database(db_url(tmp_path))
    shown.assert_clean()
