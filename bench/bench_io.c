/* SPDX-License-Identifier: MIT */
/* strop benchmark — safetensors speed: write a 100 MB F32 file (25 tensors of 1M floats),
 * then open it (mmap + full header validation), view it without copying, and load it into a
 * model of 25 linear layers. Usage: bench_io [folder] (default /tmp). Target: load << 1 s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "layers/layer.h"
#include "strop/strop.h"
#include "benchutil.h"

#define N_T 25
#define DIM 1000 /* linear 1000 -> 1000: a 1M-float weight and a 1000-float bias */

static int fail(const char *what) {
  fprintf(stderr, "bench_io: %s: %s\n", what, strop_last_error());
  return 1;
}

/* The registry refers to layers weakly, so a static link keeps only those referenced. */
extern const strop__layer_vtable strop__layer_linear;
const strop__layer_vtable *const bench_io_keep_linear = &strop__layer_linear;

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp";
  char path[512];
  snprintf(path, sizeof path, "%s/strop_bench_io_%ld.safetensors", dir, (long)getpid());

  /* a model of 25 linear layers; its state dict is 25 x (1M + 1000) floats */
  int64_t in = DIM;
  strop_model *m = NULL;
  if (strop_model_create(1, &in, &m)) return fail("create");
  for (int i = 0; i < N_T; i++) {
    char name[32];
    snprintf(name, sizeof name, "layers.%d", i);
    if (strop_model_add(m, name, "linear", "in_features=1000 out_features=1000", NULL))
      return fail("add");
  }
  if (strop_model_finalize(m, 1)) return fail("finalize");

  double t0 = bench_now();
  if (strop_model_save_weights(m, path)) return fail("save");
  double t_save = bench_now() - t0;

  /* open: mmap and validate the header; no tensor data is read */
  t0 = bench_now();
  strop__st_file *f = NULL;
  if (strop__st_open("bench", path, &f)) return fail("open");
  double t_open = bench_now() - t0;
  size_t bytes = f->size;

  /* zero-copy views, and a pass over the data through them (page cache -> CPU) */
  t0 = bench_now();
  double sum = 0;
  int views = 0;
  for (int i = 0; i < f->n; i++) {
    const float *v = strop__st_f32_view(&f->t[i]);
    if (!v) continue;
    views++;
    for (size_t k = 0; k < f->t[i].numel; k += 1024) sum += v[k];
  }
  double t_view = bench_now() - t0;
  strop__st_close(f);

  /* the public path: open, validate, copy into the model's parameters */
  t0 = bench_now();
  strop_load_report *r = NULL;
  if (strop_model_load_weights(m, path, STROP_LOAD_STRICT, &r)) return fail("load");
  double t_load = bench_now() - t0;
  int64_t loaded = strop_load_report_count(r, STROP_REPORT_LOADED);
  strop_load_report_free(r);

  printf("bench_io: file %.1f MB, %lld tensors (%d zero-copy F32 views)\n", bytes / 1e6,
         (long long)loaded, views);
  printf("  save (atomic, fsync)           %8.3f s  %7.0f MB/s\n", t_save, bytes / 1e6 / t_save);
  printf("  open + validate (mmap)         %8.4f s\n", t_open);
  printf("  touch every page via views     %8.3f s  (checksum %g)\n", t_view, sum);
  printf("  strop_model_load_weights       %8.3f s  %7.0f MB/s\n", t_load, bytes / 1e6 / t_load);
  unlink(path);
  strop_model_free(m);
  return t_load < 1.0 ? 0 : 2;
}
