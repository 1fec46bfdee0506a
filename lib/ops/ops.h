/* SPDX-License-Identifier: MIT */
/* strop — math kernels, forward and backward side by side. Only ops/ calls BLAS. Kernels
 * take raw float arrays and sizes; they know nothing of layers, nodes or files. */
#ifndef STROP_OPS_H
#define STROP_OPS_H

#include <stddef.h>
#include <stdint.h>

/* Kernels whose loops gain from wider vectors (exp/erfc polynomials) are built three times —
 * AVX-512, AVX2+FMA and the baseline — and the loader picks one for the CPU (GCC's
 * target_clones, an ifunc): the library stays a baseline x86-64 build for distributions. The
 * clones may round differently from each other (FMA), never from run to run on one machine. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(STROP_NO_CLONES)
#  define STROP__CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#  define STROP__CLONES
#endif

/* C = alpha * op(A) * op(B) + beta * C, row-major; trans flags 0/1. */
void strop__sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc);
/* The same for m rows of a product of m_all rows, on the path (own kernel, product of few rows
 * or OpenBLAS) the whole product takes: each row's bits are then those of the whole product
 * (the paths differ in their bits, a split of the rows does not). */
void strop__sgemm_rows(int64_t m_all, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc);
/* The same, and returns 1 when every element of C is finite afterwards, 0 otherwise: the own
 * kernel looks at each value as it stores it, OpenBLAS's result is scanned by the thread that
 * wrote it while it is in cache (a gradient checked where it is made, not read back later). */
int strop__sgemm_finite(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc);
/* Bytes the own SGEMM's packing buffers hold (process-wide, made at its first call and kept),
 * or, before that call, the bytes it will make where the own SGEMM can run (0 with made_only:
 * the caller ran the step it asks for, whose products made none): what a memory estimate adds
 * to a step's own. */
size_t strop__gemm_buffer_bytes(int made_only);
/* strop's own SGEMM (gemm.c), same contract as strop__sgemm without the threading: used by
 * strop__sgemm where the CPU has AVX-512 (see strop__gemm_use_own). Returns 0, or -1 when it
 * cannot run here (no AVX-512 build, no packing buffer, an empty product): the caller falls
 * back. With nonfinite, also sets *nonfinite to whether any element of C ends NaN or infinite. */
int strop__sgemm_own(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc, int *nonfinite);
/* A benchmark's observer of the products strop__sgemm runs (bench_big GEMM_PROFILE=1: the
 * step's time per product and shape): when set, called after each product with its shape, its
 * alpha, the kernel that ran it (0 OpenBLAS, 1 the own GEMM, 2 a few-rows kernel of gemv.c; for
 * the BF16 products, 3 strop__bf16_gemm_f32 on two FP32 operands, 4 strop__bf16_gemm_nt / _nn on
 * a weight held in BF16 or int8) and the calling thread's CPU seconds in it (the whole product at
 * 1 thread). NULL, the default, costs one test per product. */
typedef void (*strop__gemm_observer_fn)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                                        float alpha, int kernel, double seconds);
extern strop__gemm_observer_fn strop__gemm_observer;
/* The calling thread's CPU time in seconds (the observer's clock). */
double strop__thread_cpu_now(void);
/* 1 when this build and CPU can run strop__sgemm_own. */
int strop__gemm_own_available(void);
/* 1 when strop__sgemm uses it for this product: strop__gemm_impl 0 decides by the CPU,
 * OpenBLAS's kernels and the shape (where OpenBLAS has AVX-512 kernels, only small and skinny
 * shapes, which the own kernel reads in place, and wide ones, every side at least 256, which it
 * packs), 1 forces OpenBLAS, 2 forces the own kernel
 * where available (tests, benchmarks). Decided once per product, before any split. */
int strop__gemm_use_own(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k);
extern int strop__gemm_impl;
/* Within the own kernel: 0 picks the in-place paths by shape, 1 always packs, 2 reads in place
 * wherever it can (tests: every path gives the same bits). */
extern int strop__gemm_sup;
/* Rows whose row statistics run side by side (1-8, default 8): a layer norm's mean, variance
 * and gradient sums and the cross-entropy's softmax sums are each a chain of dependent double
 * adds per row, bound by their latency; several rows' chains overlap. Each row still sums in
 * its own order, so every value is 1's (tests compare the bits; bench_big's KERNELS=ab times
 * 1 against the default). */
extern int strop__rows_together;
/* The depth of the own GEMM's k blocks: each element of C sums its products in k order within a
 * block and adds the blocks in order (gemm.c), and the small-m kernels (gemv.c) do the same. */
enum { STROP__GEMM_KC = 256 };
/* Products with few rows (gemv.c): C[m, n] = alpha A[m, k] op(B) + beta C with A not
 * transposed and m <= STROP__GEMV_MAX_M (a decoded token, a few sequences), B streamed once
 * where it lies, on AVX-512 or AVX2+FMA. Every element is computed as strop__sgemm_own computes
 * it: the same bits on either ISA, whatever the split of C's columns across calls. */
enum { STROP__GEMV_MAX_M = 4 };
enum { STROP__GEMV_NONE = 0, STROP__GEMV_AVX2 = 1, STROP__GEMV_AVX512 = 2 };
/* 0 decides (STROP_GEMV=0 in the environment, read once per process, turns the kernels off),
 * 1 off, 2 the AVX2 kernel wherever the CPU has it, 3 the AVX-512 one (tests, benchmarks). */
extern int strop__gemv_impl;
/* The kernel strop__sgemm runs this product with (own: whether it would run the own GEMM):
 * the AVX-512 one where the own GEMM would run, AVX2 where the CPU has no AVX-512 and OpenBLAS
 * is not forced (strop__gemm_impl 1), STROP__GEMV_NONE where the GEMM path keeps it. */
int strop__gemv_pick(int trans_a, int64_t m, int own);
/* Runs kernel isa (strop__gemv_pick's) on a product, B [k, n] (trans_b 0) or [n, k] (1):
 * 0, or -1 when it cannot run here (ISA, m out of 1..STROP__GEMV_MAX_M, an empty product).
 * nonfinite as strop__sgemm_own's. */
int strop__sgemv(int isa, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc, int *nonfinite);
/* A BLAS section: every call into OpenBLAS is inside one. OpenBLAS's process-wide thread
 * count is 1 while any section is open and the host's own value otherwise (blas.c). Sections
 * nest and may be open on several threads at once; enter and leave pair up on one thread. */
void strop__blas_enter(void);
void strop__blas_leave(void);
/* 1 when this thread may call into OpenBLAS: it has finished a call before (its work buffer is
 * then kept by OpenBLAS), or the per-process memory limits leave room for a buffer per thread of
 * strop's pool (lib/ops/blas.c says why: OpenBLAS 0.3.21 spins for ever when that malloc fails).
 * Where it is 0 the caller runs its plain-C path instead. */
int strop__blas_has_room(void);
/* Notes that this thread finished an OpenBLAS call (strop__blas_has_room is 1 from then on). */
void strop__blas_had_buffer(void);

#endif
