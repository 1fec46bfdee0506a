/* SPDX-License-Identifier: MIT */
/* strop — learning-rate schedulers: torch.optim.lr_scheduler's formulas in double, the same
 * chainable (recursive) forms, and warm-up as SequentialLR([LinearLR, main], [warmup_steps]). */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "optim/optim.h"

#define N_SK 27
#define PI 3.141592653589793 /* math.pi */

enum {
  S_CONST = 1 << 0,
  S_STEP = 1 << 1,
  S_MS = 1 << 2,
  S_EXP = 1 << 3,
  S_COS = 1 << 4,
  S_CWR = 1 << 5,
  S_OC = 1 << 6,
  S_PL = 1 << 7,
  S_ALL = 255
};

static const char *const ANNEAL_WORDS[] = {"cos", "linear", NULL};
static const char *const MODE_WORDS[] = {"min", "max", NULL};
static const char *const THRESHOLD_WORDS[] = {"rel", "abs", NULL};

/* The scheduler's settings, declared once (see core/settings.h). */
#define KNOB(k) [k] = {.key = k, .ident = #k
#define FLOAT .type = STROP__SET_FLOAT
#define INT(lo_) .type = STROP__SET_INT, .lo = lo_, .hi = INT_MAX
#define FLAG .type = STROP__SET_FLAG, .lo = 0, .hi = 1
#define ENUM(w) .type = STROP__SET_ENUM, .lo = 0, .hi = 1, .words = w
#define REQUIRED .flags = STROP__KNOB_REQUIRED
static const strop__setting SK[N_SK] = {KNOB(STROP_SCH_GAMMA),
                                        .name = "gamma",
                                        FLOAT,
                                        .kinds = S_STEP | S_MS | S_EXP,
                                        .def = 0.1,
                                        .lo = 0,
                                        .hi = HUGE_VAL,
                                        .doc = "Factor the lr is multiplied by at each decay."},
                            KNOB(STROP_SCH_STEP_SIZE), .name = "step_size", INT(1),
                            .kinds = S_STEP, REQUIRED, .doc = "Steps between two decays."
}
, KNOB(STROP_SCH_MILESTONES), .name = "milestones", .type = STROP__SET_LIST, .kinds = S_MS,
                              .lo = 1, .hi = (double)INT64_MAX,
                              .doc = "Steps at which the lr decays, increasing."
}
, KNOB(STROP_SCH_T_MAX), .name = "T_max", .alias = "t_max", INT(1), .kinds = S_COS, REQUIRED,
                         .doc = "Steps of half a cosine period."
}
, KNOB(STROP_SCH_ETA_MIN), .name = "eta_min", FLOAT, .kinds = S_COS | S_CWR, .lo = 0,
                           .hi = HUGE_VAL, .doc = "Lowest lr of the cosine."
}
, KNOB(STROP_SCH_T_0), .name = "T_0", .alias = "t_0", INT(1), .kinds = S_CWR, REQUIRED,
                       .doc = "Steps of the first period."
}
, KNOB(STROP_SCH_T_MULT), .name = "T_mult", .alias = "t_mult", INT(1), .kinds = S_CWR, .def = 1,
                          .doc = "Growth factor of the period after each restart."
}
, KNOB(STROP_SCH_MAX_LR), .name = "max_lr", FLOAT, .kinds = S_OC, .lo = 0, .hi = HUGE_VAL,
                          .flags = STROP__KNOB_LO_OPEN | STROP__KNOB_REQUIRED,
                          .doc = "Peak lr of the cycle."
}
, KNOB(STROP_SCH_TOTAL_STEPS), .name = "total_steps", INT(1), .kinds = S_OC, REQUIRED,
                               .doc = "Steps in the cycle."
}
, KNOB(STROP_SCH_PCT_START), .name = "pct_start", FLOAT, .kinds = S_OC, .def = 0.3, .lo = 0,
                             .hi = 1, .doc = "Fraction of the cycle spent raising the lr."
}
, KNOB(STROP_SCH_ANNEAL), .name = "anneal_strategy", .alias = "anneal", ENUM(ANNEAL_WORDS),
                          .kinds = S_OC,
                          .doc = "Shape of the annealing: cos (STROP_ANNEAL_COS) or linear."
}
, KNOB(STROP_SCH_DIV_FACTOR), .name = "div_factor", FLOAT, .kinds = S_OC, .def = 25.0, .lo = 0,
                              .hi = HUGE_VAL, .flags = STROP__KNOB_LO_OPEN | STROP__KNOB_INF_OK,
                              .doc = "The cycle starts at max_lr / div_factor (+inf: at 0)."
}
, KNOB(STROP_SCH_FINAL_DIV_FACTOR),
    .name = "final_div_factor", FLOAT, .kinds = S_OC, .def = 1e4, .lo = 0, .hi = HUGE_VAL,
    .flags = STROP__KNOB_LO_OPEN | STROP__KNOB_INF_OK,
    .doc = "The cycle ends at its starting lr / final_div_factor (+inf: at 0)."
}
, KNOB(STROP_SCH_CYCLE_MOMENTUM), .name = "cycle_momentum", FLAG, .kinds = S_OC, .def = 1,
                                  .doc = "Cycle the momentum (Adam's beta1) against the lr."
}
, KNOB(STROP_SCH_BASE_MOMENTUM), .name = "base_momentum", FLOAT, .kinds = S_OC, .def = 0.85,
                                 .lo = 0, .hi = 1, .flags = STROP__KNOB_HI_OPEN,
                                 .doc = "Lowest momentum of the cycle."
}
, KNOB(STROP_SCH_MAX_MOMENTUM), .name = "max_momentum", FLOAT, .kinds = S_OC, .def = 0.95,
                                .lo = 0, .hi = 1, .flags = STROP__KNOB_HI_OPEN,
                                .doc = "Highest momentum of the cycle."
}
, KNOB(STROP_SCH_MODE), .name = "mode", ENUM(MODE_WORDS), .kinds = S_PL,
                        .doc = "Whether a lower (min) or a higher (max) metric is better."
}
, KNOB(STROP_SCH_FACTOR),
    .name = "factor", FLOAT, .kinds = S_CONST | S_PL, .def = 1.0, .lo = 0, .hi = 1,
    .per_kind = {S_PL, 0.1, STROP__KNOB_HI_OPEN},
    .doc = "Plateau: factor of each reduction; constant: factor of the first total_iters "
           "steps (1 = constant)."
}
, KNOB(STROP_SCH_PATIENCE),
    .name = "patience", INT(0), .kinds = S_PL, .def = 10,
    .doc = "Metric steps without improvement tolerated before a reduction."
}
, KNOB(STROP_SCH_THRESHOLD), .name = "threshold", FLOAT, .kinds = S_PL, .def = 1e-4, .lo = 0,
                             .hi = HUGE_VAL,
                             .doc = "Smallest change that counts as an improvement."
}
, KNOB(STROP_SCH_THRESHOLD_MODE),
    .name = "threshold_mode", ENUM(THRESHOLD_WORDS), .kinds = S_PL,
    .doc = "Whether the threshold is relative (rel) or absolute (abs)."
}
, KNOB(STROP_SCH_COOLDOWN), .name = "cooldown", INT(0), .kinds = S_PL,
                            .doc = "Metric steps to wait after a reduction."
}
, KNOB(STROP_SCH_MIN_LR), .name = "min_lr", FLOAT, .kinds = S_PL, .lo = 0, .hi = HUGE_VAL,
                          .doc = "Lowest lr a reduction may set."
}
, KNOB(STROP_SCH_EPS), .name = "eps", FLOAT, .kinds = S_PL, .def = 1e-8, .lo = 0, .hi = HUGE_VAL,
                       .doc = "A reduction smaller than this is not applied."
}
, KNOB(STROP_SCH_TOTAL_ITERS), .name = "total_iters", INT(0), .kinds = S_CONST, .def = 5,
                               .doc = "Steps the constant factor lasts."
}
, KNOB(STROP_SCH_WARMUP_STEPS), .name = "warmup_steps", INT(0), .kinds = S_ALL,
                                .doc = "Steps of linear warm-up before the schedule (0: none)."
}
, KNOB(STROP_SCH_WARMUP_START_FACTOR),
    .name = "warmup_start_factor", FLOAT, .kinds = S_ALL, .def = 1.0 / 3, .lo = 0, .hi = 1,
    .flags = STROP__KNOB_LO_OPEN, .doc = "The warm-up's first lr as a fraction of the base lr."
}
,
}
;
#undef KNOB
#undef FLOAT
#undef INT
#undef FLAG
#undef ENUM
#undef REQUIRED

