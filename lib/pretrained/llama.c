/* SPDX-License-Identifier: MIT */
/* strop — Llama-family decoders as Hugging Face transformers has them (modeling_llama,
 * modeling_mistral, modeling_qwen2 of 4.x): LlamaForCausalLM and the same layout under
 * Mistral's and Qwen2's names (SmolLM and TinyLlama are Llama), and their
 * *ForSequenceClassification.
 *
 *   model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
 *   post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm; lm_head (tied to
 *   embed_tokens when tie_word_embeddings) or score.
 * RMSNorm, rotary embeddings (rope_theta, linear rope_scaling), grouped-query attention
 * (num_key_value_heads), the gated SiLU MLP as one gated_mlp node, attention_bias (Qwen2's q, k,
 * v biases). Rope scalings other than linear and sliding windows shorter than the sequence are
 * refused naming the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pretrained/pretrained.h"

typedef struct llama_cfg {
  const char *type; /* model_type: llama, mistral, qwen2 */
  int64_t vocab, d, inter, layers, heads, kv, positions, head_dim;
  double eps, theta, factor, attn_p;
  int tie, qkv_bias, o_bias, mlp_bias;
  strop__hf_activation act;
} llama_cfg;

/* Each model type's config defaults (LlamaConfig, MistralConfig, Qwen2Config) */
typedef struct defaults {
  const char *type;
  int64_t vocab, d, inter, layers, heads, kv, positions;
  double eps, theta;
  int qkv_bias, o_bias; /* attention biases when the config does not say attention_bias */
} defaults;

static const defaults DEFAULTS[] = {
    {"llama", 32000, 4096, 11008, 32, 32, 0, 2048, 1e-6, 10000.0, 0, 0},
    {"mistral", 32000, 4096, 14336, 32, 32, 8, 4096 * 32, 1e-6, 10000.0, 0, 0},
    {"qwen2", 151936, 4096, 22016, 32, 32, 32, 32768, 1e-6, 10000.0, 1, 0},
};

/* rope_scaling: null, or {"type" (or "rope_type"): "linear", "factor": f} */
static strop_status read_rope_scaling(const strop__pt_ctx *c, double *factor) {
  *factor = 1.0;
  const strop__jnode *r = c->json ? strop__json_get(c->json, c->cfg, "rope_scaling") : NULL;
  if (!r || r->type == STROP__J_NULL) return STROP_OK;
  if (r->type != STROP__J_OBJ)
    return strop__err(STROP_E_FORMAT, "%s: %s: 'rope_scaling' must be null or an object", c->fn,
                      c->config_path);
  const char *key = "rope_type";
  const strop__jnode *t = strop__json_get(c->json, r, key);
  if (!t) t = strop__json_get(c->json, r, key = "type");
  if (!t || t->type != STROP__J_STR)
    return strop__err(STROP_E_FORMAT, "%s: %s: 'rope_scaling' has no 'type' (or 'rope_type')",
                      c->fn, c->config_path);
  if (!strcmp(t->str, "default")) return STROP_OK;
  if (strcmp(t->str, "linear"))
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: %s: 'rope_scaling.%s' is \"%s\": strop supports "
                      "linear rope scaling only",
                      c->fn, c->config_path, key, t->str);
  const strop__jnode *f = strop__json_get(c->json, r, "factor");
  if (!f || f->type != STROP__J_NUM)
    return strop__err(STROP_E_FORMAT, "%s: %s: 'rope_scaling.factor' is missing or not a number",
                      c->fn, c->config_path);
  *factor = f->is_int ? (double)f->ival : strtod(f->str, NULL);
  if (!(*factor >= 1.0 && *factor <= 1e6))
    return strop__err(STROP_E_FORMAT, "%s: %s: 'rope_scaling.factor' must be in [1, 1e6], got %s",
                      c->fn, c->config_path, f->str);
  return STROP_OK;
}

