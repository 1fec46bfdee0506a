/* SPDX-License-Identifier: MIT */
/* strop — the Bayesian suggestion: a Gaussian process on the unit-scaled space (one-hot
 * categoricals), expected improvement over random candidates, then coordinate refinement. */
#include <math.h>
#include <string.h>

#include "tune/gpmodel.h"
#include "tune/tune_impl.h"

#define MAX_COLS 64
#define N_NEAR 3

static double norm_cdf(double z) { return 0.5 * erfc(-z * 0.7071067811865476); }
static double norm_pdf(double z) { return 0.3989422804014327 * exp(-0.5 * z * z); }

/* Expected improvement below fmin (a loss), with margin xi in raw units. */
static double expected_improvement(double mean, double var, double fmin, double xi) {
  double sd = sqrt(var), imp = fmin - mean - xi;
  if (!(sd > 0.0)) return imp > 0.0 ? imp : 0.0;
  double z = imp / sd;
  return imp * norm_cdf(z) + sd * norm_pdf(z);
}

typedef struct scorer {
  const strop__gp *gp;
  double fmin, xi;
  double *work; /* n doubles */
  int64_t evals;
} scorer;

static double score_one(scorer *s, const double *x) {
  double m, v;
  strop__gp_predict(s->gp, 1, x, &m, &v, s->work);
  s->evals++;
  return expected_improvement(m, v, s->fmin, s->xi);
}

/* Snaps a point onto valid values (ints rounded, categoricals one-hot). */
static void snap(const strop_tuner *t, double *x, double *tmp_values) {
  strop__tune_decode(t, x, tmp_values);
  strop__tune_encode(t, tmp_values, x);
}

/* Greedy coordinate search on expected improvement from x (in place): each continuous
 * coordinate moves +-h (ints at least one cell), each categorical tries every other choice;
 * h halves when a sweep finds nothing better. */
static double refine(const strop_tuner *t, scorer *s, double *x, double ei, double *cand,
                     double *tmp_values) {
  int64_t d = t->n_cols;
  for (double h = 0.2; h > 0.004; h *= 0.5) {
    for (int sweep = 0; sweep < 4; sweep++) {
      int improved = 0;
      for (int64_t i = 0; i < t->n_params; i++) {
        const strop__tparam *p = &t->params[i];
        if (p->kind == STROP_PARAM_CATEGORICAL) {
          for (int64_t c = 0; c < p->n_choices; c++) {
            if (x[p->col + c] == 1.0) continue;
            memcpy(cand, x, (size_t)d * sizeof *cand);
            for (int64_t k = 0; k < p->n_choices; k++) cand[p->col + k] = k == c ? 1.0 : 0.0;
            double e = score_one(s, cand);
            if (e > ei) {
              ei = e;
              memcpy(x, cand, (size_t)d * sizeof *x);
              improved = 1;
            }
          }
          continue;
        }
        double step = h;
        if (p->kind == STROP_PARAM_INT) {
          double cell = 1.0 / (p->hi - p->lo + 1.0);
          if (!p->log && step < cell) step = cell;
        }
        for (int dir = -1; dir <= 1; dir += 2) {
          memcpy(cand, x, (size_t)d * sizeof *cand);
          double u = x[p->col] + dir * step;
          cand[p->col] = u < 0.0 ? 0.0 : u > 1.0 ? 1.0 : u;
          snap(t, cand, tmp_values);
          if (cand[p->col] == x[p->col]) continue;
          double e = score_one(s, cand);
          if (e > ei) {
            ei = e;
            memcpy(x, cand, (size_t)d * sizeof *x);
            improved = 1;
            break;
          }
        }
      }
      if (!improved) break;
    }
  }
  return ei;
}

static int64_t auto_initial(const strop_tuner *t) {
  if (t->n_initial > 0) return t->n_initial;
  int64_t n = t->n_cols + 1;
  return n < 5 ? 5 : n > 20 ? 20 : n;
}

