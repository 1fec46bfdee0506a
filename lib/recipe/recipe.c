/* SPDX-License-Identifier: MIT */
/* strop — recipes: parse a YAML file into a bounded tree, check it against the schema (unknown
 * keys are errors naming file:line:col and the keys expected), edit by key path, write back. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "core/sbuf.h"
#include "optim/optim.h"
#include "recipe/recipe_impl.h"
#include "train/train_impl.h"
#include "tune/tune_impl.h"

#define RECIPE_MAX_BYTES ((size_t)4 * 1024 * 1024)
static const strop__yaml_limits LIMITS = {24, 100000, 8192};

/* ---- the schema ---- */
enum {
  T_INT,
  T_FLOAT,
  T_BOOL,
  T_STR,
  T_ENUM,
  T_INTS,
  T_FLOATS,
  T_MAP,
  T_SEQMAP,
  T_ANYMAP,
  T_SURGERY,
  T_STR_OR_INT,
  T_FLOAT_OR_AUTO, /* a number in the range, or the word auto */
  T_STRS,
  T_ANY
};

/* The values a number may take (T_INT, T_FLOAT, each entry of T_INTS and T_FLOATS), or the
 * entries a list must have (T_SEQMAP): lo <= v <= hi, an end left out where it is open. */
typedef struct range {
  double lo, hi;
  int lo_open, hi_open;
  const char *text; /* the bounds as the message states them */
} range;

static const range R_FRACTION = {0, 1, 0, 1, "in [0, 1)"};
static const range R_PROBABILITY = {0, 1, 0, 0, "in [0, 1]"};
static const range R_NONNEG = {0, INFINITY, 0, 0, ">= 0"};
static const range R_ONE_UP = {1, INFINITY, 0, 0, ">= 1"};
static const range R_IMAGE_SIZE = {1, 65536, 0, 0, "in [1, 65536]"};
static const range R_INT8_GROUP = {0, 65536, 0, 0, "0 or in [8, 65536]"};
static const range R_PADDING = {0, 1 << 20, 0, 0, "in [0, 1048576]"};
static const range R_CLASSES = {-1, 1 << 24, 0, 0, "in [-1, 16777216] (-1: infer)"};
static const range R_CHANNELS = {1, 4, 0, 0, "1, 3 or 4"};
static const range R_WORKERS = {1, 64, 0, 0, "in [1, 64]"};
static const range R_SHARE = {0, 1, 1, 0, "in (0, 1]"};
static const range R_RATIO = {0, INFINITY, 1, 1, "> 0 and finite"};
static const range R_JITTER = {0, 1e6, 0, 0, ">= 0"};
static const range R_HUE = {0, 0.5, 0, 0, "in [0, 0.5]"};

typedef struct field {
  const char *key;
  int type;
  const struct field *sub;    /* T_MAP / T_SEQMAP: the fields of the mapping */
  const char *const *choices; /* T_ENUM / T_STRS: allowed words (NULL-terminated) */
  const range *range;         /* numbers and lists: their bounds, or NULL for any */
} field;

#define END \
  { NULL, 0, NULL, NULL, NULL }

