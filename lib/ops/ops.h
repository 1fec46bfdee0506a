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
/* The same, and returns 1 when every element of C is finite afterwards, 0 otherwise: the own
 * kernel looks at each value as it stores it, OpenBLAS's result is scanned by the thread that
 * wrote it while it is in cache (a gradient checked where it is made, not read back later). */
int strop__sgemm_finite(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc);
/* Bytes the own SGEMM's packing buffers hold (process-wide, made at its first call and kept):
 * what a memory estimate adds to a step's own. */
size_t strop__gemm_buffer_bytes(void);
/* strop's own SGEMM (gemm.c), same contract as strop__sgemm without the threading: used by
 * strop__sgemm where the CPU has AVX-512 (see strop__gemm_use_own). Returns 0, or -1 when it
 * cannot run here (no AVX-512 build, no packing buffer, an empty product): the caller falls
 * back. With nonfinite, also sets *nonfinite to whether any element of C ends NaN or infinite. */
int strop__sgemm_own(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc, int *nonfinite);
/* 1 when this build and CPU can run strop__sgemm_own. */
int strop__gemm_own_available(void);
/* 1 when strop__sgemm uses it for this product: strop__gemm_impl 0 decides by the CPU,
 * OpenBLAS's kernels and the shape (where OpenBLAS has AVX-512 kernels, only small and skinny
 * shapes, which the own kernel reads in place), 1 forces OpenBLAS, 2 forces the own kernel
 * where available (tests, benchmarks). Decided once per product, before any split. */
int strop__gemm_use_own(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k);
extern int strop__gemm_impl;
/* Within the own kernel: 0 picks the in-place paths by shape, 1 always packs, 2 reads in place
 * wherever it can (tests: every path gives the same bits). */
extern int strop__gemm_sup;
/* A BLAS section: every call into OpenBLAS is inside one. OpenBLAS's process-wide thread
 * count is 1 while any section is open and the host's own value otherwise (blas.c). Sections
 * nest and may be open on several threads at once; enter and leave pair up on one thread. */
void strop__blas_enter(void);
void strop__blas_leave(void);
/* Float64 LAPACK Cholesky of a row-major symmetric n x n matrix (lower). 0 on success. */
int strop__dpotrf_lower(int64_t n, double *a);

#endif
