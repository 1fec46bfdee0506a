/* SPDX-License-Identifier: MIT */
/* strop bench — do AMX's BF16 tile products give the bits of strop's vdpbf16ps kernels? Sums
 * of 256 products of random BF16 values (16 x 16 outputs, 200 draws: wide and narrow values,
 * some below FP32's normal range) by TDPBF16PS over tiles of 32, and by the chain of VDPBF16PS
 * that strop's kernels run (one pair of k per instruction, in k order), compared bit for bit;
 * also against three scalar models of the tile's sum (each pair's two products summed then
 * added; the three terms rounded once; the products added one at a time). Prints how many of
 * the sums differ. Nothing here is a test: it says whether an AMX product could stand in for
 * vdpbf16ps with the same bits (docs/performance.md "This machine: an Intel Xeon with AMX").
 *
 *   bench/bench_amx_bits          prints "no AMX" and exits 0 on a CPU or kernel without it */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#  include <cpuid.h>
#  include <immintrin.h>
#  include <sys/syscall.h>
#  include <unistd.h>

enum { M = 16, N = 16, K = 256, DRAWS = 200 };
enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };

typedef struct tilecfg {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tilecfg;

static uint16_t g_a[M][K];        /* A row-major, k contiguous: a tile's rows */
static uint16_t g_b[K / 2][N][2]; /* B as pairs along k (strop's panels, AMX's B tile) */
static float g_amx[M][N], g_dot[M][N];

static uint16_t rne(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float widen(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static int has_amx(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  if (!(d & (1u << 22)) || !(d & (1u << 24))) return 0; /* AMX-BF16, AMX-TILE */
  /* and AVX512_BF16 (leaf 7, subleaf 1, EAX bit 5), for the chain it is compared with */
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return 0;
  /* Linux hands out the tile registers' state only on request */
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

__attribute__((target("avx512f,avx512bf16"))) static void by_dot(void) {
  for (int i = 0; i < M; i++) {
    __m512 acc = _mm512_setzero_ps();
    for (int q = 0; q < K / 2; q++) {
      uint32_t pair;
      memcpy(&pair, &g_a[i][2 * q], sizeof pair);
      const __m512i a = _mm512_set1_epi32((int)pair);
      const __m512i b = _mm512_loadu_si512(&g_b[q][0][0]);
      acc = _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
    }
    _mm512_storeu_ps(g_dot[i], acc);
  }
}

__attribute__((target("amx-tile,amx-bf16"))) static void by_tiles(void) {
  tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 3; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64; /* C, A, B */
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  for (int k0 = 0; k0 < K; k0 += 32) {
    _tile_loadd(1, &g_a[0][k0], K * 2);
    _tile_loadd(2, &g_b[k0 / 2][0][0], N * 4);
    _tile_dpbf16ps(0, 1, 2);
  }
  _tile_stored(0, g_amx, N * 4);
  _tile_release();
}

static float frand(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return (float)((*s >> 8) & 0xffffff) / 16777216.0f - 0.5f;
}

int main(void) {
  if (!has_amx()) {
    printf("no AMX (CPU or kernel)\n");
    return 0;
  }
  unsigned seed = 1;
  long dot = 0, models[3] = {0, 0, 0}, total = 0;
  for (int draw = 0; draw < DRAWS; draw++) {
    for (int i = 0; i < M; i++)
      for (int k = 0; k < K; k++) {
        float v = frand(&seed) * (draw % 3 == 0 ? 1e3f : 2.0f);
        if (draw % 5 == 1 && k % 7 == 0) v *= 1e-30f;
        g_a[i][k] = rne(v);
      }
    for (int q = 0; q < K / 2; q++)
      for (int j = 0; j < N; j++)
        for (int e = 0; e < 2; e++) g_b[q][j][e] = rne(frand(&seed) * 3.0f);
    by_dot();
    by_tiles();
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        float pairsum = 0.0f, once = 0.0f, seq = 0.0f;
        for (int q = 0; q < K / 2; q++) {
          const float p0 = widen(g_a[i][2 * q]) * widen(g_b[q][j][0]); /* exact */
          const float p1 = widen(g_a[i][2 * q + 1]) * widen(g_b[q][j][1]);
          pairsum += (float)((double)p0 + (double)p1);
          once = (float)((double)once + (double)p0 + (double)p1);
          seq = (seq + p0) + p1;
        }
        const float m[3] = {pairsum, once, seq};
        total++;
        dot += memcmp(&g_amx[i][j], &g_dot[i][j], sizeof(float)) != 0;
        for (int k = 0; k < 3; k++) models[k] += memcmp(&g_amx[i][j], &m[k], sizeof(float)) != 0;
      }
  }
  printf("TDPBF16PS against the VDPBF16PS chain: %ld of %ld sums differ\n", dot, total);
  printf("against each pair summed then added: %ld; the three terms rounded once: %ld; the "
         "products added one at a time: %ld\n",
         models[0], models[1], models[2]);
  return 0;
}
#else
int main(void) {
  printf("no AMX (not x86-64 Linux with GCC or Clang)\n");
  return 0;
}
#endif
