/* SPDX-License-Identifier: MIT */
/* strop — hyperparameter search: a search space of named recipe values, grid, random and
 * Bayesian (Gaussian-process) strategies, ask/tell, pruning of bad trials, a trials file. */
#ifndef STROP_TUNE_H
#define STROP_TUNE_H

#include "common.h"
#include "error.h"

/**
 * @file tune.h
 * @brief Hyperparameter search: grid, random, Bayesian; ask and tell; pruning; trials files.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief A hyperparameter search: its space, strategy, trials and their results.
 *
 * Parameters are named by the recipe key path they set ("optimizer.lr", "data.batch_size",
 * "stages[1].epochs"); the tuner itself never interprets the names. Trials are driven by the
 * host (strop_tuner_ask() ... strop_tuner_tell()) or by strop_tuner_run() with a callback.
 *
 * Thread safety: every function that takes a tuner locks the tuner's own mutex, so the
 * trial calls (ask, the trial getters, report, tell) may come from several threads at once
 * — strop_tuner_run() with STROP_TUNE_N_WORKERS > 1 relies on that. strop_tuner_free() must
 * not race with any other call. @since 0.1
 */
typedef struct strop_tuner strop_tuner;

/** @brief Search strategies of strop_tuner_create(). @since 0.1 */
typedef enum strop_tune_strategy {
  STROP_TUNE_GRID = 0,   /**< Full factorial in a fixed order: the last parameter varies
                              fastest; each float/int gets STROP_TUNE_GRID_POINTS evenly
                              spaced values (geometrically spaced when log). */
  STROP_TUNE_RANDOM = 1, /**< Independent uniform draws (log-uniform where log), seeded: the
                              values of trial i depend only on (seed, i). */
  STROP_TUNE_BAYES = 2   /**< Gaussian-process Bayesian optimisation with expected
                              improvement, after STROP_TUNE_N_INITIAL random trials. */
} strop_tune_strategy;

/** @brief Whether lower or higher values are better. @since 0.1 */
typedef enum strop_tune_direction {
  STROP_TUNE_MINIMIZE = 0, /**< Lower is better (a loss). */
  STROP_TUNE_MAXIMIZE = 1  /**< Higher is better (an accuracy). */
} strop_tune_direction;

/** @brief Kinds of search parameters. @since 0.1 */
typedef enum strop_param_kind {
  STROP_PARAM_FLOAT = 0,      /**< A double in [lo, hi], uniform or log-uniform. */
  STROP_PARAM_INT = 1,        /**< An integer in [lo, hi], uniform or log-uniform. */
  STROP_PARAM_CATEGORICAL = 2 /**< One of a list of strings. */
} strop_param_kind;

/**
 * @brief The state of a trial. A trial callback of strop_tuner_run() returns one of the
 * first three. @since 0.1
 */
typedef enum strop_trial_status {
  STROP_TRIAL_OK = 0,         /**< Finished with a value. */
  STROP_TRIAL_FAILED = 1,     /**< Failed (divergence, numeric error...): recorded, no value. */
  STROP_TRIAL_PRUNED = 2,     /**< Stopped early by the pruner (or the host). */
  STROP_TRIAL_RUNNING = 3,    /**< Asked for and not yet told. */
  STROP_TRIAL_INTERRUPTED = 4 /**< Stopped by the host before it finished (Ctrl-C, a time
                                   limit): no value, not an observation; the next ask (also
                                   after a resume) gives it again. @since 0.2 */
} strop_trial_status;

/** @brief Early-stopping rules of ::STROP_TUNE_PRUNER. @since 0.1 */
typedef enum strop_tune_pruner {
  STROP_PRUNER_NONE = 0,   /**< Never prune. */
  STROP_PRUNER_MEDIAN = 1, /**< Prune when the value at step k is worse than the median of
                                 the finished (ok) trials' values at step k. */
  STROP_PRUNER_HALVING = 2 /**< Asynchronous successive halving: at resource
                                 min_resource * eta^r (rung r) a trial goes on only if its
                                 value is in the best 1/eta of the values seen at that rung. */
} strop_tune_pruner;

/**
 * @brief Tuner knobs, for strop_tuner_set_double() (and _set_int / _set_float). Defaults in
 * brackets; ranges, defaults and docs from strop_tuner_knob_range(), _knob_default() and
 * _knob_doc() (docs/tune.md's table is generated from them). Values are fixed and the list
 * only grows. @since 0.1
 */
