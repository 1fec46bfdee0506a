#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""strop docs test: every fenced code block of README.md, docs/*.md,
bindings/python/README.md and examples/*/README.md is compiled, run, parsed or checked, as a
reader would use it.

  c       a whole program (it has main) is compiled with -Wall -Werror against the build's
          headers, linked against the build's libstrop and run; any other C block must be a
          complete translation unit (functions), compiled and linked into a shared object
          with no undefined symbol.
  sh      the commands it names must exist (programs on PATH, shell builtins, files of the
          tree or of the build) and so must the tree's files it names; a block marked `run`
          is run with bash -e.
  python  run with /usr/bin/python3 and the bindings from the tree.
  yaml    loaded by the library: a model spec (it has `layers:`) with strop_model_load_spec,
          anything else with strop_recipe_load (tests/docs/doc_yaml.c).
  json    parsed.
  text    output, formulas and layouts: not code, nothing to check.

A block is marked by an HTML comment on the line before its fence:
  <!-- doc-test: fragment (why) -->  deliberately a fragment: only the strop_/STROP_ names it
                                     uses are checked against the public headers (a Python
                                     fragment must also parse).
  <!-- doc-test: run -->             a shell block that is run.
  <!-- doc-test: test NAME -->       run by the CTest test NAME (e.g. python_install).
  <!-- doc-test: file PATH -->       the block is the file PATH of the tree, byte for byte, and
                                     is checked as its language says.
  <!-- doc-test: excerpt PATH -->    the block's lines stand in the file PATH of the tree, in
                                     order and contiguous (leading spaces aside): code quoted
                                     from the library, which its own build compiles.
  <!-- doc-test: mpi [FILE] -->      runs in an MPI build only (--mpi: the test docs_blocks_mpi,
                                     tests/run-all's mpi phase): a shell block is run with
                                     bash -e, a C block is compiled with mpicc -Wall -Werror and
                                     saved as FILE in the scratch folder, for a later mpi shell
                                     block of the guide that compiles and runs it as the guide
                                     says. Elsewhere such a block is skipped with the reason
                                     printed, after the check a fragment gets. Run as root, the
                                     blocks get OMPI_ALLOW_RUN_AS_ROOT=1 and
                                     OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (Open MPI refuses root
                                     without them), and on a machine of fewer cores than 2,
                                     OMPI_MCA_rmaps_base_oversubscribe=1; the guide must say so.
Each guide's blocks run in order in a sandbox of its own: a temporary folder that links every
top-level entry of the source tree, with `build` linked to the build under test (and
`build-mpi` too with --mpi), and HOME set to an empty folder (one for the whole run); so the
README's commands run as written without touching the tree or the user's home. `examples/` is
a tree of real folders whose files are links, so a recipe of examples/ that writes its outputs
beside itself writes them in the sandbox. Programs and Python blocks run from there, as the
docs say they are run from the source tree.

In a sanitized build (--sanitize) C blocks are built with the sanitizers and run; Python
blocks and shell blocks that run the build's programs are skipped (those are not built for
it), a shell block of plain commands (a setup step: cp, printf, cat) still runs, and a program
that names a file or folder that a skipped block of its guide names is compiled, not run.

Usage: check_docs.py --src SRC --build BUILD --cc CC --doc-yaml EXE [--sanitize LIST]
                     [--only FILE:LINE] [--run-test NAME [--expect REGEX]]
                     [--mpi --mpicc MPICC] [--verbose]
--only FILE checks the blocks of one guide, in order; --only FILE:LINE one block.
--verbose prints the last lines of what each program and block that runs printed.
--mpi checks only the guides that have an mpi block, every block of them in order, and runs
their mpi blocks.
--run-test NAME runs the shell block marked `test NAME` (the CTest of that name uses it; every
block so marked must be the same text, so the docs give one route), with no package index
reachable (PIP_NO_INDEX=1, as on a machine without network), and --expect checks its output.
Exit 77 (CTest: skipped) in a sanitized build."""
import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^(\s*)```([A-Za-z0-9_+-]*)\s*$")
MARK = re.compile(r"^\s*<!--\s*doc-test:\s*(\S+)\s*(.*?)\s*-->\s*$")
BUILTINS = {"cd", "export", "set", "unset", "echo", "printf", "source", ".", "test", "[", "true",
            "false", "exit", "read", "for", "do", "done", "if", "then", "else", "fi", "while",
            "case", "esac", "wait", "time", "sudo", "env"}
TREE_DIRS = ("examples/", "tests/", "docs/", "bindings/", "tools/", "lib/", "include/",
             ".ci/", "bench/", "cmake/", "pkgconfig/")
MPI_RANKS = 2  # what the guides' mpirun commands start
# Debian's default PATH: the README speaks to a fresh Debian 12, not to this machine's extras.
FRESH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Block:
    def __init__(self, path, line, lang, mark, arg, text):
        self.path, self.line, self.lang, self.mark, self.arg, self.text = (
            path, line, lang, mark, arg, text)

    def where(self, src):
        return f"{os.path.relpath(self.path, src)}:{self.line}"


def blocks_of(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        body = "\n".join(l[len(indent):] if l.startswith(indent) else l
                         for l in lines[i + 1:j]) + "\n"
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mm = MARK.match(lines[k]) if k >= 0 else None
        out.append(Block(path, start + 1, lang, mm.group(1) if mm else None,
                         mm.group(2) if mm else "", body))
        i = j + 1
    return out


class Checker:
    def __init__(self, a):
        self.a = a
        self.src = os.path.realpath(a.src)
        self.build = os.path.realpath(a.build)
        self.tmp = tempfile.mkdtemp(prefix="strop_docs_")
        self.sandboxes = 0
        self.new_sandbox()
        self.home = os.path.join(self.tmp, "home")
        os.mkdir(self.home)
        self.headers = "".join(open(h, encoding="utf-8").read()
                               for h in glob.glob(os.path.join(self.src, "include/strop/*.h")))
        self.san = [f"-fsanitize={a.sanitize}", "-fno-omit-frame-pointer"] if a.sanitize else []
        self.failures, self.passed, self.skipped = [], 0, 0
        self.mpi_saved = {}
        self.san_skipped = set()  # names of the blocks a sanitized build skipped, per guide

    def new_sandbox(self):
        """A fresh scratch tree: each guide starts from the tree as it is, not from what the
        guides before it left (they may make folders of the same name)."""
        self.sandboxes += 1
        self.sandbox = os.path.join(self.tmp, f"tree{self.sandboxes}")
        os.mkdir(self.sandbox)
        for name in os.listdir(self.src):
            if name.startswith(("build", ".git")):
                continue
            if name == "examples":  # folders of links: a recipe's outputs stay in the sandbox
                self.link_farm(os.path.join(self.src, name), os.path.join(self.sandbox, name))
                continue
            os.symlink(os.path.join(self.src, name), os.path.join(self.sandbox, name))
        os.symlink(self.build, os.path.join(self.sandbox, "build"))
        if self.a.mpi:
            os.symlink(self.build, os.path.join(self.sandbox, "build-mpi"))

    @staticmethod
    def link_farm(src, dst):
        for root, dirs, files in os.walk(src):
            dirs[:] = [d for d in dirs if d != "out"]  # a run's outputs left in the tree
            here = os.path.join(dst, os.path.relpath(root, src))
            os.makedirs(here, exist_ok=True)
            for f in files:
                os.symlink(os.path.join(root, f), os.path.join(here, f))

    def env(self):
        e = dict(os.environ, HOME=self.home, PATH=FRESH_PATH)
        for k in ("STROP_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH", "PKG_CONFIG_PATH"):
            e.pop(k, None)
        return e

    def fail(self, b, msg):
        self.failures.append(f"{b.where(self.src)}: {b.lang or 'no language'} block: {msg}")

    def run(self, cmd, b, what, timeout=600, env=None, cwd=None, inp=None):
        try:
            r = subprocess.run(cmd, cwd=cwd or self.sandbox, env=env or self.env(), input=inp,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(b, f"{what}: timed out after {timeout} s")
            return None
        if r.returncode != 0:
            tail = (r.stdout + r.stderr).strip().split("\n")[-25:]
            self.fail(b, f"{what} failed (exit {r.returncode}):\n    " + "\n    ".join(tail))
            return None
        if self.a.verbose:
            for name, text in (("stdout", r.stdout), ("stderr", r.stderr)):
                if text.strip():
                    print(f"-- {b.where(self.src)}: {what}: its {name} ends")
                    print("\n".join("    " + ln for ln in text.strip().split("\n")[-15:]))
        return r

    # ---- names: every strop_/STROP_ identifier must be declared in the public headers ----
    def unknown_names(self, text):
        names = set(re.findall(r"\b(?:strop|STROP)_[A-Za-z0-9_]+\b", text))
        return sorted(n for n in names if not re.search(r"\b%s\b" % re.escape(n), self.headers))

    def check_fragment(self, b):
        if b.lang == "python":  # a Python fragment must at least be Python
            try:
                compile(b.text, b.where(self.src), "exec")
            except SyntaxError as e:
                self.fail(b, f"the Python fragment does not parse: {e}")
                return False
        bad = self.unknown_names(b.text) if b.lang in ("c", "cmake", "") else []
        bad = [n for n in bad if n != "strop_static"]  # the CMake target strop::strop_static
        if bad:
            self.fail(b, "fragment names what the public headers do not declare: " + ", ".join(bad))
            return False
        return True

    # ---- C ----
    def check_c(self, b, n):
        c = os.path.join(self.tmp, f"block{n}.c")
        open(c, "w").write(b.text)
        flags = ["-std=c11", "-Wall", "-Werror", "-I", os.path.join(self.src, "include")]
        link = ["-L", self.build, "-lstrop", "-lm", "-Wl,-rpath," + self.build]
        if re.search(r"\bint\s+main\s*\(", b.text):
            exe = os.path.join(self.tmp, f"block{n}")
            if not self.run([self.a.cc, *flags, *self.san, c, "-o", exe, *link, *self.san], b,
                            "compiling and linking the program"):
                return False
            made = self.reads_what_was_skipped(b) if self.san else None
            if made:
                self.skipped += 1
                print(f"skip: {b.where(self.src)}: compiled, not run: it reads {made}, which a "
                      "block skipped in this sanitized build makes")
                return None
            e = self.env()
            e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            return self.run([exe], b, "running the program", env=e) is not None
        so = os.path.join(self.tmp, f"block{n}.so")
        strict = [] if self.san else ["-Wl,--no-undefined"]
        return self.run([self.a.cc, *flags, *self.san, "-fPIC", "-shared", c, "-o", so, *link,
                         *strict, *self.san], b,
                        "compiling and linking the translation unit (a block that is not a "
                        "whole program must be complete functions, or be marked a fragment)"
                        ) is not None

    # ---- shell ----
    @staticmethod
    def sh_words(text):
        """Each simple command's first word, and every word, of a shell block."""
        text = re.sub(r"\\\n", " ", text)
        firsts, words = [], []
        ops = {"&&", "||", ";", "|", "(", ")", "&", ";;", "$(", "`"}
        for line in text.split("\n"):
            lex = shlex.shlex(line.replace("$(", " $( "), posix=True, punctuation_chars="();&|")
            lex.whitespace_split = True
            lex.commenters = "#"
            try:
                toks = list(lex)
            except ValueError:
                toks = line.split()
            start = True
            for t in toks:
                if t in ops or set(t) <= set("();&|"):
                    start = True
                    continue
                words.append(t)
                if not start:
                    continue
                if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", t) or t in ("sudo", "env", "time",
                                                                       "export", "exec"):
                    continue
                firsts.append(t)
                start = False
        return firsts, words

    def check_sh_names(self, b):
        firsts, words = self.sh_words(b.text)
        bad = []
        for w in firsts:
            if "$" in w or w in BUILTINS:
                continue
            if "/" in w:
                p = os.path.join(self.sandbox, os.path.expanduser(w))
                if not os.path.exists(p):
                    bad.append(f"{w} (no such file in the tree or the build)")
                continue
            if not shutil.which(w, path=FRESH_PATH):
                bad.append(f"{w} (not a program on a Debian PATH)")
        for w in words:
            w = w.rstrip(",.;:")
            if "$" in w or "*" in w or not w.startswith(TREE_DIRS + ("./build/", "build/")):
                continue
            if not os.path.exists(os.path.join(self.sandbox, w)):
                bad.append(f"{w} (no such file in the tree or the build)")
        if bad:
            self.fail(b, "names what does not exist: " + "; ".join(sorted(set(bad))))
            return False
        return True

    # A sanitized build skips the blocks that run the build's programs outside a program of
    # the docs (shell blocks that name the build, Python); a shell block of plain commands (a
    # setup step that copies or writes files) runs, and a later program of the guide that
    # names a file or folder a skipped block names (a quoted string, a word of a shell block)
    # is compiled but not run: what it reads was not made.
    @staticmethod
    def names_of(b):
        if b.lang == "sh":
            words = Checker.sh_words(b.text)[1]
        else:
            words = re.findall(r"\"([^\"\s]+)\"|'([^'\s]+)'", b.text)
            words = [x or y for x, y in words]
        return {w.rstrip("/") for w in words if w.rstrip("/")}

    def skip_in_sanitized(self, b, why):
        self.skipped += 1
        self.san_skipped |= self.names_of(b)
        print(f"skip: {b.where(self.src)}: {why}")

    def reads_what_was_skipped(self, b):
        paths = [w for w in self.names_of(b) if re.search(r"[/.]", w) and  # a file or folder,
                 not re.search(r"[%\\]", w)]                                # not a format
        for w in paths:
            if any(s == w or s.startswith(w + "/") for s in self.san_skipped):
                return w
        return None

    def run_sh(self, b):
        if self.san and re.search(r"\bbuild\b|python|pip|cmake|\bcc\b|pkg-config|\./", b.text):
            self.skip_in_sanitized(b, "shell blocks that run the build's programs run in the "
                                   "normal build only (those programs are not built with the "
                                   "sanitizers)")
            return None
        return self.run(["bash", "-euo", "pipefail", "-c", b.text], b, "running the block",
                        timeout=1200) is not None

    # ---- Python, YAML, JSON ----
    def run_python(self, b, n):
        if self.san:
            self.skip_in_sanitized(b, "Python blocks run in the normal build only")
            return None
        py = os.path.join(self.tmp, f"block{n}.py")
        open(py, "w").write(b.text)
        e = self.env()
        e.update(PYTHONPATH=os.path.join(self.src, "bindings", "python"),
                 STROP_LIBRARY=os.path.join(self.build, "libstrop.so"))
        return self.run(["/usr/bin/python3", py], b, "running the Python block", env=e) is not None

    def check_yaml(self, b, n):
        y = os.path.join(self.sandbox, f".doc_block{n}.yaml")
        open(y, "w").write(b.text)
        try:
            kind = "spec" if re.search(r"^layers:", b.text, re.M) else "recipe"
            e = self.env()
            if self.san:
                e.setdefault("ASAN_OPTIONS", "detect_leaks=1")
            return self.run([self.a.doc_yaml, kind, y], b, f"loading it as a {kind}",
                            env=e) is not None
        finally:
            os.unlink(y)

    # ---- MPI: run in an MPI build only ----
    def mpi_env(self, b):
        """The environment of an mpi block: what Open MPI needs here, which the guide must say."""
        e = self.env()
        need = {}
        if os.geteuid() == 0:
            need.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        if (os.cpu_count() or 1) < MPI_RANKS:
            need["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
        guide = open(b.path, encoding="utf-8").read()
        missing = [f"{k}={v}" for k, v in need.items() if f"{k}={v}" not in guide]
        if missing:
            self.fail(b, "the test runs this block with " + " ".join(missing) + " (as root, or "
                      f"on fewer than {MPI_RANKS} cores), which the guide never mentions: say "
                      "what such a reader needs")
            return None
        e.update(need)
        return e

    def check_mpi(self, b, n):
        if b.lang not in ("sh", "c"):
            self.fail(b, "an mpi block is a shell block or a C program")
            return False
        if b.lang == "c" and not b.arg:
            self.fail(b, "an mpi C block names the file it is saved as: <!-- doc-test: mpi FILE -->")
            return False
        if not self.a.mpi or self.san:
            if not self.check_fragment(b):
                return False
            self.skipped += 1
            print(f"skip: {b.where(self.src)}: an MPI block: runs in an MPI build only (the test "
                  "docs_blocks_mpi, tests/run-all's mpi phase); its strop names were checked")
            return None
        e = self.mpi_env(b)
        if e is None:
            return False
        if b.lang == "c":
            c = os.path.join(self.tmp, f"block{n}.c")
            open(c, "w").write(b.text)
            if not self.run([self.a.mpicc, "-std=c11", "-Wall", "-Werror", "-I",
                             os.path.join(self.src, "include"), c, "-o", c[:-2], "-L", self.build,
                             "-lstrop", "-Wl,-rpath," + self.build], b,
                            "compiling the program with mpicc"):
                return False
            open(os.path.join(self.sandbox, b.arg), "w").write(b.text)
            self.mpi_saved[b.arg] = b
            return True
        for name in [k for k in self.mpi_saved if k in b.text]:
            del self.mpi_saved[name]
        return self.run(["bash", "-euo", "pipefail", "-c", b.text], b, "running the block", env=e,
                        timeout=1200) is not None

    def end_of_guide(self):
        self.san_skipped = set()
        for name, b in ([] if self.a.only else self.mpi_saved.items()):
            self.fail(b, f"saved as {name}, which no later mpi shell block of the guide compiles")
        self.mpi_saved = {}

    def check(self, b, n):
        if b.mark == "fragment":
            return self.check_fragment(b)
        if b.mark == "mpi":
            return self.check_mpi(b, n)
        if b.mark == "test":
            if not b.arg:
                self.fail(b, "'test' needs the name of the test that runs it")
                return False
            print(f"note: {b.where(self.src)}: run by the test {b.arg.split()[0]}")
            return True
        if b.mark == "excerpt":
            path = os.path.join(self.src, b.arg)
            want = [ln.strip() for ln in b.text.splitlines() if ln.strip()]
            have = [ln.strip() for ln in open(path, encoding="utf-8").read().splitlines()
                    if ln.strip()] if os.path.isfile(path) else []
            if not want or not any(have[i:i + len(want)] == want
                                   for i in range(len(have) - len(want) + 1)):
                self.fail(b, f"the block is not an excerpt of {b.arg} as it is in the tree; "
                             "quote it again")
                return False
            return True
        if b.mark == "file":
            path = os.path.join(self.src, b.arg)
            if not os.path.isfile(path) or open(path, encoding="utf-8").read() != b.text:
                self.fail(b, f"the block is not {b.arg} as it is in the tree; paste it again")
                return False
        elif b.mark not in (None, "run"):
            self.fail(b, f"unknown doc-test mark '{b.mark}' (fragment, run, test NAME, file PATH, "
                         "excerpt PATH, mpi [FILE])")
            return False
        if b.lang == "c":
            return self.check_c(b, n)
        if b.lang == "sh":
            return self.run_sh(b) if b.mark == "run" else self.check_sh_names(b)
        if b.lang == "python":
            return self.run_python(b, n)
        if b.lang == "yaml":
            return self.check_yaml(b, n)
        if b.lang == "json":
            try:
                json.loads(b.text)
            except ValueError as e:
                self.fail(b, f"not JSON: {e}")
                return False
            return True
        if b.lang == "text":
            return True
        self.fail(b, f"language '{b.lang}' has no check: use c, sh, python, yaml, json or text "
                     "(output, formulas, layouts), or mark it as a fragment")
        return False


def run_test(ck, files):
    a = ck.a
    marked = [b for f in files for b in blocks_of(f)
              if b.mark == "test" and b.arg.split()[:1] == [a.run_test]]
    if not marked:
        print(f"check_docs: no block is marked 'test {a.run_test}'")
        return 1
    for b in marked[1:]:
        if b.text != marked[0].text:
            print(f"FAIL: {b.where(ck.src)} and {marked[0].where(ck.src)} are both marked "
                  f"'test {a.run_test}' but differ: the docs must give one route")
            return 1
    b = marked[0]
    if ck.san:
        print(f"SKIPPED: {a.run_test} runs in the normal build only (its programs load "
              "libstrop without the sanitizer runtime)")
        return 77
    print(f"-- {', '.join(x.where(ck.src) for x in marked)}: running, as a fresh Debian 12 "
          f"would (HOME={ck.home}, PATH={FRESH_PATH}, no package index):")
    print(b.text.rstrip())
    e = ck.env()
    e["PIP_NO_INDEX"] = "1"
    r = ck.run(["bash", "-euo", "pipefail", "-c", b.text], b, "running the block", env=e,
               timeout=1800)
    if r is None:
        print("FAIL: " + ck.failures[-1])
        return 1
    print(r.stdout.rstrip())
    if a.expect and not re.search(a.expect, r.stdout, re.M):
        print(f"FAIL: the output does not match {a.expect!r}")
        return 1
    print(f"check_docs: {a.run_test}: the block ran as written")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--doc-yaml", required=True)
    ap.add_argument("--sanitize", default="")
    ap.add_argument("--only", default="")
    ap.add_argument("--run-test", default="")
    ap.add_argument("--expect", default="")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--mpi", action="store_true")
    ap.add_argument("--mpicc", default="mpicc")
    a = ap.parse_args()
    ck = Checker(a)
    files = [os.path.join(ck.src, "README.md"), *sorted(glob.glob(os.path.join(ck.src, "docs", "*.md"))),
             os.path.join(ck.src, "bindings", "python", "README.md"),
             *sorted(glob.glob(os.path.join(ck.src, "examples", "*", "README.md")))]
    try:
        if a.run_test:
            return run_test(ck, files)
        if a.mpi:
            files = [f for f in files if any(b.mark == "mpi" for b in blocks_of(f))]
            if not files:
                print("check_docs: no block is marked mpi")
                return 1
        n = 0
        for i, f in enumerate(files):
            if i:
                ck.new_sandbox()
            for b in blocks_of(f):
                n += 1
                if a.only and a.only not in (b.where(ck.src), os.path.relpath(f, ck.src)):
                    continue
                r = ck.check(b, n)
                if r:
                    ck.passed += 1
                    print(f"ok: {b.where(ck.src)} ({b.lang}{', ' + b.mark if b.mark else ''})")
            ck.end_of_guide()
        for f in ck.failures:
            print("FAIL: " + f)
        print(f"check_docs: {ck.passed} blocks passed, {len(ck.failures)} failed, "
              f"{ck.skipped} skipped")
    finally:
        shutil.rmtree(ck.tmp, ignore_errors=True)
    return 1 if ck.failures else 0


if __name__ == "__main__":
    sys.exit(main())
