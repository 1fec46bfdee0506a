/* SPDX-License-Identifier: MIT */
/* strop bench — issue 21's "GEMMs of 768–4096-wide layers at or above OpenBLAS's speed": strop's
 * own SGEMM (lib/ops/gemm.c) against OpenBLAS's cblas_sgemm on the three products of every
 * linear layer of GPT-2 small (m = 512 rows: 4 x 128 tokens), of TinyLlama (m = 256: 1 x 256) and
 * of BERT-base (m = 1024: 8 x 128, nn.Linear's [out, in] weights),
 * as a training step issues them:
 *   fwd    y = x W                 (GPT-2's Conv1D weight [in, out]: NN)
 *          y = x W^T               (nn.Linear's [out, in], Llama: NT)
 *   dgrad  dx = dy W^T / dy W      (NT / NN)
 *   wgrad  dW += x^T dy / dy^T x   (TN, beta = 1)
 *
 *   bench_gemm [threads] [rounds] [seconds-per-sample]      (defaults 1, 5, 0.05)
 *
 * Interleaved in one process: each round times every shape with strop, then with OpenBLAS, and
 * the best of the rounds is kept, in thread CPU time at 1 thread (CLOCK_THREAD_CPUTIME_ID: other
 * processes on a loaded machine mostly drop out; BENCH_CLOCK=wall in the environment times the
 * wall clock instead) and in wall time at 2. ONLY=text keeps the shapes whose model, layer or
 * pass contains it (ONLY=wgrad: the weight gradients; for a profile of one product). At 1 thread strop is
 * strop__sgemm_own (single-threaded) against cblas_sgemm with 1 OpenBLAS thread; at 2 threads
 * strop__sgemm with the own kernel forced (strop's pool splits C) against cblas_sgemm with 2
 * OpenBLAS threads. Prints one RESULT line per shape: GFLOP/s of each, their ratio (> 1: strop
 * faster), the largest difference between the two results over C's largest value, and the
 * kernel set OpenBLAS runs (OPENBLAS_CORETYPE: this machine pins Haswell; unset, 0.3.21 picks
 * its AVX-512 kernels).
 *
 * SUP=0|1|2 in the environment sets strop__gemm_sup (1: always the packed path, 2: in place
 * wherever it can; A/B of the own kernel's paths). BF16=1 times, instead, the BF16 product of a
 * frozen weight (strop__bf16_gemm_nt / _nn, vdpbf16ps: lib/ops/lowp.c) on the forward and input
 * gradient shapes against strop's own FP32 SGEMM on the same shape: ratio > 1 when BF16 is
 * faster; its max_diff is BF16's rounding. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "core/core.h"
#include "ops/lowp.h"
#include "ops/ops.h"

void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);

typedef struct shape {
  const char *model, *layer, *pass;
  int ta, tb;
  int64_t m, n, k;
  float beta;
} shape;

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the three products of a linear layer in -> out over m rows; in_out: the weight is [in, out] */
static int add_layer(shape *s, int n, const char *model, const char *layer, int64_t m, int64_t in,
                     int64_t out, int in_out) {
  s[n++] = (shape){model, layer, "fwd", 0, in_out ? 0 : 1, m, out, in, 0.0f};
  s[n++] = (shape){model, layer, "dgrad", 0, in_out ? 1 : 0, m, in, out, 0.0f};
  s[n++] = in_out ? (shape){model, layer, "wgrad", 1, 0, in, out, m, 1.0f}
                  : (shape){model, layer, "wgrad", 1, 0, out, in, m, 1.0f};
  return n;
}

typedef struct operands {
  const float *a, *b;
  float *c;
  int64_t lda, ldb, ldc;
  const strop__lowp *w; /* BF16 mode: op(B) as a BF16 weight [out, in] */
  void *work;           /* ... and its scratch */
} operands;

