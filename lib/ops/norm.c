/* SPDX-License-Identifier: MIT */
/* strop — batch normalisation kernels (see norm.h). Statistics and reductions accumulate in
 * double, as PyTorch's CPU kernels do, and the transform is y = x * a + b per channel. */
#include "ops/norm.h"

#include <math.h>

#include "core/core.h"

/* Channels are independent, so the kernels split them over the worker pool; within a channel
 * every sum runs in one fixed order (image by image, position by position), whatever the split.
 * BN_G channels are summed side by side: BN_G independent chains of double additions instead
 * of one (a chain is bound by the adder's latency), each channel's still in its own order, so
 * the bits are those of one channel at a time. */
enum { BN_G = 8 };

typedef struct bn_job {
  int64_t n, c, l;
  const float *x, *dy, *gamma, *beta, *mean, *var, *invstd;
  float eps;
  float *y, *dx, *dgamma, *dbeta, *mean_out, *invstd_out, *var_out;
  int assign;
} bn_job;

/* s[k] = the sum over the batch of channel c0 + k (k < g) of x, in double */
static void group_sum(const bn_job *j, int64_t c0, int g, double *s) {
  const int64_t cl = j->c * j->l, l = j->l;
  for (int k = 0; k < BN_G; k++) s[k] = 0.0;
  for (int64_t i = 0; i < j->n; i++) {
    const float *p = j->x + i * cl + c0 * l;
    if (g == BN_G) {
      for (int64_t t = 0; t < l; t++)
        for (int k = 0; k < BN_G; k++) s[k] += p[k * l + t];
    } else {
      for (int k = 0; k < g; k++)
        for (int64_t t = 0; t < l; t++) s[k] += p[k * l + t];
    }
  }
}

/* v[k] = the sum of (x - mu[k])^2 over channel c0 + k, in double */
static void group_sq(const bn_job *j, int64_t c0, int g, const double *mu, double *v) {
  const int64_t cl = j->c * j->l, l = j->l;
  for (int k = 0; k < BN_G; k++) v[k] = 0.0;
  for (int64_t i = 0; i < j->n; i++) {
    const float *p = j->x + i * cl + c0 * l;
    if (g == BN_G) {
      for (int64_t t = 0; t < l; t++)
        for (int k = 0; k < BN_G; k++) {
          const double d = p[k * l + t] - mu[k];
          v[k] += d * d;
        }
    } else {
      for (int k = 0; k < g; k++)
        for (int64_t t = 0; t < l; t++) {
          const double d = p[k * l + t] - mu[k];
          v[k] += d * d;
        }
    }
  }
}

/* sum[k] of dy and dot[k] of (x - mu[k]) dy over channel c0 + k, in double */
static void group_dot(const bn_job *j, int64_t c0, int g, const double *mu, double *sum,
                      double *dot) {
  const int64_t cl = j->c * j->l, l = j->l;
  for (int k = 0; k < BN_G; k++) sum[k] = dot[k] = 0.0;
  for (int64_t i = 0; i < j->n; i++) {
    const float *p = j->x + i * cl + c0 * l, *q = j->dy + i * cl + c0 * l;
    if (g == BN_G) {
      for (int64_t t = 0; t < l; t++)
        for (int k = 0; k < BN_G; k++) {
          const float gv = q[k * l + t];
          sum[k] += gv;
          dot[k] += (p[k * l + t] - mu[k]) * gv;
        }
    } else {
      for (int k = 0; k < g; k++)
        for (int64_t t = 0; t < l; t++) {
          const float gv = q[k * l + t];
          sum[k] += gv;
          dot[k] += (p[k * l + t] - mu[k]) * gv;
        }
    }
  }
}

/* out = in * a + b over channel ch of the batch */
static void channel_affine(const bn_job *j, const float *in, float *out, int64_t ch, float a,
                           float b) {
  const int64_t cl = j->c * j->l, l = j->l;
  for (int64_t i = 0; i < j->n; i++) {
    const float *p = in + i * cl + ch * l;
    float *q = out + i * cl + ch * l;
    for (int64_t t = 0; t < l; t++) q[t] = p[t] * a + b;
  }
}

/* Groups of BN_G channels per chunk: enough values that a split pays for waking a worker. */
static void bn_run(const bn_job *j, strop__par_fn fn) {
  const int64_t groups = (j->c + BN_G - 1) / BN_G, per = j->n * j->l * BN_G;
  strop__par_for(groups, per >= 65536 ? 1 : 65536 / (per > 0 ? per : 1), fn, (void *)j);
}

static int group_of(const bn_job *j, int64_t grp, int64_t *c0) {
  *c0 = grp * BN_G;
  return j->c - *c0 < BN_G ? (int)(j->c - *c0) : BN_G;
}

static void fwd_train_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  const double cnt = (double)(j->n * j->l);
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double s[BN_G], mu[BN_G], v[BN_G];
    group_sum(j, c0, g, s);
    for (int k = 0; k < BN_G; k++) mu[k] = s[k] / cnt;
    group_sq(j, c0, g, mu, v);
    for (int k = 0; k < g; k++) {
      const int64_t ch = c0 + k;
      const double var = v[k] / cnt;
      const double is = 1.0 / sqrt(var + (double)j->eps);
      j->mean_out[ch] = (float)mu[k];
      j->invstd_out[ch] = (float)is;
      if (j->var_out) j->var_out[ch] = (float)var;
      const float a = (float)(j->gamma ? is * j->gamma[ch] : is);
      const float b = (float)((j->beta ? j->beta[ch] : 0.0) - mu[k] * a);
      channel_affine(j, j->x, j->y, ch, a, b);
    }
  }
}

