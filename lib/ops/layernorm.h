/* SPDX-License-Identifier: MIT */
/* strop — layer and RMS normalization kernels: each of `rows` rows of `d` contiguous values is
 * normalized by its own statistics, then scaled (and shifted) per position. */
#ifndef STROP_OPS_LAYERNORM_H
#define STROP_OPS_LAYERNORM_H

#include <stddef.h>
#include <stdint.h>

/* y = (x - mean) * rstd * gamma + beta per row; gamma/beta NULL = 1/0. mean and rstd
 * (rows floats each, nullable) keep what the backward needs. Biased variance, as PyTorch. */
void strop__layernorm_forward(const float *x, int64_t rows, int64_t d, const float *gamma,
                              const float *beta, float eps, float *y, float *mean, float *rstd);

/* Adds into dx (nullable), dgamma and dbeta (nullable) given dy and the forward's x, mean
 * and rstd. */
void strop__layernorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                               const float *gamma, const float *mean, const float *rstd,
                               float *dx, float *dgamma, float *dbeta);

/* RMS normalization (Llama's RMSNorm): y = x * rstd * gamma per row, rstd = 1 / sqrt(mean(x^2)
 * + eps); gamma NULL = 1. rstd (rows floats, nullable) keeps what the backward needs. */
void strop__rmsnorm_forward(const float *x, int64_t rows, int64_t d, const float *gamma,
                            float eps, float *y, float *rstd);

/* Adds into dx (nullable) and dgamma (nullable) given dy and the forward's x and rstd:
 * dx = rstd (g - x rstd^2 mean(g x)), g = dy * gamma; one pass over each row for both. The rows
 * come in at most 8 slices fixed by rows and d (not by the thread count), which strop's threads
 * share; each slice sums its share of dgamma in row order, the first straight into dgamma, the
 * others in scratch (strop__rmsnorm_backward_scratch(rows, d) floats; NULL when that is 0), and
 * the shares are added in slice order: every thread count gives the same bits. */
void strop__rmsnorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                             const float *gamma, const float *rstd, float *dx, float *dgamma,
                             float *scratch);
/* Floats of the backward's scratch for `rows` rows of d. */
size_t strop__rmsnorm_backward_scratch(int64_t rows, int64_t d);

/* A residual sum and the RMS norm of it in one pass over each row (a Llama block's add and the
 * norm after it): s = x[0] + x[1] + ... + x[nx - 1] (summed in that order; nx 1 copies x[0]),
 * then y and rstd of s as strop__rmsnorm_forward, with the same bits as the two apart. */
void strop__add_rmsnorm_forward(const float *const *x, int nx, int64_t rows, int64_t d,
                                const float *gamma, float eps, float *s, float *y, float *rstd);
/* Its backward, the same bits as strop__rmsnorm_backward into a gradient of s that holds ds
 * (the gradient from s's other readers; NULL: a zeroed one) followed by the sum's backward:
 * per row t = ds + rstd (g - s rstd^2 mean(g s)) (dy NULL: t = ds, dgamma untouched), and
 * dx[i] += t for each input i whose dx[i] is not NULL; dgamma (nullable) as
 * strop__rmsnorm_backward, in its slices. scratch: strop__add_rmsnorm_backward_scratch(rows,
 * d) floats. */
void strop__add_rmsnorm_backward(const float *s, const float *dy, const float *ds, int64_t rows,
                                 int64_t d, const float *gamma, const float *rstd,
                                 float *const *dx, int nx, float *dgamma, float *scratch);
size_t strop__add_rmsnorm_backward_scratch(int64_t rows, int64_t d);

#endif
