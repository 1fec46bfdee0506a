/* SPDX-License-Identifier: MIT */
/* strop — the model graph: named nodes in a DAG, shape inference, parameter storage, and
 * forward/backward over the DAG with the step arena and the frozen-trunk backward stop. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor_impl.h"
#include "graph/graph.h"
#include "ops/attention.h"

/* the layers read the model's attention setting as ops/attention.h's mode */
_Static_assert((int)STROP__ATTN_AUTO == (int)STROP_ATTENTION_AUTO &&
                   (int)STROP__ATTN_TILED == (int)STROP_ATTENTION_TILED &&
                   (int)STROP__ATTN_MATERIALIZED == (int)STROP_ATTENTION_MATERIALIZED,
               "strop_attention and STROP__ATTN_* agree");

/* ---- model lifetime ---- */
strop_status strop_model_create(int rank, const int64_t *input_shape, strop_model **out) {
  static const char fn[] = "strop_model_create";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (rank == STROP_MAX_RANK) /* accepted before, and then no batch of it could be made */
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: a sample of rank %d leaves no room for the batch axis (tensors hold "
                      "at most %d dimensions): give at most %d per-sample dimensions",
                      fn, rank, STROP_MAX_RANK, STROP_MAX_RANK - 1);
  size_t numel;
  strop_status s = strop__dims_numel(fn, rank, input_shape, &numel);
  if (s) return s;
  strop_model *m = strop__calloc(1, sizeof *m);
  if (!m) return STROP__NOMEM(fn);
  m->in_shape.rank = rank;
  memcpy(m->in_shape.d, input_shape, (size_t)rank * sizeof *input_shape);
  strop__arena_init(&m->arena);
  strop__rng_seed(&m->rng, 0, 0);
  m->keep_act = -1;
  m->weight_cache = 1;
  *out = m;
  return STROP_OK;
}

static void free_exec_arrays(strop_model *m) {
  strop__free(m->run_shapes);
  m->run_shapes = NULL;
  m->run_valid = 0;
  strop__free(m->acts);
  strop__free(m->grads);
  strop__free(m->upstream_trainable);
  strop__free(m->consumers);
  m->acts = NULL;
  m->grads = NULL;
  m->upstream_trainable = NULL;
  m->consumers = NULL;
}

void strop_model_free(strop_model *m) {
  if (!m) return;
  for (int i = 0; i < m->n_nodes; i++) strop__node_release(&m->nodes[i]);
  strop__free(m->nodes);
  strop__free(m->params);
  free_exec_arrays(m);
  strop__meta_free(&m->meta);
  strop__arena_destroy(&m->arena);
  strop__free_aligned(m->region);
  strop__free(m->ckpt_pattern);
  strop__free(m);
}

/* ---- building ---- */
static int valid_name(const char *s) {
  if (!s || !*s || strlen(s) > 200 || *s == '.') return 0;
  for (const char *p = s; *p; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '.' || c == '-'))
      return 0;
    if (c == '.' && (p[1] == '.' || p[1] == '\0')) return 0;
  }
  return strcmp(s, "input") != 0;
}

int strop__model_node_find(const strop_model *m, const char *name) {
  for (int i = 0; i < m->n_nodes; i++)
    if (strcmp(m->nodes[i].name, name) == 0) return i;
  return -1;
}

/* ---- the nodes' names index (graph.h): a scan of the nodes for every name added made
 * building a model quadratic in its nodes (40000 adds took 4 s) ---- */

/* Gives the node block room for cap nodes and for the slots of their names index; the one
 * place that allocates m->nodes. STROP_E_NOMEM (naming fn) leaves the model as it was. */
/* The names index's slots in a node block of cap nodes. */
static size_t names_slots(int cap) {
  size_t slots = 16;
  while (slots < 2 * (size_t)cap) slots *= 2;
  return slots;
}

static strop_status nodes_reserve(strop_model *m, int cap, const char *fn) {
  if (m->nodes && cap <= m->cap_nodes) return STROP_OK;
  const size_t slots = names_slots(cap);
  size_t node_bytes, slot_bytes;
  if (strop__mul_overflow((size_t)cap, sizeof *m->nodes, &node_bytes) ||
      strop__mul_overflow(slots, sizeof(int), &slot_bytes) ||
      node_bytes + slot_bytes < node_bytes)
    return STROP__NOMEM(fn);
  strop__node *v = strop__realloc(m->nodes, node_bytes + slot_bytes);
  if (!v) return STROP__NOMEM(fn);
  m->nodes = v;
  m->cap_nodes = cap;
  m->names_n = 0; /* the slots moved: the next lookup fills them again */
  return STROP_OK;
}

void strop__model_names_stale(strop_model *m) { m->names_n = 0; }

static void names_put(int *t, size_t mask, const char *name, int i) {
  size_t h = (size_t)strop__hash64(name, strlen(name), 0) & mask;
  while (t[h]) h = (h + 1) & mask;
  t[h] = i + 1;
}

/* The node named name through the slots t, or -1. A slot whose node has another name now (or
 * is gone) is passed over. */
static int names_get(const strop_model *m, const int *t, size_t mask, const char *name) {
  for (size_t h = (size_t)strop__hash64(name, strlen(name), 0) & mask; t[h]; h = (h + 1) & mask)
    if (t[h] <= m->n_nodes && strcmp(m->nodes[t[h] - 1].name, name) == 0) return t[h] - 1;
  return -1;
}

/* The node named name, or -1: through the names index, which first takes in the nodes appended
 * since the last lookup (all of them after strop__model_names_stale, or when nodes were
 * dropped without it). Never fails (lookups do not allocate). */
static int names_find(strop_model *m, const char *name) {
  if (!m->nodes) return -1; /* no node yet */
  int *t = (int *)(void *)(m->nodes + m->cap_nodes);
  const size_t mask = names_slots(m->cap_nodes) - 1;
  if (m->names_n > m->n_nodes) m->names_n = 0;
  if (!m->names_n) memset(t, 0, (mask + 1) * sizeof *t);
  for (; m->names_n < m->n_nodes; m->names_n++)
    names_put(t, mask, m->nodes[m->names_n].name, m->names_n);
  return names_get(m, t, mask, name);
}

int strop__model_node_lookup(strop_model *m, const char *name) { return names_find(m, name); }

static strop_status add_composite(strop_model *m, const char *name, const strop__layer_vtable *vt,
                                  strop__opts *opts, const char *const *inputs, int n_inputs);

strop_status strop__model_add_opts(strop_model *m, const char *name, const char *type,
                                   strop__opts *opts, const char *const *inputs, int n_inputs) {
  static const char fn[] = "strop_model_add";
  if (!m || !type)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, m ? "type" : "model");
  if (m->finalized)
    return strop__err(STROP_E_STATE, "%s: model is finalized; use a surgery plan to edit it", fn);
  if (!valid_name(name))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: bad node name '%s' (letters, digits, '_', '-' "
                      "and '.' separators; not 'input')",
                      fn, name ? name : "(null)");
  if (names_find(m, name) >= 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: a node named '%s' already exists", fn, name);
  const strop__layer_vtable *vt = strop__layer_find(type);
  if (!vt) {
    char list[600];
    return strop__err(STROP_E_NOT_FOUND, "%s: layer '%s': unknown type '%s' (known: %s)", fn,
                      name, type, strop__layer_names(list, sizeof list));
  }
  if (n_inputs < 0 || (n_inputs > 0 && !inputs))
    return strop__err(STROP_E_INVALID_ARG, "%s: layer '%s': bad inputs", fn, name);
  int want = n_inputs ? n_inputs : 1;
  if (!(vt->flags & STROP__LAYER_ANY_INPUTS) && want != vt->n_inputs)
    return strop__err(STROP_E_INVALID_ARG, "%s: layer '%s' (%s) takes %d input%s, got %d", fn,
                      name, type, vt->n_inputs, vt->n_inputs == 1 ? "" : "s", want);
  if (vt->expand) return add_composite(m, name, vt, opts, inputs, n_inputs);

  strop__node nd;
  memset(&nd, 0, sizeof nd);
  nd.vt = vt;
  nd.name = strop__strdup(name);
  nd.in_names = strop__calloc((size_t)want, sizeof *nd.in_names);
  nd.in = strop__calloc((size_t)want, sizeof *nd.in);
  nd.in_shapes = strop__calloc((size_t)want, sizeof *nd.in_shapes);
  nd.n_in = want;
  strop_status s = STROP_OK;
  if (!nd.name || !nd.in_names || !nd.in || !nd.in_shapes) {
    s = STROP__NOMEM(fn);
    goto fail;
  }
  for (int i = 0; i < want; i++) {
    const char *src = n_inputs ? inputs[i]
                               : (m->n_nodes ? m->nodes[m->n_nodes - 1].name : "input");
    if (!src || !*src) {
      s = strop__err(STROP_E_INVALID_ARG, "%s: layer '%s': input %d is empty", fn, name, i);
      goto fail;
    }
    if (strcmp(src, name) == 0) {
      s = strop__err(STROP_E_INVALID_ARG, "%s: layer '%s' lists itself as an input (a cycle)", fn,
                     name);
      goto fail;
    }
    nd.in_names[i] = strop__strdup(src);
    if (!nd.in_names[i]) {
      s = STROP__NOMEM(fn);
      goto fail;
    }
  }
  opts->layer = name;
  if ((s = strop__layer_parse(vt, opts, &nd.cfg))) goto fail;
  if (m->n_nodes == m->cap_nodes &&
      (s = nodes_reserve(m, m->cap_nodes ? m->cap_nodes * 2 : 16, fn)))
    goto fail;
  m->nodes[m->n_nodes++] = nd;
  return STROP_OK;
fail:
  strop__node_release(&nd);
  return s;
}

/* ---- composites: parts built in a scratch model (inputs are only names until finalize, so
 * they may point into the real model), moved over only when every part was accepted ---- */
typedef struct expand_ctx {
  strop__expander e;
  strop_model *scratch;
  const char *block; /* the composite's node name */
  const char *input; /* what it reads */
  char last[256];    /* the previous part's full name */
} expand_ctx;

static strop_status expand_add(strop__expander *e, const char *part, const char *type,
                               const char *const *kv, int n_kv, const char *const *ins,
                               int n_in) {
  expand_ctx *x = e->ctx;
  char name[256], full_in[16][256];
  const char *in_names[16];
  if (n_in > 16)
    return strop__err(STROP_E_INTERNAL, "composite part '%s': too many inputs", part);
  snprintf(name, sizeof name, "%s.%s", x->block, part);
  for (int i = 0; i < n_in; i++) {
    if (strcmp(ins[i], STROP__EXPAND_INPUT) == 0)
      snprintf(full_in[i], sizeof full_in[i], "%s", x->input);
    else snprintf(full_in[i], sizeof full_in[i], "%s.%s", x->block, ins[i]);
    in_names[i] = full_in[i];
  }
  if (n_in == 0) {
    in_names[0] = x->last[0] ? x->last : x->input;
    n_in = 1;
  }
  strop__opts o;
  memset(&o, 0, sizeof o);
  strop_status st = STROP_OK;
  for (int i = 0; i < n_kv && !st; i++) st = strop__opts_add(&o, kv[2 * i], kv[2 * i + 1], 0, 0);
  if (!st) st = strop__model_add_opts(x->scratch, name, type, &o, in_names, n_in);
  strop__opts_free(&o);
  if (!st) snprintf(x->last, sizeof x->last, "%s", name);
  return st;
}

static strop_status add_composite(strop_model *m, const char *name, const strop__layer_vtable *vt,
                                  strop__opts *opts, const char *const *inputs, int n_inputs) {
  static const char fn[] = "strop_model_add";
  if (n_inputs > 1 || (n_inputs && (!inputs[0] || !*inputs[0])))
    return strop__err(STROP_E_INVALID_ARG, "%s: layer '%s' (%s) takes 1 input, got %d", fn, name,
                      vt->type, n_inputs);
  opts->layer = name;
  void *cfg = NULL;
  strop_status st = strop__layer_parse(vt, opts, &cfg);
  if (st) return st;
  strop_model *scratch = NULL;
  if ((st = strop_model_create(m->in_shape.rank, m->in_shape.d, &scratch))) {
    strop__free(cfg);
    return st;
  }
  expand_ctx x;
  memset(&x, 0, sizeof x);
  x.e.add = expand_add;
  x.e.ctx = &x;
  x.scratch = scratch;
  x.block = name;
  x.input = n_inputs ? inputs[0] : (m->n_nodes ? m->nodes[m->n_nodes - 1].name : "input");
  st = vt->expand(cfg, &x.e);
  strop__free(cfg);
  /* part names must be new in the real model too */
  for (int i = 0; !st && i < scratch->n_nodes; i++)
    if (names_find(m, scratch->nodes[i].name) >= 0)
      st = strop__err(STROP_E_INVALID_ARG,
                      "%s: layer '%s' (%s): a node named '%s' already "
                      "exists",
                      fn, name, vt->type, scratch->nodes[i].name);
  if (!st && m->n_nodes + scratch->n_nodes > m->cap_nodes) {
    int cap = m->cap_nodes ? m->cap_nodes : 16;
    while (cap < m->n_nodes + scratch->n_nodes) cap *= 2;
    st = nodes_reserve(m, cap, fn);
  }
  if (!st) {
    memcpy(m->nodes + m->n_nodes, scratch->nodes, (size_t)scratch->n_nodes * sizeof *m->nodes);
    m->n_nodes += scratch->n_nodes;
    scratch->n_nodes = 0; /* moved: the scratch model no longer owns them */
  }
  strop_model_free(scratch);
  return st;
}

strop_status strop_model_add(strop_model *model, const char *name, const char *type,
                             const char *options, const char *inputs) {
  static const char fn[] = "strop_model_add";
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  strop__opts o;
  strop_status s = strop__opts_parse(fn, options, &o);
  if (s) return s;
  /* split the comma-separated input list */
  char *names[16];
  int n_in = 0;
  char *copy = NULL;
  if (inputs && *inputs) {
    copy = strop__strdup(inputs);
    if (!copy) {
      strop__opts_free(&o);
      return STROP__NOMEM(fn);
    }
    /* names apart by commas or spaces; an empty name between commas is refused (",,," was
     * the previous node and "a,,b" was "a,b") */
    int comma = 0; /* a comma came since the last name (or the list starts) */
    for (char *p = copy;;) {
      while (*p == ' ') p++;
      if (*p == ',' ? comma || n_in == 0 : !*p && comma) {
        strop__free(copy);
        strop__opts_free(&o);
        return strop__err(STROP_E_INVALID_ARG,
                          "%s: layer '%s': inputs '%s' has an empty name between commas", fn,
                          name ? name : "(null)", inputs);
      }
      if (*p == ',') {
        comma = 1, p++;
        continue;
      }
      if (!*p) break;
      if (n_in == 16) {
        strop__free(copy);
        strop__opts_free(&o);
        return strop__err(STROP_E_INVALID_ARG, "%s: layer '%s': more than 16 inputs", fn, name);
      }
      names[n_in++] = p;
      comma = 0;
      while (*p && *p != ',' && *p != ' ') p++;
      if (*p == ',') comma = 1;
      if (*p) *p++ = '\0';
    }
  }
  s = strop__model_add_opts(model, name, type, &o, (const char *const *)names, n_in);
  if (s == STROP_E_INVALID_ARG && strncmp(strop_last_error(), fn, strlen(fn)) != 0)
    strop__err_prefix("%s", fn);
  strop__free(copy);
  strop__opts_free(&o);
  return s;
}

/* ---- finalize: resolve inputs, order topologically, infer shapes, allocate, init ---- */

static strop_status resolve_and_sort(strop_model *m) {
  static const char fn[] = "strop_model_finalize";
  int n = m->n_nodes;
  /* inputs through the names index: a scan of the nodes per input was quadratic in the nodes
   * (40000 took 3 s to finalize) */
  for (int i = 0; i < n; i++) {
    strop__node *nd = &m->nodes[i];
    for (int j = 0; j < nd->n_in; j++) {
      if (strcmp(nd->in_names[j], "input") == 0) {
        nd->in[j] = -1;
        continue;
      }
      int k = names_find(m, nd->in_names[j]);
      if (k < 0)
        return strop__err(STROP_E_NOT_FOUND, "%s: layer '%s': unknown input '%s'", fn, nd->name,
                          nd->in_names[j]);
      nd->in[j] = k;
    }
  }
  /* nodes that read only earlier ones are in the order the sort below would leave them in;
   * it scans from the first node for every node it places (quadratic: finalizing 40000 nodes
   * spent 0.25 s there) */
  int in_order = 1;
  for (int i = 0; i < n && in_order; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++) in_order &= m->nodes[i].in[j] < i;
  if (in_order) return STROP_OK;
  /* Kahn's algorithm, stable: keeps insertion order where the edges allow */
  int *order = strop__malloc((size_t)n * sizeof *order);
  int *done = strop__calloc((size_t)n, sizeof *done);
  if (!order || !done) {
    strop__free(order);
    strop__free(done);
    return STROP__NOMEM(fn);
  }
  int placed = 0;
  while (placed < n) {
    int progress = 0;
    for (int i = 0; i < n; i++) {
      if (done[i]) continue;
      int ready = 1;
      for (int j = 0; j < m->nodes[i].n_in; j++)
        if (m->nodes[i].in[j] >= 0 && !done[m->nodes[i].in[j]]) ready = 0;
      if (ready) {
        done[i] = 1;
        order[placed++] = i;
        progress = 1;
        break;
      }
    }
    if (!progress) {
      char list[300] = "";
      for (int i = 0, l = 0; i < n && l < 280; i++)
        if (!done[i])
          l += snprintf(list + l, sizeof list - (size_t)l, "%s'%s'", l ? ", " : "",
                        m->nodes[i].name);
      strop__free(order);
      strop__free(done);
      return strop__err(STROP_E_INVALID_ARG, "%s: the inputs form a cycle among %s", fn, list);
    }
  }
  /* permute nodes into topological order and remap input indices */
  strop__node *sorted = strop__malloc((size_t)n * sizeof *sorted);
  int *where = done; /* reuse: old index -> new index */
  if (!sorted) {
    strop__free(order);
    strop__free(done);
    return STROP__NOMEM(fn);
  }
  for (int i = 0; i < n; i++) {
    sorted[i] = m->nodes[order[i]];
    where[order[i]] = i;
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < sorted[i].n_in; j++)
      if (sorted[i].in[j] >= 0) sorted[i].in[j] = where[sorted[i].in[j]];
  memcpy(m->nodes, sorted, (size_t)n * sizeof *sorted);
  strop__model_names_stale(m);
  strop__free(sorted);
  strop__free(order);
  strop__free(done);
  return STROP_OK;
}

