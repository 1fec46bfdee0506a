/* SPDX-License-Identifier: MIT */
/* strop — structural edits of a model's graph (see edit.h): the one place that adds, moves,
 * deletes, rewires, re-types and re-infers nodes after a model is built. */
#include <stdio.h>
#include <string.h>

#include "graph/edit.h"

strop_status strop__gedit_init(strop__gedit *g, strop_model *m, size_t aux_size,
                               void (*aux_release)(void *aux)) {
  memset(g, 0, sizeof *g);
  g->m = m;
  g->aux_size = aux_size;
  g->aux_release = aux_release;
  if (!aux_size) return STROP_OK;
  if (aux_size > STROP__GEDIT_AUX_MAX)
    return strop__err(STROP_E_INTERNAL, "graph edit: a %zu-byte record per node is too large",
                      aux_size);
  int cap = m->n_nodes > 16 ? m->n_nodes : 16;
  g->aux = strop__calloc((size_t)cap, aux_size);
  if (!g->aux) return strop__err(STROP_E_NOMEM, "graph edit: out of memory");
  g->aux_cap = cap;
  return STROP_OK;
}

void strop__gedit_free(strop__gedit *g) {
  for (int i = 0; g->aux && g->aux_release && i < g->aux_cap; i++)
    g->aux_release(g->aux + (size_t)i * g->aux_size);
  strop__free(g->aux);
  g->aux = NULL;
  g->aux_cap = 0;
}

void *strop__gedit_aux(const strop__gedit *g, int i) {
  return g->aux && i >= 0 && i < g->aux_cap ? g->aux + (size_t)i * g->aux_size : NULL;
}

static strop_status aux_reserve(strop__gedit *g, int n) {
  if (!g->aux_size || n <= g->aux_cap) return STROP_OK;
  int cap = g->aux_cap ? g->aux_cap : 16;
  while (cap < n) cap *= 2;
  char *v = strop__realloc(g->aux, (size_t)cap * g->aux_size);
  if (!v) return strop__err(STROP_E_NOMEM, "graph edit: out of memory");
  memset(v + (size_t)g->aux_cap * g->aux_size, 0, (size_t)(cap - g->aux_cap) * g->aux_size);
  g->aux = v;
  g->aux_cap = cap;
  return STROP_OK;
}

strop_status strop__gedit_add(strop__gedit *g, const char *name, const char *type,
                              strop__opts *opts, const char *const *inputs, int n_inputs,
                              int *count) {
  strop_model *m = g->m;
  *count = 0;
  const int before = m->n_nodes, was = m->finalized;
  m->finalized = 0; /* strop__model_add_opts builds unfinalized models */
  strop_status st = strop__model_add_opts(m, name, type, opts, inputs, n_inputs);
  m->finalized = was;
  if (st) return st;
  if ((st = aux_reserve(g, m->n_nodes))) {
    while (m->n_nodes > before) strop__node_release(&m->nodes[--m->n_nodes]);
    strop__model_names_stale(m);
    return st;
  }
  for (int i = before; g->aux && i < m->n_nodes; i++)
    memset(g->aux + (size_t)i * g->aux_size, 0, g->aux_size);
  *count = m->n_nodes - before;
  return STROP_OK;
}

void strop__gedit_move(strop__gedit *g, int from, int k, int to) {
  strop_model *m = g->m;
  if (k <= 0 || from == to) return;
  strop__model_names_stale(m); /* the names index holds node indices */
  /* one node at a time keeps the scratch small; a block moves as k single moves */
  if (k > 1) {
    if (to > from)
      for (int j = k - 1; j >= 0; j--) strop__gedit_move(g, from + j, 1, to + j);
    else
      for (int j = 0; j < k; j++) strop__gedit_move(g, from + j, 1, to + j);
    return;
  }
  const size_t as = g->aux_size;
  char auxbuf[STROP__GEDIT_AUX_MAX];
  const strop__node nd = m->nodes[from];
  if (g->aux) memcpy(auxbuf, g->aux + (size_t)from * as, as);
  if (to > from) {
    memmove(&m->nodes[from], &m->nodes[from + 1], (size_t)(to - from) * sizeof *m->nodes);
    if (g->aux)
      memmove(g->aux + (size_t)from * as, g->aux + (size_t)(from + 1) * as,
              (size_t)(to - from) * as);
  } else {
    memmove(&m->nodes[to + 1], &m->nodes[to], (size_t)(from - to) * sizeof *m->nodes);
    if (g->aux)
      memmove(g->aux + (size_t)(to + 1) * as, g->aux + (size_t)to * as, (size_t)(from - to) * as);
  }
  m->nodes[to] = nd;
  if (g->aux) memcpy(g->aux + (size_t)to * as, auxbuf, as);
}

