/* SPDX-License-Identifier: MIT */
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

/**
 * @file train.h
 * @brief Training steps, evaluation, the fit loop, checkpoints, and the results of a
 *        prediction.
 *
 * The strop_model_* functions the trainer's users also call — strop_model_get_grad(),
 * strop_model_set_grad(), strop_model_export() and strop_model_predict() — are declared in
 * model.h with every other strop_model_* function.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief Drives fine-tuning of one model with one optimizer (and optionally a scheduler).
 *
 * The trainer borrows them: they must outlive it, and together they count as one handle for
 * threads (@ref threads).
 * @since 0.1
 */
typedef struct strop_trainer strop_trainer;

/** @brief Loss functions (::STROP_TRAIN_LOSS). @since 0.1 */
typedef enum strop_loss_kind {
  STROP_LOSS_CROSS_ENTROPY = 1,  /**< Logits [N, C] (or [N, T, C]) vs class indices. */
  STROP_LOSS_MSE = 2,            /**< Mean squared error vs targets shaped like the output. */
  STROP_LOSS_L1 = 3,             /**< Mean absolute error. */
  STROP_LOSS_HUBER = 4,          /**< Huber / smooth L1 with STROP_TRAIN_HUBER_DELTA. */
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
  STROP_TRAIN_SCHED_PER_EPOCH = 7, /**< flag 0/1: step the scheduler per epoch, not per
                                        optimizer step (0). */
  STROP_TRAIN_SYNC_BATCHNORM = 8   /**< flag 0/1: in a data-parallel group
                                        (strop_trainer_set_dist()), the batch statistics of
                                        BatchNorms in training mode are those of the whole
                                        global batch, summed over the ranks — PyTorch's
                                        SyncBatchNorm (0: each rank's own rows). @since 0.2 */
} strop_train_knob;