/* Points every tied slot at its owner and frees what the slot held of its own. A target must
 * be an untied parameter of the same shape. */
static strop_status resolve_ties(strop_model *m) {
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    for (int j = 0; j < nd->n_params; j++) nd->params[j].tied = NULL;
  }
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    for (int k = 0; k < nd->n_ties; k++) {
      strop__param *p = strop__node_param(nd, nd->tie_suffix[k]);
      if (!p)
        return strop__err(STROP_E_NOT_FOUND,
                          "layer '%s' (%s) has no parameter '%s' to tie to "
                          "'%s'",
                          nd->name, nd->vt->type, nd->tie_suffix[k], nd->tie_target[k]);
      strop__param *q = NULL;
      for (int a = 0; a < m->n_nodes && !q; a++)
        for (int b = 0; b < m->nodes[a].n_params && !q; b++)
          if (!strcmp(m->nodes[a].params[b].name, nd->tie_target[k])) q = &m->nodes[a].params[b];
      if (!q || q == p)
        return strop__err(STROP_E_NOT_FOUND,
                          "'%s' is tied to '%s', which is not a parameter "
                          "of the model",
                          p->name, nd->tie_target[k]);
      int same = q->rank == p->rank && q->numel == p->numel && !q->is_int64 && !p->is_int64;
      for (int d = 0; same && d < p->rank; d++) same = q->dims[d] == p->dims[d];
      if (!same) {
        char a[96], b[96];
        strop__shape sp = {p->rank, {0}}, sq = {q->rank, {0}};
        memcpy(sp.d, p->dims, sizeof sp.d);
        memcpy(sq.d, q->dims, sizeof sq.d);
        return strop__err(STROP_E_SHAPE, "'%s' %s cannot be tied to '%s' %s: the shapes differ",
                          p->name, strop__shape_str(&sp, a, sizeof a), q->name,
                          strop__shape_str(&sq, b, sizeof b));
      }
      p->tied = q; /* chains are followed below */
    }
  }
  /* a tie to a tied slot is a tie to its owner; a cycle has no owner (checked for every slot
   * before any slot's own memory is dropped, so a failure loses nothing) */
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++) {
      strop__param *p = &m->nodes[i].params[j], *o = p;
      int hops = 0;
      while (o->tied && hops++ <= m->n_nodes * STROP__MAX_SLOTS) o = o->tied;
      if (o->tied) return strop__err(STROP_E_INVALID_ARG, "'%s' is tied in a cycle", p->name);
    }
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++) {
      strop__param *p = &m->nodes[i].params[j], *o = p;
      while (o->tied) o = o->tied;
      if (o == p) continue;
      p->tied = o;
      strop__param_drop_values(p);
      strop__param_grad_free(p);
    }
  return STROP_OK;
}

strop_status strop__model_reindex(strop_model *m) {
  strop_status st = resolve_ties(m);
  if (st) return st;
  int total = 0;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++) total += !m->nodes[i].params[j].tied;
  strop__param **v = strop__malloc((size_t)(total ? total : 1) * sizeof *v);
  if (!v) return strop__err(STROP_E_NOMEM, "model: out of memory indexing parameters");
  int k = 0;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++)
      if (!m->nodes[i].params[j].tied) v[k++] = &m->nodes[i].params[j];
  strop__free(m->params);
  m->params = v;
  m->n_params = total;
  /* per-node execution arrays follow the node count */
  free_exec_arrays(m);
  size_t nn = (size_t)(m->n_nodes ? m->n_nodes : 1);
  m->acts = strop__calloc(nn, sizeof *m->acts);
  m->grads = strop__calloc(nn, sizeof *m->grads);
  m->upstream_trainable = strop__calloc(nn, sizeof *m->upstream_trainable);
  m->consumers = strop__calloc(nn, sizeof *m->consumers);
  m->run_shapes = strop__calloc(nn, sizeof *m->run_shapes);
  if (!m->acts || !m->grads || !m->upstream_trainable || !m->consumers || !m->run_shapes) {
    free_exec_arrays(m);
    return strop__err(STROP_E_NOMEM, "model: out of memory indexing parameters");
  }
  return STROP_OK;
}

/* Infers node i's output shape from its inputs (declaring its params). */
static strop_status infer_node(strop_model *m, int i) {
  strop__node *nd = &m->nodes[i];
  for (int j = 0; j < nd->n_in; j++)
    nd->in_shapes[j] = nd->in[j] < 0 ? m->in_shape : m->nodes[nd->in[j]].out_shape;
  strop__node_clear_params(nd);
  return nd->vt->infer(nd);
}

static strop_status alloc_params(strop__node *nd, int values) {
  for (int j = 0; j < nd->n_params; j++) {
    strop__param *p = &nd->params[j];
    if (p->is_int64) {
      if (p->idata) continue;
      p->idata = strop__calloc(1, sizeof(int64_t));
      if (!p->idata) return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", nd->name);
      continue;
    }
    if (p->data || p->tied || p->lowp.dtype || !values) continue;
    p->data = strop__malloc_aligned(p->numel * sizeof(float));
    if (!p->data)
      return strop__err(STROP_E_NOMEM, "layer '%s': out of memory for '%s'", nd->name, p->name);
    memset(p->data, 0, p->numel * sizeof(float));
  }
  return STROP_OK;
}

strop_status strop__model_infer_all(strop_model *m, uint64_t seed, int init) {
  strop__rng rng;
  strop__rng_seed(&rng, seed, 0x5eed);
  for (int i = 0; i < m->n_nodes; i++) {
    strop_status s = infer_node(m, i);
    if (s) return s;
    s = alloc_params(&m->nodes[i], init >= 0);
    if (s) return s;
    if (init > 0 && m->nodes[i].vt->init) m->nodes[i].vt->init(&m->nodes[i], &rng);
  }
  return STROP_OK;
}

strop_status strop_model_finalize(strop_model *m, uint64_t seed) {
  return strop__model_finalize(m, seed, 1);
}

strop_status strop__model_finalize(strop_model *m, uint64_t seed, int init) {
  static const char fn[] = "strop_model_finalize";
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (m->finalized) return strop__err(STROP_E_STATE, "%s: model is already finalized", fn);
  if (m->n_nodes == 0) return strop__err(STROP_E_INVALID_ARG, "%s: the model has no nodes", fn);
  strop_status s = resolve_and_sort(m);
  if (!s) s = strop__model_infer_all(m, seed, init);
  if (!s) s = strop__model_reindex(m);
  if (s) {
    for (int i = 0; i < m->n_nodes; i++) strop__node_clear_params(&m->nodes[i]);
    if (s == STROP_E_SHAPE || s == STROP_E_INVALID_ARG) {
      if (strncmp(strop_last_error(), fn, strlen(fn)) != 0) strop__err_prefix("%s", fn);
    }
    return s;
  }
  m->seed = seed;
  strop__rng_seed(&m->rng, seed, 0xd0);
  m->finalized = 1;
  return STROP_OK;
}

/* ---- execution ---- */
void strop__model_step_end(strop_model *m) {
  strop__arena_reset(&m->arena);
  m->have_forward = 0;
  m->input_grad = NULL;
  m->released = NULL;
  m->ckpt_first = m->ckpt_last = NULL;
  m->ckpt_rng = NULL;
  m->fwd_free = NULL;
  m->n_fwd_free = 0;
  m->plan_base = NULL;
  m->plan_off = NULL;
  m->plan_giter = NULL;
  m->plan_scratch = NULL;
  m->plan_bytes = 0;
  m->recompute = NULL;
  m->rows_fused = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    m->nodes[i].saved = NULL;
    m->acts[i].data = NULL;
    m->grads[i] = NULL;
  }
}

static void count_consumers(strop_model *m) {
  for (int i = 0; i < m->n_nodes; i++) m->consumers[i] = 0;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_in; j++)
      if (m->nodes[i].in[j] >= 0) m->consumers[m->nodes[i].in[j]]++;
}

/* Which nodes have a trainable parameter at or upstream of them (so a backward visits them):
 * m->upstream_trainable and each node's needs_backward. */
static void mark_upstream(strop_model *m) {
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    int up = 0;
    for (int j = 0; j < nd->n_params && !up; j++)
      up = nd->params[j].trainable && !nd->params[j].is_buffer;
    for (int j = 0; j < nd->n_in && !up; j++)
      up = nd->in[j] < 0 ? m->want_input_grad : m->upstream_trainable[nd->in[j]];
    m->upstream_trainable[i] = up;
    nd->needs_backward = up;
  }
}

/* The model's output and m->keep_act: stored whole to the end of the forward, whoever reads
 * them. */
static int keep_always(const strop_model *m, int i) {
  return i == m->n_nodes - 1 || i == m->keep_act;
}

/* Whether the backward of the unit of nodes [first, last] (a node, or a fused chain run by
 * its first node) reads the unit's output, and its inputs' data (their shapes it may): a
 * chain's inputs are its first node's, which says for the chain too (IN_UNREAD). */
static int unit_reads_out(const strop_model *m, int first, int last) {
  return first != last || !(m->nodes[first].vt->flags & STROP__LAYER_OUT_UNREAD);
}

/* The first node of the unit node k belongs to: k itself, or the chain k's fuse took it into. */
static int unit_first(const strop_model *m, int k) {
  while (k > 0 && m->nodes[k].fused < 0) k--;
  return k;
}

static int unit_reads_in(const strop_model *m, int first, int last) {
  const int f = m->nodes[first].vt->flags;
  return first != last ? !(f & STROP__LAYER_IN_UNREAD)
                       : !(f & (STROP__LAYER_IN_UNREAD | STROP__LAYER_IN_PLACE));
}

/* Whether node i (a unit ending at last) writes its output over its input k0: an in-place layer
 * (relu after a batch norm or a residual sum) that is its input's sole reader, when nothing
 * else needs that input: not the input's own backward (the producer never reads its output),
 * not a fused chain, not the model's input, output or kept activation. k0_live: k0's output is
 * stored and still held (not released, not moved). */
static int writes_in_place(const strop_model *m, int i, int last, const uint8_t *keep,
                           int k0_live) {
  const strop__node *nd = &m->nodes[i];
  const int k0 = nd->n_in == 1 ? nd->in[0] : -1;
  return k0 >= 0 && last == i && !m->keep_all && (nd->vt->flags & STROP__LAYER_IN_PLACE) &&
         m->consumers[k0] == 1 && !keep_always(m, k0) && m->nodes[k0].fused == 0 &&
         keep[k0] != 2 && (!m->upstream_trainable[k0] || !unit_reads_out(m, k0, k0)) && k0_live;
}

/* A free list of step memory: activations and gradients no one reads any more. */
typedef struct spare {
  float *p;
  size_t bytes;
} spare;

/* Takes the smallest entry of at least `bytes` off the list (*got its size), or NULL. */
static float *spare_take(spare *sp, int *n, size_t bytes, size_t *got) {
  int best = -1;
  for (int q = 0; q < *n; q++)
    if (sp[q].bytes >= bytes && (best < 0 || sp[q].bytes < sp[best].bytes)) best = q;
  if (best < 0) return NULL;
  float *p = sp[best].p;
  *got = sp[best].bytes;
  sp[best] = sp[--*n];
  return p;
}

static size_t act_bytes(const strop_model *m, int k) {
  return strop__shape_numel(&m->acts[k].shape) * sizeof(float) * (size_t)m->batch;
}

/* The bytes of node k's output at batch n, before the forward has run. */
static size_t act_bytes_n(const strop_model *m, int k, int64_t n) {
  return strop__shape_numel(&m->run_shapes[k]) * sizeof(float) * (size_t)n;
}

/* ---- activation checkpointing ---- */

/* The length of the block name of node `name` under pattern: its shortest proper dotted prefix
 * that the glob matches, or with "auto" whose last component is a number or ends in "_<number>"
 * (transformer.h.3, layer2.1, features.5, encoder.layers.encoder_layer_7); 0 when none. */
static size_t block_key(const char *pattern, const char *name) {
  const int is_auto = !strcmp(pattern, "auto");
  char pre[256];
  size_t start = 0; /* of the current component */
  for (size_t p = 0; name[p]; p++) {
    if (name[p] != '.') continue;
    if (is_auto) {
      size_t d = p;
      while (d > start && name[d - 1] >= '0' && name[d - 1] <= '9') d--;
      if (d < p && (d == start || (d > start + 1 && name[d - 1] == '_'))) return p;
    } else if (p < sizeof pre) {
      memcpy(pre, name, p);
      pre[p] = '\0';
      if (strop__glob_match(pattern, pre)) return p;
    }
    start = p + 1;
  }
  return 0;
}

int strop__model_blocks(const strop_model *m, const char *pattern, int *first) {
  int blocks = 0;
  size_t klen = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const char *name = m->nodes[i].name;
    const size_t k = pattern ? block_key(pattern, name) : 0;
    first[i] = -1;
    /* the same block as node i - 1: the same name prefix */
    if (k && i > 0 && k == klen && !strncmp(name, m->nodes[i - 1].name, k)) {
      int b0 = first[i - 1] >= 0 ? first[i - 1] : i - 1;
      if (first[i - 1] < 0) {
        first[i - 1] = b0;
        blocks++;
      }
      first[i] = b0;
    }
    klen = k;
  }
  return blocks;
}

/* The checkpointed blocks of this step (m->ckpt_*), after count_consumers and mark_upstream:
 * the blocks of m->ckpt_pattern through which the step can recompute, that is those whose
 * nodes' outputs are read only inside the block but for the last node's, that hold neither the
 * model's output nor m->keep_act, and that a backward visits. */
static strop_status plan_checkpoints(strop_model *m) {
  const int nn = m->n_nodes;
  m->ckpt_first = m->ckpt_last = NULL;
  m->ckpt_rng = NULL;
  if (!m->ckpt_pattern || m->keep_all) return STROP_OK;
  int *first = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *first);
  int *last = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *last);
  strop__rng *rng = strop__arena_calloc(&m->arena, (size_t)nn * sizeof *rng);
  if (!first || !last || !rng) return strop__err(STROP_E_NOMEM, "forward: out of memory");
  if (!strop__model_blocks(m, m->ckpt_pattern, first)) return STROP_OK;
  for (int i = 0; i < nn; i++) last[i] = -1;
  for (int i = 0; i < nn; i++)
    if (first[i] >= 0) last[first[i]] = i;
  for (int b0 = 0; b0 < nn; b0++) {
    if (first[b0] != b0) continue;
    const int b1 = last[b0];
    int ok = 0;
    for (int j = b0; j <= b1; j++) ok |= m->upstream_trainable[j];
    for (int j = b0; j <= b1 && ok; j++) ok = j != nn - 1 && j != m->keep_act;
    /* a reader after the block of anything but its last node */
    for (int i = b1 + 1; i < nn && ok; i++)
      for (int k = 0; k < m->nodes[i].n_in && ok; k++)
        ok = m->nodes[i].in[k] < b0 || m->nodes[i].in[k] >= b1;
    if (!ok)
      for (int j = b0; j <= b1; j++) first[j] = -1;
  }
  m->ckpt_first = first;
  m->ckpt_last = last;
  m->ckpt_rng = rng;
  return STROP_OK;
}

/* Whether a backward reads node k's output as the recompute of the checkpointed block ending at
 * b1 makes it (k stored by the recompute, b0 <= k <= b1): the block's last node's (its readers
 * after the block have had their backward, but its own may read it), a fused chain's stored
 * first output, an output its own unit's backward reads, or one a reader in the block reads
 * (nothing after the block reads it). Any other output is dead once its readers' forwards in
 * the recompute have run. */
static int ckpt_reads(const strop_model *m, int k, int b1) {
  if (k == b1 || m->nodes[k].fused > 0) return 1;
  if (unit_reads_out(m, unit_first(m, k), k)) return 1;
  for (int j = k + 1; j <= b1; j++) {
    const strop__node *r = &m->nodes[j];
    if (r->fused < 0) continue;
    for (int q = 0; q < r->n_in; q++)
      if (r->in[q] == k && unit_reads_in(m, j, j + r->fused)) return 1;
  }
  return 0;
}

strop_status strop_model_set_checkpointing(strop_model *m, const char *pattern) {
  static const char fn[] = "strop_model_set_checkpointing";
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (pattern && !*pattern) pattern = NULL;
  if (pattern && strlen(pattern) > 200)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the pattern is %zu characters long, at most "
                      "200",
                      fn, strlen(pattern));
  if (pattern && m->finalized) {
    int *first = strop__malloc((size_t)m->n_nodes * sizeof *first);
    if (!first) return STROP__NOMEM(fn);
    const int blocks = strop__model_blocks(m, pattern, first);
    strop__free(first);
    if (!blocks)
      return strop__err(STROP_E_NOT_FOUND,
                        "%s: '%s' names no block of two or more "
                        "consecutive nodes (e.g. 'transformer.h.*' for nodes "
                        "'transformer.h.3.attn', ...; or 'auto')",
                        fn, pattern);
  }
  char *copy = NULL;
  if (pattern && !(copy = strop__strdup(pattern))) return STROP__NOMEM(fn);
  if (m->have_forward) strop__model_step_end(m); /* the step's plan followed the old pattern */
  strop__free(m->ckpt_pattern);
  m->ckpt_pattern = copy;
  return STROP_OK;
}

strop_status strop_model_set_compute_dtype(strop_model *m, int dtype) {
  static const char fn[] = "strop_model_set_compute_dtype";
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (dtype != STROP_DTYPE_F32 && dtype != STROP_DTYPE_BF16)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: dtype must be STROP_DTYPE_F32 (0) or STROP_DTYPE_BF16 (1), got %d%s",
                      fn, dtype,
                      dtype == STROP_DTYPE_INT8 ? " (int8 is a storage of frozen weights: "
                                                  "strop_model_set_frozen_dtype)"
                                                : "");
  if (m->have_forward) strop__model_step_end(m); /* its backward would mix the two */
  m->compute_dtype = dtype;
  if (dtype == STROP_DTYPE_F32) /* the BF16 copies are of no more use */
    for (int i = 0; i < m->n_nodes; i++)
      for (int j = 0; j < m->nodes[i].n_params; j++) {
        strop__lowp_free(&m->nodes[i].params[j].shadow);
        m->nodes[i].params[j].shadow_released = 0; /* read again when the products are */
      }
  return STROP_OK;
}

int strop_model_compute_dtype(const strop_model *m) { return m ? m->compute_dtype : -1; }

