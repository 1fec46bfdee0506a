# SPDX-License-Identifier: MIT
"""strop.Tokenizer: loading, encoding (single, pairs, batches as numpy arrays), decoding,
lookups, added tokens, training and saving, and the errors each raises."""
import json
import os

import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()

BERT = {
    "normalizer": {"type": "BertNormalizer", "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
    "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
    "added_tokens": [{"id": i, "content": t, "special": True}
                     for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])],
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {
        "[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "un": 5, "##aff": 6,
        "##able": 7, "hello": 8, "##s": 9, ",": 10, "world": 11, "cafe": 12}},
}


@pytest.fixture
def bert(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(BERT), encoding="utf-8")
    with strop.Tokenizer.from_file(tmp_path) as t:  # the folder finds tokenizer.json
        yield t


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20, encoding="utf-8")
    return p


def test_encode_decode(bert):
    assert bert.vocab_size == 13
    assert bert.encode("UNaffable Hellos, Café") == [2, 5, 6, 7, 8, 9, 10, 12, 3]
    assert bert.encode("hello", add_special_tokens=False) == [8]
    assert bert.decode([2, 5, 6, 7, 8, 10, 11, 3]) == "[CLS] unaffable hello, world [SEP]"
    assert bert.decode(np.array([2, 8, 3]), skip_special_tokens=True) == "hello"
    assert bert.decode([]) == ""


def test_pairs_offsets_and_types(bert):
    r = bert.encode("hello", "worlds", return_offsets=True)
    assert r["input_ids"].tolist() == [2, 8, 3, 11, 9, 3]
    assert r["token_type_ids"].tolist() == [0, 0, 0, 1, 1, 1]
    assert r["offsets"].tolist() == [[0, 0], [0, 5], [0, 0], [0, 5], [5, 6], [0, 0]]
    assert bert.encode("hello", "world") == [2, 8, 3, 11, 3]


def test_encode_batch_padding_and_truncation(bert):
    b = bert.encode_batch(["hello", "hello world hello", ""])
    assert set(b) == {"input_ids", "token_type_ids", "attention_mask"}
    assert b["input_ids"].dtype == np.int64 and b["input_ids"].shape == (3, 5)
    assert b["input_ids"][0].tolist() == [2, 8, 3, 0, 0]
    assert b["attention_mask"].sum(axis=1).tolist() == [3, 5, 2]
    b = bert.encode_batch(["hello", "hello world hello"], padding="longest", padding_side="left")
    assert b["input_ids"][0].tolist() == [0, 0, 2, 8, 3]
    b = bert.encode_batch(["hello world hello world"], max_length=4, padding="max_length")
    assert b["input_ids"].tolist() == [[2, 8, 11, 3]]
    b = bert.encode_batch(["hello"], max_length=8, padding="max_length", pad_to_multiple_of=3)
    assert b["input_ids"].shape == (1, 9)
    b = bert.encode_batch(["hello world hello"], ["world world"], max_length=6)
    assert b["input_ids"].tolist() == [[2, 8, 11, 3, 11, 3]]
    assert b["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1]]
    b = bert.encode_batch(["a longer text than the guess " * 40])  # the buffer grows
    assert b["input_ids"].shape[1] > 200
    with pytest.raises(strop.InvalidArgument, match="row 0"):
        bert.encode_batch(["hello"], ["world world world"], max_length=4,
                          truncation="only_first")
    with pytest.raises(strop.InvalidArgument):
        bert.encode_batch("hello")
    with pytest.raises(strop.InvalidArgument):
        bert.encode_batch(["x"], padding="sideways")


def test_lookups_and_special_ids(bert):
    assert bert.token_to_id("hello") == 8
    assert bert.token_to_id("nope") is None
    assert bert.id_to_token(9) == "##s"
    with pytest.raises(strop.InvalidArgument):
        bert.id_to_token(99)
    assert bert.special_id("pad") == 0 and bert.special_id("cls") == 2
    assert bert.special_id("mask") == 4 and bert.special_id("bos") is None
    bert.set_special_id("pad", 1)
    assert bert.special_id("pad") == 1
    with pytest.raises(strop.InvalidArgument):
        bert.set_special_id("pad", 1000)
    assert bert.token_flags(2) == 32 | 1  # added, special
    assert bert.token_flags(8) == 0


def test_added_tokens(bert):
    i = bert.add_token("<new>", special=True)
    assert i == 13 and bert.vocab_size == 14
    assert bert.encode("hello<new>world", add_special_tokens=False) == [8, 13, 11]
    assert bert.decode([8, 13, 11], skip_special_tokens=True) == "hello world"
    with pytest.raises(strop.InvalidArgument):
        bert.add_token("")


def test_train_save_reload(tmp_path, corpus):
    t = strop.Tokenizer.train_bpe([corpus], 270, special_tokens=["<|endoftext|>", "<pad>"])
    assert t.vocab_size == 270
    assert t.special_id("pad") == 1
    ids = t.encode("the cat sat on the log")
    assert len(ids) < 10
    assert t.decode(ids) == "the cat sat on the log"
    path = tmp_path / "trained.json"
    t.save(path)
    u = strop.Tokenizer.from_file(path)
    assert u.encode("the cat sat on the log") == ids
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["type"] == "BPE"
    t.close()
    u.close()
    assert "closed" in repr(u)
    with pytest.raises(strop.StateError):
        u.encode("x")


def test_load_errors(tmp_path):
    with pytest.raises(strop.StropIOError):
        strop.Tokenizer.from_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"type": "Fancy"}}')
    with pytest.raises(strop.Unsupported, match="Fancy"):
        strop.Tokenizer.from_file(bad)
    bad.write_text('{"model": ')
    with pytest.raises(strop.FormatError, match="bad.json"):
        strop.Tokenizer.from_file(bad)
    with pytest.raises(strop.NotFound):
        strop.Tokenizer.from_file(tmp_path)  # a folder without tokenizer files
    with pytest.raises(TypeError):
        strop.Tokenizer()
    with pytest.raises(strop.StropIOError):
        strop.Tokenizer.train_bpe([tmp_path / "none.txt"], 300)
    with pytest.raises(strop.InvalidArgument):
        strop.Tokenizer.train_bpe([bad], 10)


