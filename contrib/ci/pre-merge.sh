#!/bin/sh
# tidegate pre-merge gate for a cloud repository: run it in the pull request's checkout.
#
#   contrib/ci/pre-merge.sh [TARGET]        TARGET: the branch the PR merges into (origin/main)
#
# For every cloud the PR touches (clouds/<cloud>/…), runs `tidegate gate` with
# base = merge-base(TARGET, HEAD) and head = HEAD, writing gate-<cloud>.xml (JUnit) and
# gate-<cloud>.json. Exit 0: every gate passed (or no cloud changed); 1: a change must not
# merge; 2: a gate could not run (engine, repository) — infrastructure, not the change.
#
# Environment: TIDEGATE (the command, default `tidegate`), TIDEGATE_GATE_ARGS (more
# arguments, e.g. "--engine docker" or "--matrix"), TIDEGATE_REPORTS (directory for the
# reports, default .).
set -eu
target=${1:-origin/main}
tidegate=${TIDEGATE:-tidegate}
reports=${TIDEGATE_REPORTS:-.}
base=$(git merge-base "$target" HEAD) || { echo "pre-merge: no merge base between $target and HEAD" >&2; exit 2; }
clouds=$(git diff --name-only "$base" HEAD -- clouds/ | awk -F/ 'NF > 2 { print $2 }' | sort -u)
if [ -z "$clouds" ]; then
  echo "pre-merge: no cloud changed between ${base%"${base#????????????}"} and HEAD"
  exit 0
fi
worst=0
for cloud in $clouds; do
  if [ ! -f "clouds/$cloud/cloud.yaml" ]; then
    echo "pre-merge: clouds/$cloud removed by this change: nothing to gate"
    continue
  fi
  rc=0
  # shellcheck disable=SC2086  # TIDEGATE_GATE_ARGS is a list of words
  $tidegate gate --repo . --cloud "$cloud" --base "$base" --head HEAD \
    --junit "$reports/gate-$cloud.xml" --json "$reports/gate-$cloud.json" ${TIDEGATE_GATE_ARGS:-} || rc=$?
  case $rc in
    0) ;;
    1) [ "$worst" -eq 2 ] || worst=1 ;;
    *) worst=2 ;;
  esac
done
exit "$worst"
