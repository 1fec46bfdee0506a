#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop ABI test — the exported symbols of libstrop.so are exactly lib/strop.map's `global:`
# entries: each carries the strop_ prefix and a version node, none is missing from the map,
# the map lists nothing the library does not export, and every STROP_API function declared
# in include/strop/*.h is exported (a declaration the map forgot would be hidden).
# Usage: check_symbols.sh LIBSTROP.so lib/strop.map include/strop
set -euo pipefail
lib=$1 map=$2 incdir=$3
fail=0
err() { echo "FAIL: $*"; fail=1; }

[ -f "$lib" ] || { echo "FAIL: no library at $lib"; exit 1; }
[ -f "$map" ] || { echo "FAIL: no version script at $map"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A name may also be exported in an older version (name@NODE, not the default name@@NODE) that
# lib/recipe/abi_compat.c keeps for programs linked against that release; the map lists the default.
# ---- the map: "NODE SYMBOL" for every global entry; comments (/* */ and #) dropped ----
# (block comments may span lines: join the lines with \001, drop them, split again)
tr '\n' '\001' <"$map" | sed -E 's:/\*([^*]|\*+[^*/])*\*+/: :g' | tr '\001' '\n' |
  sed 's/#.*$//' | tr '\n' ' ' |
  sed -E 's/([{};])/\n\1\n/g' |
  awk '
    { gsub(/^[ \t]+|[ \t]+$/, ""); if ($0 == "") next }
    $0 == "{" { node = prev; section = ""; depth++; next }
    $0 == "}" { depth--; section = ""; next }
    $0 == ";" { next }
    depth == 0 { prev = $0; next }
    {
      line = $0
      if (line ~ /^global:/) { section = "global"; sub(/^global:[ \t]*/, "", line) }
      else if (line ~ /^local:/) { section = "local"; sub(/^local:[ \t]*/, "", line) }
      if (line == "") next
      if (section == "global") print node, line
      else if (section == "local") print node, "LOCAL", line
    }
  ' >"$tmp/map.all"
grep -v ' LOCAL ' "$tmp/map.all" >"$tmp/map.txt" || true
awk '{print $1}' "$tmp/map.all" | sort -u >"$tmp/nodes.txt"

if [ ! -s "$tmp/nodes.txt" ]; then
  echo "FAIL: could not parse any version node from $map"
  exit 1
fi
while read -r node sym; do
  case "$sym" in
    *'*'* | *'?'* | *'['*) err "map node $node has a wildcard in global: '$sym' (list names explicitly)" ;;
  esac
done <"$tmp/map.txt"
if ! grep -Eq '^[A-Za-z0-9_.]+ LOCAL \*$' "$tmp/map.all"; then
  err "the map has no 'local: *;' (everything not listed must stay hidden)"
fi
dups=$(awk '{print $2}' "$tmp/map.txt" | sort | uniq -d)
[ -z "$dups" ] || err "symbols listed more than once in the map: $dups"

# ---- public declarations: the name before the first '(' of each STROP_API declaration ----
# (preprocessor lines, with their continuations, go first: they end in no ';')
for h in "$incdir"/*.h; do
  awk '/^[ \t]*#/ || cont { cont = /\\$/; next } { print }' "$h" | tr '\n' ' ' |
    sed -E 's:/\*([^*]|\*+[^*/])*\*+/: :g' | tr ';' '\n' | grep 'STROP_API' |
    sed -E 's/.*STROP_API//; s/^([^(]*[^A-Za-z0-9_(])?([A-Za-z_][A-Za-z0-9_]*)[ ]*\(.*/\2/' |
    awk -v h="$(basename "$h")" 'NF { print h, $1 }' || true
done >"$tmp/decl.txt"

# ---- the library's dynamic symbols, against the map and the declarations ----
nm -D --defined-only "$lib" >"$tmp/nm.txt"
awk -v mapname="$map" -v q="'" '
  FILENAME == ARGV[1] { node[$1] = 1; next }                       # nodes.txt
  FILENAME == ARGV[2] { listed[$2] = $1; nlisted++; next }         # map.txt: NODE SYM
  FILENAME == ARGV[3] { decl[$2] = $1; ndecl++; next }             # decl.txt: HEADER SYM
  {                                                                # nm.txt
    if (NF == 3) { type = $2; name = $3 } else { type = $1; name = $2 }
    if (type == "A" && (name in node)) next     # the version nodes themselves
    base = name; ver = ""; older = 0
    if ((i = index(name, "@@")) > 0) { base = substr(name, 1, i - 1); ver = substr(name, i + 2) }
    else if ((i = index(name, "@")) > 0) { base = substr(name, 1, i - 1); ver = substr(name, i + 1); older = 1 }
    exported[base] = 1; nexp++
    if (ver == "") fail("exported symbol " q base q " (" type ") has no version (is lib/strop.map passed to the linker?)")
    else if (!(ver in node)) fail("exported symbol " q base q " has version " q ver q ", which is not a node of the map")
    if (base ~ /^strop__/) fail("internal symbol " q base q " is exported (strop__ names must stay hidden)")
    else if (base !~ /^strop_/) fail("exported symbol " q base q " (" type ") lacks the strop_ prefix")
    if (!(base in listed)) fail("exported symbol " q base q " is missing from " mapname)
    else if (older) {
      # an older version kept beside the default one (lib/recipe/abi_compat.c): its node must be a
      # node of the map other than the one listing the default version
      if (ver == listed[base]) fail("" q base q " is exported as an older version " ver " of itself, the node the map lists it under")
    }
    else if (ver != "" && listed[base] != ver) fail("" q base q " is exported as " ver " but the map lists it under " listed[base])
  }
  function fail(msg) { print "FAIL: " msg; bad = 1 }
  END {
    for (s in listed) if (!(s in exported))
      fail("map entry " q s q " (node " listed[s] ") is not exported by the library (stale entry, or not implemented)")
    for (s in decl) if (!(s in exported))
      fail(decl[s] " declares STROP_API " s ", but the library does not export it (add it to the map?)")
    printf "%d %d %d\n", nexp, nlisted, ndecl > "/dev/stderr"
    exit bad
  }
' "$tmp/nodes.txt" "$tmp/map.txt" "$tmp/decl.txt" "$tmp/nm.txt" 2>"$tmp/counts" | sort || fail=1
read -r n m ndecl <"$tmp/counts" || { n=0 m=0 ndecl=0; }

# ---- SONAME of the built library ----
soname=$(readelf -d "$lib" | sed -nE 's/.*\(SONAME\).*\[(.*)\].*/\1/p')
[ "$soname" = "libstrop.so.0" ] || err "SONAME is '$soname', expected libstrop.so.0"

if [ "$fail" -ne 0 ]; then
  echo "abi_symbols: FAILED ($n exported, $m in the map, $ndecl declared)"
  exit 1
fi
if [ "$n" -eq 0 ]; then
  echo "FAIL: the library exports nothing"
  exit 1
fi
echo "abi_symbols: ok — $n exported symbols, all strop_*, versioned ($(tr '\n' ' ' <"$tmp/nodes.txt")), equal to the map; $ndecl header declarations exported; SONAME $soname"
