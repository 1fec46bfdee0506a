/* strop tests — recipe suite: parsing and validation errors with positions, key-path edits,
 * write-back, and running a small recipe end to end (stages, surgery, baseline, outputs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "strop/strop.h"
#include "testutil.h"

static char g_dir[64];

/* A directory with a small CSV (4 blobs in 6-D, label last) and a spec. */
static void make_files(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/strop_recipe_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
  char p[256];
  snprintf(p, sizeof p, "%s/blobs.csv", g_dir);
  FILE *f = fopen(p, "w");
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(5, &g), STROP_OK);
  for (int i = 0; i < 240; i++) {
    int c = i % 4;
    float x[6];
    ck_assert_int_eq(strop_rng_normal(g, 0, 0.6f, x, 6), STROP_OK);
    x[c] += 2.0f;
    for (int k = 0; k < 6; k++) fprintf(f, "%.5f,", x[k]);
    fprintf(f, "%d\n", c);
  }
  fclose(f);
  strop_rng_free(g);
  snprintf(p, sizeof p, "%s/net.yaml", g_dir);
  f = fopen(p, "w");
  fputs("input: [6]\nlayers:\n"
        "  - {name: body.0, type: linear, out_features: 16}\n"
        "  - {name: body.1, type: relu}\n"
        "  - {name: head, type: linear, out_features: 4}\n", f);
  fclose(f);
}

static const char *RECIPE =
    "description: blobs\n"
    "seed: 3\n"
    "model:\n"
    "  spec: net.yaml\n"
    "data:\n"
    "  source: csv\n"
    "  path: blobs.csv\n"
    "  num_classes: 4\n"
    "  test_fraction: 0.25\n"
    "  val_fraction: 0.2\n"
    "  batch_size: 16\n"
    "  prefetch: false\n"
    "optimizer: {kind: adam, lr: 0.01}\n"
    "schedule: {kind: cosine}\n"
    "train: {epochs: 4, monitor: val_accuracy, restore_best: true}\n"
    "stages:\n"
    "  - name: head\n"
    "    epochs: 3\n"
    "    surgery:\n"
    "      - freeze: \"body.*\"\n"
    "  - name: all\n"
    "    surgery: [unfreeze: \"*\"]\n"
    "    optimizer: {lr: 0.003}\n"
    "baselines: [scratch]\n"
    "output:\n"
    "  dir: out\n"
    "  weights: w.safetensors\n"
    "  spec: net.yaml\n"
    "  metrics: metrics.csv\n"
    "  plot: plot.svg\n"
    "  report: report.json\n";

