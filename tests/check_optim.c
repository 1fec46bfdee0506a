/* SPDX-License-Identifier: MIT */
/* strop tests — optim suite: optimizers and schedulers against torch.optim fixtures
 * (tests/fixtures/gen_optim.py), frozen parameters, groups, state save/restore, errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "graph/graph.h"
#include "optim/optim.h"
#include "strop/strop.h"
#include "testutil.h"

#define STEPS 20
#define SCHED_STEPS 50

/* ---- a minimal safetensors reader for the fixtures ---- */

typedef struct fixture {
  char *buf;
  size_t len;
  const char *header;
  size_t hlen;
  const char *base;
} fixture;

static fixture fx_load(const char *file) {
  char path[1024];
  snprintf(path, sizeof path, "%s/optim/%s", STROP_TEST_DATA, file);
  fixture f = {0};
  f.buf = strop_test_read_file(path, &f.len);
  ck_assert_msg(f.buf != NULL, "cannot read %s", path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | (unsigned char)f.buf[i];
  f.header = f.buf + 8;
  f.hlen = (size_t)n;
  f.base = f.buf + 8 + n;
  return f;
}

/* Copies tensor `name` (F32 or F64 as asked) into a new malloc'd array; *numel gets its size. */
static void *fx_get(const fixture *f, const char *name, size_t elem, size_t *numel) {
  char key[256];
  snprintf(key, sizeof key, "\"%s\":{", name);
  const char *p = strstr(f->header, key);
  ck_assert_msg(p != NULL && p < f->header + f->hlen, "fixture has no tensor %s", name);
  const char *dt = strstr(p, "\"dtype\":\"");
  ck_assert_int_eq(dt[9] == 'F' && dt[10] == (elem == 8 ? '6' : '3'), 1);
  const char *o = strstr(p, "\"data_offsets\":[");
  ck_assert_ptr_nonnull(o);
  unsigned long long b = 0, e = 0;
  ck_assert_int_eq(sscanf(o + 16, "%llu,%llu", &b, &e), 2);
  void *out = malloc((size_t)(e - b) + 1);
  memcpy(out, f->base + b, (size_t)(e - b));
  if (numel) *numel = (size_t)(e - b) / elem;
  return out;
}

/* ---- hand-built parameters: the fixture's three plus a frozen one ---- */

#define NP 4
static const char *const PNAMES[NP] = {"layer.weight", "layer.bias", "head.weight",
                                       "frozen.weight"};
static const size_t PNUMEL[NP] = {24, 6, 12, 5};

typedef struct tparams {
  strop__param p[NP];
  strop__param *ptrs[NP];
} tparams;

static void tp_init(tparams *t, const fixture *f) {
  memset(t, 0, sizeof *t);
  for (int i = 0; i < NP; i++) {
    strop__param *p = &t->p[i];
    p->name = (char *)PNAMES[i];
    p->rank = 1;
    p->dims[0] = (int64_t)PNUMEL[i];
    p->numel = PNUMEL[i];
    p->data = calloc(p->numel, sizeof(float));
    p->grad = calloc(p->numel, sizeof(float));
    p->trainable = i < 3;
    p->lr_mult = 1.0f;
    if (f && i < 3) {
      char key[64];
      snprintf(key, sizeof key, "init.%s", PNAMES[i]);
      size_t n = 0;
      float *v = fx_get(f, key, 4, &n);
      ck_assert_uint_eq(n, p->numel);
      memcpy(p->data, v, n * sizeof(float));
      free(v);
    } else {
      for (size_t k = 0; k < p->numel; k++) p->data[k] = 0.25f * (float)(k + 1) + (float)i;
    }
    for (size_t k = 0; k < p->numel; k++) p->grad[k] = 0.1f * (float)((k % 7) + 1) - 0.3f;
    t->ptrs[i] = p;
  }
}

static void tp_free(tparams *t) {
  for (int i = 0; i < NP; i++) {
    free(t->p[i].data);
    free(t->p[i].grad);
  }
}

static void tp_copy_data(tparams *dst, const tparams *src) {
  for (int i = 0; i < NP; i++) {
    memcpy(dst->p[i].data, src->p[i].data, src->p[i].numel * sizeof(float));
    dst->p[i].trainable = src->p[i].trainable;
    dst->p[i].lr_mult = src->p[i].lr_mult;
    dst->p[i].no_decay = src->p[i].no_decay;
  }
}

/* ---- the optimizer configurations of gen_optim.py ---- */

typedef struct knob {
  int key;
  float v;
  int is_int;
} knob;

typedef struct ocfg {
  const char *name;
  int kind;
  int groups;
  knob k[8];
} ocfg;

#define KF(key, v) \
  { key, v, 0 }
#define KI(key, v) \
  { key, (float)(v), 1 }
#define KEND \
  { -1, 0, 0 }

static const ocfg OCFGS[] = {
    {"sgd_plain", STROP_OPTIM_SGD, 0, {KF(STROP_OPT_LR, 0.1f), KEND}},
    {"sgd_momentum",
     STROP_OPTIM_SGD,
     0,
     {KF(STROP_OPT_LR, 0.05f), KF(STROP_OPT_MOMENTUM, 0.9f), KF(STROP_OPT_DAMPENING, 0.1f),
      KF(STROP_OPT_WEIGHT_DECAY, 0.01f), KEND}},
    {"sgd_nesterov",
     STROP_OPTIM_SGD,
     1,
     {KF(STROP_OPT_LR, 0.05f), KF(STROP_OPT_MOMENTUM, 0.9f), KI(STROP_OPT_NESTEROV, 1),
      KF(STROP_OPT_WEIGHT_DECAY, 0.001f), KEND}},
    {"sgd_maximize",
     STROP_OPTIM_SGD,
     0,
     {KF(STROP_OPT_LR, 0.1f), KF(STROP_OPT_MOMENTUM, 0.5f), KI(STROP_OPT_MAXIMIZE, 1), KEND}},
    {"adam_default", STROP_OPTIM_ADAM, 0, {KF(STROP_OPT_LR, 0.01f), KEND}},
    {"adam_wd_amsgrad",
     STROP_OPTIM_ADAM,
     1,
     {KF(STROP_OPT_LR, 0.01f), KF(STROP_OPT_BETA1, 0.8f), KF(STROP_OPT_BETA2, 0.99f),
      KF(STROP_OPT_EPS, 1e-6f), KF(STROP_OPT_WEIGHT_DECAY, 0.1f), KI(STROP_OPT_AMSGRAD, 1),
      KEND}},
    {"adamw_default", STROP_OPTIM_ADAMW, 0, {KF(STROP_OPT_LR, 0.01f), KEND}},
    {"adamw_amsgrad",
     STROP_OPTIM_ADAMW,
     1,
     {KF(STROP_OPT_LR, 0.005f), KF(STROP_OPT_BETA1, 0.85f), KF(STROP_OPT_BETA2, 0.995f),
      KF(STROP_OPT_WEIGHT_DECAY, 0.05f), KI(STROP_OPT_AMSGRAD, 1), KEND}},
    {"rmsprop_default", STROP_OPTIM_RMSPROP, 0, {KF(STROP_OPT_LR, 0.01f), KEND}},
    {"rmsprop_momentum_centered",
     STROP_OPTIM_RMSPROP,
     1,
     {KF(STROP_OPT_LR, 0.001f), KF(STROP_OPT_ALPHA, 0.9f), KF(STROP_OPT_MOMENTUM, 0.8f),
      KI(STROP_OPT_CENTERED, 1), KF(STROP_OPT_WEIGHT_DECAY, 0.01f), KEND}},
    {"rmsprop_centered",
     STROP_OPTIM_RMSPROP,
     0,
     {KF(STROP_OPT_LR, 0.01f), KI(STROP_OPT_CENTERED, 1), KF(STROP_OPT_EPS, 1e-6f), KEND}},
    {"adagrad_default", STROP_OPTIM_ADAGRAD, 0, {KF(STROP_OPT_LR, 0.01f), KEND}},
    {"adagrad_all",
     STROP_OPTIM_ADAGRAD,
     1,
     {KF(STROP_OPT_LR, 0.1f), KF(STROP_OPT_LR_DECAY, 0.01f),
      KF(STROP_OPT_INITIAL_ACCUMULATOR_VALUE, 0.1f), KF(STROP_OPT_EPS, 1e-8f),
      KF(STROP_OPT_WEIGHT_DECAY, 0.01f), KEND}},
};
#define N_OCFGS ((int)(sizeof OCFGS / sizeof OCFGS[0]))

static void apply_cfg(strop_optimizer *o, tparams *t, const ocfg *c) {
  for (int i = 0; c->k[i].key >= 0; i++) {
    if (c->k[i].is_int)
      ck_assert_int_eq(strop_optimizer_set_int(o, c->k[i].key, (int)c->k[i].v), STROP_OK);
    else ck_assert_int_eq(strop_optimizer_set_float(o, c->k[i].key, c->k[i].v), STROP_OK);
  }
  if (c->groups) {
    t->p[1].no_decay = 1;   /* layer.bias: torch group weight_decay 0 */
    t->p[2].lr_mult = 2.0f; /* head.weight: torch group lr * 2 */
  }
}

static void load_grads(const fixture *f, tparams *t, int step) {
  for (int i = 0; i < 3; i++) {
    char key[64];
    snprintf(key, sizeof key, "grad.%s", PNAMES[i]);
    size_t n = 0;
    float *g = fx_get(f, key, 4, &n);
    ck_assert_uint_eq(n, STEPS * t->p[i].numel);
    memcpy(t->p[i].grad, g + (size_t)step * t->p[i].numel, t->p[i].numel * sizeof(float));
    free(g);
  }
}

static int state_has(const strop_optimizer *o, const char *needle) {
  int n = strop__optim_state_count(o);
  for (int i = 0; i < n; i++) {
    strop__state_entry e;
    ck_assert_int_eq(strop__optim_state_at(o, i, &e), STROP_OK);
    if (strstr(e.name, needle)) return 1;
  }
  return 0;
}

START_TEST(optimizer_parity) {
  fixture f = fx_load("optimizers.safetensors");
  const ocfg *c = &OCFGS[_i];
  tparams t;
  tp_init(&t, &f);
  float frozen0[5];
  memcpy(frozen0, t.p[3].data, sizeof frozen0);
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(c->kind, t.ptrs, NP, &o), STROP_OK);
  apply_cfg(o, &t, c);
  for (int s = 0; s < STEPS; s++) {
    load_grads(&f, &t, s);
    ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
  }
  ck_assert_int_eq(strop_optimizer_step_count(o), STEPS);
  double worst = 0.0;
  for (int i = 0; i < 3; i++) {
    char key[128];
    snprintf(key, sizeof key, "%s.final.%s", c->name, PNAMES[i]);
    size_t n = 0;
    float *want = fx_get(&f, key, 4, &n);
    size_t where = 0;
    double r = strop_test_max_rel(t.p[i].data, want, n, 1e-7, &where);
    ck_assert_msg(r <= 1e-6, "%s %s[%zu]: got %.9g want %.9g (rel %.3g)", c->name, PNAMES[i],
                  where, (double)t.p[i].data[where], (double)want[where], r);
    if (r > worst) worst = r;
    free(want);
  }
  fprintf(stderr, "optim parity %-28s max rel %.3g\n", c->name, worst);
  /* the frozen parameter (which even has a gradient) neither moved nor got state */
  ck_assert_int_eq(memcmp(frozen0, t.p[3].data, sizeof frozen0), 0);
  ck_assert_int_eq(state_has(o, "frozen"), 0);
  ck_assert_int_eq(state_has(o, "optim.layer.weight.step"), 1);
  strop_optimizer_free(o);
  tp_free(&t);
  free(f.buf);
}
END_TEST

