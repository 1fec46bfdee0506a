/* SPDX-License-Identifier: MIT */
/* strop — BF16 products of FP32 operands (mixed-precision training): rounding to BF16, the BF16
 * copy of a trainable weight, and the vdpbf16ps GEMM whose operands are rounded while packed. */
#include "ops/bf16gemm.h"

#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "core/pool_profile.h"
#include "ops/dense.h"
#include "ops/ops.h"

STROP__CLONES void strop__bf16_round_f32(const float *x, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    u = strop__bf16_rne_bits(u) << 16;
    memcpy(&out[i], &u, sizeof u);
  }
}

/* W [in, out] held as v[c rows + r] = W(r, c) (strop__bf16_shadow_fill's transposed case):
 * 32 x 32 tiles, rounded a row at a time; an AVX-512 build of it below */
static void fill_transposed(strop__lowp *q, const float *w) {
  uint16_t *v = q->v;
  const int64_t rows = q->rows, cols = q->cols;
  enum { TS = 32 };
  uint16_t t[TS][TS];
  for (int64_t r0 = 0; r0 < rows; r0 += TS)
    for (int64_t c0 = 0; c0 < cols; c0 += TS) {
      const int64_t nr = rows - r0 < TS ? rows - r0 : TS, nc = cols - c0 < TS ? cols - c0 : TS;
      for (int64_t r = 0; r < nr; r++)
        strop__bf16_round_n(w + (r0 + r) * cols + c0, t[r], (size_t)nc);
      for (int64_t c = 0; c < nc; c++)
        for (int64_t r = 0; r < nr; r++) v[(c0 + c) * rows + r0 + r] = t[r][c];
    }
}

/* The panels (strop__lowp.panels) of output channels [32 lo, 32 hi) of the FP32 weight w */
typedef struct panel_fill {
  strop__lowp *q;
  const float *w;
  int64_t out, in, kh; /* kh: pairs per panel row, the inputs rounded up to 32, halved */
} panel_fill;

static void fill_panels_scalar(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const panel_fill *F = ctx;
  uint16_t *v = F->q->v;
  for (int64_t o = 32 * lo; o < 32 * hi; o++)
    for (int64_t i = 0; i < 2 * F->kh; i++) {
      const int64_t at = 2 * ((o / 32 * F->kh + i / 2) * 32 + o % 32) + (i & 1);
      const int in = o < F->out && i < F->in;
      v[at] = !in                ? 0
              : F->q->scale_cols ? strop__bf16_from_f32(F->w[i * F->out + o])
                                 : strop__bf16_from_f32(F->w[o * F->in + i]);
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  include <immintrin.h>

#  define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#  include "ops/amxtile.h"
#  include "ops/bf16tile.h"

/* C's rows a tile makes on vdpbf16ps (MR) and on AMX (AR), C's columns (NR) */
enum { MR = 8, AR = 32, NR = 32 };

typedef struct gjob {
  int ta, tb;
  int64_t m, n, k, kp, lda, ldb, ldc;
  const float *a, *b;
  float alpha, beta;
  float *c;
  uint32_t *ap; /* A's rows of kp pairs, row i's pair q at ap[i kp + q]; rows to a multiple of
                 * 32 allocated (a_bytes), those past m never written (the AMX tile reads them,
                 * and drops their sums) */
  uint32_t *bp; /* per chunk one panel of kp x 32 pairs: bp[q 32 + c] */
  strop__bf16_pack_b_fn pack; /* non-NULL: op(B)'s panels come from it, b is not read */
  const void *pctx;
  const strop__bf16_c_layout *lay; /* non-NULL: where C's columns go, and a row's addend */
  int64_t fit;     /* gemm_chunk: panels of B packed at once (a chunk's bp holds as many) */
  atomic_int *bad; /* strop__bf16_gemm_f32_finite: set when C holds a NaN or an infinity */
  int amx;         /* 1: the AMX tile (strop__bf16_amx_runs), blocks of 32 rows; 0: 8 */
  /* non-NULL: A (with ta) or B (without tb) held in BF16 instead of a or b, lda or ldb apart,
   * read as they are (pairs16h) */
  const uint16_t *ah, *bh;
} gjob;

/* C's rows a kernel call makes */
static int64_t row_step(const gjob *J) { return J->amx ? AR : MR; }

/* The pairs (r0[c], r1[c]) of 16 columns (cnt of them read, the rest 0; r1 NULL: zeros) */
BF16_TARGET static inline __m512i pairs16(const float *r0, const float *r1, int64_t cnt) {
  const __mmask16 mk = cnt >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cnt) - 1u);
  const __m512i lo = strop__rne16(_mm512_castps_si512(_mm512_maskz_loadu_ps(mk, r0)));
  if (!r1) return lo;
  const __m512i hi = strop__rne16(_mm512_castps_si512(_mm512_maskz_loadu_ps(mk, r1)));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* pairs16 of values held in BF16 (r0[c], r1[c]; r1 NULL: zeros): their own rounding, but the
 * marker of a nonzero value that rounded to zero (STROP__BF16_TINY, strop__bf16_compact_par) is
 * that zero with its sign, which the FP32 value rounds to */
BF16_TARGET static inline __m512i pairs16h(const uint16_t *r0, const uint16_t *r1, int64_t cnt) {
  const __mmask32 mk = cnt >= 16 ? (__mmask32)0xffff : (__mmask32)((1u << cnt) - 1u);
  __m512i v = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(mk, r0)));
  if (r1)
    v = _mm512_or_si512(
        v,
        _mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(mk, r1))), 16));
  return strop__bf16_held_rounded32(v);
}

