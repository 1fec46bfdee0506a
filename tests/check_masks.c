/* SPDX-License-Identifier: MIT */
/* strop tests — padding masks and sequences of any length through the public API
 * (strop_model_forward_masked, strop_trainer_step_masked / _forward_masked, datasets that carry
 * masks): a batch padded to 32 tokens, on the right or on the left, gives every sample the
 * outputs and gradients it has alone; warm steps of lengths already seen allocate nothing. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "strop/strop.h"
#include "testutil.h"

#define T_MAX 32
#define VOCAB 20
#define CLASSES 5
#define N_SAMPLES 4
static const int64_t LENS[N_SAMPLES] = {7, 12, 3, 20};

/* ids of sample s, position t (1..VOCAB-1; 0 is the padding id) */
static float token(int s, int64_t t) { return (float)(1 + (s * 7 + t * 3) % (VOCAB - 1)); }

/* embedding, positions over the mask, a transformer block, and a head: per token (lm = 1:
 * [T, CLASSES]) or pooled (which = "mean" / "first" / "last": [CLASSES]) */
static strop_model *seq_model(int causal, const char *pool, int64_t t_max) {
  char blk[160], pos[96];
  snprintf(blk, sizeof blk, "embed_dim=8 num_heads=2 dim_feedforward=16 causal=%s",
           causal ? "true" : "false");
  snprintf(pos, sizeof pos, "num_embeddings=%lld positions=mask", (long long)t_max);
  strop_test_node nodes[6] = {
      {"emb", "embedding", "num_embeddings=20 embedding_dim=8", NULL},
      {"pos", "positional_embedding", pos, NULL},
      {"blk", "transformer_block", blk, NULL},
      {"pool",
       !pool                   ? "layernorm"
       : !strcmp(pool, "mean") ? "mean_pool"
                               : "token_pool",
       !pool                    ? "normalized_shape=8"
       : !strcmp(pool, "first") ? "which=first"
       : !strcmp(pool, "last")  ? "which=last"
                                : NULL,
       NULL},
      {"head", "linear", "out_features=5", NULL},
  };
  const int64_t shape[1] = {t_max};
  return strop_test_build(1, shape, nodes, 5, 11);
}

static strop_tensor *tensor(int rank, const int64_t *dims) {
  strop_tensor *t = NULL;
  strop_test_must(strop_tensor_create(rank, dims, &t), "tensor");
  return t;
}

/* sample s alone: [1, LENS[s]] */
static strop_tensor *alone(int s) {
  const int64_t d[2] = {1, LENS[s]};
  strop_tensor *t = tensor(2, d);
  for (int64_t i = 0; i < LENS[s]; i++) strop_tensor_data(t)[i] = token(s, i);
  return t;
}

/* the first position of sample s in a batch padded to T_MAX (left: at the end) */
static int64_t start_of(int s, int left) { return left ? T_MAX - LENS[s] : 0; }

/* all samples padded to T_MAX, and their mask */
static void padded(int left, strop_tensor **ids, strop_tensor **mask) {
  const int64_t d[2] = {N_SAMPLES, T_MAX};
  *ids = tensor(2, d);
  *mask = tensor(2, d);
  float *x = strop_tensor_data(*ids), *m = strop_tensor_data(*mask);
  memset(x, 0, N_SAMPLES * T_MAX * sizeof *x);
  memset(m, 0, N_SAMPLES * T_MAX * sizeof *m);
  for (int s = 0; s < N_SAMPLES; s++)
    for (int64_t i = 0; i < LENS[s]; i++) {
      x[s * T_MAX + start_of(s, left) + i] = token(s, i);
      m[s * T_MAX + start_of(s, left) + i] = 1.0f;
    }
}

static void expect_near(const float *a, const float *b, size_t n, double tol, const char *what) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(fabs((double)a[i] - b[i]) <= tol * (1.0 + fabs((double)b[i])),
                  "%s[%zu]: %.8g vs %.8g alone", what, i, (double)a[i], (double)b[i]);
}

