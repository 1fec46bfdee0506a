/* SPDX-License-Identifier: MIT */
/* strop — chat templates: a small, bounded interpreter for the Jinja subset Hugging Face chat
 * templates use (tokenizer_config.json's chat_template), rendered as transformers renders them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "text_impl.h"

#define FN "strop_tokenizer_apply_chat_template"

/* Bounds that keep a hostile template or conversation finite. */
#define J_MAX_SOURCE (1u << 20)         /* bytes of a template */
#define J_MAX_NODES (1 << 18)           /* parsed nodes */
#define J_MAX_DEPTH 64                  /* nesting of expressions and blocks */
#define J_MAX_OUT ((size_t)64 << 20)    /* bytes of a render */
#define J_MAX_ARENA ((size_t)256 << 20) /* bytes of values made while rendering */
#define J_MAX_STEPS 10000000            /* loop iterations and statements of one render */
#define J_MAX_VARS 4096                 /* variables alive at once */

/* ------------------------------------------------------------------ nodes ---- */
enum {
  /* statements */
  S_TEXT,
  S_OUT,
  S_IF,
  S_FOR,
  S_SET,
  S_BREAK,
  S_CONTINUE,
  S_BLOCK, /* a body that stands for its children ({% generation %}) */
  /* expressions */
  E_STR,
  E_INT,
  E_BOOL,
  E_NONE,
  E_NAME,
  E_LIST,
  E_DICT,
  E_PAIR,
  E_ATTR,
  E_INDEX,
  E_SLICE,
  E_CALL,
  E_KWARG,
  E_FILTER,
  E_TEST,
  E_NEG,
  E_NOT,
  E_BIN,
  E_COND,
  E_ABSENT /* an omitted slice bound */
};

enum {
  OP_OR,
  OP_AND,
  OP_EQ,
  OP_NE,
  OP_LT,
  OP_LE,
  OP_GT,
  OP_GE,
  OP_IN,
  OP_NOTIN,
  OP_ADD,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_FDIV,
  OP_MOD,
  OP_CAT
};

typedef struct jn {
  int kind;
  int a, b, c, d; /* children, -1 none */
  int next;       /* the next statement of a body, argument of a list */
  size_t pos;     /* byte offset in the template, for messages */
  const char *s, *s2;
  size_t n, n2;
  int64_t i;
} jn;

typedef struct jtpl {
  const char *src, *name;
  size_t len;
  jn *nodes;
  int nn, ncap;
  char *strs; /* decoded string literals (arena of the parse) */
  size_t slen, scap;
  int root;
} jtpl;

/* Line and column (from 1) of a byte offset. */
static void line_col(const jtpl *t, size_t pos, int *line, int *col) {
  int l = 1, c = 1;
  for (size_t k = 0; k < pos && k < t->len; k++) {
    if (t->src[k] == '\n') {
      l++;
      c = 1;
    } else if (((unsigned char)t->src[k] & 0xC0) != 0x80) {
      c++;
    }
  }
  *line = l;
  *col = c;
}

static strop_status STROP__PRINTF(4, 5)
    jerr(const jtpl *t, strop_status st, size_t pos, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int line, col;
  line_col(t, pos, &line, &col);
  return strop__err(st, "%s: %s:%d:%d: %s", FN, t->name, line, col, msg);
}

static int node_new(jtpl *t, int kind, size_t pos) {
  if (t->nn >= J_MAX_NODES) return -2;
  if (t->nn == t->ncap) {
    int nc = t->ncap ? t->ncap * 2 : 256;
    jn *p = strop__realloc(t->nodes, (size_t)nc * sizeof *p);
    if (!p) return -1;
    t->nodes = p;
    t->ncap = nc;
  }
  jn *n = &t->nodes[t->nn];
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->a = n->b = n->c = n->d = n->next = -1;
  n->pos = pos;
  return t->nn++;
}

/* ------------------------------------------------------------------ lexer ---- */
enum { T_EOF, T_NAME, T_STR, T_INT, T_OP };

typedef struct jlex {
  jtpl *t;
  size_t p, end; /* the tag's inside */
  int kind;
  size_t tpos; /* the token's offset */
  const char *ts;
  size_t tn;
  int64_t ti;
  int depth;
  strop_status st;
} jlex;

static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Appends a decoded string literal to t->strs; its offset in *off. */
static strop_status str_lit(jlex *x, size_t from, size_t to, size_t *off, size_t *len) {
  jtpl *t = x->t;
  size_t need = t->slen + (to - from) + 1;
  if (need > t->scap) {
    size_t nc = t->scap ? t->scap : 1024;
    while (nc < need) nc *= 2;
    char *p = strop__realloc(t->strs, nc);
    if (!p) return STROP__NOMEM(FN);
    t->strs = p;
    t->scap = nc;
  }
  char *w = t->strs + t->slen;
  size_t k = 0;
  for (size_t i = from; i < to; i++) {
    char c = t->src[i];
    if (c != '\\' || i + 1 >= to) {
      w[k++] = c;
      continue;
    }
    char e = t->src[++i];
    switch (e) {
      case 'n': w[k++] = '\n'; break;
      case 't': w[k++] = '\t'; break;
      case 'r': w[k++] = '\r'; break;
      case '0': w[k++] = '\0'; break;
      case '\\': w[k++] = '\\'; break;
      case '\'': w[k++] = '\''; break;
      case '"': w[k++] = '"'; break;
      case 'u':
      case 'x': {
        int nd = e == 'u' ? 4 : 2;
        uint32_t cp = 0;
        if (i + (size_t)nd >= to) return jerr(t, STROP_E_FORMAT, i - 1, "a short \\%c escape", e);
        for (int d = 0; d < nd; d++) {
          char h = t->src[++i];
          int v = h >= '0' && h <= '9'   ? h - '0'
                  : h >= 'a' && h <= 'f' ? h - 'a' + 10
                  : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                         : -1;
          if (v < 0) return jerr(t, STROP_E_FORMAT, i, "a bad hex digit in a \\%c escape", e);
          cp = cp * 16 + (uint32_t)v;
        }
        if (cp >= 0xD800 && cp < 0xE000)
          return jerr(t, STROP_E_FORMAT, i, "a surrogate in a \\u escape");
        k += strop__tx_utf8_put(cp, w + k);
        break;
      }
      default: /* Python keeps unknown escapes as written */ w[k++] = '\\'; w[k++] = e;
    }
  }
  *off = t->slen;
  *len = k;
  t->slen += k;
  return STROP_OK;
}

/* Reads the next token; string literals are decoded (adjacent ones joined). */
static strop_status lex_next(jlex *x) {
  jtpl *t = x->t;
  const char *s = t->src;
  while (x->p < x->end && is_ws(s[x->p])) x->p++;
  x->tpos = x->p;
  if (x->p >= x->end) {
    x->kind = T_EOF;
    return STROP_OK;
  }
  char c = s[x->p];
  if (is_alpha(c)) {
    size_t b = x->p;
    while (x->p < x->end && (is_alpha(s[x->p]) || is_digit(s[x->p]))) x->p++;
    x->kind = T_NAME;
    x->ts = s + b;
    x->tn = x->p - b;
    return STROP_OK;
  }
  if (is_digit(c)) {
    int64_t v = 0;
    while (x->p < x->end && (is_digit(s[x->p]) || s[x->p] == '_')) {
      if (s[x->p] != '_') {
        if (v > (INT64_MAX - 9) / 10)
          return jerr(t, STROP_E_FORMAT, x->tpos, "an integer too large");
        v = v * 10 + (s[x->p] - '0');
      }
      x->p++;
    }
    if (x->p < x->end && (s[x->p] == '.' || is_alpha(s[x->p])))
      return jerr(t, STROP_E_FORMAT, x->tpos, "unsupported number literal (integers only)");
    x->kind = T_INT;
    x->ti = v;
    return STROP_OK;
  }
  if (c == '\'' || c == '"') {
    size_t first = SIZE_MAX, total = 0;
    /* adjacent literals are one string, as in Python */
    while (x->p < x->end && (s[x->p] == '\'' || s[x->p] == '"')) {
      char q = s[x->p];
      size_t b = ++x->p;
      while (x->p < x->end && s[x->p] != q) x->p += s[x->p] == '\\' ? 2 : 1;
      if (x->p >= x->end) return jerr(t, STROP_E_FORMAT, b - 1, "an unclosed string");
      size_t off = 0, len = 0;
      strop_status st = str_lit(x, b, x->p, &off, &len);
      if (st) return st;
      if (first == SIZE_MAX) first = off;
      total += len;
      x->p++;
      while (x->p < x->end && is_ws(s[x->p])) x->p++;
    }
    x->kind = T_STR;
    x->ti = (int64_t)first; /* offset into t->strs (which may move: resolved by the parser) */
    x->tn = total;
    return STROP_OK;
  }
  static const char *const OPS[] = {"==", "!=", "<=", ">=", "//", "**", "(", ")", "[",
                                    "]",  "{",  "}",  ",",  ".",  ":",  "|", "~", "+",
                                    "-",  "*",  "/",  "%",  "<",  ">",  "="};
  for (size_t k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
    size_t l = strlen(OPS[k]);
    if (x->p + l <= x->end && !memcmp(s + x->p, OPS[k], l)) {
      x->kind = T_OP;
      x->ts = OPS[k];
      x->tn = l;
      x->p += l;
      return STROP_OK;
    }
  }
  return jerr(t, STROP_E_FORMAT, x->p, "unknown syntax '%c'", c);
}

static int is_op(const jlex *x, const char *op) { return x->kind == T_OP && !strcmp(x->ts, op); }
static int is_kw(const jlex *x, const char *kw) {
  return x->kind == T_NAME && x->tn == strlen(kw) && !memcmp(x->ts, kw, x->tn);
}

static strop_status expect_op(jlex *x, const char *op) {
  if (!is_op(x, op)) {
    if (x->kind == T_EOF)
      return jerr(x->t, STROP_E_FORMAT, x->tpos, "expected '%s' before the end of the tag", op);
    return jerr(x->t, STROP_E_FORMAT, x->tpos, "expected '%s'", op);
  }
  return lex_next(x);
}

/* ------------------------------------------------------------- expressions ---- */
static strop_status parse_expr(jlex *x, int *out);

static strop_status mk(jlex *x, int kind, size_t pos, int *out) {
  int k = node_new(x->t, kind, pos);
  if (k == -1) return STROP__NOMEM(FN);
  if (k == -2) return jerr(x->t, STROP_E_FORMAT, pos, "more than %d nodes", J_MAX_NODES);
  *out = k;
  return STROP_OK;
}

#define TRY(e)              \
  do {                      \
    strop_status st_ = (e); \
    if (st_) return st_;    \
  } while (0)

/* A comma-separated list up to `close`; items chained by next; kwargs allowed in calls. */
static strop_status parse_args(jlex *x, const char *close, int calls, int *first) {
  int last = -1;
  *first = -1;
  while (!is_op(x, close)) {
    int item;
    if (calls && x->kind == T_NAME) {
      /* name=value? look ahead without consuming */
      size_t save_p = x->p;
      jlex y = *x;
      TRY(lex_next(&y));
      if (is_op(&y, "=")) {
        TRY(mk(x, E_KWARG, x->tpos, &item));
        x->t->nodes[item].s = x->ts;
        x->t->nodes[item].n = x->tn;
        *x = y;
        TRY(lex_next(x));
        int v;
        TRY(parse_expr(x, &v));
        x->t->nodes[item].a = v;
        goto linked;
      }
      x->p = save_p;
    }
    TRY(parse_expr(x, &item));
  linked:
    if (last < 0) *first = item;
    else x->t->nodes[last].next = item;
    last = item;
    if (!is_op(x, ",")) break;
    TRY(lex_next(x));
  }
  return expect_op(x, close);
}

