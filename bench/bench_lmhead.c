/* SPDX-License-Identifier: MIT */
/* strop bench — the LM head and its cross-entropy, whole against a chunk of rows at a time (the
 * fused step of lib/graph/model.c), product by product, to find where the fused step's time goes:
 *
 *   bench_lmhead [rounds]                                   (default 5)
 *
 * GPT-2 small's head by default: ROWS=512 (4 x 128 tokens), D=768, VOCAB=50257, weight [vocab,
 * d]; CHUNK=n rows per chunk (default: the graph's own rule, strop__rows_chunk); FULL=0 leaves
 * out the weight gradient (a frozen head: the LoRA row); SUP=0|1|2 sets strop__gemm_sup (1: the
 * GEMM's packed path for every product), IMPL=0|1|2 strop__gemm_impl (2: strop's own GEMM for
 * every product, 1: OpenBLAS). Each round runs the whole step (the loss's gradient apart from
 * the logits, as the unfused step holds it), then the chunked one (the order swapped every
 * round), timing each phase by the thread's CPU time: fwd (logits = x W^T), loss
 * (strop__loss_eval / strop__ce_rows_eval, gradient over the logits), dgrad (dx = dlogits W) and
 * wgrad (dW = dlogits^T x, summed over the chunks). Prints one RESULT
 * line per phase with the best round of each and their ratio (chunked over whole: > 1 when the
 * chunks cost more), and checks that the loss and dx are the same bits both ways. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "core/core.h"
#include "graph/graph.h"
#include "ops/dense.h"
#include "ops/loss.h"
#include "ops/ops.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t env_int(const char *k, int64_t def) {
  const char *v = getenv(k);
  return v && atoll(v) > 0 ? atoll(v) : def;
}

enum { FWD, LOSS, DGRAD, WGRAD, PHASES };
static const char *const PHASE[PHASES] = {"fwd", "loss", "dgrad", "wgrad"};

typedef struct head {
  int64_t rows, d, vocab, chunk;
  int full;
  const float *x, *w, *y;
  float *logits;  /* rows x vocab (whole) or chunk x vocab */
  float *dlogits; /* whole: the loss's gradient, apart as the unfused step holds it */
  float *dx, *dw;
  double loss;
} head;

/* The whole step: every row's logits, the loss and its gradient over them, then dx and dW. */
static void run_whole(head *h, double *t) {
  double t0 = cpu_now();
  strop__linear_forward_ex(h->x, h->w, NULL, h->logits, h->rows, h->d, h->vocab, 0);
  double t1 = cpu_now();
  t[FWD] += t1 - t0;
  strop__loss_cfg c;
  strop__loss_cfg_init(&c, STROP__LOSS_CROSS_ENTROPY);
  if (strop__loss_eval(&c, h->logits, h->rows, h->vocab, h->y, 1, &h->loss, h->dlogits)) exit(1);
  t0 = cpu_now();
  t[LOSS] += t0 - t1;
  (void)strop__linear_backward(h->x, h->w, h->dlogits, h->dx, NULL, NULL, h->rows, h->d, h->vocab,
                               STROP__LB_ASSIGN_DX);
  t1 = cpu_now();
  t[DGRAD] += t1 - t0;
  if (h->full)
    (void)strop__linear_backward(h->x, h->w, h->dlogits, NULL, h->dw, NULL, h->rows, h->d,
                                 h->vocab, STROP__LB_ASSIGN_PARAMS);
  t[WGRAD] += cpu_now() - t1;
}

/* The fused step's order: per chunk, its logits, loss and gradient, its rows of dx and its
 * share of dW (the first chunk assigns it). */
static void run_chunked(head *h, double *t) {
  strop__loss_cfg c;
  strop__loss_cfg_init(&c, STROP__LOSS_CROSS_ENTROPY);
  strop__ce_rows ce;
  if (strop__ce_rows_begin(&ce, &c, h->rows, h->vocab, h->y, 1)) exit(1);
  for (int64_t r0 = 0; r0 < h->rows; r0 += h->chunk) {
    const int64_t nr = h->rows - r0 < h->chunk ? h->rows - r0 : h->chunk;
    const float *xc = h->x + r0 * h->d;
    double t0 = cpu_now();
    strop__linear_forward_ex(xc, h->w, NULL, h->logits, nr, h->d, h->vocab, 0);
    double t1 = cpu_now();
    t[FWD] += t1 - t0;
    strop__ce_rows_eval(&ce, r0, nr, h->logits, 1);
    t0 = cpu_now();
    t[LOSS] += t0 - t1;
    (void)strop__linear_backward(xc, h->w, h->logits, h->dx + r0 * h->d, NULL, NULL, nr, h->d,
                                 h->vocab, STROP__LB_ASSIGN_DX);
    t1 = cpu_now();
    t[DGRAD] += t1 - t0;
    if (h->full)
      (void)strop__linear_backward(xc, h->w, h->logits, NULL, h->dw, NULL, nr, h->d, h->vocab,
                                   r0 == 0 ? STROP__LB_ASSIGN_PARAMS : 0);
    t[WGRAD] += cpu_now() - t1;
  }
  h->loss = strop__ce_rows_loss(&ce);
}

