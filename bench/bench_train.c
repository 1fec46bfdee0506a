/* SPDX-License-Identifier: MIT */
/* strop bench — training throughput of the issue-5 models through the public API only, for the
 * side-by-side run against PyTorch (bench/run_vs_torch.sh, bench/torch_train.py).
 *
 *   bench_train MODEL [threads] [steps] [repeats]
 *   MODEL: mlp_sgd | mlp_adam | cnn | cnn_frozen | transformer
 *
 * Prints one line "RESULT impl=strop model=... threads=... batch=... samples_per_s=...
 * step_ms=... maxrss_kb=... gemm_floor_ms=... floor_mult=..." (the best of `repeats` timed
 * windows of `steps` steps, after a warm-up). maxrss_kb is the process's peak RSS
 * (getrusage); train_rss_kb the peak from the end of data loading to the end of training
 * (VmHWM after a clear_refs reset). Images: the first 64 batches of the
 * Fashion-MNIST training set (STROP_FMNIST_DIR, default /usr/share/datasets/fashion-mnist),
 * uniform noise when absent; tokens: uniform ids and labels. torch_train.py uses the same.
 *
 * The GEMM floor: the step's GEMMs (forward and backward, on the shapes the step issues: one
 * GEMM per image for convolutions, per (sample, head) for attention) timed through
 * cblas_sgemm alone; at t > 1 threads the lower of that with t OpenBLAS threads and the
 * one-thread time over t. strop's step time over it says how much of the step is not GEMM. The
 * peak RSS is read before the floor is measured, so the floor's buffers do not count. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "strop/strop.h"
#include "benchutil.h"

/* xorshift, so the data do not depend on the library under test */
static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static double urand(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- the models ---- */

enum { VOCAB = 1000, SEQ = 64, DMODEL = 128, HEADS = 4, FFN = 512, CLASSES = 10 };

static strop_model *build_mlp(void) {
  const int64_t in[1] = {784};
  strop_model *m = NULL;
  bench_must(strop_model_create(1, in, &m), "create");
  bench_must(strop_model_add(m, "fc1", "linear", "out_features=512", NULL), "fc1");
  bench_must(strop_model_add(m, "relu1", "relu", NULL, NULL), "relu1");
  bench_must(strop_model_add(m, "fc2", "linear", "out_features=256", NULL), "fc2");
  bench_must(strop_model_add(m, "relu2", "relu", NULL, NULL), "relu2");
  bench_must(strop_model_add(m, "fc3", "linear", "out_features=10", NULL), "fc3");
  bench_must(strop_model_finalize(m, 1), "finalize");
  return m;
}

/* pre-norm: x + attn(ln1(x)), then x + fc2(gelu(fc1(ln2(x)))); ln_f, mean pool, head */
static strop_model *build_transformer(void) {
  const int64_t in[1] = {SEQ};
  strop_model *m = NULL;
  char opt[96], ins[96], names[10][32];
  bench_must(strop_model_create(1, in, &m), "create");
  snprintf(opt, sizeof opt, "num_embeddings=%d embedding_dim=%d", VOCAB, DMODEL);
  bench_must(strop_model_add(m, "tok", "embedding", opt, NULL), "tok");
  snprintf(opt, sizeof opt, "num_embeddings=%d", SEQ);
  bench_must(strop_model_add(m, "pos", "positional_embedding", opt, NULL), "pos");
  const char *parts[8] = {"ln1", "attn", "add1", "ln2", "fc1", "gelu", "fc2", "add2"};
  char resid[32] = "pos";
  for (int b = 0; b < 2; b++) {
    for (int i = 0; i < 8; i++) snprintf(names[i], 32, "blocks.%d.%s", b, parts[i]);
    bench_must(strop_model_add(m, names[0], "layernorm", NULL, NULL), "ln1");
    snprintf(opt, sizeof opt, "num_heads=%d", HEADS);
    bench_must(strop_model_add(m, names[1], "multihead_attention", opt, NULL), "attn");
    snprintf(ins, sizeof ins, "%s,%s", resid, names[1]);
    bench_must(strop_model_add(m, names[2], "add", NULL, ins), "add1");
    bench_must(strop_model_add(m, names[3], "layernorm", NULL, NULL), "ln2");
    snprintf(opt, sizeof opt, "out_features=%d", FFN);
    bench_must(strop_model_add(m, names[4], "linear", opt, NULL), "fc1");
    bench_must(strop_model_add(m, names[5], "gelu", NULL, NULL), "gelu");
    snprintf(opt, sizeof opt, "out_features=%d", DMODEL);
    bench_must(strop_model_add(m, names[6], "linear", opt, NULL), "fc2");
    snprintf(ins, sizeof ins, "%s,%s", names[2], names[6]);
    bench_must(strop_model_add(m, names[7], "add", NULL, ins), "add2");
    snprintf(resid, sizeof resid, "%s", names[7]);
  }
  bench_must(strop_model_add(m, "ln_f", "layernorm", NULL, NULL), "ln_f");
  bench_must(strop_model_add(m, "pool", "mean_pool", NULL, NULL), "pool");
  snprintf(opt, sizeof opt, "out_features=%d", CLASSES);
  bench_must(strop_model_add(m, "head", "linear", opt, NULL), "head");
  bench_must(strop_model_finalize(m, 1), "finalize");
  return m;
}

void openblas_set_num_threads(int num_threads); /* OpenBLAS's own */
char *openblas_get_corename(void);

/* ---- the GEMM floor: the step's GEMMs as (count, trans_a, trans_b, m, n, k) ---- */

typedef struct gemm {
  int count, ta, tb;
  int64_t m, n, k;
} gemm;

/* a linear layer of rows x in -> out: forward, dW, and dX when the input needs a gradient */
static int add_linear(gemm *g, int k, int64_t rows, int64_t in, int64_t out, int fwd_only,
                      int need_dx) {
  g[k++] = (gemm){1, 0, 1, rows, out, in};
  if (fwd_only) return k;
  g[k++] = (gemm){1, 1, 0, out, in, rows};
  if (need_dx) g[k++] = (gemm){1, 0, 0, rows, in, out};
  return k;
}

/* a 3x3 pad-1 conv per image: W [cout, K] x cols [K, P]; dW = dY cols^T; dcols = W^T dY */
static int add_conv(gemm *g, int k, int64_t batch, int64_t cin, int64_t cout, int64_t hw,
                    int fwd_only, int need_dx) {
  const int64_t K = cin * 9, P = hw * hw;
  g[k++] = (gemm){(int)batch, 0, 0, cout, P, K};
  if (fwd_only) return k;
  g[k++] = (gemm){(int)batch, 0, 1, cout, K, P};
  if (need_dx) g[k++] = (gemm){(int)batch, 1, 0, K, P, cout};
  return k;
}

static int model_gemms(const char *model, int64_t batch, gemm *g) {
  int k = 0;
  if (strncmp(model, "mlp", 3) == 0) {
    k = add_linear(g, k, batch, 784, 512, 0, 0);
    k = add_linear(g, k, batch, 512, 256, 0, 1);
    k = add_linear(g, k, batch, 256, 10, 0, 1);
  } else if (strncmp(model, "cnn", 3) == 0) {
    const int frozen = strcmp(model, "cnn_frozen") == 0;
    k = add_conv(g, k, batch, 1, 32, 28, frozen, 0);
    k = add_conv(g, k, batch, 32, 64, 14, frozen, 1);
    k = add_linear(g, k, batch, 3136, 128, 0, !frozen);
    k = add_linear(g, k, batch, 128, 10, 0, 1);
  } else {
    const int64_t rows = batch * SEQ, hd = DMODEL / HEADS, bh = batch * HEADS;
    for (int b = 0; b < 2; b++) {
      for (int p = 0; p < 4; p++) k = add_linear(g, k, rows, DMODEL, DMODEL, 0, 1);
      g[k++] = (gemm){(int)bh, 0, 1, SEQ, SEQ, hd}; /* S = Q K^T */
      g[k++] = (gemm){(int)bh, 0, 0, SEQ, hd, SEQ}; /* ctx = P V */
      g[k++] = (gemm){(int)bh, 1, 0, SEQ, hd, SEQ}; /* dV = P^T dctx */
      g[k++] = (gemm){(int)bh, 0, 1, SEQ, SEQ, hd}; /* dP = dctx V^T */
      g[k++] = (gemm){(int)bh, 0, 0, SEQ, hd, SEQ}; /* dQ = dS K */
      g[k++] = (gemm){(int)bh, 1, 0, SEQ, hd, SEQ}; /* dK = dS^T Q */
      k = add_linear(g, k, rows, DMODEL, FFN, 0, 1);
      k = add_linear(g, k, rows, FFN, DMODEL, 0, 1);
    }
    k = add_linear(g, k, batch, DMODEL, CLASSES, 0, 1);
  }
  return k;
}

static double gemm_floor(const char *model, int64_t batch, double *gflop_out, int repeats) {
  gemm g[64];
  int ng = model_gemms(model, batch, g);
  size_t big = 0;
  double flops = 0;
  for (int i = 0; i < ng; i++) {
    size_t a = (size_t)(g[i].m * g[i].k), b = (size_t)(g[i].k * g[i].n),
           c = (size_t)(g[i].m * g[i].n);
    if (a > big) big = a;
    if (b > big) big = b;
    if (c > big) big = c;
    flops += 2.0 * (double)g[i].count * (double)g[i].m * (double)g[i].n * (double)g[i].k;
  }
  float *A = malloc(big * sizeof *A), *B = malloc(big * sizeof *B), *C = malloc(big * sizeof *C);
  if (!A || !B || !C) exit(1);
  for (size_t i = 0; i < big; i++) {
    A[i] = (float)urand();
    B[i] = (float)urand();
    C[i] = 0.0f;
  }
  double best = 1e30;
  for (int r = 0; r < repeats + 2; r++) {
    double t0 = bench_now();
    for (int i = 0; i < ng; i++)
      for (int c = 0; c < g[i].count; c++)
        cblas_sgemm(CblasRowMajor, g[i].ta ? CblasTrans : CblasNoTrans,
                    g[i].tb ? CblasTrans : CblasNoTrans, (blasint)g[i].m, (blasint)g[i].n,
                    (blasint)g[i].k, 1.0f, A, (blasint)(g[i].ta ? g[i].m : g[i].k), B,
                    (blasint)(g[i].tb ? g[i].k : g[i].n), 0.0f, C, (blasint)g[i].n);
    double dt = bench_now() - t0;
    if (r >= 2 && dt < best) best = dt; /* the first two warm the caches and the pool */
  }
  free(A);
  free(B);
  free(C);
  *gflop_out = flops * 1e-9;
  return best;
}

/* ---- the run ---- */

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_train mlp_sgd|mlp_adam|cnn|cnn_frozen|transformer "
                    "[threads] [steps] [repeats]\n");
    return 2;
  }
  const char *model = argv[1];
  int threads, steps, repeats;
  bench_args(argc, argv, 2, 50, &threads, &steps, &repeats);

  strop_model *m = NULL;
  int kind = STROP_OPTIM_ADAM;
  int64_t batch = 64;
  if (strcmp(model, "mlp_sgd") == 0 || strcmp(model, "mlp_adam") == 0) {
    m = build_mlp();
    if (strcmp(model, "mlp_sgd") == 0) kind = STROP_OPTIM_SGD;
  } else if (strcmp(model, "cnn") == 0 || strcmp(model, "cnn_frozen") == 0) {
    m = bench_build_cnn();
    if (strcmp(model, "cnn_frozen") == 0)
      bench_must(strop_model_freeze(m, "features.*"), "freeze");
  } else if (strcmp(model, "transformer") == 0) {
    m = build_transformer();
    kind = STROP_OPTIM_ADAMW;
    batch = 32;
  } else {
    fprintf(stderr, "bench_train: unknown model '%s'\n", model);
    return 2;
  }
  strop_optimizer *opt = NULL;
  bench_must(strop_optimizer_create(m, kind, &opt), "optimizer");
  if (kind == STROP_OPTIM_SGD) {
    bench_must(strop_optimizer_set_float(opt, STROP_OPT_LR, 0.01f), "lr");
    bench_must(strop_optimizer_set_float(opt, STROP_OPT_MOMENTUM, 0.9f), "momentum");
  } else {
    bench_must(strop_optimizer_set_float(opt, STROP_OPT_LR, 1e-3f), "lr");
  }
  strop_trainer *tr = NULL;
  bench_must(strop_trainer_create(m, opt, &tr), "trainer");

  /* a pool of batches, cycled: the first POOL * batch Fashion-MNIST training images (scaled
   * to [0, 1]) when the files are there, else uniform noise with uniform labels; tokens are
   * uniform ids with uniform labels */
  enum { POOL = 64 };
  int64_t in_dims[4];
  int rank = strop_model_input_shape(m, in_dims + 1, 3) + 1;
  in_dims[0] = batch;
  size_t per = 1;
  for (int i = 1; i < rank; i++) per *= (size_t)in_dims[i];
  strop_dataset *fm = NULL;
  if (batch == 64) {
    const char *dir = getenv("STROP_FMNIST_DIR");
    char ip[512], lp[512];
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", dir);
    if (strop_dataset_load_idx(ip, lp, 10, &fm) != STROP_OK) fm = NULL;
  }
  strop_tensor *xs[POOL], *ys[POOL];
  for (int b = 0; b < POOL; b++) {
    bench_must(strop_tensor_create(rank, in_dims, &xs[b]), "x");
    bench_must(strop_tensor_create(1, &batch, &ys[b]), "y");
    float *x = strop_tensor_data(xs[b]), *y = strop_tensor_data(ys[b]);
    for (int64_t i = 0; i < batch; i++) {
      float *xi = x + (size_t)i * per;
      if (fm) {
        bench_must(strop_dataset_get(fm, b * batch + i, xi, per, &y[i], 1), "dataset");
        for (size_t j = 0; j < per; j++) xi[j] *= 1.0f / 255.0f;
        continue;
      }
      for (size_t j = 0; j < per; j++)
        xi[j] = batch == 32 ? (float)(int)(urand() * VOCAB) : (float)urand();
      y[i] = (float)(int)(urand() * CLASSES);
    }
  }
  const char *data = fm ? "fashion-mnist" : batch == 32 ? "synthetic-tokens" : "synthetic";
  strop_dataset_free(fm);
  bench_reset_peak_rss();

  float loss = 0.0f;
  const int warmup = 5;
  for (int s = 0; s < warmup; s++)
    bench_must(strop_trainer_step(tr, xs[s % POOL], ys[s % POOL], &loss), "step");
  double best = 1e30;
  int k = 0;
  for (int r = 0; r < repeats; r++) {
    double t0 = bench_now();
    for (int s = 0; s < steps; s++, k++)
      bench_must(strop_trainer_step(tr, xs[k % POOL], ys[k % POOL], &loss), "step");
    double dt = (bench_now() - t0) / steps;
    if (dt < best) best = dt;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long rss_kb = ru.ru_maxrss, train_rss_kb = bench_peak_rss_kb();

  double gflop = 0;
  /* STROP_BENCH_NO_FLOOR=1: skip the floor (for profiling the step alone) */
  const char *nf = getenv("STROP_BENCH_NO_FLOOR");
  /* At t threads the floor is the lower of cblas_sgemm with t OpenBLAS threads and the
   * one-thread floor divided by t (perfect scaling): whichever is harder to approach. strop
   * set OpenBLAS to one thread at its first BLAS call; set it as wanted for each measurement. */
  double floor_s = best, floor_blas_t = best, floor_one = best;
  if (!(nf && *nf == '1')) {
    openblas_set_num_threads(1);
    floor_one = gemm_floor(model, batch, &gflop, repeats * 4);
    floor_s = floor_one / threads;
    if (threads > 1) {
      openblas_set_num_threads(threads);
      floor_blas_t = gemm_floor(model, batch, &gflop, repeats * 4);
      if (floor_blas_t < floor_s) floor_s = floor_blas_t;
    }
  }
  printf("RESULT impl=strop model=%s threads=%d batch=%lld samples_per_s=%.1f step_ms=%.3f "
         "maxrss_kb=%ld train_rss_kb=%ld gemm_floor_ms=%.3f gemm_gflop=%.4f floor_mult=%.2f "
         "floor_1thread_ms=%.3f floor_blas_threads_ms=%.3f blas_core=%s loss=%.4f data=%s\n",
         model, threads, (long long)batch, (double)batch / best, best * 1e3, rss_kb, train_rss_kb,
         floor_s * 1e3, gflop, best / floor_s, floor_one * 1e3,
         threads > 1 ? floor_blas_t * 1e3 : floor_one * 1e3, openblas_get_corename(),
         (double)loss, data);

  for (int b = 0; b < POOL; b++) {
    strop_tensor_free(xs[b]);
    strop_tensor_free(ys[b]);
  }
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  return 0;
}
