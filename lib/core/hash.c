/* SPDX-License-Identifier: MIT */
/* Non-cryptographic hashes of bytes for keys and checksums (the tokenisation cache's key and
 * its file checksum, a tokenizer's fingerprint): detect change and corruption, not attacks. */
#include "core.h"

#include <string.h>

uint64_t strop__hash64(const void *p, size_t n, uint64_t seed) {
  const unsigned char *s = p;
  uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ull);
  while (n >= 8) {
    uint64_t k;
    memcpy(&k, s, 8);
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 31;
    h = (h ^ k) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t k = 0;
  if (n) memcpy(&k, s, n);
  h ^= k * 0xbf58476d1ce4e5b9ull + n;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

void strop__hash128_mix(uint64_t k[2], const void *p, size_t n) {
  k[0] = strop__hash64(p, n, k[0]);
  k[1] = strop__hash64(p, n, k[1] ^ 0x5851F42D4C957F2Dull);
}
