/* SPDX-License-Identifier: MIT */
/* strop — what a layer's fuse needs to know of the layers it may absorb (see
 * strop__layer_vtable.fuse). Private to lib/layers. */
#ifndef STROP_LAYERS_FUSE_H
#define STROP_LAYERS_FUSE_H

#include "layers/layer.h"
#include "ops/pool.h"

/* 1 when node n is a max-pool (STROP__LAYER_EPILOGUE_MAXPOOL); its window (kh..dw, oh, ow)
 * then goes into *d, whose n, c, h and w are left for the caller. */
int strop__layer_maxpool_window(const strop__node *n, strop__pool2d_dims *d);

/* 1 when node n is a batch norm over `channels` channels with running statistics: a frozen
 * one the graph offers a layer's fuse (layer.h) then computes an affine map per channel, which
 * strop__layer_fold_norm folds into the weights before it. */
int strop__layer_norm_foldable(const strop__node *n, int64_t channels);
/* The weight and bias of layer n (w [C, ...], b [C] or NULL) with the foldable norm `norm`
 * after it folded in: w' = w s, b' = (b - mean) s + beta, s = gamma / sqrt(var + eps) per
 * channel, in double as export's fold. Kept in n->fold and recomputed only when one of the
 * six tensors was replaced (another address or version) or handed out as a writable view.
 * *wf and *bf are n->fold's until the next call; STROP_E_NOMEM naming n. */
strop_status strop__layer_fold_norm(strop__node *n, const strop__param *w, const strop__param *b,
                                    const strop__node *norm, const float **wf, const float **bf);
/* Gives back the values of n's fold (strop__layer_fold_norm) when what n computes with was made
 * from them and is kept elsewhere (a frozen conv's packed weight and folded bias): the next
 * fold computes them again. The record of the borrowed weight's pages handed back
 * (strop__node_fold_released) stays. Nothing is given back when there is no fold or the
 * smaller record cannot be allocated. */
void strop__layer_fold_drop(strop__node *n);

/* 1 when node n is an rmsnorm: then its row width (the product of normalized_shape) goes into
 * *d, its eps into *eps and its weight (NULL without elementwise_affine) into *w. */
int strop__layer_rmsnorm_rows(const strop__node *n, int64_t *d, float *eps, strop__param **w);

#endif
