/* SPDX-License-Identifier: MIT */
/* strop — the surgery plan: edits recorded by name or glob, run in order on a clone of the
 * model (edits.c, lora.c) that shares the frozen weights, then swapped in as one transaction,
 * so a failing edit leaves the model exactly as it was. Plans of flag edits only run in place
 * with a backup of the flags. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "surgery/surgery_impl.h"

const char *const strop__edit_kind_names[] = {
    "freeze", "unfreeze", "replace", "insert_after", "insert_before",
    "remove", "truncate", "append",  "lora",         "param_group"};

/* ---- building the plan ---- */
strop_status strop_surgery_create(strop_model *model, strop_surgery **out) {
  static const char fn[] = "strop_surgery_create";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (!model->finalized)
    return strop__err(STROP_E_STATE,
                      "%s: the model is not finalized; build it with "
                      "strop_model_add and strop_model_finalize first",
                      fn);
  strop_surgery *s = strop__calloc(1, sizeof *s);
  if (!s) return STROP__NOMEM(fn);
  s->model = model;
  *out = s;
  return STROP_OK;
}

static void edit_free(strop__edit *e) {
  strop__free(e->target);
  strop__free(e->name);
  strop__free(e->type);
  strop__free(e->options);
}

void strop_surgery_free(strop_surgery *s) {
  if (!s) return;
  for (int i = 0; i < s->n; i++) edit_free(&s->e[i]);
  strop__free(s->e);
  strop__free(s);
}

strop_status strop_surgery_set_seed(strop_surgery *s, uint64_t seed) {
  if (!s) return strop__err(STROP_E_INVALID_ARG, "strop_surgery_set_seed: plan is NULL");
  s->seed = seed;
  s->seed_set = 1;
  return STROP_OK;
}

int64_t strop_surgery_num_edits(const strop_surgery *s) { return s ? s->n : -1; }

static char *dup_opt(const char *v, int *oom) {
  if (!v) return NULL;
  char *d = strop__strdup(v);
  if (!d) *oom = 1;
  return d;
}

/* Copies the template's strings and appends it. */
static strop_status add_edit(const char *fn, strop_surgery *s, const strop__edit *tpl) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 8;
    strop__edit *v = strop__realloc(s->e, (size_t)cap * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    s->e = v;
    s->cap = cap;
  }
  strop__edit e = *tpl;
  int oom = 0;
  e.target = dup_opt(tpl->target, &oom);
  e.name = dup_opt(tpl->name, &oom);
  e.type = dup_opt(tpl->type, &oom);
  e.options = dup_opt(tpl->options, &oom);
  if (oom) {
    edit_free(&e);
    return STROP__NOMEM(fn);
  }
  s->e[s->n++] = e;
  return STROP_OK;
}

static int empty(const char *x) { return !x || !*x; }

/* Parses options for a layer type now, so a typo fails when the edit is added. */
static strop_status check_layer(const char *fn, const char *name, const char *type,
                                const char *options) {
  if (empty(type)) return strop__err(STROP_E_INVALID_ARG, "%s: type is NULL or empty", fn);
  const strop__layer_vtable *vt = strop__layer_find(type);
  if (!vt) {
    char list[600];
    return strop__err(STROP_E_NOT_FOUND, "%s: unknown layer type '%s' (known: %s)", fn, type,
                      strop__layer_names(list, sizeof list));
  }
  strop__opts o;
  strop_status st = strop__opts_parse(fn, options, &o);
  if (st) return st;
  void *cfg = NULL;
  o.layer = name;
  st = strop__layer_parse(vt, &o, &cfg);
  strop__free(cfg);
  strop__opts_free(&o);
  if (st && strncmp(strop_last_error(), fn, strlen(fn)) != 0) strop__err_prefix("%s", fn);
  return st;
}

static strop_status check_plan(const char *fn, const strop_surgery *s) {
  if (!s) return strop__err(STROP_E_INVALID_ARG, "%s: plan is NULL", fn);
  return STROP_OK;
}

static strop_status add_freeze(const char *fn, strop_surgery *s, int kind, const char *glob,
                               int flags) {
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(glob)) return strop__err(STROP_E_INVALID_ARG, "%s: glob is NULL or empty", fn);
  if (flags & ~STROP_FREEZE_KEEP_BN_MODE)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, (unsigned)flags);
  strop__edit e = {0};
  e.kind = kind;
  e.target = (char *)glob;
  e.flags = flags;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_freeze(strop_surgery *s, const char *glob, int flags) {
  return add_freeze("strop_surgery_freeze", s, STROP__E_FREEZE, glob, flags);
}