static const char *const OPTIM_KINDS[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad", NULL};
static const char *const SCHED_KINDS[] = {"constant",    "step",    "multistep",
                                          "exponential", "cosine",  "cosine_restarts",
                                          "one_cycle",   "plateau", NULL};
static const char *const MONITORS[] = {"val_loss", "val_accuracy", "train_loss", NULL};
static const char *const SOURCES[] = {"idx", "csv", "npy", "images", "jsonl", "text", NULL};
static const char *const TEXT_TASKS[] = {"classify", "causal_lm", "prompt_response", NULL};
static const char *const TEXT_PADDING[] = {"longest", "max_length", NULL};
static const char *const RESIZE_MODES[] = {"nearest", "bilinear", "bilinear_aa", NULL};
static const char *const PRESETS[] = {"imagenet", NULL};
static const char *const PER[] = {"step", "epoch", NULL};
/* model.frozen_dtype: the index is the strop_dtype */
const char *const strop__recipe_frozen_dtypes[] = {"f32", "bf16", "int8", NULL};
/* model.compute_dtype: the index is the strop_dtype */
const char *const strop__recipe_cdtypes[] = {"f32", "bf16", NULL};
/* model.attention, in strop_attention's order */
const char *const strop__recipe_attention[] = {"auto", "tiled", "materialized", NULL};
static const char *const BASELINES[] = {"scratch", NULL};
static const char *const LABEL_MODES[] = {"index", "names", "names_sorted", NULL};
static const char *const STRATEGIES[] = {"grid", "random", "bayes", NULL};
static const char *const PTYPES[] = {"float", "int", "categorical", NULL};
static const char *const TMETRICS[] = {"val_accuracy", "val_loss",   "test_accuracy",
                                       "test_loss",    "train_loss", NULL};

static const range R_MAX_LENGTH = {1, 16777216, 0, 0, "in [1, 16777216]"};
static const range R_HEAD_CLASSES = {1, 1 << 24, 0, 0, "in [1, 16777216]"};
static const char *const HEAD_POOLS[] = {"cls", "mean", "last", NULL};
static const field F_HEAD[] = {{"pool", T_ENUM, NULL, HEAD_POOLS, NULL},
                               {"classes", T_INT, NULL, NULL, &R_HEAD_CLASSES},
                               {"dropout", T_FLOAT, NULL, NULL, &R_FRACTION},
                               END};
static const field F_MODEL[] = {{"spec", T_STR, NULL, NULL, NULL},
                                {"weights", T_STR, NULL, NULL, NULL},
                                {"pretrained", T_STR, NULL, NULL, NULL},
                                {"arch", T_STR, NULL, NULL, NULL},
                                {"image_size", T_INT, NULL, NULL, &R_IMAGE_SIZE},
                                {"max_length", T_INT, NULL, NULL, &R_MAX_LENGTH},
                                {"head", T_MAP, F_HEAD, NULL, NULL},
                                {"strict", T_BOOL, NULL, NULL, NULL},
                                {"remap", T_ANYMAP, NULL, NULL, NULL},
                                {"seed", T_INT, NULL, NULL, &R_NONNEG},
                                {"frozen_dtype", T_ENUM, NULL, strop__recipe_frozen_dtypes, NULL},
                                {"int8_group", T_INT, NULL, NULL, &R_INT8_GROUP},
                                {"compute_dtype", T_ENUM, NULL, strop__recipe_cdtypes, NULL},
                                {"weight_cache", T_BOOL, NULL, NULL, NULL},
                                {"attention", T_ENUM, NULL, strop__recipe_attention, NULL},
                                {"frozen", T_BOOL, NULL, NULL, NULL},
                                {"mmap", T_BOOL, NULL, NULL, NULL},
                                {"checkpointing", T_STR, NULL, NULL, NULL},
                                END};
static const field F_CROP[] = {{"size", T_INTS, NULL, NULL, &R_IMAGE_SIZE},
                               {"padding", T_INT, NULL, NULL, &R_PADDING},
                               END};
static const field F_RRC[] = {{"size", T_INTS, NULL, NULL, &R_IMAGE_SIZE},
                              {"scale", T_FLOATS, NULL, NULL, &R_SHARE},
                              {"ratio", T_FLOATS, NULL, NULL, &R_RATIO},
                              END};
static const field F_JITTER[] = {{"brightness", T_FLOAT, NULL, NULL, &R_JITTER},
                                 {"contrast", T_FLOAT, NULL, NULL, &R_JITTER},
                                 {"saturation", T_FLOAT, NULL, NULL, &R_JITTER},
                                 {"hue", T_FLOAT, NULL, NULL, &R_HUE},
                                 END};
static const field F_DATA[] = {{"source", T_ENUM, NULL, SOURCES, NULL},
                               {"train_images", T_STR, NULL, NULL, NULL},
                               {"train_labels", T_STR, NULL, NULL, NULL},
                               {"test_images", T_STR, NULL, NULL, NULL},
                               {"test_labels", T_STR, NULL, NULL, NULL},
                               {"path", T_STR, NULL, NULL, NULL},
                               {"test_path", T_STR, NULL, NULL, NULL},
                               {"x", T_STR, NULL, NULL, NULL},
                               {"y", T_STR, NULL, NULL, NULL},
                               {"test_x", T_STR, NULL, NULL, NULL},
                               {"test_y", T_STR, NULL, NULL, NULL},
                               {"num_classes", T_INT, NULL, NULL, &R_CLASSES},
                               {"classes", T_INTS, NULL, NULL, &R_NONNEG},
                               {"class_names", T_STRS, NULL, NULL, NULL},
                               {"input_shape", T_INTS, NULL, NULL, &R_ONE_UP},
                               {"label_column", T_STR_OR_INT, NULL, NULL, NULL},
                               {"label_mode", T_ENUM, NULL, LABEL_MODES, NULL},
                               {"header", T_BOOL, NULL, NULL, NULL},
                               {"sklearn_header", T_BOOL, NULL, NULL, NULL},
                               {"delimiter", T_STR, NULL, NULL, NULL},
                               {"few_shot", T_INT, NULL, NULL, &R_NONNEG},
                               {"val_few_shot", T_INT, NULL, NULL, &R_NONNEG},
                               {"seed", T_INT, NULL, NULL, &R_NONNEG},
                               {"val_fraction", T_FLOAT, NULL, NULL, &R_FRACTION},
                               {"test_fraction", T_FLOAT, NULL, NULL, &R_FRACTION},
                               {"stratify", T_BOOL, NULL, NULL, NULL},
                               {"batch_size", T_INT, NULL, NULL, &R_ONE_UP},
                               {"eval_batch_size", T_INT, NULL, NULL, &R_ONE_UP},
                               {"shuffle", T_BOOL, NULL, NULL, NULL},
                               {"drop_last", T_BOOL, NULL, NULL, NULL},
                               {"prefetch", T_BOOL, NULL, NULL, NULL},
                               {"scale", T_FLOAT, NULL, NULL, NULL},
                               {"normalize", T_ANY, NULL, NULL, NULL},
                               {"resize", T_INTS, NULL, NULL, &R_IMAGE_SIZE},
                               {"resize_mode", T_ENUM, NULL, RESIZE_MODES, NULL},
                               {"hflip", T_FLOAT, NULL, NULL, &R_PROBABILITY},
                               {"crop", T_MAP, F_CROP, NULL, NULL},
                               {"channels", T_INT, NULL, NULL, &R_CHANNELS},
                               {"skip_bad", T_BOOL, NULL, NULL, NULL},
                               {"max_pixels", T_INT, NULL, NULL, &R_ONE_UP},
                               {"cache_mb", T_INT, NULL, NULL, &R_NONNEG},
                               {"workers", T_INT, NULL, NULL, &R_WORKERS},
                               {"preset", T_ENUM, NULL, PRESETS, NULL},
                               {"resize_shorter", T_INT, NULL, NULL, &R_IMAGE_SIZE},
                               {"max_size", T_INT, NULL, NULL, &R_NONNEG},
                               {"center_crop", T_INTS, NULL, NULL, &R_IMAGE_SIZE},
                               {"random_resized_crop", T_MAP, F_RRC, NULL, NULL},
                               {"color_jitter", T_MAP, F_JITTER, NULL, NULL},
                               {"limit", T_INT, NULL, NULL, &R_NONNEG},
                               {"tokenizer", T_STR, NULL, NULL, NULL},
                               {"task", T_ENUM, NULL, TEXT_TASKS, NULL},
                               {"text", T_STR, NULL, NULL, NULL},
                               {"text_pair", T_STR, NULL, NULL, NULL},
                               {"label", T_STR, NULL, NULL, NULL},
                               {"response", T_STR, NULL, NULL, NULL},
                               {"prompt_template", T_STR, NULL, NULL, NULL},
                               {"chat_template", T_STR, NULL, NULL, NULL},
                               {"cache_dir", T_STR, NULL, NULL, NULL},
                               {"max_length", T_INT, NULL, NULL, &R_MAX_LENGTH},
                               {"truncate", T_BOOL, NULL, NULL, NULL},
                               {"padding", T_ENUM, NULL, TEXT_PADDING, NULL},
                               {"pack", T_BOOL, NULL, NULL, NULL},
                               {"stride", T_INT, NULL, NULL, &R_NONNEG},
                               {"test_limit", T_INT, NULL, NULL, &R_NONNEG},
                               END};
/* loss, optimizer, schedule, train and tune hold their structural keys here; every setting of
 * the object's table is a key of the section too (KNOB_SECTIONS below), so a setting added to a
 * table is a recipe key at once */
static const field F_LOSS[] = {{"class_weights", T_FLOATS, NULL, NULL, NULL}, END};
static const field F_OPTIM[] = {{"kind", T_ENUM, NULL, OPTIM_KINDS, NULL},
                                {"betas", T_FLOATS, NULL, NULL, NULL},
                                END};
static const field F_SCHED[] = {{"kind", T_ENUM, NULL, SCHED_KINDS, NULL},
                                {"per", T_ENUM, NULL, PER, NULL},
                                END};
static const field F_TRAIN[] = {{"epochs", T_INT, NULL, NULL, &R_NONNEG},
                                {"patience", T_INT, NULL, NULL, NULL},
                                {"min_delta", T_FLOAT, NULL, NULL, NULL},
                                {"monitor", T_ENUM, NULL, MONITORS, NULL},
                                {"restore_best", T_BOOL, NULL, NULL, NULL},
                                {"checkpoint_every", T_INT, NULL, NULL, &R_NONNEG},
                                {"max_steps", T_INT, NULL, NULL, &R_NONNEG},
                                {"log_every", T_INT, NULL, NULL, &R_NONNEG},
                                {"cache_frozen", T_BOOL, NULL, NULL, NULL},
                                {"memory_limit_mb", T_FLOAT_OR_AUTO, NULL, NULL, &R_NONNEG},
                                END};
static const field F_STAGE[] = {{"name", T_STR, NULL, NULL, NULL},
                                {"epochs", T_INT, NULL, NULL, &R_NONNEG},
                                {"surgery", T_SURGERY, NULL, NULL, NULL},
                                {"optimizer", T_MAP, F_OPTIM, NULL, NULL},
                                {"schedule", T_MAP, F_SCHED, NULL, NULL},
                                {"train", T_MAP, F_TRAIN, NULL, NULL},
                                END};
static const field F_EXPORT[] = {{"spec", T_STR, NULL, NULL, NULL},
                                 {"weights", T_STR, NULL, NULL, NULL},
                                 {"fold_bn", T_BOOL, NULL, NULL, NULL},
                                 {"keep_dropout", T_BOOL, NULL, NULL, NULL},
                                 END};
static const field F_OUTPUT[] = {{"export", T_MAP, F_EXPORT, NULL, NULL},
                                 {"dir", T_STR, NULL, NULL, NULL},
                                 {"weights", T_STR, NULL, NULL, NULL},
                                 {"spec", T_STR, NULL, NULL, NULL},
                                 {"checkpoint", T_STR, NULL, NULL, NULL},
                                 {"metrics", T_STR, NULL, NULL, NULL},
                                 {"plot", T_STR, NULL, NULL, NULL},
                                 {"lora", T_STR, NULL, NULL, NULL},
                                 {"report", T_STR, NULL, NULL, NULL},
                                 {"merge_lora", T_BOOL, NULL, NULL, NULL},
                                 {"resume", T_BOOL, NULL, NULL, NULL},
                                 {"pretrained", T_STR, NULL, NULL, NULL},
                                 END};
static const field F_TPARAM[] = {{"key", T_STR, NULL, NULL, NULL},
                                 {"type", T_ENUM, NULL, PTYPES, NULL},
                                 {"low", T_FLOAT, NULL, NULL, NULL},
                                 {"high", T_FLOAT, NULL, NULL, NULL},
                                 {"log", T_BOOL, NULL, NULL, NULL},
                                 {"choices", T_ANY, NULL, NULL, NULL},
                                 END};
static const field F_TUNE[] = {{"strategy", T_ENUM, NULL, STRATEGIES, NULL},
                               {"trials", T_INT, NULL, NULL, NULL},
                               {"seed", T_INT, NULL, NULL, &R_NONNEG},
                               {"metric", T_ENUM, NULL, TMETRICS, NULL},
                               {"trials_file", T_STR, NULL, NULL, NULL},
                               {"best_recipe", T_STR, NULL, NULL, NULL},
                               {"plot", T_STR, NULL, NULL, NULL},
                               {"params", T_SEQMAP, F_TPARAM, NULL, NULL},
                               END};
static const field F_TOP[] = {
    {"description", T_STR, NULL, NULL, NULL},  {"seed", T_INT, NULL, NULL, &R_NONNEG},
    {"model", T_MAP, F_MODEL, NULL, NULL},     {"surgery", T_SURGERY, NULL, NULL, NULL},
    {"data", T_MAP, F_DATA, NULL, NULL},       {"loss", T_MAP, F_LOSS, NULL, NULL},
    {"optimizer", T_MAP, F_OPTIM, NULL, NULL}, {"schedule", T_MAP, F_SCHED, NULL, NULL},
    {"train", T_MAP, F_TRAIN, NULL, NULL},     {"stages", T_SEQMAP, F_STAGE, NULL, &R_ONE_UP},
    {"output", T_MAP, F_OUTPUT, NULL, NULL},   {"baselines", T_STRS, NULL, BASELINES, NULL},
    {"tune", T_MAP, F_TUNE, NULL, NULL},       END};

/* surgery operations: each list item is a one-key mapping */
static const field F_OP_FREEZE[] = {{"match", T_STR, NULL, NULL, NULL},
                                    {"keep_bn_stats", T_BOOL, NULL, NULL, NULL},
                                    END};
static const field F_OP_REPLACE[] = {{"node", T_STR, NULL, NULL, NULL},
                                     {"type", T_STR, NULL, NULL, NULL},
                                     {"options", T_ANYMAP, NULL, NULL, NULL},
                                     {"seed", T_INT, NULL, NULL, &R_NONNEG},
                                     END};
static const field F_OP_INSERT[] = {{"node", T_STR, NULL, NULL, NULL},
                                    {"name", T_STR, NULL, NULL, NULL},
                                    {"type", T_STR, NULL, NULL, NULL},
                                    {"options", T_ANYMAP, NULL, NULL, NULL},
                                    END};
static const field F_OP_APPEND[] = {{"name", T_STR, NULL, NULL, NULL},
                                    {"type", T_STR, NULL, NULL, NULL},
                                    {"options", T_ANYMAP, NULL, NULL, NULL},
                                    END};
static const field F_OP_LORA[] = {{"match", T_STR, NULL, NULL, NULL},
                                  {"rank", T_INT, NULL, NULL, NULL},
                                  {"alpha", T_FLOAT, NULL, NULL, NULL},
                                  {"dropout", T_FLOAT, NULL, NULL, NULL},
                                  END};
static const field F_OP_GROUP[] = {{"match", T_STR, NULL, NULL, NULL},
                                   {"lr_mult", T_FLOAT, NULL, NULL, NULL},
                                   {"no_decay", T_BOOL, NULL, NULL, NULL},
                                   END};
/* key, fields of its mapping form, whether a plain string is accepted */
static const struct {
  const char *op;
  const field *sub;
  int scalar_ok;
} SURGERY_OPS[] = {{"freeze", F_OP_FREEZE, 1},
                   {"unfreeze", F_OP_FREEZE, 1},
                   {"replace", F_OP_REPLACE, 0},
                   {"insert_after", F_OP_INSERT, 0},
                   {"insert_before", F_OP_INSERT, 0},
                   {"remove", NULL, 1},
                   {"truncate", NULL, 1},
                   {"append", F_OP_APPEND, 0},
                   {"lora", F_OP_LORA, 0},
                   {"param_group", F_OP_GROUP, 0}};

/* The sections whose keys include an object's settings (of one group, or all: NULL). */
static const struct {
  const field *fields;
  const strop__settings *knobs;
  const char *group;
} KNOB_SECTIONS[] = {{F_LOSS, &strop__trainer_settings, "loss"},
                     {F_OPTIM, &strop__optimizer_settings, NULL},
                     {F_SCHED, &strop__scheduler_settings, NULL},
                     {F_TRAIN, &strop__trainer_settings, "update"},
                     {F_TUNE, &strop__tuner_settings, NULL}};

/* ---- the schema, for the docs generator ---- */

static const char *type_word(int type) {
  switch (type) {
    case T_INT: return "int";
    case T_FLOAT: return "number";
    case T_BOOL: return "true/false";
    case T_STR: return "text";
    case T_ENUM: return "word";
    case T_INTS: return "int list";
    case T_FLOATS: return "number list";
    case T_MAP:
    case T_ANYMAP: return "mapping";
    case T_SEQMAP: return "list of mappings";
    case T_SURGERY: return "surgery list";
    case T_STR_OR_INT: return "text or int";
    case T_FLOAT_OR_AUTO: return "number or auto";
    case T_STRS: return "word list";
    default: return "any";
  }
}

int strop__recipe_schema_key(const char *section, int i, const char **key, const char **type,
                             const char *const **words) {
  const field *fields = F_TOP;
  char seg[64];
  for (const char *p = section; p && *p;) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n >= sizeof seg) return -1;
    memcpy(seg, p, n);
    seg[n] = '\0';
    const field *f = NULL;
    for (int k = 0; fields[k].key && !f; k++)
      if (!strcmp(fields[k].key, seg)) f = &fields[k];
    if (!f || !f->sub) return -1;
    fields = f->sub;
    p = dot ? dot + 1 : NULL;
  }
  for (int k = 0; fields[k].key; k++)
    if (k == i) {
      *key = fields[k].key;
      *type = type_word(fields[k].type);
      *words = fields[k].choices;
      return 1;
    }
  return 0;
}

