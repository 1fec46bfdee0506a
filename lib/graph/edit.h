/* SPDX-License-Identifier: MIT */
/* strop — structural edits of a model's graph, shared by surgery, export and anything later:
 * add (plain or composite), move, delete, rewire, relink, retype, remove a node, and re-infer
 * a node with its parameters carried over by name. The node list stays in topological order;
 * in_names are the truth and in[] is rebuilt by relink. An editor may keep a record per node
 * (surgery's seeds and flags): it lives beside the node list and moves with its node. */
#ifndef STROP_GRAPH_EDIT_H
#define STROP_GRAPH_EDIT_H

#include "graph/graph.h"

/* The largest record per node an editor may keep. */
#define STROP__GEDIT_AUX_MAX 256

typedef struct strop__gedit {
  strop_model *m;
  char *aux; /* aux_size bytes per node, parallel to m->nodes; NULL when aux_size is 0 */
  size_t aux_size;
  int aux_cap;                    /* nodes the aux array has room for */
  void (*aux_release)(void *aux); /* frees what a record owns (may be NULL) */
} strop__gedit;

/* Starts editing m (finalized or not); aux records start zeroed. */
strop_status strop__gedit_init(strop__gedit *g, strop_model *m, size_t aux_size,
                               void (*aux_release)(void *aux));
/* Frees the aux records (not the model). */
void strop__gedit_free(strop__gedit *g);
/* Node i's record, or NULL without records. */
void *strop__gedit_aux(const strop__gedit *g, int i);

/* Adds a node (a composite: all its parts) of type/opts named name reading inputs, at the end;
 * *count gets how many nodes were added (the last *count; their records zeroed). The model
 * may be finalized: the nodes are added unfinalized, for re-infer to complete. */
strop_status strop__gedit_add(strop__gedit *g, const char *name, const char *type,
                              strop__opts *opts, const char *const *inputs, int n_inputs,
                              int *count);
/* Moves the k nodes starting at from to start at to (records along); in[] is stale after it:
 * relink. */
void strop__gedit_move(strop__gedit *g, int from, int k, int to);
/* Deletes node idx (its memory and record); in[] is stale after it: relink. */
void strop__gedit_delete(strop__gedit *g, int idx);
/* Every input slot named `from` reads `to` instead, except those of the skip_n nodes from
 * skip (skip_n 0: none skipped). */
strop_status strop__gedit_rewire(strop_model *m, const char *from, const char *to, int skip,
                                 int skip_n);
/* in[] from in_names: an error when an input is missing or comes at or after its reader. */
strop_status strop__gedit_relink(strop_model *m);
/* How many input slots read node idx (an add(x, x) counts twice). */
int strop__gedit_consumers(const strop_model *m, int idx);

/* Removes one-input node idx, its consumers reading its input instead. When idx is the
 * output, its input becomes the output: allowed when it is the node before; with move_ok also
 * when idx was its only consumer (it is then moved to the end). The error names the node. */
strop_status strop__gedit_remove(strop__gedit *g, int idx, int move_ok);
/* 1 when strop__gedit_remove(idx, move_ok) would succeed. */
int strop__gedit_removable(strop_model *m, int idx, int move_ok);

/* Re-types node idx as vt from its own options as it writes them, keeping the keys vt knows,
 * with overrides over[2k] = over[2k + 1] (NULL-terminated, may be NULL). Parameters are kept
 * as they are: re-infer next. */
strop_status strop__gedit_retype(strop_model *m, int idx, const strop__layer_vtable *vt,
                                 const char *const *over);

/* What a re-infer may do to the parameters of a node. */
enum {
  STROP__REINFER_ANY = 0,     /* new, lost and reshaped parameters are all fine */
  STROP__REINFER_KEEP = 1,    /* every parameter must stay, with its shape */
  STROP__REINFER_ADAPTERS = 2 /* with KEEP: new adapter parameters are fine */
};
/* Re-infers node i from its inputs' shapes. Each parameter of the new declaration takes the
 * values, gradient and flags of the old one of the same name and shape; a new one is zeroed
 * (its trainable flag and group from an old one of its name, when there was one) and counted
 * in *n_new (may be NULL). On error the node keeps its old parameters. */
strop_status strop__gedit_reinfer(strop_model *m, int i, int policy, int *n_new);

#endif
