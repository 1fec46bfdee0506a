/* SPDX-License-Identifier: MIT */
/* strop — the tuner handle: search space, knobs, ask/report/tell, pruning and the grid and
 * random strategies. The Bayesian suggestion is in bayes.c, the trials file in trials.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/settings.h"
#include "strop/optim.h"
#include "tune/tune_impl.h"

#define LOCK(t) pthread_mutex_lock(&((strop_tuner *)(t))->mu)
#define UNLOCK(t) pthread_mutex_unlock(&((strop_tuner *)(t))->mu)

double strop__tune_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double strop__tune_uniform(strop__rng *r) {
  uint64_t hi = strop__rng_u32(r) >> 5, lo = strop__rng_u32(r) >> 6;
  return (double)(hi * 67108864u + lo) * (1.0 / 9007199254740992.0);
}

/* ---- create, free, space ---- */

strop_status strop_tuner_create(int strategy, uint64_t seed, int direction, strop_tuner **out) {
  if (out) *out = NULL;
  if (!out) return strop__err(STROP_E_INVALID_ARG, "strop_tuner_create: out is NULL");
  if (strategy < STROP_TUNE_GRID || strategy > STROP_TUNE_BAYES)
    return strop__err(STROP_E_INVALID_ARG,
                      "strop_tuner_create: unknown strategy %d (grid 0, "
                      "random 1, bayes 2)",
                      strategy);
  if (direction != STROP_TUNE_MINIMIZE && direction != STROP_TUNE_MAXIMIZE)
    return strop__err(STROP_E_INVALID_ARG,
                      "strop_tuner_create: direction must be minimize (0) "
                      "or maximize (1), got %d",
                      direction);
  strop_tuner *t = strop__calloc(1, sizeof *t);
  if (!t) return STROP__NOMEM("strop_tuner_create");
  if (pthread_mutex_init(&t->mu, NULL) != 0) {
    strop__free(t);
    return strop__err(STROP_E_INTERNAL, "strop_tuner_create: cannot create a mutex");
  }
  t->strategy = strategy;
  t->direction = direction;
  t->seed = seed;
  strop__tune_set_defaults(t);
  *out = t;
  return STROP_OK;
}

void strop__tune_trial_clear(strop__trial *tr) {
  strop__free(tr->values);
  strop__free(tr->inter);
  tr->values = NULL;
  tr->inter = NULL;
}

static void param_clear(strop__tparam *p) {
  strop__free(p->name);
  for (int64_t i = 0; i < p->n_choices; i++) strop__free(p->choices[i]);
  strop__free(p->choices);
  strop__free(p->grid);
}

void strop_tuner_free(strop_tuner *t) {
  if (!t) return;
  for (int64_t i = 0; i < t->n_params; i++) param_clear(&t->params[i]);
  strop__free(t->params);
  for (int64_t i = 0; i < t->n_trials; i++) strop__tune_trial_clear(&t->trials[i]);
  strop__free(t->trials);
  strop__free(t->theta);
  if (t->log) fclose(t->log);
  pthread_mutex_destroy(&t->mu);
  strop__free(t);
}

static int64_t param_index(const strop_tuner *t, const char *name) {
  for (int64_t i = 0; i < t->n_params; i++)
    if (strcmp(t->params[i].name, name) == 0) return i;
  return -1;
}

