/* SPDX-License-Identifier: MIT */
/* strop tests — recipe suite: parsing and validation errors with positions, key-path edits,
 * write-back, and running a small recipe end to end (stages, surgery, baseline, outputs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "recipe/plot.h"
#include "strop/strop.h"
#include <png.h>

#include "testutil.h"

static char g_dir[64];

#define OK_T(x) ck_assert_msg((x) == STROP_OK, "%s", strop_last_error())

/* A directory with a small CSV (4 blobs in 6-D, label last) and a spec. */
static void make_files(void) {
  strop_test_tmpdir("recipe", g_dir, sizeof g_dir);
  strop_test_blobs(g_dir);
}

static const char *RECIPE = "description: blobs\n"
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
  ck_assert_int_eq(strop_recipe_set(r, "loss.label_smoothing", "0.1"),
                   STROP_OK); /* creates loss */
  ck_assert_int_eq(strop_recipe_set(r, "surgery", "[{lora: {match: \"body.0\", rank: 2}}]"),
                   STROP_OK);
  ck_assert_int_eq(strop_recipe_get(r, "surgery[0].lora.rank", buf, sizeof buf), 1);
  /* an empty value (--set key=) or ~ is YAML's null: the key is not set, its default applies
   * (docs/recipes.md) */
  ck_assert_int_eq(strop_recipe_set(r, "stages[1].epochs", ""), STROP_OK);
  ck_assert_int_eq(strop_recipe_get(r, "stages[1].epochs", buf, sizeof buf), -1);
  ck_assert_int_eq(strop_recipe_set(r, "stages[1].epochs", "~"), STROP_OK);
  ck_assert_int_eq(strop_recipe_get(r, "stages[1].epochs", buf, sizeof buf), -1);
  ck_assert_int_eq(strop_recipe_set(r, "stages[1].epochs", "7"), STROP_OK);
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
       "model, surgery, data, loss, optimizer, schedule, train, stages, output, baselines, "
       "tune)"},
      {"optimizer:\n  kind: adamm\n", "<string>:2:9: 'kind' must be one of sgd, adam, adamw, "
                                      "rmsprop, adagrad, got 'adamm'"},
      {"train: {epochs: ten}\n", "<string>:1:17: 'epochs' must be an integer, got 'ten'"},
      {"data: [1, 2]\n", "'data' must be a mapping, got a list"},
      {"surgery:\n  - freez: x\n", "<string>:2:5: unknown surgery operation 'freez'"},
      {"surgery:\n  - replace: head\n", "'replace' needs a mapping of its arguments"},
      {"stages:\n  - name: a\n    epoch: 3\n",
       "<string>:3:5: unknown key 'epoch' in 'stages[0]'"},
      {"seed: 1\nseed: 2\n", "'seed' appears twice"},
      {"a: *x\n", "YAML"},
      {"model: {spec: [\n", "<string>:"},
      {"", "the recipe is empty"},
      /* a bad byte at its line and column (the YAML reader's offset: the quote the lone 0xe9
       * needed as its second byte; 1:1 before), é counted
       * as one column */
      {"seed: 1\ndescription: \"\xc3\xa9"
       "caf\xe9\"\n",
       "<string>:2:20: invalid trailing UTF-8 octet"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop_recipe *r = (strop_recipe *)1;
    int s = strop_recipe_load_string(cases[i].yaml, NULL, &r);
    ck_assert_msg(s == STROP_E_FORMAT, "case %zu: status %d (%s)", i, s, strop_last_error());
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(strop_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'",
                  i, strop_last_error(), cases[i].want);
  }
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load("/nonexistent/recipe.yaml", &r), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "/nonexistent/recipe.yaml"));
  ck_assert_int_eq(strop_recipe_load(NULL, &r), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_recipe_set(NULL, "a", "b"), STROP_E_INVALID_ARG);
}
END_TEST

/* Nonsense that validation used to let through: each refused at its line and column. */
START_TEST(range_errors) {
  static const struct {
    const char *yaml, *want;
  } cases[] = {
      {"data: {val_fraction: -0.5}\n",
       "<string>:1:22: 'val_fraction' must be in [0, 1), got -0.5"},
      {"data: {test_fraction: 2}\n", "<string>:1:23: 'test_fraction' must be in [0, 1), got 2"},
      {"train: {checkpoint_every: -1}\n",
       "<string>:1:27: 'checkpoint_every' must be >= 0, got -1"},
      {"train: {max_steps: -1}\n", "<string>:1:20: 'max_steps' must be >= 0, got -1"},
      {"train: {epochs: -3}\n", "<string>:1:17: 'epochs' must be >= 0, got -3"},
      {"stages:\n  - {name: a, epochs: -2}\n", "<string>:2:23: 'epochs' must be >= 0, got -2"},
      {"data: {resize: [0, 0]}\n", "<string>:1:17: 'resize' must be in [1, 65536], got 0"},
      {"data: {resize: 70000}\n", "'resize' must be in [1, 65536], got 70000"},
      {"data: {crop: {size: [0, 4]}}\n", "'size' must be in [1, 65536], got 0"},
      {"stages: []\n", "<string>:1:9: 'stages' must hold >= 1 entries, got 0 (leave the key out"},
      {"data: {batch_size: 0}\n", "<string>:1:20: 'batch_size' must be >= 1, got 0"},
      {"data: {eval_batch_size: -4}\n", "'eval_batch_size' must be >= 1, got -4"},
      {"data: {hflip: 1.5}\n", "'hflip' must be in [0, 1], got 1.5"},
      {"data: {num_classes: -2}\n",
       "'num_classes' must be in [-1, 16777216] (-1: infer), got -2"},
      {"data: {few_shot: -1}\n", "'few_shot' must be >= 0, got -1"},
      /* a seed is refused below 0 as the tool's --seed is (it was taken modulo 2^64) */
      {"seed: -1\n", "<string>:1:7: 'seed' must be >= 0, got -1"},
      {"data: {seed: -3}\n", "'seed' must be >= 0, got -3"},
      {"tune: {seed: -2}\n", "'seed' must be >= 0, got -2"},
      {"data: {classes: [1, -1]}\n", "<string>:1:21: 'classes' must be >= 0, got -1"},
      {"data: {input_shape: [1, 0]}\n", "'input_shape' must be >= 1, got 0"},
      {"data: {limit: -5}\n", "'limit' must be >= 0, got -5"},
      {"data: {max_length: 0}\n", "'max_length' must be in [1, 16777216], got 0"},
      {"data: {task: translate}\n", "'task' must be one of classify, causal_lm, prompt_response"},
      {"data: {padding: left}\n", "'padding' must be one of longest, max_length"},
      /* a NUL byte would cut a path or a name short */
      {"data: {path: \"img.idx\\0junk\"}\n", "<string>:1:14: a scalar holds a NUL byte (\\0) at "
                                             "offset 7"},
      {"surgery:\n  - freeze: \"a\\0b\"\n", "<string>:2:13: a scalar holds a NUL byte"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop_recipe *r = (strop_recipe *)1;
    int64_t live = strop__alloc_live();
    int s = strop_recipe_load_string(cases[i].yaml, NULL, &r);
    ck_assert_msg(s == STROP_E_FORMAT, "case %zu: status %d (%s)", i, s, strop_last_error());
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(strop_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'",
                  i, strop_last_error(), cases[i].want);
    ck_assert_int_eq(strop__alloc_live(), live);
  }
  /* the bounds hold for edits too, and a refused edit changes nothing */
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, NULL, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "data.val_fraction", "-0.5"), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'val_fraction' must be in [0, 1), got -0.5"));
  char buf[16];
  ck_assert_int_eq(strop_recipe_get(r, "data.val_fraction", buf, sizeof buf), 3);
  ck_assert_str_eq(buf, "0.2");
  ck_assert_int_eq(strop_recipe_set(r, "data.val_fraction", "0"),
                   STROP_OK); /* bounds are inclusive */
  ck_assert_int_eq(strop_recipe_set(r, "data.hflip", "1"), STROP_OK);
  strop_recipe_free(r);
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
  ck_assert_int_eq(
      strop_run_info(run, STROP_INFO_TRAIN_SIZE) + strop_run_info(run, STROP_INFO_VAL_SIZE), 180);
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
  ck_assert_int_eq(strop_recipe_set(r, "surgery",
                                    "[{replace: {node: head, type: linear, options: "
                                    "{out_features: 4}}}]"),
                   STROP_OK);
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
      {"model.checkpointing", "\"blocks.*\"",
       "'model.checkpointing': "
       "strop_model_set_checkpointing: 'blocks.*' names no block",
       STROP_E_NOT_FOUND},
      {"train.memory_limit_mb", "0.5",
       "'train.memory_limit_mb' 0.5, stage 'head': "
       "strop_trainer_check_memory: a training step of batch 16 needs",
       STROP_E_NOMEM},
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
    ck_assert_msg(strstr(strop_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'",
                  i, strop_last_error(), cases[i].want);
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

/* train.memory_limit_mb: auto (and no key, when the machine's limit is tight) takes the limit
 * from the machine: in a child whose RLIMIT_AS leaves 96 MB beside what it maps, a recipe
 * whose step needs about 135 MB (33.5 MB of weights, their gradients and Adam's state) is
 * refused before training, the sentence naming RLIMIT_AS with the figures; without the limit,
 * the same recipe trains. */
static int run_limited(const char *base, const char *limit, int with_rlimit, char *msg,
                       size_t cap) {
  int fd[2];
  ck_assert_int_eq(pipe(fd), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fd[0]);
    alarm(240); /* a hang ends the child (and fails the test): never an orphan spinning on */
    strop_recipe *r = NULL;
    char rec[1024];
    snprintf(rec, sizeof rec,
             "seed: 3\nmodel: {spec: wide.yaml}\n"
             "data: {source: csv, path: blobs.csv, num_classes: 4, test_fraction: 0.25, "
             "batch_size: 16, prefetch: false}\n"
             "optimizer: {kind: adam, lr: 0.001}\n"
             "train: {epochs: 1%s%s}\n"
             "stages: [{name: all}]\n",
             limit ? ", memory_limit_mb: " : "", limit ? limit : "");
    int s = strop_set_num_threads(1);
    if (!s) s = strop_recipe_load_string(rec, base, &r);
    if (!s && with_rlimit) {
      if (strop_test_limit_address_space(96)) _exit(100);
    }
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    strop_run *run = NULL;
    if (!s) s = strop_recipe_run(r, &o, &run);
    const char *e = s ? strop_last_error() : "";
    ssize_t w = write(fd[1], e, strlen(e));
    (void)w;
    _exit(s == STROP_OK ? 0 : s == STROP_E_NOMEM ? 2 : 3);
  }
  close(fd[1]);
  size_t n = 0;
  ssize_t k;
  while (n + 1 < cap && (k = read(fd[0], msg + n, cap - 1 - n)) > 0) n += (size_t)k;
  msg[n] = 0;
  close(fd[0]);
  int st = 0;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st));
  return WEXITSTATUS(st);
}

