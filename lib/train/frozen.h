/* SPDX-License-Identifier: MIT */
/* strop — training a head on a frozen trunk's cached outputs: a frozen, deterministic trunk
 * computes the same features every epoch, so they are computed once and the nodes after it
 * train on them as a model of their own. The recipe runner uses it; it composes public calls
 * around this one internal interface. */
#ifndef STROP_TRAIN_FROZEN_H
#define STROP_TRAIN_FROZEN_H

#include "strop/data.h"
#include "strop/model.h"

typedef struct strop__frozen_head {
  strop_model *head;          /* the nodes after the trunk; its input is the trunk's output */
  strop_dataset *train, *val; /* the trunk's output for every sample, with its target */
} strop__frozen_head;

/* 1 when model m has a frozen, deterministic trunk through which every later node is reached
 * (so a head could train on its cached output), 0 otherwise. */
int strop__frozen_head_possible(const strop_model *m);

/* Computes the trunk's output for every sample that train_it (and val_it, when not NULL)
 * yields — in order, unshuffled, one pass — and splits off the head with the model's state.
 * train and val are the datasets the iterators read (their sizes, targets and classes). When
 * there is no such trunk, or its outputs for either set take more than max_bytes, out->head
 * is NULL and nothing was computed: train m as it is. The caller frees out with
 * strop__frozen_head_free. */
strop_status strop__frozen_head_build(strop_model *m, strop_batch_iter *train_it,
                                      const strop_dataset *train, strop_batch_iter *val_it,
                                      const strop_dataset *val, size_t max_bytes,
                                      strop__frozen_head *out);

/* Copies the trained head's parameters, flags and generator back into m. */
strop_status strop__frozen_head_commit(const strop__frozen_head *h, strop_model *m);

void strop__frozen_head_free(strop__frozen_head *h);

#endif
