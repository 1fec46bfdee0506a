#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop — docs that are generated stay generated: every block of docs/*.md (and README.md)
between
    <!-- BEGIN GENERATED: strop ARGS... -->
    <!-- END GENERATED -->
must equal what the built `strop ARGS...` prints now. A mismatch prints a diff and the command
that rewrites the blocks:  tests/check_docs_generated.py BUILD_DIR --update
Usage: check_docs_generated.py BUILD_DIR [--update] [SOURCE_DIR]"""
import difflib
import glob
import os
import re
import shlex
import subprocess
import sys

BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (.+?) -->\n)(.*?)(<!-- END GENERATED -->)", re.S)


def main():
    args = [a for a in sys.argv[1:] if a != "--update"]
    update = "--update" in sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    build = os.path.abspath(args[0])
    src = os.path.abspath(args[1] if len(args) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    tool = os.path.join(build, "tools", "strop", "strop")
    files = sorted(glob.glob(os.path.join(src, "docs", "*.md"))) + [os.path.join(src, "README.md")]
    stale, blocks = [], 0
    for path in files:
        text = open(path, encoding="utf-8").read()

        def render(m):
            nonlocal blocks
            blocks += 1
            argv = shlex.split(m.group(2))
            if not argv or argv[0] != "strop":
                raise SystemExit(f"{path}: a generated block must name a strop command, got {m.group(2)!r}")
            out = subprocess.run([tool] + argv[1:], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{path}: `{m.group(2)}` failed ({out.returncode}): {out.stderr}")
            if out.stdout != m.group(3):
                rel = os.path.relpath(path, src)
                diff = difflib.unified_diff(m.group(3).splitlines(True), out.stdout.splitlines(True),
                                            f"{rel} (committed)", f"{m.group(2)} (now)", n=1)
                stale.append("".join(diff))
            return m.group(1) + out.stdout + m.group(4)

        new = BLOCK.sub(render, text)
        if update and new != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"updated {os.path.relpath(path, src)}")
    if stale and not update:
        for d in stale:
            sys.stdout.write(d)
        print(f"check_docs_generated: {len(stale)} generated block(s) are out of date; run\n"
              f"  tests/check_docs_generated.py {os.path.relpath(build, src)} --update")
        return 1
    print(f"check_docs_generated: {blocks} generated block(s) checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
