/* strop — what a recipe run leaves behind: the fine-tuned weights and spec, LoRA adapters, a
 * metrics file (CSV or JSON lines), an SVG plot of loss and accuracy, a JSON report. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/numfmt.h"
#include "io/atomic.h"
#include "io/sbuf.h"
#include "recipe/recipe_impl.h"
#include "strop/strop.h"
#include "strop/surgery.h"

#define FN "strop_recipe_run"

static strop_status mkdirs(const char *path) {
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s", path);
  size_t n = strlen(tmp);
  if (n == 0) return STROP_OK;
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] != '/' && tmp[i] != '\0') continue;
    char c = tmp[i];
    tmp[i] = '\0';
    if (mkdir(tmp, 0775) != 0 && errno != EEXIST)
      return strop__err(STROP_E_IO, "%s: cannot create the folder %s: %s", FN, tmp, strerror(errno));
    tmp[i] = c;
  }
  return STROP_OK;
}

/* A number as JSON: the shortest text that reads back to the same double, or null. */
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

static strop_status write_metrics(const strop_run *run, const char *path) {
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  int jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
  static const char *const cols[HC_N] = {"stage", "epoch", "train_loss", "train_accuracy",
                                         "val_loss", "val_accuracy", "lr", "seconds"};
  if (!jsonl) strop__sbuf_puts(&b, "stage,stage_name,epoch,train_loss,train_accuracy,val_loss,"
                                   "val_accuracy,lr,seconds\n");
  for (int64_t i = 0; i < run->hist_len; i++) {
    const double *r = run->hist + i * HC_N;
    int64_t st = (int64_t)r[HC_STAGE];
    const char *name = st >= 0 && st < run->n_st ? run->st[st].name : "";
    if (jsonl) {
      strop__sbuf_printf(&b, "{\"stage\":%lld,\"stage_name\":", (long long)st);
      strop__sbuf_json_str(&b, name);
      for (int k = 1; k < HC_N; k++) {
        strop__sbuf_printf(&b, ",\"%s\":", cols[k]);
        num(&b, r[k]);
      }
      strop__sbuf_puts(&b, "}\n");
    } else {
      strop__sbuf_printf(&b, "%lld,%s", (long long)st, name);
      for (int k = 1; k < HC_N; k++) {
        strop__sbuf_puts(&b, ",");
        if (!isnan(r[k])) {
          char t[STROP__FMT_DOUBLE_MAX];
          strop__fmt_double(r[k], t, sizeof t);
          strop__sbuf_puts(&b, t);
        }
      }
      strop__sbuf_puts(&b, "\n");
    }
  }
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(FN);
  }
  strop_status s = strop__write_file_atomic(FN, path, b.s ? b.s : "", b.n);
  strop__sbuf_free(&b);
  return s;
}

static strop_status write_report(const strop_run *run, const char *path) {
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  static const char *const info[] = {"train_size", "val_size", "test_size", "trainable_params",
                                     "total_params", "stages", "epochs", "best_epoch", "classes"};
  static const char *const mk[RUN_NM] = {"loss", "accuracy", "top5", "macro_f1", "mse", "mae",
                                         "samples"};
  strop__sbuf_puts(&b, "{");
  for (int i = 0; i < 9; i++) strop__sbuf_printf(&b, "\"%s\":%lld,", info[i], (long long)run->info[i]);
  strop__sbuf_puts(&b, "\"seconds\":");
  num(&b, run->seconds);
  strop__sbuf_puts(&b, ",\"stages_results\":[");
  for (int64_t i = 0; i < run->n_st; i++) {
    const strop__stage_result *s = &run->st[i];
    strop__sbuf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
    strop__sbuf_json_str(&b, s->name);
    strop__sbuf_printf(&b, ",\"baseline\":%s,\"test\":{", s->baseline ? "true" : "false");
    for (int k = 0; k < RUN_NM; k++) {
      strop__sbuf_printf(&b, "%s\"%s\":", k ? "," : "", mk[k]);
      num(&b, s->test[k]);
    }
    strop__sbuf_puts(&b, "},\"val\":{");
    for (int k = 0; k < RUN_NM; k++) {
      strop__sbuf_printf(&b, "%s\"%s\":", k ? "," : "", mk[k]);
      num(&b, s->val[k]);
    }
    strop__sbuf_puts(&b, "}}");
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
static void xml_text(strop__sbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '<') strop__sbuf_puts(b, "&lt;");
    else if (*s == '>') strop__sbuf_puts(b, "&gt;");
    else if (*s == '&') strop__sbuf_puts(b, "&amp;");
    else strop__sbuf_put(b, s, 1);
  }
}