static strop_status parse_primary(jlex *x, int *out) {
  jtpl *t = x->t;
  size_t pos = x->tpos;
  if (x->kind == T_STR) {
    TRY(mk(x, E_STR, pos, out));
    t->nodes[*out].i = x->ti; /* offset into t->strs */
    t->nodes[*out].n = x->tn;
    return lex_next(x);
  }
  if (x->kind == T_INT) {
    TRY(mk(x, E_INT, pos, out));
    t->nodes[*out].i = x->ti;
    return lex_next(x);
  }
  if (x->kind == T_NAME) {
    if (is_kw(x, "true") || is_kw(x, "True") || is_kw(x, "false") || is_kw(x, "False")) {
      TRY(mk(x, E_BOOL, pos, out));
      t->nodes[*out].i = x->ts[0] == 't' || x->ts[0] == 'T';
      return lex_next(x);
    }
    if (is_kw(x, "none") || is_kw(x, "None")) {
      TRY(mk(x, E_NONE, pos, out));
      return lex_next(x);
    }
    TRY(mk(x, E_NAME, pos, out));
    t->nodes[*out].s = x->ts;
    t->nodes[*out].n = x->tn;
    return lex_next(x);
  }
  if (is_op(x, "(")) {
    TRY(lex_next(x));
    TRY(parse_expr(x, out));
    return expect_op(x, ")");
  }
  if (is_op(x, "[")) {
    TRY(mk(x, E_LIST, pos, out));
    TRY(lex_next(x));
    int first;
    TRY(parse_args(x, "]", 0, &first));
    t->nodes[*out].a = first;
    return STROP_OK;
  }
  if (is_op(x, "{")) {
    int d, last = -1;
    TRY(mk(x, E_DICT, pos, &d));
    TRY(lex_next(x));
    while (!is_op(x, "}")) {
      int p, k, v;
      TRY(mk(x, E_PAIR, x->tpos, &p));
      TRY(parse_expr(x, &k));
      TRY(expect_op(x, ":"));
      TRY(parse_expr(x, &v));
      t->nodes[p].a = k;
      t->nodes[p].b = v;
      if (last < 0) t->nodes[d].a = p;
      else t->nodes[last].next = p;
      last = p;
      if (!is_op(x, ",")) break;
      TRY(lex_next(x));
    }
    TRY(expect_op(x, "}"));
    *out = d;
    return STROP_OK;
  }
  if (x->kind == T_EOF) return jerr(t, STROP_E_FORMAT, pos, "an expression is missing");
  return jerr(t, STROP_E_FORMAT, pos, "unknown syntax '%.*s'", (int)x->tn, x->ts);
}

/* A filter or test name with optional arguments, applied to `operand`. */
static strop_status parse_named(jlex *x, int kind, int operand, int negate, int *out) {
  if (x->kind != T_NAME)
    return jerr(x->t, STROP_E_FORMAT, x->tpos, "expected a %s name",
                kind == E_FILTER ? "filter" : "test");
  int f;
  TRY(mk(x, kind, x->tpos, &f));
  x->t->nodes[f].s = x->ts;
  x->t->nodes[f].n = x->tn;
  x->t->nodes[f].a = operand;
  x->t->nodes[f].i = negate;
  TRY(lex_next(x));
  if (is_op(x, "(")) {
    TRY(lex_next(x));
    int first;
    TRY(parse_args(x, ")", 1, &first));
    x->t->nodes[f].b = first;
  }
  *out = f;
  return STROP_OK;
}

static strop_status parse_postfix(jlex *x, int *out) {
  jtpl *t = x->t;
  TRY(parse_primary(x, out));
  for (;;) {
    size_t pos = x->tpos;
    int n;
    if (is_op(x, ".")) {
      TRY(lex_next(x));
      if (x->kind != T_NAME && x->kind != T_INT)
        return jerr(t, STROP_E_FORMAT, x->tpos, "expected a name after '.'");
      if (x->kind == T_INT) { /* a.0 is a[0] */
        int idx;
        TRY(mk(x, E_INDEX, pos, &n));
        TRY(mk(x, E_INT, x->tpos, &idx));
        t->nodes[idx].i = x->ti;
        t->nodes[n].a = *out;
        t->nodes[n].b = idx;
      } else {
        TRY(mk(x, E_ATTR, pos, &n));
        t->nodes[n].a = *out;
        t->nodes[n].s = x->ts;
        t->nodes[n].n = x->tn;
      }
      TRY(lex_next(x));
    } else if (is_op(x, "[")) {
      TRY(lex_next(x));
      int parts[3] = {-1, -1, -1}, np = 0, colon = 0;
      while (np < 3) {
        if (is_op(x, ":") || is_op(x, "]")) {
          TRY(mk(x, E_ABSENT, x->tpos, &parts[np]));
        } else {
          TRY(parse_expr(x, &parts[np]));
        }
        np++;
        if (!is_op(x, ":")) break;
        colon = 1;
        TRY(lex_next(x));
      }
      TRY(expect_op(x, "]"));
      TRY(mk(x, colon ? E_SLICE : E_INDEX, pos, &n));
      if (!colon && t->nodes[parts[0]].kind == E_ABSENT)
        return jerr(t, STROP_E_FORMAT, pos, "an empty subscript");
      t->nodes[n].a = *out;
      t->nodes[n].b = parts[0];
      t->nodes[n].c = parts[1];
      t->nodes[n].d = parts[2];
    } else if (is_op(x, "(")) {
      TRY(lex_next(x));
      TRY(mk(x, E_CALL, pos, &n));
      int first;
      TRY(parse_args(x, ")", 1, &first));
      t->nodes[n].a = *out;
      t->nodes[n].b = first;
    } else if (is_op(x, "|")) {
      TRY(lex_next(x));
      TRY(parse_named(x, E_FILTER, *out, 0, &n));
    } else if (is_kw(x, "is")) {
      TRY(lex_next(x));
      int neg = 0;
      if (is_kw(x, "not")) {
        neg = 1;
        TRY(lex_next(x));
      }
      if (is_kw(x, "none") || is_kw(x, "None")) x->ts = "none", x->tn = 4;
      TRY(parse_named(x, E_TEST, *out, neg, &n));
    } else {
      return STROP_OK;
    }
    *out = n;
  }
}

static strop_status parse_unary(jlex *x, int *out) {
  if (is_op(x, "-") || is_op(x, "+")) {
    int neg = is_op(x, "-");
    size_t pos = x->tpos;
    TRY(lex_next(x));
    if (++x->depth > J_MAX_DEPTH) return jerr(x->t, STROP_E_FORMAT, pos, "nested too deeply");
    int a;
    TRY(parse_unary(x, &a));
    x->depth--;
    if (!neg) {
      *out = a;
      return STROP_OK;
    }
    TRY(mk(x, E_NEG, pos, out));
    x->t->nodes[*out].a = a;
    return STROP_OK;
  }
  return parse_postfix(x, out);
}

static strop_status bin(jlex *x, int op, size_t pos, int a, int b, int *out) {
  TRY(mk(x, E_BIN, pos, out));
  x->t->nodes[*out].i = op;
  x->t->nodes[*out].a = a;
  x->t->nodes[*out].b = b;
  return STROP_OK;
}

static strop_status parse_mul(jlex *x, int *out) {
  TRY(parse_unary(x, out));
  for (;;) {
    int op = is_op(x, "*")    ? OP_MUL
             : is_op(x, "//") ? OP_FDIV
             : is_op(x, "/")  ? OP_DIV
             : is_op(x, "%")  ? OP_MOD
                              : -1;
    if (op < 0) return STROP_OK;
    size_t pos = x->tpos;
    int b;
    TRY(lex_next(x));
    TRY(parse_unary(x, &b));
    TRY(bin(x, op, pos, *out, b, out));
  }
}

static strop_status parse_add(jlex *x, int *out) {
  TRY(parse_mul(x, out));
  for (;;) {
    int op = is_op(x, "+") ? OP_ADD : is_op(x, "-") ? OP_SUB : -1;
    if (op < 0) return STROP_OK;
    size_t pos = x->tpos;
    int b;
    TRY(lex_next(x));
    TRY(parse_mul(x, &b));
    TRY(bin(x, op, pos, *out, b, out));
  }
}

static strop_status parse_cat(jlex *x, int *out) {
  TRY(parse_add(x, out));
  while (is_op(x, "~")) {
    size_t pos = x->tpos;
    int b;
    TRY(lex_next(x));
    TRY(parse_add(x, &b));
    TRY(bin(x, OP_CAT, pos, *out, b, out));
  }
  return STROP_OK;
}

static strop_status parse_cmp(jlex *x, int *out) {
  TRY(parse_cat(x, out));
  for (;;) {
    size_t pos = x->tpos;
    int op = is_op(x, "==")   ? OP_EQ
             : is_op(x, "!=") ? OP_NE
             : is_op(x, "<=") ? OP_LE
             : is_op(x, ">=") ? OP_GE
             : is_op(x, "<")  ? OP_LT
             : is_op(x, ">")  ? OP_GT
             : is_kw(x, "in") ? OP_IN
                              : -1;
    if (op < 0 && is_kw(x, "not")) { /* "not in" */
      jlex y = *x;
      TRY(lex_next(&y));
      if (!is_kw(&y, "in")) return STROP_OK;
      *x = y;
      op = OP_NOTIN;
    }
    if (op < 0) return STROP_OK;
    int b;
    TRY(lex_next(x));
    TRY(parse_cat(x, &b));
    TRY(bin(x, op, pos, *out, b, out));
  }
}

static strop_status parse_not(jlex *x, int *out) {
  if (is_kw(x, "not")) {
    size_t pos = x->tpos;
    TRY(lex_next(x));
    if (++x->depth > J_MAX_DEPTH) return jerr(x->t, STROP_E_FORMAT, pos, "nested too deeply");
    int a;
    TRY(parse_not(x, &a));
    x->depth--;
    TRY(mk(x, E_NOT, pos, out));
    x->t->nodes[*out].a = a;
    return STROP_OK;
  }
  return parse_cmp(x, out);
}

static strop_status parse_and(jlex *x, int *out) {
  TRY(parse_not(x, out));
  while (is_kw(x, "and")) {
    size_t pos = x->tpos;
    int b;
    TRY(lex_next(x));
    TRY(parse_not(x, &b));
    TRY(bin(x, OP_AND, pos, *out, b, out));
  }
  return STROP_OK;
}

static strop_status parse_or(jlex *x, int *out) {
  TRY(parse_and(x, out));
  while (is_kw(x, "or")) {
    size_t pos = x->tpos;
    int b;
    TRY(lex_next(x));
    TRY(parse_and(x, &b));
    TRY(bin(x, OP_OR, pos, *out, b, out));
  }
  return STROP_OK;
}

