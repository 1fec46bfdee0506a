/* SPDX-License-Identifier: MIT */
/* strop — layer normalization forward and backward. Row statistics are summed in double
 * (two passes) so long rows keep float32 parity with PyTorch. */
#include "ops/layernorm.h"

#include <math.h>
#include <string.h>

#include "core/core.h"
#include "core/pool_profile.h"
#include "ops/ops.h"

/* Rows are independent: both passes split rows across strop's threads (no bit changes). Each
 * row's statistics are a chain of dependent double adds in column order, bound by the add's
 * latency; LN_GROUP rows at a time run their chains side by side (one accumulator a row, each
 * still summed in column order: the one-row loop's bits) so that they overlap. */
enum { LN_GROUP = 8 };

int strop__rows_together = LN_GROUP;

static int64_t group_rows(void) {
  return strop__rows_together < 1          ? 1
         : strop__rows_together > LN_GROUP ? LN_GROUP
                                           : strop__rows_together;
}

typedef struct ln_job {
  const float *x, *dy, *gamma, *beta, *cmean, *crstd;
  int64_t d;
  float eps;
  float *y, *mean, *rstd, *dx;
} ln_job;

/* nr (<= LN_GROUP, a constant after inlining) rows from x: their mean and rstd */
static inline __attribute__((always_inline)) void ln_stats(const float *x, int64_t d, float eps,
                                                           const int nr, float *m, float *rs) {
  double s[LN_GROUP] = {0}, v[LN_GROUP] = {0}, mu[LN_GROUP];
  for (int64_t j = 0; j < d; j++)
    for (int r = 0; r < nr; r++) s[r] += x[r * d + j];
  for (int r = 0; r < nr; r++) mu[r] = s[r] / (double)d;
  for (int64_t j = 0; j < d; j++)
    for (int r = 0; r < nr; r++) {
      double t = (double)x[r * d + j] - mu[r];
      v[r] += t * t;
    }
  for (int r = 0; r < nr; r++) {
    m[r] = (float)mu[r];
    rs[r] = (float)(1.0 / sqrt(v[r] / (double)d + (double)eps));
  }
}

STROP__CLONES static void ln_forward_rows(const ln_job *job, int64_t r0, int64_t r1) {
  const float *gamma = job->gamma, *beta = job->beta;
  const int64_t d = job->d, grp = group_rows();
  for (int64_t g = r0; g < r1; g += grp) {
    const int nr = r1 - g < grp ? (int)(r1 - g) : (int)grp;
    float mg[LN_GROUP], rg[LN_GROUP];
    if (nr == LN_GROUP) ln_stats(job->x + g * d, d, job->eps, LN_GROUP, mg, rg);
    else
      for (int r = 0; r < nr; r++) ln_stats(job->x + (g + r) * d, d, job->eps, 1, mg + r, rg + r);
    for (int i = 0; i < nr; i++) {
      const float *xr = job->x + (g + i) * d;
      float *yr = job->y + (g + i) * d;
      const float m = mg[i], rs = rg[i];
      if (job->mean) job->mean[g + i] = m;
      if (job->rstd) job->rstd[g + i] = rs;
      if (gamma && beta)
        for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs * gamma[j] + beta[j];
      else if (gamma)
        for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs * gamma[j];
      else
        for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] - m) * rs + (beta ? beta[j] : 0.0f);
    }
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

/* nr rows (a constant after inlining): a = mean(g), b = mean(g xhat), g = dy * gamma, each row's
 * two sums in column order as one row alone */
