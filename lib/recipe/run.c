/* SPDX-License-Identifier: MIT */
/* strop — running a recipe: build or load the model, apply the surgery, load and shape the
 * data, run each stage's fit with its own optimizer and schedule, evaluate, run baselines,
 * and write the outputs. Uses the library's public API; the recipe is only read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist_impl.h"
#include "io/checkpoint.h"
#include "optim/optim.h"
#include "pretrained/pretrained.h"
#include "core/sbuf.h"
#include "train/frozen.h"
#include "recipe/recipe_impl.h"
#include "train/train_impl.h"
#include "strop/strop.h"
#include "strop/recipe.h"
#include "strop/surgery.h"
#include "train/train_impl.h"

#define FN "strop_recipe_run"

/* ---- results ---- */
void strop_run_options_init(strop_run_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->mode = STROP_RUN_FINETUNE;
  o->write_outputs = 1;
  o->baselines = 1;
}

void strop_run_free(strop_run *run) {
  if (!run) return;
  strop_model_free(run->model);
  strop__free(run->st);
  strop__free(run->hist);
  strop__free(run->steps);
  strop__free(run);
}

int64_t strop_run_info(const strop_run *run, int key) {
  if (!run || key < 0 || key > STROP_INFO_CLASSES) return -1;
  return run->info[key];
}

double strop_run_seconds(const strop_run *run) { return run ? run->seconds : NAN; }

double strop_run_stage_metric(const strop_run *run, int64_t stage, int key) {
  if (!run || stage < 0 || stage >= run->n_st) return NAN;
  if (key >= 0 && key < RUN_NM) return run->st[stage].test[key];
  if (key >= 100 && key < 100 + RUN_NM) return run->st[stage].val[key - 100];
  return NAN;
}

int64_t strop_run_stage_name(const strop_run *run, int64_t stage, char *buf, size_t cap) {
  if (!run || stage < 0 || stage >= run->n_st || (!buf && cap)) return -1;
  return strop__copy_out("strop_run_stage_name", run->st[stage].name, buf, cap);
}

int strop_run_stage_is_baseline(const strop_run *run, int64_t stage) {
  return run && stage >= 0 && stage < run->n_st ? run->st[stage].baseline : 0;
}

double strop_run_history(const strop_run *run, int64_t row, int key) {
  if (!run || row < 0 || row >= run->hist_len || key < 0 || key > HC_TIME) return NAN;
  return run->hist[row * HC_N + key];
}

strop_model *strop_run_model(strop_run *run) { return run ? run->model : NULL; }

