/* SPDX-License-Identifier: MIT */
/* strop tool — `strop tune RECIPE`: runs the recipe's tune: section (the search is the
 * library's strop_recipe_tune) and prints a live table: one row per trial with its values,
 * its metric, its status and the best so far; then the best values and the files written. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

enum { COL_MAX = 18, COL_MIN = 10, MAX_COLS = 64 };

typedef struct tune_view {
  int quiet, tty;
  int maximize;
  double best;
  volatile sig_atomic_t *interrupted;
  int header_done;
  int epoch_line_open;
  /* the columns: headers abbreviated to fit, and their widths */
  char head[MAX_COLS][COL_MAX + 1];
  int width[MAX_COLS];
  int64_t n_cols;
  /* what the search told */
  int64_t resumed; /* finished trials read from the trials file (-1: none read) */
  int64_t ran, interrupted_id, n_interrupted;
  char trials_file[1024], best_recipe[1024], plot[1024];
} tune_view;

/* A key path shortened to at most `width` characters, its start kept: the parts before the
 * last are cut to their first letter from the left ("stages[0].optimizer.lr" becomes
 * "s[0].optimizer.lr", then "s[0].o.lr"); a last part still too long loses its end ("~"). */
static void abbreviate(const char *name, int width, char *out) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", name);
  size_t n = strlen(buf);
  char *last = strrchr(buf, '.');
  for (char *seg = buf; n > (size_t)width && last && seg < last;) {
    char *end = seg;
    while (*end && *end != '.' && *end != '[') end++; /* the word of this part */
    if (end - seg > 1) {
      memmove(seg + 1, end, strlen(end) + 1);
      n -= (size_t)(end - seg - 1);
      last = strrchr(buf, '.');
    }
    char *dot = strchr(seg, '.');
    if (!dot) break;
    seg = dot + 1;
  }
  if (n > (size_t)width) {
    buf[width - 1] = '~';
    buf[width] = '\0';
    n = (size_t)width;
  }
  memcpy(out, buf, n + 1); /* (width <= COL_MAX: out holds it) */
}

static void setup_columns(tune_view *v, const strop_tuner *t) {
  v->n_cols = strop_tuner_num_params(t);
  if (v->n_cols > MAX_COLS) v->n_cols = MAX_COLS;
  for (int64_t i = 0; i < v->n_cols; i++) {
    abbreviate(strop_tuner_param_name(t, i), COL_MAX, v->head[i]);
    int w = (int)strlen(v->head[i]);
    v->width[i] = w < COL_MIN ? COL_MIN : w;
  }
}

static void header(tune_view *v, const strop_tuner *t) {
  int shortened = 0;
  for (int64_t i = 0; i < v->n_cols; i++)
    shortened |= strcmp(v->head[i], strop_tuner_param_name(t, i)) != 0;
  if (shortened) {
    printf("columns:");
    for (int64_t i = 0; i < v->n_cols; i++)
      if (strcmp(v->head[i], strop_tuner_param_name(t, i)))
        printf(" %s = %s;", v->head[i], strop_tuner_param_name(t, i));
    printf("\n");
  }
  printf("%6s", "trial");
  for (int64_t i = 0; i < v->n_cols; i++) printf("  %*s", v->width[i], v->head[i]);
  printf(" %10s %11s %10s\n", "metric", "status", "best");
}

static const char *status_name(int status) {
  static const char *const names[] = {"ok", "failed", "pruned", "running", "interrupted"};
  return status >= 0 && status <= 4 ? names[status] : "?";
}

/* Parameter i of trial id as text: the choice, the integer, or the float to 6 digits. */
static void value_text(const strop_tuner *t, int64_t id, int64_t i, char *buf, size_t cap) {
  const char *name = strop_tuner_param_name(t, i);
  double x = NAN;
  if (strop_tuner_param_kind(t, i) == STROP_PARAM_CATEGORICAL) {
    size_t len;
    if (strop_tuner_trial_categorical(t, id, name, NULL, buf, cap, &len)) snprintf(buf, cap, "?");
  } else if (strop_tuner_trial_value(t, id, i, &x)) {
    snprintf(buf, cap, "?");
  } else if (strop_tuner_param_kind(t, i) == STROP_PARAM_INT) {
    snprintf(buf, cap, "%lld", (long long)x);
  } else {
    snprintf(buf, cap, "%.6g", x);
  }
}