strop_status strop_surgery_unfreeze(strop_surgery *s, const char *glob, int flags) {
  return add_freeze("strop_surgery_unfreeze", s, STROP__E_UNFREEZE, glob, flags);
}

strop_status strop_surgery_replace(strop_surgery *s, const char *node, const char *type,
                                   const char *options, uint64_t seed) {
  static const char fn[] = "strop_surgery_replace";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(node)) return strop__err(STROP_E_INVALID_ARG, "%s: node is NULL or empty", fn);
  if ((st = check_layer(fn, node, type, options))) return st;
  strop__edit e = {0};
  e.kind = STROP__E_REPLACE;
  e.target = (char *)node;
  e.type = (char *)type;
  e.options = (char *)options;
  e.seed = seed;
  return add_edit(fn, s, &e);
}

static strop_status add_insert(const char *fn, strop_surgery *s, int kind, const char *node,
                               const char *new_name, const char *type, const char *options) {
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (kind != STROP__E_APPEND && empty(node))
    return strop__err(STROP_E_INVALID_ARG, "%s: node is NULL or empty", fn);
  if (empty(new_name))
    return strop__err(STROP_E_INVALID_ARG, "%s: new_name is NULL or empty", fn);
  if ((st = check_layer(fn, new_name, type, options))) return st;
  strop__edit e = {0};
  e.kind = kind;
  e.target = (char *)node;
  e.name = (char *)new_name;
  e.type = (char *)type;
  e.options = (char *)options;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_insert_after(strop_surgery *s, const char *node, const char *new_name,
                                        const char *type, const char *options) {
  return add_insert("strop_surgery_insert_after", s, STROP__E_INSERT_AFTER, node, new_name, type,
                    options);
}

strop_status strop_surgery_insert_before(strop_surgery *s, const char *node, const char *new_name,
                                         const char *type, const char *options) {
  return add_insert("strop_surgery_insert_before", s, STROP__E_INSERT_BEFORE, node, new_name,
                    type, options);
}

strop_status strop_surgery_append(strop_surgery *s, const char *new_name, const char *type,
                                  const char *options) {
  return add_insert("strop_surgery_append", s, STROP__E_APPEND, NULL, new_name, type, options);
}

static strop_status add_node_edit(const char *fn, strop_surgery *s, int kind, const char *node) {
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(node)) return strop__err(STROP_E_INVALID_ARG, "%s: node is NULL or empty", fn);
  strop__edit e = {0};
  e.kind = kind;
  e.target = (char *)node;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_remove(strop_surgery *s, const char *node) {
  return add_node_edit("strop_surgery_remove", s, STROP__E_REMOVE, node);
}

strop_status strop_surgery_truncate(strop_surgery *s, const char *node) {
  return add_node_edit("strop_surgery_truncate", s, STROP__E_TRUNCATE, node);
}

strop_status strop_surgery_lora(strop_surgery *s, const char *glob, int64_t rank, float alpha,
                                float dropout) {
  static const char fn[] = "strop_surgery_lora";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(glob)) return strop__err(STROP_E_INVALID_ARG, "%s: glob is NULL or empty", fn);
  if (rank < 1 || rank > INT32_MAX)
    return strop__err(STROP_E_INVALID_ARG, "%s: rank must be in [1, %d], got %lld", fn, INT32_MAX,
                      (long long)rank);
  if (!(alpha > 0.0f) || !isfinite(alpha))
    return strop__err(STROP_E_INVALID_ARG, "%s: alpha must be > 0, got %g", fn, (double)alpha);
  if (!(dropout >= 0.0f && dropout < 1.0f))
    return strop__err(STROP_E_INVALID_ARG, "%s: dropout must be in [0, 1), got %g", fn,
                      (double)dropout);
  strop__edit e = {0};
  e.kind = STROP__E_LORA;
  e.target = (char *)glob;
  e.rank = rank;
  e.alpha = alpha;
  e.dropout = dropout;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_param_group(strop_surgery *s, const char *glob, float lr_mult,
                                       int no_decay) {
  static const char fn[] = "strop_surgery_param_group";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(glob)) return strop__err(STROP_E_INVALID_ARG, "%s: glob is NULL or empty", fn);
  if (isnan(lr_mult) || isinf(lr_mult))
    return strop__err(STROP_E_INVALID_ARG, "%s: lr_mult must be finite, got %g", fn,
                      (double)lr_mult);
  if (no_decay > 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: no_decay must be 0, 1 or negative (unchanged), "
                      "got %d",
                      fn, no_decay);
  if (lr_mult < 0.0f && no_decay < 0)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: nothing to change (lr_mult and no_decay are "
                      "both negative)",
                      fn);
  strop__edit e = {0};
  e.kind = STROP__E_PARAM_GROUP;
  e.target = (char *)glob;
  e.lr_mult = lr_mult;
  e.no_decay = no_decay;
  return add_edit(fn, s, &e);
}

