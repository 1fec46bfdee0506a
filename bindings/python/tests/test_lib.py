# SPDX-License-Identifier: MIT
"""Loading the library and the declaration table."""
import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import PKG_ROOT, ROOT, load_strop

strop = load_strop()
from strop import _lib  # noqa: E402


def map_symbols():
    text = open(os.path.join(ROOT, "lib", "strop.map")).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return set(re.findall(r"^\s*(strop_\w+)\s*;", text, re.M))


def test_every_exported_symbol_is_declared():
    exported = map_symbols()
    assert len(exported) > 200
    missing = sorted(exported - _lib.DECLARED)
    assert not missing, f"exported but not declared in strop/_lib.py: {missing}"
    extra = sorted(_lib.DECLARED - exported)
    assert not extra, f"declared but not exported: {extra}"


def test_declarations_are_applied():
    lib = _lib.lib
    applied = 0
    for name, restype, argtypes in _lib._DECLS:
        # the ctypes function inside the guard (_handle.guard); a stub has none: the loaded
        # library predates the symbol
        fn = getattr(getattr(lib, name), "__wrapped__", None)
        if fn is None:
            continue
        applied += 1
        assert fn.restype == restype, name
        # integers through their range-checked subclasses (_lib._checked)
        assert list(fn.argtypes) == [_lib._CHECKED.get(a, a) for a in argtypes], name
    assert applied == len(_lib._DECLS)  # the library under test is this tree's


def test_integers_out_of_range_are_refused():
    """ctypes passes the low bits of an int too wide for its argument; the bindings refuse it
    (2**64 + 8 dims would have made an 8-wide input)."""
    import ctypes
    import strop
    for bad in (2**64 + 8, 2**63, -2**63 - 1):
        with pytest.raises(OverflowError, match="does not fit a signed 64-bit integer"):
            strop.Model([bad])
    with pytest.raises(ctypes.ArgumentError, match="does not fit an unsigned 64-bit integer"):
        strop.Rng(seed=-1)
    with pytest.raises(ctypes.ArgumentError, match="does not fit a signed 32-bit integer"):
        strop.set_num_threads(2**32 + 1)
    assert strop.Model([2**31]).input_shape == (2**31,)


def test_declared_arity_matches_headers():
    """Counts each prototype's parameters in the public headers against the argtypes."""
    src = ""
    inc = os.path.join(ROOT, "include", "strop")
    for f in sorted(os.listdir(inc)):
        src += open(os.path.join(inc, f)).read()
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"#.*", "", src)
    protos = dict((n, a) for n, a in re.findall(r"STROP_API[^;(]*?(\w+)\s*\(([^)]*)\)\s*;", src))
    for name, _, argtypes in _lib._DECLS:
        args = protos[name].strip()
        n = 0 if args in ("", "void") else args.count(",") + 1
        assert n == len(argtypes), name


def test_dist_ops_mirrors_the_c_struct():
    # strop_dist_ops_init writes sizeof(strop_dist_ops) bytes: the ctypes mirror must hold all
    # of them, the members appended since (the asynchronous sum) included
    ops = _lib.strop_dist_ops()
    _lib.lib.strop_dist_ops_init(ctypes.byref(ops))
    assert ops.size == ctypes.sizeof(_lib.strop_dist_ops)


def test_version():
    assert strop.version() == "%d.%d.%d" % tuple(
        (strop.version_number() // 10000, strop.version_number() // 100 % 100,
         strop.version_number() % 100))
    assert strop.version_number() // 10000 == _lib.PACKAGE_VERSION[0]


def test_mismatched_major_is_refused(monkeypatch):
    monkeypatch.setattr(_lib, "PACKAGE_VERSION", (_lib.PACKAGE_VERSION[0] + 1, 0, 0))
    with pytest.raises(_lib.VersionMismatch, match="major versions differ"):
        _lib.load(_lib.library_path)


