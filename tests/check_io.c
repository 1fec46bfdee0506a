/* SPDX-License-Identifier: MIT */
/* strop tests — model files: safetensors reader/writer and its broken-file corpus, weights
 * round trips with PyTorch fixtures (tests/fixtures/gen_io.py), load reports, atomic writes,
 * checkpoints, and YAML specs (round trip, errors with positions, hostile input). */
#include <check.h>
#include <dirent.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "graph/graph.h"
#include "io/atomic.h"
#include "io/checkpoint.h"
#include "io/io_internal.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "layers/param.h"
#include "ops/lowp.h"
#include "strop/io.h"
#include "strop/recipe.h"
#include "strop/strop.h"
#include "testutil.h"

#define FX(rel) STROP_TEST_DATA "/io/" rel

static char g_dir[256];

static void make_dir(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/strop_io_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_dir(void) {
  DIR *d = opendir(g_dir);
  if (!d) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
      continue;
    snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(g_dir);
}

static const char *tmp_path(const char *name) {
  static char p[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
  return p[k];
}

/* Number of entries in g_dir whose name contains ".tmp." */
static int count_temp_files(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  if (d) closedir(d);
  return n;
}

#define ERR_HAS(s)                                                                \
  ck_assert_msg(strstr(strop_last_error(), (s)) != NULL, "error '%s' lacks '%s'", \
                strop_last_error(), (s))

/* ------------------------------------------------------------------------------------ */
/* safetensors reader and writer                                                          */
/* ------------------------------------------------------------------------------------ */

START_TEST(st_writer_roundtrip_mem) {
  int64_t live = strop__alloc_live();
  strop__st_writer *w = NULL;
  ck_assert_int_eq(strop__st_writer_create("t", &w), STROP_OK);
  float a[6] = {1, 2, 3, 4, 5, 6};
  int64_t ad[2] = {2, 3}, zd[2] = {0, 4}, one = 1;
  int64_t iv = 42, big[3] = {-1, INT64_MAX, INT64_MIN};
  int64_t bd = 3;
  float s = 7.5f;
  ck_assert_int_eq(strop__st_writer_add_f32(w, "a.weight", 2, ad, a), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_i64_copy(w, "n", 0, NULL, &iv), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_f32_copy(w, "scalar", 1, &one, &s), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_f32(w, "empty", 2, zd, NULL), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_i64(w, "big", 1, &bd, big), STROP_OK);
  ck_assert_int_eq(strop__st_writer_set_meta(w, "k\"ey", "v\\al\n"), STROP_OK);
  ck_assert_int_eq(strop__st_writer_set_meta(w, "k\"ey", "v2 \xc3\xa9"), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_f32(w, "__metadata__", 1, &one, &s), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop__st_writer_add_f32(w, "", 1, &one, &s), STROP_E_INVALID_ARG);
  int64_t neg = -1;
  ck_assert_int_eq(strop__st_writer_add_f32(w, "neg", 1, &neg, &s), STROP_E_INVALID_ARG);
  unsigned char *buf = NULL;
  size_t len = 0;
  ck_assert_int_eq(strop__st_writer_to_mem(w, &buf, &len), STROP_OK);
  strop__st_writer_free(w);

  strop__st_file *f = NULL;
  ck_assert_int_eq(strop__st_open_mem("t", buf, len, "mem", &f), STROP_OK);
  ck_assert_int_eq(f->n, 5);
  ck_assert_str_eq(f->t[0].name, "a.weight"); /* header order = insertion order */
  const strop__st_tensor *t = strop__st_find(f, "a.weight");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->rank, 2);
  ck_assert_int_eq(t->dims[1], 3);
  const float *view = strop__st_f32_view(t);
  ck_assert_ptr_nonnull(view); /* aligned: no copy needed */
  ck_assert(memcmp(view, a, sizeof a) == 0);
  t = strop__st_find(f, "n");
  ck_assert_int_eq(t->rank, 0);
  ck_assert_int_eq(t->dtype, STROP__DT_I64);
  int64_t got = 0;
  ck_assert_int_eq(strop__st_read_i64("t", t, &got, 1), STROP_OK);
  ck_assert_int_eq(got, 42);
  int64_t gb[3];
  ck_assert_int_eq(strop__st_read_i64("t", strop__st_find(f, "big"), gb, 3), STROP_OK);
  ck_assert(gb[1] == INT64_MAX && gb[2] == INT64_MIN && gb[0] == -1);
  ck_assert_int_eq(strop__st_find(f, "empty")->numel, 0);
  ck_assert_ptr_null(strop__st_find(f, "nope"));
  ck_assert_str_eq(strop__st_meta(f, "k\"ey"), "v2 \xc3\xa9");
  float sv;
  ck_assert_int_eq(strop__st_read_f32("t", strop__st_find(f, "scalar"), &sv, 1), STROP_OK);
  ck_assert(sv == 7.5f);
  ck_assert_int_eq(strop__st_read_f32("t", strop__st_find(f, "scalar"), &sv, 2), STROP_E_SHAPE);
  /* 8-byte tensors come first in the data, so every tensor is naturally aligned */
  for (int i = 0; i < f->n; i++)
    ck_assert_int_eq((uintptr_t)f->t[i].offset % strop__dtype_size(f->t[i].dtype), 0);
  strop__st_close(f);
  strop__free(buf);
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

START_TEST(st_writer_duplicate_names) {
  strop__st_writer *w = NULL;
  ck_assert_int_eq(strop__st_writer_create("t", &w), STROP_OK);
  float x = 1;
  int64_t one = 1;
  ck_assert_int_eq(strop__st_writer_add_f32(w, "x", 1, &one, &x), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_f32(w, "x", 1, &one, &x), STROP_OK);
  unsigned char *buf;
  size_t len;
  ck_assert_int_eq(strop__st_writer_to_mem(w, &buf, &len), STROP_E_INVALID_ARG);
  ERR_HAS("duplicate tensor name 'x'");
  strop__st_writer_free(w);
}
END_TEST

/* F16 bit patterns: normal, negative, subnormal, infinities, NaN, signed zero. */
START_TEST(st_half_conversion) {
  static const uint16_t h[] = {0x3C00, 0xC000, 0x0001, 0x7C00, 0xFC00,
                               0x7E00, 0x8000, 0x3555, 0x03FF, 0x7BFF};
  size_t n = sizeof h / sizeof h[0];
  char json[160];
  int hl = snprintf(json, sizeof json,
                    "{\"h\":{\"dtype\":\"F16\",\"shape\":[%zu],"
                    "\"data_offsets\":[0,%zu]}}",
                    n, 2 * n);
  unsigned char buf[512];
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, (size_t)hl);
  for (size_t i = 0; i < n; i++) {
    buf[8 + hl + 2 * i] = (unsigned char)(h[i] & 0xFF);
    buf[8 + hl + 2 * i + 1] = (unsigned char)(h[i] >> 8);
  }
  strop__st_file *f = NULL;
  ck_assert_int_eq(strop__st_open_mem("t", buf, 8 + (size_t)hl + 2 * n, NULL, &f), STROP_OK);
  float v[10];
  ck_assert_int_eq(strop__st_read_f32("t", &f->t[0], v, n), STROP_OK);
  ck_assert(v[0] == 1.0f && v[1] == -2.0f);
  ck_assert(v[2] == ldexpf(1.0f, -24));
  ck_assert(isinf(v[3]) && v[3] > 0 && isinf(v[4]) && v[4] < 0);
  ck_assert(isnan(v[5]));
  ck_assert(v[6] == 0.0f && signbit(v[6]));
  ck_assert(fabsf(v[7] - 0.33325195f) < 1e-7f);
  ck_assert(v[8] == ldexpf(1023.0f, -24));
  ck_assert(v[9] == 65504.0f);
  strop__st_close(f);
}
END_TEST

/* The committed PyTorch state dict: names, dtypes, shapes, I64 buffer, metadata. */
START_TEST(st_reads_torch_file) {
  strop_st_file *f = NULL;
  ck_assert_int_eq(strop_st_file_open(FX("torch_f32.safetensors"), &f), STROP_OK);
  ck_assert_int_eq(strop_st_file_count(f), 9);
  int64_t i = strop_st_file_find(f, "bn.num_batches_tracked");
  ck_assert(i >= 0);
  char buf[64];
  ck_assert_int_eq(strop_st_file_dtype(f, i, buf, sizeof buf), 3);
  ck_assert_str_eq(buf, "I64");
  int64_t dims[8];
  ck_assert_int_eq(strop_st_file_shape(f, i, dims, 8), 0);
  ck_assert_int_eq(strop__st_find(f, "bn.num_batches_tracked")->data[0], 3);
  i = strop_st_file_find(f, "conv.weight");
  ck_assert_int_eq(strop_st_file_shape(f, i, dims, 8), 4);
  ck_assert(dims[0] == 4 && dims[1] == 1 && dims[2] == 3 && dims[3] == 3);
  ck_assert_int_eq(strop_st_file_name(f, i, buf, 5), 11); /* snprintf-style */
  ck_assert_str_eq(buf, "conv");
  ck_assert_int_eq(strop_st_file_meta_count(f), 1);
  ck_assert_int_eq(strop_st_file_meta_key(f, 0, buf, sizeof buf), 6);
  ck_assert_str_eq(buf, "format");
  ck_assert_int_eq(strop_st_file_meta_value(f, 0, buf, sizeof buf), 2);
  ck_assert_str_eq(buf, "pt");
  float w[36];
  ck_assert_int_eq(strop_st_file_read_f32(f, i, w, 36), STROP_OK);
  ck_assert_int_eq(strop_st_file_read_f32(f, i, w, 35), STROP_E_SHAPE);
  ck_assert_int_eq(strop_st_file_read_f32(f, 99, w, 36), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_st_file_find(f, "nope"), -1);
  ck_assert_int_eq(strop_st_file_name(f, 9, buf, sizeof buf), -1);
  ck_assert_int_eq(strop_st_file_meta_key(f, 1, buf, sizeof buf), -1);
  strop_st_file_free(f);
  strop_st_file_free(NULL);
  ck_assert_int_eq(strop_st_file_count(NULL), -1);
  ck_assert_int_eq(strop_st_file_open(FX("nope.safetensors"), &f), STROP_E_IO);
  ck_assert_ptr_null(f);
  ERR_HAS("nope.safetensors");
  ck_assert_int_eq(strop_st_file_open(NULL, &f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_st_file_open(FX("torch_f32.safetensors"), NULL), STROP_E_INVALID_ARG);
}
END_TEST

/* F16, BF16 and F64 copies convert to the F32 values (within their precision). */
START_TEST(st_dtype_copies) {
  static const struct {
    const char *file;
    double tol;
  } cases[] = {{FX("torch_f64.safetensors"), 0.0},
               {FX("torch_f16.safetensors"), 1e-3},
               {FX("torch_bf16.safetensors"), 8e-3}};
  strop__st_file *ref = NULL;
  ck_assert_int_eq(strop__st_open("t", FX("torch_f32.safetensors"), &ref), STROP_OK);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    strop__st_file *f = NULL;
    ck_assert_int_eq(strop__st_open("t", cases[c].file, &f), STROP_OK);
    for (int i = 0; i < ref->n; i++) {
      const strop__st_tensor *a = &ref->t[i], *b = strop__st_find(f, a->name);
      ck_assert_ptr_nonnull(b);
      if (a->dtype != STROP__DT_F32) {
        ck_assert_int_eq(b->dtype, STROP__DT_I64);
        continue;
      }
      float x[256], y[256];
      ck_assert(a->numel <= 256 || a->numel == 432);
      float *xa = a->numel <= 256 ? x : malloc(a->numel * 4),
            *ya = a->numel <= 256 ? y : malloc(a->numel * 4);
      ck_assert_int_eq(strop__st_read_f32("t", a, xa, a->numel), STROP_OK);
      ck_assert_int_eq(strop__st_read_f32("t", b, ya, b->numel), STROP_OK);
      double e = strop_test_max_rel(ya, xa, a->numel, 1e-2, NULL);
      ck_assert_msg(e <= cases[c].tol, "%s %s: rel err %g", cases[c].file, a->name, e);
      if (xa != x) free(xa);
      if (ya != y) free(ya);
    }
    strop__st_close(f);
  }
  strop__st_close(ref);
}
END_TEST

/* Each broken file: STROP_E_FORMAT, its own sentence, no leak. */
static const struct {
  const char *file;
  const char *msg;
} g_broken[] = {
    {"short", "too short for the 8-byte header length"},
    {"header_too_long", "header length 1048576 exceeds the"},
    {"header_huge", "header length 4611686018427387904 exceeds"},
    {"truncated", "out of range: the data area has 10 bytes"},
    {"offsets_out_of_range", "data_offsets [0, 1600] are out of range"},
    {"bad_dtype", "unknown dtype \"F33\""},
    {"negative_dim", "shape[0] is negative (-2)"},
    {"huge_dims", "is too large (the byte size overflows)"},
    {"rank_too_large", "rank 10 exceeds the maximum 8"},
    {"wrong_length", "span 12 bytes but shape [2, 2] of F32 needs 16"},
    {"overlap", "overlap"},
    {"gap", "gap of 8 bytes before tensor 'a'"},
    {"trailing_bytes", "8 bytes after the last tensor's data"},
    {"duplicate_key", "duplicate key \"a\""},
    {"invalid_utf8", "invalid UTF-8"},
    {"deep_nesting", "nesting deeper than 16 levels"},
    {"bad_json", "unterminated object"},
    {"not_an_object", "does not start with '{'"},
    {"missing_dtype", "tensor 'a': missing \"dtype\""},
    {"metadata_not_string", "\"__metadata__\" entry 'step' is not a string"},
    {"fractional_dim", "shape[0] is not an integer"},
    {"zero_then_huge_dim", "shape[1] is 9223372036854775807, above the limit of 2^40"},
    {"huge_dim_then_zero", "shape[0] is 4611686018427387904, above the limit of 2^40"},
    {"zero_then_huge_product", "shape [0, 1099511627776, 1099511627776] is too large"},
};

START_TEST(st_broken_corpus) {
  char path[512];
  snprintf(path, sizeof path, "%s/io/broken/%s.safetensors", STROP_TEST_DATA, g_broken[_i].file);
  int64_t live = strop__alloc_live();
  strop_st_file *f = NULL;
  strop_clear_error();
  int st = strop_st_file_open(path, &f);
  ck_assert_msg(st == STROP_E_FORMAT, "%s: status %d (%s)", g_broken[_i].file, st,
                strop_last_error());
  ck_assert_ptr_null(f);
  ERR_HAS(g_broken[_i].msg);
  ERR_HAS("strop_st_file_open: ");
  ERR_HAS(g_broken[_i].file);
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

/* Header JSON details, from memory. */
static int open_header(const char *json, const char *data, size_t dlen) {
  size_t hl = strlen(json);
  unsigned char *buf = malloc(8 + hl + dlen + 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
  memcpy(buf + 8, json, hl);
  if (dlen) memcpy(buf + 8 + hl, data, dlen);
  strop__st_file *f = NULL;
  strop_clear_error();
  int st = strop__st_open_mem("t", buf, 8 + hl + dlen, NULL, &f);
  strop__st_close(f);
  free(buf);
  return st;
}

START_TEST(st_json_strictness) {
  const char *d = "\0\0\0\0\0\0\0\0";
  /* escapes and surrogate pairs decode; the name is then found by its UTF-8 bytes */
  ck_assert_int_eq(open_header("{\"\\u00e9\\ud83d\\ude00\\n\":{\"dtype\":\"U8\",\"shape\":[8],"
                               "\"data_offsets\":[0,8]}}   ",
                               d, 8),
                   STROP_OK);
  ck_assert_int_eq(open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                               "\"__metadata__\":{}}",
                               d, 8),
                   STROP_OK);
  ck_assert_int_eq(open_header("{}", "", 0), STROP_OK);
  ck_assert_int_eq(open_header("{\"\\ud83d\":{}}", d, 0), STROP_E_FORMAT);
  ERR_HAS("unpaired high surrogate");
  ck_assert_int_eq(open_header("{\"\\ude00\":{}}", d, 0), STROP_E_FORMAT);
  ERR_HAS("lone low surrogate");
  ck_assert_int_eq(open_header("{\"a\\u0000\":{}}", d, 0), STROP_E_FORMAT);
  ck_assert_int_eq(open_header("{\"a\tb\":{}}", d, 0), STROP_E_FORMAT);
  ERR_HAS("control character");
  ck_assert_int_eq(
      open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[08],\"data_offsets\":[0,8]}}", d, 8),
      STROP_E_FORMAT);
  ERR_HAS("leading zero");
  ck_assert_int_eq(
      open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}x", d, 8),
      STROP_E_FORMAT);
  ERR_HAS("unexpected text after the end");
  ck_assert_int_eq(
      open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8],}}", d, 8),
      STROP_E_FORMAT);
  ck_assert_int_eq(
      open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0]}}", d, 8),
      STROP_E_FORMAT);
  ERR_HAS("array of 2 integers");
  ck_assert_int_eq(
      open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[8,0]}}", d, 8),
      STROP_E_FORMAT);
  ERR_HAS("reversed");
  ck_assert_int_eq(open_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],"
                               "\"data_offsets\":[0,8]}}",
                               d, 8),
                   STROP_E_FORMAT);
  ck_assert_int_eq(
      open_header("{\"\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", d, 8),
      STROP_E_FORMAT);
  ERR_HAS("empty name");
  ck_assert_int_eq(open_header("{\"a\":[1]}", d, 0), STROP_E_FORMAT);
  ERR_HAS("not a JSON object");
  ck_assert_int_eq(open_header("{\"a\":tru}", d, 0), STROP_E_FORMAT);
  ERR_HAS("invalid literal");
  /* overlong UTF-8 and encoded surrogates are invalid */
  ck_assert(!strop__utf8_valid("\xc0\xaf", 2));
  ck_assert(!strop__utf8_valid("\xed\xa0\x80", 3));
  ck_assert(!strop__utf8_valid("\xf4\x90\x80\x80", 4));
  ck_assert(strop__utf8_valid("\xf0\x9f\x98\x80", 4));
}
END_TEST

