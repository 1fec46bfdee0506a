# SPDX-License-Identifier: MIT
"""Reference PyTorch modules for the Hugging Face families strop loads (the `transformers`
package cannot be installed here). Each follows the published modeling code of transformers
4.44 (modeling_gpt2.py, modeling_llama.py with modeling_mistral.py / modeling_qwen2.py,
modeling_bert.py, modeling_roberta.py, modeling_distilbert.py: the eager attention paths) and
has exactly the sub-module names, parameter shapes and buffers those classes have, so its
state_dict is what `save_pretrained` writes and the config dicts below are what their
config.json files hold. Dropout is honoured in train mode as there; the tests use 0.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def additive_mask(mask, dtype):
    """[N, T] of 1/0 -> [N, 1, 1, T] added to the scores (transformers'
    _prepare_4d_attention_mask: (1 - mask) * finfo.min)"""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3.0))))


# ---------------------------------------------------------------- GPT-2 (modeling_gpt2.py)

class Conv1D(nn.Module):
    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(
            x.size()[:-1] + (self.nf,))


class GPT2Attention(nn.Module):
    def __init__(self, cfg, layer_idx, old_buffers):
        super().__init__()
        p = cfg["n_positions"]
        # older checkpoints (the hub's gpt2) hold these masks; save_pretrained of 4.44 does not
        self.register_buffer("bias", torch.tril(torch.ones((p, p), dtype=torch.bool)).view(1, 1, p, p),
                             persistent=old_buffers)
        self.register_buffer("masked_bias", torch.tensor(-1e4), persistent=old_buffers)
        self.embed_dim = cfg["n_embd"]
        self.num_heads = cfg["n_head"]
        self.head_dim = self.embed_dim // self.num_heads
        self.scale_attn_weights = cfg.get("scale_attn_weights", True)
        self.scale_by_layer = cfg.get("scale_attn_by_inverse_layer_idx", False)
        self.layer_idx = layer_idx
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(cfg["attn_pdrop"])
        self.resid_dropout = nn.Dropout(cfg["resid_pdrop"])

    def split(self, t):
        n, s, _ = t.shape
        return t.view(n, s, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, mask):
        q, k, v = self.c_attn(x).split(self.embed_dim, dim=2)
        q, k, v = self.split(q), self.split(k), self.split(v)
        w = torch.matmul(q, k.transpose(-1, -2))
        if self.scale_attn_weights:
            w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        if self.scale_by_layer:
            w = w / float(self.layer_idx + 1)
        t = q.size(-2)
        causal = self.bias[:, :, :t, :t]
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
        if mask is not None:
            w = w + additive_mask(mask, w.dtype)
        w = self.attn_dropout(F.softmax(w, dim=-1))
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        a = a.view(a.size(0), a.size(1), self.embed_dim)
        return self.resid_dropout(self.c_proj(a))


class GPT2MLP(nn.Module):
    def __init__(self, inner, cfg):
        super().__init__()
        self.c_fc = Conv1D(inner, cfg["n_embd"])
        self.c_proj = Conv1D(cfg["n_embd"], inner)
        self.dropout = nn.Dropout(cfg["resid_pdrop"])

    def forward(self, x):
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, cfg, i, old_buffers):
        super().__init__()
        d = cfg["n_embd"]
        inner = cfg.get("n_inner") or 4 * d
        self.ln_1 = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])
        self.attn = GPT2Attention(cfg, i, old_buffers)
        self.ln_2 = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])
        self.mlp = GPT2MLP(inner, cfg)

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, cfg, old_buffers=False):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        self.drop = nn.Dropout(cfg["embd_pdrop"])
        self.h = nn.ModuleList([GPT2Block(cfg, i, old_buffers) for i in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg["layer_norm_epsilon"])

    def forward(self, ids, mask):
        pos = torch.arange(ids.size(1))[None, :]
        if getattr(self, "positions_from_mask", False):
            # the position_ids generate() derives from a (left-padded) attention mask
            pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        x = self.drop(self.wte(ids) + self.wpe(pos))
        for blk in self.h:
            x = blk(x, mask)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, ids, mask):
        return self.lm_head(self.transformer(ids, mask))


def last_token(ids, pad_token_id):
    """modeling_gpt2 / modeling_llama sequence classification: the token before the first pad"""
    return (torch.eq(ids, pad_token_id).int().argmax(-1) - 1) % ids.shape[-1]


class GPT2ForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pad = cfg["pad_token_id"]
        self.transformer = GPT2Model(cfg)
        self.score = nn.Linear(cfg["n_embd"], cfg["num_labels"], bias=False)

    def forward(self, ids, mask):
        logits = self.score(self.transformer(ids, mask))
        return logits[torch.arange(ids.size(0)), last_token(ids, self.pad)]


# ---------------------------------------------------------------- Llama (modeling_llama.py)

class LlamaRMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.d = cfg["hidden_size"]
        self.h = cfg["num_attention_heads"]
        self.kv = cfg.get("num_key_value_heads") or self.h
        self.hd = cfg.get("head_dim") or self.d // self.h
        qkv_bias = cfg.get("attention_bias", False) or cfg["model_type"] == "qwen2"
        o_bias = cfg.get("attention_bias", False) and cfg["model_type"] != "qwen2"
        self.q_proj = nn.Linear(self.d, self.h * self.hd, bias=qkv_bias)
        self.k_proj = nn.Linear(self.d, self.kv * self.hd, bias=qkv_bias)
        self.v_proj = nn.Linear(self.d, self.kv * self.hd, bias=qkv_bias)
        self.o_proj = nn.Linear(self.h * self.hd, self.d, bias=o_bias)
        self.dropout = cfg.get("attention_dropout", 0.0)
        theta = cfg.get("rope_theta", 10000.0)
        self.factor = 1.0
        rs = cfg.get("rope_scaling")
        if rs:
            assert rs.get("rope_type", rs.get("type")) == "linear"
            self.factor = rs["factor"]
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd))

    def rope(self, t, dtype):
        pos = torch.arange(t, dtype=torch.float64) / self.factor  # linear scaling
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]

    def forward(self, x, mask, causal=True):
        n, t, _ = x.shape
        q = self.q_proj(x).view(n, t, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(n, t, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(n, t, self.kv, self.hd).transpose(1, 2)
        cos, sin = self.rope(t, x.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv  # repeat_kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd)
        big = torch.finfo(w.dtype).min
        cm = torch.triu(torch.full((t, t), big, dtype=w.dtype), diagonal=1)[None, None]
        w = w + cm
        if mask is not None:
            w = w + additive_mask(mask, w.dtype)
        w = F.dropout(F.softmax(w, dim=-1), p=self.dropout, training=self.training)
        a = torch.matmul(w, v).transpose(1, 2).reshape(n, t, self.h * self.hd)
        return self.o_proj(a)


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, i, b = cfg["hidden_size"], cfg["intermediate_size"], cfg.get("mlp_bias", False)
        self.gate_proj = nn.Linear(d, i, bias=b)
        self.up_proj = nn.Linear(d, i, bias=b)
        self.down_proj = nn.Linear(i, d, bias=b)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        self.self_attn = LlamaAttention(cfg)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(d, eps)
        self.post_attention_layernorm = LlamaRMSNorm(d, eps)

    def forward(self, x, mask):
        x = x + self.self_attn(self.input_layernorm(x), mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, ids, mask):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        if cfg.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids, mask):
        return self.lm_head(self.model(ids, mask))


class LlamaForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pad = cfg["pad_token_id"]
        self.model = LlamaModel(cfg)
        self.score = nn.Linear(cfg["hidden_size"], cfg["num_labels"], bias=False)

    def forward(self, ids, mask):
        logits = self.score(self.model(ids, mask))
        return logits[torch.arange(ids.size(0)), last_token(ids, self.pad)]


# ---------------------------------------------------------------- BERT family

class BertSelfAttention(nn.Module):
    def __init__(self, d, h, p):
        super().__init__()
        self.h, self.hd = h, d // h
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.dropout = nn.Dropout(p)

    def forward(self, x, mask):
        n, t, d = x.shape

        def heads(y):
            return y.view(n, t, self.h, self.hd).permute(0, 2, 1, 3)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd)
        if mask is not None:
            w = w + additive_mask(mask, w.dtype)
        w = self.dropout(F.softmax(w, dim=-1))
        return torch.matmul(w, v).permute(0, 2, 1, 3).reshape(n, t, d)


class BertSelfOutput(nn.Module):
    def __init__(self, d, eps, p):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(p)

    def forward(self, h, x):
        return self.LayerNorm(self.dropout(self.dense(h)) + x)


class BertAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.self = BertSelfAttention(d, cfg["num_attention_heads"],
                                      cfg["attention_probs_dropout_prob"])
        self.output = BertSelfOutput(d, cfg["layer_norm_eps"], cfg["hidden_dropout_prob"])

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x):
        return F.gelu(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg["intermediate_size"], cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, h, x):
        return self.LayerNorm(self.dropout(self.dense(h)) + x)


class BertLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x, mask):
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x, mask):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertEmbeddings(nn.Module):
    def __init__(self, cfg, roberta=False):
        super().__init__()
        d = cfg["hidden_size"]
        self.roberta = roberta
        self.pad = cfg["pad_token_id"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], d)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], d)
        self.LayerNorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"])

    def forward(self, ids, types=None):
        if self.roberta:  # create_position_ids_from_input_ids
            m = ids.ne(self.pad).int()
            pos = (torch.cumsum(m, dim=1).type_as(m) * m).long() + self.pad
        else:
            pos = torch.arange(ids.size(1))[None, :].expand_as(ids)
        if types is None:  # the token_type_ids buffer of zeros
            types = torch.zeros_like(ids)
        x = self.word_embeddings(ids) + self.token_type_embeddings(types) + \
            self.position_embeddings(pos)
        return self.dropout(self.LayerNorm(x))


class BertPooler(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self, cfg, roberta=False, pooler=True):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg, roberta)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg["hidden_size"]) if pooler else None

    def hidden(self, ids, mask, types=None):
        return self.encoder(self.embeddings(ids, types), mask)

    def forward(self, ids, mask, types=None):
        return self.pooler(self.hidden(ids, mask, types))


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.bert = BertModel(cfg)
        p = cfg.get("classifier_dropout")
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"] if p is None else p)
        self.classifier = nn.Linear(cfg["hidden_size"], cfg["num_labels"])

    def forward(self, ids, mask, types=None):
        return self.classifier(self.dropout(self.bert(ids, mask, types)))


class RobertaClassificationHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        p = cfg.get("classifier_dropout")
        self.dense = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg["hidden_dropout_prob"] if p is None else p)
        self.out_proj = nn.Linear(d, cfg["num_labels"])

    def forward(self, h):
        x = self.dropout(h[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


class RobertaForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.roberta = BertModel(cfg, roberta=True, pooler=False)
        self.classifier = RobertaClassificationHead(cfg)

    def forward(self, ids, mask):
        return self.classifier(self.roberta.hidden(ids, mask))


class DistilMHSA(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["dim"]
        self.h, self.hd = cfg["n_heads"], d // cfg["n_heads"]
        self.q_lin = nn.Linear(d, d)
        self.k_lin = nn.Linear(d, d)
        self.v_lin = nn.Linear(d, d)
        self.out_lin = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg["attention_dropout"])

    def forward(self, x, mask):
        n, t, d = x.shape

        def heads(y):
            return y.view(n, t, self.h, self.hd).transpose(1, 2)

        q = heads(self.q_lin(x)) / math.sqrt(self.hd)
        k, v = heads(self.k_lin(x)), heads(self.v_lin(x))
        w = torch.matmul(q, k.transpose(2, 3))
        if mask is not None:
            w = w.masked_fill((mask == 0).view(n, 1, 1, t), torch.finfo(w.dtype).min)
        w = self.dropout(F.softmax(w, dim=-1))
        return self.out_lin(torch.matmul(w, v).transpose(1, 2).reshape(n, t, d))


class DistilFFN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.lin1 = nn.Linear(cfg["dim"], cfg["hidden_dim"])
        self.lin2 = nn.Linear(cfg["hidden_dim"], cfg["dim"])
        self.dropout = nn.Dropout(cfg["dropout"])

    def forward(self, x):
        return self.dropout(self.lin2(F.gelu(self.lin1(x))))


class DistilTransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attention = DistilMHSA(cfg)
        self.sa_layer_norm = nn.LayerNorm(cfg["dim"], eps=1e-12)
        self.ffn = DistilFFN(cfg)
        self.output_layer_norm = nn.LayerNorm(cfg["dim"], eps=1e-12)

    def forward(self, x, mask):
        s = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.ffn(s) + s)


class DistilTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([DistilTransformerBlock(cfg) for _ in range(cfg["n_layers"])])

    def forward(self, x, mask):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class DistilEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], cfg["dim"])
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], cfg["dim"])
        self.LayerNorm = nn.LayerNorm(cfg["dim"], eps=1e-12)
        self.dropout = nn.Dropout(cfg["dropout"])

    def forward(self, ids):
        pos = torch.arange(ids.size(1))[None, :]
        return self.dropout(self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(pos)))


class DistilBertModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = DistilEmbeddings(cfg)
        self.transformer = DistilTransformer(cfg)

    def forward(self, ids, mask):
        return self.transformer(self.embeddings(ids), mask)


class DistilBertForSequenceClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.distilbert = DistilBertModel(cfg)
        self.pre_classifier = nn.Linear(cfg["dim"], cfg["dim"])
        self.classifier = nn.Linear(cfg["dim"], cfg["num_labels"])
        self.dropout = nn.Dropout(cfg["seq_classif_dropout"])

    def forward(self, ids, mask):
        h = self.distilbert(ids, mask)[:, 0]
        return self.classifier(self.dropout(F.relu(self.pre_classifier(h))))
