/* strop — the trainer: one fine-tuning step under the host's control, evaluation with
 * metrics, a ready fit loop with early stopping and checkpoints, and exact resume. */
#ifndef STROP_TRAIN_H
#define STROP_TRAIN_H

#include "common.h"
#include "data.h"
#include "dist.h"
#include "error.h"
#include "model.h"
#include "optim.h"
#include "tensor.h"

/** @file train.h @brief Training steps, evaluation, the fit loop, checkpoints. @since 0.1 */

STROP_BEGIN_DECLS

/**
 * @brief Drives fine-tuning of one model with one optimizer (and optionally a scheduler).
 * The trainer borrows them: they must outlive it. One handle from one thread at a time.
 */
typedef struct strop_trainer strop_trainer;

/** Loss functions. @since 0.1 */
typedef enum strop_loss_kind {
  STROP_LOSS_CROSS_ENTROPY = 1, /**< Logits [N, C] (or [N, T, C]) vs class indices. */
  STROP_LOSS_MSE = 2,           /**< Mean squared error vs targets shaped like the output. */
  STROP_LOSS_L1 = 3,            /**< Mean absolute error. */
  STROP_LOSS_HUBER = 4,         /**< Huber / smooth L1 with STROP_TRAIN_HUBER_DELTA. */
  STROP_LOSS_BCE_WITH_LOGITS = 5 /**< Binary cross-entropy on logits (multi-label). */
} strop_loss_kind;

/**
 * @brief Trainer knobs, for strop_trainer_set_double() (and the _set_float / _set_int
 * setters). Names, ranges, defaults and docs come from strop_trainer_knob_name(),
 * _knob_range(), _knob_default() and _knob_doc(). Values are fixed and the list only grows.
 * @since 0.1
 */
typedef enum strop_train_knob {
  STROP_TRAIN_LOSS = 0,            /**< enum: a strop_loss_kind (default cross-entropy). */
  STROP_TRAIN_LABEL_SMOOTHING = 1, /**< float in [0, 1]: cross-entropy label smoothing (0). */
  STROP_TRAIN_IGNORE_INDEX = 2,    /**< int: cross-entropy target to ignore (-100). */
  STROP_TRAIN_HUBER_DELTA = 3,     /**< float > 0: Huber threshold (1). */
  STROP_TRAIN_CLIP_NORM = 4,       /**< float >= 0: clip the global gradient L2 norm; 0 = off. */
  STROP_TRAIN_CLIP_VALUE = 5,      /**< float >= 0: clip each gradient to [-v, v]; 0 = off. */
  STROP_TRAIN_ACCUM_STEPS = 6,     /**< int >= 1: micro-batches per optimizer step (1). */
  STROP_TRAIN_SCHED_PER_EPOCH = 7  /**< flag 0/1: step the scheduler per epoch, not per
                                        optimizer step (0). */
} strop_train_knob;

/**
 * @brief Creates a trainer for @p model with @p opt, which must have been created on that
 * same model. Puts the model in train mode while steps run; the default loss is
 * cross-entropy.
 * @param model The model; borrowed, must outlive the trainer.
 * @param opt   An optimizer created on @p model; borrowed, must outlive the trainer.
 * @param[out] out Owned by the caller; free with strop_trainer_free().
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL; @p opt was created on another model — it
 *         would update that model's parameters and never these); STROP_E_STATE (model not
 *         finalized); STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_create(strop_model *model,
                                                            strop_optimizer *opt,
                                                            strop_trainer **out);

/** @brief Frees the trainer (not the model, optimizer or scheduler). NULL is a no-op.
 *  @since 0.1 */
STROP_API void strop_trainer_free(strop_trainer *tr);

