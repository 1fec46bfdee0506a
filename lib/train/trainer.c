/* SPDX-License-Identifier: MIT */
/* strop — the trainer: a fine-tuning step (forward, loss, backward, guard, clip, update),
 * evaluation with metrics, and the fit loop with early stopping and exact-resume checkpoints. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/tensor_impl.h"
#include "data/data_impl.h"
#include "graph/graph.h"
#include "io/checkpoint.h"
#include "ops/dense.h"
#include "ops/loss.h"
#include "optim/optim.h"
#include "strop/train.h"
#include "surgery/surgery_impl.h"
#include "train/train_impl.h"

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the settings: declared once (see core/settings.h) ---- */

static const char *const LOSS_WORDS[] = {"cross_entropy",   "mse", "l1", "huber",
                                         "bce_with_logits", NULL};

#define KNOB(k) [k] = {.key = k, .ident = #k, .kinds = 1
static const strop__setting KNOBS[STROP__TRAIN_N_KNOBS] = {KNOB(STROP_TRAIN_LOSS),
                                                           .name = "loss",
                                                           .alias = "kind",
                                                           .type = STROP__SET_ENUM,
                                                           .def = STROP_LOSS_CROSS_ENTROPY,
                                                           .lo = STROP_LOSS_CROSS_ENTROPY,
                                                           .hi = STROP_LOSS_BCE_WITH_LOGITS,
                                                           .words = LOSS_WORDS,
                                                           .group = "loss",
                                                           .doc =
                                                               "The loss (a strop_loss_kind)."},
                            KNOB(STROP_TRAIN_LABEL_SMOOTHING), .name = "label_smoothing",
                            .type = STROP__SET_FLOAT, .lo = 0, .hi = 1, .group = "loss",
                            .doc = "Cross-entropy label smoothing."
}
, KNOB(STROP_TRAIN_IGNORE_INDEX),
    .name = "ignore_index", .type = STROP__SET_INT, .def = -100, .lo = -0x1p63, .hi = 0x1p63,
    .group = "loss", .doc = "Cross-entropy target that counts for nothing (any int64)."
}
, KNOB(STROP_TRAIN_HUBER_DELTA), .name = "huber_delta", .alias = "delta",
                                 .type = STROP__SET_FLOAT, .def = 1, .lo = 0, .hi = HUGE_VAL,
                                 .flags = STROP__KNOB_LO_OPEN, .group = "loss",
                                 .doc = "Huber loss: where the quadratic part becomes linear."
}
, KNOB(STROP_TRAIN_CLIP_NORM),
    .name = "clip_norm", .type = STROP__SET_FLOAT, .lo = 0, .hi = HUGE_VAL, .group = "update",
    .doc = "Clip the global L2 norm of the gradients to this (0: no clipping)."
}
, KNOB(STROP_TRAIN_CLIP_VALUE), .name = "clip_value", .type = STROP__SET_FLOAT, .lo = 0,
                                .hi = HUGE_VAL, .group = "update",
                                .doc = "Clip every gradient value to [-v, v] (0: no clipping)."
}
, KNOB(STROP_TRAIN_ACCUM_STEPS),
    .name = "accum_steps", .alias = "accumulate", .type = STROP__SET_INT, .def = 1, .lo = 1,
    .hi = 1000000, .group = "update",
    .doc = "Micro-batches whose gradients add up to one optimizer step."
}
, KNOB(STROP_TRAIN_SCHED_PER_EPOCH),
    .name = "sched_per_epoch", .type = STROP__SET_FLAG, .lo = 0, .hi = 1, .group = "update",
    .doc = "Step the scheduler once per epoch of strop_trainer_fit() instead of per step."
}
, KNOB(STROP_TRAIN_SYNC_BATCHNORM),
    .name = "sync_batchnorm", .type = STROP__SET_FLAG, .lo = 0, .hi = 1, .group = "update",
    .doc = "In a data-parallel group, BatchNorms in training mode normalise with the statistics "
           "of the whole global batch (SyncBatchNorm)."
}
,
}
;
#undef KNOB

const strop__settings strop__trainer_settings = {"trainer", NULL,  1,
                                                 NULL,      KNOBS, STROP__TRAIN_N_KNOBS};

static int dist_on(const strop_trainer *t);
static int dist_overlaps(const strop_trainer *t);
static strop_status dist_agree(strop_trainer *t, const char *fn, strop_status s);
static strop_status dist_backward_done(void *ctx, int node);
static void dist_abandon(strop_trainer *t);

strop_status strop_trainer_create(strop_model *model, strop_optimizer *opt, strop_trainer **out) {
  static const char fn[] = "strop_trainer_create";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!model || !opt)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "opt" : "model");
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  if (strop__optim_model(opt) != model)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the optimizer was created on another model: it "
                      "would update that model's parameters and never these; create it on this "
                      "one",
                      fn);
  strop_trainer *t = strop__calloc(1, sizeof *t);
  if (!t) return STROP__NOMEM(fn);
  t->m = model;
  t->opt = opt;
  strop__settings_defaults(&strop__trainer_settings, 0, t->kv);
  strop__loss_cfg_init(&t->loss, STROP_LOSS_CROSS_ENTROPY);
  t->accum = 1;
  t->best_epoch = -1;
  t->pending_epoch = -1;
  *out = t;
  return STROP_OK;
}

void strop_trainer_free(strop_trainer *t) {
  if (!t) return;
  strop__free(t->class_weights);
  strop__free(t->hist);
  strop__free(t->snapshot);
  strop__free(t->isnapshot);
  strop__free(t->ckpt_meta_key);
  strop__free(t->ckpt_meta_value);
  strop__free(t->bsnap);
  strop__free(t->bisnap);
  dist_abandon(t);
  strop__free(t->bucket);
  strop__free(t->dlist);
  strop__free(t->dlast);
  strop__free(t->bk);
  strop__free(t->obuf);
  strop__free(t);
}

strop_status strop_trainer_set_scheduler(strop_trainer *t, strop_scheduler *s) {
  if (!t) return strop__err(STROP_E_INVALID_ARG, "strop_trainer_set_scheduler: trainer is NULL");
  if (s && strop__sched_optimizer(s) != t->opt) /* it would set another optimizer's lr */
    return strop__err(STROP_E_INVALID_ARG,
                      "strop_trainer_set_scheduler: the scheduler was made on another "
                      "optimizer than the trainer's; make it on the trainer's optimizer");
  t->sched = s;
  return STROP_OK;
}

strop_status strop_trainer_set_dist(strop_trainer *t, strop_dist *d) {
  static const char fn[] = "strop_trainer_set_dist";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: trainer is NULL", fn);
  if (t->micro || t->host_pending)
    return strop__err(STROP_E_STATE, "%s: %s is open; finish it first", fn,
                      t->micro ? "an accumulation window" : "a forward");
  /* all ranks start from rank 0's weights and buffers, whatever each initialised or loaded */
  strop_model *m = t->m;
  for (int i = 0; d && d->size > 1 && i < m->n_params; i++) {
    strop__param *p = m->params[i];
    strop_status s = STROP_OK;
    /* a weight borrowed from a mapped file is read-only: a receiving rank copies it first (the
     * root only sends from it) */
    if (d->rank != 0 && strop__param_own(p))
      return strop__err(STROP_E_NOMEM, "%s: out of memory copying '%s' out of its mapped file",
                        fn, p->name);
    if (p->data) s = strop__dist_bcast(d, fn, p->data, p->numel * sizeof *p->data, 0);
    if (!s && p->idata) s = strop__dist_bcast(d, fn, p->idata, p->numel * sizeof *p->idata, 0);
    if (s) return s;
    if (d->rank != 0 && (p->data || p->idata)) p->version++; /* replaced, as a load would */
  }
  t->dist = d;
  return STROP_OK;
}

/* The one setter: the table checks the knob and the value, then the trainer's fields follow.
 * exact carries an int64 value that a double would round (ignore_index from _set_int). */
static strop_status set_knob(strop_trainer *t, const char *fn, int key, double v, int want,
                             const int64_t *exact) {
  const strop__setting *s;
  strop_status st = strop__settings_lookup(&strop__trainer_settings, fn, 0, key, &s);
  if (!st) st = strop__settings_want(&strop__trainer_settings, fn, s, want, "set");
  if (!st) st = strop__setting_check(fn, s, 0, v);
  if (st) return st;
  switch (key) {
    case STROP_TRAIN_LOSS: {
      strop__loss_cfg c;
      strop__loss_cfg_init(&c, (int)v);
      c.label_smoothing = t->loss.label_smoothing;
      c.ignore_index = t->loss.ignore_index;
      c.delta = t->loss.delta;
      t->loss = c;
      t->loss.class_weights = t->class_weights;
      t->loss.n_classes = t->n_class_weights;
      break;
    }
    case STROP_TRAIN_LABEL_SMOOTHING: t->loss.label_smoothing = (float)v; break;
    case STROP_TRAIN_IGNORE_INDEX: /* 2^63 is INT64_MAX as a double */
      t->loss.ignore_index = exact ? *exact : v >= 0x1p63 ? INT64_MAX : (int64_t)v;
      break;
    case STROP_TRAIN_HUBER_DELTA: t->loss.delta = (float)v; break;
    case STROP_TRAIN_CLIP_NORM: t->clip_norm = v; break;
    case STROP_TRAIN_CLIP_VALUE: t->clip_value = v; break;
    case STROP_TRAIN_ACCUM_STEPS:
      if (t->micro)
        return strop__err(STROP_E_STATE, "%s: cannot change accumulation in the middle of one",
                          fn);
      t->accum = (int64_t)v;
      t->m->grads_apart = t->accum > 1; /* as the step memory's prediction reads it */
      break;
    case STROP_TRAIN_SYNC_BATCHNORM: t->sync_bn = (int)v; break;
    default: t->sched_per_epoch = (int)v; break; /* STROP_TRAIN_SCHED_PER_EPOCH */
  }
  t->kv[key] = v;
  return STROP_OK;
}

/* 1 when a step's loss runs fused with the model's last node where the graph can (its output a
 * chunk of rows at a time): the cross-entropy of one process. The step and the prediction of
 * its memory both ask. */
static int loss_fuses(const strop_trainer *t) {
  return t->loss.kind == STROP_LOSS_CROSS_ENTROPY && !dist_on(t);
}

/* A step as strop_trainer_step runs it: the optimizer's values per weight, the gradients
 * apart when a window holds several micro-batches, the loss fused with the last node
 * (loss_fuses; fn names the caller in the errors). */
static strop_status trainer_how(const strop_trainer *t, const char *fn, strop__step_how *how) {
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: trainer is NULL", fn);
  if (t->host_pending) /* planning would drop the forward's activations */
    return strop__err(STROP_E_STATE,
                      "%s: a forward of strop_trainer_forward awaits its backward; plan before "
                      "it or after its backward",
                      fn);
  how->slots = strop__optim_values_per_param(t->opt);
  how->apart = t->accum > 1;
  how->rows = loss_fuses(t);
  return STROP_OK;
}

strop_status strop_trainer_step_memory(strop_trainer *tr, int64_t batch,
                                       const int64_t *sample_shape, int rank, size_t *activations,
                                       size_t *peak) {
  static const char fn[] = "strop_trainer_step_memory";
  strop__step_how how;
  strop_status s = trainer_how(tr, fn, &how);
  if (s) return s;
  return strop__step_memory(fn, tr->m, batch, sample_shape, rank, &how, activations, peak);
}

strop_status strop_trainer_check_memory(strop_trainer *tr, int64_t batch,
                                        const int64_t *sample_shape, int rank, size_t limit) {
  static const char fn[] = "strop_trainer_check_memory";
  strop__step_how how;
  strop_status s = trainer_how(tr, fn, &how);
  if (s) return s;
  return strop__check_memory(fn, tr->m, batch, sample_shape, rank, &how, limit);
}

static strop_status get_knob(const strop_trainer *t, const char *fn, int key, int want,
                             double *out) {
  const strop__setting *s;
  strop_status st = strop__settings_lookup(&strop__trainer_settings, fn, 0, key, &s);
  if (!st) st = strop__settings_want(&strop__trainer_settings, fn, s, want, "get");
  if (!st) *out = key == STROP_TRAIN_IGNORE_INDEX ? (double)t->loss.ignore_index : t->kv[key];
  return st;
}

strop_status strop_trainer_set_double(strop_trainer *t, int key, double value) {
  static const char fn[] = "strop_trainer_set_double";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: trainer is NULL", fn);
  return set_knob(t, fn, key, value, STROP__WANT_SCALAR, NULL);
}

strop_status strop_trainer_get_double(const strop_trainer *t, int key, double *value) {
  static const char fn[] = "strop_trainer_get_double";
  if (!t || !value) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  return get_knob(t, fn, key, STROP__WANT_SCALAR, value);
}

