/* SPDX-License-Identifier: MIT */
/* strop — optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) with PyTorch's update rules, and
 * learning-rate schedulers (step, cosine, one-cycle, plateau, warm-up ...) that drive them. */
#ifndef STROP_OPTIM_H
#define STROP_OPTIM_H

#include "common.h"
#include "error.h"
#include "model.h"

/**
 * @file optim.h
 * @brief Optimizers and learning-rate schedulers.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief An optimizer bound to a model: it updates the model's trainable parameters from
 *        their gradients.
 *
 * Frozen parameters are skipped and get no state. The model must outlive the optimizer; the
 * two count as one handle for threads (@ref threads).
 * @since 0.1
 */
typedef struct strop_optimizer strop_optimizer;

/** @brief Optimizer algorithms; the update rules are those of `torch.optim` 1.13. @since 0.1 */
typedef enum strop_optimizer_kind {
  STROP_OPTIM_SGD = 0,     /**< torch.optim.SGD: momentum, dampening, Nesterov, L2 decay. */
  STROP_OPTIM_ADAM = 1,    /**< torch.optim.Adam: weight decay added to the gradient (L2). */
  STROP_OPTIM_ADAMW = 2,   /**< torch.optim.AdamW: decoupled weight decay. */
  STROP_OPTIM_RMSPROP = 3, /**< torch.optim.RMSprop: momentum, centred. */
  STROP_OPTIM_ADAGRAD = 4  /**< torch.optim.Adagrad: lr decay, initial accumulator. */
} strop_optimizer_kind;

/**
 * @brief Optimizer knobs. Every knob is read and written as a double with
 * strop_optimizer_set_double() / strop_optimizer_get_double(); flags also with
 * strop_optimizer_set_int(). Which knobs apply to which kind, their defaults (PyTorch's),
 * ranges and one-line docs come from strop_optimizer_knob_range(), _knob_default() and
 * _knob_doc() (the table in docs/optim.md is generated from them). Values are fixed and the
 * list only grows. @since 0.1
 */
typedef enum strop_optimizer_knob {
  STROP_OPT_LR = 0,           /**< float, all kinds: learning rate (>= 0). */
  STROP_OPT_MOMENTUM = 1,     /**< float, SGD and RMSprop: momentum factor (>= 0). */
  STROP_OPT_DAMPENING = 2,    /**< float, SGD: dampening of momentum, [0, 1]. */
  STROP_OPT_WEIGHT_DECAY = 3, /**< float, all kinds: weight decay (>= 0). */
  STROP_OPT_NESTEROV = 4,     /**< int 0/1, SGD: Nesterov momentum (needs momentum > 0,
                                   dampening 0). */
  STROP_OPT_BETA1 = 5,        /**< float, Adam/AdamW: first-moment decay, [0, 1). */
  STROP_OPT_BETA2 = 6,        /**< float, Adam/AdamW: second-moment decay, [0, 1). */
  STROP_OPT_EPS = 7,          /**< float, Adam/AdamW/RMSprop/Adagrad: denominator term (>= 0). */
  STROP_OPT_AMSGRAD = 8,      /**< int 0/1, Adam/AdamW: AMSGrad variant. */
  STROP_OPT_ALPHA = 9,        /**< float, RMSprop: smoothing constant, [0, 1]. */
  STROP_OPT_CENTERED = 10,    /**< int 0/1, RMSprop: normalise by the estimated variance. */
  STROP_OPT_LR_DECAY = 11,    /**< float, Adagrad: learning-rate decay (>= 0). */
  STROP_OPT_INITIAL_ACCUMULATOR_VALUE = 12, /**< float, Adagrad: initial sum (>= 0). */
  STROP_OPT_MAXIMIZE = 13                   /**< int 0/1, all kinds: maximise the objective. */
} strop_optimizer_knob;

/**
 * @brief Flags reported by the knob-range queries of every object (optimizer, scheduler,
 * trainer, tuner). An infinite bound means "no limit": infinity itself is a value only for the
 * knobs flagged STROP_KNOB_INF_OK, and NaN never is. @since 0.1
 */
