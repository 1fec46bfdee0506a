/* strop — the surgery plan: edits recorded by name or glob, run in order on a clone of the
 * model (shapes re-inferred after each structural edit, weights carried over by name), then
 * swapped in as one transaction, so a failing edit leaves the model exactly as it was. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layers/lora.h"
#include "surgery/surgery_impl.h"

enum {
  E_FREEZE, E_UNFREEZE, E_REPLACE, E_INSERT_AFTER, E_INSERT_BEFORE, E_REMOVE, E_TRUNCATE,
  E_APPEND, E_LORA, E_PARAM_GROUP
};
static const char *const kind_names[] = {"freeze", "unfreeze", "replace", "insert_after",
                                         "insert_before", "remove", "truncate", "append",
                                         "lora", "param_group"};

typedef struct edit {
  int kind;
  char *target;  /* node or glob; NULL for append */
  char *name;    /* new node's name (insert, append) */
  char *type;
  char *options;
  uint64_t seed; /* replace */
  int flags;
  int64_t rank;
  float alpha, dropout, lr_mult;
  int no_decay;
} edit;

struct strop_surgery {
  strop_model *model;
  edit *e;
  int n, cap;
  uint64_t seed;
  int seed_set;
};

/* ---- building the plan ---- */
strop_status strop_surgery_create(strop_model *model, strop_surgery **out) {
  static const char fn[] = "strop_surgery_create";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (!model->finalized)
    return strop__err(STROP_E_STATE, "%s: the model is not finalized; build it with "
                      "strop_model_add and strop_model_finalize first", fn);
  strop_surgery *s = strop__calloc(1, sizeof *s);
  if (!s) return STROP__NOMEM(fn);
  s->model = model;
  *out = s;
  return STROP_OK;
}

static void edit_free(edit *e) {
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
static strop_status add_edit(const char *fn, strop_surgery *s, const edit *tpl) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 8;
    edit *v = strop__realloc(s->e, (size_t)cap * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    s->e = v;
    s->cap = cap;
  }
  edit e = *tpl;
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
    char list[512] = "";
    for (int i = 0, l = 0; i < strop__layer_count() && l < 480; i++)
      l += snprintf(list + l, sizeof list - (size_t)l, "%s%s", i ? ", " : "",
                    strop__layer_at(i)->type);
    return strop__err(STROP_E_NOT_FOUND, "%s: unknown layer type '%s' (known: %s)", fn, type,
                      list);
  }
  strop__opts o;
  strop_status st = strop__opts_parse(fn, options, &o);
  if (st) return st;
  void *cfg = strop__calloc(1, vt->cfg_size ? vt->cfg_size : 1);
  if (!cfg) {
    strop__opts_free(&o);
    return STROP__NOMEM(fn);
  }
  o.layer = name;
  o.type = vt->type;
  st = vt->parse(cfg, &o);
  for (int i = 0; !st && i < o.n; i++)
    if (!o.v[i].used)
      st = strop__opt_error(&o, NULL, "unknown option '%s'", o.v[i].key);
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
  edit e = {0};
  e.kind = kind;
  e.target = (char *)glob;
  e.flags = flags;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_freeze(strop_surgery *s, const char *glob, int flags) {
  return add_freeze("strop_surgery_freeze", s, E_FREEZE, glob, flags);
}

strop_status strop_surgery_unfreeze(strop_surgery *s, const char *glob, int flags) {
  return add_freeze("strop_surgery_unfreeze", s, E_UNFREEZE, glob, flags);
}

strop_status strop_surgery_replace(strop_surgery *s, const char *node, const char *type,
                                   const char *options, uint64_t seed) {
  static const char fn[] = "strop_surgery_replace";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(node)) return strop__err(STROP_E_INVALID_ARG, "%s: node is NULL or empty", fn);
  if ((st = check_layer(fn, node, type, options))) return st;
  edit e = {0};
  e.kind = E_REPLACE;
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
  if (kind != E_APPEND && empty(node))
    return strop__err(STROP_E_INVALID_ARG, "%s: node is NULL or empty", fn);
  if (empty(new_name)) return strop__err(STROP_E_INVALID_ARG, "%s: new_name is NULL or empty", fn);
  if ((st = check_layer(fn, new_name, type, options))) return st;
  edit e = {0};
  e.kind = kind;
  e.target = (char *)node;
  e.name = (char *)new_name;
  e.type = (char *)type;
  e.options = (char *)options;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_insert_after(strop_surgery *s, const char *node, const char *new_name,
                                        const char *type, const char *options) {
  return add_insert("strop_surgery_insert_after", s, E_INSERT_AFTER, node, new_name, type,
                    options);
}

strop_status strop_surgery_insert_before(strop_surgery *s, const char *node,
                                         const char *new_name, const char *type,
                                         const char *options) {
  return add_insert("strop_surgery_insert_before", s, E_INSERT_BEFORE, node, new_name, type,
                    options);
}

strop_status strop_surgery_append(strop_surgery *s, const char *new_name, const char *type,
                                  const char *options) {
  return add_insert("strop_surgery_append", s, E_APPEND, NULL, new_name, type, options);
}

static strop_status add_node_edit(const char *fn, strop_surgery *s, int kind, const char *node) {
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(node)) return strop__err(STROP_E_INVALID_ARG, "%s: node is NULL or empty", fn);
  edit e = {0};
  e.kind = kind;
  e.target = (char *)node;
  return add_edit(fn, s, &e);
}

strop_status strop_surgery_remove(strop_surgery *s, const char *node) {
  return add_node_edit("strop_surgery_remove", s, E_REMOVE, node);
}

strop_status strop_surgery_truncate(strop_surgery *s, const char *node) {
  return add_node_edit("strop_surgery_truncate", s, E_TRUNCATE, node);
}

