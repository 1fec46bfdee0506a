/* SPDX-License-Identifier: MIT */
/* strop tests — pre-trained checkpoints (lib/pretrained).
 *
 * Without PyTorch: the architecture list, and every broken input a user can hand
 * strop_model_load_pretrained getting its own status and sentence (checkpoints made by strop
 * itself with a partial load and a save).
 * With PyTorch (tests/pretrained/run_torchvision.py generates torchvision's checkpoints and
 * answers into a folder and runs this suite with STROP_PT_FIXTURES pointing at it): ResNet-18
 * and ResNet-50 load strictly with torchvision's names; eval logits, train logits, the loss,
 * every gradient and one AdamW step match PyTorch; the BF16, [1]-shaped-scalar and sharded
 * forms load; other image sizes run; the stepped model is saved for PyTorch to reload. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/graph.h"
#include "strop/strop.h"
#include "testutil.h"

static char g_tmp[256];

static void tmp_setup(void) {
  snprintf(g_tmp, sizeof g_tmp, "%s/pt_XXXXXX", P_tmpdir);
  ck_assert_ptr_nonnull(mkdtemp(g_tmp));
}

static void tmp_teardown(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  ck_assert_int_eq(system(cmd), 0);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  ck_assert_int_eq(fclose(f), 0);
}

static char *path_in(const char *dir, const char *name) {
  static char buf[4][512];
  static int k;
  char *p = buf[k++ & 3];
  snprintf(p, 512, "%s/%s", dir, name);
  return p;
}

/* Expects status st and a sentence containing each of the NULL-terminated words. */
static void expect_error(strop_status got, strop_status want, const char *const *words) {
  const char *msg = strop_last_error();
  ck_assert_msg(got == want, "status %d, want %d: %s", got, want, msg);
  for (const char *const *w = words; *w; w++)
    ck_assert_msg(strstr(msg, *w), "'%s' does not say '%s'", msg, *w);
}

START_TEST(arch_list) {
  int n = strop_pretrained_arch_count();
  ck_assert_int_ge(n, 4);
  int seen = 0;
  for (int i = 0; i < n; i++) {
    const char *name = strop_pretrained_arch_name(i);
    ck_assert_ptr_nonnull(name);
    ck_assert_ptr_nonnull(strop_pretrained_arch_doc(name));
    seen += !strcmp(name, "resnet18") || !strcmp(name, "resnet50");
  }
  ck_assert_int_eq(seen, 2);
  ck_assert_ptr_nonnull(strop_pretrained_arch_doc("mobilenet_v2"));
  ck_assert_ptr_nonnull(strop_pretrained_arch_doc("mobilenet_v3_small"));
  ck_assert_ptr_nonnull(strop_pretrained_arch_doc("mobilenet_v3_large"));
  ck_assert_ptr_null(strop_pretrained_arch_name(n));
  ck_assert_ptr_null(strop_pretrained_arch_name(-1));
  ck_assert_ptr_null(strop_pretrained_arch_doc("resnet9000"));
  ck_assert_ptr_null(strop_pretrained_arch_doc(NULL));
}
END_TEST

/* A resnet18 checkpoint written by strop: a partial load of an empty file initialises every
 * tensor from the seed, and saving writes torchvision's names. */
static void make_resnet18(const char *path, int64_t image_size) {
  char empty[600];
  snprintf(empty, sizeof empty, "%s.empty", path);
  FILE *f = fopen(empty, "wb");
  ck_assert_ptr_nonnull(f);
  static const char hdr[] = "{}      ";
  const unsigned char len[8] = {8, 0, 0, 0, 0, 0, 0, 0};
  fwrite(len, 1, 8, f);
  fwrite(hdr, 1, 8, f);
  ck_assert_int_eq(fclose(f), 0);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = STROP_LOAD_PARTIAL;
  o.image_size = image_size;
  o.seed = 5;
  strop_model *m = NULL;
  strop_load_report *r = NULL;
  strop_test_must(strop_model_load_pretrained(empty, "resnet18", &o, &m, &r), "partial load");
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 0);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISSING), 122);
  strop_load_report_free(r);
  ck_assert_int_eq(strop_model_num_tensors(m), 122);
  ck_assert_int_eq(strop_model_param_count(m, 0), 11689512); /* torchvision.models.resnet18() */
  strop_test_must(strop_model_save_weights(m, path), "save");
  strop_model_free(m);
  unlink(empty);
}

/* MobileNets built without a file (a partial load of an empty one): torchvision's tensor
 * counts and parameter counts (torchvision.models.<arch>(), 1000 classes), and a forward at
 * another image size than declared. */
