/* SPDX-License-Identifier: MIT */
/* strop — trainer checkpoints: the model, optimizer and scheduler state, the RNG, the step
 * counters, the running epoch and the data order in one atomically written file, so a run
 * resumed from it continues bit for bit. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/checkpoint.h"
#include "optim/optim.h"
#include "train/train_impl.h"

static strop_status add_f64(strop__ckpt_writer *w, const char *name, const double *v, size_t n) {
  /* doubles travel as their bit patterns in an I64 tensor, marked in the metadata */
  int64_t dims[1] = {(int64_t)n};
  int64_t tmp[64];
  int64_t *bits = n <= 64 ? tmp : strop__malloc(n * sizeof *bits);
  if (!bits) return strop__err(STROP_E_NOMEM, "checkpoint: out of memory");
  memcpy(bits, v, n * sizeof *bits);
  strop_status s = strop__ckpt_add_i64_copy(w, name, 1, dims, bits);
  if (bits != tmp) strop__free(bits);
  if (s) return s;
  char key[300];
  snprintf(key, sizeof key, "f64:%s", name);
  return strop__ckpt_set_meta(w, key, "1");
}

static strop_status add_state(strop__ckpt_writer *w, const strop__state_entry *e) {
  int64_t dims[1] = {(int64_t)e->numel};
  switch (e->dtype) {
    case STROP__STATE_F32: return strop__ckpt_add_f32(w, e->name, 1, dims, e->data);
    case STROP__STATE_I64: return strop__ckpt_add_i64(w, e->name, 1, dims, e->data);
    default: return add_f64(w, e->name, e->data, e->numel);
  }
}

strop_status strop_trainer_save_checkpoint(const strop_trainer *t, const char *path) {
  static const char fn[] = "strop_trainer_save_checkpoint";
  if (!t || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, t ? "path" : "trainer");
  if (t->micro != 0)
    return strop__err(STROP_E_STATE,
                      "%s: %lld of %lld micro-batches are accumulated; save after "
                      "the optimizer step",
                      fn, (long long)t->micro, (long long)t->accum);
  strop__ckpt_writer *w = NULL;
  strop_status s = strop__ckpt_writer_begin(fn, path, &w);
  if (s) return s;
  if ((s = strop__ckpt_add_model(w, t->m))) goto fail;
  int n = strop__optim_state_count(t->opt);
  for (int i = 0; i < n; i++) {
    strop__state_entry e;
    if ((s = strop__optim_state_at(t->opt, i, &e)) || (s = add_state(w, &e))) goto fail;
  }
  if (t->sched) {
    n = strop__sched_state_count(t->sched);
    for (int i = 0; i < n; i++) {
      strop__state_entry e;
      if ((s = strop__sched_state_at(t->sched, i, &e)) || (s = add_state(w, &e))) goto fail;
    }
  }
  const int64_t counters[] = {t->global_step, t->skipped,    t->ep_correct,
                              t->ep_rows,     t->ep_samples, t->ep_batches,
                              t->bad_epochs,  t->best_epoch, t->hist_len};
  int64_t cd[1] = {(int64_t)(sizeof counters / sizeof counters[0])};
  if ((s = strop__ckpt_add_i64_copy(w, "train.counters", 1, cd, counters))) goto fail;
  double reals[2] = {t->ep_loss, t->best_value};
  if ((s = add_f64(w, "train.reals", reals, 2))) goto fail;
  if (t->hist_len > 0 &&
      (s = add_f64(w, "train.history", t->hist, (size_t)(t->hist_len * H_COLS))))
    goto fail;
  if (t->have_snapshot) {
    /* the best epoch's weights, so restore_best after a resume restores what it would have */
    int64_t bd[1] = {(int64_t)t->snapshot_len}, id[1] = {(int64_t)t->isnapshot_len};
    if ((s = strop__ckpt_add_f32(w, "train.best", 1, bd, t->snapshot)) ||
        (t->isnapshot_len &&
         (s = strop__ckpt_add_i64(w, "train.best_buffers", 1, id, t->isnapshot))))
      goto fail;
  }
  if (t->train_it) {
    int64_t st[3];
    if ((s = strop_batch_iter_get_state(t->train_it, &st[0], &st[1], &st[2]))) goto fail;
    int64_t d3[1] = {3};
    if ((s = strop__ckpt_add_i64_copy(w, "data.train_state", 1, d3, st))) goto fail;
  }
  char step[32];
  snprintf(step, sizeof step, "%lld", (long long)t->global_step);
  if ((s = strop__ckpt_set_meta(w, "global_step", step))) goto fail;
  /* whose state the optim.* tensors are: a load refuses another kind's */
  if ((s = strop__ckpt_set_meta(w, "optim.kind",
                                strop__optim_kind_name(strop_optimizer_get_kind(t->opt)))))
    goto fail;
  if (t->ckpt_meta_key && (s = strop__ckpt_set_meta(w, t->ckpt_meta_key, t->ckpt_meta_value)))
    goto fail;
  if ((s = strop__ckpt_commit(w))) return s;
  strop__log(STROP_LOG_DEBUG, "%s: wrote %s at step %s", fn, path, step);
  return STROP_OK;
fail:
  strop__ckpt_abort(w);
  return s;
}

