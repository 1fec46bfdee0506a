# SPDX-License-Identifier: MIT
"""Bookkeeping for host callbacks: objects lent to C until a release callback, and exceptions
raised inside callbacks, carried back to the caller of the C function."""
import itertools
import threading

# reentrant: a collection inside the critical section may run a finalizer that frees a
# dataset, whose release callback reclaims here on the same thread
_lock = threading.RLock()
_lent = {}
_ids = itertools.count(1)


def lend(obj):
    """Keeps ``obj`` alive until ``reclaim(key)``; returns the non-zero key (a user_data)."""
    with _lock:
        key = next(_ids)
        _lent[key] = obj
    return key


def reclaim(key):
    with _lock:
        return _lent.pop(key, None)


def lent_count():
    with _lock:
        return len(_lent)


class Pending:
    """Holds the first exception raised inside a callback during one C call."""
    __slots__ = ("exc",)

    def __init__(self):
        self.exc = None

    def capture(self, exc):
        if self.exc is None:
            self.exc = exc

    def reraise(self):
        exc, self.exc = self.exc, None
        if exc is not None:
            raise exc


# Exceptions of dataset fill callbacks, which may run on an iterator's prefetch thread and
# are reported by whichever call reads the dataset.
dataset_pending = Pending()
