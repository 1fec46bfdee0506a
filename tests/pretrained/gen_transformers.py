#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes Hugging Face model folders and PyTorch modules' checkpoints, and PyTorch's answers on
them, for tests/check_transformers.c (answers computed in float64 on the float32 values).
Run at test time (nothing here is committed): gen_transformers.py OUTDIR.

The Hugging Face families come from hf_reference.py, reference modules that follow the
modeling code of transformers 4.44 (the package cannot be installed here) with the names,
shapes and config.json a save_pretrained of that release writes: config.json with
"architectures", "model_type", torch_dtype and transformers_version, model.safetensors with
metadata {"format": "pt"} and tied weights stored once. torch.nn's TransformerEncoder is
torch's own (Debian's python3-torch). Every model is small (2 layers, width 32) with
LayerNorm/RMSNorm weights and biases randomised so that every gradient is exercised, and
dropout 0 so train and eval mode agree.

For each case NAME:
  OUTDIR/NAME/ (config.json, model.safetensors)   or OUTDIR/NAME.safetensors (torch.nn)
  OUTDIR/NAME.ref.safetensors: x [4, 12] token ids (as floats, right-padded with the pad id),
      mask [4, 12], y (class indices [4], or for a causal LM [4, 12] next-token targets with
      -100 where Hugging Face's shifted labels ignore), eval.output, loss (mean cross-entropy as
      the Hugging Face model computes it from labels), grad.<param>, after.<param> after one
      AdamW step (lr 1e-3, weight_decay 0.01), tol.<key> (PyTorch's own float32 error)
Forms: gpt2_hub (GPT-2's weights as the hub's gpt2 file has them: no "transformer." prefix,
the attn.bias / attn.masked_bias buffers, a config of the non-default keys only),
llama_bf16 (BF16 tensors, torch_dtype bfloat16; bf16.output from the rounded weights),
llama_sharded (two shards and model.safetensors.index.json).
"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, HERE)
import hf_reference as R  # noqa: E402
import safetensors_np  # noqa: E402

N, T = 4, 12
LENGTHS = [12, 9, 5, 11]
VERSION = "4.44.2"


def rel_err(a, b):
    a = a.detach().numpy().astype(np.float64)
    return np.array([np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)], dtype=np.float32)


def bf16_round(a):
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype("<u4").view("<f4")


def randomise(model, g):
    """norm weights around 1, every bias and weight a little off its initial value"""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() == 1:
                p.copy_(torch.rand(p.shape, generator=g) * 0.6 + 0.7)
            elif name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.2 - 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.15)


