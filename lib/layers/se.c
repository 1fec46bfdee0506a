/* SPDX-License-Identifier: MIT */
/* strop — squeeze_excitation, a composite: it expands when added into the ordinary nodes of
 * torchvision's SqueezeExcitation (torchvision.ops.misc), with its module names, so a
 * MobileNetV3 checkpoint's "<block>.fc1.weight" loads as it is and every part can be frozen or
 * replaced like any other node. */
#include <stdio.h>

#include "layers/layer.h"

typedef struct se_cfg {
  int64_t input_channels, squeeze_channels;
  int activation, scale_activation; /* ACTS, SCALE_ACTS */
} se_cfg;

static const char *const ACTS[] = {"relu", "relu6", "silu", "hardswish", "gelu", NULL};
static const char *const SCALE_ACTS[] = {"sigmoid", "hardsigmoid", NULL};

static const strop__optdef OPTIONS[] = {
    {.name = "input_channels",
     .type = STROP__OT_INT,
     .off = offsetof(se_cfg, input_channels),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "8",
     .doc = "channels C of the [C, H, W] input"},
    {.name = "squeeze_channels",
     .type = STROP__OT_INT,
     .off = offsetof(se_cfg, squeeze_channels),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "2",
     .doc = "channels between fc1 and fc2"},
    STROP__OPT_ENUM(se_cfg, activation, "activation", "relu", ACTS,
                    "between fc1 and fc2 (torchvision's delta)"),
    STROP__OPT_ENUM(se_cfg, scale_activation, "scale_activation", "sigmoid", SCALE_ACTS,
                    "on fc2's output (torchvision's sigma; MobileNetV3: hardsigmoid)"),
    {NULL}};

/* scale = scale_activation(fc2(activation(fc1(avgpool(x))))); out = x * scale, where avgpool
 * is AdaptiveAvgPool2d(1) ([C, 1, 1]) and fc1, fc2 are 1x1 convolutions with bias. */
static strop_status se_expand(const void *cfg, strop__expander *e) {
  const se_cfg *c = cfg;
  char sc[32], ss[32];
  snprintf(sc, sizeof sc, "%lld", (long long)c->input_channels);
  snprintf(ss, sizeof ss, "%lld", (long long)c->squeeze_channels);
  const char *pool_kv[] = {"output_size", "1"};
  const char *fc1_kv[] = {"in_channels", sc, "out_channels", ss, "kernel_size", "1"};
  const char *fc2_kv[] = {"in_channels", ss, "out_channels", sc, "kernel_size", "1"};
  const char *in_x[] = {STROP__EXPAND_INPUT};
  const char *mul_in[] = {STROP__EXPAND_INPUT, "scale_activation"};
  strop_status st;
  if ((st = e->add(e, "avgpool", "adaptive_avgpool2d", pool_kv, 1, in_x, 1)) ||
      (st = e->add(e, "fc1", "conv2d", fc1_kv, 3, NULL, 0)) ||
      (st = e->add(e, "activation", ACTS[c->activation], NULL, 0, NULL, 0)) ||
      (st = e->add(e, "fc2", "conv2d", fc2_kv, 3, NULL, 0)) ||
      (st = e->add(e, "scale_activation", SCALE_ACTS[c->scale_activation], NULL, 0, NULL, 0)))
    return st;
  return e->add(e, "mul", "mul", NULL, 0, mul_in, 2);
}

const strop__layer_vtable strop__layer_squeeze_excitation = {
    .type = "squeeze_excitation",
    .doc = "squeeze-and-excitation x * scale_activation(fc2(activation(fc1(avgpool(x))))), "
           "expanded into its parts avgpool, fc1, activation, fc2, scale_activation, mul "
           "(torchvision.ops.SqueezeExcitation's names)",
    .cfg_size = sizeof(se_cfg),
    .n_inputs = 1,
    .options = OPTIONS,
    .expand = se_expand,
};
