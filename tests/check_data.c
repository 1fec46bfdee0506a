/* SPDX-License-Identifier: MIT */
/* strop tests — datasets suite: memory and callback sources, IDX/CSV/NPY/text parsers (real
 * Fashion-MNIST and sklearn files when installed), task shaping, the batch iterator, transforms
 * against PyTorch references, broken inputs and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "core/core.h"
#include "data/data_impl.h"
#include "ops/resize.h"
#include "strop/strop.h"
#include "testutil.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define SKDATA "/usr/lib/python3/dist-packages/sklearn/datasets/data"
#define FIX STROP_TEST_DATA "/data"

/* ------------------------------------------------------------------ helpers ---- */

static char g_dir[256];

/* One scratch directory per run, made by main() before the tests fork, removed at the end. */
static const char *tmpdir(void) {
  if (!g_dir[0]) {
    snprintf(g_dir, sizeof g_dir, "/tmp/strop_check_data_XXXXXX");
    if (!mkdtemp(g_dir)) g_dir[0] = '\0';
  }
  return g_dir;
}

/* The scratch directory is flat: remove its files, then it. */
static void rm_tmpdir(void) {
  DIR *d = opendir(g_dir);
  if (!d) return;
  struct dirent *e;
  char p[600];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(g_dir);
}

/* Writes bytes to tmpdir/name (gzip-compressed when gz) and returns the path (static slot). */
static const char *put_file(const char *name, const void *data, size_t len, int gz) {
  static char slots[8][512];
  static int next;
  char *p = slots[next++ % 8];
  snprintf(p, 512, "%s/%s", tmpdir(), name);
  if (gz) {
    gzFile g = gzopen(p, "wb");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, data, (unsigned)len), (int)len);
    gzclose(g);
  } else {
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
  }
  return p;
}

static const char *put_text(const char *name, const char *text) {
  return put_file(name, text, strlen(text), 0);
}

/* An IDX file: type byte, dims, payload of n bytes. Returns its length in buf. */
static size_t make_idx(uint8_t *buf, int type, int rank, const uint32_t *dims,
                       const uint8_t *payload, size_t n) {
  buf[0] = 0;
  buf[1] = 0;
  buf[2] = (uint8_t)type;
  buf[3] = (uint8_t)rank;
  size_t o = 4;
  for (int i = 0; i < rank; i++) {
    buf[o++] = (uint8_t)(dims[i] >> 24);
    buf[o++] = (uint8_t)(dims[i] >> 16);
    buf[o++] = (uint8_t)(dims[i] >> 8);
    buf[o++] = (uint8_t)dims[i];
  }
  if (n) memcpy(buf + o, payload, n);
  return o + n;
}

/* A version 1.0 NPY file in buf: the header dict, then n bytes of data. Returns its length. */
static size_t make_npy(char *buf, const char *dict, const void *data, size_t n) {
  size_t dl = strlen(dict);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (char)(dl + 1);
  buf[9] = 0;
  memcpy(buf + 10, dict, dl);
  buf[10 + dl] = '\n';
  if (n) memcpy(buf + 11 + dl, data, n);
  return 11 + dl + n;
}

static int have_fmnist(void) {
  struct stat sb;
  if (stat(FMNIST "/train-images-idx3-ubyte.gz", &sb) == 0) return 1;
  fprintf(stderr, "SKIP: %s not installed (apt-get install dataset-fashion-mnist)\n", FMNIST);
  return 0;
}

static int have_sklearn(void) {
  struct stat sb;
  if (stat(SKDATA "/iris.csv", &sb) == 0) return 1;
  fprintf(stderr, "SKIP: %s not installed (apt-get install python3-sklearn)\n", SKDATA);
  return 0;
}

static float label_of(const strop_dataset *ds, int64_t i) {
  float in[4096], t[64];
  ck_assert_int_eq(strop_dataset_get(ds, i, in, 4096, t, 64), STROP_OK);
  return t[0];
}

static void assert_err(strop_status got, strop_status want, const char *needle) {
  ck_assert_msg(got == want, "status %d, want %d: %s", got, want, strop_last_error());
  ck_assert_msg(strstr(strop_last_error(), needle) != NULL, "message '%s' lacks '%s'",
                strop_last_error(), needle);
}

/* n samples with input (2) = (i, -i) and class i % C. */
static strop_dataset *toy(int64_t n, int64_t C) {
  float *x = malloc((size_t)n * 2 * sizeof *x), *y = malloc((size_t)n * sizeof *y);
  for (int64_t i = 0; i < n; i++) {
    x[2 * i] = (float)i;
    x[2 * i + 1] = (float)-i;
    y[i] = (float)(i % C);
  }
  int64_t d[1] = {2};
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, n, 1, d, 0, NULL, C, &ds), STROP_OK);
  free(x);
  free(y);
  return ds;
}

/* Sample index of a toy sample, from its input. */
static int64_t toy_id(const strop_dataset *ds, int64_t i) {
  float in[2], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, i, in, 2, t, 1), STROP_OK);
  return (int64_t)in[0];
}

/* ------------------------------------------------------------------ memory ---- */

START_TEST(memory_copy_and_get) {
  float x[6] = {1, 2, 3, 4, 5, 6}, y[3] = {0, 2, 1};
  int64_t d[1] = {2};
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, 3, 1, d, 0, NULL, STROP_CLASSES_INFER, &ds),
                   STROP_OK);
  x[0] = 99; /* copied: the dataset does not see this */
  ck_assert_int_eq(strop_dataset_size(ds), 3);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 3);
  int64_t dims[4];
  ck_assert_int_eq(strop_dataset_input_shape(ds, dims, 4), 1);
  ck_assert_int_eq(dims[0], 2);
  ck_assert_int_eq(strop_dataset_target_shape(ds, dims, 4), 0);
  float in[2], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 2, t, 1), STROP_OK);
  ck_assert_float_eq(in[0], 1.0f);
  ck_assert_int_eq(strop_dataset_get(ds, 2, in, 2, t, 1), STROP_OK);
  ck_assert_float_eq(in[1], 6.0f);
  ck_assert_float_eq(t[0], 1.0f);
  int64_t counts[3];
  ck_assert_int_eq(strop_dataset_class_counts(ds, counts, 3), STROP_OK);
  ck_assert_int_eq(counts[0] + counts[1] + counts[2], 3);
  assert_err(strop_dataset_get(ds, 3, in, 2, t, 1), STROP_E_INVALID_ARG, "index 3 out of range");
  assert_err(strop_dataset_get(ds, 0, in, 1, t, 1), STROP_E_INVALID_ARG, "input_cap 1");
  strop_dataset_free(ds);

  /* regression */
  float yr[6] = {0.5f, 1, 2, 3, 4, 5};
  int64_t td[1] = {2};
  ck_assert_int_eq(strop_dataset_from_memory(x, yr, 3, 1, d, 1, td, 0, &ds), STROP_OK);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 0);
  ck_assert_int_eq(strop_dataset_target_shape(ds, dims, 4), 1);
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 2, t, 1), STROP_E_INVALID_ARG);
  float t2[2];
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 2, t2, 2), STROP_OK);
  ck_assert_float_eq(t2[0], 0.5f);
  assert_err(strop_dataset_class_counts(ds, (int64_t[1]){0}, 1), STROP_E_UNSUPPORTED,
             "classification");
  strop_dataset_free(ds);
}
END_TEST

START_TEST(memory_errors) {
  float x[4] = {1, 2, 3, 4}, y[2] = {0, 1.5f};
  int64_t d[1] = {2}, bad[1] = {0};
  strop_dataset *ds = (strop_dataset *)1;
  assert_err(strop_dataset_from_memory(x, y, 2, 1, d, 0, NULL, 3, &ds), STROP_E_INVALID_ARG,
             "label 1 must be a non-negative integer, got 1.5");
  ck_assert_ptr_null(ds);
  y[1] = 5;
  assert_err(strop_dataset_from_memory(x, y, 2, 1, d, 0, NULL, 3, &ds), STROP_E_INVALID_ARG,
             "label 1 is 5, out of range for 3 classes");
  y[1] = 1;
  assert_err(strop_dataset_from_memory(x, y, 2, 1, bad, 0, NULL, 3, &ds), STROP_E_INVALID_ARG,
             "dims[0] must be > 0");
  assert_err(strop_dataset_from_memory(x, y, 0, 1, d, 0, NULL, 3, &ds), STROP_E_INVALID_ARG,
             "n must be >= 1");
  assert_err(strop_dataset_from_memory(NULL, y, 2, 1, d, 0, NULL, 3, &ds), STROP_E_INVALID_ARG,
             "inputs is NULL");
  assert_err(strop_dataset_from_memory(x, y, 2, 1, d, 0, NULL, 0, &ds), STROP_E_INVALID_ARG,
             "regression");
  ck_assert_int_eq(strop_dataset_from_memory(x, y, 2, 1, d, 0, NULL, 3, NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_size(NULL), -1);
  ck_assert_int_eq(strop_dataset_num_classes(NULL), -1);
  strop_dataset_free(NULL);
  /* a non-finite input, or regression target, is refused naming the sample (a NaN sample
   * made every step of fit a skipped one, reported as success); copied or wrapped alike */
  x[3] = NAN;
  assert_err(strop_dataset_from_memory(x, y, 2, 1, d, 0, NULL, 3, &ds), STROP_E_INVALID_ARG,
             "inputs: sample 1, value 1 is not finite (nan)");
  assert_err(strop_dataset_wrap(x, y, 2, 1, d, 0, NULL, 3, NULL, NULL, &ds), STROP_E_INVALID_ARG,
             "strop_dataset_wrap: inputs: sample 1, value 1 is not finite");
  x[3] = 4;
  float r[2] = {0.5f, INFINITY};
  assert_err(strop_dataset_from_memory(x, r, 2, 1, d, 1, (const int64_t[]){1}, 0, &ds),
             STROP_E_INVALID_ARG, "targets: sample 1, value 0 is not finite (inf)");
  ck_assert_ptr_null(ds);
}
END_TEST

static int g_released;
static void on_release(void *ud) { g_released += *(int *)ud; }

START_TEST(wrap_release_after_last_view) {
  static float x[8] = {0, 1, 2, 3, 4, 5, 6, 7}, y[4] = {0, 1, 0, 1};
  int64_t d[1] = {2};
  int add = 1;
  g_released = 0;
  strop_dataset *ds = NULL, *sub = NULL, *oh = NULL;
  ck_assert_int_eq(strop_dataset_wrap(x, y, 4, 1, d, 0, NULL, 2, on_release, &add, &ds),
                   STROP_OK);
  ck_assert_int_eq(strop_dataset_subset(ds, (int64_t[2]){3, 1}, 2, &sub), STROP_OK);
  ck_assert_int_eq(strop_dataset_one_hot(sub, &oh), STROP_OK);
  strop_dataset_free(ds); /* parent first: views keep the storage */
  ck_assert_int_eq(g_released, 0);
  float in[2], t[2];
  ck_assert_int_eq(strop_dataset_get(oh, 0, in, 2, t, 2), STROP_OK);
  ck_assert_float_eq(in[0], 6.0f);
  ck_assert_float_eq(t[0], 0.0f);
  ck_assert_float_eq(t[1], 1.0f);
  strop_dataset_free(sub);
  ck_assert_int_eq(g_released, 0);
  strop_dataset_free(oh);
  ck_assert_int_eq(g_released, 1);
  /* failure: release not called */
  y[0] = -1;
  ck_assert_int_eq(strop_dataset_wrap(x, y, 4, 1, d, 0, NULL, 2, on_release, &add, &ds),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(g_released, 1);
  y[0] = 0;
}
END_TEST

/* ------------------------------------------------------------------ callback ---- */

static int fill_cb(int64_t index, float *input, float *target, char *msg, size_t cap, void *ud) {
  int64_t fail_at = *(int64_t *)ud;
  if (index == fail_at) {
    snprintf(msg, cap, "disk on fire at sample %lld", (long long)index);
    return 7;
  }
  input[0] = (float)index;
  input[1] = (float)(index * 2);
  target[0] = (float)(index % 3);
  return 0;
}

START_TEST(callback_source) {
  int64_t fail_at = -1, d[1] = {2};
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_from_callback(20, 1, d, 0, NULL, 3, fill_cb, &fail_at, &ds),
                   STROP_OK);
  int64_t counts[3];
  ck_assert_int_eq(strop_dataset_class_counts(ds, counts, 3), STROP_OK);
  ck_assert_int_eq(counts[0], 7);
  ck_assert_int_eq(counts[2], 6);
  float in[2], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, 5, in, 2, t, 1), STROP_OK);
  ck_assert_float_eq(in[1], 10.0f);
  for (int flags = 0; flags <= STROP_ITER_PREFETCH; flags += STROP_ITER_PREFETCH) {
    fail_at = 13;
    strop_batch_iter *it = NULL;
    ck_assert_int_eq(strop_batch_iter_create(ds, 4, 1, flags, &it), STROP_OK);
    int64_t rows, seen = 0;
    strop_tensor *bx, *by;
    strop_status st;
    while ((st = strop_batch_iter_next(it, &bx, &by, &rows)) == STROP_OK && rows > 0)
      seen += rows;
    assert_err(st, STROP_E_CALLBACK, "disk on fire at sample 13");
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_batch_iter_next"));
    ck_assert_int_eq(seen, 12); /* batches before the failing one were delivered */
    int64_t e, p, s;
    ck_assert_int_eq(strop_batch_iter_get_state(it, &e, &p, &s), STROP_OK);
    ck_assert_int_eq(p, 12); /* the failing batch was not consumed */
    fail_at = -1;            /* the host fixed it: the retry delivers the batch */
    ck_assert_int_eq(strop_batch_iter_next(it, &bx, &by, &rows), STROP_OK);
    ck_assert_int_eq(rows, 4);
    ck_assert_float_eq(strop_tensor_data(bx)[2], 13.0f);
    strop_batch_iter_free(it);
  }
  fail_at = 3;
  assert_err(strop_dataset_get(ds, 3, in, 2, t, 1), STROP_E_CALLBACK, "disk on fire");
  strop_dataset *fs = NULL;
  assert_err(strop_dataset_few_shot(ds, 2, 1, &fs), STROP_E_CALLBACK, "disk on fire");
  ck_assert_ptr_null(fs);
  strop_dataset_free(ds);
  assert_err(strop_dataset_from_callback(20, 1, d, 0, NULL, -1, fill_cb, &fail_at, &ds),
             STROP_E_INVALID_ARG, "num_classes");
  assert_err(strop_dataset_from_callback(20, 1, d, 0, NULL, 3, NULL, &fail_at, &ds),
             STROP_E_INVALID_ARG, "fill is NULL");
}
END_TEST