typedef enum strop_knob_flags {
  STROP_KNOB_INT = 1,       /**< An integral knob (int, flag or enum): also set with _set_int. */
  STROP_KNOB_LO_OPEN = 2,   /**< The lower bound itself is not allowed. */
  STROP_KNOB_HI_OPEN = 4,   /**< The upper bound itself is not allowed. */
  STROP_KNOB_LIST = 8,      /**< An int64 list knob (set with strop_scheduler_set_ints()). */
  STROP_KNOB_FLAG = 16,     /**< A 0/1 flag (false/true). @since 0.2 */
  STROP_KNOB_ENUM = 32,     /**< Named values lo, lo + 1, ..., hi; the names are what the
                               _knob_parse() functions read. @since 0.2 */
  STROP_KNOB_INF_OK = 64,   /**< The range's infinite bound is itself accepted, with a documented
                               meaning (one-cycle's final_div_factor of +inf: the cycle ends
                               at lr 0). @since 0.2 */
  STROP_KNOB_REQUIRED = 128 /**< No default: 0 (unset) until the host sets it. @since 0.2 */
} strop_knob_flags;

/**
 * @brief Creates an optimizer over the trainable parameters of a finalized model, with
 *        PyTorch's default knobs for @p kind (SGD's lr, which PyTorch 1.13 requires, defaults
 *        to 1e-3).
 *
 * The optimizer follows the model: each strop_optimizer_step() notices parameters that became
 * trainable or frozen (surgery between stages) and adds or drops their state, as
 * strop_optimizer_sync() does. Moment buffers are allocated on the first step of each
 * trainable parameter; a frozen parameter never gets any.
 * @param[in,out] model The model; borrowed, must outlive the optimizer.
 * @param[in]     kind  One of ::strop_optimizer_kind.
 * @param[out]    out   The optimizer, owned by the caller (strop_optimizer_free()); NULL on
 *                      error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown kind); STROP_E_STATE (model not
 *         finalized); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_create(strop_model *model, int kind,
                                                              strop_optimizer **out);

/**
 * @brief Frees the optimizer and its state; the model is untouched.
 * @param[in] opt The optimizer, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_optimizer_free(strop_optimizer *opt);

/**
 * @brief The optimizer's algorithm.
 * @param[in] opt The optimizer.
 * @return Its ::strop_optimizer_kind, or -1 for NULL.
 * @since 0.1
 */
STROP_API int strop_optimizer_get_kind(const strop_optimizer *opt);

/**
 * @brief Sets a knob, e.g. `strop_optimizer_set_double(opt, STROP_OPT_LR, 3e-4)`; the
 *        arithmetic uses the double as PyTorch uses its Python float.
 *
 * Takes every knob but lists: a float knob any value in its range, an int knob an integral
 * value, a flag 0 or 1. A value must be finite (no knob of the optimizer takes infinity).
 * @param[in,out] opt   The optimizer; changed only on success.
 * @param[in]     key   A ::strop_optimizer_knob that applies to the optimizer's kind.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL; unknown knob or one the kind does not use; a
 *         value that is NaN, infinite, out of range or not integral for an int knob; Nesterov
 *         left without momentum or with dampening): the sentence names the function, the knob,
 *         the allowed range and the value; the optimizer is unchanged.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_set_double(strop_optimizer *opt, int key,
                                                                  double value);

/**
 * @brief Reads a knob (any but a list) as a double: exactly the double set.
 * @param[in]  opt   The optimizer (only read).
 * @param[in]  key   A ::strop_optimizer_knob of the optimizer's kind.
 * @param[out] value The value (flags and ints as integral doubles); unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob or one the kind does not use).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_get_double(const strop_optimizer *opt,
                                                                  int key, double *value);

/**
 * @brief Sets a float knob from a float.
 * @deprecated Since 0.2: use strop_optimizer_set_double(), which takes the value as it is.
 * This one widens the float to the double nearest its shortest decimal form (0.95f is used
 * as 0.95), refuses int knobs, and otherwise behaves as strop_optimizer_set_double(). Kept,
 * with its symbol and behaviour, for programs built against 0.1.
 * @param[in,out] opt   The optimizer; changed only on success.
 * @param[in]     key   A float knob (strop_optimizer_knob) of the optimizer's kind.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (as strop_optimizer_set_double(), and for an int
 *         knob).
 * @since 0.1
 */
