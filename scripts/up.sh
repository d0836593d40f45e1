#!/usr/bin/env bash
# Install netatlas and run its main command: the README's first command.
#   bash scripts/up.sh [netatlas up arguments, e.g. --no-demo --port 9090]
# Installs into a virtual environment (the active one, else ./.venv: see scripts/venv.sh), then runs
# `netatlas up`: the workspace in ./netatlas-data, the live demo datacenter, the local agent (as
# root) and the web UI. Afterwards `. .venv/bin/activate` puts `netatlas` on your PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
python -m pip install --quiet --disable-pip-version-check .
exec netatlas up "$@"