/* ---- schedulers ---- */

typedef struct scfg {
  const char *name;
  int kind;
  knob k[10];
  int64_t ms[4];
  int n_ms;
} scfg;

static const scfg SCFGS[] = {
    {"constant_default", STROP_SCHED_CONSTANT, {KEND}, {0}, 0},
    {"constant",
     STROP_SCHED_CONSTANT,
     {KF(STROP_SCH_FACTOR, 0.5f), KI(STROP_SCH_TOTAL_ITERS, 4), KEND},
     {0},
     0},
    {"step",
     STROP_SCHED_STEP,
     {KI(STROP_SCH_STEP_SIZE, 7), KF(STROP_SCH_GAMMA, 0.5f), KEND},
     {0},
     0},
    {"multistep", STROP_SCHED_MULTISTEP, {KF(STROP_SCH_GAMMA, 0.3f), KEND}, {5, 12, 30}, 3},
    {"exponential", STROP_SCHED_EXPONENTIAL, {KF(STROP_SCH_GAMMA, 0.95f), KEND}, {0}, 0},
    {"cosine",
     STROP_SCHED_COSINE,
     {KI(STROP_SCH_T_MAX, 20), KF(STROP_SCH_ETA_MIN, 0.001f), KEND},
     {0},
     0},
    {"cosine_restarts",
     STROP_SCHED_COSINE_RESTARTS,
     {KI(STROP_SCH_T_0, 5), KI(STROP_SCH_T_MULT, 2), KF(STROP_SCH_ETA_MIN, 0.01f), KEND},
     {0},
     0},
    {"one_cycle_cos",
     STROP_SCHED_ONE_CYCLE,
     {KF(STROP_SCH_MAX_LR, 1.0f), KI(STROP_SCH_TOTAL_STEPS, 50), KEND},
     {0},
     0},
    {"one_cycle_linear",
     STROP_SCHED_ONE_CYCLE,
     {KF(STROP_SCH_MAX_LR, 0.5f), KI(STROP_SCH_TOTAL_STEPS, 60), KF(STROP_SCH_PCT_START, 0.25f),
      KI(STROP_SCH_ANNEAL, STROP_ANNEAL_LINEAR), KF(STROP_SCH_DIV_FACTOR, 10.0f),
      KF(STROP_SCH_FINAL_DIV_FACTOR, 100.0f), KEND},
     {0},
     0},
    {"warmup_constant",
     STROP_SCHED_CONSTANT,
     {KI(STROP_SCH_WARMUP_STEPS, 5), KF(STROP_SCH_WARMUP_START_FACTOR, 0.1f),
      KF(STROP_SCH_FACTOR, 0.5f), KI(STROP_SCH_TOTAL_ITERS, 4), KEND},
     {0},
     0},
    {"warmup_cosine",
     STROP_SCHED_COSINE,
     {KI(STROP_SCH_WARMUP_STEPS, 5), KF(STROP_SCH_WARMUP_START_FACTOR, 0.1f),
      KI(STROP_SCH_T_MAX, 30), KF(STROP_SCH_ETA_MIN, 0.001f), KEND},
     {0},
     0},
    {"warmup_step",
     STROP_SCHED_STEP,
     {KI(STROP_SCH_WARMUP_STEPS, 8), KF(STROP_SCH_WARMUP_START_FACTOR, 0.25f),
      KI(STROP_SCH_STEP_SIZE, 10), KF(STROP_SCH_GAMMA, 0.5f), KEND},
     {0},
     0},
    {"warmup_multistep",
     STROP_SCHED_MULTISTEP,
     {KI(STROP_SCH_WARMUP_STEPS, 3), KF(STROP_SCH_WARMUP_START_FACTOR, 0.5f),
      KF(STROP_SCH_GAMMA, 0.1f), KEND},
     {4, 20},
     2},
    {"warmup_exponential",
     STROP_SCHED_EXPONENTIAL,
     {KI(STROP_SCH_WARMUP_STEPS, 10), KF(STROP_SCH_WARMUP_START_FACTOR, 0.2f),
      KF(STROP_SCH_GAMMA, 0.9f), KEND},
     {0},
     0},
    {"warmup_restarts",
     STROP_SCHED_COSINE_RESTARTS,
     {KI(STROP_SCH_WARMUP_STEPS, 4), KF(STROP_SCH_WARMUP_START_FACTOR, 0.1f),
      KI(STROP_SCH_T_0, 6), KI(STROP_SCH_T_MULT, 1), KF(STROP_SCH_ETA_MIN, 0.0f), KEND},
     {0},
     0},
    {"plateau_min_rel",
     STROP_SCHED_PLATEAU,
     {KF(STROP_SCH_FACTOR, 0.5f), KI(STROP_SCH_PATIENCE, 2), KF(STROP_SCH_THRESHOLD, 0.01f),
      KI(STROP_SCH_COOLDOWN, 1), KF(STROP_SCH_MIN_LR, 0.01f), KEND},
     {0},
     0},
    {"plateau_max_abs",
     STROP_SCHED_PLATEAU,
     {KI(STROP_SCH_MODE, STROP_PLATEAU_MAX), KF(STROP_SCH_FACTOR, 0.2f),
      KI(STROP_SCH_PATIENCE, 1), KF(STROP_SCH_THRESHOLD, 0.05f),
      KI(STROP_SCH_THRESHOLD_MODE, STROP_THRESHOLD_ABS), KI(STROP_SCH_COOLDOWN, 0),
      KF(STROP_SCH_MIN_LR, 0.0f), KEND},
     {0},
     0},
};
#define N_SCFGS ((int)(sizeof SCFGS / sizeof SCFGS[0]))

