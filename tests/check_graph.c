/* SPDX-License-Identifier: MIT */
/* strop tests — graph suite: building DAGs, finalize errors, forward/backward over the DAG,
 * the allocation-free warm step, the frozen-trunk backward stop, clone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "graph/graph.h"
#include "harness.h"
#include "ops/conv.h"
#include "ops/norm.h"
#include "strop/strop.h"
#include "testutil.h"

static strop_model *mlp(void) {
  int64_t in[1] = {4};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "out_features=8", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=3", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 7), STROP_OK);
  return m;
}

START_TEST(build_mlp) {
  strop_model *m = mlp();
  int64_t d[4];
  ck_assert_int_eq(strop_model_output_shape(m, d, 4), 1);
  ck_assert_int_eq(d[0], 3);
  ck_assert_int_eq(strop_model_num_nodes(m), 3);
  ck_assert_int_eq(strop_model_num_tensors(m), 4);
  char name[64];
  ck_assert_int_eq(strop_model_tensor_name(m, 0, name, sizeof name), 10);
  ck_assert_str_eq(name, "fc1.weight");
  ck_assert_int_eq(strop_model_tensor_name(m, 3, name, sizeof name), 9);
  ck_assert_str_eq(name, "head.bias");
  ck_assert_int_eq(strop_model_param_count(m, 0), 4 * 8 + 8 + 8 * 3 + 3);
  strop_tensor *w = NULL;
  ck_assert_int_eq(strop_model_tensor_view(m, "fc1.weight", &w), STROP_OK);
  ck_assert_int_eq(strop_tensor_dim(w, 0), 8); /* PyTorch layout [out, in] */
  ck_assert_int_eq(strop_tensor_dim(w, 1), 4);
  /* PyTorch's default init: U(-1/sqrt(in), 1/sqrt(in)) */
  const float *wd = strop_tensor_data(w);
  float lo = 1, hi = -1;
  for (int i = 0; i < 32; i++) {
    lo = fminf(lo, wd[i]);
    hi = fmaxf(hi, wd[i]);
  }
  ck_assert(lo >= -0.5f && hi <= 0.5f && hi - lo > 0.3f);
  strop_tensor_free(w);
  ck_assert_int_eq(strop_model_node_info(m, 1, 1, name, sizeof name), 4);
  ck_assert_str_eq(name, "relu");
  strop_model_free(m);
}
END_TEST

START_TEST(forward_matches_manual) {
  strop_model *m = mlp();
  float x[2 * 4] = {0.5f, -1, 2, 0.25f, -0.5f, 1, 0, 3};
  int64_t dims[2] = {2, 4};
  strop_tensor *in = NULL, *out = NULL;
  ck_assert_int_eq(strop_tensor_from_data(x, 8, 2, dims, &in), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, in, &out), STROP_OK);
  ck_assert_int_eq(strop_tensor_dim(out, 0), 2);
  ck_assert_int_eq(strop_tensor_dim(out, 1), 3);
  /* recompute by hand from the parameters */
  strop__param *w1 = strop__model_param_find(m, "fc1.weight"),
               *b1 = strop__model_param_find(m, "fc1.bias");
  strop__param *w2 = strop__model_param_find(m, "head.weight"),
               *b2 = strop__model_param_find(m, "head.bias");
  for (int n = 0; n < 2; n++) {
    float h[8];
    for (int j = 0; j < 8; j++) {
      double s = b1->data[j];
      for (int k = 0; k < 4; k++) s += (double)w1->data[j * 4 + k] * x[n * 4 + k];
      h[j] = s > 0 ? (float)s : 0.0f;
    }
    for (int j = 0; j < 3; j++) {
      double s = b2->data[j];
      for (int k = 0; k < 8; k++) s += (double)w2->data[j * 8 + k] * h[k];
      ck_assert_double_eq_tol(strop_tensor_data(out)[n * 3 + j], s, 1e-5);
    }
  }
  strop_tensor_free(out);
  /* NaN propagates, no crash */
  strop_tensor_data(in)[0] = NAN;
  ck_assert_int_eq(strop_model_forward(m, in, &out), STROP_OK);
  ck_assert(isnan(strop_tensor_data(out)[0]));
  strop_tensor_free(out);
  strop_tensor_free(in);
  strop_model_free(m);
}
END_TEST

START_TEST(build_errors) {
  int64_t in[1] = {4};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "out_features=8", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "out_features=8", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "already exists"));
  ck_assert_int_eq(strop_model_add(m, "x", "linaer", NULL, NULL), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "unknown type 'linaer'"));
  ck_assert_int_eq(strop_model_add(m, "x", "linear", "out_feature=3", NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "option 'out_feature': unknown option "
                                                   "(expected one of: in_features, out_features, "
                                                   "bias, weight_layout)"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "layer 'x'"));
  ck_assert_int_eq(strop_model_add(m, "x", "linear", "out_features=-3", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "out_features"));
  ck_assert_int_eq(strop_model_add(m, "x", "linear", "out_features", NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_add(m, "bad name", "relu", NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_add(NULL, "a", "relu", NULL, NULL), STROP_E_INVALID_ARG);
  /* an empty name in the inputs list ("a,,b" was "a,b"; ",,," the previous node) */
  static const char *const holes[] = {",,,", "fc1,,fc1", "fc1,", ",fc1", "fc1, ,fc1"};
  for (size_t i = 0; i < sizeof holes / sizeof holes[0]; i++) {
    ck_assert_int_eq(strop_model_add(m, "y", "add", NULL, holes[i]), STROP_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "has an empty name between commas"));
  }
  ck_assert_int_eq(strop_model_num_nodes(m), 1); /* failed adds left it unchanged */
  /* a sample of rank 8 leaves no room for the batch axis: refused at create */
  const int64_t eight[8] = {1, 1, 1, 1, 1, 1, 1, 2};
  strop_model *m8 = (strop_model *)1;
  ck_assert_int_eq(strop_model_create(8, eight, &m8), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "no room for the batch axis"));
  ck_assert_ptr_null(m8);
  strop_tensor *o = NULL;
  strop_tensor *x = NULL;
  int64_t xd[2] = {1, 4};
  ck_assert_int_eq(strop_tensor_create(2, xd, &x), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, x, &o), STROP_E_STATE);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "y", "relu", NULL, NULL), STROP_E_STATE);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_E_STATE);
  int64_t bd[2] = {1, 5};
  strop_tensor *bad = NULL;
  ck_assert_int_eq(strop_tensor_create(2, bd, &bad), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, bad, &o), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "[1, 5]"));
  ck_assert_ptr_null(o);
  strop_tensor_free(bad);
  strop_tensor_free(x);
  strop_model_free(m);
}
END_TEST

START_TEST(finalize_errors) {
  int64_t in[1] = {4};
  strop_model *m = NULL;
  /* unknown input */
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "a", "relu", NULL, "nowhere"), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "unknown input 'nowhere'"));
  strop_model_free(m);
  /* cycle */
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "a", "relu", NULL, "b"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "b", "relu", NULL, "a"), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "cycle"));
  strop_model_free(m);
  /* shape mismatch in add */
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "a", "linear", "out_features=8", "input"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "b", "linear", "out_features=3", "input"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "sum", "add", NULL, "a,b"), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "sum"));
  strop_model_free(m);
  /* no nodes */
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 0), STROP_E_INVALID_ARG);
  strop_model_free(m);
}
END_TEST

/* A residual DAG given out of order: the graph sorts it. */
static strop_model *residual(void) {
  int64_t in[1] = {6};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "sum", "add", NULL, "input,block.act"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "block.fc", "linear", "out_features=6", "input"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "block.act", "tanh", NULL, "block.fc"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=2", "sum"), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 3), STROP_OK);
  return m;
}

START_TEST(dag_gradcheck) {
  strop_model *m = residual();
  char name[32];
  strop_model_node_info(m, 0, 0, name, sizeof name);
  ck_assert_str_eq(name, "block.fc"); /* topological order */
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.tol = 1e-2; /* float32 central differences, eps 1e-3 */
  strop_test_gradcheck(m, 3, 11, &o);
  strop_model_free(m);
  m = mlp();
  strop_test_gradcheck(m, 4, 12, &o);
  strop_model_free(m);
}
END_TEST

START_TEST(warm_step_allocates_nothing) {
  strop_model *m = residual();
  float x[16 * 6], dout[16 * 2];
  for (int i = 0; i < 16 * 6; i++) x[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
  for (int i = 0; i < 32; i++) dout[i] = 0.1f;
  const strop__act *o;
  for (int step = 0; step < 3; step++) {
    int64_t before = strop__alloc_count();
    ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
    ck_assert_int_eq(strop__model_forward_exec(m, x, 16, 1, NULL, &o), STROP_OK);
    ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
    strop__model_step_end(m);
    if (step >= 1)
      ck_assert_msg(strop__alloc_count() == before, "step %d made %lld heap allocations", step,
                    (long long)(strop__alloc_count() - before));
  }
  strop_model_free(m);
}
END_TEST

START_TEST(frozen_trunk_stops_backward) {
  strop_model *m = mlp();
  for (int i = 0; i < m->n_params; i++)
    if (strncmp(m->params[i]->name, "head.", 5) != 0) m->params[i]->trainable = 0;
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dout[6] = {1, 1, 1, 1, 1, 1};
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_int_eq(strop__model_forward_exec(m, x, 2, 1, NULL, &o), STROP_OK);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  ck_assert_int_eq(m->nodes[0].needs_backward, 0);
  ck_assert_int_eq(m->nodes[1].needs_backward, 0);
  ck_assert_int_eq(m->nodes[2].needs_backward, 1);
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.weight")->grad); /* no memory for it */
  ck_assert_ptr_nonnull(strop__model_param_find(m, "head.weight")->grad);
  ck_assert_ptr_null(m->grads[1]); /* the trunk's activations got no gradient buffer */
  strop__model_step_end(m);
  ck_assert_int_eq(strop_model_param_count(m, 1), 8 * 3 + 3);
  strop_model_free(m);
}
END_TEST

/* A frozen trunk's activations are dead once read: the forward reuses their memory (and the
 * trunk's scratch), keeping only what a backward reads, so the step's arena is a fraction of
 * a fully trainable one's; the output and the head's gradient are the same bits. Unfreezing
 * a trunk parameter between forward and backward is refused, not computed from reused
 * memory. */
static strop_model *deep_mlp(void) {
  int64_t in[1] = {64};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  for (int i = 0; i < 12; i++) {
    char name[32];
    snprintf(name, sizeof name, "trunk.%d", 2 * i);
    ck_assert_int_eq(strop_model_add(m, name, "linear", "out_features=64", NULL), STROP_OK);
    snprintf(name, sizeof name, "trunk.%d", 2 * i + 1);
    ck_assert_int_eq(strop_model_add(m, name, "tanh", NULL, NULL), STROP_OK);
  }
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=3", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 5), STROP_OK);
  return m;
}

static size_t step_peak(strop_model *m, const float *x, const float *dout, float *out,
                        float *head_grad) {
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  const size_t before = m->arena.peak;
  m->arena.peak = 0;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 32, 1, NULL, &o), STROP_OK);
  memcpy(out, o->data, 32 * 3 * sizeof *out);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  const size_t peak = (m->arena.peak > m->arena.used_total ? m->arena.peak
                                                           : m->arena.used_total) +
                      m->plan_bytes; /* the arena's and the planned region's */
  memcpy(head_grad, strop__model_param_find(m, "head.weight")->grad, 3 * 64 * sizeof(float));
  strop__model_step_end(m);
  if (before > m->arena.peak) m->arena.peak = before;
  return peak;
}

START_TEST(frozen_trunk_keeps_only_live_activations) {
  static float x[32 * 64], dout[32 * 3];
  float out_full[96], out_frozen[96], g_full[192], g_frozen[192];
  for (int i = 0; i < 32 * 64; i++) x[i] = sinf(0.1f * (float)i);
  for (int i = 0; i < 96; i++) dout[i] = cosf((float)i);
  strop_model *m = deep_mlp();
  const size_t full = step_peak(m, x, dout, out_full, g_full);
  strop_test_must(strop_model_freeze(m, "trunk.*"), "freeze");
  const size_t frozen = step_peak(m, x, dout, out_frozen, g_frozen);
  ck_assert_msg(frozen * 3 < full, "frozen trunk step used %zu bytes of arena, full %zu", frozen,
                full);
  ck_assert(memcmp(out_full, out_frozen, sizeof out_full) == 0);
  ck_assert(memcmp(g_full, g_frozen, sizeof g_full) == 0);
  /* the trunk's activations are gone: its backward cannot run on them */
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_int_eq(strop__model_forward_exec(m, x, 32, 1, NULL, &o), STROP_OK);
  strop__model_param_find(m, "trunk.20.weight")->trainable = 1;
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "trunk.20"));
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* A batch norm computes the relu after it (layers/batchnorm.c: the norm's output is never
 * stored; run apart, the relu writes over its input: the norm's backward does not read its own
 * output, and relu's backward reads only relu's), a batch norm computes the residual sum after
 * it and the sum's relu (neither the norm's output nor the sum stored; a relu whose only
 * reader is a max-pool runs with it instead when no sum takes it: ResNet's stem, layers_conv),
 * a sum's inputs are not kept for backwards that
 * never read them, the convolution gives its columns back, and the backward hands dead
 * activations to the gradients: a conv-bn-relu-residual stack's forward takes under 6
 * full-size activations (over 6 with every one kept), and the output and every gradient are
 * the same bits as with every activation kept (keep_all, the former layout) and as with every
 * layer run by itself (no_fusion). */
static size_t conv_stack_step(strop_model *m, const float *x, const float *dout, float *out,
                              float *grads) {
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  const size_t before = m->arena.used_total;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 4, 1, NULL, &o), STROP_OK);
  const size_t used = m->arena.used_total - before;
  memcpy(out, o->data, 12 * sizeof *out);
  if (!m->keep_all) {
    if (!m->no_fusion) {
      ck_assert_ptr_null(m->acts[1].data); /* b1 computes r1 (layers/batchnorm.c) */
      ck_assert_ptr_null(m->acts[4].data); /* b2 computes s and r2 (layers/batchnorm.c): */
      ck_assert_ptr_null(m->acts[5].data); /* neither the norm nor the sum stored */
      ck_assert_int_eq(m->nodes[4].fused, 2);
    } else {
      ck_assert_ptr_eq(m->acts[1].data, m->acts[2].data);    /* b1 -> r1 in place */
      ck_assert_ptr_eq(m->acts[5].data, m->acts[6].data);    /* s -> r2 in place */
      ck_assert_int_eq(m->released[4], STROP__ACT_RELEASED); /* b2: the sum does not keep it */
    }
  }
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad) {
      memcpy(grads + k, m->params[i]->grad, m->params[i]->numel * sizeof *grads);
      k += m->params[i]->numel;
    }
  strop__model_step_end(m);
  return used;
}

