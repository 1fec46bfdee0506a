/* SPDX-License-Identifier: MIT */
/* strop bench — the multiply-add peaks of this CPU, the ceilings docs/performance.md measures
 * every benchmark row against: FP32 FMA (vfmadd231ps on 512-bit and 256-bit registers) and the
 * BF16 dot product (vdpbf16ps, AVX512_BF16) and, where the CPU has AMX, the tiles' BF16 product
 * (tdpbf16ps, which strop's BF16 products run there), on 1 and 2 threads. Each thread runs 12
 * independent accumulator chains (enough to cover the FMA latency on two pipes) from
 * registers, or four independent 16 x 16 tiles of sums, so nothing but the arithmetic units
 * limits it.
 *
 *   bench_peak [seconds-per-row]      (default 0.5)
 *   bench_peak c2c                    the one-way latency between CPUs 0 and 1 (bench_c2c_ns)
 *
 * Prints one line per kernel and thread count: GFLOP/s (a multiply-add counts 2 flops; a
 * vdpbf16ps lane does two of them). With `c2c`, one line `c2c_ns=N` (-1 where the process may not
 * run on CPUs 0 and 1): on this wave's virtual machine about 27-40 ns while the host keeps its
 * two virtual CPUs on cores that share a level-3 cache, 170-300 ns while it does not, which
 * moves a 2-thread step by up to 15% (docs/performance.md, "The two speeds of a 2-thread
 * process"). */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "ops/lowp.h"

#define CHAINS 12
#define INNER 1000L

/* twelve named accumulators, so that the compiler keeps every chain in a register (an array
 * indexed in a loop stays in memory at -O2) */
#define DECL12(T, init)                                                                 \
  T a0 = init(0), a1 = init(1), a2 = init(2), a3 = init(3), a4 = init(4), a5 = init(5), \
    a6 = init(6), a7 = init(7), a8 = init(8), a9 = init(9), a10 = init(10), a11 = init(11)
#define STEP12(op, x, y)                                                                         \
  a0 = op(a0, x, y), a1 = op(a1, x, y), a2 = op(a2, x, y), a3 = op(a3, x, y), a4 = op(a4, x, y), \
  a5 = op(a5, x, y), a6 = op(a6, x, y), a7 = op(a7, x, y), a8 = op(a8, x, y), a9 = op(a9, x, y), \
  a10 = op(a10, x, y), a11 = op(a11, x, y)
#define SUM12(f)                                                                            \
  (f(a0) + f(a1) + f(a2) + f(a3) + f(a4) + f(a5) + f(a6) + f(a7) + f(a8) + f(a9) + f(a10) + \
   f(a11))

typedef double (*kernel_fn)(long reps, float seed); /* returns a value to keep the work */

#define Z512(c) _mm512_set1_ps((float)(c))
#define Z256(c) _mm256_set1_ps((float)(c))

__attribute__((target("avx512f"))) static double fma512(long reps, float seed) {
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(seed * 1e-7f);
  DECL12(__m512, Z512);
  for (long r = 0; r < reps; r++)
    for (long i = 0; i < INNER; i++) STEP12(_mm512_fmadd_ps, a, b);
  return SUM12(_mm512_reduce_add_ps);
}

__attribute__((target("avx2,fma"))) static float lane0(__m256 v) { return _mm256_cvtss_f32(v); }

__attribute__((target("avx2,fma"))) static double fma256(long reps, float seed) {
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(seed * 1e-7f);
  DECL12(__m256, Z256);
  for (long r = 0; r < reps; r++)
    for (long i = 0; i < INNER; i++) STEP12(_mm256_fmadd_ps, a, b);
  return SUM12(lane0);
}

#if defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  define HAVE_BF16_BUILD 1
#  include "ops/amxtile.h"
__attribute__((target("avx512f,avx512bf16"))) static double dpbf16(long reps, float seed) {
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(seed * 1e-7f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(0.25f));
  DECL12(__m512, Z512);
  for (long r = 0; r < reps; r++)
    for (long i = 0; i < INNER; i++) STEP12(_mm512_dpbf16_ps, a, b);
  return SUM12(_mm512_reduce_add_ps);
}
/* tdpbf16ps on four tiles of sums (0-3) from two of A (4, 5) and two of B (6, 7), loaded once
 * with small values: 16 x 16 x 32 multiply-adds each; the tiles configured as strop's products
 * configure them (ops/amxtile.h), handed back at the end */
