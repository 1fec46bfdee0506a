/* SPDX-License-Identifier: MIT */
/* strop — the settings engine (see settings.h): lookups, validation and its sentences, text
 * forms, and the queries behind every object's _knob_* functions. */
#include "core/settings.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/numfmt.h"

const strop__setting *strop__settings_at(const strop__settings *t, int key) {
  if (!t || key < 0 || key >= t->n || !t->v[key].name) return NULL;
  return &t->v[key];
}

static int applies(const strop__setting *s, int kind) {
  return kind >= 0 && kind < 32 && (s->kinds & (1u << kind)) != 0;
}

static void kind_text(const strop__settings *t, int kind, char *buf, size_t cap) {
  const char *name = t->kind_names && kind >= 0 && kind < t->n_kinds ? t->kind_names[kind] : "?";
  snprintf(buf, cap, t->kind_phrase ? t->kind_phrase : "%s", name);
}

strop_status strop__settings_lookup(const strop__settings *t, const char *fn, int kind, int key,
                                    const strop__setting **out) {
  *out = NULL;
  if (kind < 0 || kind >= t->n_kinds)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown %s kind %d", fn, t->object, kind);
  const strop__setting *s = strop__settings_at(t, key);
  if (!s)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown knob %d (the %s knobs are 0 to %d)", fn,
                      key, t->object, t->n - 1);
  if (!applies(s, kind)) {
    char k[96];
    kind_text(t, kind, k, sizeof k);
    return strop__err(STROP_E_INVALID_ARG, "%s: knob '%s' does not apply to %s", fn, s->name, k);
  }
  *out = s;
  return STROP_OK;
}

static const char *type_word(int type) {
  switch (type) {
    case STROP__SET_FLOAT: return "a float";
    case STROP__SET_LIST: return "a list";
    case STROP__SET_FLAG: return "an int (0/1)";
    default: return "an int";
  }
}

strop_status strop__settings_want(const strop__settings *t, const char *fn,
                                  const strop__setting *s, int want, const char *verb) {
  const int is_list = s->type == STROP__SET_LIST, is_float = s->type == STROP__SET_FLOAT;
  int ok;
  const char *wanted;
  switch (want) {
    case STROP__WANT_FLOAT:
      ok = is_float;
      wanted = "a float";
      break;
    case STROP__WANT_INT:
      ok = !is_float && !is_list;
      wanted = "an int";
      break;
    case STROP__WANT_LIST:
      ok = is_list;
      wanted = "a list";
      break;
    default:
      ok = !is_list;
      wanted = "a single-value";
      break;
  }
  if (ok) return STROP_OK;
  const char *use = is_list ? "ints" : is_float ? "float" : "int";
  char alt[96] = "";
  if (!is_list) snprintf(alt, sizeof alt, " or strop_%s_%s_double", t->object, verb);
  return strop__err(STROP_E_INVALID_ARG,
                    "%s: knob '%s' is not %s knob but %s knob; use "
                    "strop_%s_%s_%s%s",
                    fn, s->name, wanted, type_word(s->type), t->object, verb, use, alt);
}

int strop__setting_flags(const strop__setting *s, int kind) {
  int f = s->flags;
  if (kind >= 0 && kind < 32 && (s->per_kind.kinds & (1u << kind))) f |= s->per_kind.flags;
  switch (s->type) {
    case STROP__SET_INT: f |= STROP__KNOB_INT; break;
    case STROP__SET_FLAG: f |= STROP__KNOB_INT | STROP__KNOB_FLAG; break;
    case STROP__SET_ENUM: f |= STROP__KNOB_INT | STROP__KNOB_ENUM; break;
    case STROP__SET_LIST: f |= STROP__KNOB_LIST; break;
    default: break;
  }
  return f;
}

double strop__setting_default(const strop__setting *s, int kind) {
  if (kind >= 0 && kind < 32 && (s->per_kind.kinds & (1u << kind))) return s->per_kind.def;
  return s->def;
}

int strop__setting_matches(const strop__setting *s, const char *name) {
  return name && (strcmp(s->name, name) == 0 || (s->alias && strcmp(s->alias, name) == 0));
}

static int n_words(const strop__setting *s) {
  int n = 0;
  while (s->words && s->words[n]) n++;
  return n;
}

