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

Threads: ``Handle._h`` gives the box, which ctypes passes as its handle (``_as_parameter_``),
and every library function is called through ``guard``. For the length of a call it holds a
use of each box among the arguments (so a ``close()`` on another thread frees the C object
after the call, not during it) and the lock of each box and of everything it borrows from (so
a second thread's call into the same model, or into an optimizer or trainer of that model,
waits for the first: the C library's one-thread-at-a-time rule, kept for Python). Locks are
taken in the boxes' creation order, so two calls cannot wait for each other. A callback that
the library runs on a thread of its own (a dataset's fill function on the prefetch thread)
does not wait for an object another thread holds, since that thread may be waiting for the
callback: it gets StateError.
"""
import itertools
import threading
import weakref

from .errors import StateError

# reentrant: an allocation inside the critical section may start a collection whose
# finalizers release other boxes on the same thread
_lock = threading.RLock()
_seq = itertools.count()


def handle_of(obj, cls, what):
    """obj's C handle when obj is a ``cls``; else InvalidArgument naming what was passed (a
    handle of another type in its place would reach the library as the wrong struct)."""
    if not isinstance(obj, cls):
        from .errors import InvalidArgument
        raise InvalidArgument(f"{what} must be a strop.{cls.__name__}, got "
                              f"{type(obj).__name__}")
    return obj._h


class _Box:
    __slots__ = ("handle", "free", "parents", "keep", "users", "lock", "seq", "__weakref__")

    def __init__(self, handle, free, parents=(), keep=None):
        self.handle = handle
        self.free = free
        self.parents = tuple(p for p in parents if p is not None)
        self.keep = keep
        self.users = 1
        self.lock = threading.RLock()
        self.seq = next(_seq)
        for p in self.parents:
            p.acquire()

    @property
    def _as_parameter_(self):
        """the C handle, as ctypes passes the box to a ``c_void_p`` argument"""
        return self.handle

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


def addr(h):
    """the C handle as an int (or None) for a struct field, from a box, an int or None"""
    return h.handle if isinstance(h, _Box) else h


def _lineage(boxes):
    """boxes and everything they borrow from, each once, in creation order (a parent entry
    may be a holder with the box as its ``box``, as the trainer's scheduler entry is)"""
    seen = {}
    todo = list(boxes)
    while todo:
        b = todo.pop()
        if type(b) is not _Box:
            b = b.box
        if b.seq not in seen:
            seen[b.seq] = b
            todo.extend(b.parents)
    return [seen[k] for k in sorted(seen)]


def _library_thread():
    """True on a thread the library started (Python sees it as a dummy thread)"""
    return isinstance(threading.current_thread(), threading._DummyThread)


def _enter(boxes):
    """holds a use and the lock of each box of the call's lineage; returns them"""
    held = []
    try:
        for b in _lineage(boxes):
            b.acquire()
            if not b.lock.acquire(blocking=False):
                if _library_thread():
                    b.release()
                    raise StateError(
                        "a callback running on a library thread called into an object "
                        "another thread is using (the call it is serving, or another): do "
                        "not call strop from a dataset's fill function")
                b.lock.acquire()
            held.append(b)
    except BaseException:
        _leave(held)
        raise
    return held


def _leave(held):
    for b in reversed(held):
        b.lock.release()
        b.release()


def guard(fn):
    """fn (a declared library function) called with the boxes among its arguments, and those
    in ``_hold`` (handles passed inside a struct), held as the module's docstring says"""
    def call(*args, _hold=()):
        boxes = [a for a in args if type(a) is _Box]
        boxes.extend(b for b in _hold if type(b) is _Box)
        if not boxes:
            return fn(*args)
        held = _enter(boxes)
        try:
            return fn(*args)
        finally:
            _leave(held)
    call.__name__ = getattr(fn, "__name__", "call")
    call.__wrapped__ = fn
    return call


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
        """the box, which ctypes passes as the C handle; StateError once closed"""
        box = getattr(self, "_box", None)
        if box is None or not self._fin.alive or box.handle is None:
            raise StateError(f"{type(self).__name__} is closed")
        return box

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
