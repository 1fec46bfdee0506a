/* strop — layer options: parsing "key=value" strings, typed getters that name the layer,
 * key and source position in their errors, and the writer used to save specs. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

/* ---- the option list ---- */
strop_status strop__opts_add(strop__opts *o, const char *key, const char *val, int line, int col) {
  if (o->n == o->cap) {
    int cap = o->cap ? o->cap * 2 : 8;
    strop__opt *v = strop__realloc(o->v, (size_t)cap * sizeof *v);
    if (!v) return strop__err(STROP_E_NOMEM, "out of memory while copying layer options");
    o->v = v;
    o->cap = cap;
  }
  strop__opt *e = &o->v[o->n];
  e->key = strop__strdup(key);
  e->val = strop__strdup(val);
  if (!e->key || !e->val) {
    strop__free(e->key);
    strop__free(e->val);
    return strop__err(STROP_E_NOMEM, "out of memory while copying layer options");
  }
  e->line = line;
  e->col = col;
  e->used = 0;
  o->n++;
  return STROP_OK;
}

void strop__opts_free(strop__opts *o) {
  for (int i = 0; i < o->n; i++) {
    strop__free(o->v[i].key);
    strop__free(o->v[i].val);
  }
  strop__free(o->v);
  o->v = NULL;
  o->n = o->cap = 0;
}

static int is_key_char(int c) { return isalnum(c) || c == '_'; }

strop_status strop__opts_parse(const char *fn, const char *text, strop__opts *out) {
  memset(out, 0, sizeof *out);
  if (!text) return STROP_OK;
  const char *p = text;
  char key[64], val[256];
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == ';' || *p == '\t' || *p == '\n') p++;
    if (!*p) break;
    const char *k0 = p;
    while (is_key_char((unsigned char)*p)) p++;
    size_t kl = (size_t)(p - k0);
    while (*p == ' ') p++;
    if (kl == 0 || kl >= sizeof key || (*p != '=' && *p != ':')) {
      strop__opts_free(out);
      return strop__err(STROP_E_INVALID_ARG, "%s: options \"%s\": expected key=value at "
                        "offset %d", fn, text, (int)(k0 - text));
    }
    memcpy(key, k0, kl);
    key[kl] = '\0';
    p++;
    while (*p == ' ') p++;
    const char *v0 = p;
    if (*p == '[') {
      while (*p && *p != ']') p++;
      if (*p != ']') {
        strop__opts_free(out);
        return strop__err(STROP_E_INVALID_ARG, "%s: options \"%s\": unclosed '[' in the value "
                          "of '%s'", fn, text, key);
      }
      p++;
    } else {
      while (*p && *p != ' ' && *p != ',' && *p != ';' && *p != '\t' && *p != '\n') p++;
    }
    size_t vl = (size_t)(p - v0);
    if (vl == 0 || vl >= sizeof val) {
      strop__opts_free(out);
      return strop__err(STROP_E_INVALID_ARG, "%s: options \"%s\": %s value for '%s'", fn, text,
                        vl ? "overlong" : "missing", key);
    }
    memcpy(val, v0, vl);
    val[vl] = '\0';
    for (int i = 0; i < out->n; i++)
      if (strcmp(out->v[i].key, key) == 0) {
        strop__opts_free(out);
        return strop__err(STROP_E_INVALID_ARG, "%s: option '%s' given twice", fn, key);
      }
    strop_status s = strop__opts_add(out, key, val, 0, 0);
    if (s) {
      strop__opts_free(out);
      return s;
    }
  }
  return STROP_OK;
}

