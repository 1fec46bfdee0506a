/* SPDX-License-Identifier: MIT */
/* strop — tuning a recipe: the tune: section becomes a search space over recipe key paths;
 * each trial fine-tunes a clone of the pre-trained model (loaded once) with the trial's
 * values, reports its metric per epoch to the pruner, and the best values are written back
 * as a complete recipe. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/numfmt.h"
#include "io/atomic.h"
#include "core/sbuf.h"
#include "dist/dist_impl.h"
#include "recipe/plot.h"
#include "recipe/recipe_impl.h"
#include "tune/tune_impl.h"
#include "strop/strop.h"

#define FN "strop_recipe_tune"

/* The tune: section's own keys (its settings are the tuner's knob table), one line each: the
 * docs generator joins them with the schema of recipe.c and fails on a key without a line. */
const strop__key_doc strop__tune_key_docs[] = {
    {"tune", "strategy", "the search strategy (default `bayes`)"},
    {"tune", "trials",
     "trials of the search in all (default 10), those finished in the trials "
     "file counted; `strop tune --trials N` overrides it"},
    {"tune", "seed", "seeds every random choice of the search (default: the recipe's `seed`)"},
    {"tune", "metric",
     "what a trial is scored by after its last stage (default "
     "`val_accuracy`; accuracies are maximised, losses minimised); the pruner "
     "reads it after each epoch of the last stage"},
    {"tune", "trials_file",
     "a JSON-lines file of the finished trials, appended as they end; a "
     "second run resumes from it (path, relative to the recipe)"},
    {"tune", "best_recipe",
     "the recipe with the best trial's values and absolute paths, "
     "written at the end, runnable by `strop finetune` (path; not a file "
     "the `output` section names)"},
    {"tune", "plot",
     "an SVG of the metric per trial and against the first two parameters "
     "(path)"},
    {"tune", "params", "the search space: one mapping per parameter (below)"},
    {"tune.params", "key",
     "the recipe key path the parameter sets: `optimizer.lr`, "
     "`data.batch_size`, `\"stages[1].epochs\"` (quoted in a flow "
     "mapping)"},
    {"tune.params", "type", "the kind of value (default `float`)"},
    {"tune.params", "low", "float and int: the lowest value (required)"},
    {"tune.params", "high", "float and int: the highest value (required, > low)"},
    {"tune.params", "log",
     "float and int: draw on a log scale (default false; needs low > 0, "
     "or >= 1 for an int)"},
    {"tune.params", "choices",
     "categorical: the values, a list of scalars written into the "
     "recipe as they are"},
    {NULL, NULL, NULL}};

void strop_tune_options_init(strop_tune_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->resume = 1;
}

enum { M_VAL_ACC, M_VAL_LOSS, M_TEST_ACC, M_TEST_LOSS, M_TRAIN_LOSS };

typedef struct tctx {
  const strop_recipe *r;
  const strop_tune_options *o;
  strop_model *base;
  int metric;
  int stop;           /* the host asked to stop at a trial's end: no trial runs after it */
  int no_prune;       /* over ranks: the pruner is not fed */
  pthread_mutex_t mu; /* serialises the host's callback (and guards stop) */
} tctx;

typedef struct trial_state {
  tctx *tc;
  strop_tuner *t;
  int64_t id;
  int64_t epochs;        /* epochs over all stages */
  int64_t stage, stages; /* the running stage, and how many the run has */
  int64_t steps;         /* epochs of the last stage reported to the pruner */
  double last;           /* the last value reported (NaN: none) */
  int pruned;
  int stop_all;
} trial_state;

/* An event of the search as a whole (no trial). */
static strop_tune_event search_event(int kind, const strop_tuner *t) {
  strop_tune_event te;
  memset(&te, 0, sizeof te);
  te.size = sizeof te;
  te.kind = kind;
  te.trial_id = -1;
  te.value = NAN;
  te.tuner = t;
  return te;
}

/* Passes e to the host; its non-zero answer (stop) is returned. */
static int host_event(tctx *tc, const strop_tune_event *e) {
  if (!tc->o->on_event) return 0;
  pthread_mutex_lock(&tc->mu);
  int rc = tc->o->on_event(e, tc->o->user_data);
  pthread_mutex_unlock(&tc->mu);
  return rc;
}

/* The pruner sees the last stage only, its epochs counted from 1: a trial is judged once all
 * its settings took effect, so trials that differ only in a later stage's setting are never
 * cut (with equal values) before that stage runs. */
