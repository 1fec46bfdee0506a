/* SPDX-License-Identifier: MIT */
/* strop — the tuner's Gaussian process: Matern 5/2 ARD kernel, exact marginal likelihood and
 * gradient through a LAPACK Cholesky, hyperparameters by projected L-BFGS in log space. */
#include "tune/gpmodel.h"

#include <math.h>
#include <string.h>

#include "ops/gp.h"
#include "ops/ops.h"

#define SQRT5 2.23606797749979
#define LOG_2PI 1.8378770664093453

/* Box of the log-hyperparameters. The inputs live in [0, 1] and the outputs are
 * standardised, so these cover every sensible fit without letting it degenerate. */
#define LS_LO 0.01
#define LS_HI 20.0
#define SV_LO 0.05
#define SV_HI 20.0
#define NV_LO 1e-6
#define NV_HI 1.0

void strop__gp_bounds(int64_t d, double *lo, double *hi) {
  for (int64_t k = 0; k < d; k++) {
    lo[k] = log(LS_LO);
    hi[k] = log(LS_HI);
  }
  lo[d] = log(SV_LO);
  hi[d] = log(SV_HI);
  lo[d + 1] = log(NV_LO);
  hi[d + 1] = log(NV_HI);
}

void strop__gp_free(strop__gp *gp) {
  if (!gp) return;
  strop__free(gp->x);
  strop__free(gp->y);
  strop__free(gp->theta);
  strop__free(gp->diff2);
  strop__free(gp->l);
  strop__free(gp->alpha);
  strop__free(gp->kinv);
  strop__free(gp->pr);
  strop__free(gp->pe);
  memset(gp, 0, sizeof *gp);
}

strop_status strop__gp_init(strop__gp *gp, int64_t n, int64_t d, const double *x,
                            const double *y) {
  memset(gp, 0, sizeof *gp);
  gp->n = n;
  gp->d = d;
  size_t npair = (size_t)(n * (n - 1) / 2);
  gp->x = strop__malloc((size_t)(n * d) * sizeof(double) + 1);
  gp->y = strop__malloc((size_t)n * sizeof(double) + 1);
  gp->theta = strop__malloc((size_t)(d + 2) * sizeof(double));
  gp->diff2 = strop__malloc(npair * (size_t)d * sizeof(double) + 1);
  gp->l = strop__malloc((size_t)(n * n) * sizeof(double) + 1);
  gp->alpha = strop__malloc((size_t)n * sizeof(double) + 1);
  gp->kinv = strop__malloc((size_t)(n * n) * sizeof(double) + 1);
  gp->pr = strop__malloc(npair * sizeof(double) + 1);
  gp->pe = strop__malloc(npair * sizeof(double) + 1);
  if (!gp->x || !gp->y || !gp->theta || !gp->diff2 || !gp->l || !gp->alpha || !gp->kinv ||
      !gp->pr || !gp->pe) {
    strop__gp_free(gp);
    return STROP__NOMEM("strop__gp_init");
  }
  memcpy(gp->x, x, (size_t)(n * d) * sizeof(double));
  double mean = 0.0, var = 0.0;
  for (int64_t i = 0; i < n; i++) mean += y[i];
  mean = n > 0 ? mean / (double)n : 0.0;
  for (int64_t i = 0; i < n; i++) var += (y[i] - mean) * (y[i] - mean);
  double sd = n > 0 ? sqrt(var / (double)n) : 0.0;
  if (!(sd > 1e-12 * (1.0 + fabs(mean)))) sd = 1.0;
  gp->ymean = mean;
  gp->ystd = sd;
  for (int64_t i = 0; i < n; i++) gp->y[i] = (y[i] - mean) / sd;
  size_t p = 0;
  for (int64_t i = 1; i < n; i++)
    for (int64_t j = 0; j < i; j++, p++)
      for (int64_t k = 0; k < d; k++) {
        double dx = x[i * d + k] - x[j * d + k];
        gp->diff2[p * (size_t)d + (size_t)k] = dx * dx;
      }
  for (int64_t k = 0; k < d; k++) gp->theta[k] = log(0.5);
  gp->theta[d] = 0.0;
  gp->theta[d + 1] = log(1e-3);
  return STROP_OK;
}

