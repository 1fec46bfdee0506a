/* SPDX-License-Identifier: MIT */
/* strop — the optimizers: torch.optim's single-tensor update rules in float32, the same order
 * of operations, per-parameter lr multipliers and decay switches, lazily allocated state. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "ops/ops.h"
#include "core/settings.h"
#include "optim/optim.h"

#define N_KNOBS 14
#define N_BUFS 3

typedef struct slot {
  strop__param *p;  /* borrowed; refreshed by sync */
  char *strs;       /* owned: param name, then the 1 + N_BUFS state names, NUL-separated */
  const char *name; /* into strs */
  const char *state_names[1 + N_BUFS]; /* "optim.<name>.step", then the buffers' names */
  size_t numel;
  int64_t step;
  int has_state;
  int sgd_buf_valid;     /* SGD: momentum buffer holds a value (torch: buf is not None) */
  int sgd_buf_was_valid; /* its value before the current step (a refused step restores it) */
  float *buf[N_BUFS];
} slot;

struct strop_optimizer {
  int kind;
  strop_model *model;    /* NULL: a parameter array */
  strop__param **params; /* owned copy of the array, when model == NULL */
  int n_params;
  slot *slots;
  int n_slots;
  double f[N_KNOBS];
  int i[N_KNOBS];
  int64_t step_count;
};

/* ---- knobs: the table (the one description of the optimizer's settings) ---- */

enum {
  K_SGD = 1 << 0,
  K_ADAM = 1 << 1,
  K_ADAMW = 1 << 2,
  K_RMS = 1 << 3,
  K_ADAGRAD = 1 << 4,
  K_ALL = 31
};

static const char *const KIND_NAMES[5] = {"SGD", "Adam", "AdamW", "RMSprop", "Adagrad"};

#define KNOB(k) [k] = {.key = k, .ident = #k
#define FLOAT .type = STROP__SET_FLOAT
#define FLAG .type = STROP__SET_FLAG, .lo = 0, .hi = 1
static const strop__setting KNOBS[N_KNOBS] =
    {KNOB(STROP_OPT_LR),
     .name = "lr",
     FLOAT,
     .kinds = K_ALL,
     .def = 1e-3,
     .lo = 0,
     .hi = HUGE_VAL,
     .per_kind = {K_RMS | K_ADAGRAD, 1e-2, 0},
     .doc = "Learning rate (SGD's 1e-3 is PyTorch 2's default; PyTorch 1.13 has none)."},
                            KNOB(STROP_OPT_MOMENTUM), .name = "momentum", FLOAT,
                            .kinds = K_SGD | K_RMS, .lo = 0, .hi = HUGE_VAL,
                            .doc = "Momentum factor."
}
, KNOB(STROP_OPT_DAMPENING), .name = "dampening", FLOAT, .kinds = K_SGD, .lo = 0, .hi = 1,
                             .doc = "Dampening of the momentum."
}
, KNOB(STROP_OPT_WEIGHT_DECAY),
    .name = "weight_decay", FLOAT, .kinds = K_ALL, .lo = 0, .hi = HUGE_VAL,
    .per_kind = {K_ADAMW, 1e-2, 0},
    .doc = "Weight decay: L2 added to the gradient; decoupled (p *= 1 - lr * wd) for AdamW."
}
, KNOB(STROP_OPT_NESTEROV), .name = "nesterov", FLAG, .kinds = K_SGD,
                            .doc = "Nesterov momentum; needs momentum > 0 and dampening 0."
}
, KNOB(STROP_OPT_BETA1), .name = "beta1", FLOAT, .kinds = K_ADAM | K_ADAMW, .def = 0.9, .lo = 0,
                         .hi = 1, .flags = STROP__KNOB_HI_OPEN,
                         .doc = "Decay of the first moment (betas[0])."
}
, KNOB(STROP_OPT_BETA2), .name = "beta2", FLOAT, .kinds = K_ADAM | K_ADAMW, .def = 0.999, .lo = 0,
                         .hi = 1, .flags = STROP__KNOB_HI_OPEN,
                         .doc = "Decay of the second moment (betas[1])."
}
, KNOB(STROP_OPT_EPS), .name = "eps", FLOAT, .kinds = K_ADAM | K_ADAMW | K_RMS | K_ADAGRAD,
                       .def = 1e-8, .lo = 0, .hi = HUGE_VAL, .per_kind = {K_ADAGRAD, 1e-10, 0},
                       .doc = "Term added to the denominator."
}
, KNOB(STROP_OPT_AMSGRAD), .name = "amsgrad", FLAG, .kinds = K_ADAM | K_ADAMW,
                           .doc = "Divide by the largest second moment seen so far (AMSGrad)."
}
, KNOB(STROP_OPT_ALPHA), .name = "alpha", FLOAT, .kinds = K_RMS, .def = 0.99, .lo = 0, .hi = 1,
                         .doc = "Smoothing constant of the squared-gradient average."
}
, KNOB(STROP_OPT_CENTERED), .name = "centered", FLAG, .kinds = K_RMS,
                            .doc = "Normalise by the estimated variance of the gradient."
}
, KNOB(STROP_OPT_LR_DECAY), .name = "lr_decay", FLOAT, .kinds = K_ADAGRAD, .lo = 0,
                            .hi = HUGE_VAL,
                            .doc = "Learning-rate decay: lr / (1 + (step - 1) * lr_decay)."
}
, KNOB(STROP_OPT_INITIAL_ACCUMULATOR_VALUE),
    .name = "initial_accumulator_value", FLOAT, .kinds = K_ADAGRAD, .lo = 0, .hi = HUGE_VAL,
    .doc = "Starting value of the sum of squared gradients."
}
, KNOB(STROP_OPT_MAXIMIZE), .name = "maximize", FLAG, .kinds = K_ALL,
                            .doc = "Maximise the objective instead of minimising it."
}
,
}
;
#undef KNOB
#undef FLOAT
#undef FLAG