/* ------------------------------------------------------------------ IDX ---- */

START_TEST(idx_fashion_mnist) {
  if (!have_fmnist()) return;
  strop_dataset *tr = NULL, *te = NULL;
  ck_assert_int_eq(strop_dataset_load_idx(FMNIST "/train-images-idx3-ubyte.gz",
                                          FMNIST "/train-labels-idx1-ubyte.gz", 10, &tr),
                   STROP_OK);
  ck_assert_int_eq(
      strop_dataset_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz",
                             FMNIST "/t10k-labels-idx1-ubyte.gz", STROP_CLASSES_INFER, &te),
      STROP_OK);
  ck_assert_int_eq(strop_dataset_size(tr), 60000);
  ck_assert_int_eq(strop_dataset_size(te), 10000);
  ck_assert_int_eq(strop_dataset_num_classes(te), 10);
  int64_t d[4];
  ck_assert_int_eq(strop_dataset_input_shape(tr, d, 4), 3);
  ck_assert_int_eq(d[0], 1);
  ck_assert_int_eq(d[1], 28);
  ck_assert_int_eq(d[2], 28);
  /* verified with python3's gzip module */
  const int want_tr[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  const int want_te[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  for (int i = 0; i < 10; i++) {
    ck_assert_float_eq(label_of(tr, i), (float)want_tr[i]);
    ck_assert_float_eq(label_of(te, i), (float)want_te[i]);
  }
  /* pixel sums of the first images (python: sum(d[16:16+784])) */
  float img[784], t[1];
  ck_assert_int_eq(strop_dataset_get(tr, 0, img, 784, t, 1), STROP_OK);
  double s = 0;
  for (int k = 0; k < 784; k++) s += img[k];
  ck_assert_double_eq(s, 76247.0);
  ck_assert_int_eq(strop_dataset_get(te, 0, img, 784, t, 1), STROP_OK);
  s = 0;
  for (int k = 0; k < 784; k++) s += img[k];
  ck_assert_double_eq(s, 33456.0);
  int64_t counts[10];
  ck_assert_int_eq(strop_dataset_class_counts(tr, counts, 10), STROP_OK);
  for (int c = 0; c < 10; c++) ck_assert_int_eq(counts[c], 6000);
  strop_dataset_free(tr);
  strop_dataset_free(te);
}
END_TEST

/* The lead's pipeline: Fashion-MNIST, classes 5-9 as 0-4, 20 per class, shuffled batches of
 * [0,1] floats N x 1 x 28 x 28 and float class targets. */
START_TEST(idx_fashion_few_shot_pipeline) {
  if (!have_fmnist()) return;
  strop_dataset *tr = NULL, *f5 = NULL, *fs = NULL;
  ck_assert_int_eq(strop_dataset_load_idx(FMNIST "/train-images-idx3-ubyte.gz",
                                          FMNIST "/train-labels-idx1-ubyte.gz", 10, &tr),
                   STROP_OK);
  int64_t keep[5] = {5, 6, 7, 8, 9};
  ck_assert_int_eq(strop_dataset_filter_classes(tr, keep, 5, &f5), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(f5), 30000);
  ck_assert_int_eq(strop_dataset_few_shot(f5, 20, 42, &fs), STROP_OK);
  strop_dataset_free(tr);
  strop_dataset_free(f5);
  ck_assert_int_eq(strop_dataset_size(fs), 100);
  int64_t counts[5];
  ck_assert_int_eq(strop_dataset_class_counts(fs, counts, 5), STROP_OK);
  for (int c = 0; c < 5; c++) ck_assert_int_eq(counts[c], 20);
  strop_batch_iter *it = NULL;
  ck_assert_int_eq(
      strop_batch_iter_create(fs, 16, 7, STROP_ITER_SHUFFLE | STROP_ITER_PREFETCH, &it),
      STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_scale(it, 1.0f / 255.0f), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_num_batches(it), 7);
  strop_tensor *x, *y;
  int64_t rows, total = 0;
  int64_t seen_cls[5] = {0};
  while (strop_batch_iter_next(it, &x, &y, &rows) == STROP_OK && rows > 0) {
    ck_assert_int_eq(strop_tensor_rank(x), 4);
    ck_assert_int_eq(strop_tensor_dim(x, 0), rows);
    ck_assert_int_eq(strop_tensor_dim(x, 1), 1);
    ck_assert_int_eq(strop_tensor_dim(x, 2), 28);
    ck_assert_int_eq(strop_tensor_dim(x, 3), 28);
    ck_assert_int_eq(strop_tensor_rank(y), 1);
    ck_assert_int_eq(strop_tensor_dim(y, 0), rows);
    const float *px = strop_tensor_data(x), *py = strop_tensor_data(y);
    for (int64_t k = 0; k < rows * 784; k++) ck_assert(px[k] >= 0.0f && px[k] <= 1.0f);
    for (int64_t r = 0; r < rows; r++) {
      ck_assert(py[r] >= 0 && py[r] <= 4 && py[r] == floorf(py[r]));
      seen_cls[(int)py[r]]++;
    }
    total += rows;
  }
  ck_assert_int_eq(total, 100);
  for (int c = 0; c < 5; c++) ck_assert_int_eq(seen_cls[c], 20);
  strop_batch_iter_free(it);
  strop_dataset_free(fs);
}
END_TEST

START_TEST(idx_plain_gz_and_types) {
  uint8_t img[2 * 3 * 2], lab[2] = {1, 0}, buf[256];
  for (int i = 0; i < 12; i++) img[i] = (uint8_t)(i * 20);
  uint32_t di[3] = {2, 3, 2}, dl[1] = {2};
  size_t ni = make_idx(buf, 0x08, 3, di, img, 12);
  const char *pi = put_file("img.idx", buf, ni, 0);
  const char *pig = put_file("img.idx.gz", buf, ni, 1);
  size_t nl = make_idx(buf, 0x08, 1, dl, lab, 2);
  const char *pl = put_file("lab.idx", buf, nl, 1);
  for (int gz = 0; gz < 2; gz++) {
    strop_dataset *ds = NULL;
    ck_assert_int_eq(strop_dataset_load_idx(gz ? pig : pi, pl, STROP_CLASSES_INFER, &ds),
                     STROP_OK);
    ck_assert_int_eq(strop_dataset_size(ds), 2);
    ck_assert_int_eq(strop_dataset_num_classes(ds), 2);
    float in[6], t[1];
    ck_assert_int_eq(strop_dataset_get(ds, 1, in, 6, t, 1), STROP_OK);
    ck_assert_float_eq(in[0], 120.0f);
    ck_assert_float_eq(in[5], 220.0f);
    ck_assert_float_eq(t[0], 0.0f);
    strop_dataset_free(ds);
  }
  /* int16 big-endian images, rank 2 */
  uint8_t i16[4] = {0x01, 0x02, 0xff, 0xfe};
  uint32_t d2[2] = {2, 1};
  ni = make_idx(buf, 0x0B, 2, d2, i16, 4);
  pi = put_file("i16.idx", buf, ni, 0);
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_load_idx(pi, pl, 2, &ds), STROP_OK);
  float in[1], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 1, t, 1), STROP_OK);
  ck_assert_float_eq(in[0], 258.0f);
  ck_assert_int_eq(strop_dataset_get(ds, 1, in, 1, t, 1), STROP_OK);
  ck_assert_float_eq(in[0], -2.0f);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(idx_broken_inputs) {
  uint8_t img[8] = {1, 2, 3, 4, 5, 6, 7, 8}, lab[3] = {0, 1, 9}, buf[256];
  uint32_t di[3] = {2, 2, 2}, dl[1] = {2}, dl3[1] = {3};
  size_t n = make_idx(buf, 0x08, 3, di, img, 8);
  const char *good = put_file("good.idx", buf, n, 0);
  n = make_idx(buf, 0x08, 1, dl, lab, 2);
  const char *glab = put_file("glab.idx", buf, n, 0);
  strop_dataset *ds = (strop_dataset *)1;

  buf[0] = 0x12; /* wrong magic */
  const char *bad = put_file("magic.idx", buf, n, 0);
  assert_err(strop_dataset_load_idx(good, bad, 2, &ds), STROP_E_FORMAT,
             "bad IDX magic 0x12000801");
  ck_assert_ptr_null(ds);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_dataset_load_idx: "));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "magic.idx"));

  n = make_idx(buf, 0x08, 3, di, img, 8);
  bad = put_file("trunc.idx", buf, n - 3, 0); /* truncated payload */
  assert_err(strop_dataset_load_idx(bad, glab, 2, &ds), STROP_E_FORMAT,
             "truncated IDX payload: 5 bytes after the header, dims need 8");
  bad = put_file("trunc.idx.gz", buf, n - 3, 1);
  assert_err(strop_dataset_load_idx(bad, glab, 2, &ds), STROP_E_FORMAT, "truncated IDX payload");
  bad = put_file("hdr.idx", buf, 7, 0);
  assert_err(strop_dataset_load_idx(bad, glab, 2, &ds), STROP_E_FORMAT, "truncated IDX header");

  n = make_idx(buf, 0x08, 1, dl3, lab, 3); /* count mismatch */
  bad = put_file("lab3.idx", buf, n, 0);
  assert_err(strop_dataset_load_idx(good, bad, 10, &ds), STROP_E_FORMAT, "has 2 images but");
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "has 3 labels"));

  uint8_t lab9[2] = {0, 9}; /* label out of range */
  n = make_idx(buf, 0x08, 1, dl, lab9, 2);
  bad = put_file("lab9.idx", buf, n, 0);
  assert_err(strop_dataset_load_idx(good, bad, 5, &ds), STROP_E_FORMAT,
             "label 1 is 9, outside [0, 5)");

  n = make_idx(buf, 0x07, 1, dl, lab, 2); /* unknown type */
  bad = put_file("type.idx", buf, n, 0);
  assert_err(strop_dataset_load_idx(good, bad, 5, &ds), STROP_E_FORMAT, "bad IDX magic");

  /* corrupt gzip stream */
  uint8_t gzbad[40] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef};
  bad = put_file("corrupt.gz", gzbad, sizeof gzbad, 0);
  assert_err(strop_dataset_load_idx(bad, glab, 5, &ds), STROP_E_FORMAT, "corrupt.gz");

  assert_err(strop_dataset_load_idx("/nonexistent/x", glab, 5, &ds), STROP_E_IO,
             "cannot open /nonexistent/x");
  assert_err(strop_dataset_load_idx(good, glab, -2, &ds), STROP_E_INVALID_ARG, "num_classes");
  assert_err(strop_dataset_load_idx(NULL, glab, 5, &ds), STROP_E_INVALID_ARG, "images_path");
}
END_TEST

