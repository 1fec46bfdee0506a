/* SPDX-License-Identifier: MIT */
/* strop tests — a minimal reader of the safetensors fixtures written by
 * tests/fixtures/safetensors_np.py (F32/F64 tensors, string metadata), header-only, for suites
 * that compare against fixtures outside strop_test_parity (losses, padding masks). */
#ifndef STROP_TEST_FIXTURE_ST_H
#define STROP_TEST_FIXTURE_ST_H

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct fixture_st {
  char *buf;
  size_t len;
  char *header; /* JSON, NUL-terminated copy */
  const unsigned char *data;
} fixture_st;

/* Opens STROP_TEST_DATA/<rel>; fails the test when it cannot. */
static inline void fx_open(fixture_st *f, const char *rel) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", STROP_TEST_DATA, rel);
  f->buf = strop_test_read_file(path, &f->len);
  ck_assert_msg(f->buf != NULL, "cannot read %s", path);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)f->buf[i];
  ck_assert(8 + hl <= f->len);
  f->header = malloc(hl + 1);
  memcpy(f->header, f->buf + 8, hl);
  f->header[hl] = '\0';
  f->data = (const unsigned char *)f->buf + 8 + hl;
}

static inline void fx_close(fixture_st *f) {
  free(f->buf);
  free(f->header);
}

/* The tensor as a malloc'd float array (F32, or F64 converted; *first64 gets element 0 in
 * double), or NULL when absent. */
static inline float *fx_tensor(const fixture_st *f, const char *name, size_t *count,
                               double *first64) {
  char key[160];
  snprintf(key, sizeof key, "\"%s\":{", name);
  const char *p = strstr(f->header, key);
  if (!p) return NULL;
  const char *dt = strstr(p, "\"dtype\":\"");
  const char *of = strstr(p, "\"data_offsets\":[");
  ck_assert(dt && of);
  dt += 9;
  long long b = 0, e = 0;
  ck_assert(sscanf(of + 16, "%lld,%lld", &b, &e) == 2);
  size_t es = strncmp(dt, "F64", 3) == 0 ? 8 : 4;
  ck_assert(es == 8 || strncmp(dt, "F32", 3) == 0);
  size_t n = (size_t)(e - b) / es;
  float *out = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    if (es == 8) {
      double d;
      memcpy(&d, f->data + b + i * 8, 8);
      out[i] = (float)d;
      if (i == 0 && first64) *first64 = d;
    } else {
      memcpy(&out[i], f->data + b + i * 4, 4);
      if (i == 0 && first64) *first64 = out[i];
    }
  }
  if (count) *count = n;
  return out;
}

/* A metadata value as a number; fails the test when absent. */
static inline double fx_meta(const fixture_st *f, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":\"", key);
  const char *p = strstr(f->header, "\"__metadata__\"");
  ck_assert(p != NULL);
  p = strstr(p, k);
  ck_assert_msg(p != NULL, "metadata %s missing", key);
  return strtod(p + strlen(k), NULL);
}

#endif
