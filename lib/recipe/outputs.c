/* SPDX-License-Identifier: MIT */
/* strop — what a recipe run leaves behind: the fine-tuned weights and spec, LoRA adapters, a
 * metrics file (CSV or JSON lines), an SVG plot of loss and accuracy, a JSON report. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/numfmt.h"
#include "io/atomic.h"
#include "core/sbuf.h"
#include "recipe/plot.h"
#include "recipe/recipe_impl.h"
#include "strop/strop.h"
#include "strop/surgery.h"

#define FN "strop_recipe_run"

const char *strop__run_out_path(const strop_recipe *r, const strop__ynode *out, const char *key,
                                char *buf, size_t cap) {
  const char *name = strop__rd_str(out, key);
  if (!name) return NULL;
  char dir[1024];
  const strop__ynode *top = strop__ynode_get(r->root, "output");
  if (!strop__rd_path(r, top, "dir", dir, sizeof dir)) dir[0] = '\0';
  snprintf(buf, cap, "%s%s%s", dir, dir[0] ? "/" : "", name);
  return buf;
}

static void num(strop__sbuf *b, double v) {
  char t[STROP__FMT_DOUBLE_MAX];
  if (isnan(v) || isinf(v)) {
    strop__sbuf_puts(b, "null");
  } else {
    strop__fmt_double(v, t, sizeof t);
    strop__sbuf_puts(b, t);
  }
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

/* Files number epochs from 1, as the tool's screen does; the C API's history and progress
 * keep their 0-based index. */
static double epoch_number(double index) { return isnan(index) ? index : index + 1; }

/* One row of the metrics file: the 8 history columns (NaN: empty / null), then, when the run
 * logs steps, `step` and `kind` ("epoch" or "step"). */
static void metrics_row(strop__sbuf *b, const strop_run *run, int jsonl, const double *v,
                        const char *kind) {
  static const char *const cols[HC_N] = {
      "stage", "epoch",   "train_loss", "train_accuracy", "val_loss", "val_accuracy",
      "lr",    "seconds", "step"};
  const int64_t st = (int64_t)v[HC_STAGE];
  const char *name = st >= 0 && st < run->n_st ? run->st[st].name : "";
  const int last = run->log_every > 0 ? HC_STEP : HC_TIME;
  if (jsonl) {
    strop__sbuf_printf(b, "{\"stage\":%lld,\"stage_name\":", (long long)st);
    strop__sbuf_json_str(b, name);
    for (int k = 1; k <= last; k++) {
      strop__sbuf_printf(b, ",\"%s\":", cols[k]);
      num(b, k == HC_EPOCH ? epoch_number(v[k]) : v[k]);
    }
    if (run->log_every > 0) strop__sbuf_printf(b, ",\"kind\":\"%s\"", kind);
    strop__sbuf_puts(b, "}\n");
    return;
  }
  strop__sbuf_printf(b, "%lld,%s", (long long)st, name);
  for (int k = 1; k <= last; k++) {
    strop__sbuf_puts(b, ",");
    if (!isnan(v[k])) {
      char t[STROP__FMT_DOUBLE_MAX];
      strop__fmt_double(k == HC_EPOCH ? epoch_number(v[k]) : v[k], t, sizeof t);
      strop__sbuf_puts(b, t);
    }
  }
  if (run->log_every > 0) strop__sbuf_printf(b, ",%s", kind);
  strop__sbuf_puts(b, "\n");
}

/* Epoch rows as always; with train.log_every, the step rows too, each before the row of the
 * epoch it belongs to, and the columns `step` (the stage's optimizer steps) and `kind`. */
