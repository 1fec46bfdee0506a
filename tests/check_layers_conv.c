/* SPDX-License-Identifier: MIT */
/* strop tests — conv layer family: conv2d (stride, padding incl. "same", dilation, groups,
 * depthwise, 1x1), maxpool2d, avgpool2d, global_avgpool, batchnorm1d/2d (train, eval, frozen
 * statistics). Forward reference values, finite differences, PyTorch parity through
 * tests/fixtures/layers/conv_*.safetensors (tests/fixtures/gen_conv.py) and errors. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "graph/graph.h"
#include "harness.h"
#include "ops/conv.h"
#include "ops/dense.h"
#include "ops/lowp.h"
#include "ops/norm.h"
#include "ops/pool.h"
#include "strop/strop.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers */

/* A one-node model (node `node`) on per-sample input `shape`, finalized with seed 1. */
static strop_model *one(const char *type, const char *opts, int rank, const int64_t *shape,
                        const char *node) {
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(rank, shape, &m), STROP_OK);
  ck_assert_msg(strop_model_add(m, node, type, opts, NULL) == STROP_OK, "add %s '%s': %s", type,
                opts, strop_last_error());
  ck_assert_msg(strop_model_finalize(m, 1) == STROP_OK, "finalize %s '%s': %s", type, opts,
                strop_last_error());
  return m;
}

static void set_param(strop_model *m, const char *name, const float *v, size_t n) {
  ck_assert_msg(strop_model_set_tensor(m, name, v, n) == STROP_OK, "%s", strop_last_error());
}

static void expect_close(const float *got, const float *want, size_t n, double tol) {
  size_t where = 0;
  double rel = strop_test_max_rel(got, want, n, 1e-6, &where);
  ck_assert_msg(rel <= tol, "value %zu: got %.8g, want %.8g (rel %.3g)", where,
                (double)got[where], (double)want[where], rel);
}

/* Fixture reader for the checks the harness does not make itself (frozen statistics). The
 * generator writes compact JSON, so a key is found by its quoted name. */
typedef struct fixture {
  char *buf;
  char *hdr;
  const unsigned char *data;
} fixture;

static void fx_open(fixture *f, const char *name) {
  char path[512];
  size_t len;
  snprintf(path, sizeof path, "%s/layers/%s.safetensors", STROP_TEST_DATA, name);
  f->buf = strop_test_read_file(path, &len);
  ck_assert_msg(f->buf != NULL, "cannot read %s", path);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)f->buf[i];
  ck_assert(8 + hl <= len);
  f->hdr = malloc(hl + 1);
  memcpy(f->hdr, f->buf + 8, hl);
  f->hdr[hl] = '\0';
  f->data = (const unsigned char *)f->buf + 8 + hl;
}

static void fx_close(fixture *f) {
  free(f->buf);
  free(f->hdr);
}

/* malloc'd floats (F32, or I64 converted), count in *n */
static float *fx_get(const fixture *f, const char *name, size_t *n) {
  char key[160];
  snprintf(key, sizeof key, "\"%s\":{", name);
  const char *p = strstr(f->hdr, key);
  ck_assert_msg(p != NULL, "fixture has no '%s'", name);
  const char *dt = strstr(p, "\"dtype\":\"") + 9;
  const char *of = strstr(p, "\"data_offsets\":[");
  long long b = 0, e = 0;
  ck_assert(sscanf(of + 16, "%lld,%lld", &b, &e) == 2);
  int is64 = strncmp(dt, "I64", 3) == 0;
  size_t cnt = (size_t)(e - b) / (is64 ? 8 : 4);
  float *out = malloc((cnt ? cnt : 1) * sizeof *out);
  for (size_t i = 0; i < cnt; i++) {
    if (is64) {
      int64_t v;
      memcpy(&v, f->data + b + 8 * (long long)i, 8);
      out[i] = (float)v;
    } else {
      memcpy(&out[i], f->data + b + 4 * (long long)i, 4);
    }
  }
  *n = cnt;
  return out;
}

/* ------------------------------------------------------------ forward references */

/* The epilogues the conv tests run: none (e 0), a relu (1), a relu and a 2x2 max-pool (2). */
static strop__conv2d_epilogue relu_pool(const strop__conv2d_dims *d, int e) {
  strop__conv2d_epilogue ep;
  memset(&ep, 0, sizeof ep);
  ep.relu = e > 0;
  ep.pool = e == 2;
  ep.pd.kh = ep.pd.kw = ep.pd.sh = ep.pd.sw = 2;
  ep.pd.dh = ep.pd.dw = 1;
  ep.pd.oh = strop__conv_out_len(d->oh, 2, 2, 0, 1);
  ep.pd.ow = strop__conv_out_len(d->ow, 2, 2, 0, 1);
  return ep;
}

/* The FP32 lowered forward of convs with more output channels than positions runs a block of
 * images per product (strop__conv_batch): the same values as an image per product within FP32
 * rounding (the products' k sums may split differently), with a fused bias (3x3), a separate
 * one (1x1), strided, with a relu and with a relu and max-pool epilogue, at 1 and 2 chunks, and
 * the bits of a given chunk count at every run. */
START_TEST(batched_forward_matches_per_image) {
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {5, 6, 4, 4, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {7, 9, 3, 3, 20, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0},
      {6, 5, 8, 7, 40, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0, 0},
      {3, 4, 5, 6, 33, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int e = 0; e < 3; e++)
      for (int chunks = 1; chunks <= 2; chunks++) {
        strop__conv2d_dims d = cases[k];
        strop__conv2d_out_size(&d);
        strop__conv2d_epilogue ep = relu_pool(&d, e);
        const size_t nx = (size_t)(d.n * d.c_in * d.h * d.w), nw = (size_t)(d.c_out * d.c_in * 9);
        const size_t ny = (size_t)(d.n * d.c_out * (e == 2 ? ep.pd.oh * ep.pd.ow : d.oh * d.ow));
        float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float));
        float *b = malloc((size_t)d.c_out * sizeof(float));
        float *y[3];
        int32_t *am[3];
        for (size_t i = 0; i < nx; i++) x[i] = sinf(0.37f * (float)i);
        for (size_t i = 0; i < nw; i++) w[i] = cosf(0.11f * (float)i) * 0.3f;
        for (int64_t i = 0; i < d.c_out; i++) b[i] = 0.05f * (float)(i % 5) - 0.1f;
        for (int r = 0; r < 3; r++) { /* per image, batched, batched again */
          strop__conv_batch = r > 0;
          const size_t fl = strop__conv2d_scratch_floats(&d, 0, chunks, &ep);
          float *sc = aligned_alloc(64, (fl * sizeof(float) + 63) / 64 * 64);
          y[r] = malloc(ny * sizeof(float));
          am[r] = malloc(ny * sizeof(int32_t));
          ep.argmax = am[r];
          strop__conv2d_forward(&d, x, w, b, y[r], sc, chunks, e ? &ep : NULL);
          free(sc);
        }
        strop__conv_batch = 1;
        ck_assert_double_le(strop_test_max_rel(y[1], y[0], ny, 1e-3, NULL), 1e-5);
        ck_assert_int_eq(memcmp(y[1], y[2], ny * sizeof(float)), 0);
        for (int r = 0; r < 3; r++) free(y[r]), free(am[r]);
        free(x);
        free(w);
        free(b);
      }
}
END_TEST

/* A conv's inputs in fixed patterns (x, w, b and the output gradient dy) and the sizes of y,
 * dx, dw and db (cnt[0..3]). */
typedef struct conv_io {
  float *x, *w, *b, *dy;
  size_t cnt[4];
} conv_io;

static conv_io conv_io_make(const strop__conv2d_dims *d) {
  conv_io io;
  const size_t nx = (size_t)(d->n * d->c_in * d->h * d->w),
               ny = (size_t)(d->n * d->c_out * d->oh * d->ow);
  const size_t nw = (size_t)(d->c_out * d->c_in * d->kh * d->kw), nb = (size_t)d->c_out;
  io.x = malloc(nx * 4), io.w = malloc(nw * 4), io.b = malloc(nb * 4), io.dy = malloc(ny * 4);
  ck_assert(io.x && io.w && io.b && io.dy);
  for (size_t i = 0; i < nx; i++) io.x[i] = sinf(0.37f * (float)i);
  for (size_t i = 0; i < nw; i++) io.w[i] = cosf(0.11f * (float)i) * 0.05f;
  for (size_t i = 0; i < nb; i++) io.b[i] = 0.05f * (float)(i % 5) - 0.1f;
  for (size_t i = 0; i < ny; i++) io.dy[i] = cosf(0.23f * (float)i + 0.5f);
  io.cnt[0] = ny, io.cnt[1] = nx, io.cnt[2] = nw, io.cnt[3] = nb;
  return io;
}

static void conv_io_free(conv_io *io) { free(io->x), free(io->w), free(io->b), free(io->dy); }

/* The conv's y, dx, dw and db (t[0..3], new) by the forward and backward as the switches
 * stand, 1 thread. */
static void conv_io_run(const strop__conv2d_dims *d, const conv_io *io, float *t[4]) {
  const size_t fl = strop__conv2d_scratch_floats(d, 1, 1, NULL),
               ff = strop__conv2d_scratch_floats(d, 0, 1, NULL);
  float *sc = aligned_alloc(64, ((fl > ff ? fl : ff) * 4 + 63) / 64 * 64);
  t[0] = malloc(io->cnt[0] * 4);
  for (int q = 1; q < 4; q++) t[q] = calloc(io->cnt[q], 4);
  strop__conv2d_forward(d, io->x, io->w, io->b, t[0], sc, 1, NULL);
  strop__conv2d_backward(d, io->x, io->w, io->dy, t[1], t[2], t[3], sc, 1, NULL);
  free(sc);
}

/* The default's choice for an FP32 3x3 stride-1 conv of 64 channels: F(4x4, 3x3) from an output
 * of 8 x 8 up, the lowered forward below (ResNet's 7 x 7 stage, where the tiles cover 64 values
 * for 49 and the lowered forward and backward were faster), bit for bit the forced choice's y,
 * dx, dw and db; and the two forced choices differ there, so the comparison tells them apart. */
START_TEST(winograd_default_sides) {
  static const int64_t sides[][2] = {{7, 7}, {7, 9}, {8, 8}, {9, 12}};
  for (size_t k = 0; k < sizeof sides / sizeof sides[0]; k++) {
    strop__conv2d_dims d = {2, 64, sides[k][0], sides[k][1], 64, 3, 3, 1, 1,
                            1, 1,  1,           1,           1,  0, 0, 0};
    strop__conv2d_out_size(&d);
    const int want = d.oh >= 8 && d.ow >= 8 ? 4 : 0;
    conv_io io = conv_io_make(&d);
    static const int modes[3] = {-1, 0, 4}; /* the default, lowered, F(4x4) */
    float *v[3][4];
    for (int c = 0; c < 3; c++) {
      strop__conv_winograd = modes[c];
      conv_io_run(&d, &io, v[c]);
    }
    strop__conv_winograd = -1;
    const int same = want == 4 ? 2 : 1, other = want == 4 ? 1 : 2;
    for (int q = 0; q < 4; q++)
      ck_assert_msg(!memcmp(v[0][q], v[same][q], io.cnt[q] * 4),
                    "%lld x %lld: tensor %d is not the %s path's", (long long)d.oh,
                    (long long)d.ow, q, want ? "Winograd" : "lowered");
    ck_assert_msg(memcmp(v[0][0], v[other][0], io.cnt[0] * 4), "%lld x %lld: both paths' y agree",
                  (long long)d.oh, (long long)d.ow);
    for (int c = 0; c < 3; c++)
      for (int q = 0; q < 4; q++) free(v[c][q]);
    conv_io_free(&io);
  }
}
END_TEST

/* A stride-2 conv's columns gathered 16 at a time with AVX-512 permutes (strop__conv_gather2:
 * im2col, ResNet's stem and strided 3x3 convs) give y, dx, dw and db bit for bit those of the
 * gather a value at a time: rows of 5, 23, 32 and 35 outputs (a tail alone, one vector and a
 * tail, two vectors, two and a tail), padding, a 7x7 kernel, a dilation, a pointwise kernel. */
START_TEST(strided_columns_same_bits) {
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {2, 3, 33, 45, 8, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0, 0, 0},
      {2, 16, 9, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0},
      {1, 4, 70, 70, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0},
      {2, 8, 64, 64, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0, 0},
      {1, 3, 20, 20, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1, 0, 0, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    strop__conv2d_dims d = cases[k];
    strop__conv2d_out_size(&d);
    conv_io io = conv_io_make(&d);
    float *v[2][4];
    for (int c = 0; c < 2; c++) {
      strop__conv_gather2 = c;
      conv_io_run(&d, &io, v[c]);
    }
    strop__conv_gather2 = 1;
    for (int q = 0; q < 4; q++)
      ck_assert_msg(!memcmp(v[0][q], v[1][q], io.cnt[q] * 4),
                    "case %zu (%lld outputs a row): tensor %d differs", k, (long long)d.ow, q);
    for (int c = 0; c < 2; c++)
      for (int q = 0; q < 4; q++) free(v[c][q]);
    conv_io_free(&io);
  }
}
END_TEST

/* An FP32 per-image conv's bias written into y by a fill before the product adds to it
 * (strop__conv_bias_fill) gives the rank-1 product's y bit for bit: pointwise convs (k of 64
 * and 256, one k block; 300, past it) and a strided 3x3 one, on images large enough to run an
 * image per product, with no epilogue, a relu, and a residual sum (both orders) with its
 * relu. */
START_TEST(bias_fill_same_bits) {
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {2, 64, 40, 40, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0},
      {2, 256, 36, 36, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0},
      {2, 300, 36, 36, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0},
      {2, 5, 30, 30, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int e = 0; e < 4; e++) { /* none, relu, r + y then relu, y + r then relu */
      strop__conv2d_dims d = cases[k];
      strop__conv2d_out_size(&d);
      conv_io io = conv_io_make(&d);
      const size_t ny = io.cnt[0];
      float *r = malloc(ny * 4);
      for (size_t i = 0; i < ny; i++) r[i] = 0.3f * cosf(0.071f * (float)i);
      strop__conv2d_epilogue ep;
      memset(&ep, 0, sizeof ep);
      ep.relu = e > 0;
      ep.res = e >= 2 ? r : NULL;
      ep.res_first = e == 2;
      const size_t ff = strop__conv2d_scratch_floats(&d, 0, 1, e ? &ep : NULL);
      float *sc = aligned_alloc(64, (ff * 4 + 63) / 64 * 64 + 64), *y[2];
      for (int c = 0; c < 2; c++) { /* the rank-1 product, the fill */
        strop__conv_bias_fill = c;
        y[c] = malloc(ny * 4);
        strop__conv2d_forward(&d, io.x, io.w, io.b, y[c], sc, 1, e ? &ep : NULL);
      }
      strop__conv_bias_fill = 1;
      ck_assert_msg(!memcmp(y[0], y[1], ny * 4), "case %zu, epilogue %d: y differs", k, e);
      free(sc), free(r), free(y[0]), free(y[1]);
      conv_io_free(&io);
    }
}
END_TEST

/* Convs whose Winograd transforms are large (ResNet-50's 512-channel 3x3: 37.7 MB of filters)
 * hold the filters a row of planes at a time and the weight gradient's products a block of
 * output channels at a time (strop__conv_wino_rows): y, dx, dw and db bit for bit those of the
 * whole transforms, at 1 and 2 threads, with and without a relu or relu + max-pool epilogue,
 * dx added to and assigned, and dx alone (a frozen conv); without an epilogue the scratch is
 * less than half. F(4x4) forced: these sides are below the default's WINO_MIN_SIDE. */
