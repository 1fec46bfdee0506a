/* SPDX-License-Identifier: MIT */
/* strop — the AMX tile both BF16 products run where strop__bf16_amx_runs (ops/lowp.h) says so:
 * C[32, 32] of BF16 pairs with FP32 sums on the tile registers (tdpbf16ps), ended as the
 * vdpbf16ps tile ends (strop__bf16_tile_finish). Tiles 0-3 hold C's four 16 x 16 quarters, 4-5
 * A's two halves of 16 rows, 6-7 B's two halves of 16 columns; every tile is configured 16 rows
 * of 64 bytes. Included after ops/bf16tile.h, only where that is. */
#ifndef STROP_OPS_AMXTILE_H
#define STROP_OPS_AMXTILE_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "ops/bf16tile.h"

#define STROP__AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

/* The tiles configured for this thread (ldtilecfg: 8 tiles of 16 rows x 64 bytes). Called at
 * the start of each chunk of a product that runs the tile: another library in the process (a
 * framework's own AMX kernels) may have configured them otherwise. The configuration is read
 * through an asm memory operand: GCC 12's _tile_loadconfig does not tell the compiler it reads
 * the bytes, which then need not be stored. */
STROP__AMX_TARGET static inline void strop__amx_begin(void) {
  struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}

/* The tiles handed back (tilerelease): a thread that does not hold them is not saved with them
 * at each switch */
STROP__AMX_TARGET static inline void strop__amx_end(void) { _tile_release(); }

/* Tiles 0-3 (C; 2-3 only when two) += A B over kp pairs: A's rows r at a + r rs (16 rows, or 32
 * when two; every one readable, those past the caller's rows only feed sums it drops), its
 * pairs q at [q]; B packed as strop__bf16_tile_8x32's panel p (p[q 32 + j]), its rows read up to
 * kp only. Whole blocks of 16 pairs are read in place; the last, partial one is copied with
 * zeros after it, so that each element's sums are those of k rounded up to 16 pairs with the
 * pairs past kp zero, whatever the caller's rows or columns. */
