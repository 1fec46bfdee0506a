/* SPDX-License-Identifier: MIT */
/* strop tests — core suite: status names, the per-thread error sentence, logging, the PCG32
 * generator, thread settings, the step arena, the version, allocation failures. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/core.h"
#include "ops/ops.h"
#include "strop/strop.h"
#include "testutil.h"

/* The first outputs of strop_rng_next_u32 for seed 42 (stream 0). Computed once with the
 * library, and checked independently: the CTest test `pcg32_ref` re-implements PCG32 in
 * Python (tests/abi/pcg32_ref.py) and compares it with this array. Keep the name. */
static const uint32_t STROP_PCG32_SEED42[] = {
    0x21b756eeu, 0xc15ef750u, 0x9548a9bdu, 0x35db428du,
    0xf0071649u, 0xa243807fu, 0xb4c5bdd2u, 0x103ca9d2u,
};
#define N_SEED42 (sizeof STROP_PCG32_SEED42 / sizeof STROP_PCG32_SEED42[0])

/* ------------------------------------------------------------------ errors */

START_TEST(status_names) {
  static const struct {
    int status;
    const char *name;
  } all[] = {
      {STROP_OK, "ok"},
      {STROP_E_INVALID_ARG, "invalid argument"},
      {STROP_E_NOMEM, "out of memory"},
      {STROP_E_IO, "input/output error"},
      {STROP_E_FORMAT, "bad format"},
      {STROP_E_SHAPE, "shape mismatch"},
      {STROP_E_NOT_FOUND, "not found"},
      {STROP_E_STATE, "bad state"},
      {STROP_E_NUMERIC, "numeric error"},
      {STROP_E_UNSUPPORTED, "unsupported"},
      {STROP_E_INTERNAL, "internal error"},
      {STROP_E_CALLBACK, "callback failed"},
      {STROP_E_CANCELLED, "cancelled"},
  };
  size_t n = sizeof all / sizeof all[0];
  for (size_t i = 0; i < n; i++) {
    /* the numbers are part of the ABI: 0, -1, -2, ... with no gaps */
    ck_assert_int_eq(all[i].status, -(int)i);
    const char *s = strop_status_str(all[i].status);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, all[i].name);
    for (size_t j = 0; j < i; j++) ck_assert_str_ne(s, strop_status_str(all[j].status));
  }
  const int unknown[] = {1, 2, -13, -100, 12345, INT_MAX, INT_MIN};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
    ck_assert_str_eq(strop_status_str(unknown[i]), "unknown status");
}
END_TEST

typedef struct {
  char seen_at_start[64];
  char after_fail[256];
  int status;
} thread_result;

static void *fail_in_thread(void *arg) {
  thread_result *r = arg;
  snprintf(r->seen_at_start, sizeof r->seen_at_start, "%s", strop_last_error());
  r->status = strop_rng_permutation(NULL, 3, NULL);
  snprintf(r->after_fail, sizeof r->after_fail, "%s", strop_last_error());
  return NULL;
}

START_TEST(last_error_thread_local) {
  strop_tensor *t = NULL;
  int64_t dims[1] = {-7};
  ck_assert_int_eq(strop_tensor_create(1, dims, &t), STROP_E_INVALID_ARG);
  char mine[256];
  snprintf(mine, sizeof mine, "%s", strop_last_error());
  ck_assert_ptr_nonnull(strstr(mine, "strop_tensor_create"));
  ck_assert_ptr_nonnull(strstr(mine, "-7"));

  thread_result r;
  memset(&r, 0, sizeof r);
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, fail_in_thread, &r), 0);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert_str_eq(r.seen_at_start, ""); /* a new thread starts clean */
  ck_assert_int_eq(r.status, STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(r.after_fail, "strop_rng_permutation"));
  /* the other thread's failure did not touch this thread's sentence */
  ck_assert_str_eq(strop_last_error(), mine);
}
END_TEST

START_TEST(last_error_never_null) {
  ck_assert_ptr_nonnull(strop_last_error());
  strop_clear_error();
  ck_assert_ptr_nonnull(strop_last_error());
  ck_assert_str_eq(strop_last_error(), "");
  ck_assert_int_eq(strop_rng_create(1, NULL), STROP_E_INVALID_ARG);
  ck_assert_str_eq(strop_last_error(), "strop_rng_create: out is NULL");
  /* success does not clear it */
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(1, &g), STROP_OK);
  ck_assert_str_eq(strop_last_error(), "strop_rng_create: out is NULL");
  strop_rng_free(g);
  strop_clear_error();
  ck_assert_str_eq(strop_last_error(), "");
}
END_TEST

START_TEST(error_sentence_truncates) {
  /* A huge sentence is cut, never overflows, and stays NUL-terminated. */
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  ck_assert_int_eq(strop__err(STROP_E_FORMAT, "%s", big), STROP_E_FORMAT);
  size_t n = strlen(strop_last_error());
  ck_assert_uint_gt(n, 100);
  ck_assert_uint_lt(n, sizeof big - 1);
  strop__err_prefix("outer %d", 3);
  ck_assert_int_eq(strncmp(strop_last_error(), "outer 3: xxx", 12), 0);
  ck_assert_uint_lt(strlen(strop_last_error()), sizeof big - 1);
  strop__err(STROP_E_IO, "inner");
  strop__err_prefix("while loading %s", "a.yaml");
  ck_assert_str_eq(strop_last_error(), "while loading a.yaml: inner");
}
END_TEST

