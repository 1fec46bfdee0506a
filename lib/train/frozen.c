/* SPDX-License-Identifier: MIT */
/* strop — training a head on a frozen trunk's cached outputs (see frozen.h): the trunk runs
 * once per sample, its outputs become a dataset, and the nodes after it a model of their own. */
#include <string.h>

#include "graph/graph.h"
#include "train/frozen.h"

int strop__frozen_head_possible(const strop_model *m) { return strop__model_frozen_cut(m) >= 0; }

/* The output of node cut for every sample it yields, as a dataset with ds's targets; *out is
 * NULL when they would take more than max_bytes. */
static strop_status features(strop_model *m, int cut, strop_batch_iter *it,
                             const strop_dataset *ds, size_t max_bytes, strop_dataset **out) {
  static const char fn[] = "frozen trunk cache";
  *out = NULL;
  const strop__shape *fs = &m->nodes[cut].out_shape;
  size_t per = strop__shape_numel(fs), n = (size_t)strop_dataset_size(ds), bytes;
  int64_t tdims[STROP_MAX_RANK];
  int trank = strop_dataset_target_shape(ds, tdims, STROP_MAX_RANK);
  size_t tper = 1;
  for (int i = 0; i < trank; i++) tper *= (size_t)tdims[i];
  if (strop__mul_overflow(per * sizeof(float), n, &bytes) || bytes > max_bytes) return STROP_OK;
  float *feat = strop__malloc((per * n > 0 ? per * n : 1) * sizeof(float));
  float *tgt = strop__malloc((tper * n > 0 ? tper * n : 1) * sizeof(float));
  strop_status s = !feat || !tgt ? STROP__NOMEM(fn) : STROP_OK;
  size_t done = 0;
  m->keep_act = cut; /* a fused chain must still store the cut's output */
  while (!s) {
    strop_tensor *x = NULL, *y = NULL;
    int64_t rows = 0;
    if ((s = strop_batch_iter_next(it, &x, &y, &rows)) || rows == 0) break;
    if (done + (size_t)rows > n || (size_t)strop_tensor_numel(y) != (size_t)rows * tper) {
      s = strop__err(STROP_E_INTERNAL, "%s: the batches do not match the dataset", fn);
      break;
    }
    const strop__act *o;
    if ((s = strop__model_forward_exec(m, strop_tensor_data(x), rows, 0, NULL, &o))) break;
    memcpy(feat + done * per, m->acts[cut].data, (size_t)rows * per * sizeof(float));
    strop__model_step_end(m);
    memcpy(tgt + done * tper, strop_tensor_data(y), (size_t)rows * tper * sizeof(float));
    done += (size_t)rows;
  }
  m->keep_act = -1;
  if (!s && done != n)
    s = strop__err(STROP_E_INTERNAL, "%s: cached %zu of %zu samples", fn, done, n);
  if (!s) {
    const int64_t nc = strop_dataset_num_classes(ds);
    s = strop_dataset_from_memory(feat, tgt, (int64_t)n, fs->rank, fs->d, trank, tdims,
                                  nc > 0 ? nc : 0, out);
  }
  strop__free(feat);
  strop__free(tgt);
  return s;
}

strop_status strop__frozen_head_build(strop_model *m, strop_batch_iter *train_it,
                                      const strop_dataset *train, strop_batch_iter *val_it,
                                      const strop_dataset *val, size_t max_bytes,
                                      strop__frozen_head *out) {
  memset(out, 0, sizeof *out);
  const int cut = strop__model_frozen_cut(m);
  if (cut < 0) return STROP_OK;
  strop_status s = features(m, cut, train_it, train, max_bytes, &out->train);
  if (!s && out->train && val_it) s = features(m, cut, val_it, val, max_bytes, &out->val);
  /* without the features of either set there is nothing to train the head on */
  if (!s && out->train && (!val_it || out->val)) s = strop__model_split_head(m, cut, &out->head);
  if (s || !out->head) strop__frozen_head_free(out);
  return s;
}

strop_status strop__frozen_head_commit(const strop__frozen_head *h, strop_model *m) {
  strop_status s = strop__model_copy_state(m, h->head);
  if (!s) m->rng = h->head->rng;
  return s;
}

void strop__frozen_head_free(strop__frozen_head *h) {
  strop_model_free(h->head);
  strop_dataset_free(h->train);
  strop_dataset_free(h->val);
  memset(h, 0, sizeof *h);
}
