/* SPDX-License-Identifier: MIT */
/* strop — applying a trained classifier to raw inputs: the preprocessing its metadata records
 * (run through the same batch iterator and transforms as evaluation), eval mode, softmax, and
 * the top k classes of each row with their source labels and names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "io/json.h"
#include "strop/data.h"
#include "strop/text.h"
#include "strop/train.h"

static const char fn[] = "strop_model_predict";

struct strop_prediction {
  int64_t rows;
  int k;
  int64_t *cls; /* rows * k output indices, best first */
  double *prob; /* rows * k */
  int64_t n_classes;
  int64_t *labels; /* per output index: its source label */
  char **names;    /* per output index: its name, or NULL */
};

void strop_prediction_free(strop_prediction *p) {
  if (!p) return;
  for (int64_t i = 0; p->names && i < p->n_classes; i++) strop__free(p->names[i]);
  strop__free(p->names);
  strop__free(p->labels);
  strop__free(p->cls);
  strop__free(p->prob);
  strop__free(p);
}

/* ---- the preprocessing the metadata describes (docs/formats.md, model metadata) ---- */

typedef struct prep {
  int rank; /* a raw sample's shape */
  int64_t dims[STROP_MAX_RANK];
  int have_scale;
  double scale;
  int64_t resize[2];         /* 0: none */
  int64_t shorter, max_size; /* resize of the shorter side (0: none) */
  int resize_mode;
  int64_t center_crop[2]; /* 0: none */
  int64_t n_norm;         /* 0: none */
  float *mean, *std;
} prep;

static void prep_free(prep *p) {
  strop__free(p->mean);
  strop__free(p->std);
}

static strop_status bad_meta(const char *key, const char *what) {
  return strop__err(STROP_E_FORMAT,
                    "%s: the model's metadata '%s' is not %s (docs/formats.md, "
                    "model metadata)",
                    fn, key, what);
}

/* Parses the JSON value of key into j; *have is 0 when the model has no such entry. */
static strop_status parse_meta(const strop_model *m, const char *key, strop__json *j, int *have) {
  const char *v = strop__meta_get(&m->meta, key);
  *have = v != NULL;
  if (!v) return STROP_OK;
  strop_status st = strop__json_parse(v, strlen(v), 0, 8, j);
  if (st == STROP_E_NOMEM) return STROP__NOMEM(fn);
  if (st) {
    char why[512];
    snprintf(why, sizeof why, "%s", strop_last_error());
    return strop__err(STROP_E_FORMAT, "%s: the model's metadata '%s' is not JSON: %s", fn, key,
                      why);
  }
  return STROP_OK;
}

static int is_num(const strop__jnode *n) { return n && n->type == STROP__J_NUM; }
static double num(const strop__jnode *n) {
  return n->is_int ? (double)n->ival : strtod(n->str, NULL);
}

/* n floats of a JSON array of numbers into a new array; NULL with *st set otherwise. */
static float *float_list(const strop__json *j, const strop__jnode *a, int64_t n, const char *key,
                         strop_status *st) {
  if (!a || a->type != STROP__J_ARR || a->count != n) {
    *st = bad_meta(key, "{\"mean\": [...], \"std\": [...]} of one number per channel each");
    return NULL;
  }
  float *v = strop__malloc((size_t)n * sizeof *v);
  if (!v) {
    *st = STROP__NOMEM(fn);
    return NULL;
  }
  int64_t i = 0;
  for (const strop__jnode *c = strop__json_at(j, a->child); c;
       c = strop__json_at(j, c->next), i++) {
    if (!is_num(c) || !isfinite(num(c))) {
      strop__free(v);
      *st = bad_meta(key, "{\"mean\": [...], \"std\": [...]} of finite numbers");
      return NULL;
    }
    v[i] = (float)num(c);
  }
  return v;
}

