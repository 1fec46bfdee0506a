# SPDX-License-Identifier: MIT
"""token_type_ids beside the padding mask: text pairs' datasets and batches carry them,
Model.forward and the Trainer take them (Tokenizer.encode_batch's as they are), validated."""
import json

import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()

BERT = {
    "normalizer": {"type": "BertNormalizer", "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
    "added_tokens": [{"id": i, "content": t, "special": True}
                     for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])],
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {
        "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "cat": 5, "dog": 6,
        "sat": 7, "ran": 8, "on": 9, "mat": 10, "a": 11}},
}
PAIRS = [("the cat", "a dog ran"), ("cat", "dog"), ("the dog sat", "on a mat")]


@pytest.fixture
def bert(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(BERT), encoding="utf-8")
    with strop.Tokenizer.from_file(p) as t:
        yield t


def segment_model(width=8):
    """ids -> token embedding + a row per token type -> gelu -> mean -> 2 classes"""
    m = strop.Model([width])
    m.add("tok", "embedding", "num_embeddings=12 embedding_dim=8")
    m.add("seg", "positional_embedding", "num_embeddings=2 positions=types")
    m.add("act", "gelu")
    m.add("pool", "mean_pool")
    m.add("head", "linear", "in_features=8 out_features=2")
    return m.finalize(seed=3)


def test_pair_batches_carry_the_tokenizers_types(bert, tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps({"a": a, "b": b, "label": i % 2}) + "\n"
                         for i, (a, b) in enumerate(PAIRS)))
    ds = strop.Dataset.load_text_file(p, bert, text="a", pair="b", max_length=12)
    assert ds.has_token_types
    enc = bert.encode_batch([a for a, _ in PAIRS], [b for _, b in PAIRS])
    it = ds.batches(batch_size=3)
    x, _ = it.next_batch()
    w = x.shape[1]
    assert it.token_types.dtype == np.int64 and it.token_types.shape == (3, w)
    assert (it.token_types == enc["token_type_ids"][:, :w]).all()
    assert (it.token_types[it.mask == 0] == 0).all()  # padding has type 0
    single = strop.Dataset.load_text_file(p, bert, text="a", max_length=12)
    assert not single.has_token_types
    it = single.batches(batch_size=3)
    it.next_batch()
    assert it.token_types is None


def test_forward_and_trainer_take_encode_batch_types(bert):
    enc = bert.encode_batch([a for a, _ in PAIRS], [b for _, b in PAIRS], padding="max_length",
                            max_length=8)
    ids, mask, types = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
    assert types.max() == 1
    m = segment_model()
    with_types = m.forward(ids, mask, token_type_ids=types)
    zeros = m.forward(ids, mask, token_type_ids=np.zeros_like(types))
    assert not np.allclose(with_types, zeros)  # the types reach the model
    assert np.array_equal(zeros, m.forward(ids, mask))  # no types: type 0 everywhere
    opt = strop.Optimizer(m, "adam", lr=0.05)
    tr = strop.Trainer(m, opt)
    y = np.array([1, 0, 1], dtype=np.float32)
    first = tr.step(ids, y, mask=mask, token_type_ids=types)
    for _ in range(30):
        last = tr.step(ids, y, mask=mask, token_type_ids=types)
    assert last < first
    out = tr.forward(ids, mask, token_type_ids=types)
    assert out.shape == (3, 2)
    tr.discard_forward()


def test_token_type_errors(bert):
    m = segment_model()
    ids = np.array([[2, 4, 5, 3, 6, 3, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    types = np.array([[0, 0, 0, 0, 1, 1, 0, 0]])
    with pytest.raises(strop.InvalidArgument, match="integers"):
        m.forward(ids, mask, token_type_ids=types.astype(np.float32))
    with pytest.raises(strop.ShapeError, match=r"\(1, 8\)"):
        m.forward(ids, mask, token_type_ids=types[:, :5])
    with pytest.raises(strop.InvalidArgument, match="-1 at sample 0, position 2"):
        m.forward(ids, mask, token_type_ids=np.where(np.arange(8) == 2, -1, types))
    # past the table of 2 rows: the library names the layer and the value
    with pytest.raises(strop.InvalidArgument, match=r"'seg'.*token type 2 at sample 0, position 4"):
        m.forward(ids, mask, token_type_ids=types * 2)
    tr = strop.Trainer(m, strop.Optimizer(m, "sgd", lr=0.1))
    with pytest.raises(strop.ShapeError):
        tr.step(ids, np.array([1.0]), mask=mask, token_type_ids=types[:, :3])
    ds = strop.Dataset.from_numpy(ids.astype(np.float32), np.array([1.0]), num_classes=2, copy=True)
    with pytest.raises(strop.InvalidArgument):
        ds.set_token_types(types.astype(np.float64))
    ds.set_token_types(types)
    assert ds.has_token_types
    ds.set_token_types(None)
    assert not ds.has_token_types


def test_side_inputs_struct_has_the_librarys_size():
    import ctypes
    from strop import _lib
    buf = ctypes.create_string_buffer(256)
    _lib.lib.strop_side_inputs_init(buf)
    assert ctypes.c_size_t.from_buffer(buf).value == ctypes.sizeof(_lib.strop_side_inputs)
