/* SPDX-License-Identifier: MIT */
/* strop — GPT-2 as Hugging Face transformers has it (modeling_gpt2, 4.x): GPT2LMHeadModel and
 * GPT2ForSequenceClassification with their own tensor names and layouts, so a folder
 * (config.json + model.safetensors) loads strictly and a fine-tuned model saves back into one.
 *
 *   transformer.wte, transformer.wpe, transformer.h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2,
 *   mlp.c_fc, mlp.c_proj}, transformer.ln_f; lm_head (tied to wte) or score.
 * Conv1D weights are [in, out] (linear weight_layout=in_out); c_attn packs q|k|v and feeds the
 * attention core directly. The attn.bias / attn.masked_bias buffers of older files are masks,
 * not parameters (ignored); files without the "transformer." prefix (GPT2Model's) load too. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pretrained/pretrained.h"

typedef struct gpt2_cfg {
  int64_t vocab, positions, d, layers, heads, inner;
  double eps, resid_p, embd_p, attn_p;
  int scale_weights, scale_by_layer, tie;
  strop__hf_activation act;
} gpt2_cfg;

/* GPT2Config's defaults stand for keys a diff-written config.json leaves out */
static strop_status read_cfg(const strop__pt_ctx *c, const strop__arch *a, gpt2_cfg *g) {
  static const int64_t V = 50257, P = 1024, D = 768, L = 12, H = 12;
  static const double EPS = 1e-5, DROP = 0.1;
  strop_status st;
  int cross = 0;
  if ((st = strop__pt_int(c, "vocab_size", &V, 1, INT32_MAX, &g->vocab)) ||
      (st = strop__pt_int(c, "n_positions", &P, 1, INT32_MAX, &g->positions)) ||
      (st = strop__pt_int(c, "n_embd", &D, 1, INT32_MAX, &g->d)) ||
      (st = strop__pt_int(c, "n_layer", &L, 0, 100000, &g->layers)) ||
      (st = strop__pt_int(c, "n_head", &H, 1, INT32_MAX, &g->heads)) ||
      (st = strop__pt_float(c, "layer_norm_epsilon", &EPS, 0, 1, &g->eps)) ||
      (st = strop__pt_float(c, "resid_pdrop", &DROP, 0, 0.999, &g->resid_p)) ||
      (st = strop__pt_float(c, "embd_pdrop", &DROP, 0, 0.999, &g->embd_p)) ||
      (st = strop__pt_float(c, "attn_pdrop", &DROP, 0, 0.999, &g->attn_p)) ||
      (st = strop__pt_bool(c, "scale_attn_weights", 1, &g->scale_weights)) ||
      (st = strop__pt_bool(c, "scale_attn_by_inverse_layer_idx", 0, &g->scale_by_layer)) ||
      (st = strop__pt_bool(c, "tie_word_embeddings", 1, &g->tie)) ||
      (st = strop__pt_bool(c, "add_cross_attention", 0, &cross)) ||
      (st = strop__hf_act(c, "activation_function", "gelu_new", &g->act)))
    return st;
  const int64_t inner_default = 4 * g->d;
  if ((st = strop__pt_int(c, "n_inner", &inner_default, 1, INT32_MAX, &g->inner))) return st;
  if (cross)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: %s: 'add_cross_attention' is true: strop's "
                      "GPT-2 has no cross-attention (an encoder-decoder's decoder)",
                      c->fn, c->config_path);
  if ((st = strop__hf_divides(c, "n_embd", g->d, "n_head", g->heads))) return st;
  /* the config's sizes against the checkpoint's */
  if ((st = strop__hf_check_dims(c, a, "transformer.wte.weight", 0, g->vocab, "vocab_size")) ||
      (st = strop__hf_check_dims(c, a, "transformer.wte.weight", 1, g->d, "n_embd")) ||
      (st = strop__hf_check_dims(c, a, "transformer.wpe.weight", 0, g->positions,
                                 "n_positions")) ||
      (st = strop__hf_check_dims(c, a, "transformer.h.0.mlp.c_fc.weight", 1, g->inner,
                                 "n_inner")))
    return st;
  return STROP_OK;
}