static int on_run_event(const strop_run_event *e, void *u) {
  trial_state *ts = u;
  if (e->kind == STROP_EVENT_STAGE_START) {
    ts->stage = e->stage;
    ts->stages = e->stages;
    return 0;
  }
  if (e->kind != STROP_EVENT_PROGRESS || e->progress->phase != STROP_PHASE_EPOCH_END) return 0;
  const strop_progress *p = e->progress;
  double v = ts->tc->metric == M_VAL_ACC    ? p->val_metric
             : ts->tc->metric == M_VAL_LOSS ? p->val_loss
                                            : p->loss;
  ts->epochs++;
  strop_tune_event te = search_event(STROP_TUNE_EVENT_EPOCH, ts->t);
  te.trial_id = ts->id;
  te.epoch = ts->epochs;
  te.value = v;
  if (host_event(ts->tc, &te)) {
    ts->stop_all = 1;
    return 1;
  }
  if (ts->stage != ts->stages - 1 || !isfinite(v) || ts->tc->no_prune) return 0;
  int prune = 0;
  if (strop_tuner_report(ts->t, ts->id, ++ts->steps, v, &prune) != STROP_OK) return 0;
  ts->last = v;
  if (prune) {
    ts->pruned = 1;
    return 1;
  }
  return 0;
}

/* The trial's value of parameter i as YAML text. */
static strop_status value_text(strop_tuner *t, int64_t id, int64_t i, char *buf, size_t cap) {
  const char *name = strop_tuner_param_name(t, i);
  int kind = strop_tuner_param_kind(t, i);
  if (kind == STROP_PARAM_CATEGORICAL) {
    size_t len;
    return strop_tuner_trial_categorical(t, id, name, NULL, buf, cap, &len);
  }
  if (kind == STROP_PARAM_INT) {
    int64_t v;
    strop_status s = strop_tuner_trial_int(t, id, name, &v);
    if (!s) snprintf(buf, cap, "%lld", (long long)v);
    return s;
  }
  double v;
  strop_status s = strop_tuner_trial_float(t, id, name, &v);
  if (!s) strop__fmt_double(v, buf, cap); /* every digit: the run gets the value drawn */
  return s;
}

static strop_status apply_values(strop_tuner *t, int64_t id, strop_recipe *r) {
  char buf[256];
  for (int64_t i = 0; i < strop_tuner_num_params(t); i++) {
    strop_status s = value_text(t, id, i, buf, sizeof buf);
    if (!s) s = strop_recipe_set(r, strop_tuner_param_name(t, i), buf);
    if (s) return s;
  }
  return STROP_OK;
}

static double final_value(const tctx *tc, strop_run *run) {
  int64_t n = strop_run_info(run, STROP_INFO_STAGES), last = -1;
  for (int64_t i = 0; i < n; i++)
    if (!strop_run_stage_is_baseline(run, i)) last = i;
  if (last < 0) return NAN;
  switch (tc->metric) {
    case M_VAL_ACC: return strop_run_stage_metric(run, last, 100 + STROP_METRIC_ACCURACY);
    case M_VAL_LOSS: return strop_run_stage_metric(run, last, 100 + STROP_METRIC_LOSS);
    case M_TEST_ACC: return strop_run_stage_metric(run, last, STROP_METRIC_ACCURACY);
    case M_TEST_LOSS: return strop_run_stage_metric(run, last, STROP_METRIC_LOSS);
    default: {
      int64_t rows = strop_run_info(run, STROP_INFO_EPOCHS);
      return rows > 0 ? strop_run_history(run, rows - 1, 2) : NAN;
    }
  }
}

