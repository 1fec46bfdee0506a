#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop distribution test — a reproducible build: two builds of the same tree, copied into two
# folders of different names and depths (one built in a folder beside the copy, one in a
# build/ inside it), give bit-identical libstrop.so.0.x.y and libstrop.a. Only the library is
# built (no tests, tool, examples or benchmarks), RelWithDebInfo, so the debug info — where
# absolute paths hide — is in what is compared.
# Usage: check_reproducible.sh SOURCE_DIR CMAKE C_COMPILER [CMAKE_ARGS...]. Exit 0 same, 1 not.
# (-DSTROP_REPRODUCIBLE=OFF as an argument shows what the option does: the test then fails.)
set -euo pipefail
src=$1 cmake=$2 cc=$3
shift 3
jobs=${JOBS:-2}
tmp=$(mktemp -d /tmp/strop_repro_XXXXXX)
trap 'rm -rf "$tmp"' EXIT

copy() { # the files a library build reads
  mkdir -p "$2"
  (cd "$1" && tar cf - CMakeLists.txt cmake include lib pkgconfig docs/man) | (cd "$2" && tar xf -)
}
build() { # SOURCE BUILD [CMAKE_ARGS...]
  local s=$1 b=$2
  shift 2
  "$cmake" -S "$s" -B "$b" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
    -DSTROP_BUILD_TESTS=OFF -DSTROP_BUILD_TOOLS=OFF -DSTROP_BUILD_EXAMPLES=OFF \
    -DSTROP_BUILD_BENCH=OFF "$@" >"$b.log" 2>&1 &&
    "$cmake" --build "$b" -j"$jobs" --target strop strop_static >>"$b.log" 2>&1 ||
    { tail -n 30 "$b.log"; echo "FAIL: the build in $b failed"; exit 1; }
}
a_src=$tmp/one/strop a_build=$tmp/one/build-elsewhere
b_src=$tmp/two/a/much/longer/path/strop-0 b_build=$b_src/build
copy "$src" "$a_src"
copy "$src" "$b_src"
t0=$SECONDS
build "$a_src" "$a_build" "$@"
build "$b_src" "$b_build" "$@"

fail=0
so=$(cd "$a_build" && ls libstrop.so.0.*.*)
for f in "$so" libstrop.a; do
  [ -f "$a_build/$f" ] && [ -f "$b_build/$f" ] || { echo "FAIL: $f was not built"; fail=1; continue; }
  if cmp -s "$a_build/$f" "$b_build/$f"; then
    echo "same: $f ($(stat -c %s "$a_build/$f") bytes)"
  else
    echo "FAIL: $f differs between the two builds"
    fail=1
    command -v diffoscope >/dev/null && diffoscope "$a_build/$f" "$b_build/$f" | head -n 60 || true
  fi
  # no folder of either build may appear in what it made
  if grep -qaF "$tmp" "$a_build/$f" "$b_build/$f"; then
    echo "FAIL: $f holds the path of its build:"
    strings -a "$a_build/$f" "$b_build/$f" | grep -F "$tmp" | sort -u | head -n 5
    fail=1
  fi
done
[ "$fail" -eq 0 ] || exit 1
echo "reproducible: ok — $so and libstrop.a are bit-identical from $a_src and $b_src ($((SECONDS - t0)) s)"