/**
 * @brief Makes the trainer one rank of a data-parallel group (NULL: back to one process).
 *
 * A collective: every rank of @p d calls it, on models of the same architecture. It first
 * copies rank 0's parameters and buffers to the others, so all ranks start equal. From then
 * on each step all-reduces the trainable gradients (frozen parameters are never sent; a LoRA
 * fine-tune moves only its adapters) so every rank applies the same update:
 * - strop_trainer_fit() treats each batch of its iterator as the global batch (build the
 *   iterator with the same data, batch size and seed on every rank) and gives each rank its
 *   contiguous share of the batch's rows; the gradient is that of the loss's mean over the
 *   whole global batch, uneven shares included; evaluation metrics are summed over ranks;
 *   only rank 0 writes checkpoints.
 * - strop_trainer_step() takes the rank's own rows; the loss it reports, and the gradient,
 *   are those of the mean over all ranks' rows together.
 * - strop_trainer_backward() with a host's loss: the gradients are averaged over the ranks.
 * - A step skipped by the numeric guard on one rank is skipped on all; float buffers
 *   (BatchNorm's running statistics) are averaged over the ranks after each step.
 * @param tr The trainer; no accumulation window or forward may be open.
 * @param d  The group; borrowed, must outlive the trainer (or the next call), or NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (@p tr NULL); STROP_E_STATE (in the middle of an
 *         accumulation window or with a forward pending); the broadcast's failure
 *         (STROP_E_IO for MPI, STROP_E_CALLBACK for a custom group). Then the trainer keeps
 *         the group it had. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_dist(strop_trainer *tr, strop_dist *d);

/**
 * @brief Attaches a scheduler (borrowed; NULL detaches). It is stepped after each optimizer
 * step, or after each epoch of strop_trainer_fit() with STROP_TRAIN_SCHED_PER_EPOCH; a
 * reduce-on-plateau scheduler is fed the monitored validation metric once per epoch.
 * @return STROP_OK or STROP_E_INVALID_ARG. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_scheduler(strop_trainer *tr,
                                                                   strop_scheduler *sched);

/**
 * @brief Sets any knob as a double, as every object's _set_double does: a float knob any
 * value in its range (finite: no trainer knob takes infinity), an
 * int or enum knob an integral value (exact up to 2^53), a flag 0 or 1.
 * @param tr The trainer; changed only on success. @param key A strop_train_knob.
 * @param value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, NaN, infinite where not accepted,
 *         out of range, not integral: the sentence names the function, knob, range and value);
 *         STROP_E_STATE (STROP_TRAIN_ACCUM_STEPS in the middle of an accumulation).
 * Not thread-safe for one handle. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_double(strop_trainer *tr, int key,
                                                                double value);
/**
 * @brief Reads any knob as a double, exactly as set (STROP_TRAIN_IGNORE_INDEX rounded when
 * beyond 2^53: read it with strop_trainer_get_int()).
 * @param tr The trainer (only read). @param key A strop_train_knob. @param[out] value The value.
 * @return STROP_OK or STROP_E_INVALID_ARG (NULL, unknown knob). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_get_double(const strop_trainer *tr, int key,
                                                                double *value);
/** @brief Sets a float knob (as strop_trainer_set_double(), float knobs only).
 *  @param tr The trainer. @param key A float knob. @param value The value.
 *  @return STROP_OK or STROP_E_INVALID_ARG naming knob and value. @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_float(strop_trainer *tr, int key,
                                                               double value);
/** @brief Sets an int, enum or flag knob (exact for every int64 ignore_index).
 *  @param tr The trainer. @param key An int knob. @param value The value.
 *  @return STROP_OK, STROP_E_INVALID_ARG or STROP_E_STATE (as strop_trainer_set_double()).
 *  @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_int(strop_trainer *tr, int key,
                                                             int64_t value);
/** @brief Reads a float knob. @param tr The trainer. @param key A float knob.
 *  @param[out] value The value. @return STROP_OK or STROP_E_INVALID_ARG. @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_trainer_get_float(const strop_trainer *tr, int key,
                                                               double *value);
/** @brief Reads an int knob. @param tr The trainer. @param key An int knob.
 *  @param[out] value The value. @return STROP_OK or STROP_E_INVALID_ARG. @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_trainer_get_int(const strop_trainer *tr, int key,
                                                             int64_t *value);

/**
 * @brief The valid range of a trainer knob.
 * @param key A strop_train_knob.
 * @param[out] lo,hi Bounds (an infinite one means no limit); either may be NULL.
 * @param[out] flags strop_knob_flags bits (int, flag, enum, open bounds, infinity accepted);
 *                   may be NULL.
 * @return STROP_OK or STROP_E_INVALID_ARG (unknown knob). Thread-safe. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_range(int key, double *lo, double *hi,
                                                                int *flags);
/** @brief The knob's name ("loss", "clip_norm", ...), or NULL for an unknown key: the knobs are
 *  the keys 0, 1, ... up to the first NULL. @param key A key.
 *  @return A static string; thread-safe. @since 0.2 */
STROP_API const char *strop_trainer_knob_name(int key);
/**
 * @brief The key of a trainer knob by its name or its other spelling ("kind" for "loss",
 * "delta" for "huber_delta", "accumulate" for "accum_steps", as recipes write them).
 * @param name The name. @param[out] key The key.
 * @return STROP_OK; STROP_E_NOT_FOUND (listing the names); STROP_E_INVALID_ARG (NULL).
 * Thread-safe. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_find(const char *name, int *key);
/** @brief A knob's default. @param key A strop_train_knob. @param[out] value The default.
 *  @return STROP_OK or STROP_E_INVALID_ARG (NULL, unknown knob). Thread-safe. @since 0.2 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_default(int key, double *value);
/** @brief One line describing the knob, or NULL for an unknown key. @param key A key.
 *  @return A static string; thread-safe. @since 0.2 */