static strop__stage_result *new_stage(strop_run *run, const char *name, int baseline) {
  if (run->n_st == run->cap_st) {
    int64_t cap = run->cap_st ? run->cap_st * 2 : 4;
    strop__stage_result *v = strop__realloc(run->st, (size_t)cap * sizeof *v);
    if (!v) return NULL;
    run->st = v;
    run->cap_st = cap;
  }
  strop__stage_result *s = &run->st[run->n_st++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->baseline = baseline;
  for (int i = 0; i < RUN_NM; i++) s->test[i] = s->val[i] = NAN;
  return s;
}

static double *new_hist_row(strop_run *run) {
  if (run->hist_len == run->hist_cap) {
    int64_t cap = run->hist_cap ? run->hist_cap * 2 : 32;
    double *v = strop__realloc(run->hist, (size_t)(cap * HC_N) * sizeof *v);
    if (!v) return NULL;
    run->hist = v;
    run->hist_cap = cap;
  }
  double *r = run->hist + run->hist_len++ * HC_N;
  for (int i = 0; i < HC_N; i++) r[i] = NAN;
  return r;
}

/* A train.log_every row. */
static double *new_step_row(strop_run *run) {
  if (run->steps_len == run->steps_cap) {
    int64_t cap = run->steps_cap ? run->steps_cap * 2 : 64;
    double *v = strop__realloc(run->steps, (size_t)(cap * SC_N) * sizeof *v);
    if (!v) return NULL;
    run->steps = v;
    run->steps_cap = cap;
  }
  double *r = run->steps + run->steps_len++ * SC_N;
  for (int i = 0; i < SC_N; i++) r[i] = NAN;
  return r;
}

/* ---- the run's working state ---- */
typedef struct ctx {
  const strop_recipe *r;
  const strop_run_options *o;
  strop_run *run;
  uint64_t seed;
  double t0;
  /* data */
  strop_dataset *train, *val, *test;
  int64_t classes;
  int64_t source_classes; /* the source's classes, before data.classes kept some */
  int64_t kept[256];      /* data.classes: the source label of each class kept */
  int n_kept;
  int64_t batch, eval_batch;
  int shuffle, drop_last, prefetch;
  double scale;
  int have_norm;
  float mean[16], std[16];
  int64_t n_norm;
  int64_t resize[2];
  int resize_mode;
  double hflip;
  int64_t crop[2], crop_pad;
  int workers;
  int64_t resize_shorter, max_size; /* 0: none */
  int shorter_mode;                 /* mode of resize_shorter and random_resized_crop */
  int64_t center_crop[2];           /* 0: none */
  int64_t rrc[2];                   /* random_resized_crop size, 0: none (training only) */
  float rrc_scale[2], rrc_ratio[2];
  float jitter[4];      /* color_jitter (training only); all 0: none */
  int text_task;        /* text data: 1 + its strop_text_task; 0: not text */
  int64_t text_len;     /* text data: max_length */
  int text_padding;     /* text data: its strop_padding */
  char tokenizer[1024]; /* text data: the tokenizer's path */
  /* progress forwarding */
  int64_t stage, stages;
  const char *stage_name;
  /* train.log_every: steps between rows (0: none); the epoch's step and running mean loss at
   * the previous row, from which the mean of the steps since then follows */
  int64_t log_every, log_step;
  double log_mean;
  /* resuming: the stage output.checkpoint belongs to (-1: start from the beginning) */
  int64_t resume_stage;
  char resume_path[1200];
} ctx;

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const strop__ynode *section(const strop_recipe *r, const char *key) {
  const strop__ynode *v = strop__ynode_get(r->root, key);
  return strop__ynode_is_null(v) ? NULL : v;
}

static const strop__ynode *sub(const strop__ynode *map, const char *key) {
  const strop__ynode *v = strop__ynode_get(map, key);
  return strop__ynode_is_null(v) ? NULL : v;
}

/* The thread's sentence without a leading "strop_recipe_run: " (an inner step of the runner
 * said it already), copied into rest, so context added in front never says FN twice. */
static const char *sentence_after_fn(char rest[1024]) {
  const char *e = strop_last_error();
  size_t n = strlen(FN);
  snprintf(rest, 1024, "%s", strncmp(e, FN ": ", n + 2) == 0 ? e + n + 2 : e);
  return rest;
}

/* Adds "strop_recipe_run: where: " to the sentence. */
static strop_status fail(strop_status s, const char *where) {
  char rest[1024];
  return strop__err(s, "%s: %s: %s", FN, where, sentence_after_fn(rest));
}

/* Says where the recipe sets data.<key>: "FN: file:line:col: 'key': <the sentence>". */
static strop_status at_data_key(ctx *c, strop_status s, const char *key) {
  const strop__ynode *d = section(c->r, "data"), *at = strop__ynode_get(d, key);
  char rest[1024];
  return strop__recipe_err(FN, c->r, at ? at : d, s, "'%s': %s", key, sentence_after_fn(rest));
}

/* A step of the data selection that left a part with no sample is refused at the recipe key
 * that asked for it: "'val_fraction' 0.2 of 1 sample leaves the validation set empty". */
static strop_status require_samples(ctx *c, const strop_dataset *part, const char *key,
                                    const char *value, int64_t of, const char *what) {
  if (!part || strop_dataset_size(part) > 0) return STROP_OK;
  const strop__ynode *d = section(c->r, "data"), *at = strop__ynode_get(d, key);
  return strop__recipe_err(FN, c->r, at ? at : d, STROP_E_FORMAT,
                           "'%s'%s%s of %lld sample%s "
                           "leaves the %s set empty",
                           key, value ? " " : "", value ? value : "", (long long)of,
                           of == 1 ? "" : "s", what);
}

/* ---- model ---- */
/* model.frozen_dtype as a strop_dtype (F32 when absent; the schema checked the word) */
static int frozen_dtype_of(const strop__ynode *msec) {
  const char *v = msec ? strop__rd_str(msec, "frozen_dtype") : NULL;
  for (int d = 0; v && strop__recipe_frozen_dtypes[d]; d++)
    if (!strcmp(v, strop__recipe_frozen_dtypes[d])) return d;
  return STROP_DTYPE_F32;
}

/* model.mmap and model.frozen: STROP_LOAD_MMAP (frozen weights used straight from the mapped
 * file) and STROP_LOAD_FROZEN (every parameter frozen at load: the base is borrowed whole, and
 * the surgery unfreezes or adds adapters). `strop train` starts from fresh weights, which the
 * mapping cannot hold: mmap is for fine-tuning. */
static strop_status load_flags(ctx *c, const strop__ynode *msec, int *flags) {
  const strop_recipe *r = c->r;
  int mm = 0, fr = 0;
  strop_status s = strop__rd_bool(r, msec, "mmap", &mm);
  if (!s) s = strop__rd_bool(r, msec, "frozen", &fr);
  if (s) return s;
  if (mm && c->o->mode != STROP_RUN_FINETUNE)
    return strop__recipe_err(FN, r, sub(msec, "mmap"), STROP_E_FORMAT,
                             "'model.mmap' borrows the weights of the file, which `strop "
                             "train` replaces with fresh ones: use it to fine-tune");
  *flags = (mm ? STROP_LOAD_MMAP : 0) | (fr ? STROP_LOAD_FROZEN : 0);
  return STROP_OK;
}

/* model.pretrained: a checkpoint as people have it (strop_model_load_pretrained), with its own
 * names. `strop train` keeps the architecture and starts from fresh weights (the seed's): as
 * the family's Hugging Face class draws them where it has an initialisation (transformers),
 * else the layers' PyTorch defaults; `weights: none` draws them so without reading any. */
static strop_status load_pretrained(ctx *c, const strop__ynode *msec, const char *path,
                                    strop_model **out) {
  const strop_recipe *r = c->r;
  const char *w = strop__rd_str(msec, "weights");
  const int fresh = w && !strcmp(w, "none");
  if (sub(msec, "spec") || (w && !fresh) || sub(msec, "remap"))
    return strop__recipe_err(FN, r, msec, STROP_E_FORMAT,
                             "'model.pretrained' brings its own "
                             "architecture and weights: leave out 'spec' and 'remap', and "
                             "'weights' but for 'weights: none' (fresh weights drawn from the "
                             "folder's config.json)");
  if (fresh && sub(msec, "strict"))
    return strop__recipe_err(FN, r, msec, STROP_E_FORMAT,
                             "'model.weights: none' reads no weights: leave out "
                             "'model.strict'");
  strop_pretrained_options po;
  strop_pretrained_options_init(&po);
  int strict = 1, flags = 0;
  int64_t v = 0;
  strop_status s = strop__rd_bool(r, msec, "strict", &strict);
  if (!s && sub(msec, "image_size") && !(s = strop__rd_int(r, msec, "image_size", &v)))
    po.image_size = v;
  if (!s && sub(msec, "max_length") && !(s = strop__rd_int(r, msec, "max_length", &v)))
    po.max_length = v;
  if (!s) s = load_flags(c, msec, &flags);
  int64_t group = 0; /* model.int8_group: with frozen_dtype int8, the load quantises with it */
  if (!s) s = strop__rd_int(r, msec, "int8_group", &group);
  if (s) return s;
  po.int8_group = group;
  po.flags = (fresh ? STROP_LOAD_FRESH : strict ? STROP_LOAD_STRICT : STROP_LOAD_PARTIAL) | flags;
  po.frozen_dtype = frozen_dtype_of(msec);
  po.seed = c->seed;
  if ((s = strop_model_load_pretrained(path, strop__rd_str(msec, "arch"), &po, out, NULL)))
    return s;
  if (c->o->mode != STROP_RUN_FINETUNE && !fresh) {
    int drawn = 0;
    if (!(s = strop_model_reinit(*out, c->seed))) s = strop__pt_redraw(FN, *out, c->seed, &drawn);
  }
  if (s) {
    strop_model_free(*out);
    *out = NULL;
  }
  return s;
}

/* model.head: a sequence-classification head on the pretrained text model (pretrained/head.c,
 * a surgery plan), of data's classes unless it names them; before the recipe's surgery, so
 * that can freeze, LoRA or save the head as modules_to_save. */
static strop_status add_head(ctx *c, strop_model *m) {
  const strop_recipe *r = c->r;
  const strop__ynode *msec = section(r, "model"), *h = sub(msec, "head");
  if (!h) return STROP_OK;
  if (!sub(msec, "pretrained"))
    return strop__recipe_err(FN, r, h, STROP_E_FORMAT,
                             "'model.head' goes with 'model.pretrained' (a text model); "
                             "a spec's head is built with 'surgery'");
  int64_t classes = c->classes;
  double dropout = 0;
  strop_status s = strop__rd_int(r, h, "classes", &classes);
  if (!s) s = strop__rd_float(r, h, "dropout", &dropout);
  if (s) return s;
  if (classes < 1)
    return strop__recipe_err(FN, r, h, STROP_E_FORMAT,
                             "'model.head' needs 'classes': the data does not say how many "
                             "(it has no class labels)");
  s = strop__pt_add_head(FN, m, strop__rd_str(h, "pool"), classes, dropout, c->seed + 13);
  if (!s) return STROP_OK;
  char rest[1024];
  return strop__recipe_err(FN, r, h, s, "'model.head': %s", sentence_after_fn(rest));
}

/* model.frozen_dtype (and int8_group, first): set before any surgery, so the weights it
 * freezes take it */
static strop_status set_frozen_dtype(ctx *c, strop_model *m) {
  const strop__ynode *msec = section(c->r, "model");
  int64_t group = 0;
  strop_status gs;
  if (msec && (gs = strop__rd_int(c->r, msec, "int8_group", &group))) return gs;
  if (group && (gs = strop_model_set_frozen_int8_group(m, group)))
    return fail(gs, "model.int8_group");
  const char *v = msec ? strop__rd_str(msec, "frozen_dtype") : NULL;
  if (!v) return STROP_OK;
  for (int d = 0; strop__recipe_frozen_dtypes[d]; d++)
    if (!strcmp(v, strop__recipe_frozen_dtypes[d])) {
      strop_status s = strop_model_set_frozen_dtype(m, d);
      return s ? fail(s, "model.frozen_dtype") : STROP_OK;
    }
  return STROP_OK; /* not reached: the recipe's schema checked the word */
}

static strop_status build_model(ctx *c, strop_model **out) {
  const strop_recipe *r = c->r;
  *out = NULL;
  if (c->o->base_model) {
    strop_status s = strop_model_clone(c->o->base_model, out);
    return s ? fail(s, "model") : STROP_OK;
  }
  const strop__ynode *msec = section(r, "model");
  char spec[1024], weights[1024], pre[1024];
  if (msec && strop__rd_path(r, msec, "pretrained", pre, sizeof pre))
    return load_pretrained(c, msec, pre, out);
  if (msec && (sub(msec, "arch") || sub(msec, "image_size") || sub(msec, "max_length")))
    return strop__recipe_err(FN, r, msec, STROP_E_FORMAT,
                             "'model.arch', 'model.image_size' "
                             "and 'model.max_length' go with 'model.pretrained'");
  if (!msec || !strop__rd_path(r, msec, "spec", spec, sizeof spec))
    return strop__recipe_err(FN, r, msec ? msec : r->root, STROP_E_FORMAT,
                             "'model.spec' (the architecture file) or 'model.pretrained' (a "
                             "checkpoint folder or file) is required");
  strop_status s = strop_model_load_spec(spec, out);
  if (s) return s;
  const char *w = strop__rd_path(r, msec, "weights", weights, sizeof weights);
  int lflags = 0;
  if ((s = load_flags(c, msec, &lflags))) goto bad;
  /* a frozen base from a spec: frozen before the weights are read, so a mapped file lends
   * them all (the pretrained loader does the same with STROP_LOAD_FROZEN) */
  if ((lflags & STROP_LOAD_FROZEN) && (s = strop_model_freeze(*out, "*"))) goto bad;
  if (c->o->mode == STROP_RUN_FINETUNE) {
    if (!w) {
      strop_model_free(*out);
      *out = NULL;
      return strop__recipe_err(FN, r, msec, STROP_E_FORMAT,
                               "'model.weights' is required to "
                               "fine-tune (use `strop train` to start from fresh weights)");
    }
    int strict = 1;
    if ((s = strop__rd_bool(r, msec, "strict", &strict))) goto bad;
    const strop__ynode *remap = sub(msec, "remap");
    int flags = (strict ? STROP_LOAD_STRICT : STROP_LOAD_PARTIAL) | (lflags & STROP_LOAD_MMAP);
    if (remap && remap->n >= 2) {
      if (remap->n > 2) {
        s = strop__recipe_err(FN, r, remap, STROP_E_FORMAT,
                              "'model.remap' takes one "
                              "'from_prefix: to_prefix' pair");
        goto bad;
      }
      s = strop_model_load_weights_remap(*out, w, flags, remap->kids[0]->text,
                                         remap->kids[1]->text, NULL);
    } else {
      s = strop_model_load_weights(*out, w, flags, NULL);
    }
    if (s) goto bad;
  }
  return STROP_OK;
bad:
  strop_model_free(*out);
  *out = NULL;
  return s;
}

/* model.checkpointing: "auto", a glob over block names (strop_model_set_checkpointing), or
 * "off"; set once the surgery has made the model's final graph. */
static strop_status set_checkpointing(ctx *c, strop_model *m) {
  const strop__ynode *msec = section(c->r, "model");
  const char *p = msec ? strop__rd_str(msec, "checkpointing") : NULL;
  if (!p || !strcmp(p, "off")) return STROP_OK;
  strop_status s = strop_model_set_checkpointing(m, p);
  if (!s) return STROP_OK;
  char rest[1024];
  return strop__recipe_err(FN, c->r, strop__ynode_get(msec, "checkpointing"), s,
                           "'model.checkpointing': %s", sentence_after_fn(rest));
}

/* The index in words of model.<key>'s word, or -1 when the key is absent (the schema checked
 * the word). */
static int model_word(ctx *c, const char *key, const char *const *words) {
  const strop__ynode *msec = section(c->r, "model");
  const char *v = msec ? strop__rd_str(msec, key) : NULL;
  for (int d = 0; v && words[d]; d++)
    if (!strcmp(v, words[d])) return d;
  return -1;
}

/* model.compute_dtype: the precision of the linear and conv products (f32, the default, or
 * bf16) */
static strop_status set_compute_dtype(ctx *c, strop_model *m) {
  const int d = model_word(c, "compute_dtype", strop__recipe_cdtypes);
  strop_status s = d >= 0 ? strop_model_set_compute_dtype(m, d) : STROP_OK;
  return s ? fail(s, "model.compute_dtype") : STROP_OK;
}

/* model.weight_cache: false packs the trained weights' BF16 products per call instead of
 * keeping their copies (true, the default) */
static strop_status set_weight_cache(ctx *c, strop_model *m) {
  const strop__ynode *msec = section(c->r, "model");
  int on = 1;
  strop_status s = msec ? strop__rd_bool(c->r, msec, "weight_cache", &on) : STROP_OK;
  if (!s && !on && (s = strop_model_set_weight_cache(m, 0))) return fail(s, "model.weight_cache");
  return s;
}

/* model.attention: auto (the default), tiled or materialized attention weights */
static strop_status set_attention(ctx *c, strop_model *m) {
  const int d = model_word(c, "attention", strop__recipe_attention);
  strop_status s = d >= 0 ? strop_model_set_attention(m, d) : STROP_OK;
  return s ? fail(s, "model.attention") : STROP_OK;
}

/* ---- surgery ---- */
static strop_status apply_surgery(ctx *c, strop_model *m, const strop__ynode *ops, uint64_t seed,
                                  const char *where) {
  if (!ops || ops->n == 0) return STROP_OK;
  const strop_recipe *r = c->r;
  strop_surgery *sg = NULL;
  strop_status s = strop_surgery_create(m, &sg);
  if (s) return s;
  if ((s = strop_surgery_set_seed(sg, seed))) goto done;
  char opts[1024];
  for (int i = 0; i < ops->n && !s; i++) {
    const strop__ynode *it = ops->kids[i];
    const char *op = it->kids[0]->text;
    const strop__ynode *a = it->kids[1];
    const char *word = a->type == STROP__Y_SCALAR ? a->text : NULL;
    if (!strcmp(op, "freeze") || !strcmp(op, "unfreeze")) {
      const char *match = word ? word : strop__rd_str(a, "match");
      int keep = 0;
      if (!word && (s = strop__rd_bool(r, a, "keep_bn_stats", &keep))) break;
      if (!match) {
        s = strop__recipe_err(FN, r, a, STROP_E_FORMAT, "'%s' needs 'match'", op);
        break;
      }
      int flags = keep ? STROP_FREEZE_KEEP_BN_MODE : 0;
      s = op[0] == 'f' ? strop_surgery_freeze(sg, match, flags)
                       : strop_surgery_unfreeze(sg, match, flags);
    } else if (!strcmp(op, "remove") || !strcmp(op, "truncate")) {
      if (!word) {
        s = strop__recipe_err(FN, r, a, STROP_E_FORMAT, "'%s' takes a node name", op);
        break;
      }
      s = op[0] == 'r' ? strop_surgery_remove(sg, word) : strop_surgery_truncate(sg, word);
    } else if (!strcmp(op, "replace") || !strcmp(op, "insert_after") ||
               !strcmp(op, "insert_before") || !strcmp(op, "append")) {
      const char *node = strop__rd_str(a, "node"), *name = strop__rd_str(a, "name"),
                 *type = strop__rd_str(a, "type");
      if ((s = strop__recipe_options_text(FN, r, sub(a, "options"), opts, sizeof opts))) break;
      int need_node = strcmp(op, "append") != 0, need_name = strcmp(op, "replace") != 0;
      if (!type || (need_node && !node) || (need_name && !name)) {
        s = strop__recipe_err(FN, r, a, STROP_E_FORMAT, "'%s' needs %s", op,
                              !strcmp(op, "replace")  ? "node and type"
                              : !strcmp(op, "append") ? "name and type"
                                                      : "node, name and type");
        break;
      }
      if (op[0] == 'r') {
        int64_t sd = (int64_t)seed;
        if ((s = strop__rd_int(r, a, "seed", &sd))) break;
        s = strop_surgery_replace(sg, node, type, opts, (uint64_t)sd);
      } else if (!strcmp(op, "insert_after")) {
        s = strop_surgery_insert_after(sg, node, name, type, opts);
      } else if (!strcmp(op, "insert_before")) {
        s = strop_surgery_insert_before(sg, node, name, type, opts);
      } else {
        s = strop_surgery_append(sg, name, type, opts);
      }
    } else if (!strcmp(op, "lora")) {
      const char *match = strop__rd_str(a, "match");
      int64_t rank = 8;
      double alpha = 16, dropout = 0;
      if ((s = strop__rd_int(r, a, "rank", &rank)) ||
          (s = strop__rd_float(r, a, "alpha", &alpha)) ||
          (s = strop__rd_float(r, a, "dropout", &dropout)))
        break;
      if (!match) {
        s = strop__recipe_err(FN, r, a, STROP_E_FORMAT, "'lora' needs 'match'");
        break;
      }
      s = strop_surgery_lora(sg, match, rank, (float)alpha, (float)dropout);
    } else if (!strcmp(op, "param_group")) {
      const char *match = strop__rd_str(a, "match");
      double lr_mult = 1;
      int no_decay = 0;
      if ((s = strop__rd_float(r, a, "lr_mult", &lr_mult)) ||
          (s = strop__rd_bool(r, a, "no_decay", &no_decay)))
        break;
      if (!match) {
        s = strop__recipe_err(FN, r, a, STROP_E_FORMAT, "'param_group' needs 'match'");
        break;
      }
      s = strop_surgery_param_group(sg, match, (float)lr_mult, no_decay);
    }
    if (s && it->line > 0 && !strstr(strop_last_error(), r->file))
      strop__err_prefix("%s: %s:%d:%d: %s[%d] (%s)", FN, r->file, it->line, it->col, where, i,
                        op);
  }
  if (!s) {
    s = strop_surgery_apply(sg);
    if (s) strop__err_prefix("%s: %s", FN, where);
  }
done:
  strop_surgery_free(sg);
  return s;
}

/* ---- data ---- */
static strop_status load_text(ctx *c, const strop__ynode *d, const char *src, int64_t nc,
                              strop_dataset **train, strop_dataset **test);

static strop_status load_sources(ctx *c, strop_dataset **train, strop_dataset **test) {
  const strop_recipe *r = c->r;
  const strop__ynode *d = section(r, "data");
  *train = *test = NULL;
  if (!d)
    return strop__recipe_err(FN, r, r->root, STROP_E_FORMAT, "the 'data' section is required");
  const char *src = strop__rd_str(d, "source");
  int64_t nc = STROP_CLASSES_INFER;
  strop_status s = strop__rd_int(r, d, "num_classes", &nc);
  if (s) return s;
  char a[1024], b[1024];
  if (!src || !strcmp(src, "idx")) {
    if (!strop__rd_path(r, d, "train_images", a, sizeof a) ||
        !strop__rd_path(r, d, "train_labels", b, sizeof b))
      return strop__recipe_err(FN, r, d, STROP_E_FORMAT,
                               "idx data needs 'train_images' and "
                               "'train_labels'");
    if ((s = strop_dataset_load_idx(a, b, nc, train))) return s;
    if (strop__rd_path(r, d, "test_images", a, sizeof a) &&
        strop__rd_path(r, d, "test_labels", b, sizeof b))
      s = strop_dataset_load_idx(a, b, nc, test);
  } else if (!strcmp(src, "jsonl") || !strcmp(src, "text") ||
             (!strcmp(src, "csv") && sub(d, "tokenizer"))) {
    s = load_text(c, d, src, nc, train, test);
  } else if (!strcmp(src, "csv")) {
    strop_csv_options co;
    strop_csv_options_init(&co);
    co.num_classes = nc;
    int hdr = 0, skl = 0;
    if ((s = strop__rd_bool(r, d, "header", &hdr)) ||
        (s = strop__rd_bool(r, d, "sklearn_header", &skl)))
      return s;
    co.header = hdr;
    co.sklearn_header = skl;
    const char *delim = strop__rd_str(d, "delimiter");
    if (delim)
      co.delimiter = !strcmp(delim, "space") ? ' ' : !strcmp(delim, "tab") ? '\t' : delim[0];
    const strop__ynode *lc = sub(d, "label_column");
    if (lc) {
      int64_t idx;
      char *end;
      idx = strtoll(lc->text, &end, 10);
      if (*end == '\0' && end != lc->text) co.label_column = idx;
      else co.label_name = lc->text;
    }
    const char *lm = strop__rd_str(d, "label_mode");
    if (lm)
      co.label_mode = !strcmp(lm, "names")          ? STROP_CSV_LABEL_NAMES
                      : !strcmp(lm, "names_sorted") ? STROP_CSV_LABEL_NAMES_SORTED
                                                    : STROP_CSV_LABEL_INDEX;
    if (!strop__rd_path(r, d, "path", a, sizeof a))
      return strop__recipe_err(FN, r, d, STROP_E_FORMAT, "csv data needs 'path'");
    if ((s = strop_dataset_load_csv(a, &co, train))) return s;
    if (strop__rd_path(r, d, "test_path", b, sizeof b)) s = strop_dataset_load_csv(b, &co, test);
  } else if (!strcmp(src, "images")) {
    strop_image_options io;
    strop_image_options_init(&io);
    int64_t ch = 3, maxpx = io.max_pixels, cache_mb = 0;
    int skip = 0;
    if ((s = strop__rd_int(r, d, "channels", &ch)) ||
        (s = strop__rd_bool(r, d, "skip_bad", &skip)) ||
        (s = strop__rd_int(r, d, "max_pixels", &maxpx)) ||
        (s = strop__rd_int(r, d, "cache_mb", &cache_mb)))
      return s;
    io.channels = (int)ch;
    io.skip_bad = skip;
    io.max_pixels = maxpx;
    io.cache_bytes = (size_t)cache_mb << 20;
    if (!strop__rd_path(r, d, "path", a, sizeof a))
      return strop__recipe_err(FN, r, d, STROP_E_FORMAT,
                               "images data needs 'path' (a folder of "
                               "class folders, or a CSV/JSON-lines list of path,label)");
    if ((s = strop_dataset_load_images(a, &io, train))) return s;
    if (strop__rd_path(r, d, "test_path", b, sizeof b))
      s = strop_dataset_load_images(b, &io, test);
    for (int k = 0; !s && k < 2; k++) {
      strop_dataset *part = k ? *test : *train;
      if (part && nc > 0 && strop_dataset_num_classes(part) > nc)
        s = strop__recipe_err(FN, r, sub(d, "num_classes"), STROP_E_FORMAT,
                              "%s has %lld classes, "
                              "more than num_classes %lld",
                              k ? b : a, (long long)strop_dataset_num_classes(part),
                              (long long)nc);
    }
    if (s && *test) {
      strop_dataset_free(*test);
      *test = NULL;
    }
  } else {
    if (!strop__rd_path(r, d, "x", a, sizeof a) || !strop__rd_path(r, d, "y", b, sizeof b))
      return strop__recipe_err(FN, r, d, STROP_E_FORMAT, "npy data needs 'x' and 'y'");
    if ((s = strop_dataset_load_npy(a, b, nc, train))) return s;
    if (strop__rd_path(r, d, "test_x", a, sizeof a) &&
        strop__rd_path(r, d, "test_y", b, sizeof b))
      s = strop_dataset_load_npy(a, b, nc, test);
  }
  if (s) {
    strop_dataset_free(*train);
    *train = NULL;
  }
  return s;
}

/* Text sources (jsonl, text, csv with a tokenizer): strop_dataset_load_text_file with the
 * tokenizer of data.tokenizer, else of the model.pretrained folder. */
static strop_status load_text(ctx *c, const strop__ynode *d, const char *src, int64_t nc,
                              strop_dataset **train, strop_dataset **test) {
  const strop_recipe *r = c->r;
  char a[1024], b[1024];
  if (!strop__rd_path(r, d, "tokenizer", c->tokenizer, sizeof c->tokenizer) &&
      !strop__rd_path(r, section(r, "model"), "pretrained", c->tokenizer, sizeof c->tokenizer))
    return strop__recipe_err(FN, r, d, STROP_E_FORMAT,
                             "%s text data needs 'tokenizer' (a "
                             "tokenizer.json, vocab.txt, .model file or a folder with one), or "
                             "a model.pretrained folder holding one",
                             src);
  strop_text_options to;
  strop_text_options_init(&to);
  to.format = !strcmp(src, "jsonl") ? STROP_TEXT_JSONL
              : !strcmp(src, "csv") ? STROP_TEXT_CSV
                                    : STROP_TEXT_PLAIN;
  const char *task = strop__rd_str(d, "task"), *pad = strop__rd_str(d, "padding");
  to.task = !task || !strcmp(task, "classify") ? STROP_TEXT_CLASSIFY
            : !strcmp(task, "causal_lm")       ? STROP_TEXT_CAUSAL_LM
                                               : STROP_TEXT_PROMPT_RESPONSE;
  to.padding = pad && !strcmp(pad, "max_length") ? STROP_PAD_MAX_LENGTH : STROP_PAD_LONGEST;
  to.text_field = strop__rd_str(d, "text");
  to.pair_field = strop__rd_str(d, "text_pair");
  to.label_field = strop__rd_str(d, "label");
  to.response_field = strop__rd_str(d, "response");
  to.prompt_template = strop__rd_str(d, "prompt_template");
  /* chat_template: true (the tokenizer's own), false, or a template (or a template's name) */
  const char *chat = strop__rd_str(d, "chat_template");
  if (chat && strcmp(chat, "false") && strcmp(chat, "no")) {
    to.chat = 1;
    to.chat_template = !strcmp(chat, "true") || !strcmp(chat, "yes") ? NULL : chat;
  }
  to.num_classes = nc;
  char cache[1024]; /* cache_dir: the tokenised data kept on disk (relative to the recipe) */
  to.cache_dir = strop__rd_path(r, d, "cache_dir", cache, sizeof cache);
  /* the model's own context length unless the data says otherwise */
  strop_status s = strop__rd_int(r, section(r, "model"), "max_length", &to.max_length);
  if (!s) s = strop__rd_int(r, d, "max_length", &to.max_length);
  if (!s) s = strop__rd_bool(r, d, "truncate", &to.truncate);
  if (!s) s = strop__rd_bool(r, d, "pack", &to.pack);
  if (!s) s = strop__rd_int(r, d, "stride", &to.stride);
  if (s) return s;
  if (!strop__rd_path(r, d, "path", a, sizeof a))
    return strop__recipe_err(FN, r, d, STROP_E_FORMAT, "%s data needs 'path'", src);
  strop_tokenizer *tok = NULL;
  if ((s = strop_tokenizer_load(c->tokenizer, NULL, &tok)))
    return at_data_key(c, s, sub(d, "tokenizer") ? "tokenizer" : "source");
  s = strop_dataset_load_text_file(a, tok, &to, train);
  if (!s && strop__rd_path(r, d, "test_path", b, sizeof b))
    s = strop_dataset_load_text_file(b, tok, &to, test);
  strop_tokenizer_free(tok);
  if (s) return at_data_key(c, s, *train ? "test_path" : "path");
  c->text_task = 1 + to.task;
  c->text_len = to.max_length;
  c->text_padding = to.padding;
  return STROP_OK;
}

/* Replaces *ds by f(*ds) (the derived view keeps what it needs alive). */
#define DERIVE(call)           \
  do {                         \
    strop_dataset *nd_ = NULL; \
    s = (call);                \
    if (s) goto out;           \
    strop_dataset_free(*ds);   \
    *ds = nd_;                 \
  } while (0)

static strop_status shape_set(ctx *c, strop_dataset **ds, const int64_t *classes, int ncls,
                              const int64_t *shape, int nshape) {
  strop_status s = STROP_OK;
  const char *key = "classes";
  if (!*ds) return STROP_OK;
  if (ncls > 0) DERIVE(strop_dataset_filter_classes(*ds, classes, ncls, &nd_));
  key = "input_shape";
  if (nshape > 0) DERIVE(strop_dataset_reshape(*ds, nshape, shape, &nd_));
out:
  return s ? at_data_key(c, s, key) : STROP_OK;
}

static strop_status load_data(ctx *c) {
  const strop_recipe *r = c->r;
  const strop__ynode *d = section(r, "data");
  strop_dataset *all = NULL, *test = NULL, *pool = NULL, *val = NULL;
  strop_status s = load_sources(c, &all, &test);
  if (s) return fail(s, "data");
  int64_t classes[256], shape[8];
  int ncls = 0, nshape = 0;
  if ((s = strop__rd_ints(r, d, "classes", classes, 256, &ncls)) ||
      (s = strop__rd_ints(r, d, "input_shape", shape, 8, &nshape)))
    goto bad;
  int64_t n0 = strop_dataset_size(all);
  c->source_classes = strop_dataset_num_classes(all);
  c->n_kept = ncls;
  memcpy(c->kept, classes, (size_t)ncls * sizeof *classes);
  const strop__ynode *cn = sub(d, "class_names");
  if (cn && cn->n != c->source_classes) {
    s = strop__recipe_err(FN, r, cn, STROP_E_FORMAT,
                          "'class_names' names %d classes but the "
                          "data has %lld (one name per label of the source, before 'classes' "
                          "keeps some)",
                          cn->n, (long long)c->source_classes);
    goto bad;
  }
  if ((s = shape_set(c, &all, classes, ncls, shape, nshape)) ||
      (s = shape_set(c, &test, classes, ncls, shape, nshape)) ||
      (s = require_samples(c, all, "classes", NULL, n0, "training")))
    goto bad;
  int64_t dseed = (int64_t)c->seed, k = 0, vk = 0, limit = 0, test_limit = 0;
  double val_frac = 0, test_frac = 0;
  int stratify = 1;
  if ((s = strop__rd_int(r, d, "seed", &dseed)) || (s = strop__rd_int(r, d, "few_shot", &k)) ||
      (s = strop__rd_int(r, d, "val_few_shot", &vk)) ||
      (s = strop__rd_float(r, d, "val_fraction", &val_frac)) ||
      (s = strop__rd_float(r, d, "test_fraction", &test_frac)) ||
      (s = strop__rd_bool(r, d, "stratify", &stratify)) ||
      (s = strop__rd_int(r, d, "limit", &limit)) ||
      (s = strop__rd_int(r, d, "test_limit", &test_limit)))
    goto bad;
  c->classes = strop_dataset_num_classes(all);
  /* a language model's targets are sequences: nothing to stratify */
  int lm = c->text_task > 1 + STROP_TEXT_CLASSIFY;
  int flags = stratify && c->classes > 0 && !lm ? STROP_SPLIT_STRATIFIED : 0;
  char v[32];
  pool = all;
  all = NULL;
  /* each step replaces pool (and val, test) by its result; a part left empty is refused at
   * the key that asked for the step */
  if (!test && test_frac > 0) {
    strop_dataset *tr = NULL;
    n0 = strop_dataset_size(pool);
    snprintf(v, sizeof v, "%g", test_frac);
    s = strop_dataset_split(pool, (float)(1.0 - test_frac), 0.0f, (uint64_t)dseed + 1, flags, &tr,
                            NULL, &test);
    strop_dataset_free(pool);
    pool = tr;
    if (s || (s = require_samples(c, test, "test_fraction", v, n0, "test")) ||
        (s = require_samples(c, pool, "test_fraction", v, n0, "training")))
      goto bad;
  }
  if (vk > 0) {
    /* a validation set drawn from a part of the pool the training sample never sees */
    if (val_frac <= 0) val_frac = 0.1;
    strop_dataset *tr = NULL, *vpool = NULL;
    n0 = strop_dataset_size(pool);
    snprintf(v, sizeof v, "%g", val_frac);
    s = strop_dataset_split(pool, (float)(1.0 - val_frac), (float)val_frac, (uint64_t)dseed + 2,
                            flags, &tr, &vpool, NULL);
    strop_dataset_free(pool);
    pool = tr;
    if (!s) s = require_samples(c, vpool, "val_fraction", v, n0, "validation");
    if (!s && (s = strop_dataset_few_shot(vpool, vk, (uint64_t)dseed + 5, &val)))
      s = at_data_key(c, s, "val_few_shot");
    strop_dataset_free(vpool);
    if (s) goto bad;
    val_frac = 0;
  }
  if (k > 0) {
    /* the few-shot sample first, then (without val_few_shot) validation carved out of it */
    strop_dataset *fs = NULL;
    s = strop_dataset_few_shot(pool, k, (uint64_t)dseed, &fs);
    strop_dataset_free(pool);
    pool = fs;
    if (s) {
      s = at_data_key(c, s, "few_shot");
      goto bad;
    }
  }
  if (val_frac > 0) {
    strop_dataset *tr = NULL;
    n0 = strop_dataset_size(pool);
    snprintf(v, sizeof v, "%g", val_frac);
    s = strop_dataset_split(pool, (float)(1.0 - val_frac), (float)val_frac, (uint64_t)dseed + 2,
                            flags, &tr, &val, NULL);
    strop_dataset_free(pool);
    pool = tr;
    if (s || (s = require_samples(c, val, "val_fraction", v, n0, "validation")) ||
        (s = require_samples(c, pool, "val_fraction", v, n0, "training")))
      goto bad;
  }
  if (limit > 0 && strop_dataset_size(pool) > limit) {
    strop_dataset *sub_ds = NULL;
    n0 = strop_dataset_size(pool);
    snprintf(v, sizeof v, "%lld", (long long)limit);
    s = strop_dataset_split(pool, (float)((double)limit / (double)n0), 0.0f, (uint64_t)dseed + 3,
                            flags, &sub_ds, NULL, NULL);
    strop_dataset_free(pool);
    pool = sub_ds;
    if (s || (s = require_samples(c, pool, "limit", v, n0, "training"))) goto bad;
  }
  if (test && test_limit > 0 && strop_dataset_size(test) > test_limit) {
    strop_dataset *sub_ds = NULL;
    n0 = strop_dataset_size(test);
    snprintf(v, sizeof v, "%lld", (long long)test_limit);
    s = strop_dataset_split(test, (float)((double)test_limit / (double)n0), 0.0f,
                            (uint64_t)dseed + 4, flags, &sub_ds, NULL, NULL);
    strop_dataset_free(test);
    test = sub_ds;
    if (s || (s = require_samples(c, test, "test_limit", v, n0, "test"))) goto bad;
  }
  c->train = pool;
  c->val = val;
  c->test = test;
  /* batching and transforms */
  int64_t bs = 32, ebs = 256;
  int shuffle = 1, drop_last = 0, prefetch = 1;
  double scale = 1.0, hflip = 0;
  int64_t resize[2], crop[2];
  int nresize = 0, ncrop = 0;
  if ((s = strop__rd_int(r, d, "batch_size", &bs)) ||
      (s = strop__rd_int(r, d, "eval_batch_size", &ebs)) ||
      (s = strop__rd_bool(r, d, "shuffle", &shuffle)) ||
      (s = strop__rd_bool(r, d, "drop_last", &drop_last)) ||
      (s = strop__rd_bool(r, d, "prefetch", &prefetch)) ||
      (s = strop__rd_float(r, d, "scale", &scale)) ||
      (s = strop__rd_float(r, d, "hflip", &hflip)) ||
      (s = strop__rd_ints(r, d, "resize", resize, 2, &nresize)))
    return fail(s, "data");
  if (bs < 1 || ebs < 1)
    return strop__recipe_err(FN, r, d, STROP_E_FORMAT, "batch sizes must be >= 1");
  c->batch = bs;
  c->eval_batch = ebs;
  c->shuffle = shuffle;
  c->drop_last = drop_last;
  c->prefetch = prefetch;
  c->scale = scale;
  c->hflip = hflip;
  c->resize[0] = c->resize[1] = 0;
  if (nresize == 1) resize[1] = resize[0];
  if (nresize) {
    c->resize[0] = resize[0];
    c->resize[1] = resize[1];
  }
  const char *rm = strop__rd_str(d, "resize_mode");
  c->resize_mode = rm && !strcmp(rm, "nearest")       ? STROP_RESIZE_NEAREST
                   : rm && !strcmp(rm, "bilinear_aa") ? STROP_RESIZE_BILINEAR_AA
                                                      : STROP_RESIZE_BILINEAR;
  /* torchvision's image transforms antialias (as PIL does) unless the recipe says otherwise */
  c->shorter_mode = rm ? c->resize_mode : STROP_RESIZE_BILINEAR_AA;
  const char *preset = strop__rd_str(d, "preset");
  int imagenet = preset && !strcmp(preset, "imagenet");
  int64_t workers = 1, cc[2];
  int ncc = 0;
  c->resize_shorter = imagenet ? 256 : 0;
  c->max_size = 0;
  c->center_crop[0] = c->center_crop[1] = imagenet ? 224 : 0;
  if ((s = strop__rd_int(r, d, "workers", &workers)) ||
      (s = strop__rd_int(r, d, "resize_shorter", &c->resize_shorter)) ||
      (s = strop__rd_int(r, d, "max_size", &c->max_size)) ||
      (s = strop__rd_ints(r, d, "center_crop", cc, 2, &ncc)))
    return fail(s, "data");
  c->workers = (int)workers;
  if (nresize && sub(d, "resize_shorter"))
    return strop__recipe_err(
        FN, r, sub(d, "resize_shorter"), STROP_E_FORMAT,
        "give 'resize' "
        "(a fixed size) or 'resize_shorter' (torchvision's Resize(int)), not both");
  if (nresize) c->resize_shorter = 0;
  if (ncc) {
    c->center_crop[0] = cc[0];
    c->center_crop[1] = ncc == 1 ? cc[0] : cc[1];
  }
  if (imagenet) {
    /* torchvision's ImageNet recipes: ToTensor, then Resize(256) + CenterCrop(224) to
     * evaluate, RandomResizedCrop(224) + RandomHorizontalFlip() to train; ImageNet's
     * mean and std. Keys the data section gives win. */
    if (!sub(d, "scale")) c->scale = 1.0 / 255.0;
    if (!sub(d, "hflip")) c->hflip = 0.5;
  }
  const strop__ynode *rrc = sub(d, "random_resized_crop");
  c->rrc[0] = c->rrc[1] = imagenet ? 224 : 0;
  c->rrc_scale[0] = 0.08f;
  c->rrc_scale[1] = 1.0f;
  c->rrc_ratio[0] = 3.0f / 4.0f;
  c->rrc_ratio[1] = 4.0f / 3.0f;
  if (rrc) {
    int64_t sz[2];
    double sc[2], ra[2];
    int nsz = 0, nsc = 0, nra = 0;
    if ((s = strop__rd_ints(r, rrc, "size", sz, 2, &nsz)) ||
        (s = strop__rd_floats(r, rrc, "scale", sc, 2, &nsc)) ||
        (s = strop__rd_floats(r, rrc, "ratio", ra, 2, &nra)))
      return fail(s, "data.random_resized_crop");
    if (!nsz && !c->rrc[0])
      return strop__recipe_err(FN, r, rrc, STROP_E_FORMAT, "random_resized_crop needs 'size'");
    if (nsz) {
      c->rrc[0] = sz[0];
      c->rrc[1] = nsz == 1 ? sz[0] : sz[1];
    }
    if ((nsc && nsc != 2) || (nra && nra != 2) || (nsc && sc[0] > sc[1]) ||
        (nra && ra[0] > ra[1]))
      return strop__recipe_err(FN, r, rrc, STROP_E_FORMAT,
                               "random_resized_crop: 'scale' and "
                               "'ratio' are [low, high] with low <= high");
    if (nsc) {
      c->rrc_scale[0] = (float)sc[0];
      c->rrc_scale[1] = (float)sc[1];
    }
    if (nra) {
      c->rrc_ratio[0] = (float)ra[0];
      c->rrc_ratio[1] = (float)ra[1];
    }
  }
  const strop__ynode *cj = sub(d, "color_jitter");
  memset(c->jitter, 0, sizeof c->jitter);
  if (cj) {
    static const char *const keys[4] = {"brightness", "contrast", "saturation", "hue"};
    for (int q = 0; q < 4; q++) {
      double jv = 0;
      if ((s = strop__rd_float(r, cj, keys[q], &jv))) return fail(s, "data.color_jitter");
      c->jitter[q] = (float)jv;
    }
  }
  const strop__ynode *cr = sub(d, "crop");
  c->crop[0] = c->crop[1] = 0;
  c->crop_pad = 0;
  if (cr) {
    if ((s = strop__rd_ints(r, cr, "size", crop, 2, &ncrop)) ||
        (s = strop__rd_int(r, cr, "padding", &c->crop_pad)))
      return fail(s, "data.crop");
    if (ncrop == 1) crop[1] = crop[0];
    if (ncrop) {
      c->crop[0] = crop[0];
      c->crop[1] = crop[1];
    }
  }
  const strop__ynode *nm = sub(d, "normalize");
  c->have_norm = 0;
  if (!nm && imagenet) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, sd, sizeof sd);
    c->n_norm = 3;
    c->have_norm = 1;
  }
  if (nm) {
    if (nm->type == STROP__Y_SCALAR && !strcmp(nm->text, "auto")) {
      if ((s = strop_dataset_channel_stats(c->train, (float)scale, c->mean, c->std, 16,
                                           &c->n_norm)))
        return fail(at_data_key(c, s, "normalize"), "data");
      if (c->n_norm > 16)
        return strop__recipe_err(FN, r, nm, STROP_E_UNSUPPORTED,
                                 "normalize: auto supports up to "
                                 "16 channels");
    } else if (nm->type == STROP__Y_MAP) {
      double mean[16], sd[16];
      int nmn = 0, nsd = 0;
      if ((s = strop__rd_floats(r, nm, "mean", mean, 16, &nmn)) ||
          (s = strop__rd_floats(r, nm, "std", sd, 16, &nsd)))
        return fail(s, "data.normalize");
      if (nmn != nsd || nmn == 0)
        return strop__recipe_err(FN, r, nm, STROP_E_FORMAT,
                                 "normalize: 'mean' and 'std' need the "
                                 "same number of channels");
      for (int i = 0; i < nmn; i++) {
        c->mean[i] = (float)mean[i];
        c->std[i] = (float)sd[i];
      }
      c->n_norm = nmn;
    } else {
      return strop__recipe_err(FN, r, nm, STROP_E_FORMAT,
                               "normalize: 'auto' or {mean: [...], std: [...]}");
    }
    c->have_norm = 1;
  }
  c->run->info[STROP_INFO_TRAIN_SIZE] = strop_dataset_size(c->train);
  c->run->info[STROP_INFO_VAL_SIZE] = c->val ? strop_dataset_size(c->val) : 0;
  c->run->info[STROP_INFO_TEST_SIZE] = c->test ? strop_dataset_size(c->test) : 0;
  c->run->info[STROP_INFO_CLASSES] = c->classes > 0 ? c->classes : 0;
  return STROP_OK;
