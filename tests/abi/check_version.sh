#!/usr/bin/env bash
# strop ABI test — one version everywhere: CMakeLists.txt's project(VERSION) equals the
# STROP_VERSION_* macros of include/strop/version.h, and SOVERSION stays 0 before 1.0.
# Usage: check_version.sh SOURCE_DIR
set -euo pipefail
src=$1
proj=$(tr '\n' ' ' <"$src/CMakeLists.txt" |
  sed -nE 's/.*project\([[:space:]]*strop[[:space:]]+VERSION[[:space:]]+([0-9]+\.[0-9]+\.[0-9]+).*/\1/p')
[ -n "$proj" ] || { echo "FAIL: no project(strop VERSION x.y.z) in CMakeLists.txt"; exit 1; }
macro() { sed -nE "s/^#[[:space:]]*define[[:space:]]+STROP_VERSION_$1[[:space:]]+([0-9]+).*/\1/p" "$src/include/strop/version.h"; }
hdr="$(macro MAJOR).$(macro MINOR).$(macro PATCH)"
if [ "$proj" != "$hdr" ]; then
  echo "FAIL: CMakeLists.txt says $proj but include/strop/version.h says $hdr"
  exit 1
fi
sover=$(sed -nE 's/^[[:space:]]*set\(STROP_SOVERSION[[:space:]]+([0-9]+)\).*/\1/p' "$src/CMakeLists.txt")
major=${proj%%.*}
if [ "$major" = 0 ] && [ "$sover" != 0 ]; then
  echo "FAIL: SOVERSION is '$sover'; it stays 0 until 1.0 (docs/abi.md)"
  exit 1
fi
echo "abi_version: ok — CMakeLists.txt and version.h agree on $proj (SOVERSION $sover)"