void strop__gedit_delete(strop__gedit *g, int idx) {
  strop_model *m = g->m;
  strop__model_names_stale(m);
  strop__node_release(&m->nodes[idx]);
  const size_t as = g->aux_size;
  if (g->aux && g->aux_release) g->aux_release(g->aux + (size_t)idx * as);
  const int rest = m->n_nodes - idx - 1;
  memmove(&m->nodes[idx], &m->nodes[idx + 1], (size_t)rest * sizeof *m->nodes);
  if (g->aux) {
    memmove(g->aux + (size_t)idx * as, g->aux + (size_t)(idx + 1) * as, (size_t)rest * as);
    memset(g->aux + (size_t)(m->n_nodes - 1) * as, 0, as);
  }
  m->n_nodes--;
}

strop_status strop__gedit_rewire(strop_model *m, const char *from, const char *to, int skip,
                                 int skip_n) {
  for (int i = 0; i < m->n_nodes; i++) {
    if (i >= skip && i < skip + skip_n) continue;
    strop__node *nd = &m->nodes[i];
    for (int j = 0; j < nd->n_in; j++)
      if (strcmp(nd->in_names[j], from) == 0) {
        char *d = strop__strdup(to);
        if (!d) return strop__err(STROP_E_NOMEM, "graph edit: out of memory");
        strop__free(nd->in_names[j]);
        nd->in_names[j] = d;
      }
  }
  return STROP_OK;
}

strop_status strop__gedit_relink(strop_model *m) {
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    for (int j = 0; j < nd->n_in; j++) {
      if (strcmp(nd->in_names[j], "input") == 0) {
        nd->in[j] = -1;
        continue;
      }
      int k = strop__model_node_lookup(m, nd->in_names[j]);
      if (k < 0)
        return strop__err(STROP_E_NOT_FOUND,
                          "layer '%s' reads '%s', which is no longer in "
                          "the model",
                          nd->name, nd->in_names[j]);
      if (k >= i)
        return strop__err(STROP_E_INVALID_ARG,
                          "layer '%s' would read '%s', which comes after "
                          "it (a cycle)",
                          nd->name, nd->in_names[j]);
      nd->in[j] = k;
    }
  }
  return STROP_OK;
}

int strop__gedit_consumers(const strop_model *m, int idx) {
  int c = 0;
  const char *name = m->nodes[idx].name;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++) c += strcmp(m->nodes[i].in_names[j], name) == 0;
  return c;
}

int strop__gedit_removable(strop_model *m, int idx, int move_ok) {
  const strop__node *nd = &m->nodes[idx];
  if (nd->n_in != 1) return 0;
  if (idx != m->n_nodes - 1) return 1;
  const char *src = nd->in_names[0];
  int k = strop__model_node_lookup(m, src);
  if (m->n_nodes < 2 || k < 0) return 0;
  return k == idx - 1 || (move_ok && strop__gedit_consumers(m, k) == 1);
}