const strop__settings strop__optimizer_settings = {"optimizer", KIND_NAMES, 5,
                                                   "%s",        KNOBS,      N_KNOBS};

/* The engine's flag bits are the public ones. */
_Static_assert((int)STROP__KNOB_INT == (int)STROP_KNOB_INT &&
                   (int)STROP__KNOB_LO_OPEN == (int)STROP_KNOB_LO_OPEN &&
                   (int)STROP__KNOB_HI_OPEN == (int)STROP_KNOB_HI_OPEN &&
                   (int)STROP__KNOB_LIST == (int)STROP_KNOB_LIST &&
                   (int)STROP__KNOB_FLAG == (int)STROP_KNOB_FLAG &&
                   (int)STROP__KNOB_ENUM == (int)STROP_KNOB_ENUM &&
                   (int)STROP__KNOB_INF_OK == (int)STROP_KNOB_INF_OK &&
                   (int)STROP__KNOB_REQUIRED == (int)STROP_KNOB_REQUIRED,
               "settings flags must equal strop_knob_flags");

/* Buffer names per kind, index = slot->buf index. */
static const char *const BUF_NAMES[5][N_BUFS] = {
    {"momentum_buffer", NULL, NULL},
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {"square_avg", "momentum_buffer", "grad_avg"},
    {"sum", NULL, NULL},
};

double strop__knob_widen(float v) {
  if (!isfinite(v)) return (double)v;
  char buf[64];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) return strtod(buf, NULL);
  }
  return (double)v;
}

static void set_defaults(strop_optimizer *o) {
  double v[N_KNOBS];
  strop__settings_defaults(&strop__optimizer_settings, o->kind, v);
  for (int k = 0; k < N_KNOBS; k++) {
    o->f[k] = KNOBS[k].type == STROP__SET_FLOAT ? v[k] : 0.0;
    o->i[k] = KNOBS[k].type == STROP__SET_FLOAT ? 0 : (int)v[k];
  }
}

/* The current value of a knob as a double. */
static double knob_value(const strop_optimizer *o, int key) {
  return KNOBS[key].type == STROP__SET_FLOAT ? o->f[key] : (double)o->i[key];
}

/* Nesterov needs momentum > 0 and zero dampening (torch.optim.SGD's rule). */
static strop_status nesterov_check(const char *fn, const strop_optimizer *o, double mom,
                                   double damp, int nest, int key, double v) {
  if (o->kind != STROP_OPTIM_SGD || !nest || (mom > 0.0 && damp == 0.0)) return STROP_OK;
  const char *why = mom > 0.0 ? "Nesterov momentum requires dampening 0"
                              : "Nesterov momentum requires momentum > 0";
  return strop__err(STROP_E_INVALID_ARG, "%s: %s = %g rejected: %s (momentum %g, dampening %g)",
                    fn, KNOBS[key].name, v, why, mom, damp);
}

/* The one setter: finds the knob for this kind, checks the setter may take it (`want`), checks
 * the value and the knobs' combination, then stores it. Nothing changes on error. */
static strop_status set_knob(strop_optimizer *o, const char *fn, int key, double v, int want) {
  const strop__setting *s;
  strop_status st = strop__settings_lookup(&strop__optimizer_settings, fn, o->kind, key, &s);
  if (!st) st = strop__settings_want(&strop__optimizer_settings, fn, s, want, "set");
  if (!st) st = strop__setting_check(fn, s, o->kind, v);
  if (st) return st;
  const double mom = key == STROP_OPT_MOMENTUM ? v : o->f[STROP_OPT_MOMENTUM];
  const double damp = key == STROP_OPT_DAMPENING ? v : o->f[STROP_OPT_DAMPENING];
  const int nest = key == STROP_OPT_NESTEROV ? (int)v : o->i[STROP_OPT_NESTEROV];
  if ((st = nesterov_check(fn, o, mom, damp, nest, key, v))) return st;
  if (s->type == STROP__SET_FLOAT) o->f[key] = v;
  else o->i[key] = (int)v;
  return STROP_OK;
}

static strop_status get_knob(const strop_optimizer *o, const char *fn, int key, int want,
                             double *out) {
  const strop__setting *s;
  strop_status st = strop__settings_lookup(&strop__optimizer_settings, fn, o->kind, key, &s);
  if (!st) st = strop__settings_want(&strop__optimizer_settings, fn, s, want, "get");
  if (!st) *out = knob_value(o, key);
  return st;
}

strop_status strop_optimizer_set_double(strop_optimizer *opt, int key, double value) {
  static const char fn[] = "strop_optimizer_set_double";
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "%s: opt is NULL", fn);
  return set_knob(opt, fn, key, value, STROP__WANT_SCALAR);
}

strop_status strop_optimizer_get_double(const strop_optimizer *opt, int key, double *value) {
  static const char fn[] = "strop_optimizer_get_double";
  if (!opt || !value)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !opt ? "opt" : "value");
  return get_knob(opt, fn, key, STROP__WANT_SCALAR, value);
}

/* Deprecated since 0.2: the float is widened to the double of its shortest decimal form. */
strop_status strop_optimizer_set_float(strop_optimizer *opt, int key, float value) {
  static const char fn[] = "strop_optimizer_set_float";
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "%s: opt is NULL", fn);
  return set_knob(opt, fn, key, strop__knob_widen(value), STROP__WANT_FLOAT);
}

strop_status strop_optimizer_get_float(const strop_optimizer *opt, int key, float *out) {
  static const char fn[] = "strop_optimizer_get_float";
  if (!opt || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !opt ? "opt" : "out");
  double v = 0.0;
  strop_status st = get_knob(opt, fn, key, STROP__WANT_FLOAT, &v);
  if (!st) *out = (float)v;
  return st;
}

strop_status strop_optimizer_set_int(strop_optimizer *opt, int key, int value) {
  static const char fn[] = "strop_optimizer_set_int";
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "%s: opt is NULL", fn);
  return set_knob(opt, fn, key, (double)value, STROP__WANT_INT);
}