static const char *const SKIND_NAMES[8] = {"constant",    "step",   "multistep",
                                           "exponential", "cosine", "cosine_restarts",
                                           "one_cycle",   "plateau"};

const strop__settings strop__scheduler_settings = {"scheduler",        SKIND_NAMES, 8,
                                                   "the %s scheduler", SK,          N_SK};

struct strop_scheduler {
  strop_optimizer *opt;
  int kind;
  double f[N_SK];
  int i[N_SK];
  int64_t *milestones;
  int n_milestones;
  double base_lr; /* torch's initial_lr: the optimizer's lr at create */
  /* state (listed for checkpoints) */
  int64_t last_step;  /* step() calls: SequentialLR's last_epoch */
  int64_t started;    /* 1 once step() ran: knob changes no longer redo step 0 */
  double lr;          /* the lr last set */
  double momentum;    /* the momentum last set (one-cycle), NaN when not cycling */
  int64_t t_cur, t_i; /* cosine restarts */
  double best;        /* plateau */
  int64_t num_bad, cooldown_counter, plateau_epoch;
};

const strop_optimizer *strop__sched_optimizer(const strop_scheduler *s) { return s->opt; }

static void set_defaults(strop_scheduler *s) {
  double v[N_SK];
  strop__settings_defaults(&strop__scheduler_settings, s->kind, v);
  for (int k = 0; k < N_SK; k++) {
    /* keys the kind does not use keep the table's default too (the schedules read only their
     * own, but plateau's factor and constant's share one key) */
    if (!(SK[k].kinds & (1u << s->kind))) v[k] = SK[k].def;
    s->f[k] = SK[k].type == STROP__SET_FLOAT ? v[k] : 0.0;
    s->i[k] = SK[k].type == STROP__SET_FLOAT ? 0 : (int)v[k];
  }
}

