/* SPDX-License-Identifier: MIT */
/* strop — layer options: the key=value list, its text form, and the schema engine that reads
 * and writes every layer type's options from one table (parsing, range checks, messages naming
 * file:line:col, layer and key, defaults, writing back, and the descriptions the docs use). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"

const char *const strop__word_auto[] = {"auto", NULL};
const double strop__word_auto_v[] = {0};
const char *const strop__word_none[] = {"none", "None", "null", NULL};

/* ---- the option list ---- */
strop_status strop__opts_add(strop__opts *o, const char *key, const char *val, int line,
                             int col) {
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

const char *strop__opts_get(const strop__opts *o, const char *key) {
  for (int i = 0; i < o->n; i++)
    if (strcmp(o->v[i].key, key) == 0) return o->v[i].val;
  return NULL;
}

strop_status strop__opts_set(strop__opts *o, const char *key, const char *val) {
  for (int i = 0; i < o->n; i++)
    if (strcmp(o->v[i].key, key) == 0) {
      char *d = strop__strdup(val);
      if (!d) return strop__err(STROP_E_NOMEM, "out of memory while copying layer options");
      strop__free(o->v[i].val);
      o->v[i].val = d;
      return STROP_OK;
    }
  return strop__opts_add(o, key, val, 0, 0);
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
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: options \"%s\": expected key=value at "
                        "offset %d",
                        fn, text, (int)(k0 - text));
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
        return strop__err(STROP_E_INVALID_ARG,
                          "%s: options \"%s\": unclosed '[' in the value "
                          "of '%s'",
                          fn, text, key);
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
    if (strop__opts_get(out, key)) {
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
  if (o->file && line > 0) snprintf(where, sizeof where, "%s:%d:%d: ", o->file, line, col);
  else if (o->file) snprintf(where, sizeof where, "%s: ", o->file);
  if (key)
    return strop__err(STROP_E_INVALID_ARG, "%slayer '%s' (%s): option '%s': %s", where,
                      o->layer ? o->layer : "?", o->type ? o->type : "?", key, msg);
  return strop__err(STROP_E_INVALID_ARG, "%slayer '%s' (%s): %s", where,
                    o->layer ? o->layer : "?", o->type ? o->type : "?", msg);
}

/* ---- the schema: reading values ---- */
int strop__schema_count(const strop__optdef *defs) {
  int n = 0;
  while (defs && defs[n].name) n++;
  return n;
}

static int is_list_type(int t) {
  return t == STROP__OT_INTS || t == STROP__OT_FLOATS || t == STROP__OT_INT_LIST;
}
static int is_float_type(int t) { return t == STROP__OT_FLOAT || t == STROP__OT_FLOATS; }

const char *strop__optdef_kind(const strop__optdef *d, char *buf, size_t cap) {
  switch (d->type) {
    case STROP__OT_INT: snprintf(buf, cap, "int"); break;
    case STROP__OT_FLOAT: snprintf(buf, cap, "float"); break;
    case STROP__OT_BOOL: snprintf(buf, cap, "bool"); break;
    case STROP__OT_ENUM: snprintf(buf, cap, "enum"); break;
    case STROP__OT_INTS: snprintf(buf, cap, "int[%d]", d->n); break;
    case STROP__OT_FLOATS: snprintf(buf, cap, "float[%d]", d->n); break;
    default: snprintf(buf, cap, "int list"); break;
  }
  return buf;
}

static void fmt_bound(char *buf, size_t cap, double v, int is_float) {
  if (isinf(v)) snprintf(buf, cap, "%sinf", v < 0 ? "-" : "");
  else if (is_float) snprintf(buf, cap, "%g", v);
  else snprintf(buf, cap, "%.0f", v);
}

const char *strop__optdef_allowed(const strop__optdef *d, char *buf, size_t cap) {
  size_t l = 0;
  buf[0] = '\0';
  if (d->type == STROP__OT_BOOL) {
    snprintf(buf, cap, "true, false");
    return buf;
  }
  if (d->type == STROP__OT_ENUM) {
    for (int i = 0; d->words[i] && l < cap; i++)
      l += (size_t)snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", d->words[i]);
    return buf;
  }
  char lo[40], hi[40];
  fmt_bound(lo, sizeof lo, d->lo, is_float_type(d->type));
  fmt_bound(hi, sizeof hi, d->hi, is_float_type(d->type));
  l += (size_t)snprintf(buf, cap, "%c%s, %s%c", (d->flags & STROP__OF_LO_OPEN) ? '(' : '[', lo,
                        hi, (d->flags & STROP__OF_HI_OPEN) ? ')' : ']');
  for (int i = 0; d->words && d->words[i] && l < cap; i++) {
    int alias = 0; /* "None" and "null" spell "none": list a value once */
    for (int k = 0; k < i && !alias; k++) alias = d->word_values[k] == d->word_values[i];
    if (!alias) l += (size_t)snprintf(buf + l, cap - l, " or %s", d->words[i]);
  }
  return buf;
}

/* The index of text among d's words, or -1. */
static int word_of(const strop__optdef *d, const char *text) {
  for (int i = 0; d->words && d->words[i]; i++)
    if (strcmp(d->words[i], text) == 0) return i;
  return -1;
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

static int parse_f64(const char *s, double *out) {
  while (*s == ' ') s++;
  char *end;
  double v = strtod(s, &end);
  if (end == s || isnan(v)) return 0;
  while (*end == ' ') end++;
  if (*end) return 0;
  *out = v;
  return 1;
}

static int in_range(const strop__optdef *d, double v) {
  if ((d->flags & STROP__OF_LO_OPEN) ? !(v > d->lo) : !(v >= d->lo)) return 0;
  if ((d->flags & STROP__OF_HI_OPEN) ? !(v < d->hi) : !(v <= d->hi)) return 0;
  return 1;
}

static strop_status range_error(strop__opts *o, const strop__optdef *d, const char *what,
                                const char *text) {
  char allowed[256];
  return strop__opt_error(o, d->name, "%s must be in %s, got '%s'", what,
                          strop__optdef_allowed(d, allowed, sizeof allowed), text);
}

/* One numeric value (or word) of d from text into v. */
static strop_status read_number(strop__opts *o, const strop__optdef *d, const char *text,
                                double *v, const char *whole) {
  char t[64];
  while (*text == ' ') text++;
  size_t l = strlen(text);
  while (l && text[l - 1] == ' ') l--;
  if (l >= sizeof t) return strop__opt_error(o, d->name, "value too long: '%s'", whole);
  memcpy(t, text, l);
  t[l] = '\0';
  int w = word_of(d, t);
  if (w >= 0) {
    *v = d->word_values[w];
    return STROP_OK;
  }
  if (is_float_type(d->type)) {
    if (!parse_f64(t, v))
      return range_error(o, d, is_list_type(d->type) ? "entries" : "the value", whole);
  } else {
    int64_t i;
    if (!parse_i64(t, &i))
      return range_error(o, d, is_list_type(d->type) ? "entries" : "the value", whole);
    *v = (double)i;
  }
  if (!in_range(d, *v))
    return range_error(o, d, is_list_type(d->type) ? "entries" : "the value", whole);
  return STROP_OK;
}

static void store(const strop__optdef *d, void *cfg, int i, double v) {
  char *base = (char *)cfg + d->off;
  if (is_float_type(d->type)) ((float *)base)[i] = (float)v;
  else ((int64_t *)base)[i] = (int64_t)v;
}

static double load(const strop__optdef *d, const void *cfg, int i) {
  const char *base = (const char *)cfg + d->off;
  return is_float_type(d->type) ? (double)((const float *)base)[i]
                                : (double)((const int64_t *)base)[i];
}

/* A list "[a, b, c]" or a scalar "a" of d into cfg. */
static strop_status read_list(strop__opts *o, const strop__optdef *d, const char *text,
                              void *cfg) {
  const char *p = text;
  while (*p == ' ') p++;
  const int bracket = *p == '[';
  if (!bracket && d->type == STROP__OT_INT_LIST && word_of(d, p) >= 0) {
    *(int *)((char *)cfg + d->count_off) = 0;
    return STROP_OK;
  }
  if (bracket) p++;
  double v[STROP__MAX_SLOTS];
  int n = 0;
  for (;;) {
    while (*p == ' ') p++;
    if (bracket && *p == ']') break;
    if (!*p) break;
    const char *s = p;
    while (*p && *p != ',' && *p != ']') p++;
    char item[64];
    size_t l = (size_t)(p - s);
    if (l >= sizeof item)
      return strop__opt_error(o, d->name, "list entry too long in '%s'", text);
    memcpy(item, s, l);
    item[l] = '\0';
    if (n >= d->n || n >= STROP__MAX_SLOTS)
      return strop__opt_error(o, d->name, "expected %s%d value%s, got '%s'",
                              d->type == STROP__OT_INT_LIST ? "at most " : "1 or ", d->n,
                              d->n == 1 ? "" : "s", text);
    strop_status st = read_number(o, d, item, &v[n], text);
    if (st) return st;
    n++;
    if (*p == ',') p++;
  }
  if (bracket && *p != ']') return strop__opt_error(o, d->name, "unclosed '[' in '%s'", text);
  if (bracket) p++;
  while (*p == ' ') p++;
  if (*p) return strop__opt_error(o, d->name, "unexpected text after the list in '%s'", text);
  if (n == 0) return strop__opt_error(o, d->name, "empty list");
  if (d->type == STROP__OT_INT_LIST) {
    for (int i = 0; i < n; i++) store(d, cfg, i, v[i]);
    *(int *)((char *)cfg + d->count_off) = n;
    return STROP_OK;
  }
  if (n != d->n && !(n == 1 && !bracket))
    return strop__opt_error(o, d->name, "expected one value or a list of %d, got '%s'", d->n,
                            text);
  for (int i = 0; i < d->n; i++) store(d, cfg, i, v[n == 1 ? 0 : i]);
  return STROP_OK;
}

/* The value text of d (given or default) into cfg. */
static strop_status read_value(strop__opts *o, const strop__optdef *d, const char *text,
                               void *cfg) {
  char *field = (char *)cfg + d->off;
  switch (d->type) {
    case STROP__OT_BOOL:
      if (!strcmp(text, "true") || !strcmp(text, "True") || !strcmp(text, "1") ||
          !strcmp(text, "yes"))
        *(int *)field = 1;
      else if (!strcmp(text, "false") || !strcmp(text, "False") || !strcmp(text, "0") ||
               !strcmp(text, "no"))
        *(int *)field = 0;
      else return strop__opt_error(o, d->name, "expected true or false, got '%s'", text);
      return STROP_OK;
    case STROP__OT_ENUM: {
      int w = word_of(d, text);
      if (w < 0) {
        char allowed[256];
        return strop__opt_error(o, d->name, "expected one of %s, got '%s'",
                                strop__optdef_allowed(d, allowed, sizeof allowed), text);
      }
      *(int *)field = w;
      return STROP_OK;
    }
    case STROP__OT_INT:
    case STROP__OT_FLOAT: {
      double v;
      strop_status st = read_number(o, d, text, &v, text);
      if (!st) store(d, cfg, 0, v);
      return st;
    }
    default: return read_list(o, d, text, cfg);
  }
}

strop_status strop__schema_parse(const strop__optdef *defs, void *cfg, strop__opts *o) {
  for (int i = 0; i < o->n; i++) {
    o->v[i].used = 0;
    int known = 0;
    for (int j = 0; defs && defs[j].name && !known; j++)
      known = !strcmp(defs[j].name, o->v[i].key);
    if (known) continue;
    char list[400] = "";
    for (int j = 0, l = 0; defs && defs[j].name && l < 380; j++)
      l += snprintf(list + l, sizeof list - (size_t)l, "%s%s", j ? ", " : "", defs[j].name);
    return strop__opt_error(o, o->v[i].key, "unknown option (expected one of: %s)",
                            list[0] ? list : "none");
  }
  for (int j = 0; defs && defs[j].name; j++) {
    const strop__optdef *d = &defs[j];
    const char *text = NULL;
    for (int i = 0; i < o->n && !text; i++)
      if (!strcmp(o->v[i].key, d->name)) {
        o->v[i].used = 1;
        text = o->v[i].val;
      }
    if (!text && !d->dflt) return strop__opt_error(o, NULL, "option '%s' is required", d->name);
    strop_status st = read_value(o, d, text ? text : d->dflt, cfg);
    if (st) {
      if (!text) /* a default the table got wrong: the library's bug, not the caller's */
        return strop__err(STROP_E_INTERNAL,
                          "layer type '%s': the default of '%s' does not "
                          "parse: %s",
                          o->type ? o->type : "?", d->name, strop_last_error());
      return st;
    }
  }
  return STROP_OK;
}

/* ---- writing back ---- */
static void fmt_number(const strop__optdef *d, double v, char *buf, size_t cap) {
  for (int i = 0; d->words && d->words[i]; i++)
    if (d->word_values[i] == v || (isnan(d->word_values[i]) && isnan(v))) {
      snprintf(buf, cap, "%s", d->words[i]);
      return;
    }
  if (is_float_type(d->type)) {
    /* the shortest text that reads back as the same float: 0.1 rather than 0.100000001, and
     * whole numbers whole (10000 rather than 1e+04) */
    if (v == floor(v) && fabs(v) < 1e15) {
      snprintf(buf, cap, "%.0f", v);
      return;
    }
    for (int prec = 1; prec <= 9; prec++) {
      snprintf(buf, cap, "%.*g", prec, v);
      if (strtof(buf, NULL) == (float)v) break;
    }
  } else snprintf(buf, cap, "%lld", (long long)v);
}

strop_status strop__schema_write(const strop__optdef *defs, const void *cfg, strop__opts *out) {
  char s[512];
  for (int j = 0; defs && defs[j].name; j++) {
    const strop__optdef *d = &defs[j];
    const char *field = (const char *)cfg + d->off;
    switch (d->type) {
      case STROP__OT_BOOL:
        snprintf(s, sizeof s, "%s", *(const int *)field ? "true" : "false");
        break;
      case STROP__OT_ENUM: {
        int w = *(const int *)field, nw = 0;
        while (d->words[nw]) nw++;
        snprintf(s, sizeof s, "%s", d->words[w >= 0 && w < nw ? w : 0]);
        break;
      }
      case STROP__OT_INT:
      case STROP__OT_FLOAT: fmt_number(d, load(d, cfg, 0), s, sizeof s); break;
      default: {
        int n = d->type == STROP__OT_INT_LIST ? *(const int *)((const char *)cfg + d->count_off)
                                              : d->n;
        if (n == 0 && d->words && d->words[0]) {
          snprintf(s, sizeof s, "%s", d->words[0]);
          break;
        }
        /* a list whose entries all hold the same word is written as that word */
        char item[64];
        fmt_number(d, load(d, cfg, 0), item, sizeof item);
        if (word_of(d, item) >= 0) {
          int all = 1;
          for (int i = 1; i < n && all; i++) all = load(d, cfg, i) == load(d, cfg, 0);
          if (all) {
            snprintf(s, sizeof s, "%s", item);
            break;
          }
        }
        size_t l = (size_t)snprintf(s, sizeof s, "[");
        for (int i = 0; i < n && l < sizeof s - 64; i++) {
          fmt_number(d, load(d, cfg, i), item, sizeof item);
          l += (size_t)snprintf(s + l, sizeof s - l, "%s%s", i ? ", " : "", item);
        }
        snprintf(s + l, sizeof s - l, "]");
        break;
      }
    }
    strop_status st = strop__opts_add(out, d->name, s, 0, 0);
    if (st) return st;
  }
  return STROP_OK;
}