/* The pairs (rows 2q and 2q + 1, zeros for the second past k) of an operand stored [k, cols]
 * from column j, cnt of them read: FP32 values rounded, or values held in BF16 (h non-NULL) as
 * they are */
BF16_TARGET static inline __m512i kn_pairs16(const float *x, const uint16_t *h, int64_t ld,
                                             int64_t k, int64_t q, int64_t j, int64_t cnt) {
  const int64_t at = 2 * q * ld + j;
  const int two = 2 * q + 1 < k;
  if (h) return pairs16h(h + at, two ? h + at + ld : NULL, cnt);
  return pairs16(x + at, two ? x + at + ld : NULL, cnt);
}

/* The 16 pairs (x[2 l], x[2 l + 1]) of 32 consecutive values, rounded (cnt of them read, the
 * rest 0): a row of A [m, k] or of B [n, k] as the kernel takes it */
BF16_TARGET static inline __m512i row_pairs16(const float *x, int64_t cnt) {
  const __mmask16 m0 = (__mmask16)strop__lanes32(cnt), m1 = (__mmask16)strop__lanes32(cnt - 16);
  const __m512i lo = strop__rne16(_mm512_castps_si512(_mm512_maskz_loadu_ps(m0, x)));
  const __m512i hi = strop__rne16(_mm512_castps_si512(_mm512_maskz_loadu_ps(m1, x + 16)));
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(lo)),
                            _mm512_cvtepi32_epi16(hi), 1);
}

/* fill_transposed on AVX-512: rows 2i and 2i + 1 of a 32 x 16 block rounded into 16 pairs
 * (pairs16), the 16 x 16 pairs transposed: each of v's rows gets 32 values in one store. */
BF16_TARGET static void fill_transposed_avx512(strop__lowp *q, const float *w) {
  uint16_t *v = q->v;
  const int64_t rows = q->rows, cols = q->cols;
  for (int64_t r0 = 0; r0 < rows; r0 += 32) {
    const __mmask32 ms = strop__lanes32(rows - r0);
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
      const int64_t nc = cols - c0 < 16 ? cols - c0 : 16;
      __m512i t[16];
      for (int i = 0; i < 16; i++) {
        const int64_t ra = r0 + 2 * i;
        t[i] = ra < rows ? pairs16(w + ra * cols + c0,
                                   ra + 1 < rows ? w + (ra + 1) * cols + c0 : NULL, nc)
                         : _mm512_setzero_si512();
      }
      strop__transpose16(t);
      for (int64_t c = 0; c < nc; c++)
        _mm512_mask_storeu_epi16(v + (c0 + c) * rows + r0, ms, t[c]);
    }
  }
}

static int fill_avx512(void) {
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
}

int strop__bf16_pack_sweep = 1;

/* Operands stored [k, cols] (A with ta, B without tb) give a panel 64 or 128 bytes of each of k
 * rows, lda apart: one panel after the other, every row's next bytes came from memory again with
 * k rows' streams too many for the prefetcher (the LM head's dy: 512 rows 201 KB apart).
 * strop__bf16_pack_sweep packs up to SWEEP_COLS columns' panels in one pass down the rows
 * instead, a row's 1 KB read in order, as many as write at most SWEEP_BYTES (in L2: a W [3072,
 * 768]'s 192 KB panels swept 8 at a time filled 20% slower than one at a time); each panel
 * written where it was, the same values. */
enum { SWEEP_COLS = 256, SWEEP_BYTES = 256 << 10 };

/* of a sweep's panels (or groups) of `bytes` each, how many at once: 1 is the panel order */
static int64_t sweep_width(int64_t most, size_t bytes) {
  const int64_t fit = bytes ? (int64_t)(SWEEP_BYTES / bytes) : most;
  return !strop__bf16_pack_sweep || fit < 1 ? 1 : fit < most ? fit : most;
}