static strop_status read_prep(const strop_model *m, prep *p) {
  memset(p, 0, sizeof *p);
  strop__json j;
  int have = 0;
  strop_status st;
  /* input.shape: [d, ...] */
  memset(&j, 0, sizeof j);
  if ((st = parse_meta(m, "input.shape", &j, &have))) return st;
  if (have) {
    const strop__jnode *r = strop__json_at(&j, 0);
    int ok = r->type == STROP__J_ARR && r->count >= 1 && r->count < STROP_MAX_RANK;
    int k = 0;
    for (const strop__jnode *c = ok ? strop__json_at(&j, r->child) : NULL; c;
         c = strop__json_at(&j, c->next), k++) {
      if (c->type != STROP__J_NUM || !c->is_int || c->ival < 1 || c->ival > ((int64_t)1 << 31))
        ok = 0;
      else p->dims[k] = c->ival;
    }
    p->rank = ok ? r->count : 0;
    strop__json_free(&j);
    if (!ok) return bad_meta("input.shape", "a list of 1 to 7 sizes >= 1 ([1, 28, 28])");
  } else {
    p->rank = strop_model_input_shape(m, p->dims, STROP_MAX_RANK);
  }
  /* input.scale: a number */
  memset(&j, 0, sizeof j);
  if ((st = parse_meta(m, "input.scale", &j, &have))) return st;
  if (have) {
    const strop__jnode *r = strop__json_at(&j, 0);
    int ok = is_num(r) && isfinite(num(r));
    if (ok) p->scale = num(r);
    strop__json_free(&j);
    if (!ok) return bad_meta("input.scale", "a finite number");
    p->have_scale = 1;
  }
  /* input.resize: {"size": [h, w], "mode": M} or {"shorter": s, "max_size": m, "mode": M},
   * M "bilinear" (default), "nearest" or "bilinear_aa" */
  memset(&j, 0, sizeof j);
  if ((st = parse_meta(m, "input.resize", &j, &have))) return st;
  if (have) {
    const strop__jnode *r = strop__json_at(&j, 0);
    const strop__jnode *sz = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "size") : NULL;
    const strop__jnode *sh = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "shorter") : NULL;
    const strop__jnode *mx = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "max_size") : NULL;
    const strop__jnode *md = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "mode") : NULL;
    int ok = (!md || (md->type == STROP__J_STR &&
                      (!strcmp(md->str, "bilinear") || !strcmp(md->str, "nearest") ||
                       !strcmp(md->str, "bilinear_aa"))));
    if (sz) {
      ok = ok && !sh && !mx && sz->type == STROP__J_ARR && sz->count == 2;
      int k = 0;
      for (const strop__jnode *c = ok ? strop__json_at(&j, sz->child) : NULL; c;
           c = strop__json_at(&j, c->next), k++) {
        if (c->type != STROP__J_NUM || !c->is_int || c->ival < 1 || c->ival > 65536) ok = 0;
        else p->resize[k] = c->ival;
      }
    } else {
      ok = ok && sh && sh->type == STROP__J_NUM && sh->is_int && sh->ival >= 1 &&
           sh->ival <= 65536 &&
           (!mx ||
            (mx->type == STROP__J_NUM && mx->is_int && mx->ival > sh->ival && mx->ival <= 65536));
      if (ok) {
        p->shorter = sh->ival;
        p->max_size = mx ? mx->ival : 0;
      }
    }
    p->resize_mode = md && !strcmp(md->str, "nearest")       ? STROP_RESIZE_NEAREST
                     : md && !strcmp(md->str, "bilinear_aa") ? STROP_RESIZE_BILINEAR_AA
                                                             : STROP_RESIZE_BILINEAR;
    strop__json_free(&j);
    if (!ok) {
      p->resize[0] = p->shorter = 0;
      return bad_meta("input.resize",
                      "{\"size\": [h, w]} or {\"shorter\": s, \"max_size\": m} "
                      "with sizes in [1, 65536] and a \"mode\" of \"bilinear\", \"nearest\" or "
                      "\"bilinear_aa\"");
    }
  }
  /* input.center_crop: {"size": [h, w]} */
  memset(&j, 0, sizeof j);
  if ((st = parse_meta(m, "input.center_crop", &j, &have))) return st;
  if (have) {
    const strop__jnode *r = strop__json_at(&j, 0);
    const strop__jnode *sz = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "size") : NULL;
    int ok = sz && sz->type == STROP__J_ARR && sz->count == 2;
    int k = 0;
    for (const strop__jnode *c = ok ? strop__json_at(&j, sz->child) : NULL; c;
         c = strop__json_at(&j, c->next), k++) {
      if (c->type != STROP__J_NUM || !c->is_int || c->ival < 1 || c->ival > 65536) ok = 0;
      else p->center_crop[k] = c->ival;
    }
    strop__json_free(&j);
    if (!ok) {
      p->center_crop[0] = 0;
      return bad_meta("input.center_crop", "{\"size\": [h, w]} with sizes in [1, 65536]");
    }
  }
  /* input.normalize: {"mean": [...], "std": [...]} */
  memset(&j, 0, sizeof j);
  if ((st = parse_meta(m, "input.normalize", &j, &have))) return st;
  if (have) {
    const strop__jnode *r = strop__json_at(&j, 0);
    const strop__jnode *mn = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "mean") : NULL;
    const strop__jnode *sd = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "std") : NULL;
    int64_t n = mn && mn->type == STROP__J_ARR ? mn->count : 0;
    st = n < 1 ? bad_meta("input.normalize", "{\"mean\": [...], \"std\": [...]} of one number "
                                             "per channel each")
               : STROP_OK;
    if (!st) p->mean = float_list(&j, mn, n, "input.normalize", &st);
    if (!st) p->std = float_list(&j, sd, n, "input.normalize", &st);
    strop__json_free(&j);
    if (st) {
      prep_free(p);
      return st;
    }
    p->n_norm = n;
  }
  return STROP_OK;
}