strop_status strop__trainer_set_checkpoint_meta(strop_trainer *t, const char *key,
                                                const char *value) {
  char *k = strop__strdup(key), *v = strop__strdup(value);
  if (!k || !v) {
    strop__free(k);
    strop__free(v);
    return strop__err(STROP_E_NOMEM, "checkpoint: out of memory");
  }
  strop__free(t->ckpt_meta_key);
  strop__free(t->ckpt_meta_value);
  t->ckpt_meta_key = k;
  t->ckpt_meta_value = v;
  return STROP_OK;
}

static strop_status read_f64(const char *fn, const strop__ckpt *c, const char *name, double *out,
                             size_t n) {
  int64_t tmp[64];
  int64_t *bits = n <= 64 ? tmp : strop__malloc(n * sizeof *bits);
  if (!bits) return strop__err(STROP_E_NOMEM, "%s: out of memory", fn);
  strop_status s = strop__ckpt_read_i64(fn, c, name, bits, n);
  if (!s) memcpy(out, bits, n * sizeof *out);
  if (bits != tmp) strop__free(bits);
  return s;
}

/* Restores every tensor under prefix through set(): dtype from the file (and the f64 mark). */
typedef strop_status (*state_set_fn)(void *obj, const char *name, int dtype, const void *data,
                                     size_t numel);
static strop_status optim_set(void *o, const char *name, int dtype, const void *data, size_t n) {
  return strop__optim_state_set(o, name, dtype, data, n);
}
static strop_status sched_set(void *o, const char *name, int dtype, const void *data, size_t n) {
  return strop__sched_state_set(o, name, dtype, data, n);
}

static strop_status restore_prefix(const char *fn, const strop__ckpt *c, const char *prefix,
                                   void *obj, state_set_fn set) {
  size_t pl = strlen(prefix);
  for (int i = 0; i < c->n; i++) {
    const strop__st_tensor *t = &c->t[i];
    if (strncmp(t->name, prefix, pl) != 0) continue;
    char key[300];
    snprintf(key, sizeof key, "f64:%s", t->name);
    int is_f64 = strop__ckpt_meta(c, key) != NULL;
    size_t n = t->numel;
    void *buf = strop__malloc((n ? n : 1) * 8);
    if (!buf) return strop__err(STROP_E_NOMEM, "%s: out of memory", fn);
    strop_status s;
    int dtype;
    if (is_f64 || t->dtype != strop__dtype_parse("F32")) {
      s = strop__st_read_i64(fn, t, buf, n);
      dtype = is_f64 ? STROP__STATE_F64 : STROP__STATE_I64;
    } else {
      s = strop__st_read_f32(fn, t, buf, n);
      dtype = STROP__STATE_F32;
    }
    if (!s) s = set(obj, t->name, dtype, buf, n);
    strop__free(buf);
    if (s) {
      strop__err_prefix("%s: %s", fn, c->label);
      return s;
    }
  }
  return STROP_OK;
}