START_TEST(memory_limit_from_the_machine) {
  make_files();
  char p[300];
  snprintf(p, sizeof p, "%s/wide.yaml", g_dir);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs("input: [6]\nlayers:\n"
        "  - {name: fc1, type: linear, out_features: 2048}\n"
        "  - {name: act, type: relu}\n"
        "  - {name: fc2, type: linear, out_features: 4096}\n"
        "  - {name: act2, type: relu}\n"
        "  - {name: head, type: linear, out_features: 4}\n",
        f);
  ck_assert_int_eq(fclose(f), 0);
  char msg[4096];
  int rc;
  /* refused before training, naming the limit and the figures (not under AddressSanitizer:
   * its shadow memory is terabytes of address space, which RLIMIT_AS cannot sit above) */
#if !defined(__SANITIZE_ADDRESS__)
  rc = run_limited(g_dir, "auto", 1, msg, sizeof msg);
  ck_assert_msg(rc == 2, "exit %d: %s", rc, msg);
  ck_assert_msg(
      strstr(msg, "'train.memory_limit_mb' auto, stage 'all': strop_trainer_check_memory:"
                  " a training step of batch 16 needs about") != NULL,
      "%s", msg);
  ck_assert_msg(strstr(msg, "over the limit of") && strstr(msg, "(RLIMIT_AS ") &&
                    strstr(msg, "left, and the 33.7 MB the model holds)") &&
                    strstr(msg, "to fit:"),
                "%s", msg);
  /* no key: the limit is tight, so the same check runs */
  rc = run_limited(g_dir, NULL, 1, msg, sizeof msg);
  ck_assert_msg(rc == 2, "exit %d: %s", rc, msg);
  ck_assert_msg(strstr(msg, "'train.memory_limit_mb' (not set: auto), stage 'all'") &&
                    strstr(msg, "(RLIMIT_AS "),
                "%s", msg);
  /* an explicit number is that number, whatever the machine */
  rc = run_limited(g_dir, "100000", 1, msg, sizeof msg);
  ck_assert_msg(rc != 2 || !strstr(msg, "strop_trainer_check_memory"), "exit %d: %s", rc, msg);
#endif
  /* without the limit it trains, with auto and without the key */
  rc = run_limited(g_dir, "auto", 0, msg, sizeof msg);
  ck_assert_msg(rc == 0, "exit %d: %s", rc, msg);
  rc = run_limited(g_dir, NULL, 0, msg, sizeof msg);
  ck_assert_msg(rc == 0, "exit %d: %s", rc, msg);
  /* a word that is neither a number nor auto is refused at load, naming the key and line */
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string("model: {spec: wide.yaml}\n"
                                            "train: {memory_limit_mb: lots}\n",
                                            g_dir, &r),
                   STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "'memory_limit_mb' must be a number or auto, got "
                                           "'lots'") &&
                    strstr(strop_last_error(), ":2:"),
                "%s", strop_last_error());
  ck_assert_ptr_null(r);
}
END_TEST

/* The run records in the model what its data section did to the inputs and which classes its
 * outputs are (source labels and names, after data.classes kept some); the saved weights
 * carry them; a key the run does not set is removed from a model that had it. */
static const char *meta_of(const strop_model *m, const char *key) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  return strop_model_get_meta(m, key, buf[k], sizeof buf[k]) < 0 ? NULL : buf[k];
}

/* strop_model_predict_text on the text classifier a recipe trained: the tokenizer its
 * input.tokenizer names encodes raw strings; the class names come back; errors name what is
 * missing and leave the model as it was. */
static void predict_raw_texts(strop_model *m, const char *dir) {
  const char *texts[4] = {"very good film", "bad film", "good", "very very bad"};
  strop_prediction *p = NULL;
  OK_T(strop_model_predict_text(m, NULL, texts, NULL, 4, 2, &p));
  ck_assert_int_eq(strop_prediction_rows(p), 4);
  ck_assert_int_eq(strop_prediction_k(p), 2);
  const char *want[4] = {"pos", "neg", "pos", "neg"};
  for (int i = 0; i < 4; i++) {
    char name[16];
    ck_assert_int_eq(strop_prediction_name(p, i, 0, name, sizeof name), 3);
    ck_assert_str_eq(name, want[i]);
    ck_assert_int_eq(strop_prediction_label(p, i, 0), i % 2 ? 0 : 1);
    ck_assert(strop_prediction_prob(p, i, 0) > 0.5);
  }
  /* a tokenizer given by the caller: the same numbers */
  char path[512];
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  strop_tokenizer *tok = NULL;
  OK_T(strop_tokenizer_load(path, NULL, &tok));
  strop_prediction *q = NULL;
  OK_T(strop_model_predict_text(m, tok, texts, NULL, 4, 2, &q));
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 2; j++) {
      ck_assert_int_eq(strop_prediction_class(q, i, j), strop_prediction_class(p, i, j));
      ck_assert(strop_prediction_prob(q, i, j) == strop_prediction_prob(p, i, j));
    }
  strop_prediction_free(q);
  /* one text alone gives what it gave in the batch (its mask hides the batch's padding) */
  OK_T(strop_model_predict_text(m, NULL, texts + 2, NULL, 1, 1, &q));
  ck_assert(fabs(strop_prediction_prob(q, 0, 0) - strop_prediction_prob(p, 2, 0)) < 1e-6);
  strop_prediction_free(q);
  /* errors */
  char meta[600];
  ck_assert_int_gt(strop_model_get_meta(m, "input.tokenizer", meta, sizeof meta), 0);
  strop_prediction *none = (strop_prediction *)&none;