/* impl 0: strop's FP32 SGEMM, 1: OpenBLAS, 2: the BF16 product (fwd: NT, dgrad: NN) */
static void run(int impl, int threads, const shape *s, const operands *o) {
  if (impl == 2) {
    if (!strcmp(s->pass, "fwd"))
      strop__bf16_gemm_nt(s->m, s->n, s->k, o->a, o->lda, o->w, 0.0f, o->c, o->ldc, o->work);
    else strop__bf16_gemm_nn(s->m, s->n, s->k, o->a, o->lda, o->w, 0.0f, o->c, o->ldc, o->work);
  } else if (impl == 0 && threads == 1) {
    if (strop__sgemm_own(s->ta, s->tb, s->m, s->n, s->k, 1.0f, o->a, o->lda, o->b, o->ldb,
                         s->beta, o->c, o->ldc, NULL) != 0) {
      fprintf(stderr, "bench_gemm: strop's own SGEMM cannot run here (no AVX-512)\n");
      exit(1);
    }
  } else if (impl == 0) {
    strop__sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, o->a, o->lda, o->b, o->ldb, s->beta, o->c,
                 o->ldc);
  } else {
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, (int)s->m, (int)s->n, (int)s->k, 1.0f, o->a,
                (int)o->lda, o->b, (int)o->ldb, s->beta, o->c, (int)o->ldc);
  }
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1, rounds = argc > 2 ? atoi(argv[2]) : 5;
  const double sample_s = argc > 3 ? atof(argv[3]) : 0.05;
  if (threads < 1 || threads > 2 || rounds < 1) {
    fprintf(stderr, "usage: bench_gemm [threads 1|2] [rounds] [seconds-per-sample]\n");
    return 2;
  }
  if (!strop__gemm_own_available()) {
    fprintf(stderr, "bench_gemm: this CPU has no AVX-512: strop's own SGEMM does not run\n");
    return 77;
  }
  const int cpu = threads == 1 &&
                  !(getenv("BENCH_CLOCK") && !strcmp(getenv("BENCH_CLOCK"), "wall"));
  bench_must(strop_set_num_threads(threads), "threads");
  strop__gemm_impl = 2; /* strop__sgemm: always the own kernel (2 threads) */
  if (getenv("SUP")) strop__gemm_sup = atoi(getenv("SUP"));
  const int bf16 = getenv("BF16") && strcmp(getenv("BF16"), "0") != 0;
  if (bf16 && !strop__bf16_dot_enabled()) {
    fprintf(stderr, "bench_gemm: no vdpbf16ps here (AVX512_BF16): BF16=1 does not run\n");
    return 77;
  }
  shape s[64];
  int ns = 0;
  ns = add_layer(s, ns, "gpt2", "c_attn 768>2304", 512, 768, 2304, 1);
  ns = add_layer(s, ns, "gpt2", "attn.c_proj 768>768", 512, 768, 768, 1);
  ns = add_layer(s, ns, "gpt2", "c_fc 768>3072", 512, 768, 3072, 1);
  ns = add_layer(s, ns, "gpt2", "mlp.c_proj 3072>768", 512, 3072, 768, 1);
  ns = add_layer(s, ns, "tinyllama", "q/o_proj 2048>2048", 256, 2048, 2048, 0);
  ns = add_layer(s, ns, "tinyllama", "k/v_proj 2048>256", 256, 2048, 256, 0);
  ns = add_layer(s, ns, "tinyllama", "gate/up 2048>5632", 256, 2048, 5632, 0);
  ns = add_layer(s, ns, "tinyllama", "down 5632>2048", 256, 5632, 2048, 0);
  ns = add_layer(s, ns, "bert", "q/k/v/o 768>768", 1024, 768, 768, 0);
  ns = add_layer(s, ns, "bert", "intermediate 768>3072", 1024, 768, 3072, 0);
  ns = add_layer(s, ns, "bert", "output 3072>768", 1024, 3072, 768, 0);
  const char *only = getenv("ONLY");
  if (only) { /* keep the shapes that name it */
    int kept = 0;
    for (int i = 0; i < ns; i++)
      if (strstr(s[i].model, only) || strstr(s[i].layer, only) || strstr(s[i].pass, only))
        s[kept++] = s[i];
    ns = kept;
  }
  if (bf16) { /* the products a frozen weight takes part in */
    int kept = 0;
    for (int i = 0; i < ns; i++)
      if (strcmp(s[i].pass, "wgrad") != 0) s[kept++] = s[i];
    ns = kept;
  }
  /* one set of buffers as large as the largest operands */
  size_t big = 0;
  for (int i = 0; i < ns; i++) {
    const size_t e[3] = {(size_t)(s[i].m * s[i].k), (size_t)(s[i].k * s[i].n),
                         (size_t)(s[i].m * s[i].n)};
    for (int j = 0; j < 3; j++) big = e[j] > big ? e[j] : big;
  }
  float *a = strop__malloc_aligned(big * 4), *b = strop__malloc_aligned(big * 4);
  float *c0 = strop__malloc_aligned(big * 4), *c1 = strop__malloc_aligned(big * 4);
  if (!a || !b || !c0 || !c1) {
    fprintf(stderr, "bench_gemm: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < big; i++) {
    a[i] = 0.1f * sinf(0.37f * (float)(i % 10007));
    b[i] = 0.1f * cosf(0.23f * (float)(i % 9973));
  }
  /* BF16 mode: each shape's weight, [out, in] (fwd: n x k, dgrad: k x n), and the scratch */
  strop__lowp w[64];
  void *work = NULL;
  memset(w, 0, sizeof w);
  if (bf16) {
    size_t scratch = 0;
    for (int i = 0; i < ns; i++) {
      const int fwd = !strcmp(s[i].pass, "fwd");
      if (strop__lowp_make(&w[i], STROP__LOWP_BF16, b, fwd ? s[i].n : s[i].k,
                           fwd ? s[i].k : s[i].n, 0, 0) != 0) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
      }
      const size_t sb = strop__bf16_gemm_scratch_max(s[i].m, s[i].n, s[i].k);
      scratch = sb > scratch ? sb : scratch;
    }
    work = strop__malloc_aligned(scratch);
    if (!work) {
      fprintf(stderr, "bench_gemm: out of memory\n");
      return 1;
    }
  }
  /* the FP32 side of BF16 mode: the same weight, B = W^T (fwd, NT) or W (dgrad, NN) */
  const int other = bf16 ? 2 : 1;
  openblas_set_num_threads(threads);
  const char *core = openblas_get_corename();
  /* calls per sample: about sample_s seconds at 80 GFLOP/s per thread */
  double best[64][2], err[64];
  int calls[64];
  for (int i = 0; i < ns; i++) {
    const double fl = 2.0 * (double)s[i].m * (double)s[i].n * (double)s[i].k;
    calls[i] = (int)(sample_s * 80e9 * threads / fl) + 1;
    best[i][0] = best[i][1] = 1e30;
    /* the two results, from the same C (beta = 1 adds to it) */
    if (bf16) { /* the FP32 product of the same weight: fwd x W^T (NT), dgrad dy W (NN) */
      s[i].ta = 0;
      s[i].tb = !strcmp(s[i].pass, "fwd");
      s[i].beta = 0.0f;
    }
    const operands o[2] = {
        {a, b, c0, s[i].ta ? s[i].m : s[i].k, s[i].tb ? s[i].k : s[i].n, s[i].n, &w[i], work},
        {a, b, c1, s[i].ta ? s[i].m : s[i].k, s[i].tb ? s[i].k : s[i].n, s[i].n, &w[i], work}};
    memset(c0, 0, (size_t)(s[i].m * s[i].n) * 4);
    memset(c1, 0, (size_t)(s[i].m * s[i].n) * 4);
    run(0, threads, &s[i], &o[0]);
    run(other, threads, &s[i], &o[1]);
    double e = 0, scale = 1e-30;
    for (int64_t x = 0; x < s[i].m * s[i].n; x++) {
      e = fmax(e, fabs((double)c0[x] - c1[x]));
      scale = fmax(scale, fabs((double)c1[x]));
    }
    err[i] = e / scale;
  }
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < ns; i++)
      for (int impl = 0; impl < 2; impl++) {
        const operands o = {
            a, b, c0, s[i].ta ? s[i].m : s[i].k, s[i].tb ? s[i].k : s[i].n, s[i].n, &w[i], work};
        const int which = impl ? other : 0;
        run(which, threads, &s[i], &o); /* warm: packing buffers, OpenBLAS's threads */
        const double t0 = cpu ? cpu_now() : bench_now();
        for (int c = 0; c < calls[i]; c++) run(which, threads, &s[i], &o);
        const double dt = ((cpu ? cpu_now() : bench_now()) - t0) / calls[i];
        if (dt < best[i][impl]) best[i][impl] = dt;
      }
  for (int i = 0; i < ns; i++) {
    const double fl = 2.0 * (double)s[i].m * (double)s[i].n * (double)s[i].k;
    printf("RESULT bench=gemm model=%s layer=\"%s\" pass=%s op=%c%c m=%lld n=%lld k=%lld "
           "threads=%d clock=%s strop_gflops=%.1f %s_gflops=%.1f ratio=%.3f max_diff=%.1e "
           "openblas_core=%s\n",
           s[i].model, s[i].layer, s[i].pass, s[i].ta ? 'T' : 'N', s[i].tb ? 'T' : 'N',
           (long long)s[i].m, (long long)s[i].n, (long long)s[i].k, threads, cpu ? "cpu" : "wall",
           fl / best[i][0] / 1e9, bf16 ? "bf16" : "openblas", fl / best[i][1] / 1e9,
           bf16 ? best[i][0] / best[i][1] : best[i][1] / best[i][0], err[i], core ? core : "?");
  }
  strop__free_aligned(a), strop__free_aligned(b), strop__free_aligned(c0);
  strop__free_aligned(c1), strop__free_aligned(work);
  for (int i = 0; i < ns; i++) strop__lowp_free(&w[i]);
  return 0;
}
