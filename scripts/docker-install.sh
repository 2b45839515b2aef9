#!/bin/sh
# The install steps of the Dockerfile. They live here, not inline in the Dockerfile, so the
# same steps run in the image build and in a test that installs into a fresh venv
# (tests/reliability/daemon/test_packaging.py): what the test proves is what the image gets.
#
#   GTM_INSTALL_PYTHON  interpreter of the target environment (default: python3 on PATH;
#                       the Dockerfile passes /opt/venv/bin/python)
#   GTM_INSTALL_SRC     project source to install (default: the directory above this script)
#   GTM_PIP_ARGS        extra pip arguments (default: --no-cache-dir, which keeps the image small)
#
# Installs the package and its runtime dependencies only: no test extras.
set -eu

PYTHON="${GTM_INSTALL_PYTHON:-python3}"
SRC="${GTM_INSTALL_SRC:-$(cd "$(dirname "$0")/.." && pwd)}"
PIP_ARGS="${GTM_PIP_ARGS---no-cache-dir}"

"$PYTHON" -m pip install --disable-pip-version-check $PIP_ARGS "$SRC"
"$PYTHON" -c "import connector.entrypoints.cli, connector.entrypoints.daemon"
echo "docker-install: gtm-connector installed into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
