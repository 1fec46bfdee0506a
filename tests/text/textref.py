# SPDX-License-Identifier: MIT
"""strop tests — shared pieces of the tokenizer reference tests (tests/text/check_*.py): the
fortunes text they run on, running `strop tokenize`, comparing id lines, skipping (exit 77, CTest's
SKIP_RETURN_CODE) when a reference tool or the data is not installed."""
import argparse
import glob
import os
import subprocess
import sys

FORTUNES = "/usr/share/games/fortunes"
LANGS = ("", "de", "es", "it")  # English, German, Spanish, Italian


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


def args(extra=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--strop", required=True, help="the strop tool")
    ap.add_argument("--src", required=True, help="the source tree")
    ap.add_argument("--work", required=True, help="a scratch folder in the build tree")
    ap.add_argument("--lib", help="libstrop.so, for the Python bindings")
    ap.add_argument("--sanitized", action="store_true", help="the build runs under sanitizers")
    if extra:
        extra(ap)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    return a


def fortune_lines(per_language, langs=LANGS):
    """Up to per_language lines of each collection, in file order: valid UTF-8, non-empty, not
    the '%' separators. Files are read whole; the .dat indexes and .u8 links are skipped."""
    if not os.path.isdir(FORTUNES):
        skip(f"{FORTUNES} is missing (Debian packages fortunes fortunes-de fortunes-es fortunes-it)")
    out = []
    for lang in langs:
        d = os.path.join(FORTUNES, lang)
        if not os.path.isdir(d):
            skip(f"{d} is missing (install fortunes-{lang})")
        got = []
        for f in sorted(glob.glob(os.path.join(d, "*"))):
            if f.endswith((".dat", ".u8")) or os.path.islink(f) or not os.path.isfile(f):
                continue
            for raw in open(f, "rb").read().split(b"\n"):
                try:
                    s = raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if s.strip() in ("", "%") or "\r" in s:
                    continue
                got.append(s)
        out.extend(got[:per_language])
    return out


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    return path


def read_lines(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(f"command failed ({r.returncode}): {' '.join(cmd)}\n")
        sys.stderr.write(r.stderr.decode("utf-8", "replace")[-3000:])
        sys.exit(1)
    return r.stdout


def strop_tokenize(strop, tokenizer, input_path, out_path, *flags):
    with open(out_path, "wb") as f:
        f.write(run([strop, "tokenize", *flags, tokenizer, input_path]))
    return read_lines(out_path)


def compare(what, ref, got, inputs=None):
    """Fails (exit 1) unless the two lists of lines are equal; prints the first differences."""
    if len(ref) != len(got):
        print(f"FAIL: {what}: {len(ref)} reference lines, {len(got)} from strop")
        sys.exit(1)
    bad = [i for i in range(len(ref)) if ref[i] != got[i]]
    for i in bad[:5]:
        print(f"FAIL: {what}: line {i + 1}:")
        if inputs:
            print(f"  input:     {inputs[i]!r}")
        print(f"  reference: {ref[i]}")
        print(f"  strop:     {got[i]}")
    if bad:
        print(f"FAIL: {what}: {len(bad)} of {len(ref)} lines differ")
        sys.exit(1)
    print(f"ok: {what}: {len(ref)} lines identical")