/* ---- errors ---- */
strop_status strop__recipe_err(const char *fn, const strop_recipe *r, const strop__ynode *at,
                               strop_status st, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (at && at->line > 0)
    return strop__err(st, "%s: %s:%d:%d: %s", fn, r->file, at->line, at->col, msg);
  return strop__err(st, "%s: %s: %s", fn, r->file, msg);
}

/* ---- scalar parsing ---- */
static int parse_int(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno) return 0;
  *out = v;
  return 1;
}

static int parse_float(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno == ERANGE || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

static int parse_bool(const char *s, int *out) {
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "yes") || !strcmp(s, "on")) {
    *out = 1;
    return 1;
  }
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "no") || !strcmp(s, "off")) {
    *out = 0;
    return 1;
  }
  return 0;
}

/* ---- validation ---- */
static strop_status check_map(const char *fn, const strop_recipe *r, const strop__ynode *map,
                              const field *fields, const char *where);

/* An object's setting by key, within a group (NULL: any); NULL when absent. */
static const strop__setting *knob_at(const strop__settings *t, const char *group, int key) {
  const strop__setting *d = strop__settings_at(t, key);
  return d && (!group || (d->group && !strcmp(d->group, group))) ? d : NULL;
}

/* The setting a key names (by name or alias) in a table and group, or NULL. */
static const strop__setting *knob_named(const strop__settings *t, const char *group,
                                        const char *key) {
  for (int k = 0; t && k < t->n; k++) {
    const strop__setting *d = knob_at(t, group, k);
    if (d && strop__setting_matches(d, key)) return d;
  }
  return NULL;
}