/* Checks shared by the add functions (mutex held). */
static strop_status add_check(const strop_tuner *t, const char *fn, const char *name, int log) {
  if (!name || !name[0]) return strop__err(STROP_E_INVALID_ARG, "%s: name is NULL or empty", fn);
  if (t->frozen)
    return strop__err(STROP_E_STATE,
                      "%s: '%s': the search space is fixed once trials were "
                      "asked for or resumed",
                      fn, name);
  if (param_index(t, name) >= 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: parameter '%s' already exists", fn, name);
  if (log != 0 && log != 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: '%s': log must be 0 or 1, got %d", fn, name, log);
  return STROP_OK;
}

/* Appends p (taking its allocations) or frees them on failure. */
static strop_status add_param(strop_tuner *t, const char *fn, strop__tparam *p) {
  if (t->n_params == t->cap_params) {
    int64_t cap = t->cap_params ? 2 * t->cap_params : 8;
    strop__tparam *np = strop__realloc(t->params, (size_t)cap * sizeof *np);
    if (!np) {
      param_clear(p);
      return STROP__NOMEM(fn);
    }
    t->params = np;
    t->cap_params = cap;
  }
  p->col = t->n_cols;
  t->n_cols += p->kind == STROP_PARAM_CATEGORICAL ? p->n_choices : 1;
  t->params[t->n_params++] = *p;
  return STROP_OK;
}

strop_status strop_tuner_add_float(strop_tuner *t, const char *name, double lo, double hi,
                                   int log) {
  static const char fn[] = "strop_tuner_add_float";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  LOCK(t);
  strop_status st = add_check(t, fn, name, log);
  if (st == STROP_OK && (!isfinite(lo) || !isfinite(hi)))
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': bounds must be finite, got [%g, %g]", fn,
                    name, lo, hi);
  if (st == STROP_OK && !(lo < hi))
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': lo must be < hi, got [%g, %g]", fn, name, lo,
                    hi);
  if (st == STROP_OK && log && !(lo > 0.0))
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': a log-scaled range needs lo > 0, got %g", fn,
                    name, lo);
  if (st == STROP_OK) {
    strop__tparam p;
    memset(&p, 0, sizeof p);
    p.kind = STROP_PARAM_FLOAT;
    p.log = log;
    p.lo = lo;
    p.hi = hi;
    p.name = strop__strdup(name);
    st = p.name ? add_param(t, fn, &p) : STROP__NOMEM(fn);
  }
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_add_int(strop_tuner *t, const char *name, int64_t lo, int64_t hi,
                                 int log) {
  static const char fn[] = "strop_tuner_add_int";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  LOCK(t);
  strop_status st = add_check(t, fn, name, log);
  const int64_t lim = (int64_t)1 << 52; /* exact as doubles */
  if (st == STROP_OK && (lo < -lim || hi > lim))
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: '%s': bounds must lie within +-2^52, got [%lld, "
                    "%lld]",
                    fn, name, (long long)lo, (long long)hi);
  if (st == STROP_OK && !(lo < hi))
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': lo must be < hi, got [%lld, %lld]", fn, name,
                    (long long)lo, (long long)hi);
  if (st == STROP_OK && log && lo < 1)
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: '%s': a log-scaled integer range needs lo >= 1, "
                    "got %lld",
                    fn, name, (long long)lo);
  if (st == STROP_OK) {
    strop__tparam p;
    memset(&p, 0, sizeof p);
    p.kind = STROP_PARAM_INT;
    p.log = log;
    p.lo = (double)lo;
    p.hi = (double)hi;
    p.name = strop__strdup(name);
    st = p.name ? add_param(t, fn, &p) : STROP__NOMEM(fn);
  }
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_add_categorical(strop_tuner *t, const char *name,
                                         const char *const *choices, int64_t n) {
  static const char fn[] = "strop_tuner_add_categorical";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  LOCK(t);
  strop_status st = add_check(t, fn, name, 0);
  if (st == STROP_OK && (n < 1 || n > 4096 || !choices))
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': needs 1 to 4096 choices, got %lld%s", fn,
                    name, (long long)n, choices ? "" : " (choices is NULL)");
  for (int64_t i = 0; st == STROP_OK && i < n; i++) {
    if (!choices[i] || !choices[i][0]) {
      st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': choice %lld is NULL or empty", fn, name,
                      (long long)i);
      break;
    }
    for (int64_t j = 0; j < i; j++)
      if (strcmp(choices[i], choices[j]) == 0) {
        st = strop__err(STROP_E_INVALID_ARG, "%s: '%s': choice '%s' is repeated", fn, name,
                        choices[i]);
        break;
      }
  }
  if (st == STROP_OK) {
    strop__tparam p;
    memset(&p, 0, sizeof p);
    p.kind = STROP_PARAM_CATEGORICAL;
    p.name = strop__strdup(name);
    p.choices = strop__calloc((size_t)n, sizeof *p.choices);
    int oom = !p.name || !p.choices;
    if (p.choices) {
      p.n_choices = n;
      for (int64_t i = 0; i < n && !oom; i++) oom = !(p.choices[i] = strop__strdup(choices[i]));
    }
    if (oom) {
      param_clear(&p);
      st = STROP__NOMEM(fn);
    } else {
      st = add_param(t, fn, &p);
    }
  }
  UNLOCK(t);
  return st;
}

int64_t strop_tuner_num_params(const strop_tuner *t) {
  if (!t) return -1;
  LOCK(t);
  int64_t n = t->n_params;
  UNLOCK(t);
  return n;
}

const char *strop_tuner_param_name(const strop_tuner *t, int64_t index) {
  if (!t) return NULL;
  LOCK(t);
  const char *s = index >= 0 && index < t->n_params ? t->params[index].name : NULL;
  UNLOCK(t);
  return s;
}

int strop_tuner_param_kind(const strop_tuner *t, int64_t index) {
  if (!t) return -1;
  LOCK(t);
  int k = index >= 0 && index < t->n_params ? t->params[index].kind : -1;
  UNLOCK(t);
  return k;
}

/* ---- knobs: declared once (see core/settings.h) ---- */

static const char *const PRUNER_WORDS[] = {"none", "median", "halving", NULL};

#define KNOB(k) [k] = {.key = k, .ident = #k, .kinds = 1
#define INT(lo_, hi_) .type = STROP__SET_INT, .lo = lo_, .hi = hi_
static const strop__setting KNOBS[] =
    {KNOB(STROP_TUNE_N_INITIAL), .name = "n_initial", .alias = "initial", INT(0, 1e9),
     .doc = "Random trials before the Gaussian process takes over (0: d + 1 in [5, 20])."},
                            KNOB(STROP_TUNE_N_CANDIDATES), .name = "n_candidates", INT(1, 1e7),
                            .def = 2000,
                            .doc =
                                "Random candidates scored by expected improvement per suggestion."
}
, KNOB(STROP_TUNE_N_LOCAL), .name = "n_local", INT(0, 1000), .def = 5,
                            .doc = "Best candidates refined by a coordinate search."
}
, KNOB(STROP_TUNE_FIT_RESTARTS),
    .name = "fit_restarts", INT(0, 100), .def = 2,
    .doc = "Random restarts of the kernel fit besides the warm start."
}
, KNOB(STROP_TUNE_EI_XI),
    .name = "ei_xi", .type = STROP__SET_FLOAT, .def = 0.01, .lo = 0, .hi = HUGE_VAL,
    .doc = "Expected-improvement margin, in standard deviations of the observed values."
}
, KNOB(STROP_TUNE_GRID_POINTS), .name = "grid_points", INT(2, 1e6), .def = 5,
                                .doc = "Grid values per float or int parameter."
}
, KNOB(STROP_TUNE_PRUNER), .name = "pruner", .alias = "prune", .type = STROP__SET_ENUM, .lo = 0,
                           .hi = 2, .words = PRUNER_WORDS,
                           .doc = "Early stopping of bad trials (a strop_tune_pruner)."
}
, KNOB(STROP_TUNE_PRUNE_WARMUP_TRIALS),
    .name = "prune_warmup_trials", INT(0, 1e9), .def = 5,
    .doc = "Median rule: finished trials needed before any pruning."
}
, KNOB(STROP_TUNE_PRUNE_WARMUP_STEPS), .name = "prune_warmup_steps", INT(0, 9.2e18),
                                       .doc = "Median rule: steps below this are never pruned."
}
, KNOB(STROP_TUNE_HALVING_ETA), .name = "halving_eta", INT(2, 1e6), .def = 3,
                                .doc = "Successive halving: the reduction factor between rungs."
}
, KNOB(STROP_TUNE_HALVING_MIN_RESOURCE), .name = "halving_min_resource", INT(1, 9.2e18), .def = 1,
                                         .doc = "Successive halving: the step of the first rung."
}
, KNOB(STROP_TUNE_N_WORKERS), .name = "n_workers", .alias = "workers", INT(1, 256), .def = 1,
                              .doc = "Trials strop_tuner_run() runs in parallel."
}
, KNOB(STROP_TUNE_FSYNC), .name = "fsync", .type = STROP__SET_FLAG, .lo = 0, .hi = 1,
                          .doc = "Flush the trials file to the disk after each line."
}
, KNOB(STROP_TUNE_TIME_BUDGET),
    .name = "time_budget", .alias = "time", .type = STROP__SET_FLOAT, .lo = 0, .hi = HUGE_VAL,
    .doc = "Seconds after which strop_tuner_run() starts no new trial; the running ones finish "
           "(0: no limit)."
}
,
}
;
#undef KNOB
#undef INT
#define N_KNOBS ((int)(sizeof KNOBS / sizeof KNOBS[0]))

