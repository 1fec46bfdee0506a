/* SPDX-License-Identifier: MIT */
/* strop tests — trainer suite: steps, the numeric guard, accumulation, clipping, metrics,
 * early stopping, exact resume from a checkpoint, and Fashion-MNIST from scratch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/graph.h"
#include "ops/bf16gemm.h"
#include "ops/dense.h"
#include "ops/lowp.h"
#include "optim/optim.h"
#include "strop/strop.h"
#include "strop/train.h"
#include "testutil.h"

#define FASHION "/usr/share/datasets/fashion-mnist"

static int sanitized(void) { return getenv("STROP_SANITIZED") != NULL; }

/* A small classification problem: 4 Gaussian blobs in 8-D. */
static strop_dataset *blobs(int64_t n, uint64_t seed) {
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(seed, &g), STROP_OK);
  float *x = malloc((size_t)n * 8 * sizeof *x), *y = malloc((size_t)n * sizeof *y);
  ck_assert_int_eq(strop_rng_normal(g, 0, 0.7f, x, (size_t)n * 8), STROP_OK);
  for (int64_t i = 0; i < n; i++) {
    int c = (int)(strop_rng_next_u32(g) % 4);
    y[i] = (float)c;
    x[i * 8 + c] += 2.0f;
    x[i * 8 + 4 + c] -= 1.5f;
  }
  int64_t d[1] = {8};
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, n, 1, d, 0, NULL, 4, &ds), STROP_OK);
  free(x);
  free(y);
  strop_rng_free(g);
  return ds;
}

static strop_model *mlp(uint64_t seed) {
  int64_t in[1] = {8};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "out_features=16", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "drop", "dropout", "p=0.1", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=4", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, seed), STROP_OK);
  return m;
}

typedef struct rig {
  strop_model *m;
  strop_optimizer *opt;
  strop_scheduler *sched;
  strop_trainer *tr;
} rig;

static rig make_rig(uint64_t seed, int kind, float lr) {
  rig r;
  memset(&r, 0, sizeof r);
  r.m = mlp(seed);
  ck_assert_int_eq(strop_optimizer_create(r.m, kind, &r.opt), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_LR, lr), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(r.m, r.opt, &r.tr), STROP_OK);
  return r;
}

static void free_rig(rig *r) {
  strop_trainer_free(r->tr);
  strop_scheduler_free(r->sched);
  strop_optimizer_free(r->opt);
  strop_model_free(r->m);
}

/* All parameter bytes, concatenated (for bitwise comparisons). */
static float *weights(strop_model *m, size_t *n_out) {
  size_t n = 0;
  for (int i = 0; i < m->n_params; i++) n += m->params[i]->data ? m->params[i]->numel : 0;
  float *w = malloc(n * sizeof *w);
  size_t o = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->data) {
      memcpy(w + o, m->params[i]->data, m->params[i]->numel * sizeof *w);
      o += m->params[i]->numel;
    }
  *n_out = n;
  return w;
}

static void batch(strop_dataset *ds, int64_t start, int64_t n, strop_tensor **x,
                  strop_tensor **y) {
  int64_t xd[2] = {n, 8}, yd[1] = {n};
  ck_assert_int_eq(strop_tensor_create(2, xd, x), STROP_OK);
  ck_assert_int_eq(strop_tensor_create(1, yd, y), STROP_OK);
  for (int64_t i = 0; i < n; i++)
    ck_assert_int_eq(strop_dataset_get(ds, start + i, strop_tensor_data(*x) + i * 8, 8,
                                       strop_tensor_data(*y) + i, 1),
                     STROP_OK);
}

/* A small CNN declared for side x side images; global average pooling makes any size work. */
static strop_model *cnn(int64_t side, uint64_t seed) {
  const int64_t in[3] = {2, side, side};
  strop_model *m = NULL;
  strop_test_must(strop_model_create(3, in, &m), "create");
  strop_test_must(
      strop_model_add(m, "conv", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL),
      "conv");
  strop_test_must(strop_model_add(m, "bn", "batchnorm2d", NULL, NULL), "bn");
  strop_test_must(strop_model_add(m, "act", "relu", NULL, NULL), "relu");
  strop_test_must(strop_model_add(m, "pool", "global_avgpool", NULL, NULL), "pool");
  strop_test_must(strop_model_add(m, "head", "linear", "out_features=3", NULL), "head");
  strop_test_must(strop_model_finalize(m, seed), "finalize");
  return m;
}

/* A batch of images of another size than the model is declared for trains, evaluates and runs
 * the host path exactly as a model declared for that size does (same weights, same bits). */
START_TEST(other_input_sizes_train_alike) {
  strop_model *declared8 = cnn(8, 3), *declared11 = cnn(11, 3);
  strop_model *ms[2] = {declared8, declared11};
  float losses[2][3];
  float *w[2];
  size_t nw = 0;
  const int64_t xd[4] = {5, 2, 11, 11}, yd[1] = {5};
  float x[5 * 2 * 11 * 11], y[5] = {0, 1, 2, 1, 0};
  for (size_t i = 0; i < sizeof x / sizeof *x; i++) x[i] = (float)sin(0.37 * (double)i);
  for (int k = 0; k < 2; k++) {
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    strop_test_must(strop_optimizer_create(ms[k], STROP_OPTIM_ADAMW, &opt), "opt");
    strop_test_must(strop_trainer_create(ms[k], opt, &tr), "trainer");
    strop_tensor *tx = NULL, *ty = NULL;
    strop_test_must(strop_tensor_wrap(x, sizeof x / sizeof *x, 4, xd, &tx), "x");
    strop_test_must(strop_tensor_wrap(y, 5, 1, yd, &ty), "y");
    for (int i = 0; i < 2; i++)
      strop_test_must(strop_trainer_step(tr, tx, ty, &losses[k][i]), "step");
    /* the host path: forward, the output's shape, backward */
    strop_tensor *out = NULL;
    strop_test_must(strop_trainer_forward(tr, tx, &out), "host forward");
    ck_assert_int_eq(strop_tensor_rank(out), 2);
    strop_tensor *dout = NULL;
    strop_test_must(strop_tensor_copy(out, &dout), "dout");
    strop_test_must(strop_tensor_fill(dout, 0.01f), "fill");
    strop_test_must(strop_trainer_backward(tr, dout), "host backward");
    strop_test_must(strop_trainer_apply(tr), "apply");
    losses[k][2] = strop_tensor_data(out)[4];
    strop_tensor_free(out);
    strop_tensor_free(dout);
    /* evaluation of that size */
    strop_dataset *ds = NULL;
    strop_test_must(
        strop_dataset_from_memory(x, y, 5, 3, (const int64_t[]){2, 11, 11}, 0, NULL, 3, &ds),
        "dataset");
    strop_metrics *mt = NULL;
    strop_test_must(strop_trainer_eval_dataset(tr, ds, 2, &mt), "eval");
    ck_assert(strop_metrics_get(mt, STROP_METRIC_LOSS) >= 0);
    strop_metrics_free(mt);
    strop_dataset_free(ds);
    w[k] = weights(ms[k], &nw);
    strop_tensor_free(tx);
    strop_tensor_free(ty);
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
  }
  ck_assert_mem_eq(losses[0], losses[1], sizeof losses[0]);
  ck_assert_mem_eq(w[0], w[1], nw * sizeof *w[0]);
  /* a rank the model cannot take, and a size a layer refuses, name what is wrong */
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(declared8, STROP_OPTIM_SGD, &opt), "opt");
  strop_test_must(strop_trainer_create(declared8, opt, &tr), "trainer");
  strop_tensor *bad = NULL, *ty = NULL;
  strop_test_must(strop_tensor_wrap(x, 5 * 2 * 11 * 11, 3, (const int64_t[]){5, 2, 121}, &bad),
                  "bad");
  strop_test_must(strop_tensor_wrap(y, 5, 1, yd, &ty), "y");
  ck_assert_int_eq(strop_trainer_step(tr, bad, ty, NULL), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "the model expects [N, 2, 8, 8]"));
  strop_tensor_free(bad);
  strop_test_must(strop_tensor_wrap(x, 5 * 3 * 11 * 11, 4, (const int64_t[]){5, 3, 11, 11}, &bad),
                  "bad channels");
  ck_assert_int_eq(strop_trainer_step(tr, bad, ty, NULL), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "conv"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "declared for [N, 2, 8, 8]"));
  strop_tensor_free(bad);
  strop_tensor_free(ty);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  free(w[0]);
  free(w[1]);
  strop_model_free(declared8);
  strop_model_free(declared11);
}
END_TEST

START_TEST(step_learns) {
  strop_dataset *ds = blobs(512, 1);
  rig r = make_rig(3, STROP_OPTIM_ADAM, 1e-2f);
  strop_metrics *before = NULL, *after = NULL;
  ck_assert_int_eq(strop_trainer_eval_dataset(r.tr, ds, 100, &before), STROP_OK);
  for (int e = 0; e < 5; e++)
    for (int64_t s = 0; s < 512; s += 64) {
      strop_tensor *x, *y;
      batch(ds, s, 64, &x, &y);
      float loss;
      ck_assert_int_eq(strop_trainer_step(r.tr, x, y, &loss), STROP_OK);
      ck_assert(isfinite(loss));
      strop_tensor_free(x);
      strop_tensor_free(y);
    }
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 40);
  ck_assert_int_eq(strop_trainer_eval_dataset(r.tr, ds, 100, &after), STROP_OK);
  ck_assert_double_eq(strop_metrics_get(after, STROP_METRIC_SAMPLES), 512);
  ck_assert_double_lt(strop_metrics_get(after, STROP_METRIC_LOSS),
                      0.5 * strop_metrics_get(before, STROP_METRIC_LOSS));
  ck_assert_double_gt(strop_metrics_get(after, STROP_METRIC_ACCURACY), 0.9);
  strop_metrics_free(before);
  strop_metrics_free(after);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(warm_step_allocates_nothing) {
  strop_dataset *ds = blobs(64, 2);
  rig r = make_rig(3, STROP_OPTIM_ADAM, 1e-3f);
  strop_tensor *x, *y;
  batch(ds, 0, 64, &x, &y);
  for (int i = 0; i < 4; i++) {
    int64_t before = strop__alloc_count();
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    if (i >= 2)
      ck_assert_msg(strop__alloc_count() == before, "step %d made %lld heap allocations", i,
                    (long long)(strop__alloc_count() - before));
  }
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

/* A DEBUG log handler hears a skipped step and each checkpoint written and read. */
typedef struct dbg_sink {
  int n;
  char text[4096];
} dbg_sink;

static void dbg_record(int level, const char *message, void *user_data) {
  dbg_sink *s = user_data;
  if (level != STROP_LOG_DEBUG) return;
  s->n++;
  size_t l = strlen(s->text);
  snprintf(s->text + l, sizeof s->text - l, "%s\n", message);
}

START_TEST(debug_log_tells_skips_and_checkpoints) {
  strop_dataset *ds = blobs(64, 4);
  rig r = make_rig(5, STROP_OPTIM_ADAM, 1e-2f);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  char dir[] = "/tmp/strop_dbg_XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/ck.safetensors", dir);
  dbg_sink sink = {0, ""};
  strop_set_log_handler(dbg_record, STROP_LOG_DEBUG, &sink);
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  strop_tensor_data(x)[5] = NAN;
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_E_NUMERIC);
  ck_assert_int_eq(strop_trainer_save_checkpoint(r.tr, path), STROP_OK);
  ck_assert_int_eq(strop_trainer_load_checkpoint(r.tr, path), STROP_OK);
  strop_set_log_handler(NULL, 0, NULL);
  ck_assert_msg(strstr(sink.text, "skipped") &&
                    strstr(sink.text, "strop_trainer_save_checkpoint") &&
                    strstr(sink.text, "strop_trainer_load_checkpoint") &&
                    strstr(sink.text, "ck.safetensors"),
                "the DEBUG log says:\n%s", sink.text);
  unlink(path);
  rmdir(dir);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(nan_batch_is_skipped) {
  strop_dataset *ds = blobs(64, 4);
  rig r = make_rig(5, STROP_OPTIM_ADAM, 1e-2f);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  size_t n;
  float *w0 = weights(r.m, &n);
  int ns = strop__optim_state_count(r.opt);
  ck_assert_int_gt(ns, 1);
  strop__state_entry e;
  ck_assert_int_eq(strop__optim_state_at(r.opt, ns - 1, &e), STROP_OK);
  ck_assert_int_eq(e.dtype, STROP__STATE_F32);
  float *s0 = malloc(e.numel * sizeof *s0);
  memcpy(s0, e.data, e.numel * sizeof *s0);
  strop_tensor_data(x)[5] = NAN;
  float loss = 0;
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, &loss), STROP_E_NUMERIC);
  ck_assert(isnan(loss));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "step 1"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "skipped"));
  size_t n1;
  float *w1 = weights(r.m, &n1);
  ck_assert_mem_eq(w0, w1, n * sizeof *w0);
  ck_assert_int_eq(strop__optim_state_at(r.opt, ns - 1, &e), STROP_OK);
  ck_assert_mem_eq(s0, e.data, e.numel * sizeof *s0);
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 1);
  ck_assert_int_eq(strop_trainer_skipped_steps(r.tr), 1);
  /* the host may go on */
  strop_tensor_data(x)[5] = 0.0f;
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 2);
  free(w0);
  free(w1);
  free(s0);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

/* The model's int64 buffers (BatchNorm's num_batches_tracked), concatenated. */
static int64_t *ibuffers(strop_model *m, size_t *n_out) {
  size_t n = 0;
  for (int i = 0; i < m->n_params; i++) n += m->params[i]->idata ? m->params[i]->numel : 0;
  int64_t *v = malloc((n ? n : 1) * sizeof *v);
  size_t o = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->idata) {
      memcpy(v + o, m->params[i]->idata, m->params[i]->numel * sizeof *v);
      o += m->params[i]->numel;
    }
  *n_out = n;
  return v;
}

/* Every float32 value of the optimizer's state, concatenated. */
static float *optim_state(strop_optimizer *o, size_t *n_out, int64_t *steps_sum) {
  size_t n = 0;
  int64_t ss = 0;
  int cnt = strop__optim_state_count(o);
  for (int i = 0; i < cnt; i++) {
    strop__state_entry e;
    ck_assert_int_eq(strop__optim_state_at(o, i, &e), STROP_OK);
    if (e.dtype == STROP__STATE_F32) n += e.numel;
    else ss += *(const int64_t *)e.data * (i + 1);
  }
  float *v = malloc((n ? n : 1) * sizeof *v);
  size_t k = 0;
  for (int i = 0; i < cnt; i++) {
    strop__state_entry e;
    ck_assert_int_eq(strop__optim_state_at(o, i, &e), STROP_OK);
    if (e.dtype != STROP__STATE_F32) continue;
    memcpy(v + k, e.data, e.numel * sizeof *v);
    k += e.numel;
  }
  *n_out = n;
  *steps_sum = ss;
  return v;
}

/* Everything a skipped step must leave as it was: parameters and float buffers, int64
 * buffers, optimizer state, the model's RNG, the step counters. */
typedef struct frozen_state {
  float *w, *os;
  int64_t *ib;
  size_t nw, nos, nib;
  int64_t steps, gstep, ostep;
  strop__rng rng;
} frozen_state;

static frozen_state freeze_state(const rig *r) {
  frozen_state f;
  f.w = weights(r->m, &f.nw);
  f.ib = ibuffers(r->m, &f.nib);
  f.os = optim_state(r->opt, &f.nos, &f.steps);
  f.gstep = strop_trainer_global_step(r->tr);
  f.ostep = strop_optimizer_step_count(r->opt);
  f.rng = r->m->rng;
  return f;
}

static void assert_state_is(const rig *r, const frozen_state *f) {
  frozen_state g = freeze_state(r);
  ck_assert_uint_eq(g.nw, f->nw);
  ck_assert_msg(memcmp(g.w, f->w, f->nw * sizeof *f->w) == 0, "a parameter or buffer moved");
  ck_assert_uint_eq(g.nib, f->nib);
  ck_assert_msg(memcmp(g.ib, f->ib, f->nib * sizeof *f->ib) == 0, "an int64 buffer moved");
  ck_assert_uint_eq(g.nos, f->nos);
  ck_assert_msg(memcmp(g.os, f->os, f->nos * sizeof *f->os) == 0, "the optimizer state moved");
  ck_assert_int_eq(g.steps, f->steps);
  ck_assert_int_eq(g.gstep, f->gstep);
  ck_assert_int_eq(g.ostep, f->ostep);
  ck_assert(g.rng.state == f->rng.state && g.rng.inc == f->rng.inc);
  free(g.w);
  free(g.ib);
  free(g.os);
}