START_TEST(error_prefix_names_each_function_once) {
  /* The context added on the way out does not repeat the function the inner sentence already
   * names, and an internal function's name (strop__...) gives way to the public caller's. */
  strop__err(STROP_E_FORMAT, "strop_recipe_set: r.yaml:3:7: 'lr' must be a number, got 'x'");
  strop__err_prefix("strop_recipe_set: setting '%s' to '%s'", "optimizer.lr", "x");
  ck_assert_str_eq(strop_last_error(), "strop_recipe_set: setting 'optimizer.lr' to 'x': "
                                       "r.yaml:3:7: 'lr' must be a number, got 'x'");
  strop__err(STROP_E_INVALID_ARG, "strop__loss_eval: cross_entropy: sample 3: class 4");
  strop__err_prefix("strop_trainer_step: step %d", 0);
  ck_assert_str_eq(strop_last_error(),
                   "strop_trainer_step: step 0: cross_entropy: sample 3: class 4");
  strop__err(STROP_E_INVALID_ARG, "strop_model_forward: bad input");
  strop__err_prefix("strop_model_forward");
  ck_assert_str_eq(strop_last_error(), "strop_model_forward: bad input");
  /* another public function's name stays: it says where the failure came from */
  strop__err(STROP_E_IO, "strop_model_load_weights: w.safetensors: no such file");
  strop__err_prefix("strop_recipe_run: model");
  ck_assert_str_eq(
      strop_last_error(),
      "strop_recipe_run: model: strop_model_load_weights: w.safetensors: no such file");
}
END_TEST

/* --------------------------------------------------------------------- log */

#define MAX_MSGS 8
typedef struct {
  int n;
  int levels[MAX_MSGS];
  char msgs[MAX_MSGS][128];
} log_sink;

static void record(int level, const char *message, void *user_data) {
  log_sink *s = user_data;
  if (s->n < MAX_MSGS) {
    s->levels[s->n] = level;
    snprintf(s->msgs[s->n], sizeof s->msgs[0], "%s", message);
  }
  s->n++;
}

START_TEST(log_silent_by_default) {
  /* With no handler nothing reaches stdout or stderr, from a log call or a failure. */
  char path[] = "/tmp/strop_check_core_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  fflush(stdout);
  fflush(stderr);
  int saved_out = dup(1), saved_err = dup(2);
  ck_assert_int_ge(saved_out, 0);
  ck_assert_int_ge(saved_err, 0);
  dup2(fd, 1);
  dup2(fd, 2);
  for (int level = STROP_LOG_ERROR; level <= STROP_LOG_DEBUG; level++)
    strop__log(level, "message at level %d", level);
  strop_tensor *t = NULL;
  int st = strop_tensor_create(0, NULL, &t);
  int st2 = strop_rng_create(3, NULL);
  fflush(stdout);
  fflush(stderr);
  dup2(saved_out, 1);
  dup2(saved_err, 2);
  close(saved_out);
  close(saved_err);
  off_t size = lseek(fd, 0, SEEK_END);
  close(fd);
  unlink(path);
  ck_assert_int_eq(st, STROP_E_INVALID_ARG);
  ck_assert_int_eq(st2, STROP_E_INVALID_ARG);
  ck_assert_int_eq((int)size, 0);
}
END_TEST

START_TEST(log_handler_receives) {
  log_sink sink;
  memset(&sink, 0, sizeof sink);
  strop_set_log_handler(record, STROP_LOG_DEBUG, &sink);
  strop__log(STROP_LOG_WARN, "layer '%s' has %d parameters", "head", 42);
  strop__log(STROP_LOG_DEBUG, "details");
  strop_set_log_handler(NULL, STROP_LOG_DEBUG, NULL);
  ck_assert_int_eq(sink.n, 2);
  ck_assert_int_eq(sink.levels[0], STROP_LOG_WARN);
  ck_assert_str_eq(sink.msgs[0], "layer 'head' has 42 parameters");
  ck_assert_int_eq(sink.levels[1], STROP_LOG_DEBUG);
  ck_assert_str_eq(sink.msgs[1], "details");
}
END_TEST

START_TEST(log_max_level_filters) {
  log_sink sink;
  memset(&sink, 0, sizeof sink);
  strop_set_log_handler(record, STROP_LOG_WARN, &sink);
  strop__log(STROP_LOG_ERROR, "e");
  strop__log(STROP_LOG_WARN, "w");
  strop__log(STROP_LOG_INFO, "i");
  strop__log(STROP_LOG_DEBUG, "d");
  ck_assert_int_eq(sink.n, 2);
  ck_assert_str_eq(sink.msgs[0], "e");
  ck_assert_str_eq(sink.msgs[1], "w");
  strop_set_log_handler(record, STROP_LOG_ERROR, &sink);
  strop__log(STROP_LOG_WARN, "w2");
  strop__log(STROP_LOG_ERROR, "e2");
  ck_assert_int_eq(sink.n, 3);
  ck_assert_str_eq(sink.msgs[2], "e2");
  strop_set_log_handler(NULL, 0, NULL);
}
END_TEST

START_TEST(log_null_uninstalls) {
  log_sink sink;
  memset(&sink, 0, sizeof sink);
  strop_set_log_handler(record, STROP_LOG_DEBUG, &sink);
  strop__log(STROP_LOG_ERROR, "before");
  strop_set_log_handler(NULL, STROP_LOG_DEBUG, &sink);
  strop__log(STROP_LOG_ERROR, "after");
  ck_assert_int_eq(sink.n, 1);
  ck_assert_str_eq(sink.msgs[0], "before");
  /* a long message is cut, not overflowed */
  char big[3000];
  memset(big, 'y', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  strop_set_log_handler(record, STROP_LOG_DEBUG, &sink);
  strop__log(STROP_LOG_INFO, "%s", big);
  strop_set_log_handler(NULL, 0, NULL);
  ck_assert_int_eq(sink.n, 2);
  ck_assert_int_eq(sink.msgs[1][0], 'y');
}
END_TEST

/* --------------------------------------------------------------------- rng */

START_TEST(rng_pinned_stream) {
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(42, &g), STROP_OK);
  for (size_t i = 0; i < N_SEED42; i++)
    ck_assert_msg(strop_rng_next_u32(g) == STROP_PCG32_SEED42[i],
                  "seed 42 output %zu differs from the pinned PCG32 value", i);
  strop_rng_free(g);
  ck_assert_uint_eq(strop_rng_next_u32(NULL), 0);
}
END_TEST

