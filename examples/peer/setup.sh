#!/bin/sh
# Creates target/peer-venv with the Python peer's dependencies (examples/peer/requirements.txt).
# Idempotent: once the venv matches requirements.txt, it does nothing.
# PYTHON picks the interpreter (default python3).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="${CARGO_TARGET_DIR:-$root/target}/peer-venv"
requirements="$root/examples/peer/requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
if ! cmp -s "$requirements" "$venv/requirements.installed"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.installed"
fi
echo "$venv/bin/python"
