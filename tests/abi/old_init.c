/* SPDX-License-Identifier: MIT */
/* strop ABI test — a program as built against 0.1 calls the STROP_0.1 versions of the init
 * functions of the structs 0.2 extended (strop_run_options, strop_tune_options), bound here by
 * .symver as a 0.1 program's link bound them. Each gets a struct of its 0.1 size followed by
 * guard bytes: the init must fill the 0.1 fields, give the 0.1 size and write nothing past it
 * (the 0.2 function would have written resume / dist and time_budget / dist there). The same
 * structs then go through the 0.2 default versions, which fill the whole struct. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "strop/strop.h"

void old_run_options_init(strop_run_options *o);
void old_tune_options_init(strop_tune_options *o);
__asm__(".symver old_run_options_init,strop_run_options_init@STROP_0.1");
__asm__(".symver old_tune_options_init,strop_tune_options_init@STROP_0.1");

enum { GUARD = 0xA5 };

static int guarded(const unsigned char *p, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    if (p[i] != GUARD) return 0;
  return 1;
}

int main(void) {
  int bad = 0;
  union {
    strop_run_options o;
    unsigned char b[sizeof(strop_run_options) + 64];
  } r;
  const size_t r01 = offsetof(strop_run_options, resume);
  memset(r.b, GUARD, sizeof r.b);
  old_run_options_init(&r.o);
  if (r.o.size != r01) bad = printf("run: size %zu, want the 0.1 size %zu\n", r.o.size, r01);
  if (!guarded(r.b, r01, sizeof r.b))
    bad = printf("run: the 0.1 init wrote past the 0.1 struct\n");
  if (r.o.mode != STROP_RUN_FINETUNE || r.o.write_outputs != 1 || r.o.baselines != 1)
    bad = printf("run: the 0.1 fields lack their defaults\n");
  strop_run_options_init(&r.o);
  if (r.o.size != sizeof r.o || r.o.resume != 0 || r.o.dist != NULL)
    bad = printf("run: the default version does not fill the whole struct\n");

  union {
    strop_tune_options o;
    unsigned char b[sizeof(strop_tune_options) + 64];
  } t;
  const size_t t01 = offsetof(strop_tune_options, time_budget);
  memset(t.b, GUARD, sizeof t.b);
  old_tune_options_init(&t.o);
  if (t.o.size != t01) bad = printf("tune: size %zu, want the 0.1 size %zu\n", t.o.size, t01);
  if (!guarded(t.b, t01, sizeof t.b))
    bad = printf("tune: the 0.1 init wrote past the 0.1 struct\n");
  if (t.o.resume != 1) bad = printf("tune: the 0.1 fields lack their defaults\n");
  strop_tune_options_init(&t.o);
  if (t.o.size != sizeof t.o || t.o.time_budget != 0.0 || t.o.dist != NULL)
    bad = printf("tune: the default version does not fill the whole struct\n");
  if (!bad)
    printf("old_init: ok (0.1 sizes %zu and %zu, 0.2 sizes %zu and %zu)\n", r01, t01, sizeof r.o,
           sizeof t.o);
  return bad ? 1 : 0;
}