START_TEST(rng_same_seed_same_stream) {
  strop_rng *a = NULL, *b = NULL, *c = NULL;
  ck_assert_int_eq(strop_rng_create(123456789, &a), STROP_OK);
  ck_assert_int_eq(strop_rng_create(123456789, &b), STROP_OK);
  ck_assert_int_eq(strop_rng_create(123456790, &c), STROP_OK);
  int differ = 0;
  int same = 0;
  for (int i = 0; i < 1000; i++) {
    uint32_t x = strop_rng_next_u32(a);
    same += x == strop_rng_next_u32(b);
    differ += x != strop_rng_next_u32(c);
  }
  ck_assert_int_eq(same, 1000);
  ck_assert_int_gt(differ, 990);
  float fa[64], fb[64];
  ck_assert_int_eq(strop_rng_normal(a, 0.0f, 1.0f, fa, 64), STROP_OK);
  ck_assert_int_eq(strop_rng_normal(b, 0.0f, 1.0f, fb, 64), STROP_OK);
  ck_assert_int_eq(memcmp(fa, fb, sizeof fa), 0);
  strop_rng_free(a);
  strop_rng_free(b);
  strop_rng_free(c);
}
END_TEST

#define NSAMP 100000

START_TEST(rng_uniform_stats) {
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(7, &g), STROP_OK);
  float *v = malloc(NSAMP * sizeof *v);
  ck_assert_ptr_nonnull(v);
  ck_assert_int_eq(strop_rng_uniform(g, 0.0f, 1.0f, v, NSAMP), STROP_OK);
  /* (no ck_assert inside the loops: in fork mode each one writes to a pipe) */
  double sum = 0.0;
  int outside = 0;
  for (int i = 0; i < NSAMP; i++) {
    outside += !(v[i] >= 0.0f && v[i] < 1.0f);
    sum += v[i];
  }
  ck_assert_int_eq(outside, 0);
  /* standard error of the mean is 0.289 / sqrt(1e5) = 0.0009: 0.005 is > 5 sigma */
  ck_assert_double_eq_tol(sum / NSAMP, 0.5, 0.005);
  ck_assert_int_eq(strop_rng_uniform(g, -2.0f, 5.0f, v, NSAMP), STROP_OK);
  sum = 0.0;
  for (int i = 0; i < NSAMP; i++) {
    outside += !(v[i] >= -2.0f && v[i] < 5.0f);
    sum += v[i];
  }
  ck_assert_int_eq(outside, 0);
  ck_assert_double_eq_tol(sum / NSAMP, 1.5, 0.035);
  /* lo == hi is allowed and gives lo */
  ck_assert_int_eq(strop_rng_uniform(g, 3.0f, 3.0f, v, 10), STROP_OK);
  for (int i = 0; i < 10; i++) ck_assert_float_eq(v[i], 3.0f);
  free(v);
  strop_rng_free(g);
}
END_TEST

START_TEST(rng_normal_stats) {
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(11, &g), STROP_OK);
  float *v = malloc(NSAMP * sizeof *v);
  ck_assert_ptr_nonnull(v);
  ck_assert_int_eq(strop_rng_normal(g, 0.0f, 1.0f, v, NSAMP), STROP_OK);
  double sum = 0.0, sq = 0.0;
  int nonfinite = 0;
  for (int i = 0; i < NSAMP; i++) {
    nonfinite += !isfinite(v[i]);
    sum += v[i];
  }
  ck_assert_int_eq(nonfinite, 0);
  double mean = sum / NSAMP;
  for (int i = 0; i < NSAMP; i++) sq += (v[i] - mean) * (v[i] - mean);
  double sd = sqrt(sq / (NSAMP - 1));
  /* standard errors: mean 1/sqrt(1e5) = 0.0032, std 1/sqrt(2e5) = 0.0022; tolerance 0.015 */
  ck_assert_double_eq_tol(mean, 0.0, 0.015);
  ck_assert_double_eq_tol(sd, 1.0, 0.015);
  ck_assert_int_eq(strop_rng_normal(g, 3.0f, 2.0f, v, NSAMP), STROP_OK);
  sum = sq = 0.0;
  for (int i = 0; i < NSAMP; i++) sum += v[i];
  mean = sum / NSAMP;
  for (int i = 0; i < NSAMP; i++) sq += (v[i] - mean) * (v[i] - mean);
  ck_assert_double_eq_tol(mean, 3.0, 0.03);
  ck_assert_double_eq_tol(sqrt(sq / (NSAMP - 1)), 2.0, 0.03);
  /* std == 0 is allowed and gives the mean */
  ck_assert_int_eq(strop_rng_normal(g, -1.5f, 0.0f, v, 10), STROP_OK);
  for (int i = 0; i < 10; i++) ck_assert_float_eq(v[i], -1.5f);
  free(v);
  strop_rng_free(g);
}
END_TEST

/* Jumping ahead k draws lands where k draws of strop__rng_u32 do, for small and large k
 * (a data-parallel rank skips the other ranks' dropout draws with it), and 0 moves nothing. */
START_TEST(rng_advance_equals_drawing) {
  const uint64_t ks[] = {0, 1, 2, 3, 7, 64, 1000, 12345};
  for (size_t i = 0; i < sizeof ks / sizeof *ks; i++) {
    strop__rng a, b;
    strop__rng_seed(&a, 99 + i, 7);
    b = a;
    for (uint64_t k = 0; k < ks[i]; k++) (void)strop__rng_u32(&a);
    strop__rng_advance(&b, ks[i]);
    ck_assert_msg(a.state == b.state && a.inc == b.inc, "advance(%llu) differs",
                  (unsigned long long)ks[i]);
    ck_assert_uint_eq(strop__rng_u32(&a), strop__rng_u32(&b));
  }
  /* jumps compose: 2^40 draws as 2^39 + 2^39 */
  strop__rng c, d;
  strop__rng_seed(&c, 5, 1);
  d = c;
  strop__rng_advance(&c, (uint64_t)1 << 40);
  strop__rng_advance(&d, (uint64_t)1 << 39);
  strop__rng_advance(&d, (uint64_t)1 << 39);
  ck_assert(c.state == d.state);
}
END_TEST

