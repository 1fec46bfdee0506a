/* SPDX-License-Identifier: MIT */
/* strop bench — issue 19's speed targets, the strop side of bench/run_pretrained.sh
 * (bench/torch_pretrained.py is PyTorch's): a torchvision ResNet-18 loaded through
 * strop_model_load_pretrained, fine-tuned at 224x224, batch 16, with AdamW (lr 1e-3), either
 * fully or with everything but fc frozen (strop_model_freeze: the trunk's BatchNorms then use
 * their running statistics, as torch's trunk in eval mode does); and the load time of a large
 * checkpoint.
 *
 *   bench_pretrained train CHECKPOINT full|frozen [threads] [steps] [repeats]
 *   bench_pretrained load CHECKPOINT ARCH [repeats]
 *
 * train prints "RESULT impl=strop model=resnet18[_frozen] threads= batch=16 samples_per_s=
 * step_ms= fwd_ms= bwd_ms= opt_ms= conv_ms= maxrss_kb= train_rss_kb= ..." — the best of
 * `repeats` windows of `steps` strop_trainer_step calls after a warm-up; then one window of
 * the same steps split into strop_trainer_forward / _backward / _apply (the host computing
 * the cross-entropy's gradient) for the phases; conv_ms is ResNet-18's 20 convolutions alone
 * (forward, and in full mode the backward) through the conv kernels on the same shapes and
 * thread count: what the step would cost if nothing but the convolutions ran. The peak RSS is
 * read before those extra measurements. load prints the best of `repeats` strop_model_load_
 * pretrained calls (strict) and the file's size. Images are uniform noise in [-1, 1], labels
 * uniform in [0, 1000): the same draw on both sides is not needed for speed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "benchutil.h"
#include "core/core.h"
#include "ops/conv.h"
#include "strop/strop.h"

enum { BATCH = 16, SIZE = 224, CLASSES = 1000, POOL = 2 };

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static double urand(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

/* ResNet-18's convolutions at 224x224: c_in, c_out, k, stride, input size, how many */
static const int RESNET18_CONVS[][6] = {
    {3, 64, 7, 2, 224, 1},   {64, 64, 3, 1, 56, 4},                            /* conv1, layer1 */
    {64, 128, 3, 2, 56, 1},  {128, 128, 3, 1, 28, 3}, {64, 128, 1, 2, 56, 1},  /* layer2 */
    {128, 256, 3, 2, 28, 1}, {256, 256, 3, 1, 14, 3}, {128, 256, 1, 2, 28, 1}, /* layer3 */
    {256, 512, 3, 2, 14, 1}, {512, 512, 3, 1, 7, 3},  {256, 512, 1, 2, 14, 1}, /* layer4 */
};

/* The convolutions alone at `threads` threads, best of `repeats` each: the forward, and with
 * `backward` the weight gradients (ResNet's convs have no bias; dx not asked for) and the input gradients but for
 * conv1's (dW not asked for), each timed apart into part[0..2]; returns their sum. */
