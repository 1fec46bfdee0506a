/* SPDX-License-Identifier: MIT */
/* strop — multi-head self-attention forward and backward. Heads are strided views of the
 * [n*t, d] projections (leading dimension d), so every matmul is one strop__sgemm call
 * without copies: Q K^T and P V per (batch, head), projections over all n*t rows at once. */
#include "ops/attention.h"

#include <math.h>
#include <string.h>

#include "core/core.h"
#include "ops/bf16gemm.h"
#include "ops/ops.h"
#include "ops/rope.h"
#include "ops/vmath.h"

static void core_dims(const strop__mha_dims *dm, strop__sdpa_dims *cd);

size_t strop__attention_forward_scratch(const strop__mha_dims *dm) {
  strop__sdpa_dims cd;
  core_dims(dm, &cd);
  return strop__sdpa_forward_scratch(&cd);
}

/* dctx, dq, dk, dv [n t, d], then the core's (per chunk of samples its own P' and dP [t, t],
 * or tiled its blocks) */
size_t strop__attention_backward_scratch(const strop__mha_dims *dm) {
  strop__sdpa_dims cd;
  core_dims(dm, &cd);
  return (size_t)(4 * dm->n * dm->t * dm->d) + strop__sdpa_backward_scratch(&cd);
}

/* y[rows, d] = x w^T + b */
static void project(const float *x, const float *w, const float *b, int64_t rows, int64_t d,
                    float *y) {
  strop__sgemm(0, 1, rows, d, d, 1.0f, x, d, w, d, 0.0f, y, d);
  if (b)
    for (int64_t r = 0; r < rows; r++) {
      float *yr = y + r * d;
      for (int64_t j = 0; j < d; j++) yr[j] += b[j];
    }
}

/* dw += dy^T x, db += colsum(dy), dx += dy w */
static void project_backward(const float *x, const float *w, const float *dy, int64_t rows,
                             int64_t d, float *dx, float *dw, float *db) {
  if (dw) strop__sgemm(1, 0, d, d, rows, 1.0f, dy, d, x, d, 1.0f, dw, d);
  if (db)
    for (int64_t r = 0; r < rows; r++) {
      const float *dr = dy + r * d;
      for (int64_t j = 0; j < d; j++) db[j] += dr[j];
    }
  if (dx) strop__sgemm(0, 0, rows, d, d, 1.0f, dy, d, w, d, 1.0f, dx, d);
}

/* The loops over a row's keys come twice, with and without a padding mask, never as one loop
 * testing `!pad || pad[j] != 0`: vectorised, that test is a masked load of pad[j] even when pad
 * is NULL, and a masked load from an unmapped page is a suppressed fault on every vector (a
 * microcode assist of hundreds of cycles) — it made the softmax cost more than the products. */

/* The largest of s[0..lim) among the keys pad leaves visible (all of them when pad is NULL),
 * from m up; *nan is set when one of them is NaN. */
static inline __attribute__((always_inline)) float row_max(const float *s, int64_t lim,
                                                           const float *pad, float m, int *nan) {
  int bad = 0;
  if (pad) {
    for (int64_t j = 0; j < lim; j++)
      if (pad[j] != 0.0f) {
        if (s[j] > m) m = s[j];
        bad |= isnan(s[j]);
      }
  } else {
    for (int64_t j = 0; j < lim; j++) {
      if (s[j] > m) m = s[j];
      bad |= isnan(s[j]);
    }
  }
  *nan = bad;
  return m;
}

/* s[j] = exp(s[j] - m) * mul for the visible keys of s[0..lim), 0 for the masked ones; returns
 * the sum of the exps (before mul) in key order. */
static inline __attribute__((always_inline)) float row_exp(float *s, int64_t lim,
                                                           const float *pad, float m, float mul) {
  float sum = 0.0f;
  if (pad) {
    for (int64_t j = 0; j < lim; j++) {
      const float e = pad[j] != 0.0f ? strop__vexpf(s[j] - m) : 0.0f;
      s[j] = e * mul;
      sum += e;
    }
  } else {
    for (int64_t j = 0; j < lim; j++) {
      const float e = strop__vexpf(s[j] - m);
      s[j] = e * mul;
      sum += e;
    }
  }
  return sum;
}

/* sum a[i] b[i] over i < n: from 16 terms on in 16 running sums (lane l takes i = l mod 16)
 * added up in a fixed order at the end, since one float sum in order is a chain of dependent
 * adds that no compiler may vectorise without -ffast-math and it cost as much as the products
 * beside it; shorter rows in order, as before (their rounding is PyTorch's). The order is the
 * source's, so every vector width gives the same bits. */
