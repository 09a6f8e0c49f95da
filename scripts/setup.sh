#!/usr/bin/env bash
# Everything `make test` and `make demo` need on a fresh Debian 12 machine, idempotent:
# system packages (only the missing ones), a venv under the repo, `pip install -e .[test]`.
# Nothing here edits /etc: engines get their configuration from files under the repo
# (see controller/engines/local.py), exported via CONTAINERS_CONF.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package providing it
declare -A NEED=(
  [podman]=podman [runc]=runc [aardvark-dns]=aardvark-dns [dockerd]=docker.io
  [mmdebstrap]=mmdebstrap [git]=git [curl]=curl [ip]=iproute2 [iptables]=iptables
  [nsenter]=util-linux [ssh]=openssh-client [ssh-keygen]=openssh-client [gpg]=gnupg [age]=age
  [openssl]=openssl
)
missing=()
for cmd in "${!NEED[@]}"; do
  case "$cmd" in
    aardvark-dns) [ -x /usr/lib/podman/aardvark-dns ] || missing+=("${NEED[$cmd]}") ;;
    *) command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}") ;;
  esac
done
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing system packages: ${missing[*]} (run as root, or install them)" >&2
    exit 2
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" uidmap slirp4netns \
    netavark containernetworking-plugins >/dev/null
fi

# The venv, reinstalled only when pyproject.toml changes.
stamp=.venv/.tidegate-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing tidegate and its test dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" > "$stamp"
fi