#define PT_REFUSED(call, status, part)                                         \
  do {                                                                         \
    none = (strop_prediction *)&none;                                          \
    ck_assert_int_eq(call, status);                                            \
    ck_assert_ptr_null(none);                                                  \
    ck_assert_msg(strstr(strop_last_error(), part), "%s", strop_last_error()); \
  } while (0)
  PT_REFUSED(strop_model_predict_text(NULL, NULL, texts, NULL, 1, 1, &none), STROP_E_INVALID_ARG,
             "model is NULL");
  PT_REFUSED(strop_model_predict_text(m, NULL, NULL, NULL, 1, 1, &none), STROP_E_INVALID_ARG,
             "texts is NULL");
  PT_REFUSED(strop_model_predict_text(m, NULL, texts, NULL, 0, 1, &none), STROP_E_INVALID_ARG,
             "n must be >= 1");
  PT_REFUSED(strop_model_predict_text(m, NULL, texts, NULL, 1, 0, &none), STROP_E_INVALID_ARG,
             "k must be >= 1");
  const char *holes[2] = {"good", NULL};
  PT_REFUSED(strop_model_predict_text(m, NULL, holes, NULL, 2, 1, &none), STROP_E_INVALID_ARG,
             "texts[1] is NULL");
  ck_assert_int_eq(strop_model_predict_text(m, NULL, texts, NULL, 1, 1, NULL),
                   STROP_E_INVALID_ARG);
  /* an empty text, alone (no token in the batch) or beside others (it was scored as padding) */
  const char *empty[3] = {"good", "", "bad"};
  PT_REFUSED(strop_model_predict_text(m, NULL, empty + 1, NULL, 1, 1, &none), STROP_E_INVALID_ARG,
             "text 0 is empty");
  PT_REFUSED(strop_model_predict_text(m, NULL, empty, NULL, 3, 1, &none), STROP_E_INVALID_ARG,
             "text 1 is empty");
  /* a model without input.tokenizer; a tokenizer file that is gone; another task */
  OK_T(strop_model_set_meta(m, "input.tokenizer", NULL));
  PT_REFUSED(strop_model_predict_text(m, NULL, texts, NULL, 1, 1, &none), STROP_E_NOT_FOUND,
             "the model has no 'input.tokenizer' metadata");
  OK_T(strop_model_predict_text(m, tok, texts, NULL, 1, 1, &q)); /* L from the input shape */
  ck_assert_int_eq(strop_prediction_class(q, 0, 0), strop_prediction_class(p, 0, 0));
  strop_prediction_free(q);
  OK_T(strop_model_set_meta(m, "input.tokenizer",
                            "{\"path\": \"/nonexistent/tok.json\", \"max_length\": 8, "
                            "\"task\": \"classify\"}"));
  PT_REFUSED(strop_model_predict_text(m, NULL, texts, NULL, 1, 1, &none), STROP_E_IO,
             "the tokenizer the model's input.tokenizer names (/nonexistent/tok.json) does not "
             "load");
  OK_T(strop_model_set_meta(m, "input.tokenizer",
                            "{\"path\": \"x\", \"max_length\": 8, \"task\": \"causal_lm\"}"));
  PT_REFUSED(strop_model_predict_text(m, NULL, texts, NULL, 1, 1, &none), STROP_E_UNSUPPORTED,
             "the text task 'causal_lm'");
  OK_T(strop_model_set_meta(m, "input.tokenizer", "{\"path\": 3}"));
  PT_REFUSED(strop_model_predict_text(m, NULL, texts, NULL, 1, 1, &none), STROP_E_FORMAT,
             "metadata 'input.tokenizer' is not");
#undef PT_REFUSED
  OK_T(strop_model_set_meta(m, "input.tokenizer", meta));
  /* the model is as it was: the same prediction */
  OK_T(strop_model_predict_text(m, NULL, texts, NULL, 4, 2, &q));
  for (int i = 0; i < 4; i++)
    ck_assert(strop_prediction_prob(q, i, 0) == strop_prediction_prob(p, i, 0));
  strop_prediction_free(q);
  strop_prediction_free(p);
  strop_tokenizer_free(tok);
}

/* Text data: a JSON Lines classification file tokenised with data.tokenizer trains a pooled
 * embedding classifier; the model records input.tokenizer and the label names. A language
 * model task records no classes; a text source without a tokenizer is named. */
START_TEST(run_text_classification) {
  make_files();
  char p[256];
  snprintf(p, sizeof p, "%s/tokenizer.json", g_dir);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"type\": \"WordLevel\","
        " \"unk_token\": \"<unk>\", \"vocab\": {\"<pad>\": 0, \"<unk>\": 1, \"good\": 2,"
        " \"bad\": 3, \"very\": 4, \"film\": 5}}}",
        f);
  fclose(f);
  snprintf(p, sizeof p, "%s/text_net.yaml", g_dir);
  f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs("input: [8]\nlayers:\n  - {name: emb, type: embedding, num_embeddings: 6, "
        "embedding_dim: 8}\n  - {name: pool, type: mean_pool}\n"
        "  - {name: head, type: linear, out_features: 2}\n",
        f);
  fclose(f);
  snprintf(p, sizeof p, "%s/reviews.jsonl", g_dir);
  f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < 40; i++)
    fprintf(f, "{\"review\": \"%s%s film\", \"y\": \"%s\"}\n", i % 3 ? "very " : "",
            i % 2 ? "good" : "bad", i % 2 ? "pos" : "neg");
  fclose(f);
  static const char text_recipe[] =
      "seed: 1\n"
      "model: {spec: text_net.yaml}\n"
      "data: {source: jsonl, path: reviews.jsonl, tokenizer: tokenizer.json, text: review,"
      " label: y, max_length: 8, test_fraction: 0.25, batch_size: 8}\n"
      "optimizer: {kind: adam, lr: 0.05}\n"
      "train: {epochs: 15}\n";
  strop_recipe *r = NULL;
  OK_T(strop_recipe_load_string(text_recipe, g_dir, &r));
  strop_run_options ro;
  strop_run_options_init(&ro);
  ro.mode = STROP_RUN_TRAIN;
  strop_run *run = NULL;
  OK_T(strop_recipe_run(r, &ro, &run));
  strop_model *m = strop_run_model(run);
  char want[400];
  snprintf(want, sizeof want,
           "{\"path\": \"%s/tokenizer.json\", \"max_length\": 8, \"task\": "
           "\"classify\"}",
           g_dir);
  ck_assert_str_eq(meta_of(m, "input.tokenizer"), want);
  ck_assert_str_eq(meta_of(m, "classes"), "[{\"label\": 0, \"name\": \"neg\"}, "
                                          "{\"label\": 1, \"name\": \"pos\"}]");
  ck_assert_msg(strop_run_stage_metric(run, 0, STROP_METRIC_ACCURACY) > 0.9, "accuracy %g",
                strop_run_stage_metric(run, 0, STROP_METRIC_ACCURACY));
  predict_raw_texts(m, g_dir);
  strop_run_free(run);
  strop_recipe_free(r);
  /* no tokenizer and no pretrained folder */
  OK_T(strop_recipe_load_string(text_recipe, g_dir, &r));
  OK_T(strop_recipe_set(r, "data.tokenizer", "null"));
  ck_assert_int_eq(strop_recipe_run(r, &ro, &run), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "jsonl text data needs 'tokenizer'"), "%s",
                strop_last_error());
  strop_run_free(run); /* a failed run may still report what it did */
  /* a bad record is named by file and line, at the recipe's key */
  OK_T(strop_recipe_set(r, "data.tokenizer", "tokenizer.json"));
  OK_T(strop_recipe_set(r, "data.label", "z"));
  ck_assert_int_eq(strop_recipe_run(r, &ro, &run), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "reviews.jsonl:1: no field \"z\""), "%s",
                strop_last_error());
  strop_run_free(run);
  strop_recipe_free(r);
}
END_TEST