static strop_status write_metrics(const strop_run *run, const char *path) {
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  int jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
  if (!jsonl)
    strop__sbuf_printf(&b,
                       "stage,stage_name,epoch,train_loss,train_accuracy,val_loss,"
                       "val_accuracy,lr,seconds%s\n",
                       run->log_every > 0 ? ",step,kind" : "");
  int64_t j = 0;
  for (int64_t i = 0; i <= run->hist_len; i++) {
    const double *r = i < run->hist_len ? run->hist + i * HC_N : NULL;
    for (; j < run->steps_len; j++) { /* the steps up to this epoch's end */
      const double *sr = run->steps + j * SC_N;
      if (r && (sr[SC_STAGE] > r[HC_STAGE] ||
                (sr[SC_STAGE] == r[HC_STAGE] && sr[SC_EPOCH] > r[HC_EPOCH])))
        break;
      double v[HC_N];
      for (int k = 0; k < HC_N; k++) v[k] = NAN;
      v[HC_STAGE] = sr[SC_STAGE];
      v[HC_EPOCH] = sr[SC_EPOCH];
      v[HC_TLOSS] = sr[SC_LOSS];
      v[HC_LR] = sr[SC_LR];
      v[HC_TIME] = sr[SC_TIME];
      v[HC_STEP] = sr[SC_STEP];
      metrics_row(&b, run, jsonl, v, "step");
    }
    if (r) metrics_row(&b, run, jsonl, r, "epoch");
  }
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(FN);
  }
  strop_status s = strop__write_file_atomic(FN, path, b.s ? b.s : "", b.n);
  strop__sbuf_free(&b);
  return s;
}

/* One split's metrics as a JSON object: top-5 only with more than 5 classes; perplexity and
 * tokens only for a prediction per token (a language model: more tokens than samples, as the
 * tool's summary decides), null for one prediction per sample, where exp(loss) and a second
 * count of the samples say nothing. */
static void report_metrics(strop__sbuf *b, const double *m, int top5) {
  static const char *const mk[RUN_NM] = {"loss", "accuracy", "top5",       "macro_f1", "mse",
                                         "mae",  "samples",  "perplexity", "tokens"};
  const int per_token = m[STROP_METRIC_TOKENS] > m[STROP_METRIC_SAMPLES];
  strop__sbuf_puts(b, "{");
  for (int k = 0, first = 1; k < RUN_NM; k++) {
    if (k == STROP_METRIC_TOP5 && !top5) continue;
    strop__sbuf_printf(b, "%s\"%s\":", first ? "" : ",", mk[k]);
    const int token_only = k == STROP_METRIC_PERPLEXITY || k == STROP_METRIC_TOKENS;
    num(b, token_only && !per_token ? NAN : m[k]);
    first = 0;
  }
  strop__sbuf_puts(b, "}");
}

static strop_status write_report(const strop_run *run, const char *path) {
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  static const char *const info[] = {"train_size",       "val_size",     "test_size",
                                     "trainable_params", "total_params", "stages",
                                     "epochs",           "best_epoch",   "classes"};
  int top5 = run->info[STROP_INFO_CLASSES] > 5; /* top-5 says something only with more classes */
  strop__sbuf_puts(&b, "{");
  for (int i = 0; i < 9; i++) {
    int64_t v = run->info[i];
    if (i == STROP_INFO_BEST_EPOCH && v < 0) strop__sbuf_printf(&b, "\"%s\":null,", info[i]);
    else
      strop__sbuf_printf(&b, "\"%s\":%lld,", info[i],
                         (long long)(i == STROP_INFO_BEST_EPOCH ? v + 1 : v));
  }
  strop__sbuf_puts(&b, "\"seconds\":");
  num(&b, run->seconds);
  /* the precision the run trained in (model.compute_dtype, model.frozen_dtype) */
  static const char *const dt[] = {"f32", "bf16", "int8"};
  const int cd = run->model ? strop_model_compute_dtype(run->model) : 0;
  const int fd = run->model ? strop_model_frozen_dtype(run->model) : 0;
  strop__sbuf_printf(&b, ",\"compute_dtype\":\"%s\",\"frozen_dtype\":\"%s\"",
                     dt[cd >= 0 && cd <= 2 ? cd : 0], dt[fd >= 0 && fd <= 2 ? fd : 0]);
  strop__sbuf_puts(&b, ",\"stages_results\":[");
  for (int64_t i = 0; i < run->n_st; i++) {
    const strop__stage_result *s = &run->st[i];
    strop__sbuf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
    strop__sbuf_json_str(&b, s->name);
    strop__sbuf_printf(&b, ",\"baseline\":%s,\"test\":", s->baseline ? "true" : "false");
    report_metrics(&b, s->test, top5);
    strop__sbuf_puts(&b, ",\"val\":");
    report_metrics(&b, s->val, top5);
    strop__sbuf_puts(&b, "}");
  }
  strop__sbuf_puts(&b, "]}\n");
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(FN);
  }
  strop_status s = strop__write_file_atomic(FN, path, b.s, b.n);
  strop__sbuf_free(&b);
  return s;
}