strop_status strop_trainer_set_float(strop_trainer *t, int key, double v) {
  static const char fn[] = "strop_trainer_set_float";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: trainer is NULL", fn);
  return set_knob(t, fn, key, v, STROP__WANT_FLOAT, NULL);
}

strop_status strop_trainer_set_int(strop_trainer *t, int key, int64_t v) {
  static const char fn[] = "strop_trainer_set_int";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: trainer is NULL", fn);
  /* 0.1 took any non-zero value as 1 for this flag; the int setter keeps doing so */
  if (key == STROP_TRAIN_SCHED_PER_EPOCH) v = v != 0;
  return set_knob(t, fn, key, (double)v, STROP__WANT_INT, &v);
}

strop_status strop_trainer_get_float(const strop_trainer *t, int key, double *v) {
  static const char fn[] = "strop_trainer_get_float";
  if (!t || !v) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  return get_knob(t, fn, key, STROP__WANT_FLOAT, v);
}

strop_status strop_trainer_get_int(const strop_trainer *t, int key, int64_t *v) {
  static const char fn[] = "strop_trainer_get_int";
  if (!t || !v) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  double d = 0.0;
  strop_status st = get_knob(t, fn, key, STROP__WANT_INT, &d);
  if (!st) *v = key == STROP_TRAIN_IGNORE_INDEX ? t->loss.ignore_index : (int64_t)d;
  return st;
}

strop_status strop_trainer_knob_range(int key, double *lo, double *hi, int *flags) {
  return strop__settings_range(&strop__trainer_settings, "strop_trainer_knob_range", 0, key, lo,
                               hi, flags);
}

const char *strop_trainer_knob_name(int key) {
  return strop__settings_name(&strop__trainer_settings, key);
}

const char *strop_trainer_knob_doc(int key) {
  return strop__settings_doc(&strop__trainer_settings, key);
}

strop_status strop_trainer_knob_find(const char *name, int *key) {
  return strop__settings_find(&strop__trainer_settings, "strop_trainer_knob_find", name, key);
}

strop_status strop_trainer_knob_default(int key, double *value) {
  return strop__settings_default_of(&strop__trainer_settings, "strop_trainer_knob_default", 0,
                                    key, value);
}

strop_status strop_trainer_knob_parse(int key, const char *text, double *value) {
  return strop__settings_parse(&strop__trainer_settings, "strop_trainer_knob_parse", key, text,
                               value);
}

strop_status strop_trainer_set_class_weights(strop_trainer *t, const float *w, int64_t n) {
  static const char fn[] = "strop_trainer_set_class_weights";
  if (!t || (n > 0 && !w)) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  float *copy = NULL;
  if (n > 0) {
    for (int64_t i = 0; i < n; i++)
      if (!(w[i] >= 0.0f) || !isfinite(w[i]))
        return strop__err(STROP_E_INVALID_ARG,
                          "%s: weight %lld is %g; weights must be finite "
                          "and >= 0",
                          fn, (long long)i, (double)w[i]);
    copy = strop__malloc((size_t)n * sizeof *copy);
    if (!copy) return STROP__NOMEM(fn);
    memcpy(copy, w, (size_t)n * sizeof *copy);
  }
  strop__free(t->class_weights);
  t->class_weights = copy;
  t->n_class_weights = n > 0 ? n : 0;
  t->loss.class_weights = copy;
  t->loss.n_classes = t->n_class_weights;
  return STROP_OK;
}

int64_t strop_trainer_global_step(const strop_trainer *t) { return t ? t->global_step : -1; }
int64_t strop_trainer_skipped_steps(const strop_trainer *t) { return t ? t->skipped : -1; }

/* ---- the step ---- */

/* What the loss sees of a per-sample output shape os: values per sample, classes (the last
 * dimension, cross-entropy) and targets per sample. */
static strop_status loss_geometry_of(const strop_trainer *t, const char *fn,
                                     const strop__shape *os, int64_t *per_sample,
                                     int64_t *classes, int64_t *tps) {
  *per_sample = (int64_t)strop__shape_numel(os);
  if (t->loss.kind == STROP_LOSS_CROSS_ENTROPY) {
    *classes = os->d[os->rank - 1];
    *tps = *per_sample / *classes;
    if (t->n_class_weights && t->n_class_weights != *classes)
      return strop__err(STROP_E_SHAPE, "%s: %lld class weights for a model with %lld outputs", fn,
                        (long long)t->n_class_weights, (long long)*classes);
  } else {
    *classes = 0;
    *tps = *per_sample;
  }
  return STROP_OK;
}

/* The same for the model's declared output shape. */
static strop_status loss_geometry(const strop_trainer *t, const char *fn, int64_t *per_sample,
                                  int64_t *classes, int64_t *tps) {
  return loss_geometry_of(t, fn, &t->m->nodes[t->m->n_nodes - 1].out_shape, per_sample, classes,
                          tps);
}

/* A batch as the model runs it: its per-sample input shape and its output's geometry. */
typedef struct batch_geom {
  strop__shape in;
  int64_t n, per, classes, tps;
} batch_geom;

/* Inputs x of the model's rank in a shape every layer takes (sequences of any length up to
 * what the position embeddings cover, images where the architecture allows), and a padding
 * mask [N, T] of 0 and 1 (or NULL): errors name fn; *g gets the batch's geometry. */
static strop_status check_batch(strop_trainer *t, const char *fn, const strop_tensor *x,
                                const strop_tensor *mask, const strop_tensor *types,
                                batch_geom *g) {
  strop_model *m = t->m;
  if (x->rank != m->in_shape.rank + 1) {
    char a[128], b[128];
    strop__shape full = {x->rank, {0}};
    memcpy(full.d, x->dims, sizeof x->dims);
    return strop__err(STROP_E_SHAPE, "%s: inputs have shape %s, the model expects [N, %s", fn,
                      strop__shape_str(&full, a, sizeof a),
                      strop__shape_str(&m->in_shape, b, sizeof b) + 1);
  }
  g->n = x->dims[0];
  g->in.rank = m->in_shape.rank;
  for (int i = 0; i < g->in.rank; i++) g->in.d[i] = x->dims[i + 1];
  strop__shape os;
  strop_status s = strop__model_output_for(m, &g->in, &os);
  if (s) {
    char a[128], b[128];
    strop__shape full = {x->rank, {0}};
    memcpy(full.d, x->dims, sizeof x->dims);
    strop__err_prefix("%s: inputs of shape %s (the model is declared for [N, %s)", fn,
                      strop__shape_str(&full, a, sizeof a),
                      strop__shape_str(&m->in_shape, b, sizeof b) + 1);
    return s;
  }
  if ((s = strop__model_check_mask(fn, mask, g->n, g->in.rank ? g->in.d[0] : 1)) ||
      (s = strop__model_check_types(fn, types, g->n, g->in.rank ? g->in.d[0] : 1)))
    return s;
  return loss_geometry_of(t, fn, &os, &g->per, &g->classes, &g->tps);
}

static int grads_finite(const strop_model *m) {
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    /* (a gradient its layer saw finite as it wrote it is not read again) */
    if (p->grad && !p->grad_checked && !strop__all_finite(p->grad, p->numel)) return 0;
  }
  return 1;
}

static void clip_grads(strop_trainer *t) {
  strop_model *m = t->m;
  if (t->clip_value > 0) {
    float c = (float)t->clip_value;
    for (int i = 0; i < m->n_params; i++) {
      strop__param *p = m->params[i];
      if (!p->grad) continue;
      for (size_t j = 0; j < p->numel; j++)
        p->grad[j] = p->grad[j] > c ? c : (p->grad[j] < -c ? -c : p->grad[j]);
    }
  }
  if (t->clip_norm > 0) {
    /* torch.nn.utils.clip_grad_norm_: total L2 norm over all grads, coef = max/(norm+1e-6) */
    double ss = 0.0;
    for (int i = 0; i < m->n_params; i++) {
      strop__param *p = m->params[i];
      if (!p->grad) continue;
      float s = 0.0f;
      for (size_t j = 0; j < p->numel; j++) s += p->grad[j] * p->grad[j];
      ss += s;
    }
    double norm = sqrt(ss);
    double coef = t->clip_norm / (norm + 1e-6);
    if (coef < 1.0) {
      float c = (float)coef;
      for (int i = 0; i < m->n_params; i++) {
        strop__param *p = m->params[i];
        if (!p->grad) continue;
        for (size_t j = 0; j < p->numel; j++) p->grad[j] *= c;
      }
    }
  }
}

/* Copies every buffer of the model (a training forward updates BatchNorm's running mean and
 * variance and its batch counter) and the model's RNG, at the start of an accumulation window.
 * They are small; the copies are reused, so a warm step allocates nothing. */
static strop_status buffers_take(strop_trainer *t) {
  strop_model *m = t->m;
  size_t nf = 0, ni = 0;
  t->snap_live = 0;
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (!p->is_buffer) continue;
    if (p->data) nf += p->numel;
    if (p->idata) ni += p->numel;
  }
  if (nf > t->bsnap_cap) {
    float *v = strop__realloc(t->bsnap, nf * sizeof *v);
    if (!v) return STROP__NOMEM("strop_trainer_step");
    t->bsnap = v;
    t->bsnap_cap = nf;
  }
  if (ni > t->bisnap_cap) {
    int64_t *v = strop__realloc(t->bisnap, ni * sizeof *v);
    if (!v) return STROP__NOMEM("strop_trainer_step");
    t->bisnap = v;
    t->bisnap_cap = ni;
  }
  size_t of = 0, oi = 0;
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (!p->is_buffer) continue;
    if (p->data) {
      memcpy(t->bsnap + of, p->data, p->numel * sizeof *p->data);
      of += p->numel;
    }
    if (p->idata) {
      memcpy(t->bisnap + oi, p->idata, p->numel * sizeof *p->idata);
      oi += p->numel;
    }
  }
  t->bsnap_rng = m->rng;
  t->snap_live = 1;
  return STROP_OK;
}

static void buffers_restore(strop_trainer *t) {
  strop_model *m = t->m;
  size_t of = 0, oi = 0;
  if (!t->snap_live) return;
  t->snap_live = 0;
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (!p->is_buffer) continue;
    if (p->data) {
      memcpy(p->data, t->bsnap + of, p->numel * sizeof *p->data);
      of += p->numel;
    }
    if (p->idata) {
      memcpy(p->idata, t->bisnap + oi, p->numel * sizeof *p->idata);
      oi += p->numel;
    }
  }
  m->rng = t->bsnap_rng;
}

/* Drops the accumulation window: its gradients, and what its forwards changed in the buffers
 * and the RNG, so that a skipped step leaves the model exactly as it was before the window. */
static strop_status drop_accumulation(strop_trainer *t) {
  dist_abandon(t);
  t->micro = 0;
  t->window_own_stats = 0;
  buffers_restore(t);
  return strop__model_zero_grad_lazy(t->m);
}

/* Before a training forward: the first of a window starts from zero gradients (lazily: they
 * are only marked, see strop__model_zero_grad_lazy) and notes the buffers and the RNG, which
 * a skipped step puts back. A forward of the host's still pending is dropped. */
static strop_status window_begin(strop_trainer *t) {
  strop_status s;
  if (t->host_pending) {
    strop__model_step_end(t->m);
    t->host_pending = 0;
  }
  if (t->micro == 0 && ((s = strop__model_zero_grad_lazy(t->m)) || (s = buffers_take(t))))
    return s;
  /* a window of several micro-batches keeps its gradients apart (planned with the first's
   * activations, they would be copied out by the second's forward each window), made at its
   * start, before any forward */
  t->m->grads_apart = t->accum > 1;
  if (t->micro == 0 && t->accum > 1 && (s = strop__model_sync_grads(t->m))) return s;
  return STROP_OK;
}

/* The backward of one micro-batch from dpred (arena memory: d loss / d output, n x per),
 * divided by the window's length; ends the step's activations and counts the micro-batch. A
 * failure drops the window. own: the trainer's own loss, which every rank of a group passes
 * the same (strop_trainer_backward's host loss does not): there the window's last backward
 * starts the gradients' sums as they become final (dist_backward_done) when the plan is made
 * (dist_prepare) and the group can, and the ranks then agree on the backward (dist_agree). */
static strop_status window_backward(strop_trainer *t, const char *fn, float *dpred, size_t cnt,
                                    int own) {
  strop_model *m = t->m;
  strop_status s;
  if (t->accum > 1) {
    float inv = 1.0f / (float)t->accum;
    for (size_t i = 0; i < cnt; i++) dpred[i] *= inv;
  }
  if (own && t->plan_live && dist_overlaps(t)) {
    m->bwd_done = dist_backward_done;
    m->bwd_done_ctx = t;
  }
  t->in_backward = 1;
  s = strop__model_backward(m, dpred);
  t->in_backward = 0;
  m->bwd_done = NULL;
  m->bwd_done_ctx = NULL;
  strop__model_step_end(m);
  if (own && dist_on(t)) {
    if ((s = dist_agree(t, fn, s))) return s;
  } else if (s) {
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s;
  }
  t->micro++;
  return STROP_OK;
}

