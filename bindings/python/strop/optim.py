# SPDX-License-Identifier: MIT
"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad — torch.optim's update rules) and
learning-rate schedulers."""
import ctypes

import numpy as np

from . import _lib
from ._handle import Handle, handle_of
from ._knobs import KNOB_INT, KNOB_LIST, KnobTable
from ._util import as_i64, choose
from .errors import InvalidArgument, check

__all__ = ["Optimizer", "Scheduler", "OPTIMIZER_KINDS", "SCHEDULER_KINDS"]

OPTIMIZER_KINDS = {"sgd": 0, "adam": 1, "adamw": 2, "rmsprop": 3, "adagrad": 4}
SCHEDULER_KINDS = {"constant": 0, "step": 1, "multistep": 2, "exponential": 3, "cosine": 4,
                   "cosine_restarts": 5, "one_cycle": 6, "plateau": 7}
# the knob tables, read from the library (names -> keys; other spellings through _knob_find)
_OPT = KnobTable("optimizer", kinds=True)
_SCH = KnobTable("scheduler", kinds=True)
OPTIMIZER_KNOBS = dict(_OPT.keys)
SCHEDULER_KNOBS = dict(_SCH.keys)


def _kind(table, kind, what):
    return choose(table, kind, what)


class Optimizer(Handle):
    """An optimizer over a model's trainable parameters (strop_optimizer); it keeps the model
    alive. ``Optimizer(model, "adam", lr=1e-3, weight_decay=0.01)``; knobs are read and set
    with ``opt["lr"]`` / ``opt["lr"] = 3e-4`` or ``opt.lr``."""

    def __init__(self, model, kind="adam", **knobs):
        k = _kind(OPTIMIZER_KINDS, kind, "optimizer kind")
        out = ctypes.c_void_p()
        from .model import Model
        check(_lib.lib.strop_optimizer_create(handle_of(model, Model, "Optimizer: model"), k,
                                              ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_optimizer_free, parents=(model._box,))
        self.model = model
        # Nesterov needs momentum/dampening first: set the others before the flags
        for name in sorted(knobs, key=lambda n: n in ("nesterov", "amsgrad", "centered")):
            self[name] = knobs[name]

    @property
    def kind(self):
        k = _lib.lib.strop_optimizer_get_kind(self._h)
        return {v: n for n, v in OPTIMIZER_KINDS.items()}.get(k, k)

    def __setitem__(self, name, value):
        key = _OPT.key(name)
        check(_lib.lib.strop_optimizer_set_double(self._h, key, _OPT.value(key, value)))

    def __getitem__(self, name):
        key = _OPT.key(name)
        v = ctypes.c_double()
        check(_lib.lib.strop_optimizer_get_double(self._h, key, ctypes.byref(v)))
        if _OPT.flags(key, _lib.lib.strop_optimizer_get_kind(self._h)) & KNOB_INT:
            return int(v.value)
        return v.value

    @property
    def lr(self):
        return self["lr"]

    @lr.setter
    def lr(self, value):
        self["lr"] = value

    @staticmethod
    def knob_range(kind, name):
        """(lo, hi, flags) of a knob for a kind (flags: strop_knob_flags — 1 int, 2 lo open,
        4 hi open, 16 flag, 64 infinity accepted)."""
        return _OPT.range(_OPT.key(name), _kind(OPTIMIZER_KINDS, kind, "optimizer kind"))

    @staticmethod
    def knob_name(key):
        return _OPT.name(key)

    @staticmethod
    def knob_default(kind, name):
        """PyTorch's default of a knob for a kind."""
        return _OPT.default(_OPT.key(name), _kind(OPTIMIZER_KINDS, kind, "optimizer kind"))

    @staticmethod
    def knob_doc(name):
        return _OPT.doc(_OPT.key(name))

    def step(self):
        check(_lib.lib.strop_optimizer_step(self._h))

    def zero_grad(self):
        check(_lib.lib.strop_optimizer_zero_grad(self._h))

    def sync(self):
        check(_lib.lib.strop_optimizer_sync(self._h))

    @property
    def step_count(self):
        return _lib.lib.strop_optimizer_step_count(self._h)


class Scheduler(Handle):
    """A learning-rate schedule driving one optimizer (strop_scheduler); it keeps the optimizer
    alive. ``Scheduler(opt, "cosine", T_max=100, warmup_steps=10)``. Attach it to a Trainer, or
    call ``step()`` after each optimizer step."""

    def __init__(self, optimizer, kind="constant", **knobs):
        k = _kind(SCHEDULER_KINDS, kind, "scheduler kind")
        out = ctypes.c_void_p()
        check(_lib.lib.strop_scheduler_create(
            handle_of(optimizer, Optimizer, "Scheduler: optimizer"), k, ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_scheduler_free, parents=(optimizer._box,))
        self.optimizer = optimizer
        self._kind = k
        for name, value in knobs.items():
            self[name] = value

    @property
    def kind(self):
        return {v: n for n, v in SCHEDULER_KINDS.items()}.get(self._kind, self._kind)

    def __setitem__(self, name, value):
        lib = _lib.lib
        key = _SCH.key(name)
        if _SCH.flags(key, self._kind) & KNOB_LIST or isinstance(value, (list, tuple, np.ndarray)):
            v = as_i64(value)
            check(lib.strop_scheduler_set_ints(self._h, key, v.ctypes.data if v.size else None,
                                               int(v.size)))
        else:
            check(lib.strop_scheduler_set_double(self._h, key, _SCH.value(key, value)))

    def __getitem__(self, name):
        lib = _lib.lib
        key = _SCH.key(name)
        fl = _SCH.flags(key, self._kind)
        if fl & KNOB_LIST:
            n = ctypes.c_int()
            check(lib.strop_scheduler_get_ints(self._h, key, None, 0, ctypes.byref(n)))
            v = np.zeros(max(1, n.value), dtype=np.int64)
            check(lib.strop_scheduler_get_ints(self._h, key, v.ctypes.data, v.size,
                                               ctypes.byref(n)))
            return [int(x) for x in v[:n.value]]
        v = ctypes.c_double()
        check(lib.strop_scheduler_get_double(self._h, key, ctypes.byref(v)))
        return int(v.value) if fl & KNOB_INT else v.value

    @staticmethod
    def knob_range(kind, name):
        return _SCH.range(_SCH.key(name), _kind(SCHEDULER_KINDS, kind, "scheduler kind"))

    @staticmethod
    def knob_name(key):
        return _SCH.name(key)

    @staticmethod
    def knob_default(kind, name):
        return _SCH.default(_SCH.key(name), _kind(SCHEDULER_KINDS, kind, "scheduler kind"))

    @staticmethod
    def knob_doc(name):
        return _SCH.doc(_SCH.key(name))

    def step(self):
        check(_lib.lib.strop_scheduler_step(self._h))

    def step_metric(self, value):
        check(_lib.lib.strop_scheduler_step_metric(self._h, float(value)))

    @property
    def lr(self):
        return _lib.lib.strop_scheduler_get_lr(self._h)

    @property
    def last_step(self):
        return _lib.lib.strop_scheduler_last_step(self._h)