START_TEST(rng_permutation) {
  enum { N = 1000 };
  strop_rng *a = NULL, *b = NULL;
  ck_assert_int_eq(strop_rng_create(5, &a), STROP_OK);
  ck_assert_int_eq(strop_rng_create(5, &b), STROP_OK);
  int64_t *p = malloc(N * sizeof *p), *q = malloc(N * sizeof *q);
  char *seen = calloc(N, 1);
  ck_assert(p && q && seen);
  ck_assert_int_eq(strop_rng_permutation(a, N, p), STROP_OK);
  ck_assert_int_eq(strop_rng_permutation(b, N, q), STROP_OK);
  int fixed = 0, bad = 0;
  for (int64_t i = 0; i < N; i++) {
    if (p[i] < 0 || p[i] >= N || seen[p[i]]) {
      bad++;
      continue;
    }
    seen[p[i]] = 1;
    bad += p[i] != q[i];
    fixed += p[i] == i;
  }
  ck_assert_int_eq(bad, 0);    /* each of 0..N-1 exactly once, equal for equal seeds */
  ck_assert_int_lt(fixed, 10); /* about 1 expected; identity would be 1000 */
  ck_assert_int_eq(strop_rng_permutation(a, N, q), STROP_OK);
  ck_assert_int_ne(memcmp(p, q, N * sizeof *p), 0); /* the stream moved on */
  /* n = 0 with out NULL is a no-op; n = 1 is {0} */
  ck_assert_int_eq(strop_rng_permutation(a, 0, NULL), STROP_OK);
  ck_assert_int_eq(strop_rng_permutation(a, 1, p), STROP_OK);
  ck_assert_int_eq(p[0], 0);
  free(p);
  free(q);
  free(seen);
  strop_rng_free(a);
  strop_rng_free(b);
}
END_TEST

/* Runs error case i against g; returns its status. */
static int rng_bad_call(int i, strop_rng *g, float *f, int64_t *p) {
  switch (i) {
    case 0: return strop_rng_uniform(NULL, 0.0f, 1.0f, f, 4);
    case 1: return strop_rng_uniform(g, 0.0f, 1.0f, NULL, 4);
    case 2: return strop_rng_uniform(g, 1.0f, 0.0f, f, 4);
    case 3: return strop_rng_uniform(g, 0.0f, NAN, f, 4);
    case 4: return strop_rng_normal(NULL, 0.0f, 1.0f, f, 4);
    case 5: return strop_rng_normal(g, 0.0f, 1.0f, NULL, 4);
    case 6: return strop_rng_normal(g, 0.0f, -0.5f, f, 4);
    case 7: return strop_rng_normal(g, 0.0f, NAN, f, 4);
    case 8: return strop_rng_permutation(NULL, 4, p);
    case 9: return strop_rng_permutation(g, 4, NULL);
    /* infinite bounds, spans or parameters filled infinities and NaN */
    case 11: return strop_rng_uniform(g, 0.0f, INFINITY, f, 4);
    case 12: return strop_rng_uniform(g, -INFINITY, INFINITY, f, 4);
    case 13: return strop_rng_uniform(g, -FLT_MAX, FLT_MAX, f, 4);
    case 14: return strop_rng_normal(g, NAN, 1.0f, f, 4);
    case 15: return strop_rng_normal(g, 0.0f, INFINITY, f, 4);
    default: return strop_rng_permutation(g, -1, p);
  }
}

START_TEST(rng_errors) {
  static const char *const needles[] = {
      "strop_rng_uniform: rng is NULL",
      "strop_rng_uniform: out is NULL",
      "hi (0) must be >= lo (1)",
      "must be >= lo",
      "strop_rng_normal: rng is NULL",
      "strop_rng_normal: out is NULL",
      "std (-0.5) finite and >= 0",
      "std (nan) finite and >= 0",
      "strop_rng_permutation: rng is NULL",
      "strop_rng_permutation: out is NULL",
      "n must be >= 0, got -1",
      "lo (0) and hi (inf) must be finite",
      "lo (-inf) and hi (inf) must be finite",
      "hi - lo too",
      "mean (nan) must be finite",
      "std (inf) finite and >= 0",
  };
  strop_rng *g = NULL, *twin = NULL;
  ck_assert_int_eq(strop_rng_create(9, &g), STROP_OK);
  ck_assert_int_eq(strop_rng_create(9, &twin), STROP_OK);
  float f[4] = {0};
  int64_t p[4] = {0};
  strop_clear_error();
  ck_assert_int_eq(strop_rng_create(9, NULL), STROP_E_INVALID_ARG);
  ck_assert_str_ne(strop_last_error(), "");
  for (int i = 0; i < (int)(sizeof needles / sizeof needles[0]); i++) {
    strop_clear_error();
    ck_assert_int_eq(rng_bad_call(i, g, f, p), STROP_E_INVALID_ARG);
    ck_assert_msg(strstr(strop_last_error(), needles[i]) != NULL,
                  "case %d: sentence '%s' lacks '%s'", i, strop_last_error(), needles[i]);
    for (int k = 0; k < 4; k++) ck_assert(f[k] == 0.0f && p[k] == 0); /* outputs untouched */
  }
  /* failed calls consumed nothing: g is still in step with its untouched twin */
  for (int i = 0; i < 16; i++) ck_assert_uint_eq(strop_rng_next_u32(g), strop_rng_next_u32(twin));
  strop_rng_free(g);
  strop_rng_free(twin);
  strop_rng_free(NULL);
}
END_TEST

static strop_rng *g_rng;
static int op_rng_create(void *ctx) {
  (void)ctx;
  return strop_rng_create(42, &g_rng);
}
static void free_rng(void *ctx) {
  (void)ctx;
  ck_assert_uint_eq(strop_rng_next_u32(g_rng), STROP_PCG32_SEED42[0]);
  strop_rng_free(g_rng);
  g_rng = NULL;
}