strop_status strop_surgery_lora(strop_surgery *s, const char *glob, int64_t rank, float alpha,
                                float dropout) {
  static const char fn[] = "strop_surgery_lora";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  if (empty(glob)) return strop__err(STROP_E_INVALID_ARG, "%s: glob is NULL or empty", fn);
  if (rank < 1 || rank > INT32_MAX)
    return strop__err(STROP_E_INVALID_ARG, "%s: rank must be >= 1, got %lld", fn, (long long)rank);
  if (!(alpha > 0.0f) || !isfinite(alpha))
    return strop__err(STROP_E_INVALID_ARG, "%s: alpha must be > 0, got %g", fn, (double)alpha);
  if (!(dropout >= 0.0f && dropout < 1.0f))
    return strop__err(STROP_E_INVALID_ARG, "%s: dropout must be in [0, 1), got %g", fn,
                      (double)dropout);
  edit e = {0};
  e.kind = E_LORA;
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
    return strop__err(STROP_E_INVALID_ARG, "%s: no_decay must be 0, 1 or negative (unchanged), "
                      "got %d", fn, no_decay);
  if (lr_mult < 0.0f && no_decay < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: nothing to change (lr_mult and no_decay are "
                      "both negative)", fn);
  edit e = {0};
  e.kind = E_PARAM_GROUP;
  e.target = (char *)glob;
  e.lr_mult = lr_mult;
  e.no_decay = no_decay;
  return add_edit(fn, s, &e);
}

/* ---- node bookkeeping on the working copy ---- */

/* Per node of the working copy: how the runner treats it. */
typedef struct naux {
  int fresh;      /* created by this plan: parameters come from its seed */
  int lora_new;   /* just turned into lora_linear: adapters to initialise */
  int lora_mask;  /* multihead_attention: the projections (bit i) whose adapters are new */
  int dirty;      /* re-infer even if its input shapes did not change */
  void *pristine; /* fresh nodes: the parsed cfg before any inference */
  uint64_t seed, stream;
} naux;

typedef struct work {
  strop_model *m;
  naux *aux;      /* parallel to m->nodes */
  int aux_cap;
  strop__text *log;
  uint64_t seed;  /* the plan's seed */
  int k;          /* index of the running edit */
} work;


static strop_status aux_reserve(work *w, int n) {
  if (n <= w->aux_cap) return STROP_OK;
  int cap = w->aux_cap ? w->aux_cap : 16;
  while (cap < n) cap *= 2;
  naux *v = strop__realloc(w->aux, (size_t)cap * sizeof *v);
  if (!v) return strop__err(STROP_E_NOMEM, "out of memory");
  memset(v + w->aux_cap, 0, (size_t)(cap - w->aux_cap) * sizeof *v);
  w->aux = v;
  w->aux_cap = cap;
  return STROP_OK;
}

static void aux_free(work *w) {
  for (int i = 0; w->aux && i < w->aux_cap; i++) strop__free(w->aux[i].pristine);
  strop__free(w->aux);
  w->aux = NULL;
  w->aux_cap = 0;
}

/* Moves the last node (just added) to position pos; its aux entry goes with it. */
static void move_last_to(work *w, int pos) {
  strop_model *m = w->m;
  int last = m->n_nodes - 1;
  strop__node nd = m->nodes[last];
  naux a = w->aux[last];
  memmove(&m->nodes[pos + 1], &m->nodes[pos], (size_t)(last - pos) * sizeof nd);
  memmove(&w->aux[pos + 1], &w->aux[pos], (size_t)(last - pos) * sizeof a);
  m->nodes[pos] = nd;
  w->aux[pos] = a;
}

static void delete_node(work *w, int idx) {
  strop_model *m = w->m;
  strop__node_release(&m->nodes[idx]);
  strop__free(w->aux[idx].pristine);
  int rest = m->n_nodes - idx - 1;
  memmove(&m->nodes[idx], &m->nodes[idx + 1], (size_t)rest * sizeof *m->nodes);
  memmove(&w->aux[idx], &w->aux[idx + 1], (size_t)rest * sizeof *w->aux);
  m->n_nodes--;
  memset(&w->aux[m->n_nodes], 0, sizeof *w->aux);
}

static strop_status set_in_name(strop__node *nd, int j, const char *name) {
  char *d = strop__strdup(name);
  if (!d) return strop__err(STROP_E_NOMEM, "out of memory");
  strop__free(nd->in_names[j]);
  nd->in_names[j] = d;
  return STROP_OK;
}

/* Consumers of node `from` (except node `skip`) read `to` instead. */
static strop_status rewire(strop_model *m, const char *from, const char *to, int skip) {
  for (int i = 0; i < m->n_nodes; i++) {
    if (i == skip) continue;
    strop__node *nd = &m->nodes[i];
    for (int j = 0; j < nd->n_in; j++)
      if (strcmp(nd->in_names[j], from) == 0) {
        strop_status st = set_in_name(nd, j, to);
        if (st) return st;
      }
  }
  return STROP_OK;
}

/* in[] from in_names; insertion order must stay topological. */
static strop_status relink(strop_model *m) {
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    for (int j = 0; j < nd->n_in; j++) {
      if (strcmp(nd->in_names[j], "input") == 0) {
        nd->in[j] = -1;
        continue;
      }
      int k = strop__model_node_find(m, nd->in_names[j]);
      if (k < 0)
        return strop__err(STROP_E_NOT_FOUND, "layer '%s' reads '%s', which is no longer in "
                          "the model", nd->name, nd->in_names[j]);
      if (k >= i)
        return strop__err(STROP_E_INVALID_ARG, "layer '%s' would read '%s', which comes after "
                          "it (a cycle)", nd->name, nd->in_names[j]);
      nd->in[j] = k;
    }
  }
  return STROP_OK;
}

