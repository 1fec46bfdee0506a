/* strop — learning-rate schedulers: torch.optim.lr_scheduler's formulas in double, the same
 * chainable (recursive) forms, and warm-up as SequentialLR([LinearLR, main], [warmup_steps]). */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "optim/optim.h"

#define N_SK 27
#define PI 3.141592653589793 /* math.pi */

enum { S_CONST = 1 << 0, S_STEP = 1 << 1, S_MS = 1 << 2, S_EXP = 1 << 3, S_COS = 1 << 4,
       S_CWR = 1 << 5, S_OC = 1 << 6, S_PL = 1 << 7, S_ALL = 255 };

typedef struct sk_def {
  const char *name;
  int type; /* 0 float, 1 int, 2 int64 list */
  int kinds;
  double lo, hi;
  int flags;
} sk_def;

static const sk_def SK[N_SK] = {
  [STROP_SCH_GAMMA] = {"gamma", 0, S_STEP | S_MS | S_EXP, 0.0, HUGE_VAL, 0},
  [STROP_SCH_STEP_SIZE] = {"step_size", 1, S_STEP, 1.0, INT_MAX, 0},
  [STROP_SCH_MILESTONES] = {"milestones", 2, S_MS, 1.0, (double)INT64_MAX, 0},
  [STROP_SCH_T_MAX] = {"T_max", 1, S_COS, 1.0, INT_MAX, 0},
  [STROP_SCH_ETA_MIN] = {"eta_min", 0, S_COS | S_CWR, 0.0, HUGE_VAL, 0},
  [STROP_SCH_T_0] = {"T_0", 1, S_CWR, 1.0, INT_MAX, 0},
  [STROP_SCH_T_MULT] = {"T_mult", 1, S_CWR, 1.0, INT_MAX, 0},
  [STROP_SCH_MAX_LR] = {"max_lr", 0, S_OC, 0.0, HUGE_VAL, STROP_KNOB_LO_OPEN},
  [STROP_SCH_TOTAL_STEPS] = {"total_steps", 1, S_OC, 1.0, INT_MAX, 0},
  [STROP_SCH_PCT_START] = {"pct_start", 0, S_OC, 0.0, 1.0, 0},
  [STROP_SCH_ANNEAL] = {"anneal_strategy", 1, S_OC, 0.0, 1.0, 0},
  [STROP_SCH_DIV_FACTOR] = {"div_factor", 0, S_OC, 0.0, HUGE_VAL, STROP_KNOB_LO_OPEN},
  [STROP_SCH_FINAL_DIV_FACTOR] = {"final_div_factor", 0, S_OC, 0.0, HUGE_VAL,
                                  STROP_KNOB_LO_OPEN},
  [STROP_SCH_CYCLE_MOMENTUM] = {"cycle_momentum", 1, S_OC, 0.0, 1.0, 0},
  [STROP_SCH_BASE_MOMENTUM] = {"base_momentum", 0, S_OC, 0.0, 1.0, STROP_KNOB_HI_OPEN},
  [STROP_SCH_MAX_MOMENTUM] = {"max_momentum", 0, S_OC, 0.0, 1.0, STROP_KNOB_HI_OPEN},
  [STROP_SCH_MODE] = {"mode", 1, S_PL, 0.0, 1.0, 0},
  [STROP_SCH_FACTOR] = {"factor", 0, S_CONST | S_PL, 0.0, 1.0, 0},
  [STROP_SCH_PATIENCE] = {"patience", 1, S_PL, 0.0, INT_MAX, 0},
  [STROP_SCH_THRESHOLD] = {"threshold", 0, S_PL, 0.0, HUGE_VAL, 0},
  [STROP_SCH_THRESHOLD_MODE] = {"threshold_mode", 1, S_PL, 0.0, 1.0, 0},
  [STROP_SCH_COOLDOWN] = {"cooldown", 1, S_PL, 0.0, INT_MAX, 0},
  [STROP_SCH_MIN_LR] = {"min_lr", 0, S_PL, 0.0, HUGE_VAL, 0},
  [STROP_SCH_EPS] = {"eps", 0, S_PL, 0.0, HUGE_VAL, 0},
  [STROP_SCH_TOTAL_ITERS] = {"total_iters", 1, S_CONST, 0.0, INT_MAX, 0},
  [STROP_SCH_WARMUP_STEPS] = {"warmup_steps", 1, S_ALL, 0.0, INT_MAX, 0},
  [STROP_SCH_WARMUP_START_FACTOR] = {"warmup_start_factor", 0, S_ALL, 0.0, 1.0,
                                     STROP_KNOB_LO_OPEN},
};

