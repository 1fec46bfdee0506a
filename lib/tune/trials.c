/* SPDX-License-Identifier: MIT */
/* strop — the trials file: one JSON line per finished trial (id, status, value, seconds,
 * values by name, intermediate values), appended and flushed; read back to resume a search. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/numfmt.h"
#include "io/atomic.h"
#include "io/json.h"
#include "core/sbuf.h"
#include "tune/tune_impl.h"

/* by strop_trial_status; a running trial is never written */
static const char *const STATUS_NAMES[] = {"ok", "failed", "pruned", "running", "interrupted"};

strop_status strop_tuner_set_log(strop_tuner *t, const char *path) {
  static const char fn[] = "strop_tuner_set_log";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  pthread_mutex_lock(&t->mu);
  strop_status st = STROP_OK;
  FILE *f = NULL;
  if (path) {
    f = fopen(path, "a+");
    if (!f)
      st = strop__err(STROP_E_IO, "%s: cannot open '%s' for appending: %s", fn, path,
                      strerror(errno));
    /* a file that does not end a line (its last write cut short): the next line starts on its
     * own, not joined to that one */
    if (f && fseek(f, -1, SEEK_END) == 0 && fgetc(f) != '\n' && fseek(f, 0, SEEK_END) == 0 &&
        (fputc('\n', f) == EOF || fflush(f) != 0)) {
      st = strop__err(STROP_E_IO, "%s: cannot write to '%s': %s", fn, path, strerror(errno));
      fclose(f);
      f = NULL;
    }
  }
  if (st == STROP_OK) {
    if (t->log) fclose(t->log);
    t->log = f;
  }
  pthread_mutex_unlock(&t->mu);
  return st;
}

/* The shortest text that reads back to the same double (resume gets every bit), or null. */
static void put_num(strop__sbuf *b, double v) {
  char t[STROP__FMT_DOUBLE_MAX];
  if (isfinite(v)) {
    strop__fmt_double(v, t, sizeof t);
    strop__sbuf_puts(b, t);
  } else {
    strop__sbuf_puts(b, "null");
  }
}

strop_status strop__tune_log_trial(strop_tuner *t, const strop__trial *tr) {
  static const char fn[] = "strop_tuner_tell";
  if (!t->log) return STROP_OK;
  strop__sbuf b = {0};
  strop__sbuf_printf(&b, "{\"id\":%lld,\"status\":\"%s\",\"value\":", (long long)tr->id,
                     STATUS_NAMES[tr->status]);
  put_num(&b, tr->value);
  strop__sbuf_puts(&b, ",\"seconds\":");
  put_num(&b, tr->seconds);
  strop__sbuf_puts(&b, ",\"values\":{");
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    if (i) strop__sbuf_puts(&b, ",");
    strop__sbuf_json_str(&b, p->name);
    strop__sbuf_puts(&b, ":");
    if (p->kind == STROP_PARAM_CATEGORICAL)
      strop__sbuf_json_str(&b, p->choices[(int64_t)tr->values[i]]);
    else if (p->kind == STROP_PARAM_INT) strop__sbuf_printf(&b, "%lld", (long long)tr->values[i]);
    else put_num(&b, tr->values[i]);
  }
  strop__sbuf_puts(&b, "},\"intermediate\":[");
  for (int64_t i = 0; i < tr->n_inter; i++) {
    strop__sbuf_printf(&b, "%s[%lld,", i ? "," : "", (long long)tr->inter[i].step);
    put_num(&b, tr->inter[i].value);
    strop__sbuf_puts(&b, "]");
  }
  strop__sbuf_puts(&b, "]}\n");
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(fn);
  }
  int bad = fwrite(b.s, 1, b.n, t->log) != b.n;
  bad |= fflush(t->log) != 0;
  if (!bad && t->fsync) bad |= fsync(fileno(t->log)) != 0;
  strop__sbuf_free(&b);
  if (bad)
    return strop__err(STROP_E_IO, "%s: trial %lld: cannot write the trials file: %s", fn,
                      (long long)tr->id, strerror(errno));
  return STROP_OK;
}

/* ---- resume ---- */

typedef struct rctx {
  const char *path;
  int64_t line;
} rctx;

static strop_status bad_line(const rctx *c, const char *what, const char *name) {
  return strop__err(STROP_E_FORMAT, "strop_tuner_resume: %s:%lld: %s%s%s%s", c->path,
                    (long long)c->line, what, name ? " '" : "", name ? name : "",
                    name ? "'" : "");
}

static int num_of(const strop__jnode *v, double *out) {
  if (!v || v->type != STROP__J_NUM) return 0;
  *out = v->is_int ? (double)v->ival : strtod(v->str, NULL);
  return 1;
}

