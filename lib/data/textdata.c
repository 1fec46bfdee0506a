/* SPDX-License-Identifier: MIT */
/* strop — text datasets: JSON Lines, CSV and plain-text files tokenised once with a
 * strop_tokenizer into fixed slots of L ids with padding masks, for classification (texts and
 * text pairs), causal language modelling (packed windows or one sample per text) and
 * prompt/response pairs whose prompt takes no loss. JSON is read with jansson, the library's
 * one JSON implementation (lib/text reads tokenizer.json with it). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "data/data_impl.h"
#include "io/atomic.h"
#include "text/text_impl.h"

#define FN "strop_dataset_load_text_file"
#define IGNORE_ID (-100)

enum { F_TEXT = 0, F_SECOND = 1, F_LABEL = 2, NFIELDS = 3 };

/* One record: up to three strings (text; pair or response; label), malloc'd, and its line. */
typedef struct record {
  char *f[NFIELDS];
  int64_t line;
} record;

typedef struct records {
  record *r;
  int64_t n, cap;
} records;

static void records_free(records *rs) {
  for (int64_t i = 0; i < rs->n; i++)
    for (int k = 0; k < NFIELDS; k++) strop__free(rs->r[i].f[k]);
  strop__free(rs->r);
  memset(rs, 0, sizeof *rs);
}

static strop_status records_push(records *rs, record *rec) {
  if (rs->n == rs->cap) {
    int64_t nc = rs->cap ? rs->cap * 2 : 64;
    record *nr = strop__realloc(rs->r, (size_t)nc * sizeof *nr);
    if (!nr) return STROP__NOMEM(FN);
    rs->r = nr;
    rs->cap = nc;
  }
  rs->r[rs->n++] = *rec;
  memset(rec, 0, sizeof *rec);
  return STROP_OK;
}

static char *dup_n(const char *s, size_t n) {
  char *d = strop__malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* Offset of the first byte of s[0..n) that does not start valid UTF-8 (overlong forms,
 * surrogates and code points above U+10FFFF included), or -1. */
static int64_t utf8_invalid_at(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    int len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1Fu, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0Fu, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07u, min = 0x10000;
    else return (int64_t)i;
    if ((size_t)len > n - i) return (int64_t)i;
    for (int k = 1; k < len; k++) {
      if ((s[i + (size_t)k] & 0xC0) != 0x80) return (int64_t)i;
      cp = cp << 6 | (s[i + (size_t)k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (int64_t)i;
    i += (size_t)len;
  }
  return -1;
}

/* Line number (1-based) of byte offset off in buf. */
static int64_t line_of(const uint8_t *buf, size_t off) {
  int64_t line = 1;
  for (size_t i = 0; i < off; i++) line += buf[i] == '\n';
  return line;
}

static strop_status check_utf8(const char *path, const uint8_t *buf, size_t n) {
  int64_t bad = utf8_invalid_at(buf, n);
  if (bad < 0) return STROP_OK;
  size_t ls = (size_t)bad;
  while (ls > 0 && buf[ls - 1] != '\n') ls--;
  return strop__err(STROP_E_FORMAT,
                    "%s: %s:%lld: invalid UTF-8 (byte 0x%02X at byte %lld of "
                    "the line): texts must be UTF-8, invalid bytes are refused, not replaced",
                    FN, path, (long long)line_of(buf, (size_t)bad), (unsigned)buf[bad],
                    (long long)((size_t)bad - ls + 1));
}

/* ------------------------------------------------------------------ JSON Lines ---- */

/* Copies field `name` of object o (a string; for the label also an integer >= 0). */
static strop_status json_field(const char *path, int64_t line, json_t *o, const char *name,
                               int is_label, char **out) {
  json_t *v = json_object_get(o, name);
  if (!v) {
    const char *key;
    json_t *val;
    char have[160];
    size_t hn = 0;
    have[0] = '\0';
    json_object_foreach(o, key, val) {
      (void)val;
      int w = snprintf(have + hn, sizeof have - hn, "%s\"%s\"", hn ? ", " : "", key);
      if (w < 0 || (size_t)w >= sizeof have - hn) break;
      hn += (size_t)w;
    }
    return strop__err(STROP_E_FORMAT, "%s: %s:%lld: no field \"%s\" (the object has %s)", FN,
                      path, (long long)line, name, hn ? have : "no fields");
  }
  if (json_is_string(v)) {
    *out = dup_n(json_string_value(v), json_string_length(v));
    return *out ? STROP_OK : STROP__NOMEM(FN);
  }
  if (is_label && json_is_integer(v) && json_integer_value(v) >= 0) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v));
    *out = dup_n(b, strlen(b));
    return *out ? STROP_OK : STROP__NOMEM(FN);
  }
  return strop__err(STROP_E_FORMAT, "%s: %s:%lld: field \"%s\" must be %s", FN, path,
                    (long long)line, name, is_label ? "a string or an integer >= 0" : "a string");
}

static strop_status read_jsonl(const char *path, const char *buf, size_t n,
                               const char *const names[NFIELDS], records *rs) {
  int64_t line = 0;
  size_t pos = 0;
  record rec;
  memset(&rec, 0, sizeof rec);
  while (pos < n) {
    const char *nl = memchr(buf + pos, '\n', n - pos);
    size_t end = nl ? (size_t)(nl - buf) : n;
    line++;
    size_t a = pos, b = end;
    pos = nl ? end + 1 : n;
    while (a < b && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r')) a++;
    while (b > a && (buf[b - 1] == ' ' || buf[b - 1] == '\t' || buf[b - 1] == '\r')) b--;
    if (a == b) continue;
    json_error_t err;
    json_t *o = json_loadb(buf + a, b - a, JSON_REJECT_DUPLICATES, &err);
    if (!o)
      return strop__err(STROP_E_FORMAT, "%s: %s:%lld:%d: not valid JSON: %s", FN, path,
                        (long long)line, err.column, err.text);
    strop_status st = STROP_OK;
    if (!json_is_object(o))
      st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: expected a JSON object, found %s", FN, path,
                      (long long)line, json_is_array(o) ? "an array" : "a value");
    for (int k = 0; k < NFIELDS && !st; k++)
      if (names[k]) st = json_field(path, line, o, names[k], k == F_LABEL, &rec.f[k]);
    json_decref(o);
    rec.line = line;
    if (!st) st = records_push(rs, &rec);
    if (st) {
      for (int k = 0; k < NFIELDS; k++) strop__free(rec.f[k]);
      return st;
    }
  }
  return STROP_OK;
}

