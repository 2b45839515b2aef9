"""The operator documentation against the code: ``config/example.toml`` lists every config
key the models accept (and nothing else) with the code's defaults, and the READMEs name the
metrics ``/metrics`` exposes."""

from __future__ import annotations

import itertools
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from connector.config import OrgConfig, Schedule, load_config
from connector.metrics import DaemonMetrics

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "example.toml"
README = REPO / "README.md"

_HEADER = re.compile(r"^\[([\w.]+)\]\s*(#.*)?$")
# `key = value  # comment`, or the same commented out: `# key = value  # comment`.
_KEY = re.compile(r"^(?P<off>#\s*)?(?P<key>[a-z_]+)\s*=\s*(?P<rest>.*)$")


def _section(name: str) -> str:
    # One table per job, all with the same keys: the example shows them once.
    return "schedules.*" if name.startswith("schedules.") else name


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation holds (the auth union has three)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models(arg)]


def model_keys(model: type[BaseModel] = OrgConfig, prefix: str = "") -> dict[str, Any]:
    """``section.key`` -> default (``...`` if required) of every key a config file may hold."""
    keys: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue  # set by the loader, not by the file
        subs = _models(field.annotation)
        if subs:
            for sub in subs:
                keys.update(model_keys(sub, _section(f"{prefix}{name}") + "."))
        else:
            keys[f"{prefix}{name}"] = ... if field.is_required() else field.default
    return keys


def documented_keys() -> dict[str, list[tuple[bool, str, str]]]:
    """``section.key`` -> [(commented out, `key = value` text, trailing comment)] in example.toml."""
    section, out = "", {}
    for line in EXAMPLE.read_text().splitlines():
        if header := _HEADER.match(line):
            section = _section(header.group(1))
            continue
        if m := _KEY.match(line):
            value, _, comment = m.group("rest").partition("  #")
            key = f"{section}.{m.group('key')}" if section else m.group("key")
            out.setdefault(key, []).append((bool(m.group("off")), f"{m.group('key')} = {value.strip()}",
                                            comment.strip()))
    return out


def test_example_toml_documents_every_config_key_and_no_other() -> None:
    expected, documented = set(model_keys()), set(documented_keys())
    assert expected - documented == set(), "keys the models accept that example.toml does not show"
    assert documented - expected == set(), "keys example.toml shows that the models do not accept"


def test_example_toml_shows_one_table_per_scheduled_job() -> None:
    tables = {m.group(1) for line in EXAMPLE.read_text().splitlines() if (m := _HEADER.match(line))}
    assert {t for t in tables if t.startswith("schedules.")} == {f"schedules.{j}" for j in OrgConfig.model_fields[
        "schedules"].annotation.model_fields}


def test_defaults_stated_in_example_toml_are_the_codes() -> None:
    defaults = model_keys()
    checked = 0
    for key, entries in documented_keys().items():
        for commented, assignment, comment in entries:
            if not comment.startswith("default"):
                continue
            default = defaults[key]
            # `key = value  # default …`: the value shown is the default.
            if not commented:
                value = tomllib.loads(assignment)[key.rsplit(".", 1)[-1]]
                assert str(value) == str(default) or value == default, f"{key}: shows {value!r}, default is {default!r}"
                checked += 1
            # `# default 30 …`: the figure named is the default too.
            if stated := re.match(r'default ("[^"]*"|[\w.]+)', comment):
                value = tomllib.loads(f"v = {stated.group(1)}")["v"]
                assert str(value) == str(default) or value == default, (
                    f"{key}: comment says {value!r}, default is {default!r}")
    assert checked >= 20


def test_example_toml_with_its_optional_keys_switched_on_is_valid(tmp_path: Path) -> None:
    # Uncomment every commented single key (not the alternative auth kinds): they must be
    # keys the models accept, with values of the right type.
    lines, section = [], ""
    for line in EXAMPLE.read_text().splitlines():
        if header := _HEADER.match(line):
            section = header.group(1)
        m = _KEY.match(line)
        if m and m.group("off") and section != "salesforce.auth" and m.group("key") not in ("database_url_env",
                                                                                   "webhook_url_env"):
            line = line.split("#", 1)[1].strip()
        lines.append(line)
    path = tmp_path / "acme.toml"
    path.write_text("\n".join(lines))
    # ca_bundle is checked even with skip_secrets (it is not a secret): the example's file must exist.
    import trustme

    (tmp_path / "certs").mkdir()
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "certs" / "corp-ca.pem"))
    config = load_config(path, skip_secrets=True)
    assert config.database_url == "sqlite:////var/lib/gtm-connector/acme.sqlite3"
    assert config.stripe.account == "acct_123" and config.sync.objects == ["ppc", "ppp", "order", "order_item"]


def test_schedule_defaults_are_what_example_toml_says() -> None:
    assert Schedule().enabled is True and Schedule().jitter_seconds == 10
    text = EXAMPLE.read_text()
    from connector.config import DEFAULT_INTERVALS_S

    stated = ", ".join(f"{job} {s}" for job, s in DEFAULT_INTERVALS_S.items())
    assert stated in " ".join(line.lstrip("# ") for line in text.splitlines())