STROP_API STROP_DEPRECATED STROP_NODISCARD strop_status
strop_optimizer_set_float(strop_optimizer *opt, int key, float value);

/**
 * @brief Reads a float knob into @p out, rounded to float.
 * @deprecated Since 0.2: use strop_optimizer_get_double(), which reads the value exactly as
 * set. Kept, with its symbol and behaviour, for programs built against 0.1.
 * @param[in]  opt The optimizer (only read).
 * @param[in]  key A float knob (strop_optimizer_knob) of the optimizer's kind.
 * @param[out] out The value, rounded to float; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not a float knob of this kind).
 * @since 0.1
 */
STROP_API STROP_DEPRECATED STROP_NODISCARD strop_status
strop_optimizer_get_float(const strop_optimizer *opt, int key, float *out);

/**
 * @brief Sets an int knob (a 0/1 flag such as ::STROP_OPT_NESTEROV). Nesterov needs momentum
 *        > 0 and dampening 0 already set.
 * @param[in,out] opt   The optimizer; changed only on success.
 * @param[in]     key   An int knob of the optimizer's kind.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (as strop_optimizer_set_double(); also for a float
 *         knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_set_int(strop_optimizer *opt, int key,
                                                               int value);

/**
 * @brief Reads an int knob.
 * @param[in]  opt The optimizer (only read).
 * @param[in]  key An int knob of the optimizer's kind.
 * @param[out] out The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not an int knob of this kind).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_get_int(const strop_optimizer *opt,
                                                               int key, int *out);

/**
 * @brief The valid range of a knob for an optimizer kind.
 * @param[in]  kind  A ::strop_optimizer_kind.
 * @param[in]  key   A ::strop_optimizer_knob.
 * @param[out] lo    Lower bound; may be NULL.
 * @param[out] hi    Upper bound (HUGE_VAL: no limit); may be NULL.
 * @param[out] flags ::strop_knob_flags bits (open bounds, int, flag, infinity accepted); may
 *                   be NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (unknown kind or knob, or the knob does not apply
 *         to @p kind). Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_knob_range(int kind, int key, double *lo,
                                                                  double *hi, int *flags);

/**
 * @brief The knob's name ("lr", "beta1", ...): the knobs are the keys 0, 1, ... up to the
 *        first NULL.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.1
 */
STROP_API const char *strop_optimizer_knob_name(int key);

