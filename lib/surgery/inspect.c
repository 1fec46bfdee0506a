/* SPDX-License-Identifier: MIT */
/* strop — looking at a model before and after surgery: deep clone, a text summary table and
 * the memory a training step will need (weights, gradients, optimizer state, activations). */
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__
#  include <malloc.h>
#endif

#include "ops/lowp.h"
#include "ops/ops.h"
#include "strop/runtime.h"
#include "surgery/surgery_impl.h"

strop_status strop_model_clone(const strop_model *model, strop_model **out) {
  static const char fn[] = "strop_model_clone";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  return strop__model_clone(model, out);
}

/* "yes", "no", "partial" or "-" (no parameters) */
static const char *trainable_word(const strop__node *n) {
  int tr = 0, fr = 0;
  for (int j = 0; j < n->n_params; j++) {
    if (n->params[j].is_buffer) continue;
    if (n->params[j].trainable) tr++;
    else fr++;
  }
  return tr && fr ? "partial" : tr ? "yes" : fr ? "no" : "-";
}

int64_t strop_model_summary(const strop_model *model, char *buf, size_t cap) {
  static const char fn[] = "strop_model_summary";
  if (!model || (!buf && cap)) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "buf" : "model");
    return -1;
  }
  char sh[96];
  int wn = 4, wt = 4, ws = 6;
  for (int i = 0; i < model->n_nodes; i++) {
    const strop__node *n = &model->nodes[i];
    int l = (int)strlen(n->name);
    if (l > wn) wn = l;
    l = (int)strlen(n->vt->type);
    if (l > wt) wt = l;
    l = (int)strlen(strop__shape_str(&n->out_shape, sh, sizeof sh));
    if (l > ws) ws = l;
  }
  if (wn > 60) wn = 60;
  strop__sbuf t;
  memset(&t, 0, sizeof t);
  strop__sbuf_printf(&t, "%-*s  %-*s  %-*s  %12s  %s\n", wn, "name", wt, "type", ws, "output",
                     "params", "trainable");
  int64_t total = 0, trainable = 0, buffers = 0;
  for (int i = 0; i < model->n_nodes; i++) {
    const strop__node *n = &model->nodes[i];
    int64_t c = strop__node_count(n, 0);
    for (int j = 0; j < n->n_params; j++)
      if (n->params[j].is_buffer) buffers += (int64_t)n->params[j].numel;
    total += c;
    trainable += strop__node_count(n, 1);
    int bn_eval = (n->vt->flags & STROP__LAYER_BATCHSTATS) && n->frozen_stats;
    strop__sbuf_printf(&t, "%-*s  %-*s  %-*s  %12lld  %s%s\n", wn, n->name, wt, n->vt->type, ws,
                       model->finalized ? strop__shape_str(&n->out_shape, sh, sizeof sh) : "?",
                       (long long)c, trainable_word(n), bn_eval ? " (bn-eval)" : "");
  }
  strop__sbuf_printf(&t,
                     "input %s; %d nodes; %lld parameters: %lld trainable, %lld frozen; "
                     "%lld buffer values\n",
                     strop__shape_str(&model->in_shape, sh, sizeof sh), model->n_nodes,
                     (long long)total, (long long)trainable, (long long)(total - trainable),
                     (long long)buffers);
  int64_t n = strop__sbuf_out(fn, &t, buf, cap);
  strop__sbuf_free(&t);
  return n;
}

/* ---- the peak of a training step, planned ---- */
typedef struct step_figures {
  size_t weights, grads, optim, act; /* act: step memory at batch: the step arena as it holds
                                        it once warm (with the loss's gradient), and the GEMM's
                                        packing buffers (gemm) */
  size_t gemm;
  size_t fold; /* frozen batch norms folded into the frozen weights before them (conv): the
                  folded copies, made by the step's first forward and kept with the model */
  /* the mapped weights' pages handed back beyond the bytes of what stands in for them (a
   * frozen conv's weight kept packed in BF16 instead of its folded copy, a frozen weight's BF16
   * shadow, counted in shadow): out of the peak */
  size_t unmapped;
  /* the BF16 copies of FP32 weights a model computing in BF16 multiplies with
   * (strop_model_set_compute_dtype), made by the first forward and kept */
  size_t shadow;
  double act_fixed, act_per_sample; /* act = fixed + per_sample batch, as extrapolated */
} step_figures;