static void free_state(frozen_state *f) {
  free(f->w);
  free(f->ib);
  free(f->os);
}

/* fc1 -> batchnorm1d -> relu -> dropout -> head: running statistics, a batch counter, and RNG
 * draws in every training forward. */
static rig bn_rig(uint64_t seed, int kind, float lr) {
  rig r;
  memset(&r, 0, sizeof r);
  int64_t in[1] = {8};
  ck_assert_int_eq(strop_model_create(1, in, &r.m), STROP_OK);
  ck_assert_int_eq(strop_model_add(r.m, "fc1", "linear", "out_features=16", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(r.m, "bn", "batchnorm1d", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(r.m, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(r.m, "drop", "dropout", "p=0.1", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(r.m, "head", "linear", "out_features=4", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(r.m, seed), STROP_OK);
  ck_assert_int_eq(strop_optimizer_create(r.m, kind, &r.opt), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_LR, lr), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(r.m, r.opt, &r.tr), STROP_OK);
  return r;
}

/* Issue 18, item 1: a NaN batch is skipped, and it must not poison BatchNorm's running
 * statistics either (the forward updates them before the loss is known): every parameter,
 * buffer, the optimizer state and the RNG stay as they were, the next step trains, and an
 * eval forward is finite. With accumulation the whole window is undone. */
START_TEST(nan_batch_keeps_batchnorm_stats) {
  strop_dataset *ds = blobs(64, 4);
  for (int accum = 1; accum <= 2; accum++) {
    rig r = bn_rig(5, STROP_OPTIM_ADAM, 1e-2f);
    ck_assert_int_eq(strop_trainer_set_int(r.tr, STROP_TRAIN_ACCUM_STEPS, accum), STROP_OK);
    strop_tensor *x, *y;
    batch(ds, 0, 32, &x, &y);
    for (int k = 0; k < accum; k++)
      ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    frozen_state before = freeze_state(&r);
    ck_assert_int_gt((int)before.nib, 0);
    if (accum == 2) /* a finite first micro-batch updates the statistics, then a NaN one */
      ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    const float keep = strop_tensor_data(x)[5];
    strop_tensor_data(x)[5] = NAN;
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "skipped"));
    assert_state_is(&r, &before);
    ck_assert_int_eq(strop_trainer_skipped_steps(r.tr), 1);
    /* the host goes on: a finite step trains, and the statistics give finite outputs */
    strop_tensor_data(x)[5] = keep;
    for (int k = 0; k < accum; k++)
      ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    strop__param *rv = strop__model_param_find(r.m, "bn.running_var");
    ck_assert_ptr_nonnull(rv);
    ck_assert(strop__all_finite(rv->data, rv->numel));
    strop_metrics *mt = NULL;
    ck_assert_int_eq(strop_trainer_eval_dataset(r.tr, ds, 64, &mt), STROP_OK);
    ck_assert_msg(isfinite(strop_metrics_get(mt, STROP_METRIC_LOSS)), "eval loss %g",
                  strop_metrics_get(mt, STROP_METRIC_LOSS));
    strop_metrics_free(mt);
    free_state(&before);
    strop_tensor_free(x);
    strop_tensor_free(y);
    free_rig(&r);
  }
  strop_dataset_free(ds);
}
END_TEST

/* Issue 18, item 2: a finite learning rate large enough to overflow the update. The step is
 * refused whole: STROP_E_NUMERIC naming the parameter, every weight as before, no counter
 * moved; with a sane lr the host goes on and every weight is finite. */
START_TEST(overflowing_update_is_refused) {
  strop_dataset *ds = blobs(64, 4);
  static const int kinds[] = {STROP_OPTIM_SGD, STROP_OPTIM_ADAM, STROP_OPTIM_RMSPROP};
  static const float lrs[] = {3e38f, 3e38f, 3e38f};
  for (int i = 0; i < 3; i++) {
    rig r = bn_rig(7, kinds[i], 1e-2f);
    strop_tensor *x, *y;
    batch(ds, 0, 32, &x, &y);
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_LR, lrs[i]), STROP_OK);
    /* with weight decay in the update, lr * (grad + wd * w) is far beyond float's range */
    ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_WEIGHT_DECAY, 100.0f), STROP_OK);
    frozen_state before = freeze_state(&r);
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_E_NUMERIC);
    ck_assert_msg(
        strstr(strop_last_error(), "step 1") && strstr(strop_last_error(), "not applied"), "%s",
        strop_last_error());
    size_t n;
    float *w = weights(r.m, &n);
    ck_assert_uint_eq(n, before.nw);
    ck_assert_msg(memcmp(w, before.w, n * sizeof *w) == 0, "kind %d: a weight moved", kinds[i]);
    free(w);
    ck_assert_int_eq(strop_trainer_global_step(r.tr), 1);
    ck_assert_int_eq(strop_optimizer_step_count(r.opt), 1);
    ck_assert_int_eq(strop_trainer_skipped_steps(r.tr), 1);
    ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_LR, 1e-2f), STROP_OK);
    ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_WEIGHT_DECAY, 0.0f), STROP_OK);
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    w = weights(r.m, &n);
    ck_assert(strop__all_finite(w, n));
    free(w);
    free_state(&before);
    strop_tensor_free(x);
    strop_tensor_free(y);
    free_rig(&r);
  }
  strop_dataset_free(ds);
}
END_TEST

/* A finite loss with a gradient that overflows: one input feature holds 3e37, but fc1's
 * weights on it are zero, so the forward never sees it; the head's weights are scaled by 1e6,
 * so the loss is large but finite, and fc1's weight gradient on that feature (3e37 times a
 * back-propagated ~1e3) overflows. The guard skips the update: nothing moves, the status and
 * sentence name the step, and the host may go on. In FP32 (_i 0) and in BF16 (1: the weight
 * gradients' tiles see the infinity as they store it; 2: the guard reads them,
 * strop__bf16_gemm_check_finite 0). */
START_TEST(nonfinite_gradient_is_skipped) {
  strop_dataset *ds = blobs(64, 4);
  rig r = make_rig(5, STROP_OPTIM_SGD, 1e-2f);
  if (_i) ck_assert_int_eq(strop_model_set_compute_dtype(r.m, STROP_DTYPE_BF16), STROP_OK);
  strop__bf16_gemm_check_finite = _i != 2;
  ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_MOMENTUM, 0.9f), STROP_OK);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  strop__param *w1 = strop__model_param_find(r.m, "fc1.weight");
  strop__param *hw = strop__model_param_find(r.m, "head.weight");
  ck_assert(w1 && hw);
  for (int64_t j = 0; j < w1->dims[0]; j++) w1->data[j * w1->dims[1]] = 0.0f;
  for (size_t e = 0; e < hw->numel; e++) hw->data[e] *= 1e6f;
  const float keep = strop_tensor_data(x)[0];
  strop_tensor_data(x)[0] = 3e37f;
  size_t n;
  float *w0 = weights(r.m, &n);
  float loss = 0;
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, &loss), STROP_E_NUMERIC);
  ck_assert_msg(isfinite(loss), "the loss should be finite here, got %g", (double)loss);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "step 1"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "gradient is not finite"));
  size_t n1;
  float *wa = weights(r.m, &n1);
  ck_assert_mem_eq(w0, wa, n * sizeof *w0);
  ck_assert_int_eq(strop_trainer_skipped_steps(r.tr), 1);
  /* the host may go on with a sane batch */
  strop_tensor_data(x)[0] = keep;
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 2);
  strop__bf16_gemm_check_finite = 1;
  free(w0);
  free(wa);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

/* Accumulation on a model without dropout must equal the big batch to float precision. */
START_TEST(accumulation_matches_exactly) {
  strop_dataset *ds = blobs(64, 6);
  strop_model *ma = NULL, *mb = NULL;
  int64_t in[1] = {8};
  strop_model **ms[2] = {&ma, &mb};
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(strop_model_create(1, in, ms[k]), STROP_OK);
    ck_assert_int_eq(strop_model_add(*ms[k], "fc1", "linear", "out_features=16", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(*ms[k], "act", "tanh", NULL, NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(*ms[k], "head", "linear", "out_features=4", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_finalize(*ms[k], 9), STROP_OK);
  }
  strop_optimizer *oa, *ob;
  strop_trainer *ta, *tb;
  ck_assert_int_eq(strop_optimizer_create(ma, STROP_OPTIM_SGD, &oa), STROP_OK);
  ck_assert_int_eq(strop_optimizer_create(mb, STROP_OPTIM_SGD, &ob), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(oa, STROP_OPT_LR, 0.5f), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(ob, STROP_OPT_LR, 0.5f), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(ma, oa, &ta), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(mb, ob, &tb), STROP_OK);
  ck_assert_int_eq(strop_trainer_set_int(tb, STROP_TRAIN_ACCUM_STEPS, 2), STROP_OK);
  strop_tensor *x, *y, *x1, *y1, *x2, *y2;
  batch(ds, 0, 32, &x, &y);
  batch(ds, 0, 16, &x1, &y1);
  batch(ds, 16, 16, &x2, &y2);
  ck_assert_int_eq(strop_trainer_step(ta, x, y, NULL), STROP_OK);
  ck_assert_int_eq(strop_trainer_step(tb, x1, y1, NULL), STROP_OK);
  ck_assert_int_eq(strop_trainer_step(tb, x2, y2, NULL), STROP_OK);
  size_t na, nb;
  float *wa = weights(ma, &na), *wb = weights(mb, &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_double_le(strop_test_max_rel(wb, wa, na, 1e-3, NULL), 1e-5);
  free(wa);
  free(wb);
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_tensor_free(x1);
  strop_tensor_free(y1);
  strop_tensor_free(x2);
  strop_tensor_free(y2);
  strop_trainer_free(ta);
  strop_trainer_free(tb);
  strop_optimizer_free(oa);
  strop_optimizer_free(ob);
  strop_model_free(ma);
  strop_model_free(mb);
  strop_dataset_free(ds);
}
END_TEST

/* The trainer zeroes gradients lazily: after a step they are only marked stale, and the next
 * backward writes a linear layer's outright and clears the others (layer norm's here) before
 * they are added to. Against a twin whose gradients are cleared eagerly before every step
 * (strop_optimizer_zero_grad): the same weights, even with NaN left in the stale buffers; a
 * bare strop_optimizer_step on stale gradients sees zeros. */
START_TEST(lazy_zero_grad_matches_eager) {
  strop_dataset *ds = blobs(128, 12);
  strop_model *ms[2] = {NULL, NULL};
  strop_optimizer *os[2];
  strop_trainer *ts[2];
  int64_t in[1] = {8};
  for (int k = 0; k < 2; k++) {
    ck_assert_int_eq(strop_model_create(1, in, &ms[k]), STROP_OK);
    ck_assert_int_eq(strop_model_add(ms[k], "fc1", "linear", "out_features=16", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(ms[k], "ln", "layernorm", NULL, NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(ms[k], "act", "relu", NULL, NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(ms[k], "head", "linear", "out_features=4", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_finalize(ms[k], 21), STROP_OK);
    ck_assert_int_eq(strop_optimizer_create(ms[k], STROP_OPTIM_SGD, &os[k]), STROP_OK);
    ck_assert_int_eq(strop_optimizer_set_float(os[k], STROP_OPT_LR, 0.1f), STROP_OK);
    ck_assert_int_eq(strop_optimizer_set_float(os[k], STROP_OPT_MOMENTUM, 0.9f), STROP_OK);
    ck_assert_int_eq(strop_trainer_create(ms[k], os[k], &ts[k]), STROP_OK);
  }
  for (int step = 0; step < 6; step++) {
    strop_tensor *x, *y;
    batch(ds, 16 * step, 16, &x, &y);
    ck_assert_int_eq(strop_optimizer_zero_grad(os[1]), STROP_OK);
    for (int k = 0; k < 2; k++) ck_assert_int_eq(strop_trainer_step(ts[k], x, y, NULL), STROP_OK);
    /* model 0's gradients are stale now: poison them */
    for (int i = 0; i < ms[0]->n_params; i++) {
      strop__param *p = ms[0]->params[i];
      if (!p->grad) continue;
      ck_assert_msg(p->grad_stale, "%s: not marked stale after a step", p->name);
      for (size_t e = 0; e < p->numel; e++) p->grad[e] = NAN;
    }
    strop_tensor_free(x);
    strop_tensor_free(y);
  }
  /* an optimizer step of its own on stale gradients moves by momentum alone, as on zeros */
  ck_assert_int_eq(strop_optimizer_step(os[0]), STROP_OK);
  ck_assert_int_eq(strop_optimizer_zero_grad(os[1]), STROP_OK);
  ck_assert_int_eq(strop_optimizer_step(os[1]), STROP_OK);
  size_t na, nb;
  float *wa = weights(ms[0], &na), *wb = weights(ms[1], &nb);
  ck_assert_uint_eq(na, nb);
  size_t diff = 0;
  for (size_t i = 0; i < na; i++) diff += !(wa[i] == wb[i]);
  ck_assert_msg(diff == 0, "%zu of %zu weights differ", diff, na);
  free(wa);
  free(wb);
  for (int k = 0; k < 2; k++) {
    strop_trainer_free(ts[k]);
    strop_optimizer_free(os[k]);
    strop_model_free(ms[k]);
  }
  strop_dataset_free(ds);
}
END_TEST

START_TEST(clip_norm_limits_update) {
  strop_dataset *ds = blobs(32, 8);
  rig r = make_rig(9, STROP_OPTIM_SGD, 1.0f);
  ck_assert_int_eq(strop_trainer_set_float(r.tr, STROP_TRAIN_CLIP_NORM, 0.01), STROP_OK);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  size_t n;
  float *w0 = weights(r.m, &n);
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  float *w1 = weights(r.m, &n);
  double ss = 0;
  for (size_t i = 0; i < n; i++) ss += ((double)w1[i] - w0[i]) * ((double)w1[i] - w0[i]);
  ck_assert_double_eq_tol(sqrt(ss), 0.01, 1e-4); /* lr 1: the update is the clipped gradient */
  free(w0);
  free(w1);
  ck_assert_int_eq(strop_trainer_set_float(r.tr, STROP_TRAIN_CLIP_NORM, -1), STROP_E_INVALID_ARG);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(metrics_by_hand) {
  /* an identity "model": the logits are the inputs */
  int64_t in[1] = {3};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "id", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_OK);
  float x[5 * 3] = {1, 0, 0, /* pred 0 */ 0, 1, 0, /* pred 1 */ 0, 0, 1, /* pred 2 */
                    1, 0, 0, /* pred 0 */ 0, 1, 0 /* pred 1 */};
  float y[5] = {0, 1, 1, 2, 1};
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, 5, 1, in, 0, NULL, 3, &ds), STROP_OK);
  strop_optimizer *o = NULL;
  strop_trainer *t = NULL;
  ck_assert_int_eq(strop_optimizer_create(m, STROP_OPTIM_SGD, &o), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(m, o, &t), STROP_OK);
  strop_metrics *mt = NULL;
  ck_assert_int_eq(strop_trainer_eval_dataset(t, ds, 2, &mt), STROP_OK);
  ck_assert_double_eq_tol(strop_metrics_get(mt, STROP_METRIC_ACCURACY), 3.0 / 5.0, 1e-12);
  ck_assert_double_eq_tol(strop_metrics_get(mt, STROP_METRIC_TOP5), 1.0, 1e-12);
  int64_t cm[9];
  ck_assert_int_eq(strop_metrics_confusion(mt, cm, 9), 9);
  int64_t want[9] = {1, 0, 0, 0, 2, 1, 1, 0, 0};
  ck_assert_mem_eq(cm, want, sizeof want);
  ck_assert_double_eq_tol(strop_metrics_class(mt, 1, STROP_CLASS_RECALL), 2.0 / 3.0, 1e-12);
  ck_assert_double_eq_tol(strop_metrics_class(mt, 1, STROP_CLASS_PRECISION), 1.0, 1e-12);
  ck_assert_double_eq_tol(strop_metrics_class(mt, 0, STROP_CLASS_PRECISION), 0.5, 1e-12);
  ck_assert_double_eq_tol(strop_metrics_class(mt, 2, STROP_CLASS_F1), 0.0, 1e-12);
  ck_assert_double_eq_tol(strop_metrics_class(mt, 1, STROP_CLASS_SUPPORT), 3.0, 1e-12);
  /* mean cross-entropy over the five rows, computed by hand */
  double ce = 0;
  for (int i = 0; i < 5; i++) {
    double z = exp(x[i * 3]) + exp(x[i * 3 + 1]) + exp(x[i * 3 + 2]);
    ce += log(z) - x[i * 3 + (int)y[i]];
  }
  ck_assert_double_eq_tol(strop_metrics_get(mt, STROP_METRIC_LOSS), ce / 5, 1e-6);
  ck_assert(isnan(strop_metrics_get(mt, STROP_METRIC_MSE)));
  strop_metrics_free(mt);
  strop_trainer_free(t);
  strop_optimizer_free(o);
  strop_model_free(m);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(step_errors) {
  rig r = make_rig(1, STROP_OPTIM_SGD, 0.1f);
  strop_tensor *x = NULL, *y = NULL, *bad = NULL;
  int64_t xd[2] = {4, 8}, yd[1] = {4}, bd[2] = {4, 7}, y3[1] = {3};
  ck_assert_int_eq(strop_tensor_create(2, xd, &x), STROP_OK);
  ck_assert_int_eq(strop_tensor_create(1, yd, &y), STROP_OK);
  ck_assert_int_eq(strop_tensor_create(2, bd, &bad), STROP_OK);
  ck_assert_int_eq(strop_trainer_step(r.tr, bad, y, NULL), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "[4, 7]"));
  strop_tensor *y_short = NULL;
  ck_assert_int_eq(strop_tensor_create(1, y3, &y_short), STROP_OK);
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y_short, NULL), STROP_E_SHAPE);
  strop_tensor_data(y)[2] = 7.0f; /* class 7 of 4 */
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "7"));
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 0);
  ck_assert_int_eq(strop_trainer_step(NULL, x, y, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_set_int(r.tr, STROP_TRAIN_ACCUM_STEPS, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_set_int(r.tr, STROP_TRAIN_LOSS, 99), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_set_float(r.tr, STROP_TRAIN_LABEL_SMOOTHING, 2),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_set_float(r.tr, 999, 2), STROP_E_INVALID_ARG);
  float w[3] = {1, 1, 1};
  ck_assert_int_eq(strop_trainer_set_class_weights(r.tr, w, 3), STROP_OK);
  strop_tensor_data(y)[2] = 1.0f;
  ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL),
                   STROP_E_SHAPE); /* 3 weights, 4 classes */
  w[0] = -1;
  ck_assert_int_eq(strop_trainer_set_class_weights(r.tr, w, 3), STROP_E_INVALID_ARG);
  strop_trainer *t2 = (strop_trainer *)1;
  ck_assert_int_eq(strop_trainer_create(NULL, r.opt, &t2), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(t2);
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_tensor_free(bad);
  strop_tensor_free(y_short);
  free_rig(&r);
}
END_TEST

/* ---- fit ---- */
typedef struct seen {
  int epochs_ended;
  int64_t last_epoch;
  float *w_at_epoch0;
  size_t n;
  strop_model *m;
  int stop_after_batches;
  int batches;
} seen;

static int on_progress(const strop_progress *p, void *u) {
  seen *s = u;
  ck_assert_uint_eq(p->size, sizeof(strop_progress));
  if (p->phase == STROP_PHASE_BATCH) {
    s->batches++;
    ck_assert(p->samples_per_sec >= 0);
    return s->stop_after_batches && s->batches >= s->stop_after_batches;
  }
  s->epochs_ended++;
  s->last_epoch = p->epoch;
  if (p->epoch == 0 && s->m) s->w_at_epoch0 = weights(s->m, &s->n);
  return 0;
}

START_TEST(fit_early_stopping_restores_best) {
  strop_dataset *tr = blobs(256, 11), *va = blobs(128, 12);
  rig r = make_rig(13, STROP_OPTIM_ADAM, 1e-2f);
  strop_batch_iter *it = NULL, *vit = NULL;
  ck_assert_int_eq(strop_batch_iter_create(tr, 32, 5, STROP_ITER_SHUFFLE, &it), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_create(va, 64, 0, 0, &vit), STROP_OK);
  strop_fit_options o;
  strop_fit_options_init(&o);
  o.epochs = 20;
  o.patience = 2;
  o.min_delta = 1e9; /* nothing after the first epoch counts as better */
  o.restore_best = 1;
  seen s;
  memset(&s, 0, sizeof s);
  s.m = r.m;
  o.progress = on_progress;
  o.user_data = &s;
  ck_assert_int_eq(strop_trainer_fit(r.tr, it, vit, &o), STROP_OK);
  ck_assert_int_eq(s.epochs_ended, 3); /* epoch 0 best, 1 and 2 bad: stop */
  ck_assert_int_eq(strop_trainer_best_epoch(r.tr), 0);
  ck_assert_int_eq(strop_trainer_history_len(r.tr), 3);
  ck_assert(isfinite(strop_trainer_history(r.tr, 2, 100 + STROP_METRIC_LOSS)));
  size_t n;
  float *w = weights(r.m, &n);
  ck_assert_uint_eq(n, s.n);
  ck_assert_mem_eq(w, s.w_at_epoch0, n * sizeof *w);
  free(w);
  free(s.w_at_epoch0);
  /* options out of their range are refused before any step, naming the option (a NaN
   * min_delta stopped early and restored epoch 0; negative counts were taken as "off") */
  {
    static const struct {
      int field;
      const char *want;
    } bad[] = {{0, "min_delta must be finite and >= 0"},
               {1, "min_delta must be finite"},
               {2, "patience must be >= 0"},
               {3, "checkpoint_every must be >= 0"},
               {4, "max_steps must be >= 0"},
               {5, "restore_best must be 0 or 1"}};
    const int64_t before = strop_trainer_global_step(r.tr);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      strop_fit_options b = o;
      if (bad[i].field == 0) b.min_delta = NAN;
      if (bad[i].field == 1) b.min_delta = -1.0;
      if (bad[i].field == 2) b.patience = -1;
      if (bad[i].field == 3) b.checkpoint_every = -5;
      if (bad[i].field == 4) b.max_steps = -1;
      if (bad[i].field == 5) b.restore_best = 7;
      ck_assert_int_eq(strop_trainer_fit(r.tr, it, vit, &b), STROP_E_INVALID_ARG);
      ck_assert_msg(strstr(strop_last_error(), bad[i].want), "%s", strop_last_error());
    }
    ck_assert_int_eq(strop_trainer_global_step(r.tr), before);
  }
  /* a scheduler of another optimizer is refused (it would have set that one's lr) */
  {
    rig other = make_rig(14, STROP_OPTIM_SGD, 0.1f);
    ck_assert_int_eq(strop_scheduler_create(other.opt, STROP_SCHED_COSINE, &other.sched),
                     STROP_OK);
    ck_assert_int_eq(strop_trainer_set_scheduler(r.tr, other.sched), STROP_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "made on another optimizer"));
    ck_assert_int_eq(strop_trainer_set_scheduler(r.tr, NULL), STROP_OK);
    free_rig(&other);
  }
  /* a callback may stop training */
  memset(&s, 0, sizeof s);
  s.stop_after_batches = 3;
  o.patience = 0;
  o.restore_best = 0;
  ck_assert_int_eq(strop_trainer_fit(r.tr, it, vit, &o), STROP_E_CANCELLED);
  ck_assert_int_eq(s.batches, 3);
  strop_batch_iter_free(it);
  strop_batch_iter_free(vit);
  free_rig(&r);
  strop_dataset_free(tr);
  strop_dataset_free(va);
}
END_TEST

