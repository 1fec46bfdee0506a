/* strop — layer normalization forward and backward. Row statistics are summed in double
 * (two passes) so long rows keep float32 parity with PyTorch. */
#include "ops/layernorm.h"

#include <math.h>

void strop__layernorm_forward(const float *x, int64_t rows, int64_t d, const float *gamma,
                              const float *beta, float eps, float *y, float *mean, float *rstd) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    float *yr = y + r * d;
    double s = 0.0;
    for (int64_t j = 0; j < d; j++) s += xr[j];
    double mu = s / (double)d, v = 0.0;
    for (int64_t j = 0; j < d; j++) {
      double t = (double)xr[j] - mu;
      v += t * t;
    }
    float m = (float)mu;
    float rs = (float)(1.0 / sqrt(v / (double)d + (double)eps));
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
    if (gamma && beta)
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
    else if (gamma)
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs * gamma[j];
    else
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs + (beta ? beta[j] : 0.0f);
  }
}

void strop__layernorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                               const float *gamma, const float *mean, const float *rstd,
                               float *dx, float *dgamma, float *dbeta) {
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * d, *dyr = dy + r * d;
    float m = mean[r], rs = rstd[r];
    if (dgamma)
      for (int64_t j = 0; j < d; j++) dgamma[j] += dyr[j] * (xr[j] - m) * rs;
    if (dbeta)
      for (int64_t j = 0; j < d; j++) dbeta[j] += dyr[j];
    if (!dx) continue;
    /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma */
    double sg = 0.0, sgx = 0.0;
    for (int64_t j = 0; j < d; j++) {
      double g = (double)dyr[j] * (gamma ? (double)gamma[j] : 1.0);
      sg += g;
      sgx += g * ((double)xr[j] - (double)m) * (double)rs;
    }
    float a = (float)(sg / (double)d), b = (float)(sgx / (double)d);
    float *dxr = dx + r * d;
    for (int64_t j = 0; j < d; j++) {
      float g = dyr[j] * (gamma ? gamma[j] : 1.0f);
      float xh = (xr[j] - m) * rs;
      dxr[j] += rs * (g - a - xh * b);
    }
  }
}