strop_status strop_optimizer_get_int(const strop_optimizer *opt, int key, int *out) {
  static const char fn[] = "strop_optimizer_get_int";
  if (!opt || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !opt ? "opt" : "out");
  double v = 0.0;
  strop_status st = get_knob(opt, fn, key, STROP__WANT_INT, &v);
  if (!st) *out = (int)v;
  return st;
}

strop_status strop_optimizer_knob_range(int kind, int key, double *lo, double *hi, int *flags) {
  return strop__settings_range(&strop__optimizer_settings, "strop_optimizer_knob_range", kind,
                               key, lo, hi, flags);
}

const char *strop_optimizer_knob_name(int key) {
  return strop__settings_name(&strop__optimizer_settings, key);
}

const char *strop_optimizer_knob_doc(int key) {
  return strop__settings_doc(&strop__optimizer_settings, key);
}

strop_status strop_optimizer_knob_find(const char *name, int *key) {
  return strop__settings_find(&strop__optimizer_settings, "strop_optimizer_knob_find", name, key);
}

strop_status strop_optimizer_knob_default(int kind, int key, double *value) {
  return strop__settings_default_of(&strop__optimizer_settings, "strop_optimizer_knob_default",
                                    kind, key, value);
}

strop_status strop_optimizer_knob_parse(int key, const char *text, double *value) {
  return strop__settings_parse(&strop__optimizer_settings, "strop_optimizer_knob_parse", key,
                               text, value);
}

double strop__optim_get_lr(const strop_optimizer *o) { return o->f[STROP_OPT_LR]; }
void strop__optim_set_lr(strop_optimizer *o, double lr) { o->f[STROP_OPT_LR] = lr; }

static int momentum_key(int kind) {
  switch (kind) {
    case STROP_OPTIM_SGD:
    case STROP_OPTIM_RMSPROP: return STROP_OPT_MOMENTUM;
    case STROP_OPTIM_ADAM:
    case STROP_OPTIM_ADAMW: return STROP_OPT_BETA1;
    default: return -1;
  }
}

int strop__optim_set_momentum(strop_optimizer *o, double m) {
  int k = momentum_key(o->kind);
  if (k < 0) return 0;
  o->f[k] = m;
  return 1;
}

int strop__optim_get_momentum(const strop_optimizer *o, double *m) {
  int k = momentum_key(o->kind);
  if (k < 0) return 0;
  *m = o->f[k];
  return 1;
}

int strop_optimizer_get_kind(const strop_optimizer *opt) { return opt ? opt->kind : -1; }

const strop_model *strop__optim_model(const strop_optimizer *o) { return o ? o->model : NULL; }

int64_t strop_optimizer_step_count(const strop_optimizer *opt) {
  return opt ? opt->step_count : -1;
}

/* ---- slots: one per trainable parameter ---- */

static void slot_free_bufs(slot *s) {
  for (int b = 0; b < N_BUFS; b++) {
    strop__free_aligned(s->buf[b]);
    s->buf[b] = NULL;
  }
  s->has_state = 0;
  s->sgd_buf_valid = 0;
  s->step = 0;
}

static void slot_free(slot *s) {
  slot_free_bufs(s);
  strop__free(s->strs);
  s->strs = NULL;
}

static void source(const strop_optimizer *o, strop__param ***ps, int *n) {
  if (o->model) {
    *ps = o->model->params;
    *n = o->model->n_params;
  } else {
    *ps = o->params;
    *n = o->n_params;
  }
}

static int is_trainable(const strop__param *p) {
  return p && p->trainable && !p->is_buffer && p->data && p->name;
}

/* Builds the names block of a new slot. */
static strop_status slot_init(strop_optimizer *o, slot *s, strop__param *p) {
  size_t ln = strlen(p->name);
  size_t total = ln + 1 + (1 + N_BUFS) * (ln + 32);
  memset(s, 0, sizeof *s);
  s->strs = strop__malloc(total);
  if (!s->strs) return STROP__NOMEM("strop_optimizer_sync");
  char *w = s->strs;
  memcpy(w, p->name, ln + 1);
  s->name = w;
  w += ln + 1;
  sprintf(w, "optim.%s.step", p->name);
  s->state_names[0] = w;
  w += strlen(w) + 1;
  for (int b = 0; b < N_BUFS; b++) {
    const char *bn = BUF_NAMES[o->kind][b];
    if (!bn) continue;
    sprintf(w, "optim.%s.%s", p->name, bn);
    s->state_names[1 + b] = w;
    w += strlen(w) + 1;
  }
  s->p = p;
  s->numel = p->numel;
  return STROP_OK;
}

/* Fast check: the slots still match the trainable parameters one to one, in order. */
static int slots_current(const strop_optimizer *o) {
  strop__param **ps;
  int n, j = 0;
  source(o, &ps, &n);
  for (int k = 0; k < n; k++) {
    strop__param *p = ps[k];
    if (!is_trainable(p)) continue;
    if (j >= o->n_slots) return 0;
    const slot *s = &o->slots[j++];
    if (s->p != p || s->numel != p->numel || strcmp(s->name, p->name) != 0) return 0;
  }
  return j == o->n_slots;
}