typedef enum strop_tune_knob {
  STROP_TUNE_N_INITIAL = 0,             /**< int >= 0: random trials before the GP takes over
                                        (Bayes) [0 = automatic: d+1 clamped to [5, 20],
                                        d = encoded dimensions]. */
  STROP_TUNE_N_CANDIDATES = 1,          /**< int >= 1: random candidates scored by expected
                                        improvement per suggestion [2000]. */
  STROP_TUNE_N_LOCAL = 2,               /**< int >= 0: best candidates refined by coordinate
                                        search [5]. */
  STROP_TUNE_FIT_RESTARTS = 3,          /**< int >= 0: random restarts of the kernel fit besides
                                        the warm start from the previous fit [2]. */
  STROP_TUNE_EI_XI = 4,                 /**< float >= 0: expected-improvement margin in standard
                                        deviations of the observed values [0.01]. */
  STROP_TUNE_GRID_POINTS = 5,           /**< int >= 2: grid values per float/int parameter [5]. */
  STROP_TUNE_PRUNER = 6,                /**< int: a strop_tune_pruner [none]. */
  STROP_TUNE_PRUNE_WARMUP_TRIALS = 7,   /**< int >= 0: median rule: finished trials needed
                                        before any pruning [5]. */
  STROP_TUNE_PRUNE_WARMUP_STEPS = 8,    /**< int >= 0: median rule: steps below this are never
                                        pruned [0]. */
  STROP_TUNE_HALVING_ETA = 9,           /**< int >= 2: successive-halving reduction factor [3]. */
  STROP_TUNE_HALVING_MIN_RESOURCE = 10, /**< int >= 1: step of the first rung [1]. */
  STROP_TUNE_N_WORKERS = 11,  /**< int >= 1: parallel trials in strop_tuner_run() [1]. */
  STROP_TUNE_FSYNC = 12,      /**< int 0/1: fsync the trials file after each line [0]. */
  STROP_TUNE_TIME_BUDGET = 13 /**< float >= 0: seconds after which strop_tuner_run()
                                        starts no new trial (the running ones finish)
                                        [0 = no limit]. @since 0.2 */
} strop_tune_knob;

/**
 * @brief Creates an empty search.
 * @param[in]  strategy  A ::strop_tune_strategy.
 * @param[in]  seed      Seeds every random choice: equal seeds and equal results give equal
 *                       trials.
 * @param[in]  direction A ::strop_tune_direction.
 * @param[out] out       The tuner, owned by the caller (strop_tuner_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown strategy or direction); STROP_E_NOMEM.
 *         Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_create(int strategy, uint64_t seed,
                                                          int direction, strop_tuner **out);

/**
 * @brief Frees the tuner and closes its trials file. Must not race with any other call on the
 *        tuner.
 * @param[in] t The tuner, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_tuner_free(strop_tuner *t);

/**
 * @brief Adds a float parameter in [lo, hi], uniform, or log-uniform when @p log is 1.
 * @param[in,out] t    The tuner; unchanged on error.
 * @param[in]     name The recipe key path (copied); unique within the tuner.
 * @param[in]     lo   Lower bound, finite (> 0 with @p log).
 * @param[in]     hi   Upper bound, finite, > @p lo.
 * @param[in]     log  1 for log-uniform, 0 for uniform.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or empty name, duplicate name, non-finite
 *         bounds, lo >= hi, log with lo <= 0, log not 0/1); STROP_E_STATE (trials were already
 *         asked for or resumed); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_add_float(strop_tuner *t, const char *name,
                                                             double lo, double hi, int log);

/**
 * @brief Adds an integer parameter in [lo, hi] (both included), uniform, or log-uniform when
 *        @p log is 1 (sampled on [lo - 0.5, hi + 0.5] in log space and rounded).
 * @param[in,out] t    The tuner; unchanged on error.
 * @param[in]     name The recipe key path (copied); unique within the tuner.
 * @param[in]     lo   Lower bound (>= 1 with @p log).
 * @param[in]     hi   Upper bound, > @p lo.
 * @param[in]     log  1 for log-uniform, 0 for uniform.
 * @return STROP_OK; otherwise as strop_tuner_add_float().
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_add_int(strop_tuner *t, const char *name,
                                                           int64_t lo, int64_t hi, int log);

/**
 * @brief Adds a categorical parameter over @p n strings.
 * @param[in,out] t       The tuner; unchanged on error.
 * @param[in]     name    The recipe key path (copied); unique within the tuner.
 * @param[in]     choices @p n distinct, non-empty strings (copied), as recipe YAML values.
 * @param[in]     n       Number of choices, >= 1.
 * @return STROP_OK; otherwise as strop_tuner_add_float(); STROP_E_INVALID_ARG also for n < 1,
 *         a NULL, empty or repeated choice.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_add_categorical(strop_tuner *t,
                                                                   const char *name,
                                                                   const char *const *choices,
                                                                   int64_t n);

/**
 * @brief Number of parameters.
 * @param[in] t The tuner.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_tuner_num_params(const strop_tuner *t);

/**
 * @brief Name of parameter @p index (in the order added).
 * @param[in] t     The tuner.
 * @param[in] index 0 .. strop_tuner_num_params() - 1.
 * @return The name, borrowed: lives as long as the tuner; NULL for NULL or out of range.
 * @since 0.1
 */