START_TEST(run_records_model_metadata) {
  make_files();
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "data.classes", "[3, 1]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "data.class_names", "[zero, one, two, \"thr\\\"ee\"]"),
                   STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "data.scale", "0.5"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "surgery",
                                    "[{replace: {node: head, type: linear, options: "
                                    "{out_features: 2}}}]"),
                   STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "stages", "[{epochs: 1}]"), STROP_OK);
  strop_model *base = NULL;
  char sp[300];
  snprintf(sp, sizeof sp, "%s/net.yaml", g_dir);
  ck_assert_int_eq(strop_model_load_spec(sp, &base), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(base, "input.normalize", "{\"mean\": [1], \"std\": [2]}"),
                   STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(base, "host.key", "kept"), STROP_OK);
  strop_run_options o;
  strop_run_options_init(&o);
  o.base_model = base;
  strop_run *run = NULL;
  ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
  strop_model *m = strop_run_model(run);
  ck_assert_str_eq(meta_of(m, "input.shape"), "[6]");
  ck_assert_str_eq(meta_of(m, "input.scale"), "0.5");
  ck_assert_str_eq(meta_of(m, "classes"), "[{\"label\": 3, \"name\": \"thr\\\"ee\"}, "
                                          "{\"label\": 1, \"name\": \"one\"}]");
  ck_assert_ptr_null(meta_of(m, "input.normalize")); /* the data section does not normalize */
  ck_assert_ptr_null(meta_of(m, "input.resize"));
  ck_assert_str_eq(meta_of(m, "host.key"), "kept");
  /* the saved weights carry them */
  char wp[300];
  snprintf(wp, sizeof wp, "%s/out/w.safetensors", g_dir);
  strop_model *again = NULL;
  snprintf(sp, sizeof sp, "%s/out/net.yaml", g_dir);
  ck_assert_int_eq(strop_model_load_spec(sp, &again), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(again, wp, STROP_LOAD_STRICT, NULL), STROP_OK);
  ck_assert_str_eq(meta_of(again, "classes"), meta_of(m, "classes"));
  ck_assert_str_eq(meta_of(again, "input.scale"), "0.5");
  strop_model_free(again);
  strop_run_free(run);
  /* the source's own names (CSV label strings) when the recipe gives none; labels without
   * names have no "name" */
  ck_assert_int_eq(strop_recipe_set(r, "data.class_names", "null"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "output.dir", "out2"), STROP_OK);
  ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
  ck_assert_str_eq(meta_of(strop_run_model(run), "classes"), "[{\"label\": 3}, {\"label\": 1}]");
  strop_run_free(run);
  /* one name per source label, or the recipe is refused at the key */
  ck_assert_int_eq(strop_recipe_set(r, "data.class_names", "[a, b]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_run(r, &o, &run), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(
      strstr(strop_last_error(), "'class_names' names 2 classes but the data has 4"));
  strop_run_free(run);
  strop_recipe *bad = NULL;
  ck_assert_int_eq(strop_recipe_load_string("data: {class_names: [a, [b]]}\n", g_dir, &bad),
                   STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'class_names' entries must be strings"));
  strop_model_free(base);
  strop_recipe_free(r);
}
END_TEST

/* A data step that leaves a part with no sample names the key and the numbers; it used to
 * surface as "strop_batch_iter_create: the dataset is empty". */
START_TEST(data_split_messages) {
  make_files();
  char p[300];
  snprintf(p, sizeof p, "%s/one.csv", g_dir);
  FILE *f = fopen(p, "w");
  fputs("1,2,3,4,5,6,0\n", f);
  fclose(f);
  static const struct {
    const char *key, *val, *path, *want;
  } cases[] = {
      {"data.val_fraction", "0.2", "one.csv",
       "'val_fraction' 0.2 of 1 sample leaves the "
       "validation set empty"},
      {"data.test_fraction", "0.5", "one.csv",
       "'test_fraction' 0.5 of 1 sample leaves the test "
       "set empty"},
      {"data.test_fraction", "0.9", "blobs.csv", NULL},
      {"data.limit", "1", "blobs.csv", "'limit' 1 of 192 samples leaves the training set empty"},
      {"data.classes", "[3, 9]", "blobs.csv",
       "'classes': strop_dataset_filter_classes: "
       "classes[1] = 9 out of range for 4 classes"},
      {"data.few_shot", "500", "blobs.csv", "'few_shot': strop_dataset_few_shot: class 0 has"},
      {"data.input_shape", "[5]", "blobs.csv",
       "'input_shape': strop_dataset_reshape: new shape "
       "has 5 elements, the inputs have 6"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "data.path", cases[i].path), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "data.test_fraction", "0"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, cases[i].key, cases[i].val), STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    o.baselines = 0;
    o.epochs_cap = 1;
    strop_run *run = NULL;
    int st = strop_recipe_run(r, &o, &run);
    strop_run_free(run);
    strop_recipe_free(r);
    if (!cases[i].want) {
      ck_assert_msg(st == STROP_OK, "case %zu: %s", i, strop_last_error());
      continue;
    }
    ck_assert_msg(st != STROP_OK, "case %zu ran", i);
    ck_assert_msg(strstr(strop_last_error(), cases[i].want) != NULL, "case %zu: '%s' lacks '%s'",
                  i, strop_last_error(), cases[i].want);
    ck_assert_msg(strstr(strop_last_error(), "<string>:") != NULL,
                  "case %zu: '%s' has no position", i, strop_last_error());
    ck_assert_ptr_null(strstr(strop_last_error() + 1, "strop_recipe_run: strop_recipe_run"));
  }
}
END_TEST

/* Everything a run writes: a reason to fail before the first epoch, not after the last. */
static int count_epochs(const strop_run_event *e, void *u) {
  if (e->kind == STROP_EVENT_PROGRESS && e->progress->phase == STROP_PHASE_EPOCH_END)
    (*(int *)u)++;
  return 0;
}

/* Runs RECIPE (one quick stage, no baseline) with the given output folder; 0 or the status. */
static int run_into(const char *out_dir, int *epochs) {
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "stages", "[{name: all, epochs: 2}]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "train.checkpoint_every", "4"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "output.checkpoint", "ck/ck.safetensors"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "output.dir", out_dir), STROP_OK);
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = STROP_RUN_TRAIN;
  o.on_event = count_epochs;
  o.user_data = epochs;
  strop_run *run = NULL;
  int st = strop_recipe_run(r, &o, &run);
  strop_run_free(run);
  strop_recipe_free(r);
  return st;
}

START_TEST(outputs_ready_before_training) {
  make_files();
  /* a first run: the folders (with parents) exist before the first periodic checkpoint */
  int epochs = 0;
  ck_assert_msg(run_into("new/deeper/out", &epochs) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(epochs, 2);
  char p[400];
  snprintf(p, sizeof p, "%s/new/deeper/out/ck", g_dir);
  ck_assert_int_gt(file_size(p, "ck.safetensors"), 100);
  snprintf(p, sizeof p, "%s/new/deeper/out", g_dir);
  ck_assert_int_gt(file_size(p, "w.safetensors"), 100);
  /* two outputs naming one file (./ and // aside): refused before any epoch, naming both keys
   * and the file, and nothing is written (output.spec used to overwrite the weights' file) */
  static const char *const same[] = {"w.safetensors", "./w.safetensors", ".//w.safetensors"};
  for (int i = 0; i < 3; i++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "output.dir", "same"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "output.weights", "w.safetensors"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "output.spec", same[i]), STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.on_event = count_epochs;
    epochs = 0;
    o.user_data = &epochs;
    strop_run *run = NULL;
    ck_assert_int_eq(strop_recipe_run(r, &o, &run), STROP_E_FORMAT);
    ck_assert_int_eq(epochs, 0);
    ck_assert_msg(strstr(strop_last_error(), "output.weights and output.spec both name"), "%s",
                  strop_last_error());
    strop_run_free(run);
    strop_recipe_free(r);
  }
  snprintf(p, sizeof p, "%s/same/w.safetensors", g_dir);
  ck_assert_int_ne(access(p, F_OK), 0);
  /* a folder that cannot be made: the run stops before any epoch, naming it */
  epochs = 0;
  ck_assert_int_eq(run_into("blobs.csv/out", &epochs), STROP_E_IO);
  ck_assert_int_eq(epochs, 0);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "blobs.csv/out"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "output (checked before training)"));
  /* a full disk, as a file size limit of 1 KiB makes one: refused before any epoch */
  pid_t child = fork();
  ck_assert_int_ge(child, 0);
  if (child == 0) {
    struct rlimit lim = {1024, 1024};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(10);
    int n = 0, st = run_into("full", &n);
    const char *e = strop_last_error();
    if (st != STROP_E_IO) _exit(11);
    if (n != 0) _exit(12);
    if (!strstr(e, "/full' cannot take files (writing failed: File too large)")) {
      fprintf(stderr, "%s\n", e);
      _exit(13);
    }
    _exit(0);
  }
  strop_test_wait_child(child);
  /* a read-only folder (root writes anywhere: only as another user) */
  if (geteuid() != 0) {
    snprintf(p, sizeof p, "%s/ro", g_dir);
    ck_assert_int_eq(mkdir(p, 0555), 0);
    epochs = 0;
    ck_assert_int_eq(run_into("ro", &epochs), STROP_E_IO);
    ck_assert_int_eq(epochs, 0);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "/ro' cannot take files"));
  }
}
END_TEST

/* Stops a run after n epoch ends (over all stages). */
static int stop_after(const strop_run_event *e, void *u) {
  int *left = u;
  if (e->kind == STROP_EVENT_PROGRESS && e->progress->phase == STROP_PHASE_EPOCH_END)
    return --*left <= 0;
  return 0;
}

/* Runs the two-stage RECIPE into out_dir; stop_epochs > 0 stops it after that many epochs. */
static int run_stages(const char *out_dir, int stop_epochs, int resume, const char *extra_key,
                      const char *extra_val, char *weights, size_t cap) {
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "train.checkpoint_every", "3"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "output.checkpoint", "ck.safetensors"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "output.dir", out_dir), STROP_OK);
  if (extra_key) ck_assert_int_eq(strop_recipe_set(r, extra_key, extra_val), STROP_OK);
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = STROP_RUN_TRAIN;
  o.resume = resume;
  int left = stop_epochs;
  if (stop_epochs > 0) {
    o.on_event = stop_after;
    o.user_data = &left;
  }
  strop_run *run = NULL;
  int st = strop_recipe_run(r, &o, &run);
  strop_run_free(run);
  strop_recipe_free(r);
  snprintf(weights, cap, "%s/%s/w.safetensors", g_dir, out_dir);
  return st;
}

