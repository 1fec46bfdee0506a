/* SPDX-License-Identifier: MIT */
/* strop — BERT-family encoders as Hugging Face transformers has them (modeling_bert,
 * modeling_roberta, modeling_distilbert of 4.x): BertModel, BertForSequenceClassification,
 * RobertaModel, RobertaForSequenceClassification, DistilBertModel,
 * DistilBertForSequenceClassification, with their own names.
 *
 * BERT / RoBERTa: [bert.|roberta.]embeddings.{word,position,token_type}_embeddings,
 *   embeddings.LayerNorm, encoder.layer.N.attention.self.{query,key,value},
 *   attention.output.{dense,LayerNorm}, intermediate.dense, output.{dense,LayerNorm},
 *   pooler.dense; classifier (BERT) or classifier.{dense,out_proj} (RoBERTa, on the first
 *   token, no pooler). Post-norm; RoBERTa's positions start at padding_idx + 1 and count
 *   tokens only (as its position ids do from the input ids).
 * DistilBERT: [distilbert.]embeddings.{word,position}_embeddings, embeddings.LayerNorm,
 *   transformer.layer.N.{attention.{q,k,v,out}_lin, sa_layer_norm, ffn.lin1, ffn.lin2,
 *   output_layer_norm}; pre_classifier (+ ReLU) and classifier on the first token.
 * Token type ids: the batch's (strop_side_inputs: a text pair's second segment has type 1),
 * row type of token_type_embeddings, type 0 without them; an id >= type_vocab_size is an error
 * naming the layer. DistilBERT has no such table and ignores them. The pooler's tanh and the
 * [CLS] token are the first token the padding mask keeps. */
#include <stdio.h>
#include <string.h>

#include "pretrained/pretrained.h"

enum { FAM_BERT, FAM_ROBERTA, FAM_DISTIL };

typedef struct bert_cfg {
  int fam;
  int64_t vocab, d, layers, heads, inter, positions, types, pad;
  double eps, hidden_p, attn_p, cls_p;
  strop__hf_activation act;
} bert_cfg;