/**
 * @brief Creates a trainer for @p model with @p opt, which must have been created on that
 *        same model. Puts the model in train mode while steps run; the default loss is
 *        cross-entropy.
 * @param[in,out] model The model; borrowed, must outlive the trainer.
 * @param[in,out] opt   An optimizer created on @p model; borrowed, must outlive the trainer.
 * @param[out]    out   The trainer, owned by the caller (strop_trainer_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL; @p opt was created on another model — it
 *         would update that model's parameters and never these); STROP_E_STATE (model not
 *         finalized); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_create(strop_model *model,
                                                            strop_optimizer *opt,
                                                            strop_trainer **out);

/**
 * @brief Frees the trainer (not the model, optimizer or scheduler).
 * @param[in] tr The trainer, or NULL (a no-op).
 * @since 0.1
 */
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
 * - A step skipped by the numeric guard on one rank is skipped on all; the running
 *   statistics of BatchNorms that train are averaged over the ranks after each step.
 * - With ::STROP_TRAIN_SYNC_BATCHNORM, strop_trainer_step() and strop_trainer_fit() normalise
 *   with the global batch's statistics: each BatchNorm in training mode sums its per-channel
 *   sums over the ranks (three all-reduces of 2 C + 1 doubles or fewer per layer and step,
 *   each after a small one by which the ranks learn whether one has failed its part), so
 *   the ranks' running statistics stay equal and the step is one process's step on the whole
 *   batch up to the order of the sums. A rank with no rows of a batch runs one stand-in row
 *   that adds nothing. strop_trainer_forward() (a host's loss) keeps each rank's own rows.
 * - strop_trainer_eval() and strop_trainer_eval_dataset() give each rank its share of every
 *   batch and sum the metrics: like the steps, they are collectives (every rank calls them).
 * - A rank whose part of a step fails (its share of the batch unreadable or refused, an
 *   allocation in the forward or the backward) returns its error; the others return
 *   STROP_E_IO saying how many ranks failed (and whether in the backward), and all drop the
 *   step, weights, buffers and optimizer state unchanged. So does an evaluation whose share
 *   fails on a rank. With a host's loss, every rank calls strop_trainer_backward() after
 *   each strop_trainer_forward() and strop_trainer_apply() after each backward, whatever the
 *   call before returned: a failure on one rank makes every rank's apply that ends the window
 *   fail (STROP_E_IO on the others; STROP_E_NUMERIC for a dout that is not finite) and drop
 *   the window.
 * Thread safety: one thread per trainer, as every trainer call.
 * @param[in,out] tr The trainer; no accumulation window or forward may be open.
 * @param[in,out] d  The group; borrowed, must outlive the trainer (or the next call), or NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (@p tr NULL); STROP_E_STATE (in the middle of an
 *         accumulation window or with a forward pending); the broadcast's failure
 *         (STROP_E_IO for MPI, STROP_E_CALLBACK for a custom group). Then the trainer keeps
 *         the group it had. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_dist(strop_trainer *tr, strop_dist *d);

/**
 * @brief Attaches a scheduler. It is stepped after each optimizer step, or after each epoch
 *        of strop_trainer_fit() with ::STROP_TRAIN_SCHED_PER_EPOCH; a reduce-on-plateau
 *        scheduler is fed the monitored validation metric once per epoch.
 * @param[in,out] tr    The trainer.
 * @param[in,out] sched A scheduler on the trainer's optimizer; borrowed, must outlive the
 *                      trainer or be detached first. NULL detaches.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL trainer, or a scheduler made on another
 *         optimizer than the trainer's).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_scheduler(strop_trainer *tr,
                                                                   strop_scheduler *sched);

/**
 * @brief Sets any knob as a double, as every object's _set_double does: a float knob any
 *        value in its range (finite: no trainer knob takes infinity), an int or enum knob an
 *        integral value (exact up to 2^53), a flag 0 or 1.
 * @param[in,out] tr    The trainer; changed only on success.
 * @param[in]     key   A ::strop_train_knob.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, NaN, infinite, out of range,
 *         not integral: the sentence names the function, knob, range and value);
 *         STROP_E_STATE (::STROP_TRAIN_ACCUM_STEPS in the middle of an accumulation).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_double(strop_trainer *tr, int key,
                                                                double value);
/**
 * @brief Reads any knob as a double, exactly as set (::STROP_TRAIN_IGNORE_INDEX rounded when
 *        beyond 2^53: read it with strop_trainer_get_int()).
 * @param[in]  tr    The trainer (only read).
 * @param[in]  key   A ::strop_train_knob.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_get_double(const strop_trainer *tr, int key,
                                                                double *value);
/**
 * @brief Sets a float knob (as strop_trainer_set_double(), float knobs only; it always took
 *        a double, so it is not deprecated).
 * @param[in,out] tr    The trainer; changed only on success.
 * @param[in]     key   A float knob.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG (as strop_trainer_set_double(), and for a knob that is
 *         not a float knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_float(strop_trainer *tr, int key,
                                                               double value);
/**
 * @brief Sets an int, enum or flag knob (exact for every int64 ignore_index).
 * @param[in,out] tr    The trainer; changed only on success.
 * @param[in]     key   An int, enum or flag knob.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG or STROP_E_STATE (as strop_trainer_set_double(); also
 *         INVALID_ARG for a float knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_int(strop_trainer *tr, int key,
                                                             int64_t value);
/**
 * @brief Reads a float knob.
 * @param[in]  tr    The trainer (only read).
 * @param[in]  key   A float knob.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not a float knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_get_float(const strop_trainer *tr, int key,
                                                               double *value);
/**
 * @brief Reads an int, enum or flag knob.
 * @param[in]  tr    The trainer (only read).
 * @param[in]  key   An int knob.
 * @param[out] value The value; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, not an int knob).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_get_int(const strop_trainer *tr, int key,
                                                             int64_t *value);

/**
 * @brief The valid range of a trainer knob.
 * @param[in]  key   A ::strop_train_knob.
 * @param[out] lo    Lower bound (an infinite one means no limit); may be NULL.
 * @param[out] hi    Upper bound (an infinite one means no limit); may be NULL.
 * @param[out] flags ::strop_knob_flags bits (int, flag, enum, open bounds, infinity
 *                   accepted); may be NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (unknown knob). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_range(int key, double *lo, double *hi,
                                                                int *flags);
/**
 * @brief The knob's name ("loss", "clip_norm", ...): the knobs are the keys 0, 1, ... up to
 *        the first NULL.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_trainer_knob_name(int key);
/**
 * @brief The key of a trainer knob by its name or its other spelling ("kind" for "loss",
 *        "delta" for "huber_delta", "accumulate" for "accum_steps", as recipes write them).
 * @param[in]  name The name.
 * @param[out] key  The key; unchanged on error.
 * @return STROP_OK; STROP_E_NOT_FOUND (listing the names); STROP_E_INVALID_ARG (NULL).
 *         Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_find(const char *name, int *key);
/**
 * @brief A knob's default.
 * @param[in]  key   A ::strop_train_knob.
 * @param[out] value The default; unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_default(int key, double *value);
/**
 * @brief One line describing the knob.
 * @param[in] key A key.
 * @return A static string, or NULL for an unknown key. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_trainer_knob_doc(int key);
/**
 * @brief Reads a knob's value from text: a number, an integer, true/false, or a loss name
 *        ("cross_entropy", "mse", "l1", "huber", "bce_with_logits").
 * @param[in]  key   A ::strop_train_knob.
 * @param[in]  text  The text.
 * @param[out] value The value, for strop_trainer_set_double(); unchanged on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, unknown knob, text of the wrong form, naming
 *         the form expected). Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_knob_parse(int key, const char *text,
                                                                double *value);

/**
 * @brief Sets per-class weights of the cross-entropy loss; NULL or @p n = 0 clears them.
 * @param[in,out] tr The trainer; unchanged on error.
 * @param[in]     w  @p n weights, finite and >= 0; copied.
 * @param[in]     n  Number of weights (the model's class count).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL trainer, NULL @p w with @p n > 0, a negative or
 *         non-finite weight); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_set_class_weights(strop_trainer *tr,
                                                                       const float *w, int64_t n);

/**
 * @brief Predicts the peak memory of one strop_trainer_step() of this trainer, in bytes: as
 *        strop_model_step_memory() on the trainer's model, with what the trainer knows of the
 *        step in place of what the model alone assumes.
 *
 * Set the trainer first (its loss, ::STROP_TRAIN_ACCUM_STEPS), then ask. The planned step
 * follows:
 * - the optimizer's state per trainable value (none for SGD, one for momentum, two for Adam
 *   and AdamW), so there is no count to pass;
 * - the trainer's loss: only the cross-entropy of one process runs fused with a last linear
 *   layer (one chunk of its output rows held); any other loss, or a data-parallel group, holds
 *   the whole output and its gradient. strop_model_step_memory() assumes the fused
 *   cross-entropy;
 * - its accumulation: a window of several micro-batches keeps the gradients apart from the
 *   activations (@p batch is then the micro-batch).
 *
 * A host that drives its own loss (strop_trainer_forward() and strop_trainer_backward()) holds
 * the whole output and its gradient, as a non-fused loss does. A data-parallel group's
 * buffers for summing the gradients (at most their size again) are not counted. Planning costs
 * about as much compute as a step on 6 samples. It changes nothing in the model or the trainer.
 *
 * @param[in,out] tr           The trainer (its model is borrowed for the planning).
 * @param[in]     batch        Samples per step (per micro-batch), in [1, 2^40].
 * @param[in]     sample_shape The per-sample input shape, or NULL for the model's; read only.
 * @param[in]     rank         Entries of @p sample_shape; ignored when it is NULL.
 * @param[out]    activations  The step memory (may be NULL).
 * @param[out]    peak         Weights and buffers + gradients + optimizer state + step memory
 *                             (may be NULL).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL trainer, batch out of range, a dimension < 1);
 *         STROP_E_STATE (a forward of strop_trainer_forward() awaits its backward);
 *         otherwise as strop_model_step_memory(). Outputs are written only on success. Not
 *         thread-safe on one trainer or model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_step_memory(strop_trainer *tr, int64_t batch,
                                                                 const int64_t *sample_shape,
                                                                 int rank, size_t *activations,
                                                                 size_t *peak);

/**
 * @brief Says before training whether a step of this trainer fits in @p limit bytes: as
 *        strop_model_check_memory() with the step strop_trainer_step_memory() plans.
 *
 * When the peak is over the limit, returns STROP_E_NOMEM with a sentence. It gives the
 * figures and what would make the step fit. The sentence names this function.
 *
 * @param[in,out] tr           The trainer (its model is borrowed for the planning).
 * @param[in]     batch        Samples per step (per micro-batch), in [1, 2^40].
 * @param[in]     sample_shape The per-sample input shape, or NULL for the model's; read only.
 * @param[in]     rank         Entries of @p sample_shape; ignored when it is NULL.
 * @param[in]     limit        Bytes the step may take, or 0 for the machine's limit (as
 *                             strop_model_check_memory()).
 * @return STROP_OK when it fits; STROP_E_NOMEM with the sentence when it does not; otherwise
 *         as strop_trainer_step_memory(), and with @p limit 0 as strop_memory_available() when
 *         no limit can be read. Nothing changes. Not thread-safe on one trainer or model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_check_memory(strop_trainer *tr,
                                                                  int64_t batch,
                                                                  const int64_t *sample_shape,
                                                                  int rank, size_t limit);

/**
 * @brief One training micro-step: forward in train mode, loss, backward, and — every
 *        ::STROP_TRAIN_ACCUM_STEPS calls — clipping, the optimizer step, zeroing gradients and
 *        the per-step scheduler.
 *
 * Numeric guard: if the loss or any gradient is not finite, or the update would make a weight
 * or an optimizer value NaN or infinite, the step is skipped: the accumulated gradients are
 * dropped, every parameter and every buffer (BatchNorm's running statistics and batch count,
 * which the window's forwards had updated) and the model's RNG are put back as they were
 * before the accumulation window, the step counters and scheduler do not move, and
 * STROP_E_NUMERIC is returned with a sentence naming the step; the host may continue. The
 * optimizer's state is untouched when the loss or a gradient was not finite; when the update
 * itself overflowed, the moments of the values that stayed finite keep that update (see
 * docs/optim.md). A warm step makes no heap allocation. It drops a pending forward of
 * strop_trainer_forward().
 * @param[in,out] tr      The trainer; its model, optimizer and scheduler change.
 * @param[in]     inputs  [N, input shape...] of the model: the declared per-sample shape, or
 *                        another of its rank that every layer takes (images of another size,
 *                        a shorter sequence); one that a layer refuses is STROP_E_SHAPE naming
 *                        the layer. Only read.
 * @param[in]     targets Class indices [N] (or [N, T]) as floats for cross-entropy; else
 *                        shaped like the output. Only read.
 * @param[out]    loss    The batch loss; may be NULL.
 * @return STROP_OK; STROP_E_SHAPE (input/target shape, naming both); STROP_E_INVALID_ARG
 *         (NULL, a class index out of range, naming the sample); STROP_E_NUMERIC (a skipped
 *         step); STROP_E_STATE (the attached scheduler refuses to step: a required knob unset,
 *         one-cycle past total_steps); STROP_E_NOMEM.
 * @since 0.1
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
 * @param[in,out] tr      The trainer.
 * @param[in]     inputs  [N, T, ...]; only read.
 * @param[in]     mask    [N, T] of 0 and 1, or NULL (strop_trainer_step()); only read.
 * @param[in]     targets As for strop_trainer_step(), for this batch's output shape.
 * @param[out]    loss    The batch loss (may be NULL).
 * @return STROP_OK, or as strop_trainer_step(); STROP_E_SHAPE also for a mask not [N, T]
 *         (naming both) or a layer that refuses the batch's length (naming it);
 *         STROP_E_INVALID_ARG for a mask value other than 0 or 1. Not thread-safe for one
 *         trainer or its model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_step_masked(strop_trainer *tr,
                                                                 const strop_tensor *inputs,
                                                                 const strop_tensor *mask,
                                                                 const strop_tensor *targets,
                                                                 float *loss);

/**
 * @brief strop_trainer_step() on a batch with its side inputs: the padding mask (as
 *        strop_trainer_step_masked()) and the token types (BERT's token_type_ids; see
 *        strop_side_inputs).
 * @param[in,out] tr      The trainer.
 * @param[in]     inputs  [N, T, ...]; only read.
 * @param[in]     side    Mask and token types (strop_side_inputs_init()), or NULL for
 *                        neither; only read.
 * @param[in]     targets As for strop_trainer_step(), for this batch's output shape.
 * @param[out]    loss    The batch loss (may be NULL).
 * @return STROP_OK, or as strop_trainer_step_masked(); STROP_E_SHAPE also for types not
 *         [N, T]; STROP_E_INVALID_ARG for side->size too small, a type that is not an integer
 *         >= 0, or one past a layer's table (naming the layer, the row and the value). Not
 *         thread-safe for one trainer or its model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_step_ext(strop_trainer *tr,
                                                              const strop_tensor *inputs,
                                                              const strop_side_inputs *side,
                                                              const strop_tensor *targets,
                                                              float *loss);

/**
 * @brief Number of optimizer steps taken (after accumulation).
 * @param[in] tr The trainer.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_trainer_global_step(const strop_trainer *tr);

/* ---- a loss the host computes: forward, backward from the host's gradient, apply ---- */

/**
 * @brief The forward half of a training step whose loss the host computes (distillation,
 *        a contrastive or a reward-weighted loss): runs the model in train mode on @p inputs,
 *        keeps what the backward needs, and returns a copy of the output.
 *
 * strop_trainer_forward() + strop_trainer_backward() + strop_trainer_apply() is
 * strop_trainer_step() with the loss taken out: the same accumulation window
 * (::STROP_TRAIN_ACCUM_STEPS), frozen parameters, backward stop below the lowest trainable
 * node, clipping, numeric guard and scheduler. The first forward of a window starts it from
 * zero gradients and notes the buffers (BatchNorm's running statistics) and the model's RNG,
 * which a skipped step puts back. The step's activations (and a copy of @p inputs) are held in
 * the model until strop_trainer_backward() or strop_trainer_discard_forward(); another forward
 * of this trainer replaces them, and any other forward on the model (strop_model_forward(), an
 * evaluation, strop_trainer_step()) drops them (the backward then returns STROP_E_STATE).
 * @param[in,out] tr     The trainer; the forward of a step is pending after the call.
 * @param[in]     inputs [N, input shape...] of the model (or another per-sample shape of its
 *                       rank that every layer takes, as for strop_trainer_step()); copied
 *                       (may be freed after the call).
 * @param[out]    out    A new tensor [N, output shape...] holding the output, owned by the
 *                       caller (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_SHAPE (inputs of another shape, naming
 *         both); STROP_E_NOMEM. On error nothing is pending and the gradients are unchanged.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_forward(strop_trainer *tr,
                                                             const strop_tensor *inputs,
                                                             strop_tensor **out);

/**
 * @brief strop_trainer_forward() on a batch of padded sequences with its padding @p mask
 *        [N, T] (1 token, 0 padding; NULL: strop_trainer_forward()), as
 *        strop_trainer_step_masked() runs it. The mask is copied with the step.
 * @param[in,out] tr     The trainer; the forward of a step is pending after the call.
 * @param[in]     inputs [N, T, ...]; copied.
 * @param[in]     mask   [N, T] of 0 and 1, or NULL; copied.
 * @param[out]    out    A new tensor [N, output shape...], owned by the caller; NULL on error.
 * @return STROP_OK, or as strop_trainer_forward(); STROP_E_SHAPE or STROP_E_INVALID_ARG for
 *         a bad mask, as strop_trainer_step_masked(). Not thread-safe for one trainer or its model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_forward_masked(strop_trainer *tr,
                                                                    const strop_tensor *inputs,
                                                                    const strop_tensor *mask,
                                                                    strop_tensor **out);

/**
 * @brief strop_trainer_forward() on a batch with its side inputs (padding mask and token
 *        types, see strop_side_inputs), as strop_trainer_step_ext() runs it. Both are copied
 *        with the step.
 * @param[in,out] tr     The trainer; the forward of a step is pending after the call.
 * @param[in]     inputs [N, T, ...]; copied.
 * @param[in]     side   Mask and token types, or NULL for neither; copied.
 * @param[out]    out    A new tensor [N, output shape...], owned by the caller; NULL on error.
 * @return STROP_OK, or as strop_trainer_forward(); STROP_E_SHAPE or STROP_E_INVALID_ARG for a
 *         bad mask or bad types, as strop_trainer_step_ext(). Not thread-safe for one trainer
 *         or its model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_forward_ext(strop_trainer *tr,
                                                                 const strop_tensor *inputs,
                                                                 const strop_side_inputs *side,
                                                                 strop_tensor **out);

/**
 * @brief The backward half: takes d loss / d output from the host and adds the parameters'
 *        gradients to the window's (trainable parameters only; the backward stops below the
 *        lowest trainable node), then releases the forward's activations.
 *
 * As strop_trainer_step() does with its own loss's gradient, @p dout is divided by
 * ::STROP_TRAIN_ACCUM_STEPS (in float, on a copy), so that the micro-batches of a window add
 * up to the gradient of their mean: give the gradient of this micro-batch's loss. A @p dout
 * with a NaN or infinite value is a skipped step (as a non-finite loss is): the window's
 * gradients are dropped, the buffers and the RNG put back, the skip counted, and
 * STROP_E_NUMERIC returned.
 * @param[in,out] tr   The trainer, with a forward pending.
 * @param[in]     dout The gradient of the loss with respect to the output of
 *                     strop_trainer_forward(), the output's shape [N, output shape...]; only
 *                     read.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (no forward pending, or another
 *         forward on the model dropped it); STROP_E_SHAPE (@p dout's shape differs from the
 *         output's, naming both; the forward stays pending); STROP_E_NUMERIC (as above);
 *         STROP_E_NOMEM (the window is dropped as for a skipped step).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_backward(strop_trainer *tr,
                                                              const strop_tensor *dout);

/**
 * @brief Ends the optimizer step of the window once ::STROP_TRAIN_ACCUM_STEPS backwards were
 *        made since the last one (call it after every backward, as strop_trainer_step() would
 *        run): the numeric guard on the gradients, clipping, the optimizer's update of every
 *        trainable parameter, zeroing the gradients, the step count and the per-step
 *        scheduler. Before that many backwards it does nothing and returns STROP_OK.
 *
 * The gradients it applies are whatever the parameters hold: the backwards' sum, and what the
 * host changed with strop_model_set_grad() since the window's first forward. A skipped step
 * (a gradient not finite, or an update that would make a weight NaN or infinite) leaves every
 * weight, buffer, optimizer value and counter as it was before the window and returns
 * STROP_E_NUMERIC, naming the step; the host may go on.
 * @param[in,out] tr The trainer.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (a forward is pending: make its
 *         backward, or strop_trainer_discard_forward(), first; or the attached scheduler
 *         refuses to step); STROP_E_NUMERIC; STROP_E_NOMEM (nothing updated).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_apply(strop_trainer *tr);

/**
 * @brief Drops a pending forward of strop_trainer_forward() without a backward, freeing its
 *        activations (the host decided not to learn from that batch). What the forward did to
 *        the buffers (BatchNorm's running statistics) and to the model's RNG stays, as after
 *        any training-mode forward. Nothing pending is no error.
 * @param[in,out] tr The trainer, or NULL (a no-op).
 * @since 0.2
 */
STROP_API void strop_trainer_discard_forward(strop_trainer *tr);

/* ---- metrics ---- */

/**
 * @brief Results of an evaluation; read with strop_metrics_get(). Read-only once made: its
 *        getters may run on several threads at once.
 * @since 0.1
 */
typedef struct strop_metrics strop_metrics;

/** @brief Metric keys of strop_metrics_get(). @since 0.1 */
typedef enum strop_metric_key {
  STROP_METRIC_LOSS = 0,           /**< Mean loss over the samples. */
  STROP_METRIC_ACCURACY = 1,       /**< Classification: fraction of correct top-1 predictions. */
  STROP_METRIC_TOP5 = 2,           /**< Classification: fraction with the target in the top 5. */
  STROP_METRIC_MACRO_F1 = 3,       /**< Classification: unweighted mean of per-class F1. */
  STROP_METRIC_MSE = 4,            /**< Regression: mean squared error. */
  STROP_METRIC_MAE = 5,            /**< Regression: mean absolute error. */
  STROP_METRIC_SAMPLES = 6,        /**< Number of samples evaluated. */
  STROP_METRIC_PERPLEXITY = 7,     /**< Cross-entropy: exp of the mean loss per counted prediction
                                    (a language model's per-token perplexity: positions whose
                                    target is the ignore_index, such as padding and prompts, do
                                    not count). @since 0.2 */
  STROP_METRIC_TOKEN_ACCURACY = 1, /**< Cross-entropy over sequences: the fraction of counted
                                        positions whose top-1 prediction is the target, the same
                                        value as ::STROP_METRIC_ACCURACY. @since 0.2 */
  STROP_METRIC_TOKENS = 8          /**< Cross-entropy: predictions counted (tokens, for a language
                                    model). @since 0.2 */
} strop_metric_key;

/** @brief Per-class metric kinds of strop_metrics_class(). @since 0.1 */
typedef enum strop_class_metric {
  STROP_CLASS_PRECISION = 0, /**< Of the samples predicted as the class, the share that is. */
  STROP_CLASS_RECALL = 1,    /**< Of the samples of the class, the share predicted as it. */
  STROP_CLASS_F1 = 2,        /**< Harmonic mean of precision and recall. */
  STROP_CLASS_SUPPORT = 3    /**< Samples whose target is the class. */
} strop_class_metric;

/**
 * @brief Evaluates the model (eval mode: dropout off, BatchNorm running statistics) on one
 *        epoch of @p it: from its current position to the end of that epoch (a fresh,
 *        unshuffled iterator gives every sample once, in order). The iterator's transforms
 *        apply. A pending forward of strop_trainer_forward() is dropped.
 * @param[in,out] tr  The trainer (its loss and model are used).
 * @param[in,out] it  The iterator; advanced to the end of its epoch.
 * @param[out]    out The metrics, owned by the caller (strop_metrics_free()); NULL on error.
 * @return STROP_OK; STROP_E_SHAPE (batches and model disagree, naming both shapes);
 *         STROP_E_INVALID_ARG (NULL; a target that is not a class index in range);
 *         STROP_E_CALLBACK (a callback dataset failed); STROP_E_UNSUPPORTED (cross-entropy over
 *         more than 65536 classes: no confusion matrix is kept that large); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_eval(strop_trainer *tr, strop_batch_iter *it,
                                                          strop_metrics **out);

/**
 * @brief strop_trainer_eval() over every sample of @p ds in order, in batches of
 *        @p batch_size, without transforms.
 * @param[in,out] tr         The trainer.
 * @param[in]     ds         The dataset; only read.
 * @param[in]     batch_size >= 1.
 * @param[out]    out        The metrics, owned by the caller (strop_metrics_free()); NULL on
 *                           error.
 * @return STROP_OK; the statuses of strop_trainer_eval() (STROP_E_INVALID_ARG also for
 *         @p batch_size < 1 or an empty dataset).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_eval_dataset(strop_trainer *tr,
                                                                  strop_dataset *ds,
                                                                  int64_t batch_size,
                                                                  strop_metrics **out);

/**
 * @brief A metric of the evaluation.
 * @param[in] m   The metrics.
 * @param[in] key A ::strop_metric_key.
 * @return The value; NaN when it does not apply (regression metrics of a classifier ...), for
 *         an unknown key or for NULL.
 * @since 0.1
 */
STROP_API double strop_metrics_get(const strop_metrics *m, int key);
/**
 * @brief Number of classes of the evaluation.
 * @param[in] m The metrics.
 * @return The count; 0 for regression or NULL.
 * @since 0.1
 */
STROP_API int64_t strop_metrics_num_classes(const strop_metrics *m);
/**
 * @brief Per-class precision, recall, F1 or support.
 * @param[in] m     The metrics.
 * @param[in] cls   0 .. strop_metrics_num_classes() - 1.
 * @param[in] which A ::strop_class_metric.
 * @return The value (0 when the class was never predicted or never the target); NaN for NULL,
 *         @p cls out of range, an unknown @p which, or metrics of a prediction per position
 *         over more than 1024 classes (no confusion matrix is kept, since 0.2).
 * @since 0.1
 */
STROP_API double strop_metrics_class(const strop_metrics *m, int64_t cls, int which);
/**
 * @brief Copies the confusion matrix (row = target, column = prediction), row-major.
 * @param[in]  m   The metrics.
 * @param[out] out Receives the first min(C*C, @p cap) entries; may be NULL when @p cap is 0.
 * @param[in]  cap Entries available at @p out.
 * @return The number of entries (C*C); 0 when no matrix is kept (a prediction per position
 *         over more than 1024 classes, such as a language model's vocabulary: since 0.2); -1 for NULL (or NULL @p out with
 *         @p cap > 0).
 * @since 0.1
 */
STROP_API int64_t strop_metrics_confusion(const strop_metrics *m, int64_t *out, int64_t cap);
/**
 * @brief Frees the metrics.
 * @param[in] m The metrics, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_metrics_free(strop_metrics *m);

/* ---- the fit loop ---- */

/** @brief What a progress report is about. @since 0.1 */
typedef enum strop_progress_phase {
  STROP_PHASE_BATCH = 0,    /**< After an optimizer step. */
  STROP_PHASE_EPOCH_END = 1 /**< After an epoch and its validation. */
} strop_progress_phase;

/**
 * @brief Progress of strop_trainer_fit(), given to the progress callback. Fields are only
 *        appended in later versions; read those within @c size.
 * @since 0.1
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
 * @brief Called by strop_trainer_fit() after each optimizer step and each epoch, on the
 *        thread that called fit. Must not free the trainer.
 * @param[in] p         The report; borrowed, valid during the call.
 * @param[in] user_data strop_fit_options::user_data.
 * @return 0 to go on, non-zero to stop (fit then returns STROP_E_CANCELLED).
 * @since 0.1
 */
typedef int (*strop_progress_fn)(const strop_progress *p, void *user_data);

/** @brief What early stopping and the best checkpoint watch. @since 0.1 */
typedef enum strop_monitor {
  STROP_MONITOR_VAL_LOSS = 0,     /**< Lower is better. */
  STROP_MONITOR_VAL_ACCURACY = 1, /**< Higher is better. */
  STROP_MONITOR_TRAIN_LOSS = 2    /**< Lower is better; for runs without validation data. */
} strop_monitor;

/**
 * @brief Options of strop_trainer_fit(); fill with strop_fit_options_init(), then change
 *        fields; fields are only ever appended.
 * @since 0.1
 */
typedef struct strop_fit_options {
  size_t size;                 /**< sizeof(strop_fit_options), set by _init. */
  int64_t epochs;              /**< The training iterator's epoch number to stop at
                                     (default 10): it counts over the iterator's life, so a
                                     second fit on the same iterator runs only the epochs
                                     still missing (none when it has reached @c epochs); a
                                     new iterator starts at 0. */
  int monitor;                 /**< strop_monitor (default val loss; train loss without
                                     validation data). */
  int64_t patience;            /**< Epochs without improvement before stopping; 0 = never;
                                     >= 0. */
  double min_delta;            /**< Improvement smaller than this does not count; finite,
                                     >= 0. */
  int restore_best;            /**< 1: put back the best epoch's weights at the end; 0 or 1. */
  int64_t checkpoint_every;    /**< Write checkpoint_path every N optimizer steps; 0 = off;
                                     >= 0. */
  const char *checkpoint_path; /**< Resumable checkpoint (also written at the end), or NULL. */
  const char *best_path;       /**< Checkpoint written whenever the monitored value improves. */
  strop_progress_fn progress;  /**< Callback, or NULL. */
  void *user_data;             /**< Passed to progress. */
  int64_t max_steps;           /**< Stop after this many optimizer steps in total; 0 = no
                                     limit (for tests and budgets); >= 0. A value out of its
                                     range here or above: STROP_E_INVALID_ARG naming it. */
} strop_fit_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_fit_options (and its size).
 * @param[out] opt The options, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_fit_options_init(strop_fit_options *opt);

/**
 * @brief Trains on the batches of @p train (its batch size, shuffling, seed and transforms)
 *        until its epoch number reaches opt->epochs, validating on one epoch of @p val after
 *        each epoch; early stopping, best-weight restore, checkpoints and progress reports as
 *        configured.
 *
 * A checkpoint records @p train's position and order, so after
 * strop_trainer_load_checkpoint() the loop continues at the saved epoch and batch with the
 * same data, and the result is bit-identical to an uninterrupted run. A non-finite step is
 * skipped and counted (strop_trainer_skipped_steps()), not returned.
 * @param[in,out] tr    The trainer.
 * @param[in,out] train The training batches; borrowed for the call, advanced.
 * @param[in,out] val   The validation batches (use an unshuffled iterator), or NULL; borrowed
 *                      for the call.
 * @param[in]     opt   Options (strop_fit_options_init()), or NULL for the defaults; only
 *                      read during the call.
 * @return STROP_OK; STROP_E_CANCELLED (the callback asked to stop); STROP_E_INVALID_ARG (NULL
 *         trainer or @p train, an uninitialised or inconsistent @p opt); the other statuses of
 *         strop_trainer_step() and strop_trainer_eval(); STROP_E_IO (a checkpoint cannot be
 *         written).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_fit(strop_trainer *tr,
                                                         strop_batch_iter *train,
                                                         strop_batch_iter *val,
                                                         const strop_fit_options *opt);

/**
 * @brief Optimizer steps skipped by the numeric guard since creation.
 * @param[in] tr The trainer.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_trainer_skipped_steps(const strop_trainer *tr);

/**
 * @brief A value of epoch @p epoch of the last fit.
 * @param[in] tr    The trainer.
 * @param[in] epoch 0 .. strop_trainer_history_len() - 1.
 * @param[in] key   ::STROP_METRIC_LOSS (train loss), ::STROP_METRIC_ACCURACY (train
 *                  accuracy), or 100 + a ::strop_metric_key for the validation value
 *                  (100 + STROP_METRIC_LOSS = validation loss).
 * @return The value; NaN when absent or for bad arguments.
 * @since 0.1
 */
STROP_API double strop_trainer_history(const strop_trainer *tr, int64_t epoch, int key);
/**
 * @brief Epochs recorded by the last fit.
 * @param[in] tr The trainer.
 * @return The count (0 before any), or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_trainer_history_len(const strop_trainer *tr);
/**
 * @brief The best epoch of the last fit by its monitor.
 * @param[in] tr The trainer.
 * @return The 0-based epoch, or -1 (none yet, or NULL).
 * @since 0.1
 */
STROP_API int64_t strop_trainer_best_epoch(const strop_trainer *tr);

/* ---- checkpoints ---- */

/**
 * @brief Writes a resumable checkpoint: model parameters and buffers, optimizer state,
 *        scheduler state, the model's RNG, the step count and the fit loop's position and
 *        data order. Atomic: a temporary file in the same folder, fsync, rename.
 * @param[in] tr   The trainer; only read.
 * @param[in] path The file to write.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (in the middle of an
 *         accumulation window: save after its optimizer step); STROP_E_IO naming the path;
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_save_checkpoint(const strop_trainer *tr,
                                                                     const char *path);

/**
 * @brief Restores everything strop_trainer_save_checkpoint() wrote into this trainer's model,
 *        optimizer and scheduler, which must have the same structure and the same optimizer
 *        kind. The next fit continues where the saved one stopped.
 *
 * All or nothing: the file is read and the optimizer's and scheduler's state restored into
 * staging copies first; the model, optimizer, scheduler and counters change only when all of
 * it succeeded. A checkpoint written by another optimizer kind (its "optim.kind" metadata, or
 * for files of 0.1 the names of its state) is refused: its state would not resume exactly.
 * @param[in,out] tr   The trainer.
 * @param[in]     path The checkpoint.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_IO; STROP_E_FORMAT (not a strop
 *         checkpoint; another optimizer kind, naming both; a state tensor this optimizer does
 *         not keep); STROP_E_NOT_FOUND or STROP_E_SHAPE (a tensor missing or of another shape,
 *         naming it); STROP_E_NOMEM. On error nothing is changed.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_trainer_load_checkpoint(strop_trainer *tr,
                                                                     const char *path);

/* ---- the results of strop_model_predict() (declared in model.h with the strop_prediction
 * type; it runs evaluation's data pipeline, which lives here in train) ---- */

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
 * @param[in] p The prediction, or NULL (a no-op).
 * @since 0.2
 */
STROP_API void strop_prediction_free(strop_prediction *p);

STROP_END_DECLS

#endif
