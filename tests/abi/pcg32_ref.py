#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop tests — an independent PCG32 (O'Neill's pcg32, XSH-RR 64/32) written from the
published algorithm, used to check that strop's generator gives the documented stream.

Usage:
  pcg32_ref.py                 print the first values for seed 42 (to pin new constants)
  pcg32_ref.py --check-c FILE  compare with the STROP_PCG32_SEED42 constants in a C file
  pcg32_ref.py --check-prog P  run program P (tests/abi/rng_dump.c) and compare its output

Exit status 0 when everything agrees, 1 otherwise.
"""
import math
import re
import subprocess
import sys

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
MULT = 6364136223846793005


class Pcg32:
    """pcg32_srandom_r / pcg32_random_r of the PCG reference implementation."""

    def __init__(self, seed, stream=0):
        self.state = 0
        self.inc = ((stream << 1) | 1) & MASK64
        self.next_u32()
        self.state = (self.state + seed) & MASK64
        self.next_u32()

    def next_u32(self):
        old = self.state
        self.state = (old * MULT + self.inc) & MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & MASK32
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & MASK32

    def uniform(self):
        """[0, 1) from the top 24 bits: exactly representable as a float32."""
        return (self.next_u32() >> 8) / 16777216.0

    def unit_open0(self):
        hi = self.next_u32() >> 5
        lo = self.next_u32() >> 6
        return (float(hi * 67108864 + lo) + 1.0) / 9007199254740992.0

    def normal(self):
        u1 = self.unit_open0()
        u2 = self.unit_open0()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)

    def below(self, n):
        """Lemire's nearly-divisionless unbiased bounded integer, for n <= 2**32."""
        if n <= 1:
            return 0
        m = self.next_u32() * n
        low = m & MASK32
        if low < n:
            t = ((-n) & MASK32) % n
            while low < t:
                m = self.next_u32() * n
                low = m & MASK32
        return m >> 32

    def permutation(self, n):
        out = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out


def reference(seed, count):
    g = Pcg32(seed)
    return [g.next_u32() for _ in range(count)]


# Seeds the dump program prints, as (seed, how many u32).
SEEDS = [(42, 8), (0, 4), (1, 4), (MASK64, 4), (0x853C49E6748FEA9B, 4)]


def check_c_constants(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(r"STROP_PCG32_SEED42\[\]\s*=\s*\{([^}]*)\}", text)
    if not m:
        print(f"FAIL: no STROP_PCG32_SEED42[] = {{...}} array in {path}")
        return 1
    got = [int(v.strip().rstrip("uUlL"), 0) for v in m.group(1).split(",") if v.strip()]
    want = reference(42, len(got))
    if got != want:
        print(f"FAIL: constants in {path} disagree with the reference PCG32")
        print("  test: " + ", ".join(f"0x{v:08x}" for v in got))
        print("  ref:  " + ", ".join(f"0x{v:08x}" for v in want))
        return 1
    print(f"ok: {len(got)} pinned seed-42 constants in {path} match the reference")
    return 0


def check_program(prog):
    out = subprocess.run([prog], check=True, capture_output=True, text=True).stdout
    bad = 0
    lines = 0
    for line in out.splitlines():
        f = line.split()
        if not f:
            continue
        lines += 1
        kind, seed = f[0], int(f[1], 0)
        vals = f[2:]
        g = Pcg32(seed)
        if kind == "u32":
            want = [g.next_u32() for _ in vals]
            ok = [int(v, 0) for v in vals] == want
        elif kind == "uniform":  # hex floats: k / 2**24 is exact in float32 and double
            want = [g.uniform() for _ in vals]
            ok = all(float.fromhex(v) == w for v, w in zip(vals, want))
        elif kind == "normal":  # float32 output of a double transform through libm
            want = [g.normal() for _ in vals]
            ok = all(abs(float.fromhex(v) - w) <= 1e-6 * max(1.0, abs(w))
                     for v, w in zip(vals, want))
        elif kind == "perm":
            want = g.permutation(len(vals))
            ok = [int(v) for v in vals] == want
        else:
            print(f"FAIL: unknown line kind {kind!r}")
            bad += 1
            continue
        if not ok:
            bad += 1
            print(f"FAIL: {kind} seed {seed:#x}\n  C:   {' '.join(vals)}\n  ref: {want}")
    if lines == 0:
        print("FAIL: the dump program printed nothing")
        return 1
    if bad == 0:
        print(f"ok: {lines} streams from {prog} match the reference PCG32")
    return 1 if bad else 0


def main(argv):
    rc = 0
    if len(argv) == 1:
        print(", ".join(f"0x{v:08x}u" for v in reference(42, 8)))
        return 0
    i = 1
    while i < len(argv):
        if argv[i] == "--check-c" and i + 1 < len(argv):
            rc |= check_c_constants(argv[i + 1])
            i += 2
        elif argv[i] == "--check-prog" and i + 1 < len(argv):
            rc |= check_program(argv[i + 1])
            i += 2
        else:
            print(__doc__)
            return 2
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