/* A stored [k, m], 16-row groups [g0, g1): rows 2q and 2q + 1 give the pairs q of 16
 * consecutive rows i (pairs16); 16 pairs of each group transposed (strop__transpose16) into 16
 * pairs of each of its rows, a block of 16 pairs of all the groups before the next (down A's
 * rows in order, as strop__bf16_pack_sweep reads B) */
BF16_TARGET static void pack_a_kn(const gjob *J, int64_t g0, int64_t g1) {
  for (int64_t q0 = 0; q0 < J->kp; q0 += 16) {
    const int64_t nq = J->kp - q0 < 16 ? J->kp - q0 : 16;
    const __mmask16 mk = (__mmask16)strop__lanes32(nq);
    for (int64_t g = g0; g < g1; g++) {
      const int64_t i0 = g * 16;
      __m512i t[16];
      for (int64_t q = 0; q < 16; q++)
        t[q] = q < nq ? kn_pairs16(J->a, J->ah, J->lda, J->k, q0 + q, i0, J->m - i0)
                      : _mm512_setzero_si512();
      strop__transpose16(t); /* t[r] lane q: row i0 + r's pair q0 + q */
      for (int64_t r = 0; r < 16 && i0 + r < J->m; r++)
        _mm512_mask_storeu_epi32(J->ap + (i0 + r) * J->kp + q0, mk, t[r]);
    }
  }
}

/* A's rows of 16-row groups [lo, hi): row i's pairs at ap[i kp + q] */
BF16_TARGET static void pack_a(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const gjob *J = ctx;
  if (J->ta) {
    const int64_t w = sweep_width(SWEEP_COLS / 16, (size_t)J->kp * 16 * 4);
    for (int64_t g0 = lo; g0 < hi; g0 += w) pack_a_kn(J, g0, g0 + w < hi ? g0 + w : hi);
    return;
  }
  /* A stored [m, k]: a row's pairs are its consecutive values, 16 pairs at a time */
  for (int64_t i = lo * 16; i < hi * 16 && i < J->m; i++)
    for (int64_t q0 = 0; q0 < J->kp; q0 += 16) {
      const __m512i v = row_pairs16(J->a + i * J->lda + 2 * q0, J->k - 2 * q0);
      _mm512_mask_storeu_epi32(J->ap + i * J->kp + q0, (__mmask16)strop__lanes32(J->kp - q0), v);
    }
}

/* B's columns j0 .. j0 + 31 as pairs: p[q 32 + c] = B(2q, j0 + c) | B(2q + 1, j0 + c) << 16 */
BF16_TARGET static void pack_b(const gjob *J, int64_t j0, uint32_t *p) {
  if (J->pack) {
    J->pack(J->pctx, j0, p);
    return;
  }
  if (!J->tb) {
    const int64_t cnt = J->n - j0;
    for (int64_t q = 0; q < J->kp; q++) {
      _mm512_store_si512(p + q * NR, kn_pairs16(J->b, J->bh, J->ldb, J->k, q, j0, cnt));
      _mm512_store_si512(p + q * NR + 16,
                         cnt > 16 ? kn_pairs16(J->b, J->bh, J->ldb, J->k, q, j0 + 16, cnt - 16)
                                  : _mm512_setzero_si512());
    }
    return;
  }
  /* B stored [n, k]: 16 pairs of each of 16 of the panel's columns, transposed */
  for (int64_t q0 = 0; q0 < J->kp; q0 += 16) {
    const int64_t nq = J->kp - q0 < 16 ? J->kp - q0 : 16;
    for (int h = 0; h < 2; h++) {
      __m512i t[16];
      for (int c = 0; c < 16; c++) {
        const int64_t j = j0 + 16 * h + c;
        t[c] = j < J->n ? row_pairs16(J->b + j * J->ldb + 2 * q0, J->k - 2 * q0)
                        : _mm512_setzero_si512();
      }
      strop__transpose16(t);
      for (int64_t q = 0; q < nq; q++) _mm512_store_si512(p + (q0 + q) * NR + 16 * h, t[q]);
    }
  }
}

/* B stored [k, n] (pack_b's !tb): the panels of columns [32 jb0, 32 jb1), panel jb at p +
 * (jb - jb0) stride, a row pair at a time (strop__bf16_pack_sweep) */
