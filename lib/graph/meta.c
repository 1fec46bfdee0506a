/* SPDX-License-Identifier: MIT */
/* strop — a model's metadata: the sorted key -> value store behind strop_model_set_meta() and
 * its getters. Keys and values are copied in and checked against the bounds model.h states. */
#include <string.h>

#include "graph/graph.h"

const char *strop__meta_bad_key(const char *key) {
  if (!key || !*key) return "the key is empty";
  size_t n = strlen(key);
  if (n > STROP_META_KEY_MAX) return "the key is longer than 255 bytes";
  for (size_t i = 0; i < n; i++)
    if (key[i] < 0x21 || key[i] > 0x7e)
      return "a key is printable ASCII without spaces (letters, digits, '.', '_', '-', ...)";
  return NULL;
}

/* The index of key, or -(insertion point) - 1 when absent. */
static int find(const strop__meta *m, const char *key) {
  int lo = 0, hi = m->n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2, c = strcmp(m->keys[mid], key);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -lo - 1;
}

const char *strop__meta_get(const strop__meta *m, const char *key) {
  int i = key ? find(m, key) : -1;
  return i >= 0 ? m->vals[i] : NULL;
}

strop_status strop__meta_set(strop__meta *m, const char *fn, const char *key, const char *val) {
  const char *bad = strop__meta_bad_key(key);
  if (bad)
    return strop__err(STROP_E_INVALID_ARG, "%s: metadata key '%.300s': %s", fn,
                      key ? key : "(null)", bad);
  int i = find(m, key);
  if (!val) {
    if (i < 0) return STROP_OK;
    strop__free(m->keys[i]);
    strop__free(m->vals[i]);
    memmove(m->keys + i, m->keys + i + 1, (size_t)(m->n - i - 1) * sizeof *m->keys);
    memmove(m->vals + i, m->vals + i + 1, (size_t)(m->n - i - 1) * sizeof *m->vals);
    m->n--;
    return STROP_OK;
  }
  size_t len = strlen(val);
  if (len > STROP_META_VALUE_MAX)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: metadata '%s': the value is %zu bytes, more than "
                      "the limit of %zu",
                      fn, key, len, (size_t)STROP_META_VALUE_MAX);
  if (!strop__utf8_valid(val, len))
    return strop__err(STROP_E_INVALID_ARG, "%s: metadata '%s': the value is not valid UTF-8", fn,
                      key);
  if (i < 0 && m->n >= STROP_META_MAX_ENTRIES)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: metadata '%s': the model already has %d entries, "
                      "the most it may hold",
                      fn, key, m->n);
  char *v = strop__strdup(val);
  if (!v) return STROP__NOMEM(fn);
  if (i >= 0) {
    strop__free(m->vals[i]);
    m->vals[i] = v;
    return STROP_OK;
  }
  i = -i - 1;
  char *k = strop__strdup(key);
  if (!k) {
    strop__free(v);
    return STROP__NOMEM(fn);
  }
  if (m->n == m->cap) {
    /* both arrays are made before either replaces its old one: a failure changes nothing */
    int cap = m->cap ? m->cap * 2 : 8;
    char **nk = strop__malloc((size_t)cap * sizeof *nk);
    char **nv = strop__malloc((size_t)cap * sizeof *nv);
    if (!nk || !nv) {
      strop__free(nk);
      strop__free(nv);
      strop__free(k);
      strop__free(v);
      return STROP__NOMEM(fn);
    }
    if (m->n) {
      memcpy(nk, m->keys, (size_t)m->n * sizeof *nk);
      memcpy(nv, m->vals, (size_t)m->n * sizeof *nv);
    }
    strop__free(m->keys);
    strop__free(m->vals);
    m->keys = nk;
    m->vals = nv;
    m->cap = cap;
  }
  memmove(m->keys + i + 1, m->keys + i, (size_t)(m->n - i) * sizeof *m->keys);
  memmove(m->vals + i + 1, m->vals + i, (size_t)(m->n - i) * sizeof *m->vals);
  m->keys[i] = k;
  m->vals[i] = v;
  m->n++;
  return STROP_OK;
}

void strop__meta_free(strop__meta *m) {
  for (int i = 0; i < m->n; i++) {
    strop__free(m->keys[i]);
    strop__free(m->vals[i]);
  }
  strop__free(m->keys);
  strop__free(m->vals);
  memset(m, 0, sizeof *m);
}

void strop__meta_swap(strop__meta *a, strop__meta *b) {
  strop__meta t = *a;
  *a = *b;
  *b = t;
}

strop_status strop__meta_copy(strop__meta *dst, const strop__meta *src, const char *fn) {
  strop__meta c;
  memset(&c, 0, sizeof c);
  if (src->n) {
    c.keys = strop__calloc((size_t)src->n, sizeof *c.keys);
    c.vals = strop__calloc((size_t)src->n, sizeof *c.vals);
    c.cap = src->n;
    if (!c.keys || !c.vals) goto oom;
    for (int i = 0; i < src->n; i++, c.n++)
      if (!(c.keys[i] = strop__strdup(src->keys[i])) ||
          !(c.vals[i] = strop__strdup(src->vals[i]))) {
        strop__free(c.keys[i]);
        goto oom;
      }
  }
  strop__meta_free(dst);
  *dst = c;
  return STROP_OK;
oom:
  strop__meta_free(&c);
  return STROP__NOMEM(fn);
}

/* ---- the public API ---- */

strop_status strop_model_set_meta(strop_model *model, const char *key, const char *value) {
  static const char fn[] = "strop_model_set_meta";
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  return strop__meta_set(&model->meta, fn, key, value);
}

int64_t strop_model_get_meta(const strop_model *model, const char *key, char *buf, size_t cap) {
  static const char fn[] = "strop_model_get_meta";
  if (!model || !key) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "key" : "model");
    return -1;
  }
  const char *v = strop__meta_get(&model->meta, key);
  if (!v) {
    strop__err(STROP_E_NOT_FOUND, "%s: the model has no metadata '%.300s'", fn, key);
    return -1;
  }
  return strop__copy_out(fn, v, buf, cap);
}

int64_t strop_model_meta_count(const strop_model *model) { return model ? model->meta.n : -1; }

int64_t strop_model_meta_key(const strop_model *model, int64_t i, char *buf, size_t cap) {
  static const char fn[] = "strop_model_meta_key";
  if (!model || i < 0 || i >= model->meta.n) {
    if (!model) strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
    else
      strop__err(STROP_E_INVALID_ARG, "%s: entry %lld is out of range (the model has %d)", fn,
                 (long long)i, model->meta.n);
    return -1;
  }
  return strop__copy_out(fn, model->meta.keys[i], buf, cap);
}
