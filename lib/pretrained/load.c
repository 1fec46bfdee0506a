/* SPDX-License-Identifier: MIT */
/* strop — strop_model_load_pretrained: find the checkpoint's files (a folder's config.json and
 * model.safetensors or its shards, or one file), pick the architecture, let its adapter build
 * the graph with the checkpoint's names, and load every tensor through the one weight loader
 * (strict, dtype conversion, prefixes and non-parameter tensors as the adapter says). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/sbuf.h"
#include "io/io_internal.h"
#include "pretrained/pretrained.h"

#define CONFIG_MAX_BYTES ((size_t)4 << 20)
#define INDEX_MAX_BYTES ((size_t)64 << 20)
#define MAX_SHARDS 4096

void strop_pretrained_options_init(strop_pretrained_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->flags = STROP_LOAD_STRICT;
}

int strop__pt_shape(const strop__pt_ctx *c, const strop__arch *a, const char *name, int64_t *dims,
                    int cap) {
  char buf[512];
  for (int pass = -1; pass < 16; pass++) {
    const char *want = name;
    if (pass >= 0) {
      if (!a->prefixes || !a->prefixes[pass]) break;
      /* a file whose names lack the prefix the model's carry, or the other way round */
      const size_t l = strlen(a->prefixes[pass]);
      if (!strncmp(name, a->prefixes[pass], l)) snprintf(buf, sizeof buf, "%s", name + l);
      else snprintf(buf, sizeof buf, "%s%s", a->prefixes[pass], name);
      want = buf;
    }
    for (int k = 0; k < c->n_files; k++) {
      const strop__st_tensor *t = strop__st_find(c->files[k], want);
      if (!t) continue;
      for (int i = 0; i < t->rank && i < cap; i++) dims[i] = t->dims[i];
      return t->rank;
    }
  }
  return -1;
}

/* Everything a load holds, freed in one place. */
typedef struct job {
  const char *fn;
  char *config_path;
  char *config_text;
  strop__json json;
  int have_json;
  strop__st_file **files;
  int n_files;
} job;

static void job_free(job *j) {
  for (int k = 0; k < j->n_files; k++) strop__st_close(j->files[k]);
  strop__free(j->files);
  if (j->have_json) strop__json_free(&j->json);
  strop__free(j->config_text);
  strop__free(j->config_path);
}