static int is_structural(int kind) {
  return kind != STROP__E_FREEZE && kind != STROP__E_UNFREEZE && kind != STROP__E_PARAM_GROUP;
}
static strop_status wrap_error(const char *fn, strop_status st, const strop_surgery *s, int k) {
  char msg[900];
  snprintf(msg, sizeof msg, "%s", strop_last_error());
  const char *why = msg;
  static const char add[] = "strop_model_add: ";
  if (strncmp(why, add, sizeof add - 1) == 0) why += sizeof add - 1;
  const strop__edit *e = &s->e[k];
  return strop__err(st, "%s: edit %d of %d (%s '%s'): %s", fn, k + 1, s->n,
                    strop__edit_kind_names[e->kind], e->target ? e->target : e->name,
                    why[0] ? why : strop_status_str(st));
}

static void naux_release(void *p) {
  strop__naux *a = p;
  strop__free(a->pristine);
  a->pristine = NULL;
}

static int plan_flags_only(const strop_surgery *s) {
  for (int k = 0; k < s->n; k++)
    if (is_structural(s->e[k].kind)) return 0;
  return 1;
}

strop_status strop__surgery_run(const char *fn, const strop_surgery *s, strop__sbuf *log,
                                strop_model **out, int *flags_only) {
  *out = NULL;
  if (flags_only) *flags_only = plan_flags_only(s);
  if (!s->model->finalized)
    return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  strop_model *c = NULL;
  /* the frozen weights are shared with the clone, not copied: no edit writes them, and what
   * writes one (an unfreeze's storage pass, a head's values) copies it first */
  strop__model_unshare(s->model);
  strop_status st = strop__model_clone_shared(s->model, &c);
  if (st) {
    strop__err_prefix("%s", fn);
    return st;
  }
  strop__work w;
  memset(&w, 0, sizeof w);
  w.log = log;
  w.seed = s->seed_set ? s->seed : s->model->seed;
  st = strop__gedit_init(&w.g, c, sizeof(strop__naux), naux_release);
  if (st) strop__err_prefix("%s", fn);
  for (int k = 0; !st && k < s->n; k++) {
    w.k = k;
    if (log) strop__describe_edit_head(log, s, k);
    st = strop__edit_run(&w, &s->e[k]);
    if (st) {
      st = wrap_error(fn, st, s, k);
      if (log) strop__sbuf_printf(log, "would fail: %s\n", strop_last_error());
    }
  }
  if (!st && (st = strop__model_reindex(c))) strop__err_prefix("%s", fn);
  if (!st && (st = strop__mts_prune(c))) strop__err_prefix("%s", fn);
  if (!st && log) strop__describe_diff(log, s->model, &w);
  strop__gedit_free(&w.g);
  if (st) {
    strop__surgery_discard(s->model, c);
    return st;
  }
  *out = c;
  return STROP_OK;
}

void strop__surgery_discard(strop_model *model, strop_model *clone) {
  strop_model_free(clone);
  strop__model_unshare(model);
}

void strop__model_swap_in(strop_model *model, strop_model *clone) {
  strop_model tmp = *model;
  *model = *clone;
  *clone = tmp;
  strop_model_free(clone);
  strop__model_unshare(model); /* the old contents held the other references */
}

static strop_status apply_flags_in_place(const char *fn, strop_surgery *s) {
  strop_model *m = s->model;
  /* a backup of the flags only (a clone would copy every weight) */
  size_t np = (size_t)(m->n_params ? m->n_params : 1), nn = (size_t)(m->n_nodes ? m->n_nodes : 1);
  int *tr = strop__malloc(np * sizeof *tr), *nod = strop__malloc(np * sizeof *nod);
  float *lr = strop__malloc(np * sizeof *lr);
  int *fs = strop__malloc(nn * sizeof *fs);
  if (!tr || !nod || !lr || !fs) {
    strop__free(tr);
    strop__free(nod);
    strop__free(lr);
    strop__free(fs);
    return STROP__NOMEM(fn);
  }
  for (int i = 0; i < m->n_params; i++) {
    tr[i] = m->params[i]->trainable;
    nod[i] = m->params[i]->no_decay;
    lr[i] = m->params[i]->lr_mult;
  }
  for (int i = 0; i < m->n_nodes; i++) fs[i] = m->nodes[i].frozen_stats;
  strop__work w;
  memset(&w, 0, sizeof w);
  strop_status st = strop__gedit_init(&w.g, m, 0, NULL);
  for (int k = 0; !st && k < s->n; k++) {
    w.k = k;
    st = strop__edit_run(&w, &s->e[k]);
    if (st) st = wrap_error(fn, st, s, k);
  }
  strop__gedit_free(&w.g);
  /* weights frozen or unfrozen take the model's frozen dtype (or go back to FP32) */
  if (!st) st = strop__model_store(fn, m, m->frozen_dtype);
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (st) {
      p->trainable = tr[i];
      p->no_decay = nod[i];
      p->lr_mult = lr[i];
    } else if (!p->trainable && p->grad) {
      strop__param_grad_free(p);
    }
  }
  for (int i = 0; st && i < m->n_nodes; i++) m->nodes[i].frozen_stats = fs[i];
  strop__free(tr);
  strop__free(nod);
  strop__free(lr);
  strop__free(fs);
  return st;
}

