/* strop — the layer contract. Each layer family fills one const vtable and registers it by
 * its type string in registry.c; the graph drives layers only through this table. */
#ifndef STROP_LAYER_H
#define STROP_LAYER_H

#include "core/arena.h"
#include "core/core.h"
#include "graph/param.h"

/* ---- shapes: per sample, without the batch dimension ---- */
typedef struct strop__shape {
  int rank;
  int64_t d[STROP_MAX_RANK];
} strop__shape;

size_t strop__shape_numel(const strop__shape *s);
/* "[1, 28, 28]" into buf; returns buf */
const char *strop__shape_str(const strop__shape *s, char *buf, size_t cap);

/* ---- options: key=value pairs from the C API string or a YAML mapping ---- */
typedef struct strop__opt {
  char *key;
  char *val;      /* scalar text, or a flow list "[3, 3]" */
  int line, col;  /* where it came from in a YAML file (0 when not from a file) */
  int used;       /* set by the getters, so unknown keys can be reported */
} strop__opt;

typedef struct strop__opts {
  strop__opt *v;
  int n, cap;
  const char *layer;  /* node name, for messages */
  const char *type;   /* layer type, for messages */
  const char *file;   /* source file name or NULL */
} strop__opts;

/* Getters: return STROP_OK and leave *out at its default when the key is absent; set an
 * error naming layer, key (and file:line:col) when the value does not parse or is out of
 * range. Lists accept a scalar (broadcast to n entries) or [a, b, ...] of exactly n. */
strop_status strop__opt_int(strop__opts *o, const char *key, int64_t lo, int64_t hi,
                            int64_t *out);
strop_status strop__opt_float(strop__opts *o, const char *key, double lo, double hi,
                              float *out);
strop_status strop__opt_bool(strop__opts *o, const char *key, int *out);
/* out gets one of the choices' indices */
strop_status strop__opt_enum(strop__opts *o, const char *key, const char *const *choices,
                             int *out);
strop_status strop__opt_ints(strop__opts *o, const char *key, int n, int64_t lo, int64_t hi,
                             int64_t *out);
/* a list of any length 1..max; *n_out gets its length */
strop_status strop__opt_int_list(strop__opts *o, const char *key, int max, int64_t lo, int64_t hi,
                                 int64_t *out, int *n_out);
/* requires the key to be present */
strop_status strop__opt_require(strop__opts *o, const char *key);
/* An error for a bad option value, naming file:line:col, layer and key. */
strop_status strop__opt_error(const strop__opts *o, const char *key, const char *fmt, ...)
    STROP__PRINTF(3, 4);

/* Writer for a layer's options (spec save, summaries): appends "key=value" pairs. */
typedef struct strop__optbuf {
  strop__opt *v;
  int n, cap;
  int oom;
} strop__optbuf;
void strop__optbuf_int(strop__optbuf *b, const char *key, int64_t v);
void strop__optbuf_float(strop__optbuf *b, const char *key, double v);
void strop__optbuf_bool(strop__optbuf *b, const char *key, int v);
void strop__optbuf_str(strop__optbuf *b, const char *key, const char *v);
void strop__optbuf_ints(strop__optbuf *b, const char *key, const int64_t *v, int n);

/* ---- activations at run time: batch-first, contiguous ---- */
typedef struct strop__act {
  float *data;
  int64_t n;          /* batch size */
  strop__shape shape; /* per-sample shape */
} strop__act;

/* What a forward/backward call may use. */
typedef struct strop__exec {
  strop__arena *arena; /* scratch and saved tensors; reset after each step */
  strop__rng *rng;     /* the model's generator (dropout) */
  int training;        /* 1: train mode (dropout on, batch statistics) */
  int nthreads;
  const float *pad_mask; /* optional [n, T] 1 = keep, 0 = padding, for attention; or NULL */
  int din_assign;        /* backward of a STROP__LAYER_ASSIGNS_DIN layer: din[0] is NOT zeroed
                            (this node is its input's only consumer); write every element */
  int pgrad_assign;      /* backward of a STROP__LAYER_ASSIGNS_PGRAD layer: the gradients of
                            its trainable parameters hold stale values; write, do not add. It
                            may then set grad_checked on a parameter whose values it saw are
                            all finite as it wrote them */
} strop__exec;

typedef struct strop__node strop__node;
typedef struct strop__layer_vtable strop__layer_vtable;

