/* SPDX-License-Identifier: MIT */
/* strop — float64 kernels of the tuner's Gaussian process, through OpenBLAS (cblas) and its
 * bundled LAPACK. The only BLAS/LAPACK calls of lib/tune go through here. */
#include "ops/gp.h"

#include <cblas.h>

#include "ops/ops.h"

/* LAPACK's Fortran entry point, shipped inside OpenBLAS. */
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

int strop__dpotri_lower(int64_t n, double *a) {
  /* row-major lower == column-major upper */
  int nn = (int)n, info = 0;
  if (n <= 0) return 0;
  strop__blas_enter();
  dpotri_("U", &nn, a, &nn, &info);
  strop__blas_leave();
  if (info != 0) return info;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++) a[i * n + j] = a[j * n + i];
  return 0;
}

void strop__dtrsv_lower(int trans, int64_t n, const double *l, double *x) {
  if (n <= 0) return;
  strop__blas_enter();
  cblas_dtrsv(CblasRowMajor, CblasLower, trans ? CblasTrans : CblasNoTrans, CblasNonUnit,
              (blasint)n, l, (blasint)n, x, 1);
  strop__blas_leave();
}

void strop__dtrsm_lower_left(int64_t n, int64_t m, const double *l, double *b) {
  if (n <= 0 || m <= 0) return;
  strop__blas_enter();
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (blasint)n,
              (blasint)m, 1.0, l, (blasint)n, b, (blasint)m);
  strop__blas_leave();
}