strop_status strop_model_set_weight_cache(strop_model *m, int enabled) {
  static const char fn[] = "strop_model_set_weight_cache";
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (enabled != 0 && enabled != 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: enabled must be 0 or 1, got %d", fn, enabled);
  m->weight_cache = enabled;
  if (!enabled) /* the trained weights' copies are of no more use; the frozen ones' stay */
    for (int i = 0; i < m->n_nodes; i++)
      for (int j = 0; j < m->nodes[i].n_params; j++)
        if (m->nodes[i].params[j].trainable) strop__lowp_free(&m->nodes[i].params[j].shadow);
  return STROP_OK;
}

int strop_model_weight_cache(const strop_model *m) { return m ? m->weight_cache : -1; }

strop_status strop_model_set_attention(strop_model *m, int mode) {
  static const char fn[] = "strop_model_set_attention";
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (mode != STROP_ATTENTION_AUTO && mode != STROP_ATTENTION_TILED &&
      mode != STROP_ATTENTION_MATERIALIZED)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: mode must be STROP_ATTENTION_AUTO (0), _TILED (1) or _MATERIALIZED "
                      "(2), got %d",
                      fn, mode);
  m->attention = mode; /* a pending backward keeps its forward's choice (the layers saved it) */
  return STROP_OK;
}

int strop_model_attention(const strop_model *m) { return m ? m->attention : -1; }

int64_t strop_model_get_checkpointing(const strop_model *m, char *buf, size_t cap) {
  static const char fn[] = "strop_model_get_checkpointing";
  if (!m) {
    strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
    return -1;
  }
  return strop__copy_out(fn, m->ckpt_pattern ? m->ckpt_pattern : "", buf, cap);
}

int64_t strop_model_checkpoint_blocks(const strop_model *m) {
  if (!m) {
    strop__err(STROP_E_INVALID_ARG, "strop_model_checkpoint_blocks: model is NULL");
    return -1;
  }
  if (!m->ckpt_pattern || !m->finalized) return 0;
  int *first = strop__malloc((size_t)m->n_nodes * sizeof *first);
  if (!first) {
    strop__err(STROP_E_NOMEM, "strop_model_checkpoint_blocks: out of memory");
    return -1;
  }
  const int blocks = strop__model_blocks(m, m->ckpt_pattern, first);
  strop__free(first);
  return blocks;
}

/* Whether node b may be computed by a layer before it: no parameters, or, in a training
 * step, none that trains and no batch statistics (a frozen norm with its statistics frozen),
 * so that what it computes is a fixed function its absorber may fold in. Not in eval mode:
 * folding moves the rounding, and a model's predictions must not depend on what is frozen. */
static int fusable(const strop__node *b, int training) {
  if (!b->n_params) return 1;
  if (!training) return 0;
  for (int j = 0; j < b->n_params; j++) {
    const strop__param *p = strop__param_owner(&b->params[j]);
    if (p->trainable && !p->is_buffer) return 0;
  }
  return !(b->vt->flags & STROP__LAYER_BATCHSTATS) || b->frozen_stats;
}

/* The input of node b, read after node j in a chain that starts at node i, from before the
 * chain (node < i, or -1: the model's input), when b may read one beside j: a two-input node,
 * the chain's only such (has_side 0), of a chain no backward runs through and no checkpointed
 * block holds — or any chain when node i's layer hands that input's gradient back
 * (STROP__LAYER_SIDE_GRAD) and the input is none of node i's own (one pass writing a gradient
 * twice would need the two writes' order); -2 otherwise. *slot: b's input slot it fills. */
static int side_input(const strop_model *m, int i, int j, const strop__node *b, int has_side,
                      int *slot) {
  const strop__node *f = &m->nodes[i];
  const int grad = (f->vt->flags & STROP__LAYER_SIDE_GRAD) != 0;
  if (b->n_in != 2 || has_side || (!grad && (m->upstream_trainable[i] || m->ckpt_first)) ||
      (b->in[0] == j) == (b->in[1] == j))
    return -2;
  *slot = b->in[0] == j;
  const int k = b->in[*slot];
  for (int q = 0; q < f->n_in; q++)
    if (f->in[q] == k) return -2;
  return k < i ? k : -2;
}

/* The input from before the chain that the fused chain [i, last] reads beside its first node's
 * (a two-input node plan_fusion offered), -2 when none; *slot: the input slot it fills. */
static int chain_side(const strop_model *m, int i, int last, int *slot) {
  *slot = 0;
  for (int q = i + 1; q <= last; q++) {
    const strop__node *b = &m->nodes[q];
    if (b->n_in == 2) {
      *slot = b->in[0] == q - 1;
      return b->in[*slot];
    }
  }
  return -2;
}

/* Asks each layer that can fuse which of the nodes after it it computes itself (see
 * strop__layer_vtable.fuse): a chain of sole readers but for the first node's output, which
 * others after the chain may read too (shared: then it is stored as well), none of whose
 * outputs but the last is the model's output or m->keep_act. A chain's nodes are all visited
 * by a backward or none of them (the first decides what is kept and saved). Where none is, one
 * of them may read a second input from before the chain (side_input: a residual sum after a
 * frozen trunk's conv), which the first node's forward then reads and releases. */
static void plan_fusion(strop_model *m, int training) {
  const int nn = m->n_nodes;
  for (int i = 0; i < nn; i++) m->nodes[i].fused = m->nodes[i].fused_shared = 0;
  for (int i = 0; i < nn; i++) {
    strop__node *nd = &m->nodes[i];
    if (nd->fused < 0 || !nd->vt->fuse) continue;
    const int exact = (nd->vt->flags & STROP__LAYER_FUSE_EXACT) != 0;
    strop__node *next[STROP__FUSE_MAX];
    int len = 0, shared = 0, has_side = 0, slot;
    for (int j = i; !m->no_fusion && len < STROP__FUSE_MAX && j + 1 < nn; j++) {
      const strop__node *b = &m->nodes[j + 1];
      const int side = side_input(m, i, j, b, has_side, &slot) >= -1;
      if (j == m->keep_act || (m->consumers[j] != 1 && j != i) ||
          ((b->n_in != 1 || b->in[0] != j) && !side) || !(exact || fusable(b, training)) ||
          m->upstream_trainable[j + 1] != m->upstream_trainable[i] ||
          (m->ckpt_first && m->ckpt_first[j + 1] != m->ckpt_first[i]))
        break; /* nor does a chain cross the edge of a checkpointed block */
      if (j == i) shared = m->consumers[i] - 1;
      has_side |= side;
      next[len++] = &m->nodes[j + 1];
    }
    int k = nd->vt->fuse(nd, next, len, len ? shared : 0);
    if (k < 0 || k > len) k = 0; /* a layer's bug must not become the graph's */
    nd->fused = k;
    nd->fused_shared = k > 0 && shared > 0;
    for (int j = 1; j <= k; j++) m->nodes[i + j].fused = -1;
  }
}

/* Every node's output shape for per-sample input shape in (m->run_shapes), unless they are
 * the ones already there. A shape a layer refuses is an error naming the layer. */
static strop_status shape_pass(strop_model *m, const strop__shape *in) {
  if (m->run_valid && strop__shape_eq(in, &m->run_in)) return STROP_OK;
  m->run_valid = 0;
  strop__shape ins_local[16];
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    strop__shape *ins = ins_local;
    if (nd->n_in > 16 && !(ins = strop__malloc((size_t)nd->n_in * sizeof *ins)))
      return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", nd->name);
    for (int j = 0; j < nd->n_in; j++) ins[j] = nd->in[j] < 0 ? *in : m->run_shapes[nd->in[j]];
    strop_status s = nd->vt->shape(nd, ins, &m->run_shapes[i]);
    if (ins != ins_local) strop__free(ins);
    if (s) return s;
  }
  m->run_in = *in;
  m->run_valid = 1;
  return STROP_OK;
}

strop_status strop__model_output_for(strop_model *m, const strop__shape *in, strop__shape *out) {
  if (!m->finalized) return strop__err(STROP_E_STATE, "model is not finalized");
  if (in->rank != m->in_shape.rank) {
    char a[128], b[128];
    return strop__err(STROP_E_SHAPE, "input has shape [N, %s, the model expects [N, %s",
                      strop__shape_str(in, a, sizeof a) + 1,
                      strop__shape_str(&m->in_shape, b, sizeof b) + 1);
  }
  strop_status s = shape_pass(m, in);
  if (s) return s;
  *out = m->run_shapes[m->n_nodes - 1];
  return STROP_OK;
}

/* Whether node i's output need not be kept for its reader's backward because that backward
 * computes it again (STROP__LAYER_RECOMPUTE: gelu, silu): i is a node by itself whose backward
 * reads neither its output nor anything but its input k, k is kept anyway (i's own backward
 * reads it, so it lives until the backward has passed i), and i's one reader is a node by
 * itself that a backward visits and that reads its input (fc2 after BERT's and GPT-2's gelu:
 * the output, as large as its input, goes once fc2's forward has run). Not inside a
 * checkpointed block (the block's recompute makes its outputs again anyway) nor where everything
 * is kept. */
static int recomputed(const strop_model *m, int i, const uint8_t *keep) {
  const strop__node *nd = &m->nodes[i];
  const int *ckf = m->ckpt_first;
  if ((ckf && ckf[i] >= 0) || m->keep_all || !(nd->vt->flags & STROP__LAYER_RECOMPUTE) ||
      nd->fused != 0 || nd->n_in != 1 || nd->in[0] < 0 || keep_always(m, i) ||
      m->consumers[i] != 1 || keep[i] != 1 || unit_reads_out(m, i, i) ||
      !m->upstream_trainable[i])
    return 0;
  const int k = nd->in[0];
  if (m->nodes[k].fused != 0 || keep[k] != 1) return 0;
  for (int j = i + 1; j < m->n_nodes; j++)
    for (int q = 0; q < m->nodes[j].n_in; q++)
      if (m->nodes[j].in[q] == i) /* (a last node left to the loss runs after the forward) */
        return m->nodes[j].fused == 0 && m->upstream_trainable[j] && unit_reads_in(m, j, j) &&
               !(m->rows_fused && j == m->n_nodes - 1) && !(ckf && ckf[j] >= 0);
  return 0;
}

/* ---- the last node fused with a loss over its rows (strop__row_loss) ---- */

int strop__fused_loss = -1;
int64_t strop__fused_loss_rows = 0;

/* strop__fused_loss, else STROP_FUSED_LOSS in the environment, read once ("0": never). */
static int fused_loss_on(void) {
  static int env = -2; /* -2: not read yet */
  if (strop__fused_loss >= 0) return strop__fused_loss;
  int e = __atomic_load_n(&env, __ATOMIC_RELAXED);
  if (e == -2) {
    const char *v = getenv("STROP_FUSED_LOSS");
    e = v && !strcmp(v, "0") ? 0 : 1;
    __atomic_store_n(&env, e, __ATOMIC_RELAXED);
  }
  return e;
}

/* Whether this step's forward leaves the last node to the caller's loss over its rows (after
 * plan_fusion and plan_checkpoints): asked for, its layer allows it (vtable `rows`), it runs
 * by itself, nothing else reads its output (the model's output is read by the loss only unless
 * it is m->keep_act), and the step is an ordinary one: not the reference layout of tests
 * (keep_all), not a decode, not a data-parallel rank's share (whose draws skip other rows per
 * call), and in training a backward visits it. */
static int rows_fusable(const strop_model *m, int training) {
  const int nn = m->n_nodes;
  if (!m->want_rows || nn < 1 || !fused_loss_on()) return 0;
  const strop__node *nd = &m->nodes[nn - 1];
  return nd->vt->rows && nd->vt->rows(nd) && nd->n_in == 1 && nd->fused == 0 &&
         m->keep_act != nn - 1 && !m->keep_all && !m->decode && !m->rows_before &&
         !m->rows_after && (!training || m->upstream_trainable[nn - 1]) &&
         !(m->ckpt_first && m->ckpt_first[nn - 1] >= 0) && m->run_shapes[nn - 1].rank >= 1;
}

int strop__rows_chunk_grads = 1;
size_t strop__rows_chunk_bytes = STROP__ROWS_CHUNK_BYTES;

int64_t strop__rows_chunk(int64_t rows, int64_t cols, size_t grad_bytes) {
  int64_t c = strop__fused_loss_rows;
  if (c <= 0) {
    size_t bytes = strop__rows_chunk_bytes;
    if (strop__rows_chunk_grads && grad_bytes > bytes) bytes = grad_bytes;
    c = (int64_t)(bytes / ((size_t)cols * sizeof(float)));
    if (c < STROP__ROWS_CHUNK_MIN) c = STROP__ROWS_CHUNK_MIN;
    if (c < rows) {
      /* as many chunks as that takes, of even size, each a whole number of the 32 rows the
       * product with a weight read in place computes at once (sgemm_sup_t pads a chunk to
       * them: 83 rows cost 96) */
      const int64_t n = (rows + c - 1) / c, a = STROP__ROWS_CHUNK_ALIGN;
      c = ((rows + n - 1) / n + a - 1) / a * a;
    }
  }
  return c < rows ? c : rows;
}

/* ---- the step's activations and gradients, planned from their lifetimes ---- */

/* Whether p points into the step's planned region (its memory is never put on a free list:
 * the plan has given it to a later tensor already). */
static int in_plan(const strop_model *m, const void *p) {
  const unsigned char *c = p;
  return m->plan_base && c >= m->plan_base && c < m->plan_base + m->plan_bytes;
}

/* The step's clock (plan_lifetimes): node i's forward takes its output at tick 2 i and lets
 * go of its inputs at 2 i + 1; from tick 2 n_nodes on, the backward's iteration i (from the
 * last node down) lets go of node i + 1's output, then (at the last node of a checkpointed
 * block) runs the block's forward again, two ticks a unit as in the forward, takes the
 * gradients of its inputs at the next tick and gives back its own output's gradient one tick
 * after that. */

static void account_add(strop__step_account *a, const char *type, size_t kept, size_t saved) {
  int t = 0;
  while (t < a->n_types && strcmp(a->type[t], type)) t++;
  if (t == a->n_types) {
    if (t == STROP__ACCOUNT_TYPES) t--; /* the rest under the last type seen */
    else a->type[a->n_types++] = type;
  }
  a->kept[t] += kept;
  a->saved[t] += saved;
}

int strop__memory_plan = -1;

/* Whether steps are planned: strop__memory_plan (tests), else STROP_MEMORY_PLAN in the
 * environment, read once ("0": the free list, to measure one against the other), else yes. */
static int memory_plan_on(void) {
  static int env = -2; /* -2: not read yet */
  if (strop__memory_plan >= 0) return strop__memory_plan;
  int e = __atomic_load_n(&env, __ATOMIC_RELAXED);
  if (e == -2) {
    const char *v = getenv("STROP_MEMORY_PLAN");
    e = v && !strcmp(v, "0") ? 0 : 1;
    __atomic_store_n(&env, e, __ATOMIC_RELAXED);
  }
  return e;
}

int strop__plan_scratch = 1;
int strop__plan_grads = 1;
int strop__din_first_writer = 1;
size_t strop__plan_scratch_min = (size_t)1 << 20;

/* The scratch node i's forward (backward 0) or backward (1) asks for (vtable `scratch`), for
 * the step's shapes at batch n; 0 when it plans none. A probe of the memory estimate plans none:
 * its steps at 2 and 4 samples are extrapolated to the batch, and with the scratch placed among
 * dead tensors the peak is the largest of several lines in n — convex, so the line through two
 * small batches fell short of the batch's (the ResNet-50 frozen trunk at 2 threads 11-12%
 * under); with the scratch above the region each part grows as a line, and the estimate is the
 * step's peak with its scratch on top: at most the scratch's size over the planned step. */
static size_t node_scratch(const strop_model *m, int i, const strop__exec *x, int64_t n,
                           int backward) {
  const strop__node *nd = &m->nodes[i];
  strop__shape in[16];
  if (!strop__plan_scratch || m->probe || !nd->vt->scratch || nd->n_in > 16) return 0;
  for (int j = 0; j < nd->n_in; j++) in[j] = nd->in[j] < 0 ? m->run_in : m->run_shapes[nd->in[j]];
  const size_t b = nd->vt->scratch(nd, x, in, n, backward);
  return b >= strop__plan_scratch_min ? b : 0;
}

/* A node's slots in the plan (m->plan_off[slot * n_nodes + i]): its output, its output's
 * gradient, its output computed again for its reader's backward (STROP__LAYER_RECOMPUTE), the
 * scratch of its forward and of its backward, in a checkpointed block the output and the
 * forward's scratch of the block's recompute, and for an output held in BF16 between its
 * readers' forwards and backwards (m->compact) its BF16 values and their widened copy. */
enum {
  PLAN_OUT,
  PLAN_GRAD,
  PLAN_RECOMPUTE,
  PLAN_FWD_SCRATCH,
  PLAN_BWD_SCRATCH,
  PLAN_CKPT_OUT,
  PLAN_CKPT_SCRATCH,
  PLAN_COMPACT,
  PLAN_WIDEN,
  PLAN_SLOTS
};

int strop__compact_acts = 1;
int strop__compact_centred = 1;
int strop__compact_held = 1;

/* Which outputs the step may hold in BF16 between their last reader's forward and their first
 * reader's backward (m->compact, NULL for none): with the model's products in BF16 and the step
 * planned, an output the backward keeps (keep 1), of a node or of a fused chain (not a
 * checkpointed block's, not one recomputed), whose own unit's backward does not read it or
 * reads only its sign (vtable out_sign_only: a residual chain's relu select), and whose every
 * reader reads it only through products that round it to BF16 (vtable bf16_input), or never
 * in its backward (IN_UNREAD; the sum's other operand a chain reads in its forward): BERT's and
 * GPT-2's layer norm outputs before their projections, the projections' q, k and v before the
 * attention, a ResNet block's norm-and-relu outputs and its output before the convs that read
 * them. Widened back for the backward, the values those products round are the ones they
 * rounded before, and each keeps its sign (strop__bf16_compact_par): the same bits, and half the
 * bytes kept across the step. Such an output whose sole reader's backward reads it as its
 * deviations from a centre per channel (vtable bf16_centred: a ResNet's conv output before its
 * batch norm) is held as those deviations in BF16 instead (2), which that backward reads as they
 * are (x->centred_in): not the values, and not widened (strop__compact_centred). An output
 * held as its values whose every reader's backward reads it as it is held (vtable bf16_input 2:
 * a conv's or a trained linear layer's weight gradient on vdpbf16ps), or not at all, and whose
 * own unit reads back only its signs from it too (out_sign_only 2: a norm chain's relu) or
 * nothing, is widened by none (3): the backwards get it as x->held_in and x->held_out
 * (strop__compact_held). */
