/* SPDX-License-Identifier: MIT */
/* strop — the LoRA edit of a surgery plan: adapters on every node or part the glob names, as
 * each layer type's LoRA description says (a linear becomes a lora_linear of the same options,
 * an embedding named exactly a lora_embedding; an attention node gets adapters on the
 * projections named "<node>.q_proj" ...). */
#include <stdio.h>
#include <string.h>

#include "surgery/surgery_impl.h"

/* A whole-node adapter: node i is re-typed as its type's adapter type, keeping name, inputs
 * and base options, with the edit's rank, alpha and dropout. */
static strop_status add_whole(strop__work *w, const strop__edit *e, int i, uint64_t stream) {
  strop_model *m = w->g.m;
  strop__node *nd = &m->nodes[i];
  strop__naux *a = strop__work_aux(w, i);
  const strop__layer_vtable *vt = strop__layer_find(nd->vt->lora->adapter_type);
  if (!vt)
    return strop__err(STROP_E_INTERNAL, "layer type '%s' is not registered",
                      nd->vt->lora->adapter_type);
  char r[32], al[40], dr[40];
  snprintf(r, sizeof r, "%lld", (long long)e->rank);
  snprintf(al, sizeof al, "%.9g", (double)e->alpha);
  snprintf(dr, sizeof dr, "%.9g", (double)e->dropout);
  /* a node this plan created keeps re-inferring its input size, as it did before (a type
   * whose sizes are all given, an embedding, has no such option) */
  int infers = 0;
  for (const strop__optdef *d = vt->options; d && d->name && !infers; d++)
    infers = !strcmp(d->name, "in_features");
  const char *over[] = {
      "r",    r,   "alpha", al, "dropout", dr, a->fresh && infers ? "in_features" : NULL,
      "auto", NULL};
  strop_status st = strop__gedit_retype(m, i, vt, over);
  if (st) return st;
  if (a->fresh) {
    /* a fresh node re-initialises from its own seed: the adapter type's init draws the base
     * weights as the base type's does, then the adapters */
    void *pr = strop__malloc(vt->cfg_size);
    if (!pr) return strop__err(STROP_E_NOMEM, "out of memory");
    memcpy(pr, nd->cfg, vt->cfg_size);
    strop__free(a->pristine);
    a->pristine = pr;
  } else {
    a->seed = w->seed;
    a->stream = stream;
  }
  a->lora_mask = 1;
  a->lora_new = a->dirty = 1;
  return STROP_OK;
}

/* Adapters on the parts in mask of node i (its cfg edited in place; a node this plan created
 * gets them in its pristine cfg too, as it re-infers from that). */
static strop_status add_parts(strop__work *w, const strop__edit *e, int i, int mask,
                              uint64_t stream) {
  strop__node *nd = &w->g.m->nodes[i];
  strop__naux *a = strop__work_aux(w, i);
  const strop__lora_ops *lo = nd->vt->lora;
  if (e->dropout > 0.0f)
    return strop__err(STROP_E_UNSUPPORTED,
                      "node '%s' (%s): LoRA dropout on its projections is "
                      "not supported (dropout %g; use 0)",
                      nd->name, nd->vt->type, (double)e->dropout);
  if (lo->merged && lo->merged(nd))
    return strop__err(STROP_E_STATE,
                      "node '%s': its adapters are merged; unmerge them before "
                      "adding more",
                      nd->name);
  for (int p = 0; lo->parts[p]; p++) {
    if (!(mask & (1 << p))) continue;
    lo->set(nd->cfg, p, e->rank, e->alpha);
    if (a->fresh && a->pristine) lo->set(a->pristine, p, e->rank, e->alpha);
  }
  if (!a->fresh) {
    a->seed = w->seed;
    a->stream = stream;
  }
  a->lora_mask |= mask;
  a->lora_new = a->dirty = 1;
  return STROP_OK;
}