/* Per-token outputs: sample s of the padded batch at its tokens == sample s alone. */
static void check_forward(int causal, int left) {
  strop_model *m = seq_model(causal, NULL, T_MAX);
  strop_tensor *ids, *mask, *out = NULL;
  padded(left, &ids, &mask);
  strop_test_must(strop_model_forward_masked(m, ids, mask, &out), "padded forward");
  ck_assert_int_eq(strop_tensor_dim(out, 1), T_MAX);
  for (int s = 0; s < N_SAMPLES; s++) {
    strop_tensor *x = alone(s), *y = NULL;
    strop_test_must(strop_model_forward(m, x, &y), "alone");
    ck_assert_int_eq(strop_tensor_dim(y, 1), LENS[s]);
    const float *row = strop_tensor_data(out) + (s * T_MAX + start_of(s, left)) * CLASSES;
    expect_near(row, strop_tensor_data(y), (size_t)(LENS[s] * CLASSES), 2e-5, "output");
    strop_tensor_free(x);
    strop_tensor_free(y);
  }
  strop_tensor_free(out);
  strop_tensor_free(ids);
  strop_tensor_free(mask);
  strop_model_free(m);
}

START_TEST(padded_outputs) {
  for (int causal = 0; causal < 2; causal++)
    for (int left = 0; left < 2; left++) check_forward(causal, left);
}
END_TEST

/* Pooled outputs ([CLASSES] per sample) of mean_pool and token_pool. */
START_TEST(padded_pooled_outputs) {
  static const char *const pools[] = {"mean", "first", "last"};
  for (int k = 0; k < 3; k++)
    for (int left = 0; left < 2; left++) {
      strop_model *m = seq_model(k == 2, pools[k], T_MAX);
      strop_tensor *ids, *mask, *out = NULL;
      padded(left, &ids, &mask);
      strop_test_must(strop_model_forward_masked(m, ids, mask, &out), "padded forward");
      for (int s = 0; s < N_SAMPLES; s++) {
        strop_tensor *x = alone(s), *y = NULL;
        strop_test_must(strop_model_forward(m, x, &y), "alone");
        expect_near(strop_tensor_data(out) + s * CLASSES, strop_tensor_data(y), CLASSES, 2e-5,
                    pools[k]);
        strop_tensor_free(x);
        strop_tensor_free(y);
      }
      strop_tensor_free(out);
      strop_tensor_free(ids);
      strop_tensor_free(mask);
      strop_model_free(m);
    }
}
END_TEST

/* d loss / d output: fixed values at tokens, 0 at padding (a loss over the tokens only) */
static float dout_at(int s, int64_t i, int c) { return 0.1f * sinf((float)(s * 31 + i * 5 + c)); }

typedef struct rig {
  strop_model *m;
  strop_optimizer *opt;
  strop_trainer *tr;
} rig;

static rig make_rig(int causal, int accum) {
  rig r;
  r.m = seq_model(causal, NULL, T_MAX);
  strop_test_must(strop_optimizer_create(r.m, STROP_OPTIM_SGD, &r.opt), "optimizer");
  strop_test_must(strop_trainer_create(r.m, r.opt, &r.tr), "trainer");
  strop_test_must(strop_trainer_set_int(r.tr, STROP_TRAIN_ACCUM_STEPS, accum), "accum");
  return r;
}

static void free_rig(rig *r) {
  strop_trainer_free(r->tr);
  strop_optimizer_free(r->opt);
  strop_model_free(r->m);
}

/* Every parameter gradient of the padded batch (a loss over its tokens) equals the sum of the
 * samples' gradients alone. */