/* Every dimension is bounded whatever the order: a zero elsewhere must not let a huge
 * dimension through (the tool multiplied dims and overflowed a 128-byte buffer). */
START_TEST(st_dims_checked_in_any_order) {
  static const struct {
    const char *shape, *msg;
  } bad[] = {
      {"[0,9223372036854775807]", "shape[1] is 9223372036854775807, above the limit of 2^40"},
      {"[0,9223372036854775807,9223372036854775807,5]", "shape[1] is 9223372036854775807"},
      {"[4611686018427387904,3,0]", "shape[0] is 4611686018427387904, above the limit of 2^40"},
      {"[1099511627776,1099511627776,0]", "shape [1099511627776, 1099511627776, 0] is too large"},
      {"[0,1099511627776,1099511627776]", "shape [0, 1099511627776, 1099511627776] is too large"},
      {"[1099511627777]", "shape[0] is 1099511627777, above the limit of 2^40"},
  };
  char json[256];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(json, sizeof json, "{\"a\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[0,0]}}",
             bad[i].shape);
    int64_t live = strop__alloc_live();
    ck_assert_msg(open_header(json, "", 0) == STROP_E_FORMAT, "%s accepted", bad[i].shape);
    ERR_HAS(bad[i].msg);
    ck_assert_int_eq(strop__alloc_live(), live);
  }
  /* zeros stay legal: an empty tensor of a bounded shape */
  ck_assert_int_eq(open_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,1099511627776,8],"
                               "\"data_offsets\":[0,0]}}",
                               "", 0),
                   STROP_OK);
}
END_TEST

/* A header of small numbers: the parser stops at its value limit instead of taking 32 bytes
 * of nodes per byte of header (50 MB took 1.75 GB). */
START_TEST(st_header_value_count_bounded) {
  size_t n = 1200000, cap = 64 + 2 * n + 8;
  char *json = malloc(cap);
  size_t l = (size_t)snprintf(json, cap, "{\"__metadata__\":{},\"x\":[");
  for (size_t i = 0; i < n; i++) {
    json[l++] = '0';
    json[l++] = ',';
  }
  json[l - 1] = ']';
  json[l++] = '}';
  json[l] = '\0';
  int64_t live = strop__alloc_live();
  strop__alloc_peak_reset();
  int64_t base = strop__alloc_peak();
  ck_assert_int_eq(open_header(json, "", 0), STROP_E_FORMAT);
  ERR_HAS("more than 1048576 JSON values");
  int64_t used = strop__alloc_peak() - base;
  ck_assert_msg(used < ((int64_t)110 << 20), "the header took %lld bytes", (long long)used);
  ck_assert_int_eq(strop__alloc_live(), live);
  free(json);
}
END_TEST

static int op_st_open(void *ctx) {
  strop__st_file *f = NULL;
  int st = strop__st_open("t", (const char *)ctx, &f);
  strop__st_close(f);
  return st;
}

START_TEST(st_alloc_sweep) {
  int n = strop_test_alloc_sweep(op_st_open, NULL, (void *)FX("torch_f32.safetensors"));
  ck_assert_int_gt(n, 3);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* weights                                                                                */
/* ------------------------------------------------------------------------------------ */

static const char *k_net_spec =
    "input: [1, 6, 6]\n"
    "seed: 7\n"
    "layers:\n"
    "  - {name: conv, type: conv2d, in_channels: 1, out_channels: 4, kernel_size: 3, padding: "
    "1}\n"
    "  - {name: bn, type: batchnorm2d, num_features: 4}\n"
    "  - {name: act, type: relu}\n"
    "  - {name: flat, type: flatten}\n"
    "  - {name: head, type: linear, in_features: 144, out_features: %d}\n"
    "%s";

static strop_model *net(int out_features, const char *extra) {
  char spec[1024];
  snprintf(spec, sizeof spec, k_net_spec, out_features, extra ? extra : "");
  strop_model *m = NULL;
  int st = strop_model_load_spec_string(spec, &m);
  ck_assert_msg(st == STROP_OK, "spec: %s", strop_last_error());
  return m;
}

/* Runs the model on the fixture input; returns a malloc'd [2, 3] output. */
static float *run_ref_input(strop_model *m) {
  strop__st_file *f = NULL;
  ck_assert_int_eq(strop__st_open("t", FX("torch_ref.safetensors"), &f), STROP_OK);
  const strop__st_tensor *in = strop__st_find(f, "input");
  strop_tensor *x = NULL, *y = NULL;
  float buf[72];
  ck_assert_int_eq(strop__st_read_f32("t", in, buf, 72), STROP_OK);
  ck_assert_int_eq(strop_tensor_from_data(buf, 72, 4, in->dims, &x), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, x, &y), STROP_OK);
  float *out = malloc(6 * sizeof *out);
  ck_assert_int_eq(strop_tensor_copy_to(y, out, 6), STROP_OK);
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop__st_close(f);
  return out;
}

static void ref_output(const char *name, float *out6) {
  strop__st_file *f = NULL;
  ck_assert_int_eq(strop__st_open("t", FX("torch_ref.safetensors"), &f), STROP_OK);
  ck_assert_int_eq(strop__st_read_f32("t", strop__st_find(f, name), out6, 6), STROP_OK);
  strop__st_close(f);
}

/* A state dict saved by PyTorch (F32, F16, BF16, F64) gives PyTorch's logits. */
START_TEST(weights_torch_parity) {
  static const struct {
    const char *file, *ref;
    double tol;
  } cases[] = {{FX("torch_f32.safetensors"), "output", 1e-5},
               {FX("torch_f64.safetensors"), "output", 1e-5},
               {FX("torch_f16.safetensors"), "output_f16", 1e-4},
               {FX("torch_bf16.safetensors"), "output_bf16", 1e-4}};
  strop_model *m = net(3, NULL);
  strop_load_report *r = NULL;
  ck_assert_int_eq(strop_model_load_weights(m, cases[_i].file, STROP_LOAD_STRICT, &r), STROP_OK);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 9);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISSING), 0);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_UNEXPECTED), 0);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISMATCHED), 0);
  strop_load_report_free(r);
  ck_assert_int_eq(strop__model_param_find(m, "bn.num_batches_tracked")->idata[0], 3);
  float *y = run_ref_input(m), want[6];
  ref_output(cases[_i].ref, want);
  double e = strop_test_max_rel(y, want, 6, 1e-3, NULL);
  ck_assert_msg(e <= cases[_i].tol, "%s: logits rel err %g", cases[_i].file, e);
  free(y);
  strop_model_free(m);
}
END_TEST

/* strop saves; a fresh model (another seed) loads it back exactly; the file is standard. */
START_TEST(weights_save_load_roundtrip) {
  strop_model *a = net(3, NULL);
  ck_assert_int_eq(strop_model_load_weights(a, FX("torch_f32.safetensors"), 0, NULL), STROP_OK);
  const char *p = tmp_path("w.safetensors");
  ck_assert_int_eq(strop_model_save_weights(a, p), STROP_OK);
  ck_assert_int_eq(count_temp_files(), 0);
  strop_model *b = NULL;
  char spec[1024];
  snprintf(spec, sizeof spec, k_net_spec, 3, "");
  *strstr(spec, "seed: 7") = '#'; /* seed 0: other initial weights */
  ck_assert_int_eq(strop_model_load_spec_string(spec, &b), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(b, p, STROP_LOAD_STRICT, NULL), STROP_OK);
  for (int i = 0; i < a->n_params; i++) {
    const strop__param *x = a->params[i], *y = b->params[i];
    ck_assert_str_eq(x->name, y->name);
    if (x->data) ck_assert(memcmp(x->data, y->data, x->numel * 4) == 0);
    else ck_assert_int_eq(x->idata[0], y->idata[0]);
  }
  strop__st_file *f = NULL;
  ck_assert_int_eq(strop__st_open("t", p, &f), STROP_OK);
  ck_assert_str_eq(strop__st_meta(f, "format"), "strop");
  ck_assert_str_eq(strop__st_meta(f, "strop_version"), strop_version());
  ck_assert_int_eq(strop__st_find(f, "bn.num_batches_tracked")->dtype, STROP__DT_I64);
  ck_assert_int_eq(strop__st_find(f, "bn.num_batches_tracked")->rank, 0);
  ck_assert_int_eq(strop__st_find(f, "head.weight")->dims[0], 3);
  strop__st_close(f);
  float *ya = run_ref_input(a), *yb = run_ref_input(b);
  ck_assert(memcmp(ya, yb, 6 * sizeof(float)) == 0);
  free(ya);
  free(yb);
  strop_model_free(a);
  strop_model_free(b);
}
END_TEST

static void snapshot(const strop_model *m, float **out, size_t *n) {
  size_t total = 0;
  for (int i = 0; i < m->n_params; i++) total += m->params[i]->numel;
  float *v = malloc(total * sizeof *v);
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (p->data) memcpy(v + k, p->data, p->numel * 4);
    else v[k] = (float)p->idata[0];
    k += p->numel;
  }
  *out = v;
  *n = total;
}

