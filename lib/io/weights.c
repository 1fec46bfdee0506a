/* SPDX-License-Identifier: MIT */
/* strop — model weights in safetensors: save every parameter and buffer under its PyTorch
 * name, load by name with dtype conversion, prefix remapping and a missing/unexpected report. */
#include <stdio.h>
#include <string.h>

#include "graph/graph.h"
#include "io/io_internal.h"
#include "io/safetensors.h"
#include "strop/version.h"

/* ---- the report ---- */

typedef struct rep_entry {
  char *name;
  char *detail;
} rep_entry;

struct strop_load_report {
  rep_entry *e[4];
  int n[4], cap[4];
};

static void report_free(strop_load_report *r) {
  if (!r) return;
  for (int k = 0; k < 4; k++) {
    for (int i = 0; i < r->n[k]; i++) {
      strop__free(r->e[k][i].name);
      strop__free(r->e[k][i].detail);
    }
    strop__free(r->e[k]);
  }
  strop__free(r);
}

void strop_load_report_free(strop_load_report *r) { report_free(r); }

static int report_add(strop_load_report *r, int kind, const char *name, const char *detail) {
  if (r->n[kind] == r->cap[kind]) {
    int cap = r->cap[kind] ? r->cap[kind] * 2 : 8;
    rep_entry *v = strop__realloc(r->e[kind], (size_t)cap * sizeof *v);
    if (!v) return 0;
    r->e[kind] = v;
    r->cap[kind] = cap;
  }
  rep_entry *e = &r->e[kind][r->n[kind]];
  e->name = strop__strdup(name);
  e->detail = strop__strdup(detail ? detail : name);
  if (!e->name || !e->detail) {
    strop__free(e->name);
    strop__free(e->detail);
    return 0;
  }
  r->n[kind]++;
  return 1;
}

int64_t strop_load_report_count(const strop_load_report *r, int kind) {
  if (!r || kind < 0 || kind > 3) return -1;
  return r->n[kind];
}

static int64_t copy_out(const char *s, char *buf, size_t cap) {
  size_t n = strlen(s);
  if (buf && cap) {
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(buf, s, k);
    buf[k] = '\0';
  }
  return (int64_t)n;
}

int64_t strop_load_report_name(const strop_load_report *r, int kind, int64_t i, char *buf,
                               size_t cap) {
  if (!r || kind < 0 || kind > 3 || i < 0 || i >= r->n[kind] || (!buf && cap)) return -1;
  return copy_out(r->e[kind][i].name, buf, cap);
}

int64_t strop_load_report_detail(const strop_load_report *r, int kind, int64_t i, char *buf,
                                 size_t cap) {
  if (!r || kind < 0 || kind > 3 || i < 0 || i >= r->n[kind] || (!buf && cap)) return -1;
  return copy_out(r->e[kind][i].detail, buf, cap);
}

/* ---- load ---- */

typedef struct pending {
  strop__param *p;
  const strop__st_tensor *t;
  const strop__st_file *file;
  strop__mapping *map; /* borrow the values from this mapping (STROP_LOAD_MMAP), or NULL */
  int borrow_dtype;    /* STROP__LOWP_F32 or _BF16: how they are borrowed */
  float *fresh;        /* owned memory for a parameter that has none of its own yet */
  int lowp_target;     /* or the BF16 / int8 storage it is read into, having none yet */
} pending;

static int host_le(void) {
  const uint16_t one = 1;
  return *(const unsigned char *)&one == 1;
}

/* How tensor t of mapped file f can be borrowed by p under STROP_LOAD_MMAP: 1 with *dtype the
 * storage, 0 when it must be copied. Only a frozen weight (never a buffer), a tensor whose file
 * dtype is the one p is held in (F32; BF16 for a frozen [out, in] weight of a BF16 model),
 * aligned to its element size, on a little-endian host. */