def batch(vocab, pad, first, g):
    ids = torch.full((N, T), pad, dtype=torch.long)
    mask = torch.zeros(N, T)
    for i, n in enumerate(LENGTHS):
        ids[i, :n] = torch.randint(first, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


PAIRS = [(4, 5), (3, 2), (1, 1), (6, 2)]  # lengths of A and B (with [CLS]/[SEP]: 12, 8, 5, 11)
CLS, SEP = 2, 3


def pairs(vocab, g):
    """ids [N, T] of [CLS] A [SEP] B [SEP] (pad 0 after) and their token_type_ids"""
    ids = torch.zeros((N, T), dtype=torch.long)
    types = torch.zeros((N, T), dtype=torch.long)
    for i, (a, b) in enumerate(PAIRS):
        seq = [CLS] + torch.randint(4, vocab, (a,), generator=g).tolist() + [SEP]
        first = len(seq)
        seq += torch.randint(4, vocab, (b,), generator=g).tolist() + [SEP]
        ids[i, :len(seq)] = torch.tensor(seq)
        types[i, first:len(seq)] = 1
    return ids, types


def hf_config(arch, model_type, **kw):
    c = {"architectures": [arch], "model_type": model_type, "torch_dtype": "float32",
         "transformers_version": VERSION}
    c.update(kw)
    return c


def write_folder(out, name, cfg, sd, bf16=False, shards=0):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    floats = [k for k, v in sd.items() if v.dtype == np.float32] if bf16 else ()
    if not shards:
        safetensors_np.save(os.path.join(d, "model.safetensors"), sd, metadata={"format": "pt"},
                            bf16=floats)
        return
    names = sorted(sd)
    per = (len(names) + shards - 1) // shards
    wm = {}
    for i in range(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, shards)
        part = names[i * per:(i + 1) * per]
        safetensors_np.save(os.path.join(d, fname), {k: sd[k] for k in part},
                            metadata={"format": "pt"})
        wm.update({k: fname for k in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": int(sum(v.nbytes for v in sd.values()))},
                   "weight_map": wm}, f, indent=2)


def state(model, tied=()):
    return {k: v.detach().numpy().astype(np.float32).copy() for k, v in model.state_dict().items()
            if k not in tied}


def lm_targets(ids, mask):
    """Hugging Face's labels (ids, -100 at padding) shifted left: strop's per-position targets"""
    labels = torch.where(mask > 0, ids, torch.full_like(ids, -100))
    y = torch.full_like(ids, -100)
    y[:, :-1] = labels[:, 1:]
    return labels, y


def references(model, ids, mask, y, lm, labels=None, types=None):
    """eval.output, loss, grad.*, after.* (float64 on the float32 values) and tol.*; types: the
    batch's token_type_ids (saved as "types"), or None"""
    ref = {"x": ids.numpy().astype(np.float32), "y": y.numpy().astype(np.float32)}
    if mask is not None:
        ref["mask"] = mask.numpy().astype(np.float32)
    if types is not None:
        ref["types"] = types.numpy().astype(np.float32)

    def run(m, dtype):
        if mask is None:  # images
            return m(ids.to(dtype))
        if types is not None:
            return m(ids, mask.to(dtype), types)
        return m(ids, mask.to(dtype))

    def loss_of(logits):
        if lm:  # modeling_*: shift inside the model
            return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return F.cross_entropy(logits, y)

    m32 = copy.deepcopy(model)
    m32.train()
    out32 = run(m32, torch.float32)
    loss_of(out32).backward()
    m64 = copy.deepcopy(model).double()
    m64.eval()
    with torch.no_grad():
        ref["eval.output"] = run(m64, torch.float64).float().numpy()
    ref["tol.eval.output"] = rel_err(out32, ref["eval.output"])
    m64.train()
    opt = torch.optim.AdamW(m64.parameters(), lr=1e-3, weight_decay=0.01)
    opt.zero_grad()
    loss = loss_of(run(m64, torch.float64))
    loss.backward()
    ref["loss"] = np.array([loss.item()], dtype=np.float32)
    g32 = dict(m32.named_parameters())
    for name, p in m64.named_parameters():
        ref["grad." + name] = p.grad.float().numpy()
        ref["tol.grad." + name] = rel_err(g32[name].grad, ref["grad." + name])
    opt.step()
    for name, p in m64.named_parameters():
        ref["after." + name] = p.detach().float().numpy()
    return ref


def save_ref(out, name, ref):
    safetensors_np.save(os.path.join(out, name + ".ref.safetensors"), ref)


def gpt2(out):
    cfg = hf_config("GPT2LMHeadModel", "gpt2", vocab_size=50, n_positions=32, n_embd=32,
                    n_layer=2, n_head=4, n_inner=None, activation_function="gelu_new",
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                    initializer_range=0.02, scale_attn_weights=True, use_cache=True,
                    scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False,
                    bos_token_id=49, eos_token_id=49, summary_type="cls_index",
                    summary_use_proj=True, summary_activation=None,
                    summary_proj_to_labels=True, summary_first_dropout=0.1)
    g = torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    model = R.GPT2LMHeadModel(cfg)
    randomise(model, g)
    sd = state(model, tied=("lm_head.weight",))
    write_folder(out, "gpt2_lm", cfg, sd)
    ids, mask = batch(50, 0, 1, g)
    labels, y = lm_targets(ids, mask)
    save_ref(out, "gpt2_lm", references(model, ids, mask, y, True, labels))
    # the hub's form: GPT2Model's names, the mask buffers, a config of non-default keys
    hub = R.GPT2Model(cfg, old_buffers=True)
    hub.load_state_dict({k[len("transformer."):]: torch.from_numpy(v) for k, v in sd.items()},
                        strict=False)
    hsd = {k: v.detach().numpy().copy() for k, v in hub.state_dict().items()}
    hsd = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in hsd.items()}
    hsd = {k: (v.astype(np.uint8) if v.dtype == np.bool_ else v) for k, v in hsd.items()}
    write_folder(out, "gpt2_hub", {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
                                   "vocab_size": 50, "n_positions": 32, "n_embd": 32,
                                   "n_layer": 2, "n_head": 4, "resid_pdrop": 0.0,
                                   "embd_pdrop": 0.0, "attn_pdrop": 0.0}, hsd)

    ccfg = dict(cfg, architectures=["GPT2ForSequenceClassification"], pad_token_id=0,
                id2label={"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"},
                label2id={"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2},
                scale_attn_by_inverse_layer_idx=True)
    torch.manual_seed(1)
    model = R.GPT2ForSequenceClassification(dict(ccfg, num_labels=3))
    randomise(model, g)
    write_folder(out, "gpt2_cls", ccfg, state(model))
    ids, mask = batch(50, 0, 1, g)
    y = torch.tensor([2, 0, 1, 2])
    save_ref(out, "gpt2_cls", references(model, ids, mask, y, False))


def llama(out):
    base = dict(vocab_size=60, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, hidden_act="silu",
                max_position_embeddings=64, initializer_range=0.02, rms_norm_eps=1e-6,
                use_cache=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                pretraining_tp=1, tie_word_embeddings=False, rope_theta=500000.0,
                rope_scaling={"factor": 2.0, "rope_type": "linear", "type": "linear"},
                attention_bias=False, attention_dropout=0.0, mlp_bias=False)
    g = torch.Generator().manual_seed(12)
    cfg = hf_config("LlamaForCausalLM", "llama", **base)
    torch.manual_seed(2)
    model = R.LlamaForCausalLM(cfg)
    randomise(model, g)
    sd = state(model)
    write_folder(out, "llama_lm", cfg, sd)
    ids, mask = batch(60, 0, 3, g)
    labels, y = lm_targets(ids, mask)
    ref = references(model, ids, mask, y, True, labels)
    # BF16 storage: the logits of the rounded weights
    write_folder(out, "llama_bf16", dict(cfg, torch_dtype="bfloat16"), sd, bf16=True)
    m2 = copy.deepcopy(model)
    m2.load_state_dict({k: torch.from_numpy(bf16_round(v)) for k, v in sd.items()}, strict=True)
    m2.double().eval()
    with torch.no_grad():
        ref["bf16.output"] = m2(ids, mask.double()).float().numpy()
    save_ref(out, "llama_lm", ref)
    write_folder(out, "llama_sharded", cfg, sd, shards=2)

    # Qwen2: q/k/v biases, tied embeddings, no sliding window in use
    qcfg = hf_config("Qwen2ForCausalLM", "qwen2", **dict(
        base, tie_word_embeddings=True, rope_scaling=None, rope_theta=1000000.0,
        use_sliding_window=False, sliding_window=4, max_window_layers=2))
    del qcfg["attention_bias"], qcfg["mlp_bias"], qcfg["pretraining_tp"]
    torch.manual_seed(3)
    model = R.LlamaForCausalLM(qcfg)
    randomise(model, g)
    write_folder(out, "qwen2_lm", qcfg, state(model, tied=("lm_head.weight",)))
    ids, mask = batch(60, 0, 3, g)
    labels, y = lm_targets(ids, mask)
    save_ref(out, "qwen2_lm", references(model, ids, mask, y, True, labels))

    # Mistral: Llama's layout under its own names, a sliding window longer than the sequences
    mcfg = hf_config("MistralForCausalLM", "mistral", **dict(base, rope_scaling=None,
                                                             sliding_window=64))
    del mcfg["attention_bias"], mcfg["mlp_bias"], mcfg["pretraining_tp"]
    torch.manual_seed(4)
    model = R.LlamaForCausalLM(mcfg)
    randomise(model, g)
    write_folder(out, "mistral_lm", mcfg, state(model))
    ids, mask = batch(60, 0, 3, g)
    labels, y = lm_targets(ids, mask)
    save_ref(out, "mistral_lm", references(model, ids, mask, y, True, labels))

    ccfg = hf_config("LlamaForSequenceClassification", "llama",
                     **dict(base, id2label={"0": "NEG", "1": "POS"}, label2id={"NEG": 0, "POS": 1}))
    torch.manual_seed(5)
    model = R.LlamaForSequenceClassification(dict(ccfg, num_labels=2))
    randomise(model, g)
    write_folder(out, "llama_cls", ccfg, state(model))
    ids, mask = batch(60, 0, 3, g)
    save_ref(out, "llama_cls", references(model, ids, mask, torch.tensor([1, 0, 0, 1]), False))


def bert(out):
    base = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=48, hidden_act="gelu", hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, max_position_embeddings=40,
                type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
                pad_token_id=0, position_embedding_type="absolute", use_cache=True,
                classifier_dropout=None)
    g = torch.Generator().manual_seed(13)
    cfg = hf_config("BertModel", "bert", **base)
    torch.manual_seed(6)
    model = R.BertModel(cfg)
    randomise(model, g)
    write_folder(out, "bert", cfg, state(model))
    ids, mask = batch(40, 0, 1, g)
    # a regression target for the pooled output: the loss is not used by the C test
    save_ref(out, "bert", references(model, ids, mask, torch.tensor([0, 1, 2, 3]), False))

    labels = {"id2label": {"0": "A", "1": "B", "2": "C"}, "label2id": {"A": 0, "B": 1, "C": 2}}
    cfg = hf_config("BertForSequenceClassification", "bert", **base, **labels)
    torch.manual_seed(7)
    model = R.BertForSequenceClassification(dict(cfg, num_labels=3))
    randomise(model, g)
    write_folder(out, "bert_cls", cfg, state(model))
    ids, mask = batch(40, 0, 1, g)
    save_ref(out, "bert_cls", references(model, ids, mask, torch.tensor([2, 1, 0, 1]), False))

    # sentence pairs: BertForSequenceClassification on [CLS] A [SEP] B [SEP], right-padded,
    # token_type_ids 0 for [CLS] A [SEP], 1 for B [SEP], 0 at padding (the tokenizer's pair
    # template, as BertTokenizer's create_token_type_ids_from_sequences gives them)
    torch.manual_seed(8)
    model = R.BertForSequenceClassification(dict(cfg, num_labels=3))
    randomise(model, g)
    write_folder(out, "bert_pair", cfg, state(model))
    ids, types = pairs(40, g)
    mask = (ids != 0).float()
    save_ref(out, "bert_pair", references(model, ids, mask, torch.tensor([1, 0, 2, 1]), False,
                                          types=types))

    rcfg = hf_config("RobertaForSequenceClassification", "roberta", **dict(
        base, pad_token_id=1, bos_token_id=0, eos_token_id=2, max_position_embeddings=42,
        type_vocab_size=1, layer_norm_eps=1e-5), **labels)
    torch.manual_seed(8)
    model = R.RobertaForSequenceClassification(dict(rcfg, num_labels=3))
    randomise(model, g)
    write_folder(out, "roberta_cls", rcfg, state(model))
    ids, mask = batch(40, 1, 3, g)
    save_ref(out, "roberta_cls", references(model, ids, mask, torch.tensor([0, 2, 1, 1]), False))

    dcfg = hf_config("DistilBertForSequenceClassification", "distilbert", vocab_size=40,
                     max_position_embeddings=40, sinusoidal_pos_embds=False, n_layers=2,
                     n_heads=4, dim=32, hidden_dim=48, dropout=0.0, attention_dropout=0.0,
                     activation="gelu", initializer_range=0.02, qa_dropout=0.1,
                     seq_classif_dropout=0.0, pad_token_id=0, tie_weights_=True, **labels)
    torch.manual_seed(9)
    model = R.DistilBertForSequenceClassification(dict(dcfg, num_labels=3))
    randomise(model, g)
    write_folder(out, "distilbert_cls", dcfg, state(model))
    ids, mask = batch(40, 0, 1, g)
    save_ref(out, "distilbert_cls", references(model, ids, mask, torch.tensor([1, 1, 0, 2]), False))


