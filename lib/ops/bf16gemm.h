/* SPDX-License-Identifier: MIT */
/* strop — BF16 products of FP32 operands for mixed-precision training (the model's compute
 * dtype): rounding to BF16 (vectorised, bit for bit strop__bf16_from_f32), the BF16 copy of an
 * FP32 weight, and C = op(A) op(B) on vdpbf16ps — or on the AMX tiles where
 * strop__bf16_amx_runs() (ops/lowp.h) — with both operands rounded while packing. */
#ifndef STROP_OPS_BF16GEMM_H
#define STROP_OPS_BF16GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "ops/lowp.h"

/* out[i] = the BF16 value nearest x[i] (ties to even), as FP32: strop__bf16_from_f32 then
 * strop__bf16_to_f32, the same bits, vectorised where the CPU allows. out may be x. */
void strop__bf16_round_f32(const float *x, float *out, size_t n);

/* Fills q (already a BF16 strop__lowp of w's shape and layout, its values allocated) with w's
 * values rounded to nearest even, as strop__lowp_make would make them: w rows x cols, stored
 * transposed when q->scale_cols; or with q->panels in the kernel's panels (v then of
 * strop__bf16_panels_bytes), so that its products pack nothing. */
void strop__bf16_shadow_fill(strop__lowp *q, const float *w);
/* The panels of output channels [32 lo, 32 hi) only (q->panels; the same values as the whole
 * fill makes there): a weight can then be read, and let go of, a part at a time. */
void strop__bf16_shadow_fill_blocks(strop__lowp *q, const float *w, int64_t lo, int64_t hi);

/* C[m, n] = op(A)[m, k] op(B)[k, n] + beta C, op(A)(i, t) = ta ? a[t lda + i] : a[i lda + t],
 * op(B)(t, j) = tb ? b[j ldb + t] : b[t ldb + j]; both FP32 operands rounded to BF16 (nearest
 * even) while they are packed, BF16 x BF16 products with FP32 sums (vdpbf16ps, or the AMX
 * tiles: ops/amxtile.h), each element's sum in k order (the tiles': in their order over blocks
 * of 16 pairs) whatever the split across threads and the rows around it. beta 0 or 1. work: 64-byte aligned,
 * strop__bf16_gemm_f32_scratch(m, n, k) bytes. Only where strop__bf16_dot_enabled() (ops/lowp.h);
 * the exact fallback elsewhere is the FP32 GEMM on strop__bf16_round_f32's values. The weight
 * gradient dW = dy^T x (ta 1, tb 0) is what it is for; the transposes are all supported (every
 * operand's rounding and packing vectorised). */
size_t strop__bf16_gemm_f32_scratch(int64_t m, int64_t n, int64_t k);
/* 1 (the default): where B's packed panels pass half of L2, strop__bf16_gemm_f32 packs them in
 * groups that fit and runs C's rows against one group after the other (A read once per group);
 * 0: a panel of 32 columns at a time against all of A (tests and bench_big B_GROUPS=ab compare
 * the two: the same bits). */
extern int strop__bf16_b_groups;
/* 1 (the default): an operand stored [k, cols] (A with ta, B without tb, a W [in, out] weight's
 * BF16 panels) packed a few panels at once in one pass down its rows; 0: a panel at a time down
 * all of them (tests and bench_big PACK_SWEEP=ab compare the two: the same bits). */
extern int strop__bf16_pack_sweep;
void strop__bf16_gemm_f32(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                          int64_t ldc, void *work);
/* 1 (the default): a BF16 weight gradient written outright is seen finite as it is stored
 * (strop__linear_backward_bf16_seen); 0: the trainer's guard reads it (bench_big
 * CHECK_FINITE=ab compares the two) */
extern int strop__bf16_gemm_check_finite;
/* strop__bf16_gemm_f32 (the same bits) that also reads C back a block of 8 rows at a time, once
 * the block has run against a group of panels (still in cache): 1 when every element of C is
 * finite, 0 when one is NaN or infinite (so that a weight gradient written outright need not be
 * read again by the trainer's guard). */
int strop__bf16_gemm_f32_finite(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a,
                                int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                                int64_t ldc, void *work);
/* strop__bf16_gemm_f32(1, 0, ...) — C[m, n] = A^T B + beta C with A stored [k, m] and B stored
 * [k, n], a weight gradient's shape — where either operand may be given already in BF16: ah
 * (non-NULL: A's values, a not read) or bh (B's, b not read), lda and ldb apart as a and b
 * would be. Those are read as they are: values rounded by strop__bf16_round_n, or an
 * activation held by strop__bf16_compact_par (its marker of a nonzero value that rounded to
 * zero read as that zero). So the bits are those of strop__bf16_gemm_f32 on the FP32 values
 * they were rounded from. check: read C back as strop__bf16_gemm_f32_finite does and return
 * its answer; 0: return 1. The same scratch as strop__bf16_gemm_f32. */
int strop__bf16_gemm_kn_h(int64_t m, int64_t n, int64_t k, const float *a, const uint16_t *ah,
                          int64_t lda, const float *b, const uint16_t *bh, int64_t ldb,
                          float beta, float *c, int64_t ldc, void *work, int check);