/* An SGD optimizer (lr 0.1, momentum 0.9, as in the generator) over t's parameters. */
static strop_optimizer *sched_opt(tparams *t) {
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_SGD, t->ptrs, NP, &o), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_LR, 0.1f), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_MOMENTUM, 0.9f), STROP_OK);
  return o;
}

static strop_scheduler *sched_make(strop_optimizer *o, const scfg *c) {
  strop_scheduler *s = NULL;
  ck_assert_int_eq(strop_scheduler_create(o, c->kind, &s), STROP_OK);
  for (int i = 0; c->k[i].key >= 0; i++) {
    if (c->k[i].is_int)
      ck_assert_int_eq(strop_scheduler_set_int(s, c->k[i].key, (int)c->k[i].v), STROP_OK);
    else ck_assert_int_eq(strop_scheduler_set_float(s, c->k[i].key, c->k[i].v), STROP_OK);
  }
  if (c->n_ms)
    ck_assert_int_eq(strop_scheduler_set_ints(s, STROP_SCH_MILESTONES, c->ms, c->n_ms), STROP_OK);
  return s;
}

static void check_lr(const char *name, int step, double got, double want) {
  double rel = fabs(got - want) / (fabs(want) > 1e-300 ? fabs(want) : 1e-300);
  ck_assert_msg(rel <= 1e-12, "%s step %d: lr %.17g, torch %.17g", name, step, got, want);
}