static void check_gradients(int causal, int left) {
  rig a = make_rig(causal, N_SAMPLES), b = make_rig(causal, 1);
  /* alone, accumulated over N_SAMPLES micro-batches: the trainer divides each dout by
   * N_SAMPLES, so the batch below gets its dout divided the same way */
  for (int s = 0; s < N_SAMPLES; s++) {
    strop_tensor *x = alone(s), *out = NULL, *dout = NULL;
    strop_test_must(strop_trainer_forward(a.tr, x, &out), "alone forward");
    strop_test_must(strop_tensor_copy(out, &dout), "copy");
    for (int64_t i = 0; i < LENS[s]; i++)
      for (int c = 0; c < CLASSES; c++)
        strop_tensor_data(dout)[i * CLASSES + c] = dout_at(s, i, c);
    strop_test_must(strop_trainer_backward(a.tr, dout), "alone backward");
    strop_tensor_free(x);
    strop_tensor_free(out);
    strop_tensor_free(dout);
  }
  strop_tensor *ids, *mask, *out = NULL, *dout = NULL;
  padded(left, &ids, &mask);
  strop_test_must(strop_trainer_forward_masked(b.tr, ids, mask, &out), "padded forward");
  strop_test_must(strop_tensor_copy(out, &dout), "copy");
  float *d = strop_tensor_data(dout);
  memset(d, 0, (size_t)strop_tensor_numel(dout) * sizeof *d);
  for (int s = 0; s < N_SAMPLES; s++)
    for (int64_t i = 0; i < LENS[s]; i++)
      for (int c = 0; c < CLASSES; c++)
        d[(s * T_MAX + start_of(s, left) + i) * CLASSES + c] = dout_at(s, i, c) / N_SAMPLES;
  strop_test_must(strop_trainer_backward(b.tr, dout), "padded backward");
  int checked = 0;
  for (int64_t i = 0; i < strop_model_num_tensors(a.m); i++) {
    char name[128];
    strop_model_tensor_name(a.m, i, name, sizeof name);
    strop_tensor *v = NULL;
    strop_test_must(strop_model_tensor_view(a.m, name, &v), name);
    size_t n = (size_t)strop_tensor_numel(v);
    strop_tensor_free(v);
    float *ga = malloc(n * sizeof *ga), *gb = malloc(n * sizeof *gb);
    strop_test_must(strop_model_get_grad(a.m, name, ga, n), name);
    strop_test_must(strop_model_get_grad(b.m, name, gb, n), name);
    double top = 1e-6;
    for (size_t k = 0; k < n; k++) top = fmax(top, fabs((double)ga[k]));
    for (size_t k = 0; k < n; k++)
      ck_assert_msg(fabs((double)gb[k] - ga[k]) <= 1e-4 * top,
                    "%s %s: grad %s[%zu] %.8g in "
                    "the batch, %.8g alone",
                    causal ? "causal" : "bidirectional", left ? "left" : "right", name, k,
                    (double)gb[k], (double)ga[k]);
    free(ga);
    free(gb);
    checked++;
  }
  ck_assert_int_ge(checked, 14);
  strop_tensor_free(out);
  strop_tensor_free(dout);
  strop_tensor_free(ids);
  strop_tensor_free(mask);
  free_rig(&a);
  free_rig(&b);
}

START_TEST(padded_gradients) {
  for (int causal = 0; causal < 2; causal++)
    for (int left = 0; left < 2; left++) check_gradients(causal, left);
}
END_TEST

/* A language model's step on batches of different lengths (targets -100 at padding): warm
 * steps of lengths already seen make no heap allocation; an unseen longer one may. */
START_TEST(variable_length_steps) {
  rig r = make_rig(1, 1);
  strop_test_must(strop_optimizer_set_float(r.opt, STROP_OPT_LR, 0.01f), "lr");
  static const int64_t lens[] = {32, 9, 17, 9, 32, 17};
  strop_tensor *x[6], *y[6], *mk[6];
  for (int k = 0; k < 6; k++) {
    const int64_t d[2] = {3, lens[k]};
    x[k] = tensor(2, d);
    y[k] = tensor(2, d);
    mk[k] = tensor(2, d);
    for (int64_t i = 0; i < 3 * lens[k]; i++) {
      const int64_t t = i % lens[k];
      const int pad = (i / lens[k] == 1) && t >= lens[k] - 2; /* sample 1: 2 padded */
      strop_tensor_data(x[k])[i] = pad ? 0.0f : token((int)(i / lens[k]), t);
      strop_tensor_data(mk[k])[i] = pad ? 0.0f : 1.0f;
      strop_tensor_data(y[k])[i] = pad ? -100.0f : (float)((i * 3) % CLASSES);
    }
  }
  int64_t before = 0;
  for (int k = 0; k < 6; k++) {
    if (k == 3) before = strop__alloc_count();
    float loss = NAN;
    strop_test_must(strop_trainer_step_masked(r.tr, x[k], mk[k], y[k], &loss), "step");
    ck_assert(isfinite(loss));
  }
  ck_assert_msg(strop__alloc_count() == before, "warm steps made %lld heap allocations",
                (long long)(strop__alloc_count() - before));
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 6);
  for (int k = 0; k < 6; k++) {
    strop_tensor_free(x[k]);
    strop_tensor_free(y[k]);
    strop_tensor_free(mk[k]);
  }
  free_rig(&r);
}
END_TEST

