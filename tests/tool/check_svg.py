#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tool tests: checks the SVG plots strop writes.

  check_svg.py FILE.svg... [--legend TEXT]... [--old FILE.svg]...

Every file must be well-formed XML (parsed with xml.etree) and, when rsvg-convert is
installed, render. A file given with --old (a plot committed from an earlier version) is only
checked that far. In the others, which must have plot frames (rect class="frame"):
  - each axis's tick labels (class tick-y / tick-x, grouped by axis) are round: equally
    spaced by 1, 2 or 5 times a power of ten, or, on a log axis (labels like 2e-4), each a
    1, 2 or 5 times a power of ten;
  - stage labels (class stage-label) sit above the plot frames, where no curve is drawn;
  - a polyline's points are numbers only;
  - every --legend TEXT is the text of a legend entry (class legend)."""
import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def number(label):
    return float(label.strip().rstrip("%"))


def round_step(step):
    if step <= 0:
        return False
    m = step / 10 ** math.floor(math.log10(step) + 1e-9)
    return any(abs(m - k) < 1e-6 for k in (1, 2, 5, 10))


def check_axis(path, kind, pos, labels):
    if len(labels) < 2:
        return
    if any("e" in l for l in labels):  # log axis: each tick is 1, 2 or 5 x 10^k
        for l in labels:
            m = re.fullmatch(r"([125])e(-?\d+)", l)
            if not m:
                fail(f"{path}: {kind} axis at {pos}: log tick '{l}' is not 1, 2 or 5 x 10^k")
        return
    vals = [number(l) for l in labels]
    steps = [b - a for a, b in zip(vals, vals[1:])]
    if kind == "tick-x" and all(abs(v - round(v)) < 1e-9 for v in vals) and vals[0] == 1:
        steps = steps[1:]  # epoch axes start at epoch 1, then multiples of the step
    if not steps:
        return
    s0 = steps[0]
    if not round_step(abs(s0)) or any(abs(s - s0) > 1e-6 * max(1.0, abs(s0)) for s in steps):
        fail(f"{path}: {kind} axis at {pos}: ticks {labels} are not a round 1-2-5 progression")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--legend", action="append", default=[])
    ap.add_argument("--old", action="append", default=[])
    a = ap.parse_intermixed_args()
    for path in a.files + a.old:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as e:
            fail(f"{path} is not well-formed XML: {e}")
        if root.tag != NS + "svg":
            fail(f"{path}: the root element is {root.tag}, not svg")
        rsvg = shutil.which("rsvg-convert")
        if rsvg:
            with tempfile.NamedTemporaryFile(suffix=".png") as png:
                r = subprocess.run([rsvg, "-o", png.name, path], capture_output=True, text=True)
                if r.returncode != 0:
                    fail(f"{path}: rsvg-convert cannot render it: {r.stderr.strip()}")
        for pl in root.iter(NS + "polyline"):
            if not re.fullmatch(r"[-0-9., ]*", pl.get("points", "")):
                fail(f"{path}: a polyline's points hold more than numbers: {pl.get('points')[:80]}")
        frames = [e for e in root.iter(NS + "rect") if e.get("class") == "frame"]
        if path in a.old:
            print(f"ok: {path}: well-formed")
            continue
        if not frames:
            fail(f"{path}: no plot frame (rect class=\"frame\")")
        texts = list(root.iter(NS + "text"))
        for kind, coord in (("tick-y", "x"), ("tick-x", "y")):
            axes = {}
            for t in texts:
                if t.get("class") == kind:
                    # group by the axis: y ticks share x, x ticks share y and a panel
                    key = round(float(t.get(coord)))
                    if kind == "tick-x":
                        fx = [f for f in frames if float(f.get("x")) - 20 <= float(t.get("x"))
                              <= float(f.get("x")) + float(f.get("width")) + 20]
                        key = (key, fx[0].get("x") if fx else None)
                    axes.setdefault(key, []).append(t.text)
            if not axes:
                fail(f"{path}: no {kind} labels")
            for pos, labels in axes.items():
                check_axis(path, kind, pos, labels)
        top = min(float(f.get("y")) for f in frames)
        for t in texts:
            if t.get("class") == "stage-label" and float(t.get("y")) > top:
                fail(f"{path}: stage label '{t.text}' is inside the plot, where curves run")
        legend = [t.text for g in root.iter(NS + "g") if g.get("class") == "legend"
                  for t in g.iter(NS + "text")]
        for want in a.legend:
            if want not in legend:
                fail(f"{path}: the legend lacks '{want}' (it has {legend})")
        print(f"ok: {path}: well-formed, round ticks, stage labels clear, legend {legend}")


if __name__ == "__main__":
    main()
