/* SPDX-License-Identifier: MIT */
/* strop — the command-line tool: runs recipes (train, finetune, tune), evaluates and applies
 * models, and inspects model and weight files. A thin client of the public API. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
    case STROP_E_INVALID_ARG:
    case STROP_E_UNSUPPORTED: return EXIT_INPUT; /* a model or setting strop does not read */
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

/* ---- launched by mpirun: the ranks of one data-parallel run ---- */

/* The number of processes mpirun (Open MPI, or a PMI launcher: MPICH, Slurm) started, from
 * the environment it gives each one; 1 when not launched so. */
static int launched_ranks(void) {
  const char *v = getenv("OMPI_COMM_WORLD_SIZE");
  if (!v) v = getenv("PMI_SIZE");
  int n = v ? atoi(v) : 1;
  return n > 1 ? n : 1;
}

/* Joins the group when mpirun started several of us: *d is the group (NULL alone) and the
 * ranks other than 0 print nothing but errors. Non-zero (an exit code) when that fails. */
static int join_ranks(const char *cmd, strop_dist **d) {
  *d = NULL;
  if (launched_ranks() == 1) return 0;
  strop_status s = strop_dist_init_mpi(NULL, d);
  if (s) {
    /* N copies each training alone and writing the same files would be worse than stopping */
    fprintf(stderr, "strop %s: error: launched as one of %d ranks, but %s\n", cmd,
            launched_ranks(), strop_last_error());
    return EXIT_FAILED;
  }
  if (strop_dist_rank(*d) != 0 && !freopen("/dev/null", "w", stdout)) return EXIT_FAILED;
  return 0;
}

/* Ends the group: on a failure, every rank (MPI_Abort), so none waits for this one forever. */
static void leave_ranks(strop_dist *d, int rc) {
  if (d && rc) {
    fflush(stderr);
    (void)strop_dist_abort(d, rc);
  }
  strop_dist_free(d);
}

/* ---- train / finetune ---- */
static int cmd_run(const opts *o, int mode) {
  int rc = need_args(o, 1, 1, "one RECIPE file");
  if (rc) return rc;
  strop_dist *d = NULL;
  if ((rc = join_ranks(o->cmd, &d))) return rc;
  strop_recipe *r = NULL;
  if ((rc = load_recipe(o, &r))) {
    leave_ranks(d, rc);
    return rc;
  }
  tool_progress pg;
  tool_progress_init(&pg, o->quiet || strop_dist_rank(d) != 0, &g_interrupted);
  strop_run_options ro;
  strop_run_options_init(&ro);
  ro.mode = mode;
  ro.baselines = !o->no_baselines;
  ro.epochs_cap = o->epochs_cap;
  ro.resume = o->resume;
  ro.on_event = tool_progress_event;
  ro.user_data = &pg;
  ro.dist = d;
  if (!o->quiet && strop_dist_rank(d) == 0) {
    if (d) fprintf(stderr, "strop %s %s on %d ranks\n", o->cmd, o->args[0], strop_dist_size(d));
    else fprintf(stderr, "strop %s %s\n", o->cmd, o->args[0]);
  }
  strop_run *run = NULL;
  strop_status s = strop_recipe_run(r, &ro, &run);
  tool_progress_end(&pg);
  if (s == STROP_E_CANCELLED && g_interrupted) {
    /* what an interrupted run leaves, and how to go on */
    char ck[512];
    const int has_ck = strop_recipe_get(r, "output.checkpoint", ck, sizeof ck) > 0;
    fprintf(stderr,
            "strop %s: interrupted (%s); the outputs of an earlier run are as they were.\n"
            "  %s\n",
            o->cmd, strop_last_error(),
            has_ck ? "'--resume' continues from the last checkpoint (output.checkpoint)"
                   : "set output.checkpoint and train.checkpoint_every to be able to "
                     "'--resume' an interrupted run");
    rc = EXIT_INTERRUPTED;
  } else if (s) {
    rc = report_error(o->cmd, s);
  } else {
    if (o->json) tool_report_json(stdout, o->cmd, o->args[0], run);
    else tool_report_text(stdout, r, run);
  }
  strop_run_free(run);
  strop_recipe_free(r);
  leave_ranks(d, rc);
  return rc;
}

