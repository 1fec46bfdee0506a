/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the PNG wrapper (libpng behind strop__image_probe and
 * strop__image_decode) on arbitrary bytes: the header probe, then a decode to 1, 3 or 4
 * channels under a pixel limit small enough for the fuzzer's memory. Checksums are not
 * checked here (strop__image_fuzzing), so mutations reach the decoding paths. */
#include <stddef.h>
#include <stdint.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  strop__image_fuzzing = 1;
  strop__image_info info;
  /* only PNG input reaches libpng; other bytes stop at the magic check */
  if (strop__image_probe("fuzz", data, size, "fuzz.png", (int64_t)1 << 20, &info) != STROP_OK)
    return 0;
  static const int channels[3] = {1, 3, 4};
  uint8_t *px = NULL;
  if (strop__image_decode("fuzz", data, size, "fuzz.png", channels[size % 3], (int64_t)1 << 20,
                          &px, &info) == STROP_OK)
    strop__free(px);
  return 0;
}