/* Strict fails naming the mismatch and leaves the model unchanged; partial loads the rest. */
START_TEST(weights_strict_and_partial) {
  strop_model *m = net(5, NULL); /* head has 5 outputs, the file 3 */
  float *before, *after;
  size_t n1, n2;
  snapshot(m, &before, &n1);
  strop_load_report *r = NULL;
  int st = strop_model_load_weights(m, FX("torch_f32.safetensors"), STROP_LOAD_STRICT, &r);
  ck_assert_int_eq(st, STROP_E_SHAPE);
  ERR_HAS("strop_model_load_weights: ");
  ERR_HAS("torch_f32.safetensors");
  ERR_HAS("2 mismatched (head.weight: file [3, 144] F32, model [5, 144] F32");
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISMATCHED), 2);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 0);
  char buf[128];
  ck_assert_int_eq(strop_load_report_name(r, STROP_REPORT_MISMATCHED, 0, buf, sizeof buf), 11);
  ck_assert_str_eq(buf, "head.weight");
  ck_assert_int_gt(strop_load_report_detail(r, STROP_REPORT_MISMATCHED, 1, buf, sizeof buf), 0);
  ck_assert_ptr_nonnull(strstr(buf, "head.bias: file [3] F32, model [5] F32"));
  ck_assert_int_eq(strop_load_report_name(r, STROP_REPORT_MISMATCHED, 2, buf, sizeof buf), -1);
  ck_assert_int_eq(strop_load_report_count(r, 7), -1);
  strop_load_report_free(r);
  snapshot(m, &after, &n2);
  ck_assert(n1 == n2 && memcmp(before, after, n1 * sizeof(float)) == 0);
  free(after);

  ck_assert_int_eq(
      strop_model_load_weights(m, FX("torch_f32.safetensors"), STROP_LOAD_PARTIAL, &r), STROP_OK);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 7);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISMATCHED), 2);
  strop_load_report_free(r);
  /* the head kept its initial weights, the conv got the file's */
  strop__param *hw = strop__model_param_find(m, "head.weight");
  ck_assert_int_eq(strop__model_param_find(m, "conv.weight")->version, 1);
  ck_assert_int_eq(hw->version, 0);
  free(before);
  strop_model_free(m);

  /* missing and unexpected keys */
  m = net(3, "  - {name: extra, type: linear, in_features: 3, out_features: 2}\n");
  ck_assert_int_eq(strop_model_load_weights(m, FX("torch_f32.safetensors"), 0, &r),
                   STROP_E_NOT_FOUND);
  ERR_HAS("2 missing (extra.weight, extra.bias)");
  strop_load_report_free(r);
  ck_assert_int_eq(
      strop_model_load_weights(m, FX("torch_f32.safetensors"), STROP_LOAD_PARTIAL, &r), STROP_OK);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISSING), 2);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 9);
  strop_load_report_free(r);
  strop_model_free(m);

  m = net(3, NULL);
  ck_assert_int_eq(strop_model_load_weights(m, FX("torch_prefixed.safetensors"), 0, NULL),
                   STROP_E_NOT_FOUND);
  ERR_HAS("7 missing (conv.weight, conv.bias, bn.weight, bn.bias and 3 more); 7 unexpected "
          "(features.conv.weight");
  ck_assert_int_eq(
      strop_model_load_weights(m, FX("torch_prefixed.safetensors"), STROP_LOAD_PARTIAL, &r),
      STROP_OK);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_UNEXPECTED), 7);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 2);
  strop_load_report_free(r);
  strop_model_free(m);
}
END_TEST

/* features.* in the file loads into backbone.* */
START_TEST(weights_prefix_remap) {
  const char *spec =
      "input: [1, 6, 6]\n"
      "layers:\n"
      "  - {name: backbone.conv, type: conv2d, in_channels: 1, out_channels: 4, kernel_size: 3,"
      " padding: 1}\n"
      "  - {name: backbone.bn, type: batchnorm2d, num_features: 4}\n"
      "  - {name: act, type: relu}\n"
      "  - {name: flat, type: flatten}\n"
      "  - {name: head, type: linear, in_features: 144, out_features: 3}\n";
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_load_spec_string(spec, &m), STROP_OK);
  strop_load_report *r = NULL;
  ck_assert_int_eq(strop_model_load_weights_remap(m, FX("torch_prefixed.safetensors"), 0,
                                                  "features.", "backbone.", &r),
                   STROP_OK);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 9);
  strop_load_report_free(r);
  float *y = run_ref_input(m), want[6];
  ref_output("output", want);
  ck_assert(strop_test_max_rel(y, want, 6, 1e-3, NULL) <= 1e-5);
  free(y);
  ck_assert_int_eq(
      strop_model_load_weights_remap(m, FX("torch_prefixed.safetensors"), 0, NULL, "x", &r),
      STROP_E_INVALID_ARG);
  ck_assert_ptr_null(r);
  strop_model_free(m);
}
END_TEST

/* An I64 tensor for a float parameter is a dtype mismatch, not a conversion. */
START_TEST(weights_dtype_mismatch) {
  strop_model *m = net(3, NULL);
  strop__st_writer *w = NULL;
  ck_assert_int_eq(strop__st_writer_create("t", &w), STROP_OK);
  int64_t iw[36] = {0}, wd[4] = {4, 1, 3, 3};
  float nbt = 2.0f;
  ck_assert_int_eq(strop__st_writer_add_i64(w, "conv.weight", 4, wd, iw), STROP_OK);
  ck_assert_int_eq(strop__st_writer_add_f32(w, "bn.num_batches_tracked", 0, NULL, &nbt),
                   STROP_OK);
  const char *p = tmp_path("dt.safetensors");
  ck_assert_int_eq(strop__st_writer_save(w, p), STROP_OK);
  strop__st_writer_free(w);
  strop_load_report *r = NULL;
  ck_assert_int_eq(strop_model_load_weights(m, p, STROP_LOAD_PARTIAL, &r), STROP_OK);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISMATCHED), 2);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 0);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISSING), 7);
  char buf[200];
  strop_load_report_detail(r, STROP_REPORT_MISMATCHED, 0, buf, sizeof buf);
  ck_assert_str_eq(buf, "conv.weight: file [4, 1, 3, 3] I64, model [4, 1, 3, 3] F32");
  strop_load_report_detail(r, STROP_REPORT_MISMATCHED, 1, buf, sizeof buf);
  ck_assert_str_eq(buf, "bn.num_batches_tracked: file [] F32, model [] I64");
  strop_load_report_free(r);
  strop_model_free(m);
}
END_TEST

START_TEST(weights_errors) {
  strop_model *m = NULL;
  int64_t in[1] = {4};
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc", "linear", "in_features=4 out_features=2", NULL),
                   STROP_OK);
  strop_load_report *r = (strop_load_report *)1;
  ck_assert_int_eq(strop_model_load_weights(m, FX("torch_f32.safetensors"), 0, &r),
                   STROP_E_STATE);
  ck_assert_ptr_null(r);
  ck_assert_int_eq(strop_model_save_weights(m, tmp_path("x")), STROP_E_STATE);
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(NULL, "x", 0, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_load_weights(m, NULL, 0, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_load_weights(m, "x", 8, NULL), STROP_E_INVALID_ARG);
  ERR_HAS("unknown flags");
  ck_assert_int_eq(strop_model_load_weights(m, tmp_path("missing.safetensors"), 0, &r),
                   STROP_E_IO);
  ck_assert_ptr_null(r);
  ck_assert_int_eq(
      strop_model_load_weights(m, STROP_TEST_DATA "/io/broken/gap.safetensors", 0, NULL),
      STROP_E_FORMAT);
  ERR_HAS("strop_model_load_weights: ");
  ERR_HAS("gap of 8 bytes");
  ck_assert_int_eq(strop_model_save_weights(NULL, "x"), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_save_weights(m, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_save_weights(m, "/nonexistent-dir/w.safetensors"), STROP_E_IO);
  ERR_HAS("cannot create a temporary file");
  ck_assert_int_eq(strop_load_report_count(NULL, 0), -1);
  strop_load_report_free(NULL);
  strop_model_free(m);
}
END_TEST

typedef struct load_ctx {
  strop_model *m;
  const char *path;
  int flags;
} load_ctx;

static int op_load(void *ctx) {
  load_ctx *c = ctx;
  strop_load_report *r = NULL;
  int st = strop_model_load_weights(c->m, c->path, c->flags, &r);
  strop_load_report_free(r);
  return st;
}

static int op_save(void *ctx) {
  load_ctx *c = ctx;
  return strop_model_save_weights(c->m, c->path);
}

START_TEST(weights_alloc_sweep) {
  strop_model *m = net(5, NULL);
  load_ctx c = {m, FX("torch_f32.safetensors"), STROP_LOAD_PARTIAL};
  ck_assert_int_gt(strop_test_alloc_sweep(op_load, NULL, &c), 5);
  c.path = tmp_path("sweep.safetensors");
  ck_assert_int_gt(strop_test_alloc_sweep(op_save, NULL, &c), 3);
  ck_assert_int_eq(count_temp_files(), 0);
  strop_model_free(m);
}
END_TEST

/* ---- model metadata in weight files ---- */

static const char *meta_str(const strop_model *m, const char *key) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  return strop_model_get_meta(m, key, buf[k], sizeof buf[k]) < 0 ? NULL : buf[k];
}

/* Saved as "strop.meta.<key>" beside format/strop_version; a strict load takes them (replacing
 * what the model had), a partial load or a file without them leaves the model's alone. */