static strop_status read_cfg(const strop__pt_ctx *c, const strop__arch *a, int fam,
                             const char *pre, bert_cfg *g) {
  strop_status st;
  g->fam = fam;
  /* BertConfig's, RobertaConfig's and DistilBertConfig's defaults */
  static const int64_t V[] = {30522, 50265, 30522}, P[] = {512, 514, 512}, T[] = {2, 1, 0},
                       PAD[] = {0, 1, 0}, D = 768, L = 12, LD = 6, H = 12, I = 3072;
  static const double EPS[] = {1e-12, 1e-5, 1e-12}, DROP = 0.1;
  if (fam == FAM_DISTIL) {
    int sinus = 0;
    if ((st = strop__pt_int(c, "vocab_size", &V[fam], 1, INT32_MAX, &g->vocab)) ||
        (st = strop__pt_int(c, "dim", &D, 1, INT32_MAX, &g->d)) ||
        (st = strop__pt_int(c, "n_layers", &LD, 0, 100000, &g->layers)) ||
        (st = strop__pt_int(c, "n_heads", &H, 1, INT32_MAX, &g->heads)) ||
        (st = strop__pt_int(c, "hidden_dim", &I, 1, INT32_MAX, &g->inter)) ||
        (st = strop__pt_int(c, "max_position_embeddings", &P[fam], 1, INT32_MAX,
                            &g->positions)) ||
        (st = strop__pt_float(c, "dropout", &DROP, 0, 0.999, &g->hidden_p)) ||
        (st = strop__pt_float(c, "attention_dropout", &DROP, 0, 0.999, &g->attn_p)) ||
        (st = strop__pt_bool(c, "sinusoidal_pos_embds", 0, &sinus)) ||
        (st = strop__hf_act(c, "activation", "gelu", &g->act)))
      return st;
    const double cls_default = 0.2;
    if ((st = strop__pt_float(c, "seq_classif_dropout", &cls_default, 0, 0.999, &g->cls_p)))
      return st;
    if (sinus)
      return strop__err(STROP_E_UNSUPPORTED,
                        "%s: %s: 'sinusoidal_pos_embds' is true: strop "
                        "reads learned position embeddings only",
                        c->fn, c->config_path);
    g->types = 0;
    g->pad = 0;
    g->eps = EPS[fam];
    if ((st = strop__hf_divides(c, "dim", g->d, "n_heads", g->heads))) return st;
  } else {
    const char *pet = NULL;
    if ((st = strop__pt_int(c, "vocab_size", &V[fam], 1, INT32_MAX, &g->vocab)) ||
        (st = strop__pt_int(c, "hidden_size", &D, 1, INT32_MAX, &g->d)) ||
        (st = strop__pt_int(c, "num_hidden_layers", &L, 0, 100000, &g->layers)) ||
        (st = strop__pt_int(c, "num_attention_heads", &H, 1, INT32_MAX, &g->heads)) ||
        (st = strop__pt_int(c, "intermediate_size", &I, 1, INT32_MAX, &g->inter)) ||
        (st = strop__pt_int(c, "max_position_embeddings", &P[fam], 1, INT32_MAX,
                            &g->positions)) ||
        (st = strop__pt_int(c, "type_vocab_size", &T[fam], 0, INT32_MAX, &g->types)) ||
        (st = strop__pt_int(c, "pad_token_id", &PAD[fam], 0, INT32_MAX, &g->pad)) ||
        (st = strop__pt_float(c, "layer_norm_eps", &EPS[fam], 0, 1, &g->eps)) ||
        (st = strop__pt_float(c, "hidden_dropout_prob", &DROP, 0, 0.999, &g->hidden_p)) ||
        (st = strop__pt_float(c, "attention_probs_dropout_prob", &DROP, 0, 0.999, &g->attn_p)) ||
        (st = strop__pt_str(c, "position_embedding_type", "absolute", &pet)) ||
        (st = strop__hf_act(c, "hidden_act", "gelu", &g->act)))
      return st;
    if ((st = strop__pt_float(c, "classifier_dropout", &g->hidden_p, 0, 0.999, &g->cls_p)))
      return st;
    if (strcmp(pet, "absolute"))
      return strop__err(STROP_E_UNSUPPORTED,
                        "%s: %s: 'position_embedding_type' is \"%s\": "
                        "strop reads absolute position embeddings only",
                        c->fn, c->config_path, pet);
    if ((st = strop__hf_divides(c, "hidden_size", g->d, "num_attention_heads", g->heads)))
      return st;
  }
  char t[200];
  snprintf(t, sizeof t, "%sembeddings.word_embeddings.weight", pre);
  if ((st = strop__hf_check_dims(c, a, t, 0, g->vocab, "vocab_size")) ||
      (st = strop__hf_check_dims(c, a, t, 1, g->d, fam == FAM_DISTIL ? "dim" : "hidden_size")))
    return st;
  snprintf(t, sizeof t, "%sembeddings.position_embeddings.weight", pre);
  if ((st = strop__hf_check_dims(c, a, t, 0, g->positions, "max_position_embeddings"))) return st;
  if (fam == FAM_ROBERTA && g->positions < g->pad + 2)
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: 'max_position_embeddings' %lld leaves no position "
                      "after the offset pad_token_id + 1 = %lld",
                      c->fn, c->config_path, (long long)g->positions, (long long)(g->pad + 1));
  return STROP_OK;
}

static strop_status dropout(strop_model *m, const char *name, const char *in, double p) {
  return p > 0 ? strop__pt_add(m, name, "dropout", in, "p=%.9g", p) : STROP_OK;
}

