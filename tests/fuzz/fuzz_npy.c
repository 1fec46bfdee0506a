/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the NPY parser (strop__npy_parse) on arbitrary bytes, then the conversion
 * of the accepted array to floats (C or Fortran order) into a buffer of exactly its size; also
 * the declared length a gzip reader stops at, from prefixes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* the length a gzip'd file's header declares, from every cut of the bytes */
  for (size_t cut = 0; cut <= size && cut < 4096; cut += 1 + cut / 8)
    (void)strop__npy_declared_len(data, cut);
  strop__npy a;
  if (strop__npy_parse(data, size, "fuzz.npy", &a) != STROP_OK) return 0;
  float *out = malloc((a.count ? a.count : 1) * sizeof *out);
  if (!out) return 0;
  strop__npy_to_float(&a, out);
  free(out);
  return 0;
}