static inline __attribute__((always_inline)) void ln_grad_stats(const float *x, const float *dy,
                                                                const float *gamma, int64_t d,
                                                                const float *m, const float *rs,
                                                                const int nr, float *a,
                                                                float *b) {
  double sg[LN_GROUP] = {0}, sgx[LN_GROUP] = {0}, md[LN_GROUP], rd[LN_GROUP];
  for (int r = 0; r < nr; r++) md[r] = m[r], rd[r] = rs[r];
  for (int64_t j = 0; j < d; j++) {
    const double gj = gamma ? (double)gamma[j] : 1.0;
    for (int r = 0; r < nr; r++) {
      double g = (double)dy[r * d + j] * gj;
      sg[r] += g;
      sgx[r] += g * ((double)x[r * d + j] - md[r]) * rd[r];
    }
  }
  for (int r = 0; r < nr; r++)
    a[r] = (float)(sg[r] / (double)d), b[r] = (float)(sgx[r] / (double)d);
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma, rows [r0, r1) */
STROP__CLONES static void ln_backward_dx_chunk(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const ln_job *jb = ctx;
  const float *gamma = jb->gamma;
  const int64_t d = jb->d, grp = group_rows();
  for (int64_t g0 = r0; g0 < r1; g0 += grp) {
    const int nr = r1 - g0 < grp ? (int)(r1 - g0) : (int)grp;
    const float *x = jb->x + g0 * d, *dy = jb->dy + g0 * d;
    const float *mg = jb->cmean + g0, *rg = jb->crstd + g0;
    float ag[LN_GROUP], bg[LN_GROUP];
    if (nr == LN_GROUP) ln_grad_stats(x, dy, gamma, d, mg, rg, LN_GROUP, ag, bg);
    else
      for (int r = 0; r < nr; r++)
        ln_grad_stats(x + r * d, dy + r * d, gamma, d, mg + r, rg + r, 1, ag + r, bg + r);
    for (int i = 0; i < nr; i++) {
      const float *xr = x + i * d, *dyr = dy + i * d;
      const float m = mg[i], rs = rg[i], a = ag[i], b = bg[i];
      float *dxr = jb->dx + (g0 + i) * d;
      for (int64_t j = 0; j < d; j++) {
        float g = dyr[j] * (gamma ? gamma[j] : 1.0f);
        float xh = (xr[j] - m) * rs;
        dxr[j] += rs * (g - a - xh * b);
      }
    }
  }
}

/* the parameter gradients sum over rows in row order, the threads splitting the columns: the
 * same bits at any thread count (one thread summed them all while the other waited: a serial
 * pass of the step, docs/performance.md 2026-12-05) */
typedef struct ln_pg_job {
  const float *x, *dy, *mean, *rstd;
  int64_t rows, d;
  float *dgamma, *dbeta;
} ln_pg_job;

STROP__CLONES static void ln_param_grads(void *ctx, int64_t c0, int64_t c1, int chunk) {
  (void)chunk;
  const ln_pg_job *jb = ctx;
  const int64_t d = jb->d;
  float *dgamma = jb->dgamma, *dbeta = jb->dbeta;
  for (int64_t r = 0; r < jb->rows; r++) {
    const float *xr = jb->x + r * d, *dyr = jb->dy + r * d;
    float m = jb->mean[r], rs = jb->rstd[r];
    if (dgamma)
      for (int64_t j = c0; j < c1; j++) dgamma[j] += dyr[j] * (xr[j] - m) * rs;
    if (dbeta)
      for (int64_t j = c0; j < c1; j++) dbeta[j] += dyr[j];
  }
}

void strop__layernorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                               const float *gamma, const float *mean, const float *rstd,
                               float *dx, float *dgamma, float *dbeta) {
  if (dgamma || dbeta) {
    ln_pg_job pj = {.x = x,
                    .dy = dy,
                    .mean = mean,
                    .rstd = rstd,
                    .rows = rows,
                    .d = d,
                    .dgamma = dgamma,
                    .dbeta = dbeta};
    const int64_t grain = 8192 / (rows > 0 ? rows : 1); /* columns: 8192 rows' worth a chunk */
    strop__par_for_pass(d, grain < 16 ? 16 : grain, ln_param_grads, &pj);
  }
  if (!dx) return;
  ln_job j = {.x = x, .dy = dy, .gamma = gamma, .cmean = mean, .crstd = rstd, .d = d, .dx = dx};
  strop__par_for(rows, row_grain(d), ln_backward_dx_chunk, &j);
}

