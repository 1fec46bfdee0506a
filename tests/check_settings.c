/* SPDX-License-Identifier: MIT */
/* strop tests — settings suite: every object's knob table walked through the public queries
 * (names, lookup, defaults, ranges, refusals that leave the handle as it was), the error paths
 * of the queries, recipes that take every setting, and the shortest round-trip formatter. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/numfmt.h"
#include "core/settings.h"
#include "optim/optim.h"
#include "strop/strop.h"
#include "testutil.h"
#include "train/train_impl.h"
#include "tune/tune_impl.h"

#define OK(x) ck_assert_int_eq((x), STROP_OK)

/* The error path contract: the status, and a sentence that mentions `word`. */
#define ERR(call, status, word)                                                           \
  do {                                                                                    \
    strop_clear_error();                                                                  \
    ck_assert_int_eq((call), (status));                                                   \
    ck_assert_msg(strstr(strop_last_error(), (word)) != NULL, "sentence '%s' lacks '%s'", \
                  strop_last_error(), (word));                                            \
  } while (0)

/* ---- the four objects behind one set of function pointers (public API only) ---- */

static strop_model *g_model;
static strop_optimizer *g_opt;

typedef struct obj_api {
  const char *what;
  const strop__settings *table; /* for aliases, words and groups, which the API does not list */
  int n_kinds;
  const char *(*name)(int key);
  const char *(*doc)(int key);
  strop_status (*find)(const char *name, int *key);
  strop_status (*range)(int kind, int key, double *lo, double *hi, int *flags);
  strop_status (*def)(int kind, int key, double *v);
  strop_status (*parse)(int key, const char *text, double *v);
  void *(*make)(int kind);
  void (*destroy)(void *h);
  strop_status (*set)(void *h, int key, double v);
  strop_status (*get)(const void *h, int key, double *v);
} obj_api;

static void *make_opt(int kind) {
  strop_optimizer *o = NULL;
  OK(strop_optimizer_create(g_model, kind, &o));
  return o;
}
static void free_opt(void *h) { strop_optimizer_free(h); }
static strop_status set_opt(void *h, int k, double v) {
  return strop_optimizer_set_double(h, k, v);
}
static strop_status get_opt(const void *h, int k, double *v) {
  return strop_optimizer_get_double(h, k, v);
}

static void *make_sched(int kind) {
  strop_scheduler *s = NULL;
  OK(strop_scheduler_create(g_opt, kind, &s));
  return s;
}
static void free_sched(void *h) { strop_scheduler_free(h); }
static strop_status set_sched(void *h, int k, double v) {
  return strop_scheduler_set_double(h, k, v);
}
static strop_status get_sched(const void *h, int k, double *v) {
  return strop_scheduler_get_double(h, k, v);
}

static void *make_trainer(int kind) {
  (void)kind;
  strop_trainer *t = NULL;
  OK(strop_trainer_create(g_model, g_opt, &t));
  return t;
}
static void free_trainer(void *h) { strop_trainer_free(h); }
static strop_status set_trainer(void *h, int k, double v) {
  return strop_trainer_set_double(h, k, v);
}
static strop_status get_trainer(const void *h, int k, double *v) {
  return strop_trainer_get_double(h, k, v);
}
static strop_status range_trainer(int kind, int k, double *lo, double *hi, int *fl) {
  (void)kind;
  return strop_trainer_knob_range(k, lo, hi, fl);
}
static strop_status def_trainer(int kind, int k, double *v) {
  (void)kind;
  return strop_trainer_knob_default(k, v);
}

