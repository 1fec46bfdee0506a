# SPDX-License-Identifier: MIT
"""The settings tables of the C objects (optimizer, scheduler, trainer, tuner), read through
the library's knob queries at import: no name, key or word is copied here, so a knob added to a
C table is a Python knob at once."""
import ctypes

from . import _lib
from ._util import enc
from .errors import InvalidArgument, check, last_error

KNOB_INT, KNOB_LIST = 1, 8  # strop_knob_flags


class KnobTable:
    """One object's table: ``keys`` maps every name (strop_<object>_knob_name(k) for k = 0, 1,
    ... up to NULL) to its key; other spellings go through strop_<object>_knob_find."""

    def __init__(self, obj, kinds):
        lib = _lib.lib
        self.obj = obj
        self.kinds = kinds  # the object's functions take a kind first (optimizer, scheduler)
        self._name = getattr(lib, f"strop_{obj}_knob_name")
        self._find = getattr(lib, f"strop_{obj}_knob_find")
        self._parse = getattr(lib, f"strop_{obj}_knob_parse")
        self._range = getattr(lib, f"strop_{obj}_knob_range")
        self._default = getattr(lib, f"strop_{obj}_knob_default")
        self._doc = getattr(lib, f"strop_{obj}_knob_doc")
        self.keys = {}
        k = 0
        while True:
            n = self._name(k)
            if n is None:
                break
            self.keys[n.decode()] = k
            k += 1

    def key(self, name):
        """The key of a knob given by name (or another accepted spelling) or by number."""
        if not isinstance(name, str):
            return int(name)
        k = self.keys.get(name)
        if k is not None:
            return k
        out = ctypes.c_int()
        if self._find(enc(name), ctypes.byref(out)) != 0:
            raise InvalidArgument(last_error())
        return out.value

    def name(self, key):
        n = self._name(int(key))
        return n.decode() if n else None

    def doc(self, key):
        d = self._doc(int(key))
        return d.decode() if d else None

    def range(self, key, kind=None):
        """(lo, hi, flags) of a knob (for a kind, when the object has kinds)."""
        lo, hi, fl = ctypes.c_double(), ctypes.c_double(), ctypes.c_int()
        args = ((int(kind),) if self.kinds else ()) + (int(key), ctypes.byref(lo),
                                                        ctypes.byref(hi), ctypes.byref(fl))
        check(self._range(*args))
        return lo.value, hi.value, fl.value

    def flags(self, key, kind=None):
        """The knob's flags, or 0 when the query refuses it (the setter then says why)."""
        try:
            return self.range(key, kind)[2]
        except InvalidArgument:
            return 0

    def default(self, key, kind=None):
        v = ctypes.c_double()
        args = ((int(kind),) if self.kinds else ()) + (int(key), ctypes.byref(v))
        check(self._default(*args))
        return v.value

    def value(self, key, value):
        """A Python value as the double the setters take: words ("linear", "mse", "median")
        and "true"/"false" through strop_<object>_knob_parse, numbers and bools as they are."""
        if isinstance(value, str):
            out = ctypes.c_double()
            check(self._parse(int(key), enc(value), ctypes.byref(out)))
            return out.value
        return float(value)