/* classes: [{"label": L, "name": "..."}, ...], one per output: labels and names of the
 * prediction (identity labels and no names without it). */
static strop_status read_classes(const strop_model *m, strop_prediction *p) {
  p->labels = strop__malloc((size_t)p->n_classes * sizeof *p->labels);
  p->names = strop__calloc((size_t)p->n_classes, sizeof *p->names);
  if (!p->labels || !p->names) return STROP__NOMEM(fn);
  for (int64_t i = 0; i < p->n_classes; i++) p->labels[i] = i;
  strop__json j;
  memset(&j, 0, sizeof j);
  int have = 0;
  strop_status st = parse_meta(m, "classes", &j, &have);
  if (st || !have) return st;
  const strop__jnode *r = strop__json_at(&j, 0);
  if (r->type != STROP__J_ARR || r->count != p->n_classes) {
    int64_t n = r->type == STROP__J_ARR ? r->count : -1;
    strop__json_free(&j);
    if (n < 0) return bad_meta("classes", "a list of {\"label\": L, \"name\": \"...\"}");
    return strop__err(STROP_E_FORMAT,
                      "%s: the model's metadata 'classes' lists %lld classes but "
                      "its output has %lld scores per row",
                      fn, (long long)n, (long long)p->n_classes);
  }
  int64_t i = 0;
  for (const strop__jnode *c = strop__json_at(&j, r->child); c && !st;
       c = strop__json_at(&j, c->next), i++) {
    const strop__jnode *lb = c->type == STROP__J_OBJ ? strop__json_get(&j, c, "label") : NULL;
    const strop__jnode *nm = c->type == STROP__J_OBJ ? strop__json_get(&j, c, "name") : NULL;
    if (!lb || lb->type != STROP__J_NUM || !lb->is_int ||
        (nm && nm->type != STROP__J_STR && nm->type != STROP__J_NULL)) {
      st = bad_meta("classes", "a list of {\"label\": L, \"name\": \"...\"} with integer labels");
      break;
    }
    p->labels[i] = lb->ival;
    if (nm && nm->type == STROP__J_STR && !(p->names[i] = strop__strdup(nm->str)))
      st = STROP__NOMEM(fn);
  }
  strop__json_free(&j);
  return st;
}

/* ---- the prediction ---- */

/* Keeps the k best of row (n scores) into cls/prob, best first (ties: the lower index). */
static void top_k(const float *row, int64_t n, int k, int64_t *cls, double *prob) {
  double mx = row[0], z = 0.0;
  for (int64_t c = 1; c < n; c++) mx = row[c] > mx ? row[c] : mx;
  for (int64_t c = 0; c < n; c++) z += exp((double)row[c] - mx);
  int have = 0;
  for (int64_t c = 0; c < n; c++) {
    /* insertion into the sorted top-k so far */
    int at = have;
    while (at > 0 && row[c] > row[cls[at - 1]]) at--;
    if (at >= k) continue;
    int last = have < k ? have : k - 1;
    for (int t = last; t > at; t--) cls[t] = cls[t - 1];
    cls[at] = c;
    if (have < k) have++;
  }
  for (int t = 0; t < k; t++) prob[t] = exp((double)row[cls[t]] - mx) / z;
}

