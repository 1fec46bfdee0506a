/* SPDX-License-Identifier: MIT */
/* strop — the layer contract. A layer type is one file with one const descriptor: its name,
 * its options (a schema from which parsing, validation, writing back, messages and the docs'
 * table are all derived), its parameters, shape inference, init, forward and backward. It
 * registers by its type string in registry.c. Layers depend on core and ops only; the graph
 * drives them through this table and nothing else. */
#ifndef STROP_LAYER_H
#define STROP_LAYER_H

#include <stddef.h>

#include "core/arena.h"
#include "core/core.h"
#include "layers/param.h"

/* ---- shapes: per sample, without the batch dimension ---- */
typedef struct strop__shape {
  int rank;
  int64_t d[STROP_MAX_RANK];
} strop__shape;

size_t strop__shape_numel(const strop__shape *s);
/* "[1, 28, 28]" into buf (truncated to cap); returns buf */
const char *strop__shape_str(const strop__shape *s, char *buf, size_t cap);
int strop__shape_eq(const strop__shape *a, const strop__shape *b);

/* ---- option lists: key=value pairs from the C API string, a YAML mapping, or written back
 * by a layer. One type serves reading and writing. ---- */
typedef struct strop__opt {
  char *key;
  char *val;     /* scalar text, or a flow list "[3, 3]" */
  int line, col; /* where it came from in a YAML file (0 when not from a file) */
  int used;      /* set while parsing, so unknown keys can be reported */
} strop__opt;

typedef struct strop__opts {
  strop__opt *v;
  int n, cap;
  const char *layer; /* node name, for messages */
  const char *type;  /* layer type, for messages */
  const char *file;  /* source file name or NULL */
} strop__opts;

/* Appends a copy of key and val. */
strop_status strop__opts_add(strop__opts *o, const char *key, const char *val, int line, int col);
/* The value of key, or NULL. */
const char *strop__opts_get(const strop__opts *o, const char *key);
/* Sets key to val, replacing its value if present (position kept) or appending it. */
strop_status strop__opts_set(strop__opts *o, const char *key, const char *val);
void strop__opts_free(strop__opts *o);
/* Parses "k=v k2=[1, 2]" (separators: spaces, ',' ';' between pairs; ':' also works for '=')
 * into *out (owned copies). fn names the public function for messages. */
strop_status strop__opts_parse(const char *fn, const char *text, strop__opts *out);
/* An error for a bad option value, naming file:line:col (when known), layer, type and key
 * (key may be NULL for an error about the options as a whole). Returns STROP_E_INVALID_ARG. */
strop_status strop__opt_error(const strop__opts *o, const char *key, const char *fmt, ...)
    STROP__PRINTF(3, 4);

/* ---- the option schema ---- */
enum {
  STROP__OT_INT,     /* int64_t; range [lo, hi] */
  STROP__OT_FLOAT,   /* float; range [lo, hi], ends open with the flags below; never NaN */
  STROP__OT_BOOL,    /* int 0/1: true/false (also True/False, 1/0, yes/no) */
  STROP__OT_ENUM,    /* int: index into words */
  STROP__OT_INTS,    /* int64_t[n]: a list of n, or one value broadcast to all n */
  STROP__OT_FLOATS,  /* float[n]: a list of n, or one value broadcast to all n */
  STROP__OT_INT_LIST /* int64_t[1..n] with its length in the int at count_off */
};
enum {
  STROP__OF_LO_OPEN = 1, /* the lower bound itself is not allowed */
  STROP__OF_HI_OPEN = 2  /* the upper bound itself is not allowed */
};

/* One option of a layer type. A word (numeric types) stands for a special value and is what
 * gets written back when the field holds that value: "auto" for a size inferred from the
 * input, "none" for PyTorch's None. For INT_LIST a word means "no list" (length 0). */
typedef struct strop__optdef {
  const char *name;
  int type;                  /* STROP__OT_* */
  size_t off;                /* offset of the field in the layer's cfg */
  const char *dflt;          /* the default, exactly as written back; NULL: required */
  double lo, hi;             /* the range of a value (of each entry of a list) */
  int n;                     /* INTS, FLOATS: entries; INT_LIST: most entries */
  size_t count_off;          /* INT_LIST: offset of the int that receives the length */
  const char *const *words;  /* ENUM: the choices; numeric: words accepted for a number */
  const double *word_values; /* numeric: the value each word stores */
  int flags;                 /* STROP__OF_* */
  const char *example;       /* required options: a valid value, for tests and docs */
  const char *doc;           /* one line */
} strop__optdef;

/* Table-building shorthands (T: the cfg struct, f: its field). */
#define STROP__OPT_INT(T, f, nm, def, l, h, d)                                               \
  {                                                                                          \
    .name = nm, .type = STROP__OT_INT, .off = offsetof(T, f), .dflt = def, .lo = l, .hi = h, \
    .doc = d                                                                                 \
  }
#define STROP__OPT_FLOAT(T, f, nm, def, l, h, fl, d)                                           \
  {                                                                                            \
    .name = nm, .type = STROP__OT_FLOAT, .off = offsetof(T, f), .dflt = def, .lo = l, .hi = h, \
    .flags = fl, .doc = d                                                                      \
  }
#define STROP__OPT_BOOL(T, f, nm, def, d) \
  { .name = nm, .type = STROP__OT_BOOL, .off = offsetof(T, f), .dflt = def, .doc = d }
#define STROP__OPT_ENUM(T, f, nm, def, w, d) \
  { .name = nm, .type = STROP__OT_ENUM, .off = offsetof(T, f), .dflt = def, .words = w, .doc = d }
#define STROP__OPT_INTS(T, f, nm, def, cnt, l, h, d)                                          \
  {                                                                                           \
    .name = nm, .type = STROP__OT_INTS, .off = offsetof(T, f), .dflt = def, .lo = l, .hi = h, \
    .n = cnt, .doc = d                                                                        \
  }