static void *make_tuner(int kind) {
  (void)kind;
  strop_tuner *t = NULL;
  OK(strop_tuner_create(STROP_TUNE_RANDOM, 1, STROP_TUNE_MINIMIZE, &t));
  return t;
}
static void free_tuner(void *h) { strop_tuner_free(h); }
static strop_status set_tuner(void *h, int k, double v) {
  return strop_tuner_set_double(h, k, v);
}
static strop_status get_tuner(const void *h, int k, double *v) {
  return strop_tuner_get_double(h, k, v);
}
static strop_status range_tuner(int kind, int k, double *lo, double *hi, int *fl) {
  (void)kind;
  return strop_tuner_knob_range(k, lo, hi, fl);
}
static strop_status def_tuner(int kind, int k, double *v) {
  (void)kind;
  return strop_tuner_knob_default(k, v);
}

static const obj_api OBJS[] = {
    {"optimizer", &strop__optimizer_settings, 5, strop_optimizer_knob_name,
     strop_optimizer_knob_doc, strop_optimizer_knob_find, strop_optimizer_knob_range,
     strop_optimizer_knob_default, strop_optimizer_knob_parse, make_opt, free_opt, set_opt,
     get_opt},
    {"scheduler", &strop__scheduler_settings, 8, strop_scheduler_knob_name,
     strop_scheduler_knob_doc, strop_scheduler_knob_find, strop_scheduler_knob_range,
     strop_scheduler_knob_default, strop_scheduler_knob_parse, make_sched, free_sched, set_sched,
     get_sched},
    {"trainer", &strop__trainer_settings, 1, strop_trainer_knob_name, strop_trainer_knob_doc,
     strop_trainer_knob_find, range_trainer, def_trainer, strop_trainer_knob_parse, make_trainer,
     free_trainer, set_trainer, get_trainer},
    {"tuner", &strop__tuner_settings, 1, strop_tuner_knob_name, strop_tuner_knob_doc,
     strop_tuner_knob_find, range_tuner, def_tuner, strop_tuner_knob_parse, make_tuner,
     free_tuner, set_tuner, get_tuner},
};
#define N_OBJS ((int)(sizeof OBJS / sizeof OBJS[0]))

static void setup(void) {
  int64_t in[1] = {4};
  g_model = NULL;
  OK(strop_model_create(1, in, &g_model));
  OK(strop_model_add(g_model, "fc", "linear", "out_features=3", NULL));
  OK(strop_model_finalize(g_model, 1));
  OK(strop_optimizer_create(g_model, STROP_OPTIM_SGD, &g_opt));
}

static void teardown(void) {
  strop_optimizer_free(g_opt);
  strop_model_free(g_model);
}

static int n_keys(const obj_api *o) {
  int n = 0;
  while (o->name(n)) n++;
  return n;
}

/* Every scalar knob's value, for "nothing changed" checks (NaN for keys the kind lacks). */
static void values(const obj_api *o, const void *h, int n, double *v) {
  for (int k = 0; k < n; k++) {
    double lo, hi;
    int fl = 0;
    v[k] = NAN;
    if (o->range(0, k, &lo, &hi, &fl) == STROP_OK && (fl & STROP_KNOB_LIST)) continue;
    if (o->get(h, k, &v[k]) != STROP_OK) v[k] = NAN;
  }
  strop_clear_error();
}

static void assert_same(const double *a, const double *b, int n, const char *what, int key,
                        double tried) {
  for (int k = 0; k < n; k++)
    ck_assert_msg((isnan(a[k]) && isnan(b[k])) || a[k] == b[k],
                  "%s: refusing %g for knob %d changed knob %d (%g -> %g)", what, tried, key, k,
                  a[k], b[k]);
}

/* A refused set: the status, a sentence naming the knob, and the handle as it was. */
static void refused(const obj_api *o, void *h, int n, int key, double v, const char *word) {
  double before[64], after[64];
  values(o, h, n, before);
  strop_clear_error();
  const char *name = o->name(key);
  int st = o->set(h, key, v);
  ck_assert_msg(st == STROP_E_INVALID_ARG, "%s: %s = %g accepted (status %d)", o->what, name, v,
                st);
  ck_assert_msg(strstr(strop_last_error(), name) && strstr(strop_last_error(), word),
                "%s: sentence '%s' lacks '%s' or '%s'", o->what, strop_last_error(), name, word);
  values(o, h, n, after);
  assert_same(before, after, n, o->what, key, v);
}

