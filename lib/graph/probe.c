/* SPDX-License-Identifier: MIT */
/* strop — planning a training step's memory by running one: a forward and backward on zeros in
 * an arena of their own, leaving every state of the model as it was; and what a model holds,
 * counted from its parameters. */
#include <stdio.h>
#include <string.h>

#include "graph/graph.h"

typedef struct grad_save {
  float *grad;
  int stale, checked, planned;
} grad_save;

/* The planned step's memory by kind, as a DEBUG log line (docs/performance.md's account of the
 * real-size rows comes from it). */
static void log_account(const strop__step_account *a, int64_t n) {
  char buf[2048];
  size_t len = 0, kept = 0, saved = 0;
  for (int t = 0; t < a->n_types; t++) {
    kept += a->kept[t];
    saved += a->saved[t];
  }
  len += (size_t)snprintf(buf + len, sizeof buf - len,
                          "step memory of %lld samples: arena peak %.1f MB; at the end of the "
                          "forward %.1f MB in use (peak %.1f MB): outputs kept %.1f MB",
                          (long long)n, a->peak / 1e6, a->fwd_used / 1e6, a->fwd_peak / 1e6,
                          kept / 1e6);
  for (int t = 0; t < a->n_types && len < sizeof buf; t++)
    if (a->kept[t])
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %s %.1f", t ? "," : " (",
                              a->type[t], a->kept[t] / 1e6);
  if (len < sizeof buf)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "), saved by layers %.1f MB",
                            saved / 1e6);
  int opened = 0;
  for (int t = 0; t < a->n_types && len < sizeof buf; t++)
    if (a->saved[t] >= 100000) {
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%s %s %.1f", opened ? "," : " (",
                              a->type[t], a->saved[t] / 1e6);
      opened = 1;
    }
  if (len < sizeof buf)
    len += (size_t)snprintf(buf + len, sizeof buf - len,
                            "%s; free list %.1f MB; planned region %.1f MB, most live at "
                            "once %.1f MB",
                            opened ? ")" : "", a->fwd_free / 1e6, a->planned / 1e6,
                            a->live_peak / 1e6);
  strop__log(STROP_LOG_DEBUG, "%s", buf);
}

/* The loss of a planned step whose loss runs fused with the last node: a zero gradient. */
static strop_status zero_rows(void *ctx, int64_t r0, int64_t nr, int64_t cols, float *v,
                              int grad) {
  (void)ctx;
  (void)r0;
  if (grad) memset(v, 0, (size_t)nr * (size_t)cols * sizeof *v);
  return STROP_OK;
}