/* ------------------------------------------------------------------ CSV ---- */

typedef struct csv_row {
  char **v;
  int64_t n, cap;
} csv_row;

static void row_clear(csv_row *r) {
  for (int64_t i = 0; i < r->n; i++) strop__free(r->v[i]);
  r->n = 0;
}

static strop_status row_add(csv_row *r, char *field) {
  if (!field) return STROP__NOMEM(FN);
  if (r->n == r->cap) {
    int64_t nc = r->cap ? r->cap * 2 : 8;
    char **nv = strop__realloc(r->v, (size_t)nc * sizeof *nv);
    if (!nv) {
      strop__free(field);
      return STROP__NOMEM(FN);
    }
    r->v = nv;
    r->cap = nc;
  }
  r->v[r->n++] = field;
  return STROP_OK;
}

/* Reads the record at *pos into row (fields unquoted); advances *pos and *line. Returns 0 with
 * row->n == 0 at the end of the buffer. */
static strop_status csv_record(const char *path, const char *buf, size_t n, size_t *pos,
                               int64_t *line, csv_row *row) {
  row_clear(row);
  size_t p = *pos;
  if (p >= n) return STROP_OK;
  int64_t start_line = *line;
  char *tmp = NULL;
  size_t tn = 0, tcap = 0;
  for (;;) {
    tn = 0;
    if (p < n && buf[p] == '"') {
      p++;
      for (;;) {
        if (p >= n) {
          strop__free(tmp);
          return strop__err(STROP_E_FORMAT, "%s: %s:%lld: a quoted field is not closed", FN, path,
                            (long long)start_line);
        }
        char c = buf[p++];
        if (c == '"') {
          if (p < n && buf[p] == '"') p++;
          else break;
        }
        if (c == '\n') (*line)++;
        if (tn + 1 >= tcap) {
          size_t nc = tcap ? tcap * 2 : 64;
          char *nt = strop__realloc(tmp, nc);
          if (!nt) {
            strop__free(tmp);
            return STROP__NOMEM(FN);
          }
          tmp = nt;
          tcap = nc;
        }
        tmp[tn++] = c;
      }
      if (p < n && buf[p] != ',' && buf[p] != '\n' && buf[p] != '\r') {
        strop__free(tmp);
        return strop__err(STROP_E_FORMAT,
                          "%s: %s:%lld: '%c' after a closing quote (a quote "
                          "inside a quoted field is written \"\")",
                          FN, path, (long long)*line, buf[p]);
      }
      strop_status st = row_add(row, dup_n(tmp ? tmp : "", tn));
      if (st) {
        strop__free(tmp);
        return st;
      }
    } else {
      size_t a = p;
      while (p < n && buf[p] != ',' && buf[p] != '\n') p++;
      size_t b = p;
      if (b > a && buf[b - 1] == '\r' && (p >= n || buf[p] == '\n')) b--;
      strop_status st = row_add(row, dup_n(buf + a, b - a));
      if (st) {
        strop__free(tmp);
        return st;
      }
    }
    if (p < n && buf[p] == '\r') p++;
    if (p < n && buf[p] == ',') {
      p++;
      continue;
    }
    if (p < n && buf[p] == '\n') {
      p++;
      (*line)++;
    }
    break;
  }
  strop__free(tmp);
  *pos = p;
  return STROP_OK;
}

static strop_status read_csv(const char *path, const char *buf, size_t n,
                             const char *const names[NFIELDS], records *rs) {
  csv_row row = {0};
  size_t pos = 0;
  int64_t line = 1;
  int64_t col[NFIELDS] = {-1, -1, -1}, width = 0;
  strop_status st = csv_record(path, buf, n, &pos, &line, &row);
  if (!st && row.n == 0) st = strop__err(STROP_E_FORMAT, "%s: %s: empty file", FN, path);
  if (!st) {
    width = row.n;
    for (int k = 0; k < NFIELDS && !st; k++) {
      if (!names[k]) continue;
      for (int64_t j = 0; j < row.n; j++)
        if (!strcmp(row.v[j], names[k])) col[k] = j;
      if (col[k] < 0) {
        char have[160];
        size_t hn = 0;
        have[0] = '\0';
        for (int64_t j = 0; j < row.n; j++) {
          int w = snprintf(have + hn, sizeof have - hn, "%s\"%s\"", j ? ", " : "", row.v[j]);
          if (w < 0 || (size_t)w >= sizeof have - hn) break;
          hn += (size_t)w;
        }
        st = strop__err(STROP_E_FORMAT, "%s: %s:1: no column \"%s\" in the header (%s)", FN, path,
                        names[k], have);
      }
    }
  }
  while (!st) {
    int64_t rec_line = line;
    st = csv_record(path, buf, n, &pos, &line, &row);
    if (st || row.n == 0) break;
    if (row.n == 1 && row.v[0][0] == '\0') continue; /* a blank line */
    if (row.n != width) {
      st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: %lld fields, the header has %lld", FN, path,
                      (long long)rec_line, (long long)row.n, (long long)width);
      break;
    }
    record rec;
    memset(&rec, 0, sizeof rec);
    rec.line = rec_line;
    for (int k = 0; k < NFIELDS; k++)
      if (col[k] >= 0) {
        rec.f[k] = row.v[col[k]];
        row.v[col[k]] = NULL;
      }
    st = records_push(rs, &rec);
    if (st)
      for (int k = 0; k < NFIELDS; k++) strop__free(rec.f[k]);
  }
  row_clear(&row);
  strop__free(row.v);
  return st;
}

/* ------------------------------------------------------------------ tokens ---- */

/* Growable id buffer. */
typedef struct ids_buf {
  int64_t *v;
  int64_t *t; /* with_types: the token type of each id (the tokenizer's pair template) */
  int64_t n, cap;
  int with_types;
} ids_buf;

