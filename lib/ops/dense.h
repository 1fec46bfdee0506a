/* SPDX-License-Identifier: MIT */
/* strop — kernels of the dense family: linear (GEMM through strop__sgemm), elementwise
 * activations, softmax/log_softmax along an axis, and dropout. Forward and backward pairs. */
#ifndef STROP_OPS_DENSE_H
#define STROP_OPS_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "ops/lowp.h"

/* y[m, out] = x[m, in] W[out, in]^T + b[out] (b may be NULL). */
void strop__linear_forward(const float *x, const float *w, const float *b, float *y, int64_t m,
                           int64_t in, int64_t out);
/* The same with W stored [in, out] (w_in_out = 1: GPT-2's Conv1D) or [out, in] (0). */
void strop__linear_forward_ex(const float *x, const float *w, const float *b, float *y, int64_t m,
                              int64_t in, int64_t out, int w_in_out);
/* Given dy[m, out]: dx[m, in] += dy W; dw[out, in] += dy^T x; db[out] += sum_m dy.
 * Any of dx, dw, db may be NULL (not wanted). With STROP__LB_ASSIGN_DX dx is written rather
 * than added to (its old contents are not read), with STROP__LB_ASSIGN_PARAMS dw and db; the
 * values are those of adding into zeros. Returns 1 when it assigned dw and db and every value
 * it wrote there is finite (checked as it wrote them); 0 otherwise, when a caller that needs
 * to know must look itself. */
/* STROP__LB_W_IN_OUT: W (and dw) are stored [in, out], as strop__linear_forward_ex's w_in_out. */
enum { STROP__LB_ASSIGN_DX = 1, STROP__LB_ASSIGN_PARAMS = 2, STROP__LB_W_IN_OUT = 4 };
int strop__linear_backward(const float *x, const float *w, const float *dy, float *dx, float *dw,
                           float *db, int64_t m, int64_t in, int64_t out, unsigned assign);

/* The same two with W held in BF16 or int8 (ops/lowp.h; w->rows x w->cols is W's layout,
 * [out, in] or [in, out] with w_in_out). On a CPU with AVX512_BF16 W multiplies BF16 x BF16
 * with FP32 sums (x, or dy in the backward, rounded to BF16; an int8 W expanded to the BF16
 * values nearest its FP32 ones while its panels are packed); elsewhere (or with
 * strop__bf16_impl 1) W is widened to FP32 for the FP32 GEMM, which gives the bits of
 * strop__linear_forward_ex / strop__linear_backward on those FP32 values. Backward gives dx
 * only (a weight so held is frozen), written (assign_dx) or added. Return 0, or -1 when the scratch could not be allocated (y or dx not written). */
int strop__linear_forward_lowp(const float *x, const strop__lowp *w, const float *b, float *y,
                               int64_t m, int64_t in, int64_t out, int w_in_out);
int strop__linear_backward_lowp(const strop__lowp *w, const float *dy, float *dx, int64_t m,
                                int64_t in, int64_t out, int w_in_out, int assign_dx);

/* 1 when the two above run with w as it is held, without widening all of it into scratch at
 * each call (a BF16 or int8 weight on the vdpbf16ps kernels): a caller that runs a product a
 * few rows at a time then pays nothing per call for the weight. */
int strop__linear_lowp_direct(const strop__lowp *w, int w_in_out);

/* The same products in BF16 for an FP32 weight (the model's compute dtype): wb is the weight's
 * BF16 copy (strop__bf16_shadow_fill; [out, in], or [in, out] with w_in_out = wb->scale_cols).
 * Where strop__bf16_dot_enabled(), x (dy) and the copy multiply on vdpbf16ps with FP32 sums, as
 * strop__linear_forward_lowp / strop__linear_backward_lowp do with a held weight, and the
 * weight gradient dW = dy^T x rounds both to BF16 while packing them (ops/bf16gemm.h).
 * Elsewhere x, dy and W are rounded to BF16 values and multiply in FP32: the bits of
 * strop__linear_forward_ex / strop__linear_backward on those rounded values. The bias gradient
 * sums the unrounded dy (strop__linear_backward's). Backward: any of dx, dw, db may be NULL
 * (wb may be NULL without dx); assign as strop__linear_backward's (STROP__LB_*, W_IN_OUT
 * included). Return 0, or -1 when scratch could not be allocated (nothing written). */