/* Shared words: "auto" (stores 0: a size inferred from the input) and "none" (PyTorch's None,
 * also "None" and "null"; what it stores is the option's own sentinel, see strop__word_none_v). */
extern const char *const strop__word_auto[];
extern const double strop__word_auto_v[];
extern const char *const strop__word_none[];
/* An int option whose default "auto" means "inferred from the input". */
#define STROP__OPT_AUTO_INT(T, f, nm, d)                                                    \
  {                                                                                         \
    .name = nm, .type = STROP__OT_INT, .off = offsetof(T, f), .dflt = "auto", .lo = 1,      \
    .hi = INT32_MAX, .words = strop__word_auto, .word_values = strop__word_auto_v, .doc = d \
  }

/* Reads every option of the schema from o into cfg (zeroed by the caller): defaults for the
 * absent, errors naming file:line:col, layer, key, range and value for the bad, unknown keys
 * refused with the list of known ones. */
strop_status strop__schema_parse(const strop__optdef *defs, void *cfg, strop__opts *o);
/* Appends every option of cfg to out (defaults included), as the schema writes them. */
strop_status strop__schema_write(const strop__optdef *defs, const void *cfg, strop__opts *out);
/* "[1, 2147483647]", "(0, 1)", "relu, gelu" ... the allowed values as text, into buf. */
const char *strop__optdef_allowed(const strop__optdef *d, char *buf, size_t cap);
/* "int", "float", "bool", "enum", "int[2]", "float[4]", "int list" */
const char *strop__optdef_kind(const strop__optdef *d, char *buf, size_t cap);
int strop__schema_count(const strop__optdef *defs);

/* ---- activations at run time: batch-first, contiguous ---- */
typedef struct strop__act {
  float *data;
  int64_t n;          /* batch size */
  strop__shape shape; /* per-sample shape */
} strop__act;

/* What a forward/backward call may use. */
/* Incremental decoding (generation, lib/generate): a step computes positions [pos, pos + T)
 * of sequences whose earlier positions' keys and values each attention node keeps in its
 * cache. The cache memory is the heap's (it outlives the step arena): the attention layer
 * allocates k and v on first use, the owner of the strop__decode frees them. */
typedef struct strop__kv_cache {
  const struct strop__node *node; /* the attention node it belongs to */
  float *k, *v;                   /* [batch, cap, width] keys (rotated) and values, or NULL */
  int64_t batch, width;           /* set by the layer with k and v */
} strop__kv_cache;

typedef struct strop__decode {
  int64_t pos;         /* absolute position of the step's first row */
  int64_t cap;         /* positions each cache holds */
  strop__kv_cache *kv; /* one per attention node */
  int n_kv;
  /* per sequence of the batch: the cache position of its first token (sequences left-padded
   * to a common length: positions before it are padding, never attended to, and its tokens
   * count their positions from it), or NULL: every sequence starts at 0 */
  const int64_t *start;
  /* the model's last node when it is a linear head whose logits are read only at each
   * sequence's last row of a step (the next token is chosen from them): it computes those rows
   * alone, the others of its output are left unwritten; NULL: every row */
  const struct strop__node *last_rows_only;
} strop__decode;

/* The cache of node n in d, or NULL. */
strop__kv_cache *strop__decode_cache(const strop__decode *d, const struct strop__node *n);

/* The per-sample side inputs a batch carries beside its inputs, as a forward is given them
 * (every field optional, [n, t] with t the first per-sample dimension of the model's input):
 * the padding mask and the token types travel together through the graph and the trainer. */
typedef struct strop__side {
  const float *mask;  /* 1 = token, 0 = padding (Hugging Face's attention_mask), or NULL */
  const float *types; /* token types (BERT's token_type_ids: segment 0, 1, ...), or NULL: 0 */
} strop__side;

/* The group of processes a data-parallel step is spread over, for the layers whose forward
 * needs statistics of the whole batch (SyncBatchNorm): sum adds v[0..n) over the group in place
 * (every process calls it the same times in the same order with the same n) and returns
 * STROP_OK or a status with its sentence set; phantom: this process's rows are a stand-in
 * (its share of the batch is empty: it runs one row only to take part), so it adds nothing. */
typedef struct strop__group {
  strop_status (*sum)(void *ctx, double *v, int64_t n);
  void *ctx;
  int phantom;
} strop__group;

