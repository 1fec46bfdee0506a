/* SPDX-License-Identifier: MIT */
/* strop — the older versions of exported functions whose behaviour a newer release changed,
 * kept for programs linked against the older release (docs/abi.md, "Older versions of a
 * function"). Built into the shared library only: the static library has no version nodes.
 *
 * strop_run_options and strop_tune_options grew fields in 0.2 (resume and dist; time_budget
 * and dist). A program built against 0.1 holds the shorter struct and calls
 * strop_run_options_init@STROP_0.1: the 0.2 function would write its defaults past the end of
 * that struct. These versions fill only the 0.1 fields and give the 0.1 size, which the
 * library's readers take as "the newer fields keep their defaults". */
#include <stddef.h>
#include <string.h>

#include "strop/recipe.h"

#define COMPAT __attribute__((visibility("default"), used))

COMPAT void strop__run_options_init_0_1(strop_run_options *o);
COMPAT void strop__tune_options_init_0_1(strop_tune_options *o);
__asm__(".symver strop__run_options_init_0_1,strop_run_options_init@STROP_0.1");
__asm__(".symver strop__tune_options_init_0_1,strop_tune_options_init@STROP_0.1");

void strop__run_options_init_0_1(strop_run_options *o) {
  if (!o) return;
  strop_run_options d;
  strop_run_options_init(&d);
  d.size = offsetof(strop_run_options, resume);
  memcpy(o, &d, d.size);
}

void strop__tune_options_init_0_1(strop_tune_options *o) {
  if (!o) return;
  strop_tune_options d;
  strop_tune_options_init(&d);
  d.size = offsetof(strop_tune_options, time_budget);
  memcpy(o, &d, d.size);
}