/* The settings table (and group) whose keys a section also takes; NULL for other sections. */
static const strop__settings *section_knobs(const field *fields, const char **group) {
  for (size_t i = 0; i < sizeof KNOB_SECTIONS / sizeof KNOB_SECTIONS[0]; i++)
    if (KNOB_SECTIONS[i].fields == fields) {
      *group = KNOB_SECTIONS[i].group;
      return KNOB_SECTIONS[i].knobs;
    }
  *group = NULL;
  return NULL;
}

static void list_keys(const field *fields, char *buf, size_t cap) {
  size_t l = 0;
  buf[0] = '\0';
  for (int i = 0; fields[i].key && l + 2 < cap; i++)
    l += (size_t)snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", fields[i].key);
  const char *group;
  const strop__settings *t = section_knobs(fields, &group);
  for (int k = 0; t && k < t->n && l + 2 < cap; k++) {
    const strop__setting *d = knob_at(t, group, k);
    if (d)
      l += (size_t)snprintf(buf + l, cap - l, "%s%s%s%s", l ? ", " : "", d->name,
                            d->alias ? "/" : "", d->alias ? d->alias : "");
  }
}

static void list_words(const char *const *w, char *buf, size_t cap) {
  size_t l = 0;
  buf[0] = '\0';
  for (int i = 0; w[i] && l + 2 < cap; i++)
    l += (size_t)snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", w[i]);
}

static int in_range(const range *g, double v) {
  return (g->lo_open ? v > g->lo : v >= g->lo) && (g->hi_open ? v < g->hi : v <= g->hi);
}

/* A number outside its field's range: "'key' must be in [0, 1), got -0.5". */
static strop_status check_range(const char *fn, const strop_recipe *r, const strop__ynode *v,
                                const field *f, double x) {
  if (!f->range || in_range(f->range, x)) return STROP_OK;
  return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be %s, got %s", f->key,
                           f->range->text, v->text);
}

void strop__recipe_knobs(const strop__ynode *top, const strop__ynode *stage,
                         const strop__settings *t, const char *group,
                         const strop__ynode **nodes) {
  for (int k = 0; k < t->n; k++) nodes[k] = NULL;
  const strop__ynode *maps[2] = {top, stage};
  for (int m = 0; m < 2; m++) {
    const strop__ynode *map = maps[m];
    for (int i = 0; map && map->type == STROP__Y_MAP && i + 1 < map->n; i += 2) {
      const strop__setting *d = knob_named(t, group, map->kids[i]->text);
      if (d && !strop__ynode_is_null(map->kids[i + 1])) nodes[d->key] = map->kids[i + 1];
    }
  }
}

static strop_status check_scalar_list(const char *fn, const strop_recipe *r,
                                      const strop__ynode *v, const field *f) {
  const char *key = f->key;
  int is_int = f->type == T_INTS;
  const strop__ynode *const *items = (const strop__ynode *const *)v->kids;
  int n = v->n;
  if (v->type == STROP__Y_SCALAR) {
    items = &v;
    n = 1;
  } else if (v->type != STROP__Y_SEQ) {
    return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a list of numbers, got %s",
                             key, strop__ynode_kind(v));
  }
  for (int i = 0; i < n; i++) {
    int64_t iv;
    double dv;
    if (items[i]->type != STROP__Y_SCALAR ||
        !(is_int ? parse_int(items[i]->text, &iv) : parse_float(items[i]->text, &dv)))
      return strop__recipe_err(
          fn, r, items[i], STROP_E_FORMAT, "'%s' must hold %s, got '%s'", key,
          is_int ? "integers" : "numbers",
          items[i]->type == STROP__Y_SCALAR ? items[i]->text : "a collection");
    strop_status s = check_range(fn, r, items[i], f, is_int ? (double)iv : dv);
    if (s) return s;
  }
  return STROP_OK;
}

static strop_status check_surgery(const char *fn, const strop_recipe *r, const strop__ynode *v,
                                  const char *where) {
  if (v->type != STROP__Y_SEQ)
    return strop__recipe_err(fn, r, v, STROP_E_FORMAT,
                             "'%s' must be a list of operations, got %s", where,
                             strop__ynode_kind(v));
  char ops[300];
  size_t l = 0;
  ops[0] = '\0';
  for (size_t i = 0; i < sizeof SURGERY_OPS / sizeof SURGERY_OPS[0]; i++)
    l += (size_t)snprintf(ops + l, sizeof ops - l, "%s%s", i ? ", " : "", SURGERY_OPS[i].op);
  for (int i = 0; i < v->n; i++) {
    const strop__ynode *it = v->kids[i];
    if (it->type != STROP__Y_MAP || it->n != 2)
      return strop__recipe_err(fn, r, it, STROP_E_FORMAT,
                               "%s[%d] must be a mapping with one "
                               "operation (%s)",
                               where, i, ops);
    const char *op = it->kids[0]->text;
    const strop__ynode *arg = it->kids[1];
    size_t k = 0;
    while (k < sizeof SURGERY_OPS / sizeof SURGERY_OPS[0] && strcmp(SURGERY_OPS[k].op, op)) k++;
    if (k == sizeof SURGERY_OPS / sizeof SURGERY_OPS[0])
      return strop__recipe_err(fn, r, it->kids[0], STROP_E_FORMAT,
                               "unknown surgery operation "
                               "'%s' (expected one of: %s)",
                               op, ops);
    if (arg->type == STROP__Y_SCALAR) {
      if (!SURGERY_OPS[k].scalar_ok)
        return strop__recipe_err(fn, r, arg, STROP_E_FORMAT,
                                 "'%s' needs a mapping of its "
                                 "arguments",
                                 op);
      continue;
    }
    if (!SURGERY_OPS[k].sub || arg->type != STROP__Y_MAP)
      return strop__recipe_err(fn, r, arg, STROP_E_FORMAT, "'%s' takes %s", op,
                               SURGERY_OPS[k].sub ? "a name or a mapping" : "a node name");
    char w[64];
    snprintf(w, sizeof w, "%s", op);
    strop_status s = check_map(fn, r, arg, SURGERY_OPS[k].sub, w);
    if (s) return s;
  }
  return STROP_OK;
}

