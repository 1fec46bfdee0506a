/* SPDX-License-Identifier: MIT */
/* strop — float64 LAPACK/BLAS kernels for the tuner's Gaussian process: the inverse from a
 * Cholesky factor and triangular solves. Row-major, lower-triangular factors throughout. */
#ifndef STROP_OPS_GP_H
#define STROP_OPS_GP_H

#include <stdint.h>

/* Overwrites the lower Cholesky factor L (n x n, row-major) with the full symmetric inverse
 * of L L^T (LAPACK dpotri). 0 on success, LAPACK's info otherwise. */
int strop__dpotri_lower(int64_t n, double *a);

/* Solves L x = b (trans 0) or L^T x = b (trans 1) in place; L lower, n x n, row-major. */
void strop__dtrsv_lower(int trans, int64_t n, const double *l, double *x);

/* Solves L X = B in place for B of n rows and m columns (row-major, leading dimension m). */
void strop__dtrsm_lower_left(int64_t n, int64_t m, const double *l, double *b);

#endif