static int trial(strop_tuner *t, int64_t id, double *value_out, void *u) {
  tctx *tc = u;
  trial_state ts = {tc, t, id, 0, 0, 1, 0, NAN, 0, 0};
  *value_out = NAN;
  pthread_mutex_lock(&tc->mu);
  int stop = tc->stop;
  pthread_mutex_unlock(&tc->mu);
  if (stop) return -1; /* asked after the host's stop: interrupted before it began */
  strop_tune_event te = search_event(STROP_TUNE_EVENT_TRIAL_START, t);
  te.trial_id = id;
  if (host_event(tc, &te)) return -1;
  strop_recipe *rc = NULL;
  strop_status s = strop_recipe_clone(tc->r, &rc);
  if (!s) s = apply_values(t, id, rc);
  strop_run *run = NULL;
  if (!s) {
    strop_run_options o;
    strop_run_options_init(&o);
    o.base_model = tc->base;
    o.write_outputs = 0;
    o.baselines = 0;
    o.epochs_cap = tc->o->epochs_cap;
    o.on_event = on_run_event;
    o.user_data = &ts;
    s = strop_recipe_run(rc, &o, &run);
  }
  int status;
  if (ts.stop_all) {
    status = -1;
  } else if (ts.pruned) {
    status = STROP_TRIAL_PRUNED;
    *value_out = ts.last; /* what the table, the plot and the trials file show */
  } else if (s) {
    strop__log(STROP_LOG_WARN, "%s: trial %lld failed: %s", FN, (long long)id,
               strop_last_error());
    status = STROP_TRIAL_FAILED;
  } else {
    *value_out = final_value(tc, run);
    status = isfinite(*value_out) ? STROP_TRIAL_OK : STROP_TRIAL_FAILED;
  }
  strop_run_free(run);
  strop_recipe_free(rc);
  te.kind = STROP_TUNE_EVENT_TRIAL_END;
  te.value = *value_out;
  te.status = status < 0 ? STROP_TRIAL_INTERRUPTED : status;
  if (host_event(tc, &te)) { /* this trial's result stands; none runs after it */
    pthread_mutex_lock(&tc->mu);
    tc->stop = 1;
    pthread_mutex_unlock(&tc->mu);
  }
  return status;
}

/* The search over a group's ranks: every rank holds the same tuner (same seed, same results
 * told in the same order), so every rank asks the same next trials; each round rank r runs
 * the r-th of them, the ranks sum their results (each slot is written by one rank only, a NaN
 * stays NaN) and every rank tells them all, in order. The budget is checked alike (a rank out
 * of time stops all). */
static strop_status run_over_ranks(strop_tuner *t, int64_t n, tctx *tc, strop_dist *d) {
  const int size = d->size, rank = d->rank;
  double *res = strop__malloc((size_t)(2 * size + 1) * sizeof *res);
  int64_t *ids = strop__malloc((size_t)size * sizeof *ids);
  strop_status s = res && ids ? STROP_OK : STROP__NOMEM(FN);
  double budget = 0, t0 = strop__tune_now();
  if (!s) s = strop_tuner_get_double(t, STROP_TUNE_TIME_BUDGET, &budget);
  int64_t started = 0;
  while (!s && started < n) {
    int k = 0;
    for (; k < size && started + k < n; k++) {
      if ((s = strop_tuner_ask(t, &ids[k]))) {
        if (s == STROP_E_STATE && strop_tuner_is_exhausted(t)) { /* a grid with no point left */
          strop_clear_error();
          s = STROP_OK;
        }
        break;
      }
    }
    if (s || k == 0) break;
    started += k;
    memset(res, 0, (size_t)(2 * size + 1) * sizeof *res);
    if (rank < k) {
      double v = NAN;
      int rc = trial(t, ids[rank], &v, tc);
      res[2 * rank] = v;
      res[2 * rank + 1] = rc;
    }
    res[2 * size] = budget > 0 && strop__tune_now() - t0 >= budget;
    if ((s = strop__dist_sum_double(d, FN, res, 2 * size + 1))) break;
    int stop = res[2 * size] > 0;
    for (int i = 0; i < k && !s; i++) {
      int rc = (int)res[2 * i + 1];
      /* as strop_tuner_run: a trial the host stopped is interrupted (to be run again) */
      int status = rc < 0                     ? STROP_TRIAL_INTERRUPTED
                   : rc == STROP_TRIAL_OK     ? STROP_TRIAL_OK
                   : rc == STROP_TRIAL_PRUNED ? STROP_TRIAL_PRUNED
                                              : STROP_TRIAL_FAILED;
      double v = status == STROP_TRIAL_OK || status == STROP_TRIAL_PRUNED ? res[2 * i] : NAN;
      s = strop_tuner_tell(t, ids[i], v, status);
      if (rc < 0) stop = 1;
      if (s || i == rank) continue;
      /* the host hears of the other ranks' trials too, once they are done */
      strop_tune_event te = search_event(STROP_TUNE_EVENT_TRIAL_START, t);
      te.trial_id = ids[i];
      int hs = host_event(tc, &te);
      te.kind = STROP_TUNE_EVENT_TRIAL_END;
      te.value = v;
      te.status = status;
      if (hs || host_event(tc, &te)) stop = 1;
    }
    if (stop) break;
  }
  strop__free(res);
  strop__free(ids);
  return s;
}