START_TEST(winograd_rows_same_bits) {
  strop__conv_winograd = 4;
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {2, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {3, 384, 5, 6, 448, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int t = 1; t <= 2; t++)
      for (int e = 0; e < 3; e++)
        for (int mode = 0; mode < 3; mode++) { /* added, assigned, dx alone */
          strop__conv2d_dims d = cases[k];
          strop__conv2d_out_size(&d);
          strop__conv2d_epilogue ep = relu_pool(&d, e);
          const size_t nx = (size_t)(d.n * d.c_in * d.h * d.w);
          const size_t nw = (size_t)(d.c_out * d.c_in * 9), nb = (size_t)d.c_out;
          const size_t ny = (size_t)(d.n * d.c_out *
                                     (e == 2 ? ep.pd.oh * ep.pd.ow : d.oh * d.ow));
          float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(nb * 4);
          float *dy = malloc(ny * 4);
          int32_t *am = malloc(ny * sizeof(int32_t));
          for (size_t i = 0; i < nx; i++) x[i] = sinf(0.37f * (float)i);
          for (size_t i = 0; i < nw; i++) w[i] = cosf(0.11f * (float)i) * 0.05f;
          for (size_t i = 0; i < nb; i++) b[i] = 0.05f * (float)(i % 5) - 0.1f;
          for (size_t i = 0; i < ny; i++) dy[i] = cosf(0.23f * (float)i + 0.5f);
          ep.argmax = am;
          float *v[2][4]; /* whole, rows: y, dx, dw, db */
          size_t sfl[2];
          ck_assert_int_eq(strop_set_num_threads(t), STROP_OK);
          const int chunks = strop__par_chunks(t, d.n, 1);
          for (int r = 0; r < 2; r++) {
            strop__conv_wino_rows = r;
            const size_t fl = strop__conv2d_scratch_floats(&d, 1, chunks, e ? &ep : NULL),
                         ff = strop__conv2d_scratch_floats(&d, 0, chunks, e ? &ep : NULL);
            sfl[r] = fl > ff ? fl : ff;
            float *sc = aligned_alloc(64, (sfl[r] * 4 + 63) / 64 * 64);
            v[r][0] = malloc(ny * 4), v[r][1] = malloc(nx * 4);
            v[r][2] = malloc(nw * 4), v[r][3] = malloc(nb * 4);
            strop__conv2d_forward(&d, x, w, b, v[r][0], sc, chunks, e ? &ep : NULL);
            ep.y = v[r][0];
            for (size_t i = 0; i < nx; i++) v[r][1][i] = mode == 1 ? NAN : 0.25f;
            for (size_t i = 0; i < nw; i++) v[r][2][i] = 0.5f;
            for (size_t i = 0; i < nb; i++) v[r][3][i] = -0.5f;
            float *gw = mode == 2 ? NULL : v[r][2], *gb = mode == 2 ? NULL : v[r][3];
            if (mode == 1)
              strop__conv2d_backward_assign(&d, x, w, dy, v[r][1], gw, gb, sc, chunks,
                                            e ? &ep : NULL);
            else
              strop__conv2d_backward(&d, x, w, dy, v[r][1], gw, gb, sc, chunks, e ? &ep : NULL);
            free(sc);
          }
          strop__conv_wino_rows = 1;
          const size_t cnt[4] = {ny, nx, nw, nb};
          for (int q = 0; q < 4; q++)
            ck_assert_msg(!memcmp(v[0][q], v[1][q], cnt[q] * 4),
                          "case %zu threads %d ep %d mode %d: tensor %d differs", k, t, e, mode,
                          q);
          if (!e) /* (an epilogue's backward keeps dx's whole filters: frozen convs) */
            ck_assert_msg(2 * sfl[1] < sfl[0], "case %zu: scratch %zu floats, whole %zu", k,
                          sfl[1], sfl[0]);
          for (int r = 0; r < 2; r++)
            for (int q = 0; q < 4; q++) free(v[r][q]);
          free(x), free(w), free(b), free(dy), free(am);
        }
  strop__conv_winograd = -1;
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* The FP32 lowered backward of the same convs runs a block of images per product, split over
 * the products instead of the images (strop__conv_batch_backward): dx, dw and db within FP32
 * rounding of an image per product (the k sums split differently: within the bound of each
 * path's summation error), and bit for bit the same at
 * 1, 2 and 3 threads. With a fused bias (3x3), without one (1x1), strided, padded and not,
 * two blocks with a short last one (the 12x12 case: 6 and 5 images), a relu and a relu and
 * max-pool epilogue, dx added to and assigned. */
START_TEST(batched_backward_matches_per_image) {
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {5, 6, 4, 4, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {7, 9, 3, 3, 20, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0},
      {6, 5, 8, 7, 40, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0, 0, 0},
      {3, 4, 5, 6, 33, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0, 0},
      {23, 3, 5, 5, 30, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {4, 7, 6, 5, 26, 2, 3, 2, 1, 0, 1, 1, 2, 1, 0, 0, 0},
      {11, 2, 12, 12, 150, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
  };
  static const int threads[3] = {1, 2, 3};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int e = 0; e < 3; e++)
      for (int assign = 0; assign < 2; assign++) {
        strop__conv2d_dims d = cases[k];
        strop__conv2d_out_size(&d);
        strop__conv2d_epilogue ep = relu_pool(&d, e);
        const size_t nx = (size_t)(d.n * d.c_in * d.h * d.w);
        const size_t nw = (size_t)(d.c_out * d.c_in * d.kh * d.kw), nb = (size_t)d.c_out;
        const size_t ny = (size_t)(d.n * d.c_out * (e == 2 ? ep.pd.oh * ep.pd.ow : d.oh * d.ow));
        float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(nb * 4);
        float *y = malloc(ny * 4), *dy = malloc(ny * 4);
        int32_t *am = malloc(ny * sizeof(int32_t));
        for (size_t i = 0; i < nx; i++) x[i] = sinf(0.37f * (float)i);
        for (size_t i = 0; i < nw; i++) w[i] = cosf(0.11f * (float)i) * 0.3f;
        for (size_t i = 0; i < nb; i++) b[i] = 0.05f * (float)(i % 5) - 0.1f;
        for (size_t i = 0; i < ny; i++) dy[i] = cosf(0.23f * (float)i + 0.5f);
        ep.argmax = am;
        ep.y = y;
        float *g[4][3]; /* per image at 1 thread, batched at 1, 2 and 3 threads: dx, dw, db */
        for (int r = 0; r < 4; r++) {
          strop__conv_batch_backward = r > 0;
          ck_assert_int_eq(strop_set_num_threads(r ? threads[r - 1] : 1), STROP_OK);
          const int chunks = strop__par_chunks(r ? threads[r - 1] : 1, d.n, 1);
          const size_t fl = strop__conv2d_scratch_floats(&d, 1, chunks, e ? &ep : NULL),
                       ff = strop__conv2d_scratch_floats(&d, 0, chunks, e ? &ep : NULL);
          float *sc = aligned_alloc(64, ((fl > ff ? fl : ff) * 4 + 63) / 64 * 64);
          strop__conv2d_forward(&d, x, w, b, y, sc, chunks, e ? &ep : NULL);
          g[r][0] = malloc(nx * 4), g[r][1] = malloc(nw * 4), g[r][2] = malloc(nb * 4);
          for (size_t i = 0; i < nx; i++) g[r][0][i] = assign ? NAN : 0.25f;
          for (size_t i = 0; i < nw; i++) g[r][1][i] = 0.5f;
          for (size_t i = 0; i < nb; i++) g[r][2][i] = -0.5f;
          if (assign)
            strop__conv2d_backward_assign(&d, x, w, dy, g[r][0], g[r][1], g[r][2], sc, chunks,
                                          e ? &ep : NULL);
          else
            strop__conv2d_backward(&d, x, w, dy, g[r][0], g[r][1], g[r][2], sc, chunks,
                                   e ? &ep : NULL);
          free(sc);
        }
        strop__conv_batch_backward = 1;
        const size_t cnt[3] = {nx, nw, nb};
        /* each path's error is within the bound of a sum of T terms of at most A each,
         * T A FLT_EPSILON (|x|, |dy| <= 1, |w| <= 0.3): dx sums c_out kh kw of them, dw and db
         * n oh ow */
        const double T[3] = {(double)(d.c_out * d.kh * d.kw), (double)(d.n * d.oh * d.ow),
                             (double)(d.n * d.oh * d.ow)};
        const double A[3] = {0.3, 1.0, 1.0};
        for (int v = 0; v < 3; v++) {
          double err = 0;
          for (size_t i = 0; i < cnt[v]; i++)
            err = fmax(err, fabs((double)g[1][v][i] - g[0][v][i]));
          ck_assert_msg(err <= 2 * T[v] * A[v] * FLT_EPSILON,
                        "case %zu ep %d assign %d grad %d: error %.3g", k, e, assign, v, err);
          for (int r = 2; r < 4; r++)
            ck_assert_msg(!memcmp(g[1][v], g[r][v], cnt[v] * 4),
                          "case %zu ep %d grad %d: differs at %d threads", k, e, v,
                          threads[r - 1]);
        }
        for (int r = 0; r < 4; r++) free(g[r][0]), free(g[r][1]), free(g[r][2]);
        free(x), free(w), free(b), free(y), free(dy), free(am);
      }
  ck_assert_int_eq(strop_set_num_threads(0), STROP_OK);
}
END_TEST

START_TEST(conv_forward_reference) {
  /* 1x1x3x3 input 1..9; 2x2 kernel of ones, bias 0.5 -> window sums + 0.5 */
  int64_t sh[3] = {1, 3, 3};
  strop_model *m = one("conv2d", "in_channels=1 out_channels=1 kernel_size=2", 3, sh, "c");
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w[4] = {1, 1, 1, 1}, b[1] = {0.5f};
  set_param(m, "c.weight", w, 4);
  set_param(m, "c.bias", b, 1);
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  const float want[4] = {12.5f, 16.5f, 24.5f, 28.5f};
  expect_close(o->data, want, 4, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);

  /* stride 2, padding 1, 3x3 kernel of ones, no bias: sums of the padded 3x3 windows at
   * (-1,-1), (-1,1), (1,-1), (1,1) -> 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9 */
  m = one("conv2d", "out_channels=1 kernel_size=3 stride=2 padding=1 bias=false", 3, sh, "c");
  float w9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  set_param(m, "c.weight", w9, 9);
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  const float want2[4] = {12, 16, 24, 28};
  expect_close(o->data, want2, 4, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);

  /* depthwise 2 channels, 1x1 kernel per channel: scales each channel */
  int64_t sh2[3] = {2, 1, 2};
  m = one("conv2d", "out_channels=2 kernel_size=1 groups=2 bias=false", 3, sh2, "c");
  float wd[2] = {2, -3}, x2[4] = {1, 2, 3, 4};
  set_param(m, "c.weight", wd, 2);
  ck_assert_int_eq(strop__model_forward_exec(m, x2, 1, 0, NULL, &o), STROP_OK);
  const float want3[4] = {2, 4, -9, -12};
  expect_close(o->data, want3, 4, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

START_TEST(pool_forward_reference) {
  int64_t sh[3] = {1, 3, 3};
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const strop__act *o;
  /* overlapping max windows 2x2 stride 1 */
  strop_model *m = one("maxpool2d", "kernel_size=2 stride=1", 3, sh, "p");
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  const float wmax[4] = {5, 6, 8, 9};
  expect_close(o->data, wmax, 4, 0);
  strop__model_step_end(m);
  strop_model_free(m);
  /* 3x3 stride 1 padding 1: padded cells count (divide by 9) or not */
  float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  m = one("avgpool2d", "kernel_size=3 stride=1 padding=1", 3, sh, "p");
  ck_assert_int_eq(strop__model_forward_exec(m, ones, 1, 0, NULL, &o), STROP_OK);
  const float winc[9] = {4 / 9.f, 6 / 9.f, 4 / 9.f, 6 / 9.f, 1,
                         6 / 9.f, 4 / 9.f, 6 / 9.f, 4 / 9.f};
  expect_close(o->data, winc, 9, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);
  m = one("avgpool2d", "kernel_size=3 stride=1 padding=1 count_include_pad=false", 3, sh, "p");
  ck_assert_int_eq(strop__model_forward_exec(m, ones, 1, 0, NULL, &o), STROP_OK);
  expect_close(o->data, ones, 9, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);
  /* global average */
  m = one("global_avgpool", "", 3, sh, "p");
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  ck_assert_int_eq(o->shape.rank, 1);
  ck_assert_float_eq_tol(o->data[0], 5.0f, 1e-6f);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* AdaptiveAvgPool2d's windows: rows and columns [floor(i H / oh), ceil((i + 1) H / oh)) */
START_TEST(adaptive_forward_reference) {
  int64_t sh[3] = {1, 3, 3};
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const strop__act *o;
  /* 3x3 -> 2x2: overlapping 2x2 windows */
  strop_model *m = one("adaptive_avgpool2d", "output_size=2", 3, sh, "p");
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  const float want[4] = {3, 4, 6, 7};
  expect_close(o->data, want, 4, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);
  /* 3x3 -> 1x2: rows [0, 3), columns [0, 2) and [1, 3) */
  m = one("adaptive_avgpool2d", "output_size=[1, 2]", 3, sh, "p");
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  ck_assert(o->shape.rank == 3 && o->shape.d[1] == 1 && o->shape.d[2] == 2);
  const float want2[2] = {4.5f, 5.5f};
  expect_close(o->data, want2, 2, 1e-6);
  strop__model_step_end(m);
  strop_model_free(m);
  /* output_size 1 keeps [C, 1, 1]; the graph runs it at any input size */
  m = one("adaptive_avgpool2d", "output_size=1", 3, sh, "p");
  int64_t out[3];
  ck_assert_int_eq(strop_model_output_shape(m, out, 3), 3);
  ck_assert(out[0] == 1 && out[1] == 1 && out[2] == 1);
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK);
  ck_assert_float_eq_tol(o->data[0], 5.0f, 1e-6f);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* The direct depthwise kernel and the grouped im2col + GEMM path compute the same values and
 * gradients (strides, dilation, channel multipliers, odd sizes), at 1 and 2 threads. */
START_TEST(depthwise_matches_gemm) {
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {3, 4, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, 0, 0, 0},
      {2, 5, 11, 10, 5, 5, 5, 2, 2, 2, 2, 1, 1, 5, 0, 0, 0},
      {2, 3, 8, 8, 6, 3, 3, 2, 1, 1, 0, 1, 1, 3, 0, 0, 0},
      {2, 2, 9, 9, 2, 3, 3, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0},
      {1, 6, 1, 3, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, 0, 0, 0},
  };
  strop__rng r;
  strop__rng_seed(&r, 9, 0);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    strop__conv2d_dims d = cases[k];
    strop__conv2d_out_size(&d);
    const size_t nx = (size_t)(d.n * d.c_in * d.h * d.w),
                 ny = (size_t)(d.n * d.c_out * d.oh * d.ow);
    const size_t nw = (size_t)(d.c_out * d.kh * d.kw);
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)d.c_out * 4);
    float *dy = malloc(ny * 4), *y[2], *dx[2], *dw[2], *db[2];
    for (size_t i = 0; i < nx; i++) x[i] = 2 * strop__rng_uniform(&r) - 1;
    for (size_t i = 0; i < nw; i++) w[i] = 2 * strop__rng_uniform(&r) - 1;
    for (int64_t i = 0; i < d.c_out; i++) b[i] = 2 * strop__rng_uniform(&r) - 1;
    for (size_t i = 0; i < ny; i++) dy[i] = 2 * strop__rng_uniform(&r) - 1;
    for (int v = 0; v < 2; v++) {
      strop__conv_depthwise_direct = v;
      for (int threads = 1; threads <= 2; threads++) {
        ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
        const int chunks = strop__par_chunks(threads, d.n, 1);
        size_t sf = strop__conv2d_scratch_floats(&d, 0, chunks, NULL);
        size_t sb = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
        float *scratch = strop__malloc_aligned((sf > sb ? sf : sb) * 4);
        y[v] = calloc(ny, 4), dx[v] = calloc(nx, 4), dw[v] = calloc(nw, 4);
        db[v] = calloc((size_t)d.c_out, 4);
        strop__conv2d_forward(&d, x, w, b, y[v], scratch, chunks, NULL);
        strop__conv2d_backward(&d, x, w, dy, dx[v], dw[v], db[v], scratch, chunks, NULL);
        strop__free_aligned(scratch);
        if (threads == 2) break;
        free(y[v]), free(dx[v]), free(dw[v]), free(db[v]);
      }
    }
    strop__conv_depthwise_direct = 1;
    ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
    expect_close(y[1], y[0], ny, 1e-5);
    expect_close(dx[1], dx[0], nx, 1e-5);
    expect_close(dw[1], dw[0], nw, 1e-5);
    expect_close(db[1], db[0], (size_t)d.c_out, 1e-5);
    for (int v = 0; v < 2; v++) free(y[v]), free(dx[v]), free(dw[v]), free(db[v]);
    free(x), free(w), free(b), free(dy);
  }
}
END_TEST

/* y[n, o, oy, ox] = b[o] + sum over c, i, j of w[o, c, i, j] x[n, c, oy + i - ph, ox + j - pw],
 * in double: the reference the Winograd forward is measured against. */
static void conv3x3_ref(const strop__conv2d_dims *d, const float *x, const float *w,
                        const float *b, double *y) {
  for (int64_t n = 0; n < d->n; n++)
    for (int64_t o = 0; o < d->c_out; o++)
      for (int64_t oy = 0; oy < d->oh; oy++)
        for (int64_t ox = 0; ox < d->ow; ox++) {
          double s = b ? b[o] : 0.0;
          for (int64_t c = 0; c < d->c_in; c++)
            for (int64_t i = 0; i < 3; i++)
              for (int64_t j = 0; j < 3; j++) {
                const int64_t yy = oy + i - d->ph, xx = ox + j - d->pw;
                if (yy < 0 || yy >= d->h || xx < 0 || xx >= d->w) continue;
                s += (double)w[((o * d->c_in + c) * 3 + i) * 3 + j] *
                     x[((n * d->c_in + c) * d->h + yy) * d->w + xx];
              }
          y[((n * d->c_out + o) * d->oh + oy) * d->ow + ox] = s;
        }
}

/* dw[o, c, i, j] = sum over n, oy, ox of dy[n, o, oy, ox] x[n, c, oy + i - ph, ox + j - pw] and
 * db[o] the sum of dy[., o], in double: the reference of the weight gradients. */
static void conv3x3_grad_ref(const strop__conv2d_dims *d, const float *x, const float *dy,
                             double *dw, double *db) {
  for (int64_t o = 0; o < d->c_out; o++) {
    double sb = 0;
    for (int64_t n = 0; n < d->n; n++)
      for (int64_t p = 0; p < d->oh * d->ow; p++)
        sb += dy[(n * d->c_out + o) * d->oh * d->ow + p];
    db[o] = sb;
    for (int64_t c = 0; c < d->c_in; c++)
      for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < 3; j++) {
          double s = 0;
          for (int64_t n = 0; n < d->n; n++)
            for (int64_t oy = 0; oy < d->oh; oy++)
              for (int64_t ox = 0; ox < d->ow; ox++) {
                const int64_t yy = oy + i - d->ph, xx = ox + j - d->pw;
                if (yy < 0 || yy >= d->h || xx < 0 || xx >= d->w) continue;
                s += (double)dy[((n * d->c_out + o) * d->oh + oy) * d->ow + ox] *
                     x[((n * d->c_in + c) * d->h + yy) * d->w + xx];
              }
          dw[((o * d->c_in + c) * 3 + i) * 3 + j] = s;
        }
  }
}

/* The largest |got - want| over the largest |want|. */
static double err_of_max(const float *got, const double *want, size_t n) {
  double e = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    e = fmax(e, fabs(got[i] - want[i]));
    mx = fmax(mx, fabs(want[i]));
  }
  return mx > 0 ? e / mx : e;
}

/* The Winograd forward (F(2x2, 3x3) and F(4x4, 3x3), forced on) against a double reference on
 * sizes that are no multiple of the tile, paddings 0 to 2, with and without a bias, at 1 and 2
 * threads, and the lowered forward on the same data. The bound: the largest error over the
 * largest |y| stays below 3e-6 for F(2, 3) and 3e-5 for F(4, 3) (the lowered path: ~1e-7).
 * The backward's input gradient (a Winograd conv of dy with the rotated, transposed filters)
 * against the lowered one's within the same bounds of max |dx|. The weight and bias gradients
 * (Winograd F(3x3, 2x2) and F(3x3, 4x4) since they have their own transforms: no longer the
 * lowered ones' bits) against a double reference within the same bounds of max |dw| and
 * max |db|, and bit for bit the same at 1 and 2 threads (no sum depends on the split). */
START_TEST(winograd_matches_reference) {
  static const strop__conv2d_dims cases[] = {
      /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups */
      {3, 8, 9, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {2, 3, 6, 11, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0},
      {5, 4, 7, 7, 6, 3, 3, 1, 1, 2, 1, 1, 1, 1, 0, 0, 0},
      {1, 2, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
      {4, 16, 14, 14, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0},
  };
  strop__rng r;
  strop__rng_seed(&r, 11, 0);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    strop__conv2d_dims d = cases[k];
    strop__conv2d_out_size(&d);
    const size_t nx = (size_t)(d.n * d.c_in * d.h * d.w),
                 ny = (size_t)(d.n * d.c_out * d.oh * d.ow);
    const size_t nw = (size_t)(d.c_out * d.c_in * 9), nb = (size_t)d.c_out;
    float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(nb * 4), *dy = malloc(ny * 4);
    float *y = malloc(ny * 4), *dx[2], *dw[2], *db[2];
    double *ref = malloc(ny * 8), *dwref = malloc(nw * 8), *dbref = malloc(nb * 8);
    float *dw1[3], *db1[3]; /* each tile's weight gradients at 1 thread */
    for (int v = 0; v < 3; v++) dw1[v] = malloc(nw * 4), db1[v] = malloc(nb * 4);
    for (size_t i = 0; i < nx; i++) x[i] = 2 * strop__rng_uniform(&r) - 1;
    for (size_t i = 0; i < nw; i++) w[i] = 2 * strop__rng_uniform(&r) - 1;
    for (size_t i = 0; i < nb; i++) b[i] = 2 * strop__rng_uniform(&r) - 1;
    for (size_t i = 0; i < ny; i++) dy[i] = 2 * strop__rng_uniform(&r) - 1;
    for (int v = 0; v < 2; v++)
      dx[v] = malloc(nx * 4), dw[v] = malloc(nw * 4), db[v] = malloc(nb * 4);
    conv3x3_grad_ref(&d, x, dy, dwref, dbref);
    for (int bias = 0; bias < 2; bias++) {
      conv3x3_ref(&d, x, w, bias ? b : NULL, ref);
      double ymax = 0;
      for (size_t i = 0; i < ny; i++) ymax = fmax(ymax, fabs(ref[i]));
      static const int ms[] = {0, 2, 4};
      for (int threads = 1; threads <= 2; threads++)
        for (int v = 0; v < 3; v++) {
          strop__conv_winograd = ms[v];
          ck_assert_int_eq(strop_set_num_threads(threads), STROP_OK);
          const int chunks = strop__par_chunks(threads, d.n, 1);
          const size_t sf = strop__conv2d_scratch_floats(&d, 0, chunks, NULL),
                       sb = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
          float *scratch = strop__malloc_aligned((sf > sb ? sf : sb) * 4);
          for (size_t i = 0; i < ny; i++) y[i] = NAN;
          strop__conv2d_forward(&d, x, w, bias ? b : NULL, y, scratch, chunks, NULL);
          double err = 0;
          for (size_t i = 0; i < ny; i++) err = fmax(err, fabs(y[i] - ref[i]));
          const double tol = ms[v] == 4 ? 3e-5 : 3e-6;
          ck_assert_msg(err <= tol * ymax, "case %zu m %d bias %d threads %d: error %.3g of %.3g",
                        k, ms[v], bias, threads, err, ymax);
          /* the backward: v 0 (lowered) is the reference of the others */
          const int o = v > 0;
          memset(dx[o], 0, nx * 4), memset(dw[o], 0, nw * 4), memset(db[o], 0, nb * 4);
          strop__conv2d_backward(&d, x, w, dy, dx[o], dw[o], bias ? db[o] : NULL, scratch, chunks,
                                 NULL);
          strop__free_aligned(scratch);
          const double ew = err_of_max(dw[o], dwref, nw), eb = err_of_max(db[o], dbref, nb);
          ck_assert_msg(ew <= (o ? tol : 3e-6), "case %zu m %d threads %d: dw error %.3g of max",
                        k, ms[v], threads, ew);
          ck_assert_msg(!bias || eb <= (o ? tol : 3e-6),
                        "case %zu m %d threads %d: db error %.3g of max", k, ms[v], threads, eb);
          if (threads == 1) {
            memcpy(dw1[v], dw[o], nw * 4);
            memcpy(db1[v], db[o], nb * 4);
          } else if (o) { /* the lowered path sums per chunk */
            ck_assert_msg(!memcmp(dw1[v], dw[o], nw * 4),
                          "case %zu m %d: dw differs at 2 threads", k, ms[v]);
            ck_assert(!bias || !memcmp(db1[v], db[o], nb * 4));
          }
          if (!o) continue;
          double dmax = 0, derr = 0;
          for (size_t i = 0; i < nx; i++) {
            dmax = fmax(dmax, fabs(dx[0][i]));
            derr = fmax(derr, fabs(dx[1][i] - dx[0][i]));
          }
          ck_assert_msg(derr <= tol * dmax, "case %zu m %d threads %d: dx error %.3g of %.3g", k,
                        ms[v], threads, derr, dmax);
        }
    }
    strop__conv_winograd = -1;
    ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
    for (int v = 0; v < 2; v++) free(dx[v]), free(dw[v]), free(db[v]);
    for (int v = 0; v < 3; v++) free(dw1[v]), free(db1[v]);
    free(x), free(w), free(b), free(dy), free(y), free(ref), free(dwref), free(dbref);
  }
}
END_TEST

/* squeeze_excitation expands into torchvision's SqueezeExcitation names */
START_TEST(squeeze_excitation_parts) {
  int64_t sh[3] = {8, 5, 5};
  strop_model *m = one("squeeze_excitation", "input_channels=8 squeeze_channels=2", 3, sh, "se");
  static const char *const want[] = {"se.fc1.weight", "se.fc1.bias", "se.fc2.weight",
                                     "se.fc2.bias"};
  ck_assert_int_eq(strop_model_num_tensors(m), 4);
  for (int i = 0; i < 4; i++) {
    char name[64];
    ck_assert_int_gt(strop_model_tensor_name(m, i, name, sizeof name), 0);
    ck_assert_str_eq(name, want[i]);
  }
  static const char *const nodes[] = {"se.avgpool",          "se.fc1", "se.activation", "se.fc2",
                                      "se.scale_activation", "se.mul"};
  ck_assert_int_eq(m->n_nodes, 6);
  for (int i = 0; i < 6; i++) ck_assert_str_eq(m->nodes[i].name, nodes[i]);
  int64_t out[3];
  ck_assert_int_eq(strop_model_output_shape(m, out, 3), 3);
  ck_assert(out[0] == 8 && out[1] == 5 && out[2] == 5);
  strop_model_free(m);
}
END_TEST

START_TEST(bn_forward_reference) {
  /* [N=4, C=2]: channel 0 = 1,2,3,4 (mean 2.5, biased var 1.25), channel 1 constant 7 */
  int64_t sh[1] = {2};
  strop_model *m = one("batchnorm1d", "", 1, sh, "bn");
  float x[8] = {1, 7, 2, 7, 3, 7, 4, 7};
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 4, 1, NULL, &o), STROP_OK);
  const double is = 1.0 / sqrt(1.25 + 1e-5);
  const float want[8] = {(float)(-1.5 * is), 0, (float)(-0.5 * is), 0,
                         (float)(0.5 * is),  0, (float)(1.5 * is),  0};
  for (int i = 0; i < 8; i++) ck_assert_float_eq_tol(o->data[i], want[i], 1e-6f);
  strop__model_step_end(m);
  /* running stats: 0.9 * 0 + 0.1 * mean; 0.9 * 1 + 0.1 * unbiased var (5/3, 0) */
  strop__param *rm = strop__model_param_find(m, "bn.running_mean");
  strop__param *rv = strop__model_param_find(m, "bn.running_var");
  strop__param *nb = strop__model_param_find(m, "bn.num_batches_tracked");
  ck_assert_ptr_nonnull(nb);
  ck_assert_float_eq_tol(rm->data[0], 0.25f, 1e-7f);
  ck_assert_float_eq_tol(rm->data[1], 0.7f, 1e-7f);
  ck_assert_float_eq_tol(rv->data[0], (float)(0.9 + 0.1 * 5.0 / 3.0), 1e-7f);
  ck_assert_float_eq_tol(rv->data[1], 0.9f, 1e-7f);
  ck_assert_int_eq(nb->idata[0], 1);
  /* eval: normalise with the running statistics */
  ck_assert_int_eq(strop__model_forward_exec(m, x, 4, 0, NULL, &o), STROP_OK);
  ck_assert_float_eq_tol(o->data[0], (float)((1 - 0.25) / sqrt(rv->data[0] + 1e-5)), 1e-6f);
  ck_assert_int_eq(nb->idata[0], 1);
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* The batch norm kernels split the channels over the worker pool and sum BN_G channels side by
 * side (lib/ops/norm.c), on AVX-512 a lane per channel or in plain C (strop__bn_isa): every
 * output and gradient is bit for bit what one channel at a time in one double chain gives (the
 * reference below), at 1 and 3 threads, for channel counts and lengths that are and are not a
 * multiple of the group and of a vector, with and without the relu after the norm computed in
 * its passes (relu: the reference applies strop__relu_forward's and
 * strop__relu_backward_assign's selects apart), and `assign` writes what adding into zeros
 * gives. */
static void bn_ref_train(int64_t n, int64_t c, int64_t l, const float *x, const float *dy,
                         const float *gamma, const float *beta, float eps, int relu, float *y,
                         float *mean, float *invstd, float *var, float *dx, float *dg,
                         float *db) {
  const int64_t cl = c * l;
  const double cnt = (double)(n * l);
  float *g = malloc(sizeof(float) * (size_t)(n * cl));
  for (int64_t ch = 0; ch < c; ch++) {
    double s = 0.0, v = 0.0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < l; j++) s += x[i * cl + ch * l + j];
    const double mu = s / cnt;
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < l; j++) {
        const double t = x[i * cl + ch * l + j] - mu;
        v += t * t;
      }
    v /= cnt;
    const double is = 1.0 / sqrt(v + (double)eps);
    mean[ch] = (float)mu;
    invstd[ch] = (float)is;
    var[ch] = (float)v;
    const float a = (float)(is * gamma[ch]), b = (float)(beta[ch] - mu * a);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < l; j++) y[i * cl + ch * l + j] = x[i * cl + ch * l + j] * a + b;
  }
  memcpy(g, dy, sizeof(float) * (size_t)(n * cl));
  if (relu) { /* the relu layer's own kernels, one after the other */
    strop__relu_forward(y, y, (size_t)(n * cl));
    strop__relu_backward_assign(y, dy, g, (size_t)(n * cl));
  }
  for (int64_t ch = 0; ch < c; ch++) {
    double sum = 0.0, dot = 0.0;
    const double m2 = mean[ch], is2 = invstd[ch];
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < l; j++) {
        sum += g[i * cl + ch * l + j];
        dot += (x[i * cl + ch * l + j] - m2) * g[i * cl + ch * l + j];
      }
    dg[ch] += (float)(dot * is2);
    db[ch] += (float)sum;
    const float k = (float)(dot * is2 * is2 / cnt), gm = (float)(sum / cnt), fmu = (float)m2;
    const float w = (float)(is2 * gamma[ch]);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < l; j++) {
        const int64_t o = i * cl + ch * l + j;
        dx[o] += (g[o] - gm - (x[o] - fmu) * k) * w;
      }
  }
  free(g);
}

