/* strop — the command-line tool: runs recipes (train, finetune, tune), evaluates and applies
 * models, and inspects model and weight files. A thin client of the public API. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <strop/strop.h>

#include "tool.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_INPUT = 3, EXIT_INTERRUPTED = 130 };

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
  (void)sig;
  g_interrupted = 1;
}

/* ---- the command line: tool_opts, parsed from the tables of options.c ---- */
typedef tool_opts opts;

static int exit_for(strop_status s) {
  switch (s) {
    case STROP_OK: return EXIT_OK;
    case STROP_E_FORMAT:
    case STROP_E_NOT_FOUND:
    case STROP_E_SHAPE:
    case STROP_E_INVALID_ARG: return EXIT_INPUT;
    case STROP_E_CANCELLED: return EXIT_INTERRUPTED;
    default: return EXIT_FAILED;
  }
}

static int report_error(const char *what, strop_status s) {
  fprintf(stderr, "strop %s: error: %s\n  (%s)\n", what, strop_last_error(), strop_status_str(s));
  return exit_for(s);
}

static int need_args(const opts *o, int lo, int hi, const char *what) {
  if (o->nargs < lo || o->nargs > hi) {
    fprintf(stderr, "strop %s: expected %s (see strop %s --help)\n", o->cmd, what, o->cmd);
    return EXIT_USAGE;
  }
  return 0;
}

/* Loads a recipe and applies --set and --seed. */
static int load_recipe(const opts *o, strop_recipe **r) {
  strop_status s = strop_recipe_load(o->args[0], r);
  if (s) return report_error(o->cmd, s);
  for (int i = 0; i < o->nsets; i++) {
    char key[256];
    const char *eq = strchr(o->sets[i], '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - o->sets[i]), o->sets[i]);
    if ((s = strop_recipe_set(*r, key, eq + 1))) {
      strop_recipe_free(*r);
      *r = NULL;
      return report_error(o->cmd, s);
    }
  }
  if (o->seed >= 0) {
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)o->seed);
    if ((s = strop_recipe_set(*r, "seed", v))) {
      strop_recipe_free(*r);
      *r = NULL;
      return report_error(o->cmd, s);
    }
  }
  return 0;
}

/* ---- train / finetune ---- */
static int cmd_run(const opts *o, int mode) {
  int rc = need_args(o, 1, 1, "one RECIPE file");
  if (rc) return rc;
  strop_recipe *r = NULL;
  if ((rc = load_recipe(o, &r))) return rc;
  tool_progress pg;
  tool_progress_init(&pg, o->quiet, &g_interrupted);
  strop_run_options ro;
  strop_run_options_init(&ro);
  ro.mode = mode;
  ro.baselines = !o->no_baselines;
  ro.epochs_cap = o->epochs_cap;
  ro.on_event = tool_progress_event;
  ro.user_data = &pg;
  if (!o->quiet)
    fprintf(stderr, "strop %s %s\n", o->cmd, o->args[0]);
  strop_run *run = NULL;
  strop_status s = strop_recipe_run(r, &ro, &run);
  tool_progress_end(&pg);
  if (s) {
    rc = report_error(o->cmd, s);
  } else {
    if (o->json)
      tool_report_json(stdout, o->cmd, o->args[0], run);
    else
      tool_report_text(stdout, r, run);
  }
  strop_run_free(run);
  strop_recipe_free(r);
  return rc;
}

/* ---- tune ---- */
static int cmd_tune(const opts *o) {
  int rc = need_args(o, 1, 1, "one RECIPE file");
  if (rc) return rc;
  strop_recipe *r = NULL;
  if ((rc = load_recipe(o, &r))) return rc;
  rc = tool_cmd_tune(r, o->args[0], o->quiet, o->json, o->epochs_cap, &g_interrupted);
  strop_recipe_free(r);
  return rc;
}

