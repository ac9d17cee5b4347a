#!/usr/bin/env bash
# Prepare this machine for development and CI of incident.response.
#
# Idempotent, and fast when everything is already in place:
#   1. Debian packages for the lab and the tests (apt-get; only when missing).
#   2. .venv with requirements-test.txt (only when the file's hash changed).
#   3. An offline stand-in for the get-pip.py script that `ansible-test
#      --requirements` downloads from a host this machine cannot reach.
#
# Runs as root on Debian 12 (CI, lab machines). As another user it skips the
# apt step when the packages are already installed, and otherwise uses sudo.
#
# Environment:
#   PYTHON               interpreter for the venv (default: python3 on PATH)
#   VENV                 venv directory (default: <repo>/.venv)
#   BOOTSTRAP_SKIP_APT=1 skip the Debian packages step
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
REQUIREMENTS="$ROOT/requirements-test.txt"
STAMP="$VENV/.requirements-test.sha256"

# Debian packages the lab and the tests need (keep in sync with bindep.txt, profile test).
APT_PACKAGES=(
  postgresql postgresql-client redis-server
  docker.io docker-compose prometheus-alertmanager busybox-static pgbouncer
  python3-venv curl ca-certificates rsync git make
  shellcheck chromium
  tcpdump nftables iproute2
)

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
missing_packages() {
  local pkg status
  for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "installed" ] || printf '%s\n' "$pkg"
  done
}

apt_lists_fresh() {
  # apt-get update ran in the last 12 hours?
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -type f -name '*_Packages*' -mmin -720 -print -quit 2>/dev/null)" ]
}

apt_get() {
  as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 apt-get -q \
    -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

install_packages() {
  if [ "${BOOTSTRAP_SKIP_APT:-0}" = "1" ]; then
    log "BOOTSTRAP_SKIP_APT=1: not checking Debian packages"
    return
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    log "not a Debian system: install the packages of bindep.txt (profile test) yourself"
    return
  fi
  local missing
  mapfile -t missing < <(missing_packages)
  if [ "${#missing[@]}" -eq 0 ]; then
    log "Debian packages: all present"
    return
  fi
  log "Debian packages to install: ${missing[*]}"

  # Package maintainer scripts would start postgresql, redis-server, docker,
  # alertmanager on their default ports (where an init system lets them). The
  # lab starts its own instances and must not depend on those, so keep them from
  # starting at install time with a policy-rc.d (unless one is already there).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\n# added by incident.response scripts/bootstrap.sh during apt-get install\nexit 101\n' > $policy && chmod 755 $policy"
    created_policy=1
    # shellcheck disable=SC2064
    trap "as_root rm -f $policy" EXIT
  fi

  if ! apt_lists_fresh; then
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}"
  elif ! apt_get install -y --no-install-recommends "${missing[@]}"; then
    # package lists may be stale (404 on an updated package): refresh once
    apt_get update
    apt_get install -y --no-install-recommends "${missing[@]}"
  fi

  if [ "$created_policy" = 1 ]; then
    as_root rm -f "$policy"
    trap - EXIT
  fi
}