bad:
  strop_dataset_free(all);
  strop_dataset_free(pool);
  strop_dataset_free(val);
  strop_dataset_free(test);
  return fail(s, "data");
}

/* raw: the samples are used as they are (cached features): no transforms */
static strop_status make_iter_raw(ctx *c, strop_dataset *ds, int train, uint64_t seed, int raw,
                                  strop_batch_iter **out) {
  int flags = 0;
  if (train && c->shuffle) flags |= STROP_ITER_SHUFFLE;
  if (train && c->drop_last && strop_dataset_size(ds) >= c->batch) flags |= STROP_ITER_DROP_LAST;
  if (c->prefetch) flags |= STROP_ITER_PREFETCH;
  strop_status s = strop_batch_iter_create(ds, train ? c->batch : c->eval_batch, seed, flags,
                                           out);
  if (s) return fail(at_data_key(c, s, train ? "batch_size" : "eval_batch_size"), "data");
  strop_batch_iter *it = *out;
  const char *key = "workers";
  if (c->prefetch && c->workers > 1 && (s = strop_batch_iter_set_workers(it, c->workers)))
    goto bad;
  if (raw) return STROP_OK;
  /* the order of torchvision's pipelines: the values scaled (ToTensor), the geometry (in
   * training a random resized crop takes the place of resize and centre crop), colour, then
   * normalize */
  key = "scale";
  if (c->scale != 1.0 && (s = strop_batch_iter_add_scale(it, (float)c->scale))) goto bad;
  int rrc = train && c->rrc[0] > 0;
  key = "resize";
  if (!rrc && c->resize[0] > 0 &&
      (s = strop_batch_iter_add_resize(it, c->resize[0], c->resize[1], c->resize_mode)))
    goto bad;
  key = "resize_shorter";
  if (!rrc && c->resize_shorter > 0 &&
      (s = strop_batch_iter_add_resize_shorter(it, c->resize_shorter, c->max_size,
                                               c->shorter_mode)))
    goto bad;
  key = "center_crop";
  if (!rrc && c->center_crop[0] > 0 &&
      (s = strop_batch_iter_add_center_crop(it, c->center_crop[0], c->center_crop[1])))
    goto bad;
  key = "random_resized_crop";
  if (rrc && (s = strop_batch_iter_add_random_resized_crop(
                  it, c->rrc[0], c->rrc[1], c->rrc_scale[0], c->rrc_scale[1], c->rrc_ratio[0],
                  c->rrc_ratio[1], c->shorter_mode)))
    goto bad;
  key = "color_jitter";
  if (train && (c->jitter[0] > 0 || c->jitter[1] > 0 || c->jitter[2] > 0 || c->jitter[3] > 0) &&
      (s = strop_batch_iter_add_color_jitter(it, c->jitter[0], c->jitter[1], c->jitter[2],
                                             c->jitter[3])))
    goto bad;
  key = "normalize";
  if (c->have_norm && (s = strop_batch_iter_add_normalize(it, c->n_norm, c->mean, c->std)))
    goto bad;
  key = "hflip";
  if (train && c->hflip > 0 && (s = strop_batch_iter_add_hflip(it, (float)c->hflip))) goto bad;
  key = "crop";
  if (train && c->crop[0] > 0 &&
      (s = strop_batch_iter_add_random_crop(it, c->crop[0], c->crop[1], c->crop_pad)))
    goto bad;
  return STROP_OK;
bad:
  strop_batch_iter_free(it);
  *out = NULL;
  return fail(at_data_key(c, s, key), "data transforms");
}

