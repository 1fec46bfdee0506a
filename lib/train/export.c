/* SPDX-License-Identifier: MIT */
/* strop — export for inference: a copy of the model with LoRA merged into plain linear layers,
 * dropout removed and BatchNorm folded into the conv/linear before it, saved as spec + weights.
 *
 * It edits a private clone (strop__model_clone) through graph/edit.c rather than through a
 * surgery plan: folding changes parameter values and adds a bias, which surgery's "keep every
 * parameter" rule refuses, and one clone is all the memory export needs. Which nodes merge,
 * drop or fold comes from the layer descriptors (LoRA ops, flags), never from type names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "strop/surgery.h"
#include <string.h>

#include "graph/edit.h"
#include "io/atomic.h"
#include "io/io_internal.h"
#include "io/safetensors.h"
#include "core/sbuf.h"
#include "strop/train.h"
#include "surgery/surgery_impl.h"

static const char fn[] = "strop_model_export";

/* Re-types node idx as vt (over: option overrides, NULL-terminated pairs) and re-infers it;
 * parameters carry over by name, new ones start at zero. Its output shape must not change. */
static strop_status retype(strop_model *m, int idx, const strop__layer_vtable *vt,
                           const char *const *over) {
  strop__node *nd = &m->nodes[idx];
  const strop__shape before = nd->out_shape;
  strop_status st = strop__gedit_retype(m, idx, vt, over);
  if (!st) st = strop__gedit_reinfer(m, idx, STROP__REINFER_ANY, NULL);
  if (!st && !strop__shape_eq(&nd->out_shape, &before))
    st = strop__err(STROP_E_INTERNAL,
                    "%s: layer '%s': re-typing as %s changed its output "
                    "shape",
                    fn, nd->name, vt->type);
  return st;
}

/* ---- the passes ---- */

/* Every adapter folded into its base weights, and the node re-declared as its type says
 * (lora_linear -> linear; attention without adapters). */
static strop_status merge_lora(strop_model *m) {
  /* an adapter on a tied weight (GPT-2's lm_head or wte) cannot be folded in faithfully */
  strop_status st0 = strop__lora_merge_check(fn, m);
  if (st0) return st0;
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    const strop__lora_ops *lo = nd->vt->lora;
    if (!lo || !lo->rank || !lo->set_merged) continue;
    int any = 0;
    for (int p = 0; p < (lo->parts ? STROP__MAX_SLOTS : 1) && !any; p++) {
      if (lo->parts && !lo->parts[p]) break;
      any = lo->rank(nd, p, NULL, NULL) > 0;
    }
    if (!any) continue;
    for (int j = 0; j < nd->n_params; j++)
      if (strop__param_own(strop__param_owner(&nd->params[j])))
        return strop__err(STROP_E_NOMEM, "%s: out of memory merging the adapters of '%s'", fn,
                          nd->name);
    lo->set_merged(nd, 1);
    if (!lo->merged_type) continue;
    const strop__layer_vtable *vt = strop__layer_find(lo->merged_type);
    if (!vt) return strop__err(STROP_E_INTERNAL, "%s: no layer type '%s'", fn, lo->merged_type);
    strop_status st = retype(m, i, vt, lo->merged_opts);
    if (st) return st;
  }
  return STROP_OK;
}

static strop_status drop_dropout(strop__gedit *g) {
  strop_model *m = g->m;
  for (int i = 0; i < m->n_nodes;) {
    if ((m->nodes[i].vt->flags & STROP__LAYER_EVAL_IDENTITY) && strop__gedit_removable(m, i, 1)) {
      strop_status st = strop__gedit_remove(g, i, 1);
      if (st) return st;
      continue; /* the next node is now at i */
    }
    i++;
  }
  return strop__gedit_relink(m);
}

/* The node that norm node i can fold into, or -1 in *target: its sole input, a layer whose
 * output channels are dim 0 of the norm's input, read by nothing else. */
static strop_status fold_target(strop_model *m, int i, int *target) {
  *target = -1;
  const strop__node *bn = &m->nodes[i];
  if (bn->n_in != 1 || bn->in[0] < 0 || !strop__gedit_removable(m, i, 1)) return STROP_OK;
  const int p = bn->in[0];
  const strop__node *pv = &m->nodes[p];
  const int f = pv->vt->flags;
  if (!((f & STROP__LAYER_FOLD_CF) || ((f & STROP__LAYER_FOLD_CL) && pv->out_shape.rank == 1)) ||
      strop__gedit_consumers(m, p) != 1)
    return STROP_OK;
  strop__node *b = (strop__node *)bn;
  const strop__param *rm = strop__node_param(b, "running_mean");
  const strop__param *rv = strop__node_param(b, "running_var");
  if (!rm || !rv || !rm->data || !rv->data || (int64_t)rm->numel != pv->out_shape.d[0])
    return STROP_OK; /* no running statistics: eval mode uses the batch's, nothing to fold */
  /* the fold scales weight rows: a weight stored [in, out] has its channels in columns */
  strop__opts po;
  strop_status st = strop__node_write_opts(pv, &po);
  if (st) return st;
  const char *layout = strop__opts_get(&po, "weight_layout");
  if (!layout || !strcmp(layout, "out_in")) *target = p;
  strop__opts_free(&po);
  return STROP_OK;
}

