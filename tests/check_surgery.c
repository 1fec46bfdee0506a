/* SPDX-License-Identifier: MIT */
/* strop tests — surgery suite: freeze with a frozen BatchNorm trunk through training steps,
 * replace/insert/remove/truncate/append, LoRA (exactness at start, training, merge, PEFT
 * files, gradcheck, PyTorch parity), the transaction on every kind of error, describe,
 * summary, memory estimate and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/graph.h"
#include "harness.h"
#include "io/safetensors.h"
#include "layers/lora.h"
#include "ops/lowp.h"
#include "strop/strop.h"
#include "surgery/surgery_impl.h"
#include "testutil.h"

#define OK(x) ck_assert_msg((x) == STROP_OK, "%s: %s", #x, strop_last_error())

/* ---- models ---- */
static strop_model *mlp(void) {
  int64_t in[1] = {4};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "fc1", "linear", "out_features=8", NULL));
  OK(strop_model_add(m, "act", "relu", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m, 7));
  return m;
}

/* a small CNN: a conv + BatchNorm trunk and a linear head */
static strop_model *cnn(void) {
  int64_t in[3] = {2, 6, 6};
  strop_model *m = NULL;
  OK(strop_model_create(3, in, &m));
  OK(strop_model_add(m, "features.0", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL));
  OK(strop_model_add(m, "features.1", "batchnorm2d", NULL, NULL));
  OK(strop_model_add(m, "features.2", "relu", NULL, NULL));
  OK(strop_model_add(m, "features.3", "conv2d", "out_channels=6 kernel_size=3", NULL));
  OK(strop_model_add(m, "features.4", "batchnorm2d", NULL, NULL));
  OK(strop_model_add(m, "pool", "global_avgpool", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m, 11));
  return m;
}

/* residual DAG: fc1 -> (a, b) -> sum -> head */
static strop_model *dag(void) {
  int64_t in[1] = {4};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "fc1", "linear", "out_features=6", NULL));
  OK(strop_model_add(m, "a", "tanh", NULL, "fc1"));
  OK(strop_model_add(m, "b", "linear", "out_features=6", "fc1"));
  OK(strop_model_add(m, "sum", "add", NULL, "a,b"));
  OK(strop_model_add(m, "head", "linear", "out_features=2", "sum"));
  OK(strop_model_finalize(m, 3));
  return m;
}

static float *rand_floats(size_t n, uint64_t seed, float scale) {
  strop__rng g;
  strop__rng_seed(&g, seed, 9);
  float *x = malloc(n * sizeof *x + 1);
  for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * strop__rng_uniform(&g) - 1.0f);
  return x;
}

static size_t in_numel(const strop_model *m, int64_t batch) {
  return (size_t)batch * strop__shape_numel(&m->in_shape);
}

/* forward in eval mode; returns a malloc'd copy of the output and its numel */
static float *run(strop_model *m, const float *x, int64_t batch, size_t *n_out) {
  const strop__act *o;
  ck_assert_msg(strop__model_forward_exec(m, x, batch, 0, NULL, &o) == STROP_OK, "%s",
                strop_last_error());
  size_t n = (size_t)batch * strop__shape_numel(&o->shape);
  float *y = malloc(n * sizeof *y + 1);
  memcpy(y, o->data, n * sizeof *y);
  strop__model_step_end(m);
  if (n_out) *n_out = n;
  return y;
}

/* One training step: forward in train mode, backward of sum(out .* r), then p -= lr * grad on
 * trainable parameters (the optimizer's job, by hand). */
static void sgd_step(strop_model *m, const float *x, int64_t batch, float lr, uint64_t seed) {
  OK(strop__model_zero_grad(m));
  const strop__act *o;
  OK(strop__model_forward_exec(m, x, batch, 1, NULL, &o));
  size_t n = (size_t)batch * strop__shape_numel(&o->shape);
  float *r = rand_floats(n, seed, 1.0f);
  OK(strop__model_backward(m, r));
  strop__model_step_end(m);
  free(r);
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (!p->trainable || p->is_buffer) continue;
    ck_assert_ptr_nonnull(p->grad);
    for (size_t k = 0; k < p->numel; k++) p->data[k] -= lr * p->grad[k];
  }
}

/* ---- snapshots: everything a failed edit must leave alone ---- */
typedef struct snap {
  char summary[8192];
  int n;
  char **names;
  float **data;
  int64_t *idata;
  size_t *numel;
  int *flags;
  float *lr;
  int frozen_stats[64];
  int n_nodes;
} snap;

static void snap_take(const strop_model *m, snap *s) {
  memset(s, 0, sizeof *s);
  ck_assert_int_lt(strop_model_summary(m, s->summary, sizeof s->summary),
                   (int64_t)sizeof s->summary);
  s->n = m->n_params;
  s->names = calloc((size_t)s->n + 1, sizeof *s->names);
  s->data = calloc((size_t)s->n + 1, sizeof *s->data);
  s->idata = calloc((size_t)s->n + 1, sizeof *s->idata);
  s->numel = calloc((size_t)s->n + 1, sizeof *s->numel);
  s->flags = calloc((size_t)s->n + 1, sizeof *s->flags);
  s->lr = calloc((size_t)s->n + 1, sizeof *s->lr);
  for (int i = 0; i < s->n; i++) {
    const strop__param *p = m->params[i];
    s->names[i] = strdup(p->name);
    s->numel[i] = p->numel;
    s->flags[i] = p->trainable * 4 + p->no_decay * 2 + p->is_buffer;
    s->lr[i] = p->lr_mult;
    if (p->data) {
      s->data[i] = malloc(p->numel * sizeof(float) + 1);
      memcpy(s->data[i], p->data, p->numel * sizeof(float));
    } else {
      s->idata[i] = p->idata[0];
    }
  }
  s->n_nodes = m->n_nodes;
  for (int i = 0; i < m->n_nodes && i < 64; i++) s->frozen_stats[i] = m->nodes[i].frozen_stats;
}

static void snap_free(snap *s) {
  for (int i = 0; i < s->n; i++) {
    free(s->names[i]);
    free(s->data[i]);
  }
  free(s->names);
  free(s->data);
  free(s->idata);
  free(s->numel);
  free(s->flags);
  free(s->lr);
}

/* the model equals the snapshot bit for bit */
static void snap_check(const strop_model *m, const snap *s) {
  char now[8192];
  strop_model_summary(m, now, sizeof now);
  ck_assert_str_eq(now, s->summary);
  ck_assert_int_eq(m->n_params, s->n);
  ck_assert_int_eq(m->n_nodes, s->n_nodes);
  for (int i = 0; i < s->n; i++) {
    const strop__param *p = m->params[i];
    ck_assert_str_eq(p->name, s->names[i]);
    ck_assert_uint_eq(p->numel, s->numel[i]);
    ck_assert_int_eq(p->trainable * 4 + p->no_decay * 2 + p->is_buffer, s->flags[i]);
    ck_assert(p->lr_mult == s->lr[i]);
    if (p->data)
      ck_assert_msg(memcmp(p->data, s->data[i], p->numel * sizeof(float)) == 0, "%s changed",
                    p->name);
    else ck_assert_int_eq(p->idata[0], s->idata[i]);
  }
  for (int i = 0; i < m->n_nodes && i < 64; i++)
    ck_assert_int_eq(m->nodes[i].frozen_stats, s->frozen_stats[i]);
}

static int same_param(const strop_model *a, const strop_model *b, const char *name) {
  strop__param *p = strop__model_param_find((strop_model *)a, name);
  strop__param *q = strop__model_param_find((strop_model *)b, name);
  ck_assert_msg(p && q, "no parameter %s", name);
  if (p->numel != q->numel) return 0;
  if (!p->data) return p->idata[0] == q->idata[0];
  return memcmp(p->data, q->data, p->numel * sizeof(float)) == 0;
}

/* ---- glob ---- */
START_TEST(glob_matching) {
  ck_assert(strop__glob_match("features.*", "features.0.weight"));
  ck_assert(strop__glob_match("*.bias", "blocks.1.attn.bias"));
  ck_assert(!strop__glob_match("*.bias", "blocks.1.attn.weight"));
  ck_assert(strop__glob_match("blocks.[0-3].*", "blocks.2.fc.weight"));
  ck_assert(!strop__glob_match("blocks.[0-3].*", "blocks.4.fc.weight"));
  ck_assert(strop__glob_match("blocks.[!0-3].*", "blocks.7.x"));
  ck_assert(strop__glob_match("fc?", "fc1"));
  ck_assert(!strop__glob_match("fc?", "fc12"));
  ck_assert(strop__glob_match("head", "head"));
  ck_assert(!strop__glob_match("head", "head.weight"));
  ck_assert(strop__glob_match("*", ""));
  ck_assert(strop__glob_match("a*b*c", "axxbyyc"));
  ck_assert(!strop__glob_match("a*b*c", "axxbyy"));
  ck_assert(strop__glob_match("a\\*", "a*"));
  ck_assert(!strop__glob_match("a\\*", "ab"));
  ck_assert(strop__glob_match("x[", "x["));
  ck_assert(strop__glob_match("[ab]]", "a]"));
  ck_assert(strop__glob_is_pattern("a.[0-3]") && !strop__glob_is_pattern("a.b"));
}
END_TEST

/* ---- freeze ---- */
static void frozen_trunk_training(int use_optimizer) {
  strop_model *m = cnn();
  OK(strop_model_freeze(m, "features.*"));
  ck_assert_int_eq(strop_model_param_trainable(m, "features.0.weight"), 0);
  ck_assert_int_eq(strop_model_param_trainable(m, "features.1.bias"), 0);
  ck_assert_int_eq(strop_model_param_trainable(m, "head.weight"), 1);
  ck_assert_int_eq(strop_model_param_trainable(m, "features.1.running_mean"), 0);
  ck_assert_int_eq(strop_model_param_trainable(m, "nope"), -1);
  ck_assert_int_eq(m->nodes[1].frozen_stats, 1);
  ck_assert_int_eq(m->nodes[4].frozen_stats, 1);
  ck_assert_int_eq(strop_model_param_count(m, 1), 6 * 3 + 3);
  OK(strop_model_set_training(m, 1));
  snap before;
  snap_take(m, &before);
  strop_optimizer *opt = NULL;
  if (use_optimizer) {
    /* AdamW with decoupled weight decay: a frozen weight must not drift through decay */
    OK(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt));
    OK(strop_optimizer_set_float(opt, STROP_OPT_LR, 0.05f));
    OK(strop_optimizer_set_float(opt, STROP_OPT_WEIGHT_DECAY, 0.1f));
  }
  const int64_t batch = 4;
  float *x = rand_floats(in_numel(m, batch), 5, 1.0f);
  for (int step = 0; step < 5; step++) {
    if (!use_optimizer) {
      sgd_step(m, x, batch, 0.1f, (uint64_t)step + 100);
      continue;
    }
    OK(strop_optimizer_zero_grad(opt));
    const strop__act *o;
    OK(strop__model_forward_exec(m, x, batch, 1, NULL, &o));
    float *r = rand_floats((size_t)batch * 3, (uint64_t)step + 100, 1.0f);
    OK(strop__model_backward(m, r));
    strop__model_step_end(m);
    free(r);
    OK(strop_optimizer_step(opt));
  }
  strop_optimizer_free(opt);
  free(x);
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    int head = strncmp(p->name, "head.", 5) == 0;
    int same = p->data ? memcmp(p->data, before.data[i], p->numel * sizeof(float)) == 0
                       : p->idata[0] == before.idata[i];
    if (head) ck_assert_msg(!same, "%s did not move", p->name);
    else ck_assert_msg(same, "%s changed although frozen", p->name); /* BN buffers too */
    if (!head) ck_assert_msg(p->grad == NULL, "%s has a gradient", p->name);
  }
  snap_free(&before);
  strop_model_free(m);
}

START_TEST(freeze_trunk_sgd) { frozen_trunk_training(0); }
END_TEST

START_TEST(freeze_trunk_adamw) { frozen_trunk_training(1); }
END_TEST

/* an optimizer made before a structural plan keeps working after it (same model handle) */
START_TEST(optimizer_survives_surgery) {
  strop_model *m = mlp();
  strop_optimizer *opt = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt));
  OK(strop_optimizer_set_float(opt, STROP_OPT_LR, 0.05f));
  OK(strop_optimizer_set_float(opt, STROP_OPT_WEIGHT_DECAY, 0.1f));
  float *x = rand_floats(4 * 4, 3, 1.0f);
  float w_after[32];
  for (int round = 0; round < 2; round++) {
    for (int step = 0; step < 2; step++) {
      OK(strop_optimizer_zero_grad(opt));
      const strop__act *o;
      OK(strop__model_forward_exec(m, x, 4, 1, NULL, &o));
      size_t n = (size_t)4 * strop__shape_numel(&o->shape);
      float *r = rand_floats(n, (uint64_t)step, 1.0f);
      OK(strop__model_backward(m, r));
      strop__model_step_end(m);
      free(r);
      OK(strop_optimizer_step(opt));
    }
    if (round) break;
    strop_surgery *s = NULL;
    OK(strop_surgery_create(m, &s));
    OK(strop_surgery_lora(s, "fc1", 2, 2.0f, 0.0f));
    OK(strop_surgery_replace(s, "head", "linear", "out_features=2", 1));
    OK(strop_surgery_apply(s));
    strop_surgery_free(s);
    memcpy(w_after, strop__model_param_find(m, "fc1.weight")->data, sizeof w_after);
  }
  /* after the surgery only fc1's adapters and the new head trained; no decay on frozen W */
  ck_assert(memcmp(w_after, strop__model_param_find(m, "fc1.weight")->data, sizeof w_after) == 0);
  strop_model *ref = mlp();
  ck_assert(!same_param(m, ref, "fc1.weight")); /* it trained before the surgery */
  strop__param *b = strop__model_param_find(m, "fc1.lora_B.weight");
  float bmax = 0;
  for (size_t k = 0; k < b->numel; k++) bmax = fmaxf(bmax, fabsf(b->data[k]));
  ck_assert(bmax > 0.0f);
  strop_model_free(ref);
  free(x);
  strop_optimizer_free(opt);
  strop_model_free(m);
}
END_TEST