static strop_status make_iter(ctx *c, strop_dataset *ds, int train, uint64_t seed,
                              strop_batch_iter **out) {
  return make_iter_raw(c, ds, train, seed, 0, out);
}

/* ---- optimizer, schedule, trainer settings: a stage's map overrides the top-level one ---- */
static strop_status rd2_float(const strop_recipe *r, const strop__ynode *top,
                              const strop__ynode *st, const char *key, double *v) {
  strop_status s = strop__rd_float(r, top, key, v);
  return s ? s : strop__rd_float(r, st, key, v);
}
static strop_status rd2_int(const strop_recipe *r, const strop__ynode *top,
                            const strop__ynode *st, const char *key, int64_t *v) {
  strop_status s = strop__rd_int(r, top, key, v);
  return s ? s : strop__rd_int(r, st, key, v);
}
static strop_status rd2_bool(const strop_recipe *r, const strop__ynode *top,
                             const strop__ynode *st, const char *key, int *v) {
  strop_status s = strop__rd_bool(r, top, key, v);
  return s ? s : strop__rd_bool(r, st, key, v);
}
static const char *rd2_str(const strop__ynode *top, const strop__ynode *st, const char *key) {
  const char *v = strop__rd_str(st, key);
  return v ? v : strop__rd_str(top, key);
}