/* A setting's value: its table says what form it takes (the range is the object's to check,
 * with the kind the recipe chooses, when the run sets it). */
static strop_status check_knob(const char *fn, const strop_recipe *r, const strop__ynode *v,
                               const char *key, const strop__setting *d) {
  if (d->type == STROP__SET_LIST) {
    const field f = {key, T_INTS, NULL, NULL, NULL};
    return check_scalar_list(fn, r, v, &f);
  }
  if (v->type != STROP__Y_SCALAR)
    return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a single value, got %s", key,
                             strop__ynode_kind(v));
  double x;
  if (!strop__setting_parse(d, v->text, &x)) {
    char form[300];
    return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be %s, got '%s'", key,
                             strop__setting_form(d, form, sizeof form), v->text);
  }
  return STROP_OK;
}

static strop_status check_value(const char *fn, const strop_recipe *r, const strop__ynode *v,
                                const field *f) {
  char words[300];
  switch (f->type) {
    case T_INT:
    case T_FLOAT:
    case T_BOOL:
    case T_STR:
    case T_ENUM:
    case T_STR_OR_INT:
    case T_FLOAT_OR_AUTO: {
      if (v->type != STROP__Y_SCALAR)
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a single value, got %s",
                                 f->key, strop__ynode_kind(v));
      int64_t iv = 0;
      double dv = 0;
      int bv;
      if (f->type == T_INT && !parse_int(v->text, &iv))
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be an integer, got '%s'",
                                 f->key, v->text);
      if (f->type == T_FLOAT && !parse_float(v->text, &dv))
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a number, got '%s'",
                                 f->key, v->text);
      const int word = f->type == T_FLOAT_OR_AUTO && !strcmp(v->text, "auto");
      if (f->type == T_FLOAT_OR_AUTO && !word && !parse_float(v->text, &dv))
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT,
                                 "'%s' must be a number or auto, got '%s'", f->key, v->text);
      if (f->type == T_INT || f->type == T_FLOAT || (f->type == T_FLOAT_OR_AUTO && !word)) {
        strop_status s = check_range(fn, r, v, f, f->type == T_INT ? (double)iv : dv);
        if (s) return s;
      }
      if (f->type == T_BOOL && !parse_bool(v->text, &bv))
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be true or false, got '%s'",
                                 f->key, v->text);
      if (f->type == T_ENUM) {
        int ok = 0;
        for (int i = 0; f->choices[i] && !ok; i++) ok = !strcmp(f->choices[i], v->text);
        if (!ok) {
          list_words(f->choices, words, sizeof words);
          return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be one of %s, got '%s'",
                                   f->key, words, v->text);
        }
      }
      return STROP_OK;
    }
    case T_INTS:
    case T_FLOATS: return check_scalar_list(fn, r, v, f);
    case T_STRS: {
      if (v->type != STROP__Y_SEQ)
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a list, got %s", f->key,
                                 strop__ynode_kind(v));
      for (int i = 0; i < v->n; i++) {
        int ok = v->kids[i]->type == STROP__Y_SCALAR;
        for (int j = 0; ok && f->choices && f->choices[j]; j++)
          if (!strcmp(f->choices[j], v->kids[i]->text)) goto found;
        if (f->choices) ok = 0;
      found:
        if (!ok && !f->choices)
          return strop__recipe_err(fn, r, v->kids[i], STROP_E_FORMAT,
                                   "'%s' entries must be "
                                   "strings, got %s",
                                   f->key, strop__ynode_kind(v->kids[i]));
        if (!ok) {
          list_words(f->choices, words, sizeof words);
          return strop__recipe_err(fn, r, v->kids[i], STROP_E_FORMAT,
                                   "'%s' entries must be one "
                                   "of %s",
                                   f->key, words);
        }
      }
      return STROP_OK;
    }
    case T_MAP:
      if (v->type != STROP__Y_MAP)
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a mapping, got %s",
                                 f->key, strop__ynode_kind(v));
      return check_map(fn, r, v, f->sub, f->key);
    case T_ANYMAP:
      if (v->type != STROP__Y_MAP)
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must be a mapping, got %s",
                                 f->key, strop__ynode_kind(v));
      return STROP_OK;
    case T_SEQMAP:
      if (v->type != STROP__Y_SEQ)
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT,
                                 "'%s' must be a list of mappings, got "
                                 "%s",
                                 f->key, strop__ynode_kind(v));
      if (f->range && !in_range(f->range, v->n))
        return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "'%s' must hold %s entries, got %d%s",
                                 f->key, f->range->text, v->n,
                                 v->n ? "" : " (leave the key out for the default)");
      for (int i = 0; i < v->n; i++) {
        if (v->kids[i]->type != STROP__Y_MAP)
          return strop__recipe_err(fn, r, v->kids[i], STROP_E_FORMAT, "%s[%d] must be a mapping",
                                   f->key, i);
        char w[64];
        snprintf(w, sizeof w, "%s[%d]", f->key, i);
        strop_status s = check_map(fn, r, v->kids[i], f->sub, w);
        if (s) return s;
      }
      return STROP_OK;
    case T_SURGERY: return check_surgery(fn, r, v, f->key);
    default: return STROP_OK;
  }
}

static strop_status check_map(const char *fn, const strop_recipe *r, const strop__ynode *map,
                              const field *fields, const char *where) {
  for (int i = 0; i + 1 < map->n; i += 2) {
    const strop__ynode *k = map->kids[i], *v = map->kids[i + 1];
    if (k->type != STROP__Y_SCALAR)
      return strop__recipe_err(fn, r, k, STROP_E_FORMAT, "keys in '%s' must be words", where);
    for (int j = 0; j < i; j += 2)
      if (!strcmp(map->kids[j]->text, k->text))
        return strop__recipe_err(fn, r, k, STROP_E_FORMAT, "'%s' appears twice in '%s'", k->text,
                                 where);
    const field *f = NULL;
    for (int j = 0; fields[j].key && !f; j++)
      if (!strcmp(fields[j].key, k->text)) f = &fields[j];
    const char *group;
    const strop__settings *knobs = section_knobs(fields, &group);
    const strop__setting *knob = f ? NULL : knob_named(knobs, group, k->text);
    if (!f && !knob) {
      char keys[1400];
      list_keys(fields, keys, sizeof keys);
      return strop__recipe_err(fn, r, k, STROP_E_FORMAT,
                               "unknown key '%s' in '%s' (expected one "
                               "of: %s)",
                               k->text, where, keys);
    }
    for (int j = 0; knob && j < i; j += 2) /* a setting's name and its other spelling */
      if (strop__setting_matches(knob, map->kids[j]->text))
        return strop__recipe_err(fn, r, k, STROP_E_FORMAT,
                                 "'%s' and '%s' in '%s' are the same "
                                 "setting",
                                 map->kids[j]->text, k->text, where);
    if (strop__ynode_is_null(v)) continue; /* "key:" with nothing means the default */
    strop_status s = knob ? check_knob(fn, r, v, k->text, knob) : check_value(fn, r, v, f);
    if (s) return s;
  }
  return STROP_OK;
}