STROP_API const char *strop_tuner_param_name(const strop_tuner *t, int64_t index);

/**
 * @brief Kind of parameter @p index.
 * @param[in] t     The tuner.
 * @param[in] index 0 .. strop_tuner_num_params() - 1.
 * @return Its ::strop_param_kind, or -1 for NULL or out of range.
 * @since 0.1
 */
STROP_API int strop_tuner_param_kind(const strop_tuner *t, int64_t index);

/**
 * @brief Sets any knob as a double, as every object's _set_double does: a float knob a
 *        finite value in its range, an int or enum knob an integral value
 *        (::STROP_PRUNER_MEDIAN ...), a flag 0 or 1.
 * @param[in,out] t     The tuner; changed only on success.
 * @param[in]     key   A ::strop_tune_knob.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, NaN, infinite, out of range, not
 *         integral — the sentence names the function, knob, range and value); STROP_E_STATE
 *         (::STROP_TUNE_N_WORKERS while strop_tuner_run() runs).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_set_double(strop_tuner *t, int key,
                                                              double value);
/**
 * @brief Reads any knob as a double.
 * @param[in]  t     The tuner.
 * @param[in]  key   A ::strop_tune_knob.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_get_double(const strop_tuner *t, int key,
                                                              double *value);
/**
 * @brief Sets an int, enum or flag knob (::strop_tune_knob).
 * @param[in,out] t     The tuner; changed only on success.
 * @param[in]     key   An int knob.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown or float knob, value out of range —
 *         the sentence names knob and value); STROP_E_STATE (as strop_tuner_set_double()).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_set_int(strop_tuner *t, int key,
                                                           int64_t value);
/**
 * @brief Sets a float knob (as strop_tuner_set_double(), float knobs only; it always took a
 *        double, so it is not deprecated).
 * @param[in,out] t     The tuner; changed only on success.
 * @param[in]     key   A float knob.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown or int knob, value out of range).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_set_float(strop_tuner *t, int key,
                                                             double value);
/**
 * @brief Reads an int knob.
 * @param[in]  t     The tuner.
 * @param[in]  key   An int knob.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not an int knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_get_int(const strop_tuner *t, int key,
                                                           int64_t *value);
/**
 * @brief Reads a float knob.
 * @param[in]  t     The tuner.
 * @param[in]  key   A float knob.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not a float knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_get_float(const strop_tuner *t, int key,
                                                             double *value);

/**
 * @brief The valid range of a knob.
 * @param[in]  key   A ::strop_tune_knob.
 * @param[out] lo    Lower bound; may be NULL.
 * @param[out] hi    Upper bound (HUGE_VAL: no limit); may be NULL.
 * @param[out] flags ::strop_knob_flags bits (::STROP_KNOB_INT for an int knob,
 *                   ::STROP_KNOB_ENUM, ::STROP_KNOB_FLAG); may be NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (unknown knob). Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_knob_range(int key, double *lo, double *hi,
                                                              int *flags);

/**
 * @brief The knob's name ("n_initial", "pruner", ...): the knobs are the keys 0, 1, ... up
 *        to the first NULL.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.1
 */
STROP_API const char *strop_tuner_knob_name(int key);

