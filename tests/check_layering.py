#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop — the include layering, checked: every #include "..." in lib/, tools/ and bindings'
C files must point down (or sideways within a level) the architecture of DESIGN.md:

    core <- ops, text <- layers <- graph <- io, surgery, data, optim, train, tune, pretrained
         <- recipe <- tools, bindings (public headers only)

A public header counts at the level of the module it declares (strop/train.h is train's), so
ops including strop/train.h is as wrong as ops including train/trainer.h. Prints every
offending line as file:line and exits 1; exits 0 with a one-line summary otherwise.
Usage: check_layering.py [SOURCE_DIR]"""
import os
import re
import sys

LEVEL = {
    "core": 0,
    "ops": 1, "text": 1, "dist": 1,
    "layers": 2,
    "graph": 3,
    "io": 4, "surgery": 4, "data": 4, "optim": 4, "train": 4, "tune": 4, "pretrained": 4,
    "generate": 4,
    "recipe": 5,
    "tools": 6, "bindings": 6,
}
# public headers -> the module whose API they declare
PUBLIC = {
    "common": "core", "error": "core", "runtime": "core", "tensor": "core", "version": "core",
    "model": "graph", "io": "io", "surgery": "surgery", "data": "data", "optim": "optim",
    "train": "train", "tune": "tune", "recipe": "recipe", "strop": "recipe", "text": "text",
    "pretrained": "pretrained", "dist": "dist", "generate": "generate",
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def module_of(path):
    parts = path.split(os.sep)
    if parts[0] == "lib" and len(parts) > 2:
        return parts[1]
    return parts[0]  # tools, bindings


def target_of(inc):
    """(module, is_public) of an include, or None for the tree-local ones (harness.h)."""
    head, _, rest = inc.partition("/")
    if head == "strop" and rest:
        name = os.path.splitext(rest)[0]
        return PUBLIC.get(name, "?public:" + name), True
    if rest and head in LEVEL:
        return head, False
    return None


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    os.chdir(root)
    bad, seen = [], 0
    for top in ("lib", "tools", "bindings"):
        for dirpath, _, files in os.walk(top):
            for f in sorted(files):
                if not f.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, f)
                mod = module_of(path)
                if mod not in LEVEL:
                    bad.append(f"{path}: module '{mod}' has no level in tests/check_layering.py")
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    for no, line in enumerate(fh, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        t = target_of(m.group(1))
                        if t is None:
                            continue
                        seen += 1
                        tmod, public = t
                        if tmod not in LEVEL:
                            bad.append(f"{path}:{no}: includes unknown module header \"{m.group(1)}\"")
                        elif LEVEL[mod] >= 6 and not public:
                            bad.append(f"{path}:{no}: {mod} uses only the public headers, not \"{m.group(1)}\"")
                        elif LEVEL[tmod] > LEVEL[mod]:
                            bad.append(f"{path}:{no}: {mod} (level {LEVEL[mod]}) includes \"{m.group(1)}\" "
                                       f"of {tmod} (level {LEVEL[tmod]}): an include pointing up")
                        elif LEVEL[tmod] == LEVEL[mod] and tmod != mod and LEVEL[mod] < 4:
                            bad.append(f"{path}:{no}: {mod} includes \"{m.group(1)}\" of {tmod}, "
                                       "a module of the same level that it must not depend on")
    for b in bad:
        print(b)
    if bad:
        print(f"check_layering: {len(bad)} include(s) point up the layering")
        return 1
    print(f"check_layering: {seen} includes checked, all point down the layering")
    return 0


if __name__ == "__main__":
    sys.exit(main())
