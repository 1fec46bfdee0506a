/* SPDX-License-Identifier: MIT */
/* strop — a small strict JSON parser for safetensors headers: objects, arrays, strings with
 * escapes, numbers, literals; invalid UTF-8, duplicate keys and deep nesting are refused. */
#ifndef STROP_IO_JSON_H
#define STROP_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

enum {
  STROP__J_NULL,
  STROP__J_FALSE,
  STROP__J_TRUE,
  STROP__J_NUM,
  STROP__J_STR,
  STROP__J_ARR,
  STROP__J_OBJ
};

typedef struct strop__jnode {
  int type;
  int next;        /* next sibling's index, -1 at the end */
  int child;       /* first child (array, object), -1 if empty */
  int count;       /* number of children */
  const char *key; /* member name inside an object (decoded, NUL-terminated), else NULL */
  const char *str; /* decoded string (NUL-terminated); raw text of a number */
  size_t len;      /* length of str */
  int is_int;      /* number: integer syntax that fits int64 */
  int64_t ival;
  size_t pos; /* byte offset of the value in the text */
} strop__jnode;

typedef struct strop__json {
  strop__jnode *nodes; /* nodes[0] is the root */
  int n, cap;
  char *strbuf; /* decoded strings and number texts */
  size_t used, size;
} strop__json;

/* Values (objects, arrays, strings, numbers, literals) a text may hold: about 64 bytes each,
 * so a text of small numbers ("0,0,0,...") costs at most 64 MiB (96 while the array grows),
 * not 32 times its size. A safetensors header needs 6 to 14 per tensor, so this admits
 * some 75,000 tensors (docs/errors.md, input bounds). */
#define STROP__JSON_MAX_NODES (1 << 20)

/* Parses text[0..len) (need not be NUL-terminated); trailing JSON whitespace is allowed.
 * Duplicate object keys are an error. On error sets a sentence "at byte N: ..." (N counted
 * from base) and returns STROP_E_FORMAT or STROP_E_NOMEM; out is left empty. */
strop_status strop__json_parse(const char *text, size_t len, size_t base, int max_depth,
                               strop__json *out);
void strop__json_free(strop__json *j);

/* Member of an object node by key; NULL if absent. */
const strop__jnode *strop__json_get(const strop__json *j, const strop__jnode *obj,
                                    const char *key);
static inline const strop__jnode *strop__json_at(const strop__json *j, int i) {
  return i >= 0 ? &j->nodes[i] : NULL;
}

#endif