/* A packer of op(B) [k, n] for strop__bf16_gemm_f32_packed: fills p (64-byte aligned) with
 * columns j0 .. j0 + 31 as strop__bf16_gemm_f32 packs them, ceil(k / 2) rows of 32 pairs,
 * p[q 32 + c] = B(2q, j0 + c) | B(2q + 1, j0 + c) << 16, each value rounded to BF16 (nearest
 * even: strop__rne16 in ops/bf16tile.h), zeros past n and k. ctx is the caller's; called from
 * any of the product's threads at once. */
typedef void (*strop__bf16_pack_b_fn)(const void *ctx, int64_t j0, uint32_t *p);
/* op(A) [m, k] (as strop__bf16_gemm_f32 reads it) rounded and packed once into ap (64-byte
 * aligned, strop__bf16_pack_a_bytes(m, k) bytes), for products that share it
 * (strop__bf16_gemm_f32_packed); split across the library's threads. Row i's pairs are
 * ap[i kp + q] = A(i, 2q) | A(i, 2q + 1) << 16, kp = ceil(k / 2), zero past k; the bytes hold m
 * rounded up to 32 rows, those past m never written (the AMX tile reads them and drops their
 * sums), so a block of rows may be packed alone at its first row's place. */
size_t strop__bf16_pack_a_bytes(int64_t m, int64_t k);
void strop__bf16_pack_a(int ta, int64_t m, int64_t k, const float *a, int64_t lda, uint32_t *ap);
/* Where strop__bf16_gemm_f32_packed puts C when it is a block of images' outputs side by side:
 * C(i, j) at c + (j / period) stride + i ldc + j % period, and add[i] (NULL: none) added to row
 * i's sums before beta's C (a bias: y = sum + b, as a pass after the product would give it).
 * period >= 32, or at least n (a tile's 32 columns then cross one image's edge at most). */
typedef struct strop__bf16_c_layout {
  int64_t period, stride;
  const float *add;
  int relu; /* 1: what is stored is max(0, ·) of it (strop__relu_forward's select) */
  /* a residual laid out as C (element (i, j) at res + the offset of C(i, j) from c), or NULL:
   * added after add[i] and before beta's C, res's element first when res_first (a residual
   * sum's operand order: the bits of that sum as a pass after the product) */
  const float *res;
  int res_first;
  int prefetch; /* 1: C's lines asked for writing before each tile's sums (a large output) */
} strop__bf16_c_layout;
/* strop__bf16_gemm_f32 (tb 0) with A already packed (strop__bf16_pack_a), and B [k, n] (ldb)
 * or, when pack is non-NULL, never stored: its panels come from pack as the product needs them
 * (a convolution's columns straight from its images); C as lay says (NULL: [m, n], ldc). The
 * same scratch, and the same bits as strop__bf16_gemm_f32 on the matrices ap and b or pack
 * stand for. */
void strop__bf16_gemm_f32_packed(int64_t m, int64_t n, int64_t k, const uint32_t *ap,
                                 const float *b, int64_t ldb, strop__bf16_pack_b_fn pack,
                                 const void *pctx, float beta, float *c, int64_t ldc,
                                 const strop__bf16_c_layout *lay, void *work);
/* strop__bf16_gemm_f32 with op(B) from its packer (as strop__bf16_gemm_f32_packed's) and A
 * packed by the product as strop__bf16_gemm_f32 packs it: the same scratch and bits. */
void strop__bf16_gemm_f32_packb(int ta, int64_t m, int64_t n, int64_t k, const float *a,
                                int64_t lda, strop__bf16_pack_b_fn pack, const void *pctx,
                                float beta, float *c, int64_t ldc, void *work);
/* C = A B (beta 0: written; 1: added to) with both operands packed already: ap by
 * strop__bf16_pack_a, bp B's panels of 32 columns one after another (panel j at bp + j kp 32,
 * kp = ceil(k / 2): kp rows of 32 pairs, bp[q 32 + c] = B(2q, c) | B(2q + 1, c) << 16 as
 * strop__bf16_pack_b_fn's, zeros past n and k). The bits of strop__bf16_gemm_f32 on the
 * matrices they stand for. On the calling thread only, no scratch: for a kernel that packs B
 * itself inside a parallel chunk (the BF16 Winograd forward's transformed tiles). Only where
 * strop__bf16_dot_enabled(). */
void strop__bf16_gemm_f32_prepacked(int64_t m, int64_t n, int64_t k, const uint32_t *ap,
                                    const uint32_t *bp, float beta, float *c, int64_t ldc);
/* C = alpha op(A) op(B) + beta C as strop__bf16_gemm_f32 (alpha multiplies each FP32 sum; 1
 * gives strop__bf16_gemm_f32's bits), on the calling thread only: for kernels that already run
 * in a parallel chunk (attention's blocks). work: 64-byte aligned,
 * strop__bf16_sgemm_serial_scratch(m, n, k) bytes, which never shrinks as m, n or k grow, so
 * the largest shape's is enough for the smaller ones. */
size_t strop__bf16_sgemm_serial_scratch(int64_t m, int64_t n, int64_t k);
void strop__bf16_sgemm_serial(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                              const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc, void *work);

#endif