/* SyncBatchNorm's passes (ops/norm.h: the sums a group adds up, then the passes that use the
 * group's sums): with one process's sums they give the train-mode kernels' bits (forward,
 * statistics, dx added and assigned, dgamma, dbeta; without a fused relu, with it, and with the
 * residual sum and its relu after the norm, whose other operand's gradient too; both ISAs); with the batch split in two "processes" whose sums are added, each half's outputs
 * and dx are the whole batch's within the sums' order, and the halves' dgamma, dbeta add up
 * to the whole's. */
START_TEST(bn_group_passes) {
  static const int64_t cases[][3] = {{4, 13, 37}, {2, 16, 300}, {6, 7, 1}, {4, 24, 49}};
  const int isa = _i / 3, relu = _i % 3 == 1, withres = _i % 3 == 2;
  strop__bn_isa = isa;
  for (size_t cs = 0; cs < sizeof cases / sizeof cases[0]; cs++) {
    const int64_t n = cases[cs][0], c = cases[cs][1], l = cases[cs][2], tot = n * c * l;
    float *x = malloc(sizeof(float) * (size_t)tot), *dy = malloc(sizeof(float) * (size_t)tot);
    float *y0 = malloc(sizeof(float) * (size_t)tot), *y1 = malloc(sizeof(float) * (size_t)tot);
    float *dx0 = malloc(sizeof(float) * (size_t)tot), *dx1 = malloc(sizeof(float) * (size_t)tot);
    float *r = malloc(sizeof(float) * (size_t)tot), *dr0 = malloc(sizeof(float) * (size_t)tot),
          *dr1 = malloc(sizeof(float) * (size_t)tot);
    float gm[32], b[32], st0[3][32], st1[3][32], dg0[32], db0[32], dg1[32], db1[32], ab0[64],
        ab1[64];
    double sums[2][32], sq[2][32], mu[32], dsum[2][32], ddot[2][32];
    for (int64_t i = 0; i < tot; i++) {
      x[i] = 3.0f + sinf(0.37f * (float)i) * (1.0f + 0.01f * (float)(i % 11));
      dy[i] = cosf(0.11f * (float)i);
      dx0[i] = dx1[i] = 0.25f * sinf((float)i);
      r[i] = 0.7f * cosf(0.23f * (float)i) - 0.2f; /* the residual sum's other operand */
    }
    /* with the residual sum after the norm (and its relu): forward from r, backward through
     * the chain's output's select into r's gradient, written */
    const strop__bn_res fr = {r, 0, 1, NULL, NULL, 0, NULL, 0, NULL, NULL},
                        b0 = {NULL, 0, 1, y0, dr0, 1, NULL, 0, NULL, NULL},
                        b1 = {NULL, 0, 1, y1, dr1, 1, NULL, 0, NULL, NULL};
    const strop__bn_res *pf = withres ? &fr : NULL, *pb0 = withres ? &b0 : NULL,
                        *pb1 = withres ? &b1 : NULL;
    for (int64_t k = 0; k < c; k++) gm[k] = 0.5f + 0.1f * (float)k, b[k] = 0.2f * (float)k - 1.0f;
    float *rab0 = relu ? ab0 : NULL, *rab1 = relu ? ab1 : NULL;
    memset(dg0, 0, sizeof dg0);
    memset(db0, 0, sizeof db0);
    memset(dg1, 0, sizeof dg1);
    memset(db1, 0, sizeof db1);
    strop__batchnorm_forward_train(n, c, l, x, gm, b, 1e-5f, rab0, y0, st0[0], st0[1], st0[2],
                                   pf);
    strop__batchnorm_backward_train(n, c, l, x, dy, rab0, gm, st0[0], st0[1], dx0, dg0, db0, 0,
                                    pb0);
    /* one process */
    const double cnt = (double)(n * l);
    strop__batchnorm_sums(n, c, l, x, NULL, sums[0]);
    for (int64_t k = 0; k < c; k++) mu[k] = sums[0][k] / cnt;
    strop__batchnorm_sums(n, c, l, x, mu, sq[0]);
    strop__batchnorm_forward_sums(n, c, l, x, gm, b, 1e-5f, sums[0], sq[0], cnt, rab1, y1, st1[0],
                                  st1[1], st1[2], pf);
    strop__batchnorm_dots(n, c, l, x, dy, rab1, st1[0], st1[1], dg1, db1, dsum[0], ddot[0], pb1);
    strop__batchnorm_backward_sums(n, c, l, x, dy, rab1, gm, st1[0], st1[1], dsum[0], ddot[0],
                                   cnt, dx1, 0, pb1);
    ck_assert_int_eq(memcmp(y0, y1, sizeof(float) * (size_t)tot), 0);
    for (int q = 0; q < 3; q++) ck_assert_int_eq(memcmp(st0[q], st1[q], sizeof(float) * c), 0);
    if (relu) ck_assert_int_eq(memcmp(ab0, ab1, sizeof(float) * 2 * c), 0);
    ck_assert_int_eq(memcmp(dx0, dx1, sizeof(float) * (size_t)tot), 0);
    ck_assert_int_eq(memcmp(dg0, dg1, sizeof(float) * c), 0);
    ck_assert_int_eq(memcmp(db0, db1, sizeof(float) * c), 0);
    if (withres) ck_assert_int_eq(memcmp(dr0, dr1, sizeof(float) * (size_t)tot), 0);
    for (int64_t i = 0; i < tot; i++) dx1[i] = NAN; /* assign: every element written */
    strop__batchnorm_backward_sums(n, c, l, x, dy, rab1, gm, st1[0], st1[1], dsum[0], ddot[0],
                                   cnt, dx1, 1, pb1);
    for (int64_t i = 0; i < tot; i++) dx0[i] = 0.0f;
    strop__batchnorm_backward_train(n, c, l, x, dy, rab0, gm, st0[0], st0[1], dx0, NULL, NULL, 0,
                                    pb0);
    ck_assert_int_eq(memcmp(dx0, dx1, sizeof(float) * (size_t)tot), 0);
    /* two processes: rows [0, h) and [h, n), their sums added */
    const int64_t h = n / 2, off = h * c * l;
    const int64_t rows[2] = {h, n - h}, at[2] = {0, off};
    for (int p = 0; p < 2; p++) strop__batchnorm_sums(rows[p], c, l, x + at[p], NULL, sums[p]);
    for (int64_t k = 0; k < c; k++) mu[k] = (sums[0][k] + sums[1][k]) / cnt;
    for (int p = 0; p < 2; p++) strop__batchnorm_sums(rows[p], c, l, x + at[p], mu, sq[p]);
    for (int64_t k = 0; k < c; k++) sums[0][k] += sums[1][k], sq[0][k] += sq[1][k];
    float dgh[32] = {0}, dbh[32] = {0};
    strop__bn_res fh[2], bh[2]; /* each half's rows of r, the output and r's gradient */
    for (int p = 0; p < 2; p++) {
      fh[p] = (strop__bn_res){r + at[p], 0, 1, NULL, NULL, 0, NULL, 0, NULL, NULL};
      bh[p] = (strop__bn_res){NULL, 0, 1, y1 + at[p], dr1 + at[p], 1, NULL, 0, NULL, NULL};
      strop__batchnorm_forward_sums(rows[p], c, l, x + at[p], gm, b, 1e-5f, sums[0], sq[0], cnt,
                                    rab1, y1 + at[p], st1[0], st1[1], st1[2],
                                    withres ? &fh[p] : NULL);
      strop__batchnorm_dots(rows[p], c, l, x + at[p], dy + at[p], rab1, st1[0], st1[1], dgh, dbh,
                            dsum[p], ddot[p], withres ? &bh[p] : NULL);
    }
    for (int64_t k = 0; k < c; k++) dsum[0][k] += dsum[1][k], ddot[0][k] += ddot[1][k];
    for (int p = 0; p < 2; p++)
      strop__batchnorm_backward_sums(rows[p], c, l, x + at[p], dy + at[p], rab1, gm, st1[0],
                                     st1[1], dsum[0], ddot[0], cnt, dx1 + at[p], 1,
                                     withres ? &bh[p] : NULL);
    for (int64_t i = 0; i < tot; i++) {
      ck_assert_msg(fabsf(y1[i] - y0[i]) <= 1e-5f * (1.0f + fabsf(y0[i])), "y[%lld]",
                    (long long)i);
      ck_assert_msg(fabsf(dx1[i] - dx0[i]) <= 1e-4f * (1.0f + fabsf(dx0[i])), "dx[%lld] %g %g",
                    (long long)i, (double)dx1[i], (double)dx0[i]);
    }
    for (int64_t k = 0; k < c; k++) {
      ck_assert(fabsf(dgh[k] - dg0[k]) <= 1e-4f * (1.0f + fabsf(dg0[k])));
      ck_assert(fabsf(dbh[k] - db0[k]) <= 1e-4f * (1.0f + fabsf(db0[k])));
    }
    free(x);
    free(dy);
    free(y0);
    free(y1);
    free(dx0);
    free(dx1);
    free(r);
    free(dr0);
    free(dr1);
  }
  strop__bn_isa = 0;
}
END_TEST