/* embeddings and the encoder stack under prefix pre ("bert."); *out_name gets the last node */
static strop_status trunk(const bert_cfg *g, strop_model *m, const char *pre, char *x,
                          size_t cap) {
  strop_status st;
  char n[16][200];
  const int distil = g->fam == FAM_DISTIL;
  /* RoBERTa's position ids: padding_idx + 1 + the token's number among the tokens */
  const int64_t offset = g->fam == FAM_ROBERTA ? g->pad + 1 : 0;
  snprintf(n[0], sizeof n[0], "%sembeddings.word_embeddings", pre);
  snprintf(n[1], sizeof n[1], "%sembeddings.position_embeddings", pre);
  snprintf(n[2], sizeof n[2], "%sembeddings.token_type_embeddings", pre);
  snprintf(n[3], sizeof n[3], "%sembeddings.LayerNorm", pre);
  snprintf(n[4], sizeof n[4], "%sembeddings.dropout", pre);
  if ((st = strop__pt_add(m, n[0], "embedding", "input", "num_embeddings=%lld embedding_dim=%lld",
                          (long long)g->vocab, (long long)g->d)) ||
      (st = strop__pt_add(m, n[1], "positional_embedding", NULL,
                          "num_embeddings=%lld positions=mask offset=%lld",
                          (long long)g->positions, (long long)offset)) ||
      (g->types > 0 && (st = strop__pt_add(m, n[2], "positional_embedding", NULL,
                                           "num_embeddings=%lld positions=types offset=0",
                                           (long long)g->types))) ||
      (st = strop__pt_add(m, n[3], "layernorm", NULL, "normalized_shape=%lld eps=%.9g",
                          (long long)g->d, g->eps)) ||
      (st = dropout(m, n[4], NULL, g->hidden_p)))
    return st;
  snprintf(x, cap, "%s", g->hidden_p > 0 ? n[4] : n[3]);
  for (int64_t i = 0; i < g->layers; i++) {
    /* BERT's and DistilBERT's names for the same parts */
    static const char *const bert_parts[] = {"attention.self.query",
                                             "attention.self.key",
                                             "attention.self.value",
                                             "attention.self.attention",
                                             "attention.output.dense",
                                             "attention.output.dropout",
                                             "attention.output.add",
                                             "attention.output.LayerNorm",
                                             "intermediate.dense",
                                             "intermediate.act",
                                             "output.dense",
                                             "output.dropout",
                                             "output.add",
                                             "output.LayerNorm"};
    static const char *const distil_parts[] = {
        "attention.q_lin",   "attention.k_lin",   "attention.v_lin", "attention.attention",
        "attention.out_lin", "attention.dropout", "sa_add",          "sa_layer_norm",
        "ffn.lin1",          "ffn.act",           "ffn.lin2",        "ffn.dropout",
        "output_add",        "output_layer_norm"};
    for (int k = 0; k < 14; k++)
      snprintf(n[k], sizeof n[k], "%s%s.%lld.%s", pre,
               distil ? "transformer.layer" : "encoder.layer", (long long)i,
               distil ? distil_parts[k] : bert_parts[k]);
    char qkv[700], sum1[420], sum2[420];
    snprintf(qkv, sizeof qkv, "%s,%s,%s", n[0], n[1], n[2]);
    snprintf(sum1, sizeof sum1, "%s,%s", g->hidden_p > 0 ? n[5] : n[4], x);
    snprintf(sum2, sizeof sum2, "%s,%s", g->hidden_p > 0 ? n[11] : n[10], n[7]);
    if ((st = strop__pt_add(m, n[0], "linear", x, "out_features=%lld", (long long)g->d)) ||
        (st = strop__pt_add(m, n[1], "linear", x, "out_features=%lld", (long long)g->d)) ||
        (st = strop__pt_add(m, n[2], "linear", x, "out_features=%lld", (long long)g->d)) ||
        (st = strop__pt_add(m, n[3], "attention", qkv, "num_heads=%lld dropout=%.9g",
                            (long long)g->heads, g->attn_p)) ||
        (st = strop__pt_add(m, n[4], "linear", NULL, "out_features=%lld", (long long)g->d)) ||
        (st = dropout(m, n[5], NULL, g->hidden_p)) ||
        (st = strop__pt_add(m, n[6], "add", sum1, NULL)) ||
        (st = strop__pt_add(m, n[7], "layernorm", NULL, "normalized_shape=%lld eps=%.9g",
                            (long long)g->d, g->eps)) ||
        (st = strop__pt_add(m, n[8], "linear", NULL, "out_features=%lld", (long long)g->inter)) ||
        (st = strop__pt_add(m, n[9], g->act.type, NULL, "%s", g->act.opts)) ||
        (st = strop__pt_add(m, n[10], "linear", NULL, "out_features=%lld", (long long)g->d)) ||
        (st = dropout(m, n[11], NULL, g->hidden_p)) ||
        (st = strop__pt_add(m, n[12], "add", sum2, NULL)) ||
        (st = strop__pt_add(m, n[13], "layernorm", NULL, "normalized_shape=%lld eps=%.9g",
                            (long long)g->d, g->eps)))
      return st;
    snprintf(x, cap, "%s", n[13]);
  }
  return STROP_OK;
}