/**
 * @brief The key of a knob by its name (as strop_optimizer_knob_name() gives it) or its
 *        other accepted spelling.
 * @param[in]  name The name.
 * @param[out] key  The key; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (no such knob; the sentence lists the names);
 *         STROP_E_INVALID_ARG (NULL). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_knob_find(const char *name, int *key);

/**
 * @brief A knob's default for an optimizer kind (PyTorch's).
 * @param[in]  kind  A ::strop_optimizer_kind.
 * @param[in]  key   A ::strop_optimizer_knob.
 * @param[out] value The default; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown kind or knob, a knob the kind does not
 *         use). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_knob_default(int kind, int key,
                                                                    double *value);

/**
 * @brief One line describing the knob.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_optimizer_knob_doc(int key);

/**
 * @brief Reads a knob's value from text as recipes write it: a number, an integer, or
 *        true/false for a flag.
 * @param[in]  key   A ::strop_optimizer_knob.
 * @param[in]  text  The text (NUL-terminated).
 * @param[out] value The value, to pass to strop_optimizer_set_double() (which checks its
 *                   range); unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, text of the wrong form, naming
 *         the form expected). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_knob_parse(int key, const char *text,
                                                                  double *value);

/**
 * @brief Applies one update to every trainable parameter that has a gradient, exactly as
 *        `torch.optim` does in float32, with each parameter's learning-rate multiplier and
 *        weight-decay switch (parameter groups). Frozen parameters are neither read nor
 *        written; the gradients are only read.
 *
 * State for new trainable parameters is allocated first; if that fails nothing is updated.
 * Non-finite gradients are not checked here (the trainer guards them), but no NaN or infinite
 * value is ever stored: a weight or state value the update would make non-finite keeps its old
 * value, the parameters after it are not updated, and the call returns STROP_E_NUMERIC naming
 * the parameter (the values that stayed finite were updated; strop_trainer_step(), which owns
 * its gradients, refuses such an update whole).
 * @param[in,out] opt The optimizer; its model's parameters change.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM (no parameter changed);
 *         STROP_E_NUMERIC (as above).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_step(strop_optimizer *opt);

/**
 * @brief Sets the gradient of every trainable parameter to zero.
 * @param[in,out] opt The optimizer; its model's gradients change.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_zero_grad(strop_optimizer *opt);

/**
 * @brief Re-reads which parameters are trainable: keeps the state of those still trainable
 *        (matched by name and size), drops the state of frozen or removed ones and prepares
 *        new ones (their buffers come on their first step). strop_optimizer_step() does this
 *        by itself.
 * @param[in,out] opt The optimizer.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM (the optimizer is unchanged).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_optimizer_sync(strop_optimizer *opt);

/**
 * @brief Number of successful strop_optimizer_step() calls (restored from checkpoints).
 * @param[in] opt The optimizer.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_optimizer_step_count(const strop_optimizer *opt);

/**
 * @brief A learning-rate scheduler driving one optimizer's learning rate (and, for one-cycle,
 *        its momentum).
 *
 * The optimizer must outlive the scheduler; the two (and the optimizer's model) count as one
 * handle for threads (@ref threads).
 * @since 0.1
 */
typedef struct strop_scheduler strop_scheduler;

/** @brief Schedules; each matches the `torch.optim.lr_scheduler` class named. @since 0.1 */
typedef enum strop_scheduler_kind {
  STROP_SCHED_CONSTANT = 0,        /**< ConstantLR (factor, total_iters; factor 1 = constant). */
  STROP_SCHED_STEP = 1,            /**< StepLR (step_size, gamma). */
  STROP_SCHED_MULTISTEP = 2,       /**< MultiStepLR (milestones, gamma). */
  STROP_SCHED_EXPONENTIAL = 3,     /**< ExponentialLR (gamma). */
  STROP_SCHED_COSINE = 4,          /**< CosineAnnealingLR (T_max, eta_min). */
  STROP_SCHED_COSINE_RESTARTS = 5, /**< CosineAnnealingWarmRestarts (T_0, T_mult, eta_min). */
  STROP_SCHED_ONE_CYCLE = 6,       /**< OneCycleLR (max_lr, total_steps, pct_start, ...). */
  STROP_SCHED_PLATEAU = 7 /**< ReduceLROnPlateau, fed by strop_scheduler_step_metric(). */
} strop_scheduler_kind;

/**
 * @brief Scheduler knobs; read and written as doubles with strop_scheduler_set_double() (the
 * list with strop_scheduler_set_ints()). Defaults, ranges and which kinds use them come from
 * strop_scheduler_knob_default(), _knob_range() and _knob_doc() (docs/optim.md's table is
 * generated from them). The warm-up knobs apply to every kind. Values are fixed and the list
 * only grows. @since 0.1
 */