static strop_status ids_reserve(ids_buf *b, int64_t need) {
  if (need <= b->cap) return STROP_OK;
  int64_t nc = b->cap ? b->cap : 256;
  while (nc < need) nc *= 2;
  int64_t *nv = strop__realloc(b->v, (size_t)nc * sizeof *nv);
  if (!nv) return STROP__NOMEM(FN);
  b->v = nv;
  if (b->with_types) {
    int64_t *nt = strop__realloc(b->t, (size_t)nc * sizeof *nt);
    if (!nt) return STROP__NOMEM(FN);
    b->t = nt;
  }
  b->cap = nc;
  return STROP_OK;
}

/* Encodes text (and pair) into b->v[0..b->n). */
static strop_status encode(strop_tokenizer *tok, const char *text, const char *pair,
                           const strop_encode_options *eo, ids_buf *b) {
  const char *texts[1] = {text}, *pairs[1] = {pair};
  int64_t width = 0;
  for (;;) {
    strop_status st = strop_tokenizer_encode_batch(tok, texts, pair ? pairs : NULL, 1, eo, b->v,
                                                   b->with_types ? b->t : NULL, NULL, NULL,
                                                   b->cap, &width);
    if (st) return st;
    if (width <= b->cap) break;
    if ((st = ids_reserve(b, width))) return st;
  }
  b->n = width;
  return STROP_OK;
}

/* The slots of the dataset under construction: n samples of L ids, masks, token types (text
 * pairs) and targets. */
typedef struct slots {
  int64_t L, n, cap;
  int lm;
  int pairs; /* 1: types holds each position's token type (0 at padding) */
  int32_t *tok, *tgt;
  float *mask, *y, *types;
} slots;

static void slots_free(slots *s) {
  strop__free(s->tok);
  strop__free(s->tgt);
  strop__free(s->mask);
  strop__free(s->y);
  strop__free(s->types);
}

/* A new slot (zeroed mask, ignore targets, pad ids); its index in *idx. */
static strop_status slot_new(slots *s, int32_t pad, int64_t *idx) {
  if (s->n == s->cap) {
    int64_t nc = s->cap ? s->cap * 2 : 64;
    size_t per = (size_t)s->L;
    int32_t *nt = strop__realloc(s->tok, (size_t)nc * per * sizeof *nt);
    if (!nt) return STROP__NOMEM(FN);
    s->tok = nt;
    float *nm = strop__realloc(s->mask, (size_t)nc * per * sizeof *nm);
    if (!nm) return STROP__NOMEM(FN);
    s->mask = nm;
    if (s->pairs) {
      float *nk = strop__realloc(s->types, (size_t)nc * per * sizeof *nk);
      if (!nk) return STROP__NOMEM(FN);
      s->types = nk;
    }
    if (s->lm) {
      int32_t *ng = strop__realloc(s->tgt, (size_t)nc * per * sizeof *ng);
      if (!ng) return STROP__NOMEM(FN);
      s->tgt = ng;
    } else {
      float *ny = strop__realloc(s->y, (size_t)nc * sizeof *ny);
      if (!ny) return STROP__NOMEM(FN);
      s->y = ny;
    }
    s->cap = nc;
  }
  int64_t i = s->n++;
  for (int64_t k = 0; k < s->L; k++) {
    s->tok[i * s->L + k] = pad;
    s->mask[i * s->L + k] = 0.0f;
    if (s->pairs) s->types[i * s->L + k] = 0.0f;
    if (s->lm) s->tgt[i * s->L + k] = IGNORE_ID;
  }
  *idx = i;
  return STROP_OK;
}

/* Fills an LM slot from seq[0..m) (m >= 2, m <= L + 1): inputs seq[0..m-1), targets
 * seq[1..m), the first `masked` targets ignored. */
static strop_status lm_slot(slots *s, int32_t pad, const int64_t *seq, int64_t m,
                            int64_t masked) {
  int64_t i;
  strop_status st = slot_new(s, pad, &i);
  if (st) return st;
  for (int64_t k = 0; k + 1 < m; k++) {
    s->tok[i * s->L + k] = (int32_t)seq[k];
    s->mask[i * s->L + k] = 1.0f;
    s->tgt[i * s->L + k] = k + 1 < masked ? IGNORE_ID : (int32_t)seq[k + 1];
  }
  return STROP_OK;
}

/* Replaces every "{prompt}" of tmpl with prompt; *out malloc'd. */
static strop_status apply_template(const char *tmpl, const char *prompt, char **out) {
  static const char key[] = "{prompt}";
  size_t kl = sizeof key - 1, pl = strlen(prompt), n = 0;
  for (const char *p = tmpl; (p = strstr(p, key)) != NULL; p += kl) n++;
  size_t len = strlen(tmpl) + n * pl - n * kl;
  char *o = strop__malloc(len + 1), *w = o;
  if (!o) return STROP__NOMEM(FN);
  for (const char *p = tmpl;;) {
    const char *q = strstr(p, key);
    size_t seg = q ? (size_t)(q - p) : strlen(p);
    memcpy(w, p, seg);
    w += seg;
    if (!q) break;
    memcpy(w, prompt, pl);
    w += pl;
    p = q + kl;
  }
  *w = '\0';
  *out = o;
  return STROP_OK;
}

/* The chat template's render of [user: prompt] (with the generation prompt) or, with a
 * response, of [user: prompt, assistant: response]; *out strop__malloc'd. */
static strop_status chat_render(const strop_tokenizer *tok, const char *tmpl, const char *prompt,
                                const char *response, char **out) {
  const char *roles[2] = {"user", "assistant"}, *texts[2] = {prompt, response};
  int64_t n = response ? 2 : 1;
  size_t need = 0;
  char small[1];
  *out = NULL;
  strop_status st = strop_tokenizer_apply_chat_template(tok, tmpl, roles, texts, n, !response,
                                                        small, sizeof small, &need);
  if (st) return st;
  char *buf = strop__malloc(need + 1);
  if (!buf) return STROP__NOMEM(FN);
  st = strop_tokenizer_apply_chat_template(tok, tmpl, roles, texts, n, !response, buf, need + 1,
                                           &need);
  if (st) {
    strop__free(buf);
    return st;
  }
  *out = buf;
  return STROP_OK;
}