START_TEST(scheduler_parity) {
  fixture f = fx_load("schedulers.safetensors");
  const scfg *c = &SCFGS[_i];
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = sched_opt(&t);
  strop_scheduler *s = sched_make(o, c);
  char key[128];
  snprintf(key, sizeof key, "%s.lr", c->name);
  size_t n = 0;
  double *want = fx_get(&f, key, 8, &n);
  ck_assert_uint_eq(n, SCHED_STEPS + 1);
  double *mom = NULL, *metrics = NULL;
  if (c->kind == STROP_SCHED_ONE_CYCLE) {
    snprintf(key, sizeof key, "%s.momentum", c->name);
    mom = fx_get(&f, key, 8, NULL);
  }
  if (c->kind == STROP_SCHED_PLATEAU) {
    snprintf(key, sizeof key, "%s.metrics", c->name);
    metrics = fx_get(&f, key, 8, NULL);
  }
  for (int k = 0; k <= SCHED_STEPS; k++) {
    if (k > 0) {
      ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
      if (metrics) ck_assert_int_eq(strop_scheduler_step_metric(s, metrics[k - 1]), STROP_OK);
      else ck_assert_int_eq(strop_scheduler_step(s), STROP_OK);
    }
    check_lr(c->name, k, strop_scheduler_get_lr(s), want[k]);
    check_lr(c->name, k, strop__optim_get_lr(o), want[k]);
    if (mom) {
      float m = 0;
      ck_assert_int_eq(strop_optimizer_get_float(o, STROP_OPT_MOMENTUM, &m), STROP_OK);
      ck_assert_msg(fabs((double)m - mom[k]) <= 1e-7, "%s step %d: momentum %.9g, torch %.9g",
                    c->name, k, (double)m, mom[k]);
    }
  }
  free(want);
  free(mom);
  free(metrics);
  strop_scheduler_free(s);
  strop_optimizer_free(o);
  tp_free(&t);
  free(f.buf);
}
END_TEST

START_TEST(plateau_warmup) {
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = sched_opt(&t);
  strop_scheduler *s = NULL;
  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_PLATEAU, &s), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_int(s, STROP_SCH_WARMUP_STEPS, 4), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_WARMUP_START_FACTOR, 0.5f), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_int(s, STROP_SCH_PATIENCE, 0), STROP_OK);
  ck_assert(fabs(strop_scheduler_get_lr(s) - 0.05) < 1e-15);
  for (int k = 0; k < 4; k++) ck_assert_int_eq(strop_scheduler_step(s), STROP_OK);
  ck_assert(fabs(strop_scheduler_get_lr(s) - 0.1) < 1e-15); /* the ramp reaches the base lr */
  ck_assert_int_eq(strop_scheduler_step(s), STROP_OK);
  ck_assert(fabs(strop_scheduler_get_lr(s) - 0.1) < 1e-15);
  ck_assert_int_eq(strop_scheduler_step_metric(s, 1.0), STROP_OK);
  ck_assert_int_eq(strop_scheduler_step_metric(s, 1.0), STROP_OK); /* no improvement */
  ck_assert(fabs(strop__optim_get_lr(o) - 0.01) < 1e-15);
  ck_assert_int_eq(strop_scheduler_step_metric(s, NAN), STROP_E_INVALID_ARG);
  strop_scheduler_free(s);
  strop_optimizer_free(o);
  tp_free(&t);
}
END_TEST

/* ---- frozen parameters, surgery between stages, groups ---- */

START_TEST(frozen_and_sync) {
  tparams t;
  tp_init(&t, NULL);
  int64_t live0 = strop__alloc_live();
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_ADAMW, t.ptrs, NP, &o), STROP_OK);
  ck_assert_int_eq(strop__optim_state_count(o), 1); /* only optim.step before the first step */
  float frozen0[5];
  memcpy(frozen0, t.p[3].data, sizeof frozen0);
  ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
  /* 3 trainable x (step, exp_avg, exp_avg_sq) + optim.step */
  ck_assert_int_eq(strop__optim_state_count(o), 10);
  ck_assert_int_eq(state_has(o, "frozen"), 0);
  ck_assert_int_eq(memcmp(frozen0, t.p[3].data, sizeof frozen0), 0); /* no decay drift */
  int64_t live1 = strop__alloc_live();

  /* stage 2: unfreeze frozen.weight, freeze layer.bias */
  t.p[3].trainable = 1;
  t.p[1].trainable = 0;
  float bias0[6];
  memcpy(bias0, t.p[1].data, sizeof bias0);
  ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
  ck_assert_int_eq(state_has(o, "optim.frozen.weight.exp_avg"), 1);
  ck_assert_int_eq(state_has(o, "layer.bias"), 0);
  ck_assert_int_eq(memcmp(bias0, t.p[1].data, sizeof bias0), 0);
  ck_assert_int_eq(strop__optim_state_count(o), 10);
  ck_assert_int_eq(strop__alloc_live(), live1 - 2 + 2); /* bias's 2 buffers out, 2 in */
  /* per-parameter steps: the newly trainable one restarts Adam's bias correction */
  for (int i = 0; i < strop__optim_state_count(o); i++) {
    strop__state_entry e;
    ck_assert_int_eq(strop__optim_state_at(o, i, &e), STROP_OK);
    if (strcmp(e.name, "optim.frozen.weight.step") == 0) ck_assert_int_eq(*(int64_t *)e.data, 1);
    if (strcmp(e.name, "optim.layer.weight.step") == 0) ck_assert_int_eq(*(int64_t *)e.data, 2);
    if (strcmp(e.name, "optim.step") == 0) ck_assert_int_eq(*(int64_t *)e.data, 2);
  }
  /* explicit sync after freezing everything drops all state */
  for (int i = 0; i < NP; i++) t.p[i].trainable = 0;
  ck_assert_int_eq(strop_optimizer_sync(o), STROP_OK);
  ck_assert_int_eq(strop__optim_state_count(o), 1);
  strop_optimizer_free(o);
  ck_assert_int_eq(strop__alloc_live(), live0);
  tp_free(&t);
}
END_TEST

START_TEST(zero_grad_and_no_grad) {
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_SGD, t.ptrs, NP, &o), STROP_OK);
  ck_assert_int_eq(strop_optimizer_zero_grad(o), STROP_OK);
  for (int i = 0; i < 3; i++)
    for (size_t k = 0; k < t.p[i].numel; k++) ck_assert_float_eq(t.p[i].grad[k], 0.0f);
  ck_assert_float_ne(t.p[3].grad[0], 0.0f); /* frozen: not ours */
  /* a trainable parameter without a gradient is skipped, as torch skips grad None */
  free(t.p[0].grad);
  t.p[0].grad = NULL;
  float w0 = t.p[0].data[0];
  ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
  ck_assert_float_eq(t.p[0].data[0], w0);
  strop_optimizer_free(o);
  tp_free(&t);
}
END_TEST

/* ---- bound to a real model: trainable set followed across "surgery" ---- */