static char *join(const char *dir, const char *name) {
  strop__sbuf b = {0};
  size_t l = strlen(dir);
  strop__sbuf_printf(&b, "%s%s%s", dir, l && dir[l - 1] == '/' ? "" : "/", name);
  if (b.oom) {
    strop__free(b.s);
    return NULL;
  }
  return b.s;
}

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static strop_status add_file(job *j, const char *path) {
  strop__st_file **v = strop__realloc(j->files, (size_t)(j->n_files + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(j->fn);
  j->files = v;
  strop_status st = strop__st_open(j->fn, path, &j->files[j->n_files]);
  if (st) return st;
  j->n_files++;
  return STROP_OK;
}

/* The shards model.safetensors.index.json names in its weight_map, each opened once. */
static strop_status open_shards(job *j, const char *dir, const char *index_path) {
  char *text = NULL;
  size_t len = 0;
  strop__json ix = {0};
  strop_status st = strop__read_file(j->fn, index_path, INDEX_MAX_BYTES, &text, &len);
  if (st) return st;
  if ((st = strop__json_parse(text, len, 0, 16, &ix))) {
    strop__err_prefix("%s: %s", j->fn, index_path);
    strop__free(text);
    return st;
  }
  const strop__jnode *root = &ix.nodes[0];
  const strop__jnode *wm = root->type == STROP__J_OBJ ? strop__json_get(&ix, root, "weight_map")
                                                      : NULL;
  if (!wm || wm->type != STROP__J_OBJ || wm->count == 0) {
    st = strop__err(STROP_E_FORMAT,
                    "%s: %s: 'weight_map' is missing or not an object of "
                    "tensor name -> shard file",
                    j->fn, index_path);
    goto done;
  }
  /* distinct shard names in order of first appearance */
  const char **names = strop__calloc((size_t)wm->count, sizeof *names);
  int n = 0;
  if (!names) {
    st = STROP__NOMEM(j->fn);
    goto done;
  }
  for (const strop__jnode *e = strop__json_at(&ix, wm->child); e;
       e = strop__json_at(&ix, e->next)) {
    if (e->type != STROP__J_STR || !e->len || strchr(e->str, '/') || !strcmp(e->str, "..")) {
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: weight_map['%s'] must name a shard file in the "
                      "folder",
                      j->fn, index_path, e->key);
      break;
    }
    int seen = 0;
    for (int k = 0; k < n && !seen; k++) seen = !strcmp(names[k], e->str);
    if (!seen) names[n++] = e->str;
  }
  if (!st && n > MAX_SHARDS)
    st = strop__err(STROP_E_FORMAT, "%s: %s: %d shards (at most %d)", j->fn, index_path, n,
                    MAX_SHARDS);
  for (int k = 0; !st && k < n; k++) {
    char *p = join(dir, names[k]);
    if (!p) {
      st = STROP__NOMEM(j->fn);
      break;
    }
    if (!is_file(p))
      st = strop__err(STROP_E_IO, "%s: shard '%s' listed in %s is missing", j->fn, names[k],
                      index_path);
    else st = add_file(j, p);
    strop__free(p);
  }
  /* every tensor the index places in a shard is there */
  for (const strop__jnode *e = strop__json_at(&ix, wm->child); !st && e;
       e = strop__json_at(&ix, e->next)) {
    int k = 0;
    while (k < n && strcmp(names[k], e->str)) k++;
    if (!strop__st_find(j->files[k], e->key))
      st = strop__err(STROP_E_FORMAT, "%s: %s places '%s' in shard '%s', which lacks it", j->fn,
                      index_path, e->key, e->str);
  }
  strop__free(names);
done:
  strop__json_free(&ix);
  strop__free(text);
  return st;
}

static strop_status read_config(job *j) {
  size_t len = 0;
  strop_status st = strop__read_file(j->fn, j->config_path, CONFIG_MAX_BYTES, &j->config_text,
                                     &len);
  if (st) return st;
  if ((st = strop__json_parse(j->config_text, len, 0, 32, &j->json))) {
    strop__err_prefix("%s: %s", j->fn, j->config_path);
    return st;
  }
  j->have_json = 1;
  if (j->json.nodes[0].type != STROP__J_OBJ)
    return strop__err(STROP_E_FORMAT, "%s: %s is not a JSON object", j->fn, j->config_path);
  return STROP_OK;
}

static strop_status open_folder(job *j, const char *dir) {
  strop_status st;
  if (!(j->config_path = join(dir, "config.json"))) return STROP__NOMEM(j->fn);
  if (is_file(j->config_path)) {
    if ((st = read_config(j))) return st;
  } else {
    strop__free(j->config_path);
    j->config_path = NULL;
  }
  char *single = join(dir, "model.safetensors");
  char *index = join(dir, "model.safetensors.index.json");
  if (!single || !index) st = STROP__NOMEM(j->fn);
  else if (is_file(single)) st = add_file(j, single);
  else if (is_file(index)) st = open_shards(j, dir, index);
  else {
    char *bin = join(dir, "pytorch_model.bin");
    st = strop__err(STROP_E_IO,
                    "%s: %s has neither model.safetensors nor "
                    "model.safetensors.index.json%s",
                    j->fn, dir,
                    bin && is_file(bin) ? " (pytorch_model.bin is a pickle, which strop does not "
                                          "read: save the model with safetensors)"
                                        : "");
    strop__free(bin);
  }
  strop__free(single);
  strop__free(index);
  return st;
}

static strop_status unknown_arch(const char *fn, const char *what, const char *where) {
  strop__sbuf b = {0};
  for (int i = 0; i < strop__arch_count(); i++) {
    const strop__arch *a = strop__arch_at(i);
    strop__sbuf_printf(&b, "%s%s", i ? ", " : "", a->name);
    for (const char *const *h = a->hf_names; h && *h; h++) strop__sbuf_printf(&b, ", %s", *h);
  }
  strop_status st = strop__err(STROP_E_UNSUPPORTED,
                               "%s: %s%s%s is not an architecture strop "
                               "knows (it knows %s)",
                               fn, where ? where : "", where ? ": " : "", what,
                               b.s && !b.oom ? b.s : "?");
  strop__free(b.s);
  return st;
}

/* What config.json names, for the message when no architecture serves it. */
static const char *config_names(const strop__json *js, char *buf, size_t cap) {
  const strop__jnode *root = &js->nodes[0];
  const strop__jnode *a = strop__json_get(js, root, "architectures");
  const strop__jnode *mt = strop__json_get(js, root, "model_type");
  buf[0] = '\0';
  if (a && a->type == STROP__J_ARR && a->count > 0) {
    const strop__jnode *e = strop__json_at(js, a->child);
    snprintf(buf, cap, "architectures '%s'", e->type == STROP__J_STR ? e->str : "?");
  }
  if (mt && mt->type == STROP__J_STR) {
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%smodel_type '%s'", l ? " with " : "", mt->str);
  }
  if (!buf[0]) snprintf(buf, cap, "a config without 'architectures' or 'model_type'");
  return buf;
}

strop_status strop_model_load_pretrained(const char *path, const char *arch_name,
                                         const strop_pretrained_options *opt_in,
                                         strop_model **out, strop_load_report **report_out) {
  static const char fn[] = "strop_model_load_pretrained";
  if (out) *out = NULL;
  if (report_out) *report_out = NULL;
  if (!path || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, path ? "out" : "path");
  strop_pretrained_options opt;
  strop_pretrained_options_init(&opt);
  strop_status st = strop__options_in(fn, "strop_pretrained_options_init", &opt, sizeof opt,
                                      opt_in);
  if (st) return st;
  if (opt.flags & ~(STROP_LOAD_PARTIAL | STROP_LOAD_MMAP | STROP_LOAD_FROZEN))
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, (unsigned)opt.flags);
  if (opt.image_size < 0 || opt.image_size > 65536 || opt.max_length < 0 ||
      opt.max_length > ((int64_t)1 << 24))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: image_size must be in [0, 65536] and "
                      "max_length in [0, 16777216] (0: the architecture's own)",
                      fn);
  if (opt.frozen_dtype != STROP_DTYPE_F32 && opt.frozen_dtype != STROP_DTYPE_BF16 &&
      opt.frozen_dtype != STROP_DTYPE_INT8)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: frozen_dtype must be STROP_DTYPE_F32 (0), STROP_DTYPE_BF16 (1) or "
                      "STROP_DTYPE_INT8 (2), got %d",
                      fn, opt.frozen_dtype);
  if (opt.int8_group != 0 && (opt.int8_group < 8 || opt.int8_group > 65536))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: int8_group must be 0 (one scale per output channel) or in "
                      "[8, 65536], got %lld",
                      fn, (long long)opt.int8_group);
  const strop__arch *a = NULL;
  if (arch_name && !(a = strop__arch_find(arch_name))) return unknown_arch(fn, arch_name, NULL);

  job j = {.fn = fn};
  struct stat sb;
  if (stat(path, &sb) != 0) {
    st = strop__err(STROP_E_IO, "%s: %s: no such file or folder", fn, path);
  } else if (S_ISDIR(sb.st_mode)) {
    st = open_folder(&j, path);
  } else {
    st = add_file(&j, path);
    if (!st && !a)
      st = strop__err(STROP_E_INVALID_ARG,
                      "%s: %s is a single safetensors file, which does not "
                      "say its architecture: name it (strop_pretrained_arch_name() lists them)",
                      fn, path);
  }
  if (!st && !a) {
    if (!j.have_json) {
      st = strop__err(STROP_E_INVALID_ARG,
                      "%s: %s has no config.json to say its architecture: "
                      "name it",
                      fn, path);
    } else if (!(a = strop__arch_for_config(&j.json, &j.json.nodes[0]))) {
      char what[300];
      st = unknown_arch(fn, config_names(&j.json, what, sizeof what), j.config_path);
    }
  }
  strop_model *m = NULL;
  if (!st) {
    strop__pt_ctx c = {
        .fn = fn,
        .arch = a->name,
        .config_path = j.config_path,
        .json = j.have_json ? &j.json : NULL,
        .cfg = j.have_json ? &j.json.nodes[0] : NULL,
        .opt = &opt,
        .files = (const strop__st_file *const *)j.files,
        .n_files = j.n_files,
    };
    st = a->build(&c, &m);
  }
  /* a strict load overwrites every parameter, so only a partial one initialises; a strict
   * mapped one allocates nothing before the load (what it borrows never needs memory) */
  const int partial = (opt.flags & STROP_LOAD_PARTIAL) != 0;
  if (!st)
    st = strop__model_finalize(m, opt.seed, partial ? 1 : opt.flags & STROP_LOAD_MMAP ? -1 : 0);
  if (!st) {
    m->frozen_dtype = opt.frozen_dtype; /* read by the load; converted by the store below */
    m->int8_group = opt.int8_group;
    if (opt.flags & STROP_LOAD_FROZEN)
      for (int i = 0; i < m->n_params; i++) m->params[i]->trainable = 0;
    const strop__load_names nm = {.prefixes = a->prefixes, .ignore = a->ignore};
    st = strop__model_load_files(fn, m, (const strop__st_file *const *)j.files, j.n_files,
                                 opt.flags & ~STROP_LOAD_FROZEN, &nm, report_out);
  }
  /* frozen as strop_model_freeze() freezes (batch norm statistics too), and every frozen
   * weight in the frozen dtype */
  if (!st && (opt.flags & STROP_LOAD_FROZEN)) st = strop_model_freeze(m, "*");
  else if (!st && opt.frozen_dtype) st = strop_model_set_frozen_dtype(m, opt.frozen_dtype);
  /* what strop_model_save_pretrained needs to write the folder back */
  if (!st) st = strop__meta_set(&m->meta, fn, STROP__PT_META_ARCH, a->name);
  if (!st && j.config_text)
    st = strop__meta_set(&m->meta, fn, STROP__PT_META_CONFIG, j.config_text);
  if (!st) strop__log(STROP_LOG_INFO, "%s: %s (%s) from %s", fn, a->name, a->family, path);
  job_free(&j);
  if (st) {
    strop_model_free(m);
    return st;
  }
  *out = m;
  return STROP_OK;
}
