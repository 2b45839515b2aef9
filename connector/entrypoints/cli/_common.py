"""What every command shares: which org(s) it acts on, how their runtimes are opened, how
errors reach the operator, and what Ctrl-C does.

Org selection: ``--config FILE`` (one or more files), ``--org ALIAS``
(``<config-dir>/<alias>.toml``), or nothing (every org file in ``--config-dir``, default
``$GTM_CONFIG_DIR`` or ``config/``). Problems are printed as ``file: key: message``.

Exit codes, the same for every command:

* 0 — done;
* 1 — a run failed or records were bad (the details are printed);
* 2 — usage or configuration: a bad option, an org config file or its database unusable
  (the other orgs still run, but the command exits 2);
* 4 — stopped early: a run ended at the org's API budget or Salesforce's
  REQUEST_LIMIT_EXCEEDED; what it did is committed, the next run resumes (1 and 2 win over it);
* 130 — interrupted (Ctrl-C or SIGTERM); committed progress is kept.

``OperatorGroup`` is the root command group: whatever a command raises ends up in
``describe_error``, which turns the connector's exception tree (``connector.errors``),
database and file errors into one line per problem and an exit code. No traceback
reaches the operator unless ``GTM_DEBUG=1`` is set; messages go through the log
redaction so that no credential is printed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from connector.errors import ConfigError, ConnectorError, MappingError, TransientError

if TYPE_CHECKING:
    from connector.bootstrap import OrgRuntime
    from connector.config import OrgConfig

ConfigOpt = Annotated[list[Path] | None, typer.Option("--config", "-c", help="org config file(s)")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="org alias: <config-dir>/<alias>.toml")]
ConfigDirOpt = Annotated[
    Path, typer.Option("--config-dir", envvar="GTM_CONFIG_DIR", help="directory of org config files")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="show what would be done; write nothing")]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 4, 130
# When several things happened (one org failed, another stopped early), the most serious
# one is the exit code: interrupted > usage > failed > stopped early > done.
_SEVERITY = {EXIT_OK: 0, EXIT_STOPPED: 1, EXIT_FAILED: 2, EXIT_USAGE: 3, EXIT_INTERRUPTED: 4}


# ---------------------------------------------------------------------------- output
# How commands print lives in _output (console, tables, the --json convention).
from connector.entrypoints.cli._output import make_console, styled  # noqa: E402,F401

# ---------------------------------------------------------------------------- errors


def _clean(text: str) -> str:
    from connector.logging import REDACTED, redact_value

    # A URL password is shown as redact_url shows it, whichever of the two blanked it.
    return str(redact_value(text)).replace(f":{REDACTED}@", ":***@")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def problem_lines(exc: ConfigError) -> list[str]:
    return [f"{file}: {key}: {msg}" if key else f"{file}: {msg}" for file, key, msg in exc.problems] or [str(exc)]


def describe_error(exc: BaseException) -> tuple[list[str], int]:
    """The lines to print and the exit code for an exception that reached the command line."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    if isinstance(exc, KeyboardInterrupt):
        return (["interrupted: stopped at once; committed progress is kept, run the command again to resume"],
                EXIT_INTERRUPTED)
    if isinstance(exc, ConfigError):
        return problem_lines(exc), EXIT_USAGE
    if isinstance(exc, MappingError):
        return [f"mapping: {exc}"], EXIT_USAGE
    if isinstance(exc, TransientError):
        return [f"error: {exc} (may be temporary: try again later)"], EXIT_FAILED
    if isinstance(exc, ConnectorError):
        return [f"error: {exc}"], EXIT_FAILED
    if isinstance(exc, DBAPIError):
        from connector.adapters.store.engine import describe_db_error

        return [f"database error: {describe_db_error(exc)}"], EXIT_FAILED
    if isinstance(exc, ArgumentError):
        return [f"database URL: {_first_line(exc)}"], EXIT_USAGE
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return [f"error: {where}{exc.strerror}"], EXIT_FAILED
    return [f"error: unexpected {type(exc).__name__}: {_first_line(exc)} "
            "(this is a bug; run again with GTM_DEBUG=1 to see the traceback)"], EXIT_FAILED


_LIBRARY_WORDS = (
    (re.compile(r"Input should be a valid integer.*"), "must be a whole number"),
    (re.compile(r"Input should be a valid (number|decimal).*"), "must be a number"),
    (re.compile(r"Input should be a valid boolean.*"), "must be true or false"),
    (re.compile(r"'([^']*)' is not one of (.*?)\.?$"),
     lambda m: f"'{m.group(1)}' is not one of: {m.group(2).replace(chr(39), '')}"),
)