/* A node of the model DAG: one layer instance. */
struct strop__node {
  char *name;                     /* "features.0" */
  const strop__layer_vtable *vt;
  void *cfg;                      /* vt->cfg_size bytes, parsed options */
  int n_in;
  int *in;                        /* indices of input nodes; -1 = the model input */
  strop__shape *in_shapes;        /* n_in shapes, set by the graph before infer */
  strop__shape out_shape;
  strop__param *params;           /* owned: weights then buffers, in PyTorch state_dict order */
  int n_params;
  int frozen_stats;               /* 1: BatchNorm uses running stats even in train mode */
  /* run time, set per step by the graph */
  void *saved;                    /* arena memory the layer keeps for its backward */
  int fused;                      /* from the layer's fuse at each forward: > 0 this node
                                     computes the next `fused` nodes too; -1 a node so
                                     computed; 0 neither */
  int needs_backward;             /* graph: some trainable parameter is here or upstream */
  char **in_names;                /* n_in input names as given; resolved to in[] at finalize */
};

/* Declare a parameter or buffer during infer (called once per name, in state_dict order).
 * suffix is appended to the node name with a '.', e.g. "q_proj.weight". Data is allocated
 * (zeroed) by the graph after infer; layers fill it in init. */
strop_status strop__node_add_param(strop__node *n, const char *suffix, int rank,
                                   const int64_t *dims, int is_buffer);
strop_status strop__node_add_ibuffer(strop__node *n, const char *suffix); /* int64 scalar */
/* Find a node's param by suffix ("weight"); NULL if absent. */
strop__param *strop__node_param(strop__node *n, const char *suffix);

enum {
  STROP__LAYER_STOCHASTIC = 1, /* uses exec->rng in train mode */
  STROP__LAYER_BATCHSTATS = 2, /* behaves differently in train mode (batch norm) */
  STROP__LAYER_ANY_INPUTS = 4, /* accepts any number of inputs >= 1 (add, concat) */
  STROP__LAYER_ASSIGNS_DIN = 8, /* one input; backward honours exec->din_assign, so the graph
                                   may skip zeroing the input gradient of a sole consumer */
  STROP__LAYER_ASSIGNS_PGRAD = 16 /* backward honours exec->pgrad_assign, so the graph may
                                     skip zeroing the parameter gradients (lazy zero_grad) */
};

struct strop__layer_vtable {
  const char *type;      /* registry name, "linear" */
  size_t cfg_size;       /* bytes of the config struct (zeroed before parse) */
  int n_inputs;          /* required number of inputs (ignored with STROP__LAYER_ANY_INPUTS) */
  int flags;
  /* Options -> cfg; set defaults for absent keys. Unknown keys are reported by the graph. */
  strop_status (*parse)(void *cfg, strop__opts *o);
  /* cfg -> options (every option, defaults included) */
  void (*write)(const void *cfg, strop__optbuf *b);
  /* in_shapes -> out_shape; declare params with strop__node_add_param. Errors name the node,
   * the offending shapes and option (kernel larger than input, d_model % heads ...). */
  strop_status (*infer)(strop__node *n);
  /* Initialise params (PyTorch's default init for this layer) from rng. May be NULL (zeros). */
  void (*init)(strop__node *n, strop__rng *rng);
  /* out->data is allocated by the graph (n * numel(out_shape) floats). Save what backward
   * needs in n->saved (arena). in[i].data is read only. */
  strop_status (*forward)(strop__node *n, const strop__exec *x, const strop__act *in,
                          strop__act *out);
  /* Given dout (same layout as out), ADD the input gradients into din[i] (zeroed by the graph;
   * din[i] == NULL when input i needs no gradient; with STROP__LAYER_ASSIGNS_DIN and
   * x->din_assign, din[0] is uninitialised and gets written) and ADD parameter gradients into p->grad
   * for each param with p->trainable && p->grad. in/out are the forward's activations. */
  strop_status (*backward)(strop__node *n, const strop__exec *x, const strop__act *in,
                           const strop__act *out, const float *dout, float *const *din);
  /* Optional fusion, asked before each forward. next[0..n_next) is a chain after this node:
   * next[0] is the sole reader of this node's output, next[i + 1] the sole reader of next[i]'s,
   * and none of their outputs but the last may be needed by anyone else. Returns how many of
   * them, k (a prefix), this layer computes itself until asked again (0: none; a call undoes
   * an earlier fusion). With k > 0 the graph stores no activation for this node nor the first
   * k - 1 of next, does not run next[0..k), and calls this layer's forward with out = the
   * output of next[k - 1] and its backward with that output and its gradient. Fused nodes
   * must have no parameters. */
  int (*fuse)(strop__node *n, strop__node *const *next, int n_next);
};

/* The longest chain the graph offers a layer's fuse. */
#define STROP__FUSE_MAX 2

/* The registry: look up a layer type by name; NULL if unknown. */
const strop__layer_vtable *strop__layer_find(const char *type);
/* All registered types (for messages and docs). */
int strop__layer_count(void);
const strop__layer_vtable *strop__layer_at(int i);

#endif