/* ---- data parallel (a group of ranks, see strop_trainer_set_dist) ---- */

static int dist_on(const strop_trainer *t) { return t->dist && t->dist->size > 1; }

/* This rank's rows of a batch (a strop__batch_share_fn over the group). */
static void dist_rows(const void *d, int64_t n, int64_t *off, int64_t *cnt) {
  strop__dist_share(d, n, off, cnt);
}

/* In a group, makes it load only this rank's rows of each batch (t NULL: all rows again); 1
 * when it does. */
static int dist_split(const strop_trainer *t, strop_batch_iter *it) {
  int on = t && dist_on(t);
  strop__batch_iter_set_share(it, on ? dist_rows : NULL, on ? t->dist : NULL);
  return on;
}

/* 1: the gradients' sums can overlap the backward (a group with the asynchronous sum). Not
 * when batch statistics are summed over the group (t->m->group): a rank failing in the
 * backward tells the others in the one header it sends (dist_agree), which must meet their
 * next batch norm's header or their agreement after the same sums everywhere; bucket sums
 * started between those on the ranks that go on would not be matched on the failed one. */
static int dist_overlaps(const strop_trainer *t) {
  return strop__dist_async(t->dist) && !t->no_overlap && !t->m->group;
}

/* Floats per all-reduce: whole parameters are packed until the next would overflow it (one
 * larger than a bucket goes alone, in place), so a model of many small tensors (biases, norms,
 * LoRA adapters) costs a few messages per step, not one per tensor. */
enum { BUCKET_FLOATS = 1 << 20 };

/* The float buffers a training forward updates, into t->dlist: those of batch-statistics
 * layers whose statistics are not frozen, so a frozen BatchNorm's running statistics are never
 * sent (nor changed by the averaging). The list follows from the model alone, so every rank
 * makes the same one. */
static strop_status dist_buffers(strop_trainer *t, const char *fn, int *n_out) {
  strop_model *m = t->m;
  int n = 0, cap = 0;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1 && cap > t->dlist_cap) {
      strop__param **v = strop__realloc(t->dlist, (size_t)cap * sizeof *v);
      if (!v) return STROP__NOMEM(fn);
      t->dlist = v;
      t->dlist_cap = cap;
    }
    n = 0;
    for (int i = 0; i < m->n_nodes; i++) {
      strop__node *nd = &m->nodes[i];
      if (!(nd->vt->flags & STROP__LAYER_BATCHSTATS) || nd->frozen_stats) continue;
      for (int k = 0; k < nd->n_params; k++) {
        strop__param *p = &nd->params[k];
        if (!p->is_buffer || !p->data || p->tied) continue;
        if (pass == 1) t->dlist[n] = p;
        n++;
      }
    }
    cap = n;
  }
  *n_out = n;
  return STROP_OK;
}

/* Grows t->bucket to hold cap floats. */
static strop_status bucket_reserve(strop_trainer *t, const char *fn, size_t cap) {
  if (cap <= t->bucket_cap) return STROP_OK;
  float *b = strop__realloc(t->bucket, cap * sizeof *b);
  if (!b) return STROP__NOMEM(fn);
  t->bucket = b;
  t->bucket_cap = cap;
  return STROP_OK;
}

/* Averages the buffers of dist_buffers over the ranks, packed into t->bucket (one larger
 * than a bucket alone, in place). The lists and the bucket are allocated once, so a warm step
 * allocates nothing. */
static strop_status dist_mean_buffers(strop_trainer *t, const char *fn) {
  int n = 0;
  strop_status s = dist_buffers(t, fn, &n);
  if (s) return s;
  size_t total = 0;
  for (int i = 0; i < n; i++)
    if (t->dlist[i]->numel <= BUCKET_FLOATS) total += t->dlist[i]->numel;
  if ((s = bucket_reserve(t, fn, total < BUCKET_FLOATS ? total : BUCKET_FLOATS))) return s;
  size_t cap = t->bucket_cap, fill = 0;
  int first = 0;
  for (int i = 0; i <= n && !s; i++) {
    strop__param *p = i < n ? t->dlist[i] : NULL;
    if (p && p->numel > BUCKET_FLOATS) { /* alone, in place */
      s = strop__dist_sum_float(t->dist, fn, p->data, (int64_t)p->numel);
      continue;
    }
    if ((!p || fill + p->numel > cap) && fill > 0) { /* the bucket is full (or the last) */
      if ((s = strop__dist_sum_float(t->dist, fn, t->bucket, (int64_t)fill))) break;
      size_t o = 0;
      for (int j = first; j < i; j++) {
        strop__param *q = t->dlist[j];
        if (q->numel > BUCKET_FLOATS) continue;
        memcpy(q->data, t->bucket + o, q->numel * sizeof(float));
        o += q->numel;
      }
      fill = 0;
      first = i;
    }
    if (p) {
      memcpy(t->bucket + fill, p->data, p->numel * sizeof *p->data);
      fill += p->numel;
    }
  }
  if (s) {
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s;
  }
  float inv = 1.0f / (float)t->dist->size; /* the ranks' running statistics, averaged */
  for (int i = 0; i < n; i++)
    for (size_t j = 0; j < t->dlist[i]->numel; j++) t->dlist[i]->data[j] *= inv;
  return STROP_OK;
}

/* The gradients' buckets, into t->bk over t->dlist: the trainable tensors in the order the
 * backward makes their gradients final -- by the lowest node that uses them, highest first (a
 * tied tensor is final only after its last use, its lowest node) -- packed whole into buckets
 * of up to bucket_max floats; a larger tensor is a bucket alone, summed in place. The plan
 * follows from the model alone, so every rank makes the same one, and the overlapped and the
 * blocking path both sum these buckets: the same values in the same messages. */