START_TEST(mobilenet_built) {
  static const struct {
    const char *arch;
    int tensors;
    int64_t params;
    const char *name; /* a tensor as torchvision names it */
  } c[] = {{"mobilenet_v2", 314, 3504872, "features.17.conv.2.weight"},
           {"mobilenet_v3_small", 244, 2542856, "features.4.block.2.fc1.bias"},
           {"mobilenet_v3_large", 312, 5483032, "features.15.block.3.1.running_var"}};
  const char *empty = path_in(g_tmp, "empty.safetensors");
  FILE *f = fopen(empty, "wb");
  ck_assert_ptr_nonnull(f);
  const unsigned char len[8] = {8, 0, 0, 0, 0, 0, 0, 0};
  fwrite(len, 1, 8, f);
  fwrite("{}      ", 1, 8, f);
  ck_assert_int_eq(fclose(f), 0);
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    strop_pretrained_options o;
    strop_pretrained_options_init(&o);
    o.flags = STROP_LOAD_PARTIAL;
    o.image_size = 64;
    strop_model *m = NULL;
    strop_test_must(strop_model_load_pretrained(empty, c[i].arch, &o, &m, NULL), c[i].arch);
    ck_assert_int_eq(strop_model_num_tensors(m), c[i].tensors);
    ck_assert_int_eq(strop_model_param_count(m, 0), c[i].params);
    strop_tensor *v = NULL;
    strop_test_must(strop_model_tensor_view(m, c[i].name, &v), c[i].name);
    strop_tensor_free(v);
    const int64_t xd[4] = {1, 3, 40, 48};
    float *x = calloc(3 * 40 * 48, sizeof *x);
    strop_tensor *in = NULL, *out = NULL;
    strop_test_must(strop_tensor_wrap(x, 3 * 40 * 48, 4, xd, &in), "wrap");
    strop_test_must(strop_model_forward(m, in, &out), "forward at 40x48");
    ck_assert_int_eq(strop_tensor_numel(out), 1000);
    strop_tensor_free(in);
    strop_tensor_free(out);
    free(x);
    strop_model_free(m);
  }
}
END_TEST

START_TEST(own_checkpoint_round_trip) {
  const char *p = path_in(g_tmp, "r18.safetensors");
  make_resnet18(p, 32);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.image_size = 32;
  strop_model *m = NULL;
  strop_load_report *r = NULL;
  strop_test_must(strop_model_load_pretrained(p, "resnet18", &o, &m, &r), "strict load");
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 122);
  strop_load_report_free(r);
  int64_t dims[4];
  ck_assert_int_eq(strop_model_output_shape(m, dims, 4), 1);
  ck_assert_int_eq(dims[0], 1000);
  ck_assert_int_eq(strop_model_input_shape(m, dims, 4), 3);
  ck_assert_int_eq(dims[1], 32);
  ck_assert_int_eq(strop_model_is_training(m), 0);
  /* torchvision's names, one node per module application */
  char name[64];
  ck_assert_int_gt(strop_model_tensor_name(m, 0, name, sizeof name), 0);
  ck_assert_str_eq(name, "conv1.weight");
  strop_tensor *v = NULL;
  strop_test_must(strop_model_tensor_view(m, "layer2.0.downsample.1.running_var", &v), "view");
  strop_tensor_free(v);
  strop_model_free(m);
  /* a folder with the same file, the architecture named */
  char dir[400];
  snprintf(dir, sizeof dir, "%s/folder", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  ck_assert_int_eq(link(p, path_in(dir, "model.safetensors")), 0);
  strop_test_must(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), "folder");
  strop_model_free(m);
}
END_TEST

/* STROP_LOAD_FROZEN | STROP_LOAD_MMAP: every weight frozen and borrowed from the mapped file
 * (no memory of its own, nothing copied), buffers read; the same outputs as a copying load. */
/* a "Key:   N kB" line of /proc/self/status */
static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key));
  if (f) fclose(f);
  return v;
}