/* ---- the SVG plot: loss (left) and accuracy (right) per epoch over all stages ---- */
typedef struct panel {
  double x, y, w, h; /* plot area in pixels */
  double lo, hi;     /* value range: the outer ticks */
  int64_t n;         /* epochs over the whole run (x from u0 to n) */
  int64_t u0;        /* 1: the first epoch's end on the left edge; 0 (with step rows): the
                        start of training */
} panel;

/* x of u epochs done over the whole run (epoch row i is at u = i + 1) */
static double px(const panel *p, double u) {
  return p->n > p->u0 ? p->x + p->w * ((u - (double)p->u0) / (double)(p->n - p->u0))
                      : p->x + p->w / 2;
}
/* half the distance between two epochs' ends */
static double half_epoch(const panel *p) {
  return p->n > p->u0 ? 0.5 * p->w / (double)(p->n - p->u0) : 0;
}
static double py(const panel *p, double v) {
  return p->y + p->h * (1.0 - (v - p->lo) / (p->hi - p->lo));
}

static const char *const C_TRAIN = "#1f77b4", *const C_VAL = "#d62728", *const C_BASE = "#8c8c8c",
                         *const C_BASE_VAL = "#bdbdbd", *const C_TEST = "#2ca02c",
                         *const C_STEP = "#9ecae1", *const C_BASE_STEP = "#d9d9d9";
static const char *const DASH = " stroke-dasharray=\"6 4\"";

