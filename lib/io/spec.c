/* SPDX-License-Identifier: MIT */
/* strop — YAML model specs: read with libyaml's event parser into a small bounded tree (no
 * aliases, limited depth, node count and scalar size), build the model; write specs back. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "graph/graph.h"
#include "io/atomic.h"
#include "io/io_internal.h"
#include "io/json.h"
#include "core/sbuf.h"
#include "io/yaml.h"

/* ---- the tree: io/yaml.h's bounded YAML tree ---- */

typedef strop__ynode ynode;
enum { Y_SCALAR = STROP__Y_SCALAR, Y_SEQ = STROP__Y_SEQ, Y_MAP = STROP__Y_MAP };
#define ynode_free strop__ynode_free

typedef struct yctx {
  const char *fn;
  const char *file;
} yctx;

static strop_status yerr(const yctx *c, int line, int col, strop_status st, const char *fmt, ...)
    STROP__PRINTF(5, 6);
static strop_status yerr(const yctx *c, int line, int col, strop_status st, const char *fmt,
                         ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (line > 0) return strop__err(st, "%s: %s:%d:%d: %s", c->fn, c->file, line, col, msg);
  return strop__err(st, "%s: %s: %s", c->fn, c->file, msg);
}

/* Parses the text into a tree; *root is NULL for an empty document. */
static strop_status yaml_to_tree(yctx *c, const char *text, size_t len, ynode **root) {
  static const strop__yaml_limits lim = {STROP__SPEC_MAX_DEPTH, STROP__SPEC_MAX_NODES,
                                         STROP__SPEC_MAX_SCALAR};
  return strop__yaml_parse(c->fn, c->file, text, len, &lim, root);
}

/* ---- reading the spec ---- */

static int is_null(const ynode *y) {
  return y->type == Y_SCALAR && y->plain &&
         (y->len == 0 || strcmp(y->text, "~") == 0 || strcmp(y->text, "null") == 0 ||
          strcmp(y->text, "Null") == 0 || strcmp(y->text, "NULL") == 0);
}

static const char *kind_name(const ynode *y) {
  return y->type == Y_SCALAR ? (is_null(y) ? "null" : "a scalar")
         : y->type == Y_SEQ  ? "a list"
                             : "a mapping";
}

/* Duplicate keys in a mapping: an error at the second one. */
static strop_status check_map(const yctx *c, const ynode *map, const char *what) {
  if (map->n / 2 > 256)
    return yerr(c, map->line, map->col, STROP_E_FORMAT,
                "%s: a mapping with %d keys (at most 256)", what, map->n / 2);
  for (int i = 0; i < map->n; i += 2) {
    const ynode *k = map->kids[i];
    if (k->type != Y_SCALAR)
      return yerr(c, k->line, k->col, STROP_E_FORMAT, "%s: keys must be plain names, found %s",
                  what, kind_name(k));
    for (int j = 0; j < i; j += 2)
      if (strcmp(map->kids[j]->text, k->text) == 0)
        return yerr(c, k->line, k->col, STROP_E_FORMAT,
                    "%s: key '%.100s' appears twice (first at line %d)", what, k->text,
                    map->kids[j]->line);
  }
  return STROP_OK;
}

static int parse_i64_text(const char *s, int64_t *out) {
  if (!*s || isspace((unsigned char)*s)) return 0;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return 0;
  *out = v;
  return 1;
}

static strop_status read_input_shape(const yctx *c, const ynode *v, int *rank, int64_t *dims) {
  if (v->type != Y_SEQ || v->n < 1 || v->n > STROP_MAX_RANK)
    return yerr(c, v->line, v->col, STROP_E_FORMAT,
                "'input' must be a list of 1 to %d positive sizes, e.g. [1, 28, 28]; found %s%s",
                STROP_MAX_RANK, v->type == Y_SEQ ? "a list of length " : kind_name(v),
                v->type == Y_SEQ ? (v->n < 1 ? "0" : "> 8") : "");
  for (int i = 0; i < v->n; i++) {
    const ynode *d = v->kids[i];
    int64_t x;
    if (d->type != Y_SCALAR || !parse_i64_text(d->text, &x) || x <= 0 || x > ((int64_t)1 << 40))
      return yerr(c, d->line, d->col, STROP_E_FORMAT,
                  "input[%d] must be a positive integer, found '%.60s'", i,
                  d->type == Y_SCALAR ? d->text : kind_name(d));
    dims[i] = x;
  }
  *rank = v->n;
  return STROP_OK;
}