static double conv_floor(int threads, int backward, int repeats, double part[3]) {
  part[0] = part[1] = part[2] = 0;
  for (size_t k = 0; k < sizeof RESNET18_CONVS / sizeof RESNET18_CONVS[0]; k++) {
    const int *c = RESNET18_CONVS[k];
    strop__conv2d_dims d = {BATCH,    c[0],     c[4], c[4], c[1], c[2], c[2], c[3], c[3],
                            c[2] / 2, c[2] / 2, 1,    1,    1,    0,    0,    0};
    strop__conv2d_out_size(&d);
    const int chunks = strop__par_chunks(threads, d.n, 1);
    const size_t nx = (size_t)(d.n * d.c_in * d.h * d.w),
                 ny = (size_t)(d.n * d.c_out * d.oh * d.ow);
    const size_t nw = (size_t)(d.c_out * d.c_in * d.kh * d.kw);
    size_t sf = strop__conv2d_scratch_floats(&d, 0, chunks, NULL);
    size_t sb = strop__conv2d_scratch_floats(&d, 1, chunks, NULL);
    float *x = strop__malloc_aligned(nx * 4), *y = strop__malloc_aligned(ny * 4);
    float *dx = strop__malloc_aligned(nx * 4), *w = strop__malloc_aligned(nw * 4);
    float *dw = strop__malloc_aligned(nw * 4);
    float *scratch = strop__malloc_aligned((sf > sb ? sf : sb) * 4);
    for (size_t i = 0; i < nx; i++) x[i] = (float)urand() - 0.5f, dx[i] = 0;
    for (size_t i = 0; i < nw; i++) w[i] = (float)urand() - 0.5f, dw[i] = 0;
    for (size_t i = 0; i < ny; i++) y[i] = (float)urand() - 0.5f;
    double best[3] = {1e30, 1e30, 1e30};
    for (int r = 0; r < repeats; r++) {
      double t0 = bench_now();
      strop__conv2d_forward(&d, x, w, NULL, y, scratch, chunks, NULL);
      double t1 = bench_now();
      if (backward) strop__conv2d_backward(&d, x, w, y, NULL, dw, NULL, scratch, chunks, NULL);
      double t2 = bench_now();
      if (backward && k)
        strop__conv2d_backward(&d, x, w, y, dx, NULL, NULL, scratch, chunks, NULL);
      double t3 = bench_now();
      if (t1 - t0 < best[0]) best[0] = t1 - t0;
      if (t2 - t1 < best[1]) best[1] = t2 - t1;
      if (t3 - t2 < best[2]) best[2] = t3 - t2;
    }
    for (int q = 0; q < 3; q++) part[q] += best[q] * c[5];
    strop__free_aligned(x), strop__free_aligned(y), strop__free_aligned(dx);
    strop__free_aligned(w), strop__free_aligned(dw), strop__free_aligned(scratch);
  }
  return part[0] + part[1] + part[2];
}