START_TEST(model_bound) {
  int64_t in_shape[1] = {4};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in_shape, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc1", "linear", "in_features=4 out_features=3", NULL),
                   STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "act", "relu", NULL, NULL), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "head", "linear", "in_features=3 out_features=2", NULL),
                   STROP_OK);
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &o), STROP_E_STATE);
  ck_assert_int_eq(strop_model_finalize(m, 7), STROP_OK);
  strop__param *w1 = strop__model_param_find(m, "fc1.weight");
  strop__param *b1 = strop__model_param_find(m, "fc1.bias");
  strop__param *hw = strop__model_param_find(m, "head.weight");
  ck_assert_ptr_nonnull(w1);
  ck_assert_ptr_nonnull(hw);
  w1->trainable = b1->trainable = 0; /* freeze the trunk */
  ck_assert_int_eq(strop__model_sync_grads(m), STROP_OK);
  ck_assert_int_eq(strop__model_zero_grad(m), STROP_OK);
  ck_assert_ptr_null(w1->grad);
  ck_assert_int_eq(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &o), STROP_OK);
  for (size_t k = 0; k < hw->numel; k++) hw->grad[k] = 0.5f;
  float w1_0[12], hw_0 = hw->data[0];
  memcpy(w1_0, w1->data, sizeof w1_0);
  ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
  ck_assert_int_eq(memcmp(w1_0, w1->data, sizeof w1_0), 0);
  ck_assert_float_ne(hw->data[0], hw_0);
  ck_assert_int_eq(state_has(o, "optim.head.weight.exp_avg_sq"), 1);
  ck_assert_int_eq(state_has(o, "fc1"), 0);
  /* stage 2: unfreeze fc1.weight; the next step gives it state of its own */
  w1->trainable = 1;
  ck_assert_int_eq(strop__model_sync_grads(m), STROP_OK);
  ck_assert_int_eq(strop_optimizer_zero_grad(o), STROP_OK);
  for (size_t k = 0; k < w1->numel; k++) w1->grad[k] = 0.25f;
  ck_assert_int_eq(strop_optimizer_step(o), STROP_OK);
  ck_assert_int_eq(state_has(o, "optim.fc1.weight.exp_avg"), 1);
  ck_assert_int_eq(state_has(o, "fc1.bias"), 0);
  ck_assert_int_ne(memcmp(w1_0, w1->data, sizeof w1_0), 0);
  strop_optimizer_free(o);
  strop_model_free(m);
}
END_TEST

/* ---- checkpoint state: save mid-run, restore into fresh handles, continue bitwise ---- */

typedef struct saved {
  char name[128];
  int dtype;
  size_t numel;
  void *data;
} saved;

static int save_optim(const strop_optimizer *o, saved *out) {
  int n = strop__optim_state_count(o);
  for (int i = 0; i < n; i++) {
    strop__state_entry e;
    ck_assert_int_eq(strop__optim_state_at(o, i, &e), STROP_OK);
    snprintf(out[i].name, sizeof out[i].name, "%s", e.name);
    out[i].dtype = e.dtype;
    out[i].numel = e.numel;
    size_t sz = e.dtype == STROP__STATE_F32 ? 4 : 8;
    out[i].data = malloc(e.numel * sz);
    memcpy(out[i].data, e.data, e.numel * sz);
  }
  return n;
}

START_TEST(state_roundtrip) {
  fixture f = fx_load("optimizers.safetensors");
  static const int pick[] = {2, 5, 7, 9,
                             12}; /* sgd_nesterov, adam/adamw amsgrad, rmsprop, adagrad */
  for (int pi = 0; pi < 5; pi++) {
    const ocfg *c = &OCFGS[pick[pi]];
    tparams a, b;
    tp_init(&a, &f);
    tp_init(&b, &f);
    strop_optimizer *oa = NULL, *ob = NULL;
    ck_assert_int_eq(strop__optimizer_create_params(c->kind, a.ptrs, NP, &oa), STROP_OK);
    apply_cfg(oa, &a, c);
    strop_scheduler *sa = NULL, *sb = NULL;
    const scfg *sc = &SCFGS[10]; /* warmup_cosine */
    sa = sched_make(oa, sc);
    for (int s = 0; s < 10; s++) {
      load_grads(&f, &a, s);
      ck_assert_int_eq(strop_optimizer_step(oa), STROP_OK);
      ck_assert_int_eq(strop_scheduler_step(sa), STROP_OK);
    }
    saved st[64];
    int n = save_optim(oa, st);
    saved ss[16];
    int ns = strop__sched_state_count(sa);
    for (int i = 0; i < ns; i++) {
      strop__state_entry e;
      ck_assert_int_eq(strop__sched_state_at(sa, i, &e), STROP_OK);
      snprintf(ss[i].name, sizeof ss[i].name, "%s", e.name);
      ss[i].dtype = e.dtype;
      ss[i].data = malloc(8);
      memcpy(ss[i].data, e.data, 8);
    }
    /* "resume": fresh handles configured from the recipe, weights and state restored */
    tp_copy_data(&b, &a);
    ck_assert_int_eq(strop__optimizer_create_params(c->kind, b.ptrs, NP, &ob), STROP_OK);
    apply_cfg(ob, &b, c);
    sb = sched_make(ob, sc);
    for (int i = 0; i < n; i++) {
      ck_assert_int_eq(
          strop__optim_state_set(ob, st[i].name, st[i].dtype, st[i].data, st[i].numel), STROP_OK);
      free(st[i].data);
    }
    for (int i = 0; i < ns; i++) {
      ck_assert_int_eq(strop__sched_state_set(sb, ss[i].name, ss[i].dtype, ss[i].data, 1),
                       STROP_OK);
      free(ss[i].data);
    }
    ck_assert_int_eq(strop__optim_state_count(ob), n);
    for (int s = 10; s < STEPS; s++) {
      load_grads(&f, &a, s);
      load_grads(&f, &b, s);
      ck_assert_int_eq(strop_optimizer_step(oa), STROP_OK);
      ck_assert_int_eq(strop_optimizer_step(ob), STROP_OK);
      ck_assert_int_eq(strop_scheduler_step(sa), STROP_OK);
      ck_assert_int_eq(strop_scheduler_step(sb), STROP_OK);
      ck_assert_msg(strop_scheduler_get_lr(sa) == strop_scheduler_get_lr(sb), "%s lr", c->name);
    }
    for (int i = 0; i < 3; i++)
      ck_assert_msg(memcmp(a.p[i].data, b.p[i].data, a.p[i].numel * sizeof(float)) == 0,
                    "%s: resumed run differs in %s", c->name, PNAMES[i]);
    ck_assert_int_eq(strop_optimizer_step_count(ob), STEPS);
    strop_scheduler_free(sa);
    strop_scheduler_free(sb);
    strop_optimizer_free(oa);
    strop_optimizer_free(ob);
    tp_free(&a);
    tp_free(&b);
  }
  free(f.buf);
}
END_TEST

