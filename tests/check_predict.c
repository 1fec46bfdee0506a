/* SPDX-License-Identifier: MIT */
/* strop tests — predict suite (lib/train/predict.c, beside the trainer's own suite as export
 * has one): the model's saved preprocessing applied to raw inputs, eval mode, softmax, top-k
 * with source labels and names, and every way a call is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "strop/strop.h"
#include "strop/train.h"
#include "testutil.h"

/* 2x2 grey images up-sampled to 4x4 (nearest), then a 16 -> 3 linear classifier. */
static strop_model *classifier(void) {
  static const strop_test_node nodes[] = {{"flat", "flatten", NULL, NULL},
                                          {"head", "linear", "out_features=3", NULL}};
  int64_t in[3] = {1, 4, 4};
  strop_model *m = strop_test_build(3, in, nodes, 2, 5);
  /* well-separated classes: class c looks at quarter c of the image (3: none) */
  float w[48], b[3] = {0.1f, 0.0f, -0.2f};
  for (int c = 0; c < 3; c++)
    for (int p = 0; p < 16; p++) {
      int quarter = (p / 8) * 2 + (p % 4) / 2;
      w[c * 16 + p] = quarter == c ? 3.0f : -0.5f;
    }
  ck_assert_int_eq(strop_model_set_tensor(m, "head.weight", w, 48), STROP_OK);
  ck_assert_int_eq(strop_model_set_tensor(m, "head.bias", b, 3), STROP_OK);
  return m;
}

static void set_prep(strop_model *m) {
  strop_test_must(strop_model_set_meta(m, "input.shape", "[1, 2, 2]"), "shape");
  strop_test_must(strop_model_set_meta(m, "input.scale", "0.00392156862745098"), "scale");
  strop_test_must(
      strop_model_set_meta(m, "input.resize", "{\"size\": [4, 4], \"mode\": \"nearest\"}"),
      "resize");
  strop_test_must(
      strop_model_set_meta(m, "input.normalize", "{\"mean\": [0.25], \"std\": [0.5]}"),
      "normalize");
  strop_test_must(strop_model_set_meta(m, "classes",
                                       "[{\"label\": 7, \"name\": \"seven\"}, {\"label\": 3}, "
                                       "{\"label\": 9, \"name\": \"nine \\u00e9\"}]"),
                  "classes");
}

/* Raw pixels 0-255: row r lights pixel r of its 2x2 image (row 3: all dark). */
static const float RAW[4][4] = {{255, 0, 0, 0}, {0, 255, 0, 0}, {0, 0, 255, 0}, {0, 0, 0, 0}};

/* The reference: the preprocessing done by hand (nearest up-sampling duplicates each pixel into
 * a 2x2 block; scale, then (x - 0.25) / 0.5), then the model's plain forward. */
static void reference(strop_model *m, double probs[4][3]) {
  float x[4 * 16];
  for (int r = 0; r < 4; r++)
    for (int p = 0; p < 16; p++) {
      int src = (p / 8) * 2 + (p % 4) / 2;
      x[r * 16 + p] = (RAW[r][src] * (float)0.00392156862745098 - 0.25f) / 0.5f;
    }
  int64_t d[4] = {4, 1, 4, 4};
  strop_tensor *t = NULL, *y = NULL;
  ck_assert_int_eq(strop_tensor_from_data(x, 64, 4, d, &t), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, t, &y), STROP_OK);
  const float *s = strop_tensor_data_const(y);
  for (int r = 0; r < 4; r++) {
    double mx = fmax(fmax(s[r * 3], s[r * 3 + 1]), s[r * 3 + 2]), z = 0;
    for (int c = 0; c < 3; c++) z += exp(s[r * 3 + c] - mx);
    for (int c = 0; c < 3; c++) probs[r][c] = exp(s[r * 3 + c] - mx) / z;
  }
  strop_tensor_free(t);
  strop_tensor_free(y);
}