strop_status strop_surgery_apply(strop_surgery *s) {
  static const char fn[] = "strop_surgery_apply";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (!s->model->finalized)
    return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  if (plan_flags_only(s)) return apply_flags_in_place(fn, s);
  strop_model *c = NULL;
  if ((st = strop__surgery_run(fn, s, NULL, &c, NULL))) return st;
  if ((st = strop__model_store(fn, c, c->frozen_dtype))) {
    strop__surgery_discard(s->model, c);
    return st;
  }
  strop__model_swap_in(s->model, c);
  return STROP_OK;
}

strop_status strop_surgery_validate(const strop_surgery *s) {
  static const char fn[] = "strop_surgery_validate";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  strop_model *c = NULL;
  if ((st = strop__surgery_run(fn, s, NULL, &c, NULL))) return st;
  strop__surgery_discard(s->model, c);
  return STROP_OK;
}

int64_t strop_surgery_describe(const strop_surgery *s, char *buf, size_t cap) {
  static const char fn[] = "strop_surgery_describe";
  if (!s || (!buf && cap)) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, s ? "buf" : "plan");
    return -1;
  }
  strop__sbuf t;
  memset(&t, 0, sizeof t);
  strop__sbuf_printf(&t, "surgery plan of %d edit%s on a model of %d nodes\n", s->n,
                     s->n == 1 ? "" : "s", s->model->n_nodes);
  strop_model *c = NULL;
  strop_status st = strop__surgery_run(fn, s, &t, &c, NULL);
  if (c) strop__surgery_discard(s->model, c);
  if (st == STROP_E_NOMEM) {
    strop__sbuf_free(&t);
    return -1;
  }
  char err[1024];
  snprintf(err, sizeof err, "%s", strop_last_error());
  int64_t n = strop__sbuf_out(fn, &t, buf, cap);
  strop__sbuf_free(&t);
  if (n >= 0 && st) strop__err(st, "%s", err); /* keep the failing edit's sentence */
  return n;
}

/* ---- single-call conveniences ---- */
static strop_status one_edit(const char *fn, strop_model *model, const char *glob, int freeze) {
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  strop_surgery *s = NULL;
  strop_status st = strop_surgery_create(model, &s);
  if (!st) st = freeze ? strop_surgery_freeze(s, glob, 0) : strop_surgery_unfreeze(s, glob, 0);
  if (!st) st = strop_surgery_apply(s);
  strop_surgery_free(s);
  if (st) {
    char msg[900];
    snprintf(msg, sizeof msg, "%s", strop_last_error());
    const char *p = strchr(msg, ':');
    const char *why = msg;
    /* "strop_surgery_apply: edit 1 of 1 (freeze 'x'): why" -> "fn: why" */
    if (p && strncmp(msg, "strop_surgery_", 14) == 0) {
      const char *q = strstr(msg, "): ");
      why = q ? q + 3 : p + 2;
    }
    strop__err(st, "%s: %s", fn, why);
  }
  return st;
}

strop_status strop_model_freeze(strop_model *model, const char *glob) {
  return one_edit("strop_model_freeze", model, glob, 1);
}

strop_status strop_model_unfreeze(strop_model *model, const char *glob) {
  return one_edit("strop_model_unfreeze", model, glob, 0);
}

int strop_model_param_trainable(const strop_model *model, const char *name) {
  if (!model || !name) return -1;
  for (int i = 0; i < model->n_params; i++)
    if (strcmp(model->params[i]->name, name) == 0)
      return model->params[i]->trainable && !model->params[i]->is_buffer;
  return -1;
}