static strop_status read_seed(const yctx *c, const ynode *v, uint64_t *seed) {
  const char *s = v->type == Y_SCALAR ? v->text : "";
  char *end = NULL;
  errno = 0;
  unsigned long long x = 0;
  int ok = v->type == Y_SCALAR && *s >= '0' && *s <= '9';
  if (ok) {
    x = strtoull(s, &end, 10);
    ok = !errno && end && !*end;
  }
  if (!ok)
    return yerr(c, v->line, v->col, STROP_E_FORMAT,
                "'seed' must be a non-negative integer below 2^64, found '%.60s'",
                v->type == Y_SCALAR ? s : kind_name(v));
  *seed = x;
  return STROP_OK;
}

/* An option value as text: a scalar, or a flow list "[a, b]" of scalars. */
static strop_status option_text(const yctx *c, const char *layer, const ynode *k, const ynode *v,
                                strop__sbuf *b) {
  b->n = 0;
  if (v->type == Y_SCALAR) {
    if (is_null(v))
      return yerr(c, v->line, v->col, STROP_E_FORMAT, "layer '%s': option '%s' has no value",
                  layer, k->text);
    strop__sbuf_put(b, v->text, v->len);
  } else if (v->type == Y_SEQ) {
    strop__sbuf_puts(b, "[");
    for (int i = 0; i < v->n; i++) {
      const ynode *e = v->kids[i];
      if (e->type != Y_SCALAR || is_null(e))
        return yerr(c, e->line, e->col, STROP_E_FORMAT,
                    "layer '%s': option '%s': list entries must be scalars, found %s", layer,
                    k->text, kind_name(e));
      if (i) strop__sbuf_puts(b, ", ");
      strop__sbuf_put(b, e->text, e->len);
    }
    strop__sbuf_puts(b, "]");
  } else {
    return yerr(c, v->line, v->col, STROP_E_FORMAT,
                "layer '%s': option '%s' must be a scalar or a list, found a mapping", layer,
                k->text);
  }
  if (b->oom) return STROP__NOMEM(c->fn);
  return STROP_OK;
}

/* Re-issues the current error with the spec's position, dropping the inner function name. */
static strop_status relocate_error(const yctx *c, strop_status st, int line, int col) {
  if (st == STROP_E_NOMEM) return st;
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", strop_last_error());
  const char *m = msg;
  static const char *const inner[] = {"strop_model_add: ", "strop_model_finalize: "};
  for (size_t i = 0; i < sizeof inner / sizeof inner[0]; i++)
    if (strncmp(m, inner[i], strlen(inner[i])) == 0) m += strlen(inner[i]);
  size_t fl = strlen(c->file);
  if (strncmp(m, c->file, fl) == 0 && m[fl] == ':') return strop__err(st, "%s: %s", c->fn, m);
  if (line > 0) return strop__err(st, "%s: %s:%d:%d: %s", c->fn, c->file, line, col, m);
  return strop__err(st, "%s: %s: %s", c->fn, c->file, m);
}

