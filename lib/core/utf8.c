/* SPDX-License-Identifier: MIT */
/* strop — UTF-8 validation, shared by the JSON reader, the safetensors writer and the model's
 * metadata (whose values go into safetensors headers, which must be UTF-8). */
#include "core.h"

/* Length of the UTF-8 sequence at s (n bytes available), or 0 if invalid. */
size_t strop__utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t k;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    k = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    k = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    k = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < k) return 0;
  for (size_t t = 1; t < k; t++) {
    if ((s[t] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[t] & 0x3F);
  }
  if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return k;
}

int strop__utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t k = strop__utf8_seq(u + i, n - i);
    if (!k) return 0;
    i += k;
  }
  return 1;
}