static strop_status dist_plan(strop_trainer *t, const char *fn) {
  strop_model *m = t->m;
  const int np = m->n_params;
  const size_t bmax = t->bucket_max ? t->bucket_max : BUCKET_FLOATS;
  if (np > t->dlist_cap) {
    strop__param **v = strop__realloc(t->dlist, (size_t)np * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    t->dlist = v;
    t->dlist_cap = np;
  }
  if (2 * np > t->dlast_cap) {
    int *v = strop__realloc(t->dlast, 2 * (size_t)np * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    t->dlast = v;
    t->dlast_cap = 2 * np;
  }
  if (np > t->cap_bk) {
    strop__dist_bucket *v = strop__realloc(t->bk, (size_t)np * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    t->bk = v;
    t->cap_bk = np;
  }
  int *last = t->dlast, *key = t->dlast + np;
  /* m->params lists the untied slots in node order; a tied slot's use counts for its owner */
  for (int i = 0, k = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++)
      if (!m->nodes[i].params[j].tied) last[k++] = i;
  for (int i = 0; i < m->n_nodes; i++)
    for (int j = 0; j < m->nodes[i].n_params; j++) {
      const strop__param *o = m->nodes[i].params[j].tied;
      for (int q = 0; o && q < np; q++)
        if (m->params[q] == o) {
          if (i < last[q]) last[q] = i;
          break;
        }
    }
  int n = 0;
  for (int q = np - 1; q >= 0; q--) { /* nearly sorted already: an insertion sort */
    if (!m->params[q]->grad) continue;
    int e = n++;
    for (; e > 0 && key[e - 1] < last[q]; e--) {
      t->dlist[e] = t->dlist[e - 1];
      key[e] = key[e - 1];
    }
    t->dlist[e] = m->params[q];
    key[e] = last[q];
  }
  int nb = 0;
  size_t fill = 0, off = 0;
  for (int e = 0; e < n; e++) {
    const size_t numel = t->dlist[e]->numel;
    const int alone = numel > bmax;
    if (fill > 0 && (alone || fill + numel > bmax)) fill = 0; /* the open bucket is full */
    if (alone || fill == 0) {
      strop__dist_bucket *b = &t->bk[nb++];
      memset(b, 0, sizeof *b);
      b->first = e;
      b->off = off;
      b->alone = alone;
    }
    strop__dist_bucket *b = &t->bk[nb - 1];
    b->count++;
    b->floats += numel;
    b->ready = key[e]; /* the list is by falling key: the last one's is the bucket's */
    if (!alone) {
      fill += numel;
      off += numel;
    }
  }
  t->n_bk = nb;
  t->bk_next = 0;
  if (dist_overlaps(t) && off > t->obuf_cap) {
    float *v = strop__realloc(t->obuf, off * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    t->obuf = v;
    t->obuf_cap = off;
  }
  return STROP_OK;
}

/* The tensors of bucket b made final for the sum: a lazily zeroed gradient that the backward
 * never reached is zero, and none keeps its checked mark (another rank's values may not be
 * finite). Packs them into dst (NULL: the bucket is one tensor, summed in place); returns
 * what the sum runs over. */
static float *bucket_pack(strop_trainer *t, const strop__dist_bucket *b, float *dst) {
  size_t o = 0;
  for (int e = b->first; e < b->first + b->count; e++) {
    strop__param *p = t->dlist[e];
    strop__param_grad_fresh(p);
    p->grad_checked = 0;
    if (!dst) return p->grad;
    memcpy(dst + o, p->grad, p->numel * sizeof *dst);
    o += p->numel;
  }
  return dst;
}

static void bucket_unpack(strop_trainer *t, const strop__dist_bucket *b, const float *src) {
  for (int e = b->first; src && e < b->first + b->count; e++) {
    strop__param *p = t->dlist[e];
    memcpy(p->grad, src, p->numel * sizeof *src);
    src += p->numel;
  }
}

static strop_status bucket_start(strop_trainer *t, const char *fn, strop__dist_bucket *b) {
  float *v = bucket_pack(t, b, b->alone ? NULL : t->obuf + b->off);
  return strop__dist_isum_float(t->dist, fn, v, (int64_t)b->floats, &b->req);
}

/* The backward's hook while the last micro-batch of a window runs (graph.h: bwd_done): every
 * bucket whose gradients are final now starts its sum, and one started sum is tested, which
 * is how MPI's non-blocking collectives progress while the backward computes. */
static strop_status dist_backward_done(void *ctx, int node) {
  static const char fn[] = "strop_trainer_step";
  strop_trainer *t = ctx;
  strop_status s = STROP_OK;
  while (!s && t->bk_next < t->n_bk && t->bk[t->bk_next].ready >= node)
    s = bucket_start(t, fn, &t->bk[t->bk_next++]);
  for (int b = 0; !s && b < t->bk_next; b++)
    if (!t->bk[b].done) {
      s = strop__dist_test(t->dist, fn, t->bk[b].req, &t->bk[b].done);
      break;
    }
  return s;
}

/* Waits for every started sum of the window's plan (after a failure: their buffers are the
 * trainer's and the gradients', which must not be reused while MPI may write them). */
static void dist_abandon(strop_trainer *t) {
  if (!t->plan_live) return;
  for (int b = 0; b < t->bk_next; b++)
    (void)strop__dist_wait(t->dist, "strop_trainer_step", t->bk[b].req);
  t->plan_live = 0;
}

/* Sums the trainable gradients over the ranks, bucket by bucket (dist_plan). With a group
 * that offers the asynchronous sum, the buckets the backward has not started yet start now,
 * then the step waits for all of them; otherwise each is summed in turn through t->bucket. */
static strop_status dist_sum_grads(strop_trainer *t, const char *fn) {
  strop_status s = STROP_OK;
  if (!t->plan_live && (s = dist_plan(t, fn))) return s;
  t->plan_live = 0;
  if (dist_overlaps(t)) {
    while (!s && t->bk_next < t->n_bk) s = bucket_start(t, fn, &t->bk[t->bk_next++]);
    for (int b = 0; b < t->bk_next; b++) {
      strop_status w = strop__dist_wait(t->dist, fn, t->bk[b].req);
      if (!s) s = w;
      if (!s && !t->bk[b].alone) bucket_unpack(t, &t->bk[b], t->obuf + t->bk[b].off);
    }
  } else {
    size_t most = 0;
    for (int b = 0; b < t->n_bk; b++)
      if (!t->bk[b].alone && t->bk[b].floats > most) most = t->bk[b].floats;
    s = bucket_reserve(t, fn, most);
    for (int b = 0; !s && b < t->n_bk; b++) {
      const strop__dist_bucket *k = &t->bk[b];
      float *v = bucket_pack(t, k, k->alone ? NULL : t->bucket);
      s = strop__dist_sum_float(t->dist, fn, v, (int64_t)k->floats);
      if (!s && !k->alone) bucket_unpack(t, k, t->bucket);
    }
  }
  if (s) strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
  return s;
}

/* The divisor of the loss's mean over n rows (cross-entropy: the summed class weight of the
 * rows not ignored, as ops/loss.c divides; the others: every value), so that the ranks can
 * scale their local means into the mean over the global batch. */
static double loss_den(const strop_trainer *t, const float *y, int64_t n, int64_t per,
                       int64_t tps) {
  if (t->loss.kind != STROP_LOSS_CROSS_ENTROPY) return (double)n * (double)per;
  double w = 0.0;
  for (int64_t r = 0; r < n * tps; r++) {
    if ((double)y[r] == (double)t->loss.ignore_index) continue;
    int64_t c = (int64_t)y[r];
    w += t->loss.class_weights && c >= 0 && c < t->loss.n_classes
             ? (double)t->loss.class_weights[c]
             : 1.0;
  }
  return w;
}

/* What the ranks tell each other about a micro-batch before its backward. */
enum { DH_DEN, DH_BAD, DH_LOSS, DH_CORRECT, DH_FAIL, DH_N };

/* STROP_E_IO: n ranks of the group failed their part of the step (backward: learnt after the
 * ranks agreed on the loss, so in their backward), which every rank drops; prefixed with fn
 * and the step unless bare (a batch norm's sum: the layer's caller prefixes its sentence). */
static strop_status failed_ranks(const strop_trainer *t, const char *fn, double n, int backward,
                                 int bare) {
  strop_status s = strop__err(
      STROP_E_IO, "%g of %d ranks failed %s; rank %d dropped it too", n, t->dist->size,
      backward ? "in the backward of the step" : "their part of the step", t->dist->rank);
  if (!bare) strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
  return s;
}

/* Sums the ranks' headers h: on return h holds the global sums. A loss that is not finite on
 * any rank skips the step on every rank (the same decision everywhere); *loss_out and
 * *correct_out get the global batch's values. On failure the window is dropped. */
static strop_status dist_header(strop_trainer *t, const char *fn, double *h, double *loss_out,
                                int64_t *correct_out) {
  strop_status s = strop__dist_sum_double(t->dist, fn, h, DH_N);
  if (s) {
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s;
  }
  if (h[DH_FAIL] > 0) {
    drop_accumulation(t);
    return failed_ranks(t, fn, h[DH_FAIL], 0, 0);
  }
  if (h[DH_BAD] > 0) {
    t->skipped++;
    drop_accumulation(t);
    return strop__err(STROP_E_NUMERIC,
                      "%s: step %lld: the loss is not finite on %g of %d ranks; "
                      "the update was skipped on every rank and the weights and buffers are "
                      "unchanged",
                      fn, (long long)t->global_step, h[DH_BAD], t->dist->size);
  }
  *loss_out = h[DH_DEN] > 0 ? h[DH_LOSS] / h[DH_DEN] : 0.0;
  if (correct_out) *correct_out = (int64_t)h[DH_CORRECT];
  return STROP_OK;
}

/* This rank's part of a step failed with s (its sentence is set): the other ranks, waiting for
 * the header, are told, so that every rank drops the window rather than wait for this one. */
static strop_status dist_fail(strop_trainer *t, const char *fn, strop_status s) {
  if (!dist_on(t)) return s;
  if (t->group_failed) { /* another rank failed first and said so: every rank knows */
    t->group_failed = 0;
    (void)drop_accumulation(t);
    return s;
  }
  double h[DH_N] = {0};
  h[DH_FAIL] = 1;
  (void)strop__dist_sum_double(t->dist, fn, h, DH_N);
  (void)drop_accumulation(t);
  return s;
}

/* A group sum of a step's batch statistics (strop__group, STROP_TRAIN_SYNC_BATCHNORM). It
 * comes in the middle of the forward or the backward, where a rank that failed its part of the
 * step (out of memory) can no longer join the others: so the ranks first sum a header of the
 * size dist_fail sends — the failed rank's dist_fail is that header, with DH_FAIL set — and
 * only then the values. Those that learn of a failure there return an error and tell no one
 * again (t->group_failed). */
static strop_status group_sum(void *ctx, double *v, int64_t n) {
  static const char fn[] = "strop_trainer_step";
  strop_trainer *t = ctx;
  double h[DH_N] = {0};
  strop_status s = strop__dist_sum_double(t->dist, fn, h, DH_N);
  if (s) return s;
  if (h[DH_FAIL] > 0) {
    t->group_failed = 1;
    return failed_ranks(t, fn, h[DH_FAIL], t->in_backward, 1);
  }
  return strop__dist_sum_double(t->dist, fn, v, n);
}

/* Before the header of a window's last micro-batch in a group (the trainer's own loss): what
 * the gradients' sums, the averaging of running statistics and the update will allocate — the
 * buckets' plan and memory, the optimizer's state on a first step — allocated now, so that a
 * rank running out of memory there says so in the header (dist_fail) instead of failing after
 * the ranks agreed, alone. Leaves the plan live (nothing started yet). */
static strop_status dist_prepare(strop_trainer *t, const char *fn) {
  if (t->micro + 1 < t->accum) return STROP_OK;
  int n = 0;
  /* the gradients the forward did not plan, made as the backward would make them */
  strop_status s = strop__model_sync_grads(t->m);
  if (!s) s = dist_buffers(t, fn, &n);
  size_t need = 0;
  for (int i = 0; !s && t->window_own_stats && i < n; i++)
    if (t->dlist[i]->numel <= BUCKET_FLOATS) need += t->dlist[i]->numel;
  if (need > BUCKET_FLOATS) need = BUCKET_FLOATS;
  if (s || (s = dist_plan(t, fn))) return s;
  t->plan_live = 1;
  for (int b = 0; !dist_overlaps(t) && b < t->n_bk; b++)
    if (!t->bk[b].alone && t->bk[b].floats > need) need = t->bk[b].floats;
  if ((s = bucket_reserve(t, fn, need)) || (s = strop__optim_prepare(t->opt))) {
    dist_abandon(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
  }
  return s;
}

/* After a micro-batch's backward in a group (the trainer's own loss: every rank runs one, s
 * its status here): the ranks tell each other whether theirs went through, so that a rank
 * failing in its backward (out of memory) makes every rank drop the step instead of leaving
 * them waiting in the gradients' sums. First every rank starts the sums its backward has not
 * (with the plan live: all of them, on every rank, so the header comes after the same sums;
 * a failed rank's buckets hold what its backward left, dropped with the step). A rank that
 * learnt of a failure at a batch norm's sum in its backward (t->group_failed) sends nothing:
 * the failed rank's header was the one it met there. On failure the window is dropped. */
static strop_status dist_agree(strop_trainer *t, const char *fn, strop_status s) {
  if (t->group_failed) {
    t->group_failed = 0;
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s;
  }
  strop_status w = STROP_OK;
  if (t->plan_live && dist_overlaps(t))
    while (!w && t->bk_next < t->n_bk) w = bucket_start(t, fn, &t->bk[t->bk_next++]);
  double h[DH_N] = {0};
  h[DH_FAIL] = s != STROP_OK;
  if (!w) w = strop__dist_sum_double(t->dist, fn, h, DH_N);
  if (!s && !w && h[DH_FAIL] == 0) return STROP_OK;
  drop_accumulation(t);
  if (!s && !w) return failed_ranks(t, fn, h[DH_FAIL], 1, 0);
  strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
  return s ? s : w;
}

/* Once the window holds accum micro-batches: the guard, clipping, the update, zeroing, the
 * counters and the per-step scheduler. Before that, nothing. */
static strop_status window_end(strop_trainer *t, const char *fn) {
  strop_model *m = t->m;
  strop_status s;
  if (t->micro < t->accum) return STROP_OK;
  t->micro = 0;
  /* every rank then holds the same gradients and buffers, so the guard and the update below
   * decide and do the same everywhere */
  /* (after steps whose batch statistics were summed over the group the running statistics
   * are the same on every rank already) */
  if (dist_on(t) &&
      ((s = dist_sum_grads(t, fn)) || (t->window_own_stats && (s = dist_mean_buffers(t, fn))))) {
    drop_accumulation(t);
    return s;
  }
  t->window_own_stats = 0;
  if (!grads_finite(m)) {
    t->skipped++;
    drop_accumulation(t);
    return strop__err(STROP_E_NUMERIC,
                      "%s: step %lld: a gradient is not finite; the update was "
                      "skipped and the weights and buffers are unchanged",
                      fn, (long long)t->global_step);
  }
  clip_grads(t);
  /* the gradients are the trainer's: the update keeps the old weights in them, so an update
   * that would make a weight NaN or infinite is refused whole; so is one that runs out of
   * memory (a first step's optimizer state). Either way the window's forwards are undone too:
   * they moved running statistics and the generator */
  if ((s = strop__optim_step_owning_grads(t->opt))) {
    if (s == STROP_E_NUMERIC) t->skipped++;
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s;
  }
  t->snap_live = 0;
  if ((s = strop__model_zero_grad_lazy(m))) return s;
  t->global_step++;
  if (t->sched && !t->sched_per_epoch && !strop__sched_is_plateau(t->sched))
    if ((s = strop_scheduler_step(t->sched))) return s;
  return STROP_OK;
}

static strop_status micro_step(strop_trainer *t, const float *x, const strop__shape *shape,
                               const strop__side *side, const float *y, int64_t n,
                               double *loss_out, int64_t *correct_out);

/* ---- the cross-entropy fused with the model's last node (graph.h, strop__row_loss) ---- */

static void metrics_rows(strop_metrics *mt, const float *pred, const float *y, int64_t rows);

/* Rows of C predictions whose arg max (the first, on ties) is their target. */
static int64_t count_correct(const float *pred, const float *y, int64_t rows, int64_t C) {
  int64_t c = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *row = pred + r * C;
    int64_t best = 0;
    for (int64_t k = 1; k < C; k++)
      if (row[k] > row[best]) best = k;
    if ((float)best == y[r]) c++;
  }
  return c;
}

/* The trainer's loss as the model computes now: in mixed precision (compute dtype BF16) the
 * logits come from products on BF16 values, good to 3 significant digits, and the
 * cross-entropy's exponentials — on GPT-2's 50257 classes 5% of the step in double — run in
 * single precision (strop__loss_cfg.fp32_exp: within 2 ulp), as PyTorch's autocast runs them. */
static const strop__loss_cfg *step_loss(strop_trainer *t) {
  t->loss.fp32_exp = t->m->compute_dtype == STROP_DTYPE_BF16;
  return &t->loss;
}

/* The trainer's cross-entropy over the rows of the last node's output a chunk at a time: the
 * loss's sums (strop__ce_rows: strop__loss_eval's numbers), the rows predicted right, an
 * evaluation's per-row metrics, and the gradient scaled for accumulation after the mean's
 * scale, as window_backward scales a whole one. */
typedef struct ce_fused {
  strop__ce_rows ce;
  const float *y; /* every row's target */
  int count;      /* 1: count the rows predicted right into correct */
  int64_t correct;
  float inv;         /* 1 / accum (1: none) */
  strop_metrics *mt; /* evaluation: per-row metrics, or NULL */
} ce_fused;

static strop_status ce_fused_rows(void *ctx, int64_t r0, int64_t nr, int64_t cols, float *v,
                                  int grad) {
  ce_fused *f = ctx;
  if (f->count) f->correct += count_correct(v, f->y + r0, nr, cols);
  if (f->mt) metrics_rows(f->mt, v, f->y + r0, nr);
  strop__ce_rows_eval(&f->ce, r0, nr, v, grad);
  if (grad && f->inv != 1.0f)
    for (int64_t i = 0; i < nr * cols; i++) v[i] *= f->inv;
  return STROP_OK;
}

/* The rest of a micro-batch whose forward left the last node to the loss: the node's rows a
 * chunk at a time (logits, loss and gradient, the node's backward), the rest of the backward,
 * then what micro_step and window_backward do after a whole loss. Not in a group (the ranks
 * exchange the loss's divisor before their backward). */
static strop_status fused_step(strop_trainer *t, const char *fn, const float *y, int64_t n,
                               int64_t per, int64_t tps, double *loss_out, int64_t *correct_out) {
  strop_model *m = t->m;
  ce_fused f;
  memset(&f, 0, sizeof f);
  f.y = y;
  f.count = correct_out != NULL;
  f.inv = t->accum > 1 ? 1.0f / (float)t->accum : 1.0f;
  const strop__row_loss rl = {ce_fused_rows, &f};
  strop_status s = strop__ce_rows_begin(&f.ce, step_loss(t), n, per, y, tps);
  if (!s) s = strop__model_backward_rows(m, &rl);
  strop__model_step_end(m);
  if (s) {
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s;
  }
  const double loss = strop__ce_rows_loss(&f.ce);
  if (correct_out) *correct_out = f.correct;
  *loss_out = loss;
  if (!isfinite(loss)) { /* the backward ran: the window's gradients go with it */
    t->skipped++;
    drop_accumulation(t);
    return strop__err(STROP_E_NUMERIC,
                      "%s: step %lld: the loss is %s; the update was skipped "
                      "and the weights and buffers are unchanged",
                      fn, (long long)t->global_step, isnan(loss) ? "NaN" : "infinite");
  }
  t->micro++;
  return window_end(t, fn);
}

/* forward + loss (+ backward); stats of the batch for running metrics. In a group, the model's
 * random draws skip the other ranks' rows (t->rows_before, t->rows_after). */
strop_status strop__trainer_micro_step(strop_trainer *t, const float *x,
                                       const strop__shape *shape, const strop__side *side,
                                       const float *y, int64_t n, double *loss_out,
                                       int64_t *correct_out) {
  t->m->rows_before = t->rows_before;
  t->m->rows_after = t->rows_after;
  t->group = (strop__group){group_sum, t, 0};
  t->group_failed = 0;
  t->m->group = t->sync_bn && dist_on(t) ? &t->group : NULL;
  if (!t->m->group) t->window_own_stats = 1;
  strop_status s = micro_step(t, x, shape, side, y, n, loss_out, correct_out);
  t->m->rows_before = t->m->rows_after = 0;
  t->m->group = NULL;
  t->group_failed = 0;
  return s;
}

/* This rank's share of the batch is empty in a step whose batch statistics are summed over the
 * group: it runs one row of zeros as a stand-in, whose sums count for nothing (the group's
 * phantom), so that it joins every layer's sums, and takes a zero gradient back. */
static strop_status stand_in_step(strop_trainer *t, const char *fn, const strop__shape *shape,
                                  int64_t per, double *loss_out, int64_t *correct_out) {
  strop_model *m = t->m;
  const strop__shape *in = shape ? shape : &m->in_shape;
  float *x = strop__calloc(strop__shape_numel(in) ? strop__shape_numel(in) : 1, sizeof *x);
  if (!x) {
    drop_accumulation(t);
    return dist_fail(t, fn, STROP__NOMEM(fn));
  }
  const strop__act *out;
  t->group.phantom = 1;
  strop_status s = strop__model_forward_shaped(m, x, 1, in, 1, NULL, &out);
  float *dpred = s ? NULL : strop__arena_calloc(&m->arena, (size_t)per * sizeof(float));
  if (!s && !dpred) {
    strop__model_step_end(m);
    s = STROP__NOMEM(fn);
  }
  if (s) {
    strop__free(x);
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return dist_fail(t, fn, s);
  }
  if ((s = dist_prepare(t, fn))) {
    strop__model_step_end(m);
    strop__free(x);
    return dist_fail(t, fn, s);
  }
  double h[DH_N] = {0};
  if ((s = dist_header(t, fn, h, loss_out, correct_out))) {
    strop__model_step_end(m);
    strop__free(x);
    return s;
  }
  s = window_backward(t, fn, dpred, (size_t)per, 1);
  strop__free(x);
  return s ? s : window_end(t, fn);
}

static strop_status micro_step(strop_trainer *t, const float *x, const strop__shape *shape,
                               const strop__side *side, const float *y, int64_t n,
                               double *loss_out, int64_t *correct_out) {
  static const char fn[] = "strop_trainer_step";
  strop_model *m = t->m;
  int64_t per, classes, tps;
  strop__shape os;
  strop_status s = strop__model_output_for(m, shape ? shape : &m->in_shape, &os);
  if (s) {
    strop__err_prefix("%s", fn);
    return dist_fail(t, fn, s);
  }
  if ((s = loss_geometry_of(t, fn, &os, &per, &classes, &tps)) || (s = window_begin(t)))
    return dist_fail(t, fn, s);
  if (n == 0 && m->group) return stand_in_step(t, fn, shape, per, loss_out, correct_out);
  if (n == 0 && dist_on(t)) { /* this rank's share of the batch is empty: it still takes part */
    if ((s = dist_prepare(t, fn))) return dist_fail(t, fn, s);
    double h[DH_N] = {0};
    if ((s = dist_header(t, fn, h, loss_out, correct_out)) || (s = dist_agree(t, fn, STROP_OK)))
      return s;
    t->micro++;
    return window_end(t, fn);
  }
  const strop__act *out;
  /* a failure from here on drops the window: the forward may have moved running statistics
   * and the generator before it failed (out of memory halfway) */
  /* the cross-entropy runs fused with a linear head where the graph can (its logits a chunk of
   * rows at a time); STROP_FUSED_LOSS=0 in the environment turns it off */
  m->want_rows = loss_fuses(t);
  s = strop__model_forward_shaped(m, x, n, shape, 1, side, &out);
  m->want_rows = 0;
  if (s) {
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return dist_fail(t, fn, s);
  }
  if (m->rows_fused) return fused_step(t, fn, y, n, per, tps, loss_out, correct_out);
  float *dpred = strop__arena_alloc(&m->arena, (size_t)n * (size_t)per * sizeof(float));
  if (!dpred) {
    strop__model_step_end(m);
    drop_accumulation(t);
    return dist_fail(t, fn, STROP__NOMEM(fn));
  }
  double loss = 0.0;
  s = strop__loss_eval(step_loss(t), out->data, n, per, y, tps, &loss, dpred);
  if (s) {
    strop__model_step_end(m);
    drop_accumulation(t);
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return dist_fail(t, fn, s);
  }
  if (correct_out && classes > 0) *correct_out = count_correct(out->data, y, n * tps, classes);
  *loss_out = loss;
  if (dist_on(t)) {
    /* each rank's mean, weighted by its share of the divisor, adds up to the global mean */
    double den = loss_den(t, y, n, per, tps);
    double h[DH_N] = {0};
    h[DH_DEN] = den;
    h[DH_BAD] = !isfinite(loss);
    h[DH_LOSS] = isfinite(loss) ? loss * den : 0.0;
    h[DH_CORRECT] = correct_out && classes > 0 ? (double)*correct_out : 0.0;
    if ((s = dist_prepare(t, fn))) {
      strop__model_step_end(m);
      return dist_fail(t, fn, s);
    }
    if ((s = dist_header(t, fn, h, loss_out, correct_out))) {
      strop__model_step_end(m);
      return s;
    }
    float sc = h[DH_DEN] > 0 ? (float)(den / h[DH_DEN]) : 0.0f;
    for (size_t i = 0; i < (size_t)n * (size_t)per; i++) dpred[i] *= sc;
    if ((s = window_backward(t, fn, dpred, (size_t)n * (size_t)per, 1))) return s;
    return window_end(t, fn);
  }
  if (!isfinite(loss)) {
    strop__model_step_end(m);
    t->skipped++;
    drop_accumulation(t);
    return strop__err(STROP_E_NUMERIC,
                      "%s: step %lld: the loss is %s; the update was skipped "
                      "and the weights and buffers are unchanged",
                      fn, (long long)t->global_step, isnan(loss) ? "NaN" : "infinite");
  }
  if ((s = window_backward(t, fn, dpred, (size_t)n * (size_t)per, 1))) return s;
  return window_end(t, fn);
}

static strop_status step_side(const char *fn, strop_trainer *t, const strop_tensor *inputs,
                              const strop_tensor *mask, const strop_tensor *types,
                              const strop_tensor *targets, float *loss);

strop_status strop_trainer_step(strop_trainer *t, const strop_tensor *inputs,
                                const strop_tensor *targets, float *loss) {
  return step_side("strop_trainer_step", t, inputs, NULL, NULL, targets, loss);
}

strop_status strop_trainer_step_masked(strop_trainer *t, const strop_tensor *inputs,
                                       const strop_tensor *mask, const strop_tensor *targets,
                                       float *loss) {
  return step_side(mask ? "strop_trainer_step_masked" : "strop_trainer_step", t, inputs, mask,
                   NULL, targets, loss);
}

strop_status strop_trainer_step_ext(strop_trainer *t, const strop_tensor *inputs,
                                    const strop_side_inputs *side, const strop_tensor *targets,
                                    float *loss) {
  static const char fn[] = "strop_trainer_step_ext";
  const strop_tensor *mask, *types;
  strop_status s = strop__side_inputs_read(fn, side, &mask, &types);
  return s ? s : step_side(fn, t, inputs, mask, types, targets, loss);
}

static strop_status step_side(const char *fn, strop_trainer *t, const strop_tensor *inputs,
                              const strop_tensor *mask, const strop_tensor *types,
                              const strop_tensor *targets, float *loss) {
  if (!t || !inputs || !targets)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !t        ? "trainer"
                      : !inputs ? "inputs"
                                : "targets");
  batch_geom g;
  /* in a group, a rank whose batch is refused tells the others (dist_fail), who would wait */
  strop_status s = check_batch(t, fn, inputs, mask, types, &g);
  if (s) return dist_fail(t, fn, s);
  const int64_t n = g.n, tps = g.tps;
  if ((int64_t)targets->numel != n * tps || targets->dims[0] != n)
    return dist_fail(t, fn,
                     strop__err(STROP_E_SHAPE,
                                "%s: %lld targets for a batch of %lld needs %lld per sample "
                                "(%lld in all)",
                                fn, (long long)targets->numel, (long long)n, (long long)tps,
                                (long long)(n * tps)));
  double l = 0.0;
  const strop__side side = {mask ? mask->data : NULL, types ? types->data : NULL};
  s = strop__trainer_micro_step(t, inputs->data, &g.in, &side, targets->data, n, &l, NULL);
  if (loss) *loss = (float)l;
  if (s == STROP_E_NUMERIC) strop__log(STROP_LOG_DEBUG, "%s", strop_last_error()); /* skipped */
  return s;
}

/* ---- a loss the host computes ---- */

/* In a group, a host's forward or backward that failed on this rank (s, its sentence set)
 * marks the window (the first failure's status), which strop_trainer_apply then drops on
 * every rank (host_agree); its forward's moves of the buffers go back with it, so a buffer
 * copy is taken if the window began without one. Alone: s, nothing marked. */
static strop_status host_fail(strop_trainer *t, strop_status s) {
  if (!dist_on(t)) return s;
  if (!t->host_failed) t->host_failed = s;
  /* nothing moved yet, or moved back by a drop: as the window began (the copies' room is there
   * already, so this allocates nothing) */
  if (!t->snap_live) (void)buffers_take(t);
  return s;
}

/* strop_trainer_apply in a group, when the window is complete: what its sums and update will
 * allocate first (dist_prepare), then the ranks tell each other whether one of them failed a
 * forward or a backward of the window (host_fail) or could not prepare; then every rank drops
 * the window (a gradient that was not finite on a rank: a skipped step everywhere). */
static strop_status host_agree(strop_trainer *t, const char *fn) {
  if (!dist_on(t) || t->micro < t->accum) return STROP_OK;
  const strop_status mine = t->host_failed;
  t->host_failed = 0;
  const strop_status p = mine ? STROP_OK : dist_prepare(t, fn);
  double h[DH_N] = {0};
  h[DH_BAD] = mine == STROP_E_NUMERIC;
  h[DH_FAIL] = (mine && mine != STROP_E_NUMERIC) || p;
  strop_status s = strop__dist_sum_double(t->dist, fn, h, DH_N);
  if (!s && h[DH_FAIL] == 0 && h[DH_BAD] == 0) return STROP_OK;
  drop_accumulation(t);
  if (s || p) {
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    return s ? s : p;
  }
  if (mine)
    return strop__err(mine,
                      "%s: step %lld: a forward or backward of this window failed on "
                      "this rank (%s); every rank dropped the step",
                      fn, (long long)t->global_step, strop_status_str(mine));
  if (h[DH_FAIL] > 0) return failed_ranks(t, fn, h[DH_FAIL], 0, 0);
  t->skipped++;
  return strop__err(STROP_E_NUMERIC,
                    "%s: step %lld: dout is not finite on %g of %d ranks; the update was "
                    "skipped on every rank and the weights and buffers are unchanged",
                    fn, (long long)t->global_step, h[DH_BAD], t->dist->size);
}

/* The output's shape [N, os...] as dims; its rank, or -1 when too many. */
static int output_dims(const strop__shape *os, int64_t n, int64_t *dims) {
  if (os->rank + 1 > STROP_MAX_RANK) return -1;
  dims[0] = n;
  for (int i = 0; i < os->rank; i++) dims[i + 1] = os->d[i];
  return os->rank + 1;
}

static strop_status forward_side(const char *fn, strop_trainer *t, const strop_tensor *inputs,
                                 const strop_tensor *mask, const strop_tensor *types,
                                 strop_tensor **out);

strop_status strop_trainer_forward(strop_trainer *t, const strop_tensor *inputs,
                                   strop_tensor **out) {
  return forward_side("strop_trainer_forward", t, inputs, NULL, NULL, out);
}

strop_status strop_trainer_forward_masked(strop_trainer *t, const strop_tensor *inputs,
                                          const strop_tensor *mask, strop_tensor **out) {
  return forward_side(mask ? "strop_trainer_forward_masked" : "strop_trainer_forward", t, inputs,
                      mask, NULL, out);
}

strop_status strop_trainer_forward_ext(strop_trainer *t, const strop_tensor *inputs,
                                       const strop_side_inputs *side, strop_tensor **out) {
  static const char fn[] = "strop_trainer_forward_ext";
  const strop_tensor *mask, *types;
  if (out) *out = NULL;
  strop_status s = strop__side_inputs_read(fn, side, &mask, &types);
  return s ? s : forward_side(fn, t, inputs, mask, types, out);
}

static strop_status forward_side(const char *fn, strop_trainer *t, const strop_tensor *inputs,
                                 const strop_tensor *mask, const strop_tensor *types,
                                 strop_tensor **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!t || !inputs)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, t ? "inputs" : "trainer");
  strop_model *m = t->m;
  batch_geom g;
  strop_status s = check_batch(t, fn, inputs, mask, types, &g);
  if (s || (s = window_begin(t))) return host_fail(t, s);
  const int64_t n = g.n;
  /* the backward reads the input again: a copy, so the host may free its tensor meanwhile
   * (the forward copies the mask itself) */
  float *x = strop__arena_alloc(&m->arena, inputs->numel * sizeof *x);
  if (!x) return host_fail(t, STROP__NOMEM(fn));
  memcpy(x, inputs->data, inputs->numel * sizeof *x);
  const strop__act *o;
  const strop__side side = {mask ? mask->data : NULL, types ? types->data : NULL};
  s = strop__model_forward_shaped(m, x, n, &g.in, 1, &side, &o);
  if (s) {
    strop__model_step_end(m); /* also the input's copy when the forward failed early */
    strop__err_prefix("%s: step %lld", fn, (long long)t->global_step);
    if (dist_on(t)) return host_fail(t, s); /* what it moved goes back with the window */
    drop_accumulation(t);                   /* what the forward moved before it failed */
    return s;
  }
  int64_t dims[STROP_MAX_RANK];
  int rank = output_dims(&o->shape, n, dims);
  if (rank < 0) {
    strop__model_step_end(m);
    return host_fail(
        t, strop__err(STROP_E_SHAPE, "%s: the output's rank exceeds %d", fn, STROP_MAX_RANK));
  }
  s = strop_tensor_from_data(o->data, (size_t)n * strop__shape_numel(&o->shape), rank, dims, out);
  if (s) {
    strop__model_step_end(m);
    return host_fail(t, s == STROP_E_NOMEM ? STROP__NOMEM(fn) : s);
  }
  t->host_pending = 1;
  t->window_own_stats = 1; /* its running statistics from its own rows: averaged */
  return STROP_OK;
}

static strop_status host_backward(strop_trainer *t, const strop_tensor *dout);

strop_status strop_trainer_backward(strop_trainer *t, const strop_tensor *dout) {
  if (!t || !dout)
    return strop__err(STROP_E_INVALID_ARG, "strop_trainer_backward: %s is NULL",
                      t ? "dout" : "trainer");
  const int64_t micro = t->micro;
  strop_status s = host_backward(t, dout);
  if (s && dist_on(t)) {
    /* the window (dropped: its buffers back as it began, taken again) still ends at the
     * other ranks' apply, which drops it on every rank */
    t->micro = micro + 1;
    (void)host_fail(t, s);
  }
  return s;
}

static strop_status host_backward(strop_trainer *t, const strop_tensor *dout) {
  static const char fn[] = "strop_trainer_backward";
  strop_model *m = t->m;
  if (!t->host_pending || !m->have_forward) {
    int dropped = t->host_pending;
    t->host_pending = 0;
    return strop__err(STROP_E_STATE, "%s: %s", fn,
                      dropped ? "the forward's activations are gone: another forward ran on the "
                                "model since strop_trainer_forward (a model forward, an "
                                "evaluation or a step); run strop_trainer_forward again"
                              : "no forward is pending: call strop_trainer_forward first");
  }
  int64_t dims[STROP_MAX_RANK];
  int rank = output_dims(&m->acts[m->n_nodes - 1].shape, m->batch, dims),
      same = rank == dout->rank;
  for (int i = 0; same && i < rank; i++) same = dims[i] == dout->dims[i];
  if (!same) {
    char a[128], b[128];
    strop__shape want = {rank, {0}}, got = {dout->rank, {0}};
    memcpy(want.d, dims, (size_t)rank * sizeof *dims);
    memcpy(got.d, dout->dims, sizeof dout->dims);
    return strop__err(STROP_E_SHAPE, "%s: dout has shape %s, the output of the forward has %s",
                      fn, strop__shape_str(&got, a, sizeof a),
                      strop__shape_str(&want, b, sizeof b));
  }
  t->host_pending = 0;
  if (!strop__all_finite(dout->data, dout->numel)) {
    size_t i = 0;
    while (isfinite(dout->data[i])) i++;
    strop__model_step_end(m);
    t->skipped++;
    drop_accumulation(t);
    return strop__err(STROP_E_NUMERIC,
                      "%s: step %lld: dout[%zu] is %g; the update was skipped "
                      "and the weights and buffers are unchanged",
                      fn, (long long)t->global_step, i, (double)dout->data[i]);
  }
  /* a copy in the step's memory: the backward may use its output gradient as scratch */
  float *d = strop__arena_alloc(&m->arena, dout->numel * sizeof *d);
  if (!d) {
    strop__model_step_end(m);
    drop_accumulation(t);
    return STROP__NOMEM(fn);
  }
  memcpy(d, dout->data, dout->numel * sizeof *d);
  if (dist_on(t)) { /* the ranks' gradients are averaged, as PyTorch's DDP does */
    float inv = 1.0f / (float)t->dist->size;
    for (size_t i = 0; i < dout->numel; i++) d[i] *= inv;
  }
  return window_backward(t, fn, d, dout->numel, 0);
}

strop_status strop_trainer_apply(strop_trainer *t) {
  static const char fn[] = "strop_trainer_apply";
  if (!t) return strop__err(STROP_E_INVALID_ARG, "%s: trainer is NULL", fn);
  if (t->host_pending)
    return strop__err(STROP_E_STATE,
                      "%s: a forward is pending: pass its gradient to "
                      "strop_trainer_backward, or drop it with strop_trainer_discard_forward, "
                      "first",
                      fn);
  strop_status s = host_agree(t, fn);
  return s ? s : window_end(t, fn);
}

void strop_trainer_discard_forward(strop_trainer *t) {
  if (!t || !t->host_pending) return;
  strop__model_step_end(t->m);
  t->host_pending = 0;
}

/* ---- metrics ---- */
/* Classes per position up to which an evaluation of sequences keeps a confusion matrix (8 MB
 * of counts). */
#define STROP__MAX_CONFUSION 1024

struct strop_metrics {
  double loss_sum;
  int64_t samples; /* samples */
  int64_t rows;    /* predictions (samples x positions) */
  int64_t correct, top5;
  double se, ae;   /* regression sums */
  int64_t values;  /* regression values counted */
  double tok_loss; /* cross-entropy: batch losses weighted by their counted predictions */
  int64_t classes;
  int64_t *confusion; /* classes x classes */
};

strop_status strop__metrics_new(int64_t classes, int per_position, strop_metrics **out) {
  if (classes > 65536 && !per_position)
    return strop__err(STROP_E_UNSUPPORTED,
                      "metrics: %lld classes is more than a confusion "
                      "matrix is kept for",
                      (long long)classes);
  strop_metrics *mt = strop__calloc(1, sizeof *mt);
  if (!mt) return strop__err(STROP_E_NOMEM, "metrics: out of memory");
  mt->classes = classes;
  /* a language model's vocabulary (classes per position, tens of thousands of ids) keeps no
   * confusion matrix: its C x C counts would take gigabytes; per-class metrics are then NaN */
  if (classes > 0 && (!per_position || classes <= STROP__MAX_CONFUSION)) {
    mt->confusion = strop__calloc((size_t)(classes * classes), sizeof *mt->confusion);
    if (!mt->confusion) {
      strop__free(mt);
      return strop__err(STROP_E_NOMEM, "metrics: out of memory");
    }
  }
  *out = mt;
  return STROP_OK;
}

void strop_metrics_free(strop_metrics *mt) {
  if (!mt) return;
  strop__free(mt->confusion);
  strop__free(mt);
}

/* The per-row part of an evaluation's cross-entropy metrics: rows of C predictions and their
 * targets (the rows of an LM head's output a chunk at a time, or all of a batch). */
static void metrics_rows(strop_metrics *mt, const float *pred, const float *y, int64_t rows) {
  const int64_t C = mt->classes;
  for (int64_t r = 0; r < rows; r++) {
    const float *row = pred + r * C;
    int64_t tgt = (int64_t)y[r];
    if (tgt < 0 || tgt >= C) continue; /* ignored rows */
    int64_t best = 0;
    for (int64_t k = 1; k < C; k++)
      if (row[k] > row[best]) best = k;
    int64_t higher = 0;
    for (int64_t k = 0; k < C; k++)
      if (row[k] > row[tgt]) higher++;
    mt->rows++;
    mt->correct += best == tgt;
    mt->top5 += higher < 5;
    if (mt->confusion) mt->confusion[tgt * C + best]++;
  }
}

/* The per-batch part: n samples whose loss is batch_loss, `before` the rows counted before
 * the batch's. */
static void metrics_batch(strop_metrics *mt, int64_t n, double batch_loss, int64_t before) {
  mt->loss_sum += batch_loss * (double)n;
  mt->samples += n;
  /* the loss is a mean over the predictions not ignored (ignore_index): weighting it by their
   * count gives the per-token mean of a language model's eval */
  mt->tok_loss += batch_loss * (double)(mt->rows - before);
}

static void metrics_add(strop_metrics *mt, const float *pred, const float *y, int64_t n,
                        int64_t per, int64_t tps, double batch_loss) {
  if (mt->classes > 0) {
    const int64_t before = mt->rows;
    metrics_rows(mt, pred, y, n * tps);
    metrics_batch(mt, n, batch_loss, before);
    return;
  }
  mt->loss_sum += batch_loss * (double)n;
  mt->samples += n;
  for (int64_t i = 0; i < n * per; i++) {
    double d = (double)pred[i] - (double)y[i];
    mt->se += d * d;
    mt->ae += fabs(d);
  }
  mt->values += n * per;
}

double strop_metrics_get(const strop_metrics *mt, int key) {
  if (!mt) return NAN;
  switch (key) {
    case STROP_METRIC_LOSS: return mt->samples ? mt->loss_sum / (double)mt->samples : NAN;
    case STROP_METRIC_PERPLEXITY:
      return mt->classes > 0 && mt->rows ? exp(mt->tok_loss / (double)mt->rows) : NAN;
    case STROP_METRIC_TOKENS: return mt->classes > 0 ? (double)mt->rows : NAN;
    case STROP_METRIC_ACCURACY: return mt->rows ? (double)mt->correct / (double)mt->rows : NAN;
    case STROP_METRIC_TOP5: return mt->rows ? (double)mt->top5 / (double)mt->rows : NAN;
    case STROP_METRIC_MACRO_F1: {
      if (!mt->confusion || !mt->rows) return NAN;
      double s = 0.0;
      for (int64_t c = 0; c < mt->classes; c++) {
        double f = strop_metrics_class(mt, c, STROP_CLASS_F1);
        s += isnan(f) ? 0.0 : f;
      }
      return s / (double)mt->classes;
    }
    case STROP_METRIC_MSE: return mt->values ? mt->se / (double)mt->values : NAN;
    case STROP_METRIC_MAE: return mt->values ? mt->ae / (double)mt->values : NAN;
    case STROP_METRIC_SAMPLES: return (double)mt->samples;
    default: return NAN;
  }
}

int64_t strop_metrics_num_classes(const strop_metrics *mt) { return mt ? mt->classes : 0; }

double strop_metrics_class(const strop_metrics *mt, int64_t cls, int which) {
  if (!mt || !mt->confusion || cls < 0 || cls >= mt->classes) return NAN;
  int64_t C = mt->classes, tp = mt->confusion[cls * C + cls], row = 0, col = 0;
  for (int64_t k = 0; k < C; k++) {
    row += mt->confusion[cls * C + k];
    col += mt->confusion[k * C + cls];
  }
  double p = col ? (double)tp / (double)col : 0.0;
  double r = row ? (double)tp / (double)row : 0.0;
  switch (which) {
    case STROP_CLASS_PRECISION: return col ? p : 0.0;
    case STROP_CLASS_RECALL: return row ? r : 0.0;
    case STROP_CLASS_F1: return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    case STROP_CLASS_SUPPORT: return (double)row;
    default: return NAN;
  }
}

int64_t strop_metrics_confusion(const strop_metrics *mt, int64_t *out, int64_t cap) {
  if (!mt || (!out && cap > 0)) return -1;
  if (!mt->confusion) return 0;
  int64_t n = mt->classes * mt->classes;
  for (int64_t i = 0; i < n && i < cap; i++) out[i] = mt->confusion[i];
  return n;
}

/* Sums a rank's metrics over the group, so every rank holds those of the whole data. */
static strop_status dist_sum_metrics(strop_trainer *t, const char *fn, strop_metrics *mt,
                                     strop_status st) {
  enum { FIXED = 9 };
  /* a vocabulary's per-position metrics keep no confusion matrix */
  size_t cm = mt->confusion ? (size_t)(mt->classes * mt->classes) : 0, k = FIXED + cm;
  double *v = st ? NULL : strop__malloc(k * sizeof *v);
  if (!st && !v) st = STROP__NOMEM(fn);
  /* a rank that failed its rows (a file it could not read, out of memory) says so before the
   * sum, which the others would otherwise wait for */
  if ((st = strop__dist_agree(t->dist, fn, st, "evaluating its share of the batches"))) {
    strop__free(v);
    return st;
  }
  v[0] = mt->loss_sum;
  v[1] = (double)mt->samples;
  v[2] = (double)mt->rows;
  v[3] = (double)mt->correct;
  v[4] = (double)mt->top5;
  v[5] = mt->se;
  v[6] = mt->ae;
  v[7] = (double)mt->values;
  v[8] = mt->tok_loss;
  for (size_t i = 0; i < cm; i++) v[FIXED + i] = (double)mt->confusion[i];
  strop_status s = strop__dist_sum_double(t->dist, fn, v, (int64_t)k);
  if (!s) { /* counts below 2^53 are exact in a double */
    mt->loss_sum = v[0];
    mt->samples = (int64_t)v[1];
    mt->rows = (int64_t)v[2];
    mt->correct = (int64_t)v[3];
    mt->top5 = (int64_t)v[4];
    mt->se = v[5];
    mt->ae = v[6];
    mt->values = (int64_t)v[7];
    mt->tok_loss = v[8];
    for (size_t i = 0; i < cm; i++) mt->confusion[i] = (int64_t)v[FIXED + i];
  }
  strop__free(v);
  return s;
}

/* ---- evaluation ---- */
static strop_status eval_iter(strop_trainer *t, strop_batch_iter *it, strop_metrics **out) {
  static const char fn[] = "strop_trainer_eval";
  strop_model *m = t->m;
  strop_trainer_discard_forward(t); /* its forward would drop the activations anyway */
  int64_t per, classes, tps;
  strop_status s = loss_geometry(t, fn, &per, &classes, &tps);
  if (s) return s;
  strop_metrics *mt = NULL;
  if ((s = strop__metrics_new(t->loss.kind == STROP_LOSS_CROSS_ENTROPY ? classes : 0, tps > 1,
                              &mt)))
    return dist_on(t) ? strop__dist_agree(t->dist, fn, s, "evaluating its share of the batches")
                      : s;
  /* in a group, each rank loads and evaluates its share of every batch; the sums are added at
   * the end */
  (void)dist_split(t, it);
  for (;;) {
    strop_tensor *x = NULL, *y = NULL;
    int64_t rows = 0;
    if ((s = strop_batch_iter_next(it, &x, &y, &rows))) break;
    if (rows == 0) break;
    const int64_t cnt = x->dims[0]; /* this rank's rows */
    if (cnt == 0) continue;
    const strop_tensor *mask = strop_batch_iter_mask(it);
    const strop_tensor *types = strop_batch_iter_token_types(it);
    batch_geom g;
    if ((s = check_batch(t, fn, x, mask, types, &g))) break;
    per = g.per;
    tps = g.tps;
    if ((int64_t)y->numel != cnt * tps) {
      s = strop__err(STROP_E_SHAPE,
                     "%s: the data gives %lld target values per sample, the model's "
                     "output and loss need %lld",
                     fn, (long long)(y->numel / (size_t)cnt), (long long)tps);
      break;
    }
    const float *xs = x->data, *ys = y->data;
    const strop__side side = {mask ? mask->data : NULL, types ? types->data : NULL};
    const strop__act *o;
    /* a cross-entropy after a linear head runs with it a chunk of rows at a time (no
     * [rows x vocabulary] logits held): the same sums in the same order */
    m->want_rows = t->loss.kind == STROP_LOSS_CROSS_ENTROPY;
    s = strop__model_forward_shaped(m, xs, cnt, &g.in, 0, &side, &o);
    m->want_rows = 0;
    if (s) {
      strop__err_prefix("%s", fn);
      break;
    }
    double loss = 0.0;
    if (m->rows_fused) {
      ce_fused f;
      memset(&f, 0, sizeof f);
      f.y = ys;
      f.inv = 1.0f;
      f.mt = mt;
      const strop__row_loss rl = {ce_fused_rows, &f};
      const int64_t before = mt->rows;
      s = strop__ce_rows_begin(&f.ce, step_loss(t), cnt, per, ys, tps);
      if (!s) s = strop__model_rows_eval(m, &rl);
      if (!s) metrics_batch(mt, cnt, strop__ce_rows_loss(&f.ce), before);
    } else {
      s = strop__loss_eval(step_loss(t), o->data, cnt, per, ys, tps, &loss, NULL);
      if (!s) metrics_add(mt, o->data, ys, cnt, per, tps, loss);
    }
    strop__model_step_end(m);
    if (s) {
      strop__err_prefix("%s", fn);
      break;
    }
  }
  (void)dist_split(NULL, it);
  if (dist_on(t)) s = dist_sum_metrics(t, fn, mt, s);
  if (s) {
    strop_metrics_free(mt);
    return s;
  }
  *out = mt;
  return STROP_OK;
}

strop_status strop_trainer_eval(strop_trainer *t, strop_batch_iter *it, strop_metrics **out) {
  static const char fn[] = "strop_trainer_eval";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!t || !it)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, t ? "it" : "trainer");
  return eval_iter(t, it, out);
}