strop_status strop__gedit_remove(strop__gedit *g, int idx, int move_ok) {
  strop_model *m = g->m;
  strop__node *nd = &m->nodes[idx];
  if (nd->n_in != 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "node '%s' has %d inputs; its consumers cannot be "
                      "reconnected",
                      nd->name, nd->n_in);
  const int last = idx == m->n_nodes - 1;
  if (last && m->n_nodes == 1)
    return strop__err(STROP_E_INVALID_ARG, "'%s' is the only node; nothing would be left",
                      nd->name);
  if (!strop__gedit_removable(m, idx, move_ok))
    return strop__err(STROP_E_INVALID_ARG,
                      "'%s' is the output and its input '%s' is not the "
                      "node before it; truncate at '%s' instead",
                      nd->name, nd->in_names[0], nd->in_names[0]);
  char *src = strop__strdup(nd->in_names[0]);
  if (!src) return strop__err(STROP_E_NOMEM, "graph edit: out of memory");
  strop_status st = strop__gedit_rewire(m, nd->name, src, idx, 1);
  if (!st) {
    strop__gedit_delete(g, idx);
    /* the model's output is its last node: the removed output's input takes its place */
    int k = strop__model_node_lookup(m, src);
    if (last && k >= 0 && k != m->n_nodes - 1) strop__gedit_move(g, k, 1, m->n_nodes - 1);
  }
  strop__free(src);
  return st;
}

strop_status strop__gedit_retype(strop_model *m, int idx, const strop__layer_vtable *vt,
                                 const char *const *over) {
  strop__node *nd = &m->nodes[idx];
  strop__opts have, o;
  memset(&o, 0, sizeof o);
  strop_status st = strop__node_write_opts(nd, &have);
  if (st) return st;
  /* the keys the new type knows, from the node's own options, then the overrides */
  for (int i = 0; !st && i < have.n; i++) {
    int known = 0;
    for (int j = 0; vt->options && vt->options[j].name && !known; j++)
      known = strcmp(vt->options[j].name, have.v[i].key) == 0;
    if (known) st = strop__opts_add(&o, have.v[i].key, have.v[i].val, 0, 0);
  }
  for (int k = 0; !st && over && over[k]; k += 2) st = strop__opts_set(&o, over[k], over[k + 1]);
  strop__opts_free(&have);
  void *cfg = NULL;
  if (!st) {
    o.layer = nd->name;
    st = strop__layer_parse(vt, &o, &cfg);
  }
  strop__opts_free(&o);
  if (st) return st;
  strop__free(nd->cfg);
  nd->cfg = cfg;
  nd->vt = vt;
  return STROP_OK;
}

static const strop__param *by_name(const strop__param *v, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (v[i].name && strcmp(v[i].name, name) == 0) return &v[i];
  return NULL;
}

static int same_shape(const strop__param *a, const strop__param *b) {
  if (a->rank != b->rank || a->numel != b->numel || a->is_int64 != b->is_int64) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static void param_dims(const strop__param *p, char *buf, size_t cap) {
  strop__shape s = {p->rank, {0}};
  memcpy(s.d, p->dims, sizeof s.d);
  strop__shape_str(&s, buf, cap);
}

/* Policy violations of node nd's new declaration against its old parameters. */
static strop_status check_policy(const strop__node *nd, const strop__param *old, int n_old,
                                 int policy) {
  char b1[96], b2[96];
  if (!(policy & STROP__REINFER_KEEP)) return STROP_OK;
  for (int j = 0; j < nd->n_params; j++) {
    const strop__param *p = &nd->params[j], *q = by_name(old, n_old, p->name);
    if (q && same_shape(p, q)) continue;
    if (!q && (policy & STROP__REINFER_ADAPTERS) && p->is_adapter) continue;
    if (!q)
      return strop__err(STROP_E_SHAPE, "layer '%s' (%s) would gain a parameter '%s'", nd->name,
                        nd->vt->type, p->name);
    param_dims(q, b1, sizeof b1);
    param_dims(p, b2, sizeof b2);
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (%s): parameter '%s' would change shape from "
                      "%s to %s",
                      nd->name, nd->vt->type, p->name, b1, b2);
  }
  for (int t = 0; t < n_old; t++)
    if (!by_name(nd->params, nd->n_params, old[t].name))
      return strop__err(STROP_E_SHAPE, "layer '%s' (%s) would lose its parameter '%s'", nd->name,
                        nd->vt->type, old[t].name);
  return STROP_OK;
}