static int on_tune(const strop_tune_event *e, void *u) {
  tune_view *v = u;
  const strop_tuner *t = e->tuner;
  int stop = v->interrupted && *v->interrupted;
  if (e->kind == STROP_TUNE_EVENT_RESUMED) {
    v->resumed = e->count;
    int64_t again = strop_tuner_num_trials(t) - e->count;
    if (!v->quiet) {
      fprintf(stderr, "resuming %lld finished trial%s from %s", (long long)e->count,
              e->count == 1 ? "" : "s", e->path);
      if (again > 0)
        fprintf(stderr, "; %lld interrupted one%s run%s again first", (long long)again,
                again == 1 ? "" : "s", again == 1 ? "s" : "");
      fprintf(stderr, "\n");
    }
    return stop;
  }
  if (e->kind == STROP_TUNE_EVENT_OUTPUT) {
    char *dst = !strcmp(e->key, "tune.trials_file")   ? v->trials_file
                : !strcmp(e->key, "tune.best_recipe") ? v->best_recipe
                : !strcmp(e->key, "tune.plot")        ? v->plot
                                                      : NULL;
    if (dst) snprintf(dst, sizeof v->plot, "%s", e->path);
    return 0;
  }
  if (e->kind == STROP_TUNE_EVENT_EPOCH) {
    if (v->tty && !v->quiet) {
      fprintf(stderr, "\r  trial %lld: epoch %lld metric %.4f\x1b[K", (long long)e->trial_id,
              (long long)e->epoch, e->value);
      fflush(stderr);
      v->epoch_line_open = 1;
    }
    return stop;
  }
  if (e->kind != STROP_TUNE_EVENT_TRIAL_END) return stop;
  v->ran++;
  if (e->status == STROP_TRIAL_INTERRUPTED) {
    v->n_interrupted++;
    v->interrupted_id = e->trial_id;
  }
  /* this trial is told after the event, so fold it into the best here */
  if (e->status == STROP_TRIAL_OK && isfinite(e->value) &&
      (isnan(v->best) || (v->maximize ? e->value > v->best : e->value < v->best)))
    v->best = e->value;
  if (v->quiet) return stop;
  if (v->epoch_line_open) {
    fprintf(stderr, "\r\x1b[K");
    v->epoch_line_open = 0;
  }
  if (!v->header_done) {
    header(v, t);
    v->header_done = 1;
  }
  printf("%6lld", (long long)e->trial_id);
  for (int64_t i = 0; i < v->n_cols; i++) {
    char buf[64];
    value_text(t, e->trial_id, i, buf, sizeof buf);
    printf("  %*.*s", v->width[i], v->width[i], buf);
  }
  char metric[32];
  if (isfinite(e->value)) snprintf(metric, sizeof metric, "%.4f", e->value);
  else snprintf(metric, sizeof metric, "-");
  printf(" %10s %11s %10.4f\n", metric, status_name(e->status), v->best);
  fflush(stdout);
  return stop;
}

/* The best value so far among the trials the tuner has (those resumed included). */
static void seed_best(tune_view *v, const strop_tuner *t) {
  double b;
  if (strop_tuner_best(t, NULL, &b) == STROP_OK) v->best = b;
}

static int on_tune_first(const strop_tune_event *e, void *u) {
  tune_view *v = u;
  if (v->n_cols == 0) {
    setup_columns(v, e->tuner);
    seed_best(v, e->tuner);
  }
  return on_tune(e, u);
}

static void print_json(const tune_view *v, const strop_tuner *t) {
  int64_t bid = -1;
  double best = NAN;
  int have = strop_tuner_best(t, &bid, &best) == STROP_OK;
  printf("{\"trials\":%lld,\"resumed\":%lld,\"ran\":%lld,\"best_trial\":%lld,\"best_value\":",
         (long long)strop_tuner_num_trials(t), (long long)(v->resumed > 0 ? v->resumed : 0),
         (long long)v->ran, (long long)bid);
  if (have) printf("%.6g", best);
  else printf("null");
  printf(",\"best_values\":{");
  for (int64_t i = 0; have && i < strop_tuner_num_params(t); i++) {
    double x = NAN;
    if (strop_tuner_trial_value(t, bid, i, &x)) {
    }
    printf("%s", i ? "," : "");
    tool_json_str(stdout, strop_tuner_param_name(t, i));
    printf(":%.6g", x);
  }
  printf("},\"best_recipe\":");
  if (v->best_recipe[0]) tool_json_str(stdout, v->best_recipe);
  else printf("null");
  printf("}\n");
}