static int shape_eq(const strop__shape *a, const strop__shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

static int param_same_shape(const strop__param *a, const strop__param *b) {
  if (a->rank != b->rank || a->numel != b->numel) return 0;
  if ((a->idata != NULL) != (b->idata != NULL)) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static int is_adapter(const strop__param *p) {
  size_t l = strlen(p->name);
  return (l > 14 && strcmp(p->name + l - 14, ".lora_A.weight") == 0) ||
         (l > 14 && strcmp(p->name + l - 14, ".lora_B.weight") == 0);
}

static void param_dims(const strop__param *p, char *buf, size_t cap) {
  strop__shape s = {p->rank, {0}};
  memcpy(s.d, p->dims, sizeof s.d);
  strop__shape_str(&s, buf, cap);
}

/* Re-infers node i, carrying parameter values over by name from its previous declaration.
 * Nodes the plan did not create must keep every parameter with its shape. */
static strop_status infer_node(work *w, int i) {
  strop_model *m = w->m;
  strop__node *nd = &m->nodes[i];
  naux *a = &w->aux[i];
  strop__param *old = nd->params;
  int n_old = nd->n_params;
  nd->params = NULL;
  nd->n_params = 0;
  for (int j = 0; j < nd->n_in; j++)
    nd->in_shapes[j] = nd->in[j] < 0 ? m->in_shape : m->nodes[nd->in[j]].out_shape;
  if (a->fresh && a->pristine) memcpy(nd->cfg, a->pristine, nd->vt->cfg_size);
  strop_status st = nd->vt->infer(nd);
  int need_init = 0;
  char b1[96], b2[96];
  for (int j = 0; !st && j < nd->n_params; j++) {
    strop__param *p = &nd->params[j];
    strop__param *q = NULL;
    for (int t = 0; t < n_old && !q; t++)
      if (old[t].name && strcmp(old[t].name, p->name) == 0) q = &old[t];
    if (q && param_same_shape(p, q) && (q->data || q->idata)) {
      p->data = q->data;
      p->idata = q->idata;
      p->grad = q->grad;
      p->grad_stale = q->grad_stale;
      p->grad_checked = 0;
      p->trainable = q->trainable;
      p->lr_mult = q->lr_mult;
      p->no_decay = q->no_decay;
      p->version = q->version;
      q->data = NULL;
      q->idata = NULL;
      q->grad = NULL;
      strop__free(q->name);
      q->name = NULL;
      continue;
    }
    if (q) {
      p->trainable = q->trainable && !p->is_buffer;
      p->lr_mult = q->lr_mult;
      p->no_decay = q->no_decay;
    }
    if (!a->fresh && !(a->lora_new && is_adapter(p))) {
      if (q) {
        param_dims(q, b1, sizeof b1);
        param_dims(p, b2, sizeof b2);
        st = strop__err(STROP_E_SHAPE, "layer '%s' (%s): parameter '%s' would change shape "
                        "from %s to %s", nd->name, nd->vt->type, p->name, b1, b2);
      } else {
        st = strop__err(STROP_E_SHAPE, "layer '%s' (%s) would gain a parameter '%s'", nd->name,
                        nd->vt->type, p->name);
      }
      break;
    }
    if (p->idata == (int64_t *)1) {
      p->idata = strop__calloc(1, sizeof(int64_t));
      if (!p->idata) st = strop__err(STROP_E_NOMEM, "layer '%s': out of memory", nd->name);
    } else {
      p->data = strop__malloc_aligned(p->numel * sizeof(float) + 1);
      if (!p->data) st = strop__err(STROP_E_NOMEM, "layer '%s': out of memory for '%s'",
                                    nd->name, p->name);
      else memset(p->data, 0, p->numel * sizeof(float));
    }
    need_init = 1;
  }
  for (int t = 0; !st && !a->fresh && t < n_old; t++)
    if (old[t].name)
      st = strop__err(STROP_E_SHAPE, "layer '%s' (%s) would lose its parameter '%s'", nd->name,
                      nd->vt->type, old[t].name);
  if (st) {
    strop__params_release(nd->params, nd->n_params);
    nd->params = old;
    nd->n_params = n_old;
    return st;
  }
  strop__params_release(old, n_old);
  strop__rng rng;
  strop__rng_seed(&rng, a->seed, a->stream);
  if (need_init && a->fresh && nd->vt->init) nd->vt->init(nd, &rng);
  if (a->lora_new) {
    if (need_init && !a->fresh) {
      if (nd->vt == &strop__layer_multihead_attention)
        strop__mha_lora_init_adapters(nd, a->lora_mask, &rng);
      else
        strop__lora_init_adapters(nd, &rng);
    }
    a->lora_mask = 0;
    for (int j = 0; j < nd->n_params; j++)
      if (!is_adapter(&nd->params[j])) nd->params[j].trainable = 0;
    a->lora_new = 0;
  }
  a->dirty = 0;
  return STROP_OK;
}

/* Re-infers what the last edit may have changed: dirty nodes and nodes whose input shapes
 * differ from what they were inferred with. Untouched nodes keep their parameters as they are. */
static strop_status reinfer(work *w) {
  strop_model *m = w->m;
  strop_status st = relink(m);
  if (st) return st;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    int changed = w->aux[i].dirty;
    for (int j = 0; j < nd->n_in && !changed; j++) {
      const strop__shape *sh = nd->in[j] < 0 ? &m->in_shape : &m->nodes[nd->in[j]].out_shape;
      changed = !shape_eq(sh, &nd->in_shapes[j]);
    }
    if (changed && (st = infer_node(w, i))) return st;
  }
  return STROP_OK;
}

/* ---- resolving names ---- */
static strop_status resolve_one(const strop_model *m, const char *pat, int *idx) {
  if (!strop__glob_is_pattern(pat)) {
    *idx = strop__model_node_find(m, pat);
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
    return strop__err(STROP_E_INVALID_ARG, "'%s' matches %d nodes (%s); this edit takes one",
                      pat, hits, list);
  return STROP_OK;
}

int64_t strop__node_count(const strop__node *n, int trainable_only) {
  int64_t c = 0;
  for (int j = 0; j < n->n_params; j++)
    if (!n->params[j].is_buffer && (!trainable_only || n->params[j].trainable))
      c += (int64_t)n->params[j].numel;
  return c;
}

static int64_t model_count(const strop_model *m, int trainable_only) {
  int64_t c = 0;
  for (int i = 0; i < m->n_nodes; i++) c += strop__node_count(&m->nodes[i], trainable_only);
  return c;
}

/* ---- the edits ---- */
static strop_status ed_flags(work *w, const edit *e) {
  strop_model *m = w->m;
  const char *g = e->target;
  int exact = !strop__glob_is_pattern(g);
  int64_t tensors = 0, values = 0, changed = 0, bn = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    int node_hit = strop__glob_match(g, nd->name), any = 0;
    for (int j = 0; j < nd->n_params; j++) {
      strop__param *p = &nd->params[j];
      int hit = node_hit || strop__glob_match(g, p->name);
      if (!hit) continue;
      if (p->is_buffer) {
        if (exact && strcmp(p->name, g) == 0)
          return strop__err(STROP_E_INVALID_ARG, "'%s' is a buffer (%s statistics), not a "
                            "trainable parameter", g, nd->vt->type);
        continue;
      }
      any = 1;
      tensors++;
      values += (int64_t)p->numel;
      if (e->kind == E_PARAM_GROUP) {
        if (e->lr_mult >= 0.0f) p->lr_mult = e->lr_mult;
        if (e->no_decay >= 0) p->no_decay = e->no_decay;
        continue;
      }
      int tr = e->kind == E_UNFREEZE;
      changed += p->trainable != tr;
      p->trainable = tr;
    }
    if (e->kind == E_PARAM_GROUP || !(nd->vt->flags & STROP__LAYER_BATCHSTATS) ||
        (!node_hit && !any) || (e->flags & STROP_FREEZE_KEEP_BN_MODE))
      continue;
    int all_frozen = 1;
    for (int j = 0; j < nd->n_params; j++)
      if (!nd->params[j].is_buffer && nd->params[j].trainable) all_frozen = 0;
    if (e->kind == E_FREEZE && all_frozen) {
      nd->frozen_stats = 1;
      bn++;
    } else if (e->kind == E_UNFREEZE) {
      nd->frozen_stats = 0;
      bn++;
    }
  }
  if (!tensors && !bn)
    return strop__err(STROP_E_NOT_FOUND, "no parameter matches '%s'", g);
  if (!w->log) return STROP_OK;
  if (e->kind == E_PARAM_GROUP) {
    strop__text_add(w->log, "%lld parameter tensors (%lld values):", (long long)tensors,
                    (long long)values);
    if (e->lr_mult >= 0.0f) strop__text_add(w->log, " lr_mult %g", (double)e->lr_mult);
    if (e->no_decay >= 0)
      strop__text_add(w->log, "%s weight decay %s", e->lr_mult >= 0.0f ? "," : "",
                      e->no_decay ? "off" : "on");
    strop__text_add(w->log, "\n");
    return STROP_OK;
  }
  const char *verb = e->kind == E_FREEZE ? "frozen" : "trainable";
  strop__text_add(w->log, "%lld parameter tensors (%lld values) %s, %lld of them changed",
                  (long long)tensors, (long long)values, verb, (long long)changed);
  if (bn)
    strop__text_add(w->log, "; %lld BatchNorm node%s %s inference mode", (long long)bn,
                    bn == 1 ? "" : "s", e->kind == E_FREEZE ? "kept in" : "out of");
  strop__text_add(w->log, "\n");
  return STROP_OK;
}

/* Adds a node of e->type/e->options named `name` reading `input`, at the end; marks it fresh. */
static strop_status new_node(work *w, const edit *e, const char *name, const char *input,
                             uint64_t seed, uint64_t stream) {
  strop_model *m = w->m;
  strop__opts o;
  strop_status st = strop__opts_parse("strop_model_add", e->options, &o);
  if (st) return st;
  st = aux_reserve(w, m->n_nodes + 1);
  if (!st) {
    m->finalized = 0; /* strop__model_add_opts only builds unfinalized models */
    const char *ins[1] = {input};
    st = strop__model_add_opts(m, name, e->type, &o, ins, 1);
    m->finalized = 1;
  }
  strop__opts_free(&o);
  if (st) return st;
  strop__node *nd = &m->nodes[m->n_nodes - 1];
  naux *a = &w->aux[m->n_nodes - 1];
  memset(a, 0, sizeof *a);
  a->fresh = 1;
  a->dirty = 1;
  a->seed = seed;
  a->stream = stream;
  a->pristine = strop__malloc(nd->vt->cfg_size ? nd->vt->cfg_size : 1);
  if (!a->pristine) return strop__err(STROP_E_NOMEM, "out of memory");
  memcpy(a->pristine, nd->cfg, nd->vt->cfg_size);
  return STROP_OK;
}

static void log_node(work *w, int i) {
  if (!w->log || i < 0) return;
  const strop__node *nd = &w->m->nodes[i];
  char b[96];
  strop__text_add(w->log, "'%s' (%s) output %s, %lld parameters", nd->name, nd->vt->type,
                  strop__shape_str(&nd->out_shape, b, sizeof b),
                  (long long)strop__node_count(nd, 0));
}

static strop_status ed_replace(work *w, const edit *e) {
  strop_model *m = w->m;
  int idx;
  strop_status st = resolve_one(m, e->target, &idx);
  if (st) return st;
  char oldtype[64], b[96];
  snprintf(oldtype, sizeof oldtype, "%s", m->nodes[idx].vt->type);
  strop__shape oldshape = m->nodes[idx].out_shape;
  int64_t oldcount = strop__node_count(&m->nodes[idx], 0);
  /* the new node takes the old one's name: hide the old name while adding */
  char *name = m->nodes[idx].name;
  char *saved = strop__strdup(name);
  if (!saved) return strop__err(STROP_E_NOMEM, "out of memory");
  name[0] = '\0';
  int n_in = m->nodes[idx].n_in;
  strop__opts o;
  st = strop__opts_parse("strop_model_add", e->options, &o);
  if (!st) st = aux_reserve(w, m->n_nodes + 1);
  if (!st) {
    m->finalized = 0;
    st = strop__model_add_opts(m, saved, e->type, &o, (const char *const *)m->nodes[idx].in_names,
                               n_in);
    m->finalized = 1;
  }
  strop__opts_free(&o);
  strop__free(saved);
  if (st) return st;
  strop__node *nd = &m->nodes[m->n_nodes - 1];
  naux *a = &w->aux[m->n_nodes - 1];
  memset(a, 0, sizeof *a);
  a->fresh = a->dirty = 1;
  a->seed = e->seed;
  a->stream = 0x5eed;
  a->pristine = strop__malloc(nd->vt->cfg_size ? nd->vt->cfg_size : 1);
  if (!a->pristine) return strop__err(STROP_E_NOMEM, "out of memory");
  memcpy(a->pristine, nd->cfg, nd->vt->cfg_size);
  move_last_to(w, idx);
  delete_node(w, idx + 1);
  if ((st = reinfer(w))) return st;
  if (w->log) {
    strop__text_add(w->log, "was %s output %s, %lld parameters; now ", oldtype,
                    strop__shape_str(&oldshape, b, sizeof b), (long long)oldcount);
    log_node(w, idx);
    strop__text_add(w->log, ", initialised from seed %llu\n", (unsigned long long)e->seed);
  }
  return STROP_OK;
}

static strop_status ed_insert(work *w, const edit *e) {
  strop_model *m = w->m;
  int idx = m->n_nodes - 1;
  strop_status st = STROP_OK;
  if (e->kind != E_APPEND && (st = resolve_one(m, e->target, &idx))) return st;
  if (e->kind == E_INSERT_BEFORE && m->nodes[idx].n_in != 1)
    return strop__err(STROP_E_INVALID_ARG, "node '%s' has %d inputs; insert_before needs one",
                      m->nodes[idx].name, m->nodes[idx].n_in);
  /* names of nodes stay valid while the node array grows (they are separate allocations) */
  const char *x = m->nodes[idx].name;
  const char *src = e->kind == E_INSERT_BEFORE ? m->nodes[idx].in_names[0] : x;
  uint64_t stream = ((uint64_t)(w->k + 1) << 32) | 0x1u;
  if ((st = new_node(w, e, e->name, src, w->seed, stream))) return st;
  int pos;
  if (e->kind == E_INSERT_BEFORE) {
    pos = idx;
    move_last_to(w, pos);
    if ((st = set_in_name(&m->nodes[idx + 1], 0, e->name))) return st;
  } else {
    pos = e->kind == E_APPEND ? m->n_nodes - 1 : idx + 1;
    move_last_to(w, pos);
    if (e->kind == E_INSERT_AFTER && (st = rewire(m, m->nodes[idx].name, e->name, pos)))
      return st;
  }
  if ((st = reinfer(w))) return st;
  if (w->log) {
    strop__text_add(w->log, "new ");
    log_node(w, pos);
    strop__text_add(w->log, "%s\n", pos == m->n_nodes - 1 ? ", now the output" : "");
  }
  return STROP_OK;
}

static strop_status ed_remove(work *w, const edit *e) {
  strop_model *m = w->m;
  int exact = !strop__glob_is_pattern(e->target), hits = 0;
  strop_status st;
  if (exact) {
    int idx;
    if ((st = resolve_one(m, e->target, &idx))) return st;
  }
  /* from the last match down, so earlier indices stay valid */
  for (int i = m->n_nodes - 1; i >= 0; i--) {
    strop__node *nd = &m->nodes[i];
    if (!strop__glob_match(e->target, nd->name)) continue;
    hits++;
    if (nd->n_in != 1)
      return strop__err(STROP_E_INVALID_ARG, "node '%s' has %d inputs; its consumers cannot be "
                        "reconnected", nd->name, nd->n_in);
    const char *src = nd->in_names[0];
    if (i == m->n_nodes - 1) {
      if (m->n_nodes == 1)
        return strop__err(STROP_E_INVALID_ARG, "'%s' is the only node; nothing would be left",
                          nd->name);
      if (strcmp(src, m->nodes[i - 1].name) != 0)
        return strop__err(STROP_E_INVALID_ARG, "'%s' is the output and its input '%s' is not "
                          "the node before it; truncate at '%s' instead", nd->name, src, src);
    }
    if ((st = rewire(m, nd->name, src, i))) return st;
    if (w->log) strop__text_add(w->log, "%s'%s' (%s)", hits > 1 ? ", " : "removed ", nd->name,
                                nd->vt->type);
    delete_node(w, i);
  }
  if (!hits) return strop__err(STROP_E_NOT_FOUND, "no node matches '%s'", e->target);
  if ((st = reinfer(w))) return st;
  if (w->log) strop__text_add(w->log, "; consumers reconnected to their inputs\n");
  return STROP_OK;
}

static strop_status ed_truncate(work *w, const edit *e) {
  strop_model *m = w->m;
  int idx;
  strop_status st = resolve_one(m, e->target, &idx);
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
    if (w->log) strop__text_add(w->log, "%s'%s'", dropped ? ", " : "dropped ", m->nodes[i].name);
    dropped++;
    delete_node(w, i);
  }
  strop__free(keep);
  if ((st = reinfer(w))) return st;
  if (w->log) {
    strop__text_add(w->log, "%s; output is now ", dropped ? "" : "nothing dropped");
    log_node(w, m->n_nodes - 1);
    strop__text_add(w->log, "\n");
  }
  return STROP_OK;
}