typedef struct strop__exec {
  strop__arena *arena; /* scratch and saved tensors; reset after each step */
  strop__rng *rng;     /* the model's generator (dropout) */
  int training;        /* 1: train mode (dropout on, batch statistics) */
  int nthreads;
  const float *pad_mask; /* optional [n, pad_len] 1 = token, 0 = padding (the batch's
                            attention mask, T the first per-sample dimension of the model's
                            input); valid for the whole step (forward and backward); or NULL.
                            Attention masks padded keys, pooling skips padded positions; a
                            layer whose sequence length differs from pad_len refuses it */
  int din_assign;        /* backward of a STROP__LAYER_ASSIGNS_DIN layer: bit j set when din[j]
                            is NOT zeroed (this node is the first to write that gradient in
                            the backward; later readers of the input add to it): write every
                            element of it. A one-input layer: 1 or 0 */
  int pgrad_assign;      /* backward of a STROP__LAYER_ASSIGNS_PGRAD layer: the gradients of
                            its trainable parameters hold stale values; write, do not add. It
                            may then set grad_checked on a parameter whose values it saw are
                            all finite as it wrote them */
  int64_t pad_len;       /* positions per sample of pad_mask (0 when there is none) */
  int recompute;         /* 1: the backward runs a checkpointed block's forward again (same
                            inputs, same RNG draws), or the step is a memory probe: compute as
                            usual but change no state of the model (batch norm's running
                            statistics and batch count) */
  const strop__decode *decode;     /* incremental decoding (eval only), or NULL: a layer that
                                  sees positions (attention, positional_embedding) reads its
                                  offset and cache from here */
  int64_t rows_before, rows_after; /* a data-parallel rank's step: the rows of the global batch
                                      before and after its own (0 otherwise); a layer that draws
                                      from rng per row skips theirs (strop__exec_skip_rows) */
  const float *token_types; /* optional [n, types_len] token types (integers >= 0), valid for
                               the whole step like pad_mask; NULL: every token has type 0 */
  int64_t types_len;        /* positions per sample of token_types (0 when there are none) */
  int compute_dtype;        /* STROP__LOWP_F32, or STROP__LOWP_BF16: linear products whose
                               weight is held in FP32, and conv2d's (ops/conv.h's bf16), run
                               on BF16 values with FP32 sums
                               (strop_model_set_compute_dtype; layers/compute.c) */
  int weight_cache;         /* 0: a trained weight's BF16 products pack it from FP32 per call,
                               no copy kept (strop_model_set_weight_cache; layers/compute.c) */
  int attention;            /* the attention cores' choice of tiled or materialised weights:
                               ops/attention.h's STROP__ATTN_* (strop_model_set_attention) */
  /* forward and backward of a fused chain whose first node's output is read beyond the chain
   * too (vtable `fuse`, shared > 0): that output, which the forward writes beside the chain's
   * last and the backward may read; NULL otherwise */
  strop__act *fused_head;
  /* backward of such a chain: the gradient of that output from its other readers (all after
   * the chain, so complete), which the layer adds to what flows back through the chain; NULL
   * when none came (then it counts as zero) */
  const float *fused_head_grad;
  /* the scratch the graph planned for this forward or backward (vtable `scratch`) with the
   * step's activations, in memory no tensor live at that moment holds, and its bytes; NULL / 0
   * when none was planned. Taken through strop__exec_scratch */
  void *scratch;
  size_t scratch_bytes;
  /* forward of a fused chain one of whose nodes reads a second input from before the chain
   * (vtable `fuse`): that output, and the input slot of its reader it fills (0 or 1); NULL
   * otherwise */
  const strop__act *fused_side;
  int fused_side_slot;
  /* backward of such a chain that a backward runs through (its first node's layer has
   * STROP__LAYER_SIDE_GRAD): the gradient of that second input, or NULL when it needs none;
   * written outright when fused_side_assign is 1 (the chain is the first to write it in the
   * backward), else added to; fused_side_slot as in its forward */
  float *fused_side_grad;
  int fused_side_assign;
  /* backward: input 0 held in BF16 around its centres (vtable bf16_centred), as its deviations
   * from them (strop__bf16_compact_centred_par; in[0].data NULL then); NULL otherwise */
  const uint16_t *centred_in;
  /* backward: the inputs the graph hands as it holds them in BF16, their values' bits
   * (strop__bf16_compact_par; vtable bf16_input 2): held_in[slot], in[slot].data NULL then;
   * NULL, or NULL entries, for the others */
  const uint16_t *const *held_in;
  /* backward: the unit's output held in BF16 with each value's sign (vtable out_sign_only 2),
   * out->data NULL then; NULL otherwise */
  const uint16_t *held_out;
  /* a data-parallel training step's group when batch statistics are summed over it
   * (strop__group), or NULL: each process's own rows */
  const strop__group *group;
} strop__exec;

/* bytes of scratch for a layer's forward or backward: the planned scratch when it holds them
 * (vtable `scratch`), else the arena's (given back by the graph after the call); NULL when out
 * of memory */
static inline void *strop__exec_scratch(const strop__exec *x, size_t bytes) {
  if (x->scratch && bytes <= x->scratch_bytes) return x->scratch;
  return strop__arena_alloc(x->arena, bytes);
}

/* A layer that draws per_row numbers (strop__rng_u32 steps) for each of its rows, in row
 * order, calls this with rows_before before its draws and rows_after after them, so that a
 * rank's rows get the draws one process would give the same rows of the whole batch, and every
 * rank's generator ends where one process's does. */
static inline void strop__exec_skip_rows(const strop__exec *x, int64_t rows, uint64_t per_row) {
  if (rows > 0 && per_row > 0) strop__rng_advance(x->rng, (uint64_t)rows * per_row);
}

typedef struct strop__node strop__node;
typedef struct strop__layer_vtable strop__layer_vtable;

/* The most parameter slots a layer type may declare. */
#define STROP__MAX_SLOTS 32

/* A node of the model DAG: one layer instance. */
struct strop__node {
  char *name; /* "features.0" */
  const strop__layer_vtable *vt;
  void *cfg; /* vt->cfg_size bytes, parsed options */
  int n_in;
  int *in;                 /* indices of input nodes; -1 = the model input */
  strop__shape *in_shapes; /* n_in shapes, set by the graph before infer */
  strop__shape out_shape;
  strop__param *params; /* owned: weights then buffers, in PyTorch state_dict order */
  int n_params;
  uint8_t slot[STROP__MAX_SLOTS]; /* declared slot -> 1 + index into params, 0 when absent
                                     (so a zeroed node has none); set by strop__node_declare */
  int frozen_stats;               /* 1: BatchNorm uses running stats even in train mode */
  /* run time, set per step by the graph */
  void *saved;        /* arena memory the layer keeps for its backward */
  int fused;          /* from the layer's fuse at each forward: > 0 this node
                                     computes the next `fused` nodes too; -1 a node so
                                     computed; 0 neither */
  int fused_shared;   /* with fused > 0: 1 when this node's own output is read beyond the
                         chain too, so the graph stores it as well (strop__exec.fused_head) */
  int needs_backward; /* graph: some trainable parameter is here or upstream */
  char **in_names;    /* n_in input names as given; resolved to in[] at finalize */
  /* weight tying: parameter tie_suffix[k] of this node ("weight") is the tensor named
   * tie_target[k] ("transformer.wte.weight"): one tensor, one name in files, gradients summed */
  int n_ties;
  char **tie_suffix, **tie_target;
  /* a frozen norm folded into this node's weights at run time (fuse.h): the folded values and
   * what they were computed from, owned (strop__free_aligned), or NULL */
  void *fold;
  /* what a frozen conv's forward computes from its weight alone, kept across calls
   * (layers/conv.c): its Winograd-transformed filters or its weight packed for vdpbf16ps; owned
   * (strop__free_aligned, wino_bytes of them), or NULL */
  void *wino;
  size_t wino_bytes;
};