START_TEST(state_errors) {
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_ADAM, t.ptrs, NP, &o), STROP_OK);
  float v[24] = {0};
  int64_t one = 1;
  ck_assert_int_eq(strop__optim_state_set(o, "optim.nope.exp_avg", STROP__STATE_F32, v, 24),
                   STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "nope"));
  ck_assert_int_eq(
      strop__optim_state_set(o, "optim.frozen.weight.exp_avg", STROP__STATE_F32, v, 5),
      STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop__optim_state_set(o, "optim.layer.weight.sum", STROP__STATE_F32, v, 24),
                   STROP_E_NOT_FOUND);
  ck_assert_int_eq(
      strop__optim_state_set(o, "optim.layer.weight.exp_avg", STROP__STATE_F32, v, 23),
      STROP_E_SHAPE);
  ck_assert_int_eq(strop__optim_state_set(o, "optim.layer.weight.step", STROP__STATE_F32, v, 1),
                   STROP_E_SHAPE);
  ck_assert_int_eq(strop__optim_state_set(o, "bogus", STROP__STATE_I64, &one, 1),
                   STROP_E_NOT_FOUND);
  ck_assert_int_eq(strop__optim_state_count(o), 1); /* nothing was half-restored */
  strop__state_entry e;
  ck_assert_int_eq(strop__optim_state_at(o, 1, &e), STROP_E_INVALID_ARG);
  strop_scheduler *s = NULL;
  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_COSINE, &s), STROP_OK);
  double d = 1.0;
  ck_assert_int_eq(strop__sched_state_set(s, "sched.lr", STROP__STATE_I64, &d, 1), STROP_E_SHAPE);
  ck_assert_int_eq(strop__sched_state_set(s, "sched.nope", STROP__STATE_F64, &d, 1),
                   STROP_E_NOT_FOUND);
  strop_scheduler_free(s);
  strop_optimizer_free(o);
  tp_free(&t);
}
END_TEST

/* ---- knob validation ---- */

