/* SPDX-License-Identifier: MIT */
/* strop — the structural and flag edits of a surgery plan on its working copy: freeze and
 * unfreeze, parameter groups, replace, insert, append, remove and truncate. Nodes change
 * through graph/edit.c; this file decides what each edit means and keeps each node's seed. */
#include <stdio.h>
#include <string.h>

#include "surgery/surgery_impl.h"

/* ---- re-inference on the working copy ---- */

/* Re-infers node i, carrying parameter values over by name: nodes the plan did not create must
 * keep every parameter with its shape (a LoRA conversion may add adapters). New parameters
 * are initialised from the node's seed. */
static strop_status infer_node(strop__work *w, int i) {
  strop_model *m = w->g.m;
  strop__node *nd = &m->nodes[i];
  strop__naux *a = strop__work_aux(w, i);
  if (a->fresh && a->pristine) memcpy(nd->cfg, a->pristine, nd->vt->cfg_size);
  const int policy = a->fresh      ? STROP__REINFER_ANY
                     : a->lora_new ? STROP__REINFER_KEEP | STROP__REINFER_ADAPTERS
                                   : STROP__REINFER_KEEP;
  int n_new = 0;
  strop_status st = strop__gedit_reinfer(m, i, policy, &n_new);
  if (st) return st;
  strop__rng rng;
  strop__rng_seed(&rng, a->seed, a->stream);
  if (n_new && a->fresh && nd->vt->init) nd->vt->init(nd, &rng);
  if (a->lora_new) {
    const strop__lora_ops *lo = nd->vt->lora;
    if (n_new && !a->fresh && lo && lo->init_adapters) lo->init_adapters(nd, a->lora_mask, &rng);
    a->lora_mask = 0;
    for (int j = 0; j < nd->n_params; j++)
      if (!nd->params[j].is_adapter) nd->params[j].trainable = 0;
    a->lora_new = 0;
  }
  a->dirty = 0;
  return STROP_OK;
}

strop_status strop__work_reinfer(strop__work *w) {
  strop_model *m = w->g.m;
  strop_status st = strop__gedit_relink(m);
  if (st) return st;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    int changed = strop__work_aux(w, i)->dirty;
    for (int j = 0; j < nd->n_in && !changed; j++) {
      const strop__shape *sh = nd->in[j] < 0 ? &m->in_shape : &m->nodes[nd->in[j]].out_shape;
      changed = !strop__shape_eq(sh, &nd->in_shapes[j]);
    }
    if (changed && (st = infer_node(w, i))) return st;
  }
  return STROP_OK;
}

/* ---- resolving names ---- */
strop_status strop__work_resolve_one(strop_model *m, const char *pat, int *idx) {
  if (!strop__glob_is_pattern(pat)) {
    *idx = strop__model_node_lookup(m, pat);
    if (*idx < 0) return strop__err(STROP_E_NOT_FOUND, "no node named '%s'", pat);
    return STROP_OK;
  }
  int hits = 0;
  char list[256] = "";
  size_t l = 0;
  for (int i = 0; i < m->n_nodes; i++)
    if (strop__glob_match(pat, m->nodes[i].name)) {
      if (!hits) *idx = i;
      if (l < sizeof list - 40)
        l += (size_t)snprintf(list + l, sizeof list - l, "%s'%s'", hits ? ", " : "",
                              m->nodes[i].name);
      hits++;
    }
  if (!hits) return strop__err(STROP_E_NOT_FOUND, "no node matches '%s'", pat);
  if (hits > 1)
    return strop__err(STROP_E_INVALID_ARG, "'%s' matches %d nodes (%s); this edit takes one", pat,
                      hits, list);
  return STROP_OK;
}

int64_t strop__node_count(const strop__node *n, int trainable_only) {
  int64_t c = 0;
  for (int j = 0; j < n->n_params; j++) /* a tied slot counts with its owner */
    if (!n->params[j].tied && !n->params[j].is_buffer &&
        (!trainable_only || n->params[j].trainable))
      c += (int64_t)n->params[j].numel;
  return c;
}