const strop__settings strop__tuner_settings = {"tuner", NULL, 1, NULL, KNOBS, N_KNOBS};

static int64_t *int_knob(strop_tuner *t, int key) {
  switch (key) {
    case STROP_TUNE_N_INITIAL: return &t->n_initial;
    case STROP_TUNE_N_CANDIDATES: return &t->n_candidates;
    case STROP_TUNE_N_LOCAL: return &t->n_local;
    case STROP_TUNE_FIT_RESTARTS: return &t->fit_restarts;
    case STROP_TUNE_GRID_POINTS: return &t->grid_points;
    case STROP_TUNE_PRUNER: return &t->pruner;
    case STROP_TUNE_PRUNE_WARMUP_TRIALS: return &t->warmup_trials;
    case STROP_TUNE_PRUNE_WARMUP_STEPS: return &t->warmup_steps;
    case STROP_TUNE_HALVING_ETA: return &t->eta;
    case STROP_TUNE_HALVING_MIN_RESOURCE: return &t->min_resource;
    case STROP_TUNE_N_WORKERS: return &t->n_workers;
    case STROP_TUNE_FSYNC: return &t->fsync;
    default: return NULL;
  }
}

static double *float_knob(strop_tuner *t, int key) {
  return key == STROP_TUNE_EI_XI         ? &t->ei_xi
         : key == STROP_TUNE_TIME_BUDGET ? &t->time_budget
                                         : NULL;
}

/* Stores v in the field of key (an int knob's field holds it as an integer). */
static void knob_store(strop_tuner *t, int key, double v) {
  int64_t *p = int_knob(t, key);
  if (p) *p = (int64_t)v;
  else *float_knob(t, key) = v;
}

void strop__tune_set_defaults(strop_tuner *t) {
  double v[N_KNOBS];
  strop__settings_defaults(&strop__tuner_settings, 0, v);
  for (int k = 0; k < N_KNOBS; k++) knob_store(t, k, v[k]);
}

strop_status strop_tuner_knob_range(int key, double *lo, double *hi, int *flags) {
  return strop__settings_range(&strop__tuner_settings, "strop_tuner_knob_range", 0, key, lo, hi,
                               flags);
}

const char *strop_tuner_knob_name(int key) {
  return strop__settings_name(&strop__tuner_settings, key);
}

const char *strop_tuner_knob_doc(int key) {
  return strop__settings_doc(&strop__tuner_settings, key);
}

strop_status strop_tuner_knob_find(const char *name, int *key) {
  return strop__settings_find(&strop__tuner_settings, "strop_tuner_knob_find", name, key);
}

strop_status strop_tuner_knob_default(int key, double *value) {
  return strop__settings_default_of(&strop__tuner_settings, "strop_tuner_knob_default", 0, key,
                                    value);
}

strop_status strop_tuner_knob_parse(int key, const char *text, double *value) {
  return strop__settings_parse(&strop__tuner_settings, "strop_tuner_knob_parse", key, text,
                               value);
}

/* The one setter: the table checks knob and value (before the lock: it reads no state), then
 * the value is stored under the tuner's mutex. */
static strop_status set_knob(strop_tuner *t, const char *fn, int key, double v, int want) {
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  const strop__setting *s;
  strop_status st = strop__settings_lookup(&strop__tuner_settings, fn, 0, key, &s);
  if (!st) st = strop__settings_want(&strop__tuner_settings, fn, s, want, "set");
  if (!st) st = strop__setting_check(fn, s, 0, v);
  if (st) return st;
  LOCK(t);
  if (key == STROP_TUNE_N_WORKERS && t->running) {
    st = strop__err(STROP_E_STATE,
                    "%s: n_workers cannot change while strop_tuner_run is "
                    "running",
                    fn);
  } else {
    knob_store(t, key, v);
  }
  UNLOCK(t);
  return st;
}

