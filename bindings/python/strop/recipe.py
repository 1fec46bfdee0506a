# SPDX-License-Identifier: MIT
"""Recipes: a whole fine-tuning job in one YAML file, edited by key path and run."""
import ctypes
import math
import os
from dataclasses import dataclass
from typing import Optional

from . import _lib
from ._callbacks import Pending
from ._handle import Handle, addr
from ._util import checked_string, choose, enc, snprintf_string
from .data import _check_ds
from .errors import Cancelled, NotFound, check, error_for_status


def _finish(st, obj, state, checker):
    """Ends a C call that ran Python callbacks: re-raises a callback's exception as itself,
    returns obj after a host-requested stop, else raises the status (closing obj)."""
    if state.exc is not None:
        if obj is not None:
            obj.close()
        err = error_for_status(st) if st != 0 else None
        exc, state.exc = state.exc, None
        raise exc from err
    if st == Cancelled.status and obj is not None:
        return obj
    if st != 0:
        if obj is not None:
            obj.close()
        checker(st)
    return obj
from .model import Model
from .train import Metrics, Progress

__all__ = ["Recipe", "Run", "RunEvent"]

_EVENTS = {0: "stage_start", 1: "progress", 2: "stage_end"}
_INFO = {"train_size": 0, "val_size": 1, "test_size": 2, "trainable": 3, "total": 4,
         "stages": 5, "epochs": 6, "best_epoch": 7, "classes": 8}
_SPLITS = {"train": 0, "val": 1, "test": 2}
_HISTORY = ("stage", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
            "lr", "seconds")


@dataclass
class RunEvent:
    """An event of Recipe.run (a copy of strop_run_event)."""
    kind: str
    stage: int
    stages: int
    name: str
    progress: Optional[Progress]
    test_loss: float
    test_accuracy: float
    trainable: int
    total: int


class Recipe(Handle):
    """A parsed, validated recipe (strop_recipe). ``Recipe.load(path)`` or
    ``Recipe.from_string(yaml, base_dir)``; ``r["optimizer.lr"] = "3e-4"`` sets a value (YAML
    text or a Python number/list), ``r["optimizer.lr"]`` reads a scalar as text;
    ``r.run(...)`` returns a Run."""

    def __init__(self):
        raise TypeError("use Recipe.load or Recipe.from_string")

    @classmethod
    def _adopt(cls, h):
        r = cls.__new__(cls)
        r._own(h, _lib.lib.strop_recipe_free)
        return r

    @classmethod
    def load(cls, path):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_recipe_load(enc(os.fspath(path)), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def from_string(cls, yaml, base_dir=None):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_recipe_load_string(
            enc(yaml), enc(os.fspath(base_dir)) if base_dir is not None else None,
            ctypes.byref(out)))
        return cls._adopt(out.value)

    def clone(self):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_recipe_clone(self._h, ctypes.byref(out)))
        return Recipe._adopt(out.value)

    def __setitem__(self, key_path, value):
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        elif not isinstance(value, (str, bytes)):
            value = repr(value)
        check(_lib.lib.strop_recipe_set(self._h, enc(key_path), enc(value)))

    def __getitem__(self, key_path):
        s = snprintf_string(_lib.lib.strop_recipe_get, self._h, enc(key_path))
        if s is None:
            raise NotFound(f"Recipe: no scalar at '{key_path}'")
        return s

    def get(self, key_path, default=None):
        s = snprintf_string(_lib.lib.strop_recipe_get, self._h, enc(key_path))
        return default if s is None else s

    def to_string(self):
        return checked_string(_lib.lib.strop_recipe_to_string, self._h)

    def save(self, path):
        check(_lib.lib.strop_recipe_save(self._h, enc(os.fspath(path))))

    def run(self, mode="finetune", write_outputs=True, baselines=True, base_model=None,
            on_event=None, epochs_cap=0, resume=False):
        """Runs the recipe. ``on_event(RunEvent)`` is called for stage starts, progress and
        stage ends; returning a true value stops the run (the partial Run is returned); an
        exception raised in it stops the run and is re-raised here as itself. ``resume``
        continues from output.checkpoint when it exists (as ``strop finetune --resume``)."""
        o = _lib.strop_run_options()
        _lib.lib.strop_run_options_init(ctypes.byref(o))
        o.mode = choose({"finetune": 0, "train": 1}, mode, "mode")
        o.write_outputs = 1 if write_outputs else 0
        o.baselines = 1 if baselines else 0
        base = (base_model._h,) if base_model is not None else ()
        o.base_model = addr(base[0]) if base else None
        o.epochs_cap = int(epochs_cap)
        o.resume = 1 if resume else 0
        state = Pending()
        cb = None
        if on_event is not None:
            def trampoline(e, _user):
                try:
                    ev = e.contents
                    p = Progress._from(ev.progress.contents) if ev.progress else None
                    return 1 if on_event(RunEvent(
                        _EVENTS.get(ev.kind, str(ev.kind)), ev.stage, ev.stages,
                        (ev.name or b"").decode("utf-8", "replace"), p, ev.test_loss,
                        ev.test_accuracy, ev.trainable, ev.total)) else 0
                except BaseException as exc:  # noqa: B902 — re-raised below
                    state.capture(exc)
                    return 1
            cb = _lib.RUN_FN(trampoline)
            o.on_event = cb
        out = ctypes.c_void_p()
        st = _lib.lib.strop_recipe_run(self._h, ctypes.byref(o), ctypes.byref(out), _hold=base)
        del cb
        return _finish(st, Run._adopt(out.value) if out.value else None, state, _check_ds)

    def tune(self, trials=0, epochs_cap=0, resume=True, on_event=None, time_budget=0.0):
        """Runs the recipe's ``tune:`` section (strop_recipe_tune) and returns the Tuner with
        every trial. ``trials`` counts the finished trials of the trials file too;
        ``time_budget`` (seconds) starts no trial after it. ``on_event(dict)`` gets
        trial_start / epoch / trial_end events (possibly from several threads), "resumed"
        (``path``, ``count`` finished trials read) before the first and "output" (``key``,
        ``path``) for each file written; a true return value stops the search (the running
        trials are recorded as interrupted and run first by the next search), an exception
        stops it and is re-raised here as itself."""
        from .tune import Tuner, _STATUS_NAMES
        o = _lib.strop_tune_options()
        _lib.lib.strop_tune_options_init(ctypes.byref(o))
        o.trials = int(trials)
        o.epochs_cap = int(epochs_cap)
        o.resume = 1 if resume else 0
        o.time_budget = float(time_budget)
        state = Pending()
        cb = None
        if on_event is not None:
            kinds = {0: "trial_start", 1: "epoch", 2: "trial_end", 3: "resumed", 4: "output"}

            def trampoline(e, _user):
                try:
                    ev = e.contents
                    d = {"kind": kinds.get(ev.kind, ev.kind), "trial_id": ev.trial_id,
                         "epoch": ev.epoch, "value": ev.value,
                         "status": _STATUS_NAMES.get(ev.status, ev.status)}
                    if ev.kind >= 3:
                        d.update(path=ev.path.decode() if ev.path else None,
                                 key=ev.key.decode() if ev.key else None, count=ev.count)
                    return 1 if on_event(d) else 0
                except BaseException as exc:  # noqa: B902 — re-raised below
                    state.capture(exc)
                    return 1
            cb = _lib.TUNE_FN(trampoline)
            o.on_event = cb
        out = ctypes.c_void_p()
        st = _lib.lib.strop_recipe_tune(self._h, ctypes.byref(o), ctypes.byref(out))
        del cb
        return _finish(st, Tuner._adopt(out.value) if out.value else None, state, check)

    def evaluate(self, model, split="test"):
        """Metrics of ``model`` on a part ("train", "val", "test") of the recipe's data."""
        out = ctypes.c_void_p()
        w = _SPLITS[split] if isinstance(split, str) else int(split)
        check(_lib.lib.strop_recipe_evaluate(self._h, model._h, w, ctypes.byref(out)))
        return Metrics._take(out.value)


