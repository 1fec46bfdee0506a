# SPDX-License-Identifier: MIT
"""Datasets (from numpy, callbacks, IDX, CSV, NPY, text), views over them, batch iterators
and vocabularies."""
import ctypes
import os

import numpy as np

from . import _callbacks, _lib
from ._handle import Handle, handle_of
from ._util import (as_f32, as_i64, as_token_types, choose, dims_array, enc, shape_of,
                    snprintf_string)
from .errors import InvalidArgument, check, error_for_status

__all__ = ["Dataset", "BatchIterator", "Vocab", "CLASSES_INFER", "load_image"]

CLASSES_INFER = -1
_CSV_LABEL_MODES = {"index": 0, "names": 1, "names_sorted": 2, "regression": 3}
_TEXT_TASKS = {"classify": 0, "causal_lm": 1, "prompt_response": 2}
_TEXT_FORMATS = {"auto": 0, "jsonl": 1, "csv": 2, "plain": 3}
_TEXT_PADDING = {"longest": 1, "max_length": 2}
_RESIZE_MODES = {"nearest": 0, "bilinear": 1, "bilinear_aa": 2}


def _mode(mode):
    return choose(_RESIZE_MODES, mode, "resize mode")


def _text_of(fn, *args):
    n = fn(*args, None, 0)
    if n < 0:
        return None
    buf = ctypes.create_string_buffer(n + 1)
    fn(*args, buf, n + 1)
    return buf.value.decode("utf-8", "surrogateescape")


def load_image(path, channels=3):
    """One JPEG or PNG file as a float32 array (C, H, W) of values in [0, 255]
    (strop_image_load: PIL's conversions to 1, 3 or 4 channels)."""
    from .tensor import Tensor
    out = ctypes.c_void_p()
    check(_lib.lib.strop_image_load(enc(os.fspath(path)), int(channels), ctypes.byref(out)))
    return Tensor._adopt(out.value).numpy()


def _check_ds(status):
    """check(), re-raising an exception from a Python fill callback as itself — when it is
    the one this call's error reports (its text is in the library's sentence): one left by an
    abandoned prefetch, or raised in another thread, is dropped, not raised in its place."""
    if status != 0:
        pend = _callbacks.dataset_pending
        if status == -11 and pend.exc is not None:
            err = error_for_status(status)
            exc, pend.exc = pend.exc, None
            text = _callback_text(exc)[:60]
            if text in str(err):
                raise exc from err
            raise err
        raise error_for_status(status)


def _callback_text(e):
    """what the fill trampoline tells the library of an exception e"""
    return f"{type(e).__name__}: {e}".encode("utf-8", "replace").decode("utf-8", "replace")


@_lib.RELEASE_FN
def _release(user_data):
    _callbacks.reclaim(user_data)


def _fill_trampoline(state):
    fn, in_n, tgt_n = state

    def fill(index, inp, tgt, message, cap, _user):
        try:
            x, y = fn(int(index))
            x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
            y = np.ascontiguousarray(y, dtype=np.float32).reshape(-1)
            if x.size != in_n or y.size != tgt_n:
                raise ValueError(f"dataset callback: sample {index}: got {x.size} input and "
                                 f"{y.size} target values, expected {in_n} and {tgt_n}")
            ctypes.memmove(inp, x.ctypes.data, 4 * in_n)
            ctypes.memmove(tgt, y.ctypes.data, 4 * tgt_n)
            return 0
        except BaseException as e:  # noqa: B902 — carried to the caller
            _callbacks.dataset_pending.capture(e)
            msg = _callback_text(e).encode("utf-8", "replace")[:cap - 1]
            ctypes.memmove(message, msg + b"\0", len(msg) + 1)
            return 1
    return _lib.FILL_FN(fill)


