/* SPDX-License-Identifier: MIT */
/* strop bench — issue 9's frozen-trunk speed, side by side in one process: the small CNN
 * (conv 32, conv 64, each with ReLU and 2x2 max-pool, linear 3136->128->10, batch 64, Adam)
 * trained fully, trained with the convolutions frozen (strop_model_freeze), and the model's
 * plain forward (strop_model_forward, what the frozen trunk should cost). Public API only.
 *
 *   bench_frozen [threads] [steps] [repeats]
 *
 * Prints each time (best of `repeats` windows of `steps` after a warm-up), the speed-up of the
 * frozen step over the full one (target >= 2x), and the frozen step over a forward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strop/strop.h"
#include "benchutil.h"

enum { BATCH = 64, POOL = 16 };

typedef struct run {
  strop_model *m;
  strop_optimizer *opt;
  strop_trainer *tr;
} run;

static void run_init(run *r, int frozen) {
  r->m = bench_build_cnn();
  if (frozen) bench_must(strop_model_freeze(r->m, "features.*"), "freeze");
  bench_must(strop_optimizer_create(r->m, STROP_OPTIM_ADAM, &r->opt), "optimizer");
  bench_must(strop_trainer_create(r->m, r->opt, &r->tr), "trainer");
}

static void run_free(run *r) {
  strop_trainer_free(r->tr);
  strop_optimizer_free(r->opt);
  strop_model_free(r->m);
}

/* seconds per call: best of repeats windows; what = 0 train step, 1 forward */
static double time_it(run *r, int what, strop_tensor **xs, strop_tensor **ys, int steps,
                      int repeats) {
  double best = 1e30;
  float loss;
  for (int k = 0, w = 0; w < repeats + 1; w++) {
    double t0 = bench_now();
    for (int s = 0; s < steps; s++, k++) {
      if (what == 0) {
        bench_must(strop_trainer_step(r->tr, xs[k % POOL], ys[k % POOL], &loss), "step");
      } else {
        strop_tensor *out = NULL;
        bench_must(strop_model_forward(r->m, xs[k % POOL], &out), "forward");
        strop_tensor_free(out);
      }
    }
    double dt = (bench_now() - t0) / steps;
    if (w > 0 && dt < best) best = dt; /* window 0 warms up */
  }
  return best;
}

int main(int argc, char **argv) {
  int threads, steps, repeats;
  bench_args(argc, argv, 1, 30, &threads, &steps, &repeats);

  /* uniform [0, 1) images and uniform labels; xorshift so the data do not depend on strop */
  uint64_t g = 0x9e3779b97f4a7c15ULL;
  int64_t xd[4] = {BATCH, 1, 28, 28}, yd[1] = {BATCH};
  strop_tensor *xs[POOL], *ys[POOL];
  for (int b = 0; b < POOL; b++) {
    bench_must(strop_tensor_create(4, xd, &xs[b]), "x");
    bench_must(strop_tensor_create(1, yd, &ys[b]), "y");
    float *x = strop_tensor_data(xs[b]), *y = strop_tensor_data(ys[b]);
    for (int64_t i = 0; i < BATCH * 784; i++) {
      g ^= g << 13, g ^= g >> 7, g ^= g << 17;
      x[i] = (float)((double)(g >> 11) * (1.0 / 9007199254740992.0));
    }
    for (int64_t i = 0; i < BATCH; i++) y[i] = (float)((i * 7 + b) % 10);
  }

  run full, frozen;
  run_init(&full, 0);
  run_init(&frozen, 1);
  /* interleaved, so a change of machine load hits both */
  double t_full = 1e30, t_frozen = 1e30, t_fwd = 1e30;
  for (int round = 0; round < 2; round++) {
    double a = time_it(&full, 0, xs, ys, steps, repeats);
    double b = time_it(&frozen, 0, xs, ys, steps, repeats);
    double c = time_it(&frozen, 1, xs, ys, steps, repeats);
    if (a < t_full) t_full = a;
    if (b < t_frozen) t_frozen = b;
    if (c < t_fwd) t_fwd = c;
  }
  printf(
      "small CNN, batch %d, Adam, %d thread(s); best of %d x %d steps, two interleaved rounds\n",
      BATCH, threads, repeats, steps);
  printf("  trainable params: full %lld, frozen trunk %lld\n",
         (long long)strop_model_param_count(full.m, 1),
         (long long)strop_model_param_count(frozen.m, 1));
  printf("  %-34s %9.3f ms  %8.0f samples/s\n", "full fine-tuning step", t_full * 1e3,
         BATCH / t_full);
  printf("  %-34s %9.3f ms  %8.0f samples/s\n", "frozen-trunk step (head trains)", t_frozen * 1e3,
         BATCH / t_frozen);
  printf("  %-34s %9.3f ms\n", "forward only (strop_model_forward)", t_fwd * 1e3);
  printf("RESULT bench=frozen threads=%d full_ms=%.3f frozen_ms=%.3f forward_ms=%.3f "
         "speedup=%.2f frozen_over_forward=%.2f\n",
         threads, t_full * 1e3, t_frozen * 1e3, t_fwd * 1e3, t_full / t_frozen, t_frozen / t_fwd);
  run_free(&full);
  run_free(&frozen);
  for (int b = 0; b < POOL; b++) {
    strop_tensor_free(xs[b]);
    strop_tensor_free(ys[b]);
  }
  return 0;
}