# ---- strop_model_add_classifier_head (model.head in a recipe) on a loaded trunk

def pooled(h, mask, how):
    """cls: the first token the mask keeps; last: the last it keeps (transformers >= 4.47's
    last non-padding token, which also holds for left padding); mean: the masked mean"""
    if how == "mean":
        m = mask.to(h.dtype)[..., None]
        return (h * m).sum(1) / m.sum(1)
    keep = mask > 0
    pos = torch.arange(mask.size(1))
    idx = (pos * keep).argmax(-1) if how == "last" else (keep.int().argmax(-1))
    return h[torch.arange(h.size(0)), idx]


class GPT2Head(nn.Module):
    """GPT2ForSequenceClassification's names (transformer, score) with the pooling asked for;
    positions counted over the mask, as generate() passes them for left padding"""

    def __init__(self, cfg, classes, how):
        super().__init__()
        self.how = how
        self.transformer = R.GPT2Model(cfg)
        self.transformer.positions_from_mask = True
        self.score = nn.Linear(cfg["n_embd"], classes, bias=False)

    def forward(self, ids, mask):
        return self.score(pooled(self.transformer(ids, mask), mask, self.how))


class LlamaHead(nn.Module):
    def __init__(self, cfg, classes, how):
        super().__init__()
        self.how = how
        self.model = R.LlamaModel(cfg)
        self.score = nn.Linear(cfg["hidden_size"], classes, bias=False)

    def forward(self, ids, mask):
        return self.score(pooled(self.model(ids, mask), mask, self.how))