static strop_status compact_plan(strop_model *m, const uint8_t *keep, const strop__exec *x) {
  const int nn = m->n_nodes;
  m->compact = NULL;
  if (!strop__compact_acts || x->compute_dtype != STROP__LOWP_BF16 || m->keep_all ||
      !memory_plan_on())
    return STROP_OK;
  uint8_t *c = strop__arena_calloc(&m->arena, (size_t)nn);
  uint8_t *unheld = strop__arena_calloc(&m->arena, (size_t)nn); /* a reader widens it */
  if (!c || !unheld) return strop__err(STROP_E_NOMEM, "forward: out of memory");
  const int *ckf = m->ckpt_first;
  for (int k = 0; k < nn; k++) {
    const int h = unit_first(m, k); /* k's output is its unit's when it is the unit's last */
    const strop__node *hd = &m->nodes[h];
    const int unit_out = h == k ? hd->fused == 0 : hd->fused > 0 && h + hd->fused == k;
    const int reads = m->upstream_trainable[h] && unit_reads_out(m, h, k) &&
                      !(hd->vt->out_sign_only && hd->vt->out_sign_only(hd));
    c[k] = keep[k] == 1 && !keep_always(m, k) && unit_out && !hd->fused_shared &&
           m->consumers[k] > 0 && !(m->recompute && m->recompute[k]) &&
           !(ckf && (ckf[k] >= 0 || ckf[h] >= 0)) && !reads;
    /* its own unit's backward reads its sign as it is held (out_sign_only 2), or nothing */
    unheld[k] = m->upstream_trainable[h] && unit_reads_out(m, h, k) &&
                !(hd->vt->out_sign_only && hd->vt->out_sign_only(hd) == 2);
  }
  for (int r = 0; r < nn; r++) {
    const strop__node *rd = &m->nodes[r];
    for (int j = 0; j < rd->n_in; j++) {
      const int k = rd->in[j];
      if (k < 0 || !c[k]) continue;
      /* a chain's later node reads only the sum's other operand from outside the chain, in the
       * chain's forward: its backward reads its first node's inputs alone (keep) */
      const int unread = rd->fused < 0 ||
                         (rd->fused == 0 && (rd->vt->flags & STROP__LAYER_IN_UNREAD));
      const int rounds = !unread && rd->fused == 0 && rd->vt->bf16_input
                             ? rd->vt->bf16_input(rd, x, j)
                             : 0;
      const int around = strop__compact_centred && m->consumers[k] == 1 && rd->fused >= 0 &&
                         j == 0 && m->run_shapes[k].rank >= 1 && rd->vt->bf16_centred &&
                         rd->vt->bf16_centred(rd, x, j, NULL);
      c[k] = ckf && ckf[r] >= 0 ? 0 : unread || rounds ? 1 : around ? 2 : 0;
      unheld[k] |= !unread && rounds != 2;
    }
  }
  /* read as they are held by every backward that reads them (3): none widens them */
  for (int k = 0; k < nn && strop__compact_held; k++)
    if (c[k] == 1 && !unheld[k]) c[k] = 3;
  m->compact = c;
  return STROP_OK;
}

int strop__hold_recomputable = 1;

/* Whether node i, which recomputed() would compute again for its reader's backward, is held in
 * BF16 for it instead (strop__hold_recomputable): the step computes in BF16 and holds its
 * activations so (compact_plan), and that reader's backward reads the input as it is held
 * (vtable bf16_input 2: a trained linear layer's weight gradient on vdpbf16ps, the values its
 * product would round). BERT's and GPT-2's GELU output before fc2: rounding it costs one pass
 * over the values, half as many bytes kept; computing it again cost the GELU's forward a second
 * time. The same bits either way. */
static int held_instead(const strop_model *m, int i, const strop__exec *x) {
  if (!strop__hold_recomputable || !strop__compact_acts || !strop__compact_held ||
      x->compute_dtype != STROP__LOWP_BF16 || m->keep_all || !memory_plan_on())
    return 0;
  for (int j = i + 1; j < m->n_nodes; j++)
    for (int q = 0; q < m->nodes[j].n_in; q++)
      if (m->nodes[j].in[q] == i)
        return m->nodes[j].vt->bf16_input && m->nodes[j].vt->bf16_input(&m->nodes[j], x, q) == 2;
  return 0;
}

/* Node k's output, whose last reader's forward has run, rounded to BF16 where the plan put it
 * (PLAN_COMPACT) and its FP32 memory given up; left as it is where the plan has no place for
 * it (a step too large to plan). */
static strop_status compact_act(strop_model *m, int k, int reader, int slot,
                                const strop__exec *x) {
  const size_t q = (size_t)PLAN_COMPACT * (size_t)m->n_nodes + (size_t)k;
  if (!m->plan_off || m->plan_off[q] == SIZE_MAX) return STROP_OK;
  strop__act *a = &m->acts[k];
  uint16_t *h = (uint16_t *)(void *)(m->plan_base + m->plan_off[q]);
  const size_t per = strop__shape_numel(&a->shape), numel = per * (size_t)a->n;
  if (m->compact[k] == 2) { /* around its sole reader's centres, one per channel */
    const strop__node *rd = &m->nodes[reader];
    const float *ctr = NULL;
    if (!rd->vt->bf16_centred(rd, x, slot, &ctr) || !ctr)
      return strop__err(STROP_E_INTERNAL, "forward: layer '%s' gave no centres for its input",
                        rd->name);
    const size_t ch = (size_t)a->shape.d[0];
    strop__bf16_compact_centred_par(a->data, h, (size_t)a->n * ch, per / ch, ch, ctr);
  } else {
    strop__bf16_compact_par(a->data, h, numel);
  }
  a->data = NULL;
  m->released[k] = STROP__ACT_COMPACT;
  return STROP_OK;
}

/* Node k's output as the step holds it in BF16 (compact_act) */
static const uint16_t *held_at(const strop_model *m, int k) {
  const size_t q = (size_t)PLAN_COMPACT * (size_t)m->n_nodes + (size_t)k;
  return (const uint16_t *)(const void *)(m->plan_base + m->plan_off[q]);
}

/* x->held_in's slots for a backward of n inputs, all NULL: local's 16, or the arena's */
static const uint16_t **held_slots(strop_model *m, int n, const uint16_t **local) {
  const uint16_t **h = n <= 16
                           ? local
                           : strop__arena_alloc(&m->arena, (size_t)n * sizeof(const uint16_t *));
  for (int j = 0; h && j < n; j++) h[j] = NULL;
  return h;
}

/* Node k's output held in BF16, widened back to FP32 (exactly) for its readers' backwards:
 * where the plan put it (PLAN_WIDEN), else in the arena until the step ends. */
static strop_status widen_act(strop_model *m, int k) {
  const size_t nn = (size_t)m->n_nodes,
               numel = strop__shape_numel(&m->run_shapes[k]) * (size_t)m->batch;
  const uint16_t *h = held_at(m, k);
  const size_t qw = PLAN_WIDEN * nn + (size_t)k;
  float *f = m->plan_off[qw] != SIZE_MAX ? (float *)(void *)(m->plan_base + m->plan_off[qw])
                                         : strop__arena_alloc(&m->arena, numel * sizeof *f);
  if (!f)
    return strop__err(STROP_E_NOMEM,
                      "backward: layer '%s': out of memory for %zu bytes of its output "
                      "widened from BF16",
                      m->nodes[k].name, numel * sizeof *f);
  strop__bf16_expand_par(h, f, numel);
  m->acts[k].data = f;
  m->released[k] = STROP__ACT_KEPT;
  return STROP_OK;
}

/* x's planned scratch in slot `slot` of node i, of the size of its forward's (backward 0) or
 * backward's (1), if any. */
static void scratch_at(const strop_model *m, int i, strop__exec *x, int slot, int backward) {
  const size_t q = (size_t)slot * (size_t)m->n_nodes + (size_t)i;
  x->scratch = NULL;
  x->scratch_bytes = 0;
  if (!m->plan_off || m->plan_off[q] == SIZE_MAX) return;
  x->scratch = m->plan_base + m->plan_off[q];
  x->scratch_bytes = m->plan_scratch[(size_t)backward * (size_t)m->n_nodes + (size_t)i];
}

/* x's planned scratch for node i's forward (backward 0) or backward (1), if any. */
static void scratch_take(const strop_model *m, int i, strop__exec *x, int backward) {
  scratch_at(m, i, x, PLAN_FWD_SCRATCH + backward, backward);
}

/* Plans where every activation and activation gradient of the step lives, before the forward
 * runs: the forward and the backward below are followed tick by tick with the same decisions
 * (what is kept, what is written in place, when an output's last reader has run, which
 * gradients the backward takes when), each buffer is live from its first write to its last
 * read, and strop__arena_plan packs them into one region of the arena (greedy by size). The
 * free list's reuse left holes: a buffer went to the first later tensor that fit and the rest
 * of it was lost, and neighbours never merged (the backward's large early gradients then grew
 * the arena past everything the forward held). The layers' scratch (vtable `scratch`) is
 * planned with them, live for the tick of its call, instead of above the region: the step then
 * peaked at the whole region plus the largest scratch of any layer. A checkpointed block's
 * inner outputs live twice: from their forward to their last reader's in the forward, and again
 * from the block's recompute (just before its backward) to their last read in the backward —
 * two blocks of the plan, the recompute's scratch planned as the forward's. */
static strop_status plan_lifetimes(strop_model *m, const uint8_t *keep, int64_t n,
                                   const strop__exec *x, int dry, size_t *dry_bytes,
                                   size_t *dry_grads) {
  const int nn = m->n_nodes;
  if (!dry) {
    m->plan_base = NULL;
    m->plan_off = NULL;
    m->plan_giter = NULL;
    m->plan_scratch = NULL;
    m->plan_bytes = 0;
  }
  if (nn == 0 || !memory_plan_on()) return STROP_OK;
  strop__arena *a = &m->arena;
  const int *ckf = m->ckpt_first;
  const size_t n3 = PLAN_SLOTS * (size_t)nn;
  size_t *off = strop__arena_alloc(a, n3 * sizeof *off);
  size_t *idoff = strop__arena_alloc(a, n3 * sizeof *idoff);
  int *giter = strop__arena_alloc(a, (size_t)nn * sizeof *giter);
  /* per node and slot (PLAN_*): its block; ctid: the block a node's output is in now (the
   * forward's, or its block's recompute's) */
  int *tid = strop__arena_alloc(a, n3 * sizeof *tid);
  int *ctid = strop__arena_alloc(a, (size_t)nn * sizeof *ctid);
  int *left = strop__arena_alloc(a, (size_t)nn * sizeof *left);
  uint8_t *state = strop__arena_alloc(a, (size_t)nn);
  uint8_t *has_grad = strop__arena_calloc(a, (size_t)nn);
  size_t *sbytes = strop__arena_calloc(a, 2 * (size_t)nn * sizeof *sbytes);
  strop__arena_block *blk = strop__arena_alloc(a, n3 * sizeof *blk);
  int *placed = strop__arena_alloc(a, n3 * sizeof *placed);
  if (!off || !idoff || !giter || !tid || !ctid || !left || !state || !has_grad || !sbytes ||
      !blk || !placed)
    return strop__err(STROP_E_NOMEM, "forward: out of memory");
  for (size_t q = 0; q < n3; q++) tid[q] = -1;
  for (int i = 0; i < nn; i++) {
    left[i] = m->consumers[i];
    state[i] = STROP__ACT_KEPT;
    giter[i] = -1;
  }
  /* a training step plans the gradients of its trainable parameters that hold nothing yet
   * (none, or stale: zero) with the activations, from the backward that first writes them (a
   * tied weight's: the first of its nodes the backward reaches) to the step's end: in the
   * memory of the activations the backward has given back by then (an LM head run with its
   * loss writes its gradients in the backward as well: rows_run). A gradient that holds
   * values (a window's earlier backward, the host's strop_model_set_grad) keeps its own
   * memory. */
  const int plan_pgrads = dry ? dry == 2
                              : strop__plan_grads && !m->grads_apart && x->training && !m->probe;
  for (int k = 0; k < m->n_params; k++) {
    strop__param *p = m->params[k];
    const int free_grad = !p->grad || p->grad_stale;
    p->grad_block = plan_pgrads && p->trainable && !p->is_buffer && p->data && free_grad ? -1
                                                                                         : -2;
  }
  int nb = 0;
  /* the forward, as strop__model_forward_shaped runs it (a last node left to the loss runs
   * after it, a chunk at a time in scratch: its input lives on) */
  for (int i = 0; i < nn - (m->rows_fused ? 1 : 0); i++) {
    const strop__node *nd = &m->nodes[i];
    if (nd->fused < 0) continue;
    const int last = i + nd->fused;
    const int k0 = nd->n_in == 1 ? nd->in[0] : -1;
    if (writes_in_place(m, i, last, keep,
                        k0 >= 0 && tid[k0] >= 0 && state[k0] == STROP__ACT_KEPT)) {
      tid[last] = tid[k0];
      state[k0] = STROP__ACT_MOVED;
    } else {
      size_t bytes;
      if (strop__mul_overflow(strop__shape_numel(&m->run_shapes[last]) * sizeof(float), (size_t)n,
                              &bytes))
        return STROP_OK; /* the forward names the layer */
      blk[nb] = (strop__arena_block){bytes, 2 * i, INT_MAX, nb, 0};
      tid[last] = nb++;
    }
    if (nd->fused_shared) { /* the chain's first output, stored too */
      const size_t bytes = strop__shape_numel(&m->run_shapes[i]) * sizeof(float) * (size_t)n;
      blk[nb] = (strop__arena_block){bytes, 2 * i, INT_MAX, nb, 0};
      tid[i] = nb++;
      left[i]--; /* read by the chain's second node */
    }
    const size_t sb = node_scratch(m, i, x, n, 0); /* beside its inputs and output */
    if (sb) {
      blk[nb] = (strop__arena_block){sb, 2 * i, 2 * i, nb, 0};
      tid[3 * nn + i] = nb++;
      sbytes[i] = sb;
    }
    int slot;
    const int ks = chain_side(m, i, last, &slot); /* read by the chain too */
    for (int j = 0; j <= nd->n_in; j++) {
      const int k = j < nd->n_in ? nd->in[j] : ks;
      if (k < 0 || --left[k] > 0 || state[k]) continue;
      if (m->compact && m->compact[k] && tid[k] >= 0) { /* compact_act (keep[k] is 1) */
        blk[tid[k]].last = 2 * i + 1;
        blk[nb] = (strop__arena_block){act_bytes_n(m, k, n) / 2, 2 * i + 1, INT_MAX, nb, 0};
        tid[PLAN_COMPACT * nn + k] = nb++;
      }
      if (keep[k]) continue;
      state[k] = STROP__ACT_RELEASED;
      if (tid[k] >= 0) blk[tid[k]].last = 2 * i + 1;
    }
    i = last;
  }
  /* the backward, as strop__model_backward runs it (nodes that need one as they are now) */
  memcpy(ctid, tid, (size_t)nn * sizeof *ctid);
  for (int k = 0; k < nn; k++) /* held in BF16 until a reader's backward widens them */
    if (tid[PLAN_COMPACT * nn + k] >= 0) ctid[k] = tid[PLAN_COMPACT * nn + k];
  has_grad[nn - 1] = 1; /* the loss's, the caller's memory */
  int clock = 2 * nn, open_b0 = -1;
  for (int i = nn - 1; i >= 0; i--) {
    const int d = i + 1;
    /* the unit the backward has just left: a node, or a fused chain whose output is its last
     * node's (the backward went from that node to before the chain's first) */
    for (int e = d; d < nn && e <= d + (m->nodes[d].fused > 0 ? m->nodes[d].fused : 0); e++)
      if (state[e] == STROP__ACT_KEPT && ctid[e] >= 0 && !keep_always(m, e) && !m->keep_all) {
        state[e] = STROP__ACT_RELEASED;
        blk[ctid[e]].last = clock;
      }
    /* when the backward has passed a recomputed block, what is left of it (ckpt_end) */
    for (int j = open_b0; open_b0 > i && j <= m->ckpt_last[open_b0]; j++)
      if (state[j] == STROP__ACT_KEPT && ctid[j] >= 0) {
        state[j] = STROP__ACT_RELEASED;
        blk[ctid[j]].last = clock;
      }
    if (open_b0 > i) open_b0 = -1;
    clock++;
    const int first = unit_first(m, i);
    const strop__node *nd = &m->nodes[first];
    const int head_grad = first != i && nd->fused_shared && has_grad[first];
    if (m->nodes[i].fused > 0 || !m->upstream_trainable[i] || (!has_grad[i] && !head_grad)) {
      clock += 2;
      continue;
    }
    if (ckf && ckf[i] >= 0 && m->ckpt_last[ckf[i]] == i) { /* ckpt_recompute */
      const int b0 = ckf[i];
      open_b0 = b0;
      if (state[i] == STROP__ACT_KEPT && ctid[i] >= 0) blk[ctid[i]].last = clock - 1;
      for (int j = b0; j <= i; j++) left[j] = m->consumers[j] - (m->nodes[j].fused_shared != 0);
      for (int u = b0; u <= i; u++) {
        const strop__node *un = &m->nodes[u];
        const int ul = u + (un->fused > 0 ? un->fused : 0), k0 = un->n_in == 1 ? un->in[0] : -1;
        if (k0 >= b0 &&
            writes_in_place(m, u, ul, keep, state[k0] == STROP__ACT_KEPT && ctid[k0] >= 0)) {
          ctid[ul] = ctid[k0];
          state[k0] = STROP__ACT_MOVED;
        } else {
          blk[nb] = (strop__arena_block){act_bytes_n(m, ul, n), clock, INT_MAX, nb, 0};
          tid[PLAN_CKPT_OUT * nn + ul] = ctid[ul] = nb++;
        }
        state[ul] = STROP__ACT_KEPT;
        if (un->fused_shared) {
          blk[nb] = (strop__arena_block){act_bytes_n(m, u, n), clock, INT_MAX, nb, 0};
          tid[PLAN_CKPT_OUT * nn + u] = ctid[u] = nb++;
          state[u] = STROP__ACT_KEPT;
        }
        if (sbytes[u]) { /* the same call as the forward's, the same scratch */
          blk[nb] = (strop__arena_block){sbytes[u], clock, clock, nb, 0};
          tid[PLAN_CKPT_SCRATCH * nn + u] = nb++;
        }
        for (int j = 0; j < un->n_in; j++) {
          const int k = un->in[j];
          if (k < b0 || --left[k] > 0 || state[k] != STROP__ACT_KEPT || ctid[k] < 0 ||
              ckpt_reads(m, k, i))
            continue;
          state[k] = STROP__ACT_RELEASED;
          blk[ctid[k]].last = clock + 1;
        }
        clock += 2;
        u = ul;
      }
    }
    const int t = clock - 1; /* gradients at t + 1, the output's given back at t + 2 */
    clock += 2;
    /* widen_act, at the first reader's backward (the unit's own, when it reads its output) */
    for (int j = 0; j <= nd->n_in; j++) {
      const int k = j < nd->n_in ? nd->in[j] : unit_reads_out(m, first, i) ? i : -1;
      if (k < 0 || tid[PLAN_COMPACT * nn + k] < 0 || tid[PLAN_WIDEN * nn + k] >= 0 ||
          m->compact[k] >= 2) /* read as it is held */
        continue;
      blk[tid[PLAN_COMPACT * nn + k]].last = t + 1;
      blk[nb] = (strop__arena_block){act_bytes_n(m, k, n), t + 1, INT_MAX, nb, 0};
      tid[PLAN_WIDEN * nn + k] = ctid[k] = nb++;
    }
    int slot;
    const int ks = chain_side(m, first, i, &slot); /* a side input's gradient after them */
    for (int j = 0; j <= nd->n_in; j++) {
      const int k = j < nd->n_in ? nd->in[j] : ks;
      if (k < 0 || !m->upstream_trainable[k] || has_grad[k]) continue;
      has_grad[k] = 1;
      const size_t bytes = strop__shape_numel(&m->run_shapes[k]) * sizeof(float) * (size_t)n;
      blk[nb] = (strop__arena_block){bytes, t + 1, INT_MAX, nb, 0};
      tid[nn + k] = nb++;
      giter[k] = i;
    }
    for (int j = 0; j < nd->n_in && m->recompute; j++) {
      const int k = nd->in[j]; /* computed again for this backward only */
      if (k < 0 || !m->recompute[k] || tid[2 * nn + k] >= 0) continue;
      const size_t bytes = strop__shape_numel(&m->run_shapes[k]) * sizeof(float) * (size_t)n;
      blk[nb] = (strop__arena_block){bytes, t + 1, t + 1, nb, 0};
      tid[2 * nn + k] = nb++;
    }
    const size_t sb = node_scratch(m, first, x, n, 1); /* beside its gradients */
    if (sb) {
      blk[nb] = (strop__arena_block){sb, t + 1, t + 1, nb, 0};
      tid[4 * nn + first] = nb++;
      sbytes[nn + first] = sb;
    }
    if (i != nn - 1 && tid[nn + i] >= 0) blk[tid[nn + i]].last = t + 2;
    if (head_grad && tid[nn + first] >= 0) blk[tid[nn + first]].last = t + 2;
    for (int q = first; plan_pgrads && q <= i; q++) /* written from now to the step's end */
      for (int j = 0; j < m->nodes[q].n_params; j++) {
        strop__param *p = strop__param_owner(&m->nodes[q].params[j]);
        if (p->grad_block != -1) continue;
        blk[nb] = (strop__arena_block){p->numel * sizeof(float), t + 1, INT_MAX, nb, 0};
        p->grad_block = nb++;
      }
    i = first;
  }
  size_t live = 0;
  if (m->account && !dry) { /* the most bytes live at one tick, against the region's size */
    for (int b = 0; b < nb; b++) {
      size_t at = 0;
      for (int c = 0; c < nb; c++)
        if (blk[c].first <= blk[b].first && blk[c].last >= blk[b].first) at += blk[c].bytes;
      if (at > live) live = at;
    }
  }
  const size_t bytes = strop__arena_plan(blk, nb, placed);
  if (dry) { /* the region's size, and the gradients' bytes planned in it */
    *dry_bytes = bytes;
    *dry_grads = 0;
    for (int k = 0; k < m->n_params; k++) {
      if (m->params[k]->grad_block >= 0) *dry_grads += m->params[k]->numel * sizeof(float);
      m->params[k]->grad_block = -1;
    }
    return STROP_OK;
  }
  for (int b = 0; b < nb; b++) idoff[blk[b].id] = blk[b].off;
  for (size_t q = 0; q < n3; q++) off[q] = tid[q] >= 0 ? idoff[tid[q]] : SIZE_MAX;
  if (bytes > m->region_cap) { /* no gradient lies in it now (grads_keep) */
    strop__free_aligned(m->region);
    m->region_cap = 0;
    if (!(m->region = strop__malloc_aligned(bytes))) {
      for (int k = 0; k < m->n_params; k++) m->params[k]->grad_block = -1;
      return strop__err(STROP_E_NOMEM,
                        "forward: out of memory for the %zu bytes of the step's "
                        "activations and gradients",
                        bytes);
    }
    m->region_cap = bytes;
  }
  m->plan_base = bytes ? m->region : NULL;
  for (int k = 0; k < m->n_params; k++) { /* the gradients planned: their own memory goes */
    strop__param *p = m->params[k];
    if (p->grad_block < 0) continue;
    strop__param_grad_free(p);
    p->grad = (float *)(void *)(m->plan_base + idoff[p->grad_block]);
    p->grad_planned = 1;
    p->grad_stale = 1; /* zero: the backward writes it outright or clears it first */
    p->grad_checked = 0;
    p->grad_block = -1;
  }
  m->plan_off = off;
  m->plan_giter = giter;
  m->plan_scratch = sbytes;
  m->plan_bytes = bytes;
  if (m->account) {
    m->account->planned = bytes;
    m->account->live_peak = live;
  }
  return STROP_OK;
}

