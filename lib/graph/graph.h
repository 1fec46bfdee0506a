/* SPDX-License-Identifier: MIT */
/* strop — the model graph's internal API: what io, surgery, optim and train use beyond the
 * public model.h. The graph knows nothing of files, recipes or optimizers. */
#ifndef STROP_GRAPH_H
#define STROP_GRAPH_H

#include "core/arena.h"
#include "graph/meta.h"
#include "layers/layer.h"
#include "strop/model.h"

enum {
  STROP__ACT_KEPT = 0,
  STROP__ACT_RELEASED = 1,
  STROP__ACT_MOVED = 2,
  STROP__ACT_COMPACT = 3 /* held in BF16 until a reader's backward (model.c, compact_plan) */
};

/* Tests and benches: 1 (the default) lets a step computing in BF16 hold the outputs that only
 * BF16 products read in BF16 between their forward and backward (model.c, compact_plan), 0
 * keeps them in FP32: the same bits. */
extern int strop__compact_acts;
/* Tests and benches: 1 (the default) lets such a step hold a batch norm's input in BF16 around
 * its batch mean, for the norm's backward (vtable bf16_centred), 0 keeps it in FP32: the BF16
 * step's numbers of before, at more memory. */
extern int strop__compact_centred;
/* Tests and benches: 1 (the default) hands an output held in BF16 to its readers' backwards as
 * it is held when every one of them reads it so (vtable bf16_input 2: a conv's weight gradient
 * on vdpbf16ps) and its own unit reads back only its signs (out_sign_only 2) or nothing; 0
 * widens it back to FP32 for them first: the same bits. */
extern int strop__compact_held;
/* 1 (the default): an output the graph would compute again for its reader's backward (a GELU
 * before a linear layer) is held in BF16 instead where that reader reads it as held (a step in
 * BF16 on vdpbf16ps); 0: computed again. The same bits (bench_big HOLD_RECOMPUTABLE=ab). */
extern int strop__hold_recomputable;

/* What a training step's memory was made of, by kind: filled by the forward and the backward
 * while a model's `account` points at one (strop_model_step_memory's planning logs it). */
enum { STROP__ACCOUNT_TYPES = 24 };
typedef struct strop__step_account {
  /* per layer type: the output bytes kept at the end of the forward (each buffer once, under
   * the node that holds it last: a relu written over its batch norm's output counts as relu),
   * and what the layers' forwards took from the arena and kept (saved tensors) */
  const char *type[STROP__ACCOUNT_TYPES];
  size_t kept[STROP__ACCOUNT_TYPES], saved[STROP__ACCOUNT_TYPES];
  int n_types;
  size_t planned;   /* the region of activations and gradients planned from their lifetimes */
  size_t live_peak; /* the most bytes of that region live at one tick */
  size_t fwd_used;  /* the arena's bytes in use at the end of the forward */
  size_t fwd_peak;  /* its peak by then (the forward's scratch included) */
  size_t fwd_free;  /* bytes on the free list at the end of the forward (without a plan) */
  size_t peak;      /* the arena's peak at the end of the backward */
  /* in: a batch to plan the step of besides the one run (0: none); out: the bytes the
   * parameters' gradients planned with that step's activations save against holding them
   * apart (strop__plan_grads: the planned region with them against without them, plus them) */
  int64_t plan_n;
  size_t grads_saved;
} strop__step_account;

