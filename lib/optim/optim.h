/* SPDX-License-Identifier: MIT */
/* strop — optimizers' and schedulers' internal API: creation over a bare parameter array
 * (tests, trainer), the named state listing that checkpoints save and restore, lr access. */
#ifndef STROP_OPTIM_INTERNAL_H
#define STROP_OPTIM_INTERNAL_H

#include "core/core.h"
#include "core/settings.h"
#include "layers/param.h"
#include "strop/optim.h"

/* Element types of a state entry. */
enum { STROP__STATE_F32 = 0, STROP__STATE_F64 = 1, STROP__STATE_I64 = 2 };

/* One named state tensor, borrowed from its optimizer or scheduler: valid until the next
 * step, sync, state_set or free. */
typedef struct strop__state_entry {
  const char *name;
  int dtype;  /* STROP__STATE_* */
  void *data; /* float *, double * or int64_t * */
  size_t numel;
} strop__state_entry;

/* An optimizer over a fixed array of parameters (borrowed; the array itself is copied). Only
 * those with trainable != 0, is_buffer == 0 and data != NULL are optimised; trainable flags
 * are re-read on every step. */
strop_status strop__optimizer_create_params(int kind, strop__param **params, int n,
                                            strop_optimizer **out);

/* State listing. Names: "optim.step" (I64, 1), then per trainable parameter with state, in
 * parameter order: "optim.<param>.step" (I64, 1) and its buffers (F32, numel of the param):
 * SGD momentum_buffer; Adam/AdamW exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad); RMSprop
 * square_avg, momentum_buffer (momentum > 0), grad_avg (centered); Adagrad sum. */
int strop__optim_state_count(const strop_optimizer *o);
/* Values of state the optimizer keeps per trainable value with its current settings (Adam 2,
 * with amsgrad 3; SGD 0, with momentum 1): the optimizer_slots of a memory estimate. */
int strop__optim_values_per_param(const strop_optimizer *o);
strop_status strop__optim_state_at(const strop_optimizer *o, int i, strop__state_entry *out);
/* Restores one entry by name (copying data). STROP_E_NOT_FOUND: no such trainable parameter
 * or buffer for this kind; STROP_E_SHAPE: wrong dtype or numel; STROP_E_NOMEM. */
strop_status strop__optim_state_set(strop_optimizer *o, const char *name, int dtype,
                                    const void *data, size_t numel);

/* strop_optimizer_step for a caller that owns the gradients and discards them afterwards (the
 * trainer): the update uses them as scratch (each gradient slot ends holding the old weight),
 * so that a step that meets a NaN or infinite value is refused whole: STROP_E_NUMERIC, every
 * weight and the step counters as before. The moments of a refused step are those of the
 * elements that stayed finite (advanced) and unchanged for the others. */
strop_status strop__optim_step_owning_grads(strop_optimizer *opt);
/* What the next step will allocate, allocated now: the slots of parameters new since the last
 * step and the state buffers of a first step (zero or initial, as the step would make them),
 * so that a data-parallel rank runs out of memory before the ranks agree on the step rather
 * than after (STROP_E_NOMEM, the optimizer as it was); the step then allocates nothing. Every
 * trainable parameter's, also those whose gradient is not made yet (the coming forward plans
 * it, or the backward makes it). */
strop_status strop__optim_prepare(strop_optimizer *opt);
/* The model an optimizer was created on (NULL for a parameter array). */
const strop_model *strop__optim_model(const strop_optimizer *o);

/* The learning rate as a double (PyTorch's group['lr']), for schedulers. */
double strop__optim_get_lr(const strop_optimizer *o);
void strop__optim_set_lr(strop_optimizer *o, double lr);
/* The momentum one-cycle cycles: SGD/RMSprop momentum, Adam/AdamW beta1; returns 0 when the
 * kind has none (Adagrad). */
int strop__optim_set_momentum(strop_optimizer *o, double m);
int strop__optim_get_momentum(const strop_optimizer *o, double *m);

/* Scheduler state: "sched.last_step", "sched.lr", "sched.momentum" (F64), "sched.t_cur",
 * "sched.t_i", "sched.best" (F64), "sched.num_bad", "sched.cooldown_counter",
 * "sched.started" (I64 unless noted). state_set writes lr/momentum back to the optimizer. */
/* The optimizer whose learning rate s sets. */
const strop_optimizer *strop__sched_optimizer(const strop_scheduler *s);
int strop__sched_state_count(const strop_scheduler *s);
strop_status strop__sched_state_at(const strop_scheduler *s, int i, strop__state_entry *out);
strop_status strop__sched_state_set(strop_scheduler *s, const char *name, int dtype,
                                    const void *data, size_t numel);

/* Staging for an all-or-nothing restore (trainer checkpoints): _stage makes a copy to restore
 * into (an optimizer with the same kind, knobs and parameters but no state; a scheduler with
 * the same knobs and state driving the staged optimizer); _commit moves the copy's contents
 * into the live handle, which keeps its address, and frees the copy. Commit cannot fail. */
strop_status strop__optim_stage(const strop_optimizer *o, strop_optimizer **out);
void strop__optim_commit(strop_optimizer *live, strop_optimizer *staged);
strop_status strop__sched_stage(const strop_scheduler *s, strop_optimizer *opt,
                                strop_scheduler **out);
void strop__sched_commit(strop_scheduler *live, strop_scheduler *staged);
/* "SGD", "Adam", "AdamW", "RMSprop", "Adagrad" (checkpoint metadata and messages). */
const char *strop__optim_kind_name(int kind);

/* 1 for a plateau scheduler (fed by strop_scheduler_step_metric), else 0. */
int strop__sched_is_plateau(const strop_scheduler *s);

/* A float knob as the double nearest its shortest round-tripping decimal (0.95f -> 0.95): what
 * the deprecated _set_float setters do with their argument. */
double strop__knob_widen(float v);

/* The settings tables (recipes and the docs generator read them through the engine). */
extern const strop__settings strop__optimizer_settings;
extern const strop__settings strop__scheduler_settings;

#endif
