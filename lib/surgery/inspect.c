/* strop — looking at a model before and after surgery: deep clone, a text summary table and
 * the memory a training step will need (weights, gradients, optimizer state, activations). */
#include <stdio.h>
#include <string.h>

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
  strop__sbuf_printf(&t, "input %s; %d nodes; %lld parameters: %lld trainable, %lld frozen; "
                  "%lld buffer values\n",
                  strop__shape_str(&model->in_shape, sh, sizeof sh), model->n_nodes,
                  (long long)total, (long long)trainable, (long long)(total - trainable),
                  (long long)buffers);
  int64_t n = strop__sbuf_out(fn, &t, buf, cap);
  strop__sbuf_free(&t);
  return n;
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
    return strop__err(STROP_E_INVALID_ARG, "%s: optimizer_slots must be in 0..8 (0 SGD, "
                      "1 momentum, 2 Adam), got %d", fn, optimizer_slots);
  size_t w = 0, g = 0, fwd = 0, bwd = 0, slots;
  /* which nodes backward visits: a trainable parameter at or upstream (as the graph does) */
  int up_cap = model->n_nodes ? model->n_nodes : 1;
  int up_local[256];
  int *up = up_cap <= 256 ? up_local : strop__malloc((size_t)up_cap * sizeof *up);
  if (!up) return STROP__NOMEM(fn);
  for (int i = 0; i < model->n_nodes; i++) {
    const strop__node *n = &model->nodes[i];
    int u = 0;
    for (int j = 0; j < n->n_params; j++) {
      const strop__param *p = &n->params[j];
      w += strop__param_bytes(p);
      if (!p->is_buffer && p->trainable) {
        g += p->numel * sizeof(float);
        u = 1;
      }
    }
    for (int j = 0; j < n->n_in && !u; j++) u = n->in[j] >= 0 && up[n->in[j]];
    up[i] = u;
    size_t out;
    if (strop__mul_overflow(strop__shape_numel(&n->out_shape) * sizeof(float), (size_t)batch,
                            &out) ||
        fwd + out < fwd || (u && bwd + out < bwd)) {
      if (up != up_local) strop__free(up);
      return strop__err(STROP_E_SHAPE, "%s: batch %lld: the activations overflow a byte count at "
                        "node '%s'", fn, (long long)batch, n->name);
    }
    fwd += out;
    if (u) bwd += out;
  }
  if (up != up_local) strop__free(up);
  if (fwd + bwd < fwd)
    return strop__err(STROP_E_SHAPE, "%s: batch %lld: the activations overflow a byte count", fn,
                      (long long)batch);
  if (weights) *weights = w;
  if (grads) *grads = g;
  if (strop__mul_overflow(g, (size_t)optimizer_slots, &slots))
    return strop__err(STROP_E_SHAPE, "%s: the optimizer state overflows a byte count", fn);
  if (optim_state) *optim_state = slots;
  if (activations) *activations = fwd + bwd;
  return STROP_OK;
}