/**
 * @brief The key of a tuner knob by its name or its other spelling ("initial", "prune",
 *        "workers", as recipes write them).
 * @param[in]  name The name.
 * @param[out] key  The key; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (listing the names); STROP_E_INVALID_ARG (NULL).
 *         Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_knob_find(const char *name, int *key);

/**
 * @brief A knob's default.
 * @param[in]  key   A ::strop_tune_knob.
 * @param[out] value The default; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_knob_default(int key, double *value);

/**
 * @brief One line describing the knob.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_tuner_knob_doc(int key);

/**
 * @brief Reads a knob's value from text: a number, an integer, true/false, or a pruner name
 *        ("none", "median", "halving").
 * @param[in]  key   A ::strop_tune_knob.
 * @param[in]  text  The text.
 * @param[out] value The value, for strop_tuner_set_double(); unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, text of the wrong form, naming
 *         the form expected). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_knob_parse(int key, const char *text,
                                                              double *value);

/**
 * @brief Starts a trial: draws its values by the strategy and returns its id (0, 1, 2 ...;
 *        after strop_tuner_resume() it continues after the largest id in the file). The space
 *        is frozen from the first call on.
 *
 * A trial told ::STROP_TRIAL_INTERRUPTED (in this run, or read from the trials file) is given
 * again first, the one with the lowest id: its id and values, with no intermediate values
 * (since 0.2).
 *
 * Bayes suggests from the trials told so far; trials still running count as observed at the
 * mean of the observed values (a "constant liar"), so parallel asks spread out.
 * @param[in,out] t        The tuner.
 * @param[out]    trial_id The new trial's id.
 * @return STROP_OK; STROP_E_STATE (grid: every point has been asked for — the search is
 *         complete; strop_tuner_is_exhausted() then returns 1); STROP_E_INVALID_ARG (NULL, or
 *         no parameter added); STROP_E_UNSUPPORTED (Bayes: more encoded dimensions than its
 *         Gaussian process takes, naming the limit); STROP_E_NUMERIC (Bayes: the kernel could
 *         not be fitted to the observations); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_ask(strop_tuner *t, int64_t *trial_id);

/**
 * @brief Whether a grid search has asked for every point.
 * @param[in] t The tuner.
 * @return 1 when it has, else 0 (also for another strategy or NULL).
 * @since 0.1
 */
STROP_API int strop_tuner_is_exhausted(const strop_tuner *t);