typedef enum strop_scheduler_knob {
  STROP_SCH_GAMMA = 0,             /**< float: decay factor (step, multistep, exponential). */
  STROP_SCH_STEP_SIZE = 1,         /**< int: steps between decays (step; required). */
  STROP_SCH_MILESTONES = 2,        /**< int64 list, increasing, >= 1 (multistep). */
  STROP_SCH_T_MAX = 3,             /**< int: half-period (cosine; required). */
  STROP_SCH_ETA_MIN = 4,           /**< float: lowest lr (cosine, cosine restarts). */
  STROP_SCH_T_0 = 5,               /**< int: first period (cosine restarts; required). */
  STROP_SCH_T_MULT = 6,            /**< int: period growth factor (cosine restarts). */
  STROP_SCH_MAX_LR = 7,            /**< float: peak lr (one-cycle; required). */
  STROP_SCH_TOTAL_STEPS = 8,       /**< int: steps in the cycle (one-cycle; required). */
  STROP_SCH_PCT_START = 9,         /**< float: fraction of the cycle spent rising (one-cycle). */
  STROP_SCH_ANNEAL = 10,           /**< int: STROP_ANNEAL_COS or STROP_ANNEAL_LINEAR. */
  STROP_SCH_DIV_FACTOR = 11,       /**< float: initial lr = max_lr / div_factor (one-cycle). */
  STROP_SCH_FINAL_DIV_FACTOR = 12, /**< float: min lr = initial lr / final_div_factor. */
  STROP_SCH_CYCLE_MOMENTUM = 13,   /**< int 0/1: cycle momentum / beta1 (one-cycle). */
  STROP_SCH_BASE_MOMENTUM = 14,    /**< float: lowest momentum (one-cycle). */
  STROP_SCH_MAX_MOMENTUM = 15,     /**< float: highest momentum (one-cycle). */
  STROP_SCH_MODE = 16,             /**< int: STROP_PLATEAU_MIN or STROP_PLATEAU_MAX. */
  STROP_SCH_FACTOR = 17,           /**< float: plateau reduction factor; constant's factor. */
  STROP_SCH_PATIENCE = 18,         /**< int: bad metric steps tolerated (plateau). */
  STROP_SCH_THRESHOLD = 19,        /**< float: significance threshold (plateau). */
  STROP_SCH_THRESHOLD_MODE = 20,   /**< int: STROP_THRESHOLD_REL or STROP_THRESHOLD_ABS. */
  STROP_SCH_COOLDOWN = 21,         /**< int: metric steps to wait after a reduction (plateau). */
  STROP_SCH_MIN_LR = 22,           /**< float: lr floor (plateau). */
  STROP_SCH_EPS = 23,              /**< float: smallest reduction applied (plateau). */
  STROP_SCH_TOTAL_ITERS = 24,      /**< int: steps the constant factor lasts (constant). */
  STROP_SCH_WARMUP_STEPS = 25,     /**< int: linear warm-up steps before the schedule (all). */
  STROP_SCH_WARMUP_START_FACTOR = 26 /**< float (0, 1]: warm-up's first lr / base lr (all). */
} strop_scheduler_knob;

/** @brief Values of the enumerated scheduler knobs. @since 0.1 */
typedef enum strop_scheduler_choice {
  STROP_ANNEAL_COS = 0,    /**< STROP_SCH_ANNEAL: cosine annealing (PyTorch's default). */
  STROP_ANNEAL_LINEAR = 1, /**< STROP_SCH_ANNEAL: linear annealing. */
  STROP_PLATEAU_MIN = 0,   /**< STROP_SCH_MODE: lower metric is better. */
  STROP_PLATEAU_MAX = 1,   /**< STROP_SCH_MODE: higher metric is better. */
  STROP_THRESHOLD_REL = 0, /**< STROP_SCH_THRESHOLD_MODE: relative. */
  STROP_THRESHOLD_ABS = 1  /**< STROP_SCH_THRESHOLD_MODE: absolute. */
} strop_scheduler_choice;