BF16_TARGET static void pack_b_sweep(const gjob *J, int64_t jb0, int64_t jb1, uint32_t *p,
                                     size_t stride) {
  for (int64_t q = 0; q < J->kp; q++)
    for (int64_t jb = jb0; jb < jb1; jb++) {
      const int64_t j0 = jb * NR, cnt = J->n - j0;
      uint32_t *d = p + (size_t)(jb - jb0) * stride + q * NR;
      _mm512_store_si512(d, kn_pairs16(J->b, J->bh, J->ldb, J->k, q, j0, cnt));
      _mm512_store_si512(d + 16, cnt > 16
                                     ? kn_pairs16(J->b, J->bh, J->ldb, J->k, q, j0 + 16, cnt - 16)
                                     : _mm512_setzero_si512());
    }
}

/* pack_b of the panels [jb0, jb1), panel jb at p + (jb - jb0) stride: swept down the rows where
 * that reads B better */
BF16_TARGET static void pack_b_range(const gjob *J, int64_t jb0, int64_t jb1, uint32_t *p,
                                     size_t stride) {
  const int64_t w = !J->pack && !J->tb ? sweep_width(SWEEP_COLS / NR, stride * 4) : 1;
  if (w > 1) {
    for (int64_t s = jb0; s < jb1; s += w)
      pack_b_sweep(J, s, s + w < jb1 ? s + w : jb1, p + (size_t)(s - jb0) * stride, stride);
    return;
  }
  for (int64_t jb = jb0; jb < jb1; jb++) pack_b(J, jb * NR, p + (size_t)(jb - jb0) * stride);
}

/* C rows i0 .. i0 + row_step - 1 (those past m not stored) x the panel's 32 columns: on
 * vdpbf16ps 16 accumulators, each lane summing its element's pairs in k order; on AMX the
 * tiles' sums */
STROP__AMX_TARGET static void kernel(const gjob *J, int64_t ib, int64_t j0, const uint32_t *p) {
  const int64_t i0 = ib * row_step(J), mr = J->m - i0 < row_step(J) ? J->m - i0 : row_step(J);
  const int64_t nr = J->n - j0 < NR ? J->n - j0 : NR;
  const uint32_t *a = J->ap + (size_t)i0 * (size_t)J->kp; /* pair (r, q) at r kp + q */
  const strop__bf16_c_layout *L = J->lay;
  if (!L) {
    if (J->amx)
      strop__amx_tile_32x32(a, J->kp, J->kp, p, mr, nr, J->alpha, J->beta, NULL, 0,
                            J->c + i0 * J->ldc + j0, NR, J->c + i0 * J->ldc + j0, J->ldc, NULL,
                            NULL, 0);
    else
      strop__bf16_tile_8x32(a, J->kp, 1, J->kp, p, mr, nr, J->alpha, J->beta,
                            J->c + i0 * J->ldc + j0, J->ldc);
    return;
  }
  /* columns j0 .. of image s from its column r on, the rest (if any) in image s + 1 */
  const int64_t s = L->period < J->n ? j0 / L->period : 0, r = j0 - s * L->period;
  const int64_t split = L->period - r;
  float *c = J->c + s * L->stride + i0 * J->ldc + r;
  float *c2 = split < nr ? J->c + (s + 1) * L->stride + i0 * J->ldc : c;
  const float *e = L->res ? L->res + (c - J->c) : NULL,
              *e2 = L->res ? L->res + (c2 - J->c) : NULL;
  const int opts = (L->res_first ? STROP__TILE_RES_FIRST : 0) |
                   (L->prefetch ? STROP__TILE_PREFETCH_C : 0);
  if (J->amx)
    strop__amx_tile_32x32(a, J->kp, J->kp, p, mr, nr, J->alpha, J->beta,
                          L->add ? L->add + i0 : NULL, L->relu, c, split, c2, J->ldc, e, e2,
                          opts);
  else
    strop__bf16_tile_8x32_ex(a, J->kp, 1, J->kp, p, mr, nr, J->alpha, J->beta,
                             L->add ? L->add + i0 : NULL, L->relu, c, split, c2, J->ldc, e, e2,
                             opts);
}

/* strop__bf16_gemm_f32_finite: C's rows of block ib, columns [j0, j1), read back once the block
 * has run against a group of panels (the rows still in L1 or L2; a tile's own stores read back
 * at once cost as much as the trainer's later pass saved) */
static void seen_rows(const gjob *J, int64_t ib, int64_t j0, int64_t j1) {
  const int64_t i0 = ib * row_step(J), mr = J->m - i0 < row_step(J) ? J->m - i0 : row_step(J);
  for (int64_t r = 0; r < mr; r++)
    if (!strop__all_finite_serial(J->c + (i0 + r) * J->ldc + j0, (size_t)(j1 - j0))) {
      atomic_store_explicit(J->bad, 1, memory_order_relaxed);
      return;
    }
}