/* A probe's account of the step of plan_n samples (planned, not run): what its parameters'
 * gradients save planned with its activations against held apart. The arena as it was. */
static void grads_saved_at(strop_model *m, const uint8_t *keep, const strop__exec *x) {
  const strop__arena_mark mk = strop__arena_get_mark(&m->arena);
  const size_t peak = m->arena.peak;
  const int64_t n = m->account->plan_n;
  size_t apart = 0, with = 0, grads = 0, none = 0;
  if (!plan_lifetimes(m, keep, n, x, 1, &apart, &none) &&
      !plan_lifetimes(m, keep, n, x, 2, &with, &grads) && apart + grads > with)
    m->account->grads_saved = apart + grads - with;
  strop__arena_rollback(&m->arena, mk);
  m->arena.peak = peak;
}

strop_status strop__model_forward_exec(strop_model *m, const float *input, int64_t n,
                                       int training, const strop__side *side,
                                       const strop__act **out) {
  return strop__model_forward_shaped(m, input, n, NULL, training, side, out);
}

/* A copy of n rows of len side values in the step's arena (the backward reads them; the
 * caller's may go), or NULL for none; *st set on an allocation failure. */
static float *side_copy(strop_model *m, const float *v, int64_t n, int64_t len, const char *what,
                        strop_status *st) {
  *st = STROP_OK;
  if (!v) return NULL;
  const size_t bytes = (size_t)n * (size_t)len * sizeof *v;
  float *c = strop__arena_alloc(&m->arena, bytes);
  if (!c) {
    *st = strop__err(STROP_E_NOMEM, "out of memory for the %s", what);
    return NULL;
  }
  memcpy(c, v, bytes);
  return c;
}

/* Before a forward reuses the step region: a gradient lying in it (strop__param.grad_planned)
 * that holds values (a window's backward not yet applied, or the host's) is copied into memory
 * of its own; a stale one (zero) is dropped, to be planned again by a training step or made
 * again (zero) by whatever needs it. On failure the gradients not yet copied stay where they
 * were, the region untouched. */
static strop_status grads_keep(strop_model *m) {
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (!p->grad_planned) continue;
    float *own = NULL;
    if (!p->grad_stale) {
      if (!(own = strop__malloc_aligned(p->numel * sizeof *own)))
        return strop__err(STROP_E_NOMEM,
                          "forward: out of memory keeping the gradient of '%s' (%zu bytes) "
                          "from the last backward",
                          p->name, p->numel * sizeof *own);
      memcpy(own, p->grad, p->numel * sizeof *own);
    }
    p->grad = own;
    p->grad_planned = 0;
  }
  return STROP_OK;
}

void strop__model_grads_unplan(strop_model *m) {
  for (int i = 0; m->have_forward && i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (!p->grad_planned) continue;
    p->grad = NULL; /* stale since the planning: zero */
    p->grad_planned = 0;
    p->grad_stale = 0;
  }
}

strop_status strop__model_step_release(strop_model *m) {
  if (m->have_forward) strop__model_step_end(m);
  strop_status s = grads_keep(m);
  if (s) return s;
  strop__free_aligned(m->region);
  m->region = NULL;
  m->region_cap = 0;
  strop__arena_destroy(&m->arena);
  return STROP_OK;
}

strop_status strop__model_forward_shaped(strop_model *m, const float *input, int64_t n,
                                         const strop__shape *shape, int training,
                                         const strop__side *side, const strop__act **out) {
  if (!m->finalized) return strop__err(STROP_E_STATE, "model is not finalized");
  if (m->have_forward) strop__model_step_end(m);
  strop_status kept = grads_keep(m);
  if (kept) return kept;
  if (!shape) shape = &m->in_shape;
  if (shape->rank != m->in_shape.rank) {
    char a[128], b[128];
    return strop__err(STROP_E_SHAPE, "input has shape [N, %s, the model expects [N, %s",
                      strop__shape_str(shape, a, sizeof a) + 1,
                      strop__shape_str(&m->in_shape, b, sizeof b) + 1);
  }
  strop_status s = shape_pass(m, shape);
  if (s) return s;
  /* the mask and the types live as long as the step */
  const int64_t seq = shape->rank > 0 ? shape->d[0] : 1;
  const float *mask = side ? side_copy(m, side->mask, n, seq, "padding mask", &s) : NULL;
  if (s) return s;
  const float *types = side ? side_copy(m, side->types, n, seq, "token types", &s) : NULL;
  if (s) return s;
  const int64_t mask_len = mask ? seq : 0, types_len = types ? seq : 0;
  strop__exec x = {.arena = &m->arena,
                   .rng = &m->rng,
                   .training = training,
                   .nthreads = strop__num_threads(),
                   .pad_mask = mask,
                   .pad_len = mask_len,
                   .recompute = m->probe,
                   .decode = m->decode,
                   .rows_before = m->rows_before,
                   .rows_after = m->rows_after,
                   .token_types = types,
                   .types_len = types_len,
                   .compute_dtype = m->compute_dtype,
                   .weight_cache = m->weight_cache,
                   .attention = m->attention,
                   .group = m->probe ? NULL : m->group};
  m->input.data = (float *)input;
  m->input.n = n;
  m->input.shape = *shape;
  m->batch = n;
  m->step_training = training;
  m->step_pad_mask = mask;
  m->step_pad_len = mask_len;
  m->step_types = types;
  m->step_types_len = types_len;
  const int nn = m->n_nodes;
  count_consumers(m);
  mark_upstream(m);
  if ((s = plan_checkpoints(m))) {
    strop__model_step_end(m);
    return s;
  }
  plan_fusion(m, training);
  m->rows_fused = rows_fusable(m, training);
  m->rows_steps += m->rows_fused;
  /* Activation lifetimes. A node's output is kept to the end of the step when a backward may
   * read it (it is the input or the output of a node with a trainable parameter at or before
   * it), or it is the model's output or m->keep_act; any other output is dead once its last
   * reader has run, and its memory goes to a free list that later outputs are taken from
   * (best fit). Such a node keeps nothing for a backward either: what its forward takes from
   * the arena beyond its output (scratch, saved tensors) is given back right after it.
   * A checkpointed block is run the same way (its backward recomputes what it needs), but for
   * its inputs from outside it, which are kept (keep 2) for that recompute. */
  const int *ckf = m->ckpt_first;
  uint8_t *keep = strop__arena_calloc(&m->arena, (size_t)nn);
  int *left = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *left);
  m->released = strop__arena_calloc(&m->arena, (size_t)nn);
  spare *spares = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *spares);
  size_t *abytes = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *abytes);
  if (!keep || !left || !m->released || !spares || !abytes) {
    strop__model_step_end(m);
    return strop__err(STROP_E_NOMEM, "forward: out of memory");
  }
  int n_spares = 0;
  for (int i = 0; i < nn; i++) {
    const strop__node *nd = &m->nodes[i];
    left[i] = m->consumers[i];
    if (ckf && ckf[i] >= 0) {
      for (int j = 0; j < nd->n_in; j++)
        if (nd->in[j] >= 0 && nd->in[j] < ckf[i]) keep[nd->in[j]] = 2;
      continue;
    }
    if (nd->fused < 0 || !m->upstream_trainable[i]) continue;
    const int last = i + (nd->fused > 0 ? nd->fused : 0);
    if (unit_reads_out(m, i, last)) keep[last] = 1;
    if (nd->fused_shared) keep[i] = 1; /* the chain's backward may read it (fused_head) */
    for (int j = 0; j < nd->n_in && unit_reads_in(m, i, last); j++)
      if (nd->in[j] >= 0) keep[nd->in[j]] = 1;
  }
  for (int i = 0; i < nn; i++)
    if (!keep[i]) keep[i] = keep_always(m, i) || m->keep_all;
  m->recompute = NULL;
  if (!m->keep_all) {
    if (!(m->recompute = strop__arena_calloc(&m->arena, (size_t)nn))) {
      strop__model_step_end(m);
      return strop__err(STROP_E_NOMEM, "forward: out of memory");
    }
    for (int i = 0; i < nn; i++)
      if (recomputed(m, i, keep) && !held_instead(m, i, &x)) {
        m->recompute[i] = 1;
        keep[i] = 0; /* dead once its reader's forward has run */
      }
  }
  if ((s = compact_plan(m, keep, &x)) || (s = plan_lifetimes(m, keep, n, &x, 0, NULL, NULL))) {
    strop__model_step_end(m);
    return s;
  }
  /* (plan_n 0: the step planned keeps its gradients apart, or none is asked) */
  if (m->account && m->account->plan_n > 0 && strop__plan_grads && training)
    grads_saved_at(m, keep, &x);
  strop__act ins_local[16];
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    if (nd->fused < 0) continue;        /* computed by the node that fused it */
    if (i == nn - 1 && m->rows_fused) { /* left to the loss: no output, its input kept */
      m->acts[i] = (strop__act){NULL, n, m->run_shapes[i]};
      nd->saved = NULL;
      break;
    }
    strop__act *ins = nd->n_in <= 16
                          ? ins_local
                          : strop__arena_alloc(&m->arena, (size_t)nd->n_in * sizeof *ins);
    if (!ins) return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", nd->name);
    for (int j = 0; j < nd->n_in; j++) ins[j] = nd->in[j] < 0 ? m->input : m->acts[nd->in[j]];
    /* a fused chain stores only its last node's output */
    const int last = i + nd->fused;
    for (int j = i; j <= last; j++) {
      m->acts[j].data = NULL;
      m->acts[j].n = n;
      m->acts[j].shape = m->run_shapes[j];
      m->nodes[j].saved = NULL;
    }
    strop__act *o = &m->acts[last];
    const strop__node *ln = &m->nodes[last];
    size_t bytes;
    if (strop__mul_overflow(strop__shape_numel(&o->shape) * sizeof(float), (size_t)n, &bytes))
      return strop__err(STROP_E_SHAPE, "layer '%s': activation size overflows", ln->name);
    /* An in-place layer (relu after a batch norm or a residual sum) that is its input's sole
     * reader writes over it when nothing else needs that input: not the input's own backward
     * (the producer never reads its output), not a fused chain, not the model's input, output
     * or kept activation. Then the input's memory is this node's and is not released. */
    const int k0 = nd->n_in == 1 ? nd->in[0] : -1;
    int best = -1;
    if (writes_in_place(m, i, last, keep,
                        k0 >= 0 && m->acts[k0].data && m->released[k0] == STROP__ACT_KEPT)) {
      o->data = m->acts[k0].data;
      abytes[last] = abytes[k0];
      m->released[k0] = STROP__ACT_MOVED;
    } else if (m->plan_off && m->plan_off[last] != SIZE_MAX) {
      o->data = (float *)(m->plan_base + m->plan_off[last]);
      abytes[last] = bytes;
    } else {
      for (int q = 0; q < n_spares; q++)
        if (spares[q].bytes >= bytes && (best < 0 || spares[q].bytes < spares[best].bytes))
          best = q;
    }
    if (o->data) {
      /* in place */
    } else if (best >= 0) {
      o->data = spares[best].p;
      abytes[last] = spares[best].bytes;
      spares[best] = spares[--n_spares];
    } else {
      o->data = strop__arena_alloc(&m->arena, bytes);
      abytes[last] = bytes;
    }
    if (o->data && nd->fused_shared) { /* the chain's first output, stored too */
      strop__act *h = &m->acts[i];
      const size_t hb = act_bytes(m, i);
      if (m->plan_off && m->plan_off[i] != SIZE_MAX) {
        h->data = (float *)(m->plan_base + m->plan_off[i]);
        abytes[i] = hb;
      } else if ((h->data = spare_take(spares, &n_spares, hb, &abytes[i])) == NULL) {
        h->data = strop__arena_alloc(&m->arena, hb);
        abytes[i] = hb;
      }
      if (!h->data) o->data = NULL;
      left[i]--; /* read by the chain's second node */
      x.fused_head = h;
    }
    if (!o->data) {
      strop__model_step_end(m);
      return strop__err(STROP_E_NOMEM,
                        "layer '%s': out of memory for %zu bytes of "
                        "activations",
                        ln->name, bytes);
    }
    const int scratch_only = (!m->upstream_trainable[i] || (ckf && ckf[i] >= 0)) && !m->keep_all;
    if (ckf && ckf[i] == i) m->ckpt_rng[i] = m->rng;
    strop__arena_mark mk = strop__arena_get_mark(&m->arena);
    scratch_take(m, i, &x, 0);
    const int ks = chain_side(m, i, last, &x.fused_side_slot); /* read by the chain too */
    x.fused_side = ks >= 0 ? &m->acts[ks] : ks == -1 ? &m->input : NULL;
    s = nd->vt->forward(nd, &x, ins, o);
    x.fused_head = NULL;
    x.fused_side = NULL;
    x.scratch = NULL;
    x.scratch_bytes = 0;
    if (s) {
      strop__model_step_end(m);
      return s;
    }
    if (scratch_only) {
      strop__arena_rollback(&m->arena, mk);
      for (int j = i; j <= last; j++) m->nodes[j].saved = NULL;
    } else if (m->account) {
      account_add(m->account, nd->vt->type, 0, m->arena.used_total - mk.total);
    }
    for (int j = 0; j <= nd->n_in; j++) {
      const int k = j < nd->n_in ? nd->in[j] : ks;
      if (k < 0 || --left[k] > 0 || m->released[k]) continue;
      if (m->compact && m->compact[k] && (s = compact_act(m, k, i, j, &x))) { /* keep[k] 1 */
        strop__model_step_end(m);
        return s;
      }
      if (keep[k]) continue;
      m->released[k] = STROP__ACT_RELEASED; /* its last reader has run, no backward reads it */
      if (in_plan(m, m->acts[k].data)) continue; /* the plan has its memory taken already */
      spares[n_spares].p = m->acts[k].data;
      spares[n_spares++].bytes = abytes[k];
    }
    i = last;
  }
  if (m->account) {
    strop__step_account *ac = m->account;
    for (int i = 0; i < nn; i++)
      if (m->acts[i].data && m->released[i] == STROP__ACT_KEPT)
        account_add(ac, m->nodes[i].vt->type, act_bytes(m, i), 0);
      else if (m->released[i] == STROP__ACT_COMPACT) /* held in BF16 */
        account_add(ac, m->nodes[i].vt->type, act_bytes(m, i) / 2, 0);
    ac->fwd_used = m->arena.used_total;
    ac->fwd_peak = m->arena.peak;
    for (int q = 0; q < n_spares; q++) ac->fwd_free += spares[q].bytes;
  }
  m->have_forward = 1;
  m->fwd_free = spares;
  m->n_fwd_free = n_spares;
  *out = &m->acts[m->n_nodes - 1];
  return STROP_OK;
}