/* "p=0.1" nodes only where the config drops something */
static strop_status dropout(strop_model *m, const char *name, double p) {
  return p > 0 ? strop__pt_add(m, name, "dropout", NULL, "p=%.9g", p) : STROP_OK;
}

/* The transformer stack; *last gets the name of its output node (transformer.ln_f). */
static strop_status trunk(const strop__pt_ctx *c, const gpt2_cfg *g, strop_model *m) {
  strop_status st;
  char x[160], n[12][160];
  if ((st = strop__pt_add(m, "transformer.wte", "embedding", "input",
                          "num_embeddings=%lld embedding_dim=%lld", (long long)g->vocab,
                          (long long)g->d)) ||
      (st = strop__pt_add(m, "transformer.wpe", "positional_embedding", NULL,
                          "num_embeddings=%lld positions=mask", (long long)g->positions)) ||
      (st = dropout(m, "transformer.drop", g->embd_p)))
    return st;
  snprintf(x, sizeof x, "%s", g->embd_p > 0 ? "transformer.drop" : "transformer.wpe");
  const double hd = (double)(g->d / g->heads);
  for (int64_t i = 0; i < g->layers; i++) {
    static const char *const parts[] = {
        "ln_1", "attn.c_attn", "attn.attention", "attn.c_proj", "attn.resid_dropout", "add_1",
        "ln_2", "mlp.c_fc",    "mlp.act",        "mlp.c_proj",  "mlp.dropout",        "add_2"};
    for (int k = 0; k < 12; k++)
      snprintf(n[k], sizeof n[k], "transformer.h.%lld.%s", (long long)i, parts[k]);
    /* 1 / sqrt(head_dim), further divided by the layer's number when the config says so */
    double scale = g->scale_weights ? 1.0 / sqrt(hd) : 1.0;
    if (g->scale_by_layer) scale /= (double)(i + 1);
    char sum1[330], sum2[330];
    snprintf(sum1, sizeof sum1, "%s,%s", x, g->resid_p > 0 ? n[4] : n[3]);
    snprintf(sum2, sizeof sum2, "%s,%s", n[5], g->resid_p > 0 ? n[10] : n[9]);
    if ((st = strop__pt_add(m, n[0], "layernorm", x, "normalized_shape=%lld eps=%.9g",
                            (long long)g->d, g->eps)) ||
        (st = strop__pt_add(m, n[1], "linear", NULL, "out_features=%lld weight_layout=in_out",
                            (long long)(3 * g->d))) ||
        (st = strop__pt_add(m, n[2], "attention", NULL,
                            "num_heads=%lld causal=true dropout=%.9g scale=%.9g",
                            (long long)g->heads, g->attn_p, scale)) ||
        (st = strop__pt_add(m, n[3], "linear", NULL, "out_features=%lld weight_layout=in_out",
                            (long long)g->d)) ||
        (st = dropout(m, n[4], g->resid_p)) || (st = strop__pt_add(m, n[5], "add", sum1, NULL)) ||
        (st = strop__pt_add(m, n[6], "layernorm", NULL, "normalized_shape=%lld eps=%.9g",
                            (long long)g->d, g->eps)) ||
        (st = strop__pt_add(m, n[7], "linear", NULL, "out_features=%lld weight_layout=in_out",
                            (long long)g->inner)) ||
        (st = strop__pt_add(m, n[8], g->act.type, NULL, "%s", g->act.opts)) ||
        (st = strop__pt_add(m, n[9], "linear", NULL, "out_features=%lld weight_layout=in_out",
                            (long long)g->d)) ||
        (st = dropout(m, n[10], g->resid_p)) || (st = strop__pt_add(m, n[11], "add", sum2, NULL)))
      return st;
    snprintf(x, sizeof x, "%s", n[11]);
  }
  if ((st = strop__pt_mark_hidden(c, m, "transformer.ln_f", NULL))) return st;
  return strop__pt_add(m, "transformer.ln_f", "layernorm", x, "normalized_shape=%lld eps=%.9g",
                       (long long)g->d, g->eps);
}