static int is_index(const char *s) {
  if (!*s || strlen(s) > 8) return 0;
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9') return 0;
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The labels of the records: integers, or strings numbered in byte order (names in *names). */
static strop_status make_labels(const char *path, const records *rs, int64_t want_classes,
                                float *y, int64_t *classes, char ***names) {
  int numeric = 1;
  for (int64_t i = 0; i < rs->n && numeric; i++) numeric = is_index(rs->r[i].f[F_LABEL]);
  *names = NULL;
  if (numeric) {
    int64_t mx = -1;
    for (int64_t i = 0; i < rs->n; i++) {
      int64_t v = atoll(rs->r[i].f[F_LABEL]);
      if (want_classes > 0 && v >= want_classes)
        return strop__err(STROP_E_FORMAT, "%s: %s:%lld: label %lld is not a class in [0, %lld)",
                          FN, path, (long long)rs->r[i].line, (long long)v,
                          (long long)want_classes);
      y[i] = (float)v;
      if (v > mx) mx = v;
    }
    *classes = want_classes > 0 ? want_classes : mx + 1;
    return STROP_OK;
  }
  if (want_classes > 0)
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: num_classes %lld is given but the labels are "
                      "names (e.g. \"%.40s\"), not class indices",
                      FN, path, (long long)want_classes, rs->r[0].f[F_LABEL]);
  char **sorted = strop__malloc((size_t)rs->n * sizeof *sorted);
  if (!sorted) return STROP__NOMEM(FN);
  for (int64_t i = 0; i < rs->n; i++) sorted[i] = rs->r[i].f[F_LABEL];
  qsort(sorted, (size_t)rs->n, sizeof *sorted, cmp_str);
  int64_t C = 0;
  for (int64_t i = 0; i < rs->n; i++)
    if (!C || strcmp(sorted[i], sorted[C - 1])) sorted[C++] = sorted[i];
  if (C > STROP__MAX_CLASSES) {
    strop__free(sorted);
    return strop__err(STROP_E_FORMAT, "%s: %s: %lld distinct labels, more than 2^24", FN, path,
                      (long long)C);
  }
  char **nm = strop__calloc((size_t)C, sizeof *nm);
  strop_status st = nm ? STROP_OK : STROP__NOMEM(FN);
  for (int64_t c = 0; c < C && !st; c++)
    if (!(nm[c] = dup_n(sorted[c], strlen(sorted[c])))) st = STROP__NOMEM(FN);
  for (int64_t i = 0; i < rs->n && !st; i++) {
    char *const *hit = bsearch(&rs->r[i].f[F_LABEL], sorted, (size_t)C, sizeof *sorted, cmp_str);
    y[i] = (float)(hit - sorted);
  }
  strop__free(sorted);
  if (st) {
    if (nm)
      for (int64_t c = 0; c < C; c++) strop__free(nm[c]);
    strop__free(nm);
    return st;
  }
  *names = nm;
  *classes = C;
  return STROP_OK;
}

static strop_status too_long(const char *path, int64_t line, const char *what, int64_t have,
                             int64_t limit) {
  return strop__err(STROP_E_FORMAT,
                    "%s: %s:%lld: %s has %lld tokens, more than %lld "
                    "(max_length; truncate is off)",
                    FN, path, (long long)line, what, (long long)have, (long long)limit);
}

/* ------------------------------------------------------------------ public ---- */