/* A shape error of node n: "layer 'name' (type): <message>" with the shapes the caller puts in
 * fmt; returns STROP_E_SHAPE. */
strop_status strop__shape_error(const strop__node *n, const char *fmt, ...) STROP__PRINTF(2, 3);
/* The step's padding mask [n, t] for a layer whose sequence has t positions: NULL when the
 * step has none (st = STROP_OK) or when its length is not t (st = STROP_E_SHAPE, an error
 * naming the node and both lengths). */
const float *strop__exec_mask(const strop__node *n, const strop__exec *x, int64_t t,
                              strop_status *st);
/* The step's token types [n, t] for a layer whose sequence has t positions, as
 * strop__exec_mask(): NULL when the step has none (every token has type 0). */
const float *strop__exec_types(const strop__node *n, const strop__exec *x, int64_t t,
                               strop_status *st);
/* out = in[0] (layers that keep the shape: activations, dropout, norms over the last dims). */
strop_status strop__shape_same(const strop__node *n, const strop__shape *in, strop__shape *out);
/* out = in[0] when its trailing dimensions are dims[0..nd) (normalized_shape of layernorm and
 * rmsnorm); a shape error naming them otherwise. */
strop_status strop__shape_trailing(const strop__node *n, const strop__shape *in,
                                   const int64_t *dims, int nd, strop__shape *out);
/* Sets n->out_shape from n->in_shapes through the type's shape function (the usual infer
 * step for a layer without parameters). */
strop_status strop__node_infer_shape(strop__node *n);

/* ---- parameters: declared in the descriptor, created by infer ---- */
enum {
  STROP__PD_BUFFER = 1,  /* running statistics and the like: saved, loaded, never trained */
  STROP__PD_INT64 = 2,   /* an int64 scalar buffer (num_batches_tracked) */
  STROP__PD_ADAPTER = 4, /* a LoRA adapter: surgery may add it to a node it did not create */
  STROP__PD_FROZEN = 8   /* created frozen (a LoRA layer's base weight) */
};
typedef struct strop__paramdef {
  const char *name; /* suffix after the node name: "weight", "q_proj.lora_A.weight"; "" names
                        the parameter as the node itself ("class_token") */
  int flags;        /* STROP__PD_* */
  const char *doc;
} strop__paramdef;

/* Declares slot `slot` of the node's type (its name and flags come from the descriptor) with
 * the given shape, during infer. Slots must be declared in increasing order (the state_dict
 * order). Data is allocated (zeroed) by the graph after infer; layers fill it in init. */
strop_status strop__node_declare(strop__node *n, int slot, int rank, const int64_t *dims);
/* The parameter in slot `slot` (its owner when the slot is tied), or NULL when this node did
 * not declare it. O(1). */
static inline strop__param *strop__node_p(const strop__node *n, int slot) {
  return n->slot[slot] ? strop__param_owner(&n->params[n->slot[slot] - 1]) : NULL;
}
/* Its gradient when it is trainable, else NULL. */
static inline float *strop__node_grad(const strop__node *n, int slot) {
  const strop__param *p = strop__node_p(n, slot);
  return p && p->trainable ? p->grad : NULL;
}
/* y = x W^T + b for a linear-shaped layer (linear, lora_linear's base) whose weight w may be
 * held in BF16 or int8 (param.h's lowp): the FP32 kernel, or the lowp one; STROP_E_NOMEM
 * naming the node when the lowp kernel's scratch cannot be had. */
strop_status strop__linear_forward_w(const strop__node *n, const strop__param *w, const float *x,
                                     const float *b, float *y, int64_t m, int64_t in, int64_t out,
                                     int w_in_out);
/* The backward of a weight held in lowp (frozen): dx (assigned with din_assign, else added) and
 * the bias gradient db when the bias trains (assigned with pgrad_assign, else added). */
strop_status strop__linear_backward_w(const strop__node *n, const strop__param *w,
                                      strop__param *b, const float *x, const float *dy, float *dx,
                                      float *db, int64_t m, int64_t in, int64_t out, int w_in_out,
                                      int din_assign, int pgrad_assign);
/* Products in the model's compute dtype (layers/compute.c). strop__compute_bf16: 1 when the
 * step computes in BF16 and w is an FP32 matrix (not held in BF16 / int8), whose products then
 * go through the two below instead of the FP32 kernels. */
int strop__compute_bf16(const strop__exec *x, const strop__param *w);
/* w's BF16 copy ([out, in], or held [in, out] transposed with scale_cols as lowp's), made from
 * w->data when missing or stale (w->version moved on, a layout change, or w handed out as a
 * writable view) and kept in w->shadow; NULL when out of memory. */