/* ---- tune ---- */
static int cmd_tune(const opts *o) {
  int rc = need_args(o, 1, 1, "one RECIPE file");
  if (rc) return rc;
  strop_dist *d = NULL;
  if ((rc = join_ranks(o->cmd, &d))) return rc;
  strop_recipe *r = NULL;
  if (!(rc = load_recipe(o, &r))) rc = tool_cmd_tune(r, o->args[0], o, d, &g_interrupted);
  strop_recipe_free(r);
  leave_ranks(d, rc);
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
  else snprintf(dir, sizeof dir, "%s", rdir);
  if (o->spec) snprintf(spec, sizeof spec, "%s", o->spec);
  else if (strop_recipe_get(r, "output.spec", v, sizeof v) >= 0)
    snprintf(spec, sizeof spec, "%s%s", dir, v);
  else spec[0] = '\0';
  if (o->weights) snprintf(weights, sizeof weights, "%s", o->weights);
  else if (strop_recipe_get(r, "output.weights", v, sizeof v) >= 0)
    snprintf(weights, sizeof weights, "%s%s", dir, v);
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
        printf(",\"macro_f1\":%.6g,\"per_class\":[",
               strop_metrics_get(mt, STROP_METRIC_MACRO_F1));
        for (int64_t c = 0; c < C; c++)
          printf("%s{\"precision\":%.6g,\"recall\":%.6g,\"f1\":%.6g,\"support\":%.0f}",
                 c ? "," : "", strop_metrics_class(mt, c, STROP_CLASS_PRECISION),
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
  /* what the weights file said about the model: preprocessing, class names (strop.meta.*) */
  for (int64_t i = 0; i < strop_model_meta_count(m); i++) {
    char key[STROP_META_KEY_MAX + 1];
    if (strop_model_meta_key(m, i, key, sizeof key) < 0) continue;
    int64_t len = strop_model_get_meta(m, key, NULL, 0);
    char *val = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!val || strop_model_get_meta(m, key, val, (size_t)len + 1) < 0) {
      free(val);
      strop_model_free(m);
      return report_error("summary", STROP_E_NOMEM);
    }
    printf("%s%s = %s\n", i ? "          " : "metadata: ", key, val);
    free(val);
  }
  strop_model_free(m);
  return EXIT_OK;
}

