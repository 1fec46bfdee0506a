# SPDX-License-Identifier: MIT
"""Model.generate: greedy ids equal a loop of full forwards over the growing prefix, seeded
sampling, top-k 1 is greedy, stop ids and strings, the callback streams, cancels and carries
exceptions back, and the errors it raises."""
import numpy as np
import pytest

from conftest import load_strop

strop = load_strop()

V, T = 260, 16


def tiny_gpt(seed=1):
    m = strop.Model([T])
    m.add("wte", "embedding", f"num_embeddings={V} embedding_dim=16", "input")
    m.add("wpe", "positional_embedding", f"num_embeddings={T}")
    m.add("ln_1", "layernorm", "normalized_shape=16")
    m.add("c_attn", "linear", "out_features=48")
    m.add("attn", "attention", "num_heads=2 causal=true")
    m.add("c_proj", "linear", "out_features=16")
    m.add("add_1", "add", None, "wpe,c_proj")
    m.add("ln_f", "layernorm", "normalized_shape=16")
    m.add("lm_head", "linear", f"out_features={V} bias=false")
    return m.finalize(seed)


@pytest.fixture
def model():
    with tiny_gpt() as m:
        yield m


def greedy_loop(m, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        logits = m.forward(np.array([seq], dtype=np.float32))[0, -1]
        seq.append(int(np.argmax(logits)))
    return seq[len(prompt):]


def test_greedy_equals_full_forwards(model):
    prompt = [5, 77, 12]
    assert model.generate(prompt, 8) == greedy_loop(model, prompt, 8)
    assert model.generate(np.array(prompt), 0) == []


def test_sampling(model):
    a = model.generate([1, 2], 10, temperature=1.5, seed=4)
    assert a == model.generate([1, 2], 10, temperature=1.5, seed=4)
    assert model.generate([1, 2], 10, temperature=1.5, top_k=1, seed=5) == \
        model.generate([1, 2], 10)
    assert all(0 <= i < V for i in a)


def test_stops_and_callback(model, tmp_path):
    full = model.generate([9, 8], 10)
    assert model.generate([9, 8], 10, stop_ids=[full[2]]) == full[:full.index(full[2]) + 1]
    seen = []
    assert model.generate([9, 8], 10, on_token=seen.append) == full
    assert seen == full
    assert model.generate([9, 8], 10, on_token=lambda i: len(seen) > 0) == full[:1]

    def boom(i):
        raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        model.generate([9, 8], 10, on_token=boom)

    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\n" * 20, encoding="utf-8")
    with strop.Tokenizer.train_bpe(corpus, vocab_size=V, min_frequency=1) as tok:
        text = tok.decode(full[:4])
        stop = text[-1:] if text else "x"
        got = model.generate([9, 8], 10, stop_strings=[stop], tokenizer=tok)
        assert stop in tok.decode(got) and got == full[:len(got)] and len(got) <= 4


def test_errors(model):
    with pytest.raises(strop.InvalidArgument, match="temperature"):
        model.generate([1], 4, temperature=-1)
    with pytest.raises(strop.InvalidArgument, match="top_p"):
        model.generate([1], 4, top_p=0)
    with pytest.raises(strop.InvalidArgument, match=r"prompt\[1\] is 999"):
        model.generate([1, 999], 4)
    with pytest.raises(strop.InvalidArgument, match="tokenizer"):
        model.generate([1], 4, stop_strings=["a"])
    with pytest.raises(strop.InvalidArgument, match="prompt has 0 ids"):
        model.generate([], 4)
    with strop.Model([4]) as m:
        m.add("emb", "embedding", "num_embeddings=10 embedding_dim=4", "input")
        m.add("pool", "mean_pool")
        m.finalize()
        with pytest.raises(strop.Unsupported):
            m.generate([1], 2)


def test_a_list_of_prompts_is_one_batch(model):
    prompts = [[5, 77, 12], [3], [9, 8, 7, 6, 5, 4, 3], [200, 1]]
    alone = [model.generate(p, 6) for p in prompts]
    assert model.generate(prompts, 6) == alone
    assert model.generate(prompts, 6, temperature=1.2, seed=3) == \
        [model.generate(p, 6, temperature=1.2, seed=3) for p in prompts]
    # each prompt stops on its own
    stop = alone[0][1]
    assert model.generate(prompts, 6, stop_ids=[stop]) == \
        [model.generate(p, 6, stop_ids=[stop]) for p in prompts]
    seen = []
    out = model.generate(prompts, 3, on_token=lambda row, i: seen.append((row, i)))
    assert sorted(seen) == sorted((r, i) for r, ids in enumerate(out) for i in ids)
    assert model.generate(prompts, 3, on_token=lambda row, i: row == 1) == \
        [alone[0][:1], alone[1][:1], [], []]
    with pytest.raises(strop.StropError, match=r"prompts\[1\]\[0\] is 999"):
        model.generate([[1], [999]], 3)
    # a 2-D array is a batch of prompts, one a row (as encode_batch's input_ids), not one prompt
    rows = np.array([[5, 77, 12], [9, 8, 7]], dtype=np.int64)
    assert model.generate(rows, 6) == [model.generate(list(r), 6) for r in rows]
    with pytest.raises(strop.InvalidArgument, match=r"shape \(1, 2, 3\)"):
        model.generate(rows[None], 6)


def sequence_logprob(m, prompt, ids):
    """the summed log-probabilities of ids after prompt, from full forwards"""
    seq, total = list(prompt), 0.0
    for i in ids:
        z = m.forward(np.array([seq], dtype=np.float32))[0, -1].astype(np.float64)
        total += z[i] - (z.max() + np.log(np.exp(z - z.max()).sum()))
        seq.append(i)
    return total


def test_beam_search(model):
    prompt = [5, 77, 12]
    assert model.generate(prompt, 6, num_beams=1) == model.generate(prompt, 6)
    # more beams than the machine can hold the caches and scores of: refused before any is
    # allocated
    with pytest.raises(strop.OutOfMemory, match=r"num_beams 1000000000000 needs .* GB \(.* MB "
                                                 r"a beam: its key/value caches of 8 positions"):
        model.generate(prompt, 6, num_beams=10**12)
    got = model.generate(prompt, 6, num_beams=4, length_penalty=0.0)
    assert len(got) == 6 and all(0 <= i < V for i in got)
    # with no length penalty the best of four beams is at least as likely as the greedy
    # continuation on this model (beam search does not promise it in general)
    greedy = model.generate(prompt, 6)
    assert sequence_logprob(model, prompt, got) >= sequence_logprob(model, prompt, greedy) - 1e-4
    seen = []
    assert model.generate(prompt, 6, num_beams=4, length_penalty=0.0, on_token=seen.append) == got
    assert seen == got
    prompts = [prompt, [3], [200, 1]]
    assert model.generate(prompts, 5, num_beams=3) == \
        [model.generate(p, 5, num_beams=3) for p in prompts]
    stop = got[2]
    ended = model.generate(prompt, 6, num_beams=4, stop_ids=[stop], early_stopping=True)
    assert len(ended) <= 6 and all(0 <= i < V for i in ended)
    with pytest.raises(strop.Unsupported, match="temperature 0"):
        model.generate(prompt, 4, num_beams=2, temperature=1.0)
    with pytest.raises(strop.InvalidArgument, match="num_beams"):
        model.generate(prompt, 4, num_beams=0)
