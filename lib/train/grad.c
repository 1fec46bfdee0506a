/* SPDX-License-Identifier: MIT */
/* strop — the gradients of a model's parameters for the host: a copy out, a copy in. They let a
 * host read what a backward made and train with gradients it makes or changes itself. */
#include <string.h>

#include "graph/graph.h"
#include "strop/train.h"

/* The trainable parameter `name` of a finalized model, or an error naming fn. */
static strop_status grad_param(const strop_model *m, const char *fn, const char *name,
                               size_t count, strop__param **out) {
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  strop__param *p = strop__model_param_find((strop_model *)m, name);
  if (!p) return strop__err(STROP_E_NOT_FOUND, "%s: no parameter named '%s'", fn, name);
  if (p->is_buffer || !p->data)
    return strop__err(STROP_E_STATE, "%s: '%s' is a buffer: it has no gradient", fn, name);
  if (!p->trainable)
    return strop__err(STROP_E_STATE,
                      "%s: '%s' is frozen: it has no gradient (unfreeze it "
                      "first)",
                      fn, name);
  if (count != p->numel)
    return strop__err(STROP_E_SHAPE, "%s: '%s' has %zu values, got count %zu", fn, name, p->numel,
                      count);
  *out = p;
  return STROP_OK;
}

strop_status strop_model_get_grad(const strop_model *m, const char *name, float *out,
                                  size_t count) {
  static const char fn[] = "strop_model_get_grad";
  if (!m || !name || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !m      ? "model"
                      : !name ? "name"
                              : "out");
  strop__param *p;
  strop_status s = grad_param(m, fn, name, count, &p);
  if (s) return s;
  /* none yet, or cleared lazily (its memory still holds old values): zero */
  if (!p->grad || p->grad_stale) memset(out, 0, count * sizeof *out);
  else memcpy(out, p->grad, count * sizeof *out);
  return STROP_OK;
}

strop_status strop_model_set_grad(strop_model *m, const char *name, const float *data,
                                  size_t count) {
  static const char fn[] = "strop_model_set_grad";
  if (!m || !name || !data)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !m      ? "model"
                      : !name ? "name"
                              : "data");
  strop__param *p;
  strop_status s = grad_param(m, fn, name, count, &p);
  if (s) return s;
  strop__model_grads_unplan(m);
  if (!p->grad && (s = strop__model_sync_grads(m))) {
    strop__err_prefix("%s", fn);
    return s;
  }
  memcpy(p->grad, data, count * sizeof *data);
  p->grad_stale = 0;
  p->grad_checked = 0; /* the trainer's guard reads it again */
  return STROP_OK;
}
