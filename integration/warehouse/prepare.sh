#!/usr/bin/env bash
# Prepare a real Warehouse with warehouse-tuf enabled, for `make test-warehouse`.
#
#   1. source: a copy of $WAREHOUSE_SRC (a Warehouse checkout, left untouched), or else a fresh
#      unpack of ../shared/warehouse/warehouse-280d3b457.tar.gz, into .warehouse/src;
#   2. venv: .warehouse/venv-<sha256 of requirements/main.txt + tests.txt>, built once from
#      Warehouse's hash-pinned requirements and reused while complete;
#   3. the extension (this checkout's current code) installed into it, Warehouse's pins as
#      constraints; fails if any pinned version moved or `pip check` complains;
#   4. enable-warehouse-tuf.patch (README's "Enabling in Warehouse") applied to the tree.
#
# Writes .warehouse/current.env (WAREHOUSE_TREE, WAREHOUSE_PYTHON) for the test steps.
# Exit status 77: no Warehouse source available, nothing done (the Makefile reports a skip).
set -euo pipefail

SKIP_STATUS=77
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$ROOT/.warehouse"
TREE="$WORK/src"
TARBALL="$(cd "$ROOT/.." && pwd)/shared/warehouse/warehouse-280d3b457.tar.gz"
PATCH="$HERE/enable-warehouse-tuf.patch"
PYTHON="${WAREHOUSE_BASE_PYTHON:-python3}"

say() { printf 'prepare-warehouse: %s\n' "$*"; }
die() { printf 'prepare-warehouse: error: %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$(( SECONDS - $1 ))s"; }
# pip in the Warehouse venv, without the warnings this machine's pip.conf causes for every
# package (extra index folders that do not exist); every other message goes through.
vpip() {
    "$VPY" -m pip --disable-pip-version-check "$@" \
        2> >(grep -v "^WARNING: Location 'file://.*' is ignored: it is neither a file nor a directory" >&2)
}

mkdir -p "$WORK"
rm -f "$WORK/current.env"   # written again only when everything below succeeded

# 1. The source tree, fresh each run so the patch applies to a clean tree.
t0=$SECONDS
if [[ -n "${WAREHOUSE_SRC:-}" ]]; then
    [[ -f "$WAREHOUSE_SRC/warehouse/config.py" && -f "$WAREHOUSE_SRC/requirements/main.txt" ]] \
        || die "WAREHOUSE_SRC=$WAREHOUSE_SRC is not a Warehouse checkout (no warehouse/config.py or requirements/main.txt)"
    rm -rf "$TREE" && mkdir -p "$TREE"
    # A copy without VCS data, node_modules or build output; the checkout itself is not modified.
    tar -C "$WAREHOUSE_SRC" --exclude=./.git --exclude=./node_modules --exclude=./dev/.pytest_cache \
        --exclude=__pycache__ -cf - . | tar -C "$TREE" -xf -
    say "source: copy of WAREHOUSE_SRC=$WAREHOUSE_SRC -> ${TREE#"$ROOT"/} ($(elapsed $t0))"
elif [[ -f "$TARBALL" ]]; then
    rm -rf "$TREE" && mkdir -p "$TREE"
    tar -xzf "$TARBALL" -C "$TREE" --strip-components=1
    say "source: unpacked $(basename "$TARBALL") -> ${TREE#"$ROOT"/} ($(elapsed $t0))"
else
    say "skipped: no Warehouse source (set WAREHOUSE_SRC to a Warehouse checkout, or provide $TARBALL)"
    exit $SKIP_STATUS
fi
for f in main tests; do
    [[ -f "$TREE/requirements/$f.txt" ]] || die "missing requirements/$f.txt in the Warehouse source"
done

# 2. The venv, keyed by Warehouse's pins.
hash="$(cat "$TREE/requirements/main.txt" "$TREE/requirements/tests.txt" | sha256sum | cut -c1-16)"
VENV="$WORK/venv-$hash"
VPY="$VENV/bin/python"
STAMP="$VENV/.complete"
PINS="$VENV/warehouse-pins.txt"   # pip freeze right after Warehouse's requirements: its pins
if [[ -f "$STAMP" && -x "$VPY" && -f "$PINS" ]]; then
    say "venv: reusing ${VENV#"$ROOT"/} (complete, built $(cat "$STAMP"))"
else
    t0=$SECONDS
    if [[ -e "$VENV" ]]; then
        say "venv: ${VENV#"$ROOT"/} is incomplete, rebuilding"
        rm -rf "$VENV"
    fi
    say "venv: building ${VENV#"$ROOT"/} from requirements/main.txt + tests.txt with $($PYTHON --version) (a few minutes; psycopg-c compiles)"
    "$PYTHON" -m venv "$VENV"
    vpip install --quiet 'pip>=24'
    (cd "$TREE" && vpip install --quiet --no-deps \
        --require-hashes -r requirements/main.txt -r requirements/tests.txt)
    vpip freeze > "$PINS"
    date -u +%Y-%m-%dT%H:%M:%SZ > "$STAMP"
    say "venv: built in $(elapsed $t0), $(wc -l < "$PINS") pinned packages"
fi

# 3. The extension, this checkout's current code, with Warehouse's pins as constraints.
t0=$SECONDS
CONSTRAINTS="$VENV/constraints.txt"
# Warehouse's pins, in a form pip accepts as constraints (name==version lines only).
grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$PINS" | grep -viE '^warehouse[-_.]tuf==' > "$CONSTRAINTS" || true
# Built from a clean copy of this checkout's current files (uncommitted edits included), so
# nothing stale from a build/ folder or another venv ends up in the wheel. Installing from a
# directory always rebuilds and reinstalls it, and any new dependency is resolved.
EXT_SRC="$WORK/ext-src"
rm -rf "$EXT_SRC" && mkdir -p "$EXT_SRC"
tar -C "$ROOT" --exclude=./.git --exclude=./.warehouse --exclude=./.venv --exclude=./build \
    --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ --exclude=node_modules \
    --exclude=./.dev-data --exclude=.pytest_cache --exclude=.hypothesis -cf - . | tar -C "$EXT_SRC" -xf -
vpip install --quiet -c "$CONSTRAINTS" "$EXT_SRC" \
    || die "could not install warehouse-tuf within Warehouse's pins (see pip's message above)"
AFTER="$WORK/freeze-after.txt"
vpip freeze > "$AFTER"
ext_version="$(grep -iE '^warehouse[-_.]tuf( |==|@)' "$AFTER" | head -1 || true)"
[[ -n "$ext_version" ]] || die "warehouse-tuf is not installed in ${VENV#"$ROOT"/} after pip install"
"$VPY" - "$PINS" "$AFTER" <<'EOF' || die "Warehouse's pinned versions changed in ${VENV#"$ROOT"/} (above): the extension must install within them"
import re, sys

def versions(path):
    out = {}
    for line in open(path):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*(\S+)|@\s*(\S+))", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2] or "@ " + m[3]
    return out