static strop_status sync(strop_optimizer *o) {
  if (slots_current(o)) return STROP_OK;
  strop__param **ps;
  int n, nt = 0;
  source(o, &ps, &n);
  for (int k = 0; k < n; k++) nt += is_trainable(ps[k]);
  slot *ns = nt ? strop__calloc((size_t)nt, sizeof *ns) : NULL;
  int *from = nt ? strop__calloc((size_t)nt, sizeof *from) : NULL;
  if (nt && (!ns || !from)) {
    strop__free(ns);
    strop__free(from);
    return STROP__NOMEM("strop_optimizer_sync");
  }
  /* Pass 1: match by name and size, allocate names of new slots; nothing moves yet. */
  int j = 0;
  for (int k = 0; k < n; k++) {
    strop__param *p = ps[k];
    if (!is_trainable(p)) continue;
    from[j] = -1;
    for (int q = 0; q < o->n_slots; q++) {
      if (o->slots[q].strs && o->slots[q].numel == p->numel &&
          strcmp(o->slots[q].name, p->name) == 0) {
        from[j] = q;
        break;
      }
    }
    if (from[j] < 0) {
      strop_status st = slot_init(o, &ns[j], p);
      if (st) {
        for (int q = 0; q < j; q++)
          if (from[q] < 0) strop__free(ns[q].strs);
        strop__free(ns);
        strop__free(from);
        return st;
      }
    }
    j++;
  }
  /* Pass 2: move kept state, free the rest. */
  for (j = 0; j < nt; j++) {
    if (from[j] < 0) continue;
    slot *old = &o->slots[from[j]];
    strop__param *p = NULL;
    for (int k = 0, t = 0; k < n; k++) {
      if (!is_trainable(ps[k])) continue;
      if (t++ == j) {
        p = ps[k];
        break;
      }
    }
    ns[j] = *old;
    ns[j].p = p;
    memset(old, 0, sizeof *old);
  }
  for (int q = 0; q < o->n_slots; q++) slot_free(&o->slots[q]);
  strop__free(o->slots);
  strop__free(from);
  o->slots = ns;
  o->n_slots = nt;
  return STROP_OK;
}

strop_status strop_optimizer_sync(strop_optimizer *opt) {
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "strop_optimizer_sync: opt is NULL");
  return sync(opt);
}

/* Which buffers the current knobs need. */
static int bufs_needed(const strop_optimizer *o) {
  switch (o->kind) {
    case STROP_OPTIM_SGD: return o->f[STROP_OPT_MOMENTUM] != 0.0 ? 1 : 0;
    case STROP_OPTIM_ADAM:
    case STROP_OPTIM_ADAMW: return 3 | (o->i[STROP_OPT_AMSGRAD] ? 4 : 0);
    case STROP_OPTIM_RMSPROP:
      return 1 | (o->f[STROP_OPT_MOMENTUM] > 0.0 ? 2 : 0) | (o->i[STROP_OPT_CENTERED] ? 4 : 0);
    default: return 1;
  }
}

int strop__optim_values_per_param(const strop_optimizer *o) {
  int n = 0;
  for (int need = bufs_needed(o); need; need >>= 1) n += need & 1;
  return n;
}

static float *buf_alloc(const strop_optimizer *o, size_t numel, int b) {
  size_t bytes;
  if (strop__mul_overflow(numel ? numel : 1, sizeof(float), &bytes)) return NULL;
  float *v = strop__malloc_aligned(bytes);
  if (!v) return NULL;
  float init = 0.0f;
  if (o->kind == STROP_OPTIM_ADAGRAD && b == 0)
    init = (float)o->f[STROP_OPT_INITIAL_ACCUMULATOR_VALUE];
  for (size_t k = 0; k < numel; k++) v[k] = init;
  return v;
}

/* Allocates every buffer a stepping slot needs (all: every slot's, also those whose gradient
 * the coming backward makes); on failure frees what this call allocated. */
static strop_status ensure_state(strop_optimizer *o, int all) {
  int need = bufs_needed(o);
  for (int j = 0; j < o->n_slots; j++) {
    slot *s = &o->slots[j];
    if (!all && !s->p->grad) continue;
    for (int b = 0; b < N_BUFS; b++) {
      if (!(need & (1 << b)) || s->buf[b]) continue;
      s->buf[b] = buf_alloc(o, s->numel, b);
      if (!s->buf[b]) {
        /* roll back this call's allocations: buffers of slots whose state is not yet marked,
         * and new buffers (all zero or initial) of earlier slots. */
        for (int q = 0; q <= j; q++) {
          slot *t = &o->slots[q];
          if (!all && !t->p->grad) continue;
          for (int c = 0; c < N_BUFS; c++) {
            if (!(need & (1 << c)) || !t->buf[c]) continue;
            if (t->has_state & (1 << (c + 1))) continue;
            strop__free_aligned(t->buf[c]);
            t->buf[c] = NULL;
          }
        }
        return STROP__NOMEM("strop_optimizer_step");
      }
    }
  }
  for (int j = 0; j < o->n_slots; j++) {
    slot *s = &o->slots[j];
    if (!all && !s->p->grad) continue;
    s->has_state |= 1;
    for (int b = 0; b < N_BUFS; b++)
      if (s->buf[b]) s->has_state |= 1 << (b + 1);
  }
  return STROP_OK;
}

/* ---- the update rules (torch/optim/<name>.py, _single_tensor_<name>; float32 element arithmetic,
 *      Python-float scalars computed in double and rounded once, as ATen does) ----
 *
 * The numeric guard is folded into each loop, where it costs a compare or two and a select per
 * stored value: an element whose new weight or state would be NaN or infinite keeps its old
 * weight and state, and the loop reports it. A value that can only be non-finite if the new
 * weight is too (a momentum, a first moment) is not tested on its own; a squared average is,
 * since an infinite one makes the update 0. With `backup` (the trainer's step, which owns the
 * gradients and zeroes them after the update) each element's old weight is written into its
 * gradient slot, which the update has just read, so a refused step puts every weight back and
 * the loop need not keep the old weight itself. */

#if defined(__GNUC__)
#  define STROP__INLINE static inline __attribute__((always_inline))
#else
#  define STROP__INLINE static inline
#endif

/* NaN and both infinities fail: the loops test every value they store. (They choose every
 * value to keep before storing any: GCC then if-converts the choices even for SSE2.) */
#define FINITE(x) (fabsf(x) <= FLT_MAX)