/* Parses one line into tr (values and inter allocated); STROP_OK or an error. */
static strop_status parse_line(const strop_tuner *t, const rctx *c, const char *s, size_t len,
                               strop__trial *tr) {
  strop__json j;
  strop_status st = strop__json_parse(s, len, 0, 8, &j);
  if (st != STROP_OK) {
    if (st == STROP_E_FORMAT)
      strop__err_prefix("strop_tuner_resume: %s:%lld", c->path, (long long)c->line);
    else strop__err_prefix("strop_tuner_resume");
    return st;
  }
  memset(tr, 0, sizeof *tr);
  const strop__jnode *root = &j.nodes[0], *v;
  double d;
  if (root->type != STROP__J_OBJ) {
    st = bad_line(c, "not a JSON object", NULL);
    goto out;
  }
  v = strop__json_get(&j, root, "id");
  if (!v || v->type != STROP__J_NUM || !v->is_int || v->ival < 0 ||
      v->ival >= STROP__TUNE_MAX_ID) {
    st = bad_line(c, "\"id\" must be an integer in [0, 2^53)", NULL);
    goto out;
  }
  tr->id = v->ival;
  v = strop__json_get(&j, root, "status");
  tr->status = -1;
  for (int k = 0; v && v->type == STROP__J_STR && k < 5; k++)
    if (k != STROP_TRIAL_RUNNING && strcmp(v->str, STATUS_NAMES[k]) == 0) tr->status = k;
  if (tr->status < 0) {
    st = bad_line(c, "\"status\" must be \"ok\", \"failed\", \"pruned\" or \"interrupted\"",
                  NULL);
    goto out;
  }
  int no_value = tr->status == STROP_TRIAL_FAILED || tr->status == STROP_TRIAL_INTERRUPTED;
  v = strop__json_get(&j, root, "value");
  tr->value = num_of(v, &d) ? d : NAN;
  if (!no_value && !isfinite(tr->value)) {
    st = bad_line(c, "\"value\" must be a number for an ok or pruned trial", NULL);
    goto out;
  }
  if (no_value) tr->value = NAN;
  v = strop__json_get(&j, root, "seconds");
  tr->seconds = num_of(v, &d) ? d : 0.0;
  if (!(tr->seconds >= 0.0) || !isfinite(tr->seconds)) {
    st = bad_line(c, "\"seconds\" must be a finite number >= 0", NULL);
    goto out;
  }
  const strop__jnode *vals = strop__json_get(&j, root, "values");
  if (!vals || vals->type != STROP__J_OBJ) {
    st = bad_line(c, "\"values\" must be an object", NULL);
    goto out;
  }
  tr->values = strop__malloc((size_t)t->n_params * sizeof *tr->values + 1);
  if (!tr->values) {
    st = STROP__NOMEM("strop_tuner_resume");
    goto out;
  }
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    v = strop__json_get(&j, vals, p->name);
    if (!v) {
      st = bad_line(c, "missing parameter", p->name);
      goto out;
    }
    if (p->kind == STROP_PARAM_CATEGORICAL) {
      int64_t k = -1;
      for (int64_t q = 0; v->type == STROP__J_STR && q < p->n_choices; q++)
        if (strcmp(v->str, p->choices[q]) == 0) k = q;
      if (k < 0) {
        st = bad_line(c, "value is not one of the choices of", p->name);
        goto out;
      }
      tr->values[i] = (double)k;
    } else {
      if (!num_of(v, &d) || !(d >= p->lo && d <= p->hi) ||
          (p->kind == STROP_PARAM_INT && !v->is_int)) {
        st = bad_line(c, "value outside the range of", p->name);
        goto out;
      }
      tr->values[i] = d;
    }
  }
  if (vals->count != t->n_params) { /* every parameter was found: the rest are strangers */
    for (const strop__jnode *e = strop__json_at(&j, vals->child); e;
         e = strop__json_at(&j, e->next)) {
      int known = 0;
      for (int64_t i = 0; i < t->n_params && !known; i++)
        known = strcmp(e->key, t->params[i].name) == 0;
      if (!known) {
        st = bad_line(c, "unknown parameter", e->key);
        goto out;
      }
    }
  }
  const strop__jnode *in = strop__json_get(&j, root, "intermediate");
  if (in && in->type != STROP__J_ARR) {
    st = bad_line(c, "\"intermediate\" must be an array of [step, value]", NULL);
    goto out;
  }
  if (in && in->count > 0) {
    tr->inter = strop__malloc((size_t)in->count * sizeof *tr->inter);
    if (!tr->inter) {
      st = STROP__NOMEM("strop_tuner_resume");
      goto out;
    }
    tr->cap_inter = in->count;
    for (const strop__jnode *e = strop__json_at(&j, in->child); e;
         e = strop__json_at(&j, e->next)) {
      const strop__jnode *s0 = e->type == STROP__J_ARR && e->count == 2
                                   ? strop__json_at(&j, e->child)
                                   : NULL;
      const strop__jnode *s1 = s0 ? strop__json_at(&j, s0->next) : NULL;
      double val;
      if (!s0 || s0->type != STROP__J_NUM || !s0->is_int || !num_of(s1, &val) || !isfinite(val) ||
          (tr->n_inter > 0 && s0->ival <= tr->inter[tr->n_inter - 1].step)) {
        st = bad_line(c,
                      "\"intermediate\" entries must be [step, finite value] with "
                      "increasing steps",
                      NULL);
        goto out;
      }
      tr->inter[tr->n_inter].step = s0->ival;
      tr->inter[tr->n_inter].value = val;
      tr->n_inter++;
    }
  }
