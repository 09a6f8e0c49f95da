#!/usr/bin/env bash
# `make test`: the whole suite, in three pytest runs side by side.
#
# The OpenStack demo's stories (tests/demo: marker `openstack`, a whole cloud each) take
# turns machine-wide: two upgrading at once on 2 cores starve each other's uwsgi past the
# probes' timeout (tests/demo/conftest.py). Run among the xdist workers they blocked them:
# in one run three of four workers sat on the turn lock for minutes while 570 quick tests
# waited behind them. So they run in their own pytest, one after the other, their lines
# prefixed `[openstack]`. The compute cloud's story (tests/compute, marker `compute`: 13
# minutes, on test hosts of its own, mostly waiting on image imports and health gates)
# runs in a third, prefixed `[compute]`, beside the demo's; before, it ran in the demo's
# turn and made that run the suite's long pole (37:52 of CI's 38:11). The other tests
# share $WORKERS xdist workers.
# Exit: non-zero when any run failed (pytest's 5, "no tests selected", counts as none).
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

stories() {   # name, marker expression: one serial pytest, its lines prefixed [name]
  "$PY" -m pytest -p no:cacheprovider -m "$2" -v --durations=0 "${ARGS[@]}" 2>&1 \
    | tee "$logs/$1" | sed -u "s/^/[$1] /"
  return "${PIPESTATUS[0]}"
}
stories openstack "openstack and not compute" &
demo=$!
stories compute "compute" &
compute=$!
"$PY" -m pytest -n "$WORKERS" -m "not openstack" --durations=20 "${ARGS[@]}" 2>&1 | tee "$logs/rest"
rest=${PIPESTATUS[0]}
wait "$demo"
openstack=$?
wait "$compute"
compute=$?
for code in rest openstack compute; do
  [ "${!code}" = 5 ] && printf -v "$code" 0
done
grep -h -E '^(FAILED|ERROR) ' "$logs/rest" "$logs/openstack" "$logs/compute" | cut -c1-800
echo "make test: other tests exit $rest, OpenStack demo stories exit $openstack, compute story exit $compute"
[ "$rest" = 0 ] && [ "$openstack" = 0 ] && [ "$compute" = 0 ]