static int borrowable(const strop_model *m, const strop__param *p, const strop__st_tensor *t,
                      const strop__st_file *f, int *dtype) {
  if (!f->map || !t->data || p->trainable || p->is_buffer || p->is_int64 || !host_le()) return 0;
  const int bf16 = strop__param_lowp_target(p, m->frozen_dtype, 0) == STROP__LOWP_BF16 &&
                   p->lowp_ok == 1;
  if (t->dtype == STROP__DT_BF16 && bf16 && !((uintptr_t)t->data & 1u) &&
      (p->lowp.dtype == STROP__LOWP_BF16 || !p->lowp.dtype)) {
    *dtype = STROP__LOWP_BF16;
    return 1;
  }
  if (t->dtype == STROP__DT_F32 && !((uintptr_t)t->data & 3u) && !p->lowp.dtype &&
      (m->frozen_dtype == STROP__LOWP_F32 || !bf16)) {
    *dtype = STROP__LOWP_F32;
    return 1;
  }
  return 0;
}

/* Appends "a, b, c and N more" of the report's names of kind to s. */
static void list_names(char *s, size_t cap, const strop_load_report *r, int kind, int details) {
  size_t l = strlen(s);
  int shown = 0;
  for (int i = 0; i < r->n[kind] && l < cap; i++) {
    if (shown == 4) {
      l += (size_t)snprintf(s + l, cap - l, " and %d more", r->n[kind] - shown);
      break;
    }
    l += (size_t)snprintf(s + l, cap - l, "%s%s", shown ? ", " : "",
                          details ? r->e[kind][i].detail : r->e[kind][i].name);
    shown++;
  }
}