/* ---- eval ---- */
static int cmd_eval(const opts *o) {
  int rc = need_args(o, 1, 1, "one RECIPE file");
  if (rc) return rc;
  strop_recipe *r = NULL;
  if ((rc = load_recipe(o, &r))) return rc;
  char spec[2200], weights[2200], dir[1600] = "";
  const char *base = o->args[0];
  const char *slash = strrchr(base, '/');
  char rdir[1024] = "";
  if (slash) snprintf(rdir, sizeof rdir, "%.*s/", (int)(slash - base), base);
  char v[512];
  if (strop_recipe_get(r, "output.dir", v, sizeof v) >= 0)
    snprintf(dir, sizeof dir, "%s%s/", v[0] == '/' ? "" : rdir, v);
  else
    snprintf(dir, sizeof dir, "%s", rdir);
  if (o->spec) snprintf(spec, sizeof spec, "%s", o->spec);
  else if (strop_recipe_get(r, "output.spec", v, sizeof v) >= 0) snprintf(spec, sizeof spec, "%s%s", dir, v);
  else spec[0] = '\0';
  if (o->weights) snprintf(weights, sizeof weights, "%s", o->weights);
  else if (strop_recipe_get(r, "output.weights", v, sizeof v) >= 0) snprintf(weights, sizeof weights, "%s%s", dir, v);
  else weights[0] = '\0';
  if (!spec[0] || !weights[0]) {
    fprintf(stderr, "strop eval: the recipe has no output.spec/output.weights; give --spec and "
                    "--weights\n");
    strop_recipe_free(r);
    return EXIT_USAGE;
  }
  strop_model *m = NULL;
  strop_metrics *mt = NULL;
  int which = !o->split || !strcmp(o->split, "test") ? STROP_SPLIT_TEST
              : !strcmp(o->split, "val")             ? STROP_SPLIT_VAL
                                                     : STROP_SPLIT_TRAIN;
  strop_status s = strop_model_load_spec(spec, &m);
  if (!s) s = strop_model_load_weights(m, weights, STROP_LOAD_STRICT, NULL);
  if (!s) s = strop_recipe_evaluate(r, m, which, &mt);
  if (s) {
    rc = report_error("eval", s);
  } else {
    double acc = strop_metrics_get(mt, STROP_METRIC_ACCURACY);
    double loss = strop_metrics_get(mt, STROP_METRIC_LOSS);
    double n = strop_metrics_get(mt, STROP_METRIC_SAMPLES);
    int64_t C = strop_metrics_num_classes(mt);
    if (o->json) {
      printf("{\"samples\":%.0f,\"loss\":%.6g", n, loss);
      if (C > 0) {
        printf(",\"accuracy\":%.6g", acc);
        if (C > 5) printf(",\"top5\":%.6g", strop_metrics_get(mt, STROP_METRIC_TOP5));
        printf(",\"macro_f1\":%.6g,\"per_class\":[", strop_metrics_get(mt, STROP_METRIC_MACRO_F1));
        for (int64_t c = 0; c < C; c++)
          printf("%s{\"precision\":%.6g,\"recall\":%.6g,\"f1\":%.6g,\"support\":%.0f}", c ? "," : "",
                 strop_metrics_class(mt, c, STROP_CLASS_PRECISION),
                 strop_metrics_class(mt, c, STROP_CLASS_RECALL),
                 strop_metrics_class(mt, c, STROP_CLASS_F1),
                 strop_metrics_class(mt, c, STROP_CLASS_SUPPORT));
        printf("]");
      } else {
        printf(",\"mse\":%.6g,\"mae\":%.6g", strop_metrics_get(mt, STROP_METRIC_MSE),
               strop_metrics_get(mt, STROP_METRIC_MAE));
      }
      printf("}\n");
    } else {
      printf("%s on %.0f samples: loss %.4f", weights, n, loss);
      if (C > 0) {
        printf(", accuracy %.2f%%", 100 * acc);
        if (C > 5) printf(", top-5 %.2f%%", 100 * strop_metrics_get(mt, STROP_METRIC_TOP5));
        printf(", macro F1 %.3f\n", strop_metrics_get(mt, STROP_METRIC_MACRO_F1));
        printf("class  precision  recall     f1  support\n");
        for (int64_t c = 0; c < C; c++)
          printf("%5lld  %9.3f  %6.3f  %5.3f  %7.0f\n", (long long)c,
                 strop_metrics_class(mt, c, STROP_CLASS_PRECISION),
                 strop_metrics_class(mt, c, STROP_CLASS_RECALL),
                 strop_metrics_class(mt, c, STROP_CLASS_F1),
                 strop_metrics_class(mt, c, STROP_CLASS_SUPPORT));
        if (C <= 20) {
          int64_t cm[400];
          strop_metrics_confusion(mt, cm, 400);
          printf("confusion (row = true class, column = predicted):\n");
          for (int64_t i = 0; i < C; i++) {
            for (int64_t j = 0; j < C; j++) printf("%6lld", (long long)cm[i * C + j]);
            printf("\n");
          }
        }
      } else {
        printf(", MSE %.5g, MAE %.5g\n", strop_metrics_get(mt, STROP_METRIC_MSE),
               strop_metrics_get(mt, STROP_METRIC_MAE));
      }
    }
  }
  strop_metrics_free(mt);
  strop_model_free(m);
  strop_recipe_free(r);
  return rc;
}