/* ---- the walk ---- */

START_TEST(tables_walk) {
  const obj_api *o = &OBJS[_i];
  const int n = n_keys(o);
  ck_assert_int_eq(n, o->table->n);
  ck_assert_int_le(n, 64);
  for (int k = 0; k < n; k++) {
    const char *name = o->name(k);
    const strop__setting *d = strop__settings_at(o->table, k);
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(d->key, k);
    ck_assert_msg(name[0] && o->doc(k) && o->doc(k)[0], "%s knob %d: no name or doc", o->what, k);
    int key = -1;
    OK(o->find(name, &key));
    ck_assert_int_eq(key, k);
    if (d->alias) {
      OK(o->find(d->alias, &key));
      ck_assert_int_eq(key, k);
    }
    /* names and other spellings are unique across the table */
    for (int j = 0; j < k; j++) {
      const strop__setting *e = strop__settings_at(o->table, j);
      ck_assert_msg(
          !strop__setting_matches(e, name) && !(d->alias && strop__setting_matches(e, d->alias)),
          "%s: knobs %d and %d share a name", o->what, j, k);
    }
    if (d->type == STROP__SET_ENUM) { /* one word per value */
      int w = 0;
      while (d->words[w]) w++;
      ck_assert_msg(d->lo + w - 1 == d->hi, "%s: %s has %d words for [%g, %g]", o->what, name, w,
                    d->lo, d->hi);
      for (int i = 0; i < w; i++) {
        double v = -1;
        OK(o->parse(k, d->words[i], &v));
        ck_assert(v == d->lo + i);
      }
    }
  }
  ck_assert_ptr_null(o->name(n));
  ck_assert_ptr_null(o->doc(n));

  for (int kind = 0; kind < o->n_kinds; kind++) {
    void *h = o->make(kind);
    for (int k = 0; k < n; k++) {
      const char *name = o->name(k);
      double lo, hi, def;
      int fl = 0;
      if (o->range(kind, k, &lo, &hi, &fl) != STROP_OK) {
        /* a knob the kind does not use: every query and the setter refuse it alike */
        ck_assert_int_eq(o->def(kind, k, &def), STROP_E_INVALID_ARG);
        double x = 0;
        ck_assert_int_eq(o->get(h, k, &x), STROP_E_INVALID_ARG);
        ck_assert_int_eq(o->set(h, k, 1.0), STROP_E_INVALID_ARG);
        ck_assert_ptr_nonnull(strstr(strop_last_error(), "does not apply"));
        continue;
      }
      OK(o->def(kind, k, &def));
      if (fl & STROP_KNOB_LIST) {
        ck_assert(def == 0.0); /* the empty list */
        continue;
      }
      double now = NAN;
      OK(o->get(h, k, &now));
      ck_assert_msg(now == def, "%s kind %d: %s is %g on a new handle, the default says %g",
                    o->what, kind, name, now, def);
      if (fl & STROP_KNOB_REQUIRED) {
        ck_assert_msg(def == 0.0, "%s: required %s defaults to %g", o->what, name, def);
      } else {
        int in = (fl & STROP_KNOB_LO_OPEN) ? def > lo : def >= lo;
        in = in && ((fl & STROP_KNOB_HI_OPEN) ? def < hi : def <= hi);
        ck_assert_msg(in && isfinite(def), "%s kind %d: %s default %g outside [%g, %g]", o->what,
                      kind, name, def, lo, hi);
        if (fl & STROP_KNOB_INT) ck_assert(def == floor(def));
      }
      /* refusals, each leaving the handle as it was */
      refused(o, h, n, k, NAN, "got nan");
      refused(o, h, n, k, -INFINITY, "got -inf");
      if ((fl & STROP_KNOB_INF_OK) && isinf(hi) && !(fl & STROP_KNOB_HI_OPEN)) {
        OK(o->set(h, k, INFINITY)); /* documented: infinity means something */
        double back = 0;
        OK(o->get(h, k, &back));
        ck_assert(isinf(back));
        OK(o->set(h, k, def));
      } else {
        refused(o, h, n, k, INFINITY, "got inf");
      }
      if (isfinite(lo)) {
        double below = (fl & STROP_KNOB_INT) ? lo - 1 : nextafter(lo, -INFINITY);
        if (fl & STROP_KNOB_LO_OPEN) below = lo;
        if (lo > -0x1p62) refused(o, h, n, k, below, "got");
      }
      if (isfinite(hi) && hi < 0x1p62) {
        double above = (fl & STROP_KNOB_INT) ? hi + 1 : nextafter(hi, INFINITY);
        if (fl & STROP_KNOB_HI_OPEN) above = hi;
        refused(o, h, n, k, above, "got");
      }
      if ((fl & STROP_KNOB_INT) && lo + 0.5 != lo && lo + 0.5 < hi)
        refused(o, h, n, k, lo + 0.5, ".5");
      /* text forms */
      double pv;
      ck_assert_int_eq(o->parse(k, "nan", &pv), STROP_E_INVALID_ARG);
      ck_assert_ptr_nonnull(strstr(strop_last_error(), name));
      ck_assert_int_eq(o->parse(k, "", &pv), STROP_E_INVALID_ARG);
      if (fl & STROP_KNOB_FLAG) {
        OK(o->parse(k, "true", &pv));
        ck_assert(pv == 1.0);
        OK(o->parse(k, "off", &pv));
        ck_assert(pv == 0.0);
      } else if (!(fl & STROP_KNOB_ENUM)) {
        ck_assert_int_eq(o->parse(k, "inf", &pv),
                         (fl & STROP_KNOB_INF_OK) ? STROP_OK : STROP_E_INVALID_ARG);
        OK(o->parse(k, "7", &pv));
        ck_assert(pv == 7.0);
      }
    }
    o->destroy(h);
  }
}
END_TEST