/* One curve per stage; baseline stages (a separate run) in grey. */
static void series(strop__sbuf *b, const panel *p, const strop_run *run, int col,
                   const char *color, const char *base_color, int dashed) {
  int64_t last_stage = -1;
  int open = 0;
  for (int64_t i = 0; i <= run->hist_len; i++) {
    const double *r = i < run->hist_len ? run->hist + i * HC_N : NULL;
    int64_t st = r ? (int64_t)r[HC_STAGE] : -2;
    if (open && (!r || st != last_stage || isnan(r[col]))) {
      strop__sbuf_puts(b, "\"/>\n");
      open = 0;
    }
    if (!r) break;
    last_stage = st;
    if (isnan(r[col])) continue;
    const char *c = run->st[st].baseline ? base_color : color;
    if (!open) {
      strop__sbuf_printf(b,
                         "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                         c, dashed ? DASH : "");
      open = 1;
    }
    strop__sbuf_printf(b, "%.1f,%.1f ", px(p, (double)i + 1), py(p, r[col]));
  }
}

/* train.log_every's training loss: a thin line per stage under the epochs' curves */
static void step_series(strop__sbuf *b, const panel *p, const strop_run *run) {
  for (int64_t j = 0; j < run->steps_len; j++) {
    const double *r = run->steps + j * SC_N;
    const int first = j == 0 || run->steps[(j - 1) * SC_N + SC_STAGE] != r[SC_STAGE];
    const int last = j + 1 == run->steps_len ||
                     run->steps[(j + 1) * SC_N + SC_STAGE] != r[SC_STAGE];
    if (first)
      strop__sbuf_printf(b,
                         "<polyline class=\"steps\" fill=\"none\" stroke=\"%s\" "
                         "stroke-width=\"1\" points=\"",
                         run->st[(int64_t)r[SC_STAGE]].baseline ? C_BASE_STEP : C_STEP);
    if (isfinite(r[SC_LOSS]))
      strop__sbuf_printf(b, "%.1f,%.1f ", px(p, r[SC_DONE]), py(p, r[SC_LOSS]));
    if (last) strop__sbuf_puts(b, "\"/>\n");
  }
}

/* The test value after each stage: a diamond at the stage's last epoch, with its value. */
static void test_marks(strop__sbuf *b, const panel *p, const strop_run *run, int key,
                       int percent) {
  for (int64_t st = 0; st < run->n_st; st++) {
    double v = run->st[st].test[key];
    int64_t last = -1;
    for (int64_t i = 0; i < run->hist_len; i++)
      if ((int64_t)run->hist[i * HC_N + HC_STAGE] == st) last = i;
    if (isnan(v) || last < 0) continue;
    double x = px(p, (double)last + 1), y = py(p, v);
    strop__sbuf_printf(b,
                       "<path d=\"M %.1f %.1f l 6 6 l -6 6 l -6 -6 z\" fill=\"%s\" "
                       "stroke=\"white\"/>\n",
                       x, y - 6, C_TEST);
    if (percent)
      strop__sbuf_printf(b,
                         "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\" "
                         "text-anchor=\"end\">%.1f%%</text>\n",
                         x - 4, y + 18, C_TEST, 100 * v);
    else
      strop__sbuf_printf(b,
                         "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"%s\" "
                         "text-anchor=\"end\">%.3f</text>\n",
                         x - 4, y - 8, C_TEST, v);
  }
}

/* A stage's name in the band above the plot, centred over its epochs and shortened to fit, so
 * that no curve runs through it. */
static void stage_label(strop__sbuf *b, const panel *p, const strop_run *run, int64_t st,
                        int64_t first, int64_t last) {
  double half = p->n > p->u0 ? half_epoch(p) : p->w / 2;
  double x0 = fmax(p->x, px(p, (double)first + 1) - half),
         x1 = fmin(p->x + p->w, px(p, (double)last + 1) + half);
  char label[96];
  snprintf(label, sizeof label, "%s%s", run->st[st].name,
           run->st[st].baseline ? " (baseline)" : "");
  const double fs = 11, room = x1 - x0 - 4;
  if (strop__plot_text_width(label, fs) > room)
    snprintf(label, sizeof label, "%s", run->st[st].name);
  /* too long: the longest start of the name that fits with an ellipsis after it */
  for (size_t len = strlen(label); strop__plot_text_width(label, fs) > room;) {
    do len--;
    while (len > 0 && ((unsigned char)label[len] & 0xC0) == 0x80);
    if (len == 0) return; /* not even one letter fits */
    snprintf(label + len, sizeof label - len, "\xE2\x80\xA6");
  }
  strop__sbuf_printf(b,
                     "<text class=\"stage-label\" x=\"%.1f\" y=\"%.0f\" font-size=\"%.0f\" "
                     "fill=\"#555\" text-anchor=\"middle\">",
                     (x0 + x1) / 2, p->y - 6, fs);
  strop__plot_text(b, label);
  strop__sbuf_puts(b, "</text>\n");
}

static void draw_panel(strop__sbuf *b, panel *p, const strop_run *run, int ctrain, int cval,
                       int test_key, const char *title, int percent, int steps) {
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t j = 0; steps && j < run->steps_len; j++)
    if (isfinite(run->steps[j * SC_N + SC_LOSS])) {
      lo = fmin(lo, run->steps[j * SC_N + SC_LOSS]);
      hi = fmax(hi, run->steps[j * SC_N + SC_LOSS]);
    }
  for (int64_t i = 0; i < run->hist_len; i++) {
    const double *r = run->hist + i * HC_N;
    int cols[2] = {ctrain, cval};
    for (int k = 0; k < 2; k++)
      if (isfinite(r[cols[k]])) {
        lo = fmin(lo, r[cols[k]]);
        hi = fmax(hi, r[cols[k]]);
      }
  }
  for (int64_t st = 0; test_key >= 0 && st < run->n_st; st++)
    if (isfinite(run->st[st].test[test_key])) {
      lo = fmin(lo, run->st[st].test[test_key]);
      hi = fmax(hi, run->st[st].test[test_key]);
    }
  if (!isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  strop__ticks t;
  strop__plot_ticks(lo, hi, 5, &t);
  if (t.lo < 0 && lo >= 0) t.lo = 0; /* losses, accuracies and errors are never negative */
  p->lo = t.lo;
  p->hi = t.hi;
  strop__sbuf_printf(b,
                     "<rect class=\"frame\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
                     "fill=\"#fafafa\" stroke=\"#bbb\"/>\n",
                     p->x, p->y, p->w, p->h);
  strop__sbuf_printf(b,
                     "<text x=\"%.0f\" y=\"%.0f\" font-size=\"15\" font-weight=\"bold\" "
                     "text-anchor=\"middle\">",
                     p->x + p->w / 2, p->y - 26);
  strop__plot_text(b, title);
  strop__sbuf_puts(b, "</text>\n");
  /* y grid and round labels */
  int pct_decimals = t.decimals > 2 ? t.decimals - 2 : 0;
  for (int k = 0; k <= t.n; k++) {
    double v = strop__plot_tick(&t, k), yy = py(p, v);
    strop__sbuf_printf(
        b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n", p->x,
        p->x + p->w, yy, yy);
    strop__sbuf_printf(b,
                       "<text class=\"tick-y\" x=\"%.0f\" y=\"%.1f\" font-size=\"11\" "
                       "text-anchor=\"end\">",
                       p->x - 6, yy + 4);
    if (percent) strop__sbuf_printf(b, "%.*f%%", pct_decimals, 100 * v);
    else strop__sbuf_printf(b, "%.*f", t.decimals, v);
    strop__sbuf_puts(b, "</text>\n");
  }
  /* x labels: epoch numbers over the whole run, at multiples of a round step (and 0, the
   * start, when the step rows draw from there) */
  int64_t step = strop__plot_int_step(p->n, 8);
  for (int64_t e = p->u0 == 0               ? 0
                   : step >= 5 || p->n == 1 ? 1
                                            : step;
       e <= p->n; e = e == 0               ? step
                      : e == 1 && step > 1 ? step
                                           : e + step)
    strop__sbuf_printf(b,
                       "<text class=\"tick-x\" x=\"%.1f\" y=\"%.0f\" font-size=\"11\" "
                       "text-anchor=\"middle\">%lld</text>\n",
                       px(p, (double)e), p->y + p->h + 16, (long long)e);
  strop__sbuf_printf(
      b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">epoch</text>\n",
      p->x + p->w / 2, p->y + p->h + 34);
  /* stage boundaries, and each stage's name above its epochs */
  for (int64_t i = 0, first = 0; i < run->hist_len; i++) {
    int64_t st = (int64_t)run->hist[i * HC_N + HC_STAGE];
    int last = i + 1 == run->hist_len || (int64_t)run->hist[(i + 1) * HC_N + HC_STAGE] != st;
    if (i == first && i > 0) {
      double xx = px(p, (double)i + 1) - half_epoch(p);
      strop__sbuf_printf(b,
                         "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#888\" "
                         "stroke-dasharray=\"3 3\"/>\n",
                         xx, xx, p->y, p->y + p->h);
    }
    if (last) {
      stage_label(b, p, run, st, first, i);
      first = i + 1;
    }
  }
  if (steps) step_series(b, p, run);
  series(b, p, run, ctrain, C_TRAIN, C_BASE, 0);
  series(b, p, run, cval, C_VAL, C_BASE_VAL, 1);
  if (test_key >= 0) test_marks(b, p, run, test_key, percent);
}

/* The legend: one entry per kind of mark actually drawn, centred under the panels. */
typedef struct legend_entry {
  const char *color, *text;
  int dashed, diamond;
} legend_entry;

static void legend(strop__sbuf *b, const legend_entry *e, int n, double W, double y) {
  double total = 0;
  for (int i = 0; i < n; i++) total += 36 + strop__plot_text_width(e[i].text, 12) + 20;
  double x = (W - total + 20) / 2;
  for (int i = 0; i < n; i++) {
    strop__sbuf_puts(b, "<g class=\"legend\">");
    if (e[i].diamond)
      strop__sbuf_printf(b, "<path d=\"M %.0f %.0f l 6 6 l -6 6 l -6 -6 z\" fill=\"%s\"/>",
                         x + 15, y - 6, e[i].color);
    else
      strop__sbuf_printf(b,
                         "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                         "stroke-width=\"2\"%s/>",
                         x, x + 30, y, y, e[i].color, e[i].dashed ? DASH : "");
    strop__sbuf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">", x + 36, y + 4);
    strop__plot_text(b, e[i].text);
    strop__sbuf_puts(b, "</text></g>\n");
    x += 36 + strop__plot_text_width(e[i].text, 12) + 20;
  }
}