/* ---- the plot: metric per trial (best so far drawn), metric against the first two params ---- */
/* Ticks of a log axis: the powers of ten, or 1-2-5 within them when the range spans less than
 * three decades (values are exponents of ten). */
static void log_ticks(strop__sbuf *b, double x0, double w, double y, double xl, double xh) {
  static const double mant[] = {1, 2, 5};
  int fine = xh - xl < 3;
  for (double e = floor(xl); e <= ceil(xh); e++)
    for (int m = 0; m < (fine ? 3 : 1); m++) {
      double v = e + log10(mant[m]);
      if (v < xl - 1e-9 || v > xh + 1e-9) continue;
      strop__sbuf_printf(b,
                         "<text class=\"tick-x\" x=\"%.1f\" y=\"%.0f\" font-size=\"11\" "
                         "text-anchor=\"middle\">%ge%d</text>\n",
                         x0 + w * (v - xl) / (xh - xl), y, mant[m], (int)e);
    }
}

static void svg_panel(strop__sbuf *b, double x0, double y0, double w, double h, const char *title,
                      const double *xs, const double *ys, const int *ok, int64_t n, int logx,
                      int best_line, int maximize) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(ys[i])) continue;
    double x = logx ? log10(xs[i]) : xs[i];
    xl = fmin(xl, x);
    xh = fmax(xh, x);
    yl = fmin(yl, ys[i]);
    yh = fmax(yh, ys[i]);
  }
  if (!isfinite(xl)) xl = 0, xh = 1, yl = 0, yh = 1;
  strop__ticks ty, tx;
  strop__plot_ticks(yl, yh, 5, &ty);
  if (logx) {
    if (xh - xl < 1e-9) xl -= 0.5, xh += 0.5;
    double pad = 0.04 * (xh - xl);
    xl -= pad;
    xh += pad;
  } else {
    strop__plot_ticks(xl, xh, 6, &tx);
    xl = tx.lo;
    xh = tx.hi;
  }
  yl = ty.lo;
  yh = ty.hi;
  strop__sbuf_printf(b,
                     "<rect class=\"frame\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
                     "fill=\"#fafafa\" stroke=\"#bbb\"/>\n<text x=\"%.0f\" y=\"%.0f\" "
                     "font-size=\"14\" text-anchor=\"middle\" font-weight=\"bold\">",
                     x0, y0, w, h, x0 + w / 2, y0 - 10);
  strop__plot_text(b, title);
  strop__sbuf_puts(b, "</text>\n");
  for (int k = 0; k <= ty.n; k++) {
    double v = strop__plot_tick(&ty, k), yy = y0 + h * (1 - (v - yl) / (yh - yl));
    strop__sbuf_printf(
        b,
        "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>"
        "<text class=\"tick-y\" x=\"%.0f\" y=\"%.1f\" font-size=\"11\" "
        "text-anchor=\"end\">%.*f</text>\n",
        x0, x0 + w, yy, yy, x0 - 5, yy + 4, ty.decimals, v);
  }
  if (logx) {
    log_ticks(b, x0, w, y0 + h + 15, xl, xh);
  } else {
    for (int k = 0; k <= tx.n; k++) {
      double v = strop__plot_tick(&tx, k);
      strop__sbuf_printf(b,
                         "<text class=\"tick-x\" x=\"%.1f\" y=\"%.0f\" font-size=\"11\" "
                         "text-anchor=\"middle\">%.*f</text>\n",
                         x0 + w * (v - xl) / (xh - xl), y0 + h + 15, tx.decimals, v);
    }
  }
  /* the points, then the best-so-far line over them as one element of its own */
  strop__sbuf line;
  memset(&line, 0, sizeof line);
  double best = NAN;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(ys[i])) continue;
    double x = x0 + w * ((logx ? log10(xs[i]) : xs[i]) - xl) / (xh - xl);
    double y = y0 + h * (1 - (ys[i] - yl) / (yh - yl));
    strop__sbuf_printf(
        b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\" fill-opacity=\"0.8\"/>\n", x, y,
        ok[i] ? "#1f77b4" : "#aaaaaa");
    if (best_line && ok[i] && (isnan(best) || (maximize ? ys[i] > best : ys[i] < best)))
      best = ys[i];
    if (best_line && !isnan(best))
      strop__sbuf_printf(&line, "%s%.1f,%.1f", line.n ? " " : "", x,
                         y0 + h * (1 - (best - yl) / (yh - yl)));
  }
  if (line.n)
    strop__sbuf_printf(b,
                       "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" "
                       "points=\"%s\"/>\n",
                       line.s);
  b->oom |= line.oom;
  strop__sbuf_free(&line);
}