/* ------------------------------------------------------------------ bounds ---- */
/* Hostile inputs made on the fly: each is refused with its own sentence and the memory an
 * attempt takes stays bounded (strop__alloc_peak: the most the library held at once). */

static int sanitized(void) { return getenv("STROP_SANITIZED") != NULL; }

/* A gzip file: head (n bytes), then zeros bytes of zeros, written in chunks. */
static const char *put_gz_zeros(const char *name, const void *head, size_t n, size_t zeros) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", tmpdir(), name);
  gzFile g = gzopen(p, "wb9");
  ck_assert_ptr_nonnull(g);
  if (n) ck_assert_int_eq(gzwrite(g, head, (unsigned)n), (int)n);
  static const uint8_t zero[1 << 16];
  for (size_t left = zeros; left > 0;) {
    unsigned k = left < sizeof zero ? (unsigned)left : (unsigned)sizeof zero;
    ck_assert_int_eq(gzwrite(g, zero, k), (int)k);
    left -= k;
  }
  gzclose(g);
  return p;
}

static size_t file_size(const char *path) {
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  return (size_t)sb.st_size;
}

START_TEST(idx_nonfinite_images_refused) {
  /* float32 and float64 images with NaN or infinity: refused as NPY and CSV refuse them */
  uint8_t lab[2] = {0, 1}, buf[256], f4[2 * 2 * 4], f8[2 * 2 * 8];
  uint32_t di[2] = {2, 2}, dl[1] = {2};
  size_t n = make_idx(buf, 0x08, 1, dl, lab, 2);
  const char *pl = put_file("lab.idx", buf, n, 0);
  memset(f4, 0, sizeof f4);
  f4[12] = 0x7f; /* element 3 = 0x7fc00000, NaN (big-endian) */
  f4[13] = 0xc0;
  n = make_idx(buf, 0x0D, 2, di, f4, sizeof f4);
  const char *pi = put_file("nan_f32.idx", buf, n, 0);
  strop_dataset *ds = (strop_dataset *)1;
  int64_t live = strop__alloc_live();
  assert_err(strop_dataset_load_idx(pi, pl, 2, &ds), STROP_E_FORMAT,
             "nan_f32.idx: element 3 is not finite (nan)");
  ck_assert_ptr_null(ds);
  ck_assert_int_eq(strop__alloc_live(), live);
  memset(f8, 0, sizeof f8);
  f8[8] = 0x7f; /* element 1 = +infinity */
  f8[9] = 0xf0;
  n = make_idx(buf, 0x0E, 2, di, f8, sizeof f8);
  pi = put_file("inf_f64.idx.gz", buf, n, 1);
  assert_err(strop_dataset_load_idx(pi, pl, 2, &ds), STROP_E_FORMAT,
             "inf_f64.idx.gz: element 1 is not finite (inf)");
  f8[8] = 0x7f; /* 1e300: finite as a double, infinite as the float it becomes */
  f8[9] = 0xe3;
  n = make_idx(buf, 0x0E, 2, di, f8, sizeof f8);
  pi = put_file("big_f64.idx", buf, n, 0);
  assert_err(strop_dataset_load_idx(pi, pl, 2, &ds), STROP_E_FORMAT, "element 1 is not finite");
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

/* An int32 IDX label file holding 0, v, 1 (big-endian). */
static const char *put_labels_i32(const char *name, uint32_t v) {
  uint8_t lab[12] =
      {0, 0, 0, 0, (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v,
       0, 0, 0, 1},
          buf[64];
  uint32_t dl[1] = {3};
  return put_file(name, buf, make_idx(buf, 0x0C, 1, dl, lab, 12), 0);
}

START_TEST(labels_are_exact_and_capped) {
  uint8_t img[3] = {1, 2, 3}, buf[64];
  uint32_t di[1] = {3};
  const char *pi = put_file("img3.idx", buf, make_idx(buf, 0x08, 1, di, img, 3), 0);
  /* one label of 2147483646 would make 2^31 + 1 classes */
  const char *pl = put_labels_i32("lab_huge.idx", 2147483646u);
  strop_dataset *ds = (strop_dataset *)1;
  strop__alloc_peak_reset();
  int64_t base = strop__alloc_peak();
  assert_err(strop_dataset_load_idx(pi, pl, STROP_CLASSES_INFER, &ds), STROP_E_FORMAT,
             "lab_huge.idx: label 1 is 2147483646, outside [0, 16777216) (class indices stop "
             "below 2^24)");
  ck_assert_ptr_null(ds);
  ck_assert_int_lt(strop__alloc_peak() - base, 1 << 20);
  /* 2^24 + 1 would come back as 2^24 through a float: refused, not rounded */
  pl = put_labels_i32("lab_round.idx", (1u << 24) + 1);
  assert_err(strop_dataset_load_idx(pi, pl, STROP_CLASSES_INFER, &ds), STROP_E_FORMAT,
             "label 1 is 16777217, outside [0, 16777216)");
  /* the largest class index is kept exactly */
  pl = put_labels_i32("lab_max.idx", (1u << 24) - 1);
  ck_assert_int_eq(strop_dataset_load_idx(pi, pl, STROP_CLASSES_INFER, &ds), STROP_OK);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 1 << 24);
  ck_assert_float_eq(label_of(ds, 1), 16777215.0f);
  strop_dataset_free(ds);
  assert_err(strop_dataset_load_idx(pi, pl, (1 << 24) + 1, &ds), STROP_E_INVALID_ARG,
             "num_classes must be in [-1, 2^24], got 16777217");
  /* the same bound for memory and CSV labels */
  float x[2] = {0, 1}, y[2] = {0, 16777216.0f};
  int64_t d[1] = {1};
  assert_err(strop_dataset_from_memory(x, y, 2, 1, d, 0, NULL, STROP_CLASSES_INFER, &ds),
             STROP_E_INVALID_ARG, "targets: label 1 is 16777216; class indices stop below 2^24");
  const char *pc = put_text("big_label.csv", "1,0\n2,16777216\n");
  assert_err(strop_dataset_load_csv(pc, NULL, &ds), STROP_E_FORMAT,
             "big_label.csv:2: column 2: label 1.67772e+07 is not a class index");
}
END_TEST

START_TEST(gzip_stops_at_declared_size) {
  /* a gzip "bomb": the header declares 2 x 2 x 2 bytes, the stream inflates to 64 MiB */
  uint8_t hdr[16];
  uint32_t di[3] = {2, 2, 2}, dl[1] = {2};
  size_t hn = make_idx(hdr, 0x08, 3, di, NULL, 0);
  const char *bomb = put_gz_zeros("bomb.idx.gz", hdr, hn, (size_t)64 << 20);
  ck_assert_uint_lt(file_size(bomb), 200000);
  uint8_t lab[2] = {0, 1}, buf[64];
  size_t n = make_idx(buf, 0x08, 1, dl, lab, 2);
  const char *pl = put_file("bomb_lab.idx", buf, n, 0);
  strop_dataset *ds = (strop_dataset *)1;
  int64_t live = strop__alloc_live();
  strop__alloc_peak_reset();
  int64_t base = strop__alloc_peak();
  assert_err(strop_dataset_load_idx(bomb, pl, 2, &ds), STROP_E_FORMAT,
             "bomb.idx.gz: the gzip data inflates to more than the 24 bytes its header declares");
  ck_assert_ptr_null(ds);
  int64_t used = strop__alloc_peak() - base;
  ck_assert_msg(used < (4 << 20), "inflating the bomb took %lld bytes", (long long)used);
  ck_assert_int_eq(strop__alloc_live(), live);
  /* the same for an NPY file: a header of 10 + 60 bytes and 6 bytes of data */
  char npy_hdr[80];
  size_t nn = make_npy(npy_hdr, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }",
                       NULL, 0);
  ck_assert_uint_eq(nn, 70);
  const char *nb = put_gz_zeros("bomb.npy.gz", npy_hdr, nn, (size_t)32 << 20);
  strop__alloc_peak_reset();
  base = strop__alloc_peak();
  strop_tensor *t = (strop_tensor *)1;
  assert_err(strop_tensor_load_npy(nb, &t), STROP_E_FORMAT,
             "bomb.npy.gz: the gzip data inflates to more than the 76 bytes its header declares");
  ck_assert_ptr_null(t);
  ck_assert_int_lt(strop__alloc_peak() - base, 4 << 20);
  /* a file of exactly the declared size still loads, and a gzip'd one as well as a plain one */
  uint8_t img[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  n = make_idx(buf, 0x08, 3, di, img, 8);
  const char *ok = put_file("exact.idx.gz", buf, n, 1);
  ck_assert_int_eq(strop_dataset_load_idx(ok, pl, 2, &ds), STROP_OK);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(gzip_trailer_not_trusted) {
  /* a 40-odd byte gzip file whose trailer claims 4 GiB of content */
  uint8_t lab[2] = {0, 1}, buf[64];
  uint32_t dl[1] = {2};
  size_t n = make_idx(buf, 0x08, 1, dl, lab, 2);
  const char *p = put_file("liar.idx.gz", buf, n, 1);
  size_t len;
  uint8_t *gz = (uint8_t *)strop_test_read_file(p, &len);
  ck_assert_ptr_nonnull(gz);
  ck_assert_uint_lt(len, 64);
  memset(gz + len - 4, 0xff, 4);
  p = put_file("liar.idx.gz", gz, len, 0);
  free(gz);
  strop_dataset *ds = (strop_dataset *)1;
  strop__alloc_peak_reset();
  int64_t base = strop__alloc_peak();
  assert_err(strop_dataset_load_idx(p, p, 2, &ds), STROP_E_FORMAT,
             "liar.idx.gz: corrupt gzip data after 10 bytes: incorrect length check");
  int64_t used = strop__alloc_peak() - base;
  ck_assert_msg(used < (1 << 20), "a 4 GiB trailer made the reader take %lld bytes",
                (long long)used);
  /* a corrupt stream is invalid data (not an I/O error) and names only the file */
  uint8_t gzbad[40] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef};
  p = put_file("corrupt.csv.gz", gzbad, sizeof gzbad, 0);
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT,
             "corrupt.csv.gz: corrupt gzip data after 0 bytes");
  ck_assert_ptr_null(strstr(strop_last_error(), "<fd:"));
  /* a stream cut short */
  n = make_idx(buf, 0x08, 1, dl, lab, 2);
  p = put_file("cut.idx.gz", buf, n, 1);
  gz = (uint8_t *)strop_test_read_file(p, &len);
  p = put_file("cut.idx.gz", gz, len - 6, 0);
  free(gz);
  assert_err(strop_dataset_load_idx(p, p, 2, &ds), STROP_E_FORMAT,
             "cut.idx.gz: truncated gzip stream after 10 bytes");
}
END_TEST

START_TEST(gzip_without_declared_size_is_bounded) {
  /* CSV declares no size: a stream inflating past max(256 MiB, 64 x its size) is refused */
  if (sanitized()) return; /* 256 MiB of inflation is slow under the sanitizers */
  ck_assert_uint_eq(strop__gzip_limit(1000), (size_t)256 << 20);
  ck_assert_uint_eq(strop__gzip_limit((size_t)10 << 20), (size_t)640 << 20);
  ck_assert_uint_eq(strop__gzip_limit(SIZE_MAX / 2), SIZE_MAX);
  const char *p = put_gz_zeros("bomb.csv.gz", "1,0\n", 4, (size_t)300 << 20);
  strop_dataset *ds = (strop_dataset *)1;
  strop__alloc_peak_reset();
  int64_t base = strop__alloc_peak();
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT,
             "bomb.csv.gz: the gzip data inflates to more than 268435456 bytes");
  /* the buffer doubles as data arrives: its last growth holds the old block beside the new */
  ck_assert_int_le(strop__alloc_peak() - base, ((int64_t)512 << 20) + (1 << 20));
}
END_TEST