/* Frees the gradients of parameters that no longer train; with make, gives every trainable
 * parameter without one a zero gradient of its own. */
static strop_status grads_sync(strop_model *m, int make) {
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (make && p->trainable && !p->is_buffer && p->data && !p->grad) {
      p->grad = strop__malloc_aligned(p->numel * sizeof(float));
      if (!p->grad)
        return strop__err(STROP_E_NOMEM, "out of memory for the gradient of '%s'", p->name);
      memset(p->grad, 0, p->numel * sizeof(float));
      p->grad_stale = 0;
    } else if ((!p->trainable || p->is_buffer) && p->grad) {
      strop__param_grad_free(p);
      p->grad_stale = 0;
    }
  }
  return STROP_OK;
}

strop_status strop__model_sync_grads(strop_model *m) { return grads_sync(m, 1); }

void strop__param_zero_grad(strop__param *p) {
  if (p->grad) strop__par_zero(p->grad, p->numel);
  p->grad_stale = 0;
  p->grad_checked = 0;
}

void strop__param_grad_fresh(strop__param *p) {
  if (p->grad_stale) strop__param_zero_grad(p);
}

strop_status strop__model_zero_grad(strop_model *m) {
  strop_status s = strop__model_sync_grads(m);
  if (s) return s;
  for (int i = 0; i < m->n_params; i++) strop__param_zero_grad(m->params[i]);
  return STROP_OK;
}

strop_status strop__model_zero_grad_lazy(strop_model *m) {
  /* a gradient not made yet is zero as it is (strop_model_get_grad reads it so): the next
   * training forward plans it (strop__plan_grads), or the backward makes it */
  strop_status s = grads_sync(m, 0);
  if (s) return s;
  for (int i = 0; i < m->n_params; i++) {
    m->params[i]->grad_stale = m->params[i]->grad != NULL;
    m->params[i]->grad_checked = 0;
  }
  return STROP_OK;
}

/* Before the backward of nodes [first, last] (a fused chain): 1 when the owner may write its
 * parameters' gradients outright (all of them stale, and it says it can); otherwise every stale
 * one among them is cleared now and 0 is returned. Their checked marks are cleared: the
 * backward is about to write them. */
static int pgrad_prepare(strop_model *m, int first, int last) {
  int stale = 0, fresh = 0;
  for (int q = first; q <= last; q++)
    for (int j = 0; j < m->nodes[q].n_params; j++) {
      strop__param *p = &m->nodes[q].params[j];
      p->grad_checked = 0;
      if (p->tied) {
        /* a tied slot adds into its owner's gradient, which another node also adds to: the
         * owner is made fresh now (cleared if stale) and never written outright here */
        strop__param *o = p->tied;
        o->grad_checked = 0;
        strop__param_grad_fresh(o);
        if (o->grad) fresh++;
        continue;
      }
      if (p->grad && p->grad_stale) stale++;
      else if (p->grad) fresh++;
    }
  if (!stale) return 0;
  if (!fresh && first == last && (m->nodes[first].vt->flags & STROP__LAYER_ASSIGNS_PGRAD))
    return 1;
  for (int q = first; q <= last; q++)
    for (int j = 0; j < m->nodes[q].n_params; j++)
      strop__param_grad_fresh(&m->nodes[q].params[j]);
  return 0;
}

/* The backward of a checkpointed block [b0, b1] runs inside a region of step memory that
 * ends when the backward has passed b0: the recomputed activations, the layers' saved tensors
 * and the block's inner gradients are given back at once (the arena rolled back, the free list
 * as it was), so each block's recompute reuses the memory of the one after it. */
typedef struct ckpt_region {
  int b0, b1;             /* the block, b0 = -1: no region open */
  strop__arena_mark mark; /* the arena where the region began */
  spare *snap;            /* the free list then (2 n_nodes entries) */
  int n_snap;
  spare back[2]; /* memory from before the region the block no longer needs: its
                              last node's first output and output gradient */
  int n_back;
  uint8_t *reserved; /* per node: a gradient taken before the region and not yet written
                              (zeroed or assigned by its first writer, as if taken then) */
  int *left;         /* per node of the block: its readers in the recompute still to run */
  uint8_t *none;     /* n_nodes zeros: nothing in a block is kept for a reader after it */
} ckpt_region;

/* Node k's output gradient for the backward of the unit ending at node i, taken now when no
 * reader wrote it yet (where the plan put it, else from the free list or the arena) or when it
 * was taken before a checkpointed block's recompute and not written since: *fresh 1 when the
 * unit writes it outright (can: its layer may, as the first writer), else it is zeroed here
 * (the pass is split over the threads: a residual block's input, read by the block and by its
 * sum, is 26 MB at ResNet-50's batch 8) and *fresh is 0. A gradient some reader wrote already
 * is left as it is (*fresh 0). */
static strop_status grad_take(strop_model *m, int k, int i, int can, spare *spares, int *n_spares,
                              size_t *gbytes, ckpt_region *reg, int *fresh) {
  const int nn = m->n_nodes;
  *fresh = 0;
  if (m->grads[k]) {
    if (reg->reserved && reg->reserved[k]) { /* as if taken now */
      if (can) *fresh = 1;
      else strop__par_zero(m->grads[k], act_bytes(m, k) / sizeof(float));
      reg->reserved[k] = 0;
    }
    return STROP_OK;
  }
  const size_t b = act_bytes(m, k);
  if (m->plan_off && m->plan_giter[k] == i && m->plan_off[nn + k] != SIZE_MAX) {
    m->grads[k] = (float *)(m->plan_base + m->plan_off[nn + k]); /* as planned */
    gbytes[k] = b;
  } else if ((m->grads[k] = spare_take(spares, n_spares, b, &gbytes[k])) == NULL) {
    m->grads[k] = strop__arena_alloc(&m->arena, b);
    gbytes[k] = b;
  }
  if (!m->grads[k]) return strop__err(STROP_E_NOMEM, "backward: out of memory");
  if (can) *fresh = 1;
  else strop__par_zero(m->grads[k], b / sizeof(float));
  return STROP_OK;
}

/* Opens the region of block [b0, b1] and runs the block's forward again: the same inputs, the
 * same generator state (so dropout draws the same masks), batch norm leaving its running
 * statistics alone, every activation and saved tensor its backward reads kept. In a planned
 * step the outputs go where the plan put them (PLAN_CKPT_OUT), an in-place layer writes over
 * its input as in the forward, and an output no backward reads is let go once its readers
 * have run (ckpt_reads): the plan gave its memory to what follows. */
static strop_status ckpt_recompute(strop_model *m, int b0, int b1, strop__exec *x, spare *spares,
                                   int *n_spares, size_t *gbytes, ckpt_region *r) {
  const int nn = m->n_nodes;
  /* the gradients of the block's inputs outlive the region: they are taken before it, unless
   * the plan has a place for them from the backward that takes them */
  for (int j = b0; j <= b1; j++)
    for (int q = 0; q < m->nodes[j].n_in; q++) {
      const int k = m->nodes[j].in[q];
      if (k < 0 || k >= b0 || !m->upstream_trainable[k] || m->grads[k]) continue;
      if (m->plan_off && m->plan_giter[k] >= b0 && m->plan_giter[k] <= b1 &&
          m->plan_off[nn + k] != SIZE_MAX)
        continue;
      const size_t b = act_bytes(m, k);
      size_t got = b;
      float *p = spare_take(spares, n_spares, b, &got);
      if (!p) p = strop__arena_alloc(&m->arena, b);
      if (!p) return strop__err(STROP_E_NOMEM, "backward: out of memory");
      m->grads[k] = p;
      gbytes[k] = got;
      r->reserved[k] = 1;
    }
  r->n_back = 0;
  if (m->released[b1] == STROP__ACT_KEPT && m->acts[b1].data && !in_plan(m, m->acts[b1].data))
    r->back[r->n_back++] = (spare){m->acts[b1].data, act_bytes(m, b1)};
  if (!in_plan(m, m->grads[b1])) r->back[r->n_back++] = (spare){m->grads[b1], gbytes[b1]};
  for (int j = b0; j <= b1; j++) r->left[j] = m->consumers[j] - (m->nodes[j].fused_shared != 0);
  memcpy(r->snap, spares, (size_t)*n_spares * sizeof *spares);
  r->n_snap = *n_spares;
  r->mark = strop__arena_get_mark(&m->arena);
  r->b0 = b0;
  r->b1 = b1;
  const strop__rng now = m->rng;
  m->rng = m->ckpt_rng[b0];
  x->recompute = 1;
  strop_status s = STROP_OK;
  strop__act ins_local[16];
  for (int i = b0; i <= b1 && !s; i++) {
    strop__node *nd = &m->nodes[i];
    const int last = i + (nd->fused > 0 ? nd->fused : 0);
    strop__act *ins = nd->n_in <= 16
                          ? ins_local
                          : strop__arena_alloc(&m->arena, (size_t)nd->n_in * sizeof *ins);
    if (!ins) {
      s = strop__err(STROP_E_NOMEM, "backward: layer '%s': out of memory", nd->name);
      break;
    }
    for (int j = 0; j < nd->n_in; j++) ins[j] = nd->in[j] < 0 ? m->input : m->acts[nd->in[j]];
    for (int j = i; j <= last; j++) {
      m->acts[j].data = NULL;
      m->acts[j].n = m->batch;
      m->acts[j].shape = m->run_shapes[j];
      m->nodes[j].saved = NULL;
      m->released[j] = STROP__ACT_KEPT;
    }
    const size_t bytes = act_bytes(m, last);
    size_t got;
    strop__act *o = &m->acts[last];
    const int k0 = nd->n_in == 1 ? nd->in[0] : -1;
    const size_t *po = m->plan_off ? m->plan_off + PLAN_CKPT_OUT * (size_t)nn : NULL;
    if (po && k0 >= b0 &&
        writes_in_place(m, i, last, r->none,
                        m->acts[k0].data && m->released[k0] == STROP__ACT_KEPT)) {
      o->data = m->acts[k0].data;
      m->released[k0] = STROP__ACT_MOVED;
    } else if (po && po[last] != SIZE_MAX) {
      o->data = (float *)(m->plan_base + po[last]);
    } else if (!(o->data = spare_take(spares, n_spares, bytes, &got))) {
      o->data = strop__arena_alloc(&m->arena, bytes);
    }
    strop__act *h = nd->fused_shared ? &m->acts[i] : NULL; /* the chain's first output too */
    if (h && o->data) {
      if (po && po[i] != SIZE_MAX) h->data = (float *)(m->plan_base + po[i]);
      else if (!(h->data = spare_take(spares, n_spares, act_bytes(m, i), &got)))
        h->data = strop__arena_alloc(&m->arena, act_bytes(m, i));
    }
    if (!o->data || (h && !h->data))
      s = strop__err(STROP_E_NOMEM,
                     "backward: layer '%s': out of memory for %zu bytes of "
                     "recomputed activations",
                     m->nodes[last].name, bytes);
    else {
      x->fused_head = h;
      scratch_at(m, i, x, PLAN_CKPT_SCRATCH, 0);
      const int ks = chain_side(m, i, last, &x->fused_side_slot);
      x->fused_side = ks >= 0 ? &m->acts[ks] : ks == -1 ? &m->input : NULL;
      s = nd->vt->forward(nd, x, ins, o);
      x->fused_head = NULL;
      x->fused_side = NULL;
      x->scratch = NULL;
      x->scratch_bytes = 0;
    }
    for (int j = 0; j < nd->n_in && po && !s; j++) { /* as the plan let them go */
      const int k = nd->in[j];
      if (k >= b0 && --r->left[k] <= 0 && m->released[k] == STROP__ACT_KEPT &&
          !ckpt_reads(m, k, b1))
        m->released[k] = STROP__ACT_RELEASED;
    }
    i = last;
  }
  x->recompute = 0;
  m->rng = now;
  return s;
}

/* Closes the region: the block's memory is given back, and what it took from before. */
static void ckpt_end(strop_model *m, ckpt_region *r, spare *spares, int *n_spares) {
  for (int k = 0; k < r->b0; k++)
    if (r->reserved[k]) { /* a gradient no reader in the block wrote: zero */
      memset(m->grads[k], 0, act_bytes(m, k));
      r->reserved[k] = 0;
    }
  memcpy(spares, r->snap, (size_t)r->n_snap * sizeof *spares);
  *n_spares = r->n_snap;
  for (int q = 0; q < r->n_back; q++) spares[(*n_spares)++] = r->back[q];
  strop__arena_rollback(&m->arena, r->mark);
  for (int j = r->b0; j <= r->b1; j++) {
    m->acts[j].data = NULL;
    m->released[j] = STROP__ACT_RELEASED;
    m->nodes[j].saved = NULL;
    m->grads[j] = NULL;
  }
  r->b0 = -1;
}

/* Node k's output computed again from its input (m->recompute[k]) for its reader's backward,
 * where the plan put it or in the arena after the reader's scratch mark (given back with it). */
static strop_status recompute_output(strop_model *m, int k, strop__exec *x, strop__act *out) {
  strop__node *rn = &m->nodes[k];
  const size_t bytes = act_bytes(m, k), q = 2 * (size_t)m->n_nodes + (size_t)k;
  out->n = m->batch;
  out->shape = m->run_shapes[k];
  out->data = m->plan_off && m->plan_off[q] != SIZE_MAX ? (float *)(m->plan_base + m->plan_off[q])
                                                        : strop__arena_alloc(&m->arena, bytes);
  if (!out->data)
    return strop__err(STROP_E_NOMEM,
                      "backward: layer '%s': out of memory for %zu bytes of its output "
                      "computed again",
                      rn->name, bytes);
  x->recompute = 1;
  strop_status s = rn->vt->forward(rn, x, &m->acts[rn->in[0]], out);
  x->recompute = m->probe;
  return s;
}

/* What the layers' calls after a step's forward see: its mode, mask and types. */
static strop__exec step_exec(strop_model *m) {
  strop__exec x = {.arena = &m->arena,
                   .rng = &m->rng,
                   .training = m->step_training,
                   .nthreads = strop__num_threads(),
                   .pad_mask = m->step_pad_mask,
                   .pad_len = m->step_pad_len,
                   .recompute = m->probe,
                   .rows_before = m->rows_before,
                   .rows_after = m->rows_after,
                   .token_types = m->step_types,
                   .types_len = m->step_types_len,
                   .compute_dtype = m->compute_dtype,
                   .weight_cache = m->weight_cache,
                   .attention = m->attention,
                   .group = m->probe ? NULL : m->group};
  return x;
}

/* The last node nd (left to the loss: rows_fusable) over its input `in` a chunk of rows at a
 * time: its forward into one chunk of memory, the loss's values of the chunk, and with din its
 * gradient (written over the chunk) and at once the node's backward of the chunk: the input
 * gradient's rows of the chunk (assigned or added as x->din_assign says: the chunks' rows do
 * not meet) and the parameters' gradients, which the first chunk assigns when
 * x->pgrad_assign says so and the others add to. Only one chunk of the output is ever held. */
static strop_status rows_run(strop_model *m, strop__node *nd, strop__exec *x,
                             const strop__act *in, float *const *din,
                             const strop__row_loss *loss) {
  const strop__shape *os = &m->run_shapes[m->n_nodes - 1];
  const int64_t cols = os->d[os->rank - 1], width = in->shape.d[in->shape.rank - 1];
  const int64_t rows = (int64_t)(strop__shape_numel(&in->shape) / (size_t)width) * in->n;
  /* the gradients each chunk's backward adds to (a tied weight's owner's) */
  size_t grad_bytes = 0;
  for (int j = 0; din && j < nd->n_params; j++) {
    const strop__param *p = strop__param_owner(&nd->params[j]);
    if (p->trainable) grad_bytes += p->numel * sizeof(float);
  }
  const int64_t chunk = strop__rows_chunk(rows, cols, grad_bytes);
  if (rows == 0) return STROP_OK;
  float *v = strop__arena_alloc(&m->arena, (size_t)chunk * (size_t)cols * sizeof *v);
  if (!v)
    return strop__err(STROP_E_NOMEM,
                      "layer '%s': out of memory for %lld rows of %lld outputs computed with "
                      "the loss",
                      nd->name, (long long)chunk, (long long)cols);
  const int assign = x->pgrad_assign;
  strop_status s = STROP_OK;
  for (int64_t r0 = 0; r0 < rows && !s; r0 += chunk) {
    const int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
    const strop__act ci = {in->data + r0 * width, nr, {1, {width}}};
    strop__act co = {v, nr, {1, {cols}}};
    const strop__arena_mark mk = strop__arena_get_mark(&m->arena);
    s = nd->vt->forward(nd, x, &ci, &co);
    if (!s) s = loss->rows(loss->ctx, r0, nr, cols, v, din != NULL);
    if (!s && din) {
      float *dc = din[0] ? din[0] + r0 * width : NULL;
      x->pgrad_assign = assign && r0 == 0;
      s = nd->vt->backward(nd, x, &ci, &co, v, &dc);
    }
    strop__arena_rollback(&m->arena, mk);
    nd->saved = NULL;
    m->rows_chunks += din != NULL;
  }
  x->pgrad_assign = assign;
  /* a gradient seen finite as the first chunk wrote it has had the others added since */
  for (int j = 0; din && rows > chunk && j < nd->n_params; j++) {
    nd->params[j].grad_checked = 0;
    if (nd->params[j].tied) nd->params[j].tied->grad_checked = 0;
  }
  return s;
}