START_TEST(freeze_keep_bn_mode) {
  strop_model *m = cnn();
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_freeze(s, "features.*", STROP_FREEZE_KEEP_BN_MODE));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_eq(m->nodes[1].frozen_stats, 0);
  float before[4];
  memcpy(before, strop__model_param_find(m, "features.1.running_mean")->data, sizeof before);
  float *x = rand_floats(in_numel(m, 4), 5, 1.0f);
  sgd_step(m, x, 4, 0.1f, 1);
  free(x);
  /* batch statistics in train mode: the running mean moved */
  ck_assert(memcmp(before, strop__model_param_find(m, "features.1.running_mean")->data,
                   sizeof before) != 0);
  /* unfreeze brings BatchNorm back to batch statistics */
  OK(strop_model_freeze(m, "features.1"));
  ck_assert_int_eq(m->nodes[1].frozen_stats, 1);
  OK(strop_model_unfreeze(m, "features.*"));
  ck_assert_int_eq(m->nodes[1].frozen_stats, 0);
  ck_assert_int_eq(strop_model_param_count(m, 1), strop_model_param_count(m, 0));
  strop_model_free(m);
}
END_TEST

START_TEST(flags_in_place_and_groups) {
  strop_model *m = cnn();
  strop__param *keep = m->params[0];
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_param_group(s, "features.*", 0.1f, -1));
  OK(strop_surgery_param_group(s, "*.bias", -1.0f, 1));
  OK(strop_surgery_param_group(s, "features.[14]", -1.0f, 1)); /* norm parameters */
  OK(strop_surgery_freeze(s, "features.0", 0));
  ck_assert_int_eq(strop_surgery_num_edits(s), 4);
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  /* flag-only plans keep the parameter structs (optimizers hold them) */
  ck_assert_ptr_eq(m->params[0], keep);
  strop__param *p = strop__model_param_find(m, "features.3.weight");
  ck_assert(p->lr_mult == 0.1f && p->no_decay == 0 && p->trainable);
  p = strop__model_param_find(m, "features.3.bias");
  ck_assert(p->lr_mult == 0.1f && p->no_decay == 1);
  p = strop__model_param_find(m, "features.1.weight");
  ck_assert(p->lr_mult == 0.1f && p->no_decay == 1);
  p = strop__model_param_find(m, "head.weight");
  ck_assert(p->lr_mult == 1.0f && p->no_decay == 0);
  ck_assert(strop__model_param_find(m, "head.bias")->no_decay == 1);
  ck_assert_int_eq(strop_model_param_trainable(m, "features.0.weight"), 0);
  ck_assert_int_eq(m->nodes[1].frozen_stats, 0); /* features.1 itself is still trainable */
  strop_model_free(m);
}
END_TEST

/* ---- structure ---- */
START_TEST(replace_head) {
  strop_model *m = mlp(), *orig = NULL;
  OK(strop_model_clone(m, &orig));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_replace(s, "head", "linear", "out_features=5", 42));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  int64_t d[4];
  ck_assert_int_eq(strop_model_output_shape(m, d, 4), 1);
  ck_assert_int_eq(d[0], 5);
  ck_assert(same_param(m, orig, "fc1.weight") && same_param(m, orig, "fc1.bias"));
  strop__param *w = strop__model_param_find(m, "head.weight");
  ck_assert_int_eq(w->dims[0], 5);
  ck_assert_int_eq(w->dims[1], 8);
  ck_assert(w->trainable);
  /* PyTorch's default init, bound 1/sqrt(8), deterministic in the seed */
  float lo = 1, hi = -1;
  for (size_t i = 0; i < w->numel; i++) {
    lo = fminf(lo, w->data[i]);
    hi = fmaxf(hi, w->data[i]);
  }
  ck_assert(lo >= -0.3536f && hi <= 0.3536f && hi - lo > 0.2f);
  strop_model *again = NULL;
  OK(strop_model_clone(orig, &again));
  OK(strop_surgery_create(again, &s));
  OK(strop_surgery_replace(s, "head", "linear", "out_features=5", 42));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert(same_param(m, again, "head.weight") && same_param(m, again, "head.bias"));
  float x[8] = {1, 2, 3, 4, -1, -2, 0.5f, 0};
  size_t n;
  float *y = run(m, x, 2, &n);
  ck_assert_uint_eq(n, 10);
  free(y);
  strop_model_free(again);
  strop_model_free(orig);
  strop_model_free(m);
}
END_TEST

START_TEST(insert_remove_truncate_append) {
  strop_model *m = mlp(), *orig = NULL;
  OK(strop_model_clone(m, &orig));
  float x[8] = {1, 2, 3, 4, -1, -2, 0.5f, 0};
  float *y0 = run(m, x, 2, NULL);
  strop_surgery *s = NULL;
  /* insert an identity-shaped layer after act and a dropout before head: same shapes */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_insert_after(s, "act", "mid", "linear", "out_features=8"));
  OK(strop_surgery_insert_before(s, "head", "drop", "dropout", "p=0.2"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_eq(strop_model_num_nodes(m), 5);
  char name[32];
  static const char *const order[5] = {"fc1", "act", "mid", "drop", "head"};
  for (int i = 0; i < 5; i++) {
    strop_model_node_info(m, i, 0, name, sizeof name);
    ck_assert_str_eq(name, order[i]);
  }
  ck_assert_str_eq(m->nodes[2].in_names[0], "act");
  ck_assert_str_eq(m->nodes[3].in_names[0], "mid");
  ck_assert_str_eq(m->nodes[4].in_names[0], "drop");
  ck_assert(same_param(m, orig, "head.weight") && same_param(m, orig, "fc1.weight"));
  /* remove them again: the original function comes back bit for bit */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_remove(s, "mid"));
  OK(strop_surgery_remove(s, "drop"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  size_t n;
  float *y1 = run(m, x, 2, &n);
  ck_assert_uint_eq(n, 6);
  ck_assert(memcmp(y0, y1, sizeof(float) * 6) == 0);
  free(y1);
  /* truncate at act (a feature extractor), then append a new head */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_truncate(s, "act"));
  OK(strop_surgery_append(s, "new_head", "linear", "out_features=2"));
  OK(strop_surgery_set_seed(s, 9));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  int64_t d[2];
  ck_assert_int_eq(strop_model_output_shape(m, d, 2), 1);
  ck_assert_int_eq(d[0], 2);
  ck_assert_int_eq(strop_model_num_nodes(m), 3);
  ck_assert_ptr_null(strop__model_param_find(m, "head.weight"));
  ck_assert(same_param(m, orig, "fc1.weight"));
  /* remove the output node: its input becomes the output */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_remove(s, "new_head"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_eq(strop_model_output_shape(m, d, 2), 1);
  ck_assert_int_eq(d[0], 8);
  free(y0);
  strop_model_free(orig);
  strop_model_free(m);
}
END_TEST

START_TEST(dag_edits) {
  strop_model *m = dag(), *orig = NULL;
  OK(strop_model_clone(m, &orig));
  strop_surgery *s = NULL;
  /* truncate at b keeps only its ancestors */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_truncate(s, "b"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_eq(strop_model_num_nodes(m), 2);
  ck_assert(same_param(m, orig, "b.weight"));
  strop_model_free(m);
  OK(strop_model_clone(orig, &m));
  /* insert after fc1 rewires both of its consumers */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_insert_after(s, "fc1", "norm", "layernorm", NULL));
  OK(strop_surgery_remove(s, "a"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  int i = strop__model_node_find(m, "b");
  ck_assert_str_eq(m->nodes[i].in_names[0], "norm");
  i = strop__model_node_find(m, "sum");
  ck_assert_str_eq(m->nodes[i].in_names[0], "norm");
  ck_assert_str_eq(m->nodes[i].in_names[1], "b");
  float *x = rand_floats(8, 1, 1.0f);
  float *y = run(m, x, 2, NULL);
  free(y);
  free(x);
  strop_model_free(orig);
  strop_model_free(m);
}
END_TEST

/* A composite type goes through the same registry as any layer: appended, inserted and put in
 * place of a node by a plan, it expands into its parts, which train like the rest. */
START_TEST(composite_edits) {
  int64_t in[2] = {5, 8};
  strop_model *m = NULL;
  OK(strop_model_create(2, in, &m));
  OK(strop_model_add(m, "proj", "linear", "out_features=8", NULL));
  OK(strop_model_add(m, "pool", "mean_pool", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m, 5));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_insert_after(s, "proj", "blk", "transformer_block",
                                "embed_dim=8 num_heads=2 dim_feedforward=16"));
  OK(strop_surgery_append(s, "out", "linear", "out_features=2"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  /* proj, 8 parts, pool, head, out */
  ck_assert_int_eq(strop_model_num_nodes(m), 12);
  int a1 = strop__model_node_find(m, "blk.add1"), p = strop__model_node_find(m, "pool");
  ck_assert_int_ge(a1, 0);
  ck_assert_str_eq(m->nodes[a1].in_names[0], "proj"); /* the residual reads the block input */
  ck_assert_str_eq(m->nodes[p].in_names[0], "blk.add2");
  /* the parts were initialised (not left at zero) and differ from each other */
  strop_tensor *w1 = NULL, *w2 = NULL;
  OK(strop_model_tensor_view(m, "blk.ff1.weight", &w1));
  OK(strop_model_tensor_view(m, "blk.attn.q_proj.weight", &w2));
  ck_assert(strop_tensor_data(w1)[0] != 0.0f && strop_tensor_data(w2)[0] != 0.0f);
  ck_assert(strop_tensor_data(w1)[0] != strop_tensor_data(w2)[0]);
  strop_tensor_free(w1);
  strop_tensor_free(w2);
  strop_test_gc_opts go;
  strop_test_gc_defaults(&go);
  strop_test_gradcheck(m, 2, 3, &go);
  /* a composite in place of a node: its consumers read the last part */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_replace(s, "proj", "transformer_block", "embed_dim=8 num_heads=4", 9));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_lt(strop__model_node_find(m, "proj"), 0);
  int a2 = strop__model_node_find(m, "proj.add2"), ln = strop__model_node_find(m, "blk.ln1");
  ck_assert_int_ge(a2, 0);
  ck_assert_str_eq(m->nodes[ln].in_names[0], "proj.add2");
  ck_assert_str_eq(m->nodes[strop__model_node_find(m, "blk.add1")].in_names[0], "proj.add2");
  /* a part name that exists already fails the whole plan, and names it */
  strop_model *before = NULL;
  OK(strop_model_clone(m, &before));
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_append(s, "blk", "transformer_block", "embed_dim=2 num_heads=1"));
  ck_assert_int_eq(strop_surgery_apply(s), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "edit 1 of 1 (append 'blk')"));
  strop_surgery_free(s);
  ck_assert_int_eq(strop_model_num_nodes(m), strop_model_num_nodes(before));
  strop_model_free(before);
  strop_model_free(m);
}
END_TEST

/* ---- LoRA ---- */
static strop_model *with_lora(strop_model *base, const char *glob, int64_t r, float alpha,
                              float dropout) {
  strop_model *m = NULL;
  OK(strop_model_clone(base, &m));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, glob, r, alpha, dropout));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  return m;
}

START_TEST(lora_starts_exact_and_trains_adapters) {
  strop_model *base = mlp();
  strop_model *m = with_lora(base, "*", 2, 4.0f, 0.1f);
  ck_assert_int_eq(strop_model_num_tensors(m), 8);
  char t[32];
  strop_model_node_info(m, 0, 1, t, sizeof t);
  ck_assert_str_eq(t, "lora_linear");
  strop__param *a = strop__model_param_find(m, "fc1.lora_A.weight");
  strop__param *b = strop__model_param_find(m, "head.lora_B.weight");
  ck_assert_ptr_nonnull(a);
  ck_assert_int_eq(a->dims[0], 2);
  ck_assert_int_eq(a->dims[1], 4);
  ck_assert_int_eq(b->dims[0], 3);
  ck_assert_int_eq(b->dims[1], 2);
  for (size_t k = 0; k < b->numel; k++) ck_assert(b->data[k] == 0.0f);
  float amax = 0;
  for (size_t k = 0; k < a->numel; k++) amax = fmaxf(amax, fabsf(a->data[k]));
  ck_assert(amax > 0.1f && amax <= 0.5f); /* kaiming_uniform(a=sqrt 5): bound 1/sqrt(in) */
  ck_assert_int_eq(strop_model_param_trainable(m, "fc1.weight"), 0);
  ck_assert_int_eq(strop_model_param_trainable(m, "fc1.bias"), 0);
  ck_assert_int_eq(strop_model_param_trainable(m, "fc1.lora_A.weight"), 1);
  ck_assert_int_eq(strop_model_param_count(m, 1), 2 * 4 + 8 * 2 + 2 * 8 + 3 * 2);
  /* the first forward equals the base exactly */
  float *x = rand_floats(4 * 4, 3, 1.0f);
  float *y0 = run(base, x, 4, NULL), *y1 = run(m, x, 4, NULL);
  ck_assert(memcmp(y0, y1, 12 * sizeof(float)) == 0);
  free(y1);
  /* training moves A and B only */
  snap before;
  snap_take(m, &before);
  for (int step = 0; step < 3; step++) sgd_step(m, x, 4, 0.2f, (uint64_t)step);
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    int same = memcmp(p->data, before.data[i], p->numel * sizeof(float)) == 0;
    ck_assert_msg(strstr(p->name, ".lora_") ? !same : same, "%s", p->name);
  }
  snap_free(&before);
  /* merge and unmerge */
  float *y2 = run(m, x, 4, NULL);
  OK(strop_model_lora_merge(m));
  OK(strop_model_lora_merge(m)); /* already merged: unchanged */
  float *y3 = run(m, x, 4, NULL);
  ck_assert_double_le(strop_test_max_rel(y3, y2, 12, 1e-3, NULL), 1e-5);
  ck_assert(memcmp(y2, y0, 12 * sizeof(float)) != 0);
  OK(strop_model_lora_unmerge(m));
  float *y4 = run(m, x, 4, NULL);
  ck_assert_double_le(strop_test_max_rel(y4, y2, 12, 1e-3, NULL), 1e-5);
  free(y0);
  free(y2);
  free(y3);
  free(y4);
  free(x);
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

static char g_tmp[256];

static void make_tmp(void) {
  snprintf(g_tmp, sizeof g_tmp, "%s/surgery_tmp_%d", STROP_BINARY_DIR, (int)getpid());
  mkdir(g_tmp, 0700);
}

static void rm_tmp(void) {
  char p[400];
  snprintf(p, sizeof p, "%s/adapter_model.safetensors", g_tmp);
  unlink(p);
  snprintf(p, sizeof p, "%s/adapter_config.json", g_tmp);
  unlink(p);
  rmdir(g_tmp);
}