static const char *const SKIND_NAMES[8] = {"constant", "step", "multistep", "exponential",
                                           "cosine", "cosine_restarts", "one_cycle", "plateau"};

struct strop_scheduler {
  strop_optimizer *opt;
  int kind;
  double f[N_SK];
  int i[N_SK];
  int64_t *milestones;
  int n_milestones;
  double base_lr;          /* torch's initial_lr: the optimizer's lr at create */
  /* state (listed for checkpoints) */
  int64_t last_step;       /* step() calls: SequentialLR's last_epoch */
  int64_t started;         /* 1 once step() ran: knob changes no longer redo step 0 */
  double lr;               /* the lr last set */
  double momentum;         /* the momentum last set (one-cycle), NaN when not cycling */
  int64_t t_cur, t_i;      /* cosine restarts */
  double best;             /* plateau */
  int64_t num_bad, cooldown_counter, plateau_epoch;
};

static void set_defaults(strop_scheduler *s) {
  for (int k = 0; k < N_SK; k++) {
    s->f[k] = 0.0;
    s->i[k] = 0;
  }
  s->f[STROP_SCH_GAMMA] = 0.1;
  s->i[STROP_SCH_T_MULT] = 1;
  s->f[STROP_SCH_PCT_START] = 0.3;
  s->f[STROP_SCH_DIV_FACTOR] = 25.0;
  s->f[STROP_SCH_FINAL_DIV_FACTOR] = 1e4;
  s->i[STROP_SCH_CYCLE_MOMENTUM] = 1;
  s->f[STROP_SCH_BASE_MOMENTUM] = 0.85;
  s->f[STROP_SCH_MAX_MOMENTUM] = 0.95;
  s->f[STROP_SCH_FACTOR] = s->kind == STROP_SCHED_PLATEAU ? 0.1 : 1.0;
  s->i[STROP_SCH_PATIENCE] = 10;
  s->f[STROP_SCH_THRESHOLD] = 1e-4;
  s->f[STROP_SCH_EPS] = 1e-8;
  s->i[STROP_SCH_TOTAL_ITERS] = 5;
  s->f[STROP_SCH_WARMUP_START_FACTOR] = 1.0 / 3;
}

static sk_def knob_for(int kind, int key) {
  sk_def d = SK[key];
  if (key == STROP_SCH_FACTOR && kind == STROP_SCHED_PLATEAU) d.flags |= STROP_KNOB_HI_OPEN;
  return d;
}

static strop_status sk_check(const char *fn, int kind, int key, int type, const char *use) {
  if (key < 0 || key >= N_SK)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown scheduler knob %d", fn, key);
  if (!(SK[key].kinds & (1 << kind)))
    return strop__err(STROP_E_INVALID_ARG, "%s: knob '%s' does not apply to the %s scheduler",
                      fn, SK[key].name, SKIND_NAMES[kind]);
  if (SK[key].type != type) {
    static const char *const tn[3] = {"a float", "an int", "a list"};
    static const char *const fnn[3] = {"float", "int", "ints"};
    return strop__err(STROP_E_INVALID_ARG, "%s: knob '%s' is %s knob; use strop_scheduler_%s_%s",
                      fn, SK[key].name, tn[SK[key].type], use, fnn[SK[key].type]);
  }
  return STROP_OK;
}

static int sk_in_range(const sk_def *d, double v) {
  if (isnan(v)) return 0;
  if ((d->flags & STROP_KNOB_LO_OPEN) ? !(v > d->lo) : !(v >= d->lo)) return 0;
  if ((d->flags & STROP_KNOB_HI_OPEN) ? !(v < d->hi) : !(v <= d->hi)) return 0;
  return 1;
}

strop_status strop_scheduler_knob_range(int kind, int key, double *lo, double *hi, int *flags) {
  static const char fn[] = "strop_scheduler_knob_range";
  if (kind < 0 || kind > STROP_SCHED_PLATEAU)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown scheduler kind %d", fn, kind);
  if (key < 0 || key >= N_SK)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown scheduler knob %d", fn, key);
  if (!(SK[key].kinds & (1 << kind)))
    return strop__err(STROP_E_INVALID_ARG, "%s: knob '%s' does not apply to the %s scheduler",
                      fn, SK[key].name, SKIND_NAMES[kind]);
  sk_def d = knob_for(kind, key);
  if (lo) *lo = d.lo;
  if (hi) *hi = d.hi;
  if (flags)
    *flags = d.flags | (d.type == 1 ? STROP_KNOB_INT : 0) | (d.type == 2 ? STROP_KNOB_LIST : 0);
  return STROP_OK;
}