void strop_text_options_init(strop_text_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->format = STROP_TEXT_AUTO;
  opt->task = STROP_TEXT_CLASSIFY;
  opt->max_length = 128;
  opt->truncate = 1;
  opt->padding = STROP_PAD_LONGEST;
  opt->pack = 1;
  opt->stride = 0;
  opt->num_classes = STROP_CLASSES_INFER;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static int format_of(const char *path) {
  char base[512];
  snprintf(base, sizeof base, "%s", path);
  if (ends_with(base, ".gz")) base[strlen(base) - 3] = '\0';
  if (ends_with(base, ".jsonl") || ends_with(base, ".ndjson") || ends_with(base, ".json"))
    return STROP_TEXT_JSONL;
  if (ends_with(base, ".csv")) return STROP_TEXT_CSV;
  return STROP_TEXT_PLAIN;
}

/* The records' samples into s. */
static strop_status build(const char *path, strop_tokenizer *tok, const strop_text_options *o,
                          const records *rs, int32_t pad, slots *s) {
  const int64_t L = s->L;
  strop_encode_options eo;
  strop_encode_options_init(&eo);
  eo.padding = STROP_PAD_NONE;
  ids_buf b = {0}, seq = {0};
  b.with_types = s->pairs;
  strop_status st = STROP_OK;
  int64_t eos = strop_tokenizer_special_id(tok, STROP_ROLE_EOS);
  if (o->task == STROP_TEXT_CLASSIFY) {
    if (o->truncate) {
      eo.max_length = L;
      eo.truncation = STROP_TRUNCATE_LONGEST_FIRST;
    }
    for (int64_t i = 0; i < rs->n && !st; i++) {
      const record *r = &rs->r[i];
      if ((st = encode(tok, r->f[F_TEXT], r->f[F_SECOND], &eo, &b))) {
        strop__err_prefix("%s: %s:%lld", FN, path, (long long)r->line);
        break;
      }
      if (b.n > L) {
        st = too_long(path, r->line, "the text", b.n, L);
        break;
      }
      int64_t k;
      if ((st = slot_new(s, pad, &k))) break;
      for (int64_t j = 0; j < b.n; j++) {
        s->tok[k * L + j] = (int32_t)b.v[j];
        s->mask[k * L + j] = 1.0f;
        if (s->pairs) s->types[k * L + j] = (float)b.t[j];
      }
    }
  } else if (o->task == STROP_TEXT_CAUSAL_LM) {
    for (int64_t i = 0; i < rs->n && !st; i++) {
      const record *r = &rs->r[i];
      if ((st = encode(tok, r->f[F_TEXT], NULL, &eo, &b))) {
        strop__err_prefix("%s: %s:%lld", FN, path, (long long)r->line);
        break;
      }
      if (eos >= 0 && (b.n == 0 || b.v[b.n - 1] != eos)) {
        if ((st = ids_reserve(&b, b.n + 1))) break;
        b.v[b.n++] = eos;
      }
      if (o->pack) {
        if ((st = ids_reserve(&seq, seq.n + b.n))) break;
        memcpy(seq.v + seq.n, b.v, (size_t)b.n * sizeof *b.v);
        seq.n += b.n;
        continue;
      }
      if (b.n > L + 1 && !o->truncate) {
        st = too_long(path, r->line, "the text", b.n, L + 1);
        break;
      }
      if (b.n < 2) {
        st = strop__err(STROP_E_FORMAT,
                        "%s: %s:%lld: the text gives %lld token: a causal-LM "
                        "sample needs at least 2",
                        FN, path, (long long)r->line, (long long)b.n);
        break;
      }
      st = lm_slot(s, pad, b.v, b.n < L + 1 ? b.n : L + 1, 0);
    }
    if (!st && o->pack) {
      int64_t T = seq.n, S = o->stride > 0 ? o->stride : L;
      if (T < 2)
        st = strop__err(STROP_E_FORMAT,
                        "%s: %s: the texts give %lld token(s): causal-LM "
                        "windows need at least 2",
                        FN, path, (long long)T);
      for (int64_t at = 0; !st; at += S) {
        int64_t m = T - at < L + 1 ? T - at : L + 1;
        st = lm_slot(s, pad, seq.v + at, m, 0);
        if (at + L >= T - 1) break;
      }
    }
  } else {
    eo.add_special_tokens = 1;
    strop_encode_options eo_resp = eo;
    eo_resp.add_special_tokens = 0;
    if (o->chat) eo.add_special_tokens = 0; /* the template writes them */
    for (int64_t i = 0; i < rs->n && !st; i++) {
      const record *r = &rs->r[i];
      char *prompt = NULL, *full = NULL;
      const char *resp = r->f[F_SECOND];
      if (o->chat) {
        if ((st = chat_render(tok, o->chat_template, r->f[F_TEXT], NULL, &prompt)) ||
            (st = chat_render(tok, o->chat_template, r->f[F_TEXT], resp, &full))) {
          strop__err_prefix("%s: %s:%lld", FN, path, (long long)r->line);
          strop__free(prompt);
          break;
        }
        size_t pl = strlen(prompt);
        if (strncmp(full, prompt, pl)) {
          st = strop__err(STROP_E_FORMAT,
                          "%s: %s:%lld: the chat template's render of the prompt and response "
                          "does not start with its render of the prompt alone (with the "
                          "generation prompt), so the response cannot be told apart",
                          FN, path, (long long)r->line);
          strop__free(prompt);
          strop__free(full);
          break;
        }
        resp = full + pl;
      } else if (o->prompt_template &&
                 (st = apply_template(o->prompt_template, r->f[F_TEXT], &prompt))) {
        break;
      }
      st = encode(tok, prompt ? prompt : r->f[F_TEXT], NULL, &eo, &seq);
      strop__free(prompt);
      if (!st && !*resp) {
        st = strop__err(STROP_E_FORMAT, "the chat template renders no response");
      }
      if (!st) st = encode(tok, resp, NULL, &eo_resp, &b);
      strop__free(full);
      if (st) {
        strop__err_prefix("%s: %s:%lld", FN, path, (long long)r->line);
        break;
      }
      int64_t P = seq.n;
      if ((st = ids_reserve(&seq, P + b.n + 1))) break;
      memcpy(seq.v + P, b.v, (size_t)b.n * sizeof *b.v);
      seq.n += b.n;
      if (eos >= 0 && seq.v[seq.n - 1] != eos) seq.v[seq.n++] = eos;
      if (P >= L) {
        st = strop__err(STROP_E_FORMAT,
                        "%s: %s:%lld: the prompt takes %lld tokens, and "
                        "max_length %lld leaves no room for the response",
                        FN, path, (long long)r->line, (long long)P, (long long)L);
        break;
      }
      if (seq.n > L + 1 && !o->truncate) {
        st = too_long(path, r->line, "prompt and response", seq.n - 1, L);
        break;
      }
      st = lm_slot(s, pad, seq.v, seq.n < L + 1 ? seq.n : L + 1, P);
    }
  }
  strop__free(b.v);
  strop__free(b.t);
  strop__free(seq.v);
  return st;
}

static strop_status make_dataset(slots *sp, int64_t classes, char **cnames, int padding,
                                 strop_dataset **out);

/* ------------------------------------------------------------- the cache ---- */
/* A tokenised dataset on disk (docs/text.md, tokenisation cache): a header, the ids, masks,
 * targets (or labels) and class names as this machine lays them out, and a checksum. The file
 * is named after a key of everything that decides its content: the source file's size, mtime
 * and bytes, the tokenizer's fingerprint and the options. */
_Thread_local int64_t strop__textdata_tokenised;

#define CACHE_MAGIC 0x3143585450525453ull /* "STRPTXC1" */
#define CACHE_ENDIAN 0x0102030405060708ull
#define CACHE_VERSION 2u /* 2: token types of text pairs */
enum {
  H_MAGIC,
  H_ENDIAN,
  H_VERSION,
  H_KEY0,
  H_KEY1,
  H_N,
  H_L,
  H_LM,
  H_CLASSES,
  H_NNAMES,
  H_NAMEBYTES,
  H_PADDING,
  H_PAIRS,
  H_COUNT
};

static void kmix_str(uint64_t k[2], const char *s) {
  uint8_t present = s != NULL;
  strop__hash128_mix(k, &present, 1);
  if (s) strop__hash128_mix(k, s, strlen(s));
}

static strop_status cache_key(const char *path, const strop__file *f, const strop_tokenizer *tok,
                              const strop_text_options *o, uint64_t key[2]) {
  struct stat sb;
  if (stat(path, &sb))
    return strop__err(STROP_E_IO, "%s: cannot stat %s: %s", FN, path, strerror(errno));
  uint64_t fp[2];
  strop_status st = strop__tx_fingerprint(tok, fp);
  if (st) return st;
  key[0] = CACHE_VERSION;
  key[1] = ~(uint64_t)CACHE_VERSION;
  int64_t stamp[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec,
                      (int64_t)sb.st_mtim.tv_nsec};
  uint64_t content[2] = {strop__hash64(f->data, f->len, 1), strop__hash64(f->data, f->len, 2)};
  strop__hash128_mix(key, stamp, sizeof stamp);
  strop__hash128_mix(key, content, sizeof content);
  strop__hash128_mix(key, fp, sizeof fp);
  int64_t num[9] = {o->format, o->task,   o->max_length,  o->truncate, o->padding,
                    o->pack,   o->stride, o->num_classes, o->chat};
  strop__hash128_mix(key, num, sizeof num);
  const char *strs[6] = {o->text_field,     o->pair_field,      o->label_field,
                         o->response_field, o->prompt_template, o->chat_template};
  for (int i = 0; i < 6; i++) kmix_str(key, strs[i]);
  return STROP_OK;
}

static char *cache_path(const char *dir, const char *path, const uint64_t key[2]) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(dir) + strlen(base) + 48;
  char *p = strop__malloc(n);
  if (p) snprintf(p, n, "%s/%s.%016llx.tokens", dir, base, (unsigned long long)key[0]);
  return p;
}