static int same_file(const char *a, const char *b) {
  size_t na = 0, nb = 0;
  char *x = strop_test_read_file(a, &na), *y = strop_test_read_file(b, &nb);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

/* strop finetune --resume: a run stopped after N epochs and resumed ends with the weights
 * of the uninterrupted run, bit for bit, whichever stage it stopped in. */
START_TEST(resume_is_bit_identical) {
  make_files();
  char ref[400], got[400];
  ck_assert_msg(run_stages("whole", 0, 0, NULL, NULL, ref, sizeof ref) == STROP_OK, "%s",
                strop_last_error());
  for (int stop = 1; stop <= 5; stop += 2) { /* in stage 'head' (3 epochs), then in 'all' */
    char dir[32];
    snprintf(dir, sizeof dir, "stopped%d", stop);
    ck_assert_int_eq(run_stages(dir, stop, 0, NULL, NULL, got, sizeof got), STROP_E_CANCELLED);
    ck_assert_int_lt(file_size(dir, "w.safetensors"), 0);
    /* the recipe key does what the option does */
    int st = stop == 3 ? run_stages(dir, 0, 0, "output.resume", "true", got, sizeof got)
                       : run_stages(dir, 0, 1, NULL, NULL, got, sizeof got);
    ck_assert_msg(st == STROP_OK, "stop %d: %s", stop, strop_last_error());
    ck_assert_msg(same_file(ref, got), "stopped after %d epochs and resumed: other weights",
                  stop);
  }
  /* no checkpoint yet: resume starts from the beginning */
  ck_assert_int_eq(run_stages("fresh", 0, 1, NULL, NULL, got, sizeof got), STROP_OK);
  ck_assert(same_file(ref, got));
  /* a checkpoint the recipe's stages did not write is refused, naming both */
  ck_assert_int_eq(run_stages("stopped1", 1, 0, NULL, NULL, got, sizeof got), STROP_E_CANCELLED);
  ck_assert_int_eq(run_stages("stopped1", 0, 1, "stages[0].name", "warmup", got, sizeof got),
                   STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "was written by stage 'head', the recipe's "
                                                   "stage 1 is 'warmup'"));
  char other[400];
  snprintf(other, sizeof other, "%s/stopped1/ck.safetensors", g_dir);
  strop_model *m = NULL;
  char sp[300];
  snprintf(sp, sizeof sp, "%s/net.yaml", g_dir);
  ck_assert_int_eq(strop_model_load_spec(sp, &m), STROP_OK);
  ck_assert_int_eq(strop_model_save_weights(m, other), STROP_OK); /* weights, not a checkpoint */
  strop_model_free(m);
  ck_assert_int_eq(run_stages("stopped1", 0, 1, NULL, NULL, got, sizeof got), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "not a strop checkpoint"));
  /* resuming needs a checkpoint to resume from */
  ck_assert_int_eq(run_stages("x", 0, 1, "output.checkpoint", "~", got, sizeof got),
                   STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "resuming needs 'output.checkpoint'"));
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
    ck_assert_int_eq(
        strop_recipe_set(r, "stages", "[{name: head, epochs: 4, surgery: [freeze: \"body.*\"]}]"),
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

/* model.checkpointing recomputes blocks in the backward: the same losses and accuracy, to the
 * bit, as without. */
START_TEST(checkpointing_is_transparent) {
  make_files();
  char p[300];
  snprintf(p, sizeof p, "%s/net_blocks.yaml", g_dir);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs("input: [6]\nlayers:\n"
        "  - {name: stem, type: linear, out_features: 16}\n"
        "  - {name: blocks.0.fc, type: linear, out_features: 16}\n"
        "  - {name: blocks.0.act, type: gelu}\n"
        "  - {name: blocks.0.drop, type: dropout, p: 0.2}\n"
        "  - {name: blocks.1.fc, type: linear, out_features: 16}\n"
        "  - {name: blocks.1.act, type: gelu}\n"
        "  - {name: blocks.1.drop, type: dropout, p: 0.2}\n"
        "  - {name: head, type: linear, out_features: 4}\n",
        f);
  fclose(f);
  double acc[2], loss[2], hl[2];
  for (int k = 0; k < 2; k++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "model.spec", "net_blocks.yaml"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "stages", "[{name: all, epochs: 3}]"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "model.checkpointing", k ? "off" : "auto"), STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    o.baselines = 0;
    strop_run *run = NULL;
    ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
    acc[k] = strop_run_stage_metric(run, 0, STROP_METRIC_ACCURACY);
    loss[k] = strop_run_stage_metric(run, 0, STROP_METRIC_LOSS);
    hl[k] = strop_run_history(run, 2, 2);
    strop_run_free(run);
    strop_recipe_free(r);
  }
  ck_assert_double_eq(acc[0], acc[1]);
  ck_assert_double_eq(loss[0], loss[1]);
  ck_assert_double_eq(hl[0], hl[1]);
}
END_TEST

/* model.frozen_dtype: the weights a stage freezes are held in it; a bad word is refused. */
/* model.compute_dtype: bf16 trains the linear products in BF16 (the model records it), with
 * losses near FP32's (each stage's test loss within 0.05; restore_best puts the best weights
 * back, whose BF16 copies follow); f32 is the default; other words are refused naming the key.
 * model.weight_cache: false packs the trained weights per product (the model records it), the
 * same losses as bf16's bit for bit; a non-boolean is refused naming the key.
 * model.attention: tiled is recorded by the model (this one has no attention layer: the same
 * bits); a word other than auto, tiled and materialized is refused naming the key. */
START_TEST(compute_dtype_key) {
  make_files();
  double loss[3][2];
  static const char *const words[] = {"f32", "bf16", "bf16"};
  for (int k = 0; k < 3; k++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    if (k) ck_assert_int_eq(strop_recipe_set(r, "model.compute_dtype", words[k]), STROP_OK);
    if (k == 2) ck_assert_int_eq(strop_recipe_set(r, "model.weight_cache", "false"), STROP_OK);
    if (k == 2) ck_assert_int_eq(strop_recipe_set(r, "model.attention", "tiled"), STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    o.baselines = 0;
    strop_run *run = NULL;
    ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
    ck_assert_int_eq(strop_model_compute_dtype(strop_run_model(run)), k ? 1 : 0);
    ck_assert_int_eq(strop_model_weight_cache(strop_run_model(run)), k != 2);
    ck_assert_int_eq(strop_model_attention(strop_run_model(run)),
                     k == 2 ? STROP_ATTENTION_TILED : STROP_ATTENTION_AUTO);
    for (int st = 0; st < 2; st++) {
      loss[k][st] = strop_run_stage_metric(run, st, STROP_METRIC_LOSS);
      ck_assert(isfinite(loss[k][st]));
    }
    strop_run_free(run);
    strop_recipe_free(r);
  }
  for (int st = 0; st < 2; st++) {
    ck_assert_msg(fabs(loss[0][st] - loss[1][st]) <= 0.05, "stage %d: f32 %g, bf16 %g", st,
                  loss[0][st], loss[1][st]);
    ck_assert_double_eq(loss[1][st], loss[2][st]); /* the weight cache off: the same bits */
  }
  {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_ne(strop_recipe_set(r, "model.weight_cache", "sometimes"), STROP_OK);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "weight_cache"));
    ck_assert_int_ne(strop_recipe_set(r, "model.attention", "flash"), STROP_OK);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "attention"));
    strop_recipe_free(r);
  }
  static const char *const bad[] = {"fp16", "int8"};
  for (int k = 0; k < 2; k++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_ne(strop_recipe_set(r, "model.compute_dtype", bad[k]), STROP_OK);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "compute_dtype"));
    strop_recipe_free(r);
  }
}
END_TEST