/* ---- getters ---- */
strop_status strop__opt_error(const strop__opts *o, const char *key, const char *fmt, ...) {
  char msg[512], where[256] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int line = 0, col = 0;
  for (int i = 0; key && i < o->n; i++)
    if (strcmp(o->v[i].key, key) == 0) {
      line = o->v[i].line;
      col = o->v[i].col;
    }
  if (o->file && line > 0)
    snprintf(where, sizeof where, "%s:%d:%d: ", o->file, line, col);
  else if (o->file)
    snprintf(where, sizeof where, "%s: ", o->file);
  if (key)
    return strop__err(STROP_E_INVALID_ARG, "%slayer '%s' (%s): option '%s': %s", where,
                      o->layer ? o->layer : "?", o->type ? o->type : "?", key, msg);
  return strop__err(STROP_E_INVALID_ARG, "%slayer '%s' (%s): %s", where,
                    o->layer ? o->layer : "?", o->type ? o->type : "?", msg);
}

static strop__opt *find(strop__opts *o, const char *key) {
  for (int i = 0; i < o->n; i++)
    if (strcmp(o->v[i].key, key) == 0) {
      o->v[i].used = 1;
      return &o->v[i];
    }
  return NULL;
}

static int parse_i64(const char *s, int64_t *out) {
  while (*s == ' ') s++;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || errno) {
    /* allow integral floats such as 3.0 or 1e3 */
    double d = strtod(s, &end);
    if (end == s || d != floor(d) || fabs(d) > 9.0e15) return 0;
    v = (long long)d;
  }
  while (*end == ' ') end++;
  if (*end) return 0;
  *out = (int64_t)v;
  return 1;
}

strop_status strop__opt_require(strop__opts *o, const char *key) {
  for (int i = 0; i < o->n; i++)
    if (strcmp(o->v[i].key, key) == 0) return STROP_OK;
  return strop__opt_error(o, NULL, "option '%s' is required", key);
}

strop_status strop__opt_int(strop__opts *o, const char *key, int64_t lo, int64_t hi,
                            int64_t *out) {
  strop__opt *e = find(o, key);
  if (!e) return STROP_OK;
  int64_t v;
  if (!parse_i64(e->val, &v)) return strop__opt_error(o, key, "expected an integer, got '%s'", e->val);
  if (v < lo || v > hi)
    return strop__opt_error(o, key, "must be in [%lld, %lld], got %lld", (long long)lo,
                            (long long)hi, (long long)v);
  *out = v;
  return STROP_OK;
}

strop_status strop__opt_float(strop__opts *o, const char *key, double lo, double hi, float *out) {
  strop__opt *e = find(o, key);
  if (!e) return STROP_OK;
  char *end;
  double v = strtod(e->val, &end);
  while (*end == ' ') end++;
  if (end == e->val || *end || isnan(v))
    return strop__opt_error(o, key, "expected a number, got '%s'", e->val);
  if (v < lo || v > hi)
    return strop__opt_error(o, key, "must be in [%g, %g], got %g", lo, hi, v);
  *out = (float)v;
  return STROP_OK;
}

strop_status strop__opt_bool(strop__opts *o, const char *key, int *out) {
  strop__opt *e = find(o, key);
  if (!e) return STROP_OK;
  const char *v = e->val;
  if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "1") || !strcmp(v, "yes"))
    *out = 1;
  else if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "0") || !strcmp(v, "no"))
    *out = 0;
  else
    return strop__opt_error(o, key, "expected true or false, got '%s'", v);
  return STROP_OK;
}

strop_status strop__opt_enum(strop__opts *o, const char *key, const char *const *choices,
                             int *out) {
  strop__opt *e = find(o, key);
  if (!e) return STROP_OK;
  char list[256] = "";
  for (int i = 0; choices[i]; i++) {
    if (!strcmp(e->val, choices[i])) {
      *out = i;
      return STROP_OK;
    }
    size_t l = strlen(list);
    snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", choices[i]);
  }
  return strop__opt_error(o, key, "expected one of %s, got '%s'", list, e->val);
}

