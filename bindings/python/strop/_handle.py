# SPDX-License-Identifier: MIT
"""Ownership of C handles: each handle is freed exactly once, after everything borrowing it.

A ``_Box`` holds one C handle, the function that frees it, the boxes of the objects it
borrows from (``parents``) and Python objects it must keep alive (``keep``: numpy arrays a
tensor or dataset wraps, callables a callback dataset calls). It counts its users: the Python
object that owns it, plus every child box and numpy view that borrows from it. The handle is
freed when the count reaches zero — so ``close()`` on a model whose optimizer is still open
only gives up the model's own use, and the C model is freed after the optimizer.

``Handle`` is the base of the public classes: ``close()``, the context manager and a
``weakref.finalize`` finaliser all run the same finalizer object, which runs at most once.
"""
import threading
import weakref

from .errors import StateError

_lock = threading.Lock()


def handle_of(obj, cls, what):
    """obj's C handle when obj is a ``cls``; else InvalidArgument naming what was passed (a
    handle of another type in its place would reach the library as the wrong struct)."""
    if not isinstance(obj, cls):
        from .errors import InvalidArgument
        raise InvalidArgument(f"{what} must be a strop.{cls.__name__}, got "
                              f"{type(obj).__name__}")
    return obj._h


class _Box:
    __slots__ = ("handle", "free", "parents", "keep", "users", "__weakref__")

    def __init__(self, handle, free, parents=(), keep=None):
        self.handle = handle
        self.free = free
        self.parents = tuple(p for p in parents if p is not None)
        self.keep = keep
        self.users = 1
        for p in self.parents:
            p.acquire()

    def acquire(self):
        with _lock:
            if self.users <= 0:
                raise StateError("the object was already freed")
            self.users += 1

    def release(self):
        with _lock:
            self.users -= 1
            last = self.users == 0
        if not last:
            return
        h, self.handle = self.handle, None
        if h is not None and self.free is not None:
            self.free(h)
        self.keep = None
        parents, self.parents = self.parents, ()
        for p in parents:
            p.release()


class Handle:
    """Base of every class owning a libstrop handle."""

    __slots__ = ("_box", "_fin", "__weakref__")

    def _own(self, handle, free, parents=(), keep=None):
        box = _Box(handle, free, parents, keep)
        self._box = box
        self._fin = weakref.finalize(self, box.release)
        return box

    @property
    def _h(self):
        box = getattr(self, "_box", None)
        if box is None or not self._fin.alive or box.handle is None:
            raise StateError(f"{type(self).__name__} is closed")
        return box.handle

    @property
    def closed(self):
        """True once close() ran (or the object was never opened)."""
        return getattr(self, "_fin", None) is None or not self._fin.alive

    def close(self):
        """Frees the handle (once; later calls do nothing). Objects that borrow from this one
        keep the C object alive until they are closed too."""
        fin = getattr(self, "_fin", None)
        if fin is not None:
            fin()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<strop.{type(self).__name__} {state}>"
