/* SPDX-License-Identifier: MIT */
/* strop — 2-D pooling kernels on NCHW: max (with argmax for the backward), average (zero
 * padding counted or not), adaptive average and global average. Private to the library. */
#ifndef STROP_OPS_POOL_H
#define STROP_OPS_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct strop__pool2d_dims {
  int64_t n, c, h, w; /* input [n, c, h, w] */
  int64_t kh, kw;     /* window */
  int64_t sh, sw;     /* stride */
  int64_t ph, pw;     /* implicit padding on each side (-inf for max, zeros for average) */
  int64_t dh, dw;     /* dilation (max only; 1 for average) */
  int64_t oh, ow;     /* output size (see strop__conv_out_len) */
} strop__pool2d_dims;

/* y [n, c, oh, ow] = window maxima; argmax gets, per output, the index of the winner in its
 * h*w plane (the first one on ties; NaN wins, as in PyTorch). */
void strop__maxpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y,
                              int32_t *argmax);
/* y = maxpool(relu(x)) (relu as strop__relu_forward) when relu is 1, without storing relu(x):
 * the same values and argmax as the two layers one after the other. argmax may be NULL where
 * no backward reads it: the same values, without the winners' bookkeeping. */
void strop__maxpool2d_forward_ex(const strop__pool2d_dims *d, const float *x, float *y,
                                 int32_t *argmax, int relu);
/* ADDS dy into dx at the argmax positions. */
void strop__maxpool2d_backward(const strop__pool2d_dims *d, const float *dy,
                               const int32_t *argmax, float *dx);
/* The same into an uninitialised dx: every element of dx is written. */
void strop__maxpool2d_backward_assign(const strop__pool2d_dims *d, const float *dy,
                                      const int32_t *argmax, float *dx);

/* The backward of strop__maxpool2d_forward_ex: as strop__maxpool2d_backward_assign, with the
 * relu's backward when relu_y (the forward's output y) is not NULL: windows whose y is <= 0
 * pass no gradient. */
void strop__maxpool2d_backward_assign_ex(const strop__pool2d_dims *d, const float *dy,
                                         const int32_t *argmax, const float *relu_y, float *dx);
/* Tests: which max-pool kernels run; 0 the best the CPU has, 1 no AVX-512, 2 plain C. */
extern int strop__pool_isa;
/* Window means; count_include_pad = 1 divides by kh*kw, 0 by the in-image count. */
void strop__avgpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y,
                              int count_include_pad);
/* ADDS the gradient into dx. */
void strop__avgpool2d_backward(const strop__pool2d_dims *d, const float *dy, float *dx,
                               int count_include_pad);

/* PyTorch's AdaptiveAvgPool2d to d->oh x d->ow (only n, c, h, w, oh, ow of d are read):
 * output cell (i, j) is the mean of rows [floor(i h / oh), ceil((i + 1) h / oh)) and the
 * columns likewise, so windows may be uneven and overlap. The backward ADDS into dx. */
void strop__adaptive_avgpool2d_forward(const strop__pool2d_dims *d, const float *x, float *y);
void strop__adaptive_avgpool2d_backward(const strop__pool2d_dims *d, const float *dy, float *dx);

/* [n, c, hw] -> [n, c] means, and its backward (ADDS dy / hw into dx). */
void strop__global_avgpool_forward(int64_t n, int64_t c, int64_t hw, const float *x, float *y);
void strop__global_avgpool_backward(int64_t n, int64_t c, int64_t hw, const float *dy, float *dx);

#endif