/* The error paths of every query (no handle) and of the double setters and getters. */
START_TEST(query_errors) {
  const obj_api *o = &OBJS[_i];
  const int n = n_keys(o);
  const int64_t live = strop__alloc_live();
  int key = 7;
  double v = 0, lo, hi;
  int fl;
  ERR(o->find(NULL, &key), STROP_E_INVALID_ARG, "name");
  ERR(o->find("lr", NULL), STROP_E_INVALID_ARG, "key");
  ERR(o->find("no_such_knob", &key), STROP_E_NOT_FOUND, "no_such_knob");
  ck_assert_ptr_nonnull(strstr(strop_last_error(), o->name(0))); /* lists the known names */
  ck_assert_int_eq(key, 7);                                      /* untouched */
  ERR(o->range(0, n, &lo, &hi, &fl), STROP_E_INVALID_ARG, "unknown knob");
  ERR(o->range(0, -1, &lo, &hi, &fl), STROP_E_INVALID_ARG, "unknown knob");
  ERR(o->def(0, n, &v), STROP_E_INVALID_ARG, "unknown knob");
  ERR(o->def(0, 0, NULL), STROP_E_INVALID_ARG, "NULL");
  if (o->n_kinds > 1) {
    ERR(o->range(o->n_kinds, 0, &lo, &hi, &fl), STROP_E_INVALID_ARG, "kind");
    ERR(o->def(-1, 0, &v), STROP_E_INVALID_ARG, "kind");
  }
  ERR(o->parse(n, "1", &v), STROP_E_INVALID_ARG, "unknown knob");
  ERR(o->parse(0, NULL, &v), STROP_E_INVALID_ARG, "NULL");
  ERR(o->parse(0, "1", NULL), STROP_E_INVALID_ARG, "NULL");
  ERR(o->parse(0, "1x", &v), STROP_E_INVALID_ARG, "got '1x'");
  ck_assert_ptr_null(o->name(-1));
  ck_assert_ptr_null(o->doc(-1));
  /* the setters and getters */
  void *h = o->make(0);
  double before[64], after[64];
  values(o, h, n, before);
  ERR(o->set(NULL, 0, 1.0), STROP_E_INVALID_ARG, "NULL");
  ERR(o->get(NULL, 0, &v), STROP_E_INVALID_ARG, "NULL");
  ERR(o->get(h, 0, NULL), STROP_E_INVALID_ARG, "NULL");
  ERR(o->set(h, n, 1.0), STROP_E_INVALID_ARG, "unknown knob");
  ERR(o->set(h, -1, 1.0), STROP_E_INVALID_ARG, "unknown knob");
  ERR(o->get(h, n, &v), STROP_E_INVALID_ARG, "unknown knob");
  values(o, h, n, after);
  assert_same(before, after, n, o->what, -1, 0);
  o->destroy(h);
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

/* Values are stored as doubles: whatever is set is read back bit for bit. */
START_TEST(doubles_round_trip) {
  const double lr = 0.000123456789012;
  OK(strop_optimizer_set_double(g_opt, STROP_OPT_LR, lr));
  double back = 0;
  OK(strop_optimizer_get_double(g_opt, STROP_OPT_LR, &back));
  ck_assert(back == lr);
  float f = 0;
  OK(strop_optimizer_get_float(g_opt, STROP_OPT_LR, &f));
  ck_assert(f == (float)lr);
  /* the deprecated float setter keeps its widening: 0.95f is used as 0.95 */
  OK(strop_optimizer_set_float(g_opt, STROP_OPT_MOMENTUM, 0.95f));
  OK(strop_optimizer_get_double(g_opt, STROP_OPT_MOMENTUM, &back));
  ck_assert(back == 0.95);
  ERR(strop_optimizer_set_float(g_opt, STROP_OPT_NESTEROV, 1.0f), STROP_E_INVALID_ARG,
      "not a float knob");
  ERR(strop_optimizer_set_int(g_opt, STROP_OPT_LR, 1), STROP_E_INVALID_ARG, "not an int knob");
  /* flags through the double setter */
  OK(strop_optimizer_set_double(g_opt, STROP_OPT_NESTEROV, 1.0));
  int iv = 0;
  OK(strop_optimizer_get_int(g_opt, STROP_OPT_NESTEROV, &iv));
  ck_assert_int_eq(iv, 1);
  ERR(strop_optimizer_set_double(g_opt, STROP_OPT_NESTEROV, 0.5), STROP_E_INVALID_ARG,
      "nesterov must be 0 or 1, got 0.5");
  OK(strop_optimizer_set_double(g_opt, STROP_OPT_NESTEROV, 0.0));
  /* the scheduler's list is refused by the scalar setter, naming the list one */
  strop_scheduler *s = NULL;
  OK(strop_scheduler_create(g_opt, STROP_SCHED_MULTISTEP, &s));
  ERR(strop_scheduler_set_double(s, STROP_SCH_MILESTONES, 3), STROP_E_INVALID_ARG,
      "strop_scheduler_set_ints");
  ERR(strop_scheduler_get_double(s, STROP_SCH_MILESTONES, &back), STROP_E_INVALID_ARG, "list");
  strop_scheduler_free(s);
  OK(strop_scheduler_create(g_opt, STROP_SCHED_ONE_CYCLE, &s));
  OK(strop_scheduler_set_double(s, STROP_SCH_ANNEAL, STROP_ANNEAL_LINEAR));
  ERR(strop_scheduler_set_double(s, STROP_SCH_ANNEAL, 2), STROP_E_INVALID_ARG, "1 (linear)");
  OK(strop_scheduler_knob_parse(STROP_SCH_ANNEAL, "linear", &back));
  ck_assert(back == STROP_ANNEAL_LINEAR);
  strop_scheduler_free(s);
  /* the trainer: ignore_index keeps every int64 through the int setter */
  strop_trainer *t = NULL;
  OK(strop_trainer_create(g_model, g_opt, &t));
  OK(strop_trainer_set_int(t, STROP_TRAIN_IGNORE_INDEX, INT64_MAX));
  int64_t i64 = 0;
  OK(strop_trainer_get_int(t, STROP_TRAIN_IGNORE_INDEX, &i64));
  ck_assert(i64 == INT64_MAX);
  OK(strop_trainer_set_int(t, STROP_TRAIN_SCHED_PER_EPOCH, 5)); /* 0.1's "non-zero is 1" */
  OK(strop_trainer_get_int(t, STROP_TRAIN_SCHED_PER_EPOCH, &i64));
  ck_assert(i64 == 1);
  ERR(strop_trainer_set_double(t, STROP_TRAIN_SCHED_PER_EPOCH, 5), STROP_E_INVALID_ARG, "0 or 1");
  OK(strop_trainer_set_double(t, STROP_TRAIN_LABEL_SMOOTHING, 0.1));
  OK(strop_trainer_get_double(t, STROP_TRAIN_LABEL_SMOOTHING, &back));
  ck_assert(back == 0.1);
  ERR(strop_trainer_set_double(t, STROP_TRAIN_CLIP_NORM, INFINITY), STROP_E_INVALID_ARG,
      "clip_norm must be a finite number");
  strop_trainer_free(t);
  OK(strop_optimizer_set_double(g_opt, STROP_OPT_LR, 1e-3));
}
END_TEST

/* A recipe takes every setting of every table under its section, by name and other
 * spelling; a name and its other spelling together are refused. */
START_TEST(recipes_take_every_setting) {
  static const struct {
    const strop__settings *t;
    const char *group, *section, *extra;
  } sec[] = {{&strop__optimizer_settings, NULL, "optimizer", ""},
             {&strop__scheduler_settings, NULL, "schedule", ""},
             {&strop__trainer_settings, "loss", "loss", ""},
             {&strop__trainer_settings, "update", "train", ""},
             {&strop__tuner_settings, NULL, "tune", ""}};
  for (size_t i = 0; i < sizeof sec / sizeof sec[0]; i++) {
    for (int k = 0; k < sec[i].t->n; k++) {
      const strop__setting *d = strop__settings_at(sec[i].t, k);
      if (sec[i].group && strcmp(d->group, sec[i].group)) continue;
      for (int spelling = 0; spelling < 2; spelling++) {
        const char *key = spelling ? d->alias : d->name;
        if (!key) continue;
        char val[64], yaml[256];
        if (d->type == STROP__SET_LIST) snprintf(val, sizeof val, "[2, 5]");
        else strop__setting_format(d, strop__setting_default(d, 0), val, sizeof val);
        snprintf(yaml, sizeof yaml, "%s:\n  %s: %s\n", sec[i].section, key, val);
        strop_recipe *r = NULL;
        ck_assert_msg(strop_recipe_load_string(yaml, NULL, &r) == STROP_OK, "%s: %s", yaml,
                      strop_last_error());
        strop_recipe_free(r);
      }
      if (d->alias) {
        char val[64], yaml[256];
        strop__setting_format(d, strop__setting_default(d, 0), val, sizeof val);
        snprintf(yaml, sizeof yaml, "%s:\n  %s: %s\n  %s: %s\n", sec[i].section, d->name, val,
                 d->alias, val);
        strop_recipe *r = NULL;
        ERR(strop_recipe_load_string(yaml, NULL, &r), STROP_E_FORMAT, "are the same setting");
      }
    }
  }
  /* a trainer setting belongs to its own section */
  strop_recipe *r = NULL;
  ERR(strop_recipe_load_string("train:\n  label_smoothing: 0.1\n", NULL, &r), STROP_E_FORMAT,
      "unknown key 'label_smoothing' in 'train'");
  ERR(strop_recipe_load_string("schedule:\n  anneal: sine\n", NULL, &r), STROP_E_FORMAT,
      "'anneal' must be one of cos, linear, got 'sine'");
  ERR(strop_recipe_load_string("optimizer:\n  maximize: 2\n", NULL, &r), STROP_E_FORMAT,
      "'maximize' must be true or false");
  ERR(strop_recipe_load_string("train:\n  clip_norm: nan\n", NULL, &r), STROP_E_FORMAT,
      "'clip_norm' must be a number");
  ERR(strop_recipe_load_string("train:\n  clip_norm: inf\n", NULL, &r), STROP_E_FORMAT,
      "'clip_norm' must be a number");
  OK(strop_recipe_load_string("schedule:\n  final_div_factor: inf\n", NULL, &r)); /* lr 0 */
  strop_recipe_free(r);
  ERR(strop_recipe_load_string("optimizer:\n  lr: inf\n", NULL, &r), STROP_E_FORMAT,
      "'lr' must be a number");
}
END_TEST

/* ---- the formatter ---- */

START_TEST(fmt_double_round_trips) {
  static const struct {
    double v;
    const char *want;
  } cases[] = {{0.001, "0.001"},
               {1e-5, "1e-05"},
               {0.000123456789012, "0.000123456789012"},
               {10, "10"},
               {-100, "-100"},
               {0.1, "0.1"},
               {1.0 / 3, "0.3333333333333333"},
               {-0.0, "-0"},
               {1e300, "1e+300"},
               {INFINITY, "inf"},
               {-INFINITY, "-inf"}};
  char buf[STROP__FMT_DOUBLE_MAX];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    strop__fmt_double(cases[i].v, buf, sizeof buf);
    ck_assert_str_eq(buf, cases[i].want);
  }
  strop__fmt_double(NAN, buf, sizeof buf);
  ck_assert_str_eq(buf, "nan");
  /* any double reads back exactly, in at most 24 characters */
  strop_rng *g = NULL;
  OK(strop_rng_create(11, &g));
  double extremes[] = {DBL_MAX, DBL_MIN, DBL_TRUE_MIN, -DBL_MAX, 9007199254740993.0,
                       1e16,    0x1p63,  5e-324};
  for (int i = 0; i < 20000; i++) {
    double v;
    if (i < (int)(sizeof extremes / sizeof extremes[0])) {
      v = extremes[i];
    } else {
      uint64_t bits = ((uint64_t)strop_rng_next_u32(g) << 32) | strop_rng_next_u32(g);
      memcpy(&v, &bits, sizeof v);
      if (!isfinite(v)) continue;
    }
    size_t n = strop__fmt_double(v, buf, sizeof buf);
    ck_assert_uint_lt(n, sizeof buf);
    double back = strtod(buf, NULL);
    ck_assert_msg(memcmp(&back, &v, sizeof v) == 0 || (v == 0 && back == 0),
                  "%.17g written as '%s' reads back as %.17g", v, buf, back);
  }
  strop_rng_free(g);
  ck_assert_uint_eq(strop__fmt_double(0.5, NULL, 0), 3); /* snprintf style */
}
END_TEST

int main(void) {
  Suite *s = suite_create("settings");
  TCase *tc = tcase_create("tables");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, tables_walk, 0, N_OBJS);
  tcase_add_loop_test(tc, query_errors, 0, N_OBJS);
  tcase_add_test(tc, doubles_round_trip);
  suite_add_tcase(s, tc);
  tc = tcase_create("recipes");
  tcase_add_test(tc, recipes_take_every_setting);
  suite_add_tcase(s, tc);
  tc = tcase_create("format");
  tcase_add_test(tc, fmt_double_round_trips);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