/* A dataset that carries masks gives its batches' masks to fit and eval: evaluating the
 * padded data equals evaluating each sample alone. */
START_TEST(dataset_masks) {
  rig r = make_rig(0, 1);
  strop_model_free(r.m); /* a pooled classifier instead */
  strop_trainer_free(r.tr);
  strop_optimizer_free(r.opt);
  r.m = seq_model(0, "mean", T_MAX);
  strop_test_must(strop_optimizer_create(r.m, STROP_OPTIM_SGD, &r.opt), "optimizer");
  strop_test_must(strop_trainer_create(r.m, r.opt, &r.tr), "trainer");
  strop_tensor *ids, *mask;
  padded(1, &ids, &mask);
  const float labels[N_SAMPLES] = {0, 3, 1, 4};
  const int64_t in_dims[1] = {T_MAX};
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(strop_tensor_data(ids), labels, N_SAMPLES, 1, in_dims,
                                            0, NULL, CLASSES, &ds),
                  "dataset");
  ck_assert_int_eq(strop_dataset_has_mask(ds), 0);
  strop_test_must(strop_dataset_set_mask(ds, strop_tensor_data(mask), N_SAMPLES * T_MAX), "mask");
  ck_assert_int_eq(strop_dataset_has_mask(ds), 1);
  /* the iterator's batches carry their rows' masks, shuffled with them */
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 3, 7, STROP_ITER_SHUFFLE, &it), "iter");
  ck_assert_ptr_null(strop_batch_iter_mask(it));
  strop_tensor *bx = NULL, *by = NULL;
  int64_t rows = 0;
  strop_test_must(strop_batch_iter_next(it, &bx, &by, &rows), "next");
  const strop_tensor *bm = strop_batch_iter_mask(it);
  ck_assert_ptr_nonnull(bm);
  ck_assert_int_eq(strop_tensor_dim(bm, 0), 3);
  ck_assert_int_eq(strop_tensor_dim(bm, 1), T_MAX);
  for (int64_t i = 0; i < 3 * T_MAX; i++)
    ck_assert((strop_tensor_data_const(bm)[i] != 0.0f) == (strop_tensor_data(bx)[i] != 0.0f));
  strop_batch_iter_free(it);
  /* eval over the masked data == the loss of each sample alone */
  strop_metrics *mt = NULL;
  strop_test_must(strop_trainer_eval_dataset(r.tr, ds, 2, &mt), "eval");
  double want = 0.0;
  for (int s = 0; s < N_SAMPLES; s++) {
    strop_tensor *x = alone(s), *y = NULL;
    strop_test_must(strop_model_forward(r.m, x, &y), "alone");
    const float *z = strop_tensor_data(y);
    double mx = z[0], se = 0;
    for (int c = 1; c < CLASSES; c++) mx = fmax(mx, z[c]);
    for (int c = 0; c < CLASSES; c++) se += exp(z[c] - mx);
    want += (log(se) + mx - z[(int)labels[s]]) / N_SAMPLES;
    strop_tensor_free(x);
    strop_tensor_free(y);
  }
  ck_assert_msg(fabs(strop_metrics_get(mt, STROP_METRIC_LOSS) - want) < 1e-5,
                "eval loss %.8g, "
                "alone %.8g",
                strop_metrics_get(mt, STROP_METRIC_LOSS), want);
  strop_metrics_free(mt);
  /* and fit trains on it */
  strop_batch_iter *train = NULL;
  strop_test_must(strop_batch_iter_create(ds, 2, 3, STROP_ITER_SHUFFLE, &train), "iter");
  strop_fit_options fo;
  strop_fit_options_init(&fo);
  fo.epochs = 2;
  strop_test_must(strop_trainer_fit(r.tr, train, NULL, &fo), "fit");
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 4);
  strop_batch_iter_free(train);
  /* a view shares the masks; masks go with the dataset they were set on */
  strop_dataset *sub = NULL;
  const int64_t pick[2] = {2, 0};
  strop_test_must(strop_dataset_subset(ds, pick, 2, &sub), "subset");
  ck_assert_int_eq(strop_dataset_has_mask(sub), 1);
  ck_assert_int_eq(strop_dataset_set_mask(sub, strop_tensor_data(mask), 2 * T_MAX),
                   STROP_E_INVALID_ARG);
  ck_assert(strstr(strop_last_error(), "view"));
  strop_dataset_free(sub);
  strop_test_must(strop_dataset_set_mask(ds, NULL, 0), "remove");
  ck_assert_int_eq(strop_dataset_has_mask(ds), 0);
  strop_dataset_free(ds);
  strop_tensor_free(ids);
  strop_tensor_free(mask);
  free_rig(&r);
}
END_TEST