static strop_status add_layer(yctx *c, strop_model *m, const ynode *L, int index) {
  if (L->type != Y_MAP)
    return yerr(c, L->line, L->col, STROP_E_FORMAT,
                "layers[%d] must be a mapping with 'name' and 'type', found %s", index,
                kind_name(L));
  char what[64];
  snprintf(what, sizeof what, "layers[%d]", index);
  strop_status st = check_map(c, L, what);
  if (st != STROP_OK) return st;
  const ynode *name = NULL, *type = NULL, *inputs = NULL, *tie = NULL;
  for (int i = 0; i < L->n; i += 2) {
    const char *k = L->kids[i]->text;
    if (strcmp(k, "name") == 0) name = L->kids[i + 1];
    else if (strcmp(k, "type") == 0) type = L->kids[i + 1];
    else if (strcmp(k, "inputs") == 0) inputs = L->kids[i + 1];
    else if (strcmp(k, "tie") == 0) tie = L->kids[i + 1];
  }
  if (!name || name->type != Y_SCALAR || is_null(name))
    return yerr(c, name ? name->line : L->line, name ? name->col : L->col, STROP_E_FORMAT,
                "layers[%d]: 'name' is %s (expected the node's name, e.g. name: features.0)",
                index, name ? kind_name(name) : "missing");
  if (!type || type->type != Y_SCALAR || is_null(type))
    return yerr(c, type ? type->line : L->line, type ? type->col : L->col, STROP_E_FORMAT,
                "layer '%s': 'type' is %s (expected a layer type, e.g. type: linear)", name->text,
                type ? kind_name(type) : "missing");
  const char *in_names[64];
  int n_in = 0;
  if (inputs) {
    if (inputs->type == Y_SCALAR && !is_null(inputs)) {
      in_names[n_in++] = inputs->text;
    } else if (inputs->type == Y_SEQ && inputs->n >= 1 && inputs->n <= 64) {
      for (int i = 0; i < inputs->n; i++) {
        const ynode *e = inputs->kids[i];
        if (e->type != Y_SCALAR || is_null(e))
          return yerr(c, e->line, e->col, STROP_E_FORMAT,
                      "layer '%s': inputs[%d] must be a node name or 'input', found %s",
                      name->text, i, kind_name(e));
        in_names[n_in++] = e->text;
      }
    } else {
      return yerr(c, inputs->line, inputs->col, STROP_E_FORMAT,
                  "layer '%s': 'inputs' must be a list of 1 to 64 node names, e.g. [a, b]",
                  name->text);
    }
  }
  strop__opts o;
  memset(&o, 0, sizeof o);
  o.file = c->file;
  strop__sbuf b = {0};
  for (int i = 0; i < L->n && st == STROP_OK; i += 2) {
    const ynode *k = L->kids[i], *v = L->kids[i + 1];
    if (strcmp(k->text, "name") == 0 || strcmp(k->text, "type") == 0 ||
        strcmp(k->text, "inputs") == 0 || strcmp(k->text, "tie") == 0)
      continue;
    st = option_text(c, name->text, k, v, &b);
    if (st == STROP_OK) st = strop__opts_add(&o, k->text, b.s ? b.s : "", k->line, k->col);
  }
  strop__sbuf_free(&b);
  if (st == STROP_OK) {
    o.file = c->file;
    st = strop__model_add_opts(m, name->text, type->text, &o, in_names, n_in);
    if (st != STROP_OK) {
      /* unknown type: point at the type; other errors without a position: at the layer */
      const ynode *at = st == STROP_E_NOT_FOUND ? type : L;
      st = relocate_error(c, st, at->line, at->col);
    }
  }
  strop__opts_free(&o);
  /* tie: {suffix: target, ...}: the node's parameter suffix is the tensor target */
  if (st == STROP_OK && tie) {
    if (tie->type != Y_MAP)
      return yerr(c, tie->line, tie->col, STROP_E_FORMAT,
                  "layer '%s': 'tie' must map a "
                  "parameter of the node to the tensor it is, e.g. tie: {weight: wte.weight}",
                  name->text);
    for (int i = 0; i + 1 < tie->n && st == STROP_OK; i += 2) {
      const ynode *k = tie->kids[i], *v = tie->kids[i + 1];
      if (v->type != Y_SCALAR || is_null(v))
        return yerr(c, v->line, v->col, STROP_E_FORMAT,
                    "layer '%s': tie.%s must name a "
                    "parameter of the model, found %s",
                    name->text, k->text, kind_name(v));
      size_t len = strlen(name->text) + strlen(k->text) + 2;
      char *full = strop__malloc(len);
      if (!full) return STROP__NOMEM("strop_model_load_spec");
      snprintf(full, len, "%s.%s", name->text, k->text);
      st = strop_model_tie(m, full, v->text);
      strop__free(full);
      if (st) st = relocate_error(c, st, k->line, k->col);
    }
  }
  return st;
}