START_TEST(mapped_frozen_load) {
  const char *p = path_in(g_tmp, "r18.safetensors");
  make_resnet18(p, 32);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.image_size = 32;
  strop_model *c = NULL, *m = NULL;
  strop_test_must(strop_model_load_pretrained(p, "resnet18", &o, &c, NULL), "copying load");
  strop_test_must(strop_model_freeze(c, "*"), "freeze");
  o.flags = STROP_LOAD_MMAP | STROP_LOAD_FROZEN;
  const int64_t b0 = strop__mapping_borrowed_bytes(), c0 = strop__mapping_copied_bytes();
  strop_test_must(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), "mapped load");
  ck_assert_int_eq(strop__mapping_copied_bytes(), c0);
  ck_assert_int_eq(strop_model_param_count(m, 1), 0);
  int64_t weights = 0;
  for (int i = 0; i < m->n_params; i++)
    if (!m->params[i]->is_buffer) {
      ck_assert_ptr_nonnull(m->params[i]->map);
      weights += (int64_t)m->params[i]->numel * 4;
    } else {
      ck_assert_ptr_null(m->params[i]->map);
    }
  ck_assert_int_eq(strop__mapping_borrowed_bytes() - b0, weights);
  ck_assert_int_gt(weights, 40 << 20);
  const int64_t d[4] = {2, 3, 32, 32};
  float *x = malloc(2 * 3 * 32 * 32 * sizeof *x);
  for (int i = 0; i < 2 * 3 * 32 * 32; i++) x[i] = (float)sin(0.01 * i);
  strop_tensor *in = NULL, *ya = NULL, *yb = NULL;
  strop_test_must(strop_tensor_from_data(x, 2 * 3 * 32 * 32, 4, d, &in), "x");
  strop_test_must(strop_model_forward(m, in, &ya), "forward");
  strop_test_must(strop_model_forward(c, in, &yb), "forward");
  ck_assert_mem_eq(strop_tensor_data(ya), strop_tensor_data(yb), 2 * 1000 * sizeof(float));
  /* the head unfrozen: copied out of the mapping, the trunk stays borrowed */
  strop_test_must(strop_model_unfreeze(m, "fc"), "unfreeze");
  ck_assert_int_eq(strop__mapping_copied_bytes() - c0, (512 * 1000 + 1000) * 4);
  ck_assert_ptr_nonnull(strop__model_param_find(m, "conv1.weight")->map);
  /* training steps read the trunk's convs through their folded copies (the frozen batch
   * norms folded in): the mapped pages of those weights go back to the kernel, so the copies
   * replace them in RSS, and the prediction counts the copies net of them; an evaluation
   * after it reads the file's values again, bit for bit */
  size_t peak = 0;
  strop_test_must(strop_model_step_memory(m, 2, NULL, 0, 2, NULL, &peak), "step memory");
  size_t folds = 0, released = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    folds += strop__node_fold_bytes(&m->nodes[i]);
    released += strop__node_fold_released(&m->nodes[i]);
  }
  ck_assert_uint_gt(released, (size_t)(weights * 9 / 10));
  ck_assert_uint_ge(folds, released);
  strop_tensor_free(ya);
  ya = NULL;
  strop_test_must(strop_model_forward(m, in, &ya), "forward after the planning");
  const long file_eval = status_kb("RssFile:");
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_tensor *lab = NULL;
  const int64_t ld[1] = {2};
  const float lv[2] = {3, 7};
  strop_test_must(strop_tensor_from_data(lv, 2, 1, ld, &lab), "labels");
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "optimizer");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_test_must(strop_trainer_step(tr, in, lab, NULL), "step");
  const long file_step = status_kb("RssFile:");
  ck_assert_msg(file_eval - file_step > (long)(released / 1024) * 9 / 10,
                "RssFile %ld kB after an evaluation, %ld kB after a step: %zu bytes released",
                file_eval, file_step, released);
  /* the borrowed weights read back as the file's values (the copying load's) */
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *pm = m->params[i];
    if (!pm->map) continue;
    const strop__param *pc = strop__model_param_find(c, pm->name);
    ck_assert_ptr_nonnull(pc);
    ck_assert_mem_eq(pm->data, pc->data, pm->numel * sizeof(float));
  }
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_tensor_free(lab);
  strop_tensor_free(in);
  strop_tensor_free(ya);
  strop_tensor_free(yb);
  free(x);
  strop_model_free(m);
  strop_model_free(c);
  /* errors: a frozen dtype that is none, a flag that is none; nothing made */
  o.frozen_dtype = 7;
  ck_assert_int_eq(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "frozen_dtype"));
  ck_assert_ptr_null(m);
  o.frozen_dtype = 0;
  o.flags = 16; /* the first bit no flag uses (8 is STROP_LOAD_FRESH) */
  ck_assert_int_eq(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(m);
}
END_TEST