/**
 * @brief Number of grid points.
 * @param[in] t The tuner.
 * @return The count (saturates at INT64_MAX), or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_tuner_grid_size(const strop_tuner *t);

/**
 * @brief A trial's value of a float or int parameter, by name.
 * @param[in]  t        The tuner.
 * @param[in]  trial_id A trial's id.
 * @param[in]  name     The parameter's name.
 * @param[out] value    The float value, or the integer as a double; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown trial id or parameter name);
 *         STROP_E_INVALID_ARG (NULL, categorical parameter).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_trial_float(const strop_tuner *t,
                                                               int64_t trial_id, const char *name,
                                                               double *value);

/**
 * @brief A trial's value of an int parameter, by name.
 * @param[in]  t        The tuner.
 * @param[in]  trial_id A trial's id.
 * @param[in]  name     The parameter's name.
 * @param[out] value    The value; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown trial id or parameter name);
 *         STROP_E_INVALID_ARG (NULL, not an int parameter).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_trial_int(const strop_tuner *t,
                                                             int64_t trial_id, const char *name,
                                                             int64_t *value);

/**
 * @brief A trial's choice of a categorical parameter, by name: its index and (snprintf style)
 *        its string.
 * @param[in]  t        The tuner.
 * @param[in]  trial_id A trial's id.
 * @param[in]  name     The parameter's name.
 * @param[out] index    The choice's index; may be NULL.
 * @param[out] buf      Receives the string, truncated to @p cap - 1 bytes and NUL-terminated;
 *                      may be NULL when @p cap is 0.
 * @param[in]  cap      Bytes available at @p buf.
 * @param[out] len      The string's full length without the NUL; may be NULL.
 * @return STROP_OK (also when truncated); STROP_E_NOT_FOUND (unknown trial id or parameter
 *         name); STROP_E_INVALID_ARG (NULL, not a categorical parameter).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_trial_categorical(const strop_tuner *t,
                                                                     int64_t trial_id,
                                                                     const char *name,
                                                                     int64_t *index, char *buf,
                                                                     size_t cap, size_t *len);

/**
 * @brief A trial's value of parameter @p param by index: the float, the integer, or the
 *        choice index of a categorical, as a double.
 * @param[in]  t        The tuner.
 * @param[in]  trial_id A trial's id.
 * @param[in]  param    0 .. strop_tuner_num_params() - 1.
 * @param[out] value    The value; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown trial); STROP_E_INVALID_ARG (NULL, index out
 *         of range).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_trial_value(const strop_tuner *t,
                                                               int64_t trial_id, int64_t param,
                                                               double *value);

/**
 * @brief Reports an intermediate value of a running trial (e.g. the validation metric after
 *        epoch @p step) and asks the pruner whether to stop it.
 *
 * The median rule compares @p value with the median of the finished (ok) trials' values at
 * the same step, once ::STROP_TUNE_PRUNE_WARMUP_TRIALS trials have finished and @p step >=
 * ::STROP_TUNE_PRUNE_WARMUP_STEPS. Successive halving records the value at every rung whose
 * resource the step reaches and stops the trial unless it is within the best
 * max(1, floor(m / eta)) of the m values recorded at that rung. The decision is the host's to
 * act on: it should end the trial and tell it ::STROP_TRIAL_PRUNED.
 * @param[in,out] t        The tuner.
 * @param[in]     trial_id A running trial's id.
 * @param[in]     step     Increases strictly from call to call within a trial (e.g. the
 *                         epoch).
 * @param[in]     value    The intermediate value, finite.
 * @param[out]    prune    1 when the trial should stop, else 0; may be NULL.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown id); STROP_E_STATE (trial already told);
 *         STROP_E_INVALID_ARG (NULL, step not increasing, non-finite value); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_report(strop_tuner *t, int64_t trial_id,
                                                          int64_t step, double value, int *prune);

/**
 * @brief Ends a trial with its final value and status, records it, and appends it to the
 *        trials file if one is set.
 *
 * ::STROP_TRIAL_OK with a non-finite value is recorded as failed. ::STROP_TRIAL_PRUNED with a
 * NaN value takes the last reported value. Failed trials do not stop the search; the Bayesian
 * model sees them at the worst value observed so far (so it steers away), and they never
 * become the best. Pruned trials enter the model at their value and never become the best.
 * An interrupted trial (since 0.2) has no value (@p value is ignored) and is no observation:
 * the next ask gives it again, so a search stopped by the host re-runs it rather than
 * counting it as a failure.
 * @param[in,out] t        The tuner.
 * @param[in]     trial_id A running trial's id.
 * @param[in]     value    The final value.
 * @param[in]     status   ::STROP_TRIAL_OK, ::STROP_TRIAL_FAILED, ::STROP_TRIAL_PRUNED or
 *                         ::STROP_TRIAL_INTERRUPTED.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown id); STROP_E_STATE (already told);
 *         STROP_E_INVALID_ARG (NULL, bad status); STROP_E_IO (the trials file could not be
 *         written — the trial is recorded all the same); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_tell(strop_tuner *t, int64_t trial_id,
                                                        double value, int status);

/**
 * @brief The best finished (ok) trial so far.
 * @param[in]  t        The tuner.
 * @param[out] trial_id Its id; may be NULL.
 * @param[out] value    Its value; may be NULL.
 * @return STROP_OK; STROP_E_STATE (no trial has finished ok); STROP_E_INVALID_ARG (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_best(const strop_tuner *t, int64_t *trial_id,
                                                        double *value);

/**
 * @brief Number of trials (running and finished).
 * @param[in] t The tuner.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_tuner_num_trials(const strop_tuner *t);

/**
 * @brief Id of the trial at position @p index (in the order asked).
 * @param[in] t     The tuner.
 * @param[in] index 0 .. strop_tuner_num_trials() - 1.
 * @return The id, or -1 for NULL or out of range.
 * @since 0.1
 */
STROP_API int64_t strop_tuner_trial_id(const strop_tuner *t, int64_t index);