static strop_status spec_build(yctx *c, const char *text, size_t len, strop_model **out) {
  *out = NULL;
  if (!strop__utf8_valid(text, len))
    return yerr(c, 0, 0, STROP_E_FORMAT, "the spec is not valid UTF-8");
  ynode *root = NULL;
  strop_status st = yaml_to_tree(c, text, len, &root);
  if (st != STROP_OK) return st;
  strop_model *m = NULL;
  if (!root || root->type != Y_MAP) {
    st = yerr(c, root ? root->line : 0, root ? root->col : 0, STROP_E_FORMAT,
              "a spec is a mapping with 'input', 'layers' and optionally 'seed'; found %s",
              root ? kind_name(root) : "an empty document");
    goto done;
  }
  if ((st = check_map(c, root, "spec")) != STROP_OK) goto done;
  const ynode *input = NULL, *seed = NULL, *layers = NULL;
  for (int i = 0; i < root->n; i += 2) {
    const ynode *k = root->kids[i];
    if (strcmp(k->text, "input") == 0) input = root->kids[i + 1];
    else if (strcmp(k->text, "seed") == 0) seed = root->kids[i + 1];
    else if (strcmp(k->text, "layers") == 0) layers = root->kids[i + 1];
    else {
      st = yerr(c, k->line, k->col, STROP_E_FORMAT,
                "unknown key '%.100s' (expected one of: input, seed, layers)", k->text);
      goto done;
    }
  }
  if (!input) {
    st = yerr(c, root->line, root->col, STROP_E_FORMAT,
              "missing 'input' (the per-sample input shape, e.g. input: [1, 28, 28])");
    goto done;
  }
  if (!layers || layers->type != Y_SEQ || layers->n == 0) {
    st = yerr(c, layers ? layers->line : root->line, layers ? layers->col : root->col,
              STROP_E_FORMAT, "'layers' must be a non-empty list of layer mappings; found %s",
              layers ? kind_name(layers) : "none");
    goto done;
  }
  int rank = 0;
  int64_t dims[STROP_MAX_RANK];
  uint64_t sd = 0;
  if ((st = read_input_shape(c, input, &rank, dims)) != STROP_OK) goto done;
  if (seed && (st = read_seed(c, seed, &sd)) != STROP_OK) goto done;
  if ((st = strop_model_create(rank, dims, &m)) != STROP_OK) {
    st = relocate_error(c, st, input->line, input->col);
    goto done;
  }
  for (int i = 0; i < layers->n && st == STROP_OK; i++) st = add_layer(c, m, layers->kids[i], i);
  if (st == STROP_OK) {
    st = strop_model_finalize(m, sd);
    if (st != STROP_OK) st = relocate_error(c, st, 0, 0);
  }
done:
  ynode_free(root);
  if (st != STROP_OK) {
    strop_model_free(m);
    return st;
  }
  *out = m;
  return STROP_OK;
}

strop_status strop_model_load_spec(const char *path, strop_model **out) {
  static const char fn[] = "strop_model_load_spec";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  char *text = NULL;
  size_t len = 0;
  strop_status st = strop__read_file(fn, path, STROP__SPEC_MAX_BYTES, &text, &len);
  if (st != STROP_OK) return st;
  yctx c = {fn, path};
  st = spec_build(&c, text, len, out);
  strop__free(text);
  if (st == STROP_OK)
    strop__log(STROP_LOG_DEBUG, "%s: read %s: %lld nodes, %lld parameters", fn, path,
               (long long)strop_model_num_nodes(*out),
               (long long)strop_model_param_count(*out, 0));
  return st;
}

strop_status strop_model_load_spec_string(const char *yaml, strop_model **out) {
  static const char fn[] = "strop_model_load_spec_string";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!yaml) return strop__err(STROP_E_INVALID_ARG, "%s: yaml is NULL", fn);
  size_t len = strlen(yaml);
  if (len > STROP__SPEC_MAX_BYTES)
    return strop__err(STROP_E_FORMAT, "%s: the spec is %zu bytes, more than the limit of %zu", fn,
                      len, STROP__SPEC_MAX_BYTES);
  yctx c = {fn, "<string>"};
  return spec_build(&c, yaml, len, out);
}

/* ---- writing ---- */

/* Plain YAML scalars that read back as the same text; anything else is double-quoted. */
static int plain_ok(const char *s) {
  if (!*s) return 0;
  if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' ||
        (*s == '-' && s[1] && s[1] != ' ')))
    return 0;
  for (const char *p = s; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-' || *p == '+'))
      return 0;
  return strcmp(s, "null") && strcmp(s, "Null") && strcmp(s, "NULL");
}

static void put_scalar(strop__sbuf *b, const char *s) {
  if (plain_ok(s)) strop__sbuf_puts(b, s);
  else strop__sbuf_json_str(b, s); /* a JSON string is a valid double-quoted YAML scalar */
}