/* Train 10 steps, versus 5 + checkpoint + load into fresh objects + 5: bit-identical. */
static void run_fit(const char *ckpt_in, const char *ckpt_out, int64_t steps, float **w,
                    size_t *n, int64_t *gstep) {
  strop_dataset *tr = blobs(160, 21);
  rig r = make_rig(23, STROP_OPTIM_ADAM, 3e-3f);
  ck_assert_int_eq(strop_scheduler_create(r.opt, STROP_SCHED_COSINE, &r.sched), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_int(r.sched, STROP_SCH_T_MAX, 12), STROP_OK);
  ck_assert_int_eq(strop_trainer_set_scheduler(r.tr, r.sched), STROP_OK);
  strop_batch_iter *it = NULL;
  ck_assert_int_eq(strop_batch_iter_create(tr, 32, 99, STROP_ITER_SHUFFLE, &it), STROP_OK);
  if (ckpt_in)
    ck_assert_msg(strop_trainer_load_checkpoint(r.tr, ckpt_in) == STROP_OK, "%s",
                  strop_last_error());
  strop_fit_options o;
  strop_fit_options_init(&o);
  o.epochs = 3; /* 5 batches per epoch */
  o.max_steps = steps;
  o.checkpoint_path = ckpt_out;
  ck_assert_msg(strop_trainer_fit(r.tr, it, NULL, &o) == STROP_OK, "%s", strop_last_error());
  *w = weights(r.m, n);
  *gstep = strop_trainer_global_step(r.tr);
  strop_batch_iter_free(it);
  free_rig(&r);
  strop_dataset_free(tr);
}

START_TEST(resume_is_bit_identical) {
  char dir[] = "/tmp/strop_train_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char a[256], b[256];
  snprintf(a, sizeof a, "%s/full.ckpt", dir);
  snprintf(b, sizeof b, "%s/half.ckpt", dir);
  float *w_full, *w_resumed, *w_half;
  size_t n1, n2, n3;
  int64_t g1, g2, g3;
  run_fit(NULL, a, 12, &w_full, &n1, &g1);
  run_fit(NULL, b, 7, &w_half, &n2, &g2);
  ck_assert_int_eq(g2, 7);
  run_fit(b, NULL, 5, &w_resumed, &n3, &g3);
  ck_assert_int_eq(g1, 12);
  ck_assert_int_eq(g3, 12);
  ck_assert_uint_eq(n1, n3);
  ck_assert_msg(memcmp(w_full, w_resumed, n1 * sizeof *w_full) == 0,
                "resumed weights differ from the uninterrupted run");
  /* and in a fresh process: this executable re-run in its --resume mode */
  char out[300], cmd[1200], self[512];
  snprintf(out, sizeof out, "%s/resumed.bin", dir);
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  ck_assert_int_gt(sl, 0);
  self[sl] = '\0';
  snprintf(cmd, sizeof cmd, "'%s' --resume '%s' '%s' > /dev/null", self, b, out);
  ck_assert_int_eq(system(cmd), 0);
  size_t len = 0;
  char *bytes = strop_test_read_file(out, &len);
  ck_assert_ptr_nonnull(bytes);
  ck_assert_uint_eq(len, n1 * sizeof *w_full);
  ck_assert_msg(memcmp(w_full, bytes, len) == 0,
                "weights resumed in a fresh process differ from the uninterrupted run");
  free(bytes);
  unlink(out);
  ck_assert_msg(memcmp(w_full, w_half, n1 * sizeof *w_full) != 0, "the runs did not train");
  free(w_full);
  free(w_half);
  free(w_resumed);
  unlink(a);
  unlink(b);
  rmdir(dir);
}
END_TEST

START_TEST(fashion_mlp_from_scratch) {
  if (access(FASHION "/train-images-idx3-ubyte.gz", R_OK) != 0) {
    fprintf(stderr, "fashion_mlp_from_scratch: skipped, %s is missing\n", FASHION);
    return;
  }
  if (sanitized()) {
    fprintf(stderr, "fashion_mlp_from_scratch: skipped under sanitizers (too slow)\n");
    return;
  }
  strop_dataset *train = NULL, *test = NULL;
  ck_assert_int_eq(strop_dataset_load_idx(FASHION "/train-images-idx3-ubyte.gz",
                                          FASHION "/train-labels-idx1-ubyte.gz", 10, &train),
                   STROP_OK);
  ck_assert_int_eq(strop_dataset_load_idx(FASHION "/t10k-images-idx3-ubyte.gz",
                                          FASHION "/t10k-labels-idx1-ubyte.gz", 10, &test),
                   STROP_OK);
  int64_t in[3] = {1, 28, 28};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(3, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "flat", "flatten", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "out_features=256", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=10", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
  strop_optimizer *opt = NULL;
  strop_trainer *t = NULL;
  ck_assert_int_eq(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(opt, STROP_OPT_LR, 1e-3f), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(m, opt, &t), STROP_OK);
  strop_batch_iter *it = NULL, *tit = NULL;
  ck_assert_int_eq(
      strop_batch_iter_create(train, 64, 1, STROP_ITER_SHUFFLE | STROP_ITER_PREFETCH, &it),
      STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_scale(it, 1.0f / 255.0f), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_create(test, 500, 0, 0, &tit), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_scale(tit, 1.0f / 255.0f), STROP_OK);
  strop_fit_options o;
  strop_fit_options_init(&o);
  o.epochs = 3;
  ck_assert_msg(strop_trainer_fit(t, it, tit, &o) == STROP_OK, "%s", strop_last_error());
  double acc = strop_trainer_history(t, 2, 100 + STROP_METRIC_ACCURACY);
  fprintf(stderr, "fashion MLP from scratch, 3 epochs: test accuracy %.4f\n", acc);
  ck_assert_double_gt(acc, 0.85);
  strop_batch_iter_free(it);
  strop_batch_iter_free(tit);
  strop_trainer_free(t);
  strop_optimizer_free(opt);
  strop_model_free(m);
  strop_dataset_free(train);
  strop_dataset_free(test);
}
END_TEST

static strop_model *g_m;
static strop_optimizer *g_o;
static strop_trainer *g_t;
/* Issue 18, item 7: an optimizer created on another model would update that model's
 * parameters while every step returned OK and nothing here trained. */
START_TEST(optimizer_of_another_model_is_refused) {
  strop_model *a = mlp(1), *b = mlp(2);
  strop_optimizer *oa = NULL;
  ck_assert_int_eq(strop_optimizer_create(a, STROP_OPTIM_SGD, &oa), STROP_OK);
  strop_trainer *t = (strop_trainer *)1;
  strop_clear_error();
  ck_assert_int_eq(strop_trainer_create(b, oa, &t), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(t);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "another model"));
  ck_assert_int_eq(strop_trainer_create(a, oa, &t), STROP_OK);
  strop_trainer_free(t);
  strop_optimizer_free(oa);
  strop_model_free(a);
  strop_model_free(b);
}
END_TEST

/* Issue 18, item 6: a checkpoint of another optimizer kind is refused, naming both kinds, in
 * both directions (Adam into SGD used to change the weights and then fail; SGD into Adam
 * loaded without a word and resumed inexactly); and a load that fails late (optimizer state
 * for a parameter frozen here) changes nothing either. */
static void save_ckpt(int kind, const char *path) {
  strop_dataset *ds = blobs(64, 31);
  rig r = bn_rig(33, kind, 1e-2f);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  for (int k = 0; k < 3; k++) ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
  ck_assert_int_eq(strop_trainer_save_checkpoint(r.tr, path), STROP_OK);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}

/* A copy of a checkpoint as 0.1 wrote it: without the optim.kind metadata (renamed in place,
 * so the header keeps its length). */
static void as_v01(const char *from, const char *to) {
  size_t len = 0;
  char *b = strop_test_read_file(from, &len);
  ck_assert_ptr_nonnull(b);
  char *k = NULL;
  for (size_t i = 0; i + 10 <= len && !k; i++)
    if (!memcmp(b + i, "optim.kind", 10)) k = b + i;
  ck_assert_ptr_nonnull(k);
  k[9] = 'x';
  FILE *f = fopen(to, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, len, f), len);
  fclose(f);
  free(b);
}

static rig g_load_rig;
static frozen_state g_load_before;
static const char *g_load_path;

