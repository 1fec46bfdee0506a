/* SPDX-License-Identifier: MIT */
/* strop — the library's one growing text buffer (JSON headers, YAML specs, surgery's
 * descriptions, summaries). An allocation failure is remembered and reported once at the end. */
#ifndef STROP_CORE_SBUF_H
#define STROP_CORE_SBUF_H

#include <stddef.h>

#include "core/core.h"

typedef struct strop__sbuf {
  char *s;
  size_t n, cap;
  int oom;
} strop__sbuf;

void strop__sbuf_put(strop__sbuf *b, const char *s, size_t n);
void strop__sbuf_puts(strop__sbuf *b, const char *s);
void strop__sbuf_printf(strop__sbuf *b, const char *fmt, ...) STROP__PRINTF(2, 3);
/* s as a JSON string literal, quotes included */
void strop__sbuf_json_str(strop__sbuf *b, const char *s);
void strop__sbuf_free(strop__sbuf *b);
/* Copies the text into the caller's buf snprintf-style (strop__copy_out) and returns its full
 * length; -1 with an out-of-memory error naming fn when the buffer ran out of memory. */
int64_t strop__sbuf_out(const char *fn, const strop__sbuf *b, char *buf, size_t cap);

#endif
