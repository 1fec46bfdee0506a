/* SPDX-License-Identifier: MIT */
/* strop tests — the data-parallel scenarios both the thread-rank suite (check_dist.c) and the
 * MPI program (dist/dist_mpi.c) run: a small classifier fitted on Gaussian blobs, by one
 * process or by the ranks of a group, so the two can be compared. Included once per program. */
#ifndef STROP_DIST_SCENARIO_H
#define STROP_DIST_SCENARIO_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "strop/strop.h"
#include "train/train_impl.h"

/* n samples of 4 Gaussian blobs in 8-D (classes 0..3); the same on every rank for a seed. */
static strop_dataset *sc_blobs(int64_t n, uint64_t seed) {
  strop_rng *g = NULL;
  if (strop_rng_create(seed, &g)) return NULL;
  float *x = malloc((size_t)n * 8 * sizeof *x), *y = malloc((size_t)n * sizeof *y);
  strop_dataset *ds = NULL;
  if (x && y && strop_rng_normal(g, 0, 0.7f, x, (size_t)n * 8) == STROP_OK) {
    for (int64_t i = 0; i < n; i++) {
      int c = (int)(strop_rng_next_u32(g) % 4);
      y[i] = (float)c;
      x[i * 8 + c] += 2.0f;
      x[i * 8 + 4 + c] -= 1.5f;
    }
    int64_t d[1] = {8};
    if (strop_dataset_from_memory(x, y, n, 1, d, 0, NULL, 4, &ds)) ds = NULL;
  }
  free(x);
  free(y);
  strop_rng_free(g);
  return ds;
}

/* 8 -> 32 -> relu -> 4; frozen_fc1: fc1 frozen (only head trains, and is all that moves).
 * tied: 8 -> 8 -> relu -> 8 -> relu -> 4 with fc1's weight tied to fc2's, so the tensor's
 * owner is fc2 but its gradient is final only after fc1's backward, the lower use. dropout > 0:
 * a dropout layer of that p before the head; attention (with dropout > 0, not tied): the 32
 * features as 8 positions of 4, self-attention of 2 heads with dropout p on its weights,
 * flattened, instead of the dropout layer. */
static strop_model *sc_model_attn(uint64_t seed, int frozen_fc1, int tied, float dropout,
                                  int attention) {
  int64_t in[1] = {8};
  strop_model *m = NULL;
  if (strop_model_create(1, in, &m)) return NULL;
  if (tied ? strop_model_add(m, "fc1", "linear", "out_features=8", NULL) ||
                 strop_model_add(m, "act1", "relu", NULL, NULL) ||
                 strop_model_add(m, "fc2", "linear", "out_features=8", NULL) ||
                 strop_model_tie(m, "fc1.weight", "fc2.weight")
           : strop_model_add(m, "fc1", "linear", "out_features=32", NULL)) {
    strop_model_free(m);
    return NULL;
  }
  char p[32], a[64];
  snprintf(p, sizeof p, "p=%g", (double)dropout);
  snprintf(a, sizeof a, "num_heads=2 dropout=%g", (double)dropout);
  if (strop_model_add(m, "act", "relu", NULL, NULL) ||
      (attention && (strop_model_add(m, "seq", "reshape", "shape=[8, 4]", NULL) ||
                     strop_model_add(m, "attn", "multihead_attention", a, NULL) ||
                     strop_model_add(m, "flat", "flatten", NULL, NULL))) ||
      (dropout > 0 && !attention && strop_model_add(m, "drop", "dropout", p, NULL)) ||
      strop_model_add(m, "head", "linear", "out_features=4", NULL) ||
      strop_model_finalize(m, seed) || (frozen_fc1 && strop_model_freeze(m, "fc1.*"))) {
    strop_model_free(m);
    return NULL;
  }
  return m;
}

/* 8 -> 32 -> BatchNorm1d -> relu -> 4: a BatchNorm in training mode (SyncBatchNorm's case). */
static strop_model *sc_model_bn(uint64_t seed) {
  int64_t in[1] = {8};
  strop_model *m = NULL;
  if (strop_model_create(1, in, &m)) return NULL;
  if (strop_model_add(m, "fc1", "linear", "out_features=32", NULL) ||
      strop_model_add(m, "bn", "batchnorm1d", NULL, NULL) ||
      strop_model_add(m, "act", "relu", NULL, NULL) ||
      strop_model_add(m, "head", "linear", "out_features=4", NULL) ||
      strop_model_finalize(m, seed)) {
    strop_model_free(m);
    return NULL;
  }
  return m;
}

static inline strop_model *sc_model_tied(uint64_t seed, int frozen_fc1, int tied, float dropout) {
  return sc_model_attn(seed, frozen_fc1, tied, dropout, 0);
}