/* ---- summary / inspect ---- */
static int cmd_summary(const opts *o) {
  int rc = need_args(o, 1, 2, "SPEC [WEIGHTS]");
  if (rc) return rc;
  strop_model *m = NULL;
  strop_status s = strop_model_load_spec(o->args[0], &m);
  if (!s && o->nargs == 2) s = strop_model_load_weights(m, o->args[1], STROP_LOAD_STRICT, NULL);
  if (s) {
    strop_model_free(m);
    return report_error("summary", s);
  }
  int64_t n = strop_model_summary(m, NULL, 0);
  char *buf = malloc((size_t)n + 1);
  if (!buf || strop_model_summary(m, buf, (size_t)n + 1) < 0) {
    free(buf);
    strop_model_free(m);
    return report_error("summary", STROP_E_NOMEM);
  }
  fputs(buf, stdout);
  free(buf);
  strop_model_free(m);
  return EXIT_OK;
}

static int cmd_inspect(const opts *o) {
  int rc = need_args(o, 1, 1, "one FILE");
  if (rc) return rc;
  strop_st_file *f = NULL;
  strop_status s = strop_st_file_open(o->args[0], &f);
  if (s) return report_error("inspect", s);
  int64_t n = strop_st_file_count(f), nm = strop_st_file_meta_count(f);
  char name[512], dtype[16], key[256], val[1024];
  if (o->json) {
    printf("{\"file\":\"%s\",\"metadata\":{", o->args[0]);
    for (int64_t i = 0; i < nm; i++) {
      strop_st_file_meta_key(f, i, key, sizeof key);
      strop_st_file_meta_value(f, i, val, sizeof val);
      printf("%s", i ? "," : "");
      tool_json_str(stdout, key);
      printf(":");
      tool_json_str(stdout, val);
    }
    printf("},\"tensors\":[");
  } else {
    printf("%s: %lld tensors\n", o->args[0], (long long)n);
    for (int64_t i = 0; i < nm; i++) {
      strop_st_file_meta_key(f, i, key, sizeof key);
      strop_st_file_meta_value(f, i, val, sizeof val);
      printf("  metadata %s = %s\n", key, val);
    }
    printf("  %-48s %-6s %s\n", "name", "dtype", "shape");
  }
  int64_t total = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t dims[8];
    strop_st_file_name(f, i, name, sizeof name);
    strop_st_file_dtype(f, i, dtype, sizeof dtype);
    int rank = strop_st_file_shape(f, i, dims, 8);
    int64_t numel = 1;
    char shape[128];
    size_t l = 0;
    shape[l++] = '[';
    shape[l] = '\0';
    for (int k = 0; k < rank && k < 8; k++) {
      numel *= dims[k];
      l += (size_t)snprintf(shape + l, sizeof shape - l, "%s%lld", k ? ", " : "", (long long)dims[k]);
    }
    snprintf(shape + l, sizeof shape - l, "]");
    total += numel;
    if (o->json) {
      printf("%s{\"name\":", i ? "," : "");
      tool_json_str(stdout, name);
      printf(",\"dtype\":\"%s\",\"shape\":%s}", dtype, shape);
    } else {
      printf("  %-48s %-6s %s\n", name, dtype, shape);
    }
  }
  if (o->json)
    printf("],\"elements\":%lld}\n", (long long)total);
  else
    printf("  %lld elements in all\n", (long long)total);
  strop_st_file_free(f);
  return EXIT_OK;
}