/* linear -> lora_linear, keeping name, inputs and base options */
static strop_status to_lora(work *w, const edit *e, int i, uint64_t stream) {
  strop_model *m = w->m;
  strop__node *nd = &m->nodes[i];
  const strop__layer_vtable *vt = &strop__layer_lora_linear;
  strop__optbuf b;
  strop_status st = strop__node_write_opts(nd, &b);
  if (st) return st;
  strop__opts o;
  memset(&o, 0, sizeof o);
  char r[32], al[40], dr[40];
  snprintf(r, sizeof r, "%lld", (long long)e->rank);
  snprintf(al, sizeof al, "%.9g", (double)e->alpha);
  snprintf(dr, sizeof dr, "%.9g", (double)e->dropout);
  naux *a = &w->aux[i];
  /* a node this plan created keeps re-inferring its input size, as it did as a linear */
  for (int j = 0; !st && j < b.n; j++)
    if (!a->fresh || strcmp(b.v[j].key, "in_features") != 0)
      st = strop__opts_add(&o, b.v[j].key, b.v[j].val, 0, 0);
  if (!st) st = strop__opts_add(&o, "r", r, 0, 0);
  if (!st) st = strop__opts_add(&o, "alpha", al, 0, 0);
  if (!st) st = strop__opts_add(&o, "dropout", dr, 0, 0);
  strop__optbuf_free(&b);
  void *cfg = NULL;
  if (!st && !(cfg = strop__calloc(1, vt->cfg_size)))
    st = strop__err(STROP_E_NOMEM, "out of memory");
  if (!st) {
    o.layer = nd->name;
    o.type = vt->type;
    st = vt->parse(cfg, &o);
  }
  for (int j = 0; !st && j < o.n; j++)
    if (!o.v[j].used)
      st = strop__err(STROP_E_INTERNAL, "layer '%s': option '%s' of linear unknown to "
                      "lora_linear", nd->name, o.v[j].key);
  strop__opts_free(&o);
  if (st) {
    strop__free(cfg);
    return st;
  }
  if (a->fresh) {
    /* a fresh node re-initialises from its own seed: lora_linear's init draws the weight and
     * bias as linear's does, then A */
    void *pr = strop__malloc(vt->cfg_size);
    if (!pr) {
      strop__free(cfg);
      return strop__err(STROP_E_NOMEM, "out of memory");
    }
    memcpy(pr, cfg, vt->cfg_size);
    strop__free(a->pristine);
    a->pristine = pr;
  } else {
    a->seed = w->seed;
    a->stream = stream;
  }
  strop__free(nd->cfg);
  nd->cfg = cfg;
  nd->vt = vt;
  a->lora_new = a->dirty = 1;
  return STROP_OK;
}