/* SGD: one loop per (momentum, backup) pair, the flags constant after inlining. */
STROP__INLINE int sgd_loop(float *restrict w, float *restrict g, float *restrict buf, size_t n,
                           float gs, float wdf, float mom, float damp1, float nlr, int has_wd,
                           int first, int nest, const int use_mom, const int backup) {
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    const float wo = w[k];
    float d = gs * g[k];
    if (has_wd) d = d + wdf * wo;
    float wn;
    int ok;
    if (use_mom) {
      const float bo = buf[k];
      const float b = first ? d : bo * mom + damp1 * d;
      d = nest ? d + mom * b : b;
      wn = wo + nlr * d;
      ok = FINITE(wn) & FINITE(b); /* (b is implied, but its test keeps SSE2 branch-free) */
      const float b1 = ok ? b : bo;
      buf[k] = b1;
    } else {
      wn = wo + nlr * d;
      ok = FINITE(wn);
    }
    const float w1 = (backup | ok) ? wn : wo;
    w[k] = w1;
    if (backup) g[k] = wo;
    bad |= !ok;
  }
  return bad;
}

STROP__CLONES static int step_sgd(const strop_optimizer *o, slot *s, double lr, double wd,
                                  size_t lo, size_t hi, int backup) {
  float *restrict w = s->p->data + lo;
  float *restrict g = s->p->grad + lo;
  const size_t n = hi - lo;
  const float gs = o->i[STROP_OPT_MAXIMIZE] ? -1.0f : 1.0f;
  const float wdf = (float)wd, mom = (float)o->f[STROP_OPT_MOMENTUM];
  const float damp1 = (float)(1.0 - o->f[STROP_OPT_DAMPENING]);
  const float nlr = (float)(-lr);
  const int has_wd = wd != 0.0;
  const int first = !s->sgd_buf_valid, nest = o->i[STROP_OPT_NESTEROV];
  if (o->f[STROP_OPT_MOMENTUM] == 0.0) {
    if (backup)
      return sgd_loop(w, g, NULL, n, gs, wdf, mom, damp1, nlr, has_wd, first, nest, 0, 1);
    return sgd_loop(w, g, NULL, n, gs, wdf, mom, damp1, nlr, has_wd, first, nest, 0, 0);
  }
  float *restrict buf = s->buf[0] + lo;
  if (backup) return sgd_loop(w, g, buf, n, gs, wdf, mom, damp1, nlr, has_wd, first, nest, 1, 1);
  return sgd_loop(w, g, buf, n, gs, wdf, mom, damp1, nlr, has_wd, first, nest, 1, 0);
}

/* One Adam loop per (amsgrad, backup) pair: the flags are constants after inlining, so the
 * loop is branch-free and vectorisable. */
STROP__INLINE int adam_loop(float *restrict w, float *restrict g, float *restrict m,
                            float *restrict v, float *restrict mx, size_t n, float gs, float b1f,
                            float b2f, float omb1, float omb2, float epsf, float wdf, float dec,
                            float bc2s, float nss, int l2, int dw, const int ams,
                            const int backup) {
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    float d = gs * g[k];
    const float wo = w[k];
    float wk = wo;
    if (dw) wk = wk * dec; /* param.mul_(1 - lr * weight_decay) */
    if (l2) d = d + wdf * wk;
    const float mo = m[k], vo = v[k];
    float mk = mo * b1f;
    mk = mk + omb1 * d;
    float vk = vo * b2f;
    vk = vk + (omb2 * d) * d;
    float den, xo = 0.0f, x = 0.0f;
    if (ams) {
      xo = mx[k];
      x = vk > xo ? vk : xo;
      den = sqrtf(x) / bc2s + epsf;
    } else {
      den = sqrtf(vk) / bc2s + epsf;
    }
    const float wn = wk + (nss * mk) / den;
    const int ok = FINITE(wn) & FINITE(vk); /* mk non-finite makes wn so; x = max(vk, xo) */
    const float m1 = ok ? mk : mo, v1 = ok ? vk : vo, x1 = ok ? x : xo;
    const float w1 = (backup | ok) ? wn : wo;
    m[k] = m1;
    v[k] = v1;
    if (ams) mx[k] = x1;
    w[k] = w1;
    if (backup) g[k] = wo;
    bad |= !ok;
  }
  return bad;
}

STROP__CLONES static int step_adam(const strop_optimizer *o, slot *s, double lr, double wd,
                                   int decoupled, size_t lo, size_t hi, int backup) {
  float *restrict w = s->p->data + lo;
  float *restrict g = s->p->grad + lo;
  float *restrict m = s->buf[0] + lo;
  float *restrict v = s->buf[1] + lo;
  float *restrict mx = s->buf[2] ? s->buf[2] + lo : NULL;
  const size_t n = hi - lo;
  const double b1 = o->f[STROP_OPT_BETA1], b2 = o->f[STROP_OPT_BETA2];
  const float gs = o->i[STROP_OPT_MAXIMIZE] ? -1.0f : 1.0f;
  const double step = (double)s->step;
  const double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
  const double step_size = lr / bc1;
  const float bc2s = (float)sqrt(bc2), nss = (float)(-step_size);
  const float b1f = (float)b1, b2f = (float)b2, omb1 = (float)(1.0 - b1),
              omb2 = (float)(1.0 - b2);
  const float epsf = (float)o->f[STROP_OPT_EPS];
  const float wdf = (float)wd, dec = (float)(1.0 - lr * wd);
  const int l2 = !decoupled && wd != 0.0, ams = o->i[STROP_OPT_AMSGRAD];
  const int dw = decoupled && wd != 0.0;
#define ADAM(a, bk) \
  adam_loop(w, g, m, v, mx, n, gs, b1f, b2f, omb1, omb2, epsf, wdf, dec, bc2s, nss, l2, dw, a, bk)
  if (ams) return backup ? ADAM(1, 1) : ADAM(1, 0);
  return backup ? ADAM(0, 1) : ADAM(0, 0);
#undef ADAM
}

/* One RMSprop loop per (centered, momentum, backup) triple: the flags are constants after
 * inlining, so each loop is branch-free and vectorisable. */