START_TEST(rng_alloc_failures) {
  ck_assert_int_ge(strop_test_alloc_sweep(op_rng_create, free_rng, NULL), 1);
  /* after a failed create, *out is NULL */
  strop_rng *g = (strop_rng *)&g;
  strop__alloc_fail_at(1);
  ck_assert_int_eq(strop_rng_create(1, &g), STROP_E_NOMEM);
  strop__alloc_fail_at(0);
  ck_assert_ptr_null(g);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_rng_create: out of memory"));
}
END_TEST

/* ----------------------------------------------------------------- threads */

START_TEST(threads_set_get) {
  ck_assert_int_ge(strop_get_num_threads(), 1);
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
  ck_assert_int_eq(strop_get_num_threads(), 1);
  ck_assert_int_eq(strop_set_num_threads(2), STROP_OK);
  ck_assert_int_eq(strop_get_num_threads(), 2);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  ck_assert_int_eq(strop_set_num_threads(0), STROP_OK);
  ck_assert_int_eq(strop_get_num_threads(), cpus < 1 ? 1 : cpus > 64 ? 64 : (int)cpus);
  /* more than the pool runs is taken as its 64 (INT_MAX grew a buffer per thread until
   * allocation failed); a forward then runs as with 64 */
  ck_assert_int_eq(strop_set_num_threads(INT_MAX), STROP_OK);
  ck_assert_int_eq(strop_get_num_threads(), 64);
  ck_assert_int_eq(strop_set_num_threads(100000), STROP_OK);
  ck_assert_int_eq(strop_get_num_threads(), 64);
  {
    const int64_t in[1] = {512};
    strop_model *m = NULL;
    ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
    ck_assert_int_eq(strop_model_add(m, "fc", "linear", "out_features=512", NULL), STROP_OK);
    ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
    const int64_t xs[2] = {256, 512};
    strop_tensor *x = NULL, *y = NULL;
    ck_assert_int_eq(strop_tensor_create(2, xs, &x), STROP_OK);
    ck_assert_int_eq(strop_tensor_fill(x, 0.5f), STROP_OK);
    ck_assert_int_eq(strop_model_forward(m, x, &y), STROP_OK);
    strop_tensor_free(y);
    strop_tensor_free(x);
    strop_model_free(m);
  }
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
  strop_clear_error();
  ck_assert_int_eq(strop_set_num_threads(-1), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(
      strstr(strop_last_error(), "strop_set_num_threads: n must be >= 0, got -1"));
  ck_assert_int_eq(strop_get_num_threads(), 1); /* unchanged by the failed call */
}
END_TEST

/* OpenBLAS's process-wide thread count is the host's: strop runs BLAS single-threaded inside
 * its own calls and leaves the host's setting as it found it (issue 17). */
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);

static void forward_once(strop_model *m) {
  float x[2 * 64];
  for (int i = 0; i < 128; i++) x[i] = (float)(i % 7) - 3.0f;
  int64_t d[2] = {2, 64};
  strop_tensor *in = NULL, *out = NULL;
  ck_assert_int_eq(strop_tensor_from_data(x, 128, 2, d, &in), STROP_OK);
  ck_assert_int_eq(strop_model_forward(m, in, &out), STROP_OK);
  strop_tensor_free(in);
  strop_tensor_free(out);
}

static void *section_on_a_thread(void *arg) {
  (void)arg;
  strop__blas_enter();
  int n = openblas_get_num_threads();
  strop__blas_leave();
  return n == 1 ? NULL : (void *)1;
}

START_TEST(blas_threads_left_as_the_host_set_them) {
  int64_t in = 64;
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, &in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc", "linear", "out_features=64", NULL), STROP_OK);
  ck_assert_int_eq(strop_model_finalize(m, 1), STROP_OK);
  const int was = openblas_get_num_threads();
  /* through OpenBLAS (impl 1) and through whatever the CPU picks (impl 0) */
  for (int impl = 1; impl >= 0; impl--) {
    strop__gemm_impl = impl;
    for (int host = 3; host >= 1; host--) { /* 3 first: before strop's first BLAS call */
      openblas_set_num_threads(host);
      forward_once(m);
      ck_assert_msg(openblas_get_num_threads() == host,
                    "impl %d: the host set %d OpenBLAS "
                    "threads, strop left %d",
                    impl, host, openblas_get_num_threads());
      forward_once(m); /* and again: not only the first call */
      ck_assert_int_eq(openblas_get_num_threads(), host);
    }
  }
  strop__gemm_impl = 0;
  /* inside a section it is 1; sections nest, and overlap across threads: the host's value
   * comes back when the last one closes */
  openblas_set_num_threads(2);
  strop__blas_enter();
  ck_assert_int_eq(openblas_get_num_threads(), 1);
  strop__blas_enter();
  strop__blas_leave();
  ck_assert_int_eq(openblas_get_num_threads(), 1);
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, section_on_a_thread, NULL), 0);
  void *seen = (void *)2;
  ck_assert_int_eq(pthread_join(th, &seen), 0);
  ck_assert_ptr_null(seen);                        /* 1 inside the other thread's section too */
  ck_assert_int_eq(openblas_get_num_threads(), 1); /* this thread's section is still open */
  strop__blas_leave();
  ck_assert_int_eq(openblas_get_num_threads(), 2);
  openblas_set_num_threads(was);
  strop_model_free(m);
}
END_TEST

/* -------------------------------------------------------------------- pool */

#include <stdatomic.h>

typedef struct cover_ctx {
  int64_t n;
  int chunks;
  _Atomic int *hits;     /* per item */
  _Atomic int calls[16]; /* per chunk */
  int64_t lo[16], hi[16];
} cover_ctx;

static void cover_fn(void *ctx, int64_t lo, int64_t hi, int chunk) {
  cover_ctx *c = ctx;
  atomic_fetch_add(&c->calls[chunk], 1);
  c->lo[chunk] = lo;
  c->hi[chunk] = hi;
  for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&c->hits[i], 1);
}