class BertHead(nn.Module):
    """BertModel's names (no pooler: the head pools the last hidden state) and a classifier"""

    def __init__(self, cfg, classes, how):
        super().__init__()
        self.how = how
        body = R.BertModel(cfg, pooler=False)
        self.embeddings, self.encoder = body.embeddings, body.encoder
        self.classifier = nn.Linear(cfg["hidden_size"], classes)

    def forward(self, ids, mask):
        return self.classifier(pooled(self.encoder(self.embeddings(ids), mask), mask, self.how))


def left_padded(ids, mask):
    """the same samples with their padding moved to the left"""
    ids2, mask2 = ids.clone(), mask.clone()
    for i, n in enumerate(LENGTHS):
        ids2[i] = torch.roll(ids[i], T - n)
        mask2[i] = torch.roll(mask[i], T - n)
    return ids2, mask2


def heads(out):
    """trunks of the LM / base folders above with a head; <case>.weights.safetensors holds the
    whole classifier (trunk and head, the names strop gives it), <case>.ref its answers"""
    cases = [("head_gpt2_last_left", "gpt2_lm", GPT2Head, "last", True, 50),
             ("head_gpt2_last_right", "gpt2_lm", GPT2Head, "last", False, 50),
             ("head_llama_last_left", "llama_lm", LlamaHead, "last", True, 60),
             ("head_bert_mean", "bert", BertHead, "mean", False, 40),
             ("head_gpt2_mean_left", "gpt2_lm", GPT2Head, "mean", True, 50)]
    g = torch.Generator().manual_seed(21)
    for case, folder, cls, how, left, vocab in cases:
        with open(os.path.join(out, folder, "config.json")) as f:
            cfg = json.load(f)
        trunk = safetensors_np.load(os.path.join(out, folder, "model.safetensors"))[0]
        model = cls(cfg, 3, how)
        sd = model.state_dict()
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in trunk.items() if k in sd}, strict=False)
        assert set(missing) <= {"score.weight", "classifier.weight", "classifier.bias"}, missing
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k.startswith(("score", "classifier")):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        safetensors_np.save(os.path.join(out, case + ".weights.safetensors"), state(model))
        ids, mask = batch(vocab, 0, 3, g)
        if left:
            ids, mask = left_padded(ids, mask)
        y = torch.tensor([1, 0, 2, 1])
        save_ref(out, case, references(model, ids, mask, y, False))


