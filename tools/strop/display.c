/* SPDX-License-Identifier: MIT */
/* strop tool — what people see: a progress bar per epoch on a terminal (one plain line per
 * epoch otherwise), the end-of-run report as text or JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tool_progress_init(tool_progress *p, int quiet, volatile sig_atomic_t *interrupted) {
  memset(p, 0, sizeof *p);
  p->quiet = quiet;
  p->tty = isatty(STDERR_FILENO);
  p->interrupted = interrupted;
}

static void fmt_eta(double s, char *buf, size_t cap) {
  if (!(s >= 0) || s > 99 * 3600) {
    snprintf(buf, cap, "--");
  } else if (s >= 60) {
    snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
  } else {
    snprintf(buf, cap, "%.0fs", s);
  }
}

static void pct(char *buf, size_t cap, double v) {
  if (isnan(v)) snprintf(buf, cap, "  -  ");
  else snprintf(buf, cap, "%5.1f%%", 100 * v);
}

int tool_progress_event(const strop_run_event *e, void *user_data) {
  tool_progress *p = user_data;
  if (p->interrupted && *p->interrupted) return 1;
  if (p->quiet) return 0;
  if (e->kind == STROP_EVENT_STAGE_START) {
    if (p->bar_open) fputc('\n', stderr);
    p->bar_open = 0;
    p->stage_t0 = now_sec();
    fprintf(stderr, "stage %lld/%lld '%s': %lld of %lld parameters trainable\n",
            (long long)e->stage + 1, (long long)e->stages, e->name, (long long)e->trainable,
            (long long)e->total);
    return 0;
  }
  if (e->kind == STROP_EVENT_STAGE_END) {
    if (p->bar_open) fputc('\n', stderr);
    p->bar_open = 0;
    if (!isnan(e->test_accuracy))
      fprintf(stderr, "stage '%s' done: test accuracy %.2f%%, test loss %.4f (%.1f s)\n", e->name,
              100 * e->test_accuracy, e->test_loss, now_sec() - p->stage_t0);
    return 0;
  }
  const strop_progress *g = e->progress;
  char a[16], va[16], eta[16];
  if (g->phase == STROP_PHASE_BATCH) {
    if (!p->tty) return 0;
    double t = now_sec();
    if (t - p->last_draw < 0.1 && g->step < g->steps) return 0;
    p->last_draw = t;
    int width = 24, filled = g->steps > 0 ? (int)(width * g->step / g->steps) : 0;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
    bar[width] = '\0';
    double remaining = g->samples_per_sec > 0 && g->steps > 0
                           ? (double)(g->steps - g->step) * (g->elapsed > 0 ? 1.0 : 0.0) *
                                 ((t - p->stage_t0) / (double)(g->step > 0 ? g->step : 1)) /
                                 (double)(g->epoch + 1 > 0 ? 1 : 1)
                           : NAN;
    fmt_eta(remaining, eta, sizeof eta);
    pct(a, sizeof a, g->metric);
    fprintf(stderr,
            "\r  epoch %3lld/%-3lld [%s] %lld/%lld loss %.4f acc %s lr %.2e %6.0f samples/s ETA "
            "%s\x1b[K",
            (long long)g->epoch + 1, (long long)g->epochs, bar, (long long)g->step,
            (long long)g->steps, g->loss, a, g->lr, g->samples_per_sec, eta);
    fflush(stderr);
    p->bar_open = 1;
    return 0;
  }
  /* epoch end: one line */
  pct(a, sizeof a, g->metric);
  pct(va, sizeof va, g->val_metric);
  if (p->tty && p->bar_open) fputc('\r', stderr);
  fprintf(stderr, "  epoch %3lld/%-3lld loss %.4f acc %s", (long long)g->epoch + 1,
          (long long)g->epochs, g->loss, a);
  if (!isnan(g->val_loss)) fprintf(stderr, " | val loss %.4f acc %s", g->val_loss, va);
  fprintf(stderr, " | lr %.2e %6.0f samples/s%s\n", g->lr, g->samples_per_sec,
          p->tty ? "\x1b[K" : "");
  p->bar_open = 0;
  return 0;
}

void tool_progress_end(tool_progress *p) {
  if (p->bar_open) fputc('\n', stderr);
  p->bar_open = 0;
}

void tool_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

static void jnum(FILE *f, double v) {
  if (isnan(v) || isinf(v)) fputs("null", f);
  else fprintf(f, "%.6g", v);
}

