/* SPDX-License-Identifier: MIT */
/* strop — parameter initialisers (torch.nn.init equivalents) used by every layer family's
 * init(). Distributions match PyTorch; the random stream is strop's PCG32. */
#include "layers/init.h"

#include <math.h>

void strop__init_fans(int rank, const int64_t *dims, int64_t *fan_in, int64_t *fan_out) {
  if (rank <= 0) {
    *fan_in = *fan_out = 1;
    return;
  }
  if (rank == 1) {
    *fan_in = *fan_out = dims[0];
    return;
  }
  int64_t rf = 1;
  for (int i = 2; i < rank; i++) rf *= dims[i];
  *fan_in = dims[1] * rf;
  *fan_out = dims[0] * rf;
}

double strop__init_gain_leaky_relu(double a) { return sqrt(2.0 / (1.0 + a * a)); }

void strop__init_uniform(float *x, size_t n, float lo, float hi, strop__rng *rng) {
  float w = hi - lo;
  for (size_t i = 0; i < n; i++) x[i] = lo + w * strop__rng_uniform(rng);
}

void strop__init_normal(float *x, size_t n, float mean, float std, strop__rng *rng) {
  for (size_t i = 0; i < n; i++) x[i] = mean + std * strop__rng_normal(rng);
}

void strop__init_zeros(float *x, size_t n) { strop__init_constant(x, n, 0.0f); }
void strop__init_ones(float *x, size_t n) { strop__init_constant(x, n, 1.0f); }

void strop__init_constant(float *x, size_t n, float v) {
  for (size_t i = 0; i < n; i++) x[i] = v;
}

void strop__init_kaiming_uniform(float *x, size_t n, int64_t fan, double a, strop__rng *rng) {
  if (fan <= 0) return;
  float b = (float)(strop__init_gain_leaky_relu(a) * sqrt(3.0 / (double)fan));
  strop__init_uniform(x, n, -b, b, rng);
}

void strop__init_kaiming_normal(float *x, size_t n, int64_t fan, double a, strop__rng *rng) {
  if (fan <= 0) return;
  strop__init_normal(x, n, 0.0f, (float)(strop__init_gain_leaky_relu(a) / sqrt((double)fan)),
                     rng);
}

void strop__init_xavier_uniform(float *x, size_t n, int64_t fan_in, int64_t fan_out, double gain,
                                strop__rng *rng) {
  if (fan_in + fan_out <= 0) return;
  float b = (float)(gain * sqrt(6.0 / (double)(fan_in + fan_out)));
  strop__init_uniform(x, n, -b, b, rng);
}

void strop__init_xavier_normal(float *x, size_t n, int64_t fan_in, int64_t fan_out, double gain,
                               strop__rng *rng) {
  if (fan_in + fan_out <= 0) return;
  strop__init_normal(x, n, 0.0f, (float)(gain * sqrt(2.0 / (double)(fan_in + fan_out))), rng);
}

void strop__init_pytorch_linear_default(float *x, size_t n, int64_t fan_in, strop__rng *rng) {
  if (fan_in <= 0) return;
  float b = (float)(1.0 / sqrt((double)fan_in));
  strop__init_uniform(x, n, -b, b, rng);
}