/* ---- RMS normalization (Llama's RMSNorm): one pass over each row in cache for its mean
 * square, one for its output; the backward reads a row once for sum(g x) and once more to
 * write dx and add the row's share of dgamma. Only rstd is kept per row. The row sums are
 * taken in double, as layer norm's statistics, in 16 running sums (lane l takes j = l mod 16)
 * added in a fixed order at the end: one sum in order is a chain of dependent adds that no
 * compiler may vectorise, and it was the cost of the whole kernel. The order is the source's,
 * and the build contracts no multiply-add (ISO C11: -ffp-contract=off), so each clone —
 * AVX-512, AVX2 and the baseline, picked at load (ops.h) — gives the same bits. ---- */

static inline __attribute__((always_inline)) double sum_sq(const float *x, int64_t d) {
  double acc[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= d; j += 16)
    for (int l = 0; l < 16; l++) acc[l] += (double)x[j + l] * (double)x[j + l];
  for (int l = 0; j + l < d; l++) acc[l] += (double)x[j + l] * (double)x[j + l];
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

/* sum of dy[j] gamma[j] x[j] (gamma NULL: 1) in double, lanes as sum_sq */
static inline __attribute__((always_inline)) double sum_gx(const float *dy, const float *gamma,
                                                           const float *x, int64_t d) {
  double acc[16] = {0};
  int64_t j = 0;
  if (gamma) {
    for (; j + 16 <= d; j += 16)
      for (int l = 0; l < 16; l++)
        acc[l] += (double)dy[j + l] * (double)gamma[j + l] * (double)x[j + l];
    for (int l = 0; j + l < d; l++)
      acc[l] += (double)dy[j + l] * (double)gamma[j + l] * (double)x[j + l];
  } else {
    for (; j + 16 <= d; j += 16)
      for (int l = 0; l < 16; l++) acc[l] += (double)dy[j + l] * (double)x[j + l];
    for (int l = 0; j + l < d; l++) acc[l] += (double)dy[j + l] * (double)x[j + l];
  }
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

STROP__CLONES static void rms_forward_chunk(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const ln_job *jb = ctx;
  const int64_t d = jb->d;
  const float *gamma = jb->gamma;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = jb->x + r * d;
    float *yr = jb->y + r * d;
    const float rs = (float)(1.0 / sqrt(sum_sq(xr, d) / (double)d + (double)jb->eps));
    if (jb->rstd) jb->rstd[r] = rs;
    if (gamma)
      for (int64_t j = 0; j < d; j++) yr[j] = (xr[j] * rs) * gamma[j];
    else
      for (int64_t j = 0; j < d; j++) yr[j] = xr[j] * rs;
  }
}

void strop__rmsnorm_forward(const float *x, int64_t rows, int64_t d, const float *gamma,
                            float eps, float *y, float *rstd) {
  ln_job j = {.x = x, .gamma = gamma, .d = d, .eps = eps, .y = y, .rstd = rstd};
  strop__par_for(rows, row_grain(d), rms_forward_chunk, &j);
}

/* The backward's rows come in at most RMS_SLICES slices fixed by the rows and the width alone
 * (not by the thread count), each summing its share of dgamma in row order — the first
 * straight into dgamma, the others into their own row of scratch — and the shares are added in
 * slice order: any thread count gives the same bits, and the threads split the slices. */
enum { RMS_SLICES = 8 };

static int64_t rms_slices(int64_t rows, int64_t d) {
  const int64_t s = rows / row_grain(d);
  return s < 1 ? 1 : s > RMS_SLICES ? RMS_SLICES : s;
}

typedef struct rms_bwd_job {
  const float *x, *dy, *gamma, *rstd;
  int64_t d, rows, slices;
  float *dx, *dgamma, *part; /* part: slices - 1 rows of d, slice s > 0's share of dgamma */
} rms_bwd_job;

/* Slices [s0, s1): dx += rstd (g - x rstd^2 mean(g x)) for their rows, and each slice's share
 * of dgamma. */
STROP__CLONES static void rms_backward_slices(void *ctx, int64_t s0, int64_t s1, int chunk) {
  (void)chunk;
  const rms_bwd_job *jb = ctx;
  const int64_t d = jb->d;
  const float *gamma = jb->gamma;
  for (int64_t sl = s0; sl < s1; sl++) {
    float *dg = jb->dgamma;
    if (dg && sl > 0) {
      dg = jb->part + (sl - 1) * d;
      memset(dg, 0, (size_t)d * sizeof *dg);
    }
    const int64_t r0 = jb->rows * sl / jb->slices, r1 = jb->rows * (sl + 1) / jb->slices;
    for (int64_t r = r0; r < r1; r++) {
      const float *xr = jb->x + r * d, *dyr = jb->dy + r * d;
      const float rs = jb->rstd[r];
      if (dg)
        for (int64_t j = 0; j < d; j++) dg[j] += dyr[j] * (xr[j] * rs);
      if (!jb->dx) continue;
      const float b = (float)(sum_gx(dyr, gamma, xr, d) / (double)d * (double)rs * (double)rs);
      float *dxr = jb->dx + r * d;
      if (gamma)
        for (int64_t j = 0; j < d; j++) dxr[j] += rs * (dyr[j] * gamma[j] - xr[j] * b);
      else
        for (int64_t j = 0; j < d; j++) dxr[j] += rs * (dyr[j] - xr[j] * b);
    }
  }
}

size_t strop__rmsnorm_backward_scratch(int64_t rows, int64_t d) {
  return (size_t)(rms_slices(rows, d) - 1) * (size_t)d;
}

void strop__rmsnorm_backward(const float *x, const float *dy, int64_t rows, int64_t d,
                             const float *gamma, const float *rstd, float *dx, float *dgamma,
                             float *scratch) {
  if ((!dx && !dgamma) || rows <= 0) return;
  const int64_t slices = rms_slices(rows, d);
  rms_bwd_job j = {.x = x,
                   .dy = dy,
                   .gamma = gamma,
                   .rstd = rstd,
                   .d = d,
                   .rows = rows,
                   .slices = slices,
                   .dx = dx,
                   .dgamma = dgamma,
                   .part = scratch};
  strop__par_run(strop__par_chunks(strop__num_threads(), slices, 1), slices, rms_backward_slices,
                 &j);
  if (dgamma) /* the slices' shares, in slice order */
    for (int64_t sl = 1; sl < slices; sl++) {
      const float *ps = scratch + (sl - 1) * d;
      for (int64_t e = 0; e < d; e++) dgamma[e] += ps[e];
    }
}

/* ---- a residual sum and the RMS norm after it, one pass over each row: the sum is written
 * once and normalised while the row is in cache (forward), and the norm's dx joins the sum's
 * gradient and goes to every input of the sum at once (backward). The same sums in the same
 * order as the two kernels apart (add_fwd_range of layers/merge.c, rms_forward_chunk and
 * rms_backward_slices above): the same bits. ---- */

typedef struct add_rms_job {
  const float *const *x;
  int nx;
  const float *gamma, *dy, *ds, *rstd_in, *s_in;
  float *const *dx;
  int64_t d, rows, slices;
  float eps;
  float *s, *y, *rstd, *dgamma, *part, *trow;
} add_rms_job;

/* One row's sum of two inputs written to s, its squares summed in sum_sq's lanes and order as it
 * goes: one read of the inputs, the row in cache for the norm. */
static inline __attribute__((always_inline)) double sum2_sq(const float *a, const float *b,
                                                            float *s, int64_t d) {
  double acc[16] = {0};
  int64_t j = 0;
  for (; j + 16 <= d; j += 16)
    for (int l = 0; l < 16; l++) {
      const float v = a[j + l] + b[j + l];
      s[j + l] = v;
      acc[l] += (double)v * (double)v;
    }
  for (int l = 0; j + l < d; l++) {
    const float v = a[j + l] + b[j + l];
    s[j + l] = v;
    acc[l] += (double)v * (double)v;
  }
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

STROP__CLONES static void add_rms_forward_chunk(void *ctx, int64_t r0, int64_t r1, int chunk) {
  (void)chunk;
  const add_rms_job *jb = ctx;
  const int64_t d = jb->d;
  const float *gamma = jb->gamma;
  for (int64_t r = r0; r < r1; r++) {
    float *sr = jb->s + r * d, *yr = jb->y + r * d;
    const float *a = jb->x[0] + r * d;
    double ss;
    if (jb->nx == 2) {
      ss = sum2_sq(a, jb->x[1] + r * d, sr, d);
    } else {
      if (jb->nx == 1) {
        memcpy(sr, a, (size_t)d * sizeof *sr);
      } else {
        const float *b = jb->x[1] + r * d;
        for (int64_t j = 0; j < d; j++) sr[j] = a[j] + b[j];
        for (int i = 2; i < jb->nx; i++) {
          const float *c = jb->x[i] + r * d;
          for (int64_t j = 0; j < d; j++) sr[j] += c[j];
        }
      }
      ss = sum_sq(sr, d);
    }
    const float rs = (float)(1.0 / sqrt(ss / (double)d + (double)jb->eps));
    if (jb->rstd) jb->rstd[r] = rs;
    if (gamma)
      for (int64_t j = 0; j < d; j++) yr[j] = (sr[j] * rs) * gamma[j];
    else
      for (int64_t j = 0; j < d; j++) yr[j] = sr[j] * rs;
  }
}

void strop__add_rmsnorm_forward(const float *const *x, int nx, int64_t rows, int64_t d,
                                const float *gamma, float eps, float *s, float *y, float *rstd) {
  add_rms_job j = {
      .x = x, .nx = nx, .gamma = gamma, .d = d, .eps = eps, .s = s, .y = y, .rstd = rstd};
  strop__par_for(rows, row_grain(d), add_rms_forward_chunk, &j);
}

/* Slices [s0, s1), as rms_backward_slices: each slice's share of dgamma, and per row the sum's
 * gradient t (in the slice's row of trow) added to every input's. */
/* The common row (a weight, dy, two inputs whose gradients are distinct buffers): after
 * sum_gx, one pass adds the row's share of dgamma, forms the sum's gradient and adds it to both
 * inputs' gradients. ds and dg may be NULL. */
static inline __attribute__((always_inline)) void row2_backward(const float *xr, const float *dyr,
                                                                const float *dsr,
                                                                const float *gamma, float rs,
                                                                float b, float *dg, float *d0,
                                                                float *d1, int64_t d) {
  if (dg)
    for (int64_t j = 0; j < d; j++) dg[j] += dyr[j] * (xr[j] * rs);
  if (dsr)
    for (int64_t j = 0; j < d; j++) {
      const float t = dsr[j] + rs * (dyr[j] * gamma[j] - xr[j] * b);
      d0[j] += t;
      d1[j] += t;
    }
  else
    for (int64_t j = 0; j < d; j++) {
      const float t = 0.0f + rs * (dyr[j] * gamma[j] - xr[j] * b);
      d0[j] += t;
      d1[j] += t;
    }
}

STROP__CLONES static void add_rms_backward_slices(void *ctx, int64_t s0, int64_t s1, int chunk) {
  (void)chunk;
  const add_rms_job *jb = ctx;
  const int64_t d = jb->d;
  const float *gamma = jb->gamma;
  const int two = jb->nx == 2 && jb->dx[0] && jb->dx[1] && jb->dx[0] != jb->dx[1] && gamma &&
                  jb->dy;
  for (int64_t sl = s0; sl < s1; sl++) {
    float *dg = jb->dy ? jb->dgamma : NULL;
    if (dg && sl > 0) {
      dg = jb->part + (sl - 1) * d;
      memset(dg, 0, (size_t)d * sizeof *dg);
    }
    float *t = jb->trow + sl * d;
    const int64_t r0 = jb->rows * sl / jb->slices, r1 = jb->rows * (sl + 1) / jb->slices;
    for (int64_t r = r0; r < r1; r++) {
      const float *xr = jb->s_in + r * d, *dsr = jb->ds ? jb->ds + r * d : NULL;
      const float rs = jb->rstd_in[r];
      if (two) {
        const float *dyr = jb->dy + r * d;
        const float b = (float)(sum_gx(dyr, gamma, xr, d) / (double)d * (double)rs * (double)rs);
        row2_backward(xr, dyr, dsr, gamma, rs, b, dg, jb->dx[0] + r * d, jb->dx[1] + r * d, d);
        continue;
      }
      if (jb->dy) {
        const float *dyr = jb->dy + r * d;
        if (dg)
          for (int64_t j = 0; j < d; j++) dg[j] += dyr[j] * (xr[j] * rs);
        const float b = (float)(sum_gx(dyr, gamma, xr, d) / (double)d * (double)rs * (double)rs);
        if (dsr && gamma)
          for (int64_t j = 0; j < d; j++) t[j] = dsr[j] + rs * (dyr[j] * gamma[j] - xr[j] * b);
        else if (dsr)
          for (int64_t j = 0; j < d; j++) t[j] = dsr[j] + rs * (dyr[j] - xr[j] * b);
        else if (gamma)
          for (int64_t j = 0; j < d; j++) t[j] = 0.0f + rs * (dyr[j] * gamma[j] - xr[j] * b);
        else
          for (int64_t j = 0; j < d; j++) t[j] = 0.0f + rs * (dyr[j] - xr[j] * b);
      } else {
        memcpy(t, dsr, (size_t)d * sizeof *t);
      }
      for (int i = 0; i < jb->nx; i++) {
        float *dxr = jb->dx[i];
        if (!dxr) continue;
        dxr += r * d;
        for (int64_t j = 0; j < d; j++) dxr[j] += t[j];
      }
    }
  }
}

size_t strop__add_rmsnorm_backward_scratch(int64_t rows, int64_t d) {
  return (size_t)(2 * rms_slices(rows, d) - 1) * (size_t)d;
}

void strop__add_rmsnorm_backward(const float *s, const float *dy, const float *ds, int64_t rows,
                                 int64_t d, const float *gamma, const float *rstd,
                                 float *const *dx, int nx, float *dgamma, float *scratch) {
  if ((!dy && !ds) || rows <= 0) return;
  const int64_t slices = rms_slices(rows, d);
  add_rms_job j = {.s_in = s,
                   .dy = dy,
                   .ds = ds,
                   .gamma = gamma,
                   .rstd_in = rstd,
                   .d = d,
                   .rows = rows,
                   .slices = slices,
                   .dx = dx,
                   .nx = nx,
                   .dgamma = dgamma,
                   .part = scratch,
                   .trow = scratch + (slices - 1) * d};
  strop__par_run(strop__par_chunks(strop__num_threads(), slices, 1), slices,
                 add_rms_backward_slices, &j);
  if (dgamma && dy) /* the slices' shares, in slice order */
    for (int64_t sl = 1; sl < slices; sl++) {
      const float *ps = scratch + (sl - 1) * d;
      for (int64_t e = 0; e < d; e++) dgamma[e] += ps[e];
    }
}