/* ---- import ---- */
static int cmd_import(const opts *o) {
  if (o->list) {
    int rc = need_args(o, 0, 0, "no PATH with --list");
    if (rc) return rc;
    for (int i = 0; i < strop_pretrained_arch_count(); i++) {
      const char *name = strop_pretrained_arch_name(i);
      printf("%-22s %s\n", name, strop_pretrained_arch_doc(name));
    }
    return EXIT_OK;
  }
  int rc = need_args(o, 1, 1, "one checkpoint PATH (a folder or a .safetensors file)");
  if (rc) return rc;
  strop_pretrained_options po;
  strop_pretrained_options_init(&po);
  po.image_size = o->image_size;
  po.max_length = o->max_length;
  strop_model *m = NULL;
  strop_status s = strop_model_load_pretrained(o->args[0], o->arch, &po, &m, NULL);
  if (s == STROP_E_INVALID_ARG && !o->arch && strstr(strop_last_error(), "single safetensors")) {
    report_error("import", s); /* the library's sentence names its C function: the tool's way */
    fprintf(stderr, "  name it with --arch NAME; 'strop import --list' lists the names\n");
    return EXIT_INPUT;
  }
  if (s) return report_error("import", s);
  if (o->output) s = strop_model_save_spec(m, o->output);
  if (!s && o->weights_out) s = strop_model_save_weights(m, o->weights_out);
  if (s) {
    strop_model_free(m);
    return report_error("import", s);
  }
  if (!o->output) {
    int64_t n = strop_model_spec_string(m, NULL, 0);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!buf || strop_model_spec_string(m, buf, (size_t)n + 1) < 0) {
      free(buf);
      strop_model_free(m);
      return report_error("import", STROP_E_NOMEM);
    }
    fputs(buf, stdout);
    free(buf);
  } else {
    fprintf(stderr,
            "strop import: %s: %lld nodes, %lld parameters, every tensor loaded; spec "
            "written to %s\n",
            o->args[0], (long long)strop_model_num_nodes(m),
            (long long)strop_model_param_count(m, 0), o->output);
    if (o->weights_out) fprintf(stderr, "strop import: weights written to %s\n", o->weights_out);
    else
      fprintf(stderr, "strop import: the spec's tensor names are the checkpoint's: load them "
                      "from its safetensors file(s), or write one file with --weights-out\n");
  }
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
  char name[512], dtype[16];
  tool_text key = {0}, val = {0};
  /* the header's metadata, whole: a model's class names can be long. "strop.meta.<key>"
   * entries are the model's own metadata (strop_model_set_meta), shown without the prefix */
  static const char mprefix[] = "strop.meta.";
  const size_t mpl = sizeof mprefix - 1;
  for (int pass = 0; pass < 2; pass++) {
    int first = 1;
    if (o->json)
      printf(pass ? "},\"model_metadata\":{" : "{\"file\":\"%s\",\"metadata\":{", o->args[0]);
    else if (!pass) printf("%s: %lld tensors\n", o->args[0], (long long)n);
    for (int64_t i = 0; i < nm; i++) {
      if (tool_getter_text(&key, strop_st_file_meta_key, f, i) ||
          tool_getter_text(&val, strop_st_file_meta_value, f, i)) {
        free(key.s);
        free(val.s);
        strop_st_file_free(f);
        return report_error("inspect", STROP_E_NOMEM);
      }
      int model_key = strncmp(key.s, mprefix, mpl) == 0 && key.s[mpl];
      if (pass && !model_key) continue;
      if (o->json) {
        printf("%s", first ? "" : ",");
        tool_json_str(stdout, pass ? key.s + mpl : key.s);
        printf(":");
        tool_json_str(stdout, val.s);
      } else if (!pass && !model_key) {
        printf("  metadata %s = %s\n", key.s, val.s);
      } else if (pass) {
        printf("  model metadata %s = %s\n", key.s + mpl, val.s);
      }
      first = 0;
    }
  }
  free(key.s);
  free(val.s);
  if (o->json) printf("},\"tensors\":[");
  else printf("  %-48s %-6s %s\n", "name", "dtype", "shape");
  uint64_t total = 0;
  int total_overflows = 0;
  tool_text shape = {0};
  for (int64_t i = 0; i < n; i++) {
    int64_t dims[8];
    strop_st_file_name(f, i, name, sizeof name);
    strop_st_file_dtype(f, i, dtype, sizeof dtype);
    int rank = strop_st_file_shape(f, i, dims, 8);
    if (tool_shape_text(&shape, dims, rank < 8 ? rank : 8)) {
      free(shape.s);
      strop_st_file_free(f);
      return report_error("inspect", STROP_E_NOMEM);
    }
    /* the library bounds every dim; the sum over tensors is counted without wrapping */
    uint64_t numel = 1;
    for (int k = 0; k < rank && k < 8; k++)
      numel = dims[k] == 0 || numel <= UINT64_MAX / (uint64_t)dims[k] ? numel * (uint64_t)dims[k]
                                                                      : UINT64_MAX;
    if (numel > UINT64_MAX - total) total_overflows = 1;
    else total += numel;
    if (o->json) {
      printf("%s{\"name\":", i ? "," : "");
      tool_json_str(stdout, name);
      printf(",\"dtype\":\"%s\",\"shape\":%s}", dtype, shape.s);
    } else {
      printf("  %-48s %-6s %s\n", name, dtype, shape.s);
    }
  }
  free(shape.s);
  if (o->json)
    printf(total_overflows ? "],\"elements\":null}\n" : "],\"elements\":%llu}\n",
           (unsigned long long)total);
  else if (total_overflows) printf("  more than 2^64 elements in all\n");
  else printf("  %llu elements in all\n", (unsigned long long)total);
  strop_st_file_free(f);
  return EXIT_OK;
}

/* ---- predict ---- */
static int is_image_path(const char *p) {
  size_t n = strlen(p);
  static const char *const ext[] = {".jpg", ".jpeg", ".png"};
  for (int i = 0; i < 3; i++) {
    size_t m = strlen(ext[i]);
    if (n > m && !strcasecmp(p + n - m, ext[i])) return 1;
  }
  return 0;
}

/* Prints the rows of p, numbered from row0; file (when not NULL) names the row's image. */
static strop_status print_prediction(const opts *o, const strop_prediction *p, int64_t row0,
                                     const char *file) {
  tool_text name = {0};
  int64_t n = strop_prediction_rows(p);
  int k = strop_prediction_k(p);
  for (int64_t i = 0; i < n; i++) {
    if (o->json) {
      printf("%s{\"row\":%lld,", row0 + i ? "\n" : "", (long long)(row0 + i));
      if (file) {
        printf("\"file\":");
        tool_json_str(stdout, file);
        printf(",");
      }
      printf("\"top\":[");
    } else {
      printf("%lld:", (long long)(row0 + i));
      if (file) printf(" %s:", file);
    }
    for (int j = 0; j < k; j++) {
      int64_t len = strop_prediction_name(p, i, j, NULL, 0);
      if (len >= 0 && (tool_text_reserve(&name, (size_t)len + 1) ||
                       strop_prediction_name(p, i, j, name.s, (size_t)len + 1) < 0))
        len = -1;
      long long label = (long long)strop_prediction_label(p, i, j);
      double prob = strop_prediction_prob(p, i, j);
      if (o->json) {
        printf("%s{\"class\":%lld,\"index\":%lld,\"name\":", j ? "," : "", label,
               (long long)strop_prediction_class(p, i, j));
        if (len >= 0) tool_json_str(stdout, name.s);
        else printf("null");
        printf(",\"p\":%.5f}", prob);
      } else {
        printf(" %lld%s%s (%.1f%%)", label, len >= 0 ? " " : "", len >= 0 ? name.s : "",
               100 * prob);
      }
    }
    printf(o->json ? "]}" : "\n");
  }
  free(name.s);
  return STROP_OK;
}