STROP__INLINE int rmsprop_loop(float *restrict w, float *restrict g, float *restrict sq,
                               float *restrict mb, float *restrict ga, size_t n, float gs,
                               float af, float oma, float epsf, float wdf, float nlr, float mom,
                               int has_wd, const int centered, const int use_mom,
                               const int backup) {
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    const float wo = w[k];
    float d = gs * g[k];
    if (has_wd) d = d + wdf * wo;
    const float qo = sq[k];
    float q = qo * af;
    q = q + (oma * d) * d;
    float avg, ao = 0.0f, a = 0.0f;
    if (centered) {
      ao = ga[k];
      a = ao * af;
      a = a + oma * d;
      avg = sqrtf(q + (-1.0f * a) * a); /* a non-finite a makes avg, then wn, NaN */
    } else {
      avg = sqrtf(q);
    }
    avg = avg + epsf;
    float wn, bo = 0.0f, b = 0.0f;
    if (use_mom) {
      bo = mb[k];
      b = bo * mom;
      b = b + d / avg;
      wn = wo + nlr * b;
    } else {
      wn = wo + (nlr * d) / avg;
    }
    const int ok = FINITE(wn) & FINITE(q); /* an infinite q would make the step 0 */
    const float q1 = ok ? q : qo, a1 = ok ? a : ao, b1 = ok ? b : bo;
    const float w1 = (backup | ok) ? wn : wo;
    sq[k] = q1;
    if (centered) ga[k] = a1;
    if (use_mom) mb[k] = b1;
    w[k] = w1;
    if (backup) g[k] = wo;
    bad |= !ok;
  }
  return bad;
}

STROP__CLONES static int step_rmsprop(const strop_optimizer *o, slot *s, double lr, double wd,
                                      size_t lo, size_t hi, int backup) {
  const float gs = o->i[STROP_OPT_MAXIMIZE] ? -1.0f : 1.0f;
  const double alpha = o->f[STROP_OPT_ALPHA];
  const float af = (float)alpha, oma = (float)(1.0 - alpha), epsf = (float)o->f[STROP_OPT_EPS];
  const float wdf = (float)wd, nlr = (float)(-lr), mom = (float)o->f[STROP_OPT_MOMENTUM];
  const int has_wd = wd != 0.0, centered = o->i[STROP_OPT_CENTERED];
  const int use_mom = o->f[STROP_OPT_MOMENTUM] > 0.0;
  float *w = s->p->data + lo, *sq = s->buf[0] + lo;
  float *mb = s->buf[1] ? s->buf[1] + lo : NULL, *ga = s->buf[2] ? s->buf[2] + lo : NULL;
  float *g = s->p->grad + lo;
  const size_t n = hi - lo;
#define RMS(c, m, bk) \
  rmsprop_loop(w, g, sq, mb, ga, n, gs, af, oma, epsf, wdf, nlr, mom, has_wd, c, m, bk)
  if (backup) {
    if (centered && use_mom) return RMS(1, 1, 1);
    if (centered) return RMS(1, 0, 1);
    if (use_mom) return RMS(0, 1, 1);
    return RMS(0, 0, 1);
  }
  if (centered && use_mom) return RMS(1, 1, 0);
  if (centered) return RMS(1, 0, 0);
  if (use_mom) return RMS(0, 1, 0);
  return RMS(0, 0, 0);
#undef RMS
}

STROP__INLINE int adagrad_loop(float *restrict w, float *restrict g, float *restrict sum,
                               size_t n, float gs, float nclr, float wdf, float epsf, int has_wd,
                               const int backup) {
  int bad = 0;
  for (size_t k = 0; k < n; k++) {
    const float wo = w[k];
    float d = gs * g[k];
    if (has_wd) d = d + wdf * wo;
    const float so = sum[k];
    const float q = so + d * d;
    const float sd = sqrtf(q) + epsf;
    const float wn = wo + (nclr * d) / sd;
    const int ok = FINITE(wn) & FINITE(q);
    const float s1 = ok ? q : so, w1 = (backup | ok) ? wn : wo;
    sum[k] = s1;
    w[k] = w1;
    if (backup) g[k] = wo;
    bad |= !ok;
  }
  return bad;
}

STROP__CLONES static int step_adagrad(const strop_optimizer *o, slot *s, double lr, double wd,
                                      size_t lo, size_t hi, int backup) {
  float *restrict w = s->p->data + lo;
  float *restrict g = s->p->grad + lo;
  float *restrict sum = s->buf[0] + lo;
  const size_t n = hi - lo;
  const float gs = o->i[STROP_OPT_MAXIMIZE] ? -1.0f : 1.0f;
  const double clr = lr / (1.0 + ((double)s->step - 1.0) * o->f[STROP_OPT_LR_DECAY]);
  const float nclr = (float)(-clr), wdf = (float)wd, epsf = (float)o->f[STROP_OPT_EPS];
  const int has_wd = wd != 0.0;
  if (backup) return adagrad_loop(w, g, sum, n, gs, nclr, wdf, epsf, has_wd, 1);
  return adagrad_loop(w, g, sum, n, gs, nclr, wdf, epsf, has_wd, 0);
}

/* One parameter's update over elements [lo, hi) (the rules are elementwise, so the split
 * across threads does not change a bit). Each chunk reports its non-finite values in bad[]. */
typedef struct step_job {
  const strop_optimizer *o;
  slot *s;
  double lr, wd;
  int backup;
  int bad[64]; /* per chunk: strop__par_chunks makes at most 64 */
} step_job;

