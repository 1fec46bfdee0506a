/* strop — 2-D convolution kernels (NCHW, PyTorch weight layout [out, in/groups, kh, kw]):
 * im2col + GEMM forward, GEMM + col2im backward. Private to the library. */
#ifndef STROP_OPS_CONV_H
#define STROP_OPS_CONV_H

#include <stddef.h>
#include <stdint.h>

/* Geometry of one conv2d call. oh/ow are filled by strop__conv2d_out_size. */
typedef struct strop__conv2d_dims {
  int64_t n, c_in, h, w;   /* input [n, c_in, h, w] */
  int64_t c_out, kh, kw;   /* weight [c_out, c_in / groups, kh, kw] */
  int64_t sh, sw;          /* stride */
  int64_t ph, pw;          /* zero padding on each side */
  int64_t dh, dw;          /* dilation */
  int64_t groups;
  int64_t oh, ow;          /* output spatial size */
} strop__conv2d_dims;

/* Output size along one axis, or a value <= 0 when the (dilated) kernel does not fit the
 * padded input: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1. */
int64_t strop__conv_out_len(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil);
/* Fills d->oh, d->ow from the rest. */
void strop__conv2d_out_size(strop__conv2d_dims *d);

/* Floats of scratch the forward (backward = 0) or the backward (backward = 1) needs when the
 * batch is split into `chunks` chunks run in parallel (strop__par_run); the caller hands that
 * much (64-byte aligned, e.g. from the step arena) and the same `chunks`; always > 0. */
size_t strop__conv2d_scratch_floats(const strop__conv2d_dims *d, int backward, int chunks);

/* y = conv(x, w) + b. x [n, c_in, h, w]; w as above; b [c_out] or NULL; y [n, c_out, oh, ow]
 * (overwritten). */
void strop__conv2d_forward(const strop__conv2d_dims *d, const float *x, const float *w,
                           const float *b, float *y, float *scratch, int chunks);

/* Given dy [n, c_out, oh, ow]: ADDS d loss / dx into dx, d loss / dw into dw, d loss / db into
 * db; any of the three may be NULL (not wanted). With chunks > 1 the weight and bias gradients
 * are summed per chunk, then the chunks in order: deterministic for a given chunk count. */
void strop__conv2d_backward(const strop__conv2d_dims *d, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float *scratch,
                            int chunks);

#endif
