/* SPDX-License-Identifier: MIT */
/* strop — layer normalization forward and backward. Row statistics are summed in double
 * (two passes) so long rows keep float32 parity with PyTorch. */
#include "ops/layernorm.h"

#include <math.h>

#include "core/core.h"

/* Rows are independent: both passes split rows across strop's threads (no bit changes). */
typedef struct ln_job {
  const float *x, *dy, *gamma, *beta, *cmean, *crstd;
  int64_t d;
  float eps;
  float *y, *mean, *rstd, *dx;
} ln_job;

static void ln_forward_rows(const ln_job *job, int64_t r0, int64_t r1) {
  const float *x = job->x, *gamma = job->gamma, *beta = job->beta;
  const int64_t d = job->d;
  const float eps = job->eps;
  float *y = job->y, *mean = job->mean, *rstd = job->rstd;
  for (int64_t r = r0; r < r1; r++) {
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

static void ln_forward_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  ln_forward_rows(ctx, lo, hi);
}

static int64_t row_grain(int64_t d) { return d >= 4096 ? 1 : 4096 / (d > 0 ? d : 1); }

void strop__layernorm_forward(const float *x, int64_t rows, int64_t d, const float *gamma,
                              const float *beta, float eps, float *y, float *mean, float *rstd) {
  ln_job j = {.x = x,
              .gamma = gamma,
              .beta = beta,
              .d = d,
              .eps = eps,
              .y = y,
              .mean = mean,
              .rstd = rstd};
  strop__par_for(rows, row_grain(d), ln_forward_chunk, &j);
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, rows [r0, r1) */
static void ln_backward_dx_chunk(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const ln_job *jb = ctx;
  const float *x = jb->x, *dy = jb->dy, *gamma = jb->gamma;
  const int64_t d = jb->d;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = x + r * d, *dyr = dy + r * d;
    float m = jb->cmean[r], rs = jb->crstd[r];
    double sg = 0.0, sgx = 0.0;
    for (int64_t j = 0; j < d; j++) {
      double g = (double)dyr[j] * (gamma ? (double)gamma[j] : 1.0);
      sg += g;
      sgx += g * ((double)xr[j] - (double)m) * (double)rs;
    }
    float a = (float)(sg / (double)d), b = (float)(sgx / (double)d);
    float *dxr = jb->dx + r * d;
    for (int64_t j = 0; j < d; j++) {
      float g = dyr[j] * (gamma ? gamma[j] : 1.0f);
      float xh = (xr[j] - m) * rs;
      dxr[j] += rs * (g - a - xh * b);
    }
  }
}

void strop__layernorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                               const float *gamma, const float *mean, const float *rstd,
                               float *dx, float *dgamma, float *dbeta) {
  /* the parameter gradients sum over rows: one thread, in row order */
  if (dgamma || dbeta)
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * d, *dyr = dy + r * d;
      float m = mean[r], rs = rstd[r];
      if (dgamma)
        for (int64_t j = 0; j < d; j++) dgamma[j] += dyr[j] * (xr[j] - m) * rs;
      if (dbeta)
        for (int64_t j = 0; j < d; j++) dbeta[j] += dyr[j];
    }
  if (!dx) return;
  ln_job j = {.x = x, .dy = dy, .gamma = gamma, .cmean = mean, .crstd = rstd, .d = d, .dx = dx};
  strop__par_for(rows, row_grain(d), ln_backward_dx_chunk, &j);
}

/* ---- RMS normalization: the mean square in double, as layer norm's statistics ---- */
static void rms_forward_chunk(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const ln_job *jb = ctx;
  const int64_t d = jb->d;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = jb->x + r * d;
    float *yr = jb->y + r * d;
    double ss = 0.0;
    for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * (double)xr[j];
    const float rs = (float)(1.0 / sqrt(ss / (double)d + (double)jb->eps));
    if (jb->rstd) jb->rstd[r] = rs;
    if (jb->gamma)
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] * rs) * jb->gamma[j];
    else
      for (int64_t j = 0; j < d; j++) yr[j] = xr[j] * rs;
  }
}

void strop__rmsnorm_forward(const float *x, int64_t rows, int64_t d, const float *gamma,
                            float eps, float *y, float *rstd) {
  ln_job j = {.x = x, .gamma = gamma, .d = d, .eps = eps, .y = y, .rstd = rstd};
  strop__par_for(rows, row_grain(d), rms_forward_chunk, &j);
}

static void rms_backward_dx_chunk(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const ln_job *jb = ctx;
  const int64_t d = jb->d;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = jb->x + r * d, *dyr = jb->dy + r * d;
    const float rs = jb->crstd[r];
    double sgx = 0.0;
    for (int64_t j = 0; j < d; j++)
      sgx += (double)dyr[j] * (jb->gamma ? (double)jb->gamma[j] : 1.0) * (double)xr[j];
    const float b = (float)(sgx / (double)d * (double)rs * (double)rs);
    float *dxr = jb->dx + r * d;
    for (int64_t j = 0; j < d; j++) {
      float g = dyr[j] * (jb->gamma ? jb->gamma[j] : 1.0f);
      dxr[j] += rs * (g - xr[j] * b);
    }
  }
}

void strop__rmsnorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                             const float *gamma, const float *rstd, float *dx, float *dgamma) {
  /* the weight's gradient sums over rows: one thread, in row order */
  if (dgamma)
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * d, *dyr = dy + r * d;
      const float rs = rstd[r];
      for (int64_t j = 0; j < d; j++) dgamma[j] += dyr[j] * (xr[j] * rs);
    }
  if (!dx) return;
  ln_job j = {.x = x, .dy = dy, .gamma = gamma, .crstd = rstd, .d = d, .dx = dx};
  strop__par_for(rows, row_grain(d), rms_backward_dx_chunk, &j);
}
