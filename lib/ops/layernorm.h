/* strop — layer normalization kernels: each of `rows` rows of `d` contiguous values is
 * normalized by its own mean and variance, then scaled and shifted per position. */
#ifndef STROP_OPS_LAYERNORM_H
#define STROP_OPS_LAYERNORM_H

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

#endif