/* The dot pass of a norm with a residual chain after it stages the chain's gradient an image at
 * a time when given scratch (strop__bn_res.stage, lib/ops/norm.c): the train-mode backward,
 * SyncBatchNorm's dots and the eval-mode backward give the same bits with the stage, without it
 * and in plain C — with and without the relu after the sum (res.out), the sum's other operand's
 * gradient written, added to or not asked for, with and without a relu mask before (relu_ab),
 * at 1 and 3 threads, for channel counts and lengths that are and are not a multiple of the
 * group and of a vector. Where the CPU has the pass (strop__batchnorm_stage_floats > 0) the
 * stage must have been written (the staged path ran) unless the chain has nothing to stage.
 * With x held as its deviations from the mean in BF16 (strop__bn_res.dev, x itself NULL; no
 * relu mask before then), every path gives the bits of plain C reading those deviations
 * widened as x with means of 0. With the chain's output held in BF16 with its signs
 * (strop__bn_res.out_h, out NULL; values of either sign that round to zero among them), every
 * path gives the bits of plain C reading it in FP32. */
typedef struct bn_res_out {
  float *dx, *dr, *dr2, *dx3, *dr3;
  float dg[32], db[32], dg2[32], db2[32], dg3[32], db3[32];
  double sum[32], dot[32];
} bn_res_out;

static void bn_res_run(int64_t n, int64_t c, int64_t l, const float *x, const float *dy,
                       const float *ab, const float *gm, const float *mean, const float *invstd,
                       const float *var, const float *out, int drmode, float *stage, size_t fl,
                       const uint16_t *dev, const uint16_t *outh, bn_res_out *o) {
  const int64_t tot = n * c * l;
  float *dr[3] = {o->dr, o->dr2, o->dr3};
  for (int q = 0; q < 3; q++)
    for (int64_t i = 0; i < tot; i++) dr[q][i] = 0.5f * sinf(0.3f * (float)i);
  for (int64_t i = 0; i < tot; i++) o->dx[i] = o->dx3[i] = 0.25f * cosf((float)i);
  memset(o->dg, 0, sizeof o->dg), memset(o->db, 0, sizeof o->db);
  memset(o->dg2, 0, sizeof o->dg2), memset(o->db2, 0, sizeof o->db2);
  memset(o->dg3, 0, sizeof o->dg3), memset(o->db3, 0, sizeof o->db3);
  strop__bn_res r[3];
  for (int q = 0; q < 3; q++)
    r[q] = (strop__bn_res){
        NULL, 0,   out || outh, outh ? NULL : out, drmode == 2 ? NULL : dr[q], drmode == 0, stage,
        fl,   dev, outh};
  strop__batchnorm_backward_train(n, c, l, x, dy, ab, gm, mean, invstd, o->dx, o->dg, o->db, 0,
                                  &r[0]);
  strop__batchnorm_dots(n, c, l, x, dy, ab, mean, invstd, o->dg2, o->db2, o->sum, o->dot, &r[1]);
  strop__batchnorm_backward_eval(n, c, l, x, dy, ab, gm, mean, var, 1e-5f, o->dx3, o->dg3, o->db3,
                                 0, &r[2]);
}

START_TEST(bn_res_stage_same_bits) {
  static const int64_t cases[][3] = {
      {3, 13, 37}, {2, 16, 300}, {5, 7, 1}, {4, 24, 49}, {2, 9, 20}};
  /* dr: 0 written, 1 added to, 2 none; dev: x held as its deviations; held: the chain's
   * output held in BF16 with its signs (strop__bn_res.out_h) in the runs after the first */
  const int with_out = _i % 2, drmode = (_i / 2) % 3, dev = _i / 6 % 2, held = _i / 12;
  for (size_t cs = 0; cs < sizeof cases / sizeof cases[0]; cs++) {
    const int64_t n = cases[cs][0], c = cases[cs][1], l = cases[cs][2], tot = n * c * l;
    const size_t bytes = sizeof(float) * (size_t)tot;
    float *x = malloc(bytes), *dy = malloc(bytes), *y = malloc(bytes);
    float gm[32], b[32], mean[32], invstd[32], var[32], ab[64], zero[32] = {0};
    float *xd = malloc(bytes);
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)tot),
             *yh = malloc(sizeof(uint16_t) * (size_t)tot);
    bn_res_out o[5];
    for (int v = 0; v < 5; v++) {
      o[v].dx = malloc(bytes), o[v].dr = malloc(bytes), o[v].dr2 = malloc(bytes);
      o[v].dx3 = malloc(bytes), o[v].dr3 = malloc(bytes);
    }
    for (int64_t i = 0; i < tot; i++) {
      x[i] = 3.0f + sinf(0.37f * (float)i) * (1.0f + 0.01f * (float)(i % 11));
      dy[i] = cosf(0.11f * (float)i);
    }
    for (int64_t k = 0; k < c; k++) gm[k] = 0.5f + 0.1f * (float)k, b[k] = 0.2f * (float)k - 1.0f;
    const float *rab = cs % 2 && !dev ? ab : NULL;
    /* the statistics, and a chain output of both signs (the normalised x) */
    strop__batchnorm_forward_train(n, c, l, x, gm, b, 1e-5f, cs % 2 ? ab : NULL, y, mean, invstd,
                                   var, NULL);
    if (cs % 2)
      strop__batchnorm_forward_train(n, c, l, x, gm, b, 1e-5f, NULL, y, mean, invstd, var, NULL);
    if (held) { /* outputs that round to zero (held as a marker with their sign), and -0 */
      const uint32_t odd[4] = {0x00000100u, 0x80000100u, 0x80000000u, 0x00008000u};
      for (int q = 0; q < 4; q++) memcpy(&y[(q * 31 + 5) % tot], &odd[q], 4);
    }
    const float *out = with_out ? y : NULL;
    strop__bf16_compact_par(y, yh, (size_t)tot);
    const uint16_t *outh = with_out && held ? yh : NULL;
    /* the deviations held, and widened */
    strop__bf16_compact_centred_par(x, h, (size_t)(n * c), (size_t)l, (size_t)c, mean);
    for (int64_t i = 0; i < tot; i++) xd[i] = strop__bf16_to_f32(h[i]);
    const float *xin = dev ? NULL : x;
    const uint16_t *hin = dev ? h : NULL;
    static const int threads[2] = {1, 3};
    for (int t = 0; t < 2; t++) {
      ck_assert_int_eq(strop_set_num_threads(threads[t]), STROP_OK);
      const size_t fl = strop__batchnorm_stage_floats(threads[t], n, c, l);
      float *stage = malloc(sizeof(float) * (fl ? fl : 1));
      for (size_t i = 0; i < fl; i++) stage[i] = NAN;
      strop__bn_isa = 1; /* plain C */
      bn_res_run(n, c, l, xin, dy, rab, gm, mean, invstd, var, out, drmode, NULL, 0, hin, NULL,
                 &o[0]);
      if (dev) /* the deviations widened as x, around 0 */
        bn_res_run(n, c, l, xd, dy, NULL, gm, zero, invstd, var, out, drmode, NULL, 0, NULL, outh,
                   &o[3]);
      if (outh)
        bn_res_run(n, c, l, xin, dy, rab, gm, mean, invstd, var, out, drmode, NULL, 0, hin, outh,
                   &o[4]);
      strop__bn_isa = 0; /* the CPU's best, without and with the stage */
      bn_res_run(n, c, l, xin, dy, rab, gm, mean, invstd, var, out, drmode, NULL, 0, hin, outh,
                 &o[1]);
      bn_res_run(n, c, l, xin, dy, rab, gm, mean, invstd, var, out, drmode, stage, fl, hin, outh,
                 &o[2]);
      if (fl) {
        size_t written = 0;
        for (size_t i = 0; i < fl; i++) written += !isnan(stage[i]);
        /* (a chain with neither the relu nor an operand's gradient has nothing to stage) */
        ck_assert_msg((written > 0) == (with_out || drmode != 2),
                      "the stage was%s used (n %lld c %lld l %lld)", written ? "" : " not",
                      (long long)n, (long long)c, (long long)l);
      }
      for (int v = 1; v < 5; v++) {
        if ((v == 3 && !dev) || (v == 4 && !outh)) continue;
        ck_assert_int_eq(memcmp(o[0].dx, o[v].dx, bytes), 0);
        ck_assert_int_eq(memcmp(o[0].dx3, o[v].dx3, bytes), 0);
        ck_assert_int_eq(memcmp(o[0].dr, o[v].dr, bytes), 0);
        ck_assert_int_eq(memcmp(o[0].dr2, o[v].dr2, bytes), 0);
        ck_assert_int_eq(memcmp(o[0].dr3, o[v].dr3, bytes), 0);
        const size_t cb = sizeof(float) * (size_t)c, cd = sizeof(double) * (size_t)c;
        ck_assert_int_eq(memcmp(o[0].dg, o[v].dg, cb), 0);
        ck_assert_int_eq(memcmp(o[0].db, o[v].db, cb), 0);
        ck_assert_int_eq(memcmp(o[0].dg2, o[v].dg2, cb), 0);
        ck_assert_int_eq(memcmp(o[0].db2, o[v].db2, cb), 0);
        ck_assert_int_eq(memcmp(o[0].dg3, o[v].dg3, cb), 0);
        ck_assert_int_eq(memcmp(o[0].db3, o[v].db3, cb), 0);
        ck_assert_int_eq(memcmp(o[0].sum, o[v].sum, cd), 0);
        ck_assert_int_eq(memcmp(o[0].dot, o[v].dot, cd), 0);
      }
      free(stage);
    }
    ck_assert_int_eq(strop_set_num_threads(0), STROP_OK);
    for (int v = 0; v < 5; v++)
      free(o[v].dx), free(o[v].dr), free(o[v].dr2), free(o[v].dx3), free(o[v].dr3);
    free(x), free(dy), free(y), free(xd), free(h), free(yh);
  }
  strop__bn_isa = 0;
}
END_TEST