static strop_status read_cfg(const strop__pt_ctx *c, const strop__arch *a, llama_cfg *g) {
  strop_status st;
  if ((st = strop__pt_str(c, "model_type", "llama", &g->type))) return st;
  const defaults *df = &DEFAULTS[0];
  for (size_t i = 0; i < sizeof DEFAULTS / sizeof DEFAULTS[0]; i++)
    if (!strcmp(DEFAULTS[i].type, g->type)) df = &DEFAULTS[i];
  const double zero = 0.0;
  if ((st = strop__pt_int(c, "vocab_size", &df->vocab, 1, INT32_MAX, &g->vocab)) ||
      (st = strop__pt_int(c, "hidden_size", &df->d, 1, INT32_MAX, &g->d)) ||
      (st = strop__pt_int(c, "intermediate_size", &df->inter, 1, INT32_MAX, &g->inter)) ||
      (st = strop__pt_int(c, "num_hidden_layers", &df->layers, 0, 100000, &g->layers)) ||
      (st = strop__pt_int(c, "num_attention_heads", &df->heads, 1, INT32_MAX, &g->heads)) ||
      (st = strop__pt_int(c, "max_position_embeddings", &df->positions, 1, INT32_MAX,
                          &g->positions)) ||
      (st = strop__pt_float(c, "rms_norm_eps", &df->eps, 0, 1, &g->eps)) ||
      (st = strop__pt_float(c, "rope_theta", &df->theta, 1, 1e12, &g->theta)) ||
      (st = strop__pt_float(c, "attention_dropout", &zero, 0, 0.999, &g->attn_p)) ||
      (st = strop__pt_bool(c, "tie_word_embeddings", 0, &g->tie)) ||
      (st = strop__pt_bool(c, "mlp_bias", 0, &g->mlp_bias)) ||
      (st = strop__hf_act(c, "hidden_act", "silu", &g->act)) ||
      (st = read_rope_scaling(c, &g->factor)))
    return st;
  const int64_t kv_default = df->kv ? df->kv : g->heads;
  if ((st = strop__pt_int(c, "num_key_value_heads", &kv_default, 1, INT32_MAX, &g->kv)))
    return st;
  if ((st = strop__hf_divides(c, "hidden_size", g->d, "num_attention_heads", g->heads)))
    return st;
  const int64_t hd_default = g->d / g->heads;
  if ((st = strop__pt_int(c, "head_dim", &hd_default, 1, INT32_MAX, &g->head_dim)) ||
      (st = strop__hf_divides(c, "num_attention_heads", g->heads, "num_key_value_heads", g->kv)))
    return st;
  if (g->head_dim % 2)
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: the head width %lld (hidden_size / "
                      "num_attention_heads, or head_dim) must be even for rotary embeddings",
                      c->fn, c->config_path, (long long)g->head_dim);
  /* Llama and Mistral: attention_bias on all four projections; Qwen2: q, k, v always */
  int ab = df->qkv_bias;
  if ((st = strop__pt_bool(c, "attention_bias", df->qkv_bias, &ab))) return st;
  g->qkv_bias = strcmp(g->type, "qwen2") ? ab : 1;
  g->o_bias = strcmp(g->type, "qwen2") ? ab : 0;
  if (strcmp(g->act.type, "silu") && strcmp(g->act.type, "gelu"))
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: %s: 'hidden_act' is \"%s\": the gated MLP "
                      "takes silu or gelu",
                      c->fn, c->config_path, g->act.hf_name);
  /* a sliding window only matters for sequences longer than it */
  const int64_t t = c->opt->max_length > 0 ? c->opt->max_length : g->positions;
  int use_sw = 1;
  int64_t sw = 0;
  const int64_t none = 0;
  if ((st = strop__pt_bool(c, "use_sliding_window", strcmp(g->type, "qwen2") != 0, &use_sw)) ||
      (st = strop__pt_int(c, "sliding_window", &none, 0, INT64_MAX, &sw)))
    return st;
  if (use_sw && sw > 0 && sw < t)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: %s: 'sliding_window' is %lld, shorter than the "
                      "sequences of %lld tokens the model is declared for: strop has no sliding-"
                      "window attention (set max_length to at most %lld)",
                      c->fn, c->config_path, (long long)sw, (long long)t, (long long)sw);
  if ((st = strop__hf_check_dims(c, a, "model.embed_tokens.weight", 0, g->vocab, "vocab_size")) ||
      (st = strop__hf_check_dims(c, a, "model.embed_tokens.weight", 1, g->d, "hidden_size")) ||
      (st = strop__hf_check_dims(c, a, "model.layers.0.self_attn.k_proj.weight", 0,
                                 g->kv * g->head_dim, "num_key_value_heads")) ||
      (st = strop__hf_check_dims(c, a, "model.layers.0.mlp.up_proj.weight", 0, g->inter,
                                 "intermediate_size")))
    return st;
  return STROP_OK;
}

