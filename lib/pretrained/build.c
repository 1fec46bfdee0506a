/* SPDX-License-Identifier: MIT */
/* strop — building an adapter's graph through the public model API, options formatted. */
#include <stdarg.h>
#include <stdio.h>

#include "graph/meta.h"
#include "pretrained/pretrained.h"

strop_status strop__pt_add(strop_model *m, const char *name, const char *type, const char *inputs,
                           const char *opts_fmt, ...) {
  char opts[1024] = "";
  if (opts_fmt) {
    va_list ap;
    va_start(ap, opts_fmt);
    int n = vsnprintf(opts, sizeof opts, opts_fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof opts)
      return strop__err(STROP_E_INTERNAL, "layer '%s': options too long", name);
  }
  return strop_model_add(m, name, type, opts, inputs);
}

strop_status strop__pt_mark_hidden(const strop__pt_ctx *c, strop_model *m, const char *hidden,
                                   const char *pooled) {
  strop_status st = strop__meta_set(&m->meta, c->fn, STROP__PT_META_HIDDEN, hidden);
  if (!st && pooled) st = strop__meta_set(&m->meta, c->fn, STROP__PT_META_POOLED, pooled);
  return st;
}
