/* SPDX-License-Identifier: MIT */
/* strop — the broadcast product: per-sample geometry collapsed to a few dimensions, rows of
 * the innermost one done by loops the compiler vectorises (both inputs contiguous, or one of
 * them a scalar per row). */
#include "ops/broadcast.h"

#include "core/core.h"

int strop__bcast_init(int ra, const int64_t *da, int rb, const int64_t *db, int align_left,
                      int64_t *out, strop__bcast *g) {
  const int r = ra > rb ? ra : rb;
  int64_t ea[STROP__BCAST_MAX], eb[STROP__BCAST_MAX]; /* both shapes at rank r */
  for (int k = 0; k < r; k++) {
    const int ka = align_left ? k : k - (r - ra), kb = align_left ? k : k - (r - rb);
    ea[k] = ka >= 0 && ka < ra ? da[ka] : 1;
    eb[k] = kb >= 0 && kb < rb ? db[kb] : 1;
    if (ea[k] != eb[k] && ea[k] != 1 && eb[k] != 1) return -1 - k;
    out[k] = ea[k] == 1 ? eb[k] : ea[k];
  }
  if (!g) return r;
  int64_t sa[STROP__BCAST_MAX], sb[STROP__BCAST_MAX], pa = 1, pb = 1;
  for (int k = r - 1; k >= 0; k--) { /* contiguous strides, 0 where broadcast */
    sa[k] = ea[k] == 1 ? 0 : pa;
    sb[k] = eb[k] == 1 ? 0 : pb;
    pa *= ea[k];
    pb *= eb[k];
  }
  g->na = pa;
  g->nb = pb;
  g->ny = 1;
  g->rank = 0;
  for (int k = 0; k < r; k++) {
    g->ny *= out[k];
    if (out[k] == 1) continue; /* a dimension of 1 moves nothing */
    int j = g->rank - 1;
    if (j >= 0 && g->sa[j] == sa[k] * out[k] && g->sb[j] == sb[k] * out[k]) {
      g->d[j] *= out[k]; /* walks on from the previous one for both inputs: merge */
      g->sa[j] = sa[k];
      g->sb[j] = sb[k];
      continue;
    }
    g->d[g->rank] = out[k];
    g->sa[g->rank] = sa[k];
    g->sb[g->rank] = sb[k];
    g->rank++;
  }
  if (!g->rank) { /* one element per sample */
    g->rank = 1;
    g->d[0] = 1;
    g->sa[0] = g->sb[0] = 1;
  }
  return r;
}

typedef struct mul_job {
  const strop__bcast *g;
  const float *a, *b, *dy;
  float *y, *da, *db;
} mul_job;

/* Walks the rows of the innermost dimension of one sample: oa and ob are the offsets of the
 * row's first elements in a and b (a row of the output starts at row * inner). */
typedef struct row_iter {
  int64_t idx[STROP__BCAST_MAX];
  int64_t oa, ob;
} row_iter;

static void next_row(const strop__bcast *g, row_iter *it) {
  for (int k = g->rank - 2; k >= 0; k--) {
    it->oa += g->sa[k];
    it->ob += g->sb[k];
    if (++it->idx[k] < g->d[k]) return;
    it->oa -= g->sa[k] * g->d[k];
    it->ob -= g->sb[k] * g->d[k];
    it->idx[k] = 0;
  }
}

static void mul_rows_fwd(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const mul_job *j = ctx;
  const strop__bcast *g = j->g;
  const int64_t m = g->d[g->rank - 1], ia = g->sa[g->rank - 1], ib = g->sb[g->rank - 1];
  for (int64_t i = lo; i < hi; i++) {
    const float *a = j->a + i * g->na, *b = j->b + i * g->nb;
    float *y = j->y + i * g->ny;
    row_iter it = {{0}, 0, 0};
    for (int64_t oy = 0; oy < g->ny; oy += m, next_row(g, &it)) {
      const float *restrict ar = a + it.oa, *restrict br = b + it.ob;
      float *restrict yr = y + oy;
      if (ia && ib) {
        for (int64_t t = 0; t < m; t++) yr[t] = ar[t] * br[t];
      } else if (ia) {
        const float s = br[0];
        for (int64_t t = 0; t < m; t++) yr[t] = ar[t] * s;
      } else {
        const float s = ar[0];
        for (int64_t t = 0; t < m; t++) yr[t] = s * br[t];
      }
    }
  }
}

/* d (x) += sum over a row of dy * other, or elementwise when x is not broadcast in it. */
static void grad_row(float *restrict dx, int64_t sx, const float *restrict dy,
                     const float *restrict o, int64_t so, int64_t m) {
  if (sx && so) {
    for (int64_t t = 0; t < m; t++) dx[t] += dy[t] * o[t];
  } else if (sx) {
    const float s = o[0];
    for (int64_t t = 0; t < m; t++) dx[t] += dy[t] * s;
  } else if (so) {
    float s = 0.0f;
    for (int64_t t = 0; t < m; t++) s += dy[t] * o[t];
    dx[0] += s;
  } else {
    float s = 0.0f;
    for (int64_t t = 0; t < m; t++) s += dy[t];
    dx[0] += s * o[0];
  }
}

static void mul_rows_bwd(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const mul_job *j = ctx;
  const strop__bcast *g = j->g;
  const int64_t m = g->d[g->rank - 1], ia = g->sa[g->rank - 1], ib = g->sb[g->rank - 1];
  for (int64_t i = lo; i < hi; i++) {
    const float *a = j->a + i * g->na, *b = j->b + i * g->nb, *dy = j->dy + i * g->ny;
    float *da = j->da ? j->da + i * g->na : NULL, *db = j->db ? j->db + i * g->nb : NULL;
    row_iter it = {{0}, 0, 0};
    for (int64_t oy = 0; oy < g->ny; oy += m, next_row(g, &it)) {
      if (da) grad_row(da + it.oa, ia, dy + oy, b + it.ob, ib, m);
      if (db) grad_row(db + it.ob, ib, dy + oy, a + it.oa, ia, m);
    }
  }
}

/* Samples per thread below which a split does not pay (by output elements). */
static int64_t grain_of(const strop__bcast *g) {
  const int64_t per = g->ny > 0 ? g->ny : 1;
  return per >= 16384 ? 1 : 16384 / per;
}

void strop__mul_forward(const strop__bcast *g, int64_t n, const float *a, const float *b,
                        float *y) {
  mul_job j = {g, a, b, NULL, y, NULL, NULL};
  strop__par_for(n, grain_of(g), mul_rows_fwd, &j);
}

void strop__mul_backward(const strop__bcast *g, int64_t n, const float *a, const float *b,
                         const float *dy, float *da, float *db) {
  if (!da && !db) return;
  mul_job j = {g, a, b, dy, NULL, da, db};
  strop__par_for(n, grain_of(g), mul_rows_bwd, &j);
}