/* ---- flag edits ---- */
static strop_status ed_flags(strop__work *w, const strop__edit *e) {
  strop_model *m = w->g.m;
  const char *g = e->target;
  int exact = !strop__glob_is_pattern(g);
  int64_t tensors = 0, values = 0, changed = 0, bn = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    int node_hit = strop__glob_match(g, nd->name), any = 0;
    for (int j = 0; j < nd->n_params; j++) {
      /* a tied slot is its owner's tensor: the flags are the owner's (as in PyTorch, where
       * both modules hold one Parameter) */
      strop__param *p = strop__param_owner(&nd->params[j]);
      int hit = node_hit || strop__glob_match(g, nd->params[j].name);
      if (!hit) continue;
      if (p->is_buffer) {
        if (exact && strcmp(p->name, g) == 0)
          return strop__err(STROP_E_INVALID_ARG,
                            "'%s' is a buffer (%s statistics), not a "
                            "trainable parameter",
                            g, nd->vt->type);
        continue;
      }
      any = 1;
      tensors++;
      values += (int64_t)p->numel;
      if (e->kind == STROP__E_PARAM_GROUP) {
        if (e->lr_mult >= 0.0f) p->lr_mult = e->lr_mult;
        if (e->no_decay >= 0) p->no_decay = e->no_decay;
        continue;
      }
      int tr = e->kind == STROP__E_UNFREEZE;
      changed += p->trainable != tr;
      if (p->trainable != tr) p->version++; /* it may have moved while it trained */
      p->trainable = tr;
    }
    if (e->kind == STROP__E_PARAM_GROUP || !(nd->vt->flags & STROP__LAYER_BATCHSTATS) ||
        (!node_hit && !any) || (e->flags & STROP_FREEZE_KEEP_BN_MODE))
      continue;
    int all_frozen = 1;
    for (int j = 0; j < nd->n_params; j++)
      if (!nd->params[j].is_buffer && nd->params[j].trainable) all_frozen = 0;
    if (e->kind == STROP__E_FREEZE && all_frozen) {
      nd->frozen_stats = 1;
      bn++;
    } else if (e->kind == STROP__E_UNFREEZE) {
      nd->frozen_stats = 0;
      bn++;
    }
  }
  if (!tensors && !bn) return strop__err(STROP_E_NOT_FOUND, "no parameter matches '%s'", g);
  if (!w->log) return STROP_OK;
  if (e->kind == STROP__E_PARAM_GROUP) {
    strop__sbuf_printf(w->log, "%lld parameter tensors (%lld values):", (long long)tensors,
                       (long long)values);
    if (e->lr_mult >= 0.0f) strop__sbuf_printf(w->log, " lr_mult %g", (double)e->lr_mult);
    if (e->no_decay >= 0)
      strop__sbuf_printf(w->log, "%s weight decay %s", e->lr_mult >= 0.0f ? "," : "",
                         e->no_decay ? "off" : "on");
    strop__sbuf_printf(w->log, "\n");
    return STROP_OK;
  }
  const char *verb = e->kind == STROP__E_FREEZE ? "frozen" : "trainable";
  strop__sbuf_printf(w->log, "%lld parameter tensors (%lld values) %s, %lld of them changed",
                     (long long)tensors, (long long)values, verb, (long long)changed);
  if (bn)
    strop__sbuf_printf(w->log, "; %lld BatchNorm node%s %s inference mode", (long long)bn,
                       bn == 1 ? "" : "s", e->kind == STROP__E_FREEZE ? "kept in" : "out of");
  strop__sbuf_printf(w->log, "\n");
  return STROP_OK;
}

/* ---- structural edits ---- */

/* Adds e->type/e->options named `name` reading ins at the end: one node, or a composite's
 * parts. They are fresh: parameters from (seed, stream), part j on its own stream. */
static strop_status new_nodes(strop__work *w, const strop__edit *e, const char *name,
                              const char *const *ins, int n_in, uint64_t seed, uint64_t stream,
                              int *count) {
  strop_model *m = w->g.m;
  strop__opts o;
  strop_status st = strop__opts_parse("strop_model_add", e->options, &o);
  if (!st) st = strop__gedit_add(&w->g, name, e->type, &o, ins, n_in, count);
  strop__opts_free(&o);
  if (st) return st;
  for (int j = 0; j < *count; j++) {
    const int i = m->n_nodes - *count + j;
    strop__node *nd = &m->nodes[i];
    strop__naux *a = strop__work_aux(w, i);
    a->fresh = a->dirty = 1;
    a->seed = seed;
    a->stream = stream ^ ((uint64_t)j << 20);
    a->pristine = strop__malloc(nd->vt->cfg_size ? nd->vt->cfg_size : 1);
    if (!a->pristine) return strop__err(STROP_E_NOMEM, "out of memory");
    memcpy(a->pristine, nd->cfg, nd->vt->cfg_size);
  }
  return STROP_OK;
}

