# SPDX-License-Identifier: MIT
"""Pure-Python safetensors reader/writer for numpy arrays (Debian ships no safetensors package).

Format (docs/formats.md): an 8-byte little-endian header length N, N bytes of JSON mapping
each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
data area after the header) plus an optional "__metadata__" object of string values, then the
raw little-endian tensor data, contiguous and in offset order.

    from strop import safetensors
    tensors, meta = safetensors.load("model.safetensors")
    safetensors.save("out.safetensors", {"head.weight": w}, metadata={"format": "pt"})

BF16 has no numpy dtype: it is read as float32 and written from float32 (round to nearest
even) for the names passed in ``bf16``. This module needs only numpy, not the C library.
"""
import json
import os
import re
import struct
import tempfile

import numpy as np

__all__ = ["load", "load_header", "save", "SafetensorsError", "DTYPES"]

DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_SIZES = dict({k: v.itemsize for k, v in DTYPES.items()}, BF16=2, F8_E4M3=1, F8_E5M2=1)
_NAMES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024
_MAX_DEPTH = 16  # as the C reader


class SafetensorsError(ValueError):
    """A malformed safetensors file."""


def _dtype_name(dt):
    dt = np.dtype(dt)
    if dt.itemsize > 1:
        dt = dt.newbyteorder("<")
    name = _NAMES.get(dt)
    if name is None:
        raise SafetensorsError(f"unsupported dtype {dt}")
    return name


def _to_bf16_bits(a):
    """round to nearest even; a NaN stays a NaN (its rounding carry would reach the sign and
    make 0x7fffffff a -0.0): its top half with the quiet bit set, as torch gives"""
    f = np.ascontiguousarray(a, dtype="<f4")
    u = f.view("<u4").astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    nan = np.isnan(f)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x0040).astype("<u2")
    return r