const strop__lowp *strop__param_shadow(strop__param *w, int scale_cols);
/* y = xin W^T + b and the backward (dx, dw, db: any may be NULL; assign: STROP__LB_* of
 * ops/dense.h) of a linear-shaped layer on BF16 values (strop__linear_forward_bf16 / _backward_
 * bf16 through w's copy; a trained w packed per call instead when x's weight cache is off, the
 * same bits); STROP_E_NOMEM naming the node, nothing written. The backward sets
 * *finite (when non-NULL) as strop__linear_backward_bf16_seen does: 1 when dw (and db) were
 * written outright and seen finite, so that the layer may mark them grad_checked. xh: NULL, or
 * the input as the step holds it in BF16 (x->held_in; xin NULL then), which only dW reads. */
strop_status strop__linear_forward_c(const strop__node *n, const strop__exec *x, strop__param *w,
                                     const float *xin, const float *b, float *y, int64_t m,
                                     int64_t in, int64_t out, int w_in_out);
/* 1 (the default): a linear layer whose trained weight's gradient runs on vdpbf16ps reads its
 * input as the step holds it in BF16 (vtable bf16_input 2); 0: widened first (1). For tests and
 * bench_big LINEAR_HELD=ab: the same bits. */
extern int strop__linear_held;
strop_status strop__linear_backward_c(const strop__node *n, const strop__exec *x, strop__param *w,
                                      const float *xin, const uint16_t *xh, const float *dy,
                                      float *dx, float *dw, float *db, int64_t m, int64_t in,
                                      int64_t out, unsigned assign, int *finite);
/* A node's param by suffix ("weight"), or NULL: for code outside the node's layer. */
strop__param *strop__node_param(strop__node *n, const char *suffix);
/* The storage p would take as the model's frozen dtype `dtype` (STROP__LOWP_*): dtype for a
 * frozen weight its layer reads through the lowp kernels (lowp_ok), not tied and not the owner
 * of a tie (tie_target 1), else STROP__LOWP_F32. */
int strop__param_lowp_target(const strop__param *p, int dtype, int tie_target);
/* The storage p has now (STROP__LOWP_F32 for FP32 data and int64 buffers). */
static inline int strop__param_dtype(const strop__param *p) { return p->lowp.dtype; }
/* Holds p as dtype, converting its values (FP32 -> BF16 rounds to nearest even, -> int8
 * quantises per output channel, or per `group` of its inputs when group > 0; back to FP32
 * widens exactly). 0, or -1 when out of memory
 * with p as it was. */
int strop__param_convert(strop__param *p, int dtype, int64_t group);
/* Sets p's values from the numel floats v, in the storage p has now (rounded or quantised
 * when p is held in lowp). 0, or -1 when out of memory with p as it was. */
int strop__param_assign(strop__param *p, const float *v);
/* p's values as FP32: p->data, or a widened copy into *tmp (strop__malloc_aligned; the caller
 * frees it) when p is held in lowp. NULL when out of memory (or p has no float data). */
const float *strop__param_f32(const strop__param *p, float **tmp);
/* Hands the whole pages of p's FP32 values back to the kernel when they are borrowed from a
 * mapped file (read-only, private, never written) and what reads them reads a copy instead (a
 * folded weight, a BF16 shadow): the copy then replaces them in RSS instead of doubling it. A
 * later read of p->data faults them in again from the page cache, the same values. Returns the
 * bytes handed back; 0 for any other parameter. */
size_t strop__param_drop_pages(const strop__param *p);
/* The same for the whole pages of p's values [from, from + count) only. */
size_t strop__param_drop_range(const strop__param *p, size_t from, size_t count);
/* Drops p's values: frees its FP32 data and lowp storage, or lets go of the mapping they were
 * borrowed from. p->data and p->lowp are empty afterwards (the other fields stay). */
void strop__param_drop_values(strop__param *p);
/* Makes p's values p's own before they are written: a weight borrowed from a mapped file or
 * sharing its memory with a clone (p->map) is copied into owned memory (copy on write; shared
 * memory that no one else holds any more is simply taken back); any other parameter is left as
 * it is. 0, or -1 when out of memory with p as it was. */
int strop__param_own(strop__param *p);
/* Makes p's own values (FP32, or BF16 / int8 with scales) shareable: they move under a
 * reference-counted p->map (strop__mapping_share), the same pointers, so that a clone can take
 * a reference instead of a copy; every writer then copies first (strop__param_own). A
 * parameter that already borrows, or holds nothing, is left as it is. 0, or -1 when out of
 * memory with p as it was. */
int strop__param_share(strop__param *p);
/* Points p's values at a tensor of a mapped file (p's old values dropped): FP32 into data, or
 * BF16 into lowp.v for a frozen weight held in BF16 [out, in]. map gets one more reference. */
void strop__param_borrow(strop__param *p, strop__mapping *map, const void *values, int dtype);
/* Frees a parameter's memory / an array of n parameters / a node's memory (not the node). */
void strop__param_release(strop__param *p);
void strop__params_release(strop__param *v, int n);
void strop__node_release(strop__node *n);
/* Forgets the node's declared parameters (before a new infer). */
void strop__node_clear_params(strop__node *n);
/* Whether a frozen conv keeps its Winograd-transformed filters in n->wino between calls, which
 * costs 36 / 9 = 4x the weight's floats per such conv (ResNet-18's trunk: 151 MB): -1 (the
 * default) follows STROP_WINOGRAD_CACHE in the environment, read once ("1": keep them; anything
 * else or unset: transform per call); 0 never; 1 always (tests, benches). */
extern int strop__conv_keep_filters;
/* Whether a frozen conv whose forward runs on vdpbf16ps (the BF16 compute dtype) keeps its
 * weight rounded and packed in n->wino between calls (half the weight's bytes): 1 (the
 * default) keeps it and, where the conv's backward never runs, gives its folded FP32 copy back
 * (strop__layer_fold_drop), so a frozen trunk holds less than without it; 0 packs per call
 * (tests, bench_big's CONV_HELD=ab). The same bits either way. */