static void step_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  step_job *j = ctx;
  const size_t a = (size_t)lo, b = (size_t)hi;
  int bad;
  switch (j->o->kind) {
    case STROP_OPTIM_SGD: bad = step_sgd(j->o, j->s, j->lr, j->wd, a, b, j->backup); break;
    case STROP_OPTIM_ADAM: bad = step_adam(j->o, j->s, j->lr, j->wd, 0, a, b, j->backup); break;
    case STROP_OPTIM_ADAMW: bad = step_adam(j->o, j->s, j->lr, j->wd, 1, a, b, j->backup); break;
    case STROP_OPTIM_RMSPROP:
      bad = step_rmsprop(j->o, j->s, j->lr, j->wd, a, b, j->backup);
      break;
    default: bad = step_adagrad(j->o, j->s, j->lr, j->wd, a, b, j->backup); break;
  }
  j->bad[chunk & 63] |= bad;
}

/* Elements per thread below which splitting an update costs more than it saves. */
#define STEP_GRAIN 32768

/* The update. backup: the caller owns the gradients (they are garbage afterwards), so a step
 * that met a non-finite value is refused whole: every weight goes back (from the gradient
 * slots), and the step counters with it. Without backup only the elements that met one keep
 * their old values. */
static strop_status optim_step(strop_optimizer *opt, int backup, const char *fn) {
  if (opt->model) strop__model_grads_unplan(opt->model);
  strop_status st = sync(opt);
  if (st) return st;
  st = ensure_state(opt, 0);
  if (st) return st;
  int failed = -1;
  for (int j = 0; j < opt->n_slots && failed < 0; j++) {
    slot *s = &opt->slots[j];
    if (!s->p->grad) continue;
    strop__param_grad_fresh(s->p); /* zero, if the trainer's lazy zero_grad left it stale */
    step_job job;
    memset(&job, 0, sizeof job);
    job.o = opt;
    job.s = s;
    job.lr = opt->f[STROP_OPT_LR] * (double)s->p->lr_mult;
    job.wd = s->p->no_decay ? 0.0 : opt->f[STROP_OPT_WEIGHT_DECAY];
    job.backup = backup;
    s->sgd_buf_was_valid = s->sgd_buf_valid;
    if (opt->kind != STROP_OPTIM_SGD) s->step++;
    strop__par_for((int64_t)s->numel, STEP_GRAIN, step_range, &job);
    s->p->version++; /* what is derived from the values (a BF16 copy) is stale */
    if (opt->kind == STROP_OPTIM_SGD) s->sgd_buf_valid = 1;
    int bad = 0;
    for (int c = 0; c < 64; c++) bad |= job.bad[c];
    if (bad) failed = j;
  }
  if (failed < 0) {
    opt->step_count++;
    return STROP_OK;
  }
  const slot *f = &opt->slots[failed];
  if (!backup) {
    opt->step_count++;
    return strop__err(STROP_E_NUMERIC,
                      "%s: the update of '%s' made a value NaN or infinite (lr "
                      "%g); those values kept their old ones, the rest of the step was applied",
                      fn, f->name, opt->f[STROP_OPT_LR]);
  }
  for (int j = 0; j <= failed; j++) {
    slot *s = &opt->slots[j];
    if (!s->p->grad) continue;
    memcpy(s->p->data, s->p->grad, s->numel * sizeof(float)); /* the old weights */
    s->p->version++;
    if (opt->kind != STROP_OPTIM_SGD) s->step--;
    s->sgd_buf_valid = s->sgd_buf_was_valid;
  }
  return strop__err(STROP_E_NUMERIC,
                    "%s: the update of '%s' made a value NaN or infinite (lr "
                    "%g); the update was not applied",
                    fn, f->name, opt->f[STROP_OPT_LR]);
}

strop_status strop_optimizer_step(strop_optimizer *opt) {
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "strop_optimizer_step: opt is NULL");
  return optim_step(opt, 0, "strop_optimizer_step");
}

strop_status strop__optim_step_owning_grads(strop_optimizer *opt) {
  return optim_step(opt, 1, "strop_optimizer_step");
}

strop_status strop__optim_prepare(strop_optimizer *opt) {
  strop_status st = sync(opt);
  return st ? st : ensure_state(opt, 1);
}

strop_status strop_optimizer_zero_grad(strop_optimizer *opt) {
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "strop_optimizer_zero_grad: opt is NULL");
  strop__param **ps;
  int n;
  if (opt->model) strop__model_grads_unplan(opt->model);
  source(opt, &ps, &n);
  for (int k = 0; k < n; k++) {
    strop__param *p = ps[k];
    if (!is_trainable(p) || !p->grad) continue;
    if (p->grad_planned) { /* zero by its mark: the next training forward plans it again */
      p->grad_stale = 1;
      p->grad_checked = 0;
    } else {
      strop__param_zero_grad(p);
    }
  }
  return STROP_OK;
}

/* ---- create / free ---- */

static strop_status create_common(int kind, strop_model *m, strop__param **params, int n,
                                  strop_optimizer **out, const char *fn) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (kind < 0 || kind > STROP_OPTIM_ADAGRAD)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown optimizer kind %d", fn, kind);
  strop_optimizer *o = strop__calloc(1, sizeof *o);
  if (!o) return STROP__NOMEM(fn);
  o->kind = kind;
  o->model = m;
  set_defaults(o);
  if (!m && n > 0) {
    o->params = strop__malloc((size_t)n * sizeof *o->params);
    if (!o->params) {
      strop__free(o);
      return STROP__NOMEM(fn);
    }
    memcpy(o->params, params, (size_t)n * sizeof *o->params);
    o->n_params = n;
  }
  strop_status st = sync(o);
  if (st) {
    strop_optimizer_free(o);
    strop__err_prefix("%s", fn);
    return st;
  }
  *out = o;
  return STROP_OK;
}

strop_status strop__optimizer_create_params(int kind, strop__param **params, int n,
                                            strop_optimizer **out) {
  static const char fn[] = "strop__optimizer_create_params";
  if (n < 0 || (n > 0 && !params)) {
    if (out) *out = NULL;
    return strop__err(STROP_E_INVALID_ARG, "%s: bad parameter array (n = %d)", fn, n);
  }
  return create_common(kind, NULL, params, n, out, fn);
}

