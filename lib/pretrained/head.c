/* SPDX-License-Identifier: MIT */
/* strop — a sequence-classification head on a loaded encoder or decoder, as a surgery plan:
 * truncate at the backbone's last hidden state (or BERT's pooler), append a pooling layer that
 * reads the batch's padding mask (token_pool first/last, mean_pool), dropout and a linear layer
 * named as Hugging Face names the head of that family (`score` for GPT-2 and Llama,
 * `classifier` for the BERT family), so PEFT's modules_to_save and save_pretrained keep their
 * names. The adapters say where the hidden state is (model metadata "pretrained.hidden",
 * "pretrained.pooled"); nothing here knows a family beyond the descriptor's fields. */
#include <stdio.h>
#include <string.h>

#include "graph/meta.h"
#include "pretrained/pretrained.h"
#include "strop/surgery.h"
#include "surgery/surgery_impl.h"

static const char *const POOLS[] = {"default", "cls", "mean", "last", NULL};

static strop_status run_plan(strop_model *m, uint64_t seed, const char *cut, const char *pool,
                             double dropout, const char *head, int bias, int64_t classes) {
  strop_surgery *sg = NULL;
  strop_status st = strop_surgery_create(m, &sg);
  if (st) return st;
  char opts[96];
  snprintf(opts, sizeof opts, "out_features=%lld bias=%s", (long long)classes,
           bias ? "true" : "false");
  char dp[48];
  snprintf(dp, sizeof dp, "p=%.9g", dropout);
  if (!(st = strop_surgery_set_seed(sg, seed)) && !(st = strop_surgery_truncate(sg, cut)) &&
      (!pool || !(st = !strcmp(pool, "mean")
                           ? strop_surgery_append(sg, "pool", "mean_pool", NULL)
                           : strop_surgery_append(
                                 sg, "pool", "token_pool",
                                 !strcmp(pool, "last") ? "which=last" : "which=first"))) &&
      (dropout <= 0 || !(st = strop_surgery_append(sg, "dropout", "dropout", dp))))
    st = strop_surgery_append(sg, head, "linear", opts);
  if (!st) st = strop_surgery_apply(sg);
  strop_surgery_free(sg);
  return st;
}

strop_status strop__pt_add_head(const char *fn, strop_model *m, const char *pool, int64_t classes,
                                double dropout, uint64_t seed) {
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  if (!pool) pool = "default";
  int p = 0;
  while (POOLS[p] && strcmp(POOLS[p], pool)) p++;
  if (!POOLS[p])
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: pool '%s' is not one of cls, mean, last (or default: the "
                      "family's own)",
                      fn, pool);
  if (classes < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: classes %lld: a head needs at least 1", fn,
                      (long long)classes);
  if (!(dropout >= 0 && dropout < 1))
    return strop__err(STROP_E_INVALID_ARG, "%s: dropout %g is not in [0, 1)", fn, dropout);
  const char *arch_name = strop__meta_get(&m->meta, STROP__PT_META_ARCH);
  const char *hidden = strop__meta_get(&m->meta, STROP__PT_META_HIDDEN);
  const strop__arch *a = strop__arch_find(arch_name);
  if (!a || !a->head_name || !hidden)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: a sequence-classification head needs a text model loaded by "
                      "strop_model_load_pretrained (GPT-2, Llama or BERT family); this one is "
                      "%s%s%s",
                      fn, arch_name ? "'" : "", arch_name ? arch_name : "not one",
                      arch_name ? "'" : "");
  if (p == 0) pool = a->head_pool;
  /* BERT's [CLS] goes through its pooler (dense + tanh) as BertForSequenceClassification's */
  const char *pooled = strop__meta_get(&m->meta, STROP__PT_META_POOLED);
  const int via_pooler = !strcmp(pool, "cls") && pooled;
  strop_status st = run_plan(m, seed, via_pooler ? pooled : hidden, via_pooler ? NULL : pool,
                             dropout, a->head_name, a->head_bias, classes);
  if (st) {
    strop__err_prefix("%s: the %s head on '%s'", fn, pool, via_pooler ? pooled : hidden);
    return st;
  }
  /* the head the family's *ForSequenceClassification has: save_pretrained writes that class;
   * another is recorded so that save_pretrained refuses rather than write a folder no class
   * reads */
  const int hf = a->cls_arch && !strcmp(pool, a->head_pool);
  /* the head is not the checkpoint's: PEFT adapter folders carry it whole (modules_to_save),
   * as they carry a head a surgery `replace` made */
  st = strop__mts_add(m, a->head_name);
  if (!st) st = strop__meta_set(&m->meta, fn, STROP__PT_META_HEAD, hf ? NULL : pool);
  if (!st && hf) st = strop__meta_set(&m->meta, fn, STROP__PT_META_ARCH, a->cls_arch);
  return st;
}

strop_status strop_model_add_classifier_head(strop_model *model, const char *pool,
                                             int64_t classes, float dropout, uint64_t seed) {
  return strop__pt_add_head("strop_model_add_classifier_head", model, pool, classes, dropout,
                            seed);
}
