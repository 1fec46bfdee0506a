# SPDX-License-Identifier: MIT
"""Tuner: hyperparameter search (grid, random, Bayesian) driven by ask/tell or by run() with
a Python trial function."""
import ctypes
import math
import os

from . import _lib
from ._callbacks import Pending
from ._handle import Handle
from ._knobs import KNOB_INT, KnobTable
from ._util import choose, enc
from .errors import Cancelled, InvalidArgument, check, error_for_status

__all__ = ["Tuner", "Trial", "TrialPruned", "TrialFailed"]

STRATEGIES = {"grid": 0, "random": 1, "bayes": 2}
DIRECTIONS = {"minimize": 0, "maximize": 1}
STATUS = {"ok": 0, "failed": 1, "pruned": 2, "running": 3, "interrupted": 4}
_STATUS_NAMES = {v: k for k, v in STATUS.items()}
_TU = KnobTable("tuner", kinds=False)  # the tuner's knob table, read from the library
KNOBS = dict(_TU.keys)
PRUNERS = {"none": 0, "median": 1, "halving": 2}
KINDS = {0: "float", 1: "int", 2: "categorical"}


class TrialPruned(Exception):
    """Raise from a trial function to end the trial as pruned (value: the last reported one,
    or the value given)."""

    def __init__(self, value=math.nan):
        super().__init__(value)
        self.value = value


class TrialFailed(Exception):
    """Raise from a trial function to record the trial as failed and go on with the search."""


class Trial:
    """One trial of a Tuner: ``trial["optimizer.lr"]`` (float, int or the categorical string),
    ``trial.params`` (all of them), ``trial.report(step, value)`` -> True when it should be
    pruned."""

    def __init__(self, tuner, trial_id):
        self.tuner = tuner
        self.id = int(trial_id)

    def __getitem__(self, name):
        t = self.tuner
        lib, h = _lib.lib, t._h
        kind = t._kinds().get(name)
        if kind == "categorical":
            idx, n = ctypes.c_int64(), ctypes.c_size_t()
            check(lib.strop_tuner_trial_categorical(h, self.id, enc(name), ctypes.byref(idx),
                                                    None, 0, ctypes.byref(n)))
            buf = ctypes.create_string_buffer(n.value + 1)
            check(lib.strop_tuner_trial_categorical(h, self.id, enc(name), None, buf,
                                                    n.value + 1, None))
            return buf.value.decode("utf-8", "replace")
        if kind == "int":
            v = ctypes.c_int64()
            check(lib.strop_tuner_trial_int(h, self.id, enc(name), ctypes.byref(v)))
            return v.value
        d = ctypes.c_double()
        check(lib.strop_tuner_trial_float(h, self.id, enc(name), ctypes.byref(d)))
        return d.value

    def value_at(self, index):
        """The raw value of parameter ``index`` (a categorical's choice index)."""
        d = ctypes.c_double()
        check(_lib.lib.strop_tuner_trial_value(self.tuner._h, self.id, int(index),
                                               ctypes.byref(d)))
        return d.value

    @property
    def params(self):
        return {n: self[n] for n in self.tuner.params}

    def report(self, step, value):
        prune = ctypes.c_int()
        check(_lib.lib.strop_tuner_report(self.tuner._h, self.id, int(step), float(value),
                                          ctypes.byref(prune)))
        return bool(prune.value)

    def result(self):
        """dict(status, value, seconds, reports=[(step, value), ...])."""
        lib, h = _lib.lib, self.tuner._h
        st, v, s, n = ctypes.c_int(), ctypes.c_double(), ctypes.c_double(), ctypes.c_int64()
        check(lib.strop_tuner_trial_result(h, self.id, ctypes.byref(st), ctypes.byref(v),
                                           ctypes.byref(s), ctypes.byref(n)))
        reps = []
        for i in range(n.value):
            step, val = ctypes.c_int64(), ctypes.c_double()
            check(lib.strop_tuner_trial_report_at(h, self.id, i, ctypes.byref(step),
                                                  ctypes.byref(val)))
            reps.append((step.value, val.value))
        return {"status": _STATUS_NAMES.get(st.value, st.value), "value": v.value,
                "seconds": s.value, "reports": reps}

    def __repr__(self):
        return f"<strop.Trial {self.id}>"