static strop_status parse_expr(jlex *x, int *out) {
  size_t pos = x->tpos;
  if (++x->depth > J_MAX_DEPTH) return jerr(x->t, STROP_E_FORMAT, pos, "nested too deeply");
  TRY(parse_or(x, out));
  if (is_kw(x, "if")) { /* a if cond else b */
    int c, e = -1, n;
    TRY(lex_next(x));
    TRY(parse_or(x, &c));
    if (is_kw(x, "else")) {
      TRY(lex_next(x));
      TRY(parse_expr(x, &e));
    }
    TRY(mk(x, E_COND, pos, &n));
    x->t->nodes[n].a = c;
    x->t->nodes[n].b = *out;
    x->t->nodes[n].c = e;
    *out = n;
  }
  x->depth--;
  return STROP_OK;
}

/* ---------------------------------------------------------------- template ---- */
enum { P_TEXT, P_EXPR, P_STMT };
typedef struct piece {
  int kind;
  size_t b, e; /* text: the bytes; tags: the inside */
  size_t tag;  /* tags: offset of the opening brace */
} piece;

typedef struct pieces {
  piece *v;
  int n, cap;
} pieces;

static strop_status push_piece(pieces *ps, int kind, size_t b, size_t e, size_t tag) {
  if (ps->n == ps->cap) {
    int nc = ps->cap ? ps->cap * 2 : 64;
    piece *p = strop__realloc(ps->v, (size_t)nc * sizeof *p);
    if (!p) return STROP__NOMEM(FN);
    ps->v = p;
    ps->cap = nc;
  }
  ps->v[ps->n].kind = kind;
  ps->v[ps->n].b = b;
  ps->v[ps->n].e = e;
  ps->v[ps->n].tag = tag;
  ps->n++;
  return STROP_OK;
}

/* Cuts the source into text and tags, applying whitespace control ({%- -%}) and the settings
 * transformers renders with (trim_blocks, lstrip_blocks). Comments are dropped. */
static strop_status split(jtpl *t, pieces *ps) {
  const char *s = t->src;
  size_t n = t->len, p = 0;
  int strip_next = 0; /* the previous tag ended with '-' (all whitespace) or was a block (one
                         newline: 2) */
  while (p <= n) {
    size_t q = p;
    while (q + 1 < n && !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#')))
      q++;
    if (q + 1 >= n) q = n;
    size_t b = p, e = q;
    if (strip_next == 1)
      while (b < e && is_ws(s[b])) b++;
    else if (strip_next == 2) {
      if (b < e && s[b] == '\n') b++;
      else if (b + 1 < e && s[b] == '\r' && s[b + 1] == '\n') b += 2;
    }
    if (q == n) {
      if (b < e) TRY(push_piece(ps, P_TEXT, b, e, b));
      break;
    }
    char open = s[q + 1];
    size_t in = q + 2;
    int lminus = in < n && s[in] == '-', lplus = in < n && s[in] == '+';
    if (lminus || lplus) in++;
    if (lminus) {
      while (e > b && is_ws(s[e - 1])) e--;
    } else if (open != '{' && !lplus) { /* lstrip_blocks: a tag alone at the start of a line */
      size_t k = e;
      while (k > b && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
      if (k == 0 || s[k - 1] == '\n') e = k;
    }
    if (b < e) TRY(push_piece(ps, P_TEXT, b, e, b));
    /* the tag's end, skipping string literals */
    size_t k = in;
    char close = open == '{' ? '}' : open;
    int found = 0;
    char quote = 0;
    for (; k + 1 < n; k++) {
      if (open != '#') {
        if (quote) {
          if (s[k] == '\\') k++;
          else if (s[k] == quote) quote = 0;
          continue;
        }
        if (s[k] == '\'' || s[k] == '"') {
          quote = s[k];
          continue;
        }
      }
      if (s[k] == close && s[k + 1] == '}') {
        found = 1;
        break;
      }
    }
    if (!found) return jerr(t, STROP_E_FORMAT, q, "'%c%c' is never closed", '{', open);
    size_t ie = k;
    int rminus = ie > in && s[ie - 1] == '-';
    if (rminus) ie--;
    if (open != '#') TRY(push_piece(ps, open == '{' ? P_EXPR : P_STMT, in, ie, q));
    strip_next = rminus ? 1 : open != '{' ? 2 : 0;
    p = k + 2;
  }
  return STROP_OK;
}

typedef struct pstate {
  jtpl *t;
  pieces ps;
  int at;
  int depth;
} pstate;

/* Parses statements into a body until one of the end keywords (NULL: the end of the
 * template); the keyword found is left at ps.v[at]. */
static strop_status parse_body(pstate *P, const char *const *ends, int *first, const char **got);

static strop_status tag_lex(pstate *P, jlex *x) {
  piece *pc = &P->ps.v[P->at];
  memset(x, 0, sizeof *x);
  x->t = P->t;
  x->p = pc->b;
  x->end = pc->e;
  return lex_next(x);
}

static strop_status tag_end(jlex *x) {
  if (x->kind != T_EOF)
    return jerr(x->t, STROP_E_FORMAT, x->tpos, "unexpected '%.*s' in the tag",
                x->kind == T_STR ? 1 : (int)x->tn, x->kind == T_STR ? "'" : x->ts);
  return STROP_OK;
}

static strop_status parse_if(pstate *P, jlex *x, size_t pos, int *out) {
  jtpl *t = P->t;
  int n, cond;
  TRY(mk(x, S_IF, pos, &n));
  TRY(parse_expr(x, &cond));
  TRY(tag_end(x));
  t->nodes[n].a = cond;
  P->at++;
  static const char *const ENDS[] = {"elif", "else", "endif", NULL};
  const char *got;
  int body;
  TRY(parse_body(P, ENDS, &body, &got));
  t->nodes[n].b = body;
  jlex y;
  TRY(tag_lex(P, &y));
  TRY(lex_next(&y)); /* past the keyword */
  size_t gpos = P->ps.v[P->at].tag;
  if (!strcmp(got, "elif")) {
    int sub;
    TRY(parse_if(P, &y, gpos, &sub));
    t->nodes[n].c = sub;
    *out = n;
    return STROP_OK; /* the nested if consumed endif */
  }
  if (!strcmp(got, "else")) {
    TRY(tag_end(&y));
    P->at++;
    static const char *const ENDS2[] = {"endif", NULL};
    int eb;
    TRY(parse_body(P, ENDS2, &eb, &got));
    int blk;
    TRY(mk(x, S_BLOCK, gpos, &blk));
    t->nodes[blk].a = eb;
    t->nodes[n].c = blk;
    TRY(tag_lex(P, &y));
    TRY(lex_next(&y));
  }
  TRY(tag_end(&y));
  P->at++;
  *out = n;
  return STROP_OK;
}

static strop_status parse_stmt(pstate *P, int *out, const char *const *ends, const char **got) {
  jtpl *t = P->t;
  piece *pc = &P->ps.v[P->at];
  size_t pos = pc->tag;
  jlex x;
  TRY(tag_lex(P, &x));
  if (x.kind != T_NAME) return jerr(t, STROP_E_FORMAT, x.tpos, "a tag without a statement");
  for (int k = 0; ends && ends[k]; k++)
    if (is_kw(&x, ends[k])) {
      *got = ends[k];
      *out = -1;
      return STROP_OK;
    }
  if (++P->depth > J_MAX_DEPTH) return jerr(t, STROP_E_FORMAT, pos, "blocks nested too deeply");
  char kw[16];
  snprintf(kw, sizeof kw, "%.*s", x.tn < 15 ? (int)x.tn : 15, x.ts);
  size_t kwpos = x.tpos;
  TRY(lex_next(&x));
  int n;
  if (!strcmp(kw, "if")) {
    TRY(parse_if(P, &x, pos, &n));
  } else if (!strcmp(kw, "for")) {
    TRY(mk(&x, S_FOR, pos, &n));
    int names = -1, last = -1;
    do {
      if (last >= 0) TRY(lex_next(&x));
      if (x.kind != T_NAME) return jerr(t, STROP_E_FORMAT, x.tpos, "expected a loop variable");
      int v;
      TRY(mk(&x, E_NAME, x.tpos, &v));
      t->nodes[v].s = x.ts;
      t->nodes[v].n = x.tn;
      if (last < 0) names = v;
      else t->nodes[last].next = v;
      last = v;
      TRY(lex_next(&x));
    } while (is_op(&x, ","));
    if (!is_kw(&x, "in")) return jerr(t, STROP_E_FORMAT, x.tpos, "expected 'in'");
    TRY(lex_next(&x));
    int it, filt = -1;
    TRY(parse_or(&x, &it));
    if (is_kw(&x, "if")) {
      TRY(lex_next(&x));
      TRY(parse_expr(&x, &filt));
    }
    TRY(tag_end(&x));
    t->nodes[n].a = names;
    t->nodes[n].b = it;
    t->nodes[n].d = filt;
    P->at++;
    static const char *const ENDS[] = {"else", "endfor", NULL};
    const char *g;
    int body;
    TRY(parse_body(P, ENDS, &body, &g));
    t->nodes[n].i = body;
    jlex y;
    TRY(tag_lex(P, &y));
    TRY(lex_next(&y));
    TRY(tag_end(&y));
    P->at++;
    if (!strcmp(g, "else")) {
      static const char *const ENDS2[] = {"endfor", NULL};
      int eb;
      TRY(parse_body(P, ENDS2, &eb, &g));
      t->nodes[n].c = eb;
      TRY(tag_lex(P, &y));
      TRY(lex_next(&y));
      TRY(tag_end(&y));
      P->at++;
    }
  } else if (!strcmp(kw, "set")) {
    TRY(mk(&x, S_SET, pos, &n));
    if (x.kind != T_NAME) return jerr(t, STROP_E_FORMAT, x.tpos, "expected a variable name");
    t->nodes[n].s = x.ts;
    t->nodes[n].n = x.tn;
    TRY(lex_next(&x));
    if (is_op(&x, ".")) {
      TRY(lex_next(&x));
      if (x.kind != T_NAME) return jerr(t, STROP_E_FORMAT, x.tpos, "expected an attribute name");
      t->nodes[n].s2 = x.ts;
      t->nodes[n].n2 = x.tn;
      TRY(lex_next(&x));
    }
    if (!is_op(&x, "="))
      return jerr(t, STROP_E_FORMAT, x.tpos,
                  "expected '=' ({%% set %%} blocks are not supported)");
    TRY(lex_next(&x));
    int v;
    TRY(parse_expr(&x, &v));
    TRY(tag_end(&x));
    t->nodes[n].a = v;
    P->at++;
  } else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
    TRY(mk(&x, kw[0] == 'b' ? S_BREAK : S_CONTINUE, pos, &n));
    TRY(tag_end(&x));
    P->at++;
  } else if (!strcmp(kw, "generation")) { /* transformers' assistant-mask marker: transparent */
    TRY(mk(&x, S_BLOCK, pos, &n));
    TRY(tag_end(&x));
    P->at++;
    static const char *const ENDS[] = {"endgeneration", NULL};
    const char *g;
    int body;
    TRY(parse_body(P, ENDS, &body, &g));
    t->nodes[n].a = body;
    jlex y;
    TRY(tag_lex(P, &y));
    TRY(lex_next(&y));
    TRY(tag_end(&y));
    P->at++;
  } else {
    return jerr(t, STROP_E_FORMAT, kwpos, "unknown syntax: the statement '%s'", kw);
  }
  P->depth--;
  *out = n;
  *got = NULL;
  return STROP_OK;
}

static strop_status parse_body(pstate *P, const char *const *ends, int *first, const char **got) {
  jtpl *t = P->t;
  int last = -1;
  *first = -1;
  *got = NULL;
  size_t open_pos = P->at > 0 && P->at - 1 < P->ps.n ? P->ps.v[P->at - 1].tag : 0;
  while (P->at < P->ps.n) {
    piece *pc = &P->ps.v[P->at];
    int n = -1;
    if (pc->kind == P_TEXT) {
      jlex x = {.t = t};
      TRY(mk(&x, S_TEXT, pc->b, &n));
      t->nodes[n].s = t->src + pc->b;
      t->nodes[n].n = pc->e - pc->b;
      P->at++;
    } else if (pc->kind == P_EXPR) {
      jlex x;
      TRY(tag_lex(P, &x));
      int e;
      TRY(parse_expr(&x, &e));
      TRY(tag_end(&x));
      TRY(mk(&x, S_OUT, pc->tag, &n));
      t->nodes[n].a = e;
      P->at++;
    } else {
      const char *g = NULL;
      TRY(parse_stmt(P, &n, ends, &g));
      if (g) {
        *got = g;
        return STROP_OK;
      }
    }
    if (last < 0) *first = n;
    else t->nodes[last].next = n;
    last = n;
  }
  if (ends) {
    int l;
    jlex x = {.t = t};
    (void)x;
    l = 0;
    while (ends[l + 1]) l++;
    return jerr(t, STROP_E_FORMAT, open_pos, "the block is never closed ({%% %s %%} missing)",
                ends[l]);
  }
  return STROP_OK;
}

static strop_status parse_template(jtpl *t) {
  pstate P;
  memset(&P, 0, sizeof P);
  P.t = t;
  strop_status st = split(t, &P.ps);
  const char *got = NULL;
  if (!st) st = parse_body(&P, NULL, &t->root, &got);
  strop__free(P.ps.v);
  return st;
}

/* ------------------------------------------------------------------ values ---- */
enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_STR, V_LIST, V_DICT, V_FUNC };
enum { FUNC_RAISE, FUNC_RANGE, FUNC_NAMESPACE };