typedef struct panel {
  double x, y, w, h;   /* plot area in pixels */
  double lo, hi;       /* value range */
  int64_t n;           /* epochs (x from 1 to n) */
} panel;

static double px(const panel *p, double i) {
  return p->n > 1 ? p->x + p->w * (i / (double)(p->n - 1)) : p->x + p->w / 2;
}
static double py(const panel *p, double v) {
  return p->y + p->h * (1.0 - (v - p->lo) / (p->hi - p->lo));
}

static void nice_range(double *lo, double *hi) {
  if (!(*hi > *lo)) {
    *lo -= 0.5;
    *hi += 0.5;
  }
  double pad = 0.05 * (*hi - *lo);
  *lo -= pad;
  *hi += pad;
}

/* One curve per stage; baseline stages (a separate run) in grey. */
static void series(strop__sbuf *b, const panel *p, const strop_run *run, int col, const char *color,
                   const char *base_color, int dashed) {
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
      strop__sbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", c,
                         dashed ? " stroke-dasharray=\"6 4\"" : "");
      open = 1;
    }
    strop__sbuf_printf(b, "%.1f,%.1f ", px(p, (double)i), py(p, r[col]));
  }
}

/* The test value after each stage: a diamond at the stage's last epoch, with its value. */
static void test_marks(strop__sbuf *b, const panel *p, const strop_run *run, int key, int percent) {
  for (int64_t st = 0; st < run->n_st; st++) {
    double v = run->st[st].test[key];
    int64_t last = -1;
    for (int64_t i = 0; i < run->hist_len; i++)
      if ((int64_t)run->hist[i * HC_N + HC_STAGE] == st) last = i;
    if (isnan(v) || last < 0) continue;
    double x = px(p, (double)last), y = py(p, v);
    strop__sbuf_printf(b, "<path d=\"M %.1f %.1f l 6 6 l -6 6 l -6 -6 z\" fill=\"#2ca02c\" "
                          "stroke=\"white\"/>\n", x, y - 6);
    if (percent)
      strop__sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#2ca02c\" "
                            "text-anchor=\"end\">%.1f%%</text>\n", x - 4, y + 18, 100 * v);
    else
      strop__sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#2ca02c\" "
                            "text-anchor=\"end\">%.3f</text>\n", x - 4, y - 8, v);
  }
}