static inline strop_model *sc_model(uint64_t seed, int frozen_fc1) {
  return sc_model_tied(seed, frozen_fc1, 0, 0.0f);
}

/* Every float parameter, concatenated. */
static float *sc_weights(const strop_model *m, size_t *n_out) {
  size_t n = 0, o = 0;
  for (int i = 0; i < m->n_params; i++) n += m->params[i]->data ? m->params[i]->numel : 0;
  float *w = malloc((n ? n : 1) * sizeof *w);
  for (int i = 0; w && i < m->n_params; i++)
    if (m->params[i]->data) {
      memcpy(w + o, m->params[i]->data, m->params[i]->numel * sizeof *w);
      o += m->params[i]->numel;
    }
  *n_out = n;
  return w;
}

/* Largest |a - b| / max(|b|, 1e-2). */
static double sc_max_rel(const float *a, const float *b, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = a[i] > b[i] ? (double)a[i] - b[i] : (double)b[i] - a[i];
    double s = b[i] > 0 ? b[i] : -b[i];
    d /= s > 1e-2 ? s : 1e-2;
    if (d > worst || d != d) worst = d;
  }
  return worst;
}

typedef struct sc_run {
  int64_t samples, batch, steps, epochs; /* steps 0: every step of the epochs */
  int optim;                             /* STROP_OPTIM_SGD (momentum 0.9) or _ADAM */
  int frozen_fc1;
  int tied;          /* sc_model_tied's model */
  float dropout;     /* > 0: a dropout of this p before the head */
  int attention;     /* with dropout: attention dropout of that p instead (sc_model_attn) */
  int batchnorm;     /* 1: sc_model_bn's model; 2: and STROP_TRAIN_SYNC_BATCHNORM */
  size_t bucket_max; /* floats per gradient bucket (0: the trainer's default) */
  int no_overlap;    /* 1: sum the gradients after the backward even when the group can
                        overlap them with it */
  const char *ckpt_in, *ckpt_out;
  strop_progress_fn progress;
  void *user_data;
  /* results */
  float *w;
  size_t n;
  int64_t global_step;
  double last_loss; /* the history's last training loss */
  strop_status status;
  char error[512];
} sc_run;

/* Fits the scenario's model with d (NULL: one process); fills r's results. */
static void sc_fit(strop_dist *d, sc_run *r) {
  strop_dataset *ds = sc_blobs(r->samples, 21);
  strop_model *m = r->batchnorm
                       ? sc_model_bn(23)
                       : sc_model_attn(23, r->frozen_fc1, r->tied, r->dropout, r->attention);
  strop_optimizer *opt = NULL;
  strop_trainer *t = NULL;
  strop_batch_iter *it = NULL;
  strop_status s = ds && m ? STROP_OK : STROP_E_INTERNAL;
  if (!s) s = strop_optimizer_create(m, r->optim, &opt);
  if (!s)
    s = strop_optimizer_set_float(opt, STROP_OPT_LR,
                                  r->optim == STROP_OPTIM_ADAM ? 3e-3f : 0.05f);
  if (!s && r->optim == STROP_OPTIM_SGD)
    s = strop_optimizer_set_float(opt, STROP_OPT_MOMENTUM, 0.9f);
  if (!s) s = strop_trainer_create(m, opt, &t);
  if (!s) {
    t->bucket_max = r->bucket_max;
    t->no_overlap = r->no_overlap;
  }
  if (!s) s = strop_batch_iter_create(ds, r->batch, 99, STROP_ITER_SHUFFLE, &it);
  if (!s && r->ckpt_in) s = strop_trainer_load_checkpoint(t, r->ckpt_in);
  if (!s && d) s = strop_trainer_set_dist(t, d);
  if (!s && r->batchnorm == 2) s = strop_trainer_set_int(t, STROP_TRAIN_SYNC_BATCHNORM, 1);
  if (!s) {
    strop_fit_options o;
    strop_fit_options_init(&o);
    o.epochs = r->epochs;
    o.max_steps = r->steps;
    o.checkpoint_path = r->ckpt_out;
    o.progress = r->progress;
    o.user_data = r->user_data;
    s = strop_trainer_fit(t, it, NULL, &o);
  }
  r->status = s;
  r->error[0] = '\0';
  if (s) snprintf(r->error, sizeof r->error, "%s", strop_last_error());
  r->w = m ? sc_weights(m, &r->n) : NULL;
  r->global_step = t ? strop_trainer_global_step(t) : -1;
  int64_t h = t ? strop_trainer_history_len(t) : 0;
  r->last_loss = h > 0 ? strop_trainer_history(t, h - 1, STROP_METRIC_LOSS) : 0.0;
  strop_batch_iter_free(it);
  strop_trainer_free(t);
  strop_optimizer_free(opt);
  strop_model_free(m);
  strop_dataset_free(ds);
}

#endif