/* Every setting a section gives (the stage's over the top-level ones) goes through the
 * object's double setter, in key order: the table's order is the one its cross-checks need
 * (momentum before nesterov). A list goes through set_list. */
typedef strop_status (*set_fn)(void *obj, int key, double v);
typedef strop_status (*set_list_fn)(void *obj, int key, const int64_t *v, int n);

static strop_status apply_knobs(const strop_recipe *r, const strop__ynode *top,
                                const strop__ynode *st, const strop__settings *t,
                                const char *group, void *obj, set_fn set, set_list_fn set_list) {
  const strop__ynode *nodes[64];
  if (t->n > 64)
    return strop__err(STROP_E_INTERNAL, "%s: %s has too many settings", FN, t->object);
  strop__recipe_knobs(top, st, t, group, nodes);
  for (int k = 0; k < t->n; k++) {
    if (!nodes[k]) continue;
    const strop__setting *d = strop__settings_at(t, k);
    strop_status s;
    if (d->type == STROP__SET_LIST) {
      int64_t v[64];
      int n = 0;
      s = strop__rd_ints_at(r, nodes[k], d->name, v, 64, &n);
      if (!s) s = set_list ? set_list(obj, k, v, n) : STROP_E_INTERNAL;
    } else {
      double v;
      if (!strop__setting_parse(d, nodes[k]->text, &v)) {
        char form[300];
        return strop__recipe_err(FN, r, nodes[k], STROP_E_FORMAT, "'%s' must be %s, got '%s'",
                                 d->name, strop__setting_form(d, form, sizeof form),
                                 nodes[k]->text);
      }
      s = set(obj, k, v);
    }
    if (s) return s;
  }
  return STROP_OK;
}

static strop_status set_opt(void *o, int k, double v) {
  return strop_optimizer_set_double(o, k, v);
}
static strop_status set_sched(void *o, int k, double v) {
  return strop_scheduler_set_double(o, k, v);
}
static strop_status set_sched_list(void *o, int k, const int64_t *v, int n) {
  return strop_scheduler_set_ints(o, k, v, n);
}
static strop_status set_trainer(void *o, int k, double v) {
  return strop_trainer_set_double(o, k, v);
}

static strop_status build_optimizer(ctx *c, strop_model *m, const strop__ynode *st,
                                    strop_optimizer **out) {
  const strop_recipe *r = c->r;
  const strop__ynode *top = section(r, "optimizer");
  const char *kind = rd2_str(top, st, "kind");
  static const char *const kinds[] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};
  int k = STROP_OPTIM_ADAM;
  for (int i = 0; kind && i < 5; i++)
    if (!strcmp(kind, kinds[i])) k = i;
  strop_status s = strop_optimizer_create(m, k, out);
  if (s) return fail(s, "optimizer");
  s = apply_knobs(r, top, st, &strop__optimizer_settings, NULL, *out, set_opt, NULL);
  if (!s) {
    double betas[2];
    int nb = 0;
    const strop__ynode *src = sub(st, "betas") ? st : top;
    if (!(s = strop__rd_floats(r, src, "betas", betas, 2, &nb)) && nb == 2) {
      if (!(s = strop_optimizer_set_double(*out, STROP_OPT_BETA1, betas[0])))
        s = strop_optimizer_set_double(*out, STROP_OPT_BETA2, betas[1]);
    } else if (!s && nb > 0) { /* one value was silently dropped before */
      s = strop__recipe_err(FN, r, sub(src, "betas"), STROP_E_FORMAT,
                            "'betas' takes two values, [beta1, beta2] (as [0.9, 0.999]), got %d",
                            nb);
    }
  }
  if (s) {
    strop_optimizer_free(*out);
    *out = NULL;
    return fail(s, "optimizer");
  }
  return STROP_OK;
}