START_TEST(non_regular_files_refused) {
  /* a FIFO would block open() until a writer came: refused at once, as a folder is */
  char fifo[600];
  snprintf(fifo, sizeof fifo, "%s/data.fifo", tmpdir());
  unlink(fifo);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  strop_dataset *ds = (strop_dataset *)1;
  assert_err(strop_dataset_load_csv(fifo, NULL, &ds), STROP_E_IO,
             "data.fifo is a FIFO (named pipe); give a regular file");
  ck_assert_ptr_null(ds);
  assert_err(strop_dataset_load_idx(fifo, fifo, 2, &ds), STROP_E_IO, "is a FIFO");
  assert_err(strop_dataset_load_npy(fifo, fifo, 2, &ds), STROP_E_IO, "is a FIFO");
  strop_tensor *t = NULL;
  assert_err(strop_tensor_load_npy(fifo, &t), STROP_E_IO, "is a FIFO");
  assert_err(strop_dataset_load_csv(tmpdir(), NULL, &ds), STROP_E_IO, "is a folder");
  unlink(fifo);
}
END_TEST

START_TEST(iter_batch_larger_than_dataset) {
  /* batch_size 10^12 over 30 samples: buffers for 30 rows, not 10^12 */
  strop_dataset *ds = toy(30, 3);
  strop_batch_iter *it = NULL;
  int64_t live = strop__alloc_live();
  strop__alloc_peak_reset();
  int64_t base = strop__alloc_peak();
  for (int flags = 0; flags <= STROP_ITER_SHUFFLE + STROP_ITER_PREFETCH;
       flags += STROP_ITER_SHUFFLE + STROP_ITER_PREFETCH) {
    ck_assert_int_eq(strop_batch_iter_create(ds, (int64_t)1000000000000, 1, flags, &it),
                     STROP_OK);
    strop_tensor *x = NULL, *y = NULL;
    int64_t rows = 0;
    ck_assert_msg(strop_batch_iter_next(it, &x, &y, &rows) == STROP_OK, "%s", strop_last_error());
    ck_assert_int_eq(rows, 30);
    ck_assert_int_eq(strop_tensor_dim(x, 0), 30);
    ck_assert_int_eq(strop_batch_iter_num_batches(it), 1);
    ck_assert_int_eq(strop_batch_iter_next(it, &x, &y, &rows), STROP_OK);
    ck_assert_int_eq(rows, 0); /* the epoch ended */
    strop_batch_iter_free(it);
  }
  ck_assert_int_lt(strop__alloc_peak() - base, 1 << 20);
  ck_assert_int_eq(strop__alloc_live(), live);
  /* a batch size near INT64_MAX: one batch, not 0 or -1 (n + b - 1 overflowed) */
  const int64_t huge[] = {INT64_MAX, INT64_MAX - 5, INT64_MAX / 2 + 1};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    ck_assert_int_eq(strop_batch_iter_create(ds, huge[i], 1, 0, &it), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_num_batches(it), 1);
    strop_batch_iter_free(it);
  }
  strop_dataset_free(ds);
}
END_TEST

START_TEST(npy_tensor_load) {
  strop_tensor *t = NULL;
  ck_assert_int_eq(strop_tensor_load_npy(FIX "/x_f8_fortran.npy", &t), STROP_OK);
  ck_assert_int_eq(strop_tensor_rank(t), 2);
  ck_assert_int_eq(strop_tensor_dim(t, 0), 5);
  ck_assert_int_eq(strop_tensor_dim(t, 1), 3);
  const float *p = strop_tensor_data_const(t);
  ck_assert_float_eq(p[3], 0.5f); /* row 1 of x_f4: 3 * 0.5 - 1, C order after the transpose */
  strop_tensor_free(t);
  ck_assert_int_eq(strop_tensor_load_npy(FIX "/x_u1.npy", &t), STROP_OK);
  ck_assert_int_eq(strop_tensor_rank(t), 3);
  ck_assert_float_eq(strop_tensor_data_const(t)[29], 29.0f);
  strop_tensor_free(t);
  /* errors: the sentence names the file and what is wrong; nothing leaks; *out is NULL */
  int64_t live = strop__alloc_live();
  char hdr[160];
  const char *dicts[4] = {"{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 2), }",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': "
                          "(18446744073709550832, 2), }",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"};
  const char *want[4] = {"'shape' entry 0 is negative",
                         "NPY shape entry 0 is 18446744073709550832, above the limit of 2^40",
                         "a tensor needs rank >= 1 and no zero dimension; the array has rank 2 "
                         "and 0 elements",
                         "the array has rank 0"};
  static const float zero = 0;
  for (int k = 0; k < 4; k++) {
    size_t n = make_npy(hdr, dicts[k], &zero, k == 3 ? sizeof zero : 0);
    const char *pth = put_file("bad_t.npy", hdr, n, 0);
    t = (strop_tensor *)1;
    assert_err(strop_tensor_load_npy(pth, &t), STROP_E_FORMAT, want[k]);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_tensor_load_npy: "));
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "bad_t.npy"));
  }
  float nan_row[4] = {1, 2, NAN, 4};
  size_t n = make_npy(hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }", nan_row,
                      sizeof nan_row);
  const char *pn = put_file("nan_row.npy", hdr, n, 0);
  assert_err(strop_tensor_load_npy(pn, &t), STROP_E_FORMAT,
             "nan_row.npy: element 2 is not finite (nan)");
  ck_assert_ptr_null(t);
  /* regression targets are data too: NaN is refused there as in the inputs */
  strop_dataset *ds = NULL;
  assert_err(strop_dataset_load_npy(FIX "/x_f4.npy", pn, 0, &ds), STROP_E_FORMAT,
             "5 samples but");
  assert_err(strop_tensor_load_npy(FIX "/x_f4_be.npy", &t), STROP_E_UNSUPPORTED, "'>f4'");
  assert_err(strop_tensor_load_npy("/nonexistent.npy", &t), STROP_E_IO, "cannot open");
  assert_err(strop_tensor_load_npy(NULL, &t), STROP_E_INVALID_ARG, "path is NULL");
  assert_err(strop_tensor_load_npy(pn, NULL), STROP_E_INVALID_ARG, "out is NULL");
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

START_TEST(npy_regression_targets_finite) {
  char hdr[160];
  float y[5] = {0.5f, 1, INFINITY, 2, 3};
  size_t n = make_npy(hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", y,
                      sizeof y);
  const char *p = put_file("y_inf.npy", hdr, n, 0);
  strop_dataset *ds = (strop_dataset *)1;
  assert_err(strop_dataset_load_npy(FIX "/x_f4.npy", p, 0, &ds), STROP_E_FORMAT,
             "y_inf.npy: element 2 is not finite (inf)");
  ck_assert_ptr_null(ds);
}
END_TEST

static const char *g_npy_path;
static strop_tensor *g_tensor;
static int op_tensor_npy(void *ctx) {
  (void)ctx;
  return strop_tensor_load_npy(g_npy_path, &g_tensor);
}
static void free_tensor(void *ctx) {
  (void)ctx;
  strop_tensor_free(g_tensor);
  g_tensor = NULL;
}

START_TEST(npy_tensor_alloc_failures) {
  g_npy_path = FIX "/x_f8_fortran.npy";
  ck_assert_int_ge(strop_test_alloc_sweep(op_tensor_npy, free_tensor, NULL), 2);
  size_t len;
  char *whole = strop_test_read_file(FIX "/x_f4.npy", &len);
  g_npy_path = put_file("sweep.npy.gz", whole, len, 1);
  free(whole);
  ck_assert_int_ge(strop_test_alloc_sweep(op_tensor_npy, free_tensor, NULL), 3);
}
END_TEST

/* ------------------------------------------------------------------ shaping ---- */

START_TEST(filter_remaps_classes) {
  strop_dataset *ds = toy(100, 10), *f = NULL, *f2 = NULL;
  int64_t keep[5] = {5, 6, 7, 8, 9};
  ck_assert_int_eq(strop_dataset_filter_classes(ds, keep, 5, &f), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(f), 50);
  ck_assert_int_eq(strop_dataset_num_classes(f), 5);
  for (int64_t i = 0; i < 50; i++) {
    int64_t id = toy_id(f, i);
    ck_assert_int_eq(id % 10, (int64_t)label_of(f, i) + 5);
  }
  /* filter of a filter: keep new classes {4, 0} = old {9, 5}, renumbered 0, 1 */
  int64_t again[2] = {4, 0};
  ck_assert_int_eq(strop_dataset_filter_classes(f, again, 2, &f2), STROP_OK);
  strop_dataset_free(f);
  ck_assert_int_eq(strop_dataset_size(f2), 20);
  for (int64_t i = 0; i < 20; i++) {
    int64_t id = toy_id(f2, i);
    ck_assert_int_eq((int64_t)label_of(f2, i), id % 10 == 9 ? 0 : 1);
  }
  strop_dataset_free(f2);
  int64_t oor[2] = {3, 12};
  assert_err(strop_dataset_filter_classes(ds, oor, 2, &f), STROP_E_INVALID_ARG,
             "classes[1] = 12 out of range for 10 classes");
  ck_assert_ptr_null(f);
  int64_t dup[2] = {3, 3};
  assert_err(strop_dataset_filter_classes(ds, dup, 2, &f), STROP_E_INVALID_ARG, "listed twice");
  strop_dataset_free(ds);
}
END_TEST

START_TEST(few_shot_exact_k) {
  strop_dataset *ds = toy(1000, 7), *a = NULL, *b = NULL, *c = NULL;
  ck_assert_int_eq(strop_dataset_few_shot(ds, 5, 99, &a), STROP_OK);
  ck_assert_int_eq(strop_dataset_few_shot(ds, 5, 99, &b), STROP_OK);
  ck_assert_int_eq(strop_dataset_few_shot(ds, 5, 100, &c), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(a), 35);
  int64_t counts[7];
  ck_assert_int_eq(strop_dataset_class_counts(a, counts, 7), STROP_OK);
  for (int k = 0; k < 7; k++) ck_assert_int_eq(counts[k], 5);
  int same = 1, differs = 0;
  for (int64_t i = 0; i < 35; i++) {
    same &= toy_id(a, i) == toy_id(b, i);
    differs |= toy_id(a, i) != toy_id(c, i);
    if (i) ck_assert_int_lt(toy_id(a, i - 1), toy_id(a, i)); /* source order, no repeats */
  }
  ck_assert(same);
  ck_assert(differs);
  strop_dataset_free(a);
  strop_dataset_free(b);
  strop_dataset_free(c);
  assert_err(strop_dataset_few_shot(ds, 200, 1, &a), STROP_E_INVALID_ARG, "fewer than k = 200");
  assert_err(strop_dataset_few_shot(ds, 0, 1, &a), STROP_E_INVALID_ARG, "k must be >= 1");
  strop_dataset_free(ds);
}
END_TEST

START_TEST(split_disjoint_covering) {
  strop_dataset *ds = toy(1003, 4);
  for (int flags = 0; flags <= STROP_SPLIT_STRATIFIED; flags++) {
    strop_dataset *tr = NULL, *va = NULL, *te = NULL;
    ck_assert_int_eq(strop_dataset_split(ds, 0.7f, 0.2f, 5, flags, &tr, &va, &te), STROP_OK);
    int64_t n1 = strop_dataset_size(tr), n2 = strop_dataset_size(va), n3 = strop_dataset_size(te);
    ck_assert_int_eq(n1 + n2 + n3, 1003);
    ck_assert(llabs(n1 - 702) <= 4 && llabs(n2 - 201) <= 4);
    char *seen = calloc(1003, 1);
    strop_dataset *parts[3] = {tr, va, te};
    for (int p = 0; p < 3; p++)
      for (int64_t i = 0; i < strop_dataset_size(parts[p]); i++) {
        int64_t id = toy_id(parts[p], i);
        ck_assert_int_eq(seen[id], 0);
        seen[id] = 1;
        ck_assert_int_eq((int64_t)label_of(parts[p], i), id % 4);
      }
    for (int i = 0; i < 1003; i++) ck_assert_int_eq(seen[i], 1);
    free(seen);
    /* same seed, same split */
    strop_dataset *tr2 = NULL;
    ck_assert_int_eq(strop_dataset_split(ds, 0.7f, 0.2f, 5, flags, &tr2, NULL, NULL), STROP_OK);
    ck_assert_int_eq(strop_dataset_size(tr2), n1);
    for (int64_t i = 0; i < n1; i++) ck_assert_int_eq(toy_id(tr, i), toy_id(tr2, i));
    strop_dataset_free(tr2);
    strop_dataset_free(tr);
    strop_dataset_free(va);
    strop_dataset_free(te);
  }
  strop_dataset *a = NULL;
  assert_err(strop_dataset_split(ds, 0.8f, 0.3f, 1, 0, &a, NULL, NULL), STROP_E_INVALID_ARG,
             "sum to <= 1");
  strop_dataset_free(ds);
}
END_TEST