size_t strop__setting_range_str(const strop__setting *s, int kind, char *buf, size_t cap) {
  const int f = strop__setting_flags(s, kind);
  size_t l = 0;
#define PUT(...) \
  (l += (size_t)snprintf(buf + (l < cap ? l : cap), l < cap ? cap - l : 0, __VA_ARGS__))
  if (s->type == STROP__SET_FLAG) {
    PUT("0 or 1");
  } else if (s->type == STROP__SET_ENUM) {
    const int n = n_words(s);
    for (int i = 0; i < n; i++)
      PUT("%s%.0f (%s)", i == 0 ? "" : i == n - 1 ? " or " : ", ", s->lo + i, s->words[i]);
  } else {
    char lo[STROP__FMT_DOUBLE_MAX], hi[STROP__FMT_DOUBLE_MAX];
    strop__fmt_double(s->lo, lo, sizeof lo);
    strop__fmt_double(s->hi, hi, sizeof hi);
    PUT("%c%s, %s%c", (f & STROP__KNOB_LO_OPEN) ? '(' : '[', lo, hi,
        (f & STROP__KNOB_HI_OPEN) ? ')' : ']');
  }
#undef PUT
  return l;
}

strop_status strop__setting_check(const char *fn, const strop__setting *s, int kind, double v) {
  const int f = strop__setting_flags(s, kind);
  char range[256], got[STROP__FMT_DOUBLE_MAX];
  strop__setting_range_str(s, kind, range, sizeof range);
  strop__fmt_double(v, got, sizeof got);
  if (isnan(v) || (isinf(v) && !(f & STROP__KNOB_INF_OK)))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s must be a finite number in %s, got %s", fn,
                      s->name, range, got);
  int in = (f & STROP__KNOB_LO_OPEN) ? v > s->lo : v >= s->lo;
  in = in && ((f & STROP__KNOB_HI_OPEN) ? v < s->hi : v <= s->hi);
  switch (s->type) {
    case STROP__SET_FLAG:
      if (v != 0.0 && v != 1.0)
        return strop__err(STROP_E_INVALID_ARG, "%s: %s must be 0 or 1, got %s", fn, s->name, got);
      return STROP_OK;
    case STROP__SET_ENUM:
      if (!in || v != floor(v))
        return strop__err(STROP_E_INVALID_ARG, "%s: %s must be %s, got %s", fn, s->name, range,
                          got);
      return STROP_OK;
    case STROP__SET_INT:
    case STROP__SET_LIST:
      if (v != floor(v))
        return strop__err(STROP_E_INVALID_ARG, "%s: %s must be an integer in %s, got %s", fn,
                          s->name, range, got);
      /* fall through */
    default:
      if (!in)
        return strop__err(STROP_E_INVALID_ARG, "%s: %s must be in %s, got %s", fn, s->name, range,
                          got);
      return STROP_OK;
  }
}

static const char *const TRUE_WORDS[] = {"true", "True", "TRUE", "yes", "on", "1", NULL};
static const char *const FALSE_WORDS[] = {"false", "False", "FALSE", "no", "off", "0", NULL};

static int word_in(const char *const *w, const char *s) {
  for (int i = 0; w[i]; i++)
    if (strcmp(w[i], s) == 0) return 1;
  return 0;
}

int strop__setting_parse(const strop__setting *s, const char *text, double *out) {
  if (!text || !*text) return 0;
  char *end;
  switch (s->type) {
    case STROP__SET_FLOAT: {
      errno = 0;
      double v = strtod(text, &end);
      if (end == text || *end || isnan(v)) return 0;
      if (isinf(v) ? !(s->flags & STROP__KNOB_INF_OK) : errno == ERANGE) return 0;
      *out = v;
      return 1;
    }
    case STROP__SET_INT: {
      errno = 0;
      long long v = strtoll(text, &end, 10);
      if (end == text || *end || errno) return 0;
      *out = (double)v;
      return 1;
    }
    case STROP__SET_FLAG:
      if (word_in(TRUE_WORDS, text)) *out = 1.0;
      else if (word_in(FALSE_WORDS, text)) *out = 0.0;
      else return 0;
      return 1;
    case STROP__SET_ENUM:
      for (int i = 0; s->words && s->words[i]; i++)
        if (strcmp(s->words[i], text) == 0) {
          *out = s->lo + i;
          return 1;
        }
      return 0;
    default: return 0;
  }
}