/* The dataset in the cache file cp for key, when it is there, whole and valid: 1 (and *out);
 * 0 when it is missing, stale or broken (rebuilt by the caller); -1 on an allocation failure
 * (the status is set). */
static int cache_load(const char *cp, const uint64_t key[2], int64_t vocab, int padding,
                      strop_dataset **out) {
  strop__file f;
  memset(&f, 0, sizeof f);
  if (access(cp, R_OK) || strop__file_read(FN, cp, 1, NULL, &f)) {
    strop_clear_error();
    return 0;
  }
  uint64_t h[H_COUNT];
  slots s;
  memset(&s, 0, sizeof s);
  char **names = NULL;
  int64_t classes = 0, nnames = 0;
  int ok = f.len >= sizeof h + 8;
  if (ok) memcpy(h, f.data, sizeof h);
  ok = ok && h[H_MAGIC] == CACHE_MAGIC && h[H_ENDIAN] == CACHE_ENDIAN &&
       h[H_VERSION] == CACHE_VERSION && h[H_KEY0] == key[0] && h[H_KEY1] == key[1] &&
       h[H_N] >= 1 && h[H_N] <= ((uint64_t)1 << 40) && h[H_L] >= 1 &&
       h[H_L] <= ((uint64_t)1 << 24) && h[H_N] * h[H_L] <= ((uint64_t)1 << 40) && h[H_LM] <= 1 &&
       h[H_CLASSES] >= 1 && h[H_CLASSES] <= (uint64_t)STROP__MAX_CLASSES &&
       (h[H_NNAMES] == 0 || h[H_NNAMES] == h[H_CLASSES]) && h[H_NAMEBYTES] <= f.len &&
       h[H_PADDING] == (uint64_t)padding && h[H_PAIRS] <= 1 && !(h[H_PAIRS] && h[H_LM]);
  size_t nl = 0, per_tgt = 0, nk = 0;
  if (ok) {
    nl = (size_t)(h[H_N] * h[H_L]);
    per_tgt = h[H_LM] ? nl * 4 : (size_t)h[H_N] * 4;
    nk = h[H_PAIRS] ? nl * 4 : 0; /* the token types' bytes */
    ok = f.len == sizeof h + nl * 8 + nk + per_tgt + h[H_NAMEBYTES] + 8;
  }
  const uint8_t *p = f.data + sizeof h;
  if (ok) { /* the checksum of the sections, in the order they were written */
    uint64_t c = strop__hash64(f.data, sizeof h, 7);
    c = strop__hash64(p, nl * 4, c);
    c = strop__hash64(p + nl * 4, nl * 4, c);
    if (nk) c = strop__hash64(p + nl * 8, nk, c);
    c = strop__hash64(p + nl * 8 + nk, per_tgt, c);
    c = strop__hash64(p + nl * 8 + nk + per_tgt, (size_t)h[H_NAMEBYTES], c);
    uint64_t want;
    memcpy(&want, f.data + f.len - 8, 8);
    ok = c == want;
  }
  int rc = 0;
  if (!ok) goto done;
  s.n = (int64_t)h[H_N];
  s.L = (int64_t)h[H_L];
  s.lm = (int)h[H_LM];
  s.pairs = (int)h[H_PAIRS];
  classes = (int64_t)h[H_CLASSES];
  nnames = (int64_t)h[H_NNAMES];
  s.tok = strop__malloc(nl * sizeof *s.tok);
  s.mask = strop__malloc(nl * sizeof *s.mask);
  if (s.pairs) s.types = strop__malloc(nl * sizeof *s.types);
  if (s.lm) s.tgt = strop__malloc(nl * sizeof *s.tgt);
  else s.y = strop__malloc((size_t)s.n * sizeof *s.y);
  if (nnames) names = strop__calloc((size_t)nnames, sizeof *names);
  if (!s.tok || !s.mask || (s.pairs && !s.types) || (s.lm ? !s.tgt : !s.y) ||
      (nnames && !names)) {
    rc = -1;
    goto done;
  }
  memcpy(s.tok, p, nl * 4);
  memcpy(s.mask, p + nl * 4, nl * 4);
  if (nk) memcpy(s.types, p + nl * 8, nk);
  memcpy(s.lm ? (void *)s.tgt : (void *)s.y, p + nl * 8 + nk, per_tgt);
  /* values as a build makes them: a broken file never gives wrong data */
  for (size_t e = 0; e < nl && ok; e++) {
    ok = s.tok[e] >= 0 && s.tok[e] < vocab && (s.mask[e] == 0.0f || s.mask[e] == 1.0f);
    if (ok && s.lm) ok = s.tgt[e] == IGNORE_ID || (s.tgt[e] >= 0 && s.tgt[e] < vocab);
    if (ok && s.pairs)
      ok = s.types[e] >= 0.0f && s.types[e] < 16777216.0f && s.types[e] == floorf(s.types[e]) &&
           (s.mask[e] != 0.0f || s.types[e] == 0.0f);
  }
  for (int64_t i = 0; i < s.n && ok && !s.lm; i++)
    ok = s.y[i] >= 0.0f && s.y[i] < (float)classes && s.y[i] == (float)(int64_t)s.y[i];
  const uint8_t *q = p + nl * 8 + nk + per_tgt, *end = q + h[H_NAMEBYTES];
  for (int64_t c = 0; c < nnames && ok; c++) {
    uint32_t len;
    ok = end - q >= 4;
    if (ok) memcpy(&len, q, 4);
    ok = ok && (size_t)(end - q - 4) >= len;
    if (ok && !(names[c] = dup_n((const char *)q + 4, len))) {
      rc = -1;
      goto done;
    }
    q += 4 + (ok ? len : 0);
  }
  ok = ok && q == end;
  if (!ok) goto done;
  s.cap = s.n;
  rc = make_dataset(&s, classes, names, padding, out) ? -1 : 1;
  memset(&s, 0, sizeof s); /* taken over (or freed) */
  names = NULL;
done:
  if (names)
    for (int64_t c = 0; c < nnames; c++) strop__free(names[c]);
  strop__free(names);
  slots_free(&s);
  strop__file_close(&f);
  if (rc < 0 && strop_last_error()[0] == '\0') STROP__NOMEM(FN);
  return rc;
}

