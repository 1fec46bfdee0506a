#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop — strop_generate against PyTorch greedy loops over the same weights:
  1. gen_transformers.py's GPT-2 and Llama-family folders (reference modules of hf_reference.py,
     transformers 4.44's semantics: learned positions; rotary with linear scaling, grouped-query
     heads) are written into a temporary folder;
  2. for a few prompts, a greedy loop in PyTorch re-runs the growing prefix through the module
     and takes the argmax of the last position's logits (with Hugging Face's repetition penalty
     in some cases), and writes prompts and ids to NAME.generate.safetensors;
  3. the check_generate suite runs with STROP_GEN_FIXTURES pointing there (its pytorch TCase):
     each prompt alone (strop_generate), and the prompts of one penalty as one left-padded
     batch (strop_generate_batch), every sequence giving its own loop's ids; and beam searches
     (transformers' BeamSearchScorer written out below over the same module) against
     strop_generate with num_beams.
Exits 77 (CTest: skipped) when torch is missing: `bash .ci/deps --full` installs it.
Usage: run_generate.py CHECK_GENERATE_BINARY"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def greedy(torch, model, prompt, n, penalty):
    """transformers' greedy search: RepetitionPenaltyLogitsProcessor, then argmax"""
    seq = torch.tensor([prompt], dtype=torch.long)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(seq, torch.ones(seq.shape))[:, -1, :]
            if penalty != 1.0:
                score = torch.gather(logits, 1, seq)
                score = torch.where(score < 0, score * penalty, score / penalty)
                logits = logits.scatter(1, seq, score)
            nxt = int(torch.argmax(logits, dim=-1)[0])
            out.append(nxt)
            seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    return out


def beam(torch, model, prompt, n, B, penalty, lp, early, stops):
    """transformers' beam search (BeamSearchScorer, BeamHypotheses; 4.44 with generated_len):
    processed log-probabilities plus the beam scores, the best max(2, 1 + len(stops)) * B
    candidates, stop ids among the first B finish hypotheses, is_done's heuristic or
    early_stopping, the open beams added when the length runs out. Returns the best
    hypothesis's new ids with the stop id that ended it (transformers appends its first stop id
    there; with one stop id the same)."""
    seqs = torch.tensor([prompt] * B, dtype=torch.long)
    scores = torch.zeros(B)
    scores[1:] = -1e9
    hyps, worst = [], [1e9]
    keep = max(2, 1 + len(stops)) * B
    vocab = None

    def add(ids, s, g, stop):
        sc = s / (g ** lp) if g > 0 else float("-inf")
        if len(hyps) < B or sc > worst[0]:
            hyps.append((sc, ids, stop))
            if len(hyps) > B:
                srt = sorted([(h[0], i) for i, h in enumerate(hyps)])
                del hyps[srt[0][1]]
                worst[0] = srt[1][0]
            else:
                worst[0] = min(sc, worst[0])

    g, done = 0, False
    with torch.no_grad():
        while True:
            logits = model(seqs, torch.ones(seqs.shape))[:, -1, :]
            vocab = logits.shape[-1]
            lps = torch.log_softmax(logits, dim=-1)
            if penalty != 1.0:
                sc = torch.gather(lps, 1, seqs)
                sc = torch.where(sc < 0, sc * penalty, sc / penalty)
                lps = lps.scatter(1, seqs, sc)
            tot = (lps + scores[:, None]).view(-1)
            vals, idx = torch.topk(tot, keep, largest=True, sorted=True)
            nxt, src, nsc = [], [], []
            for r in range(keep):
                b, tok, v = int(idx[r]) // vocab, int(idx[r]) % vocab, float(vals[r])
                if tok in stops:
                    if r >= B:
                        continue
                    add(seqs[b, len(prompt):].tolist(), v, g, tok)
                else:
                    nxt.append(tok)
                    src.append(b)
                    nsc.append(vals[r])
                if len(nxt) == B:
                    break
            if len(hyps) >= B:
                if early:
                    done = True
                elif g > 0 and worst[0] >= float(vals[0]) / (g ** lp):
                    done = True
            seqs = torch.cat([seqs[src], torch.tensor(nxt).unsqueeze(1)], dim=1)
            scores = torch.stack(nsc)
            g += 1
            if done or g >= n:
                break
    if not done:
        for b in range(B):
            add(seqs[b, len(prompt):].tolist(), float(scores[b]), g, None)
    best = sorted(hyps, key=lambda h: h[0])[-1]
    return best[1] + ([best[2]] if best[2] is not None else [])


def main():
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(f"skipped: {e} (bash .ci/deps --full installs python3-torch)")
        return 77
    sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
    sys.path.insert(0, HERE)
    import hf_reference as R
    import safetensors_np

    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="strop_gen_")
    try:
        subprocess.run([sys.executable, os.path.join(HERE, "gen_transformers.py"), tmp], check=True)
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(20)
        for name, cls in (("gpt2_lm", R.GPT2LMHeadModel), ("llama_lm", R.LlamaForCausalLM)):
            d = os.path.join(tmp, name)
            with open(os.path.join(d, "config.json")) as f:
                cfg = json.load(f)
            model = cls(cfg)
            sd = safetensors_np.load(os.path.join(d, "model.safetensors"))[0]
            missing, unexpected = model.load_state_dict(
                {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()},
                strict=False)
            assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
            if "lm_head.weight" in missing:
                model.lm_head.weight = model.transformer.wte.weight
            model.eval()
            vocab = cfg["vocab_size"]
            ref = {}
            # prompts of 1, 5 and 9 tokens; 12 new tokens each (within the 32 / 64 positions);
            # the cases of one penalty are also generated as one left-padded batch
            for c, (plen, penalty) in enumerate(((1, 1.0), (5, 1.0), (9, 1.3), (5, 0.8),
                                                 (9, 1.0), (3, 1.0), (7, 1.3))):
                prompt = torch.randint(3, vocab, (plen,), generator=g).tolist()
                ids = greedy(torch, model, prompt, 12, penalty)
                ref[f"case{c}.prompt"] = np.array(prompt, dtype=np.float32)
                ref[f"case{c}.ids"] = np.array(ids, dtype=np.float32)
                ref[f"case{c}.penalty"] = np.array([penalty], dtype=np.float32)
            # beam search: beams, repetition penalty, length penalty, early stopping, and a stop
            # id taken from the greedy continuation so that hypotheses finish
            for c, (plen, B, penalty, lp, early, stop) in enumerate((
                    (5, 3, 1.0, 1.0, 0, None), (9, 4, 1.3, 1.0, 0, 2), (3, 2, 1.0, 0.5, 1, 1),
                    (7, 4, 1.0, -0.5, 0, 3), (1, 3, 0.8, 2.0, 0, 0))):
                prompt = torch.randint(3, vocab, (plen,), generator=g).tolist()
                stops = []
                if stop is not None:
                    stops = [greedy(torch, model, prompt, 12, penalty)[stop]]
                ids = beam(torch, model, prompt, 10, B, penalty, lp, bool(early), stops)
                ref[f"beam{c}.prompt"] = np.array(prompt, dtype=np.float32)
                ref[f"beam{c}.ids"] = np.array(ids, dtype=np.float32)
                ref[f"beam{c}.opts"] = np.array([B, penalty, lp, early, stops[0] if stops else -1],
                                                dtype=np.float32)
            safetensors_np.save(os.path.join(tmp, name + ".generate.safetensors"), ref)
        env = dict(os.environ, STROP_GEN_FIXTURES=tmp, CK_RUN_CASE="pytorch")
        return 0 if subprocess.run([binary], env=env).returncode == 0 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