static size_t figures_peak(const step_figures *f) {
  const size_t sum = f->weights + f->fold + f->shadow + f->grads + f->optim + f->act;
  return sum > f->unmapped ? sum - f->unmapped : 0;
}

/* Step memory grows with the batch as a + b n (activations, saved tensors and gradients are per
 * sample; scratch and per-step arrays are not): planned at the batch itself when it is small,
 * otherwise at 2 and 4 samples and extrapolated. */
static strop_status plan_figures(const char *fn, strop_model *m, int64_t batch,
                                 const strop__shape *shape, const strop__step_how *how,
                                 step_figures *f) {
  size_t bound = 0;
  strop_status s = strop__model_memory_bound(fn, m, batch, &f->weights, &f->grads, &bound);
  if (s) return s;
  if (strop__mul_overflow(f->grads, (size_t)how->slots, &f->optim))
    return strop__err(STROP_E_SHAPE, "%s: the optimizer state overflows a byte count", fn);
  const int64_t n1 = batch <= 4 ? batch : 2, n2 = batch <= 4 ? batch : 4;
  size_t a1 = 0, a2 = 0, o1 = 0, o2 = 0, saved = 0;
  /* the loss fused with the last node where how->rows says the step's loss is the
   * cross-entropy (only one chunk of the output held); the probes hold the gradients apart,
   * and the first plans the step of the batch itself too, for what its gradients planned with
   * its activations save (strop__plan_grads) — unless how->apart keeps them apart too */
  s = strop__model_probe_step(m, n1, shape, how->rows, how->apart ? 0 : batch, &a1, &o1, &saved);
  if (!s && n2 != n1) s = strop__model_probe_step(m, n2, shape, how->rows, 0, &a2, &o2, NULL);
  if (s) {
    strop__err_prefix("%s: planning a step of batch %lld", fn, (long long)batch);
    return s;
  }
#ifdef __GLIBC__
  /* the planning's memory goes back to the system rather than staying in the C library's heap,
   * where the step it predicts would not always reuse it (peak RSS = planning + step) */
  malloc_trim(0);
#endif
  /* the probe's forward made the folded copies a training step computes with; they stay */
  f->fold = f->unmapped = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    /* less a mapped weight's pages the copy stands in for (dropped from RSS at each step) */
    const size_t fb = strop__node_fold_bytes(&m->nodes[i]);
    const size_t rel = strop__node_fold_released(&m->nodes[i]);
    f->fold += fb > rel ? fb - rel : 0;
    f->unmapped += rel > fb ? rel - fb : 0;
  }
  f->shadow = 0;
  for (int i = 0; i < m->n_params; i++) {
    f->shadow += strop__lowp_bytes(&m->params[i]->shadow);
    /* a mapped frozen weight the copy stands in for: its pages handed back at each step */
    f->unmapped += m->params[i]->shadow_released;
  }
  if (n2 == n1) {
    f->act_per_sample = (double)(a1 + o1) / (double)n1;
    f->act_fixed = 0;
  } else {
    f->act_per_sample = ((double)(a2 + o2) - (double)(a1 + o1)) / (double)(n2 - n1);
    f->act_fixed = (double)(a1 + o1) - f->act_per_sample * (double)n1;
  }
  const double act = f->act_fixed + f->act_per_sample * (double)batch - (double)saved;
  if (!(act < (double)SIZE_MAX / 4))
    return strop__err(STROP_E_SHAPE, "%s: batch %lld: the step's memory overflows a byte count",
                      fn, (long long)batch);
  /* the GEMM's packing buffers: those the first product that needs them makes, unless the
   * probe ran the step itself (batch <= 4) and its products made none; and the widening
   * scratch of frozen BF16 / int8 weights, kept after the planned step (as large as the
   * largest such weight in float32, e.g. an LM head) */
  f->gemm = strop__gemm_buffer_bytes(n1 == batch) + strop__lowp_scratch_bytes();
  f->act = strop__arena_footprint(act > 0 ? (size_t)act : 0) + f->gemm;
  return STROP_OK;
}

