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

#endif