START_TEST(bad_inputs) {
  strop_model *m = (strop_model *)1;
  char p[512];
  snprintf(p, sizeof p, "%s", path_in(g_tmp, "r18.safetensors"));
  make_resnet18(p, 32);

  /* arguments */
  expect_error(strop_model_load_pretrained(NULL, "resnet18", NULL, &m, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"path", NULL});
  ck_assert_ptr_null(m);
  expect_error(strop_model_load_pretrained(p, "resnet18", NULL, NULL, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"out", NULL});
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = 16; /* the first bit no flag uses (8 is STROP_LOAD_FRESH) */
  expect_error(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"flags", NULL});
  strop_pretrained_options_init(&o);
  o.image_size = -3;
  expect_error(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"image_size", NULL});
  o.size = 3;
  expect_error(strop_model_load_pretrained(p, "resnet18", &o, &m, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"strop_pretrained_options_init", NULL});

  /* what is named does not exist or is not known */
  expect_error(strop_model_load_pretrained(path_in(g_tmp, "nope"), "resnet18", NULL, &m, NULL),
               STROP_E_IO, (const char *[]){"nope", NULL});
  expect_error(strop_model_load_pretrained(p, "resnet9000", NULL, &m, NULL), STROP_E_UNSUPPORTED,
               (const char *[]){"resnet9000", "resnet18", "resnet101", NULL});
  expect_error(strop_model_load_pretrained(p, NULL, NULL, &m, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"r18.safetensors", "name it", NULL});

  /* folders */
  char dir[400];
  snprintf(dir, sizeof dir, "%s/f1", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  expect_error(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), STROP_E_IO,
               (const char *[]){"f1", "model.safetensors", NULL});
  write_text(path_in(dir, "pytorch_model.bin"), "not a pickle");
  expect_error(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), STROP_E_IO,
               (const char *[]){"pytorch_model.bin", "pickle", NULL});
  ck_assert_int_eq(link(p, path_in(dir, "model.safetensors")), 0);
  expect_error(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_INVALID_ARG,
               (const char *[]){"config.json", NULL});
  write_text(path_in(dir, "config.json"), "{\"architectures\": [\"FooForBar\"], \"x\": 1}");
  expect_error(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_UNSUPPORTED,
               (const char *[]){"config.json", "FooForBar", "resnet18", NULL});
  write_text(path_in(dir, "config.json"), "{\"model_type\": \"foo\"}");
  expect_error(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_UNSUPPORTED,
               (const char *[]){"model_type 'foo'", NULL});
  write_text(path_in(dir, "config.json"), "{\"architectures\": [\"Foo\",]}");
  expect_error(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_FORMAT,
               (const char *[]){"config.json", "byte", NULL});
  write_text(path_in(dir, "config.json"), "[1, 2]");
  expect_error(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_FORMAT,
               (const char *[]){"config.json", "not a JSON object", NULL});
  /* a named architecture wins over the config's */
  write_text(path_in(dir, "config.json"), "{\"architectures\": [\"FooForBar\"]}");
  strop_test_must(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), "named arch");
  strop_model_free(m);

  /* shards */
  snprintf(dir, sizeof dir, "%s/f2", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(path_in(dir, "model.safetensors.index.json"),
             "{\"weight_map\": {\"conv1.weight\": \"model-00001-of-00002.safetensors\"}}");
  expect_error(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), STROP_E_IO,
               (const char *[]){"shard 'model-00001-of-00002.safetensors'", "missing", NULL});
  ck_assert_int_eq(link(p, path_in(dir, "model-00001-of-00002.safetensors")), 0);
  write_text(path_in(dir, "model.safetensors.index.json"),
             "{\"weight_map\": {\"conv1.weight\": \"model-00001-of-00002.safetensors\", "
             "\"fc.extra\": \"model-00001-of-00002.safetensors\"}}");
  expect_error(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), STROP_E_FORMAT,
               (const char *[]){"'fc.extra'", "lacks it", NULL});
  write_text(path_in(dir, "model.safetensors.index.json"), "{\"weight_map\": [1]}");
  expect_error(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), STROP_E_FORMAT,
               (const char *[]){"weight_map", NULL});
  write_text(path_in(dir, "model.safetensors.index.json"),
             "{\"weight_map\": {\"conv1.weight\": \"../r18.safetensors\"}}");
  expect_error(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), STROP_E_FORMAT,
               (const char *[]){"conv1.weight", "shard file in the folder", NULL});
  write_text(path_in(dir, "model.safetensors.index.json"),
             "{\"weight_map\": {\"conv1.weight\": \"model-00001-of-00002.safetensors\"}}");
  strop_test_must(strop_model_load_pretrained(dir, "resnet18", NULL, &m, NULL), "one shard");
  strop_model_free(m);

  /* the file does not fit the architecture: resnet34 wants layers resnet18 lacks */
  strop_load_report *r = NULL;
  expect_error(strop_model_load_pretrained(p, "resnet34", NULL, &m, &r), STROP_E_NOT_FOUND,
               (const char *[]){"missing", "layer1.2.conv1.weight", "nothing was loaded", NULL});
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(r);
  ck_assert_int_gt(strop_load_report_count(r, STROP_REPORT_MISSING), 0);
  strop_load_report_free(r);
  expect_error(strop_model_load_pretrained(p, "resnet50", NULL, &m, NULL), STROP_E_SHAPE,
               (const char *[]){"mismatched", NULL});
}
END_TEST

