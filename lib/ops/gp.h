/* SPDX-License-Identifier: MIT */
/* strop — float64 kernels for the tuner's Gaussian process: the Cholesky factor, the inverse
 * from it and triangular solves. Row-major, lower-triangular factors throughout. */
#ifndef STROP_OPS_GP_H
#define STROP_OPS_GP_H

#include <stdint.h>

/* Every function here runs LAPACK/BLAS where OpenBLAS can get its work buffer, and the same
 * algorithm in plain C where the process's memory limits leave no room for it (lib/ops/gp.c). */

/* 1 forces the plain-C path (tests); 0, the default, picks as above. */
extern int strop__gp_plain;

/* The lower Cholesky factor L of a row-major symmetric n x n matrix (its lower triangle read), in
 * place, the upper triangle zeroed. 0 on success, LAPACK's info (a minor is not positive
 * definite) otherwise. */
int strop__dpotrf_lower(int64_t n, double *a);

/* Overwrites the lower Cholesky factor L (n x n, row-major) with the full symmetric inverse
 * of L L^T (LAPACK dpotri). 0 on success, LAPACK's info otherwise. */
int strop__dpotri_lower(int64_t n, double *a);

/* Solves L x = b (trans 0) or L^T x = b (trans 1) in place; L lower, n x n, row-major. */
void strop__dtrsv_lower(int trans, int64_t n, const double *l, double *x);

/* Solves L X = B in place for B of n rows and m columns (row-major, leading dimension m). */
void strop__dtrsm_lower_left(int64_t n, int64_t m, const double *l, double *b);

#endif