strop_status strop_scheduler_knob_range(int kind, int key, double *lo, double *hi, int *flags) {
  return strop__settings_range(&strop__scheduler_settings, "strop_scheduler_knob_range", kind,
                               key, lo, hi, flags);
}

const char *strop_scheduler_knob_name(int key) {
  return strop__settings_name(&strop__scheduler_settings, key);
}

const char *strop_scheduler_knob_doc(int key) {
  return strop__settings_doc(&strop__scheduler_settings, key);
}

strop_status strop_scheduler_knob_find(const char *name, int *key) {
  return strop__settings_find(&strop__scheduler_settings, "strop_scheduler_knob_find", name, key);
}

strop_status strop_scheduler_knob_default(int kind, int key, double *value) {
  return strop__settings_default_of(&strop__scheduler_settings, "strop_scheduler_knob_default",
                                    kind, key, value);
}

strop_status strop_scheduler_knob_parse(int key, const char *text, double *value) {
  return strop__settings_parse(&strop__scheduler_settings, "strop_scheduler_knob_parse", key,
                               text, value);
}

/* ---- the schedules ---- */

static int has_momentum_cycle(const strop_scheduler *s) {
  double m;
  return s->kind == STROP_SCHED_ONE_CYCLE && s->i[STROP_SCH_CYCLE_MOMENTUM] &&
         strop__optim_get_momentum(s->opt, &m);
}

