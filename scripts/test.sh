#!/usr/bin/env bash
# `make test`: the whole suite, in two pytest runs side by side.
#
# The OpenStack stories (tests/demo, tests/compute: marker `openstack`, a whole cloud each)
# take turns machine-wide: two upgrading at once on 2 cores starve each other's uwsgi past
# the probes' timeout (tests/demo/conftest.py). Run among the xdist workers they blocked
# them: in one run three of four workers sat on the turn lock for minutes while 570 quick
# tests waited behind them. So they run in their own pytest, one after the other, their
# lines prefixed `[openstack]`, while the other tests share $WORKERS xdist workers.
# Exit: non-zero when either run failed (pytest's 5, "no tests selected", counts as none).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORKERS=${WORKERS:-3}
read -r -a ARGS <<< "${PYTEST_ARGS:-}"

# A failure's one-line summary is printed again at the very end: CI shows a long log's
# head and tail, and a story's traceback and durations can push it out of both.
export COLUMNS=${COLUMNS:-240}     # the short summary keeps more of a failure's message
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
( "$PY" -m pytest -p no:cacheprovider -m openstack -v --durations=0 "${ARGS[@]}" 2>&1 \
    | tee "$logs/openstack" | sed -u 's/^/[openstack] /'; exit "${PIPESTATUS[0]}" ) &
stories=$!
"$PY" -m pytest -n "$WORKERS" -m "not openstack" --durations=20 "${ARGS[@]}" 2>&1 | tee "$logs/rest"
rest=${PIPESTATUS[0]}
wait "$stories"
openstack=$?
for code in rest openstack; do
  [ "${!code}" = 5 ] && printf -v "$code" 0
done
grep -h -E '^(FAILED|ERROR) ' "$logs/rest" "$logs/openstack" | cut -c1-800
echo "make test: other tests exit $rest, OpenStack stories exit $openstack"
[ "$rest" = 0 ] && [ "$openstack" = 0 ]