/* pooler: tanh(dense(first token)) */
static strop_status pooler(const bert_cfg *g, strop_model *m, const char *pre, const char *x) {
  char n[3][200];
  snprintf(n[0], sizeof n[0], "%spooler.first", pre);
  snprintf(n[1], sizeof n[1], "%spooler.dense", pre);
  snprintf(n[2], sizeof n[2], "%spooler.activation", pre);
  strop_status st;
  if ((st = strop__pt_add(m, n[0], "token_pool", x, "which=first")) ||
      (st = strop__pt_add(m, n[1], "linear", NULL, "out_features=%lld", (long long)g->d)) ||
      (st = strop__pt_add(m, n[2], "tanh", NULL, NULL)))
    return st;
  return STROP_OK;
}

static strop_status build(const strop__pt_ctx *c, const strop__arch *a, int fam, int cls,
                          strop_model **out) {
  static const char *const PRE[] = {"bert.", "roberta.", "distilbert."};
  const char *pre = cls ? PRE[fam] : "";
  bert_cfg g;
  strop_status st = read_cfg(c, a, fam, pre, &g);
  strop_model *m = NULL;
  if (st) return st;
  /* RoBERTa's positions run up to max_position_embeddings - padding_idx - 1 */
  const int64_t longest = fam == FAM_ROBERTA ? g.positions - g.pad - 1 : g.positions;
  if ((st = strop__hf_text_model(c, longest, &m))) return st;
  char x[200];
  if ((st = trunk(&g, m, pre, x, sizeof x))) goto fail;
  char pooled[200];
  snprintf(pooled, sizeof pooled, "%spooler.activation", pre);
  /* a base model's pooler (BertModel, RobertaModel with one in the file) */
  char pw[200];
  int64_t d[STROP_MAX_RANK];
  snprintf(pw, sizeof pw, "%spooler.dense.weight", pre);
  const int with_pooler = fam != FAM_DISTIL && strop__pt_shape(c, a, pw, d, STROP_MAX_RANK) >= 0;
  /* BERT's [CLS] for a classification head goes through its pooler (not RoBERTa's) */
  const int pools = fam == FAM_BERT && (cls || with_pooler);
  if ((st = strop__pt_mark_hidden(c, m, x, pools ? pooled : NULL))) goto fail;
  if (!cls) {
    if (with_pooler && (st = pooler(&g, m, pre, x))) goto fail;
    *out = m;
    return STROP_OK;
  }
  if (fam == FAM_BERT) {
    const int64_t classes = strop__hf_classes(c, a, "classifier", 2);
    if ((st = pooler(&g, m, pre, x)) || (st = dropout(m, "dropout", NULL, g.cls_p)) ||
        (st = strop__pt_add(m, "classifier", "linear", NULL, "out_features=%lld",
                            (long long)classes)))
      goto fail;
  } else if (fam == FAM_ROBERTA) {
    const int64_t classes = strop__hf_classes(c, a, "classifier.out_proj", 2);
    if ((st = strop__pt_add(m, "classifier.first", "token_pool", x, "which=first")) ||
        (st = dropout(m, "classifier.dropout1", NULL, g.cls_p)) ||
        (st = strop__pt_add(m, "classifier.dense", "linear", NULL, "out_features=%lld",
                            (long long)g.d)) ||
        (st = strop__pt_add(m, "classifier.tanh", "tanh", NULL, NULL)) ||
        (st = dropout(m, "classifier.dropout2", NULL, g.cls_p)) ||
        (st = strop__pt_add(m, "classifier.out_proj", "linear", NULL, "out_features=%lld",
                            (long long)classes)))
      goto fail;
  } else {
    const int64_t classes = strop__hf_classes(c, a, "classifier", 2);
    if ((st = strop__pt_add(m, "first", "token_pool", x, "which=first")) ||
        (st = strop__pt_add(m, "pre_classifier", "linear", NULL, "out_features=%lld",
                            (long long)g.d)) ||
        (st = strop__pt_add(m, "pre_classifier_act", "relu", NULL, NULL)) ||
        (st = dropout(m, "dropout", NULL, g.cls_p)) ||
        (st = strop__pt_add(m, "classifier", "linear", NULL, "out_features=%lld",
                            (long long)classes)))
      goto fail;
  }
  *out = m;
  return STROP_OK;
fail:
  strop_model_free(m);
  return st;
}