START_TEST(bn_kernels_match_serial) {
  static const int64_t cases[][3] = {{3, 13, 37}, {2, 16, 300}, {5, 7, 1},  {4, 64, 49},
                                     {2, 24, 64}, {1, 8, 3},    {3, 9, 196}};
  const int isa = _i / 2, relu = _i % 2;
  strop__bn_isa = isa;
  for (size_t cs = 0; cs < sizeof cases / sizeof cases[0]; cs++) {
    const int64_t n = cases[cs][0], c = cases[cs][1], l = cases[cs][2], tot = n * c * l;
    float *x = malloc(sizeof(float) * (size_t)tot), *dy = malloc(sizeof(float) * (size_t)tot);
    float *y0 = malloc(sizeof(float) * (size_t)tot), *y1 = malloc(sizeof(float) * (size_t)tot);
    float *dx0 = malloc(sizeof(float) * (size_t)tot), *dx1 = malloc(sizeof(float) * (size_t)tot);
    float *dx2 = malloc(sizeof(float) * (size_t)tot), *g = malloc(sizeof(float) * (size_t)tot);
    float gm[64], b[64], st0[3][64], st1[3][64], dg0[64], db0[64], dg1[64], db1[64];
    for (int64_t i = 0; i < tot; i++) {
      x[i] = 3.0f + sinf(0.37f * (float)i) * (1.0f + 0.01f * (float)(i % 11));
      dy[i] = cosf(0.11f * (float)i);
      dx0[i] = dx1[i] = 0.25f * sinf((float)i);
    }
    for (int64_t k = 0; k < c; k++) gm[k] = 0.5f + 0.1f * (float)k, b[k] = 0.2f * (float)k - 1.0f;
    memset(dg0, 0, sizeof dg0);
    memset(db0, 0, sizeof db0);
    bn_ref_train(n, c, l, x, dy, gm, b, 1e-5f, relu, y0, st0[0], st0[1], st0[2], dx0, dg0, db0);
    float ab[128];
    float *rab = relu ? ab : NULL; /* each channel's a, b of the fused relu's mask */
    static const int threads[2] = {1, 3};
    for (int r = 0; r < 2; r++) {
      ck_assert_int_eq(strop_set_num_threads(threads[r]), STROP_OK);
      for (int64_t i = 0; i < tot; i++) dx1[i] = 0.25f * sinf((float)i), dx2[i] = NAN;
      memset(dg1, 0, sizeof dg1);
      memset(db1, 0, sizeof db1);
      strop__batchnorm_forward_train(n, c, l, x, gm, b, 1e-5f, rab, y1, st1[0], st1[1], st1[2],
                                     NULL);
      strop__batchnorm_backward_train(n, c, l, x, dy, rab, gm, st1[0], st1[1], dx1, dg1, db1, 0,
                                      NULL);
      ck_assert_int_eq(memcmp(y0, y1, sizeof(float) * (size_t)tot), 0);
      for (int q = 0; q < 3; q++)
        ck_assert_int_eq(memcmp(st0[q], st1[q], sizeof(float) * (size_t)c), 0);
      ck_assert_int_eq(memcmp(dx0, dx1, sizeof(float) * (size_t)tot), 0);
      ck_assert_int_eq(memcmp(dg0, dg1, sizeof(float) * (size_t)c), 0);
      ck_assert_int_eq(memcmp(db0, db1, sizeof(float) * (size_t)c), 0);
      /* assign: every element written, as if added into zeros */
      strop__batchnorm_backward_train(n, c, l, x, dy, rab, gm, st1[0], st1[1], dx2, NULL, NULL, 1,
                                      NULL);
      for (int64_t i = 0; i < tot; i++) dx1[i] = 0.0f;
      strop__batchnorm_backward_train(n, c, l, x, dy, rab, gm, st1[0], st1[1], dx1, NULL, NULL, 0,
                                      NULL);
      ck_assert_int_eq(memcmp(dx1, dx2, sizeof(float) * (size_t)tot), 0);
      /* eval mode, running statistics: the same with assign and added into zeros; with the
       * relu, what the plain eval forward and the relu's kernels give apart */
      strop__batchnorm_forward_eval(n, c, l, x, gm, b, st1[0], st1[2], 1e-5f, NULL, y1, NULL);
      memcpy(g, dy, sizeof(float) * (size_t)tot);
      if (relu) {
        strop__relu_forward(y1, y1, (size_t)tot);
        strop__relu_backward_assign(y1, dy, g, (size_t)tot);
      }
      strop__batchnorm_forward_eval(n, c, l, x, gm, b, st1[0], st1[2], 1e-5f, rab, y0, NULL);
      ck_assert_int_eq(memcmp(y0, y1, sizeof(float) * (size_t)tot), 0);
      for (int64_t i = 0; i < tot; i++) dx2[i] = NAN, dx1[i] = 0.0f;
      memset(dg1, 0, sizeof dg1);
      memset(dg0, 0, sizeof dg0);
      strop__batchnorm_backward_eval(n, c, l, x, dy, rab, gm, st1[0], st1[2], 1e-5f, dx2, dg1,
                                     NULL, 1, NULL);
      strop__batchnorm_backward_eval(n, c, l, x, g, NULL, gm, st1[0], st1[2], 1e-5f, dx1, dg0,
                                     NULL, 0, NULL);
      ck_assert_int_eq(memcmp(dx1, dx2, sizeof(float) * (size_t)tot), 0);
      ck_assert_int_eq(memcmp(dg0, dg1, sizeof(float) * (size_t)c), 0);
      strop__batchnorm_forward_eval(n, c, l, x, gm, b, st1[0], st1[2], 1e-5f, NULL, y1, NULL);
      for (int64_t k = 0; k < c; k++) {
        const double is = 1.0 / sqrt((double)st1[2][k] + 1e-5);
        const double a = (float)(is * gm[k]);
        ck_assert_float_eq(y1[k * l],
                           (float)(x[k * l] * (float)a + (float)(b[k] - st1[0][k] * a)));
        ck_assert(isfinite(dg1[k]));
      }
      /* the next thread count compares with the train-mode reference again */
      for (int64_t i = 0; i < tot; i++) dx0[i] = 0.25f * sinf((float)i);
      memset(dg0, 0, sizeof dg0);
      memset(db0, 0, sizeof db0);
      bn_ref_train(n, c, l, x, dy, gm, b, 1e-5f, relu, y0, st0[0], st0[1], st0[2], dx0, dg0, db0);
    }
    ck_assert_int_eq(strop_set_num_threads(0), STROP_OK);
    free(x), free(dy), free(y0), free(y1), free(dx0), free(dx1), free(dx2), free(g);
  }
  strop__bn_isa = 0;
}
END_TEST

/* A warm conv + pool + bn training step makes no heap allocation. */
START_TEST(warm_step_no_alloc) {
  int64_t sh[3] = {2, 8, 8};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(3, sh, &m), STROP_OK);
  ck_assert_int_eq(
      strop_model_add(m, "c", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL),
      STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "bn", "batchnorm2d", "", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "p", "maxpool2d", "kernel_size=2", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "a", "avgpool2d", "kernel_size=2", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "g", "global_avgpool", "", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 3), STROP_OK);
  float x[3 * 2 * 64], dout[3 * 4];
  for (int i = 0; i < 3 * 2 * 64; i++) x[i] = sinf((float)i);
  for (int i = 0; i < 12; i++) dout[i] = cosf((float)i);
  m->want_input_grad = 1;
  int64_t before = 0;
  for (int step = 0; step < 3; step++) {
    if (step == 2) before = strop__alloc_count();
    const strop__act *o;
    ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
    ck_assert_int_eq(strop__model_forward_exec(m, x, 3, 1, NULL, &o), STROP_OK);
    ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
    strop__model_step_end(m);
  }
  ck_assert_int_eq(strop__alloc_count() - before, 0);
  strop_model_free(m);
}
END_TEST

/* The batch, GEMMs, activations and pools split across threads: the same thread count gives
 * the same bits run after run, and other counts agree to float rounding (conv weight
 * gradients are summed per chunk of images, then the chunks in order). */
static void run_grads(strop_model *m, const float *x, const float *dout, int64_t n, float *out,
                      float *grads, size_t *n_grads) {
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_int_eq(strop__model_forward_exec(m, x, n, 1, NULL, &o), STROP_OK);
  memcpy(out, o->data, sizeof(float) * (size_t)n * strop__shape_numel(&o->shape));
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad) {
      memcpy(grads + k, m->params[i]->grad, sizeof(float) * m->params[i]->numel);
      k += m->params[i]->numel;
    }
  size_t in = (size_t)n * strop__shape_numel(&m->in_shape);
  memcpy(grads + k, m->input_grad, sizeof(float) * in);
  *n_grads = k + in;
  strop__model_step_end(m);
}

START_TEST(threads_agree) {
  int64_t sh[3] = {4, 9, 9};
  static const strop_test_node nodes[] = {
      {"c1", "conv2d", "out_channels=6 kernel_size=3 padding=1", NULL},
      {"r1", "relu", "", NULL},
      {"g", "conv2d", "out_channels=6 kernel_size=3 groups=3 padding=1 bias=false", NULL},
      {"pw", "conv2d", "out_channels=5 kernel_size=1", NULL},
      {"t", "tanh", "", NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"a", "avgpool2d", "kernel_size=2 stride=1", NULL},
      {"f", "flatten", "", NULL},
      {"fc", "linear", "out_features=40", NULL},
      {"sm", "log_softmax", "", NULL},
  };
  strop_model *m = strop_test_build(3, sh, nodes, (int)(sizeof nodes / sizeof nodes[0]), 5);
  m->want_input_grad = 1;
  enum { N = 7, IN = N * 4 * 81, OUT = N * 40, G = 20000 };
  static float x[IN], dout[OUT], out[3][OUT], grads[3][G];
  for (int i = 0; i < IN; i++) x[i] = sinf(0.37f * (float)i);
  for (int i = 0; i < OUT; i++) dout[i] = cosf(0.11f * (float)i);
  size_t ng[3];
  static const int threads[3] = {1, 3, 3};
  for (int r = 0; r < 3; r++) {
    ck_assert_int_eq(strop_set_num_threads(threads[r]), STROP_OK);
    run_grads(m, x, dout, N, out[r], grads[r], &ng[r]);
    ck_assert_uint_le(ng[r], G);
  }
  ck_assert_uint_eq(ng[0], ng[1]);
  ck_assert_int_eq(memcmp(out[1], out[2], sizeof out[1]), 0);
  ck_assert_int_eq(memcmp(grads[1], grads[2], sizeof(float) * ng[1]), 0);
  ck_assert_double_le(strop_test_max_rel(out[1], out[0], OUT, 1e-6, NULL), 1e-5);
  ck_assert_double_le(strop_test_max_rel(grads[1], grads[0], ng[0], 1e-4, NULL), 1e-4);
  ck_assert_int_eq(strop_set_num_threads(0), STROP_OK);
  strop_model_free(m);
}
END_TEST

/* A conv followed by a relu and/or a max-pool runs them in its epilogue, image by image
 * (lib/ops/conv.c): outputs, every parameter gradient and the input gradient are the unfused
 * graph's bit for bit, at 1 and 3 threads, also with ties (all-negative windows), NaN inputs,
 * overlapping, padded and dilated windows and odd sizes; a fan-out or a kept activation stops
 * the fusion. A residual sum whose sole reader is a relu computes it likewise (layers/merge.c). */
static const struct fuse_case {
  int64_t shape[3];
  int fused_nodes; /* how many nodes the fusion should absorb in this model */
  strop_test_node nodes[8];
} FUSE[] = {
    {{3, 8, 8},
     2,
     {{"c", "conv2d", "out_channels=5 kernel_size=3 padding=1", NULL},
      {"r", "relu", "", NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"f", "flatten", "", NULL},
      {"fc", "linear", "out_features=7", NULL}}},
    {{2, 9, 9},
     4,
     {{"c", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL},
      {"r", "relu", "", NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"c2", "conv2d", "out_channels=6 kernel_size=2 stride=1", NULL},
      {"r2", "relu", "", NULL},
      {"p2", "maxpool2d", "kernel_size=3 stride=2 padding=1", NULL},
      {"f", "flatten", "", NULL}}},
    {{4, 11, 10},
     2,
     {{"c", "conv2d", "out_channels=6 kernel_size=3 stride=2 groups=2 bias=false", NULL},
      {"r", "relu", "", NULL},
      {"c2", "conv2d", "out_channels=3 kernel_size=1", NULL},
      {"p", "maxpool2d", "kernel_size=2 stride=1 dilation=2", NULL},
      {"f", "flatten", "", NULL}}},
    /* the relu is read twice: the first conv takes it, not the pool after it */
    {{2, 6, 6},
     2,
     {{"c", "conv2d", "out_channels=3 kernel_size=3 padding=1", NULL},
      {"r", "relu", "", NULL},
      {"p", "maxpool2d", "kernel_size=2", "r"},
      {"q", "avgpool2d", "kernel_size=2", "r"},
      {"s", "add", "", "p,q"},
      {"c2", "conv2d", "out_channels=2 kernel_size=1", "s"},
      {"r2", "relu", "", NULL},
      {"f", "flatten", "", NULL}}},
    /* a residual block's end: the sum's sole reader is a relu, which the add computes */
    {{3, 6, 6},
     2,
     {{"c", "conv2d", "out_channels=4 kernel_size=3 padding=1", NULL},
      {"r", "relu", "", NULL},
      {"c2", "conv2d", "out_channels=4 kernel_size=3 padding=1", "r"},
      {"s", "add", "", "c2,r"},
      {"r2", "relu", "", NULL},
      {"f", "flatten", "", NULL}}},
    /* three inputs (the sum, then the relu, per slice) */
    {{2, 5, 7},
     2,
     {{"c", "conv2d", "out_channels=3 kernel_size=3 padding=1", NULL},
      {"r", "relu", "", NULL},
      {"c2", "conv2d", "out_channels=3 kernel_size=1", "r"},
      {"c3", "conv2d", "out_channels=3 kernel_size=3 padding=1", "r"},
      {"s", "add", "", "c2,r,c3"},
      {"r2", "relu", "", NULL},
      {"f", "flatten", "", NULL}}},
};
#define N_FUSE ((int)(sizeof FUSE / sizeof FUSE[0]))

static int count_fused(const strop_model *m) {
  int k = 0;
  for (int i = 0; i < m->n_nodes; i++) k += m->nodes[i].fused < 0;
  return k;
}

START_TEST(fused_chains_match_unfused) {
  const struct fuse_case *fc = &FUSE[_i];
  int nn = 0;
  while (nn < 8 && fc->nodes[nn].name) nn++;
  strop_model *m = strop_test_build(3, fc->shape, fc->nodes, nn, 11);
  m->want_input_grad = 1;
  enum { N = 5, CAP = 40000 };
  const int64_t per = fc->shape[0] * fc->shape[1] * fc->shape[2];
  int64_t od[4];
  int orank = strop_model_output_shape(m, od, 4);
  int64_t on = N;
  for (int i = 0; i < orank; i++) on *= od[i];
  ck_assert_int_le(N * per, CAP);
  ck_assert_int_le(on, CAP);
  static float x[CAP], dout[CAP], out[2][CAP], grads[2][2 * CAP];
  for (int variant = 0; variant < 3; variant++) {
    for (int64_t i = 0; i < N * per; i++) x[i] = sinf(0.37f * (float)i + 0.1f * (float)variant);
    if (variant == 1) {
      /* sample 1 all negative after a zeroed conv: every relu output is 0, windows tie */
      for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i]->name, "c.weight"))
          memset(m->params[i]->data, 0, sizeof(float) * m->params[i]->numel);
    }
    if (variant == 2) x[per + 3] = NAN; /* a NaN inside sample 1 */
    for (int64_t i = 0; i < on; i++) dout[i] = cosf(0.11f * (float)i);
    for (int t = 1; t <= 3; t += 2) {
      ck_assert_int_eq(strop_set_num_threads(t), STROP_OK);
      size_t ng[2];
      for (int r = 0; r < 2; r++) {
        m->no_fusion = r;
        run_grads(m, x, dout, N, out[r], grads[r], &ng[r]);
        ck_assert_uint_le(ng[r], 2 * CAP);
        ck_assert_int_eq(count_fused(m), r ? 0 : fc->fused_nodes);
      }
      ck_assert_uint_eq(ng[0], ng[1]);
      ck_assert_msg(memcmp(out[0], out[1], sizeof(float) * (size_t)on) == 0,
                    "case %d variant %d threads %d: outputs differ", _i, variant, t);
      for (size_t i = 0; i < ng[0]; i++)
        ck_assert_msg(memcmp(&grads[0][i], &grads[1][i], sizeof(float)) == 0,
                      "case %d variant %d threads %d: gradient %zu: fused %.9g, unfused %.9g", _i,
                      variant, t, i, (double)grads[0][i], (double)grads[1][i]);
    }
  }
  /* an activation the caller keeps (the trunk-output cache) is stored, so no chain runs
   * through it */
  m->no_fusion = 0;
  for (int keep = 0; keep < 2; keep++) {
    m->keep_act = keep;
    const strop__act *o;
    ck_assert_int_eq(strop__model_forward_exec(m, x, N, 0, NULL, &o), STROP_OK);
    ck_assert_ptr_nonnull(m->acts[keep].data);
    ck_assert_int_eq(m->nodes[0].fused, keep);
    strop__model_step_end(m);
  }
  m->keep_act = -1;
  ck_assert_int_eq(strop_set_num_threads(0), STROP_OK);
  strop_model_free(m);
}
END_TEST

/* ---- a frozen batch norm folded into the frozen conv before it ---- */

/* conv -> batchnorm2d -> ... with the norm's affine and running statistics set away from
 * their defaults, and `freeze` frozen (the norm then runs on its running statistics) */
static const struct fold_case {
  int64_t shape[3];
  strop_test_node nodes[7];
} FOLD[] = {
    /* the ResNet pattern: a conv without bias, the norm, a relu and a max-pool (one unit) */
    {{3, 8, 8},
     {{"c", "conv2d", "out_channels=5 kernel_size=3 padding=1 bias=false", NULL},
      {"bn", "batchnorm2d", "", NULL},
      {"r", "relu", "", NULL},
      {"p", "maxpool2d", "kernel_size=2", NULL},
      {"f", "flatten", "", NULL},
      {"fc", "linear", "out_features=4", NULL}}},
    /* a conv with its own bias, strided, grouped; nothing after the norm */
    {{4, 9, 7},
     {{"c", "conv2d", "out_channels=6 kernel_size=3 stride=2 groups=2", NULL},
      {"bn", "batchnorm2d", "eps=0.001", NULL},
      {"f", "flatten", "", NULL},
      {"fc", "linear", "out_features=3", NULL}}},
    /* MobileNet's depthwise conv (a direct kernel: the norm folds, the relu runs apart) */
    {{3, 7, 7},
     {{"c", "conv2d", "out_channels=6 kernel_size=3 padding=1 groups=3 bias=false", NULL},
      {"bn", "batchnorm2d", "", NULL},
      {"r", "relu", "", NULL},
      {"f", "flatten", "", NULL},
      {"fc", "linear", "out_features=2", NULL}}},
};
#define N_FOLD ((int)(sizeof FOLD / sizeof FOLD[0]))

