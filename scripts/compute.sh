#!/usr/bin/env bash
# `make compute` / `make compute-down [ARGS=--volumes]`: the compute cloud (clouds/compute/),
# on top of `make demo`'s set-up (packages, venv: `make setup` runs first).
#
# up:   a local engine (started when none runs), the cloud's images (built offline,
#       cached by recipe hash), a git repository for the cloud's state
#       (.tidegate/compute-repo, with the branches `upgrade-nova` and `upgrade-neutron`
#       ready to merge), one convergence — every bootstrap job of the cloud's files —
#       and the status.
# down: the cloud's containers and networks go; its volumes only with --volumes.
set -euo pipefail
cd "$(dirname "$0")/.."
TG="$PWD/.venv/bin/tidegate"
KIND=podman
REPO=.tidegate/compute-repo
STATE=.tidegate/compute-state
export TIDEGATE_STATE_DIR=$STATE
# the demo's age key (public on purpose): decrypts clouds/compute/secrets/ too
export TIDEGATE_AGE_KEY_FILE="$PWD/clouds/compute/keys/demo.agekey"

engine_url() {
  if [ -n "${TIDEGATE_PODMAN_URL:-}" ]; then echo "$TIDEGATE_PODMAN_URL"; return; fi
  "$TG" engine up --kind "$KIND" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])'
}

case "${1:-up}" in
  up)
    echo "== engine ($KIND)"
    "$TG" engine up --kind "$KIND"
    URL=$(engine_url)
    export "TIDEGATE_PODMAN_URL=$URL"

    echo "== images (built offline from Debian trixie and forky with mmdebstrap; cached by recipe hash)"
    "$TG" images build --cloud compute --engine "$KIND=$URL"

    if [ ! -d "$REPO/.git" ]; then
      echo "== compute state repository: $REPO"
      mkdir -p "$REPO/clouds"
      git -C "$REPO" init -q -b main
      git -C "$REPO" config user.name "tidegate compute"
      git -C "$REPO" config user.email "compute@tidegate.invalid"
      cp -r clouds/compute "$REPO/clouds/compute"
      git -C "$REPO" add -A
      git -C "$REPO" commit -q -m "compute cloud: OpenStack 2025.1 (Nova 31, Neutron 26, Glance 30)"
      # Nova 2025.1 → 2026.1, one commit: conductor, then scheduler and API, then the
      # computes one host at a time (the services' depends_on and role: agent)
      git -C "$REPO" checkout -q -b upgrade-nova
      sed -i -E '/^(release|image|build):/ s/2025\.1/2026.1/' "$REPO"/clouds/compute/services/nova-*.yaml
      git -C "$REPO" commit -q -am "nova: 2025.1 → 2026.1 (Nova 33)"
      # then Neutron, on top of it
      git -C "$REPO" checkout -q -b upgrade-neutron
      sed -i -E '/^(release|image|build):/ s/2025\.1/2026.1/' "$REPO"/clouds/compute/services/neutron-server.yaml
      git -C "$REPO" commit -q -am "neutron: 2025.1 → 2026.1 (Neutron 28)"
      git -C "$REPO" checkout -q main
    fi
    echo "== converging the compute cloud (engine $URL)"
    "$TG" apply --repo "$REPO" --cloud compute
    cat <<EOT

The compute cloud runs. Through HAProxy: Keystone http://127.0.0.1:25000/v3, Nova
http://127.0.0.1:28774/v2.1, Neutron http://127.0.0.1:29696, Glance http://127.0.0.1:29292,
Placement http://127.0.0.1:28778 (admin password: $TG secrets show keystone-admin --cloud compute --reveal).

Upgrade Nova 2025.1 → 2026.1 (one commit), then close it. Nova has no downgrade (its
services refuse older ones once newer ran), so check refuses a revert: fix forward.
  git -C $REPO merge --ff-only upgrade-nova
  $TG plan  --repo $REPO --cloud compute
  $TG apply --repo $REPO --cloud compute
  $TG contract --repo $REPO --cloud compute --service nova-compute               # online data migrations
Then Neutron (the next day), and its rollback before its contract:
  git -C $REPO merge --ff-only upgrade-neutron && $TG apply --repo $REPO --cloud compute
  git -C $REPO revert --no-edit HEAD && $TG apply --repo $REPO --cloud compute   # rollback
(export TIDEGATE_STATE_DIR=$STATE TIDEGATE_AGE_KEY_FILE=$TIDEGATE_AGE_KEY_FILE first.)
Take it down: make compute-down (data volumes too: make compute-down ARGS=--volumes)
EOT
    ;;
  down)
    if [ ! -d "$REPO/.git" ]; then echo "no compute cloud here ($REPO)"; exit 0; fi
    URL=$(engine_url)
    export "TIDEGATE_PODMAN_URL=$URL"
    "$TG" down --repo "$REPO" --cloud compute "${@:2}"
    ;;
  *) echo "usage: $0 up|down [--volumes]" >&2; exit 2 ;;
esac
