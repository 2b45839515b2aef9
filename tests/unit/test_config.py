"""Per-org config: every problem named by file and dotted key; secrets never in the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connector.config import load_config, load_config_dir, parse_config, redact_url
from connector.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

VALID = """
[org]
alias = "acme"
org_id = "00D5g000004AcmeAAA"

[salesforce]
login_url = "https://login.salesforce.com"
[salesforce.auth]
kind = "client_credentials"
client_id = "3MVG9abc"
client_secret = { env = "ACME_SF_SECRET" }

[invoicing]
issuer = "connector"

[stripe]
api_key = { env = "ACME_STRIPE_KEY" }
"""
ENV = {"ACME_SF_SECRET": "s3cr3t-value", "ACME_STRIPE_KEY": "sk_test_abc123"}


def write(tmp_path: Path, text: str, name: str = "acme.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path, **kw) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=kw.pop("environ", ENV), **kw)
    return info.value.problems


def test_valid_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, VALID), environ=ENV)
    assert config.alias == "acme"
    assert config.invoicing.lead_days == 1
    assert config.invoicing.days_until_due == 30
    assert config.invoicing.proration == "daily"
    assert config.api_budget_percent == 80
    assert config.mapping == "gtm-v2"
    assert config.database_url == "sqlite:///data/acme.sqlite3"  # relative to the working directory
    assert config.schedules.interval_seconds("mirror") == 300


def test_secrets_are_secretstr_and_never_printed(tmp_path):
    config = load_config(write(tmp_path, VALID), environ=ENV)
    assert config.salesforce.auth.client_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config)
    assert "sk_test_abc123" not in str(config.model_dump())


def test_missing_client_id_names_file_and_dotted_key(tmp_path):
    path = write(tmp_path, VALID.replace('client_id = "3MVG9abc"\n', ""))
    assert (str(path), "salesforce.auth.client_id", "field required") in problems_of(path)


def test_every_problem_is_reported_at_once(tmp_path):
    text = VALID.replace('alias = "acme"', 'alias = "Acme Corp"').replace("00D5g000004AcmeAAA", "00D123")
    text = text.replace('[invoicing]\nissuer = "connector"\n',
                        "[invoicing]\nissuer = 'connector'\nproration = 'weekly'\nlead_dayz = 3\n")
    keys = {key for _, key, _ in problems_of(write(tmp_path, text))}
    assert {"org.alias", "org.org_id", "invoicing.proration", "invoicing.lead_dayz"} <= keys


def test_literal_secret_in_file_is_refused(tmp_path):
    path = write(tmp_path, VALID.replace('{ env = "ACME_STRIPE_KEY" }', '"sk_live_oops"'))
    [(file, key, msg)] = problems_of(path)
    assert key == "stripe.api_key" and "env" in msg and "sk_live_oops" not in msg


def test_unset_env_secret_is_named(tmp_path):
    [(_, key, msg)] = problems_of(write(tmp_path, VALID), environ={"ACME_SF_SECRET": "x"})
    assert key == "stripe.api_key" and "ACME_STRIPE_KEY" in msg


def test_secret_from_file_relative_to_config(tmp_path):
    (tmp_path / "key.txt").write_text("sk_test_fromfile\n")
    path = write(tmp_path, VALID.replace('{ env = "ACME_STRIPE_KEY" }', '{ file = "key.txt" }'))
    assert load_config(path, environ=ENV).stripe.api_key.get_secret_value() == "sk_test_fromfile"


def test_env_secret_is_stripped_like_a_file_secret_and_blank_is_unset(tmp_path):
    path = write(tmp_path, VALID.replace("[org]", 'database_url = "postgresql://gtm:hunter2@db/gtm"\n[org]'))
    config = load_config(path, environ={**ENV, "ACME_STRIPE_KEY": "sk_test_abc123\n"})
    assert config.stripe.api_key.get_secret_value() == "sk_test_abc123"
    assert "hunter2" not in repr(config)  # the database URL may hold a password
    [(_, key, msg)] = problems_of(path, environ={**ENV, "ACME_STRIPE_KEY": " \n"})
    assert key == "stripe.api_key" and "ACME_STRIPE_KEY is not set" in msg


def test_password_auth_refused_for_production_login(tmp_path):
    text = VALID.replace('kind = "client_credentials"', 'kind = "password"').replace(
        'client_secret = { env = "ACME_SF_SECRET" }', 'username = "u@x"\npassword = { env = "ACME_SF_SECRET" }'
    )
    [(_, key, msg)] = problems_of(write(tmp_path, text))
    assert key == "salesforce" and "sandboxes" in msg


def test_toml_syntax_error_names_file(tmp_path):
    [(file, key, msg)] = problems_of(write(tmp_path, "[org\nalias="))
    assert key == "(syntax)" and "TOML" in msg


def test_interval_and_cron_together_rejected(tmp_path):
    text = VALID + "\n[schedules.mirror]\ninterval_seconds = 60\ncron = '* * * * *'\n"
    [(_, key, msg)] = problems_of(write(tmp_path, text))
    assert key == "schedules.mirror" and "not both" in msg


def test_config_dir_skips_bad_files_and_duplicate_aliases(tmp_path):
    write(tmp_path, VALID, "acme.toml")
    write(tmp_path, VALID, "acme-copy.toml")
    write(tmp_path, "[org]\nalias = 'x'\n", "broken.toml")
    write(tmp_path, "this is ignored", "example.toml")
    configs, errors = load_config_dir(tmp_path, environ=ENV)
    assert len(configs) == 2
    messages = [p for e in errors for p in e.problems]
    assert any(f.endswith("broken.toml") for f, _, _ in messages)
    assert any("used by more than one file" in m for _, _, m in messages)


def test_database_url_password_is_redacted():
    assert redact_url("postgresql://gtm:hunter2@db:5432/gtm") == "postgresql://gtm:***@db:5432/gtm"
    # Unescaped "@" or "/" in the password, or the password as a query parameter: still blanked.
    assert redact_url("postgresql://gtm:hun@ter/2@db/gtm") == "postgresql://gtm:***@db/gtm"
    assert redact_url("postgresql://gtm@db/gtm?sslmode=require&password=hunter2") == (
        "postgresql://gtm@db/gtm?sslmode=require&password=***")
    assert redact_url("sqlite:////srv/data@2026/gtm.sqlite3") == "sqlite:////srv/data@2026/gtm.sqlite3"


def test_parse_config_from_dict():
    config = parse_config(
        {"org": {"alias": "x", "org_id": "00D000000000001AAA"},
         "salesforce": {"auth": {"kind": "client_credentials", "client_id": "c", "client_secret": {"env": "S"}}},
         "stripe": {"api_key": {"env": "K"}}, "invoicing": {"issuer": "salesforce"}},
        environ={"S": "1", "K": "2"},
    )
    assert config.salesforce.login_url == "https://login.salesforce.com"
    assert config.invoicing.issuer == "salesforce"


@pytest.mark.parametrize("invoicing", [None, {}, {"lead_days": 1}])
def test_the_invoice_issuer_is_required_and_explained(invoicing: dict | None) -> None:
    """No default: guessing wrong would bill a GTM customer twice, or never."""
    data = {"org": {"alias": "x", "org_id": "00D000000000001AAA"},
            "salesforce": {"auth": {"kind": "client_credentials", "client_id": "c", "client_secret": {"env": "S"}}},
            "stripe": {"api_key": {"env": "K"}}}
    if invoicing is not None:
        data["invoicing"] = invoicing
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="acme.toml", environ={"S": "1", "K": "2"})
    assert str(caught.value) == ("acme.toml: invoicing.issuer: required: `salesforce` when your GTM app already "
                                 "invoices through Stripe (the usual case), `connector` when this connector must "
                                 "create the invoices")


def test_an_unknown_issuer_is_named(tmp_path) -> None:
    path = write(tmp_path, VALID.replace('issuer = "connector"', 'issuer = "stripe"'))
    [(_, key, msg)] = problems_of(path)
    assert (key, msg) == ("invoicing.issuer", "must be one of: salesforce, connector")


@pytest.mark.parametrize("name", ["example.toml", "demo.toml"])
def test_committed_configs_are_valid(name):
    load_config(REPO / "config" / name, skip_secrets=True)


def test_config_check_command_exit_code_and_messages(tmp_path):
    bad = write(tmp_path, VALID.replace('client_id = "3MVG9abc"\n', ""), "bad.toml")
    good = write(tmp_path, VALID, "good.toml")
    cmd = [sys.executable, "-m", "connector.entrypoints.cli", "config", "check", str(good), str(bad)]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert result.returncode == 2
    assert f"{bad}: salesforce.auth.client_id: field required" in result.stderr
    assert f"{good}: ok" in result.stdout
    assert "s3cr3t" not in result.stdout + result.stderr


def test_config_check_knows_the_mapping_and_names_the_database_variable(tmp_path):
    typo = write(tmp_path, VALID + '\n[sync]\nobjects = ["order", "SfdcPartnerOrdr"]\n', "typo.toml")
    from_env = write(tmp_path, 'database_url_env = "ACME_DATABASE_URL"\n' + VALID, "env.toml")
    cmd = [sys.executable, "-m", "connector.entrypoints.cli", "config", "check", "--skip-secrets", str(typo),
           str(from_env)]
    result = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert result.returncode == 2
    assert f"{typo}: sync.objects: unknown object(s) SfdcPartnerOrdr; the mapping gtm-v2 has " in result.stderr
    assert f"{from_env}: ok" in result.stdout and "database from $ACME_DATABASE_URL" in result.stdout


def test_config_check_refuses_a_write_back_external_id_the_mapping_lacks(tmp_path):
    # The writeback job used to find out at run time; the file now fails `config check`.
    bad = write(tmp_path, VALID + '\n[writeback]\nexternal_id = "Nope__c"\n', "bad.toml")
    cmd = [sys.executable, "-m", "connector.entrypoints.cli", "config", "check", "--skip-secrets", str(bad)]
    result = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert result.returncode == 2
    assert f"{bad}: writeback.external_id: 'Nope__c' is not a write-back field of mapping gtm-v2" in result.stderr


# ----------------------------------------------------------------------------- [alerts]
SLACK_HOOK = "https://hooks.slack.com/services/T0000/B0000/xoxTokenPart123"


def test_no_alerts_section_means_no_alerts(tmp_path):
    assert load_config(write(tmp_path, VALID), environ=ENV).alerts is None


def test_alerts_url_from_env_is_a_secret_with_defaults(tmp_path):
    from connector.config import ALERT_EVENTS

    path = write(tmp_path, VALID + '\n[alerts]\nwebhook_url = { env = "ACME_HOOK" }\nformat = "slack"\n')
    alerts = load_config(path, environ={**ENV, "ACME_HOOK": SLACK_HOOK}).alerts
    assert alerts.webhook_url.get_secret_value() == SLACK_HOOK and alerts.format == "slack"
    assert alerts.events == ALERT_EVENTS and alerts.failures_in_a_row == 3 and alerts.dead_letters_above == 10
    assert "xoxTokenPart123" not in repr(alerts) + str(alerts)
    same = load_config(write(tmp_path, VALID + '\n[alerts]\nwebhook_url_env = "ACME_HOOK"\n'),
                       environ={**ENV, "ACME_HOOK": SLACK_HOOK}).alerts
    assert same.webhook_url.get_secret_value() == SLACK_HOOK


def test_a_token_free_url_may_be_written_in_the_file(tmp_path):
    path = write(tmp_path, VALID + '\n[alerts]\nwebhook_url = "http://alertmanager.internal:9093/hook"\n')
    assert load_config(path, environ=ENV).alerts.webhook_url.get_secret_value().endswith(":9093/hook")


@pytest.mark.parametrize("url", [SLACK_HOOK, "https://user:pw1234@hooks.example.com/x",
                                 "https://hooks.example.com/x?token=abc987", "https://acme.webhook.office.com/x/y"])
def test_a_url_carrying_a_token_is_refused_in_the_file_without_quoting_it(tmp_path, url):
    path = write(tmp_path, VALID + f'\n[alerts]\nwebhook_url = "{url}"\n')
    [(file, key, msg)] = problems_of(path)
    assert (file, key) == (str(path), "alerts.webhook_url") and msg.startswith("carries a token")
    assert url not in msg and "abc987" not in msg and "pw1234" not in msg


def test_alerts_problems_name_file_and_key(tmp_path):
    path = write(tmp_path, VALID + '\n[alerts]\nwebhook_url = { env = "UNSET_HOOK" }\nevents = ["job_failed", '
                                   '"paged"]\nfailures_in_a_row = 0\nformat = "teams"\n')
    problems = {key: msg for _, key, msg in problems_of(path)}
    assert problems["alerts.webhook_url"] == "environment variable UNSET_HOOK is not set"
    assert problems["alerts.events.1"].startswith("must be one of: job_failed, api_budget_stop")
    assert "alerts.failures_in_a_row" in problems and problems["alerts.format"] == "must be one of: json, slack"
    both = write(tmp_path, VALID + '\n[alerts]\nwebhook_url = "http://x/"\nwebhook_url_env = "H"\n', "b.toml")
    assert [msg for _, _, msg in problems_of(both)] == ["give webhook_url or webhook_url_env, not both"]
    not_http = write(tmp_path, VALID + '\n[alerts]\nwebhook_url = { env = "H" }\n', "c.toml")
    assert problems_of(not_http, environ={**ENV, "H": "ftp://files/x"}) == [
        (str(not_http), "alerts.webhook_url", "must be an http:// or https:// URL")]


def test_the_event_vocabulary_is_one_list():
    import typing

    from connector.config import ALERT_EVENTS, AlertsSection

    [literal] = typing.get_args(AlertsSection.model_fields["events"].annotation)[:1]
    assert typing.get_args(literal) == ALERT_EVENTS