int main(int argc, char **argv) {
  const int rounds = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 5;
  bench_must(strop_set_num_threads(1), "threads");
  if (getenv("SUP")) strop__gemm_sup = atoi(getenv("SUP"));
  if (getenv("IMPL")) strop__gemm_impl = atoi(getenv("IMPL"));
  head h = {
      .rows = env_int("ROWS", 512), .d = env_int("D", 768), .vocab = env_int("VOCAB", 50257)};
  h.full = !(getenv("FULL") && !strcmp(getenv("FULL"), "0"));
  h.chunk = env_int("CHUNK",
                    strop__rows_chunk(h.rows, h.vocab, h.full ? (size_t)(h.vocab * h.d) * 4 : 0));
  const size_t nx = (size_t)(h.rows * h.d), nw = (size_t)(h.vocab * h.d);
  float *x = strop__malloc_aligned(nx * 4), *w = strop__malloc_aligned(nw * 4);
  float *y = strop__malloc_aligned((size_t)h.rows * 4);
  float *whole = strop__malloc_aligned((size_t)(h.rows * h.vocab) * 4);
  float *dwhole = strop__malloc_aligned((size_t)(h.rows * h.vocab) * 4);
  float *part = strop__malloc_aligned((size_t)(h.chunk * h.vocab) * 4);
  float *dx[2] = {strop__malloc_aligned(nx * 4), strop__malloc_aligned(nx * 4)};
  float *dw[2] = {strop__malloc_aligned(nw * 4), strop__malloc_aligned(nw * 4)};
  if (!x || !w || !y || !whole || !dwhole || !part || !dx[0] || !dx[1] || !dw[0] || !dw[1]) {
    fprintf(stderr, "bench_lmhead: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < nx; i++) x[i] = sinf(0.37f * (float)(i % 10007));
  for (size_t i = 0; i < nw; i++) w[i] = 0.05f * cosf(0.23f * (float)(i % 9973));
  for (int64_t r = 0; r < h.rows; r++) y[r] = (float)((r * 7919) % h.vocab);
  h.x = x, h.w = w, h.y = y;
  double best[2][PHASES], loss[2];
  for (int v = 0; v < 2; v++)
    for (int p = 0; p < PHASES; p++) best[v][p] = 1e30;
  for (int r = 0; r <= rounds; r++) /* round 0 warms up */
    for (int o = 0; o < 2; o++) {
      const int v = (r + o) % 2; /* 0 whole, 1 chunked */
      double t[PHASES] = {0};
      h.logits = v ? part : whole, h.dlogits = dwhole, h.dx = dx[v], h.dw = dw[v];
      if (v) run_chunked(&h, t);
      else run_whole(&h, t);
      loss[v] = h.loss;
      for (int p = 0; p < PHASES && r > 0; p++)
        if (t[p] < best[v][p]) best[v][p] = t[p];
    }
  double e = 0, s = 1e-30;
  for (size_t i = 0; h.full && i < nw; i++) {
    e = fmax(e, fabs((double)dw[0][i] - dw[1][i]));
    s = fmax(s, fabs((double)dw[0][i]));
  }
  const int same = loss[0] == loss[1] && !memcmp(dx[0], dx[1], nx * 4);
  double tot[2] = {0, 0};
  for (int p = 0; p < PHASES; p++) {
    tot[0] += best[0][p], tot[1] += best[1][p];
    printf("RESULT bench=lmhead phase=%s rows=%lld chunk=%lld d=%lld vocab=%lld whole_ms=%.1f "
           "chunked_ms=%.1f ratio=%.3f\n",
           PHASE[p], (long long)h.rows, (long long)h.chunk, (long long)h.d, (long long)h.vocab,
           best[0][p] * 1e3, best[1][p] * 1e3, best[1][p] / best[0][p]);
  }
  printf("RESULT bench=lmhead phase=all rows=%lld chunk=%lld whole_ms=%.1f chunked_ms=%.1f "
         "ratio=%.3f loss_and_dx_identical=%d dw_max_rel_diff=%.1e\n",
         (long long)h.rows, (long long)h.chunk, tot[0] * 1e3, tot[1] * 1e3, tot[1] / tot[0], same,
         e / s);
  strop__free_aligned(x), strop__free_aligned(w), strop__free_aligned(y);
  strop__free_aligned(whole), strop__free_aligned(dwhole), strop__free_aligned(part);
  for (int v = 0; v < 2; v++) strop__free_aligned(dx[v]), strop__free_aligned(dw[v]);
  return same ? 0 : 1;
}