strop_status strop__run_plot_svg(const strop_run *run, const char *title, const char *path) {
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  const double W = 980, H = 440;
  strop__sbuf_printf(
      &b,
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n",
      W, H, W, H);
  strop__sbuf_puts(&b, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
  strop__sbuf_printf(&b, "<text x=\"%.0f\" y=\"24\" font-size=\"17\" text-anchor=\"middle\">",
                     W / 2);
  strop__plot_text(&b, title);
  strop__sbuf_puts(&b, "</text>\n");
  /* with step rows the axes start where training does (0 epochs done) */
  const int64_t u0 = run->steps_len > 0 ? 0 : 1;
  panel lp = {70, 84, 380, 260, 0, 1, run->hist_len, u0};
  panel rp = {560, 84, 380, 260, 0, 1, run->hist_len, u0};
  int cls = run->info[STROP_INFO_CLASSES] > 0;
  draw_panel(&b, &lp, run, HC_TLOSS, HC_VLOSS, STROP_METRIC_LOSS, "loss", 0, 1);
  draw_panel(&b, &rp, run, HC_TACC, HC_VACC, cls ? STROP_METRIC_ACCURACY : -1,
             cls ? "accuracy" : "validation MAE", cls, 0);
  /* legend: only what is drawn */
  int have_val = 0, have_test = 0, have_base = 0, have_base_val = 0;
  for (int64_t i = 0; i < run->hist_len; i++) {
    const double *r = run->hist + i * HC_N;
    int base = run->st[(int64_t)r[HC_STAGE]].baseline, val = !isnan(r[HC_VLOSS]);
    have_val |= val && !base;
    have_base |= base;
    have_base_val |= val && base;
  }
  for (int64_t st = 0; st < run->n_st; st++)
    have_test |= !isnan(run->st[st].test[STROP_METRIC_LOSS]);
  legend_entry e[6];
  int n = 0;
  char every[64];
  e[n++] = (legend_entry){C_TRAIN, "training", 0, 0};
  if (run->steps_len > 0) {
    snprintf(every, sizeof every, "training, every %lld steps", (long long)run->log_every);
    e[n++] = (legend_entry){C_STEP, every, 0, 0};
  }
  if (have_val) e[n++] = (legend_entry){C_VAL, "validation", 1, 0};
  if (have_test) e[n++] = (legend_entry){C_TEST, "test, after each stage", 0, 1};
  if (have_base)
    e[n++] = (legend_entry){
        C_BASE, have_base_val ? "baseline (from scratch): training" : "baseline (from scratch)",
        0, 0};
  if (have_base_val) e[n++] = (legend_entry){C_BASE_VAL, "baseline: validation", 1, 0};
  legend(&b, e, n, W, H - 24);
  strop__sbuf_puts(&b, "</svg>\n");
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(FN);
  }
  strop_status s = strop__write_file_atomic(FN, path, b.s, b.n);
  strop__sbuf_free(&b);
  return s;
}

