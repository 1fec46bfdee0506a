/* SPDX-License-Identifier: MIT */
/* strop tests — numeric harness (see harness.h): finite differences and PyTorch parity.
 * Reads fixtures with its own small safetensors reader so layer tests do not depend on
 * the io module they would otherwise be testing alongside. */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "testutil.h"

void strop_test_gc_defaults(strop_test_gc_opts *o) {
  memset(o, 0, sizeof *o);
  o->eps = 1e-3;
  o->tol = 2e-2;
  o->check_input = 1;
  o->input_scale = 1.0f;
  o->max_per_tensor = 48;
}

static size_t out_numel(strop_model *m, int64_t batch) {
  return (size_t)batch * strop__shape_numel(&m->nodes[m->n_nodes - 1].out_shape);
}

/* loss = sum(out .* R) in double, with the model RNG reset so dropout repeats */
static double loss_at(strop_model *m, const float *x, int64_t batch, const float *r,
                      strop__rng r0, const strop__side *side) {
  const strop__act *o;
  m->rng = r0;
  strop_status s = strop__model_forward_exec(m, x, batch, 1, side, &o);
  ck_assert_msg(s == STROP_OK, "forward failed: %s", strop_last_error());
  double L = 0.0;
  size_t n = out_numel(m, batch);
  for (size_t i = 0; i < n; i++) L += (double)o->data[i] * (double)r[i];
  strop__model_step_end(m);
  return L;
}

static double compare_fd(const char *what, double fd, double an, double tol, double *worst) {
  double d = fabs(fd - an);
  double scale = fmax(fmax(fabs(fd), fabs(an)), 1e-2);
  double rel = d / scale;
  if (rel > *worst) *worst = rel;
  ck_assert_msg(rel <= tol,
                "gradcheck %s: finite difference %.6g vs analytic %.6g (rel %.3g > %.3g)", what,
                fd, an, rel, tol);
  return rel;
}

double strop_test_gradcheck(strop_model *m, int64_t batch, uint64_t seed,
                            const strop_test_gc_opts *opts) {
  strop_test_gc_opts o;
  if (opts) o = *opts;
  else strop_test_gc_defaults(&o);
  if (o.int_inputs) o.check_input = 0;
  strop__rng g;
  strop__rng_seed(&g, seed, 77);
  size_t in_n = (size_t)batch * strop__shape_numel(&m->in_shape);
  size_t on = out_numel(m, batch);
  float *x = malloc(in_n * sizeof *x), *r = malloc(on * sizeof *r);
  for (size_t i = 0; i < in_n; i++)
    x[i] = o.int_inputs ? (float)strop__rng_below(&g, (uint64_t)o.int_max)
                        : o.input_scale * (2.0f * strop__rng_uniform(&g) - 1.0f);
  for (size_t i = 0; i < on; i++) r[i] = strop__rng_normal(&g);
  strop__rng r0 = m->rng;

  /* analytic gradients */
  m->want_input_grad = o.check_input;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  const strop__act *out;
  m->rng = r0;
  const strop__side side = {o.mask, o.types};
  ck_assert_msg(strop__model_forward_exec(m, x, batch, 1, &side, &out) == STROP_OK, "%s",
                strop_last_error());
  ck_assert_msg(strop__model_backward(m, r) == STROP_OK, "backward: %s", strop_last_error());
  float *gin = NULL;
  if (o.check_input) {
    gin = malloc(in_n * sizeof *gin);
    memcpy(gin, m->input_grad, in_n * sizeof *gin);
  }
  strop__model_step_end(m);
  m->want_input_grad = 0;

  double worst = 0.0;
  char what[300];
  for (int pi = 0; pi < m->n_params; pi++) {
    strop__param *p = m->params[pi];
    if (!p->trainable || p->is_buffer || !p->data) continue;
    ck_assert_msg(p->grad != NULL, "no gradient for %s", p->name);
    float *ga = malloc(p->numel * sizeof *ga);
    memcpy(ga, p->grad, p->numel * sizeof *ga);
    size_t k = p->numel < (size_t)o.max_per_tensor ? p->numel : (size_t)o.max_per_tensor;
    for (size_t t = 0; t < k; t++) {
      size_t i = k == p->numel ? t : (size_t)strop__rng_below(&g, p->numel);
      float v = p->data[i];
      p->data[i] = v + (float)o.eps;
      double lp = loss_at(m, x, batch, r, r0, &side);
      p->data[i] = v - (float)o.eps;
      double lm = loss_at(m, x, batch, r, r0, &side);
      p->data[i] = v;
      double fd = (lp - lm) / (2.0 * o.eps);
      snprintf(what, sizeof what, "%s[%zu]", p->name, i);
      compare_fd(what, fd, ga[i], o.tol, &worst);
    }
    free(ga);
  }
  if (o.check_input) {
    size_t k = in_n < (size_t)o.max_per_tensor ? in_n : (size_t)o.max_per_tensor;
    for (size_t t = 0; t < k; t++) {
      size_t i = k == in_n ? t : (size_t)strop__rng_below(&g, in_n);
      float v = x[i];
      x[i] = v + (float)o.eps;
      double lp = loss_at(m, x, batch, r, r0, &side);
      x[i] = v - (float)o.eps;
      double lm = loss_at(m, x, batch, r, r0, &side);
      x[i] = v;
      snprintf(what, sizeof what, "input[%zu]", i);
      compare_fd(what, (lp - lm) / (2.0 * o.eps), gin[i], o.tol, &worst);
    }
  }
  m->rng = r0;
  free(gin);
  free(x);
  free(r);
  return worst;
}