static double anneal(int linear, double start, double end, double pct) {
  if (linear) return (end - start) * pct + start;
  double cos_out = cos(PI * pct) + 1;
  return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR.get_lr at step_num (two phases); momentum through *mom. */
static double one_cycle(const strop_scheduler *s, int64_t step_num, double *mom) {
  const double initial = s->f[STROP_SCH_MAX_LR] / s->f[STROP_SCH_DIV_FACTOR];
  const double max_lr = s->f[STROP_SCH_MAX_LR];
  const double min_lr = initial / s->f[STROP_SCH_FINAL_DIV_FACTOR];
  const double total = (double)s->i[STROP_SCH_TOTAL_STEPS];
  const double ends[2] = {(double)(s->f[STROP_SCH_PCT_START] * total) - 1, total - 1};
  const double lr_a[2] = {initial, max_lr}, lr_b[2] = {max_lr, min_lr};
  const double mb = s->f[STROP_SCH_BASE_MOMENTUM], mm = s->f[STROP_SCH_MAX_MOMENTUM];
  const double m_a[2] = {mm, mb}, m_b[2] = {mb, mm};
  const int lin = s->i[STROP_SCH_ANNEAL] == STROP_ANNEAL_LINEAR;
  double start_step = 0;
  for (int i = 0; i < 2; i++) {
    double end_step = ends[i];
    if ((double)step_num <= end_step || i == 1) {
      double pct = ((double)step_num - start_step) / (end_step - start_step);
      if (mom) *mom = anneal(lin, m_a[i], m_b[i], pct);
      return anneal(lin, lr_a[i], lr_b[i], pct);
    }
    start_step = end_step;
  }
  return lr_b[1];
}

static int required_set(const strop_scheduler *s) {
  switch (s->kind) {
    case STROP_SCHED_STEP: return s->i[STROP_SCH_STEP_SIZE] >= 1;
    case STROP_SCHED_COSINE: return s->i[STROP_SCH_T_MAX] >= 1;
    case STROP_SCHED_COSINE_RESTARTS: return s->i[STROP_SCH_T_0] >= 1;
    case STROP_SCHED_ONE_CYCLE:
      return s->f[STROP_SCH_MAX_LR] > 0.0 && s->i[STROP_SCH_TOTAL_STEPS] >= 1;
    default: return 1;
  }
}

static double restarts_lr(const strop_scheduler *s) {
  const double eta = s->f[STROP_SCH_ETA_MIN];
  return eta + (s->base_lr - eta) * (1 + cos(PI * (double)s->t_cur / (double)s->t_i)) / 2;
}

/* The main schedule's lr at its epoch 0. closed: SequentialLR's step(0) at the milestone
 * (_get_closed_form_lr where the class has one); else the class's _initial_step (get_lr). */
static double main_epoch0(strop_scheduler *s, double lr, int closed, double *mom) {
  const double base = s->base_lr;
  switch (s->kind) {
    case STROP_SCHED_CONSTANT: {
      const double f = s->f[STROP_SCH_FACTOR];
      if (!closed) return lr * f;
      return base * (f + (double)(0 >= s->i[STROP_SCH_TOTAL_ITERS]) * (1 - f));
    }
    case STROP_SCHED_STEP:
    case STROP_SCHED_MULTISTEP:
    case STROP_SCHED_EXPONENTIAL: return closed ? base * pow(s->f[STROP_SCH_GAMMA], 0.0) : lr;
    case STROP_SCHED_COSINE: {
      if (!closed) return lr;
      const double eta = s->f[STROP_SCH_ETA_MIN];
      return eta + (base - eta) * (1 + cos(PI * 0.0 / (double)s->i[STROP_SCH_T_MAX])) / 2;
    }
    case STROP_SCHED_COSINE_RESTARTS:
      s->t_i = s->i[STROP_SCH_T_0];
      s->t_cur = 0;
      return s->t_i >= 1 ? restarts_lr(s) : lr;
    case STROP_SCHED_ONE_CYCLE: return required_set(s) ? one_cycle(s, 0, mom) : lr;
    default: return lr; /* plateau */
  }
}

/* The main schedule's chainable get_lr at epoch e >= 1, from the optimizer's current lr. */
static double main_step(strop_scheduler *s, int64_t e, double lr, double *mom) {
  const double base = s->base_lr;
  switch (s->kind) {
    case STROP_SCHED_CONSTANT: {
      const int64_t total = s->i[STROP_SCH_TOTAL_ITERS];
      if (e > total || e != total) return lr;
      return lr * (1.0 / s->f[STROP_SCH_FACTOR]);
    }
    case STROP_SCHED_STEP:
      return e % s->i[STROP_SCH_STEP_SIZE] != 0 ? lr : lr * s->f[STROP_SCH_GAMMA];
    case STROP_SCHED_MULTISTEP:
      for (int k = 0; k < s->n_milestones; k++)
        if (s->milestones[k] == e) return lr * pow(s->f[STROP_SCH_GAMMA], 1.0);
      return lr;
    case STROP_SCHED_EXPONENTIAL: return lr * s->f[STROP_SCH_GAMMA];
    case STROP_SCHED_COSINE: {
      const double eta = s->f[STROP_SCH_ETA_MIN];
      const int64_t T = s->i[STROP_SCH_T_MAX];
      if ((e - 1 - T) % (2 * T) == 0) return lr + (base - eta) * (1 - cos(PI / (double)T)) / 2;
      return (1 + cos(PI * (double)e / (double)T)) / (1 + cos(PI * (double)(e - 1) / (double)T)) *
                 (lr - eta) +
             eta;
    }
    case STROP_SCHED_COSINE_RESTARTS:
      s->t_cur = s->t_cur + 1;
      if (s->t_cur >= s->t_i) {
        s->t_cur = s->t_cur - s->t_i;
        s->t_i = s->t_i * s->i[STROP_SCH_T_MULT];
      }
      return restarts_lr(s);
    case STROP_SCHED_ONE_CYCLE: return one_cycle(s, e, mom);
    default: return lr; /* plateau: step() only counts */
  }
}

static void apply(strop_scheduler *s, double lr, double mom) {
  s->lr = lr;
  strop__optim_set_lr(s->opt, lr);
  if (!isnan(mom) && has_momentum_cycle(s)) {
    s->momentum = mom;
    strop__optim_set_momentum(s->opt, mom);
  }
}

/* Step 0: the state right after construction (torch's _initial_step; SequentialLR when warming
 * up). Redone after every knob change until the first step. */
static void restart(strop_scheduler *s) {
  s->last_step = 0;
  s->t_cur = 0;
  s->t_i = s->i[STROP_SCH_T_0];
  s->best = s->i[STROP_SCH_MODE] == STROP_PLATEAU_MAX ? -HUGE_VAL : HUGE_VAL;
  s->num_bad = s->cooldown_counter = s->plateau_epoch = 0;
  s->momentum = NAN;
  double lr = s->base_lr;
  if (s->kind == STROP_SCHED_ONE_CYCLE && required_set(s))
    lr = s->f[STROP_SCH_MAX_LR] / s->f[STROP_SCH_DIV_FACTOR];
  double mom = NAN;
  if (has_momentum_cycle(s)) mom = s->f[STROP_SCH_MAX_MOMENTUM];
  if (s->i[STROP_SCH_WARMUP_STEPS] > 0) {
    /* SequentialLR: the main scheduler's construction step (which may set momentum) is
     * undone for the lr only; then LinearLR's first step. */
    if (s->kind == STROP_SCHED_ONE_CYCLE && required_set(s)) (void)one_cycle(s, 0, &mom);
    lr = lr * s->f[STROP_SCH_WARMUP_START_FACTOR];
  } else {
    lr = main_epoch0(s, lr, 0, &mom);
  }
  apply(s, lr, mom);
}

strop_status strop_scheduler_step(strop_scheduler *sched) {
  static const char fn[] = "strop_scheduler_step";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  strop_scheduler *s = sched;
  if (!required_set(s)) {
    static const char *const need[8] = {
        "", "step_size", "", "", "T_max", "T_0", "max_lr and total_steps", ""};
    return strop__err(STROP_E_STATE, "%s: the %s scheduler needs %s to be set", fn,
                      SKIND_NAMES[s->kind], need[s->kind]);
  }
  const int64_t W = s->i[STROP_SCH_WARMUP_STEPS];
  const int64_t e = s->last_step + 1;
  if (s->kind == STROP_SCHED_ONE_CYCLE && e - W > s->i[STROP_SCH_TOTAL_STEPS])
    return strop__err(STROP_E_STATE, "%s: one-cycle stepped %lld times, past total_steps %d", fn,
                      (long long)(e - W + 1), s->i[STROP_SCH_TOTAL_STEPS]);
  double lr = strop__optim_get_lr(s->opt), mom = NAN;
  if (e < W || (e == W && s->kind == STROP_SCHED_PLATEAU)) {
    /* LinearLR; plateau has no main step, so its ramp ends on LinearLR's own last step */
    const double sf = s->f[STROP_SCH_WARMUP_START_FACTOR], ef = 1.0;
    lr = lr * (1. + (ef - sf) / ((double)W * sf + (double)(e - 1) * (ef - sf)));
  } else if (e == W) {
    lr = main_epoch0(s, lr, 1, &mom);
  } else {
    lr = main_step(s, e - W, lr, &mom);
  }
  s->last_step = e;
  s->started = 1;
  apply(s, lr, mom);
  return STROP_OK;
}

strop_status strop_scheduler_step_metric(strop_scheduler *sched, double value) {
  static const char fn[] = "strop_scheduler_step_metric";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  strop_scheduler *s = sched;
  if (s->kind != STROP_SCHED_PLATEAU)
    return strop__err(STROP_E_INVALID_ARG, "%s: the %s scheduler takes no metric", fn,
                      SKIND_NAMES[s->kind]);
  if (isnan(value)) return strop__err(STROP_E_INVALID_ARG, "%s: the metric is NaN", fn);
  const double thr = s->f[STROP_SCH_THRESHOLD], a = value, best = s->best;
  int better;
  const int rel = s->i[STROP_SCH_THRESHOLD_MODE] == STROP_THRESHOLD_REL;
  if (s->i[STROP_SCH_MODE] == STROP_PLATEAU_MIN)
    better = rel ? a < best * (1. - thr) : a < best - thr;
  else better = rel ? a > best * (thr + 1.) : a > best + thr;
  s->plateau_epoch++;
  if (better) {
    s->best = a;
    s->num_bad = 0;
  } else {
    s->num_bad++;
  }
  if (s->cooldown_counter > 0) {
    s->cooldown_counter--;
    s->num_bad = 0;
  }
  if (s->num_bad > s->i[STROP_SCH_PATIENCE]) {
    const double old_lr = strop__optim_get_lr(s->opt);
    const double cand = old_lr * s->f[STROP_SCH_FACTOR], min_lr = s->f[STROP_SCH_MIN_LR];
    const double new_lr = cand >= min_lr ? cand : min_lr;
    if (old_lr - new_lr > s->f[STROP_SCH_EPS]) apply(s, new_lr, NAN);
    s->cooldown_counter = s->i[STROP_SCH_COOLDOWN];
    s->num_bad = 0;
  }
  s->started = 1;
  return STROP_OK;
}

strop_status strop__sched_stage(const strop_scheduler *s, strop_optimizer *opt,
                                strop_scheduler **out) {
  *out = NULL;
  strop_scheduler *c = strop__malloc(sizeof *c);
  if (!c) return STROP__NOMEM("strop_trainer_load_checkpoint");
  *c = *s;
  c->opt = opt;
  c->milestones = NULL;
  if (s->n_milestones > 0) {
    c->milestones = strop__malloc((size_t)s->n_milestones * sizeof *c->milestones);
    if (!c->milestones) {
      strop__free(c);
      return STROP__NOMEM("strop_trainer_load_checkpoint");
    }
    memcpy(c->milestones, s->milestones, (size_t)s->n_milestones * sizeof *c->milestones);
  }
  *out = c;
  return STROP_OK;
}

void strop__sched_commit(strop_scheduler *live, strop_scheduler *staged) {
  strop_optimizer *opt = live->opt;
  int64_t *ms = live->milestones;
  *live = *staged;
  live->opt = opt;
  live->milestones = ms;
  strop_scheduler_free(staged);
}

int strop__sched_is_plateau(const strop_scheduler *s) {
  return s && s->kind == STROP_SCHED_PLATEAU;
}

double strop_scheduler_get_lr(const strop_scheduler *sched) { return sched ? sched->lr : 0.0; }

int64_t strop_scheduler_last_step(const strop_scheduler *sched) {
  return sched ? sched->last_step : -1;
}

/* ---- knobs ---- */

static strop_status find_knob(const strop_scheduler *s, const char *fn, int key, int want,
                              const char *verb, const strop__setting **out) {
  strop_status st = strop__settings_lookup(&strop__scheduler_settings, fn, s->kind, key, out);
  return st ? st : strop__settings_want(&strop__scheduler_settings, fn, *out, want, verb);
}

/* The one setter of single values: checks through the table, stores, and re-applies step 0
 * while the schedule has not started. Nothing changes on error. */
static strop_status set_knob(strop_scheduler *s, const char *fn, int key, double v, int want) {
  const strop__setting *d;
  strop_status st = find_knob(s, fn, key, want, "set", &d);
  if (!st) st = strop__setting_check(fn, d, s->kind, v);
  if (st) return st;
  if (d->type == STROP__SET_FLOAT) s->f[key] = v;
  else s->i[key] = (int)v;
  if (!s->started) restart(s);
  return STROP_OK;
}

static strop_status get_knob(const strop_scheduler *s, const char *fn, int key, int want,
                             double *out) {
  const strop__setting *d;
  strop_status st = find_knob(s, fn, key, want, "get", &d);
  if (!st) *out = d->type == STROP__SET_FLOAT ? s->f[key] : (double)s->i[key];
  return st;
}

strop_status strop_scheduler_set_double(strop_scheduler *sched, int key, double value) {
  static const char fn[] = "strop_scheduler_set_double";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  return set_knob(sched, fn, key, value, STROP__WANT_SCALAR);
}

strop_status strop_scheduler_get_double(const strop_scheduler *sched, int key, double *value) {
  static const char fn[] = "strop_scheduler_get_double";
  if (!sched || !value)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !sched ? "sched" : "value");
  return get_knob(sched, fn, key, STROP__WANT_SCALAR, value);
}

