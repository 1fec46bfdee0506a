/* SPDX-License-Identifier: MIT */
/* strop bench — the tuner's own overhead: time per Bayesian suggestion (Gaussian-process fit
 * plus expected-improvement candidate search) at 10, 50 and 100 observed trials, 4-d space. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "strop/strop.h"
#include "benchutil.h"

/* CPU time of this thread: the cost without the other processes of a loaded machine. */
static double cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A smooth 4-d objective with some noise-free structure (a shifted, rotated bowl + ripple). */
static double objective(const double *x) {
  double s = 0.0;
  for (int j = 0; j < 4; j++) s += (x[j] - 0.3 - 0.1 * j) * (x[j] - 0.3 - 0.1 * j);
  return s + 0.1 * sin(7.0 * x[0] + 3.0 * x[2]);
}

static const char *const NAMES[4] = {"x0", "x1", "x2", "x3"};

static int add_space(strop_tuner *t) {
  for (int j = 0; j < 4; j++)
    if (strop_tuner_add_float(t, NAMES[j], 0.0, 1.0, 0) != STROP_OK) return 0;
  return 1;
}

/* Asks, evaluates and tells one trial. */
static int one_trial(strop_tuner *t) {
  int64_t id;
  double x[4];
  if (strop_tuner_ask(t, &id) != STROP_OK) return 0;
  for (int j = 0; j < 4; j++)
    if (strop_tuner_trial_float(t, id, NAMES[j], &x[j]) != STROP_OK) return 0;
  return strop_tuner_tell(t, id, objective(x), STROP_TRIAL_OK) == STROP_OK;
}

/* n random trials written to a trials file, resumed by a Bayesian tuner: its first
 * suggestion then fits the kernel cold (the worst case). */
static strop_tuner *bayes_with(int64_t n, uint64_t seed, const char *path) {
  strop_tuner *r = NULL, *t = NULL;
  remove(path);
  int ok = strop_tuner_create(STROP_TUNE_RANDOM, seed, STROP_TUNE_MINIMIZE, &r) == STROP_OK;
  ok = ok && add_space(r) && strop_tuner_set_log(r, path) == STROP_OK;
  for (int64_t i = 0; i < n && ok; i++) ok = one_trial(r);
  strop_tuner_free(r);
  ok = ok && strop_tuner_create(STROP_TUNE_BAYES, seed, STROP_TUNE_MINIMIZE, &t) == STROP_OK;
  ok = ok && add_space(t) && strop_tuner_resume(t, path) == STROP_OK;
  remove(path);
  if (!ok) {
    fprintf(stderr, "bench_tune: %s\n", strop_last_error());
    strop_tuner_free(t);
    return NULL;
  }
  return t;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  const int64_t sizes[3] = {10, 50, 100};
  const char *path = "bench_tune_trials.jsonl";
  printf("strop tuner overhead: one Bayesian suggestion (GP fit + 2000 EI candidates + local\n"
         "refinement), 4 float parameters, %d repetitions each (first: cold fit; then warm)\n\n",
         reps);
  printf("%10s  %14s  %14s  %14s  %14s  %s\n", "observed", "cold ms (mean)", "warm ms (mean)",
         "warm ms (max)", "warm cpu ms", "target");
  for (int k = 0; k < 3; k++) {
    double cold = 0.0, warm = 0.0, warm_max = 0.0, warm_cpu = 0.0;
    int n_warm = 0;
    for (int r = 0; r < reps; r++) {
      strop_tuner *t = bayes_with(sizes[k], (uint64_t)(100 + r), path);
      if (!t) return 1;
      /* cold: the first suggestion after the resume */
      double t0 = bench_now();
      if (!one_trial(t)) return 1;
      cold += (bench_now() - t0) / reps;
      /* warm: the next ones start the fit from the previous kernel */
      for (int w = 0; w < 3; w++) {
        t0 = bench_now();
        double c0 = cpu();
        if (!one_trial(t)) return 1;
        double dt = bench_now() - t0;
        warm_cpu += cpu() - c0;
        warm += dt;
        warm_max = dt > warm_max ? dt : warm_max;
        n_warm++;
      }
      strop_tuner_free(t);
    }
    printf("%10lld  %14.2f  %14.2f  %14.2f  %14.2f  %s\n", (long long)sizes[k], 1e3 * cold,
           1e3 * warm / n_warm, 1e3 * warm_max, 1e3 * warm_cpu / n_warm,
           sizes[k] == 100 ? "< 50 ms" : "");
  }
  return 0;
}
