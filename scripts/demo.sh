#!/usr/bin/env bash
# `make demo` / `make demo-down [ARGS=--volumes]`. Set-up (packages, venv) is done by `make setup` first.
#
# up:   a local engine (started when none runs), the demo cloud's images (built offline,
#       cached), a git repository for the demo's state (.tidegate/demo-repo, with a branch
#       `upgrade-placement` ready to merge), one convergence, the status and the URLs.
# down: the demo's containers and networks go; its volumes (the data) only with --volumes.
#
# DEMO_ENGINE=docker uses docker instead of podman.
set -euo pipefail
cd "$(dirname "$0")/.."
TG="$PWD/.venv/bin/tidegate"
KIND=${DEMO_ENGINE:-podman}
REPO=.tidegate/demo-repo
STATE=.tidegate/demo-state
export TIDEGATE_STATE_DIR=$STATE
# the demo's age key (public on purpose, clouds/demo/keys/): decrypts clouds/demo/secrets/
export TIDEGATE_AGE_KEY_FILE="$PWD/clouds/demo/keys/demo.agekey"
KEYSTONE_PORT=15000
PLACEMENT_PORT=18778

engine_url() {
  local var="TIDEGATE_${KIND^^}_URL"
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  "$TG" engine up --kind "$KIND" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])'
}

case "${1:-up}" in
  up)
    echo "== engine ($KIND)"
    "$TG" engine up --kind "$KIND"
    URL=$(engine_url)
    export "TIDEGATE_${KIND^^}_URL=$URL"

    echo "== images (built offline from Debian packages with mmdebstrap; cached by recipe hash)"
    "$TG" images build --cloud demo --engine "$KIND=$URL"

    if [ ! -d "$REPO/.git" ]; then
      echo "== demo state repository: $REPO"
      mkdir -p "$REPO"
      git -C "$REPO" init -q -b main
      git -C "$REPO" config user.name "tidegate demo"
      git -C "$REPO" config user.email "demo@tidegate.invalid"
      mkdir -p "$REPO/clouds"
      cp -r clouds/demo "$REPO/clouds/demo"
      # the demo's one host runs on the engine chosen here (the shipped file says podman)
      sed -i -E "s/^(    engine: )podman\b/\1$KIND/" "$REPO/clouds/demo/cloud.yaml"
      git -C "$REPO" add -A
      git -C "$REPO" commit -q -m "demo cloud: OpenStack 2025.1 (Keystone 27, Placement 13)"
      # the upgrade, ready to merge: placement 2025.1 → 2026.1 (a SLURP → SLURP upgrade)
      git -C "$REPO" checkout -q -b upgrade-placement
      sed -i -E '/^(release|image|build):/ s/2025\.1/2026.1/' "$REPO/clouds/demo/services/placement.yaml"
      git -C "$REPO" commit -q -am "placement: 2025.1 → 2026.1 (Placement 15)"
      git -C "$REPO" checkout -q main
    fi

    HOST_KIND=$(sed -n -E 's/^    engine: ([a-z]+).*/\1/p' "$REPO/clouds/demo/cloud.yaml")
    if [ "$HOST_KIND" != "$KIND" ]; then
      echo "make demo: $REPO/clouds/demo/cloud.yaml runs the demo on $HOST_KIND, not $KIND;" \
           "take it down (make demo-down) and remove $REPO to switch engines" >&2
      exit 2
    fi
    echo "== converging the demo cloud (engine $URL)"
    "$TG" apply --repo "$REPO" --cloud demo        # ends with the status (as `tidegate status` shows it)
    cat <<EOF

The demo cloud runs. Through HAProxy:
  Keystone   http://127.0.0.1:$KEYSTONE_PORT/v3
  Placement  http://127.0.0.1:$PLACEMENT_PORT/

A token for the admin user:
  curl -si http://127.0.0.1:$KEYSTONE_PORT/v3/auth/tokens -H 'Content-Type: application/json' -d '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": "$("$TG" secrets show keystone-admin --repo . --cloud demo --reveal)"}}}, "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}' | grep -i x-subject-token

Upgrade placement 2025.1 → 2026.1 (one service; the others are not touched):
  git -C $REPO merge --ff-only upgrade-placement
  .venv/bin/tidegate plan  --repo $REPO --cloud demo      # what it will do
  .venv/bin/tidegate apply --repo $REPO --cloud demo      # rolling, health-gated

Roll it back (like any change):
  git -C $REPO revert --no-edit HEAD
  .venv/bin/tidegate apply --repo $REPO --cloud demo

Or let the controller follow the branch:  .venv/bin/tidegate run --repo $REPO --cloud demo
Gate the upgrade before merging:          .venv/bin/tidegate gate --repo $REPO --cloud demo --base main --head upgrade-placement
(export TIDEGATE_STATE_DIR=$STATE TIDEGATE_AGE_KEY_FILE=$TIDEGATE_AGE_KEY_FILE first when running these by hand.)
Take the demo down:  make demo-down   (data volumes too: make demo-down ARGS=--volumes)
EOF
    ;;
  down)
    if [ ! -d "$REPO/.git" ]; then echo "no demo here ($REPO)"; exit 0; fi
    URL=$(engine_url)
    export "TIDEGATE_${KIND^^}_URL=$URL"
    "$TG" down --repo "$REPO" --cloud demo "${@:2}"
    echo "the engine keeps running: .venv/bin/tidegate engine down --kind $KIND"
    ;;
  *) echo "usage: $0 up|down [--volumes]" >&2; exit 2 ;;
esac