static strop_status ed_replace(strop__work *w, const strop__edit *e) {
  strop_model *m = w->g.m;
  int idx, count = 0;
  strop_status st = strop__work_resolve_one(m, e->target, &idx);
  if (st) return st;
  char oldtype[64], b[96];
  snprintf(oldtype, sizeof oldtype, "%s", m->nodes[idx].vt->type);
  strop__shape oldshape = m->nodes[idx].out_shape;
  int64_t oldcount = strop__node_count(&m->nodes[idx], 0);
  /* a plain node takes the old one's name (hidden while adding), so its consumers need no
   * rewiring; a composite's parts are "<name>.<part>" and the consumers read its last part */
  char *name = m->nodes[idx].name;
  char *saved = strop__strdup(name);
  if (!saved) return strop__err(STROP_E_NOMEM, "out of memory");
  const strop__layer_vtable *vt = strop__layer_find(e->type);
  const int composite = vt && vt->expand;
  name[0] = '\0';
  st = new_nodes(w, e, saved, (const char *const *)m->nodes[idx].in_names, m->nodes[idx].n_in,
                 e->seed, 0x5eed, &count);
  memcpy(name, saved, strlen(saved) + 1);
  strop__model_names_stale(m); /* the names index may have taken the node as nameless */
  if (!st) {
    strop__gedit_move(&w->g, m->n_nodes - count, count, idx);
    if (composite) st = strop__gedit_rewire(m, saved, m->nodes[idx + count - 1].name, idx, count);
  }
  strop__free(saved);
  if (st) return st;
  strop__gedit_delete(&w->g, idx + count);
  if ((st = strop__work_reinfer(w))) return st;
  /* a replaced node is not the base model's any more: adapter files carry it whole */
  for (int j = idx; j < idx + count && !st; j++)
    if (m->nodes[j].n_params > 0) st = strop__mts_add(m, m->nodes[j].name);
  if (st) return st;
  if (w->log) {
    strop__sbuf_printf(w->log, "was %s output %s, %lld parameters; now ", oldtype,
                       strop__shape_str(&oldshape, b, sizeof b), (long long)oldcount);
    strop__describe_node(w->log, m, idx + count - 1);
    strop__sbuf_printf(w->log, ", initialised from seed %llu\n", (unsigned long long)e->seed);
  }
  return STROP_OK;
}

static strop_status ed_insert(strop__work *w, const strop__edit *e) {
  strop_model *m = w->g.m;
  int idx = m->n_nodes - 1, count = 0;
  strop_status st = STROP_OK;
  if (e->kind != STROP__E_APPEND && (st = strop__work_resolve_one(m, e->target, &idx))) return st;
  if (e->kind == STROP__E_INSERT_BEFORE && m->nodes[idx].n_in != 1)
    return strop__err(STROP_E_INVALID_ARG, "node '%s' has %d inputs; insert_before needs one",
                      m->nodes[idx].name, m->nodes[idx].n_in);
  /* names of nodes stay valid while the node array grows (they are separate allocations) */
  const char *x = m->nodes[idx].name;
  const char *src[1] = {e->kind == STROP__E_INSERT_BEFORE ? m->nodes[idx].in_names[0] : x};
  uint64_t stream = ((uint64_t)(w->k + 1) << 32) | 0x1u;
  if ((st = new_nodes(w, e, e->name, src, 1, w->seed, stream, &count))) return st;
  const char *last = m->nodes[m->n_nodes - 1].name;
  int pos;
  if (e->kind == STROP__E_INSERT_BEFORE) {
    pos = idx;
    strop__gedit_move(&w->g, m->n_nodes - count, count, pos);
    strop__node *target = &m->nodes[idx + count];
    char *d = strop__strdup(m->nodes[pos + count - 1].name);
    if (!d) return strop__err(STROP_E_NOMEM, "out of memory");
    strop__free(target->in_names[0]);
    target->in_names[0] = d;
  } else {
    pos = e->kind == STROP__E_APPEND ? m->n_nodes - count : idx + 1;
    strop__gedit_move(&w->g, m->n_nodes - count, count, pos);
    /* consumers of the target read the new nodes' last output instead (but the new nodes) */
    if (e->kind == STROP__E_INSERT_AFTER &&
        (st = strop__gedit_rewire(m, m->nodes[idx].name, last, pos, count)))
      return st;
  }
  if ((st = strop__work_reinfer(w))) return st;
  if (w->log) {
    const int end = pos + count - 1;
    strop__sbuf_printf(w->log, "new ");
    strop__describe_node(w->log, m, end);
    if (count > 1) strop__sbuf_printf(w->log, " (the last of %d nodes)", count);
    strop__sbuf_printf(w->log, "%s\n", end == m->n_nodes - 1 ? ", now the output" : "");
  }
  return STROP_OK;
}