def plain_usage(message: str) -> str:
    """A usage error from typer/pydantic without the library's phrasing
    (``Value error, 'xml' is not one of 'a', 'b'.`` -> ``'xml' is not one of: a, b``)."""
    text = message.replace("Value error, ", "")
    for pattern, words in _LIBRARY_WORDS:
        text = pattern.sub(words, text)
    return text


def report_error(exc: BaseException) -> int:
    """Print ``exc`` for the operator (stderr, secrets redacted); its exit code."""
    lines, code = describe_error(exc)
    for line in lines:
        typer.echo(_clean(line), err=True)
    return code


# Commands finished only when they run (or their own --help is asked for): name -> a
# function taking the command registered under that name and giving the one to run. What
# they need (the sandboxes' apps, the job table) is then not imported for
# `gtm-connector --help` or any other command; the root's help shows the registered
# command's own one-line help, which stays the same.
_DEFERRED: dict[str, Callable[[Any], Any]] = {}


def defer(name: str, complete: Callable[[Any], Any]) -> None:
    """Have the root finish command ``name`` with ``complete(command)`` when it is resolved
    to run (``OperatorGroup.resolve_command``), not when the CLI is imported."""
    _DEFERRED[name] = complete


class OperatorGroup(TyperGroup):
    """The root command group: one place where what a command raises becomes a message and
    an exit code (see the module docstring), instead of a traceback. It also gives every
    option of every command a readable type in ``--help`` (``readable_types``), and
    finishes the deferred commands (``defer``) when one is about to run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        readable_types(self)

    def complete_deferred(self) -> None:
        """Finish every deferred command now (for tools that walk the whole command tree,
        such as the docs check; running a command finishes just that one)."""
        for name, command in list(self.commands.items()):
            complete = _DEFERRED.get(name)
            if complete is not None:
                self.commands[name] = complete(command)
                readable_types(self.commands[name])

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        complete = _DEFERRED.get(name) if command is not None and name else None
        if complete is not None:
            command = complete(command)
            readable_types(command)
        return name, command, rest

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        for param in params:  # typer adds the completion options after __init__
            _readable(param)
        return params

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:  # the root's own options (--log-level …)
            exc.message = plain_usage(exc.message)
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a subcommand's options: typer's words, in ours
            exc.message = plain_usage(exc.message)
            raise
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit, GeneratorExit):
            raise  # typer's own exits and usage errors already speak for themselves
        except BaseException as exc:
            if os.environ.get("GTM_DEBUG") and not isinstance(exc, KeyboardInterrupt):
                raise
            raise typer.Exit(report_error(exc)) from None


_TYPE_WORDS = {"bool": "", "str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "Path": "PATH",
               "file": "FILE", "directory": "DIR", "dir": "DIR", "datetime": "DATETIME"}


def _type_label(typer_label: str | None) -> str | None:
    """Typer's ``<list[Path]>``/``<bool>``/``<daily|monthly>`` as ``--help`` should show it:
    ``PATH…``, nothing for a flag, ``daily|monthly``; None for no label."""
    if not typer_label or not (typer_label.startswith("<") and typer_label.endswith(">")):
        return typer_label or None
    label = typer_label[1:-1]
    repeated = label.startswith("list[") and label.endswith("]")
    if repeated:
        label = label[5:-1]
    if "|" not in label:
        label = _TYPE_WORDS.get(label, label.upper())
    return (label + ("…" if repeated else "")) or None


def _readable(param: Any) -> None:
    if getattr(param, "_readable_type", False):
        return
    original = param.display_type_rich
    param.display_type_rich = lambda ctx, _original=original: _type_label(_original(ctx))
    param._readable_type = True


def readable_types(command: Any) -> None:
    """Show readable type labels (``_type_label``) in ``--help`` of ``command`` and every
    subcommand, its help option included, instead of typer's ``<bool>``/``<list[Path]>``."""
    for param in getattr(command, "params", []):
        _readable(param)
    get_help_option = command.get_help_option

    def help_option(ctx: Any, _get: Any = get_help_option) -> Any:
        option = _get(ctx)
        if option is not None:
            option.display_type_rich = lambda ctx: None
        return option

    command.get_help_option = help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        readable_types(sub)


# ---------------------------------------------------------------------------- org selection