/* every item once, every chunk once, chunk c = [n c / chunks, n (c + 1) / chunks) */
START_TEST(pool_covers_every_item_once) {
  static const int64_t ns[] = {1, 2, 7, 64, 1000, 20011};
  for (int t = 1; t <= 4; t++) {
    ck_assert_int_eq(strop_set_num_threads(t), STROP_OK);
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
      for (int chunks = 1; chunks <= 9; chunks++) {
        cover_ctx c = {.n = ns[k], .chunks = chunks};
        c.hits = calloc((size_t)ns[k], sizeof *c.hits);
        ck_assert_ptr_nonnull(c.hits);
        strop__par_run(chunks, ns[k], cover_fn, &c);
        for (int64_t i = 0; i < ns[k]; i++) ck_assert_int_eq(c.hits[i], 1);
        int used = chunks > ns[k] ? (int)ns[k] : chunks;
        for (int ch = 0; ch < 16; ch++) {
          ck_assert_int_eq(c.calls[ch], ch < used ? 1 : 0);
          if (ch < used) {
            ck_assert_int_eq(c.lo[ch], ns[k] * ch / used);
            ck_assert_int_eq(c.hi[ch], ns[k] * (ch + 1) / used);
          }
        }
        free(c.hits);
      }
    }
  }
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

START_TEST(pool_chunk_counts) {
  ck_assert_int_eq(strop__par_chunks(1, 1000, 1), 1);
  ck_assert_int_eq(strop__par_chunks(4, 1000, 1), 4);
  ck_assert_int_eq(strop__par_chunks(4, 1000, 300), 3);
  ck_assert_int_eq(strop__par_chunks(4, 10, 300), 1);
  ck_assert_int_eq(strop__par_chunks(4, 0, 1), 1);
  ck_assert_int_eq(strop__par_chunks(0, 50, 1), 1);
  ck_assert_int_eq(strop__par_chunks(1000, 1000, 1), 64); /* the caller plus 63 workers */
}
END_TEST

typedef struct meet_ctx {
  _Atomic int started;
  pthread_t who[2];
} meet_ctx;

/* each chunk waits (up to ~10 s) for the other to start: both run at once on two threads */
static void meet_fn(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)lo;
  (void)hi;
  meet_ctx *m = ctx;
  m->who[chunk] = pthread_self();
  atomic_fetch_add(&m->started, 1);
  for (int i = 0; i < 10000 && atomic_load(&m->started) < 2; i++) usleep(1000);
}

START_TEST(pool_runs_chunks_on_two_threads) {
  ck_assert_int_eq(strop_set_num_threads(2), STROP_OK);
  for (int round = 0; round < 3; round++) {
    meet_ctx m = {0};
    strop__par_run(2, 2, meet_fn, &m);
    ck_assert_int_eq(atomic_load(&m.started), 2);
    ck_assert(!pthread_equal(m.who[0], m.who[1]));
  }
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

typedef struct nest_ctx {
  _Atomic int64_t sum;
} nest_ctx;

static void inner_fn(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  nest_ctx *c = ctx;
  for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&c->sum, i);
}

static void outer_fn(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  for (int64_t i = lo; i < hi; i++) strop__par_run(3, 100, inner_fn, ctx); /* nested: serial */
}

static void *host_thread(void *arg) {
  nest_ctx *c = arg;
  for (int k = 0; k < 200; k++) strop__par_run(4, 8, outer_fn, c);
  return NULL;
}

/* runs nested inside a run, and runs from several host threads at once, all complete with
 * every item counted once (the ones that find the pool busy go serially) */
START_TEST(pool_nested_and_concurrent_runs) {
  ck_assert_int_eq(strop_set_num_threads(2), STROP_OK);
  nest_ctx c[3] = {{0}, {0}, {0}};
  pthread_t t[3];
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, host_thread, &c[i]), 0);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(atomic_load(&c[i].sum), 200LL * 8 * 4950);
  ck_assert_int_eq(strop_set_num_threads(1), STROP_OK);
}
END_TEST

/* ------------------------------------------------------------------- arena */

static const size_t k_sizes[] = {1, 64, 100, 3000, 65, 700000, 7, 500000, 1 << 20, 33};
#define N_SIZES (sizeof k_sizes / sizeof k_sizes[0])

static void arena_round(strop__arena *a, void **ptrs) {
  for (size_t i = 0; i < N_SIZES; i++) {
    ptrs[i] = strop__arena_alloc(a, k_sizes[i]);
    ck_assert_ptr_nonnull(ptrs[i]);
    ck_assert_uint_eq((uintptr_t)ptrs[i] % 64, 0);
    memset(ptrs[i], (int)i, k_sizes[i]); /* ASan sees an overrun into the next block */
  }
  /* blocks never overlap: each still holds its own byte pattern */
  for (size_t i = 0; i < N_SIZES; i++) {
    const unsigned char *b = ptrs[i];
    ck_assert_uint_eq(b[0], (unsigned char)i);
    ck_assert_uint_eq(b[k_sizes[i] - 1], (unsigned char)i);
  }
}

START_TEST(arena_aligned_and_warm) {
  int64_t live0 = strop__alloc_live();
  strop__arena a;
  strop__arena_init(&a);
  void *ptrs[N_SIZES];
  arena_round(&a, ptrs);  /* cold: spills over several chunks */
  strop__arena_reset(&a); /* consolidates into one chunk of the peak size */
  int64_t count = strop__alloc_count();
  for (int step = 0; step < 5; step++) {
    arena_round(&a, ptrs);
    strop__arena_reset(&a);
    ck_assert_msg(strop__alloc_count() == count, "warm step %d allocated %lld times", step,
                  (long long)(strop__alloc_count() - count));
  }
  void *z = strop__arena_calloc(&a, 200);
  ck_assert_ptr_nonnull(z);
  for (int i = 0; i < 200; i++) ck_assert_uint_eq(((unsigned char *)z)[i], 0);
  strop__arena_destroy(&a);
  ck_assert_int_eq(strop__alloc_live(), live0);
  strop__arena_destroy(&a); /* destroying twice is harmless: destroy zeroes it */
  ck_assert_int_eq(strop__alloc_live(), live0);
}
END_TEST