START_TEST(knob_errors) {
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_SGD, t.ptrs, NP, &o), STROP_OK);
  float lr = 0;
  ck_assert_int_eq(strop_optimizer_get_float(o, STROP_OPT_LR, &lr), STROP_OK);
  ck_assert_float_eq(lr, 1e-3f);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_LR, -0.5f), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "lr must be in [0, inf], got -0.5"));
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_LR, NAN), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_get_float(o, STROP_OPT_LR, &lr), STROP_OK);
  ck_assert_float_eq(lr, 1e-3f); /* unchanged */
  ck_assert_int_eq(strop_optimizer_set_int(o, STROP_OPT_NESTEROV, 1), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "nesterov = 1"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "momentum > 0"));
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_MOMENTUM, 0.9f), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_int(o, STROP_OPT_NESTEROV, 1), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_MOMENTUM, 0.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_DAMPENING, 0.5f), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "dampening"));
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_BETA1, 0.9f), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'beta1' does not apply to SGD"));
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_NESTEROV, 1.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_int(o, STROP_OPT_LR, 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_int(o, 999, 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_int(o, -1, 1), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_int(o, STROP_OPT_MAXIMIZE, 2), STROP_E_INVALID_ARG);
  int iv = -1;
  ck_assert_int_eq(strop_optimizer_get_int(o, STROP_OPT_NESTEROV, &iv), STROP_OK);
  ck_assert_int_eq(iv, 1);
  ck_assert_int_eq(strop_optimizer_get_int(NULL, STROP_OPT_NESTEROV, &iv), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_get_float(o, STROP_OPT_LR, NULL), STROP_E_INVALID_ARG);
  strop_optimizer_free(o);

  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_ADAM, t.ptrs, NP, &o), STROP_OK);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_BETA1, 1.0f), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "beta1 must be in [0, 1), got 1"));
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_BETA2, -0.1f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_EPS, -1e-8f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_WEIGHT_DECAY, -1.0f),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_get_float(o, STROP_OPT_MOMENTUM, &lr), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_get_kind(o), STROP_OPTIM_ADAM);
  strop_optimizer_free(o);

  /* ranges */
  double lo = 0, hi = 0;
  int fl = 0;
  ck_assert_int_eq(strop_optimizer_knob_range(STROP_OPTIM_ADAM, STROP_OPT_BETA1, &lo, &hi, &fl),
                   STROP_OK);
  ck_assert(lo == 0.0 && hi == 1.0 && (fl & STROP_KNOB_HI_OPEN) && !(fl & STROP_KNOB_INT));
  ck_assert_int_eq(
      strop_optimizer_knob_range(STROP_OPTIM_SGD, STROP_OPT_NESTEROV, NULL, NULL, &fl), STROP_OK);
  ck_assert(fl & STROP_KNOB_INT);
  ck_assert_int_eq(strop_optimizer_knob_range(STROP_OPTIM_SGD, STROP_OPT_BETA1, &lo, &hi, &fl),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_knob_range(9, STROP_OPT_LR, &lo, &hi, &fl),
                   STROP_E_INVALID_ARG);
  ck_assert_str_eq(strop_optimizer_knob_name(STROP_OPT_INITIAL_ACCUMULATOR_VALUE),
                   "initial_accumulator_value");
  ck_assert_ptr_null(strop_optimizer_knob_name(100));

  /* creation */
  ck_assert_int_eq(strop__optimizer_create_params(7, t.ptrs, NP, &o), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(o);
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_SGD, NULL, 3, &o),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_create(NULL, STROP_OPTIM_SGD, &o), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_step(NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_zero_grad(NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_sync(NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_optimizer_step_count(NULL), -1);
  ck_assert_int_eq(strop_optimizer_get_kind(NULL), -1);
  strop_optimizer_free(NULL);
  tp_free(&t);
}
END_TEST

START_TEST(scheduler_errors) {
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = sched_opt(&t);
  strop_scheduler *s = NULL;
  ck_assert_int_eq(strop_scheduler_create(o, 42, &s), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(s);
  ck_assert_int_eq(strop_scheduler_create(NULL, STROP_SCHED_STEP, &s), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_STEP, &s), STROP_OK);
  ck_assert_int_eq(strop_scheduler_step(s), STROP_E_STATE); /* step_size unset */
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "step_size"));
  ck_assert_int_eq(strop_scheduler_last_step(s), 0);
  ck_assert_int_eq(strop_scheduler_set_int(s, STROP_SCH_STEP_SIZE, 0), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "step_size must be in [1,"));
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_GAMMA, -1.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_T_MAX, 3.0f), STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'T_max' does not apply"));
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_STEP_SIZE, 3.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_WARMUP_START_FACTOR, 0.0f),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_step_metric(s, 1.0), STROP_E_INVALID_ARG);
  float g = 0;
  ck_assert_int_eq(strop_scheduler_get_float(s, STROP_SCH_GAMMA, &g), STROP_OK);
  ck_assert_float_eq(g, 0.1f);
  strop_scheduler_free(s);

  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_MULTISTEP, &s), STROP_OK);
  int64_t bad[3] = {5, 5, 9};
  ck_assert_int_eq(strop_scheduler_set_ints(s, STROP_SCH_MILESTONES, bad, 3),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "milestones must be increasing"));
  int64_t good[2] = {3, 8}, back[4] = {0};
  int n = 0;
  ck_assert_int_eq(strop_scheduler_set_ints(s, STROP_SCH_MILESTONES, good, 2), STROP_OK);
  ck_assert_int_eq(strop_scheduler_get_ints(s, STROP_SCH_MILESTONES, back, 1, &n), STROP_OK);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(back[0], 3);
  ck_assert_int_eq(strop_scheduler_set_ints(s, STROP_SCH_GAMMA, good, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_set_ints(s, STROP_SCH_MILESTONES, NULL, -1),
                   STROP_E_INVALID_ARG);
  strop_scheduler_free(s);

  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_ONE_CYCLE, &s), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_MAX_LR, 0.0f), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_MAX_LR, 1.0f), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_int(s, STROP_SCH_TOTAL_STEPS, 3), STROP_OK);
  for (int k = 0; k < 3; k++) ck_assert_int_eq(strop_scheduler_step(s), STROP_OK);
  double lr = strop_scheduler_get_lr(s);
  ck_assert_int_eq(strop_scheduler_step(s), STROP_E_STATE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "total_steps"));
  ck_assert(strop_scheduler_get_lr(s) == lr);
  ck_assert_int_eq(strop_scheduler_last_step(s), 3);
  strop_scheduler_free(s);

  double lo, hi;
  int fl;
  ck_assert_int_eq(
      strop_scheduler_knob_range(STROP_SCHED_PLATEAU, STROP_SCH_FACTOR, &lo, &hi, &fl), STROP_OK);
  ck_assert(hi == 1.0 && (fl & STROP_KNOB_HI_OPEN));
  ck_assert_int_eq(
      strop_scheduler_knob_range(STROP_SCHED_CONSTANT, STROP_SCH_FACTOR, &lo, &hi, &fl),
      STROP_OK);
  ck_assert(!(fl & STROP_KNOB_HI_OPEN));
  ck_assert_int_eq(
      strop_scheduler_knob_range(STROP_SCHED_MULTISTEP, STROP_SCH_MILESTONES, NULL, NULL, &fl),
      STROP_OK);
  ck_assert(fl & STROP_KNOB_LIST);
  ck_assert_int_eq(strop_scheduler_knob_range(STROP_SCHED_STEP, STROP_SCH_T_0, NULL, NULL, NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_str_eq(strop_scheduler_knob_name(STROP_SCH_T_MAX), "T_max");
  ck_assert_ptr_null(strop_scheduler_knob_name(-3));
  ck_assert_int_eq(strop_scheduler_step(NULL), STROP_E_INVALID_ARG);
  ck_assert(strop_scheduler_get_lr(NULL) == 0.0);
  ck_assert_int_eq(strop_scheduler_last_step(NULL), -1);
  strop_scheduler_free(NULL);
  strop_optimizer_free(o);
  tp_free(&t);
}
END_TEST

/* ---- allocation failures: create + knobs + first step, scheduler create + milestones ---- */

typedef struct sweep_ctx {
  tparams *t;
  int kind;
  strop_optimizer *o;
  strop_scheduler *s;
} sweep_ctx;

static int op_optim(void *vctx) {
  sweep_ctx *c = vctx;
  strop_optimizer *o = NULL;
  int st = strop__optimizer_create_params(c->kind, c->t->ptrs, NP, &o);
  if (st) return st;
  if (c->kind == STROP_OPTIM_ADAM) st = strop_optimizer_set_int(o, STROP_OPT_AMSGRAD, 1);
  if (c->kind == STROP_OPTIM_RMSPROP) {
    st = strop_optimizer_set_float(o, STROP_OPT_MOMENTUM, 0.5f);
    if (!st) st = strop_optimizer_set_int(o, STROP_OPT_CENTERED, 1);
  }
  if (!st) st = strop_optimizer_step(o);
  if (st) {
    /* the failed step left nothing behind: no state, no parameter moved */
    if (strop__optim_state_count(o) != 1) st = STROP_E_INTERNAL;
    strop_optimizer_free(o);
    return st;
  }
  c->o = o;
  return STROP_OK;
}

static void cleanup_optim(void *vctx) {
  sweep_ctx *c = vctx;
  strop_optimizer_free(c->o);
  c->o = NULL;
}

static int op_sched(void *vctx) {
  sweep_ctx *c = vctx;
  strop_scheduler *s = NULL;
  int st = strop_scheduler_create(c->o, STROP_SCHED_MULTISTEP, &s);
  if (st) return st;
  int64_t ms[3] = {2, 4, 6};
  st = strop_scheduler_set_ints(s, STROP_SCH_MILESTONES, ms, 3);
  if (st) {
    strop_scheduler_free(s);
    return st;
  }
  c->s = s;
  return STROP_OK;
}

static void cleanup_sched(void *vctx) {
  sweep_ctx *c = vctx;
  strop_scheduler_free(c->s);
  c->s = NULL;
}

START_TEST(alloc_failures) {
  tparams t;
  tp_init(&t, NULL);
  float before[24];
  memcpy(before, t.p[0].data, sizeof before);
  static const int kinds[5] = {STROP_OPTIM_SGD, STROP_OPTIM_ADAM, STROP_OPTIM_ADAMW,
                               STROP_OPTIM_RMSPROP, STROP_OPTIM_ADAGRAD};
  for (int k = 0; k < 5; k++) {
    sweep_ctx c = {&t, kinds[k], NULL, NULL};
    memcpy(t.p[0].data, before, sizeof before);
    ck_assert_int_ge(strop_test_alloc_sweep(op_optim, cleanup_optim, &c), 2);
  }
  sweep_ctx c = {&t, STROP_OPTIM_SGD, NULL, NULL};
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_SGD, t.ptrs, NP, &c.o), STROP_OK);
  ck_assert_int_ge(strop_test_alloc_sweep(op_sched, cleanup_sched, &c), 2);
  /* a failing first step moves nothing */
  ck_assert_int_eq(strop_optimizer_set_float(c.o, STROP_OPT_MOMENTUM, 0.9f), STROP_OK);
  memcpy(before, t.p[0].data, sizeof before);
  strop__alloc_fail_at(2);
  ck_assert_int_eq(strop_optimizer_step(c.o), STROP_E_NOMEM);
  strop__alloc_fail_at(0);
  ck_assert_int_eq(memcmp(before, t.p[0].data, sizeof before), 0);
  ck_assert_int_eq(strop_optimizer_step_count(c.o), 0);
  strop_optimizer_free(c.o);
  tp_free(&t);
}
END_TEST