START_TEST(weights_meta_roundtrip) {
  strop_model *a = net(3, NULL), *b = net(3, NULL);
  ck_assert_int_eq(strop_model_set_meta(a, "classes", "[{\"label\": 5, \"name\": \"Sandal\"}]"),
                   STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(a, "input.scale", "0.00392156862745098"), STROP_OK);
  const char *p = tmp_path("meta.safetensors");
  ck_assert_int_eq(strop_model_save_weights(a, p), STROP_OK);
  strop__st_file *f = NULL;
  ck_assert_int_eq(strop__st_open("t", p, &f), STROP_OK);
  ck_assert_str_eq(strop__st_meta(f, "format"), "strop");
  ck_assert_str_eq(strop__st_meta(f, "strop.meta.classes"),
                   "[{\"label\": 5, \"name\": \"Sandal\"}]");
  ck_assert_str_eq(strop__st_meta(f, "strop.meta.input.scale"), "0.00392156862745098");
  ck_assert_int_eq(f->n_meta, 4);
  strop__st_close(f);
  /* strict: the file's entries replace the model's */
  ck_assert_int_eq(strop_model_set_meta(b, "stale", "1"), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(b, p, STROP_LOAD_STRICT, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_meta_count(b), 2);
  ck_assert_str_eq(meta_str(b, "classes"), "[{\"label\": 5, \"name\": \"Sandal\"}]");
  ck_assert_ptr_null(meta_str(b, "stale"));
  /* partial: kept as they were */
  ck_assert_int_eq(strop_model_set_meta(a, "classes", "[]"), STROP_OK);
  ck_assert_int_eq(strop_model_save_weights(a, p), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(b, p, STROP_LOAD_PARTIAL, NULL), STROP_OK);
  ck_assert_str_eq(meta_str(b, "classes"), "[{\"label\": 5, \"name\": \"Sandal\"}]");
  /* a file without model metadata (PyTorch's): kept as they were */
  ck_assert_int_eq(strop_model_load_weights(b, FX("torch_f32.safetensors"), 0, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_meta_count(b), 2);
  /* a failed strict load changes neither the tensors nor the metadata */
  strop_model *c = net(5, NULL);
  ck_assert_int_eq(strop_model_set_meta(c, "mine", "1"), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(c, p, STROP_LOAD_STRICT, NULL), STROP_E_SHAPE);
  ck_assert_int_eq(strop_model_meta_count(c), 1);
  ck_assert_str_eq(meta_str(c, "mine"), "1");
  /* export keeps them */
  ck_assert_int_eq(strop_model_export(a, tmp_path("e.yaml"), tmp_path("e.safetensors"), 0),
                   STROP_OK);
  strop_model *e = NULL;
  ck_assert_int_eq(strop_model_load_spec(tmp_path("e.yaml"), &e), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(e, tmp_path("e.safetensors"), 0, NULL), STROP_OK);
  ck_assert_str_eq(meta_str(e, "classes"), "[]");
  ck_assert_str_eq(meta_str(e, "input.scale"), "0.00392156862745098");
  strop_model_free(e);
  strop_model_free(c);
  strop_model_free(b);
  strop_model_free(a);
}
END_TEST

/* A file whose model metadata break the bounds of strop_model_set_meta fails a strict load
 * with STROP_E_FORMAT naming the entry; the model keeps its tensors and metadata. */
START_TEST(weights_meta_hostile) {
  strop_model *a = net(3, NULL), *b = net(3, NULL);
  strop__st_writer *w = NULL;
  ck_assert_int_eq(strop__st_writer_create("t", &w), STROP_OK);
  ck_assert_int_eq(strop__model_add_to_writer("t", a, w), STROP_OK);
  ck_assert_int_eq(strop__st_writer_set_meta(w, "strop.meta.ok", "1"), STROP_OK);
  ck_assert_int_eq(strop__st_writer_set_meta(w, "strop.meta.a key", "1"), STROP_OK);
  unsigned char *img = NULL;
  size_t len = 0;
  ck_assert_int_eq(strop__st_writer_to_mem(w, &img, &len), STROP_OK);
  strop__st_writer_free(w);
  ck_assert_int_eq(strop_model_set_meta(b, "mine", "1"), STROP_OK);
  float *before, *after;
  size_t n1, n2;
  snapshot(b, &before, &n1);
  ck_assert_int_eq(strop_model_load_weights_mem(b, img, len, STROP_LOAD_STRICT, NULL),
                   STROP_E_FORMAT);
  ERR_HAS("strop_model_load_weights_mem: <memory>: \"__metadata__\" entry 'strop.meta.a key'");
  ERR_HAS("printable ASCII");
  snapshot(b, &after, &n2);
  ck_assert(n1 == n2 && memcmp(before, after, n1 * sizeof(float)) == 0);
  ck_assert_int_eq(strop_model_meta_count(b), 1);
  ck_assert_str_eq(meta_str(b, "mine"), "1");
  /* a partial load does not read them */
  ck_assert_int_eq(strop_model_load_weights_mem(b, img, len, STROP_LOAD_PARTIAL, NULL), STROP_OK);
  free(before);
  free(after);
  strop__free(img);
  strop_model_free(b);
  strop_model_free(a);
}
END_TEST

/* ---- weights from memory ---- */

/* The same file from disk and from memory (at any alignment) gives the same model: tensors,
 * report and metadata; the buffer is not kept. */
START_TEST(weights_mem_equals_file) {
  static const char *const files[] = {FX("torch_f32.safetensors"), FX("torch_f16.safetensors"),
                                      FX("torch_bf16.safetensors"), FX("torch_f64.safetensors")};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
    size_t len = 0;
    char *bytes = strop_test_read_file(files[k], &len);
    ck_assert_ptr_nonnull(bytes);
    for (size_t shift = 0; shift < 3; shift++) {
      char *buf = malloc(len + shift);
      memcpy(buf + shift, bytes, len);
      strop_model *a = net(3, NULL), *b = net(3, NULL);
      strop_load_report *ra = NULL, *rb = NULL;
      ck_assert_int_eq(strop_model_load_weights(a, files[k], STROP_LOAD_STRICT, &ra), STROP_OK);
      ck_assert_int_eq(strop_model_load_weights_mem(b, buf + shift, len, STROP_LOAD_STRICT, &rb),
                       STROP_OK);
      memset(buf, 0xff, len + shift); /* not kept: scribbling over it changes nothing */
      free(buf);
      for (int kind = 0; kind < 4; kind++)
        ck_assert_int_eq(strop_load_report_count(ra, kind), strop_load_report_count(rb, kind));
      float *va, *vb;
      size_t na, nb;
      snapshot(a, &va, &na);
      snapshot(b, &vb, &nb);
      ck_assert(na == nb && memcmp(va, vb, na * sizeof(float)) == 0);
      free(va);
      free(vb);
      strop_load_report_free(ra);
      strop_load_report_free(rb);
      strop_model_free(a);
      strop_model_free(b);
    }
    free(bytes);
  }
  /* a strop file with metadata, strict and partial, through both paths */
  strop_model *src = net(3, NULL);
  ck_assert_int_eq(strop_model_set_meta(src, "classes", "[{\"label\": 7}]"), STROP_OK);
  const char *p = tmp_path("m.safetensors");
  ck_assert_int_eq(strop_model_save_weights(src, p), STROP_OK);
  size_t len = 0;
  char *bytes = strop_test_read_file(p, &len);
  strop_model *a = net(5, NULL), *b = net(5, NULL);
  strop_load_report *ra = NULL, *rb = NULL;
  ck_assert_int_eq(strop_model_load_weights(a, p, STROP_LOAD_PARTIAL, &ra), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights_mem(b, bytes, len, STROP_LOAD_PARTIAL, &rb),
                   STROP_OK);
  ck_assert_int_eq(strop_load_report_count(rb, STROP_REPORT_MISMATCHED), 2);
  ck_assert_int_eq(strop_load_report_count(ra, STROP_REPORT_LOADED),
                   strop_load_report_count(rb, STROP_REPORT_LOADED));
  strop_load_report_free(ra);
  strop_load_report_free(rb);
  ck_assert_int_eq(strop_model_load_weights_mem(b, bytes, len, STROP_LOAD_STRICT, &rb),
                   STROP_E_SHAPE);
  ERR_HAS("strop_model_load_weights_mem: <memory>: strict load: 2 mismatched");
  ck_assert_ptr_nonnull(rb); /* the report, as from a file */
  strop_load_report_free(rb);
  strop_model_free(b);
  b = net(3, NULL);
  ck_assert_int_eq(strop_model_load_weights_mem(b, bytes, len, STROP_LOAD_STRICT, NULL),
                   STROP_OK);
  ck_assert_str_eq(meta_str(b, "classes"), "[{\"label\": 7}]");
  free(bytes);
  strop_model_free(a);
  strop_model_free(b);
  strop_model_free(src);
}
END_TEST

/* The broken-file corpus through the memory path: the same status and sentence as from the
 * file (with "<memory>" for the path), the model untouched, nothing leaked. */
START_TEST(weights_mem_broken_corpus) {
  char path[512];
  snprintf(path, sizeof path, "%s/io/broken/%s.safetensors", STROP_TEST_DATA, g_broken[_i].file);
  size_t len = 0;
  char *bytes = strop_test_read_file(path, &len);
  ck_assert_ptr_nonnull(bytes);
  strop_model *m = net(3, NULL);
  ck_assert_int_eq(strop_model_set_meta(m, "mine", "1"), STROP_OK);
  char from_file[1024];
  ck_assert_int_eq(strop_model_load_weights(m, path, STROP_LOAD_PARTIAL, NULL), STROP_E_FORMAT);
  snprintf(from_file, sizeof from_file, "%s", strop_last_error());
  int64_t live = strop__alloc_live();
  float *before, *after;
  size_t n1, n2;
  snapshot(m, &before, &n1);
  for (int strict = 0; strict < 2; strict++) {
    strop_load_report *r = (strop_load_report *)1;
    strop_clear_error();
    int st = strop_model_load_weights_mem(m, bytes, len, strict ? 0 : STROP_LOAD_PARTIAL, &r);
    ck_assert_msg(st == STROP_E_FORMAT, "%s: status %d (%s)", g_broken[_i].file, st,
                  strop_last_error());
    ck_assert_ptr_null(r);
    ERR_HAS(g_broken[_i].msg);
    ERR_HAS("strop_model_load_weights_mem: <memory>: ");
    /* the same sentence as from the file, but for the function and the path */
    const char *tail_file = strstr(from_file, ".safetensors: ") + strlen(".safetensors: ");
    const char *tail_mem = strstr(strop_last_error(), "<memory>: ") + strlen("<memory>: ");
    ck_assert_str_eq(tail_mem, tail_file);
  }
  snapshot(m, &after, &n2);
  ck_assert(n1 == n2 && memcmp(before, after, n1 * sizeof(float)) == 0);
  ck_assert_int_eq(strop_model_meta_count(m), 1);
  ck_assert_int_eq(strop__alloc_live(), live);
  free(before);
  free(after);
  free(bytes);
  strop_model_free(m);
}
END_TEST

START_TEST(weights_mem_errors) {
  strop_model *m = net(3, NULL);
  size_t len = 0;
  char *bytes = strop_test_read_file(FX("torch_f32.safetensors"), &len);
  int64_t live = strop__alloc_live();
  strop_load_report *r = (strop_load_report *)1;
  strop_clear_error();
  ck_assert_int_eq(strop_model_load_weights_mem(NULL, bytes, len, 0, &r), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(r);
  ERR_HAS("strop_model_load_weights_mem: model is NULL");
  ck_assert_int_eq(strop_model_load_weights_mem(m, NULL, len, 0, &r), STROP_E_INVALID_ARG);
  ERR_HAS("data is NULL");
  ck_assert_int_eq(strop_model_load_weights_mem(m, bytes, len, 4, &r), STROP_E_INVALID_ARG);
  ERR_HAS("unknown flags 0x4");
  ck_assert_int_eq(strop_model_load_weights_mem(m, bytes, 0, 0, &r), STROP_E_FORMAT);
  ERR_HAS("<memory>: file is 0 bytes, too short");
  ck_assert_int_eq(strop_model_load_weights_mem(m, bytes, len - 1, 0, &r), STROP_E_FORMAT);
  ck_assert_ptr_null(r);
  int64_t in = 4;
  strop_model *open_model = NULL;
  ck_assert_int_eq(strop_model_create(1, &in, &open_model), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights_mem(open_model, bytes, len, 0, NULL), STROP_E_STATE);
  ERR_HAS("not finalized");
  strop_model_free(open_model);
  ck_assert_int_eq(strop__alloc_live(), live);
  free(bytes);
  strop_model_free(m);
}
END_TEST

typedef struct mem_ctx {
  strop_model *m;
  const char *data;
  size_t len;
  int flags;
} mem_ctx;

static int op_load_mem(void *ctx) {
  mem_ctx *c = ctx;
  strop_load_report *r = NULL;
  int st = strop_model_load_weights_mem(c->m, c->data, c->len, c->flags, &r);
  strop_load_report_free(r);
  return st;
}

START_TEST(weights_mem_alloc_sweep) {
  strop_model *src = net(3, NULL);
  ck_assert_int_eq(strop_model_set_meta(src, "classes", "[1, 2, 3]"), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(src, "input.scale", "0.5"), STROP_OK);
  const char *p = tmp_path("sweep.safetensors");
  ck_assert_int_eq(strop_model_save_weights(src, p), STROP_OK);
  size_t len = 0;
  char *bytes = strop_test_read_file(p, &len);
  strop_model *m = net(3, NULL);
  /* as many entries as the file has, so a success leaves as many allocations live */
  ck_assert_int_eq(strop_model_set_meta(m, "classes", "[0]"), STROP_OK);
  ck_assert_int_eq(strop_model_set_meta(m, "input.scale", "1"), STROP_OK);
  mem_ctx c = {m, bytes, len, STROP_LOAD_STRICT};
  ck_assert_int_gt(strop_test_alloc_sweep(op_load_mem, NULL, &c), 5);
  ck_assert_str_eq(meta_str(m, "classes"), "[1, 2, 3]");
  ck_assert_int_eq(strop_model_meta_count(m), 2);
  c.flags = STROP_LOAD_PARTIAL;
  ck_assert_int_gt(strop_test_alloc_sweep(op_load_mem, NULL, &c), 5);
  free(bytes);
  strop_model_free(m);
  strop_model_free(src);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* atomic writes                                                                          */
/* ------------------------------------------------------------------------------------ */

START_TEST(non_regular_files_refused) {
  /* model, spec and recipe paths: a FIFO is refused at once, not waited on */
  const char *fifo = tmp_path("model.fifo");
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  strop_st_file *f = NULL;
  ck_assert_int_eq(strop_st_file_open(fifo, &f), STROP_E_IO);
  ERR_HAS("model.fifo is a FIFO (named pipe); give a regular file");
  strop_model *m = net(3, NULL);
  ck_assert_int_eq(strop_model_load_weights(m, fifo, 0, NULL), STROP_E_IO);
  ERR_HAS("is a FIFO");
  strop_model_free(m);
  m = NULL;
  ck_assert_int_eq(strop_model_load_spec(fifo, &m), STROP_E_IO);
  ERR_HAS("is a FIFO");
  strop_recipe *r = NULL;
  ck_assert_int_eq(strop_recipe_load(fifo, &r), STROP_E_IO);
  ERR_HAS("is a FIFO");
  ck_assert_int_eq(strop_st_file_open(g_dir, &f), STROP_E_IO);
  ERR_HAS("is a folder");
  unlink(fifo);
}
END_TEST

/* A write failure after K bytes leaves the old file intact and no temporary file. */
START_TEST(atomic_write_failure_keeps_old_file) {
  strop_model *m = net(3, NULL);
  const char *p = tmp_path("model.safetensors");
  ck_assert_int_eq(strop_model_save_weights(m, p), STROP_OK);
  size_t n_old = 0;
  char *old = strop_test_read_file(p, &n_old);
  ck_assert_ptr_nonnull(old);
  strop__model_param_find(m, "head.weight")->data[0] += 1.0f;
  static const int64_t ks[] = {0, 7, 8, 100, 1000};
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
    strop__afile_fail_after(ks[i]);
    int st = strop_model_save_weights(m, p);
    strop__afile_fail_after(-1);
    ck_assert_int_eq(st, STROP_E_IO);
    ERR_HAS("injected write failure");
    size_t n_now = 0;
    char *now = strop_test_read_file(p, &n_now);
    ck_assert(now && n_now == n_old && memcmp(now, old, n_old) == 0);
    free(now);
    ck_assert_int_eq(count_temp_files(), 0);
  }
  ck_assert_int_eq(strop_model_save_weights(m, p), STROP_OK);
  size_t n_new = 0;
  char *now = strop_test_read_file(p, &n_new);
  ck_assert(n_new == n_old && memcmp(now, old, n_old) != 0);
  free(now);
  free(old);
  strop_model_free(m);
}
END_TEST

START_TEST(atomic_small_helpers) {
  const char *p = tmp_path("a.txt");
  ck_assert_int_eq(strop__write_file_atomic("t", p, "hello", 5), STROP_OK);
  char *s = NULL;
  size_t n = 0;
  ck_assert_int_eq(strop__read_file("t", p, 100, &s, &n), STROP_OK);
  ck_assert_str_eq(s, "hello");
  strop__free(s);
  ck_assert_int_eq(strop__read_file("t", p, 3, &s, &n), STROP_E_FORMAT);
  ck_assert_int_eq(strop__read_file("t", g_dir, 100, &s, &n), STROP_E_IO);
  ck_assert_int_eq(strop__write_file_atomic("t", "", "x", 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(count_temp_files(), 0);
}
END_TEST

/* A write to a symbolic link replaces the file it names (the link stays), with that file's
 * permissions; a write to a device, a pipe or a folder is refused and leaves it as it was
 * (a save "to /dev/full" reported success and left a regular file in the device's place). */
START_TEST(atomic_targets_links_and_nodes) {
  const char *target = tmp_path("real.bin");
  char link[4096], fifo[4096];
  snprintf(link, sizeof link, "%s", tmp_path("link.bin"));
  snprintf(fifo, sizeof fifo, "%s", tmp_path("pipe"));
  ck_assert_int_eq(strop__write_file_atomic("t", target, "old", 3), STROP_OK);
  ck_assert_int_eq(chmod(target, 0600), 0);
  ck_assert_int_eq(symlink("real.bin", link), 0);
  ck_assert_int_eq(strop__write_file_atomic("t", link, "new!", 4), STROP_OK);
  struct stat sb;
  ck_assert_int_eq(lstat(link, &sb), 0);
  ck_assert(S_ISLNK(sb.st_mode));
  ck_assert_int_eq(stat(target, &sb), 0);
  ck_assert_int_eq((int)(sb.st_mode & 0777), 0600);
  ck_assert_int_eq((int)sb.st_size, 4);
  unlink(target); /* now a link to nothing: refused, naming the link */
  ck_assert_int_eq(strop__write_file_atomic("t", link, "x", 1), STROP_E_IO);
  ERR_HAS("is a symbolic link to a missing file");
  ck_assert_int_eq(lstat(link, &sb), 0);
  ck_assert(S_ISLNK(sb.st_mode));
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  ck_assert_int_eq(strop__write_file_atomic("t", fifo, "x", 1), STROP_E_IO);
  ERR_HAS("is a pipe");
  ck_assert_int_eq(lstat(fifo, &sb), 0);
  ck_assert(S_ISFIFO(sb.st_mode));
  ck_assert_int_eq(strop__write_file_atomic("t", g_dir, "x", 1), STROP_E_IO);
  ERR_HAS("is a folder");
  ck_assert_int_eq(strop__write_file_atomic("t", "/dev/null", "x", 1), STROP_E_IO);
  ERR_HAS("'/dev/null' is a device");
  ck_assert_int_eq(lstat("/dev/null", &sb), 0);
  ck_assert(S_ISCHR(sb.st_mode));
  ck_assert_int_eq(count_temp_files(), 0);
  unlink(link);
  unlink(fifo);
}
END_TEST

/* A writer killed mid-write (kill -9) leaves its temporary; the next write to the same target
 * removes it, and never the temporary of a writer that still runs. */
START_TEST(atomic_stale_temporaries_removed) {
  const char *p = tmp_path("ck.safetensors");
  ck_assert_int_eq(strop__write_file_atomic("t", p, "old", 3), STROP_OK);
  for (int k = 0; k < 3; k++) {
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
      strop__afile f;
      if (strop__afile_open(&f, "t", p) != STROP_OK) _exit(2);
      static char block[1 << 16];
      (void)strop__afile_write(&f, block, sizeof block);
      raise(SIGKILL); /* dies with its temporary half written */
      _exit(3);
    }
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(count_temp_files(), 1); /* each writer removed its dead predecessor's */
  }
  ck_assert_int_eq(strop__write_file_atomic("t", p, "new", 3), STROP_OK);
  ck_assert_int_eq(count_temp_files(), 0);
  char *now = strop_test_read_file(p, NULL);
  ck_assert_str_eq(now, "new");
  free(now);

  /* a live writer in another process keeps its temporary through our write */
  int go[2], done[2];
  ck_assert_int_eq(pipe(go), 0);
  ck_assert_int_eq(pipe(done), 0);
  pid_t child = fork();
  ck_assert_int_ge(child, 0);
  if (child == 0) {
    strop__afile f;
    char c = 0;
    if (strop__afile_open(&f, "t", p) != STROP_OK || strop__afile_write(&f, "live", 4)) _exit(2);
    if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1) _exit(3);
    _exit(strop__afile_commit(&f) == STROP_OK ? 0 : 4);
  }
  char c;
  ck_assert_int_eq(read(go[0], &c, 1), 1);
  ck_assert_int_eq(strop__write_file_atomic("t", p, "mine", 4), STROP_OK);
  ck_assert_int_eq(count_temp_files(), 1);
  ck_assert_int_eq(write(done[1], &c, 1), 1);
  int status;
  ck_assert_int_eq(waitpid(child, &status, 0), child);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  now = strop_test_read_file(p, NULL);
  ck_assert_str_eq(now, "live"); /* the live writer's rename came last */
  free(now);
  close(go[0]);
  close(go[1]);
  close(done[0]);
  close(done[1]);

  /* planted temporaries: a dead pid goes; pid 1 (alive), another target's and odd names stay */
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ck_assert_int_eq(waitpid(dead, &status, 0), dead);
  char planted[600];
  const char *keep[] = {"ck.safetensors.tmp.1.0", "other.safetensors.tmp.%ld.0",
                        "ck.safetensors.tmp.%ldx.0", "ck.safetensors.tmp.%ld."};
  snprintf(planted, sizeof planted, "%s/ck.safetensors.tmp.%ld.7", g_dir, (long)dead);
  ck_assert_int_eq(strop__write_file_atomic("t", planted, "x", 1), STROP_OK);
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
    char name[128];
    snprintf(name, sizeof name, keep[i], (long)dead);
    snprintf(planted, sizeof planted, "%s/%s", g_dir, name);
    ck_assert_int_eq(strop__write_file_atomic("t", planted, "x", 1), STROP_OK);
  }
  ck_assert_int_eq(count_temp_files(), 5);
  ck_assert_int_eq(strop__write_file_atomic("t", p, "again", 5), STROP_OK);
  ck_assert_int_eq(count_temp_files(), 4);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* checkpoints                                                                            */
/* ------------------------------------------------------------------------------------ */

START_TEST(ckpt_roundtrip) {
  strop_model *m = net(3, NULL);
  ck_assert_int_eq(strop_model_load_weights(m, FX("torch_f32.safetensors"), 0, NULL), STROP_OK);
  for (int i = 0; i < 5; i++) (void)strop__rng_u32(&m->rng);
  const char *p = tmp_path("ckpt.safetensors");
  strop__ckpt_writer *w = NULL;
  ck_assert_int_eq(strop__ckpt_writer_begin("t", p, &w), STROP_OK);
  ck_assert_int_eq(strop__ckpt_add_model(w, m), STROP_OK);
  float slot[3] = {0.5f, -1, 2};
  int64_t three = 3, perm[4] = {3, 1, 0, 2}, four = 4;
  ck_assert_int_eq(strop__ckpt_add_f32_copy(w, "optim.head.bias.exp_avg", 1, &three, slot),
                   STROP_OK);
  ck_assert_int_eq(strop__ckpt_add_i64(w, "data.order", 1, &four, perm), STROP_OK);
  ck_assert_int_eq(strop__ckpt_add_u64(w, "train.step", UINT64_MAX - 1), STROP_OK);
  strop__rng dr;
  strop__rng_seed(&dr, 99, 3);
  ck_assert_int_eq(strop__ckpt_add_rng(w, "rng.data", &dr), STROP_OK);
  ck_assert_int_eq(strop__ckpt_set_meta(w, "optimizer", "adamw"), STROP_OK);
  ck_assert_int_eq(strop__ckpt_commit(w), STROP_OK);
  ck_assert_int_eq(count_temp_files(), 0);

  strop__ckpt *c = NULL;
  ck_assert_int_eq(strop__ckpt_open("t", p, &c), STROP_OK);
  ck_assert_str_eq(strop__ckpt_meta(c, "format"), "strop-checkpoint");
  ck_assert_str_eq(strop__ckpt_meta(c, "optimizer"), "adamw");
  float s2[3];
  ck_assert_int_eq(strop__ckpt_read_f32("t", c, "optim.head.bias.exp_avg", s2, 3), STROP_OK);
  ck_assert(memcmp(s2, slot, sizeof slot) == 0);
  ck_assert_int_eq(strop__ckpt_read_f32("t", c, "optim.head.bias.exp_avg", s2, 2), STROP_E_SHAPE);
  ck_assert_int_eq(strop__ckpt_read_f32("t", c, "optim.nope", s2, 3), STROP_E_NOT_FOUND);
  ERR_HAS("checkpoint has no tensor 'optim.nope'");
  ck_assert_int_eq(strop__ckpt_read_f32("t", c, "data.order", s2, 4), STROP_E_FORMAT);
  int64_t p2[4];
  ck_assert_int_eq(strop__ckpt_read_i64("t", c, "data.order", p2, 4), STROP_OK);
  ck_assert(memcmp(p2, perm, sizeof perm) == 0);
  uint64_t step = 0;
  ck_assert_int_eq(strop__ckpt_read_u64("t", c, "train.step", &step), STROP_OK);
  ck_assert(step == UINT64_MAX - 1);
  strop__rng dr2;
  ck_assert_int_eq(strop__ckpt_read_rng("t", c, "rng.data", &dr2), STROP_OK);
  ck_assert(dr2.state == dr.state && dr2.inc == dr.inc);

  strop_model *b = net(3, NULL);
  ck_assert_int_eq(strop__ckpt_load_model("t", c, b), STROP_OK);
  ck_assert(b->rng.state == m->rng.state && b->rng.inc == m->rng.inc);
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->data)
      ck_assert(memcmp(m->params[i]->data, b->params[i]->data, m->params[i]->numel * 4) == 0);
  strop_model_free(b);
  /* a model that does not fit: strict, unchanged */
  b = net(5, NULL);
  strop__rng before = b->rng;
  ck_assert_int_eq(strop__ckpt_load_model("t", c, b), STROP_E_SHAPE);
  ck_assert(b->rng.state == before.state);
  strop_model_free(b);
  strop__ckpt_close(c);

  /* a weights file is not a checkpoint */
  ck_assert_int_eq(strop__ckpt_open("t", FX("torch_f32.safetensors"), &c), STROP_E_FORMAT);
  ERR_HAS("not a strop checkpoint (metadata \"format\" is \"pt\"");
  ck_assert_ptr_null(c);

  /* a failing commit keeps the old checkpoint */
  size_t n_old;
  char *old = strop_test_read_file(p, &n_old);
  ck_assert_int_eq(strop__ckpt_writer_begin("t", p, &w), STROP_OK);
  ck_assert_int_eq(strop__ckpt_add_model(w, m), STROP_OK);
  strop__afile_fail_after(200);
  ck_assert_int_eq(strop__ckpt_commit(w), STROP_E_IO);
  strop__afile_fail_after(-1);
  size_t n_now;
  char *now = strop_test_read_file(p, &n_now);
  ck_assert(n_now == n_old && memcmp(now, old, n_old) == 0);
  ck_assert_int_eq(count_temp_files(), 0);
  free(now);
  free(old);
  ck_assert_int_eq(strop__ckpt_writer_begin("t", p, &w), STROP_OK);
  strop__ckpt_abort(w);
  strop__ckpt_abort(NULL);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* YAML specs                                                                             */
/* ------------------------------------------------------------------------------------ */

static char *spec_of(const strop_model *m) {
  int64_t n = strop_model_spec_string(m, NULL, 0);
  ck_assert_msg(n > 0, "%s", strop_last_error());
  char *s = malloc((size_t)n + 1);
  ck_assert_int_eq(strop_model_spec_string(m, s, (size_t)n + 1), n);
  return s;
}

static const char *k_dag_spec =
    "# a small residual network\n"
    "input: [3, 8, 8]\n"
    "seed: 12345678901234\n"
    "layers:\n"
    "  - name: stem\n"
    "    type: conv2d\n"
    "    in_channels: 3\n"
    "    out_channels: 8\n"
    "    kernel_size: [3, 3]\n"
    "    padding: 1\n"
    "    bias: false\n"
    "  - {name: stem_bn, type: batchnorm2d, num_features: 8, momentum: 0.2}\n"
    "  - {name: stem_act, type: relu}\n"
    "  - {name: branch, type: conv2d, in_channels: 8, out_channels: 8, kernel_size: 3,"
    " padding: 1, groups: 8}\n"
    "  - {name: branch_act, type: gelu, approximate: tanh}\n"
    "  - name: res\n"
    "    type: add\n"
    "    inputs: [stem_act, branch_act]\n"
    "  - {name: pool, type: maxpool2d, kernel_size: 2}\n"
    "  - {name: gap, type: global_avgpool}\n"
    "  - {name: flat, type: flatten}\n"
    "  - {name: drop, type: dropout, p: 0.25}\n"
    "  - {name: head, type: linear, in_features: 8, out_features: 5}\n";

START_TEST(spec_roundtrip) {
  strop_model *a = NULL, *b = NULL;
  int st = strop_model_load_spec_string(k_dag_spec, &a);
  ck_assert_msg(st == STROP_OK, "%s", strop_last_error());
  ck_assert_int_eq(strop_model_num_nodes(a), 11);
  ck_assert(a->seed == 12345678901234ull);
  int64_t d[8];
  ck_assert_int_eq(strop_model_output_shape(a, d, 8), 1);
  ck_assert_int_eq(d[0], 5);
  char *s1 = spec_of(a);
  ck_assert_ptr_nonnull(strstr(s1, "inputs: [stem_act, branch_act]"));
  ck_assert_ptr_nonnull(strstr(s1, "approximate: tanh"));
  const char *p = tmp_path("model.yaml");
  ck_assert_int_eq(strop_model_save_spec(a, p), STROP_OK);
  st = strop_model_load_spec(p, &b);
  ck_assert_msg(st == STROP_OK, "%s\n%s", strop_last_error(), s1);
  char *s2 = spec_of(b);
  ck_assert_str_eq(s1, s2);
  ck_assert_int_eq(strop_model_num_tensors(a), strop_model_num_tensors(b));
  for (int i = 0; i < a->n_params; i++) {
    ck_assert_str_eq(a->params[i]->name, b->params[i]->name);
    ck_assert_int_eq(a->params[i]->numel, b->params[i]->numel);
    if (a->params[i]->data) /* same seed: same initial weights */
      ck_assert(memcmp(a->params[i]->data, b->params[i]->data, a->params[i]->numel * 4) == 0);
  }
  for (int i = 0; i < a->n_nodes; i++) {
    ck_assert_str_eq(a->nodes[i].name, b->nodes[i].name);
    ck_assert(a->nodes[i].vt == b->nodes[i].vt);
    ck_assert_int_eq(a->nodes[i].out_shape.rank, b->nodes[i].out_shape.rank);
  }
  /* snprintf semantics */
  char small[10];
  int64_t n = strop_model_spec_string(a, small, sizeof small);
  ck_assert_int_eq(n, (int64_t)strlen(s1));
  ck_assert_int_eq(strlen(small), 9);
  ck_assert_int_eq(strop_model_spec_string(NULL, small, sizeof small), -1);
  ck_assert_int_eq(strop_model_spec_string(a, NULL, 5), -1);
  free(s1);
  free(s2);
  strop_model_free(a);
  strop_model_free(b);
  ck_assert_int_eq(count_temp_files(), 0);
}
END_TEST

/* Every registered layer type saves and reloads with its options. */
START_TEST(spec_roundtrip_all_types) {
  const char *spec =
      "input: [16]\n"
      "layers:\n"
      "  - {name: emb, type: embedding, num_embeddings: 50, embedding_dim: 8}\n"
      "  - {name: pos, type: positional_embedding, num_embeddings: 16, embedding_dim: 8}\n"
      "  - {name: ln, type: layernorm, normalized_shape: 8}\n"
      "  - {name: attn, type: multihead_attention, embed_dim: 8, num_heads: 2, causal: true}\n"
      "  - {name: res, type: add, inputs: [pos, attn]}\n"
      "  - {name: act1, type: silu}\n"
      "  - {name: act2, type: leaky_relu, negative_slope: 0.1}\n"
      "  - {name: act3, type: tanh}\n"
      "  - {name: act4, type: sigmoid}\n"
      "  - {name: pool, type: mean_pool}\n"
      "  - {name: fc, type: linear, in_features: 8, out_features: 6}\n"
      "  - {name: bn, type: batchnorm1d, num_features: 6}\n"
      "  - {name: rs, type: reshape, shape: [2, 3]}\n"
      "  - {name: cat, type: concat, inputs: [rs, rs], dim: 1}\n"
      "  - {name: fl, type: flatten}\n"
      "  - {name: sm, type: log_softmax}\n";
  strop_model *a = NULL, *b = NULL;
  int st = strop_model_load_spec_string(spec, &a);
  ck_assert_msg(st == STROP_OK, "%s", strop_last_error());
  char *s1 = spec_of(a);
  st = strop_model_load_spec_string(s1, &b);
  ck_assert_msg(st == STROP_OK, "%s\n%s", strop_last_error(), s1);
  char *s2 = spec_of(b);
  ck_assert_str_eq(s1, s2);
  free(s1);
  free(s2);
  strop_model_free(a);
  strop_model_free(b);
}
END_TEST

/* Errors name the file, line and column and what was expected. */
static const struct {
  const char *yaml;
  int status;
  const char *msg;
} g_spec_errors[] = {
    {"input: [4]\nlayers:\n  - name: head\n    type: linear\n    in_features: 4\n"
     "    out_feature: 2\n",
     STROP_E_INVALID_ARG,
     "<string>:6:5: layer 'head' (linear): option 'out_feature': unknown "
     "option (expected one of: in_features, out_features, bias, weight_layout)"},
    {"input: [4]\nlayers:\n  - {name: head, type: linear, in_features: 4, out_features: -3}\n",
     STROP_E_INVALID_ARG, "<string>:3:"},
    {"input: [4]\nlayers:\n  - name: x\n    type: linearr\n", STROP_E_NOT_FOUND,
     "<string>:4:11: layer 'x': unknown type 'linearr'"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu}\n  - {name: a, type: relu}\n",
     STROP_E_INVALID_ARG, "<string>:4:5: a node named 'a' already exists"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu, inputs: [nope]}\n", STROP_E_NOT_FOUND,
     "<string>: layer 'a': unknown input 'nope'"},
    {"input: [4]\nlayers:\n  - {name: a, type: linear, in_features: 5, out_features: 2}\n",
     STROP_E_SHAPE, "<string>: "},
    {"layers:\n  - {name: a, type: relu}\n", STROP_E_FORMAT, "<string>:1:1: missing 'input'"},
    {"input: [4, -1]\nlayers:\n  - {name: a, type: relu}\n", STROP_E_FORMAT,
     "<string>:1:12: input[1] must be a positive integer, found '-1'"},
    {"input: 4\nlayers:\n  - {name: a, type: relu}\n", STROP_E_FORMAT,
     "<string>:1:8: 'input' must be a list"},
    {"input: [4]\nlayer:\n  - {name: a, type: relu}\n", STROP_E_FORMAT,
     "<string>:2:1: unknown key 'layer' (expected one of: input, seed, layers)"},
    {"input: [4]\nlayers: []\n", STROP_E_FORMAT, "'layers' must be a non-empty list"},
    {"input: [4]\nseed: -1\nlayers:\n  - {name: a, type: relu}\n", STROP_E_FORMAT,
     "<string>:2:7: 'seed' must be a non-negative integer"},
    {"input: [4]\nlayers:\n  - {type: relu}\n", STROP_E_FORMAT, "layers[0]: 'name' is missing"},
    {"input: [4]\nlayers:\n  - {name: a}\n", STROP_E_FORMAT, "layer 'a': 'type' is missing"},
    {"input: [4]\nlayers:\n  - relu\n", STROP_E_FORMAT,
     "<string>:3:5: layers[0] must be a mapping"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu, x: {y: 1}}\n", STROP_E_FORMAT,
     "option 'x' must be a scalar or a list, found a mapping"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu, x: ~}\n", STROP_E_FORMAT,
     "option 'x' has no value"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu, x: [[1]]}\n", STROP_E_FORMAT,
     "list entries must be scalars"},
    {"input: [4]\ninput: [5]\nlayers:\n  - {name: a, type: relu}\n", STROP_E_FORMAT,
     "<string>:2:1: spec: key 'input' appears twice (first at line 1)"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu, name: b}\n", STROP_E_FORMAT,
     "key 'name' appears twice"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu\n", STROP_E_FORMAT, "<string>:4:1: "},
    {"input: [4]\nlayers:\n\t- {name: a, type: relu}\n", STROP_E_FORMAT, "<string>:3:1: "},
    {"", STROP_E_FORMAT, "found an empty document"},
    {"[1, 2]", STROP_E_FORMAT, "a spec is a mapping"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu}\n---\ninput: [4]\n", STROP_E_FORMAT,
     "<string>:4:1: expected one YAML document; found a second"},
    {"input: &x [4]\nlayers:\n  - {name: a, type: relu, p: *x}\n", STROP_E_FORMAT,
     "<string>:3:30: YAML aliases (*x) are not allowed"},
    {"input: [4]\nlayers:\n  - {name: a, type: relu, p: \"\xff\"}\n", STROP_E_FORMAT,
     "not valid UTF-8"},
    {"input: [4]\nlayers:\n  - {name: \"a\\0b\", type: relu}\n", STROP_E_FORMAT,
     "<string>:3:12: a scalar holds a NUL byte (\\0) at offset 1"},
};