strop_status strop_trainer_eval_dataset(strop_trainer *t, strop_dataset *ds, int64_t batch_size,
                                        strop_metrics **out) {
  static const char fn[] = "strop_trainer_eval_dataset";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!t || !ds)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, t ? "ds" : "trainer");
  strop_batch_iter *it = NULL;
  strop_status s = strop_batch_iter_create(ds, batch_size, 0, 0, &it);
  if (s) return s;
  s = eval_iter(t, it, out);
  strop_batch_iter_free(it);
  return s;
}

/* ---- history ---- */
static strop_status hist_row(strop_trainer *t, int64_t epoch, double **row) {
  if (epoch >= t->hist_cap) {
    int64_t cap = t->hist_cap ? t->hist_cap * 2 : 16;
    while (cap <= epoch) cap *= 2;
    double *h = strop__realloc(t->hist, (size_t)(cap * H_COLS) * sizeof *h);
    if (!h) return strop__err(STROP_E_NOMEM, "strop_trainer_fit: out of memory");
    for (int64_t i = t->hist_cap * H_COLS; i < cap * H_COLS; i++) h[i] = NAN;
    t->hist = h;
    t->hist_cap = cap;
  }
  if (epoch + 1 > t->hist_len) t->hist_len = epoch + 1;
  *row = t->hist + epoch * H_COLS;
  return STROP_OK;
}

