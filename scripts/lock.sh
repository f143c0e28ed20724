#!/usr/bin/env bash
# Refresh constraints.txt: resolve pyproject's dependencies in a fresh virtualenv and pin
# every installed package, so two fresh machines a month apart install the same set.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3.11}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --upgrade pip
"$tmp/venv/bin/python" -m pip install --quiet -e ".[dev,wordlists]"
{
  echo "# Pinned by scripts/lock.sh (make lock) on $(date -u +%Y-%m-%d) with $("$tmp/venv/bin/python" --version)."
  echo "# scripts/setup.sh installs with -c constraints.txt; edit pyproject.toml, then rerun make lock."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | LC_ALL=C sort -f
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
