/* strop — export for inference: a copy of the model with LoRA merged into plain linear layers,
 * dropout removed and BatchNorm folded into the conv/linear before it, saved as spec + weights.
 *
 * It edits the graph's internals on a private clone (strop__model_clone) rather than going
 * through a surgery plan: folding changes parameter values and adds a bias, which surgery's
 * "keep every parameter" rule refuses, and one clone is all the memory export needs. Layer
 * configurations are never read as structs: a node is re-typed by writing its options and
 * parsing them with the new vtable, so this file does not depend on any layer's cfg layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "io/atomic.h"
#include "io/io_internal.h"
#include "io/safetensors.h"
#include "io/sbuf.h"
#include "layers/lora.h"
#include "strop/train.h"
#include "strop/version.h"

static const char fn[] = "strop_model_export";

/* ---- node bookkeeping on the clone ---- */


/* How many input edges read node idx (an add(x, x) counts twice). */
static int consumers(const strop_model *m, int idx) {
  int c = 0;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++) c += m->nodes[i].in[j] == idx;
  return c;
}

/* Moves node `from` to position `to` (> from); the nodes between shift down by one. Valid
 * only when no node in (from, to] reads `from`. */
static void move_node(strop_model *m, int from, int to) {
  strop__node nd = m->nodes[from];
  memmove(&m->nodes[from], &m->nodes[from + 1], (size_t)(to - from) * sizeof nd);
  m->nodes[to] = nd;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++) {
      int k = m->nodes[i].in[j];
      if (k == from) m->nodes[i].in[j] = to;
      else if (k > from && k <= to) m->nodes[i].in[j] = k - 1;
    }
}

/* A one-input node can go when its consumers can read its input instead; the output node
 * also needs its input to be able to become the last node (no other consumer). */
static int removable(const strop_model *m, int idx) {
  const strop__node *nd = &m->nodes[idx];
  if (nd->n_in != 1) return 0;
  if (idx != m->n_nodes - 1) return 1;
  int src = nd->in[0];
  return m->n_nodes > 1 && src >= 0 && (src == idx - 1 || consumers(m, src) == 1);
}

/* Removes a removable() node; its consumers read its input. */
static strop_status remove_node(strop_model *m, int idx) {
  strop__node *nd = &m->nodes[idx];
  const int src = nd->in[0], last = idx == m->n_nodes - 1;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *c = &m->nodes[i];
    for (int j = 0; i != idx && j < c->n_in; j++) {
      if (c->in[j] != idx) continue;
      char *name = strop__strdup(nd->in_names[0]);
      if (!name) return STROP__NOMEM(fn);
      strop__free(c->in_names[j]);
      c->in_names[j] = name;
      c->in[j] = src;
    }
  }
  strop__node_release(nd);
  memmove(&m->nodes[idx], &m->nodes[idx + 1], (size_t)(m->n_nodes - idx - 1) * sizeof *nd);
  m->n_nodes--;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++)
      if (m->nodes[i].in[j] > idx) m->nodes[i].in[j]--;
  /* the model's output is its last node: the removed output's input takes its place */
  if (last && src != m->n_nodes - 1) move_node(m, src, m->n_nodes - 1);
  return STROP_OK;
}

/* The value of option `key` as the node writes it (NULL when absent) into buf. */
static strop_status node_opt(const strop__node *nd, const char *key, char *buf, size_t cap,
                             int *found) {
  strop__optbuf b;
  strop_status st = strop__node_write_opts(nd, &b);
  if (st) return st;
  *found = 0;
  for (int i = 0; i < b.n && !*found; i++)
    if (strcmp(b.v[i].key, key) == 0) {
      snprintf(buf, cap, "%s", b.v[i].val);
      *found = 1;
    }
  strop__optbuf_free(&b);
  return STROP_OK;
}

static const strop__param *old_param(const strop__param *v, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (v[i].name && strcmp(v[i].name, name) == 0) return &v[i];
  return NULL;
}