/* ---- a small safetensors reader for fixtures ---- */
typedef struct fx_tensor {
  char name[256];
  char dtype[8];
  int rank;
  int64_t dims[8];
  size_t numel;
  float *f; /* converted to float (I64 too) */
} fx_tensor;

typedef struct fx_file {
  fx_tensor *t;
  int n;
  char training[8];
} fx_file;

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  return p;
}

static const char *read_str(const char *p, char *out, size_t cap) {
  p = skip_ws(p);
  ck_assert_msg(*p == '"', "fixture header: expected a string");
  p++;
  size_t l = 0;
  while (*p && *p != '"') {
    if (*p == '\\') p++;
    if (l + 1 < cap) out[l++] = *p;
    p++;
  }
  out[l] = '\0';
  return p + 1;
}

static const char *skip_value(const char *p) {
  p = skip_ws(p);
  int depth = 0;
  do {
    if (*p == '"') {
      char tmp[512];
      p = read_str(p, tmp, sizeof tmp);
      continue;
    }
    if (*p == '{' || *p == '[') depth++;
    if (*p == '}' || *p == ']') depth--;
    p++;
  } while (depth > 0 && *p);
  return p;
}

static void fx_load(const char *path, fx_file *fx) {
  size_t len;
  char *buf = strop_test_read_file(path, &len);
  ck_assert_msg(buf != NULL, "cannot read fixture %s", path);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)buf[i];
  ck_assert_msg(8 + hl <= len, "fixture %s: bad header length", path);
  char *hdr = malloc(hl + 1);
  memcpy(hdr, buf + 8, hl);
  hdr[hl] = '\0';
  const unsigned char *data = (const unsigned char *)buf + 8 + hl;
  memset(fx, 0, sizeof *fx);
  strcpy(fx->training, "0");
  fx->t = calloc(512, sizeof *fx->t);
  const char *p = skip_ws(hdr);
  ck_assert(*p == '{');
  p++;
  for (;;) {
    p = skip_ws(p);
    if (*p == '}') break;
    if (*p == ',') {
      p++;
      continue;
    }
    char key[256];
    p = read_str(p, key, sizeof key);
    p = skip_ws(p);
    ck_assert(*p == ':');
    p++;
    p = skip_ws(p);
    if (strcmp(key, "__metadata__") == 0) {
      ck_assert(*p == '{');
      p++;
      for (;;) {
        p = skip_ws(p);
        if (*p == '}') {
          p++;
          break;
        }
        if (*p == ',') {
          p++;
          continue;
        }
        char mk[128], mv[256];
        p = read_str(p, mk, sizeof mk);
        p = skip_ws(p) + 1;
        p = read_str(p, mv, sizeof mv);
        if (!strcmp(mk, "training")) {
          fx->training[0] = mv[0];
          fx->training[1] = 0;
        }
      }
      continue;
    }
    ck_assert_int_lt(fx->n, 512);
    fx_tensor *t = &fx->t[fx->n++];
    memcpy(t->name, key, sizeof t->name);
    ck_assert(*p == '{');
    p++;
    uint64_t b = 0, e = 0;
    for (;;) {
      p = skip_ws(p);
      if (*p == '}') {
        p++;
        break;
      }
      if (*p == ',') {
        p++;
        continue;
      }
      char f[64];
      p = read_str(p, f, sizeof f);
      p = skip_ws(p) + 1;
      p = skip_ws(p);
      if (!strcmp(f, "dtype")) {
        p = read_str(p, t->dtype, sizeof t->dtype);
      } else if (!strcmp(f, "shape") || !strcmp(f, "data_offsets")) {
        ck_assert(*p == '[');
        p++;
        int64_t v[8];
        int n = 0;
        for (;;) {
          p = skip_ws(p);
          if (*p == ']') {
            p++;
            break;
          }
          if (*p == ',') {
            p++;
            continue;
          }
          char *end;
          v[n++] = strtoll(p, &end, 10);
          p = end;
        }
        if (f[0] == 's') {
          t->rank = n;
          memcpy(t->dims, v, (size_t)n * sizeof *v);
        } else {
          b = (uint64_t)v[0];
          e = (uint64_t)v[1];
        }
      } else {
        p = skip_value(p);
      }
    }
    t->numel = 1;
    for (int i = 0; i < t->rank; i++) t->numel *= (size_t)t->dims[i];
    t->f = malloc((t->numel ? t->numel : 1) * sizeof(float));
    const unsigned char *src = data + b;
    if (!strcmp(t->dtype, "F32")) {
      ck_assert_uint_eq(e - b, t->numel * 4);
      memcpy(t->f, src, t->numel * 4);
    } else if (!strcmp(t->dtype, "I64")) {
      ck_assert_uint_eq(e - b, t->numel * 8);
      for (size_t i = 0; i < t->numel; i++) {
        int64_t v;
        memcpy(&v, src + 8 * i, 8);
        t->f[i] = (float)v;
      }
    } else if (!strcmp(t->dtype, "F64")) {
      for (size_t i = 0; i < t->numel; i++) {
        double v;
        memcpy(&v, src + 8 * i, 8);
        t->f[i] = (float)v;
      }
    } else {
      ck_abort_msg("fixture %s: tensor %s has dtype %s (the harness reads F32/F64/I64)", path,
                   t->name, t->dtype);
    }
  }
  free(hdr);
  free(buf);
}

