/* SPDX-License-Identifier: MIT */
/* strop bench — helpers shared by the benchmark programs (not by bench_c_step.c, which
 * bench_python_overhead.py also compiles alone). */
#ifndef STROP_BENCHUTIL_H
#define STROP_BENCHUTIL_H

#include "strop/strop.h"

/* Monotonic wall-clock seconds. */
double bench_now(void);
/* Exits with the library's sentence unless s is STROP_OK. */
void bench_must(strop_status s, const char *what);
/* Reads [threads] [steps] [repeats] from argv[first..] (each at least 1; defaults 1,
 * def_steps, 5) and sets strop's thread count. */
void bench_args(int argc, char **argv, int first, int def_steps, int *threads, int *steps,
                int *repeats);
/* A field of /proc/self/status in kB ("VmRSS:", "VmHWM:"); -1 without /proc. */
long bench_status_kb(const char *key);
/* Peak RSS since the last bench_reset_peak_rss() (VmHWM), in kB; -1 without /proc. */
long bench_peak_rss_kb(void);
/* The one-way latency between CPUs 0 and 1 in nanoseconds: the caller and a helper thread,
 * pinned to one CPU each, hand a cache line back and forth round_trips times. -1 when the
 * process may not run on both. On a virtual machine it says where the host placed the two
 * virtual CPUs at that moment (docs/performance.md, "The two speeds of a 2-thread process"). */
double bench_c2c_ns(long round_trips);
/* One warm-up step, then `repeats` windows of `steps` strop_trainer_step calls on (x, y):
 * the best window's seconds per step; *loss the last step's loss. Exits on an error. With
 * STEP_LOG set in the environment, prints each window's milliseconds per step and the
 * bench_c2c_ns measured just before and just after it (a WINDOW line). */
double bench_best_step(strop_trainer *tr, const strop_tensor *x, const strop_tensor *y, int steps,
                       int repeats, float *loss);
/* Linux: writing 5 to clear_refs resets VmHWM to the current RSS, so a training phase's peak
 * is not the data loader's. */
void bench_reset_peak_rss(void);
/* Issue 5's small CNN with torch.nn.Sequential's names: conv 1->32 and 32->64 (3x3, pad 1),
 * each with ReLU and 2x2 max-pool (features.0..5), flatten, linear 3136->128, ReLU,
 * linear 128->10 (classifier.0..2); input [1, 28, 28]; finalized with seed 1. */
strop_model *bench_build_cnn(void);

#endif