STROP__AMX_TARGET static inline void strop__amx_sums(const uint32_t *a, int64_t rs, int64_t kp,
                                                     const uint32_t *p, int two) {
  int64_t q = 0;
  for (; q + 16 <= kp; q += 16) {
    _tile_loadd(6, p + q * 32, 128);
    _tile_loadd(7, p + q * 32 + 16, 128);
    _tile_loadd(4, a + q, rs * 4);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (two) {
      _tile_loadd(5, a + 16 * rs + q, rs * 4);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
  if (q < kp) {
    const int64_t nq = kp - q;
    uint32_t ta[32 * 16] __attribute__((aligned(64))), tb[16 * 32] __attribute__((aligned(64)));
    memset(tb, 0, sizeof tb);
    memcpy(tb, p + q * 32, (size_t)nq * 32 * sizeof *tb);
    const __mmask16 mk = (__mmask16)((1u << nq) - 1u);
    for (int r = 0; r < (two ? 32 : 16); r++)
      _mm512_store_si512(ta + r * 16, _mm512_maskz_loadu_epi32(mk, a + r * rs + q));
    _tile_loadd(6, tb, 128);
    _tile_loadd(7, tb + 16, 128);
    _tile_loadd(4, ta, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (two) {
      _tile_loadd(5, ta + 256, 64);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  }
}

/* Tiles 0-1 (and 2-3 when two) set to zero: a block's sums start */
STROP__AMX_TARGET static inline void strop__amx_zero(int two) {
  _tile_zero(0);
  _tile_zero(1);
  if (two) {
    _tile_zero(2);
    _tile_zero(3);
  }
}

/* Tiles 0-1 (and 2-3 when two) stored as rows of 32 sums 128 bytes apart at s (16 rows, or 32) */
STROP__AMX_TARGET static inline void strop__amx_store(float *s, int two) {
  _tile_stored(0, s, 128);
  _tile_stored(1, s + 16, 128);
  if (two) {
    _tile_stored(2, s + 512, 128);
    _tile_stored(3, s + 528, 128);
  }
}

/* strop__bf16_tile_finish on the sums s (rows of 32, 128 bytes apart) of up to 32 rows, 8 at a
 * time */
STROP__AMX_TARGET static inline void strop__amx_finish(const float *s, int64_t mr, int64_t nr,
                                                       float alpha, float beta, const float *add,
                                                       int relu, float *c, int64_t split,
                                                       float *c2, int64_t ldc, const float *e,
                                                       const float *e2, int opts) {
  for (int64_t g = 0; g < mr; g += 8) {
    __m512 acc[8][2];
    for (int r = 0; r < 8; r++) {
      acc[r][0] = _mm512_load_ps(s + (g + r) * 32);
      acc[r][1] = _mm512_load_ps(s + (g + r) * 32 + 16);
    }
    const float *ag = add && !(opts & STROP__TILE_ADD_COLS) ? add + g : add;
    strop__bf16_tile_finish(acc, mr - g < 8 ? mr - g : 8, nr, alpha, beta, ag, relu, c + g * ldc,
                            split, c2 + g * ldc, ldc, e ? e + g * ldc : NULL,
                            e2 ? e2 + g * ldc : NULL, opts);
  }
}

/* A block's sums, tiles 0-3 (2-3 when mr > 16), ended as strop__bf16_tile_8x32_ex ends (its
 * arguments): stored straight from the tiles where the sums are all C gets (whole rows and
 * columns, alpha 1, nothing added), else through strop__amx_finish */
STROP__AMX_TARGET static inline void strop__amx_out(int64_t mr, int64_t nr, float alpha,
                                                    float beta, const float *add, int relu,
                                                    float *c, int64_t split, float *c2,
                                                    int64_t ldc, const float *e, const float *e2,
                                                    int opts) {
  const int two = mr > 16;
  if (mr == (two ? 32 : 16) && nr == 32 && split >= 32 && alpha == 1.0f && beta == 0.0f && !add &&
      !relu && !e) {
    _tile_stored(0, c, ldc * 4);
    _tile_stored(1, c + 16, ldc * 4);
    if (two) {
      _tile_stored(2, c + 16 * ldc, ldc * 4);
      _tile_stored(3, c + 16 * ldc + 16, ldc * 4);
    }
    return;
  }
  float s[32 * 32] __attribute__((aligned(64)));
  strop__amx_store(s, two);
  strop__amx_finish(s, mr, nr, alpha, beta, add, relu, c, split, c2, ldc, e, e2, opts);
}

/* strop__bf16_tile_8x32_ex on up to 32 rows, the sums made on the tiles (after
 * strop__amx_begin): A's pair (r, q) at a[r rs + q] for 32 rows (16 when mr <= 16), every row
 * readable (those past mr are not stored); the rest as strop__bf16_tile_8x32_ex's arguments,
 * and what follows the sums the same (strop__bf16_tile_finish). Each element's sum is the tiles'
 * over k in blocks of 16 pairs: not vdpbf16ps's bits, the same for every shape around it. */
STROP__AMX_TARGET static inline void strop__amx_tile_32x32(
    const uint32_t *a, int64_t rs, int64_t kp, const uint32_t *p, int64_t mr, int64_t nr,
    float alpha, float beta, const float *add, int relu, float *c, int64_t split, float *c2,
    int64_t ldc, const float *e, const float *e2, int opts) {
  for (int64_t g = 0; g < mr; g += 8)
    strop__bf16_tile_prefetch(mr - g < 8 ? mr - g : 8, nr, c + g * ldc, split, c2 + g * ldc, ldc,
                              e ? e + g * ldc : NULL, e2 ? e2 + g * ldc : NULL, opts);
  strop__amx_zero(mr > 16);
  strop__amx_sums(a, rs, kp, p, mr > 16);
  strop__amx_out(mr, nr, alpha, beta, add, relu, c, split, c2, ldc, e, e2, opts);
}

/* acc (32 rows of 32 sums, 128 bytes apart, all stored; 16 when mr <= 16) += A times the panel p
 * over kp pairs (A as strop__amx_tile_32x32's), from zero unless load: the tiles' sums carried
 * between calls in FP32 (stored and loaded exactly), so that k may come in slices of whole
 * blocks of 16 pairs */
STROP__AMX_TARGET static inline void strop__amx_acc_32x32(const uint32_t *a, int64_t rs,
                                                          int64_t kp, const uint32_t *p,
                                                          int64_t mr, float *acc, int load) {
  const int two = mr > 16;
  if (load) {
    _tile_loadd(0, acc, 128);
    _tile_loadd(1, acc + 16, 128);
    if (two) {
      _tile_loadd(2, acc + 512, 128);
      _tile_loadd(3, acc + 528, 128);
    }
  } else strop__amx_zero(two);
  strop__amx_sums(a, rs, kp, p, two);
  strop__amx_store(acc, two);
}

#endif
