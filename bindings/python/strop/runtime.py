# SPDX-License-Identifier: MIT
"""Process-wide settings (threads, logging), versions and the portable random generator."""
import ctypes
import threading

import numpy as np

from . import _lib
from ._handle import Handle
from ._util import choose
from .errors import check

__all__ = ["Rng", "set_num_threads", "get_num_threads", "set_log_handler", "version",
           "version_number", "status_str", "last_error", "clear_error", "memory_available"]

LOG_LEVELS = {"error": 0, "warn": 1, "info": 2, "debug": 3}


def version():
    """The loaded library's version string, "MAJOR.MINOR.PATCH"."""
    return _lib.lib.strop_version().decode()


def version_number():
    return _lib.lib.strop_version_number()


def status_str(status):
    return _lib.lib.strop_status_str(int(status)).decode()


def last_error():
    return _lib.lib.strop_last_error().decode("utf-8", "replace")


def clear_error():
    _lib.lib.strop_clear_error()


def set_num_threads(n):
    """Threads for strop's kernels, process-wide (0 = every CPU).

    strop splits its work across its own worker threads and runs BLAS single-threaded inside
    them: its first BLAS call sets OpenBLAS's thread count to 1 for the whole process, which
    numpy shares when it uses the same OpenBLAS.
    """
    check(_lib.lib.strop_set_num_threads(int(n)))


def get_num_threads():
    return _lib.lib.strop_get_num_threads()


def memory_available():
    """(bytes, source): how much more memory this process may take now under the machine's
    lowest limit — the cgroup's memory.max (or v1 memory.limit_in_bytes) less its usage,
    RLIMIT_AS / RLIMIT_DATA less what the process maps, or MemAvailable — and that limit named
    with its size ("RLIMIT_AS 1.50 GB"). Raises strop.Unsupported where none can be read."""
    room = ctypes.c_size_t()
    src = ctypes.create_string_buffer(128)
    check(_lib.lib.strop_memory_available(ctypes.byref(room), src, len(src)))
    return room.value, src.value.decode()


_log_lock = threading.Lock()
_log_cb = None  # the installed ctypes callback: must stay referenced while installed


def set_log_handler(fn, max_level="info"):
    """Installs ``fn(level: int, message: str)`` as the library's log handler (None silences
    it). It may be called from library worker threads; exceptions in it are ignored."""
    global _log_cb
    lvl = choose(LOG_LEVELS, max_level, "log level")
    with _log_lock:
        if fn is None:
            _lib.lib.strop_set_log_handler(_lib.LOG_FN(), lvl, None)
            _log_cb = None
            return

        def cb(level, message, _user):
            try:
                fn(level, message.decode("utf-8", "replace"))
            except BaseException:  # noqa: B902 — a log line must never break a C call
                pass
        new = _lib.LOG_FN(cb)
        _lib.lib.strop_set_log_handler(new, lvl, None)
        _log_cb = new


class Rng(Handle):
    """The library's seedable PCG32 generator: the same numbers on every platform."""

    def __init__(self, seed=0):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_rng_create(int(seed), ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_rng_free)

    def uniform(self, n, lo=0.0, hi=1.0):
        out = np.empty(int(n), dtype=np.float32)
        check(_lib.lib.strop_rng_uniform(self._h, float(lo), float(hi), out.ctypes.data,
                                         out.size))
        return out

    def normal(self, n, mean=0.0, std=1.0):
        out = np.empty(int(n), dtype=np.float32)
        check(_lib.lib.strop_rng_normal(self._h, float(mean), float(std), out.ctypes.data,
                                        out.size))
        return out

    def permutation(self, n):
        out = np.empty(max(0, int(n)), dtype=np.int64)
        check(_lib.lib.strop_rng_permutation(self._h, int(n), out.ctypes.data))
        return out

    def next_u32(self):
        return _lib.lib.strop_rng_next_u32(self._h)