/* A step that outgrows its chunk inside a scope it rolls back (a layer's scratch, the loss's
 * rows of a chunk) gives the grown chunk back at once; the reset then makes one chunk of the
 * step's peak, so the same step again allocates nothing and holds only that chunk, not the old
 * one and a grown one beside it. */
START_TEST(arena_rolled_back_growth_is_warm) {
  const int64_t live0 = strop__alloc_live();
  strop__arena a;
  strop__arena_init(&a);
  int64_t count = 0;
  for (int step = 0; step < 4; step++) {
    if (step == 2) count = strop__alloc_count();
    ck_assert_ptr_nonnull(strop__arena_alloc(&a, 600 << 10)); /* held to the step's end */
    const strop__arena_mark mk = strop__arena_get_mark(&a);
    unsigned char *big = strop__arena_alloc(&a, 900 << 10); /* does not fit beside it */
    ck_assert_ptr_nonnull(big);
    memset(big, 7, 900 << 10);
    strop__arena_rollback(&a, mk);
    strop__arena_reset(&a);
  }
  ck_assert_msg(strop__alloc_count() == count, "the warm steps allocated %lld times",
                (long long)(strop__alloc_count() - count));
  ck_assert_uint_eq(a.peak, (600 << 10) + (900 << 10));
  strop__arena_destroy(&a);
  ck_assert_int_eq(strop__alloc_live(), live0);
}
END_TEST

/* Blocks planned from their lifetimes: two blocks live at a common tick never share a byte,
 * offsets are 64-byte aligned, blocks that never meet share memory (a chain of blocks each
 * live over two ticks needs room for two of them), and the region is what its blocks reach. */
START_TEST(arena_plan_packs_by_lifetime) {
  strop__arena_block b[200];
  int placed[200];
  for (int i = 0; i < 8; i++) b[i] = (strop__arena_block){1000, i, i + 1, i, 0};
  ck_assert_uint_eq(strop__arena_plan(b, 8, placed), 2 * 1024);
  uint64_t r = 12345;
  for (int round = 0; round < 20; round++) {
    const int n = 1 + round * 10;
    for (int i = 0; i < n; i++) {
      r = r * 6364136223846793005ULL + 1442695040888963407ULL;
      const int first = (int)(r >> 40) % 50, len = (int)(r >> 20) % 12;
      b[i] = (strop__arena_block){(size_t)(r >> 50) % 5000 + (i % 7 == 0 ? 0 : 1), first,
                                  i % 11 == 0 ? INT_MAX : first + len, i, 0};
    }
    const size_t top = strop__arena_plan(b, n, placed);
    size_t reach = 0, live_most = 0;
    for (int i = 0; i < n; i++) {
      ck_assert_uint_eq(b[i].off % 64, 0);
      const size_t end = b[i].off + (b[i].bytes ? b[i].bytes : 1);
      if (end > reach) reach = end;
      size_t live = 0;
      for (int j = 0; j < n; j++) {
        if (b[j].first <= b[i].first && b[j].last >= b[i].first) live += b[j].bytes;
        if (j == i || b[j].last < b[i].first || b[j].first > b[i].last) continue;
        const size_t ej = b[j].off + (b[j].bytes ? b[j].bytes : 1);
        ck_assert_msg(end <= b[j].off || ej <= b[i].off,
                      "blocks %d [%zu, %zu) and %d [%zu, %zu) live together and overlap", b[i].id,
                      b[i].off, end, b[j].id, b[j].off, ej);
      }
      if (live > live_most) live_most = live;
    }
    ck_assert_uint_ge(top, reach);
    ck_assert_uint_ge(top, live_most);
    ck_assert_uint_le(top, reach + 64);
  }
  ck_assert_uint_eq(strop__arena_plan(b, 0, placed), 0);
}
END_TEST

START_TEST(arena_out_of_memory) {
  int64_t live0 = strop__alloc_live();
  strop__arena a;
  strop__arena_init(&a);
  for (int64_t n = 1; n <= 2; n++) {
    strop__alloc_fail_at(n); /* the chunk header, then its memory */
    ck_assert_ptr_null(strop__arena_alloc(&a, 128));
    strop__alloc_fail_at(0);
    ck_assert_int_eq(strop__alloc_live(), live0);
  }
  ck_assert_ptr_nonnull(strop__arena_alloc(&a, 128));
  ck_assert_ptr_null(strop__arena_alloc(&a, SIZE_MAX - 10)); /* rounding overflows */
  strop__arena_destroy(&a);
  ck_assert_int_eq(strop__alloc_live(), live0);
}
END_TEST

/* ----------------------------------------------------------------- version */

START_TEST(version_agrees) {
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", STROP_VERSION_MAJOR, STROP_VERSION_MINOR,
           STROP_VERSION_PATCH);
  ck_assert_ptr_nonnull(strop_version());
  ck_assert_str_eq(strop_version(), want);
  ck_assert_int_eq(strop_version_number(), STROP_VERSION_NUMBER);
  ck_assert_int_eq(STROP_VERSION_NUMBER,
                   STROP_VERSION_MAJOR * 10000 + STROP_VERSION_MINOR * 100 + STROP_VERSION_PATCH);
}
END_TEST

/* ---- the machine's memory limits ---- */

static void put(const char *root, const char *rel, const char *text) {
  char p[512], cmd[600];
  snprintf(p, sizeof p, "%s/%s", root, rel);
  snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", p);
  ck_assert_int_eq(system(cmd), 0);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  ck_assert_int_eq(fclose(f), 0);
}

/* strop_memory_available takes the lowest room among the cgroup (v2: the group and those above
 * it; v1), the rlimits and MemAvailable, and names it with its size; "max" and v1's huge
 * value are no limit; bad arguments are refused with the outputs untouched. Fixture trees
 * stand for /proc and /sys/fs/cgroup. */
