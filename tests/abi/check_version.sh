#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop ABI test — one version everywhere. These must all say the same x.y.z:
#   CMakeLists.txt's project(VERSION), the STROP_VERSION_* macros of include/strop/version.h,
#   strop_version() of the built library, the Version: of the strop.pc an install writes, the
#   Python package (pyproject.toml and PACKAGE_VERSION in strop/_lib.py), the upstream part of
#   debian/changelog's newest entry, CHANGELOG.md's newest release, and the man pages' headers;
# and SOVERSION stays 0 before 1.0.
# Usage: check_version.sh SOURCE_DIR [VERSION_DUMP CMAKE BUILD_DIR]
#   (without the last three, only the files are compared: no library, no install)
set -euo pipefail
src=$1 dump=${2:-} cmake=${3:-} build=${4:-}
fail=0
err() { echo "FAIL: $*"; fail=1; }

proj=$(tr '\n' ' ' <"$src/CMakeLists.txt" |
  sed -nE 's/.*project\([[:space:]]*strop[[:space:]]+VERSION[[:space:]]+([0-9]+\.[0-9]+\.[0-9]+).*/\1/p')
[ -n "$proj" ] || { echo "FAIL: no project(strop VERSION x.y.z) in CMakeLists.txt"; exit 1; }
# same WHERE VALUE: VALUE must be the project's version
same() { [ "$2" = "$proj" ] || err "CMakeLists.txt says $proj but $1 says '${2:-nothing}'"; }

macro() { sed -nE "s/^#[[:space:]]*define[[:space:]]+STROP_VERSION_$1[[:space:]]+([0-9]+).*/\1/p" "$src/include/strop/version.h"; }
same "include/strop/version.h" "$(macro MAJOR).$(macro MINOR).$(macro PATCH)"

if [ -n "$dump" ]; then
  same "strop_version() of the built library" "$("$dump")"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$cmake" --install "$build" --prefix "$tmp/p" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; err "cmake --install failed"; }
  pc=$(find "$tmp/p" -name strop.pc | head -n1)
  same "the installed strop.pc" "$(sed -nE 's/^Version:[[:space:]]*(.*)$/\1/p' "${pc:-/dev/null}")"
fi

py=$src/bindings/python
same "bindings/python/pyproject.toml" \
  "$(sed -nE '/^\[project\]/,/^\[/ s/^version[[:space:]]*=[[:space:]]*"([^"]*)".*/\1/p' "$py/pyproject.toml")"
same "PACKAGE_VERSION in bindings/python/strop/_lib.py" \
  "$(sed -nE 's/^PACKAGE_VERSION = \(([0-9]+), ([0-9]+), ([0-9]+)\).*/\1.\2.\3/p' "$py/strop/_lib.py")"

# debian/changelog: "strop (EPOCH:UPSTREAM-REVISION) DIST; urgency=..."; the upstream part counts
deb=$(sed -nE '1s/^strop \(([^)]*)\).*/\1/p' "$src/debian/changelog")
deb=${deb#*:}
same "debian/changelog (its newest entry, $deb)" "${deb%-*}"

# CHANGELOG.md: the first "## [x.y.z]" heading is the newest release
same "CHANGELOG.md's newest release" \
  "$(sed -nE 's/^## \[([0-9]+\.[0-9]+\.[0-9]+)\].*/\1/p' "$src/CHANGELOG.md" | head -n1)"

for man in "$src"/docs/man/*.[0-9]; do
  same "docs/man/${man##*/}" "$(sed -nE '1s/^\.TH .*"strop ([^"]*)".*/\1/p' "$man")"
done

sover=$(sed -nE 's/^[[:space:]]*set\(STROP_SOVERSION[[:space:]]+([0-9]+)\).*/\1/p' "$src/CMakeLists.txt")
if [ "${proj%%.*}" = 0 ] && [ "$sover" != 0 ]; then
  err "SOVERSION is '$sover'; it stays 0 until 1.0 (docs/abi.md)"
fi
[ "$fail" -eq 0 ] || exit 1
echo "abi_version: ok — $proj in CMakeLists.txt, version.h,${dump:+ strop_version(), strop.pc,} pyproject.toml, _lib.py, debian/changelog, CHANGELOG.md and the man pages (SOVERSION $sover)"