/**
 * @brief Creates a scheduler on an optimizer.
 *
 * The optimizer's current lr becomes the base lr (PyTorch's `initial_lr`), so set the lr
 * first. As in PyTorch, the schedule's first lr (step 0) is applied to the optimizer at once,
 * and again after every knob change until the first strop_scheduler_step().
 * @param[in,out] opt  The optimizer; borrowed, must outlive the scheduler. Its lr changes.
 * @param[in]     kind One of ::strop_scheduler_kind.
 * @param[out]    out  The scheduler, owned by the caller (strop_scheduler_free()); NULL on
 *                     error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown kind); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_create(strop_optimizer *opt, int kind,
                                                              strop_scheduler **out);

/**
 * @brief Frees the scheduler; the optimizer keeps its current lr.
 * @param[in] sched The scheduler, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_scheduler_free(strop_scheduler *sched);

/**
 * @brief Sets a knob (any but the list): a float knob any finite value in its range (or an
 *        infinity its range flags ::STROP_KNOB_INF_OK), an int or enum knob an integral
 *        value (::STROP_ANNEAL_LINEAR ...), a flag 0 or 1. Until the first
 *        strop_scheduler_step() the step-0 lr is applied again.
 * @param[in,out] sched The scheduler; changed only on success.
 * @param[in]     key   A ::strop_scheduler_knob used by the scheduler's kind.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob or not one of this kind, the list,
 *         NaN, infinite where not accepted, out of range or not integral; the sentence names
 *         the function, knob, range and value; nothing changes).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_set_double(strop_scheduler *sched, int key,
                                                                  double value);

/**
 * @brief Reads a knob (any but the list) as a double, exactly as set.
 * @param[in]  sched The scheduler (only read).
 * @param[in]  key   A ::strop_scheduler_knob of its kind.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob or not one of this kind, the
 *         list).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_get_double(const strop_scheduler *sched,
                                                                  int key, double *value);

/**
 * @brief Sets a float knob from a float.
 * @deprecated Since 0.2: use strop_scheduler_set_double(). This one widens the float as
 * strop_optimizer_set_float() does, refuses int knobs, and otherwise behaves as
 * strop_scheduler_set_double(). Kept, with its symbol and behaviour, for programs built
 * against 0.1.
 * @param[in,out] sched The scheduler; changed only on success.
 * @param[in]     key   A float knob (strop_scheduler_knob) of the scheduler's kind.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (as strop_scheduler_set_double(), and for an int
 *         knob).
 * @since 0.1
 */
STROP_API STROP_DEPRECATED STROP_NODISCARD strop_status
strop_scheduler_set_float(strop_scheduler *sched, int key, float value);

/**
 * @brief Reads a float knob into @p out, rounded to float.
 * @deprecated Since 0.2: use strop_scheduler_get_double(), which reads the value exactly as
 * set. Kept, with its symbol and behaviour, for programs built against 0.1.
 * @param[in]  sched The scheduler (only read).
 * @param[in]  key   A float knob (strop_scheduler_knob) of the scheduler's kind.
 * @param[out] out   The value, rounded to float; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not a float knob of this kind).
 * @since 0.1
 */
STROP_API STROP_DEPRECATED STROP_NODISCARD strop_status
strop_scheduler_get_float(const strop_scheduler *sched, int key, float *out);

/**
 * @brief Sets an int, enum or flag knob.
 * @param[in,out] sched The scheduler; changed only on success.
 * @param[in]     key   An int knob of the scheduler's kind.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (as strop_scheduler_set_double(); also for a float
 *         knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_set_int(strop_scheduler *sched, int key,
                                                               int value);

/**
 * @brief Reads an int, enum or flag knob.
 * @param[in]  sched The scheduler (only read).
 * @param[in]  key   An int knob of the scheduler's kind.
 * @param[out] out   The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not an int knob of this kind).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_get_int(const strop_scheduler *sched,
                                                               int key, int *out);

/**
 * @brief Sets an int64 list knob (::STROP_SCH_MILESTONES).
 * @param[in,out] sched The scheduler; changed only on success.
 * @param[in]     key   A list knob of the scheduler's kind.
 * @param[in]     v     @p n values, increasing, each >= 1; copied. May be NULL when @p n
 *                      is 0.
 * @param[in]     n     Number of values, >= 0 (0 clears the list).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL scheduler, not a list knob of this kind,
 *         n < 0, values not increasing or < 1); STROP_E_NOMEM. Nothing changes on error.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_set_ints(strop_scheduler *sched, int key,
                                                                const int64_t *v, int n);

/**
 * @brief Copies an int64 list knob into @p v (at most @p cap values) and its length into
 *        @p n_out (which may exceed @p cap: call again with a larger buffer).
 * @param[in]  sched The scheduler (only read).
 * @param[in]  key   A list knob of the scheduler's kind.
 * @param[out] v     Room for @p cap values; may be NULL when @p cap is 0.
 * @param[in]  cap   Entries available at @p v, >= 0.
 * @param[out] n_out The list's length.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, @p cap < 0, not a list knob of this kind).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_get_ints(const strop_scheduler *sched,
                                                                int key, int64_t *v, int cap,
                                                                int *n_out);

/**
 * @brief The valid range of a scheduler knob for a kind (as strop_optimizer_knob_range()).
 * @param[in]  kind  A ::strop_scheduler_kind.
 * @param[in]  key   A ::strop_scheduler_knob.
 * @param[out] lo    Lower bound; may be NULL.
 * @param[out] hi    Upper bound (HUGE_VAL: no limit); may be NULL.
 * @param[out] flags ::strop_knob_flags bits; may be NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (unknown kind or knob, or one the kind does not use).
 *         Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_knob_range(int kind, int key, double *lo,
                                                                  double *hi, int *flags);

/**
 * @brief The knob's name ("gamma", "T_max", ...): the knobs are the keys 0, 1, ... up to the
 *        first NULL.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.1
 */
