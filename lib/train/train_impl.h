/* SPDX-License-Identifier: MIT */
/* strop — the trainer's private state, shared by the step/fit code and checkpoints. */
#ifndef STROP_TRAIN_IMPL_H
#define STROP_TRAIN_IMPL_H

#include "core/settings.h"
#include "dist/dist_impl.h"
#include "graph/graph.h"
#include "ops/loss.h"
#include "strop/train.h"

/* ops numbers the loss kinds as the public enum does */
_Static_assert((int)STROP__LOSS_CROSS_ENTROPY == (int)STROP_LOSS_CROSS_ENTROPY &&
                   (int)STROP__LOSS_MSE == (int)STROP_LOSS_MSE &&
                   (int)STROP__LOSS_L1 == (int)STROP_LOSS_L1 &&
                   (int)STROP__LOSS_HUBER == (int)STROP_LOSS_HUBER &&
                   (int)STROP__LOSS_BCE_WITH_LOGITS == (int)STROP_LOSS_BCE_WITH_LOGITS,
               "ops/loss.h and strop/train.h number the losses differently");

/* The trainer's settings (trainer.c): one entry per strop_train_knob. */
enum { STROP__TRAIN_N_KNOBS = 9 };
extern const strop__settings strop__trainer_settings;

/* History columns per epoch (checkpoints store hist_len x H_COLS doubles). */
enum {
  H_TRAIN_LOSS,
  H_TRAIN_ACC,
  H_VAL_LOSS,
  H_VAL_ACC,
  H_VAL_TOP5,
  H_VAL_F1,
  H_VAL_MSE,
  H_VAL_MAE,
  H_COLS
};

/* One all-reduce of a step's gradients (trainer.c: dist_plan). */
typedef struct strop__dist_bucket {
  int first, count; /* its tensors: dlist[first, first + count) */
  size_t off;       /* packed: where its floats sit in the overlap buffer */
  size_t floats;
  int alone; /* 1: one tensor larger than a bucket, summed in place */
  int ready; /* the backward has made its gradients final once it is done down to this node */
  void *req; /* its started sum (overlapped), or NULL */
  int done;  /* a test saw its sum complete (it is still waited for) */
} strop__dist_bucket;

struct strop_trainer {
  strop_model *m;
  strop_optimizer *opt;
  strop_scheduler *sched;
  strop__loss_cfg loss;
  double kv[STROP__TRAIN_N_KNOBS]; /* every knob's value as set (the fields below follow) */
  float *class_weights;
  int64_t n_class_weights;
  double clip_norm, clip_value;
  int64_t accum; /* micro-batches per optimizer step */
  int sched_per_epoch;
  int64_t micro;       /* micro-batches accumulated so far */
  int host_pending;    /* 1: strop_trainer_forward ran and its backward (or discard) has not:
                             the model holds that step's activations */
  int host_failed;     /* in a group, a host's forward or backward of this window failed on
                          this rank (its status): strop_trainer_apply tells the others and every
                          rank drops the window */
  int64_t global_step; /* optimizer steps */
  int64_t skipped;     /* steps dropped by the numeric guard */
  /* fit state: the running epoch, saved in checkpoints for an exact resume */
  strop_batch_iter *train_it; /* during fit, for checkpoints */
  double ep_loss;
  int64_t ep_correct, ep_rows, ep_samples, ep_batches;
  int64_t bad_epochs;
  int64_t best_epoch;
  double best_value;
  double *hist; /* hist_cap rows of H_COLS */
  int64_t hist_len, hist_cap;
  /* restored by load_checkpoint, applied by the next fit */
  int64_t pending_epoch, pending_pos;
  /* the buffers (BatchNorm's running statistics and counters) and the model's RNG as they
   * were when the current accumulation window began: a skipped step puts them back */
  float *bsnap;
  int64_t *bisnap;
  size_t bsnap_cap, bisnap_cap;
  strop__rng bsnap_rng;
  int snap_live; /* 1: bsnap holds the buffers as this window began (buffers_take), until it
                    ends or is dropped; a window that failed before taking them restores none */
  /* best weights */
  float *snapshot;
  size_t snapshot_len;
  int64_t *isnapshot;
  size_t isnapshot_len;
  int have_snapshot;
  /* one metadata entry every checkpoint of this trainer carries (a recipe's stage), or NULL */
  char *ckpt_meta_key, *ckpt_meta_value;
  /* data parallel: the group (borrowed, NULL: one process) and the buffer gradients are
   * packed into for the all-reduce */
  strop_dist *dist;
  float *bucket;
  size_t bucket_cap;
  strop__param **dlist; /* the tensors of one all-reduce pass (trainer.c: dist_list) */
  int dlist_cap;
  /* the gradients' buckets (dist_plan), in the order the backward makes them final; with a
   * group that offers the asynchronous sum, the last micro-batch's backward starts each as
   * soon as it is final (bk_next: the next to start) and the step waits for them all */
  strop__dist_bucket *bk;
  int n_bk, cap_bk, bk_next;
  int plan_live; /* 1: the buckets of this window are planned and (some) started */
  int *dlast;    /* dist_plan's scratch: per parameter, the lowest node that uses it,
                         then the same for the tensors of dlist */
  int dlast_cap;
  float *obuf;       /* the packed buckets' floats while their sums run */
  size_t obuf_cap;   /* floats */
  size_t bucket_max; /* floats per bucket; 0: the default (tests set fewer) */
  int no_overlap;    /* 1: sum the buckets after the backward even when the group could
                         overlap (tests compare both paths) */
  int64_t rows_before, rows_after; /* fit in a group: the global batch's rows before and after
                                      this rank's share (the model's random draws skip them) */
  int sync_bn;                     /* STROP_TRAIN_SYNC_BATCHNORM */
  strop__group group;              /* the model's group for batch statistics in a step */
  int in_backward;                 /* 1 while window_backward runs the model's backward */
  int group_failed;                /* a rank failed its part of the step and said so in the
                                      agreement before a group sum: nothing more to tell */
  int window_own_stats;            /* 1: a step of this window normalised with the rank's own
                                      rows, so the running statistics are averaged after it */
};

/* One micro-batch: forward, loss, backward; an optimizer step every accum calls. x is
 * [n, shape] (shape NULL: the model's declared input shape), side: the batch's mask and token types,
 * or NULL. */
strop_status strop__trainer_micro_step(strop_trainer *t, const float *x,
                                       const strop__shape *shape, const strop__side *side,
                                       const float *y, int64_t n, double *loss_out,
                                       int64_t *correct_out);
strop_status strop__metrics_new(int64_t classes, int per_position, strop_metrics **out);

/* Sets the metadata entry key = value that the trainer's checkpoints carry from now on, so
 * whoever resumes can tell which run (or part of one) wrote them. Copies both strings. */
strop_status strop__trainer_set_checkpoint_meta(strop_trainer *t, const char *key,
                                                const char *value);

/* 1 when the scheduler is reduce-on-plateau (fed a metric per epoch, not stepped). */
int strop__sched_is_plateau(const strop_scheduler *s);

#endif