typedef struct jval jval;
struct jval {
  int t;
  int64_t i;     /* bool, int, function id; list/dict: length */
  const char *s; /* string bytes (not NUL-terminated) */
  size_t n;
  jval *v;   /* list: items; dict: key, value, key, value ... */
  jval *box; /* a namespace: the dict it changes (shared by every copy) */
};

typedef struct arena_blk {
  struct arena_blk *prev;
  size_t used, cap;
  max_align_t data[];
} arena_blk;

typedef struct jvar {
  const char *name;
  size_t n;
  jval v;
} jvar;

typedef struct jrun {
  const jtpl *t;
  arena_blk *blk;
  size_t total;
  char *out;
  size_t olen, ocap;
  jvar *vars;
  int nvars, vcap;
  int64_t steps;
  int depth;
  int flow; /* 1 break, 2 continue */
  int full; /* the arena reached J_MAX_ARENA */
} jrun;

static void *ar_alloc(jrun *r, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!n) n = 16;
  if (!r->blk || r->blk->cap - r->blk->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    if (r->total + cap > J_MAX_ARENA) {
      r->full = 1;
      return NULL;
    }
    arena_blk *b = strop__malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->prev = r->blk;
    b->used = 0;
    b->cap = cap;
    r->blk = b;
    r->total += cap;
  }
  void *p = (char *)r->blk->data + r->blk->used;
  r->blk->used += n;
  return p;
}

static strop_status rerr(jrun *r, const jn *n, strop_status st, const char *what) {
  return jerr(r->t, st, n->pos, "%s", what);
}

static strop_status oom(jrun *r, const jn *n) {
  if (r->full)
    return jerr(r->t, STROP_E_FORMAT, n->pos, "the render needs more than %zu MiB of values",
                J_MAX_ARENA >> 20);
  return STROP__NOMEM(FN);
}

static jval mk_str(const char *s, size_t n) {
  jval v = {V_STR, 0, s, n, NULL, NULL};
  return v;
}
static jval mk_int(int t, int64_t i) {
  jval v = {t, i, NULL, 0, NULL, NULL};
  return v;
}

static const char *type_name(const jval *v) {
  static const char *const N[] = {"undefined", "none", "bool", "int",
                                  "str",       "list", "dict", "function"};
  return N[v->t];
}

static int truthy(const jval *v) {
  switch (v->t) {
    case V_BOOL:
    case V_INT: return v->i != 0;
    case V_STR: return v->n > 0;
    case V_LIST:
    case V_DICT: return (v->box ? v->box->i : v->i) > 0;
    case V_FUNC: return 1;
    default: return 0;
  }
}

static const jval *dict_of(const jval *v) { return v->box ? v->box : v; }

static int equal(const jval *a, const jval *b) {
  int an = a->t == V_BOOL || a->t == V_INT, bn = b->t == V_BOOL || b->t == V_INT;
  if (an && bn) return a->i == b->i;
  if (a->t != b->t) return 0;
  switch (a->t) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a->n == b->n && !memcmp(a->s, b->s, a->n);
    case V_LIST:
      if (a->i != b->i) return 0;
      for (int64_t k = 0; k < a->i; k++)
        if (!equal(&a->v[k], &b->v[k])) return 0;
      return 1;
    case V_DICT: {
      const jval *da = dict_of(a), *db = dict_of(b);
      if (da->i != db->i) return 0;
      for (int64_t k = 0; k < da->i; k++) {
        int hit = 0;
        for (int64_t m = 0; m < db->i && !hit; m++)
          hit = equal(&da->v[2 * k], &db->v[2 * m]) &&
                equal(&da->v[2 * k + 1], &db->v[2 * m + 1]);
        if (!hit) return 0;
      }
      return 1;
    }
    default: return a->i == b->i;
  }
}

/* A dict's value for a string key, or NULL. */
static const jval *dict_get(const jval *d, const char *k, size_t kn) {
  d = dict_of(d);
  for (int64_t m = 0; m < d->i; m++)
    if (d->v[2 * m].t == V_STR && d->v[2 * m].n == kn && !memcmp(d->v[2 * m].s, k, kn))
      return &d->v[2 * m + 1];
  return NULL;
}

/* ------------------------------------------------------------------ output ---- */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int heap; /* the render itself: grown with strop__realloc (not in the arena) */
} sbuf;

static int sb_put(jrun *r, sbuf *b, const char *s, size_t n) {
  if (b->n + n > J_MAX_OUT) return -2;
  if (b->n + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->n + n + 1) nc *= 2;
    char *p = b->heap ? strop__realloc(b->p, nc) : ar_alloc(r, nc);
    if (!p) return -1;
    if (b->n && !b->heap) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = nc;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  return 0;
}

/* The text Jinja prints for a value (Python's str(); repr() inside lists and dicts). */
static int to_text(jrun *r, sbuf *b, const jval *v, int repr) {
  char num[32];
  switch (v->t) {
    case V_UNDEF: return 0;
    case V_NONE: return sb_put(r, b, "None", 4);
    case V_BOOL: return v->i ? sb_put(r, b, "True", 4) : sb_put(r, b, "False", 5);
    case V_INT: {
      int l = snprintf(num, sizeof num, "%lld", (long long)v->i);
      return sb_put(r, b, num, (size_t)l);
    }
    case V_STR:
      if (!repr) return sb_put(r, b, v->s, v->n);
      {
        int e = sb_put(r, b, "'", 1);
        for (size_t k = 0; k < v->n && !e; k++) {
          char c = v->s[k];
          e = c == '\''   ? sb_put(r, b, "\\'", 2)
              : c == '\\' ? sb_put(r, b, "\\\\", 2)
              : c == '\n' ? sb_put(r, b, "\\n", 2)
                          : sb_put(r, b, &c, 1);
        }
        return e ? e : sb_put(r, b, "'", 1);
      }
    case V_LIST: {
      int e = sb_put(r, b, "[", 1);
      for (int64_t k = 0; k < v->i && !e; k++) {
        if (k) e = sb_put(r, b, ", ", 2);
        if (!e) e = to_text(r, b, &v->v[k], 1);
      }
      return e ? e : sb_put(r, b, "]", 1);
    }
    case V_DICT: {
      const jval *d = dict_of(v);
      int e = sb_put(r, b, v->box ? "Namespace(" : "{", v->box ? 10 : 1);
      for (int64_t k = 0; k < d->i && !e; k++) {
        if (k) e = sb_put(r, b, ", ", 2);
        if (!e) e = to_text(r, b, &d->v[2 * k], 1);
        if (!e) e = sb_put(r, b, ": ", 2);
        if (!e) e = to_text(r, b, &d->v[2 * k + 1], 1);
      }
      return e ? e : sb_put(r, b, v->box ? ")" : "}", 1);
    }
    default: return sb_put(r, b, "<function>", 10);
  }
}

/* transformers' tojson filter: json.dumps(x, ensure_ascii=False) — non-ASCII kept, control
 * characters escaped, separators ", " and ": ". Returns -3 for a value JSON has no form of. */
static int to_json(jrun *r, sbuf *b, const jval *v, int depth) {
  char num[32];
  if (depth > J_MAX_DEPTH) return -3;
  switch (v->t) {
    case V_NONE: return sb_put(r, b, "null", 4);
    case V_BOOL: return v->i ? sb_put(r, b, "true", 4) : sb_put(r, b, "false", 5);
    case V_INT: {
      int l = snprintf(num, sizeof num, "%lld", (long long)v->i);
      return sb_put(r, b, num, (size_t)l);
    }
    case V_STR: {
      int e = sb_put(r, b, "\"", 1);
      for (size_t k = 0; k < v->n && !e; k++) {
        unsigned char c = (unsigned char)v->s[k];
        if (c == '"') e = sb_put(r, b, "\\\"", 2);
        else if (c == '\\') e = sb_put(r, b, "\\\\", 2);
        else if (c == '\n') e = sb_put(r, b, "\\n", 2);
        else if (c == '\r') e = sb_put(r, b, "\\r", 2);
        else if (c == '\t') e = sb_put(r, b, "\\t", 2);
        else if (c == '\b') e = sb_put(r, b, "\\b", 2);
        else if (c == '\f') e = sb_put(r, b, "\\f", 2);
        else if (c < 0x20) {
          int l = snprintf(num, sizeof num, "\\u%04x", c);
          e = sb_put(r, b, num, (size_t)l);
        } else {
          e = sb_put(r, b, (const char *)&v->s[k], 1);
        }
      }
      return e ? e : sb_put(r, b, "\"", 1);
    }
    case V_LIST: {
      int e = sb_put(r, b, "[", 1);
      for (int64_t k = 0; k < v->i && !e; k++) {
        if (k) e = sb_put(r, b, ", ", 2);
        if (!e) e = to_json(r, b, &v->v[k], depth + 1);
      }
      return e ? e : sb_put(r, b, "]", 1);
    }
    case V_DICT: {
      const jval *d = dict_of(v);
      int e = sb_put(r, b, "{", 1);
      for (int64_t k = 0; k < d->i && !e; k++) {
        if (d->v[2 * k].t != V_STR) return -3;
        if (k) e = sb_put(r, b, ", ", 2);
        if (!e) e = to_json(r, b, &d->v[2 * k], depth + 1);
        if (!e) e = sb_put(r, b, ": ", 2);
        if (!e) e = to_json(r, b, &d->v[2 * k + 1], depth + 1);
      }
      return e ? e : sb_put(r, b, "}", 1);
    }
    default: return -3; /* undefined, functions */
  }
}

