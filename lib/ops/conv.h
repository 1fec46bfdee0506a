/* SPDX-License-Identifier: MIT */
/* strop — 2-D convolution kernels (NCHW, PyTorch weight layout [out, in/groups, kh, kw]):
 * im2col + GEMM forward, GEMM + col2im backward. Private to the library. */
#ifndef STROP_OPS_CONV_H
#define STROP_OPS_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "ops/pool.h"

/* Geometry of one conv2d call. oh/ow are filled by strop__conv2d_out_size. */
typedef struct strop__conv2d_dims {
  int64_t n, c_in, h, w; /* input [n, c_in, h, w] */
  int64_t c_out, kh, kw; /* weight [c_out, c_in / groups, kh, kw] */
  int64_t sh, sw;        /* stride */
  int64_t ph, pw;        /* zero padding on each side */
  int64_t dh, dw;        /* dilation */
  int64_t groups;
  int64_t oh, ow; /* output spatial size */
  /* 1: the products run on BF16 operands with FP32 sums (the model's compute dtype): x, w and
   * dy rounded to BF16 (nearest even), the bias and the bias gradient in FP32. Ungrouped convs
   * run vdpbf16ps (strop__bf16_gemm_f32) where strop__bf16_dot_enabled(); elsewhere, and for
   * grouped convs, the exact fallback: the FP32 lowered GEMMs on the rounded operands. No
   * Winograd in the backward; the forward of ResNet's 3x3 convs as BF16 Winograd F(2x2, 3x3)
   * (strop__conv_bf16_wino: it rounds transformed values); depthwise convs keep their FP32
   * stencil (no product to speed up). 0: FP32. */
  int bf16;
} strop__conv2d_dims;

/* What the convolution applies to each image's output before it leaves the cache, in place of
 * a residual sum, a ReLU and/or a max-pool layer that follow it (the graph fuses such chains):
 * the same kernels as those layers, run per image, so the numbers are the unfused ones bit for
 * bit and neither the raw nor the rectified output is ever stored. */
typedef struct strop__conv2d_epilogue {
  /* forward: y = res + y (res_first) or y + res before the relu, res [n, c_out, oh, ow] (a
   * residual sum's other input, add's bits: the same two floats in the same order), or NULL.
   * The forward only: there is no backward of it (the graph fuses a residual sum into a conv
   * only where no backward runs through them) */
  const float *res;
  int res_first;
  int relu; /* y = relu(y) (strop__relu_forward) */
  int pool; /* then y = maxpool(y) with pd's window (pd.n, c, h, w are ignored) */
  strop__pool2d_dims pd;
  int32_t *argmax; /* pool: [n, c_out, pd.oh, pd.ow], written by the forward and read
                             by the backward (as strop__maxpool2d_forward's) */
  const float *y;  /* backward with relu: the forward's (final) output */
} strop__conv2d_epilogue;

/* Tests and benches: 1 (the default) runs depthwise convs (groups = c_in) through the direct
 * stencil kernel, 0 through the grouped im2col + GEMM path like any other. */
extern int strop__conv_depthwise_direct;

/* Tests and benches: 1 (the default) runs the FP32 lowered forward of convs with more output
 * channels than output positions a block of images per product (ops/conv.c: f32_block), 0 an
 * image per product. */
extern int strop__conv_batch;

/* Tests and benches: 1 (the default) runs the FP32 lowered forward's epilogue (a residual sum,
 * a relu; not a pool) in the pass that copies a batched block's outputs into y, 0 after the
 * copy, over y again (the same bits). */
extern int strop__conv_ep_copy;

/* Tests and benches: 1 (the default) gathers a stride-2 conv's columns 16 at a time with
 * AVX-512 permutes where the CPU has it (im2col: ResNet's stem and strided 3x3 convs), and
 * adds them back into the input gradient so (col2im), 0 one value at a time (the same bits). */
extern int strop__conv_gather2;

/* Tests and benches: 1 (the default) writes an FP32 per-image conv's bias into y by a fill
 * before its product adds to it, 0 by the rank-1 product b 1^T as before (the same bits). */
extern int strop__conv_bias_fill;

/* Tests and benches: 1 (the default) packs the BF16 convs' columns for vdpbf16ps straight from
 * the images (forward and weight gradient), the weight once per call, and has the products
 * write y (and a pointwise conv's dx) themselves; 0 runs the path before (im2col's FP32 columns,
 * the weight packed per block, products through a buffer): the same bits. */
extern int strop__conv_bf16_direct;

/* Tests and benches: 1 (the default) computes the vdpbf16ps input gradient of stride-1 convs
 * that are not pointwise as the forward of dy with the weight flipped and transposed, its
 * columns packed straight from dy and the product written into dx (with strop__conv_bf16_direct);
 * 0 through FP32 columns W^T dy and col2im. Not the same bits: each dx element sums its terms in
 * another order (the reference tests bound both). */