START_TEST(lora_save_and_reload) {
  strop_model *base = mlp();
  strop_model *m = NULL;
  OK(strop_model_clone(base, &m));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "fc1", 2, 4.0f, 0.05f));
  OK(strop_surgery_lora(s, "head", 3, 6.0f, 0.05f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  float *x = rand_floats(4 * 4, 3, 1.0f);
  for (int step = 0; step < 2; step++) sgd_step(m, x, 4, 0.2f, (uint64_t)step);
  float *y = run(m, x, 4, NULL);
  make_tmp();
  OK(strop_model_lora_save(m, g_tmp));
  char path[400];
  snprintf(path, sizeof path, "%s/adapter_config.json", g_tmp);
  char *cfg = strop_test_read_file(path, NULL);
  ck_assert_ptr_nonnull(cfg);
  ck_assert_ptr_nonnull(strstr(cfg, "\"peft_type\": \"LORA\""));
  ck_assert_ptr_nonnull(strstr(cfg, "\"r\": 2"));
  ck_assert_ptr_nonnull(strstr(cfg, "\"lora_alpha\": 4"));
  ck_assert_ptr_nonnull(strstr(cfg, "\"lora_dropout\": 0.05"));
  ck_assert_ptr_nonnull(strstr(cfg, "\"target_modules\": [\"fc1\", \"head\"]"));
  ck_assert_ptr_nonnull(strstr(cfg, "\"rank_pattern\": {\"head\": 3}"));
  ck_assert_ptr_nonnull(strstr(cfg, "\"alpha_pattern\": {\"head\": 6}"));
  ck_assert_ptr_nonnull(strstr(cfg, "\"bias\": \"none\""));
  free(cfg);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", g_tmp);
  strop__st_file *f = NULL;
  OK(strop__st_open("test", path, &f));
  ck_assert_int_eq(f->n, 4);
  const strop__st_tensor *t = strop__st_find(f, "base_model.model.head.lora_B.weight");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->dims[0], 3);
  ck_assert_int_eq(t->dims[1], 3);
  ck_assert_ptr_nonnull(strop__st_find(f, "base_model.model.fc1.lora_A.weight"));
  strop__st_close(f);
  /* re-applied to the base, the adapters reproduce the outputs */
  strop_model *again = NULL;
  OK(strop_model_clone(base, &again));
  OK(strop_model_lora_load(again, g_tmp));
  float *y2 = run(again, x, 4, NULL);
  ck_assert(memcmp(y, y2, 12 * sizeof(float)) == 0);
  const strop__lora_cfg *c = again->nodes[strop__model_node_find(again, "head")].cfg;
  ck_assert_int_eq(c->r, 3);
  ck_assert(c->alpha == 6.0f && c->dropout == 0.05f);
  /* loading onto a model that already has them fails and changes nothing */
  snap sn;
  snap_take(again, &sn);
  ck_assert_int_eq(strop_model_lora_load(again, g_tmp), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "already has LoRA adapters"));
  snap_check(again, &sn);
  snap_free(&sn);
  rm_tmp();
  free(y);
  free(y2);
  free(x);
  strop_model_free(again);
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

/* PEFT's modules_to_save: a plan that replaced the head and added adapters saves the new head
 * whole beside the adapters, so the base model + the adapter folder is the fine-tuned model
 * (the head made anew where its shape differs from the base's). The folder is created. */
static char *adapter_dir(const char *sub) {
  static char d[512];
  snprintf(d, sizeof d, "%s/%s", g_tmp, sub);
  return d;
}

static void rm_adapter_dir(const char *sub) {
  char p[600];
  snprintf(p, sizeof p, "%s/adapter_model.safetensors", adapter_dir(sub));
  unlink(p);
  snprintf(p, sizeof p, "%s/adapter_config.json", adapter_dir(sub));
  unlink(p);
  rmdir(adapter_dir(sub));
}

static char *meta_str(const strop_model *m, const char *key) {
  static char buf[256];
  return strop_model_get_meta(m, key, buf, sizeof buf) < 0 ? NULL : buf;
}

START_TEST(lora_saves_replaced_head) {
  static const struct {
    const char *head_opts; /* the new head */
    int lora_on_head;      /* adapters on the new head too */
  } cases[] = {{"out_features=5", 0}, {"out_features=3", 0}, {"out_features=5 bias=false", 1}};
  strop_model *base = mlp();
  float *x = rand_floats(4 * 4, 5, 1.0f);
  make_tmp();
  char sub[64];
  snprintf(sub, sizeof sub, "nested");
  ck_assert_int_eq(mkdir(adapter_dir(sub), 0700), 0);
  snprintf(sub, sizeof sub, "nested/adapters");
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    strop_model *m = NULL;
    OK(strop_model_clone(base, &m));
    strop_surgery *s = NULL;
    OK(strop_surgery_create(m, &s));
    OK(strop_surgery_freeze(s, "*", 0));
    OK(strop_surgery_replace(s, "head", "linear", cases[c].head_opts, 9));
    OK(strop_surgery_lora(s, "fc1", 2, 4.0f, 0.0f));
    if (cases[c].lora_on_head) OK(strop_surgery_lora(s, "head", 2, 4.0f, 0.0f));
    OK(strop_surgery_apply(s));
    strop_surgery_free(s);
    ck_assert_str_eq(meta_str(m, "lora.modules_to_save"), "[\"head\"]");
    for (int step = 0; step < 3; step++) sgd_step(m, x, 4, 0.2f, (uint64_t)step);
    size_t ny = 0;
    float *want = run(m, x, 4, &ny);
    OK(strop_model_lora_save(m, adapter_dir(sub))); /* "nested/adapters" did not exist */
    char path[700];
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter_dir(sub));
    char *cfg = strop_test_read_file(path, NULL);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_msg(strstr(cfg, "\"modules_to_save\": [\"head\"]"), "%s", cfg);
    free(cfg);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter_dir(sub));
    strop__st_file *f = NULL;
    OK(strop__st_open("test", path, &f));
    const strop__st_tensor *hw = strop__st_find(f, "base_model.model.head.weight");
    ck_assert_ptr_nonnull(hw);
    ck_assert_int_eq(hw->dims[0], strstr(cases[c].head_opts, "=5") ? 5 : 3);
    ck_assert_int_eq(strop__st_find(f, "base_model.model.head.bias") != NULL,
                     strstr(cases[c].head_opts, "bias=false") == NULL);
    ck_assert_int_eq(strop__st_find(f, "base_model.model.head.lora_A.weight") != NULL,
                     cases[c].lora_on_head);
    ck_assert_ptr_null(strop__st_find(f, "base_model.model.fc1.weight")); /* frozen: the base's */
    strop__st_close(f);
    /* the base model + the folder = the fine-tuned model */
    strop_model *again = NULL;
    OK(strop_model_clone(base, &again));
    OK(strop_model_lora_load(again, adapter_dir(sub)));
    size_t ng = 0;
    float *got = run(again, x, 4, &ng);
    ck_assert_uint_eq(ng, ny);
    ck_assert_msg(memcmp(got, want, ny * sizeof *got) == 0, "case %zu: logits differ", c);
    ck_assert_str_eq(meta_str(again, "lora.modules_to_save"), "[\"head\"]");
    free(got);
    free(want);
    strop_model_free(again);
    strop_model_free(m);
    rm_adapter_dir(sub);
  }
  rmdir(adapter_dir("nested"));
  rm_tmp();
  free(x);
  strop_model_free(base);
}
END_TEST

/* A node that trains whole beside the adapters (a LayerNorm unfrozen with LoRA elsewhere) is
 * saved as a module to save, so base + folder is the trained model; frozen nodes are not. */
START_TEST(lora_saves_nodes_trained_whole) {
  int64_t in[1] = {4};
  strop_model *base = NULL;
  OK(strop_model_create(1, in, &base));
  OK(strop_model_add(base, "fc1", "linear", "out_features=8", NULL));
  OK(strop_model_add(base, "ln", "layernorm", NULL, NULL));
  OK(strop_model_add(base, "fc2", "linear", "out_features=8", NULL));
  OK(strop_model_add(base, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(base, 5));
  float *x = rand_floats(4 * 4, 6, 1.0f);
  make_tmp();
  for (int unfreeze = 0; unfreeze < 2; unfreeze++) {
    strop_model *m = NULL;
    OK(strop_model_clone(base, &m));
    strop_surgery *s = NULL;
    OK(strop_surgery_create(m, &s));
    OK(strop_surgery_freeze(s, "*", 0));
    OK(strop_surgery_lora(s, "fc1", 2, 4.0f, 0.0f));
    OK(strop_surgery_lora(s, "head", 2, 4.0f, 0.0f));
    if (unfreeze) OK(strop_surgery_unfreeze(s, "ln", 0));
    OK(strop_surgery_apply(s));
    strop_surgery_free(s);
    ck_assert_ptr_null(meta_str(m, "lora.modules_to_save"));
    for (int step = 0; step < 3; step++) sgd_step(m, x, 4, 0.2f, (uint64_t)step + 1);
    size_t ny = 0;
    float *want = run(m, x, 4, &ny);
    OK(strop_model_lora_save(m, g_tmp));
    char path[400];
    snprintf(path, sizeof path, "%s/adapter_config.json", g_tmp);
    char *cfg = strop_test_read_file(path, NULL);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_msg(
        strstr(cfg, unfreeze ? "\"modules_to_save\": [\"ln\"]" : "\"modules_to_save\": null"),
        "%s", cfg);
    free(cfg);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", g_tmp);
    strop__st_file *f = NULL;
    OK(strop__st_open("test", path, &f));
    ck_assert_int_eq(f->n, unfreeze ? 6 : 4); /* two adapters, and ln's weight and bias */
    ck_assert_int_eq(strop__st_find(f, "base_model.model.ln.weight") != NULL, unfreeze);
    ck_assert_int_eq(strop__st_find(f, "base_model.model.ln.bias") != NULL, unfreeze);
    ck_assert_ptr_null(strop__st_find(f, "base_model.model.fc2.weight")); /* frozen */
    strop__st_close(f);
    /* the base model + the folder = the trained model, the LayerNorm's values too */
    strop_model *again = NULL;
    OK(strop_model_clone(base, &again));
    OK(strop_model_lora_load(again, g_tmp));
    ck_assert(memcmp(strop__model_param_find(again, "ln.weight")->data,
                     strop__model_param_find(m, "ln.weight")->data, 8 * sizeof(float)) == 0);
    size_t ng = 0;
    float *got = run(again, x, 4, &ng);
    ck_assert_uint_eq(ng, ny);
    ck_assert_msg(memcmp(got, want, ny * sizeof *got) == 0, "logits differ");
    if (unfreeze) ck_assert_str_eq(meta_str(again, "lora.modules_to_save"), "[\"ln\"]");
    else ck_assert_ptr_null(meta_str(again, "lora.modules_to_save"));
    free(got);
    free(want);
    strop_model_free(again);
    strop_model_free(m);
  }
  rm_tmp();
  free(x);
  strop_model_free(base);
}
END_TEST

/* PEFT's bias "lora_only": the biases of adapted modules that train beside their adapters are
 * saved under "<module>.base_layer.bias" (where a PEFT model holds them), so base + folder is
 * the trained model bit for bit; the loaded biases train again, and a second save writes the
 * same folder. The name PEFT wrote before its layers wrapped the base ("<module>.bias") loads
 * too, and with bias "all" a bias of a module without adapters. */
static void write_adapter(const char *cfg, const char *const *names, const float *const *vals,
                          const int64_t *lens, int n) {
  char path[400];
  snprintf(path, sizeof path, "%s/adapter_config.json", g_tmp);
  FILE *fp = fopen(path, "w");
  ck_assert_ptr_nonnull(fp);
  fputs(cfg, fp);
  fclose(fp);
  strop__st_writer *w = NULL;
  OK(strop__st_writer_create("test", &w));
  for (int i = 0; i < n; i++) {
    const int rank = lens[2 * i + 1] ? 2 : 1;
    OK(strop__st_writer_add_f32_copy(w, names[i], rank, &lens[2 * i], vals[i]));
  }
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", g_tmp);
  OK(strop__st_writer_save(w, path));
  strop__st_writer_free(w);
}

START_TEST(lora_saves_trained_biases) {
  strop_model *base = mlp();
  float *x = rand_floats(4 * 4, 8, 1.0f);
  strop_model *m = NULL;
  OK(strop_model_clone(base, &m));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_freeze(s, "*", 0));
  OK(strop_surgery_lora(s, "fc1", 2, 4.0f, 0.0f));
  OK(strop_surgery_lora(s, "head", 2, 4.0f, 0.0f));
  OK(strop_surgery_unfreeze(s, "fc1.bias", 0)); /* head's stays frozen */
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  for (int step = 0; step < 3; step++) sgd_step(m, x, 4, 0.2f, (uint64_t)step + 1);
  ck_assert(!same_param(m, base, "fc1.bias")); /* it trained */
  size_t ny = 0;
  float *want = run(m, x, 4, &ny);
  make_tmp();
  OK(strop_model_lora_save(m, g_tmp));
  char path[400];
  snprintf(path, sizeof path, "%s/adapter_config.json", g_tmp);
  char *cfg = strop_test_read_file(path, NULL);
  ck_assert_ptr_nonnull(cfg);
  ck_assert_msg(
      strstr(cfg, "\"bias\": \"lora_only\"") && strstr(cfg, "\"modules_to_save\": null"), "%s",
      cfg);
  free(cfg);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", g_tmp);
  size_t len1 = 0;
  char *file1 = strop_test_read_file(path, &len1);
  strop__st_file *f = NULL;
  OK(strop__st_open("test", path, &f));
  ck_assert_int_eq(f->n, 5); /* two adapters and fc1's bias */
  const strop__st_tensor *t = strop__st_find(f, "base_model.model.fc1.base_layer.bias");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->rank, 1);
  ck_assert_int_eq(t->dims[0], 8);
  ck_assert_ptr_null(strop__st_find(f, "base_model.model.head.base_layer.bias")); /* frozen */
  strop__st_close(f);
  /* the base model + the folder = the trained model; the bias trains again */
  strop_model *again = NULL;
  OK(strop_model_clone(base, &again));
  OK(strop_model_lora_load(again, g_tmp));
  ck_assert(same_param(again, m, "fc1.bias"));
  ck_assert_int_eq(strop_model_param_trainable(again, "fc1.bias"), 1);
  ck_assert_int_eq(strop_model_param_trainable(again, "head.bias"), 0);
  size_t ng = 0;
  float *got = run(again, x, 4, &ng);
  ck_assert_uint_eq(ng, ny);
  ck_assert_msg(memcmp(got, want, ny * sizeof *got) == 0, "logits differ");
  free(got);
  /* saved again, the same file */
  OK(strop_model_lora_save(again, g_tmp));
  size_t len2 = 0;
  char *file2 = strop_test_read_file(path, &len2);
  ck_assert_uint_eq(len1, len2);
  ck_assert(memcmp(file1, file2, len1) == 0);
  free(file1);
  free(file2);
  strop_model_free(again);
  /* hand-written folders: PEFT's older name of the bias, and bias "all" */
  const strop__param *pa = strop__model_param_find(m, "fc1.lora_A.weight");
  const strop__param *pb = strop__model_param_find(m, "fc1.lora_B.weight");
  const strop__param *bias = strop__model_param_find(m, "fc1.bias");
  static const float head_bias[3] = {0.5f, -1.0f, 2.0f};
  const float *vals[4] = {pa->data, pb->data, bias->data, head_bias};
  const int64_t lens[8] = {2, 4, 8, 2, 8, 0, 3, 0};
  static const char cfg_fmt[] = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                                "\"bias\": %s, \"target_modules\": [\"fc1\"]}";
  char cfgs[256];
  const char *names[4] = {"base_model.model.fc1.lora_A.weight",
                          "base_model.model.fc1.lora_B.weight", "base_model.model.fc1.bias",
                          "base_model.model.head.bias"};
  snprintf(cfgs, sizeof cfgs, cfg_fmt, "\"lora_only\"");
  write_adapter(cfgs, names, vals, lens, 3);
  OK(strop_model_clone(base, &again));
  OK(strop_model_lora_load(again, g_tmp));
  ck_assert(same_param(again, m, "fc1.bias"));
  strop_model_free(again);
  snprintf(cfgs, sizeof cfgs, cfg_fmt, "\"all\"");
  write_adapter(cfgs, names, vals, lens, 4);
  OK(strop_model_clone(base, &again));
  OK(strop_model_lora_load(again, g_tmp));
  ck_assert(same_param(again, m, "fc1.bias"));
  ck_assert(memcmp(strop__model_param_find(again, "head.bias")->data, head_bias,
                   sizeof head_bias) == 0);
  strop_model_free(again);
  /* errors: the model as it was, the error naming the tensor or the field */
  static const struct {
    const char *bias; /* the config's value */
    int n;            /* tensors written */
    const char *name; /* the third tensor's name */
    int64_t len;      /* its length */
    strop_status want;
    const char *says;
  } bad[] = {
      {"\"some\"", 3, "base_model.model.fc1.bias", 8, STROP_E_FORMAT,
       "bias must be \"none\", \"lora_only\" or \"all\""},
      {"3", 3, "base_model.model.fc1.bias", 8, STROP_E_FORMAT, "bias must be"},
      {"\"none\"", 3, "base_model.model.fc1.base_layer.bias", 8, STROP_E_FORMAT,
       "tensor 'base_model.model.fc1.base_layer.bias' is a bias of an adapted module, but the "
       "config's bias is \"none\""},
      {"\"lora_only\"", 4, "base_model.model.fc1.bias", 8, STROP_E_FORMAT,
       "tensor 'base_model.model.head.bias' is a bias of a module without adapters, but the "
       "config's bias is \"lora_only\""},
      {"\"lora_only\"", 3, "base_model.model.fc1.base_layer.bias", 5, STROP_E_SHAPE,
       "'base_model.model.fc1.base_layer.bias' does not fit the model's 'fc1.bias' [8]"},
      {"\"all\"", 3, "base_model.model.act.bias", 8, STROP_E_NOT_FOUND,
       "tensor 'base_model.model.act.bias': the model has no bias 'act.bias'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t l2[8] = {2, 4, 8, 2, bad[i].len, 0, 3, 0};
    const char *n2[4] = {names[0], names[1], bad[i].name, names[3]};
    float big[8] = {0};
    const float *v2[4] = {vals[0], vals[1], big, head_bias};
    snprintf(cfgs, sizeof cfgs, cfg_fmt, bad[i].bias);
    write_adapter(cfgs, n2, v2, l2, bad[i].n);
    OK(strop_model_clone(base, &again));
    snap sn;
    snap_take(again, &sn);
    ck_assert_int_eq(strop_model_lora_load(again, g_tmp), bad[i].want);
    ck_assert_msg(strstr(strop_last_error(), bad[i].says), "case %zu: %s", i, strop_last_error());
    snap_check(again, &sn);
    snap_free(&sn);
    strop_model_free(again);
  }
  rm_tmp();
  /* a base weight of an adapted module that trains has no place in the folder: refused */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_unfreeze(s, "fc1.weight", 0));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_eq(strop_model_lora_save(m, g_tmp), STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'fc1.weight' trains, but a LoRA adapter "
                                                   "folder holds only"));
  free(want);
  free(x);
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