/* Deprecated since 0.2: the float is widened to the double of its shortest decimal form. */
strop_status strop_scheduler_set_float(strop_scheduler *sched, int key, float value) {
  static const char fn[] = "strop_scheduler_set_float";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  return set_knob(sched, fn, key, strop__knob_widen(value), STROP__WANT_FLOAT);
}

strop_status strop_scheduler_get_float(const strop_scheduler *sched, int key, float *out) {
  static const char fn[] = "strop_scheduler_get_float";
  if (!sched || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !sched ? "sched" : "out");
  double v = 0.0;
  strop_status st = get_knob(sched, fn, key, STROP__WANT_FLOAT, &v);
  if (!st) *out = (float)v;
  return st;
}

strop_status strop_scheduler_set_int(strop_scheduler *sched, int key, int value) {
  static const char fn[] = "strop_scheduler_set_int";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  return set_knob(sched, fn, key, (double)value, STROP__WANT_INT);
}

strop_status strop_scheduler_get_int(const strop_scheduler *sched, int key, int *out) {
  static const char fn[] = "strop_scheduler_get_int";
  if (!sched || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !sched ? "sched" : "out");
  double v = 0.0;
  strop_status st = get_knob(sched, fn, key, STROP__WANT_INT, &v);
  if (!st) *out = (int)v;
  return st;
}