static strop_status fold_bn(strop__gedit *g) {
  strop_model *m = g->m;
  static const char *const bias_on[] = {"bias", "true", NULL};
  for (int i = 0; i < m->n_nodes;) {
    strop__node *bn = &m->nodes[i];
    int p = -1;
    strop_status st = STROP_OK;
    if ((bn->vt->flags & STROP__LAYER_FOLDABLE_NORM) && (st = fold_target(m, i, &p))) return st;
    if (p < 0) {
      i++;
      continue;
    }
    strop__opts bo;
    st = strop__node_write_opts(bn, &bo);
    if (st) return st;
    const char *eps_s = strop__opts_get(&bo, "eps");
    const double eps = eps_s ? (double)strtof(eps_s, NULL) : 1e-5;
    strop__opts_free(&bo);
    if (!strop__node_param(&m->nodes[p], "bias") && (st = retype(m, p, m->nodes[p].vt, bias_on)))
      return st;
    bn = &m->nodes[i];
    strop__node *pv = &m->nodes[p];
    const strop__param *ga = strop__node_param(bn, "weight"), *be = strop__node_param(bn, "bias");
    const strop__param *rm = strop__node_param(bn, "running_mean");
    const strop__param *rv = strop__node_param(bn, "running_var");
    strop__param *w = strop__node_param(pv, "weight"), *b = strop__node_param(pv, "bias");
    if (!w || !b || !w->data || !b->data || b->numel != rm->numel || w->numel % b->numel)
      return strop__err(STROP_E_INTERNAL,
                        "%s: layer '%s': unexpected parameters to fold "
                        "'%s' into",
                        fn, pv->name, bn->name);
    /* weights borrowed from a mapped file are copied out of it before they change */
    if (strop__param_own(w) || strop__param_own(b))
      return strop__err(STROP_E_NOMEM, "%s: out of memory folding '%s' into '%s'", fn, bn->name,
                        pv->name);
    const size_t C = b->numel, per = w->numel / C;
    for (size_t c = 0; c < C; c++) {
      /* the same arithmetic as the eval-mode BatchNorm kernel, in double */
      const double sc = (ga ? (double)ga->data[c] : 1.0) / sqrt((double)rv->data[c] + eps);
      float *row = w->data + c * per;
      for (size_t k = 0; k < per; k++) row[k] = (float)((double)row[k] * sc);
      b->data[c] = (float)(((double)b->data[c] - (double)rm->data[c]) * sc +
                           (be ? (double)be->data[c] : 0.0));
    }
    w->version++;
    b->version++;
    if ((st = strop__gedit_remove(g, i, 1)) || (st = strop__gedit_relink(m))) return st;
  }
  return STROP_OK;
}

/* ---- writing ---- */

static strop_status write_files(const strop_model *m, const char *spec_path,
                                const char *weights_path) {
  strop__sbuf text = {0};
  strop__st_writer *w = NULL;
  strop__afile spec;
  int spec_open = 0;
  strop_status st = strop__model_spec_text(fn, m, &text);
  if (!st) {
    st = strop__afile_open(&spec, fn, spec_path);
    spec_open = st == STROP_OK;
  }
  if (!st) st = strop__afile_write(&spec, text.s, text.n);
  strop__sbuf_free(&text);
  if (!st) st = strop__st_writer_create(fn, &w);
  if (!st) st = strop__model_add_to_writer(fn, m, w);
  if (!st) st = strop__model_meta_to_writer(fn, m, w);
  if (!st) st = strop__st_writer_set_meta(w, "strop_export", "inference");
  if (!st) st = strop__st_writer_save(w, weights_path);
  strop__st_writer_free(w);
  if (st) {
    if (spec_open) strop__afile_abort(&spec);
    return st;
  }
  /* the spec last: a loader that finds it finds the matching weights */
  return strop__afile_commit(&spec);
}

strop_status strop_model_export(const strop_model *model, const char *spec_path,
                                const char *weights_path, int flags) {
  if (!model || !spec_path || !weights_path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !model       ? "model"
                      : !spec_path ? "spec_path"
                                   : "weights_path");
  if (flags & ~(STROP_EXPORT_NO_FOLD | STROP_EXPORT_KEEP_DROPOUT))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: unknown flags 0x%x (known: STROP_EXPORT_NO_FOLD, "
                      "STROP_EXPORT_KEEP_DROPOUT)",
                      fn, (unsigned)flags);
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  if (!*spec_path || !*weights_path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is empty", fn,
                      !*spec_path ? "spec_path" : "weights_path");
  if (strcmp(spec_path, weights_path) == 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: spec_path and weights_path are both '%s'", fn,
                      spec_path);
  strop_model *m = NULL;
  strop_status st = strop__model_clone(model, &m);
  if (st) {
    if (st == STROP_E_NOMEM) strop__err(STROP_E_NOMEM, "%s: out of memory copying the model", fn);
    return st;
  }
  m->training = 0;
  strop__gedit g;
  st = strop__gedit_init(&g, m, 0, NULL);
  /* the exported model is float32: weights held in BF16 or int8 are widened on the copy */
  if (!st) st = strop_model_set_frozen_dtype(m, STROP_DTYPE_F32);
  if (!st) st = merge_lora(m);
  if (!st && !(flags & STROP_EXPORT_KEEP_DROPOUT)) st = drop_dropout(&g);
  if (!st && !(flags & STROP_EXPORT_NO_FOLD)) st = fold_bn(&g);
  strop__gedit_free(&g);
  if (!st) st = strop__model_reindex(m);
  if (!st) st = write_files(m, spec_path, weights_path);
  strop_model_free(m);
  return st;
}