strop_status strop_optimizer_create(strop_model *model, int kind, strop_optimizer **out) {
  static const char fn[] = "strop_optimizer_create";
  if (!model) {
    if (out) *out = NULL;
    return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  }
  if (!model->finalized) {
    if (out) *out = NULL;
    return strop__err(STROP_E_STATE, "%s: the model is not finalized", fn);
  }
  return create_common(kind, model, NULL, 0, out, fn);
}

/* ---- staging (checkpoint loads): a copy with the knobs and no state, then a swap ---- */

strop_status strop__optim_stage(const strop_optimizer *o, strop_optimizer **out) {
  strop_status st = create_common(o->kind, o->model, o->params, o->n_params, out,
                                  "strop_trainer_load_checkpoint");
  if (st) return st;
  memcpy((*out)->f, o->f, sizeof o->f);
  memcpy((*out)->i, o->i, sizeof o->i);
  return STROP_OK;
}

void strop__optim_commit(strop_optimizer *live, strop_optimizer *staged) {
  strop_optimizer tmp = *live;
  *live = *staged;
  *staged = tmp;
  strop_optimizer_free(staged);
}

const char *strop__optim_kind_name(int kind) {
  return kind >= 0 && kind < 5 ? KIND_NAMES[kind] : "unknown";
}

void strop_optimizer_free(strop_optimizer *opt) {
  if (!opt) return;
  for (int j = 0; j < opt->n_slots; j++) slot_free(&opt->slots[j]);
  strop__free(opt->slots);
  strop__free(opt->params);
  strop__free(opt);
}

/* ---- state listing ---- */

int strop__optim_state_count(const strop_optimizer *o) {
  if (!o) return 0;
  int c = 1;
  for (int j = 0; j < o->n_slots; j++) {
    const slot *s = &o->slots[j];
    if (!s->has_state) continue;
    c++;
    for (int b = 0; b < N_BUFS; b++)
      if (s->buf[b] && !(o->kind == STROP_OPTIM_SGD && !s->sgd_buf_valid)) c++;
  }
  return c;
}

strop_status strop__optim_state_at(const strop_optimizer *o, int i, strop__state_entry *out) {
  static const char fn[] = "strop__optim_state_at";
  if (!o || !out) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  if (i == 0) {
    out->name = "optim.step";
    out->dtype = STROP__STATE_I64;
    out->data = (void *)&o->step_count;
    out->numel = 1;
    return STROP_OK;
  }
  int c = 1;
  for (int j = 0; j < o->n_slots; j++) {
    slot *s = &o->slots[j];
    if (!s->has_state) continue;
    if (c++ == i) {
      out->name = s->state_names[0];
      out->dtype = STROP__STATE_I64;
      out->data = &s->step;
      out->numel = 1;
      return STROP_OK;
    }
    for (int b = 0; b < N_BUFS; b++) {
      if (!s->buf[b] || (o->kind == STROP_OPTIM_SGD && !s->sgd_buf_valid)) continue;
      if (c++ == i) {
        out->name = s->state_names[1 + b];
        out->dtype = STROP__STATE_F32;
        out->data = s->buf[b];
        out->numel = s->numel;
        return STROP_OK;
      }
    }
  }
  return strop__err(STROP_E_INVALID_ARG, "%s: index %d out of range [0, %d)", fn, i, c);
}

strop_status strop__optim_state_set(strop_optimizer *o, const char *name, int dtype,
                                    const void *data, size_t numel) {
  static const char fn[] = "strop__optim_state_set";
  if (!o || !name || !data) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  if (strcmp(name, "optim.step") == 0) {
    if (dtype != STROP__STATE_I64 || numel != 1)
      return strop__err(STROP_E_SHAPE, "%s: '%s' must be one int64", fn, name);
    o->step_count = *(const int64_t *)data;
    return STROP_OK;
  }
  strop_status st = sync(o);
  if (st) return st;
  const char *dot = strrchr(name, '.');
  if (strncmp(name, "optim.", 6) != 0 || !dot || dot <= name + 6)
    return strop__err(STROP_E_NOT_FOUND, "%s: '%s' is not an optimizer state name", fn, name);
  size_t plen = (size_t)(dot - (name + 6));
  const char *suffix = dot + 1;
  slot *s = NULL;
  for (int j = 0; j < o->n_slots; j++) {
    if (strlen(o->slots[j].name) == plen && strncmp(o->slots[j].name, name + 6, plen) == 0) {
      s = &o->slots[j];
      break;
    }
  }
  if (!s)
    return strop__err(STROP_E_NOT_FOUND, "%s: '%s': no trainable parameter '%.*s'", fn, name,
                      (int)plen, name + 6);
  if (strcmp(suffix, "step") == 0) {
    if (dtype != STROP__STATE_I64 || numel != 1)
      return strop__err(STROP_E_SHAPE, "%s: '%s' must be one int64", fn, name);
    s->step = *(const int64_t *)data;
    s->has_state |= 1;
    return STROP_OK;
  }
  int b = 0;
  while (b < N_BUFS && !(BUF_NAMES[o->kind][b] && strcmp(BUF_NAMES[o->kind][b], suffix) == 0))
    b++;
  if (b == N_BUFS)
    return strop__err(STROP_E_NOT_FOUND, "%s: '%s': %s keeps no '%s' state", fn, name,
                      KIND_NAMES[o->kind], suffix);
  if (dtype != STROP__STATE_F32 || numel != s->numel)
    return strop__err(STROP_E_SHAPE, "%s: '%s' must be %zu float32 values, got %zu (dtype %d)",
                      fn, name, s->numel, numel, dtype);
  if (!s->buf[b]) {
    s->buf[b] = buf_alloc(o, s->numel, b);
    if (!s->buf[b]) return STROP__NOMEM(fn);
  }
  memcpy(s->buf[b], data, numel * sizeof(float));
  s->has_state |= 1 | (1 << (b + 1));
  if (o->kind == STROP_OPTIM_SGD) s->sgd_buf_valid = 1;
  return STROP_OK;
}
