# SPDX-License-Identifier: MIT
"""Tokenizers (strop_tokenizer): load the tokenizer a checkpoint ships (tokenizer.json, a
SentencePiece .model, GPT-2's vocab.json + merges.txt, BERT's vocab.txt), encode text to ids and
batches of numpy arrays, decode ids, train a byte-level BPE.

    tok = strop.Tokenizer.from_file("gpt2/")          # a folder or a file
    ids = tok.encode("Hello world")                    # [15496, 995]
    batch = tok.encode_batch(["a", "longer text"], padding="longest", pad_id=0)
    batch["input_ids"], batch["attention_mask"]        # int64 arrays (2, width)
    tok.decode(ids)                                    # "Hello world"
"""
import ctypes
import os

import numpy as np

from . import _lib
from ._handle import Handle
from ._util import as_i64, enc
from .errors import InvalidArgument, check, error_for_status

__all__ = ["Tokenizer"]

# strop_token_flag
SPECIAL, SINGLE_WORD, LSTRIP, RSTRIP, NORMALIZED, ADDED = 1, 2, 4, 8, 16, 32
_ROLES = {"unk": 0, "pad": 1, "bos": 2, "eos": 3, "cls": 4, "sep": 5, "mask": 6}
_TRUNCATION = {None: 0, False: 0, "none": 0, True: 1, "longest_first": 1, "only_first": 2,
               "only_second": 3}
_PADDING = {None: 0, False: 0, "none": 0, "do_not_pad": 0, True: 1, "longest": 1,
            "max_length": 2}
_SIDE = {"right": 0, "left": 1}


def _choice(table, value, what):
    try:
        return table[value]
    except (KeyError, TypeError):
        names = ", ".join(repr(k) for k in table if isinstance(k, str))
        raise InvalidArgument(f"{what} must be one of {names}, got {value!r}") from None


def _utf8(text, what="text"):
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    raise InvalidArgument(f"{what} must be str or bytes, got {type(text).__name__}")