strop_status strop_model_predict(strop_model *m, const strop_tensor *input, int k,
                                 strop_prediction **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!m || !input)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, m ? "input" : "model");
  if (k < 1) return strop__err(STROP_E_INVALID_ARG, "%s: k must be >= 1, got %d", fn, k);
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  int64_t od[STROP_MAX_RANK];
  if (strop_model_output_shape(m, od, STROP_MAX_RANK) != 1)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: the model's output is not one score per class "
                      "([C] per row): predict applies to classifiers",
                      fn);
  prep pp;
  strop_status st = read_prep(m, &pp);
  if (st) return st;
  strop_prediction *p = strop__calloc(1, sizeof *p);
  if (!p) {
    prep_free(&pp);
    return STROP__NOMEM(fn);
  }
  p->n_classes = od[0];
  p->k = k < od[0] ? k : (int)od[0];
  strop_dataset *ds = NULL;
  strop_batch_iter *it = NULL;
  float *zeros = NULL;
  const int was_training = m->training;
  if ((st = read_classes(m, p))) goto done;
  /* the input: whole samples, every value finite */
  int64_t dims[STROP_MAX_RANK];
  const int rank = strop_tensor_shape(input, dims, STROP_MAX_RANK);
  const size_t numel = strop_tensor_numel(input);
  /* images of any size when the pipeline gives them one ([N, C, H, W] of the recorded C) */
  if ((pp.resize[0] > 0 || pp.shorter > 0 || pp.center_crop[0] > 0) && pp.rank == 3 &&
      rank == 4 && dims[1] == pp.dims[0] && dims[2] > 0 && dims[3] > 0) {
    pp.dims[1] = dims[2];
    pp.dims[2] = dims[3];
  }
  size_t per = 1;
  for (int i = 0; i < pp.rank; i++) per *= (size_t)pp.dims[i];
  const int64_t n = (int64_t)(numel / per);
  if (numel == 0 || numel % per != 0 || (rank >= 2 && dims[0] != n)) {
    char a[160], b[160];
    strop__shape is = {rank, {0}}, want = {pp.rank, {0}};
    memcpy(is.d, dims, (size_t)rank * sizeof *dims);
    memcpy(want.d, pp.dims, (size_t)pp.rank * sizeof *pp.dims);
    strop__shape_str(&is, a, sizeof a);
    strop__shape_str(&want, b, sizeof b);
    if (numel == 0 || numel % per != 0)
      st = strop__err(STROP_E_SHAPE,
                      "%s: the input %s holds %zu values, not a whole number of "
                      "samples of %s (%zu values each)",
                      fn, a, numel, b, per);
    else
      st = strop__err(STROP_E_SHAPE,
                      "%s: the input %s holds %lld samples of %s but its first "
                      "dimension says %lld: give [N, ...] with N samples",
                      fn, a, (long long)n, b, (long long)dims[0]);
    goto done;
  }
  const float *x = strop_tensor_data_const(input);
  for (size_t e = 0; e < numel; e++)
    if (!isfinite(x[e])) {
      st = strop__err(STROP_E_INVALID_ARG,
                      "%s: row %lld of the input holds %s (value %zu of the "
                      "row): inputs must be finite",
                      fn, (long long)(e / per), isnan(x[e]) ? "NaN" : "an infinity", e % per);
      goto done;
    }
  p->rows = n;
  p->cls = strop__malloc((size_t)n * (size_t)p->k * sizeof *p->cls);
  p->prob = strop__malloc((size_t)n * (size_t)p->k * sizeof *p->prob);
  zeros = strop__calloc((size_t)n, sizeof *zeros);
  if (!p->cls || !p->prob || !zeros) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  /* the data pipeline evaluation uses, over the caller's values (borrowed, not copied) */
  if ((st = strop_dataset_wrap(x, zeros, n, pp.rank, pp.dims, 0, NULL, 1, NULL, NULL, &ds)) ||
      (st = strop_batch_iter_create(ds, 256, 0, 0, &it)))
    goto wrapped;
  if (pp.have_scale && (st = strop_batch_iter_add_scale(it, (float)pp.scale))) goto wrapped;
  if (pp.resize[0] > 0 &&
      (st = strop_batch_iter_add_resize(it, pp.resize[0], pp.resize[1], pp.resize_mode)))
    goto wrapped;
  if (pp.shorter > 0 &&
      (st = strop_batch_iter_add_resize_shorter(it, pp.shorter, pp.max_size, pp.resize_mode)))
    goto wrapped;
  if (pp.center_crop[0] > 0 &&
      (st = strop_batch_iter_add_center_crop(it, pp.center_crop[0], pp.center_crop[1])))
    goto wrapped;
  if (pp.n_norm > 0 && (st = strop_batch_iter_add_normalize(it, pp.n_norm, pp.mean, pp.std)))
    goto wrapped;
  m->training = 0;
  for (int64_t row = 0; row < n;) {
    strop_tensor *bx = NULL, *y = NULL;
    int64_t got = 0;
    if ((st = strop_batch_iter_next(it, &bx, NULL, &got))) goto wrapped;
    if (got == 0) break;
    if ((st = strop_model_forward(m, bx, &y))) goto wrapped;
    const float *s = strop_tensor_data_const(y);
    for (int64_t r = 0; r < got && !st; r++) {
      const float *sr = s + r * p->n_classes;
      for (int64_t c = 0; c < p->n_classes && !st; c++)
        if (!isfinite(sr[c]))
          st = strop__err(STROP_E_NUMERIC,
                          "%s: the model gives a non-finite score (%g) for "
                          "row %lld, class %lld: its weights hold NaN or infinite values",
                          fn, (double)sr[c], (long long)(row + r), (long long)c);
      if (!st)
        top_k(sr, p->n_classes, p->k, p->cls + (row + r) * p->k, p->prob + (row + r) * p->k);
    }
    strop_tensor_free(y);
    if (st) goto done;
    row += got;
  }
  goto done;