/* Option values from the layers: "[1, 2]" lists are written as flow lists entry by entry. */
static void put_value(strop__sbuf *b, const char *v) {
  size_t n = strlen(v);
  if (n >= 2 && v[0] == '[' && v[n - 1] == ']') {
    strop__sbuf_puts(b, "[");
    const char *p = v + 1, *end = v + n - 1;
    int first = 1;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == ',')) p++;
      const char *q = p;
      while (q < end && *q != ',') q++;
      const char *e = q;
      while (e > p && e[-1] == ' ') e--;
      if (e > p) {
        char item[128];
        size_t k = (size_t)(e - p) < sizeof item - 1 ? (size_t)(e - p) : sizeof item - 1;
        memcpy(item, p, k);
        item[k] = '\0';
        if (!first) strop__sbuf_puts(b, ", ");
        put_scalar(b, item);
        first = 0;
      }
      p = q;
    }
    strop__sbuf_puts(b, "]");
    return;
  }
  put_scalar(b, v);
}

static strop_status spec_text(const char *fn, const strop_model *m, strop__sbuf *b) {
  if (!m) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  if (m->n_nodes == 0) return strop__err(STROP_E_INVALID_ARG, "%s: the model has no nodes", fn);
  strop__sbuf_puts(b, "# strop model spec (see docs/formats.md)\ninput: [");
  for (int i = 0; i < m->in_shape.rank; i++)
    strop__sbuf_printf(b, "%s%lld", i ? ", " : "", (long long)m->in_shape.d[i]);
  strop__sbuf_printf(b, "]\nseed: %llu\nlayers:\n", (unsigned long long)m->seed);
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    strop__sbuf_puts(b, "  - name: ");
    put_scalar(b, nd->name);
    strop__sbuf_puts(b, "\n    type: ");
    put_scalar(b, nd->vt->type);
    strop__sbuf_puts(b, "\n");
    const char *prev = i ? m->nodes[i - 1].name : "input";
    if (!(nd->n_in == 1 && strcmp(nd->in_names[0], prev) == 0)) {
      strop__sbuf_puts(b, "    inputs: [");
      for (int j = 0; j < nd->n_in; j++) {
        if (j) strop__sbuf_puts(b, ", ");
        put_scalar(b, nd->in_names[j]);
      }
      strop__sbuf_puts(b, "]\n");
    }
    if (nd->n_ties) {
      strop__sbuf_puts(b, "    tie: {");
      for (int k = 0; k < nd->n_ties; k++) {
        strop__sbuf_puts(b, k ? ", " : "");
        put_scalar(b, nd->tie_suffix[k]);
        strop__sbuf_puts(b, ": ");
        put_scalar(b, nd->tie_target[k]);
      }
      strop__sbuf_puts(b, "}\n");
    }
    strop__opts ob;
    strop_status st = strop__node_write_opts(nd, &ob);
    if (st != STROP_OK) return st;
    for (int k = 0; k < ob.n; k++) {
      strop__sbuf_puts(b, "    ");
      put_scalar(b, ob.v[k].key);
      strop__sbuf_puts(b, ": ");
      put_value(b, ob.v[k].val);
      strop__sbuf_puts(b, "\n");
    }
    strop__opts_free(&ob);
  }
  if (b->oom) return STROP__NOMEM(fn);
  return STROP_OK;
}

strop_status strop__model_spec_text(const char *fn, const strop_model *m, strop__sbuf *b) {
  return spec_text(fn, m, b);
}

strop_status strop_model_save_spec(const strop_model *model, const char *path) {
  static const char fn[] = "strop_model_save_spec";
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  strop__sbuf b = {0};
  strop_status st = spec_text(fn, model, &b);
  if (st == STROP_OK) st = strop__write_file_atomic(fn, path, b.s, b.n);
  strop__sbuf_free(&b);
  return st;
}

int64_t strop_model_spec_string(const strop_model *model, char *buf, size_t cap) {
  static const char fn[] = "strop_model_spec_string";
  if (!buf && cap) {
    strop__err(STROP_E_INVALID_ARG, "%s: buf is NULL with cap %zu", fn, cap);
    return -1;
  }
  strop__sbuf b = {0};
  strop_status st = spec_text(fn, model, &b);
  if (st != STROP_OK) {
    strop__sbuf_free(&b);
    return -1;
  }
  if (cap) {
    size_t k = b.n < cap - 1 ? b.n : cap - 1;
    memcpy(buf, b.s, k);
    buf[k] = '\0';
  }
  int64_t n = (int64_t)b.n;
  strop__sbuf_free(&b);
  return n;
}