static strop_status build_schedule(ctx *c, strop_optimizer *opt, const strop__ynode *st,
                                   int64_t steps_per_epoch, int64_t epochs, strop_scheduler **out,
                                   int *per_epoch) {
  const strop_recipe *r = c->r;
  const strop__ynode *top = section(r, "schedule");
  *out = NULL;
  *per_epoch = 0;
  const char *kind = rd2_str(top, st, "kind");
  if (!kind) return STROP_OK;
  static const char *const kinds[] = {"constant",    "step",   "multistep",
                                      "exponential", "cosine", "cosine_restarts",
                                      "one_cycle",   "plateau"};
  int k = 0;
  for (int i = 0; i < 8; i++)
    if (!strcmp(kind, kinds[i])) k = i;
  const char *per = rd2_str(top, st, "per");
  *per_epoch = per ? !strcmp(per, "epoch") : -1;
  int64_t units = *per_epoch > 0 ? epochs : epochs * steps_per_epoch;
  strop_status s = strop_scheduler_create(opt, k, out);
  if (s) return fail(s, "schedule");
  /* defaults that depend on the run's length */
  if (k == STROP_SCHED_COSINE &&
      (s = strop_scheduler_set_double(*out, STROP_SCH_T_MAX, (double)(units > 0 ? units : 1))))
    goto bad;
  if (k == STROP_SCHED_ONE_CYCLE) {
    double base;
    if ((s = strop_optimizer_get_double(opt, STROP_OPT_LR, &base))) goto bad;
    if ((s = strop_scheduler_set_double(*out, STROP_SCH_MAX_LR, base)) ||
        (s = strop_scheduler_set_double(*out, STROP_SCH_TOTAL_STEPS,
                                        (double)(units > 0 ? units : 1))))
      goto bad;
  }
  if ((s = apply_knobs(r, top, st, &strop__scheduler_settings, NULL, *out, set_sched,
                       set_sched_list)))
    goto bad;
  return STROP_OK;
bad:
  strop_scheduler_free(*out);
  *out = NULL;
  return fail(s, "schedule");
}

static strop_status configure_trainer(ctx *c, strop_trainer *t) {
  const strop_recipe *r = c->r;
  const strop__ynode *L = section(r, "loss");
  strop_status s = STROP_OK;
  if ((s = apply_knobs(r, L, NULL, &strop__trainer_settings, "loss", t, set_trainer, NULL)))
    return fail(s, "loss");
  double w[256];
  int nw = 0;
  if ((s = strop__rd_floats(r, L, "class_weights", w, 256, &nw))) return s;
  if (nw) {
    float fw[256];
    for (int i = 0; i < nw; i++) fw[i] = (float)w[i];
    if ((s = strop_trainer_set_class_weights(t, fw, nw))) return fail(s, "loss");
  }
  return STROP_OK;
}

/* ---- progress forwarding ---- */
typedef struct fwd {
  ctx *c;
  strop_run *run;
} fwd;

static int on_progress(const strop_progress *p, void *u) {
  fwd *f = u;
  ctx *c = f->c;
  if (p->phase == STROP_PHASE_BATCH && c->log_every > 0 && p->step > 0) {
    if (p->step < c->log_step) c->log_step = 0; /* a new epoch: its running mean restarts */
    if (p->global_step % c->log_every == 0 && p->step > c->log_step) {
      double *row = new_step_row(f->run);
      if (row) { /* the history is for reports; a short one does not fail the run */
        const double n = (double)p->step, n0 = (double)c->log_step;
        row[SC_STAGE] = (double)c->stage;
        row[SC_DONE] = (double)f->run->hist_len + (p->steps > 0 ? n / (double)p->steps : 0);
        row[SC_EPOCH] = (double)p->epoch;
        row[SC_STEP] = (double)p->global_step;
        row[SC_LOSS] = n0 > 0 ? (n * p->loss - n0 * c->log_mean) / (n - n0) : p->loss;
        row[SC_LR] = p->lr;
        row[SC_TIME] = now_sec() - c->t0;
      }
      c->log_step = p->step;
      c->log_mean = p->loss;
    }
  }
  if (p->phase == STROP_PHASE_EPOCH_END) {
    c->log_step = 0;
    double *row = new_hist_row(f->run);
    if (row) {
      row[HC_STAGE] = (double)c->stage;
      row[HC_EPOCH] = (double)p->epoch;
      row[HC_TLOSS] = p->loss;
      row[HC_TACC] = p->metric;
      row[HC_VLOSS] = p->val_loss;
      row[HC_VACC] = p->val_metric;
      row[HC_LR] = p->lr;
      row[HC_TIME] = now_sec() - c->t0;
      row[HC_STEP] = (double)p->global_step;
    }
  }
  if (!c->o->on_event) return 0;
  strop_run_event e;
  memset(&e, 0, sizeof e);
  e.size = sizeof e;
  e.kind = STROP_EVENT_PROGRESS;
  e.stage = c->stage;
  e.stages = c->stages;
  e.name = c->stage_name;
  e.progress = p;
  e.test_loss = e.test_accuracy = NAN;
  return c->o->on_event(&e, c->o->user_data);
}

static int emit_event(ctx *c, int kind, const strop__stage_result *sr, strop_model *m) {
  if (!c->o->on_event) return 0;
  strop_run_event e;
  memset(&e, 0, sizeof e);
  e.size = sizeof e;
  e.kind = kind;
  e.stage = c->stage;
  e.stages = c->stages;
  e.name = c->stage_name;
  e.test_loss = sr ? sr->test[STROP_METRIC_LOSS] : NAN;
  e.test_accuracy = sr ? sr->test[STROP_METRIC_ACCURACY] : NAN;
  e.trainable = strop_model_param_count(m, 1);
  e.total = strop_model_param_count(m, 0);
  return c->o->on_event(&e, c->o->user_data);
}

/* A stage event's answer: 1 when the host stops the run. In a group, 1 on every rank when any
 * rank's host says so (a rank stopping alone would leave the others waiting in the stage). */
static int event_stops(ctx *c, int kind, const strop__stage_result *sr, strop_model *m) {
  double stop = emit_event(c, kind, sr, m) != 0;
  if (c->o->dist && strop__dist_sum_double(c->o->dist, FN, &stop, 1)) return 1;
  return stop > 0;
}

/* In a group, s as every rank sees it (strop__dist_agree): a rank that failed preparing a part
 * of the run (a file only it cannot read, out of memory) says so before the collective that
 * part ends in, which the others would wait in. Alone: s. */
static strop_status agree(ctx *c, strop_status s, const char *what) {
  return c->o->dist ? strop__dist_agree(c->o->dist, FN, s, what) : s;
}

/* Metrics of m on every sample of ds with the recipe's loss and deterministic transforms. */
static strop_status eval_metrics(ctx *c, strop_model *m, strop_dataset *ds, strop_metrics **out) {
  strop_batch_iter *it = NULL;
  strop_optimizer *opt = NULL;
  strop_trainer *t = NULL;
  strop_status s = make_iter(c, ds, 0, 0, &it);
  if (!s) s = strop_optimizer_create(m, STROP_OPTIM_SGD, &opt);
  if (!s) s = strop_trainer_create(m, opt, &t);
  if (!s) s = configure_trainer(c, t);
  if (c->o->dist) s = agree(c, s, "preparing the evaluation");
  if (!s && c->o->dist) s = strop_trainer_set_dist(t, c->o->dist); /* each rank a share */
  if (!s) s = strop_trainer_eval(t, it, out);
  strop_trainer_free(t);
  strop_optimizer_free(opt);
  strop_batch_iter_free(it);
  return s;
}

static strop_status evaluate(ctx *c, strop_model *m, strop_dataset *ds, double *into) {
  if (!ds) return STROP_OK;
  strop_metrics *mt = NULL;
  strop_status s = eval_metrics(c, m, ds, &mt);
  if (s) return fail(s, "evaluation");
  for (int k = 0; k < RUN_NM; k++) into[k] = strop_metrics_get(mt, k);
  strop_metrics_free(mt);
  return STROP_OK;
}

/* The most a frozen trunk's cached outputs may take, per data set. */
#define CACHE_MAX_BYTES ((size_t)512 << 20)

/* A head trained on the frozen trunk's outputs, computed once (see train/frozen.h). */
static strop_status frozen_head(ctx *c, strop_model *m, strop__frozen_head *fh) {
  memset(fh, 0, sizeof *fh);
  strop_batch_iter *it = NULL, *vit = NULL;
  strop_status s = make_iter(c, c->train, 0, 0, &it);
  if (!s && c->val) s = make_iter(c, c->val, 0, 0, &vit);
  if (!s) s = strop__frozen_head_build(m, it, c->train, vit, c->val, CACHE_MAX_BYTES, fh);
  strop_batch_iter_free(it);
  strop_batch_iter_free(vit);
  return s ? fail(s, "caching the frozen trunk's features") : STROP_OK;
}

/* The stage's epochs so far, from the trainer a checkpoint restored, as history rows. */
static void history_from_trainer(ctx *c, const strop_trainer *t) {
  for (int64_t e = 0; e < strop_trainer_history_len(t); e++) {
    double *row = new_hist_row(c->run);
    if (!row) return; /* the history is for reports; a short one does not fail the run */
    row[HC_STAGE] = (double)c->stage;
    row[HC_EPOCH] = (double)e;
    row[HC_TLOSS] = strop_trainer_history(t, e, STROP_METRIC_LOSS);
    row[HC_TACC] = strop_trainer_history(t, e, STROP_METRIC_ACCURACY);
    row[HC_VLOSS] = strop_trainer_history(t, e, 100 + STROP_METRIC_LOSS);
    row[HC_VACC] = strop_trainer_history(t, e, 100 + STROP_METRIC_ACCURACY);
  }
}

/* Without train.memory_limit_mb, a stage's step is checked against the machine's limit
 * (strop_memory_available) only when that limit is tight: below twice what a step could hold
 * by a count that plans nothing (strop__model_memory_bound: weights, gradients, optimizer
 * state, every activation) plus 256 MB for scratch. A run that plainly fits plans nothing and
 * changes nothing. */
static strop_status memory_is_tight(strop_model *m, int64_t batch, int slots, int *tight) {
  size_t room = 0, w = 0, g = 0, a = 0;
  *tight = 0;
  if (strop_memory_available(&room, NULL, 0) != STROP_OK)
    return STROP_OK; /* no limit can be read: nothing to check against */
  strop_status s = strop__model_memory_bound(FN, m, batch, &w, &g, &a);
  if (s) return s;
  const double o = (double)g * slots;
  const double need = 2.0 * ((double)g + o + (double)a) + (double)w + 256e6;
  *tight = (double)room + (double)w < need;
  return STROP_OK;
}

/* One stage: its surgery, a fresh optimizer/schedule, fit, then test evaluation. With resume,
 * the trainer first takes the state output.checkpoint holds (c->resume_path). */