/* Writes ds (just built) to the cache file cp, atomically. */
static strop_status cache_save(const char *cp, const uint64_t key[2], const strop_dataset *ds,
                               int padding) {
  const int64_t n = ds->n, L = ds->seq_len, classes = ds->num_classes;
  const size_t nl = (size_t)(n * L), per_tgt = ds->lm ? nl * 4 : (size_t)n * 4;
  size_t nb = 0;
  int64_t nnames = ds->class_names ? classes : 0;
  for (int64_t c = 0; c < nnames; c++) nb += 4 + strlen(ds->class_names[c]);
  uint8_t *blob = strop__malloc(nb ? nb : 1);
  if (!blob) return STROP__NOMEM(FN);
  uint8_t *w = blob;
  for (int64_t c = 0; c < nnames; c++) {
    uint32_t len = (uint32_t)strlen(ds->class_names[c]);
    memcpy(w, &len, 4);
    memcpy(w + 4, ds->class_names[c], len);
    w += 4 + len;
  }
  uint64_t h[H_COUNT] = {CACHE_MAGIC,
                         CACHE_ENDIAN,
                         CACHE_VERSION,
                         key[0],
                         key[1],
                         (uint64_t)n,
                         (uint64_t)L,
                         (uint64_t)ds->lm,
                         (uint64_t)classes,
                         (uint64_t)nnames,
                         nb,
                         (uint64_t)padding,
                         (uint64_t)(ds->types != NULL)};
  const size_t nk = ds->types ? nl * 4 : 0;
  const void *tgt = ds->lm ? (const void *)ds->lm_targets : (const void *)ds->y;
  uint64_t c = strop__hash64(h, sizeof h, 7);
  c = strop__hash64(ds->tokens, nl * 4, c);
  c = strop__hash64(ds->mask, nl * 4, c);
  if (nk) c = strop__hash64(ds->types, nk, c);
  c = strop__hash64(tgt, per_tgt, c);
  c = strop__hash64(blob, nb, c);
  strop__afile af;
  strop_status st = strop__afile_open(&af, FN, cp);
  if (!st) st = strop__afile_write(&af, h, sizeof h);
  if (!st) st = strop__afile_write(&af, ds->tokens, nl * 4);
  if (!st) st = strop__afile_write(&af, ds->mask, nl * 4);
  if (!st && nk) st = strop__afile_write(&af, ds->types, nk);
  if (!st) st = strop__afile_write(&af, tgt, per_tgt);
  if (!st && nb) st = strop__afile_write(&af, blob, nb);
  if (!st) st = strop__afile_write(&af, &c, 8);
  if (!st) st = strop__afile_commit(&af);
  else strop__afile_abort(&af);
  strop__free(blob);
  return st;
}

/* strop_dataset_load_text_file through the cache folder dir: reused when its key matches,
 * else tokenised and written (a cache that cannot be written is reported as STROP_E_IO). */
static strop_status load_cached(const char *dir, const char *path, const strop__file *f,
                                strop_tokenizer *tok, const strop_text_options *o,
                                strop_dataset **out) {
  uint64_t key[2] = {0, 0};
  strop_status st = cache_key(path, f, tok, o, key);
  if (st) return st;
  if ((st = strop__mkdirs(FN, dir))) return st;
  char *cp = cache_path(dir, path, key);
  if (!cp) return STROP__NOMEM(FN);
  int hit = cache_load(cp, key, strop_tokenizer_vocab_size(tok), o->padding, out);
  if (hit < 0) st = STROP__NOMEM(FN);
  if (hit) {
    strop__free(cp);
    return st;
  }
  st = strop__text_dataset_parse(f->data, f->len, path, tok, o, out);
  if (!st && (st = cache_save(cp, key, *out, o->padding))) {
    strop_dataset_free(*out);
    *out = NULL;
  }
  strop__free(cp);
  return st;
}

strop_status strop_dataset_load_text_file(const char *path, strop_tokenizer *tok,
                                          const strop_text_options *opt, strop_dataset **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", FN);
  *out = NULL;
  if (!path || !tok)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", FN, path ? "tok" : "path");
  strop_text_options o;
  strop_text_options_init(&o);
  if (opt) {
    if (opt->size < offsetof(strop_text_options, format) + sizeof opt->format)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: opt->size %zu is too small (use "
                        "strop_text_options_init())",
                        FN, opt->size);
    memcpy(&o, opt, opt->size < sizeof o ? opt->size : sizeof o);
    o.size = sizeof o;
  }
  if (o.chat < 0 || o.chat > 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: chat must be 0 or 1, got %d", FN, o.chat);
  if (o.chat && o.task != STROP_TEXT_PROMPT_RESPONSE)
    return strop__err(STROP_E_INVALID_ARG, "%s: chat needs the prompt/response task (task is %d)",
                      FN, o.task);
  if (o.format < STROP_TEXT_AUTO || o.format > STROP_TEXT_PLAIN)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown format %d", FN, o.format);
  if (o.task < STROP_TEXT_CLASSIFY || o.task > STROP_TEXT_PROMPT_RESPONSE)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown task %d", FN, o.task);
  if (o.max_length < 1 || o.max_length > ((int64_t)1 << 24))
    return strop__err(STROP_E_INVALID_ARG, "%s: max_length must be in [1, 2^24], got %lld", FN,
                      (long long)o.max_length);
  if (o.stride < 0 || o.stride > o.max_length)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: stride must be in [0, max_length %lld], got "
                      "%lld",
                      FN, (long long)o.max_length, (long long)o.stride);
  if (o.padding != STROP_PAD_LONGEST && o.padding != STROP_PAD_MAX_LENGTH)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: padding must be STROP_PAD_LONGEST or "
                      "STROP_PAD_MAX_LENGTH, got %d",
                      FN, o.padding);
  if (o.num_classes != STROP_CLASSES_INFER &&
      (o.num_classes < 1 || o.num_classes > STROP__MAX_CLASSES))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: num_classes must be -1 or in [1, 2^24], got "
                      "%lld",
                      FN, (long long)o.num_classes);
  int format = o.format == STROP_TEXT_AUTO ? format_of(path) : o.format;
  if (format == STROP_TEXT_PLAIN && o.task != STROP_TEXT_CAUSAL_LM)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: %s is read as plain text, which has no fields: "
                      "only the causal-LM task reads it (JSON Lines and CSV files end in .jsonl "
                      "and .csv, or set the format)",
                      FN, path);
  int64_t V = strop_tokenizer_vocab_size(tok);
  if (o.task != STROP_TEXT_CLASSIFY && (V < 1 || V > STROP__MAX_CLASSES))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the tokenizer's %lld ids are not a vocabulary "
                      "of 1 .. 2^24",
                      FN, (long long)V);
  o.format = format;
  strop__file f;
  strop_status st = strop__file_read(FN, path, 1, NULL, &f);
  if (st) return st;
  if (o.cache_dir && o.cache_dir[0]) st = load_cached(o.cache_dir, path, &f, tok, &o, out);
  else st = strop__text_dataset_parse(f.data, f.len, path, tok, &o, out);
  strop__file_close(&f);
  return st;
}

