/* SPDX-License-Identifier: MIT */
/* strop — Hugging Face's tokenizer.json, read and written with jansson: every component the
 * loader knows becomes a pipeline stage; anything else is refused with the file, the component
 * and the type named. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "text/text_impl.h"

#define FN "strop_tokenizer_load"

typedef struct jctx {
  const char *file;
  strop_tokenizer *tok;
} jctx;

/* "FILE: WHERE: message" */
static strop_status jerr(const jctx *c, strop_status st, const char *where, const char *fmt, ...)
    STROP__PRINTF(4, 5);
static strop_status jerr(const jctx *c, strop_status st, const char *where, const char *fmt,
                         ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return strop__err(st, "%s: %s: %s: %s", FN, c->file, where, msg);
}

static const char *jtype_name(const json_t *j) {
  switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
  }
}

/* An optional boolean field: def when absent or null. */
static strop_status jbool(const jctx *c, const json_t *o, const char *key, int def, int *out,
                          const char *where) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    *out = def;
    return STROP_OK;
  }
  if (!json_is_boolean(v))
    return jerr(c, STROP_E_FORMAT, where, "'%s' must be a boolean, not %s", key, jtype_name(v));
  *out = json_is_true(v);
  return STROP_OK;
}

static strop_status jint(const jctx *c, const json_t *o, const char *key, int64_t def, int64_t lo,
                         int64_t hi, int64_t *out, const char *where) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    *out = def;
    return STROP_OK;
  }
  if (!json_is_integer(v))
    return jerr(c, STROP_E_FORMAT, where, "'%s' must be an integer, not %s", key, jtype_name(v));
  int64_t x = (int64_t)json_integer_value(v);
  if (x < lo || x > hi)
    return jerr(c, STROP_E_FORMAT, where, "'%s' is %lld, outside [%lld, %lld]", key, (long long)x,
                (long long)lo, (long long)hi);
  *out = x;
  return STROP_OK;
}

/* A string field (required unless def is given): *s borrowed from the JSON tree. */
static strop_status jstr(const jctx *c, const json_t *o, const char *key, const char *def,
                         const char **s, size_t *n, const char *where) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) {
    if (!def) return jerr(c, STROP_E_FORMAT, where, "'%s' is missing", key);
    *s = def;
    *n = strlen(def);
    return STROP_OK;
  }
  if (!json_is_string(v))
    return jerr(c, STROP_E_FORMAT, where, "'%s' must be a string, not %s", key, jtype_name(v));
  *s = json_string_value(v);
  *n = json_string_length(v);
  return STROP_OK;
}

static strop_status jtype(const jctx *c, const json_t *o, const char **type, const char *where) {
  if (!json_is_object(o))
    return jerr(c, STROP_E_FORMAT, where, "must be an object, not %s", jtype_name(o));
  json_t *t = json_object_get(o, "type");
  if (!json_is_string(t)) return jerr(c, STROP_E_FORMAT, where, "has no \"type\"");
  *type = json_string_value(t);
  return STROP_OK;
}

static strop_status unsupported(const jctx *c, const char *where, const char *type,
                                const char *known) {
  return jerr(c, STROP_E_UNSUPPORTED, where, "type '%s' is not supported (supported: %s)", type,
              known);
}

/* {"String": "..."} or {"Regex": "..."} */
static strop_status jpattern(const jctx *c, const json_t *o, tx_pattern *pat, const char *where) {
  json_t *p = json_object_get(o, "pattern");
  char w2[256];
  snprintf(w2, sizeof w2, "%s.pattern", where);
  if (!json_is_object(p))
    return jerr(c, STROP_E_FORMAT, w2, "must be {\"String\": ...} or {\"Regex\": ...}");
  json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex");
  json_t *v = json_is_string(s) ? s : r;
  if (!json_is_string(v))
    return jerr(c, STROP_E_FORMAT, w2, "must be {\"String\": ...} or {\"Regex\": ...}");
  char where_file[600];
  snprintf(where_file, sizeof where_file, "%s: %s", c->file, w2);
  return strop__tx_pattern_compile(pat, v == s ? TX_PAT_STRING : TX_PAT_REGEX,
                                   json_string_value(v), json_string_length(v), FN, where_file);
}

/* ---- base64 (the Precompiled normalizer's charsmap) ---- */
static int b64v(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

static uint8_t *b64_decode(const char *s, size_t n, size_t *out) {
  uint8_t *d = strop__malloc(n / 4 * 3 + 3);
  if (!d) return NULL;
  size_t k = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '=') break;
    int v = b64v((unsigned char)s[i]);
    if (v < 0) {
      strop__free(d);
      *out = SIZE_MAX;
      return NULL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      d[k++] = (uint8_t)(acc >> bits);
    }
  }
  *out = k;
  return d;
}

static char *b64_encode(const uint8_t *d, size_t n) {
  static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *s = strop__malloc((n + 2) / 3 * 4 + 1);
  if (!s) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
                 (i + 2 < n ? d[i + 2] : 0);
    s[k++] = T[v >> 18];
    s[k++] = T[(v >> 12) & 63];
    s[k++] = i + 1 < n ? T[(v >> 6) & 63] : '=';
    s[k++] = i + 2 < n ? T[v & 63] : '=';
  }
  s[k] = '\0';
  return s;
}

