/* SPDX-License-Identifier: MIT */
/* strop — frozen weights held in fewer bits: BF16 (the top half of an FP32) or int8 with one
 * FP32 scale per output channel or per group of an output channel's inputs (symmetric,
 * absmax), their conversions, and their product on AVX512_BF16 (vdpbf16ps, FP32 accumulation;
 * int8 expanded to BF16 while packing) with its exact fallback (widen, FP32 GEMM). */
#ifndef STROP_OPS_LOWP_H
#define STROP_OPS_LOWP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The storage of a weight; the numbers are the public strop_dtype's. */
enum { STROP__LOWP_F32 = 0, STROP__LOWP_BF16 = 1, STROP__LOWP_INT8 = 2 };

/* A rows x cols weight (row-major) in BF16 or int8. scale_cols 1 says the output channels are
 * W's columns (W [in, out], GPT-2's Conv1D), 0 its rows (W [out, in]). For int8, scale holds
 * one FP32 per output channel (group 0) or per run of `group` consecutive inputs of an output
 * channel (the last run of a channel may be shorter): output channel o's scales are
 * scale[o * ng .. o * ng + ng - 1], ng = ceil(inputs / group), and the value is
 * (float)q * scale. A BF16 W [in, out] is stored
 * transposed (v is cols x rows), so that the vdpbf16ps product reads each output channel's
 * inputs contiguously whatever the layout; strop__lowp_expand gives W in its own layout.
 * dtype STROP__LOWP_F32 (all zero) means "not held here". */
typedef struct strop__lowp {
  int dtype;
  int scale_cols;
  int64_t rows, cols;
  int64_t group; /* int8: inputs per scale, 0 for the whole channel; 0 for BF16 */
  void *v;       /* uint16_t[rows * cols] (BF16) or int8_t[rows * cols]; 64-byte aligned */
  float *scale;  /* int8: strop__lowp_scales(q) scales; NULL for BF16 */
  int panels;    /* BF16 only, 1: v holds the weight in the vdpbf16ps kernel's panels instead
                    (strop__bf16_gemm_nt then packs nothing): per block of 32 output channels
                    o0 .. o0 + 31, ka / 2 rows of 32 pairs, ka = the inputs rounded up to 32,
                    ((uint32_t *)v)[(o0 / 32 * ka / 2 + q) * 32 + c] = W(o0 + c, input 2q) |
                    W(o0 + c, input 2q + 1) << 16, zeros past the edges
                    (strop__bf16_panels_bytes); made by strop__bf16_shadow_fill (a model's
                    compute-dtype copy). Every reader here takes either layout; 0: as above. */
} strop__lowp;

/* Round-to-nearest-even FP32 -> BF16 (NaN stays NaN, quiet); BF16 -> FP32 is exact.
 * strop__bf16_round_n rounds n values (vectorised where the CPU allows, the same bits). */
uint16_t strop__bf16_from_f32(float x);
float strop__bf16_to_f32(uint16_t h);
void strop__bf16_round_n(const float *x, uint16_t *out, size_t n);
/* BF16 -> FP32 of n values (exact). */
void strop__bf16_widen_n(const uint16_t *h, float *out, size_t n);
/* An activation held in BF16 between its readers' forwards and backwards (graph/model.c,
 * compact_act), split across the library's threads: strop__bf16_compact_par rounds as
 * strop__bf16_rne_bits, but a nonzero value that rounds to zero (magnitude at most 2^-134) is
 * held as STROP__BF16_TINY with its sign, a pattern rounding never makes (a signalling NaN);
 * strop__bf16_expand_par widens it back to the FP32 of magnitude 2^-149 with that sign. The
 * values expanded then round to the BF16 the originals round to (so a product that rounds its
 * operands sees the same bits), and each has its original's sign and zeroness (so a backward
 * that reads only whether a value is positive, a relu's select, sees the same). */
