/* SPDX-License-Identifier: MIT */
/* strop bench — see benchutil.h. */
#define _GNU_SOURCE /* sched_setaffinity, pthread_setaffinity_np */
#include "benchutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void bench_must(strop_status s, const char *what) {
  if (s != STROP_OK) {
    fprintf(stderr, "strop bench: %s: %s\n", what, strop_last_error());
    exit(1);
  }
}

void bench_args(int argc, char **argv, int first, int def_steps, int *threads, int *steps,
                int *repeats) {
  *threads = argc > first ? atoi(argv[first]) : 1;
  *steps = argc > first + 1 ? atoi(argv[first + 1]) : def_steps;
  *repeats = argc > first + 2 ? atoi(argv[first + 2]) : 5;
  if (*threads < 1) *threads = 1;
  if (*steps < 1) *steps = 1;
  if (*repeats < 1) *repeats = 1;
  bench_must(strop_set_num_threads(*threads), "threads");
}

long bench_status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  const size_t l = strlen(key);
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, l) == 0) kb = atol(line + l);
  fclose(f);
  return kb;
}

long bench_peak_rss_kb(void) { return bench_status_kb("VmHWM:"); }

/* the two sides of bench_c2c_ns: the caller writes odd values, the helper answers with even */
static _Alignas(64) atomic_long c2c_flag;
static long c2c_trips;

static int pin_self(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  return pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void *c2c_helper(void *arg) {
  (void)arg;
  pin_self(1);
  for (long i = 0; i < c2c_trips; i++) {
    while (atomic_load_explicit(&c2c_flag, memory_order_acquire) != 2 * i + 1) {
    }
    atomic_store_explicit(&c2c_flag, 2 * i + 2, memory_order_release);
  }
  return NULL;
}

double bench_c2c_ns(long round_trips) {
  cpu_set_t old;
  if (round_trips < 1 || pthread_getaffinity_np(pthread_self(), sizeof old, &old) != 0 ||
      !CPU_ISSET(0, &old) || !CPU_ISSET(1, &old) || pin_self(0) != 0)
    return -1;
  atomic_store(&c2c_flag, 0);
  c2c_trips = round_trips;
  pthread_t t;
  double ns = -1;
  if (pthread_create(&t, NULL, c2c_helper, NULL) == 0) {
    const double t0 = bench_now();
    for (long i = 0; i < round_trips; i++) {
      atomic_store_explicit(&c2c_flag, 2 * i + 1, memory_order_release);
      while (atomic_load_explicit(&c2c_flag, memory_order_acquire) != 2 * i + 2) {
      }
    }
    ns = (bench_now() - t0) * 1e9 / (double)round_trips / 2.0;
    pthread_join(t, NULL);
  }
  pthread_setaffinity_np(pthread_self(), sizeof old, &old);
  return ns;
}

double bench_best_step(strop_trainer *tr, const strop_tensor *x, const strop_tensor *y, int steps,
                       int repeats, float *loss) {
  bench_must(strop_trainer_step(tr, x, y, loss), "warm-up");
  double best = 1e30;
  const int log = getenv("STEP_LOG") != NULL;
  for (int r = 0; r < repeats; r++) {
    const double c2c = log ? bench_c2c_ns(20000) : 0;
    const double t0 = bench_now();
    for (int s = 0; s < steps; s++) bench_must(strop_trainer_step(tr, x, y, loss), "step");
    const double dt = (bench_now() - t0) / steps;
    if (log)
      printf("WINDOW round=%d step_ms=%.1f c2c_ns_before=%.1f c2c_ns_after=%.1f\n", r, dt * 1e3,
             c2c, bench_c2c_ns(20000));
    if (dt < best) best = dt;
  }
  return best;
}

void bench_reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return;
  fputs("5", f);
  fclose(f);
}

strop_model *bench_build_cnn(void) {
  const int64_t in[3] = {1, 28, 28};
  strop_model *m = NULL;
  bench_must(strop_model_create(3, in, &m), "create");
  bench_must(
      strop_model_add(m, "features.0", "conv2d", "out_channels=32 kernel_size=3 padding=1", NULL),
      "conv1");
  bench_must(strop_model_add(m, "features.1", "relu", NULL, NULL), "relu1");
  bench_must(strop_model_add(m, "features.2", "maxpool2d", "kernel_size=2", NULL), "pool1");
  bench_must(
      strop_model_add(m, "features.3", "conv2d", "out_channels=64 kernel_size=3 padding=1", NULL),
      "conv2");
  bench_must(strop_model_add(m, "features.4", "relu", NULL, NULL), "relu2");
  bench_must(strop_model_add(m, "features.5", "maxpool2d", "kernel_size=2", NULL), "pool2");
  bench_must(strop_model_add(m, "flatten", "flatten", NULL, NULL), "flatten");
  bench_must(strop_model_add(m, "classifier.0", "linear", "out_features=128", NULL), "fc1");
  bench_must(strop_model_add(m, "classifier.1", "relu", NULL, NULL), "relu3");
  bench_must(strop_model_add(m, "classifier.2", "linear", "out_features=10", NULL), "fc2");
  bench_must(strop_model_finalize(m, 1), "finalize");
  return m;
}