/* Which parts of node nd the pattern names as "<node>.<part>" (bit i), not counting those that
 * already have adapters (*already set when one of them matched). */
static int part_targets(const strop__node *nd, const char *pat, int *already) {
  const strop__lora_ops *lo = nd->vt->lora;
  char full[512];
  int mask = 0;
  if (!lo || !lo->parts) return 0;
  for (int p = 0; lo->parts[p]; p++) {
    snprintf(full, sizeof full, "%s.%s", nd->name, lo->parts[p]);
    if (!strop__glob_match(pat, full)) continue;
    if (lo->rank(nd, p, NULL, NULL)) {
      if (already) *already = 1;
      continue;
    }
    mask |= 1 << p;
  }
  return mask;
}

/* 1 when a whole-node adapter can be added to nd (a linear, an embedding), 0 otherwise. */
static int takes_whole(const strop__node *nd) {
  return nd->vt->lora && !nd->vt->lora->parts && nd->vt->lora->adapter_type;
}

strop_status strop__edit_lora(strop__work *w, const strop__edit *e) {
  strop_model *m = w->g.m;
  strop_status st;
  int exact_part = 0; /* an exact name of a part ("<node>.q_proj") */
  if (!strop__glob_is_pattern(e->target)) {
    for (int i = 0; i < m->n_nodes && !exact_part; i++) {
      int already = 0;
      int mask = part_targets(&m->nodes[i], e->target, &already);
      if (already)
        return strop__err(STROP_E_INVALID_ARG, "'%s' already has LoRA adapters", e->target);
      exact_part = mask != 0;
    }
  }
  if (!exact_part && !strop__glob_is_pattern(e->target)) {
    int idx;
    if ((st = strop__work_resolve_one(m, e->target, &idx))) return st;
    const strop__node *nd = &m->nodes[idx];
    if (nd->vt->lora && !nd->vt->lora->parts && !nd->vt->lora->adapter_type)
      return strop__err(STROP_E_INVALID_ARG, "node '%s' already has LoRA adapters", e->target);
    if (!takes_whole(nd))
      return strop__err(STROP_E_INVALID_ARG,
                        "node '%s' is %s; LoRA applies to linear nodes, embedding nodes "
                        "and attention projections ('<node>.q_proj', k_proj, v_proj, out_proj)",
                        e->target, nd->vt->type);
  }
  int hits = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    uint64_t stream = ((uint64_t)(w->k + 1) << 32) | (uint64_t)(hits + 2);
    int mask = part_targets(nd, e->target, NULL);
    if (mask) {
      if ((st = add_parts(w, e, i, mask, stream))) return st;
      for (int p = 0; w->log && nd->vt->lora->parts[p]; p++)
        if (mask & (1 << p))
          strop__sbuf_printf(w->log, "%s'%s.%s'", hits ? ", " : "adapters on ", nd->name,
                             nd->vt->lora->parts[p]);
      hits++;
      continue;
    }
    if (!takes_whole(nd) || !strop__glob_match(e->target, nd->name)) continue;
    if (nd->vt->lora->exact_only && strcmp(e->target, nd->name) != 0) continue;
    if ((st = add_whole(w, e, i, stream))) return st;
    if (w->log) strop__sbuf_printf(w->log, "%s'%s'", hits ? ", " : "adapters on ", nd->name);
    hits++;
  }
  if (!hits)
    return strop__err(STROP_E_NOT_FOUND,
                      "no linear node matches '%s' (nor an attention "
                      "projection '<node>.q_proj' ..., nor an embedding node of that exact "
                      "name)",
                      e->target);
  if ((st = strop__work_reinfer(w))) return st;
  if (w->log)
    strop__sbuf_printf(w->log,
                       " (r=%lld, alpha=%g, dropout=%g; base frozen, lora_A/lora_B "
                       "trainable)\n",
                       (long long)e->rank, (double)e->alpha, (double)e->dropout);
  return STROP_OK;
}