struct strop_model {
  strop__shape in_shape; /* per-sample input shape */
  strop__node *nodes;    /* in insertion order, which is a topological order */
  int n_nodes, cap_nodes;
  /* The nodes' names index (model.c's names_*), in the same block as the nodes: after the
   * cap_nodes nodes, open-addressed slots (node index + 1, 0 empty; the least power of two at
   * least twice cap_nodes and 16), so that it grows with the node array and never allocates by
   * itself (a model's nodes are never allocated elsewhere). It holds
   * nodes[0, names_n) by their names; appends are indexed by the next lookup, and whatever
   * else moves, drops or renames nodes calls strop__model_names_stale. A hit is checked
   * against the node's current name, so a stale slot is never taken for a match. */
  int names_n;
  int finalized;
  int training;
  strop__rng rng; /* dropout and init stream; saved in checkpoints */
  uint64_t seed;
  strop__meta meta;   /* strop_model_set_meta(): copied by clone, kept by surgery */
  int frozen_dtype;   /* STROP_DTYPE_*: how frozen linear weights are held
                                   (strop_model_set_frozen_dtype, lib/surgery/storage.c) */
  int64_t int8_group; /* int8's inputs per scale, 0 per output channel
                         (strop_model_set_frozen_int8_group) */
  int compute_dtype;  /* STROP_DTYPE_F32 or _BF16: the precision of linear and conv products
                         (strop_model_set_compute_dtype; layers read it from strop__exec) */
  int weight_cache;   /* 1 (the default): a trained FP32 weight a BF16 product reads keeps its
                         BF16 copy until it changes; 0: only frozen ones do
                         (strop_model_set_weight_cache; layers read it from strop__exec) */
  int attention;      /* STROP_ATTENTION_*: tiled or materialised attention weights
                         (strop_model_set_attention; layers read it from strop__exec) */
  /* parameter index over all nodes, rebuilt by strop__model_reindex */
  strop__param **params;
  int n_params;
  /* execution state of the current step */
  strop__arena arena;
  strop__act *acts;        /* per node, valid after a forward until the step ends */
  strop__act input;        /* the model input of the current step */
  float **grads;           /* per node, gradient of the node's output (arena) */
  int *upstream_trainable; /* per node: a trainable param at or before it */
  int *consumers;          /* per node: how many input slots read its output */
  int64_t batch;
  int step_training;          /* the mode of the current step's forward */
  const float *step_pad_mask; /* its padding mask (an arena copy), or NULL */
  int64_t step_pad_len;       /* positions per sample of step_pad_mask */
  const float *step_types;    /* its token types (an arena copy), or NULL */
  int64_t step_types_len;     /* positions per sample of step_types */
  int have_forward;           /* 1 after a forward, until backward/step end */
  int want_input_grad;        /* tests: also compute d loss / d input */
  int keep_act;               /* a node whose activation must be stored even where fusion
                                   would skip it (the trunk-output cache reads it), or -1 */
  int no_fusion;              /* 1: run every node by itself (tests, benchmarks) */
  int keep_all;               /* 1: keep every activation to the end of the step and run
                                   nothing in place (tests: the reference layout) */
  /* the output shape of every node for the per-sample input shape run_in (a batch's actual
   * shape may differ from in_shape, the one the parameters were inferred with) */
  strop__shape *run_shapes; /* per node; valid when run_valid */
  strop__shape run_in;
  int run_valid;
  float *input_grad; /* arena, when want_input_grad */
  /* per node (arena, from the forward until the step ends), STROP__ACT_*: what became of the
   * node's output memory. RELEASED: no backward reads the output, so the forward handed its
   * memory to a later node once its last reader had run (a frozen trunk keeps only what is
   * live), or the backward did once every reader's backward had run; MOVED: an in-place
   * reader (relu after a batch norm) wrote its own output over it */
  uint8_t *released;
  /* activation checkpointing (strop_model_set_checkpointing): "auto", a glob, or NULL (off) */
  char *ckpt_pattern;
  /* per node (arena, from the forward until the step ends; NULL without checkpointing): the
   * first node of the checkpointed block holding it, or -1. For a block's first node b0:
   * ckpt_last[b0] its last node and ckpt_rng[b0] the model's generator as the block's forward
   * found it, so the recompute in the backward draws the same dropout masks */
  int *ckpt_first, *ckpt_last;
  strop__rng *ckpt_rng;
  int probe; /* 1 while strop__model_probe_step runs: no state changes */
  /* the step's activations and gradients planned from their lifetimes (arena, from the
   * forward until the step ends; NULL when the step runs on the free list: STROP_MEMORY_PLAN=0):
   * per node the offset in plan_base of its output (plan_off[i]), of its output's gradient
   * (plan_off[n_nodes + i]), of its recomputed output (plan_off[2 n_nodes + i]), of the
   * scratch of its forward and backward (plan_off[3 n_nodes + i], plan_off[4 n_nodes + i]:
   * vtable `scratch`, plan_scratch[i] and plan_scratch[n_nodes + i] bytes), and in a
   * checkpointed block of its output and forward's scratch in the block's recompute
   * (plan_off[5 n_nodes + i], plan_off[6 n_nodes + i]; model.c's PLAN_* slots; m->compact's
   * two after them), SIZE_MAX when
   * not planned, and the backward iteration the gradient is planned to be taken at (plan_giter) */
  /* per node (arena, from the forward until the step ends; NULL where everything is kept): 1
   * when its output was not kept and its sole reader's backward computes it again from its
   * input (STROP__LAYER_RECOMPUTE: gelu before fc2; not inside a checkpointed block); with a
   * plan, plan_off[2 n_nodes + i] is where */
  uint8_t *recompute;
  /* per node (arena, from the forward until the step ends; NULL for none): 1 when its output
   * is held in BF16 from its last reader's forward to its first reader's backward
   * (model.c, compact_plan; released[i] is STROP__ACT_COMPACT meanwhile), at
   * plan_off[7 n_nodes + i], and widened back at plan_off[8 n_nodes + i]; 2 when it is held
   * there as its deviations from its sole reader's centres (vtable bf16_centred), which that
   * reader's backward reads as they are (never widened) */
  uint8_t *compact;
  unsigned char *plan_base;
  size_t *plan_off;
  size_t *plan_scratch;
  int *plan_giter;
  size_t plan_bytes; /* the planned region's size */
  /* the memory plan_base points at: the model's own, kept from step to step (grown when a step
   * needs more), not the arena's, since the gradients of trainable parameters lie in it from
   * the backward that first writes them to the next forward (strop__param.grad_planned:
   * planned like the activations, in the memory the backward has given back) */
  unsigned char *region;
  size_t region_cap;
  /* 1: a training step plans no parameter gradient (strop__plan_grads' default otherwise): set
   * by a trainer whose windows hold several micro-batches (STROP_TRAIN_ACCUM_STEPS > 1), whose
   * gradients must outlive the next forward; the step memory's prediction follows it */
  int grads_apart;
  /* what the last step held, for strop_model_step_memory's account (DEBUG log) */
  struct strop__step_account *account;
  /* the forward's free list at its end (arena; model.c's entries): memory of outputs no one
   * reads any more, which the backward takes its gradients and recomputes from */
  void *fwd_free;
  int n_fwd_free;
  /* incremental decoding (lib/generate): set around a forward that computes later positions
   * of cached sequences, NULL otherwise; the forwards pass it to the layers */
  const strop__decode *decode;
  /* set around a backward by whoever wants to act on gradients as they become final (the
   * data-parallel trainer starts their all-reduce): called after the backward of each node
   * (or fused chain) that ran, with the lowest node index done; every node from there up is
   * done, so a parameter that no lower node uses has its final gradient. A non-OK status
   * stops the backward with it. NULL: none. */
  strop_status (*bwd_done)(void *ctx, int node);
  void *bwd_done_ctx;
  /* set around a training step of one rank of a data-parallel group: the rows of the global
   * batch before and after the rank's own, whose random draws (dropout) the layers skip so
   * that each row gets one process's masks (the forward and a checkpointed block's recompute
   * pass them to the layers); 0 otherwise */
  int64_t rows_before, rows_after;
  /* a data-parallel training step's group for batch statistics (strop__exec.group), or NULL;
   * set by the trainer for its step (a probe never sees it) */
  const strop__group *group;
  /* a loss over the rows of the output fused with the last node (strop__row_loss): want_rows
   * is set by the caller around a forward that may leave the last node to it (the forward
   * decides: strop__model_forward_shaped); rows_fused says, for the step, whether it did (the
   * last node's output was not computed: strop__model_rows_eval or strop__model_backward_rows
   * computes it a chunk of rows at a time); rows_steps counts the forwards that did and
   * rows_chunks the chunks their backwards ran (tests) */
  int want_rows;
  int rows_fused;
  int64_t rows_steps, rows_chunks;
};