strop_status strop__tune_suggest_bayes(strop_tuner *t, int64_t id, double *values) {
  static const char fn[] = "strop_tuner_ask";
  int64_t d = t->n_cols;
  /* observations: ok and pruned at their value, failed at the worst, running at the mean */
  int64_t n_obs = 0, n_run = 0, n_asked = 0;
  double worst = -HUGE_VAL, sum = 0.0;
  for (int64_t i = 0; i < t->n_trials; i++) {
    const strop__trial *tr = &t->trials[i];
    n_asked++;
    if (tr->status == STROP_TRIAL_OK || tr->status == STROP_TRIAL_PRUNED) {
      double l = strop__tune_loss(t, tr->value);
      worst = l > worst ? l : worst;
      sum += l;
      n_obs++;
    } else if (tr->status == STROP_TRIAL_RUNNING) {
      n_run++;
    }
  }
  if (n_asked < auto_initial(t) || n_obs < 2 || d > MAX_COLS) {
    strop__tune_random_point(t, id, values);
    return STROP_OK;
  }
  double mean_obs = sum / (double)n_obs;
  int64_t n = 0;
  double *x = strop__malloc((size_t)(t->n_trials * d) * sizeof *x + 1);
  double *y = strop__malloc((size_t)t->n_trials * sizeof *y + 1);
  if (!x || !y) {
    strop__free(x);
    strop__free(y);
    return STROP__NOMEM(fn);
  }
  double fmin = HUGE_VAL;
  int64_t near[N_NEAR], n_near = 0;
  for (int64_t i = 0; i < t->n_trials; i++) {
    const strop__trial *tr = &t->trials[i];
    double l;
    if (tr->status == STROP_TRIAL_OK || tr->status == STROP_TRIAL_PRUNED) {
      l = strop__tune_loss(t, tr->value);
      fmin = l < fmin ? l : fmin;
    } else if (tr->status == STROP_TRIAL_FAILED) {
      l = worst;
    } else {
      l = mean_obs;
    }
    strop__tune_encode(t, tr->values, x + n * d);
    /* the best few observed rows seed local candidates */
    if (tr->status == STROP_TRIAL_OK || tr->status == STROP_TRIAL_PRUNED) {
      int64_t pos = n_near < N_NEAR ? n_near : N_NEAR;
      while (pos > 0 && y[near[pos - 1]] > l) pos--;
      if (pos < N_NEAR) {
        for (int64_t k = (n_near < N_NEAR ? n_near : N_NEAR - 1); k > pos; k--)
          near[k] = near[k - 1];
        near[pos] = n;
        if (n_near < N_NEAR) n_near++;
      }
    }
    y[n++] = l;
  }
  (void)n_run;
  strop__gp gp;
  strop_status st = strop__gp_init(&gp, n, d, x, y);
  strop__free(x);
  strop__free(y);
  if (st != STROP_OK) {
    strop__err_prefix("%s", fn);
    return st;
  }

  strop__rng rng;
  strop__rng_seed(&rng, t->seed ^ 0x9E3779B97F4A7C15ULL, (uint64_t)id);
  const double *theta0 = t->theta && t->n_theta == d + 2 ? t->theta : NULL;
  st = strop__gp_fit(&gp, theta0, t->fit_restarts, &rng);
  if (st == STROP_OK && t->n_theta != d + 2) {
    double *th = strop__malloc((size_t)(d + 2) * sizeof *th);
    if (!th) st = STROP__NOMEM(fn);
    else {
      strop__free(t->theta);
      t->theta = th;
      t->n_theta = d + 2;
    }
  }
  if (st != STROP_OK) {
    strop__gp_free(&gp);
    strop__err_prefix("%s", fn); /* the model's sentence names strop__gp_*: name the caller's */
    return st;
  }
  memcpy(t->theta, gp.theta, (size_t)(d + 2) * sizeof *t->theta);

  /* candidates in blocks, keeping the n_local best */
  const int64_t block = 256;
  int64_t n_local = t->n_local, n_cand = t->n_candidates;
  int64_t keep = n_local > 0 ? n_local : 1;
  double *cx = strop__malloc((size_t)(block * d) * sizeof *cx);
  double *mu = strop__malloc((size_t)block * sizeof *mu);
  double *var = strop__malloc((size_t)block * sizeof *var);
  double *work = strop__malloc((size_t)(n * block) * sizeof *work);
  double *top = strop__malloc((size_t)(keep * d) * sizeof *top);
  double *top_ei = strop__malloc((size_t)keep * sizeof *top_ei);
  double *cand = strop__malloc((size_t)d * sizeof *cand);
  double *tmpv = strop__malloc((size_t)t->n_params * sizeof *tmpv + 1);
  if (!cx || !mu || !var || !work || !top || !top_ei || !cand || !tmpv) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  double xi = t->ei_xi * gp.ystd;
  int64_t n_top = 0;
  for (int64_t b0 = 0; b0 < n_cand; b0 += block) {
    int64_t m = n_cand - b0 < block ? n_cand - b0 : block;
    for (int64_t c = 0; c < m; c++) {
      int64_t g = b0 + c;
      if (g % 4 == 3 && n_near > 0) {
        /* a quarter of the candidates: Gaussian steps around one of the best points */
        static const double SIGMA[3] = {0.2, 0.05, 0.01};
        const double *base = gp.x + near[strop__rng_below(&rng, (uint64_t)n_near)] * d;
        double sigma = SIGMA[(g / 4) % 3];
        strop__tune_decode(t, base, tmpv);
        for (int64_t i = 0; i < t->n_params; i++) {
          const strop__tparam *p = &t->params[i];
          if (p->kind != STROP_PARAM_CATEGORICAL)
            tmpv[i] = strop__tune_from_unit(p, base[p->col] + sigma * strop__rng_normal(&rng));
          else if (strop__rng_uniform(&rng) < 0.2f)
            tmpv[i] = (double)strop__rng_below(&rng, (uint64_t)p->n_choices);
        }
      } else {
        for (int64_t i = 0; i < t->n_params; i++) {
          const strop__tparam *p = &t->params[i];
          tmpv[i] = p->kind == STROP_PARAM_CATEGORICAL
                        ? (double)strop__rng_below(&rng, (uint64_t)p->n_choices)
                        : strop__tune_from_unit(p, strop__tune_uniform(&rng));
        }
      }
      strop__tune_encode(t, tmpv, cx + c * d);
    }
    strop__gp_predict(&gp, m, cx, mu, var, work);
    for (int64_t c = 0; c < m; c++) {
      double e = expected_improvement(mu[c], var[c], fmin, xi);
      /* insertion into the sorted top list (best first) */
      int64_t pos = n_top < keep ? n_top : keep;
      while (pos > 0 && top_ei[pos - 1] < e) pos--;
      if (pos >= keep) continue;
      int64_t last = n_top < keep ? n_top : keep - 1;
      for (int64_t k = last; k > pos; k--) {
        top_ei[k] = top_ei[k - 1];
        memcpy(top + k * d, top + (k - 1) * d, (size_t)d * sizeof *top);
      }
      top_ei[pos] = e;
      memcpy(top + pos * d, cx + c * d, (size_t)d * sizeof *top);
      if (n_top < keep) n_top++;
    }
  }
  scorer sc = {&gp, fmin, xi, work, 0};
  int64_t best = 0;
  for (int64_t k = 0; k < n_top && k < n_local; k++) {
    top_ei[k] = refine(t, &sc, top + k * d, top_ei[k], cand, tmpv);
    if (top_ei[k] > top_ei[best]) best = k;
  }
  if (n_top > 0) strop__tune_decode(t, top + best * d, values);
  else strop__tune_random_point(t, id, values);
done:
  strop__free(cx);
  strop__free(mu);
  strop__free(var);
  strop__free(work);
  strop__free(top);
  strop__free(top_ei);
  strop__free(cand);
  strop__free(tmpv);
  strop__gp_free(&gp);
  return st;
}