/* Adapters on the projections in mask of multihead_attention node i (cfg edited in place; a
 * node this plan created gets them in its pristine cfg too, as it re-infers from that). */
static strop_status to_lora_attn(work *w, const edit *e, int i, int mask, uint64_t stream) {
  strop__node *nd = &w->m->nodes[i];
  naux *a = &w->aux[i];
  if (e->dropout > 0.0f)
    return strop__err(STROP_E_UNSUPPORTED, "node '%s' (multihead_attention): LoRA dropout on "
                      "attention projections is not supported (dropout %g; use 0)", nd->name,
                      (double)e->dropout);
  if (strop__mha_lora_merged(nd))
    return strop__err(STROP_E_STATE, "node '%s': its adapters are merged; unmerge them before "
                      "adding more", nd->name);
  for (int p = 0; p < 4; p++) {
    if (!(mask & (1 << p))) continue;
    strop__mha_lora_set(nd->cfg, p, e->rank, e->alpha);
    if (a->fresh && a->pristine) strop__mha_lora_set(a->pristine, p, e->rank, e->alpha);
  }
  if (!a->fresh) {
    a->seed = w->seed;
    a->stream = stream;
  }
  a->lora_mask |= mask;
  a->lora_new = a->dirty = 1;
  return STROP_OK;
}