/* A loss over the rows of the model's output [rows, cols] (every dimension but the last
 * flattened) that the graph evaluates a chunk of rows at a time, fused with the model's last
 * node when that node's layer allows it (vtable `rows`): the trainer's cross-entropy after an
 * LM head, so that only one chunk of logits (and of their gradient, written over them) is
 * ever held. The graph knows nothing of what the loss is. */
typedef struct strop__row_loss {
  /* Rows [r0, r0 + nr) of the output, nr x cols floats in v (the graph's memory): evaluates
   * them (keeping its sums in ctx) and, when grad is 1, writes d loss / d output of those rows
   * over them. Called once per row, in row order. A non-OK status (its sentence set) stops the
   * step with it. */
  strop_status (*rows)(void *ctx, int64_t r0, int64_t nr, int64_t cols, float *v, int grad);
  void *ctx;
} strop__row_loss;

/* Whether a forward asked for it (want_rows) leaves the last node to a loss over its rows:
 * strop__fused_loss (tests), else STROP_FUSED_LOSS in the environment ("0": never, to measure
 * one against the other), else yes where it applies. */
extern int strop__fused_loss;
/* Rows per chunk of such a step (tests: small chunks on small models), or 0: as many as fit
 * strop__rows_chunk_bytes of output, or the bytes of the gradients the node's backward adds to
 * if more (strop__rows_chunk), at least STROP__ROWS_CHUNK_MIN, spread evenly over the chunks
 * that takes and rounded up to STROP__ROWS_CHUNK_ALIGN. */
