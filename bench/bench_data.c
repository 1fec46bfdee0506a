/* SPDX-License-Identifier: MIT */
/* strop bench — the data path: load the 60k Fashion-MNIST training set from the .gz files
 * (target < 1 s) and iterate one shuffled epoch in batches of 64 scaled to [0, 1], with and
 * without the prefetch thread. Usage: bench_data [dir] (default /usr/share/datasets/fashion-mnist). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "strop/strop.h"
#include "benchutil.h"

/* Process CPU time: on a loaded machine it shows the work apart from the waiting. */
static double cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int epoch(strop_dataset *ds, int flags, double *secs, double *checksum) {
  strop_batch_iter *it = NULL;
  if (strop_batch_iter_create(ds, 64, 1, STROP_ITER_SHUFFLE | flags, &it) != STROP_OK ||
      strop_batch_iter_add_scale(it, 1.0f / 255.0f) != STROP_OK)
    return 1;
  double t0 = bench_now(), sum = 0;
  int64_t rows, total = 0;
  strop_tensor *x, *y;
  while (strop_batch_iter_next(it, &x, &y, &rows) == STROP_OK && rows > 0) {
    sum += strop_tensor_data(x)[0] + strop_tensor_data(y)[rows - 1]; /* touch the batch */
    total += rows;
  }
  *secs = bench_now() - t0;
  *checksum = sum;
  strop_batch_iter_free(it);
  return total == strop_dataset_size(ds) ? 0 : 1;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  char img[512], lab[512];
  snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", dir);
  snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", dir);
  strop_dataset *ds = NULL;
  double best = 1e9, best_cpu = 1e9;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = bench_now(), c0 = cpu();
    if (strop_dataset_load_idx(img, lab, 10, &ds) != STROP_OK) {
      fprintf(stderr, "bench_data: %s\n", strop_last_error());
      return 1;
    }
    double t = bench_now() - t0, c = cpu() - c0;
    if (t < best) best = t;
    if (c < best_cpu) best_cpu = c;
    if (rep < 2) strop_dataset_free(ds);
  }
  printf("load Fashion-MNIST train (60000 x 1x28x28, gzip): %.3f s wall, %.3f s cpu (best of 3; "
         "target < 1 s)\n",
         best, best_cpu);
  for (int pf = 0; pf < 2; pf++) {
    double secs, sum;
    if (epoch(ds, pf ? STROP_ITER_PREFETCH : 0, &secs, &sum)) {
      fprintf(stderr, "bench_data: iteration failed: %s\n", strop_last_error());
      return 1;
    }
    printf("one shuffled epoch, batch 64, scale 1/255, prefetch %-3s: %.3f s (%.1f us/batch)"
           " [checksum %.3f]\n",
           pf ? "on" : "off", secs, secs / 938.0 * 1e6, sum);
  }
  strop_dataset_free(ds);
  return 0;
}
