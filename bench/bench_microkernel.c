/* SPDX-License-Identifier: MIT */
/* strop bench — how close an FP32 GEMM micro-kernel of broadcasts and FMAs can come to this
 * CPU's FMA peak (bench_peak) when its operands are already in cache: the ceiling under which
 * the FP32 products of a step run (docs/performance.md, "This machine: an Intel Xeon with AMX").
 * Each shape MR x NR keeps MR x NR / 16 accumulators of 16 floats in zmm registers; per k it
 * loads NR / 16 vectors of a packed panel of B (KC x NR, 64-byte aligned, in L1) and broadcasts
 * MR values of a packed panel of A (MR x KC), then multiply-adds: the loop lib/ops/gemm.c's
 * kernel_8x32 runs, at other tile shapes. A panels of 120 rows lie in L2, as the packed path's
 * MC rows do; the tile of C is added to at the end of each call, as there.
 *
 *   bench_microkernel [rounds]      (default 5)
 *
 * Prints one line per shape: the best round's GFLOP/s in thread CPU time, and the share of
 * bench_peak's FP32 zmm figure when given as PEAK=GFLOP/s in the environment. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { KC = 256, ROWS = 120, CALLS = 200 };

static double thread_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* acc[r][v] += A(r, k) B(k, 16 v .. 16 v + 15) over k < kc, then C += acc; unrolled fully over
 * r and v so that every accumulator stays in a register */
#define MICRO(MR, NV)                                                                        \
  __attribute__((target("avx512f"), noinline)) static void mk_##MR##x##NV(                   \
      const float *a, const float *b, float *c, int kc) {                                    \
    __m512 acc[MR * NV];                                                                     \
    _Pragma("GCC unroll 32") for (int i = 0; i < MR * NV; i++) acc[i] = _mm512_setzero_ps(); \
    for (int k = 0; k < kc; k++) {                                                           \
      __m512 bv[NV];                                                                         \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                   \
          bv[v] = _mm512_load_ps(b + (size_t)k * 16 * NV + 16 * v);                          \
      _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++) {                                \
        const __m512 av = _mm512_set1_ps(a[(size_t)k * MR + r]);                             \
        _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                 \
            acc[NV * r + v] = _mm512_fmadd_ps(av, bv[v], acc[NV * r + v]);                   \
      }                                                                                      \
    }                                                                                        \
    _Pragma("GCC unroll 32") for (int i = 0; i < MR * NV; i++)                               \
        _mm512_storeu_ps(c + 16 * i, _mm512_add_ps(_mm512_loadu_ps(c + 16 * i), acc[i]));    \
  }

MICRO(8, 2)
MICRO(12, 2)
MICRO(14, 2)
MICRO(8, 3)
MICRO(6, 4)
MICRO(4, 4)

typedef void (*micro_fn)(const float *, const float *, float *, int);

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 5;
  if (!__builtin_cpu_supports("avx512f")) {
    printf("bench_microkernel: this CPU has no AVX-512\n");
    return 0;
  }
  static const struct {
    int mr, nv;
    micro_fn f;
  } shapes[] = {{8, 2, mk_8x2}, {12, 2, mk_12x2}, {14, 2, mk_14x2},
                {8, 3, mk_8x3}, {6, 4, mk_6x4},   {4, 4, mk_4x4}};
  float *a = aligned_alloc(64, sizeof(float) * (size_t)ROWS * KC);
  float *b = aligned_alloc(64, sizeof(float) * (size_t)KC * 64);
  float *c = aligned_alloc(64, sizeof(float) * (size_t)ROWS * 64);
  if (!a || !b || !c) return 1;
  for (size_t i = 0; i < (size_t)ROWS * KC; i++) a[i] = 1e-3f * (float)(i % 7);
  for (size_t i = 0; i < (size_t)KC * 64; i++) b[i] = 1e-3f * (float)(i % 5);
  memset(c, 0, sizeof(float) * (size_t)ROWS * 64);
  const char *pk = getenv("PEAK");
  const double peak = pk ? atof(pk) : 0.0;
  for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
    const int mr = shapes[q].mr, nr = 16 * shapes[q].nv, panels = ROWS / mr;
    double best = 0.0;
    for (int r = 0; r < rounds; r++) {
      const double t0 = thread_s();
      for (int it = 0; it < CALLS; it++)
        for (int p = 0; p < panels; p++)
          shapes[q].f(a + (size_t)p * mr * KC, b, c + (size_t)p * mr * nr, KC);
      const double g = 2.0 * mr * nr * KC * panels * CALLS / (thread_s() - t0) / 1e9;
      if (g > best) best = g;
    }
    printf("RESULT bench=microkernel shape=%dx%d accumulators=%d gflops=%.1f", mr, nr,
           mr * shapes[q].nv, best);
    if (peak > 0) printf(" of_peak=%.0f%%", 100.0 * best / peak);
    printf("\n");
  }
  free(a), free(b), free(c);
  return 0;
}