/* ---- errors: bad arguments leave a sentence and change nothing ---- */

START_TEST(errors) {
  rig r = make_rig(0, 1);
  strop_tensor *ids, *mask, *out = (strop_tensor *)1;
  padded(0, &ids, &mask);
  /* NULLs */
  ck_assert_int_eq(strop_model_forward_masked(NULL, ids, mask, &out), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(out);
  ck_assert_int_eq(strop_model_forward_masked(r.m, ids, mask, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_step_masked(r.tr, NULL, mask, ids, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_trainer_forward_masked(r.tr, ids, mask, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_ne(strlen(strop_last_error()), 0);
  /* a mask of the wrong shape */
  const int64_t d[2] = {N_SAMPLES, T_MAX - 1};
  strop_tensor *short_mask = tensor(2, d);
  for (int64_t i = 0; i < strop_tensor_numel(short_mask); i++)
    strop_tensor_data(short_mask)[i] = 1;
  ck_assert_int_eq(strop_model_forward_masked(r.m, ids, short_mask, &out), STROP_E_SHAPE);
  ck_assert_msg(strstr(strop_last_error(), "strop_model_forward_masked") &&
                    strstr(strop_last_error(), "[4, 31]") &&
                    strstr(strop_last_error(), "[4, 32]"),
                "%s", strop_last_error());
  ck_assert_int_eq(strop_trainer_forward_masked(r.tr, ids, short_mask, &out), STROP_E_SHAPE);
  ck_assert(strstr(strop_last_error(), "strop_trainer_forward_masked"));
  /* a value other than 0 and 1 */
  strop_tensor_data(mask)[5] = 0.5f;
  ck_assert_int_eq(strop_model_forward_masked(r.m, ids, mask, &out), STROP_E_INVALID_ARG);
  ck_assert_msg(strstr(strop_last_error(), "0.5") && strstr(strop_last_error(), "position 5"),
                "%s", strop_last_error());
  const int64_t yd[2] = {N_SAMPLES, T_MAX};
  strop_tensor *y = tensor(2, yd);
  memset(strop_tensor_data(y), 0, sizeof(float) * N_SAMPLES * T_MAX);
  ck_assert_int_eq(strop_trainer_step_masked(r.tr, ids, mask, y, NULL), STROP_E_INVALID_ARG);
  strop_tensor_data(mask)[5] = 1.0f;
  /* longer than the position embeddings cover: the layer is named */
  const int64_t ld[2] = {1, T_MAX + 1};
  strop_tensor *too_long = tensor(2, ld);
  memset(strop_tensor_data(too_long), 0, sizeof(float) * (T_MAX + 1));
  ck_assert_int_eq(strop_model_forward(r.m, too_long, &out), STROP_E_SHAPE);
  ck_assert_msg(strstr(strop_last_error(), "'pos'") && strstr(strop_last_error(), "33"), "%s",
                strop_last_error());
  const int64_t ly[2] = {1, T_MAX + 1};
  strop_tensor *ylong = tensor(2, ly);
  memset(strop_tensor_data(ylong), 0, sizeof(float) * (T_MAX + 1));
  ck_assert_int_eq(strop_trainer_step(r.tr, too_long, ylong, NULL), STROP_E_SHAPE);
  ck_assert_msg(
      strstr(strop_last_error(), "strop_trainer_step") && strstr(strop_last_error(), "'pos'"),
      "%s", strop_last_error());
  /* targets of another length than the batch's output */
  ck_assert_int_eq(strop_trainer_step_masked(r.tr, ids, mask, ylong, NULL), STROP_E_SHAPE);
  ck_assert_int_eq(strop_trainer_global_step(r.tr), 0);
  /* datasets */
  ck_assert_int_eq(strop_dataset_set_mask(NULL, NULL, 0), STROP_E_INVALID_ARG);
  const int64_t in_dims[1] = {T_MAX};
  const float labels[N_SAMPLES] = {0, 1, 2, 3};
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(strop_tensor_data(ids), labels, N_SAMPLES, 1, in_dims,
                                            0, NULL, CLASSES, &ds),
                  "dataset");
  ck_assert_int_eq(strop_dataset_set_mask(ds, strop_tensor_data(mask), 7), STROP_E_SHAPE);
  ck_assert(strstr(strop_last_error(), "128"));
  strop_tensor_data(mask)[3] = 2.0f;
  ck_assert_int_eq(strop_dataset_set_mask(ds, strop_tensor_data(mask), 128), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_has_mask(ds), 0);
  ck_assert_int_eq(strop_dataset_has_mask(NULL), 0);
  ck_assert_ptr_null(strop_batch_iter_mask(NULL));
  strop_dataset_free(ds);
  strop_tensor_free(too_long);
  strop_tensor_free(ylong);
  strop_tensor_free(short_mask);
  strop_tensor_free(y);
  strop_tensor_free(ids);
  strop_tensor_free(mask);
  free_rig(&r);
}
END_TEST

/* A layer whose sequence is not the input's (a class token prepended) refuses the mask. */
START_TEST(errors_mask_length) {
  const int64_t shape[2] = {4, 8};
  strop_test_node nodes[2] = {{"pad", "reshape", "shape=[8, 4]", NULL},
                              {"attn", "multihead_attention", "num_heads=2", NULL}};
  strop_model *m = strop_test_build(2, shape, nodes, 2, 1);
  const int64_t xd[3] = {1, 4, 8}, md[2] = {1, 4};
  strop_tensor *x = tensor(3, xd), *mk = tensor(2, md), *out = NULL;
  memset(strop_tensor_data(x), 0, 32 * sizeof(float));
  for (int i = 0; i < 4; i++) strop_tensor_data(mk)[i] = 1.0f;
  ck_assert_int_eq(strop_model_forward_masked(m, x, mk, &out), STROP_E_SHAPE);
  ck_assert_msg(strstr(strop_last_error(), "'attn'") && strstr(strop_last_error(), "4 positions"),
                "%s", strop_last_error());
  strop_tensor_free(x);
  strop_tensor_free(mk);
  strop_model_free(m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("masks");
  TCase *tc = tcase_create("padding");
  tcase_add_test(tc, padded_outputs);
  tcase_add_test(tc, padded_pooled_outputs);
  tcase_add_test(tc, padded_gradients);
  suite_add_tcase(s, tc);
  tc = tcase_create("lengths");
  tcase_add_test(tc, variable_length_steps);
  suite_add_tcase(s, tc);
  tc = tcase_create("data");
  tcase_add_test(tc, dataset_masks);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, errors);
  tcase_add_test(tc, errors_mask_length);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