static int op_load(void *ctx) {
  (void)ctx;
  int st = strop_trainer_load_checkpoint(g_load_rig.tr, g_load_path);
  if (st) assert_state_is(&g_load_rig, &g_load_before);
  return st;
}

START_TEST(failed_checkpoint_load_changes_nothing) {
  char dir[128];
  strop_test_tmpdir("ckpt", dir, sizeof dir);
  char adam[256], sgd[256], p01[300];
  snprintf(adam, sizeof adam, "%s/adam.ckpt", dir);
  snprintf(sgd, sizeof sgd, "%s/sgd.ckpt", dir);
  save_ckpt(STROP_OPTIM_ADAM, adam);
  save_ckpt(STROP_OPTIM_SGD, sgd);
  snprintf(p01, sizeof p01, "%s/adam01.ckpt", dir);
  as_v01(adam, p01);
  snprintf(p01, sizeof p01, "%s/sgd01.ckpt", dir);
  as_v01(sgd, p01);
  static const struct {
    int kind, freeze;
    const char *file, *a, *b;
    int status;
  } cases[] = {{STROP_OPTIM_SGD, 0, "adam.ckpt", "Adam", "SGD", STROP_E_FORMAT},
               {STROP_OPTIM_ADAM, 0, "sgd.ckpt", "SGD", "Adam", STROP_E_FORMAT},
               /* files of 0.1, without the metadata: the kind is read from the state's names */
               {STROP_OPTIM_SGD, 0, "adam01.ckpt", "Adam or AdamW", "SGD", STROP_E_FORMAT},
               {STROP_OPTIM_RMSPROP, 0, "sgd01.ckpt", "SGD", "RMSprop", STROP_E_FORMAT},
               {STROP_OPTIM_ADAM, 1, "adam.ckpt", "fc1.weight", "no trainable parameter",
                STROP_E_NOT_FOUND}};
  strop_dataset *ds = blobs(64, 35);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
    rig r = bn_rig(37, cases[i].kind, 1e-2f);
    if (cases[i].freeze) ck_assert_int_eq(strop_model_freeze(r.m, "fc1.*"), STROP_OK);
    strop_tensor *x, *y;
    batch(ds, 0, 32, &x, &y);
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    frozen_state before = freeze_state(&r);
    strop_clear_error();
    int st = strop_trainer_load_checkpoint(r.tr, path);
    ck_assert_msg(st == cases[i].status, "case %zu: status %d (%s)", i, st, strop_last_error());
    ck_assert_msg(
        strstr(strop_last_error(), cases[i].a) && strstr(strop_last_error(), cases[i].b),
        "case %zu: '%s'", i, strop_last_error());
    assert_state_is(&r, &before);
    /* the trainer goes on as if nothing happened */
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    free_state(&before);
    strop_tensor_free(x);
    strop_tensor_free(y);
    free_rig(&r);
  }
  /* the same kind still loads; a load failing at any allocation changes nothing */
  g_load_rig = bn_rig(37, STROP_OPTIM_ADAM, 1e-2f);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  ck_assert_int_eq(strop_trainer_step(g_load_rig.tr, x, y, NULL), STROP_OK);
  g_load_before = freeze_state(&g_load_rig);
  g_load_path = adam;
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, NULL, NULL), 2);
  ck_assert_int_eq(strop_trainer_global_step(g_load_rig.tr), 3);
  free_state(&g_load_before);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&g_load_rig);
  strop_dataset_free(ds);
}
END_TEST

static int op_create(void *ctx) {
  (void)ctx;
  return strop_trainer_create(g_m, g_o, &g_t);
}
static void free_t(void *ctx) {
  (void)ctx;
  strop_trainer_free(g_t);
  g_t = NULL;
}

/* Fails each allocation of a step in turn, on a fresh rig from make each time: a first step, or
 * (middle) one after a first with the step's memory cold again. A failed step must be
 * STROP_E_NOMEM with a sentence and leave the state as it was; the same step then runs. With
 * want, the state after the step (failed and run again, or not failed) must be want. Nothing
 * leaks. Returns how many allocations failed the step. */
static int step_sweep(rig (*make)(void), int middle, const frozen_state *want, strop_tensor *x,
                      strop_tensor *y) {
  int failures = 0;
  for (int64_t n = 1; n < 10000; n++) {
    const int64_t live = strop__alloc_live();
    rig r = make();
    if (middle) { /* a first step makes the optimizer state */
      ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
      strop__model_step_end(r.m);
      /* cold again: the step allocates its memory anew */
      ck_assert_int_eq(strop__model_step_release(r.m), STROP_OK);
    }
    frozen_state before = freeze_state(&r);
    strop_clear_error();
    strop__alloc_fail_at(n);
    const int st = strop_trainer_step(r.tr, x, y, NULL);
    const int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    if (hit && st != STROP_OK) { /* (an allocation the step can do without may fail too) */
      failures++;
      ck_assert_msg(st == STROP_E_NOMEM, "allocation %lld failed, status %d (%s)", (long long)n,
                    st, strop_last_error());
      ck_assert(strop_last_error()[0] != '\0');
      assert_state_is(&r, &before);
      ck_assert_int_eq(strop_trainer_step(r.tr, x, y, NULL), STROP_OK);
    } else {
      ck_assert_msg(st == STROP_OK, "%s", strop_last_error());
    }
    if (want) assert_state_is(&r, want);
    free_state(&before);
    free_rig(&r);
    ck_assert_int_eq(strop__alloc_live(), live);
    if (!hit) break;
  }
  return failures;
}

/* Two checkpointed blocks of linear -> batchnorm1d -> relu -> dropout, then a head. */
static rig ckpt_rig(void) {
  rig r;
  memset(&r, 0, sizeof r);
  int64_t in[1] = {8};
  ck_assert_int_eq(strop_model_create(1, in, &r.m), STROP_OK);
  static const char *const part[4][3] = {{"fc", "linear", "out_features=1024"},
                                         {"bn", "batchnorm1d", NULL},
                                         {"act", "relu", NULL},
                                         {"drop", "dropout", "p=0.2"}};
  for (int b = 0; b < 2; b++)
    for (int k = 0; k < 4; k++) {
      char name[32];
      snprintf(name, sizeof name, "blocks.%d.%s", b, part[k][0]);
      ck_assert_int_eq(strop_model_add(r.m, name, part[k][1], part[k][2], NULL), STROP_OK);
    }
  ck_assert_int_eq(strop_model_add(r.m, "head", "linear", "out_features=4", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(r.m, 9), STROP_OK);
  ck_assert_int_eq(strop_model_set_checkpointing(r.m, "auto"), STROP_OK);
  ck_assert_int_eq(strop_model_checkpoint_blocks(r.m), 2);
  ck_assert_int_eq(strop_optimizer_create(r.m, STROP_OPTIM_ADAM, &r.opt), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(r.m, r.opt, &r.tr), STROP_OK);
  return r;
}

/* An allocation failing anywhere in a checkpointed step (the recompute included) is
 * STROP_E_NOMEM with a sentence, and leaves weights, running statistics, the optimizer state
 * and the generator as they were; the same step then runs, and nothing leaks. Planned, the
 * step allocates in its forward only (the arena and the planned region: the recompute and the
 * gradients are planned in it); on the free list the recompute takes from the arena too. */
START_TEST(checkpointed_step_alloc_failures) {
  strop_dataset *ds = blobs(256, 4);
  strop_tensor *x, *y;
  batch(ds, 0, 256, &x, &y);
  rig warm = ckpt_rig(); /* the GEMM's process-wide buffers are made once, here */
  ck_assert_int_eq(strop_trainer_step(warm.tr, x, y, NULL), STROP_OK);
  free_rig(&warm);
  const int failures = step_sweep(ckpt_rig, 1, NULL, x, y);
  strop__memory_plan = 0;
  const int listed = step_sweep(ckpt_rig, 1, NULL, x, y);
  strop__memory_plan = -1;
  fprintf(stderr, "checkpointed step: %d allocation failures planned, %d on the free list\n",
          failures, listed);
  ck_assert_int_ge(failures, 3);
  ck_assert_int_ge(listed, 8);
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_dataset_free(ds);
}
END_TEST

static rig bn41(void) { return bn_rig(41, STROP_OPTIM_ADAM, 1e-2f); }

/* An allocation failing anywhere in a first step — the optimizer's state is made in it, after
 * the forward moved BatchNorm's running statistics, its batch counter and the dropout RNG —
 * leaves all of them as they were (the optimizer's running out of memory was returned without
 * undoing the forward's changes before), and the step then runs as if it had never failed. */
START_TEST(first_step_alloc_failures) {
  strop_dataset *ds = blobs(64, 4);
  strop_tensor *x, *y;
  batch(ds, 0, 32, &x, &y);
  rig ref = bn41();
  ck_assert_int_eq(strop_trainer_step(ref.tr, x, y, NULL), STROP_OK);
  frozen_state want = freeze_state(&ref);
  ck_assert_int_ge(step_sweep(bn41, 0, &want, x, y), 8);
  free_state(&want);
  free_rig(&ref);
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(alloc_failures) {
  g_m = mlp(1);
  ck_assert_int_eq(strop_optimizer_create(g_m, STROP_OPTIM_SGD, &g_o), STROP_OK);
  ck_assert_int_ge(strop_test_alloc_sweep(op_create, free_t, NULL), 1);
  strop_optimizer_free(g_o);
  strop_model_free(g_m);
}
END_TEST

/* ---- a loss the host computes ---- */

/* The host's MSE exactly as ops/loss.c computes it: the sum of squares in double, each
 * gradient 2 d / count rounded once to float. */
static double host_mse(const float *pred, const float *y, size_t m, float *d) {
  double total = 0.0, scale = 1.0 / (double)m;
  for (size_t i = 0; i < m; i++) {
    double e = (double)pred[i] - (double)y[i];
    total += e * e;
    d[i] = (float)(2.0 * e * scale);
  }
  return total * scale;
}

/* The host's cross-entropy (mean over rows, no weights, no smoothing), in the operations of
 * ops/loss.c: the max, the sum of exp in double, log-sum-exp, the softmax minus the one-hot,
 * then one float scale by 1 / rows. */
static double host_ce(const float *z, const float *y, int64_t rows, int64_t C, float *g) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; r++) {
    const float *zr = z + r * C;
    float *gr = g + r * C;
    int64_t t = (int64_t)y[r];
    double m = zr[0];
    for (int64_t j = 1; j < C; j++)
      if (zr[j] > m) m = zr[j];
    double s = 0.0;
    for (int64_t j = 0; j < C; j++) s += exp((double)zr[j] - m);
    double lse = m + log(s);
    total += (1.0 - 0.0) * 1.0 * (lse - (double)zr[t]);
    for (int64_t j = 0; j < C; j++) gr[j] = (float)(exp((double)zr[j] - lse) * 1.0 - 0.0 * 1.0);
    gr[t] -= (float)((1.0 - 0.0) * 1.0);
  }
  double scale = 1.0 / (double)rows;
  float fs = (float)scale;
  for (int64_t i = 0; i < rows * C; i++) g[i] *= fs;
  return total * scale;
}

/* Every gradient of the model, read through the public API (frozen ones skipped). */
static float *grads_of(strop_model *m, size_t *n_out) {
  size_t n = 0;
  for (int i = 0; i < m->n_params; i++)
    if (!m->params[i]->is_buffer && m->params[i]->trainable) n += m->params[i]->numel;
  float *g = malloc((n ? n : 1) * sizeof *g);
  size_t o = 0;
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (p->is_buffer || !p->trainable) continue;
    strop_test_must(strop_model_get_grad(m, p->name, g + o, p->numel), "get_grad");
    o += p->numel;
  }
  *n_out = n;
  return g;
}

static void assert_same_floats(const float *a, const float *b, size_t n, const char *what) {
  size_t diff = 0, first = n;
  for (size_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof *a)) {
      diff++;
      if (first == n) first = i;
    }
  ck_assert_msg(diff == 0, "%s: %zu of %zu values differ (first at %zu: %.9g vs %.9g)", what,
                diff, n, first, first < n ? (double)a[first] : 0.0,
                first < n ? (double)b[first] : 0.0);
}

/* A custom loss through forward / backward / apply against the built-in one on a twin: the
 * losses, every gradient after each micro-batch, and every weight, buffer and optimizer value
 * after each update are equal bit for bit. BatchNorm, dropout (the RNG), Adam, accumulation
 * over 2 micro-batches and clipping are in the loop. */
static void host_loss_matches_builtin(int loss_kind) {
  strop_dataset *ds = blobs(256, 31);
  rig a = bn_rig(17, STROP_OPTIM_ADAM, 3e-3f), b = bn_rig(17, STROP_OPTIM_ADAM, 3e-3f);
  rig *rs[2] = {&a, &b};
  for (int k = 0; k < 2; k++) {
    strop_test_must(strop_trainer_set_int(rs[k]->tr, STROP_TRAIN_LOSS, loss_kind), "loss");
    strop_test_must(strop_trainer_set_int(rs[k]->tr, STROP_TRAIN_ACCUM_STEPS, 2), "accum");
    strop_test_must(strop_trainer_set_float(rs[k]->tr, STROP_TRAIN_CLIP_NORM, 0.5), "clip");
  }
  for (int step = 0; step < 8; step++) {
    strop_tensor *x, *y, *out = NULL, *dout = NULL;
    batch(ds, 16 * step, 16, &x, &y);
    strop_tensor *target = y;
    if (loss_kind == STROP_LOSS_MSE) { /* regress a one-hot of the class */
      int64_t td[2] = {16, 4};
      strop_test_must(strop_tensor_create(2, td, &target), "target");
      for (int64_t i = 0; i < 16; i++)
        for (int c = 0; c < 4; c++)
          strop_tensor_data(target)[i * 4 + c] = (float)(strop_tensor_data(y)[i] == (float)c);
    }
    float builtin = 0.0f;
    strop_test_must(strop_trainer_step(a.tr, x, target, &builtin), "builtin step");
    strop_test_must(strop_trainer_forward(b.tr, x, &out), "forward");
    strop_test_must(strop_tensor_copy(out, &dout), "dout");
    double host = loss_kind == STROP_LOSS_MSE
                      ? host_mse(strop_tensor_data(out), strop_tensor_data(target), 64,
                                 strop_tensor_data(dout))
                      : host_ce(strop_tensor_data(out), strop_tensor_data(y), 16, 4,
                                strop_tensor_data(dout));
    float hl = (float)host;
    ck_assert_msg(memcmp(&hl, &builtin, sizeof hl) == 0, "step %d: loss %.9g vs built-in %.9g",
                  step, (double)hl, (double)builtin);
    strop_test_must(strop_trainer_backward(b.tr, dout), "backward");
    if (step % 2 == 0) { /* mid-window: the gradients are there to compare */
      size_t na, nb;
      float *ga = grads_of(a.m, &na), *gb = grads_of(b.m, &nb);
      ck_assert_uint_eq(na, nb);
      ck_assert_msg(na > 0 && gb[0] != 0.0f, "no gradient to compare");
      assert_same_floats(gb, ga, na, "gradients");
      free(ga);
      free(gb);
    }
    strop_test_must(strop_trainer_apply(b.tr), "apply");
    frozen_state fa = freeze_state(&a);
    assert_state_is(&b, &fa);
    free_state(&fa);
    if (target != y) strop_tensor_free(target);
    strop_tensor_free(out);
    strop_tensor_free(dout);
    strop_tensor_free(x);
    strop_tensor_free(y);
  }
  ck_assert_int_eq(strop_trainer_global_step(b.tr), 4);
  free_rig(&a);
  free_rig(&b);
  strop_dataset_free(ds);
}

START_TEST(host_mse_equals_builtin) { host_loss_matches_builtin(STROP_LOSS_MSE); }
END_TEST

START_TEST(host_cross_entropy_equals_builtin) {
  host_loss_matches_builtin(STROP_LOSS_CROSS_ENTROPY);
}
END_TEST

/* Gradients the host makes: written before strop_optimizer_step (no trainer), the update is
 * w - lr g exactly; read back as written; a frozen parameter is neither read nor written. */