static strop_status run_stage(ctx *c, strop_model *m, const strop__ynode *st, int64_t epochs,
                              uint64_t stage_seed, int resume, strop__stage_result *sr) {
  const strop_recipe *r = c->r;
  strop_status s;
  if (c->o->epochs_cap > 0 && epochs > c->o->epochs_cap) epochs = c->o->epochs_cap;
  if (event_stops(c, STROP_EVENT_STAGE_START, NULL, m))
    return strop__err(STROP_E_CANCELLED, "%s: stopped by the host before stage '%s'", FN,
                      c->stage_name);
  /* in a group, a failure before the weights' broadcast (set_dist) or before fit is told at
   * the next of the two agreements below (at done: when this rank failed between them) */
  int untold = c->o->dist != NULL;
  strop_batch_iter *it = NULL, *vit = NULL;
  strop_optimizer *opt = NULL;
  strop_scheduler *sch = NULL;
  strop_trainer *t = NULL;
  const strop__ynode *top = section(r, "train"), *tst = sub(st, "train");
  /* A frozen, deterministic trunk computes the same features every epoch: compute them once
   * and train the rest of the model on them (unless augmentation makes the inputs random).
   * Not for text: its batches carry padding masks the trunk and the head both need, and a
   * language model's targets are per token, which the cached dataset does not keep. */
  strop__frozen_head fh = {0};
  int cache = 1;
  int64_t ckpt_every = 0;
  if ((s = rd2_bool(r, top, tst, "cache_frozen", &cache)) ||
      (s = rd2_int(r, top, tst, "checkpoint_every", &ckpt_every)))
    goto done;
  if (cache && !c->text_task && c->hflip <= 0 && c->crop[0] <= 0 && c->rrc[0] <= 0 &&
      c->jitter[0] <= 0 && c->jitter[1] <= 0 && c->jitter[2] <= 0 && c->jitter[3] <= 0 &&
      ckpt_every <= 0 && !resume && strop__frozen_head_possible(m) &&
      (s = frozen_head(c, m, &fh)))
    goto done;
  strop_model *tm = fh.head ? fh.head : m, *head = fh.head;
  strop_dataset *ftrain = fh.train, *fval = fh.val;
  if ((s = make_iter_raw(c, head ? ftrain : c->train, 1, stage_seed, head != NULL, &it)))
    goto done;
  if (c->val && (s = make_iter_raw(c, head ? fval : c->val, 0, 0, head != NULL, &vit))) goto done;
  if ((s = build_optimizer(c, tm, sub(st, "optimizer"), &opt))) goto done;
  int per_epoch = 0;
  if ((s = build_schedule(c, opt, sub(st, "schedule"), strop_batch_iter_num_batches(it), epochs,
                          &sch, &per_epoch)))
    goto done;
  if ((s = strop_trainer_create(tm, opt, &t))) goto done;
  if ((s = configure_trainer(c, t))) goto done;
  /* data parallel: the ranks start from rank 0's weights; only rank 0 writes checkpoints */
  if (c->o->dist && ((s = agree(c, STROP_OK, "preparing the stage")) ||
                     (s = strop_trainer_set_dist(t, c->o->dist)))) {
    untold = 0;
    goto done;
  }
  if ((s = apply_knobs(r, top, tst, &strop__trainer_settings, "update", t, set_trainer, NULL))) {
    fail(s, "train");
    goto done;
  }
  if (sch && ((s = strop_trainer_set_scheduler(t, sch)) ||
              (per_epoch >= 0 &&
               (s = strop_trainer_set_int(t, STROP_TRAIN_SCHED_PER_EPOCH, per_epoch)))))
    goto done;
  /* train.memory_limit_mb: a step that would not fit is refused before training, saying what
   * would make it fit; auto (and no key, when the machine's limit is tight) takes the limit
   * from the machine (with 0). Planned once the trainer is set, as it will run the step: its
   * loss, its accumulation (strop_trainer_check_memory) */
  double limit_mb = 0;
  const char *lim_word = rd2_str(top, tst, "memory_limit_mb");
  const int lim_auto = lim_word && !strcmp(lim_word, "auto");
  if (!lim_auto && (s = rd2_float(r, top, tst, "memory_limit_mb", &limit_mb))) goto done;
  const int slots = strop__optim_values_per_param(opt);
  int check = lim_auto || limit_mb > 0;
  if (!lim_word && (s = memory_is_tight(tm, c->batch, slots, &check))) goto done;
  if (check &&
      (s = strop_trainer_check_memory(t, c->batch, NULL, 0,
                                      lim_auto || !lim_word ? 0 : (size_t)(limit_mb * 1e6)))) {
    char rest[1024], val[32];
    const strop__ynode *at = strop__ynode_get(tst ? tst : top, "memory_limit_mb");
    if (!at) at = strop__ynode_get(top, "memory_limit_mb");
    snprintf(val, sizeof val, lim_word ? (lim_auto ? "auto" : "%g") : "(not set: auto)",
             limit_mb);
    s = strop__recipe_err(FN, r, at ? at : top, s, "'train.memory_limit_mb' %s, stage '%s': %s",
                          val, c->stage_name, sentence_after_fn(rest));
    goto done;
  }
  strop_fit_options fo;
  strop_fit_options_init(&fo);
  fo.epochs = epochs;
  double min_delta = 0;
  int64_t patience = 0, max_steps = 0;
  int restore_best = 0;
  c->log_every = 0;
  if ((s = rd2_float(r, top, tst, "min_delta", &min_delta)) ||
      (s = rd2_int(r, top, tst, "patience", &patience)) ||
      (s = rd2_int(r, top, tst, "max_steps", &max_steps)) ||
      (s = rd2_int(r, top, tst, "log_every", &c->log_every)) ||
      (s = rd2_bool(r, top, tst, "restore_best", &restore_best)))
    goto done;
  const char *mon = rd2_str(top, tst, "monitor");
  fo.monitor = !mon ? (c->val ? STROP_MONITOR_VAL_LOSS : STROP_MONITOR_TRAIN_LOSS)
               : !strcmp(mon, "val_accuracy") ? STROP_MONITOR_VAL_ACCURACY
               : !strcmp(mon, "train_loss")   ? STROP_MONITOR_TRAIN_LOSS
                                              : STROP_MONITOR_VAL_LOSS;
  fo.patience = patience;
  fo.min_delta = min_delta;
  fo.restore_best = restore_best;
  fo.max_steps = max_steps;
  char ckpt[1200];
  const strop__ynode *out = section(r, "output");
  if (c->o->write_outputs && !sr->baseline && ckpt_every > 0 && out &&
      strop__run_out_path(r, out, "checkpoint", ckpt, sizeof ckpt)) {
    /* the checkpoint names its stage, so a resumed run knows where to continue */
    char tag[96];
    snprintf(tag, sizeof tag, "%lld:%s", (long long)c->stage, c->stage_name);
    if ((s = strop__trainer_set_checkpoint_meta(t, "recipe.stage", tag))) goto done;
    fo.checkpoint_every = ckpt_every;
    fo.checkpoint_path = ckpt;
  }
  if (resume) {
    if ((s = strop_trainer_load_checkpoint(t, c->resume_path))) {
      fail(s, "resuming");
      goto done;
    }
    history_from_trainer(c, t);
  }
  c->log_step = 0;
  if (c->log_every > c->run->log_every) c->run->log_every = c->log_every;
  fwd f = {c, c->run};
  fo.progress = on_progress;
  fo.user_data = &f;
  untold = 0; /* fit and the evaluations after it agree by themselves */
  if ((s = agree(c, STROP_OK, "preparing the stage's training"))) goto done;
  s = strop_trainer_fit(t, it, vit, &fo);
  if (s) {
    if (s != STROP_E_CANCELLED) fail(s, c->stage_name);
    goto done;
  }
  if (!sr->baseline) c->run->info[STROP_INFO_BEST_EPOCH] = strop_trainer_best_epoch(t);
  /* the trained head goes back into the model */
  if (head && (s = strop__frozen_head_commit(&fh, m))) goto done;
  if ((s = evaluate(c, m, c->test, sr->test))) goto done;
  if ((s = evaluate(c, m, c->val, sr->val))) goto done;
  if (event_stops(c, STROP_EVENT_STAGE_END, sr, m))
    s = strop__err(STROP_E_CANCELLED, "%s: stopped by the host after stage '%s'", FN,
                   c->stage_name);
done:
  if (s && untold) (void)agree(c, s, "preparing the stage");
  strop_trainer_free(t);
  strop_scheduler_free(sch);
  strop_optimizer_free(opt);
  strop_batch_iter_free(it);
  strop_batch_iter_free(vit);
  strop__frozen_head_free(&fh);
  return s;
}

/* The name of stage i (the stage's name:, else "stage<i+1>"; "train" without stages). */
static void stage_name(const strop__ynode *stages, int64_t i, char name[64]) {
  const char *nm = stages ? strop__rd_str(stages->kids[i], "name") : NULL;
  if (nm) snprintf(name, 64, "%s", nm);
  else if (stages) snprintf(name, 64, "stage%lld", (long long)i + 1);
  else snprintf(name, 64, "train");
}

/* With resume (the option or output.resume), finds which stage output.checkpoint belongs to:
 * c->resume_stage, or -1 when there is no checkpoint yet (the run starts from the beginning). */
static strop_status find_resume_point(ctx *c, int resume) {
  const strop_recipe *r = c->r;
  const strop__ynode *out = section(r, "output");
  strop_status s = strop__rd_bool(r, out, "resume", &resume);
  if (s || !resume) return s;
  const strop__ynode *stages = section(r, "stages");
  int64_t n_stages = stages ? stages->n : 1;
  if (!out || !strop__run_out_path(r, out, "checkpoint", c->resume_path, sizeof c->resume_path))
    return strop__recipe_err(FN, r, out ? out : r->root, STROP_E_FORMAT,
                             "resuming needs "
                             "'output.checkpoint' (written every train.checkpoint_every steps)");
  if (access(c->resume_path, F_OK) != 0) {
    strop__log(STROP_LOG_INFO, "%s: no checkpoint %s yet: starting from the beginning", FN,
               c->resume_path);
    return STROP_OK;
  }
  strop__ckpt *ck = NULL;
  if ((s = strop__ckpt_open(FN, c->resume_path, &ck))) return fail(s, "resuming");
  const char *tag = strop__ckpt_meta(ck, "recipe.stage");
  char *end = NULL, name[64] = "";
  long long k = tag ? strtoll(tag, &end, 10) : -1;
  if (k >= 0 && k < n_stages) stage_name(stages, k, name);
  if (!tag || end == tag || *end != ':')
    s = strop__err(STROP_E_FORMAT,
                   "%s: resuming: %s was not written by a recipe run (no "
                   "\"recipe.stage\" metadata); remove it to start afresh",
                   FN, c->resume_path);
  else if (k < 0 || k >= n_stages)
    s = strop__err(STROP_E_FORMAT,
                   "%s: resuming: %s belongs to stage %lld, the recipe has %lld "
                   "stage(s)",
                   FN, c->resume_path, k + 1, (long long)n_stages);
  else if (strcmp(end + 1, name) != 0)
    s = strop__err(STROP_E_FORMAT,
                   "%s: resuming: %s was written by stage '%.60s', the recipe's "
                   "stage %lld is '%s'",
                   FN, c->resume_path, end + 1, k + 1, name);
  else c->resume_stage = k;
  strop__ckpt_close(ck);
  return s;
}

strop_status strop__recipe_build_model(const strop_recipe *r, int mode, strop_model **out) {
  strop_run_options o;
  strop_run_options_init(&o);
  o.mode = mode;
  ctx c;
  memset(&c, 0, sizeof c);
  c.r = r;
  c.o = &o;
  return build_model(&c, out);
}

/* A classification head must give one output per class (per target position): checked when
 * the model and the data are known, before anything trains, instead of at the first step's
 * loss. Other losses (regression, multi-label) are left to the trainer. */
static strop_status check_head(ctx *c, const strop_model *m) {
  const strop_recipe *r = c->r;
  const strop__ynode *L = section(r, "loss");
  const char *kind = strop__rd_str(L, "kind");
  if (c->classes <= 0 || (kind && strcmp(kind, "cross_entropy"))) return STROP_OK;
  int64_t dims[8];
  int rank = strop_model_output_shape(m, dims, 8);
  if (rank < 1 || rank > 8 || dims[rank - 1] == c->classes) return STROP_OK;
  char node[128] = "";
  if (strop_model_node_info(m, strop_model_num_nodes(m) - 1, 0, node, sizeof node) < 0)
    node[0] = 0;
  const strop__ynode *d = section(r, "data");
  const strop__ynode *at = sub(d, "classes")       ? sub(d, "classes")
                           : sub(d, "num_classes") ? sub(d, "num_classes")
                                                   : d;
  return strop__recipe_err(
      FN, r, at, STROP_E_SHAPE,
      "the data has %lld classes but the model's output '%s' has %lld values "
      "per sample; a cross_entropy head needs one per class (out_features: %lld)",
      (long long)c->classes, node, (long long)dims[rank - 1], (long long)c->classes);
}

/* ---- what the model needs to be used (docs/formats.md, model metadata) ---- */

/* The name of class k of the model's outputs (source label `label`): data.class_names, else
 * the source's own names (CSV label strings); NULL when unknown or not UTF-8. */
static const char *class_name(ctx *c, int64_t k, int64_t label, char *buf, size_t cap) {
  const strop__ynode *cn = sub(section(c->r, "data"), "class_names");
  if (cn) return label < cn->n ? cn->kids[label]->text : NULL;
  int len = strop_dataset_class_name(c->train, k, buf, cap);
  if (len < 0 || (size_t)len >= cap || !strop__utf8_valid(buf, (size_t)len)) return NULL;
  return buf;
}