#define BERT_ARCH(VAR, NAME, FAM, CLS, CLS_ARCH, PREFIX, DOC, ...)             \
  static strop_status build_##VAR(const strop__pt_ctx *c, strop_model **out) { \
    return build(c, &strop__arch_##VAR, FAM, CLS, out);                        \
  }                                                                            \
  static const char *const NAMES_##VAR[] = {__VA_ARGS__, NULL};                \
  static const char *const PREFIXES_##VAR[] = {PREFIX, NULL};                  \
  const strop__arch strop__arch_##VAR = {                                      \
      .name = NAME,                                                            \
      .family = "transformers",                                                \
      .doc = DOC,                                                              \
      .hf_names = NAMES_##VAR,                                                 \
      .build = build_##VAR,                                                    \
      .ignore = IGNORE,                                                        \
      .prefixes = PREFIXES_##VAR,                                              \
      .head_name = "classifier",                                               \
      .head_bias = 1,                                                          \
      .head_pool = "cls",                                                      \
      .cls_arch = CLS_ARCH,                                                    \
      .init = &INIT[FAM],                                                      \
  };

/* _init_weights of BertPreTrainedModel, RobertaPreTrainedModel, DistilBertPreTrainedModel:
 * the word embeddings' padding_idx is pad_token_id, and RoBERTa's position embeddings' too */
static const char *const PAD_WORDS[] = {"*embeddings.word_embeddings.weight", NULL};
static const char *const PAD_ROBERTA[] = {"*embeddings.word_embeddings.weight",
                                          "*embeddings.position_embeddings.weight", NULL};
static const strop__hf_init INIT[] = {[FAM_BERT] = {.padded = PAD_WORDS, .pad_default = 0},
                                      [FAM_ROBERTA] = {.padded = PAD_ROBERTA, .pad_default = 1},
                                      [FAM_DISTIL] = {.padded = PAD_WORDS, .pad_default = 0}};

/* buffers and pre-training heads a file may hold that are not parameters here */
static const char *const IGNORE[] = {"*.position_ids", "*.token_type_ids", "cls.*",
                                     "lm_head.*",      "vocab_*",          NULL};

BERT_ARCH(bert, "bert", FAM_BERT, 0, NULL, "bert.",
          "Hugging Face BertModel: post-norm encoder, token-type embeddings (the batch's types), "
          "the pooler's tanh on the first token as the output",
          "BertModel", "bert")
BERT_ARCH(bert_cls, "bert_cls", FAM_BERT, 1, "bert_cls", "bert.",
          "Hugging Face BertForSequenceClassification: BERT, pooler and a classifier; classes "
          "from classifier.weight",
          "BertForSequenceClassification")
BERT_ARCH(roberta, "roberta", FAM_ROBERTA, 0, NULL, "roberta.",
          "Hugging Face RobertaModel: BERT's layout, positions from padding_idx + 1 over the "
          "tokens, the pooler when the file has one",
          "RobertaModel", "roberta")
BERT_ARCH(roberta_cls, "roberta_cls", FAM_ROBERTA, 1, NULL, "roberta.",
          "Hugging Face RobertaForSequenceClassification: RoBERTa and its classification head "
          "(dense, tanh, out_proj) on the first token",
          "RobertaForSequenceClassification")
BERT_ARCH(distilbert, "distilbert", FAM_DISTIL, 0, NULL, "distilbert.",
          "Hugging Face DistilBertModel: q_lin/k_lin/v_lin/out_lin, sa_layer_norm, ffn; the "
          "last hidden states as the output",
          "DistilBertModel", "distilbert")
BERT_ARCH(distilbert_cls, "distilbert_cls", FAM_DISTIL, 1, NULL, "distilbert.",
          "Hugging Face DistilBertForSequenceClassification: DistilBERT, pre_classifier + ReLU "
          "and classifier on the first token",
          "DistilBertForSequenceClassification")