static strop_status put_err(jrun *r, const jn *n, int e) {
  if (e == -2)
    return jerr(r->t, STROP_E_FORMAT, n->pos, "the render is longer than %zu MiB",
                J_MAX_OUT >> 20);
  return oom(r, n);
}

static strop_status stringify(jrun *r, const jn *n, const jval *v, jval *out) {
  if (v->t == V_STR) {
    *out = *v;
    return STROP_OK;
  }
  sbuf b = {0};
  int e = to_text(r, &b, v, 0);
  if (e) return put_err(r, n, e);
  *out = mk_str(b.p ? b.p : "", b.n);
  return STROP_OK;
}

/* -------------------------------------------------------------- evaluation ---- */
static strop_status eval(jrun *r, int idx, jval *out);

static const jval *var_get(const jrun *r, const char *name, size_t n) {
  for (int k = r->nvars - 1; k >= 0; k--)
    if (r->vars[k].n == n && !memcmp(r->vars[k].name, name, n)) return &r->vars[k].v;
  return NULL;
}

/* Sets name in the innermost scope (scopes start at `floor`). */
static strop_status var_set(jrun *r, const jn *at, int floor, const char *name, size_t n,
                            const jval *v) {
  for (int k = r->nvars - 1; k >= floor; k--)
    if (r->vars[k].n == n && !memcmp(r->vars[k].name, name, n)) {
      r->vars[k].v = *v;
      return STROP_OK;
    }
  if (r->nvars >= J_MAX_VARS)
    return jerr(r->t, STROP_E_FORMAT, at->pos, "more than %d variables", J_MAX_VARS);
  if (r->nvars == r->vcap) {
    int nc = r->vcap ? r->vcap * 2 : 32;
    jvar *p = strop__realloc(r->vars, (size_t)nc * sizeof *p);
    if (!p) return STROP__NOMEM(FN);
    r->vars = p;
    r->vcap = nc;
  }
  r->vars[r->nvars].name = name;
  r->vars[r->nvars].n = n;
  r->vars[r->nvars].v = *v;
  r->nvars++;
  return STROP_OK;
}

static int64_t norm_index(int64_t i, int64_t len) { return i < 0 ? i + len : i; }

static strop_status subscript(jrun *r, const jn *n, const jval *o, const jval *k, jval *out) {
  if (o->t == V_LIST || o->t == V_STR) {
    if (k->t != V_INT && k->t != V_BOOL) {
      *out = mk_int(V_UNDEF, 0);
      return STROP_OK;
    }
    int64_t len = o->t == V_LIST ? o->i : (int64_t)o->n, i = norm_index(k->i, len);
    if (i < 0 || i >= len) {
      *out = mk_int(V_UNDEF, 0);
      return STROP_OK;
    }
    if (o->t == V_LIST) *out = o->v[i];
    else *out = mk_str(o->s + i, 1); /* byte-wise: templates index ASCII */
    return STROP_OK;
  }
  if (o->t == V_DICT) {
    const jval *d = dict_of(o);
    for (int64_t m = 0; m < d->i; m++)
      if (equal(&d->v[2 * m], k)) {
        *out = d->v[2 * m + 1];
        return STROP_OK;
      }
    *out = mk_int(V_UNDEF, 0);
    return STROP_OK;
  }
  if (o->t == V_UNDEF) {
    char msg[160];
    snprintf(msg, sizeof msg, "cannot subscript an undefined value");
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  *out = mk_int(V_UNDEF, 0);
  return STROP_OK;
}

static strop_status eval_slice(jrun *r, const jn *n, jval *out) {
  jval o, b[3];
  TRY(eval(r, n->a, &o));
  int idx[3] = {n->b, n->c, n->d};
  for (int k = 0; k < 3; k++) {
    b[k] = mk_int(V_NONE, 0);
    if (idx[k] >= 0 && r->t->nodes[idx[k]].kind != E_ABSENT) {
      TRY(eval(r, idx[k], &b[k]));
      if (b[k].t != V_INT && b[k].t != V_NONE)
        return rerr(r, n, STROP_E_FORMAT, "slice bounds must be integers");
    }
  }
  if (o.t != V_LIST && o.t != V_STR) {
    char msg[96];
    snprintf(msg, sizeof msg, "cannot slice a %s", type_name(&o));
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  int64_t len = o.t == V_LIST ? o.i : (int64_t)o.n;
  int64_t step = b[2].t == V_INT ? b[2].i : 1;
  if (step == 0) return rerr(r, n, STROP_E_FORMAT, "a slice step of 0");
  int64_t lo, hi;
  if (step > 0) {
    lo = b[0].t == V_INT ? norm_index(b[0].i, len) : 0;
    hi = b[1].t == V_INT ? norm_index(b[1].i, len) : len;
    lo = lo < 0 ? 0 : lo > len ? len : lo;
    hi = hi < 0 ? 0 : hi > len ? len : hi;
  } else {
    lo = b[0].t == V_INT ? norm_index(b[0].i, len) : len - 1;
    hi = b[1].t == V_INT ? norm_index(b[1].i, len) : -1;
    lo = lo < -1 ? -1 : lo > len - 1 ? len - 1 : lo;
    hi = hi < -1 ? -1 : hi > len - 1 ? len - 1 : hi;
  }
  int64_t cnt = 0;
  for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) cnt++;
  if (o.t == V_LIST) {
    jval *v = cnt ? ar_alloc(r, (size_t)cnt * sizeof *v) : NULL;
    if (cnt && !v) return oom(r, n);
    int64_t m = 0;
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) v[m++] = o.v[i];
    *out = o;
    out->v = v;
    out->i = cnt;
    out->box = NULL;
  } else {
    char *s = ar_alloc(r, (size_t)cnt + 1);
    if (!s) return oom(r, n);
    int64_t m = 0;
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) s[m++] = o.s[i];
    *out = mk_str(s, (size_t)cnt);
  }
  return STROP_OK;
}