extern int strop__conv_bf16_dx;

/* 1 (the default): a BF16 conv's forward that the FP32 path would run as Winograd
 * (strop__conv_winograd: 3x3 stride 1, ungrouped, 64 or more channels in and out) runs as
 * Winograd F(2x2, 3x3) with the transformed filters and tiles rounded to BF16 and FP32 sums
 * (vdpbf16ps, or on the fallback the FP32 GEMM on the rounded values): 16 products per tile
 * and channel pair against the direct form's 36. Not the direct form's numbers: against the
 * float64 conv of the unrounded operands its error is about 1.5x the direct BF16 path's on
 * ResNet's 3x3 shapes (docs/performance.md). F(4x4, 3x3), which the FP32 path uses, is not
 * taken in BF16: its transforms' constants make the rounding error about 9x the direct
 * path's. Its input gradient follows it (strop__conv_bf16_wino_dx); the weight gradient stays
 * the direct BF16 form. 0: the direct form. Tests and benches switch it (bench_big
 * WINO_BF16=ab). */
extern int strop__conv_bf16_wino;

/* 1 (the default): where the vdpbf16ps input gradient runs as the forward of dy with the
 * flipped weight (strop__conv_bf16_dx) and that forward is one strop__conv_bf16_wino would run as
 * Winograd (3x3 stride 1, 64 or more channels in and out), it runs as that BF16 Winograd
 * F(2x2, 3x3) forward: the flipped weight's transformed planes made once per call, dy's tiles
 * read straight from the output gradient. Its error against the float64 input gradient is
 * about the forward's (1.5x the direct BF16 form's). 0: the direct form. Tests and benches
 * switch it (bench_big WINO_DX=ab). */
extern int strop__conv_bf16_wino_dx;

/* Tests and benches: 1 (the default) has the vdpbf16ps forward that writes y itself apply a
 * fused residual sum and relu (without a pool) in its tiles' stores, 0 in a pass over each
 * image after: the same bits. */
extern int strop__conv_tile_relu;

/* Tests and benches: 1 (the default) has the vdpbf16ps forward that writes y itself ask for
 * each tile's output lines (for writing) before the tile's sums; 0 does not. The same bits. */
extern int strop__conv_tile_prefetch;

/* Tests and benches: 1 (the default) runs the FP32 lowered backward of the convs with more
 * output channels than output positions a block of images per product, the products split
 * across threads instead of the images (ops/conv.c: bwd_block); 0 an image per product, each
 * chunk summing its own weight gradient. */
extern int strop__conv_batch_backward;

/* Tests and benches: 1 (the default) holds the large Winograd transforms of a conv (ResNet-50's
 * 512-channel 3x3: 37.7 MB of filters, and as much of weight-gradient products) a row of planes
 * or a block of output channels at a time where the batch allows (ops/conv.c: wino_rows,
 * wino_dw_rows); 0 all at once. The same bits. */
extern int strop__conv_wino_rows;

/* The forward, input gradient and weight gradient of 3x3 stride-1 dilation-1 ungrouped convs
 * (the input gradient also needs padding <= 2): -1 (the default) follows
 * STROP_WINOGRAD in the environment ("0" never, "2" / "4" F(2x2, 3x3) / F(4x4, 3x3) on every
 * such conv), and without it runs F(4x4, 3x3) where the input and output channels are both
 * >= 64 and the output is at least 8 x 8 (the BF16 forward's F(2x2, 3x3): at any size), the
 * lowered GEMM elsewhere; 0 never; 2 or 4 that tile on every such conv (tests, benches). */
extern int strop__conv_winograd;

/* Output size along one axis, or a value <= 0 when the (dilated) kernel does not fit the
 * padded input: floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1. */
int64_t strop__conv_out_len(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil);
/* Fills d->oh, d->ow from the rest. */
void strop__conv2d_out_size(strop__conv2d_dims *d);

/* Floats of scratch the forward (backward = 0) or the backward (backward = 1) needs when the
 * batch is split into `chunks` chunks run in parallel (strop__par_run); the caller hands that
 * much (64-byte aligned, e.g. from the step arena) and the same `chunks`; always > 0. 2: the
 * forward given its transformed filters (strop__conv2d_forward_filtered), which then leaves
 * them out. */
size_t strop__conv2d_scratch_floats(const strop__conv2d_dims *d, int backward, int chunks,
                                    const strop__conv2d_epilogue *ep);

/* y = conv(x, w) + b. x [n, c_in, h, w]; w as above; b [c_out] or NULL; y [n, c_out, oh, ow]
 * (overwritten). With an epilogue ep (or NULL), y = maxpool(relu(conv(x, w) + b)) as ep asks,
 * [n, c_out, pd.oh, pd.ow] with a pool. */