void tool_report_json(FILE *f, const char *cmd, const char *recipe, strop_run *run) {
  fprintf(f, "{\"command\":");
  tool_json_str(f, cmd);
  fprintf(f, ",\"recipe\":");
  tool_json_str(f, recipe);
  fprintf(f,
          ",\"train_size\":%lld,\"val_size\":%lld,\"test_size\":%lld,\"classes\":%lld,"
          "\"trainable_params\":%lld,\"total_params\":%lld,\"best_epoch\":",
          (long long)strop_run_info(run, STROP_INFO_TRAIN_SIZE),
          (long long)strop_run_info(run, STROP_INFO_VAL_SIZE),
          (long long)strop_run_info(run, STROP_INFO_TEST_SIZE),
          (long long)strop_run_info(run, STROP_INFO_CLASSES),
          (long long)strop_run_info(run, STROP_INFO_TRAINABLE),
          (long long)strop_run_info(run, STROP_INFO_TOTAL));
  /* epochs are numbered from 1 here, as on screen and in the files (the API counts from 0) */
  int64_t best = strop_run_info(run, STROP_INFO_BEST_EPOCH);
  if (best >= 0) fprintf(f, "%lld", (long long)best + 1);
  else fputs("null", f);
  fprintf(f, ",\"seconds\":");
  jnum(f, strop_run_seconds(run));
  fprintf(f, ",\"stages\":[");
  int64_t n = strop_run_info(run, STROP_INFO_STAGES);
  for (int64_t i = 0; i < n; i++) {
    char name[64];
    strop_run_stage_name(run, i, name, sizeof name);
    fprintf(f, "%s{\"name\":", i ? "," : "");
    tool_json_str(f, name);
    fprintf(f, ",\"baseline\":%s,\"test_accuracy\":",
            strop_run_stage_is_baseline(run, i) ? "true" : "false");
    jnum(f, strop_run_stage_metric(run, i, STROP_METRIC_ACCURACY));
    fprintf(f, ",\"test_loss\":");
    jnum(f, strop_run_stage_metric(run, i, STROP_METRIC_LOSS));
    fprintf(f, ",\"val_accuracy\":");
    jnum(f, strop_run_stage_metric(run, i, 100 + STROP_METRIC_ACCURACY));
    fprintf(f, ",\"val_loss\":");
    jnum(f, strop_run_stage_metric(run, i, 100 + STROP_METRIC_LOSS));
    fprintf(f, "}");
  }
  fprintf(f, "],\"history\":[");
  int64_t rows = strop_run_info(run, STROP_INFO_EPOCHS);
  static const char *const cols[8] = {"stage",    "epoch",        "train_loss", "train_accuracy",
                                      "val_loss", "val_accuracy", "lr",         "seconds"};
  for (int64_t i = 0; i < rows; i++) {
    fprintf(f, "%s{", i ? "," : "");
    for (int k = 0; k < 8; k++) {
      fprintf(f, "%s\"%s\":", k ? "," : "", cols[k]);
      jnum(f, strop_run_history(run, i, k) + (k == 1 ? 1 : 0));
    }
    fprintf(f, "}");
  }
  fprintf(f, "]}\n");
}

