/* SPDX-License-Identifier: MIT */
/* strop — recipes inside the library: the YAML tree, its schema and typed readers shared by
 * validation, the runner and the tuner. */
#ifndef STROP_RECIPE_IMPL_H
#define STROP_RECIPE_IMPL_H

#include "core/settings.h"
#include "io/yaml.h"
#include "strop/recipe.h"

struct strop_recipe {
  strop__ynode *root; /* a mapping */
  char *file;         /* for messages ("recipe.yaml" or "<string>") */
  char *base_dir;     /* relative paths resolve here; "" for the working directory */
};

/* ---- run results ---- */
/* history columns per epoch: strop_run_history's keys up to HC_TIME, then the stage's
 * optimizer steps at the epoch's end (the metrics file's `step` with train.log_every) */
enum { HC_STAGE, HC_EPOCH, HC_TLOSS, HC_TACC, HC_VLOSS, HC_VACC, HC_LR, HC_TIME, HC_STEP, HC_N };
/* train.log_every's rows: the stage, the epochs done over the whole run (fractional: where
 * the plot puts it), the epoch within the stage (0-based), the stage's optimizer steps, the
 * mean training loss of the steps since the previous row, the learning rate, seconds */
enum { SC_STAGE, SC_DONE, SC_EPOCH, SC_STEP, SC_LOSS, SC_LR, SC_TIME, SC_N };
enum { RUN_NM = 9 }; /* metric keys kept per evaluation: STROP_METRIC_LOSS .. TOKENS */

typedef struct strop__stage_result {
  char name[64];
  int baseline;
  double test[RUN_NM], val[RUN_NM];
} strop__stage_result;

struct strop_run {
  strop_model *model;
  int64_t info[9];
  double seconds;
  strop__stage_result *st;
  int64_t n_st, cap_st;
  double *hist; /* hist_len rows of HC_N */
  int64_t hist_len, hist_cap;
  double *steps; /* steps_len rows of SC_N (train.log_every) */
  int64_t steps_len, steps_cap;
  int64_t log_every; /* the largest train.log_every of the stages; 0: no step rows */
};

/* The path of the file a mapping of the output section names under key (output.dir/name),
 * into buf; NULL when the key is absent. */
const char *strop__run_out_path(const strop_recipe *r, const strop__ynode *out, const char *key,
                                char *buf, size_t cap);
/* path as its folder's real path and its last component, into out (cap bytes): two keys that
 * name one file compare equal however they spell it (./, .., //, links), also before a run
 * makes their folders (the deepest folder that exists is resolved, the rest joined to it);
 * path itself when not even that resolves. */
void strop__recipe_plain_path(const char *path, char *out, size_t cap);
/* Before any training: creates output.dir and the folders of the output files (with
 * parents) and checks each can take a file, so a read-only or full folder fails the run
 * before its first epoch, naming the folder. */
strop_status strop__run_prepare_outputs(const strop_recipe *r);
/* Writes the output section's files (weights, spec, adapters, metrics, plot, report). */
strop_status strop__run_write_outputs(const strop_recipe *r, strop_run *run);
/* The SVG plot of loss and accuracy per epoch, stage boundaries marked. */
strop_status strop__run_plot_svg(const strop_run *run, const char *title, const char *path);

/* Loads (or builds) the recipe's model as a run of that mode would. */
strop_status strop__recipe_build_model(const strop_recipe *r, int mode, strop_model **out);

/* Rewrites every relative file path of the recipe as an absolute one (so a copy saved in
 * another folder still finds its files). */
strop_status strop__recipe_absolute_paths(strop_recipe *r);

/* The docs generator's view of the schema: key i of a section ("tune", "tune.params"; ""
 * for the top level), its type in a word and its allowed words (or NULL). 1 while there is
 * one, 0 past the last, -1 for an unknown section. */
int strop__recipe_schema_key(const char *section, int i, const char **key, const char **type,
                             const char *const **words);

/* One line of documentation per structural key of a recipe section (lib/recipe/tune.c for the
 * tune: section). The docs generator fails when a key of the schema has none, or one names a
 * key the schema lacks. */
typedef struct strop__key_doc {
  const char *section, *key, *doc;
} strop__key_doc;
extern const strop__key_doc strop__tune_key_docs[];

/* Validates the whole tree against the schema; errors name file:line:col. */
strop_status strop__recipe_validate(const char *fn, const strop_recipe *r);

/* Typed readers of a mapping's key: absent keys leave *out unchanged and return STROP_OK;
 * a value of the wrong form is an error naming file:line:col (validation catches most). */
strop_status strop__rd_int(const strop_recipe *r, const strop__ynode *map, const char *key,
                           int64_t *out);
strop_status strop__rd_float(const strop_recipe *r, const strop__ynode *map, const char *key,
                             double *out);
strop_status strop__rd_bool(const strop_recipe *r, const strop__ynode *map, const char *key,
                            int *out);
/* Borrowed scalar text, or NULL when absent. */
const char *strop__rd_str(const strop__ynode *map, const char *key);
/* model.frozen_dtype's words, in strop_dtype order */
extern const char *const strop__recipe_frozen_dtypes[];
/* model.compute_dtype's words, in strop_dtype order */
extern const char *const strop__recipe_cdtypes[];
extern const char *const strop__recipe_attention[];
/* A list of ints/floats (or one scalar, as a list of one); *n gets the count (<= cap). */
strop_status strop__rd_ints(const strop_recipe *r, const strop__ynode *map, const char *key,
                            int64_t *out, int cap, int *n);
strop_status strop__rd_floats(const strop_recipe *r, const strop__ynode *map, const char *key,
                              double *out, int cap, int *n);
/* The same list from its value node v (NULL: none); key names it in messages. */
strop_status strop__rd_ints_at(const strop_recipe *r, const strop__ynode *v, const char *key,
                               int64_t *out, int cap, int *n);
/* A path resolved against the recipe's folder, into buf (cap bytes); NULL when absent. */
const char *strop__rd_path(const strop_recipe *r, const strop__ynode *map, const char *key,
                           char *buf, size_t cap);
/* The settings a section gives for an object's table (and group; NULL: all): nodes[key] is
 * the value node of each setting named in stage (by name or alias) or else in top, NULL for
 * the others. nodes has t->n entries. */
void strop__recipe_knobs(const strop__ynode *top, const strop__ynode *stage,
                         const strop__settings *t, const char *group, const strop__ynode **nodes);
/* An error at a node: "fn: file:line:col: what". */
strop_status strop__recipe_err(const char *fn, const strop_recipe *r, const strop__ynode *at,
                               strop_status st, const char *fmt, ...) STROP__PRINTF(5, 6);
/* A layer's options mapping as "k=v k=[a,b]" text for strop_model_add / surgery. */
strop_status strop__recipe_options_text(const char *fn, const strop_recipe *r,
                                        const strop__ynode *opts, char *buf, size_t cap);

#endif
