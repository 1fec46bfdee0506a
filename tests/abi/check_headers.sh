#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop ABI test — every public header compiles on its own, and strop.h compiles, as C99
# -pedantic and as C++11 -pedantic, warnings as errors (libgit2's header test). Headers are
# globbed when the test runs, so a header added later is covered without editing this.
# Usage: check_headers.sh INCLUDE_DIR C_COMPILER CXX_COMPILER
set -euo pipefail
inc=$1 cc=$2 cxx=$3
[ -d "$inc/strop" ] || { echo "FAIL: no $inc/strop"; exit 1; }
command -v "$cc" >/dev/null || { echo "FAIL: C compiler '$cc' not found"; exit 1; }
command -v "$cxx" >/dev/null || { echo "FAIL: C++ compiler '$cxx' not found (install g++)"; exit 1; }

cflags=(-std=c99 -pedantic -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow -I"$inc")
cxxflags=(-std=c++11 -pedantic -Wall -Wextra -Werror -Wshadow -I"$inc")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 n=0

compile() { # name source-text
  local name=$1 text=$2
  printf '%s\n' "$text" >"$tmp/$name.c"
  printf '%s\n' "$text" >"$tmp/$name.cpp"
  if ! "$cc" "${cflags[@]}" -c "$tmp/$name.c" -o "$tmp/$name.c.o" 2>"$tmp/err"; then
    echo "FAIL: $name as C99:"; sed 's/^/    /' "$tmp/err"; fail=1
  fi
  if ! "$cxx" "${cxxflags[@]}" -x c++ -c "$tmp/$name.cpp" -o "$tmp/$name.cpp.o" 2>"$tmp/err"; then
    echo "FAIL: $name as C++11:"; sed 's/^/    /' "$tmp/err"; fail=1
  fi
  n=$((n + 1))
}

headers=()
for h in "$inc"/strop/*.h; do
  b=$(basename "$h")
  headers+=("$b")
  # alone and included twice (include guard); the function keeps the unit non-empty
  compile "alone_${b%.h}" "#include <strop/$b>
#include <strop/$b>
int strop_header_test_$(echo "${b%.h}" | tr -c 'A-Za-z0-9_\n' _)(void);
int strop_header_test_$(echo "${b%.h}" | tr -c 'A-Za-z0-9_\n' _)(void) { return 0; }"
done

# the umbrella, and every header after it (nothing clashes)
all=""
for b in "${headers[@]}"; do all="$all#include <strop/$b>
"; done
compile umbrella "#include <strop/strop.h>
$all
int main(void) { return STROP_OK + (int)sizeof(strop_tensor *) * 0; }"

# strop.h brings in every public header (directly or through another): a module header it
# misses is a user's surprise. The compiler's dependency list says what it really includes.
printf '#include <strop/strop.h>\n' >"$tmp/deps.c"
if ! "$cc" -I"$inc" -M "$tmp/deps.c" >"$tmp/deps.mk" 2>"$tmp/err"; then
  echo "FAIL: cannot list what strop.h includes:"; sed 's/^/    /' "$tmp/err"; fail=1
fi
tr ' \\' '\n\n' <"$tmp/deps.mk" | sed -n 's:.*/strop/\([^/]*\.h\)$:\1:p' | sort -u >"$tmp/deps.txt"
for b in "${headers[@]}"; do
  case "$b" in strop.h) continue ;; esac
  grep -qx "$b" "$tmp/deps.txt" || { echo "FAIL: strop.h does not include $b"; fail=1; }
done

# STROP_DEPRECATED: a call to a deprecated function warns (an error under -Werror) in C and
# C++, and STROP_NO_DEPRECATION_WARNINGS silences it, as common.h promises.
printf '%s\n' '#include <strop/strop.h>' \
  'int strop_header_test_deprecated(const strop_model *m, char *buf, size_t cap);' \
  'int strop_header_test_deprecated(const strop_model *m, char *buf, size_t cap) {' \
  '  return (int)strop_model_node_info(m, 0, 0, buf, cap);' '}' >"$tmp/deprecated.c"
cp "$tmp/deprecated.c" "$tmp/deprecated.cpp"
for lang in c cpp; do
  if [ "$lang" = c ]; then comp=("$cc" "${cflags[@]}"); else comp=("$cxx" "${cxxflags[@]}" -x c++); fi
  if "${comp[@]}" -c "$tmp/deprecated.$lang" -o "$tmp/deprecated.o" 2>"$tmp/err"; then
    echo "FAIL: calling strop_model_node_info() ($lang) does not warn: STROP_DEPRECATED is missing"
    fail=1
  elif ! grep -q "deprecated" "$tmp/err"; then
    echo "FAIL: calling strop_model_node_info() ($lang) fails, but not for being deprecated:"
    sed 's/^/    /' "$tmp/err"; fail=1
  fi
  if ! "${comp[@]}" -DSTROP_NO_DEPRECATION_WARNINGS -c "$tmp/deprecated.$lang" \
      -o "$tmp/deprecated.o" 2>"$tmp/err"; then
    echo "FAIL: STROP_NO_DEPRECATION_WARNINGS does not silence the deprecation ($lang):"
    sed 's/^/    /' "$tmp/err"; fail=1
  fi
  n=$((n + 2))
done

if [ "$fail" -ne 0 ]; then
  echo "abi_headers: FAILED"
  exit 1
fi
echo "abi_headers: ok — ${#headers[@]} headers (${headers[*]}), $n translation units, each as C99 and C++11 with -pedantic -Werror"