/* modules_to_save that do not fit the base: refused with the right status, the model as it
 * was; a list naming no node is refused when saving. */
START_TEST(lora_modules_to_save_errors) {
  strop_model *base = cnn(), *m = NULL;
  OK(strop_model_clone(base, &m));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  /* the trunk frozen: only the replaced node travels whole (lora_saves_nodes_trained_whole) */
  OK(strop_surgery_freeze(s, "*", 0));
  OK(strop_surgery_replace(s, "features.1", "batchnorm2d", "num_features=4 eps=0.001", 3));
  OK(strop_surgery_lora(s, "head", 2, 4.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  make_tmp();
  /* a BatchNorm of the same shape: its values (running statistics included) travel */
  OK(strop_model_lora_save(m, g_tmp));
  strop_model *again = NULL;
  OK(strop_model_clone(base, &again));
  OK(strop_model_lora_load(again, g_tmp));
  ck_assert(memcmp(strop__model_param_find(again, "features.1.running_var")->data,
                   strop__model_param_find(m, "features.1.running_var")->data, 4 * 4) == 0);
  strop_model_free(again);
  /* a base whose node of that name is something else (a conv of other channels) */
  int64_t in[3] = {2, 6, 6};
  strop_model *other = NULL;
  OK(strop_model_create(3, in, &other));
  OK(strop_model_add(other, "features.0", "conv2d", "out_channels=4 kernel_size=3 padding=1",
                     NULL));
  OK(strop_model_add(other, "features.1", "conv2d", "out_channels=4 kernel_size=1", NULL));
  OK(strop_model_add(other, "pool", "global_avgpool", NULL, NULL));
  OK(strop_model_add(other, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(other, 2));
  snap sn;
  snap_take(other, &sn);
  ck_assert_int_eq(strop_model_lora_load(other, g_tmp), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "module 'features.1' of modules_to_save does "
                                                   "not fit node 'features.1' (conv2d)"));
  snap_check(other, &sn);
  snap_free(&sn);
  ck_assert_ptr_null(meta_str(other, "lora.modules_to_save"));
  strop_model_free(other);
  /* a base without that node */
  strop_model *mlp_base = mlp();
  snap_take(mlp_base, &sn);
  ck_assert_int_eq(strop_model_lora_load(mlp_base, g_tmp), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "module 'features.1' of modules_to_save is "
                                                   "not a node of the model"));
  snap_check(mlp_base, &sn);
  snap_free(&sn);
  strop_model_free(mlp_base);
  rm_tmp();
  /* the list, as the host may edit it: names that are not nodes, or not a list */
  OK(strop_model_set_meta(m, "lora.modules_to_save", "[\"nope\"]"));
  ck_assert_int_eq(strop_model_lora_save(m, g_tmp), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "names 'nope', which is not a node"));
  OK(strop_model_set_meta(m, "lora.modules_to_save", "{}"));
  ck_assert_int_eq(strop_model_lora_save(m, g_tmp), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "is not a JSON list of node names"));
  /* surgery drops the names of nodes it removes, and the key with the last one */
  OK(strop_model_set_meta(m, "lora.modules_to_save", "[\"features.1\"]"));
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_truncate(s, "features.0"));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_ptr_null(meta_str(m, "lora.modules_to_save"));
  /* a folder that cannot be made */
  OK(strop_model_clone(base, &again));
  OK(strop_surgery_create(again, &s));
  OK(strop_surgery_lora(s, "head", 2, 4.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_eq(strop_model_lora_save(again, "/proc/strop_no/adapters"), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "cannot create the folder /proc/strop_no"));
  strop_model_free(again);
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

static void load_fixture(strop_model *m, const strop__st_file *f, const char *name) {
  const strop__st_tensor *t = strop__st_find(f, name);
  ck_assert_msg(t != NULL, "fixture lacks %s", name);
  strop__param *p = strop__model_param_find(m, name);
  ck_assert_ptr_nonnull(p);
  OK(strop__st_read_f32("test", t, p->data, p->numel));
}

START_TEST(lora_peft_adapter) {
  int64_t in[1] = {6};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "fc1", "linear", "out_features=8", NULL));
  OK(strop_model_add(m, "act", "relu", NULL, NULL));
  OK(strop_model_add(m, "fc2", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m, 1));
  strop__st_file *f = NULL;
  OK(strop__st_open("test", STROP_TEST_DATA "/surgery/peft_base.safetensors", &f));
  load_fixture(m, f, "fc1.weight");
  load_fixture(m, f, "fc1.bias");
  load_fixture(m, f, "fc2.weight");
  load_fixture(m, f, "fc2.bias");
  const strop__st_tensor *tx = strop__st_find(f, "input"), *ty = strop__st_find(f, "output");
  const strop__st_tensor *tb = strop__st_find(f, "base_output");
  float x[30], want[15], base_want[15];
  OK(strop__st_read_f32("test", tx, x, 30));
  OK(strop__st_read_f32("test", ty, want, 15));
  OK(strop__st_read_f32("test", tb, base_want, 15));
  strop__st_close(f);
  float *y0 = run(m, x, 5, NULL);
  ck_assert_double_le(strop_test_max_rel(y0, base_want, 15, 1e-4, NULL), 1e-5);
  OK(strop_model_lora_load(m, STROP_TEST_DATA "/surgery/peft_adapter"));
  const strop__lora_cfg *c = m->nodes[2].cfg;
  ck_assert_int_eq(c->r, 4); /* from rank_pattern / the tensors */
  ck_assert(c->alpha == 4.0f && fabsf(c->dropout - 0.1f) < 1e-7f);
  float *y = run(m, x, 5, NULL);
  ck_assert_double_le(strop_test_max_rel(y, want, 15, 1e-4, NULL), 1e-5);
  free(y0);
  free(y);
  strop_model_free(m);
}
END_TEST

static strop_model *lora_single(int64_t rank, int in_rank, const int64_t *in_shape,
                                const char *opts) {
  strop_model *m = NULL;
  OK(strop_model_create(in_rank, in_shape, &m));
  OK(strop_model_add(m, "fc", "lora_linear", opts, NULL));
  OK(strop_model_finalize(m, 5));
  ck_assert_int_eq(((strop__lora_cfg *)m->nodes[0].cfg)->r, rank);
  return m;
}

START_TEST(lora_gradcheck) {
  int64_t in[2] = {3, 5};
  for (int drop = 0; drop < 2; drop++) {
    strop_model *m = lora_single(
        2, 2, in, drop ? "out_features=4 r=2 alpha=3 dropout=0.3" : "out_features=4 r=2 alpha=3");
    /* a non-zero B so A's gradient is not trivially zero; the base trainable too */
    strop__param *b = strop__model_param_find(m, "fc.lora_B.weight");
    strop__rng g;
    strop__rng_seed(&g, 4, 4);
    for (size_t k = 0; k < b->numel; k++) b->data[k] = strop__rng_normal(&g) * 0.5f;
    strop_test_gradcheck(m, 2, 17, NULL);
    for (int i = 0; i < m->n_params; i++) m->params[i]->trainable = 1;
    strop_test_gradcheck(m, 2, 18, NULL);
    strop_model_free(m);
  }
}
END_TEST

START_TEST(lora_pytorch_parity) {
  int64_t in1[1] = {6}, in2[2] = {3, 7};
  strop_model *m = lora_single(3, 1, in1, "out_features=4 r=3 alpha=6");
  ck_assert_double_le(
      strop_test_parity(m, STROP_TEST_DATA "/surgery/lora_eval.safetensors", 1e-5), 1e-5);
  strop_model_free(m);
  m = lora_single(2, 2, in2, "out_features=5 r=2 alpha=3");
  ck_assert_double_le(strop_test_parity(m, STROP_TEST_DATA "/surgery/lora_seq.safetensors", 1e-5),
                      1e-5);
  strop_model_free(m);
}
END_TEST

/* ---- LoRA on an embedding (PEFT's lora.Embedding) ---- */

/* A tiny language model: ids [5] -> emb (11 x 6) -> tanh -> head (6 -> 11, no bias); with tied,
 * head.weight is emb.weight (GPT-2's lm_head and wte). */
