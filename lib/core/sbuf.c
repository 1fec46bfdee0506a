/* SPDX-License-Identifier: MIT */
/* strop — growing text buffer (see sbuf.h). */
#include "core/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int reserve(strop__sbuf *b, size_t extra) {
  if (b->oom) return 0;
  if (b->n + extra + 1 <= b->cap) return 1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + extra + 1) {
    if (cap > ((size_t)-1) / 2) {
      b->oom = 1;
      return 0;
    }
    cap *= 2;
  }
  char *s = strop__realloc(b->s, cap);
  if (!s) {
    b->oom = 1;
    return 0;
  }
  b->s = s;
  b->cap = cap;
  return 1;
}

void strop__sbuf_put(strop__sbuf *b, const char *s, size_t n) {
  if (!reserve(b, n)) return;
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

void strop__sbuf_puts(strop__sbuf *b, const char *s) { strop__sbuf_put(b, s, strlen(s)); }

void strop__sbuf_printf(strop__sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k < sizeof tmp) {
    strop__sbuf_put(b, tmp, (size_t)k);
    return;
  }
  if (!reserve(b, (size_t)k)) return;
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

void strop__sbuf_json_str(strop__sbuf *b, const char *s) {
  strop__sbuf_put(b, "\"", 1);
  const char *run = s;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c != '"' && c != '\\' && c >= 0x20) continue;
    strop__sbuf_put(b, run, (size_t)(s - run));
    if (c == '"') strop__sbuf_puts(b, "\\\"");
    else if (c == '\\') strop__sbuf_puts(b, "\\\\");
    else if (c == '\n') strop__sbuf_puts(b, "\\n");
    else if (c == '\t') strop__sbuf_puts(b, "\\t");
    else if (c == '\r') strop__sbuf_puts(b, "\\r");
    else strop__sbuf_printf(b, "\\u%04x", c);
    run = s + 1;
  }
  strop__sbuf_put(b, run, (size_t)(s - run));
  strop__sbuf_put(b, "\"", 1);
}

void strop__sbuf_free(strop__sbuf *b) {
  strop__free(b->s);
  b->s = NULL;
  b->n = b->cap = 0;
  b->oom = 0;
}

int64_t strop__sbuf_out(const char *fn, const strop__sbuf *b, char *buf, size_t cap) {
  if (b->oom) {
    STROP__NOMEM(fn);
    return -1;
  }
  return strop__copy_out(fn, b->s ? b->s : "", buf, cap);
}