def resolve_orgs(config: list[Path] | None, org: str | None, config_dir: Path | None,
            **load: Any) -> tuple[list[OrgConfig], int]:
    """The validated configs the options name, and how many org files were skipped as
    invalid. ``load``: passed to ``load_config`` (``skip_secrets=True`` for ``db``)."""
    from connector.config import load_config, load_config_dir

    config_dir = config_dir or Path(os.environ.get("GTM_CONFIG_DIR", "config"))
    if config and org:
        raise typer.BadParameter("give --config FILE or --org ALIAS, not both", param_hint="--org")
    if config:
        return [load_config(p, **load) for p in config], 0
    if not config_dir.is_dir():
        what = "is not a directory" if config_dir.exists() else "does not exist"
        raise ConfigError(f"{config_dir}: {what}", [
            (str(config_dir), "", f"config directory {what} (use --config-dir DIR, "
                                            "$GTM_CONFIG_DIR or --config FILE)")])
    if org:
        path = config_dir / f"{org}.toml"
        if path.exists():
            return [load_config(path, **load)], 0
        configs, errors = load_config_dir(config_dir, **load)
        matches = [c for c in configs if c.alias == org]
        if not matches:
            known = ", ".join(sorted(c.alias for c in configs)) or "none"
            problems = [(str(config_dir), "org.alias", f"no config file for org {org!r} (valid orgs here: {known})")]
            problems += [p for error in errors for p in error.problems]
            raise ConfigError(problems[0][2], problems)
        return matches, 0
    configs, errors = load_config_dir(config_dir, **load)
    for error in errors:
        for file, key, msg in error.problems:
            typer.echo(f"{file}: {key}: {msg} (org skipped)", err=True)
    if not configs:
        raise ConfigError("no valid org config files", [
            (str(config_dir), "", "no valid org config files (use --config FILE or --org ALIAS)")])
    return configs, len(errors)


def with_database_url(cfg: OrgConfig) -> OrgConfig:
    """A config read with ``skip_secrets`` whose ``database_url_env`` is resolved anyway:
    the database is not a secret a local-only command can do without."""
    if not cfg.database_url_env:
        return cfg
    url = os.environ.get(cfg.database_url_env)
    if not url:
        source = str(cfg.source_file or cfg.alias)
        text = f"environment variable {cfg.database_url_env} is not set"
        raise ConfigError(text, [(source, "database_url_env", text)])
    return cfg.model_copy(update={"database_url": url})


def select_configs(config: list[Path] | None, org: str | None, config_dir: Path | None = None) -> list[OrgConfig]:
    """Resolve the org options to validated configs (ConfigError naming file and key)."""
    return resolve_orgs(config, org, config_dir)[0]


def select_one(config: list[Path] | None, org: str | None, config_dir: Path | None = None) -> OrgConfig:
    configs = select_configs(config, org, config_dir)
    if len(configs) != 1:
        aliases = ", ".join(c.alias for c in configs)
        raise typer.BadParameter(f"this command acts on one org; {len(configs)} matched ({aliases})",
                                 param_hint="--org or --config")
    return configs[0]


# ---------------------------------------------------------------------------- runtimes


def _database_key(cfg: OrgConfig) -> str:
    if cfg.database_url_env:
        return "database_url_env"
    return "database_url" if "database_url" in cfg.model_fields_set else "data_dir"


_CONFIG_DB_ERRORS = ("file is not a database", "unable to open database file", "password authentication failed",
                     "does not exist", "no password supplied", "no pg_hba.conf entry")