strop_status strop_scheduler_set_ints(strop_scheduler *sched, int key, const int64_t *v, int n) {
  static const char fn[] = "strop_scheduler_set_ints";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  const strop__setting *d;
  strop_status st = find_knob(sched, fn, key, STROP__WANT_LIST, "set", &d);
  if (st) return st;
  if (n < 0 || (n > 0 && !v))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s: bad list (n = %d)", fn, SK[key].name, n);
  for (int k = 0; k < n; k++) {
    if ((double)v[k] < d->lo || (k > 0 && v[k] <= v[k - 1]))
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: %s must be increasing and >= 1, got %lld at index %d", fn,
                        SK[key].name, (long long)v[k], k);
  }
  int64_t *copy = NULL;
  if (n > 0) {
    copy = strop__malloc((size_t)n * sizeof *copy);
    if (!copy) return STROP__NOMEM(fn);
    memcpy(copy, v, (size_t)n * sizeof *copy);
  }
  strop__free(sched->milestones);
  sched->milestones = copy;
  sched->n_milestones = n;
  if (!sched->started) restart(sched);
  return STROP_OK;
}

strop_status strop_scheduler_get_ints(const strop_scheduler *sched, int key, int64_t *v, int cap,
                                      int *n_out) {
  static const char fn[] = "strop_scheduler_get_ints";
  if (!sched || !n_out || cap < 0 || (cap > 0 && !v))
    return strop__err(STROP_E_INVALID_ARG, "%s: NULL or bad argument", fn);
  const strop__setting *d;
  strop_status st = find_knob(sched, fn, key, STROP__WANT_LIST, "get", &d);
  if (st) return st;
  for (int k = 0; k < sched->n_milestones && k < cap; k++) v[k] = sched->milestones[k];
  *n_out = sched->n_milestones;
  return STROP_OK;
}