START_TEST(frozen_dtype_key) {
  make_files();
  static const char *const words[] = {"bf16", "int8"};
  for (int k = 0; k < 2; k++) {
    strop_recipe *r = NULL;
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "model.frozen_dtype", words[k]), STROP_OK);
    ck_assert_int_eq(
        strop_recipe_set(r, "stages", "[{name: head, epochs: 2, surgery: [freeze: \"body.*\"]}]"),
        STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    o.baselines = 0;
    strop_run *run = NULL;
    ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
    strop_model *m = strop_run_model(run);
    ck_assert_int_eq(strop_model_frozen_dtype(m), k + 1);
    strop_tensor *t = NULL;
    ck_assert_int_eq(strop_model_tensor_view(m, "body.0.weight", &t), STROP_E_UNSUPPORTED);
    ck_assert(isfinite(strop_run_stage_metric(run, 0, STROP_METRIC_LOSS)));
    strop_run_free(run);
    strop_recipe_free(r);
  }
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_ne(strop_recipe_set(r, "model.frozen_dtype", "fp8"), STROP_OK);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "frozen_dtype"));
  strop_recipe_free(r);
  /* model.int8_group: scales per group of inputs; a group the library refuses names the key */
  static const char *const groups[] = {"32", "4"};
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "model.frozen_dtype", "int8"), STROP_OK);
    ck_assert_int_eq(strop_recipe_set(r, "model.int8_group", groups[k]), STROP_OK);
    ck_assert_int_eq(
        strop_recipe_set(r, "stages", "[{name: head, epochs: 1, surgery: [freeze: \"body.*\"]}]"),
        STROP_OK);
    strop_run_options o;
    strop_run_options_init(&o);
    o.mode = STROP_RUN_TRAIN;
    o.write_outputs = 0;
    o.baselines = 0;
    strop_run *run = NULL;
    const strop_status st = strop_recipe_run(r, &o, &run);
    if (k == 0) {
      ck_assert_msg(st == STROP_OK, "%s", strop_last_error());
      ck_assert_int_eq(strop_model_frozen_int8_group(strop_run_model(run)), 32);
    } else {
      ck_assert_int_eq(st, STROP_E_INVALID_ARG);
      ck_assert_msg(
          strstr(strop_last_error(), "model.int8_group") && strstr(strop_last_error(), "got 4"),
          "%s", strop_last_error());
    }
    strop_run_free(run); /* a failed run with a model is handed back too */
    strop_recipe_free(r);
  }
}
END_TEST

/* model.mmap and model.frozen: the base is frozen at load and its weights borrowed from the
 * mapped file; the losses are those of a copying load, bit for bit (the same parameters
 * train); LoRA on the mapped base trains; bad values name the key and the line; `strop
 * train` refuses mmap (it replaces the weights). */
static strop_run *mapped_run(const char *model, const char *surgery, int64_t *borrowed) {
  char rec[1400];
  snprintf(rec, sizeof rec,
           "seed: 3\nmodel: {spec: net.yaml, weights: base.safetensors%s}\n"
           "data: {source: csv, path: blobs.csv, num_classes: 4, test_fraction: 0.25, "
           "val_fraction: 0.2, batch_size: 16, prefetch: false}\n"
           "optimizer: {kind: adam, lr: 0.01}\n"
           "train: {epochs: 3, cache_frozen: false}\n"
           "stages: [{name: s, surgery: %s}]\n",
           model, surgery);
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(rec, g_dir, &r), STROP_OK);
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = STROP_RUN_FINETUNE;
  o.write_outputs = 0;
  o.baselines = 0;
  strop_run *run = NULL;
  const int64_t b0 = strop__mapping_borrowed_bytes();
  ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
  *borrowed = strop__mapping_borrowed_bytes() - b0;
  strop_recipe_free(r);
  return run;
}

START_TEST(mapped_frozen_base_keys) {
  make_files();
  char p[300];
  snprintf(p, sizeof p, "%s/net.yaml", g_dir);
  strop_model *m = NULL;
  OK_T(strop_model_load_spec(p, &m));
  snprintf(p, sizeof p, "%s/base.safetensors", g_dir);
  OK_T(strop_model_save_weights(m, p));
  strop_model_free(m);
  int64_t b_copy = 0, b_map = 0, b_lora = 0;
  strop_run *copy = mapped_run("", "[freeze: \"body.*\"]", &b_copy);
  strop_run *map = mapped_run(", mmap: true, frozen: true", "[unfreeze: head]", &b_map);
  ck_assert_int_eq(b_copy, 0);
  ck_assert_int_ge(b_map, 6 * 16 * 4); /* body.0.weight at least, straight from the file */
  ck_assert_int_eq(strop_run_info(copy, STROP_INFO_EPOCHS), 3);
  ck_assert_int_eq(strop_run_info(map, STROP_INFO_EPOCHS), 3);
  for (int64_t e = 0; e < 3; e++)
    for (int k = 2; k <= 5; k++) {
      const double a = strop_run_history(copy, e, k), b = strop_run_history(map, e, k);
      ck_assert_msg(memcmp(&a, &b, sizeof a) == 0, "epoch %lld column %d: %.17g vs %.17g",
                    (long long)e, k, a, b);
    }
  strop_run_free(copy);
  strop_run_free(map);
  /* LoRA on the mapped base trains: the adapters move the loss */
  strop_run *lora = mapped_run(", mmap: true, frozen: true",
                               "[{lora: {match: \"body.0\", rank: 2, alpha: 4}}, unfreeze: head]",
                               &b_lora);
  ck_assert_int_gt(b_lora, 0);
  const double l0 = strop_run_history(lora, 0, 2), l2 = strop_run_history(lora, 2, 2);
  ck_assert_msg(isfinite(l0) && l2 < l0, "lora losses %g -> %g", l0, l2);
  strop_run_free(lora);
  /* bad values name the key and the line */
  strop_recipe *r = NULL;
  ck_assert_int_eq(
      strop_recipe_load_string("seed: 1\nmodel:\n  spec: net.yaml\n  mmap: maybe\n", g_dir, &r),
      STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), ":4:") &&
                    strstr(strop_last_error(), "'mmap' must be true or false, got 'maybe'"),
                "%s", strop_last_error());
  ck_assert_int_eq(
      strop_recipe_load_string("seed: 1\nmodel:\n  spec: net.yaml\n  frozen: 2\n", g_dir, &r),
      STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), ":4:") &&
                    strstr(strop_last_error(), "'frozen' must be true or false, got '2'"),
                "%s", strop_last_error());
  /* strop train replaces the weights: mmap is refused there, naming the key */
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "model.mmap", "true"), STROP_OK);
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = STROP_RUN_TRAIN;
  o.write_outputs = 0;
  strop_run *run = NULL;
  ck_assert_int_eq(strop_recipe_run(r, &o, &run), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "'model.mmap' borrows the weights"), "%s",
                strop_last_error());
  strop_recipe_free(r);
}
END_TEST

/* Plot axes: round ticks covering the data, steps of 1, 2 or 5 times a power of ten. */
START_TEST(plot_ticks_are_round) {
  static const struct {
    double lo, hi;
    int max;
    double want_lo, want_hi, want_step;
    int decimals;
  } cases[] = {
      {0.0, 1.50214, 5, 0.0, 2.0, 0.5, 1}, /* the demo's loss: was 0, 0.394, 0.789 */
      {0.41, 1.0, 5, 0.4, 1.0, 0.2, 1},    /* accuracy: 40% .. 100% */
      {0.8731, 0.8846, 5, 0.870, 0.885, 0.005, 3},
      {3.0, 3.0, 5, 2.6, 3.4, 0.2, 1},       /* one value: a range around it */
      {-7.0, 23.0, 6, -10.0, 30.0, 10.0, 0}, /* steps of 5 would need 7 intervals */
      {0.0, 1.0, 1, 0.0, 1.0, 1.0, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop__ticks t;
    strop__plot_ticks(cases[i].lo, cases[i].hi, cases[i].max, &t);
    ck_assert_msg(fabs(t.step - cases[i].want_step) < 1e-12 &&
                      fabs(t.lo - cases[i].want_lo) < 1e-9 &&
                      fabs(t.hi - cases[i].want_hi) < 1e-9 && t.decimals == cases[i].decimals,
                  "case %zu: [%g, %g] step %g decimals %d", i, t.lo, t.hi, t.step, t.decimals);
    ck_assert_int_le(t.n, cases[i].max);
    ck_assert(t.lo <= cases[i].lo && t.hi >= cases[i].hi);
    ck_assert_double_eq_tol(strop__plot_tick(&t, t.n), t.hi, 1e-12);
  }
  strop__ticks t;
  strop__plot_ticks(NAN, 1.0, 5, &t);
  ck_assert(t.lo == 0.0 && t.hi == 1.0);
  ck_assert_int_eq(strop__plot_int_step(120, 8), 20);
  ck_assert_int_eq(strop__plot_int_step(12, 8), 2);
  ck_assert_int_eq(strop__plot_int_step(7, 8), 1);
  ck_assert_int_eq(strop__plot_int_step(3000, 8), 500);
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
  ck_assert_int_eq(strop_recipe_set(r, "tune",
                                    "{strategy: random, trials: 1, seed: 4, metric: "
                                    "val_loss, best_recipe: best.yaml, params: [{key: "
                                    "optimizer.lr, type: float, low: 1.0e-4, high: "
                                    "2.0e-4}]}"),
                   STROP_OK);
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

/* ---- strop_recipe_tune (issue 17) ---- */

/* The blobs recipe with pre-trained weights, two stages of 3 epochs, no outputs, and a tune:
 * section whose only parameter is the second stage's learning rate. */
static strop_recipe *tune_recipe(const char *extra_tune) {
  make_files();
  char sp[300], wp[300];
  snprintf(sp, sizeof sp, "%s/net.yaml", g_dir);
  snprintf(wp, sizeof wp, "%s/w0.safetensors", g_dir);
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_load_spec(sp, &m), STROP_OK);
  ck_assert_int_eq(strop_model_save_weights(m, wp), STROP_OK);
  strop_model_free(m);
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load_string(RECIPE, g_dir, &r), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "model.weights", "w0.safetensors"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "schedule", "{}"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "train", "{monitor: val_accuracy}"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "stages[1].epochs", "3"), STROP_OK);
  ck_assert_int_eq(strop_recipe_set(r, "baselines", "[]"), STROP_OK);
  char tune[600];
  snprintf(tune, sizeof tune,
           "{strategy: grid, grid_points: 4, seed: 1, metric: val_loss, "
           "trials_file: trials.jsonl, params: [{key: \"stages[1].optimizer.lr\", type: float, "
           "low: 1.0e-3, high: 10, log: true}]%s}",
           extra_tune ? extra_tune : "");
  strop_test_must(strop_recipe_set(r, "tune", tune), "tune section");
  return r;
}