/* ---- parity with PyTorch (fixtures from tests/pretrained/gen_torchvision.py) ---- */

static const char *fixtures(void) { return getenv("STROP_PT_FIXTURES"); }

typedef struct ref {
  strop_st_file *f;
} ref;

/* Reads tensor name of the reference into a malloc'd buffer; *n gets its length. */
static float *ref_read(const strop_st_file *f, const char *name, size_t *n) {
  int64_t i = strop_st_file_find(f, name);
  ck_assert_msg(i >= 0, "reference lacks %s", name);
  int64_t dims[8];
  int r = strop_st_file_shape(f, i, dims, 8);
  size_t cnt = 1;
  for (int k = 0; k < r; k++) cnt *= (size_t)dims[k];
  float *v = malloc(cnt * sizeof *v + 4);
  strop_test_must(strop_st_file_read_f32(f, i, v, cnt), name);
  *n = cnt;
  return v;
}

/* max |a - b| / max(max |b|, floor): scale-aware for logits and gradients */
static double rel_to_max(const float *a, const float *b, size_t n, double floor) {
  double worst = 0, top = floor;
  for (size_t i = 0; i < n; i++)
    if (fabs(b[i]) > top) top = fabs(b[i]);
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= worst)) worst = d; /* NaN counts as worst */
  }
  return worst / top;
}

/* The tolerance for reference key: at least floor, and 3 times PyTorch's own float32 error on
 * it (tol.<key>). */
static double tol_for(const strop_st_file *f, const char *key, double floor) {
  char name[300];
  snprintf(name, sizeof name, "tol.%s", key);
  if (strop_st_file_find(f, name) < 0) return floor;
  size_t n;
  float *t = ref_read(f, name, &n);
  double tol = fmax(floor, 3.0 * t[0]);
  free(t);
  return tol;
}

static strop_model *load(const char *file, const char *arch, int64_t image_size) {
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.image_size = image_size;
  strop_model *m = NULL;
  strop_test_must(strop_model_load_pretrained(file, arch, &o, &m, NULL), file);
  return m;
}

/* The classifier's dropout node of an architecture (MobileNets keep torchvision's p = 0.2),
 * or NULL. */
static const char *dropout_node(const char *arch) {
  if (!strcmp(arch, "mobilenet_v2")) return "classifier.0";
  if (!strncmp(arch, "mobilenet_v3", 12)) return "classifier.2";
  return NULL;
}

/* load(), with the classifier's dropout replaced by p = 0 through a surgery plan as a user
 * would turn it off: the generator builds torchvision's model with dropout=0.0, so train-mode
 * logits and gradients are deterministic on both sides. */
static strop_model *load_for_parity(const char *file, const char *arch) {
  strop_model *m = load(file, arch, 64);
  const char *drop = dropout_node(arch);
  if (drop) {
    strop_surgery *s = NULL;
    strop_test_must(strop_surgery_create(m, &s), "surgery");
    strop_test_must(strop_surgery_replace(s, drop, "dropout", "p=0", 0), "replace dropout");
    strop_test_must(strop_surgery_apply(s), "apply");
    strop_surgery_free(s);
  }
  return m;
}

/* Eval-mode logits of x through m against the reference's key. */
static void check_logits(strop_model *m, const strop_st_file *rf, const char *key, double tol) {
  size_t nx, ny;
  float *x = ref_read(rf, "x", &nx);
  float *want = ref_read(rf, key, &ny);
  const int64_t xd[4] = {4, 3, 64, 64};
  strop_tensor *in = NULL, *out = NULL;
  strop_test_must(strop_tensor_wrap(x, nx, 4, xd, &in), "wrap");
  strop_test_must(strop_model_forward(m, in, &out), "forward");
  ck_assert_int_eq(strop_tensor_numel(out), (int64_t)ny);
  double e = rel_to_max(strop_tensor_data(out), want, ny, 1e-3);
  tol = tol_for(rf, key, tol);
  ck_assert_msg(e < tol, "%s: worst error %.3g of the largest logit (tolerance %.2g)", key, e,
                tol);
  strop_tensor_free(in);
  strop_tensor_free(out);
  free(x);
  free(want);
}

