/* SPDX-License-Identifier: MIT */
/* strop — splitting a model at the end of its frozen, deterministic trunk: the part after the
 * cut becomes a model of its own whose input is the trunk's output, so a trainer can train a
 * head on cached trunk features (a frozen trunk's output never changes). */
#include <string.h>

#include "graph/graph.h"

/* 1 when node i has no trainable parameter and computes the same in train and eval mode. */
static int frozen_deterministic(const strop__node *n) {
  for (int j = 0; j < n->n_params; j++)
    if (n->params[j].trainable && !n->params[j].is_buffer) return 0;
  if (n->vt->flags & STROP__LAYER_STOCHASTIC) return 0;
  if ((n->vt->flags & STROP__LAYER_BATCHSTATS) && !n->frozen_stats) return 0;
  return 1;
}

int strop__model_frozen_cut(const strop_model *m) {
  if (!m->finalized) return -1;
  int prefix = 0;
  while (prefix < m->n_nodes && frozen_deterministic(&m->nodes[prefix])) prefix++;
  /* the cut is the last prefix node k that every later node reaches only through k */
  for (int k = prefix - 1; k >= 0; k--) {
    int ok = k < m->n_nodes - 1;
    for (int j = k + 1; ok && j < m->n_nodes; j++)
      for (int i = 0; ok && i < m->nodes[j].n_in; i++) ok = m->nodes[j].in[i] >= k;
    if (ok) return k;
  }
  return -1;
}

strop_status strop__model_split_head(const strop_model *m, int cut, strop_model **out) {
  static const char fn[] = "model split";
  *out = NULL;
  if (cut < 0 || cut >= m->n_nodes - 1)
    return strop__err(STROP_E_INTERNAL, "%s: cut %d out of range", fn, cut);
  const strop__shape *cs = &m->nodes[cut].out_shape;
  strop_model *h = NULL;
  strop_status s = strop_model_create(cs->rank, cs->d, &h);
  if (s) return s;
  const char *cut_name = m->nodes[cut].name;
  for (int j = cut + 1; j < m->n_nodes && !s; j++) {
    const strop__node *n = &m->nodes[j];
    strop__opts o;
    if ((s = strop__node_write_opts(n, &o))) break;
    const char *ins[16];
    int n_in = n->n_in <= 16 ? n->n_in : 16;
    for (int i = 0; i < n_in; i++)
      ins[i] = strcmp(n->in_names[i], cut_name) ? n->in_names[i] : "input";
    if (!s) s = strop__model_add_opts(h, n->name, n->vt->type, &o, ins, n_in);
    strop__opts_free(&o);
  }
  if (!s) s = strop_model_finalize(h, m->seed);
  /* the head's state is the model's: values, flags, groups */
  for (int j = cut + 1; j < m->n_nodes && !s; j++) {
    const strop__node *a = &m->nodes[j];
    int hb = strop__model_node_find(h, a->name);
    if (hb < 0) {
      s = strop__err(STROP_E_INTERNAL, "%s: node '%s' missing from the head", fn, a->name);
      break;
    }
    h->nodes[hb].frozen_stats = a->frozen_stats;
  }
  if (!s) s = strop__model_copy_state(h, m);
  /* the head trains as the model would: checkpointed where its blocks are */
  if (!s && m->ckpt_pattern && !(h->ckpt_pattern = strop__strdup(m->ckpt_pattern)))
    s = strop__err(STROP_E_NOMEM, "%s: out of memory", fn);
  if (s) {
    strop_model_free(h);
    return s;
  }
  h->training = m->training;
  h->rng = m->rng;
  h->frozen_dtype = m->frozen_dtype;
  h->int8_group = m->int8_group;
  h->compute_dtype = m->compute_dtype;
  h->weight_cache = m->weight_cache;
  h->attention = m->attention;
  *out = h;
  return STROP_OK;
}

strop_status strop__model_copy_state(strop_model *dst, const strop_model *src) {
  for (int i = 0; i < dst->n_params; i++) {
    strop__param *p = dst->params[i];
    const strop__param *q = NULL;
    for (int j = 0; j < src->n_params && !q; j++)
      if (strcmp(src->params[j]->name, p->name) == 0) q = src->params[j];
    if (!q) continue;
    if (q->numel != p->numel || q->is_int64 != p->is_int64)
      return strop__err(STROP_E_SHAPE, "copying '%s': %zu values into %zu", p->name, q->numel,
                        p->numel);
    /* the copy takes the source's storage (FP32, or a frozen weight's BF16 / int8) */
    if (q->lowp.dtype) {
      strop__lowp t;
      if (strop__lowp_copy(&t, &q->lowp))
        return strop__err(STROP_E_NOMEM, "copying '%s': out of memory", p->name);
      strop__param_drop_values(p);
      p->lowp = t;
    } else if (q->data) {
      if (strop__param_convert(p, STROP__LOWP_F32, 0) || strop__param_assign(p, q->data))
        return strop__err(STROP_E_NOMEM, "copying '%s': out of memory", p->name);
    }
    if (p->idata && q->idata) p->idata[0] = q->idata[0];
    p->trainable = q->trainable;
    p->lr_mult = q->lr_mult;
    p->no_decay = q->no_decay;
    p->version++;
  }
  return STROP_OK;
}