START_TEST(host_gradients_and_optimizer_step) {
  strop_model *m = mlp(23);
  strop_optimizer *o = NULL;
  strop_test_must(strop_model_freeze(m, "fc1.*"), "freeze");
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_SGD, &o), "optimizer");
  strop_test_must(strop_optimizer_set_double(o, STROP_OPT_LR, 0.5), "lr");
  float g[64], back[64], w0[64];
  for (int i = 0; i < 64; i++) g[i] = 0.25f * (float)(i % 7) - 0.5f;
  float zero[64];
  strop_test_must(strop_model_get_grad(m, "head.weight", zero, 64), "get before any");
  for (int i = 0; i < 64; i++) ck_assert(zero[i] == 0.0f);
  strop_test_must(strop_model_set_grad(m, "head.weight", g, 64), "set");
  strop_test_must(strop_model_get_grad(m, "head.weight", back, 64), "get");
  ck_assert_mem_eq(back, g, sizeof g);
  strop_tensor *w = NULL;
  strop_test_must(strop_model_tensor_view(m, "head.weight", &w), "view");
  memcpy(w0, strop_tensor_data(w), sizeof w0);
  size_t nf;
  float *fc0 = weights(m, &nf);
  strop_test_must(strop_optimizer_step(o), "step");
  for (int i = 0; i < 64; i++)
    ck_assert_msg(strop_tensor_data(w)[i] == w0[i] - 0.5f * g[i], "weight %d", i);
  /* head.bias had a zero gradient (allocated by the first set_grad): unchanged; fc1 frozen */
  float *fc1 = weights(m, &nf);
  for (size_t i = 0; i < nf; i++)
    if (i < 8 * 16 + 16) ck_assert(fc1[i] == fc0[i]); /* fc1.weight, fc1.bias come first */
  ck_assert_int_eq(strop_model_get_grad(m, "fc1.weight", back, 128), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "frozen"));
  free(fc0);
  free(fc1);
  strop_tensor_free(w);
  strop_optimizer_free(o);
  strop_model_free(m);
}
END_TEST

/* A trainer's backward from the host respects frozen parameters and adds up micro-batches;
 * a host write between backward and apply is what the update applies. */
START_TEST(host_backward_then_host_write) {
  strop_dataset *ds = blobs(64, 41);
  rig r = make_rig(43, STROP_OPTIM_SGD, 0.5f);
  strop_test_must(strop_model_freeze(r.m, "fc1.*"), "freeze");
  strop_tensor *x, *y, *out = NULL;
  batch(ds, 0, 8, &x, &y);
  strop_test_must(strop_trainer_forward(r.tr, x, &out), "forward");
  strop_tensor *dout = NULL;
  strop_test_must(strop_tensor_copy(out, &dout), "dout");
  for (int64_t i = 0; i < strop_tensor_numel(dout); i++) strop_tensor_data(dout)[i] = 0.125f;
  strop_test_must(strop_trainer_backward(r.tr, dout), "backward");
  float gb[4];
  strop_test_must(strop_model_get_grad(r.m, "head.bias", gb, 4), "get");
  for (int i = 0; i < 4; i++) ck_assert_float_eq(gb[i], 1.0f); /* 8 rows of 0.125 */
  ck_assert_int_eq(strop_model_get_grad(r.m, "fc1.bias", gb, 16), STROP_E_STATE);
  /* the host's own gradient for the bias replaces the backward's */
  float mine[4] = {2, -2, 0, 4};
  strop_test_must(strop_model_set_grad(r.m, "head.bias", mine, 4), "set");
  strop_tensor *bias = NULL;
  strop_test_must(strop_model_tensor_view(r.m, "head.bias", &bias), "view");
  float b0[4];
  memcpy(b0, strop_tensor_data(bias), sizeof b0);
  strop_test_must(strop_trainer_apply(r.tr), "apply");
  for (int i = 0; i < 4; i++) ck_assert(strop_tensor_data(bias)[i] == b0[i] - 0.5f * mine[i]);
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 1);
  /* after the update the gradients read zero, and a window starts from zero */
  strop_test_must(strop_model_get_grad(r.m, "head.bias", gb, 4), "get after");
  for (int i = 0; i < 4; i++) ck_assert(gb[i] == 0.0f);
  strop_test_must(strop_model_set_grad(r.m, "head.bias", mine, 4), "set before a window");
  strop_tensor_free(out);
  strop_test_must(strop_trainer_forward(r.tr, x, &out), "forward 2");
  strop_test_must(strop_model_get_grad(r.m, "head.bias", gb, 4), "get in window");
  for (int i = 0; i < 4; i++) ck_assert(gb[i] == 0.0f);
  strop_trainer_discard_forward(r.tr);
  strop_trainer_discard_forward(r.tr); /* nothing pending: no error */
  strop_tensor_free(bias);
  strop_tensor_free(out);
  strop_tensor_free(dout);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

/* Every error path of the host's step: the right status, a sentence, nothing changed. */
START_TEST(host_errors) {
  strop_dataset *ds = blobs(64, 51);
  rig r = bn_rig(53, STROP_OPTIM_ADAM, 1e-2f);
  strop_tensor *x, *y, *out = (strop_tensor *)1, *bad = NULL, *dout = NULL;
  batch(ds, 0, 8, &x, &y);
  int64_t bd[2] = {8, 7};
  strop_test_must(strop_tensor_create(2, bd, &bad), "bad");
  frozen_state f0 = freeze_state(&r);
  /* NULLs */
  ck_assert_int_eq(strop_trainer_forward(NULL, x, &out), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(out);
  ck_assert_int_eq(strop_trainer_forward(r.tr, NULL, &out), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_forward(r.tr, x, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_backward(NULL, x), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_backward(r.tr, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_apply(NULL), STROP_E_INVALID_ARG);
  ck_assert_str_ne(strop_last_error(), "");
  strop_trainer_discard_forward(NULL);
  /* inputs of another shape */
  ck_assert_int_eq(strop_trainer_forward(r.tr, bad, &out), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "[8, 7]"));
  ck_assert_ptr_null(out);
  /* a backward without a forward */
  ck_assert_int_eq(strop_trainer_backward(r.tr, bad), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_trainer_forward first"));
  /* nothing has a window yet: apply does nothing */
  ck_assert_int_eq(strop_trainer_apply(r.tr), STROP_OK);
  assert_state_is(&r, &f0);
  /* dout of another shape: refused, the forward stays pending, apply refuses to run over it */
  strop_test_must(strop_trainer_forward(r.tr, x, &out), "forward");
  ck_assert_int_eq(strop_trainer_backward(r.tr, bad), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "[8, 4]"));
  ck_assert_int_eq(strop_trainer_apply(r.tr), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "pending"));
  /* a NaN in dout is a skipped step: everything as before the window (BatchNorm's running
   * statistics, which the forward moved, included) */
  strop_test_must(strop_tensor_copy(out, &dout), "dout");
  strop_tensor_data(dout)[3] = NAN;
  ck_assert_int_eq(strop_trainer_backward(r.tr, dout), STROP_E_NUMERIC);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "dout[3]"));
  ck_assert_int_eq(strop_trainer_skipped_steps(r.tr), 1);
  f0.rng = r.m->rng; /* (the RNG is put back too, but compare the rest first) */
  assert_state_is(&r, &f0);
  ck_assert_int_eq(strop_trainer_backward(r.tr, dout), STROP_E_STATE); /* nothing pending */
  /* another forward on the model drops the pending one */
  strop_tensor_free(out);
  strop_test_must(strop_trainer_forward(r.tr, x, &out), "forward again");
  strop_tensor *eval_out = NULL;
  strop_test_must(strop_model_forward(r.m, x, &eval_out), "model forward");
  strop_tensor_data(dout)[3] = 0.0f;
  ck_assert_int_eq(strop_trainer_backward(r.tr, dout), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "gone"));
  ck_assert_int_eq(strop_trainer_apply(r.tr), STROP_OK); /* the drop ended it */
  /* gradients in and out */
  float buf[128], keep[128];
  for (int i = 0; i < 128; i++) keep[i] = buf[i] = 7.0f;
  ck_assert_int_eq(strop_model_get_grad(NULL, "head.weight", buf, 64), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_get_grad(r.m, NULL, buf, 64), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_get_grad(r.m, "head.weight", NULL, 64), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_get_grad(r.m, "head.wieght", buf, 64), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "head.wieght"));
  ck_assert_int_eq(strop_model_get_grad(r.m, "head.weight", buf, 63), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "63"));
  ck_assert_int_eq(strop_model_get_grad(r.m, "bn.running_mean", buf, 16), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "buffer"));
  ck_assert_mem_eq(buf, keep, sizeof buf);
  ck_assert_int_eq(strop_model_set_grad(NULL, "head.weight", buf, 64), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_set_grad(r.m, "head.weight", NULL, 64), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_set_grad(r.m, "nope", buf, 64), STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop_model_set_grad(r.m, "head.weight", buf, 65), STROP_E_SHAPE);
  ck_assert_int_eq(strop_model_set_grad(r.m, "bn.num_batches_tracked", buf, 1), STROP_E_STATE);
  float g[64];
  strop_test_must(strop_model_get_grad(r.m, "head.weight", g, 64), "get");
  for (int i = 0; i < 64; i++) ck_assert(g[i] == 0.0f); /* the failed sets wrote nothing */
  strop_model *unfinished = NULL;
  int64_t in[1] = {8};
  strop_test_must(strop_model_create(1, in, &unfinished), "create");
  strop_test_must(strop_model_add(unfinished, "fc", "linear", "out_features=2", NULL), "add");
  ck_assert_int_eq(strop_model_get_grad(unfinished, "fc.weight", buf, 16), STROP_E_STATE);
  ck_assert_int_eq(strop_model_set_grad(unfinished, "fc.weight", buf, 16), STROP_E_STATE);
  strop_model_free(unfinished);
  free_state(&f0);
  strop_tensor_free(eval_out);
  strop_tensor_free(out);
  strop_tensor_free(dout);
  strop_tensor_free(bad);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

/* A host's NaN written into a gradient between backward and apply is caught by the guard. */
START_TEST(host_written_nan_is_skipped) {
  strop_dataset *ds = blobs(64, 61);
  rig r = make_rig(63, STROP_OPTIM_ADAM, 1e-2f);
  strop_tensor *x, *y, *out = NULL, *dout = NULL;
  batch(ds, 0, 8, &x, &y);
  frozen_state f0 = freeze_state(&r);
  strop_test_must(strop_trainer_forward(r.tr, x, &out), "forward");
  strop_test_must(strop_tensor_copy(out, &dout), "dout");
  strop_test_must(strop_trainer_backward(r.tr, dout), "backward");
  float g[4] = {0, NAN, 0, 0};
  strop_test_must(strop_model_set_grad(r.m, "head.bias", g, 4), "set");
  ck_assert_int_eq(strop_trainer_apply(r.tr), STROP_E_NUMERIC);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_trainer_apply: step 0"));
  f0.rng = r.m->rng;
  assert_state_is(&r, &f0);
  free_state(&f0);
  strop_tensor_free(out);
  strop_tensor_free(dout);
  strop_tensor_free(x);
  strop_tensor_free(y);
  free_rig(&r);
  strop_dataset_free(ds);
}
END_TEST

/* A warm forward + backward + apply failing at any allocation (the output's copy): STROP_E_NOMEM,
 * nothing leaked. (Cold, the gradients, the arena and the buffers' copy are allocated on first
 * use and kept by the model and trainer, as by strop_trainer_step.) */
static rig g_host_rig;
static strop_tensor *g_host_x;
static int op_host_step(void *ctx) {
  (void)ctx;
  strop_tensor *out = NULL;
  int s = strop_trainer_forward(g_host_rig.tr, g_host_x, &out);
  if (!s) s = strop_trainer_backward(g_host_rig.tr, out);
  if (!s) s = strop_trainer_apply(g_host_rig.tr);
  strop_tensor_free(out);
  return s;
}

START_TEST(host_alloc_failures) {
  strop_dataset *ds = blobs(16, 71);
  strop_tensor *y;
  g_host_rig = make_rig(73, STROP_OPTIM_ADAM, 1e-3f);
  batch(ds, 0, 8, &g_host_x, &y);
  strop_test_must(op_host_step(NULL), "a first step");
  ck_assert_int_ge(strop_test_alloc_sweep(op_host_step, NULL, NULL), 1);
  strop_tensor_free(g_host_x);
  strop_tensor_free(y);
  free_rig(&g_host_rig);
  strop_dataset_free(ds);
}
END_TEST

/* --resume CKPT OUT: the second half of resume_is_bit_identical, in a process of its own. */
static const char *g_resume_ckpt, *g_resume_out;
START_TEST(resume_half) {
  float *w;
  size_t n;
  int64_t g;
  run_fit(g_resume_ckpt, NULL, 5, &w, &n, &g);
  ck_assert_int_eq(g, 12);
  FILE *f = fopen(g_resume_out, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(w, sizeof *w, n, f), n);
  fclose(f);
  free(w);
}
END_TEST

/* ---- the memory a step takes ---- */

/* An empty safetensors file: a partial load of it initialises every tensor from the seed. */
static void write_empty_safetensors(const char *path) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  const unsigned char len[8] = {8, 0, 0, 0, 0, 0, 0, 0};
  fwrite(len, 1, 8, f);
  fwrite("{}      ", 1, 8, f);
  ck_assert_int_eq(fclose(f), 0);
}

/* Removes a test's temporary folder and everything in it. */
static void remove_dir(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}

static strop_model *mem_model(int which, const char *dir) {
  strop_model *m = NULL;
  char p[300];
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = STROP_LOAD_PARTIAL;
  o.seed = 3;
  if (which == 0) {
    int64_t in[1] = {784};
    ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "out_features=512", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "act", "relu", NULL, NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "fc2", "linear", "out_features=256", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "act2", "gelu", NULL, NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "drop", "dropout", "p=0.1", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=10", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
  } else if (which == 1) {
    snprintf(p, sizeof p, "%s/r18.safetensors", dir);
    write_empty_safetensors(p);
    o.image_size = 32;
    strop_test_must(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), "resnet18");
  } else {
    snprintf(p, sizeof p, "%s/gpt2", dir);
    ck_assert(mkdir(p, 0755) == 0 || access(p, F_OK) == 0); /* made by an earlier call */
    char f[400];
    snprintf(f, sizeof f, "%s/config.json", p);
    FILE *c = fopen(f, "w");
    ck_assert_ptr_nonnull(c);
    fputs("{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", "
          "\"vocab_size\": 2000, \"n_embd\": 128, \"n_head\": 4, \"n_layer\": 2, "
          "\"n_positions\": 64}",
          c);
    ck_assert_int_eq(fclose(c), 0);
    snprintf(f, sizeof f, "%s/model.safetensors", p);
    write_empty_safetensors(f);
    strop_test_must(strop_model_load_pretrained(p, NULL, &o, &m, NULL), "gpt2");
  }
  return m;
}

/* strop_model_step_memory predicts the most the library holds during steady training steps
 * (weights, gradients, Adam's state, the step's memory) within 10%, with and without
 * checkpointing, on an MLP, a ResNet-18 at 32x32, a 2-layer GPT-2 and the ResNet-18 with its
 * trunk frozen (whose frozen batch norms fold into copies of the convolutions' weights, kept
 * with the model: 45% of the peak, not predicted before); the planning changes nothing in the
 * model. */
/* A wide MLP (8 -> 256 -> 256 -> 256 -> 4): at 512 samples its activations outweigh its
 * gradients. variant 1: b.2.fc's weight tied to b.1.fc's; 2: the three b.* blocks
 * checkpointed. */