strop_status strop__model_rows_eval(strop_model *m, const strop__row_loss *loss) {
  if (!m->have_forward || !m->rows_fused)
    return strop__err(STROP_E_STATE, "forward: no forward left its last node to the loss");
  strop__node *nd = &m->nodes[m->n_nodes - 1];
  strop__exec x = step_exec(m);
  const strop__act in = nd->in[0] < 0 ? m->input : m->acts[nd->in[0]];
  return rows_run(m, nd, &x, &in, NULL, loss);
}

static strop_status backward_impl(strop_model *m, const float *dout, const strop__row_loss *loss);

strop_status strop__model_backward(strop_model *m, const float *dout) {
  if (m->rows_fused)
    return strop__err(STROP_E_STATE,
                      "backward: the forward left its last node to the loss; run that "
                      "(strop__model_backward_rows)");
  return backward_impl(m, dout, NULL);
}

strop_status strop__model_backward_rows(strop_model *m, const strop__row_loss *loss) {
  if (!m->rows_fused || !loss)
    return strop__err(STROP_E_STATE, "backward: no forward left its last node to the loss");
  return backward_impl(m, NULL, loss);
}

static strop_status backward_impl(strop_model *m, const float *dout,
                                  const strop__row_loss *loss) {
  if (!m->have_forward)
    return strop__err(STROP_E_STATE, "backward: no forward pass to differentiate");
  strop_status s = strop__model_sync_grads(m);
  if (s) return s;
  int nn = m->n_nodes;
  mark_upstream(m);
  for (int i = 0; i < nn; i++) m->grads[i] = NULL;
  /* what the backward reads must be what the forward kept: the nodes that need a backward
   * are the ones they were then, unless a parameter was unfrozen in between */
  for (int i = 0; m->released && i < nn; i++) {
    const strop__node *nd = &m->nodes[i];
    if (m->ckpt_first && m->ckpt_first[i] >= 0) {
      /* a checkpointed block: the recompute makes what its backward reads, from its inputs */
      int bad = 0;
      for (int j = 0; j < nd->n_in && !bad; j++)
        bad = nd->in[j] >= 0 && nd->in[j] < m->ckpt_first[i] &&
              m->released[nd->in[j]] == STROP__ACT_RELEASED;
      if (bad)
        return strop__err(STROP_E_STATE,
                          "backward: layer '%s' needs activations its forward "
                          "did not keep; run the forward again",
                          nd->name);
      continue;
    }
    if (!m->upstream_trainable[i] || nd->fused < 0) continue;
    const int last = i + (nd->fused > 0 ? nd->fused : 0);
    int slot;
    int bad = (unit_reads_out(m, i, last) && m->released[last] == STROP__ACT_RELEASED) ||
              (nd->fused_shared && m->released[i] == STROP__ACT_RELEASED) ||
              (chain_side(m, i, last, &slot) >= -1 && /* fused where no backward was to run */
               !(nd->vt->flags & STROP__LAYER_SIDE_GRAD));
    for (int j = 0; j < nd->n_in && !bad && unit_reads_in(m, i, last); j++)
      bad = nd->in[j] >= 0 && m->released[nd->in[j]] == STROP__ACT_RELEASED &&
            !(m->recompute && m->recompute[nd->in[j]]);
    if (bad)
      return strop__err(STROP_E_STATE,
                        "backward: layer '%s' needs activations its forward did "
                        "not keep (a parameter became trainable after the forward); run the "
                        "forward again",
                        nd->name);
  }
  count_consumers(m);
  /* backward sees the forward's mode and mask */
  strop__exec x = step_exec(m);
  size_t in_bytes = strop__shape_numel(&m->input.shape) * sizeof(float) * (size_t)m->batch;
  m->input_grad = NULL;
  if (m->want_input_grad) {
    m->input_grad = strop__arena_calloc(&m->arena, in_bytes);
    if (!m->input_grad) return strop__err(STROP_E_NOMEM, "backward: out of memory");
  }
  m->grads[nn - 1] = (float *)dout;
  /* A node's output gradient is dead once its own backward has run: its buffer goes to a
   * free list that later input gradients are taken from (best fit), so the backward's memory
   * is a few live gradients rather than one per node. Activations join the list once their
   * readers are done (below): room for one gradient and one activation per node. */
  spare *spares = strop__arena_alloc(&m->arena, 2 * (size_t)nn * sizeof *spares);
  if (!spares) return strop__err(STROP_E_NOMEM, "backward: out of memory");
  size_t *gbytes = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *gbytes);
  if (!gbytes) return strop__err(STROP_E_NOMEM, "backward: out of memory");
  /* what the forward released already (a frozen trunk's outputs, checkpointed blocks' insides) */
  int n_spares = m->n_fwd_free;
  if (n_spares) memcpy(spares, m->fwd_free, (size_t)n_spares * sizeof *spares);
  m->n_fwd_free = 0;
  ckpt_region reg = {-1, -1, {0}, NULL, 0, {{0}}, 0, NULL, NULL, NULL};
  if (m->ckpt_first) {
    reg.snap = strop__arena_alloc(&m->arena, 2 * (size_t)nn * sizeof *reg.snap);
    reg.reserved = strop__arena_calloc(&m->arena, (size_t)nn);
    reg.left = strop__arena_alloc(&m->arena, (size_t)nn * sizeof *reg.left);
    reg.none = strop__arena_calloc(&m->arena, (size_t)nn);
    if (!reg.snap || !reg.reserved || !reg.left || !reg.none)
      return strop__err(STROP_E_NOMEM, "backward: out of memory");
  }
  float *din_local[16];
  for (int i = nn - 1; i >= 0; i--) {
    if (reg.b0 > i) ckpt_end(m, &reg, spares, &n_spares);
    /* Every reader of node i + 1's output (its consumers, after it, and its own backward) is
     * behind us: a stored activation nothing else shares becomes a spare for the gradients
     * still to come. The model's output and a kept activation stay. */
    const int d = i + 1; /* (a fused chain's output is its last node's) */
    for (int e = d;
         d < nn && m->released && e <= d + (m->nodes[d].fused > 0 ? m->nodes[d].fused : 0); e++)
      if (m->released[e] == STROP__ACT_KEPT && m->acts[e].data && !keep_always(m, e) &&
          !m->keep_all) {
        if (!in_plan(m, m->acts[e].data)) {
          spares[n_spares].p = m->acts[e].data;
          spares[n_spares++].bytes = strop__shape_numel(&m->acts[e].shape) * sizeof(float) *
                                     (size_t)m->batch;
        }
        m->released[e] = STROP__ACT_RELEASED;
        m->acts[e].data = NULL;
      }
    /* (the last node left to the loss gets its gradient a chunk at a time, in rows_run) */
    const int by_rows = loss && i == nn - 1;
    /* the last node of a fused chain: the chain's first node differentiates all of it, also
     * when only the first node's own output (shared) got a gradient */
    const int first = unit_first(m, i);
    strop__node *nd = &m->nodes[first];
    const float *head_grad = first != i && nd->fused_shared ? m->grads[first] : NULL;
    if (m->nodes[i].fused > 0 || !m->upstream_trainable[i] ||
        (!m->grads[i] && !by_rows && !head_grad))
      continue;
    if (m->ckpt_first && m->ckpt_first[i] >= 0 && m->ckpt_last[m->ckpt_first[i]] == i &&
        (s = ckpt_recompute(m, m->ckpt_first[i], i, &x, spares, &n_spares, gbytes, &reg)))
      return s;
    x.din_assign = 0;
    x.centred_in = NULL;
    x.held_in = NULL;
    x.held_out = NULL;
    float **din = nd->n_in <= 16 ? din_local
                                 : strop__arena_alloc(&m->arena, (size_t)nd->n_in * sizeof *din);
    if (!din) return strop__err(STROP_E_NOMEM, "backward: out of memory");
    strop__act ins_local[16];
    strop__act *ins = nd->n_in <= 16
                          ? ins_local
                          : strop__arena_alloc(&m->arena, (size_t)nd->n_in * sizeof *ins);
    if (!ins) return strop__err(STROP_E_NOMEM, "backward: out of memory");
    const uint16_t *held_local[16], **held = NULL;
    for (int j = 0; j < nd->n_in; j++) {
      int k = nd->in[j];
      if (k >= 0 && m->released && m->released[k] == STROP__ACT_COMPACT) {
        const uint16_t *h = held_at(m, k);
        if (m->compact[k] == 2) { /* read as it is held (vtable bf16_centred: slot 0) */
          x.centred_in = h;
        } else if (m->compact[k] == 3) { /* read as it is held (vtable bf16_input 2) */
          if (!held && !(held = held_slots(m, nd->n_in, held_local)))
            return strop__err(STROP_E_NOMEM, "backward: out of memory");
          held[j] = h;
          x.held_in = held;
        } else if ((s = widen_act(m, k))) {
          return s;
        }
      }
      ins[j] = k < 0 ? m->input : m->acts[k];
      /* the first consumer to write it (in the backward's order) can write it outright when
       * its layer says so (din_assign's bit j): the zeroing is skipped, the others add to it */
      const int can = k >= 0 && (nd->vt->flags & STROP__LAYER_ASSIGNS_DIN) && j < 31 &&
                      (strop__din_first_writer || (nd->n_in == 1 && m->consumers[k] == 1));
      int fresh = 0;
      if (k < 0) {
        din[j] = m->input_grad;
      } else if (m->upstream_trainable[k]) {
        if ((s = grad_take(m, k, i, can, spares, &n_spares, gbytes, &reg, &fresh))) return s;
        if (fresh) x.din_assign |= 1 << j;
        din[j] = m->grads[k];
      } else {
        din[j] = NULL;
      }
    }
    /* the unit's own output, held in BF16, for a backward that reads its sign (out_sign_only)
     * when no reader's backward has widened it */
    if (m->released && m->released[i] == STROP__ACT_COMPACT && unit_reads_out(m, first, i)) {
      if (m->compact[i] == 3) x.held_out = held_at(m, i); /* (vtable out_sign_only 2) */
      else if ((s = widen_act(m, i))) return s;
    }
    /* a fused chain's second input from before it (chain_side): its gradient, which the
     * chain's first node writes when it is the first to, as the chain's sum would have */
    int side_slot;
    const int ks = chain_side(m, first, i, &side_slot);
    x.fused_side_slot = side_slot;
    x.fused_side_grad = ks == -1 ? m->input_grad : NULL;
    x.fused_side_assign = 0;
    if (ks >= 0 && m->upstream_trainable[ks]) {
      if ((s = grad_take(m, ks, i, strop__din_first_writer, spares, &n_spares, gbytes, &reg,
                         &x.fused_side_assign)))
        return s;
      x.fused_side_grad = m->grads[ks];
    }
    /* what the layer takes from the arena inside its backward is scratch: given back after */
    strop__arena_mark mk = strop__arena_get_mark(&m->arena);
    for (int j = 0; j < nd->n_in && m->recompute; j++)
      if (nd->in[j] >= 0 && m->recompute[nd->in[j]] &&
          (s = recompute_output(m, nd->in[j], &x, &ins[j])))
        return s;
    x.pgrad_assign = pgrad_prepare(m, first, i);
    if (nd->fused_shared && first != i) {
      x.fused_head = &m->acts[first];
      x.fused_head_grad = head_grad;
    }
    if (!by_rows) scratch_take(m, first, &x, 1);
    s = by_rows ? rows_run(m, nd, &x, &ins[0], din, loss)
                : nd->vt->backward(nd, &x, ins, &m->acts[i], m->grads[i], din);
    x.fused_head = NULL;
    x.scratch = NULL;
    x.scratch_bytes = 0;
    x.fused_head_grad = NULL;
    x.fused_side_grad = NULL;
    if (s) return s;
    if (x.pgrad_assign) /* the layer wrote them outright */
      for (int j = 0; j < nd->n_params; j++) nd->params[j].grad_stale = 0;
    strop__arena_rollback(&m->arena, mk);
    if (i != nn - 1 && m->grads[i]) {
      if (!in_plan(m, m->grads[i])) {
        spares[n_spares].p = m->grads[i];
        spares[n_spares++].bytes = gbytes[i];
      }
      m->grads[i] = NULL;
    }
    if (head_grad) { /* the shared first output's gradient is spent too */
      if (!in_plan(m, head_grad)) {
        spares[n_spares].p = m->grads[first];
        spares[n_spares++].bytes = gbytes[first];
      }
      m->grads[first] = NULL;
    }
    if (m->bwd_done && (s = m->bwd_done(m->bwd_done_ctx, first))) return s;
    i = first;
  }
  if (reg.b0 >= 0) ckpt_end(m, &reg, spares, &n_spares);
  if (m->account) m->account->peak = m->arena.peak;
  /* parameters whose nodes the backward did not reach got no gradient: zero */
  for (int k = 0; k < m->n_params; k++) strop__param_grad_fresh(m->params[k]);
  return STROP_OK;
}

/* ---- public run and inspection ---- */
strop_status strop__model_check_mask(const char *fn, const strop_tensor *mask, int64_t n,
                                     int64_t t) {
  if (!mask) return STROP_OK;
  if (mask->rank != 2 || mask->dims[0] != n || mask->dims[1] != t) {
    char a[128];
    strop__shape got = {mask->rank, {0}};
    memcpy(got.d, mask->dims, sizeof mask->dims);
    return strop__err(STROP_E_SHAPE,
                      "%s: the padding mask has shape %s, the batch needs "
                      "[%lld, %lld] (samples, positions)",
                      fn, strop__shape_str(&got, a, sizeof a), (long long)n, (long long)t);
  }
  for (size_t i = 0; i < mask->numel; i++)
    if (mask->data[i] != 0.0f && mask->data[i] != 1.0f)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: the padding mask holds %g at sample %lld, "
                        "position %lld: it must be 1 (a token) or 0 (padding)",
                        fn, (double)mask->data[i], (long long)(i / (size_t)t),
                        (long long)(i % (size_t)t));
  return STROP_OK;
}

strop_status strop__model_check_types(const char *fn, const strop_tensor *types, int64_t n,
                                      int64_t t) {
  if (!types) return STROP_OK;
  if (types->rank != 2 || types->dims[0] != n || types->dims[1] != t) {
    char a[128];
    strop__shape got = {types->rank, {0}};
    memcpy(got.d, types->dims, sizeof types->dims);
    return strop__err(STROP_E_SHAPE,
                      "%s: the token types have shape %s, the batch needs "
                      "[%lld, %lld] (samples, positions)",
                      fn, strop__shape_str(&got, a, sizeof a), (long long)n, (long long)t);
  }
  for (size_t i = 0; i < types->numel; i++) {
    const float v = types->data[i];
    if (!(v >= 0.0f && v < 16777216.0f) || v != floorf(v))
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: the token types hold %g at sample %lld, position %lld: a type "
                        "is an integer >= 0 (Hugging Face's token_type_ids)",
                        fn, (double)v, (long long)(i / (size_t)t), (long long)(i % (size_t)t));
  }
  return STROP_OK;
}

void strop_side_inputs_init(strop_side_inputs *side) {
  if (!side) return;
  memset(side, 0, sizeof *side);
  side->size = sizeof *side;
}

strop_status strop__side_inputs_read(const char *fn, const strop_side_inputs *side,
                                     const strop_tensor **mask, const strop_tensor **types) {
  *mask = *types = NULL;
  if (!side) return STROP_OK;
  if (side->size < offsetof(strop_side_inputs, mask) + sizeof side->mask)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: side->size %zu is too small (use strop_side_inputs_init())", fn,
                      side->size);
  *mask = side->mask;
  if (side->size >= offsetof(strop_side_inputs, token_types) + sizeof side->token_types)
    *types = side->token_types;
  return STROP_OK;
}

static strop_status forward_side(const char *fn, strop_model *m, const strop_tensor *input,
                                 const strop_tensor *mask, const strop_tensor *types,
                                 strop_tensor **out);

strop_status strop_model_forward(strop_model *m, const strop_tensor *input, strop_tensor **out) {
  return forward_side("strop_model_forward", m, input, NULL, NULL, out);
}

strop_status strop_model_forward_masked(strop_model *m, const strop_tensor *input,
                                        const strop_tensor *mask, strop_tensor **out) {
  return forward_side(mask ? "strop_model_forward_masked" : "strop_model_forward", m, input, mask,
                      NULL, out);
}

strop_status strop_model_forward_ext(strop_model *m, const strop_tensor *input,
                                     const strop_side_inputs *side, strop_tensor **out) {
  static const char fn[] = "strop_model_forward_ext";
  const strop_tensor *mask, *types;
  if (out) *out = NULL;
  strop_status s = strop__side_inputs_read(fn, side, &mask, &types);
  return s ? s : forward_side(fn, m, input, mask, types, out);
}

static strop_status forward_side(const char *fn, strop_model *m, const strop_tensor *input,
                                 const strop_tensor *mask, const strop_tensor *types,
                                 strop_tensor **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!m || !input)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, m ? "input" : "model");
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  /* any per-sample shape of the model's rank that its layers accept: other image sizes,
   * shorter sequences */
  if (input->rank != m->in_shape.rank + 1) {
    char a[128], b[128];
    strop__shape full = {input->rank, {0}};
    memcpy(full.d, input->dims, sizeof input->dims);
    return strop__err(STROP_E_SHAPE, "%s: input has shape %s, the model expects [N, %s", fn,
                      strop__shape_str(&full, a, sizeof a),
                      strop__shape_str(&m->in_shape, b, sizeof b) + 1);
  }
  strop__shape per = {m->in_shape.rank, {0}};
  for (int i = 0; i < per.rank; i++) per.d[i] = input->dims[i + 1];
  strop_status s = strop__model_check_mask(fn, mask, input->dims[0], per.rank ? per.d[0] : 1);
  if (!s) s = strop__model_check_types(fn, types, input->dims[0], per.rank ? per.d[0] : 1);
  if (s) return s;
  const strop__act *o;
  const strop__side side = {mask ? mask->data : NULL, types ? types->data : NULL};
  s = strop__model_forward_shaped(m, input->data, input->dims[0], &per, m->training, &side, &o);
  if (s) {
    char a[128];
    strop__shape full = {input->rank, {0}};
    memcpy(full.d, input->dims, sizeof input->dims);
    if (s == STROP_E_SHAPE)
      strop__err_prefix("%s: input %s", fn, strop__shape_str(&full, a, sizeof a));
    else strop__err_prefix("%s", fn);
    return s;
  }
  int64_t dims[STROP_MAX_RANK];
  dims[0] = o->n;
  int rank = o->shape.rank + 1;
  if (rank > STROP_MAX_RANK) {
    strop__model_step_end(m);
    return strop__err(STROP_E_SHAPE, "%s: output rank %d exceeds %d", fn, rank, STROP_MAX_RANK);
  }
  for (int i = 0; i < o->shape.rank; i++) dims[i + 1] = o->shape.d[i];
  s = strop_tensor_from_data(o->data, (size_t)o->n * strop__shape_numel(&o->shape), rank, dims,
                             out);
  strop__model_step_end(m);
  if (s == STROP_E_NOMEM) return STROP__NOMEM(fn);
  return s;
}