class Dataset(Handle):
    """An immutable set of (input, target) samples (strop_dataset).

    Make one with ``Dataset.from_numpy(x, y)``, ``from_callback``, ``load_idx``, ``load_csv``,
    ``load_npy``, ``load_text``; derive views with ``subset``, ``filter_classes``, ``few_shot``,
    ``split``, ``one_hot``, ``reshape`` (views share storage, which the library reference
    counts: a source may be closed before its views). ``ds[i]`` gives one sample as numpy
    arrays; ``ds.batches(64, shuffle=True)`` a BatchIterator.
    """

    def __init__(self):
        raise TypeError("use Dataset.from_numpy, from_callback or a load_* function")

    @classmethod
    def _adopt(cls, handle, parents=(), keep=None):
        d = cls.__new__(cls)
        d._own(handle, _lib.lib.strop_dataset_free, parents, keep)
        return d

    def _derive(self, handle):
        # wrapped arrays are released by the library's release callback when the last view
        # goes; a callback dataset has no such hook, so its views keep its box (and callable)
        cb = self._box.keep is not None
        return Dataset._adopt(handle, parents=(self._box,) if cb else ())

    # ---- sources ----
    @classmethod
    def from_numpy(cls, x, y, num_classes=None, copy=False):
        """A dataset over numpy arrays: ``x`` of shape (N, *input_shape) and ``y`` of N labels
        (classification) or shape (N, *target_shape) (regression).

        ``num_classes``: None infers the task — integer ``y`` of shape (N,) or (N, 1) is
        classification with max(y)+1 classes, float ``y`` regression (a 1-D float ``y`` gets
        target shape (1,)); an int > 0 is classification with that many classes; 0 forces
        regression; -1 (CLASSES_INFER) classification with inferred classes.

        ``copy=False`` (default) lends the arrays to the library (strop_dataset_wrap): float32
        C-contiguous inputs are used in place and kept alive until the library releases them
        (when the dataset, its views and iterators are all closed) — do not modify them
        meanwhile. Other dtypes or layouts are converted first (a copy). ``copy=True`` makes
        the library copy (strop_dataset_from_memory).
        """
        xa = as_f32(x, "x")
        if xa.ndim == 0:
            from .errors import ShapeError
            raise ShapeError("Dataset.from_numpy: x is a scalar; give N samples, shaped "
                             "(N, *input_shape)")
        if xa.ndim == 1:
            xa = xa.reshape(-1, 1)
        ya_in = np.asarray(y)
        n = xa.shape[0]
        if num_classes is None:
            classify = ya_in.dtype.kind in "iub" and (ya_in.ndim == 1 or ya_in.shape[1:] == (1,))
            num_classes = CLASSES_INFER if classify else 0
        num_classes = int(num_classes)
        ya = as_f32(ya_in, "y")
        if num_classes != 0:
            ya = ya.reshape(-1) if ya.ndim == 2 and ya.shape[1] == 1 else ya
            tgt_shape = ya.shape[1:]
        else:
            if ya.ndim == 1:
                ya = ya.reshape(-1, 1)
            tgt_shape = ya.shape[1:]
        if ya.shape[0] != n:
            raise InvalidArgument(f"Dataset.from_numpy: x has {n} samples but y has "
                                  f"{ya.shape[0]}")
        in_rank, in_dims = dims_array(xa.shape[1:])
        t_rank, t_dims = dims_array(tgt_shape)
        out = ctypes.c_void_p()
        lib = _lib.lib
        if copy:
            check(lib.strop_dataset_from_memory(xa.ctypes.data, ya.ctypes.data, n, in_rank,
                                                in_dims, t_rank, t_dims, num_classes,
                                                ctypes.byref(out)))
            return cls._adopt(out.value)
        key = _callbacks.lend((xa, ya))
        st = lib.strop_dataset_wrap(xa.ctypes.data, ya.ctypes.data, n, in_rank, in_dims,
                                    t_rank, t_dims, num_classes, _release, key,
                                    ctypes.byref(out))
        if st != 0:
            _callbacks.reclaim(key)  # on failure the library does not call release
            check(st)
        return cls._adopt(out.value)

    @classmethod
    def from_callback(cls, n, fn, input_shape, target_shape=(), num_classes=0):
        """A dataset whose sample ``i`` is ``fn(i) -> (x, y)`` (array-likes of the input and
        target shapes; ``y`` a class index when ``target_shape`` is ()). An exception in
        ``fn`` fails the read and is re-raised in the caller (chained to a CallbackError).
        ``num_classes`` must be > 0 for classification or 0 for regression."""
        in_rank, in_dims = dims_array(input_shape)
        t_rank, t_dims = dims_array(target_shape)
        in_n = int(np.prod(input_shape))
        tgt_n = int(np.prod(target_shape)) if len(target_shape) else 1
        cfn = _fill_trampoline((fn, in_n, tgt_n))
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_from_callback(int(n), in_rank, in_dims, t_rank,
                                                   t_dims if t_rank else None,
                                                   int(num_classes), cfn, None,
                                                   ctypes.byref(out)))
        return cls._adopt(out.value, keep=(fn, cfn))

    @classmethod
    def load_idx(cls, images, labels, num_classes=CLASSES_INFER):
        """An IDX pair (MNIST format, gzip or plain). uint8 images read as [0, 255]: add
        ``scale(1/255)`` to the iterator, or use ``Dataset.from_numpy`` on scaled arrays."""
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_idx(enc(os.fspath(images)), enc(os.fspath(labels)),
                                              int(num_classes), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load_csv(cls, path, delimiter=None, header=None, skip_lines=None, sklearn_header=None,
                 label_column=None, label_name=None, label_mode=None, num_classes=None):
        """A CSV table; options as strop_csv_options (None keeps the library's default).
        ``label_mode`` is "index", "names", "names_sorted" or "regression"."""
        o = _lib.strop_csv_options()
        _lib.lib.strop_csv_options_init(ctypes.byref(o))
        if delimiter is not None:
            o.delimiter = ord(delimiter) if isinstance(delimiter, str) else int(delimiter)
        if header is not None:
            o.header = int(bool(header))
        if skip_lines is not None:
            o.skip_lines = int(skip_lines)
        if sklearn_header is not None:
            o.sklearn_header = int(bool(sklearn_header))
        if label_column is not None:
            o.label_column = int(label_column)
        name = enc(label_name)
        if name is not None:
            o.label_name = name
        if label_mode is not None:
            o.label_mode = choose(_CSV_LABEL_MODES, label_mode, "label_mode")
        if num_classes is not None:
            o.num_classes = int(num_classes)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_csv(enc(os.fspath(path)), ctypes.byref(o),
                                              ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load_text_file(cls, path, tokenizer, *, task="classify", format=None, text=None,
                       pair=None, label=None, response=None, prompt_template=None,
                       max_length=None, truncate=None, padding=None, pack=None, stride=None,
                       num_classes=None, chat_template=None, cache_dir=None):
        """A text dataset from a JSON Lines, CSV or plain-text file, tokenised once with
        ``tokenizer`` (a strop.Tokenizer) into samples of ``max_length`` ids with padding
        masks (strop_dataset_load_text_file). ``task`` is "classify", "causal_lm" or
        "prompt_response"; ``format`` "jsonl", "csv" or "plain" (None: from the file name);
        ``padding`` "longest" (batches cut to their longest row) or "max_length"; the field
        names, ``truncate``, ``pack``, ``stride`` and ``num_classes`` as strop_text_options
        (None keeps the library's default). ``chat_template`` (prompt_response): True renders
        each record with the tokenizer's own chat template, a str with that template (or one
        of the tokenizer's named templates); None or False: no chat template. ``cache_dir``:
        a folder where the tokenised dataset is kept and reused while the file, the tokenizer
        and these options are unchanged (None: no cache)."""
        o = _lib.strop_text_options()
        _lib.lib.strop_text_options_init(ctypes.byref(o))
        o.task = _TEXT_TASKS[task] if isinstance(task, str) else int(task)
        if format is not None:
            o.format = _TEXT_FORMATS[format] if isinstance(format, str) else int(format)
        keep = []  # the encoded strings live until the call returns
        for field, value in (("text_field", text), ("pair_field", pair), ("label_field", label),
                             ("response_field", response), ("prompt_template", prompt_template)):
            if value is not None:
                keep.append(enc(value))
                setattr(o, field, keep[-1])
        if max_length is not None:
            o.max_length = int(max_length)
        if truncate is not None:
            o.truncate = int(bool(truncate))
        if padding is not None:
            o.padding = _TEXT_PADDING[padding] if isinstance(padding, str) else int(padding)
        if pack is not None:
            o.pack = int(bool(pack))
        if stride is not None:
            o.stride = int(stride)
        if num_classes is not None:
            o.num_classes = int(num_classes)
        if cache_dir is not None:
            keep.append(enc(os.fspath(cache_dir)))
            o.cache_dir = keep[-1]
        if chat_template is not None and chat_template is not False:
            o.chat = 1
            if chat_template is not True:
                keep.append(enc(chat_template))
                o.chat_template = keep[-1]
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_text_file(enc(os.fspath(path)), tokenizer._h,
                                                    ctypes.byref(o), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load_npy(cls, x_path, y_path, num_classes=CLASSES_INFER):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_npy(enc(os.fspath(x_path)), enc(os.fspath(y_path)),
                                              int(num_classes), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load_images(cls, path, channels=None, skip_bad=None, max_pixels=None, cache_bytes=None):
        """A folder of class folders of JPEG/PNG images (torchvision's ImageFolder order), or
        a CSV / JSON-lines list of path,label (strop_dataset_load_images). Samples are
        (C, H, W) in [0, 255]; images of several sizes need a resize or crop in the iterator
        (``resize_shorter``, ``center_crop``, ``random_resized_crop``)."""
        o = _lib.strop_image_options()
        _lib.lib.strop_image_options_init(ctypes.byref(o))
        if channels is not None:
            o.channels = int(channels)
        if skip_bad is not None:
            o.skip_bad = int(bool(skip_bad))
        if max_pixels is not None:
            o.max_pixels = int(max_pixels)
        if cache_bytes is not None:
            o.cache_bytes = int(cache_bytes)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_images(enc(os.fspath(path)), ctypes.byref(o),
                                                 ctypes.byref(out)))
        return cls._adopt(out.value)

    @property
    def skipped(self):
        """Why each file load_images(skip_bad=True) left out was refused: a list of sentences."""
        lib = _lib.lib
        return [_text_of(lib.strop_dataset_skipped, self._h, i)
                for i in range(lib.strop_dataset_skipped_count(self._h))]

    def image_path(self, index):
        """The file of sample ``index`` of an image dataset, or None for other sources."""
        return _text_of(_lib.lib.strop_dataset_image_path, self._h, int(index))

    @property
    def varies(self):
        """True when the samples differ in shape (images of several sizes)."""
        return _lib.lib.strop_dataset_varies(self._h) == 1

    def sample_shape(self, index):
        """The input shape of sample ``index`` (an image's own size)."""
        dims = (ctypes.c_int64 * 8)()
        n = _lib.lib.strop_dataset_sample_shape(self._h, int(index), dims, 8)
        if n < 0:
            raise InvalidArgument(f"sample_shape: index {index} out of range")
        return tuple(dims[:n])

    @classmethod
    def load_text(cls, path, vocab, seq_len, stride=None):
        """A language-modelling dataset of windows of ``seq_len`` token ids."""
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_text(enc(os.fspath(path)), vocab._h, int(seq_len),
                                               int(stride or seq_len), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load_text_classes(cls, paths, labels, vocab, seq_len, stride=None):
        """A text-classification dataset: windows of each file labelled with its class."""
        arr = (ctypes.c_char_p * len(paths))(*[enc(os.fspath(p)) for p in paths])
        lab = as_i64(labels)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_load_text_classes(arr, lab.ctypes.data, len(paths),
                                                       vocab._h, int(seq_len),
                                                       int(stride or seq_len),
                                                       ctypes.byref(out)))
        return cls._adopt(out.value)

    # ---- accessors ----
    def __len__(self):
        return _lib.lib.strop_dataset_size(self._h)

    def set_mask(self, mask):
        """Gives the samples padding masks (n, T) of 1 (token) and 0 (padding): batches then
        carry them (``BatchIterator.mask``) and ``Trainer.fit`` / ``evaluate`` pass them to the
        model (strop_dataset_set_mask). ``None`` removes them. Only on a dataset made by a
        source, before making views or iterators."""
        if mask is None:
            check(_lib.lib.strop_dataset_set_mask(self._h, None, 0))
            return
        m = as_f32(mask, "mask")
        check(_lib.lib.strop_dataset_set_mask(self._h, m.ctypes.data, m.size))

    @property
    def has_mask(self):
        """True when the samples carry padding masks."""
        return bool(_lib.lib.strop_dataset_has_mask(self._h))

    def set_token_types(self, token_type_ids):
        """Gives the samples token types (n, T) of integers (the segment of a text pair each
        position is in): batches then carry them (``BatchIterator.token_types``) and
        ``Trainer.fit`` / ``evaluate`` pass them to the model beside the mask
        (strop_dataset_set_token_types). Text datasets of pairs have them already. ``None``
        removes them. Only on a dataset made by a loader, not a view."""
        if token_type_ids is None:
            check(_lib.lib.strop_dataset_set_token_types(self._h, None, 0))
            return
        arr = np.asarray(token_type_ids)
        k = as_token_types(arr, (len(self), arr.shape[1] if arr.ndim == 2 else -1))
        check(_lib.lib.strop_dataset_set_token_types(self._h, k.ctypes.data, k.size))

    @property
    def has_token_types(self):
        """True when the samples carry token types (text pairs, or set_token_types)."""
        return bool(_lib.lib.strop_dataset_has_token_types(self._h))

    @property
    def input_shape(self):
        return shape_of(_lib.lib.strop_dataset_input_shape, self._h)

    @property
    def target_shape(self):
        """() for a class index."""
        return shape_of(_lib.lib.strop_dataset_target_shape, self._h)

    @property
    def num_classes(self):
        return _lib.lib.strop_dataset_num_classes(self._h)

    def class_name(self, cls):
        """The name of class ``cls`` (CSV label strings), or None."""
        lib = _lib.lib
        n = lib.strop_dataset_class_name(self._h, int(cls), None, 0)
        if n < 0:
            return None
        buf = ctypes.create_string_buffer(n + 1)
        lib.strop_dataset_class_name(self._h, int(cls), buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def __getitem__(self, index):
        """Sample ``index`` as (input array, target array or float class index)."""
        index = int(index)
        if index < 0:
            index += len(self)
        x = np.empty(self.sample_shape(index) if self.varies else self.input_shape,
                     dtype=np.float32)
        ts = self.target_shape
        y = np.empty(ts if ts else (1,), dtype=np.float32)
        _check_ds(_lib.lib.strop_dataset_get(self._h, index, x.ctypes.data, x.size,
                                             y.ctypes.data, y.size))
        return x, (y if ts else float(y[0]))

    def class_counts(self):
        n = self.num_classes
        counts = np.zeros(max(n, 1), dtype=np.int64)
        _check_ds(_lib.lib.strop_dataset_class_counts(self._h, counts.ctypes.data, counts.size))
        return counts[:n]

    def channel_stats(self, scale=1.0):
        """(mean, std) arrays per channel, after multiplying by ``scale``."""
        cap = 64
        mean = np.zeros(cap, np.float32)
        std = np.zeros(cap, np.float32)
        ch = ctypes.c_int64()
        _check_ds(_lib.lib.strop_dataset_channel_stats(self._h, float(scale), mean.ctypes.data,
                                                       std.ctypes.data, cap, ctypes.byref(ch)))
        c = min(ch.value, cap)
        return mean[:c].copy(), std[:c].copy()

    # ---- views ----
    def subset(self, indices):
        idx = as_i64(indices)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_subset(self._h, idx.ctypes.data, idx.size,
                                            ctypes.byref(out)))
        return self._derive(out.value)

    def filter_classes(self, classes):
        c = as_i64(classes)
        out = ctypes.c_void_p()
        _check_ds(_lib.lib.strop_dataset_filter_classes(self._h, c.ctypes.data, c.size,
                                                        ctypes.byref(out)))
        return self._derive(out.value)

    def few_shot(self, k, seed=0):
        out = ctypes.c_void_p()
        _check_ds(_lib.lib.strop_dataset_few_shot(self._h, int(k), int(seed),
                                                  ctypes.byref(out)))
        return self._derive(out.value)

    def split(self, train=0.8, val=0.1, seed=0, stratified=False):
        """(train, val, test) views; sizes round(n*train), round(n*val), the rest."""
        t, v, s = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        _check_ds(_lib.lib.strop_dataset_split(self._h, float(train), float(val), int(seed),
                                               1 if stratified else 0, ctypes.byref(t),
                                               ctypes.byref(v), ctypes.byref(s)))
        return self._derive(t.value), self._derive(v.value), self._derive(s.value)

    def one_hot(self):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_one_hot(self._h, ctypes.byref(out)))
        return self._derive(out.value)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        rank, dims = dims_array(shape)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_dataset_reshape(self._h, rank, dims, ctypes.byref(out)))
        return self._derive(out.value)

    def batches(self, batch_size=32, seed=0, shuffle=False, drop_last=False, prefetch=False):
        """A BatchIterator over this dataset."""
        return BatchIterator(self, batch_size, seed, shuffle, drop_last, prefetch)

    def numpy(self):
        """Every sample copied out: (x of shape (N, *input_shape), y)."""
        it = BatchIterator(self, max(1, len(self)))
        try:
            xs, ys = [], []
            for x, y in it:
                xs.append(x)
                ys.append(y)
        finally:
            it.close()
        return np.concatenate(xs), np.concatenate(ys)

    def __repr__(self):
        if self.closed:
            return "<strop.Dataset closed>"
        return (f"<strop.Dataset n={len(self)} input={self.input_shape} "
                f"target={self.target_shape} classes={self.num_classes}>")


class BatchIterator(Handle):
    """Batches of a dataset, epoch after epoch (strop_batch_iter). Iterating yields one epoch
    of (inputs, targets) numpy copies; ``next_batch()`` returns the next batch or None at the
    end of an epoch. Add transforms (``scale``, ``normalize``, ``hflip``, ``random_crop``,
    ``resize``, ``resize_shorter``, ``center_crop``, ``random_resized_crop``, ``color_jitter``)
    and ``workers`` before the first batch. Pass it to ``Trainer.fit``/``Trainer.evaluate``."""

    def __init__(self, dataset, batch_size=32, seed=0, shuffle=False, drop_last=False,
                 prefetch=False):
        flags = (1 if shuffle else 0) | (2 if drop_last else 0) | (4 if prefetch else 0)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_batch_iter_create(handle_of(dataset, Dataset, "BatchIterator: "
                                                         "dataset"),
                                               int(batch_size), int(seed), flags,
                                               ctypes.byref(out)))
        # the library keeps the dataset's storage alive; a callback dataset's box is kept
        # so its Python callable outlives the iterator
        cb = dataset._box if dataset._box.keep is not None else None
        self._own(out.value, _lib.lib.strop_batch_iter_free, parents=(cb,))
        self.batch_size = int(batch_size)

    def scale(self, factor):
        check(_lib.lib.strop_batch_iter_add_scale(self._h, float(factor)))
        return self

    def normalize(self, mean=None, std=None, channels=None):
        """(x - mean[c]) / std[c]; both None: computed from the data now."""
        if mean is None and std is None:
            shape = self.input_shape
            c = channels or (shape[0] if len(shape) == 3 else 1)
            _check_ds(_lib.lib.strop_batch_iter_add_normalize(self._h, c, None, None))
            return self
        m = np.ascontiguousarray(np.atleast_1d(mean), dtype=np.float32)
        s = np.ascontiguousarray(np.atleast_1d(std), dtype=np.float32)
        if m.size != s.size:
            raise InvalidArgument(f"normalize: {m.size} means but {s.size} stds")
        check(_lib.lib.strop_batch_iter_add_normalize(self._h, channels or m.size,
                                                      m.ctypes.data, s.ctypes.data))
        return self

    def hflip(self, p=0.5):
        check(_lib.lib.strop_batch_iter_add_hflip(self._h, float(p)))
        return self

    def random_crop(self, height, width, padding=0):
        check(_lib.lib.strop_batch_iter_add_random_crop(self._h, int(height), int(width),
                                                        int(padding)))
        return self

    def resize(self, height, width, mode="bilinear"):
        """To height x width; mode "bilinear", "nearest" or "bilinear_aa" (antialiased)."""
        check(_lib.lib.strop_batch_iter_add_resize(self._h, int(height), int(width),
                                                   _mode(mode)))
        return self

    def resize_shorter(self, size, max_size=0, mode="bilinear_aa"):
        """torchvision's Resize(size): the shorter side to ``size``."""
        check(_lib.lib.strop_batch_iter_add_resize_shorter(self._h, int(size), int(max_size),
                                                           _mode(mode)))
        return self

    def center_crop(self, height, width=None):
        """torchvision's CenterCrop((height, width)) (zero padding when larger)."""
        check(_lib.lib.strop_batch_iter_add_center_crop(self._h, int(height),
                                                        int(height if width is None else width)))
        return self

    def random_resized_crop(self, height, width=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            mode="bilinear_aa"):
        """torchvision's RandomResizedCrop((height, width), scale, ratio)."""
        check(_lib.lib.strop_batch_iter_add_random_resized_crop(
            self._h, int(height), int(height if width is None else width), float(scale[0]),
            float(scale[1]), float(ratio[0]), float(ratio[1]), _mode(mode)))
        return self

    def color_jitter(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
        """torchvision's ColorJitter on values in [0, 1] (add ``scale(1/255)`` first)."""
        check(_lib.lib.strop_batch_iter_add_color_jitter(self._h, float(brightness),
                                                         float(contrast), float(saturation),
                                                         float(hue)))
        return self

    def workers(self, n):
        """The number of prefetch threads (the iterator needs prefetch=True above 1)."""
        check(_lib.lib.strop_batch_iter_set_workers(self._h, int(n)))
        return self

    @property
    def num_batches(self):
        return _lib.lib.strop_batch_iter_num_batches(self._h)

    def __len__(self):
        return self.num_batches

    @property
    def input_shape(self):
        return shape_of(_lib.lib.strop_batch_iter_input_shape, self._h)

    @property
    def state(self):
        """(epoch, position, seed) for a checkpoint; assign it back to resume."""
        e, p, s = ctypes.c_int64(), ctypes.c_int64(), ctypes.c_int64()
        check(_lib.lib.strop_batch_iter_get_state(self._h, ctypes.byref(e), ctypes.byref(p),
                                                  ctypes.byref(s)))
        return e.value, p.value, s.value

    @state.setter
    def state(self, st):
        check(_lib.lib.strop_batch_iter_set_state(self._h, int(st[0]), int(st[1]), int(st[2])))

    def next_batch(self):
        """(inputs, targets) numpy copies of the next batch, or None when the epoch ended (the
        call after that starts the next epoch)."""
        lib = _lib.lib
        x, y, rows = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_int64()
        _check_ds(lib.strop_batch_iter_next(self._h, ctypes.byref(x), ctypes.byref(y),
                                            ctypes.byref(rows)))
        if rows.value == 0:
            return None
        out = []
        m = lib.strop_batch_iter_mask(self._h)
        self._last_mask = None
        if m:
            self._last_mask = np.empty(shape_of(lib.strop_tensor_shape, m), dtype=np.float32)
            check(lib.strop_tensor_copy_to(m, self._last_mask.ctypes.data, self._last_mask.size))
        k = lib.strop_batch_iter_token_types(self._h)
        self._last_types = None
        if k:
            kt = np.empty(shape_of(lib.strop_tensor_shape, k), dtype=np.float32)
            check(lib.strop_tensor_copy_to(k, kt.ctypes.data, kt.size))
            self._last_types = kt.astype(np.int64)
        for t in (x.value, y.value):
            a = np.empty(shape_of(lib.strop_tensor_shape, t), dtype=np.float32)
            check(lib.strop_tensor_copy_to(t, a.ctypes.data, a.size))
            out.append(a)
        return tuple(out)

    @property
    def mask(self):
        """The padding mask (rows, T) of the batch ``next_batch`` last returned, when the
        dataset carries masks; else None."""
        return getattr(self, "_last_mask", None)

    @property
    def token_types(self):
        """The token types (rows, T), int64, of the batch ``next_batch`` last returned, when
        the dataset carries them (text pairs); else None."""
        return getattr(self, "_last_types", None)

    def __iter__(self):
        """One epoch from the current position."""
        while True:
            b = self.next_batch()
            if b is None:
                return
            yield b


class Vocab(Handle):
    """A token vocabulary (strop_vocab): ``Vocab.build(paths, "chars")``, ``Vocab.load``,
    ``encode(text)`` -> int64 array, ``decode(ids)`` -> str."""

    def __init__(self):
        raise TypeError("use Vocab.build or Vocab.load")

    @classmethod
    def _adopt(cls, h):
        v = cls.__new__(cls)
        v._own(h, _lib.lib.strop_vocab_free)
        return v

    @classmethod
    def build(cls, paths, mode="chars"):
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        m = choose({"bytes": 0, "chars": 1}, mode, "mode")
        arr = (ctypes.c_char_p * max(1, len(paths)))(*[enc(os.fspath(p)) for p in paths])
        out = ctypes.c_void_p()
        check(_lib.lib.strop_vocab_build(arr, len(paths), m, ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load(cls, path):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_vocab_load(enc(os.fspath(path)), ctypes.byref(out)))
        return cls._adopt(out.value)

    def save(self, path):
        check(_lib.lib.strop_vocab_save(self._h, enc(os.fspath(path))))

    def __len__(self):
        return _lib.lib.strop_vocab_size(self._h)

    def encode(self, text):
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        n = ctypes.c_int64()
        check(_lib.lib.strop_vocab_encode(self._h, b, len(b), None, 0, ctypes.byref(n)))
        ids = np.empty(n.value, dtype=np.int64)
        check(_lib.lib.strop_vocab_encode(self._h, b, len(b), ids.ctypes.data, ids.size,
                                          ctypes.byref(n)))
        return ids

    def decode(self, ids):
        a = as_i64(ids)
        s = snprintf_string(_lib.lib.strop_vocab_decode, self._h, a.ctypes.data, a.size)
        if s is None:
            raise error_for_status(-1)
        return s


_ = snprintf_string
