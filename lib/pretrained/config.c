/* SPDX-License-Identifier: MIT */
/* strop — reading a Hugging Face config.json for an adapter: typed fields with defaults and
 * ranges, errors naming the file, the key and what was found. */
#include <math.h>
#include <stdlib.h>

#include "pretrained/pretrained.h"

static const strop__jnode *field(const strop__pt_ctx *c, const char *key) {
  return c->json && c->cfg ? strop__json_get(c->json, c->cfg, key) : NULL;
}

static strop_status missing(const strop__pt_ctx *c, const char *key, const char *what) {
  return strop__err(STROP_E_FORMAT, "%s: %s: '%s' is %s (architecture %s)", c->fn,
                    c->config_path ? c->config_path : "(no config.json)", key, what, c->arch);
}

strop_status strop__pt_int(const strop__pt_ctx *c, const char *key, const int64_t *dflt,
                           int64_t lo, int64_t hi, int64_t *out) {
  const strop__jnode *v = field(c, key);
  if (!v || v->type == STROP__J_NULL) {
    if (!dflt) return missing(c, key, "required but missing");
    *out = *dflt;
    return STROP_OK;
  }
  if (v->type != STROP__J_NUM || !v->is_int) return missing(c, key, "not an integer");
  if (v->ival < lo || v->ival > hi)
    return strop__err(STROP_E_FORMAT, "%s: %s: '%s' must be in [%lld, %lld], got %lld", c->fn,
                      c->config_path, key, (long long)lo, (long long)hi, (long long)v->ival);
  *out = v->ival;
  return STROP_OK;
}

strop_status strop__pt_float(const strop__pt_ctx *c, const char *key, const double *dflt,
                             double lo, double hi, double *out) {
  const strop__jnode *v = field(c, key);
  if (!v || v->type == STROP__J_NULL) {
    if (!dflt) return missing(c, key, "required but missing");
    *out = *dflt;
    return STROP_OK;
  }
  if (v->type != STROP__J_NUM) return missing(c, key, "not a number");
  const double x = v->is_int ? (double)v->ival : strtod(v->str, NULL);
  if (!isfinite(x) || x < lo || x > hi)
    return strop__err(STROP_E_FORMAT, "%s: %s: '%s' must be in [%g, %g], got %s", c->fn,
                      c->config_path, key, lo, hi, v->str);
  *out = x;
  return STROP_OK;
}

strop_status strop__pt_bool(const strop__pt_ctx *c, const char *key, int dflt, int *out) {
  const strop__jnode *v = field(c, key);
  if (!v || v->type == STROP__J_NULL) {
    *out = dflt;
    return STROP_OK;
  }
  if (v->type != STROP__J_TRUE && v->type != STROP__J_FALSE)
    return missing(c, key, "not true or false");
  *out = v->type == STROP__J_TRUE;
  return STROP_OK;
}

strop_status strop__pt_str(const strop__pt_ctx *c, const char *key, const char *dflt,
                           const char **out) {
  const strop__jnode *v = field(c, key);
  if (!v || v->type == STROP__J_NULL) {
    *out = dflt;
    return STROP_OK;
  }
  if (v->type != STROP__J_STR) return missing(c, key, "not a string");
  *out = v->str;
  return STROP_OK;
}
