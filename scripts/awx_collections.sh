#!/usr/bin/env bash
# The collections that playbooks/awx_configure.yml and its tests need besides
# this one: awx.awx 24.6.1 (the modules that configure an AWX / Automation
# Controller). Galaxy is not reachable here, so they are taken from the
# `ansible` 12.3.0 package on PyPI (pinned, sha256-checked), which ships them:
#
#   pip download --no-deps ansible==12.3.0 -d build/wheels
#   unzip ansible_collections/awx/awx/* -> build/collections-extra/
#
# ansible.cfg puts build/collections-extra on collections_path. Nothing
# extracted is committed (build/ is git-ignored). Idempotent: a stamp records
# what was extracted; run by scripts/bootstrap.sh (make setup).
#
# Environment: PYTHON (the venv's python, default <repo>/.venv/bin/python)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WHEEL_DIR="$ROOT/build/wheels"
DEST="$ROOT/build/collections-extra"
ANSIBLE_VERSION=12.3.0
WHEEL="ansible-${ANSIBLE_VERSION}-py3-none-any.whl"
WHEEL_SHA256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
# collection -> the version the wheel must carry
COLLECTIONS=(awx/awx=24.6.1)
STAMP="$DEST/.extracted"

log() { printf 'awx_collections: %s\n' "$*" >&2; }
die() { printf 'awx_collections: ERROR: %s\n' "$*" >&2; exit 1; }

want="$WHEEL_SHA256 ${COLLECTIONS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "present in $DEST (${COLLECTIONS[*]})"
  exit 0
fi

mkdir -p "$WHEEL_DIR"
if [ ! -f "$WHEEL_DIR/$WHEEL" ] || ! echo "$WHEEL_SHA256  $WHEEL_DIR/$WHEEL" | sha256sum -c --status; then
  rm -f "$WHEEL_DIR/$WHEEL"
  log "downloading ansible==$ANSIBLE_VERSION (wheel only, no dependencies) into $WHEEL_DIR"
  { "$PYTHON" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
      "ansible==$ANSIBLE_VERSION" -d "$WHEEL_DIR" 2>&1 1>&3 \
      | { grep -v "^WARNING: Location 'file:" >&2 || true; }; } 3>&1
  echo "$WHEEL_SHA256  $WHEEL_DIR/$WHEEL" | sha256sum -c --status \
    || die "$WHEEL_DIR/$WHEEL does not have the pinned sha256 $WHEEL_SHA256"
fi

"$PYTHON" - "$WHEEL_DIR/$WHEEL" "$DEST" "${COLLECTIONS[@]}" <<'PY'
import json
import os
import shutil
import sys
import zipfile

wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    names = archive.namelist()
    for spec in sys.argv[3:]:
        path, version = spec.split('=')
        prefix = 'ansible_collections/%s/' % path
        members = [name for name in names if name.startswith(prefix) and not name.endswith('/')]
        if not members:
            sys.exit('awx_collections: ERROR: %s is not in %s' % (path, wheel))
        manifest = json.loads(archive.read(prefix + 'MANIFEST.json'))['collection_info']
        if manifest['version'] != version:
            sys.exit('awx_collections: ERROR: %s is %s in %s, want %s' % (path, manifest['version'], wheel, version))
        target = os.path.join(dest, 'ansible_collections', path)
        shutil.rmtree(target, ignore_errors=True)
        for name in members:
            out = os.path.join(dest, name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with archive.open(name) as src, open(out, 'wb') as dst:
                shutil.copyfileobj(src, dst)
        print('awx_collections: extracted %s %s (%d files) into %s' % (path.replace('/', '.'), version,
                                                                       len(members), dest), file=sys.stderr)
PY
printf '%s\n' "$want" > "$STAMP"