/* column panels [lo, hi) of 32, in groups of as nearly equal size as J->fit allows: a group's
 * panels packed, then every block of rows (8, or 32 on AMX) against each of them (J->fit 1: a
 * panel, then all of A against it). A group in L2 has A, packed once, read from further out
 * once per group rather than once per panel. */
STROP__AMX_TARGET static void gemm_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const gjob *J = ctx;
  const size_t panel = (size_t)J->kp * NR;
  uint32_t *p = J->bp + (size_t)chunk * (size_t)J->fit * panel;
  const int64_t np = (J->m + row_step(J) - 1) / row_step(J), ng = (hi - lo + J->fit - 1) / J->fit;
  if (J->amx) strop__amx_begin();
  const int64_t per = ng > 0 ? (hi - lo + ng - 1) / ng : 1;
  for (int64_t g0 = lo; g0 < hi; g0 += per) {
    const int64_t g1 = g0 + per < hi ? g0 + per : hi;
    pack_b_range(J, g0, g1, p, panel);
    for (int64_t ib = 0; ib < np; ib++) {
      for (int64_t jb = g0; jb < g1; jb++) kernel(J, ib, jb * NR, p + (size_t)(jb - g0) * panel);
      if (J->bad) seen_rows(J, ib, g0 * NR, g1 * NR < J->n ? g1 * NR : J->n);
    }
  }
  if (J->amx) strop__amx_end();
}

/* all of B's panels [lo, hi), for rows_chunk */
BF16_TARGET static void pack_b_all(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const gjob *J = ctx;
  pack_b_range(J, lo, hi, J->bp + (size_t)lo * (size_t)J->kp * NR, (size_t)J->kp * NR);
}

/* row blocks [lo, hi) of 8 (32 on AMX) against every panel of B (all packed): C is written a
 * block of whole rows at a time */
STROP__AMX_TARGET static void rows_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const gjob *J = ctx;
  const int64_t blocks = (J->n + NR - 1) / NR;
  if (J->amx) strop__amx_begin();
  for (int64_t ib = lo; ib < hi; ib++) {
    for (int64_t jb = 0; jb < blocks; jb++)
      kernel(J, ib, jb * NR, J->bp + (size_t)jb * (size_t)J->kp * NR);
    if (J->bad) seen_rows(J, ib, 0, J->n);
  }
  if (J->amx) strop__amx_end();
}

/* fill_panels_scalar's layout on AVX-512: a panel is the product's packing of B = the weight's
 * [out, in] (pack_b: W [out, in] is B stored [n, k], W [in, out] B stored [k, n]), rounded as
 * packed, and zeros for the pairs past the inputs */
BF16_TARGET static void fill_panels_avx512(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const panel_fill *F = ctx;
  gjob J = {.tb = !F->q->scale_cols,
            .n = F->out,
            .k = F->in,
            .kp = (F->in + 1) / 2,
            .ldb = F->q->scale_cols ? F->out : F->in,
            .b = F->w};
  uint32_t *v = (uint32_t *)F->q->v;
  pack_b_range(&J, lo, hi, v + (size_t)lo * (size_t)F->kh * NR, (size_t)F->kh * NR);
  for (int64_t jb = lo; jb < hi; jb++) {
    uint32_t *p = v + (size_t)jb * (size_t)F->kh * NR;
    memset(p + J.kp * NR, 0, (size_t)(F->kh - J.kp) * NR * sizeof *p);
  }
}

/* A's rows of pairs, m rounded up to whole blocks of 32 (the AMX tile reads them) */
static size_t a_bytes(int64_t m, int64_t k) {
  const size_t kp = (size_t)(k + 1) / 2;
  return (size_t)((m + AR - 1) / AR * AR) * kp * sizeof(uint32_t);
}

/* B's panels all packed, when they fit in half of a 1 MB L2: a short k (the LM head's weight
 * gradient over one chunk of rows: k 83, m the 50257 words) then sweeps C once, a block of rows at
 * a time, instead of a column panel of all of C's rows per panel — C is read and written once, in
 * order, where the panel order had it miss the cache at every tile */
enum { B_ALL_MAX = 512 << 10 };
static size_t b_all_bytes(int64_t n, int64_t k) {
  return (size_t)((n + NR - 1) / NR) * (size_t)((k + 1) / 2) * NR * sizeof(uint32_t);
}

int strop__bf16_gemm_check_finite = 1;

int strop__bf16_b_groups = 1;

/* Past B_ALL_MAX, how many of B's panels a thread packs at once (gemm_chunk): as many as fit in
 * B_ALL_MAX (its own L2), at most all; 1 where fewer than 4 fit. A weight gradient dW = dy^T x
 * of a transformer's shapes (k 512 rows, 24 to 96 panels of 32 KB) then reads A from L3 once per
 * group of 16 panels instead of once per panel (6-11% faster at 1 thread); each sum is still one
 * tile's over all of k: the same bits. */