static const char *mode_word(int mode) {
  return mode == STROP_RESIZE_NEAREST       ? "nearest"
         : mode == STROP_RESIZE_BILINEAR_AA ? "bilinear_aa"
                                            : "bilinear";
}

/* Sets key to the buffer's text (NULL: removes it), reporting an allocation failure. */
static strop_status put_meta(strop_model *m, const char *key, strop__sbuf *b, int set) {
  if (set && b->oom) return STROP__NOMEM(FN);
  strop_status s = strop_model_set_meta(m, key, set ? b->s : NULL);
  b->n = 0;
  if (b->s) b->s[0] = '\0';
  return s;
}

/* Writes into the model's metadata what the data section does to the inputs at evaluation
 * (scale, resize, normalize, in that order, on samples of input.shape) and what its outputs
 * are (the classes: source label and name). strop_model_predict and `strop predict` apply
 * them. Keys the run does not set are removed, so a model fine-tuned from one that had them
 * keeps none that no longer hold. */
static strop_status record_meta(ctx *c, strop_model *m) {
  strop__sbuf b = {0};
  strop_status s;
  int64_t dims[8];
  int rank = strop_dataset_input_shape(c->train, dims, 8);
  strop__sbuf_puts(&b, "[");
  for (int i = 0; i < rank && i < 8; i++)
    strop__sbuf_printf(&b, "%s%lld", i ? ", " : "", (long long)dims[i]);
  strop__sbuf_puts(&b, "]");
  if ((s = put_meta(m, "input.shape", &b, 1))) goto done;
  strop__sbuf_printf(&b, "%.17g", c->scale);
  if ((s = put_meta(m, "input.scale", &b, c->scale != 1.0))) goto done;
  if (c->resize[0] > 0)
    strop__sbuf_printf(&b, "{\"size\": [%lld, %lld], \"mode\": \"%s\"}", (long long)c->resize[0],
                       (long long)c->resize[1], mode_word(c->resize_mode));
  else if (c->max_size > 0)
    strop__sbuf_printf(&b, "{\"shorter\": %lld, \"max_size\": %lld, \"mode\": \"%s\"}",
                       (long long)c->resize_shorter, (long long)c->max_size,
                       mode_word(c->shorter_mode));
  else
    strop__sbuf_printf(&b, "{\"shorter\": %lld, \"mode\": \"%s\"}", (long long)c->resize_shorter,
                       mode_word(c->shorter_mode));
  if ((s = put_meta(m, "input.resize", &b, c->resize[0] > 0 || c->resize_shorter > 0))) goto done;
  strop__sbuf_printf(&b, "{\"size\": [%lld, %lld]}", (long long)c->center_crop[0],
                     (long long)c->center_crop[1]);
  if ((s = put_meta(m, "input.center_crop", &b, c->center_crop[0] > 0))) goto done;
  for (int part = 0; part < 2; part++) {
    strop__sbuf_puts(&b, part ? "], \"std\": [" : "{\"mean\": [");
    for (int64_t i = 0; i < c->n_norm; i++)
      strop__sbuf_printf(&b, "%s%.9g", i ? ", " : "", (double)(part ? c->std[i] : c->mean[i]));
  }
  strop__sbuf_puts(&b, "]}");
  if ((s = put_meta(m, "input.normalize", &b, c->have_norm))) goto done;
  /* one entry per output: [{"label": 5, "name": "Sandal"}, ...] */
  strop__sbuf_puts(&b, "[");
  for (int64_t k = 0; k < c->classes && !b.oom && b.n <= STROP_META_VALUE_MAX; k++) {
    int64_t label = k < c->n_kept ? c->kept[k] : k;
    char nb[256];
    const char *name = class_name(c, k, label, nb, sizeof nb);
    strop__sbuf_printf(&b, "%s{\"label\": %lld", k ? ", " : "", (long long)label);
    if (name) {
      strop__sbuf_puts(&b, ", \"name\": ");
      strop__sbuf_json_str(&b, name);
    }
    strop__sbuf_puts(&b, "}");
  }
  strop__sbuf_puts(&b, "]");
  /* more classes than the metadata may hold: the model goes without their list; a language
   * model's outputs are its vocabulary, which input.tokenizer names */
  s = put_meta(
      m, "classes", &b,
      c->classes > 0 && b.n <= STROP_META_VALUE_MAX && c->text_task <= 1 + STROP_TEXT_CLASSIFY);
  if (s) goto done;
  if (c->text_task) {
    static const char *const tasks[] = {"classify", "causal_lm", "prompt_response"};
    strop__sbuf_puts(&b, "{\"path\": ");
    strop__sbuf_json_str(&b, c->tokenizer);
    strop__sbuf_printf(
        &b, ", \"max_length\": %lld, \"task\": \"%s\"%s}", (long long)c->text_len,
        tasks[c->text_task - 1],
        c->text_padding == STROP_PAD_MAX_LENGTH ? ", \"padding\": \"max_length\"" : "");
  }
  s = put_meta(m, "input.tokenizer", &b, c->text_task != 0);
done:
  strop__sbuf_free(&b);
  return s ? fail(s, "recording the model's metadata") : STROP_OK;
}

/* ---- the run ---- */
strop_status strop_recipe_run(const strop_recipe *r, const strop_run_options *user_o,
                              strop_run **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", FN);
  *out = NULL;
  if (!r) return strop__err(STROP_E_INVALID_ARG, "%s: recipe is NULL", FN);
  strop_run_options o;
  strop_run_options_init(&o);
  strop_status st0 = strop__options_in(FN, "strop_run_options_init", &o, sizeof o, user_o);
  if (st0) return st0;
  strop_run *run = strop__calloc(1, sizeof *run);
  if (!run) return STROP__NOMEM(FN);
  for (int i = 0; i < 9; i++) run->info[i] = 0;
  run->info[STROP_INFO_BEST_EPOCH] = -1;
  ctx c;
  memset(&c, 0, sizeof c);
  c.r = r;
  c.o = &o;
  c.run = run;
  c.t0 = now_sec();
  int64_t seed = 0;
  strop_status s = strop__rd_int(r, r->root, "seed", &seed);
  c.seed = (uint64_t)seed;
  c.resume_stage = -1;
  /* in a group only rank 0 writes (the others would write the same files); all ranks learn
   * whether it can */
  const int writer = strop_dist_rank(o.dist) == 0;
  /* a folder that cannot take the outputs fails now, not after the training */
  if (!s && o.write_outputs)
    s = strop__dist_agree(o.dist, FN, writer ? strop__run_prepare_outputs(r) : STROP_OK,
                          "preparing the output folder");
  if (!s) s = find_resume_point(&c, o.resume);
  strop_model *m = NULL;
  if (!s) s = build_model(&c, &m);
  if (!s) s = set_frozen_dtype(&c, m);
  if (!s) s = load_data(&c);
  if (!s) s = add_head(&c, m);
  if (!s) s = apply_surgery(&c, m, section(r, "surgery"), c.seed + 17, "surgery");
  if (!s) s = set_checkpointing(&c, m);
  if (!s) s = set_compute_dtype(&c, m);
  if (!s) s = set_weight_cache(&c, m);
  if (!s) s = set_attention(&c, m);
  if (!s) s = check_head(&c, m);
  if (!s) s = record_meta(&c, m);
  s = agree(&c, s, "loading the model and the data");
  /* stages */
  const strop__ynode *stages = section(r, "stages");
  int64_t n_stages = stages ? stages->n : 1;
  int scratch = 0;
  const strop__ynode *bl = section(r, "baselines");
  for (int i = 0; o.baselines && bl && i < bl->n; i++)
    scratch |= !strcmp(bl->kids[i]->text, "scratch");
  c.stages = n_stages + scratch;
  int64_t total_epochs = 0;
  strop_model *initial = NULL; /* the architecture before training, for the scratch baseline */
  if (!s && scratch && (s = strop_model_clone(m, &initial))) fail(s, "baselines");
  for (int64_t i = 0; !s && i < n_stages; i++) {
    const strop__ynode *st = stages ? stages->kids[i] : NULL;
    int64_t epochs = 10;
    if ((s = strop__rd_int(r, section(r, "train"), "epochs", &epochs))) break;
    if (st && (s = strop__rd_int(r, st, "epochs", &epochs))) break;
    total_epochs += epochs;
    char name[64];
    stage_name(stages, i, name);
    strop__stage_result *sr = new_stage(run, name, 0);
    if (!sr) s = STROP__NOMEM(FN);
    c.stage = i;
    c.stage_name = sr ? sr->name : c.stage_name;
    if (!s && st)
      s = apply_surgery(&c, m, sub(st, "surgery"), c.seed + 31 * (uint64_t)(i + 1), name);
    if (!s && i >= c.resume_stage) s = check_head(&c, m);
    if ((s = agree(&c, s, "preparing the stage"))) break;
    if (i < c.resume_stage) continue; /* done before the checkpoint: its surgery only */
    s = run_stage(&c, m, st, epochs, c.seed + 1000 * (uint64_t)(i + 1), i == c.resume_stage, sr);
  }
  run->model = m;
  run->info[STROP_INFO_TRAINABLE] = strop_model_param_count(m, 1);
  run->info[STROP_INFO_TOTAL] = strop_model_param_count(m, 0);
  /* the scratch baseline: the same architecture, fresh weights, everything trainable,
   * the top-level optimizer and as many epochs as all stages together */
  if (!s && scratch) {
    strop__stage_result *sr = new_stage(run, "scratch", 1);
    if (!sr) s = STROP__NOMEM(FN);
    if (!s) s = strop_model_reinit(initial, c.seed + 99);
    if (!s) {
      c.stage = n_stages;
      c.stage_name = sr->name;
      s = run_stage(&c, initial, NULL, total_epochs, c.seed + 5000, 0, sr);
    }
  }
  strop_model_free(initial);
  run->info[STROP_INFO_STAGES] = run->n_st;
  run->info[STROP_INFO_EPOCHS] = run->hist_len;
  run->seconds = now_sec() - c.t0; /* before the outputs, so report.json has it */
  if (!s && o.write_outputs)
    s = strop__dist_agree(o.dist, FN, writer ? strop__run_write_outputs(r, run) : STROP_OK,
                          "writing the outputs");
  strop_dataset_free(c.train);
  strop_dataset_free(c.val);
  strop_dataset_free(c.test);
  if (!run->model && !run->n_st) {
    strop_run_free(run);
    return s;
  }
  *out = run;
  return s;
}

strop_status strop_recipe_evaluate(const strop_recipe *r, strop_model *model, int which,
                                   strop_metrics **out) {
  static const char fn[] = "strop_recipe_evaluate";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!r || !model)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, r ? "model" : "recipe");
  if (which < STROP_SPLIT_TRAIN || which > STROP_SPLIT_TEST)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown split %d", fn, which);
  strop_run_options o;
  strop_run_options_init(&o);
  strop_run *run = strop__calloc(1, sizeof *run);
  if (!run) return STROP__NOMEM(fn);
  ctx c;
  memset(&c, 0, sizeof c);
  c.r = r;
  c.o = &o;
  c.run = run;
  int64_t seed = 0;
  strop_status s = strop__rd_int(r, r->root, "seed", &seed);
  c.seed = (uint64_t)seed;
  if (!s) s = load_data(&c);
  strop_dataset *ds = which == STROP_SPLIT_TEST  ? c.test
                      : which == STROP_SPLIT_VAL ? c.val
                                                 : c.train;
  if (!s && !ds)
    s = strop__err(STROP_E_NOT_FOUND, "%s: %s: the recipe's data has no %s set", fn, r->file,
                   which == STROP_SPLIT_TEST ? "test" : "validation");
  if (!s) s = eval_metrics(&c, model, ds, out);
  strop_dataset_free(c.train);
  strop_dataset_free(c.val);
  strop_dataset_free(c.test);
  strop_run_free(run);
  return s;
}
