/* SPDX-License-Identifier: MIT */
/* strop — checkpoint container over safetensors (see checkpoint.h): the model's weights,
 * its RNG, and whatever sections the optimizer, scheduler, data and trainer add. */
#include "io/checkpoint.h"

#include <string.h>

#include "graph/graph.h"
#include "io/io_internal.h"
#include "strop/version.h"

struct strop__ckpt_writer {
  const char *fn;
  char *path;
  strop__st_writer *w;
};

strop_status strop__ckpt_writer_begin(const char *fn, const char *path,
                                      strop__ckpt_writer **out) {
  *out = NULL;
  if (!path || !*path) return strop__err(STROP_E_INVALID_ARG, "%s: checkpoint path is empty", fn);
  strop__ckpt_writer *c = strop__calloc(1, sizeof *c);
  if (!c) return STROP__NOMEM(fn);
  c->fn = fn;
  c->path = strop__strdup(path);
  strop_status st = c->path ? strop__st_writer_create(fn, &c->w) : STROP__NOMEM(fn);
  if (st == STROP_OK) st = strop__st_writer_set_meta(c->w, "format", STROP__CKPT_FORMAT);
  if (st == STROP_OK) st = strop__st_writer_set_meta(c->w, "strop_version", strop_version());
  if (st != STROP_OK) {
    strop__ckpt_abort(c);
    return st;
  }
  *out = c;
  return STROP_OK;
}

void strop__ckpt_abort(strop__ckpt_writer *w) {
  if (!w) return;
  strop__st_writer_free(w->w);
  strop__free(w->path);
  strop__free(w);
}

strop_status strop__ckpt_add_model(strop__ckpt_writer *w, const strop_model *m) {
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", w->fn);
  strop_status st = strop__model_add_to_writer(w->fn, m, w->w);
  if (st == STROP_OK) st = strop__ckpt_add_rng(w, "rng.model", &m->rng);
  return st;
}

strop_status strop__ckpt_add_f32(strop__ckpt_writer *w, const char *name, int rank,
                                 const int64_t *dims, const float *data) {
  return strop__st_writer_add_f32(w->w, name, rank, dims, data);
}
strop_status strop__ckpt_add_i64(strop__ckpt_writer *w, const char *name, int rank,
                                 const int64_t *dims, const int64_t *data) {
  return strop__st_writer_add_i64(w->w, name, rank, dims, data);
}
strop_status strop__ckpt_add_f32_copy(strop__ckpt_writer *w, const char *name, int rank,
                                      const int64_t *dims, const float *data) {
  return strop__st_writer_add_f32_copy(w->w, name, rank, dims, data);
}
strop_status strop__ckpt_add_i64_copy(strop__ckpt_writer *w, const char *name, int rank,
                                      const int64_t *dims, const int64_t *data) {
  return strop__st_writer_add_i64_copy(w->w, name, rank, dims, data);
}

strop_status strop__ckpt_add_u64(strop__ckpt_writer *w, const char *name, uint64_t v) {
  int64_t x;
  memcpy(&x, &v, sizeof x);
  return strop__st_writer_add_i64_copy(w->w, name, 0, NULL, &x);
}

strop_status strop__ckpt_add_rng(strop__ckpt_writer *w, const char *name, const strop__rng *r) {
  int64_t v[2], two = 2;
  memcpy(&v[0], &r->state, sizeof v[0]);
  memcpy(&v[1], &r->inc, sizeof v[1]);
  return strop__st_writer_add_i64_copy(w->w, name, 1, &two, v);
}

strop_status strop__ckpt_set_meta(strop__ckpt_writer *w, const char *key, const char *value) {
  return strop__st_writer_set_meta(w->w, key, value);
}

strop_status strop__ckpt_commit(strop__ckpt_writer *w) {
  strop_status st = strop__st_writer_save(w->w, w->path);
  strop__ckpt_abort(w);
  return st;
}