/* Builds K and its Cholesky factor at theta; 0 on success. */
static int factorise(strop__gp *gp, const double *theta, double *inv_l2) {
  int64_t n = gp->n, d = gp->d;
  double s2 = exp(theta[d]), nv = exp(theta[d + 1]);
  for (int64_t k = 0; k < d; k++) inv_l2[k] = exp(-2.0 * theta[k]);
  double *a = gp->l;
  size_t p = 0;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < i; j++, p++) {
      const double *df = gp->diff2 + p * (size_t)d;
      double r2 = 0.0;
      for (int64_t k = 0; k < d; k++) r2 += df[k] * inv_l2[k];
      double r = sqrt(r2), e = exp(-SQRT5 * r);
      gp->pr[p] = r;
      gp->pe[p] = e;
      a[i * n + j] = s2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * e;
    }
    a[i * n + i] = s2 + nv;
  }
  if (strop__dpotrf_lower(n, a) != 0) return 1;
  memcpy(gp->alpha, gp->y, (size_t)n * sizeof(double));
  strop__dtrsv_lower(0, n, a, gp->alpha);
  strop__dtrsv_lower(1, n, a, gp->alpha);
  return 0;
}

double strop__gp_nlml(strop__gp *gp, const double *theta, double *grad) {
  int64_t n = gp->n, d = gp->d;
  double inv_l2[64], *il2 = inv_l2, *heap = NULL;
  if (d > 64) {
    heap = strop__malloc((size_t)d * sizeof(double));
    if (!heap) return INFINITY;
    il2 = heap;
  }
  gp->ready = 0;
  if (factorise(gp, theta, il2) != 0) {
    strop__free(heap);
    return INFINITY;
  }
  gp->ready = 1;
  memcpy(gp->theta, theta, (size_t)(d + 2) * sizeof(double));
  double f = 0.0;
  for (int64_t i = 0; i < n; i++) f += 0.5 * gp->y[i] * gp->alpha[i] + log(gp->l[i * n + i]);
  f += 0.5 * (double)n * LOG_2PI;
  if (grad) {
    /* d nlml / d theta = 1/2 tr((K^-1 - alpha alpha^T) dK/dtheta) */
    double *w = gp->kinv;
    memcpy(w, gp->l, (size_t)(n * n) * sizeof(double));
    if (strop__dpotri_lower(n, w) != 0) {
      strop__free(heap);
      return INFINITY;
    }
    double s2 = exp(theta[d]), nv = exp(theta[d + 1]);
    for (int64_t k = 0; k < d + 2; k++) grad[k] = 0.0;
    size_t p = 0;
    for (int64_t i = 0; i < n; i++) {
      for (int64_t j = 0; j < i; j++, p++) {
        double wij = w[i * n + j] - gp->alpha[i] * gp->alpha[j]; /* counted twice, halved */
        const double *df = gp->diff2 + p * (size_t)d;
        double r = gp->pr[p], e = gp->pe[p], r2 = r * r;
        grad[d] += wij * s2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * e;
        double c = wij * s2 * (5.0 / 3.0) * (1.0 + SQRT5 * r) * e;
        for (int64_t k = 0; k < d; k++) grad[k] += c * df[k] * il2[k];
      }
      double wii = 0.5 * (w[i * n + i] - gp->alpha[i] * gp->alpha[i]);
      grad[d] += wii * s2;
      grad[d + 1] += wii * nv;
    }
  }
  strop__free(heap);
  return f;
}

strop_status strop__gp_set_theta(strop__gp *gp, const double *theta) {
  if (!isfinite(strop__gp_nlml(gp, theta, NULL)))
    return strop__err(STROP_E_NUMERIC, "strop__gp_set_theta: kernel matrix is not positive "
                                       "definite");
  return STROP_OK;
}

/* ---- L-BFGS on the box through a logistic map (minimisation) ----
 * Each log-hyperparameter is x = lo + (hi - lo) * sigmoid(z) with z free, so plain L-BFGS
 * applies and a hyperparameter pressing on its bound simply stops moving (the gradient in z
 * vanishes there) instead of zig-zagging along a projection. */

#define LBFGS_M 6
#define SCREEN 8
#define MAX_P 66

typedef struct boxmap {
  int64_t p;
  const double *lo, *hi;
} boxmap;

static void z_to_x(const boxmap *b, const double *z, double *x) {
  for (int64_t k = 0; k < b->p; k++) x[k] = b->lo[k] + (b->hi[k] - b->lo[k]) / (1.0 + exp(-z[k]));
}

static void x_to_z(const boxmap *b, const double *x, double *z) {
  for (int64_t k = 0; k < b->p; k++) {
    double w = b->hi[k] - b->lo[k], f = (x[k] - b->lo[k]) / w;
    f = f < 1e-6 ? 1e-6 : f > 1.0 - 1e-6 ? 1.0 - 1e-6 : f;
    z[k] = log(f / (1.0 - f));
  }
}