extern int strop__conv_keep_packed;
/* Tests and benches: 1 (the default) has a residual sum (add) whose sole reader is a relu
 * compute the relu in the same pass (layers/merge.c), 0 runs the two apart: the same bits. */
extern int strop__add_fuse_relu;
/* Tests and benches: 1 (the default) has a conv absorb a residual sum the graph offers after
 * it (and the sum's relu: layers/conv.c, conv_fuse), 0 leaves the sum to the add: the same
 * bits. */
extern int strop__conv_fuse_add;
/* Tests and benches: 1 (the default) has a conv compute a max-pool after it (after its relu,
 * and its folded norm: ResNet's stem, now that a chain may hold three nodes) in its epilogue,
 * 0 leaves the pool to its own node: the same bits. */
extern int strop__conv_fuse_pool;
/* Tests and benches: 1 (the default) has a batch norm whose sole reader is a relu compute the
 * relu in its passes (layers/batchnorm.c), 0 runs the two apart: the same bits. */
extern int strop__bn_fuse_relu;
/* Tests and benches: 1 (the default) has a batch norm whose sole reader is a residual sum
 * compute the sum, and the relu after it, in its passes (layers/batchnorm.c; the graph offers
 * the chain with its second input, trainable or not), 0 leaves them to the add: the same
 * bits. */
extern int strop__bn_fuse_add;
/* Tests and benches: 1 (the default) gives such a norm's backward the scratch in which its dot
 * pass stages the chain's gradient an image at a time (ops/norm.h, strop__bn_res.stage), 0 none:
 * the same bits. */
extern int strop__bn_stage;
/* The bytes n->fold holds (a frozen norm folded into n's weights, fuse.h) and n->wino (a frozen
 * conv's transformed filters or packed weight): allocated by the first forward that folds or transforms (or a
 * step's planning), kept until n's parameters go (n->wino: until the weight trains). */
size_t strop__node_fold_bytes(const strop__node *n);
/* The bytes of a borrowed (memory-mapped) weight the fold stands in for, whose pages a
 * training forward hands back to the kernel (the steps hold the copy instead); 0 otherwise. */
size_t strop__node_fold_released(const strop__node *n);
/* Records that parameter `suffix` of node n is the tensor named target (replacing an earlier
 * tie of that suffix). Copies both strings. */
strop_status strop__node_add_tie(strop__node *n, const char *suffix, const char *target);
/* The node's options as its schema writes them, into *out (zeroed here; free with
 * strop__opts_free). */
strop_status strop__node_write_opts(const strop__node *n, strop__opts *out);

/* ---- composites: a type that expands, when added, into ordinary named sub-nodes
 * "<name>.<part>" (transformer_block). The graph passes an expander; the layer calls add once
 * per part, in order. ---- */
typedef struct strop__expander strop__expander;
struct strop__expander {
  /* Adds part `part` of type `type` with options kv[0..2 n_kv) (key, value pairs). ins: the
   * parts it reads, n_in of them; STROP__EXPAND_INPUT for the composite's own input; n_in 0
   * reads the previous part (or the composite's input for the first). */
  strop_status (*add)(strop__expander *e, const char *part, const char *type,
                      const char *const *kv, int n_kv, const char *const *ins, int n_in);
  void *ctx;
};
#define STROP__EXPAND_INPUT "^"

/* ---- LoRA, for the layer types that take adapters ---- */
typedef struct strop__lora_ops {
  /* The parts that take adapters ("q_proj", ...; NULL-terminated), or NULL: the node as a
   * whole, which surgery turns into `adapter_type` (linear -> lora_linear). */
  const char *const *parts;
  const char *adapter_type;
  /* parts: sets the adapter of part i in cfg (r = 0: none) */
  void (*set)(void *cfg, int part, int64_t r, float alpha);
  /* its rank (0: none), alpha and dropout (either may be NULL); part 0 for a whole-node
   * adapter */
  int64_t (*rank)(const strop__node *n, int part, float *alpha, float *dropout);
  /* A ~ kaiming_uniform(a = sqrt(5)), B = 0 for the parts in mask (bit i = part i) */
  void (*init_adapters)(strop__node *n, int mask, strop__rng *rng);
  int (*merged)(const strop__node *n);
  /* folds B A into the base weights (merge = 1) or takes them out again */
  void (*set_merged)(strop__node *n, int merge);
  /* after merging, the node is re-typed as this type with these option overrides (NULL: it
   * keeps its type); e.g. lora_linear -> linear, or attention with lora_r = 0 */
  const char *merged_type;
  const char *const *merged_opts; /* key, value pairs, NULL-terminated */
  /* the names of the A and B tensors after the module's name, as PEFT saves them
   * ({"lora_embedding_A", "lora_embedding_B", NULL} for an embedding); NULL: "lora_A.weight" and
   * "lora_B.weight" (a linear, an attention projection) */
  const char *const *tensors;
  /* 1: surgery adapts a node of this type only when its name is given exactly, never through
   * a pattern (an embedding: "*" keeps meaning the linear layers it meant before) */
  int exact_only;
} strop__lora_ops;