/* Which projections of attention node nd the pattern names as "<node>.<proj>" (bit i), not
 * counting those that already have adapters. */
static int attn_targets(const strop__node *nd, const char *pat, int *already) {
  char full[512];
  int mask = 0;
  for (int p = 0; p < 4; p++) {
    snprintf(full, sizeof full, "%s.%s", nd->name, strop__mha_proj_names[p]);
    if (!strop__glob_match(pat, full)) continue;
    if (strop__mha_lora_rank(nd, p, NULL)) {
      if (already) *already = 1;
      continue;
    }
    mask |= 1 << p;
  }
  return mask;
}

static strop_status ed_lora(work *w, const edit *e) {
  strop_model *m = w->m;
  const strop__layer_vtable *lin = strop__layer_find("linear");
  const strop__layer_vtable *mha = &strop__layer_multihead_attention;
  strop_status st;
  int exact_proj = 0; /* an exact name of an attention projection */
  if (!strop__glob_is_pattern(e->target)) {
    for (int i = 0; i < m->n_nodes && !exact_proj; i++) {
      int already = 0;
      if (m->nodes[i].vt != mha) continue;
      int mask = attn_targets(&m->nodes[i], e->target, &already);
      if (already)
        return strop__err(STROP_E_INVALID_ARG, "'%s' already has LoRA adapters", e->target);
      exact_proj = mask != 0;
    }
  }
  if (!exact_proj && !strop__glob_is_pattern(e->target)) {
    int idx;
    if ((st = resolve_one(m, e->target, &idx))) return st;
    if (m->nodes[idx].vt == &strop__layer_lora_linear)
      return strop__err(STROP_E_INVALID_ARG, "node '%s' already has LoRA adapters", e->target);
    if (m->nodes[idx].vt != lin)
      return strop__err(STROP_E_INVALID_ARG, "node '%s' is %s; LoRA applies to linear nodes "
                        "and attention projections ('<node>.q_proj', k_proj, v_proj, out_proj)",
                        e->target, m->nodes[idx].vt->type);
  }
  int hits = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    uint64_t stream = ((uint64_t)(w->k + 1) << 32) | (uint64_t)(hits + 2);
    if (m->nodes[i].vt == mha) {
      int mask = attn_targets(&m->nodes[i], e->target, NULL);
      if (!mask) continue;
      if ((st = to_lora_attn(w, e, i, mask, stream))) return st;
      for (int p = 0; w->log && p < 4; p++)
        if (mask & (1 << p))
          strop__text_add(w->log, "%s'%s.%s'", hits ? ", " : "adapters on ", m->nodes[i].name,
                          strop__mha_proj_names[p]);
      hits++;
      continue;
    }
    if (m->nodes[i].vt != lin || !strop__glob_match(e->target, m->nodes[i].name)) continue;
    if ((st = to_lora(w, e, i, stream))) return st;
    if (w->log) strop__text_add(w->log, "%s'%s'", hits ? ", " : "adapters on ", m->nodes[i].name);
    hits++;
  }
  if (!hits)
    return strop__err(STROP_E_NOT_FOUND, "no linear node matches '%s' (nor an attention "
                      "projection '<node>.q_proj' ...)", e->target);
  if ((st = reinfer(w))) return st;
  if (w->log)
    strop__text_add(w->log, " (r=%lld, alpha=%g, dropout=%g; base frozen, lora_A/lora_B "
                    "trainable)\n", (long long)e->rank, (double)e->alpha, (double)e->dropout);
  return STROP_OK;
}

