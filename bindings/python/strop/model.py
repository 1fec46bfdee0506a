# SPDX-License-Identifier: MIT
"""Model: a strop_model (a DAG of named layers with PyTorch-named parameters), its files
(YAML spec, safetensors weights) and the single-call surgery conveniences."""
import collections.abc
import ctypes
import gc
import os
import weakref
from dataclasses import dataclass, field

import numpy as np

from . import _lib
from ._callbacks import Pending
from ._handle import Handle, addr
from ._util import (as_f32, as_token_types, checked_string, dims_array, enc, shape_of,
                    snprintf_string, step_memory_call)
from .errors import (InvalidArgument, NotFound, ShapeError, StateError, Unsupported, check,
                     error_for_status)
from .tensor import Tensor

__all__ = ["Model", "ModelMeta", "Prediction", "LoadReport", "SafetensorsFile"]

_ONE_BYTE = ctypes.create_string_buffer(1)  # a valid address for an empty buffer
_REPORT_KINDS = (("missing", 0), ("unexpected", 1), ("mismatched", 2), ("loaded", 3))
_LOAD_MMAP, _LOAD_FROZEN = 2, 4  # strop_load_flags: STROP_LOAD_MMAP, STROP_LOAD_FROZEN


@dataclass
class LoadReport:
    """What a weight load found (strop_load_report, copied out): lists of tensor names, and
    ``details`` mapping each mismatched name to the library's sentence naming both shapes."""
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    loaded: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @classmethod
    def _take(cls, handle):
        lib = _lib.lib
        rep = cls()
        try:
            for attr, kind in _REPORT_KINDS:
                n = lib.strop_load_report_count(handle, kind)
                names = getattr(rep, attr)
                for i in range(max(0, n)):
                    name = snprintf_string(lib.strop_load_report_name, handle, kind, i)
                    names.append(name)
                    if kind == 2:
                        rep.details[name] = snprintf_string(lib.strop_load_report_detail,
                                                            handle, kind, i)
        finally:
            lib.strop_load_report_free(handle)
        return rep


class ModelMeta(collections.abc.MutableMapping):
    """The model's metadata (strop_model_set_meta and its getters) as a mapping of str to str:
    ``m.meta["classes"]``, ``m.meta["my.key"] = "{...}"``, ``del m.meta["my.key"]``. Keys are
    kept in byte order; the values of the keys strop documents are JSON text
    (``json.loads(m.meta["classes"])``). It reads and writes the model itself, not a copy."""

    def __init__(self, model):
        self._m = model

    def __getitem__(self, key):
        lib, h = _lib.lib, self._m._h
        n = lib.strop_model_get_meta(h, enc(key), None, 0)
        if n < 0:
            raise KeyError(key)
        buf = ctypes.create_string_buffer(int(n) + 1)
        lib.strop_model_get_meta(h, enc(key), buf, n + 1)
        return buf.raw[:n].decode("utf-8")

    def __setitem__(self, key, value):
        if not isinstance(value, str):
            raise TypeError(f"Model.meta['{key}']: a value is a str (JSON text for the keys "
                            f"strop documents), not {type(value).__name__}")
        check(_lib.lib.strop_model_set_meta(self._m._h, enc(key), enc(value)))

    def __delitem__(self, key):
        if key not in self:
            raise KeyError(key)
        check(_lib.lib.strop_model_set_meta(self._m._h, enc(key), None))

    def __contains__(self, key):
        return isinstance(key, str) and \
            _lib.lib.strop_model_get_meta(self._m._h, enc(key), None, 0) >= 0

    def __iter__(self):
        lib, h = _lib.lib, self._m._h
        return iter([snprintf_string(lib.strop_model_meta_key, h, i)
                     for i in range(lib.strop_model_meta_count(h))])

    def __len__(self):
        return _lib.lib.strop_model_meta_count(self._m._h)

    def __repr__(self):
        return f"ModelMeta({dict(self.items())!r})"


@dataclass
class Prediction:
    """The k most likely classes of each row (strop_model_predict, copied out), best first:
    ``labels`` (source labels), ``classes`` (output indices), ``probs`` (N, k) arrays and
    ``names`` (N lists of k names, None where the model has none)."""
    labels: np.ndarray
    classes: np.ndarray
    probs: np.ndarray
    names: list

    @classmethod
    def _take(cls, handle):
        lib = _lib.lib
        try:
            n, k = lib.strop_prediction_rows(handle), lib.strop_prediction_k(handle)
            labels = np.empty((n, k), np.int64)
            classes = np.empty((n, k), np.int64)
            probs = np.empty((n, k), np.float64)
            names = []
            for i in range(n):
                row = []
                for j in range(k):
                    labels[i, j] = lib.strop_prediction_label(handle, i, j)
                    classes[i, j] = lib.strop_prediction_class(handle, i, j)
                    probs[i, j] = lib.strop_prediction_prob(handle, i, j)
                    row.append(snprintf_string(lib.strop_prediction_name, handle, i, j))
                names.append(row)
            return cls(labels, classes, probs, names)
        finally:
            lib.strop_prediction_free(handle)

    @classmethod
    def _join(cls, parts):
        if len(parts) == 1:
            return parts[0]
        if not parts:
            e = np.empty((0, 1), np.int64)
            return cls(e, e.copy(), np.empty((0, 1)), [])
        return cls(np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.classes for p in parts]),
                   np.concatenate([p.probs for p in parts]),
                   [row for p in parts for row in p.names])

    def __len__(self):
        return len(self.labels)