START_TEST(split_stratified_ratios) {
  /* unbalanced classes: 10%, 30%, 60% */
  int64_t n = 997;
  float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
  for (int64_t i = 0; i < n; i++) {
    x[i] = (float)i;
    y[i] = (float)(i % 10 == 0 ? 0 : (i % 10 <= 3 ? 1 : 2));
  }
  int64_t d[1] = {1}, total[3], part[3];
  strop_dataset *ds = NULL, *tr = NULL, *va = NULL, *te = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, n, 1, d, 0, NULL, 3, &ds), STROP_OK);
  free(x);
  free(y);
  ck_assert_int_eq(strop_dataset_class_counts(ds, total, 3), STROP_OK);
  const float fr[3] = {0.6f, 0.25f, 0.15f};
  ck_assert_int_eq(
      strop_dataset_split(ds, fr[0], fr[1], 11, STROP_SPLIT_STRATIFIED, &tr, &va, &te), STROP_OK);
  strop_dataset *parts[3] = {tr, va, te};
  for (int p = 0; p < 3; p++) {
    ck_assert_int_eq(strop_dataset_class_counts(parts[p], part, 3), STROP_OK);
    for (int c = 0; c < 3; c++) {
      double exact = (double)total[c] * fr[p];
      ck_assert_msg(fabs((double)part[c] - exact) <= 1.0, "part %d class %d: %lld vs %.2f", p, c,
                    (long long)part[c], exact);
    }
  }
  strop_dataset_free(tr);
  strop_dataset_free(va);
  strop_dataset_free(te);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(one_hot_and_reshape) {
  strop_dataset *ds = toy(6, 3), *oh = NULL, *rs = NULL;
  ck_assert_int_eq(strop_dataset_one_hot(ds, &oh), STROP_OK);
  int64_t d[4];
  ck_assert_int_eq(strop_dataset_target_shape(oh, d, 4), 1);
  ck_assert_int_eq(d[0], 3);
  float in[2], t[3];
  ck_assert_int_eq(strop_dataset_get(oh, 5, in, 2, t, 3), STROP_OK);
  ck_assert_float_eq(t[0], 0.0f);
  ck_assert_float_eq(t[1], 0.0f);
  ck_assert_float_eq(t[2], 1.0f);
  strop_dataset *again = NULL;
  ck_assert_int_eq(strop_dataset_one_hot(oh, &again), STROP_E_UNSUPPORTED);
  int64_t shp[2] = {1, 2}, wrong[1] = {3};
  ck_assert_int_eq(strop_dataset_reshape(oh, 2, shp, &rs), STROP_OK);
  ck_assert_int_eq(strop_dataset_input_shape(rs, d, 4), 2);
  assert_err(strop_dataset_reshape(oh, 1, wrong, &again), STROP_E_SHAPE, "3 elements");
  /* iterate one-hot batches */
  strop_batch_iter *it = NULL;
  ck_assert_int_eq(strop_batch_iter_create(rs, 4, 0, 0, &it), STROP_OK);
  strop_tensor *bx, *by;
  int64_t rows;
  ck_assert_int_eq(strop_batch_iter_next(it, &bx, &by, &rows), STROP_OK);
  ck_assert_int_eq(strop_tensor_rank(by), 2);
  ck_assert_int_eq(strop_tensor_dim(by, 1), 3);
  ck_assert_int_eq(strop_tensor_rank(bx), 3);
  ck_assert_float_eq(strop_tensor_data(by)[3 * 1 + 1], 1.0f);
  strop_batch_iter_free(it);
  strop_dataset_free(rs);
  strop_dataset_free(oh);
  strop_dataset_free(ds);
}
END_TEST

/* ------------------------------------------------------------------ iterator ---- */

/* Ids of all samples yielded over `epochs` epochs (epoch ends not recorded). */
static int64_t collect(strop_batch_iter *it, int epochs, int64_t *ids, int64_t cap) {
  int64_t m = 0;
  for (int e = 0; e < epochs;) {
    strop_tensor *x;
    int64_t rows;
    ck_assert_int_eq(strop_batch_iter_next(it, &x, NULL, &rows), STROP_OK);
    if (rows == 0) {
      e++;
      continue;
    }
    for (int64_t r = 0; r < rows && m < cap; r++) ids[m++] = (int64_t)strop_tensor_data(x)[2 * r];
  }
  return m;
}

START_TEST(iter_order_and_epochs) {
  strop_dataset *ds = toy(50, 5);
  int64_t a[200], b[200], c[200];
  for (int pf = 0; pf <= STROP_ITER_PREFETCH; pf += STROP_ITER_PREFETCH) {
    strop_batch_iter *it = NULL, *it2 = NULL, *it3 = NULL;
    ck_assert_int_eq(strop_batch_iter_create(ds, 8, 42, STROP_ITER_SHUFFLE | pf, &it), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_create(ds, 8, 42, STROP_ITER_SHUFFLE, &it2), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_create(ds, 8, 43, STROP_ITER_SHUFFLE | pf, &it3), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_num_batches(it), 7);
    ck_assert_int_eq(collect(it, 3, a, 200), 150);
    ck_assert_int_eq(collect(it2, 3, b, 200), 150);
    ck_assert_int_eq(collect(it3, 3, c, 200), 150);
    ck_assert_mem_eq(a, b, sizeof(int64_t) * 150);
    ck_assert(memcmp(a, c, sizeof(int64_t) * 150) != 0);
    ck_assert(memcmp(a, a + 50, sizeof(int64_t) * 50) != 0); /* a new order each epoch */
    for (int e = 0; e < 3; e++) {                            /* each epoch a permutation */
      char seen[50] = {0};
      for (int i = 0; i < 50; i++) seen[a[e * 50 + i]]++;
      for (int i = 0; i < 50; i++) ck_assert_int_eq(seen[i], 1);
    }
    strop_batch_iter_free(it);
    strop_batch_iter_free(it2);
    strop_batch_iter_free(it3);
  }
  /* no shuffle: index order; drop_last */
  strop_batch_iter *it = NULL;
  ck_assert_int_eq(strop_batch_iter_create(ds, 8, 0, STROP_ITER_DROP_LAST, &it), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_num_batches(it), 6);
  ck_assert_int_eq(collect(it, 1, a, 200), 48);
  for (int i = 0; i < 48; i++) ck_assert_int_eq(a[i], i);
  strop_batch_iter_free(it);
  assert_err(strop_batch_iter_create(ds, 80, 0, STROP_ITER_DROP_LAST, &it), STROP_E_INVALID_ARG,
             "gives no batches");
  assert_err(strop_batch_iter_create(ds, 0, 0, 0, &it), STROP_E_INVALID_ARG, "batch_size");
  assert_err(strop_batch_iter_create(ds, 4, 0, 64, &it), STROP_E_INVALID_ARG, "unknown flags");
  strop_dataset_free(ds); /* the iterator keeps its dataset alive */
}
END_TEST

START_TEST(iter_state_resume) {
  strop_dataset *ds = toy(37, 3);
  for (int pf = 0; pf <= STROP_ITER_PREFETCH; pf += STROP_ITER_PREFETCH) {
    strop_batch_iter *ref = NULL, *it = NULL, *re = NULL;
    ck_assert_int_eq(strop_batch_iter_create(ds, 5, 1234, STROP_ITER_SHUFFLE | pf, &ref),
                     STROP_OK);
    int64_t all[300];
    ck_assert_int_eq(collect(ref, 4, all, 300), 148);
    strop_batch_iter_free(ref);
    /* run 1 epoch + 3 batches, save, resume in a fresh iterator (different seed at creation) */
    ck_assert_int_eq(strop_batch_iter_create(ds, 5, 1234, STROP_ITER_SHUFFLE | pf, &it),
                     STROP_OK);
    int64_t part[300];
    ck_assert_int_eq(collect(it, 1, part, 300), 37);
    strop_tensor *x;
    int64_t rows, m = 37;
    for (int b = 0; b < 3; b++) {
      ck_assert_int_eq(strop_batch_iter_next(it, &x, NULL, &rows), STROP_OK);
      for (int64_t r = 0; r < rows; r++) part[m++] = (int64_t)strop_tensor_data(x)[2 * r];
    }
    int64_t e, p, s;
    ck_assert_int_eq(strop_batch_iter_get_state(it, &e, &p, &s), STROP_OK);
    ck_assert_int_eq(e, 1);
    ck_assert_int_eq(p, 15);
    ck_assert_int_eq(s, 1234);
    strop_batch_iter_free(it);
    ck_assert_int_eq(strop_batch_iter_create(ds, 5, 999, STROP_ITER_SHUFFLE | pf, &re), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_set_state(re, e, p, s), STROP_OK);
    m += collect(re, 3, part + m, 300 - m);
    ck_assert_int_eq(m, 148);
    ck_assert_mem_eq(all, part, sizeof(int64_t) * 148);
    assert_err(strop_batch_iter_set_state(re, 0, 38, 0), STROP_E_INVALID_ARG,
               "position 38 out of range");
    strop_batch_iter_free(re);
  }
  strop_dataset_free(ds);
}
END_TEST

START_TEST(iter_prefetch_matches_sync) {
  if (!have_fmnist()) return;
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_load_idx(FMNIST "/t10k-images-idx3-ubyte.gz",
                                          FMNIST "/t10k-labels-idx1-ubyte.gz", 10, &ds),
                   STROP_OK);
  strop_batch_iter *a = NULL, *b = NULL;
  ck_assert_int_eq(
      strop_batch_iter_create(ds, 64, 3, STROP_ITER_SHUFFLE | STROP_ITER_PREFETCH, &a), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_create(ds, 64, 3, STROP_ITER_SHUFFLE, &b), STROP_OK);
  for (int k = 0; k < 2; k++) {
    strop_batch_iter *it = k ? b : a;
    ck_assert_int_eq(strop_batch_iter_add_random_crop(it, 28, 28, 2), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_add_hflip(it, 0.5f), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_add_scale(it, 1.0f / 255), STROP_OK);
  }
  int64_t batches = 0;
  for (;;) {
    strop_tensor *xa, *ya, *xb, *yb;
    int64_t ra, rb;
    ck_assert_int_eq(strop_batch_iter_next(a, &xa, &ya, &ra), STROP_OK);
    ck_assert_int_eq(strop_batch_iter_next(b, &xb, &yb, &rb), STROP_OK);
    ck_assert_int_eq(ra, rb);
    if (ra == 0) break;
    ck_assert_mem_eq(strop_tensor_data(xa), strop_tensor_data(xb), (size_t)ra * 784 * 4);
    ck_assert_mem_eq(strop_tensor_data(ya), strop_tensor_data(yb), (size_t)ra * 4);
    batches++;
  }
  ck_assert_int_eq(batches, 157);
  assert_err(strop_batch_iter_add_scale(a, 2.0f), STROP_E_STATE, "before the first batch");
  strop_batch_iter_free(a);
  strop_batch_iter_free(b);
  strop_dataset_free(ds);
}
END_TEST

/* ------------------------------------------------------------------ CSV ---- */

