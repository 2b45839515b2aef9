"""The data folders the project ships beside its code: ``mappings/`` and ``config/demo.toml``.

In a checkout (and an editable install) they are next to the ``connector`` package. A wheel
carries them as data files, which pip installs under ``<prefix>/share/gtm-connector/``
(pyproject.toml, ``[tool.setuptools.data-files]``); where that prefix is comes from the
installed distribution's own file list, so a venv, ``--user`` or ``--prefix`` install all
find them.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "gtm-connector"
SHARE = ("share", "gtm-connector")
_CHECKOUT = Path(__file__).resolve().parent.parent


def shipped(relative: str) -> Path:
    """``relative`` (e.g. ``"mappings"``) in the checkout if it is there, else where the
    installed wheel put it (the path may not exist: the caller says what is missing)."""
    in_checkout = _CHECKOUT / relative
    if (_CHECKOUT / "pyproject.toml").is_file() and in_checkout.exists():
        return in_checkout
    return installed_share() / relative


@cache
def installed_share() -> Path:
    """``<prefix>/share/gtm-connector`` of the installed distribution."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        parts = file.parts
        for i in range(len(parts) - 1):
            if parts[i:i + 2] == SHARE:
                return Path(str(file.locate())).parents[len(parts) - i - 3].resolve()
    return Path(sys.prefix) / SHARE[0] / SHARE[1]
