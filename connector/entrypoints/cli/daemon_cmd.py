"""`gtm-connector daemon` (every org on a schedule) and `gtm-connector run-job JOB` (one run
now, through the same ``connector.jobs.run_job`` the daemon uses)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from connector.entrypoints.cli._common import ConfigDirOpt, ConfigOpt, DryRunOpt, JsonOpt, OrgOpt, Orgs, defer
from connector.entrypoints.cli._output import emit_orgs, outcome_doc


def daemon(
    config_dir: ConfigDirOpt = Path("config"),
    bind: Annotated[str | None, typer.Option(
        "--bind", envvar="GTM_DAEMON_BIND",
        help="HTTP bind address (default: daemon.bind of the first org file, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(
        "--port", envvar="GTM_DAEMON_PORT",
        help="HTTP port (default: daemon.port of the first org file, 8765; 0 = any free)")] = None,
    instance_id: Annotated[str | None, typer.Option(
        "--instance-id", help="name in logs and job runs (default host:pid)")] = None,
) -> None:
    """Run every org's jobs on their schedules, with /healthz /readyz /metrics /stripe/webhook.

    Exit codes: 0 stopped cleanly (SIGTERM), 1 shutdown grace expired, 2 no valid org config
    or the HTTP address can't be bound, 3 another daemon already runs on a SQLite database,
    130 second signal."""
    from connector.entrypoints.daemon import run_daemon

    raise typer.Exit(run_daemon(config_dir, bind=bind, port=port, instance_id=instance_id))


def run_job_command(
    job: Annotated[str, typer.Argument(help="one of the jobs (see run-job --help)")],
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    instance_id: Annotated[str | None, typer.Option("--instance-id", help="name recorded in job runs")] = None,
) -> None:
    """Run one job now for the selected org(s), as the daemon would (lock, job-run record, logs).

    Exit 1 if any run failed, 2 if the job is not available in this build, 4 if the org's
    API limit stopped a run early; a run skipped because another instance holds it is not a failure."""
    from connector.entrypoints.cli.payouts_cmd import print_outcomes
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import UnknownName, job_name, run_job

    try:
        job = job_name(job)
    except UnknownName as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    orgs = Orgs(config, org, config_dir)
    outcomes = [run_job(runtime, job, instance_id=instance_id or default_instance_id(), dry_run=dry_run,
                        stop=orgs.stop) for runtime in orgs]
    if not orgs.opened:
        orgs.exit()
    if as_json:
        emit_orgs([{**outcome_doc(o), "dry_run": dry_run} for o in outcomes])
    else:
        print_outcomes(outcomes)
    if any((o.error or "").startswith("unavailable") for o in outcomes):
        orgs.note(2)  # the job isn't in this build: nothing was done
    orgs.exit(any(o.status == "failed" for o in outcomes))


def job_help() -> str:
    """The JOB argument's help: the job table's names (``connector.jobs``, imported only
    when run-job runs or shows its help)."""
    from connector.jobs import JOB_ALIASES, JOBS

    commands = ", ".join(a for a in JOB_ALIASES if a in ("sync", "invoice", "invoice-status"))
    return f"one of: {', '.join(JOBS)} (or its command: {commands} …)"


def _with_job_help(command: typer.core.TyperCommand) -> typer.core.TyperCommand:
    for param in command.params:
        if param.name == "job":
            param.help = job_help()  # type: ignore[attr-defined]
    return command


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)
    app.command("run-job")(run_job_command)
    defer("run-job", _with_job_help)