static void fx_free(fx_file *fx) {
  for (int i = 0; i < fx->n; i++) free(fx->t[i].f);
  free(fx->t);
}

static fx_tensor *fx_find(fx_file *fx, const char *name) {
  for (int i = 0; i < fx->n; i++)
    if (!strcmp(fx->t[i].name, name)) return &fx->t[i];
  return NULL;
}

static double cmp(const char *fixture, const char *what, const float *got, const fx_tensor *ref,
                  size_t n, double tol) {
  ck_assert_msg(ref->numel == n, "%s: %s has %zu values, strop has %zu", fixture, what,
                ref->numel, n);
  size_t where;
  double rel = strop_test_max_rel(got, ref->f, n, 1e-4, &where);
  ck_assert_msg(rel <= tol, "%s: %s differs at %zu: strop %.8g vs torch %.8g (rel %.3g > %.3g)",
                fixture, what, where, (double)got[where], (double)ref->f[where], rel, tol);
  return rel;
}

double strop_test_parity(strop_model *m, const char *fixture_path, double tol) {
  fx_file fx;
  fx_load(fixture_path, &fx);
  /* load parameters and buffers */
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    fx_tensor *t = fx_find(&fx, p->name);
    ck_assert_msg(t != NULL, "%s: no tensor '%s' in the fixture", fixture_path, p->name);
    ck_assert_msg(t->numel == p->numel, "%s: '%s' has %zu values, strop has %zu", fixture_path,
                  p->name, t->numel, p->numel);
    if (p->data) memcpy(p->data, t->f, p->numel * sizeof(float));
    else p->idata[0] = (int64_t)t->f[0];
  }
  fx_tensor *in = fx_find(&fx, "input"), *out = fx_find(&fx, "output");
  ck_assert_msg(in && out, "%s: needs 'input' and 'output'", fixture_path);
  int64_t batch = in->dims[0];
  int training = fx.training[0] == '1';
  fx_tensor *dout = fx_find(&fx, "dout"), *gin = fx_find(&fx, "grad.input");
  m->want_input_grad = gin != NULL;
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  const strop__act *o;
  strop_status s = strop__model_forward_exec(m, in->f, batch, training, NULL, &o);
  ck_assert_msg(s == STROP_OK, "%s: forward: %s", fixture_path, strop_last_error());
  double worst = cmp(fixture_path, "output", o->data, out,
                     (size_t)batch * strop__shape_numel(&o->shape), tol);
  if (dout) {
    s = strop__model_backward(m, dout->f);
    ck_assert_msg(s == STROP_OK, "%s: backward: %s", fixture_path, strop_last_error());
    if (gin)
      worst = fmax(worst, cmp(fixture_path, "grad.input", m->input_grad, gin, in->numel, tol));
    char key[300];
    for (int i = 0; i < m->n_params; i++) {
      strop__param *p = m->params[i];
      snprintf(key, sizeof key, "grad.%s", p->name);
      fx_tensor *g = fx_find(&fx, key);
      if (!g) continue;
      ck_assert_msg(p->grad != NULL, "%s: strop computed no gradient for %s", fixture_path,
                    p->name);
      worst = fmax(worst, cmp(fixture_path, key, p->grad, g, p->numel, tol));
    }
  }
  /* values after the step (BatchNorm running statistics) */
  char key[300];
  for (int i = 0; i < m->n_params; i++) {
    strop__param *p = m->params[i];
    snprintf(key, sizeof key, "after.%s", p->name);
    fx_tensor *a = fx_find(&fx, key);
    if (!a) continue;
    if (p->data) {
      worst = fmax(worst, cmp(fixture_path, key, p->data, a, p->numel, tol));
    } else {
      ck_assert_msg((float)p->idata[0] == a->f[0], "%s: %s is %lld, torch %g", fixture_path, key,
                    (long long)p->idata[0], (double)a->f[0]);
    }
  }
  strop__model_step_end(m);
  m->want_input_grad = 0;
  fx_free(&fx);
  return worst;
}