STROP_API const char *strop_trainer_knob_doc(int key);
/**
 * @brief Reads a knob's value from text: a number, an integer, true/false, or a loss name
 * ("cross_entropy", "mse", "l1", "huber", "bce_with_logits").
 * @param key A strop_train_knob. @param text The text. @param[out] value The value, for
 *            strop_trainer_set_double().
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, text of the wrong form, naming the
 *         form expected). Thread-safe. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_parse(int key, const char *text,
                                                                double *value);

/**
 * @brief Sets per-class weights of the cross-entropy loss (copied); NULL or n = 0 clears.
 * @return STROP_OK; STROP_E_INVALID_ARG (negative or non-finite weight); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_class_weights(strop_trainer *tr,
                                                                       const float *w, int64_t n);

/**
 * @brief One training micro-step: forward in train mode, loss, backward, and — every
 * STROP_TRAIN_ACCUM_STEPS calls — clipping, the optimizer step, zeroing gradients and the
 * per-step scheduler.
 *
 * Numeric guard: if the loss or any gradient is not finite, or the update would make a weight
 * or an optimizer value NaN or infinite, the step is skipped: the accumulated gradients are
 * dropped, every parameter and every buffer (BatchNorm's running statistics and batch count,
 * which the window's forwards had updated) and the model's RNG are put back as they were
 * before the accumulation window, the step counters and scheduler do not move, and
 * STROP_E_NUMERIC is returned with a sentence naming the step; the host may continue. The
 * optimizer's state is untouched when the loss or a gradient was not finite; when the update
 * itself overflowed, the moments of the values that stayed finite keep that update (see
 * docs/optim.md).
 * @param inputs  [N, input shape...] of the model: the declared per-sample shape, or another of
 *                its rank that every layer takes (images of another size, a shorter sequence);
 *                one that a layer refuses is STROP_E_SHAPE naming the layer.
 * @param targets Class indices [N] (or [N, T]) as floats for cross-entropy; else shaped like
 *                the output.
 * @param[out] loss The batch loss (may be NULL).
 * @return STROP_OK; STROP_E_SHAPE (input/target shape, naming both); STROP_E_INVALID_ARG (a
 *         class index out of range, naming the sample); STROP_E_NUMERIC; STROP_E_NOMEM.
 * A warm step makes no heap allocation. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_step(strop_trainer *tr,
                                                          const strop_tensor *inputs,
                                                          const strop_tensor *targets,
                                                          float *loss);

/**
 * @brief strop_trainer_step() on a batch of padded sequences: @p mask says which positions are
 *        tokens (1) and which padding (0), as for strop_model_forward_masked().
 *
 * Batches may differ in sequence length from step to step (and from the model's declared
 * input shape), up to what the model's layers accept; the targets follow the batch's output
 * (for a language model's [N, T] targets, this batch's T; padded positions take the loss's
 * ignore_index, -100 by default). A warm step of a shape already seen makes no heap allocation.
 * @param tr      The trainer.
 * @param inputs  [N, T, ...]; only read.
 * @param mask    [N, T] of 0 and 1, or NULL (strop_trainer_step()); only read.
 * @param targets As for strop_trainer_step(), for this batch's output shape.
 * @param[out] loss The batch loss (may be NULL).
 * @return As strop_trainer_step(); STROP_E_SHAPE also for a mask not [N, T] (naming both) or
 *         a layer that refuses the batch's length (naming it); STROP_E_INVALID_ARG for a mask
 *         value other than 0 or 1. Not thread-safe for one trainer or its model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_step_masked(strop_trainer *tr,
                                                                 const strop_tensor *inputs,
                                                                 const strop_tensor *mask,
                                                                 const strop_tensor *targets,
                                                                 float *loss);

/** Number of optimizer steps taken (after accumulation). -1 for NULL. @since 0.1 */
STROP_API int64_t strop_trainer_global_step(const strop_trainer *tr);

/* ---- a loss the host computes: forward, backward from the host's gradient, apply ---- */