START_TEST(predict_applies_saved_preprocessing) {
  strop_model *m = classifier();
  set_prep(m);
  double want[4][3];
  reference(m, want);
  strop_tensor *x = NULL;
  int64_t d[3] = {4, 2, 2}; /* [N, 2, 2] holds [1, 2, 2] samples */
  ck_assert_int_eq(strop_tensor_from_data(&RAW[0][0], 16, 3, d, &x), STROP_OK);
  ck_assert_int_eq(strop_model_set_training(m, 1), STROP_OK);
  strop_prediction *p = NULL;
  ck_assert_int_eq(strop_model_predict(m, x, 2, &p), STROP_OK);
  ck_assert_int_eq(strop_model_is_training(m), 1); /* its mode is given back */
  ck_assert_int_eq(strop_prediction_rows(p), 4);
  ck_assert_int_eq(strop_prediction_k(p), 2);
  static const int64_t label_of[3] = {7, 3, 9};
  for (int r = 0; r < 4; r++) {
    int best = 0;
    for (int c = 1; c < 3; c++) best = want[r][c] > want[r][best] ? c : best;
    if (r < 3) ck_assert_int_eq(best, r);
    ck_assert_int_eq(strop_prediction_class(p, r, 0), best);
    ck_assert_int_eq(strop_prediction_label(p, r, 0), label_of[best]);
    for (int j = 0; j < 2; j++) {
      int64_t c = strop_prediction_class(p, r, j);
      ck_assert_double_eq_tol(strop_prediction_prob(p, r, j), want[r][c], 1e-6);
    }
    ck_assert(strop_prediction_prob(p, r, 0) >= strop_prediction_prob(p, r, 1));
    ck_assert_int_ne(strop_prediction_class(p, r, 0), strop_prediction_class(p, r, 1));
  }
  char name[32];
  ck_assert_int_eq(strop_prediction_name(p, 0, 0, name, sizeof name), 5);
  ck_assert_str_eq(name, "seven");
  ck_assert_int_eq(strop_prediction_name(p, 2, 0, name, sizeof name), 7);
  ck_assert_str_eq(name, "nine \xc3\xa9");
  strop_clear_error();
  ck_assert_int_eq(strop_prediction_name(p, 1, 0, name, sizeof name), -1); /* label 3: no name */
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "class 1 has no name"));
  strop_prediction_free(p);
  /* k beyond the classes gives all of them; a flat [N * 4] input holds the same samples */
  int64_t flat = 16;
  strop_tensor *xf = NULL;
  ck_assert_int_eq(strop_tensor_from_data(&RAW[0][0], 16, 1, &flat, &xf), STROP_OK);
  ck_assert_int_eq(strop_model_predict(m, xf, 10, &p), STROP_OK);
  ck_assert_int_eq(strop_prediction_k(p), 3);
  for (int r = 0; r < 4; r++) {
    double sum = 0;
    for (int j = 0; j < 3; j++) sum += strop_prediction_prob(p, r, j);
    ck_assert_double_eq_tol(sum, 1.0, 1e-9);
  }
  strop_prediction_free(p);
  strop_tensor_free(xf);
  strop_tensor_free(x);
  strop_model_free(m);
}
END_TEST

/* Without metadata: the model's own input shape, labels are the output indices, no names. */
START_TEST(predict_without_metadata) {
  strop_model *m = classifier();
  float x[2 * 16];
  for (int i = 0; i < 32; i++) x[i] = (float)(i % 5) - 2.0f;
  int64_t d[4] = {2, 1, 4, 4};
  strop_tensor *t = NULL, *y = NULL;
  ck_assert_int_eq(strop_tensor_from_data(x, 32, 4, d, &t), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, t, &y), STROP_OK);
  strop_prediction *p = NULL;
  ck_assert_int_eq(strop_model_predict(m, t, 1, &p), STROP_OK);
  const float *s = strop_tensor_data_const(y);
  for (int r = 0; r < 2; r++) {
    int best = 0;
    for (int c = 1; c < 3; c++) best = s[r * 3 + c] > s[r * 3 + best] ? c : best;
    ck_assert_int_eq(strop_prediction_class(p, r, 0), best);
    ck_assert_int_eq(strop_prediction_label(p, r, 0), best);
    ck_assert_int_eq(strop_prediction_name(p, r, 0, NULL, 0), -1);
  }
  strop_prediction_free(p);
  strop_tensor_free(t);
  strop_tensor_free(y);
  strop_model_free(m);
}
END_TEST

/* Bad arguments, bad inputs, bad metadata, broken weights: the right status, a sentence naming
 * what, no result, nothing leaked, the model as it was. */