/* ---- predict ---- */
static int cmd_predict(const opts *o) {
  int rc = need_args(o, 3, 3, "SPEC WEIGHTS INPUT.npy");
  if (rc) return rc;
  strop_model *m = NULL;
  strop_status s = strop_model_load_spec(o->args[0], &m);
  if (!s) s = strop_model_load_weights(m, o->args[1], STROP_LOAD_STRICT, NULL);
  if (s) {
    strop_model_free(m);
    return report_error("predict", s);
  }
  int64_t in[8];
  int rank = strop_model_input_shape(m, in, 8);
  tool_array x;
  char err[512];
  if (tool_npy_load(o->args[2], &x, err, sizeof err)) {
    fprintf(stderr, "strop predict: %s\n", err);
    strop_model_free(m);
    return EXIT_INPUT;
  }
  int64_t per = 1;
  for (int i = 0; i < rank; i++) per *= in[i];
  if (x.count % (size_t)per != 0) {
    fprintf(stderr, "strop predict: %s holds %zu values, not a whole number of samples of %lld "
                    "values (the model's input)\n", o->args[2], x.count, (long long)per);
    free(x.data);
    strop_model_free(m);
    return EXIT_INPUT;
  }
  int64_t n = (int64_t)(x.count / (size_t)per), dims[9];
  dims[0] = n;
  for (int i = 0; i < rank; i++) dims[i + 1] = in[i];
  strop_tensor *t = NULL, *y = NULL;
  s = strop_tensor_wrap(x.data, x.count, rank + 1, dims, &t);
  if (!s) s = strop_model_forward(m, t, &y);
  if (s) {
    rc = report_error("predict", s);
  } else {
    int64_t C = strop_tensor_numel(y) / n;
    const float *p = strop_tensor_data_const(y);
    for (int64_t i = 0; i < n; i++) {
      const float *row = p + i * C;
      /* softmax probabilities for display */
      float mx = row[0];
      for (int64_t k = 1; k < C; k++) mx = row[k] > mx ? row[k] : mx;
      double z = 0;
      for (int64_t k = 0; k < C; k++) z += exp((double)row[k] - mx);
      int used[4096] = {0};
      if (o->json) printf("%s{\"row\":%lld,\"top\":[", i ? "\n" : "", (long long)i);
      else printf("%lld:", (long long)i);
      for (int t2 = 0; t2 < o->top && t2 < C && C <= 4096; t2++) {
        int64_t best = -1;
        for (int64_t k = 0; k < C; k++)
          if (!used[k] && (best < 0 || row[k] > row[best])) best = k;
        used[best] = 1;
        double prob = exp((double)row[best] - mx) / z;
        if (o->json) printf("%s{\"class\":%lld,\"p\":%.5f}", t2 ? "," : "", (long long)best, prob);
        else printf(" %lld (%.1f%%)", (long long)best, 100 * prob);
      }
      printf(o->json ? "]}" : "\n");
    }
    if (o->json) printf("\n");
  }
  strop_tensor_free(y);
  strop_tensor_free(t);
  free(x.data);
  strop_model_free(m);
  return rc;
}

int main(int argc, char **argv) {
  opts o;
  int rc = tool_parse_args(argc, argv, &o);
  if (rc) return rc == TOOL_EXIT_DONE ? EXIT_OK : rc;
  if (o.threads > 0 && strop_set_num_threads((int)o.threads) != STROP_OK) {
    fprintf(stderr, "strop: %s\n", strop_last_error());
    return EXIT_USAGE;
  }
  signal(SIGINT, on_sigint);
  if (!strcmp(o.cmd, "train")) return cmd_run(&o, STROP_RUN_TRAIN);
  if (!strcmp(o.cmd, "finetune")) return cmd_run(&o, STROP_RUN_FINETUNE);
  if (!strcmp(o.cmd, "tune")) return cmd_tune(&o);
  if (!strcmp(o.cmd, "eval")) return cmd_eval(&o);
  if (!strcmp(o.cmd, "predict")) return cmd_predict(&o);
  if (!strcmp(o.cmd, "summary")) return cmd_summary(&o);
  if (!strcmp(o.cmd, "inspect")) return cmd_inspect(&o);
  if (!strcmp(o.cmd, "layers")) return tool_cmd_layers(o.args, o.nargs, o.markdown);
  if (!strcmp(o.cmd, "tokenize")) return tool_cmd_tokenize(o.args, o.nargs, o.decode, o.no_special);
  if (!strcmp(o.cmd, "version")) {
    printf("strop %s\n", strop_version());
    return EXIT_OK;
  }
  fprintf(stderr, "strop: unknown command '%s'\n\n", o.cmd);
  tool_usage(stderr);
  return EXIT_USAGE;
}