static rig wide_rig(int variant) {
  rig r;
  memset(&r, 0, sizeof r);
  int64_t in[1] = {8};
  ck_assert_int_eq(strop_model_create(1, in, &r.m), STROP_OK);
  static const char *const part[9][3] = {{"b.0.fc", "linear", "out_features=256"},
                                         {"b.0.act", "gelu", NULL},
                                         {"b.1.fc", "linear", "out_features=256"},
                                         {"b.1.act", "gelu", NULL},
                                         {"b.2.fc", "linear", "out_features=256"},
                                         {"b.2.act", "gelu", NULL},
                                         {"norm", "layernorm", NULL},
                                         {"act", "relu", NULL},
                                         {"head", "linear", "out_features=4"}};
  for (int k = 0; k < 9; k++)
    ck_assert_int_eq(strop_model_add(r.m, part[k][0], part[k][1], part[k][2], NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(r.m, 31), STROP_OK);
  if (variant == 1) ck_assert_int_eq(strop_model_tie(r.m, "b.2.fc.weight", "b.1.fc.weight"), 0);
  if (variant == 2) {
    ck_assert_int_eq(strop_model_set_checkpointing(r.m, "b.*"), STROP_OK);
    ck_assert_int_eq(strop_model_checkpoint_blocks(r.m), 3);
  }
  ck_assert_int_eq(strop_optimizer_create(r.m, STROP_OPTIM_ADAMW, &r.opt), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(r.opt, STROP_OPT_LR, 1e-2f), STROP_OK);
  ck_assert_int_eq(strop_trainer_create(r.m, r.opt, &r.tr), STROP_OK);
  return r;
}

typedef struct planned_run {
  float loss[6];
  float *w, *g; /* the weights after the run; the gradients of the host's last backward */
  size_t n;
  size_t region, grads; /* the step region's bytes; the trainable gradients' */
  int planned;          /* trainable gradients lying in the region after a backward */
  int window_planned;   /* the same after the trainer's six steps */
  int first_planned;    /* mode 5: the same after the window's first backward */
} planned_run;

/* Six steps of wide_rig on x, y (the trainer's own loss, accum micro-batches a step), then a
 * step by the host's halves: its forward, its backward of dout = out / 64, and its update;
 * mode 1: a forward in eval mode between the backward and the update; 2: the host sets
 * head.bias's gradient while the forward awaits its backward (which adds to it); 3: the host
 * zeroes the gradients then; 4: the host zeroes them before the forward; 5: the host's halves
 * accumulate two micro-batches a window (a forward and backward before this one). */
static planned_run run_planned(int plan, int variant, int accum, int mode, strop_tensor *x,
                               strop_tensor *y) {
  strop__plan_grads = plan;
  rig r = wide_rig(variant);
  planned_run o;
  memset(&o, 0, sizeof o);
  ck_assert_int_eq(strop_trainer_set_int(r.tr, STROP_TRAIN_ACCUM_STEPS, accum), STROP_OK);
  for (int s = 0; s < 6; s++)
    ck_assert_int_eq(strop_trainer_step(r.tr, x, y, &o.loss[s]), STROP_OK);
  for (int i = 0; i < r.m->n_params; i++) o.window_planned += r.m->params[i]->grad_planned;
  ck_assert_int_eq(strop_trainer_set_int(r.tr, STROP_TRAIN_ACCUM_STEPS, mode == 5 ? 2 : 1),
                   STROP_OK);
  if (mode == 4) ck_assert_int_eq(strop_optimizer_zero_grad(r.opt), STROP_OK);
  strop_tensor *out = NULL;
  if (mode == 5) { /* the window's first micro-batch, by the host's halves */
    ck_assert_int_eq(strop_trainer_forward(r.tr, x, &out), STROP_OK);
    float *d0 = strop_tensor_data(out);
    for (int64_t i = 0; i < strop_tensor_numel(out); i++) d0[i] /= 32.0f;
    ck_assert_int_eq(strop_trainer_backward(r.tr, out), STROP_OK);
    for (int i = 0; i < r.m->n_params; i++) o.first_planned += r.m->params[i]->grad_planned;
    ck_assert_int_eq(strop_trainer_apply(r.tr), STROP_OK); /* not yet: one of two */
    strop_tensor_free(out);
    out = NULL;
  }
  ck_assert_int_eq(strop_trainer_forward(r.tr, x, &out), STROP_OK);
  if (mode == 2) { /* where the planned gradients lie, activations are live now */
    const float hb[4] = {0.5f, -0.25f, 0.125f, 1.0f};
    ck_assert_int_eq(strop_model_set_grad(r.m, "head.bias", hb, 4), STROP_OK);
  }
  if (mode == 3) ck_assert_int_eq(strop_optimizer_zero_grad(r.opt), STROP_OK);
  float *d = strop_tensor_data(out);
  for (int64_t i = 0; i < strop_tensor_numel(out); i++) d[i] /= 64.0f;
  ck_assert_int_eq(strop_trainer_backward(r.tr, out), STROP_OK);
  for (int i = 0; i < r.m->n_params; i++) {
    const strop__param *p = r.m->params[i];
    o.planned += p->grad_planned;
    o.grads += p->trainable ? p->numel * sizeof(float) : 0;
  }
  o.g = malloc(o.grads);
  for (int i = 0, k = 0; i < r.m->n_params; i++) {
    const strop__param *p = r.m->params[i];
    strop_test_must(strop_model_get_grad(r.m, p->name, o.g + k, p->numel), "get_grad");
    k += (int)p->numel;
  }
  if (mode == 1) { /* a forward in eval mode reuses the step region: the gradients stay */
    strop_tensor *e = NULL;
    ck_assert_int_eq(strop_model_set_training(r.m, 0), STROP_OK);
    ck_assert_int_eq(strop_model_forward(r.m, x, &e), STROP_OK);
    ck_assert_int_eq(strop_model_set_training(r.m, 1), STROP_OK);
    strop_tensor_free(e);
    for (int i = 0, k = 0; i < r.m->n_params; i++) {
      const strop__param *p = r.m->params[i];
      ck_assert_int_eq(p->grad_planned, 0);
      ck_assert_mem_eq(p->grad, o.g + k, p->numel * sizeof(float));
      k += (int)p->numel;
    }
  }
  ck_assert_int_eq(strop_trainer_apply(r.tr), STROP_OK);
  strop_tensor_free(out);
  o.region = r.m->region_cap;
  o.w = weights(r.m, &o.n);
  free_rig(&r);
  strop__plan_grads = 1;
  return o;
}

/* The parameters' gradients planned with the step's activations, from the backward that first
 * writes them to the step's end (strop__plan_grads, the default), against held in memory of
 * their own from step to step: the same losses, gradients and weights bit for bit — one
 * micro-batch a step, two (a trainer accumulating micro-batches keeps its gradients apart:
 * planned, the second forward would copy them out each window), a forward in eval mode
 * between a backward and its update (which copies them out of the region), a host setting or zeroing gradients while a forward awaits its backward (they
 * leave the plan first: they lie where live activations are), and a host zeroing them before
 * the forward (marked zero, not written: planned again); on the MLP, with a weight tied to
 * another (planned from the first of its uses the backward reaches) and with checkpointed
 * blocks; and the host's halves accumulating two micro-batches a window, which keep their
 * gradients apart as the trainer's steps do. Planned, every trainable gradient lies in the
 * region after a backward (none after a host's write or in an accumulating window), and the
 * region holds them in less than its size without them plus their bytes (the planning's, also
 * when the host's write took them out of it). */
START_TEST(gradients_planned_with_activations) {
  strop_dataset *ds = blobs(512, 12);
  strop_tensor *x, *y;
  batch(ds, 0, 512, &x, &y);
  for (int variant = 0; variant <= 2; variant++)
    for (int accum = 1; accum <= 2; accum++)
      for (int mode = 0; mode <= 5; mode++) {
        planned_run a = run_planned(0, variant, accum, mode, x, y),
                    b = run_planned(1, variant, accum, mode, x, y);
        ck_assert_mem_eq(a.loss, b.loss, sizeof a.loss);
        ck_assert_mem_eq(a.g, b.g, a.grads);
        ck_assert_uint_eq(a.n, b.n);
        ck_assert_mem_eq(a.w, b.w, a.n * sizeof *a.w);
        ck_assert_int_eq(a.planned, 0);
        /* three fcs, the norm and the head: weight and bias (one weight fewer tied); none once
         * the host wrote gradients */
        ck_assert_int_eq(b.planned, mode == 2 || mode == 3 || mode == 5 ? 0
                                    : variant == 1                      ? 9
                                                                        : 10);
        ck_assert_int_eq(b.first_planned, 0); /* the host's window too */
        /* a trainer accumulating two micro-batches a window keeps its gradients apart */
        ck_assert_int_eq(b.window_planned, accum == 2 ? 0 : variant == 1 ? 9 : 10);
        fprintf(stderr,
                "gradients planned (variant %d, accum %d, mode %d): region %zu bytes, apart "
                "%zu + %zu of gradients\n",
                variant, accum, mode, b.region, a.region, a.grads);
        if (!variant) /* a third saved */
          ck_assert_uint_lt(b.region + a.grads / 3, a.region + a.grads);
        free(a.w);
        free(b.w);
        free(a.g);
        free(b.g);
      }
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(step_memory_predicts_the_peak) {
  char dir[] = "/tmp/strop_mem_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  static const char *const names[4] = {"mlp", "resnet18", "gpt2", "resnet18 frozen trunk"};
  for (int which = 0; which < 4; which++)
    for (int ck = 0; ck < 2; ck++) {
      if (which == 0 && ck) continue; /* no blocks */
      strop_model *m = mem_model(which == 3 ? 1 : which, dir);
      if (which == 3) {
        ck_assert_int_eq(strop_model_freeze(m, "*"), STROP_OK);
        ck_assert_int_eq(strop_model_unfreeze(m, "fc"), STROP_OK);
      }
      if (ck) ck_assert_int_eq(strop_model_set_checkpointing(m, "auto"), STROP_OK);
      const int64_t n = which == 0 ? 64 : which == 2 ? 6 : 8;
      int64_t dims[4] = {n, 0, 0, 0};
      const int rank = strop_model_input_shape(m, dims + 1, 3) + 1;
      if (which == 2) dims[1] = 64;
      size_t numel = 1;
      for (int i = 0; i < rank; i++) numel *= (size_t)dims[i];
      float *xd = calloc(numel, sizeof *xd);
      ck_assert_ptr_nonnull(xd);
      for (size_t i = 0; i < numel; i++)
        xd[i] = which == 2 ? (float)(i * 7 % 2000) : sinf((float)i);
      const int64_t ydims[2] = {n, 64};
      float yd[8 * 64];
      for (int i = 0; i < 8 * 64; i++) yd[i] = (float)(i % 10);
      strop_tensor *x = NULL, *y = NULL;
      ck_assert_int_eq(strop_tensor_from_data(xd, numel, rank, dims, &x), STROP_OK);
      ck_assert_int_eq(strop_tensor_from_data(yd, which == 2 ? (size_t)(n * 64) : (size_t)n,
                                              which == 2 ? 2 : 1, ydims, &y),
                       STROP_OK);
      free(xd);
      /* the prediction, before any step, changes nothing */
      size_t nw = 0;
      float *before = weights(m, &nw);
      const strop__rng rng = m->rng;
      size_t act = 0, peak = 0;
      ck_assert_msg(strop_model_step_memory(m, n, dims + 1, rank - 1, 2, &act, &peak) == STROP_OK,
                    "%s", strop_last_error());
      size_t nw2 = 0;
      float *after = weights(m, &nw2);
      ck_assert(nw == nw2 && !memcmp(before, after, nw * sizeof *before));
      ck_assert(m->rng.state == rng.state);
      free(before);
      free(after);
      /* steady steps: what the library holds, less the batch's own tensors */
      strop_optimizer *opt = NULL;
      strop_trainer *tr = NULL;
      ck_assert_int_eq(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), STROP_OK);
      ck_assert_int_eq(strop_trainer_create(m, opt, &tr), STROP_OK);
      ck_assert_msg(strop_trainer_step(tr, x, y, NULL) == STROP_OK, "%s", strop_last_error());
      strop__alloc_peak_reset();
      for (int k = 0; k < 2; k++)
        ck_assert_msg(strop_trainer_step(tr, x, y, NULL) == STROP_OK, "%s", strop_last_error());
      const double held = (double)strop__alloc_peak() - (double)(numel + (size_t)n * 64) * 4.0;
      const double err = ((double)peak - held) / held;
      fprintf(stderr,
              "step memory %s%s batch %lld: predicted %.2f MB (step memory %.2f MB), "
              "held %.2f MB: %+.1f%%\n",
              names[which], ck ? " checkpointed" : "", (long long)n, (double)peak / 1e6,
              (double)act / 1e6, held / 1e6, 100 * err);
      ck_assert_msg(fabs(err) <= 0.10, "%s%s: predicted %zu bytes, held %.0f", names[which],
                    ck ? " checkpointed" : "", peak, held);
      strop_trainer_free(tr);
      strop_optimizer_free(opt);
      strop_tensor_free(x);
      strop_tensor_free(y);
      strop_model_free(m);
    }
  remove_dir(dir);
}
END_TEST

/* strop_trainer_step_memory plans the step as the trainer runs it, on the GPT-2 model: set to
 * accumulate two micro-batches (gradients apart), with a loss that does not run fused with the
 * LM head (MSE: the whole [6, 64, 2000] output and its gradient held) and SGD with momentum
 * (one optimizer value per weight). Each prediction, made before any step, is within 3% of
 * what the steps hold (planning the gradients with the activations would be 5% under for the
 * accumulating trainer); the model's own prediction, which assumes the fused cross-entropy, is
 * 13% under for the MSE trainer. A pending host forward is refused, and nothing changes. */
START_TEST(trainer_step_memory_follows_the_trainer) {
  char dir[] = "/tmp/strop_tmem_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  static const char *const names[2] = {"AdamW accumulating 2", "MSE, SGD with momentum"};
  const int64_t n = 6, t = 64, vocab = 2000;
  for (int which = 0; which < 2; which++) {
    strop_model *m = mem_model(2, dir);
    const int64_t xd[2] = {n, t}, yd[3] = {n, t, vocab};
    strop_tensor *x = NULL, *y = NULL;
    strop_test_must(strop_tensor_create(2, xd, &x), "x");
    strop_test_must(strop_tensor_create(which ? 3 : 2, yd, &y), "y");
    float *xv = strop_tensor_data(x), *yv = strop_tensor_data(y);
    for (int64_t i = 0; i < n * t; i++) xv[i] = (float)(i * 7 % vocab);
    for (int64_t i = 0; i < strop_tensor_numel(y); i++)
      yv[i] = which ? 0.01f * (float)(i % 13) : (float)(i * 11 % vocab);
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    strop_test_must(strop_optimizer_create(m, which ? STROP_OPTIM_SGD : STROP_OPTIM_ADAMW, &opt),
                    "optimizer");
    if (which)
      strop_test_must(strop_optimizer_set_float(opt, STROP_OPT_MOMENTUM, 0.9), "momentum");
    strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
    if (which)
      strop_test_must(strop_trainer_set_int(tr, STROP_TRAIN_LOSS, STROP_LOSS_MSE), "mse");
    else strop_test_must(strop_trainer_set_int(tr, STROP_TRAIN_ACCUM_STEPS, 2), "accum");
    size_t nw = 0, nw2 = 0;
    float *before = weights(m, &nw);
    size_t act = 0, peak = 0, model_peak = 0;
    ck_assert_msg(strop_trainer_step_memory(tr, n, NULL, 0, &act, &peak) == STROP_OK, "%s",
                  strop_last_error());
    strop_test_must(strop_model_step_memory(m, n, NULL, 0, which ? 1 : 2, NULL, &model_peak),
                    "model's prediction");
    float *after = weights(m, &nw2);
    ck_assert(nw == nw2 && !memcmp(before, after, nw * sizeof *before));
    ck_assert_int_eq(strop_trainer_global_step(tr), 0);
    free(before);
    free(after);
    /* steady steps (two windows when accumulating): what the library holds, less the batch */
    const int calls = which ? 2 : 4;
    strop_test_must(strop_trainer_step(tr, x, y, NULL), "warm");
    if (!which) strop_test_must(strop_trainer_step(tr, x, y, NULL), "warm");
    strop__alloc_peak_reset();
    for (int k = 0; k < calls; k++)
      ck_assert_msg(strop_trainer_step(tr, x, y, NULL) == STROP_OK, "%s", strop_last_error());
    const double held = (double)strop__alloc_peak() -
                        (double)(strop_tensor_numel(x) + strop_tensor_numel(y)) * 4.0;
    const double err = ((double)peak - held) / held, merr = ((double)model_peak - held) / held;
    fprintf(stderr,
            "trainer step memory, gpt2 %s batch %lld: predicted %.2f MB (step memory %.2f MB), "
            "the model's %.2f MB, held %.2f MB: %+.1f%% (the model's %+.1f%%)\n",
            names[which], (long long)n, (double)peak / 1e6, (double)act / 1e6,
            (double)model_peak / 1e6, held / 1e6, 100 * err, 100 * merr);
    ck_assert_msg(fabs(err) <= 0.03, "%s: predicted %zu bytes, held %.0f", names[which], peak,
                  held);
    if (which)
      ck_assert_msg(merr < -0.10, "%s: the model's prediction %+.1f%%", names[which], 100 * merr);
    /* the check says the same: it fits at the peak, not 10% below it, and names itself */
    ck_assert_int_eq(strop_trainer_check_memory(tr, n, NULL, 0, peak), STROP_OK);
    ck_assert_int_eq(strop_trainer_check_memory(tr, n, NULL, 0, peak - peak / 10), STROP_E_NOMEM);
    ck_assert_ptr_nonnull(
        strstr(strop_last_error(), "strop_trainer_check_memory: a training step"));
    /* a forward awaiting its backward: planning would drop it (after the steps: the host's
     * forward holds its whole output, and the step arena keeps the size it reached) */
    strop_tensor *out = NULL;
    strop_test_must(strop_trainer_forward(tr, x, &out), "forward");
    ck_assert_int_eq(strop_trainer_step_memory(tr, n, NULL, 0, &act, &peak), STROP_E_STATE);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_trainer_step_memory: a forward"));
    ck_assert_int_eq(strop_trainer_check_memory(tr, n, NULL, 0, 1), STROP_E_STATE);
    strop_trainer_discard_forward(tr);
    strop_tensor_free(out);
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
    strop_tensor_free(x);
    strop_tensor_free(y);
    strop_model_free(m);
  }
  ck_assert_int_eq(strop_trainer_step_memory(NULL, n, NULL, 0, NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_trainer_step_memory: trainer is NULL"));
  ck_assert_int_eq(strop_trainer_check_memory(NULL, n, NULL, 0, 0), STROP_E_INVALID_ARG);
  remove_dir(dir);
}
END_TEST

/* strop_trainer_check_memory refusing a step, with every allocation of its planning (the step,
 * the largest batch, the micro-batches that fit) failing in turn: out of memory each time, the
 * model's weights, generator and gradient mode as they were, and afterwards the same
 * prediction and a step that trains. */
START_TEST(trainer_check_memory_alloc_failures) {
  char dir[] = "/tmp/strop_tmemf_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  strop_model *m = mem_model(0, dir);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "optimizer");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  size_t peak = 0, again = 0;
  strop_test_must(strop_trainer_step_memory(tr, 1024, NULL, 0, NULL, &peak), "plan");
  size_t nw = 0, nw2 = 0;
  float *before = weights(m, &nw);
  const strop__rng rng = m->rng;
  int failures = 0;
  for (int64_t k = 1; k < 100000; k++) {
    strop_clear_error();
    strop__alloc_fail_at(k);
    const strop_status st = strop_trainer_check_memory(tr, 1024, NULL, 0, peak - peak / 4);
    const int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    ck_assert_msg(st == STROP_E_NOMEM, "allocation %lld: status %d (%s)", (long long)k, st,
                  strop_last_error());
    ck_assert(strop_last_error()[0] != '\0');
    float *after = weights(m, &nw2);
    ck_assert(nw == nw2 && !memcmp(before, after, nw * sizeof *before));
    free(after);
    ck_assert(m->rng.state == rng.state);
    ck_assert_int_eq(m->grads_apart, 0);
    if (!hit) { /* the refusal itself, with the micro-batches that fit */
      ck_assert_ptr_nonnull(strstr(strop_last_error(), "micro-batches of"));
      break;
    }
    failures++;
  }
  fprintf(stderr, "trainer check memory: %d allocation failures, each out of memory\n", failures);
  ck_assert_int_ge(failures, 20);
  free(before);
  strop_test_must(strop_trainer_step_memory(tr, 1024, NULL, 0, NULL, &again), "plan again");
  ck_assert_uint_eq(again, peak);
  const int64_t xd[2] = {64, 784}, yd[1] = {64};
  strop_tensor *x = NULL, *y = NULL;
  strop_test_must(strop_tensor_create(2, xd, &x), "x");
  strop_test_must(strop_tensor_create(1, yd, &y), "y");
  float *yv = strop_tensor_data(y);
  for (int i = 0; i < 64; i++) yv[i] = (float)(i % 10);
  float loss = 0;
  strop_test_must(strop_trainer_step(tr, x, y, &loss), "step");
  ck_assert(isfinite(loss));
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  remove_dir(dir);
}
END_TEST

/* ---- the cross-entropy fused with the LM head (graph.h, strop__row_loss) ---- */

/* A small language model with an untied head: embedding, linear, gelu (whose output the head's
 * backward recomputes unfused), head with a bias; [N, T] token ids in, [N, T, V] logits out. */
static strop_model *untied_lm_w(int64_t vocab, int64_t width, uint64_t seed) {
  const int64_t in[1] = {12};
  char opt[96];
  strop_model *m = NULL;
  strop_test_must(strop_model_create(1, in, &m), "create");
  snprintf(opt, sizeof opt, "num_embeddings=%lld embedding_dim=16", (long long)vocab);
  strop_test_must(strop_model_add(m, "emb", "embedding", opt, NULL), "emb");
  snprintf(opt, sizeof opt, "out_features=%lld", (long long)width);
  strop_test_must(strop_model_add(m, "fc", "linear", opt, NULL), "fc");
  strop_test_must(strop_model_add(m, "act", "gelu", NULL, NULL), "act");
  snprintf(opt, sizeof opt, "out_features=%lld bias=true", (long long)vocab);
  strop_test_must(strop_model_add(m, "head", "linear", opt, NULL), "head");
  strop_test_must(strop_model_finalize(m, seed), "finalize");
  return m;
}

static strop_model *untied_lm(int64_t vocab, uint64_t seed) {
  return untied_lm_w(vocab, 24, seed);
}

/* Token ids [n, t] and next-token targets [n, t] with every fifth one ignored (-100). */
static void lm_batch(int64_t n, int64_t t, int64_t vocab, strop_tensor **x, strop_tensor **y) {
  const int64_t d[2] = {n, t};
  strop_test_must(strop_tensor_create(2, d, x), "x");
  strop_test_must(strop_tensor_create(2, d, y), "y");
  float *xv = strop_tensor_data(*x), *yv = strop_tensor_data(*y);
  for (int64_t i = 0; i < n * t; i++) {
    xv[i] = (float)((i * 37 + 11) % vocab);
    yv[i] = i % 5 == 3 ? -100.0f : (float)((i * 53 + 7) % vocab);
  }
}

static void lm_knobs(strop_trainer *tr, int which) {
  strop_test_must(strop_trainer_set_int(tr, STROP_TRAIN_ACCUM_STEPS, 2), "accum");
  if (which != 1) return;
  /* label smoothing and class weights on top of the ignored rows */
  strop_test_must(strop_trainer_set_float(tr, STROP_TRAIN_LABEL_SMOOTHING, 0.1), "smoothing");
  float w[64];
  for (int i = 0; i < 64; i++) w[i] = 0.5f + (float)(i % 7) * 0.25f;
  strop_test_must(strop_trainer_set_class_weights(tr, w, 64), "class weights");
}

/* The largest |a - b| over every trainable gradient (grads 1) or every value, against the
 * largest |b| of the same tensor: the worst of d / (max |b| + floor) over the tensors. */
static double params_diff(strop_model *a, strop_model *b, int grads, double floor) {
  ck_assert_int_eq(a->n_params, b->n_params);
  double worst = 0;
  for (int i = 0; i < a->n_params; i++) {
    const strop__param *p = a->params[i], *q = b->params[i];
    const float *u = grads ? p->grad : p->data, *v = grads ? q->grad : q->data;
    ck_assert(!u == !v);
    if (!u) continue;
    double d = 0, mx = 0;
    for (size_t k = 0; k < p->numel; k++) {
      const double e = fabs((double)u[k] - (double)v[k]);
      if (e > d || isnan(e)) d = e;
      if (fabs((double)v[k]) > mx) mx = fabs((double)v[k]);
    }
    if (d / (mx + floor) > worst || isnan(d)) worst = d / (mx + floor);
  }
  return worst;
}

/* One step of model a with the head fused with its loss in chunks of 7 rows, and of a clone
 * without (STROP_FUSED_LOSS=0's path), with AdamW over two micro-batches: the loss, every
 * gradient after the first and every weight after the update agree within float rounding
 * (the chunks sum the head's weight gradient in another order), and a step really ran fused
 * (expect_fused 1) or not (0). Frees a. */
static void fused_matches_unfused(strop_model *a, const char *name, int expect_fused, int knobs,
                                  int64_t vocab, int64_t t, int exact) {
  strop_model *b = NULL;
  strop_test_must(strop_model_clone(a, &b), "clone");
  strop_model *m[2] = {a, b};
  strop_optimizer *opt[2];
  strop_trainer *tr[2];
  for (int k = 0; k < 2; k++) {
    strop_test_must(strop_optimizer_create(m[k], STROP_OPTIM_ADAMW, &opt[k]), "optimizer");
    strop_test_must(strop_optimizer_set_float(opt[k], STROP_OPT_LR, 1e-3f), "lr");
    strop_test_must(strop_trainer_create(m[k], opt[k], &tr[k]), "trainer");
    lm_knobs(tr[k], knobs);
  }
  strop_tensor *x = NULL, *y = NULL;
  lm_batch(3, t, vocab, &x, &y);
  float loss[2][2];
  const int64_t fused_before = a->rows_steps, unfused_before = b->rows_steps;
  strop__fused_loss_rows = 7;
  for (int step = 0; step < 2; step++) {
    for (int k = 0; k < 2; k++) {
      strop__fused_loss = k == 0;
      ck_assert_msg(strop_trainer_step(tr[k], x, y, &loss[k][step]) == STROP_OK, "%s: %s", name,
                    strop_last_error());
    }
    const double dl = fabs((double)loss[0][step] - (double)loss[1][step]);
    ck_assert_msg(dl <= 2e-6 * fabs((double)loss[1][step]), "%s: loss %.9g fused, %.9g not", name,
                  (double)loss[0][step], (double)loss[1][step]);
    if (step == 0) { /* the window's gradients, before the update */
      const double dg = params_diff(a, b, 1, 1e-6);
      fprintf(stderr, "fused loss %s: loss %.9g / %.9g, gradients within %.2g of their largest",
              name, (double)loss[0][0], (double)loss[1][0], dg);
      ck_assert_msg(dg <= 1e-5, "%s: gradients differ by %g of their largest", name, dg);
      /* a frozen head's chunks add no weight gradient: every gradient is the same bits */
      ck_assert_msg(!exact || dg == 0, "%s: gradients differ by %g", name, dg);
    }
  }
  /* AdamW moves each weight by about lr: what it moves differently is against lr */
  const double dw = params_diff(a, b, 0, 1e-30);
  double worst = 0;
  for (int i = 0; i < a->n_params; i++) {
    const strop__param *p = a->params[i], *q = b->params[i];
    for (size_t k = 0; p->data && k < p->numel; k++) {
      const double e = fabs((double)p->data[k] - (double)q->data[k]);
      if (e > worst) worst = e;
    }
  }
  fprintf(stderr, ", weights after AdamW within %.2g (%.2g lr)\n", dw, worst / 1e-3);
  ck_assert_msg(worst <= 1e-2 * 1e-3, "%s: weights after the update differ by %g", name, worst);
  ck_assert_int_eq(a->rows_steps - fused_before, expect_fused ? 2 : 0);
  ck_assert_int_eq(b->rows_steps, unfused_before);
  strop__fused_loss = -1;
  strop__fused_loss_rows = 0;
  strop_tensor_free(x);
  strop_tensor_free(y);
  for (int k = 0; k < 2; k++) {
    strop_trainer_free(tr[k]);
    strop_optimizer_free(opt[k]);
    strop_model_free(m[k]);
  }
}

static strop_model *with_lora(strop_model *m, const char *glob) {
  strop_surgery *s = NULL;
  strop_test_must(strop_surgery_create(m, &s), "surgery");
  strop_test_must(strop_surgery_freeze(s, "*", 0), "freeze");
  strop_test_must(strop_surgery_lora(s, glob, 4, 8.0f, 0.0f), "lora");
  strop_test_must(strop_surgery_apply(s), "apply");
  strop_surgery_free(s);
  return m;
}

/* A GPT-2-shaped model (tied head) fully trained and with LoRA on c_attn, an untied head with
 * a bias, LoRA on the head itself, a frozen head held in BF16 (fused where the vdpbf16ps
 * product runs, else the unfused path), label smoothing and class weights: the fused step
 * gives the unfused step's loss, gradients and update. */
START_TEST(fused_step_matches_unfused) {
  char dir[] = "/tmp/strop_fused_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  fused_matches_unfused(mem_model(2, dir), "gpt2 tied head", 1, 0, 2000, 20, 0);
  fused_matches_unfused(with_lora(mem_model(2, dir), "*.attn.c_attn"), "gpt2 lora c_attn", 1, 0,
                        2000, 20, 1);
  fused_matches_unfused(untied_lm(64, 5), "untied head with bias", 1, 0, 64, 12, 0);
  fused_matches_unfused(untied_lm(64, 5), "smoothing and class weights", 1, 1, 64, 12, 0);
  fused_matches_unfused(with_lora(untied_lm(64, 6), "head"), "lora on the head", 1, 0, 64, 12, 0);
  strop_model *bf = untied_lm(64, 7);
  strop_test_must(strop_model_freeze(bf, "head"), "freeze");
  strop_test_must(strop_model_set_frozen_dtype(bf, STROP_DTYPE_BF16), "bf16");
  ck_assert_int_eq(strop__param_dtype(strop__model_param_find(bf, "head.weight")),
                   STROP__LOWP_BF16);
  fused_matches_unfused(bf, "bf16 frozen head", strop__bf16_dot_enabled(), 0, 64, 12, 1);
  /* an int8 head on vdpbf16ps is expanded while its panels are packed: it fuses too */
  strop_model *i8 = untied_lm(64, 8);
  strop_test_must(strop_model_freeze(i8, "head"), "freeze");
  strop_test_must(strop_model_set_frozen_dtype(i8, STROP_DTYPE_INT8), "int8");
  fused_matches_unfused(i8, "int8 frozen head", strop__bf16_dot_enabled(), 0, 64, 12, 1);
  remove_dir(dir);
}
END_TEST

/* Where the fusion does not apply the step is the unfused one: another loss, a head held in
 * int8 on the exact fallback (each chunk would widen the whole weight; on vdpbf16ps it is
 * expanded as it is packed and fuses), a last node that is no linear, a forward the
 * host differentiates, STROP_FUSED_LOSS=0; and where it does, the single-chunk step gives the
 * unfused step's numbers bit for bit. */
START_TEST(unfused_where_fusion_does_not_apply) {
  for (int which = 0; which < 5; which++) {
    strop_tensor *x = NULL, *y = NULL;
    lm_batch(2, 12, 64, &x, &y);
    strop_model *m = untied_lm(64, 9);
    if (which == 1) {
      strop_test_must(strop_model_freeze(m, "head"), "freeze");
      strop_test_must(strop_model_set_frozen_dtype(m, STROP_DTYPE_INT8), "int8");
    }
    if (which == 2) { /* a last node of its own after the head */
      strop_model_free(m);
      const int64_t in[1] = {12};
      strop_test_must(strop_model_create(1, in, &m), "create");
      strop_test_must(
          strop_model_add(m, "emb", "embedding", "num_embeddings=64 embedding_dim=16", NULL),
          "emb");
      strop_test_must(strop_model_add(m, "head", "linear", "out_features=64", NULL), "head");
      strop_test_must(strop_model_add(m, "act", "tanh", NULL, NULL), "tanh");
      strop_test_must(strop_model_finalize(m, 9), "finalize");
    }
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    strop_test_must(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt), "optimizer");
    strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
    if (which == 3) {
      strop_test_must(strop_trainer_set_int(tr, STROP_TRAIN_LOSS, STROP_LOSS_MSE), "mse");
      strop_tensor_free(y);
      const int64_t d[3] = {2, 12, 64};
      strop_test_must(strop_tensor_create(3, d, &y), "y");
    }
    if (which == 4) strop__fused_loss = 0;
    const int64_t before = m->rows_steps;
    if (which == 1) strop__bf16_impl = 1; /* the exact fallback (vdpbf16ps fuses: above) */
    ck_assert_msg(strop_trainer_step(tr, x, y, NULL) == STROP_OK, "%s", strop_last_error());
    strop__bf16_impl = 0;
    /* (case 0, a linear head with the cross-entropy: fused) */
    ck_assert_msg(m->rows_steps == before + (which == 0), "case %d: %lld fused steps", which,
                  (long long)(m->rows_steps - before));
    strop__fused_loss = -1;
    if (which == 0) { /* the host's forward and backward: never fused */
      strop_tensor *o = NULL;
      strop_test_must(strop_trainer_forward(tr, x, &o), "forward");
      ck_assert_ptr_nonnull(strop_tensor_data(o));
      strop_test_must(strop_trainer_backward(tr, o), "backward");
      strop_tensor_free(o);
      strop_test_must(strop_trainer_apply(tr), "apply");
      ck_assert_int_eq(m->rows_steps, before + 1);
      /* and the trainer's own step fuses, in one chunk here: the same bits as unfused */
      strop_model *c = NULL;
      strop_test_must(strop_model_clone(m, &c), "clone");
      strop_optimizer *oc = NULL;
      strop_trainer *tc = NULL;
      strop_test_must(strop_optimizer_create(c, STROP_OPTIM_SGD, &oc), "optimizer");
      strop_test_must(strop_trainer_create(c, oc, &tc), "trainer");
      float l1 = 0, l2 = 0;
      strop_test_must(strop_trainer_step(tr, x, y, &l1), "step");
      ck_assert_int_eq(m->rows_steps, before + 2);
      strop__fused_loss = 0;
      strop_test_must(strop_trainer_step(tc, x, y, &l2), "step");
      strop__fused_loss = -1;
      ck_assert_int_eq(c->rows_steps, 0);
      ck_assert(l1 == l2);
      ck_assert(params_diff(m, c, 0, 1e-30) == 0);
      strop_trainer_free(tc);
      strop_optimizer_free(oc);
      strop_model_free(c);
    }
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
    strop_model_free(m);
    strop_tensor_free(x);
    strop_tensor_free(y);
  }
}
END_TEST

/* The evaluation's loss, perplexity and per-token accuracy with the head fused (chunks of 5
 * rows) are the unfused evaluation's. */
START_TEST(fused_eval_matches_unfused) {
  strop_tensor *x = NULL, *y = NULL;
  lm_batch(6, 12, 64, &x, &y);
  const int64_t dims[1] = {12};
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(strop_tensor_data(x), strop_tensor_data(y), 6, 1,
                                            dims, 1, dims, 0, &ds),
                  "dataset");
  strop_model *m = untied_lm(64, 11);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt), "optimizer");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_metrics *mt[2] = {NULL, NULL};
  strop__fused_loss_rows = 5;
  for (int k = 0; k < 2; k++) {
    strop__fused_loss = k == 0;
    const int64_t before = m->rows_steps;
    strop_test_must(strop_trainer_eval_dataset(tr, ds, 4, &mt[k]), "eval");
    ck_assert_int_eq(m->rows_steps - before, k == 0 ? 2 : 0);
  }
  strop__fused_loss = -1;
  strop__fused_loss_rows = 0;
  static const int keys[] = {STROP_METRIC_LOSS, STROP_METRIC_PERPLEXITY, STROP_METRIC_ACCURACY,
                             STROP_METRIC_TOP5, STROP_METRIC_TOKENS};
  for (int i = 0; i < 5; i++) {
    const double a = strop_metrics_get(mt[0], keys[i]), b = strop_metrics_get(mt[1], keys[i]);
    ck_assert_msg(a == b && !isnan(a), "metric %d: %.17g fused, %.17g not", keys[i], a, b);
  }
  strop_metrics_free(mt[0]);
  strop_metrics_free(mt[1]);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  strop_dataset_free(ds);
  strop_tensor_free(x);
  strop_tensor_free(y);
}
END_TEST

