/* strop — a growing text buffer for the writers in io (JSON headers, YAML specs). An
 * allocation failure is remembered and reported once at the end. */
#ifndef STROP_IO_SBUF_H
#define STROP_IO_SBUF_H

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

#endif
