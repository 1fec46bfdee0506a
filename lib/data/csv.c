/* SPDX-License-Identifier: MIT */
/* strop — CSV tables from memory (numeric features + one label column) and the file loader
 * (plain or gzip). Every rejection names the file, the line and the column. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"

void strop_csv_options_init(strop_csv_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->delimiter = ',';
  opt->label_column = -1;
  opt->label_mode = STROP_CSV_LABEL_INDEX;
  opt->num_classes = STROP_CLASSES_INFER;
}

typedef struct field {
  const char *p;
  size_t len;
  int quoted;
} field;

typedef struct parser {
  const char *name;
  const char *buf, *end, *cur;
  int64_t line; /* 1-based number of the line last read */
  int delim;
  field *f;
  size_t nf, capf;
  char *tmp; /* unquoted text of one field */
  size_t captmp;
} parser;

/* Next line into [*ls, *le), without the line end; 0 at the end of the buffer. */
static int next_line(parser *ps, const char **ls, const char **le) {
  if (ps->cur >= ps->end) return 0;
  const char *s = ps->cur;
  const char *nl = memchr(s, '\n', (size_t)(ps->end - s));
  const char *e = nl ? nl : ps->end;
  ps->cur = nl ? nl + 1 : ps->end;
  if (e > s && e[-1] == '\r') e--;
  ps->line++;
  *ls = s;
  *le = e;
  return 1;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int blank_line(const char *s, const char *e) {
  for (; s < e; s++)
    if (!is_blank(*s)) return 0;
  return 1;
}

static strop_status push_field(parser *ps, const char *p, size_t len, int quoted) {
  if (ps->nf == ps->capf) {
    size_t nc = ps->capf ? ps->capf * 2 : 64;
    field *nf = strop__realloc(ps->f, nc * sizeof *nf);
    if (!nf) return strop__err(STROP_E_NOMEM, "%s: out of memory", ps->name);
    ps->f = nf;
    ps->capf = nc;
  }
  ps->f[ps->nf].p = p;
  ps->f[ps->nf].len = len;
  ps->f[ps->nf].quoted = quoted;
  ps->nf++;
  return STROP_OK;
}

/* Splits [s, e) into fields (trimmed; quotes kept in the span, marked quoted). */
static strop_status split(parser *ps, const char *s, const char *e) {
  ps->nf = 0;
  if (ps->delim == ' ') {
    while (s < e) {
      while (s < e && is_blank(*s)) s++;
      if (s >= e) break;
      const char *b = s;
      while (s < e && !is_blank(*s)) s++;
      strop_status st = push_field(ps, b, (size_t)(s - b), 0);
      if (st) return st;
    }
    return STROP_OK;
  }
  for (;;) {
    while (s < e && is_blank(*s)) s++;
    const char *b = s;
    int quoted = 0;
    if (s < e && *s == '"') {
      quoted = 1;
      s++;
      for (;;) {
        if (s >= e)
          return strop__err(STROP_E_FORMAT, "%s:%lld: column %zu: unterminated quoted field",
                            ps->name, (long long)ps->line, ps->nf + 1);
        if (*s == '"') {
          if (s + 1 < e && s[1] == '"') {
            s += 2;
            continue;
          }
          s++;
          break;
        }
        s++;
      }
      const char *q = s;
      while (q < e && is_blank(*q)) q++;
      if (q < e && *q != (char)ps->delim)
        return strop__err(STROP_E_FORMAT, "%s:%lld: column %zu: text after a closing quote",
                          ps->name, (long long)ps->line, ps->nf + 1);
    } else {
      while (s < e && *s != (char)ps->delim) s++;
    }
    const char *fe = s;
    while (fe > b && is_blank(fe[-1])) fe--;
    strop_status st = push_field(ps, b, (size_t)(fe - b), quoted);
    if (st) return st;
    while (s < e && *s != (char)ps->delim) s++;
    if (s >= e) break;
    s++; /* the delimiter: a field follows, maybe empty */
  }
  return STROP_OK;
}

/* The text of field k without quotes, NUL-terminated, in ps->tmp. */
static strop_status field_text(parser *ps, size_t k, const char **out, size_t *len) {
  const field *f = &ps->f[k];
  if (f->len + 1 > ps->captmp) {
    size_t nc = f->len + 64;
    char *t = strop__realloc(ps->tmp, nc);
    if (!t) return strop__err(STROP_E_NOMEM, "%s: out of memory", ps->name);
    ps->tmp = t;
    ps->captmp = nc;
  }
  size_t n = 0;
  if (f->quoted) {
    for (size_t i = 1; i + 1 < f->len; i++) {
      ps->tmp[n++] = f->p[i];
      if (f->p[i] == '"') i++; /* "" -> " */
    }
  } else {
    memcpy(ps->tmp, f->p, f->len);
    n = f->len;
  }
  ps->tmp[n] = '\0';
  *out = ps->tmp;
  *len = n;
  return STROP_OK;
}

/* Prints at most 40 bytes of a field for messages (non-printable bytes as '?'). */
static void shown(const char *s, size_t n, char out[48]) {
  size_t m = n < 40 ? n : 40, k = 0;
  for (size_t i = 0; i < m; i++) out[k++] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
  if (n > m) {
    out[k++] = '.';
    out[k++] = '.';
    out[k++] = '.';
  }
  out[k] = '\0';
}

static strop_status field_number(parser *ps, size_t k, double *v) {
  const char *t;
  size_t n;
  strop_status st = field_text(ps, k, &t, &n);
  if (st) return st;
  while (n && is_blank(t[n - 1])) n--;
  while (n && is_blank(*t)) {
    t++;
    n--;
  }
  if (n == 0)
    return strop__err(STROP_E_FORMAT, "%s:%lld: column %zu: empty (missing) value", ps->name,
                      (long long)ps->line, k + 1);
  char num[64], sh[48];
  char *endp = NULL;
  double d = 0;
  if (n < sizeof num) {
    memcpy(num, t, n);
    num[n] = '\0';
    d = strtod(num, &endp);
  }
  if (n >= sizeof num || endp != num + n) {
    shown(t, n, sh);
    return strop__err(STROP_E_FORMAT, "%s:%lld: column %zu: non-numeric value '%s'", ps->name,
                      (long long)ps->line, k + 1, sh);
  }
  if (!isfinite(d) || fabs(d) > 3.4e38) {
    shown(t, n, sh);
    return strop__err(STROP_E_FORMAT, "%s:%lld: column %zu: non-finite value '%s'", ps->name,
                      (long long)ps->line, k + 1, sh);
  }
  *v = d;
  return STROP_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void strop__csv_table_free(strop__csv_table *t) {
  if (!t) return;
  strop__free(t->x);
  strop__free(t->y);
  if (t->class_names)
    for (int64_t i = 0; i < t->num_classes; i++) strop__free(t->class_names[i]);
  strop__free(t->class_names);
  memset(t, 0, sizeof *t);
}

/* Growable list of strings. */
typedef struct strlist {
  char **s;
  int64_t n, cap;
} strlist;

static void strlist_free(strlist *l) {
  for (int64_t i = 0; i < l->n; i++) strop__free(l->s[i]);
  strop__free(l->s);
  memset(l, 0, sizeof *l);
}

static int strlist_add(strlist *l, const char *s, size_t len) {
  if (l->n == l->cap) {
    int64_t nc = l->cap ? l->cap * 2 : 8;
    char **ns = strop__realloc(l->s, (size_t)nc * sizeof *ns);
    if (!ns) return -1;
    l->s = ns;
    l->cap = nc;
  }
  char *d = strop__malloc(len + 1);
  if (!d) return -1;
  memcpy(d, s, len);
  d[len] = '\0';
  l->s[l->n++] = d;
  return 0;
}

static int64_t strlist_find(const strlist *l, const char *s) {
  for (int64_t i = 0; i < l->n; i++)
    if (strcmp(l->s[i], s) == 0) return i;
  return -1;
}

strop_status strop__csv_parse(const char *buf, size_t len, const char *name,
                              const strop_csv_options *opt_in, strop__csv_table *out) {
  memset(out, 0, sizeof *out);
  strop_csv_options opt;
  strop_csv_options_init(&opt);
  strop_status st0 = strop__options_in(name, "strop_csv_options_init", &opt, sizeof opt, opt_in);
  if (st0) return st0;
  if (opt.delimiter <= 0 || opt.delimiter > 127 || opt.delimiter == '"' ||
      opt.delimiter == '\n' || opt.delimiter == '\r')
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: delimiter must be an ASCII byte other than a "
                      "quote or line end, got %d",
                      name, opt.delimiter);
  if (opt.label_mode < STROP_CSV_LABEL_INDEX || opt.label_mode > STROP_CSV_LABEL_REGRESSION)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown label_mode %d", name, opt.label_mode);
  if (opt.skip_lines < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: skip_lines must be >= 0, got %lld", name,
                      (long long)opt.skip_lines);
  if (opt.label_name && !opt.header)
    return strop__err(STROP_E_INVALID_ARG, "%s: label_name '%.64s' needs header = 1", name,
                      opt.label_name);
  if (opt.label_mode == STROP_CSV_LABEL_INDEX &&
      (opt.num_classes < STROP_CLASSES_INFER || opt.num_classes > STROP__MAX_CLASSES))
    return strop__err(STROP_E_INVALID_ARG, "%s: num_classes must be in [-1, 2^24], got %lld",
                      name, (long long)opt.num_classes);

  parser ps = {.name = name, .buf = buf, .end = buf + len, .cur = buf, .delim = opt.delimiter};
  strlist labels = {0}, sk_names = {0};
  float *x = NULL, *y = NULL;
  size_t capx = 0, capy = 0;
  int64_t rows = 0, ncols = -1, features = 0, label_col = -1;
  int64_t sk_samples = -1, sk_features = -1, sk_line = 0;
  strop_status st = STROP_OK;
  const char *ls, *le;
  char sh[48];

  for (int64_t i = 0; i < opt.skip_lines; i++)
    if (!next_line(&ps, &ls, &le)) break;

  if (opt.sklearn_header) {
    do {
      if (!next_line(&ps, &ls, &le)) break;
    } while (blank_line(ls, le));
    sk_line = ps.line;
    if (ps.line == 0 || blank_line(ls, le)) {
      st = strop__err(STROP_E_FORMAT, "%s: no sklearn header line", name);
      goto fail;
    }
    if ((st = split(&ps, ls, le))) goto fail;
    double a, b;
    if (ps.nf < 2) {
      st = strop__err(STROP_E_FORMAT, "%s:%lld: sklearn header needs n_samples,n_features,names",
                      name, (long long)ps.line);
      goto fail;
    }
    if ((st = field_number(&ps, 0, &a)) || (st = field_number(&ps, 1, &b))) goto fail;
    if (a < 1 || b < 1 || a != floor(a) || b != floor(b) || a > 1e12 || b > 1e9) {
      st = strop__err(STROP_E_FORMAT,
                      "%s:%lld: sklearn header counts must be positive integers, "
                      "got %g and %g",
                      name, (long long)ps.line, a, b);
      goto fail;
    }
    sk_samples = (int64_t)a;
    sk_features = (int64_t)b;
    for (size_t k = 2; k < ps.nf; k++) {
      const char *t;
      size_t n;
      if ((st = field_text(&ps, k, &t, &n))) goto fail;
      if (strlist_add(&sk_names, t, n)) {
        st = STROP__NOMEM(name);
        goto fail;
      }
    }
  }

  if (opt.header) {
    do {
      if (!next_line(&ps, &ls, &le)) {
        st = strop__err(STROP_E_FORMAT, "%s: no header line", name);
        goto fail;
      }
    } while (blank_line(ls, le));
    if ((st = split(&ps, ls, le))) goto fail;
    ncols = (int64_t)ps.nf;
    if (opt.label_name) {
      for (size_t k = 0; k < ps.nf && label_col < 0; k++) {
        const char *t;
        size_t n;
        if ((st = field_text(&ps, k, &t, &n))) goto fail;
        if (strcmp(t, opt.label_name) == 0) label_col = (int64_t)k;
      }
      if (label_col < 0) {
        st = strop__err(STROP_E_NOT_FOUND, "%s:%lld: no column named '%.64s' in the header", name,
                        (long long)ps.line, opt.label_name);
        goto fail;
      }
    }
  }

  while (next_line(&ps, &ls, &le)) {
    if (blank_line(ls, le)) continue;
    if ((st = split(&ps, ls, le))) goto fail;
    if (ncols < 0) ncols = (int64_t)ps.nf;
    if (features == 0) {
      if (label_col < 0)
        label_col = opt.label_column < 0 ? ncols + opt.label_column : opt.label_column;
      if (label_col < 0 || label_col >= ncols) {
        st = strop__err(STROP_E_INVALID_ARG,
                        "%s: label_column %lld out of range for %lld columns", name,
                        (long long)opt.label_column, (long long)ncols);
        goto fail;
      }
      if (ncols < 2) {
        st = strop__err(STROP_E_FORMAT,
                        "%s:%lld: need a label and at least one feature column, "
                        "found %lld column(s)",
                        name, (long long)ps.line, (long long)ncols);
        goto fail;
      }
      features = ncols - 1;
    }
    if ((int64_t)ps.nf != ncols) {
      st = strop__err(STROP_E_FORMAT, "%s:%lld: ragged row: %zu columns, expected %lld", name,
                      (long long)ps.line, ps.nf, (long long)ncols);
      goto fail;
    }
    if ((size_t)(rows + 1) * (size_t)features > capx) {
      size_t nc = capx ? capx * 2 : (size_t)features * 256;
      float *nx = strop__realloc(x, nc * sizeof *nx);
      if (!nx) {
        st = STROP__NOMEM(name);
        goto fail;
      }
      x = nx;
      capx = nc;
    }
    if ((size_t)rows + 1 > capy) {
      size_t nc = capy ? capy * 2 : 256;
      float *ny = strop__realloc(y, nc * sizeof *ny);
      if (!ny) {
        st = STROP__NOMEM(name);
        goto fail;
      }
      y = ny;
      capy = nc;
    }
    float *xr = x + (size_t)rows * (size_t)features;
    for (size_t k = 0, j = 0; k < ps.nf; k++) {
      if ((int64_t)k == label_col) continue;
      double v;
      if ((st = field_number(&ps, k, &v))) goto fail;
      xr[j++] = (float)v;
    }
    if (opt.label_mode == STROP_CSV_LABEL_INDEX || opt.label_mode == STROP_CSV_LABEL_REGRESSION) {
      double v;
      if ((st = field_number(&ps, (size_t)label_col, &v))) goto fail;
      if (opt.label_mode == STROP_CSV_LABEL_INDEX &&
          (v < 0 || v != floor(v) || v >= (double)STROP__MAX_CLASSES ||
           (opt.num_classes > 0 && v >= (double)opt.num_classes))) {
        st = strop__err(STROP_E_FORMAT, "%s:%lld: column %lld: label %g is not a class index%s",
                        name, (long long)ps.line, (long long)label_col + 1, v,
                        opt.num_classes > 0 ? " in range" : "");
        goto fail;
      }
      y[rows] = (float)v;
    } else {
      const char *t;
      size_t n;
      if ((st = field_text(&ps, (size_t)label_col, &t, &n))) goto fail;
      if (n == 0) {
        st = strop__err(STROP_E_FORMAT, "%s:%lld: column %lld: empty (missing) label", name,
                        (long long)ps.line, (long long)label_col + 1);
        goto fail;
      }
      if (memchr(t, '\0', n)) {
        shown(t, n, sh);
        st = strop__err(STROP_E_FORMAT, "%s:%lld: column %lld: NUL byte in label '%s'", name,
                        (long long)ps.line, (long long)label_col + 1, sh);
        goto fail;
      }
      int64_t c = strlist_find(&labels, t);
      if (c < 0) {
        if (labels.n >= 1 << 20) {
          st = strop__err(STROP_E_FORMAT, "%s:%lld: more than 2^20 distinct labels", name,
                          (long long)ps.line);
          goto fail;
        }
        if (strlist_add(&labels, t, n)) {
          st = STROP__NOMEM(name);
          goto fail;
        }
        c = labels.n - 1;
      }
      y[rows] = (float)c;
    }
    rows++;
  }
  if (rows == 0) {
    st = strop__err(STROP_E_FORMAT, "%s: no data rows", name);
    goto fail;
  }

  int64_t C = 0;
  if (opt.label_mode == STROP_CSV_LABEL_INDEX) {
    C = opt.num_classes;
    if (C == STROP_CLASSES_INFER) {
      int64_t mx = 0;
      for (int64_t i = 0; i < rows; i++)
        if ((int64_t)y[i] > mx) mx = (int64_t)y[i];
      C = mx + 1;
    }
  } else if (opt.label_mode != STROP_CSV_LABEL_REGRESSION) {
    C = labels.n;
    if (opt.label_mode == STROP_CSV_LABEL_NAMES_SORTED) {
      /* sort the names and renumber */
      char **sorted = strop__malloc((size_t)C * sizeof *sorted);
      int32_t *remap = strop__malloc((size_t)C * sizeof *remap);
      if (!sorted || !remap) {
        strop__free(sorted);
        strop__free(remap);
        st = STROP__NOMEM(name);
        goto fail;
      }
      memcpy(sorted, labels.s, (size_t)C * sizeof *sorted);
      qsort(sorted, (size_t)C, sizeof *sorted, cmp_str);
      for (int64_t c = 0; c < C; c++) {
        /* position of the old name c in the sorted list */
        int64_t lo = 0, hi = C - 1;
        while (lo < hi) {
          int64_t mid = (lo + hi) / 2;
          if (strcmp(sorted[mid], labels.s[c]) < 0) lo = mid + 1;
          else hi = mid;
        }
        remap[c] = (int32_t)lo;
      }
      for (int64_t i = 0; i < rows; i++) y[i] = (float)remap[(int64_t)y[i]];
      memcpy(labels.s, sorted, (size_t)C * sizeof *sorted);
      strop__free(sorted);
      strop__free(remap);
    }
  }

  if (opt.sklearn_header) {
    if (sk_samples != rows || sk_features != features) {
      st = strop__err(STROP_E_FORMAT,
                      "%s:%lld: sklearn header says %lld samples x %lld features, "
                      "the data has %lld x %lld",
                      name, (long long)sk_line, (long long)sk_samples, (long long)sk_features,
                      (long long)rows, (long long)features);
      goto fail;
    }
    if (sk_names.n > 0 && C > 0) {
      if (opt.label_mode == STROP_CSV_LABEL_INDEX && C <= sk_names.n &&
          opt.num_classes == STROP_CLASSES_INFER)
        C = sk_names.n;
      if (C != sk_names.n) {
        st = strop__err(STROP_E_FORMAT,
                        "%s:%lld: sklearn header names %lld classes, the labels "
                        "have %lld",
                        name, (long long)sk_line, (long long)sk_names.n, (long long)C);
        goto fail;
      }
      strlist_free(&labels);
      labels = sk_names;
      memset(&sk_names, 0, sizeof sk_names);
    }
  }
  if (opt.label_mode != STROP_CSV_LABEL_REGRESSION && C < 1) {
    st = strop__err(STROP_E_FORMAT, "%s: no classes", name);
    goto fail;
  }
  out->rows = rows;
  out->features = features;
  out->x = x;
  out->y = y;
  out->num_classes = C;
  if (labels.n > 0 && labels.n == C) {
    out->class_names = labels.s;
    labels.s = NULL;
    labels.n = 0;
  }
  strlist_free(&labels);
  strlist_free(&sk_names);
  strop__free(ps.f);
  strop__free(ps.tmp);
  return STROP_OK;
fail:
  strlist_free(&labels);
  strlist_free(&sk_names);
  strop__free(ps.f);
  strop__free(ps.tmp);
  strop__free(x);
  strop__free(y);
  return st;
}

strop_status strop_dataset_load_csv(const char *path, const strop_csv_options *opt,
                                    strop_dataset **out) {
  const char *fn = "strop_dataset_load_csv";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  if (opt && opt->size < sizeof(size_t))
    return strop__err(STROP_E_INVALID_ARG, "%s: opt->size is %zu; call strop_csv_options_init",
                      fn, opt->size);
  strop__file f;
  strop_status st = strop__file_read(fn, path, 1, NULL, &f);
  if (st) return st;
  strop__csv_table t;
  st = strop__csv_parse((const char *)f.data, f.len, path, opt, &t);
  strop__file_close(&f);
  if (st) {
    strop__err_prefix("%s", fn);
    return st;
  }
  int64_t in_dims[1] = {t.features}, one = 1;
  strop_dataset *ds = NULL;
  int regression = t.num_classes == 0;
  st = strop__ds_new_root(fn, STROP__DS_F32, t.rows, 1, in_dims, regression ? 1 : 0, &one,
                          regression ? 0 : t.num_classes, &ds);
  if (st) {
    strop__csv_table_free(&t);
    return st;
  }
  ds->x = ds->x_owned = t.x;
  ds->y = ds->y_owned = t.y;
  ds->class_names = t.class_names;
  t.x = t.y = NULL;
  t.class_names = NULL;
  strop__csv_table_free(&t);
  *out = ds;
  return STROP_OK;
}
