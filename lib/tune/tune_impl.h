/* SPDX-License-Identifier: MIT */
/* strop — the tuner's private state, shared by the files of lib/tune: the search space, the
 * trials, the strategies' helpers and the Bayesian suggestion. */
#ifndef STROP_TUNE_IMPL_H
#define STROP_TUNE_IMPL_H

#include <pthread.h>
#include <stdio.h>

#include "core/core.h"
#include "core/settings.h"
#include "strop/tune.h"

/* Trial ids are below 2^53 (exact as doubles, far from overflowing when incremented): a
 * trials file holding a larger one is refused, and ask stops there. */
#define STROP__TUNE_MAX_ID ((int64_t)1 << 53)

typedef struct strop__tparam {
  char *name;
  int kind; /* strop_param_kind */
  int log;
  double lo, hi;  /* float and int bounds */
  char **choices; /* categorical */
  int64_t n_choices;
  int64_t col;  /* first column in the encoded (GP) space */
  double *grid; /* grid values (float/int) or NULL; built at the first grid ask */
  int64_t n_grid;
} strop__tparam;

typedef struct strop__tpoint {
  int64_t step;
  double value;
} strop__tpoint;

typedef struct strop__trial {
  int64_t id;
  int status;     /* strop_trial_status */
  double *values; /* per parameter: value, integer, or choice index */
  double value;   /* final value in the user's direction; NaN when failed/running */
  strop__tpoint *inter;
  int64_t n_inter, cap_inter;
  double t_start, seconds;
  int pruned;   /* the pruner said stop */
  int64_t rung; /* successive halving: next rung to reach */
  int64_t line; /* resume: the trials file's line it came from (a later one of the same
                          id replaces an interrupted one) */
} strop__trial;

struct strop_tuner {
  int strategy, direction;
  uint64_t seed;
  strop__tparam *params;
  int64_t n_params, cap_params;
  int64_t n_cols;       /* encoded dimensions */
  strop__trial *trials; /* ordered by id */
  int64_t n_trials, cap_trials;
  int64_t next_id;
  int frozen; /* space fixed (asked or resumed) */
  int exhausted;
  int running; /* strop_tuner_run active */
  /* knobs */
  int64_t n_initial, n_candidates, n_local, fit_restarts, grid_points, pruner;
  int64_t warmup_trials, warmup_steps, eta, min_resource, n_workers, fsync;
  double ei_xi, time_budget;
  /* GP hyperparameters of the last fit (warm start) */
  double *theta;
  int64_t n_theta;
  FILE *log;
  pthread_mutex_t mu;
};

/* Loss of a value in the user's direction: lower is better. */
static inline double strop__tune_loss(const strop_tuner *t, double v) {
  return t->direction == STROP_TUNE_MAXIMIZE ? -v : v;
}

/* The tuner's settings table (recipes and the docs generator read it). */
extern const strop__settings strop__tuner_settings;
/* Every knob to its default (tuner.c's settings table). */
void strop__tune_set_defaults(strop_tuner *t);
double strop__tune_now(void);
/* A double uniform in [0, 1) from 53 bits. */
double strop__tune_uniform(strop__rng *r);
/* Unit-space encoding of a float or int value, and its inverse (ints rounded). */
double strop__tune_to_unit(const strop__tparam *p, double v);
double strop__tune_from_unit(const strop__tparam *p, double u);
/* Encodes the values of one point (per parameter) to n_cols unit coordinates. */
void strop__tune_encode(const strop_tuner *t, const double *values, double *x);
/* Decodes n_cols coordinates (categorical: argmax of its block) to per-parameter values. */
void strop__tune_decode(const strop_tuner *t, const double *x, double *values);
/* The trial with this id, or NULL. */
strop__trial *strop__tune_find(const strop_tuner *t, int64_t id);
/* Random values of trial `id` (depend only on seed and id). */
void strop__tune_random_point(const strop_tuner *t, int64_t id, double *values);
/* The Bayesian suggestion for trial `id` (falls back to random with fewer than two
 * observations). Caller holds the mutex. */
strop_status strop__tune_suggest_bayes(strop_tuner *t, int64_t id, double *values);
/* Writes one finished trial as a JSON line to the log (if any). */
strop_status strop__tune_log_trial(strop_tuner *t, const strop__trial *tr);
/* Ask and tell with the mutex already held. */
strop_status strop__tune_ask_locked(strop_tuner *t, int64_t *trial_id);
strop_status strop__tune_tell_locked(strop_tuner *t, int64_t trial_id, double value, int status);
/* Appends a finished trial (resume); takes ownership of values and inter on success. */
strop_status strop__tune_push_trial(strop_tuner *t, const strop__trial *tr);
void strop__tune_trial_clear(strop__trial *tr);

#endif