void tool_report_text(FILE *f, const strop_recipe *r, strop_run *run) {
  (void)r;
  int64_t classes = strop_run_info(run, STROP_INFO_CLASSES);
  fprintf(f, "\n== report ==\n");
  fprintf(f, "data:       %lld training, %lld validation, %lld test samples",
          (long long)strop_run_info(run, STROP_INFO_TRAIN_SIZE),
          (long long)strop_run_info(run, STROP_INFO_VAL_SIZE),
          (long long)strop_run_info(run, STROP_INFO_TEST_SIZE));
  if (classes > 0) fprintf(f, "; %lld classes", (long long)classes);
  fprintf(f, "\nparameters: %lld trainable of %lld at the end\n",
          (long long)strop_run_info(run, STROP_INFO_TRAINABLE),
          (long long)strop_run_info(run, STROP_INFO_TOTAL));
  /* what is not the default float32 (model.compute_dtype, model.frozen_dtype) */
  static const char *const dtypes[] = {"f32", "bf16", "int8"};
  const strop_model *m = strop_run_model(run);
  const int cd = m ? strop_model_compute_dtype(m) : 0, fd = m ? strop_model_frozen_dtype(m) : 0;
  if (cd > 0 && cd <= 2)
    fprintf(f, "precision:  products in %s with f32 sums%s", dtypes[cd],
            m && !strop_model_weight_cache(m) ? ", weight cache off" : "");
  if (fd > 0 && fd <= 2)
    fprintf(f, "%sfrozen weights held in %s",
            cd > 0 && cd <= 2 ? "; " : "precision:  ", dtypes[fd]);
  if ((cd > 0 && cd <= 2) || (fd > 0 && fd <= 2)) fprintf(f, "\n");
  const int at = m ? strop_model_attention(m) : 0; /* model.attention, when not auto */
  if (at == STROP_ATTENTION_TILED || at == STROP_ATTENTION_MATERIALIZED)
    fprintf(f, "attention:  %s\n",
            at == STROP_ATTENTION_TILED ? "tiled (no T x T weights kept)"
                                        : "materialized (the T x T weights kept)");
  int64_t n = strop_run_info(run, STROP_INFO_STAGES),
          rows = strop_run_info(run, STROP_INFO_EPOCHS);
  fprintf(f, "%-22s %6s %10s %10s %10s %10s\n", "stage", "epochs", "val acc", "val loss",
          "test acc", "test loss");
  double last_main = NAN, scratch = NAN, first = NAN;
  char last_name[64] = "";
  for (int64_t i = 0; i < n; i++) {
    char name[64], label[80];
    strop_run_stage_name(run, i, name, sizeof name);
    int base = strop_run_stage_is_baseline(run, i);
    snprintf(label, sizeof label, "%s%s", name, base ? " (baseline)" : "");
    int64_t ep = 0;
    for (int64_t k = 0; k < rows; k++)
      if ((int64_t)strop_run_history(run, k, 0) == i) ep++;
    double va = strop_run_stage_metric(run, i, 100 + STROP_METRIC_ACCURACY),
           vl = strop_run_stage_metric(run, i, 100 + STROP_METRIC_LOSS),
           ta = strop_run_stage_metric(run, i, STROP_METRIC_ACCURACY),
           tl = strop_run_stage_metric(run, i, STROP_METRIC_LOSS);
    char s1[16], s2[16], s3[16], s4[16];
    if (isnan(va)) snprintf(s1, sizeof s1, "-");
    else snprintf(s1, sizeof s1, "%.2f%%", 100 * va);
    if (isnan(vl)) snprintf(s2, sizeof s2, "-");
    else snprintf(s2, sizeof s2, "%.4f", vl);
    if (isnan(ta)) snprintf(s3, sizeof s3, "-");
    else snprintf(s3, sizeof s3, "%.2f%%", 100 * ta);
    if (isnan(tl)) snprintf(s4, sizeof s4, "-");
    else snprintf(s4, sizeof s4, "%.4f", tl);
    fprintf(f, "%-22s %6lld %10s %10s %10s %10s\n", label, (long long)ep, s1, s2, s3, s4);
    /* a prediction per token (a language model): its perplexity, over the counted tokens */
    for (int part = 0; part < 2; part++) {
      int off = part ? 0 : 100;
      double toks = strop_run_stage_metric(run, i, off + STROP_METRIC_TOKENS),
             smp = strop_run_stage_metric(run, i, off + STROP_METRIC_SAMPLES),
             ppl = strop_run_stage_metric(run, i, off + STROP_METRIC_PERPLEXITY);
      if (!isnan(ppl) && toks > smp)
        fprintf(f, "%-22s %s perplexity %.4f over %.0f tokens (per-token accuracy %.2f%%)\n", "",
                part ? "test" : "val ", ppl, toks,
                100 * strop_run_stage_metric(run, i, off + STROP_METRIC_TOKEN_ACCURACY));
    }
    if (base) scratch = ta;
    else {
      if (isnan(first)) first = ta;
      last_main = ta;
      snprintf(last_name, sizeof last_name, "%s", name);
    }
  }
  if (!isnan(last_main) && !isnan(scratch))
    fprintf(f, "fine-tuned: %.2f%% test accuracy vs %.2f%% from scratch (%+.2f points)\n",
            100 * last_main, 100 * scratch, 100 * (last_main - scratch));
  int64_t best = strop_run_info(run, STROP_INFO_BEST_EPOCH);
  if (best >= 0) fprintf(f, "best epoch of stage '%s': %lld\n", last_name, (long long)best + 1);
  fprintf(f, "time:       %.1f s\n", strop_run_seconds(run));
}

/* ---- shapes, in a buffer that grows: a shape is never cut short ---- */
static int text_add(tool_text *t, const char *piece) {
  size_t n = strlen(piece);
  if (t->len + n + 1 > t->cap) {
    size_t cap = (t->len + n + 1) * 2;
    char *s = realloc(t->s, cap);
    if (!s) return -1;
    t->s = s;
    t->cap = cap;
  }
  memcpy(t->s + t->len, piece, n + 1);
  t->len += n;
  return 0;
}

int tool_shape_text(tool_text *t, const int64_t *dims, int rank) {
  t->len = 0;
  if (text_add(t, "[")) return -1;
  for (int k = 0; k < rank; k++) {
    char num[32];
    snprintf(num, sizeof num, "%s%lld", k ? ", " : "", (long long)dims[k]);
    if (text_add(t, num)) return -1;
  }
  return text_add(t, "]");
}

int tool_getter_text(tool_text *t, int64_t (*get)(const strop_st_file *, int64_t, char *, size_t),
                     const strop_st_file *file, int64_t i) {
  int64_t n = get(file, i, NULL, 0);
  if (n < 0) n = 0;
  if (tool_text_reserve(t, (size_t)n + 1)) return -1;
  t->s[0] = '\0';
  if (n > 0) get(file, i, t->s, (size_t)n + 1);
  t->len = (size_t)n;
  return 0;
}

int tool_text_reserve(tool_text *t, size_t n) {
  if (n <= t->cap) return 0;
  char *p = realloc(t->s, n);
  if (!p) return -1;
  t->s = p;
  t->cap = n;
  return 0;
}