def exposed_metrics() -> set[str]:
    metrics = DaemonMetrics()
    metrics.touch_org("acme", ["mirror"])
    text = metrics.render().decode()
    # The connector's own (process_* and python_* are the client library's standard ones).
    return {m.group(1) for m in re.finditer(r"^# TYPE (gtm_connector_\S+) ", text, re.M)}


def test_readme_names_exactly_the_metrics_the_daemon_exposes() -> None:
    names = exposed_metrics()
    assert "gtm_connector_job_runs_total" in names and "gtm_connector_job_duration_seconds" in names
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", readme))
    assert names - named == set(), "metrics missing from README.md"
    # A series as the docs quote one: `name_total` or `name{labels}` (config keys, also
    # quoted and some ending in _seconds, are neither).
    for doc in (REPO / "README.md", REPO / "config" / "two-orgs" / "README.md"):
        text = doc.read_text()
        quoted = (set(re.findall(r"`([a-z_]+_total)(?:\{[^`]*\})?`", text))
                  | set(re.findall(r"`([a-z_]+)\{[^`]*\}`", text)))
        assert quoted <= names, f"{doc.name} names metrics /metrics does not expose: {quoted - names}"


def _cli_commands() -> dict[str, Any]:
    """Every command a person can type (``db upgrade``, ``sync`` …) -> its click command;
    hidden aliases (``offer create``, ``sandbox serve``) left out."""
    from connector.entrypoints.cli import command_tree

    found: dict[str, Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if not subs:
            found[" ".join(path)] = command
            return
        for name, sub in subs.items():
            if not sub.hidden:
                walk(sub, (*path, name))

    walk(command_tree(), ())
    return found


def _readme_commands() -> dict[str, str]:
    """Command -> the README command-table row that documents it."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n\n", 2)[1]
    rows: dict[str, str] = {}
    for row in table.splitlines():
        first = row.split(" | ")[0]
        for usage in re.findall(r"`([^`]+)`", first):
            words = usage.removeprefix("gtm-connector ").split()
            name = " ".join(itertools.takewhile(lambda w: re.fullmatch(r"[a-z][a-z-]*", w), words))
            rows[name] = row
    return rows


def test_readme_command_table_lists_exactly_the_commands() -> None:
    assert set(_readme_commands()) == set(_cli_commands())


def test_readme_shows_json_on_every_command_that_takes_it() -> None:
    rows = _readme_commands()
    for name, command in _cli_commands().items():
        takes_json = any("--json" in getattr(p, "opts", ()) for p in command.params)
        if takes_json and not name.startswith("sandbox"):
            assert "--json" in rows[name], name


def test_readme_documents_the_output_and_log_settings() -> None:
    readme = (REPO / "README.md").read_text()
    for text in ("--log-level", "GTM_LOG_LEVEL", "--log-format", "GTM_LOG_FORMAT", "one JSON document",
                 '{"orgs": [', "--version", "--install-completion"):
        assert text in readme, text


def test_the_readme_exit_code_table_is_the_codes_commands_use() -> None:
    from connector.entrypoints.cli import _common
    from connector.entrypoints.daemon import EXIT_ALREADY_RUNNING

    table = README.read_text().split("| code | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    used = {v for k, v in vars(_common).items() if k.startswith("EXIT_")} | {EXIT_ALREADY_RUNNING}
    assert documented == used


# Docs that describe the container image: what they say about its working directory and
# volumes must be what the Dockerfile builds (example.toml once said /app, the image ran in /data).
CONTAINER_DOCS = list(dict.fromkeys([README, EXAMPLE, REPO / "config" / "two-orgs" / "README.md",
                                    *sorted((REPO / "config").rglob("*.toml")), REPO / "Dockerfile"]))
_PATH = r"`?\"?(/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*)`?\"?"


def _dockerfile() -> tuple[str, list[str]]:
    import json

    text = (REPO / "Dockerfile").read_text()
    workdir = re.findall(r"^WORKDIR\s+(\S+)", text, re.MULTILINE)[-1]
    (volumes,) = re.findall(r"^VOLUME\s+(\[.*\])", text, re.MULTILINE)
    return workdir, json.loads(volumes)


def test_what_the_docs_say_about_the_container_is_what_the_dockerfile_builds() -> None:
    workdir, volumes = _dockerfile()
    claims: list[tuple[str, str, str]] = []
    for doc in CONTAINER_DOCS:
        # comments and prose, one line: "# working directory\n# /app" must still be read as one
        text = " ".join(line.strip().lstrip("#").strip() for line in doc.read_text().splitlines())
        for m in re.finditer(r"working directory(?: of the image)?(?: is)?(?: the)?(?: image's)? " + _PATH, text):
            claims.append((doc.name, "working directory", m.group(1)))
        for m in re.finditer(r"volumes? " + _PATH + r"(?: and " + _PATH + ")?", text):
            claims += [(doc.name, "volume", g) for g in m.groups() if g]
    assert ("README.md", "working directory", workdir) in claims  # the check itself finds what it checks
    wrong = [(doc, what, path) for doc, what, path in claims
             if (what == "working directory" and path != workdir) or (what == "volume" and path not in volumes)]
    assert wrong == [], f"the Dockerfile has WORKDIR {workdir} and VOLUME {volumes}"