/* Re-types node idx as vt from its own options (only the keys vt knows; the n_over keys in
 * over[2k] set to over[2k + 1]), re-infers it from its input shapes and carries parameters
 * over by name. Parameters vt does not declare are dropped; new ones start at zero. The
 * output shape must not change. On error the node may be half-edited: the caller frees the
 * clone. */
static strop_status retype(strop_model *m, int idx, const strop__layer_vtable *vt,
                           const char *const *over, int n_over) {
  strop__node *nd = &m->nodes[idx];
  strop__optbuf have, known;
  strop__opts o;
  memset(&o, 0, sizeof o);
  memset(&known, 0, sizeof known);
  strop_status st = strop__node_write_opts(nd, &have);
  if (st) return st;
  void *cfg = strop__calloc(1, vt->cfg_size ? vt->cfg_size : 1);
  if (!cfg) st = STROP__NOMEM(fn);
  if (!st) {
    vt->write(cfg, &known);
    if (known.oom) st = STROP__NOMEM(fn);
  }
  for (int i = 0; !st && i < have.n; i++) {
    int ok = 0;
    for (int j = 0; j < known.n && !ok; j++) ok = strcmp(known.v[j].key, have.v[i].key) == 0;
    for (int k = 0; k < n_over && ok; k++) ok = strcmp(have.v[i].key, over[2 * k]) != 0;
    if (ok) st = strop__opts_add(&o, have.v[i].key, have.v[i].val, 0, 0);
  }
  for (int k = 0; !st && k < n_over; k++)
    st = strop__opts_add(&o, over[2 * k], over[2 * k + 1], 0, 0);
  strop__optbuf_free(&have);
  strop__optbuf_free(&known);
  if (!st) {
    o.layer = nd->name;
    o.type = vt->type;
    st = vt->parse(cfg, &o);
  }
  strop__opts_free(&o);
  if (st) {
    strop__free(cfg);
    return st;
  }
  const strop__shape before = nd->out_shape;
  strop__param *old = nd->params;
  const int n_old = nd->n_params;
  nd->params = NULL;
  nd->n_params = 0;
  strop__free(nd->cfg);
  nd->cfg = cfg;
  nd->vt = vt;
  st = vt->infer(nd);
  for (int j = 0; !st && j < nd->n_params; j++) {
    strop__param *p = &nd->params[j];
    strop__param *q = (strop__param *)old_param(old, n_old, p->name);
    const int same = q && q->numel == p->numel && q->rank == p->rank &&
                     (q->data != NULL) == (p->idata == NULL);
    if (same) {
      p->data = q->data;
      p->idata = q->idata;
      p->trainable = q->trainable;
      p->lr_mult = q->lr_mult;
      p->no_decay = q->no_decay;
      p->version = q->version + 1;
      q->data = NULL;
      q->idata = NULL;
    } else if (p->idata == (int64_t *)1) {
      if (!(p->idata = strop__calloc(1, sizeof *p->idata))) st = STROP__NOMEM(fn);
    } else {
      if (!(p->data = strop__malloc_aligned(p->numel * sizeof(float) + 1))) st = STROP__NOMEM(fn);
      else memset(p->data, 0, p->numel * sizeof(float));
    }
  }
  strop__params_release(old, n_old);
  if (st) return st;
  if (nd->out_shape.rank != before.rank ||
      memcmp(nd->out_shape.d, before.d, (size_t)before.rank * sizeof *before.d) != 0)
    return strop__err(STROP_E_INTERNAL, "%s: layer '%s': re-typing as %s changed its output "
                      "shape", fn, nd->name, vt->type);
  return STROP_OK;
}

/* ---- the passes ---- */

/* lora_linear -> linear with B A (times alpha / r) folded into the weight; attention with
 * adapters -> attention without, its projections' weights merged. */
