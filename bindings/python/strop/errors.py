# SPDX-License-Identifier: MIT
"""Exceptions: one StropError subclass per strop_status, carrying strop_last_error()'s sentence."""
from . import _lib

__all__ = ["StropError", "InvalidArgument", "OutOfMemory", "StropIOError", "FormatError",
           "ShapeError", "NotFound", "StateError", "NumericError", "Unsupported",
           "InternalError", "CallbackError", "Cancelled", "check", "error_for_status"]


class StropError(Exception):
    """A libstrop call failed. ``status`` is the strop_status number, ``message`` the
    library's sentence (strop_last_error()) naming the function, argument and values."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidArgument(StropError, ValueError):
    """STROP_E_INVALID_ARG: an argument is NULL, out of range or inconsistent."""
    status = -1


class OutOfMemory(StropError, MemoryError):
    """STROP_E_NOMEM: an allocation failed."""
    status = -2


class StropIOError(StropError, OSError):
    """STROP_E_IO: a file could not be opened, read or written."""
    status = -3

    def __init__(self, message, status=None):
        StropError.__init__(self, message, status)

    def __str__(self):
        return self.message


class FormatError(StropError, ValueError):
    """STROP_E_FORMAT: a file or string is malformed."""
    status = -4


class ShapeError(StropError, ValueError):
    """STROP_E_SHAPE: tensor shapes do not agree."""
    status = -5


class NotFound(StropError, KeyError):
    """STROP_E_NOT_FOUND: a named layer, tensor or key does not exist."""
    status = -6

    def __str__(self):  # KeyError would quote the message
        return self.message


class StateError(StropError, RuntimeError):
    """STROP_E_STATE: the call is not allowed in the object's current state (also raised by
    the bindings for a closed object)."""
    status = -7


class NumericError(StropError, ArithmeticError):
    """STROP_E_NUMERIC: a non-finite value appeared (loss, gradient)."""
    status = -8


class Unsupported(StropError, NotImplementedError):
    """STROP_E_UNSUPPORTED: valid but not supported by this build or version."""
    status = -9


class InternalError(StropError, RuntimeError):
    """STROP_E_INTERNAL: a broken invariant inside the library (a bug: please report it)."""
    status = -10


class CallbackError(StropError, RuntimeError):
    """STROP_E_CALLBACK: a host callback reported failure."""
    status = -11


class Cancelled(StropError):
    """STROP_E_CANCELLED: the host asked to stop (a callback returned non-zero)."""
    status = -12


IOError_ = StropIOError  # alias: ``strop.IOError`` would shadow the builtin

_BY_STATUS = {c.status: c for c in (InvalidArgument, OutOfMemory, StropIOError, FormatError,
                                    ShapeError, NotFound, StateError, NumericError, Unsupported,
                                    InternalError, CallbackError, Cancelled)}


def last_error():
    """The calling thread's last error sentence (strop_last_error())."""
    return _lib.lib.strop_last_error().decode("utf-8", "replace")


def error_for_status(status, message=None):
    """The exception object for a status (not raised)."""
    if message is None:
        message = last_error()
    if not message:
        message = _lib.lib.strop_status_str(status).decode()
    cls = _BY_STATUS.get(status, StropError)
    return cls(message, status)


def check(status):
    """Raises the StropError subclass of a non-zero status; returns None for STROP_OK."""
    if status != 0:
        raise error_for_status(status)