START_TEST(load_get_set) {
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, "/nowhere", &r), STROP_OK);
  char buf[64];
  ck_assert_int_eq(strop_recipe_get(r, "optimizer.lr", buf, sizeof buf), 4);
  ck_assert_str_eq(buf, "0.01");
  ck_assert_int_eq(strop_recipe_get(r, "stages[1].optimizer.lr", buf, sizeof buf), 5);
  ck_assert_int_eq(strop_recipe_get(r, "stages[5].epochs", buf, sizeof buf), -1);
  ck_assert_int_eq(strop_recipe_set(r, "optimizer.lr", "3e-4"), STROP_OK);
  ck_assert_int_eq(strop_recipe_get(r, "optimizer.lr", buf, sizeof buf), 4);
  ck_assert_str_eq(buf, "3e-4");
  ck_assert_int_eq(strop_recipe_set(r, "stages[1].epochs", "7"), STROP_OK);
  ck_assert_int_eq(strop_recipe_get(r, "stages[1].epochs", buf, sizeof buf), 1);
  ck_assert_int_eq(strop_recipe_set(r, "loss.label_smoothing", "0.1"), STROP_OK); /* creates loss */
  ck_assert_int_eq(strop_recipe_set(r, "surgery", "[{lora: {match: \"body.0\", rank: 2}}]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_get(r, "surgery[0].lora.rank", buf, sizeof buf), 1);
  /* bad edits leave the recipe unchanged */
  ck_assert_int_eq(strop_recipe_set(r, "optimizer.lr", "fast"), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'lr' must be a number"));
  ck_assert_int_eq(strop_recipe_set(r, "optimizer.lrr", "1"), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "unknown key 'lrr'"));
  ck_assert_int_eq(strop_recipe_set(r, "stages[9].epochs", "1"), STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop_recipe_set(r, "optimizer..lr", "1"), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_recipe_get(r, "optimizer.lr", buf, sizeof buf), 4);
  /* write back and read again: the same text */
  int64_t n = strop_recipe_to_string(r, NULL, 0);
  ck_assert_int_gt(n, 100);
  char *text = malloc((size_t)n + 1), *text2 = malloc((size_t)n + 1);
  ck_assert_int_eq(strop_recipe_to_string(r, text, (size_t)n + 1), n);
  strop_recipe *r2 = NULL;
  ck_assert_msg(strop_recipe_load_string(text, "/nowhere", &r2) == STROP_OK, "%s\n%s",
                strop_last_error(), text);
  ck_assert_int_eq(strop_recipe_to_string(r2, text2, (size_t)n + 1), n);
  ck_assert_str_eq(text, text2);
  free(text);
  free(text2);
  strop_recipe_free(r2);
  strop_recipe_free(r);
}
END_TEST

START_TEST(validation_errors) {
  static const struct {
    const char *yaml, *want;
  } cases[] = {
      {"model: {spec: a.yaml}\noptimiser: {lr: 1}\n",
       "<string>:2:1: unknown key 'optimiser' in 'recipe' (expected one of: description, seed, "
       "model, surgery, data, loss, optimizer, schedule, train, stages, output, baselines, tune)"},
      {"optimizer:\n  kind: adamm\n", "<string>:2:9: 'kind' must be one of sgd, adam, adamw, "
                                      "rmsprop, adagrad, got 'adamm'"},
      {"train: {epochs: ten}\n", "<string>:1:17: 'epochs' must be an integer, got 'ten'"},
      {"data: [1, 2]\n", "'data' must be a mapping, got a list"},
      {"surgery:\n  - freez: x\n", "<string>:2:5: unknown surgery operation 'freez'"},
      {"surgery:\n  - replace: head\n", "'replace' needs a mapping of its arguments"},
      {"stages:\n  - name: a\n    epoch: 3\n", "<string>:3:5: unknown key 'epoch' in 'stages[0]'"},
      {"seed: 1\nseed: 2\n", "'seed' appears twice"},
      {"a: *x\n", "YAML"},
      {"model: {spec: [\n", "<string>:"},
      {"", "the recipe is empty"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop_recipe *r = (strop_recipe *)1;
    int s = strop_recipe_load_string(cases[i].yaml, NULL, &r);
    ck_assert_msg(s == STROP_E_FORMAT, "case %zu: status %d (%s)", i, s, strop_last_error());
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(strop_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i,
                  strop_last_error(), cases[i].want);
  }
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load("/nonexistent/recipe.yaml", &r), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "/nonexistent/recipe.yaml"));
  ck_assert_int_eq(strop_recipe_load(NULL, &r), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_recipe_set(NULL, "a", "b"), STROP_E_INVALID_ARG);
}
END_TEST

static int count_events(const strop_run_event *e, void *u) {
  int *n = u;
  ck_assert_uint_eq(e->size, sizeof *e);
  n[e->kind]++;
  return 0;
}

static int file_size(const char *dir, const char *name) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat st;
  return stat(p, &st) == 0 ? (int)st.st_size : -1;
}

