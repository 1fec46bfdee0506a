/* SPDX-License-Identifier: MIT */
/* strop tests — the layer contract: every registered type (composites included) walked through
 * its option schema — defaults written back as declared, written options read back to the
 * same, every out-of-range or malformed value refused with a sentence naming the option — and
 * its descriptor documented. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layer.h"
#include "strop/strop.h"
#include "testutil.h"

/* The type's required options at their examples: the smallest valid option list. */
static void required_opts(const strop__layer_vtable *vt, strop__opts *o) {
  memset(o, 0, sizeof *o);
  for (const strop__optdef *d = vt->options; d && d->name; d++) {
    if (d->dflt) continue;
    ck_assert_msg(d->example != NULL, "%s: required option '%s' has no example", vt->type,
                  d->name);
    ck_assert_int_eq(strop__opts_add(o, d->name, d->example, 0, 0), STROP_OK);
  }
  o->layer = "t";
  o->type = vt->type;
}

/* "k=v k=v ..." of the options cfg writes back */
static void written(const strop__layer_vtable *vt, const void *cfg, strop__opts *out, char *text,
                    size_t cap) {
  memset(out, 0, sizeof *out);
  ck_assert_int_eq(strop__schema_write(vt->options, cfg, out), STROP_OK);
  text[0] = '\0';
  for (int i = 0; i < out->n; i++) {
    size_t l = strlen(text);
    snprintf(text + l, cap - l, "%s=%s; ", out->v[i].key, out->v[i].val);
  }
}

START_TEST(every_type_documented) {
  ck_assert_int_ge(strop__layer_count(), 27);
  for (int i = 0; i < strop__layer_count(); i++) {
    const strop__layer_vtable *vt = strop__layer_at(i);
    ck_assert_ptr_eq(strop__layer_find(vt->type), vt);
    ck_assert_msg(vt->doc && *vt->doc, "%s has no doc", vt->type);
    ck_assert_msg((vt->expand != NULL) != (vt->forward != NULL),
                  "%s: a composite expands, a layer runs; not both, not neither", vt->type);
    ck_assert_msg(vt->expand || (vt->shape && vt->infer && vt->backward),
                  "%s lacks shape, infer or backward", vt->type);
    for (const strop__optdef *d = vt->options; d && d->name; d++) {
      ck_assert_msg(d->doc && *d->doc, "%s.%s has no doc", vt->type, d->name);
      for (const strop__optdef *e = d + 1; e->name; e++)
        ck_assert_msg(strcmp(d->name, e->name) != 0, "%s: option '%s' twice", vt->type, d->name);
    }
    int slots = 0;
    for (const strop__paramdef *p = vt->params; p && p->name; p++, slots++)
      ck_assert_msg(p->doc && *p->doc, "%s parameter '%s' has no doc", vt->type, p->name);
    ck_assert_int_le(slots, STROP__MAX_SLOTS);
  }
}
END_TEST

/* Defaults written back are the declared defaults; what is written reads back to the same. */
START_TEST(defaults_round_trip) {
  char t1[2048], t2[2048];
  for (int i = 0; i < strop__layer_count(); i++) {
    const strop__layer_vtable *vt = strop__layer_at(i);
    strop__opts o, w1, w2;
    required_opts(vt, &o);
    void *cfg = NULL;
    strop_status st = strop__layer_parse(vt, &o, &cfg);
    ck_assert_msg(st == STROP_OK, "%s: the required options alone: %s", vt->type,
                  strop_last_error());
    written(vt, cfg, &w1, t1, sizeof t1);
    ck_assert_int_eq(w1.n, strop__schema_count(vt->options));
    for (int k = 0; k < w1.n; k++) {
      const strop__optdef *d = &vt->options[k];
      ck_assert_str_eq(w1.v[k].key, d->name);
      if (d->dflt)
        ck_assert_msg(strcmp(w1.v[k].val, d->dflt) == 0, "%s.%s: default '%s' written as '%s'",
                      vt->type, d->name, d->dflt, w1.v[k].val);
    }
    /* the written list parses and writes back identically */
    void *cfg2 = NULL;
    w1.layer = "t";
    st = strop__layer_parse(vt, &w1, &cfg2);
    ck_assert_msg(st == STROP_OK, "%s: written options '%s' do not parse: %s", vt->type, t1,
                  strop_last_error());
    written(vt, cfg2, &w2, t2, sizeof t2);
    ck_assert_msg(strcmp(t1, t2) == 0, "%s: '%s' then '%s'", vt->type, t1, t2);
    strop__opts_free(&o);
    strop__opts_free(&w1);
    strop__opts_free(&w2);
    strop__free(cfg);
    strop__free(cfg2);
  }
}
END_TEST

