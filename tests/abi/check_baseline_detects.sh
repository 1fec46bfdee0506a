#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop ABI test — the baseline check (tools/abi/update-baseline --check, CTest abi_baseline)
# catches what it must, shown on a scratch copy of the tree:
#   1. additions — a new public function (declared, defined, listed in the map's newest
#      node), a new enumerator and a member appended to a size-first struct — fail the check
#      as additions, not as incompatible changes, until tools/abi/update-baseline has
#      rewritten the baseline and the symbols file, after which it passes;
#   2. a changed public signature (strop_tensor_fill's float value becomes a double) fails it
#      as incompatible, and update-baseline refuses to write a baseline over it.
# The library alone is built, as Debug (its ABI does not depend on optimisation), twice.
# Usage: check_baseline_detects.sh SOURCE_DIR CMAKE C_COMPILER. Exit 0 pass, 1 fail, 77 skip.
set -euo pipefail
src=$1 cmake=$2 cc=$3
jobs=${JOBS:-2}
for t in abidw abidiff; do
  command -v "$t" >/dev/null || { echo "skipped: $t is not installed (abigail-tools)"; exit 77; }
done
tmp=$(mktemp -d /tmp/strop_abi_detect_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
s=$tmp/strop
mkdir -p "$s"
(cd "$src" && tar cf - CMakeLists.txt cmake include lib pkgconfig docs/man abi tools/abi \
  debian/libstrop0.symbols) | (cd "$s" && tar xf -)
build() {
  "$cmake" -S "$s" -B "$s/build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER="$cc" \
    -DSTROP_BUILD_TESTS=OFF -DSTROP_BUILD_TOOLS=OFF -DSTROP_BUILD_EXAMPLES=OFF \
    -DSTROP_BUILD_BENCH=OFF >"$tmp/build.log" 2>&1 &&
    "$cmake" --build "$s/build" -j"$jobs" --target strop >>"$tmp/build.log" 2>&1 ||
    { tail -n 30 "$tmp/build.log"; fail "the scratch library does not build"; }
}
check() { # the check as CTest runs it; its output in $tmp/check.log, its exit code returned
  local rc=0
  python3 "$s/tools/abi/update-baseline" --check --source "$s" "$s/build" >"$tmp/check.log" 2>&1 || rc=$?
  return "$rc"
}
# edit SED_EXPR FILE...: the edit must change one of the files at least (else the test no
# longer tests anything; a declaration may move between public headers, so several are given)
edit() {
  local expr=$1 changed=0 f
  shift
  for f in "$@"; do
    cp "$f" "$tmp/before"
    sed -i "$expr" "$f"
    cmp -s "$f" "$tmp/before" || changed=1
  done
  [ "$changed" = 1 ] || fail "the test's edit '$expr' no longer applies to $*"
}

# ---- 1. additions: a function, an enumerator, a member appended to a size-first struct ----
edit 's/^STROP_END_DECLS/STROP_API int strop_abi_probe(void); \/**< test only @since 0.2 *\/\n\nSTROP_END_DECLS/' \
  "$s/include/strop/version.h"
edit 's/^\(  STROP_E_CANCELLED = -12\)/\1, STROP_E_ABI_PROBE = -99/' "$s"/include/strop/*.h
edit 's/^} strop_csv_options;/  int64_t abi_probe_member;\n} strop_csv_options;/' "$s"/include/strop/*.h
printf '\nint strop_abi_probe(void) { return 1; }\n' >>"$s/lib/core/runtime.c"
# (into the newest node's global list: after its `global:` line, before any `local:`)
node=$(grep -n '^} *STROP_[0-9.]* *;' "$s/lib/strop.map" | tail -n1 | cut -d: -f1)
[ -n "$node" ] || fail "lib/strop.map has no node that inherits another"
last=$(head -n "$node" "$s/lib/strop.map" | grep -n '^ *global:' | tail -n1 | cut -d: -f1)
[ -n "$last" ] || fail "the newest node of lib/strop.map has no global: list"
sed -i "${last}a\\    strop_abi_probe;" "$s/lib/strop.map"
build
rc=0; check || rc=$?
cat "$tmp/check.log"
[ "$rc" -eq 1 ] || fail "an added function: the check exited $rc, expected 1"
grep -q "adds to the ABI .*(1 function(s)" "$tmp/check.log" || fail "the additions were not reported as such"
for what in strop_abi_probe STROP_E_ABI_PROBE abi_probe_member; do
  grep -q "$what" "$tmp/check.log" || fail "the report does not name $what"
done
! grep -q "incompatible" "$tmp/check.log" || fail "an addition was judged incompatible"
grep -q "strop_abi_probe@STROP_" "$tmp/check.log" || fail "the stale symbols file was not reported"
echo "ok: an addition fails the check until the baseline is updated"
python3 "$s/tools/abi/update-baseline" --source "$s" "$s/build" || fail "update-baseline refused an addition"
grep -q "strop_abi_probe" "$s/abi/libstrop.so.0.abi" || fail "the new baseline lacks the addition"
grep -q "^ strop_abi_probe@STROP_" "$s/debian/libstrop0.symbols" || fail "the new symbols file lacks it"
check || { cat "$tmp/check.log"; fail "the check fails after update-baseline"; }
echo "ok: with the baseline and symbols file updated, the check passes"

# ---- 2. a changed signature ----
edit 's/\(strop_tensor_fill(strop_tensor \*t, \)float value)/\1double value)/' "$s"/include/strop/*.h
edit 's/\(strop_tensor_fill(strop_tensor \*t, \)float value)/\1double value)/' "$s/lib/core/tensor.c"
build
rc=0; check || rc=$?
cat "$tmp/check.log"
[ "$rc" -eq 1 ] || fail "a changed signature: the check exited $rc, expected 1"
grep -q "incompatible ABI change" "$tmp/check.log" || fail "the change was not judged incompatible"
grep -q "strop_tensor_fill" "$tmp/check.log" || fail "the report does not name strop_tensor_fill"
cp "$s/abi/libstrop.so.0.abi" "$tmp/kept.abi"
rc=0; python3 "$s/tools/abi/update-baseline" --source "$s" "$s/build" >"$tmp/update.log" 2>&1 || rc=$?
cat "$tmp/update.log"
[ "$rc" -eq 1 ] && grep -q "refused" "$tmp/update.log" ||
  fail "update-baseline wrote a baseline over an incompatible change (exit $rc)"
cmp -s "$s/abi/libstrop.so.0.abi" "$tmp/kept.abi" || fail "the refused update changed the baseline"
echo "abi_baseline_detects: ok — an addition fails until the baseline is updated; a changed signature fails and cannot be written into the baseline"
