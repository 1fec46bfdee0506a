# SPDX-License-Identifier: MIT
"""Small helpers shared by the modules: strings, shapes, numpy conversion."""
import ctypes

import numpy as np

from . import _lib
from .errors import InvalidArgument, ShapeError, error_for_status

MAX_RANK = 8  # STROP_MAX_RANK


def L():
    return _lib.lib


def enc(s):
    """str/PathLike/bytes/None -> bytes/None for a c_char_p argument: UTF-8, with the file
    system's escapes for the undecodable bytes of names os.listdir gives (os.fsencode).
    InvalidArgument for a NUL character, which C would take for the string's end."""
    if s is None:
        return None
    import os
    b = s if isinstance(s, bytes) else os.fsencode(s)
    if b"\0" in b:
        raise InvalidArgument(f"{s!r}: a string passed to the library may not contain a NUL "
                              "character")
    return b


def choose(table, value, what):
    """table[value] for a name (any case), an int as it is; InvalidArgument listing the names
    for an unknown one (a bare KeyError said nothing of what was asked)."""
    if isinstance(value, str):
        try:
            return table[value.lower()] if value.lower() in table else table[value]
        except KeyError:
            raise InvalidArgument(f"unknown {what} {value!r}; known: "
                                  f"{', '.join(map(str, table))}") from None
    return int(value)


def snprintf_string(fn, *args):
    """Calls an snprintf-style getter fn(*args, buf, cap) -> length; returns str or None (-1)."""
    n = fn(*args, None, 0)
    if n < 0:
        return None
    buf = ctypes.create_string_buffer(int(n) + 1)
    fn(*args, buf, n + 1)
    return buf.value.decode("utf-8", "replace")


def checked_string(fn, *args):
    """As snprintf_string, raising the library's error for -1."""
    s = snprintf_string(fn, *args)
    if s is None:
        raise error_for_status(-1)
    return s


def shape_of(fn, *args):
    """Calls fn(*args, dims, cap) -> rank; returns a tuple, or None for rank -1."""
    dims = (ctypes.c_int64 * MAX_RANK)()
    r = fn(*args, dims, MAX_RANK)
    if r < 0:
        return None
    return tuple(dims[i] for i in range(min(r, MAX_RANK)))


def dims_array(shape):
    """(rank, int64_t[rank]) of a shape; a size past int64 is refused (a ctypes array would
    keep its low bits: 2**64 + 8 would become 8)."""
    shape = tuple(int(d) for d in shape)
    for d in shape:
        if not -2**63 <= d < 2**63:
            raise OverflowError(f"shape {shape}: {d} does not fit a signed 64-bit integer")
    return len(shape), (ctypes.c_int64 * max(1, len(shape)))(*shape)


def step_memory_call(check_fn, plan_fn, handle, batch, sample_shape, limit, *slots):
    """dict(step, peak) from a step-memory planner (strop_model_step_memory or
    strop_trainer_step_memory, with their check_memory twins), as Model.step_memory and
    Trainer.step_memory give it: the sample shape as (int64_t *, rank) or NULL, and with limit
    (bytes, or "auto": 0, the library's word for the machine's) the check first."""
    from .errors import check
    dims, rank = None, 0
    if sample_shape is not None:
        rank, dims = dims_array(sample_shape)
    if limit is not None:
        if limit == "auto":
            limit = 0
        elif int(limit) < 1:
            raise ValueError(f"limit must be a positive byte count or 'auto', got {limit!r}")
        check(check_fn(handle, int(batch), dims, rank, *slots, int(limit)))
    step, peak = ctypes.c_size_t(), ctypes.c_size_t()
    check(plan_fn(handle, int(batch), dims, rank, *slots, ctypes.byref(step),
                  ctypes.byref(peak)))
    return {"step": step.value, "peak": peak.value}


def as_f32(a, name="array", writable=False):
    """A float32 C-contiguous numpy array for ``a``: ``a`` itself when it already is one (no
    copy), else a converted copy. Integers, booleans and other floats are converted; complex,
    object and string arrays are refused with InvalidArgument."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise InvalidArgument(f"{name}: dtype {arr.dtype} cannot be converted to float32")
    if (arr.dtype == np.float32 and arr.flags.c_contiguous and arr.flags.aligned
            and (arr.flags.writeable or not writable) and arr.dtype.isnative):
        return arr
    return np.array(arr, dtype=np.float32, order="C", copy=True)


def as_token_types(types, batch_shape, name="token_type_ids"):
    """token_type_ids (N, T) as the float32 array the library reads, validated: an integer (or
    boolean) array, shaped like the batch's first two dimensions ``batch_shape``, values in
    [0, 2^24). Tokenizer.encode_batch's ``token_type_ids`` plug in as they are."""
    arr = np.asarray(types)
    if arr.dtype.kind not in "iub":
        raise InvalidArgument(f"{name}: dtype {arr.dtype}: token types are integers "
                              "(Tokenizer.encode_batch's token_type_ids)")
    if arr.shape != tuple(batch_shape):
        raise ShapeError(f"{name}: shape {arr.shape}, the batch needs {tuple(batch_shape)} "
                         "(samples, positions)")
    if arr.size and (arr.min() < 0 or arr.max() >= 1 << 24):
        bad = np.argwhere((arr < 0) | (arr >= 1 << 24))[0]
        raise InvalidArgument(f"{name}: {int(arr[tuple(bad)])} at sample {bad[0]}, position "
                              f"{bad[1]}: a token type is an integer >= 0")
    return np.array(arr, dtype=np.float32, order="C", copy=True)


def is_zero_copy(a):
    """True when ``a`` goes to the library without a copy (float32, C-contiguous, aligned,
    writable, native byte order)."""
    return (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.dtype.isnative
            and a.flags.c_contiguous and a.flags.aligned and a.flags.writeable)


def as_i64(values):
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))
    return arr


def ptr(arr):
    return arr.ctypes.data if arr is not None and arr.size else (
        arr.ctypes.data if arr is not None else None)