class Tuner(Handle):
    """A hyperparameter search (strop_tuner) over recipe key paths.

        t = strop.Tuner("bayes", seed=1, direction="maximize")
        t.add_float("optimizer.lr", 1e-4, 1e-1, log=True)
        t.run(lambda trial: train_and_score(trial["optimizer.lr"]), n_trials=20)
        best_id, best_value = t.best()
    """

    def __init__(self, strategy="random", seed=0, direction="minimize", **knobs):
        s = choose(STRATEGIES, strategy, "strategy")
        d = choose(DIRECTIONS, direction, "direction")
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tuner_create(s, int(seed), d, ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_tuner_free)
        for k, v in knobs.items():
            self[k] = v

    @classmethod
    def _adopt(cls, h):
        t = cls.__new__(cls)
        t._own(h, _lib.lib.strop_tuner_free)
        return t

    def add_float(self, name, lo, hi, log=False):
        check(_lib.lib.strop_tuner_add_float(self._h, enc(name), float(lo), float(hi),
                                             1 if log else 0))
        return self

    def add_int(self, name, lo, hi, log=False):
        check(_lib.lib.strop_tuner_add_int(self._h, enc(name), int(lo), int(hi),
                                           1 if log else 0))
        return self

    def add_categorical(self, name, choices):
        arr = (ctypes.c_char_p * max(1, len(choices)))(*[enc(c) for c in choices])
        check(_lib.lib.strop_tuner_add_categorical(self._h, enc(name), arr, len(choices)))
        return self

    @property
    def params(self):
        lib, h = _lib.lib, self._h
        return [lib.strop_tuner_param_name(h, i).decode()
                for i in range(lib.strop_tuner_num_params(h))]

    def _kinds(self):
        lib, h = _lib.lib, self._h
        return {lib.strop_tuner_param_name(h, i).decode():
                KINDS.get(lib.strop_tuner_param_kind(h, i))
                for i in range(lib.strop_tuner_num_params(h))}

    def param_kind(self, index):
        k = _lib.lib.strop_tuner_param_kind(self._h, int(index))
        if k < 0:
            raise InvalidArgument(f"Tuner.param_kind: no parameter {index}")
        return KINDS[k]

    def __setitem__(self, name, value):
        key = _TU.key(name)
        check(_lib.lib.strop_tuner_set_double(self._h, key, _TU.value(key, value)))

    def __getitem__(self, name):
        key = _TU.key(name)
        d = ctypes.c_double()
        check(_lib.lib.strop_tuner_get_double(self._h, key, ctypes.byref(d)))
        return int(d.value) if _TU.flags(key) & KNOB_INT else d.value

    @staticmethod
    def knob_range(name):
        return _TU.range(_TU.key(name))

    @staticmethod
    def knob_name(key):
        return _TU.name(key)

    @staticmethod
    def knob_default(name):
        return _TU.default(_TU.key(name))

    @staticmethod
    def knob_doc(name):
        return _TU.doc(_TU.key(name))

    # ---- ask / tell ----
    def ask(self):
        tid = ctypes.c_int64()
        check(_lib.lib.strop_tuner_ask(self._h, ctypes.byref(tid)))
        return Trial(self, tid.value)

    def tell(self, trial, value, status="ok"):
        tid = trial.id if isinstance(trial, Trial) else int(trial)
        s = choose(STATUS, status, "trial status")
        v = math.nan if value is None else float(value)
        check(_lib.lib.strop_tuner_tell(self._h, tid, v, s))

    def best(self):
        """(trial id, value) of the best finished trial; StateError when none finished."""
        tid, v = ctypes.c_int64(), ctypes.c_double()
        check(_lib.lib.strop_tuner_best(self._h, ctypes.byref(tid), ctypes.byref(v)))
        return tid.value, v.value

    @property
    def exhausted(self):
        return bool(_lib.lib.strop_tuner_is_exhausted(self._h))

    @property
    def grid_size(self):
        return _lib.lib.strop_tuner_grid_size(self._h)

    def __len__(self):
        return _lib.lib.strop_tuner_num_trials(self._h)

    @property
    def trials(self):
        lib, h = _lib.lib, self._h
        return [Trial(self, lib.strop_tuner_trial_id(h, i)) for i in range(len(self))]

    def set_log(self, path):
        check(_lib.lib.strop_tuner_set_log(
            self._h, enc(os.fspath(path)) if path is not None else None))

    def resume(self, path):
        check(_lib.lib.strop_tuner_resume(self._h, enc(os.fspath(path))))

    def run(self, fn, n_trials):
        """Runs ``n_trials`` trials through ``fn(trial) -> value`` (strop_tuner_run). Raise
        TrialPruned or TrialFailed inside ``fn`` to end a trial that way; any other exception
        (KeyboardInterrupt too) stops the search -- the trial is recorded as "interrupted" and
        is asked again first by the next run or a resume -- and is re-raised here as itself.
        With the n_workers knob > 1, ``fn`` runs on several threads at once."""
        state = Pending()

        def trampoline(_t, trial_id, value_out, _user):
            try:
                value_out[0] = float(fn(Trial(self, trial_id)))
                return 0
            except TrialPruned as e:
                value_out[0] = float(e.value)
                return 2
            except TrialFailed:
                value_out[0] = math.nan
                return 1
            except BaseException as e:  # noqa: B902 — stops the search, re-raised below
                state.capture(e)
                value_out[0] = math.nan
                return -1
        cb = _lib.TRIAL_FN(trampoline)
        st = _lib.lib.strop_tuner_run(self._h, int(n_trials), cb, None)
        del cb
        if state.exc is not None:
            err = error_for_status(st) if st != 0 else None
            exc, state.exc = state.exc, None
            raise exc from err
        if st == Cancelled.status:
            return
        check(st)
