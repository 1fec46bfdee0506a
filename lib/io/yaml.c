/* SPDX-License-Identifier: MIT */
/* strop — the bounded YAML tree shared by specs and recipes (see yaml.h). */
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "io/yaml.h"

void strop__ynode_free(strop__ynode *y) {
  if (!y) return;
  for (int i = 0; i < y->n; i++) strop__ynode_free(y->kids[i]);
  strop__free(y->kids);
  strop__free(y->text);
  strop__free(y);
}

strop_status strop__ynode_push(strop__ynode *parent, strop__ynode *kid) {
  if (parent->n == parent->cap) {
    int cap = parent->cap ? parent->cap * 2 : 8;
    strop__ynode **v = strop__realloc(parent->kids, (size_t)cap * sizeof *v);
    if (!v) return strop__err(STROP_E_NOMEM, "out of memory building a YAML tree");
    parent->kids = v;
    parent->cap = cap;
  }
  parent->kids[parent->n++] = kid;
  return STROP_OK;
}

strop__ynode *strop__ynode_new(int type) {
  strop__ynode *y = strop__calloc(1, sizeof *y);
  if (y) y->type = type;
  return y;
}

strop__ynode *strop__ynode_scalar(const char *text, int plain) {
  strop__ynode *y = strop__ynode_new(STROP__Y_SCALAR);
  if (!y) return NULL;
  y->plain = plain;
  y->len = strlen(text);
  y->text = strop__strdup(text);
  if (!y->text) {
    strop__free(y);
    return NULL;
  }
  return y;
}

strop__ynode *strop__ynode_clone(const strop__ynode *y) {
  if (!y) return NULL;
  strop__ynode *c = strop__ynode_new(y->type);
  if (!c) return NULL;
  c->line = y->line;
  c->col = y->col;
  c->plain = y->plain;
  c->len = y->len;
  if (y->text && !(c->text = strop__strdup(y->text))) goto oom;
  for (int i = 0; i < y->n; i++) {
    strop__ynode *k = strop__ynode_clone(y->kids[i]);
    if (!k || strop__ynode_push(c, k)) {
      strop__ynode_free(k);
      goto oom;
    }
  }
  return c;
oom:
  strop__ynode_free(c);
  return NULL;
}

strop__ynode *strop__ynode_get(const strop__ynode *map, const char *key) {
  if (!map || map->type != STROP__Y_MAP) return NULL;
  for (int i = 0; i + 1 < map->n; i += 2)
    if (map->kids[i]->type == STROP__Y_SCALAR && strcmp(map->kids[i]->text, key) == 0)
      return map->kids[i + 1];
  return NULL;
}

int strop__ynode_is_null(const strop__ynode *y) {
  if (!y) return 1;
  if (y->type != STROP__Y_SCALAR || !y->plain) return 0;
  return y->len == 0 || !strcmp(y->text, "~") || !strcmp(y->text, "null") ||
         !strcmp(y->text, "Null") || !strcmp(y->text, "NULL");
}

const char *strop__ynode_kind(const strop__ynode *y) {
  if (!y) return "nothing";
  return y->type == STROP__Y_MAP ? "a mapping" : y->type == STROP__Y_SEQ ? "a list" : "a scalar";
}

static strop_status yerr(const char *fn, const char *file, int line, int col, strop_status st,
                         const char *fmt, ...) STROP__PRINTF(6, 7);
static strop_status yerr(const char *fn, const char *file, int line, int col, strop_status st,
                         const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (line > 0) return strop__err(st, "%s: %s:%d:%d: %s", fn, file, line, col, msg);
  return strop__err(st, "%s: %s: %s", fn, file, msg);
}