START_TEST(in_place_and_unread_activations) {
  static const strop_test_node nodes[] = {
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", "input"},
      {"b1", "batchnorm2d", NULL, NULL},
      {"r1", "relu", NULL, NULL},
      {"c2", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"b2", "batchnorm2d", NULL, NULL},
      {"s", "add", NULL, "b2,r1"},
      {"r2", "relu", NULL, NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  const int64_t shape[3] = {8, 12, 12};
  strop_model *m = strop_test_build(3, shape, nodes, 10, 3);
  static float x[4 * 8 * 144], g_all[2 * 8 * 8 * 9 + 64 + 200], g_live[2 * 8 * 8 * 9 + 64 + 200];
  static float g_one[2 * 8 * 8 * 9 + 64 + 200];
  float dout[12], out_all[12], out_live[12], out_one[12];
  for (int i = 0; i < 4 * 8 * 144; i++) x[i] = sinf(0.3f * (float)i);
  for (int i = 0; i < 12; i++) dout[i] = cosf((float)i);
  /* what the forward holds, on the free list (a planned step takes its whole region, the
   * backward's gradients included, before the forward: planned_step_memory) */
  strop__memory_plan = 0;
  m->keep_all = m->no_fusion = 1;
  const size_t used_all = conv_stack_step(m, x, dout, out_all, g_all);
  m->keep_all = m->no_fusion = 0;
  const size_t used_live = conv_stack_step(m, x, dout, out_live, g_live);
  m->no_fusion = 1;
  conv_stack_step(m, x, dout, out_one, g_one);
  m->no_fusion = 0;
  strop__memory_plan = -1;
  const size_t act = 4 * 8 * 144 * sizeof(float); /* one [8, 12, 12] activation of the batch */
  ck_assert_msg(used_live < 6 * act && used_all > 6 * act,
                "the forward used %zu bytes (all kept: %zu), %zu per activation", used_live,
                used_all, act);
  ck_assert(memcmp(out_all, out_live, sizeof out_all) == 0);
  ck_assert(memcmp(g_all, g_live, sizeof g_all) == 0);
  ck_assert(memcmp(out_one, out_live, sizeof out_all) == 0);
  ck_assert(memcmp(g_one, g_live, sizeof g_all) == 0);
  strop_model_free(m);

  /* without the sum, the relu's only reader is the max-pool: the pair runs as one (the relu's
   * output never stored), the same bits as each run by itself */
  static const strop_test_node stem[] = {
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", "input"},
      {"b1", "batchnorm2d", NULL, NULL},
      {"r1", "relu", NULL, NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  float o2[2][12], g2[2][8 * 8 * 9 + 16 + 27] = {{0}};
  for (int fused = 0; fused < 2; fused++) {
    m = strop_test_build(3, shape, stem, 6, 3);
    m->no_fusion = !fused;
    const strop__act *o;
    ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
    ck_assert_int_eq(strop__model_forward_exec(m, x, 4, 1, NULL, &o), STROP_OK);
    memcpy(o2[fused], o->data, sizeof o2[fused]);
    if (fused) ck_assert_ptr_null(m->acts[2].data); /* r1 runs with p: not stored */
    ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
    size_t k = 0;
    for (int i = 0; i < m->n_params; i++)
      if (m->params[i]->grad) {
        ck_assert_uint_le(k + m->params[i]->numel, sizeof g2[fused] / sizeof(float));
        memcpy(g2[fused] + k, m->params[i]->grad, m->params[i]->numel * sizeof(float));
        k += m->params[i]->numel;
      }
    strop__model_step_end(m);
    strop_model_free(m);
  }
  ck_assert(memcmp(o2[0], o2[1], sizeof o2[0]) == 0);
  ck_assert(memcmp(g2[0], g2[1], sizeof g2[0]) == 0);
}
END_TEST

/* One training step of the frozen residual trunk m (only the head trains) on x: the output
 * and the head's gradients into out (returned: their count); *sum_kept 1 when the output of a
 * norm before a sum (a sum's operand) was stored. */
static size_t residual_trunk_step(strop_model *m, const float *x, int64_t n, float *out,
                                  int *sum_kept) {
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_msg(strop__model_forward_exec(m, x, n, 1, NULL, &o) == STROP_OK, "%s",
                strop_last_error());
  size_t k = (size_t)n * strop__shape_numel(&o->shape);
  memcpy(out, o->data, k * sizeof *out);
  *sum_kept = 0;
  for (int i = 1; i < m->n_nodes; i++)
    if (!strcmp(m->nodes[i].vt->type, "add") && m->acts[i - 1].data) *sum_kept = 1;
  float dout[64];
  for (size_t i = 0; i < k; i++) dout[i] = cosf(0.7f * (float)i);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad && m->params[i]->trainable) {
      memcpy(out + k, m->params[i]->grad, m->params[i]->numel * sizeof *out);
      k += m->params[i]->numel;
    }
  strop__model_step_end(m);
  return k;
}

/* A frozen bottleneck trunk (batch norm folded into the convs): the residual sum after a
 * block's last conv, and after a downsample's conv, with the relu after it, run in the conv's
 * epilogue (its BF16 tiles' stores where the product writes the output itself: the 10 x 10
 * images; a pass per image where a block of 5 x 5 images goes through a buffer) — the sum
 * never stored, its operands in the add's order (the block input first for the downsample's
 * sum), the shortcut read from the model's input and from a stored conv output. The output and
 * the head's gradients are the same bits as the add run by itself, in FP32 and BF16, with the
 * step planned and on the free list; a parameter upstream that trains turns it off. And a
 * frozen stem's max-pool in its conv's epilogue after the folded norm and the relu; a basic
 * block's sum after a Winograd conv. */
START_TEST(residual_sum_in_conv_epilogue) {
  static const strop_test_node nodes[] = {
      {"a.c1", "conv2d", "out_channels=8 kernel_size=1 bias=false", "input"},
      {"a.b1", "batchnorm2d", NULL, NULL},
      {"a.r1", "relu", NULL, NULL},
      {"a.c2", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"a.b2", "batchnorm2d", NULL, NULL},
      {"a.r2", "relu", NULL, NULL},
      {"a.c3", "conv2d", "out_channels=16 kernel_size=1 bias=false", NULL},
      {"a.b3", "batchnorm2d", NULL, NULL},
      {"a.s", "add", NULL, "a.b3,input"},
      {"a.r3", "relu", NULL, NULL},
      {"b.c1", "conv2d", "out_channels=8 kernel_size=1 bias=false", NULL},
      {"b.b1", "batchnorm2d", NULL, NULL},
      {"b.r1", "relu", NULL, NULL},
      {"b.c2", "conv2d", "out_channels=8 kernel_size=3 stride=2 padding=1 bias=false", NULL},
      {"b.b2", "batchnorm2d", NULL, NULL},
      {"b.r2", "relu", NULL, NULL},
      {"b.c3", "conv2d", "out_channels=32 kernel_size=1 bias=false", NULL},
      {"b.b3", "batchnorm2d", NULL, NULL},
      {"b.d0", "conv2d", "out_channels=32 kernel_size=1 stride=2 bias=false", "a.r3"},
      {"b.d1", "batchnorm2d", NULL, NULL},
      {"b.s", "add", NULL, "b.b3,b.d1"},
      {"b.r3", "relu", NULL, NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  enum { NN = sizeof nodes / sizeof nodes[0], N = 3 };
  const int64_t shape[3] = {16, 10, 10};
  static float x[N * 16 * 100], got[2][512];
  for (int i = 0; i < N * 16 * 100; i++) x[i] = sinf(0.37f * (float)i + 0.1f);
  strop_model *m = strop_test_build(3, shape, nodes, NN, 5);
  /* running statistics away from (0, 1), so the folds move the numbers */
  for (int i = 0; i < m->n_nodes; i++) {
    if (strcmp(m->nodes[i].vt->type, "batchnorm2d")) continue;
    for (int j = 0; j < m->nodes[i].n_params; j++) {
      strop__param *p = &m->nodes[i].params[j];
      for (size_t e = 0; p->data && e < p->numel; e++)
        p->data[e] = strstr(p->name, "var")    ? 0.5f + 0.1f * (float)((e * 3 + i) % 7)
                     : strstr(p->name, "mean") ? 0.05f * sinf((float)(e + i))
                     : strstr(p->name, "bias") ? 0.1f * cosf((float)(e * 5 + i))
                                               : 0.8f + 0.05f * (float)(e % 5);
    }
  }
  ck_assert_int_eq(strop_model_freeze(m, "a.*"), STROP_OK);
  ck_assert_int_eq(strop_model_freeze(m, "b.*"), STROP_OK);
  const int c3 = 6, d0 = 18;
  for (int dtype = 0; dtype < 2; dtype++) {
    ck_assert_int_eq(strop_model_set_compute_dtype(m, dtype ? STROP_DTYPE_BF16 : STROP_DTYPE_F32),
                     STROP_OK);
    for (int plan = 0; plan < 2; plan++) {
      strop__memory_plan = plan;
      size_t cnt[2];
      int kept[2];
      for (int fuse = 0; fuse < 2; fuse++) {
        strop__conv_fuse_add = fuse;
        cnt[fuse] = residual_trunk_step(m, x, N, got[fuse], &kept[fuse]);
        /* the block's last conv takes its norm, the sum and the relu; so does the downsample */
        ck_assert_int_eq(m->nodes[c3].fused, fuse ? 3 : 1);
        ck_assert_int_eq(m->nodes[d0].fused, fuse ? 3 : 1);
        ck_assert_int_eq(kept[fuse], !fuse);
      }
      ck_assert_uint_eq(cnt[0], cnt[1]);
      ck_assert_msg(!memcmp(got[0], got[1], cnt[0] * sizeof(float)),
                    "dtype %d plan %d: the sum in the conv's epilogue gives other bits", dtype,
                    plan);
    }
  }
  strop__memory_plan = -1;
  ck_assert_int_eq(strop_model_set_compute_dtype(m, STROP_DTYPE_F32), STROP_OK);
  /* a trunk parameter that trains: the chain's backward runs, so no sum is offered */
  ck_assert_int_eq(strop_model_unfreeze(m, "b.c3.*"), STROP_OK);
  int kept;
  residual_trunk_step(m, x, N, got[0], &kept);
  ck_assert_int_eq(m->nodes[c3].fused, 3); /* block a: still frozen upstream */
  ck_assert_int_eq(m->nodes[16].fused, 0); /* b.c3 trains: nothing folded */
  ck_assert_int_eq(m->nodes[d0].fused, 1); /* its sum is upstream-trainable now */
  strop_model_free(m);

  /* a frozen stem (conv, norm, relu, max-pool): the conv takes all three, the same bits as
   * the pool by itself */
  static const strop_test_node stem[] = {
      {"s.c", "conv2d", "out_channels=8 kernel_size=3 stride=2 padding=1 bias=false", "input"},
      {"s.b", "batchnorm2d", NULL, NULL},
      {"s.r", "relu", NULL, NULL},
      {"s.p", "maxpool2d", "kernel_size=3 stride=2 padding=1", NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  m = strop_test_build(3, shape, stem, 6, 9);
  ck_assert_int_eq(strop_model_freeze(m, "s.*"), STROP_OK);
  for (int dtype = 0; dtype < 2; dtype++) {
    ck_assert_int_eq(strop_model_set_compute_dtype(m, dtype ? STROP_DTYPE_BF16 : STROP_DTYPE_F32),
                     STROP_OK);
    size_t cnt[2];
    for (int fuse = 0; fuse < 2; fuse++) {
      strop__conv_fuse_pool = fuse;
      cnt[fuse] = residual_trunk_step(m, x, N, got[fuse], &kept);
      ck_assert_int_eq(m->nodes[0].fused, fuse ? 3 : 2);
    }
    strop__conv_fuse_pool = 1;
    ck_assert_uint_eq(cnt[0], cnt[1]);
    ck_assert(!memcmp(got[0], got[1], cnt[0] * sizeof(float)));
  }
  strop_model_free(m);

  /* a frozen basic block of 64 channels: its second 3 x 3 conv runs Winograd in FP32, the sum
   * in that path's per-image epilogue */
  static const strop_test_node basic[] = {
      {"k.c1", "conv2d", "out_channels=64 kernel_size=3 padding=1 bias=false", "input"},
      {"k.b1", "batchnorm2d", NULL, NULL},
      {"k.r1", "relu", NULL, NULL},
      {"k.c2", "conv2d", "out_channels=64 kernel_size=3 padding=1 bias=false", NULL},
      {"k.b2", "batchnorm2d", NULL, NULL},
      {"k.s", "add", NULL, "k.b2,input"},
      {"k.r2", "relu", NULL, NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  const int64_t shape64[3] = {64, 6, 6};
  m = strop_test_build(3, shape64, basic, 9, 13);
  ck_assert_int_eq(strop_model_freeze(m, "k.*"), STROP_OK);
  strop__conv_winograd = 4;
  for (int dtype = 0; dtype < 2; dtype++) {
    ck_assert_int_eq(strop_model_set_compute_dtype(m, dtype ? STROP_DTYPE_BF16 : STROP_DTYPE_F32),
                     STROP_OK);
    size_t cnt[2];
    for (int fuse = 0; fuse < 2; fuse++) {
      strop__conv_fuse_add = fuse;
      cnt[fuse] = residual_trunk_step(m, x, 2, got[fuse], &kept);
      ck_assert_int_eq(m->nodes[3].fused, fuse ? 3 : 1);
    }
    ck_assert_uint_eq(cnt[0], cnt[1]);
    ck_assert(!memcmp(got[0], got[1], cnt[0] * sizeof(float)));
  }
  strop__conv_winograd = -1;
  strop_model_free(m);

  /* frozen 1 x 1 convs with more output channels than positions (3 x 3 images): the FP32
   * forward runs the images side by side, its epilogues (a relu; a sum and its relu) in the
   * copy out of the block (strop__conv_ep_copy) or after it, the same bits */
  static const strop_test_node wide[] = {
      {"w.c1", "conv2d", "out_channels=32 kernel_size=1 bias=false", "input"},
      {"w.b1", "batchnorm2d", NULL, NULL},
      {"w.r1", "relu", NULL, NULL},
      {"w.c2", "conv2d", "out_channels=16 kernel_size=1 bias=false", NULL},
      {"w.b2", "batchnorm2d", NULL, NULL},
      {"w.s", "add", NULL, "w.b2,input"},
      {"w.r2", "relu", NULL, NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  const int64_t shape9[3] = {16, 3, 3};
  m = strop_test_build(3, shape9, wide, 9, 17);
  ck_assert_int_eq(strop_model_freeze(m, "w.*"), STROP_OK);
  size_t cnt[2];
  for (int ep = 0; ep < 2; ep++) {
    strop__conv_ep_copy = ep;
    cnt[ep] = residual_trunk_step(m, x, N, got[ep], &kept);
    ck_assert_int_eq(m->nodes[0].fused, 2); /* its norm and relu */
    ck_assert_int_eq(m->nodes[3].fused, 3); /* its norm, the sum and its relu */
  }
  strop__conv_ep_copy = 1;
  ck_assert_uint_eq(cnt[0], cnt[1]);
  ck_assert(!memcmp(got[0], got[1], cnt[0] * sizeof(float)));
  strop_model_free(m);
}
END_TEST

/* One training step of m on x (n samples) from the generator state it had: the output (out_n
 * floats) and every parameter gradient into out and grads; returns the arena's high-water mark
 * over the step. */
static size_t planned_step(strop_model *m, const float *x, int64_t n, const float *dout,
                           float *out, size_t out_n, float *grads) {
  const strop__act *o;
  const strop__rng rng = m->rng;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  const size_t before = m->arena.peak;
  m->arena.peak = 0;
  ck_assert_int_eq(strop__model_forward_exec(m, x, n, 1, NULL, &o), STROP_OK);
  memcpy(out, o->data, out_n * sizeof *out);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  const size_t peak = m->arena.peak + m->plan_bytes; /* the arena's and the planned region's */
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad) {
      memcpy(grads + k, m->params[i]->grad, m->params[i]->numel * sizeof *grads);
      k += m->params[i]->numel;
    }
  strop__model_step_end(m);
  if (before > m->arena.peak) m->arena.peak = before;
  m->rng = rng;
  return peak;
}

/* The step's activations and gradients planned from their lifetimes in one region (greedy by
 * size) instead of taken from the free list: the same output and gradients to the bit, every
 * node's output and every conv's scratch where the plan put it, and a lower peak than the free
 * list's, whose holes the backward's early full-size gradients did not fit (a
 * conv-bn-relu-residual stack). */
START_TEST(planned_step_memory) {
  static const strop_test_node nodes[] = {
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", "input"},
      {"b1", "batchnorm2d", NULL, NULL},
      {"r1", "relu", NULL, NULL},
      {"c2", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"b2", "batchnorm2d", NULL, NULL},
      {"s", "add", NULL, "b2,r1"},
      {"r2", "relu", NULL, NULL},
      {"c3", "conv2d", "out_channels=16 kernel_size=3 padding=1 stride=2 bias=false", NULL},
      {"b3", "batchnorm2d", NULL, NULL},
      {"r3", "relu", NULL, NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  const int64_t shape[3] = {8, 12, 12};
  strop_model *m = strop_test_build(3, shape, nodes, 13, 3);
  static float x[4 * 8 * 144], g_free[3000], g_plan[3000];
  float dout[12], out_free[12], out_plan[12];
  for (int i = 0; i < 4 * 8 * 144; i++) x[i] = sinf(0.3f * (float)i);
  for (int i = 0; i < 12; i++) dout[i] = cosf((float)i);
  strop__plan_scratch_min = 0; /* every conv's scratch planned (this model's is small) */
  strop__memory_plan = 0;
  const size_t peak_free = planned_step(m, x, 4, dout, out_free, 12, g_free);
  strop__memory_plan = 1;
  const size_t peak_plan = planned_step(m, x, 4, dout, out_plan, 12, g_plan);
  strop__memory_plan = -1;
  ck_assert(memcmp(out_free, out_plan, sizeof out_free) == 0);
  ck_assert(memcmp(g_free, g_plan, sizeof g_free) == 0);
  ck_assert_msg(peak_plan < peak_free, "planned peak %zu, free list %zu", peak_plan, peak_free);
  /* the outputs sit in the planned region, as planned */
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 4, 1, NULL, &o), STROP_OK);
  ck_assert_ptr_nonnull(m->plan_base);
  for (int i = 0; i < m->n_nodes; i++)
    if (m->acts[i].data && m->nodes[i].fused == 0)
      ck_assert_ptr_eq((unsigned char *)m->acts[i].data, m->plan_base + m->plan_off[i]);
  /* and the convs' scratch of the forward and of the backward (vtable scratch) in it too,
   * where the tensors dead at that moment were, rather than above the region */
  const int nn = m->n_nodes;
  for (int i = 0; i < nn; i++) {
    if (strcmp(m->nodes[i].vt->type, "conv2d")) continue;
    for (int b = 0; b < 2; b++) {
      const size_t q = (size_t)(3 + b) * (size_t)nn + (size_t)i;
      ck_assert_msg(m->plan_off[q] != SIZE_MAX, "%s: scratch %d not planned", m->nodes[i].name,
                    b);
      ck_assert_uint_gt(m->plan_scratch[b * nn + i], 0);
      ck_assert_uint_le(m->plan_off[q] + m->plan_scratch[b * nn + i], m->plan_bytes);
    }
  }
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  strop__plan_scratch_min = (size_t)1 << 20;
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* The first node to write an input gradient in the backward writes it outright where its layer
 * can (a residual sum: both inputs, one of them read by a conv too; a sum of one input with
 * itself: its first slot writes, its second adds), instead of the gradient being zeroed and
 * added to: the same output and gradients to the bit, on the planned region and the free list,
 * in a second step whose memory holds the first's values (a sum that added to what it should
 * have written would be off). */
START_TEST(first_writer_assigns_input_gradients) {
  static const strop_test_node nodes[] = {
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", "input"},
      {"b1", "batchnorm2d", NULL, NULL},
      {"r1", "relu", NULL, NULL},
      {"c2", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"b2", "batchnorm2d", NULL, NULL},
      {"s", "add", NULL, "b2,r1"},
      {"r2", "relu", NULL, NULL},
      {"d", "add", NULL, "r2,r2"},
      {"c3", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"t", "add", NULL, "c3,d"},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL}};
  const int64_t shape[3] = {8, 10, 10};
  static float x[4 * 8 * 100], g[2][2000];
  float dout[12], out[2][12];
  for (int i = 0; i < 4 * 8 * 100; i++) x[i] = sinf(0.41f * (float)i) + 0.1f;
  for (int i = 0; i < 12; i++) dout[i] = cosf(1.3f * (float)i);
  for (int plan = 0; plan < 2; plan++) {
    strop__memory_plan = plan;
    for (int first = 0; first < 2; first++) {
      strop_model *m = strop_test_build(3, shape, nodes, 12, 5);
      strop__din_first_writer = first;
      planned_step(m, x, 4, dout, out[first], 12, g[first]); /* leaves its values behind */
      planned_step(m, x, 4, dout, out[first], 12, g[first]);
      strop_model_free(m);
    }
    strop__din_first_writer = 1;
    ck_assert(memcmp(out[0], out[1], sizeof out[0]) == 0);
    ck_assert_msg(memcmp(g[0], g[1], sizeof g[0]) == 0, "plan %d: gradients differ", plan);
  }
  strop__memory_plan = -1;
}
END_TEST

/* Layers whose backward reads neither their output (linear, gelu, layernorm, dropout) nor their
 * input (dropout: the mask only) do not keep them: a dropout writes over the linear or gelu
 * output before it, and its own output goes once the residual sum has read it. Same bits as
 * every activation kept. */
START_TEST(unread_outputs_are_not_kept) {
  static const strop_test_node nodes[] = {{"fc1", "linear", "out_features=32", "input"},
                                          {"act", "gelu", NULL, NULL},
                                          {"drop1", "dropout", "p=0.25", NULL},
                                          {"fc2", "linear", "out_features=16", NULL},
                                          {"drop2", "dropout", "p=0.25", NULL},
                                          {"add", "add", NULL, "drop2,input"},
                                          {"ln", "layernorm", NULL, NULL},
                                          {"head", "linear", "out_features=4", NULL}};
  const int64_t shape[2] = {8, 16};
  strop_model *m = strop_test_build(2, shape, nodes, 8, 11);
  static float x[3 * 8 * 16], dout[3 * 8 * 4], g_all[4000], g_live[4000];
  float out_all[96], out_live[96];
  for (int i = 0; i < 3 * 8 * 16; i++) x[i] = sinf(0.7f * (float)i);
  for (int i = 0; i < 96; i++) dout[i] = cosf(0.3f * (float)i);
  m->keep_all = 1;
  planned_step(m, x, 3, dout, out_all, 96, g_all);
  m->keep_all = 0;
  planned_step(m, x, 3, dout, out_live, 96, g_live);
  ck_assert(memcmp(out_all, out_live, sizeof out_all) == 0);
  ck_assert(memcmp(g_all, g_live, sizeof g_all) == 0);
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 3, 1, NULL, &o), STROP_OK);
  ck_assert_ptr_eq(m->acts[1].data, m->acts[2].data); /* act -> drop1 in place */
  ck_assert_ptr_eq(m->acts[3].data, m->acts[4].data); /* fc2 -> drop2 in place */
  ck_assert_int_eq(m->released[1], STROP__ACT_MOVED);
  ck_assert_int_eq(m->released[3], STROP__ACT_MOVED);
  ck_assert_int_eq(m->released[4], STROP__ACT_RELEASED); /* the sum does not keep drop2 */
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* A gelu's output that only the next linear's backward reads is not kept: that backward
 * computes it again from the gelu's input (kept for the gelu's own backward), so an MLP block
 * keeps one of its two wide activations. Same bits as every activation kept, planned or on
 * the free list. */
START_TEST(cheap_outputs_computed_again) {
  static const strop_test_node nodes[] = {{"fc1", "linear", "out_features=64", "input"},
                                          {"act", "gelu", NULL, NULL},
                                          {"fc2", "linear", "out_features=16", NULL},
                                          {"act2", "silu", NULL, NULL},
                                          {"head", "linear", "out_features=4", NULL}};
  const int64_t shape[2] = {8, 16};
  strop_model *m = strop_test_build(2, shape, nodes, 5, 13);
  static float x[3 * 8 * 16], dout[3 * 8 * 4], g_all[4000], g_plan[4000], g_free[4000];
  float out_all[96], out_plan[96], out_free[96];
  for (int i = 0; i < 3 * 8 * 16; i++) x[i] = sinf(0.9f * (float)i);
  for (int i = 0; i < 96; i++) dout[i] = cosf(0.4f * (float)i);
  m->keep_all = 1;
  const size_t peak_all = planned_step(m, x, 3, dout, out_all, 96, g_all);
  m->keep_all = 0;
  const size_t peak_plan = planned_step(m, x, 3, dout, out_plan, 96, g_plan);
  strop__memory_plan = 0;
  planned_step(m, x, 3, dout, out_free, 96, g_free);
  strop__memory_plan = -1;
  ck_assert(memcmp(out_all, out_plan, sizeof out_all) == 0);
  ck_assert(memcmp(g_all, g_plan, sizeof g_all) == 0);
  ck_assert(memcmp(out_all, out_free, sizeof out_all) == 0);
  ck_assert(memcmp(g_all, g_free, sizeof g_all) == 0);
  ck_assert_msg(peak_plan < peak_all, "peak %zu, all kept %zu", peak_plan, peak_all);
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 3, 1, NULL, &o), STROP_OK);
  ck_assert_ptr_nonnull(m->recompute);
  ck_assert_int_eq(m->recompute[1], 1);
  ck_assert_int_eq(m->recompute[3], 1);
  ck_assert_int_eq(m->released[1], STROP__ACT_RELEASED);
  ck_assert_int_eq(m->released[0], STROP__ACT_KEPT); /* the gelu's input stays */
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

START_TEST(clone_is_deep) {
  strop_model *m = residual(), *c = NULL;
  ck_assert_int_eq(strop__model_clone(m, &c), STROP_OK);
  float x[6] = {1, -2, 3, -4, 5, -6};
  int64_t d[2] = {1, 6};
  strop_tensor *in = NULL, *a = NULL, *b = NULL;
  ck_assert_int_eq(strop_tensor_from_data(x, 6, 2, d, &in), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, in, &a), STROP_OK);
  ck_assert_int_eq(strop_model_forward(c, in, &b), STROP_OK);
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * sizeof(float));
  strop__model_param_find(c, "head.bias")->data[0] += 1.0f;
  strop_tensor_free(b);
  ck_assert_int_eq(strop_model_forward(m, in, &b), STROP_OK);
  ck_assert_mem_eq(strop_tensor_data(a), strop_tensor_data(b), 2 * sizeof(float));
  strop_tensor_free(a);
  strop_tensor_free(b);
  strop_tensor_free(in);
  strop_model_free(c);
  strop_model_free(m);
}
END_TEST

static strop_model *g_m;
static int op_build(void *ctx) {
  (void)ctx;
  int64_t in[1] = {6};
  strop_status s = strop_model_create(1, in, &g_m);
  if (s) return s;
  if ((s = strop_model_add(g_m, "fc", "linear", "out_features=6", NULL)) ||
      (s = strop_model_add(g_m, "act", "tanh", NULL, NULL)) ||
      (s = strop_model_add(g_m, "sum", "add", NULL, "input,act")) ||
      (s = strop_model_finalize(g_m, 1))) {
    strop_model_free(g_m);
    g_m = NULL;
  }
  return s;
}
/* The same with an input named before its node: finalize sorts the nodes (its allocations) */
static int op_build_sorted(void *ctx) {
  (void)ctx;
  int64_t in[1] = {6};
  strop_status s = strop_model_create(1, in, &g_m);
  if (s) return s;
  if ((s = strop_model_add(g_m, "fc", "linear", "out_features=6", NULL)) ||
      (s = strop_model_add(g_m, "sum", "add", NULL, "input,act")) ||
      (s = strop_model_add(g_m, "act", "tanh", NULL, "fc")) ||
      (s = strop_model_finalize(g_m, 1))) {
    strop_model_free(g_m);
    g_m = NULL;
  }
  return s;
}
static void free_m(void *ctx) {
  (void)ctx;
  strop_model_free(g_m);
  g_m = NULL;
}

/* ---- activation checkpointing ---- */

/* Several SGD steps of model m in train mode on fixed data: every step's parameter gradients
 * are appended to grads (cap floats), the weights move by -0.05 grad. Returns the arena's
 * high-water mark over the last step (the first sized the arena: one chunk since). */
static size_t ckpt_steps(strop_model *m, const float *x, int64_t n, int64_t out_numel,
                         float *grads, size_t cap) {
  float *dout = malloc((size_t)(n * out_numel) * sizeof *dout);
  ck_assert_ptr_nonnull(dout);
  for (int64_t i = 0; i < n * out_numel; i++) dout[i] = cosf(0.7f * (float)i) / (float)n;
  size_t k = 0, planned = 0;
  for (int step = 0; step < 3; step++) {
    const strop__act *o;
    if (step == 2) m->arena.peak = 0;
    ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
    ck_assert_int_eq(strop__model_forward_exec(m, x, n, 1, NULL, &o), STROP_OK);
    ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
    for (int i = 0; i < m->n_params; i++) {
      strop__param *p = m->params[i];
      if (!p->grad) continue;
      ck_assert_uint_le(k + p->numel, cap);
      memcpy(grads + k, p->grad, p->numel * sizeof *grads);
      k += p->numel;
      for (size_t j = 0; j < p->numel; j++) p->data[j] -= 0.05f * p->grad[j];
    }
    planned = m->plan_bytes;
    strop__model_step_end(m);
  }
  free(dout);
  return m->arena.peak + planned; /* the arena's and the planned region's */
}

/* Every parameter and buffer (running statistics, batch counts) of a and b hold the same bits. */
static void ckpt_same_state(const strop_model *a, const strop_model *b) {
  ck_assert_int_eq(a->n_params, b->n_params);
  for (int i = 0; i < a->n_params; i++) {
    const strop__param *p = a->params[i], *q = b->params[i];
    if (p->data)
      ck_assert_msg(!memcmp(p->data, q->data, p->numel * sizeof(float)), "'%s' differs", p->name);
    else ck_assert_int_eq(p->idata[0], q->idata[0]);
  }
}

/* A batch norm whose sole reader is a relu computes it (layers/batchnorm.c): over steps of
 * SGD, the outputs, every gradient, the weights and the running statistics and batch counts
 * are the same bits as with the two apart (strop__bn_fuse_relu 0) — train-mode norms over
 * images and over features (batchnorm1d), one with frozen statistics (the eval-mode kernels
 * under a trained weight); not fused: a norm whose output a residual sum reads beside the relu,
 * and the stem's, whose relu runs with the max-pool after it instead. The chains really fused,
 * and finite differences agree with the fused backward. */
static strop_model *bn_relu_model(void) {
  static const strop_test_node nodes[] = {
      {"c0", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", "input"},
      {"b0", "batchnorm2d", NULL, NULL},
      {"r0", "relu", NULL, NULL},
      {"p0", "maxpool2d", "kernel_size=2", NULL},
      {"c1", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"b1", "batchnorm2d", NULL, NULL},
      {"r1", "relu", NULL, NULL},
      {"c2", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"b2", "batchnorm2d", "momentum=none", NULL},
      {"r2", "relu", NULL, NULL},
      {"s", "add", NULL, "r2,b2"},
      {"r3", "relu", NULL, NULL},
      {"c3", "conv2d", "out_channels=12 kernel_size=1", NULL},
      {"b3", "batchnorm2d", NULL, NULL},
      {"r4", "relu", NULL, NULL},
      {"g", "global_avgpool", NULL, NULL},
      {"fc", "linear", "out_features=10", NULL},
      {"b4", "batchnorm1d", NULL, NULL},
      {"r5", "relu", NULL, NULL},
      {"head", "linear", "out_features=5", NULL}};
  const int64_t shape[3] = {3, 10, 10};
  strop_model *m = strop_test_build(3, shape, nodes, 20, 21);
  m->nodes[strop__model_node_find(m, "b3")].frozen_stats = 1;
  return m;
}

START_TEST(bn_relu_fused_bit_identical) {
  strop_model *apart = bn_relu_model(), *fused = NULL;
  ck_assert_int_eq(strop__model_clone(apart, &fused), STROP_OK);
  static float x[6 * 3 * 100], ga[20000], gb[20000];
  for (int i = 0; i < 6 * 3 * 100; i++) x[i] = sinf(0.41f * (float)i) + 0.3f * cosf((float)i);
  strop__bn_fuse_relu = 0;
  ckpt_steps(apart, x, 6, 5, ga, 20000);
  strop__bn_fuse_relu = 1;
  ckpt_steps(fused, x, 6, 5, gb, 20000);
  ck_assert(!memcmp(ga, gb, sizeof ga));
  ckpt_same_state(apart, fused);
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(fused, x, 6, 1, NULL, &o), STROP_OK);
  static const char *const chain[] = {"b1", "b3", "b4"}, *const alone[] = {"b0", "b2"};
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(fused->nodes[strop__model_node_find(fused, chain[i])].fused, 1);
  for (int i = 0; i < 2; i++)
    ck_assert_int_eq(fused->nodes[strop__model_node_find(fused, alone[i])].fused, 0);
  ck_assert_int_eq(fused->nodes[strop__model_node_find(fused, "r0")].fused, 1); /* + pool */
  strop__model_step_end(fused);
  strop_model_free(apart);
  strop_model_free(fused);
  /* finite differences through each kind of fused chain alone (the kinks of a deeper stack
   * move its finite differences by a few percent, fused or not) */
  static const char *const gtype[3] = {"batchnorm2d", "batchnorm2d", "batchnorm1d"};
  static const int64_t gshape[3][3] = {{3, 4, 4}, {3, 4, 4}, {6, 0, 0}};
  for (int v = 0; v < 3; v++) {
    const strop_test_node gc[] = {{"b", gtype[v], NULL, "input"},
                                  {"r", "relu", NULL, NULL},
                                  {"f", "flatten", NULL, NULL},
                                  {"head", "linear", "out_features=3", NULL}};
    strop_model *m = strop_test_build(v == 2 ? 1 : 3, gshape[v], gc, 4, 25 + (uint64_t)v);
    m->nodes[0].frozen_stats = v == 1;
    strop_test_gc_opts go;
    strop_test_gc_defaults(&go);
    go.tol = 2e-2; /* float32 central differences, eps 1e-3 */
    strop_test_gradcheck(m, 4, 23 + (uint64_t)v, &go);
    ck_assert_int_eq(m->nodes[0].fused, 1);
    strop_model_free(m);
  }
}
END_TEST

/* A train-mode batch norm whose sole reader is a residual sum computes the sum and its relu
 * (layers/batchnorm.c, strop__bn_fuse_add; the graph hands the sum's other input in and its
 * gradient back): over SGD steps the outputs, every gradient, the weights, the running
 * statistics and batch counts are the same bits as with the three apart — the sum's operands
 * in either order, the other operand a trainable norm's output (a downsample), a norm with
 * frozen statistics (the eval-mode kernels) whose sum has two readers and no relu; with the
 * gradients written by their first writer and zeroed and added to; the group sums on AVX-512
 * and in plain C; in checkpointed blocks; and in eval mode. Finite differences through the
 * chain (the sum and its relu; the sum alone), its other operand a trainable conv's output or
 * the model's input. */
static strop_model *bn_add_model(void) {
  static const strop_test_node nodes[] = {
      {"stem.c", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", "input"},
      {"stem.b", "batchnorm2d", NULL, NULL},
      {"stem.r", "relu", NULL, NULL},
      {"l.0.c", "conv2d", "out_channels=8 kernel_size=3 padding=1 bias=false", NULL},
      {"l.0.b", "batchnorm2d", NULL, NULL},
      {"l.0.s", "add", NULL, "l.0.b,stem.r"},
      {"l.0.r", "relu", NULL, NULL},
      {"l.1.c", "conv2d", "out_channels=12 kernel_size=1 bias=false", NULL},
      {"l.1.b", "batchnorm2d", NULL, NULL},
      {"l.1.dc", "conv2d", "out_channels=12 kernel_size=1 bias=false", "l.0.r"},
      {"l.1.db", "batchnorm2d", "momentum=none", NULL},
      {"l.1.s", "add", NULL, "l.1.b,l.1.db"},
      {"l.1.r", "relu", NULL, NULL},
      {"l.2.c", "conv2d", "out_channels=12 kernel_size=3 padding=1 bias=false", NULL},
      {"l.2.b", "batchnorm2d", NULL, NULL},
      {"l.2.s", "add", NULL, "l.1.r,l.2.b"},
      {"l.2.e", "conv2d", "out_channels=12 kernel_size=1", NULL},
      {"l.2.t", "add", NULL, "l.2.e,l.2.s"},
      {"g", "global_avgpool", NULL, NULL},
      {"head", "linear", "out_features=5", NULL}};
  const int64_t shape[3] = {4, 8, 8};
  strop_model *m = strop_test_build(3, shape, nodes, 20, 31);
  m->nodes[strop__model_node_find(m, "l.2.b")].frozen_stats = 1;
  return m;
}

START_TEST(bn_add_relu_fused_bit_identical) {
  static float x[6 * 4 * 64], ga[8][30000];
  static float eval[8][6 * 5];
  for (int i = 0; i < 6 * 4 * 64; i++) x[i] = sinf(0.23f * (float)i) + 0.4f * cosf((float)i);
  static const char *const heads[3] = {"l.0.b", "l.1.db", "l.2.b"};
  static const int len[3] = {2, 2, 1};
  strop_model *ref = NULL;
  for (int v = 0; v < 6; v++) {
    /* 0 apart; 1 fused; 2 apart and 3 fused with every input gradient zeroed and added to;
     * 4 fused, plain C group sums; 5 fused, checkpointed blocks */
    strop_model *m = bn_add_model();
    strop__bn_fuse_add = v != 0 && v != 2;
    strop__din_first_writer = v != 2 && v != 3;
    strop__bn_isa = v == 4;
    if (v == 5) {
      ck_assert_int_eq(strop_model_set_checkpointing(m, "l.?"), STROP_OK);
      ck_assert_int_eq(strop_model_checkpoint_blocks(m), 3);
    }
    memset(ga[v], 0, sizeof ga[v]);
    ckpt_steps(m, x, 6, 5, ga[v], 30000);
    const strop__act *o;
    ck_assert_int_eq(strop__model_forward_exec(m, x, 6, 1, NULL, &o), STROP_OK);
    for (int h = 0; h < 3; h++)
      ck_assert_int_eq(m->nodes[strop__model_node_find(m, heads[h])].fused,
                       strop__bn_fuse_add ? len[h] : 0);
    strop__model_step_end(m);
    ck_assert_int_eq(strop__model_forward_exec(m, x, 6, 0, NULL, &o), STROP_OK);
    memcpy(eval[v], o->data, sizeof eval[v]);
    strop__model_step_end(m);
    strop__bn_fuse_add = 1;
    strop__din_first_writer = 1;
    strop__bn_isa = 0;
    if (!v) {
      ref = m;
      continue;
    }
    ck_assert_msg(!memcmp(ga[0], ga[v], sizeof ga[0]), "variant %d: gradients differ", v);
    ck_assert_msg(!memcmp(eval[0], eval[v], sizeof eval[0]), "variant %d: eval differs", v);
    ckpt_same_state(ref, m);
    strop_model_free(m);
  }
  strop_model_free(ref);
  /* finite differences through the chain: the sum's other operand a trainable conv's output,
   * or the model's input (its gradient checked too); train-mode and frozen statistics */
  for (int v = 0; v < 4; v++) {
    const strop_test_node gc[] = {{"c0", "conv2d", "out_channels=3 kernel_size=1", "input"},
                                  {"b", "batchnorm2d", NULL, "input"},
                                  {"s", "add", NULL, "b,c0"},
                                  {"r", "relu", NULL, NULL},
                                  {"f", "flatten", NULL, NULL},
                                  {"head", "linear", "out_features=3", NULL}};
    const strop_test_node gi[] = {
        {"c0", "conv2d", "out_channels=3 kernel_size=1 bias=false", "input"},
        {"b", "batchnorm2d", NULL, NULL},
        {"s", "add", NULL, "input,b"},
        {"f", "flatten", NULL, NULL},
        {"head", "linear", "out_features=3", NULL}};
    const int64_t gshape[3] = {3, 4, 4};
    const int on_input = v & 1;
    strop_model *m = strop_test_build(3, gshape, on_input ? gi : gc, on_input ? 5 : 6,
                                      41 + (uint64_t)v);
    m->nodes[1].frozen_stats = v >= 2;
    strop_test_gc_opts go;
    strop_test_gc_defaults(&go);
    go.tol = 2e-2;             /* float32 central differences, eps 1e-3 */
    go.check_input = on_input; /* (through the relu's kinks: the input's noise floor) */
    strop_test_gradcheck(m, 4, 43 + (uint64_t)v, &go);
    ck_assert_int_eq(m->nodes[1].fused, on_input ? 1 : 2);
    strop_model_free(m);
  }
}
END_TEST

/* Residual blocks with batch norm in train mode: the same gradients, weights and running
 * statistics with layerN.M checkpointed as without (the recompute does not count a batch
 * twice), and the step's activation memory shrinks. */
START_TEST(checkpointing_resnet_blocks_bit_identical) {
  strop_test_node nodes[64];
  char names[6][8][32], ins[6][72];
  int n = 0;
  nodes[n++] = (strop_test_node){"conv1", "conv2d",
                                 "out_channels=8 kernel_size=3 padding=1 "
                                 "bias=false",
                                 "input"};
  nodes[n++] = (strop_test_node){"bn1", "batchnorm2d", NULL, NULL};
  nodes[n++] = (strop_test_node){"relu", "relu", NULL, NULL};
  static const char *const part[7] = {"conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu2"};
  static const char *const type[7] = {"conv2d",      "batchnorm2d", "relu", "conv2d",
                                      "batchnorm2d", "add",         "relu"};
  for (int b = 0; b < 6; b++) {
    for (int k = 0; k < 7; k++)
      snprintf(names[b][k], sizeof names[b][k], "layer1.%d.%s", b, part[k]);
    snprintf(ins[b], sizeof ins[b], "%s,%s", names[b][4], b ? names[b - 1][6] : "relu");
    for (int k = 0; k < 7; k++)
      nodes[n++] = (strop_test_node){names[b][k], type[k],
                                     k == 0 || k == 3 ? "out_channels=8 kernel_size=3 padding=1 "
                                                        "bias=false"
                                                      : NULL,
                                     k == 5 ? ins[b] : NULL};
  }
  nodes[n++] = (strop_test_node){"pool", "global_avgpool", NULL, NULL};
  nodes[n++] = (strop_test_node){"fc", "linear", "out_features=5", NULL};
  const int64_t shape[3] = {3, 16, 16};
  strop_model *plain = strop_test_build(3, shape, nodes, n, 11), *ck = NULL;
  ck_assert_int_eq(strop__model_clone(plain, &ck), STROP_OK);
  ck_assert_int_eq(strop_model_set_checkpointing(ck, "auto"), STROP_OK);
  ck_assert_int_eq(strop_model_checkpoint_blocks(ck), 6);
  char buf[16];
  ck_assert_int_eq(strop_model_get_checkpointing(ck, buf, sizeof buf), 4);
  ck_assert_str_eq(buf, "auto");
  static float x[4 * 3 * 256], ga[40000], gb[40000];
  for (int i = 0; i < 4 * 3 * 256; i++) x[i] = sinf(0.37f * (float)i);
  strop_model *fl = NULL; /* checkpointed on the free list (STROP_MEMORY_PLAN=0) */
  ck_assert_int_eq(strop__model_clone(ck, &fl), STROP_OK);
  static float gc[40000];
  const size_t peak_plain = ckpt_steps(plain, x, 4, 5, ga, 40000);
  const size_t peak_ck = ckpt_steps(ck, x, 4, 5, gb, 40000);
  strop__memory_plan = 0;
  ckpt_steps(fl, x, 4, 5, gc, 40000);
  strop__memory_plan = -1;
  ck_assert(!memcmp(ga, gb, sizeof ga));
  ck_assert(!memcmp(ga, gc, sizeof ga));
  ckpt_same_state(plain, ck);
  ckpt_same_state(plain, fl);
  strop_model_free(fl);
  /* 6 blocks of 4 or 5 kept [8, 16, 16] activations each, against their inputs and one
   * block's recompute */
  const size_t act = 4 * 8 * 256 * sizeof(float);
  ck_assert_msg(peak_ck + 8 * act < peak_plain,
                "peak with checkpointing %zu, without %zu "
                "(%zu per activation)",
                peak_ck, peak_plain, act);
  /* a glob names the same blocks */
  ck_assert_int_eq(strop_model_set_checkpointing(ck, "layer1.?"), STROP_OK);
  ck_assert_int_eq(strop_model_checkpoint_blocks(ck), 6);
  strop_model_free(ck);
  strop_model_free(plain);
}
END_TEST

/* Transformer blocks with dropout: the recompute draws the same masks, so gradients and weights
 * are the same bits; the generator ends where it would have. */
START_TEST(checkpointing_transformer_dropout_bit_identical) {
  static const strop_test_node nodes[] = {
      {"proj", "linear", "out_features=16", "input"},
      {"blocks.0", "transformer_block", "embed_dim=16 num_heads=2 dropout=0.2", NULL},
      {"blocks.1", "transformer_block", "embed_dim=16 num_heads=2 dropout=0.2", NULL},
      {"blocks.2", "transformer_block", "embed_dim=16 num_heads=2 dropout=0.2", NULL},
      {"pool", "mean_pool", NULL, NULL},
      {"head", "linear", "out_features=4", NULL}};
  const int64_t shape[2] = {12, 8};
  strop_model *plain = strop_test_build(2, shape, nodes, 6, 5), *ck = NULL;
  ck_assert_int_eq(strop__model_clone(plain, &ck), STROP_OK);
  ck_assert_int_eq(strop_model_set_checkpointing(ck, "blocks.*"), STROP_OK);
  ck_assert_int_eq(strop_model_checkpoint_blocks(ck), 3);
  static float x[6 * 12 * 8], ga[60000], gb[60000];
  for (int i = 0; i < 6 * 12 * 8; i++) x[i] = sinf(0.11f * (float)i) + 0.1f * cosf((float)i);
  strop_model *fl = NULL; /* checkpointed on the free list (STROP_MEMORY_PLAN=0) */
  ck_assert_int_eq(strop__model_clone(ck, &fl), STROP_OK);
  static float gc[60000];
  const size_t peak_plain = ckpt_steps(plain, x, 6, 4, ga, 60000);
  const size_t peak_ck = ckpt_steps(ck, x, 6, 4, gb, 60000);
  strop__memory_plan = 0;
  ckpt_steps(fl, x, 6, 4, gc, 60000);
  strop__memory_plan = -1;
  ck_assert(!memcmp(ga, gb, sizeof ga));
  ck_assert(!memcmp(ga, gc, sizeof ga));
  ckpt_same_state(plain, ck);
  ckpt_same_state(plain, fl);
  ck_assert(plain->rng.state == ck->rng.state && fl->rng.state == ck->rng.state);
  strop_model_free(fl);
  ck_assert_msg(peak_ck < peak_plain, "peak with checkpointing %zu, without %zu", peak_ck,
                peak_plain);
  /* eval mode and checkpointing off are untouched */
  ck_assert_int_eq(strop_model_set_checkpointing(ck, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_get_checkpointing(ck, NULL, 0), 0);
  ck_assert_int_eq(strop_model_checkpoint_blocks(ck), 0);
  strop_model_free(ck);
  strop_model_free(plain);
}
END_TEST

/* Residual MLP blocks (linear 32 -> 128, tanh, linear 128 -> 32, + the block's input) under
 * "blocks.*", and after them a gelu between two linears outside any block (its output computed
 * again for the second linear's backward, as in a step without checkpointing). The planned
 * checkpointed step (the recompute's outputs and scratch planned with the rest, STROP_MEMORY_PLAN
 * on) gives the unplanned checkpointed step's and the plain step's gradients, weights and
 * generator to the bit, and its peak is below the plain step's by at least the blocks' inner
 * activations but one block's (each block keeps a tanh output of 128 per sample the plain step
 * holds to its backward: the checkpointed step holds one block's at a time); a checkpointed
 * step on the free list peaks above the planned one. */
START_TEST(checkpointing_planned_below_plain) {
  enum { B = 8, N = 64 };
  strop_test_node nodes[4 * B + 6];
  char names[B][4][32], ins[B][72];
  int n = 0;
  nodes[n++] = (strop_test_node){"proj", "linear", "out_features=32", "input"};
  static const char *const part[4] = {"fc1", "act", "fc2", "add"};
  static const char *const type[4] = {"linear", "tanh", "linear", "add"};
  static const char *const opt[4] = {"out_features=128", NULL, "out_features=32", NULL};
  for (int b = 0; b < B; b++) {
    for (int k = 0; k < 4; k++)
      snprintf(names[b][k], sizeof names[b][k], "blocks.%d.%s", b, part[k]);
    snprintf(ins[b], sizeof ins[b], "%s,%s", names[b][2], b ? names[b - 1][3] : "proj");
    for (int k = 0; k < 4; k++)
      nodes[n++] = (strop_test_node){names[b][k], type[k], opt[k], k == 3 ? ins[b] : NULL};
  }
  nodes[n++] = (strop_test_node){"post_fc1", "linear", "out_features=64", NULL};
  nodes[n++] = (strop_test_node){"post_act", "gelu", NULL, NULL};
  nodes[n++] = (strop_test_node){"post_fc2", "linear", "out_features=32", NULL};
  nodes[n++] = (strop_test_node){"head", "linear", "out_features=4", NULL};
  const int64_t shape[1] = {16};
  strop_model *plain = strop_test_build(1, shape, nodes, n, 31), *ck = NULL, *fl = NULL;
  ck_assert_int_eq(strop__model_clone(plain, &ck), STROP_OK);
  ck_assert_int_eq(strop_model_set_checkpointing(ck, "blocks.*"), STROP_OK);
  ck_assert_int_eq(strop_model_checkpoint_blocks(ck), B);
  ck_assert_int_eq(strop__model_clone(ck, &fl), STROP_OK);
  static float x[N * 16], ga[240000], gb[240000], gc[240000];
  for (int i = 0; i < N * 16; i++) x[i] = sinf(0.23f * (float)i) + 0.2f * cosf((float)i);
  const size_t peak_plain = ckpt_steps(plain, x, N, 4, ga, 240000);
  const size_t peak_ck = ckpt_steps(ck, x, N, 4, gb, 240000);
  strop__memory_plan = 0;
  const size_t peak_fl = ckpt_steps(fl, x, N, 4, gc, 240000);
  strop__memory_plan = -1;
  ck_assert(!memcmp(ga, gb, sizeof ga));
  ck_assert(!memcmp(ga, gc, sizeof ga));
  ckpt_same_state(plain, ck);
  ckpt_same_state(plain, fl);
  const size_t inner = (size_t)N * 128 * sizeof(float);
  fprintf(stderr,
          "checkpointing: step memory peak %zu bytes plain, %zu checkpointed and planned, %zu "
          "checkpointed on the free list (%zu a block's tanh output)\n",
          peak_plain, peak_ck, peak_fl, inner);
  ck_assert_msg(peak_ck + (B - 1) * inner <= peak_plain,
                "peak with checkpointing %zu, without %zu (%zu a block's inner activation)",
                peak_ck, peak_plain, inner);
  ck_assert_msg(peak_ck < peak_fl, "planned %zu, on the free list %zu", peak_ck, peak_fl);
  /* the step is planned, and the gelu outside the blocks is computed again */
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(ck, x, N, 1, NULL, &o), STROP_OK);
  ck_assert_ptr_nonnull(ck->plan_base);
  ck_assert_ptr_nonnull(ck->ckpt_first);
  ck_assert_ptr_nonnull(ck->recompute);
  ck_assert_int_eq(ck->recompute[strop__model_node_find(ck, "post_act")], 1);
  strop__model_step_end(ck);
  strop_model_free(fl);
  strop_model_free(ck);
  strop_model_free(plain);
  /* a relu after a linear in a block writes over the linear's output in the recompute as in
   * the forward (plan_off[5 n_nodes + i]: the recompute's outputs), with the same bits */
  static const strop_test_node rn[] = {{"proj", "linear", "out_features=16", "input"},
                                       {"blocks.0.fc1", "linear", "out_features=64", NULL},
                                       {"blocks.0.act", "relu", NULL, NULL},
                                       {"blocks.0.fc2", "linear", "out_features=16", NULL},
                                       {"blocks.1.fc1", "linear", "out_features=64", NULL},
                                       {"blocks.1.act", "relu", NULL, NULL},
                                       {"blocks.1.fc2", "linear", "out_features=16", NULL},
                                       {"head", "linear", "out_features=4", NULL}};
  plain = strop_test_build(1, shape, rn, 8, 37);
  ck_assert_int_eq(strop__model_clone(plain, &ck), STROP_OK);
  ck_assert_int_eq(strop_model_set_checkpointing(ck, "auto"), STROP_OK);
  ckpt_steps(plain, x, N, 4, ga, 240000);
  ckpt_steps(ck, x, N, 4, gb, 240000);
  ck_assert(!memcmp(ga, gb, sizeof ga));
  ckpt_same_state(plain, ck);
  ck_assert_int_eq(strop__model_forward_exec(ck, x, N, 1, NULL, &o), STROP_OK);
  const size_t r0 = 5 * (size_t)ck->n_nodes;
  for (int b = 0; b < 2; b++) {
    ck_assert_uint_ne(ck->plan_off[r0 + 1 + 3 * (size_t)b], SIZE_MAX); /* fc1's */
    ck_assert_uint_eq(ck->plan_off[r0 + 2 + 3 * (size_t)b], SIZE_MAX); /* relu: in place */
    ck_assert_uint_ne(ck->plan_off[r0 + 3 + 3 * (size_t)b], SIZE_MAX); /* fc2's */
  }
  strop__model_step_end(ck);
  strop_model_free(ck);
  strop_model_free(plain);
}
END_TEST

START_TEST(checkpointing_errors) {
  strop_model *m = mlp();
  ck_assert_int_eq(strop_model_set_checkpointing(NULL, "auto"), STROP_E_INVALID_ARG);
  ck_assert_str_ne(strop_last_error(), "");
  ck_assert_int_eq(strop_model_set_checkpointing(m, "blocks.*"), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "blocks.*"));
  ck_assert_int_eq(strop_model_set_checkpointing(m, "auto"), STROP_E_NOT_FOUND);
  char longp[300];
  memset(longp, 'a', sizeof longp - 1);
  longp[sizeof longp - 1] = '\0';
  ck_assert_int_eq(strop_model_set_checkpointing(m, longp), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_get_checkpointing(m, NULL, 0), 0); /* unchanged: off */
  ck_assert_int_eq(strop_model_get_checkpointing(NULL, NULL, 0), -1);
  char b[4];
  ck_assert_int_eq(strop_model_get_checkpointing(m, NULL, sizeof b), -1);
  ck_assert_int_eq(strop_model_checkpoint_blocks(NULL), -1);
  strop_model_free(m);
}
END_TEST

/* ---- node names: refused when taken, however the node array was grown or edited ---- */

/* Every node's name is refused by a plain add and the model keeps its nodes. */
static void names_all_taken(strop_model *m) {
  const int n = m->n_nodes;
  for (int i = 0; i < n; i++) {
    char name[256];
    snprintf(name, sizeof name, "%s", m->nodes[i].name);
    strop_clear_error();
    ck_assert_msg(strop_model_add(m, name, "relu", NULL, NULL) == STROP_E_INVALID_ARG,
                  "'%s' (node %d of %d) was taken again", name, i, n);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "already exists"));
    ck_assert_int_eq(m->n_nodes, n);
  }
}

/* Thousands of adds, plain and composite (whose parts are moved in from a scratch model), over
 * many growths of the node array: every name stays taken, a composite whose parts would clash
 * is refused whole, and new names are still free. */
START_TEST(names_taken_after_many_adds) {
  const int64_t in[2] = {4, 8};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(2, in, &m), STROP_OK);
  char name[64];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "r%d", i);
    ck_assert_int_eq(strop_model_add(m, name, "relu", NULL, NULL), STROP_OK);
    if (i % 500 == 7) {
      snprintf(name, sizeof name, "blk%d", i);
      ck_assert_int_eq(
          strop_model_add(m, name, "transformer_block", "embed_dim=8 num_heads=2", NULL),
          STROP_OK);
    }
  }
  ck_assert_int_eq(strop_model_add(m, "enc", "transformer_encoder",
                                   "d_model=8 nhead=2 num_layers=2 dim_feedforward=16", NULL),
                   STROP_OK);
  const int n = m->n_nodes;
  ck_assert_int_gt(n, 3000 + 6 * 8);
  ck_assert_int_ge(strop__model_node_find(m, "enc.layers.1.linear2"), 0);
  names_all_taken(m);
  /* the parts, each, by a composite of the same name: refused whole */
  strop_clear_error();
  ck_assert_int_eq(
      strop_model_add(m, "blk7", "transformer_block", "embed_dim=8 num_heads=2", NULL),
      STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'blk7.ln1' already exists"));
  ck_assert_int_eq(strop_model_add(m, "enc", "transformer_encoder",
                                   "d_model=8 nhead=2 num_layers=1 dim_feedforward=16", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(m->n_nodes, n);
  /* a composite's name is not a node; a new name is free; a clone judges the same */
  ck_assert_int_eq(strop_model_add(m, "blk7", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "r3000", "relu", NULL, NULL), STROP_OK);
  strop_model *c = NULL;
  ck_assert_int_eq(strop__model_clone(m, &c), STROP_OK);
  names_all_taken(c);
  ck_assert_int_eq(strop_model_add(c, "r3001", "relu", NULL, NULL), STROP_OK);
  strop_model_free(c);
  /* finalize resolves every input by name and reorders nothing here */
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
  ck_assert_int_eq(strop_model_num_nodes(m), n + 2);
  ck_assert_str_eq(m->nodes[n + 1].name, "r3000");
  strop_model_free(m);
}
END_TEST

/* Inputs named before the nodes that make them: finalize reorders the nodes, and when it fails
 * after that (a shape error) the model stays open to adds, whose names are judged right. */
START_TEST(names_taken_after_reorder) {
  const int64_t in[1] = {5};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "b", "relu", NULL, "a"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "a", "linear", "in_features=7 out_features=5", "input"),
                   STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "c", "relu", NULL, "b"), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "d", "relu", NULL, "c"), STROP_OK);
  ck_assert_int_ne(strop_model_finalize(m, 1), STROP_OK);
  ck_assert_str_eq(m->nodes[0].name, "a");
  ck_assert_str_eq(m->nodes[1].name, "b");
  names_all_taken(m);
  ck_assert_int_eq(strop_model_add(m, "e", "relu", NULL, NULL), STROP_OK);
  strop_model_free(m);
}
END_TEST

