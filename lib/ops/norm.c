/* SPDX-License-Identifier: MIT */
/* strop — batch normalisation kernels (see norm.h). Statistics and reductions accumulate in
 * double, as PyTorch's CPU kernels do, and the transform is y = x * a + b per channel. */
#include "ops/norm.h"

#include <math.h>

void strop__batchnorm_forward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *gamma, const float *beta, float eps, float *y,
                                    float *mean, float *invstd, float *var_biased) {
  const int64_t cl = c * l;
  const double cnt = (double)(n * l);
  for (int64_t ch = 0; ch < c; ch++) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) s += p[j];
    }
    const double mu = s / cnt;
    double v = 0.0;
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) {
        const double t = p[j] - mu;
        v += t * t;
      }
    }
    v /= cnt;
    const double is = 1.0 / sqrt(v + (double)eps);
    mean[ch] = (float)mu;
    invstd[ch] = (float)is;
    if (var_biased) var_biased[ch] = (float)v;
    const float a = (float)(gamma ? is * gamma[ch] : is);
    const float b = (float)((beta ? beta[ch] : 0.0) - mu * a);
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * cl + ch * l;
      float *q = y + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) q[j] = p[j] * a + b;
    }
  }
}

void strop__batchnorm_backward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                     const float *dy, const float *gamma, const float *mean,
                                     const float *invstd, float *dx, float *dgamma,
                                     float *dbeta) {
  const int64_t cl = c * l;
  const double cnt = (double)(n * l);
  for (int64_t ch = 0; ch < c; ch++) {
    const double mu = mean[ch], is = invstd[ch];
    double sum = 0.0, dot = 0.0;
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * cl + ch * l;
      const float *g = dy + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) {
        sum += g[j];
        dot += (p[j] - mu) * g[j];
      }
    }
    if (dgamma) dgamma[ch] += (float)(dot * is);
    if (dbeta) dbeta[ch] += (float)sum;
    if (!dx) continue;
    /* dx = (dy - mean(dy) - (x - mu) * k) * invstd * gamma, k = dot * invstd^2 / cnt */
    const float k = (float)(dot * is * is / cnt);
    const float gm = (float)(sum / cnt);
    const float fmu = (float)mu;
    const float w = (float)(gamma ? is * gamma[ch] : is);
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * cl + ch * l;
      const float *g = dy + i * cl + ch * l;
      float *q = dx + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) q[j] += (g[j] - gm - (p[j] - fmu) * k) * w;
    }
  }
}

void strop__batchnorm_update_running(int64_t c, const float *mean, const float *var_biased,
                                     int64_t count, float momentum, float *running_mean,
                                     float *running_var) {
  const double m = momentum;
  const double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
  for (int64_t ch = 0; ch < c; ch++) {
    running_mean[ch] = (float)(m * mean[ch] + (1.0 - m) * running_mean[ch]);
    running_var[ch] = (float)(m * var_biased[ch] * unbias + (1.0 - m) * running_var[ch]);
  }
}

void strop__batchnorm_forward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                   const float *gamma, const float *beta, const float *mean,
                                   const float *var, float eps, float *y) {
  const int64_t cl = c * l;
  for (int64_t ch = 0; ch < c; ch++) {
    const double is = 1.0 / sqrt((double)var[ch] + (double)eps);
    const float a = (float)(gamma ? is * gamma[ch] : is);
    const float b = (float)((beta ? beta[ch] : 0.0) - mean[ch] * (double)a);
    for (int64_t i = 0; i < n; i++) {
      const float *p = x + i * cl + ch * l;
      float *q = y + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) q[j] = p[j] * a + b;
    }
  }
}

void strop__batchnorm_backward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *dy, const float *gamma, const float *mean,
                                    const float *var, float eps, float *dx, float *dgamma,
                                    float *dbeta) {
  const int64_t cl = c * l;
  for (int64_t ch = 0; ch < c; ch++) {
    const double is = 1.0 / sqrt((double)var[ch] + (double)eps);
    const double mu = mean[ch];
    if (dgamma || dbeta) {
      double sum = 0.0, dot = 0.0;
      for (int64_t i = 0; i < n; i++) {
        const float *p = x + i * cl + ch * l;
        const float *g = dy + i * cl + ch * l;
        for (int64_t j = 0; j < l; j++) {
          sum += g[j];
          dot += (p[j] - mu) * g[j];
        }
      }
      if (dgamma) dgamma[ch] += (float)(dot * is);
      if (dbeta) dbeta[ch] += (float)sum;
    }
    if (!dx) continue;
    const float a = (float)(gamma ? is * gamma[ch] : is);
    for (int64_t i = 0; i < n; i++) {
      const float *g = dy + i * cl + ch * l;
      float *q = dx + i * cl + ch * l;
      for (int64_t j = 0; j < l; j++) q[j] += g[j] * a;
    }
  }
}