static strop_model *tiny_lm(int tied) {
  int64_t in[1] = {5};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "emb", "embedding", "num_embeddings=11 embedding_dim=6", NULL));
  OK(strop_model_add(m, "act", "tanh", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=11 bias=false", NULL));
  if (tied) OK(strop_model_tie(m, "head.weight", "emb.weight"));
  OK(strop_model_finalize(m, 13));
  return m;
}

/* 4 samples of 5 token ids in [0, 10): id 10 never occurs */
static const float LM_IDS[20] = {1, 4, 4, 9, 0, 2, 3, 5, 7, 7, 8, 6, 1, 0, 3, 9, 2, 5, 4, 8};

/* freeze everything, then LoRA on the exact names given (NULL-terminated) */
static strop_model *lm_with_lora(const strop_model *base, const char *const *names, int64_t r,
                                 float alpha) {
  strop_model *m = NULL;
  OK(strop_model_clone(base, &m));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_freeze(s, "*", 0));
  for (int i = 0; names[i]; i++) OK(strop_surgery_lora(s, names[i], r, alpha, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  return m;
}

START_TEST(lora_embedding_starts_exact_and_trains_adapters) {
  strop_model *base = tiny_lm(0);
  static const char *const emb[] = {"emb", NULL};
  strop_model *m = lm_with_lora(base, emb, 2, 4.0f);
  char t[32];
  strop_model_node_info(m, 0, 1, t, sizeof t);
  ck_assert_str_eq(t, "lora_embedding");
  strop__param *a = strop__model_param_find(m, "emb.lora_embedding_A");
  strop__param *b = strop__model_param_find(m, "emb.lora_embedding_B");
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_int_eq(a->dims[0], 2); /* PEFT's shapes: A [r, num_embeddings], B [dim, r] */
  ck_assert_int_eq(a->dims[1], 11);
  ck_assert_int_eq(b->dims[0], 6);
  ck_assert_int_eq(b->dims[1], 2);
  /* PEFT's init: A zero, B N(0, 1) */
  for (size_t k = 0; k < a->numel; k++) ck_assert(a->data[k] == 0.0f);
  float bmax = 0;
  for (size_t k = 0; k < b->numel; k++) bmax = fmaxf(bmax, fabsf(b->data[k]));
  ck_assert(bmax > 0.5f && bmax < 6.0f);
  ck_assert_int_eq(strop_model_param_trainable(m, "emb.weight"), 0);
  ck_assert_int_eq(strop_model_param_trainable(m, "emb.lora_embedding_A"), 1);
  ck_assert_int_eq(strop_model_param_trainable(m, "emb.lora_embedding_B"), 1);
  ck_assert_int_eq(strop_model_param_count(m, 1), 2 * 11 + 6 * 2);
  /* the first forward equals the base exactly */
  float *y0 = run(base, LM_IDS, 4, NULL), *y1 = run(m, LM_IDS, 4, NULL);
  ck_assert(memcmp(y0, y1, 44 * 5 * sizeof(float)) == 0);
  free(y1);
  /* training moves A and B only; A only in the columns of the ids seen (10 never is) */
  snap before;
  snap_take(m, &before);
  for (int step = 0; step < 3; step++) sgd_step(m, LM_IDS, 4, 0.2f, (uint64_t)step);
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    int same = memcmp(p->data, before.data[i], p->numel * sizeof(float)) == 0;
    ck_assert_msg(strstr(p->name, ".lora_") ? !same : same, "%s", p->name);
  }
  snap_free(&before);
  for (int k = 0; k < 2; k++) {
    ck_assert(a->data[k * 11 + 10] == 0.0f);
    ck_assert(a->data[k * 11 + 4] != 0.0f);
  }
  /* merge into the table (not tied here) and unmerge */
  float *y2 = run(m, LM_IDS, 4, NULL);
  /* generation runs the adapted embedding one position at a time (it refused the type before):
   * this model is per position, so its first greedy token after "1 4" is the argmax of the
   * logits at position 1 of the first sample */
  const int64_t prompt[2] = {1, 4};
  int64_t gen[3], count = 0, best = 0;
  OK(strop_generate(m, prompt, 2, NULL, gen, 3, &count));
  ck_assert_int_eq(count, 3);
  for (int64_t v = 1; v < 11; v++)
    if (y2[11 + v] > y2[11 + best]) best = v;
  ck_assert_int_eq(gen[0], best);
  ck_assert(memcmp(y2, y0, 44 * 5 * sizeof(float)) != 0);
  OK(strop_model_lora_merge(m));
  float *y3 = run(m, LM_IDS, 4, NULL);
  ck_assert_double_le(strop_test_max_rel(y3, y2, 220, 1e-3, NULL), 1e-5);
  OK(strop_model_lora_unmerge(m));
  float *y4 = run(m, LM_IDS, 4, NULL);
  ck_assert_double_le(strop_test_max_rel(y4, y2, 220, 1e-3, NULL), 1e-5);
  /* exported for inference: a plain embedding with the adapter folded in */
  make_tmp();
  char spec[400], wts[400];
  snprintf(spec, sizeof spec, "%s/model.yaml", g_tmp);
  snprintf(wts, sizeof wts, "%s/model.safetensors", g_tmp);
  OK(strop_model_export(m, spec, wts, 0));
  strop_model *r = NULL;
  OK(strop_model_load_spec(spec, &r));
  OK(strop_model_load_weights(r, wts, STROP_LOAD_STRICT, NULL));
  strop_model_node_info(r, 0, 1, t, sizeof t);
  ck_assert_str_eq(t, "embedding");
  free(y3);
  y3 = run(r, LM_IDS, 4, NULL);
  ck_assert_double_le(strop_test_max_rel(y3, y2, 220, 1e-3, NULL), 1e-5);
  strop_model_free(r);
  unlink(spec);
  unlink(wts);
  rm_tmp();
  free(y0);
  free(y2);
  free(y3);
  free(y4);
  strop_model_free(m);
  /* a pattern keeps meaning the linear layers: "*" leaves the embedding as it is */
  m = with_lora(base, "*", 2, 4.0f, 0.0f);
  strop_model_node_info(m, 0, 1, t, sizeof t);
  ck_assert_str_eq(t, "embedding");
  strop_model_node_info(m, 2, 1, t, sizeof t);
  ck_assert_str_eq(t, "lora_linear");
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

/* With the output layer tied to the embedding (GPT-2), the adapter adapts the input side only:
 * the head reads the frozen table. Folding (B A)^T into that table would change the head too,
 * so merging is refused and nothing changes; the adapters saved apart give back the logits. */
START_TEST(lora_embedding_tied_not_merged) {
  strop_model *base = tiny_lm(1);
  static const char *const emb[] = {"emb", NULL}, *const both[] = {"emb", "head", NULL};
  for (int with_head = 0; with_head < 2; with_head++) {
    strop_model *m = lm_with_lora(base, with_head ? both : emb, 2, 4.0f);
    for (int step = 0; step < 3; step++) sgd_step(m, LM_IDS, 4, 0.2f, (uint64_t)step + 5);
    strop__node *head = &m->nodes[strop__model_node_find(m, "head")];
    ck_assert_ptr_eq(strop__param_owner(strop__node_param(head, "weight")),
                     strop__model_param_find(m, "emb.weight"));
    ck_assert(same_param(m, base, "emb.weight")); /* the shared table is frozen */
    float *y = run(m, LM_IDS, 4, NULL);
    snap sn;
    snap_take(m, &sn);
    ck_assert_int_eq(strop_model_lora_merge(m), STROP_E_UNSUPPORTED);
    const char *err = strop_last_error();
    ck_assert_msg(strstr(err, "'emb.weight'") && strstr(err, "'head.weight'") &&
                      strstr(err, "nothing merged"),
                  "%s", err);
    /* nor exported: that folds the adapters in too (it did, changing the head, before) */
    make_tmp();
    char spec[400], wts[400];
    snprintf(spec, sizeof spec, "%s/model.yaml", g_tmp);
    snprintf(wts, sizeof wts, "%s/model.safetensors", g_tmp);
    ck_assert_int_eq(strop_model_export(m, spec, wts, 0), STROP_E_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_model_export: the LoRA adapter of"));
    ck_assert_int_eq(access(spec, F_OK), -1);
    snap_check(m, &sn);
    snap_free(&sn);
    OK(strop_model_lora_save(m, g_tmp));
    strop_model *again = NULL;
    OK(strop_model_clone(base, &again));
    OK(strop_model_lora_load(again, g_tmp));
    float *y2 = run(again, LM_IDS, 4, NULL);
    ck_assert_msg(memcmp(y, y2, 220 * sizeof(float)) == 0, "with_head %d: logits differ",
                  with_head);
    rm_tmp();
    free(y);
    free(y2);
    strop_model_free(again);
    strop_model_free(m);
  }
  strop_model_free(base);
}
END_TEST

/* PEFT's saved names and config; base + folder = the adapted model, bit for bit */
START_TEST(lora_embedding_save_and_reload) {
  strop_model *base = tiny_lm(0), *m = NULL;
  OK(strop_model_clone(base, &m));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_freeze(s, "*", 0));
  OK(strop_surgery_lora(s, "emb", 3, 6.0f, 0.1f)); /* dropout recorded, not applied */
  OK(strop_surgery_lora(s, "head", 2, 4.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  for (int step = 0; step < 3; step++) sgd_step(m, LM_IDS, 4, 0.2f, (uint64_t)step + 9);
  float *y = run(m, LM_IDS, 4, NULL);
  /* no dropout on the embedding's adapter: a training forward gives the eval logits */
  const strop__act *o;
  OK(strop__model_forward_exec(m, LM_IDS, 4, 1, NULL, &o));
  ck_assert(memcmp(o->data, y, 220 * sizeof(float)) == 0);
  strop__model_step_end(m);
  make_tmp();
  OK(strop_model_lora_save(m, g_tmp));
  char path[400];
  snprintf(path, sizeof path, "%s/adapter_config.json", g_tmp);
  char *cfg = strop_test_read_file(path, NULL);
  ck_assert_ptr_nonnull(cfg);
  ck_assert_msg(strstr(cfg, "\"target_modules\": [\"emb\", \"head\"]"), "%s", cfg);
  ck_assert_msg(strstr(cfg, "\"r\": 3") && strstr(cfg, "\"rank_pattern\": {\"head\": 2}"), "%s",
                cfg);
  free(cfg);
  snprintf(path, sizeof path, "%s/adapter_model.safetensors", g_tmp);
  strop__st_file *f = NULL;
  OK(strop__st_open("test", path, &f));
  ck_assert_int_eq(f->n, 4);
  const strop__st_tensor *ta = strop__st_find(f, "base_model.model.emb.lora_embedding_A");
  const strop__st_tensor *tb = strop__st_find(f, "base_model.model.emb.lora_embedding_B");
  ck_assert_ptr_nonnull(ta);
  ck_assert_ptr_nonnull(tb);
  ck_assert(ta->dims[0] == 3 && ta->dims[1] == 11 && tb->dims[0] == 6 && tb->dims[1] == 3);
  ck_assert_ptr_nonnull(strop__st_find(f, "base_model.model.head.lora_A.weight"));
  strop__st_close(f);
  strop_model *again = NULL;
  OK(strop_model_clone(base, &again));
  OK(strop_model_lora_load(again, g_tmp));
  char t[32];
  strop_model_node_info(again, 0, 1, t, sizeof t);
  ck_assert_str_eq(t, "lora_embedding");
  float *y2 = run(again, LM_IDS, 4, NULL);
  ck_assert(memcmp(y, y2, 220 * sizeof(float)) == 0);
  /* again: the node has its adapter, refused, unchanged */
  snap sn;
  snap_take(again, &sn);
  ck_assert_int_eq(strop_model_lora_load(again, g_tmp), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "already has LoRA adapters"));
  snap_check(again, &sn);
  snap_free(&sn);
  strop_model_free(again);
  /* onto a base whose 'emb' is a linear: the file's names are an embedding's */
  int64_t in[1] = {11};
  strop_model *other = NULL;
  OK(strop_model_create(1, in, &other));
  OK(strop_model_add(other, "emb", "linear", "out_features=6", NULL));
  OK(strop_model_add(other, "head", "linear", "out_features=11 bias=false", NULL));
  OK(strop_model_finalize(other, 2));
  snap_take(other, &sn);
  ck_assert_int_eq(strop_model_lora_load(other, g_tmp), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "'base_model.model.emb.lora_embedding_A' does not fit "
                                           "module 'emb', a lora_linear node"),
                "%s", strop_last_error());
  snap_check(other, &sn);
  snap_free(&sn);
  strop_model_free(other);
  rm_tmp();
  free(y);
  free(y2);
  strop_model_free(m);
  strop_model_free(base);
}
END_TEST

static strop_model *lora_emb_single(const char *opts) {
  int64_t in[1] = {5};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "emb", "lora_embedding", opts, NULL));
  OK(strop_model_finalize(m, 5));
  return m;
}

START_TEST(lora_embedding_gradcheck) {
  strop_model *m = lora_emb_single("num_embeddings=7 embedding_dim=4 r=2 alpha=3");
  /* a non-zero A so B's gradient is not trivially zero */
  strop__param *a = strop__model_param_find(m, "emb.lora_embedding_A");
  strop__rng g;
  strop__rng_seed(&g, 4, 4);
  for (size_t k = 0; k < a->numel; k++) a->data[k] = strop__rng_normal(&g) * 0.5f;
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.int_inputs = 1;
  o.int_max = 7;
  strop_test_gradcheck(m, 3, 17, &o);
  for (int i = 0; i < m->n_params; i++) m->params[i]->trainable = 1; /* the base too */
  strop_test_gradcheck(m, 3, 18, &o);
  strop_model_free(m);
}
END_TEST

START_TEST(lora_embedding_pytorch_parity) {
  strop_model *m = lora_emb_single("num_embeddings=11 embedding_dim=6 r=3 alpha=6 padding_idx=3");
  ck_assert_double_le(
      strop_test_parity(m, STROP_TEST_DATA "/surgery/lora_embedding.safetensors", 1e-5), 1e-5);
  strop_model_free(m);
}
END_TEST

/* an adapter folder as PEFT writes it for an nn.Embedding and an nn.Linear */
START_TEST(lora_embedding_peft_adapter) {
  int64_t in[1] = {6};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "emb", "embedding", "num_embeddings=13 embedding_dim=8", NULL));
  OK(strop_model_add(m, "fc", "linear", "out_features=5", NULL));
  OK(strop_model_finalize(m, 1));
  strop__st_file *f = NULL;
  OK(strop__st_open("test", STROP_TEST_DATA "/surgery/peft_emb_base.safetensors", &f));
  load_fixture(m, f, "emb.weight");
  load_fixture(m, f, "fc.weight");
  load_fixture(m, f, "fc.bias");
  float x[12], want[60], base_want[60];
  OK(strop__st_read_f32("test", strop__st_find(f, "input"), x, 12));
  OK(strop__st_read_f32("test", strop__st_find(f, "output"), want, 60));
  OK(strop__st_read_f32("test", strop__st_find(f, "base_output"), base_want, 60));
  strop__st_close(f);
  float *y0 = run(m, x, 2, NULL);
  ck_assert_double_le(strop_test_max_rel(y0, base_want, 60, 1e-4, NULL), 1e-5);
  OK(strop_model_lora_load(m, STROP_TEST_DATA "/surgery/peft_emb_adapter"));
  char t[32];
  strop_model_node_info(m, 0, 1, t, sizeof t);
  ck_assert_str_eq(t, "lora_embedding");
  float *y = run(m, x, 2, NULL);
  ck_assert_double_le(strop_test_max_rel(y, want, 60, 1e-4, NULL), 1e-5);
  free(y0);
  free(y);
  strop_model_free(m);
}
END_TEST