static strop_status get_knob(const strop_tuner *t, const char *fn, int key, int want,
                             double *out) {
  if (!t || !out) return strop__err(STROP_E_INVALID_ARG, "%s: tuner or value is NULL", fn);
  const strop__setting *s;
  strop_status st = strop__settings_lookup(&strop__tuner_settings, fn, 0, key, &s);
  if (!st) st = strop__settings_want(&strop__tuner_settings, fn, s, want, "get");
  if (st) return st;
  LOCK(t);
  const int64_t *p = int_knob((strop_tuner *)t, key);
  *out = p ? (double)*p : *float_knob((strop_tuner *)t, key);
  UNLOCK(t);
  return STROP_OK;
}

strop_status strop_tuner_set_double(strop_tuner *t, int key, double value) {
  return set_knob(t, "strop_tuner_set_double", key, value, STROP__WANT_SCALAR);
}

strop_status strop_tuner_get_double(const strop_tuner *t, int key, double *value) {
  return get_knob(t, "strop_tuner_get_double", key, STROP__WANT_SCALAR, value);
}

strop_status strop_tuner_set_int(strop_tuner *t, int key, int64_t value) {
  return set_knob(t, "strop_tuner_set_int", key, (double)value, STROP__WANT_INT);
}

strop_status strop_tuner_set_float(strop_tuner *t, int key, double value) {
  return set_knob(t, "strop_tuner_set_float", key, value, STROP__WANT_FLOAT);
}

strop_status strop_tuner_get_int(const strop_tuner *t, int key, int64_t *value) {
  double v = 0.0;
  strop_status st = get_knob(t, "strop_tuner_get_int", key, STROP__WANT_INT, value ? &v : NULL);
  if (!st) *value = (int64_t)v;
  return st;
}

strop_status strop_tuner_get_float(const strop_tuner *t, int key, double *value) {
  return get_knob(t, "strop_tuner_get_float", key, STROP__WANT_FLOAT, value);
}

/* ---- encoding between values and the unit cube ---- */

/* Integer ranges map cells of width 1 onto [0, 1]: value v covers [v - 0.5, v + 0.5]. */
static void int_span(const strop__tparam *p, double *a, double *b) {
  if (p->log) {
    *a = log(p->lo - 0.5);
    *b = log(p->hi + 0.5);
  } else {
    *a = p->lo - 0.5;
    *b = p->hi + 0.5;
  }
}

double strop__tune_to_unit(const strop__tparam *p, double v) {
  double a, b, u;
  if (p->kind == STROP_PARAM_INT) {
    int_span(p, &a, &b);
    u = ((p->log ? log(v) : v) - a) / (b - a);
  } else if (p->log) {
    u = (log(v) - log(p->lo)) / (log(p->hi) - log(p->lo));
  } else {
    u = (v - p->lo) / (p->hi - p->lo);
  }
  return u < 0.0 ? 0.0 : u > 1.0 ? 1.0 : u;
}

double strop__tune_from_unit(const strop__tparam *p, double u) {
  u = u < 0.0 ? 0.0 : u > 1.0 ? 1.0 : u;
  double v;
  if (p->kind == STROP_PARAM_INT) {
    double a, b;
    int_span(p, &a, &b);
    double z = a + u * (b - a);
    v = floor((p->log ? exp(z) : z) + 0.5);
  } else if (p->log) {
    v = exp(log(p->lo) + u * (log(p->hi) - log(p->lo)));
  } else {
    v = p->lo + u * (p->hi - p->lo);
  }
  return v < p->lo ? p->lo : v > p->hi ? p->hi : v;
}

void strop__tune_encode(const strop_tuner *t, const double *values, double *x) {
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    if (p->kind == STROP_PARAM_CATEGORICAL) {
      for (int64_t c = 0; c < p->n_choices; c++)
        x[p->col + c] = c == (int64_t)values[i] ? 1.0 : 0.0;
    } else {
      x[p->col] = strop__tune_to_unit(p, values[i]);
    }
  }
}

void strop__tune_decode(const strop_tuner *t, const double *x, double *values) {
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    if (p->kind == STROP_PARAM_CATEGORICAL) {
      int64_t best = 0;
      for (int64_t c = 1; c < p->n_choices; c++)
        if (x[p->col + c] > x[p->col + best]) best = c;
      values[i] = (double)best;
    } else {
      values[i] = strop__tune_from_unit(p, x[p->col]);
    }
  }
}

void strop__tune_random_point(const strop_tuner *t, int64_t id, double *values) {
  strop__rng r;
  strop__rng_seed(&r, t->seed, (uint64_t)id);
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    if (p->kind == STROP_PARAM_CATEGORICAL)
      values[i] = (double)strop__rng_below(&r, (uint64_t)p->n_choices);
    else values[i] = strop__tune_from_unit(p, strop__tune_uniform(&r));
  }
}

/* ---- grid ---- */

/* Builds each parameter's grid values (once). */
static strop_status grid_build(strop_tuner *t) {
  for (int64_t i = 0; i < t->n_params; i++) {
    strop__tparam *p = &t->params[i];
    if (p->kind == STROP_PARAM_CATEGORICAL || p->grid) continue;
    int64_t k = t->grid_points;
    if (p->kind == STROP_PARAM_INT && p->hi - p->lo + 1.0 <= (double)k)
      k = (int64_t)(p->hi - p->lo) + 1;
    double *g = strop__malloc((size_t)k * sizeof *g);
    if (!g) return STROP__NOMEM("strop_tuner_ask");
    int64_t m = 0;
    for (int64_t j = 0; j < k; j++) {
      double f = (double)j / (double)(k - 1), v;
      if (p->kind == STROP_PARAM_INT && (int64_t)(p->hi - p->lo) + 1 == k) v = p->lo + (double)j;
      else if (p->log) v = j == k - 1 ? p->hi : exp(log(p->lo) + f * (log(p->hi) - log(p->lo)));
      else v = j == k - 1 ? p->hi : p->lo + f * (p->hi - p->lo);
      if (p->kind == STROP_PARAM_INT) v = floor(v + 0.5);
      if (m == 0 || v > g[m - 1]) g[m++] = v; /* rounded ints may repeat */
    }
    p->grid = g;
    p->n_grid = m;
  }
  return STROP_OK;
}