static void parity(const char *arch) {
  const char *dir = fixtures();
  char wpath[512], rpath[512];
  snprintf(wpath, sizeof wpath, "%s/%s.safetensors", dir, arch);
  snprintf(rpath, sizeof rpath, "%s/%s.ref.safetensors", dir, arch);
  strop_st_file *rf = NULL;
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  strop_model *m = load_for_parity(wpath, arch);

  /* eval logits */
  check_logits(m, rf, "eval.output", 1e-4);

  /* train mode: logits, and every gradient of the mean cross-entropy */
  size_t nx, ny, nl;
  float *x = ref_read(rf, "x", &nx);
  float *y = ref_read(rf, "y", &ny);
  float *want = ref_read(rf, "train.output", &nl);
  const int64_t batch = 4, classes = (int64_t)(nl / 4);
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  const strop__act *o = NULL;
  strop_test_must(strop__model_forward_exec(m, x, batch, 1, NULL, &o), "train forward");
  double e = rel_to_max(o->data, want, nl, 1e-3), tol = tol_for(rf, "train.output", 1e-4);
  ck_assert_msg(e < tol, "train.output: worst error %.3g (tolerance %.2g)", e, tol);
  float *dout = malloc(nl * sizeof *dout);
  for (int64_t b = 0; b < batch; b++) { /* d mean CE / d logits = (softmax - onehot) / N */
    const float *z = o->data + b * classes;
    double mx = z[0], s = 0;
    for (int64_t c = 1; c < classes; c++) mx = z[c] > mx ? z[c] : mx;
    for (int64_t c = 0; c < classes; c++) s += exp(z[c] - mx);
    for (int64_t c = 0; c < classes; c++)
      dout[b * classes + c] = (float)((exp(z[c] - mx) / s - (c == (int64_t)y[b])) /
                                      (double)batch);
  }
  strop_test_must(strop__model_backward(m, dout), "backward");
  /* Every gradient within 3x PyTorch's own float32 error on it (at least 2e-3 of its largest
   * entry), except where a ReLU input lies within float32 rounding of zero: there float32
   * (strop's or PyTorch's) may take the other side of the kink, and every gradient upstream of
   * that element changes, locally but by up to tens of percent of a tensor's largest entry.
   * ResNet-50 at this size has dozens of pre-activations within 1e-5 of zero, and which of
   * them flip depends on the summation order (the thread count, the build). So a tensor that
   * misses the tight bound must still point the same way (cosine >= 0.99) with the same norm
   * (within 5%) — a wrong layout or formula fails both — and all gradients together, as one
   * vector, must agree to 5% in norm (a kink is local). Over eight input batches the worst
   * cosine was 0.9993 and the worst norm of all gradients 1.2%. */
  int checked = 0, kinked = 0;
  double diff2 = 0, norm2 = 0;
  float **grads = calloc((size_t)m->n_params, sizeof *grads); /* strop's, for the step below */
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (!p->trainable || p->is_buffer) continue;
    char key[300];
    snprintf(key, sizeof key, "grad.%s", p->name);
    size_t n;
    float *g = ref_read(rf, key, &n);
    ck_assert_uint_eq(n, p->numel);
    e = rel_to_max(p->grad, g, n, 1e-6);
    tol = tol_for(rf, key, 2e-3);
    if (getenv("STROP_PT_VERBOSE"))
      printf("  %s: %.3g (PyTorch's float32: %.3g)\n", key, e, tol / 3);
    if (e >= tol) {
      double dot = 0, na = 0, nb = 0;
      for (size_t k = 0; k < n; k++) {
        dot += (double)p->grad[k] * g[k];
        na += (double)p->grad[k] * p->grad[k];
        nb += (double)g[k] * g[k];
      }
      const double cosine = dot / sqrt(na * nb + 1e-300), ratio = sqrt(na / (nb + 1e-300));
      printf("%s: %s differs by %.3g of its largest entry (PyTorch's float32: %.3g): a ReLU "
             "kink; cosine %.5f, norm ratio %.4f\n",
             arch, key, e, tol / 3, cosine, ratio);
      ck_assert_msg(cosine >= 0.99 && fabs(ratio - 1) <= 0.05,
                    "%s: cosine %.5f, norm ratio %.4f with PyTorch's", key, cosine, ratio);
      kinked++;
    }
    for (size_t k = 0; k < n; k++) {
      diff2 += ((double)p->grad[k] - g[k]) * ((double)p->grad[k] - g[k]);
      norm2 += (double)g[k] * g[k];
    }
    grads[i] = malloc(n * sizeof **grads);
    memcpy(grads[i], p->grad, n * sizeof **grads);
    free(g);
    checked++;
  }
  strop__model_step_end(m);
  const int n_grads = m->n_params;
  ck_assert_int_gt(checked, 60);
  const double global = sqrt(diff2 / norm2);
  ck_assert_msg(global < 5e-2, "all gradients: relative error %.3g in norm", global);
  printf("%s: %d gradients match PyTorch, %d of them only in direction and norm (ReLU kinks); "
         "all together to %.2g in norm\n",
         arch, checked, kinked, global);
  free(dout);
  strop_model_free(m);

  /* one AdamW step through the trainer, from the file again */
  m = load_for_parity(wpath, arch);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt), "optimizer");
  strop_test_must(strop_optimizer_set_double(opt, STROP_OPT_LR, 1e-3), "lr");
  strop_test_must(strop_optimizer_set_double(opt, STROP_OPT_WEIGHT_DECAY, 0.01), "wd");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  const int64_t xd[4] = {4, 3, 64, 64}, yd[1] = {4};
  strop_tensor *tx = NULL, *ty = NULL;
  strop_test_must(strop_tensor_wrap(x, nx, 4, xd, &tx), "x");
  strop_test_must(strop_tensor_wrap(y, ny, 1, yd, &ty), "y");
  float loss = 0;
  strop_test_must(strop_trainer_step(tr, tx, ty, &loss), "step");
  size_t n1;
  float *want_loss = ref_read(rf, "loss", &n1);
  ck_assert_msg(fabs(loss - want_loss[0]) < 1e-5 * fmax(1, fabs(want_loss[0])),
                "loss %.8g, PyTorch %.8g", loss, want_loss[0]);
  free(want_loss);
  size_t n_loose = 0, n_all = 0;
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    char key[300];
    snprintf(key, sizeof key, "after.%s", p->name);
    size_t n;
    float *a = ref_read(rf, key, &n);
    ck_assert_uint_eq(n, p->numel);
    if (p->is_int64) {
      ck_assert_int_eq(p->idata[0], (int64_t)a[0]);
    } else if (p->is_buffer) {
      e = rel_to_max(p->data, a, n, 1e-3);
      ck_assert_msg(e < 1e-4, "%s: worst error %.3g", key, e);
    } else {
      /* Adam's first step moves each weight by lr * g / (|g| + eps) ~ lr * sign(g) (plus the
       * decay): where PyTorch's gradient is within twice the largest strop-PyTorch gap of the
       * tensor of zero, the sign is rounding's and the steps may differ by up to 2 lr;
       * everywhere else they agree closely. */
      snprintf(key, sizeof key, "grad.%s", p->name);
      size_t ng;
      float *g = ref_read(rf, key, &ng);
      const float *mine = grads[i];
      ck_assert_ptr_nonnull(mine);
      double gap = 0; /* how far strop's gradient and PyTorch's are apart in this tensor */
      for (size_t k = 0; k < n; k++) gap = fmax(gap, fabs((double)mine[k] - g[k]));
      size_t loose = 0;
      for (size_t k = 0; k < n; k++) {
        double d = fabs((double)p->data[k] - a[k]);
        if (fabs(g[k]) <= 2 * gap + 1e-6) {
          loose++;
          ck_assert_msg(d <= 2.1e-3, "%s[%zu]: %.8g vs %.8g", p->name, k, p->data[k], a[k]);
        } else {
          ck_assert_msg(d <= 2e-6 + 1e-5 * fabs(a[k]), "%s[%zu]: %.8g, PyTorch %.8g (grad %.3g)",
                        p->name, k, p->data[k], a[k], g[k]);
        }
      }
      n_loose += loose;
      n_all += n;
      free(g);
    }
    free(a);
  }
  printf("%s: one AdamW step matches PyTorch (%.2f%% of the weights had gradients too small to "
         "fix the sign of their step)\n",
         arch, 100.0 * (double)n_loose / (double)n_all);
  /* saved for tests/pretrained/run_torchvision.py to reload in torchvision, strict=True */
  char spath[512];
  snprintf(spath, sizeof spath, "%s/%s.stepped.safetensors", dir, arch);
  strop_test_must(strop_model_save_weights(m, spath), "save");
  strop_tensor_free(tx);
  strop_tensor_free(ty);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  for (int i = 0; i < n_grads; i++) free(grads[i]);
  free(grads);
  free(x);
  free(y);
  free(want);
  strop_st_file_free(rf);
}