# ---------------------------------------------------------------------------
# 2. The virtualenv
# ---------------------------------------------------------------------------
requirements_hash() {
  {
    sha256sum "$REQUIREMENTS" | cut -d' ' -f1
    "$VENV/bin/python" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

# Every `name==version` pin of requirements-test.txt installed in the venv?
# (catches a venv changed by hand since the stamp was written)
pins_installed() {
  "$VENV/bin/python" - "$REQUIREMENTS" <<'PY'
import re
import sys
from importlib import metadata

drift = []
with open(sys.argv[1]) as requirements:
    for line in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if not match:
            continue
        name, want = match.groups()
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != want:
            drift.append("%s: pinned %s, installed %s" % (name, want, have))
for item in drift:
    print("bootstrap:   " + item, file=sys.stderr)
sys.exit(1 if drift else 0)
PY
}

setup_venv() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found on PATH"
  local version
  version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [ "$version" = "3.11" ] || log "WARNING: $PYTHON is Python $version; the project is tested with 3.11"

  # A venv copied from another machine, or whose Python went away, is rebuilt.
  if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "$VENV is broken: recreating it"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $(command -v "$PYTHON") (Python $version)"
    "$PYTHON" -m venv "$VENV"
  fi

  local want
  want="$(requirements_hash)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    if pins_installed; then
      log "venv: requirements-test.txt unchanged and installed"
      return
    fi
    log "venv: packages differ from requirements-test.txt: reinstalling"
  fi
  log "installing requirements-test.txt into $VENV"
  # (this machine's pip.conf may name local indexes that lack most packages:
  # drop pip's warnings about those, keep everything else and the exit code)
  { "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQUIREMENTS" 2>&1 1>&3 \
      | { grep -v "^WARNING: Location 'file:" >&2 || true; }; } 3>&1
  "$VENV/bin/python" -m pip check
  printf '%s\n' "$want" > "$STAMP"
}

# ---------------------------------------------------------------------------
# 3. ansible-test's get-pip.py, offline
# ---------------------------------------------------------------------------
# `ansible-test sanity --requirements` creates a venv per sanity test and
# bootstraps pip there with ~/.ansible/test/cache/get_pip_<version>.py, which
# it downloads when missing (from a host that is not reachable here). This
# stand-in takes pip from the interpreter's own ensurepip instead, then
# installs what ansible-test asked for (pip==<version>) from the usual index.
ansible_test_pip_version() {
  "$VENV/bin/python" - <<'PY'
import re, types
try:
    from ansible_test._internal.python_requirements import get_venv_packages
    print(get_venv_packages(types.SimpleNamespace(version='3.11'))['pip'])
except Exception:  # fall back to reading the source
    import ansible_test, os
    path = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
    print(re.search(r"pip='([^']+)'", open(path).read()).group(1))
PY
}

GET_PIP_SCRIPT='"""Offline stand-in for get-pip.py, written by incident.response scripts/bootstrap.sh.

ansible-test runs this (through its quiet_pip.py) in a new, pip-less venv with
arguments such as: --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel
"""
import ensurepip
import os
import subprocess
import sys

environ = dict(os.environ)
# ensurepip drops every PIP_* variable and points PIP_CONFIG_FILE at /dev/null,
# which would hide the machine'"'"'s pip settings (index, certificates) from the
# install below: restore the environment as it was.
ensurepip.bootstrap()
os.environ.clear()
os.environ.update(environ)

# --no-setuptools/--no-wheel/--no-pip are get-pip.py options, not pip install ones.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
'

seed_get_pip() {
  local version cache target
  version="$(ansible_test_pip_version)"
  cache="${HOME}/.ansible/test/cache"
  target="$cache/get_pip_${version//./_}.py"
  if [ -f "$target" ] && cmp -s "$target" <(printf '%s' "$GET_PIP_SCRIPT"); then
    log "ansible-test get-pip stand-in: present ($target)"
    return
  fi
  mkdir -p "$cache"
  printf '%s' "$GET_PIP_SCRIPT" > "$target.tmp"
  mv "$target.tmp" "$target"
  log "ansible-test get-pip stand-in: wrote $target"
}

# ---------------------------------------------------------------------------
# 4. build/eda-venv: ansible-rulebook for the EDA rulebook test
# ---------------------------------------------------------------------------
# ansible-rulebook pins versions the test venv must not take, so it has a venv of its own
# (requirements-eda.txt); tests/integration/test_eda_rulebook.py runs it.
EDA_VENV="$ROOT/build/eda-venv"
setup_eda_venv() {
  local want stamp="$EDA_VENV/.requirements-eda.sha256"
  [ -f "$ROOT/requirements-eda.txt" ] || return 0
  want="$(sha256sum "$ROOT/requirements-eda.txt" | cut -d' ' -f1)"
  if [ -x "$EDA_VENV/bin/ansible-rulebook" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "eda venv: requirements-eda.txt unchanged and installed"
    return
  fi
  log "installing requirements-eda.txt into $EDA_VENV"
  "$PYTHON" -m venv "$EDA_VENV"
  { "$EDA_VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$ROOT/requirements-eda.txt" 2>&1 1>&3 \
      | { grep -v "^WARNING: Location 'file:" >&2 || true; }; } 3>&1
  printf '%s\n' "$want" > "$stamp"
}

# ---------------------------------------------------------------------------
# 5. build/collections-extra: awx.awx from the pinned ansible wheel (playbooks/awx_configure.yml)
# ---------------------------------------------------------------------------
setup_awx_collections() {
  PYTHON="$VENV/bin/python" bash "$ROOT/scripts/awx_collections.sh"
}

install_packages
setup_venv
seed_get_pip
setup_eda_venv
setup_awx_collections
log "done"