START_TEST(spec_errors) {
  int64_t live = strop__alloc_live();
  strop_model *m = (strop_model *)1;
  strop_clear_error();
  int st = strop_model_load_spec_string(g_spec_errors[_i].yaml, &m);
  ck_assert_msg(st == g_spec_errors[_i].status, "case %d: status %d: %s", _i, st,
                strop_last_error());
  ck_assert_ptr_null(m);
  ERR_HAS("strop_model_load_spec_string: ");
  ERR_HAS(g_spec_errors[_i].msg);
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

START_TEST(spec_file_errors_name_the_file) {
  const char *p = tmp_path("bad.yaml");
  const char *y = "input: [4]\nlayers:\n  - name: head\n    type: linear\n    in_features: 4\n"
                  "    out_feature: 2\n";
  ck_assert_int_eq(strop__write_file_atomic("t", p, y, strlen(y)), STROP_OK);
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_load_spec(p, &m), STROP_E_INVALID_ARG);
  char want[512];
  snprintf(want, sizeof want, "strop_model_load_spec: %s:6:5: layer 'head'", p);
  ERR_HAS(want);
  ck_assert_int_eq(strop_model_load_spec(tmp_path("none.yaml"), &m), STROP_E_IO);
  ERR_HAS("none.yaml");
  ck_assert_int_eq(strop_model_load_spec(NULL, &m), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_load_spec(p, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_load_spec_string(NULL, &m), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_save_spec(NULL, p), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_save_spec((strop_model *)1, NULL), STROP_E_INVALID_ARG);
}
END_TEST

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Billion laughs, deep nesting, huge scalars, node floods: fast, clean failures. */
START_TEST(spec_hostile) {
  char *y = malloc(1 << 22);
  strop_model *m = NULL;
  /* billion laughs */
  size_t n = (size_t)sprintf(y, "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
  for (int i = 1; i < 10; i++)
    n += (size_t)sprintf(y + n, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n",
                         'a' + i, 'a' + i, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1,
                         'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1);
  double t0 = now_s();
  ck_assert_int_eq(strop_model_load_spec_string(y, &m), STROP_E_FORMAT);
  ERR_HAS("aliases");
  ck_assert(now_s() - t0 < 0.5);
  /* deep nesting, flow and block */
  n = (size_t)sprintf(y, "input: ");
  for (int i = 0; i < 100000; i++) y[n++] = '[';
  y[n] = '\0';
  t0 = now_s();
  ck_assert_int_eq(strop_model_load_spec_string(y, &m), STROP_E_FORMAT);
  ERR_HAS("nesting deeper than 32 levels");
  n = 0;
  for (int i = 0; i < 40; i++) n += (size_t)sprintf(y + n, "%*sk%d:\n", 2 * i, "", i);
  ck_assert_int_eq(strop_model_load_spec_string(y, &m), STROP_E_FORMAT);
  ERR_HAS("nesting deeper than 32 levels");
  /* a huge scalar */
  n = (size_t)sprintf(y, "input: [4]\nlayers:\n  - {name: a, type: relu, x: ");
  memset(y + n, 'x', 100000);
  strcpy(y + n + 100000, "}\n");
  ck_assert_int_eq(strop_model_load_spec_string(y, &m), STROP_E_FORMAT);
  ERR_HAS("a scalar of 100000 bytes exceeds the limit of 4096");
  /* a flood of nodes */
  n = (size_t)sprintf(y, "input: [");
  for (int i = 0; i < 300000; i++) n += (size_t)sprintf(y + n, "1,");
  strcpy(y + n, "1]\n");
  ck_assert_int_eq(strop_model_load_spec_string(y, &m), STROP_E_FORMAT);
  ERR_HAS("more than 200000 YAML nodes");
  /* a mapping with many keys */
  n = (size_t)sprintf(y, "input: [4]\nlayers:\n  - {name: a, type: relu");
  for (int i = 0; i < 1000; i++) n += (size_t)sprintf(y + n, ", k%d: 1", i);
  strcpy(y + n, "}\n");
  ck_assert_int_eq(strop_model_load_spec_string(y, &m), STROP_E_FORMAT);
  ERR_HAS("at most 256");
  ck_assert(now_s() - t0 < 5.0);
  free(y);
}
END_TEST

/* Every YAML example in docs/formats.md loads, and saves back to an equivalent spec. */
START_TEST(spec_docs_examples_load) {
  size_t len = 0;
  char *doc = strop_test_read_file(STROP_SOURCE_DIR "/docs/formats.md", &len);
  ck_assert_ptr_nonnull(doc);
  int n = 0;
  for (char *p = strstr(doc, "```yaml\n"); p; p = strstr(p, "```yaml\n")) {
    p += 8;
    char *end = strstr(p, "```");
    ck_assert_ptr_nonnull(end);
    *end = '\0';
    strop_model *m = NULL, *b = NULL;
    int st = strop_model_load_spec_string(p, &m);
    ck_assert_msg(st == STROP_OK, "docs example %d:\n%s\n%s", n, p, strop_last_error());
    char *s1 = spec_of(m);
    ck_assert_int_eq(strop_model_load_spec_string(s1, &b), STROP_OK);
    free(s1);
    strop_model_free(m);
    strop_model_free(b);
    n++;
    p = end + 3;
  }
  ck_assert_int_ge(n, 8);
  free(doc);
}
END_TEST

static int op_spec(void *ctx) {
  strop_model *m = NULL;
  int st = strop_model_load_spec_string((const char *)ctx, &m);
  if (st == STROP_OK) {
    int64_t n = strop_model_spec_string(m, NULL, 0);
    if (n < 0) st = STROP_E_NOMEM;
  }
  strop_model_free(m);
  return st;
}

START_TEST(spec_alloc_sweep) {
  ck_assert_int_gt(strop_test_alloc_sweep(op_spec, NULL, (void *)k_dag_spec), 10);
}
END_TEST

/* A DEBUG log handler hears each model file read and written, with its path. */
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

START_TEST(debug_log_tells_loads_and_saves) {
  strop_model *m = net(3, NULL), *m2 = NULL;
  const char *spec = tmp_path("dbg.yaml");
  char weights[1024];
  snprintf(weights, sizeof weights, "%s", tmp_path("dbg.safetensors"));
  ck_assert_int_eq(strop_model_save_spec(m, spec), STROP_OK);
  dbg_sink sink = {0, ""};
  strop_set_log_handler(dbg_record, STROP_LOG_DEBUG, &sink);
  ck_assert_int_eq(strop_model_save_weights(m, weights), STROP_OK);
  ck_assert_int_eq(strop_model_load_spec(spec, &m2), STROP_OK);
  ck_assert_int_eq(strop_model_load_weights(m2, weights, STROP_LOAD_STRICT, NULL), STROP_OK);
  strop_set_log_handler(NULL, 0, NULL);
  ck_assert_int_ge(sink.n, 3);
  ck_assert_msg(strstr(sink.text, "strop_model_save_weights") &&
                    strstr(sink.text, "strop_model_load_spec") &&
                    strstr(sink.text, "strop_model_load_weights") &&
                    strstr(sink.text, "dbg.yaml") && strstr(sink.text, "dbg.safetensors"),
                "the DEBUG log says:\n%s", sink.text);
  /* an INFO handler hears none of it */
  sink.n = 0;
  strop_set_log_handler(dbg_record, STROP_LOG_INFO, &sink);
  ck_assert_int_eq(strop_model_load_weights(m2, weights, STROP_LOAD_STRICT, NULL), STROP_OK);
  strop_set_log_handler(NULL, 0, NULL);
  ck_assert_int_eq(sink.n, 0);
  strop_model_free(m2);
  strop_model_free(m);
}
END_TEST

/* ---- frozen weights borrowed from the mapped file (STROP_LOAD_MMAP) ---- */

static const int64_t MM_IN[1] = {32};

/* fc1 [256, 32], fc2 [32, 256], head [4, 32]: fc* frozen when frozen is 1 */
static strop_model *mm_model(uint64_t seed, int frozen) {
  const strop_test_node nodes[] = {
      {"fc1", "linear", "out_features=256", NULL},
      {"act", "gelu", NULL, NULL},
      {"fc2", "linear", "out_features=32", NULL},
      {"head", "linear", "out_features=4", NULL},
  };
  strop_model *m = strop_test_build(1, MM_IN, nodes, 4, seed);
  if (frozen) strop_test_must(strop_model_freeze(m, "fc*"), "freeze");
  return m;
}

/* n values of the tensor name (owned by the model: viewing a borrowed one copies it) */
static void mm_get(strop_model *m, const char *name, float *out, size_t n) {
  strop_tensor *v = NULL;
  strop_test_must(strop_model_tensor_view(m, name, &v), "view");
  ck_assert_int_eq(strop_tensor_numel(v), (int64_t)n);
  memcpy(out, strop_tensor_data(v), n * sizeof *out);
  strop_tensor_free(v);
}

static const size_t MM_FC_BYTES = (256 * 32 + 256 + 32 * 256 + 32) * sizeof(float);

static strop_tensor *mm_forward(strop_model *m) {
  float x[3 * 32];
  for (int i = 0; i < 3 * 32; i++) x[i] = (float)sin(0.37 * i);
  const int64_t d[2] = {3, 32};
  strop_tensor *in = NULL, *out = NULL;
  strop_test_must(strop_tensor_from_data(x, 3 * 32, 2, d, &in), "input");
  strop_test_must(strop_model_forward(m, in, &out), "forward");
  strop_tensor_free(in);
  return out;
}

static void mm_same(strop_model *a, strop_model *b) {
  strop_tensor *x = mm_forward(a), *y = mm_forward(b);
  ck_assert_mem_eq(strop_tensor_data(x), strop_tensor_data(y), 3 * 4 * sizeof(float));
  strop_tensor_free(x);
  strop_tensor_free(y);
}

/* A model frozen on fc* whose frozen weights come from the mapped file at path. */
static strop_model *mm_loaded(const char *path, int64_t *borrowed) {
  strop_model *m = mm_model(99, 1);
  const int64_t b0 = strop__mapping_borrowed_bytes(), c0 = strop__mapping_copied_bytes();
  strop_test_must(strop_model_load_weights(m, path, STROP_LOAD_MMAP, NULL), "mmap load");
  ck_assert_int_eq(strop__mapping_copied_bytes(), c0);
  if (borrowed) *borrowed = strop__mapping_borrowed_bytes() - b0;
  return m;
}

START_TEST(mmap_borrows_frozen_weights) {
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", g_dir);
  strop_model *src = mm_model(1, 0);
  strop_test_must(strop_model_save_weights(src, path), "save");
  int64_t borrowed = 0;
  strop_model *m = mm_loaded(path, &borrowed);
  /* the frozen fc1, fc2 (weights and biases) point into the file; the trainable head does not */
  ck_assert_int_eq(borrowed, (int64_t)MM_FC_BYTES);
  strop__param *w = strop__model_param_find(m, "fc1.weight");
  ck_assert_ptr_nonnull(w->map);
  ck_assert_ptr_null(strop__model_param_find(m, "head.weight")->map);
  /* bit-identical to the copying path, also after the file is unlinked (the mapping stays) */
  strop_model *c = mm_model(99, 1);
  strop_test_must(strop_model_load_weights(c, path, STROP_LOAD_STRICT, NULL), "copy load");
  mm_same(m, c);
  unlink(path);
  mm_same(m, c);
  /* a clone borrows the same mapping (one more reference), and outlives the original */
  strop_model *k = NULL;
  strop_test_must(strop_model_clone(m, &k), "clone");
  ck_assert_ptr_eq(strop__model_param_find(k, "fc1.weight")->map, w->map);
  strop_model_free(m);
  mm_same(k, c);
  strop_model_free(k);
  strop_model_free(c);
  strop_model_free(src);
}
END_TEST

static int asan_build(void) {
#if defined(__SANITIZE_ADDRESS__)
  return 1;
#else
  return 0;
#endif
}

/* A line of this process's /proc/self/status in kB ("RssAnon", "RssFile"; Linux), or -1. */
static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  const size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, n) && line[n] == ':' && sscanf(line + n + 1, "%ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static long rss_anon_kb(void) { return status_kb("RssAnon"); }

START_TEST(mmap_frozen_base_not_resident) {
  /* AddressSanitizer keeps freed memory in quarantine: RSS says nothing there (the byte
   * counters of the other mmap tests still do) */
  if (getenv("STROP_SANITIZED") || asan_build()) return;
  /* a fixed threshold: glibc's adaptive one would keep a freed 16 MB block in the heap */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  /* 16 MB of frozen weights: a mapped load gives their owned memory back and takes none */
  char path[300];
  snprintf(path, sizeof path, "%s/big.safetensors", g_dir);
  const strop_test_node nodes[] = {{"fc", "linear", "out_features=2048", NULL},
                                   {"head", "linear", "out_features=4", NULL}};
  const int64_t in[1] = {2048};
  strop_model *src = strop_test_build(1, in, nodes, 2, 3);
  strop_test_must(strop_model_save_weights(src, path), "save");
  strop_model_free(src);
  const long kb = 2048L * 2048 * 4 / 1024;
  for (int mmap_on = 0; mmap_on < 2; mmap_on++) {
    strop_model *m = strop_test_build(1, in, nodes, 2, 4);
    strop_test_must(strop_model_freeze(m, "fc"), "freeze");
    const long before = rss_anon_kb();
    if (before < 0) {
      strop_model_free(m);
      return; /* no /proc: the counters of the other tests still hold */
    }
    strop_test_must(strop_model_load_weights(m, path, mmap_on ? STROP_LOAD_MMAP : 0, NULL),
                    "load");
    strop_tensor *t = NULL;
    float x[2048] = {0};
    const int64_t d[2] = {1, 2048};
    strop_tensor *o = NULL;
    strop_test_must(strop_tensor_from_data(x, 2048, 2, d, &t), "x");
    strop_test_must(strop_model_forward(m, t, &o), "forward"); /* every page read */
    const long after = rss_anon_kb();
    if (mmap_on) ck_assert_int_lt(after - before, -kb * 3 / 4); /* the owned copy went */
    else ck_assert_int_gt(after - before, -kb / 4);             /* it did not */
    strop_tensor_free(t);
    strop_tensor_free(o);
    strop_model_free(m);
  }
}
END_TEST

/* the mapped files' pages this process has mapped in, in kB, or -1 */
static long rss_file_kb(void) { return status_kb("RssFile"); }

/* A model computing in BF16 reads a frozen FP32 weight borrowed from the mapped file through
 * its BF16 copy only: the file's pages are handed back once the copy is made (a step held
 * both before, the FP32 base and its copy: GPT-2 LoRA's BF16 row 1010 MB against 556), and
 * come back, the same values, for whatever reads them after; the step's predicted peak counts
 * them out. */
START_TEST(mmap_bf16_copy_replaces_pages) {
  char path[300];
  snprintf(path, sizeof path, "%s/big16.safetensors", g_dir);
  const strop_test_node nodes[] = {{"fc", "linear", "out_features=2048", NULL},
                                   {"head", "linear", "out_features=4", NULL}};
  const int64_t in[1] = {2048}, d[2] = {2, 2048};
  strop_model *src = strop_test_build(1, in, nodes, 2, 3);
  strop_test_must(strop_model_save_weights(src, path), "save");
  strop_model_free(src);
  const long kb = 2048L * 2048 * 4 / 1024; /* fc.weight: 16 MB */
  float x[2 * 2048];
  for (int i = 0; i < 2 * 2048; i++) x[i] = (float)sin(0.01 * i);
  strop_tensor *t = NULL;
  strop_test_must(strop_tensor_from_data(x, 2 * 2048, 2, d, &t), "x");
  float out[2][8];
  size_t peak[2] = {0, 0};
  for (int mmap_on = 0; mmap_on < 2; mmap_on++) {
    strop_model *m = strop_test_build(1, in, nodes, 2, 4);
    strop_test_must(strop_model_freeze(m, "fc"), "freeze");
    strop_test_must(strop_model_set_compute_dtype(m, STROP_DTYPE_BF16), "bf16");
    strop_test_must(strop_model_load_weights(m, path, mmap_on ? STROP_LOAD_MMAP : 0, NULL),
                    "load");
    const long before = rss_file_kb();
    strop_tensor *o = NULL;
    strop_test_must(strop_model_forward(m, t, &o),
                    "forward"); /* the copy made: every page read */
    memcpy(out[mmap_on], strop_tensor_data(o), sizeof out[0]);
    strop_tensor_free(o);
    const long after = rss_file_kb();
    /* the file's pages went again (less than a quarter of them in RSS), as a forward in FP32
     * keeps them all */
    if (mmap_on && before >= 0) ck_assert_int_lt(after - before, kb / 4);
    const strop__param *w = strop__model_param_find(m, "fc.weight");
    /* the whole pages inside the weight (all but one where it does not start on a page) */
    ck_assert_uint_le(w->shadow_released, mmap_on ? (size_t)kb * 1024 : 0);
    ck_assert_uint_ge(w->shadow_released, mmap_on ? (size_t)kb * 1024 - 4096 : 0);
    strop_test_must(strop_model_step_memory(m, 2, NULL, 0, 2, NULL, &peak[mmap_on]), "plan");
    if (mmap_on) {
      /* the FP32 products read the pages again: the file's values, as a copied load's */
      strop_model *c = strop_test_build(1, in, nodes, 2, 4);
      strop_test_must(strop_model_load_weights(c, path, 0, NULL), "copy");
      strop_test_must(strop_model_set_compute_dtype(m, STROP_DTYPE_F32), "f32");
      ck_assert_uint_eq(w->shadow_released, 0);
      strop_test_must(strop_model_forward(m, t, &o), "fp32 forward"); /* pages read back */
      strop_tensor *q = NULL;
      strop_test_must(strop_model_forward(c, t, &q), "fp32 forward, copied");
      ck_assert_mem_eq(strop_tensor_data(o), strop_tensor_data(q), sizeof out[0]);
      if (before >= 0) ck_assert_int_gt(rss_file_kb() - before, kb * 3 / 4);
      strop_tensor_free(o);
      strop_tensor_free(q);
      strop_model_free(c);
    }
    strop_model_free(m);
  }
  /* bit for bit the copied load's BF16 output; the mapped pages out of the predicted peak */
  ck_assert_mem_eq(out[0], out[1], sizeof out[0]);
  ck_assert_uint_lt(peak[1] + (size_t)kb * 1024 * 3 / 4, peak[0]);
  strop_tensor_free(t);
  unlink(path);
}
END_TEST

/* Every path that writes a borrowed weight copies it out of the read-only mapping first (a
 * write into it would be a SIGSEGV), and the file is never changed. */
START_TEST(mmap_writes_copy_first) {
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", g_dir);
  strop_model *src = mm_model(1, 0);
  strop_test_must(strop_model_save_weights(src, path), "save");
  size_t len0 = 0;
  char *file0 = strop_test_read_file(path, &len0);
  float w0[32];
  mm_get(src, "fc2.bias", w0, 32);

  /* unfreeze + optimizer steps */
  strop_model *m = mm_loaded(path, NULL);
  int64_t c0 = strop__mapping_copied_bytes();
  strop_test_must(strop_model_unfreeze(m, "fc2"), "unfreeze");
  ck_assert_ptr_null(strop__model_param_find(m, "fc2.weight")->map);
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.weight")->map);
  ck_assert_int_eq(strop__mapping_copied_bytes() - c0, (int64_t)(32 * 256 + 32) * 4);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "opt");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  float x[3 * 32], y[3] = {0, 1, 2};
  for (int i = 0; i < 96; i++) x[i] = (float)cos(0.1 * i);
  const int64_t dx[2] = {3, 32}, dy[1] = {3};
  strop_tensor *tx = NULL, *ty = NULL;
  strop_test_must(strop_tensor_from_data(x, 96, 2, dx, &tx), "x");
  strop_test_must(strop_tensor_from_data(y, 3, 1, dy, &ty), "y");
  for (int i = 0; i < 2; i++) strop_test_must(strop_trainer_step(tr, tx, ty, NULL), "step");
  float w1[32];
  mm_get(m, "fc2.bias", w1, 32);
  ck_assert_int_ne(memcmp(w0, w1, sizeof w0), 0);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);

  /* set_tensor, tensor_view (writable), frozen dtype BF16 and back */
  ck_assert_int_eq(strop_model_set_tensor(m, "fc1.bias", w0, 32), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.bias")->map); /* refused: unchanged */
  float b[256];
  for (int i = 0; i < 256; i++) b[i] = (float)i;
  strop_test_must(strop_model_set_tensor(m, "fc1.bias", b, 256), "set_tensor");
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.bias")->map);
  strop_tensor *v = NULL;
  strop_test_must(strop_model_tensor_view(m, "fc1.weight", &v), "view");
  strop_tensor_data(v)[0] = 42.0f;
  strop_tensor_free(v);
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.weight")->map);
  strop_model_free(m);

  m = mm_loaded(path, NULL);
  strop_test_must(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16), "bf16");
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.weight")->map);
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.bias")->map); /* biases stay F32 */
  strop_test_must(strop_model_set_frozen_dtype(m, STROP_DTYPE_F32), "f32");
  strop_model_free(m);

  /* LoRA added on the borrowed bases (nothing copied), trained, merged and unmerged */
  m = mm_loaded(path, NULL);
  c0 = strop__mapping_copied_bytes();
  strop_surgery *s = NULL;
  strop_test_must(strop_surgery_create(m, &s), "surgery");
  strop_test_must(strop_surgery_lora(s, "fc*", 4, 8.0f, 0.0f), "lora");
  strop_test_must(strop_surgery_apply(s), "apply");
  strop_surgery_free(s);
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.weight")->map);
  ck_assert_int_eq(strop__mapping_copied_bytes(), c0);
  /* export folds the adapters into a clone: copied there, the model keeps borrowing */
  char spec[300], wts[300];
  snprintf(spec, sizeof spec, "%s/e.yaml", g_dir);
  snprintf(wts, sizeof wts, "%s/e.safetensors", g_dir);
  strop_test_must(strop_model_export(m, spec, wts, 0), "export");
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.weight")->map);
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "opt");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_test_must(strop_trainer_step(tr, tx, ty, NULL), "step");
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_test_must(strop_model_lora_merge(m), "merge");
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.weight")->map);
  strop_test_must(strop_model_lora_unmerge(m), "unmerge");
  strop_model_free(m);

  /* saved over the file it is mapped from (a rename: the mapping keeps the old inode), then a
   * copying load over the borrowed weights */
  m = mm_loaded(path, NULL);
  strop_model *c = mm_model(99, 1);
  strop_test_must(strop_model_load_weights(c, path, 0, NULL), "copy load");
  strop_test_must(strop_model_save_weights(m, path), "save over");
  mm_same(m, c);
  strop_test_must(strop_model_load_weights(m, path, 0, NULL), "load over borrowed");
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.weight")->map);
  mm_same(m, c);
  strop_test_must(strop_model_load_weights(m, path, STROP_LOAD_MMAP, NULL), "borrow again");
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.weight")->map);
  mm_same(m, c);
  strop_model_free(c);
  strop_model_free(m);

  /* the file's bytes never changed */
  strop_test_must(strop_model_save_weights(src, path), "save back");
  size_t len1 = 0;
  char *file1 = strop_test_read_file(path, &len1);
  ck_assert_uint_eq(len0, len1);
  ck_assert_mem_eq(file0, file1, len0);
  free(file0);
  free(file1);
  strop_tensor_free(tx);
  strop_tensor_free(ty);
  strop_model_free(src);
}
END_TEST