strop_status strop__recipe_validate(const char *fn, const strop_recipe *r) {
  if (!r->root || r->root->type != STROP__Y_MAP)
    return strop__recipe_err(fn, r, r->root, STROP_E_FORMAT,
                             "a recipe must be a mapping with "
                             "sections such as model, data, optimizer, train");
  return check_map(fn, r, r->root, F_TOP, "recipe");
}

/* ---- typed readers ---- */
static const strop__ynode *get(const strop__ynode *map, const char *key) {
  const strop__ynode *v = strop__ynode_get(map, key);
  return strop__ynode_is_null(v) ? NULL : v;
}

strop_status strop__rd_int(const strop_recipe *r, const strop__ynode *map, const char *key,
                           int64_t *out) {
  const strop__ynode *v = get(map, key);
  if (!v) return STROP_OK;
  if (v->type != STROP__Y_SCALAR || !parse_int(v->text, out))
    return strop__recipe_err("strop_recipe_run", r, v, STROP_E_FORMAT, "'%s' must be an integer",
                             key);
  return STROP_OK;
}

strop_status strop__rd_float(const strop_recipe *r, const strop__ynode *map, const char *key,
                             double *out) {
  const strop__ynode *v = get(map, key);
  if (!v) return STROP_OK;
  if (v->type != STROP__Y_SCALAR || !parse_float(v->text, out))
    return strop__recipe_err("strop_recipe_run", r, v, STROP_E_FORMAT, "'%s' must be a number",
                             key);
  return STROP_OK;
}

strop_status strop__rd_bool(const strop_recipe *r, const strop__ynode *map, const char *key,
                            int *out) {
  const strop__ynode *v = get(map, key);
  if (!v) return STROP_OK;
  if (v->type != STROP__Y_SCALAR || !parse_bool(v->text, out))
    return strop__recipe_err("strop_recipe_run", r, v, STROP_E_FORMAT,
                             "'%s' must be true or false", key);
  return STROP_OK;
}

const char *strop__rd_str(const strop__ynode *map, const char *key) {
  const strop__ynode *v = get(map, key);
  return v && v->type == STROP__Y_SCALAR ? v->text : NULL;
}

static strop_status rd_list_at(const strop_recipe *r, const strop__ynode *v, const char *key,
                               int64_t *iout, double *fout, int cap, int *n) {
  *n = 0;
  if (!v) return STROP_OK;
  const strop__ynode *const *items = (const strop__ynode *const *)v->kids;
  int cnt = v->n;
  if (v->type == STROP__Y_SCALAR) {
    items = &v;
    cnt = 1;
  }
  if (cnt > cap)
    return strop__recipe_err("strop_recipe_run", r, v, STROP_E_FORMAT,
                             "'%s' has %d entries; at "
                             "most %d are allowed",
                             key, cnt, cap);
  for (int i = 0; i < cnt; i++) {
    int ok = items[i]->type == STROP__Y_SCALAR &&
             (iout ? parse_int(items[i]->text, &iout[i]) : parse_float(items[i]->text, &fout[i]));
    if (!ok)
      return strop__recipe_err("strop_recipe_run", r, items[i], STROP_E_FORMAT,
                               "'%s' must hold %s", key, iout ? "integers" : "numbers");
  }
  *n = cnt;
  return STROP_OK;
}

strop_status strop__rd_ints(const strop_recipe *r, const strop__ynode *map, const char *key,
                            int64_t *out, int cap, int *n) {
  return rd_list_at(r, get(map, key), key, out, NULL, cap, n);
}

strop_status strop__rd_ints_at(const strop_recipe *r, const strop__ynode *v, const char *key,
                               int64_t *out, int cap, int *n) {
  return rd_list_at(r, v, key, out, NULL, cap, n);
}

strop_status strop__rd_floats(const strop_recipe *r, const strop__ynode *map, const char *key,
                              double *out, int cap, int *n) {
  return rd_list_at(r, get(map, key), key, NULL, out, cap, n);
}

const char *strop__rd_path(const strop_recipe *r, const strop__ynode *map, const char *key,
                           char *buf, size_t cap) {
  const char *s = strop__rd_str(map, key);
  if (!s) return NULL;
  if (s[0] == '/' || !r->base_dir[0]) snprintf(buf, cap, "%s", s);
  else snprintf(buf, cap, "%s/%s", r->base_dir, s);
  return buf;
}

strop_status strop__recipe_options_text(const char *fn, const strop_recipe *r,
                                        const strop__ynode *opts, char *buf, size_t cap) {
  size_t l = 0;
  buf[0] = '\0';
  if (!opts) return STROP_OK;
  for (int i = 0; i + 1 < opts->n; i += 2) {
    const strop__ynode *k = opts->kids[i], *v = opts->kids[i + 1];
    char val[256];
    if (v->type == STROP__Y_SCALAR) {
      snprintf(val, sizeof val, "%s", v->text);
    } else if (v->type == STROP__Y_SEQ) {
      size_t vl = 0;
      val[vl++] = '[';
      val[vl] = '\0';
      for (int j = 0; j < v->n; j++) {
        if (v->kids[j]->type != STROP__Y_SCALAR)
          return strop__recipe_err(fn, r, v->kids[j], STROP_E_FORMAT,
                                   "option '%s' must be a "
                                   "value or a flat list",
                                   k->text);
        vl += (size_t)snprintf(val + vl, sizeof val - vl, "%s%s", j ? "," : "", v->kids[j]->text);
        if (vl >= sizeof val - 2) break;
      }
      snprintf(val + vl, sizeof val - vl, "]");
    } else {
      return strop__recipe_err(fn, r, v, STROP_E_FORMAT, "option '%s' must be a value or a list",
                               k->text);
    }
    if (strchr(val, ' ') || strchr(k->text, ' '))
      return strop__recipe_err(fn, r, v, STROP_E_FORMAT,
                               "option '%s': values may not contain "
                               "spaces",
                               k->text);
    l += (size_t)snprintf(buf + l, cap > l ? cap - l : 0, "%s%s=%s", l ? " " : "", k->text, val);
    if (l >= cap)
      return strop__recipe_err(fn, r, opts, STROP_E_FORMAT, "the options are too long");
  }
  return STROP_OK;
}

/* ---- load / free / clone ---- */
static strop_status from_text(const char *fn, const char *file, const char *text, size_t len,
                              const char *base_dir, strop_recipe **out) {
  *out = NULL;
  strop_recipe *r = strop__calloc(1, sizeof *r);
  if (!r) return STROP__NOMEM(fn);
  r->file = strop__strdup(file);
  r->base_dir = strop__strdup(base_dir ? base_dir : "");
  if (!r->file || !r->base_dir) {
    strop_recipe_free(r);
    return STROP__NOMEM(fn);
  }
  strop_status s = strop__yaml_parse(fn, file, text, len, &LIMITS, &r->root);
  if (!s && !r->root) s = strop__recipe_err(fn, r, NULL, STROP_E_FORMAT, "the recipe is empty");
  if (!s) s = strop__recipe_validate(fn, r);
  if (s) {
    strop_recipe_free(r);
    return s;
  }
  *out = r;
  return STROP_OK;
}

