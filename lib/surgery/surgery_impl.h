/* SPDX-License-Identifier: MIT */
/* strop — surgery internals shared by the files of lib/surgery: the plan and its edits, the
 * working copy they run on (plan.c runs it as a transaction, edits.c and lora.c change it,
 * describe.c reports it). */
#ifndef STROP_SURGERY_IMPL_H
#define STROP_SURGERY_IMPL_H

#include "core/sbuf.h"
#include "graph/edit.h"
#include "graph/graph.h"
#include "strop/surgery.h"

/* ---- the plan ---- */
enum {
  STROP__E_FREEZE,
  STROP__E_UNFREEZE,
  STROP__E_REPLACE,
  STROP__E_INSERT_AFTER,
  STROP__E_INSERT_BEFORE,
  STROP__E_REMOVE,
  STROP__E_TRUNCATE,
  STROP__E_APPEND,
  STROP__E_LORA,
  STROP__E_PARAM_GROUP
};
extern const char *const strop__edit_kind_names[];

typedef struct strop__edit {
  int kind;
  char *target; /* node or glob; NULL for append */
  char *name;   /* new node's name (insert, append) */
  char *type;
  char *options;
  uint64_t seed; /* replace */
  int flags;
  int64_t rank;
  float alpha, dropout, lr_mult;
  int no_decay;
} strop__edit;

struct strop_surgery {
  strop_model *model;
  strop__edit *e;
  int n, cap;
  uint64_t seed;
  int seed_set;
};

/* ---- the working copy ---- */

/* Per node of the working copy: how the runner treats it. */
typedef struct strop__naux {
  int fresh;      /* created by this plan: parameters come from its seed */
  int lora_new;   /* adapters just added: to initialise */
  int lora_mask;  /* the parts (bit i) whose adapters are new; 1 for a whole-node adapter */
  int dirty;      /* re-infer even if its input shapes did not change */
  void *pristine; /* fresh nodes: the parsed cfg before any inference */
  uint64_t seed, stream;
} strop__naux;

typedef struct strop__work {
  strop__gedit g;   /* the model being edited, a strop__naux per node */
  strop__sbuf *log; /* one line per edit, or NULL */
  uint64_t seed;    /* the plan's seed */
  int k;            /* index of the running edit */
} strop__work;

static inline strop__naux *strop__work_aux(const strop__work *w, int i) {
  return (strop__naux *)strop__gedit_aux(&w->g, i);
}

/* Runs one edit on the working copy (edits.c); the error says why, without the edit. */
strop_status strop__edit_run(strop__work *w, const strop__edit *e);
/* The LoRA edit (lora.c). */
strop_status strop__edit_lora(strop__work *w, const strop__edit *e);
/* Re-infers what the last edit may have changed: dirty nodes and nodes whose input shapes
 * differ from what they were inferred with; initialises what is new (edits.c). */
strop_status strop__work_reinfer(strop__work *w);
/* The single node pat names (exactly, or a glob matching one node) into *idx. */
strop_status strop__work_resolve_one(strop_model *m, const char *pat, int *idx);

/* describe.c: the head of an edit's line, a node's shape and size, the before/after diff */
void strop__describe_edit_head(strop__sbuf *log, const strop_surgery *s, int k);
void strop__describe_node(strop__sbuf *log, const strop_model *m, int i);
void strop__describe_diff(strop__sbuf *t, const strop_model *a, const strop__work *w);

/* Runs the plan on a clone of its model. On success *out is the edited clone (reindexed) and
 * *flags_only says whether the plan only changes flags (freeze, unfreeze, param_group). log,
 * when not NULL, receives one line per edit. On failure the error names fn, the edit and why;
 * *out is NULL. */
strop_status strop__surgery_run(const char *fn, const strop_surgery *s, strop__sbuf *log,
                                strop_model **out, int *flags_only);
/* Moves the clone's contents into model and frees the old contents (never fails); the frozen
 * weights the clone shared with model are the model's own again. */
void strop__model_swap_in(strop_model *model, strop_model *clone);
/* Frees a clone strop__surgery_run made without swapping it in: model's frozen weights that it
 * shared are model's own again, as they were. */
void strop__surgery_discard(strop_model *model, strop_model *clone);
/* Makes every parameter hold the frozen dtype `dtype` (storage.c: frozen linear weights in it,
 * the rest FP32) and records it as the model's; all or nothing (STROP_E_NOMEM naming fn and
 * the weight, the model unchanged). */
strop_status strop__model_store(const char *fn, strop_model *m, int dtype);

/* PEFT's modules_to_save: the nodes whose full weights adapter files carry beside the adapters,
 * kept in the model's metadata "lora.modules_to_save" (a JSON list of node names; lora_io.c).
 * get copies the list out (free each name and the array with strop__free; *n is 0 without the
 * key); add appends a node if it is not listed; prune drops names that are no longer nodes
 * and removes the key when none is left. Errors (a value that is not a list of names) say so
 * without a function name. */
strop_status strop__mts_get(const strop_model *m, char ***names, int *n);
strop_status strop__mts_add(strop_model *m, const char *node);
strop_status strop__mts_prune(strop_model *m);

/* STROP_E_UNSUPPORTED (the error naming fn, the node and the tie) when merging the model's
 * adapters not yet merged would change a tensor their base weight is tied to (LoRA on GPT-2's
 * lm_head or wte, which share one weight); STROP_OK otherwise (lora_io.c). */
strop_status strop__lora_merge_check(const char *fn, const strop_model *model);

/* Number of scalar values in params (buffers excluded), trainable only if asked. */
int64_t strop__node_count(const strop__node *n, int trainable_only);

/* ---- a training step's memory, planned (inspect.c) ---- */

/* How the step to plan is run: optimizer values per trainable value (slots), its gradients
 * held apart from the activations (apart: a trainer accumulating micro-batches) or planned
 * with them, and its loss fused with the last node where it can (rows: the cross-entropy). */
typedef struct strop__step_how {
  int slots, apart, rows;
} strop__step_how;

/* strop_model_step_memory and strop_model_check_memory for a step run as how says, their
 * errors naming fn. The model functions pass the model's own (the cross-entropy, gradients
 * apart as its last trainer said), the trainer's pass the trainer's. */
strop_status strop__step_memory(const char *fn, strop_model *model, int64_t batch,
                                const int64_t *sample_shape, int rank, const strop__step_how *how,
                                size_t *activations, size_t *peak);
strop_status strop__check_memory(const char *fn, strop_model *model, int64_t batch,
                                 const int64_t *sample_shape, int rank,
                                 const strop__step_how *how, size_t limit);

#endif