/* strop_trainer_fit's restore_best puts back every parameter's values: a weight borrowed from
 * the mapped file is not written (it cannot have changed), where it used to be (a SIGSEGV). */
START_TEST(mmap_fit_restore_best) {
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", g_dir);
  strop_model *src = mm_model(1, 0);
  strop_test_must(strop_model_save_weights(src, path), "save");
  strop_model *m = mm_loaded(path, NULL);
  enum { N = 48 };
  float x[N * 32], y[N];
  for (int i = 0; i < N * 32; i++) x[i] = (float)sin(0.3 * i);
  for (int i = 0; i < N; i++) y[i] = (float)(i % 4);
  const int64_t in[1] = {32}, tg[1] = {1};
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(x, y, N, 1, in, 0, tg, 4, &ds), "dataset");
  strop_batch_iter *it = NULL, *vit = NULL;
  strop_test_must(strop_batch_iter_create(ds, 16, 1, STROP_ITER_SHUFFLE, &it), "iter");
  strop_test_must(strop_batch_iter_create(ds, 16, 0, 0, &vit), "val iter");
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "opt");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_fit_options o;
  strop_fit_options_init(&o);
  o.epochs = 3;
  o.restore_best = 1;
  o.min_delta = 1e9f; /* epoch 0 stays the best: its weights come back */
  strop_test_must(strop_trainer_fit(tr, it, vit, &o), "fit");
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc1.weight")->map);
  strop_model *c = mm_model(99, 1);
  strop_test_must(strop_model_load_weights(c, path, 0, NULL), "copy load");
  float a[256 * 32], b[256 * 32];
  mm_get(c, "fc1.weight", b, 256 * 32);
  const float *w = strop__model_param_find(m, "fc1.weight")->data;
  memcpy(a, w, sizeof a);
  ck_assert_mem_eq(a, b, sizeof a);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_batch_iter_free(it);
  strop_batch_iter_free(vit);
  strop_dataset_free(ds);
  strop_model_free(c);
  strop_model_free(m);
  strop_model_free(src);
}
END_TEST

