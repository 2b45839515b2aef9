"""The sandboxes' commands (``sandbox org``, ``sandbox stripe``, ``sandbox control``) on one
Typer app, ``sandbox_app``. The connector's CLI mounts it as ``gtm-connector sandbox`` when
this package is installed (``pip install 'gtm-connector[sandbox]'``)."""

from gtm_sandbox.cli import sandbox_control, sandbox_org, sandbox_stripe  # noqa: F401 - they attach their commands
from gtm_sandbox.cli.sandbox import sandbox_app

__all__ = ["sandbox_app"]