static int dims_equal(int ra, const int64_t *a, int rb, const int64_t *b) {
  if (ra != rb) return 0;
  for (int i = 0; i < ra; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* Shapes agree, counting a scalar [] and a one-element [1] as the same (PyTorch accepts both
 * for BatchNorm's num_batches_tracked). */
static int shapes_agree(int ra, const int64_t *a, int rb, const int64_t *b) {
  if (dims_equal(ra, a, rb, b)) return 1;
  return ra <= 1 && rb <= 1 && (ra == 0 || a[0] == 1) && (rb == 0 || b[0] == 1);
}

/* The model's parameter named name (exactly), or -1. */
static int param_index(const strop_model *m, const char *name) {
  for (int k = 0; k < m->n_params; k++)
    if (strcmp(m->params[k]->name, name) == 0) return k;
  return -1;
}

/* The model-side name of file tensor fname under the policy nm, into *name (grown as needed):
 * 1 with *pi the parameter (or -1: unexpected), 0 when the tensor is to be skipped, -1 out of
 * memory. */
static int map_name(const strop_model *m, const strop__load_names *nm, const char *fname,
                    char **name, size_t *cap, int *pi) {
  const char *from = nm ? nm->from : NULL, *to = nm && nm->to ? nm->to : "";
  size_t from_len = from ? strlen(from) : 0, longest = 0;
  for (const char *const *pp = nm ? nm->prefixes : NULL; pp && *pp; pp++)
    if (strlen(*pp) > longest) longest = strlen(*pp);
  size_t need = strlen(fname) + strlen(to) + longest + 1;
  if (need > *cap) {
    char *q = strop__realloc(*name, need);
    if (!q) return -1;
    *name = q;
    *cap = need;
  }
  if (from && strncmp(fname, from, from_len) == 0)
    snprintf(*name, *cap, "%s%s", to, fname + from_len);
  else snprintf(*name, *cap, "%s", fname);
  *pi = param_index(m, *name);
  /* a prefix the file's names carry and the model's lack, or the other way round */
  for (const char *const *pp = nm ? nm->prefixes : NULL; *pi < 0 && pp && *pp; pp++) {
    size_t l = strlen(*pp);
    if (strncmp(*name, *pp, l) == 0 && param_index(m, *name + l) >= 0) {
      memmove(*name, *name + l, strlen(*name + l) + 1);
    } else {
      memmove(*name + l, *name, strlen(*name) + 1);
      memcpy(*name, *pp, l);
      if (param_index(m, *name) < 0) memmove(*name, *name + l, strlen(*name + l) + 1);
    }
    *pi = param_index(m, *name);
  }
  if (*pi < 0 && nm && nm->ignore_unexpected) return 0;
  /* tensors the policy says are not parameters, unless the model has them (lm_head.weight is
   * a duplicate of the embedding in a tied model's file, a parameter in an untied one) */
  for (const char *const *g = nm ? nm->ignore : NULL; *pi < 0 && g && *g; g++)
    if (strop__glob_match(*g, *name)) return 0;
  return 1;
}

/* A tensor into a frozen weight held in BF16 or int8: read as FP32 (a BF16 file's values are
 * exact there), then rounded or quantised into the weight's storage. */
static strop_status read_lowp(const char *fn, const strop__st_tensor *t, strop__param *p) {
  float *v = strop__malloc_aligned(p->numel * sizeof *v);
  if (!v) return strop__err(STROP_E_NOMEM, "%s: out of memory reading '%s'", fn, p->name);
  strop_status st = strop__st_read_f32(fn, t, v, p->numel);
  if (!st && strop__param_assign(p, v))
    st = strop__err(STROP_E_NOMEM, "%s: out of memory converting '%s' to its frozen dtype", fn,
                    p->name);
  strop__free_aligned(v);
  return st;
}

/* A frozen weight held in BF16 or int8 is written as the FP32 values it stands for. */
static strop_status add_lowp(const char *fn, strop__st_writer *w, const strop__param *p) {
  float *tmp = NULL;
  const float *v = strop__param_f32(p, &tmp);
  if (!v) return strop__err(STROP_E_NOMEM, "%s: out of memory widening '%s'", fn, p->name);
  strop_status st = strop__st_writer_add_f32_copy(w, p->name, p->rank, p->dims, v);
  strop__free_aligned(tmp);
  return st;
}

strop_status strop__model_load_files(const char *fn, strop_model *m,
                                     const strop__st_file *const *files, int n_files, int flags,
                                     const strop__load_names *nm,
                                     strop_load_report **report_out) {
  if (report_out) *report_out = NULL;
  int strict = !(flags & STROP_LOAD_PARTIAL);
  strop_load_report *r = strop__calloc(1, sizeof *r);
  int np = m->n_params, n_all = 0;
  for (int k = 0; k < n_files; k++) n_all += files[k]->n;
  int *matched = strop__calloc((size_t)np + 1, sizeof *matched); /* 1 + the file it came from */
  pending *todo = strop__calloc((size_t)n_all + 1, sizeof *todo);
  char *name = NULL;
  size_t name_cap = 0;
  int n_todo = 0;
  strop_status st = STROP_OK;
  if (!r || !matched || !todo) goto oom;

  for (int k = 0; k < n_files; k++) {
    const strop__st_file *f = files[k];
    for (int i = 0; i < f->n; i++) {
      const strop__st_tensor *t = &f->t[i];
      int pi = -1;
      int keep = map_name(m, nm, t->name, &name, &name_cap, &pi);
      if (keep < 0) goto oom;
      if (!keep) continue;
      char detail[700];
      const char *in_file = n_files > 1 ? f->label : NULL;
      if (pi < 0) {
        if (strcmp(name, t->name) != 0 || in_file)
          snprintf(detail, sizeof detail, "%s (file name '%s'%s%s)", name, t->name,
                   in_file ? " in " : "", in_file ? in_file : "");
        else snprintf(detail, sizeof detail, "%s", name);
        if (!report_add(r, STROP_REPORT_UNEXPECTED, name, detail)) goto oom;
        continue;
      }
      strop__param *p = m->params[pi];
      if (matched[pi]) {
        snprintf(detail, sizeof detail, "%s (file name '%s'%s%s): a second tensor for it", name,
                 t->name, in_file ? " in " : "", in_file ? in_file : "");
        if (!report_add(r, STROP_REPORT_UNEXPECTED, name, detail)) goto oom;
        continue;
      }
      matched[pi] = 1 + k;
      char fs[160], ms[160];
      int want_int = p->is_int64;
      int dtype_ok = want_int ? strop__dtype_is_int(t->dtype) : strop__dtype_is_float(t->dtype);
      if (!dtype_ok || !shapes_agree(t->rank, t->dims, p->rank, p->dims)) {
        snprintf(detail, sizeof detail, "%s: file %s %s, model %s %s", name,
                 strop__dims_str(t->rank, t->dims, fs, sizeof fs), strop__dtype_name(t->dtype),
                 strop__dims_str(p->rank, p->dims, ms, sizeof ms), want_int ? "I64" : "F32");
        if (!report_add(r, STROP_REPORT_MISMATCHED, name, detail)) goto oom;
        continue;
      }
      todo[n_todo].p = p;
      todo[n_todo].t = t;
      todo[n_todo].file = f;
      n_todo++;
    }
  }
  for (int k = 0; k < np; k++)
    if (!matched[k] && !report_add(r, STROP_REPORT_MISSING, m->params[k]->name, NULL)) goto oom;

  if (strict && (r->n[0] || r->n[1] || r->n[2])) {
    char msg[900] = "";
    size_t l = 0;
    if (r->n[STROP_REPORT_MISSING]) {
      l += (size_t)snprintf(msg + l, sizeof msg - l, "%d missing (", r->n[0]);
      list_names(msg, sizeof msg, r, STROP_REPORT_MISSING, 0);
      l = strlen(msg);
      l += (size_t)snprintf(msg + l, sizeof msg - l, ")");
    }
    if (r->n[STROP_REPORT_UNEXPECTED] && l < sizeof msg) {
      l += (size_t)snprintf(msg + l, sizeof msg - l, "%s%d unexpected (", l ? "; " : "", r->n[1]);
      list_names(msg, sizeof msg, r, STROP_REPORT_UNEXPECTED, 0);
      l = strlen(msg);
      l += (size_t)snprintf(msg + l, sizeof msg - l, ")");
    }
    if (r->n[STROP_REPORT_MISMATCHED] && l < sizeof msg) {
      l += (size_t)snprintf(msg + l, sizeof msg - l, "%s%d mismatched (", l ? "; " : "", r->n[2]);
      list_names(msg, sizeof msg, r, STROP_REPORT_MISMATCHED, 1);
      l = strlen(msg);
      if (l < sizeof msg) snprintf(msg + l, sizeof msg - l, ")");
    }
    st = strop__err(r->n[STROP_REPORT_MISMATCHED] ? STROP_E_SHAPE : STROP_E_NOT_FOUND,
                    "%s: %s: strict load: %s; nothing was loaded (STROP_LOAD_PARTIAL loads what "
                    "matches)",
                    fn, n_files == 1 ? files[0]->label : "the checkpoint's files", msg);
    goto done;
  }
  /* The report's LOADED list is built before touching the model, so an allocation failure
   * there also leaves the model unchanged. */
  for (int i = 0; i < n_todo; i++)
    if (!report_add(r, STROP_REPORT_LOADED, todo[i].p->name, NULL)) goto oom;
  /* which tensors are borrowed from their mapped file; FP32 memory for the others that have
   * none of their own (values borrowed before, or not allocated by a mapped pretrained load) */
  for (int i = 0; i < n_todo; i++) {
    pending *q = &todo[i];
    strop__param *p = q->p;
    if ((flags & STROP_LOAD_MMAP) && borrowable(m, p, q->t, q->file, &q->borrow_dtype)) {
      q->map = q->file->map;
      continue;
    }
    if (p->is_int64 || p->lowp.dtype || (p->data && !p->map)) continue;
    /* a frozen weight without memory (a mapped pretrained load) that the model holds in BF16
     * or int8 is rounded straight into that storage below, one tensor at a time, never whole
     * in float32 (such a model is freed when its load fails, so this part need not be
     * transactional) */
    if (!p->data && !p->map && !p->trainable &&
        (q->lowp_target = strop__param_lowp_target(p, m->frozen_dtype, 0)))
      continue;
    if (!(q->fresh = strop__malloc_aligned(p->numel * sizeof(float)))) {
      for (int k = 0; k < i; k++) strop__free_aligned(todo[k].fresh);
      goto oom;
    }
  }
  for (int i = 0; i < n_todo; i++) {
    pending *q = &todo[i];
    strop__param *p = q->p;
    if (q->map) {
      strop__param_borrow(p, q->map, q->t->data, q->borrow_dtype);
    } else {
      if (q->fresh) {
        strop__param_drop_values(p);
        p->data = q->fresh;
      }
      if (q->lowp_target) {
        p->lowp.dtype = q->lowp_target; /* read_lowp makes it from the file's values */
        p->lowp.rows = p->dims[0];
        p->lowp.cols = p->dims[1];
        p->lowp.scale_cols = p->lowp_ok == 2;
        p->lowp.group = q->lowp_target == STROP__LOWP_INT8 ? m->int8_group : 0;
        st = read_lowp(fn, q->t, p);
        if (st) memset(&p->lowp, 0, sizeof p->lowp);
      } else if (p->lowp.dtype) st = read_lowp(fn, q->t, p);
      else if (p->data) st = strop__st_read_f32(fn, q->t, p->data, p->numel);
      else st = strop__st_read_i64(fn, q->t, p->idata, p->numel);
      if (st != STROP_OK) goto done; /* out of memory in read_lowp; else not reached */
      /* the file's pages of a tensor that was copied are not kept in this process's RSS for
       * as long as other tensors borrow from the mapping (they are read again on demand) */
      if (q->file->map) (void)strop__mapping_drop_pages(q->t->data, q->t->nbytes);
    }
    p->version++;
  }
done:
  strop__free(name);
  strop__free(matched);
  strop__free(todo);
  if (report_out) *report_out = r;
  else report_free(r);
  return st;
oom:
  strop__free(name);
  strop__free(matched);
  strop__free(todo);
  report_free(r);
  return STROP__NOMEM(fn);
}

strop_status strop__model_load_st(const char *fn, strop_model *m, const strop__st_file *f,
                                  int flags, const char *from, const char *to,
                                  int ignore_unexpected, strop_load_report **report_out) {
  strop__load_names nm = {.from = from, .to = to, .ignore_unexpected = ignore_unexpected};
  return strop__model_load_files(fn, m, &f, 1, flags, &nm, report_out);
}

/* The model metadata a file carries: its "strop.meta.<key>" entries, checked against the
 * bounds of strop_model_set_meta() (a file is untrusted input). *found says whether there was
 * any. Errors name fn and the file. */
static strop_status file_meta(const char *fn, const strop__st_file *f, strop__meta *out,
                              int *found) {
  const size_t pl = sizeof STROP__META_PREFIX - 1;
  *found = 0;
  for (int i = 0; i < f->n_meta; i++) {
    if (strncmp(f->meta_keys[i], STROP__META_PREFIX, pl) != 0) continue;
    *found = 1;
    strop_status st = strop__meta_set(out, fn, f->meta_keys[i] + pl, f->meta_vals[i]);
    if (st == STROP_E_INVALID_ARG) {
      char why[1024];
      snprintf(why, sizeof why, "%s", strop_last_error() + strlen(fn) + 2);
      st = strop__err(STROP_E_FORMAT, "%s: %s: \"__metadata__\" entry '%.300s': %s", fn, f->label,
                      f->meta_keys[i], why);
    }
    if (st) return st;
  }
  return STROP_OK;
}

/* Loads an open file into m. A strict load that succeeds also takes the file's model metadata
 * (when it has any): prepared before the tensors are touched, swapped in after, so the call
 * changes everything or nothing. */
static strop_status load_open(const char *fn, strop_model *m, const strop__st_file *f, int flags,
                              const char *from, const char *to, strop_load_report **report_out) {
  strop__meta meta;
  memset(&meta, 0, sizeof meta);
  int found = 0;
  strop_status st = flags & STROP_LOAD_PARTIAL ? STROP_OK : file_meta(fn, f, &meta, &found);
  if (!st) st = strop__model_load_st(fn, m, f, flags, from, to, 0, report_out);
  if (!st && found) strop__meta_swap(&m->meta, &meta);
  strop__meta_free(&meta);
  return st;
}

static strop_status check_load_args(const char *fn, strop_model *m, int flags) {
  if (flags & ~(STROP_LOAD_PARTIAL | STROP_LOAD_MMAP))
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, (unsigned)flags);
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  return STROP_OK;
}

static strop_status load_weights(const char *fn, strop_model *m, const char *path, int flags,
                                 const char *from, const char *to,
                                 strop_load_report **report_out) {
  if (report_out) *report_out = NULL;
  if (!m || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, m ? "path" : "model");
  strop_status st = check_load_args(fn, m, flags);
  if (st) return st;
  strop__st_file *f = NULL;
  if ((st = strop__st_open(fn, path, &f))) return st;
  st = load_open(fn, m, f, flags, from, to, report_out);
  if (st == STROP_OK) strop__log(STROP_LOG_DEBUG, "%s: read %s", fn, path);
  strop__st_close(f);
  return st;
}

strop_status strop_model_load_weights(strop_model *model, const char *path, int flags,
                                      strop_load_report **report_out) {
  return load_weights("strop_model_load_weights", model, path, flags, NULL, NULL, report_out);
}

strop_status strop_model_load_weights_mem(strop_model *model, const void *data, size_t size,
                                          int flags, strop_load_report **report_out) {
  static const char fn[] = "strop_model_load_weights_mem";
  if (report_out) *report_out = NULL;
  if (!model || !data)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "data" : "model");
  strop_status st = check_load_args(fn, model, flags);
  if (st) return st;
  /* the reader validates the buffer as it does a mapped file, and borrows it only until
   * strop__st_close below: the tensors are copied into the model */
  strop__st_file *f = NULL;
  if ((st = strop__st_open_mem(fn, data, size, "<memory>", &f))) return st;
  st = load_open(fn, model, f, flags, NULL, NULL, report_out);
  if (st == STROP_OK) strop__log(STROP_LOG_DEBUG, "%s: read %zu bytes", fn, size);
  strop__st_close(f);
  return st;
}

strop_status strop_model_load_weights_remap(strop_model *model, const char *path, int flags,
                                            const char *from_prefix, const char *to_prefix,
                                            strop_load_report **report_out) {
  static const char fn[] = "strop_model_load_weights_remap";
  if (!from_prefix || !to_prefix) {
    if (report_out) *report_out = NULL;
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      from_prefix ? "to_prefix" : "from_prefix");
  }
  return load_weights(fn, model, path, flags, from_prefix, to_prefix, report_out);
}