START_TEST(csv_sklearn_files) {
  if (!have_sklearn()) return;
  strop_csv_options o;
  strop_csv_options_init(&o);
  o.skip_lines = 1;
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_load_csv(SKDATA "/iris.csv", &o, &ds), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(ds), 150);
  int64_t d[2];
  ck_assert_int_eq(strop_dataset_input_shape(ds, d, 2), 1);
  ck_assert_int_eq(d[0], 4);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 3);
  float in[64], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 64, t, 1), STROP_OK);
  ck_assert_float_eq_tol(in[0], 5.1f, 1e-6f);
  ck_assert_float_eq(t[0], 0.0f);
  ck_assert_float_eq(label_of(ds, 149), 2.0f);
  int64_t counts[3];
  ck_assert_int_eq(strop_dataset_class_counts(ds, counts, 3), STROP_OK);
  ck_assert_int_eq(counts[1], 50);
  strop_dataset_free(ds);

  /* the sklearn header option: counts checked, class names adopted */
  strop_csv_options_init(&o);
  o.sklearn_header = 1;
  const char *files[3] = {"iris.csv", "wine_data.csv", "breast_cancer.csv"};
  const int64_t want[3][3] = {{150, 4, 3}, {178, 13, 3}, {569, 30, 2}};
  for (int f = 0; f < 3; f++) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", SKDATA, files[f]);
    ck_assert_msg(strop_dataset_load_csv(p, &o, &ds) == STROP_OK, "%s", strop_last_error());
    ck_assert_int_eq(strop_dataset_size(ds), want[f][0]);
    ck_assert_int_eq(strop_dataset_input_shape(ds, d, 2), 1);
    ck_assert_int_eq(d[0], want[f][1]);
    ck_assert_int_eq(strop_dataset_num_classes(ds), want[f][2]);
    strop_dataset_free(ds);
  }
  ck_assert_int_eq(strop_dataset_load_csv(SKDATA "/iris.csv", &o, &ds), STROP_OK);
  char name[32];
  ck_assert_int_eq(strop_dataset_class_name(ds, 2, name, sizeof name), 9);
  ck_assert_str_eq(name, "virginica");
  ck_assert_int_eq(strop_dataset_class_name(ds, 3, name, sizeof name), -1);
  strop_dataset_free(ds);

  /* digits: gzip, no header, label last; reshaped to 8x8 and resized to 28x28 */
  strop_csv_options_init(&o);
  ck_assert_int_eq(strop_dataset_load_csv(SKDATA "/digits.csv.gz", &o, &ds), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(ds), 1797);
  ck_assert_int_eq(strop_dataset_input_shape(ds, d, 2), 1);
  ck_assert_int_eq(d[0], 64);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 10);
  ck_assert_float_eq(label_of(ds, 0), 0.0f);
  ck_assert_float_eq(label_of(ds, 1), 1.0f);
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 64, t, 1), STROP_OK);
  ck_assert_float_eq(in[2], 5.0f);
  strop_dataset *img = NULL;
  int64_t shp[3] = {1, 8, 8};
  ck_assert_int_eq(strop_dataset_reshape(ds, 3, shp, &img), STROP_OK);
  strop_batch_iter *it = NULL;
  ck_assert_int_eq(strop_batch_iter_create(img, 32, 0, 0, &it), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_scale(it, 1.0f / 16), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_resize(it, 28, 28, STROP_RESIZE_BILINEAR), STROP_OK);
  int64_t od[4];
  ck_assert_int_eq(strop_batch_iter_input_shape(it, od, 4), 3);
  ck_assert_int_eq(od[1], 28);
  strop_tensor *x;
  int64_t rows;
  ck_assert_int_eq(strop_batch_iter_next(it, &x, NULL, &rows), STROP_OK);
  ck_assert_int_eq(strop_tensor_dim(x, 3), 28);
  strop_batch_iter_free(it);
  strop_dataset_free(img);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(csv_options) {
  const char *p = put_text("hdr.csv", "a; species ;b\n"
                                      "1.5; \"cat\"; 2\n"
                                      "\n"
                                      "2.5;dog;3e1\r\n"
                                      "3.5;cat;-4\n"
                                      "4.5;ant;5\n");
  strop_csv_options o;
  strop_csv_options_init(&o);
  o.header = 1;
  o.delimiter = ';';
  o.label_name = "species";
  o.label_mode = STROP_CSV_LABEL_NAMES;
  strop_dataset *ds = NULL;
  ck_assert_msg(strop_dataset_load_csv(p, &o, &ds) == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(strop_dataset_size(ds), 4);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 3);
  char nm[16];
  ck_assert_int_eq(strop_dataset_class_name(ds, 0, nm, sizeof nm), 3);
  ck_assert_str_eq(nm, "cat");
  float in[2], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, 1, in, 2, t, 1), STROP_OK);
  ck_assert_float_eq(in[0], 2.5f);
  ck_assert_float_eq(in[1], 30.0f);
  ck_assert_float_eq(t[0], 1.0f); /* dog: second seen */
  strop_dataset_free(ds);
  o.label_mode = STROP_CSV_LABEL_NAMES_SORTED;
  ck_assert_int_eq(strop_dataset_load_csv(p, &o, &ds), STROP_OK);
  ck_assert_float_eq(label_of(ds, 0), 1.0f); /* ant, cat, dog */
  ck_assert_float_eq(label_of(ds, 3), 0.0f);
  ck_assert_int_eq(strop_dataset_class_name(ds, 2, nm, sizeof nm), 3);
  ck_assert_str_eq(nm, "dog");
  strop_dataset_free(ds);
  /* label by index from the front, regression */
  const char *q = put_text("reg.csv", "0.5 1 2\n1.5  3 4\n");
  strop_csv_options_init(&o);
  o.delimiter = ' ';
  o.label_column = 0;
  o.label_mode = STROP_CSV_LABEL_REGRESSION;
  ck_assert_int_eq(strop_dataset_load_csv(q, &o, &ds), STROP_OK);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 0);
  int64_t d[2];
  ck_assert_int_eq(strop_dataset_target_shape(ds, d, 2), 1);
  ck_assert_int_eq(strop_dataset_get(ds, 1, in, 2, t, 1), STROP_OK);
  ck_assert_float_eq(t[0], 1.5f);
  ck_assert_float_eq(in[1], 4.0f);
  strop_dataset_free(ds);
  o.label_name = "nope";
  assert_err(strop_dataset_load_csv(q, &o, &ds), STROP_E_INVALID_ARG, "needs header = 1");
  o.header = 1;
  assert_err(strop_dataset_load_csv(q, &o, &ds), STROP_E_NOT_FOUND, "no column named 'nope'");
}
END_TEST

START_TEST(csv_broken_inputs) {
  strop_dataset *ds = (strop_dataset *)1;
  const char *p = put_text("ragged.csv", "1,2,0\n3,4,1\n5,6\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT,
             "ragged.csv:3: ragged row: 2 columns, expected 3");
  ck_assert_ptr_null(ds);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_dataset_load_csv: "));
  p = put_text("nonnum.csv", "1,2,0\n3,4,1\n5,x7,1\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT,
             "nonnum.csv:3: column 2: non-numeric value 'x7'");
  p = put_text("missing.csv", "1,2,0\n3,,1\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT,
             "missing.csv:2: column 2: empty (missing) value");
  p = put_text("badlabel.csv", "1,2,0\n3,4,1.5\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT,
             "badlabel.csv:2: column 3: label 1.5 is not a class index");
  p = put_text("nan.csv", "1,nan,0\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT, "non-finite value 'nan'");
  p = put_text("quote.csv", "1,\"2,0\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT, "unterminated quoted field");
  p = put_text("empty.csv", "\n\n");
  assert_err(strop_dataset_load_csv(p, NULL, &ds), STROP_E_FORMAT, "no data rows");
  p = put_text("skl.csv", "3,2,a,b\n1,2,0\n3,4,1\n");
  strop_csv_options o;
  strop_csv_options_init(&o);
  o.sklearn_header = 1;
  assert_err(strop_dataset_load_csv(p, &o, &ds), STROP_E_FORMAT,
             "sklearn header says 3 samples x 2 features, the data has 2 x 2");
  strop_csv_options_init(&o);
  o.label_column = 5;
  p = put_text("ok.csv", "1,2,0\n");
  assert_err(strop_dataset_load_csv(p, &o, &ds), STROP_E_INVALID_ARG,
             "label_column 5 out of range for 3 columns");
  o.label_column = -1;
  o.num_classes = 1;
  p = put_text("range.csv", "1,2,0\n1,2,1\n");
  assert_err(strop_dataset_load_csv(p, &o, &ds), STROP_E_FORMAT, "range.csv:2: column 3");
  assert_err(strop_dataset_load_csv("/nonexistent.csv", NULL, &ds), STROP_E_IO, "cannot open");
}
END_TEST

/* ------------------------------------------------------------------ NPY ---- */

START_TEST(npy_fixtures) {
  strop_dataset *ds = NULL;
  ck_assert_msg(strop_dataset_load_npy(FIX "/x_f4.npy", FIX "/y_i8.npy", STROP_CLASSES_INFER,
                                       &ds) == STROP_OK,
                "%s", strop_last_error());
  ck_assert_int_eq(strop_dataset_size(ds), 5);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 3);
  float in[8], t[4], ref[8];
  ck_assert_int_eq(strop_dataset_get(ds, 1, in, 8, t, 4), STROP_OK);
  ck_assert_float_eq(in[0], 0.5f); /* 3 * 0.5 - 1 */
  ck_assert_float_eq(in[2], 1.5f);
  ck_assert_float_eq(t[0], 2.0f);
  strop_dataset_free(ds);
  /* Fortran order, float64: same values as the C-order file */
  strop_dataset *a = NULL, *b = NULL;
  ck_assert_int_eq(strop_dataset_load_npy(FIX "/x_f4.npy", FIX "/y_i4.npy", 2, &a), STROP_OK);
  ck_assert_int_eq(strop_dataset_load_npy(FIX "/x_f8_fortran.npy", FIX "/y_i4.npy", 2, &b),
                   STROP_OK);
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(strop_dataset_get(a, i, ref, 8, t, 4), STROP_OK);
    ck_assert_int_eq(strop_dataset_get(b, i, in, 8, t, 4), STROP_OK);
    ck_assert_mem_eq(ref, in, 3 * sizeof(float));
  }
  ck_assert_float_eq(label_of(b, 0), 1.0f);
  strop_dataset_free(a);
  strop_dataset_free(b);
  /* uint8 rank 3, C and Fortran; regression targets (5, 2) */
  ck_assert_int_eq(strop_dataset_load_npy(FIX "/x_u1.npy", FIX "/y_f4_reg.npy", 0, &a), STROP_OK);
  ck_assert_int_eq(strop_dataset_load_npy(FIX "/x_u1_fortran.npy", FIX "/y_f4_reg.npy", 0, &b),
                   STROP_OK);
  int64_t d[4];
  ck_assert_int_eq(strop_dataset_input_shape(a, d, 4), 2);
  ck_assert_int_eq(d[1], 3);
  ck_assert_int_eq(strop_dataset_target_shape(a, d, 4), 1);
  ck_assert_int_eq(d[0], 2);
  ck_assert_int_eq(strop_dataset_get(a, 4, ref, 8, t, 4), STROP_OK);
  ck_assert_float_eq(ref[5], 29.0f);
  ck_assert_float_eq(t[1], 1.0f);
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(strop_dataset_get(a, i, ref, 8, t, 4), STROP_OK);
    ck_assert_int_eq(strop_dataset_get(b, i, in, 8, t, 4), STROP_OK);
    ck_assert_mem_eq(ref, in, 6 * sizeof(float));
  }
  strop_dataset_free(a);
  strop_dataset_free(b);
}
END_TEST

START_TEST(npy_broken_inputs) {
  strop_dataset *ds = (strop_dataset *)1;
  assert_err(strop_dataset_load_npy(FIX "/x_f4_be.npy", FIX "/y_i8.npy", 3, &ds),
             STROP_E_UNSUPPORTED, "NPY dtype '>f4' is not supported");
  ck_assert_ptr_null(ds);
  assert_err(strop_dataset_load_npy(FIX "/x_f4.npy", FIX "/x_u1.npy", 3, &ds), STROP_E_FORMAT,
             "class labels must be shape (5)");
  const char *p = put_text("notnpy.npy", "hello world, not numpy");
  assert_err(strop_dataset_load_npy(p, FIX "/y_i8.npy", 3, &ds), STROP_E_FORMAT, "bad magic");
  char hdr[128];
  const char *dicts[4] = {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }",
                          "{'descr': '<f4', 'fortran_order': False, }",
                          "{'fortran_order': False, 'shape': (2,), }",
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }"};
  const char *want[4] = {"'fortran_order' must be True or False", "no 'shape' tuple",
                         "no 'descr' string", "'shape' entry 1 is not a number"};
  static const double zeros = 0;
  for (int k = 0; k < 4; k++) {
    p = put_file("badhdr.npy", hdr, make_npy(hdr, dicts[k], &zeros, sizeof zeros), 0);
    assert_err(strop_dataset_load_npy(p, FIX "/y_i8.npy", 3, &ds), STROP_E_FORMAT, want[k]);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "bad NPY header"));
  }
  /* truncated data */
  size_t len;
  char *whole = strop_test_read_file(FIX "/x_f4.npy", &len);
  ck_assert_ptr_nonnull(whole);
  p = put_file("trunc.npy", whole, len - 4, 0);
  free(whole);
  assert_err(strop_dataset_load_npy(p, FIX "/y_i8.npy", 3, &ds), STROP_E_FORMAT,
             "truncated NPY data: 56 bytes, shape needs 60");
  assert_err(strop_dataset_load_npy(FIX "/x_f4.npy", FIX "/y_f4_reg.npy", 3, &ds), STROP_E_FORMAT,
             "class labels");
}
END_TEST