START_TEST(run_end_to_end) {
  make_files();
  char path[256];
  snprintf(path, sizeof path, "%s/recipe.yaml", g_dir);
  FILE *f = fopen(path, "w");
  fputs(RECIPE, f);
  fclose(f);
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load(path, &r), STROP_OK);
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = STROP_RUN_TRAIN;
  int events[3] = {0, 0, 0};
  o.on_event = count_events;
  o.user_data = events;
  strop_run *run = NULL;
  ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(strop_run_info(run, STROP_INFO_TEST_SIZE), 60);
  ck_assert_int_eq(strop_run_info(run, STROP_INFO_TRAIN_SIZE) + strop_run_info(run, STROP_INFO_VAL_SIZE), 180);
  ck_assert_int_eq(strop_run_info(run, STROP_INFO_CLASSES), 4);
  ck_assert_int_eq(strop_run_info(run, STROP_INFO_STAGES), 3);
  ck_assert_int_eq(strop_run_info(run, STROP_INFO_EPOCHS), 3 + 4 + 7); /* scratch: 3 + 4 epochs */
  ck_assert_int_eq(events[STROP_EVENT_STAGE_START], 3);
  ck_assert_int_eq(events[STROP_EVENT_STAGE_END], 3);
  ck_assert_int_gt(events[STROP_EVENT_PROGRESS], 14);
  char name[32];
  strop_run_stage_name(run, 0, name, sizeof name);
  ck_assert_str_eq(name, "head");
  ck_assert(strop_run_stage_is_baseline(run, 2));
  double acc = strop_run_stage_metric(run, 1, STROP_METRIC_ACCURACY);
  ck_assert_msg(acc > 0.8, "blobs test accuracy %g", acc);
  ck_assert_double_eq(strop_run_stage_metric(run, 1, STROP_METRIC_SAMPLES), 60);
  /* the head stage trained only the head */
  ck_assert_double_eq(strop_run_history(run, 0, 0), 0);
  ck_assert(isfinite(strop_run_history(run, 5, 4)));
  char out[128];
  snprintf(out, sizeof out, "%s/out", g_dir);
  ck_assert_int_gt(file_size(out, "w.safetensors"), 100);
  ck_assert_int_gt(file_size(out, "net.yaml"), 20);
  ck_assert_int_gt(file_size(out, "metrics.csv"), 100);
  ck_assert_int_gt(file_size(out, "plot.svg"), 1000);
  ck_assert_int_gt(file_size(out, "report.json"), 100);
  /* the saved model reproduces the run's model */
  strop_model *m = NULL;
  char sp[300], wp[300];
  snprintf(sp, sizeof sp, "%s/net.yaml", out);
  snprintf(wp, sizeof wp, "%s/w.safetensors", out);
  ck_assert_int_eq(strop_model_load_spec(sp, &m), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(m, wp, STROP_LOAD_STRICT, NULL), STROP_OK);
  strop_metrics *mt = NULL;
  ck_assert_int_eq(strop_recipe_evaluate(r, m, STROP_SPLIT_TEST, &mt), STROP_OK);
  ck_assert_double_eq_tol(strop_metrics_get(mt, STROP_METRIC_ACCURACY), acc, 1e-12);
  strop_metrics_free(mt);
  strop_model_free(m);
  /* fine-tuning from the saved weights with a replaced head */
  ck_assert_int_eq(strop_recipe_set(r, "model.spec", "out/net.yaml"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "model.weights", "out/w.safetensors"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "surgery", "[{replace: {node: head, type: linear, options: "
                                                  "{out_features: 4}}}]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "output.dir", "out2"), STROP_OK);
  strop_run *run2 = NULL;
  o.mode = STROP_RUN_FINETUNE;
  ck_assert_msg(strop_recipe_run(r, &o, &run2) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(strop_run_info(run2, STROP_INFO_STAGES), 2);
  strop_run_free(run2);
  strop_run_free(run);
  strop_recipe_free(r);
}
END_TEST

START_TEST(run_errors) {
  make_files();
  char base[300];
  snprintf(base, sizeof base, "%s", g_dir);
  static const struct {
    const char *set_key, *set_val, *want;
    int status;
  } cases[] = {
      {"data.path", "missing.csv", "missing.csv", STROP_E_IO},
      {"model.spec", "nope.yaml", "nope.yaml", STROP_E_IO},
      {"surgery", "[{freeze: \"nomatch.*\"}]", "nomatch", STROP_E_NOT_FOUND},
      {"surgery", "[{replace: {node: head, type: linear, options: {out_features: 0}}}]",
       "out_features", STROP_E_INVALID_ARG},
      {"data.classes", "[7]", "7", STROP_E_INVALID_ARG},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, base, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, cases[i].set_key, cases[i].set_val), STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    strop_run *run = NULL;
    int s = strop_recipe_run(r, &o, &run);
    ck_assert_msg(s == cases[i].status, "case %zu: status %d, want %d: %s", i, s, cases[i].status,
                  strop_last_error());
    ck_assert_msg(strstr(strop_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'", i,
                  strop_last_error(), cases[i].want);
    strop_run_free(run);
    strop_recipe_free(r);
  }
  /* fine-tuning needs weights */
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, base, &r), STROP_OK);
  strop_run *run = NULL;
  ck_assert_int_eq(strop_recipe_run(r, NULL, &run), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'model.weights' is required"));
  ck_assert_ptr_null(run);
  strop_recipe_free(r);
}
END_TEST

/* A head-only stage on a frozen trunk trains on cached trunk outputs; the result must be the
 * one training through the trunk gives. */
START_TEST(frozen_trunk_cache_is_transparent) {
  make_files();
  double acc[2], loss[2], hl[2];
  for (int k = 0; k < 2; k++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "stages", "[{name: head, epochs: 4, surgery: [freeze: \"body.*\"]}]"),
                     STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "train.cache_frozen", k ? "false" : "true"), STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    o.baselines = 0;
    strop_run *run = NULL;
    ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
    acc[k] = strop_run_stage_metric(run, 0, STROP_METRIC_ACCURACY);
    loss[k] = strop_run_stage_metric(run, 0, STROP_METRIC_LOSS);
    hl[k] = strop_run_history(run, 3, 2);
    strop_run_free(run);
    strop_recipe_free(r);
  }
  ck_assert_double_eq(acc[0], acc[1]);
  ck_assert_double_eq_tol(loss[0], loss[1], 1e-6 * fabs(loss[1]));
  ck_assert_double_eq_tol(hl[0], hl[1], 1e-6 * fabs(hl[1]));
}
END_TEST