static strop_model *fold_model(int i) {
  const struct fold_case *fc = &FOLD[i];
  int nn = 0;
  while (nn < 7 && fc->nodes[nn].name) nn++;
  strop_model *m = strop_test_build(3, fc->shape, fc->nodes, nn, 21 + (uint64_t)i);
  const int64_t C = m->nodes[0].out_shape.d[0];
  float v[4][16];
  for (int64_t c = 0; c < C; c++) {
    v[0][c] = 0.5f + 0.3f * (float)c;              /* weight */
    v[1][c] = 0.2f * (float)c - 0.4f;              /* bias */
    v[2][c] = 0.1f * sinf((float)c + 1.0f);        /* running_mean */
    v[3][c] = 0.3f + 0.25f * (float)((c * 7) % 5); /* running_var */
  }
  static const char *const names[4] = {"bn.weight", "bn.bias", "bn.running_mean",
                                       "bn.running_var"};
  for (int k = 0; k < 4; k++) set_param(m, names[k], v[k], (size_t)C);
  ck_assert_int_eq(strop_model_freeze(m, "c.*"), STROP_OK);
  ck_assert_int_eq(strop_model_freeze(m, "bn.*"), STROP_OK);
  m->want_input_grad = 1;
  return m;
}

/* Output, the trainable parameters' gradients and the input gradient of one step of m in
 * mode `training`, folded (fold = 1) or with every node run by itself; returns the output
 * count, *ng the gradient count. 1 in *folded when the norm (node 1) was folded. */
static size_t fold_run(strop_model *m, int fold, int training, const float *x, int64_t n,
                       float *out, float *grads, size_t *ng, int *folded) {
  const strop__act *o;
  m->no_fusion = !fold;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_msg(strop__model_forward_exec(m, x, n, training, NULL, &o) == STROP_OK, "%s",
                strop_last_error());
  const size_t on = (size_t)n * strop__shape_numel(&o->shape);
  memcpy(out, o->data, sizeof(float) * on);
  *folded = m->nodes[1].fused < 0;
  float dout[512];
  ck_assert_uint_le(on, 512);
  for (size_t i = 0; i < on; i++) dout[i] = cosf(0.3f * (float)i);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad) {
      memcpy(grads + k, m->params[i]->grad, sizeof(float) * m->params[i]->numel);
      k += m->params[i]->numel;
    }
  const size_t in = (size_t)n * strop__shape_numel(&m->in_shape);
  memcpy(grads + k, m->input_grad, sizeof(float) * in);
  *ng = k + in;
  strop__model_step_end(m);
  m->no_fusion = 0;
  return on;
}

/* Folded and unfolded agree to float rounding: outputs 1e-5 relative, gradients 1e-4, each
 * with a floor (outputs 0.1, gradients 1e-3) below which the bound is absolute: the sums'
 * terms are O(1), so a value that cancels to 1e-2 keeps their rounding, which the fold moves
 * (w s summed, against the sum scaled). want_fold: the norm must (1) or must not (0) have been folded. */
static void fold_expect_same(strop_model *m, int training, int want_fold, const char *what) {
  enum { N = 3, CAP = 4096 };
  static float x[CAP], out[2][CAP], grads[2][CAP];
  const size_t per = strop__shape_numel(&m->in_shape);
  ck_assert_uint_le(N * per, CAP);
  for (size_t i = 0; i < N * per; i++) x[i] = sinf(0.37f * (float)i + 0.2f);
  size_t ng[2], on[2];
  int folded[2];
  for (int f = 0; f < 2; f++)
    on[f] = fold_run(m, f, training, x, N, out[f], grads[f], &ng[f], &folded[f]);
  ck_assert_msg(folded[1] == want_fold, "%s: folded %d, want %d", what, folded[1], want_fold);
  ck_assert_int_eq(folded[0], 0);
  ck_assert_uint_eq(on[0], on[1]);
  ck_assert_uint_eq(ng[0], ng[1]);
  size_t w = 0;
  double r = strop_test_max_rel(out[1], out[0], on[0], 0.1, &w);
  ck_assert_msg(r <= 1e-5, "%s: output %zu: folded %.9g, unfolded %.9g", what, w,
                (double)out[1][w], (double)out[0][w]);
  r = strop_test_max_rel(grads[1], grads[0], ng[0], 1e-3, &w);
  ck_assert_msg(r <= 1e-4, "%s: gradient %zu: folded %.9g, unfolded %.9g", what, w,
                (double)grads[1][w], (double)grads[0][w]);
  if (!want_fold) /* nothing folded: the same kernels in the same order */
    ck_assert_msg(memcmp(out[0], out[1], sizeof(float) * on[0]) == 0, "%s: outputs differ", what);
}

/* A frozen conv + frozen batch norm is one conv with scaled weights and a bias in a training
 * step (frozen statistics), with the head's and the input's gradients through it; the stored
 * parameters keep their values; eval mode is not folded (bit for bit the unfolded graph). */
START_TEST(bn_fold_matches_unfolded) {
  strop_model *m = fold_model(_i);
  strop__param *w = strop__model_param_find(m, "c.weight");
  float *keep = malloc(w->numel * sizeof *keep);
  memcpy(keep, w->data, w->numel * sizeof *keep);
  fold_expect_same(m, 1, 1, "train, frozen statistics");
  /* eval mode (predictions) keeps the unfolded numbers, whatever is frozen */
  fold_expect_same(m, 0, 0, "eval");
  ck_assert_int_eq(memcmp(keep, w->data, w->numel * sizeof *keep), 0);
  ck_assert_int_eq(m->nodes[1].frozen_stats, 1);
  /* warm: a step of a shape already seen takes nothing from the heap */
  fold_expect_same(m, 1, 1, "warm");
  free(keep);
  strop_model_free(m);
}
END_TEST

/* The fold follows the tensors it came from: new statistics (set, updated by a train-mode
 * step, written through a view), unfreezing the conv or the norm (the unfolded path, bit for
 * bit), training the conv and freezing it again. */
START_TEST(bn_fold_follows_changes) {
  /* _i 1: the conv runs Winograd, whose kept filters (n->wino) follow the same changes (F(2x2,
   * 3x3): F(4x4, 3x3)'s rounding alone is near the tolerance of small gradients) */
  strop__conv_winograd = _i ? 2 : -1;
  strop__conv_keep_filters = _i;
  strop_model *m = fold_model(0);
  fold_expect_same(m, 1, 1, "first");
  const float rv[5] = {2.0f, 0.1f, 1.0f, 3.5f, 0.7f};
  set_param(m, "bn.running_var", rv, 5);
  fold_expect_same(m, 1, 1, "after set_tensor");
  /* the norm's statistics thaw for a step (batch statistics: not folded; its affine stays
   * frozen, as STROP_FREEZE_KEEP_BN_MODE leaves it), then freeze again: the fold sees the
   * running statistics that step moved */
  m->nodes[1].frozen_stats = 0;
  fold_expect_same(m, 1, 0, "train, batch statistics");
  m->nodes[1].frozen_stats = 1;
  fold_expect_same(m, 1, 1, "frozen statistics again");
  /* the same through surgery: unfrozen, trained, frozen */
  ck_assert_int_eq(strop_model_unfreeze(m, "bn.*"), STROP_OK);
  fold_expect_same(m, 1, 0, "trainable norm");
  ck_assert_int_eq(strop_model_freeze(m, "bn.*"), STROP_OK);
  fold_expect_same(m, 1, 1, "refrozen norm");
  /* the conv trains: unfolded; an optimizer step moves it; frozen again it folds anew */
  ck_assert_int_eq(strop_model_unfreeze(m, "c.weight"), STROP_OK);
  fold_expect_same(m, 1, 0, "trainable conv");
  strop__param *w = strop__model_param_find(m, "c.weight");
  for (size_t i = 0; i < w->numel; i++) w->data[i] *= 1.25f; /* as an optimizer step would */
  ck_assert_int_eq(strop_model_freeze(m, "c.weight"), STROP_OK);
  fold_expect_same(m, 1, 1, "refrozen conv");
  /* last: a view handed out makes every later fold recompute */
  strop_tensor *t = NULL;
  ck_assert_int_eq(strop_model_tensor_view(m, "bn.running_mean", &t), STROP_OK);
  float *tv = strop_tensor_data(t);
  for (int c = 0; c < 5; c++) tv[c] = 1.5f - 0.5f * (float)c;
  fold_expect_same(m, 1, 1, "after a write through a view");
  tv[2] = -3.0f; /* the view stays writable: no cache can be trusted */
  fold_expect_same(m, 1, 1, "after a second write through the view");
  ck_assert(!_i || m->nodes[0].wino);
  strop_tensor_free(t);
  strop_model_free(m);
  strop__conv_winograd = -1;
  strop__conv_keep_filters = -1;
}
END_TEST

/* Eval forward of m into out (n images of x). */
static void eval_out(strop_model *m, const float *x, int64_t n, float *out, size_t cap) {
  const strop__act *o;
  ck_assert_msg(strop__model_forward_exec(m, x, n, 0, NULL, &o) == STROP_OK, "%s",
                strop_last_error());
  const size_t on = (size_t)n * strop__shape_numel(&o->shape);
  ck_assert_uint_le(on, cap);
  memcpy(out, o->data, sizeof(float) * on);
  strop__model_step_end(m);
}

/* A frozen Winograd conv asked to keep its transformed filters (strop__conv_keep_filters) keeps
 * them (n->wino, counted with the folded copies by the step memory) and computes with them the bits a twin whose weight trains (nothing
 * kept) computes: at first, again (the copy reused), after set_tensor, after writes through a
 * view, at another image size; unfrozen, the copy is freed. */
START_TEST(winograd_filter_cache) {
  enum { N = 2, CAP = 2 * 5 * 11 * 9 };
  static float x[2 * 3 * 11 * 9], out[2][CAP], wv[5 * 3 * 9];
  strop__conv_winograd = 4;
  strop__conv_keep_filters = 1;
  int64_t sh[3] = {3, 9, 7};
  strop_model *m[2];
  for (int k = 0; k < 2; k++)
    m[k] = one("conv2d", "out_channels=5 kernel_size=3 padding=1", 3, sh, "c");
  strop__param *w[2];
  for (int k = 0; k < 2; k++) w[k] = strop__model_param_find(m[k], "c.weight");
  set_param(m[1], "c.weight", w[0]->data, w[0]->numel);
  set_param(m[1], "c.bias", strop__model_param_find(m[0], "c.bias")->data, 5);
  ck_assert_int_eq(strop_model_freeze(m[0], "c.*"), STROP_OK);
  for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = sinf(0.37f * (float)i + 0.2f);
  const size_t on = (size_t)N * 5 * 9 * 7;
  for (int round = 0; round < 5; round++) {
    if (round == 2) { /* new values through set_tensor: the copy is made again */
      for (size_t i = 0; i < w[0]->numel; i++) wv[i] = cosf(0.5f * (float)i);
      for (int k = 0; k < 2; k++) set_param(m[k], "c.weight", wv, w[0]->numel);
    }
    strop_tensor *t = NULL;
    if (round == 3) { /* written through a view, twice: nothing kept can be trusted */
      ck_assert_int_eq(strop_model_tensor_view(m[0], "c.weight", &t), STROP_OK);
      for (int twice = 0; twice < 2; twice++) {
        strop_tensor_data(t)[4] += 0.75f;
        set_param(m[1], "c.weight", strop_tensor_data(t), w[0]->numel);
        for (int k = 0; k < 2; k++) eval_out(m[k], x, N, out[k], CAP);
        ck_assert_msg(!memcmp(out[0], out[1], on * 4), "write %d through a view", twice);
      }
      strop_tensor_free(t);
    }
    for (int k = 0; k < 2; k++) eval_out(m[k], x, N, out[k], CAP);
    ck_assert_msg(!memcmp(out[0], out[1], on * 4), "round %d: kept filters differ", round);
    ck_assert_ptr_nonnull(m[0]->nodes[0].wino);
    ck_assert_ptr_null(m[1]->nodes[0].wino);
    ck_assert_uint_ge(strop__node_fold_bytes(&m[0]->nodes[0]), 5 * 3 * 36 * sizeof(float));
  }
  /* another image size: the same filters serve it */
  {
    const strop__act *o[2];
    const strop__shape big = {3, {3, 11, 9}};
    const void *keep = m[0]->nodes[0].wino;
    for (int k = 0; k < 2; k++) {
      ck_assert_msg(strop__model_forward_shaped(m[k], x, N, &big, 0, NULL, &o[k]) == STROP_OK,
                    "%s", strop_last_error());
      memcpy(out[k], o[k]->data, sizeof(float) * (size_t)N * 5 * 11 * 9);
      strop__model_step_end(m[k]);
    }
    ck_assert(!memcmp(out[0], out[1], (size_t)N * 5 * 11 * 9 * 4));
    ck_assert_ptr_eq(m[0]->nodes[0].wino, keep);
  }
  /* unfrozen: the weight trains, the copy goes */
  ck_assert_int_eq(strop_model_unfreeze(m[0], "c.*"), STROP_OK);
  eval_out(m[0], x, N, out[0], CAP);
  ck_assert_ptr_null(m[0]->nodes[0].wino);
  ck_assert_uint_eq(m[0]->nodes[0].wino_bytes, 0);
  /* not kept (the default): dropped at the next forward */
  ck_assert_int_eq(strop_model_freeze(m[0], "c.*"), STROP_OK);
  eval_out(m[0], x, N, out[0], CAP);
  ck_assert_ptr_nonnull(m[0]->nodes[0].wino);
  strop__conv_keep_filters = 0;
  eval_out(m[0], x, N, out[0], CAP);
  ck_assert_ptr_null(m[0]->nodes[0].wino);
  for (int k = 0; k < 2; k++) strop_model_free(m[k]);
  strop__conv_winograd = -1;
  strop__conv_keep_filters = -1;
}
END_TEST

/* One training step of m (training mode, the norm folded where it may be): its output and
 * every gradient (the head's, and the input's when m wants it) into out and grads; returns the
 * count of both. */
static size_t held_step(strop_model *m, const float *x, int64_t n, float *out, float *grads) {
  const strop__act *o;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_msg(strop__model_forward_exec(m, x, n, 1, NULL, &o) == STROP_OK, "%s",
                strop_last_error());
  const size_t on = (size_t)n * strop__shape_numel(&o->shape);
  memcpy(out, o->data, sizeof(float) * on);
  float dout[512];
  ck_assert_uint_le(on, 512);
  for (size_t i = 0; i < on; i++) dout[i] = cosf(0.3f * (float)i);
  ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
  size_t k = 0;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->grad && m->params[i]->trainable) {
      memcpy(grads + k, m->params[i]->grad, sizeof(float) * m->params[i]->numel);
      k += m->params[i]->numel;
    }
  if (m->want_input_grad) {
    const size_t in = (size_t)n * strop__shape_numel(&m->in_shape);
    memcpy(grads + k, m->input_grad, sizeof(float) * in);
    k += in;
  }
  strop__model_step_end(m);
  memcpy(out + on, grads, sizeof(float) * k);
  return on + k;
}

/* A frozen conv computing in BF16 on vdpbf16ps keeps its weight packed (n->wino,
 * strop__conv_keep_packed) and, where its backward never runs, its folded bias beside it with
 * the folded FP32 copy given back; the step's output and gradients are the bits of the same
 * step packing per call: at first (and again, the copy reused), after set_tensor of the norm's
 * statistics and of the conv's weight, after writes through a view, after a step in FP32
 * (nothing packed kept then), with the input's gradient wanted (the fold kept for the
 * backward), and unfrozen (nothing kept). */