static int64_t b_group_panels(int64_t n, int64_t k) {
  const size_t panel = (size_t)((k + 1) / 2) * NR * sizeof(uint32_t);
  if (panel == 0) return 1;
  const int64_t blocks = (n + NR - 1) / NR, fit = (int64_t)(B_ALL_MAX / panel);
  return fit < 4 ? 1 : fit < blocks ? fit : blocks;
}

size_t strop__bf16_gemm_f32_scratch(int64_t m, int64_t n, int64_t k) {
  const size_t kp = (size_t)(k + 1) / 2;
  size_t b = (size_t)(strop__num_threads() + 1) * kp * NR * sizeof(uint32_t);
  if (b_all_bytes(n, k) <= B_ALL_MAX && b_all_bytes(n, k) > b) b = b_all_bytes(n, k);
  /* or a group of panels per chunk (gemm_chunk), whichever strop__bf16_b_groups the product finds */
  const size_t g = (size_t)(strop__num_threads() + 1) * (size_t)b_group_panels(n, k) * kp * NR *
                   sizeof(uint32_t);
  if (b_all_bytes(n, k) > B_ALL_MAX && g > b) b = g;
  return a_bytes(m, k) + b + 128;
}

/* one chunk's panel, or all of B's as far as B_ALL_MAX: never less for a smaller shape */
size_t strop__bf16_sgemm_serial_scratch(int64_t m, int64_t n, int64_t k) {
  const size_t one = (size_t)(k + 1) / 2 * NR * sizeof(uint32_t);
  const size_t all = b_all_bytes(n, k) < B_ALL_MAX ? b_all_bytes(n, k) : B_ALL_MAX;
  return a_bytes(m, k) + (one > all ? one : all) + 128;
}

/* ap: A's rows packed by strop__bf16_pack_a (then a is not read), or NULL */
static void run_h(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                  const uint16_t *ah, int64_t lda, const uint32_t *ap, const float *b,
                  const uint16_t *bh, int64_t ldb, strop__bf16_pack_b_fn pack, const void *pctx,
                  float beta, float *c, int64_t ldc, const strop__bf16_c_layout *lay, void *work,
                  int threads, atomic_int *bad) {
  if (m <= 0 || n <= 0) return;
  gjob J = {ta,
            tb,
            m,
            n,
            k,
            (k + 1) / 2,
            lda,
            ldb,
            ldc,
            a,
            b,
            alpha,
            beta,
            c,
            work,
            NULL,
            pack,
            pctx,
            lay,
            1,
            bad,
            strop__bf16_amx_runs(),
            ta ? ah : NULL,
            tb ? NULL : bh};
  /* the panels after A's rows, 64-byte aligned */
  const size_t ab = (a_bytes(m, k) + 63) / 64 * 64;
  J.bp = (uint32_t *)(void *)((char *)work + ab);
  const int64_t groups = (m + 15) / 16, blocks = (n + NR - 1) / NR;
  if (ap) J.ap = (uint32_t *)(uintptr_t)ap; /* only read */
  else strop__par_run(strop__par_chunks(threads, groups, 4), groups, pack_a, &J);
  if (b_all_bytes(n, k) <= B_ALL_MAX) {
    const int64_t np = (m + row_step(&J) - 1) / row_step(&J);
    strop__par_run(strop__par_chunks(threads, blocks, 1), blocks, pack_b_all, &J);
    strop__par_run(strop__par_chunks(threads, np, 1), np, rows_chunk, &J);
  } else {
    /* a convolution's products (pack, lay) keep a panel at a time */
    if (strop__bf16_b_groups && !pack && !lay) J.fit = b_group_panels(n, k);
    strop__par_run(strop__par_chunks(threads, blocks, 1), blocks, gemm_chunk, &J);
  }
}

static void run(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                int64_t lda, const uint32_t *ap, const float *b, int64_t ldb,
                strop__bf16_pack_b_fn pack, const void *pctx, float beta, float *c, int64_t ldc,
                const strop__bf16_c_layout *lay, void *work, int threads, atomic_int *bad) {
  run_h(ta, tb, m, n, k, alpha, a, NULL, lda, ap, b, NULL, ldb, pack, pctx, beta, c, ldc, lay,
        work, threads, bad);
}

/* strop__bf16_gemm_f32 and its finite-checking form (bad NULL, or set when C holds a value
 * that is not finite), an operand given in BF16 where ah or bh is (strop__bf16_gemm_kn_h) */