void strop__batchnorm_forward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *gamma, const float *beta, float eps, float *y,
                                    float *mean, float *invstd, float *var_biased) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .gamma = gamma,
                    .beta = beta,
                    .eps = eps,
                    .y = y,
                    .mean_out = mean,
                    .invstd_out = invstd,
                    .var_out = var_biased};
  bn_run(&j, fwd_train_range);
}

static void bwd_train_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  const int64_t cl = j->c * j->l, l = j->l;
  const double cnt = (double)(j->n * j->l);
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double mu[BN_G], sum[BN_G], dot[BN_G];
    for (int k = 0; k < BN_G; k++) mu[k] = k < g ? j->mean[c0 + k] : 0.0;
    group_dot(j, c0, g, mu, sum, dot);
    for (int k = 0; k < g; k++) {
      const int64_t ch = c0 + k;
      const double is = j->invstd[ch];
      if (j->dgamma) j->dgamma[ch] += (float)(dot[k] * is);
      if (j->dbeta) j->dbeta[ch] += (float)sum[k];
      if (!j->dx) continue;
      /* dx = (dy - mean(dy) - (x - mu) * k) * invstd * gamma, k = dot * invstd^2 / cnt */
      const float kk = (float)(dot[k] * is * is / cnt);
      const float gm = (float)(sum[k] / cnt);
      const float fmu = (float)mu[k];
      const float w = (float)(j->gamma ? is * j->gamma[ch] : is);
      for (int64_t i = 0; i < j->n; i++) {
        const float *p = j->x + i * cl + ch * l, *gv = j->dy + i * cl + ch * l;
        float *q = j->dx + i * cl + ch * l;
        if (j->assign)
          for (int64_t t = 0; t < l; t++) q[t] = (gv[t] - gm - (p[t] - fmu) * kk) * w;
        else
          for (int64_t t = 0; t < l; t++) q[t] += (gv[t] - gm - (p[t] - fmu) * kk) * w;
      }
    }
  }
}

void strop__batchnorm_backward_train(int64_t n, int64_t c, int64_t l, const float *x,
                                     const float *dy, const float *gamma, const float *mean,
                                     const float *invstd, float *dx, float *dgamma, float *dbeta,
                                     int assign) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .dy = dy,
                    .gamma = gamma,
                    .mean = mean,
                    .invstd = invstd,
                    .dx = dx,
                    .dgamma = dgamma,
                    .dbeta = dbeta,
                    .assign = assign};
  bn_run(&j, bwd_train_range);
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

static void fwd_eval_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    for (int64_t ch = c0; ch < c0 + g; ch++) {
      const double is = 1.0 / sqrt((double)j->var[ch] + (double)j->eps);
      const float a = (float)(j->gamma ? is * j->gamma[ch] : is);
      const float b = (float)((j->beta ? j->beta[ch] : 0.0) - j->mean[ch] * (double)a);
      channel_affine(j, j->x, j->y, ch, a, b);
    }
  }
}

void strop__batchnorm_forward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                   const float *gamma, const float *beta, const float *mean,
                                   const float *var, float eps, float *y) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .gamma = gamma,
                    .beta = beta,
                    .mean = mean,
                    .var = var,
                    .eps = eps,
                    .y = y};
  bn_run(&j, fwd_eval_range);
}

static void bwd_eval_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const bn_job *j = ctx;
  const int64_t cl = j->c * j->l, l = j->l;
  for (int64_t grp = lo; grp < hi; grp++) {
    int64_t c0;
    const int g = group_of(j, grp, &c0);
    double mu[BN_G], sum[BN_G], dot[BN_G];
    if (j->dgamma || j->dbeta) {
      for (int k = 0; k < BN_G; k++) mu[k] = k < g ? j->mean[c0 + k] : 0.0;
      group_dot(j, c0, g, mu, sum, dot);
    }
    for (int k = 0; k < g; k++) {
      const int64_t ch = c0 + k;
      const double is = 1.0 / sqrt((double)j->var[ch] + (double)j->eps);
      if (j->dgamma) j->dgamma[ch] += (float)(dot[k] * is);
      if (j->dbeta) j->dbeta[ch] += (float)sum[k];
      if (!j->dx) continue;
      const float a = (float)(j->gamma ? is * j->gamma[ch] : is);
      for (int64_t i = 0; i < j->n; i++) {
        const float *gv = j->dy + i * cl + ch * l;
        float *q = j->dx + i * cl + ch * l;
        if (j->assign)
          for (int64_t t = 0; t < l; t++) q[t] = gv[t] * a;
        else
          for (int64_t t = 0; t < l; t++) q[t] += gv[t] * a;
      }
    }
  }
}

void strop__batchnorm_backward_eval(int64_t n, int64_t c, int64_t l, const float *x,
                                    const float *dy, const float *gamma, const float *mean,
                                    const float *var, float eps, float *dx, float *dgamma,
                                    float *dbeta, int assign) {
  const bn_job j = {.n = n,
                    .c = c,
                    .l = l,
                    .x = x,
                    .dy = dy,
                    .gamma = gamma,
                    .mean = mean,
                    .var = var,
                    .eps = eps,
                    .dx = dx,
                    .dgamma = dgamma,
                    .dbeta = dbeta,
                    .assign = assign};
  bn_run(&j, bwd_eval_range);
}