/* ------------------------------------------------------------------ text ---- */

START_TEST(text_language_model) {
  const char *p = put_text("t.txt", "h\xc3\xa9llo w\xc3\xb6rld\n");
  strop_vocab *v = NULL, *v2 = NULL, *vb = NULL;
  ck_assert_int_eq(strop_vocab_build(&p, 1, STROP_TOKENS_CHARS, &v), STROP_OK);
  /* distinct: \n ' ' d h l o r w é ö  => 10 + <unk> */
  ck_assert_int_eq(strop_vocab_size(v), 11);
  const char *vp = put_text("dummy", "");
  char vpath[600], stale[700];
  snprintf(vpath, sizeof vpath, "%s.vocab", vp);
  /* saved through the atomic writer: the temporary of a save killed earlier goes */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
  snprintf(stale, sizeof stale, "%s.tmp.%ld.3", vpath, (long)dead);
  put_file(strrchr(stale, '/') + 1, "x", 1, 0);
  ck_assert_int_eq(access(stale, F_OK), 0);
  ck_assert_int_eq(strop_vocab_save(v, vpath), STROP_OK);
  ck_assert_int_ne(access(stale, F_OK), 0);
  ck_assert_int_eq(strop_vocab_load(vpath, &v2), STROP_OK);
  ck_assert_int_eq(strop_vocab_size(v2), 11);
  int64_t ids[32], n;
  ck_assert_int_eq(strop_vocab_encode(v2, "h\xc3\xa9llo!", 7, ids, 32, &n), STROP_OK);
  ck_assert_int_eq(n, 6);
  ck_assert_int_eq(ids[5], 0); /* '!' is unknown */
  char back[32];
  ck_assert_int_eq(strop_vocab_decode(v2, ids, 5, back, sizeof back), 6);
  ck_assert_str_eq(back, "h\xc3\xa9llo");
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_load_text(p, v, 4, 2, &ds), STROP_OK);
  /* 12 tokens: windows at 0, 2, 4, 6 (6 + 4 + 1 <= 12) */
  ck_assert_int_eq(strop_dataset_size(ds), 4);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 11);
  float in[4], t[4];
  ck_assert_int_eq(strop_dataset_get(ds, 1, in, 4, t, 4), STROP_OK);
  for (int k = 0; k < 3; k++) ck_assert_float_eq(in[k + 1], t[k]);
  int64_t i64[4];
  for (int k = 0; k < 4; k++) i64[k] = (int64_t)in[k];
  ck_assert_int_eq(strop_vocab_decode(v, i64, 4, back, sizeof back), 4);
  ck_assert_str_eq(back, "llo ");
  strop_dataset_free(ds);
  /* bytes */
  ck_assert_int_eq(strop_vocab_build(NULL, 0, STROP_TOKENS_BYTES, &vb), STROP_OK);
  ck_assert_int_eq(strop_dataset_load_text(p, vb, 13, 1, &ds), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(ds), 1);
  ck_assert_int_eq(strop_dataset_get(ds, 0, in, 4, t, 4), STROP_E_INVALID_ARG);
  strop_dataset_free(ds);
  assert_err(strop_dataset_load_text(p, vb, 14, 1, &ds), STROP_E_FORMAT,
             "14 tokens, fewer than seq_len + 1 = 15");
  strop_vocab_free(v2);
  v2 = NULL;
  const char *bad = put_text("bad.vocab", "strop-vocab 1 chars 3\n<unk>\nU+0041\nU+0040\n");
  assert_err(strop_vocab_load(bad, &v2), STROP_E_FORMAT, "bad.vocab:4");
  strop_vocab_free(v);
  strop_vocab_free(v2);
  strop_vocab_free(vb);
}
END_TEST

START_TEST(text_classification) {
  const char *paths[3];
  paths[0] = put_text("en.txt", "the cat sat on the mat and the dog");
  paths[1] = put_text("de.txt", "der Hund");
  paths[2] = put_text("en2.txt", "a tale of two cities");
  int64_t labels[3] = {0, 1, 0};
  strop_vocab *v = NULL;
  ck_assert_int_eq(strop_vocab_build(paths, 3, STROP_TOKENS_CHARS, &v), STROP_OK);
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_load_text_classes(paths, labels, 3, v, 10, 10, &ds), STROP_OK);
  /* 34 chars -> 3 windows; 8 chars -> 1 padded; 20 chars -> 2 */
  ck_assert_int_eq(strop_dataset_size(ds), 6);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 2);
  int64_t counts[2];
  ck_assert_int_eq(strop_dataset_class_counts(ds, counts, 2), STROP_OK);
  ck_assert_int_eq(counts[0], 5);
  ck_assert_int_eq(counts[1], 1);
  float in[10], t[1];
  ck_assert_int_eq(strop_dataset_get(ds, 3, in, 10, t, 1), STROP_OK);
  ck_assert_float_eq(t[0], 1.0f);
  ck_assert_float_eq(in[9], 0.0f); /* padding */
  ck_assert_float_ne(in[7], 0.0f);
  strop_dataset_free(ds);
  strop_vocab_free(v);
}
END_TEST

/* ------------------------------------------------------------------ transforms ---- */

START_TEST(resize_matches_torch) {
  size_t len;
  char *txt = strop_test_read_file(FIX "/resize_ref.txt", &len);
  ck_assert_ptr_nonnull(txt);
  char *s = txt;
  int cases = 0;
  while ((s = strstr(s, "case ")) != NULL) {
    char mode[16];
    int c, ih, iw, oh, ow, used;
    ck_assert_int_eq(sscanf(s, "case %15s %d %d %d %d %d%n", mode, &c, &ih, &iw, &oh, &ow, &used),
                     6);
    s += used;
    size_t ni = (size_t)(c * ih * iw), no = (size_t)(c * oh * ow);
    float *in = malloc(ni * sizeof *in), *ref = malloc(no * sizeof *ref), *out = malloc(no * 4);
    s = strstr(s, "in ") + 3;
    for (size_t k = 0; k < ni; k++) in[k] = strtof(s, &s);
    s = strstr(s, "out ") + 4;
    for (size_t k = 0; k < no; k++) ref[k] = strtof(s, &s);
    if (strcmp(mode, "bilinear") == 0) strop__resize_bilinear(in, c, ih, iw, out, oh, ow);
    else strop__resize_nearest(in, c, ih, iw, out, oh, ow);
    size_t where;
    double err = strop_test_max_rel(out, ref, no, 1.0, &where);
    ck_assert_msg(err <= 1e-6, "%s %dx%dx%d -> %dx%d: error %g at %zu (%g vs %g)", mode, c, ih,
                  iw, oh, ow, err, where, (double)out[where], (double)ref[where]);
    /* and through an iterator */
    float y[1] = {0};
    int64_t dims[3] = {c, ih, iw};
    strop_dataset *ds = NULL;
    ck_assert_int_eq(strop_dataset_from_memory(in, y, 1, 3, dims, 0, NULL, 1, &ds), STROP_OK);
    strop_batch_iter *it = NULL;
    ck_assert_int_eq(strop_batch_iter_create(ds, 1, 0, 0, &it), STROP_OK);
    ck_assert_int_eq(
        strop_batch_iter_add_resize(
            it, oh, ow,
            strcmp(mode, "bilinear") == 0 ? STROP_RESIZE_BILINEAR : STROP_RESIZE_NEAREST),
        STROP_OK);
    strop_tensor *x;
    ck_assert_int_eq(strop_batch_iter_next(it, &x, NULL, NULL), STROP_OK);
    ck_assert_mem_eq(strop_tensor_data(x), out, no * sizeof(float));
    strop_batch_iter_free(it);
    strop_dataset_free(ds);
    free(in);
    free(ref);
    free(out);
    cases++;
  }
  ck_assert_int_eq(cases, 6);
  free(txt);
}
END_TEST

