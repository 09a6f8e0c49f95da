#!/usr/bin/env bash
# `make demo` / `make demo-down`. Set-up (packages, venv) is done by `make setup` first.
set -euo pipefail
cd "$(dirname "$0")/.."
TG=.venv/bin/tidegate
case "${1:-up}" in
  up)
    echo "== validating the example clouds (working tree)"
    "$TG" check --repo . --worktree
    ;;
  down)
    echo "nothing to take down"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