/* The rows a chunk takes: GPT-2's head (512 rows of 50257 logits) in 192 / 192 / 128 rows when
 * frozen (16 MiB of logits a chunk), in one chunk when its 154 MB weight gradient trains (a
 * chunk may hold as much as that gradient, which each chunk reads and writes whole), as before
 * with strop__rows_chunk_grads 0; a larger batch in chunks no larger than the gradient but for
 * the rounding up to 32 rows. */
START_TEST(chunk_rows_weigh_the_weight_gradient) {
  const size_t dw = (size_t)50257 * 768 * 4;
  ck_assert_int_eq(strop__rows_chunk(512, 50257, 0), 192);
  ck_assert_int_eq(strop__rows_chunk(512, 50257, 2 * 768 * 4), 192);
  ck_assert_int_eq(strop__rows_chunk(512, 50257, dw), 512);
  strop__rows_chunk_grads = 0;
  ck_assert_int_eq(strop__rows_chunk(512, 50257, dw), 192);
  strop__rows_chunk_grads = 1;
  const int64_t c = strop__rows_chunk(8192, 50257, dw);
  ck_assert_msg(c >= 672 && c <= 768 && c % 32 == 0, "%lld rows a chunk", (long long)c);
  ck_assert_int_eq(strop__rows_chunk(100, 50257, dw), 100);
  strop__fused_loss_rows = 7; /* (tests' own chunks win) */
  ck_assert_int_eq(strop__rows_chunk(512, 50257, dw), 7);
  strop__fused_loss_rows = 0;
}
END_TEST