enum {
  STROP__LAYER_STOCHASTIC = 1,         /* uses exec->rng in train mode */
  STROP__LAYER_BATCHSTATS = 2,         /* behaves differently in train mode (batch norm) */
  STROP__LAYER_ANY_INPUTS = 4,         /* accepts any number of inputs >= 1 (add, concat) */
  STROP__LAYER_ASSIGNS_DIN = 8,        /* backward honours exec->din_assign (a bit per input), so
                                   the graph may skip zeroing an input gradient this node is the
                                   first to write */
  STROP__LAYER_ASSIGNS_PGRAD = 16,     /* backward honours exec->pgrad_assign, so the graph may
                                      skip zeroing the parameter gradients (lazy zero_grad) */
  STROP__LAYER_FOLDABLE_NORM = 32,     /* an eval-mode affine norm over dim 0 of its input with
                                      weight, bias, running_mean, running_var and an 'eps'
                                      option: export folds it into the layer before it */
  STROP__LAYER_FOLD_CF = 64,           /* a norm can fold into it: 'weight' [C, ...] and an
                                      optional 'bias' [C] ('bias' option), C = dim 0 of its
                                      output (channels first: conv) */
  STROP__LAYER_FOLD_CL = 128,          /* the same with C the last dim of its output (linear):
                                      foldable only when the output is [C] */
  STROP__LAYER_EPILOGUE_RELU = 256,    /* a relu: a conv may compute it in its epilogue */
  STROP__LAYER_EPILOGUE_MAXPOOL = 512, /* a max-pool: a conv may compute it in its epilogue */
  STROP__LAYER_EVAL_IDENTITY = 1024,   /* the identity in eval mode (dropout): export drops it */
  STROP__LAYER_IN_PLACE = 2048,        /* one input, elementwise: the forward may write its output
                                      over its input (out->data == in[0].data) and the backward
                                      never reads in[0].data (relu: the output says it all) */
  STROP__LAYER_OUT_UNREAD = 4096,      /* the backward never reads the node's own output (batch
                                      norm, add), so a sole in-place reader may overwrite it */
  STROP__LAYER_IN_UNREAD = 8192,       /* the backward never reads its inputs' data, only their
                                      shapes (add, the pools), nor does that of a fused chain
                                      it heads: they need not be kept for it */
  STROP__LAYER_RECOMPUTE = 16384,      /* one input, elementwise, deterministic, saves nothing,
                                      backward reads its input only (gelu, silu): its output
                                      may be dropped after its reader's forward and computed
                                      again from its input for that reader's backward */
  STROP__LAYER_FUSE_EXACT = 32768,     /* its fuse computes what it absorbs with the bits the
                                      absorbed nodes' own kernels give, their parameters'
                                      gradients included: the graph offers it nodes with
                                      trainable parameters, and in eval mode too (add, which
                                      takes the rmsnorm after it) */
  STROP__LAYER_EPILOGUE_ADD = 65536,   /* a sum of its inputs (add): offered in a chain with a
                                      second input (strop__layer_vtable.fuse), a conv may add
                                      that input in its epilogue */
  STROP__LAYER_SIDE_GRAD = 131072      /* its fuse may take a chain with a second input that a
                                      backward runs through: its backward hands that input's
                                      gradient to x->fused_side_grad (a train-mode batch norm,
                                      its residual sum and relu) */
};

