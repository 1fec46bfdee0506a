# SPDX-License-Identifier: MIT
"""Trainer: one fine-tuning step at a time, evaluation with metrics, the fit loop with a
Python progress callback, checkpoints."""
import ctypes
import math
import os
from dataclasses import dataclass, field

import numpy as np

from . import _lib
from ._handle import Handle, addr, handle_of
from ._knobs import KNOB_INT, KnobTable
from ._util import as_f32, as_token_types, choose, dims_array, enc, shape_of, step_memory_call
from .data import BatchIterator, Dataset, _check_ds
from .errors import Cancelled, InvalidArgument, check, error_for_status
from .tensor import Tensor

__all__ = ["Trainer", "Metrics", "Progress", "LOSSES"]

LOSSES = {"cross_entropy": 1, "mse": 2, "l1": 3, "huber": 4, "bce_with_logits": 5}
_TR = KnobTable("trainer", kinds=False)  # the trainer's knob table, read from the library
TRAIN_KNOBS = {n: (k, int if _TR.flags(k) & KNOB_INT else float) for n, k in _TR.keys.items()}
MONITORS = {"val_loss": 0, "val_accuracy": 1, "train_loss": 2}
_METRIC_KEYS = ("loss", "accuracy", "top5", "macro_f1", "mse", "mae", "samples", "perplexity",
                "tokens")


@dataclass
class Metrics:
    """An evaluation's results (strop_metrics, copied out). NaN where a metric does not apply
    (accuracy for regression, MSE for classification)."""
    loss: float = math.nan
    accuracy: float = math.nan
    top5: float = math.nan
    macro_f1: float = math.nan
    mse: float = math.nan
    mae: float = math.nan
    samples: int = 0
    perplexity: float = math.nan  # cross-entropy: exp of the loss per counted prediction (token)
    tokens: int = 0               # cross-entropy: predictions counted (tokens of a language model)
    num_classes: int = 0
    precision: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recall: np.ndarray = field(default_factory=lambda: np.zeros(0))
    f1: np.ndarray = field(default_factory=lambda: np.zeros(0))
    support: np.ndarray = field(default_factory=lambda: np.zeros(0))
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    @classmethod
    def _take(cls, h):
        lib = _lib.lib
        try:
            m = cls()
            for i, k in enumerate(_METRIC_KEYS):
                setattr(m, k, lib.strop_metrics_get(h, i))
            m.samples = int(m.samples) if not math.isnan(m.samples) else 0
            m.tokens = int(m.tokens) if not math.isnan(m.tokens) else 0
            c = lib.strop_metrics_num_classes(h)
            m.num_classes = c
            per = [np.array([lib.strop_metrics_class(h, k, w) for k in range(c)])
                   for w in range(4)]
            m.precision, m.recall, m.f1, m.support = per
            # a prediction per token over a vocabulary keeps no confusion matrix (0 entries)
            kept = lib.strop_metrics_confusion(h, None, 0) if c else 0
            conf = np.zeros(c * c if kept > 0 else 0, dtype=np.int64)
            if conf.size:
                lib.strop_metrics_confusion(h, conf.ctypes.data, conf.size)
            m.confusion = conf.reshape(c, c) if conf.size else np.zeros((0, 0), np.int64)
        finally:
            lib.strop_metrics_free(h)
        return m


@dataclass
class Progress:
    """A progress report of Trainer.fit (a copy of strop_progress)."""
    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    global_step: int
    loss: float
    metric: float
    lr: float
    samples_per_sec: float
    val_loss: float
    val_metric: float
    best_epoch: int
    elapsed: float

    @classmethod
    def _from(cls, p):
        return cls("batch" if p.phase == 0 else "epoch_end", p.epoch, p.epochs, p.step,
                   p.steps, p.global_step, p.loss, p.metric, p.lr, p.samples_per_sec,
                   p.val_loss, p.val_metric, p.best_epoch, p.elapsed)


def progress_trampoline(fn, state):
    """A PROGRESS_FN calling fn(Progress): an exception is stored in ``state`` and stops the
    loop (return 1); a truthy return value stops it as well."""
    def cb(p, _user):
        try:
            return 1 if fn(Progress._from(p.contents)) else 0
        except BaseException as e:  # noqa: B902 — re-raised by the caller
            state.capture(e)
            return 1
    return _lib.PROGRESS_FN(cb)