wrapped:
  /* a step of the pipeline refused: say that it was the prediction's */
  if (st != STROP_E_NOMEM && strncmp(strop_last_error(), fn, sizeof fn - 1) != 0)
    strop__err_prefix("%s", fn);
  if (st == STROP_E_NOMEM) st = STROP__NOMEM(fn);
done:
  m->training = was_training;
  strop_batch_iter_free(it);
  strop_dataset_free(ds);
  strop__free(zeros);
  prep_free(&pp);
  if (st) {
    strop_prediction_free(p);
    return st;
  }
  *out = p;
  return STROP_OK;
}

/* ---- raw text ---- */

typedef struct text_meta {
  char path[4096];
  int have_path;
  int64_t max_length;
  int padding; /* STROP_PAD_LONGEST or STROP_PAD_MAX_LENGTH */
} text_meta;

/* input.tokenizer: {"path": P, "max_length": L, "task": "classify", "padding": "..."}. */
static strop_status read_text_meta(const strop_model *m, int need_path, text_meta *t) {
  static const char key[] = "input.tokenizer";
  memset(t, 0, sizeof *t);
  t->padding = STROP_PAD_LONGEST;
  strop__json j;
  memset(&j, 0, sizeof j);
  int have = 0;
  strop_status st = parse_meta(m, key, &j, &have);
  if (st) return st;
  if (!have) {
    if (need_path)
      return strop__err(STROP_E_NOT_FOUND,
                        "%s_text: the model has no '%s' metadata (a recipe run on text data "
                        "records the tokenizer it used): pass a tokenizer",
                        fn, key);
    int64_t d[STROP_MAX_RANK];
    t->max_length = strop_model_input_shape(m, d, STROP_MAX_RANK) >= 1 ? d[0] : 0;
    return STROP_OK;
  }
  const strop__jnode *r = strop__json_at(&j, 0);
  const strop__jnode *p = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "path") : NULL;
  const strop__jnode *l = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "max_length") : NULL;
  const strop__jnode *tk = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "task") : NULL;
  const strop__jnode *pd = r->type == STROP__J_OBJ ? strop__json_get(&j, r, "padding") : NULL;
  int ok = p && p->type == STROP__J_STR && strlen(p->str) < sizeof t->path && l &&
           l->type == STROP__J_NUM && l->is_int && l->ival >= 1 &&
           l->ival <= ((int64_t)1 << 24) && (!tk || tk->type == STROP__J_STR) &&
           (!pd || (pd->type == STROP__J_STR &&
                    (!strcmp(pd->str, "longest") || !strcmp(pd->str, "max_length"))));
  char task[32] = "classify";
  if (ok) {
    snprintf(t->path, sizeof t->path, "%s", p->str);
    t->have_path = 1;
    t->max_length = l->ival;
    if (pd && !strcmp(pd->str, "max_length")) t->padding = STROP_PAD_MAX_LENGTH;
    if (tk) snprintf(task, sizeof task, "%s", tk->str);
  }
  strop__json_free(&j);
  if (!ok)
    return bad_meta(key,
                    "{\"path\": \"...\", \"max_length\": L, \"task\": \"...\"} with L in "
                    "[1, 2^24] and an optional \"padding\" of \"longest\" or \"max_length\"");
  if (strcmp(task, "classify"))
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s_text: the model was trained for the text task '%s': predict applies "
                      "to classifiers (task 'classify'); generate text with strop_generate()",
                      fn, task);
  return STROP_OK;
}