/* Parses the required options plus key=val; it must fail naming the layer and the key. */
static void expect_refused(const strop__layer_vtable *vt, const char *key, const char *val) {
  strop__opts o;
  required_opts(vt, &o);
  ck_assert_int_eq(strop__opts_set(&o, key, val), STROP_OK);
  void *cfg = NULL;
  strop_clear_error();
  strop_status st = strop__layer_parse(vt, &o, &cfg);
  const char *e = strop_last_error();
  ck_assert_msg(st != STROP_OK, "%s: %s=%s was accepted", vt->type, key, val);
  ck_assert_msg(st == STROP_E_INVALID_ARG, "%s: %s=%s: status %s (%s)", vt->type, key, val,
                strop_status_str(st), e);
  char want[128];
  snprintf(want, sizeof want, "option '%s'", key);
  ck_assert_msg(strstr(e, want) && strstr(e, "layer 't'") && strstr(e, vt->type),
                "%s: %s=%s: the error does not name layer, type and option: %s", vt->type, key,
                val, e);
  ck_assert_ptr_null(cfg);
  strop__opts_free(&o);
}

static void fmt(char *buf, size_t cap, double v, int is_float) {
  if (is_float) snprintf(buf, cap, "%.17g", v);
  else snprintf(buf, cap, "%.0f", v);
}

START_TEST(bad_values_refused) {
  char v[64];
  int checked = 0;
  for (int i = 0; i < strop__layer_count(); i++) {
    const strop__layer_vtable *vt = strop__layer_at(i);
    expect_refused(vt, "no_such_option", "1");
    for (const strop__optdef *d = vt->options; d && d->name; d++) {
      const int is_float = d->type == STROP__OT_FLOAT || d->type == STROP__OT_FLOATS;
      switch (d->type) {
        case STROP__OT_BOOL: expect_refused(vt, d->name, "maybe"); break;
        case STROP__OT_ENUM: expect_refused(vt, d->name, "no_such_word"); break;
        default:
          expect_refused(vt, d->name, "abc");
          expect_refused(vt, d->name, "");
          if (is_float) expect_refused(vt, d->name, "nan");
          if (d->lo > -INFINITY) {
            fmt(v, sizeof v, (d->flags & STROP__OF_LO_OPEN) ? d->lo : d->lo - fabs(d->lo) - 1,
                is_float);
            expect_refused(vt, d->name, v);
          }
          if (d->hi < INFINITY) {
            fmt(v, sizeof v, (d->flags & STROP__OF_HI_OPEN) ? d->hi : d->hi + fabs(d->hi) + 1,
                is_float);
            expect_refused(vt, d->name, v);
            if (is_float) expect_refused(vt, d->name, "inf");
          }
          if (d->type != STROP__OT_INT && d->type != STROP__OT_FLOAT) {
            snprintf(v, sizeof v, "[%s", d->example ? d->example : "1");
            expect_refused(vt, d->name, v); /* unclosed */
            /* one entry too many */
            size_t l = (size_t)snprintf(v, sizeof v, "[");
            for (int k = 0; k <= d->n && l < sizeof v - 8; k++)
              l += (size_t)snprintf(v + l, sizeof v - l, "%s1", k ? ", " : "");
            snprintf(v + l, sizeof v - l, "]");
            expect_refused(vt, d->name, v);
          }
          break;
      }
      checked++;
    }
    /* a missing required option is named */
    for (const strop__optdef *d = vt->options; d && d->name; d++) {
      if (d->dflt) continue;
      strop__opts o;
      required_opts(vt, &o);
      for (int k = 0; k < o.n; k++)
        if (!strcmp(o.v[k].key, d->name)) {
          strop__free(o.v[k].key);
          strop__free(o.v[k].val);
          o.v[k] = o.v[--o.n];
        }
      void *cfg = NULL;
      ck_assert_int_eq(strop__layer_parse(vt, &o, &cfg), STROP_E_INVALID_ARG);
      char want[96];
      snprintf(want, sizeof want, "'%s' is required", d->name);
      ck_assert_msg(strstr(strop_last_error(), want), "%s: %s", vt->type, strop_last_error());
      strop__opts_free(&o);
    }
  }
  ck_assert_int_ge(checked, 40);
}
END_TEST

/* The public model API refuses a bad option with the same sentence. */
START_TEST(model_add_names_the_option) {
  int64_t in[1] = {4};
  strop_model *m = NULL;
  ck_assert_int_eq(strop_model_create(1, in, &m), STROP_OK);
  ck_assert_int_eq(strop_model_add(m, "fc", "linear", "out_features=-3", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "layer 'fc' (linear): option 'out_features'"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "got '-3'"));
  ck_assert_int_eq(strop_model_add(m, "fc", "linear", "out_features=3 bais=true", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "option 'bais': unknown option"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "in_features, out_features, bias"));
  ck_assert_int_eq(strop_model_add(m, "x", "no_such_type", NULL, NULL), STROP_E_NOT_FOUND);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "transformer_block"));
  ck_assert_int_eq(strop_model_num_nodes(m), 0);
  strop_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("layers_schema");
  TCase *tc = tcase_create("schema");
  tcase_add_test(tc, every_type_documented);
  tcase_add_test(tc, defaults_round_trip);
  tcase_add_test(tc, bad_values_refused);
  tcase_add_test(tc, model_add_names_the_option);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