/**
 * @brief The forward half of a training step whose loss the host computes (distillation,
 * a contrastive or a reward-weighted loss): runs the model in train mode on @p inputs, keeps
 * what the backward needs, and returns a copy of the output.
 *
 * strop_trainer_forward() + strop_trainer_backward() + strop_trainer_apply() is
 * strop_trainer_step() with the loss taken out: the same accumulation window
 * (STROP_TRAIN_ACCUM_STEPS), frozen parameters, backward stop below the lowest trainable node,
 * clipping, numeric guard and scheduler. The first forward of a window starts it from zero
 * gradients and notes the buffers (BatchNorm's running statistics) and the model's RNG, which a
 * skipped step puts back. The step's activations (and a copy of @p inputs) are held in the
 * model until strop_trainer_backward() or strop_trainer_discard_forward(); another forward of
 * this trainer replaces them, and any other forward on the model (strop_model_forward(), an
 * evaluation, strop_trainer_step()) drops them (the backward then returns STROP_E_STATE).
 * @param tr     The trainer; the forward of a step is pending after the call.
 * @param inputs [N, input shape...] of the model (or another per-sample shape of its rank that
 *               every layer takes, as for strop_trainer_step()); copied (may be freed after
 *               the call).
 * @param[out] out A new tensor [N, output shape...] holding the output, owned by the caller
 *                 (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_SHAPE (inputs of another shape, naming
 *         both); STROP_E_NOMEM. On error nothing is pending and the gradients are unchanged.
 * Not thread-safe for one trainer or its model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_forward(strop_trainer *tr,
                                                             const strop_tensor *inputs,
                                                             strop_tensor **out);

/**
 * @brief strop_trainer_forward() on a batch of padded sequences with its padding @p mask
 *        [N, T] (1 token, 0 padding; NULL: strop_trainer_forward()), as
 *        strop_trainer_step_masked() runs it. The mask is copied with the step.
 * @return As strop_trainer_forward(); STROP_E_SHAPE or STROP_E_INVALID_ARG for a bad mask, as
 *         strop_trainer_step_masked(). Not thread-safe for one trainer or its model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_forward_masked(strop_trainer *tr,
                                                                    const strop_tensor *inputs,
                                                                    const strop_tensor *mask,
                                                                    strop_tensor **out);

/**
 * @brief The backward half: takes d loss / d output from the host and adds the parameters'
 * gradients to the window's (trainable parameters only; the backward stops below the lowest
 * trainable node), then releases the forward's activations.
 *
 * As strop_trainer_step() does with its own loss's gradient, @p dout is divided by
 * STROP_TRAIN_ACCUM_STEPS (in float, on a copy), so that the micro-batches of a window add up
 * to the gradient of their mean: give the gradient of this micro-batch's loss. A @p dout with a
 * NaN or infinite value is a skipped step (as a non-finite loss is): the window's gradients are
 * dropped, the buffers and the RNG put back, the skip counted, and STROP_E_NUMERIC returned.
 * @param tr   The trainer, with a forward pending.
 * @param dout The gradient of the loss with respect to the output of strop_trainer_forward(),
 *             the output's shape [N, output shape...]; only read.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (no forward pending, or another
 *         forward on the model dropped it); STROP_E_SHAPE (@p dout's shape differs from the
 *         output's, naming both; the forward stays pending); STROP_E_NUMERIC (as above);
 *         STROP_E_NOMEM (the window is dropped as for a skipped step). Not thread-safe for one
 *         trainer or its model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_backward(strop_trainer *tr,
                                                              const strop_tensor *dout);

/**
 * @brief Ends the optimizer step of the window once STROP_TRAIN_ACCUM_STEPS backwards were
 * made since the last one (call it after every backward, as strop_trainer_step() would run):
 * the numeric guard on the gradients, clipping, the optimizer's update of every trainable
 * parameter, zeroing the gradients, the step count and the per-step scheduler. Before that
 * many backwards it does nothing and returns STROP_OK.
 *
 * The gradients it applies are whatever the parameters hold: the backwards' sum, and what the
 * host changed with strop_model_set_grad() since the window's first forward. A skipped step
 * (a gradient not finite, or an update that would make a weight NaN or infinite) leaves every
 * weight, buffer, optimizer value and counter as it was before the window and returns
 * STROP_E_NUMERIC, naming the step; the host may go on.
 * @param tr The trainer.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (a forward is pending: make its
 *         backward, or strop_trainer_discard_forward(), first); STROP_E_NUMERIC;
 *         STROP_E_NOMEM (nothing updated). Not thread-safe for one trainer or its model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_apply(strop_trainer *tr);

/**
 * @brief Drops a pending forward of strop_trainer_forward() without a backward, freeing its
 * activations (the host decided not to learn from that batch). What the forward did to the
 * buffers (BatchNorm's running statistics) and to the model's RNG stays, as after any
 * training-mode forward. Nothing pending is no error.
 * @param tr The trainer (NULL is a no-op). Not thread-safe for one trainer or its model.
 * @since 0.2
 */
STROP_API void strop_trainer_discard_forward(strop_trainer *tr);

/**
 * @brief Copies the gradient of a trainable parameter: what the backwards of the current
 * window have added up (strop_trainer_backward(), strop_trainer_step() before its update) and
 * the host has written (strop_model_set_grad()). Zero before any backward and after an
 * update (the trainer and strop_optimizer_zero_grad() clear them).
 *
 * A copy rather than a view: the trainer clears gradients lazily and reuses their memory
 * during an update, so a pointer into them would change meaning under the host.
 * @param model The model; only read.
 * @param name  A parameter's name as strop_model_tensor_name() gives it ("head.weight").
 * @param[out] out   Receives @p count floats (the parameter's layout).
 * @param count The parameter's number of values.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (not finalized; the parameter is
 *         frozen or a buffer: it has no gradient); STROP_E_NOT_FOUND (no such parameter, naming
 *         it); STROP_E_SHAPE (@p count differs, naming both). @p out is unchanged on error.
 * Thread-safe while no other thread changes the model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_get_grad(const strop_model *model,
                                                            const char *name, float *out,
                                                            size_t count);

/**
 * @brief Replaces the gradient of a trainable parameter with @p count floats of the host
 * (copied): a gradient made outside strop, or a backward's gradient changed (a penalty's term
 * added) before strop_trainer_apply() or strop_optimizer_step() applies it.
 *
 * The trainer starts each accumulation window from zero gradients at its first forward, so
 * write them after the backward of a window and before its apply; strop_optimizer_step() on
 * its own applies whatever is there. Values are stored as given: the trainer's guard checks
 * them at the apply, strop_optimizer_step() does not.
 * @param model The model.
 * @param name  A trainable parameter's name.
 * @param data  @p count floats in the parameter's layout; only read.
 * @param count The parameter's number of values.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (not finalized; frozen or a
 *         buffer); STROP_E_NOT_FOUND; STROP_E_SHAPE; STROP_E_NOMEM (the first gradient of the
 *         model could not be allocated). On error the model is unchanged. Not thread-safe on
 *         one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_grad(strop_model *model, const char *name,
                                                            const float *data, size_t count);

/* ---- metrics ---- */