/* The model's own preprocessing and class names (its metadata, written by the recipe run)
 * are applied by the library: raw uint8 images go in as they are. INPUT is one .npy array, or
 * JPEG/PNG files (each a row, decoded with the model's channels; any size when the metadata
 * resizes or crops). */
/* --text / --text-file: raw strings through the tokenizer the model's metadata names. */
static int cmd_predict_text(const opts *o) {
  int rc = need_args(o, 2, 2, "SPEC WEIGHTS with --text or --text-file");
  if (rc) return rc;
  if (o->text && o->text_file) {
    fprintf(stderr, "strop predict: give --text or --text-file, not both\n");
    return EXIT_USAGE;
  }
  char **lines = NULL, *line = NULL;
  int64_t n = 0, cap = 0;
  if (o->text) {
    if (!(lines = malloc(sizeof *lines)) || !(lines[0] = strdup(o->text))) {
      free(lines);
      return report_error("predict", STROP_E_NOMEM);
    }
    n = 1;
  } else {
    FILE *f = strcmp(o->text_file, "-") ? fopen(o->text_file, "rb") : stdin;
    if (!f) {
      fprintf(stderr, "strop predict: cannot open %s: %s\n", o->text_file, strerror(errno));
      return 1;
    }
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
      while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
      if (n == cap) {
        cap = cap ? 2 * cap : 64;
        char **nl = realloc(lines, (size_t)cap * sizeof *nl);
        if (!nl) break;
        lines = nl;
      }
      if (!(lines[n] = strdup(line))) break;
      n++;
    }
    int bad = ferror(f) || !feof(f);
    if (f != stdin) fclose(f);
    free(line);
    if (bad) {
      for (int64_t i = 0; i < n; i++) free(lines[i]);
      free(lines);
      fprintf(stderr, "strop predict: cannot read %s\n", o->text_file);
      return 1;
    }
    if (n == 0) {
      free(lines);
      fprintf(stderr, "strop predict: %s holds no lines\n", o->text_file);
      return 3;
    }
  }
  strop_model *m = NULL;
  strop_prediction *p = NULL;
  strop_status s = strop_model_load_spec(o->args[0], &m);
  if (!s) s = strop_model_load_weights(m, o->args[1], STROP_LOAD_STRICT, NULL);
  if (!s)
    s = strop_model_predict_text(m, NULL, (const char *const *)lines, NULL, n,
                                 o->top > 4096 ? 4096 : (int)o->top, &p);
  if (s) rc = report_error("predict", s);
  else if (!(s = print_prediction(o, p, 0, NULL)) && o->json) printf("\n");
  strop_prediction_free(p);
  strop_model_free(m);
  for (int64_t i = 0; i < n; i++) free(lines[i]);
  free(lines);
  return rc;
}

