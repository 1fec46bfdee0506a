/* strop fuzz target — the IDX parser (strop__idx_parse) on arbitrary bytes, then a read of
 * every element it accepted, so a wrong bounds check shows up under AddressSanitizer. */
#include <stddef.h>
#include <stdint.h>

#include "data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  strop__idx a;
  if (strop__idx_parse(data, size, "fuzz.idx", &a) != STROP_OK) return 0;
  volatile double sum = 0;
  for (size_t i = 0; i < a.count; i++) sum += strop__idx_get(&a, i);
  return 0;
}