/* nlml and its gradient in z. */
static double fz(strop__gp *gp, const boxmap *b, const double *z, double *gz) {
  double x[MAX_P], gx[MAX_P];
  z_to_x(b, z, x);
  double f = strop__gp_nlml(gp, x, gx);
  if (isfinite(f))
    for (int64_t k = 0; k < b->p; k++)
      gz[k] = gx[k] * (x[k] - b->lo[k]) * (b->hi[k] - x[k]) / (b->hi[k] - b->lo[k]);
  return f;
}

/* Minimises from x (in place, in x units); returns the final nlml. */
static double lbfgs_box(strop__gp *gp, int64_t p, double *x, const double *lo, const double *hi,
                        int max_iter) {
  boxmap bm = {p, lo, hi};
  double z[MAX_P], g[MAX_P], zn[MAX_P], gn[MAX_P], dir[MAX_P];
  double s[LBFGS_M][MAX_P], yv[LBFGS_M][MAX_P], rho[LBFGS_M], al[LBFGS_M];
  int head = 0, cnt = 0;
  x_to_z(&bm, x, z);
  double f = fz(gp, &bm, z, g);
  if (!isfinite(f)) return f;
  for (int it = 0; it < max_iter; it++) {
    double gmax = 0.0;
    for (int64_t k = 0; k < p; k++) gmax = fmax(gmax, fabs(g[k]));
    if (gmax < 1e-5) break;
    /* two-loop recursion */
    for (int64_t k = 0; k < p; k++) dir[k] = -g[k];
    for (int c = 0; c < cnt; c++) {
      int b = (head - 1 - c + LBFGS_M) % LBFGS_M;
      double a = 0.0;
      for (int64_t k = 0; k < p; k++) a += s[b][k] * dir[k];
      a *= rho[b];
      al[b] = a;
      for (int64_t k = 0; k < p; k++) dir[k] -= a * yv[b][k];
    }
    if (cnt > 0) {
      int b = (head - 1 + LBFGS_M) % LBFGS_M;
      double yy = 0.0, sy = 0.0;
      for (int64_t k = 0; k < p; k++) {
        yy += yv[b][k] * yv[b][k];
        sy += s[b][k] * yv[b][k];
      }
      for (int64_t k = 0; k < p; k++) dir[k] *= sy / yy;
    }
    for (int c = cnt - 1; c >= 0; c--) {
      int b = (head - 1 - c + LBFGS_M) % LBFGS_M;
      double bb = 0.0;
      for (int64_t k = 0; k < p; k++) bb += yv[b][k] * dir[k];
      bb *= rho[b];
      for (int64_t k = 0; k < p; k++) dir[k] += s[b][k] * (al[b] - bb);
    }
    double gd = 0.0;
    for (int64_t k = 0; k < p; k++) gd += g[k] * dir[k];
    if (!(gd < 0.0)) { /* not a descent direction: steepest descent, fresh memory */
      cnt = 0;
      gd = 0.0;
      for (int64_t k = 0; k < p; k++) {
        dir[k] = -g[k];
        gd -= g[k] * g[k];
      }
    }
    /* first step of a fresh memory: at most 1 in any coordinate */
    double step = 1.0;
    if (cnt == 0) {
      double nd = 0.0;
      for (int64_t k = 0; k < p; k++) nd = fmax(nd, fabs(dir[k]));
      if (nd > 1.0) step = 1.0 / nd;
    }
    double fn = INFINITY;
    int ok = 0;
    for (int ls = 0; ls < 30; ls++) {
      for (int64_t k = 0; k < p; k++) zn[k] = z[k] + step * dir[k];
      fn = fz(gp, &bm, zn, gn);
      if (isfinite(fn) && fn <= f + 1e-4 * step * gd) {
        ok = 1;
        break;
      }
      step *= 0.5;
    }
    if (!ok) break;
    double sy = 0.0;
    for (int64_t k = 0; k < p; k++) {
      s[head][k] = zn[k] - z[k];
      yv[head][k] = gn[k] - g[k];
      sy += s[head][k] * yv[head][k];
    }
    if (sy > 1e-12) {
      rho[head] = 1.0 / sy;
      head = (head + 1) % LBFGS_M;
      if (cnt < LBFGS_M) cnt++;
    }
    double df = f - fn;
    memcpy(z, zn, (size_t)p * sizeof(double));
    memcpy(g, gn, (size_t)p * sizeof(double));
    f = fn;
    if (df < 1e-7 * (1.0 + fabs(f))) break;
  }
  z_to_x(&bm, z, x);
  /* leave gp factorised at the returned point */
  return strop__gp_nlml(gp, x, NULL);
}