/* The final lines: how the trials ended, the best values, where the files are. */
static void print_summary(const tune_view *v, const strop_tuner *t, const char *metric) {
  int64_t n = strop_tuner_num_trials(t), count[5] = {0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; i++) {
    int st = 0;
    if (strop_tuner_trial_result(t, strop_tuner_trial_id(t, i), &st, NULL, NULL, NULL) == 0 &&
        st >= 0 && st <= 4)
      count[st]++;
  }
  if (v->resumed > 0 && v->ran == 0)
    printf("nothing left to do: the search's %lld trials are finished (%s); --trials N runs "
           "more\n",
           (long long)n, v->trials_file[0] ? v->trials_file : "the trials file");
  int64_t bid;
  double best;
  if (strop_tuner_best(t, &bid, &best) != STROP_OK) {
    printf("no trial finished ok (of %lld: %lld failed, %lld pruned)\n", (long long)n,
           (long long)count[1], (long long)count[2]);
    return;
  }
  printf("best: trial %lld, %s %.4f (%lld trials: %lld ok, %lld pruned, %lld failed",
         (long long)bid, metric, best, (long long)n, (long long)count[0], (long long)count[2],
         (long long)count[1]);
  if (v->resumed > 0) printf("; %lld of them resumed", (long long)v->resumed);
  printf(")\n");
  for (int64_t i = 0; i < strop_tuner_num_params(t); i++) {
    char buf[64];
    value_text(t, bid, i, buf, sizeof buf);
    printf("  %s = %s\n", strop_tuner_param_name(t, i), buf);
  }
  if (v->best_recipe[0])
    printf("tuned recipe written to %s (strop finetune %s runs it)\n", v->best_recipe,
           v->best_recipe);
  if (v->trials_file[0]) printf("trials: %s\n", v->trials_file);
  if (v->plot[0]) printf("plot: %s\n", v->plot);
}

int tool_cmd_tune(const strop_recipe *r, const char *path, const tool_opts *opts, strop_dist *d,
                  volatile sig_atomic_t *interrupted) {
  tune_view v;
  memset(&v, 0, sizeof v);
  v.quiet = opts->quiet || opts->json || strop_dist_rank(d) != 0;
  v.tty = isatty(STDERR_FILENO);
  v.interrupted = interrupted;
  v.best = NAN;
  v.resumed = -1;
  v.interrupted_id = -1;
  char metric[64] = "val_accuracy";
  if (strop_recipe_get(r, "tune.metric", metric, sizeof metric) < 0)
    snprintf(metric, sizeof metric, "val_accuracy");
  v.maximize = strstr(metric, "accuracy") != NULL;
  strop_tune_options o;
  strop_tune_options_init(&o);
  o.epochs_cap = opts->epochs_cap;
  o.trials = opts->trials;
  o.time_budget = (double)opts->time_budget;
  o.on_event = on_tune_first;
  o.user_data = &v;
  o.dist = d;
  strop_tuner *t = NULL;
  if (!v.quiet && d) fprintf(stderr, "strop tune %s on %d ranks\n", path, strop_dist_size(d));
  else if (!v.quiet) fprintf(stderr, "strop tune %s\n", path);
  strop_status s = strop_recipe_tune(r, &o, &t);
  if (v.epoch_line_open) fprintf(stderr, "\n");
  int rc = 0;
  if (s == STROP_E_CANCELLED) {
    if (v.n_interrupted == 1)
      fprintf(stderr,
              "strop tune: interrupted: trial %lld is recorded as interrupted; strop "
              "tune %s runs it again first\n",
              (long long)v.interrupted_id, path);
    else if (v.n_interrupted > 1)
      fprintf(stderr,
              "strop tune: interrupted: %lld trials are recorded as interrupted; strop "
              "tune %s runs them again first\n",
              (long long)v.n_interrupted, path);
    else fprintf(stderr, "strop tune: interrupted\n");
    rc = 130;
  } else if (s) {
    fprintf(stderr, "strop tune: error: %s\n  (%s)\n", strop_last_error(), strop_status_str(s));
    rc = s == STROP_E_FORMAT || s == STROP_E_INVALID_ARG ? 3 : 1;
  } else if (opts->json) {
    print_json(&v, t);
  } else {
    print_summary(&v, t, metric);
  }
  strop_tuner_free(t);
  return rc;
}