extern int64_t strop__fused_loss_rows;
/* Benches and tests: 1 (the default) lets a chunk hold as much output as the gradients its
 * backward adds to (strop__rows_chunk's grad_bytes); 0 only strop__rows_chunk_bytes, as before
 * branch gph. */
extern int strop__rows_chunk_grads;
#define STROP__ROWS_CHUNK_BYTES ((size_t)16 << 20)
/* The output a chunk holds at least the room for: STROP__ROWS_CHUNK_BYTES (tests: less, so that
 * a small model's rows take several chunks) */
extern size_t strop__rows_chunk_bytes;
/* (each chunk's products read the whole weight again: below about 192 rows that pass costs
 * more than the chunk's logits stay in cache to save, bench_lmhead's GPT-2 head 1.08x the whole
 * head's CPU time at 64 rows, 1.06x at 96, 1.025x at 128, 1.016x at 192) */
#define STROP__ROWS_CHUNK_MIN 192
#define STROP__ROWS_CHUNK_ALIGN 32
/* The rows per chunk of such a step over rows of cols outputs, whose node's backward adds to
 * grad_bytes of parameter gradients at each chunk (0: none, a frozen head). Each chunk reads
 * and writes those gradients whole (GPT-2's tied head: 154 MB of dW, passed 3 times a step in
 * 192-row chunks), so a chunk may hold as much output as they take: the step then holds at most
 * twice what the gradients hold already, and passes them once per that much output. */
int64_t strop__rows_chunk(int64_t rows, int64_t cols, size_t grad_bytes);