static inline __attribute__((always_inline)) float dot_lanes(const float *a, const float *b,
                                                             int64_t n) {
  if (n < 16) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
  }
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i + l < n; l++) acc[l] += a[i + l] * b[i + l];
  for (int w = 8; w > 0; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

/* ---- dropout's mask: a hash of the weight's place, not a draw ---- */

/* The mask's key of query row i of head h of global sample s: splitmix64's finaliser of the
 * seed advanced by the row's index. */
static inline uint64_t drop_row_key(const strop__sdpa_dims *dm, int64_t s, int64_t h, int64_t i) {
  uint64_t z = dm->drop_seed +
               ((uint64_t)((s * dm->heads + h) * dm->t + i) + 1u) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* A weight is kept when its 32 bits are at least p 2^32 (2^32 when p >= 1: none kept). */
static uint64_t drop_threshold(float p) {
  return p >= 1.0f ? (uint64_t)1 << 32 : (uint64_t)((double)p * 4294967296.0);
}

/* The 32 bits of key j of a row: murmur3's finaliser of (the key's low half xor j times an odd
 * constant) plus its high half — one to one in j, so a row's keys never share their bits. */
static inline __attribute__((always_inline)) uint32_t drop_bits(uint64_t key, uint32_t j) {
  uint32_t x = ((uint32_t)key ^ (j * 0x9E3779B9u)) + (uint32_t)(key >> 32);
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  x ^= x >> 16;
  return x;
}

/* m[c] for keys j0 .. j0 + n - 1 of the row of key `key`: ks (1 / (1 - p)) where the weight is
 * kept, 0 where dropped. */
static inline __attribute__((always_inline)) void drop_row_scales(uint64_t key, int64_t j0,
                                                                  int64_t n, uint64_t thr,
                                                                  float ks, float *m) {
  for (int64_t c = 0; c < n; c++)
    m[c] = (uint64_t)drop_bits(key, (uint32_t)(j0 + c)) >= thr ? ks : 0.0f;
}

uint64_t strop__sdpa_draw_seed(strop__rng *rng) {
  const uint64_t hi = strop__rng_u32(rng);
  return hi << 32 | strop__rng_u32(rng);
}

int strop__sdpa_drop_keeps(const strop__sdpa_dims *dm, int64_t s, int64_t h, int64_t i,
                           int64_t j) {
  if (!(dm->dropout > 0.0f)) return 1;
  return drop_bits(drop_row_key(dm, s, h, i), (uint32_t)j) >= drop_threshold(dm->dropout);
}

/* the scale of a kept weight */
static float drop_keep_scale(float p) { return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f; }

/* x through dropout, m its scale from drop_row_scales: a dropped weight (or gradient) is 0 even
 * where x is not finite */
static inline __attribute__((always_inline)) float dropped(float x, float m) {
  return m != 0.0f ? x * m : 0.0f;
}

/* Masked softmax of one row of scores s[0..t) for query i of batch b, in place. */
/* inlined into the (cloned) per-sample loops so its exp loop gets their vector width */
static inline __attribute__((always_inline)) void softmax_row(float *s, int64_t t, int64_t i,
                                                              int causal, const float *pad) {
  int64_t lim = causal ? i + 1 : t;
  int any_nan;
  const float m = row_max(s, lim, pad, -INFINITY, &any_nan);
  if (m == -INFINITY) { /* every key masked (or -inf scores): no attention at all */
    any_nan = 0;
    for (int64_t j = 0; j < lim; j++) any_nan |= isnan(s[j]);
    for (int64_t j = 0; j < t; j++) s[j] = any_nan ? NAN : 0.0f;
    return;
  }
  const float sum = row_exp(s, lim, pad, m, 1.0f);
  float inv = 1.0f / sum;
  for (int64_t j = 0; j < lim; j++) s[j] *= inv;
  for (int64_t j = lim; j < t; j++) s[j] = 0.0f;
}

/* ---- the core: scaled dot products of projected q, k, v, heads as strided views ---- */

typedef struct core_job {
  const strop__sdpa_dims *dm;
  const float *q, *k, *v;
  float *p;
  float *scratch; /* per chunk: forward, the dropped weights; backward, P', dP (and blocks) */
  const float *dctx;
  float *ctx, *dq, *dk, *dv;
  int accumulate;
  int dot; /* dm->bf16 on vdpbf16ps (else its exact fallback) */
} core_job;

static int sdpa_chunks(const strop__sdpa_dims *dm) { return dm->chunks > 1 ? dm->chunks : 1; }

/* ---- the products: FP32, or with dm->bf16 on BF16 operands with FP32 sums ---- */

/* dm->bf16: the floats of a chunk's area for the products of blocks of bq queries x bk keys —
 * vdpbf16ps's packing (strop__bf16_sgemm_serial) of the largest of them, or the exact fallback's
 * rounded copies of both operands — and 64 bytes to align it; FP32: 0 */
static size_t bf16_floats(const strop__sdpa_dims *dm, int64_t bq, int64_t bk) {
  if (!dm->bf16) return 0;
  const int64_t hd = dm->head_dim, shapes[3][3] = {{bq, bk, hd}, {bq, hd, bk}, {bk, hd, bq}};
  size_t most = 0;
  for (int i = 0; i < 3; i++) {
    const int64_t m = shapes[i][0], n = shapes[i][1], k = shapes[i][2];
    const size_t dot = (strop__bf16_sgemm_serial_scratch(m, n, k) + 3) / 4;
    const size_t copies = (size_t)(m * k + k * n);
    if (dot > most) most = dot;
    if (copies > most) most = copies;
  }
  return most + 16;
}

/* the area from p on, 64-byte aligned */
static float *bf16_area(float *p) {
  return (float *)(void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* C = alpha op(A) op(B) + beta C, as strop__sgemm; with dm->bf16 on A and B rounded to BF16 with
 * FP32 sums (the model's compute dtype): vdpbf16ps on this thread, or where it does not run the
 * FP32 product of the rounded operands (copied into work). work: the chunk's bf16_area. */
static void mm(const core_job *j, float *work, int ta, int tb, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
               float *c, int64_t ldc) {
  if (!j->dm->bf16) {
    strop__sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (j->dot) {
    strop__bf16_sgemm_serial(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, work);
    return;
  }
  const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  float *ra = work, *rb = work + ar * ac;
  for (int64_t r = 0; r < ar; r++) strop__bf16_round_f32(a + r * lda, ra + r * ac, (size_t)ac);
  for (int64_t r = 0; r < br; r++) strop__bf16_round_f32(b + r * ldb, rb + r * bc, (size_t)bc);
  strop__sgemm(ta, tb, m, n, k, alpha, ra, ac, rb, bc, beta, c, ldc);
}

/* Rotary embeddings at the load: the materialised path's per-chunk rows of the current head
 * (forward: q and k; backward: also the gradients of the rotated q and k), t x head_dim each. */
static size_t core_rope_floats(const strop__sdpa_dims *dm, int heads) {
  return dm->rot ? (size_t)(heads * dm->t * dm->head_dim) : 0;
}

static int drops(const strop__sdpa_dims *dm) { return dm->dropout > 0.0f; }

/* A chunk's area in the materialised forward: with dropout the dropped weights [t, t] and a
 * row of the mask [t], the rotary rows, the BF16 products'. */
static size_t core_fwd_floats(const strop__sdpa_dims *dm) {
  return (drops(dm) ? (size_t)(dm->t * dm->t + dm->t) : 0) + core_rope_floats(dm, 2) +
         bf16_floats(dm, dm->t, dm->t);
}

/* Scores, softmax, dropout and P V for samples [b0, b1). */
STROP__CLONES static void core_fwd_samples(void *ctx, int64_t b0, int64_t b1, int chunk) {
  const core_job *j = ctx;
  const strop__sdpa_dims *dm = j->dm;
  const int64_t t = dm->t, h = dm->heads, hd = dm->head_dim, group = h / dm->kv_heads;
  const int64_t ldo = h * hd, rot = dm->rot;
  const int drop = drops(dm);
  const uint64_t thr = drop_threshold(dm->dropout);
  const float ks = drop_keep_scale(dm->dropout);
  float *Pd = j->scratch + (size_t)chunk * core_fwd_floats(dm); /* dropout: P' [t, t] */
  float *mrow = Pd + t * t;                                     /* and a row of its mask */
  float *Qr = Pd + (drop ? t * t + t : 0), *Kr = Qr + t * hd;
  float *W = bf16_area(Qr + core_rope_floats(dm, 2));
  for (int64_t b = b0; b < b1; b++) {
    const float *pad = dm->pad_mask ? dm->pad_mask + b * t : NULL;
    for (int64_t hh = 0; hh < h; hh++) {
      const int64_t kvh = hh / group;
      const float *qh = j->q + b * t * dm->ldq + hh * hd;
      const float *kh = j->k + b * t * dm->ldk + kvh * hd;
      const float *vh = j->v + b * t * dm->ldv + kvh * hd;
      int64_t ldq = dm->ldq, ldk = dm->ldk;
      if (rot) { /* the head's rows rotated as they are loaded; k once per kv head */
        strop__rope_rows(qh, ldq, Qr, hd, t, hd, rot, dm->rope_cos, dm->rope_sin, 0, 0);
        if (hh % group == 0)
          strop__rope_rows(kh, ldk, Kr, hd, t, hd, rot, dm->rope_cos, dm->rope_sin, 0, 0);
        qh = Qr, kh = Kr, ldq = ldk = hd;
      }
      float *P = j->p + (b * h + hh) * t * t;
      mm(j, W, 0, 1, t, t, hd, dm->scale, qh, ldq, kh, ldk, 0.0f, P, t);
      for (int64_t i = 0; i < t; i++) softmax_row(P + i * t, t, i, dm->causal, pad);
      const float *Pu = P;
      if (drop) {
        for (int64_t i = 0; i < t; i++) {
          drop_row_scales(drop_row_key(dm, dm->drop_row0 + b, hh, i), 0, t, thr, ks, mrow);
          for (int64_t jj = 0; jj < t; jj++) Pd[i * t + jj] = dropped(P[i * t + jj], mrow[jj]);
        }
        Pu = Pd;
      }
      mm(j, W, 0, 0, t, hd, t, 1.0f, Pu, t, vh, dm->ldv, 0.0f, j->ctx + b * t * ldo + hh * hd,
         ldo);
    }
  }
}

/* A chunk's area in the materialised backward: P' and dP [t, t], with dropout a row of its
 * mask [t], the rotary rows, the BF16 products' */
static size_t core_bwd_floats(const strop__sdpa_dims *dm) {
  return (size_t)(2 * dm->t * dm->t) + (drops(dm) ? (size_t)dm->t : 0) + core_rope_floats(dm, 4) +
         bf16_floats(dm, dm->t, dm->t);
}

/* Through P V, dropout, softmax and the scores for samples [b0, b1), with this chunk's P', dP. */
STROP__CLONES static void core_bwd_samples(void *ctx, int64_t b0, int64_t b1, int chunk) {
  const core_job *j = ctx;
  const strop__sdpa_dims *dm = j->dm;
  const int64_t t = dm->t, h = dm->heads, hd = dm->head_dim, group = h / dm->kv_heads;
  const int64_t ldo = h * hd, rot = dm->rot;
  const int drop = drops(dm);
  const uint64_t thr = drop_threshold(dm->dropout);
  const float ks = drop_keep_scale(dm->dropout);
  float *Pd = j->scratch + (size_t)chunk * core_bwd_floats(dm), *dP = Pd + t * t;
  float *mrow = dP + t * t; /* dropout: a row of the mask */
  /* with rotary embeddings: the head's rotated q and k, the gradient of its rotated q, and of
   * its kv head's rotated k summed over the group's heads, turned back at the group's end */
  float *Qr = mrow + (drop ? t : 0), *Kr = Qr + t * hd, *dQr = Kr + t * hd, *dKr = dQr + t * hd;
  float *W = bf16_area(Qr + core_rope_floats(dm, 4)); /* dm->bf16's products */
  for (int64_t b = b0; b < b1; b++) {
    for (int64_t hh = 0; hh < h; hh++) {
      const int64_t kvh = hh / group;
      /* the first head of a group writes its kv head's gradient unless asked to add */
      const float beta_kv = (j->accumulate || hh % group) ? 1.0f : 0.0f;
      const float beta_q = j->accumulate ? 1.0f : 0.0f;
      const int64_t qo = b * t * dm->ldq + hh * hd, ko = b * t * dm->ldk + kvh * hd,
                    vo = b * t * dm->ldv + kvh * hd;
      const float *dc = j->dctx + b * t * ldo + hh * hd;
      const float *qh = j->q + qo, *kh = j->k + ko;
      int64_t ldq = dm->ldq, ldk = dm->ldk;
      if (rot) {
        strop__rope_rows(qh, ldq, Qr, hd, t, hd, rot, dm->rope_cos, dm->rope_sin, 0, 0);
        if (hh % group == 0)
          strop__rope_rows(kh, ldk, Kr, hd, t, hd, rot, dm->rope_cos, dm->rope_sin, 0, 0);
        qh = Qr, kh = Kr, ldq = ldk = hd;
      }
      const float *P = j->p + (b * h + hh) * t * t;
      /* dP' = dctx V^T; per row through dropout (its mask computed once: P' for dV too), then
       * softmax: dS = P * (dP - sum_k P dP); dV = P'^T dctx */
      mm(j, W, 0, 1, t, t, hd, 1.0f, dc, ldo, j->v + vo, dm->ldv, 0.0f, dP, t);
      for (int64_t i = 0; i < t; i++) {
        const float *pr = P + i * t;
        float *dr = dP + i * t;
        if (drop) {
          drop_row_scales(drop_row_key(dm, dm->drop_row0 + b, hh, i), 0, t, thr, ks, mrow);
          for (int64_t jj = 0; jj < t; jj++) {
            Pd[i * t + jj] = dropped(pr[jj], mrow[jj]);
            dr[jj] = dropped(dr[jj], mrow[jj]);
          }
        }
        const float dot = dot_lanes(pr, dr, t);
        for (int64_t jj = 0; jj < t; jj++) dr[jj] = pr[jj] * (dr[jj] - dot);
      }
      if (j->dv)
        mm(j, W, 1, 0, t, hd, t, 1.0f, drop ? Pd : P, t, dc, ldo, beta_kv, j->dv + vo, dm->ldv);
      /* S = scale Q K^T: dQ = scale dS K, dK = scale dS^T Q (of the rotated q and k, then
       * rotated back: dq = R^T dQ) */
      if (j->dq && !rot)
        mm(j, W, 0, 0, t, hd, t, dm->scale, dP, t, kh, ldk, beta_q, j->dq + qo, dm->ldq);
      if (j->dk && !rot)
        mm(j, W, 1, 0, t, hd, t, dm->scale, dP, t, qh, ldq, beta_kv, j->dk + ko, dm->ldk);
      if (j->dq && rot) {
        mm(j, W, 0, 0, t, hd, t, dm->scale, dP, t, kh, ldk, 0.0f, dQr, hd);
        strop__rope_rows(dQr, hd, j->dq + qo, dm->ldq, t, hd, rot, dm->rope_cos, dm->rope_sin, 1,
                         j->accumulate);
      }
      if (j->dk && rot) {
        mm(j, W, 1, 0, t, hd, t, dm->scale, dP, t, qh, ldq, hh % group ? 1.0f : 0.0f, dKr, hd);
        if (hh % group == group - 1)
          strop__rope_rows(dKr, hd, j->dk + ko, dm->ldk, t, hd, rot, dm->rope_cos, dm->rope_sin,
                           1, j->accumulate);
      }
    }
  }
}

/* ---- tiled (flash-attention style): blocks of BQ queries x BK keys, the online softmax ---- */

int strop__sdpa_block_q = 64, strop__sdpa_block_k = 128;

static int64_t blk_q(const strop__sdpa_dims *dm) {
  const int64_t b = strop__sdpa_block_q > 0 ? strop__sdpa_block_q : 64;
  return dm->t < b ? (dm->t > 0 ? dm->t : 1) : b;
}
static int64_t blk_k(const strop__sdpa_dims *dm) {
  const int64_t b = strop__sdpa_block_k > 0 ? strop__sdpa_block_k : 128;
  return dm->t < b ? (dm->t > 0 ? dm->t : 1) : b;
}

/* per chunk: forward S [BQ, BK], running max and sum [BQ] each; backward P and dS [BQ, BK],
 * D [BQ]; with dropout a row of the mask [BK], in the backward also the dropped weights
 * [BQ, BK]; with rotary embeddings the block of queries and the block of keys rotated as they
 * are loaded [BQ + BK, head_dim], in the backward also their gradients before they are turned
 * back (the queries' summed over the key blocks, the keys' one block at a time) */
static size_t tiled_rope_floats(const strop__sdpa_dims *dm) {
  return dm->rot ? (size_t)((blk_q(dm) + blk_k(dm)) * dm->head_dim) : 0;
}
static size_t tiled_fwd_floats(const strop__sdpa_dims *dm) {
  return (size_t)(blk_q(dm) * blk_k(dm) + 2 * blk_q(dm)) + (drops(dm) ? (size_t)blk_k(dm) : 0) +
         tiled_rope_floats(dm) + bf16_floats(dm, blk_q(dm), blk_k(dm));
}
static size_t tiled_bwd_floats(const strop__sdpa_dims *dm) {
  return (size_t)(2 * blk_q(dm) * blk_k(dm) + blk_q(dm)) +
         (drops(dm) ? (size_t)(blk_q(dm) * blk_k(dm) + blk_k(dm)) : 0) +
         2 * tiled_rope_floats(dm) + bf16_floats(dm, blk_q(dm), blk_k(dm));
}

/* How many of the keys j0 .. j0 + bk - 1 a causal mask leaves query i (<= 0: none): the
 * visible ones are a prefix of the block, so the loops over them vectorise. */
static inline int64_t visible_len(int causal, int64_t i, int64_t j0, int64_t bk) {
  return !causal || i - j0 + 1 >= bk ? bk : i - j0 + 1;
}

/* The tiled passes split (sample, kv head) pairs, item = sample * kv_heads + kv head, each the
 * group of query heads that share the kv head, in head order: a batch of one sample (a
 * TinyLlama step) still splits over the threads, and each head's sums — a kv head's gradient
 * summed over its group — are the ones of a split by samples: the same bits at any count. */
static void item_heads(const strop__sdpa_dims *dm, int64_t it, int64_t *b, int64_t *h0,
                       int64_t *h1) {
  const int64_t group = dm->heads / dm->kv_heads;
  *b = it / dm->kv_heads;
  *h0 = it % dm->kv_heads * group;
  *h1 = *h0 + group;
}

/* Items [i0, i1): per head and block of queries, the key blocks in order (a causal mask
 * stops at the block's last query), each row's max m and sum l of exp(s - m) carried along
 * and the output rows rescaled when m grows; at the end out /= l, and m and 1 / l are kept. */
STROP__CLONES static void tiled_fwd_items(void *ctx, int64_t i0_, int64_t i1_, int chunk) {
  const core_job *j = ctx;
  const strop__sdpa_dims *dm = j->dm;
  const int64_t t = dm->t, h = dm->heads, hd = dm->head_dim, group = h / dm->kv_heads;
  const int64_t ldo = h * hd, BQ = blk_q(dm), BK = blk_k(dm), rot = dm->rot, half = rot / 2;
  const int drop = drops(dm);
  const uint64_t thr = drop_threshold(dm->dropout);
  const float ks = drop_keep_scale(dm->dropout);
  float *S = j->scratch + (size_t)chunk * tiled_fwd_floats(dm), *mx = S + BQ * BK, *sm = mx + BQ;
  float *mrow = sm + BQ;                                  /* dropout: a row of the mask */
  float *Qr = mrow + (drop ? BK : 0), *Kr = Qr + BQ * hd; /* rotary: the blocks as loaded */
  float *W = bf16_area(Qr + tiled_rope_floats(dm));       /* dm->bf16's products */
  for (int64_t it = i0_; it < i1_; it++) {
    int64_t b, h0, h1;
    item_heads(dm, it, &b, &h0, &h1);
    const float *pad = dm->pad_mask ? dm->pad_mask + b * t : NULL;
    for (int64_t hh = h0; hh < h1; hh++) {
      const int64_t kvh = hh / group;
      const float *qh = j->q + b * t * dm->ldq + hh * hd;
      const float *kh = j->k + b * t * dm->ldk + kvh * hd;
      const float *vh = j->v + b * t * dm->ldv + kvh * hd;
      float *rmax = j->p + (b * h + hh) * t, *rinv = rmax + dm->n * h * t;
      for (int64_t i0 = 0; i0 < t; i0 += BQ) {
        const int64_t bq = t - i0 < BQ ? t - i0 : BQ;
        float *O = j->ctx + (b * t + i0) * ldo + hh * hd;
        const float *qb = qh + i0 * dm->ldq;
        int64_t ldqb = dm->ldq;
        if (rot) {
          strop__rope_rows(qb, ldqb, Qr, hd, bq, hd, rot, dm->rope_cos + i0 * half,
                           dm->rope_sin + i0 * half, 0, 0);
          qb = Qr, ldqb = hd;
        }
        for (int64_t r = 0; r < bq; r++) {
          mx[r] = -INFINITY;
          sm[r] = 0.0f;
          memset(O + r * ldo, 0, (size_t)hd * sizeof *O);
        }
        const int64_t jend = dm->causal ? i0 + bq : t;
        for (int64_t j0 = 0; j0 < jend; j0 += BK) {
          const int64_t bk = jend - j0 < BK ? jend - j0 : BK;
          const float *kb = kh + j0 * dm->ldk;
          int64_t ldkb = dm->ldk;
          if (rot) {
            strop__rope_rows(kb, ldkb, Kr, hd, bk, hd, rot, dm->rope_cos + j0 * half,
                             dm->rope_sin + j0 * half, 0, 0);
            kb = Kr, ldkb = hd;
          }
          mm(j, W, 0, 1, bq, bk, hd, dm->scale, qb, ldqb, kb, ldkb, 0.0f, S, bk);
          for (int64_t r = 0; r < bq; r++) {
            float *sr = S + r * bk;
            const int64_t lim = visible_len(dm->causal, i0 + r, j0, bk);
            const float *pd = pad ? pad + j0 : NULL;
            int nan;
            const float m = row_max(sr, lim, pd, mx[r], &nan);
            if (m == -INFINITY) { /* nothing visible yet: no weight, NaN scores poison */
              memset(sr, 0, (size_t)bk * sizeof *sr);
              if (nan) sm[r] = NAN;
              continue;
            }
            const float sum = row_exp(sr, lim, pd, m, 1.0f);
            for (int64_t c = lim > 0 ? lim : 0; c < bk; c++) sr[c] = 0.0f;
            if (drop) { /* the sum is of every weight; V is summed with the kept ones */
              drop_row_scales(drop_row_key(dm, dm->drop_row0 + b, hh, i0 + r), j0, bk, thr, ks,
                              mrow);
              for (int64_t c = 0; c < bk; c++) sr[c] = dropped(sr[c], mrow[c]);
            }
            if (m != mx[r]) { /* a larger max: what was summed shrinks by exp(old - new) */
              const float a = mx[r] == -INFINITY ? 0.0f : strop__vexpf(mx[r] - m);
              sm[r] *= a;
              float *orow = O + r * ldo;
              for (int64_t e = 0; e < hd; e++) orow[e] *= a;
              mx[r] = m;
            }
            sm[r] += sum;
          }
          mm(j, W, 0, 0, bq, hd, bk, 1.0f, S, bk, vh + j0 * dm->ldv, dm->ldv, 1.0f, O, ldo);
        }
        for (int64_t r = 0; r < bq; r++) {
          float *orow = O + r * ldo;
          if (sm[r] > 0.0f) {
            const float inv = 1.0f / sm[r];
            for (int64_t e = 0; e < hd; e++) orow[e] *= inv;
            rmax[i0 + r] = mx[r];
            rinv[i0 + r] = inv;
          } else { /* every key masked: zero weights (exp(s - inf) = 0 in the backward) */
            const float fill = isnan(sm[r]) ? NAN : 0.0f;
            for (int64_t e = 0; e < hd; e++) orow[e] = fill;
            rmax[i0 + r] = isnan(sm[r]) ? NAN : INFINITY;
            rinv[i0 + r] = 0.0f;
          }
        }
      }
    }
  }
}

/* Items [i0, i1) (as the forward's): per head, block of queries and block of keys, P = exp(s - max) / sum
 * again, as the forward normalised its output (max and 1 / sum kept per row: the weights
 * and the output the backward sees agree to the forward's rounding, where one logsumexp
 * would add its own); dV += P^T dctx, dP = dctx V^T, dS = P (dP - D) with D = sum P dP
 * (= rowsum(dctx * ctx), taken so, in double, when a row's keys span several blocks: dK
 * sums dS, whose rows cancel to zero, so D is best had from the very P and dP when they
 * are at hand), dQ += scale dS K, dK += scale dS^T Q. */
STROP__CLONES static void tiled_bwd_items(void *ctx, int64_t i0_, int64_t i1_, int chunk) {
  const core_job *j = ctx;
  const strop__sdpa_dims *dm = j->dm;
  const int64_t t = dm->t, h = dm->heads, hd = dm->head_dim, group = h / dm->kv_heads;
  const int64_t ldo = h * hd, BQ = blk_q(dm), BK = blk_k(dm), rot = dm->rot, half = rot / 2;
  const int drop = drops(dm);
  const uint64_t thr = drop_threshold(dm->dropout);
  const float ks = drop_keep_scale(dm->dropout);
  float *P = j->scratch + (size_t)chunk * tiled_bwd_floats(dm), *dS = P + BQ * BK,
        *D = dS + BQ * BK;
  float *Pd = D + BQ, *mrow = Pd + BQ * BK; /* dropout: the dropped weights, a row of the mask */
  /* rotary: the blocks of q and k as loaded, the gradient of the rotated query block (summed
   * over the key blocks, then turned back) and of a rotated key block (turned back at once) */
  float *Qr = drop ? mrow + BK : Pd, *Kr = Qr + BQ * hd, *dQr = Kr + BK * hd,
        *dKr = dQr + BQ * hd;
  float *W = bf16_area(Qr + 2 * tiled_rope_floats(dm)); /* dm->bf16's products */
  for (int64_t it = i0_; it < i1_; it++) {
    int64_t b, h0, h1;
    item_heads(dm, it, &b, &h0, &h1);
    const float *pad = dm->pad_mask ? dm->pad_mask + b * t : NULL;
    if (!j->accumulate) /* written, not added: clear the item's columns of the sample's rows */
      for (int64_t i = 0; i < t; i++) {
        if (j->dq)
          memset(j->dq + (b * t + i) * dm->ldq + h0 * hd, 0,
                 (size_t)(group * hd) * sizeof(float));
        if (j->dk)
          memset(j->dk + (b * t + i) * dm->ldk + h0 / group * hd, 0, (size_t)hd * sizeof(float));
        if (j->dv)
          memset(j->dv + (b * t + i) * dm->ldv + h0 / group * hd, 0, (size_t)hd * sizeof(float));
      }
    for (int64_t hh = h0; hh < h1; hh++) {
      const int64_t kvh = hh / group;
      const int64_t qo = b * t * dm->ldq + hh * hd, ko = b * t * dm->ldk + kvh * hd,
                    vo = b * t * dm->ldv + kvh * hd;
      float *dq = j->dq ? j->dq + qo : NULL, *dk = j->dk ? j->dk + ko : NULL,
            *dv = j->dv ? j->dv + vo : NULL;
      const float *rmax = j->p + (b * h + hh) * t, *rinv = rmax + dm->n * h * t;
      for (int64_t i0 = 0; i0 < t; i0 += BQ) {
        const int64_t bq = t - i0 < BQ ? t - i0 : BQ;
        const float *dc = j->dctx + (b * t + i0) * ldo + hh * hd;
        const float *oc = j->ctx + (b * t + i0) * ldo + hh * hd;
        const int64_t jend = dm->causal ? i0 + bq : t;
        const float *qb = j->q + qo + i0 * dm->ldq;
        int64_t ldqb = dm->ldq, lddq = dm->ldq;
        float *dqb = dq ? dq + i0 * dm->ldq : NULL;
        if (rot) {
          strop__rope_rows(qb, ldqb, Qr, hd, bq, hd, rot, dm->rope_cos + i0 * half,
                           dm->rope_sin + i0 * half, 0, 0);
          qb = Qr, ldqb = hd;
          if (dq) {
            memset(dQr, 0, (size_t)(bq * hd) * sizeof *dQr);
            dqb = dQr, lddq = hd;
          }
        }
        for (int64_t r = 0; r < bq && jend > BK; r++) {
          double s = 0.0;
          for (int64_t e = 0; e < hd; e++) s += (double)dc[r * ldo + e] * oc[r * ldo + e];
          D[r] = (float)s;
        }
        for (int64_t j0 = 0; j0 < jend; j0 += BK) {
          const int64_t bk = jend - j0 < BK ? jend - j0 : BK;
          const float *kb = j->k + ko + j0 * dm->ldk;
          int64_t ldkb = dm->ldk;
          if (rot) {
            strop__rope_rows(kb, ldkb, Kr, hd, bk, hd, rot, dm->rope_cos + j0 * half,
                             dm->rope_sin + j0 * half, 0, 0);
            kb = Kr, ldkb = hd;
          }
          mm(j, W, 0, 1, bq, bk, hd, dm->scale, qb, ldqb, kb, ldkb, 0.0f, P, bk);
          for (int64_t r = 0; r < bq; r++) {
            float *pr = P + r * bk;
            const float m = rmax[i0 + r], inv = rinv[i0 + r];
            const int64_t lim = visible_len(dm->causal, i0 + r, j0, bk);
            const float *pd = pad ? pad + j0 : NULL;
            (void)row_exp(pr, lim, pd, m, inv);
            for (int64_t c = lim > 0 ? lim : 0; c < bk; c++) pr[c] = 0.0f;
          }
          const int grads = dq || dk;
          if (grads) /* dP' = dctx V^T */
            mm(j, W, 0, 1, bq, bk, hd, 1.0f, dc, ldo, j->v + vo + j0 * dm->ldv, dm->ldv, 0.0f, dS,
               bk);
          if (drop) /* the mask computed once per row: P' for dV, and dP' through it: dP */
            for (int64_t r = 0; r < bq; r++) {
              drop_row_scales(drop_row_key(dm, dm->drop_row0 + b, hh, i0 + r), j0, bk, thr, ks,
                              mrow);
              for (int64_t c = 0; c < bk; c++) Pd[r * bk + c] = dropped(P[r * bk + c], mrow[c]);
              if (grads)
                for (int64_t c = 0; c < bk; c++)
                  dS[r * bk + c] = dropped(dS[r * bk + c], mrow[c]);
            }
          if (dv)
            mm(j, W, 1, 0, bk, hd, bq, 1.0f, drop ? Pd : P, bk, dc, ldo, 1.0f, dv + j0 * dm->ldv,
               dm->ldv);
          if (!grads) continue;
          if (jend <= BK) /* the row's keys in one block: D from it, as the weights have it */
            for (int64_t r = 0; r < bq; r++) D[r] = dot_lanes(P + r * bk, dS + r * bk, bk);
          for (int64_t r = 0; r < bq; r++) {
            const float *pr = P + r * bk;
            float *dr = dS + r * bk;
            for (int64_t c = 0; c < bk; c++) dr[c] = pr[c] * (dr[c] - D[r]);
          }
          if (dq) mm(j, W, 0, 0, bq, hd, bk, dm->scale, dS, bk, kb, ldkb, 1.0f, dqb, lddq);
          if (dk && !rot)
            mm(j, W, 1, 0, bk, hd, bq, dm->scale, dS, bk, qb, ldqb, 1.0f, dk + j0 * dm->ldk,
               dm->ldk);
          if (dk && rot) {
            mm(j, W, 1, 0, bk, hd, bq, dm->scale, dS, bk, qb, ldqb, 0.0f, dKr, hd);
            strop__rope_rows(dKr, hd, dk + j0 * dm->ldk, dm->ldk, bk, hd, rot,
                             dm->rope_cos + j0 * half, dm->rope_sin + j0 * half, 1, 1);
          }
        }
        if (dq && rot)
          strop__rope_rows(dQr, hd, dq + i0 * dm->ldq, dm->ldq, bq, hd, rot,
                           dm->rope_cos + i0 * half, dm->rope_sin + i0 * half, 1, 1);
      }
    }
  }
}

int strop__sdpa_split_heads = 1;

int strop__sdpa_pick_tiled(int64_t t, int64_t head_dim, int causal, int mode) {
  if (mode == STROP__ATTN_TILED || mode == STROP__ATTN_MATERIALIZED)
    return mode == STROP__ATTN_TILED;
  const int64_t bq = strop__sdpa_block_q > 0 ? strop__sdpa_block_q : 64;
  return t > 2 * head_dim || (causal && t > bq);
}

size_t strop__sdpa_saved_floats(const strop__sdpa_dims *dm) {
  const size_t rows = (size_t)(dm->n * dm->heads * dm->t);
  return dm->tiled ? 2 * rows : rows * (size_t)dm->t;
}

size_t strop__sdpa_forward_scratch(const strop__sdpa_dims *dm) {
  return (size_t)sdpa_chunks(dm) * (dm->tiled ? tiled_fwd_floats(dm) : core_fwd_floats(dm));
}

size_t strop__sdpa_backward_scratch(const strop__sdpa_dims *dm) {
  return (size_t)sdpa_chunks(dm) * (dm->tiled ? tiled_bwd_floats(dm) : core_bwd_floats(dm));
}

void strop__sdpa_forward(const strop__sdpa_dims *dm, const float *q, const float *k,
                         const float *v, float *p, float *scratch, float *ctx) {
  core_job j = {.dm = dm,
                .q = q,
                .k = k,
                .v = v,
                .p = p,
                .scratch = scratch,
                .ctx = ctx,
                .dot = dm->bf16 && strop__bf16_dot_enabled()};
  if (dm->tiled) strop__par_run(sdpa_chunks(dm), dm->n * dm->kv_heads, tiled_fwd_items, &j);
  else strop__par_run(sdpa_chunks(dm), dm->n, core_fwd_samples, &j);
}

void strop__sdpa_backward(const strop__sdpa_dims *dm, const float *q, const float *k,
                          const float *v, const float *p, const float *ctx, const float *dctx,
                          float *scratch, float *dq, float *dk, float *dv, int accumulate) {
  core_job j = {.dm = dm,
                .q = q,
                .k = k,
                .v = v,
                .p = (float *)p,
                .scratch = scratch,
                .dctx = dctx,
                .ctx = (float *)ctx,
                .dq = dq,
                .dk = dk,
                .dv = dv,
                .accumulate = accumulate,
                .dot = dm->bf16 && strop__bf16_dot_enabled()};
  if (dm->tiled) strop__par_run(sdpa_chunks(dm), dm->n * dm->kv_heads, tiled_bwd_items, &j);
  else strop__par_run(sdpa_chunks(dm), dm->n, core_bwd_samples, &j);
}

/* ---- incremental decoding: new queries against cached keys and values ---- */

typedef struct cached_job {
  const strop__sdpa_dims *dm;
  int64_t past, cap;
  const float *q, *k, *v;
  float *scratch, *ctx;
} cached_job;

STROP__CLONES static void cached_samples(void *ctx, int64_t b0, int64_t b1, int chunk) {
  const cached_job *j = ctx;
  const strop__sdpa_dims *dm = j->dm;
  const int64_t t = dm->t, h = dm->heads, hd = dm->head_dim, group = h / dm->kv_heads;
  const int64_t len = j->past + t, ldo = h * hd;
  float *S = j->scratch + (int64_t)chunk * (t * len + (dm->rot ? t * hd : 0));
  float *Qr = S + t * len; /* rotary: the head's queries as loaded */
  for (int64_t b = b0; b < b1; b++)
    for (int64_t hh = 0; hh < h; hh++) {
      const int64_t kvh = hh / group;
      const float *qh = j->q + b * t * dm->ldq + hh * hd;
      const float *kh = j->k + b * j->cap * dm->ldk + kvh * hd;
      const float *vh = j->v + b * j->cap * dm->ldv + kvh * hd;
      int64_t ldq = dm->ldq;
      if (dm->rot) {
        strop__rope_rows(qh, ldq, Qr, hd, t, hd, dm->rot, dm->rope_cos, dm->rope_sin, 0, 0);
        qh = Qr, ldq = hd;
      }
      strop__sgemm(0, 1, t, len, hd, dm->scale, qh, ldq, kh, dm->ldk, 0.0f, S, len);
      /* query i sits at position past + i: causal over the whole cached sequence */
      for (int64_t i = 0; i < t; i++)
        softmax_row(S + i * len, len, dm->causal ? j->past + i : len - 1, 1, NULL);
      strop__sgemm(0, 0, t, hd, len, 1.0f, S, len, vh, dm->ldv, 0.0f,
                   j->ctx + b * t * ldo + hh * hd, ldo);
    }
}

size_t strop__sdpa_cached_scratch(const strop__sdpa_dims *dm, int64_t past) {
  return (size_t)(sdpa_chunks(dm) * dm->t * (past + dm->t + (dm->rot ? dm->head_dim : 0)));
}

void strop__sdpa_cached(const strop__sdpa_dims *dm, int64_t past, int64_t cap, const float *q,
                        const float *k, const float *v, float *scratch, float *ctx) {
  cached_job j = {
      .dm = dm, .past = past, .cap = cap, .q = q, .k = k, .v = v, .scratch = scratch, .ctx = ctx};
  strop__par_run(sdpa_chunks(dm), dm->n, cached_samples, &j);
}

/* ---- multi-head self-attention with its projections ---- */

static void core_dims(const strop__mha_dims *dm, strop__sdpa_dims *cd) {
  const int64_t hd = dm->d / dm->heads;
  *cd = (strop__sdpa_dims){.n = dm->n,
                           .t = dm->t,
                           .heads = dm->heads,
                           .kv_heads = dm->heads,
                           .head_dim = hd,
                           .ldq = dm->d,
                           .ldk = dm->d,
                           .ldv = dm->d,
                           .causal = dm->causal,
                           .pad_mask = dm->pad_mask,
                           .dropout = dm->dropout,
                           .drop_seed = dm->drop_seed,
                           .drop_row0 = dm->drop_row0,
                           .scale = (float)(1.0 / sqrt((double)hd)),
                           .chunks = dm->chunks,
                           .tiled = dm->tiled,
                           .bf16 = dm->bf16};
}

void strop__attention_forward(const strop__mha_dims *dm, const float *x,
                              const strop__mha_weights *w, const strop__mha_cache *c,
                              float *scratch, float *y) {
  const int64_t rows = dm->n * dm->t, d = dm->d;
  project(x, w->wq, w->bq, rows, d, c->q);
  project(x, w->wk, w->bk, rows, d, c->k);
  project(x, w->wv, w->bv, rows, d, c->v);
  strop__sdpa_dims cd;
  core_dims(dm, &cd);
  strop__sdpa_forward(&cd, c->q, c->k, c->v, c->p, scratch, c->ctx);
  project(c->ctx, w->wo, w->bo, rows, d, y);
}

void strop__attention_backward(const strop__mha_dims *dm, const float *x,
                               const strop__mha_weights *w, const strop__mha_cache *c,
                               const float *dy, float *scratch, float *dx,
                               const strop__mha_grads *g) {
  const int64_t rows = dm->n * dm->t, d = dm->d;
  float *dctx = scratch, *dq = dctx + rows * d, *dk = dq + rows * d, *dv = dk + rows * d;
  float *Pd = dv + rows * d; /* per-chunk areas from here */

  project_backward(c->ctx, w->wo, dy, rows, d, NULL, g->wo, g->bo);
  strop__sgemm(0, 0, rows, d, d, 1.0f, dy, d, w->wo, d, 0.0f, dctx, d);
  strop__sdpa_dims cd;
  core_dims(dm, &cd);
  strop__sdpa_backward(&cd, c->q, c->k, c->v, c->p, c->ctx, dctx, Pd, dq, dk, dv, 0);
  project_backward(x, w->wq, dq, rows, d, dx, g->wq, g->bq);
  /* The key bias adds q_i . b_k to every score of row i: softmax ignores that shift, so its
   * gradient is exactly zero (PyTorch returns rounding noise of ~1e-8); skip the sum. */
  project_backward(x, w->wk, dk, rows, d, dx, g->wk, NULL);
  project_backward(x, w->wv, dv, rows, d, dx, g->wv, g->bv);
}

/* ---- rotary position embeddings ---- */

void strop__rope_tables(int64_t t, int64_t rot_dim, double theta, double factor, float *cos_t,
                        float *sin_t) {
  strop__rope_tables_from(0, t, rot_dim, theta, factor, cos_t, sin_t);
}

void strop__rope_tables_from(int64_t p0, int64_t t, int64_t rot_dim, double theta, double factor,
                             float *cos_t, float *sin_t) {
  const int64_t half = rot_dim / 2;
  for (int64_t i = 0; i < half; i++) {
    /* Llama's inv_freq = 1 / theta^(2i / dim), linear scaling divides the position */
    const double inv = 1.0 / pow(theta, (double)(2 * i) / (double)rot_dim);
    for (int64_t pos = 0; pos < t; pos++) {
      const double a = ((double)(p0 + pos) / factor) * inv;
      cos_t[pos * half + i] = (float)cos(a);
      sin_t[pos * half + i] = (float)sin(a);
    }
  }
}

void strop__rope_apply(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t n, int64_t t,
                       int64_t heads, int64_t head_dim, int64_t rot, const float *cos_t,
                       const float *sin_t, int inverse) {
  const int64_t half = rot / 2;
  for (int64_t b = 0; b < n; b++)
    for (int64_t pos = 0; pos < t; pos++) {
      const float *xr = x + (b * t + pos) * ldx;
      float *yr = y + (b * t + pos) * ldy;
      for (int64_t h = 0; h < heads; h++)
        strop__rope_vec(xr + h * head_dim, yr + h * head_dim, head_dim, rot, cos_t + pos * half,
                        sin_t + pos * half, inverse, 1);
    }
}