class Run(Handle):
    """The result of Recipe.run (strop_run): the fine-tuned ``model`` (borrowed from the run,
    which it keeps alive), per-stage metrics, the history, sizes and times."""

    def __init__(self):
        raise TypeError("Run objects come from Recipe.run")

    @classmethod
    def _adopt(cls, h):
        r = cls.__new__(cls)
        r._own(h, _lib.lib.strop_run_free)
        r._model = None
        return r

    def info(self, key):
        """An integer fact: train_size, val_size, test_size, trainable, total, stages, epochs,
        best_epoch, classes."""
        return _lib.lib.strop_run_info(self._h, _INFO[key] if isinstance(key, str) else key)

    @property
    def seconds(self):
        return _lib.lib.strop_run_seconds(self._h)

    @property
    def model(self):
        """The trained model, borrowed: it keeps the run alive."""
        if self._model is None or self._model.closed:
            h = _lib.lib.strop_run_model(self._h)
            self._model = Model._adopt(h, owned=False, parents=(self._box,)) if h else None
        return self._model

    @property
    def stages(self):
        """[{name, baseline, test_loss, test_accuracy, val_loss, val_accuracy}, ...]"""
        lib, h = _lib.lib, self._h
        rows = []
        for s in range(max(0, lib.strop_run_info(h, 5))):
            rows.append({"name": snprintf_string(lib.strop_run_stage_name, h, s),
                         "baseline": bool(lib.strop_run_stage_is_baseline(h, s)),
                         "test_loss": lib.strop_run_stage_metric(h, s, 0),
                         "test_accuracy": lib.strop_run_stage_metric(h, s, 1),
                         "val_loss": lib.strop_run_stage_metric(h, s, 100),
                         "val_accuracy": lib.strop_run_stage_metric(h, s, 101)})
        return rows

    def stage_metric(self, stage, key):
        return _lib.lib.strop_run_stage_metric(self._h, int(stage), int(key))

    def history(self):
        """Epoch rows over all stages: dicts with stage, epoch, losses, accuracies, lr,
        seconds."""
        lib, h = _lib.lib, self._h
        out = []
        for r in range(max(0, lib.strop_run_info(h, 6))):
            row = {k: lib.strop_run_history(h, r, i) for i, k in enumerate(_HISTORY)}
            for k in ("stage", "epoch"):
                if not math.isnan(row[k]):
                    row[k] = int(row[k])
            out.append(row)
        return out
