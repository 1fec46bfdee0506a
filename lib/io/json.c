/* SPDX-License-Identifier: MIT */
/* strop — strict JSON for safetensors headers. Recursive descent with a depth bound; nodes
 * live in one array and decoded strings in one buffer no larger than the input. */
#include "io/json.h"

#include <stdlib.h>
#include <string.h>

typedef struct jp {
  const unsigned char *s;
  size_t len, i, base;
  int max_depth;
  strop__json *j;
} jp;

static strop_status jerr(const jp *p, const char *what) {
  return strop__err(STROP_E_FORMAT, "at byte %zu: %s", p->base + p->i, what);
}

static void skip_ws(jp *p) {
  while (p->i < p->len) {
    unsigned char c = p->s[p->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->i++;
  }
}

/* The index of a new node; -1 out of memory, -2 over STROP__JSON_MAX_NODES. */
static int new_node(jp *p, int type) {
  strop__json *j = p->j;
  if (j->n >= STROP__JSON_MAX_NODES) return -2;
  if (j->n == j->cap) {
    int cap = j->cap ? j->cap * 2 : 64;
    strop__jnode *v = strop__realloc(j->nodes, (size_t)cap * sizeof *v);
    if (!v) return -1;
    j->nodes = v;
    j->cap = cap;
  }
  strop__jnode *nd = &j->nodes[j->n];
  memset(nd, 0, sizeof *nd);
  nd->type = type;
  nd->next = nd->child = -1;
  nd->pos = p->base + p->i;
  return j->n++;
}

static int hex4(const unsigned char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) {
    unsigned c = s[k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return 0;
  }
  *out = v;
  return 1;
}

/* Parses a string at p->i (on the quote) into strbuf; *out gets its start. */
static strop_status parse_string(jp *p, const char **out, size_t *len_out) {
  strop__json *j = p->j;
  char *dst = j->strbuf + j->used;
  size_t n = 0;
  p->i++; /* opening quote */
  for (;;) {
    if (p->i >= p->len) return jerr(p, "unterminated string");
    unsigned char c = p->s[p->i];
    if (c == '"') {
      p->i++;
      break;
    }
    if (c < 0x20) return jerr(p, "control character inside a string");
    if (c == '\\') {
      if (p->i + 1 >= p->len) return jerr(p, "unterminated escape");
      unsigned char e = p->s[p->i + 1];
      char simple = 0;
      switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': break;
        default: return jerr(p, "invalid escape sequence");
      }
      if (simple) {
        dst[n++] = simple;
        p->i += 2;
        continue;
      }
      uint32_t cp;
      if (p->i + 6 > p->len || !hex4(p->s + p->i + 2, &cp)) return jerr(p, "invalid \\u escape");
      p->i += 6;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return jerr(p, "lone low surrogate in \\u escape");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo;
        if (p->i + 6 > p->len || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
            !hex4(p->s + p->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
          return jerr(p, "unpaired high surrogate in \\u escape");
        p->i += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (cp == 0) return jerr(p, "\\u0000 (NUL) inside a string");
      /* A \uXXXX escape is 6 input bytes and at most 4 output bytes; a surrogate pair 12
       * and 4: the decoded text never outgrows the input. */
      if (cp < 0x80) {
        dst[n++] = (char)cp;
      } else if (cp < 0x800) {
        dst[n++] = (char)(0xC0 | (cp >> 6));
        dst[n++] = (char)(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        dst[n++] = (char)(0xE0 | (cp >> 12));
        dst[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[n++] = (char)(0x80 | (cp & 0x3F));
      } else {
        dst[n++] = (char)(0xF0 | (cp >> 18));
        dst[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        dst[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[n++] = (char)(0x80 | (cp & 0x3F));
      }
      continue;
    }
    size_t k = strop__utf8_seq(p->s + p->i, p->len - p->i);
    if (!k) return jerr(p, "invalid UTF-8 inside a string");
    memcpy(dst + n, p->s + p->i, k);
    n += k;
    p->i += k;
  }
  dst[n] = '\0';
  j->used += n + 1;
  *out = dst;
  *len_out = n;
  return STROP_OK;
}

static strop_status parse_number(jp *p, strop__jnode *nd) {
  size_t start = p->i;
  int neg = 0, integral = 1, overflow = 0;
  uint64_t mag = 0;
  if (p->s[p->i] == '-') {
    neg = 1;
    p->i++;
  }
  if (p->i >= p->len || p->s[p->i] < '0' || p->s[p->i] > '9') return jerr(p, "invalid number");
  if (p->s[p->i] == '0') {
    p->i++;
    if (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')
      return jerr(p, "number with a leading zero");
  } else {
    while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
      unsigned d = p->s[p->i] - '0';
      if (mag > (UINT64_MAX - d) / 10) overflow = 1;
      else mag = mag * 10 + d;
      p->i++;
    }
  }
  if (p->i < p->len && p->s[p->i] == '.') {
    integral = 0;
    p->i++;
    if (p->i >= p->len || p->s[p->i] < '0' || p->s[p->i] > '9')
      return jerr(p, "invalid number: digits expected after '.'");
    while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
  }
  if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
    integral = 0;
    p->i++;
    if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
    if (p->i >= p->len || p->s[p->i] < '0' || p->s[p->i] > '9')
      return jerr(p, "invalid number: digits expected in the exponent");
    while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
  }
  size_t n = p->i - start;
  char *dst = p->j->strbuf + p->j->used;
  memcpy(dst, p->s + start, n);
  dst[n] = '\0';
  p->j->used += n + 1;
  nd->str = dst;
  nd->len = n;
  if (integral && !overflow) {
    if (!neg && mag <= (uint64_t)INT64_MAX) {
      nd->is_int = 1;
      nd->ival = (int64_t)mag;
    } else if (neg && mag <= (uint64_t)INT64_MAX + 1) {
      nd->is_int = 1;
      nd->ival = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    }
  }
  return STROP_OK;
}

static strop_status parse_value(jp *p, int depth, int *out);

static int cmp_node_key(const void *a, const void *b) {
  const strop__jnode *x = *(const strop__jnode *const *)a, *y = *(const strop__jnode *const *)b;
  int c = strcmp(x->key, y->key);
  if (c) return c;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Duplicate keys: sort the members by key (then position) and compare neighbours, so a
 * header with many tensors stays O(n log n). */
static strop_status check_dup_keys(jp *p, int obj) {
  strop__json *j = p->j;
  int n = j->nodes[obj].count;
  if (n < 2) return STROP_OK;
  const strop__jnode **v = strop__malloc((size_t)n * sizeof *v);
  if (!v) return strop__err(STROP_E_NOMEM, "out of memory");
  int k = 0;
  for (int c = j->nodes[obj].child; c >= 0; c = j->nodes[c].next) v[k++] = &j->nodes[c];
  qsort(v, (size_t)n, sizeof *v, cmp_node_key);
  strop_status st = STROP_OK;
  for (int i = 1; i < n; i++) {
    if (strcmp(v[i - 1]->key, v[i]->key) == 0) {
      st = strop__err(STROP_E_FORMAT, "at byte %zu: duplicate key \"%.200s\"", v[i]->pos,
                      v[i]->key);
      break;
    }
  }
  strop__free(v);
  return st;
}

static strop_status parse_container(jp *p, int depth, int idx, int is_obj) {
  strop_status st;
  char close = is_obj ? '}' : ']';
  p->i++;
  skip_ws(p);
  if (p->i < p->len && p->s[p->i] == (unsigned char)close) {
    p->i++;
    return STROP_OK;
  }
  int last = -1;
  for (;;) {
    skip_ws(p);
    const char *key = NULL;
    size_t klen = 0;
    if (is_obj) {
      if (p->i >= p->len || p->s[p->i] != '"') return jerr(p, "expected a string key");
      if ((st = parse_string(p, &key, &klen)) != STROP_OK) return st;
      if (strlen(key) != klen) return jerr(p, "NUL inside a key");
      skip_ws(p);
      if (p->i >= p->len || p->s[p->i] != ':') return jerr(p, "expected ':' after a key");
      p->i++;
      skip_ws(p);
    }
    int child;
    if ((st = parse_value(p, depth + 1, &child)) != STROP_OK) return st;
    strop__jnode *c = &p->j->nodes[child];
    c->key = key;
    if (last < 0) p->j->nodes[idx].child = child;
    else p->j->nodes[last].next = child;
    last = child;
    p->j->nodes[idx].count++;
    skip_ws(p);
    if (p->i >= p->len) return jerr(p, is_obj ? "unterminated object" : "unterminated array");
    if (p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (p->s[p->i] == (unsigned char)close) {
      p->i++;
      return is_obj ? check_dup_keys(p, idx) : STROP_OK;
    }
    return jerr(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static strop_status parse_value(jp *p, int depth, int *out) {
  skip_ws(p);
  if (p->i >= p->len) return jerr(p, "unexpected end of text, a value was expected");
  if (depth > p->max_depth) {
    return strop__err(STROP_E_FORMAT, "at byte %zu: nesting deeper than %d levels",
                      p->base + p->i, p->max_depth);
  }
  unsigned char c = p->s[p->i];
  int type;
  switch (c) {
    case '{': type = STROP__J_OBJ; break;
    case '[': type = STROP__J_ARR; break;
    case '"': type = STROP__J_STR; break;
    case 't': type = STROP__J_TRUE; break;
    case 'f': type = STROP__J_FALSE; break;
    case 'n': type = STROP__J_NULL; break;
    default:
      if (c == '-' || (c >= '0' && c <= '9')) {
        type = STROP__J_NUM;
        break;
      }
      if (c >= 0x80 && !strop__utf8_seq(p->s + p->i, p->len - p->i))
        return jerr(p, "invalid UTF-8");
      return jerr(p, "unexpected character, a value was expected");
  }
  int idx = new_node(p, type);
  if (idx == -2)
    return strop__err(STROP_E_FORMAT,
                      "at byte %zu: more than %d JSON values (the limit that "
                      "bounds a header's memory)",
                      p->base + p->i, STROP__JSON_MAX_NODES);
  if (idx < 0) return strop__err(STROP_E_NOMEM, "out of memory");
  *out = idx;
  strop_status st = STROP_OK;
  switch (type) {
    case STROP__J_OBJ:
    case STROP__J_ARR: st = parse_container(p, depth, idx, type == STROP__J_OBJ); break;
    case STROP__J_STR: {
      const char *s;
      size_t n;
      st = parse_string(p, &s, &n);
      if (st == STROP_OK) {
        p->j->nodes[idx].str = s;
        p->j->nodes[idx].len = n;
      }
      break;
    }
    case STROP__J_NUM: st = parse_number(p, &p->j->nodes[idx]); break;
    default: {
      const char *lit = type == STROP__J_TRUE    ? "true"
                        : type == STROP__J_FALSE ? "false"
                                                 : "null";
      size_t n = strlen(lit);
      if (p->len - p->i < n || memcmp(p->s + p->i, lit, n) != 0)
        return jerr(p, "invalid literal");
      p->i += n;
    }
  }
  return st;
}

strop_status strop__json_parse(const char *text, size_t len, size_t base, int max_depth,
                               strop__json *out) {
  memset(out, 0, sizeof *out);
  out->strbuf = strop__malloc(len + 1);
  if (!out->strbuf) return strop__err(STROP_E_NOMEM, "out of memory");
  out->size = len + 1;
  jp p = {(const unsigned char *)text, len, 0, base, max_depth, out};
  int root;
  strop_status st = parse_value(&p, 1, &root);
  if (st == STROP_OK) {
    skip_ws(&p);
    if (p.i < p.len) st = jerr(&p, "unexpected text after the end of the JSON value");
  }
  if (st != STROP_OK) strop__json_free(out);
  return st;
}

void strop__json_free(strop__json *j) {
  strop__free(j->nodes);
  strop__free(j->strbuf);
  memset(j, 0, sizeof *j);
}

const strop__jnode *strop__json_get(const strop__json *j, const strop__jnode *obj,
                                    const char *key) {
  if (!obj || obj->type != STROP__J_OBJ) return NULL;
  for (int c = obj->child; c >= 0; c = j->nodes[c].next)
    if (strcmp(j->nodes[c].key, key) == 0) return &j->nodes[c];
  return NULL;
}
