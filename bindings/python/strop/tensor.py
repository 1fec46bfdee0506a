# SPDX-License-Identifier: MIT
"""Tensor: a float32 strop_tensor, wrapping a numpy array without copying when it can."""
import ctypes

import numpy as np

from . import _lib
from ._handle import Handle, _Box
from ._util import as_f32, dims_array, is_zero_copy, shape_of
from .errors import StateError, check

__all__ = ["Tensor"]


class _ViewKeeper:
    """Kept by a numpy view of C memory: holds one use of the box that owns the memory."""
    __slots__ = ("_box", "__weakref__")

    def __init__(self, box):
        import weakref
        box.acquire()
        self._box = box
        weakref.finalize(self, box.release)


def c_view(box, address, shape, model=None):
    """A numpy float32 array over C memory at ``address`` that keeps ``box`` (the owner of the
    memory) alive as long as the array or any array derived from it lives. Of a model's
    parameter (``model``), the model counts it until then (Model._check_raw_views)."""
    n = int(np.prod(shape)) if len(shape) else 1
    carr = (ctypes.c_float * n).from_address(address)
    carr._strop_keeper = keeper = _ViewKeeper(box)
    if model is not None:
        model._raw_view(keeper)
    return np.frombuffer(carr, dtype=np.float32).reshape(shape)


class Tensor(Handle):
    """A dense float32 tensor (row-major, rank 1..8).

    ``Tensor(array)`` wraps a float32, C-contiguous, writable numpy array without copying
    (strop_tensor_wrap): the tensor and the array share memory, and the tensor keeps the array
    alive. Any other array (float64, integers, Fortran order, non-contiguous slices, read-only)
    is converted to a new float32 C-contiguous array first — a copy; pass ``copy=True`` to
    always copy. ``Tensor.zeros(shape)`` makes one owned by the library.
    """

    def __init__(self, array, copy=False):
        arr = as_f32(array, "Tensor", writable=True)
        if copy and arr is array:
            arr = arr.copy()
        rank, dims = dims_array(arr.shape)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tensor_wrap(arr.ctypes.data, arr.size, rank, dims,
                                         ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_tensor_free, keep=arr)
        self._model = None

    @classmethod
    def _adopt(cls, handle, parents=(), keep=None, model=None):
        t = cls.__new__(cls)
        t._own(handle, _lib.lib.strop_tensor_free, parents, keep)
        t._model = model
        t._gen = model._gen if model is not None else None
        return t

    @classmethod
    def zeros(cls, shape):
        """A new zero tensor owned by the library (strop_tensor_create)."""
        rank, dims = dims_array(shape)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tensor_create(rank, dims, ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def from_numpy(cls, array):
        """A tensor holding a library-owned copy of ``array`` (strop_tensor_from_data)."""
        arr = as_f32(array, "Tensor.from_numpy")
        rank, dims = dims_array(arr.shape)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tensor_from_data(arr.ctypes.data, arr.size, rank, dims,
                                              ctypes.byref(out)))
        return cls._adopt(out.value)

    @property
    def _h(self):
        h = Handle._h.fget(self)
        m = self._model
        if m is not None and (m.closed or m._gen != self._gen):
            raise StateError("this view of a model parameter is stale: the model was "
                             "restructured (surgery, freeze or unfreeze, lora_load, a new "
                             "frozen_dtype or int8_group) or closed since; take a new view")
        return h

    @property
    def shares_memory_with_input(self):
        """True when the tensor wraps the numpy array it was made from (no copy was made)."""
        return self._box.keep is not None

    @property
    def shape(self):
        return shape_of(_lib.lib.strop_tensor_shape, self._h)

    @property
    def rank(self):
        return _lib.lib.strop_tensor_rank(self._h)

    @property
    def size(self):
        return _lib.lib.strop_tensor_numel(self._h)

    def __len__(self):
        return self.shape[0]

    def dim(self, i):
        """Size of dimension ``i`` (negative counts from the end)."""
        d = _lib.lib.strop_tensor_dim(self._h, int(i))
        if d < 0:
            from .errors import error_for_status
            raise error_for_status(-1)
        return d

    def fill(self, value):
        check(_lib.lib.strop_tensor_fill(self._h, float(value)))
        return self

    def copy(self):
        """A deep copy with storage of its own."""
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tensor_copy(self._h, ctypes.byref(out)))
        return Tensor._adopt(out.value)

    def reshape(self, *shape):
        """A view with another shape sharing storage (one entry may be -1)."""
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        rank, dims = dims_array(shape)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tensor_reshape(self._h, rank, dims, ctypes.byref(out)))
        # storage is reference counted in C, but wrapped numpy memory and model memory are
        # not: the view keeps this tensor's box (and through it the array/model) alive
        return Tensor._adopt(out.value, parents=(self._box,), model=self._model)

    def copy_from(self, array):
        """Copies ``array`` (same element count) into the tensor."""
        arr = as_f32(array, "Tensor.copy_from")
        check(_lib.lib.strop_tensor_copy_from(self._h, arr.ctypes.data, arr.size))
        return self

    def numpy(self, copy=True):
        """The values as a numpy array of the tensor's shape. ``copy=False`` gives a view of
        the tensor's memory (writes go both ways) that keeps the memory alive even after
        ``close()``. A restructuring of the model (surgery, freeze or unfreeze, lora_load, a
        new frozen_dtype or int8_group) may replace a parameter's memory, which numpy cannot
        be told: while such an array of one of its parameters (or an array derived from it)
        is alive, the model refuses them with StateError. Delete the arrays first, or use
        copies."""
        h = self._h
        shape = self.shape
        if copy:
            out = np.empty(shape, dtype=np.float32)
            check(_lib.lib.strop_tensor_copy_to(h, out.ctypes.data, out.size))
            return out
        return c_view(self._box, _lib.lib.strop_tensor_data(h), shape, self._model)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        if self.closed:
            return "<strop.Tensor closed>"
        return f"<strop.Tensor shape={self.shape}>"


def to_tensor(x):
    """(tensor, temporary) for an argument that may be a Tensor or array-like."""
    if isinstance(x, Tensor):
        return x, False
    return Tensor(x), True


def _wrap_raw(arr):
    """A bare strop_tensor handle wrapping ``arr`` (float32 C-contiguous); the caller frees it.
    Used on hot paths (training steps) to skip the Python object."""
    rank, dims = dims_array(arr.shape)
    out = ctypes.c_void_p()
    check(_lib.lib.strop_tensor_wrap(arr.ctypes.data, arr.size, rank, dims, ctypes.byref(out)))
    return out.value


_ = (_Box, is_zero_copy)