/* A trained head whose weight gradient is larger than the logits of its rows (300 rows, a head
 * of 320 inputs, the logits' room cut to nothing): its step runs in one chunk and gives the
 * unfused step's loss and gradients bit for bit, FP32 and BF16 (the same products on the same
 * rows); frozen, or with strop__rows_chunk_grads 0, in two chunks of at most 192 rows, within
 * float rounding. */
START_TEST(fused_trained_head_in_one_chunk) {
  strop__rows_chunk_bytes = 1;
  for (int which = 0; which < 4; which++) {
    const int bf16 = which == 1, frozen = which == 2;
    strop__rows_chunk_grads = which != 3;
    strop_model *m[2] = {untied_lm_w(64, 320, 21), NULL};
    if (frozen) strop_test_must(strop_model_freeze(m[0], "head"), "freeze");
    if (bf16) strop_test_must(strop_model_set_compute_dtype(m[0], STROP_DTYPE_BF16), "bf16");
    strop_test_must(strop_model_clone(m[0], &m[1]), "clone");
    if (bf16) strop_test_must(strop_model_set_compute_dtype(m[1], STROP_DTYPE_BF16), "bf16");
    strop_tensor *x = NULL, *y = NULL;
    lm_batch(25, 12, 64, &x, &y); /* 300 rows */
    float loss[2];
    for (int k = 0; k < 2; k++) {
      strop_optimizer *opt = NULL;
      strop_trainer *tr = NULL;
      strop_test_must(strop_optimizer_create(m[k], STROP_OPTIM_SGD, &opt), "optimizer");
      strop_test_must(strop_trainer_create(m[k], opt, &tr), "trainer");
      strop_test_must(strop_trainer_set_int(tr, STROP_TRAIN_ACCUM_STEPS, 2), "accum");
      strop__fused_loss = k == 0;
      const int64_t chunks = m[k]->rows_chunks;
      ck_assert_msg(strop_trainer_step(tr, x, y, &loss[k]) == STROP_OK, "%s", strop_last_error());
      strop__fused_loss = -1;
      ck_assert_int_eq(m[k]->rows_chunks - chunks, k == 1 ? 0 : which == 0 || bf16 ? 1 : 2);
      strop_trainer_free(tr);
      strop_optimizer_free(opt);
    }
    const double dg = params_diff(m[0], m[1], 1, 1e-6);
    fprintf(stderr, "trained head, case %d: loss %.9g / %.9g, gradients within %.2g\n", which,
            (double)loss[0], (double)loss[1], dg);
    ck_assert_msg(fabs((double)loss[0] - (double)loss[1]) <= 2e-6 * fabs((double)loss[1]),
                  "case %d: loss %.9g fused, %.9g not", which, (double)loss[0], (double)loss[1]);
    ck_assert_msg(dg <= 1e-5, "case %d: gradients differ by %g of their largest", which, dg);
    if (which <= 2) /* one chunk, or a frozen head's chunks adding no weight gradient */
      ck_assert_msg(loss[0] == loss[1] && dg == 0, "case %d: gradients differ by %g", which, dg);
    strop_tensor_free(x);
    strop_tensor_free(y);
    strop_model_free(m[0]);
    strop_model_free(m[1]);
  }
  strop__rows_chunk_grads = 1;
  strop__rows_chunk_bytes = STROP__ROWS_CHUNK_BYTES;
}
END_TEST

/* With the head fused (chunks of 16 rows of 32000 logits), the step memory drops by about the
 * logits and their gradient, and strop_model_step_memory predicts what the steps hold. */
START_TEST(fused_step_memory) {
  const int64_t vocab = 32000;
  strop_model *m = untied_lm(vocab, 13);
  const int64_t n = 4, sample[1] = {12};
  size_t act[2] = {0, 0}, peak = 0;
  strop__fused_loss_rows = 16;
  for (int k = 0; k < 2; k++) {
    strop__fused_loss = k == 0;
    strop_test_must(strop_model_step_memory(m, n, sample, 1, 2, &act[k], k == 0 ? &peak : NULL),
                    "step memory");
  }
  const double logits = (double)(n * 12 * vocab) * 4.0;
  fprintf(stderr, "fused step memory %.2f MB, unfused %.2f MB (logits %.2f MB)\n", act[0] / 1e6,
          act[1] / 1e6, logits / 1e6);
  /* the logits and their gradient, less one chunk of 16 rows */
  const double chunk = 16.0 * (double)vocab * 4;
  ck_assert_msg((double)act[1] - (double)act[0] >= 1.9 * logits - chunk, "%zu against %zu",
                act[0], act[1]);
  strop__fused_loss = -1;
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "optimizer");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_tensor *x = NULL, *y = NULL;
  lm_batch(n, 12, vocab, &x, &y);
  strop_test_must(strop_trainer_step(tr, x, y, NULL), "step");
  strop__alloc_peak_reset();
  for (int k = 0; k < 2; k++) strop_test_must(strop_trainer_step(tr, x, y, NULL), "step");
  const double held = (double)strop__alloc_peak() - (double)(2 * n * 12) * 4.0;
  const double err = ((double)peak - held) / held;
  fprintf(stderr, "fused step: predicted %.2f MB, held %.2f MB: %+.1f%%\n", peak / 1e6,
          held / 1e6, 100 * err);
  ck_assert_msg(fabs(err) <= 0.10, "predicted %zu, held %.0f", peak, held);
  strop__fused_loss_rows = 0;
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
}
END_TEST

/* A GPT-2-shaped model with each transformer.h.N checkpointed: its LM head is no block's, so
 * the step still fuses the head with its cross-entropy, on the planned step; two AdamW steps
 * give the loss, gradients and weights of the same model without checkpointing to the bit. */
START_TEST(checkpointed_step_fuses_the_loss) {
  char dir[] = "/tmp/strop_ckfused_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  strop_model *m[2] = {mem_model(2, dir), NULL};
  strop_test_must(strop_model_clone(m[0], &m[1]), "clone");
  strop_test_must(strop_model_set_checkpointing(m[1], "auto"), "checkpointing");
  ck_assert_int_eq(strop_model_checkpoint_blocks(m[1]), 2);
  strop_optimizer *opt[2];
  strop_trainer *tr[2];
  for (int k = 0; k < 2; k++) {
    strop_test_must(strop_optimizer_create(m[k], STROP_OPTIM_ADAMW, &opt[k]), "optimizer");
    strop_test_must(strop_trainer_create(m[k], opt[k], &tr[k]), "trainer");
  }
  strop_tensor *x = NULL, *y = NULL;
  lm_batch(3, 20, 2000, &x, &y);
  strop__fused_loss_rows = 7;
  const int64_t before = m[1]->rows_steps;
  for (int step = 0; step < 2; step++) {
    float loss[2];
    for (int k = 0; k < 2; k++)
      ck_assert_msg(strop_trainer_step(tr[k], x, y, &loss[k]) == STROP_OK, "%s",
                    strop_last_error());
    ck_assert(!memcmp(&loss[0], &loss[1], sizeof loss[0]));
  }
  ck_assert_int_eq(m[1]->rows_steps - before, 2);
  ck_assert(params_diff(m[0], m[1], 1, 1e-30) == 0);
  ck_assert(params_diff(m[0], m[1], 0, 1e-30) == 0);
  strop__fused_loss_rows = 0;
  strop_tensor_free(x);
  strop_tensor_free(y);
  for (int k = 0; k < 2; k++) {
    strop_trainer_free(tr[k]);
    strop_optimizer_free(opt[k]);
    strop_model_free(m[k]);
  }
  remove_dir(dir);
}
END_TEST

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--resume") == 0) {
    g_resume_ckpt = argv[2];
    g_resume_out = argv[3];
    Suite *rs = suite_create("train-resume");
    TCase *rt = tcase_create("resume");
    tcase_add_test(rt, resume_half);
    suite_add_tcase(rs, rt);
    return strop_test_run(rs);
  }
  Suite *s = suite_create("train");
  TCase *tc = tcase_create("step");
  tcase_add_test(tc, step_learns);
  tcase_add_test(tc, warm_step_allocates_nothing);
  tcase_add_test(tc, nan_batch_is_skipped);
  tcase_add_test(tc, nan_batch_keeps_batchnorm_stats);
  tcase_add_test(tc, overflowing_update_is_refused);
  tcase_add_test(tc, accumulation_matches_exactly);
  tcase_add_test(tc, lazy_zero_grad_matches_eager);
  tcase_add_loop_test(tc, nonfinite_gradient_is_skipped, 0, 3);
  tcase_add_test(tc, clip_norm_limits_update);
  tcase_add_test(tc, debug_log_tells_skips_and_checkpoints);
  tcase_add_test(tc, other_input_sizes_train_alike);
  suite_add_tcase(s, tc);
  tc = tcase_create("memory");
  tcase_add_test(tc, step_memory_predicts_the_peak);
  tcase_add_test(tc, trainer_step_memory_follows_the_trainer);
  tcase_add_test(tc, trainer_check_memory_alloc_failures);
  tcase_add_test(tc, checkpointed_step_alloc_failures);
  tcase_add_test(tc, gradients_planned_with_activations);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);
  tc = tcase_create("metrics");
  tcase_add_test(tc, metrics_by_hand);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, step_errors);
  tcase_add_test(tc, alloc_failures);
  tcase_add_test(tc, first_step_alloc_failures);
  tcase_add_test(tc, optimizer_of_another_model_is_refused);
  suite_add_tcase(s, tc);
  tc = tcase_create("host_loss");
  tcase_add_test(tc, host_mse_equals_builtin);
  tcase_add_test(tc, host_cross_entropy_equals_builtin);
  tcase_add_test(tc, host_gradients_and_optimizer_step);
  tcase_add_test(tc, host_backward_then_host_write);
  tcase_add_test(tc, host_errors);
  tcase_add_test(tc, host_written_nan_is_skipped);
  tcase_add_test(tc, host_alloc_failures);
  suite_add_tcase(s, tc);
  tc = tcase_create("fused_loss");
  tcase_add_test(tc, fused_step_matches_unfused);
  tcase_add_test(tc, unfused_where_fusion_does_not_apply);
  tcase_add_test(tc, fused_eval_matches_unfused);
  tcase_add_test(tc, fused_step_memory);
  tcase_add_test(tc, checkpointed_step_fuses_the_loss);
  tcase_add_test(tc, chunk_rows_weigh_the_weight_gradient);
  tcase_add_test(tc, fused_trained_head_in_one_chunk);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);
  tc = tcase_create("fit");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, fit_early_stopping_restores_best);
  tcase_add_test(tc, resume_is_bit_identical);
  tcase_add_test(tc, failed_checkpoint_load_changes_nothing);
  tcase_add_test(tc, fashion_mlp_from_scratch);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