/* After a forward that left its last node to a loss (m->rows_fused): the last node's output a
 * chunk of rows at a time, each chunk given to loss (grad 0); an evaluation's. */
strop_status strop__model_rows_eval(strop_model *m, const strop__row_loss *loss);
/* The backward of a training forward that left its last node to a loss (m->rows_fused): for
 * each chunk of rows, the last node's forward, the loss with its gradient, and at once the
 * node's backward of the chunk (its input's gradient rows, its parameters' gradients summed
 * over the chunks); then the rest of the model as strop__model_backward. */
strop_status strop__model_backward_rows(strop_model *m, const strop__row_loss *loss);

/* Whether a step's activations and gradients are planned from their lifetimes (1) or taken
 * from the free list (0); -1 (the default): STROP_MEMORY_PLAN in the environment ("0": the free
 * list), else planned. For tests that compare the two. */
extern int strop__memory_plan;
/* Tests and benches: 1 (the default) plans the layers' scratch of at least
 * strop__plan_scratch_min bytes with the planned step (vtable `scratch`); 0 leaves all of it to
 * the arena, above the planned region, as before. */
extern int strop__plan_scratch;
/* Tests and benches: 1 (the default) lets the first node to write an input gradient in the
 * backward write it outright when its layer can (STROP__LAYER_ASSIGNS_DIN; a residual sum
 * writing both its inputs' gradients); 0 only a sole reader of a one-input layer, as before:
 * the other gradients zeroed first and added to. The same values (0 + g is g but for -0). */
extern int strop__din_first_writer;
/* Tests and benches: 1 (the default) plans a training step's parameter gradients with its
 * activations, each from the backward that first writes it to the step's end, in the memory
 * the backward has given back (strop__param.grad_planned); 0 keeps every gradient in memory of
 * its own from step to step, as before. The same values. */
extern int strop__plan_grads;
/* The least scratch planned (bytes); smaller scratch stays on the arena's top, the same warm
 * memory for every call. Tests set 0. */
extern size_t strop__plan_scratch_min;

/* Groups the nodes into the blocks that pattern names ("auto" or a glob over dotted name
 * prefixes; see strop_model_set_checkpointing): first[i] = the first node of the run of
 * consecutive nodes (in execution order) that share i's block name, or -1 when i is in no block
 * or its run is a single node. Returns how many blocks there are. */
int strop__model_blocks(const strop_model *m, const char *pattern, int *first);

/* Plans a training step of n samples of per-sample shape `shape` (NULL: in_shape) by running
 * one: a forward in train mode and a backward, on zeros, in an arena of its own, with the
 * model's generator, running statistics, parameter gradients and pending step left as they
 * were (a pending forward is dropped). rows 1: a step whose loss runs fused with the last node
 * where it can (the trainer's cross-entropy, strop__row_loss), holding one chunk of the output
 * and no gradient of it. *arena_peak: the most step memory it held at once (activations kept
 * under liveness and checkpointing, saved tensors, gradients, scratch); *out_bytes: the
 * output's size, which the loss's gradient takes again (0 when the loss ran fused). The
 * probe's step holds its gradients apart; plan_n > 0 (0 for a step that keeps them apart too)
 * plans besides (without running it) the step of plan_n samples, and *grads_saved (may be
 * NULL; 0 when strop__plan_grads is off or the step is not planned) gets the bytes its
 * parameters' gradients, planned with its activations, save against holding them apart. Errors
 * as a step's. */
strop_status strop__model_probe_step(strop_model *m, int64_t n, const strop__shape *shape,
                                     int rows, int64_t plan_n, size_t *arena_peak,
                                     size_t *out_bytes, size_t *grads_saved);

/* What a model holds and a bound of a step's activations, counted without running one: its
 * parameters and buffers as held (*weights), the gradients of its trainable parameters
 * (*grads), and every node's output for n samples plus the output gradient of every node the
 * backward visits (*act_bound: an upper bound, for a quick look at whether a step could fit; the
 * step's memory is what strop__model_probe_step plans). STROP_OK, STROP_E_SHAPE (a byte count
 * overflows: the sentence names fn, n and the node) or STROP_E_NOMEM. */