static strop_status write_plot(const strop_tuner *t, const char *metric, int maximize,
                               const char *path) {
  int64_t n = strop_tuner_num_trials(t);
  int64_t np = strop_tuner_num_params(t);
  int panels = 1 + (int)(np < 2 ? np : 2);
  double *xs = strop__calloc((size_t)(n ? n : 1), sizeof *xs),
         *ys = strop__calloc((size_t)(n ? n : 1), sizeof *ys),
         *vs = strop__calloc((size_t)(n ? n : 1), sizeof *vs);
  int *ok = strop__calloc((size_t)(n ? n : 1), sizeof *ok);
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  strop_status s = STROP_OK;
  if (!xs || !ys || !vs || !ok) {
    s = STROP__NOMEM(FN);
    goto done;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t id = strop_tuner_trial_id(t, i);
    int st = 0;
    double v = NAN;
    if (strop_tuner_trial_result(t, id, &st, &v, NULL, NULL)) {
    }
    xs[i] = (double)id;
    ys[i] = v;
    ok[i] = st == STROP_TRIAL_OK;
  }
  double W = 380.0 * panels + 40, H = 370;
  strop__sbuf_printf(&b,
                     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                     "font-family=\"DejaVu Sans, Arial, sans-serif\">\n<rect width=\"100%%\" "
                     "height=\"100%%\" fill=\"white\"/>\n",
                     W, H);
  char title[160];
  snprintf(title, sizeof title, "%s per trial", metric);
  svg_panel(&b, 70, 50, 300, 250, title, xs, ys, ok, n, 0, 1, maximize);
  for (int p = 0; p < panels - 1; p++) {
    const char *name = strop_tuner_param_name(t, p);
    int logx = 0;
    for (int64_t i = 0; i < n; i++) {
      if (strop_tuner_trial_value(t, strop_tuner_trial_id(t, i), p, &vs[i])) {
      }
      if (vs[i] <= 0) logx = -1;
    }
    /* log axis for log-scaled floats: detect by range */
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) lo = fmin(lo, vs[i]), hi = fmax(hi, vs[i]);
    logx = logx == 0 && lo > 0 && hi / lo > 50 &&
           strop_tuner_param_kind(t, p) != STROP_PARAM_CATEGORICAL;
    snprintf(title, sizeof title, "%s against %s", metric, name);
    svg_panel(&b, 70 + 380.0 * (p + 1), 50, 300, 250, title, vs, ys, ok, n, logx, 0, maximize);
  }
  /* the legend */
  int any_bad = 0;
  for (int64_t i = 0; i < n; i++) any_bad |= !ok[i] && isfinite(ys[i]);
  double lx = 70, ly = H - 16;
  strop__sbuf_printf(
      &b,
      "<g class=\"legend\"><circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"#1f77b4\"/>"
      "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">a trial</text></g>\n",
      lx, ly - 4, lx + 10, ly);
  lx += 90;
  if (any_bad) {
    strop__sbuf_printf(
        &b,
        "<g class=\"legend\"><circle cx=\"%.0f\" cy=\"%.0f\" r=\"4\" fill=\"#aaaaaa\"/>"
        "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">pruned or failed (its last "
        "value)</text></g>\n",
        lx, ly - 4, lx + 10, ly);
    lx += 230;
  }
  strop__sbuf_printf(&b,
                     "<g class=\"legend\"><line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" "
                     "stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"%.0f\" y=\"%.0f\" "
                     "font-size=\"12\">best so far</text></g>\n",
                     lx, lx + 26, ly - 4, ly - 4, lx + 32, ly);
  strop__sbuf_puts(&b, "</svg>\n");
  if (b.oom) s = STROP__NOMEM(FN);
  else s = strop__write_file_atomic(FN, path, b.s, b.n);
done:
  strop__sbuf_free(&b);
  strop__free(xs);
  strop__free(ys);
  strop__free(vs);
  strop__free(ok);
  return s;
}

