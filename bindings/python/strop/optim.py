"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad — torch.optim's update rules) and
learning-rate schedulers."""
import ctypes

import numpy as np

from . import _lib
from ._handle import Handle
from ._util import as_i64
from .errors import InvalidArgument, check

__all__ = ["Optimizer", "Scheduler", "OPTIMIZER_KINDS", "SCHEDULER_KINDS"]

OPTIMIZER_KINDS = {"sgd": 0, "adam": 1, "adamw": 2, "rmsprop": 3, "adagrad": 4}
OPTIMIZER_KNOBS = {"lr": 0, "momentum": 1, "dampening": 2, "weight_decay": 3, "nesterov": 4,
                   "beta1": 5, "beta2": 6, "eps": 7, "amsgrad": 8, "alpha": 9, "centered": 10,
                   "lr_decay": 11, "initial_accumulator_value": 12, "maximize": 13}
SCHEDULER_KINDS = {"constant": 0, "step": 1, "multistep": 2, "exponential": 3, "cosine": 4,
                   "cosine_restarts": 5, "one_cycle": 6, "plateau": 7}
SCHEDULER_KNOBS = {"gamma": 0, "step_size": 1, "milestones": 2, "T_max": 3, "eta_min": 4,
                   "T_0": 5, "T_mult": 6, "max_lr": 7, "total_steps": 8, "pct_start": 9,
                   "anneal": 10, "div_factor": 11, "final_div_factor": 12,
                   "cycle_momentum": 13, "base_momentum": 14, "max_momentum": 15, "mode": 16,
                   "factor": 17, "patience": 18, "threshold": 19, "threshold_mode": 20,
                   "cooldown": 21, "min_lr": 22, "eps": 23, "total_iters": 24,
                   "warmup_steps": 25, "warmup_start_factor": 26}
_CHOICES = {"cos": 0, "linear": 1, "min": 0, "max": 1, "rel": 0, "abs": 1}
KNOB_INT, KNOB_LIST = 1, 8


def _key(table, key, what):
    if isinstance(key, str):
        try:
            return table[key]
        except KeyError:
            raise InvalidArgument(f"unknown {what} '{key}'; known: {', '.join(table)}") from None
    return int(key)


def _kind(table, kind, what):
    return _key(table, kind.lower() if isinstance(kind, str) else kind, what)


def _range(fn, kind, key):
    lo, hi, fl = ctypes.c_double(), ctypes.c_double(), ctypes.c_int()
    check(fn(kind, key, ctypes.byref(lo), ctypes.byref(hi), ctypes.byref(fl)))
    return lo.value, hi.value, fl.value


class Optimizer(Handle):
    """An optimizer over a model's trainable parameters (strop_optimizer); it keeps the model
    alive. ``Optimizer(model, "adam", lr=1e-3, weight_decay=0.01)``; knobs are read and set
    with ``opt["lr"]`` / ``opt["lr"] = 3e-4`` or ``opt.lr``."""

    def __init__(self, model, kind="adam", **knobs):
        k = _kind(OPTIMIZER_KINDS, kind, "optimizer kind")
        out = ctypes.c_void_p()
        check(_lib.lib.strop_optimizer_create(model._h, k, ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_optimizer_free, parents=(model._box,))
        self.model = model
        # Nesterov needs momentum/dampening first: set the others before the flags
        for name in sorted(knobs, key=lambda n: n in ("nesterov", "amsgrad", "centered")):
            self[name] = knobs[name]

    @property
    def kind(self):
        k = _lib.lib.strop_optimizer_get_kind(self._h)
        return {v: n for n, v in OPTIMIZER_KINDS.items()}.get(k, k)

    def _is_int(self, key):
        try:
            return bool(_range(_lib.lib.strop_optimizer_knob_range,
                               _lib.lib.strop_optimizer_get_kind(self._h), key)[2] & KNOB_INT)
        except InvalidArgument:
            return False

    def __setitem__(self, name, value):
        key = _key(OPTIMIZER_KNOBS, name, "optimizer knob")
        if isinstance(value, bool) or self._is_int(key):
            check(_lib.lib.strop_optimizer_set_int(self._h, key, int(value)))
        else:
            check(_lib.lib.strop_optimizer_set_float(self._h, key, float(value)))

    def __getitem__(self, name):
        key = _key(OPTIMIZER_KNOBS, name, "optimizer knob")
        if self._is_int(key):
            v = ctypes.c_int()
            check(_lib.lib.strop_optimizer_get_int(self._h, key, ctypes.byref(v)))
            return v.value
        v = ctypes.c_float()
        check(_lib.lib.strop_optimizer_get_float(self._h, key, ctypes.byref(v)))
        return v.value

    @property
    def lr(self):
        return self["lr"]

    @lr.setter
    def lr(self, value):
        self["lr"] = value

    @staticmethod
    def knob_range(kind, name):
        """(lo, hi, flags) of a knob for a kind (flags: 1 int, 2 lo open, 4 hi open)."""
        return _range(_lib.lib.strop_optimizer_knob_range,
                      _kind(OPTIMIZER_KINDS, kind, "optimizer kind"),
                      _key(OPTIMIZER_KNOBS, name, "optimizer knob"))

    @staticmethod
    def knob_name(key):
        n = _lib.lib.strop_optimizer_knob_name(int(key))
        return n.decode() if n else None

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
        check(_lib.lib.strop_scheduler_create(optimizer._h, k, ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_scheduler_free, parents=(optimizer._box,))
        self.optimizer = optimizer
        self._kind = k
        for name, value in knobs.items():
            self[name] = value

    @property
    def kind(self):
        return {v: n for n, v in SCHEDULER_KINDS.items()}.get(self._kind, self._kind)

    def _flags(self, key):
        try:
            return _range(_lib.lib.strop_scheduler_knob_range, self._kind, key)[2]
        except InvalidArgument:
            return 0

    def __setitem__(self, name, value):
        lib = _lib.lib
        key = _key(SCHEDULER_KNOBS, name, "scheduler knob")
        fl = self._flags(key)
        if isinstance(value, str):
            value = _CHOICES[value]
        if fl & KNOB_LIST or isinstance(value, (list, tuple, np.ndarray)):
            v = as_i64(value)
            check(lib.strop_scheduler_set_ints(self._h, key, v.ctypes.data if v.size else None,
                                               int(v.size)))
        elif fl & KNOB_INT or isinstance(value, bool):
            check(lib.strop_scheduler_set_int(self._h, key, int(value)))
        else:
            check(lib.strop_scheduler_set_float(self._h, key, float(value)))

    def __getitem__(self, name):
        lib = _lib.lib
        key = _key(SCHEDULER_KNOBS, name, "scheduler knob")
        fl = self._flags(key)
        if fl & KNOB_LIST:
            n = ctypes.c_int()
            check(lib.strop_scheduler_get_ints(self._h, key, None, 0, ctypes.byref(n)))
            v = np.zeros(max(1, n.value), dtype=np.int64)
            check(lib.strop_scheduler_get_ints(self._h, key, v.ctypes.data, v.size,
                                               ctypes.byref(n)))
            return [int(x) for x in v[:n.value]]
        if fl & KNOB_INT:
            v = ctypes.c_int()
            check(lib.strop_scheduler_get_int(self._h, key, ctypes.byref(v)))
            return v.value
        v = ctypes.c_float()
        check(lib.strop_scheduler_get_float(self._h, key, ctypes.byref(v)))
        return v.value

    @staticmethod
    def knob_range(kind, name):
        return _range(_lib.lib.strop_scheduler_knob_range,
                      _kind(SCHEDULER_KINDS, kind, "scheduler kind"),
                      _key(SCHEDULER_KNOBS, name, "scheduler knob"))

    @staticmethod
    def knob_name(key):
        n = _lib.lib.strop_scheduler_knob_name(int(key))
        return n.decode() if n else None

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