#define STROP__BF16_TINY 0x7f81u
void strop__bf16_compact_par(const float *x, uint16_t *out, size_t n);
void strop__bf16_expand_par(const uint16_t *h, float *out, size_t n);
/* An activation of rows of l values whose row r is channel r % c ([n, c, l]) held as its
 * deviations from a centre per channel: out = x - centre[r % c] rounded to BF16
 * (strop__bf16_rne_bits: a deviation of magnitude at most 2^-134 becomes a zero, NaN stays NaN),
 * split across the library's threads. Widened, they are x's distance from the centre to about 8
 * significant bits, which a batch norm's backward reads as x - mean (its batch mean the centre:
 * graph/model.c, compact_plan; ops/norm.h, strop__bn_res.dev). */
void strop__bf16_compact_centred_par(const float *x, uint16_t *out, size_t rows, size_t l,
                                     size_t c, const float *centre);

/* strop__bf16_to_f32 inline, so that the loops calling it vectorise */
static inline float strop__bf16_val(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* A value held by strop__bf16_compact_par, widened as strop__bf16_expand_par widens it (its
 * sign and zeroness the original's) */
static inline float strop__bf16_held_val(uint16_t h) {
  const uint32_t v = h;
  const uint32_t u = (v & 0x7fffu) == STROP__BF16_TINY ? ((v & 0x8000u) << 16) | 1u : v << 16;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* strop__bf16_from_f32 on an FP32's bits, in the low 16 bits: branch-free, so that the loops
 * calling it vectorise */
static inline uint32_t strop__bf16_rne_bits(uint32_t u) {
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* ties to even (overflow: Inf) */
  return (u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r; /* NaN quiet */
}

/* Makes q from the FP32 weight w (rows x cols); group: int8's inputs per scale (0: one scale
 * per output channel; ignored for BF16): 0, or -1 when out of memory (q untouched). */
int strop__lowp_make(strop__lowp *q, int dtype, const float *w, int64_t rows, int64_t cols,
                     int scale_cols, int64_t group);
/* Number of int8 scales of q (0 for BF16). */
int64_t strop__lowp_scales(const strop__lowp *q);
/* A deep copy: 0, or -1 when out of memory (dst untouched). */
int strop__lowp_copy(strop__lowp *dst, const strop__lowp *src);
void strop__lowp_free(strop__lowp *q);
/* The FP32 values q stands for, exactly, into dst (rows * cols floats). */
void strop__lowp_expand(const strop__lowp *q, float *dst);
/* Bytes q holds (values and scales). */
size_t strop__lowp_bytes(const strop__lowp *q);
/* Bytes of a BF16 weight of `out` output channels x `in` inputs held in panels (.panels). */
size_t strop__bf16_panels_bytes(int64_t out, int64_t in);

/* Scratch for widening a weight (or rounding an activation) around one product: a buffer of
 * at least `bytes`, 64-byte aligned, from a process-wide list so that a warm training step
 * allocates nothing (the list holds one buffer per product running at once, each the size of
 * the largest weight seen); NULL when out of memory. Give it back with strop__lowp_scratch_give. */
void *strop__lowp_scratch_take(size_t bytes);
void strop__lowp_scratch_give(void *p);
/* Bytes the list holds now (buffers given back and kept for the next product): memory a step
 * that widens such weights keeps once warm, which strop_model_step_memory counts. */
size_t strop__lowp_scratch_bytes(void);

/* Which product a held BF16 or int8 weight takes: 0 decides by the CPU (vdpbf16ps when it has
 * AVX512_BF16 and STROP_BF16_FALLBACK is not set in the environment), 1 forces the exact
 * fallback (tests run both paths on one machine), 2 decides as 0 but packs the weight's panels
 * element by element, the reference the vectorised packing is tested against. */
extern int strop__bf16_impl;
/* 2 (the default): a BF16 weight held in panels whose strop__bf16_gemm_nn panel of 32 columns
 * would pass 512 KB (k > 8192: the LM head's input gradient) runs k in slices of 256 across up
 * to 24 column blocks, each block of the weight's rows packed in one run; 1: slices of 1024 a
 * column block at a time (each block's rows read as 2 KB runs 48 KB apart); both keep the
 * panels in L2 and carry each element's sums between slices in FP32; 0: all of k at once
 * (tests and bench_big K_SLICES=ab, KS_WIDE=ab compare them: the same bits). */
extern int strop__bf16_kslices;
/* 1 (the default): a held weight's _nt product whose A passes 512 KB (the LM head's forward
 * over a 512-row chunk: 768 KB of BF16 rows; at every size of A with strop__bf16_pack_groups)
 * runs every 8-row tile of A against a group of the weight's panels (256 KB) at a time, so that
 * A comes from L3 once per group rather than once per 48 KB panel; 0: a panel at a time (tests
 * and bench_big HELD_GROUPS=ab: the same bits). */
extern int strop__bf16_held_groups;
/* 1 (the default): every 8-row tile of A runs against a group of panels (256 KB) at a time
 * wherever a panel is at most 128 KB — a held weight's _nt product at any size of A (the LM
 * head's 192-row chunks of a frozen head, whose A fit in L2, ran a panel at a time) and the
 * panels packed per call (a held weight's _nn, the input gradient; a plain BF16 or int8
 * weight) — so the tile's rows stay in L1 and only the panels stream from L2; 0: as before
 * (tests and bench_big PACK_GROUPS=ab: the same bits). */
extern int strop__bf16_pack_groups;
/* 1 (the default): an int8 weight stored as B [k, n] with one scale per output channel packs a
 * group's panels a row pair at a time across all of them (each row read in order); 0: a panel
 * at a time down all of k (tests and bench_big INT8_SWEEP=ab compare the two: the same bits). */
extern int strop__int8_sweep;
/* 1 (the default): on the AMX tiles, a product whose weight is read as rows of B [k, n] (an
 * int8 weight with one scale per output channel whose rows are B's; a BF16 weight used in place,
 * not in panels, in strop__bf16_gemm_nn) runs k in slices of 256 across a group of column
 * blocks, each slice of every block packed from the rows read in runs of the group's width and
 * the sums carried between slices in FP32, where a panel at a time down all of k read each row
 * 32 to 160 bytes at a time (a decoded token's tiles, and the TinyLlama bases' input gradients,
 * waited on the rows and their pages); 0: whole k (tests, bench_generate and bench_big
 * KN_SLICES=ab: the same bits). */
extern int strop__kn_slices;
/* 1 (the default): packing an int8 weight stored as B [k, n] a row pair across a group of
 * panels prefetches the group's bytes of the rows 16 below (the rows path's and the sweep's
 * rows: a few hundred bytes of each, apart by a row, which the hardware's prefetchers did not
 * follow); 0: none (bench_big and bench_generate INT8_PF=ab: the same bits). */
extern int strop__int8_pf;
/* 1 when the vdpbf16ps kernel runs for BF16 weights here (CPU, build, strop__bf16_impl, the
 * environment). Where these comments say vdpbf16ps they mean this dot path, which runs on the
 * AMX tiles instead where strop__bf16_amx_runs(). */
int strop__bf16_dot_enabled(void);
/* 1 (the default): the BF16 products (held weights here, FP32 operands rounded while packed in
 * ops/bf16gemm.h) run on the AMX tiles (tdpbf16ps, blocks of 32 x 32) where the CPU has
 * AMX-BF16, Linux lets the process use the tiles and STROP_BF16_AMX is not "0" in the
 * environment; 0: on vdpbf16ps. The tiles sum each element's products in blocks of 16 pairs in
 * their own order: not vdpbf16ps's bits, but within the same tolerance of the exact fallback
 * (tests run both on such a CPU), and the same bits whatever the split across threads, the
 * rows and columns around the element, or how k is sliced. strop__lowp_gemv then does not run
 * (its vdpbf16ps sums would make a row's bits depend on how many rows come with it). */
extern int strop__bf16_amx;
/* 1 when the BF16 products run on the AMX tiles here (strop__bf16_amx, the CPU, the OS, the
 * environment; strop__bf16_dot_enabled() first); a product decides once, before it runs. The
 * first call asks Linux for the tiles' state (arch_prctl ARCH_REQ_XCOMP_PERM). */
int strop__bf16_amx_runs(void);
/* 1 where the CPU reports AMX-TILE and AMX-BF16 (CPUID leaf 7), whatever the OS, the
 * environment or strop__bf16_amx say: tests tell an AMX CPU from one without with it. */
int strop__cpu_has_amx(void);
/* C[m, n] = A[m, k] B[n, k]^T + beta C with B a BF16 weight stored [n, k] (q [out, in]: rows n,
 * cols k; or q [in, out] stored transposed: rows k, cols n) and A FP32, rounded to BF16 on the
 * way in: the vdpbf16ps product, FP32 sums in k order for every element (whatever the split
 * across threads). Panels of 32 of B's rows are packed as (k, k + 1) pairs per column, A's
 * pairs broadcast: an 8 x 32 tile keeps 16 accumulators. B may be an int8 weight instead (in
 * its own layout, [out, in] or [in, out]): each value is expanded to the BF16 value nearest its
 * FP32 value (float)q * scale as the panels are packed, so the product is bit for bit that of
 * the BF16 weight strop__lowp_make would make from strop__lowp_expand's values. work: 64-byte
 * aligned, strop__bf16_gemm_scratch(q, nn, m, n, k) bytes (nn: 0 for strop__bf16_gemm_nt, 1 for
 * _nn; a weight read as rows of B [k, n] also needs room for C's sums between slices of k).
 * Only where strop__bf16_dot_enabled(); beta 0 or 1. */
size_t strop__bf16_gemm_scratch(const strop__lowp *q, int nn, int64_t m, int64_t n, int64_t k);
/* The most strop__bf16_gemm_scratch gives for any weight of these shapes (tests, benchmarks). */
size_t strop__bf16_gemm_scratch_max(int64_t m, int64_t n, int64_t k);
void strop__bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, void *work);
/* After strop__bf16_gemm_nt or _nn, their work begins with A rounded to BF16
 * (strop__bf16_round_n's values): row i's k values at strop__bf16_gemm_a_rounded(work) + i *
 * strop__bf16_gemm_a_stride(k), zeros after them to the stride. Valid until work is used
 * again: a second product through the same operand reads them instead of rounding it again. */
static inline const uint16_t *strop__bf16_gemm_a_rounded(const void *work) {
  return (const uint16_t *)work;
}
static inline int64_t strop__bf16_gemm_a_stride(int64_t k) { return (k + 31) / 32 * 32; }
/* strop__bf16_gemm_nt with C[i, j] = bias[j] + (A B^T)[i, j]: the bits of C's rows set to the
 * bias and beta 1, the bias added as each tile is stored (C is not written twice, nor read) */
void strop__bf16_gemm_nt_bias(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const strop__lowp *q, const float *bias, float *c, int64_t ldc,
                              void *work);
/* C[m, n] = A[m, k] B[k, n] + beta C with B the same stored values read the other way (rows
 * k, cols n: a weight held for strop__bf16_gemm_nt as [out, in], here with k = out, n = in):
 * the input gradient dX = dY W through a frozen BF16 weight. The same kernel, panels packed
 * from pairs of B's rows; the same scratch (strop__bf16_gemm_scratch(q, 1, m, n, k)), the same
 * conditions and FP32 sums in k order. */
void strop__bf16_gemm_nn(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, void *work);

/* y[m, out] = x[m, in] W^T + b (b may be NULL) with W held in BF16 or int8 (w_in_out as
 * strop__linear_forward_lowp's, equal to w->scale_cols), for m <= STROP__GEMV_MAX_M (gemv.c):
 * W read once as it is stored, widened in registers, no scratch the size of W; the bits
 * strop__linear_forward_lowp gives (vdpbf16ps where it runs it, else the FP32 product of the
 * widened values). Split across threads by output channels. 0, or -1 when it does not run here
 * (the CPU, the shape, the kernels turned off, out of memory): y untouched, use the general
 * path. */
int strop__lowp_gemv(const float *x, const strop__lowp *w, const float *b, float *y, int64_t m,
                     int64_t in, int64_t out, int w_in_out);

#endif