static strop_status trunk(const strop__pt_ctx *c, const llama_cfg *g, strop_model *m) {
  strop_status st;
  char x[160], n[10][160];
  if ((st = strop__pt_add(m, "model.embed_tokens", "embedding", "input",
                          "num_embeddings=%lld embedding_dim=%lld", (long long)g->vocab,
                          (long long)g->d)))
    return st;
  snprintf(x, sizeof x, "model.embed_tokens");
  char rope[200];
  snprintf(rope, sizeof rope, "rope=rotate_half rope_theta=%.9g rope_factor=%.9g", g->theta,
           g->factor);
  for (int64_t i = 0; i < g->layers; i++) {
    static const char *const parts[] = {"input_layernorm",
                                        "self_attn.q_proj",
                                        "self_attn.k_proj",
                                        "self_attn.v_proj",
                                        "self_attn.attention",
                                        "self_attn.o_proj",
                                        "add_1",
                                        "post_attention_layernorm",
                                        "mlp",
                                        "add_2"};
    for (int k = 0; k < 10; k++)
      snprintf(n[k], sizeof n[k], "model.layers.%lld.%s", (long long)i, parts[k]);
    char qkv[500], sum1[330], sum2[330];
    snprintf(qkv, sizeof qkv, "%s,%s,%s", n[1], n[2], n[3]);
    snprintf(sum1, sizeof sum1, "%s,%s", x, n[5]);
    snprintf(sum2, sizeof sum2, "%s,%s", n[6], n[8]);
    const char *qb = g->qkv_bias ? "true" : "false";
    if ((st = strop__pt_add(m, n[0], "rmsnorm", x, "normalized_shape=%lld eps=%.9g",
                            (long long)g->d, g->eps)) ||
        (st = strop__pt_add(m, n[1], "linear", n[0], "out_features=%lld bias=%s",
                            (long long)(g->heads * g->head_dim), qb)) ||
        (st = strop__pt_add(m, n[2], "linear", n[0], "out_features=%lld bias=%s",
                            (long long)(g->kv * g->head_dim), qb)) ||
        (st = strop__pt_add(m, n[3], "linear", n[0], "out_features=%lld bias=%s",
                            (long long)(g->kv * g->head_dim), qb)) ||
        (st = strop__pt_add(m, n[4], "attention", qkv,
                            "num_heads=%lld num_kv_heads=%lld head_dim=%lld causal=true "
                            "dropout=%.9g %s",
                            (long long)g->heads, (long long)g->kv, (long long)g->head_dim,
                            g->attn_p, rope)) ||
        (st = strop__pt_add(m, n[5], "linear", NULL, "out_features=%lld bias=%s", (long long)g->d,
                            g->o_bias ? "true" : "false")) ||
        (st = strop__pt_add(m, n[6], "add", sum1, NULL)) ||
        (st = strop__pt_add(m, n[7], "rmsnorm", NULL, "normalized_shape=%lld eps=%.9g",
                            (long long)g->d, g->eps)) ||
        (st = strop__pt_add(m, n[8], "gated_mlp", NULL,
                            "intermediate_size=%lld bias=%s activation=%s", (long long)g->inter,
                            g->mlp_bias ? "true" : "false",
                            !strcmp(g->act.type, "silu") ? "silu"
                            : strcmp(g->act.opts, "")    ? "gelu_tanh"
                                                         : "gelu")) ||
        (st = strop__pt_add(m, n[9], "add", sum2, NULL)))
      return st;
    snprintf(x, sizeof x, "%s", n[9]);
  }
  if ((st = strop__pt_mark_hidden(c, m, "model.norm", NULL))) return st;
  return strop__pt_add(m, "model.norm", "rmsnorm", x, "normalized_shape=%lld eps=%.9g",
                       (long long)g->d, g->eps);
}