strop_status strop__model_memory_bound(const char *fn, const strop_model *m, int64_t n,
                                       size_t *weights, size_t *grads, size_t *act_bound);

/* Add a node from parsed options (YAML spec loader, surgery). Takes ownership of nothing;
 * copies the options. inputs: n_inputs names ("input" = model input); n_inputs == 0 means
 * the previous node. file may be NULL; errors carry opts' line/col when set. A composite type
 * (transformer_block) adds its parts "<name>.<part>", all of them or none. */
strop_status strop__model_add_opts(strop_model *m, const char *name, const char *type,
                                   strop__opts *opts, const char *const *inputs, int n_inputs);

/* Rebuild m->params from the nodes (after finalize or any structural change). */
strop_status strop__model_reindex(strop_model *m);
strop__param *strop__model_param_find(strop_model *m, const char *name);
/* The node named name, or -1, by a scan of the nodes: for models no one may be editing (it
 * writes nothing, so several threads may look up one model at once). */
int strop__model_node_find(const strop_model *m, const char *name);
/* The same through the names index (filled by this lookup as needed, so it writes to m): for
 * the code that builds or edits m, where a scan per lookup made an edit quadratic in the
 * nodes. Never fails (lookups do not allocate). */
int strop__model_node_lookup(strop_model *m, const char *name);
/* To call after any change to m->nodes but appending nodes (moving, dropping or renaming
 * one): the names index is built again by its next lookup. */
void strop__model_names_stale(strop_model *m);

/* Training-path execution. The step's memory lives in m->arena until strop__model_step_end.
 * forward: input [n, in_shape]; side: the batch's padding mask and token types ([n, T] each,
 * copied for the step), or NULL for none; *out points at the output activation (arena). */
strop_status strop__model_forward_exec(strop_model *m, const float *input, int64_t n,
                                       int training, const strop__side *side,
                                       const strop__act **out);
/* The same for a batch of per-sample shape `shape` (NULL: in_shape): any shape of in_shape's
 * rank that every layer accepts (shorter sequences, other image sizes); a layer that does not
 * is an error naming it. */
strop_status strop__model_forward_shaped(strop_model *m, const float *input, int64_t n,
                                         const strop__shape *shape, int training,
                                         const strop__side *side, const strop__act **out);
/* Checks a padding mask given to function fn for a batch of n samples whose sequences
 * (the first per-sample dimension of the input) have t positions: NULL is fine; otherwise
 * [n, t] of 0 and 1. Errors name fn, the shapes, the
 * first bad value and where. */
strop_status strop__model_check_mask(const char *fn, const strop_tensor *mask, int64_t n,
                                     int64_t t);
/* The same for token types: NULL is fine; otherwise [n, t] of integers in [0, 2^24) (the
 * layer that reads them bounds them by its table). */
strop_status strop__model_check_types(const char *fn, const strop_tensor *types, int64_t n,
                                      int64_t t);
/* The mask and the types of side (NULL: none), reading only the fields its size covers;
 * STROP_E_INVALID_ARG naming fn when the size does not cover the mask. */
strop_status strop__side_inputs_read(const char *fn, const strop_side_inputs *side,
                                     const strop_tensor **mask, const strop_tensor **types);
/* The per-sample output shape for per-sample input shape in (any shape of the model's rank
 * that every layer accepts): the shape pass a forward of that shape runs (and reuses). Errors
 * (STROP_E_SHAPE) name the layer that refuses it. */
strop_status strop__model_output_for(strop_model *m, const strop__shape *in, strop__shape *out);
/* backward from dout (gradient of the loss w.r.t. the output, same layout); accumulates into
 * trainable params' grad. Visits only nodes with a trainable parameter at or upstream. */
