"""`gtm-connector --help` and short commands start light: importing the CLI loads no
database, SDK or sandbox code; the commands that need them import them when they run."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

HEAVY = ("sqlalchemy", "alembic", "stripe", "simple_salesforce", "structlog", "pydantic", "requests",
         "connector.config", "connector.jobs", "connector.adapters", "gtm_sandbox.org", "gtm_sandbox.stripe")


def _loaded_after(code: str) -> list[str]:
    probe = (f"import json, sys\n{code}\n"
             f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_database_sdk_or_sandbox() -> None:
    assert _loaded_after("import connector.entrypoints.cli") == []


def test_root_help_loads_none_of_them_either() -> None:
    code = ("from typer.testing import CliRunner\nfrom connector.entrypoints.cli import app\n"
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0")
    assert _loaded_after(code) == []


def test_the_sandbox_placeholder_shows_the_sandboxes_own_help() -> None:
    from connector.entrypoints.cli.sandbox_cmd import SANDBOX_HELP
    from gtm_sandbox.cli import sandbox_app

    assert sandbox_app.info.help == SANDBOX_HELP


def test_deferred_commands_are_complete_when_they_run() -> None:
    from connector.entrypoints.cli import app
    from connector.entrypoints.cli.daemon_cmd import job_help
    from connector.jobs import JOBS

    runner = CliRunner()
    for _ in range(2):  # the same process, twice: as a test session invokes it
        sandbox = runner.invoke(app, ["sandbox", "--help"], env={"COLUMNS": "200"})
        assert sandbox.exit_code == 0 and " org " in sandbox.output and " stripe " in sandbox.output
        run_job = runner.invoke(app, ["run-job", "--help"], env={"COLUMNS": "400"})
        assert run_job.exit_code == 0
        assert all(name in job_help() for name in JOBS)
        assert job_help() in " ".join(run_job.output.replace("│", " ").split())