/** @brief Results of an evaluation; read with strop_metrics_get(). */
typedef struct strop_metrics strop_metrics;

/** Metric keys of strop_metrics_get(). @since 0.1 */
typedef enum strop_metric_key {
  STROP_METRIC_LOSS = 0,      /**< Mean loss over the samples. */
  STROP_METRIC_ACCURACY = 1,  /**< Classification: fraction of correct top-1 predictions. */
  STROP_METRIC_TOP5 = 2,      /**< Classification: fraction with the target in the top 5. */
  STROP_METRIC_MACRO_F1 = 3,  /**< Classification: unweighted mean of per-class F1. */
  STROP_METRIC_MSE = 4,       /**< Regression: mean squared error. */
  STROP_METRIC_MAE = 5,       /**< Regression: mean absolute error. */
  STROP_METRIC_SAMPLES = 6    /**< Number of samples evaluated. */
} strop_metric_key;

/** Per-class metric kinds of strop_metrics_class(). @since 0.1 */
typedef enum strop_class_metric {
  STROP_CLASS_PRECISION = 0,
  STROP_CLASS_RECALL = 1,
  STROP_CLASS_F1 = 2,
  STROP_CLASS_SUPPORT = 3 /**< Samples whose target is the class. */
} strop_class_metric;

/**
 * @brief Evaluates the model (eval mode: dropout off, BatchNorm running statistics) on one
 * epoch of @p it: from its current position to the end of that epoch (a fresh, unshuffled
 * iterator gives every sample once, in order). The iterator's transforms apply.
 * @param[out] out The metrics, owned by the caller (strop_metrics_free()).
 * @return STROP_OK; STROP_E_SHAPE (batches and model disagree, naming both shapes);
 *         STROP_E_CALLBACK (a callback dataset failed); STROP_E_INVALID_ARG; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_eval(strop_trainer *tr,
                                                          strop_batch_iter *it,
                                                          strop_metrics **out);

/**
 * @brief strop_trainer_eval() over every sample of @p ds in order, in batches of
 * @p batch_size, without transforms.
 * @return As strop_trainer_eval(). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_eval_dataset(strop_trainer *tr,
                                                                  strop_dataset *ds,
                                                                  int64_t batch_size,
                                                                  strop_metrics **out);

/** @brief A metric (strop_metric_key); NaN when it does not apply or for NULL. @since 0.1 */
STROP_API double strop_metrics_get(const strop_metrics *m, int key);
/** @brief Number of classes (0 for regression). @since 0.1 */
STROP_API int64_t strop_metrics_num_classes(const strop_metrics *m);
/** @brief Per-class precision, recall, F1 or support; NaN when out of range. @since 0.1 */
STROP_API double strop_metrics_class(const strop_metrics *m, int64_t cls, int which);
/**
 * @brief Copies the confusion matrix (row = target, column = prediction), row-major, into
 * @p out of @p cap entries. @return The number of entries (C*C), or -1 for NULL. @since 0.1
 */
STROP_API int64_t strop_metrics_confusion(const strop_metrics *m, int64_t *out, int64_t cap);
/** @brief Frees the metrics; NULL is a no-op. @since 0.1 */
STROP_API void strop_metrics_free(strop_metrics *m);

/* ---- the fit loop ---- */

/** What a progress report is about. @since 0.1 */
typedef enum strop_progress_phase {
  STROP_PHASE_BATCH = 0,     /**< After an optimizer step. */
  STROP_PHASE_EPOCH_END = 1  /**< After an epoch and its validation. */
} strop_progress_phase;

/**
 * @brief Progress of strop_trainer_fit(), given to the progress callback. Fields are only
 * appended in later versions; read those within @c size.
 */