double strop_trainer_history(const strop_trainer *t, int64_t epoch, int key) {
  if (!t || epoch < 0 || epoch >= t->hist_len) return NAN;
  const double *r = t->hist + epoch * H_COLS;
  switch (key) {
    case STROP_METRIC_LOSS: return r[H_TRAIN_LOSS];
    case STROP_METRIC_ACCURACY: return r[H_TRAIN_ACC];
    case 100 + STROP_METRIC_LOSS: return r[H_VAL_LOSS];
    case 100 + STROP_METRIC_ACCURACY: return r[H_VAL_ACC];
    case 100 + STROP_METRIC_TOP5: return r[H_VAL_TOP5];
    case 100 + STROP_METRIC_MACRO_F1: return r[H_VAL_F1];
    case 100 + STROP_METRIC_MSE: return r[H_VAL_MSE];
    case 100 + STROP_METRIC_MAE: return r[H_VAL_MAE];
    default: return NAN;
  }
}

int64_t strop_trainer_history_len(const strop_trainer *t) { return t ? t->hist_len : -1; }
int64_t strop_trainer_best_epoch(const strop_trainer *t) { return t ? t->best_epoch : -1; }

/* ---- best-weights snapshot ---- */
static strop_status snapshot_take(strop_trainer *t) {
  strop_model *m = t->m;
  size_t total = 0, itotal = 0;
  for (int i = 0; i < m->n_params; i++) {
    if (m->params[i]->data) total += m->params[i]->numel;
    if (m->params[i]->idata) itotal++;
  }
  if (!t->snapshot || t->snapshot_len != total) {
    float *v = strop__realloc(t->snapshot, (total ? total : 1) * sizeof *v);
    if (!v)
      return strop__err(STROP_E_NOMEM, "strop_trainer_fit: out of memory for the best weights");
    t->snapshot = v;
    t->snapshot_len = total;
  }
  if (!t->isnapshot || t->isnapshot_len != itotal) {
    int64_t *v = strop__realloc(t->isnapshot, (itotal ? itotal : 1) * sizeof *v);
    if (!v)
      return strop__err(STROP_E_NOMEM, "strop_trainer_fit: out of memory for the best weights");
    t->isnapshot = v;
    t->isnapshot_len = itotal;
  }
  size_t o = 0, io = 0;
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (p->data) {
      memcpy(t->snapshot + o, p->data, p->numel * sizeof(float));
      o += p->numel;
    }
    if (p->idata) t->isnapshot[io++] = p->idata[0];
  }
  t->have_snapshot = 1;
  return STROP_OK;
}