strop_status strop__yaml_parse(const char *fn, const char *file, const char *text, size_t len,
                               const strop__yaml_limits *lim, strop__ynode **root) {
  *root = NULL;
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return STROP__NOMEM(fn);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  enum { HARD_DEPTH = 64 };
  int max_depth = lim->max_depth < HARD_DEPTH ? lim->max_depth : HARD_DEPTH;
  strop__ynode *stack[HARD_DEPTH + 1];
  int depth = 0, docs = 0, done = 0, nodes = 0;
  strop_status st = STROP_OK;
  while (!done && st == STROP_OK) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      if (parser.error == YAML_MEMORY_ERROR) {
        st = STROP__NOMEM(fn);
      } else if (parser.error == YAML_READER_ERROR) {
        /* the reader (bad UTF-8, a control character) gives a byte offset, not a mark: its
         * line and column counted here (they read 1:1 before) */
        size_t off = parser.problem_offset < len ? parser.problem_offset : len;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
          if (text[i] == '\n') line++, col = 1;
          else if (((unsigned char)text[i] & 0xC0) != 0x80) col++; /* characters, not bytes */
        }
        st = yerr(fn, file, line, col, STROP_E_FORMAT, "%s (byte %zu of the file)",
                  parser.problem ? parser.problem : "unreadable YAML", off);
      } else {
        yaml_mark_t mk = parser.problem_mark;
        st = yerr(fn, file, (int)mk.line + 1, (int)mk.column + 1, STROP_E_FORMAT, "%s%s%s",
                  parser.problem ? parser.problem : "malformed YAML", parser.context ? " " : "",
                  parser.context ? parser.context : "");
      }
      break;
    }
    int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
    strop__ynode *node = NULL;
    switch (ev.type) {
      case YAML_STREAM_END_EVENT: done = 1; break;
      case YAML_DOCUMENT_START_EVENT:
        if (++docs > 1)
          st = yerr(fn, file, line, col, STROP_E_FORMAT,
                    "expected one YAML document; found a second");
        break;
      case YAML_ALIAS_EVENT:
        st = yerr(fn, file, line, col, STROP_E_FORMAT, "YAML aliases (*%s) are not allowed",
                  ev.data.alias.anchor ? (const char *)ev.data.alias.anchor : "");
        break;
      case YAML_SCALAR_EVENT:
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT:
        if (++nodes > lim->max_nodes) {
          st = yerr(fn, file, line, col, STROP_E_FORMAT, "more than %d YAML nodes",
                    lim->max_nodes);
          break;
        }
        if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length > lim->max_scalar) {
          st = yerr(fn, file, line, col, STROP_E_FORMAT,
                    "a scalar of %zu bytes exceeds the limit "
                    "of %zu",
                    (size_t)ev.data.scalar.length, lim->max_scalar);
          break;
        }
        /* a "\0" escape would end the C string early: "img.idx\0junk" would read img.idx */
        const unsigned char *nul = ev.type == YAML_SCALAR_EVENT
                                       ? memchr(ev.data.scalar.value, 0, ev.data.scalar.length)
                                       : NULL;
        if (nul) {
          st = yerr(fn, file, line, col, STROP_E_FORMAT,
                    "a scalar holds a NUL byte (\\0) at "
                    "offset %zu; names, paths and values may not contain one",
                    (size_t)(nul - ev.data.scalar.value));
          break;
        }
        if (ev.type != YAML_SCALAR_EVENT && depth >= max_depth) {
          st = yerr(fn, file, line, col, STROP_E_FORMAT, "nesting deeper than %d levels",
                    max_depth);
          break;
        }
        node = strop__ynode_new(ev.type == YAML_SCALAR_EVENT           ? STROP__Y_SCALAR
                                : ev.type == YAML_SEQUENCE_START_EVENT ? STROP__Y_SEQ
                                                                       : STROP__Y_MAP);
        if (!node) {
          st = STROP__NOMEM(fn);
          break;
        }
        node->line = line;
        node->col = col;
        if (ev.type == YAML_SCALAR_EVENT) {
          node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
          node->len = ev.data.scalar.length;
          node->text = strop__malloc(node->len + 1);
          if (!node->text) {
            strop__ynode_free(node);
            st = STROP__NOMEM(fn);
            break;
          }
          memcpy(node->text, ev.data.scalar.value, node->len);
          node->text[node->len] = '\0';
        }
        if (depth > 0) {
          if (strop__ynode_push(stack[depth - 1], node)) {
            strop__ynode_free(node);
            st = STROP__NOMEM(fn);
            break;
          }
        } else {
          *root = node;
        }
        if (node->type != STROP__Y_SCALAR) stack[depth++] = node;
        break;
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        if (depth > 0) depth--;
        break;
      default: break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  if (st != STROP_OK) {
    strop__ynode_free(*root);
    *root = NULL;
  }
  return st;
}