/* ---- create / free ---- */

strop_status strop_scheduler_create(strop_optimizer *opt, int kind, strop_scheduler **out) {
  static const char fn[] = "strop_scheduler_create";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!opt) return strop__err(STROP_E_INVALID_ARG, "%s: opt is NULL", fn);
  if (kind < 0 || kind > STROP_SCHED_PLATEAU)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown scheduler kind %d", fn, kind);
  strop_scheduler *s = strop__calloc(1, sizeof *s);
  if (!s) return STROP__NOMEM(fn);
  s->opt = opt;
  s->kind = kind;
  set_defaults(s);
  s->base_lr = strop__optim_get_lr(opt);
  restart(s);
  *out = s;
  return STROP_OK;
}

void strop_scheduler_free(strop_scheduler *sched) {
  if (!sched) return;
  strop__free(sched->milestones);
  strop__free(sched);
}

/* ---- state listing ---- */

typedef struct sst {
  const char *name;
  int dtype;
  size_t off;
} sst;

static const sst SST[] = {
    {"sched.last_step", STROP__STATE_I64, offsetof(strop_scheduler, last_step)},
    {"sched.started", STROP__STATE_I64, offsetof(strop_scheduler, started)},
    {"sched.lr", STROP__STATE_F64, offsetof(strop_scheduler, lr)},
    {"sched.momentum", STROP__STATE_F64, offsetof(strop_scheduler, momentum)},
    {"sched.t_cur", STROP__STATE_I64, offsetof(strop_scheduler, t_cur)},
    {"sched.t_i", STROP__STATE_I64, offsetof(strop_scheduler, t_i)},
    {"sched.best", STROP__STATE_F64, offsetof(strop_scheduler, best)},
    {"sched.num_bad", STROP__STATE_I64, offsetof(strop_scheduler, num_bad)},
    {"sched.cooldown_counter", STROP__STATE_I64, offsetof(strop_scheduler, cooldown_counter)},
    {"sched.plateau_epoch", STROP__STATE_I64, offsetof(strop_scheduler, plateau_epoch)},
};
#define N_SST ((int)(sizeof SST / sizeof SST[0]))