static int train(const char *ckpt, const char *mode, int threads, int steps, int repeats) {
  const int frozen = !strcmp(mode, "frozen");
  strop_model *m = NULL;
  double t0 = bench_now();
  bench_must(strop_model_load_pretrained(ckpt, "resnet18", NULL, &m, NULL), ckpt);
  const double load_s = bench_now() - t0;
  if (frozen) {
    bench_must(strop_model_freeze(m, "*"), "freeze");
    bench_must(strop_model_unfreeze(m, "fc.*"), "unfreeze fc");
  }
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  bench_must(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt), "optimizer");
  bench_must(strop_optimizer_set_double(opt, STROP_OPT_LR, 1e-3), "lr");
  bench_must(strop_trainer_create(m, opt, &tr), "trainer");
  const int64_t xd[4] = {BATCH, 3, SIZE, SIZE}, yd[1] = {BATCH};
  const size_t per = 3 * SIZE * SIZE;
  strop_tensor *xs[POOL], *ys[POOL];
  for (int b = 0; b < POOL; b++) {
    bench_must(strop_tensor_create(4, xd, &xs[b]), "x");
    bench_must(strop_tensor_create(1, yd, &ys[b]), "y");
    float *x = strop_tensor_data(xs[b]), *y = strop_tensor_data(ys[b]);
    for (size_t i = 0; i < per * BATCH; i++) x[i] = (float)(2 * urand() - 1);
    for (int i = 0; i < BATCH; i++) y[i] = (float)(int)(urand() * CLASSES);
  }
  bench_reset_peak_rss();
  float loss = 0;
  for (int s = 0; s < 3; s++)
    bench_must(strop_trainer_step(tr, xs[s % POOL], ys[s % POOL], &loss), "step");
  double best = 1e30;
  int k = 0;
  for (int r = 0; r < repeats; r++) {
    t0 = bench_now();
    for (int s = 0; s < steps; s++, k++)
      bench_must(strop_trainer_step(tr, xs[k % POOL], ys[k % POOL], &loss), "step");
    double dt = (bench_now() - t0) / steps;
    if (dt < best) best = dt;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const long rss_kb = ru.ru_maxrss, train_rss_kb = bench_peak_rss_kb();

  /* the phases: the same steps through forward / backward / apply */
  double tf = 0, tb = 0, ta = 0;
  strop_tensor *dout = NULL;
  const int64_t od[2] = {BATCH, CLASSES};
  bench_must(strop_tensor_create(2, od, &dout), "dout");
  for (int s = 0; s < steps; s++, k++) {
    strop_tensor *out = NULL;
    double a = bench_now();
    bench_must(strop_trainer_forward(tr, xs[k % POOL], &out), "forward");
    double b = bench_now();
    const float *z = strop_tensor_data(out), *y = strop_tensor_data(ys[k % POOL]);
    float *g = strop_tensor_data(dout);
    for (int i = 0; i < BATCH; i++) { /* d mean CE / d logits */
      double mx = z[i * CLASSES], sum = 0;
      for (int c = 1; c < CLASSES; c++) mx = fmax(mx, z[i * CLASSES + c]);
      for (int c = 0; c < CLASSES; c++) sum += exp(z[i * CLASSES + c] - mx);
      for (int c = 0; c < CLASSES; c++)
        g[i * CLASSES + c] = (float)((exp(z[i * CLASSES + c] - mx) / sum - (c == (int)y[i])) /
                                     BATCH);
    }
    strop_tensor_free(out);
    double c = bench_now();
    bench_must(strop_trainer_backward(tr, dout), "backward");
    double d = bench_now();
    bench_must(strop_trainer_apply(tr), "apply");
    double e = bench_now();
    tf += b - a, tb += d - c, ta += e - d;
  }
  strop_tensor_free(dout);
  double part[3];
  const double conv_s = conv_floor(threads, !frozen, repeats, part);
  printf("RESULT impl=strop model=resnet18%s threads=%d batch=%d samples_per_s=%.2f "
         "step_ms=%.1f fwd_ms=%.1f bwd_ms=%.1f opt_ms=%.1f conv_ms=%.1f conv_fwd_ms=%.1f "
         "conv_dw_ms=%.1f conv_dx_ms=%.1f maxrss_kb=%ld train_rss_kb=%ld load_s=%.3f "
         "loss=%.4f\n",
         frozen ? "_frozen" : "", threads, BATCH, BATCH / best, best * 1e3, tf / steps * 1e3,
         tb / steps * 1e3, ta / steps * 1e3, conv_s * 1e3, part[0] * 1e3, part[1] * 1e3,
         part[2] * 1e3, rss_kb, train_rss_kb, load_s, (double)loss);
  for (int b = 0; b < POOL; b++) strop_tensor_free(xs[b]), strop_tensor_free(ys[b]);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  return 0;
}

static int load(const char *ckpt, const char *arch, int repeats) {
  struct stat sb;
  if (stat(ckpt, &sb) != 0) {
    fprintf(stderr, "bench_pretrained: cannot stat %s\n", ckpt);
    return 1;
  }
  double best = 1e30;
  int64_t params = 0;
  for (int r = 0; r < repeats; r++) {
    strop_model *m = NULL;
    double t0 = bench_now();
    bench_must(strop_model_load_pretrained(ckpt, arch, NULL, &m, NULL), ckpt);
    double t = bench_now() - t0;
    if (t < best) best = t;
    params = strop_model_param_count(m, 0);
    strop_model_free(m);
  }
  printf("RESULT impl=strop load arch=%s file_mb=%.1f params=%lld load_s=%.3f\n", arch,
         (double)sb.st_size / 1e6, (long long)params, best);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "train")) {
    int threads, steps, repeats;
    bench_args(argc, argv, 4, 5, &threads, &steps, &repeats);
    return train(argv[2], argv[3], threads, steps, repeats);
  }
  if (argc >= 4 && !strcmp(argv[1], "load"))
    return load(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 3);
  fprintf(stderr, "usage: bench_pretrained train CHECKPOINT full|frozen [threads] [steps] "
                  "[repeats]\n       bench_pretrained load CHECKPOINT ARCH [repeats]\n");
  return 2;
}
