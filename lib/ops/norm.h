/* SPDX-License-Identifier: MIT */
/* strop — batch normalisation kernels on [n, c, l] (l = 1 for [n, c], h*w for images):
 * batch statistics (train) or running statistics (eval / frozen), forward and backward.
 * Private to the library. */
#ifndef STROP_OPS_NORM_H
#define STROP_OPS_NORM_H

#include <stddef.h>
#include <stdint.h>

/* A residual sum after the norm, and the relu after it, computed in the norm's passes (the
 * last blocks of a ResNet: norm, add(norm, shortcut), relu): the norm's output is never stored
 * nor read again, nor is the sum's gradient, with the bits of the layers apart. */
typedef struct strop__bn_res {
  const float *r;   /* forward: the sum's other operand, [n, c, l] like x */
  int r_first;      /* 1: the sum is r + y (r is the add's input 0), 0: y + r */
  int relu;         /* the relu after the sum too: its select as strop__relu_forward's */
  const float *out; /* backward with relu: the chain's output, relu(sum), whose select of dy
                       (strop__relu_backward_assign's: where out <= 0, 0) gives the sum's
                       gradient; NULL without the relu, or with out_h */
  float *dr;        /* backward: r's gradient (the sum's, as the add hands it on), or NULL */
  int dr_assign;    /* 1: dr is written outright, 0: added to */
  float *stage;     /* backward: scratch for the dot pass, stage_floats floats
                       (strop__batchnorm_stage_floats), or NULL: the same bits either way */
  size_t stage_floats;
  const uint16_t *dev;   /* backward: x's deviations from the mean argument, x - mean, held in
                          BF16 ([n, c, l] like x; strop__bf16_compact_centred_par): read in its
                          place, x then unread (it may be NULL); or NULL. Without the fused
                          relu's a and b then (relu_ab NULL): its select comes from out */
  const uint16_t *out_h; /* backward with relu: that output held in BF16 with each value's sign
                            (strop__bf16_compact_par), read for the select in out's place; or
                            NULL */
} strop__bn_res;

/* The floats of scratch (strop__bn_res.stage) that let the train-mode backward's dot pass of a
 * norm with a residual chain after it read its tensors a row at a time on `nthreads` threads:
 * eight channels' rows of dy, the chain's output and the sum's gradient, each read or written
 * beside the others, are more streams than the CPU's prefetchers follow. 0 when the pass does
 * not use it (no AVX-512, the sanitizers' builds). */
size_t strop__batchnorm_stage_floats(int nthreads, int64_t n, int64_t c, int64_t l);

/* Train mode: y = (x - mean) * invstd * gamma + beta with the batch's per-channel mean and
 * biased variance (accumulated in double), computed as y = x a + b with float a and b per
 * channel. With relu_ab (2c floats, else NULL), relu(y) as strop__relu_forward gives it (a
 * relu after the norm computed in the same pass), and each channel's a into relu_ab[ch], b
 * into relu_ab[c + ch] for the backward. gamma/beta may be NULL (affine off). mean, invstd
 * (for the backward) and var_biased get c values each; var_biased may be NULL. With res
 * (relu_ab NULL then), y is the residual sum after the norm (and its relu): y = x a + b + r. */
void strop__batchnorm_forward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *gamma, const float *beta, float eps,
                                    float *relu_ab, float *y, float *mean, float *invstd,
                                    float *var_biased, const strop__bn_res *res);
/* Backward of the train-mode forward: ADDS into dx (with `assign`: writes every element of dx
 * instead), dgamma, dbeta (each may be NULL). relu_ab: what the forward wrote there when it
 * had the relu (dy is then the gradient of relu(y); it passes where x a + b > 0 or NaN, as
 * strop__relu_backward_assign passes it where relu(y) does: y is not read), else NULL. With
 * res, dy is the gradient of the forward's y (the sum, or its relu: res->out), and the sum's
 * gradient goes to res->dr too. */
void strop__batchnorm_backward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                     const float *dy, const float *relu_ab, const float *gamma,
                                     const float *mean, const float *invstd, float *dx,
                                     float *dgamma, float *dbeta, int assign,
                                     const strop__bn_res *res);

/* Train mode over a batch spread over a group of processes (SyncBatchNorm), in passes between
 * which the caller adds the per-channel sums up over the group (every process the same sums):
 * strop__batchnorm_sums gives this process's sums of x per channel (mu NULL) or of (x - mu)^2
 * (mu: the group's means, sum / count), in double, c values into out;
 * strop__batchnorm_forward_sums normalises with the group's sums of x (sum) and of squared
 * deviations (sq) over count values per channel (relu_ab, y, mean, invstd, var_biased as for
 * strop__batchnorm_forward_train); in the backward strop__batchnorm_dots ADDS this process's
 * gamma and beta gradients (dgamma, dbeta may be NULL; those of the process's rows: the
 * trainer sums parameter gradients over the group) and gives its sums of dy and (x - mean) dy
 * per channel (c doubles each), and strop__batchnorm_backward_sums writes (assign) or ADDS dx
 * from the group's sums over count values; res as for those (dots hands the sum's gradient on,
 * backward_sums reads it back). With one process's sums and count = n l they give the bits of
 * strop__batchnorm_forward_train and _backward_train. */
void strop__batchnorm_sums(int64_t n, int64_t c, int64_t l, const float *x, const double *mu,
                           double *out);
void strop__batchnorm_forward_sums(int64_t n, int64_t c, int64_t l, const float *x,
                                   const float *gamma, const float *beta, float eps,
                                   const double *sum, const double *sq, double count,
                                   float *relu_ab, float *y, float *mean, float *invstd,
                                   float *var_biased, const strop__bn_res *res);
void strop__batchnorm_dots(int64_t n, int64_t c, int64_t l, const float *x, const float *dy,
                           const float *relu_ab, const float *mean, const float *invstd,
                           float *dgamma, float *dbeta, double *sum, double *dot,
                           const strop__bn_res *res);
void strop__batchnorm_backward_sums(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *dy, const float *relu_ab, const float *gamma,
                                    const float *mean, const float *invstd, const double *sum,
                                    const double *dot, double count, float *dx, int assign,
                                    const strop__bn_res *res);

/* Running statistics update as PyTorch: r = (1 - momentum) r + momentum s, with the unbiased
 * variance var_biased * count / (count - 1) for running_var. */
void strop__batchnorm_update_running(int64_t c, const float *mean, const float *var_biased,
                                     int64_t count, float momentum, float *running_mean,
                                     float *running_var);

/* Eval mode (or frozen statistics): normalise with the given mean/var (relu_ab: and the relu,
 * as for the train-mode forward). */
void strop__batchnorm_forward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                   const float *gamma, const float *beta, const float *mean,
                                   const float *var, float eps, float *relu_ab, float *y,
                                   const strop__bn_res *res);
/* Its backward: an affine map. ADDS into dx (`assign`: writes it), dgamma, dbeta (each may be
 * NULL); relu_ab as for the train-mode backward. */
void strop__batchnorm_backward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *dy, const float *relu_ab, const float *gamma,
                                    const float *mean, const float *var, float eps, float *dx,
                                    float *dgamma, float *dbeta, int assign,
                                    const strop__bn_res *res);

/* Tests and benches: which kernels sum a group of channels; 0 the best the CPU has (AVX-512),
 * 1 plain C. The same bits either way. */
extern int strop__bn_isa;

#endif
