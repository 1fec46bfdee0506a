/* SPDX-License-Identifier: MIT */
/* strop — a model parameter or buffer: declared by its layer (layer.h), owned by its node;
 * the graph, optimizers, surgery, io and the trainer read and update them through this struct. */
#ifndef STROP_PARAM_H
#define STROP_PARAM_H

#include "core/core.h"
#include "ops/lowp.h"

typedef struct strop__param {
  char *name; /* full PyTorch-style name, "features.0.weight"; owned */
  int rank;
  int64_t dims[STROP_MAX_RANK];
  size_t numel;
  float *data;               /* float32 values (64-byte aligned); NULL for an int64 buffer and
                             for a weight held in lowp */
  int64_t *idata;            /* int64 buffer such as BatchNorm's num_batches_tracked, else NULL */
  float *grad;               /* gradient, same layout as data; allocated for trainable params */
  int grad_stale;            /* 1: the gradient is zero but grad still holds old values (a lazy
                             zero_grad): the next backward writes it outright or clears it */
  int grad_checked;          /* 1: the last backward wrote grad outright and saw every value
                             finite (the trainer's guard skips it); cleared before each write */
  int grad_planned;          /* 1: grad is not owned: it lies in the model's step region
                             (graph.h, region), planned with the step's activations from the
                             backward that first writes it to the step's end; the next forward
                             copies it out (still needed) or drops it (stale) before it reuses
                             the region. 0: grad is the param's own (or NULL) */
  int grad_block;            /* the planner's scratch: its block in the step's plan, or -1 */
  int is_buffer;             /* 1: running statistics etc. -- saved and loaded, never trained */
  int is_int64;              /* 1: an int64 scalar buffer (idata), allocated with the others */
  int is_adapter;            /* 1: a LoRA adapter tensor (lora_A / lora_B) */
  int trainable;             /* 1: receives gradients and optimizer updates (0 = frozen) */
  float lr_mult;             /* parameter-group learning-rate multiplier (default 1) */
  int no_decay;              /* 1: the optimizer applies no weight decay to it */
  int version;               /* bumped whenever data is replaced (surgery, load, a freeze or
                             unfreeze: values may have moved while it trained) */
  int viewed;                /* 1: a writable view of data was handed out (its values may
                             change without a version bump): nothing caches what it derives
                             from them */
  int lowp_ok;               /* the layer reads this weight through the lowp kernels (ops/lowp.h)
                             when it is so held: 1 [out, in] (a scale per row), 2 [in, out]
                             (a scale per column); 0 never (set by the layer's infer) */
  strop__lowp lowp;          /* a frozen weight held in BF16 or int8 (the model's frozen dtype,
                             lib/surgery/storage.c): data is then NULL; dtype 0 otherwise */
  strop__lowp shadow;        /* the BF16 copy of an FP32 weight that products in the model's
                             compute dtype read (layers/compute.c), owned, never copied (a
                             clone makes its own); dtype 0 when there is none */
  int shadow_version;        /* the version shadow was made from: stale when it differs */
  size_t shadow_released;    /* bytes of a frozen weight's mapped pages handed back because the
                             products read only shadow (strop__param_drop_pages); 0 else */
  strop__mapping *map;       /* non-NULL: a frozen weight borrowed from a memory-mapped file
                             (one reference held): data (FP32) or lowp.v (BF16) points into
                             the read-only mapping, unaligned to 64 bytes (4 or 2 bytes only;
                             the kernels read weights with unaligned loads); or (map->heap) a
                             frozen weight's own memory shared with a surgery plan's clone.
                             Anything that writes the values copies them out first
                             (strop__param_own) */
  struct strop__param *tied; /* weight tying: this slot is the owner's tensor (data, gradient,
                                flags are the owner's; this entry holds none); set by the
                                graph from its node's ties, NULL otherwise */
} strop__param;

/* The tensor a slot really is: the owner of a tied slot, else the slot itself. */
static inline strop__param *strop__param_owner(strop__param *p) { return p->tied ? p->tied : p; }

/* Gives the gradient up: freed when the param owns it, forgotten when it lies in the step
 * region (strop__param.grad_planned). */
static inline void strop__param_grad_free(strop__param *p) {
  if (!p->grad_planned) strop__free_aligned(p->grad);
  p->grad = NULL;
  p->grad_planned = 0;
}

/* Bytes the values take: FP32, BF16 or int8 + scales, or an int64. */
static inline size_t strop__param_bytes(const strop__param *p) {
  if (p->lowp.dtype) return strop__lowp_bytes(&p->lowp);
  return p->data || !p->is_int64 ? p->numel * sizeof(float) : sizeof(int64_t);
}

#endif