/* ---- save ---- */

strop_status strop__model_add_to_writer(const char *fn, const strop_model *m,
                                        strop__st_writer *w) {
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    strop_status st;
    if (p->lowp.dtype) st = add_lowp(fn, w, p);
    else if (p->data) st = strop__st_writer_add_f32(w, p->name, p->rank, p->dims, p->data);
    else if (p->idata) st = strop__st_writer_add_i64(w, p->name, p->rank, p->dims, p->idata);
    else st = strop__err(STROP_E_INTERNAL, "%s: tensor '%s' has no data", fn, p->name);
    if (st != STROP_OK) return st;
  }
  return STROP_OK;
}

strop_status strop__model_meta_to_writer(const char *fn, const strop_model *m,
                                         strop__st_writer *w) {
  strop_status st = strop__st_writer_set_meta(w, "format", "strop");
  if (!st) st = strop__st_writer_set_meta(w, "strop_version", strop_version());
  char key[sizeof STROP__META_PREFIX + STROP_META_KEY_MAX];
  for (int i = 0; !st && i < m->meta.n; i++) {
    snprintf(key, sizeof key, STROP__META_PREFIX "%s", m->meta.keys[i]);
    st = strop__st_writer_set_meta(w, key, m->meta.vals[i]);
  }
  if (st == STROP_E_NOMEM) return STROP__NOMEM(fn);
  return st;
}

strop_status strop_model_save_weights(const strop_model *model, const char *path) {
  static const char fn[] = "strop_model_save_weights";
  if (!model || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "path" : "model");
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  strop__st_writer *w = NULL;
  strop_status st = strop__st_writer_create(fn, &w);
  if (st == STROP_OK) st = strop__model_add_to_writer(fn, model, w);
  if (st == STROP_OK) st = strop__model_meta_to_writer(fn, model, w);
  if (st == STROP_OK) st = strop__st_writer_save(w, path);
  strop__st_writer_free(w);
  if (st == STROP_OK) strop__log(STROP_LOG_DEBUG, "%s: wrote %s", fn, path);
  return st;
}
