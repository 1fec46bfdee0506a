/* SPDX-License-Identifier: MIT */
/* strop tests — prints streams of the public generator for tests/abi/pcg32_ref.py to check
 * against its own PCG32. Lines: KIND SEED VALUES...; floats in C99 hex (%a), exact. */
#include <inttypes.h>
#include <stdio.h>

#include "strop/strop.h"

static int dump_u32(uint64_t seed, int n) {
  strop_rng *g = NULL;
  if (strop_rng_create(seed, &g) != STROP_OK) return 1;
  printf("u32 0x%016" PRIx64, seed);
  for (int i = 0; i < n; i++) printf(" 0x%08" PRIx32, strop_rng_next_u32(g));
  printf("\n");
  strop_rng_free(g);
  return 0;
}

int main(void) {
  const uint64_t seeds[] = {42, 0, 1, UINT64_MAX, UINT64_C(0x853C49E6748FEA9B)};
  int rc = 0;
  for (int i = 0; i < 5; i++) rc |= dump_u32(seeds[i], i == 0 ? 16 : 4);

  float f[12];
  int64_t p[20];
  strop_rng *g = NULL;
  if (strop_rng_create(42, &g) != STROP_OK || strop_rng_uniform(g, 0.0f, 1.0f, f, 12) != STROP_OK)
    return 1;
  printf("uniform 42");
  for (int i = 0; i < 12; i++) printf(" %a", (double)f[i]);
  printf("\n");
  strop_rng_free(g);

  if (strop_rng_create(42, &g) != STROP_OK || strop_rng_normal(g, 0.0f, 1.0f, f, 12) != STROP_OK)
    return 1;
  printf("normal 42");
  for (int i = 0; i < 12; i++) printf(" %a", (double)f[i]);
  printf("\n");
  strop_rng_free(g);

  if (strop_rng_create(42, &g) != STROP_OK || strop_rng_permutation(g, 20, p) != STROP_OK)
    return 1;
  printf("perm 42");
  for (int i = 0; i < 20; i++) printf(" %" PRId64, p[i]);
  printf("\n");
  strop_rng_free(g);
  return rc;
}