strop_status strop_recipe_load(const char *path, strop_recipe **out) {
  static const char fn[] = "strop_recipe_load";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  char *text = NULL;
  size_t len = 0;
  strop_status s = strop__read_file(fn, path, RECIPE_MAX_BYTES, &text, &len);
  if (s) return s;
  char dir[1024];
  const char *slash = strrchr(path, '/');
  if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else dir[0] = '\0';
  if (slash == path) snprintf(dir, sizeof dir, "/");
  s = from_text(fn, path, text, len, dir, out);
  strop__free(text);
  return s;
}

strop_status strop_recipe_load_string(const char *yaml, const char *base_dir,
                                      strop_recipe **out) {
  static const char fn[] = "strop_recipe_load_string";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!yaml) return strop__err(STROP_E_INVALID_ARG, "%s: yaml is NULL", fn);
  return from_text(fn, "<string>", yaml, strlen(yaml), base_dir, out);
}

void strop_recipe_free(strop_recipe *r) {
  if (!r) return;
  strop__ynode_free(r->root);
  strop__free(r->file);
  strop__free(r->base_dir);
  strop__free(r);
}

strop_status strop_recipe_clone(const strop_recipe *r, strop_recipe **out) {
  static const char fn[] = "strop_recipe_clone";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!r) return strop__err(STROP_E_INVALID_ARG, "%s: recipe is NULL", fn);
  strop_recipe *c = strop__calloc(1, sizeof *c);
  if (!c) return STROP__NOMEM(fn);
  c->file = strop__strdup(r->file);
  c->base_dir = strop__strdup(r->base_dir);
  c->root = strop__ynode_clone(r->root);
  if (!c->file || !c->base_dir || !c->root) {
    strop_recipe_free(c);
    return STROP__NOMEM(fn);
  }
  *out = c;
  return STROP_OK;
}

/* ---- paths ---- */
static const char *const PATH_KEYS[][2] = {{"model", "spec"},
                                           {"model", "weights"},
                                           {"model", "pretrained"},
                                           {"data", "train_images"},
                                           {"data", "train_labels"},
                                           {"data", "test_images"},
                                           {"data", "test_labels"},
                                           {"data", "path"},
                                           {"data", "test_path"},
                                           {"data", "x"},
                                           {"data", "y"},
                                           {"data", "test_x"},
                                           {"data", "test_y"},
                                           {"data", "tokenizer"},
                                           {"output", "dir"},
                                           {"tune", "trials_file"},
                                           {"tune", "best_recipe"},
                                           {"tune", "plot"}};

strop_status strop__recipe_absolute_paths(strop_recipe *r) {
  char dir[4096];
  if (!realpath(r->base_dir[0] ? r->base_dir : ".", dir))
    return strop__err(STROP_E_IO, "%s: cannot resolve the folder '%s'", r->file, r->base_dir);
  for (size_t i = 0; i < sizeof PATH_KEYS / sizeof PATH_KEYS[0]; i++) {
    strop__ynode *sec = strop__ynode_get(r->root, PATH_KEYS[i][0]);
    strop__ynode *v = strop__ynode_get(sec, PATH_KEYS[i][1]);
    if (!v || v->type != STROP__Y_SCALAR || strop__ynode_is_null(v) || v->text[0] == '/')
      continue;
    size_t n = strlen(dir) + strlen(v->text) + 2;
    char *t = strop__malloc(n);
    if (!t) return strop__err(STROP_E_NOMEM, "%s: out of memory", r->file);
    snprintf(t, n, "%s/%s", dir, v->text);
    strop__free(v->text);
    v->text = t;
    v->len = strlen(t);
    v->plain = 0;
  }
  char *nd = strop__strdup(dir);
  if (!nd) return strop__err(STROP_E_NOMEM, "%s: out of memory", r->file);
  strop__free(r->base_dir);
  r->base_dir = nd;
  return STROP_OK;
}

/* ---- key paths ---- */
typedef struct seg {
  char key[64];
  int index; /* >= 0: a list index follows the key */
} seg;

static int split_path(const char *path, seg *segs, int cap) {
  int n = 0;
  const char *p = path;
  while (*p) {
    if (n == cap) return -1;
    seg *s = &segs[n++];
    size_t l = 0;
    while (*p && *p != '.' && *p != '[') {
      if (l + 1 >= sizeof s->key) return -1;
      s->key[l++] = *p++;
    }
    s->key[l] = '\0';
    s->index = -1;
    if (*p == '[') {
      char *end;
      long v = strtol(p + 1, &end, 10);
      if (end == p + 1 || *end != ']' || v < 0) return -1;
      s->index = (int)v;
      p = end + 1;
    }
    if (l == 0 && !(n > 1 && segs[n - 1].index >= 0)) return -1;
    if (*p == '.') {
      p++;
      if (!*p) return -1;
    } else if (*p) {
      return -1;
    }
  }
  return n;
}

/* Finds (create = 0) or makes (create = 1) the node at a path. */
static strop__ynode *walk(strop__ynode *root, const seg *segs, int n, int create,
                          strop_status *st) {
  strop__ynode *cur = root;
  *st = STROP_OK;
  for (int i = 0; i < n; i++) {
    strop__ynode *next = NULL;
    if (segs[i].key[0]) {
      if (cur->type != STROP__Y_MAP) {
        *st = STROP_E_INVALID_ARG;
        return NULL;
      }
      for (int j = 0; j + 1 < cur->n; j += 2)
        if (!strcmp(cur->kids[j]->text, segs[i].key)) next = cur->kids[j + 1];
      int last = i == n - 1 && segs[i].index < 0;
      if (!next || (strop__ynode_is_null(next) && !last)) {
        if (!create) return NULL;
        strop__ynode *k = strop__ynode_scalar(segs[i].key, 1);
        strop__ynode *v = last ? strop__ynode_scalar("", 1)
                               : strop__ynode_new(segs[i].index >= 0 ? STROP__Y_SEQ
                                                                     : STROP__Y_MAP);
        if (!k || !v) {
          strop__ynode_free(k);
          strop__ynode_free(v);
          *st = STROP_E_NOMEM;
          return NULL;
        }
        if (next) { /* replace a null placeholder */
          for (int j = 0; j + 1 < cur->n; j += 2)
            if (cur->kids[j + 1] == next) {
              strop__ynode_free(next);
              cur->kids[j + 1] = v;
            }
          strop__ynode_free(k);
        } else if (strop__ynode_push(cur, k) || strop__ynode_push(cur, v)) {
          *st = STROP_E_NOMEM;
          return NULL;
        }
        next = v;
      }
      cur = next;
    }
    if (segs[i].index >= 0) {
      if (cur->type != STROP__Y_SEQ || segs[i].index >= cur->n) {
        *st = STROP_E_NOT_FOUND;
        return NULL;
      }
      cur = cur->kids[segs[i].index];
    }
  }
  return cur;
}

int64_t strop_recipe_get(const strop_recipe *r, const char *key_path, char *buf, size_t cap) {
  if (!r || !key_path || (!buf && cap)) return -1;
  seg segs[16];
  int n = split_path(key_path, segs, 16);
  if (n <= 0) return -1;
  strop_status st;
  const strop__ynode *v = walk(r->root, segs, n, 0, &st);
  if (!v || v->type != STROP__Y_SCALAR || strop__ynode_is_null(v)) return -1;
  return strop__copy_out("strop_recipe_get", v->text, buf, cap);
}