static strop_status sample_shape_in(const char *fn, const strop_model *m, const int64_t *dims,
                                    int rank, strop__shape *out) {
  if (!dims) {
    *out = m->in_shape;
    return STROP_OK;
  }
  if (rank != m->in_shape.rank)
    return strop__err(STROP_E_SHAPE, "%s: sample_shape has rank %d, the model's input %d", fn,
                      rank, m->in_shape.rank);
  out->rank = rank;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 1)
      return strop__err(STROP_E_INVALID_ARG, "%s: sample_shape[%d] must be >= 1, got %lld", fn, i,
                        (long long)dims[i]);
    out->d[i] = dims[i];
  }
  return STROP_OK;
}

static strop_status step_args(const char *fn, strop_model *m, int64_t batch, int slots) {
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  if (batch < 1 || batch > ((int64_t)1 << 40))
    return strop__err(STROP_E_INVALID_ARG, "%s: batch must be in [1, 2^40], got %lld", fn,
                      (long long)batch);
  if (slots < 0 || slots > 8)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: optimizer_slots must be in 0..8 (0 SGD, "
                      "1 momentum, 2 Adam), got %d",
                      fn, slots);
  return STROP_OK;
}

strop_status strop__step_memory(const char *fn, strop_model *model, int64_t batch,
                                const int64_t *sample_shape, int rank, const strop__step_how *how,
                                size_t *activations, size_t *peak) {
  strop_status s = step_args(fn, model, batch, how->slots);
  strop__shape shape;
  if (!s) s = sample_shape_in(fn, model, sample_shape, rank, &shape);
  step_figures f;
  if (!s) s = plan_figures(fn, model, batch, &shape, how, &f);
  if (s) return s;
  if (activations) *activations = f.act;
  if (peak) *peak = figures_peak(&f);
  return STROP_OK;
}

/* A step as the model alone can say it is run: the trainer's default loss, the cross-entropy,
 * and the gradients apart when a trainer of the model said so (strop_model.grads_apart). */
static strop__step_how model_how(const strop_model *m, int slots) {
  return (strop__step_how){.slots = slots, .apart = m ? m->grads_apart : 0, .rows = 1};
}

strop_status strop_model_step_memory(strop_model *model, int64_t batch,
                                     const int64_t *sample_shape, int rank, int optimizer_slots,
                                     size_t *activations, size_t *peak) {
  const strop__step_how how = model_how(model, optimizer_slots);
  return strop__step_memory("strop_model_step_memory", model, batch, sample_shape, rank, &how,
                            activations, peak);
}

strop_status strop_model_memory_estimate(const strop_model *model, int64_t batch,
                                         int optimizer_slots, size_t *weights, size_t *grads,
                                         size_t *optim_state, size_t *activations) {
  static const char fn[] = "strop_model_memory_estimate";
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  if (batch < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: batch must be >= 1, got %lld", fn,
                      (long long)batch);
  if (optimizer_slots < 0 || optimizer_slots > 8)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: optimizer_slots must be in 0..8 (0 SGD, "
                      "1 momentum, 2 Adam), got %d",
                      fn, optimizer_slots);
  size_t w = 0, g = 0, bound = 0, o = 0;
  strop_status s = strop__model_memory_bound(fn, model, batch, &w, &g, &bound);
  if (s) return s;
  if (strop__mul_overflow(g, (size_t)optimizer_slots, &o))
    return strop__err(STROP_E_SHAPE, "%s: the optimizer state overflows a byte count", fn);
  size_t act = 0;
  if (activations) {
    /* the rest of the peak as strop_model_step_memory plans it, at the model's input shape:
     * the planning leaves every state of the model as it was (the copies of weights a step
     * makes and keeps, which it counts, are made by the first step anyway) */
    step_figures f;
    strop__shape shape = model->in_shape;
    const strop__step_how how = model_how(model, optimizer_slots);
    if ((s = plan_figures(fn, (strop_model *)model, batch, &shape, &how, &f))) return s;
    const size_t peak = figures_peak(&f), held = f.weights + f.grads + f.optim;
    act = peak > held ? peak - held : 0;
  }
  if (weights) *weights = w;
  if (grads) *grads = g;
  if (optim_state) *optim_state = o;
  if (activations) *activations = act;
  return STROP_OK;
}