/* ---- the float-knob widening that makes 0.95f mean PyTorch's 0.95 ---- */

START_TEST(knob_widening) {
  ck_assert(strop__knob_widen(0.95f) == 0.95);
  ck_assert(strop__knob_widen(3e-4f) == 3e-4);
  ck_assert(strop__knob_widen(1e-8f) == 1e-8);
  ck_assert(strop__knob_widen(0.999f) == 0.999);
  ck_assert(strop__knob_widen(0.0f) == 0.0);
  ck_assert(strop__knob_widen(1.0f / 3.0f) == (double)(1.0f / 3.0f) ||
            (float)strop__knob_widen(1.0f / 3.0f) == 1.0f / 3.0f);
}
END_TEST

/* Issue 18, item 2: a knob's range that reaches infinity does not take infinity itself (lr =
 * +inf used to be accepted and the next step wrote inf into every weight). */
START_TEST(infinite_knobs_are_refused) {
  tparams t;
  tp_init(&t, NULL);
  strop_optimizer *o = NULL;
  ck_assert_int_eq(strop__optimizer_create_params(STROP_OPTIM_SGD, t.ptrs, NP, &o), STROP_OK);
  static const int keys[] = {STROP_OPT_LR, STROP_OPT_MOMENTUM, STROP_OPT_WEIGHT_DECAY};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    float before = 0, after = 0;
    ck_assert_int_eq(strop_optimizer_get_float(o, keys[i], &before), STROP_OK);
    strop_clear_error();
    ck_assert_int_eq(strop_optimizer_set_float(o, keys[i], INFINITY), STROP_E_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), strop_optimizer_knob_name(keys[i])));
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "got inf"));
    ck_assert_int_eq(strop_optimizer_get_float(o, keys[i], &after), STROP_OK);
    ck_assert(before == after);
  }
  strop_scheduler *s = NULL;
  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_ONE_CYCLE, &s), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_MAX_LR, INFINITY), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_PCT_START, INFINITY),
                   STROP_E_INVALID_ARG);
  strop_scheduler_free(s);
  ck_assert_int_eq(strop_scheduler_create(o, STROP_SCHED_STEP, &s), STROP_OK);
  ck_assert_int_eq(strop_scheduler_set_float(s, STROP_SCH_GAMMA, INFINITY), STROP_E_INVALID_ARG);
  strop_scheduler_free(s);
  strop_optimizer_free(o);
  tp_free(&t);
}
END_TEST

/* Issue 18, item 2, the optimizer's own guard: an update that overflows never stores a NaN or
 * infinite value; the call says so, naming the parameter, and the gradients are only read. */
START_TEST(overflow_stores_nothing_nonfinite) {
  tparams t;
  tp_init(&t, NULL);
  static const int kinds[] = {STROP_OPTIM_SGD, STROP_OPTIM_ADAM, STROP_OPTIM_RMSPROP,
                              STROP_OPTIM_ADAGRAD};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    tparams u;
    tp_init(&u, NULL);
    strop_optimizer *o = NULL;
    ck_assert_int_eq(strop__optimizer_create_params(kinds[i], u.ptrs, NP, &o), STROP_OK);
    ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_LR, 3e38f), STROP_OK);
    ck_assert_int_eq(strop_optimizer_set_float(o, STROP_OPT_WEIGHT_DECAY, 1e3f), STROP_OK);
    float g0[24];
    memcpy(g0, u.p[0].grad, sizeof g0);
    strop_clear_error();
    ck_assert_int_eq(strop_optimizer_step(o), STROP_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(strop_last_error(), "layer.weight"));
    ck_assert_mem_eq(g0, u.p[0].grad, sizeof g0);
    for (int p = 0; p < NP; p++) {
      float *w = u.p[p].data;
      for (size_t k = 0; k < u.p[p].numel; k++)
        ck_assert_msg(isfinite(w[k]), "kind %d: %s[%zu] = %g", kinds[i], PNAMES[p], k,
                      (double)w[k]);
    }
    for (int k = 0; k < strop__optim_state_count(o); k++) {
      strop__state_entry e;
      ck_assert_int_eq(strop__optim_state_at(o, k, &e), STROP_OK);
      if (e.dtype == STROP__STATE_F32)
        for (size_t j = 0; j < e.numel; j++) ck_assert(isfinite(((float *)e.data)[j]));
    }
    strop_optimizer_free(o);
    tp_free(&u);
  }
  tp_free(&t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim");
  TCase *tc = tcase_create("parity");
  tcase_add_loop_test(tc, optimizer_parity, 0, N_OCFGS);
  tcase_add_loop_test(tc, scheduler_parity, 0, N_SCFGS);
  tcase_add_test(tc, plateau_warmup);
  suite_add_tcase(s, tc);
  tc = tcase_create("params");
  tcase_add_test(tc, frozen_and_sync);
  tcase_add_test(tc, zero_grad_and_no_grad);
  tcase_add_test(tc, model_bound);
  suite_add_tcase(s, tc);
  tc = tcase_create("state");
  tcase_add_test(tc, state_roundtrip);
  tcase_add_test(tc, state_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, knob_errors);
  tcase_add_test(tc, scheduler_errors);
  tcase_add_test(tc, alloc_failures);
  tcase_add_test(tc, knob_widening);
  tcase_add_test(tc, infinite_knobs_are_refused);
  tcase_add_test(tc, overflow_stores_nothing_nonfinite);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
