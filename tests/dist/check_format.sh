#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop tree test — every C source and header of the tree is formatted as .clang-format says:
# clang-format --dry-run --Werror (Debian's clang-format; another major version may format a
# few constructs differently). Skipped (77) when clang-format is not installed.
# Usage: check_format.sh SOURCE_DIR [--pending] [--list]
#   --pending  while the tree is not yet formatted (tools/dev/apply-spdx-and-format does it):
#              report, and exit 77 (skipped) instead of 1 when files differ
#   --list     print the files the check covers (the apply script formats these)
set -euo pipefail
src=$(cd "$1" && pwd)
shift
pending=0 list=0
for a in "$@"; do
  case $a in
    --pending) pending=1 ;;
    --list) list=1 ;;
    *) echo "check_format.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' |
    while read -r f; do [ -f "$f" ] && echo "$f"; done)
else
  mapfile -t files < <(find . -path './build*' -prune -o -path ./.git -prune -o \
    -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's#^\./##' | sort)
fi
if [ "$list" = 1 ]; then
  printf '%s\n' "${files[@]}"
  exit 0
fi
cf=${CLANG_FORMAT:-clang-format}
command -v "$cf" >/dev/null || { echo "skipped: clang-format is not installed (bash .ci/deps --full)"; exit 77; }
[ -f .clang-format ] || { echo "FAIL: no .clang-format in $src"; exit 1; }
if "$cf" --dry-run --Werror --style=file "${files[@]}" >/dev/null 2>&1; then
  echo "format: ok — ${#files[@]} C files formatted as .clang-format says ($("$cf" --version))"
  exit 0
fi
# which files differ, and by how many lines
bad=() lines=0
for f in "${files[@]}"; do
  n=$("$cf" --style=file "$f" | diff "$f" - | grep -c '^[<>]' || true)
  [ "$n" -eq 0 ] || { bad+=("$f"); lines=$((lines + n)); }
done
printf '  not formatted: %s\n' "${bad[@]:0:20}"
[ "${#bad[@]}" -le 20 ] || echo "  ... and $((${#bad[@]} - 20)) more"
if [ "$pending" = 1 ]; then
  echo "format: pending — ${#bad[@]} of ${#files[@]} C files differ from .clang-format ($lines lines); tools/dev/apply-spdx-and-format formats them (and turns this check on)"
  exit 77
fi
echo "FAIL: ${#bad[@]} of ${#files[@]} C files differ from .clang-format by $lines lines: clang-format -i FILE (or run tools/dev/apply-spdx-and-format)"
exit 1