static int64_t grid_count(const strop__tparam *p) {
  return p->kind == STROP_PARAM_CATEGORICAL ? p->n_choices : p->n_grid;
}

static int64_t grid_total(const strop_tuner *t) {
  int64_t n = 1;
  for (int64_t i = 0; i < t->n_params; i++) {
    int64_t c = grid_count(&t->params[i]);
    if (c > 0 && n > INT64_MAX / c) return INT64_MAX;
    n *= c;
  }
  return n;
}

/* The grid index of a point, or -1 when it is not on the grid. Last parameter fastest. */
static int64_t grid_index_of(const strop_tuner *t, const double *values) {
  int64_t g = 0;
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    int64_t c = grid_count(p), j = -1;
    if (p->kind == STROP_PARAM_CATEGORICAL) {
      j = (int64_t)values[i];
    } else {
      for (int64_t k = 0; k < c; k++)
        if (fabs(p->grid[k] - values[i]) <= 1e-12 * fmax(1.0, fabs(p->grid[k]))) j = k;
    }
    if (j < 0) return -1;
    if (g > (INT64_MAX - j) / c) return -1;
    g = g * c + j;
  }
  return g;
}

static void grid_point(const strop_tuner *t, int64_t g, double *values) {
  for (int64_t i = t->n_params - 1; i >= 0; i--) {
    const strop__tparam *p = &t->params[i];
    int64_t c = grid_count(p), j = g % c;
    g /= c;
    values[i] = p->kind == STROP_PARAM_CATEGORICAL ? (double)j : p->grid[j];
  }
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* The lowest grid index held by no trial, or -1 when every point is taken. */
static strop_status grid_next(strop_tuner *t, int64_t *g_out) {
  strop_status st = grid_build(t);
  if (st != STROP_OK) return st;
  int64_t total = grid_total(t);
  int64_t *held = strop__malloc((size_t)t->n_trials * sizeof *held + 1);
  if (!held) return STROP__NOMEM("strop_tuner_ask");
  int64_t m = 0;
  for (int64_t i = 0; i < t->n_trials; i++) {
    int64_t g = grid_index_of(t, t->trials[i].values);
    if (g >= 0) held[m++] = g;
  }
  qsort(held, (size_t)m, sizeof *held, cmp_i64);
  int64_t g = 0;
  for (int64_t i = 0; i < m && held[i] <= g; i++)
    if (held[i] == g) g++;
  strop__free(held);
  *g_out = g < total ? g : -1;
  return STROP_OK;
}

int64_t strop_tuner_grid_size(const strop_tuner *t) {
  if (!t) return -1;
  LOCK(t);
  int64_t n = 1;
  for (int64_t i = 0; i < t->n_params; i++) {
    const strop__tparam *p = &t->params[i];
    int64_t c;
    if (p->kind == STROP_PARAM_CATEGORICAL) {
      c = p->n_choices;
    } else if (p->grid) {
      c = p->n_grid;
    } else if (p->kind == STROP_PARAM_INT && p->hi - p->lo + 1.0 <= (double)t->grid_points) {
      c = (int64_t)(p->hi - p->lo) + 1;
    } else if (p->kind == STROP_PARAM_INT) {
      /* rounding may merge neighbours: count the distinct values */
      int64_t k = t->grid_points, cnt = 0;
      double prev = -HUGE_VAL;
      for (int64_t j = 0; j < k; j++) {
        double f = (double)j / (double)(k - 1);
        double v = j == k - 1 ? p->hi
                   : p->log   ? exp(log(p->lo) + f * (log(p->hi) - log(p->lo)))
                              : p->lo + f * (p->hi - p->lo);
        v = floor(v + 0.5);
        if (v > prev) cnt++;
        prev = v;
      }
      c = cnt;
    } else {
      c = t->grid_points;
    }
    if (n > INT64_MAX / c) {
      n = INT64_MAX;
      break;
    }
    n *= c;
  }
  UNLOCK(t);
  return n;
}

int strop_tuner_is_exhausted(const strop_tuner *t) {
  if (!t) return 0;
  LOCK(t);
  int e = t->exhausted;
  UNLOCK(t);
  return e;
}

/* ---- trials ---- */

strop__trial *strop__tune_find(const strop_tuner *t, int64_t id) {
  int64_t lo = 0, hi = t->n_trials - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (t->trials[mid].id == id) return &t->trials[mid];
    if (t->trials[mid].id < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

static strop_status reserve_trial(strop_tuner *t, const char *fn) {
  if (t->n_trials < t->cap_trials) return STROP_OK;
  int64_t cap = t->cap_trials ? 2 * t->cap_trials : 16;
  strop__trial *nt = strop__realloc(t->trials, (size_t)cap * sizeof *nt);
  if (!nt) return STROP__NOMEM(fn);
  t->trials = nt;
  t->cap_trials = cap;
  return STROP_OK;
}

strop_status strop__tune_push_trial(strop_tuner *t, const strop__trial *tr) {
  strop_status st = reserve_trial(t, "strop_tuner_resume");
  if (st != STROP_OK) return st;
  t->trials[t->n_trials++] = *tr;
  if (tr->id >= t->next_id) t->next_id = tr->id + 1;
  return STROP_OK;
}

/* Gives an interrupted trial again (the lowest id): running, from its first step. 1 if one
 * was found. */
static int reask_interrupted(strop_tuner *t, int64_t *trial_id) {
  for (int64_t i = 0; i < t->n_trials; i++) {
    strop__trial *tr = &t->trials[i];
    if (tr->status != STROP_TRIAL_INTERRUPTED) continue;
    tr->status = STROP_TRIAL_RUNNING;
    tr->value = NAN;
    tr->n_inter = 0;
    tr->pruned = 0;
    tr->rung = 0;
    tr->seconds = 0.0;
    tr->t_start = strop__tune_now();
    *trial_id = tr->id;
    return 1;
  }
  return 0;
}

strop_status strop__tune_ask_locked(strop_tuner *t, int64_t *trial_id) {
  static const char fn[] = "strop_tuner_ask";
  if (t->n_params == 0)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the search space is empty; add a parameter "
                      "first",
                      fn);
  if (reask_interrupted(t, trial_id)) {
    t->frozen = 1;
    return STROP_OK;
  }
  if (t->exhausted)
    return strop__err(STROP_E_STATE,
                      "%s: the grid is exhausted: all %lld points were asked "
                      "for",
                      fn, (long long)grid_total(t));
  if (t->next_id >= STROP__TUNE_MAX_ID)
    return strop__err(STROP_E_STATE, "%s: trial ids are exhausted (the next would be %lld)", fn,
                      (long long)t->next_id);
  strop_status st = reserve_trial(t, fn);
  if (st != STROP_OK) return st;
  double *values = strop__malloc((size_t)t->n_params * sizeof *values);
  if (!values) return STROP__NOMEM(fn);
  int64_t id = t->next_id;
  if (t->strategy == STROP_TUNE_GRID) {
    int64_t g = -1;
    st = grid_next(t, &g);
    if (st == STROP_OK && g < 0) {
      t->exhausted = 1;
      st = strop__err(STROP_E_STATE,
                      "%s: the grid is exhausted: all %lld points were asked "
                      "for",
                      fn, (long long)grid_total(t));
    }
    if (st == STROP_OK) grid_point(t, g, values);
  } else if (t->strategy == STROP_TUNE_RANDOM) {
    strop__tune_random_point(t, id, values);
  } else {
    st = strop__tune_suggest_bayes(t, id, values);
  }
  if (st != STROP_OK) {
    strop__free(values);
    return st;
  }
  strop__trial *tr = &t->trials[t->n_trials++];
  memset(tr, 0, sizeof *tr);
  tr->id = id;
  tr->status = STROP_TRIAL_RUNNING;
  tr->values = values;
  tr->value = NAN;
  tr->t_start = strop__tune_now();
  t->next_id = id + 1;
  t->frozen = 1;
  *trial_id = id;
  return STROP_OK;
}

strop_status strop_tuner_ask(strop_tuner *t, int64_t *trial_id) {
  if (!t || !trial_id)
    return strop__err(STROP_E_INVALID_ARG, "strop_tuner_ask: tuner or trial_id is NULL");
  LOCK(t);
  strop_status st = strop__tune_ask_locked(t, trial_id);
  UNLOCK(t);
  return st;
}

static strop_status find_trial(const strop_tuner *t, const char *fn, int64_t id,
                               strop__trial **out) {
  *out = strop__tune_find(t, id);
  if (!*out) return strop__err(STROP_E_NOT_FOUND, "%s: no trial with id %lld", fn, (long long)id);
  return STROP_OK;
}

/* Trial and parameter by name (mutex held). */
static strop_status trial_param(const strop_tuner *t, const char *fn, int64_t id,
                                const char *name, strop__trial **tr, int64_t *pi) {
  if (!name) return strop__err(STROP_E_INVALID_ARG, "%s: name is NULL", fn);
  strop_status st = find_trial(t, fn, id, tr);
  if (st != STROP_OK) return st;
  *pi = param_index(t, name);
  if (*pi < 0) return strop__err(STROP_E_NOT_FOUND, "%s: no parameter named '%s'", fn, name);
  return STROP_OK;
}

strop_status strop_tuner_trial_float(const strop_tuner *t, int64_t trial_id, const char *name,
                                     double *value) {
  static const char fn[] = "strop_tuner_trial_float";
  if (!t || !value) return strop__err(STROP_E_INVALID_ARG, "%s: tuner or value is NULL", fn);
  LOCK(t);
  strop__trial *tr;
  int64_t pi;
  strop_status st = trial_param(t, fn, trial_id, name, &tr, &pi);
  if (st == STROP_OK && t->params[pi].kind == STROP_PARAM_CATEGORICAL)
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: '%s' is categorical; use "
                    "strop_tuner_trial_categorical",
                    fn, name);
  if (st == STROP_OK) *value = tr->values[pi];
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_trial_int(const strop_tuner *t, int64_t trial_id, const char *name,
                                   int64_t *value) {
  static const char fn[] = "strop_tuner_trial_int";
  if (!t || !value) return strop__err(STROP_E_INVALID_ARG, "%s: tuner or value is NULL", fn);
  LOCK(t);
  strop__trial *tr;
  int64_t pi;
  strop_status st = trial_param(t, fn, trial_id, name, &tr, &pi);
  if (st == STROP_OK && t->params[pi].kind != STROP_PARAM_INT)
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s' is not an int parameter", fn, name);
  if (st == STROP_OK) *value = (int64_t)tr->values[pi];
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_trial_categorical(const strop_tuner *t, int64_t trial_id,
                                           const char *name, int64_t *index, char *buf,
                                           size_t cap, size_t *len) {
  static const char fn[] = "strop_tuner_trial_categorical";
  if (!t || (!buf && cap > 0))
    return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL, or buf is NULL with cap %zu", fn,
                      cap);
  LOCK(t);
  strop__trial *tr;
  int64_t pi;
  strop_status st = trial_param(t, fn, trial_id, name, &tr, &pi);
  if (st == STROP_OK && t->params[pi].kind != STROP_PARAM_CATEGORICAL)
    st = strop__err(STROP_E_INVALID_ARG, "%s: '%s' is not categorical", fn, name);
  if (st == STROP_OK) {
    int64_t c = (int64_t)tr->values[pi];
    const char *s = t->params[pi].choices[c];
    size_t n = strlen(s);
    if (index) *index = c;
    if (len) *len = n;
    if (cap > 0) {
      size_t k = n < cap - 1 ? n : cap - 1;
      memcpy(buf, s, k);
      buf[k] = '\0';
    }
  }
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_trial_value(const strop_tuner *t, int64_t trial_id, int64_t param,
                                     double *value) {
  static const char fn[] = "strop_tuner_trial_value";
  if (!t || !value) return strop__err(STROP_E_INVALID_ARG, "%s: tuner or value is NULL", fn);
  LOCK(t);
  strop__trial *tr;
  strop_status st = find_trial(t, fn, trial_id, &tr);
  if (st == STROP_OK && (param < 0 || param >= t->n_params))
    st = strop__err(STROP_E_INVALID_ARG, "%s: parameter index %lld out of range [0, %lld)", fn,
                    (long long)param, (long long)t->n_params);
  if (st == STROP_OK) *value = tr->values[param];
  UNLOCK(t);
  return st;
}

/* ---- pruning ---- */

/* The value (as a loss) a trial reported at exactly `step`; 0 if none. */
static int loss_at(const strop_tuner *t, const strop__trial *tr, int64_t step, double *out) {
  int64_t lo = 0, hi = tr->n_inter - 1;
  while (lo <= hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (tr->inter[mid].step == step) {
      *out = strop__tune_loss(t, tr->inter[mid].value);
      return 1;
    }
    if (tr->inter[mid].step < step) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static strop_status prune_median(const strop_tuner *t, int64_t step, double loss, int *prune) {
  if (step < t->warmup_steps) return STROP_OK;
  int64_t done = 0;
  for (int64_t i = 0; i < t->n_trials; i++) done += t->trials[i].status == STROP_TRIAL_OK;
  if (done < t->warmup_trials || done == 0) return STROP_OK;
  double *v = strop__malloc((size_t)done * sizeof *v);
  if (!v) return STROP__NOMEM("strop_tuner_report");
  int64_t m = 0;
  for (int64_t i = 0; i < t->n_trials; i++)
    if (t->trials[i].status == STROP_TRIAL_OK && loss_at(t, &t->trials[i], step, &v[m])) m++;
  if (m > 0) {
    qsort(v, (size_t)m, sizeof *v, cmp_d);
    double med = m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
    *prune = loss > med;
  }
  strop__free(v);
  return STROP_OK;
}

/* Resource of rung r: min_resource * eta^r (saturating). */
static int64_t rung_resource(const strop_tuner *t, int64_t r) {
  int64_t v = t->min_resource;
  for (int64_t i = 0; i < r; i++) {
    if (v > INT64_MAX / t->eta) return INT64_MAX;
    v *= t->eta;
  }
  return v;
}

/* Value (as a loss) of a trial at resource r: its first report with step >= r; 0 if none. */
static int loss_at_resource(const strop_tuner *t, const strop__trial *tr, int64_t r,
                            double *out) {
  int64_t lo = 0, hi = tr->n_inter;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (tr->inter[mid].step < r) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= tr->n_inter) return 0;
  *out = strop__tune_loss(t, tr->inter[lo].value);
  return 1;
}

/* Asynchronous successive halving. The rung values are read from every trial's reports, so
 * they survive a resume and need no bookkeeping of their own. */
static void prune_halving(const strop_tuner *t, strop__trial *tr, int64_t step, double loss,
                          int *prune) {
  for (;;) {
    int64_t res = rung_resource(t, tr->rung);
    if (step < res) return;
    int64_t m = 1, better = 0;
    for (int64_t i = 0; i < t->n_trials; i++) {
      double l;
      if (&t->trials[i] != tr && loss_at_resource(t, &t->trials[i], res, &l)) {
        m++;
        better += l < loss;
      }
    }
    tr->rung++;
    int64_t keep = m / t->eta > 1 ? m / t->eta : 1;
    if (better >= keep) {
      *prune = 1;
      return;
    }
    if (res == INT64_MAX) return;
  }
}

strop_status strop_tuner_report(strop_tuner *t, int64_t trial_id, int64_t step, double value,
                                int *prune) {
  static const char fn[] = "strop_tuner_report";
  if (prune) *prune = 0;
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  LOCK(t);
  strop__trial *tr;
  strop_status st = find_trial(t, fn, trial_id, &tr);
  if (st == STROP_OK && tr->status != STROP_TRIAL_RUNNING)
    st = strop__err(STROP_E_STATE, "%s: trial %lld was already told", fn, (long long)trial_id);
  if (st == STROP_OK && !isfinite(value))
    st = strop__err(STROP_E_INVALID_ARG, "%s: trial %lld: value at step %lld is not finite", fn,
                    (long long)trial_id, (long long)step);
  if (st == STROP_OK && tr->n_inter > 0 && step <= tr->inter[tr->n_inter - 1].step)
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: trial %lld: step %lld does not increase (last "
                    "was %lld)",
                    fn, (long long)trial_id, (long long)step,
                    (long long)tr->inter[tr->n_inter - 1].step);
  if (st == STROP_OK && tr->n_inter == tr->cap_inter) {
    int64_t cap = tr->cap_inter ? 2 * tr->cap_inter : 8;
    strop__tpoint *p = strop__realloc(tr->inter, (size_t)cap * sizeof *p);
    if (!p) st = STROP__NOMEM(fn);
    else {
      tr->inter = p;
      tr->cap_inter = cap;
    }
  }
  int decide = 0;
  if (st == STROP_OK) {
    double loss = strop__tune_loss(t, value);
    if (t->pruner == STROP_PRUNER_MEDIAN) st = prune_median(t, step, loss, &decide);
    else if (t->pruner == STROP_PRUNER_HALVING && !tr->pruned)
      prune_halving(t, tr, step, loss, &decide);
  }
  if (st == STROP_OK) {
    tr->inter[tr->n_inter].step = step;
    tr->inter[tr->n_inter].value = value;
    tr->n_inter++;
    tr->pruned |= decide;
    if (prune) *prune = tr->pruned;
  }
  UNLOCK(t);
  return st;
}

/* ---- tell, best, results ---- */

strop_status strop__tune_tell_locked(strop_tuner *t, int64_t trial_id, double value, int status) {
  static const char fn[] = "strop_tuner_tell";
  if (status != STROP_TRIAL_OK && status != STROP_TRIAL_FAILED && status != STROP_TRIAL_PRUNED &&
      status != STROP_TRIAL_INTERRUPTED)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: trial %lld: status must be ok (0), failed (1), "
                      "pruned (2) or interrupted (4), got %d",
                      fn, (long long)trial_id, status);
  strop__trial *tr;
  strop_status st = find_trial(t, fn, trial_id, &tr);
  if (st != STROP_OK) return st;
  if (tr->status != STROP_TRIAL_RUNNING)
    return strop__err(STROP_E_STATE, "%s: trial %lld was already told", fn, (long long)trial_id);
  if (status == STROP_TRIAL_PRUNED && isnan(value) && tr->n_inter > 0)
    value = tr->inter[tr->n_inter - 1].value;
  if (!isfinite(value) && status != STROP_TRIAL_FAILED && status != STROP_TRIAL_INTERRUPTED)
    status = STROP_TRIAL_FAILED;
  tr->status = status;
  tr->value = status == STROP_TRIAL_FAILED || status == STROP_TRIAL_INTERRUPTED ? NAN : value;
  tr->seconds = strop__tune_now() - tr->t_start;
  return strop__tune_log_trial(t, tr);
}

strop_status strop_tuner_tell(strop_tuner *t, int64_t trial_id, double value, int status) {
  if (!t) return strop__err(STROP_E_INVALID_ARG, "strop_tuner_tell: tuner is NULL");
  LOCK(t);
  strop_status st = strop__tune_tell_locked(t, trial_id, value, status);
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_best(const strop_tuner *t, int64_t *trial_id, double *value) {
  if (!t) return strop__err(STROP_E_INVALID_ARG, "strop_tuner_best: tuner is NULL");
  LOCK(t);
  const strop__trial *best = NULL;
  for (int64_t i = 0; i < t->n_trials; i++) {
    const strop__trial *tr = &t->trials[i];
    if (tr->status == STROP_TRIAL_OK &&
        (!best || strop__tune_loss(t, tr->value) < strop__tune_loss(t, best->value)))
      best = tr;
  }
  strop_status st = STROP_OK;
  if (!best) {
    st = strop__err(STROP_E_STATE, "strop_tuner_best: no trial has finished ok yet");
  } else {
    if (trial_id) *trial_id = best->id;
    if (value) *value = best->value;
  }
  UNLOCK(t);
  return st;
}

int64_t strop_tuner_num_trials(const strop_tuner *t) {
  if (!t) return -1;
  LOCK(t);
  int64_t n = t->n_trials;
  UNLOCK(t);
  return n;
}

int64_t strop_tuner_trial_id(const strop_tuner *t, int64_t index) {
  if (!t) return -1;
  LOCK(t);
  int64_t id = index >= 0 && index < t->n_trials ? t->trials[index].id : -1;
  UNLOCK(t);
  return id;
}

strop_status strop_tuner_trial_result(const strop_tuner *t, int64_t trial_id, int *status,
                                      double *value, double *seconds, int64_t *n_reports) {
  static const char fn[] = "strop_tuner_trial_result";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  LOCK(t);
  strop__trial *tr;
  strop_status st = find_trial(t, fn, trial_id, &tr);
  if (st == STROP_OK) {
    if (status) *status = tr->status;
    if (value) *value = tr->value;
    if (seconds) *seconds = tr->status == STROP_TRIAL_RUNNING ? 0.0 : tr->seconds;
    if (n_reports) *n_reports = tr->n_inter;
  }
  UNLOCK(t);
  return st;
}

strop_status strop_tuner_trial_report_at(const strop_tuner *t, int64_t trial_id, int64_t index,
                                         int64_t *step, double *value) {
  static const char fn[] = "strop_tuner_trial_report_at";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: tuner is NULL", fn);
  LOCK(t);
  strop__trial *tr;
  strop_status st = find_trial(t, fn, trial_id, &tr);
  if (st == STROP_OK && (index < 0 || index >= tr->n_inter))
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: trial %lld: report index %lld out of range [0, "
                    "%lld)",
                    fn, (long long)trial_id, (long long)index, (long long)tr->n_inter);
  if (st == STROP_OK) {
    if (step) *step = tr->inter[index].step;
    if (value) *value = tr->inter[index].value;
  }
  UNLOCK(t);
  return st;
}