START_TEST(mmap_truncated_file_refused) {
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", g_dir);
  strop_model *src = mm_model(1, 0);
  strop_test_must(strop_model_save_weights(src, path), "save");
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_int_eq(truncate(path, sb.st_size - 100), 0);
  strop_model *m = mm_model(99, 1);
  ck_assert_int_eq(strop_model_load_weights(m, path, STROP_LOAD_MMAP, NULL), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "truncated"));
  ck_assert_ptr_null(strop__model_param_find(m, "fc1.weight")->map);
  ck_assert_int_eq(strop_model_load_weights(m, path, 8, NULL), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "unknown flags"));
  strop_model_free(m);
  strop_model_free(src);
}
END_TEST

/* A BF16 file's frozen [out, in] weights borrowed as BF16 by a model whose frozen dtype is BF16;
 * the same results as reading them into BF16 storage. */
START_TEST(mmap_bf16_borrowed) {
  char path[300];
  snprintf(path, sizeof path, "%s/bf16.safetensors", g_dir);
  /* a hand-written BF16 file with fc1.weight [256, 32] and fc2.weight [32, 256] */
  const char *hdr_fmt = "{\"fc1.weight\":{\"dtype\":\"BF16\",\"shape\":[256,32],\"data_offsets\":"
                        "[0,16384]},\"fc2.weight\":{\"dtype\":\"BF16\",\"shape\":[32,256],"
                        "\"data_offsets\":[16384,32768]}}";
  char hdr[400];
  snprintf(hdr, sizeof hdr, "%s", hdr_fmt);
  size_t hl = strlen(hdr);
  while (hl % 8) hdr[hl++] = ' ';
  hdr[hl] = '\0';
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  uint64_t n = hl;
  fwrite(&n, 8, 1, f);
  fwrite(hdr, 1, hl, f);
  for (int i = 0; i < 16384; i++) {
    const uint16_t h = strop__bf16_from_f32((float)sin(0.01 * i) * 0.1f);
    fwrite(&h, 2, 1, f);
  }
  fclose(f);
  strop_model *m = mm_model(5, 1), *c = mm_model(5, 1);
  strop_test_must(strop_model_set_frozen_dtype(m, STROP_DTYPE_BF16), "bf16");
  strop_test_must(strop_model_set_frozen_dtype(c, STROP_DTYPE_BF16), "bf16");
  const int64_t b0 = strop__mapping_borrowed_bytes();
  strop_test_must(strop_model_load_weights(m, path, STROP_LOAD_PARTIAL | STROP_LOAD_MMAP, NULL),
                  "mmap");
  ck_assert_int_eq(strop__mapping_borrowed_bytes() - b0, 32768);
  strop_test_must(strop_model_load_weights(c, path, STROP_LOAD_PARTIAL, NULL), "copy");
  ck_assert_ptr_nonnull(strop__model_param_find(m, "fc2.weight")->map);
  mm_same(m, c);
  /* unfreezing widens it into owned FP32 */
  strop_test_must(strop_model_unfreeze(m, "fc2"), "unfreeze");
  strop_test_must(strop_model_unfreeze(c, "fc2"), "unfreeze");
  ck_assert_ptr_null(strop__model_param_find(m, "fc2.weight")->map);
  mm_same(m, c);
  strop_model_free(m);
  strop_model_free(c);
}
END_TEST