/* The optimizer kinds (bit k: kind k) whose state the checkpoint holds: its "optim.kind"
 * metadata (written since 0.2), else what the state's names tell (older files: Adam and AdamW
 * keep the same names; a slot without buffers is plain SGD's); 0 when nothing tells. */
static unsigned ckpt_optim_kinds(const strop__ckpt *c) {
  const char *meta = strop__ckpt_meta(c, "optim.kind");
  if (meta) {
    for (int k = 0; k < 5; k++)
      if (!strcmp(meta, strop__optim_kind_name(k))) return 1u << k;
    return 0;
  }
  static const struct {
    const char *suffix;
    unsigned kinds;
  } names[] = {{".exp_avg", 1u << STROP_OPTIM_ADAM | 1u << STROP_OPTIM_ADAMW},
               {".exp_avg_sq", 1u << STROP_OPTIM_ADAM | 1u << STROP_OPTIM_ADAMW},
               {".max_exp_avg_sq", 1u << STROP_OPTIM_ADAM | 1u << STROP_OPTIM_ADAMW},
               {".square_avg", 1u << STROP_OPTIM_RMSPROP},
               {".grad_avg", 1u << STROP_OPTIM_RMSPROP},
               {".sum", 1u << STROP_OPTIM_ADAGRAD},
               {".momentum_buffer", 1u << STROP_OPTIM_SGD | 1u << STROP_OPTIM_RMSPROP}};
  unsigned kinds = 31;
  int slots = 0, buffers = 0;
  for (int i = 0; i < c->n; i++) {
    const char *n = c->t[i].name;
    if (strncmp(n, "optim.", 6) || !strcmp(n, "optim.step")) continue;
    size_t l = strlen(n);
    if (l > 5 && !strcmp(n + l - 5, ".step")) {
      slots++;
      continue;
    }
    for (size_t j = 0; j < sizeof names / sizeof names[0]; j++) {
      size_t sl = strlen(names[j].suffix);
      if (l > sl && !strcmp(n + l - sl, names[j].suffix)) {
        kinds &= names[j].kinds;
        buffers++;
        break;
      }
    }
  }
  if (slots > 0 && buffers == 0) return 1u << STROP_OPTIM_SGD;
  return buffers ? kinds : 0;
}

static void kinds_text(unsigned kinds, char *buf, size_t cap) {
  size_t l = 0;
  buf[0] = '\0';
  for (int k = 0; k < 5 && l < cap; k++)
    if (kinds & (1u << k))
      l += (size_t)snprintf(buf + l, cap - l, "%s%s", l ? " or " : "", strop__optim_kind_name(k));
  if (!l) snprintf(buf, cap, "an unknown");
}