/* ---- normalizers ---- */
static strop_status new_norm(const jctx *c, tx_norm **out) {
  strop_tokenizer *t = c->tok;
  tx_norm *v = strop__realloc(t->norm, ((size_t)t->nnorm + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(FN);
  t->norm = v;
  memset(&v[t->nnorm], 0, sizeof *v);
  *out = &v[t->nnorm++];
  return STROP_OK;
}

static strop_status parse_norm(const jctx *c, const json_t *j, const char *where, int depth) {
  const char *type;
  strop_status st = jtype(c, j, &type, where);
  if (st) return st;
  if (depth > 16) return jerr(c, STROP_E_FORMAT, where, "Sequences nested too deep");
  if (!strcmp(type, "Sequence")) {
    json_t *a = json_object_get(j, "normalizers");
    if (!json_is_array(a))
      return jerr(c, STROP_E_FORMAT, where, "'normalizers' must be an array");
    if (depth == 0) c->tok->norm_seq = 1;
    for (size_t i = 0; i < json_array_size(a); i++) {
      char w2[256];
      snprintf(w2, sizeof w2, "%s.normalizers[%zu]", where, i);
      if ((st = parse_norm(c, json_array_get(a, i), w2, depth + 1))) return st;
    }
    return STROP_OK;
  }
  static const struct {
    const char *name;
    int kind;
  } SIMPLE[] = {{"NFC", TX_N_NFC},
                {"NFD", TX_N_NFD},
                {"NFKC", TX_N_NFKC},
                {"NFKD", TX_N_NFKD},
                {"Lowercase", TX_N_LOWERCASE},
                {"StripAccents", TX_N_STRIP_ACCENTS}};
  tx_norm *n;
  for (size_t i = 0; i < sizeof SIMPLE / sizeof SIMPLE[0]; i++)
    if (!strcmp(type, SIMPLE[i].name)) {
      if ((st = new_norm(c, &n))) return st;
      n->kind = SIMPLE[i].kind;
      return STROP_OK;
    }
  if (!strcmp(type, "BertNormalizer")) {
    int clean, chinese, lower, strip;
    if ((st = jbool(c, j, "clean_text", 1, &clean, where)) ||
        (st = jbool(c, j, "handle_chinese_chars", 1, &chinese, where)) ||
        (st = jbool(c, j, "lowercase", 1, &lower, where)) ||
        (st = jbool(c, j, "strip_accents", -1, &strip, where)))
      return st;
    if ((st = new_norm(c, &n))) return st;
    n->kind = TX_N_BERT;
    n->clean_text = clean;
    n->chinese = chinese;
    n->lowercase = lower;
    n->strip_accents_null = strip < 0;
    n->strip_accents = strip < 0 ? lower : strip;
    return STROP_OK;
  }
  if (!strcmp(type, "Replace")) {
    const char *content;
    size_t cn;
    if ((st = jstr(c, j, "content", NULL, &content, &cn, where))) return st;
    if ((st = new_norm(c, &n))) return st;
    n->kind = TX_N_REPLACE;
    if ((st = jpattern(c, j, &n->pat, where))) return st;
    n->str = strop__tx_strndup(content, cn);
    n->strn = cn;
    return n->str ? STROP_OK : STROP__NOMEM(FN);
  }
  if (!strcmp(type, "Prepend")) {
    const char *s;
    size_t sn;
    if ((st = jstr(c, j, "prepend", NULL, &s, &sn, where))) return st;
    if ((st = new_norm(c, &n))) return st;
    n->kind = TX_N_PREPEND;
    n->str = strop__tx_strndup(s, sn);
    n->strn = sn;
    return n->str ? STROP_OK : STROP__NOMEM(FN);
  }
  if (!strcmp(type, "Strip")) {
    int l, r;
    if ((st = jbool(c, j, "strip_left", 1, &l, where)) ||
        (st = jbool(c, j, "strip_right", 1, &r, where)))
      return st;
    if ((st = new_norm(c, &n))) return st;
    n->kind = TX_N_STRIP;
    n->left = l;
    n->right = r;
    return STROP_OK;
  }
  if (!strcmp(type, "Precompiled")) {
    json_t *m = json_object_get(j, "precompiled_charsmap");
    if (!m || json_is_null(m)) return STROP_OK; /* an empty map changes nothing */
    if (!json_is_string(m))
      return jerr(c, STROP_E_FORMAT, where, "'precompiled_charsmap' must be a base64 string");
    size_t bn;
    uint8_t *blob = b64_decode(json_string_value(m), json_string_length(m), &bn);
    if (!blob) {
      if (bn == SIZE_MAX)
        return jerr(c, STROP_E_FORMAT, where, "'precompiled_charsmap' is not valid base64");
      return STROP__NOMEM(FN);
    }
    if ((st = new_norm(c, &n))) {
      strop__free(blob);
      return st;
    }
    n->kind = TX_N_PRECOMPILED;
    char w2[600];
    snprintf(w2, sizeof w2, "%s: %s", c->file, where);
    st = strop__tx_charsmap_init(&n->map, blob, bn, FN, w2);
    strop__free(blob);
    return st;
  }
  return unsupported(c, where, type,
                     "NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, BertNormalizer, Replace, "
                     "Prepend, Strip, Precompiled, Sequence");
}

/* ---- pre-tokenizers ---- */
static strop_status new_pre(const jctx *c, tx_pretok **out) {
  strop_tokenizer *t = c->tok;
  tx_pretok *v = strop__realloc(t->pre, ((size_t)t->npre + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(FN);
  t->pre = v;
  memset(&v[t->npre], 0, sizeof *v);
  *out = &v[t->npre++];
  return STROP_OK;
}

static strop_status jbehavior(const jctx *c, const json_t *j, int def, int *out,
                              const char *where) {
  const char *b;
  size_t bn;
  strop_status st = jstr(c, j, "behavior", def == TX_B_ISOLATED ? "Isolated" : "", &b, &bn,
                         where);
  if (st) return st;
  static const char *NAMES[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                "Contiguous"};
  for (int i = 0; i < 5; i++)
    if (!strcmp(b, NAMES[i])) {
      *out = i;
      return STROP_OK;
    }
  return jerr(c, STROP_E_FORMAT, where,
              "behavior '%s' is not Removed, Isolated, MergedWithPrevious, MergedWithNext or "
              "Contiguous",
              b);
}

static strop_status jscheme(const jctx *c, const json_t *j, int *scheme, int *legacy,
                            const char *where) {
  json_t *ps = json_object_get(j, "prepend_scheme");
  *legacy = 0;
  if (!ps || json_is_null(ps)) {
    int add;
    strop_status st = jbool(c, j, "add_prefix_space", 1, &add, where);
    if (st) return st;
    *legacy = 1;
    *scheme = add ? TX_PREPEND_ALWAYS : TX_PREPEND_NEVER;
    return STROP_OK;
  }
  const char *s = json_is_string(ps) ? json_string_value(ps) : "";
  if (!strcmp(s, "always")) *scheme = TX_PREPEND_ALWAYS;
  else if (!strcmp(s, "first")) *scheme = TX_PREPEND_FIRST;
  else if (!strcmp(s, "never")) *scheme = TX_PREPEND_NEVER;
  else
    return jerr(c, STROP_E_FORMAT, where,
                "prepend_scheme must be \"always\", \"first\" or "
                "\"never\"");
  return STROP_OK;
}

/* A one-character string field (Metaspace's replacement, Strip's content). */
static strop_status jchar(const jctx *c, const json_t *j, const char *key, const char *def,
                          char **s, size_t *n, uint32_t *cp, const char *where) {
  const char *v;
  size_t vn;
  strop_status st = jstr(c, j, key, def, &v, &vn, where);
  if (st) return st;
  size_t k = 0;
  if (vn) strop__tx_utf8_get(v, &k);
  if (!vn || k != vn || !strop__tx_utf8_check(v, vn))
    return jerr(c, STROP_E_FORMAT, where, "'%s' must be one character", key);
  *cp = strop__tx_utf8_get(v, &k);
  *s = strop__tx_strndup(v, vn);
  *n = vn;
  return *s ? STROP_OK : STROP__NOMEM(FN);
}

static strop_status parse_pre(const jctx *c, const json_t *j, const char *where, int depth) {
  const char *type;
  strop_status st = jtype(c, j, &type, where);
  if (st) return st;
  if (depth > 16) return jerr(c, STROP_E_FORMAT, where, "Sequences nested too deep");
  tx_pretok *p;
  if (!strcmp(type, "Sequence")) {
    json_t *a = json_object_get(j, "pretokenizers");
    if (!json_is_array(a))
      return jerr(c, STROP_E_FORMAT, where, "'pretokenizers' must be an array");
    if (depth == 0) c->tok->pre_seq = 1;
    for (size_t i = 0; i < json_array_size(a); i++) {
      char w2[256];
      snprintf(w2, sizeof w2, "%s.pretokenizers[%zu]", where, i);
      if ((st = parse_pre(c, json_array_get(a, i), w2, depth + 1))) return st;
    }
    return STROP_OK;
  }
  if (!strcmp(type, "ByteLevel")) {
    int aps, trim, rx;
    if ((st = jbool(c, j, "add_prefix_space", 1, &aps, where)) ||
        (st = jbool(c, j, "trim_offsets", 1, &trim, where)) ||
        (st = jbool(c, j, "use_regex", 1, &rx, where)))
      return st;
    if ((st = new_pre(c, &p))) return st;
    p->kind = TX_P_BYTELEVEL;
    p->add_prefix_space = aps;
    p->trim_offsets = trim;
    p->use_regex = rx;
    if (rx)
      return strop__tx_pattern_compile(&p->pat, TX_PAT_REGEX, strop__tx_gpt2_regex,
                                       strlen(strop__tx_gpt2_regex), FN, "ByteLevel");
    return STROP_OK;
  }
  if (!strcmp(type, "Split")) {
    int beh, inv;
    if ((st = jbehavior(c, j, -1, &beh, where)) || (st = jbool(c, j, "invert", 0, &inv, where)))
      return st;
    if ((st = new_pre(c, &p))) return st;
    p->kind = TX_P_SPLIT;
    p->behavior = beh;
    p->invert = inv;
    return jpattern(c, j, &p->pat, where);
  }
  if (!strcmp(type, "Whitespace") || !strcmp(type, "WhitespaceSplit") ||
      !strcmp(type, "BertPreTokenizer")) {
    if ((st = new_pre(c, &p))) return st;
    p->kind = type[0] == 'B' ? TX_P_BERT : strlen(type) > 10 ? TX_P_WSSPLIT : TX_P_WHITESPACE;
    return STROP_OK;
  }
  if (!strcmp(type, "Metaspace")) {
    int scheme, legacy, split;
    if ((st = jscheme(c, j, &scheme, &legacy, where)) ||
        (st = jbool(c, j, "split", 1, &split, where)))
      return st;
    if ((st = new_pre(c, &p))) return st;
    p->kind = TX_P_METASPACE;
    p->prepend_scheme = scheme;
    p->legacy = legacy;
    p->split = split;
    return jchar(c, j, "replacement", "\xe2\x96\x81", &p->repl, &p->repln, &p->repl_cp, where);
  }
  if (!strcmp(type, "Digits")) {
    int ind;
    if ((st = jbool(c, j, "individual_digits", 0, &ind, where))) return st;
    if ((st = new_pre(c, &p))) return st;
    p->kind = TX_P_DIGITS;
    p->individual_digits = ind;
    return STROP_OK;
  }
  if (!strcmp(type, "Punctuation")) {
    int beh;
    if ((st = jbehavior(c, j, TX_B_ISOLATED, &beh, where))) return st;
    if ((st = new_pre(c, &p))) return st;
    p->kind = TX_P_PUNCT;
    p->behavior = beh;
    return STROP_OK;
  }
  return unsupported(
      c, where, type,
      "ByteLevel, Split, Whitespace, WhitespaceSplit, BertPreTokenizer, Metaspace, "
      "Digits, Punctuation, Sequence");
}

/* ---- decoders ---- */
static strop_status new_dec(const jctx *c, tx_dec **out) {
  strop_tokenizer *t = c->tok;
  tx_dec *v = strop__realloc(t->dec, ((size_t)t->ndec + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(FN);
  t->dec = v;
  memset(&v[t->ndec], 0, sizeof *v);
  *out = &v[t->ndec++];
  return STROP_OK;
}

static strop_status parse_dec(const jctx *c, const json_t *j, const char *where, int depth) {
  const char *type;
  strop_status st = jtype(c, j, &type, where);
  if (st) return st;
  if (depth > 16) return jerr(c, STROP_E_FORMAT, where, "Sequences nested too deep");
  tx_dec *d;
  if (!strcmp(type, "Sequence")) {
    json_t *a = json_object_get(j, "decoders");
    if (!json_is_array(a)) return jerr(c, STROP_E_FORMAT, where, "'decoders' must be an array");
    if (depth == 0) c->tok->dec_seq = 1;
    for (size_t i = 0; i < json_array_size(a); i++) {
      char w2[256];
      snprintf(w2, sizeof w2, "%s.decoders[%zu]", where, i);
      if ((st = parse_dec(c, json_array_get(a, i), w2, depth + 1))) return st;
    }
    return STROP_OK;
  }
  if (!strcmp(type, "ByteLevel") || !strcmp(type, "ByteFallback") || !strcmp(type, "Fuse")) {
    if ((st = new_dec(c, &d))) return st;
    d->kind = type[0] == 'F' ? TX_D_FUSE : type[4] == 'L' ? TX_D_BYTELEVEL : TX_D_BYTEFALLBACK;
    return STROP_OK;
  }
  if (!strcmp(type, "Metaspace")) {
    int scheme, legacy, split;
    if ((st = jscheme(c, j, &scheme, &legacy, where)) ||
        (st = jbool(c, j, "split", 1, &split, where)))
      return st;
    if ((st = new_dec(c, &d))) return st;
    d->kind = TX_D_METASPACE;
    d->prepend_scheme = scheme;
    d->legacy = legacy;
    d->split = split;
    return jchar(c, j, "replacement", "\xe2\x96\x81", &d->a, &d->an, &d->cp, where);
  }
  if (!strcmp(type, "WordPiece")) {
    const char *pre;
    size_t pn;
    int cleanup;
    if ((st = jstr(c, j, "prefix", "##", &pre, &pn, where)) ||
        (st = jbool(c, j, "cleanup", 1, &cleanup, where)))
      return st;
    if ((st = new_dec(c, &d))) return st;
    d->kind = TX_D_WORDPIECE;
    d->cleanup = cleanup;
    d->a = strop__tx_strndup(pre, pn);
    d->an = pn;
    return d->a ? STROP_OK : STROP__NOMEM(FN);
  }
  if (!strcmp(type, "Strip")) {
    int64_t a, b;
    if ((st = jint(c, j, "start", 0, 0, 1 << 20, &a, where)) ||
        (st = jint(c, j, "stop", 0, 0, 1 << 20, &b, where)))
      return st;
    if ((st = new_dec(c, &d))) return st;
    d->kind = TX_D_STRIP;
    d->start = (int)a;
    d->stop = (int)b;
    return jchar(c, j, "content", NULL, &d->a, &d->an, &d->cp, where);
  }
  if (!strcmp(type, "Replace")) {
    const char *content;
    size_t cn;
    if ((st = jstr(c, j, "content", NULL, &content, &cn, where))) return st;
    if ((st = new_dec(c, &d))) return st;
    d->kind = TX_D_REPLACE;
    d->a = strop__tx_strndup(content, cn);
    d->an = cn;
    if (!d->a) return STROP__NOMEM(FN);
    return jpattern(c, j, &d->pat, where);
  }
  if (!strcmp(type, "BPEDecoder")) {
    const char *suf;
    size_t sn;
    if ((st = jstr(c, j, "suffix", "</w>", &suf, &sn, where))) return st;
    if ((st = new_dec(c, &d))) return st;
    d->kind = TX_D_BPE;
    d->a = strop__tx_strndup(suf, sn);
    d->an = sn;
    return d->a ? STROP_OK : STROP__NOMEM(FN);
  }
  return unsupported(c, where, type,
                     "ByteLevel, Metaspace, WordPiece, ByteFallback, Fuse, Strip, Replace, "
                     "BPEDecoder, Sequence");
}

/* ---- models ---- */
static strop_status vocab_object(const jctx *c, const json_t *v, tx_model *m, const char *where) {
  if (!json_is_object(v)) return jerr(c, STROP_E_FORMAT, where, "'vocab' must be an object");
  if (json_object_size(v) >= TX_MAX_IDS)
    return jerr(c, STROP_E_FORMAT, where, "%zu tokens are too many", json_object_size(v));
  strop_status st = strop__tx_vocab_reserve(&m->vocab, json_object_size(v));
  if (st) return st;
  const char *key;
  size_t klen;
  json_t *val;
  json_object_keylen_foreach((json_t *)v, key, klen, val) {
    if (!json_is_integer(val) || json_integer_value(val) < 0 ||
        json_integer_value(val) >= TX_MAX_IDS)
      return jerr(c, STROP_E_FORMAT, where, "vocab[\"%.60s\"] must be an id in [0, %d)", key,
                  TX_MAX_IDS);
    if (klen >= TX_MAX_TOKEN_BYTES)
      return jerr(c, STROP_E_FORMAT, where, "a token of %zu bytes is too long", klen);
    int32_t id = (int32_t)json_integer_value(val);
    if (id < m->vocab.n && m->vocab.len[id] != TX_NONE) {
      size_t on = 0;
      const char *o = strop__tx_vocab_str(&m->vocab, id, &on);
      return jerr(c, STROP_E_FORMAT, where, "id %d is given to both \"%.60s\" and \"%.*s\"", id,
                  key, (int)(on > 60 ? 60 : on), o);
    }
    if ((st = strop__tx_vocab_put(&m->vocab, id, key, klen))) return st;
  }
  return STROP_OK;
}

static strop_status unk_token(const jctx *c, const json_t *j, tx_model *m, const char *def,
                              const char *where) {
  json_t *u = json_object_get(j, "unk_token");
  m->unk = -1;
  const char *s = def;
  size_t n = def ? strlen(def) : 0;
  if (u && !json_is_null(u)) {
    if (!json_is_string(u)) return jerr(c, STROP_E_FORMAT, where, "'unk_token' must be a string");
    s = json_string_value(u);
    n = json_string_length(u);
  }
  if (!s) return STROP_OK;
  m->unk_token = strop__tx_strndup(s, n);
  if (!m->unk_token) return STROP__NOMEM(FN);
  m->unk = strop__tx_vocab_find(&m->vocab, s, n);
  return STROP_OK;
}

static strop_status opt_string(const jctx *c, const json_t *j, const char *key, char **out,
                               size_t *n, const char *where) {
  json_t *v = json_object_get(j, key);
  *out = NULL;
  *n = 0;
  if (!v || json_is_null(v)) return STROP_OK;
  if (!json_is_string(v)) return jerr(c, STROP_E_FORMAT, where, "'%s' must be a string", key);
  *n = json_string_length(v);
  if (!*n) return STROP_OK; /* "" means none, as null does */
  *out = strop__tx_strndup(json_string_value(v), *n);
  return *out ? STROP_OK : STROP__NOMEM(FN);
}

static strop_status parse_bpe(const jctx *c, const json_t *j, tx_model *m, const char *where) {
  strop_status st;
  m->kind = TX_M_BPE;
  if ((st = vocab_object(c, json_object_get(j, "vocab"), m, "model.vocab"))) return st;
  if ((st = unk_token(c, j, m, NULL, where)) ||
      (st = opt_string(c, j, "continuing_subword_prefix", &m->prefix, &m->prefixn, where)) ||
      (st = opt_string(c, j, "end_of_word_suffix", &m->suffix, &m->suffixn, where)) ||
      (st = jbool(c, j, "fuse_unk", 0, &m->fuse_unk, where)) ||
      (st = jbool(c, j, "byte_fallback", 0, &m->byte_fallback, where)) ||
      (st = jbool(c, j, "ignore_merges", 0, &m->ignore_merges, where)))
    return st;
  json_t *dr = json_object_get(j, "dropout");
  m->dropout = json_is_number(dr) ? json_number_value(dr) : -1;
  json_t *mg = json_object_get(j, "merges");
  if (!mg || json_is_null(mg)) mg = NULL;
  if (mg && !json_is_array(mg))
    return jerr(c, STROP_E_FORMAT, "model.merges", "must be an array");
  size_t nm = mg ? json_array_size(mg) : 0;
  if (nm >= TX_MAX_IDS)
    return jerr(c, STROP_E_FORMAT, "model.merges", "%zu merges is too many", nm);
  m->merge_a = strop__malloc((nm + 1) * sizeof *m->merge_a);
  m->merge_b = strop__malloc((nm + 1) * sizeof *m->merge_b);
  if (!m->merge_a || !m->merge_b) return STROP__NOMEM(FN);
  char *buf = NULL;
  size_t bcap = 0;
  for (size_t i = 0; i < nm; i++) {
    json_t *e = json_array_get(mg, i);
    const char *a, *b;
    size_t an = 0, bn = 0;
    if (json_is_string(e)) { /* "a b" */
      a = json_string_value(e);
      const char *sp = memchr(a, ' ', json_string_length(e));
      if (!sp || memchr(sp + 1, ' ', json_string_length(e) - (size_t)(sp + 1 - a))) {
        strop__free(buf);
        return jerr(c, STROP_E_FORMAT, "model.merges",
                    "merges[%zu] \"%.60s\" is not two tokens "
                    "separated by one space",
                    i, a);
      }
      an = (size_t)(sp - a);
      b = sp + 1;
      bn = json_string_length(e) - an - 1;
    } else if (json_is_array(e) && json_array_size(e) == 2 &&
               json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
      a = json_string_value(json_array_get(e, 0));
      an = json_string_length(json_array_get(e, 0));
      b = json_string_value(json_array_get(e, 1));
      bn = json_string_length(json_array_get(e, 1));
    } else {
      strop__free(buf);
      return jerr(c, STROP_E_FORMAT, "model.merges", "merges[%zu] is neither \"a b\" nor [a, b]",
                  i);
    }
    int32_t ia = strop__tx_vocab_find(&m->vocab, a, an),
            ib = strop__tx_vocab_find(&m->vocab, b, bn);
    /* the merged token: b loses the continuing prefix */
    size_t skip = m->prefix && bn >= m->prefixn && !memcmp(b, m->prefix, m->prefixn) ? m->prefixn
                                                                                     : 0;
    if (strop__tx_reserve((void **)&buf, &bcap, an + bn + 1, 1)) return STROP__NOMEM(FN);
    memcpy(buf, a, an);
    memcpy(buf + an, b + skip, bn - skip);
    int32_t to = strop__tx_vocab_find(&m->vocab, buf, an + bn - skip);
    if (ia < 0 || ib < 0 || to < 0) {
      const char *missing = ia < 0 ? a : ib < 0 ? b : buf;
      int mn = (int)(ia < 0 ? an : ib < 0 ? bn : an + bn - skip);
      st = jerr(c, STROP_E_FORMAT, "model.merges",
                "merges[%zu]: token \"%.*s\" is not in the "
                "vocabulary",
                i, mn > 60 ? 60 : mn, missing);
      strop__free(buf);
      return st;
    }
    m->merge_a[i] = ia;
    m->merge_b[i] = ib;
    if ((st = strop__tx_pairs_put(&m->merges, ia, ib, (int32_t)i, to))) {
      strop__free(buf);
      return st;
    }
  }
  strop__free(buf);
  m->nmerges = (int32_t)nm;
  return STROP_OK;
}

static strop_status parse_model(const jctx *c, const json_t *j) {
  const char *where = "model";
  if (!json_is_object(j)) return jerr(c, STROP_E_FORMAT, where, "must be an object");
  tx_model *m = &c->tok->model;
  const char *type = NULL;
  json_t *t = json_object_get(j, "type");
  if (json_is_string(t)) {
    type = json_string_value(t);
  } else if (t && !json_is_null(t)) {
    return jerr(c, STROP_E_FORMAT, where, "'type' must be a string");
  } else { /* files older than the "type" field: tell by the fields */
    json_t *v = json_object_get(j, "vocab");
    type = json_object_get(j, "merges")                     ? "BPE"
           : json_is_array(v)                               ? "Unigram"
           : json_object_get(j, "max_input_chars_per_word") ? "WordPiece"
                                                            : "WordLevel";
  }
  strop_status st;
  if (!strcmp(type, "BPE")) return parse_bpe(c, j, m, where);
  if (!strcmp(type, "WordPiece")) {
    m->kind = TX_M_WORDPIECE;
    int64_t mx;
    if ((st = vocab_object(c, json_object_get(j, "vocab"), m, "model.vocab")) ||
        (st = unk_token(c, j, m, "[UNK]", where)) ||
        (st = jint(c, j, "max_input_chars_per_word", 100, 0, INT32_MAX, &mx, where)))
      return st;
    m->max_chars = mx;
    json_t *p = json_object_get(j, "continuing_subword_prefix");
    const char *pre = json_is_string(p) ? json_string_value(p) : "##";
    m->prefixn = json_is_string(p) ? json_string_length(p) : 2;
    m->prefix = strop__tx_strndup(pre, m->prefixn);
    return m->prefix ? STROP_OK : STROP__NOMEM(FN);
  }
  if (!strcmp(type, "WordLevel")) {
    m->kind = TX_M_WORDLEVEL;
    if ((st = vocab_object(c, json_object_get(j, "vocab"), m, "model.vocab"))) return st;
    return unk_token(c, j, m, NULL, where);
  }
  if (!strcmp(type, "Unigram")) {
    m->kind = TX_M_UNIGRAM;
    json_t *v = json_object_get(j, "vocab");
    if (!json_is_array(v)) return jerr(c, STROP_E_FORMAT, "model.vocab", "must be an array");
    size_t n = json_array_size(v);
    if (!n || n >= TX_MAX_IDS)
      return jerr(c, STROP_E_FORMAT, "model.vocab", "has %zu entries", n);
    m->dscore = strop__malloc(n * sizeof *m->dscore);
    if (!m->dscore) return STROP__NOMEM(FN);
    if ((st = strop__tx_vocab_reserve(&m->vocab, n))) return st;
    for (size_t i = 0; i < n; i++) {
      json_t *e = json_array_get(v, i);
      if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(json_array_get(e, 0)) ||
          !json_is_number(json_array_get(e, 1)))
        return jerr(c, STROP_E_FORMAT, "model.vocab", "vocab[%zu] is not [token, score]", i);
      json_t *s = json_array_get(e, 0);
      size_t sn = json_string_length(s);
      if (sn >= TX_MAX_TOKEN_BYTES)
        return jerr(c, STROP_E_FORMAT, "model.vocab", "vocab[%zu] is too long", i);
      if (strop__tx_vocab_find(&m->vocab, json_string_value(s), sn) >= 0)
        return jerr(c, STROP_E_FORMAT, "model.vocab", "vocab[%zu] \"%.60s\" appears twice", i,
                    json_string_value(s));
      if ((st = strop__tx_vocab_put(&m->vocab, (int32_t)i, json_string_value(s), sn))) return st;
      m->dscore[i] = json_number_value(json_array_get(e, 1));
    }
    int64_t unk;
    if ((st = jint(c, j, "unk_id", -1, 0, (int64_t)n - 1, &unk, where)) ||
        (st = jbool(c, j, "byte_fallback", 0, &m->byte_fallback, where)))
      return st;
    m->unk = (int32_t)unk;
    return STROP_OK;
  }
  return unsupported(c, where, type, "BPE, WordPiece, WordLevel, Unigram");
}

/* ---- post-processors ---- */
static strop_status new_post(const jctx *c, tx_post **out) {
  strop_tokenizer *t = c->tok;
  tx_post *v = strop__realloc(t->post, ((size_t)t->npost + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(FN);
  t->post = v;
  memset(&v[t->npost], 0, sizeof *v);
  *out = &v[t->npost++];
  return STROP_OK;
}

/* Adds a special token to the template (name, one id); returns its index. */
static strop_status add_special(tx_post *p, const char *name, size_t nn, const int32_t *ids,
                                char **tokens, int n, int *index) {
  tx_tspecial *v = strop__realloc(p->sp, ((size_t)p->nsp + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(FN);
  p->sp = v;
  tx_tspecial *s = &v[p->nsp];
  memset(s, 0, sizeof *s);
  s->name = strop__tx_strndup(name, nn);
  s->ids = strop__malloc(((size_t)n + 1) * sizeof *s->ids);
  s->tokens = strop__calloc((size_t)n + 1, sizeof *s->tokens);
  if (!s->name || !s->ids || !s->tokens) {
    strop__free(s->name);
    strop__free(s->ids);
    strop__free(s->tokens);
    return STROP__NOMEM(FN);
  }
  p->nsp++;
  s->n = n;
  for (int i = 0; i < n; i++) {
    s->ids[i] = ids[i];
    s->tokens[i] = strop__tx_strndup(tokens[i], strlen(tokens[i]));
    if (!s->tokens[i]) return STROP__NOMEM(FN);
  }
  *index = p->nsp - 1;
  return STROP_OK;
}

static strop_status set_template(tx_post *p, int pair, const tx_tpiece *v, int n) {
  tx_tpiece *d = strop__malloc(((size_t)n + 1) * sizeof *d);
  if (!d) return STROP__NOMEM(FN);
  memcpy(d, v, (size_t)n * sizeof *d);
  if (pair) {
    p->pair = d;
    p->npair = n;
  } else {
    p->single = d;
    p->nsingle = n;
  }
  return STROP_OK;
}

/* ["[CLS]", 101] */
static strop_status jtoken_pair(const jctx *c, const json_t *j, const char *key, const char **s,
                                int32_t *id, const char *where) {
  json_t *v = json_object_get(j, key);
  if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(json_array_get(v, 0)) ||
      !json_is_integer(json_array_get(v, 1)) || json_integer_value(json_array_get(v, 1)) < 0 ||
      json_integer_value(json_array_get(v, 1)) >= TX_MAX_IDS)
    return jerr(c, STROP_E_FORMAT, where, "'%s' must be [token, id]", key);
  *s = json_string_value(json_array_get(v, 0));
  *id = (int32_t)json_integer_value(json_array_get(v, 1));
  return STROP_OK;
}

static strop_status parse_template_list(const jctx *c, const json_t *list, tx_post *p, int pair,
                                        const json_t *specials, const char *where) {
  if (!json_is_array(list)) return jerr(c, STROP_E_FORMAT, where, "must be an array");
  size_t n = json_array_size(list);
  if (n > 64) return jerr(c, STROP_E_FORMAT, where, "has %zu pieces", n);
  tx_tpiece v[64];
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(list, i);
    json_t *sq = json_object_get(e, "Sequence"), *sp = json_object_get(e, "SpecialToken");
    json_t *x = sq ? sq : sp;
    if (!json_is_object(x))
      return jerr(c, STROP_E_FORMAT, where,
                  "[%zu] is neither {\"Sequence\": ...} nor "
                  "{\"SpecialToken\": ...}",
                  i);
    json_t *id = json_object_get(x, "id"), *ty = json_object_get(x, "type_id");
    if (!json_is_string(id) || (ty && !json_is_integer(ty)))
      return jerr(c, STROP_E_FORMAT, where, "[%zu] needs a string id and an integer type_id", i);
    int64_t type = ty ? (int64_t)json_integer_value(ty) : 0;
    if (type < 0 || type > 255)
      return jerr(c, STROP_E_FORMAT, where, "[%zu]: type_id %lld is outside [0, 255]", i,
                  (long long)type);
    v[i].type_id = (int)type;
    const char *name = json_string_value(id);
    if (sq) {
      if (strcmp(name, "A") && strcmp(name, "B"))
        return jerr(c, STROP_E_FORMAT, where, "[%zu]: sequence id must be \"A\" or \"B\"", i);
      v[i].special = -1;
      v[i].seq = name[0] == 'B';
      if (!pair && v[i].seq)
        return jerr(c, STROP_E_FORMAT, where, "[%zu]: a single-text template cannot hold B", i);
      continue;
    }
    v[i].seq = 0;
    v[i].special = -1;
    for (int k = 0; k < p->nsp; k++)
      if (!strcmp(p->sp[k].name, name)) v[i].special = k;
    if (v[i].special >= 0) continue;
    json_t *def = json_object_get(specials, name);
    if (!json_is_object(def))
      return jerr(c, STROP_E_FORMAT, where,
                  "[%zu]: special token \"%.60s\" is not in "
                  "special_tokens",
                  i, name);
    json_t *ids = json_object_get(def, "ids"), *toks = json_object_get(def, "tokens");
    if (!json_is_array(ids) || !json_is_array(toks) ||
        json_array_size(ids) != json_array_size(toks) || json_array_size(ids) > 16)
      return jerr(c, STROP_E_FORMAT, where,
                  "special token \"%.60s\" needs ids and tokens of "
                  "one length",
                  name);
    int32_t iv[16];
    char *tv[16];
    for (size_t k = 0; k < json_array_size(ids); k++) {
      json_t *a = json_array_get(ids, k), *b = json_array_get(toks, k);
      if (!json_is_integer(a) || json_integer_value(a) < 0 ||
          json_integer_value(a) >= TX_MAX_IDS || !json_is_string(b))
        return jerr(c, STROP_E_FORMAT, where, "special token \"%.60s\": bad id or token", name);
      iv[k] = (int32_t)json_integer_value(a);
      tv[k] = (char *)json_string_value(b);
    }
    strop_status st = add_special(p, name, strlen(name), iv, tv, (int)json_array_size(ids),
                                  &v[i].special);
    if (st) return st;
  }
  return set_template(p, pair, v, (int)n);
}

static strop_status parse_post(const jctx *c, const json_t *j, const char *where, int depth) {
  const char *type;
  strop_status st = jtype(c, j, &type, where);
  if (st) return st;
  if (depth > 16) return jerr(c, STROP_E_FORMAT, where, "Sequences nested too deep");
  tx_post *p;
  if (!strcmp(type, "Sequence")) {
    json_t *a = json_object_get(j, "processors");
    if (!json_is_array(a)) return jerr(c, STROP_E_FORMAT, where, "'processors' must be an array");
    if (depth == 0) c->tok->post_seq = 1;
    for (size_t i = 0; i < json_array_size(a); i++) {
      char w2[256];
      snprintf(w2, sizeof w2, "%s.processors[%zu]", where, i);
      if ((st = parse_post(c, json_array_get(a, i), w2, depth + 1))) return st;
    }
    return STROP_OK;
  }
  if (!strcmp(type, "ByteLevel")) {
    int aps, trim, rx;
    if ((st = jbool(c, j, "add_prefix_space", 1, &aps, where)) ||
        (st = jbool(c, j, "trim_offsets", 1, &trim, where)) ||
        (st = jbool(c, j, "use_regex", 1, &rx, where)))
      return st;
    if ((st = new_post(c, &p))) return st;
    p->kind = TX_Q_BYTELEVEL;
    p->add_prefix_space = aps;
    p->trim_offsets = trim;
    p->use_regex = rx;
    return STROP_OK;
  }
  if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
    int roberta = type[0] == 'R';
    const char *cls, *sep;
    int32_t cid, sid;
    int trim = 0, aps = 0;
    if ((st = jtoken_pair(c, j, "cls", &cls, &cid, where)) ||
        (st = jtoken_pair(c, j, "sep", &sep, &sid, where)))
      return st;
    if (roberta && ((st = jbool(c, j, "trim_offsets", 1, &trim, where)) ||
                    (st = jbool(c, j, "add_prefix_space", 1, &aps, where))))
      return st;
    if ((st = new_post(c, &p))) return st;
    p->kind = roberta ? TX_Q_ROBERTA : TX_Q_BERT;
    p->trim_offsets = trim;
    p->add_prefix_space = aps;
    int ic, is;
    char *ct[1] = {(char *)cls}, *stk[1] = {(char *)sep};
    if ((st = add_special(p, cls, strlen(cls), &cid, ct, 1, &ic)) ||
        (st = add_special(p, sep, strlen(sep), &sid, stk, 1, &is)))
      return st;
    /* BERT: [CLS] A [SEP] B:1 [SEP]:1; RoBERTa: <s> A </s> </s> B </s>, all type 0 */
    tx_tpiece single[3] = {{ic, 0, 0}, {-1, 0, 0}, {is, 0, 0}};
    tx_tpiece bert[5] = {{ic, 0, 0}, {-1, 0, 0}, {is, 0, 0}, {-1, 1, 1}, {is, 0, 1}};
    tx_tpiece rob[6] = {{ic, 0, 0}, {-1, 0, 0}, {is, 0, 0}, {is, 0, 0}, {-1, 1, 0}, {is, 0, 0}};
    if ((st = set_template(p, 0, single, 3))) return st;
    return roberta ? set_template(p, 1, rob, 6) : set_template(p, 1, bert, 5);
  }
  if (!strcmp(type, "TemplateProcessing")) {
    if ((st = new_post(c, &p))) return st;
    p->kind = TX_Q_TEMPLATE;
    json_t *sp = json_object_get(j, "special_tokens");
    if (sp && !json_is_object(sp))
      return jerr(c, STROP_E_FORMAT, where, "'special_tokens' must be an object");
    char w2[256];
    snprintf(w2, sizeof w2, "%s.single", where);
    if ((st = parse_template_list(c, json_object_get(j, "single"), p, 0, sp, w2))) return st;
    snprintf(w2, sizeof w2, "%s.pair", where);
    return parse_template_list(c, json_object_get(j, "pair"), p, 1, sp, w2);
  }
  return unsupported(
      c, where, type,
      "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence");
}

/* ---- the file ---- */
static strop_status parse_added(const jctx *c, const json_t *a) {
  if (!a || json_is_null(a)) return STROP_OK;
  if (!json_is_array(a)) return jerr(c, STROP_E_FORMAT, "added_tokens", "must be an array");
  for (size_t i = 0; i < json_array_size(a); i++) {
    json_t *e = json_array_get(a, i);
    char where[64];
    snprintf(where, sizeof where, "added_tokens[%zu]", i);
    if (!json_is_object(e)) return jerr(c, STROP_E_FORMAT, where, "must be an object");
    const char *content;
    size_t cn;
    int64_t id;
    int sw, ls, rs, norm, special;
    strop_status st;
    if ((st = jstr(c, e, "content", NULL, &content, &cn, where)) ||
        (st = jint(c, e, "id", -1, 0, TX_MAX_IDS - 1, &id, where)) ||
        (st = jbool(c, e, "single_word", 0, &sw, where)) ||
        (st = jbool(c, e, "lstrip", 0, &ls, where)) ||
        (st = jbool(c, e, "rstrip", 0, &rs, where)) ||
        (st = jbool(c, e, "special", 0, &special, where)) ||
        (st = jbool(c, e, "normalized", !special, &norm, where)))
      return st;
    if (id < 0) return jerr(c, STROP_E_FORMAT, where, "'id' is missing");
    if (!cn) return jerr(c, STROP_E_FORMAT, where, "'content' is empty");
    int flags = (special ? STROP_TOKEN_SPECIAL : 0) | (sw ? STROP_TOKEN_SINGLE_WORD : 0) |
                (ls ? STROP_TOKEN_LSTRIP : 0) | (rs ? STROP_TOKEN_RSTRIP : 0) |
                (norm ? STROP_TOKEN_NORMALIZED : 0);
    if ((st = strop__tx_add(c->tok, content, cn, (int32_t)id, flags, FN))) return st;
  }
  return STROP_OK;
}

strop_status strop__tx_parse_json(const char *data, size_t n, const char *fn, const char *where,
                                  struct json_t **root) {
  json_error_t err;
  *root = json_loadb(data, n, JSON_ALLOW_NUL, &err);
  if (!*root)
    return strop__err(STROP_E_FORMAT, "%s: %s:%d:%d: not valid JSON: %s", fn, where, err.line,
                      err.column, err.text);
  return STROP_OK;
}

strop_status strop__tx_load_json(const char *data, size_t n, const char *where,
                                 strop_tokenizer **out) {
  *out = NULL;
  json_t *root;
  strop_status st = strop__tx_parse_json(data, n, FN, where, &root);
  if (st) return st;
  st = strop__tx_load_json_root(root, where, out);
  json_decref(root);
  return st;
}

strop_status strop__tx_load_json_root(struct json_t *root, const char *where,
                                      strop_tokenizer **out) {
  *out = NULL;
  strop_tokenizer *tok = NULL;
  strop_status st = STROP_OK;
  jctx c = {where, NULL};
  if (!json_is_object(root)) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: the top level must be an object", FN, where);
    goto done;
  }
  if (!json_object_get(root, "model")) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: no \"model\": not a tokenizer.json", FN, where);
    goto done;
  }
  if ((st = strop__tx_new(where, TX_FROM_JSON, &tok))) goto done;
  c.tok = tok;
  json_t *j;
  if ((st = parse_model(&c, json_object_get(root, "model")))) goto done;
  if ((j = json_object_get(root, "normalizer")) && !json_is_null(j) &&
      (st = parse_norm(&c, j, "normalizer", 0)))
    goto done;
  if ((j = json_object_get(root, "pre_tokenizer")) && !json_is_null(j) &&
      (st = parse_pre(&c, j, "pre_tokenizer", 0)))
    goto done;
  if ((j = json_object_get(root, "post_processor")) && !json_is_null(j) &&
      (st = parse_post(&c, j, "post_processor", 0)))
    goto done;
  if ((j = json_object_get(root, "decoder")) && !json_is_null(j) &&
      (st = parse_dec(&c, j, "decoder", 0)))
    goto done;
  if ((st = strop__tx_model_finish(&tok->model, FN, where))) goto done;
  if ((st = parse_added(&c, json_object_get(root, "added_tokens")))) goto done;
  json_t *pad = json_object_get(root, "padding");
  if (json_is_object(pad)) {
    json_t *pid = json_object_get(pad, "pad_id");
    if (json_is_integer(pid) && json_integer_value(pid) >= 0 &&
        json_integer_value(pid) < TX_MAX_IDS)
      tok->role[STROP_ROLE_PAD] = (int32_t)json_integer_value(pid);
  }
  st = strop__tx_finish(tok, FN);
done:
  if (st) {
    strop_tokenizer_free(tok);
    return st;
  }
  *out = tok;
  return STROP_OK;
}

/* ---- writing ---- */
#define JSET(o, k, v)                                         \
  do {                                                        \
    json_t *v_ = (v);                                         \
    if (!v_ || json_object_set_new((o), (k), v_)) goto nomem; \
  } while (0)

static json_t *jstrn(const char *s, size_t n) { return json_stringn_nocheck(s, n); }

static json_t *pattern_json(const tx_pattern *p) {
  json_t *o = json_object();
  if (o && json_object_set_new(o, p->kind == TX_PAT_REGEX ? "Regex" : "String",
                               jstrn(p->src, p->srclen))) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static const char *scheme_name(int s) {
  return s == TX_PREPEND_ALWAYS ? "always" : s == TX_PREPEND_FIRST ? "first" : "never";
}

static json_t *norm_json(const tx_norm *n) {
  static const char *NAMES[] = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents"};
  json_t *o = json_object();
  if (!o) return NULL;
  switch (n->kind) {
    case TX_N_BERT:
      JSET(o, "type", json_string("BertNormalizer"));
      JSET(o, "clean_text", json_boolean(n->clean_text));
      JSET(o, "handle_chinese_chars", json_boolean(n->chinese));
      JSET(o, "strip_accents",
           n->strip_accents_null ? json_null() : json_boolean(n->strip_accents));
      JSET(o, "lowercase", json_boolean(n->lowercase));
      break;
    case TX_N_REPLACE:
      JSET(o, "type", json_string("Replace"));
      JSET(o, "pattern", pattern_json(&n->pat));
      JSET(o, "content", jstrn(n->str, n->strn));
      break;
    case TX_N_PREPEND:
      JSET(o, "type", json_string("Prepend"));
      JSET(o, "prepend", jstrn(n->str, n->strn));
      break;
    case TX_N_STRIP:
      JSET(o, "type", json_string("Strip"));
      JSET(o, "strip_left", json_boolean(n->left));
      JSET(o, "strip_right", json_boolean(n->right));
      break;
    case TX_N_PRECOMPILED: {
      char *b = b64_encode(n->map.blob, n->map.nblob);
      if (!b) goto nomem;
      JSET(o, "type", json_string("Precompiled"));
      json_t *s = json_string(b);
      strop__free(b);
      JSET(o, "precompiled_charsmap", s);
      break;
    }
    default:
      if (n->kind > TX_N_STRIP_ACCENTS) goto nomem;
      JSET(o, "type", json_string(NAMES[n->kind]));
  }
  return o;
nomem:
  json_decref(o);
  return NULL;
}

static json_t *pre_json(const tx_pretok *p) {
  json_t *o = json_object();
  if (!o) return NULL;
  switch (p->kind) {
    case TX_P_BYTELEVEL:
      JSET(o, "type", json_string("ByteLevel"));
      JSET(o, "add_prefix_space", json_boolean(p->add_prefix_space));
      JSET(o, "trim_offsets", json_boolean(p->trim_offsets));
      JSET(o, "use_regex", json_boolean(p->use_regex));
      break;
    case TX_P_SPLIT:
      JSET(o, "type", json_string("Split"));
      JSET(o, "pattern", pattern_json(&p->pat));
      JSET(o, "behavior", json_string(strop__tx_behavior_name(p->behavior)));
      JSET(o, "invert", json_boolean(p->invert));
      break;
    case TX_P_WHITESPACE: JSET(o, "type", json_string("Whitespace")); break;
    case TX_P_WSSPLIT: JSET(o, "type", json_string("WhitespaceSplit")); break;
    case TX_P_BERT: JSET(o, "type", json_string("BertPreTokenizer")); break;
    case TX_P_METASPACE:
      JSET(o, "type", json_string("Metaspace"));
      JSET(o, "replacement", jstrn(p->repl, p->repln));
      JSET(o, "prepend_scheme", json_string(scheme_name(p->prepend_scheme)));
      JSET(o, "split", json_boolean(p->split));
      break;
    case TX_P_DIGITS:
      JSET(o, "type", json_string("Digits"));
      JSET(o, "individual_digits", json_boolean(p->individual_digits));
      break;
    case TX_P_PUNCT:
      JSET(o, "type", json_string("Punctuation"));
      JSET(o, "behavior", json_string(strop__tx_behavior_name(p->behavior)));
      break;
    default: goto nomem;
  }
  return o;
nomem:
  json_decref(o);
  return NULL;
}

static json_t *dec_json(const tx_dec *d) {
  json_t *o = json_object();
  if (!o) return NULL;
  switch (d->kind) {
    case TX_D_BYTELEVEL:
      JSET(o, "type", json_string("ByteLevel"));
      JSET(o, "add_prefix_space", json_true());
      JSET(o, "trim_offsets", json_true());
      JSET(o, "use_regex", json_true());
      break;
    case TX_D_METASPACE:
      JSET(o, "type", json_string("Metaspace"));
      JSET(o, "replacement", jstrn(d->a, d->an));
      JSET(o, "prepend_scheme", json_string(scheme_name(d->prepend_scheme)));
      JSET(o, "split", json_boolean(d->split));
      break;
    case TX_D_WORDPIECE:
      JSET(o, "type", json_string("WordPiece"));
      JSET(o, "prefix", jstrn(d->a, d->an));
      JSET(o, "cleanup", json_boolean(d->cleanup));
      break;
    case TX_D_BYTEFALLBACK: JSET(o, "type", json_string("ByteFallback")); break;
    case TX_D_FUSE: JSET(o, "type", json_string("Fuse")); break;
    case TX_D_STRIP:
      JSET(o, "type", json_string("Strip"));
      JSET(o, "content", jstrn(d->a, d->an));
      JSET(o, "start", json_integer(d->start));
      JSET(o, "stop", json_integer(d->stop));
      break;
    case TX_D_REPLACE:
      JSET(o, "type", json_string("Replace"));
      JSET(o, "pattern", pattern_json(&d->pat));
      JSET(o, "content", jstrn(d->a, d->an));
      break;
    case TX_D_BPE:
      JSET(o, "type", json_string("BPEDecoder"));
      JSET(o, "suffix", jstrn(d->a, d->an));
      break;
    default: goto nomem;
  }
  return o;
nomem:
  json_decref(o);
  return NULL;
}

static json_t *tlist_json(const tx_post *p, const tx_tpiece *v, int n) {
  json_t *a = json_array();
  if (!a) return NULL;
  for (int i = 0; i < n; i++) {
    json_t *inner = json_object(), *outer = json_object();
    if (!inner || !outer) {
      json_decref(inner);
      json_decref(outer);
      goto nomem;
    }
    const char *id = v[i].special >= 0 ? p->sp[v[i].special].name : v[i].seq ? "B" : "A";
    if (json_object_set_new(inner, "id", json_string(id)) ||
        json_object_set_new(inner, "type_id", json_integer(v[i].type_id)) ||
        json_object_set_new(outer, v[i].special >= 0 ? "SpecialToken" : "Sequence", inner)) {
      json_decref(outer);
      goto nomem;
    }
    if (json_array_append_new(a, outer)) goto nomem;
  }
  return a;
nomem:
  json_decref(a);
  return NULL;
}

static json_t *post_json(const tx_post *p) {
  json_t *o = json_object();
  if (!o) return NULL;
  if (p->kind == TX_Q_BYTELEVEL) {
    JSET(o, "type", json_string("ByteLevel"));
    JSET(o, "add_prefix_space", json_boolean(p->add_prefix_space));
    JSET(o, "trim_offsets", json_boolean(p->trim_offsets));
    JSET(o, "use_regex", json_boolean(p->use_regex));
  } else if (p->kind == TX_Q_BERT || p->kind == TX_Q_ROBERTA) {
    JSET(o, "type", json_string(p->kind == TX_Q_BERT ? "BertProcessing" : "RobertaProcessing"));
    json_t *sep = json_pack("[s, I]", p->sp[1].name, (json_int_t)p->sp[1].ids[0]);
    json_t *cls = json_pack("[s, I]", p->sp[0].name, (json_int_t)p->sp[0].ids[0]);
    if (!sep || !cls) {
      json_decref(sep);
      json_decref(cls);
      goto nomem;
    }
    JSET(o, "sep", sep);
    JSET(o, "cls", cls);
    if (p->kind == TX_Q_ROBERTA) {
      JSET(o, "trim_offsets", json_boolean(p->trim_offsets));
      JSET(o, "add_prefix_space", json_boolean(p->add_prefix_space));
    }
  } else {
    JSET(o, "type", json_string("TemplateProcessing"));
    JSET(o, "single", tlist_json(p, p->single, p->nsingle));
    JSET(o, "pair", tlist_json(p, p->pair, p->npair));
    json_t *sp = json_object();
    JSET(o, "special_tokens", sp);
    for (int i = 0; i < p->nsp; i++) {
      json_t *ids = json_array(), *toks = json_array(), *e = json_object();
      if (!ids || !toks || !e) {
        json_decref(ids);
        json_decref(toks);
        json_decref(e);
        goto nomem;
      }
      for (int k = 0; k < p->sp[i].n; k++) {
        json_array_append_new(ids, json_integer(p->sp[i].ids[k]));
        json_array_append_new(toks, json_string(p->sp[i].tokens[k]));
      }
      if (json_object_set_new(e, "id", json_string(p->sp[i].name)) ||
          json_object_set_new(e, "ids", ids) || json_object_set_new(e, "tokens", toks) ||
          json_object_set_new(sp, p->sp[i].name, e))
        goto nomem;
    }
  }
  return o;
nomem:
  json_decref(o);
  return NULL;
}

/* Wraps several components in a Sequence (or returns the one). */
static json_t *seq_json(json_t **v, int n, int as_seq, const char *key) {
  if (!n) return json_null();
  if (n == 1 && !as_seq) return v[0];
  json_t *o = json_object(), *a = json_array();
  if (!o || !a) goto nomem;
  for (int i = 0; i < n; i++) {
    if (json_array_append_new(a, v[i])) {
      v[i] = NULL;
      goto nomem;
    }
    v[i] = NULL;
  }
  if (json_object_set_new(o, "type", json_string("Sequence")) || json_object_set_new(o, key, a)) {
    a = NULL;
    goto nomem;
  }
  return o;
nomem:
  for (int i = 0; i < n; i++) json_decref(v[i]);
  json_decref(a);
  json_decref(o);
  return NULL;
}

static json_t *model_json(const tx_model *m) {
  json_t *o = json_object(), *vocab = NULL;
  if (!o) return NULL;
  if (m->kind == TX_M_UNIGRAM) {
    JSET(o, "type", json_string("Unigram"));
    JSET(o, "unk_id", m->unk >= 0 ? json_integer(m->unk) : json_null());
    vocab = json_array();
    JSET(o, "vocab", vocab);
    for (int32_t id = 0; id < m->vocab.n; id++) {
      size_t n;
      const char *s = strop__tx_vocab_str(&m->vocab, id, &n);
      json_t *e = json_pack("[s%, f]", s ? s : "", s ? n : 0,
                            m->dscore ? m->dscore[id] : (double)m->score[id]);
      if (!e || json_array_append_new(vocab, e)) goto nomem;
    }
    JSET(o, "byte_fallback", json_boolean(m->byte_fallback));
    return o;
  }
  static const char *KIND[] = {"BPE", "WordPiece", "Unigram", "WordLevel"};
  JSET(o, "type", json_string(KIND[m->kind]));
  if (m->kind == TX_M_BPE) {
    JSET(o, "dropout", m->dropout < 0 ? json_null() : json_real(m->dropout));
    JSET(o, "unk_token", m->unk_token ? json_string(m->unk_token) : json_null());
    JSET(o, "continuing_subword_prefix", m->prefix ? jstrn(m->prefix, m->prefixn) : json_null());
    JSET(o, "end_of_word_suffix", m->suffix ? jstrn(m->suffix, m->suffixn) : json_null());
    JSET(o, "fuse_unk", json_boolean(m->fuse_unk));
    JSET(o, "byte_fallback", json_boolean(m->byte_fallback));
    JSET(o, "ignore_merges", json_boolean(m->ignore_merges));
  } else if (m->kind == TX_M_WORDPIECE) {
    JSET(o, "unk_token", json_string(m->unk_token ? m->unk_token : "[UNK]"));
    JSET(o, "continuing_subword_prefix", jstrn(m->prefix, m->prefixn));
    JSET(o, "max_input_chars_per_word", json_integer(m->max_chars));
  } else {
    JSET(o, "unk_token", m->unk_token ? json_string(m->unk_token) : json_null());
  }
  vocab = json_object();
  JSET(o, "vocab", vocab);
  for (int32_t id = 0; id < m->vocab.n; id++) {
    size_t n;
    const char *s = strop__tx_vocab_str(&m->vocab, id, &n);
    if (s && json_object_setn_new_nocheck(vocab, s, n, json_integer(id))) goto nomem;
  }
  if (m->kind == TX_M_BPE) {
    /* "a b" as every version of Hugging Face's reader takes it, unless a token has a space
     * (then [a, b], which newer versions read) */
    int pairs = 0;
    for (int32_t i = 0; i < m->nmerges && !pairs; i++)
      for (int k = 0; k < 2 && !pairs; k++) {
        size_t n = 0;
        const char *t = strop__tx_vocab_str(&m->vocab, k ? m->merge_b[i] : m->merge_a[i], &n);
        pairs = memchr(t, ' ', n) != NULL;
      }
    json_t *mg = json_array();
    JSET(o, "merges", mg);
    char *buf = NULL;
    size_t cap = 0;
    for (int32_t i = 0; i < m->nmerges; i++) {
      size_t an = 0, bn = 0;
      const char *a = strop__tx_vocab_str(&m->vocab, m->merge_a[i], &an);
      const char *b = strop__tx_vocab_str(&m->vocab, m->merge_b[i], &bn);
      json_t *e;
      if (pairs) {
        e = json_pack("[s%, s%]", a, an, b, bn);
      } else {
        if (strop__tx_reserve((void **)&buf, &cap, an + bn + 2, 1)) {
          strop__free(buf);
          goto nomem;
        }
        memcpy(buf, a, an);
        buf[an] = ' ';
        memcpy(buf + an + 1, b, bn);
        e = jstrn(buf, an + bn + 1);
      }
      if (!e || json_array_append_new(mg, e)) {
        strop__free(buf);
        goto nomem;
      }
    }
    strop__free(buf);
  }
  return o;
nomem:
  json_decref(o);
  return NULL;
}

strop_status strop__tx_save_json(const strop_tokenizer *tok, char **out, size_t *outn) {
  const char *fn = "strop_tokenizer_save";
  if (tok->origin == TX_FROM_SPM)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: %s is a SentencePiece model: its normalization "
                      "rules and scoring have no tokenizer.json form here",
                      fn, tok->source);
  json_t *root = json_object(), *added = NULL, *v[64];
  json_t *x;
  if (!root) goto nomem;
  JSET(root, "version", json_string("1.0"));
  JSET(root, "truncation", json_null());
  JSET(root, "padding", json_null());
  added = json_array();
  JSET(root, "added_tokens", added);
  /* by id, as Hugging Face writes them */
  for (int64_t id = 0; id < tok->size; id++) {
    for (int i = 0; i < tok->nadded; i++) {
      const tx_added *a = &tok->added[i];
      if (a->id != id) continue;
      json_t *e = json_object();
      if (!e || json_array_append_new(added, e)) goto nomem;
      JSET(e, "id", json_integer(a->id));
      JSET(e, "content", jstrn(a->content, a->len));
      JSET(e, "single_word", json_boolean(a->flags & STROP_TOKEN_SINGLE_WORD));
      JSET(e, "lstrip", json_boolean(a->flags & STROP_TOKEN_LSTRIP));
      JSET(e, "rstrip", json_boolean(a->flags & STROP_TOKEN_RSTRIP));
      JSET(e, "normalized", json_boolean(a->flags & STROP_TOKEN_NORMALIZED));
      JSET(e, "special", json_boolean(a->flags & STROP_TOKEN_SPECIAL));
    }
  }
  if (tok->nnorm > 64 || tok->npre > 64 || tok->npost > 64 || tok->ndec > 64) goto nomem;
  for (int i = 0; i < tok->nnorm; i++)
    if (!(v[i] = norm_json(&tok->norm[i]))) {
      while (i--) json_decref(v[i]);
      goto nomem;
    }
  x = seq_json(v, tok->nnorm, tok->norm_seq, "normalizers");
  JSET(root, "normalizer", x);
  for (int i = 0; i < tok->npre; i++)
    if (!(v[i] = pre_json(&tok->pre[i]))) {
      while (i--) json_decref(v[i]);
      goto nomem;
    }
  x = seq_json(v, tok->npre, tok->pre_seq, "pretokenizers");
  JSET(root, "pre_tokenizer", x);
  for (int i = 0; i < tok->npost; i++)
    if (!(v[i] = post_json(&tok->post[i]))) {
      while (i--) json_decref(v[i]);
      goto nomem;
    }
  x = seq_json(v, tok->npost, tok->post_seq, "processors");
  JSET(root, "post_processor", x);
  for (int i = 0; i < tok->ndec; i++)
    if (!(v[i] = dec_json(&tok->dec[i]))) {
      while (i--) json_decref(v[i]);
      goto nomem;
    }
  x = seq_json(v, tok->ndec, tok->dec_seq, "decoders");
  JSET(root, "decoder", x);
  JSET(root, "model", model_json(&tok->model));
  char *text = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  if (!text) return STROP__NOMEM(fn);
  size_t n = strlen(text);
  *out = strop__malloc(n + 2);
  if (!*out) {
    free(text);
    return STROP__NOMEM(fn);
  }
  memcpy(*out, text, n);
  (*out)[n] = '\n';
  (*out)[n + 1] = '\0';
  *outn = n + 1;
  free(text);
  return STROP_OK;
nomem:
  json_decref(root);
  return STROP__NOMEM(fn);
}