const char *strop__setting_form(const strop__setting *s, char *buf, size_t cap) {
  switch (s->type) {
    case STROP__SET_FLOAT: snprintf(buf, cap, "a number"); break;
    case STROP__SET_INT: snprintf(buf, cap, "an integer"); break;
    case STROP__SET_FLAG: snprintf(buf, cap, "true or false"); break;
    case STROP__SET_LIST: snprintf(buf, cap, "a list of integers"); break;
    default: {
      size_t l = (size_t)snprintf(buf, cap, "one of ");
      for (int i = 0; s->words && s->words[i] && l < cap; i++)
        l += (size_t)snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", s->words[i]);
    }
  }
  return buf;
}

size_t strop__setting_format(const strop__setting *s, double v, char *buf, size_t cap) {
  const char *word = NULL;
  if (s->type == STROP__SET_FLAG && (v == 0.0 || v == 1.0)) word = v != 0.0 ? "true" : "false";
  if (s->type == STROP__SET_ENUM && v >= s->lo && v < s->lo + n_words(s) && v == floor(v))
    word = s->words[(int)(v - s->lo)];
  if (word) return (size_t)snprintf(buf, cap, "%s", word);
  return strop__fmt_double(v, buf, cap);
}

void strop__settings_defaults(const strop__settings *t, int kind, double *values) {
  for (int k = 0; k < t->n; k++) {
    const strop__setting *s = strop__settings_at(t, k);
    values[k] = s && applies(s, kind) ? strop__setting_default(s, kind) : 0.0;
  }
}

/* ---- the public queries ---- */

strop_status strop__settings_range(const strop__settings *t, const char *fn, int kind, int key,
                                   double *lo, double *hi, int *flags) {
  const strop__setting *s;
  strop_status st = strop__settings_lookup(t, fn, kind, key, &s);
  if (st) return st;
  if (lo) *lo = s->lo;
  if (hi) *hi = s->hi;
  if (flags) *flags = strop__setting_flags(s, kind);
  return STROP_OK;
}

const char *strop__settings_name(const strop__settings *t, int key) {
  const strop__setting *s = strop__settings_at(t, key);
  return s ? s->name : NULL;
}

const char *strop__settings_doc(const strop__settings *t, int key) {
  const strop__setting *s = strop__settings_at(t, key);
  return s ? s->doc : NULL;
}

strop_status strop__settings_find(const strop__settings *t, const char *fn, const char *name,
                                  int *key) {
  if (!name || !key)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !name ? "name" : "key");
  for (int k = 0; k < t->n; k++) {
    const strop__setting *s = strop__settings_at(t, k);
    if (s && strop__setting_matches(s, name)) {
      *key = k;
      return STROP_OK;
    }
  }
  char known[1024];
  size_t l = 0;
  known[0] = '\0';
  for (int k = 0; k < t->n && l < sizeof known; k++) {
    const strop__setting *s = strop__settings_at(t, k);
    if (s) l += (size_t)snprintf(known + l, sizeof known - l, "%s%s", l ? ", " : "", s->name);
  }
  return strop__err(STROP_E_NOT_FOUND, "%s: unknown %s knob '%s' (known: %s)", fn, t->object,
                    name, known);
}

strop_status strop__settings_default_of(const strop__settings *t, const char *fn, int kind,
                                        int key, double *out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: value is NULL", fn);
  const strop__setting *s;
  strop_status st = strop__settings_lookup(t, fn, kind, key, &s);
  if (st) return st;
  *out = strop__setting_default(s, kind);
  return STROP_OK;
}

strop_status strop__settings_parse(const strop__settings *t, const char *fn, int key,
                                   const char *text, double *out) {
  if (!text || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !text ? "text" : "value");
  const strop__setting *s = strop__settings_at(t, key);
  if (!s)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown knob %d (the %s knobs are 0 to %d)", fn,
                      key, t->object, t->n - 1);
  if (strop__setting_parse(s, text, out)) return STROP_OK;
  char form[256];
  return strop__err(STROP_E_INVALID_ARG, "%s: %s must be %s, got '%s'", fn, s->name,
                    strop__setting_form(s, form, sizeof form), text);
}