START_TEST(bf16_packed_weight_cache) {
  enum { N = 3, CAP = 4096 };
  static float x[CAP], got[2][CAP], grads[CAP];
  strop_model *m[2]; /* m[0] keeps its packed weight, m[1] packs per call */
  for (int k = 0; k < 2; k++) {
    m[k] = fold_model(0);
    m[k]->want_input_grad = 0;
    ck_assert_int_eq(strop_model_set_compute_dtype(m[k], STROP_DTYPE_BF16), STROP_OK);
  }
  const int dot = strop__bf16_dot_enabled(); /* elsewhere the exact fallback: nothing kept */
  const size_t per = strop__shape_numel(&m[0]->in_shape);
  for (size_t i = 0; i < N * per; i++) x[i] = sinf(0.37f * (float)i + 0.2f);
  strop__node *c = &m[0]->nodes[0];
  const size_t wbytes = strop__model_param_find(m[0], "c.weight")->numel * sizeof(float);
  strop_tensor *t = NULL;
  for (int round = 0; round < 8; round++) {
    if (round == 2) {
      const float rv[5] = {2.0f, 0.1f, 1.0f, 3.5f, 0.7f};
      for (int k = 0; k < 2; k++) set_param(m[k], "bn.running_var", rv, 5);
    } else if (round == 3) {
      float wv[5 * 3 * 9];
      for (int i = 0; i < 5 * 3 * 9; i++) wv[i] = cosf(0.5f * (float)i);
      for (int k = 0; k < 2; k++) set_param(m[k], "c.weight", wv, 5 * 3 * 9);
    } else if (round == 4 || round == 5) { /* a view out: nothing kept can be trusted */
      if (!t) ck_assert_int_eq(strop_model_tensor_view(m[0], "bn.running_mean", &t), STROP_OK);
      strop_tensor_data(t)[round - 3] = round == 4 ? 0.625f : -0.5f;
      set_param(m[1], "bn.running_mean", strop_tensor_data(t), 5);
    } else if (round == 6) { /* a step in FP32: the packed copy goes; then BF16 again */
      ck_assert_int_eq(strop_model_set_compute_dtype(m[0], STROP_DTYPE_F32), STROP_OK);
      held_step(m[0], x, N, got[0], grads);
      ck_assert_ptr_null(c->wino);
      ck_assert_int_eq(strop_model_set_compute_dtype(m[0], STROP_DTYPE_BF16), STROP_OK);
    } else if (round == 7) { /* the input's gradient: the conv's backward runs, the fold stays */
      for (int k = 0; k < 2; k++) m[k]->want_input_grad = 1;
    }
    size_t cnt[2];
    for (int k = 0; k < 2; k++) {
      strop__conv_keep_packed = !k;
      cnt[k] = held_step(m[k], x, N, got[k], grads);
    }
    strop__conv_keep_packed = 1;
    ck_assert_ptr_null(m[1]->nodes[0].wino);
    ck_assert_uint_eq(cnt[0], cnt[1]);
    ck_assert_msg(!memcmp(got[0], got[1], sizeof(float) * cnt[0]),
                  "round %d: the kept packed weight gives other bits", round);
    if (!dot) {
      ck_assert_ptr_null(c->wino);
      continue;
    }
    ck_assert_ptr_nonnull(c->wino);
    /* the fold's values given back but in round 7, where the backward reads them */
    if (round < 7) ck_assert_uint_lt(strop__node_fold_bytes(c) - c->wino_bytes, wbytes);
    else ck_assert_uint_gt(strop__node_fold_bytes(c) - c->wino_bytes, wbytes);
    /* a second step reuses it, with the same bits */
    const void *kept = c->wino;
    ck_assert_uint_eq(held_step(m[0], x, N, got[1], grads), cnt[0]);
    ck_assert_ptr_eq(c->wino, kept);
    ck_assert(!memcmp(got[0], got[1], sizeof(float) * cnt[0]));
  }
  strop_tensor_free(t);
  /* unfrozen: the weight trains, nothing is kept */
  ck_assert_int_eq(strop_model_unfreeze(m[0], "c.*"), STROP_OK);
  held_step(m[0], x, N, got[0], grads);
  ck_assert_ptr_null(c->wino);
  for (int k = 0; k < 2; k++) strop_model_free(m[k]);
}
END_TEST

/* Finite differences through the folded pair: the head's gradient and the input's. */
START_TEST(bn_fold_gradcheck) {
  strop_model *m = fold_model(_i);
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  double worst = strop_test_gradcheck(m, 2, 31 + (uint64_t)_i, &o);
  ck_assert_msg(worst <= o.tol, "case %d: %g", _i, worst);
  ck_assert_int_eq(m->nodes[1].fused, -1);
  strop_model_free(m);
}
END_TEST

/* The 2x2 max-pool kernels (AVX-512 where the CPU has it, SSE2, plain C), with and without
 * the fused relu, give the same bits: every width from 1 to 37 windows (the vector loops'
 * tails), odd planes with an uncovered row and column, ties, -0, NaN and infinities; and the
 * fused relu equals relu then pool. */
START_TEST(maxpool_kernels_agree) {
  enum { C = 3, HMAX = 9, WMAX = 75, CAP = 4 * HMAX * WMAX };
  static float x[CAP], xr[CAP], y[3][CAP + 64], dy[CAP], dx[3][CAP + 64];
  static int32_t am[3][CAP + 64];
  static const float special[] = {0.0f, -0.0f, 1.0f, 1.0f, -2.0f, NAN, INFINITY, -INFINITY};
  for (int64_t ow = 1; ow <= 37; ow++) {
    for (int odd = 0; odd < 2; odd++) {
      strop__pool2d_dims d = {2, C / 2 + 1, 2 * 4 + odd, 2 * ow + odd, 2, 2, 2, 2, 0, 0, 1,
                              1, 4,         ow};
      const int64_t nin = d.n * d.c * d.h * d.w, nout = d.n * d.c * d.oh * d.ow;
      ck_assert_int_le(nin, CAP);
      for (int64_t i = 0; i < nin; i++)
        x[i] = (i * 7 + ow) % 5 == 0 ? special[(i + ow) % 8] : sinf(0.7f * (float)i) - 0.3f;
      for (int64_t i = 0; i < nout; i++) dy[i] = cosf(0.3f * (float)i) + 1.5f;
      for (int relu = 0; relu < 2; relu++) {
        for (int isa = 0; isa < 3; isa++) {
          /* nothing is written past the end: the vector kernels store whole vectors where
           * they can */
          for (int64_t i = nout; i < nout + 64; i++) y[isa][i] = 12345.0f, am[isa][i] = -7;
          for (int64_t i = nin; i < nin + 64; i++) dx[isa][i] = 12345.0f;
          strop__pool_isa = isa;
          strop__maxpool2d_forward_ex(&d, x, y[isa], am[isa], relu);
          strop__maxpool2d_backward_assign_ex(&d, dy, am[isa], relu ? y[isa] : NULL, dx[isa]);
          for (int64_t i = nout; i < nout + 64; i++)
            ck_assert(y[isa][i] == 12345.0f && am[isa][i] == -7);
          for (int64_t i = nin; i < nin + 64; i++) ck_assert(dx[isa][i] == 12345.0f);
        }
        strop__pool_isa = 0;
        for (int isa = 1; isa < 3; isa++) {
          ck_assert_msg(memcmp(y[0], y[isa], sizeof(float) * (size_t)nout) == 0,
                        "ow %lld odd %d relu %d: forward differs from isa %d", (long long)ow, odd,
                        relu, isa);
          ck_assert(memcmp(am[0], am[isa], sizeof(int32_t) * (size_t)nout) == 0);
          ck_assert_msg(memcmp(dx[0], dx[isa], sizeof(float) * (size_t)nin) == 0,
                        "ow %lld odd %d relu %d: backward differs from isa %d", (long long)ow,
                        odd, relu, isa);
        }
      }
      /* fused relu = relu layer then pool layer, forward and (relu's backward) backward */
      strop__maxpool2d_forward_ex(&d, x, y[0], am[0], 1);
      strop__maxpool2d_backward_assign_ex(&d, dy, am[0], y[0], dx[0]);
      for (int64_t i = 0; i < nin; i++) xr[i] = x[i] < 0.0f ? 0.0f : x[i];
      strop__maxpool2d_forward(&d, xr, y[1], am[1]);
      strop__maxpool2d_backward_assign(&d, dy, am[1], dx[1]);
      for (int64_t i = 0; i < nin; i++) dx[1][i] = xr[i] <= 0.0f ? 0.0f : dx[1][i];
      ck_assert(memcmp(y[0], y[1], sizeof(float) * (size_t)nout) == 0);
      ck_assert(memcmp(am[0], am[1], sizeof(int32_t) * (size_t)nout) == 0);
      ck_assert_msg(memcmp(dx[0], dx[1], sizeof(float) * (size_t)nin) == 0,
                    "ow %lld odd %d: fused relu backward differs", (long long)ow, odd);
    }
  }
}
END_TEST

/* The general max pool (any window, stride and padding, dilation 1) against a scan written
 * here: each window's taps in row-major order, the first maximum kept (strict >), a NaN taken
 * at once, the argmax starting at the window's first tap. Ties, -0, infinities, planes with a
 * NaN (the scalar loop) and without (the swept one), with and without the fused relu. */
START_TEST(maxpool_general_matches_scan) {
  enum { CAP = 2 * 20 * 20 };
  static float x[CAP], y[CAP], want[CAP];
  static int32_t am[CAP], want_am[CAP];
  static const float levels[] = {-1.0f, 0.0f, -0.0f, 1.0f, 2.0f, INFINITY, -INFINITY, 0.5f};
  int cases = 0;
  for (int k = 1; k <= 4; k++)
    for (int st = 1; st <= 3; st++)
      for (int p = 0; p <= k / 2; p++)
        for (int64_t h = k; h <= 13; h += 3)
          for (int64_t w = k; w <= 14; w += 2)
            for (int nan = 0; nan < 2; nan++)
              for (int relu = 0; relu < 2; relu++) {
                const int64_t oh = (h + 2 * p - k) / st + 1, ow = (w + 2 * p - k) / st + 1;
                strop__pool2d_dims d = {1, 2, h, w, k, k, st, st, p, p, 1, 1, oh, ow};
                for (int64_t i = 0; i < 2 * h * w; i++)
                  x[i] = (i * 13 + h + w) % 11 == 0 ? levels[(i + k) % 8]
                                                    : (float)((i * 7 + st) % 4) - 1.0f;
                if (nan) x[h * w + (w / 2)] = NAN; /* the second plane only */
                for (int64_t pl = 0; pl < 2; pl++)
                  for (int64_t oy = 0; oy < oh; oy++)
                    for (int64_t ox = 0; ox < ow; ox++) {
                      const int64_t y0 = oy * st - p, x0 = ox * st - p;
                      float m = -INFINITY;
                      int64_t best = -1;
                      for (int64_t ki = 0; ki < k; ki++)
                        for (int64_t kj = 0; kj < k; kj++) {
                          const int64_t r = y0 + ki, c = x0 + kj;
                          if (r < 0 || r >= h || c < 0 || c >= w) continue;
                          if (best < 0) best = r * w + c;
                          if (m != m) continue; /* a NaN was taken */
                          float v = x[pl * h * w + r * w + c];
                          if (relu && v < 0.0f) v = 0.0f;
                          if (v > m || v != v) m = v, best = r * w + c;
                        }
                      want[(pl * oh + oy) * ow + ox] = m;
                      want_am[(pl * oh + oy) * ow + ox] = (int32_t)best;
                    }
                strop__maxpool2d_forward_ex(&d, x, y, am, relu);
                for (int64_t i = 0; i < 2 * oh * ow; i++) {
                  ck_assert_msg(memcmp(&y[i], &want[i], sizeof(float)) == 0 ||
                                    (y[i] != y[i] && want[i] != want[i]),
                                "k %d s %d p %d %lldx%lld nan %d relu %d: y[%lld] %g, want %g", k,
                                st, p, (long long)h, (long long)w, nan, relu, (long long)i,
                                (double)y[i], (double)want[i]);
                  ck_assert_msg(am[i] == want_am[i], "k %d s %d p %d: argmax[%lld] %d, want %d",
                                k, st, p, (long long)i, am[i], want_am[i]);
                }
                /* without the winners (no backward): the same values, a zero's sign aside (the
                 * taps are compared in another order) */
                strop__maxpool2d_forward_ex(&d, x, y, NULL, relu);
                for (int64_t i = 0; i < 2 * oh * ow; i++)
                  ck_assert_msg(memcmp(&y[i], &want[i], sizeof(float)) == 0 ||
                                    (y[i] != y[i] && want[i] != want[i]) ||
                                    (y[i] == 0.0f && want[i] == 0.0f),
                                "k %d s %d p %d %lldx%lld nan %d relu %d: no argmax: y[%lld] %g, "
                                "want %g",
                                k, st, p, (long long)h, (long long)w, nan, relu, (long long)i,
                                (double)y[i], (double)want[i]);
                cases++;
              }
  ck_assert_int_gt(cases, 500);
}
END_TEST

/* ------------------------------------------------------------------ gradcheck */

static const struct gc_case {
  const char *type, *opts;
  int rank;
  int64_t shape[3];
  int64_t batch;
} GC[] = {
    {"conv2d", "out_channels=3 kernel_size=3 stride=2 padding=1", 3, {2, 7, 6}, 2},
    {"conv2d", "out_channels=2 kernel_size=3 dilation=2 padding=2", 3, {2, 6, 6}, 2},
    {"conv2d", "out_channels=4 kernel_size=[3,2] groups=2 padding=[1,0]", 3, {4, 5, 5}, 2},
    {"conv2d", "out_channels=6 kernel_size=3 groups=3 padding=1", 3, {3, 5, 5}, 2},
    {"conv2d", "out_channels=3 kernel_size=1", 3, {4, 3, 4}, 2},
    {"conv2d", "out_channels=2 kernel_size=2 padding=same", 3, {2, 5, 4}, 2},
    {"maxpool2d", "kernel_size=3 stride=2 padding=1", 3, {2, 7, 7}, 2},
    {"maxpool2d", "kernel_size=2 stride=1 dilation=2", 3, {2, 5, 5}, 2},
    {"avgpool2d", "kernel_size=3 stride=2 padding=1", 3, {2, 7, 6}, 2},
    {"avgpool2d", "kernel_size=3 stride=2 padding=1 count_include_pad=false", 3, {2, 7, 6}, 2},
    {"global_avgpool", "", 3, {3, 4, 5}, 2},
    {"adaptive_avgpool2d", "output_size=[2, 3]", 3, {2, 5, 7}, 2},
    {"adaptive_avgpool2d", "output_size=4", 3, {2, 3, 3}, 2},
    {"conv2d", "out_channels=4 kernel_size=5 stride=2 padding=2 groups=4", 3, {4, 7, 6}, 2},
    {"conv2d", "out_channels=3 kernel_size=3 dilation=2 padding=2 groups=3", 3, {3, 6, 5}, 2},
    {"squeeze_excitation",
     "input_channels=4 squeeze_channels=2 scale_activation=hardsigmoid",
     3,
     {4, 3, 3},
     2},
    {"relu6", "", 3, {2, 3, 3}, 2},
    {"batchnorm2d", "", 3, {3, 4, 4}, 3},
    {"batchnorm1d", "", 1, {4, 0, 0}, 6},
    {"batchnorm1d", "affine=false", 2, {3, 5, 0}, 3},
    {"batchnorm2d", "track_running_stats=false", 3, {2, 3, 3}, 2},
};
#define N_GC ((int)(sizeof GC / sizeof GC[0]))

/* Tolerance: central differences in float32 with eps 1e-3 (the harness defaults), relative
 * 2e-2 with a 1e-2 floor; max pooling is exact away from ties, which random inputs avoid. */
START_TEST(gradcheck) {
  const struct gc_case *c = &GC[_i];
  strop_model *m = one(c->type, c->opts, c->rank, c->shape, "node");
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  o.tol = 2e-2;
  double worst = strop_test_gradcheck(m, c->batch, 100 + (uint64_t)_i, &o);
  ck_assert_msg(worst <= o.tol, "%s %s: %g", c->type, c->opts, worst);
  strop_model_free(m);
}
END_TEST

/* The Winograd forward (forced on, both tiles) against the lowered backward: finite differences
 * of the Winograd outputs agree with the gradients, so the two compute the same function to
 * float rounding (paddings 0 and 1, sizes no multiple of the tile). A conv is linear in each
 * input and weight, so the difference quotient has no truncation error at any step: eps 0.05
 * keeps the transforms' rounding (~1e-6 of |y| per output, 20x the default step's quotient
 * noise at 1e-3) below the tolerance. */
START_TEST(winograd_gradcheck) {
  static const struct {
    const char *opts;
    int64_t shape[3];
  } cases[] = {{"out_channels=3 kernel_size=3 padding=1", {2, 7, 6}},
               {"out_channels=2 kernel_size=3", {3, 6, 9}},
               {"out_channels=4 kernel_size=3 padding=same bias=false", {2, 5, 5}}};
  const int ms[2] = {2, 4};
  for (int v = 0; v < 2; v++)
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
      strop__conv_winograd = ms[v];
      strop_model *m = one("conv2d", cases[k].opts, 3, cases[k].shape, "node");
      strop_test_gc_opts o;
      strop_test_gc_defaults(&o);
      o.tol = 2e-2;
      o.eps = 0.05;
      double worst = strop_test_gradcheck(m, 2, 40 + (uint64_t)k, &o);
      strop__conv_winograd = -1;
      ck_assert_msg(worst <= o.tol, "F(%d, 3) %s: %g", ms[v], cases[k].opts, worst);
      strop_model_free(m);
    }
}
END_TEST

/* Frozen statistics: running stats in train mode, the backward is the affine map only. */
START_TEST(gradcheck_frozen_stats) {
  int64_t sh[3] = {3, 4, 4};
  strop_model *m = one("batchnorm2d", "", 3, sh, "bn");
  strop__param *rm = strop__model_param_find(m, "bn.running_mean");
  strop__param *rv = strop__model_param_find(m, "bn.running_var");
  const float mu[3] = {0.2f, -0.1f, 0.4f}, var[3] = {0.5f, 1.5f, 2.0f};
  memcpy(rm->data, mu, sizeof mu);
  memcpy(rv->data, var, sizeof var);
  m->nodes[0].frozen_stats = 1;
  strop_test_gc_opts o;
  strop_test_gc_defaults(&o);
  strop_test_gradcheck(m, 2, 7, &o);
  ck_assert(memcmp(rm->data, mu, sizeof mu) == 0);
  ck_assert(memcmp(rv->data, var, sizeof var) == 0);
  ck_assert_int_eq(strop__model_param_find(m, "bn.num_batches_tracked")->idata[0], 0);
  strop_model_free(m);
}
END_TEST

/* ------------------------------------------------------------------ parity */

/* Tolerances: 1e-4 for conv (GEMM summation order differs from torch's float64 reference);
 * 1e-5 for pooling and batch norm (same order, double accumulation in batch norm).
 * conv_stride2: 3e-4, because grad.conv.weight[39] = 0.0018 is the sum of ~100 terms of
 * size ~1 that cancel; float32 summation leaves an absolute error of 3e-7 there (1.7e-4 of
 * the value; torch's own float32 kernel is 1.4e-4 off its float64 result there). */
