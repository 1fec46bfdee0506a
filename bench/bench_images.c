/* SPDX-License-Identifier: MIT */
/* strop bench — image folders: images/s of decode + resize + crop + normalise into 224x224
 * batches of 32 (torchvision's ImageNet eval and train pipelines) with W prefetch workers, and
 * with a torchvision ResNet-18 checkpoint, the share of a fine-tuning step spent waiting for
 * data. bench/images_vs_torch.py writes the JPEGs and runs torchvision's ImageFolder +
 * DataLoader beside it. Usage: bench_images FOLDER [workers] [batches] [resnet18.safetensors]
 * [steps] [threads] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strop/strop.h"
#include "benchutil.h"

static const float k_mean[3] = {0.485f, 0.456f, 0.406f}, k_std[3] = {0.229f, 0.224f, 0.225f};

static strop_batch_iter *pipeline(strop_dataset *ds, int64_t batch, int workers, int train) {
  strop_batch_iter *it = NULL;
  int flags = STROP_ITER_SHUFFLE | (workers > 0 ? STROP_ITER_PREFETCH : 0);
  bench_must(strop_batch_iter_create(ds, batch, 1, flags, &it), "iterator");
  if (workers > 1) bench_must(strop_batch_iter_set_workers(it, workers), "workers");
  bench_must(strop_batch_iter_add_scale(it, 1.0f / 255.0f), "scale");
  if (train) {
    bench_must(strop_batch_iter_add_random_resized_crop(it, 224, 224, 0.08f, 1.0f, 0.75f,
                                                        4.0f / 3.0f, STROP_RESIZE_BILINEAR_AA),
               "random resized crop");
    bench_must(strop_batch_iter_add_hflip(it, 0.5f), "flip");
  } else {
    bench_must(strop_batch_iter_add_resize_shorter(it, 256, 0, STROP_RESIZE_BILINEAR_AA),
               "resize");
    bench_must(strop_batch_iter_add_center_crop(it, 224, 224), "crop");
  }
  bench_must(strop_batch_iter_add_normalize(it, 3, k_mean, k_std), "normalize");
  return it;
}

/* images/s over `batches` batches after one warm-up batch (epochs wrap around). */
static double throughput(strop_dataset *ds, int workers, int train, int batches) {
  strop_batch_iter *it = pipeline(ds, 32, workers, train);
  strop_tensor *x;
  int64_t rows, seen = 0;
  double t0 = 0;
  for (int b = -1; b < batches;) {
    bench_must(strop_batch_iter_next(it, &x, NULL, &rows), "next");
    if (!rows) continue;
    if (b == -1) t0 = bench_now();
    else seen += rows;
    b++;
  }
  double secs = bench_now() - t0;
  strop_batch_iter_free(it);
  return (double)seen / secs;
}

extern int strop__iter_keep_resized; /* lib/data/iter.c */

/* CPU seconds of the process (every worker). */
static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CACHE_MB=N: the evaluation pipeline over whole epochs with a cache of N MB — epoch 1 fills
 * it, epochs 2 and 3 read it — the iterator keeping the resized pixels, then the decoded ones
 * only (as before), alternating `rounds` times; images/s of the later epochs by CPU time (the
 * machine may be loaded) and wall time, best of the rounds. */