static int is_structural(int kind) {
  return kind != E_FREEZE && kind != E_UNFREEZE && kind != E_PARAM_GROUP;
}

static strop_status run_edit(work *w, const edit *e) {
  switch (e->kind) {
  case E_FREEZE:
  case E_UNFREEZE:
  case E_PARAM_GROUP: return ed_flags(w, e);
  case E_REPLACE: return ed_replace(w, e);
  case E_INSERT_AFTER:
  case E_INSERT_BEFORE:
  case E_APPEND: return ed_insert(w, e);
  case E_REMOVE: return ed_remove(w, e);
  case E_TRUNCATE: return ed_truncate(w, e);
  case E_LORA: return ed_lora(w, e);
  default: return strop__err(STROP_E_INTERNAL, "unknown edit kind %d", e->kind);
  }
}

/* Rewrites the current error as "<fn>: edit k of n (<kind> '<target>'): <why>". */
static strop_status wrap_error(const char *fn, strop_status st, const strop_surgery *s, int k) {
  char msg[900];
  snprintf(msg, sizeof msg, "%s", strop_last_error());
  const char *why = msg;
  static const char add[] = "strop_model_add: ";
  if (strncmp(why, add, sizeof add - 1) == 0) why += sizeof add - 1;
  const edit *e = &s->e[k];
  return strop__err(st, "%s: edit %d of %d (%s '%s'): %s", fn, k + 1, s->n, kind_names[e->kind],
                    e->target ? e->target : e->name, why[0] ? why : strop_status_str(st));
}

static void edit_head(strop__text *log, const strop_surgery *s, int k) {
  const edit *e = &s->e[k];
  strop__text_add(log, "edit %d: %s '%s'", k + 1, kind_names[e->kind],
                  e->target ? e->target : e->name);
  if (e->kind == E_INSERT_AFTER || e->kind == E_INSERT_BEFORE)
    strop__text_add(log, " new '%s'", e->name);
  if (e->type) strop__text_add(log, " %s%s%s", e->type, e->options && *e->options ? " " : "",
                                e->options ? e->options : "");
  strop__text_add(log, ": ");
}

