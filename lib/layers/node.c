/* SPDX-License-Identifier: MIT */
/* strop — what every layer shares: per-sample shapes, a node's parameter slots and their
 * memory, and writing a node's options back through its type's schema. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "layers/layer.h"

/* ---- shapes ---- */
size_t strop__shape_numel(const strop__shape *s) {
  size_t n = 1;
  for (int i = 0; i < s->rank; i++) n *= (size_t)s->d[i];
  return n;
}

const char *strop__shape_str(const strop__shape *s, char *buf, size_t cap) {
  size_t l = 0;
  if (cap == 0) return buf;
  buf[0] = '\0';
  l += (size_t)snprintf(buf + l, cap - l, "[");
  for (int i = 0; i < s->rank && l < cap; i++)
    l += (size_t)snprintf(buf + l, cap - l, "%s%lld", i ? ", " : "", (long long)s->d[i]);
  if (l < cap) snprintf(buf + l, cap - l, "]");
  return buf;
}

int strop__shape_eq(const strop__shape *a, const strop__shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

strop_status strop__shape_error(const strop__node *n, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return strop__err(STROP_E_SHAPE, "layer '%s' (%s): %s", n->name, n->vt->type, msg);
}

const float *strop__exec_mask(const strop__node *n, const strop__exec *x, int64_t t,
                              strop_status *st) {
  *st = STROP_OK;
  if (!x->pad_mask) return NULL;
  if (x->pad_len != t) {
    *st = strop__shape_error(n,
                             "the batch's padding mask has %lld positions per sample, this "
                             "layer's sequence has %lld",
                             (long long)x->pad_len, (long long)t);
    return NULL;
  }
  return x->pad_mask;
}

const float *strop__exec_types(const strop__node *n, const strop__exec *x, int64_t t,
                               strop_status *st) {
  *st = STROP_OK;
  if (!x->token_types) return NULL;
  if (x->types_len != t) {
    *st = strop__shape_error(n,
                             "the batch's token types have %lld positions per sample, this "
                             "layer's sequence has %lld",
                             (long long)x->types_len, (long long)t);
    return NULL;
  }
  return x->token_types;
}

strop_status strop__shape_same(const strop__node *n, const strop__shape *in, strop__shape *out) {
  (void)n;
  *out = in[0];
  return STROP_OK;
}

strop_status strop__shape_trailing(const strop__node *n, const strop__shape *in,
                                   const int64_t *dims, int nd, strop__shape *out) {
  const strop__shape *s = &in[0];
  char buf[96], nb[96];
  if (s->rank < 1)
    return strop__shape_error(n, "input must have at least one dimension per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  strop__shape ns = {nd, {0}};
  int ok = nd <= s->rank;
  for (int i = 0; i < nd; i++) {
    ns.d[i] = dims[i];
    ok = ok && s->d[s->rank - nd + i] == dims[i];
  }
  if (!ok)
    return strop__shape_error(n,
                              "normalized_shape %s does not match the trailing dimensions of "
                              "the input %s",
                              strop__shape_str(&ns, nb, sizeof nb),
                              strop__shape_str(s, buf, sizeof buf));
  *out = *s;
  return STROP_OK;
}

strop_status strop__node_infer_shape(strop__node *n) {
  return n->vt->shape(n, n->in_shapes, &n->out_shape);
}

/* ---- parameter slots ---- */
strop_status strop__node_declare(strop__node *n, int slot, int rank, const int64_t *dims) {
  const strop__paramdef *pd = n->vt->params;
  int count = 0;
  while (pd && pd[count].name) count++;
  if (slot < 0 || slot >= count || slot >= STROP__MAX_SLOTS || n->slot[slot] ||
      n->n_params >= STROP__MAX_SLOTS || rank < 0 || rank > STROP_MAX_RANK)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (%s): bad parameter slot %d", n->name,
                      n->vt->type, slot);
  /* slots come in declaration order, so params[] is in state_dict order */
  for (int s = slot + 1; s < count && s < STROP__MAX_SLOTS; s++)
    if (n->slot[s])
      return strop__err(STROP_E_INTERNAL, "layer '%s' (%s): slot %d declared after slot %d",
                        n->name, n->vt->type, slot, s);
  strop__param *v = strop__realloc(n->params, (size_t)(n->n_params + 1) * sizeof *v);
  if (!v) return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", n->name);
  n->params = v;
  strop__param *p = &v[n->n_params];
  memset(p, 0, sizeof *p);
  size_t len = strlen(n->name) + strlen(pd[slot].name) + 2;
  p->name = strop__malloc(len);
  if (!p->name) return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", n->name);
  /* an empty slot name: the parameter is named as its node (torchvision's class_token) */
  snprintf(p->name, len, "%s%s%s", n->name, pd[slot].name[0] ? "." : "", pd[slot].name);
  const int flags = pd[slot].flags;
  p->is_int64 = (flags & STROP__PD_INT64) != 0;
  p->is_buffer = (flags & (STROP__PD_BUFFER | STROP__PD_INT64)) != 0;
  p->is_adapter = (flags & STROP__PD_ADAPTER) != 0;
  p->rank = p->is_int64 ? 0 : rank; /* an int64 buffer is a scalar, as PyTorch stores it */
  p->numel = 1;
  for (int i = 0; i < p->rank; i++) {
    p->dims[i] = dims[i];
    p->numel *= (size_t)dims[i];
  }
  p->trainable = !p->is_buffer && !(flags & STROP__PD_FROZEN);
  p->lr_mult = 1.0f;
  n->n_params++;
  n->slot[slot] = (uint8_t)n->n_params;
  return STROP_OK;
}

strop__param *strop__node_param(strop__node *n, const char *suffix) {
  size_t nl = strlen(n->name);
  for (int i = 0; i < n->n_params; i++) {
    const char *pn = n->params[i].name;
    if (pn && strncmp(pn, n->name, nl) == 0 &&
        ((pn[nl] == '.' && strcmp(pn + nl + 1, suffix) == 0) || (!pn[nl] && !*suffix)))
      return &n->params[i];
  }
  return NULL;
}

int strop__param_lowp_target(const strop__param *p, int dtype, int tie_target) {
  if (!dtype || !p->lowp_ok || p->trainable || p->is_buffer || p->is_adapter || p->tied ||
      tie_target || p->rank != 2)
    return STROP__LOWP_F32;
  return dtype;
}

size_t strop__param_drop_range(const strop__param *p, size_t from, size_t count) {
  /* heap memory shared (map->heap) is never handed back */
  if (!strop__mapping_is_file(p->map) || !p->data || from >= p->numel) return 0;
  if (count > p->numel - from) count = p->numel - from;
  return strop__mapping_drop_pages(p->data + from, count * sizeof(float));
}

size_t strop__param_drop_pages(const strop__param *p) {
  return strop__param_drop_range(p, 0, p->numel);
}

void strop__param_drop_values(strop__param *p) {
  if (p->map) {
    strop__mapping_unref(p->map);
    p->map = NULL;
    memset(&p->lowp, 0, sizeof p->lowp);
  } else {
    strop__free_aligned(p->data);
    strop__lowp_free(&p->lowp);
  }
  strop__lowp_free(&p->shadow); /* made from the values dropped */
  p->shadow_released = 0;
  p->data = NULL;
}

int strop__param_own(strop__param *p) {
  if (!p->map) return 0;
  if (strop__mapping_unshare(p->map)) { /* shared memory no one else holds now: p's own */
    p->map = NULL;
    return 0;
  }
  const size_t bytes = strop__param_bytes(p);
  const int file = strop__mapping_is_file(p->map);
  if (p->lowp.dtype) { /* values and, for int8 (shared, never from a file), scales */
    strop__lowp q;
    if (strop__lowp_copy(&q, &p->lowp)) return -1;
    strop__mapping_unref(p->map);
    p->lowp = q;
  } else {
    void *v = strop__malloc_aligned(bytes);
    if (!v) return -1;
    memcpy(v, p->data, bytes);
    strop__mapping_unref(p->map);
    p->data = v;
  }
  p->map = NULL;
  if (file) strop__mapping_count(0, (int64_t)bytes);
  return 0;
}

int strop__param_share(strop__param *p) {
  if (p->map) return 0;
  if (!p->data && !p->lowp.dtype) return 0;
  p->map = strop__mapping_share(p->lowp.dtype ? p->lowp.v : (void *)p->data, p->lowp.scale);
  return p->map ? 0 : -1;
}

void strop__param_borrow(strop__param *p, strop__mapping *map, const void *values, int dtype) {
  const int64_t rows = p->rank == 2 ? p->dims[0] : 0, cols = p->rank == 2 ? p->dims[1] : 0;
  strop__param_drop_values(p);
  p->map = strop__mapping_ref(map);
  if (dtype == STROP__LOWP_BF16) {
    p->lowp.dtype = STROP__LOWP_BF16;
    p->lowp.rows = rows;
    p->lowp.cols = cols;
    p->lowp.v = (void *)values;
  } else {
    p->data = (float *)values;
  }
  strop__mapping_count((int64_t)strop__param_bytes(p), 0);
}

int strop__param_convert(strop__param *p, int dtype, int64_t group) {
  if (p->lowp.dtype == dtype) return 0;
  if (dtype == STROP__LOWP_F32) {
    float *d = strop__malloc_aligned(p->numel * sizeof *d);
    if (!d) return -1;
    strop__lowp_expand(&p->lowp, d);
    strop__param_drop_values(p);
    p->data = d;
    return 0;
  }
  float *tmp = NULL;
  const float *v = strop__param_f32(p, &tmp);
  strop__lowp q;
  const int bad = !v ||
                  strop__lowp_make(&q, dtype, v, p->dims[0], p->dims[1], p->lowp_ok == 2, group);
  strop__free_aligned(tmp);
  if (bad) return -1;
  strop__param_drop_values(p);
  p->lowp = q;
  return 0;
}

int strop__param_assign(strop__param *p, const float *v) {
  if (!p->lowp.dtype) {
    if (p->map) {
      /* replaced outright: fresh memory, nothing copied from the mapping */
      float *d = strop__malloc_aligned(p->numel * sizeof *d);
      if (!d) return -1;
      strop__param_drop_values(p);
      p->data = d;
    }
    memcpy(p->data, v, p->numel * sizeof *v);
    return 0;
  }
  strop__lowp q;
  if (strop__lowp_make(&q, p->lowp.dtype, v, p->lowp.rows, p->lowp.cols, p->lowp.scale_cols,
                       p->lowp.group))
    return -1;
  strop__param_drop_values(p);
  p->lowp = q;
  return 0;
}

const float *strop__param_f32(const strop__param *p, float **tmp) {
  *tmp = NULL;
  if (!p->lowp.dtype) return p->data;
  if (!(*tmp = strop__malloc_aligned(p->numel * sizeof **tmp))) return NULL;
  strop__lowp_expand(&p->lowp, *tmp);
  return *tmp;
}

void strop__param_release(strop__param *p) {
  strop__free(p->name);
  strop__param_drop_values(p);
  strop__free(p->idata);
  strop__param_grad_free(p);
  memset(p, 0, sizeof *p);
}

void strop__params_release(strop__param *v, int n) {
  for (int i = 0; i < n; i++) strop__param_release(&v[i]);
  strop__free(v);
}

void strop__node_clear_params(strop__node *n) {
  strop__params_release(n->params, n->n_params);
  strop__free_aligned(n->fold); /* derived from the parameters */
  n->fold = NULL;
  strop__free_aligned(n->wino);
  n->wino = NULL;
  n->wino_bytes = 0;
  n->params = NULL;
  n->n_params = 0;
  memset(n->slot, 0, sizeof n->slot);
}

strop_status strop__node_add_tie(strop__node *n, const char *suffix, const char *target) {
  char *s = strop__strdup(suffix), *t = strop__strdup(target);
  if (!s || !t) {
    strop__free(s);
    strop__free(t);
    return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", n->name);
  }
  for (int k = 0; k < n->n_ties; k++)
    if (!strcmp(n->tie_suffix[k], suffix)) {
      strop__free(s);
      strop__free(n->tie_target[k]);
      n->tie_target[k] = t;
      return STROP_OK;
    }
  char **a = strop__realloc(n->tie_suffix, (size_t)(n->n_ties + 1) * sizeof *a);
  if (a) n->tie_suffix = a;
  char **b = a ? strop__realloc(n->tie_target, (size_t)(n->n_ties + 1) * sizeof *b) : NULL;
  if (b) n->tie_target = b;
  if (!a || !b) {
    strop__free(s);
    strop__free(t);
    return strop__err(STROP_E_NOMEM, "layer '%s': out of memory", n->name);
  }
  n->tie_suffix[n->n_ties] = s;
  n->tie_target[n->n_ties++] = t;
  return STROP_OK;
}

void strop__node_release(strop__node *n) {
  for (int k = 0; k < n->n_ties; k++) {
    strop__free(n->tie_suffix[k]);
    strop__free(n->tie_target[k]);
  }
  strop__free(n->tie_suffix);
  strop__free(n->tie_target);
  strop__node_clear_params(n);
  strop__free(n->name);
  strop__free(n->cfg);
  strop__free(n->in);
  strop__free(n->in_shapes);
  for (int i = 0; n->in_names && i < n->n_in; i++) strop__free(n->in_names[i]);
  strop__free(n->in_names);
  memset(n, 0, sizeof *n);
}

strop_status strop__node_write_opts(const strop__node *n, strop__opts *out) {
  memset(out, 0, sizeof *out);
  strop_status st = strop__schema_write(n->vt->options, n->cfg, out);
  if (st) {
    strop__opts_free(out);
    return strop__err(STROP_E_NOMEM, "layer '%s': out of memory writing options", n->name);
  }
  return STROP_OK;
}