static void draw_panel(strop__sbuf *b, panel *p, const strop_run *run, int ctrain, int cval,
                       int test_key, const char *title, int percent) {
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < run->hist_len; i++) {
    const double *r = run->hist + i * HC_N;
    int cols[2] = {ctrain, cval};
    for (int k = 0; k < 2; k++)
      if (!isnan(r[cols[k]])) {
        lo = fmin(lo, r[cols[k]]);
        hi = fmax(hi, r[cols[k]]);
      }
  }
  for (int64_t st = 0; test_key >= 0 && st < run->n_st; st++)
    if (!isnan(run->st[st].test[test_key])) {
      lo = fmin(lo, run->st[st].test[test_key]);
      hi = fmax(hi, run->st[st].test[test_key]);
    }
  if (!isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  nice_range(&lo, &hi);
  if (percent) hi = fmin(1.0, hi);
  lo = fmax(0.0, lo); /* losses, accuracies and errors are never negative */
  p->lo = lo;
  p->hi = hi;
  strop__sbuf_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
                        "stroke=\"#bbb\"/>\n", p->x, p->y, p->w, p->h);
  strop__sbuf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"15\" font-weight=\"bold\" "
                        "text-anchor=\"middle\">", p->x + p->w / 2, p->y - 12);
  xml_text(b, title);
  strop__sbuf_puts(b, "</text>\n");
  /* y grid and labels */
  for (int k = 0; k <= 4; k++) {
    double v = lo + (hi - lo) * k / 4.0, yy = py(p, v);
    strop__sbuf_printf(b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
                       p->x, p->x + p->w, yy, yy);
    if (percent)
      strop__sbuf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0f%%</text>\n",
                         p->x - 6, yy + 4, 100 * v);
    else
      strop__sbuf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.3g</text>\n",
                         p->x - 6, yy + 4, v);
  }
  /* x labels: epoch numbers over the whole run */
  int64_t step = p->n > 20 ? (p->n + 9) / 10 : p->n > 10 ? 2 : 1;
  for (int64_t i = 0; i < p->n; i += step)
    strop__sbuf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%lld</text>\n",
                       px(p, (double)i), p->y + p->h + 16, (long long)i + 1);
  strop__sbuf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">epoch</text>\n",
                     p->x + p->w / 2, p->y + p->h + 34);
  /* stage boundaries */
  int64_t prev = -1;
  for (int64_t i = 0; i < run->hist_len; i++) {
    int64_t st = (int64_t)run->hist[i * HC_N + HC_STAGE];
    if (st == prev) continue;
    prev = st;
    double xx = px(p, (double)i) - (i > 0 && p->n > 1 ? 0.5 * p->w / (double)(p->n - 1) : 0);
    if (i > 0)
      strop__sbuf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#888\" "
                            "stroke-dasharray=\"3 3\"/>\n", xx, xx, p->y, p->y + p->h);
    strop__sbuf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" fill=\"#555\">", xx + 5, p->y + 14);
    xml_text(b, run->st[st].name);
    if (run->st[st].baseline) strop__sbuf_puts(b, " (baseline)");
    strop__sbuf_puts(b, "</text>\n");
  }
  series(b, p, run, ctrain, "#1f77b4", "#8c8c8c", 0);
  series(b, p, run, cval, "#d62728", "#bdbdbd", 1);
  if (test_key >= 0) test_marks(b, p, run, test_key, percent);
}