static strop_status add_params(const strop_recipe *r, const strop__ynode *params,
                               strop_tuner *t) {
  for (int i = 0; params && i < params->n; i++) {
    const strop__ynode *p = params->kids[i];
    const char *key = strop__rd_str(p, "key"), *type = strop__rd_str(p, "type");
    if (!key)
      return strop__recipe_err(FN, r, p, STROP_E_FORMAT,
                               "tune.params[%d] needs 'key' (a recipe "
                               "key path such as optimizer.lr)",
                               i);
    strop_status s;
    if (!type || !strcmp(type, "float") || !strcmp(type, "int")) {
      double lo = NAN, hi = NAN;
      int lg = 0;
      if ((s = strop__rd_float(r, p, "low", &lo)) || (s = strop__rd_float(r, p, "high", &hi)) ||
          (s = strop__rd_bool(r, p, "log", &lg)))
        return s;
      if (isnan(lo) || isnan(hi))
        return strop__recipe_err(FN, r, p, STROP_E_FORMAT,
                                 "tune.params[%d] ('%s') needs 'low' and "
                                 "'high'",
                                 i, key);
      s = type && !strcmp(type, "int") ? strop_tuner_add_int(t, key, (int64_t)lo, (int64_t)hi, lg)
                                       : strop_tuner_add_float(t, key, lo, hi, lg);
    } else {
      const strop__ynode *ch = strop__ynode_get(p, "choices");
      if (!ch || ch->type != STROP__Y_SEQ || ch->n == 0)
        return strop__recipe_err(FN, r, p, STROP_E_FORMAT,
                                 "tune.params[%d] ('%s') needs "
                                 "'choices: [...]'",
                                 i, key);
      const char *items[64];
      int k = 0;
      for (int j = 0; j < ch->n && k < 64; j++) {
        if (ch->kids[j]->type != STROP__Y_SCALAR)
          return strop__recipe_err(FN, r, ch->kids[j], STROP_E_FORMAT, "choices must be values");
        items[k++] = ch->kids[j]->text;
      }
      s = strop_tuner_add_categorical(t, key, items, k);
    }
    if (s) {
      strop__err_prefix("%s: %s:%d:%d: tune.params[%d]", FN, r->file, p->line, p->col, i);
      return s == STROP_E_INVALID_ARG ? STROP_E_FORMAT : s;
    }
  }
  return STROP_OK;
}

/* Every tuner setting the tune: section gives (initial, prune, workers, grid_points ... by
 * their names or the recipe's spellings) goes through strop_tuner_set_double. */
static strop_status apply_tuner_knobs(const strop_recipe *r, const strop__ynode *tu,
                                      strop_tuner *t) {
  const strop__ynode *nodes[64];
  strop__recipe_knobs(tu, NULL, &strop__tuner_settings, NULL, nodes);
  for (int k = 0; k < strop__tuner_settings.n && k < 64; k++) {
    if (!nodes[k]) continue;
    const strop__setting *d = strop__settings_at(&strop__tuner_settings, k);
    double v;
    if (!strop__setting_parse(d, nodes[k]->text, &v)) {
      char form[300];
      return strop__recipe_err(FN, r, nodes[k], STROP_E_FORMAT, "'%s' must be %s, got '%s'",
                               d->name, strop__setting_form(d, form, sizeof form),
                               nodes[k]->text);
    }
    strop_status s = strop_tuner_set_double(t, k, v);
    if (s) {
      strop__err_prefix("%s: %s:%d:%d: tune", FN, r->file, nodes[k]->line, nodes[k]->col);
      return s == STROP_E_INVALID_ARG ? STROP_E_FORMAT : s;
    }
  }
  return STROP_OK;
}

/* Trials with a result: ok, failed or pruned (not those running or interrupted). */
static int64_t finished_trials(const strop_tuner *t) {
  int64_t done = 0;
  for (int64_t i = 0; i < strop_tuner_num_trials(t); i++) {
    int st = STROP_TRIAL_RUNNING;
    if (strop_tuner_trial_result(t, strop_tuner_trial_id(t, i), &st, NULL, NULL, NULL)) {
    }
    done += st == STROP_TRIAL_OK || st == STROP_TRIAL_FAILED || st == STROP_TRIAL_PRUNED;
  }
  return done;
}

/* tune.best_recipe must not be a file the search or the run of the tuned recipe writes (the
 * run would overwrite the recipe with a model spec, say). */
