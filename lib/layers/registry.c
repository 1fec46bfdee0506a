/* SPDX-License-Identifier: MIT */
/* strop — the layer registry: type name -> descriptor, composites included. Adding a layer is
 * adding its file and one entry here. Lookups are by name, so files never depend on order. */
#include <stdio.h>
#include <string.h>

#include "layers/layer.h"

#define L(x) extern const strop__layer_vtable strop__layer_##x;
#define LAYERS(X)                                                                               \
  X(linear) X(conv2d) X(maxpool2d) X(avgpool2d) X(global_avgpool) X(batchnorm1d) X(batchnorm2d) \
      X(layernorm) X(dropout) X(relu) X(leaky_relu) X(gelu) X(silu) X(tanh) X(sigmoid)          \
          X(softmax) X(log_softmax) X(flatten) X(reshape) X(embedding) X(positional_embedding)  \
              X(multihead_attention) X(add) X(concat) X(mean_pool) X(lora_linear)               \
                  X(transformer_block) X(rmsnorm) X(hardswish) X(hardsigmoid) X(relu6) X(mul)   \
                      X(adaptive_avgpool2d) X(squeeze_excitation) X(token_pool) X(attention)    \
                          X(transformer_encoder_layer) X(transformer_encoder) X(gated_mlp)      \
                              X(transpose) X(class_token) X(lora_embedding)
LAYERS(L)
#undef L

#define P(x) &strop__layer_##x,
static const strop__layer_vtable *const g_all[] = {LAYERS(P)};
#undef P

#define N_LAYERS ((int)(sizeof g_all / sizeof g_all[0]))

const strop__layer_vtable *strop__layer_find(const char *type) {
  for (int i = 0; type && i < N_LAYERS; i++)
    if (strcmp(g_all[i]->type, type) == 0) return g_all[i];
  return NULL;
}

int strop__layer_count(void) { return N_LAYERS; }

const strop__layer_vtable *strop__layer_at(int i) {
  return i >= 0 && i < N_LAYERS ? g_all[i] : NULL;
}

const char *strop__layer_names(char *buf, size_t cap) {
  size_t l = 0;
  if (!cap) return buf;
  buf[0] = '\0';
  for (int i = 0; i < N_LAYERS; i++) {
    size_t need = strlen(g_all[i]->type) + 2;
    if (l + need + 4 >= cap) {
      snprintf(buf + l, cap - l, "%s...", l ? ", " : "");
      break;
    }
    l += (size_t)snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", g_all[i]->type);
  }
  return buf;
}

strop_status strop__layer_parse(const strop__layer_vtable *vt, strop__opts *o, void **cfg_out) {
  *cfg_out = NULL;
  void *cfg = strop__calloc(1, vt->cfg_size ? vt->cfg_size : 1);
  if (!cfg)
    return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory", o->layer ? o->layer : "?",
                      vt->type);
  const char *saved_type = o->type;
  o->type = vt->type;
  strop_status st = strop__schema_parse(vt->options, cfg, o);
  if (!st && vt->check) st = vt->check(cfg, o);
  o->type = saved_type;
  if (st) {
    strop__free(cfg);
    return st;
  }
  *cfg_out = cfg;
  return STROP_OK;
}