strop_status strop__gedit_reinfer(strop_model *m, int i, int policy, int *n_new) {
  strop__node *nd = &m->nodes[i];
  if (n_new) *n_new = 0;
  /* what infer may change, kept to undo a failure */
  strop__param *old = nd->params;
  const int n_old = nd->n_params;
  uint8_t old_slot[STROP__MAX_SLOTS];
  memcpy(old_slot, nd->slot, sizeof old_slot);
  const strop__shape old_out = nd->out_shape;
  strop__shape *old_in = strop__malloc((size_t)(nd->n_in ? nd->n_in : 1) * sizeof *old_in);
  void *old_cfg = strop__malloc(nd->vt->cfg_size ? nd->vt->cfg_size : 1);
  if (!old_in || !old_cfg) {
    strop__free(old_in);
    strop__free(old_cfg);
    return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", nd->name);
  }
  memcpy(old_in, nd->in_shapes, (size_t)nd->n_in * sizeof *old_in);
  memcpy(old_cfg, nd->cfg, nd->vt->cfg_size);
  nd->params = NULL;
  nd->n_params = 0;
  memset(nd->slot, 0, sizeof nd->slot);
  for (int j = 0; j < nd->n_in; j++)
    nd->in_shapes[j] = nd->in[j] < 0 ? m->in_shape : m->nodes[nd->in[j]].out_shape;
  strop_status st = nd->vt->infer(nd);
  if (!st) st = check_policy(nd, old, n_old, policy);
  /* new parameters get memory before any old one is moved, so a failure undoes cleanly */
  int fresh = 0;
  for (int j = 0; !st && j < nd->n_params; j++) {
    strop__param *p = &nd->params[j];
    const strop__param *q = by_name(old, n_old, p->name);
    if (q && same_shape(p, q) && (q->data || q->idata || q->lowp.dtype)) continue;
    if (q) {
      p->trainable = q->trainable && !p->is_buffer;
      p->lr_mult = q->lr_mult;
      p->no_decay = q->no_decay;
    }
    if (p->is_int64) p->idata = strop__calloc(1, sizeof *p->idata);
    else if ((p->data = strop__malloc_aligned(p->numel * sizeof(float) + 1)))
      memset(p->data, 0, p->numel * sizeof(float));
    if (!p->data && !p->idata)
      st = strop__err(STROP_E_NOMEM, "layer '%s': out of memory for '%s'", nd->name, p->name);
    fresh++;
  }
  if (st) {
    strop__params_release(nd->params, nd->n_params);
    nd->params = old;
    nd->n_params = n_old;
    memcpy(nd->slot, old_slot, sizeof old_slot);
    nd->out_shape = old_out;
    memcpy(nd->in_shapes, old_in, (size_t)nd->n_in * sizeof *old_in);
    memcpy(nd->cfg, old_cfg, nd->vt->cfg_size);
  } else {
    for (int j = 0; j < nd->n_params; j++) {
      strop__param *p = &nd->params[j];
      strop__param *q = (strop__param *)by_name(old, n_old, p->name);
      if (!q || p->data || p->idata || p->lowp.dtype) continue;
      p->data = q->data;
      p->idata = q->idata;
      p->lowp = q->lowp;
      p->map = q->map; /* a borrowed weight stays borrowed */
      q->map = NULL;
      memset(&q->lowp, 0, sizeof q->lowp);
      p->grad = q->grad;
      p->grad_planned = q->grad_planned;
      p->grad_stale = q->grad_stale;
      p->grad_checked = 0;
      p->trainable = q->trainable;
      p->lr_mult = q->lr_mult;
      p->no_decay = q->no_decay;
      p->version = q->version;
      q->data = NULL;
      q->idata = NULL;
      q->grad = NULL;
      q->grad_planned = 0;
    }
    strop__params_release(old, n_old);
    if (n_new) *n_new = fresh;
  }
  strop__free(old_in);
  strop__free(old_cfg);
  return st;
}