int strop__linear_forward_bf16(const float *x, const strop__lowp *wb, const float *b, float *y,
                               int64_t m, int64_t in, int64_t out);
int strop__linear_backward_bf16(const float *x, const strop__lowp *wb, const float *dy, float *dx,
                                float *dw, float *db, int64_t m, int64_t in, int64_t out,
                                unsigned assign);
/* strop__linear_backward_bf16 that sets *finite to 1 when it wrote dW (and db) outright
 * (STROP__LB_ASSIGN_PARAMS) on vdpbf16ps and saw every value finite as it wrote them, else 0:
 * the trainer's guard then need not read them again. xh: NULL, or x as the step holds it in
 * BF16 (strop__bf16_compact_par; x is then not read and may be NULL): dW reads those values as
 * they are where vdpbf16ps runs (strop__bf16_gemm_kn_h), the exact fallback widens them — the
 * bits of x given in FP32. */
int strop__linear_backward_bf16_seen(const float *x, const uint16_t *xh, const strop__lowp *wb,
                                     const float *dy, float *dx, float *dw, float *db, int64_t m,
                                     int64_t in, int64_t out, unsigned assign, int *finite);
/* 1 (the default): where strop__linear_backward_bf16_seen makes both dx and dW on vdpbf16ps, dy
 * is rounded to BF16 once, by dx's product, and dW reads those values; 0: each product rounds
 * it (bench_big DY_ONCE=ab; the same bits). */
extern int strop__dy_once;
/* The forward y = x W^T + b and the input gradient dx = dy W (written with assign_dx, else
 * added) on vdpbf16ps straight from the FP32 weight w ([out, in], or [in, out] with w_in_out),
 * rounded to BF16 as the product packs it (strop__bf16_gemm_f32), no copy kept: the bits of
 * strop__linear_forward_bf16 / the input gradient of strop__linear_backward_bf16 through w's
 * copy. Only where strop__bf16_dot_enabled(). Return 0, or -1 when scratch could not be
 * allocated (nothing written). */
int strop__linear_forward_bf16_packed(const float *x, const float *w, const float *b, float *y,
                                      int64_t m, int64_t in, int64_t out, int w_in_out);
int strop__linear_dx_bf16_packed(const float *dy, const float *w, float *dx, int64_t m,
                                 int64_t in, int64_t out, int w_in_out, int assign_dx);

/* Elementwise activations over n floats. Backward ADDS into dx; it reads x (the input)
 * and/or y (the output) as the formula needs — both are always passed. */
void strop__relu_forward(const float *x, float *y, size_t n);
void strop__relu_backward(const float *x, const float *y, const float *dy, float *dx, size_t n);
/* dx = (y > 0 ? dy : 0): the backward into an uninitialised dx. */
void strop__relu_backward_assign(const float *y, const float *dy, float *dx, size_t n);
void strop__leaky_relu_forward(const float *x, float *y, size_t n, float slope);
void strop__leaky_relu_backward(const float *x, const float *y, const float *dy, float *dx,
                                size_t n, float slope);
/* approximate: 0 = exact (erf), 1 = tanh form; PyTorch's formulas. */
void strop__gelu_forward(const float *x, float *y, size_t n, int approximate);
void strop__gelu_backward(const float *x, const float *y, const float *dy, float *dx, size_t n,
                          int approximate);
/* dx = 0 + dy gelu'(x) (the bits of strop__gelu_backward into a zeroed dx) into an
 * uninitialised dx: no pass to zero it first. */
void strop__gelu_backward_assign(const float *x, const float *dy, float *dx, size_t n,
                                 int approximate);
/* Which GELU kernels run: 0 the AVX-512 ones where the CPU has them (the erf form's Phi by
 * vrcp14ps, vscalefps and an exactly split x^2 / 2, the tanh form as a logistic; within a few
 * ulp of libm: tests/check_layers_dense's gelu_avx512_accuracy), 1 the per-CPU clones of the
 * plain loops (strop__verfcf, strop__vtanhf). For tests and bench_big's GELU=ab. */