strop_status strop_model_set_training(strop_model *m, int training) {
  if (!m) return strop__err(STROP_E_INVALID_ARG, "strop_model_set_training: model is NULL");
  m->training = training ? 1 : 0;
  return STROP_OK;
}

int strop_model_is_training(const strop_model *m) { return m ? m->training : 0; }

int strop_model_input_shape(const strop_model *m, int64_t *dims, int cap) {
  if (!m || (!dims && cap > 0)) return -1;
  for (int i = 0; i < m->in_shape.rank && i < cap; i++) dims[i] = m->in_shape.d[i];
  return m->in_shape.rank;
}

int strop_model_output_shape(const strop_model *m, int64_t *dims, int cap) {
  if (!m || !m->finalized || (!dims && cap > 0)) return -1;
  const strop__shape *s = &m->nodes[m->n_nodes - 1].out_shape;
  for (int i = 0; i < s->rank && i < cap; i++) dims[i] = s->d[i];
  return s->rank;
}

int64_t strop_model_num_nodes(const strop_model *m) { return m ? m->n_nodes : -1; }

int64_t strop_model_node_info(const strop_model *m, int64_t i, int what, char *buf, size_t cap) {
  if (what != 0 && what != 1) {
    strop__err(STROP_E_INVALID_ARG,
               "strop_model_node_info: what must be 0 (name) or 1 (type), "
               "got %d",
               what);
    return -1;
  }
  return what == 0 ? strop_model_node_name(m, i, buf, cap)
                   : strop_model_node_type(m, i, buf, cap);
}

/* node i of m, or NULL with an error naming fn */
static const strop__node *node_at(const char *fn, const strop_model *m, int64_t i) {
  if (!m) {
    strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
    return NULL;
  }
  if (i < 0 || i >= m->n_nodes) {
    strop__err(STROP_E_INVALID_ARG, "%s: node %lld is out of range (the model has %d nodes)", fn,
               (long long)i, m->n_nodes);
    return NULL;
  }
  return &m->nodes[i];
}

int64_t strop_model_node_name(const strop_model *m, int64_t i, char *buf, size_t cap) {
  static const char fn[] = "strop_model_node_name";
  const strop__node *n = node_at(fn, m, i);
  return n ? strop__copy_out(fn, n->name, buf, cap) : -1;
}

int64_t strop_model_node_type(const strop_model *m, int64_t i, char *buf, size_t cap) {
  static const char fn[] = "strop_model_node_type";
  const strop__node *n = node_at(fn, m, i);
  return n ? strop__copy_out(fn, n->vt->type, buf, cap) : -1;
}

int64_t strop_model_node_options(const strop_model *m, int64_t i, char *buf, size_t cap) {
  static const char fn[] = "strop_model_node_options";
  const strop__node *n = node_at(fn, m, i);
  if (!n) return -1;
  strop__opts o;
  if (strop__node_write_opts(n, &o)) return -1;
  size_t len = 1;
  for (int k = 0; k < o.n; k++) len += strlen(o.v[k].key) + strlen(o.v[k].val) + 2;
  char *text = strop__malloc(len);
  int64_t r = -1;
  if (text) {
    size_t l = 0;
    text[0] = '\0';
    for (int k = 0; k < o.n; k++)
      l += (size_t)snprintf(text + l, len - l, "%s%s=%s", k ? " " : "", o.v[k].key, o.v[k].val);
    r = strop__copy_out(fn, text, buf, cap);
  } else {
    strop__err(STROP_E_NOMEM, "%s: out of memory", fn);
  }
  strop__free(text);
  strop__opts_free(&o);
  return r;
}

int strop_model_node_num_inputs(const strop_model *m, int64_t i) {
  const strop__node *n = node_at("strop_model_node_num_inputs", m, i);
  return n ? n->n_in : -1;
}

int64_t strop_model_node_input(const strop_model *m, int64_t i, int j, char *buf, size_t cap) {
  static const char fn[] = "strop_model_node_input";
  const strop__node *n = node_at(fn, m, i);
  if (!n) return -1;
  if (j < 0 || j >= n->n_in) {
    strop__err(STROP_E_INVALID_ARG, "%s: node '%s' has %d inputs, asked for input %d", fn,
               n->name, n->n_in, j);
    return -1;
  }
  return strop__copy_out(fn, n->in_names[j], buf, cap);
}

int strop_model_node_output_shape(const strop_model *m, int64_t i, int64_t *dims, int cap) {
  static const char fn[] = "strop_model_node_output_shape";
  const strop__node *n = node_at(fn, m, i);
  if (!n) return -1;
  if (!m->finalized || (!dims && cap > 0)) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s", fn,
               !m->finalized ? "the model is not finalized" : "dims is NULL");
    return -1;
  }
  for (int k = 0; k < n->out_shape.rank && k < cap; k++) dims[k] = n->out_shape.d[k];
  return n->out_shape.rank;
}

int64_t strop_model_num_tensors(const strop_model *m) {
  return m ? (m->finalized ? m->n_params : 0) : -1;
}

int64_t strop_model_tensor_name(const strop_model *m, int64_t i, char *buf, size_t cap) {
  if (!m || !m->finalized || i < 0 || i >= m->n_params || (!buf && cap)) {
    strop__err(STROP_E_INVALID_ARG, "strop_model_tensor_name: bad arguments");
    return -1;
  }
  return strop__copy_out("strop_model_tensor_name", m->params[i]->name, buf, cap);
}

int64_t strop_model_param_count(const strop_model *m, int trainable_only) {
  if (!m) return -1;
  int64_t n = 0;
  for (int i = 0; m->finalized && i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (p->is_buffer || (trainable_only && !p->trainable)) continue;
    n += (int64_t)p->numel;
  }
  return n;
}

strop__param *strop__model_param_find(strop_model *m, const char *name) {
  for (int i = 0; name && i < m->n_params; i++)
    if (strcmp(m->params[i]->name, name) == 0) return m->params[i];
  return NULL;
}

strop_status strop_model_tensor_view(strop_model *m, const char *name, strop_tensor **out) {
  static const char fn[] = "strop_model_tensor_view";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!m || !name)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, m ? "name" : "model");
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  strop__param *p = strop__model_param_find(m, name);
  if (!p) return strop__err(STROP_E_NOT_FOUND, "%s: no parameter or buffer named '%s'", fn, name);
  if (p->lowp.dtype)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: '%s' is frozen and held in %s (the model's "
                      "frozen dtype), not float32: strop_model_set_frozen_dtype(model, "
                      "STROP_DTYPE_F32) or unfreezing it gives it float32 values to view",
                      fn, name, p->lowp.dtype == STROP__LOWP_BF16 ? "bf16" : "int8");
  if (!p->data)
    return strop__err(STROP_E_UNSUPPORTED, "%s: '%s' is an int64 buffer, not float", fn, name);
  /* the view is writable: a weight borrowed from a mapped file becomes the model's own */
  if (strop__param_own(p))
    return strop__err(STROP_E_NOMEM, "%s: out of memory copying '%s' out of its mapped file", fn,
                      name);
  int64_t one = 1;
  p->viewed = 1; /* writes through the view bump no version */
  return strop_tensor_wrap(p->data, p->numel, p->rank ? p->rank : 1, p->rank ? p->dims : &one,
                           out);
}

strop_status strop_model_set_tensor(strop_model *m, const char *name, const float *data,
                                    size_t count) {
  static const char fn[] = "strop_model_set_tensor";
  if (!m || !name || !data)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !m      ? "model"
                      : !name ? "name"
                              : "data");
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  strop__param *p = strop__model_param_find(m, name);
  if (!p) return strop__err(STROP_E_NOT_FOUND, "%s: no parameter or buffer named '%s'", fn, name);
  if (count != p->numel)
    return strop__err(STROP_E_SHAPE, "%s: '%s' has %zu elements, got %zu", fn, name, p->numel,
                      count);
  if (p->lowp.dtype) {
    if (strop__param_assign(p, data))
      return strop__err(STROP_E_NOMEM,
                        "%s: out of memory converting '%s' to its frozen dtype "
                        "(unchanged)",
                        fn, name);
  } else if (p->data) {
    if (strop__param_assign(p, data))
      return strop__err(STROP_E_NOMEM, "%s: out of memory for '%s' (unchanged)", fn, name);
  } else {
    p->idata[0] = (int64_t)data[0];
  }
  p->version++;
  return STROP_OK;
}

/* ---- clone ---- */
void strop__model_unshare(strop_model *m) {
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++) {
      strop__param *p = &m->nodes[i].params[j];
      if (p->map && strop__mapping_unshare(p->map)) p->map = NULL;
    }
}

/* share: frozen weights are shared with src (made shareable there) instead of copied */
static strop_status clone_model(strop_model *share_src, const strop_model *src,
                                strop_model **out);

strop_status strop__model_clone(const strop_model *src, strop_model **out) {
  return clone_model(NULL, src, out);
}

strop_status strop__model_clone_shared(strop_model *src, strop_model **out) {
  strop_status s = clone_model(src, src, out);
  if (s) strop__model_unshare(src);
  return s;
}

static strop_status clone_model(strop_model *share_src, const strop_model *src,
                                strop_model **out) {
  static const char fn[] = "strop_model_clone";
  *out = NULL;
  strop_model *m = NULL;
  strop_status s = strop_model_create(src->in_shape.rank, src->in_shape.d, &m);
  if (s) return s;
  if ((s = nodes_reserve(m, src->n_nodes ? src->n_nodes : 1, fn))) {
    strop_model_free(m);
    return s;
  }
  memset(m->nodes, 0, (size_t)m->cap_nodes * sizeof *m->nodes);
  for (int i = 0; i < src->n_nodes; i++) {
    const strop__node *a = &src->nodes[i];
    strop__node *b = &m->nodes[i];
    m->n_nodes = i + 1;
    b->vt = a->vt;
    b->n_in = a->n_in;
    b->out_shape = a->out_shape;
    b->frozen_stats = a->frozen_stats;
    memcpy(b->slot, a->slot, sizeof b->slot);
    for (int k = 0; k < a->n_ties; k++)
      if (strop__node_add_tie(b, a->tie_suffix[k], a->tie_target[k])) goto oom;
    b->name = strop__strdup(a->name);
    b->cfg = strop__malloc(a->vt->cfg_size ? a->vt->cfg_size : 1);
    b->in = strop__malloc((size_t)a->n_in * sizeof *b->in);
    b->in_shapes = strop__malloc((size_t)a->n_in * sizeof *b->in_shapes);
    b->in_names = strop__calloc((size_t)a->n_in, sizeof *b->in_names);
    b->params = a->n_params ? strop__calloc((size_t)a->n_params, sizeof *b->params) : NULL;
    if (!b->name || !b->cfg || !b->in || !b->in_shapes || !b->in_names ||
        (a->n_params && !b->params))
      goto oom;
    memcpy(b->cfg, a->cfg, a->vt->cfg_size);
    memcpy(b->in, a->in, (size_t)a->n_in * sizeof *b->in);
    memcpy(b->in_shapes, a->in_shapes, (size_t)a->n_in * sizeof *b->in_shapes);
    for (int j = 0; j < a->n_in; j++)
      if (!(b->in_names[j] = strop__strdup(a->in_names[j]))) goto oom;
    for (int j = 0; j < a->n_params; j++) {
      const strop__param *pa = &a->params[j];
      strop__param *pb = &b->params[j];
      b->n_params = j + 1;
      *pb = *pa;
      pb->name = NULL;
      pb->data = NULL;
      pb->idata = NULL;
      pb->grad = NULL;
      pb->grad_planned = 0;
      memset(&pb->lowp, 0, sizeof pb->lowp);
      pb->tied = NULL; /* reindex points it at the copy's owner */
      /* the BF16 copy is made again from the copy's values */
      memset(&pb->shadow, 0, sizeof pb->shadow);
      pb->shadow_released = 0;
      pb->map = NULL;
      if (!(pb->name = strop__strdup(pa->name))) goto oom;
      /* a frozen weight the plan only reads: one copy, shared (a writer copies it first) */
      if (share_src && !pa->trainable && !pa->is_buffer && !pa->tied &&
          strop__param_share(&share_src->nodes[i].params[j]))
        goto oom;
      if (pa->map) {
        /* a weight borrowed from a mapped file is borrowed by the copy too (surgery runs on a
         * clone: a LoRA plan must not copy the base); its writers copy it first */
        pb->map = strop__mapping_ref(pa->map);
        pb->data = pa->data;
        pb->lowp = pa->lowp;
      } else if (pa->lowp.dtype && strop__lowp_copy(&pb->lowp, &pa->lowp)) {
        goto oom;
      } else if (pa->data) {
        if (!(pb->data = strop__malloc_aligned(pa->numel * sizeof(float)))) goto oom;
        memcpy(pb->data, pa->data, pa->numel * sizeof(float));
      }
      if (pa->idata) {
        if (!(pb->idata = strop__malloc(sizeof(int64_t)))) goto oom;
        pb->idata[0] = pa->idata[0];
      }
    }
  }
  m->finalized = src->finalized;
  m->training = src->training;
  m->rng = src->rng;
  m->seed = src->seed;
  m->frozen_dtype = src->frozen_dtype;
  m->int8_group = src->int8_group;
  m->compute_dtype = src->compute_dtype;
  m->weight_cache = src->weight_cache;
  m->attention = src->attention;
  if (src->ckpt_pattern && !(m->ckpt_pattern = strop__strdup(src->ckpt_pattern))) goto oom;
  if (strop__meta_copy(&m->meta, &src->meta, fn)) goto oom;
  if (m->finalized && (s = strop__model_reindex(m))) {
    strop_model_free(m);
    return s;
  }
  *out = m;
  return STROP_OK;
oom:
  strop_model_free(m);
  return STROP__NOMEM(fn);
}

/* Fresh parameters for the same architecture: every node re-inferred and re-initialised from
 * seed, everything trainable again (the from-scratch baseline of a fine-tuning run). */
strop_status strop__model_reinit(strop_model *m, uint64_t seed) {
  if (!m->finalized) return strop__err(STROP_E_STATE, "model is not finalized");
  strop__model_step_end(m);
  strop_status s = strop__model_infer_all(m, seed, 1);
  if (!s) s = strop__model_reindex(m);
  for (int i = 0; i < m->n_nodes; i++) m->nodes[i].frozen_stats = 0;
  strop__rng_seed(&m->rng, seed, 0xd0);
  return s;
}

strop_status strop_model_reinit(strop_model *m, uint64_t seed) {
  static const char fn[] = "strop_model_reinit";
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  /* on a copy, so that running out of memory halfway leaves the model as it was */
  strop_model *c = NULL;
  strop_status s = strop__model_clone(m, &c);
  if (!s) s = strop__model_reinit(c, seed);
  if (s) {
    strop_model_free(c);
    if (s == STROP_E_NOMEM) return strop__err(STROP_E_NOMEM, "%s: out of memory", fn);
    strop__err_prefix("%s", fn);
    return s;
  }
  c->no_fusion = m->no_fusion;
  strop_model tmp = *m;
  *m = *c;
  *c = tmp;
  strop_model_free(c);
  return STROP_OK;
}

strop_status strop_model_tie(strop_model *m, const char *param, const char *target) {
  static const char fn[] = "strop_model_tie";
  if (!m || !param || !target || !*param || !*target)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL or empty", fn,
                      !m                  ? "model"
                      : !param || !*param ? "param"
                                          : "target");
  /* the node whose name is the longest prefix of param followed by '.' */
  int best = -1;
  size_t best_len = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    size_t l = strlen(m->nodes[i].name);
    if (l > best_len && !strncmp(param, m->nodes[i].name, l) && param[l] == '.' && param[l + 1]) {
      best = i;
      best_len = l;
    }
  }
  if (best < 0)
    return strop__err(STROP_E_NOT_FOUND, "%s: no node of the model owns a parameter named '%s'",
                      fn, param);
  strop__node *nd = &m->nodes[best];
  const char *suffix = param + best_len + 1;
  /* every reader of a tied tensor reads float32: not one held in BF16 / int8 */
  const strop__param *tp = m->finalized ? strop__model_param_find(m, target) : NULL;
  if (tp && strop__param_owner((strop__param *)tp)->lowp.dtype)
    return strop__err(
        STROP_E_STATE,
        "%s: '%s' is frozen and held in %s (the model's frozen "
        "dtype); strop_model_set_frozen_dtype(model, STROP_DTYPE_F32) first",
        fn, target,
        strop__param_owner((strop__param *)tp)->lowp.dtype == STROP__LOWP_BF16 ? "bf16" : "int8");
  /* remember the tie this one replaces, to restore it on failure */
  char *old = NULL;
  for (int k = 0; k < nd->n_ties; k++)
    if (!strcmp(nd->tie_suffix[k], suffix) && !(old = strop__strdup(nd->tie_target[k])))
      return STROP__NOMEM(fn);
  const int had = nd->n_ties;
  strop_status st = strop__node_add_tie(nd, suffix, target);
  if (!st && m->finalized) {
    if (!strop__node_param(nd, suffix))
      st = strop__err(STROP_E_NOT_FOUND, "layer '%s' (%s) has no parameter '%s'", nd->name,
                      nd->vt->type, suffix);
    else st = strop__model_reindex(m);
    if (st) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", strop_last_error());
      if (old) {
        (void)strop__node_add_tie(nd, suffix, old); /* same size: cannot fail for memory */
      } else if (nd->n_ties > had) {
        nd->n_ties--;
        strop__free(nd->tie_suffix[nd->n_ties]);
        strop__free(nd->tie_target[nd->n_ties]);
      }
      (void)strop__model_reindex(m);
      strop__err(st, "%s: %s", fn, msg);
    }
  } else if (st) {
    strop__err_prefix("%s", fn);
  }
  strop__free(old);
  return st;
}
