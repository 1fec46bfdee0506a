/* SPDX-License-Identifier: MIT */
/* strop — elementwise products of two tensors with NumPy broadcasting over the per-sample
 * dimensions (the batch is never broadcast), forward and backward. Private to the library. */
#ifndef STROP_OPS_BROADCAST_H
#define STROP_OPS_BROADCAST_H

#include <stdint.h>

#define STROP__BCAST_MAX 8

/* The geometry of one sample, dimensions of size 1 in the output dropped and neighbours that
 * both inputs walk contiguously merged: [C, H, W] * [C, 1, 1] becomes [C, HW] with b's strides
 * (1, 0). */
typedef struct strop__bcast {
  int rank;                                           /* >= 1 */
  int64_t d[STROP__BCAST_MAX];                        /* output dimensions */
  int64_t sa[STROP__BCAST_MAX], sb[STROP__BCAST_MAX]; /* element strides; 0: broadcast */
  int64_t na, nb, ny;                                 /* elements per sample of a, b and y */
} strop__bcast;

/* The output shape of a [ra dims] and b [rb dims] (rank at most STROP__BCAST_MAX), aligned at
 * the right (NumPy; align_left = 0) or at the left (align_left = 1: the shorter shape gets
 * trailing 1s, so [C, H, W] * [C] scales channels), into out (rank max(ra, rb)); fills g when
 * not NULL. Returns the output rank, or -1 - k when aligned dimension k (of the output) differs
 * with neither size 1. */
int strop__bcast_init(int ra, const int64_t *da, int rb, const int64_t *db, int align_left,
                      int64_t *out, strop__bcast *g);

/* y = a * b for n samples (each sample's a, b, y at a + i na, b + i nb, y + i ny). Samples
 * split across the worker pool; every output element is one product, so any split gives the
 * same bits. */
void strop__mul_forward(const strop__bcast *g, int64_t n, const float *a, const float *b,
                        float *y);
/* ADDS dy * b (summed over a's broadcast dimensions) into da and dy * a into db; either may be
 * NULL. Each sample's sums run in one thread in a fixed order: any thread count gives the same
 * bits. */
void strop__mul_backward(const strop__bcast *g, int64_t n, const float *a, const float *b,
                         const float *dy, float *da, float *db);

#endif