static Suite *io_suite(void) {
  Suite *s = suite_create("io");
  TCase *tc = tcase_create("safetensors");
  tcase_add_checked_fixture(tc, make_dir, remove_dir);
  tcase_add_test(tc, st_writer_roundtrip_mem);
  tcase_add_test(tc, st_writer_duplicate_names);
  tcase_add_test(tc, st_half_conversion);
  tcase_add_test(tc, st_reads_torch_file);
  tcase_add_test(tc, st_dtype_copies);
  tcase_add_loop_test(tc, st_broken_corpus, 0, (int)(sizeof g_broken / sizeof g_broken[0]));
  tcase_add_test(tc, st_json_strictness);
  tcase_add_test(tc, st_dims_checked_in_any_order);
  tcase_add_test(tc, st_header_value_count_bounded);
  tcase_add_test(tc, st_alloc_sweep);
  suite_add_tcase(s, tc);

  tc = tcase_create("weights");
  tcase_add_checked_fixture(tc, make_dir, remove_dir);
  tcase_add_loop_test(tc, weights_torch_parity, 0, 4);
  tcase_add_test(tc, weights_save_load_roundtrip);
  tcase_add_test(tc, weights_strict_and_partial);
  tcase_add_test(tc, weights_prefix_remap);
  tcase_add_test(tc, weights_dtype_mismatch);
  tcase_add_test(tc, weights_errors);
  tcase_add_test(tc, weights_alloc_sweep);
  tcase_add_test(tc, debug_log_tells_loads_and_saves);
  tcase_add_test(tc, weights_meta_roundtrip);
  tcase_add_test(tc, weights_meta_hostile);
  tcase_add_test(tc, weights_mem_equals_file);
  tcase_add_loop_test(tc, weights_mem_broken_corpus, 0,
                      (int)(sizeof g_broken / sizeof g_broken[0]));
  tcase_add_test(tc, weights_mem_errors);
  tcase_add_test(tc, weights_mem_alloc_sweep);
  tcase_add_test(tc, non_regular_files_refused);
  suite_add_tcase(s, tc);

  tc = tcase_create("mmap");
  tcase_add_checked_fixture(tc, make_dir, remove_dir);
  tcase_add_test(tc, mmap_borrows_frozen_weights);
  tcase_add_test(tc, mmap_frozen_base_not_resident);
  tcase_add_test(tc, mmap_bf16_copy_replaces_pages);
  tcase_add_test(tc, mmap_writes_copy_first);
  tcase_add_test(tc, mmap_fit_restore_best);
  tcase_add_test(tc, mmap_truncated_file_refused);
  tcase_add_test(tc, mmap_bf16_borrowed);
  suite_add_tcase(s, tc);

  tc = tcase_create("atomic");
  tcase_add_checked_fixture(tc, make_dir, remove_dir);
  tcase_add_test(tc, atomic_write_failure_keeps_old_file);
  tcase_add_test(tc, atomic_small_helpers);
  tcase_add_test(tc, atomic_targets_links_and_nodes);
  tcase_add_test(tc, atomic_stale_temporaries_removed);
  suite_add_tcase(s, tc);

  tc = tcase_create("checkpoint");
  tcase_add_checked_fixture(tc, make_dir, remove_dir);
  tcase_add_test(tc, ckpt_roundtrip);
  suite_add_tcase(s, tc);

  tc = tcase_create("spec");
  tcase_add_checked_fixture(tc, make_dir, remove_dir);
  tcase_add_test(tc, spec_roundtrip);
  tcase_add_test(tc, spec_roundtrip_all_types);
  tcase_add_loop_test(tc, spec_errors, 0, (int)(sizeof g_spec_errors / sizeof g_spec_errors[0]));
  tcase_add_test(tc, spec_file_errors_name_the_file);
  tcase_add_test(tc, spec_hostile);
  tcase_add_test(tc, spec_docs_examples_load);
  tcase_add_test(tc, spec_alloc_sweep);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(io_suite()); }