def test_invalid_utf8_bytes(bert, corpus):
    # bytes that are not UTF-8 read as U+FFFD, which BERT's cleaning drops
    assert bert.encode(b"hello \xff world", add_special_tokens=False) == [8, 11]
    # a byte-level BPE keeps it: U+FFFD's three bytes, and decodes it back as U+FFFD
    t = strop.Tokenizer.train_bpe([corpus], 260)
    ids = t.encode(b"a\xffb")
    assert t.decode(ids) == "a\ufffdb"
    assert os.fspath(bert.__class__.__module__) == "strop.text"


# ---- text datasets (Dataset.load_text_file) ----

def test_text_dataset_classify_pairs_and_batches(bert, tmp_path):
    p = tmp_path / "pairs.jsonl"
    rows = [("hello", "world", "yes"), ("unaffable hellos", "hello", "no"), ("cafe", "cafe", "yes")]
    p.write_text("".join(json.dumps({"a": a, "b": b, "label": y}) + "\n" for a, b, y in rows))
    ds = strop.Dataset.load_text_file(p, bert, text="a", pair="b", max_length=10)
    assert len(ds) == 3 and ds.num_classes == 2 and ds.has_mask
    assert [ds.class_name(c) for c in range(2)] == ["no", "yes"]
    for i, (a, b, y) in enumerate(rows):
        x, label = ds[i]
        want = bert.encode(a, b)
        assert x[:len(want)].tolist() == want and not x[len(want):].any()
        assert label == (1.0 if y == "yes" else 0.0)
    # batches are as long as their longest row, the mask says which positions are tokens
    it = ds.batches(batch_size=2)
    x, y = it.next_batch()
    assert x.shape == (2, 9) and it.mask.shape == (2, 9)
    assert it.mask.sum(axis=1).tolist() == [5.0, 9.0]