typedef struct strop_progress {
  size_t size;            /**< sizeof(strop_progress) of the library. */
  int phase;              /**< strop_progress_phase. */
  int64_t epoch;          /**< 0-based epoch index (the strop tool shows epoch + 1). */
  int64_t epochs;         /**< Epochs requested. */
  int64_t step;           /**< Batches done in this epoch. */
  int64_t steps;          /**< Batches per epoch. */
  int64_t global_step;    /**< Optimizer steps since the trainer was created or resumed. */
  double loss;            /**< Running mean training loss of this epoch. */
  double metric;          /**< Running training accuracy (classification) or NaN. */
  double lr;              /**< Current learning rate. */
  double samples_per_sec; /**< Training throughput of this epoch so far. */
  double val_loss;        /**< Epoch end: validation loss (NaN without validation set). */
  double val_metric;      /**< Epoch end: validation accuracy, or MAE for regression. */
  int64_t best_epoch;     /**< 0-based epoch with the best monitored value so far
                               (-1: none). */
  double elapsed;         /**< Seconds since fit started. */
} strop_progress;

/**
 * @brief Called by strop_trainer_fit() after each optimizer step and each epoch. Return 0 to
 * go on, non-zero to stop (fit then returns STROP_E_CANCELLED). Must not free the trainer.
 */
typedef int (*strop_progress_fn)(const strop_progress *p, void *user_data);

/** What early stopping and the best checkpoint watch. @since 0.1 */
typedef enum strop_monitor {
  STROP_MONITOR_VAL_LOSS = 0,     /**< Lower is better. */
  STROP_MONITOR_VAL_ACCURACY = 1, /**< Higher is better. */
  STROP_MONITOR_TRAIN_LOSS = 2    /**< Lower is better; for runs without validation data. */
} strop_monitor;

/** Options of strop_trainer_fit(); fill with strop_fit_options_init(). @since 0.1 */
typedef struct strop_fit_options {
  size_t size;                  /**< sizeof(strop_fit_options), set by _init. */
  int64_t epochs;               /**< Epochs to run, counted by the training iterator's epoch
                                     number (default 10). */
  int monitor;                  /**< strop_monitor (default val loss; train loss without
                                     validation data). */
  int64_t patience;             /**< Epochs without improvement before stopping; 0 = never. */
  double min_delta;             /**< Improvement smaller than this does not count. */
  int restore_best;             /**< 1: put back the best epoch's weights at the end. */
  int64_t checkpoint_every;     /**< Write checkpoint_path every N optimizer steps; 0 = off. */
  const char *checkpoint_path;  /**< Resumable checkpoint (also written at the end), or NULL. */
  const char *best_path;        /**< Checkpoint written whenever the monitored value improves. */
  strop_progress_fn progress;   /**< Callback, or NULL. */
  void *user_data;              /**< Passed to progress. */
  int64_t max_steps;            /**< Stop after this many optimizer steps in total; 0 = no
                                     limit (for tests and budgets). */
} strop_fit_options;

/** @brief Fills @p opt with the defaults above. @since 0.1 */
STROP_API void strop_fit_options_init(strop_fit_options *opt);

/**
 * @brief Trains on the batches of @p train (its batch size, shuffling, seed and transforms)
 * until its epoch number reaches opt->epochs, validating on one epoch of @p val (may be
 * NULL; use an unshuffled iterator) after each epoch; early stopping, best-weight restore,
 * checkpoints and progress reports as configured.
 *
 * The iterators are borrowed for the call. A checkpoint records @p train's position and
 * order, so after strop_trainer_load_checkpoint() the loop continues at the saved epoch and
 * batch with the same data, and the result is bit-identical to an uninterrupted run.
 * @return STROP_OK; STROP_E_CANCELLED (the callback asked to stop); the statuses of
 *         strop_trainer_step() and strop_trainer_eval() (a non-finite step is skipped and
 *         counted, not returned); STROP_E_IO (checkpoint). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_fit(strop_trainer *tr,
                                                         strop_batch_iter *train,
                                                         strop_batch_iter *val,
                                                         const strop_fit_options *opt);

/** @brief Optimizer steps skipped by the numeric guard since creation. -1 for NULL.
 *  @since 0.1 */
STROP_API int64_t strop_trainer_skipped_steps(const strop_trainer *tr);

/**
 * @brief A value of epoch @p epoch of the last fit: @p key is STROP_METRIC_LOSS (train loss),
 * STROP_METRIC_ACCURACY (train accuracy), or 100 + a metric key for the validation value
 * (100 + STROP_METRIC_LOSS = validation loss). NaN when absent. @since 0.1
 */
STROP_API double strop_trainer_history(const strop_trainer *tr, int64_t epoch, int key);
/** @brief Epochs recorded by the last fit (0 before any), or -1 for NULL. @since 0.1 */
STROP_API int64_t strop_trainer_history_len(const strop_trainer *tr);
/** @brief The best epoch of the last fit by its monitor, or -1. @since 0.1 */
STROP_API int64_t strop_trainer_best_epoch(const strop_trainer *tr);

/* ---- checkpoints ---- */

