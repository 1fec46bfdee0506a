/* SPDX-License-Identifier: MIT */
/* strop — parameter initialisers shared by the layer families, matching PyTorch's
 * torch.nn.init in distribution (the random stream is strop's own PCG32, not torch's). */
#ifndef STROP_LAYERS_INIT_H
#define STROP_LAYERS_INIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* PyTorch's _calculate_fan_in_and_fan_out for a weight of the given rank and dims
 * ([out, in, k...]): fan_in = in * prod(k), fan_out = out * prod(k). A rank-1 tensor
 * gets fan_in = fan_out = dims[0]. */
void strop__init_fans(int rank, const int64_t *dims, int64_t *fan_in, int64_t *fan_out);

/* PyTorch's calculate_gain for "leaky_relu" with negative slope a: sqrt(2 / (1 + a^2)). */
double strop__init_gain_leaky_relu(double a);

/* x ~ U(lo, hi) */
void strop__init_uniform(float *x, size_t n, float lo, float hi, strop__rng *rng);
/* x ~ N(mean, std^2) */
void strop__init_normal(float *x, size_t n, float mean, float std, strop__rng *rng);
void strop__init_zeros(float *x, size_t n);
void strop__init_ones(float *x, size_t n);
void strop__init_constant(float *x, size_t n, float v);

/* kaiming_uniform_(mode="fan_in", nonlinearity="leaky_relu", a): U(-b, b),
 * b = gain(a) * sqrt(3 / fan). Pass fan_in (or fan_out for mode="fan_out"). */
void strop__init_kaiming_uniform(float *x, size_t n, int64_t fan, double a, strop__rng *rng);
/* kaiming_normal_: N(0, (gain(a) / sqrt(fan))^2) */
void strop__init_kaiming_normal(float *x, size_t n, int64_t fan, double a, strop__rng *rng);
/* xavier_uniform_: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)) */
void strop__init_xavier_uniform(float *x, size_t n, int64_t fan_in, int64_t fan_out, double gain,
                                strop__rng *rng);
/* xavier_normal_: N(0, (gain * sqrt(2 / (fan_in + fan_out)))^2) */
void strop__init_xavier_normal(float *x, size_t n, int64_t fan_in, int64_t fan_out, double gain,
                               strop__rng *rng);

/* PyTorch's default for nn.Linear / nn.ConvNd weights and biases:
 * kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias uses the same
 * bound. fan_in <= 0 leaves zeros (PyTorch skips the bias init then). */
void strop__init_pytorch_linear_default(float *x, size_t n, int64_t fan_in, strop__rng *rng);

#endif