static strop_status merge_lora(strop_model *m) {
  const strop__layer_vtable *lin = strop__layer_find("linear");
  if (!lin) return strop__err(STROP_E_INTERNAL, "%s: no linear layer registered", fn);
  for (int i = 0; i < m->n_nodes; i++) {
    if (m->nodes[i].vt != &strop__layer_lora_linear) continue;
    strop__lora_set_merged(&m->nodes[i], 1);
    strop_status st = retype(m, i, lin, NULL, 0);
    if (st) return st;
  }
  /* attention projections: merged, then the node re-declared without adapters */
  static const char *const no_lora[] = {"lora_r", "[0, 0, 0, 0]", "lora_merged", "false"};
  const strop__layer_vtable *mha = &strop__layer_multihead_attention;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    int any = 0;
    for (int p = 0; nd->vt == mha && p < 4; p++) any |= strop__mha_lora_rank(nd, p, NULL) > 0;
    if (!any) continue;
    strop__mha_lora_set_merged(nd, 1);
    strop_status st = retype(m, i, mha, no_lora, 2);
    if (st) return st;
  }
  return STROP_OK;
}

static strop_status drop_dropout(strop_model *m) {
  const strop__layer_vtable *dr = strop__layer_find("dropout");
  for (int i = 0; dr && i < m->n_nodes;) {
    if (m->nodes[i].vt == dr && removable(m, i)) {
      strop_status st = remove_node(m, i);
      if (st) return st;
      continue; /* the next node is now at i */
    }
    i++;
  }
  return STROP_OK;
}

/* The conv2d or linear node that BatchNorm node i can fold into, or -1. */
static int fold_target(const strop_model *m, int i, const strop__layer_vtable *conv,
                       const strop__layer_vtable *lin, const strop__layer_vtable *bn1,
                       const strop__layer_vtable *bn2) {
  const strop__node *bn = &m->nodes[i];
  if (bn->n_in != 1 || bn->in[0] < 0 || !removable(m, i)) return -1;
  const int p = bn->in[0];
  const strop__node *pv = &m->nodes[p];
  /* channels are dim 0 of BatchNorm's input: a conv's out_channels, or a linear's features
   * when its output is a plain vector */
  int ok = (bn->vt == bn2 && pv->vt == conv) ||
           (bn->vt == bn1 && pv->vt == lin && pv->out_shape.rank == 1);
  if (!ok || consumers(m, p) != 1) return -1;
  strop__node *b = (strop__node *)bn;
  const strop__param *rm = strop__node_param(b, "running_mean");
  const strop__param *rv = strop__node_param(b, "running_var");
  if (!rm || !rv || !rm->data || !rv->data || (int64_t)rm->numel != pv->out_shape.d[0])
    return -1; /* no running statistics: eval mode uses the batch's, nothing to fold */
  return p;
}

static strop_status fold_bn(strop_model *m) {
  const strop__layer_vtable *conv = strop__layer_find("conv2d"), *lin = strop__layer_find("linear");
  const strop__layer_vtable *bn1 = strop__layer_find("batchnorm1d");
  const strop__layer_vtable *bn2 = strop__layer_find("batchnorm2d");
  static const char *const bias_on[] = {"bias", "true"};
  for (int i = 0; i < m->n_nodes;) {
    strop__node *bn = &m->nodes[i];
    int p = (bn->vt == bn1 || bn->vt == bn2) ? fold_target(m, i, conv, lin, bn1, bn2) : -1;
    if (p < 0) {
      i++;
      continue;
    }
    char eps_s[64];
    int found = 0;
    strop_status st = node_opt(bn, "eps", eps_s, sizeof eps_s, &found);
    if (st) return st;
    const double eps = found ? (double)strtof(eps_s, NULL) : 1e-5;
    if (!strop__node_param(&m->nodes[p], "bias") &&
        (st = retype(m, p, m->nodes[p].vt, bias_on, 1)))
      return st;
    bn = &m->nodes[i];
    strop__node *pv = &m->nodes[p];
    const strop__param *g = strop__node_param(bn, "weight"), *be = strop__node_param(bn, "bias");
    const strop__param *rm = strop__node_param(bn, "running_mean");
    const strop__param *rv = strop__node_param(bn, "running_var");
    strop__param *w = strop__node_param(pv, "weight"), *b = strop__node_param(pv, "bias");
    if (!w || !b || !w->data || !b->data || b->numel != rm->numel || w->numel % b->numel)
      return strop__err(STROP_E_INTERNAL, "%s: layer '%s': unexpected parameters to fold "
                        "'%s' into", fn, pv->name, bn->name);
    const size_t C = b->numel, per = w->numel / C;
    for (size_t c = 0; c < C; c++) {
      /* the same arithmetic as the eval-mode BatchNorm kernel, in double */
      const double s = (g ? (double)g->data[c] : 1.0) / sqrt((double)rv->data[c] + eps);
      float *row = w->data + c * per;
      for (size_t k = 0; k < per; k++) row[k] = (float)((double)row[k] * s);
      b->data[c] = (float)(((double)b->data[c] - (double)rm->data[c]) * s +
                           (be ? (double)be->data[c] : 0.0));
    }
    w->version++;
    b->version++;
    if ((st = remove_node(m, i))) return st;
  }
  return STROP_OK;
}