/* "1.23 GB", "12.5 MB", "300 kB" */
static const char *mb(size_t bytes, char *buf, size_t cap) {
  const double v = (double)bytes;
  if (v >= 1e9) snprintf(buf, cap, "%.2f GB", v / 1e9);
  else if (v >= 1e6) snprintf(buf, cap, "%.1f MB", v / 1e6);
  else snprintf(buf, cap, "%.0f kB", v / 1e3);
  return buf;
}

/* One way to fit, planned again as g: "<how> takes the step memory to X (peak Y[, which
 * fits]);" appended to t when it holds less than f. */
static void advise(strop__sbuf *t, const step_figures *f, const step_figures *g, size_t limit,
                   const char *how) {
  char a[32], b[32];
  if (g->act >= f->act) return;
  strop__sbuf_printf(t, " %s takes the step memory to %s (peak %s%s);", how,
                     mb(g->act, a, sizeof a), mb(figures_peak(g), b, sizeof b),
                     figures_peak(g) <= limit ? ", which fits" : "");
}

/* The machine's limit for a step of model (strop_memory_available()'s room, plus what the
 * model already holds of the peak: its weights and buffers, folded copies) into *limit, and
 * the words naming it into why. */
static strop_status machine_limit(const char *fn, const strop_model *m, size_t *limit, char *why,
                                  size_t cap) {
  size_t room = 0, held = 0, grads = 0, act = 0;
  char src[96], a[32], b[32];
  strop_status s = strop_memory_available(&room, src, sizeof src);
  if (!s) s = strop__model_memory_bound(fn, m, 1, &held, &grads, &act);
  if (s) {
    strop__err_prefix("%s: reading the machine's memory limit", fn);
    return s;
  }
  for (int i = 0; i < m->n_nodes; i++) held += strop__node_fold_bytes(&m->nodes[i]);
  *limit = room + held < room ? SIZE_MAX : room + held;
  snprintf(why, cap, " (%s: %s left, and the %s the model holds)", src, mb(room, a, sizeof a),
           mb(held, b, sizeof b));
  return STROP_OK;
}