/* The dataset of filled slots (taken over, freed on error) with its classes and names. */
static strop_status make_dataset(slots *sp, int64_t classes, char **cnames, int padding,
                                 strop_dataset **out) {
  slots s = *sp;
  strop_status st = STROP_OK;
  strop_dataset *ds = NULL;
  int64_t dims[1] = {s.L};
  st = strop__ds_new_root(FN, STROP__DS_TOKENS, s.n, 1, dims, s.lm ? 1 : 0, s.lm ? dims : NULL,
                          classes, &ds);
  if (st) {
    if (cnames)
      for (int64_t c = 0; c < classes; c++) strop__free(cnames[c]);
    strop__free(cnames);
    slots_free(&s);
    return st;
  }
  ds->starts = strop__malloc((size_t)s.n * sizeof *ds->starts);
  if (!ds->starts) {
    if (cnames)
      for (int64_t c = 0; c < classes; c++) strop__free(cnames[c]);
    strop__free(cnames);
    slots_free(&s);
    strop_dataset_free(ds);
    return STROP__NOMEM(FN);
  }
  for (int64_t i = 0; i < s.n; i++) ds->starts[i] = i * s.L;
  ds->tokens = s.tok;
  ds->ntokens = s.n * s.L;
  ds->seq_len = s.L;
  ds->mask = s.mask;
  ds->mask_len = s.L;
  ds->types = s.types;
  ds->types_len = s.types ? s.L : 0;
  ds->trim = padding == STROP_PAD_LONGEST;
  ds->class_names = cnames;
  if (s.lm) {
    ds->lm = 1;
    ds->lm_targets = s.tgt;
  } else {
    ds->y = ds->y_owned = s.y;
  }
  *out = ds;
  return STROP_OK;
}

strop_status strop__text_dataset_parse(const uint8_t *data, size_t len, const char *path,
                                       strop_tokenizer *tok, const strop_text_options *opt,
                                       strop_dataset **out) {
  strop_text_options o = *opt;
  int format = o.format;
  int64_t V = strop_tokenizer_vocab_size(tok);
  const char *names[NFIELDS] = {NULL, NULL, NULL};
  names[F_TEXT] = o.text_field                           ? o.text_field
                  : o.task == STROP_TEXT_PROMPT_RESPONSE ? "prompt"
                                                         : "text";
  if (o.task == STROP_TEXT_CLASSIFY) {
    names[F_SECOND] = o.pair_field;
    names[F_LABEL] = o.label_field ? o.label_field : "label";
  } else if (o.task == STROP_TEXT_PROMPT_RESPONSE) {
    names[F_SECOND] = o.response_field ? o.response_field : "response";
  }
  records rs = {0};
  strop_status st = check_utf8(path, data, len);
  if (!st) {
    if (format == STROP_TEXT_JSONL) {
      st = read_jsonl(path, (const char *)data, len, names, &rs);
    } else if (format == STROP_TEXT_CSV) {
      st = read_csv(path, (const char *)data, len, names, &rs);
    } else {
      record rec;
      memset(&rec, 0, sizeof rec);
      rec.line = 1;
      rec.f[F_TEXT] = dup_n((const char *)data, len);
      st = rec.f[F_TEXT] ? records_push(&rs, &rec) : STROP__NOMEM(FN);
      if (st) strop__free(rec.f[F_TEXT]);
    }
  }
  if (!st && rs.n == 0) st = strop__err(STROP_E_FORMAT, "%s: %s: no records", FN, path);
  for (int64_t i = 0; i < rs.n && !st; i++) {
    const record *r = &rs.r[i];
    for (int k = 0; k < F_LABEL && !st; k++)
      if (names[k] && r->f[k][0] == '\0')
        st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: the %s \"%s\" is empty", FN, path,
                        (long long)r->line, format == STROP_TEXT_CSV ? "column" : "field",
                        names[k]);
      else if (names[k] && strlen(r->f[k]) >= ((size_t)1 << 31))
        st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: the text is 2 GiB or longer", FN, path,
                        (long long)r->line);
  }
  if (st) {
    records_free(&rs);
    return st;
  }

  slots s;
  memset(&s, 0, sizeof s);
  s.L = o.max_length;
  s.lm = o.task != STROP_TEXT_CLASSIFY;
  s.pairs = o.task == STROP_TEXT_CLASSIFY && o.pair_field != NULL;
  int64_t padid = strop_tokenizer_special_id(tok, STROP_ROLE_PAD);
  int32_t pad = padid >= 0 && padid < INT32_MAX ? (int32_t)padid : 0;
  st = build(path, tok, &o, &rs, pad, &s);
  int64_t classes = V;
  char **cnames = NULL;
  if (!st && !s.lm) st = make_labels(path, &rs, o.num_classes, s.y, &classes, &cnames);
  records_free(&rs);
  if (st) {
    slots_free(&s);
    return st;
  }
  strop__textdata_tokenised++;
  return make_dataset(&s, classes, cnames, o.padding, out);
}