strop_status strop__model_probe_step(strop_model *m, int64_t n, const strop__shape *shape,
                                     int rows, int64_t plan_n, size_t *arena_peak,
                                     size_t *out_bytes, size_t *grads_saved) {
  if (grads_saved) *grads_saved = 0;
  if (!shape) shape = &m->in_shape;
  strop_status s = STROP_OK;
  if (m->have_forward) strop__model_step_end(m);
  /* every trainable gradient points at one scratch buffer while the probe writes them */
  size_t most = 1;
  for (int i = 0; i < m->n_params; i++)
    if (m->params[i]->trainable && !m->params[i]->is_buffer && m->params[i]->data &&
        m->params[i]->numel > most)
      most = m->params[i]->numel;
  grad_save *saved = strop__calloc((size_t)(m->n_params ? m->n_params : 1), sizeof *saved);
  float *scratch = strop__malloc_aligned(most * sizeof(float));
  float *input = strop__calloc((size_t)n * strop__shape_numel(shape), sizeof(float));
  float *dout = NULL;
  if (!saved || !scratch || !input) {
    s = strop__err(STROP_E_NOMEM, "out of memory planning a step of %lld samples", (long long)n);
    goto done;
  }
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    saved[i] = (grad_save){p->grad, p->grad_stale, p->grad_checked, p->grad_planned};
    p->grad_planned = 0; /* in the model's region, which the probe does not touch */
    if (p->trainable && !p->is_buffer && p->data) {
      p->grad = scratch;
      p->grad_stale = 1;
    }
  }
  /* a region of its own, as the arena below: the model's may hold gradients */
  unsigned char *region = m->region;
  const size_t region_cap = m->region_cap;
  m->region = NULL;
  m->region_cap = 0;
  const strop__rng rng = m->rng;
  const int64_t rows_steps = m->rows_steps, rows_chunks = m->rows_chunks;
  strop__arena mine = m->arena;
  strop__arena_init(&m->arena);
  m->probe = 1;
  strop__step_account ac;
  memset(&ac, 0, sizeof ac);
  ac.plan_n = plan_n;
  m->account = &ac;
  const strop__act *o;
  m->want_rows = rows;
  s = strop__model_forward_shaped(m, input, n, shape, 1, NULL, &o);
  m->want_rows = 0;
  if (!s && m->rows_fused) { /* one chunk of the output at a time, no gradient of it */
    const strop__row_loss zero = {zero_rows, NULL};
    s = strop__model_backward_rows(m, &zero);
    *out_bytes = 0;
  } else if (!s) {
    const size_t ob = (size_t)n * strop__shape_numel(&o->shape) * sizeof(float);
    if (!(dout = strop__calloc(1, ob)))
      s = strop__err(STROP_E_NOMEM, "out of memory planning a step of %lld samples",
                     (long long)n);
    if (!s) s = strop__model_backward(m, dout);
    *out_bytes = ob;
  }
  *arena_peak = m->arena.peak + m->region_cap; /* the step's planned region and the rest */
  if (grads_saved) *grads_saved = ac.grads_saved;
  if (!s) log_account(&ac, n);
  m->account = NULL;
  strop__model_step_end(m);
  m->probe = 0;
  strop__arena_destroy(&m->arena);
  m->arena = mine;
  strop__free_aligned(m->region);
  m->region = region;
  m->region_cap = region_cap;
  m->rng = rng;
  m->rows_steps = rows_steps;
  m->rows_chunks = rows_chunks;
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (p->grad == scratch || (p->trainable && !p->is_buffer && p->data)) {
      p->grad = saved[i].grad;
      p->grad_stale = saved[i].stale;
      p->grad_checked = saved[i].checked;
    }
    p->grad_planned = saved[i].planned;
  }
done:
  strop__free(saved);
  strop__free_aligned(scratch);
  strop__free(input);
  strop__free(dout);
  return s;
}

strop_status strop__model_memory_bound(const char *fn, const strop_model *m, int64_t n,
                                       size_t *weights, size_t *grads, size_t *act_bound) {
  size_t w = 0, g = 0, fwd = 0, bwd = 0;
  /* which nodes backward visits: a trainable parameter at or upstream (as the graph does) */
  const int cap = m->n_nodes ? m->n_nodes : 1;
  int up_local[256];
  int *up = cap <= 256 ? up_local : strop__malloc((size_t)cap * sizeof *up);
  if (!up) return STROP__NOMEM(fn);
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    int u = 0;
    for (int j = 0; j < nd->n_params; j++) {
      const strop__param *p = &nd->params[j];
      if (p->tied) { /* the tensor of another slot: counted there */
        u |= !p->is_buffer && p->tied->trainable;
        continue;
      }
      w += strop__param_bytes(p);
      if (!p->is_buffer && p->trainable) {
        g += p->numel * sizeof(float);
        u = 1;
      }
    }
    for (int j = 0; j < nd->n_in && !u; j++) u = nd->in[j] >= 0 && up[nd->in[j]];
    up[i] = u;
    size_t out;
    if (strop__mul_overflow(strop__shape_numel(&nd->out_shape) * sizeof(float), (size_t)n,
                            &out) ||
        fwd + out < fwd || (u && bwd + out < bwd)) {
      if (up != up_local) strop__free(up);
      return strop__err(STROP_E_SHAPE,
                        "%s: batch %lld: the activations overflow a byte count at node '%s'", fn,
                        (long long)n, nd->name);
    }
    fwd += out;
    if (u) bwd += out;
  }
  if (up != up_local) strop__free(up);
  if (fwd + bwd < fwd)
    return strop__err(STROP_E_SHAPE, "%s: batch %lld: the activations overflow a byte count", fn,
                      (long long)n);
  *weights = w;
  *grads = g;
  *act_bound = fwd + bwd;
  return STROP_OK;
}
