/* SPDX-License-Identifier: MIT */
/* strop tests — export for inference: BatchNorm folded into conv/linear, dropout removed,
 * LoRA merged into plain linear, reloaded models matching the original's eval outputs, and
 * the error paths (state, paths, injected write and allocation failures) leaving nothing. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/graph.h"
#include "io/atomic.h"
#include "strop/strop.h"
#include "testutil.h"

#define OK(x) ck_assert_msg((x) == STROP_OK, "%s: %s", #x, strop_last_error())

/* ---- temporary folders ---- */
static char g_dir[256];

static void dir_setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/strop_export_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static int dir_count(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static void dir_teardown(void) {
  DIR *d = opendir(g_dir);
  if (d) {
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(g_dir);
}

static void path_in(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", g_dir, name);
}

/* ---- data ---- */
static float *rand_floats(size_t n, uint64_t seed, float lo, float hi) {
  strop__rng g;
  strop__rng_seed(&g, seed, 9);
  float *x = malloc(n * sizeof *x + 1);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * strop__rng_uniform(&g);
  return x;
}

static size_t in_numel(const strop_model *m, int64_t batch) {
  return (size_t)batch * strop__shape_numel(&m->in_shape);
}

/* eval-mode forward through the public API; a malloc'd copy of the output */
static float *run(strop_model *m, const float *x, int64_t batch, size_t *n_out) {
  int64_t dims[STROP_MAX_RANK + 1];
  dims[0] = batch;
  int r = strop_model_input_shape(m, dims + 1, STROP_MAX_RANK);
  strop_tensor *in = NULL, *out = NULL;
  OK(strop_tensor_from_data(x, in_numel(m, batch), r + 1, dims, &in));
  ck_assert_int_eq(strop_model_is_training(m), 0);
  OK(strop_model_forward(m, in, &out));
  size_t n = (size_t)strop_tensor_numel(out);
  float *y = malloc(n * sizeof *y + 1);
  memcpy(y, strop_tensor_data_const(out), n * sizeof *y);
  strop_tensor_free(in);
  strop_tensor_free(out);
  *n_out = n;
  return y;
}

/* A few train-mode forwards so BatchNorm's running statistics move away from (0, 1), and
 * random affine parameters, so folding has something to fold. */
static void warm_bn(strop_model *m, uint64_t seed) {
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    size_t l = strlen(p->name);
    int is_bn_w = 0;
    for (int k = 0; k < m->n_nodes; k++)
      if (strstr(m->nodes[k].vt->type, "batchnorm") &&
          strncmp(p->name, m->nodes[k].name, strlen(m->nodes[k].name)) == 0)
        is_bn_w = !p->is_buffer;
    if (!is_bn_w) continue;
    float *v = rand_floats(p->numel, seed + (uint64_t)i,
                           l > 6 && !strcmp(p->name + l - 6, "weight") ? 0.5f : -0.5f,
                           l > 6 && !strcmp(p->name + l - 6, "weight") ? 1.5f : 0.5f);
    OK(strop_model_set_tensor(m, p->name, v, p->numel));
    free(v);
  }
  OK(strop_model_set_training(m, 1));
  for (int s = 0; s < 4; s++) {
    const int64_t batch = 8;
    float *x = rand_floats(in_numel(m, batch), seed * 31 + (uint64_t)s, -1.0f, 3.0f);
    int64_t dims[STROP_MAX_RANK + 1];
    dims[0] = batch;
    int r = strop_model_input_shape(m, dims + 1, STROP_MAX_RANK);
    strop_tensor *in = NULL, *out = NULL;
    OK(strop_tensor_from_data(x, in_numel(m, batch), r + 1, dims, &in));
    OK(strop_model_forward(m, in, &out));
    strop_tensor_free(in);
    strop_tensor_free(out);
    free(x);
  }
  OK(strop_model_set_training(m, 0));
}

/* ---- models ---- */
/* conv-bn-relu-pool-flatten-linear-bn1d-dropout-linear */
static strop_model *cnn(void) {
  int64_t in[3] = {2, 8, 8};
  strop_model *m = NULL;
  OK(strop_model_create(3, in, &m));
  OK(strop_model_add(m, "features.0", "conv2d",
                     "out_channels=4 kernel_size=3 padding=1 bias=false", NULL));
  OK(strop_model_add(m, "features.1", "batchnorm2d", NULL, NULL));
  OK(strop_model_add(m, "features.2", "relu", NULL, NULL));
  OK(strop_model_add(m, "features.3", "maxpool2d", "kernel_size=2", NULL));
  OK(strop_model_add(m, "flatten", "flatten", NULL, NULL));
  OK(strop_model_add(m, "fc", "linear", "out_features=16", NULL));
  OK(strop_model_add(m, "fc_bn", "batchnorm1d", NULL, NULL));
  OK(strop_model_add(m, "drop", "dropout", "p=0.3", NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=5", NULL));
  OK(strop_model_finalize(m, 42));
  warm_bn(m, 7);
  return m;
}

static int count_type(const strop_model *m, const char *type) {
  int c = 0;
  char buf[64];
  for (int64_t i = 0; i < strop_model_num_nodes(m); i++) {
    ck_assert_int_ge(strop_model_node_info(m, i, 1, buf, sizeof buf), 0);
    c += strcmp(buf, type) == 0;
  }
  return c;
}

static const char *node_type(const strop_model *m, const char *name, char *buf, size_t cap) {
  char nb[128];
  for (int64_t i = 0; i < strop_model_num_nodes(m); i++) {
    strop_model_node_info(m, i, 0, nb, sizeof nb);
    if (!strcmp(nb, name)) {
      strop_model_node_info(m, i, 1, buf, cap);
      return buf;
    }
  }
  return "";
}

static int has_tensor(const strop_model *m, const char *name) {
  char buf[256];
  for (int64_t i = 0; i < strop_model_num_tensors(m); i++) {
    strop_model_tensor_name(m, i, buf, sizeof buf);
    if (!strcmp(buf, name)) return 1;
  }
  return 0;
}

/* exports m, reloads the files, compares eval outputs (relative to the output's scale) and
 * checks m itself did not change; returns the reloaded model */
static strop_model *export_and_reload(strop_model *m, int flags, double *err_out) {
  char spec[320], weights[320];
  path_in(spec, sizeof spec, "model.yaml");
  path_in(weights, sizeof weights, "model.safetensors");
  const int64_t batch = 6;
  float *x = rand_floats(in_numel(m, batch), 99, -1.0f, 3.0f);
  size_t n0, n1, n2;
  float *y0 = run(m, x, batch, &n0);
  int64_t nodes = strop_model_num_nodes(m), tensors = strop_model_num_tensors(m);
  OK(strop_model_export(m, spec, weights, flags));
  ck_assert_int_eq(dir_count(g_dir), 2);
  ck_assert_int_eq(strop_model_num_nodes(m), nodes);
  ck_assert_int_eq(strop_model_num_tensors(m), tensors);
  float *y1 = run(m, x, batch, &n1);
  ck_assert(memcmp(y0, y1, n0 * sizeof *y0) == 0);
  strop_model *r = NULL;
  OK(strop_model_load_spec(spec, &r));
  OK(strop_model_load_weights(r, weights, STROP_LOAD_STRICT, NULL));
  float *y2 = run(r, x, batch, &n2);
  ck_assert_uint_eq(n0, n2);
  double scale = 0.0;
  for (size_t i = 0; i < n0; i++) scale = fmax(scale, fabs(y0[i]));
  double err = strop_test_max_rel(y2, y0, n0, scale, NULL);
  ck_assert_msg(err < 1e-5, "exported outputs differ: %g relative", err);
  if (err_out) *err_out = err;
  free(x);
  free(y0);
  free(y1);
  free(y2);
  return r;
}

/* ---- folding ---- */
START_TEST(fold_cnn) {
  strop_model *m = cnn();
  strop_model *r = export_and_reload(m, STROP_EXPORT_DEFAULT, NULL);
  ck_assert_int_eq(count_type(r, "batchnorm2d"), 0);
  ck_assert_int_eq(count_type(r, "batchnorm1d"), 0);
  ck_assert_int_eq(count_type(r, "dropout"), 0);
  ck_assert_int_eq(strop_model_num_nodes(r), 6);
  ck_assert(has_tensor(r, "features.0.bias")); /* the conv gained a bias */
  ck_assert(!has_tensor(r, "features.1.running_mean"));
  ck_assert(has_tensor(r, "fc.bias"));
  char t[64];
  ck_assert_str_eq(node_type(r, "head", t, sizeof t), "linear");
  ck_assert_int_eq(strop_model_is_training(r), 0);
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* exporting a model in train mode still exports eval behaviour; the caller's mode stays */
START_TEST(fold_from_train_mode) {
  strop_model *m = cnn();
  char spec[320], weights[320];
  path_in(spec, sizeof spec, "a.yaml");
  path_in(weights, sizeof weights, "a.safetensors");
  OK(strop_model_set_training(m, 1));
  OK(strop_model_export(m, spec, weights, 0));
  ck_assert_int_eq(strop_model_is_training(m), 1);
  strop_model *r = NULL;
  OK(strop_model_load_spec(spec, &r));
  OK(strop_model_load_weights(r, weights, STROP_LOAD_STRICT, NULL));
  OK(strop_model_set_training(m, 0));
  size_t n0, n1;
  float *x = rand_floats(in_numel(m, 3), 5, -1.0f, 1.0f);
  float *y0 = run(m, x, 3, &n0), *y1 = run(r, x, 3, &n1);
  ck_assert_double_lt(strop_test_max_rel(y1, y0, n0, 1e-2, NULL), 1e-5);
  free(x);
  free(y0);
  free(y1);
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

START_TEST(no_fold_keeps_bn) {
  strop_model *m = cnn();
  strop_model *r = export_and_reload(m, STROP_EXPORT_NO_FOLD, NULL);
  ck_assert_int_eq(count_type(r, "batchnorm2d"), 1);
  ck_assert_int_eq(count_type(r, "batchnorm1d"), 1);
  ck_assert_int_eq(count_type(r, "dropout"), 0);
  ck_assert(!has_tensor(r, "features.0.bias"));
  ck_assert(has_tensor(r, "features.1.running_var"));
  strop_model_free(r);
  m = (strop_model_free(m), cnn());
  r = export_and_reload(m, STROP_EXPORT_NO_FOLD | STROP_EXPORT_KEEP_DROPOUT, NULL);
  ck_assert_int_eq(count_type(r, "dropout"), 1);
  ck_assert_int_eq(strop_model_num_nodes(r), strop_model_num_nodes(m));
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* fc1 (LoRA, trained B) -> bn1d -> relu -> head: merged, then folded */
START_TEST(lora_merged) {
  int64_t in[1] = {6};
  strop_model *m = NULL;
  OK(strop_model_create(1, in, &m));
  OK(strop_model_add(m, "fc1", "linear", "out_features=8", NULL));
  OK(strop_model_add(m, "bn", "batchnorm1d", NULL, NULL));
  OK(strop_model_add(m, "act", "relu", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m, 3));
  warm_bn(m, 11);
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "*", 2, 4.0f, 0.1f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  char t[64];
  ck_assert_str_eq(node_type(m, "fc1", t, sizeof t), "lora_linear");
  /* a trained adapter: B away from zero */
  float *b1 = rand_floats(8 * 2, 21, -0.5f, 0.5f), *b2 = rand_floats(3 * 2, 22, -0.5f, 0.5f);
  OK(strop_model_set_tensor(m, "fc1.lora_B.weight", b1, 8 * 2));
  OK(strop_model_set_tensor(m, "head.lora_B.weight", b2, 3 * 2));
  free(b1);
  free(b2);
  strop_model *r = export_and_reload(m, 0, NULL);
  ck_assert_str_eq(node_type(r, "fc1", t, sizeof t), "linear");
  ck_assert_str_eq(node_type(r, "head", t, sizeof t), "linear");
  ck_assert_int_eq(count_type(r, "lora_linear"), 0);
  ck_assert_int_eq(count_type(r, "batchnorm1d"), 0);
  ck_assert(!has_tensor(r, "fc1.lora_A.weight"));
  ck_assert(!has_tensor(r, "head.lora_B.weight"));
  ck_assert_int_eq(strop_model_num_tensors(r), 4);
  /* the caller's model still has its unmerged adapters */
  ck_assert_str_eq(node_type(m, "fc1", t, sizeof t), "lora_linear");
  ck_assert(has_tensor(m, "fc1.lora_B.weight"));
  strop_model_free(r);
  /* already merged by the caller: exported the same way */
  OK(strop_model_lora_merge(m));
  r = export_and_reload(m, 0, NULL);
  ck_assert_int_eq(count_type(r, "lora_linear"), 0);
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* adapters on attention projections: merged, and the node written without them */
START_TEST(lora_attention) {
  int64_t in[2] = {5, 8};
  strop_model *m = NULL;
  OK(strop_model_create(2, in, &m));
  OK(strop_model_add(m, "attn", "multihead_attention", "num_heads=2", NULL));
  OK(strop_model_add(m, "pool", "mean_pool", NULL, NULL));
  OK(strop_model_add(m, "head", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(m, 5));
  strop_surgery *s = NULL;
  OK(strop_surgery_create(m, &s));
  OK(strop_surgery_lora(s, "attn.q_proj", 2, 4.0f, 0.0f));
  OK(strop_surgery_lora(s, "attn.out_proj", 2, 2.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert(has_tensor(m, "attn.q_proj.lora_B.weight"));
  float *b = rand_floats(8 * 2, 31, -0.5f, 0.5f);
  OK(strop_model_set_tensor(m, "attn.q_proj.lora_B.weight", b, 8 * 2));
  OK(strop_model_set_tensor(m, "attn.out_proj.lora_B.weight", b, 8 * 2));
  free(b);
  int64_t before = strop_model_num_tensors(m);
  strop_model *r = export_and_reload(m, 0, NULL);
  ck_assert_int_eq(strop_model_num_tensors(r), before - 4);
  ck_assert(!has_tensor(r, "attn.q_proj.lora_A.weight"));
  ck_assert(!has_tensor(r, "attn.out_proj.lora_B.weight"));
  ck_assert(has_tensor(m, "attn.out_proj.lora_B.weight"));
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* c1's output feeds both the BatchNorm and a residual add: not foldable */
START_TEST(residual_not_folded) {
  int64_t in[3] = {3, 6, 6};
  strop_model *m = NULL;
  OK(strop_model_create(3, in, &m));
  OK(strop_model_add(m, "c1", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL));
  OK(strop_model_add(m, "bn1", "batchnorm2d", NULL, "c1"));
  OK(strop_model_add(m, "sum", "add", NULL, "bn1,c1"));
  OK(strop_model_add(m, "c2", "conv2d", "out_channels=5 kernel_size=3", "sum"));
  OK(strop_model_add(m, "bn2", "batchnorm2d", NULL, NULL)); /* foldable */
  OK(strop_model_add(m, "pool", "global_avgpool", NULL, NULL));
  OK(strop_model_finalize(m, 9));
  warm_bn(m, 4);
  strop_model *r = export_and_reload(m, 0, NULL);
  char t[64];
  ck_assert_str_eq(node_type(r, "bn1", t, sizeof t), "batchnorm2d");
  ck_assert_str_eq(node_type(r, "bn2", t, sizeof t), "");
  ck_assert_int_eq(count_type(r, "batchnorm2d"), 1);
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* BatchNorm as the output with its conv not the node before it; a dropout on the model input;
 * a BatchNorm without running statistics (never folded) */
START_TEST(output_and_edge_nodes) {
  int64_t in[3] = {2, 5, 5};
  strop_model *m = NULL;
  OK(strop_model_create(3, in, &m));
  OK(strop_model_add(m, "drop_in", "dropout", "p=0.2", NULL));
  OK(strop_model_add(m, "c1", "conv2d", "out_channels=3 kernel_size=3", "drop_in"));
  OK(strop_model_add(m, "side", "relu", NULL, "input"));
  OK(strop_model_add(m, "bn", "batchnorm2d", NULL, "c1"));
  OK(strop_model_finalize(m, 2));
  warm_bn(m, 8);
  strop_model *r = export_and_reload(m, 0, NULL);
  ck_assert_int_eq(count_type(r, "batchnorm2d"), 0);
  ck_assert_int_eq(count_type(r, "dropout"), 0);
  int64_t d[4];
  ck_assert_int_eq(strop_model_output_shape(r, d, 4), 3);
  ck_assert_int_eq(d[0], 3);
  strop_model_free(r);
  strop_model_free(m);

  OK(strop_model_create(3, in, &m));
  OK(strop_model_add(m, "c1", "conv2d", "out_channels=3 kernel_size=3", NULL));
  OK(strop_model_add(m, "bn", "batchnorm2d", "track_running_stats=false", NULL));
  OK(strop_model_add(m, "drop", "dropout", NULL, NULL));
  OK(strop_model_finalize(m, 2));
  char spec[320], weights[320];
  path_in(spec, sizeof spec, "b.yaml");
  path_in(weights, sizeof weights, "b.safetensors");
  OK(strop_model_export(m, spec, weights, 0));
  OK(strop_model_load_spec(spec, &r));
  ck_assert_int_eq(count_type(r, "batchnorm2d"), 1);
  ck_assert_int_eq(count_type(r, "dropout"), 0);
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* ---- errors ---- */
START_TEST(errors_arguments) {
  char spec[320], weights[320];
  path_in(spec, sizeof spec, "e.yaml");
  path_in(weights, sizeof weights, "e.safetensors");
  int64_t in[1] = {4};
  strop_model *u = NULL;
  OK(strop_model_create(1, in, &u));
  OK(strop_model_add(u, "fc", "linear", "out_features=2", NULL));
  strop_clear_error();
  ck_assert_int_eq(strop_model_export(u, spec, weights, 0), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_model_export"));
  OK(strop_model_finalize(u, 1));
  ck_assert_int_eq(strop_model_export(NULL, spec, weights, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_export(u, NULL, weights, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_export(u, spec, NULL, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_export(u, "", weights, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_export(u, spec, spec, 0), STROP_E_INVALID_ARG);
  strop_clear_error();
  ck_assert_int_eq(strop_model_export(u, spec, weights, 64), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "flags"));
  ck_assert_int_eq(dir_count(g_dir), 0);
  strop_model_free(u);
}
END_TEST

static void write_text(const char *path, const char *s) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fputs(s, f);
  fclose(f);
}

static void check_text(const char *path, const char *s) {
  size_t n = 0;
  char *t = strop_test_read_file(path, &n);
  ck_assert_ptr_nonnull(t);
  ck_assert_str_eq(t, s);
  free(t);
}

START_TEST(errors_io) {
  strop_model *m = cnn();
  char spec[320], weights[320], bad[320];
  path_in(spec, sizeof spec, "m.yaml");
  path_in(weights, sizeof weights, "m.safetensors");
  path_in(bad, sizeof bad, "missing/sub/m.yaml");
  /* old files must survive every failure */
  write_text(spec, "old spec");
  write_text(weights, "old weights");
  strop_clear_error();
  ck_assert_int_eq(strop_model_export(m, bad, weights, 0), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), bad));
  path_in(bad, sizeof bad, "missing/sub/m.safetensors");
  strop_clear_error();
  ck_assert_int_eq(strop_model_export(m, spec, bad, 0), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), bad));
  ck_assert_int_eq(dir_count(g_dir), 2); /* no temporary spec left */
  check_text(spec, "old spec");
  check_text(weights, "old weights");
  /* a write failing part-way through the spec, then through the weights */
  for (int64_t budget = 10; budget < 4000; budget *= 3) {
    strop__afile_fail_after(budget);
    strop_status st = strop_model_export(m, spec, weights, 0);
    strop__afile_fail_after(-1);
    ck_assert_int_eq(st, STROP_E_IO);
    ck_assert_int_eq(dir_count(g_dir), 2);
    check_text(spec, "old spec");
    check_text(weights, "old weights");
  }
  /* and then it works, replacing both */
  OK(strop_model_export(m, spec, weights, 0));
  ck_assert_int_eq(dir_count(g_dir), 2);
  strop_model *r = NULL;
  OK(strop_model_load_spec(spec, &r));
  OK(strop_model_load_weights(r, weights, STROP_LOAD_STRICT, NULL));
  strop_model_free(r);
  strop_model_free(m);
}
END_TEST

/* ---- allocation failures ---- */
static strop_model *g_model;

static int op_export(void *ctx) {
  (void)ctx;
  char spec[320], weights[320];
  path_in(spec, sizeof spec, "s.yaml");
  path_in(weights, sizeof weights, "s.safetensors");
  strop_status st = strop_model_export(g_model, spec, weights, 0);
  if (st) ck_assert_int_eq(dir_count(g_dir), 0);
  return st;
}

static void cleanup_export(void *ctx) {
  (void)ctx;
  char p[320];
  ck_assert_int_eq(dir_count(g_dir), 2);
  path_in(p, sizeof p, "s.yaml");
  unlink(p);
  path_in(p, sizeof p, "s.safetensors");
  unlink(p);
}

START_TEST(alloc_sweep_export) {
  g_model = cnn();
  strop_surgery *s = NULL;
  OK(strop_surgery_create(g_model, &s));
  OK(strop_surgery_lora(s, "head", 2, 2.0f, 0.0f));
  OK(strop_surgery_apply(s));
  strop_surgery_free(s);
  ck_assert_int_ge(strop_test_alloc_sweep(op_export, cleanup_export, NULL), 20);
  strop_model_free(g_model);
}
END_TEST

int main(void) {
  Suite *s = suite_create("export");
  TCase *tc = tcase_create("fold");
  tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
  tcase_add_test(tc, fold_cnn);
  tcase_add_test(tc, fold_from_train_mode);
  tcase_add_test(tc, no_fold_keeps_bn);
  tcase_add_test(tc, residual_not_folded);
  tcase_add_test(tc, output_and_edge_nodes);
  suite_add_tcase(s, tc);
  tc = tcase_create("lora");
  tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
  tcase_add_test(tc, lora_merged);
  tcase_add_test(tc, lora_attention);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
  tcase_add_test(tc, errors_arguments);
  tcase_add_test(tc, errors_io);
  suite_add_tcase(s, tc);
  tc = tcase_create("alloc");
  tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
  tcase_add_test(tc, alloc_sweep_export);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
