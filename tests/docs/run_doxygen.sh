#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# strop docs test — the public API reference: Doxygen reads include/strop/*.h with
# docs/Doxyfile, where every warning is an error (an undocumented declaration, parameter or
# return value, a broken command or link), then tests/docs/check_apidoc.py checks its XML for
# the rules Doxygen does not know (directions, STROP_OK, @since against lib/strop.map,
# deprecation). The HTML lands in OUTPUT_DIR/html. Exits 77 (skipped) without doxygen.
# Usage: run_doxygen.sh SOURCE_DIR OUTPUT_DIR [VERSION] [DOXYGEN] [PYTHON3]
set -euo pipefail
src=$1 out=$2 version=${3:-} doxygen=${4:-doxygen} python=${5:-python3}
if ! command -v "$doxygen" >/dev/null 2>&1; then
  echo "SKIP: doxygen is not installed (bash .ci/deps --full installs it)"
  exit 77
fi
mkdir -p "$out"
rm -rf "$out/html" "$out/xml"
# The committed Doxyfile, with the output moved here and the XML the rules read; later
# assignments override earlier ones. Doxygen runs from the top of the tree, as the file says.
{
  cat "$src/docs/Doxyfile"
  echo "OUTPUT_DIRECTORY = \"$out\""
  echo "GENERATE_XML = YES"
  echo "XML_PROGRAMLISTING = NO"
  if [ -n "$version" ]; then echo "PROJECT_NUMBER = $version"; fi
} >"$out/Doxyfile"
log="$out/doxygen.log"
rc=0
(cd "$src" && "$doxygen" "$out/Doxyfile") >"$log" 2>&1 || rc=$?
nwarn=$(grep -c -E '(warning|error):' "$log" || true)
if [ "$rc" -ne 0 ] || [ "$nwarn" -ne 0 ]; then
  cat "$log"
  echo "doxygen: FAILED (exit $rc, $nwarn warnings; docs/Doxyfile treats every warning as an error)"
  exit 1
fi
echo "doxygen: $("$doxygen" --version), no warnings; HTML in $out/html"
if command -v "$python" >/dev/null 2>&1; then
  "$python" "$src/tests/docs/check_apidoc.py" "$out/xml" "$src/include/strop" "$src/lib/strop.map"
else
  echo "check_apidoc: skipped (no python3)"
fi