/* Runs a plan on a copy of base: two appends, x0 and x1 (the first grows the copy's node array,
 * which a clone makes just large enough; the second has the copy index its names), then the
 * edits e: each a kind ('a'ppend, 'b'efore: insert before, 'f'ter: insert after, 'r'emove,
 * 'R'eplace, 't'runcate), its node, and the new name, type and options. Returns the plan's status; the
 * copy in *out (out may be NULL). */
typedef struct name_edit {
  char kind;
  const char *node, *name, *type, *opts;
} name_edit;
static strop_status names_plan(strop_model *base, const name_edit *e, int n, strop_model **out) {
  strop_model *m = NULL;
  ck_assert_int_eq(strop__model_clone(base, &m), STROP_OK);
  strop_surgery *s = NULL;
  ck_assert_int_eq(strop_surgery_create(m, &s), STROP_OK);
  ck_assert_int_eq(strop_surgery_append(s, "x0", "relu", NULL), STROP_OK);
  ck_assert_int_eq(strop_surgery_append(s, "x1", "relu", NULL), STROP_OK);
  for (int i = 0; i < n; i++) {
    strop_status st = STROP_OK;
    switch (e[i].kind) {
      case 'a': st = strop_surgery_append(s, e[i].name, e[i].type, e[i].opts); break;
      case 'b':
        st = strop_surgery_insert_before(s, e[i].node, e[i].name, e[i].type, e[i].opts);
        break;
      case 'f':
        st = strop_surgery_insert_after(s, e[i].node, e[i].name, e[i].type, e[i].opts);
        break;
      case 'r': st = strop_surgery_remove(s, e[i].node); break;
      case 't': st = strop_surgery_truncate(s, e[i].node); break;
      case 'R': st = strop_surgery_replace(s, e[i].node, e[i].type, e[i].opts, 3); break;
      default: ck_abort_msg("edit kind '%c'", e[i].kind);
    }
    ck_assert_int_eq(st, STROP_OK);
  }
  strop_clear_error();
  strop_status st = strop_surgery_apply(s);
  strop_surgery_free(s);
  if (st) ck_assert_int_eq(strop_model_num_nodes(m), strop_model_num_nodes(base));
  if (out) *out = m;
  else strop_model_free(m);
  return st;
}