class TorchEncoderClassifier(nn.Module):
    """emb -> nn.TransformerEncoder (final norm) -> masked mean -> head"""

    def __init__(self, norm_first, activation):
        super().__init__()
        self.emb = nn.Embedding(30, 32)
        layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=48, dropout=0.0,
                                           activation=activation, batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(32),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(32, 3)

    def forward(self, ids, mask):
        h = self.encoder(self.emb(ids), src_key_padding_mask=mask == 0)
        m = mask[..., None].to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1))


def torchnn(out):
    g = torch.Generator().manual_seed(14)
    for name, nf, act in (("torchnn_post", False, "relu"), ("torchnn_pre", True, "gelu")):
        torch.manual_seed(10)
        model = TorchEncoderClassifier(nf, act)
        randomise(model, g)
        safetensors_np.save(os.path.join(out, name + ".safetensors"), state(model))
        ids, mask = batch(30, 0, 1, g)
        save_ref(out, name, references(model, ids, mask, torch.tensor([0, 2, 1, 0]), False))


def vit(out):
    """torchvision 0.14's VisionTransformer at a small size; the same checkpoint at 48 x 48
    through torchvision's interpolate_embeddings"""
    from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings
    g = torch.Generator().manual_seed(15)
    torch.manual_seed(12)
    kw = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=128, mlp_dim=256, num_classes=5)
    model = VisionTransformer(image_size=32, **kw)
    randomise(model, g)
    sd = state(model)
    safetensors_np.save(os.path.join(out, "vit.safetensors"), sd)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    ref = references(model, x, None, torch.tensor([4, 0, 2, 1]), False)
    big = VisionTransformer(image_size=48, **kw)
    big.load_state_dict(interpolate_embeddings(48, 8, {k: torch.from_numpy(v) for k, v in sd.items()}),
                        strict=True)
    big.double().eval()
    x48 = torch.rand(2, 3, 48, 48, generator=g) * 2 - 1
    with torch.no_grad():
        ref["eval48.output"] = big(x48.double()).float().numpy()
    ref["x48"] = x48.numpy()
    save_ref(out, "vit", ref)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    gpt2(out)
    llama(out)
    bert(out)
    heads(out)
    torchnn(out)
    vit(out)


if __name__ == "__main__":
    main()