def save(path, tensors, metadata=None, bf16=()):
    """Write a dict name -> numpy array (or anything np.asarray takes) to path, atomically.

    metadata: dict of strings stored as "__metadata__". Names listed in bf16 are stored as
    BF16. float16 arrays are stored as F16, int64 as I64, and so on.
    """
    if isinstance(bf16, str):  # one name, not its letters ("h" in "head.weight")
        bf16 = (bf16,)
    bf16 = set(bf16)
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, value in tensors.items():
        if name == "__metadata__" or not name or "\0" in name:
            raise SafetensorsError(f"invalid tensor name {name!r}")
        a = np.asarray(value)
        if not a.flags.c_contiguous:  # (np.ascontiguousarray would turn a scalar into [1])
            a = a.copy(order="C")
        if name in bf16:
            raw, dt = _to_bf16_bits(a).tobytes(), "BF16"
        else:
            dt = _dtype_name(a.dtype)
            raw = a.astype(DTYPES[dt], copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": [int(d) for d in a.shape],
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # keeps the data area 8-byte aligned
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".tmp.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_MAX_DIM = 1 << 40  # as the C reader: a dimension above this is refused, even beside a 0
_MAX_VALUES = 1 << 20  # JSON values a header may hold (the C reader's bound on its memory)
_INT64_MAX = (1 << 63) - 1
# JSON tokens (a string, an opening or closing bracket, a number or literal) and a \u0000
# escape that is not itself escaped
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[{]|[\]}]|[^\s,:\[\]{}"]+')
_NUL_ESCAPE = re.compile(rb'(?<!\\)(?:\\\\)*\\u0000')


def _scan(text):
    """Checks what json.loads would not, before it runs: the nesting depth (a deep header
    made it raise RecursionError), the number of values, and \\u0000 escapes."""
    depth = values = 0
    check_nul = b"\\u0000" in text
    for m in _TOKEN.finditer(text):
        c = text[m.start()]
        if c in b"]}":
            depth -= 1
            continue
        values += 1  # a value (or a key, which always has one) at depth + 1
        if depth + 1 > _MAX_DEPTH:
            raise SafetensorsError(f"header JSON: at byte {8 + m.start()}: nesting deeper than "
                                   f"{_MAX_DEPTH} levels")
        if values > 2 * _MAX_VALUES:
            raise SafetensorsError(f"header JSON: at byte {8 + m.start()}: more than "
                                   f"{_MAX_VALUES} JSON values")
        if c in b"[{":
            depth += 1
        elif c == 0x22 and check_nul and _NUL_ESCAPE.search(m.group()):
            raise SafetensorsError(f"header JSON: at byte {8 + m.start()}: \\u0000 (NUL) inside "
                                   "a string")


def _no_constants(name):
    raise SafetensorsError(f"header JSON: {name} is not JSON")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _text(s, what):
    """A decoded JSON string that is valid Unicode (no lone surrogate) and has no NUL."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise SafetensorsError(f"{what} holds a lone surrogate") from None
    if "\0" in s:
        raise SafetensorsError(f"{what} contains NUL")
    return s


def _parse_header(data):
    """Validates the header as the C reader does; every malformed header raises
    SafetensorsError with a sentence (never RecursionError, TypeError or numpy's errors)."""
    if len(data) < 8:
        raise SafetensorsError(f"file is {len(data)} bytes, too short for the header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise SafetensorsError(f"header length {n} exceeds the {len(data) - 8} bytes after it")
    if n > _MAX_HEADER:
        raise SafetensorsError(f"header length {n} exceeds the limit")
    if n < 2:
        raise SafetensorsError(f"header length {n} is too small for a JSON object")
    text = bytes(data[8:8 + n])
    if text[:1] != b"{":
        raise SafetensorsError("header does not start with '{' (not a safetensors file?)")
    _scan(text)

    def no_dups(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise SafetensorsError(f"header JSON: duplicate key {k!r}")
            d[k] = v
        return d

    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=no_dups,
                            parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"header JSON: {e}") from None
    except RecursionError:  # defence in depth: _scan bounds the nesting first
        raise SafetensorsError(f"header JSON nests deeper than {_MAX_DEPTH} levels") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise SafetensorsError('"__metadata__" is not a JSON object')
    for k, v in meta.items():
        if not isinstance(v, str):
            raise SafetensorsError(f'"__metadata__" entry {k!r} is not a string')
        _text(k, f'"__metadata__" key {k!r}')
        _text(v, f'"__metadata__" entry {k!r}')
    size = len(data) - 8 - n
    spans = []
    for name, info in header.items():
        _text(name, f"tensor name {name!r}")
        if not name:
            raise SafetensorsError("a tensor has an empty name")
        if not isinstance(info, dict):
            raise SafetensorsError(f"tensor {name!r}: entry is not a JSON object")
        for key in ("dtype", "shape", "data_offsets"):
            if key not in info:
                raise SafetensorsError(f"tensor {name!r}: missing {key!r}")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dt, str) or dt not in _SIZES:
            raise SafetensorsError(f"tensor {name!r}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise SafetensorsError(f"tensor {name!r}: bad shape {shape!r}")
        for k, d in enumerate(shape):
            if d > _MAX_DIM:
                raise SafetensorsError(f"tensor {name!r}: shape[{k}] is {d}, above the limit "
                                       "of 2^40")
        span = 1
        for d in shape:
            span *= d or 1
        if span * _SIZES[dt] > _INT64_MAX:
            raise SafetensorsError(f"tensor {name!r}: shape {shape} is too large (the byte "
                                   "size overflows)")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(_is_int(o) and 0 <= o <= _INT64_MAX for o in offs)
                or offs[0] > offs[1]):
            raise SafetensorsError(f"tensor {name!r}: bad data_offsets {offs!r}")
        if offs[1] > size:
            raise SafetensorsError(f"tensor {name!r}: data_offsets {offs} out of range ({size} bytes)")
        need = int(np.prod(shape, dtype=object)) * _SIZES[dt]
        if offs[1] - offs[0] != need:
            raise SafetensorsError(f"tensor {name!r}: {offs[1] - offs[0]} bytes, shape needs {need}")
        spans.append((offs[0], offs[1], name))
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            raise SafetensorsError(f"tensor {name!r}: data not contiguous at offset {b}")
        pos = e
    if pos != size:
        raise SafetensorsError(f"{size - pos} bytes after the last tensor")
    return header, meta, 8 + n


def load_header(path):
    """Return (header dict without __metadata__, metadata dict) after validating it."""
    with open(path, "rb") as f:
        data = f.read()
    header, meta, _ = _parse_header(data)
    return header, meta


def load(path, bf16_as=np.float32):
    """Return (dict name -> numpy array, metadata dict). BF16 comes back as float32; other
    dtypes as their numpy dtype. The arrays are copies (the file is closed on return)."""
    with open(path, "rb") as f:
        data = f.read()
    header, meta, base = _parse_header(data)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        dt = info["dtype"]
        if dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4").astype(bf16_as)
        elif dt in DTYPES:
            arr = np.frombuffer(raw, dtype=DTYPES[dt])
        else:
            raise SafetensorsError(f"tensor {name!r}: dtype {dt} has no numpy equivalent")
        try:
            out[name] = arr.reshape(info["shape"]).copy()
        except ValueError as e:  # e.g. more dimensions than numpy holds
            raise SafetensorsError(f"tensor {name!r}: numpy cannot hold shape "
                                   f"{info['shape']}: {e}") from None
    return out, meta
