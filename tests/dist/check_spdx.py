#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tree test — every source file of the tree starts with its licence as an SPDX line:

    /* SPDX-License-Identifier: MIT */         C sources and headers, the linker map
    # SPDX-License-Identifier: MIT             scripts (Python, shell, Make), CMake files,
                                               templates (*.in), pyproject.toml, the abidiff
                                               suppressions

on its first line, or right after a `#!` line (and a Python coding line). Source files are
the tree's files (git's list when it is a checkout) of those kinds; documentation, data,
fixtures and corpora are not sources.

Usage: check_spdx.py SOURCE_DIR [--pending] [--list-missing]
  --pending        while the tree is not yet converted (tools/dev/apply-spdx-and-format does
                   it): report, and exit 77 (skipped) instead of 1 when files lack the line
  --list-missing   print "KIND PATH" for each file without the line (the apply script reads it)
"""
import os
import subprocess
import sys

LICENSE = "MIT"
TAG = "SPDX-License-Identifier: " + LICENSE
LINE = {"c": "/* " + TAG + " */", "hash": "# " + TAG}
C_EXT = (".c", ".h")
HASH_EXT = (".py", ".sh", ".cmake", ".in", ".toml", ".abignore")
HASH_NAMES = ("CMakeLists.txt", "rules")
C_NAMES = ("strop.map",)
# data (fixtures, fuzz corpora), never sources whatever their names say; only the Python
# generators among them are
NOT_SOURCES = ("tests/fixtures/", "tests/fuzz/corpus/")


def tree_files(src):
    try:
        out = subprocess.run(["git", "-C", src, "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, check=True).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(src):
            rel = os.path.relpath(d, src)
            dirs[:] = [x for x in dirs if not (rel == "." and (x.startswith("build") or x == ".git"))]
            files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    return sorted(f for f in files if os.path.isfile(os.path.join(src, f)))


def kind(src, path):
    """'c', 'hash' or None (not a source file)."""
    name = os.path.basename(path)
    if path.startswith(NOT_SOURCES) and not name.endswith(".py"):
        return None
    if name.endswith(C_EXT) or name in C_NAMES:
        return "c"
    if name.endswith(HASH_EXT) or name in HASH_NAMES:
        return "hash"
    if "." not in name:  # a script without extension: its #! line says
        try:
            with open(os.path.join(src, path), "rb") as f:
                if f.read(2) == b"#!":
                    return "hash"
        except OSError:
            pass
    return None


def has_line(src, path):
    with open(os.path.join(src, path), encoding="utf-8", errors="replace") as f:
        head = [f.readline() for _ in range(3)]
    return any(TAG in line for line in head)


def missing(src):
    return [(k, p) for p in tree_files(src) for k in [kind(src, p)] if k and not has_line(src, p)]


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__)
        return 2
    src = os.path.abspath(args[0])
    lack = missing(src)
    if "--list-missing" in argv:
        for k, p in lack:
            print(k, p)
        return 0
    total = sum(1 for p in tree_files(src) if kind(src, p))
    if not lack:
        print(f"spdx: ok — all {total} source files carry '{TAG}'")
        return 0
    for k, p in lack[:20]:
        print(f"  no SPDX line: {p}")
    if len(lack) > 20:
        print(f"  ... and {len(lack) - 20} more")
    if "--pending" in argv:
        print(f"spdx: pending — {len(lack)} of {total} source files lack '{TAG}'; "
              "tools/dev/apply-spdx-and-format adds it (and turns this check on)")
        return 77
    print(f"FAIL: {len(lack)} of {total} source files lack the line '{LINE['c']}' or "
          f"'{LINE['hash']}' at their top (tools/dev/apply-spdx-and-format adds it)")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