extern int strop__gelu_isa;
/* 1 (default): a linear layer's bias added as each tile of its BF16 product is stored
 * (strop__bf16_gemm_nt_bias); 0: C's rows set to the bias first and the product added (beta 1).
 * The same bits. For bench_big's BIAS_COLS=ab. */
extern int strop__bias_cols;
/* Phi(x) = erfc(-x / sqrt2) / 2, the exact form's factor, as the kernels strop__gelu_isa
 * selects compute it: for the accuracy tests. Returns 1 when the AVX-512 kernel ran, 0 when
 * the clones did (no AVX-512, a build without clones, or strop__gelu_isa 1). */
int strop__gelu_phi(const float *x, float *phi, size_t n);
void strop__silu_forward(const float *x, float *y, size_t n);
void strop__silu_backward(const float *x, const float *y, const float *dy, float *dx, size_t n);
/* The gated MLP's product (Llama's act_fn(gate) * up) in one pass: h = silu(g) u, the values
 * of strop__silu_forward then the product. Its backward in one pass, given dh: du = dh
 * silu(g) (written) and dh replaced by dg = dh u silu'(g), the values of the separate kernels
 * (dg as strop__silu_backward adds it to zeros, but for the sign of a zero). */
void strop__silu_gate_forward(const float *g, const float *u, float *h, size_t n);
void strop__silu_gate_backward(const float *g, const float *u, float *dh, float *du, size_t n);
/* PyTorch's hard approximations: hardsigmoid(x) = relu6(x + 3) / 6, hardswish(x) = x
 * hardsigmoid(x); their derivatives as torch defines them at the kinks (hardswish: 0 below
 * -3, x / 3 + 1/2 on [-3, 3], 1 above; hardsigmoid: 1/6 on (-3, 3), 0 elsewhere). */
/* relu6(x) = min(max(x, 0), 6) (torch.nn.ReLU6, which is Hardtanh(0, 6)); its gradient passes
 * only strictly inside (0, 6), as torch's hardtanh_backward has it. The backward reads y only
 * (x may be NULL or overwritten: the layer runs in place). */
void strop__relu6_forward(const float *x, float *y, size_t n);
void strop__relu6_backward(const float *x, const float *y, const float *dy, float *dx, size_t n);
void strop__hardswish_forward(const float *x, float *y, size_t n);
void strop__hardswish_backward(const float *x, const float *y, const float *dy, float *dx,
                               size_t n);
void strop__hardsigmoid_forward(const float *x, float *y, size_t n);
void strop__hardsigmoid_backward(const float *x, const float *y, const float *dy, float *dx,
                                 size_t n);
void strop__tanh_forward(const float *x, float *y, size_t n);
void strop__tanh_backward(const float *x, const float *y, const float *dy, float *dx, size_t n);
void strop__sigmoid_forward(const float *x, float *y, size_t n);
void strop__sigmoid_backward(const float *x, const float *y, const float *dy, float *dx,
                             size_t n);

/* Softmax / log-softmax over the middle axis of a [outer, d, inner] block. Backward ADDS
 * into dx and needs only the output y. */
void strop__softmax_forward(const float *x, float *y, int64_t outer, int64_t d, int64_t inner);
void strop__softmax_backward(const float *y, const float *dy, float *dx, int64_t outer, int64_t d,
                             int64_t inner);
void strop__log_softmax_forward(const float *x, float *y, int64_t outer, int64_t d,
                                int64_t inner);
void strop__log_softmax_backward(const float *y, const float *dy, float *dx, int64_t outer,
                                 int64_t d, int64_t inner);

/* 1 when every x[i] is finite (no NaN, no Inf). An exponent-bits test, so the loop vectorises
 * without reassociating float sums. strop__all_finite splits a long array across threads;
 * strop__all_finite_serial runs on the calling thread (inside a parallel run). */
int strop__all_finite(const float *x, size_t n);
int strop__all_finite_serial(const float *x, size_t n);

/* Inverted dropout: mask[i] = 1 with probability 1 - p (drawn from rng, which advances),
 * y = x * mask / (1 - p). p = 1 gives zeros. */
void strop__dropout_forward(const float *x, float *y, uint8_t *mask, size_t n, float p,
                            strop__rng *rng);
/* dx += dy * mask / (1 - p) */
void strop__dropout_backward(const uint8_t *mask, const float *dy, float *dx, size_t n, float p);

#endif