/* Creates path's folder (with parents) unless it is one of the seen[0..*n) already, and
 * proves it can take a file. */
static strop_status ready_folder_of(const char *path, char seen[][1024], int *n) {
  char dir[1024];
  strop__path_dir(path, dir, sizeof dir);
  for (int i = 0; i < *n; i++)
    if (!strcmp(seen[i], dir)) return STROP_OK;
  static const char where[] = FN ": output (checked before training)";
  strop_status s = strop__mkdirs(where, dir);
  if (!s) s = strop__dir_probe(where, dir);
  if (s) return s;
  if (*n < 16) snprintf(seen[(*n)++], 1024, "%s", dir);
  return STROP_OK;
}

void strop__recipe_plain_path(const char *path, char *out, size_t cap) {
  char dir[1024], real[PATH_MAX], norm[PATH_MAX + 1024];
  const char *last = strop__path_dir(path, dir, sizeof dir);
  /* the folder's deepest ancestor that exists, resolved; the rest (folders a run makes later)
   * joined to it a component at a time, without '.' and empty ones, '..' taking one back */
  size_t head = strlen(dir);
  for (;;) {
    const char c = dir[head];
    dir[head] = '\0';
    const int ok = realpath(head ? dir : c == '/' ? "/" : ".", real) != NULL;
    dir[head] = c;
    if (ok) break;
    if (head == 0) {
      snprintf(out, cap, "%s", path);
      return;
    }
    while (head > 0 && dir[head - 1] != '/') head--; /* the last component's start */
    if (head > 0) head--;                            /* the '/' before it */
  }
  size_t n = strlen(real);
  memcpy(norm, real, n + 1);
  for (const char *p = dir + head; *p;) {
    while (*p == '/') p++;
    const char *e = p;
    while (*e && *e != '/') e++;
    const size_t len = (size_t)(e - p);
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      while (n > 1 && norm[n - 1] != '/') n--;
      n = n > 1 ? n - 1 : 1; /* "/" stays */
      norm[n] = '\0';
    } else if (len && !(len == 1 && p[0] == '.')) {
      if (n + len + 2 >= sizeof norm) break;
      if (n > 1 || norm[0] != '/') norm[n++] = '/';
      memcpy(norm + n, p, len);
      n += len;
      norm[n] = '\0';
    }
    p = e;
  }
  if (snprintf(out, cap, "%s%s%s", norm, strcmp(norm, "/") ? "/" : "", last) >= (int)cap)
    snprintf(out, cap, "%s", path);
}