static int cmd_predict(const opts *o) {
  if (o->text || o->text_file) return cmd_predict_text(o);
  int rc = need_args(o, 3, TOOL_MAX_ARGS, "SPEC WEIGHTS INPUT.npy, or SPEC WEIGHTS IMAGE...");
  if (rc) return rc;
  strop_model *m = NULL;
  strop_tensor *x = NULL;
  strop_prediction *p = NULL;
  strop_status s = strop_model_load_spec(o->args[0], &m);
  if (!s) s = strop_model_load_weights(m, o->args[1], STROP_LOAD_STRICT, NULL);
  int images = is_image_path(o->args[2]);
  if (!images && o->nargs > 3) {
    strop_model_free(m);
    return need_args(o, 3, 3, "one INPUT.npy (or JPEG/PNG files)");
  }
  for (int f = 2; images && !s && f < o->nargs; f++) {
    /* one image at a time: sizes differ; the rows are printed as one prediction's */
    int64_t md[8];
    int channels = strop_model_input_shape(m, md, 8) == 3 ? (int)md[0] : 3;
    strop_tensor *img = NULL, *one = NULL;
    strop_prediction *q = NULL;
    s = strop_image_load(o->args[f], channels, &img);
    int64_t d[4] = {1, 0, 0, 0};
    if (!s) {
      (void)strop_tensor_shape(img, d + 1, 3);
      s = strop_tensor_reshape(img, 4, d, &one);
    }
    if (!s) s = strop_model_predict(m, one, o->top > 4096 ? 4096 : (int)o->top, &q);
    if (s == STROP_E_SHAPE) { /* which image, and what would fit */
      char why[512];
      snprintf(why, sizeof why, "%s", strop_last_error());
      const int resizes = strop_model_get_meta(m, "input.resize", NULL, 0) >= 0;
      fprintf(stderr, "strop predict: error: %s is %lld x %lld pixels: %s\n%s", o->args[f],
              (long long)d[3], (long long)d[2], why,
              resizes ? ""
                      : "  (the model records no input.resize to bring an image to its size; "
                        "resize the image, or fine-tune with a recipe that resizes)\n");
      rc = EXIT_INPUT;
    }
    strop_tensor_free(img);
    strop_tensor_free(one);
    if (!s) s = print_prediction(o, q, f - 2, o->args[f]);
    strop_prediction_free(q);
  }
  if (images) {
    if (!s) {
      if (o->json) printf("\n");
    } else if (!rc) {
      rc = report_error("predict", s);
    }
    strop_model_free(m);
    return rc;
  }
  /* the library's reader: shapes, dtypes, gzip and NaN/infinity are checked as for datasets */
  if (!s) s = strop_tensor_load_npy(o->args[2], &x);
  if (!s) s = strop_model_predict(m, x, o->top > 4096 ? 4096 : (int)o->top, &p);
  if (s) rc = report_error("predict", s);
  else if (!(s = print_prediction(o, p, 0, NULL)) && o->json) printf("\n");
  if (s && !rc) rc = report_error("predict", s);
  strop_prediction_free(p);
  strop_tensor_free(x);
  strop_model_free(m);
  return rc;
}

/* The library's warnings (a step skipped for a non-finite loss, a failed trial, a torn trials
 * line cut off) on stderr: without a handler the library is silent, and a run whose every step
 * was skipped looked like one that trained. The first TOOL_MAX_WARNINGS, then a count. */
enum { TOOL_MAX_WARNINGS = 8 };
static _Atomic int g_warnings;

static void on_log(int level, const char *message, void *user) {
  (void)user;
  const int n = atomic_fetch_add(&g_warnings, 1);
  if (n < TOOL_MAX_WARNINGS)
    fprintf(stderr, "strop: %s: %s\n", level == STROP_LOG_ERROR ? "error" : "warning", message);
  else if (n == TOOL_MAX_WARNINGS)
    fprintf(stderr, "strop: warning: more warnings follow; only the first %d are shown\n",
            TOOL_MAX_WARNINGS);
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
  strop_set_log_handler(on_log, STROP_LOG_WARN, NULL);
  if (!strcmp(o.cmd, "train")) return cmd_run(&o, STROP_RUN_TRAIN);
  if (!strcmp(o.cmd, "finetune")) return cmd_run(&o, STROP_RUN_FINETUNE);
  if (!strcmp(o.cmd, "tune")) return cmd_tune(&o);
  if (!strcmp(o.cmd, "eval")) return cmd_eval(&o);
  if (!strcmp(o.cmd, "predict")) return cmd_predict(&o);
  if (!strcmp(o.cmd, "summary")) return cmd_summary(&o);
  if (!strcmp(o.cmd, "inspect")) return cmd_inspect(&o);
  if (!strcmp(o.cmd, "import")) return cmd_import(&o);
  if (!strcmp(o.cmd, "layers")) return tool_cmd_layers(o.args, o.nargs, o.markdown);
  if (!strcmp(o.cmd, "generate")) return tool_cmd_generate(&o, &g_interrupted);
  if (!strcmp(o.cmd, "tokenize"))
    return tool_cmd_tokenize(o.args, o.nargs, o.decode, o.no_special);
  if (!strcmp(o.cmd, "version")) {
    printf("strop %s\n", strop_version());
    return EXIT_OK;
  }
  fprintf(stderr, "strop: unknown command '%s'\n\n", o.cmd);
  tool_usage(stderr);
  return EXIT_USAGE;
}