START_TEST(memory_available_takes_the_lowest_limit) {
  char d[] = "/tmp/strop_memlimit_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(d));
  char proc[600], sys[600], src[96];
  snprintf(proc, sizeof proc, "%s/proc", d);
  snprintf(sys, sizeof sys, "%s/sys", d);
  size_t room = 0;
  /* MemAvailable alone */
  put(proc, "meminfo", "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n");
  put(proc, "self/status", "Name:\tx\nVmSize:\t  100000 kB\nVmData:\t  50000 kB\n");
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, src, sizeof src), STROP_OK);
  ck_assert_uint_eq(room, (size_t)20000000 * 1024);
  ck_assert_str_eq(src, "MemAvailable 20.48 GB");
  /* cgroup v2: the group's own limit and a lower one above it */
  put(proc, "self/cgroup", "0::/user.slice/job\n");
  put(sys, "user.slice/job/memory.max", "2000000000\n");
  put(sys, "user.slice/job/memory.current", "500000000\n");
  put(sys, "user.slice/memory.max", "max\n");
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, src, sizeof src), STROP_OK);
  ck_assert_uint_eq(room, 1500000000u);
  ck_assert_str_eq(src, "cgroup memory.max 2.00 GB");
  put(sys, "user.slice/memory.max", "1200000000\n");
  put(sys, "user.slice/memory.current", "1100000000\n");
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, src, sizeof src), STROP_OK);
  ck_assert_uint_eq(room, 100000000u);
  ck_assert_str_eq(src, "cgroup memory.max 1.20 GB");
  /* over the limit: no room */
  put(sys, "user.slice/memory.current", "1300000000\n");
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, src, sizeof src), STROP_OK);
  ck_assert_uint_eq(room, 0);
  /* cgroup v1: the memory controller's group; its "no limit" value is none */
  put(proc, "self/cgroup", "5:cpu,cpuacct:/a\n4:memory:/job\n");
  put(sys, "memory/job/memory.limit_in_bytes", "9223372036854771712\n");
  put(sys, "memory/job/memory.usage_in_bytes", "1000\n");
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, src, sizeof src), STROP_OK);
  ck_assert_str_eq(src, "MemAvailable 20.48 GB");
  put(sys, "memory/job/memory.limit_in_bytes", "3000000000\n");
  put(sys, "memory/job/memory.usage_in_bytes", "1000000000\n");
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, src, sizeof src), STROP_OK);
  ck_assert_uint_eq(room, 2000000000u);
  ck_assert_str_eq(src, "cgroup memory.limit_in_bytes 3.00 GB");
  /* a short source buffer is cut, not overrun */
  char small[8];
  ck_assert_int_eq(strop__memory_available_at(proc, sys, &room, small, sizeof small), STROP_OK);
  ck_assert_str_eq(small, "cgroup ");
  /* nothing readable: unsupported, with a sentence naming what was read; room untouched */
  char none[600];
  snprintf(none, sizeof none, "%s/nothing", d);
  room = 7;
  ck_assert_int_eq(strop__memory_available_at(none, none, &room, src, sizeof src),
                   STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "no memory limit could be read"));
  ck_assert_uint_eq(room, 7);
  /* the public call on this machine, and its bad arguments */
  ck_assert_int_eq(strop_memory_available(&room, src, sizeof src), STROP_OK);
  ck_assert_uint_gt(room, 0);
  ck_assert_uint_gt(strlen(src), 4);
  ck_assert_int_eq(strop_memory_available(&room, NULL, 0), STROP_OK);
  ck_assert_int_eq(strop_memory_available(NULL, src, sizeof src), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "bytes is NULL"));
  room = 9;
  ck_assert_int_eq(strop_memory_available(&room, NULL, 4), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "source is NULL"));
  ck_assert_uint_eq(room, 9);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", d);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("errors");
  tcase_add_test(tc, status_names);
  tcase_add_test(tc, last_error_thread_local);
  tcase_add_test(tc, last_error_never_null);
  tcase_add_test(tc, error_sentence_truncates);
  tcase_add_test(tc, error_prefix_names_each_function_once);
  suite_add_tcase(s, tc);
  tc = tcase_create("log");
  tcase_add_test(tc, log_silent_by_default);
  tcase_add_test(tc, log_handler_receives);
  tcase_add_test(tc, log_max_level_filters);
  tcase_add_test(tc, log_null_uninstalls);
  suite_add_tcase(s, tc);
  tc = tcase_create("rng");
  tcase_add_test(tc, rng_pinned_stream);
  tcase_add_test(tc, rng_same_seed_same_stream);
  tcase_add_test(tc, rng_uniform_stats);
  tcase_add_test(tc, rng_normal_stats);
  tcase_add_test(tc, rng_permutation);
  tcase_add_test(tc, rng_advance_equals_drawing);
  tcase_add_test(tc, rng_errors);
  tcase_add_test(tc, rng_alloc_failures);
  suite_add_tcase(s, tc);
  tc = tcase_create("threads");
  tcase_add_test(tc, threads_set_get);
  tcase_add_test(tc, blas_threads_left_as_the_host_set_them);
  tcase_add_test(tc, pool_covers_every_item_once);
  tcase_add_test(tc, pool_chunk_counts);
  tcase_add_test(tc, pool_runs_chunks_on_two_threads);
  tcase_add_test(tc, pool_nested_and_concurrent_runs);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tc = tcase_create("arena");
  tcase_add_test(tc, arena_aligned_and_warm);
  tcase_add_test(tc, arena_rolled_back_growth_is_warm);
  tcase_add_test(tc, arena_out_of_memory);
  tcase_add_test(tc, arena_plan_packs_by_lifetime);
  suite_add_tcase(s, tc);
  tc = tcase_create("memory");
  tcase_add_test(tc, memory_available_takes_the_lowest_limit);
  suite_add_tcase(s, tc);
  tc = tcase_create("version");
  tcase_add_test(tc, version_agrees);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