typedef struct tune_log {
  int starts, ends, epochs, resumed, outputs;
  int64_t first_start, resumed_count, stop_in_trial, stop_at_epoch;
  int64_t end_ids[32];
  int end_status[32];
  double end_value[32];
  char output_keys[160];
} tune_log;

static int log_tune(const strop_tune_event *e, void *u) {
  tune_log *l = u;
  ck_assert_uint_eq(e->size, sizeof *e);
  switch (e->kind) {
    case STROP_TUNE_EVENT_TRIAL_START:
      if (l->starts++ == 0) l->first_start = e->trial_id;
      return 0;
    case STROP_TUNE_EVENT_EPOCH:
      l->epochs++;
      return e->trial_id == l->stop_in_trial && e->epoch == l->stop_at_epoch;
    case STROP_TUNE_EVENT_TRIAL_END:
      if (l->ends < 32) {
        l->end_ids[l->ends] = e->trial_id;
        l->end_status[l->ends] = e->status;
        l->end_value[l->ends] = e->value;
      }
      l->ends++;
      return 0;
    case STROP_TUNE_EVENT_RESUMED:
      l->resumed++;
      l->resumed_count = e->count;
      ck_assert_str_eq(e->key, "tune.trials_file");
      ck_assert_ptr_nonnull(strstr(e->path, "trials.jsonl"));
      return 0;
    case STROP_TUNE_EVENT_OUTPUT:
      l->outputs++;
      snprintf(l->output_keys + strlen(l->output_keys),
               sizeof l->output_keys - strlen(l->output_keys), "%s ", e->key);
      ck_assert_ptr_nonnull(e->path);
      return 0;
    default: return 0;
  }
}

/* Trials that differ only in the second stage's learning rate are judged on that stage only:
 * the pruner sees its epochs, counted from 1, never the first stage's (where every trial is
 * the same and a trial used to be cut, with the value of the others, before its setting ran).
 * A pruned trial's value is its last reported one, in the event as in the tuner. */
START_TEST(tune_prunes_on_the_last_stage) {
  strop_recipe *r = tune_recipe(", pruner: median, prune_warmup_trials: 1");
  strop_tune_options o;
  strop_tune_options_init(&o);
  tune_log l;
  memset(&l, 0, sizeof l);
  l.stop_in_trial = -1;
  o.on_event = log_tune;
  o.user_data = &l;
  strop_tuner *t = NULL;
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(strop_tuner_num_trials(t), 4);
  ck_assert_int_eq(l.ends, 4);
  int pruned = 0;
  for (int i = 0; i < 4; i++) {
    int64_t id = l.end_ids[i], n = 0;
    int st;
    double v;
    OK_T(strop_tuner_trial_result(t, id, &st, &v, NULL, &n));
    ck_assert_int_eq(st, l.end_status[i]);
    ck_assert_msg(n >= 1 && n <= 3, "trial %lld: %lld reports (the last stage has 3 epochs)",
                  (long long)id, (long long)n);
    if (st == STROP_TRIAL_OK) ck_assert_int_eq(n, 3);
    for (int64_t k = 0; k < n; k++) {
      int64_t step;
      OK_T(strop_tuner_trial_report_at(t, id, k, &step, NULL));
      ck_assert_int_eq(step, k + 1);
    }
    if (st == STROP_TRIAL_PRUNED) {
      pruned++;
      double last;
      OK_T(strop_tuner_trial_report_at(t, id, n - 1, NULL, &last));
      ck_assert_msg(l.end_value[i] == last && v == last,
                    "pruned trial %lld: event %g, tuner %g, "
                    "last report %g",
                    (long long)id, l.end_value[i], v, last);
    }
  }
  ck_assert_int_ge(l.epochs, 4 * 3 + 4); /* the first stage ran in full in every trial */
  ck_assert_int_ge(pruned, 1); /* (the median rule cut at least one: its value is checked) */
  strop_tuner_free(t);
  strop_recipe_free(r);
}
END_TEST

/* The host's stop during a trial records it as interrupted; the next run says what it resumed
 * and runs that trial first, with its values; a finished search runs nothing and still writes
 * its files. */
START_TEST(tune_interrupt_and_resume) {
  strop_recipe *r = tune_recipe(", best_recipe: best.yaml, plot: tune.svg");
  strop_tune_options o;
  strop_tune_options_init(&o);
  tune_log l;
  memset(&l, 0, sizeof l);
  l.stop_in_trial = 1;
  l.stop_at_epoch = 2;
  o.on_event = log_tune;
  o.user_data = &l;
  strop_tuner *t = (strop_tuner *)1;
  ck_assert_int_eq(strop_recipe_tune(r, &o, &t), STROP_E_CANCELLED);
  ck_assert_ptr_null(t);
  ck_assert_int_eq(l.ends, 2);
  ck_assert_int_eq(l.end_status[1], STROP_TRIAL_INTERRUPTED);
  ck_assert(isnan(l.end_value[1]));
  ck_assert_int_eq(l.resumed, 0);
  /* the rerun: 1 finished trial read, trial 1 first */
  memset(&l, 0, sizeof l);
  l.stop_in_trial = -1;
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(l.resumed, 1);
  ck_assert_int_eq(l.resumed_count, 1);
  ck_assert_int_eq(l.first_start, 1);
  ck_assert_int_eq(l.starts, 3);
  ck_assert_int_eq(strop_tuner_num_trials(t), 4);
  for (int64_t i = 0; i < 4; i++) {
    int st;
    OK_T(strop_tuner_trial_result(t, strop_tuner_trial_id(t, i), &st, NULL, NULL, NULL));
    ck_assert_int_eq(st, STROP_TRIAL_OK);
  }
  ck_assert_str_eq(l.output_keys, "tune.trials_file tune.best_recipe tune.plot ");
  strop_tuner_free(t);
  /* finished: nothing runs, the files are written again */
  memset(&l, 0, sizeof l);
  l.stop_in_trial = -1;
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(l.resumed_count, 4);
  ck_assert_int_eq(l.starts, 0);
  ck_assert_int_eq(l.outputs, 3);
  strop_tuner_free(t);
  /* more trials than the file has: only the missing ones run (a grid of 4 has no more) */
  o.trials = 6;
  memset(&l, 0, sizeof l);
  l.stop_in_trial = -1;
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(l.starts, 0);
  strop_tuner_free(t);
  strop_recipe_free(r);
}
END_TEST

/* tune.best_recipe at the path of an output file is refused before any trial; the time budget
 * of the options reaches the tuner. */
