/* SPDX-License-Identifier: MIT */
/* strop — a small bounded YAML tree (libyaml events; no aliases, limited depth, node count
 * and scalar size) with line/column on every node, for specs and recipes. */
#ifndef STROP_IO_YAML_H
#define STROP_IO_YAML_H

#include "core/core.h"

enum { STROP__Y_SCALAR, STROP__Y_SEQ, STROP__Y_MAP };

typedef struct strop__ynode {
  int type;
  int line, col; /* 1-based */
  int plain;     /* scalar written without quotes (~, null and "" then mean null) */
  char *text;    /* scalar text, owned */
  size_t len;
  struct strop__ynode **kids; /* map: key, value, key, value ...; seq: items */
  int n, cap;
} strop__ynode;

typedef struct strop__yaml_limits {
  int max_depth, max_nodes;
  size_t max_scalar;
} strop__yaml_limits;

/* Parses one YAML document. fn names the public function and file the source (for errors
 * "fn: file:line:col: what"). *root is NULL for an empty document. */
strop_status strop__yaml_parse(const char *fn, const char *file, const char *text, size_t len,
                               const strop__yaml_limits *lim, strop__ynode **root);
void strop__ynode_free(strop__ynode *y);
/* Deep copy; NULL on OOM. */
strop__ynode *strop__ynode_clone(const strop__ynode *y);
/* New scalar / empty map / empty seq node (owned by the caller). */
strop__ynode *strop__ynode_scalar(const char *text, int plain);
strop__ynode *strop__ynode_new(int type);
/* Appends a child (map: call twice, key then value). */
strop_status strop__ynode_push(strop__ynode *parent, strop__ynode *kid);
/* Map lookup by key; NULL when absent. */
strop__ynode *strop__ynode_get(const strop__ynode *map, const char *key);
/* 1 for a null scalar (~, null, empty plain). */
int strop__ynode_is_null(const strop__ynode *y);
const char *strop__ynode_kind(const strop__ynode *y);

#endif