static const struct px_case {
  const char *fixture, *node;
  double tol;
} PX[] = {
    {"conv_basic", "conv", 1e-4},
    {"conv_stride2", "conv", 3e-4},
    {"conv_dilation2", "conv", 1e-4},
    {"conv_groups2", "conv", 1e-4},
    {"conv_depthwise", "conv", 1e-4},
    {"conv_1x1", "conv", 1e-4},
    {"conv_same", "conv", 1e-4},
    {"conv_maxpool_overlap", "pool", 1e-5},
    {"conv_maxpool_dilation", "pool", 1e-5},
    {"conv_avgpool_pad", "pool", 1e-5},
    {"conv_avgpool_pad_exclude", "pool", 1e-5},
    {"conv_global_avgpool", "pool", 1e-5},
    {"conv_adaptive_uneven", "pool", 1e-5},
    {"conv_adaptive_up", "pool", 1e-5},
    {"conv_depthwise5_s2", "conv", 1e-4},
    {"conv_depthwise_dilated", "conv", 1e-4},
    {"conv_squeeze_excitation", "se", 1e-4},
    {"conv_bn2d_train", "bn", 1e-5},
    {"conv_bn2d_eval", "bn", 1e-5},
    {"conv_bn1d_train", "bn", 1e-5},
    {"conv_bn1d_train_seq", "bn", 1e-5},
    {"conv_bn1d_eval", "bn", 1e-5},
    {"conv_bn2d_noaffine", "bn", 1e-5},
};
#define N_PX ((int)(sizeof PX / sizeof PX[0]))

/* Reads a metadata string of the fixture into out. */
static void fx_meta(const fixture *f, const char *key, char *out, size_t cap) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\":\"", key);
  const char *p = strstr(f->hdr, "\"__metadata__\"");
  ck_assert(p != NULL);
  p = strstr(p, k);
  ck_assert_msg(p != NULL, "metadata %s missing", key);
  p += strlen(k);
  size_t l = 0;
  while (p[l] && p[l] != '"' && l + 1 < cap) {
    out[l] = p[l];
    l++;
  }
  out[l] = '\0';
}

/* The model the fixture describes: its layer type/options (metadata) on its input shape. */
static strop_model *fixture_model(const struct px_case *c) {
  fixture f;
  fx_open(&f, c->fixture);
  char type[64], opts[256];
  fx_meta(&f, "type", type, sizeof type);
  fx_meta(&f, "options", opts, sizeof opts);
  const char *p = strstr(f.hdr, "\"input\":{");
  ck_assert(p != NULL);
  p = strstr(p, "\"shape\":[") + 9;
  int64_t dims[8];
  int rank = 0;
  while (*p != ']') {
    char *end;
    dims[rank++] = strtoll(p, &end, 10);
    p = *end == ',' ? end + 1 : end;
  }
  fx_close(&f);
  return one(type, opts, rank - 1, dims + 1, c->node);
}

START_TEST(parity) {
  const struct px_case *c = &PX[_i];
  strop_model *m = fixture_model(c);
  char path[512];
  snprintf(path, sizeof path, "%s/layers/%s.safetensors", STROP_TEST_DATA, c->fixture);
  strop_test_parity(m, path, c->tol);
  strop_model_free(m);
}
END_TEST

/* Running statistics after one train-mode forward equal torch's (the fixtures' after.* keys;
 * the harness compares them too), and differ from the values before. */
START_TEST(running_stats) {
  static const char *const fx[] = {"conv_bn2d_train", "conv_bn1d_train", "conv_bn1d_train_seq",
                                   "conv_bn2d_noaffine"};
  for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
    struct px_case c = {fx[k], "bn", 1e-5};
    strop_model *m = fixture_model(&c);
    char path[512];
    snprintf(path, sizeof path, "%s/layers/%s.safetensors", STROP_TEST_DATA, fx[k]);
    strop_test_parity(m, path, 1e-5);
    fixture f;
    fx_open(&f, fx[k]);
    static const char *const names[] = {"running_mean", "running_var", "num_batches_tracked"};
    for (int j = 0; j < 3; j++) {
      char key[128];
      snprintf(key, sizeof key, "bn.%s", names[j]);
      strop__param *p = strop__model_param_find(m, key);
      ck_assert_ptr_nonnull(p);
      size_t n0, n1;
      float *before = fx_get(&f, key, &n0);
      snprintf(key, sizeof key, "after.bn.%s", names[j]);
      float *after = fx_get(&f, key, &n1);
      ck_assert_uint_eq(n0, n1);
      ck_assert_uint_eq(n1, p->numel);
      if (p->idata) {
        ck_assert_int_eq(p->idata[0], (int64_t)after[0]);
        ck_assert_int_eq(p->idata[0], (int64_t)before[0] + 1);
      } else {
        expect_close(p->data, after, n1, 1e-5);
        ck_assert(memcmp(before, after, n1 * sizeof(float)) != 0);
      }
      free(before);
      free(after);
    }
    fx_close(&f);
    strop_model_free(m);
  }
}
END_TEST

/* Frozen statistics in train mode reproduce torch's eval-mode outputs and gradients and leave
 * the running statistics alone. */
START_TEST(frozen_stats_parity) {
  static const char *const fx[] = {"conv_bn2d_eval", "conv_bn1d_eval"};
  for (size_t k = 0; k < 2; k++) {
    struct px_case c = {fx[k], "bn", 1e-5};
    strop_model *m = fixture_model(&c);
    m->nodes[0].frozen_stats = 1;
    fixture f;
    fx_open(&f, fx[k]);
    size_t n;
    const char *pn[] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    for (int j = 0; j < 4; j++) {
      float *v = fx_get(&f, pn[j], &n);
      set_param(m, pn[j], v, n);
      free(v);
    }
    strop__model_param_find(m, "bn.num_batches_tracked")->idata[0] = 3;
    size_t nx, ny, nd, ng;
    float *x = fx_get(&f, "input", &nx), *y = fx_get(&f, "output", &ny);
    float *dout = fx_get(&f, "dout", &nd), *gin = fx_get(&f, "grad.input", &ng);
    const char *p = strstr(f.hdr, "\"input\":{");
    p = strstr(p, "\"shape\":[") + 9;
    int64_t batch = strtoll(p, NULL, 10);
    m->want_input_grad = 1;
    ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
    const strop__act *o;
    ck_assert_int_eq(strop__model_forward_exec(m, x, batch, 1, NULL, &o), STROP_OK);
    expect_close(o->data, y, ny, 1e-5);
    ck_assert_int_eq(strop__model_backward(m, dout), STROP_OK);
    expect_close(m->input_grad, gin, ng, 1e-5);
    const char *gn[] = {"grad.bn.weight", "grad.bn.bias"};
    for (int j = 0; j < 2; j++) {
      float *g = fx_get(&f, gn[j], &n);
      expect_close(strop__model_param_find(m, gn[j] + 5)->grad, g, n, 1e-5);
      free(g);
    }
    strop__model_step_end(m);
    float *rm = fx_get(&f, "bn.running_mean", &n);
    ck_assert(
        memcmp(strop__model_param_find(m, "bn.running_mean")->data, rm, n * sizeof(float)) == 0);
    ck_assert_int_eq(strop__model_param_find(m, "bn.num_batches_tracked")->idata[0], 3);
    free(rm);
    free(x);
    free(y);
    free(dout);
    free(gin);
    fx_close(&f);
    strop_model_free(m);
  }
}
END_TEST

/* ------------------------------------------------------------------ errors */

/* add (or, when at_add = 0, finalize) fails with status st and a sentence naming the node */
static void expect_error(const char *type, const char *opts, int rank, const int64_t *shape,
                         strop_status st, int at_add, const char *needle) {
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(rank, shape, &m), STROP_OK);
  strop_clear_error();
  strop_status s = strop_model_add(m, "features.3", type, opts, NULL);
  if (at_add) {
    ck_assert_msg(s == st, "%s '%s': add returned %d, want %d (%s)", type, opts, s, st,
                  strop_last_error());
  } else {
    ck_assert_msg(s == STROP_OK, "%s '%s': %s", type, opts, strop_last_error());
    s = strop_model_finalize(m, 1);
    ck_assert_msg(s == st, "%s '%s': finalize returned %d, want %d (%s)", type, opts, s, st,
                  strop_last_error());
  }
  const char *e = strop_last_error();
  ck_assert_msg(strstr(e, "features.3") != NULL, "no node name in: %s", e);
  ck_assert_msg(strstr(e, needle) != NULL, "'%s' not in: %s", needle, e);
  strop_model_free(m);
}

START_TEST(errors) {
  int64_t s44[3] = {2, 4, 4}, s3[3] = {3, 8, 8}, s1[1] = {5};
  /* kernel larger than the padded input */
  expect_error("conv2d", "out_channels=2 kernel_size=5", 3, s44, STROP_E_SHAPE, 0,
               "larger than the padded input 4x4");
  expect_error("conv2d", "out_channels=2 kernel_size=3 dilation=3 padding=1", 3, s44,
               STROP_E_SHAPE, 0, "larger than the padded input 6x6");
  expect_error("maxpool2d", "kernel_size=5", 3, s44, STROP_E_SHAPE, 0, "larger than");
  expect_error("avgpool2d", "kernel_size=[2,7] padding=[0,1]", 3, s44, STROP_E_SHAPE, 0,
               "larger than");
  /* in_channels not divisible by groups: given (at add) and inferred (at finalize) */
  expect_error("conv2d", "in_channels=3 out_channels=4 kernel_size=1 groups=2", 3, s3,
               STROP_E_INVALID_ARG, 1, "not divisible by groups 2");
  expect_error("conv2d", "out_channels=4 kernel_size=1 groups=2", 3, s3, STROP_E_SHAPE, 0,
               "not divisible by groups 2");
  expect_error("conv2d", "out_channels=3 kernel_size=1 groups=2", 3, s44, STROP_E_INVALID_ARG, 1,
               "out_channels 3 is not divisible");
  /* channel mismatch with the input */
  expect_error("conv2d", "in_channels=2 out_channels=4 kernel_size=3", 3, s3, STROP_E_SHAPE, 0,
               "in_channels is 2 but the input has 3 channels");
  expect_error("batchnorm2d", "num_features=4", 3, s3, STROP_E_SHAPE, 0,
               "num_features is 4 but the input has 3 channels");
  expect_error("batchnorm1d", "num_features=4", 1, s1, STROP_E_SHAPE, 0, "num_features is 4");
  /* wrong rank */
  expect_error("conv2d", "out_channels=4 kernel_size=3", 1, s1, STROP_E_SHAPE, 0, "[C, H, W]");
  expect_error("batchnorm2d", "", 1, s1, STROP_E_SHAPE, 0, "[C, H, W]");
  expect_error("batchnorm1d", "", 3, s3, STROP_E_SHAPE, 0, "[C] or [C, L]");
  expect_error("global_avgpool", "", 1, s1, STROP_E_SHAPE, 0, "[C, H, W]");
  expect_error("adaptive_avgpool2d", "output_size=2", 1, s1, STROP_E_SHAPE, 0, "[C, H, W]");
  expect_error("adaptive_avgpool2d", "output_size=0", 3, s3, STROP_E_INVALID_ARG, 1,
               "output_size");
  expect_error("adaptive_avgpool2d", "", 3, s3, STROP_E_INVALID_ARG, 1, "output_size");
  expect_error("squeeze_excitation", "input_channels=4", 3, s3, STROP_E_INVALID_ARG, 1,
               "squeeze_channels");
  expect_error("squeeze_excitation", "input_channels=4 squeeze_channels=2", 3, s3, STROP_E_SHAPE,
               0, "in_channels is 4 but the input has 3 channels");
  /* bad options */
  expect_error("conv2d", "out_channels=4 kernel_size=3 stride=2 padding=same", 3, s3,
               STROP_E_INVALID_ARG, 1, "'same' needs stride 1");
  expect_error("conv2d", "out_channels=4 kernel_size=0", 3, s3, STROP_E_INVALID_ARG, 1,
               "kernel_size");
  expect_error("conv2d", "kernel_size=3", 3, s3, STROP_E_INVALID_ARG, 1, "out_channels");
  expect_error("conv2d", "out_channels=4 kernel_size=[3,3,3]", 3, s3, STROP_E_INVALID_ARG, 1,
               "kernel_size");
  expect_error("conv2d", "out_channels=4 kernel_size=3 padding_mode=reflect", 3, s3,
               STROP_E_UNSUPPORTED, 1, "padding_mode");
  expect_error("maxpool2d", "kernel_size=3 padding=2", 3, s3, STROP_E_INVALID_ARG, 1,
               "at most half");
  expect_error("maxpool2d", "kernel_size=2 ceil_mode=true", 3, s3, STROP_E_UNSUPPORTED, 1,
               "ceil_mode");
  expect_error("avgpool2d", "kernel_size=2 dilation=2", 3, s3, STROP_E_INVALID_ARG, 1,
               "dilation");
  expect_error("batchnorm2d", "momentum=2", 3, s3, STROP_E_INVALID_ARG, 1, "momentum");

  /* batch statistics of one value per channel */
  strop_model *m = one("batchnorm1d", "", 1, s1, "features.3");
  float x[5] = {1, 2, 3, 4, 5};
  const strop__act *o;
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 1, NULL, &o), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "features.3"));
  ck_assert_int_eq(strop__model_forward_exec(m, x, 1, 0, NULL, &o), STROP_OK); /* eval is fine */
  strop__model_step_end(m);
  strop_model_free(m);
}
END_TEST

/* options written back parse to the same layer (spec save round trip) */
START_TEST(write_options) {
  int64_t sh[3] = {4, 6, 6};
  strop_model *m = one("conv2d", "out_channels=4 kernel_size=[3,1] groups=2 padding=same", 3, sh,
                       "c");
  strop__opts b;
  memset(&b, 0, sizeof b);
  ck_assert_int_eq(strop__node_write_opts(&m->nodes[0], &b), STROP_OK);
  char text[512] = "";
  for (int i = 0; i < b.n; i++) {
    size_t l = strlen(text);
    snprintf(text + l, sizeof text - l, "%s=%s ", b.v[i].key, b.v[i].val);
  }
  strop__opts_free(&b);
  ck_assert_ptr_nonnull(strstr(text, "in_channels=4"));
  ck_assert_ptr_nonnull(strstr(text, "padding=same"));
  strop_model *m2 = one("conv2d", text, 3, sh, "c");
  ck_assert_int_eq(strop_model_output_shape(m2, sh, 3), 3);
  ck_assert_int_eq(sh[0], 4);
  ck_assert_int_eq(sh[1], 6);
  ck_assert_int_eq(sh[2], 6);
  strop_model_free(m2);
  strop_model_free(m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("layers_conv");
  TCase *tc = tcase_create("forward");
  tcase_add_test(tc, conv_forward_reference);
  tcase_add_test(tc, batched_forward_matches_per_image);
  tcase_add_test(tc, batched_backward_matches_per_image);
  tcase_add_test(tc, winograd_rows_same_bits);
  tcase_add_test(tc, winograd_default_sides);
  tcase_add_test(tc, strided_columns_same_bits);
  tcase_add_test(tc, bias_fill_same_bits);
  tcase_add_test(tc, pool_forward_reference);
  tcase_add_test(tc, bn_forward_reference);
  tcase_add_loop_test(tc, bn_kernels_match_serial, 0, 4);
  tcase_add_loop_test(tc, bn_group_passes, 0, 6);
  tcase_add_loop_test(tc, bn_res_stage_same_bits, 0, 24);
  tcase_add_test(tc, adaptive_forward_reference);
  tcase_add_test(tc, depthwise_matches_gemm);
  tcase_add_test(tc, winograd_matches_reference);
  tcase_add_test(tc, squeeze_excitation_parts);
  tcase_add_test(tc, warm_step_no_alloc);
  tcase_add_test(tc, threads_agree);
  tcase_add_loop_test(tc, fused_chains_match_unfused, 0, N_FUSE);
  tcase_add_test(tc, maxpool_kernels_agree);
  tcase_add_test(tc, maxpool_general_matches_scan);
  suite_add_tcase(s, tc);
  tc = tcase_create("bn_fold");
  tcase_add_loop_test(tc, bn_fold_matches_unfolded, 0, N_FOLD);
  tcase_add_loop_test(tc, bn_fold_follows_changes, 0, 2);
  tcase_add_test(tc, winograd_filter_cache);
  tcase_add_test(tc, bf16_packed_weight_cache);
  tcase_add_loop_test(tc, bn_fold_gradcheck, 0, N_FOLD);
  suite_add_tcase(s, tc);
  tc = tcase_create("gradcheck");
  tcase_add_loop_test(tc, gradcheck, 0, N_GC);
  tcase_add_test(tc, gradcheck_frozen_stats);
  tcase_add_test(tc, winograd_gradcheck);
  suite_add_tcase(s, tc);
  tc = tcase_create("parity");
  tcase_add_loop_test(tc, parity, 0, N_PX);
  suite_add_tcase(s, tc);
  tc = tcase_create("batchnorm_stats");
  tcase_add_test(tc, running_stats);
  tcase_add_test(tc, frozen_stats_parity);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, errors);
  tcase_add_test(tc, write_options);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