START_TEST(torchvision_resnet18) { parity("resnet18"); }
END_TEST

START_TEST(torchvision_resnet50) { parity("resnet50"); }
END_TEST

/* MobileNets (fixtures from tests/pretrained/gen_mobilenet.py; the driver may generate a
 * subset, e.g. under a sanitizer): the same parity as ResNet's, and torchvision's default
 * dropout in the classifier, active in train mode. */
static const char *const MOBILENETS[] = {"mobilenet_v2", "mobilenet_v3_small",
                                         "mobilenet_v3_large"};

static int have_fixture(const char *arch) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s.ref.safetensors", fixtures(), arch);
  return access(p, R_OK) == 0;
}

START_TEST(torchvision_mobilenet) {
  const char *arch = MOBILENETS[_i];
  if (!have_fixture(arch)) {
    printf("%s: no fixture, not checked\n", arch);
    return;
  }
  parity(arch);
  /* train mode runs torchvision's dropout: two forwards of one batch differ; eval is the
   * identity */
  char wpath[512];
  snprintf(wpath, sizeof wpath, "%s/%s.safetensors", fixtures(), arch);
  strop_model *m = load(wpath, arch, 64);
  float *x = calloc(2 * 3 * 64 * 64, sizeof *x);
  for (int i = 0; i < 2 * 3 * 64 * 64; i++) x[i] = (float)sin(0.37 * i);
  const strop__act *o = NULL;
  float a[20], b[20];
  strop_test_must(strop__model_forward_exec(m, x, 2, 1, NULL, &o), "train forward");
  memcpy(a, o->data, sizeof a);
  strop__model_step_end(m);
  strop_test_must(strop__model_forward_exec(m, x, 2, 1, NULL, &o), "train forward");
  memcpy(b, o->data, sizeof b);
  strop__model_step_end(m);
  ck_assert_msg(memcmp(a, b, sizeof a) != 0,
                "%s: dropout left train-mode logits unchanged "
                "(%g %g)",
                arch, a[0], b[0]);
  free(x);
  strop_model_free(m);
}
END_TEST