strop_status strop__gp_fit(strop__gp *gp, const double *theta0, int64_t restarts,
                           strop__rng *rng) {
  int64_t d = gp->d, p = d + 2;
  if (p > MAX_P) {
    return strop__err(STROP_E_UNSUPPORTED,
                      "strop__gp_fit: %lld encoded dimensions; at most "
                      "%d are supported",
                      (long long)d, MAX_P - 2);
  }
  double lo[MAX_P], hi[MAX_P], best[MAX_P], x[MAX_P];
  strop__gp_bounds(d, lo, hi);
  double fbest = INFINITY;
  for (int64_t r = -1; r < restarts; r++) {
    if (r < 0) {
      if (theta0) {
        memcpy(x, theta0, (size_t)p * sizeof(double));
      } else {
        for (int64_t k = 0; k < d; k++) x[k] = log(0.5 * sqrt((double)d));
        x[d] = 0.0;
        x[d + 1] = log(1e-3);
      }
    } else {
      /* a random start: the best of a few random draws by likelihood (cheap, no gradient) */
      double fs = INFINITY, xs[MAX_P];
      for (int k8 = 0; k8 < SCREEN; k8++) {
        for (int64_t k = 0; k < d; k++)
          xs[k] = log(0.1) + (log(2.0 * sqrt((double)d)) - log(0.1)) * strop__rng_uniform(rng);
        xs[d] = log(0.5) + (log(2.0) - log(0.5)) * strop__rng_uniform(rng);
        xs[d + 1] = log(1e-5) + (log(1e-1) - log(1e-5)) * strop__rng_uniform(rng);
        double f = strop__gp_nlml(gp, xs, NULL);
        if (k8 == 0 || f < fs) {
          fs = f;
          memcpy(x, xs, (size_t)p * sizeof(double));
        }
      }
    }
    double f = lbfgs_box(gp, p, x, lo, hi, 60);
    if (f < fbest) {
      fbest = f;
      memcpy(best, x, (size_t)p * sizeof(double));
    }
  }
  if (!isfinite(fbest)) {
    /* every start failed to factorise: fall back to a generously noisy kernel */
    for (int64_t k = 0; k < d; k++) best[k] = log(0.5);
    best[d] = 0.0;
    best[d + 1] = log(0.1);
  }
  return strop__gp_set_theta(gp, best);
}

void strop__gp_predict(const strop__gp *gp, int64_t m, const double *xs, double *mean,
                       double *var, double *work) {
  int64_t n = gp->n, d = gp->d;
  const double *th = gp->theta;
  double s2 = exp(th[d]);
  double il2[MAX_P];
  for (int64_t k = 0; k < d && k < MAX_P; k++) il2[k] = exp(-2.0 * th[k]);
  /* work = K(X, xs): n rows, m columns */
  for (int64_t i = 0; i < n; i++) {
    const double *xi = gp->x + i * d;
    for (int64_t c = 0; c < m; c++) {
      const double *xc = xs + c * d;
      double r2 = 0.0;
      for (int64_t k = 0; k < d; k++) {
        double dx = xi[k] - xc[k];
        r2 += dx * dx * il2[k];
      }
      double r = sqrt(r2);
      work[i * m + c] = s2 * (1.0 + SQRT5 * r + (5.0 / 3.0) * r2) * exp(-SQRT5 * r);
    }
  }
  for (int64_t c = 0; c < m; c++) mean[c] = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double a = gp->alpha[i];
    const double *row = work + i * m;
    for (int64_t c = 0; c < m; c++) mean[c] += row[c] * a;
  }
  strop__dtrsm_lower_left(n, m, gp->l, work);
  for (int64_t c = 0; c < m; c++) var[c] = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const double *row = work + i * m;
    for (int64_t c = 0; c < m; c++) var[c] += row[c] * row[c];
  }
  double sd2 = gp->ystd * gp->ystd;
  for (int64_t c = 0; c < m; c++) {
    double v = s2 - var[c];
    var[c] = (v > 1e-12 * s2 ? v : 1e-12 * s2) * sd2;
    mean[c] = gp->ymean + gp->ystd * mean[c];
  }
}