strop_status strop_model_predict_text(strop_model *m, strop_tokenizer *tok,
                                      const char *const *texts, const char *const *pairs,
                                      int64_t n, int k, strop_prediction **out) {
  static const char tfn[] = "strop_model_predict_text";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", tfn);
  *out = NULL;
  if (!m || !texts)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", tfn, m ? "texts" : "model");
  if (n < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: n must be >= 1, got %lld", tfn, (long long)n);
  if (k < 1) return strop__err(STROP_E_INVALID_ARG, "%s: k must be >= 1, got %d", tfn, k);
  for (int64_t i = 0; i < n; i++)
    if (!texts[i])
      return strop__err(STROP_E_INVALID_ARG, "%s: texts[%lld] is NULL", tfn, (long long)i);
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: the model is not finalized", tfn);
  int64_t od[STROP_MAX_RANK];
  if (strop_model_output_shape(m, od, STROP_MAX_RANK) != 1)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: the model's output is not one score per class ([C] per row): "
                      "predict applies to classifiers",
                      tfn);
  text_meta tm;
  strop_status st = read_text_meta(m, tok == NULL, &tm);
  if (st) return st;
  if (tm.max_length < 1)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: the model's input is not a sequence of token ids ([L])", tfn);
  strop_tokenizer *own = NULL;
  if (!tok) {
    if ((st = strop_tokenizer_load(tm.path, NULL, &own))) {
      if (st != STROP_E_NOMEM)
        strop__err_prefix(
            "%s: the tokenizer the model's input.tokenizer names (%s) does not load", tfn,
            tm.path);
      return st;
    }
    tok = own;
  }
  strop_prediction *p = strop__calloc(1, sizeof *p);
  const int64_t chunk = n < 64 ? n : 64, L = tm.max_length;
  int64_t *ids = strop__malloc((size_t)(chunk * L) * sizeof *ids);
  int64_t *mk = strop__malloc((size_t)(chunk * L) * sizeof *mk);
  float *fx = strop__malloc((size_t)(chunk * L) * sizeof *fx);
  float *fm = strop__malloc((size_t)(chunk * L) * sizeof *fm);
  /* pairs: the token types of the tokenizer's pair template (BERT's second segment is 1) */
  int64_t *ty = pairs ? strop__malloc((size_t)(chunk * L) * sizeof *ty) : NULL;
  float *ft = pairs ? strop__malloc((size_t)(chunk * L) * sizeof *ft) : NULL;
  const int was_training = m->training;
  if (!p || !ids || !mk || !fx || !fm || (pairs && (!ty || !ft))) {
    st = STROP__NOMEM(tfn);
    goto done;
  }
  p->n_classes = od[0];
  p->k = k < od[0] ? k : (int)od[0];
  p->rows = n;
  p->cls = strop__malloc((size_t)n * (size_t)p->k * sizeof *p->cls);
  p->prob = strop__malloc((size_t)n * (size_t)p->k * sizeof *p->prob);
  if (!p->cls || !p->prob) {
    st = STROP__NOMEM(tfn);
    goto done;
  }
  if ((st = read_classes(m, p))) goto done;
  strop_encode_options eo;
  strop_encode_options_init(&eo);
  eo.max_length = L;
  eo.truncation = STROP_TRUNCATE_LONGEST_FIRST;
  eo.padding = tm.padding;
  int64_t pad = strop_tokenizer_special_id(tok, STROP_ROLE_PAD);
  eo.pad_id = pad >= 0 ? pad : 0; /* as the text dataset pads */
  m->training = 0;
  for (int64_t row = 0; row < n && !st; row += chunk) {
    int64_t rows = n - row < chunk ? n - row : chunk, w = 0;
    if ((st = strop_tokenizer_encode_batch(tok, texts + row, pairs ? pairs + row : NULL, rows,
                                           &eo, ids, ty, mk, NULL, chunk * L, &w))) {
      strop__err_prefix("%s: texts %lld..%lld", tfn, (long long)row, (long long)(row + rows - 1));
      break;
    }
    for (int64_t r = 0; r < rows && !st; r++) { /* as training refuses empty texts */
      int64_t toks = 0;
      for (int64_t e = 0; e < w; e++) toks += mk[r * w + e] != 0;
      if (!toks)
        st = strop__err(STROP_E_INVALID_ARG,
                        "%s: text %lld is empty (no tokens to classify); give it some text", tfn,
                        (long long)(row + r));
    }
    if (st) break;
    for (int64_t e = 0; e < rows * w; e++) {
      fx[e] = (float)ids[e];
      fm[e] = (float)mk[e];
      if (ft) ft[e] = (float)ty[e];
    }
    strop_tensor *x = NULL, *mt = NULL, *tt = NULL, *y = NULL;
    int64_t dims[2] = {rows, w};
    strop_side_inputs side;
    strop_side_inputs_init(&side);
    if (!(st = strop_tensor_wrap(fx, (size_t)(rows * w), 2, dims, &x)) &&
        !(st = strop_tensor_wrap(fm, (size_t)(rows * w), 2, dims, &mt)) &&
        !(st = ft ? strop_tensor_wrap(ft, (size_t)(rows * w), 2, dims, &tt) : STROP_OK)) {
      side.mask = mt;
      side.token_types = tt;
      st = strop_model_forward_ext(m, x, &side, &y);
    }
    if (st && st != STROP_E_NOMEM && strncmp(strop_last_error(), tfn, sizeof tfn - 1) != 0)
      strop__err_prefix("%s", tfn);
    const float *s = y ? strop_tensor_data_const(y) : NULL;
    for (int64_t r = 0; r < rows && !st; r++) {
      const float *sr = s + r * p->n_classes;
      for (int64_t c = 0; c < p->n_classes && !st; c++)
        if (!isfinite(sr[c]))
          st = strop__err(STROP_E_NUMERIC,
                          "%s: the model gives a non-finite score (%g) for text %lld, class "
                          "%lld: its weights hold NaN or infinite values",
                          tfn, (double)sr[c], (long long)(row + r), (long long)c);
      if (!st)
        top_k(sr, p->n_classes, p->k, p->cls + (row + r) * p->k, p->prob + (row + r) * p->k);
    }
    strop_tensor_free(y);
    strop_tensor_free(x);
    strop_tensor_free(mt);
    strop_tensor_free(tt);
  }
done:
  m->training = was_training;
  strop__free(ids);
  strop__free(mk);
  strop__free(fx);
  strop__free(fm);
  strop__free(ty);
  strop__free(ft);
  strop_tokenizer_free(own);
  if (st) {
    strop_prediction_free(p);
    return st;
  }
  *out = p;
  return STROP_OK;
}