STROP_API const char *strop_scheduler_knob_name(int key);

/**
 * @brief The key of a scheduler knob by its name or its other spelling ("t_max" for "T_max",
 *        "anneal" for "anneal_strategy", as recipes write them).
 * @param[in]  name The name.
 * @param[out] key  The key; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (listing the names); STROP_E_INVALID_ARG (NULL).
 *         Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_knob_find(const char *name, int *key);

/**
 * @brief A knob's default for a scheduler kind; 0 for a knob flagged ::STROP_KNOB_REQUIRED
 *        (unset) and for the list (empty).
 * @param[in]  kind  A ::strop_scheduler_kind.
 * @param[in]  key   A ::strop_scheduler_knob.
 * @param[out] value The default; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown kind or knob, not one of the kind).
 *         Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_knob_default(int kind, int key,
                                                                    double *value);

/**
 * @brief One line describing the knob.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_scheduler_knob_doc(int key);

/**
 * @brief Reads a knob's value from text: a number, an integer, true/false for a flag, or one
 *        of an enum's words ("cos", "linear"; "min", "max"; "rel", "abs").
 * @param[in]  key   A ::strop_scheduler_knob (not the list).
 * @param[in]  text  The text.
 * @param[out] value The value, for strop_scheduler_set_double(); unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, the list, text of the wrong form,
 *         naming the form expected). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_knob_parse(int key, const char *text,
                                                                  double *value);

/**
 * @brief Advances the schedule by one step and sets the optimizer's lr (call it after
 *        strop_optimizer_step(), as in PyTorch). For the plateau kind it only advances the
 *        warm-up.
 * @param[in,out] sched The scheduler; its optimizer's lr changes.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (a required knob is unset, or
 *         one-cycle went past total_steps; nothing changes).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_step(strop_scheduler *sched);

/**
 * @brief Feeds a monitored metric to a plateau scheduler (ReduceLROnPlateau.step(metric)).
 * @param[in,out] sched A ::STROP_SCHED_PLATEAU scheduler; its optimizer's lr may change.
 * @param[in]     value The metric (not NaN).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, not a plateau scheduler, NaN metric).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_scheduler_step_metric(strop_scheduler *sched,
                                                                   double value);

/**
 * @brief The lr the scheduler last set (double, as PyTorch keeps it).
 * @param[in] sched The scheduler.
 * @return The lr, or 0 for NULL.
 * @since 0.1
 */
STROP_API double strop_scheduler_get_lr(const strop_scheduler *sched);

/**
 * @brief Number of strop_scheduler_step() calls so far (PyTorch's last_epoch).
 * @param[in] sched The scheduler.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_scheduler_last_step(const strop_scheduler *sched);

STROP_END_DECLS

#endif