/**
 * @brief A trial's state and result.
 * @param[in]  t         The tuner.
 * @param[in]  trial_id  A trial's id.
 * @param[out] status    Its ::strop_trial_status; may be NULL.
 * @param[out] value     Final value; NaN while running or when failed; may be NULL.
 * @param[out] seconds   Wall time from ask to tell; 0 while running; may be NULL.
 * @param[out] n_reports Number of intermediate values; may be NULL.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown id); STROP_E_INVALID_ARG (NULL tuner).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_trial_result(const strop_tuner *t,
                                                                int64_t trial_id, int *status,
                                                                double *value, double *seconds,
                                                                int64_t *n_reports);

/**
 * @brief The @p index-th intermediate value of a trial, with its step.
 * @param[in]  t        The tuner.
 * @param[in]  trial_id A trial's id.
 * @param[in]  index    0 .. n_reports - 1 (strop_tuner_trial_result()).
 * @param[out] step     Its step; may be NULL.
 * @param[out] value    Its value; may be NULL.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown id); STROP_E_INVALID_ARG (NULL, index out of
 *         range).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_trial_report_at(const strop_tuner *t,
                                                                   int64_t trial_id,
                                                                   int64_t index, int64_t *step,
                                                                   double *value);

/**
 * @brief Runs one trial for strop_tuner_run(): read the trial's values (strop_tuner_trial_*),
 *        train, optionally strop_tuner_report() per epoch, and store the final value.
 *
 * Must not free the tuner or tell the trial itself. With several workers it is called from
 * several threads at once.
 * @param[in]  t         The tuner (its trial getters and strop_tuner_report() may be used).
 * @param[in]  trial_id  The trial to run.
 * @param[out] value_out The final value (for a pruned trial: the last reported value, or NaN).
 * @param[in]  user_data As given to strop_tuner_run().
 * @return ::STROP_TRIAL_OK, ::STROP_TRIAL_PRUNED or ::STROP_TRIAL_FAILED (any other positive
 *         value counts as failed); a negative value stops the whole search: the trial is
 *         recorded ::STROP_TRIAL_INTERRUPTED (since 0.2; 0.1 recorded it as failed), to be
 *         asked again first, and strop_tuner_run() returns STROP_E_CANCELLED.
 * @since 0.1
 */
typedef int (*strop_trial_fn)(strop_tuner *t, int64_t trial_id, double *value_out,
                              void *user_data);

/**
 * @brief Runs up to @p n_trials new trials through @p fn: ask, call, tell.
 *
 * With ::STROP_TUNE_N_WORKERS > 1, that many threads each ask and tell under the tuner's
 * mutex, and each calls @p fn concurrently (the host's fn must then be thread-safe). A grid
 * search stops early when exhausted, and no trial starts once ::STROP_TUNE_TIME_BUDGET seconds
 * have passed since the call began (both return STROP_OK). Interrupted trials are asked again
 * first and count among the @p n_trials.
 * @param[in,out] t         The tuner.
 * @param[in]     n_trials  Trials to run, >= 0.
 * @param[in]     fn        The trial function.
 * @param[in]     user_data Passed to @p fn; never dereferenced.
 * @return STROP_OK; STROP_E_CANCELLED (fn returned a negative value); STROP_E_IO (the trials
 *         file could not be written; the search stops); STROP_E_STATE (already running);
 *         STROP_E_INVALID_ARG (NULL, n_trials < 0, no parameter); the statuses of
 *         strop_tuner_ask() (STROP_E_UNSUPPORTED, STROP_E_NUMERIC); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_run(strop_tuner *t, int64_t n_trials,
                                                       strop_trial_fn fn, void *user_data);

/**
 * @brief Appends every trial told from now on to @p path as one JSON line, flushed (and
 *        fsynced with ::STROP_TUNE_FSYNC). The format is in docs/tune.md.
 * @param[in,out] t    The tuner.
 * @param[in]     path The trials file (opened for appending now; when it does not end a line,
 *                     a newline is written first, so the next trial is a line of its own), or
 *                     NULL to close the current one.
 * @return STROP_OK; STROP_E_IO (cannot open or write, naming the path and the reason; the
 *         current file stays); STROP_E_INVALID_ARG (NULL tuner).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_set_log(strop_tuner *t, const char *path);

/**
 * @brief Loads a trials file written by a previous run of the same search (same parameters)
 *        so a restarted search continues.
 *
 * Every finished trial is recorded with its id, values, intermediate values, status and
 * time; new ids continue after the largest; the grid skips visited points; random and Bayes
 * draw as if the run had not stopped; a trial the file records as interrupted is asked again
 * first (a later line of the same id replaces such a line). Call it after the parameters are
 * added and before the first ask. A truncated last line (a crash mid-write) is ignored and cut
 * off the file (with a ::STROP_LOG_WARN message), so that a trial appended after it is read
 * back by the next resume.
 * @param[in,out] t    The tuner; unchanged on error.
 * @param[in]     path The trials file.
 * @return STROP_OK; STROP_E_IO (cannot read); STROP_E_FORMAT (malformed line, unknown or
 *         missing parameter, value outside the space, repeated id, unusable numbers — naming
 *         path and line); STROP_E_STATE (trials exist already); STROP_E_INVALID_ARG (NULL);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tuner_resume(strop_tuner *t, const char *path);

STROP_END_DECLS

#endif