class Tokenizer(Handle):
    """A tokenizer (strop_tokenizer). Make one with Tokenizer.from_file or Tokenizer.train_bpe.
    One tokenizer is used by one thread at a time (it keeps work buffers and a cache): a second
    thread's call waits for the first's."""

    def __init__(self):
        raise TypeError("use Tokenizer.from_file or Tokenizer.train_bpe")

    @classmethod
    def _adopt(cls, h):
        t = cls.__new__(cls)
        t._own(h, _lib.lib.strop_tokenizer_free)
        return t

    @classmethod
    def from_file(cls, path, *, lowercase=None, add_prefix_space=None, add_bos=False,
                  add_eos=False):
        """Loads a tokenizer from a file or a folder (see strop_tokenizer_load).
        lowercase (BERT vocab.txt) and add_prefix_space (GPT-2 vocab.json) default to what
        tokenizer_config.json beside the file says; add_bos/add_eos apply to .model files."""
        o = _lib.strop_tokenizer_options()
        _lib.lib.strop_tokenizer_options_init(ctypes.byref(o))
        o.lowercase = -1 if lowercase is None else int(bool(lowercase))
        o.add_prefix_space = -1 if add_prefix_space is None else int(bool(add_prefix_space))
        o.add_bos = int(bool(add_bos))
        o.add_eos = int(bool(add_eos))
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tokenizer_load(enc(os.fspath(path)), ctypes.byref(o),
                                            ctypes.byref(out)))
        return cls._adopt(out.value)

    @classmethod
    def train_bpe(cls, files, vocab_size=8000, *, min_frequency=2, special_tokens=(),
                  add_prefix_space=False, max_token_length=0):
        """Trains a byte-level BPE (GPT-2's pre-tokenizer) on text files; special tokens get
        ids 0, 1, ... in order."""
        if isinstance(files, (str, bytes, os.PathLike)):
            files = [files]
        paths = [enc(os.fspath(p)) for p in files]
        arr = (ctypes.c_char_p * max(1, len(paths)))(*paths)
        specials = [_utf8(s, "special token") for s in special_tokens]
        sarr = (ctypes.c_char_p * max(1, len(specials)))(*specials)
        o = _lib.strop_bpe_train_options()
        _lib.lib.strop_bpe_train_options_init(ctypes.byref(o))
        o.vocab_size = int(vocab_size)
        o.min_frequency = int(min_frequency)
        o.special_tokens = ctypes.cast(sarr, ctypes.POINTER(ctypes.c_char_p)) if specials else None
        o.num_special_tokens = len(specials)
        o.add_prefix_space = int(bool(add_prefix_space))
        o.max_token_length = int(max_token_length)
        out = ctypes.c_void_p()
        check(_lib.lib.strop_tokenizer_train_bpe(arr, len(paths), ctypes.byref(o),
                                                 ctypes.byref(out)))
        return cls._adopt(out.value)

    def save(self, path):
        """Writes a Hugging Face tokenizer.json (atomically)."""
        check(_lib.lib.strop_tokenizer_save(self._h, enc(os.fspath(path))))

    # ---- the vocabulary ----
    @property
    def vocab_size(self):
        """One more than the largest id (the rows an embedding needs)."""
        return int(_lib.lib.strop_tokenizer_vocab_size(self._h))

    def __len__(self):
        return self.vocab_size

    def token_to_id(self, token):
        """The id of a token string, or None when it is not in the vocabulary."""
        i = _lib.lib.strop_tokenizer_token_to_id(self._h, _utf8(token, "token"))
        return None if i < 0 else int(i)

    def id_to_token(self, id):
        """The token string of an id (InvalidArgument for an id out of range)."""
        n = _lib.lib.strop_tokenizer_id_to_token(self._h, int(id), None, 0)
        if n < 0:
            raise error_for_status(-1)
        buf = ctypes.create_string_buffer(int(n) + 1)
        _lib.lib.strop_tokenizer_id_to_token(self._h, int(id), buf, n + 1)
        return buf.raw[:n].decode("utf-8", "replace")

    def token_flags(self, id):
        """strop_token_flag bits of an id (ADDED, SPECIAL, ...); 0 for a plain token."""
        f = _lib.lib.strop_tokenizer_token_flags(self._h, int(id))
        if f < 0:
            raise error_for_status(-1)
        return int(f)

    def add_token(self, content, *, special=False, single_word=False, lstrip=False,
                  rstrip=False, normalized=None):
        """Adds a token matched before the model sees the text; returns its id. normalized
        defaults to not special (as Hugging Face's AddedToken)."""
        if normalized is None:
            normalized = not special
        flags = ((SPECIAL if special else 0) | (SINGLE_WORD if single_word else 0)
                 | (LSTRIP if lstrip else 0) | (RSTRIP if rstrip else 0)
                 | (NORMALIZED if normalized else 0))
        i = ctypes.c_int64()
        check(_lib.lib.strop_tokenizer_add_token(self._h, _utf8(content, "content"), flags,
                                                 ctypes.byref(i)))
        return int(i.value)

    def special_id(self, role):
        """The id of a role ("pad", "unk", "bos", "eos", "cls", "sep", "mask"), or None."""
        i = _lib.lib.strop_tokenizer_special_id(self._h, _choice(_ROLES, role, "role"))
        return None if i < 0 else int(i)

    def set_special_id(self, role, id):
        """Sets (or with None forgets) the id of a role, e.g. the pad id batches pad with."""
        check(_lib.lib.strop_tokenizer_set_special_id(self._h, _choice(_ROLES, role, "role"),
                                                      -1 if id is None else int(id)))

    # ---- encoding ----
    def _options(self, add_special_tokens, max_length, truncation, truncation_side, padding,
                 padding_side, pad_to_multiple_of, pad_id, pad_type_id=0):
        o = _lib.strop_encode_options()
        _lib.lib.strop_encode_options_init(ctypes.byref(o))
        o.add_special_tokens = int(bool(add_special_tokens))
        o.max_length = 0 if max_length is None else int(max_length)
        o.truncation = _choice(_TRUNCATION, truncation, "truncation")
        o.truncation_side = _choice(_SIDE, truncation_side, "truncation_side")
        o.padding = _choice(_PADDING, padding, "padding")
        o.padding_side = _choice(_SIDE, padding_side, "padding_side")
        o.pad_to_multiple_of = int(pad_to_multiple_of or 0)
        o.pad_id = -1 if pad_id is None else int(pad_id)
        o.pad_type_id = int(pad_type_id)
        return o

    def encode(self, text, pair=None, *, add_special_tokens=True, max_length=None,
               truncation="longest_first", truncation_side="right", return_offsets=False):
        """The ids of one text (or a pair) as a list of ints. With return_offsets, a dict
        like encode_batch's for one row: input_ids, token_type_ids, attention_mask and
        offsets (byte offsets into the UTF-8 text, (0, 0) for special tokens)."""
        if pair is not None or return_offsets:
            b = self.encode_batch([text], None if pair is None else [pair],
                                  add_special_tokens=add_special_tokens, max_length=max_length,
                                  truncation=truncation, truncation_side=truncation_side,
                                  padding=None, return_offsets=return_offsets)
            if not return_offsets:
                return b["input_ids"][0].tolist()
            return {k: v[0] for k, v in b.items()}
        data = _utf8(text)
        o = self._options(add_special_tokens, max_length, truncation, truncation_side, None,
                          "right", 0, None)
        cap = len(data) + 64
        ids = np.empty(cap, dtype=np.int64)
        n = ctypes.c_int64()
        check(_lib.lib.strop_tokenizer_encode(self._h, data, len(data), ctypes.byref(o),
                                              ids.ctypes.data, cap, ctypes.byref(n)))
        if n.value > cap:
            ids = np.empty(n.value, dtype=np.int64)
            check(_lib.lib.strop_tokenizer_encode(self._h, data, len(data), ctypes.byref(o),
                                                  ids.ctypes.data, n.value, ctypes.byref(n)))
        return ids[:n.value].tolist()

    def encode_batch(self, texts, pairs=None, *, add_special_tokens=True, max_length=None,
                     truncation="longest_first", truncation_side="right", padding="longest",
                     padding_side="right", pad_to_multiple_of=None, pad_id=None, pad_type_id=0,
                     return_offsets=False):
        """Encodes texts (and pairs) into int64 arrays of shape (len(texts), width):
        input_ids, attention_mask, token_type_ids (and offsets, (n, width, 2), with
        return_offsets). padding: "longest" (default; needs a pad id: pad_id or the
        tokenizer's "pad" role), "max_length" (to max_length) or None (rows end where they
        end, mask 0 beyond). truncation: "longest_first", "only_first", "only_second" or None,
        applied when max_length is given."""
        if isinstance(texts, (str, bytes)):
            raise InvalidArgument("encode_batch takes a list of texts; use encode for one")
        enc_texts = [_utf8(t) for t in texts]
        n = len(enc_texts)
        if n == 0:
            raise InvalidArgument("encode_batch needs at least one text")
        for i, t in enumerate(enc_texts):
            if b"\0" in t:
                raise InvalidArgument(f"texts[{i}] holds a NUL character")
        tarr = (ctypes.c_char_p * n)(*enc_texts)
        parr = None
        if pairs is not None:
            if len(pairs) != n:
                raise InvalidArgument(f"{n} texts but {len(pairs)} pairs")
            enc_pairs = [None if p is None else _utf8(p, "pair") for p in pairs]
            parr = (ctypes.c_char_p * n)(*enc_pairs)
        o = self._options(add_special_tokens, max_length, truncation, truncation_side, padding,
                          padding_side, pad_to_multiple_of, pad_id, pad_type_id)
        longest = max(len(t) for t in enc_texts) + (
            max((len(p) for p in enc_pairs if p is not None), default=0) if parr else 0)
        guess = max(int(max_length or 0), longest + 64)
        width = ctypes.c_int64()
        for _ in range(2):
            cap = n * guess
            ids = np.empty(cap, dtype=np.int64)
            types = np.empty(cap, dtype=np.int64)
            mask = np.empty(cap, dtype=np.int64)
            offs = np.empty(2 * cap, dtype=np.int64) if return_offsets else None
            check(_lib.lib.strop_tokenizer_encode_batch(
                self._h, tarr, parr, n, ctypes.byref(o), ids.ctypes.data, types.ctypes.data,
                mask.ctypes.data, offs.ctypes.data if offs is not None else None, cap,
                ctypes.byref(width)))
            w = width.value
            if n * w <= cap:
                break
            guess = w
        out = {"input_ids": ids[:n * w].reshape(n, w).copy(),
               "token_type_ids": types[:n * w].reshape(n, w).copy(),
               "attention_mask": mask[:n * w].reshape(n, w).copy()}
        if return_offsets:
            out["offsets"] = offs[:2 * n * w].reshape(n, w, 2).copy()
        return out

    def apply_chat_template(self, messages, add_generation_prompt=False, chat_template=None):
        """Renders a conversation (a list of {"role": ..., "content": ...} dicts) with a chat
        template into a string, as transformers' apply_chat_template(tokenize=False) does.
        chat_template: None for the tokenizer's own (tokenizer_config.json's), the name of one
        of its named templates, or a template string. Errors raise (strop_last_error's
        sentence names the template, line and column; raise_exception's message is kept)."""
        n = len(messages)
        roles = (ctypes.c_char_p * max(n, 1))(*[enc(m["role"]) for m in messages])
        texts = (ctypes.c_char_p * max(n, 1))(*[enc(m["content"]) for m in messages])
        fn = _lib.lib.strop_tokenizer_apply_chat_template
        need = ctypes.c_size_t()
        check(fn(self._h, enc(chat_template), roles, texts, n, int(bool(add_generation_prompt)),
                 None, 0, ctypes.byref(need)))
        buf = ctypes.create_string_buffer(need.value + 1)
        check(fn(self._h, enc(chat_template), roles, texts, n, int(bool(add_generation_prompt)),
                 buf, need.value + 1, ctypes.byref(need)))
        return buf.raw[:need.value].decode("utf-8")

    def decode(self, ids, skip_special_tokens=False):
        """The text of a sequence of ids (a list or a 1-d array)."""
        a = as_i64(ids)
        fn = _lib.lib.strop_tokenizer_decode
        k = fn(self._h, a.ctypes.data if a.size else None, a.size, int(bool(skip_special_tokens)),
               None, 0)
        if k < 0:
            raise error_for_status(-1)
        buf = ctypes.create_string_buffer(int(k) + 1)
        fn(self._h, a.ctypes.data if a.size else None, a.size, int(bool(skip_special_tokens)),
           buf, k + 1)
        return buf.raw[:k].decode("utf-8", "replace")

    def __repr__(self):
        if self.closed:
            return "<strop.Tokenizer closed>"
        return f"<strop.Tokenizer vocab_size={self.vocab_size}>"