/**
 * @brief Writes a resumable checkpoint: model parameters and buffers, optimizer state,
 * scheduler state, the model's RNG, the step count and the fit loop's position and data
 * order. Atomic: a temporary file in the same folder, fsync, rename.
 * @return STROP_OK; STROP_E_IO naming the path; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_save_checkpoint(const strop_trainer *tr,
                                                                     const char *path);

/**
 * @brief Restores everything strop_trainer_save_checkpoint() wrote into this trainer's model,
 * optimizer and scheduler, which must have the same structure and the same optimizer kind.
 * The next fit continues where the saved one stopped.
 *
 * All or nothing: the file is read and the optimizer's and scheduler's state restored into
 * staging copies first; the model, optimizer, scheduler and counters change only when all of
 * it succeeded. A checkpoint written by another optimizer kind (its "optim.kind" metadata, or
 * for files of 0.1 the names of its state) is refused: its state would not resume exactly.
 * @param tr The trainer. @param path The checkpoint.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (not a strop checkpoint; another optimizer kind,
 *         naming both; a state tensor this optimizer does not keep); STROP_E_NOT_FOUND or
 *         STROP_E_SHAPE (a tensor missing or of another shape, naming it); STROP_E_NOMEM. On
 *         error nothing is changed. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_load_checkpoint(strop_trainer *tr,
                                                                     const char *path);

/* ---- export for inference ---- */

/** Flags of strop_model_export(); combine with |. @since 0.1 */
typedef enum strop_export_flags {
  STROP_EXPORT_DEFAULT = 0,      /**< Merge LoRA, drop dropout, fold BatchNorm. */
  STROP_EXPORT_NO_FOLD = 1,      /**< Keep BatchNorm nodes as they are. */
  STROP_EXPORT_KEEP_DROPOUT = 2  /**< Keep dropout nodes (identity in eval mode anyway). */
} strop_export_flags;

/**
 * @brief Saves a fine-tuned model for inference as a YAML spec plus a safetensors weights
 * file that strop_model_load_spec() + strop_model_load_weights() (strict) or PyTorch load
 * without the trainer.
 *
 * Works on a copy; @p model is not changed. On the copy:
 * - LoRA adapters are merged into the base weights and every `lora_linear` node becomes a
 *   plain `linear` of the same name (its `lora_A`/`lora_B` tensors are not written); a
 *   `multihead_attention` node with adapters on its projections is written without them
 *   (`lora_r` all 0), their products merged into the projection weights;
 * - `dropout` nodes are removed and their consumers read the dropout's input (unless
 *   STROP_EXPORT_KEEP_DROPOUT); a dropout that is the model's output is kept when its input
 *   cannot become the output;
 * - a `batchnorm2d` right after a `conv2d`, or a `batchnorm1d` on a [C] input right after a
 *   `linear`, is folded into that layer with its eval-mode affine map
 *   (y = (x - running_mean) / sqrt(running_var + eps) * weight + bias): the conv or linear
 *   gets a bias if it had none and the BatchNorm node is removed. Folding needs running
 *   statistics and a conv/linear whose output feeds only that BatchNorm; other BatchNorm
 *   nodes stay (as they do with STROP_EXPORT_NO_FOLD);
 * - the mode is eval.
 * The weights file carries the model's metadata (strop_model_set_meta(), since 0.2), so the
 * exported model keeps its preprocessing and class names.
 * Outputs of the exported model equal the eval-mode outputs of @p model up to float
 * rounding.
 *
 * Both files are written atomically (temporary file beside each, fsync, rename): the spec's
 * temporary file is written first, then the weights are committed, then the spec. Any
 * failure before that last rename leaves both paths as they were and no temporary file.
 * @param model        A finalized model; only read.
 * @param spec_path    The YAML spec to write.
 * @param weights_path The safetensors file to write (must differ from @p spec_path).
 * @param flags        STROP_EXPORT_DEFAULT or a combination of strop_export_flags.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or equal paths, unknown flags);
 *         STROP_E_STATE (not finalized); STROP_E_IO naming the path; STROP_E_NOMEM.
 * Thread-safe for distinct paths while no other thread modifies @p model. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_export(const strop_model *model,
                                                          const char *spec_path,
                                                          const char *weights_path, int flags);

/* ---- applying a trained classifier ----
 * Declared here rather than in model.h: it is evaluation's counterpart for one batch and sits
 * where evaluation does, above the data pipeline it shares with strop_trainer_eval() (the same
 * scale, resize and normalize transforms) and above the metadata the recipe runner writes;
 * model.h is the graph's own API, which knows nothing of data or recipes. */

/**
 * @brief The top classes a classifier gave each row of a batch (strop_model_predict()):
 *        output index, source label, name and probability, best first. Read-only once
 *        made; free with strop_prediction_free(). One handle from one thread at a time.
 */
typedef struct strop_prediction strop_prediction;