static void gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                     const uint16_t *ah, int64_t lda, const float *b, const uint16_t *bh,
                     int64_t ldb, float beta, float *c, int64_t ldc, void *work,
                     atomic_int *bad) {
  const int big = (double)m * (double)n * (double)k >= (double)(1 << 20);
  strop__gemm_observer_fn obs = strop__gemm_observer;
  const double t0 = obs ? strop__thread_cpu_now() : 0.0;
  run_h(ta, tb, m, n, k, 1.0f, a, ah, lda, NULL, b, bh, ldb, NULL, NULL, beta, c, ldc, NULL, work,
        big ? strop__num_threads() : 1, bad);
  if (obs) obs(ta, tb, m, n, k, 1.0f, 3, strop__thread_cpu_now() - t0);
}

void strop__bf16_gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                          int64_t ldc, void *work) {
  gemm_f32(ta, tb, m, n, k, a, NULL, lda, b, NULL, ldb, beta, c, ldc, work, NULL);
}

int strop__bf16_gemm_f32_finite(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                                int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                int64_t ldc, void *work) {
  atomic_int bad = 0;
  gemm_f32(ta, tb, m, n, k, a, NULL, lda, b, NULL, ldb, beta, c, ldc, work, &bad);
  return !atomic_load(&bad);
}

int strop__bf16_gemm_kn_h(int64_t m, int64_t n, int64_t k, const float *a, const uint16_t *ah,
                          int64_t lda, const float *b, const uint16_t *bh, int64_t ldb,
                          float beta, float *c, int64_t ldc, void *work, int check) {
  atomic_int bad = 0;
  gemm_f32(1, 0, m, n, k, a, ah, lda, b, bh, ldb, beta, c, ldc, work, check ? &bad : NULL);
  return !atomic_load(&bad);
}

size_t strop__bf16_pack_a_bytes(int64_t m, int64_t k) { return a_bytes(m, k); }

void strop__bf16_pack_a(int ta, int64_t m, int64_t k, const float *a, int64_t lda, uint32_t *ap) {
  if (m <= 0) return;
  gjob J = {.ta = ta, .m = m, .k = k, .kp = (k + 1) / 2, .lda = lda, .a = a, .ap = ap};
  const int64_t groups = (m + 15) / 16;
  strop__par_run(strop__par_chunks(strop__num_threads(), groups, 4), groups, pack_a, &J);
}

void strop__bf16_gemm_f32_packed(int64_t m, int64_t n, int64_t k, const uint32_t *ap,
                                 const float *b, int64_t ldb, strop__bf16_pack_b_fn pack,
                                 const void *pctx, float beta, float *c, int64_t ldc,
                                 const strop__bf16_c_layout *lay, void *work) {
  const int big = (double)m * (double)n * (double)k >= (double)(1 << 20);
  run(0, 0, m, n, k, 1.0f, NULL, 0, ap, b, ldb, pack, pctx, beta, c, ldc, lay, work,
      big ? strop__num_threads() : 1, NULL);
}

void strop__bf16_gemm_f32_packb(int ta, int64_t m, int64_t n, int64_t k, const float *a,
                                int64_t lda, strop__bf16_pack_b_fn pack, const void *pctx,
                                float beta, float *c, int64_t ldc, void *work) {
  const int big = (double)m * (double)n * (double)k >= (double)(1 << 20);
  run(ta, 0, m, n, k, 1.0f, a, lda, NULL, NULL, 0, pack, pctx, beta, c, ldc, NULL, work,
      big ? strop__num_threads() : 1, NULL);
}

void strop__bf16_sgemm_serial(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                              const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc, void *work) {
  run(ta, tb, m, n, k, alpha, a, lda, NULL, b, ldb, NULL, NULL, beta, c, ldc, NULL, work, 1,
      NULL);
}

void strop__bf16_gemm_f32_prepacked(int64_t m, int64_t n, int64_t k, const uint32_t *ap,
                                    const uint32_t *bp, float beta, float *c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  gjob J = {.m = m,
            .n = n,
            .k = k,
            .kp = (k + 1) / 2,
            .ldc = ldc,
            .alpha = 1.0f,
            .beta = beta,
            .c = c,
            .ap = (uint32_t *)(uintptr_t)ap, /* only read */
            .bp = (uint32_t *)(uintptr_t)bp, /* only read */
            .fit = 1,
            .amx = strop__bf16_amx_runs()};
  rows_chunk(&J, 0, (m + row_step(&J) - 1) / row_step(&J), 0);
}

#else