static void cached_epochs(const char *folder, size_t cache_mb, int workers, int rounds) {
  double best[2][2] = {{0, 0}, {0, 0}};
  for (int r = 0; r < rounds; r++)
    for (int keep = 1; keep >= 0; keep--) {
      strop__iter_keep_resized = keep;
      strop_image_options o;
      strop_image_options_init(&o);
      o.cache_bytes = cache_mb << 20;
      strop_dataset *ds = NULL;
      bench_must(strop_dataset_load_images(folder, &o, &ds), "load");
      strop_batch_iter *it = pipeline(ds, 32, workers, 0);
      strop_tensor *x;
      int64_t rows, seen = 0;
      double c0 = 0, w0 = 0;
      for (int e = 0; e < 3;) {
        bench_must(strop_batch_iter_next(it, &x, NULL, &rows), "next");
        if (!rows) {
          if (++e == 1) c0 = cpu_now(), w0 = bench_now();
          continue;
        }
        if (e >= 1) seen += rows;
      }
      const double cpu = (double)seen / (cpu_now() - c0),
                   wall = (double)seen / (bench_now() - w0);
      if (cpu > best[keep][0]) best[keep][0] = cpu;
      if (wall > best[keep][1]) best[keep][1] = wall;
      strop_batch_iter_free(it);
      strop_dataset_free(ds);
    }
  printf(
      "strop eval from a %zu MB cache, epochs 2-3, %d worker(s): resized pixels kept %.1f "
      "images/s (CPU time) %.1f (wall); decoded pixels kept %.1f / %.1f; ratio %.2fx / %.2fx\n",
      cache_mb, workers, best[1][0], best[1][1], best[0][0], best[0][1], best[1][0] / best[0][0],
      best[1][1] / best[0][1]);
  strop__iter_keep_resized = 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_images FOLDER [workers] [batches] [resnet18.safetensors] "
                    "[steps] [threads]\n");
    return 2;
  }
  int workers = argc > 2 ? atoi(argv[2]) : 1, batches = argc > 3 ? atoi(argv[3]) : 20;
  const char *cache = getenv("CACHE_MB");
  if (cache) {
    cached_epochs(argv[1], (size_t)atol(cache), workers, batches > 0 ? batches : 3);
    return 0;
  }
  double t0 = bench_now();
  strop_dataset *ds = NULL;
  bench_must(strop_dataset_load_images(argv[1], NULL, &ds), "load");
  printf("strop load: %lld images, %lld classes, %.3f s (headers read)\n",
         (long long)strop_dataset_size(ds), (long long)strop_dataset_num_classes(ds),
         bench_now() - t0);
  printf("strop eval  (Resize 256, CenterCrop 224, Normalize), %d worker(s): %.1f images/s\n",
         workers, throughput(ds, workers, 0, batches));
  printf("strop train (RandomResizedCrop 224, flip, Normalize), %d worker(s): %.1f images/s\n",
         workers, throughput(ds, workers, 1, batches));
  if (argc > 4) {
    /* a full fine-tune of ResNet-18 at batch 16: time spent in next() against the step */
    int steps = argc > 5 ? atoi(argv[5]) : 6, threads = argc > 6 ? atoi(argv[6]) : 2;
    bench_must(strop_set_num_threads(threads), "threads");
    strop_model *m = NULL;
    bench_must(strop_model_load_pretrained(argv[4], "resnet18", NULL, &m, NULL), "resnet18");
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    bench_must(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt), "optimizer");
    bench_must(strop_trainer_create(m, opt, &tr), "trainer");
    strop_batch_iter *it = pipeline(ds, 16, workers, 1);
    double wait = 0, total = 0;
    int done = 0;
    for (int s = -1; s < steps;) {
      strop_tensor *x, *y;
      int64_t rows;
      double a = bench_now();
      bench_must(strop_batch_iter_next(it, &x, &y, &rows), "next");
      if (!rows) continue;
      double b = bench_now();
      float loss;
      bench_must(strop_trainer_step(tr, x, y, &loss), "step");
      double c = bench_now();
      if (s >= 0) { /* the first step warms up */
        wait += b - a;
        total += c - a;
        done++;
      }
      s++;
    }
    printf("ResNet-18 full fine-tune, batch 16, %d thread(s), %d worker(s): %.2f s/step, %.1f "
           "images/s, waiting for data %.1f%% of a step (%d steps)\n",
           threads, workers, total / done, 16.0 * done / total, 100.0 * wait / total, done);
    strop_batch_iter_free(it);
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
    strop_model_free(m);
  }
  strop_dataset_free(ds);
  return 0;
}
