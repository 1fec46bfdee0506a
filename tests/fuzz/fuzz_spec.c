/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the YAML spec loader from a string: hostile YAML must fail cleanly, and
 * any spec that loads must save and load again to the same spec text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strop/strop.h"

/* Sizes above 4 digits would let the fuzzer allocate gigabytes of parameters, which is the
 * layers' business (they accept large models), not a parser bug. */
static int has_big_number(const uint8_t *d, size_t n) {
  int run = 0;
  for (size_t i = 0; i < n; i++) {
    run = (d[i] >= '0' && d[i] <= '9') ? run + 1 : 0;
    if (run > 4) return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1u << 20) || has_big_number(data, size)) return 0;
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  strop_model *m = NULL;
  if (strop_model_load_spec_string(text, &m) == STROP_OK) {
    int64_t n = strop_model_spec_string(m, NULL, 0);
    if (n < 0) __builtin_trap();
    char *s1 = malloc((size_t)n + 1);
    if (s1 && strop_model_spec_string(m, s1, (size_t)n + 1) == n) {
      strop_model *b = NULL;
      if (strop_model_load_spec_string(s1, &b) != STROP_OK) __builtin_trap(); /* round trip */
      char *s2 = malloc((size_t)n + 1);
      if (s2 && (strop_model_spec_string(b, s2, (size_t)n + 1) != n || strcmp(s1, s2) != 0))
        __builtin_trap();
      free(s2);
      strop_model_free(b);
    }
    free(s1);
    strop_model_free(m);
  }
  free(text);
  return 0;
}