/* ---- getters ---- */

static int at(const strop_prediction *p, int64_t row, int j) {
  return p && row >= 0 && row < p->rows && j >= 0 && j < p->k;
}

int64_t strop_prediction_rows(const strop_prediction *p) { return p ? p->rows : -1; }
int strop_prediction_k(const strop_prediction *p) { return p ? p->k : -1; }

int64_t strop_prediction_class(const strop_prediction *p, int64_t row, int j) {
  return at(p, row, j) ? p->cls[row * p->k + j] : -1;
}

int64_t strop_prediction_label(const strop_prediction *p, int64_t row, int j) {
  return at(p, row, j) ? p->labels[p->cls[row * p->k + j]] : -1;
}

double strop_prediction_prob(const strop_prediction *p, int64_t row, int j) {
  return at(p, row, j) ? p->prob[row * p->k + j] : NAN;
}

int64_t strop_prediction_name(const strop_prediction *p, int64_t row, int j, char *buf,
                              size_t cap) {
  static const char gn[] = "strop_prediction_name";
  if (!at(p, row, j)) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s", gn,
               !p ? "prediction is NULL" : "row or rank out of range");
    return -1;
  }
  const char *name = p->names[p->cls[row * p->k + j]];
  if (!name) {
    strop__err(STROP_E_NOT_FOUND, "%s: class %lld has no name", gn,
               (long long)p->cls[row * p->k + j]);
    return -1;
  }
  return strop__copy_out(gn, name, buf, cap);
}
