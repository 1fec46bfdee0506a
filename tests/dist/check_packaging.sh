#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop distribution test — the Debian packages, end to end, in a scratch folder:
#   1. dpkg-buildpackage -us -uc -b on a copy of the tree (offline; the build runs the test
#      subset debian/rules names, unless DEB_BUILD_OPTIONS has nocheck);
#   2. lintian on the result: no error and no warning that debian/ does not override with a
#      reason;
#   3. apt-get install ./*.deb — into a throw-away copy of the system: a private mount
#      namespace with overlays on /usr, /etc and /var, so the machine itself (and whoever else
#      uses it) never sees the packages;
#   4. there, the checks of debian/tests (autopkgtest's): a program built with only
#      pkg-config --cflags --libs strop links and runs (also static, also through CMake);
#      `python3 -c "import strop"` works with no environment variable; the tool, its man page
#      and the example recipes are installed.
# Needs root (the namespace, apt) and the build dependencies of debian/control
# (bash .ci/deps --full installs them); exits 77 (skipped) without them.
# Usage: check_packaging.sh SOURCE_DIR. JOBS=n (default 2); KEEP=1 keeps the scratch folder.
set -euo pipefail
src=$(cd "$1" && pwd)
jobs=${JOBS:-2}
# Debian's own tools only: a python3 or cmake of a user's (pyenv, /usr/local) first on PATH
# is not what a package is built with
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH PKG_CONFIG_PATH LD_LIBRARY_PATH
skip() { echo "skipped: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
step() { printf -- '-- %s\n' "$*"; }

[ "$(id -u)" = 0 ] || skip "needs root (a mount namespace for the scratch install, and apt)"
for t in dpkg-buildpackage dpkg-checkbuilddeps lintian apt-get unshare; do
  command -v "$t" >/dev/null || skip "$t is not installed (bash .ci/deps --full)"
done
if ! deps=$(cd "$src" && dpkg-checkbuilddeps 2>&1); then
  skip "build dependencies missing (bash .ci/deps --full installs them): $deps"
fi
unshare --mount --propagation private true 2>/dev/null || skip "cannot make a mount namespace here"

tmp=$(mktemp -d /tmp/strop_pkg_XXXXXX)
[ -n "${KEEP:-}" ] && echo "scratch folder: $tmp (kept)" || trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS

# ---- 1. build ----
version=$(sed -nE '1s/^strop \(([^)]*)\).*/\1/p' "$src/debian/changelog")
upstream=${version%-*}
tree=$tmp/strop-$upstream
mkdir -p "$tree"
# the files git knows (committed or not yet), else everything but build folders
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' | tar --null -T - -cf -) |
    (cd "$tree" && tar xf -)
else
  (cd "$src" && tar --exclude='./build*' --exclude=./.git -cf - .) | (cd "$tree" && tar xf -)
fi
step "building strop $version in $tree (dpkg-buildpackage -us -uc -b -j$jobs${DEB_BUILD_OPTIONS:+, DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS})"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b -j"$jobs") >"$tmp/build.log" 2>&1; then
  grep -E 'FAIL|Error|error:|\*\*\*|tests failed|The following tests' "$tmp/build.log" | tail -n 40 || true
  tail -n 60 "$tmp/build.log"
  fail "dpkg-buildpackage failed (the whole log: KEEP=1, then $tmp/build.log)"
fi
grep -E '^[0-9]+% tests passed|^[0-9]+ passed' "$tmp/build.log" | sed 's/^/   build-time tests: /' || true
debs=$(cd "$tmp" && ls ./*.deb)
for p in libstrop0 libstrop-dev strop-tools python3-strop; do
  ls "$tmp/${p}_"*.deb >/dev/null 2>&1 || fail "no $p package was built"
done
step "built in $((SECONDS - t0)) s: $(echo $debs | sed 's#\./##g')"

# ---- 2. lintian ----
changes=$(ls "$tmp"/strop_*.changes)
lintian --fail-on error,warning --display-info "$changes" >"$tmp/lintian.log" 2>&1 || lrc=$?
sed 's/^/   /' "$tmp/lintian.log"
[ "${lrc:-0}" = 0 ] || fail "lintian reports errors or warnings that debian/ does not override (see above)"
step "lintian: no error, no warning left unexplained"

# ---- 3. install into a throw-away copy of the system ----
cat >"$tmp/inside.sh" <<'INSIDE'
set -euo pipefail
tmp=$1 tree=$2
mount -t tmpfs tmpfs "$tmp/ov"
for d in usr etc var; do
  mkdir -p "$tmp/ov/$d.up" "$tmp/ov/$d.work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$tmp/ov/$d.up,workdir=$tmp/ov/$d.work" "/$d"
done
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "$tmp"/*.deb >"$tmp/apt.log" 2>&1 ||
  { cat "$tmp/apt.log"; echo "FAIL: apt-get install ./*.deb failed"; exit 1; }
n=$(grep -cE '^Setting up (libstrop0|libstrop-dev|strop-tools|python3-strop)(:[a-z0-9]+)? ' "$tmp/apt.log" || true)
[ "$n" = 4 ] || { cat "$tmp/apt.log"; echo "FAIL: apt-get set up $n of the 4 packages"; exit 1; }
echo "-- apt-get install ./*.deb: the 4 packages set up (in the scratch system only)"
cd "$tree"
for t in c-consumer python-import tool; do
  echo "-- debian/tests/$t"
  AUTOPKGTEST_TMP=$(mktemp -d "$tmp/at.XXXXXX") sh "debian/tests/$t" 2>&1 | sed 's/^/   /'
done
INSIDE
mkdir -p "$tmp/ov"
unshare --mount --propagation private bash -c 'bash "$0" "$@"; rc=$?; [ "$rc" = 0 ] && echo INSIDE-OK; exit "$rc"' \
  "$tmp/inside.sh" "$tmp" "$tree" 2>&1 | tee "$tmp/inside.log"
grep -q '^INSIDE-OK$' "$tmp/inside.log" || fail "the installed packages do not work (see above)"
# the scratch system is gone with its namespace: nothing was installed on this machine
! dpkg-query -W -f='${Status}\n' libstrop0 2>/dev/null | grep -q 'install ok installed' ||
  echo "note: libstrop0 is installed on this machine itself (not by this test)"
echo "packaging: ok — built, linted, installed and used in a scratch system ($((SECONDS - t0)) s)"