STROP__AMX_TARGET static double amx(long reps, float seed) {
  strop__amx_begin();
  static uint16_t v[16 * 32] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 32; i++) v[i] = (uint16_t)(0x3a00 + (i & 7)); /* about 5e-4 */
  float out[16 * 16] __attribute__((aligned(64)));
  strop__amx_zero(1);
  _tile_loadd(4, v, 64);
  _tile_loadd(5, v, 64);
  _tile_loadd(6, v, 64);
  _tile_loadd(7, v, 64);
  for (long r = 0; r < reps; r++)
    for (long i = 0; i < INNER / 4; i++) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
  _tile_stored(0, out, 64);
  strop__amx_end();
  return out[0] + seed;
}
#else
#  define HAVE_BF16_BUILD 0
#endif

typedef struct job {
  kernel_fn fn;
  long reps;
  double sink;
} job;

static void *run(void *arg) {
  job *j = arg;
  j->sink = j->fn(j->reps, 1.0f);
  return NULL;
}

/* GFLOP/s of fn on `threads` threads (each running reps rounds), flops per call given. */
static double measure(kernel_fn fn, int threads, long reps, double flops_per_rep) {
  pthread_t th[2];
  job jobs[2];
  const double t0 = bench_now();
  for (int k = 0; k < threads; k++) {
    jobs[k] = (job){fn, reps, 0};
    if (pthread_create(&th[k], NULL, run, &jobs[k])) {
      fprintf(stderr, "bench_peak: cannot start a thread\n");
      exit(1);
    }
  }
  for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
  const double dt = bench_now() - t0;
  volatile double keep = jobs[0].sink;
  (void)keep;
  return flops_per_rep * (double)reps * threads / dt * 1e-9;
}

/* reps so that one thread runs about `seconds`, then the best of 3 runs. */
static double best(kernel_fn fn, int threads, double flops_per_rep, double seconds) {
  long reps = 10;
  for (;;) {
    const double t0 = bench_now();
    job j = {fn, reps, 0};
    run(&j);
    const double dt = bench_now() - t0;
    if (dt > 0.05) {
      reps = (long)((double)reps * seconds / dt) + 1;
      break;
    }
    reps *= 4;
  }
  double b = 0;
  for (int r = 0; r < 3; r++) {
    const double g = measure(fn, threads, reps, flops_per_rep);
    if (g > b) b = g;
  }
  return b;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "c2c")) {
    printf("c2c_ns=%.1f\n", bench_c2c_ns(200000));
    return 0;
  }
  const double seconds = argc > 1 ? atof(argv[1]) : 0.5;
  if (!(seconds > 0)) {
    fprintf(stderr, "usage: bench_peak [seconds-per-row > 0]\n");
    return 2;
  }
  __builtin_cpu_init();
  const double per512 = (double)INNER * CHAINS * 16 * 2, per256 = (double)INNER * CHAINS * 8 * 2;
  for (int threads = 1; threads <= 2; threads++) {
    if (__builtin_cpu_supports("avx512f"))
      printf("fp32 fma zmm    threads %d  %7.1f GFLOP/s\n", threads,
             best(fma512, threads, per512, seconds));
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      printf("fp32 fma ymm    threads %d  %7.1f GFLOP/s\n", threads,
             best(fma256, threads, per256, seconds));
#if HAVE_BF16_BUILD
    if (__builtin_cpu_supports("avx512bf16"))
      printf("bf16 vdpbf16ps  threads %d  %7.1f GFLOP/s\n", threads,
             best(dpbf16, threads, per512 * 2, seconds));
    else printf("bf16 vdpbf16ps  threads %d  (no AVX512_BF16 on this CPU)\n", threads);
    /* where strop's BF16 products run on the tiles (the CPU, Linux's grant, STROP_BF16_AMX):
     * INNER tdpbf16ps of 16 x 16 x 32 multiply-adds */
    if (strop__bf16_amx_runs())
      printf("bf16 amx        threads %d  %7.1f GFLOP/s\n", threads,
             best(amx, threads, (double)INNER * 16 * 16 * 32 * 2, seconds));
#endif
  }
  return 0;
}