before, after = versions(sys.argv[1]), versions(sys.argv[2])
moved = [f"  {n}: {v} -> {after.get(n, 'removed')}" for n, v in sorted(before.items()) if after.get(n) != v]
added = sorted(f"{n}=={v}" for n, v in after.items() if n not in before and n != "warehouse-tuf")
if moved:
    print("prepare-warehouse: Warehouse pins that moved:\n" + "\n".join(moved))
    sys.exit(1)
print(f"prepare-warehouse: pins: all {len(before)} of Warehouse's pinned packages unchanged")
print("prepare-warehouse: added for the extension: " + (", ".join(added) or "nothing"))
EOF
vpip check >/dev/null \
    || { vpip check || true; die "pip check failed"; }
say "extension: installed $ext_version ($(elapsed $t0)); pip check clean"

# 4. The enabling edits, exactly as README tells a maintainer.
patch_in_tree() { (cd "$TREE" && patch -p1 --batch --no-backup-if-mismatch "$@" < "$PATCH"); }
if patch_in_tree --forward --dry-run >/dev/null; then
    patch_in_tree --forward --quiet
    say "patch: applied $(basename "$PATCH") ($(grep -c '^+++ ' "$PATCH") files)"
elif patch_in_tree --reverse --dry-run >/dev/null; then
    say "patch: $(basename "$PATCH") is already applied in this Warehouse source; used as it is"
else
    patch_in_tree --forward --dry-run >&2 || true
    die "$(basename "$PATCH") does not apply to this Warehouse source (above)"
fi
# As Warehouse's bin/tests does, to silence whitenoise.
mkdir -p "$TREE/warehouse/static/dist" "$TREE/warehouse/admin/static/dist"

printf 'WAREHOUSE_TREE=%q\nWAREHOUSE_PYTHON=%q\n' "$TREE" "$VPY" > "$WORK/current.env"
say "ready: WAREHOUSE_TREE=${TREE#"$ROOT"/} WAREHOUSE_PYTHON=${VPY#"$ROOT"/}"