/* Surgery moves, deletes and replaces nodes between the adds of one plan: a removed or
 * replaced name is free again, a moved node's name stays taken, and so does a name a plain
 * replacement keeps. */
START_TEST(names_after_surgery) {
  static const strop_test_node nodes[] = {{"fc1", "linear", "out_features=8", "input"},
                                          {"act", "relu", NULL, NULL},
                                          {"fc2", "linear", "out_features=8", NULL},
                                          {"act2", "relu", NULL, NULL},
                                          {"head", "linear", "out_features=8", NULL}};
  const int64_t in[2] = {3, 8};
  strop_model *base = strop_test_build(2, in, nodes, 5, 1), *m = NULL;
  const char *blk = "embed_dim=8 num_heads=2";
  /* removed: the nodes after it shift down; their names stay taken, its own is free */
  const name_edit rm_taken[] = {{'r', "act", NULL, NULL, NULL},
                                {'a', NULL, "head", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, rm_taken, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'head' already exists"));
  const name_edit rm_x[] = {{'r', "act", NULL, NULL, NULL}, {'a', NULL, "x0", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, rm_x, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'x0' already exists"));
  const name_edit rm_free[] = {{'r', "act", NULL, NULL, NULL}, {'f', "fc1", "act", "gelu", NULL}};
  ck_assert_int_eq(names_plan(base, rm_free, 2, &m), STROP_OK);
  ck_assert_int_eq(strop_model_num_nodes(m), 7);
  ck_assert_str_eq(m->nodes[1].name, "act");
  ck_assert_str_eq(m->nodes[1].vt->type, "gelu");
  strop_model_free(m);
  /* moved: a node inserted before fc2 or after act shifts fc2 and what follows up */
  const name_edit mv[] = {{'b', "fc2", "mid", "relu", NULL}, {'a', NULL, "x1", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, mv, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'x1' already exists"));
  const name_edit mv2[] = {{'f', "act", "mid", "relu", NULL}, {'a', NULL, "fc2", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, mv2, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'fc2' already exists"));
  const name_edit mv3[] = {{'f', "act", "mid", "relu", NULL}, {'a', NULL, "mid", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, mv3, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'mid' already exists"));
  /* replaced by a composite: the old name is free, the parts' names are taken */
  const name_edit ren_taken[] = {{'R', "act2", NULL, "transformer_block", blk},
                                 {'a', NULL, "act2.ff1", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, ren_taken, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'act2.ff1' already exists"));
  const name_edit ren_head[] = {{'R', "act2", NULL, "transformer_block", blk},
                                {'a', NULL, "head", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, ren_head, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'head' already exists"));
  const name_edit ren_free[] = {{'R', "act2", NULL, "transformer_block", blk},
                                {'a', NULL, "act2", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, ren_free, 2, &m), STROP_OK);
  ck_assert_int_eq(strop__model_node_find(m, "act2.ln1"), 3);
  ck_assert_str_eq(m->nodes[m->n_nodes - 1].name, "act2");
  strop_model_free(m);
  /* replaced by one node: it keeps the name, which stays taken */
  const name_edit keep[] = {{'R', "act", NULL, "gelu", NULL}, {'a', NULL, "act", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, keep, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'act' already exists"));
  const name_edit keep2[] = {{'R', "act", NULL, "gelu", NULL}, {'a', NULL, "head", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, keep2, 2, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'head' already exists"));
  /* truncated: what was dropped is free, what is kept taken */
  const name_edit cut[] = {{'t', "fc2", NULL, NULL, NULL},
                           {'a', NULL, "head", "relu", NULL},
                           {'a', NULL, "fc1", "relu", NULL}};
  ck_assert_int_eq(names_plan(base, cut, 3, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'fc1' already exists"));
  ck_assert_int_eq(names_plan(base, cut, 2, &m), STROP_OK);
  ck_assert_int_eq(strop_model_num_nodes(m), 4);
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

/* A model of 40000 nodes builds and finalizes (each add's name check and each input's lookup
 * were scans of the nodes: 4 s to build it). */
START_TEST(names_many_nodes) {
  const int64_t in[1] = {2};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  char name[32], prev[32] = "input";
  for (int i = 0; i < 40000; i++) {
    snprintf(name, sizeof name, "n%d", i);
    /* every tenth node reads the one ten back too (a DAG, not only a chain) */
    char ins[80];
    if (i >= 10 && i % 10 == 0) snprintf(ins, sizeof ins, "%s,n%d", prev, i - 10);
    ck_assert_int_eq(strop_model_add(m, name, i >= 10 && i % 10 == 0 ? "add" : "relu", NULL,
                                     i >= 10 && i % 10 == 0 ? ins : NULL),
                     STROP_OK);
    snprintf(prev, sizeof prev, "%s", name);
  }
  ck_assert_int_eq(strop_model_add(m, "n123", "relu", NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
  ck_assert_int_eq(strop_model_num_nodes(m), 40000);
  strop_model_free(m);
}
END_TEST

START_TEST(alloc_failures) {
  const int plain = strop_test_alloc_sweep(op_build, free_m, NULL);
  ck_assert_int_ge(plain, 5);
  /* the sort's order, marks and sorted copy too */
  ck_assert_int_ge(strop_test_alloc_sweep(op_build_sorted, free_m, NULL), plain + 3);
}
END_TEST

/* One getter per fact about a node; each refuses bad arguments with a sentence. */
START_TEST(node_getters) {
  strop_model *m = mlp();
  char buf[128];
  ck_assert_int_eq(strop_model_node_name(m, 2, buf, sizeof buf), 4);
  ck_assert_str_eq(buf, "head");
  ck_assert_int_eq(strop_model_node_type(m, 1, buf, sizeof buf), 4);
  ck_assert_str_eq(buf, "relu");
  ck_assert_int_eq(strop_model_node_name(m, 0, NULL, 0), 3); /* the length alone */
  ck_assert_int_eq(strop_model_node_name(m, 0, buf, 2), 3);  /* truncated */
  ck_assert_str_eq(buf, "f");
  int64_t n = strop_model_node_options(m, 0, buf, sizeof buf);
  ck_assert_str_eq(buf, "in_features=4 out_features=8 bias=true weight_layout=out_in");
  ck_assert_int_eq(n, (int64_t)strlen(buf));
  ck_assert_int_eq(strop_model_node_num_inputs(m, 1), 1);
  ck_assert_int_eq(strop_model_node_input(m, 1, 0, buf, sizeof buf), 3);
  ck_assert_str_eq(buf, "fc1");
  ck_assert_int_eq(strop_model_node_input(m, 0, 0, buf, sizeof buf), 5);
  ck_assert_str_eq(buf, "input");
  int64_t d[4];
  ck_assert_int_eq(strop_model_node_output_shape(m, 0, d, 4), 1);
  ck_assert_int_eq(d[0], 8);
  /* the deprecated getter still answers as in 0.1 */
  ck_assert_int_eq(strop_model_node_info(m, 2, 1, buf, sizeof buf), 6);
  ck_assert_str_eq(buf, "linear");
  /* errors */
  strop_clear_error();
  ck_assert_int_eq(strop_model_node_name(m, 3, buf, sizeof buf), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "node 3 is out of range (the model has 3"));
  ck_assert_int_eq(strop_model_node_type(NULL, 0, buf, sizeof buf), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "model is NULL"));
  ck_assert_int_eq(strop_model_node_name(m, 0, NULL, 8), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "buf is NULL"));
  ck_assert_int_eq(strop_model_node_input(m, 0, 1, buf, sizeof buf), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "has 1 inputs, asked for input 1"));
  ck_assert_int_eq(strop_model_node_num_inputs(m, -1), -1);
  ck_assert_int_eq(strop_model_node_output_shape(m, 0, NULL, 4), -1);
  ck_assert_int_eq(strop_model_node_info(m, 0, 2, buf, sizeof buf), -1);
  strop_model_free(m);
}
END_TEST

/* The layer types as the public API lists them: the registry, with each type's schema. */
START_TEST(layer_types) {
  const int n = strop_layer_type_count();
  ck_assert_int_ge(n, 27);
  int seen_linear = 0;
  for (int i = 0; i < n; i++) {
    const char *t = strop_layer_type_name(i);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(strop_layer_type_doc(t));
    ck_assert_int_ge(strop_layer_option_count(t), 0);
    seen_linear |= !strcmp(t, "linear");
  }
  ck_assert(seen_linear);
  ck_assert_ptr_null(strop_layer_type_name(n));
  ck_assert_ptr_null(strop_layer_type_name(-1));
  ck_assert_int_eq(strop_layer_type_is_composite("transformer_block"), 1);
  ck_assert_int_eq(strop_layer_type_is_composite("linear"), 0);
  ck_assert_int_eq(strop_layer_type_is_composite("nope"), -1);
  ck_assert_int_eq(strop_layer_option_count("linear"), 4);
  ck_assert_str_eq(strop_layer_option_name("linear", 1), "out_features");
  ck_assert_ptr_null(strop_layer_option_default("linear", 1)); /* required */
  ck_assert_str_eq(strop_layer_option_default("linear", 2), "true");
  ck_assert_ptr_nonnull(strop_layer_option_doc("linear", 2));
  char buf[128];
  ck_assert_int_eq(strop_layer_option_kind("conv2d", 2, buf, sizeof buf), 6);
  ck_assert_str_eq(buf, "int[2]");
  ck_assert_int_gt(strop_layer_option_allowed("gelu", 0, buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "none, tanh");
  ck_assert_int_eq(strop_layer_param_count("batchnorm2d"), 5);
  ck_assert_str_eq(strop_layer_param_name("batchnorm2d", 4), "num_batches_tracked");
  ck_assert_ptr_nonnull(strop_layer_param_doc("batchnorm2d", 4));
  /* errors */
  ck_assert_int_eq(strop_layer_option_count("nope"), -1);
  ck_assert_int_eq(strop_layer_option_count(NULL), -1);
  ck_assert_ptr_null(strop_layer_option_name("linear", 4));
  ck_assert_ptr_null(strop_layer_type_doc(NULL));
  ck_assert_int_eq(strop_layer_option_kind("linear", 9, buf, sizeof buf), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "layer type 'linear' has no option 9"));
  ck_assert_int_eq(strop_layer_option_allowed("nope", 0, buf, sizeof buf), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "unknown layer type 'nope'"));
  ck_assert_int_eq(strop_layer_param_count("nope"), -1);
  ck_assert_ptr_null(strop_layer_param_name("linear", 2));
}
END_TEST

/* reinit: the weights a fresh build with that seed gets; flags back to the defaults. */
START_TEST(reinit_is_a_fresh_build) {
  strop_model *m = mlp(), *fresh = NULL;
  int64_t in[1] = {4};
  ck_assert_int_eq(strop_model_create(1, in, &fresh), STROP_OK);
  ck_assert_int_eq(strop_model_add(fresh, "fc1", "linear", "out_features=8", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(fresh, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(fresh, "head", "linear", "out_features=3", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(fresh, 99), STROP_OK);
  ck_assert_int_eq(strop_model_freeze(m, "fc1*"), STROP_OK);
  ck_assert_int_eq(strop_model_reinit(m, 99), STROP_OK);
  for (int64_t i = 0; i < strop_model_num_tensors(m); i++) {
    char name[64];
    ck_assert_int_gt(strop_model_tensor_name(m, i, name, sizeof name), 0);
    strop_tensor *a = NULL, *b = NULL;
    ck_assert_int_eq(strop_model_tensor_view(m, name, &a), STROP_OK);
    ck_assert_int_eq(strop_model_tensor_view(fresh, name, &b), STROP_OK);
    ck_assert_int_eq(
        memcmp(strop_tensor_data(a), strop_tensor_data(b), strop_tensor_numel(a) * sizeof(float)),
        0);
    ck_assert_int_eq(strop_model_param_trainable(m, name), 1);
    strop_tensor_free(a);
    strop_tensor_free(b);
  }
  ck_assert_int_eq(strop_model_reinit(NULL, 1), STROP_E_INVALID_ARG);
  strop_model *raw = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &raw), STROP_OK);
  ck_assert_int_eq(strop_model_reinit(raw, 1), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_model_reinit"));
  strop_model_free(raw);
  strop_model_free(fresh);
  strop_model_free(m);
}
END_TEST

/* ---- shapes that vary from batch to batch ---- */

/* conv (with a fused relu and max-pool), global pool, linear: any image size */
static strop_model *cnn_at(int64_t h, int64_t w) {
  int64_t in[3] = {2, h, w};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(3, in, &m), STROP_OK);
  ck_assert_int_eq(
      strop_model_add(m, "conv", "conv2d", "out_channels=3 kernel_size=3 padding=1", NULL),
      STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "pool", "maxpool2d", "kernel_size=2", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "gap", "global_avgpool", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=2", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 5), STROP_OK);
  return m;
}

/* embedding -> positional embedding (max 8) -> attention -> mean pool -> linear: any T <= 8 */
static strop_model *seq_at(int64_t t) {
  int64_t in[1] = {t};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(
      strop_model_add(m, "emb", "embedding", "num_embeddings=10 embedding_dim=4", NULL),
      STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "pos", "positional_embedding", "num_embeddings=8", NULL),
                   STROP_OK);
  ck_assert_int_eq(
      strop_model_add(m, "attn", "multihead_attention", "num_heads=2 causal=true", NULL),
      STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "pool", "mean_pool", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "out_features=3", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 6), STROP_OK);
  return m;
}

/* Runs a (train-mode) step of n samples of per-sample shape sh through m: the output and
 * every parameter gradient, concatenated, into a new array of *len floats. */
static float *step(strop_model *m, const float *x, int64_t n, const strop__shape *sh,
                   size_t *len) {
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_msg(strop__model_forward_shaped(m, x, n, sh, 1, NULL, &o) == STROP_OK, "%s",
                strop_last_error());
  size_t out = (size_t)o->n * strop__shape_numel(&o->shape), total = out;
  for (int i = 0; i < m->n_params; i++) total += m->params[i]->grad ? m->params[i]->numel : 0;
  float *r = malloc(total * sizeof *r), *dout = malloc(out * sizeof *dout);
  for (size_t i = 0; i < out; i++) dout[i] = 0.25f * (float)((i * 7) % 5) - 0.5f;
  memcpy(r, o->data, out * sizeof *r);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  size_t k = out;
  for (int i = 0; i < m->n_params; i++) {
    strop__param_grad_fresh(m->params[i]);
    if (!m->params[i]->grad) continue;
    memcpy(r + k, m->params[i]->grad, m->params[i]->numel * sizeof *r);
    k += m->params[i]->numel;
  }
  strop__model_step_end(m);
  free(dout);
  *len = total;
  return r;
}

static void same_floats(const float *a, const float *b, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(fabsf(a[i] - b[i]) <= 1e-5f * (1.0f + fabsf(b[i])), "%s [%zu]: %g vs %g", what,
                  i, (double)a[i], (double)b[i]);
}

/* A model built at one size runs batches of another exactly as a model built at that size. */
START_TEST(variable_image_size) {
  strop_model *nominal = cnn_at(8, 8), *big = cnn_at(12, 10);
  ck_assert_int_eq(strop__model_copy_state(big, nominal), STROP_OK);
  float x[3 * 2 * 12 * 10];
  for (int i = 0; i < 3 * 2 * 12 * 10; i++) x[i] = (float)((i * 13) % 17) / 17.0f - 0.4f;
  const strop__shape sh = {3, {2, 12, 10}};
  size_t la, lb;
  float *a = step(nominal, x, 3, &sh, &la), *b = step(big, x, 3, NULL, &lb);
  ck_assert_uint_eq(la, lb);
  same_floats(a, b, la, "12x10 images through a model built at 8x8");
  free(a);
  free(b);
  /* and back: the nominal size still runs */
  a = step(nominal, x, 2, NULL, &la);
  free(a);
  /* the public forward takes the other size too */
  strop_tensor *t = NULL, *y = NULL;
  int64_t d[4] = {1, 2, 5, 7};
  ck_assert_int_eq(strop_tensor_create(4, d, &t), STROP_OK);
  ck_assert_int_eq(strop_model_forward(nominal, t, &y), STROP_OK);
  ck_assert_int_eq(strop_tensor_dim(y, 1), 2);
  strop_tensor_free(y);
  strop_tensor_free(t);
  /* a size a layer cannot take is refused, naming it and the input */
  int64_t tiny[4] = {1, 2, 1, 1};
  ck_assert_int_eq(strop_tensor_create(4, tiny, &t), STROP_OK);
  ck_assert_int_eq(strop_model_forward(nominal, t, &y), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "input [1, 2, 1, 1]"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "layer 'pool' (maxpool2d)"));
  ck_assert_ptr_null(y);
  strop_tensor_free(t);
  strop_model_free(nominal);
  strop_model_free(big);
}
END_TEST

START_TEST(variable_sequence_length) {
  strop_model *m8 = seq_at(8), *m5 = seq_at(5);
  ck_assert_int_eq(strop__model_copy_state(m5, m8), STROP_OK);
  float ids[4 * 5];
  for (int i = 0; i < 20; i++) ids[i] = (float)((i * 3) % 10);
  const strop__shape t5 = {1, {5}};
  size_t la, lb;
  float *a = step(m8, ids, 4, &t5, &la), *b = step(m5, ids, 4, NULL, &lb);
  ck_assert_uint_eq(la, lb);
  same_floats(a, b, la, "T = 5 through a model built for T = 8");
  free(a);
  free(b);
  /* longer than the positional table: refused, naming the layer */
  float many[9] = {0};
  const strop__shape t9 = {1, {9}};
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_shaped(m8, many, 1, &t9, 0, NULL, &o), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "sequence length 9 exceeds num_embeddings 8"));
  strop_model_free(m8);
  strop_model_free(m5);
}
END_TEST

/* Alternating between two shapes already seen allocates nothing. */
START_TEST(warm_steps_of_seen_shapes_allocate_nothing) {
  strop_model *m = cnn_at(8, 8);
  static float x[4 * 2 * 12 * 12], dout[4 * 2];
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = (float)(i % 7) / 7.0f;
  for (int i = 0; i < 8; i++) dout[i] = 0.1f;
  const strop__shape s1 = {3, {2, 8, 8}}, s2 = {3, {2, 12, 12}};
  const strop__act *o;
  for (int k = 0; k < 6; k++) {
    int64_t before = strop__alloc_count();
    ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
    ck_assert_int_eq(strop__model_forward_shaped(m, x, 4, k % 2 ? &s2 : &s1, 1, NULL, &o),
                     STROP_OK);
    ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
    strop__model_step_end(m);
    if (k >= 3)
      ck_assert_msg(strop__alloc_count() == before, "step %d made %lld heap allocations", k,
                    (long long)(strop__alloc_count() - before));
  }
  strop_model_free(m);
}
END_TEST

/* ---- weight tying ---- */

/* ids [T] -> wte -> lm_head (no bias) whose weight is wte's: GPT-2's tied head */
static strop_model *tied_lm(int tie) {
  int64_t in[1] = {3};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(
      strop_model_add(m, "wte", "embedding", "num_embeddings=6 embedding_dim=4", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "act", "tanh", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "lm_head", "linear", "out_features=6 bias=false", NULL),
                   STROP_OK);
  if (tie) ck_assert_int_eq(strop_model_tie(m, "lm_head.weight", "wte.weight"), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 3), STROP_OK);
  return m;
}

START_TEST(tied_weights_are_one_tensor) {
  strop_model *m = tied_lm(1);
  ck_assert_int_eq(strop_model_num_tensors(m), 1); /* one name, the owner's */
  ck_assert_int_eq(strop_model_param_count(m, 0), 24);
  /* the output is tanh(E[id]) E^T with the one matrix E */
  strop_tensor *x = NULL, *y = NULL, *e = NULL;
  int64_t xd[2] = {1, 3};
  ck_assert_int_eq(strop_tensor_create(2, xd, &x), STROP_OK);
  strop_tensor_data(x)[0] = 1;
  strop_tensor_data(x)[1] = 5;
  strop_tensor_data(x)[2] = 0;
  ck_assert_int_eq(strop_model_forward(m, x, &y), STROP_OK);
  ck_assert_int_eq(strop_model_tensor_view(m, "wte.weight", &e), STROP_OK);
  const float *E = strop_tensor_data(e), *Y = strop_tensor_data(y);
  for (int t = 0; t < 3; t++) {
    const int id = (int)strop_tensor_data(x)[t];
    for (int v = 0; v < 6; v++) {
      double want = 0;
      for (int d = 0; d < 4; d++) want += tanh((double)E[id * 4 + d]) * (double)E[v * 4 + d];
      ck_assert_msg(fabs(Y[t * 6 + v] - want) < 1e-5, "y[%d][%d] %g vs %g", t, v,
                    (double)Y[t * 6 + v], want);
    }
  }
  strop_tensor_free(y);
  strop_tensor_free(e);
  strop_tensor_free(x);
  /* the gradient is the sum of both uses: a finite-difference check on the one tensor */
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.int_inputs = 1;
  o.int_max = 6;
  strop_test_gradcheck(m, 2, 7, &o);
  /* a freeze of the alias freezes the owner */
  ck_assert_int_eq(strop_model_freeze(m, "lm_head"), STROP_OK);
  ck_assert_int_eq(strop_model_param_trainable(m, "wte.weight"), 0);
  ck_assert_int_eq(strop_model_unfreeze(m, "lm_head.weight"), STROP_OK);
  ck_assert_int_eq(strop_model_param_trainable(m, "wte.weight"), 1);
  /* files hold it once; a copy keeps the tie */
  char path[] = "/tmp/strop_tie_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  ck_assert_int_eq(strop_model_save_weights(m, path), STROP_OK);
  strop_model *c = tied_lm(1), *u = tied_lm(0);
  ck_assert_int_eq(strop_model_load_weights(c, path, STROP_LOAD_STRICT, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(u, path, STROP_LOAD_STRICT, NULL), STROP_E_NOT_FOUND);
  strop_model *k = NULL;
  ck_assert_int_eq(strop_model_clone(m, &k), STROP_OK);
  ck_assert_int_eq(strop_model_num_tensors(k), 1);
  ck_assert_ptr_eq(strop__node_p(&k->nodes[2], 0), k->params[0]);
  unlink(path);
  /* a spec says it too: written back and read again */
  char spec[4096];
  ck_assert_int_gt(strop_model_spec_string(m, spec, sizeof spec), 0);
  ck_assert_ptr_nonnull(strstr(spec, "tie: {weight: wte.weight}"));
  strop_model *fromspec = NULL;
  ck_assert_msg(strop_model_load_spec_string(spec, &fromspec) == STROP_OK, "%s",
                strop_last_error());
  ck_assert_int_eq(strop_model_num_tensors(fromspec), 1);
  strop_model_free(fromspec);
  const char *bad = "input: [3]\nlayers:\n  - {name: e, type: embedding, num_embeddings: 6, "
                    "embedding_dim: 4}\n  - {name: h, type: linear, out_features: 6, "
                    "tie: {weight: nope.weight}}\n";
  ck_assert_int_eq(strop_model_load_spec_string(bad, &fromspec), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "nope.weight"));
  strop_model_free(k);
  strop_model_free(u);
  strop_model_free(c);
  strop_model_free(m);
}
END_TEST

START_TEST(tie_errors) {
  strop_model *m = tied_lm(0);
  const int64_t before = strop_model_num_tensors(m);
  ck_assert_int_eq(strop_model_tie(m, "lm_head.weight", "nope.weight"), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_model_tie"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "nope.weight"));
  ck_assert_int_eq(strop_model_num_tensors(m), before);
  ck_assert_int_eq(strop_model_tie(m, "nonode.weight", "wte.weight"), STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop_model_tie(m, "lm_head.bias", "wte.weight"), STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop_model_tie(m, NULL, "wte.weight"), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_tie(m, "lm_head.weight", ""), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_num_tensors(m), before);
  /* after finalize the tie takes effect at once, and the model still runs */
  ck_assert_int_eq(strop_model_tie(m, "lm_head.weight", "wte.weight"), STROP_OK);
  ck_assert_int_eq(strop_model_num_tensors(m), before - 1);
  /* a cycle is refused and changes nothing */
  ck_assert_int_eq(strop_model_tie(m, "wte.weight", "lm_head.weight"), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "cycle"));
  ck_assert_int_eq(strop_model_num_tensors(m), before - 1);
  strop_model_free(m);
  /* shapes must agree: checked at finalize */
  int64_t in[1] = {4};
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "a", "linear", "out_features=4", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "b", "linear", "out_features=3", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_tie(m, "b.weight", "a.weight"), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'b.weight' [3, 4] cannot be tied to "
                                                   "'a.weight' [4, 4]"));
  strop_model_free(m);
}
END_TEST

/* ---- metadata ---- */

static char *meta_of(const strop_model *m, const char *key) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  int64_t n = strop_model_get_meta(m, key, buf[k], sizeof buf[k]);
  return n < 0 ? NULL : buf[k];
}

/* Set, replace, remove, list in key order; clone and surgery carry the entries along. */
START_TEST(meta_set_get_list) {
  strop_model *m = mlp(), *c = NULL;
  ck_assert_int_eq(strop_model_meta_count(m), 0);
  ck_assert_int_eq(strop_model_set_meta(m, "zeta", "1"), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, "classes", "[{\"label\": 5}]"), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, "input.scale", "0.5"), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, "zeta", "\xc3\xa9t\xc3\xa9"), STROP_OK); /* replaced */
  ck_assert_int_eq(strop_model_set_meta(m, "empty", ""), STROP_OK);
  ck_assert_int_eq(strop_model_meta_count(m), 4);
  const char *want[] = {"classes", "empty", "input.scale", "zeta"};
  char key[64];
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(strop_model_meta_key(m, i, key, sizeof key), (int64_t)strlen(want[i]));
    ck_assert_str_eq(key, want[i]);
  }
  ck_assert_str_eq(meta_of(m, "zeta"), "\xc3\xa9t\xc3\xa9");
  ck_assert_str_eq(meta_of(m, "empty"), "");
  /* the length without a buffer, truncation with a small one */
  ck_assert_int_eq(strop_model_get_meta(m, "classes", NULL, 0), 14);
  char small[4];
  ck_assert_int_eq(strop_model_get_meta(m, "classes", small, sizeof small), 14);
  ck_assert_str_eq(small, "[{\"");
  /* absent: -1 and a sentence */
  strop_clear_error();
  ck_assert_int_eq(strop_model_get_meta(m, "nope", key, sizeof key), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "no metadata 'nope'"));
  /* removing */
  ck_assert_int_eq(strop_model_set_meta(m, "empty", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, "empty", NULL), STROP_OK); /* absent: fine */
  ck_assert_int_eq(strop_model_meta_count(m), 3);
  /* a clone is a deep copy */
  ck_assert_int_eq(strop_model_clone(m, &c), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, "zeta", "2"), STROP_OK);
  ck_assert_str_eq(meta_of(c, "zeta"), "\xc3\xa9t\xc3\xa9");
  ck_assert_str_eq(meta_of(c, "input.scale"), "0.5");
  /* surgery works on a clone and keeps the entries */
  strop_surgery *sg = NULL;
  ck_assert_int_eq(strop_surgery_create(m, &sg), STROP_OK);
  ck_assert_int_eq(strop_surgery_remove(sg, "act"), STROP_OK);
  ck_assert_int_eq(strop_surgery_apply(sg), STROP_OK);
  strop_surgery_free(sg);
  ck_assert_str_eq(meta_of(m, "zeta"), "2");
  ck_assert_str_eq(meta_of(m, "classes"), "[{\"label\": 5}]");
  /* a fresh baseline (reinit) keeps them too: they describe the task, not the values */
  ck_assert_int_eq(strop_model_reinit(m, 3), STROP_OK);
  ck_assert_int_eq(strop_model_meta_count(m), 3);
  strop_model_free(c);
  strop_model_free(m);
}
END_TEST

/* Bad arguments: the right status, a sentence, nothing changed, nothing leaked. */
START_TEST(meta_errors) {
  strop_model *m = mlp();
  ck_assert_int_eq(strop_model_set_meta(m, "a", "1"), STROP_OK);
  int64_t live = strop__alloc_live();
  static const struct {
    const char *key, *value, *says;
  } bad[] = {{NULL, "v", "key '(null)': the key is empty"},
             {"", "v", "the key is empty"},
             {"has space", "v", "printable ASCII"},
             {"tab\tkey", "v", "printable ASCII"},
             {"a", "\xc3\x28", "'a': the value is not valid UTF-8"},
             {"b", "\xed\xa0\x80", "not valid UTF-8"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    strop_clear_error();
    ck_assert_int_eq(strop_model_set_meta(m, bad[i].key, bad[i].value), STROP_E_INVALID_ARG);
    ck_assert_msg(strstr(strop_last_error(), bad[i].says) &&
                      strstr(strop_last_error(), "strop_model_set_meta: "),
                  "case %zu: %s", i, strop_last_error());
  }
  char longkey[STROP_META_KEY_MAX + 2];
  memset(longkey, 'k', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  ck_assert_int_eq(strop_model_set_meta(m, longkey, "v"), STROP_E_INVALID_ARG);
  longkey[STROP_META_KEY_MAX] = '\0'; /* exactly the limit */
  ck_assert_int_eq(strop_model_set_meta(m, longkey, "v"), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, longkey, NULL), STROP_OK);
  char *big = malloc(STROP_META_VALUE_MAX + 2);
  memset(big, 'x', STROP_META_VALUE_MAX + 1);
  big[STROP_META_VALUE_MAX + 1] = '\0';
  ck_assert_int_eq(strop_model_set_meta(m, "a", big), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "more than the limit"));
  free(big);
  ck_assert_int_eq(strop_model_set_meta(NULL, "a", "1"), STROP_E_INVALID_ARG);
  /* the entry count is bounded */
  char k[32];
  for (int i = 1; i < STROP_META_MAX_ENTRIES; i++) {
    snprintf(k, sizeof k, "k%04d", i);
    ck_assert_int_eq(strop_model_set_meta(m, k, "v"), STROP_OK);
  }
  ck_assert_int_eq(strop_model_set_meta(m, "one.more", "v"), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "the most it may hold"));
  ck_assert_int_eq(strop_model_set_meta(m, "k0001", "replacing is fine"), STROP_OK);
  for (int i = 1; i < STROP_META_MAX_ENTRIES; i++) {
    snprintf(k, sizeof k, "k%04d", i);
    ck_assert_int_eq(strop_model_set_meta(m, k, NULL), STROP_OK);
  }
  /* the model is as it was */
  ck_assert_int_eq(strop_model_meta_count(m), 1);
  ck_assert_str_eq(meta_of(m, "a"), "1");
  /* getters */
  char buf[8];
  strop_clear_error();
  ck_assert_int_eq(strop_model_get_meta(NULL, "a", buf, sizeof buf), -1);
  ck_assert_str_ne(strop_last_error(), "");
  ck_assert_int_eq(strop_model_get_meta(m, NULL, buf, sizeof buf), -1);
  ck_assert_int_eq(strop_model_get_meta(m, "a", NULL, 4), -1);
  ck_assert_int_eq(strop_model_meta_count(NULL), -1);
  strop_clear_error();
  ck_assert_int_eq(strop_model_meta_key(m, 1, buf, sizeof buf), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "out of range"));
  ck_assert_int_eq(strop_model_meta_key(m, -1, buf, sizeof buf), -1);
  ck_assert_int_eq(strop_model_meta_key(NULL, 0, buf, sizeof buf), -1);
  ck_assert_int_eq(strop_model_meta_key(m, 0, NULL, 4), -1);
  ck_assert_int_eq(strop__alloc_live(), live);
  strop_model_free(m);
}
END_TEST

static strop_model *g_meta_m, *g_meta_out;
static int op_meta_model(void *ctx) {
  (void)ctx;
  int64_t in = 2;
  strop_status s = strop_model_create(1, &in, &g_meta_out);
  for (int i = 0; !s && i < 12; i++) {
    char k[8];
    snprintf(k, sizeof k, "k%02d", 11 - i); /* each new key goes first: the arrays shift */
    s = strop_model_set_meta(g_meta_out, k, "value");
  }
  if (!s) s = strop_model_set_meta(g_meta_out, "k05", NULL);
  if (s) {
    strop_model_free(g_meta_out);
    g_meta_out = NULL;
  }
  return s;
}
static int op_meta_clone(void *ctx) {
  (void)ctx;
  return strop_model_clone(g_meta_m, &g_meta_out);
}
static void meta_out_free(void *ctx) {
  (void)ctx;
  strop_model_free(g_meta_out);
  g_meta_out = NULL;
}

/* Running out of memory anywhere leaks nothing; a failed set leaves the entries as they were. */
START_TEST(meta_alloc_failures) {
  ck_assert_int_ge(strop_test_alloc_sweep(op_meta_model, meta_out_free, NULL), 12);
  g_meta_m = mlp();
  char k[8];
  for (int i = 0; i < 8; i++) {
    snprintf(k, sizeof k, "k%d", i);
    ck_assert_int_eq(strop_model_set_meta(g_meta_m, k, "v"), STROP_OK); /* the arrays are full */
  }
  for (int64_t n = 1;; n++) {
    strop__alloc_fail_at(n);
    strop_status st = strop_model_set_meta(g_meta_m, "a.new", "value");
    int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    if (!hit) {
      ck_assert_int_eq(st, STROP_OK);
      break;
    }
    ck_assert_int_eq(st, STROP_E_NOMEM);
    ck_assert_int_eq(strop_model_meta_count(g_meta_m), 8);
    ck_assert_int_eq(strop_model_get_meta(g_meta_m, "a.new", NULL, 0), -1);
    ck_assert_int_eq(strop_model_meta_key(g_meta_m, 0, k, sizeof k), 2);
    ck_assert_str_eq(k, "k0");
  }
  ck_assert_int_eq(strop_model_meta_count(g_meta_m), 9);
  ck_assert_int_ge(strop_test_alloc_sweep(op_meta_clone, meta_out_free, NULL), 18);
  strop_model_free(g_meta_m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("graph");
  TCase *tc = tcase_create("build");
  tcase_add_test(tc, build_mlp);
  tcase_add_test(tc, forward_matches_manual);
  tcase_add_test(tc, clone_is_deep);
  tcase_add_test(tc, node_getters);
  tcase_add_test(tc, layer_types);
  tcase_add_test(tc, reinit_is_a_fresh_build);
  suite_add_tcase(s, tc);
  tc = tcase_create("names");
  tcase_add_test(tc, names_taken_after_many_adds);
  tcase_add_test(tc, names_taken_after_reorder);
  tcase_add_test(tc, names_after_surgery);
  tcase_add_test(tc, names_many_nodes);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, build_errors);
  tcase_add_test(tc, finalize_errors);
  tcase_add_test(tc, alloc_failures);
  suite_add_tcase(s, tc);
  tc = tcase_create("backward");
  tcase_add_test(tc, dag_gradcheck);
  tcase_add_test(tc, warm_step_allocates_nothing);
  tcase_add_test(tc, frozen_trunk_stops_backward);
  tcase_add_test(tc, frozen_trunk_keeps_only_live_activations);
  tcase_add_test(tc, in_place_and_unread_activations);
  tcase_add_test(tc, planned_step_memory);
  tcase_add_test(tc, first_writer_assigns_input_gradients);
  tcase_add_test(tc, residual_sum_in_conv_epilogue);
  tcase_add_test(tc, unread_outputs_are_not_kept);
  tcase_add_test(tc, cheap_outputs_computed_again);
  suite_add_tcase(s, tc);
  tc = tcase_create("checkpointing");
  tcase_add_test(tc, checkpointing_resnet_blocks_bit_identical);
  tcase_add_test(tc, bn_relu_fused_bit_identical);
  tcase_add_test(tc, bn_add_relu_fused_bit_identical);
  tcase_add_test(tc, checkpointing_transformer_dropout_bit_identical);
  tcase_add_test(tc, checkpointing_errors);
  tcase_add_test(tc, checkpointing_planned_below_plain);
  suite_add_tcase(s, tc);
  tc = tcase_create("metadata");
  tcase_add_test(tc, meta_set_get_list);
  tcase_add_test(tc, meta_errors);
  tcase_add_test(tc, meta_alloc_failures);
  suite_add_tcase(s, tc);
  tc = tcase_create("tying");
  tcase_add_test(tc, tied_weights_are_one_tensor);
  tcase_add_test(tc, tie_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("shapes");
  tcase_add_test(tc, variable_image_size);
  tcase_add_test(tc, variable_sequence_length);
  tcase_add_test(tc, warm_steps_of_seen_shapes_allocate_nothing);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