def database_problem(exc: BaseException) -> tuple[str, bool] | None:
    """``(what is wrong, is it the configuration)`` if ``exc`` says the database can't be
    used; None for anything else. Never quotes the URL (the caller shows it redacted)."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, DBAPIError

    if isinstance(exc, DBAPIError):
        from connector.adapters.store.engine import describe_db_error

        text = describe_db_error(exc)
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        # 28: bad user or password; 3D000: no such database; 3F000: no such schema (psycopg
        # gives no SQLSTATE when the connection itself is refused, hence the texts). Anything
        # else (refused, timed out, locked) may be the server, not the configuration.
        config = sqlstate.startswith(("28", "3D", "3F")) or any(s in text for s in _CONFIG_DB_ERRORS)
        return f"cannot use the database: {text}", config
    if isinstance(exc, ArgumentError):
        return f"not a database URL ({_first_line(exc)}); use sqlite:///FILE or postgresql://USER@HOST/DB", True
    if isinstance(exc, ValueError) and str(exc).startswith("database URL:"):
        return str(exc).removeprefix("database URL:").strip(), True
    if isinstance(exc, CommandError):
        return (f"the database's schema revision is unknown to this version ({_first_line(exc)}); "
                "was it migrated by a newer gtm-connector?"), True
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot create the SQLite file's directory {exc.filename}: {exc.strerror}", True
    return None


def open_runtime(cfg: OrgConfig) -> OrgRuntime:
    """``bootstrap(cfg)`` (which migrates the database), with an unusable database named by
    file, key and redacted URL: a ConfigError when the configuration is wrong, a
    TransientError when the server may just be down."""
    from connector.bootstrap import bootstrap
    from connector.config import redact_url

    try:
        return bootstrap(cfg)
    except Exception as exc:
        found = database_problem(exc)
        if found is None:
            raise
        text, is_config = found
        where = f"{redact_url(cfg.database_url or '')}: {text}"
        if is_config:
            source = str(cfg.source_file or cfg.alias)
            raise ConfigError(where, [(source, _database_key(cfg), where)]) from None
        raise TransientError(f"{cfg.alias}: {where}") from None


class Orgs:
    """The orgs a command acts on, opened one at a time::

        orgs = Orgs(config, org, config_dir)
        for runtime in orgs:          # closed after its turn; Ctrl-C stops between pages
            failed |= run(runtime, stop=orgs.stop)
        orgs.exit(failed)

    An org whose config file is invalid (with no --org/--config) or whose database can't
    be opened is reported and skipped; the others still run and the command exits 2. While
    it iterates, the first SIGINT/SIGTERM sets ``stop`` (jobs that take it finish their
    current page or batch and commit) and no further org starts; a second one quits at once.
    """

    def __init__(self, config: list[Path] | None, org: str | None, config_dir: Path | None = None, *,
                 local_only: bool = False) -> None:
        # local_only: the command reads the local database only (status, dead-letters,
        # report), so the org's Salesforce and Stripe secrets need not be set.
        self.configs, skipped = resolve_orgs(config, org, config_dir, skip_secrets=local_only)
        if local_only:
            self.configs = [with_database_url(cfg) for cfg in self.configs]
        self.code = EXIT_USAGE if skipped else EXIT_OK
        self.stop = threading.Event()
        self.opened = 0  # orgs whose runtime could be opened: nothing to show when none was

    def __iter__(self) -> Iterator[OrgRuntime]:
        from connector.jobs import observe_outcomes

        with self.interruptible(), observe_outcomes(self._outcome):
            for cfg in self.configs:
                if self.stop.is_set():
                    break
                runtime = self._open(cfg)
                if runtime is None:
                    continue
                try:
                    yield runtime
                finally:
                    runtime.close()

    @contextmanager
    def all_open(self) -> Iterator[list[OrgRuntime]]:
        """Every selected org's runtime at once (a report across orgs), closed afterwards."""
        runtimes: list[OrgRuntime] = []
        try:
            for cfg in self.configs:
                runtime = self._open(cfg)
                if runtime is not None:
                    runtimes.append(runtime)
            yield runtimes
        finally:
            for runtime in runtimes:
                runtime.close()

    def _open(self, cfg: OrgConfig) -> OrgRuntime | None:
        try:
            runtime = open_runtime(cfg)
        except (ConnectorError, OSError) as exc:
            self.note(report_error(exc))
            return None
        self.opened += 1
        return runtime

    def note(self, code: int) -> None:
        """Remember an exit code; the most serious one wins."""
        self.code = max(self.code, code, key=lambda c: _SEVERITY.get(c, 2))

    def _outcome(self, outcome: Any) -> None:
        # A run the org's API limit stopped (not our own Ctrl-C/SIGTERM: that is 130).
        if outcome.status == "stopped" and not self.stop.is_set():
            self.note(EXIT_STOPPED)

    def exit(self, failed: bool = False) -> NoReturn:
        if self.stop.is_set():
            typer.echo("interrupted: stopped after the current page or batch; what was done is committed, "
                       "run the command again to resume", err=True)
            raise typer.Exit(EXIT_INTERRUPTED)
        self.note(EXIT_FAILED if failed else EXIT_OK)
        raise typer.Exit(self.code)

    def interruptible(self) -> Any:
        return stop_on_signals(self.stop)


class stop_on_signals:  # noqa: N801 - a context manager
    """SIGINT/SIGTERM set ``stop`` the first time (with a note on stderr) and raise
    KeyboardInterrupt the second time. Only where signals can be handled (main thread)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        typer.echo(f"{signal.Signals(signum).name}: finishing the current page or batch, then stopping "
                   "(press Ctrl-C again to quit at once)", err=True)

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self.stop

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()
