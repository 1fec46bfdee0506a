# SPDX-License-Identifier: MIT
"""The option structs the bindings declare have the library's layout: each init function,
called into a buffer larger than any struct, writes its own sizeof into `size`, which must be
the ctypes struct's size (a smaller ctypes struct would let the init write past its end)."""
import ctypes

import pytest

from conftest import load_strop

strop = load_strop()
from strop import _lib  # noqa: E402

PAIRS = [(name[len("strop_"):-len("_init")], name) for name, _, _ in _lib._DECLS
         if name.endswith("_options_init") or name.endswith("_ops_init")]


def test_every_init_is_checked():
    assert len(PAIRS) >= 12


@pytest.mark.parametrize("short,init", PAIRS)
def test_struct_size_matches_the_library(short, init):
    struct = getattr(_lib, "strop_" + short)
    buf = ctypes.create_string_buffer(4096)
    fn = getattr(_lib.lib, init)
    fn(ctypes.cast(buf, ctypes.POINTER(struct)))
    size = ctypes.c_size_t.from_buffer(buf).value
    assert size == ctypes.sizeof(struct), (
        f"{init} says sizeof = {size}, the bindings' strop_{short} has "
        f"{ctypes.sizeof(struct)} bytes")