strop_status strop__ckpt_open(const char *fn, const char *path, strop__ckpt **out) {
  strop_status st = strop__st_open(fn, path, out);
  if (st != STROP_OK) return st;
  const char *fmt = strop__st_meta(*out, "format");
  if (!fmt || strcmp(fmt, STROP__CKPT_FORMAT) != 0) {
    st = strop__err(STROP_E_FORMAT,
                    "%s: %s: not a strop checkpoint (metadata \"format\" is %s%.60s%s, expected "
                    "\"" STROP__CKPT_FORMAT "\")",
                    fn, path, fmt ? "\"" : "", fmt ? fmt : "absent", fmt ? "\"" : "");
    strop__ckpt_close(*out); /* fmt points into the file: close only after the message */
    *out = NULL;
    return st;
  }
  return STROP_OK;
}

void strop__ckpt_close(strop__ckpt *c) { strop__st_close(c); }

const strop__st_tensor *strop__ckpt_find(const strop__ckpt *c, const char *name) {
  return strop__st_find(c, name);
}

const char *strop__ckpt_meta(const strop__ckpt *c, const char *key) {
  return strop__st_meta(c, key);
}

static strop_status find_sized(const char *fn, const strop__ckpt *c, const char *name,
                               size_t count, const strop__st_tensor **out) {
  const strop__st_tensor *t = strop__st_find(c, name);
  if (!t)
    return strop__err(STROP_E_NOT_FOUND, "%s: %s: checkpoint has no tensor '%s'", fn, c->label,
                      name);
  if (t->numel != count)
    return strop__err(STROP_E_SHAPE,
                      "%s: %s: checkpoint tensor '%s' has %zu elements, expected %zu", fn,
                      c->label, name, t->numel, count);
  *out = t;
  return STROP_OK;
}

strop_status strop__ckpt_read_f32(const char *fn, const strop__ckpt *c, const char *name,
                                  float *dst, size_t count) {
  const strop__st_tensor *t;
  strop_status st = find_sized(fn, c, name, count, &t);
  if (st != STROP_OK) return st;
  if (!strop__dtype_is_float(t->dtype))
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: checkpoint tensor '%s' is %s, expected a float dtype", fn,
                      c->label, name, strop__dtype_name(t->dtype));
  return strop__st_read_f32(fn, t, dst, count);
}

strop_status strop__ckpt_read_i64(const char *fn, const strop__ckpt *c, const char *name,
                                  int64_t *dst, size_t count) {
  const strop__st_tensor *t;
  strop_status st = find_sized(fn, c, name, count, &t);
  if (st != STROP_OK) return st;
  if (!strop__dtype_is_int(t->dtype))
    return strop__err(STROP_E_FORMAT, "%s: %s: checkpoint tensor '%s' is %s, expected I64", fn,
                      c->label, name, strop__dtype_name(t->dtype));
  return strop__st_read_i64(fn, t, dst, count);
}

strop_status strop__ckpt_read_u64(const char *fn, const strop__ckpt *c, const char *name,
                                  uint64_t *out) {
  int64_t v;
  strop_status st = strop__ckpt_read_i64(fn, c, name, &v, 1);
  if (st == STROP_OK) memcpy(out, &v, sizeof *out);
  return st;
}

strop_status strop__ckpt_read_rng(const char *fn, const strop__ckpt *c, const char *name,
                                  strop__rng *out) {
  int64_t v[2];
  strop_status st = strop__ckpt_read_i64(fn, c, name, v, 2);
  if (st != STROP_OK) return st;
  memcpy(&out->state, &v[0], sizeof v[0]);
  memcpy(&out->inc, &v[1], sizeof v[1]);
  return STROP_OK;
}

strop_status strop__ckpt_load_model(const char *fn, const strop__ckpt *c, strop_model *m) {
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  strop__rng rng;
  strop_status st = strop__ckpt_read_rng(fn, c, "rng.model", &rng);
  if (st != STROP_OK) return st;
  st = strop__model_load_st(fn, m, c, STROP_LOAD_STRICT, NULL, NULL, 1, NULL);
  if (st == STROP_OK) m->rng = rng;
  return st;
}