/* The edit's errors on embeddings: each leaves the model as it was and says why. */
START_TEST(lora_embedding_errors) {
  int64_t in[1] = {5};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "emb", "embedding", "num_embeddings=11 embedding_dim=6", NULL));
  OK(strop_model_add(m, "pos", "positional_embedding", "num_embeddings=5", NULL));
  OK(strop_model_finalize(m, 3));
  static const struct {
    const char *glob;
    int64_t rank;
    strop_status at_add, at_apply;
    const char *says;
  } bad[] = {
      {"emb", 0, STROP_E_INVALID_ARG, STROP_OK, "rank"},
      {"emb", -2, STROP_E_INVALID_ARG, STROP_OK, "rank"},
      {"pos", 2, STROP_OK, STROP_E_INVALID_ARG,
       "node 'pos' is positional_embedding; LoRA applies to linear nodes, embedding nodes"},
      {"em*", 2, STROP_OK, STROP_E_NOT_FOUND,
       "no linear node matches 'em*' (nor an attention projection '<node>.q_proj' ..., nor an "
       "embedding node of that exact name)"},
      {"nothing", 2, STROP_OK, STROP_E_NOT_FOUND, "nothing"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snap sn;
    snap_take(m, &sn);
    strop_surgery *s = NULL;
    OK(strop_surgery_create(m, &s));
    ck_assert_int_eq(strop_surgery_lora(s, bad[i].glob, bad[i].rank, 4.0f, 0.0f), bad[i].at_add);
    if (bad[i].at_add == STROP_OK) ck_assert_int_eq(strop_surgery_apply(s), bad[i].at_apply);
    ck_assert_msg(strstr(strop_last_error(), bad[i].says), "case %zu: %s", i, strop_last_error());
    strop_surgery_free(s);
    snap_check(m, &sn);
    snap_free(&sn);
  }
  /* twice on the same embedding */
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "emb", 2, 4.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  snap sn;
  snap_take(m, &sn);
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "emb", 2, 4.0f, 0.0f));
  ck_assert_int_eq(strop_surgery_apply(s), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "node 'emb' already has LoRA adapters"));
  strop_surgery_free(s);
  snap_check(m, &sn);
  snap_free(&sn);
  strop_model_free(m);
}
END_TEST

/* ---- errors: each leaves the model as it was and names the edit ---- */
typedef enum {
  OP_FREEZE,
  OP_UNFREEZE,
  OP_REPLACE,
  OP_INS_AFTER,
  OP_INS_BEFORE,
  OP_REMOVE,
  OP_TRUNCATE,
  OP_APPEND,
  OP_LORA,
  OP_GROUP
} op_kind;

typedef struct bad_case {
  op_kind op;
  const char *a, *b, *c, *d;
  strop_status want;
  const char *says;
} bad_case;

static strop_status add_op(strop_surgery *s, const bad_case *k) {
  switch (k->op) {
    case OP_FREEZE: return strop_surgery_freeze(s, k->a, 0);
    case OP_UNFREEZE: return strop_surgery_unfreeze(s, k->a, 0);
    case OP_REPLACE: return strop_surgery_replace(s, k->a, k->b, k->c, 1);
    case OP_INS_AFTER: return strop_surgery_insert_after(s, k->a, k->b, k->c, k->d);
    case OP_INS_BEFORE: return strop_surgery_insert_before(s, k->a, k->b, k->c, k->d);
    case OP_REMOVE: return strop_surgery_remove(s, k->a);
    case OP_TRUNCATE: return strop_surgery_truncate(s, k->a);
    case OP_APPEND: return strop_surgery_append(s, k->a, k->b, k->c);
    case OP_LORA: return strop_surgery_lora(s, k->a, 2, 4.0f, 0.0f);
    case OP_GROUP: return strop_surgery_param_group(s, k->a, 0.5f, -1);
  }
  return STROP_E_INTERNAL;
}

static const char *const op_names[] = {"freeze",        "unfreeze",   "replace",  "insert_after",
                                       "insert_before", "remove",     "truncate", "append",
                                       "lora",          "param_group"};

START_TEST(every_edit_fails_cleanly) {
  static const bad_case cases[] = {
      {OP_FREEZE, "nope*", 0, 0, 0, STROP_E_NOT_FOUND, "no parameter matches 'nope*'"},
      {OP_UNFREEZE, "features.1.running_var", 0, 0, 0, STROP_E_INVALID_ARG, "is a buffer"},
      {OP_REPLACE, "nope", "linear", "out_features=2", 0, STROP_E_NOT_FOUND,
       "no node named 'nope'"},
      {OP_REPLACE, "features.*", "relu", NULL, 0, STROP_E_INVALID_ARG, "matches 5 nodes"},
      {OP_REPLACE, "features.3", "conv2d", "out_channels=5 kernel_size=3", 0, STROP_E_SHAPE,
       "layer 'features.4' (batchnorm2d): num_features is 6 but the input has 5 channels"},
      {OP_INS_AFTER, "pool", "head", "relu", NULL, STROP_E_INVALID_ARG, "already exists"},
      {OP_INS_AFTER, "nope", "x", "relu", NULL, STROP_E_NOT_FOUND, "no node named 'nope'"},
      {OP_INS_AFTER, "pool", "x", "linear", "out_features=7", STROP_E_SHAPE,
       "layer 'head' (linear): parameter 'head.weight' would change shape from [3, 6] to [3, 7]"},
      {OP_INS_BEFORE, "features.1", "bad name", "relu", NULL, STROP_E_INVALID_ARG,
       "bad node name"},
      {OP_REMOVE, "features.0", 0, 0, 0, STROP_E_SHAPE, "features.1"},
      {OP_REMOVE, "pool", 0, 0, 0, STROP_E_SHAPE, "layer 'head'"},
      {OP_REMOVE, "zz*", 0, 0, 0, STROP_E_NOT_FOUND, "no node matches"},
      {OP_TRUNCATE, "nope", 0, 0, 0, STROP_E_NOT_FOUND, "no node named 'nope'"},
      {OP_APPEND, "x", "linear", "in_features=7 out_features=2", 0, STROP_E_SHAPE,
       "in_features is 7"},
      {OP_APPEND, "x", "batchnorm2d", NULL, 0, STROP_E_SHAPE, "batchnorm2d"},
      {OP_LORA, "features.0", 0, 0, 0, STROP_E_INVALID_ARG, "is conv2d; LoRA applies to linear"},
      {OP_LORA, "features.*", 0, 0, 0, STROP_E_NOT_FOUND, "no linear node matches"},
      {OP_LORA, "nope", 0, 0, 0, STROP_E_NOT_FOUND, "no node named 'nope'"},
      {OP_GROUP, "zzz", 0, 0, 0, STROP_E_NOT_FOUND, "no parameter matches 'zzz'"},
  };
  strop_model *m = cnn();
  OK(strop_model_freeze(m, "features.0")); /* some non-default flags to preserve */
  snap sn;
  snap_take(m, &sn);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const bad_case *k = &cases[i];
    for (int pos = 0; pos < 2; pos++) {
      strop_surgery *s = NULL;
      OK(strop_surgery_create(m, &s));
      /* as the only edit, and after a valid structural and a valid flag edit */
      if (pos) {
        OK(strop_surgery_unfreeze(s, "*", 0));
        OK(strop_surgery_insert_before(s, "head", "extra", "relu", NULL));
      }
      strop_status st = add_op(s, k);
      if (st == STROP_OK) st = strop_surgery_validate(s);
      ck_assert_msg(st == k->want, "case %zu (%s %s): status %d, want %d: %s", i, op_names[k->op],
                    k->a, st, k->want, strop_last_error());
      st = strop_surgery_apply(s);
      ck_assert_msg(st == k->want, "case %zu: apply status %d: %s", i, st, strop_last_error());
      char head[128];
      snprintf(head, sizeof head, "strop_surgery_apply: edit %d of %d (%s '%s')", pos ? 3 : 1,
               pos ? 3 : 1, op_names[k->op], k->a);
      ck_assert_msg(strstr(strop_last_error(), head) != NULL, "case %zu: '%s' lacks '%s'", i,
                    strop_last_error(), head);
      if (k->says)
        ck_assert_msg(strstr(strop_last_error(), k->says) != NULL, "case %zu: '%s' lacks '%s'", i,
                      strop_last_error(), k->says);
      snap_check(m, &sn);
      strop_surgery_free(s);
    }
  }
  snap_free(&sn);
  strop_model_free(m);
}
END_TEST