strop_status strop__opt_int_list(strop__opts *o, const char *key, int max, int64_t lo, int64_t hi,
                                 int64_t *out, int *n_out) {
  strop__opt *e = find(o, key);
  if (!e) return STROP_OK;
  const char *p = e->val;
  int n = 0;
  int bracket = (*p == '[');
  if (bracket) p++;
  char item[64];
  for (;;) {
    while (*p == ' ') p++;
    if (bracket && *p == ']') break;
    if (!*p) break;
    const char *s = p;
    while (*p && *p != ',' && *p != ']') p++;
    size_t l = (size_t)(p - s);
    if (l >= sizeof item) return strop__opt_error(o, key, "list entry too long in '%s'", e->val);
    memcpy(item, s, l);
    item[l] = '\0';
    int64_t v;
    if (!parse_i64(item, &v))
      return strop__opt_error(o, key, "expected integers, got '%s'", e->val);
    if (n >= max)
      return strop__opt_error(o, key, "at most %d entries, got '%s'", max, e->val);
    if (v < lo || v > hi)
      return strop__opt_error(o, key, "entries must be in [%lld, %lld], got %lld", (long long)lo,
                              (long long)hi, (long long)v);
    out[n++] = v;
    if (*p == ',') p++;
  }
  if (n == 0) return strop__opt_error(o, key, "empty list");
  *n_out = n;
  return STROP_OK;
}

strop_status strop__opt_ints(strop__opts *o, const char *key, int n, int64_t lo, int64_t hi,
                             int64_t *out) {
  int64_t tmp[STROP_MAX_RANK];
  int got = 0;
  if (n > STROP_MAX_RANK) return strop__err(STROP_E_INTERNAL, "opt_ints: n too large");
  strop__opt *e = NULL;
  for (int i = 0; i < o->n; i++)
    if (!strcmp(o->v[i].key, key)) e = &o->v[i];
  if (!e) return STROP_OK;
  strop_status s = strop__opt_int_list(o, key, n, lo, hi, tmp, &got);
  if (s) return s;
  if (got == 1 && e->val[0] != '[') {
    for (int i = 0; i < n; i++) out[i] = tmp[0];
  } else if (got == n) {
    memcpy(out, tmp, (size_t)n * sizeof *out);
  } else {
    return strop__opt_error(o, key, "expected one integer or a list of %d, got '%s'", n, e->val);
  }
  return STROP_OK;
}

/* ---- writer ---- */
static void put(strop__optbuf *b, const char *key, const char *val) {
  if (b->oom) return;
  if (b->n == b->cap) {
    int cap = b->cap ? b->cap * 2 : 8;
    strop__opt *v = strop__realloc(b->v, (size_t)cap * sizeof *v);
    if (!v) {
      b->oom = 1;
      return;
    }
    b->v = v;
    b->cap = cap;
  }
  strop__opt *e = &b->v[b->n];
  memset(e, 0, sizeof *e);
  e->key = strop__strdup(key);
  e->val = strop__strdup(val);
  if (!e->key || !e->val) {
    strop__free(e->key);
    strop__free(e->val);
    b->oom = 1;
    return;
  }
  b->n++;
}

void strop__optbuf_int(strop__optbuf *b, const char *key, int64_t v) {
  char s[32];
  snprintf(s, sizeof s, "%lld", (long long)v);
  put(b, key, s);
}
void strop__optbuf_float(strop__optbuf *b, const char *key, double v) {
  char s[40];
  snprintf(s, sizeof s, "%.9g", v);
  put(b, key, s);
}
void strop__optbuf_bool(strop__optbuf *b, const char *key, int v) { put(b, key, v ? "true" : "false"); }
void strop__optbuf_str(strop__optbuf *b, const char *key, const char *v) { put(b, key, v); }
void strop__optbuf_ints(strop__optbuf *b, const char *key, const int64_t *v, int n) {
  char s[256];
  size_t l = 0;
  s[l++] = '[';
  for (int i = 0; i < n && l < sizeof s - 24; i++)
    l += (size_t)snprintf(s + l, sizeof s - l, "%s%lld", i ? ", " : "", (long long)v[i]);
  snprintf(s + l, sizeof s - l, "]");
  put(b, key, s);
}
void strop__optbuf_free(strop__optbuf *b) {
  for (int i = 0; i < b->n; i++) {
    strop__free(b->v[i].key);
    strop__free(b->v[i].val);
  }
  strop__free(b->v);
  memset(b, 0, sizeof *b);
}