strop_status strop__run_plot_svg(const strop_run *run, const char *title, const char *path) {
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  const double W = 980, H = 420;
  strop__sbuf_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                         "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, sans-serif\">\n",
                     W, H, W, H);
  strop__sbuf_puts(&b, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
  strop__sbuf_printf(&b, "<text x=\"%.0f\" y=\"24\" font-size=\"17\" text-anchor=\"middle\">", W / 2);
  xml_text(&b, title);
  strop__sbuf_puts(&b, "</text>\n");
  panel lp = {70, 70, 380, 270, 0, 1, run->hist_len};
  panel rp = {560, 70, 380, 270, 0, 1, run->hist_len};
  int cls = run->info[STROP_INFO_CLASSES] > 0;
  draw_panel(&b, &lp, run, HC_TLOSS, HC_VLOSS, STROP_METRIC_LOSS, "loss", 0);
  draw_panel(&b, &rp, run, HC_TACC, HC_VACC, cls ? STROP_METRIC_ACCURACY : -1,
             cls ? "accuracy" : "validation MAE", cls);
  /* legend: only what is drawn */
  int have_val = 0, have_test = 0, have_base = 0;
  for (int64_t i = 0; i < run->hist_len; i++) have_val |= !isnan(run->hist[i * HC_N + HC_VLOSS]);
  for (int64_t st = 0; st < run->n_st; st++) {
    have_test |= !isnan(run->st[st].test[STROP_METRIC_LOSS]);
    have_base |= run->st[st].baseline;
  }
  double lx = 250, ly = H - 28;
  strop__sbuf_printf(&b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#1f77b4\" "
                         "stroke-width=\"2\"/><text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">training</text>\n",
                     lx, lx + 30, ly, ly, lx + 36, ly + 4);
  lx += 120;
  if (have_val) {
    strop__sbuf_printf(&b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#d62728\" "
                           "stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"%.0f\" y=\"%.0f\" "
                           "font-size=\"12\">validation</text>\n", lx, lx + 30, ly, ly, lx + 36, ly + 4);
    lx += 130;
  }
  if (have_test) {
    strop__sbuf_printf(&b, "<path d=\"M %.0f %.0f l 6 6 l -6 6 l -6 -6 z\" fill=\"#2ca02c\"/>"
                           "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">test, after the stage</text>\n",
                       lx + 10, ly - 6, lx + 22, ly + 4);
    lx += 180;
  }
  if (have_base)
    strop__sbuf_printf(&b, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#8c8c8c\" "
                           "stroke-width=\"2\"/><text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">baseline "
                           "(from scratch)</text>\n", lx, lx + 30, ly, ly, lx + 36, ly + 4);
  strop__sbuf_puts(&b, "</svg>\n");
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(FN);
  }
  strop_status s = strop__write_file_atomic(FN, path, b.s, b.n);
  strop__sbuf_free(&b);
  return s;
}

strop_status strop__run_write_outputs(const strop_recipe *r, strop_run *run) {
  const strop__ynode *out = strop__ynode_get(r->root, "output");
  if (!out || strop__ynode_is_null(out)) return STROP_OK;
  char dir[1024] = "", path[1200];
  if (!strop__rd_path(r, out, "dir", dir, sizeof dir)) dir[0] = '\0';
  strop_status s = mkdirs(dir);
  if (s) return s;
#define OUT_PATH(key)                                                                         \
  (strop__rd_str(out, key) ? (snprintf(path, sizeof path, "%s%s%s", dir, dir[0] ? "/" : "",   \
                                       strop__rd_str(out, key)), path)                        \
                           : NULL)
  const char *p;
  int merge = 0;
  if ((s = strop__rd_bool(r, out, "merge_lora", &merge))) return s;
  if ((p = OUT_PATH("lora")) && (s = strop_model_lora_save(run->model, p))) return s;
  if (merge && (s = strop_model_lora_merge(run->model))) return s;
  if ((p = OUT_PATH("weights")) && (s = strop_model_save_weights(run->model, p))) return s;
  if ((p = OUT_PATH("spec")) && (s = strop_model_save_spec(run->model, p))) return s;
  const strop__ynode *ex = strop__ynode_get(out, "export");
  if (ex && ex->type == STROP__Y_MAP) {
    const char *es = strop__rd_str(ex, "spec"), *ew = strop__rd_str(ex, "weights");
    int fold = 1, keep = 0;
    if ((s = strop__rd_bool(r, ex, "fold_bn", &fold)) || (s = strop__rd_bool(r, ex, "keep_dropout", &keep)))
      return s;
    if (!es || !ew)
      return strop__recipe_err(FN, r, ex, STROP_E_FORMAT, "'output.export' needs 'spec' and 'weights'");
    char sp[1200], wp[1200];
    snprintf(sp, sizeof sp, "%s%s%s", dir, dir[0] ? "/" : "", es);
    snprintf(wp, sizeof wp, "%s%s%s", dir, dir[0] ? "/" : "", ew);
    if ((s = strop_model_export(run->model, sp, wp, (fold ? 0 : STROP_EXPORT_NO_FOLD) |
                                                     (keep ? STROP_EXPORT_KEEP_DROPOUT : 0))))
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
