/* SPDX-License-Identifier: MIT */
/* strop — what the Hugging Face adapters share: a language model's input (token ids up to
 * the longest sequence the options or config.json give), activation names as config.json
 * spells them, and the config's sizes checked against the checkpoint's shapes so that a
 * mismatch names the key rather than a tensor. */
#include <stdio.h>
#include <string.h>

#include "pretrained/pretrained.h"

strop_status strop__hf_text_model(const strop__pt_ctx *c, int64_t max_positions,
                                  strop_model **out) {
  const int64_t t = c->opt->max_length > 0 ? c->opt->max_length : max_positions;
  if (t < 1)
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: the longest sequence must be at least 1 (got "
                      "%lld); set max_length",
                      c->fn, c->config_path ? c->config_path : c->arch, (long long)t);
  const int64_t shape[1] = {t};
  return strop_model_create(1, shape, out);
}

strop_status strop__hf_act(const strop__pt_ctx *c, const char *key, const char *dflt,
                           strop__hf_activation *out) {
  const char *v = NULL;
  strop_status st = strop__pt_str(c, key, dflt, &v);
  if (st) return st;
  static const struct {
    const char *name, *type, *opts;
  } known[] = {
      {"gelu", "gelu", ""},
      {"gelu_new", "gelu", "approximate=tanh"},
      {"gelu_pytorch_tanh", "gelu", "approximate=tanh"},
      {"gelu_fast", "gelu", "approximate=tanh"},
      {"relu", "relu", ""},
      {"silu", "silu", ""},
      {"swish", "silu", ""},
      {"tanh", "tanh", ""},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (!strcmp(v, known[i].name)) {
      out->hf_name = known[i].name;
      out->type = known[i].type;
      out->opts = known[i].opts;
      return STROP_OK;
    }
  return strop__err(STROP_E_UNSUPPORTED,
                    "%s: %s: '%s' is \"%s\", which strop does not support "
                    "(it supports gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu, "
                    "swish, tanh)",
                    c->fn, c->config_path, key, v);
}

strop_status strop__hf_check_dims(const strop__pt_ctx *c, const strop__arch *a,
                                  const char *tensor, int dim, int64_t want, const char *key) {
  int64_t d[STROP_MAX_RANK];
  const int r = strop__pt_shape(c, a, tensor, d, STROP_MAX_RANK);
  if (r < 0 || dim >= r || d[dim] == want) return STROP_OK; /* a strict load reports absence */
  return strop__err(STROP_E_SHAPE,
                    "%s: %s: '%s' is %lld but %s has %lld in dimension %d: the "
                    "config does not describe this checkpoint",
                    c->fn, c->config_path ? c->config_path : "(no config.json)", key,
                    (long long)want, tensor, (long long)d[dim], dim);
}

strop_status strop__hf_divides(const strop__pt_ctx *c, const char *key_a, int64_t a,
                               const char *key_b, int64_t b) {
  if (b > 0 && a % b == 0) return STROP_OK;
  return strop__err(STROP_E_FORMAT, "%s: %s: '%s' %lld is not divisible by '%s' %lld%s", c->fn,
                    c->config_path, key_a, (long long)a, key_b, (long long)b,
                    " (a key config.json lacks takes the architecture's default)");
}

int64_t strop__hf_classes(const strop__pt_ctx *c, const strop__arch *a, const char *head,
                          int64_t fallback) {
  int64_t d[STROP_MAX_RANK];
  char name[160];
  snprintf(name, sizeof name, "%s.weight", head);
  if (strop__pt_shape(c, a, name, d, STROP_MAX_RANK) == 2 && d[0] > 0) return d[0];
  /* config.json's id2label, as a Hugging Face save writes num_labels */
  const strop__jnode *m = c->json && c->cfg ? strop__json_get(c->json, c->cfg, "id2label") : NULL;
  if (m && m->type == STROP__J_OBJ && m->count > 0) return m->count;
  int64_t n = 0;
  if (!strop__pt_int(c, "num_labels", &fallback, 1, INT32_MAX, &n)) return n;
  return fallback;
}