const char *strop_scheduler_knob_name(int key) {
  return key >= 0 && key < N_SK ? SK[key].name : NULL;
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
  case STROP_SCHED_ONE_CYCLE:
    return required_set(s) ? one_cycle(s, 0, mom) : lr;
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
    if ((e - 1 - T) % (2 * T) == 0)
      return lr + (base - eta) * (1 - cos(PI / (double)T)) / 2;
    return (1 + cos(PI * (double)e / (double)T)) / (1 + cos(PI * (double)(e - 1) / (double)T)) *
               (lr - eta) + eta;
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
    static const char *const need[8] = {"", "step_size", "", "", "T_max", "T_0",
                                        "max_lr and total_steps", ""};
    return strop__err(STROP_E_STATE, "%s: the %s scheduler needs %s to be set", fn,
                      SKIND_NAMES[s->kind], need[s->kind]);
  }
  const int64_t W = s->i[STROP_SCH_WARMUP_STEPS];
  const int64_t e = s->last_step + 1;
  if (s->kind == STROP_SCHED_ONE_CYCLE && e - W > s->i[STROP_SCH_TOTAL_STEPS])
    return strop__err(STROP_E_STATE, "%s: one-cycle stepped %lld times, past total_steps %d",
                      fn, (long long)(e - W + 1), s->i[STROP_SCH_TOTAL_STEPS]);
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
  else
    better = rel ? a > best * (thr + 1.) : a > best + thr;
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

int strop__sched_is_plateau(const strop_scheduler *s) {
  return s && s->kind == STROP_SCHED_PLATEAU;
}

double strop_scheduler_get_lr(const strop_scheduler *sched) { return sched ? sched->lr : 0.0; }

int64_t strop_scheduler_last_step(const strop_scheduler *sched) {
  return sched ? sched->last_step : -1;
}

/* ---- knobs ---- */

strop_status strop_scheduler_set_float(strop_scheduler *sched, int key, float value) {
  static const char fn[] = "strop_scheduler_set_float";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  strop_status st = sk_check(fn, sched->kind, key, 0, "set");
  if (st) return st;
  double v = strop__knob_widen(value);
  sk_def d = knob_for(sched->kind, key);
  if (!sk_in_range(&d, v))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s must be in %c%g, %g%c, got %g", fn, d.name,
                      (d.flags & STROP_KNOB_LO_OPEN) ? '(' : '[', d.lo, d.hi,
                      (d.flags & STROP_KNOB_HI_OPEN) ? ')' : ']', v);
  sched->f[key] = v;
  if (!sched->started) restart(sched);
  return STROP_OK;
}

strop_status strop_scheduler_get_float(const strop_scheduler *sched, int key, float *out) {
  static const char fn[] = "strop_scheduler_get_float";
  if (!sched || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !sched ? "sched" : "out");
  strop_status st = sk_check(fn, sched->kind, key, 0, "get");
  if (st) return st;
  *out = (float)sched->f[key];
  return STROP_OK;
}

strop_status strop_scheduler_set_int(strop_scheduler *sched, int key, int value) {
  static const char fn[] = "strop_scheduler_set_int";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  strop_status st = sk_check(fn, sched->kind, key, 1, "set");
  if (st) return st;
  sk_def d = knob_for(sched->kind, key);
  if (!sk_in_range(&d, (double)value))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s must be in [%.0f, %.0f], got %d", fn, d.name,
                      d.lo, d.hi, value);
  sched->i[key] = value;
  if (!sched->started) restart(sched);
  return STROP_OK;
}

strop_status strop_scheduler_get_int(const strop_scheduler *sched, int key, int *out) {
  static const char fn[] = "strop_scheduler_get_int";
  if (!sched || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !sched ? "sched" : "out");
  strop_status st = sk_check(fn, sched->kind, key, 1, "get");
  if (st) return st;
  *out = sched->i[key];
  return STROP_OK;
}

strop_status strop_scheduler_set_ints(strop_scheduler *sched, int key, const int64_t *v, int n) {
  static const char fn[] = "strop_scheduler_set_ints";
  if (!sched) return strop__err(STROP_E_INVALID_ARG, "%s: sched is NULL", fn);
  strop_status st = sk_check(fn, sched->kind, key, 2, "set");
  if (st) return st;
  if (n < 0 || (n > 0 && !v))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s: bad list (n = %d)", fn, SK[key].name, n);
  for (int k = 0; k < n; k++) {
    if (v[k] < 1 || (k > 0 && v[k] <= v[k - 1]))
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
  strop_status st = sk_check(fn, sched->kind, key, 2, "get");
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