def test_text_dataset_prompt_response_and_errors(corpus, tmp_path):
    tok = strop.Tokenizer.train_bpe([corpus], vocab_size=280, special_tokens=["<|endoftext|>"])
    tok.set_special_id("eos", 0)
    p = tmp_path / "pr.jsonl"
    p.write_text(json.dumps({"prompt": "the cat", "response": " sat on the mat"}) + "\n")
    ds = strop.Dataset.load_text_file(p, tok, task="prompt_response", max_length=16)
    x, t = ds[0]
    prompt = tok.encode("the cat")
    seq = prompt + tok.encode(" sat on the mat", add_special_tokens=False) + [0]
    n = len(seq) - 1
    assert x[:n].tolist() == seq[:-1]
    assert t[:len(prompt) - 1].tolist() == [-100] * (len(prompt) - 1)
    assert t[len(prompt) - 1:n].tolist() == seq[len(prompt):]
    assert (t[n:] == -100).all()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(strop.StropError, match=r"bad\.jsonl:2: no field \"response\""):
        strop.Dataset.load_text_file(bad, tok, task="prompt_response")
    with pytest.raises(strop.StropError, match="only the causal-LM task"):
        strop.Dataset.load_text_file(corpus, tok)
    lm = strop.Dataset.load_text_file(corpus, tok, task="causal_lm", max_length=8)
    assert lm.target_shape == (8,) and lm.num_classes == tok.vocab_size


def test_model_predict_text(tmp_path):
    """Model.predict_text: a text classifier a recipe trained classifies raw strings with the
    tokenizer its metadata names (or one given); a model without the metadata is refused."""
    (tmp_path / "tokenizer.json").write_text(json.dumps({
        "pre_tokenizer": {"type": "Whitespace"},
        "model": {"type": "WordLevel", "unk_token": "<unk>", "vocab": {
            "<pad>": 0, "<unk>": 1, "good": 2, "bad": 3, "very": 4, "film": 5}}}))
    (tmp_path / "net.yaml").write_text(
        "input: [8]\nlayers:\n  - {name: emb, type: embedding, num_embeddings: 6, "
        "embedding_dim: 8}\n  - {name: pool, type: mean_pool}\n"
        "  - {name: head, type: linear, out_features: 2}\n")
    with open(tmp_path / "reviews.jsonl", "w") as f:
        for i in range(40):
            f.write(json.dumps({"review": ("very " if i % 3 else "") +
                                ("good" if i % 2 else "bad") + " film",
                                "y": "pos" if i % 2 else "neg"}) + "\n")
    (tmp_path / "r.yaml").write_text(
        "seed: 1\nmodel: {spec: net.yaml}\n"
        "data: {source: jsonl, path: reviews.jsonl, tokenizer: tokenizer.json, text: review,"
        " label: y, max_length: 8, test_fraction: 0.25, batch_size: 8}\n"
        "optimizer: {kind: adam, lr: 0.05}\ntrain: {epochs: 15}\n"
        "output: {dir: out, weights: w.safetensors, spec: s.yaml}\n")
    with strop.Recipe.load(tmp_path / "r.yaml") as r:
        r.run(mode="train").close()
    m = strop.Model.load(tmp_path / "out" / "s.yaml", tmp_path / "out" / "w.safetensors")
    assert m.predict_text(["very good film", "bad film"]).tolist() == [1, 0]
    pred = m.predict_text("good", k=2)
    assert pred.names[0] == ["pos", "neg"] and pred.probs[0, 0] > 0.5
    with strop.Tokenizer.from_file(tmp_path / "tokenizer.json") as tok:
        again = m.predict_text("good", k=2, tokenizer=tok)
        assert (again.probs == pred.probs).all()
        del m.meta["input.tokenizer"]
        with pytest.raises(strop.StropError, match="no 'input.tokenizer' metadata"):
            m.predict_text("good")
        assert m.predict_text("good", tokenizer=tok).tolist() == [1]
    m.close()


def test_text_dataset_cache(bert, tmp_path):
    """cache_dir: the second load reads the tokenised file back (same samples), a changed
    option makes another file."""
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"text": t, "label": l}) + "\n"
                         for t, l in [("hello world", "a"), ("unaffable", "b")]))
    plain = strop.Dataset.load_text_file(p, bert, max_length=6)
    one = strop.Dataset.load_text_file(p, bert, max_length=6, cache_dir=tmp_path / "cache")
    two = strop.Dataset.load_text_file(p, bert, max_length=6, cache_dir=tmp_path / "cache")
    for i in range(2):
        assert plain[i][0].tolist() == one[i][0].tolist() == two[i][0].tolist()
        assert plain[i][1] == one[i][1] == two[i][1]
    assert len(list((tmp_path / "cache").glob("c.jsonl.*.tokens"))) == 1
    strop.Dataset.load_text_file(p, bert, max_length=5, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("c.jsonl.*.tokens"))) == 2
