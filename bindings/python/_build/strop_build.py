# SPDX-License-Identifier: MIT
"""PEP 517 build backend of the strop bindings: a small builder of the pure-Python wheel, so
that ``pip install bindings/python`` works offline (pip's isolated build environment could not
fetch setuptools without a package index) and the same wheel comes out everywhere.

The package has no compiled part: the wheel is the ``strop`` folder, metadata read from
pyproject.toml, and ``strop/_installed.py``, which records where libstrop is installed as
``pkg-config --variable=libdir strop`` says while pip builds the wheel (so
``PKG_CONFIG_PATH=P/lib/pkgconfig pip install bindings/python`` records a prefix P); the
package looks there when it is imported (see strop/_lib.py for the whole search)."""
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project():
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    sect = text.split("[project]", 1)[1].split("\n[", 1)[0]

    def field(name):
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % name, sect, re.M)
        return m.group(1) if m else ""
    deps = re.search(r"^dependencies\s*=\s*\[(.*?)\]", sect, re.M | re.S)
    deps = re.findall(r'"([^"]+)"', deps.group(1)) if deps else []
    return field("name"), field("version"), field("description"), \
        field("requires-python"), deps


def _metadata():
    name, version, summary, pyreq, deps = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Summary: {summary}"]
    if pyreq:
        lines.append(f"Requires-Python: {pyreq}")
    lines += [f"Requires-Dist: {d}" for d in deps]
    readme = os.path.join(ROOT, "README.md")
    body = open(readme, encoding="utf-8").read() if os.path.exists(readme) else ""
    lines.append("Description-Content-Type: text/markdown")
    return name, version, "\n".join(lines) + "\n\n" + body


def _files():
    pkg = os.path.join(ROOT, "strop")
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                full = os.path.join(dirpath, f)
                yield full, os.path.relpath(full, ROOT).replace(os.sep, "/")


def _installed_module():
    """The text of strop/_installed.py: libstrop's folder as pkg-config gives it now, if a
    libstrop.so.0 is there (else None: the package then relies on the other ways)."""
    libdir = None
    exe = shutil.which("pkg-config")
    if exe:
        try:
            r = subprocess.run([exe, "--variable=libdir", "strop"], capture_output=True,
                               text=True, timeout=30)
            d = r.stdout.strip() if r.returncode == 0 else ""
            if d and os.path.exists(os.path.join(d, "libstrop.so.0")):
                libdir = os.path.realpath(d)
        except (OSError, subprocess.SubprocessError):
            pass
    return ('"""Written by the build backend when this package was installed: the folder of\n'
            'libstrop.so.0 that pkg-config named then, or None."""\n'
            f"LIBDIR = {libdir!r}\n")


def _wheel(wheel_directory, editable=False):
    name, version, meta = _metadata()
    dist = f"{name}-{version}.dist-info"
    wheel_name = f"{name}-{version}-py3-none-any.whl"
    record = []

    def add(zf, arcname, data):
        zf.writestr(arcname, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arcname},sha256={digest},{len(data)}")

    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                         zipfile.ZIP_DEFLATED) as zf:
        if editable:
            add(zf, f"__editable__.{name}.pth", (ROOT + "\n").encode())
        else:
            for full, arc in _files():
                add(zf, arc, open(full, "rb").read())
            add(zf, "strop/_installed.py", _installed_module().encode("utf-8"))
        add(zf, f"{dist}/METADATA", meta.encode("utf-8"))
        add(zf, f"{dist}/WHEEL", b"Wheel-Version: 1.0\nGenerator: strop_build\n"
                                 b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        record.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel_name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None):
    name, version, _ = _metadata()
    base = f"{name}-{version}"
    path = os.path.join(sdist_directory, base + ".tar.gz")
    with tarfile.open(path, "w:gz") as tf:
        for rel in ("pyproject.toml", "README.md", "_build/strop_build.py"):
            full = os.path.join(ROOT, rel)
            if os.path.exists(full):
                tf.add(full, f"{base}/{rel}")
        for full, arc in _files():
            tf.add(full, f"{base}/{arc}")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = _metadata()[2].encode("utf-8")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return base + ".tar.gz"