strop_status strop_recipe_set(strop_recipe *r, const char *key_path, const char *value) {
  static const char fn[] = "strop_recipe_set";
  if (!r || !key_path || !value)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !r          ? "recipe"
                      : !key_path ? "key_path"
                                  : "value");
  seg segs[16];
  int n = split_path(key_path, segs, 16);
  if (n <= 0)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: bad key path '%s' (expected e.g. optimizer.lr or "
                      "stages[1].epochs)",
                      fn, key_path);
  strop__ynode *val = NULL;
  strop_status s = strop__yaml_parse(fn, key_path, value, strlen(value), &LIMITS, &val);
  if (s) return s;
  if (!val) val = strop__ynode_scalar("", 1);
  strop__ynode *copy = strop__ynode_clone(r->root);
  if (!val || !copy) {
    strop__ynode_free(val);
    strop__ynode_free(copy);
    return STROP__NOMEM(fn);
  }
  strop__ynode *slot = walk(copy, segs, n, 1, &s);
  if (!slot) {
    strop__ynode_free(val);
    strop__ynode_free(copy);
    if (s == STROP_E_NOMEM) return STROP__NOMEM(fn);
    if (s == STROP_E_NOT_FOUND)
      return strop__err(STROP_E_NOT_FOUND, "%s: '%s': list index out of range", fn, key_path);
    return strop__err(STROP_E_INVALID_ARG, "%s: '%s' goes through a value that is not a mapping",
                      fn, key_path);
  }
  /* move val's content into slot, keeping slot's position for messages */
  int line = slot->line, col = slot->col;
  for (int i = 0; i < slot->n; i++) strop__ynode_free(slot->kids[i]);
  strop__free(slot->kids);
  strop__free(slot->text);
  *slot = *val;
  slot->line = line;
  slot->col = col;
  strop__free(val);
  strop__ynode *old = r->root;
  r->root = copy;
  s = strop__recipe_validate(fn, r);
  if (s) {
    r->root = old;
    strop__ynode_free(copy);
    strop__err_prefix("%s: setting '%s' to '%s'", fn, key_path, value);
    return s;
  }
  strop__ynode_free(old);
  return STROP_OK;
}

/* ---- writing YAML ---- */
static int needs_quotes(const char *s) {
  if (!*s) return 1;
  if (strchr(":#{}[],&*!|>'\"%@`", s[0]) || isspace((unsigned char)s[0])) return 1;
  for (const char *p = s; *p; p++) {
    if (*p == '\n' || *p == '"' || *p == '\\') return 1;
    if ((*p == ':' || *p == '#') && (p[1] == ' ' || p[1] == '\0')) return 1;
    if (*p == ' ' && p[1] == '#') return 1;
  }
  return isspace((unsigned char)s[strlen(s) - 1]);
}

static void put_scalar(strop__sbuf *b, const strop__ynode *y) {
  if (y->plain && !needs_quotes(y->text)) {
    strop__sbuf_puts(b, y->text);
    return;
  }
  if (y->plain && !y->len) return; /* null */
  strop__sbuf_json_str(b, y->text);
}

static int is_flat(const strop__ynode *y) {
  if (y->type == STROP__Y_SCALAR) return 1;
  if (y->n > 16) return 0;
  for (int i = 0; i < y->n; i++)
    if (y->kids[i]->type != STROP__Y_SCALAR) return 0;
  return 1;
}

static void put_flow(strop__sbuf *b, const strop__ynode *y) {
  if (y->type == STROP__Y_SCALAR) {
    put_scalar(b, y);
    return;
  }
  strop__sbuf_puts(b, y->type == STROP__Y_SEQ ? "[" : "{");
  for (int i = 0; i < y->n; i++) {
    if (i) strop__sbuf_puts(b, y->type == STROP__Y_MAP && i % 2 ? ": " : ", ");
    put_scalar(b, y->kids[i]);
  }
  strop__sbuf_puts(b, y->type == STROP__Y_SEQ ? "]" : "}");
}

static void emit(strop__sbuf *b, const strop__ynode *y, int indent);

static void emit_value_after_key(strop__sbuf *b, const strop__ynode *v, int indent) {
  if (v->type == STROP__Y_SCALAR) {
    if (!(v->plain && !v->len)) strop__sbuf_puts(b, " ");
    put_scalar(b, v);
    strop__sbuf_puts(b, "\n");
  } else if (is_flat(v) && v->n > 0) {
    strop__sbuf_puts(b, " ");
    put_flow(b, v);
    strop__sbuf_puts(b, "\n");
  } else if (v->n == 0) {
    strop__sbuf_puts(b, v->type == STROP__Y_SEQ ? " []\n" : " {}\n");
  } else {
    strop__sbuf_puts(b, "\n");
    emit(b, v, indent + 2);
  }
}

static void emit(strop__sbuf *b, const strop__ynode *y, int indent) {
  if (y->type == STROP__Y_MAP) {
    for (int i = 0; i + 1 < y->n; i += 2) {
      strop__sbuf_printf(b, "%*s", indent, "");
      put_scalar(b, y->kids[i]);
      strop__sbuf_puts(b, ":");
      emit_value_after_key(b, y->kids[i + 1], indent);
    }
  } else if (y->type == STROP__Y_SEQ) {
    for (int i = 0; i < y->n; i++) {
      const strop__ynode *it = y->kids[i];
      strop__sbuf_printf(b, "%*s-", indent, "");
      if (it->type == STROP__Y_MAP && it->n > 0) {
        /* first key on the dash line, the rest indented under it */
        strop__sbuf_puts(b, " ");
        put_scalar(b, it->kids[0]);
        strop__sbuf_puts(b, ":");
        emit_value_after_key(b, it->kids[1], indent + 2);
        for (int j = 2; j + 1 < it->n; j += 2) {
          strop__sbuf_printf(b, "%*s", indent + 2, "");
          put_scalar(b, it->kids[j]);
          strop__sbuf_puts(b, ":");
          emit_value_after_key(b, it->kids[j + 1], indent + 2);
        }
      } else if (it->type == STROP__Y_SCALAR || is_flat(it)) {
        strop__sbuf_puts(b, " ");
        put_flow(b, it);
        strop__sbuf_puts(b, "\n");
      } else {
        strop__sbuf_puts(b, "\n");
        emit(b, it, indent + 2);
      }
    }
  } else {
    strop__sbuf_printf(b, "%*s", indent, "");
    put_scalar(b, y);
    strop__sbuf_puts(b, "\n");
  }
}

int64_t strop_recipe_to_string(const strop_recipe *r, char *buf, size_t cap) {
  if (!r || (!buf && cap)) return -1;
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  emit(&b, r->root, 0);
  const int64_t n = strop__sbuf_out("strop_recipe_to_string", &b, buf, cap);
  strop__sbuf_free(&b);
  return n;
}

strop_status strop_recipe_save(const strop_recipe *r, const char *path) {
  static const char fn[] = "strop_recipe_save";
  if (!r || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, r ? "path" : "recipe");
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  emit(&b, r->root, 0);
  if (b.oom) {
    strop__sbuf_free(&b);
    return STROP__NOMEM(fn);
  }
  strop_status s = strop__write_file_atomic(fn, path, b.s ? b.s : "", b.n);
  strop__sbuf_free(&b);
  return s;
}