static void snapshot_restore(strop_trainer *t) {
  strop_model *m = t->m;
  size_t o = 0, io = 0;
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (p->data) {
      /* a weight borrowed from a mapped file is written only when it differs (it cannot have
       * changed while borrowed), and then it is copied out of the mapping first */
      const size_t bytes = p->numel * sizeof(float);
      if (!p->map || (memcmp(p->data, t->snapshot + o, bytes) && !strop__param_own(p))) {
        memcpy(p->data, t->snapshot + o, bytes);
        p->version++; /* what is derived from the values (a BF16 copy) is stale */
      }
      o += p->numel;
    }
    if (p->idata) p->idata[0] = t->isnapshot[io++];
  }
}

/* ---- fit ---- */
void strop_fit_options_init(strop_fit_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->epochs = 10;
  o->monitor = STROP_MONITOR_VAL_LOSS;
}

/* A checkpoint of the fit: written by rank 0 only (the ranks hold the same state), and the
 * ranks agree on whether it was, so none goes on alone when rank 0 failed. */
static strop_status save_on_rank0(strop_trainer *t, const char *path) {
  static const char fn[] = "strop_trainer_fit";
  strop_status s = STROP_OK;
  if (strop_dist_rank(t->dist) == 0) s = strop_trainer_save_checkpoint(t, path);
  return strop__dist_agree(t->dist, fn, s, "writing the checkpoint");
}

/* Whether fit stops after this batch or epoch: want, this rank's progress callback's answer (0
 * without one); *halt 1 when any rank of a group wants to. In a group every rank asks the
 * others each time (a stop decided by the clock differs between ranks, and a rank leaving
 * alone would leave the others waiting in the next step), so all stop after the same batch. */
static strop_status dist_stop(strop_trainer *t, const char *fn, int want, int *halt) {
  double v = want != 0;
  strop_status s = dist_on(t) ? strop__dist_sum_double(t->dist, fn, &v, 1) : STROP_OK;
  *halt = v > 0;
  return s;
}

/* In a group, s as every rank sees it: an allocation one rank failed between the steps (the
 * epoch's history, the best weights' copy) ends fit on every rank (strop__dist_agree). */
static strop_status fit_agree(strop_trainer *t, const char *fn, strop_status s,
                              const char *what) {
  return dist_on(t) ? strop__dist_agree(t->dist, fn, s, what) : s;
}

static double lr_now(const strop_trainer *t) { return strop__optim_get_lr(t->opt); }

static int better(int monitor, double v, double best, double min_delta) {
  if (isnan(v)) return 0;
  if (isnan(best)) return 1;
  if (monitor == STROP_MONITOR_VAL_ACCURACY) return v > best + min_delta;
  return v < best - min_delta;
}