int strop__sched_state_count(const strop_scheduler *s) { return s ? N_SST : 0; }

strop_status strop__sched_state_at(const strop_scheduler *s, int i, strop__state_entry *out) {
  if (!s || !out || i < 0 || i >= N_SST)
    return strop__err(STROP_E_INVALID_ARG, "strop__sched_state_at: bad argument (index %d)", i);
  out->name = SST[i].name;
  out->dtype = SST[i].dtype;
  out->data = (char *)s + SST[i].off;
  out->numel = 1;
  return STROP_OK;
}

strop_status strop__sched_state_set(strop_scheduler *s, const char *name, int dtype,
                                    const void *data, size_t numel) {
  static const char fn[] = "strop__sched_state_set";
  if (!s || !name || !data) return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  for (int i = 0; i < N_SST; i++) {
    if (strcmp(SST[i].name, name) != 0) continue;
    if (dtype != SST[i].dtype || numel != 1)
      return strop__err(STROP_E_SHAPE, "%s: '%s' must be one %s", fn, name,
                        SST[i].dtype == STROP__STATE_F64 ? "float64" : "int64");
    memcpy((char *)s + SST[i].off, data, 8);
    if (strcmp(name, "sched.lr") == 0) strop__optim_set_lr(s->opt, s->lr);
    if (strcmp(name, "sched.momentum") == 0 && !isnan(s->momentum) && has_momentum_cycle(s))
      strop__optim_set_momentum(s->opt, s->momentum);
    return STROP_OK;
  }
  return strop__err(STROP_E_NOT_FOUND, "%s: '%s' is not a scheduler state name", fn, name);
}
