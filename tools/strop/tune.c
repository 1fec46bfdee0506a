/* strop tool — `strop tune RECIPE`: runs the recipe's tune: section (the search is the
 * library's strop_recipe_tune) and prints a live table: one row per trial with its values,
 * its metric, its status and the best so far. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tool.h"

typedef struct tune_view {
  int quiet, tty;
  int maximize;
  double best;
  volatile sig_atomic_t *interrupted;
  int header_done;
  int64_t epoch_line_open;
} tune_view;

/* the last 18 characters of a key path: its most specific part */
static const char *tail18(const char *s) {
  size_t n = strlen(s);
  return n > 18 ? s + n - 18 : s;
}

static void header(const strop_tuner *t) {
  printf("%6s", "trial");
  for (int64_t i = 0; i < strop_tuner_num_params(t); i++) printf(" %18s", tail18(strop_tuner_param_name(t, i)));
  printf(" %10s %8s %10s\n", "metric", "status", "best");
}

static int on_tune(const strop_tune_event *e, void *u) {
  tune_view *v = u;
  if (v->interrupted && *v->interrupted) return 1;
  if (v->quiet) return 0;
  const strop_tuner *t = e->tuner;
  if (!v->header_done) {
    header(t);
    v->header_done = 1;
  }
  if (e->kind == STROP_TUNE_EVENT_EPOCH) {
    if (v->tty) {
      fprintf(stderr, "\r  trial %lld: epoch %lld metric %.4f\x1b[K", (long long)e->trial_id,
              (long long)e->epoch, e->value);
      fflush(stderr);
      v->epoch_line_open = 1;
    }
    return 0;
  }
  if (e->kind != STROP_TUNE_EVENT_TRIAL_END) return 0;
  if (v->epoch_line_open) {
    fprintf(stderr, "\r\x1b[K");
    v->epoch_line_open = 0;
  }
  printf("%6lld", (long long)e->trial_id);
  for (int64_t i = 0; i < strop_tuner_num_params(t); i++) {
    const char *name = strop_tuner_param_name(t, i);
    if (strop_tuner_param_kind(t, i) == STROP_PARAM_CATEGORICAL) {
      char buf[64];
      size_t len;
      if (strop_tuner_trial_categorical(t, e->trial_id, name, NULL, buf, sizeof buf, &len)) buf[0] = 0;
      printf(" %18.18s", buf);
    } else {
      double x = NAN;
      if (strop_tuner_trial_value(t, e->trial_id, i, &x)) {}
      printf(" %18.6g", x);
    }
  }
  static const char *const names[] = {"ok", "failed", "pruned", "running"};
  /* this trial is told after the event, so fold it into the best here */
  if (e->status == STROP_TRIAL_OK && isfinite(e->value) &&
      (isnan(v->best) || (v->maximize ? e->value > v->best : e->value < v->best)))
    v->best = e->value;
  printf(" %10.4f %8s %10.4f\n", e->value, names[e->status & 3], v->best);
  fflush(stdout);
  return 0;
}

int tool_cmd_tune(const strop_recipe *r, const char *path, int quiet, int json, int64_t epochs_cap,
                  volatile sig_atomic_t *interrupted) {
  strop_status s;
  tune_view v;
  memset(&v, 0, sizeof v);
  v.quiet = quiet || json;
  v.tty = isatty(STDERR_FILENO);
  v.interrupted = interrupted;
  v.best = NAN;
  char metric[64] = "val_accuracy";
  if (strop_recipe_get(r, "tune.metric", metric, sizeof metric) < 0) snprintf(metric, sizeof metric, "val_accuracy");
  v.maximize = strstr(metric, "accuracy") != NULL;
  strop_tune_options o;
  strop_tune_options_init(&o);
  o.epochs_cap = epochs_cap;
  o.on_event = on_tune;
  o.user_data = &v;
  strop_tuner *t = NULL;
  if (!v.quiet) fprintf(stderr, "strop tune %s\n", path);
  s = strop_recipe_tune(r, &o, &t);
  int rc = 0;
  if (s) {
    if (v.epoch_line_open) fprintf(stderr, "\n");
    fprintf(stderr, "strop tune: error: %s\n  (%s)\n", strop_last_error(), strop_status_str(s));
    rc = s == STROP_E_CANCELLED ? 130 : s == STROP_E_FORMAT || s == STROP_E_INVALID_ARG ? 3 : 1;
  } else {
    int64_t bid;
    double best;
    int have = strop_tuner_best(t, &bid, &best) == STROP_OK;
    if (json) {
      printf("{\"trials\":%lld,\"best_trial\":%lld,\"best_value\":", (long long)strop_tuner_num_trials(t),
             (long long)(have ? bid : -1));
      if (have) printf("%.6g", best); else printf("null");
      printf(",\"best_values\":{");
      for (int64_t i = 0; have && i < strop_tuner_num_params(t); i++) {
        double x = NAN;
        if (strop_tuner_trial_value(t, bid, i, &x)) {}
        printf("%s", i ? "," : "");
        tool_json_str(stdout, strop_tuner_param_name(t, i));
        printf(":%.6g", x);
      }
      printf("}}\n");
    } else if (have) {
      printf("best: trial %lld, metric %.4f\n", (long long)bid, best);
    } else {
      printf("no trial finished successfully\n");
    }
  }
  strop_tuner_free(t);
  return rc;
}