START_TEST(torchvision_forms) {
  const char *dir = fixtures();
  char rpath[512], p[512];
  snprintf(rpath, sizeof rpath, "%s/resnet18.ref.safetensors", dir);
  strop_st_file *rf = NULL;
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  /* BF16 storage: the logits of the BF16-rounded weights */
  snprintf(p, sizeof p, "%s/resnet18_bf16.safetensors", dir);
  strop_model *m = load(p, "resnet18", 64);
  check_logits(m, rf, "bf16.output", 1e-4);
  strop_model_free(m);
  /* num_batches_tracked stored as [1] */
  snprintf(p, sizeof p, "%s/resnet18_scalar1.safetensors", dir);
  m = load(p, "resnet18", 64);
  check_logits(m, rf, "eval.output", 1e-4);
  strop_model_free(m);
  /* a sharded folder as a Hugging Face save writes it */
  snprintf(p, sizeof p, "%s/resnet18_sharded", dir);
  m = load(p, "resnet18", 64);
  check_logits(m, rf, "eval.output", 1e-4);
  strop_model_free(m);
  /* declared for 224 x 224 (the default), run at 64 x 64: the same logits */
  snprintf(p, sizeof p, "%s/resnet18.safetensors", dir);
  m = load(p, "resnet18", 0);
  int64_t dims[3];
  ck_assert_int_eq(strop_model_input_shape(m, dims, 3), 3);
  ck_assert_int_eq(dims[1], 224);
  check_logits(m, rf, "eval.output", 1e-4);
  strop_model_free(m);
  strop_st_file_free(rf);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("pretrained");
  TCase *tc = tcase_create("api");
  tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
  tcase_add_test(tc, arch_list);
  tcase_add_test(tc, own_checkpoint_round_trip);
  tcase_add_test(tc, mapped_frozen_load);
  tcase_add_test(tc, mobilenet_built);
  tcase_add_test(tc, bad_inputs);
  suite_add_tcase(s, tc);
  if (fixtures()) {
    TCase *tv = tcase_create("torchvision");
    tcase_set_timeout(tv, 600);
    tcase_add_test(tv, torchvision_resnet18);
    /* a sanitized build runs ResNet-50 some 20 times slower: ResNet-18 covers the code */
    if (!getenv("STROP_SANITIZED")) tcase_add_test(tv, torchvision_resnet50);
    tcase_add_test(tv, torchvision_forms);
    suite_add_tcase(s, tv);
    TCase *mb = tcase_create("mobilenet");
    tcase_set_timeout(mb, 600);
    tcase_add_loop_test(mb, torchvision_mobilenet, 0,
                        (int)(sizeof MOBILENETS / sizeof MOBILENETS[0]));
    suite_add_tcase(s, mb);
  }
  return s;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* lines survive a failing test's exit */
  return strop_test_run(suite());
}
