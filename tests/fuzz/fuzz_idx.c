/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the IDX parser (strop__idx_parse) on arbitrary bytes, then a read of
 * every element it accepted, so a wrong bounds check shows up under AddressSanitizer; also the
 * declared length a gzip reader stops at, from prefixes. */
#include <stddef.h>
#include <stdint.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* the length a gzip'd file's header declares, from every cut of the bytes */
  for (size_t cut = 0; cut <= size && cut < 4096; cut += 1 + cut / 8)
    (void)strop__idx_declared_len(data, cut);
  strop__idx a;
  if (strop__idx_parse(data, size, "fuzz.idx", &a) != STROP_OK) return 0;
  volatile double sum = 0;
  for (size_t i = 0; i < a.count; i++) sum += strop__idx_get(&a, i);
  return 0;
}
