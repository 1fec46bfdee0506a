/* SPDX-License-Identifier: MIT */
/* strop — a model's metadata: a small string -> string dictionary, kept sorted by key, that
 * travels with the model (clone, surgery, weight files) and tells a user of it what it needs. */
#ifndef STROP_GRAPH_META_H
#define STROP_GRAPH_META_H

#include "core/core.h"
#include "strop/model.h"

typedef struct strop__meta {
  char **keys, **vals; /* n entries each, keys in strcmp order, unique; owned */
  int n, cap;
} strop__meta;

/* Sets key to a copy of val (NULL removes it; removing an absent key is not an error). The
 * key and value are checked against the documented bounds first; on any error m is unchanged
 * and the sentence names fn, the key and what was wrong. */
strop_status strop__meta_set(strop__meta *m, const char *fn, const char *key, const char *val);
/* The value of key, borrowed, or NULL when absent. */
const char *strop__meta_get(const strop__meta *m, const char *key);
/* dst becomes a deep copy of src (dst's old entries freed); on failure dst is unchanged. */
strop_status strop__meta_copy(strop__meta *dst, const strop__meta *src, const char *fn);
/* Exchanges the contents of a and b (cannot fail). */
void strop__meta_swap(strop__meta *a, strop__meta *b);
void strop__meta_free(strop__meta *m);
/* 0 when key may be a metadata key, else the sentence's reason (a static string). */
const char *strop__meta_bad_key(const char *key);

#endif