START_TEST(argument_errors) {
  strop_model *m = mlp();
  strop_surgery *s = NULL;
  ck_assert_int_eq(strop_surgery_create(NULL, &s), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(s);
  ck_assert_int_eq(strop_surgery_create(m, NULL), STROP_E_INVALID_ARG);
  int64_t in[1] = {3};
  strop_model *raw = NULL;
  OK(strop_model_create(1, in, &raw));
  ck_assert_int_eq(strop_surgery_create(raw, &s), STROP_E_STATE);
  ck_assert_int_eq(strop_model_freeze(raw, "*"), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_model_freeze: "));
  strop_model_free(raw);
  OK(strop_surgery_create(m, &s));
  ck_assert_int_eq(strop_surgery_freeze(s, NULL, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_freeze(s, "", 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_freeze(s, "*", 4), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_replace(s, "head", "linaer", "out_features=2", 0),
                   STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "unknown layer type 'linaer'"));
  ck_assert_int_eq(strop_surgery_replace(s, "head", "linear", "out_feature=2", 0),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "out_feature"));
  ck_assert_int_eq(strop_surgery_replace(s, "head", "linear", "out_features=-2", 0),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_replace(s, "head", "linear", NULL, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_replace(s, NULL, "linear", "out_features=2", 0),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_insert_after(s, "head", NULL, "relu", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_append(s, "x", NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_remove(s, ""), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_truncate(s, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_lora(s, "*", 0, 1.0f, 0.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_lora(s, "*", 2, 0.0f, 0.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_lora(s, "*", 2, 1.0f, 1.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_lora(s, "*", 2, NAN, 0.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_param_group(s, "*", -1.0f, -1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_param_group(s, "*", NAN, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_param_group(s, "*", 1.0f, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_num_edits(s), 0); /* none of them was added */
  ck_assert_int_eq(strop_surgery_freeze(NULL, "*", 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_apply(NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_validate(NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_set_seed(NULL, 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_surgery_num_edits(NULL), -1);
  ck_assert_int_eq(strop_surgery_describe(NULL, NULL, 0), -1);
  OK(strop_surgery_apply(s)); /* an empty plan changes nothing */
  strop_surgery_free(s);
  strop_surgery_free(NULL);
  /* conveniences and LoRA calls */
  snap sn;
  snap_take(m, &sn);
  ck_assert_int_eq(strop_model_freeze(m, "nothing*"), STROP_E_NOT_FOUND);
  ck_assert_str_eq(strop_last_error(), "strop_model_freeze: no parameter matches 'nothing*'");
  ck_assert_int_eq(strop_model_unfreeze(NULL, "*"), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_param_trainable(NULL, "x"), -1);
  ck_assert_int_eq(strop_model_lora_merge(m), STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop_model_lora_unmerge(NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_lora_save(m, "/tmp"), STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop_model_lora_save(NULL, "/tmp"), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_lora_load(m, "/nonexistent/dir"), STROP_E_IO);
  ck_assert_int_eq(strop_model_lora_load(m, NULL), STROP_E_INVALID_ARG);
  /* adapters for modules the model lacks */
  int64_t in6[1] = {6};
  strop_model *other = NULL;
  OK(strop_model_create(1, in6, &other));
  OK(strop_model_add(other, "fc1", "linear", "out_features=8", NULL));
  OK(strop_model_finalize(other, 1));
  snap so;
  snap_take(other, &so);
  ck_assert_int_eq(strop_model_lora_load(other, STROP_TEST_DATA "/surgery/peft_adapter"),
                   STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'fc2'"));
  snap_check(other, &so);
  snap_free(&so);
  strop_model_free(other);
  /* adapters that do not fit: fc1 here takes 4 inputs, the file's A is [2, 6] */
  ck_assert_int_eq(strop_model_lora_load(m, STROP_TEST_DATA "/surgery/peft_adapter"),
                   STROP_E_NOT_FOUND); /* no fc2 either */
  strop_model *m2 = NULL;
  int64_t in4[1] = {4};
  OK(strop_model_create(1, in4, &m2));
  OK(strop_model_add(m2, "fc1", "linear", "out_features=8", NULL));
  OK(strop_model_add(m2, "fc2", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m2, 1));
  snap s2;
  snap_take(m2, &s2);
  ck_assert_int_eq(strop_model_lora_load(m2, STROP_TEST_DATA "/surgery/peft_adapter"),
                   STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "base_model.model.fc1.lora_A.weight"));
  snap_check(m2, &s2);
  snap_free(&s2);
  strop_model_free(m2);
  ck_assert_int_eq(strop_model_memory_estimate(m, 0, 0, NULL, NULL, NULL, NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_memory_estimate(m, 1, 9, NULL, NULL, NULL, NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_memory_estimate(NULL, 1, 0, NULL, NULL, NULL, NULL),
                   STROP_E_INVALID_ARG);
  /* a batch whose activations overflow a byte count is an error, not 0 bytes (issue 18) */
  size_t act = 7;
  ck_assert_int_eq(strop_model_memory_estimate(m, (int64_t)1 << 62, 2, NULL, NULL, NULL, &act),
                   STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "batch 4611686018427387904: the activations "
                                                   "overflow a byte count at node"));
  ck_assert_uint_eq(act, 7);
  ck_assert_int_eq(strop_model_memory_estimate(m, INT64_MAX, 0, NULL, NULL, NULL, &act),
                   STROP_E_SHAPE);
  strop_model *cl = NULL;
  ck_assert_int_eq(strop_model_clone(NULL, &cl), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_clone(m, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_summary(NULL, NULL, 0), -1);
  snap_check(m, &sn);
  snap_free(&sn);
  strop_model_free(m);
}
END_TEST

/* ---- describe, summary, memory ---- */
START_TEST(describe_dry_run) {
  strop_model *m = cnn();
  snap sn;
  snap_take(m, &sn);
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_freeze(s, "features.*", 0));
  OK(strop_surgery_replace(s, "head", "linear", "out_features=5", 3));
  OK(strop_surgery_insert_after(s, "pool", "drop", "dropout", "p=0.1"));
  OK(strop_surgery_append(s, "proj", "linear", "out_features=2"));
  OK(strop_surgery_lora(s, "head", 2, 2.0f, 0.0f));
  OK(strop_surgery_param_group(s, "*.bias", -1.0f, 1));
  OK(strop_surgery_remove(s, "features.2"));
  int64_t n = strop_surgery_describe(s, NULL, 0);
  ck_assert_int_gt(n, 100);
  char *buf = malloc((size_t)n + 1);
  ck_assert_int_eq(strop_surgery_describe(s, buf, (size_t)n + 1), n);
  ck_assert_uint_eq(strlen(buf), (size_t)n);
  static const char *const want[] = {"edit 1: freeze 'features.*'",
                                     "edit 2: replace 'head' linear out_features=5",
                                     "edit 3: insert_after 'pool' new 'drop' dropout p=0.1",
                                     "edit 4: append 'proj'",
                                     "edit 5: lora 'head'",
                                     "edit 6: param_group '*.bias'",
                                     "edit 7: remove 'features.2'",
                                     "nodes added: drop (dropout), proj (linear)",
                                     "nodes removed: features.2 (relu)",
                                     "nodes replaced or retyped: head (linear -> lora_linear)",
                                     "head.lora_A.weight [2, 6]",
                                     "output shape: [3] -> [2]",
                                     "parameters: 339 -> 387; trainable: 339 -> 34"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    ck_assert_msg(strstr(buf, want[i]) != NULL, "describe lacks '%s':\n%s", want[i], buf);
  /* a small buffer gets a truncated, terminated prefix */
  char small[16];
  ck_assert_int_eq(strop_surgery_describe(s, small, sizeof small), n);
  ck_assert_uint_eq(strlen(small), 15);
  ck_assert(strncmp(small, buf, 15) == 0);
  free(buf);
  snap_check(m, &sn);
  /* a failing plan: described up to the failure, with the reason */
  OK(strop_surgery_truncate(s, "nope"));
  n = strop_surgery_describe(s, NULL, 0);
  buf = malloc((size_t)n + 1);
  strop_surgery_describe(s, buf, (size_t)n + 1);
  ck_assert_ptr_nonnull(strstr(buf, "edit 8: truncate 'nope': would fail: "));
  ck_assert_ptr_nonnull(strstr(buf, "no node named 'nope'"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "edit 8 of 8 (truncate 'nope')"));
  free(buf);
  snap_check(m, &sn);
  snap_free(&sn);
  strop_surgery_free(s);
  strop_model_free(m);
}
END_TEST

/* strop_model_step_memory and strop_model_check_memory refuse bad arguments with a sentence
 * and leave the model as it was; a limit below the planned peak is STROP_E_NOMEM naming the
 * figures and what would fit: checkpointing where there are blocks, a smaller batch. */
START_TEST(step_memory_errors_and_advice) {
  strop_model *m = mlp();
  size_t act = 7, peak = 7;
  ck_assert_int_eq(strop_model_step_memory(NULL, 4, NULL, 0, 2, &act, &peak),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "model is NULL"));
  ck_assert_int_eq(strop_model_step_memory(m, 0, NULL, 0, 2, &act, &peak), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "batch must be"));
  ck_assert_int_eq(strop_model_step_memory(m, 4, NULL, 0, 9, &act, &peak), STROP_E_INVALID_ARG);
  const int64_t bad_rank[2] = {4, 4}, bad_dim[1] = {0};
  ck_assert_int_eq(strop_model_step_memory(m, 4, bad_rank, 2, 2, &act, &peak), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "rank 2"));
  ck_assert_int_eq(strop_model_step_memory(m, 4, bad_dim, 1, 2, &act, &peak),
                   STROP_E_INVALID_ARG);
  const int64_t other[1] = {5}; /* a linear layer refuses another width, naming itself */
  ck_assert_int_eq(strop_model_step_memory(m, 4, other, 1, 2, &act, &peak), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "fc1"));
  ck_assert_uint_eq(act, 7);
  ck_assert_uint_eq(peak, 7);
  ck_assert_int_eq(strop_model_check_memory(NULL, 4, NULL, 0, 2, 1 << 30), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_check_memory(m, -1, NULL, 0, 2, 1 << 30), STROP_E_INVALID_ARG);
  strop_model *nf = NULL;
  int64_t in4[1] = {4};
  OK(strop_model_create(1, in4, &nf));
  ck_assert_int_eq(strop_model_step_memory(nf, 4, NULL, 0, 2, &act, &peak), STROP_E_STATE);
  strop_model_free(nf);
  /* a working prediction, then a limit it exceeds */
  snap sn;
  snap_take(m, &sn);
  OK(strop_model_step_memory(m, 16, NULL, 0, 2, &act, &peak));
  ck_assert_uint_gt(peak, act);
  OK(strop_model_check_memory(m, 16, NULL, 0, 2, peak));
  ck_assert_int_eq(strop_model_check_memory(m, 16, NULL, 0, 2, peak - 1), STROP_E_NOMEM);
  const char *e = strop_last_error();
  ck_assert_ptr_nonnull(strstr(e, "strop_model_check_memory: a training step of batch 16 needs"));
  ck_assert_ptr_nonnull(strstr(e, "optimizer state"));
  ck_assert_ptr_nonnull(strstr(e, "BF16 or 8 bits"));
  /* the GEMM's buffers and the arena's smallest chunk do not shrink with the batch */
  ck_assert_ptr_nonnull(strstr(e, "no batch fits"));
  snap_check(m, &sn);
  snap_free(&sn);
  strop_model_free(m);
  /* with blocks, checkpointing is named with what it would bring */
  int64_t in[1] = {64};
  OK(strop_model_create(1, in, &m));
  for (int b = 0; b < 4; b++) {
    char n1[32], n2[32], n3[32];
    snprintf(n1, sizeof n1, "blocks.%d.fc", b);
    snprintf(n2, sizeof n2, "blocks.%d.act", b);
    snprintf(n3, sizeof n3, "blocks.%d.fc2", b);
    OK(strop_model_add(m, n1, "linear", "out_features=256", NULL));
    OK(strop_model_add(m, n2, "tanh", NULL, NULL)); /* its backward reads its output: kept */
    OK(strop_model_add(m, n3, "linear", "out_features=64", NULL));
  }
  OK(strop_model_add(m, "head", "linear", "out_features=2", NULL));
  OK(strop_model_finalize(m, 3));
  OK(strop_model_step_memory(m, 4096, NULL, 0, 2, &act, &peak));
  ck_assert_int_eq(strop_model_check_memory(m, 4096, NULL, 0, 2, peak / 2), STROP_E_NOMEM);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "activation checkpointing"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "a batch of "));
  /* and micro-batches accumulated to the same 4096 samples an update: a trainer set so plans
   * a peak within the limit */
  fprintf(stderr, "%s\n", strop_last_error());
  const char *mic = strstr(strop_last_error(), ", and ");
  long long k = 0, micro = 0;
  ck_assert_ptr_nonnull(mic);
  ck_assert_int_eq(sscanf(mic, ", and %lld micro-batches of %lld accumulated", &k, &micro), 2);
  ck_assert(k >= 2 && k * micro == 4096);
  ck_assert_ptr_nonnull(strstr(mic, "keep 4096 samples an update"));
  {
    strop_optimizer *o = NULL;
    strop_trainer *tr = NULL;
    size_t tpeak = 0;
    OK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &o));
    OK(strop_trainer_create(m, o, &tr));
    OK(strop_trainer_set_int(tr, STROP_TRAIN_ACCUM_STEPS, k));
    OK(strop_trainer_step_memory(tr, micro, NULL, 0, NULL, &tpeak));
    ck_assert_uint_le(tpeak, peak / 2);
    /* the peak the advice names is that trainer's (the gradients kept apart) */
    double said = 0;
    const char *at = strstr(mic, "samples an update (peak ");
    ck_assert_ptr_nonnull(at);
    ck_assert_int_eq(sscanf(at, "samples an update (peak %lf MB)", &said), 1);
    ck_assert_msg(fabs(said - (double)tpeak / 1e6) <= 0.05, "%.1f MB said, %zu bytes planned",
                  said, tpeak);
    /* an accumulating trainer's own check names no further accumulation */
    ck_assert_int_eq(strop_trainer_check_memory(tr, micro, NULL, 0, tpeak - 1), STROP_E_NOMEM);
    ck_assert_ptr_null(strstr(strop_last_error(), "micro-batches of"));
    strop_trainer_free(tr);
    strop_optimizer_free(o);
  }
  ck_assert_int_eq(strop_model_get_checkpointing(m, NULL, 0), 0); /* still off */
  /* computing in BF16 on vdpbf16ps, the trained weights' copies are named with what they take;
   * packed per call, the peak is lower and they are no longer named */
  OK(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16));
  OK(strop_model_step_memory(m, 4096, NULL, 0, 2, &act, &peak));
  ck_assert_int_eq(strop_model_check_memory(m, 4096, NULL, 0, 2, peak - 1), STROP_E_NOMEM);
  const int dot = strop__bf16_dot_enabled();
  ck_assert_int_eq(strstr(strop_last_error(), "strop_model_set_weight_cache(model, 0)") != NULL,
                   dot);
  size_t lean = 0;
  OK(strop_model_set_weight_cache(m, 0));
  OK(strop_model_step_memory(m, 4096, NULL, 0, 2, &act, &lean));
  if (dot) ck_assert_uint_lt(lean, peak);
  ck_assert_int_eq(strop_model_check_memory(m, 4096, NULL, 0, 2, lean - 1), STROP_E_NOMEM);
  ck_assert_ptr_null(strstr(strop_last_error(), "strop_model_set_weight_cache"));
  strop_model_free(m);
  /* attention that keeps its weights (64 positions, heads 32 wide: auto keeps them): tiled
   * attention is named; set, the peak is lower and it is no longer named */
  int64_t seq[2] = {64, 64};
  OK(strop_model_create(2, seq, &m));
  OK(strop_model_add(m, "q", "linear", "out_features=64", NULL));
  OK(strop_model_add(m, "k", "linear", "out_features=64", "input"));
  OK(strop_model_add(m, "v", "linear", "out_features=64", "input"));
  OK(strop_model_add(m, "att", "attention", "num_heads=2", "q,k,v"));
  OK(strop_model_add(m, "o", "linear", "out_features=64", NULL));
  OK(strop_model_add(m, "flat", "flatten", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=2", NULL));
  OK(strop_model_finalize(m, 3));
  OK(strop_model_step_memory(m, 256, NULL, 0, 2, &act, &peak));
  ck_assert_int_eq(strop_model_check_memory(m, 256, NULL, 0, 2, peak - 1), STROP_E_NOMEM);
  ck_assert_ptr_nonnull(
      strstr(strop_last_error(), "strop_model_set_attention(model, STROP_ATTENTION_TILED)"));
  OK(strop_model_set_attention(m, STROP_ATTENTION_TILED));
  OK(strop_model_step_memory(m, 256, NULL, 0, 2, &act, &lean));
  ck_assert_uint_lt(lean + 4 * 1024 * 1024, peak); /* 256 x 2 heads x 64 x 64 floats: 8 MB */
  ck_assert_int_eq(strop_model_check_memory(m, 256, NULL, 0, 2, lean - 1), STROP_E_NOMEM);
  ck_assert_ptr_null(strstr(strop_last_error(), "strop_model_set_attention"));
  strop_model_free(m);
}
END_TEST

START_TEST(summary_and_memory) {
  strop_model *m = cnn();
  OK(strop_model_freeze(m, "features.[0-1]"));
  OK(strop_model_freeze(m, "features.3.bias"));
  char buf[4096];
  int64_t n = strop_model_summary(m, buf, sizeof buf);
  ck_assert_int_gt(n, 0);
  ck_assert_uint_eq(strlen(buf), (size_t)n);
  ck_assert_ptr_nonnull(strstr(buf, "name"));
  static const char *const rows[][5] = {
      {"features.0 ", "conv2d", "[4, 6, 6]", " 76  no\n", ""},
      {"features.1 ", "batchnorm2d", "[4, 6, 6]", " 8  no (bn-eval)\n", ""},
      {"features.3 ", "conv2d", "[6, 4, 4]", " 222  partial\n", ""},
      {"features.4 ", "batchnorm2d", "[6, 4, 4]", " 12  yes\n", ""},
      {"pool ", "global_avgpool", "[6]", " 0  -\n", ""},
      {"head ", "linear", "[3]", " 21  yes\n", ""}};
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    const char *line = strstr(buf, rows[r][0]);
    ck_assert_msg(line != NULL, "no row %s in\n%s", rows[r][0], buf);
    const char *end = strchr(line, '\n');
    for (int k = 1; k < 4; k++) {
      const char *hit = strstr(line, rows[r][k]);
      ck_assert_msg(hit && hit <= end, "row %s lacks '%s' in\n%s", rows[r][0], rows[r][k], buf);
    }
  }
  ck_assert_ptr_nonnull(
      strstr(buf, "339 parameters: 249 trainable, 90 frozen; 22 buffer values"));
  char tiny[8];
  ck_assert_int_eq(strop_model_summary(m, tiny, sizeof tiny), n);
  ck_assert_uint_eq(strlen(tiny), 7);
  /* memory: MLP with fc1 frozen, batch 10, Adam */
  strop_model *mm = mlp();
  OK(strop_model_freeze(mm, "fc1"));
  size_t w, g, st, act, peak = 0, step = 0;
  OK(strop_model_memory_estimate(mm, 10, 2, &w, &g, &st, &act));
  ck_assert_uint_eq(w, (size_t)(32 + 8 + 24 + 3) * 4);
  ck_assert_uint_eq(g, (size_t)(24 + 3) * 4);
  ck_assert_uint_eq(st, 2 * g);
  /* the activations are the rest of the planned peak: the four parts add up to it */
  OK(strop_model_step_memory(mm, 10, NULL, 0, 2, &step, &peak));
  ck_assert_uint_eq(w + g + st + act, peak);
  ck_assert_uint_ge(act, step);
  /* the count that plans nothing: every output (8 + 8 + 3), and the gradients of the outputs
   * backward visits, only the head's (3) */
  size_t bw = 0, bg = 0, bound = 0;
  OK(strop__model_memory_bound("t", mm, 10, &bw, &bg, &bound));
  ck_assert_uint_eq(bw, w);
  ck_assert_uint_eq(bg, g);
  ck_assert_uint_eq(bound, (size_t)10 * 4 * (8 + 8 + 3 + 3));
  OK(strop_model_memory_estimate(mm, 1, 0, NULL, NULL, &st, NULL));
  ck_assert_uint_eq(st, 0);
  strop_model_free(mm);
  /* clone is deep and independent */
  strop_model *c = NULL;
  OK(strop_model_clone(m, &c));
  char b2[4096];
  strop_model_summary(c, b2, sizeof b2);
  ck_assert_str_eq(buf, b2);
  strop__model_param_find(c, "head.weight")->data[0] += 1.0f;
  ck_assert(!same_param(m, c, "head.weight"));
  strop_model_free(c);
  strop_model_free(m);
}
END_TEST

/* ---- allocation failures ---- */
static strop_model *g_base;

static int op_plan(void *ctx) {
  (void)ctx;
  strop_model *m = NULL;
  strop_surgery *s = NULL;
  strop_status st = strop_model_clone(g_base, &m);
  if (!st) st = strop_surgery_create(m, &s);
  if (!st) st = strop_surgery_freeze(s, "features.*", 0);
  if (!st) st = strop_surgery_replace(s, "head", "linear", "out_features=5", 3);
  if (!st) st = strop_surgery_insert_after(s, "pool", "fc", "linear", "out_features=6");
  if (!st) st = strop_surgery_lora(s, "fc", 2, 2.0f, 0.1f);
  if (!st) st = strop_surgery_remove(s, "features.2");
  if (!st) st = strop_surgery_apply(s);
  strop_surgery_free(s);
  strop_model_free(m);
  return st;
}

START_TEST(alloc_sweep_plan) {
  g_base = cnn();
  ck_assert_int_ge(strop_test_alloc_sweep(op_plan, NULL, NULL), 20);
  strop_model_free(g_base);
}
END_TEST

/* each failing allocation inside apply leaves the model exactly as it was */
static void transaction_sweep(int flags_only, int lora_load) {
  strop_model *m = cnn();
  if (lora_load) {
    strop_model_free(m);
    int64_t in[1] = {6};
    OK(strop_model_create(1, in, &m));
    OK(strop_model_add(m, "fc1", "linear", "out_features=8", NULL));
    OK(strop_model_add(m, "act", "relu", NULL, NULL));
    OK(strop_model_add(m, "fc2", "linear", "out_features=3", NULL));
    OK(strop_model_finalize(m, 1));
  }
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_freeze(s, "features.*", 0));
  OK(strop_surgery_param_group(s, "*.bias", -1.0f, 1));
  if (!flags_only) {
    OK(strop_surgery_replace(s, "head", "linear", "out_features=5", 3));
    OK(strop_surgery_append(s, "proj", "linear", "out_features=4"));
    OK(strop_surgery_lora(s, "proj", 2, 2.0f, 0.0f));
  }
  snap sn;
  snap_take(m, &sn);
  int failures = 0;
  for (int64_t k = 1; k < 10000; k++) {
    strop_clear_error();
    strop__alloc_fail_at(k);
    strop_status st = lora_load
                          ? strop_model_lora_load(m, STROP_TEST_DATA "/surgery/peft_adapter")
                          : strop_surgery_apply(s);
    int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    if (!hit) {
      OK(st);
      break;
    }
    failures++;
    ck_assert_msg(st == STROP_E_NOMEM, "allocation %lld: status %d (%s)", (long long)k, st,
                  strop_last_error());
    ck_assert(strop_last_error()[0] != '\0');
    snap_check(m, &sn);
  }
  ck_assert_int_ge(failures, flags_only ? 1 : 10);
  snap_free(&sn);
  strop_surgery_free(s);
  strop_model_free(m);
}

/* ---- frozen weights shared with the plan's clone, not copied ---- */

/* fc1 and a gated MLP frozen (held in `dtype`), a trained head */
static strop_model *held_base(int dtype) {
  const int64_t in[1] = {64};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "fc1", "linear", "out_features=256", NULL));
  OK(strop_model_add(m, "mlp", "gated_mlp", "intermediate_size=512", NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=4", NULL));
  OK(strop_model_finalize(m, 1));
  OK(strop_model_freeze(m, "fc1"));
  OK(strop_model_freeze(m, "mlp"));
  OK(strop_model_set_frozen_dtype(m, dtype));
  return m;
}

/* The frozen weights' storage: where the values are, and the values */
typedef struct held_snap {
  int n;
  char *name[16];
  const void *where[16];
  void *bytes[16];
  size_t size[16];
  int dtype[16];
  float out[2 * 4];
} held_snap;

static strop_tensor *held_forward(strop_model *m) {
  static float x[2 * 64];
  for (int i = 0; i < 2 * 64; i++) x[i] = (float)sin(0.37 * i);
  strop_tensor *tx = NULL, *y = NULL;
  OK(strop_tensor_wrap(x, 2 * 64, 2, (const int64_t[]){2, 64}, &tx));
  OK(strop_model_forward(m, tx, &y));
  strop_tensor_free(tx);
  return y;
}

static void held_take(strop_model *m, held_snap *h, size_t *frozen_bytes) {
  memset(h, 0, sizeof *h);
  size_t total = 0;
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (p->trainable || p->is_buffer) continue;
    ck_assert_int_lt(h->n, 16);
    const int k = h->n++;
    h->name[k] = strdup(p->name);
    h->dtype[k] = p->lowp.dtype;
    h->where[k] = p->lowp.dtype ? p->lowp.v : (const void *)p->data;
    h->size[k] = strop__param_bytes(p);
    h->bytes[k] = malloc(h->size[k]);
    if (p->lowp.dtype) {
      const size_t vb = h->size[k] - (size_t)strop__lowp_scales(&p->lowp) * sizeof(float);
      memcpy(h->bytes[k], p->lowp.v, vb);
      if (p->lowp.scale) memcpy((char *)h->bytes[k] + vb, p->lowp.scale, h->size[k] - vb);
    } else {
      memcpy(h->bytes[k], p->data, h->size[k]);
    }
    total += h->size[k];
  }
  if (frozen_bytes) *frozen_bytes = total;
  strop_tensor *y = held_forward(m);
  memcpy(h->out, strop_tensor_data(y), sizeof h->out);
  strop_tensor_free(y);
}

/* The frozen weights are where they were (not copied, not shared any more), as they were */
static void held_check(strop_model *m, const held_snap *h, int outputs) {
  for (int k = 0; k < h->n; k++) {
    const strop__param *p = strop__model_param_find(m, h->name[k]);
    ck_assert_msg(p != NULL, "%s gone", h->name[k]);
    ck_assert_int_eq(p->lowp.dtype, h->dtype[k]);
    ck_assert_msg((p->lowp.dtype ? p->lowp.v : (const void *)p->data) == h->where[k],
                  "%s was copied", h->name[k]);
    ck_assert_msg(p->map == NULL, "%s still shared", h->name[k]);
    if (p->lowp.dtype) {
      const size_t vb = h->size[k] - (size_t)strop__lowp_scales(&p->lowp) * sizeof(float);
      ck_assert(memcmp(p->lowp.v, h->bytes[k], vb) == 0);
      if (p->lowp.scale)
        ck_assert(memcmp(p->lowp.scale, (char *)h->bytes[k] + vb, h->size[k] - vb) == 0);
    } else {
      ck_assert(memcmp(p->data, h->bytes[k], h->size[k]) == 0);
    }
  }
  if (outputs) {
    strop_tensor *y = held_forward(m);
    ck_assert_mem_eq(strop_tensor_data(y), h->out, sizeof h->out);
    strop_tensor_free(y);
  }
}

static void held_free(held_snap *h) {
  for (int k = 0; k < h->n; k++) {
    free(h->name[k]);
    free(h->bytes[k]);
  }
}

/* A LoRA plan (and a head replaced) on a frozen base in FP32, BF16 or int8: the clone it runs
 * on shares the frozen weights, so the plan allocates less than half of them (it copied all
 * of them before), and after it the model holds them where it did, as its own. */
START_TEST(lora_plan_shares_frozen_weights) {
  strop_model *m = held_base(_i);
  held_snap h;
  size_t frozen = 0;
  held_take(m, &h, &frozen);
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "fc1", 4, 8.0f, 0.0f));
  OK(strop_surgery_lora(s, "mlp.up_proj", 4, 8.0f, 0.0f));
  OK(strop_surgery_replace(s, "head", "linear", "out_features=4", 7));
  OK(strop_surgery_validate(s)); /* a dry run shares and gives back too */
  held_check(m, &h, 1);
  strop__alloc_peak_reset();
  const int64_t base = strop__alloc_peak();
  OK(strop_surgery_apply(s));
  const int64_t extra = strop__alloc_peak() - base;
  ck_assert_msg(extra < (int64_t)frozen / 2,
                "the plan allocated %lld bytes beside %zu bytes of frozen weights",
                (long long)extra, frozen);
  strop_surgery_free(s);
  held_check(m, &h, 0);
  /* and it trains: the adapters and the head, the base as it was */
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  OK(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt));
  OK(strop_trainer_create(m, opt, &tr));
  static float x[2 * 64], y[2] = {1, 3};
  for (int i = 0; i < 2 * 64; i++) x[i] = (float)cos(0.21 * i);
  strop_tensor *tx = NULL, *ty = NULL;
  OK(strop_tensor_wrap(x, 2 * 64, 2, (const int64_t[]){2, 64}, &tx));
  OK(strop_tensor_wrap(y, 2, 1, (const int64_t[]){2}, &ty));
  float loss = 0;
  for (int k = 0; k < 2; k++) OK(strop_trainer_step(tr, tx, ty, &loss));
  held_check(m, &h, 0);
  strop_tensor_free(tx);
  strop_tensor_free(ty);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  held_free(&h);
  strop_model_free(m);
}
END_TEST

/* A plan that fails after its LoRA edit leaves a model with a frozen BF16 / int8 base exactly as
 * it was: the same storage at the same addresses, the same bits, the same outputs; unfreezing
 * a shared weight in a plan copies it (the model's stays). */
START_TEST(failing_plan_on_held_base) {
  strop_model *m = held_base(_i ? STROP_DTYPE_INT8 : STROP_DTYPE_BF16);
  held_snap h;
  held_take(m, &h, NULL);
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "fc1", 4, 8.0f, 0.0f));
  OK(strop_surgery_replace(s, "nope", "relu", NULL, 1));
  ck_assert_int_eq(strop_surgery_apply(s), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "no node named 'nope'"));
  held_check(m, &h, 1);
  strop_surgery_free(s);
  /* a plan that unfreezes the MLP and fails later: the model's weights untouched */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_unfreeze(s, "mlp", 0));
  OK(strop_surgery_insert_after(s, "head", "act", "relu", NULL));
  OK(strop_surgery_remove(s, "nope"));
  ck_assert_int_eq(strop_surgery_apply(s), STROP_E_NOT_FOUND);
  held_check(m, &h, 1);
  strop_surgery_free(s);
  /* the same without the failing edit: the MLP widened to FP32 in the model, fc1 kept */
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_unfreeze(s, "mlp", 0));
  OK(strop_surgery_insert_after(s, "head", "act", "relu", NULL));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  const strop__param *g = strop__model_param_find(m, "mlp.gate_proj.weight");
  ck_assert_int_eq(g->lowp.dtype, STROP_DTYPE_F32);
  ck_assert(g->trainable && g->data && !g->map);
  const strop__param *f = strop__model_param_find(m, "fc1.weight");
  ck_assert_ptr_eq(f->lowp.v, h.where[0]);
  ck_assert_ptr_null(f->map);
  held_free(&h);
  strop_model_free(m);
}
END_TEST

/* Each failing allocation of a LoRA plan on a frozen BF16 / int8 base (the clone's shares
 * included) leaves the model as it was. */
START_TEST(alloc_transaction_held_base) {
  strop_model *m = held_base(_i ? STROP_DTYPE_INT8 : STROP_DTYPE_BF16);
  held_snap h;
  held_take(m, &h, NULL);
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "fc1", 4, 8.0f, 0.0f));
  OK(strop_surgery_lora(s, "mlp.up_proj", 4, 8.0f, 0.0f));
  OK(strop_surgery_replace(s, "head", "linear", "out_features=4", 7));
  int failures = 0;
  for (int64_t k = 1; k < 10000; k++) {
    strop_clear_error();
    const int64_t live = strop__alloc_live();
    strop__alloc_fail_at(k);
    strop_status st = strop_surgery_apply(s);
    int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    if (!hit) {
      OK(st);
      break;
    }
    failures++;
    ck_assert_msg(st == STROP_E_NOMEM, "allocation %lld: status %d (%s)", (long long)k, st,
                  strop_last_error());
    ck_assert(strop_last_error()[0] != '\0');
    ck_assert_msg(strop__alloc_live() == live, "allocation %lld: %lld live, was %lld",
                  (long long)k, (long long)strop__alloc_live(), (long long)live);
    held_check(m, &h, 0);
  }
  ck_assert_int_ge(failures, 10);
  held_check(m, &h, 0); /* applied: the base where it was */
  held_free(&h);
  strop_surgery_free(s);
  strop_model_free(m);
}
END_TEST