def test_library_not_found_message():
    env = dict(os.environ, STROP_LIBRARY="/nonexistent/libstrop.so")
    r = subprocess.run([sys.executable, "-c", "import strop"], cwd=PKG_ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr and "STROP_LIBRARY" in r.stderr


def test_found_through_build_tree():
    """Without STROP_LIBRARY the package walks up to a build*/libstrop.so*."""
    env = {k: v for k, v in os.environ.items() if k != "STROP_LIBRARY"}
    r = subprocess.run([sys.executable, "-c", "import strop; print(strop._lib.library_path)"],
                       cwd=PKG_ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no build tree with libstrop.so above the package")
    assert "libstrop" in r.stdout


def _installed_copy(tmp_path, recorded=None):
    """A copy of the package outside the source tree, as pip installs it (with the
    _installed.py the build backend writes)."""
    import shutil
    site = tmp_path / "site-packages"
    shutil.copytree(os.path.join(PKG_ROOT, "strop"), site / "strop",
                    ignore=shutil.ignore_patterns("__pycache__", "_installed.py"))
    (site / "strop" / "_installed.py").write_text(f"LIBDIR = {recorded!r}\n")
    return site


def _where(site, **env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("STROP_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH", "PKG_CONFIG_PATH")}
    env.update(PYTHONPATH=str(site), **env_changes)
    r = subprocess.run([sys.executable, "-c", "import strop, strop._lib as l; "
                        "print(l.library_source); print(strop.library_path)"],
                       cwd=str(site), env=env, capture_output=True, text=True)
    return r.returncode, r.stdout.split("\n")[:2], r.stderr


def _libdir():
    d = os.path.dirname(os.path.realpath(_lib.library_path))
    if not os.path.exists(os.path.join(d, "libstrop.so.0")):
        pytest.skip(f"no libstrop.so.0 beside {_lib.library_path}")
    return d


def test_installed_package_uses_the_recorded_folder(tmp_path):
    """pip records pkg-config's libdir at install; an installed package looks there, and not
    in a build tree."""
    d = _libdir()
    rc, (how, path), err = _where(_installed_copy(tmp_path, d))
    assert rc == 0, err
    assert how == "recorded at install" and path == os.path.join(d, "libstrop.so.0")


def test_installed_package_asks_pkg_config_at_import(tmp_path):
    if not shutil.which("pkg-config"):
        pytest.skip("pkg-config is not installed")
    d = _libdir()
    (tmp_path / "pc").mkdir()
    (tmp_path / "pc" / "strop.pc").write_text(
        f"libdir={d}\nName: strop\nDescription: test\nVersion: 0.1.0\nLibs: -L${{libdir}} -lstrop\n")
    rc, (how, path), err = _where(_installed_copy(tmp_path), PKG_CONFIG_PATH=str(tmp_path / "pc"))
    assert rc == 0, err
    assert how == "pkg-config" and path == os.path.join(d, "libstrop.so.0")


def test_installed_package_uses_the_dynamic_loader(tmp_path):
    d = _libdir()
    rc, (how, path), err = _where(_installed_copy(tmp_path), LD_LIBRARY_PATH=d)
    assert rc == 0, err
    assert how == "dynamic loader" and path == "libstrop.so.0"


def test_strop_library_overrides_the_recorded_folder(tmp_path):
    d = _libdir()
    rc, (how, path), err = _where(_installed_copy(tmp_path, "/nonexistent"),
                                  STROP_LIBRARY=os.path.join(d, "libstrop.so.0"))
    assert rc == 0, err
    assert how == "STROP_LIBRARY"


def test_installed_package_not_found_says_what_to_do(tmp_path):
    rc, _, err = _where(_installed_copy(tmp_path, "/nonexistent"), PKG_CONFIG_PATH="/nonexistent")
    if rc == 0:
        pytest.skip("a libstrop is installed on this system")
    assert "LibraryNotFound" in err and "PKG_CONFIG_PATH" in err and "STROP_LIBRARY" in err


def test_status_strings_and_errors():
    assert strop.status_str(0)
    assert strop.status_str(-5) != strop.status_str(-6)
    for status in range(-1, -13, -1):
        e = strop.errors.error_for_status(status, "msg")
        assert isinstance(e, strop.StropError) and e.status == status and str(e) == "msg"
    assert issubclass(strop.IOError, OSError)
    assert issubclass(strop.InvalidArgument, ValueError)
    assert issubclass(strop.NotFound, KeyError)


def test_error_carries_last_error_sentence():
    with pytest.raises(strop.InvalidArgument) as ei:
        strop.Tensor.zeros([2, -3])
    assert "strop_tensor_create" in str(ei.value)
    assert str(ei.value) == strop.last_error()
    strop.clear_error()
    assert strop.last_error() == ""


def test_threads_and_log_handler():
    n = strop.get_num_threads()
    strop.set_num_threads(1)
    assert strop.get_num_threads() == 1
    strop.set_num_threads(n)
    with pytest.raises(strop.InvalidArgument):
        strop.set_num_threads(-1)
    lines = []
    strop.set_log_handler(lambda lvl, msg: lines.append((lvl, msg)), "debug")
    try:
        m = strop.Model.from_spec(os.path.join(ROOT, "examples", "fashion", "base.yaml"))
        m.close()
    finally:
        strop.set_log_handler(None)
    assert all(isinstance(m, str) for _, m in lines)


def test_missing_symbol_stub():
    stub = _lib._missing("strop_does_not_exist")
    with pytest.raises(strop.Unsupported, match="strop_does_not_exist"):
        stub()


def test_c_char_p_and_void_p_conventions():
    t = strop.Tensor.zeros([2, 3])
    assert isinstance(_lib.lib.strop_tensor_data(t._h), int)
    assert ctypes.c_void_p in _lib._DECLS[[d[0] for d in _lib._DECLS].index("strop_tensor_free")][2]