strop_status strop__check_memory(const char *fn, strop_model *model, int64_t batch,
                                 const int64_t *sample_shape, int rank,
                                 const strop__step_how *how, size_t limit) {
  strop_status s = step_args(fn, model, batch, how->slots);
  strop__shape shape;
  if (!s) s = sample_shape_in(fn, model, sample_shape, rank, &shape);
  char why[256] = "";
  if (!s && !limit) s = machine_limit(fn, model, &limit, why, sizeof why);
  step_figures f;
  if (!s) s = plan_figures(fn, model, batch, &shape, how, &f);
  if (s) return s;
  const size_t peak = figures_peak(&f);
  if (peak <= limit) return STROP_OK;
  char a[32], b[32], c[32], d[32], e[32], l[32];
  strop__sbuf t;
  memset(&t, 0, sizeof t);
  strop__sbuf_printf(&t,
                     "%s: a training step of batch %lld needs about %s at its peak "
                     "(weights and buffers %s, ",
                     fn, (long long)batch, mb(peak, a, sizeof a), mb(f.weights, b, sizeof b));
  if (f.fold)
    strop__sbuf_printf(&t, "frozen batch norms folded into their convolutions' weights %s, ",
                       mb(f.fold, a, sizeof a));
  if (f.shadow)
    strop__sbuf_printf(&t, "BF16 copies of the weights (compute dtype) %s, ",
                       mb(f.shadow, a, sizeof a));
  strop__sbuf_printf(&t,
                     "gradients %s, optimizer state %s, step memory %s), over the limit of %s%s;"
                     " to fit:",
                     mb(f.grads, c, sizeof c), mb(f.optim, d, sizeof d), mb(f.act, e, sizeof e),
                     mb(limit, l, sizeof l), why);
  /* with checkpointing: planned again with "auto" when the model has blocks and it is off */
  if (!model->ckpt_pattern && strop_model_set_checkpointing(model, "auto") == STROP_OK) {
    step_figures g;
    s = plan_figures(fn, model, batch, &shape, how, &g);
    strop__free(model->ckpt_pattern); /* off again (setting NULL cannot fail, but is checked) */
    model->ckpt_pattern = NULL;
    if (s) {
      strop__sbuf_free(&t);
      return s;
    }
    advise(&t, &f, &g, limit,
           "activation checkpointing (strop_model_set_checkpointing(model, \"auto\"), recipe "
           "key model.checkpointing: auto)");
  }
  /* tiled attention, when the layers may keep their T x T weights: planned again tiled */
  if (model->attention != STROP_ATTENTION_TILED) {
    const int was = model->attention;
    step_figures g;
    model->attention = STROP_ATTENTION_TILED;
    s = plan_figures(fn, model, batch, &shape, how, &g);
    model->attention = was;
    if (s) {
      strop__sbuf_free(&t);
      return s;
    }
    advise(&t, &f, &g, limit,
           "tiled attention (strop_model_set_attention(model, STROP_ATTENTION_TILED), recipe "
           "key model.attention: tiled; a little slower)");
  }
  /* the trained weights' BF16 copies, when they are kept: packed per call instead (on
   * vdpbf16ps; the exact fallback keeps them either way) */
  size_t trained_copies = 0;
  for (int i = 0; i < model->n_params; i++)
    if (model->params[i]->trainable)
      trained_copies += strop__lowp_bytes(&model->params[i]->shadow);
  if (model->weight_cache && trained_copies && strop__bf16_dot_enabled()) {
    const size_t lean = peak > trained_copies ? peak - trained_copies : 0;
    strop__sbuf_printf(&t,
                       " the trained weights' BF16 copies packed per call instead of kept "
                       "(strop_model_set_weight_cache(model, 0), recipe key model.weight_cache: "
                       "false; the same results, a little slower) take %s off (peak %s%s);",
                       mb(trained_copies, a, sizeof a), mb(lean, b, sizeof b),
                       lean <= limit ? ", which fits" : "");
  }
  /* the largest batch whose arena (at least its smallest chunk) fits beside the rest */
  const double room = (double)limit + (double)f.unmapped -
                      (double)(f.weights + f.fold + f.shadow + f.grads + f.optim + f.gemm);
  double fit = 0;
  if (room >= (double)strop__arena_footprint(0) && f.act_per_sample > 0)
    fit = (room - f.act_fixed) / f.act_per_sample;
  if (fit > (double)batch - 1) fit = (double)batch - 1; /* (rounding at the edge) */
  if (fit >= 1) {
    strop__sbuf_printf(&t, " a batch of %lld fits", (long long)fit);
    /* the same samples an update in micro-batches: the fewest k dividing the batch with
     * batch / k within the fit, planned again with the gradients kept apart, as a trainer
     * accumulating micro-batches keeps them */
    if (!how->apart) {
      int64_t k = (batch + (int64_t)fit - 1) / (int64_t)fit;
      while (batch % k) k++;
      const strop__step_how acc = {.slots = how->slots, .apart = 1, .rows = how->rows};
      step_figures g;
      if ((s = plan_figures(fn, model, batch / k, &shape, &acc, &g))) {
        strop__sbuf_free(&t);
        return s;
      }
      if (figures_peak(&g) <= limit)
        strop__sbuf_printf(&t,
                           ", and %lld micro-batches of %lld accumulated for each update "
                           "(STROP_TRAIN_ACCUM_STEPS %lld; recipe keys data.batch_size: %lld, "
                           "train.accumulate: %lld) keep %lld samples an update (peak %s)",
                           (long long)k, (long long)(batch / k), (long long)k,
                           (long long)(batch / k), (long long)k, (long long)batch,
                           mb(figures_peak(&g), a, sizeof a));
    }
    strop__sbuf_printf(&t, ";");
  } else {
    strop__sbuf_printf(&t, " no batch fits with these weights;");
  }
  strop__sbuf_printf(&t,
                     " frozen weights in BF16 or 8 bits (issue 21) halve or quarter what "
                     "the frozen part holds; freezing more of the model drops its gradients and "
                     "optimizer state (%s now)",
                     mb(f.grads + f.optim, a, sizeof a));
  s = strop__err(STROP_E_NOMEM, "%s", t.s && !t.oom ? t.s : fn);
  strop__sbuf_free(&t);
  return s;
}

strop_status strop_model_check_memory(strop_model *model, int64_t batch,
                                      const int64_t *sample_shape, int rank, int optimizer_slots,
                                      size_t limit) {
  const strop__step_how how = model_how(model, optimizer_slots);
  return strop__check_memory("strop_model_check_memory", model, batch, sample_shape, rank, &how,
                             limit);
}