strop_status strop_trainer_fit(strop_trainer *t, strop_batch_iter *train, strop_batch_iter *val,
                               const strop_fit_options *user_opt) {
  static const char fn[] = "strop_trainer_fit";
  if (!t || !train)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, t ? "train" : "trainer");
  strop_fit_options o;
  strop_fit_options_init(&o);
  strop_status st0 = strop__options_in(fn, "strop_fit_options_init", &o, sizeof o, user_opt);
  if (st0) return st0;
  if (o.epochs < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: epochs must be >= 0, got %lld", fn,
                      (long long)o.epochs);
  if (o.monitor < STROP_MONITOR_VAL_LOSS || o.monitor > STROP_MONITOR_TRAIN_LOSS)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown monitor %d", fn, o.monitor);
  /* counts below 0, a flag other than 0 or 1, or a NaN or negative min_delta were taken as
   * "off" or compared false every epoch (a NaN min_delta stopped early and restored epoch 1) */
  {
    const char *bad = o.patience < 0           ? "patience must be >= 0 (0: never stop early)"
                      : o.checkpoint_every < 0 ? "checkpoint_every must be >= 0 (0: off)"
                      : o.max_steps < 0        ? "max_steps must be >= 0 (0: no limit)"
                      : o.restore_best != 0 && o.restore_best != 1 ? "restore_best must be 0 or 1"
                      : !(o.min_delta >= 0.0) || isinf(o.min_delta)
                          ? "min_delta must be finite and >= 0"
                          : NULL;
    if (bad)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: %s (patience %lld, checkpoint_every %lld, max_steps %lld, "
                        "restore_best %d, min_delta %g)",
                        fn, bad, (long long)o.patience, (long long)o.checkpoint_every,
                        (long long)o.max_steps, o.restore_best, o.min_delta);
  }
  if (!val && o.monitor != STROP_MONITOR_TRAIN_LOSS) o.monitor = STROP_MONITOR_TRAIN_LOSS;
  if (o.checkpoint_every > 0 && !o.checkpoint_path)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: checkpoint_every is set but checkpoint_path is NULL", fn);
  strop_status s = strop_optimizer_sync(t->opt);
  if (s) return s;
  strop_model *m = t->m;
  int64_t per, classes, tps;
  if ((s = loss_geometry(t, fn, &per, &classes, &tps))) return s;

  /* resume where a loaded checkpoint stopped */
  if (t->pending_epoch >= 0) {
    int64_t e, p, sd;
    if ((s = strop_batch_iter_get_state(train, &e, &p, &sd))) return s;
    if ((s = strop_batch_iter_set_state(train, t->pending_epoch, t->pending_pos, sd))) return s;
    t->pending_epoch = -1;
  } else {
    t->ep_loss = 0.0;
    t->ep_correct = 0;
    t->ep_rows = 0;
    t->ep_samples = 0;
    t->ep_batches = 0;
    t->bad_epochs = 0;
    t->best_epoch = -1;
    t->best_value = NAN;
    t->hist_len = 0;
    t->have_snapshot = 0;
  }
  t->train_it = train;
  /* in a group the batch is the global one: each rank loads, runs and differentiates only its
   * share, and the step reports the loss and hits of the whole batch */
  (void)dist_split(t, train);
  double t0 = now_sec(), ep_t0 = t0;
  int64_t ep_samples_timed = 0;
  int64_t steps_per_epoch = strop_batch_iter_num_batches(train);
  int64_t fit_steps = 0;
  int stop = 0;
  strop_progress pr;
  memset(&pr, 0, sizeof pr);
  pr.size = sizeof pr;
  pr.epochs = o.epochs;
  pr.steps = steps_per_epoch;

  for (;;) {
    int64_t epoch, pos, sd;
    if ((s = strop_batch_iter_get_state(train, &epoch, &pos, &sd))) break;
    (void)pos;
    (void)sd;
    if (epoch >= o.epochs || stop) break;
    strop_tensor *x = NULL, *y = NULL;
    int64_t rows = 0;
    /* in a group, a rank whose share of a batch fails to load (a file it cannot read) or is
     * refused tells the others, who would wait for it in the step (dist_fail) */
    if ((s = strop_batch_iter_next(train, &x, &y, &rows))) {
      s = dist_fail(t, fn, s);
      break;
    }
    if (rows > 0) {
      const strop_tensor *mask = strop_batch_iter_mask(train);
      const strop_tensor *types = strop_batch_iter_token_types(train);
      const int64_t cnt = x->dims[0]; /* this rank's rows (may be none) */
      batch_geom g;
      if ((s = check_batch(t, fn, x, mask, types, &g))) {
        s = dist_fail(t, fn, s);
        break;
      }
      tps = g.tps;
      if ((int64_t)y->numel != cnt * tps) {
        s = dist_fail(
            t, fn,
            strop__err(STROP_E_SHAPE,
                       "%s: the data gives %lld target values per sample, the "
                       "model's output and loss need %lld",
                       fn, (long long)(cnt ? y->numel / (size_t)cnt : 0), (long long)tps));
        break;
      }
      double l = 0.0;
      int64_t correct = 0;
      int64_t gs_before = t->global_step;
      int64_t off = 0, share = rows, last_off = 0, last_cnt = 1;
      if (dist_on(t)) {
        strop__dist_share(t->dist, rows, &off, &share);
        strop__dist_share_of(t->dist, t->dist->size - 1, rows, &last_off, &last_cnt);
      }
      t->rows_before = off;
      t->rows_after = rows - off - share;
      const strop__side side = {mask ? mask->data : NULL, types ? types->data : NULL};
      s = strop__trainer_micro_step(t, x->data, &g.in, &side, y->data, cnt, &l, &correct);
      t->rows_before = t->rows_after = 0;
      /* a rank with no rows ran no forward, so its generator did not move: every rank takes
       * rank 0's (the last rank's share is the smallest, so every rank knows when) */
      if (!s && last_cnt == 0 && (s = strop__dist_bcast(t->dist, fn, &m->rng, sizeof m->rng, 0)))
        break;
      if (s == STROP_E_NUMERIC) {
        strop__log(STROP_LOG_WARN, "%s", strop_last_error());
        s = STROP_OK;
      } else if (s) {
        break;
      } else {
        t->ep_loss += l * (double)rows;
        t->ep_correct += correct;
        t->ep_rows += rows * tps;
        t->ep_samples += rows;
      }
      t->ep_batches++;
      ep_samples_timed += rows;
      fit_steps += t->global_step > gs_before;
      if (o.checkpoint_every > 0 && t->global_step > gs_before &&
          t->global_step % o.checkpoint_every == 0) {
        if ((s = save_on_rank0(t, o.checkpoint_path))) break;
      }
      int want_stop = 0;
      if (o.progress) {
        double el = now_sec();
        pr.phase = STROP_PHASE_BATCH;
        pr.epoch = epoch;
        pr.step = t->ep_batches;
        pr.global_step = t->global_step;
        pr.loss = t->ep_samples ? t->ep_loss / (double)t->ep_samples : NAN;
        pr.metric = classes > 0 && t->ep_rows ? (double)t->ep_correct / (double)t->ep_rows : NAN;
        pr.lr = lr_now(t);
        pr.samples_per_sec = el > ep_t0 ? (double)ep_samples_timed / (el - ep_t0) : 0.0;
        pr.val_loss = NAN;
        pr.val_metric = NAN;
        pr.best_epoch = t->best_epoch;
        pr.elapsed = el - t0;
        want_stop = o.progress(&pr, o.user_data) != 0;
      }
      int halt = want_stop;
      if ((s = dist_stop(t, fn, want_stop, &halt))) break;
      if (halt) {
        s = strop__err(
            STROP_E_CANCELLED,
            "%s: stopped by the progress callback in epoch %lld (counted from 1), after its "
            "step %lld%s",
            fn, (long long)epoch + 1, (long long)t->ep_batches,
            want_stop ? "" : " (another rank's)");
        break;
      }
      if (o.max_steps > 0 && fit_steps >= o.max_steps) stop = 1;
      if (!stop) continue;
    }
    if (rows > 0 && stop) break; /* a step budget ends mid-epoch: no epoch summary */
    /* the epoch has ended */
    double *row = NULL;
    if ((s = fit_agree(t, fn, hist_row(t, epoch, &row), "keeping the epoch's history"))) break;
    row[H_TRAIN_LOSS] = t->ep_samples ? t->ep_loss / (double)t->ep_samples : NAN;
    row[H_TRAIN_ACC] = classes > 0 && t->ep_rows ? (double)t->ep_correct / (double)t->ep_rows
                                                 : NAN;
    double monitored = row[H_TRAIN_LOSS];
    int want_stop = 0;
    if (val) {
      strop_metrics *mt = NULL;
      int64_t ve, vp, vs;
      if ((s = strop_batch_iter_get_state(val, &ve, &vp, &vs))) break;
      if ((s = strop_batch_iter_set_state(val, ve, 0, vs))) break; /* the whole epoch */
      if ((s = eval_iter(t, val, &mt))) break;
      row[H_VAL_LOSS] = strop_metrics_get(mt, STROP_METRIC_LOSS);
      row[H_VAL_ACC] = strop_metrics_get(mt, STROP_METRIC_ACCURACY);
      row[H_VAL_TOP5] = strop_metrics_get(mt, STROP_METRIC_TOP5);
      row[H_VAL_F1] = strop_metrics_get(mt, STROP_METRIC_MACRO_F1);
      row[H_VAL_MSE] = strop_metrics_get(mt, STROP_METRIC_MSE);
      row[H_VAL_MAE] = strop_metrics_get(mt, STROP_METRIC_MAE);
      strop_metrics_free(mt);
      monitored = o.monitor == STROP_MONITOR_VAL_ACCURACY ? row[H_VAL_ACC]
                  : o.monitor == STROP_MONITOR_VAL_LOSS   ? row[H_VAL_LOSS]
                                                          : row[H_TRAIN_LOSS];
    }
    if (t->sched) {
      if (strop__sched_is_plateau(t->sched)) {
        if ((s = strop_scheduler_step_metric(t->sched, monitored))) break;
      } else if (t->sched_per_epoch) {
        if ((s = strop_scheduler_step(t->sched))) break;
      }
    }
    if (better(o.monitor, monitored, t->best_value, o.min_delta)) {
      t->best_value = monitored;
      t->best_epoch = epoch;
      t->bad_epochs = 0;
      if (o.restore_best &&
          (s = fit_agree(t, fn, snapshot_take(t), "keeping the best epoch's weights")))
        break;
      if (o.best_path && (s = save_on_rank0(t, o.best_path))) break;
    } else {
      t->bad_epochs++;
    }
    t->ep_loss = 0.0;
    t->ep_correct = 0;
    t->ep_rows = 0;
    t->ep_samples = 0;
    t->ep_batches = 0;
    if (o.progress) {
      double el = now_sec();
      pr.phase = STROP_PHASE_EPOCH_END;
      pr.epoch = epoch;
      pr.step = steps_per_epoch;
      pr.global_step = t->global_step;
      pr.loss = row[H_TRAIN_LOSS];
      pr.metric = row[H_TRAIN_ACC];
      pr.lr = lr_now(t);
      pr.samples_per_sec = el > ep_t0 ? (double)ep_samples_timed / (el - ep_t0) : 0.0;
      pr.val_loss = row[H_VAL_LOSS];
      pr.val_metric = classes > 0 ? row[H_VAL_ACC] : row[H_VAL_MAE];
      pr.best_epoch = t->best_epoch;
      pr.elapsed = el - t0;
      want_stop = o.progress(&pr, o.user_data) != 0;
    }
    int halt = want_stop;
    if ((s = dist_stop(t, fn, want_stop, &halt))) break;
    if (halt) {
      s = strop__err(STROP_E_CANCELLED, "%s: stopped by the progress callback after epoch %lld%s",
                     fn, (long long)epoch, want_stop ? "" : " (another rank's)");
      break;
    }
    ep_t0 = now_sec();
    ep_samples_timed = 0;
    if (o.patience > 0 && t->bad_epochs >= o.patience) {
      strop__log(STROP_LOG_INFO, "%s: early stop after epoch %lld (best %lld)", fn,
                 (long long)epoch, (long long)t->best_epoch);
      break;
    }
    if (stop) break;
  }
  t->train_it = NULL;
  (void)dist_split(NULL, train);
  if (s && s != STROP_E_CANCELLED) return s;
  if (o.restore_best && t->have_snapshot) snapshot_restore(t);
  if (!s && o.checkpoint_path) {
    t->train_it = train;
    s = save_on_rank0(t, o.checkpoint_path);
    t->train_it = NULL;
  }
  (void)m;
  return s;
}