static strop_status build_lm(const strop__pt_ctx *c, strop_model **out) {
  llama_cfg g;
  strop_status st = read_cfg(c, &strop__arch_llama_lm, &g);
  strop_model *m = NULL;
  if (st || (st = strop__hf_text_model(c, g.positions, &m))) return st;
  if ((st = trunk(c, &g, m)) ||
      (st = strop__pt_add(m, "lm_head", "linear", NULL, "out_features=%lld bias=false",
                          (long long)g.vocab)) ||
      (g.tie && (st = strop_model_tie(m, "lm_head.weight", "model.embed_tokens.weight")))) {
    strop_model_free(m);
    return st;
  }
  *out = m;
  return STROP_OK;
}

/* *ForSequenceClassification: a bias-free score head on the last token */
static strop_status build_cls(const strop__pt_ctx *c, strop_model **out) {
  llama_cfg g;
  strop_status st = read_cfg(c, &strop__arch_llama_cls, &g);
  strop_model *m = NULL;
  if (st || (st = strop__hf_text_model(c, g.positions, &m))) return st;
  const int64_t classes = strop__hf_classes(c, &strop__arch_llama_cls, "score", 2);
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

static const char *const IGNORE[] = {"*.rotary_emb.inv_freq", "lm_head.weight", NULL};
static const char *const LM_NAMES[] = {"LlamaForCausalLM",
                                       "MistralForCausalLM",
                                       "Qwen2ForCausalLM",
                                       "llama",
                                       "mistral",
                                       "qwen2",
                                       NULL};
static const char *const CLS_NAMES[] = {"LlamaForSequenceClassification",
                                        "MistralForSequenceClassification",
                                        "Qwen2ForSequenceClassification", NULL};

/* LlamaPreTrainedModel._init_weights: no rescaled weights; embed_tokens has padding_idx
 * pad_token_id (none by default) */
static const char *const PADDED[] = {"model.embed_tokens.weight", NULL};
static const strop__hf_init INIT = {.padded = PADDED, .pad_default = -1};

const strop__arch strop__arch_llama_lm = {
    .name = "llama",
    .family = "transformers",
    .doc = "Hugging Face LlamaForCausalLM (and Mistral's, Qwen2's): RMSNorm, rotary embeddings "
           "with rope_theta and linear scaling, grouped-query attention, gated SiLU MLP, "
           "lm_head tied when tie_word_embeddings",
    .hf_names = LM_NAMES,
    .build = build_lm,
    .ignore = IGNORE,
    .head_name = "score",
    .head_pool = "last",
    .cls_arch = "llama_cls",
    .init = &INIT,
};

const strop__arch strop__arch_llama_cls = {
    .name = "llama_cls",
    .family = "transformers",
    .doc = "Hugging Face LlamaForSequenceClassification (and Mistral's, Qwen2's): the decoder "
           "with a bias-free score head on the last token",
    .hf_names = CLS_NAMES,
    .build = build_cls,
    .ignore = IGNORE,
    .head_name = "score",
    .head_pool = "last",
    .cls_arch = "llama_cls",
    .init = &INIT,
};