START_TEST(transforms_scale_normalize_flip_crop) {
  /* 4 images 2x3x3, channel 0 = i, channel 1 = 10 + position */
  float x[4 * 18], y[4] = {0, 1, 0, 1};
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 9; k++) {
      x[i * 18 + k] = (float)i;
      x[i * 18 + 9 + k] = 10.0f + (float)k;
    }
  int64_t d[3] = {2, 3, 3};
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, 4, 3, d, 0, NULL, 2, &ds), STROP_OK);
  float mean[2], sd[2];
  int64_t ch;
  ck_assert_int_eq(strop_dataset_channel_stats(ds, 0.5f, mean, sd, 2, &ch), STROP_OK);
  ck_assert_int_eq(ch, 2);
  ck_assert_float_eq_tol(mean[0], 0.75f, 1e-6f);
  ck_assert_float_eq_tol(mean[1], 7.0f, 1e-6f);
  strop_batch_iter *it = NULL;
  ck_assert_int_eq(strop_batch_iter_create(ds, 4, 0, 0, &it), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_scale(it, 0.5f), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_normalize(it, 2, NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_hflip(it, 1.0f), STROP_OK);
  assert_err(strop_batch_iter_add_normalize(it, 3, NULL, NULL), STROP_E_SHAPE, "2 channel(s)");
  strop_tensor *bx;
  ck_assert_int_eq(strop_batch_iter_next(it, &bx, NULL, NULL), STROP_OK);
  const float *p = strop_tensor_data(bx);
  double s0 = 0, s1 = 0, q0 = 0;
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 9; k++) {
      s0 += p[i * 18 + k];
      q0 += p[i * 18 + k] * p[i * 18 + k];
      s1 += p[i * 18 + 9 + k];
    }
  ck_assert(fabs(s0 / 36) < 1e-5 && fabs(s1 / 36) < 1e-5);
  ck_assert(fabs(q0 / 36 - 1.0) < 1e-4);
  /* flipped: channel 1 row 0 reads 12, 11, 10 (before normalising) -> decreasing */
  ck_assert(p[9] > p[10] && p[10] > p[11]);
  strop_batch_iter_free(it);

  /* crop with padding: shapes and zero fill */
  ck_assert_int_eq(strop_batch_iter_create(ds, 2, 5, STROP_ITER_SHUFFLE, &it), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_add_random_crop(it, 2, 4, 1), STROP_OK);
  assert_err(strop_batch_iter_add_random_crop(it, 9, 9, 1), STROP_E_SHAPE, "exceeds");
  int64_t od[3];
  ck_assert_int_eq(strop_batch_iter_input_shape(it, od, 3), 3);
  ck_assert_int_eq(od[1], 2);
  ck_assert_int_eq(od[2], 4);
  int64_t rows;
  ck_assert_int_eq(strop_batch_iter_next(it, &bx, NULL, &rows), STROP_OK);
  ck_assert_int_eq(strop_tensor_numel(bx), 2 * 2 * 2 * 4);
  int zeros = 0;
  for (int k = 0; k < 8; k++) zeros += strop_tensor_data(bx)[8 + k] == 0.0f; /* channel 1 */
  ck_assert_int_ge(zeros, 2); /* a 4-wide crop of a 3-wide image always shows padding */
  strop_batch_iter_free(it);
  int64_t flat[1] = {18};
  strop_dataset *fl = NULL;
  ck_assert_int_eq(strop_dataset_reshape(ds, 1, flat, &fl), STROP_OK);
  ck_assert_int_eq(strop_batch_iter_create(fl, 2, 5, 0, &it), STROP_OK);
  assert_err(strop_batch_iter_add_hflip(it, 0.5f), STROP_E_SHAPE, "rank 2 (H, W) or 3");
  assert_err(strop_batch_iter_add_hflip(it, 1.5f), STROP_E_SHAPE, "rank");
  assert_err(strop_batch_iter_add_resize(it, 2, 2, 9), STROP_E_SHAPE, "rank");
  strop_batch_iter_free(it);
  strop_dataset_free(fl);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(api_errors) {
  strop_dataset *ds = toy(10, 2), *out = (strop_dataset *)1;
  assert_err(strop_dataset_subset(ds, (int64_t[2]){1, 10}, 2, &out), STROP_E_INVALID_ARG,
             "indices[1] = 10 out of range [0, 10)");
  ck_assert_ptr_null(out);
  ck_assert_int_eq(strop_dataset_subset(ds, NULL, 0, &out), STROP_OK); /* empty view */
  ck_assert_int_eq(strop_dataset_size(out), 0);
  strop_batch_iter *it = (strop_batch_iter *)1;
  assert_err(strop_batch_iter_create(out, 4, 0, 0, &it), STROP_E_INVALID_ARG, "empty");
  ck_assert_ptr_null(it);
  float m[1], sd[1];
  int64_t ch;
  assert_err(strop_dataset_channel_stats(out, 1.0f, m, sd, 1, &ch), STROP_E_INVALID_ARG, "empty");
  strop_dataset_free(out);
  assert_err(strop_dataset_channel_stats(ds, 1.0f, NULL, sd, 1, &ch), STROP_E_INVALID_ARG,
             "NULL");
  ck_assert_int_eq(strop_dataset_class_counts(ds, (int64_t[1]){0}, 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_class_name(ds, 0, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_input_shape(NULL, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_target_shape(NULL, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_get(NULL, 0, NULL, 0, NULL, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_few_shot(NULL, 1, 0, &out), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_one_hot(NULL, &out), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_reshape(ds, 0, NULL, &out), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_split(ds, 0.5f, 0.5f, 0, 4, &out, NULL, NULL),
                   STROP_E_INVALID_ARG);
  /* regression datasets refuse class operations */
  float x[2] = {1, 2}, y[2] = {3, 4};
  int64_t d1[1] = {1};
  strop_dataset *reg = NULL;
  ck_assert_int_eq(strop_dataset_from_memory(x, y, 2, 1, d1, 1, d1, 0, &reg), STROP_OK);
  assert_err(strop_dataset_split(reg, 0.5f, 0.5f, 0, STROP_SPLIT_STRATIFIED, &out, NULL, NULL),
             STROP_E_UNSUPPORTED, "classification");
  assert_err(strop_dataset_filter_classes(reg, (int64_t[1]){0}, 1, &out), STROP_E_UNSUPPORTED,
             "not a classification");
  assert_err(strop_dataset_one_hot(reg, &out), STROP_E_UNSUPPORTED, "regression");
  ck_assert_int_eq(strop_dataset_split(reg, 0.5f, 0.5f, 0, 0, &out, NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_dataset_size(out), 1);
  strop_dataset_free(out);
  strop_dataset_free(reg);
  /* iterator getters and setters */
  int64_t e, p, s;
  ck_assert_int_eq(strop_batch_iter_get_state(NULL, &e, &p, &s), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_set_state(NULL, 0, 0, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_next(NULL, NULL, NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_num_batches(NULL), -1);
  ck_assert_int_eq(strop_batch_iter_input_shape(NULL, NULL, 0), -1);
  ck_assert_int_eq(strop_batch_iter_add_scale(NULL, 1.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_create(ds, 3, 0, 0, &it), STROP_OK);
  assert_err(strop_batch_iter_set_state(it, -1, 0, 0), STROP_E_INVALID_ARG, "epoch must be >= 0");
  assert_err(strop_batch_iter_add_scale(it, INFINITY), STROP_E_INVALID_ARG, "finite");
  assert_err(strop_batch_iter_add_normalize(it, 1, m, NULL), STROP_E_INVALID_ARG, "both");
  m[0] = 0;
  sd[0] = 0;
  assert_err(strop_batch_iter_add_normalize(it, 1, m, sd), STROP_E_INVALID_ARG,
             "std must be > 0");
  ck_assert_int_eq(strop_batch_iter_set_state(it, 0, 10, 0), STROP_OK); /* at the end */
  int64_t rows = -1;
  ck_assert_int_eq(strop_batch_iter_next(it, NULL, NULL, &rows), STROP_OK);
  ck_assert_int_eq(rows, 0);
  ck_assert_int_eq(strop_batch_iter_get_state(it, &e, &p, &s), STROP_OK);
  ck_assert_int_eq(e, 1);
  ck_assert_int_eq(p, 0);
  strop_batch_iter_free(it);
  strop_batch_iter_free(NULL);
  strop_dataset_free(ds);
  /* vocabularies and text */
  strop_vocab *v = (strop_vocab *)1;
  assert_err(strop_vocab_build(NULL, 0, STROP_TOKENS_CHARS, &v), STROP_E_INVALID_ARG,
             "at least one path");
  ck_assert_ptr_null(v);
  assert_err(strop_vocab_build(NULL, 0, 7, &v), STROP_E_INVALID_ARG, "unknown mode 7");
  const char *missing = "/nonexistent/file.txt";
  assert_err(strop_vocab_build(&missing, 1, STROP_TOKENS_CHARS, &v), STROP_E_IO, "cannot open");
  ck_assert_int_eq(strop_vocab_build(NULL, 0, STROP_TOKENS_BYTES, &v), STROP_OK);
  assert_err(strop_vocab_save(v, "/nonexistent/dir/v.vocab"), STROP_E_IO, "cannot create");
  strop_vocab *v2 = (strop_vocab *)1;
  assert_err(strop_vocab_load("/nonexistent/v.vocab", &v2), STROP_E_IO, "cannot open");
  ck_assert_ptr_null(v2);
  int64_t ids[2] = {65, 300}, n;
  ck_assert_int_eq(strop_vocab_decode(v, ids, 2, NULL, 0), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "ids[1] = 300 out of range"));
  ck_assert_int_eq(strop_vocab_encode(v, NULL, 3, ids, 2, &n), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_vocab_size(NULL), -1);
  const char *empty = put_text("empty.txt", "");
  int64_t lab[1] = {0};
  strop_dataset *tx = NULL;
  assert_err(strop_dataset_load_text_classes(&empty, lab, 1, v, 4, 4, &tx), STROP_E_FORMAT,
             "empty.txt is empty");
  lab[0] = -1;
  assert_err(strop_dataset_load_text_classes(&empty, lab, 1, v, 4, 4, &tx), STROP_E_INVALID_ARG,
             "labels[0] = -1");
  assert_err(strop_dataset_load_text(empty, v, 0, 1, &tx), STROP_E_INVALID_ARG, "seq_len");
  assert_err(strop_dataset_load_text(empty, NULL, 4, 1, &tx), STROP_E_INVALID_ARG,
             "vocab is NULL");
  strop_vocab_free(v);
  strop_vocab_free(NULL);
}
END_TEST

/* ------------------------------------------------------------------ allocation failures ---- */

static strop_dataset *g_ds, *g_a, *g_b, *g_c;
static strop_batch_iter *g_it;
static const char *g_path;

static int op_from_memory(void *ctx) {
  (void)ctx;
  float x[6] = {1, 2, 3, 4, 5, 6}, y[3] = {0, 1, 1};
  int64_t d[1] = {2};
  return strop_dataset_from_memory(x, y, 3, 1, d, 0, NULL, 2, &g_a);
}
static int op_split(void *ctx) {
  return strop_dataset_split((strop_dataset *)ctx, 0.5f, 0.25f, 3, STROP_SPLIT_STRATIFIED, &g_a,
                             &g_b, &g_c);
}
static int op_filter_fewshot(void *ctx) {
  int64_t keep[2] = {2, 0};
  strop_status st = strop_dataset_filter_classes((strop_dataset *)ctx, keep, 2, &g_a);
  if (st) return st;
  st = strop_dataset_few_shot(g_a, 3, 1, &g_b);
  if (st) {
    strop_dataset_free(g_a);
    g_a = NULL;
  }
  return st;
}
static int op_csv(void *ctx) {
  (void)ctx;
  strop_csv_options o;
  strop_csv_options_init(&o);
  o.label_mode = STROP_CSV_LABEL_NAMES_SORTED;
  return strop_dataset_load_csv(g_path, &o, &g_a);
}
static int op_iter(void *ctx) {
  strop_status st = strop_batch_iter_create((strop_dataset *)ctx, 3, 1,
                                            STROP_ITER_SHUFFLE | STROP_ITER_PREFETCH, &g_it);
  if (st) return st;
  st = strop_batch_iter_add_resize(g_it, 4, 4, STROP_RESIZE_BILINEAR);
  if (!st) st = strop_batch_iter_add_normalize(g_it, 1, NULL, NULL);
  strop_tensor *x;
  if (!st) st = strop_batch_iter_next(g_it, &x, NULL, NULL);
  if (st) {
    strop_batch_iter_free(g_it);
    g_it = NULL;
  }
  return st;
}
static void free_all(void *ctx) {
  (void)ctx;
  strop_dataset_free(g_a);
  strop_dataset_free(g_b);
  strop_dataset_free(g_c);
  strop_batch_iter_free(g_it);
  g_a = g_b = g_c = NULL;
  g_it = NULL;
}

START_TEST(alloc_failures) {
  ck_assert_int_ge(strop_test_alloc_sweep(op_from_memory, free_all, NULL), 1);
  g_ds = toy(60, 3);
  ck_assert_int_ge(strop_test_alloc_sweep(op_split, free_all, g_ds), 3);
  ck_assert_int_ge(strop_test_alloc_sweep(op_filter_fewshot, free_all, g_ds), 3);
  g_path = put_text("sweep.csv", "1,2,b\n3,4,a\n5,6,c\n7,8,a\n");
  ck_assert_int_ge(strop_test_alloc_sweep(op_csv, free_all, NULL), 3);
  int64_t shp[2] = {1, 2};
  strop_dataset *img = NULL;
  ck_assert_int_eq(strop_dataset_reshape(g_ds, 2, shp, &img), STROP_OK);
  ck_assert_int_ge(strop_test_alloc_sweep(op_iter, free_all, img), 3);
  strop_dataset_free(img);
  strop_dataset_free(g_ds);
}
END_TEST

int main(void) {
  Suite *s = suite_create("data");
  TCase *tc = tcase_create("memory");
  tcase_add_test(tc, memory_copy_and_get);
  tcase_add_test(tc, wrap_release_after_last_view);
  tcase_add_test(tc, callback_source);
  suite_add_tcase(s, tc);
  tc = tcase_create("idx");
  tcase_add_test(tc, idx_fashion_mnist);
  tcase_add_test(tc, idx_fashion_few_shot_pipeline);
  tcase_add_test(tc, idx_plain_gz_and_types);
  suite_add_tcase(s, tc);
  tc = tcase_create("shaping");
  tcase_add_test(tc, filter_remaps_classes);
  tcase_add_test(tc, few_shot_exact_k);
  tcase_add_test(tc, split_disjoint_covering);
  tcase_add_test(tc, split_stratified_ratios);
  tcase_add_test(tc, one_hot_and_reshape);
  suite_add_tcase(s, tc);
  tc = tcase_create("iterate");
  tcase_add_test(tc, iter_order_and_epochs);
  tcase_add_test(tc, iter_state_resume);
  tcase_add_test(tc, iter_prefetch_matches_sync);
  suite_add_tcase(s, tc);
  tc = tcase_create("formats");
  tcase_add_test(tc, csv_sklearn_files);
  tcase_add_test(tc, csv_options);
  tcase_add_test(tc, npy_fixtures);
  tcase_add_test(tc, text_language_model);
  tcase_add_test(tc, text_classification);
  suite_add_tcase(s, tc);
  tc = tcase_create("transforms");
  tcase_add_test(tc, resize_matches_torch);
  tcase_add_test(tc, transforms_scale_normalize_flip_crop);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, memory_errors);
  tcase_add_test(tc, api_errors);
  tcase_add_test(tc, idx_broken_inputs);
  tcase_add_test(tc, csv_broken_inputs);
  tcase_add_test(tc, npy_broken_inputs);
  tcase_add_test(tc, alloc_failures);
  suite_add_tcase(s, tc);
  tc = tcase_create("bounds");
  tcase_set_timeout(tc, 120); /* a FIFO that blocks fails here instead of hanging the suite */
  tcase_add_test(tc, idx_nonfinite_images_refused);
  tcase_add_test(tc, labels_are_exact_and_capped);
  tcase_add_test(tc, gzip_stops_at_declared_size);
  tcase_add_test(tc, gzip_trailer_not_trusted);
  tcase_add_test(tc, gzip_without_declared_size_is_bounded);
  tcase_add_test(tc, non_regular_files_refused);
  tcase_add_test(tc, iter_batch_larger_than_dataset);
  tcase_add_test(tc, npy_tensor_load);
  tcase_add_test(tc, npy_regression_targets_finite);
  tcase_add_test(tc, npy_tensor_alloc_failures);
  suite_add_tcase(s, tc);
  if (!tmpdir()[0]) {
    fprintf(stderr, "check_data: cannot create a scratch directory in /tmp\n");
    return EXIT_FAILURE;
  }
  int rc = strop_test_run(s);
  rm_tmpdir();
  return rc;
}