static strop_status check_best_recipe_path(const strop_recipe *r, const strop__ynode *tu) {
  char best[1024], other[1200], pb[2048], po[2048];
  if (!strop__rd_path(r, tu, "best_recipe", best, sizeof best)) return STROP_OK;
  strop__recipe_plain_path(best, pb, sizeof pb);
  static const char *const tune_keys[] = {"trials_file", "plot"};
  static const char *const out_keys[] = {"weights", "spec", "checkpoint",
                                         "metrics", "plot", "report"};
  const strop__ynode *out = strop__ynode_get(r->root, "output");
  for (size_t i = 0; i < sizeof tune_keys / sizeof tune_keys[0]; i++)
    if (strop__rd_path(r, tu, tune_keys[i], other, sizeof other) &&
        (strop__recipe_plain_path(other, po, sizeof po), !strcmp(pb, po)))
      return strop__recipe_err(FN, r, strop__ynode_get(tu, "best_recipe"), STROP_E_FORMAT,
                               "'tune.best_recipe' and 'tune.%s' are the same file '%s'",
                               tune_keys[i], best);
  for (size_t i = 0; out && i < sizeof out_keys / sizeof out_keys[0]; i++)
    if (strop__run_out_path(r, out, out_keys[i], other, sizeof other) &&
        (strop__recipe_plain_path(other, po, sizeof po), !strcmp(pb, po)))
      return strop__recipe_err(FN, r, strop__ynode_get(tu, "best_recipe"), STROP_E_FORMAT,
                               "'tune.best_recipe' is '%s', where 'output.%s' is written too: "
                               "running the tuned recipe would overwrite it; name one of them "
                               "otherwise",
                               best, out_keys[i]);
  return STROP_OK;
}

