/* SPDX-License-Identifier: MIT */
/* strop — Winograd F(m x m, 3 x 3) transforms for 3x3 stride-1 convolutions (m = 2 or 4): the
 * filter, input and output transforms, and those of the weight gradient F(3 x 3, m x m); the
 * products between them are batched GEMMs run by ops/conv.c. Private to the library. */
#ifndef STROP_OPS_WINOGRAD_H
#define STROP_OPS_WINOGRAD_H

#include <stddef.h>
#include <stdint.h>

#include "ops/conv.h"

/* Output tiles per image, tiles_y x tiles_x of m x m covering [oh, ow] (the last ones clipped). */
int64_t strop__winograd_tiles(const strop__conv2d_dims *d, int m);

/* u [(m + 2)^2, c_out, c_in] = G g G^T of each 3x3 filter of w [c_out, c_in, 3, 3], for the
 * output channels o_lo .. o_hi - 1; with `flip`, the filters of the input gradient instead:
 * u[., c, k] from w[k, c] rotated by 180 degrees (w is then read as [c_in, c_out, 3, 3]).
 * Computed in double, rounded once. */
void strop__winograd_filter(const strop__conv2d_dims *d, int m, const float *w, int flip,
                            float *u, int64_t o_lo, int64_t o_hi);

/* The same for the m + 2 planes of one row of u, (row, 0) .. (row, m + 1), into u
 * [m + 2, c_out, c_in] (row -1: every plane, as strop__winograd_filter): a conv whose transformed
 * filters are large holds them a row at a time (each value as the whole transform makes it). */
void strop__winograd_filter_row(const strop__conv2d_dims *d, int m, const float *w, int flip,
                                int row, float *u, int64_t o_lo, int64_t o_hi);

/* Floats of work area the two transforms below need (one row of tiles). */
size_t strop__winograd_work_floats(const strop__conv2d_dims *d, int m);

/* One image x [c_in, h, w] -> v [(m + 2)^2, c_in, ld] at columns t0 .. t0 + tiles - 1: B^T p B
 * of each (m + 2) x (m + 2) input patch p (zero outside the image, padding ph / pw). The
 * (m + 2)^2 planes of v (and of the products and dy tiles below) are ps >= c_in ld floats
 * apart. */
void strop__winograd_input(const strop__conv2d_dims *d, int m, const float *x, float *v,
                           int64_t ld, int64_t ps, int64_t t0, float *work);
/* The same for the tile rows ty0 .. ty1 - 1 of the image alone, their tiles at columns t0 ..
 * t0 + (ty1 - ty0) tiles_across - 1 (strop__winograd_input is all of them). */
void strop__winograd_input_rows(const strop__conv2d_dims *d, int m, const float *x, float *v,
                                int64_t ld, int64_t ps, int64_t t0, int64_t ty0, int64_t ty1,
                                float *work);

/* The products mm [(m + 2)^2, c_out, ld] at columns t0 .. -> one image y [c_out, oh, ow]:
 * A^T M A of each tile, plus b[o] (b may be NULL); `add`: y += that instead of y = that. */
void strop__winograd_output(const strop__conv2d_dims *d, int m, const float *mm, int64_t ld,
                            int64_t ps, int64_t t0, const float *b, float *y, int add,
                            float *work);
/* The same for the tile rows ty0 .. ty1 - 1 of the image alone (their products at columns
 * t0 ..): y's rows ty0 m .. ty1 m - 1 (those inside oh). */
void strop__winograd_output_rows(const strop__conv2d_dims *d, int m, const float *mm, int64_t ld,
                                 int64_t ps, int64_t t0, int64_t ty0, int64_t ty1, const float *b,
                                 float *y, int add, float *work);

/* The weight gradient, F(3 x 3, m x m): dW is the correlation of the input with dy, and a tile's
 * share is G^T [(A g A^T) . (B^T p B)] G for its m x m tile g of dy and the (m + 2) x (m + 2)
 * input patch p under it (the forward's matrices with the roles of A and G swapped). */

/* One image's dy [c_out, oh, ow] -> v [(m + 2)^2, c_out, ld] at columns t0 .. t0 + tiles - 1:
 * A g A^T of each m x m tile g (zero outside [oh, ow]); the tiles as the forward's. */
void strop__winograd_dy(const strop__conv2d_dims *d, int m, const float *dy, float *v, int64_t ld,
                        int64_t ps, int64_t t0, float *work);

/* dw [c_out, c_in, 3, 3] += G^T M G of each product mm [(m + 2)^2, c_out, c_in], for the
 * output channels o_lo .. o_hi - 1 (in float: M is a sum of float products already). */
void strop__winograd_filter_grad(const strop__conv2d_dims *d, int m, const float *mm, int64_t ps,
                                 float *dw, int64_t o_lo, int64_t o_hi);

#endif
