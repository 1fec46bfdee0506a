/* SPDX-License-Identifier: MIT */
/* strop — planning a training step's memory by running one: a forward and backward on zeros in
 * an arena of their own, leaving every state of the model as it was. */
#include <string.h>

#include "graph/graph.h"

typedef struct grad_save {
  float *grad;
  int stale, checked;
} grad_save;

strop_status strop__model_probe_step(strop_model *m, int64_t n, const strop__shape *shape,
                                     size_t *arena_peak, size_t *out_bytes) {
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
    saved[i] = (grad_save){p->grad, p->grad_stale, p->grad_checked};
    if (p->trainable && !p->is_buffer && p->data) {
      p->grad = scratch;
      p->grad_stale = 1;
    }
  }
  const strop__rng rng = m->rng;
  strop__arena mine = m->arena;
  strop__arena_init(&m->arena);
  m->probe = 1;
  const strop__act *o;
  s = strop__model_forward_shaped(m, input, n, shape, 1, NULL, &o);
  if (!s) {
    const size_t ob = (size_t)n * strop__shape_numel(&o->shape) * sizeof(float);
    if (!(dout = strop__calloc(1, ob)))
      s = strop__err(STROP_E_NOMEM, "out of memory planning a step of %lld samples",
                     (long long)n);
    if (!s) s = strop__model_backward(m, dout);
    *out_bytes = ob;
  }
  *arena_peak = m->arena.peak;
  strop__model_step_end(m);
  m->probe = 0;
  strop__arena_destroy(&m->arena);
  m->arena = mine;
  m->rng = rng;
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    if (p->grad == scratch || (p->trainable && !p->is_buffer && p->data)) {
      p->grad = saved[i].grad;
      p->grad_stale = saved[i].stale;
      p->grad_checked = saved[i].checked;
    }
  }
done:
  strop__free(saved);
  strop__free_aligned(scratch);
  strop__free(input);
  strop__free(dout);
  return s;
}
