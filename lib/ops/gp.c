/* SPDX-License-Identifier: MIT */
/* strop — float64 kernels of the tuner's Gaussian process: the Cholesky factor, the inverse from
 * it and triangular solves, through OpenBLAS (cblas) and its bundled LAPACK. The only BLAS/LAPACK
 * calls of lib/tune go through here. Like the float GEMMs (lib/ops/blas.c), each call first asks
 * strop__blas_has_room whether OpenBLAS can get its work buffer under the process's memory
 * limits, and where it cannot runs the same algorithm in plain C (the GP's matrices are a few
 * hundred rows at most: a trial each); strop__gp_plain 1 forces that path for the tests. */
#include "ops/gp.h"

#include <cblas.h>
#include <math.h>

#include "ops/ops.h"

int strop__gp_plain;

/* LAPACK's Fortran entry points, shipped inside OpenBLAS. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

static int use_lapack(void) { return !strop__gp_plain && strop__blas_has_room(); }

/* L L^T = A in place, row by row; LAPACK's info (the order of the first minor that is not
 * positive) when A is not positive definite. Reads the lower triangle only. */
static int plain_potrf(int64_t n, double *a) {
  for (int64_t j = 0; j < n; j++) {
    double *rj = a + j * n, s = rj[j];
    for (int64_t k = 0; k < j; k++) s -= rj[k] * rj[k];
    if (!(s > 0.0)) return (int)(j + 1);
    const double d = sqrt(s);
    rj[j] = d;
    for (int64_t i = j + 1; i < n; i++) {
      double *ri = a + i * n, t = ri[j];
      for (int64_t k = 0; k < j; k++) t -= ri[k] * rj[k];
      ri[j] = t / d;
    }
  }
  return 0;
}

/* (L L^T)^-1 in the lower triangle, in place: X = L^-1 a row at a time (row i needs L's row i,
 * read from left to right before each entry is overwritten, and X's rows above), then X^T X a
 * row at a time (row i needs X's rows i and below). */
static void plain_potri(int64_t n, double *a) {
  for (int64_t i = 0; i < n; i++) {
    double *ri = a + i * n;
    const double inv = 1.0 / ri[i];
    for (int64_t j = 0; j < i; j++) {
      double s = 0.0;
      for (int64_t k = j; k < i; k++) s += ri[k] * a[k * n + j];
      ri[j] = -s * inv;
    }
    ri[i] = inv;
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j <= i; j++) {
      double s = 0.0;
      for (int64_t k = i; k < n; k++) s += a[k * n + i] * a[k * n + j];
      a[i * n + j] = s;
    }
}

int strop__dpotrf_lower(int64_t n, double *a) {
  if (n <= 0) return 0;
  int info = 0;
  if (use_lapack()) {
    /* row-major lower == column-major upper */
    int nn = (int)n;
    strop__blas_enter();
    dpotrf_("U", &nn, a, &nn, &info);
    strop__blas_leave();
    strop__blas_had_buffer();
  } else {
    info = plain_potrf(n, a);
  }
  if (info != 0) return info;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++) a[i * n + j] = 0.0;
  return 0;
}

int strop__dpotri_lower(int64_t n, double *a) {
  if (n <= 0) return 0;
  if (use_lapack()) {
    int nn = (int)n, info = 0;
    strop__blas_enter();
    dpotri_("U", &nn, a, &nn, &info);
    strop__blas_leave();
    strop__blas_had_buffer();
    if (info != 0) return info;
  } else {
    for (int64_t i = 0; i < n; i++)
      if (!(a[i * n + i] != 0.0)) return (int)(i + 1); /* singular, as dpotri says */
    plain_potri(n, a);
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++) a[i * n + j] = a[j * n + i];
  return 0;
}

void strop__dtrsv_lower(int trans, int64_t n, const double *l, double *x) {
  if (n <= 0) return;
  if (use_lapack()) {
    strop__blas_enter();
    cblas_dtrsv(CblasRowMajor, CblasLower, trans ? CblasTrans : CblasNoTrans, CblasNonUnit,
                (blasint)n, l, (blasint)n, x, 1);
    strop__blas_leave();
    strop__blas_had_buffer();
  } else if (!trans) {
    for (int64_t i = 0; i < n; i++) {
      double s = x[i];
      for (int64_t k = 0; k < i; k++) s -= l[i * n + k] * x[k];
      x[i] = s / l[i * n + i];
    }
  } else {
    for (int64_t i = n - 1; i >= 0; i--) {
      double s = x[i];
      for (int64_t k = i + 1; k < n; k++) s -= l[k * n + i] * x[k];
      x[i] = s / l[i * n + i];
    }
  }
}

void strop__dtrsm_lower_left(int64_t n, int64_t m, const double *l, double *b) {
  if (n <= 0 || m <= 0) return;
  if (use_lapack()) {
    strop__blas_enter();
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (blasint)n,
                (blasint)m, 1.0, l, (blasint)n, b, (blasint)m);
    strop__blas_leave();
    strop__blas_had_buffer();
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    double *bi = b + i * m;
    for (int64_t k = 0; k < i; k++) {
      const double lik = l[i * n + k];
      const double *bk = b + k * m;
      for (int64_t j = 0; j < m; j++) bi[j] -= lik * bk[j];
    }
    const double inv = 1.0 / l[i * n + i];
    for (int64_t j = 0; j < m; j++) bi[j] *= inv;
  }
}
