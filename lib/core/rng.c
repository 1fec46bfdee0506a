/* SPDX-License-Identifier: MIT */
/* strop — PCG32 random numbers. Integer arithmetic only, except the normal transform,
 * so a seed gives the same stream on every platform. */
#include <math.h>

#include "core.h"

struct strop_rng {
  strop__rng r;
};

void strop__rng_seed(strop__rng *r, uint64_t seed, uint64_t stream) {
  r->state = 0u;
  r->inc = (stream << 1u) | 1u;
  (void)strop__rng_u32(r);
  r->state += seed;
  (void)strop__rng_u32(r);
}

uint32_t strop__rng_u32(strop__rng *r) {
  uint64_t old = r->state;
  r->state = old * 6364136223846793005ULL + r->inc;
  uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
  uint32_t rot = (uint32_t)(old >> 59u);
  return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

/* The LCG's jump ahead (Brown, "Random number generation with arbitrary strides", 1994):
 * delta steps compose into one multiply-add, built from the step's square powers. */
void strop__rng_advance(strop__rng *r, uint64_t delta) {
  uint64_t mul = 6364136223846793005ULL, add = r->inc, acc_mul = 1u, acc_add = 0u;
  while (delta > 0) {
    if (delta & 1u) {
      acc_mul *= mul;
      acc_add = acc_add * mul + add;
    }
    add = (mul + 1u) * add;
    mul *= mul;
    delta >>= 1u;
  }
  r->state = acc_mul * r->state + acc_add;
}

float strop__rng_uniform(strop__rng *r) {
  return (float)(strop__rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* A double in (0, 1] from 53 random bits. */
static double unit_open0(strop__rng *r) {
  uint64_t hi = strop__rng_u32(r) >> 5, lo = strop__rng_u32(r) >> 6;
  return ((double)(hi * 67108864u + lo) + 1.0) * (1.0 / 9007199254740992.0);
}

float strop__rng_normal(strop__rng *r) {
  double u1 = unit_open0(r);
  double u2 = unit_open0(r);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t strop__rng_below(strop__rng *r, uint64_t n) {
  if (n <= 1) return 0;
  if (n <= UINT32_MAX) {
    /* Lemire's multiply-and-reject: unbiased, usually one draw */
    uint64_t m = (uint64_t)strop__rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < (uint32_t)n) {
      uint32_t t = (uint32_t)(-(uint32_t)n) % (uint32_t)n;
      while (low < t) {
        m = (uint64_t)strop__rng_u32(r) * n;
        low = (uint32_t)m;
      }
    }
    return m >> 32;
  }
  uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
  do {
    x = ((uint64_t)strop__rng_u32(r) << 32) | strop__rng_u32(r);
  } while (x >= lim);
  return x % n;
}

void strop__rng_permutation(strop__rng *r, int64_t n, int64_t *out) {
  for (int64_t i = 0; i < n; i++) out[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)strop__rng_below(r, (uint64_t)i + 1);
    int64_t t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
}

/* ---- public handle ---- */
strop_status strop_rng_create(uint64_t seed, strop_rng **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "strop_rng_create: out is NULL");
  *out = NULL;
  strop_rng *g = strop__malloc(sizeof *g);
  if (!g) return STROP__NOMEM("strop_rng_create");
  strop__rng_seed(&g->r, seed, 0);
  *out = g;
  return STROP_OK;
}

void strop_rng_free(strop_rng *rng) { strop__free(rng); }

uint32_t strop_rng_next_u32(strop_rng *rng) { return rng ? strop__rng_u32(&rng->r) : 0u; }

strop_status strop_rng_uniform(strop_rng *rng, float lo, float hi, float *out, size_t n) {
  if (!rng || (!out && n))
    return strop__err(STROP_E_INVALID_ARG, "strop_rng_uniform: %s is NULL", rng ? "out" : "rng");
  if (!(hi >= lo))
    return strop__err(STROP_E_INVALID_ARG, "strop_rng_uniform: hi (%g) must be >= lo (%g)",
                      (double)hi, (double)lo);
  if (!isfinite(hi - lo)) /* an infinite bound (or span) filled infinities and NaN */
    return strop__err(STROP_E_INVALID_ARG,
                      "strop_rng_uniform: lo (%g) and hi (%g) must be finite, hi - lo too",
                      (double)lo, (double)hi);
  for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * strop__rng_uniform(&rng->r);
  return STROP_OK;
}

strop_status strop_rng_normal(strop_rng *rng, float mean, float std, float *out, size_t n) {
  if (!rng || (!out && n))
    return strop__err(STROP_E_INVALID_ARG, "strop_rng_normal: %s is NULL", rng ? "out" : "rng");
  if (!(std >= 0.0f) || !isfinite(std) || !isfinite(mean))
    return strop__err(STROP_E_INVALID_ARG,
                      "strop_rng_normal: mean (%g) must be finite and std (%g) finite and >= 0",
                      (double)mean, (double)std);
  for (size_t i = 0; i < n; i++) out[i] = mean + std * strop__rng_normal(&rng->r);
  return STROP_OK;
}

strop_status strop_rng_permutation(strop_rng *rng, int64_t n, int64_t *out) {
  if (!rng || (!out && n > 0))
    return strop__err(STROP_E_INVALID_ARG, "strop_rng_permutation: %s is NULL",
                      rng ? "out" : "rng");
  if (n < 0)
    return strop__err(STROP_E_INVALID_ARG, "strop_rng_permutation: n must be >= 0, got %lld",
                      (long long)n);
  strop__rng_permutation(&rng->r, n, out);
  return STROP_OK;
}