strop_status strop_trainer_load_checkpoint(strop_trainer *t, const char *path) {
  static const char fn[] = "strop_trainer_load_checkpoint";
  if (!t || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, t ? "path" : "trainer");
  strop__ckpt *c = NULL;
  strop_status s = strop__ckpt_open(fn, path, &c);
  if (s) return s;
  /* Everything is read and restored into staging copies first; the model (which loads all or
   * nothing), then the optimizer, scheduler, best weights and counters change only once all of
   * it worked. */
  strop_optimizer *opt = NULL;
  strop_scheduler *sched = NULL;
  double *hist = NULL;
  float *best = NULL;
  int64_t *ibest = NULL;
  size_t nbest = 0, nibest = 0;
  int64_t counters[9];
  double reals[2];
  int64_t data_state[3] = {-1, 0, 0};
  int have_data = strop__ckpt_find(c, "data.train_state") != NULL;
  if ((s = strop__ckpt_read_i64(fn, c, "train.counters", counters, 9)) ||
      (s = read_f64(fn, c, "train.reals", reals, 2)) ||
      (have_data && (s = strop__ckpt_read_i64(fn, c, "data.train_state", data_state, 3))))
    goto done;
  int64_t hist_len = counters[8];
  if (hist_len < 0 || hist_len > 1000000) {
    s = strop__err(STROP_E_FORMAT, "%s: %s: history length %lld is out of range", fn, path,
                   (long long)hist_len);
    goto done;
  }
  if (hist_len > 0) {
    hist = strop__malloc((size_t)(hist_len * H_COLS) * sizeof *hist);
    if (!hist) {
      s = STROP__NOMEM(fn);
      goto done;
    }
    if ((s = read_f64(fn, c, "train.history", hist, (size_t)(hist_len * H_COLS)))) goto done;
  }
  /* the best epoch's weights, when fit restores them at its end */
  if (strop__ckpt_find(c, "train.best")) {
    for (int i = 0; i < t->m->n_params; i++) {
      if (t->m->params[i]->data) nbest += t->m->params[i]->numel;
      if (t->m->params[i]->idata) nibest++;
    }
    best = strop__malloc((nbest ? nbest : 1) * sizeof *best);
    ibest = strop__malloc((nibest ? nibest : 1) * sizeof *ibest);
    if (!best || !ibest) s = STROP__NOMEM(fn);
    if (!s) s = strop__ckpt_read_f32(fn, c, "train.best", best, nbest);
    if (!s && nibest) s = strop__ckpt_read_i64(fn, c, "train.best_buffers", ibest, nibest);
    if (s) goto done;
  }
  const int kind = strop_optimizer_get_kind(t->opt);
  const unsigned kinds = ckpt_optim_kinds(c);
  if (kinds && !(kinds & (1u << kind))) {
    char held[64];
    kinds_text(kinds, held, sizeof held);
    s = strop__err(STROP_E_FORMAT,
                   "%s: %s holds the state of %s optimizer, this trainer's is %s; "
                   "a resume needs the same kind (nothing was loaded)",
                   fn, path, held, strop__optim_kind_name(kind));
    goto done;
  }
  if ((s = strop__optim_stage(t->opt, &opt)) ||
      (t->sched && (s = strop__sched_stage(t->sched, opt, &sched))) ||
      (s = restore_prefix(fn, c, "optim.", opt, optim_set)) ||
      (sched && (s = restore_prefix(fn, c, "sched.", sched, sched_set))) ||
      (s = strop__ckpt_load_model(fn, c, t->m)))
    goto done;
  /* commit: nothing below fails */
  strop__optim_commit(t->opt, opt);
  opt = NULL;
  if (sched) {
    strop__sched_commit(t->sched, sched);
    sched = NULL;
  }
  strop__free(t->snapshot);
  strop__free(t->isnapshot);
  t->snapshot = best;
  t->snapshot_len = nbest;
  t->isnapshot = ibest;
  t->isnapshot_len = nibest;
  t->have_snapshot = best != NULL;
  best = NULL;
  ibest = NULL;
  t->global_step = counters[0];
  t->skipped = counters[1];
  t->ep_correct = counters[2];
  t->ep_rows = counters[3];
  t->ep_samples = counters[4];
  t->ep_batches = counters[5];
  t->bad_epochs = counters[6];
  t->best_epoch = counters[7];
  t->ep_loss = reals[0];
  t->best_value = reals[1];
  strop__free(t->hist);
  t->hist = hist;
  hist = NULL;
  t->hist_len = t->hist_cap = hist_len;
  t->micro = 0;
  strop_trainer_discard_forward(t); /* its activations belong to the old weights */
  t->pending_epoch = have_data ? data_state[0] : -1;
  t->pending_pos = data_state[1];
  s = strop__model_zero_grad_lazy(t->m);
done:
  strop_scheduler_free(sched);
  strop_optimizer_free(opt);
  strop__free(hist);
  strop__free(best);
  strop__free(ibest);
  strop__ckpt_close(c);
  if (!s)
    strop__log(STROP_LOG_DEBUG, "%s: read %s at step %lld", fn, path, (long long)t->global_step);
  return s;
}