static strop_status build_lm(const strop__pt_ctx *c, strop_model **out) {
  gpt2_cfg g;
  strop_status st = read_cfg(c, &strop__arch_gpt2_lm, &g);
  strop_model *m = NULL;
  if (st || (st = strop__hf_text_model(c, g.positions, &m))) return st;
  if ((st = trunk(c, &g, m)) ||
      (st = strop__pt_add(m, "lm_head", "linear", NULL, "out_features=%lld bias=false",
                          (long long)g.vocab)) ||
      (g.tie && (st = strop_model_tie(m, "lm_head.weight", "transformer.wte.weight")))) {
    strop_model_free(m);
    return st;
  }
  *out = m;
  return STROP_OK;
}

/* GPT2ForSequenceClassification: the score of the last token (the last the padding mask
 * keeps; Hugging Face finds it from pad_token_id in the ids, which is the same token for
 * right-padded batches) */
static strop_status build_cls(const strop__pt_ctx *c, strop_model **out) {
  gpt2_cfg g;
  strop_status st = read_cfg(c, &strop__arch_gpt2_cls, &g);
  strop_model *m = NULL;
  if (st || (st = strop__hf_text_model(c, g.positions, &m))) return st;
  const int64_t classes = strop__hf_classes(c, &strop__arch_gpt2_cls, "score", 2);
  if ((st = trunk(c, &g, m)) ||
      (st = strop__pt_add(m, "pool", "token_pool", NULL, "which=last")) ||
      (st = strop__pt_add(m, "score", "linear", NULL, "out_features=%lld bias=false",
                          (long long)classes))) {
    strop_model_free(m);
    return st;
  }
  *out = m;
  return STROP_OK;
}

static const char *const IGNORE[] = {"*.attn.bias", "*.attn.masked_bias", "lm_head.weight", NULL};
static const char *const PREFIXES[] = {"transformer.", NULL};
static const char *const LM_NAMES[] = {"GPT2LMHeadModel", "GPT2Model", "gpt2", NULL};
static const char *const CLS_NAMES[] = {"GPT2ForSequenceClassification", NULL};
/* GPT2PreTrainedModel._init_weights: the residual projections (attn.c_proj, mlp.c_proj) drawn
 * with initializer_range / sqrt(2 n_layer); wte has no padding_idx */
static const strop__hf_init INIT = {.scaled = "*.c_proj.weight",
                                    .layers_key = "n_layer",
                                    .layers_default = 12,
                                    .pad_default = -1};

const strop__arch strop__arch_gpt2_lm = {
    .name = "gpt2",
    .family = "transformers",
    .doc = "Hugging Face GPT2LMHeadModel: causal LM, Conv1D [in, out] weights, packed c_attn, "
           "lm_head tied to transformer.wte; sizes from config.json",
    .hf_names = LM_NAMES,
    .build = build_lm,
    .ignore = IGNORE,
    .prefixes = PREFIXES,
    .head_name = "score",
    .head_pool = "last",
    .cls_arch = "gpt2_cls",
    .init = &INIT,
};

const strop__arch strop__arch_gpt2_cls = {
    .name = "gpt2_cls",
    .family = "transformers",
    .doc = "Hugging Face GPT2ForSequenceClassification: GPT-2 with a bias-free score head on "
           "the last token; classes from score.weight",
    .hf_names = CLS_NAMES,
    .build = build_cls,
    .ignore = IGNORE,
    .prefixes = PREFIXES,
    .head_name = "score",
    .head_pool = "last",
    .cls_arch = "gpt2_cls",
    .init = &INIT,
};