static int is_space_char(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* upper (mode 1), lower (0), title (2), capitalize (3): Unicode simple case mappings. */
static strop_status str_case(jrun *r, const jn *n, const jval *s, int mode, jval *out) {
  char *p = ar_alloc(r, s->n * 2 + 4); /* a mapped character takes at most one byte more */
  if (!p) return oom(r, n);
  size_t w = 0;
  int start = 1;
  for (size_t k = 0; k < s->n;) {
    size_t l;
    uint32_t cp = strop__tx_utf8_get(s->s + k, &l);
    k += l;
    int up = mode == 1 || (mode == 2 && start) || (mode == 3 && w == 0);
    uint32_t m = (uint32_t)(up ? utf8proc_toupper((utf8proc_int32_t)cp)
                               : utf8proc_tolower((utf8proc_int32_t)cp));
    w += strop__tx_utf8_put(m, p + w);
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    start = !(c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO);
  }
  *out = mk_str(p, w);
  return STROP_OK;
}

static jval str_strip(const jval *s, int left, int right, const jval *chars) {
  size_t b = 0, e = s->n;
#define STRIPS(c) \
  (chars && chars->t == V_STR ? memchr(chars->s, (c), chars->n) != NULL : is_space_char(c))
  if (left)
    while (b < e && STRIPS(s->s[b])) b++;
  if (right)
    while (e > b && STRIPS(s->s[e - 1])) e--;
#undef STRIPS
  return mk_str(s->s + b, e - b);
}

static int64_t length_of(const jval *v) {
  if (v->t == V_STR) {
    int64_t c = 0;
    for (size_t k = 0; k < v->n; k++) c += ((unsigned char)v->s[k] & 0xC0) != 0x80;
    return c;
  }
  if (v->t == V_LIST) return v->i;
  if (v->t == V_DICT) return dict_of(v)->i;
  return -1;
}

/* Evaluates the argument chain into args (at most 4 positional) and kwargs. */
typedef struct jargs {
  jval pos[4];
  int np;
  const jn *kw[8];
  jval kv[8];
  int nk;
} jargs;

static strop_status eval_args(jrun *r, const jn *at, int first, jargs *a) {
  memset(a, 0, sizeof *a);
  for (int k = first; k >= 0; k = r->t->nodes[k].next) {
    const jn *an = &r->t->nodes[k];
    if (an->kind == E_KWARG) {
      if (a->nk >= 8) return rerr(r, at, STROP_E_FORMAT, "more than 8 keyword arguments");
      a->kw[a->nk] = an;
      TRY(eval(r, an->a, &a->kv[a->nk]));
      a->nk++;
    } else {
      if (a->np >= 4) return rerr(r, at, STROP_E_FORMAT, "more than 4 arguments");
      TRY(eval(r, k, &a->pos[a->np]));
      a->np++;
    }
  }
  return STROP_OK;
}

static strop_status want_str(jrun *r, const jn *n, const jval *v, const char *what) {
  if (v->t == V_STR) return STROP_OK;
  char msg[160];
  snprintf(msg, sizeof msg, "%s needs a string, got %s", what, type_name(v));
  return rerr(r, n, STROP_E_FORMAT, msg);
}

static int name_is(const jn *n, const char *s) {
  return n->n == strlen(s) && !memcmp(n->s, s, n->n);
}

static strop_status apply_filter(jrun *r, const jn *n, const jval *v, jval *out) {
  jargs a;
  TRY(eval_args(r, n, n->b, &a));
  if (name_is(n, "trim")) {
    TRY(want_str(r, n, v, "trim"));
    *out = str_strip(v, 1, 1, a.np ? &a.pos[0] : NULL);
  } else if (name_is(n, "length") || name_is(n, "count")) {
    int64_t l = length_of(v);
    if (l < 0) {
      char msg[96];
      snprintf(msg, sizeof msg, "a %s has no length", type_name(v));
      return rerr(r, n, STROP_E_FORMAT, msg);
    }
    *out = mk_int(V_INT, l);
  } else if (name_is(n, "upper") || name_is(n, "lower") || name_is(n, "title") ||
             name_is(n, "capitalize")) {
    TRY(want_str(r, n, v, "the filter"));
    TRY(str_case(r, n, v, n->s[0] == 'u' ? 1 : n->s[0] == 'l' ? 0 : n->s[0] == 't' ? 2 : 3, out));
  } else if (name_is(n, "string")) {
    TRY(stringify(r, n, v, out));
  } else if (name_is(n, "first") || name_is(n, "last")) {
    if (v->t != V_LIST || v->i == 0) {
      *out = mk_int(V_UNDEF, 0);
    } else {
      *out = v->v[n->s[0] == 'f' ? 0 : v->i - 1];
    }
  } else if (name_is(n, "default") || name_is(n, "d")) {
    int use = v->t == V_UNDEF || (a.np > 1 && truthy(&a.pos[1]) && !truthy(v));
    *out = use ? (a.np ? a.pos[0] : mk_str("", 0)) : *v;
  } else if (name_is(n, "tojson")) {
    if (a.np || a.nk) return rerr(r, n, STROP_E_FORMAT, "tojson takes no arguments here");
    sbuf b = {0};
    int e = to_json(r, &b, v, 0);
    if (e == -3) {
      char msg[96];
      snprintf(msg, sizeof msg, "tojson cannot write a %s", type_name(v));
      return rerr(r, n, STROP_E_FORMAT, msg);
    }
    if (e) return put_err(r, n, e);
    *out = mk_str(b.p ? b.p : "", b.n);
  } else if (name_is(n, "join")) {
    if (v->t != V_LIST) return rerr(r, n, STROP_E_FORMAT, "join needs a list");
    sbuf b = {0};
    int e = 0;
    for (int64_t k = 0; k < v->i && !e; k++) {
      if (k && a.np) e = to_text(r, &b, &a.pos[0], 0);
      if (!e) e = to_text(r, &b, &v->v[k], 0);
    }
    if (e) return put_err(r, n, e);
    *out = mk_str(b.p ? b.p : "", b.n);
  } else {
    char msg[96];
    snprintf(msg, sizeof msg, "unknown filter '%.*s'", (int)(n->n < 40 ? n->n : 40), n->s);
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  return STROP_OK;
}

static strop_status apply_test(jrun *r, const jn *n, const jval *v, jval *out) {
  jargs a;
  TRY(eval_args(r, n, n->b, &a));
  int res;
  if (name_is(n, "defined")) res = v->t != V_UNDEF;
  else if (name_is(n, "undefined")) res = v->t == V_UNDEF;
  else if (name_is(n, "none")) res = v->t == V_NONE;
  else if (name_is(n, "string")) res = v->t == V_STR;
  else if (name_is(n, "number") || name_is(n, "integer")) res = v->t == V_INT;
  else if (name_is(n, "boolean")) res = v->t == V_BOOL;
  else if (name_is(n, "mapping")) res = v->t == V_DICT;
  else if (name_is(n, "sequence") || name_is(n, "iterable"))
    res = v->t == V_LIST || v->t == V_STR || v->t == V_DICT;
  else if (name_is(n, "true") || name_is(n, "false"))
    res = v->t == V_BOOL && v->i == (n->s[0] == 't');
  else if (name_is(n, "eq") || name_is(n, "equalto") || name_is(n, "sameas")) {
    if (a.np < 1) return rerr(r, n, STROP_E_FORMAT, "the test needs an argument");
    res = equal(v, &a.pos[0]);
  } else if (name_is(n, "odd") || name_is(n, "even")) {
    if (v->t != V_INT) return rerr(r, n, STROP_E_FORMAT, "odd/even need an integer");
    res = (v->i % 2 != 0) == (n->s[0] == 'o');
  } else {
    char msg[96];
    snprintf(msg, sizeof msg, "unknown test '%.*s'", (int)(n->n < 40 ? n->n : 40), n->s);
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  *out = mk_int(V_BOOL, n->i ? !res : res);
  return STROP_OK;
}

static strop_status call(jrun *r, const jn *n, jval *out) {
  const jn *cal = &r->t->nodes[n->a];
  jargs a;
  if (cal->kind == E_ATTR) { /* a method */
    jval o;
    TRY(eval(r, cal->a, &o));
    TRY(eval_args(r, n, n->b, &a));
    if (o.t == V_STR) {
      if (name_is(cal, "strip") || name_is(cal, "lstrip") || name_is(cal, "rstrip")) {
        *out = str_strip(&o, cal->s[0] != 'r', cal->s[0] != 'l', a.np ? &a.pos[0] : NULL);
        return STROP_OK;
      }
      if (name_is(cal, "upper") || name_is(cal, "lower") || name_is(cal, "title") ||
          name_is(cal, "capitalize"))
        return str_case(r, n, &o,
                        cal->s[0] == 'u'   ? 1
                        : cal->s[0] == 'l' ? 0
                        : cal->s[0] == 't' ? 2
                                           : 3,
                        out);
      if (name_is(cal, "startswith") || name_is(cal, "endswith")) {
        if (a.np != 1 || a.pos[0].t != V_STR)
          return rerr(r, n, STROP_E_FORMAT, "startswith/endswith take one string");
        const jval *p = &a.pos[0];
        int hit = p->n <= o.n && !memcmp(cal->s[0] == 's' ? o.s : o.s + o.n - p->n, p->s, p->n);
        *out = mk_int(V_BOOL, hit);
        return STROP_OK;
      }
    } else if (o.t == V_DICT) {
      const jval *d = dict_of(&o);
      if (name_is(cal, "get")) {
        if (a.np < 1) return rerr(r, n, STROP_E_FORMAT, "get needs a key");
        jval v;
        TRY(subscript(r, n, &o, &a.pos[0], &v));
        *out = v.t == V_UNDEF ? (a.np > 1 ? a.pos[1] : mk_int(V_NONE, 0)) : v;
        return STROP_OK;
      }
      if (name_is(cal, "items") || name_is(cal, "keys") || name_is(cal, "values")) {
        jval *v = d->i ? ar_alloc(r, (size_t)d->i * sizeof *v) : NULL;
        if (d->i && !v) return oom(r, n);
        for (int64_t k = 0; k < d->i; k++) {
          if (cal->s[0] == 'k') {
            v[k] = d->v[2 * k];
          } else if (cal->s[0] == 'v') {
            v[k] = d->v[2 * k + 1];
          } else {
            jval *pair = ar_alloc(r, 2 * sizeof *pair);
            if (!pair) return oom(r, n);
            pair[0] = d->v[2 * k];
            pair[1] = d->v[2 * k + 1];
            v[k] = mk_int(V_LIST, 2);
            v[k].v = pair;
          }
        }
        *out = mk_int(V_LIST, d->i);
        out->v = v;
        return STROP_OK;
      }
    }
    char msg[128];
    snprintf(msg, sizeof msg, "unknown method '%.*s' of a %s", (int)(cal->n < 40 ? cal->n : 40),
             cal->s, type_name(&o));
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  jval f;
  TRY(eval(r, n->a, &f));
  if (f.t != V_FUNC) {
    char msg[96];
    snprintf(msg, sizeof msg, "cannot call a %s", type_name(&f));
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  TRY(eval_args(r, n, n->b, &a));
  if (f.i == FUNC_RAISE) {
    jval m = a.np ? a.pos[0] : mk_str("", 0);
    if (m.t != V_STR) TRY(stringify(r, n, &m, &m));
    int line, col;
    line_col(r->t, n->pos, &line, &col);
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: %s:%d:%d: the template refused the messages: %.*s", FN, r->t->name,
                      line, col, (int)(m.n < 400 ? m.n : 400), m.s);
  }
  if (f.i == FUNC_RANGE) {
    int64_t lo = 0, hi = 0, step = 1;
    for (int k = 0; k < a.np; k++)
      if (a.pos[k].t != V_INT) return rerr(r, n, STROP_E_FORMAT, "range takes integers");
    if (a.np == 1) hi = a.pos[0].i;
    else if (a.np >= 2) lo = a.pos[0].i, hi = a.pos[1].i;
    if (a.np == 3) step = a.pos[2].i;
    if (a.np < 1 || a.np > 3 || step == 0)
      return rerr(r, n, STROP_E_FORMAT, "range takes 1 to 3 integers, a step other than 0");
    int64_t cnt = 0;
    if (step > 0 && hi > lo) cnt = (hi - lo + step - 1) / step;
    if (step < 0 && lo > hi) cnt = (lo - hi - step - 1) / -step;
    if (cnt > 1000000) return rerr(r, n, STROP_E_FORMAT, "range of more than 10^6 values");
    jval *v = cnt ? ar_alloc(r, (size_t)cnt * sizeof *v) : NULL;
    if (cnt && !v) return oom(r, n);
    for (int64_t k = 0; k < cnt; k++) v[k] = mk_int(V_INT, lo + k * step);
    *out = mk_int(V_LIST, cnt);
    out->v = v;
    return STROP_OK;
  }
  /* namespace(k=v, ...): a dict that {% set ns.k = ... %} changes */
  jval *box = ar_alloc(r, sizeof *box);
  jval *kv = a.nk ? ar_alloc(r, (size_t)a.nk * 2 * sizeof *kv) : NULL;
  if (!box || (a.nk && !kv)) return oom(r, n);
  for (int k = 0; k < a.nk; k++) {
    kv[2 * k] = mk_str(a.kw[k]->s, a.kw[k]->n);
    kv[2 * k + 1] = a.kv[k];
  }
  *box = mk_int(V_DICT, a.nk);
  box->v = kv;
  *out = mk_int(V_DICT, 0);
  out->box = box;
  return STROP_OK;
}

static strop_status arith(jrun *r, const jn *n, const jval *x, const jval *y, jval *out) {
  int op = (int)n->i;
  int xn = x->t == V_INT || x->t == V_BOOL, yn = y->t == V_INT || y->t == V_BOOL;
  if (op == OP_ADD && x->t == V_STR && y->t == V_STR) {
    if (x->n + y->n > J_MAX_OUT) return put_err(r, n, -2);
    char *p = ar_alloc(r, x->n + y->n + 1);
    if (!p) return oom(r, n);
    memcpy(p, x->s, x->n);
    memcpy(p + x->n, y->s, y->n);
    *out = mk_str(p, x->n + y->n);
    return STROP_OK;
  }
  if (op == OP_ADD && x->t == V_LIST && y->t == V_LIST) {
    int64_t c = x->i + y->i;
    jval *v = c ? ar_alloc(r, (size_t)c * sizeof *v) : NULL;
    if (c && !v) return oom(r, n);
    if (x->i) memcpy(v, x->v, (size_t)x->i * sizeof *v);
    if (y->i) memcpy(v + x->i, y->v, (size_t)y->i * sizeof *v);
    *out = mk_int(V_LIST, c);
    out->v = v;
    return STROP_OK;
  }
  if (!xn || !yn) {
    static const char *const S[] = {"or",     "and", "==", "!=", "<", "<=", ">", ">=", "in",
                                    "not in", "+",   "-",  "*",  "/", "//", "%", "~"};
    char msg[128];
    snprintf(msg, sizeof msg, "unsupported operand types for %s: %s and %s", S[op], type_name(x),
             type_name(y));
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  int64_t a = x->i, b = y->i, v;
  if ((op == OP_DIV || op == OP_FDIV || op == OP_MOD) && b == 0)
    return rerr(r, n, STROP_E_FORMAT, "division by zero");
  switch (op) {
    case OP_ADD: v = (int64_t)((uint64_t)a + (uint64_t)b); break;
    case OP_SUB: v = (int64_t)((uint64_t)a - (uint64_t)b); break;
    case OP_MUL: v = (int64_t)((uint64_t)a * (uint64_t)b); break;
    case OP_DIV:
      if (a % b) return rerr(r, n, STROP_E_FORMAT, "'/' that leaves a fraction (integers only)");
      /* fall through */
    case OP_FDIV:
      if (a == INT64_MIN && b == -1) return rerr(r, n, STROP_E_FORMAT, "integer overflow");
      v = a / b;
      if ((a % b != 0) && ((a < 0) != (b < 0))) v--; /* Python floors */
      break;
    default: /* OP_MOD, Python's sign */
      if (b == -1) {
        v = 0;
        break;
      }
      v = a % b;
      if (v != 0 && ((v < 0) != (b < 0))) v += b;
  }
  *out = mk_int(V_INT, v);
  return STROP_OK;
}

static int compare_order(const jval *x, const jval *y, int *res) {
  int xn = x->t == V_INT || x->t == V_BOOL, yn = y->t == V_INT || y->t == V_BOOL;
  if (xn && yn) {
    *res = x->i < y->i ? -1 : x->i > y->i;
    return 0;
  }
  if (x->t == V_STR && y->t == V_STR) {
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, m);
    *res = c ? (c < 0 ? -1 : 1) : (x->n < y->n ? -1 : x->n > y->n);
    return 0;
  }
  return -1;
}

static strop_status eval_bin(jrun *r, const jn *n, jval *out) {
  int op = (int)n->i;
  jval x, y;
  TRY(eval(r, n->a, &x));
  if (op == OP_AND || op == OP_OR) { /* Python: the deciding operand */
    if ((op == OP_AND) != truthy(&x)) {
      *out = x;
      return STROP_OK;
    }
    return eval(r, n->b, out);
  }
  TRY(eval(r, n->b, &y));
  switch (op) {
    case OP_EQ:
    case OP_NE: *out = mk_int(V_BOOL, equal(&x, &y) == (op == OP_EQ)); return STROP_OK;
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: {
      int c;
      if (compare_order(&x, &y, &c)) {
        char msg[128];
        snprintf(msg, sizeof msg, "cannot compare a %s with a %s", type_name(&x), type_name(&y));
        return rerr(r, n, STROP_E_FORMAT, msg);
      }
      int v = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
      *out = mk_int(V_BOOL, v);
      return STROP_OK;
    }
    case OP_IN:
    case OP_NOTIN: {
      int hit = 0;
      if (y.t == V_STR) {
        if (x.t != V_STR)
          return rerr(r, n, STROP_E_FORMAT, "'in <string>' needs a string on the left");
        if (!x.n) hit = 1;
        for (size_t k = 0; !hit && k + x.n <= y.n; k++) hit = !memcmp(y.s + k, x.s, x.n);
      } else if (y.t == V_LIST) {
        for (int64_t k = 0; k < y.i && !hit; k++) hit = equal(&x, &y.v[k]);
      } else if (y.t == V_DICT) {
        const jval *d = dict_of(&y);
        for (int64_t k = 0; k < d->i && !hit; k++) hit = equal(&x, &d->v[2 * k]);
      } else {
        char msg[96];
        snprintf(msg, sizeof msg, "'in' needs a string, list or dict, got %s", type_name(&y));
        return rerr(r, n, STROP_E_FORMAT, msg);
      }
      *out = mk_int(V_BOOL, hit == (op == OP_IN));
      return STROP_OK;
    }
    case OP_CAT: {
      jval a, b;
      TRY(stringify(r, n, &x, &a));
      TRY(stringify(r, n, &y, &b));
      jn fake = *n;
      fake.i = OP_ADD;
      return arith(r, &fake, &a, &b, out);
    }
    default: return arith(r, n, &x, &y, out);
  }
}

static strop_status eval(jrun *r, int idx, jval *out) {
  const jn *n = &r->t->nodes[idx];
  if (++r->depth > 4 * J_MAX_DEPTH) return rerr(r, n, STROP_E_FORMAT, "nested too deeply");
  strop_status st = STROP_OK;
  switch (n->kind) {
    case E_STR: *out = mk_str(r->t->strs + n->i, n->n); break;
    case E_INT: *out = mk_int(V_INT, n->i); break;
    case E_BOOL: *out = mk_int(V_BOOL, n->i); break;
    case E_NONE: *out = mk_int(V_NONE, 0); break;
    case E_NAME: {
      const jval *v = var_get(r, n->s, n->n);
      if (v) *out = *v;
      else if (name_is(n, "raise_exception")) *out = mk_int(V_FUNC, FUNC_RAISE);
      else if (name_is(n, "range")) *out = mk_int(V_FUNC, FUNC_RANGE);
      else if (name_is(n, "namespace")) *out = mk_int(V_FUNC, FUNC_NAMESPACE);
      else *out = mk_int(V_UNDEF, 0);
      break;
    }
    case E_LIST: {
      int64_t c = 0;
      for (int k = n->a; k >= 0; k = r->t->nodes[k].next) c++;
      jval *v = c ? ar_alloc(r, (size_t)c * sizeof *v) : NULL;
      if (c && !v) {
        st = oom(r, n);
        break;
      }
      int64_t m = 0;
      for (int k = n->a; k >= 0 && !st; k = r->t->nodes[k].next) st = eval(r, k, &v[m++]);
      *out = mk_int(V_LIST, c);
      out->v = v;
      break;
    }
    case E_DICT: {
      int64_t c = 0;
      for (int k = n->a; k >= 0; k = r->t->nodes[k].next) c++;
      jval *v = c ? ar_alloc(r, (size_t)c * 2 * sizeof *v) : NULL;
      if (c && !v) {
        st = oom(r, n);
        break;
      }
      int64_t m = 0;
      for (int k = n->a; k >= 0 && !st; k = r->t->nodes[k].next, m++) {
        st = eval(r, r->t->nodes[k].a, &v[2 * m]);
        if (!st) st = eval(r, r->t->nodes[k].b, &v[2 * m + 1]);
      }
      *out = mk_int(V_DICT, c);
      out->v = v;
      break;
    }
    case E_ATTR: {
      jval o;
      if ((st = eval(r, n->a, &o))) break;
      if (o.t == V_UNDEF) {
        st = rerr(r, n, STROP_E_FORMAT, "an attribute of an undefined value");
        break;
      }
      const jval *v = o.t == V_DICT ? dict_get(&o, n->s, n->n) : NULL;
      *out = v ? *v : mk_int(V_UNDEF, 0);
      break;
    }
    case E_INDEX: {
      jval o, k;
      if (!(st = eval(r, n->a, &o)) && !(st = eval(r, n->b, &k)))
        st = subscript(r, n, &o, &k, out);
      break;
    }
    case E_SLICE: st = eval_slice(r, n, out); break;
    case E_CALL: st = call(r, n, out); break;
    case E_FILTER: {
      jval v;
      if (!(st = eval(r, n->a, &v))) st = apply_filter(r, n, &v, out);
      break;
    }
    case E_TEST: {
      jval v;
      if (!(st = eval(r, n->a, &v))) st = apply_test(r, n, &v, out);
      break;
    }
    case E_NEG: {
      jval v;
      if ((st = eval(r, n->a, &v))) break;
      if (v.t != V_INT && v.t != V_BOOL) {
        st = rerr(r, n, STROP_E_FORMAT, "unary '-' needs a number");
        break;
      }
      *out = mk_int(V_INT, (int64_t)(0 - (uint64_t)v.i));
      break;
    }
    case E_NOT: {
      jval v;
      if (!(st = eval(r, n->a, &v))) *out = mk_int(V_BOOL, !truthy(&v));
      break;
    }
    case E_BIN: st = eval_bin(r, n, out); break;
    case E_COND: {
      jval c;
      if ((st = eval(r, n->a, &c))) break;
      if (truthy(&c)) st = eval(r, n->b, out);
      else if (n->c >= 0) st = eval(r, n->c, out);
      else *out = mk_int(V_UNDEF, 0);
      break;
    }
    case E_KWARG: st = rerr(r, n, STROP_E_FORMAT, "a keyword argument outside a call"); break;
    default: st = rerr(r, n, STROP_E_INTERNAL, "an unknown expression node"); break;
  }
  r->depth--;
  return st;
}

static strop_status exec_body(jrun *r, int first);

static strop_status exec_for(jrun *r, const jn *n) {
  jval it;
  TRY(eval(r, n->b, &it));
  const jn *names = &r->t->nodes[n->a];
  int two = names->next >= 0;
  if (two && r->t->nodes[names->next].next >= 0)
    return rerr(r, n, STROP_E_FORMAT, "a loop unpacks at most 2 names");
  jval items;
  if (it.t == V_LIST) {
    items = it;
  } else if (it.t == V_DICT) { /* iterating a dict gives its keys */
    const jval *d = dict_of(&it);
    jval *v = d->i ? ar_alloc(r, (size_t)d->i * sizeof *v) : NULL;
    if (d->i && !v) return oom(r, n);
    for (int64_t k = 0; k < d->i; k++) v[k] = d->v[2 * k];
    items = mk_int(V_LIST, d->i);
    items.v = v;
  } else if (it.t == V_STR) {
    jval *v = it.n ? ar_alloc(r, it.n * sizeof *v) : NULL;
    if (it.n && !v) return oom(r, n);
    int64_t c = 0;
    for (size_t k = 0; k < it.n;) {
      size_t l = 1;
      while (k + l < it.n && ((unsigned char)it.s[k + l] & 0xC0) == 0x80) l++;
      v[c++] = mk_str(it.s + k, l);
      k += l;
    }
    items = mk_int(V_LIST, c);
    items.v = v;
  } else if (it.t == V_UNDEF || it.t == V_NONE) {
    items = mk_int(V_LIST, 0);
  } else {
    char msg[96];
    snprintf(msg, sizeof msg, "cannot loop over a %s", type_name(&it));
    return rerr(r, n, STROP_E_FORMAT, msg);
  }
  /* the items the filter keeps */
  jval *keep = items.v; /* without a filter: the items themselves */
  if (n->d >= 0 && items.i && !(keep = ar_alloc(r, (size_t)items.i * sizeof *keep)))
    return oom(r, n);
  int floor = r->nvars;
  int64_t m = 0;
  strop_status st = STROP_OK;
  for (int64_t k = 0; k < items.i && !st; k++) {
    const jval *x = &items.v[k];
    if (n->d >= 0) {
      r->nvars = floor;
      if (two) {
        if (x->t != V_LIST || x->i != 2) {
          st = rerr(r, n, STROP_E_FORMAT, "cannot unpack an item into 2 names");
          break;
        }
        st = var_set(r, n, floor, names->s, names->n, &x->v[0]);
        const jn *n2 = &r->t->nodes[names->next];
        if (!st) st = var_set(r, n, floor, n2->s, n2->n, &x->v[1]);
      } else {
        st = var_set(r, n, floor, names->s, names->n, x);
      }
      jval c;
      if (!st) st = eval(r, n->d, &c);
      if (!st && !truthy(&c)) continue;
    }
    if (keep != items.v) keep[m] = *x;
    m++;
  }
  r->nvars = floor;
  if (st) return st;
  /* loop: one dict changed in place each iteration */
  static const char *const LK[] = {"index0", "index",  "revindex0", "revindex", "first",
                                   "last",   "length", "previtem",  "nextitem"};
  enum { NLK = 9 };
  jval *lv = ar_alloc(r, 2 * NLK * sizeof *lv);
  if (!lv) return oom(r, n);
  for (int k = 0; k < NLK; k++) lv[2 * k] = mk_str(LK[k], strlen(LK[k]));
  jval loop = mk_int(V_DICT, NLK);
  loop.v = lv;
  for (int64_t k = 0; k < m && !st; k++) {
    if (++r->steps > J_MAX_STEPS)
      return rerr(r, n, STROP_E_FORMAT, "the render takes too many steps");
    const jval *x = &keep[k];
    lv[1] = mk_int(V_INT, k);
    lv[3] = mk_int(V_INT, k + 1);
    lv[5] = mk_int(V_INT, m - k - 1);
    lv[7] = mk_int(V_INT, m - k);
    lv[9] = mk_int(V_BOOL, k == 0);
    lv[11] = mk_int(V_BOOL, k == m - 1);
    lv[13] = mk_int(V_INT, m);
    lv[15] = k > 0 ? keep[k - 1] : mk_int(V_UNDEF, 0);
    lv[17] = k + 1 < m ? keep[k + 1] : mk_int(V_UNDEF, 0);
    r->nvars = floor;
    st = var_set(r, n, floor, "loop", 4, &loop);
    if (!st && two) {
      if (x->t != V_LIST || x->i != 2) {
        st = rerr(r, n, STROP_E_FORMAT, "cannot unpack an item into 2 names");
        break;
      }
      st = var_set(r, n, floor, names->s, names->n, &x->v[0]);
      const jn *n2 = &r->t->nodes[names->next];
      if (!st) st = var_set(r, n, floor, n2->s, n2->n, &x->v[1]);
    } else if (!st) {
      st = var_set(r, n, floor, names->s, names->n, x);
    }
    if (!st) st = exec_body(r, (int)n->i);
    if (r->flow == 1) {
      r->flow = 0;
      break;
    }
    r->flow = 0;
  }
  r->nvars = floor;
  if (!st && m == 0 && n->c >= 0) st = exec_body(r, n->c);
  return st;
}

static strop_status exec_body(jrun *r, int first) {
  strop_status st = STROP_OK;
  if (++r->depth > 4 * J_MAX_DEPTH)
    return rerr(r, &r->t->nodes[first], STROP_E_FORMAT, "nested too deeply");
  for (int k = first; k >= 0 && !st && !r->flow; k = r->t->nodes[k].next) {
    const jn *n = &r->t->nodes[k];
    if (++r->steps > J_MAX_STEPS) {
      st = rerr(r, n, STROP_E_FORMAT, "the render takes too many steps");
      break;
    }
    switch (n->kind) {
      case S_TEXT: {
        sbuf b = {r->out, r->olen, r->ocap, 1};
        int e = sb_put(r, &b, n->s, n->n);
        if (e) {
          st = put_err(r, n, e);
          break;
        }
        r->out = b.p;
        r->olen = b.n;
        r->ocap = b.cap;
        break;
      }
      case S_OUT: {
        jval v;
        if ((st = eval(r, n->a, &v))) break;
        sbuf b = {r->out, r->olen, r->ocap, 1};
        int e = to_text(r, &b, &v, 0);
        if (e) {
          st = put_err(r, n, e);
          break;
        }
        r->out = b.p;
        r->olen = b.n;
        r->ocap = b.cap;
        break;
      }
      case S_IF: {
        jval c;
        if ((st = eval(r, n->a, &c))) break;
        if (truthy(&c)) st = exec_body(r, n->b);
        else if (n->c >= 0)
          st = exec_body(r, n->c); /* an elif (S_IF) or an else (S_BLOCK), alone in its body */
        break;
      }
      case S_BLOCK: st = exec_body(r, n->a); break;
      case S_FOR: st = exec_for(r, n); break;
      case S_SET: {
        jval v;
        if ((st = eval(r, n->a, &v))) break;
        if (!n->s2) {
          /* the innermost scope: a for loop's body or the template */
          int floor = 0;
          for (int k2 = r->nvars - 1; k2 >= 0; k2--)
            if (r->vars[k2].n == 4 && !memcmp(r->vars[k2].name, "loop", 4)) {
              floor = k2;
              break;
            }
          st = var_set(r, n, floor, n->s, n->n, &v);
          break;
        }
        const jval *ns = var_get(r, n->s, n->n);
        if (!ns || ns->t != V_DICT || !ns->box) {
          st = rerr(r, n, STROP_E_FORMAT, "{% set x.attr %} needs x to be a namespace()");
          break;
        }
        jval *d = ns->box;
        int64_t k2;
        for (k2 = 0; k2 < d->i; k2++)
          if (d->v[2 * k2].n == n->n2 && !memcmp(d->v[2 * k2].s, n->s2, n->n2)) break;
        if (k2 == d->i) {
          jval *nv = ar_alloc(r, (size_t)(d->i + 1) * 2 * sizeof *nv);
          if (!nv) {
            st = oom(r, n);
            break;
          }
          if (d->i) memcpy(nv, d->v, (size_t)d->i * 2 * sizeof *nv);
          nv[2 * d->i] = mk_str(n->s2, n->n2);
          d->v = nv;
          d->i++;
        }
        d->v[2 * k2 + 1] = v;
        break;
      }
      case S_BREAK:
      case S_CONTINUE: {
        int inloop = 0;
        for (int k2 = r->nvars - 1; k2 >= 0 && !inloop; k2--)
          inloop = r->vars[k2].n == 4 && !memcmp(r->vars[k2].name, "loop", 4);
        if (!inloop) {
          st = rerr(r, n, STROP_E_FORMAT, "break or continue outside a loop");
          break;
        }
        r->flow = n->kind == S_BREAK ? 1 : 2;
        break;
      }
      default: st = rerr(r, n, STROP_E_INTERNAL, "an unknown statement node");
    }
  }
  r->depth--;
  return st;
}

/* ------------------------------------------------------------------ public ---- */

/* The template to render: tmpl NULL -> the tokenizer's default; a name of one of its named
 * templates -> that one; anything else is the template itself. */
static strop_status pick(const strop_tokenizer *tok, const char *tmpl, const char **src,
                         const char **name) {
  if (!tmpl) {
    for (int k = 0; k < tok->nchat; k++)
      if (!strcmp(tok->chat_names[k], "default")) {
        *src = tok->chat_texts[k];
        *name = tok->chat_where[k];
        return STROP_OK;
      }
    return strop__err(STROP_E_NOT_FOUND,
                      "%s: the tokenizer (%s) has no chat template (tokenizer_config.json's "
                      "chat_template): pass one",
                      FN, tok->source ? tok->source : "trained");
  }
  for (int k = 0; k < tok->nchat; k++)
    if (!strcmp(tok->chat_names[k], tmpl)) {
      *src = tok->chat_texts[k];
      *name = tok->chat_where[k];
      return STROP_OK;
    }
  *src = tmpl;
  *name = "the chat template";
  return STROP_OK;
}

strop_status strop_tokenizer_apply_chat_template(const strop_tokenizer *tok, const char *tmpl,
                                                 const char *const *roles,
                                                 const char *const *contents, int64_t n,
                                                 int add_generation_prompt, char *buf, size_t cap,
                                                 size_t *needed) {
  if (needed) *needed = 0;
  if (!tok || !needed || (n > 0 && (!roles || !contents)) || (!buf && cap > 0))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", FN,
                      !tok              ? "tok"
                      : !needed         ? "needed"
                      : !buf && cap > 0 ? "buf (with cap > 0)"
                      : !roles          ? "roles"
                                        : "contents");
  if (n < 0 || n > (1 << 20))
    return strop__err(STROP_E_INVALID_ARG, "%s: n must be in [0, 2^20], got %lld", FN,
                      (long long)n);
  if (add_generation_prompt < 0 || add_generation_prompt > 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: add_generation_prompt must be 0 or 1, got %d", FN,
                      add_generation_prompt);
  for (int64_t k = 0; k < n; k++) {
    if (!roles[k] || !contents[k])
      return strop__err(STROP_E_INVALID_ARG, "%s: %s[%lld] is NULL", FN,
                        !roles[k] ? "roles" : "contents", (long long)k);
    if (!strop__tx_utf8_check(roles[k], strlen(roles[k])) ||
        !strop__tx_utf8_check(contents[k], strlen(contents[k])))
      return strop__err(STROP_E_INVALID_ARG, "%s: %s[%lld] is not valid UTF-8", FN,
                        !strop__tx_utf8_check(roles[k], strlen(roles[k])) ? "roles" : "contents",
                        (long long)k);
  }
  const char *src = NULL, *name = NULL;
  strop_status st = pick(tok, tmpl, &src, &name);
  if (st) return st;
  jtpl t;
  memset(&t, 0, sizeof t);
  t.src = src;
  t.len = strlen(src);
  t.name = name;
  if (t.len > J_MAX_SOURCE)
    return strop__err(STROP_E_FORMAT, "%s: %s is %zu bytes, more than %u", FN, name, t.len,
                      J_MAX_SOURCE);
  if (!strop__tx_utf8_check(src, t.len))
    return strop__err(STROP_E_FORMAT, "%s: %s is not valid UTF-8", FN, name);
  /* Jinja drops one newline at the end of a template (keep_trailing_newline is off) */
  if (t.len && src[t.len - 1] == '\n') t.len -= 1 + (t.len > 1 && src[t.len - 2] == '\r');
  st = parse_template(&t);
  jrun r;
  memset(&r, 0, sizeof r);
  r.t = &t;
  if (!st) {
    /* globals: messages, add_generation_prompt, the special tokens */
    jval *msgs = n ? ar_alloc(&r, (size_t)n * sizeof *msgs) : NULL;
    jval *kv = n ? ar_alloc(&r, (size_t)n * 4 * sizeof *kv) : NULL;
    if (n && (!msgs || !kv)) st = STROP__NOMEM(FN);
    for (int64_t k = 0; k < n && !st; k++) {
      kv[4 * k] = mk_str("role", 4);
      kv[4 * k + 1] = mk_str(roles[k], strlen(roles[k]));
      kv[4 * k + 2] = mk_str("content", 7);
      kv[4 * k + 3] = mk_str(contents[k], strlen(contents[k]));
      msgs[k] = mk_int(V_DICT, 2);
      msgs[k].v = kv + 4 * k;
    }
    jval mv = mk_int(V_LIST, n), gp = mk_int(V_BOOL, add_generation_prompt);
    mv.v = msgs;
    jn at = {0};
    if (!st) st = var_set(&r, &at, 0, "messages", 8, &mv);
    if (!st) st = var_set(&r, &at, 0, "add_generation_prompt", 21, &gp);
    for (int k = 0; k < tok->nspecial && !st; k++) {
      jval sv = mk_str(tok->special_vals[k], strlen(tok->special_vals[k]));
      st = var_set(&r, &at, 0, tok->special_keys[k], strlen(tok->special_keys[k]), &sv);
    }
    /* a tokenizer without tokenizer_config.json: its own bos/eos/unk/pad tokens */
    static const struct {
      const char *key;
      int role;
    } ROLES[] = {{"bos_token", STROP_ROLE_BOS},
                 {"eos_token", STROP_ROLE_EOS},
                 {"unk_token", STROP_ROLE_UNK},
                 {"pad_token", STROP_ROLE_PAD}};
    for (size_t k = 0; k < sizeof ROLES / sizeof ROLES[0] && !st; k++) {
      if (var_get(&r, ROLES[k].key, strlen(ROLES[k].key))) continue;
      int32_t id = tok->role[ROLES[k].role];
      size_t l;
      const char *s = id >= 0 ? strop__tx_id_str(tok, id, &l) : NULL;
      if (!s) continue;
      jval sv = mk_str(s, l);
      st = var_set(&r, &at, 0, ROLES[k].key, strlen(ROLES[k].key), &sv);
    }
  }
  if (!st) st = exec_body(&r, t.root);
  if (!st) {
    *needed = r.olen;
    if (cap > 0) {
      size_t c = r.olen < cap - 1 ? r.olen : cap - 1;
      if (c) memcpy(buf, r.out, c);
      buf[c] = '\0';
    }
  }
  while (r.blk) {
    arena_blk *p = r.blk->prev;
    strop__free(r.blk);
    r.blk = p;
  }
  strop__free(r.out);
  strop__free(r.vars);
  strop__free(t.nodes);
  strop__free(t.strs);
  return st;
}