class Trainer(Handle):
    """Drives fine-tuning of a model with an optimizer (and a scheduler): strop_trainer. It
    keeps them alive. ``Trainer(model, opt, scheduler=None, loss="cross_entropy",
    clip_norm=1.0, ...)``; knobs are also ``tr["accum_steps"] = 4``.

    ``step(x, y)`` runs one training step on numpy arrays (float32 C-contiguous ``x`` is used
    in place; class-index ``y`` may be integers) and returns the loss. ``fit(train_iter,
    val_iter, epochs=..., progress=callable)`` runs the loop in C; ``evaluate`` returns
    Metrics.

    A loss computed in Python (distillation, contrastive, a reward): ``out = forward(x)``
    returns the output as a numpy array and keeps the step's activations; ``backward(dout)``
    takes d loss / d output (``out``'s shape) and adds the parameters' gradients; ``apply()``
    makes the optimizer step once ``accum_steps`` backwards were made. Together they are
    ``step`` with the loss taken out (the same accumulation, clipping and numeric guard);
    ``Model.grad(name)`` / ``Model.set_grad(name, g)`` read and write the gradients between.
    """

    def __init__(self, model, optimizer, scheduler=None, **knobs):
        from .model import Model
        from .optim import Optimizer
        mh = handle_of(model, Model, "Trainer: model")
        oh = handle_of(optimizer, Optimizer, "Trainer: optimizer")
        out = ctypes.c_void_p()
        check(_lib.lib.strop_trainer_create(mh, oh, ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_trainer_free,
                  parents=(model._box, optimizer._box))
        self.model, self.optimizer, self.scheduler = model, optimizer, None
        self._loss = ctypes.c_float()
        self._loss_ref = ctypes.byref(self._loss)
        if scheduler is not None:
            self.set_scheduler(scheduler)
        for k, v in knobs.items():
            self[k] = v

    def set_scheduler(self, scheduler):
        """Attaches a Scheduler (None detaches); the trainer keeps it alive."""
        from .optim import Scheduler
        box = self._box
        h = self._h
        if scheduler is not None:
            handle_of(scheduler, Scheduler, "Trainer: scheduler")
            scheduler._box.acquire()
        try:
            check(_lib.lib.strop_trainer_set_scheduler(h, scheduler._h if scheduler else None))
        except BaseException:
            if scheduler is not None:
                scheduler._box.release()
            raise
        old = [p for p in box.parents if getattr(p, "_sched", False)]
        box.parents = tuple(p for p in box.parents if not getattr(p, "_sched", False))
        if scheduler is not None:
            holder = _SchedRef(scheduler._box)
            box.parents += (holder,)
        for o in old:
            o.release()
        self.scheduler = scheduler

    def __setitem__(self, name, value):
        key = _TR.key(name)
        if _TR.flags(key) & KNOB_INT and not isinstance(value, (str, float)):
            check(_lib.lib.strop_trainer_set_int(self._h, key, int(value)))  # exact int64
        else:
            check(_lib.lib.strop_trainer_set_double(self._h, key, _TR.value(key, value)))

    def __getitem__(self, name):
        key = _TR.key(name)
        if _TR.flags(key) & KNOB_INT:
            v = ctypes.c_int64()
            check(_lib.lib.strop_trainer_get_int(self._h, key, ctypes.byref(v)))
            return v.value
        v = ctypes.c_double()
        check(_lib.lib.strop_trainer_get_double(self._h, key, ctypes.byref(v)))
        return v.value

    @staticmethod
    def knob_range(name):
        """(lo, hi, flags) of a trainer knob (flags: strop_knob_flags)."""
        return _TR.range(_TR.key(name))

    @staticmethod
    def knob_name(key):
        return _TR.name(key)

    @staticmethod
    def knob_default(name):
        return _TR.default(_TR.key(name))

    @staticmethod
    def knob_doc(name):
        return _TR.doc(_TR.key(name))

    def set_class_weights(self, weights):
        """Per-class cross-entropy weights (None clears)."""
        if weights is None:
            check(_lib.lib.strop_trainer_set_class_weights(self._h, None, 0))
            return
        w = as_f32(weights, "class weights").reshape(-1)
        check(_lib.lib.strop_trainer_set_class_weights(self._h, w.ctypes.data, w.size))

    # ---- steps ----
    def step(self, x, y, mask=None, token_type_ids=None):
        """One training (micro-)step on a batch; returns the loss as a float. ``mask`` (N, T)
        of 1/0 for a batch of padded sequences (strop_trainer_step_masked); the batch's length
        may differ from step to step. ``token_type_ids`` (N, T) integers: the segment of a text
        pair each token is in, as Model.forward takes them (strop_trainer_step_ext)."""
        lib = _lib.lib
        h = self._h
        tx = ty = tm = tk = None
        try:
            tx = _as_handle(x)
            ty = _as_handle(y)
            tm = _as_handle(mask) if mask is not None else None
            tk = _types_handle(token_type_ids, x)
            side = _side(tm, tk)
            check(lib.strop_trainer_step_ext(h, tx[0], ctypes.byref(side), ty[0],
                                             self._loss_ref, _hold=_held(tm, tk)))
        finally:
            for t in (tx, ty, tm, tk):
                if t is not None and t[1]:
                    lib.strop_tensor_free(t[0])
        return self._loss.value

    # ---- a loss the host computes ----
    def forward(self, x, mask=None, token_type_ids=None):
        """The forward of a training step: the model's output on ``x`` as a new numpy array.
        The activations are held until ``backward`` (or ``discard_forward``). ``mask`` and
        ``token_type_ids`` as for ``step``."""
        lib = _lib.lib
        tx = tm = tk = None
        out = ctypes.c_void_p()
        try:
            tx = _as_handle(x)
            tm = _as_handle(mask) if mask is not None else None
            tk = _types_handle(token_type_ids, x)
            side = _side(tm, tk)
            check(lib.strop_trainer_forward_ext(self._h, tx[0], ctypes.byref(side),
                                                ctypes.byref(out), _hold=_held(tm, tk)))
            res = np.empty(shape_of(lib.strop_tensor_shape, out.value), dtype=np.float32)
            check(lib.strop_tensor_copy_to(out.value, res.ctypes.data, res.size))
            return res
        finally:
            lib.strop_tensor_free(out.value)
            for t in (tx, tm, tk):
                if t is not None and t[1]:
                    lib.strop_tensor_free(t[0])

    def backward(self, dout):
        """Adds the gradients of the pending forward's parameters for ``dout`` = d loss /
        d output (the output's shape); raises NumericError (a skipped step) when ``dout`` is
        not finite."""
        lib = _lib.lib
        td = None
        try:
            td = _as_handle(dout)
            check(lib.strop_trainer_backward(self._h, td[0]))
        finally:
            if td is not None and td[1]:
                lib.strop_tensor_free(td[0])

    def apply(self):
        """The optimizer step of the window, once ``accum_steps`` backwards were made (before
        that, nothing): guard, clipping, update, zeroing, scheduler."""
        check(_lib.lib.strop_trainer_apply(self._h))

    def discard_forward(self):
        """Drops a pending forward without a backward."""
        _lib.lib.strop_trainer_discard_forward(self._h)

    @property
    def global_step(self):
        return _lib.lib.strop_trainer_global_step(self._h)

    @property
    def skipped_steps(self):
        return _lib.lib.strop_trainer_skipped_steps(self._h)

    def step_memory(self, batch, sample_shape=None, limit=None):
        """dict(step, peak) in bytes: the planned peak of one step of this trainer, as
        Model.step_memory plans it but with the trainer's optimizer state, its loss (only the
        cross-entropy runs fused with a last linear layer) and its accum_steps (the gradients
        kept apart; batch is then the micro-batch). Set the trainer first. With limit (bytes,
        or "auto" for the machine's), raises the library's out-of-memory error, naming the
        limit and what would fit, when the peak is over it."""
        return step_memory_call(_lib.lib.strop_trainer_check_memory,
                                _lib.lib.strop_trainer_step_memory, self._h, batch,
                                sample_shape, limit)

    # ---- evaluation ----
    def evaluate(self, data, batch_size=256):
        """Metrics over a Dataset (every sample, in order) or one epoch of a BatchIterator."""
        out = ctypes.c_void_p()
        if isinstance(data, BatchIterator):
            _check_ds(_lib.lib.strop_trainer_eval(self._h, data._h, ctypes.byref(out)))
        elif isinstance(data, Dataset):
            _check_ds(_lib.lib.strop_trainer_eval_dataset(self._h, data._h, int(batch_size),
                                                          ctypes.byref(out)))
        else:
            raise InvalidArgument("Trainer.evaluate: pass a Dataset or a BatchIterator")
        return Metrics._take(out.value)

    # ---- the fit loop ----
    def fit(self, train, val=None, epochs=10, monitor=None, patience=0, min_delta=0.0,
            restore_best=False, checkpoint_every=0, checkpoint_path=None, best_path=None,
            progress=None, max_steps=0):
        """Runs strop_trainer_fit over a training BatchIterator (and an unshuffled validation
        one). ``progress(p: Progress)`` is called after each optimizer step and each epoch;
        returning a true value stops training (fit then returns normally); an exception raised
        in it stops training cleanly and is re-raised here as itself. Returns the history:
        a list of per-epoch dicts.

        ``epochs`` is the iterator's epoch number to stop at, counted over the iterator's life
        (strop_fit_options.epochs): a second ``fit`` on the same iterator runs only the epochs
        still missing — none, returning ``[]``, when it already reached ``epochs``. Pass a
        larger ``epochs`` or a new BatchIterator to train more."""
        from ._callbacks import Pending
        o = _lib.strop_fit_options()
        _lib.lib.strop_fit_options_init(ctypes.byref(o))
        o.epochs = int(epochs)
        if monitor is not None:
            o.monitor = choose(MONITORS, monitor, "monitor")
        o.patience = int(patience)
        o.min_delta = float(min_delta)
        o.restore_best = 1 if restore_best else 0
        o.checkpoint_every = int(checkpoint_every)
        cp = enc(os.fspath(checkpoint_path)) if checkpoint_path is not None else None
        bp = enc(os.fspath(best_path)) if best_path is not None else None
        o.checkpoint_path = cp
        o.best_path = bp
        o.max_steps = int(max_steps)
        state = Pending()
        cb = None
        if progress is not None:
            cb = progress_trampoline(progress, state)
            o.progress = cb
        th = handle_of(train, BatchIterator, "Trainer.fit: train")
        vh = handle_of(val, BatchIterator, "Trainer.fit: val") if val is not None else None
        st = _lib.lib.strop_trainer_fit(self._h, th, vh, ctypes.byref(o))
        del cb  # referenced until here: the library calls it only during fit
        if state.exc is not None:
            err = error_for_status(st) if st != 0 else None
            exc, state.exc = state.exc, None
            raise exc.with_traceback(exc.__traceback__) from err
        if st == Cancelled.status:  # the callback asked to stop
            return self.history()
        _check_ds(st)
        return self.history()

    def history(self):
        """Per-epoch values of the last fit: train/val loss and accuracy."""
        lib, h = _lib.lib, self._h
        rows = []
        for e in range(max(0, lib.strop_trainer_history_len(h))):
            rows.append({"epoch": e,
                         "train_loss": lib.strop_trainer_history(h, e, 0),
                         "train_accuracy": lib.strop_trainer_history(h, e, 1),
                         "val_loss": lib.strop_trainer_history(h, e, 100),
                         "val_accuracy": lib.strop_trainer_history(h, e, 101)})
        return rows

    @property
    def best_epoch(self):
        return _lib.lib.strop_trainer_best_epoch(self._h)

    # ---- checkpoints ----
    def save_checkpoint(self, path):
        check(_lib.lib.strop_trainer_save_checkpoint(self._h, enc(os.fspath(path))))

    def load_checkpoint(self, path):
        check(_lib.lib.strop_trainer_load_checkpoint(self._h, enc(os.fspath(path))))


class _SchedRef:
    """A parent entry of the trainer's box holding one use of its scheduler's box."""
    _sched = True
    __slots__ = ("box",)

    def __init__(self, box):
        self.box = box  # already acquired

    def acquire(self):
        self.box.acquire()

    def release(self):
        self.box.release()


def _types_handle(types, x):
    """_as_handle of validated token_type_ids for batch x, or None"""
    if types is None:
        return None
    shape = tuple(x.shape[:2]) if isinstance(x, Tensor) else np.shape(x)[:2]
    return _as_handle(as_token_types(types, shape))


def _held(*ts):
    """the handles of _as_handle results passed inside a struct, for guard's _hold"""
    return tuple(t[0] for t in ts if t is not None)


def _side(tm, tk):
    """strop_side_inputs of the mask and types handles (or None)"""
    side = _lib.strop_side_inputs()
    _lib.lib.strop_side_inputs_init(ctypes.byref(side))
    side.mask = addr(tm[0]) if tm else None
    side.token_types = addr(tk[0]) if tk else None
    return side


def _as_handle(x):
    """(strop_tensor handle, temporary?, array kept alive) for a Tensor or an array-like batch."""
    if isinstance(x, Tensor):
        return x._h, False, None
    arr = x
    if not (type(arr) is np.ndarray and arr.dtype == np.float32 and arr.flags.c_contiguous
            and arr.flags.writeable):
        arr = as_f32(x, "batch", writable=True)
    rank, dims = dims_array(arr.shape)
    out = ctypes.c_void_p()
    check(_lib.lib.strop_tensor_wrap(arr.ctypes.data, arr.size, rank, dims, ctypes.byref(out)))
    return out.value, True, arr  # arr: a converted copy must outlive the call