/* Refuses a second output key naming the file (or folder) an earlier one names: one would
 * overwrite the other (output.spec: weights.safetensors left the weights' file holding YAML). */
static strop_status distinct_output(const strop_recipe *r, const char *key, const char *path,
                                    char names[][2048], const char **keys, int *n) {
  char plain[2048];
  strop__recipe_plain_path(path, plain, sizeof plain);
  for (int i = 0; i < *n; i++)
    if (!strcmp(names[i], plain))
      return strop__err(STROP_E_FORMAT,
                        "%s: %s: %s and %s both name '%s': one would overwrite the other; give "
                        "each output its own file",
                        FN, r->file, keys[i], key, path);
  if (*n < 16) snprintf(names[*n], sizeof names[0], "%s", plain), keys[(*n)++] = key;
  return STROP_OK;
}

strop_status strop__run_prepare_outputs(const strop_recipe *r) {
  const strop__ynode *out = strop__ynode_get(r->root, "output");
  if (!out || strop__ynode_is_null(out)) return STROP_OK;
  static const char *const files[] = {"weights", "spec",   "checkpoint", "metrics",
                                      "plot",    "report", "lora",       "pretrained"};
  static const char *const keys[] = {"output.weights", "output.spec",      "output.checkpoint",
                                     "output.metrics", "output.plot",      "output.report",
                                     "output.lora",    "output.pretrained"};
  static const char *const ex_keys[] = {"output.export.spec", "output.export.weights"};
  char seen[16][1024], path[1200], dir[1024];
  char(*names)[2048] = strop__malloc(16 * sizeof *names); /* 32 KB: not on a host's stack */
  if (!names) return STROP__NOMEM(FN);
  const char *named[16];
  int n = 0, nn = 0;
  /* the folder itself, even when no file is named (a probe file stands for its contents) */
  if (!strop__rd_path(r, out, "dir", dir, sizeof dir)) dir[0] = '\0';
  snprintf(path, sizeof path, "%s%s.", dir, dir[0] ? "/" : "");
  strop_status s = ready_folder_of(path, seen, &n);
  for (size_t i = 0; !s && i < sizeof files / sizeof files[0]; i++)
    if (strop__run_out_path(r, out, files[i], path, sizeof path) &&
        !(s = ready_folder_of(path, seen, &n)))
      s = distinct_output(r, keys[i], path, names, named, &nn);
  const strop__ynode *ex = strop__ynode_get(out, "export");
  if (!s && ex && ex->type == STROP__Y_MAP)
    for (int i = 0; !s && i < 2; i++)
      if (strop__run_out_path(r, ex, i ? "weights" : "spec", path, sizeof path) &&
          !(s = ready_folder_of(path, seen, &n)))
        s = distinct_output(r, ex_keys[i], path, names, named, &nn);
  strop__free(names);
  return s;
}

