/* SPDX-License-Identifier: MIT */
/* strop — Gaussian-process regression for the tuner: Matern 5/2 kernel with ARD length
 * scales, signal variance and noise, fitted by maximising the log marginal likelihood. */
#ifndef STROP_TUNE_GPMODEL_H
#define STROP_TUNE_GPMODEL_H

#include <stdint.h>

#include "core/core.h"

/* theta = [log l_1 .. log l_d, log signal variance, log noise variance]: d + 2 numbers,
 * in the units of the standardised outputs. */
typedef struct strop__gp {
  int64_t n, d;
  double *x;          /* n x d inputs */
  double *y;          /* n standardised outputs */
  double ymean, ystd; /* y_raw = ymean + ystd * y */
  double *theta;      /* d + 2 */
  double *diff2;      /* (i > j) pairs x d squared differences */
  double *l;          /* n x n lower Cholesky factor of K */
  double *alpha;      /* K^-1 y */
  double *kinv;       /* n x n work (K^-1 for the gradient) */
  double *pr, *pe;    /* per pair: scaled distance r and exp(-sqrt(5) r) at theta */
  int ready;          /* l and alpha match theta */
} strop__gp;

/* Copies the data and standardises y (a constant y gets ystd 1). */
strop_status strop__gp_init(strop__gp *gp, int64_t n, int64_t d, const double *x,
                            const double *y);
void strop__gp_free(strop__gp *gp);

/* Bounds of each log-hyperparameter (lengthscale, signal, noise). */
void strop__gp_bounds(int64_t d, double *lo, double *hi);

/* Negative log marginal likelihood at theta (and its gradient when grad != NULL); +inf when
 * K is not positive definite. Leaves gp factorised at theta on success. */
double strop__gp_nlml(strop__gp *gp, const double *theta, double *grad);

/* Fixes theta (no fit) and factorises. STROP_E_NUMERIC if K is not positive definite. */
strop_status strop__gp_set_theta(strop__gp *gp, const double *theta);

/* Maximises the marginal likelihood with projected L-BFGS from theta0 (if not NULL) and from
 * `restarts` random starts; leaves gp at the best theta. */
strop_status strop__gp_fit(strop__gp *gp, const double *theta0, int64_t restarts,
                           strop__rng *rng);

/* Posterior mean and variance of the latent function (no noise) at m points xs (m x d), in
 * the raw units of y. work holds n * m doubles. */
void strop__gp_predict(const strop__gp *gp, int64_t m, const double *xs, double *mean,
                       double *var, double *work);

#endif