void strop__conv2d_forward(const strop__conv2d_dims *d, const float *x, const float *w,
                           const float *b, float *y, float *scratch, int chunks,
                           const strop__conv2d_epilogue *ep);

/* Floats of what a forward of d computes from the weight alone at each call: the transformed
 * filters of a Winograd forward, or the weight (BF16 Winograd: its transformed filters)
 * rounded to BF16 and packed for vdpbf16ps (d->bf16 where the products run it,
 * strop__conv_bf16_direct); 0: neither. They depend on the
 * weight, c_in, c_out, the kernel, the compute dtype and the tile (strop__conv_winograd) only,
 * not on the batch or the image size: a caller whose weight does not change (a frozen trunk)
 * computes them once with strop__conv2d_filters, the same bits as the forward's own, and hands
 * them to strop__conv2d_forward_filtered (a BF16 forward given them does not read w). */
size_t strop__conv2d_filters_floats(const strop__conv2d_dims *d);
/* 0, or -1 when a BF16 Winograd forward's transform could not get its working memory (a row of
 * FP32 filters, 16 c_out c_in bytes): u is then not made. */
int strop__conv2d_filters(const strop__conv2d_dims *d, const float *w, float *u);

/* strop__conv2d_forward with u the filters strop__conv2d_filters made of w (NULL: computed
 * here, into the scratch), and scratch sized by strop__conv2d_scratch_floats(d, u ? 2 : 0, ...). */
void strop__conv2d_forward_filtered(const strop__conv2d_dims *d, const float *x, const float *w,
                                    const float *u, const float *b, float *y, float *scratch,
                                    int chunks, const strop__conv2d_epilogue *ep);

/* Given dy [n, c_out, oh, ow]: ADDS d loss / dx into dx, d loss / dw into dw, d loss / db into
 * db; any of the three may be NULL (not wanted). With chunks > 1 the weight and bias gradients
 * are summed per chunk, then the chunks in order: deterministic for a given chunk count. The
 * convs whose forward runs Winograd (strop__conv_winograd) take their weight and bias
 * gradients from Winograd F(3x3, m x m) too, and the FP32 lowered convs with more output
 * channels than positions (strop__conv_batch_backward) from products over blocks of images:
 * both the same bits at any chunk count. */
/* With an epilogue, dy is the gradient of the epilogue's output and ep carries the forward's
 * argmax and output. */
void strop__conv2d_backward(const strop__conv2d_dims *d, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float *scratch,
                            int chunks, const strop__conv2d_epilogue *ep);
/* Non-zero when d's backward (without an epilogue) reads x only through values rounded to BF16
 * as strop__bf16_rne_bits rounds them: its weight gradient's products in BF16 — 2 on
 * vdpbf16ps, whose backward can take x held in BF16 as well (strop__conv2d_backward_held, for
 * the geometries strop__conv2d_reads_x_held names), 1 on the exact fallback's rounded columns.
 * 0 in FP32, and for a depthwise conv, whose direct stencil stays FP32. Reads d's bf16, c_in
 * and groups only. */
int strop__conv2d_reads_x_rounded(const strop__conv2d_dims *d);
/* 1 when strop__conv2d_backward_held runs d's backward on `chunks` chunks: products on
 * vdpbf16ps (bf16_mode 1: d->bf16 where strop__bf16_dot_enabled()), not depthwise, and the weight
 * gradient's columns packed straight from the images (strop__conv_bf16_direct, a geometry
 * pack_cols_t reads). 0 otherwise. */
int strop__conv2d_reads_x_held(const strop__conv2d_dims *d, int chunks);
/* strop__conv2d_backward (assign 0) or _backward_assign (1) with x held in BF16: xh [n, c_in, h,
 * w] as ops/lowp.h's strop__bf16_compact_par holds x (the bits strop__bf16_rne_bits rounds each
 * value to; the marker STROP__BF16_TINY of a nonzero value that rounds to zero read as that
 * zero, with its sign), read by the weight gradient's products as they are. The same bits as
 * the FP32 call on x, at half the bytes read, and no FP32 copy of x. Only where
 * strop__conv2d_reads_x_held(d, chunks). */
void strop__conv2d_backward_held(const strop__conv2d_dims *d, const uint16_t *xh, const float *w,
                                 const float *dy, float *dx, float *dw, float *db, float *scratch,
                                 int chunks, const strop__conv2d_epilogue *ep, int assign);
/* The same, but dx is written outright (its old contents are never read): the graph then need
 * not zero a sole consumer's input gradient first. */
void strop__conv2d_backward_assign(const strop__conv2d_dims *d, const float *x, const float *w,
                                   const float *dy, float *dx, float *dw, float *db,
                                   float *scratch, int chunks, const strop__conv2d_epilogue *ep);

#endif