/* The lr of the run's history row (the optimizer's lr as a double; no schedule: constant). */
static double run_lr(strop_recipe *r) {
  strop_run_options o;
  strop_run_options_init(&o);
  o.write_outputs = 0;
  o.baselines = 0;
  strop_run *run = NULL;
  ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_ge(strop_run_info(run, STROP_INFO_EPOCHS), 1);
  double lr = strop_run_history(run, 0, 6); /* HC_LR */
  strop_run_free(run);
  return lr;
}

/* A value reaches the optimizer with every bit (no float on the way), and the tuner's sampled
 * values reach the run and the best recipe it writes back with every digit (no %.6g). */
START_TEST(tuned_values_keep_every_digit) {
  make_files();
  char wp[300];
  snprintf(wp, sizeof wp, "%s/w0.safetensors", g_dir);
  char sp[300];
  snprintf(sp, sizeof sp, "%s/net.yaml", g_dir);
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_load_spec(sp, &m), STROP_OK);
  ck_assert_int_eq(strop_model_save_weights(m, wp), STROP_OK);
  strop_model_free(m);
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "model.weights", "w0.safetensors"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "schedule", "{}"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "stages", "[{name: all, epochs: 1}]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
  /* set by text: the double the text means, exactly */
  ck_assert_int_eq(strop_recipe_set(r, "optimizer.lr", "0.000123456789012"), STROP_OK);
  ck_assert(run_lr(r) == 0.000123456789012);
  /* tuned: the value drawn is the value written back and the value trained with */
  ck_assert_int_eq(strop_recipe_set(r, "tune", "{strategy: random, trials: 1, seed: 4, metric: "
                                               "val_loss, best_recipe: best.yaml, params: [{key: "
                                               "optimizer.lr, type: float, low: 1.0e-4, high: "
                                               "2.0e-4}]}"), STROP_OK);
  strop_tune_options to;
  strop_tune_options_init(&to);
  to.epochs_cap = 1;
  strop_tuner *t = NULL;
  ck_assert_msg(strop_recipe_tune(r, &to, &t) == STROP_OK, "%s", strop_last_error());
  double drawn = 0;
  ck_assert_int_eq(strop_tuner_trial_float(t, strop_tuner_trial_id(t, 0), "optimizer.lr", &drawn),
                   STROP_OK);
  strop_tuner_free(t);
  char bp[300], text[64];
  snprintf(bp, sizeof bp, "%s/best.yaml", g_dir);
  strop_recipe *best = NULL;
  ck_assert_msg(strop_recipe_load(bp, &best) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_gt(strop_recipe_get(best, "optimizer.lr", text, sizeof text), 8);
  ck_assert_msg(strtod(text, NULL) == drawn, "drawn %.17g, written back as '%s'", drawn, text);
  ck_assert_int_eq(strop_recipe_set(best, "tune", "{}"), STROP_OK);
  double lr = run_lr(best);
  ck_assert_msg(lr == drawn, "drawn %.17g, trained with %.17g", drawn, lr);
  strop_recipe_free(best);
  strop_recipe_free(r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("recipe");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, load_get_set);
  tcase_add_test(tc, validation_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("run");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, run_end_to_end);
  tcase_add_test(tc, run_errors);
  tcase_add_test(tc, frozen_trunk_cache_is_transparent);
  tcase_add_test(tc, tuned_values_keep_every_digit);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