/* ---- writing ---- */

static strop_status write_files(const strop_model *m, const char *spec_path,
                                const char *weights_path) {
  strop__sbuf text = {0};
  strop__st_writer *w = NULL;
  strop__afile spec;
  int spec_open = 0;
  strop_status st = strop__model_spec_text(fn, m, &text);
  if (!st) {
    st = strop__afile_open(&spec, fn, spec_path);
    spec_open = st == STROP_OK;
  }
  if (!st) st = strop__afile_write(&spec, text.s, text.n);
  strop__sbuf_free(&text);
  if (!st) st = strop__st_writer_create(fn, &w);
  if (!st) st = strop__model_add_to_writer(fn, m, w);
  if (!st) st = strop__st_writer_set_meta(w, "format", "strop");
  if (!st) st = strop__st_writer_set_meta(w, "strop_version", strop_version());
  if (!st) st = strop__st_writer_set_meta(w, "strop_export", "inference");
  if (!st) st = strop__st_writer_save(w, weights_path);
  strop__st_writer_free(w);
  if (st) {
    if (spec_open) strop__afile_abort(&spec);
    return st;
  }
  /* the spec last: a loader that finds it finds the matching weights */
  return strop__afile_commit(&spec);
}

strop_status strop_model_export(const strop_model *model, const char *spec_path,
                                const char *weights_path, int flags) {
  if (!model || !spec_path || !weights_path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !model ? "model" : !spec_path ? "spec_path" : "weights_path");
  if (flags & ~(STROP_EXPORT_NO_FOLD | STROP_EXPORT_KEEP_DROPOUT))
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown flags 0x%x (known: STROP_EXPORT_NO_FOLD, "
                      "STROP_EXPORT_KEEP_DROPOUT)", fn, (unsigned)flags);
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  if (!*spec_path || !*weights_path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is empty", fn,
                      !*spec_path ? "spec_path" : "weights_path");
  if (strcmp(spec_path, weights_path) == 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: spec_path and weights_path are both '%s'", fn,
                      spec_path);
  strop_model *m = NULL;
  strop_status st = strop__model_clone(model, &m);
  if (st) {
    if (st == STROP_E_NOMEM) strop__err(STROP_E_NOMEM, "%s: out of memory copying the model", fn);
    return st;
  }
  m->training = 0;
  st = merge_lora(m);
  if (!st && !(flags & STROP_EXPORT_KEEP_DROPOUT)) st = drop_dropout(m);
  if (!st && !(flags & STROP_EXPORT_NO_FOLD)) st = fold_bn(m);
  if (!st) st = strop__model_reindex(m);
  if (!st) st = write_files(m, spec_path, weights_path);
  strop_model_free(m);
  return st;
}