def _batch_size(v, fn):
    """v as a positive int, or InvalidArgument naming fn"""
    b = int(v)
    if b < 1:
        raise InvalidArgument(f"{fn}: batch_size must be at least 1, got {v!r}")
    return b


class Model(Handle):
    """A neural network. Build one layer by layer::

        m = strop.Model([1, 28, 28])
        m.add("fc", "linear", "in_features=784 out_features=10")   # after a flatten ...
        m.finalize(seed=0)

    or load one: ``Model.load("base.yaml", "base.safetensors")``. Parameters are read with
    ``m["head.weight"]`` (a numpy copy) and written with ``m["head.weight"] = array``.
    ``close()`` (or ``with``) frees it; optimizers, trainers and surgery plans made on it keep
    the C model alive until they are closed as well.
    """

    def __init__(self, input_shape):
        rank, dims = dims_array(input_shape)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_model_create(rank, dims, ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_model_free)
        self._gen = 0

    @classmethod
    def _adopt(cls, handle, owned=True, parents=()):
        m = cls.__new__(cls)
        m._own(handle, _lib.lib.strop_model_free if owned else None, parents)
        m._gen = 0
        return m

    # ---- files ----
    @classmethod
    def from_spec(cls, path):
        """A finalized model from a YAML spec file, freshly initialised from its seed."""
        out = ctypes.c_void_p()
        check(_lib.lib.strop_model_load_spec(enc(os.fspath(path)), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def from_yaml(cls, text):
        """A finalized model from a YAML spec string."""
        out = ctypes.c_void_p()
        check(_lib.lib.strop_model_load_spec_string(enc(text), ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def load(cls, spec, weights=None, strict=True):
        """``from_spec(spec)`` then ``load_weights(weights, strict)``."""
        m = cls.from_spec(spec)
        if weights is not None:
            try:
                m.load_weights(weights, strict=strict)
            except BaseException:
                m.close()
                raise
        return m

    @classmethod
    def from_pretrained(cls, path, arch=None, strict=True, image_size=0, max_length=0, seed=0,
                        mmap=False, frozen=False, frozen_dtype="f32", weights="file"):
        """A pre-trained network with its checkpoint's own names (strop_model_load_pretrained):
        ``path`` is a Hugging Face model folder (config.json says the architecture) or a
        safetensors state_dict of a torchvision model (``arch="resnet18"``). ``strict=False``
        loads what matches and initialises the rest from ``seed``; ``image_size`` and
        ``max_length`` are the input size the model is declared for (0: the architecture's or
        config's own). ``frozen=True`` freezes every parameter at load (STROP_LOAD_FROZEN) and
        ``mmap=True`` uses frozen weights straight from the memory-mapped file
        (STROP_LOAD_MMAP): together, a base for LoRA or a frozen trunk that costs no copy;
        ``frozen_dtype`` ("f32", "bf16", "int8") is how frozen weights are held, set before
        they are read. ``weights=None`` reads no weights (the folder needs only config.json)
        and draws them as the family's Hugging Face class draws a fresh model
        (``initializer_range``; STROP_LOAD_FRESH), from ``seed``. Returns the model in eval
        mode; ``Model.pretrained_archs()`` lists the architectures."""
        from .errors import InvalidArgument
        if weights is not None and weights != "file":
            raise InvalidArgument("Model.from_pretrained: weights must be \"file\" (read the "
                                  "checkpoint's) or None (fresh, from config.json), got %r"
                                  % (weights,))
        if weights is None and not strict:
            raise InvalidArgument("Model.from_pretrained: weights=None reads no weights, so "
                                  "strict=False has nothing to relax")
        lib = _lib.lib
        if frozen_dtype not in cls.FROZEN_DTYPES:
            raise ValueError(f"frozen_dtype must be one of {', '.join(cls.FROZEN_DTYPES)}, "
                             f"got {frozen_dtype!r}")
        opt = _lib.strop_pretrained_options()
        lib.strop_pretrained_options_init(ctypes.byref(opt))
        opt.flags = ((8 if weights is None else 0 if strict else 1) | (_LOAD_MMAP if mmap else 0)
                     | (_LOAD_FROZEN if frozen else 0))
        opt.image_size = int(image_size)
        opt.max_length = int(max_length)
        opt.seed = int(seed)
        opt.frozen_dtype = cls.FROZEN_DTYPES.index(frozen_dtype)
        out, rep = ctypes.c_void_p(), ctypes.c_void_p()
        st = lib.strop_model_load_pretrained(enc(os.fspath(path)),
                                             enc(arch) if arch is not None else None,
                                             ctypes.byref(opt), ctypes.byref(out),
                                             ctypes.byref(rep))
        report = LoadReport._take(rep.value) if rep.value else None
        check(st)
        m = cls._adopt(out.value)
        m.load_report = report
        return m

    @staticmethod
    def pretrained_archs():
        """{name: one line} of the architectures Model.from_pretrained knows."""
        lib = _lib.lib
        names = [lib.strop_pretrained_arch_name(i).decode()
                 for i in range(lib.strop_pretrained_arch_count())]
        return {n: lib.strop_pretrained_arch_doc(enc(n)).decode() for n in names}

    def load_weights(self, path, strict=True, remap=None):
        """Loads a safetensors file by PyTorch name. ``path`` may also be the file's bytes
        (``bytes``, ``bytearray``, ``memoryview``: a model that is embedded or downloaded), read
        during the call only (strop_model_load_weights_mem). ``strict=False`` is PyTorch's
        strict=False: what matches by name and shape is loaded and the rest reported.
        ``remap=("features.", "backbone.")`` renames file tensors by prefix first (files only).
        A strict load takes the file's model metadata (``meta``) when it has any.
        Returns a LoadReport."""
        rep = ctypes.c_void_p()
        flags = 0 if strict else 1
        lib = _lib.lib
        if isinstance(path, (bytes, bytearray, memoryview)):
            if remap is not None:
                from .errors import InvalidArgument
                raise InvalidArgument("Model.load_weights: remap applies to a file path, not to "
                                      "weights in memory")
            data = np.frombuffer(path, dtype=np.uint8)  # no copy; alive until the call returns
            st = lib.strop_model_load_weights_mem(
                self._h, data.ctypes.data if data.size else ctypes.addressof(_ONE_BYTE),
                data.size, flags, ctypes.byref(rep))
        elif remap is None:
            st = lib.strop_model_load_weights(self._h, enc(os.fspath(path)), flags,
                                              ctypes.byref(rep))
        else:
            st = lib.strop_model_load_weights_remap(self._h, enc(os.fspath(path)), flags,
                                                    enc(remap[0]), enc(remap[1]),
                                                    ctypes.byref(rep))
        report = LoadReport._take(rep.value) if rep.value else None
        check(st)
        return report

    def save_weights(self, path):
        check(_lib.lib.strop_model_save_weights(self._h, enc(os.fspath(path))))

    def save_pretrained(self, path):
        """Writes a model loaded by ``from_pretrained`` from a Hugging Face folder back as one
        (strop_model_save_pretrained): ``path/config.json`` and ``path/model.safetensors``
        (format=pt, tied weights once, LoRA adapters folded in), which transformers'
        ``from_pretrained`` loads. The folder is created when missing."""
        check(_lib.lib.strop_model_save_pretrained(self._h, enc(os.fspath(path))))

    def add_classifier_head(self, classes, pool=None, dropout=0.0, seed=0):
        """Replaces what follows the last hidden state of a text model loaded by
        ``from_pretrained`` (GPT-2, Llama or BERT family) with a sequence-classification head
        (strop_model_add_classifier_head): ``pool`` "cls" (the first token the padding mask
        keeps; BERT's through its pooler), "mean" (masked mean) or "last" (the last token the
        mask keeps), None for the family's own; dropout; a linear layer of ``classes`` outputs
        named ``score`` (GPT-2, Llama) or ``classifier`` (BERT family)."""
        check(_lib.lib.strop_model_add_classifier_head(
            self._h, enc(pool) if pool is not None else None, int(classes), float(dropout),
            int(seed)))
        return self

    def save_spec(self, path):
        check(_lib.lib.strop_model_save_spec(self._h, enc(os.fspath(path))))

    def spec(self):
        """The YAML spec as a string."""
        return checked_string(_lib.lib.strop_model_spec_string, self._h)

    def save(self, spec_path, weights_path):
        """Writes the spec and the weights."""
        self.save_spec(spec_path)
        self.save_weights(weights_path)

    def export(self, spec_path, weights_path, fold_bn=True, keep_dropout=False):
        """Writes the model for inference (strop_model_export): LoRA merged into plain linear
        layers, dropout removed unless ``keep_dropout``, BatchNorm folded into the conv/linear
        before it where possible when ``fold_bn``; this model is not changed."""
        flags = (0 if fold_bn else 1) | (2 if keep_dropout else 0)
        check(_lib.lib.strop_model_export(self._h, enc(os.fspath(spec_path)),
                                          enc(os.fspath(weights_path)), flags))

    # ---- building ----
    def add(self, name, type, options=None, inputs=None):
        """Appends a node (before finalize). ``options`` is "key=value ..." text or a dict."""
        if isinstance(options, dict):
            options = " ".join(f"{k}={_opt(v)}" for k, v in options.items())
        if isinstance(inputs, (list, tuple)):
            inputs = ",".join(inputs)
        check(_lib.lib.strop_model_add(self._h, enc(name), enc(type), enc(options),
                                       enc(inputs)))
        return self

    def finalize(self, seed=0):
        check(_lib.lib.strop_model_finalize(self._h, int(seed)))
        return self

    # ---- running ----
    def forward(self, x, mask=None, token_type_ids=None):
        """Runs the model on a batch ``x`` of shape (N, *input_shape) and returns a numpy array
        (N, *output_shape). ``x`` is wrapped without a copy when it is float32 C-contiguous.
        ``mask`` (N, T) of 1 (token) and 0 (padding), Hugging Face's attention_mask, for a batch
        of padded sequences (strop_model_forward_masked); T may be any length the model takes.
        ``token_type_ids`` (N, T) integers, the segment of a text pair each token is in
        (BERT's token_type_embeddings; Tokenizer.encode_batch's token_type_ids), or None for
        type 0 everywhere; a model without token-type embeddings ignores them
        (strop_model_forward_ext)."""
        lib = _lib.lib
        h = self._h
        tmps = []

        def wrap(a, what):
            if isinstance(a, Tensor):
                return a._h
            arr = as_f32(a, what, writable=True)
            rank, dims = dims_array(arr.shape)
            t = ctypes.c_void_p()
            check(lib.strop_tensor_wrap(arr.ctypes.data, arr.size, rank, dims, ctypes.byref(t)))
            tmps.append((t, arr))
            return t.value

        out = ctypes.c_void_p()
        try:
            th = wrap(x, "forward")
            tm = wrap(mask, "mask") if mask is not None else None
            side = _lib.strop_side_inputs()
            lib.strop_side_inputs_init(ctypes.byref(side))
            side.mask = addr(tm)
            if token_type_ids is not None:
                shape = np.shape(x)[:2] if not isinstance(x, Tensor) else tuple(x.shape[:2])
                side.token_types = wrap(as_token_types(token_type_ids, shape), "token_type_ids")
            check(lib.strop_model_forward_ext(h, th, ctypes.byref(side), ctypes.byref(out),
                                              _hold=(tm,)))
            shape = shape_of(lib.strop_tensor_shape, out.value)
            res = np.empty(shape, dtype=np.float32)
            check(lib.strop_tensor_copy_to(out.value, res.ctypes.data, res.size))
            return res
        finally:
            lib.strop_tensor_free(out.value)
            for t, _ in tmps:
                lib.strop_tensor_free(t.value)

    __call__ = forward

    def generate(self, ids, max_new_tokens=32, *, temperature=0.0, top_k=0, top_p=1.0,
                 repetition_penalty=1.0, seed=0, stop_ids=(), stop_strings=(), tokenizer=None,
                 on_token=None, num_beams=1, length_penalty=1.0, early_stopping=False):
        """Continues the prompt ``ids`` (a sequence of token ids) with a causal language model
        (strop_generate: a key/value cache, one position per new token) and returns the new
        ids as a list (the prompt is not repeated). Greedy when ``temperature`` is 0, otherwise
        sampled with ``top_k``, ``top_p`` and ``seed`` (the same seed gives the same ids).
        Generation ends after ``max_new_tokens``, after one of ``stop_ids`` (kept in the
        output), once the decoded output contains one of ``stop_strings`` (they need the
        model's ``tokenizer``), or when the context is full. ``on_token(id)`` is called with
        each new id; a true return stops the generation there (the ids so far are returned);
        an exception it raises is re-raised here.

        ``ids`` may also be a list of prompts of any lengths: they are continued together
        (strop_generate_batch: left-padded into one batch, each sequence as it would be alone,
        with its own stop conditions), a list of lists of new ids is returned, and
        ``on_token(row, id)`` is told which prompt each id continues.

        ``num_beams`` above 1 searches with that many beams as transformers'
        ``generate(num_beams=...)`` does (``length_penalty``, ``early_stopping``; stop ids end
        hypotheses; greedy only, no stop strings); ``on_token`` then receives the best
        hypothesis's ids after the search."""
        lib = _lib.lib
        if isinstance(ids, np.ndarray) and ids.ndim > 2:
            raise InvalidArgument(f"Model.generate: ids of shape {ids.shape}: give one prompt "
                                  "(1-D) or a batch of them (2-D, one row each)")
        batch = ((isinstance(ids, (list, tuple)) and len(ids) > 0 and not np.isscalar(ids[0]))
                 or (isinstance(ids, np.ndarray) and ids.ndim == 2))
        rows = ([np.ascontiguousarray(np.asarray(p, dtype=np.int64).reshape(-1)) for p in ids]
                if batch else
                [np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))])
        n = max(int(max_new_tokens), 0)
        out = np.zeros(max(n, 1) * len(rows), dtype=np.int64)
        counts = np.zeros(len(rows), dtype=np.int64)
        o = _lib.strop_generate_options()
        lib.strop_generate_options_init(ctypes.byref(o))
        o.max_new_tokens = int(max_new_tokens)
        o.temperature = float(temperature)
        o.top_k = int(top_k)
        o.top_p = float(top_p)
        o.repetition_penalty = float(repetition_penalty)
        o.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        o.num_beams = int(num_beams)
        o.length_penalty = float(length_penalty)
        o.early_stopping = 1 if early_stopping else 0
        stops = np.ascontiguousarray(np.asarray(list(stop_ids), dtype=np.int64))
        if stops.size:
            o.stop_ids = stops.ctypes.data
            o.num_stop_ids = stops.size
        strings = [s.encode("utf-8") for s in stop_strings]
        arr = (ctypes.c_char_p * max(len(strings), 1))(*strings)
        if strings:
            o.stop_strings = arr
            o.num_stop_strings = len(strings)
        tok = ()
        if tokenizer is not None:
            tok = (tokenizer._h,)
            o.tokenizer = addr(tok[0])
        pending = Pending()
        if on_token is not None:
            def call(row, tok, _user):
                try:
                    r = on_token(int(row), int(tok)) if batch else on_token(int(tok))
                    return 1 if r else 0
                except BaseException as e:  # carried back to the caller
                    pending.capture(e)
                    return 1
            o.on_row_token = _lib.ROW_TOKEN_FN(call)
        if batch:
            ptrs = (ctypes.c_void_p * len(rows))(*[r.ctypes.data for r in rows])
            lens = np.array([r.size for r in rows], dtype=np.int64)
            st = lib.strop_generate_batch(self._h, ctypes.cast(ptrs, ctypes.c_void_p),
                                          lens.ctypes.data, len(rows), ctypes.byref(o),
                                          out.ctypes.data, n, counts.ctypes.data, _hold=tok)
        else:
            st = lib.strop_generate(self._h, rows[0].ctypes.data, rows[0].size,
                                    ctypes.byref(o), out.ctypes.data, n, counts.ctypes.data,
                                    _hold=tok)
        pending.reraise()
        if st != -12:  # STROP_E_CANCELLED: on_token asked to stop; the ids so far stand
            check(st)
        got = [[int(i) for i in out[b * n:b * n + counts[b]]] for b in range(len(rows))]
        return got if batch else got[0]

    def predict(self, x, batch_size=256, k=None):
        """Applies the classifier to raw inputs as its training data were prepared
        (strop_model_predict): the preprocessing its metadata records (``meta``: input.shape,
        input.scale, input.resize, input.normalize, written by a recipe run) is applied and the
        model runs in eval mode (its mode is kept). ``x`` holds N samples of any numeric dtype
        (uint8 images 0-255 as they come), shaped (N, *sample) or flat.

        Without ``k``: the most likely class of each row, as its source label (the data's own
        label, e.g. 5 for Sandal when the recipe kept Fashion-MNIST's classes 5-9), a numpy
        int64 array of shape (N,). With ``k``: a Prediction of the k most likely classes of
        each row, best first: ``labels`` and ``classes`` (output indices) int64 (N, k),
        ``probs`` float64 (N, k) (softmax), ``names`` (N lists of k str or None)."""
        arr = as_f32(x, "predict")
        batch_size = _batch_size(batch_size, "Model.predict")
        lib = _lib.lib
        kk = 1 if k is None else int(k)
        rows = len(arr) if arr.ndim >= 2 else None
        parts = ([arr] if rows is None or rows == 0 else
                 [arr[i:i + batch_size] for i in range(0, rows, batch_size)])
        out = []
        for part in parts:
            rank, dims = dims_array(part.shape)
            t, p = ctypes.c_void_p(), ctypes.c_void_p()
            check(lib.strop_tensor_wrap(part.ctypes.data, part.size, rank, dims,
                                        ctypes.byref(t)))
            try:
                check(lib.strop_model_predict(self._h, t.value, kk, ctypes.byref(p)))
                out.append(Prediction._take(p.value))
            finally:
                lib.strop_tensor_free(t.value)
        pred = Prediction._join(out)
        return pred.labels[:, 0] if k is None else pred

    def predict_text(self, texts, pairs=None, tokenizer=None, k=None, batch_size=256):
        """Applies a text classifier trained by a recipe to raw strings
        (strop_model_predict_text): the tokenizer its ``input.tokenizer`` metadata names (or
        ``tokenizer``, a strop.Tokenizer) encodes them, truncated and padded to its
        max_length as in training, and the model runs on the ids with their attention mask.
        ``texts`` is a str or a list of str; ``pairs`` None or as many second texts. Returns
        what predict() returns: the labels (N,), or with ``k`` a Prediction."""
        if isinstance(texts, (str, bytes)):
            texts = [texts]
        texts = list(texts)
        if pairs is not None:
            pairs = list(pairs)
            if len(pairs) != len(texts):
                raise ValueError("predict_text: pairs must hold one entry per text")
        if not texts:
            raise ValueError("predict_text: no texts")
        batch_size = _batch_size(batch_size, "Model.predict_text")
        kk = 1 if k is None else int(k)
        lib = _lib.lib
        out = []
        for i in range(0, len(texts), batch_size):
            part = [enc(t) for t in texts[i:i + batch_size]]
            tarr = (ctypes.c_char_p * len(part))(*part)
            parr = None
            if pairs is not None:
                pp = [enc(t) for t in pairs[i:i + batch_size]]
                parr = (ctypes.c_char_p * len(pp))(*pp)
            p = ctypes.c_void_p()
            check(lib.strop_model_predict_text(self._h, tokenizer._h if tokenizer else None,
                                               tarr, parr, len(part), kk, ctypes.byref(p)))
            out.append(Prediction._take(p.value))
        pred = Prediction._join(out)
        return pred.labels[:, 0] if k is None else pred

    @property
    def training(self):
        return bool(_lib.lib.strop_model_is_training(self._h))

    @training.setter
    def training(self, on):
        check(_lib.lib.strop_model_set_training(self._h, 1 if on else 0))

    @property
    def checkpointing(self):
        """Activation checkpointing: "auto", a glob over block names ("transformer.h.*"), or
        None (off). Setting it recomputes each block in the backward instead of keeping its
        activations, with the same results; see docs/performance.md."""
        s = checked_string(_lib.lib.strop_model_get_checkpointing, self._h)
        return s or None

    @checkpointing.setter
    def checkpointing(self, pattern):
        check(_lib.lib.strop_model_set_checkpointing(self._h, enc(pattern) if pattern else None))

    @property
    def checkpoint_blocks(self):
        """How many blocks the checkpointing pattern forms (0 when off)."""
        n = _lib.lib.strop_model_checkpoint_blocks(self._h)
        if n < 0:
            raise error_for_status(-1)
        return n

    def train(self, on=True):
        self.training = on
        return self

    def eval(self):
        self.training = False
        return self

    # ---- inspecting ----
    @property
    def meta(self):
        """The model's metadata as a mutable mapping of str to str (see ModelMeta)."""
        return ModelMeta(self)

    @property
    def input_shape(self):
        return shape_of(_lib.lib.strop_model_input_shape, self._h)

    @property
    def output_shape(self):
        """Per-sample output shape, or None before finalize."""
        return shape_of(_lib.lib.strop_model_output_shape, self._h)

    @property
    def nodes(self):
        """[(name, type), ...] in graph order."""
        lib, h = _lib.lib, self._h
        return [(snprintf_string(lib.strop_model_node_info, h, i, 0),
                 snprintf_string(lib.strop_model_node_info, h, i, 1))
                for i in range(lib.strop_model_num_nodes(h))]

    def tensor_names(self):
        """Names of every parameter and buffer, in state_dict order."""
        lib, h = _lib.lib, self._h
        return [snprintf_string(lib.strop_model_tensor_name, h, i)
                for i in range(lib.strop_model_num_tensors(h))]

    def param_count(self, trainable_only=False):
        return _lib.lib.strop_model_param_count(self._h, 1 if trainable_only else 0)

    def _raw_view(self, keeper):
        """counts a numpy array over one of the model's parameters (Tensor.numpy(copy=False))
        while it, or an array derived from it, lives"""
        if getattr(self, "_raw", None) is None:
            self._raw = weakref.WeakSet()
        self._raw.add(keeper)

    def _check_raw_views(self, what):
        """StateError when numpy arrays over the model's parameters are alive: ``what`` (a
        restructuring) may replace their memory, which numpy cannot be told (they would read
        and write freed memory)"""
        raw = getattr(self, "_raw", None)
        if not raw:
            return
        gc.collect()  # arrays that only a reference cycle keeps
        if raw:
            raise StateError(
                f"{what}: {len(raw)} numpy array(s) over this model's parameters "
                f"(Tensor.numpy(copy=False), or arrays derived from one) are alive, and {what} "
                f"may replace the parameters' memory under them; delete them first, or take "
                f"copies (numpy(), m[name])")

    def _restructured(self):
        """Marks the Tensor views taken so far stale (StateError): the call just made may have
        replaced or converted a tensor's storage (surgery, freeze, lora_load, frozen dtype)."""
        self._gen += 1

    def tensor(self, name):
        """A Tensor viewing the named parameter or buffer (writes change the model). It keeps
        the model alive and becomes stale (StateError) when the model is restructured."""
        out = ctypes.c_void_p()
        check(_lib.lib.strop_model_tensor_view(self._h, enc(name), ctypes.byref(out)))
        return Tensor._adopt(out.value, parents=(self._box,), model=self)

    def __getitem__(self, name):
        """A numpy copy of the named parameter or buffer."""
        with self.tensor(name) as t:
            return t.numpy()

    def _shaped(self, name, value):
        """value as the float32 array of the named tensor's shape; ShapeError naming both
        shapes when it has another (as torch's load_state_dict: no silent reshaping)."""
        arr = as_f32(value, name)
        try:
            with self.tensor(name) as t:
                shape = tuple(t.shape)
        except Unsupported:  # an int64 buffer (num_batches_tracked): its one value, as C takes it
            return arr
        if arr.shape != shape:
            raise ShapeError(f"tensor '{name}': the value has shape {arr.shape}, the tensor "
                             f"{shape}")
        return arr

    def __setitem__(self, name, value):
        """Copies ``value`` (any array of the tensor's shape) into the named parameter or
        buffer; ShapeError for another shape."""
        arr = self._shaped(name, value)
        check(_lib.lib.strop_model_set_tensor(self._h, enc(name), arr.ctypes.data, arr.size))

    def grad(self, name):
        """A numpy copy of the named trainable parameter's gradient (zeros before any backward
        and after an update)."""
        with self.tensor(name) as t:
            shape = t.shape
        g = np.empty(shape, dtype=np.float32)
        check(_lib.lib.strop_model_get_grad(self._h, enc(name), g.ctypes.data, g.size))
        return g

    def set_grad(self, name, value):
        """Replaces the named trainable parameter's gradient with ``value`` (copied), for an
        optimizer step on gradients made or changed in Python."""
        arr = self._shaped(name, value)
        check(_lib.lib.strop_model_set_grad(self._h, enc(name), arr.ctypes.data, arr.size))

    def __contains__(self, name):
        return name in self.tensor_names()

    def state_dict(self):
        """{name: numpy copy} of every float parameter and buffer (int64 buffers skipped)."""
        out = {}
        for n in self.tensor_names():
            try:
                out[n] = self[n]
            except Exception as e:  # int64 buffers (num_batches_tracked) have no float view
                from .errors import Unsupported
                if not isinstance(e, Unsupported):
                    raise
        return out

    def load_state_dict(self, tensors):
        for k, v in tensors.items():
            self[k] = v

    def summary(self):
        """The text table of nodes, shapes, parameter counts and trainable flags."""
        return checked_string(_lib.lib.strop_model_summary, self._h)

    def memory_estimate(self, batch, optimizer_slots=2):
        """dict(weights, grads, optim_state, activations) in bytes for a training step at the
        model's input shape; they add up to step_memory's peak (activations: the rest of it,
        planned by running a step on zeros)."""
        v = [ctypes.c_size_t() for _ in range(4)]
        check(_lib.lib.strop_model_memory_estimate(self._h, int(batch), int(optimizer_slots),
                                                   *[ctypes.byref(x) for x in v]))
        return dict(zip(("weights", "grads", "optim_state", "activations"),
                        (x.value for x in v)))

    def step_memory(self, batch, sample_shape=None, optimizer_slots=2, limit=None):
        """dict(step, peak) in bytes: the planned peak of a training step (weights, gradients,
        optimizer state and the step's own memory under liveness and checkpointing). With
        limit (bytes, or "auto" for the machine's: strop.memory_available()'s room plus the
        weights the model holds), raises the library's out-of-memory error, naming the limit
        and what would fit, when the peak is over it. It assumes the cross-entropy;
        Trainer.step_memory plans the step as a given trainer runs it."""
        lib = _lib.lib
        return step_memory_call(lib.strop_model_check_memory, lib.strop_model_step_memory,
                                self._h, batch, sample_shape, limit, int(optimizer_slots))

    # ---- surgery ----
    def freeze(self, glob="*"):
        self._check_raw_views("freeze")
        check(_lib.lib.strop_model_freeze(self._h, enc(glob)))
        self._restructured()
        return self

    def unfreeze(self, glob="*"):
        self._check_raw_views("unfreeze")
        check(_lib.lib.strop_model_unfreeze(self._h, enc(glob)))
        self._restructured()
        return self

    #: strop_dtype values by name (model.frozen_dtype)
    FROZEN_DTYPES = ("f32", "bf16", "int8")

    @property
    def frozen_dtype(self):
        """How frozen linear weights are held: "f32" (default), "bf16" or "int8" (a scale per
        output channel). Setting it converts the frozen weights now and those frozen later;
        trainable parameters stay float32 (strop_model_set_frozen_dtype)."""
        return self.FROZEN_DTYPES[_lib.lib.strop_model_frozen_dtype(self._h)]

    @frozen_dtype.setter
    def frozen_dtype(self, dtype):
        self.set_frozen_dtype(dtype)

    def set_frozen_dtype(self, dtype):
        """Sets frozen_dtype ("f32", "bf16", "int8"); returns the model."""
        if dtype not in self.FROZEN_DTYPES:
            from .errors import InvalidArgument
            raise InvalidArgument(f"Model.set_frozen_dtype: dtype must be one of "
                                  f"{', '.join(self.FROZEN_DTYPES)}, got {dtype!r}")
        self._check_raw_views("frozen_dtype")
        check(_lib.lib.strop_model_set_frozen_dtype(self._h, self.FROZEN_DTYPES.index(dtype)))
        self._restructured()
        return self

    #: compute dtypes by name (model.compute_dtype)
    COMPUTE_DTYPES = ("f32", "bf16")
    ATTENTION = ("auto", "tiled", "materialized")

    @property
    def compute_dtype(self):
        """The precision of the products of linear layers held in float32 and of conv2d layers:
        "f32" (default) or "bf16" (mixed precision: BF16-rounded inputs and weights, float32
        sums; the float32 master weights, gradients and optimizer state unchanged)
        (strop_model_set_compute_dtype)."""
        return self.COMPUTE_DTYPES[_lib.lib.strop_model_compute_dtype(self._h)]

    @compute_dtype.setter
    def compute_dtype(self, dtype):
        self.set_compute_dtype(dtype)

    def set_compute_dtype(self, dtype):
        """Sets compute_dtype ("f32", "bf16"); returns the model."""
        if dtype not in self.COMPUTE_DTYPES:
            from .errors import InvalidArgument
            raise InvalidArgument(f"Model.set_compute_dtype: dtype must be one of "
                                  f"{', '.join(self.COMPUTE_DTYPES)}, got {dtype!r}")
        check(_lib.lib.strop_model_set_compute_dtype(self._h, self.COMPUTE_DTYPES.index(dtype)))
        return self

    @property
    def weight_cache(self):
        """Whether weights that train keep their BF16 copy between products when the model
        computes in "bf16": True (default), or False to round and pack them per product
        instead — the same results, 2 bytes per trained weight less at the step's peak, a
        little slower (strop_model_set_weight_cache). Frozen weights keep theirs either way."""
        return bool(_lib.lib.strop_model_weight_cache(self._h))

    @weight_cache.setter
    def weight_cache(self, enabled):
        if not isinstance(enabled, bool):
            from .errors import InvalidArgument
            raise InvalidArgument(f"Model.weight_cache must be True or False, got {enabled!r}")
        check(_lib.lib.strop_model_set_weight_cache(self._h, int(enabled)))

    @property
    def attention(self):
        """How the attention layers compute: "auto" (default: the attention weights kept for the
        backward where they are small, else tiled), "tiled" (flash attention: nothing of size
        T x T kept, the backward computes the scores again) or "materialized" (the weights
        always kept) — a memory-for-speed trade; the results agree to about 1e-3, not to the
        bit (strop_model_set_attention)."""
        return self.ATTENTION[_lib.lib.strop_model_attention(self._h)]

    @attention.setter
    def attention(self, mode):
        if mode not in self.ATTENTION:
            from .errors import InvalidArgument
            raise InvalidArgument(f"Model.attention must be one of {', '.join(self.ATTENTION)}, "
                                  f"got {mode!r}")
        check(_lib.lib.strop_model_set_attention(self._h, self.ATTENTION.index(mode)))

    @property
    def int8_group(self):
        """Inputs per scale of frozen weights held in "int8": 0 (default) for one scale per
        output channel, else 8 to 65536 (32 to 128 is usual). Setting it quantises the int8
        weights again; set it before frozen_dtype to quantise from the float32 values
        (strop_model_set_frozen_int8_group)."""
        return int(_lib.lib.strop_model_frozen_int8_group(self._h))

    @int8_group.setter
    def int8_group(self, group):
        self._check_raw_views("int8_group")
        check(_lib.lib.strop_model_set_frozen_int8_group(self._h, int(group)))
        self._restructured()

    def is_trainable(self, name):
        r = _lib.lib.strop_model_param_trainable(self._h, enc(name))
        if r < 0:
            raise NotFound(f"Model.is_trainable: no parameter named '{name}'")
        return bool(r)

    def clone(self):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_model_clone(self._h, ctypes.byref(out)))
        return Model._adopt(out.value)

    def surgery(self, seed=None):
        """A new Surgery plan on this model."""
        from .surgery import Surgery
        return Surgery(self, seed)

    def lora_merge(self):
        check(_lib.lib.strop_model_lora_merge(self._h))

    def lora_unmerge(self):
        check(_lib.lib.strop_model_lora_unmerge(self._h))

    def lora_save(self, directory):
        check(_lib.lib.strop_model_lora_save(self._h, enc(os.fspath(directory))))

    def lora_load(self, directory):
        self._check_raw_views("lora_load")
        check(_lib.lib.strop_model_lora_load(self._h, enc(os.fspath(directory))))
        self._restructured()

    def __repr__(self):
        if self.closed:
            return "<strop.Model closed>"
        return (f"<strop.Model input={self.input_shape} output={self.output_shape} "
                f"params={self.param_count()}>")


def _opt(v):
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(str(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class SafetensorsFile(Handle):
    """An open, validated safetensors file (strop_st_file): list and read tensors as float32.
    ``f.names()``, ``f.dtype(name)``, ``f.shape(name)``, ``f[name]`` (numpy), ``f.metadata``."""

    def __init__(self, path):
        out = ctypes.c_void_p()
        check(_lib.lib.strop_st_file_open(enc(os.fspath(path)), ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_st_file_free)

    def __len__(self):
        return _lib.lib.strop_st_file_count(self._h)

    def names(self):
        lib, h = _lib.lib, self._h
        return [snprintf_string(lib.strop_st_file_name, h, i) for i in range(len(self))]

    def _index(self, name):
        i = _lib.lib.strop_st_file_find(self._h, enc(name))
        if i < 0:
            raise NotFound(f"SafetensorsFile: no tensor named '{name}'")
        return i

    def __contains__(self, name):
        return _lib.lib.strop_st_file_find(self._h, enc(name)) >= 0

    def dtype(self, name):
        return snprintf_string(_lib.lib.strop_st_file_dtype, self._h, self._index(name))

    def shape(self, name):
        dims = (ctypes.c_int64 * 8)()
        r = _lib.lib.strop_st_file_shape(self._h, self._index(name), dims, 8)
        return tuple(dims[i] for i in range(r))

    def __getitem__(self, name):
        i = self._index(name)
        shape = self.shape(name)
        out = np.empty(shape, dtype=np.float32)
        check(_lib.lib.strop_st_file_read_f32(self._h, i, out.ctypes.data, out.size))
        return out

    @property
    def metadata(self):
        lib, h = _lib.lib, self._h
        return {snprintf_string(lib.strop_st_file_meta_key, h, i):
                snprintf_string(lib.strop_st_file_meta_value, h, i)
                for i in range(lib.strop_st_file_meta_count(h))}