/* output.pretrained: the model as a Hugging Face folder again (config.json, model.safetensors
 * with the checkpoint's names, LoRA folded in), and for text data its tokenizer beside it as
 * tokenizer.json, so that model.pretrained and `strop generate` load the folder as they
 * loaded the original. A tokenizer without a tokenizer.json form (a SentencePiece .model) is
 * left out. */
static strop_status save_pretrained(const strop_recipe *r, const strop_model *m,
                                    const char *dir) {
  strop_status s = strop_model_save_pretrained(m, dir);
  if (s) {
    strop__err_prefix("%s: %s: output.pretrained", FN, r->file);
    return s;
  }
  const strop__ynode *d = strop__ynode_get(r->root, "data");
  const char *src = d ? strop__rd_str(d, "source") : NULL;
  char tp[1024], path[1200];
  int text = src && (!strcmp(src, "jsonl") || !strcmp(src, "text") ||
                     (!strcmp(src, "csv") && strop__ynode_get(d, "tokenizer")));
  if (!text ||
      (!strop__rd_path(r, d, "tokenizer", tp, sizeof tp) &&
       !strop__rd_path(r, strop__ynode_get(r->root, "model"), "pretrained", tp, sizeof tp)))
    return STROP_OK;
  strop_tokenizer *tok = NULL;
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  s = strop_tokenizer_load(tp, NULL, &tok);
  if (!s) s = strop_tokenizer_save(tok, path);
  strop_tokenizer_free(tok);
  if (s == STROP_E_UNSUPPORTED) return STROP_OK;
  if (s) strop__err_prefix("%s: %s: output.pretrained", FN, r->file);
  return s;
}

strop_status strop__run_write_outputs(const strop_recipe *r, strop_run *run) {
  const strop__ynode *out = strop__ynode_get(r->root, "output");
  if (!out || strop__ynode_is_null(out)) return STROP_OK;
  char dir[1024] = "", path[1200];
  if (!strop__rd_path(r, out, "dir", dir, sizeof dir)) dir[0] = '\0';
  strop_status s = strop__mkdirs(FN, dir);
  if (s) return s;
#define OUT_PATH(key) strop__run_out_path(r, out, key, path, sizeof path)
  const char *p;
  int merge = 0;
  if ((s = strop__rd_bool(r, out, "merge_lora", &merge))) return s;
  if ((p = OUT_PATH("lora")) && (s = strop_model_lora_save(run->model, p))) return s;
  if (merge && (s = strop_model_lora_merge(run->model))) return s;
  if ((p = OUT_PATH("weights")) && (s = strop_model_save_weights(run->model, p))) return s;
  if ((p = OUT_PATH("pretrained")) && (s = save_pretrained(r, run->model, p))) return s;
  if ((p = OUT_PATH("spec")) && (s = strop_model_save_spec(run->model, p))) return s;
  const strop__ynode *ex = strop__ynode_get(out, "export");
  if (ex && ex->type == STROP__Y_MAP) {
    const char *es = strop__rd_str(ex, "spec"), *ew = strop__rd_str(ex, "weights");
    int fold = 1, keep = 0;
    if ((s = strop__rd_bool(r, ex, "fold_bn", &fold)) ||
        (s = strop__rd_bool(r, ex, "keep_dropout", &keep)))
      return s;
    if (!es || !ew)
      return strop__recipe_err(FN, r, ex, STROP_E_FORMAT,
                               "'output.export' needs 'spec' and 'weights'");
    char sp[1200], wp[1200];
    strop__run_out_path(r, ex, "spec", sp, sizeof sp);
    strop__run_out_path(r, ex, "weights", wp, sizeof wp);
    if ((s = strop_model_export(
             run->model, sp, wp,
             (fold ? 0 : STROP_EXPORT_NO_FOLD) | (keep ? STROP_EXPORT_KEEP_DROPOUT : 0))))
      return s;
  }
  if ((p = OUT_PATH("metrics")) && (s = write_metrics(run, p))) return s;
  if ((p = OUT_PATH("report")) && (s = write_report(run, p))) return s;
  if ((p = OUT_PATH("plot"))) {
    const char *d = strop__rd_str(r->root, "description");
    if ((s = strop__run_plot_svg(run, d ? d : r->file, p))) return s;
  }
#undef OUT_PATH
  return STROP_OK;
}