static strop_status ed_remove(strop__work *w, const strop__edit *e) {
  strop_model *m = w->g.m;
  int exact = !strop__glob_is_pattern(e->target), hits = 0;
  strop_status st;
  if (exact) {
    int idx;
    if ((st = strop__work_resolve_one(m, e->target, &idx))) return st;
  }
  /* from the last match down, so earlier indices stay valid */
  for (int i = m->n_nodes - 1; i >= 0; i--) {
    strop__node *nd = &m->nodes[i];
    if (!strop__glob_match(e->target, nd->name)) continue;
    hits++;
    char said[300];
    snprintf(said, sizeof said, "%s'%s' (%s)", hits > 1 ? ", " : "removed ", nd->name,
             nd->vt->type);
    if ((st = strop__gedit_remove(&w->g, i, 0))) return st;
    if (w->log) strop__sbuf_printf(w->log, "%s", said);
  }
  if (!hits) return strop__err(STROP_E_NOT_FOUND, "no node matches '%s'", e->target);
  if ((st = strop__work_reinfer(w))) return st;
  if (w->log) strop__sbuf_printf(w->log, "; consumers reconnected to their inputs\n");
  return STROP_OK;
}

static strop_status ed_truncate(strop__work *w, const strop__edit *e) {
  strop_model *m = w->g.m;
  int idx;
  strop_status st = strop__work_resolve_one(m, e->target, &idx);
  if (st) return st;
  int *keep = strop__calloc((size_t)m->n_nodes, sizeof *keep);
  if (!keep) return strop__err(STROP_E_NOMEM, "out of memory");
  keep[idx] = 1;
  for (int i = idx; i >= 0; i--)
    for (int j = 0; keep[i] && j < m->nodes[i].n_in; j++)
      if (m->nodes[i].in[j] >= 0) keep[m->nodes[i].in[j]] = 1;
  int dropped = 0;
  for (int i = m->n_nodes - 1; i >= 0; i--) {
    if (keep[i]) continue;
    if (w->log)
      strop__sbuf_printf(w->log, "%s'%s'", dropped ? ", " : "dropped ", m->nodes[i].name);
    dropped++;
    strop__gedit_delete(&w->g, i);
  }
  strop__free(keep);
  if ((st = strop__work_reinfer(w))) return st;
  if (w->log) {
    strop__sbuf_printf(w->log, "%s; output is now ", dropped ? "" : "nothing dropped");
    strop__describe_node(w->log, m, m->n_nodes - 1);
    strop__sbuf_printf(w->log, "\n");
  }
  return STROP_OK;
}

strop_status strop__edit_run(strop__work *w, const strop__edit *e) {
  switch (e->kind) {
    case STROP__E_FREEZE:
    case STROP__E_UNFREEZE:
    case STROP__E_PARAM_GROUP: return ed_flags(w, e);
    case STROP__E_REPLACE: return ed_replace(w, e);
    case STROP__E_INSERT_AFTER:
    case STROP__E_INSERT_BEFORE:
    case STROP__E_APPEND: return ed_insert(w, e);
    case STROP__E_REMOVE: return ed_remove(w, e);
    case STROP__E_TRUNCATE: return ed_truncate(w, e);
    case STROP__E_LORA: return strop__edit_lora(w, e);
    default: return strop__err(STROP_E_INTERNAL, "unknown edit kind %d", e->kind);
  }
}