struct strop__layer_vtable {
  const char *type; /* registry name, "linear" */
  const char *doc;  /* one line: what it computes, and its PyTorch counterpart */
  size_t cfg_size;  /* bytes of the config struct (zeroed before parse) */
  int n_inputs;     /* required number of inputs (ignored with STROP__LAYER_ANY_INPUTS) */
  int flags;
  const strop__optdef *options;  /* terminated by a {NULL} entry; NULL: no options */
  const strop__paramdef *params; /* slots, terminated by {NULL}; NULL: none */
  /* Optional checks across options after the schema parsed them; may normalise cfg. Errors
   * through strop__opt_error(o, key, ...). */
  strop_status (*check)(void *cfg, strop__opts *o);
  /* A composite: adds its parts through e (then the type has no infer/forward/backward). */
  strop_status (*expand)(const void *cfg, strop__expander *e);
  /* The output shape for input shapes in[0..n_in) — the nominal ones at build time, each
   * step's actual ones after (a batch of shorter sequences, larger images): pure, reads only
   * the node's cfg as infer left it. Errors name the node, the shapes and the option (kernel
   * larger than the input, a last dimension other than in_features ...). */
  strop_status (*shape)(const strop__node *n, const strop__shape *in, strop__shape *out);
  /* At build and after surgery, with the nominal n->in_shapes: resolves the options inferred
   * from them ("auto"), sets n->out_shape (through shape) and declares the parameters with
   * strop__node_declare. */
  strop_status (*infer)(strop__node *n);
  /* Initialise params (PyTorch's default init for this layer) from rng. May be NULL (zeros). */
  void (*init)(strop__node *n, strop__rng *rng);
  /* out->data is allocated by the graph (n * numel(out_shape) floats). Save what backward
   * needs in n->saved (arena). in[i].data is read only. */
  strop_status (*forward)(strop__node *n, const strop__exec *x, const strop__act *in,
                          strop__act *out);
  /* Given dout (same layout as out), ADD the input gradients into din[i] (zeroed by the graph;
   * din[i] == NULL when input i needs no gradient; with STROP__LAYER_ASSIGNS_DIN and bit i of
   * x->din_assign, din[i] is uninitialised and gets written) and ADD parameter gradients into
   * p->grad for each param with p->trainable && p->grad. in/out are the forward's activations. */
  strop_status (*backward)(strop__node *n, const strop__exec *x, const strop__act *in,
                           const strop__act *out, const float *dout, float *const *din);
  /* Optional fusion, asked before each forward. next[0..n_next) is a chain after this node:
   * next[0] reads this node's output (its only input), next[i + 1] is the sole reader of
   * next[i]'s, and none of their outputs but the last may be needed by anyone else. Where no
   * backward runs through the chain (nothing trainable at or before its nodes) and it crosses
   * no checkpointed block, one of them may have a second input (its n_in is 2): the output of
   * a node before this one (or the model's input), ready before this node runs, handed to the
   * forward in x->fused_side (a residual sum, STROP__LAYER_EPILOGUE_ADD). A layer with
   * STROP__LAYER_SIDE_GRAD is offered such a chain where a backward runs through it too (and
   * inside a checkpointed block), when that input is none of its own: its backward then hands
   * the input's gradient to x->fused_side_grad. shared:
   * how many other input slots, all of nodes after next[0] and outside the chain, read this
   * node's output too (0: next[0] is its sole reader). Returns how many of them, k (a prefix),
   * this layer computes itself until asked again (0: none; a call undoes an earlier fusion).
   * With k > 0 the graph stores no activation for the first k - 1 of next, nor for this node
   * unless shared > 0, does not run next[0..k), and calls this layer's forward with out = the
   * output of next[k - 1] and its backward with that output and its gradient. With shared > 0
   * the graph stores this node's output too and hands it to forward and backward in
   * x->fused_head, and its gradient from the other readers in x->fused_head_grad; the backward
   * then gets dout NULL when no gradient reached next[k - 1]'s output. Unless the layer has
   * STROP__LAYER_FUSE_EXACT, the graph offers a node with parameters only in a training step,
   * when none of them trains and it computes its eval-mode function (no batch statistics,
   * nothing to update): a layer that absorbs one (a frozen batch norm folded into a conv,
   * fuse.h) reads those parameters at each call. Eval mode keeps the unfused numbers
   * (predictions do not depend on freezing). */
  int (*fuse)(strop__node *n, strop__node *const *next, int n_next, int shared);
  /* Optional: the bytes of scratch the forward (backward 0) or the backward (1) takes through
   * strop__exec_scratch for inputs of per-sample shapes in at batch n, run with x's settings
   * (threads, compute dtype) and this step's fusion: the graph plans them with the step's
   * activations and gradients, in the memory of tensors dead at that moment, instead of above
   * them all. An upper bound is fine; 0 or NULL: nothing planned. */
  size_t (*scratch)(const strop__node *n, const strop__exec *x, const strop__shape *in,
                    int64_t batch, int backward);
  /* Optional: 1 when the graph may run this node a run of rows at a time, as it does with the
   * model's last node fused with a loss over the rows of its output (graph.h, strop__row_loss:
   * the LM head and its cross-entropy, one chunk of logits held at a time). It must hold that:
   * the node has one input; each row of its output (every dimension but the last flattened)
   * depends only on the same row of its input, in train and eval mode; forward and backward
   * take any run of rows as a batch of its own (per-sample shapes [in] and [out]), random draws
   * in row order; the backward reads not the output (the graph passes the run's gradient in
   * its place) and adds its parameters' gradients (or assigns them under x->pgrad_assign,
   * which the graph gives the first run only); and a run costs nothing beyond its rows' share
   * (a product that widens a whole held weight at each call does not qualify). NULL: never. */
  int (*rows)(const strop__node *n);
  /* Optional: 1 when, in a step run with x's settings, the backward reads the data of input
   * `slot` only through products that round it to BF16 first (the model's BF16 compute dtype:
   * strop__bf16_rne_bits, as the vdpbf16ps kernels pack and the exact fallback rounds), or not
   * at all, and takes it from in[slot] (not from pointers its forward kept). The graph may then
   * hold that input in BF16 from its last reader's forward to its first reader's backward and
   * hand the backwards its values widened back to FP32: the same bits, half the bytes kept
   * between the two (graph/model.c, compact_plan). 2: and the backward can read those BF16
   * values as they are held (x->held_in[slot], in[slot].data NULL), at any shape: the graph
   * then widens none when every reader's backward says so and the unit that wrote it reads it
   * back as held too (out_sign_only 2) or not at all. NULL: never. */
  int (*bf16_input)(const strop__node *n, const strop__exec *x, int slot);
  /* Optional: 1 when, in a step run with x's settings, the backward may read input 0, an
   * activation of per-sample shape [C, ...], as its deviations from a centre per channel held
   * in BF16 (x->centred_in: strop__bf16_compact_centred_par), not as its values. The layer takes
   * that rounding (a batch norm's train-mode backward, which reads x - mean from its batch mean,
   * the centre: the deviation keeps 8 significant bits, where autocast's BF16 input keeps them
   * for x itself) and reads nothing its forward decided from x back from x (the fused relu's
   * select comes from the unit's output then). The graph holds it so when this node is the
   * input's sole reader (graph/model.c, compact_plan). Asked with centre NULL when the step is
   * planned, and after the forward with centre non-NULL for the C values to hold the input
   * around, which the graph reads at once (0 and NULL when it has none after all). slot: the
   * input; only 0 is ever held so. NULL: never. */
  int (*bf16_centred)(const strop__node *n, const strop__exec *x, int slot, const float **centre);
  /* Optional: 1 when the backward of the unit this node runs (the node, or the chain its fuse
   * took) reads the unit's output only for whether each value is positive (a relu's select),
   * or not at all. That output too may then be held in BF16 between its readers' forwards
   * and backwards: widened back, each value keeps its sign and zeroness (ops/lowp.h,
   * strop__bf16_compact_par). 2: and it can read that sign from the BF16 values as held
   * (x->held_out, out->data NULL). NULL: a unit that reads its output reads its values. */
  int (*out_sign_only)(const strop__node *n);
  /* LoRA adapters for this type, or NULL. */
  const strop__lora_ops *lora;
};

/* The longest chain the graph offers a layer's fuse. */
#define STROP__FUSE_MAX 3

/* The registry: look up a layer type by name; NULL if unknown. */
const strop__layer_vtable *strop__layer_find(const char *type);
/* All registered types, composites included (for messages, docs and tests). */
int strop__layer_count(void);
const strop__layer_vtable *strop__layer_at(int i);
/* "linear, conv2d, ..." into buf (truncated with "..." to cap); returns buf. */
const char *strop__layer_names(char *buf, size_t cap);

/* Parses o into a fresh cfg of type vt (caller frees with strop__free): the schema, then the
 * type's check. */
strop_status strop__layer_parse(const strop__layer_vtable *vt, strop__opts *o, void **cfg_out);

#endif