/**
 * @brief Applies a classifier to raw inputs as its training data were prepared, and returns
 *        the @p k most likely classes of every row with their names and probabilities.
 *
 * What the model's metadata says (docs/formats.md, model metadata; the recipe runner writes
 * it) is applied to @p input in the data pipeline's order and with its code: each sample has
 * the shape "input.shape" (default: the model's input shape), is multiplied by "input.scale",
 * resized as "input.resize" says and normalized by "input.normalize" — e.g. uint8 images
 * 0-255 as they come. The model then runs in eval mode (its mode is restored afterwards), its
 * outputs are taken as logits, and a softmax gives the probabilities. "classes" maps output
 * index i to its source label and name; without it the label is i and there is no name.
 * @param[in,out] model A finalized model whose output is one score per class ([C]); its
 *                      forward state is used, so not const.
 * @param[in] input     N samples: a float32 tensor whose element count is N times a sample's;
 *                      when its rank is 2 or more its first dimension must be N ([N, 28, 28]
 *                      and [N, 1, 28, 28] both hold [1, 28, 28] samples). Every value finite.
 *                      Only read.
 * @param[in] k         Classes per row, >= 1; more than the model has gives all of them.
 * @param[out] out      The prediction, owned by the caller (strop_prediction_free()); NULL
 *                      on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, k < 1, a NaN or infinite input value: the
 *         sentence names the row); STROP_E_SHAPE (the input does not hold whole samples, or
 *         the prepared samples do not fit the model, naming both shapes); STROP_E_STATE (not
 *         finalized); STROP_E_UNSUPPORTED (the output is not one score per class);
 *         STROP_E_FORMAT (a metadata entry strop reads here is not what docs/formats.md says,
 *         naming it); STROP_E_NUMERIC (the model gives a non-finite score: broken weights);
 *         STROP_E_NOMEM. The model is unchanged (but for its forward state). Not thread-safe
 *         on the same model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_predict(strop_model *model,
                                                           const strop_tensor *input, int k,
                                                           strop_prediction **out);

/**
 * @brief The number of rows (N).
 * @param[in] p The prediction.
 * @return N, or -1 for NULL. Thread-safe (a prediction is read-only). @since 0.2
 */
STROP_API int64_t strop_prediction_rows(const strop_prediction *p);

/**
 * @brief Classes per row: k, at most the model's class count.
 * @param[in] p The prediction.
 * @return It, or -1 for NULL. Thread-safe. @since 0.2
 */
STROP_API int strop_prediction_k(const strop_prediction *p);

/**
 * @brief The output index (0 .. C - 1) of the @p j-th most likely class of row @p row.
 * @param[in] p   The prediction.
 * @param[in] row 0 .. strop_prediction_rows() - 1.
 * @param[in] j   0 (the most likely) .. strop_prediction_k() - 1.
 * @return It, or -1 for NULL or @p row / @p j out of range. Thread-safe. @since 0.2
 */
STROP_API int64_t strop_prediction_class(const strop_prediction *p, int64_t row, int j);

/**
 * @brief The source label of that class (5 for Sandal when a recipe kept Fashion-MNIST's
 *        classes 5-9 as outputs 0-4): "classes" of the model's metadata, else the index.
 * @param[in] p   The prediction.
 * @param[in] row The row, as for strop_prediction_class().
 * @param[in] j   The rank of the class in the row, as for strop_prediction_class().
 * @return It, or -1 for bad arguments. Thread-safe. @since 0.2
 */
STROP_API int64_t strop_prediction_label(const strop_prediction *p, int64_t row, int j);

/**
 * @brief The softmax probability of that class, in [0, 1].
 * @param[in] p   The prediction.
 * @param[in] row The row, as for strop_prediction_class().
 * @param[in] j   The rank of the class in the row, as for strop_prediction_class().
 * @return It, or NaN for bad arguments. Thread-safe. @since 0.2
 */
STROP_API double strop_prediction_prob(const strop_prediction *p, int64_t row, int j);

/**
 * @brief The name of that class into @p buf, snprintf-style.
 * @param[in]  p   The prediction.
 * @param[in]  row The row, as for strop_prediction_class().
 * @param[in]  j   The rank of the class in the row, as for strop_prediction_class().
 * @param[out] buf Receives the name, NUL-terminated and truncated to @p cap; may be NULL when
 *                 @p cap is 0, to ask for the length.
 * @param[in]  cap Bytes available at @p buf.
 * @return The name's full length, or -1 when the class has no name (no "classes" metadata,
 *         or none for it) or for bad arguments (NULL @p buf with @p cap > 0 among them), with
 *         strop_last_error() saying which. Thread-safe. @since 0.2
 */
STROP_API int64_t strop_prediction_name(const strop_prediction *p, int64_t row, int j, char *buf,
                                        size_t cap);

/**
 * @brief Frees a prediction and the names it holds.
 * @param[in] p The prediction, or NULL (a no-op). @since 0.2
 */
STROP_API void strop_prediction_free(strop_prediction *p);

STROP_END_DECLS

#endif