out:
  if (st != STROP_OK) strop__tune_trial_clear(tr);
  strop__json_free(&j);
  return st;
}

/* By id, then by line: the lines of one id in the order written. */
static int cmp_trial(const void *a, const void *b) {
  const strop__trial *p = a, *q = b;
  if (p->id != q->id) return p->id < q->id ? -1 : 1;
  return p->line < q->line ? -1 : p->line > q->line;
}

strop_status strop_tuner_resume(strop_tuner *t, const char *path) {
  static const char fn[] = "strop_tuner_resume";
  if (!t || !path) return strop__err(STROP_E_INVALID_ARG, "%s: tuner or path is NULL", fn);
  pthread_mutex_lock(&t->mu);
  strop_status st = STROP_OK;
  char *text = NULL;
  size_t len = 0;
  strop__trial *got = NULL;
  int64_t n_got = 0, cap = 0;
  if (t->n_trials > 0)
    st = strop__err(STROP_E_STATE, "%s: the tuner already has %lld trials; resume first", fn,
                    (long long)t->n_trials);
  else if (t->n_params == 0)
    st = strop__err(STROP_E_STATE, "%s: add the search parameters before resuming", fn);
  if (st == STROP_OK) st = strop__read_file(fn, path, (size_t)1 << 31, &text, &len);
  rctx c = {path, 0};
  for (size_t pos = 0; st == STROP_OK && pos < len;) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    c.line++;
    size_t a = pos;
    while (a < end && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r')) a++;
    if (a < end) {
      strop__trial tr;
      if (n_got == cap) {
        int64_t nc = cap ? 2 * cap : 16;
        strop__trial *g = strop__realloc(got, (size_t)nc * sizeof *g);
        if (!g) {
          st = STROP__NOMEM(fn);
          break;
        }
        got = g;
        cap = nc;
      }
      st = parse_line(t, &c, text + pos, end - pos, &tr);
      if (st == STROP_E_FORMAT && !nl) { /* a torn last line: the crash it comes from */
        strop_clear_error();
        st = STROP_OK;
        /* cut off, so that the next trial's line, appended, does not join it into a line no
         * later resume reads; if it cannot be, strop_tuner_set_log still starts a new line */
        if (truncate(path, (off_t)pos) == 0)
          strop__log(STROP_LOG_WARN,
                     "%s: %s:%lld: an unfinished last line (a write cut short) was removed", fn,
                     path, (long long)c.line);
        break;
      }
      if (st == STROP_OK) {
        tr.line = c.line;
        got[n_got++] = tr;
      }
    }
    pos = nl ? end + 1 : len;
  }
  if (st == STROP_OK && n_got > 0) {
    qsort(got, (size_t)n_got, sizeof *got, cmp_trial);
    /* an interrupted trial asked again is written again: its later line replaces it. got[k]
     * receives got[i]; on an error, [0, k) and [i, n_got) own their values, the rest were
     * moved. */
    int64_t k = 0, i = 0;
    for (; i < n_got; i++) {
      if (k > 0 && got[i].id == got[k - 1].id) {
        if (got[k - 1].status != STROP_TRIAL_INTERRUPTED) {
          st = strop__err(STROP_E_FORMAT,
                          "%s: %s:%lld: trial id %lld appears twice (line %lld "
                          "is not an interrupted trial that a later line may replace)",
                          fn, path, (long long)got[i].line, (long long)got[i].id,
                          (long long)got[k - 1].line);
          break;
        }
        strop__tune_trial_clear(&got[k - 1]);
        got[k - 1] = got[i];
      } else {
        got[k++] = got[i];
      }
    }
    if (st != STROP_OK) {
      for (int64_t q = 0; q < k; q++) strop__tune_trial_clear(&got[q]);
      for (int64_t q = i; q < n_got; q++) strop__tune_trial_clear(&got[q]);
      n_got = 0;
    } else {
      n_got = k;
    }
  }
  if (st == STROP_OK && n_got > 0) {
    strop__trial *nt = strop__realloc(t->trials, (size_t)n_got * sizeof *nt);
    if (!nt) {
      st = STROP__NOMEM(fn);
    } else {
      t->trials = nt;
      t->cap_trials = n_got;
      for (int64_t i = 0; i < n_got; i++) {
        st = strop__tune_push_trial(t, &got[i]); /* capacity is there: cannot fail */
        if (st != STROP_OK) break;
      }
      n_got = 0;
    }
  }
  if (st == STROP_OK) t->frozen = 1;
  for (int64_t i = 0; i < n_got; i++) strop__tune_trial_clear(&got[i]);
  strop__free(got);
  strop__free(text);
  pthread_mutex_unlock(&t->mu);
  return st;
}