strop_status strop_recipe_tune(const strop_recipe *r, const strop_tune_options *user_o,
                               strop_tuner **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", FN);
  *out = NULL;
  if (!r) return strop__err(STROP_E_INVALID_ARG, "%s: recipe is NULL", FN);
  strop_tune_options o;
  strop_tune_options_init(&o);
  strop_status st0 = strop__options_in(FN, "strop_tune_options_init", &o, sizeof o, user_o);
  if (st0) return st0;
  const strop__ynode *tu = strop__ynode_get(r->root, "tune");
  if (!tu || strop__ynode_is_null(tu))
    return strop__recipe_err(FN, r, r->root, STROP_E_FORMAT, "the recipe has no 'tune' section");
  const strop__ynode *params = strop__ynode_get(tu, "params");
  if (!params || params->type != STROP__Y_SEQ || params->n == 0)
    return strop__recipe_err(FN, r, tu, STROP_E_FORMAT,
                             "'tune.params' must list at least one "
                             "parameter");
  const char *strategy = strop__rd_str(tu, "strategy"), *metric = strop__rd_str(tu, "metric");
  int64_t trials = 10, seed = 0, workers = 1;
  strop_status s = strop__rd_int(r, r->root, "seed", &seed);
  if (!s) s = strop__rd_int(r, tu, "seed", &seed);
  if (!s) s = strop__rd_int(r, tu, "trials", &trials);
  if (s) return s;
  if (o.trials > 0) trials = o.trials;
  if (trials < 1) /* -1 ran no trial and reported "no trial finished ok" */
    return strop__recipe_err(FN, r, strop__ynode_get(tu, "trials"), STROP_E_FORMAT,
                             "'trials' must be at least 1, got %lld", (long long)trials);
  if (!metric) metric = "val_accuracy";
  tctx tc;
  memset(&tc, 0, sizeof tc);
  tc.r = r;
  tc.o = &o;
  tc.metric = !strcmp(metric, "val_loss")        ? M_VAL_LOSS
              : !strcmp(metric, "test_accuracy") ? M_TEST_ACC
              : !strcmp(metric, "test_loss")     ? M_TEST_LOSS
              : !strcmp(metric, "train_loss")    ? M_TRAIN_LOSS
                                                 : M_VAL_ACC;
  int maximize = tc.metric == M_VAL_ACC || tc.metric == M_TEST_ACC;
  if (tc.metric == M_VAL_ACC || tc.metric == M_VAL_LOSS) {
    double vf = 0;
    int64_t vk = 0;
    const strop__ynode *d = strop__ynode_get(r->root, "data");
    if ((s = strop__rd_float(r, d, "val_fraction", &vf)) ||
        (s = strop__rd_int(r, d, "val_few_shot", &vk)))
      return s;
    if (vf <= 0 && vk <= 0)
      return strop__recipe_err(FN, r, tu, STROP_E_FORMAT,
                               "tune.metric '%s' needs validation data: "
                               "set data.val_fraction or data.val_few_shot",
                               metric);
  }
  int strat = strategy && !strcmp(strategy, "grid")     ? STROP_TUNE_GRID
              : strategy && !strcmp(strategy, "random") ? STROP_TUNE_RANDOM
                                                        : STROP_TUNE_BAYES;
  strop_tuner *t = NULL;
  if ((s = strop_tuner_create(strat, (uint64_t)seed,
                              maximize ? STROP_TUNE_MAXIMIZE : STROP_TUNE_MINIMIZE, &t)))
    return s;
  pthread_mutex_init(&tc.mu, NULL);
  if ((s = add_params(r, params, t)) || (s = apply_tuner_knobs(r, tu, t)) ||
      (o.time_budget != 0 &&
       (s = strop_tuner_set_double(t, STROP_TUNE_TIME_BUDGET, o.time_budget))) ||
      (s = strop_tuner_get_int(t, STROP_TUNE_N_WORKERS, &workers)) ||
      (s = check_best_recipe_path(r, tu)))
    goto fail;
  char path[1024];
  if (strop__rd_path(r, tu, "trials_file", path, sizeof path)) {
    struct stat st;
    /* its folder, as a run's outputs get theirs (a fresh checkout has no out/) */
    char dir[1024];
    strop__path_dir(path, dir, sizeof dir);
    if (strop_dist_rank(o.dist) == 0 && (s = strop__mkdirs(FN, dir))) {
      strop__err_prefix("%s: tune.trials_file", r->file);
      goto fail;
    }
    if (o.resume && stat(path, &st) == 0 && st.st_size > 0) {
      if ((s = strop_tuner_resume(t, path))) goto fail;
      strop_tune_event te = search_event(STROP_TUNE_EVENT_RESUMED, t);
      te.path = path;
      te.key = "tune.trials_file";
      te.count = finished_trials(t);
      if (host_event(&tc, &te)) {
        s = strop__err(STROP_E_CANCELLED,
                       "%s: stopped by the host's callback before the first "
                       "trial",
                       FN);
        goto fail;
      }
    }
    /* over ranks only rank 0 writes it (every rank read it above) */
    if (strop_dist_rank(o.dist) == 0 && (s = strop_tuner_set_log(t, path))) goto fail;
  }
  if ((s = strop__recipe_build_model(r, STROP_RUN_FINETUNE, &tc.base))) goto fail;
  if (workers > 1 && strop_set_num_threads(1)) {
  } /* one BLAS thread per trial */
  /* tune.trials counts the finished trials of the file too; interrupted ones run again first */
  int64_t done = finished_trials(t);
  if (strop_dist_size(o.dist) > 1) {
    tc.no_prune = 1;
    s = run_over_ranks(t, trials > done ? trials - done : 0, &tc, o.dist);
  } else {
    s = strop_tuner_run(t, trials > done ? trials - done : 0, trial, &tc);
  }
  strop_model_free(tc.base);
  if (s) goto fail;
  /* the files written, told to the host in the order written */
  static const char *const keys[] = {"tune.trials_file", "tune.best_recipe", "tune.plot"};
  char written[3][1024];
  int wrote[3] = {0, 0, 0};
  wrote[0] = strop__rd_path(r, tu, "trials_file", written[0], sizeof written[0]) != NULL;
  int64_t best_id;
  double best;
  const int writer = strop_dist_rank(o.dist) == 0; /* over ranks: rank 0 writes */
  wrote[0] = wrote[0] && writer;
  if (writer && strop_tuner_best(t, &best_id, &best) == STROP_OK &&
      strop__rd_path(r, tu, "best_recipe", written[1], sizeof written[1])) {
    strop_recipe *br = NULL;
    if ((s = strop_recipe_clone(r, &br)) || (s = apply_values(t, best_id, br)) ||
        (s = strop__recipe_absolute_paths(br)) || (s = strop_recipe_save(br, written[1]))) {
      strop_recipe_free(br);
      goto fail;
    }
    strop_recipe_free(br);
    wrote[1] = 1;
  }
  if (writer && strop__rd_path(r, tu, "plot", written[2], sizeof written[2])) {
    if ((s = write_plot(t, metric, maximize, written[2]))) goto fail;
    wrote[2] = 1;
  }
  for (int i = 0; i < 3; i++) {
    if (!wrote[i]) continue;
    strop_tune_event te = search_event(STROP_TUNE_EVENT_OUTPUT, t);
    te.path = written[i];
    te.key = keys[i];
    if (host_event(&tc, &te)) break; /* the search is over: nothing left to stop */
  }
  pthread_mutex_destroy(&tc.mu);
  *out = t;
  return STROP_OK;
fail:
  pthread_mutex_destroy(&tc.mu);
  strop_tuner_free(t);
  return s;
}
