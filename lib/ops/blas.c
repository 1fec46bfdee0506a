/* strop — the BLAS/LAPACK boundary: every call into OpenBLAS goes through here. */
#include <cblas.h>

#include "ops/ops.h"

void strop__sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    /* BLAS leaves C untouched for k = 0 only when beta = 1; make it explicit */
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
              (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void strop__saxpy(int64_t n, float alpha, const float *x, float *y) {
  cblas_saxpy((blasint)n, alpha, x, 1, y, 1);
}

float strop__sdot(int64_t n, const float *x, const float *y) {
  return cblas_sdot((blasint)n, x, 1, y, 1);
}

/* LAPACK's Fortran entry point, shipped inside OpenBLAS. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);

int strop__dpotrf_lower(int64_t n, double *a) {
  /* row-major lower == column-major upper */
  int nn = (int)n, info = 0;
  dpotrf_("U", &nn, a, &nn, &info);
  if (info != 0) return info;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++) a[i * n + j] = 0.0;
  return 0;
}