START_TEST(tune_errors_and_budget) {
  strop_recipe *r = tune_recipe(", best_recipe: out/net.yaml");
  strop_tune_options o;
  strop_tune_options_init(&o);
  strop_tuner *t = NULL;
  ck_assert_int_eq(strop_recipe_tune(r, &o, &t), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "output.spec"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "overwrite"));
  ck_assert_int_eq(strop_recipe_set(r, "tune.best_recipe", "trials.jsonl"), STROP_OK);
  ck_assert_int_eq(strop_recipe_tune(r, &o, &t), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "tune.trials_file"));
  /* the same files spelled otherwise, through folders that exist and folders a run would make */
  static const char *const spellings[][2] = {{"./trials.jsonl", "tune.trials_file"},
                                             {"nope/../trials.jsonl", "tune.trials_file"},
                                             {".//trials.jsonl", "tune.trials_file"},
                                             {"out/./net.yaml", "output.spec"},
                                             {"out/new/../net.yaml", "output.spec"}};
  for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
    ck_assert_int_eq(strop_recipe_set(r, "tune.best_recipe", spellings[i][0]), STROP_OK);
    ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_E_FORMAT, "%s was taken",
                  spellings[i][0]);
    ck_assert_msg(strstr(strop_last_error(), spellings[i][1]) != NULL, "%s: %s", spellings[i][0],
                  strop_last_error());
  }
  ck_assert_int_eq(strop_recipe_set(r, "tune.best_recipe", "best.yaml"), STROP_OK);
  /* no trial to run (-1 ran none and exited 0); the options' count overrides the recipe's */
  ck_assert_int_eq(strop_recipe_set(r, "tune.trials", "-1"), STROP_OK);
  ck_assert_int_eq(strop_recipe_tune(r, &o, &t), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'trials' must be at least 1, got -1"));
  ck_assert_int_eq(strop_recipe_set(r, "tune.trials", "4"), STROP_OK);
  o.time_budget = -1;
  ck_assert_int_eq(strop_recipe_tune(r, &o, &t), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "time_budget"));
  /* a budget spent at once: no trial starts (the grid has 4) */
  o.time_budget = 1e-9;
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_le(strop_tuner_num_trials(t), 1);
  double v;
  ck_assert_int_eq(strop_tuner_get_double(t, STROP_TUNE_TIME_BUDGET, &v), STROP_OK);
  ck_assert(v == 1e-9);
  strop_tuner_free(t);
  /* the recipe key sets it too */
  char tf[300];
  snprintf(tf, sizeof tf, "%s/trials.jsonl", g_dir);
  unlink(tf);
  o.time_budget = 0;
  ck_assert_int_eq(strop_recipe_set(r, "tune.time", "1.0e-9"), STROP_OK);
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_le(strop_tuner_num_trials(t), 1);
  ck_assert_int_eq(strop_tuner_get_double(t, STROP_TUNE_TIME_BUDGET, &v), STROP_OK);
  ck_assert(v == 1e-9);
  strop_tuner_free(t);
  /* a trials file in a folder that does not exist yet (a fresh checkout's out/): made, with
   * its parents, as a run's outputs' folders are */
  ck_assert_int_eq(strop_recipe_set(r, "tune.trials_file", "fresh/deeper/trials.jsonl"),
                   STROP_OK);
  ck_assert_msg(strop_recipe_tune(r, &o, &t) == STROP_OK, "%s", strop_last_error());
  snprintf(tf, sizeof tf, "%s/fresh/deeper", g_dir);
  struct stat sb;
  ck_assert_int_eq(stat(tf, &sb), 0);
  ck_assert(S_ISDIR(sb.st_mode));
  strop_tuner_free(t);
  strop_recipe_free(r);
}
END_TEST

/* An image folder through a recipe: the imagenet preset with sizes of its own, a random resized
 * crop and colour jitter in training, the resize and centre crop to evaluate; the model records
 * the evaluation pipeline (input.resize with the shorter side, input.center_crop, ImageNet's
 * normalization) and strop_model_predict applies it to an image of another size. PNG files are
 * written here with libpng. */
static void write_png(const char *path, int w, int h, int seed) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = PNG_FORMAT_RGB;
  unsigned char *px = malloc((size_t)(w * h * 3));
  for (int i = 0; i < w * h * 3; i++) px[i] = (unsigned char)((i * 37 + seed * 101) % 251);
  ck_assert_int_ne(png_image_write_to_file(&img, path, 0, px, 0, NULL), 0);
  free(px);
}

START_TEST(run_images_preset) {
  make_files();
  char p[512];
  snprintf(p, sizeof p, "%s/imgs", g_dir);
  mkdir(p, 0755);
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < 6; i++) {
      snprintf(p, sizeof p, "%s/imgs/%s", g_dir, c ? "dog" : "cat");
      mkdir(p, 0755);
      snprintf(p, sizeof p, "%s/imgs/%s/%d.png", g_dir, c ? "dog" : "cat", i);
      write_png(p, 20 + 3 * i, 17 + 2 * c, 10 * c + i);
    }
  snprintf(p, sizeof p, "%s/net_img.yaml", g_dir);
  FILE *f = fopen(p, "w");
  fputs("input: [3, 16, 16]\nlayers:\n"
        "  - {name: conv, type: conv2d, in_channels: 3, out_channels: 4, kernel_size: 3}\n"
        "  - {name: act, type: relu}\n"
        "  - {name: flat, type: flatten}\n"
        "  - {name: head, type: linear, in_features: 784, out_features: 2}\n",
        f);
  fclose(f);
  const char *text = "seed: 1\n"
                     "model: {spec: net_img.yaml}\n"
                     "data:\n"
                     "  source: images\n"
                     "  path: imgs\n"
                     "  preset: imagenet\n"
                     "  resize_shorter: 18\n"
                     "  center_crop: 16\n"
                     "  random_resized_crop: {size: 16, scale: [0.5, 1.0]}\n"
                     "  color_jitter: {brightness: 0.2, hue: 0.05}\n"
                     "  test_fraction: 0.25\n"
                     "  batch_size: 3\n"
                     "  workers: 2\n"
                     "optimizer: {kind: sgd, lr: 0.01}\n"
                     "stages: [{epochs: 2}]\n"
                     "output: {dir: out_img, weights: w.safetensors, spec: net.yaml}\n";
  strop_recipe *r = NULL;
  ck_assert_msg(strop_recipe_load_string(text, g_dir, &r) == STROP_OK, "%s", strop_last_error());
  strop_run *run = NULL;
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = STROP_RUN_TRAIN;
  ck_assert_msg(strop_recipe_run(r, &o, &run) == STROP_OK, "%s", strop_last_error());
  strop_model *m = strop_run_model(run);
  ck_assert_str_eq(meta_of(m, "input.resize"), "{\"shorter\": 18, \"mode\": \"bilinear_aa\"}");
  ck_assert_str_eq(meta_of(m, "input.center_crop"), "{\"size\": [16, 16]}");
  ck_assert_str_eq(meta_of(m, "input.normalize"),
                   "{\"mean\": [0.485000014, 0.456, 0.405999988], \"std\": [0.229000002, "
                   "0.224000007, 0.224999994]}");
  ck_assert_str_eq(meta_of(m, "classes"), "[{\"label\": 0, \"name\": \"cat\"}, {\"label\": 1, "
                                          "\"name\": \"dog\"}]");
  /* an image of another size goes through the recorded pipeline */
  int64_t d[4] = {1, 3, 31, 45};
  strop_tensor *x = NULL;
  strop_prediction *pr = NULL;
  ck_assert_int_eq(strop_tensor_create(4, d, &x), STROP_OK);
  ck_assert_msg(strop_model_predict(m, x, 1, &pr) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(strop_prediction_rows(pr), 1);
  strop_prediction_free(pr);
  strop_tensor_free(x);
  strop_run_free(run);
  /* resize and resize_shorter together are refused at the key */
  ck_assert_int_eq(strop_recipe_set(r, "data.resize", "[16, 16]"), STROP_OK);
  run = NULL;
  ck_assert_int_eq(strop_recipe_run(r, &o, &run), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "not both"));
  strop_run_free(run); /* the partial run (its model was built before the data failed) */
  strop_recipe_free(r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("recipe");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, load_get_set);
  tcase_add_test(tc, validation_errors);
  tcase_add_test(tc, range_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("plot");
  tcase_add_test(tc, plot_ticks_are_round);
  suite_add_tcase(s, tc);
  tc = tcase_create("run");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, run_end_to_end);
  tcase_add_test(tc, run_errors);
  tcase_add_test(tc, memory_limit_from_the_machine);
  tcase_add_test(tc, run_records_model_metadata);
  tcase_add_test(tc, run_text_classification);
  tcase_add_test(tc, run_images_preset);
  tcase_add_test(tc, frozen_trunk_cache_is_transparent);
  tcase_add_test(tc, frozen_dtype_key);
  tcase_add_test(tc, compute_dtype_key);
  tcase_add_test(tc, mapped_frozen_base_keys);
  tcase_add_test(tc, checkpointing_is_transparent);
  tcase_add_test(tc, data_split_messages);
  tcase_add_test(tc, outputs_ready_before_training);
  tcase_add_test(tc, resume_is_bit_identical);
  tcase_add_test(tc, tuned_values_keep_every_digit);
  suite_add_tcase(s, tc);
  tc = tcase_create("tune");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, tune_prunes_on_the_last_stage);
  tcase_add_test(tc, tune_interrupt_and_resume);
  tcase_add_test(tc, tune_errors_and_budget);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