/* The before/after comparison at the end of a dry run. */
static void log_diff(strop__text *t, const strop_model *a, const strop_model *b,
                     const naux *aux) {
  char s1[96], s2[96];
  const char *sep = "";
  strop__text_add(t, "nodes added:");
  for (int i = 0; i < b->n_nodes; i++)
    if (strop__model_node_find(a, b->nodes[i].name) < 0) {
      strop__text_add(t, "%s %s (%s)", sep, b->nodes[i].name, b->nodes[i].vt->type);
      sep = ",";
    }
  strop__text_add(t, "%s\nnodes removed:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < a->n_nodes; i++)
    if (strop__model_node_find(b, a->nodes[i].name) < 0) {
      strop__text_add(t, "%s %s (%s)", sep, a->nodes[i].name, a->nodes[i].vt->type);
      sep = ",";
    }
  strop__text_add(t, "%s\nnodes replaced or retyped:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < b->n_nodes; i++) {
    int j = strop__model_node_find(a, b->nodes[i].name);
    if (j < 0 || (a->nodes[j].vt == b->nodes[i].vt && !aux[i].fresh)) continue;
    strop__text_add(t, "%s %s (%s -> %s)", sep, b->nodes[i].name, a->nodes[j].vt->type,
                    b->nodes[i].vt->type);
    sep = ",";
  }
  strop__text_add(t, "%s\nparameters added:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < b->n_nodes; i++)
    for (int k = 0; k < b->nodes[i].n_params; k++) {
      const strop__param *p = &b->nodes[i].params[k];
      int ja = strop__model_node_find(a, b->nodes[i].name);
      const strop__param *q = NULL;
      for (int l = 0; ja >= 0 && l < a->nodes[ja].n_params && !q; l++)
        if (!strcmp(a->nodes[ja].params[l].name, p->name)) q = &a->nodes[ja].params[l];
      if (q && !aux[i].fresh && param_same_shape(p, q)) continue;
      param_dims(p, s1, sizeof s1);
      strop__text_add(t, "%s %s %s%s", sep, p->name, s1, q ? " (re-initialised)" : "");
      sep = ",";
    }
  strop__text_add(t, "%s\nparameters removed:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < a->n_nodes; i++)
    for (int k = 0; k < a->nodes[i].n_params; k++) {
      const strop__param *p = &a->nodes[i].params[k];
      int jb = strop__model_node_find(b, a->nodes[i].name);
      int found = 0;
      for (int l = 0; jb >= 0 && l < b->nodes[jb].n_params && !found; l++)
        found = !strcmp(b->nodes[jb].params[l].name, p->name);
      if (found) continue;
      param_dims(p, s1, sizeof s1);
      strop__text_add(t, "%s %s %s", sep, p->name, s1);
      sep = ",";
    }
  int64_t frozen = 0, unfrozen = 0;
  for (int i = 0; i < b->n_nodes; i++)
    for (int k = 0; k < b->nodes[i].n_params; k++) {
      const strop__param *p = &b->nodes[i].params[k];
      if (p->is_buffer) continue;
      int ja = strop__model_node_find(a, b->nodes[i].name);
      int was = 1; /* new parameters count against "trainable by default" */
      for (int l = 0; ja >= 0 && l < a->nodes[ja].n_params; l++)
        if (!strcmp(a->nodes[ja].params[l].name, p->name)) was = a->nodes[ja].params[l].trainable;
      frozen += was && !p->trainable;
      unfrozen += !was && p->trainable;
    }
  strop__text_add(t, "%s\nparameter tensors newly frozen: %lld, newly trainable: %lld\n",
                  *sep ? "" : " none", (long long)frozen, (long long)unfrozen);
  strop__text_add(t, "output shape: %s -> %s\n",
                  strop__shape_str(&a->nodes[a->n_nodes - 1].out_shape, s1, sizeof s1),
                  strop__shape_str(&b->nodes[b->n_nodes - 1].out_shape, s2, sizeof s2));
  strop__text_add(t, "parameters: %lld -> %lld; trainable: %lld -> %lld\n",
                  (long long)model_count(a, 0), (long long)model_count(b, 0),
                  (long long)model_count(a, 1), (long long)model_count(b, 1));
}

static int plan_flags_only(const strop_surgery *s) {
  for (int k = 0; k < s->n; k++)
    if (is_structural(s->e[k].kind)) return 0;
  return 1;
}

strop_status strop__surgery_run(const char *fn, const strop_surgery *s, strop__text *log,
                                strop_model **out, int *flags_only) {
  *out = NULL;
  if (flags_only) *flags_only = plan_flags_only(s);
  if (!s->model->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  strop_model *c = NULL;
  strop_status st = strop__model_clone(s->model, &c);
  if (st) {
    strop__err_prefix("%s", fn);
    return st;
  }
  work w;
  memset(&w, 0, sizeof w);
  w.m = c;
  w.log = log;
  w.seed = s->seed_set ? s->seed : s->model->seed;
  st = aux_reserve(&w, c->n_nodes);
  if (st) strop__err_prefix("%s", fn);
  for (int k = 0; !st && k < s->n; k++) {
    w.k = k;
    if (log) edit_head(log, s, k);
    st = run_edit(&w, &s->e[k]);
    if (st) {
      st = wrap_error(fn, st, s, k);
      if (log) strop__text_add(log, "would fail: %s\n", strop_last_error());
    }
  }
  if (!st && (st = strop__model_reindex(c))) strop__err_prefix("%s", fn);
  if (!st && log) log_diff(log, s->model, c, w.aux);
  aux_free(&w);
  if (st) {
    strop_model_free(c);
    return st;
  }
  *out = c;
  return STROP_OK;
}

void strop__model_swap_in(strop_model *model, strop_model *clone) {
  strop_model tmp = *model;
  *model = *clone;
  *clone = tmp;
  strop_model_free(clone);
}

void strop__model_copy_flags(strop_model *model, const strop_model *clone) {
  for (int i = 0; i < model->n_nodes && i < clone->n_nodes; i++) {
    strop__node *a = &model->nodes[i];
    const strop__node *b = &clone->nodes[i];
    a->frozen_stats = b->frozen_stats;
    for (int j = 0; j < a->n_params && j < b->n_params; j++) {
      strop__param *p = &a->params[j];
      p->trainable = b->params[j].trainable;
      p->lr_mult = b->params[j].lr_mult;
      p->no_decay = b->params[j].no_decay;
      if (!p->trainable && p->grad) {
        strop__free_aligned(p->grad);
        p->grad = NULL;
      }
    }
  }
}

/* Flag edits change no structure: run them on the model itself with a backup of its flags,
 * so parameter pointers held by optimizers stay valid. */
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
  work w;
  memset(&w, 0, sizeof w);
  w.m = m;
  strop_status st = STROP_OK;
  for (int k = 0; !st && k < s->n; k++) {
    w.k = k;
    st = run_edit(&w, &s->e[k]);
    if (st) st = wrap_error(fn, st, s, k);
  }
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (st) {
      p->trainable = tr[i];
      p->no_decay = nod[i];
      p->lr_mult = lr[i];
    } else if (!p->trainable && p->grad) {
      strop__free_aligned(p->grad);
      p->grad = NULL;
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
  if (!s->model->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  if (plan_flags_only(s)) return apply_flags_in_place(fn, s);
  strop_model *c = NULL;
  if ((st = strop__surgery_run(fn, s, NULL, &c, NULL))) return st;
  strop__model_swap_in(s->model, c);
  return STROP_OK;
}

strop_status strop_surgery_validate(const strop_surgery *s) {
  static const char fn[] = "strop_surgery_validate";
  strop_status st = check_plan(fn, s);
  if (st) return st;
  strop_model *c = NULL;
  if ((st = strop__surgery_run(fn, s, NULL, &c, NULL))) return st;
  strop_model_free(c);
  return STROP_OK;
}

int64_t strop_surgery_describe(const strop_surgery *s, char *buf, size_t cap) {
  static const char fn[] = "strop_surgery_describe";
  if (!s || (!buf && cap)) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, s ? "buf" : "plan");
    return -1;
  }
  strop__text t;
  memset(&t, 0, sizeof t);
  strop__text_add(&t, "surgery plan of %d edit%s on a model of %d nodes\n", s->n,
                  s->n == 1 ? "" : "s", s->model->n_nodes);
  strop_model *c = NULL;
  strop_status st = strop__surgery_run(fn, s, &t, &c, NULL);
  strop_model_free(c);
  if (st == STROP_E_NOMEM) {
    strop__text_free(&t);
    return -1;
  }
  char err[1024];
  snprintf(err, sizeof err, "%s", strop_last_error());
  int64_t n = strop__text_out(fn, &t, buf, cap);
  strop__text_free(&t);
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