START_TEST(alloc_transaction_structural) { transaction_sweep(0, 0); }
END_TEST

START_TEST(alloc_transaction_flags) { transaction_sweep(1, 0); }
END_TEST

START_TEST(alloc_transaction_lora_load) { transaction_sweep(0, 1); }
END_TEST

int main(void) {
  Suite *s = suite_create("surgery");
  TCase *tc = tcase_create("freeze");
  tcase_add_test(tc, glob_matching);
  tcase_add_test(tc, freeze_trunk_sgd);
  tcase_add_test(tc, freeze_trunk_adamw);
  tcase_add_test(tc, freeze_keep_bn_mode);
  tcase_add_test(tc, optimizer_survives_surgery);
  tcase_add_test(tc, flags_in_place_and_groups);
  suite_add_tcase(s, tc);
  tc = tcase_create("structure");
  tcase_add_test(tc, replace_head);
  tcase_add_test(tc, insert_remove_truncate_append);
  tcase_add_test(tc, dag_edits);
  tcase_add_test(tc, composite_edits);
  suite_add_tcase(s, tc);
  tc = tcase_create("lora");
  tcase_add_test(tc, lora_starts_exact_and_trains_adapters);
  tcase_add_test(tc, lora_save_and_reload);
  tcase_add_test(tc, lora_saves_replaced_head);
  tcase_add_test(tc, lora_saves_nodes_trained_whole);
  tcase_add_test(tc, lora_saves_trained_biases);
  tcase_add_test(tc, lora_modules_to_save_errors);
  tcase_add_test(tc, lora_peft_adapter);
  tcase_add_test(tc, lora_gradcheck);
  tcase_add_test(tc, lora_pytorch_parity);
  suite_add_tcase(s, tc);
  tc = tcase_create("lora_embedding");
  tcase_add_test(tc, lora_embedding_starts_exact_and_trains_adapters);
  tcase_add_test(tc, lora_embedding_tied_not_merged);
  tcase_add_test(tc, lora_embedding_save_and_reload);
  tcase_add_test(tc, lora_embedding_gradcheck);
  tcase_add_test(tc, lora_embedding_pytorch_parity);
  tcase_add_test(tc, lora_embedding_peft_adapter);
  tcase_add_test(tc, lora_embedding_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, every_edit_fails_cleanly);
  tcase_add_test(tc, argument_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("inspect");
  tcase_add_test(tc, describe_dry_run);
  tcase_add_test(tc, summary_and_memory);
  tcase_add_test(tc, step_memory_errors_and_advice);
  suite_add_tcase(s, tc);
  tc = tcase_create("alloc");
  tcase_add_test(tc, alloc_sweep_plan);
  tcase_add_test(tc, alloc_transaction_structural);
  tcase_add_test(tc, alloc_transaction_flags);
  tcase_add_test(tc, alloc_transaction_lora_load);
  tcase_add_loop_test(tc, alloc_transaction_held_base, 0, 2);
  suite_add_tcase(s, tc);
  tc = tcase_create("shared");
  tcase_add_loop_test(tc, lora_plan_shares_frozen_weights, 0, 3);
  tcase_add_loop_test(tc, failing_plan_on_held_base, 0, 2);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