strop_status strop__model_backward(strop_model *m, const float *dout);
/* Forget the step's activations (reset the arena). */
void strop__model_step_end(strop_model *m);
/* Zero all trainable gradients (allocating them on first use). */
strop_status strop__model_zero_grad(strop_model *m);
/* The same, lazily: the gradients are marked stale rather than cleared, and the next backward
 * writes them outright where the layer can (STROP__LAYER_ASSIGNS_PGRAD) and clears the rest,
 * so a step does not clear and then re-read every gradient. Until that backward p->grad holds
 * old values: a reader in between calls strop__param_grad_fresh first. The trainer uses it. */
strop_status strop__model_zero_grad_lazy(strop_model *m);
/* While a training forward awaits its backward, the gradients planned for that backward lie
 * where live activations are: before a host writes gradients then (strop_model_set_grad, a
 * zero_grad, an update) they leave the plan, zero as they are (NULL), and the backward makes
 * them in memory of their own. Nothing when no forward is pending. */
void strop__model_grads_unplan(strop_model *m);
/* Gives the step's memory back (tests: a step made cold again): the arena, and the planned
 * region once the gradients in it that hold values are copied into memory of their own.
 * STROP_E_NOMEM (nothing given back) when they cannot be. */
strop_status strop__model_step_release(strop_model *m);
/* Clear p's gradient if it is stale (see above); nothing otherwise. */
void strop__param_grad_fresh(strop__param *p);
/* Clear p's gradient (if it has one) now, and its stale and checked marks. */
void strop__param_zero_grad(strop__param *p);
/* Allocate grad for trainable params lacking one, free it for frozen ones. */
strop_status strop__model_sync_grads(strop_model *m);

/* Re-infer every node and initialise fresh parameters from seed (all trainable). */
strop_status strop__model_reinit(strop_model *m, uint64_t seed);
/* Re-infer shapes (and re-declare params) of every node; init = 1 initialises them, -1 gives
 * float parameters no memory at all (a strict load that may borrow them from a mapped file is
 * about to give every one its values, io/weights.c). */
strop_status strop__model_infer_all(strop_model *m, uint64_t seed, int init);
/* strop_model_finalize(), leaving the parameters zero when init is 0 (a checkpoint is about
 * to overwrite every one of them), without memory when it is -1 (as strop__model_infer_all). */
strop_status strop__model_finalize(strop_model *m, uint64_t seed, int init);

/* The last node of the model's frozen, deterministic trunk through which every later node
 * is reached (its output can be cached per sample), or -1 when there is none. */
int strop__model_frozen_cut(const strop_model *m);
/* A new model made of the nodes after cut, whose input is the cut node's output; same names,
 * options, values, trainable flags and parameter groups. */
strop_status strop__model_split_head(const strop_model *m, int cut, strop_model **out);
/* Copies values and flags of every parameter of dst that src has by the same name. */
strop_status strop__model_copy_state(strop_model *dst, const strop_model *src);

/* Deep copy (for trials and surgery transactions). */
strop_status strop__model_clone(const strop_model *src, strop_model **out);
/* The same for a surgery transaction, without copying frozen weights: each frozen parameter's
 * own memory becomes shared (strop__param_share: the same pointers, reference-counted) and the
 * copy takes a reference, as it does for weights borrowed from a mapped file; whatever writes a
 * shared weight copies it first, so neither model sees the other's changes. Until the clone is
 * freed (or swapped in), src shares those weights; strop__model_unshare(src) afterwards gives
 * them back as src's own. On failure src is as it was. */
strop_status strop__model_clone_shared(strop_model *src, strop_model **out);
/* Every parameter of m whose shared memory no other model holds any more becomes m's own
 * again (never fails; parameters still shared, or borrowed from a file, stay so). */
void strop__model_unshare(strop_model *m);

#endif