START_TEST(predict_errors) {
  strop_model *m = classifier();
  set_prep(m);
  strop_tensor *x = NULL;
  int64_t d[3] = {4, 2, 2};
  ck_assert_int_eq(strop_tensor_from_data(&RAW[0][0], 16, 3, d, &x), STROP_OK);
  strop_prediction *p = NULL;
  ck_assert_int_eq(strop_model_predict(m, x, 1, &p), STROP_OK); /* warm: arena, GEMM buffers */
  strop_prediction_free(p);
  int64_t live = strop__alloc_live();
#define REFUSED(call, status, says)                                                       \
  do {                                                                                    \
    strop_clear_error();                                                                  \
    p = (strop_prediction *)1;                                                            \
    int st_ = (call);                                                                     \
    ck_assert_msg(st_ == (status), "%s: status %d (%s)", #call, st_, strop_last_error()); \
    ck_assert_msg(strstr(strop_last_error(), (says)) &&                                   \
                      strstr(strop_last_error(), "strop_model_predict: "),                \
                  "%s: '%s' lacks '%s'", #call, strop_last_error(), (says));              \
    ck_assert_ptr_null(p);                                                                \
  } while (0)
  REFUSED(strop_model_predict(NULL, x, 1, &p), STROP_E_INVALID_ARG, "model is NULL");
  REFUSED(strop_model_predict(m, NULL, 1, &p), STROP_E_INVALID_ARG, "input is NULL");
  REFUSED(strop_model_predict(m, x, 0, &p), STROP_E_INVALID_ARG, "k must be >= 1, got 0");
  ck_assert_int_eq(strop_model_predict(m, x, 1, NULL), STROP_E_INVALID_ARG);
  /* inputs */
  float bad[16];
  memcpy(bad, RAW, sizeof bad);
  bad[9] = NAN;
  strop_tensor *xn = NULL, *xs = NULL, *xd = NULL;
  ck_assert_int_eq(strop_tensor_from_data(bad, 16, 3, d, &xn), STROP_OK);
  REFUSED(strop_model_predict(m, xn, 1, &p), STROP_E_INVALID_ARG,
          "row 2 of the input holds NaN (value 1 of the row)");
  bad[9] = INFINITY;
  ck_assert_int_eq(strop_tensor_copy_from(xn, bad, 16), STROP_OK);
  REFUSED(strop_model_predict(m, xn, 1, &p), STROP_E_INVALID_ARG, "an infinity");
  int64_t five = 5, d2[2] = {2, 8};
  ck_assert_int_eq(strop_tensor_from_data(bad, 5, 1, &five, &xs), STROP_OK);
  REFUSED(
      strop_model_predict(m, xs, 1, &p), STROP_E_SHAPE,
      "the input [5] holds 5 values, not a whole number of samples of [1, 2, 2] (4 values each)");
  ck_assert_int_eq(strop_tensor_from_data(&RAW[0][0], 16, 2, d2, &xd), STROP_OK);
  REFUSED(strop_model_predict(m, xd, 1, &p), STROP_E_SHAPE,
          "holds 4 samples of [1, 2, 2] but its first dimension says 2");
  /* metadata that is not what docs/formats.md says */
  static const struct {
    const char *key, *value, *says;
  } metas[] = {
      {"input.shape", "[1, 2", "metadata 'input.shape' is not JSON"},
      {"input.shape", "[0, 2]", "'input.shape' is not a list of 1 to 7 sizes"},
      {"input.scale", "\"x\"", "'input.scale' is not a finite number"},
      {"input.resize", "{\"size\": [4]}", "'input.resize' is not {\"size\": [h, w]"},
      {"input.resize", "{\"size\": [4, 4], \"mode\": \"cubic\"}", "'input.resize'"},
      {"input.normalize", "{\"mean\": [0.1, 0.2], \"std\": [1]}", "'input.normalize' is not"},
      {"input.normalize", "{\"mean\": [], \"std\": []}", "'input.normalize' is not"},
      {"classes", "{}", "'classes' is not a list"},
      {"classes", "[{\"label\": 1}]", "'classes' lists 1 classes but its output has 3 scores"},
      {"classes", "[{\"label\": 1}, {\"label\": 2}, {\"name\": \"x\"}]", "integer labels"},
  };
  char saved[256];
  for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
    ck_assert_int_ge(strop_model_get_meta(m, metas[i].key, saved, sizeof saved), 0);
    ck_assert_int_eq(strop_model_set_meta(m, metas[i].key, metas[i].value), STROP_OK);
    REFUSED(strop_model_predict(m, x, 1, &p), STROP_E_FORMAT, metas[i].says);
    ck_assert_int_eq(strop_model_set_meta(m, metas[i].key, saved), STROP_OK);
  }
  /* a normalize of another channel count: the pipeline refuses it, the sentence says where */
  ck_assert_int_eq(
      strop_model_set_meta(m, "input.normalize", "{\"mean\": [0, 0], \"std\": [1, 1]}"),
      STROP_OK);
  REFUSED(strop_model_predict(m, x, 1, &p), STROP_E_SHAPE, "strop_batch_iter_add_normalize");
  ck_assert_int_eq(
      strop_model_set_meta(m, "input.normalize", "{\"mean\": [0.25], \"std\": [0.5]}"), STROP_OK);
  /* samples the model cannot take after the preprocessing */
  ck_assert_int_eq(strop_model_set_meta(m, "input.resize", "{\"size\": [3, 3]}"), STROP_OK);
  REFUSED(strop_model_predict(m, x, 1, &p), STROP_E_SHAPE, "[4, 1, 3, 3]");
  ck_assert_int_eq(
      strop_model_set_meta(m, "input.resize", "{\"size\": [4, 4], \"mode\": \"nearest\"}"),
      STROP_OK);
  /* broken weights */
  strop__param *w = strop__model_param_find(m, "head.bias");
  float keep = w->data[1];
  w->data[1] = NAN;
  REFUSED(strop_model_predict(m, x, 1, &p), STROP_E_NUMERIC,
          "non-finite score (nan) for row 0, class 1");
  w->data[1] = keep;
  /* not finalized; not a classifier */
  int64_t four = 4;
  strop_model *open_model = NULL, *reg = NULL;
  ck_assert_int_eq(strop_model_create(1, &four, &open_model), STROP_OK);
  REFUSED(strop_model_predict(open_model, x, 1, &p), STROP_E_STATE, "not finalized");
  static const strop_test_node seq[] = {{"emb", "linear", "out_features=6", NULL}};
  int64_t in2[2] = {3, 4};
  reg = strop_test_build(2, in2, seq, 1, 1);
  REFUSED(strop_model_predict(reg, x, 1, &p), STROP_E_UNSUPPORTED, "one score per class");
  strop_model_free(reg);
  strop_model_free(open_model);
  /* getters */
  ck_assert_int_eq(strop_prediction_rows(NULL), -1);
  ck_assert_int_eq(strop_prediction_k(NULL), -1);
  ck_assert_int_eq(strop_prediction_class(NULL, 0, 0), -1);
  ck_assert_int_eq(strop_prediction_label(NULL, 0, 0), -1);
  ck_assert(isnan(strop_prediction_prob(NULL, 0, 0)));
  ck_assert_int_eq(strop_prediction_name(NULL, 0, 0, NULL, 0), -1);
  strop_prediction_free(NULL);
  strop_prediction *ok = NULL;
  ck_assert_int_eq(strop_model_predict(m, x, 2, &ok), STROP_OK);
  ck_assert_int_eq(strop_prediction_class(ok, 4, 0), -1);
  ck_assert_int_eq(strop_prediction_class(ok, -1, 0), -1);
  ck_assert_int_eq(strop_prediction_label(ok, 0, 2), -1);
  ck_assert(isnan(strop_prediction_prob(ok, 0, -1)));
  strop_clear_error();
  ck_assert_int_eq(strop_prediction_name(ok, 0, 0, NULL, 4), -1);
  ck_assert_str_ne(strop_last_error(), "");
  ck_assert_int_eq(strop_prediction_name(ok, 9, 0, NULL, 0), -1);
  strop_prediction_free(ok);
  /* nothing leaked, the metadata as it was */
  strop_tensor_free(xn);
  strop_tensor_free(xs);
  strop_tensor_free(xd);
  ck_assert_int_eq(strop__alloc_live(), live);
  ck_assert_int_eq(strop_model_meta_count(m), 5);
  strop_tensor_free(x);
  strop_model_free(m);
#undef REFUSED
}
END_TEST

static strop_model *g_m;
static strop_tensor *g_x;
static strop_prediction *g_p;
static int op_predict(void *ctx) {
  (void)ctx;
  return strop_model_predict(g_m, g_x, 2, &g_p);
}
static void free_p(void *ctx) {
  (void)ctx;
  strop_prediction_free(g_p);
  g_p = NULL;
}

START_TEST(predict_alloc_failures) {
  g_m = classifier();
  set_prep(g_m);
  int64_t d[3] = {4, 2, 2};
  ck_assert_int_eq(strop_tensor_from_data(&RAW[0][0], 16, 3, d, &g_x), STROP_OK);
  /* warm: the forward's arena and the kernels' buffers exist before the sweep */
  ck_assert_int_eq(op_predict(NULL), STROP_OK);
  free_p(NULL);
  ck_assert_int_ge(strop_test_alloc_sweep(op_predict, free_p, NULL), 8);
  strop_tensor_free(g_x);
  strop_model_free(g_m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("predict");
  TCase *tc = tcase_create("predict");
  tcase_add_test(tc, predict_applies_saved_preprocessing);
  tcase_add_test(tc, predict_without_metadata);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, predict_errors);
  tcase_add_test(tc, predict_alloc_failures);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