static int fill_avx512(void) { return 0; }
static void fill_panels_avx512(void *ctx, int64_t lo, int64_t hi, int chunk) {
  fill_panels_scalar(ctx, lo, hi, chunk);
}
static void fill_transposed_avx512(strop__lowp *q, const float *w) { fill_transposed(q, w); }
size_t strop__bf16_gemm_f32_scratch(int64_t m, int64_t n, int64_t k) {
  (void)m, (void)n, (void)k;
  return 0;
}
void strop__bf16_gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                          int64_t ldc, void *work) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb;
  (void)beta, (void)c, (void)ldc, (void)work;
}
size_t strop__bf16_sgemm_serial_scratch(int64_t m, int64_t n, int64_t k) {
  (void)m, (void)n, (void)k;
  return 0;
}
int strop__bf16_gemm_f32_finite(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                                int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                int64_t ldc, void *work) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb;
  (void)beta, (void)c, (void)ldc, (void)work;
  return 0;
}
int strop__bf16_gemm_kn_h(int64_t m, int64_t n, int64_t k, const float *a, const uint16_t *ah,
                          int64_t lda, const float *b, const uint16_t *bh, int64_t ldb,
                          float beta, float *c, int64_t ldc, void *work, int check) {
  (void)m, (void)n, (void)k, (void)a, (void)ah, (void)lda, (void)b, (void)bh, (void)ldb;
  (void)beta, (void)c, (void)ldc, (void)work, (void)check;
  return 0;
}
size_t strop__bf16_pack_a_bytes(int64_t m, int64_t k) {
  (void)m, (void)k;
  return 0;
}
void strop__bf16_gemm_f32_packb(int ta, int64_t m, int64_t n, int64_t k, const float *a,
                                int64_t lda, strop__bf16_pack_b_fn pack, const void *pctx,
                                float beta, float *c, int64_t ldc, void *work) {
  (void)ta, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)pack, (void)pctx, (void)beta;
  (void)c, (void)ldc, (void)work;
}
void strop__bf16_pack_a(int ta, int64_t m, int64_t k, const float *a, int64_t lda, uint32_t *ap) {
  (void)ta, (void)m, (void)k, (void)a, (void)lda, (void)ap;
}
void strop__bf16_gemm_f32_packed(int64_t m, int64_t n, int64_t k, const uint32_t *ap,
                                 const float *b, int64_t ldb, strop__bf16_pack_b_fn pack,
                                 const void *pctx, float beta, float *c, int64_t ldc,
                                 const strop__bf16_c_layout *lay, void *work) {
  (void)lay;
  (void)m, (void)n, (void)k, (void)ap, (void)b, (void)ldb, (void)pack, (void)pctx, (void)beta;
  (void)c, (void)ldc, (void)work;
}
void strop__bf16_gemm_f32_prepacked(int64_t m, int64_t n, int64_t k, const uint32_t *ap,
                                    const uint32_t *bp, float beta, float *c, int64_t ldc) {
  (void)m, (void)n, (void)k, (void)ap, (void)bp, (void)beta, (void)c, (void)ldc;
}
void strop__bf16_sgemm_serial(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                              const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc, void *work) {
  (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b;
  (void)ldb, (void)beta, (void)c, (void)ldc, (void)work;
}

#endif

/* chunks [lo, hi) of 32 output channels of par_for's range [0, hi - lo), moved on by F->at */
typedef struct panel_part {
  const panel_fill *F;
  int64_t at;
} panel_part;

static void fill_panels_part(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const panel_part *P = ctx;
  (fill_avx512() ? fill_panels_avx512 : fill_panels_scalar)((void *)P->F, P->at + lo, P->at + hi,
                                                            chunk);
}

void strop__bf16_shadow_fill_blocks(strop__lowp *q, const float *w, int64_t lo, int64_t hi) {
  /* split across threads by blocks of 32 output channels */
  const int64_t out = q->scale_cols ? q->cols : q->rows, in = q->scale_cols ? q->rows : q->cols;
  const int64_t blocks = (out + 31) / 32;
  if (hi > blocks) hi = blocks;
  if (lo >= hi) return;
  const panel_fill F = {q, w, out, in, (in + 31) / 32 * 16};
  const panel_part P = {&F, lo};
  /* at least 64K weights a chunk: GPT-2's 768-wide outputs (24 panels) split too — at 16
   * panels a chunk their copies ran on one thread after each optimizer step */
  const int64_t per = 32 * in, grain = strop__split_passes ? (65536 + per - 1) / per : 16;
  strop__par_for(hi - lo, grain, fill_panels_part, (void *)&P);
}

void strop__bf16_shadow_fill(strop__lowp *q, const float *w) {
  if (q->panels) {
    strop__bf16_shadow_fill_blocks(q, w, 0, INT64_MAX);
    return;
  }
  if (!q->scale_cols) strop__bf16_round_n(w, q->v, (size_t)q->rows * (size_t)q->cols);
  else if (fill_avx512()) fill_transposed_avx512(q, w);
  else fill_transposed(q, w);
}
