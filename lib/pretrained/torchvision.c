/* SPDX-License-Identifier: MIT */
/* strop — torchvision's classification networks with torchvision's module names, so a
 * state_dict saved as safetensors (save_file(model.state_dict(), path)) loads strictly and a
 * fine-tuned model saves back into a file torchvision's model loads with strict=True.
 *
 * ResNet (torchvision.models.resnet, v1.5: the stride on the 3x3 conv of a Bottleneck):
 *   conv1 bn1 relu maxpool layer1..layer4 avgpool fc; block i of layerN is
 *   layerN.i.{conv1,bn1,conv2,bn2[,conv3,bn3][,downsample.0,downsample.1]}.
 * torchvision reuses one ReLU module per block; here each application is its own
 * parameter-free node (relu1, relu2, ...), which changes no tensor name.
 *
 * MobileNetV2 / V3 (torchvision.models.mobilenetv2 / mobilenetv3, width_mult 1): each
 * Conv2dNormActivation is features.N[.conv.M | .block.M].{0 conv, 1 BatchNorm, 2 activation};
 * V2's inverted residual ends in a bare conv.K + BatchNorm conv.K+1, V3's in a
 * Conv2dNormActivation without activation; V3's squeeze-excitation is the squeeze_excitation
 * composite (block.M.{avgpool, fc1, activation, fc2, scale_activation, mul}); residual sums
 * are parameter-free nodes features.N.add. The classifier keeps its Dropout (p = 0.2, as
 * torchvision builds it), active in train mode. */
#include <stdio.h>

#include "pretrained/pretrained.h"

/* The number of classes: fc.weight's rows (a torchvision model built with num_classes=10 has
 * fc.weight [10, C]). */
static strop_status classes_from(const strop__pt_ctx *c, const strop__arch *a, const char *head,
                                 int64_t fallback, int64_t *out) {
  int64_t dims[STROP_MAX_RANK];
  char name[128];
  snprintf(name, sizeof name, "%s.weight", head);
  int r = strop__pt_shape(c, a, name, dims, STROP_MAX_RANK);
  if (r < 0) {
    *out = fallback; /* a partial load; a strict one reports the missing tensor */
    return STROP_OK;
  }
  if (r != 2 || dims[0] < 1)
    return strop__err(STROP_E_SHAPE, "%s: %s is not a [classes, features] matrix (rank %d)",
                      c->fn, name, r);
  *out = dims[0];
  return STROP_OK;
}

static strop_status image_model(const strop__pt_ctx *c, strop_model **out) {
  int64_t s = c->opt->image_size > 0 ? c->opt->image_size : 224;
  const int64_t shape[3] = {3, s, s};
  return strop_model_create(3, shape, out);
}

/* One residual block named pre ("layer2.0") reading node in; *inplanes is updated. */
static strop_status res_block(strop_model *m, const char *pre, const char *in, int bottleneck,
                              int64_t planes, int64_t stride, int64_t *inplanes) {
  char n[12][96], add_in[200];
  const int64_t expansion = bottleneck ? 4 : 1;
  const char *parts[] = {"conv1",        "bn1",          "relu1", "conv2",
                         "bn2",          "relu2",        "conv3", "bn3",
                         "downsample.0", "downsample.1", "add",   bottleneck ? "relu3" : "relu2"};
  for (int k = 0; k < 12; k++) snprintf(n[k], sizeof n[k], "%s.%s", pre, parts[k]);
  strop_status st;
  if (bottleneck) {
    if ((st = strop__pt_add(m, n[0], "conv2d", in, "out_channels=%lld kernel_size=1 bias=false",
                            (long long)planes)) ||
        (st = strop__pt_add(m, n[1], "batchnorm2d", NULL, NULL)) ||
        (st = strop__pt_add(m, n[2], "relu", NULL, NULL)) ||
        (st = strop__pt_add(m, n[3], "conv2d", NULL,
                            "out_channels=%lld kernel_size=3 stride=%lld padding=1 bias=false",
                            (long long)planes, (long long)stride)) ||
        (st = strop__pt_add(m, n[4], "batchnorm2d", NULL, NULL)) ||
        (st = strop__pt_add(m, n[5], "relu", NULL, NULL)) ||
        (st = strop__pt_add(m, n[6], "conv2d", NULL, "out_channels=%lld kernel_size=1 bias=false",
                            (long long)(planes * 4))) ||
        (st = strop__pt_add(m, n[7], "batchnorm2d", NULL, NULL)))
      return st;
  } else {
    if ((st = strop__pt_add(m, n[0], "conv2d", in,
                            "out_channels=%lld kernel_size=3 stride=%lld padding=1 bias=false",
                            (long long)planes, (long long)stride)) ||
        (st = strop__pt_add(m, n[1], "batchnorm2d", NULL, NULL)) ||
        (st = strop__pt_add(m, n[2], "relu", NULL, NULL)) ||
        (st = strop__pt_add(m, n[3], "conv2d", NULL,
                            "out_channels=%lld kernel_size=3 padding=1 bias=false",
                            (long long)planes)) ||
        (st = strop__pt_add(m, n[4], "batchnorm2d", NULL, NULL)))
      return st;
  }
  const char *main_out = bottleneck ? n[7] : n[4];
  if (stride != 1 || *inplanes != planes * expansion) {
    if ((st = strop__pt_add(m, n[8], "conv2d", in,
                            "out_channels=%lld kernel_size=1 stride=%lld bias=false",
                            (long long)(planes * expansion), (long long)stride)) ||
        (st = strop__pt_add(m, n[9], "batchnorm2d", NULL, NULL)))
      return st;
    snprintf(add_in, sizeof add_in, "%s,%s", main_out, n[9]);
  } else {
    snprintf(add_in, sizeof add_in, "%s,%s", main_out, in);
  }
  *inplanes = planes * expansion;
  if ((st = strop__pt_add(m, n[10], "add", add_in, NULL)) ||
      (st = strop__pt_add(m, n[11], "relu", NULL, NULL)))
    return st;
  return STROP_OK;
}

static strop_status resnet(const strop__pt_ctx *c, const strop__arch *a, int bottleneck,
                           const int blocks[4], strop_model **out) {
  int64_t classes = 1000;
  strop_status st = classes_from(c, a, "fc", 1000, &classes);
  if (st) return st;
  strop_model *m = NULL;
  if ((st = image_model(c, &m))) return st;
  if ((st = strop__pt_add(m, "conv1", "conv2d", "input",
                          "out_channels=64 kernel_size=7 stride=2 padding=3 bias=false")) ||
      (st = strop__pt_add(m, "bn1", "batchnorm2d", NULL, NULL)) ||
      (st = strop__pt_add(m, "relu", "relu", NULL, NULL)) ||
      (st = strop__pt_add(m, "maxpool", "maxpool2d", NULL, "kernel_size=3 stride=2 padding=1")))
    goto fail;
  char prev[96] = "maxpool", pre[64];
  int64_t inplanes = 64;
  for (int l = 0; l < 4; l++) {
    for (int b = 0; b < blocks[l]; b++) {
      snprintf(pre, sizeof pre, "layer%d.%d", l + 1, b);
      if ((st = res_block(m, pre, prev, bottleneck, (int64_t)64 << l, b == 0 && l > 0 ? 2 : 1,
                          &inplanes)))
        goto fail;
      snprintf(prev, sizeof prev, "%s.%s", pre, bottleneck ? "relu3" : "relu2");
    }
  }
  if ((st = strop__pt_add(m, "avgpool", "global_avgpool", NULL, NULL)) ||
      (st = strop__pt_add(m, "fc", "linear", NULL, "out_features=%lld", (long long)classes)))
    goto fail;
  *out = m;
  return STROP_OK;
fail:
  strop_model_free(m);
  return st;
}

#define RESNET(NAME, BOTTLENECK, B0, B1, B2, B3, DOC)                           \
  static strop_status build_##NAME(const strop__pt_ctx *c, strop_model **out) { \
    static const int blocks[4] = {B0, B1, B2, B3};                              \
    return resnet(c, &strop__arch_##NAME, BOTTLENECK, blocks, out);             \
  }                                                                             \
  const strop__arch strop__arch_##NAME = {                                      \
      .name = #NAME,                                                            \
      .family = "torchvision",                                                  \
      .doc = DOC,                                                               \
      .build = build_##NAME,                                                    \
  };

RESNET(resnet18, 0, 2, 2, 2, 2,
       "torchvision.models.resnet18: BasicBlocks [2, 2, 2, 2], fc classes from the file")
RESNET(resnet34, 0, 3, 4, 6, 3,
       "torchvision.models.resnet34: BasicBlocks [3, 4, 6, 3], fc classes from the file")
RESNET(resnet50, 1, 3, 4, 6, 3,
       "torchvision.models.resnet50: Bottlenecks [3, 4, 6, 3] (v1.5), fc classes from the file")
RESNET(resnet101, 1, 3, 4, 23, 3,
       "torchvision.models.resnet101: Bottlenecks [3, 4, 23, 3] (v1.5), fc classes from the file")

/* ---- MobileNet ---- */

/* torchvision's _make_divisible(v, 8): channels rounded to a multiple of 8, never below 90%. */
static int64_t make_divisible(double v) {
  int64_t r = (int64_t)(v + 4.0) / 8 * 8;
  if (r < 8) r = 8;
  if ((double)r < 0.9 * v) r += 8;
  return r;
}

typedef struct mb_ctx {
  strop_model *m;
  const char *bn; /* BatchNorm options: "" (V2) or V3's eps and momentum */
  char prev[128]; /* the last node added */
} mb_ctx;

/* Conv2dNormActivation pre.{0,1,2}: a bias-free conv (padding (k - 1) / 2), BatchNorm, and
 * act unless NULL. */
static strop_status cna(mb_ctx *b, const char *pre, int64_t out, int64_t k, int64_t stride,
                        int64_t groups, const char *act) {
  char n[128];
  strop_status st;
  snprintf(n, sizeof n, "%s.0", pre);
  if ((st = strop__pt_add(b->m, n, "conv2d", b->prev,
                          "out_channels=%lld kernel_size=%lld stride=%lld padding=%lld "
                          "groups=%lld bias=false",
                          (long long)out, (long long)k, (long long)stride,
                          (long long)((k - 1) / 2), (long long)groups)))
    return st;
  snprintf(n, sizeof n, "%s.1", pre);
  if ((st = strop__pt_add(b->m, n, "batchnorm2d", NULL, "%s", b->bn))) return st;
  if (act) {
    snprintf(n, sizeof n, "%s.2", pre);
    if ((st = strop__pt_add(b->m, n, act, NULL, NULL))) return st;
  }
  snprintf(b->prev, sizeof b->prev, "%s", n);
  return STROP_OK;
}

/* The residual sum of block features.<idx> whose input was node `in`. */
static strop_status residual(mb_ctx *b, int idx, const char *in) {
  char n[64], ins[300];
  snprintf(n, sizeof n, "features.%d.add", idx);
  snprintf(ins, sizeof ins, "%s,%s", b->prev, in);
  strop_status st = strop__pt_add(b->m, n, "add", ins, NULL);
  if (!st) snprintf(b->prev, sizeof b->prev, "%s", n);
  return st;
}

/* torchvision's MobileNetV2 inverted residual setting: expansion t, channels c, repeats n,
 * first stride s */
static const int V2_SETTING[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                     {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};

static strop_status build_mobilenet_v2(const strop__pt_ctx *c, strop_model **out) {
  int64_t classes = 1000;
  strop_status st = classes_from(c, &strop__arch_mobilenet_v2, "classifier.1", 1000, &classes);
  if (st) return st;
  mb_ctx b = {NULL, "", "input"};
  if ((st = image_model(c, &b.m))) return st;
  if ((st = cna(&b, "features.0", 32, 3, 2, 1, "relu6"))) goto fail;
  int64_t inp = 32;
  int idx = 1;
  for (int g = 0; g < 7; g++) {
    for (int i = 0; i < V2_SETTING[g][2]; i++, idx++) {
      const int64_t t = V2_SETTING[g][0], oup = V2_SETTING[g][1];
      const int64_t stride = i == 0 ? V2_SETTING[g][3] : 1, hidden = inp * t;
      char in[128], pre[64], n[64];
      snprintf(in, sizeof in, "%s", b.prev);
      int k = 0;
      if (t != 1) {
        snprintf(pre, sizeof pre, "features.%d.conv.%d", idx, k++);
        if ((st = cna(&b, pre, hidden, 1, 1, 1, "relu6"))) goto fail;
      }
      snprintf(pre, sizeof pre, "features.%d.conv.%d", idx, k++);
      if ((st = cna(&b, pre, hidden, 3, stride, hidden, "relu6"))) goto fail;
      snprintf(n, sizeof n, "features.%d.conv.%d", idx, k++);
      if ((st = strop__pt_add(b.m, n, "conv2d", NULL,
                              "out_channels=%lld kernel_size=1 bias=false", (long long)oup)))
        goto fail;
      snprintf(n, sizeof n, "features.%d.conv.%d", idx, k);
      if ((st = strop__pt_add(b.m, n, "batchnorm2d", NULL, NULL))) goto fail;
      snprintf(b.prev, sizeof b.prev, "%s", n);
      if (stride == 1 && inp == oup && (st = residual(&b, idx, in))) goto fail;
      inp = oup;
    }
  }
  char pre[32];
  snprintf(pre, sizeof pre, "features.%d", idx);
  if ((st = cna(&b, pre, 1280, 1, 1, 1, "relu6")) ||
      (st = strop__pt_add(b.m, "avgpool", "global_avgpool", NULL, NULL)) ||
      (st = strop__pt_add(b.m, "classifier.0", "dropout", NULL, "p=0.2")) ||
      (st = strop__pt_add(b.m, "classifier.1", "linear", NULL, "out_features=%lld",
                          (long long)classes)))
    goto fail;
  *out = b.m;
  return STROP_OK;
fail:
  strop_model_free(b.m);
  return st;
}

/* torchvision's InvertedResidualConfig: input, kernel, expanded, output channels, squeeze-
 * excitation, hardswish (else relu), stride */
typedef struct v3_block {
  int in, k, exp, out, se, hs, stride;
} v3_block;

static const v3_block V3_LARGE[] = {
    {16, 3, 16, 16, 0, 0, 1},    {16, 3, 64, 24, 0, 0, 2},    {24, 3, 72, 24, 0, 0, 1},
    {24, 5, 72, 40, 1, 0, 2},    {40, 5, 120, 40, 1, 0, 1},   {40, 5, 120, 40, 1, 0, 1},
    {40, 3, 240, 80, 0, 1, 2},   {80, 3, 200, 80, 0, 1, 1},   {80, 3, 184, 80, 0, 1, 1},
    {80, 3, 184, 80, 0, 1, 1},   {80, 3, 480, 112, 1, 1, 1},  {112, 3, 672, 112, 1, 1, 1},
    {112, 5, 672, 160, 1, 1, 2}, {160, 5, 960, 160, 1, 1, 1}, {160, 5, 960, 160, 1, 1, 1}};
static const v3_block V3_SMALL[] = {
    {16, 3, 16, 16, 1, 0, 2},  {16, 3, 72, 24, 0, 0, 2},  {24, 3, 88, 24, 0, 0, 1},
    {24, 5, 96, 40, 1, 1, 2},  {40, 5, 240, 40, 1, 1, 1}, {40, 5, 240, 40, 1, 1, 1},
    {40, 5, 120, 48, 1, 1, 1}, {48, 5, 144, 48, 1, 1, 1}, {48, 5, 288, 96, 1, 1, 2},
    {96, 5, 576, 96, 1, 1, 1}, {96, 5, 576, 96, 1, 1, 1}};

static strop_status mobilenet_v3(const strop__pt_ctx *c, const strop__arch *a,
                                 const v3_block *cfg, int n_blocks, int64_t last_channel,
                                 strop_model **out) {
  int64_t classes = 1000;
  strop_status st = classes_from(c, a, "classifier.3", 1000, &classes);
  if (st) return st;
  mb_ctx b = {NULL, "eps=0.001 momentum=0.01", "input"};
  if ((st = image_model(c, &b.m))) return st;
  if ((st = cna(&b, "features.0", cfg[0].in, 3, 2, 1, "hardswish"))) goto fail;
  for (int i = 0; i < n_blocks; i++) {
    const v3_block *k = &cfg[i];
    const char *act = k->hs ? "hardswish" : "relu";
    char in[128], pre[64];
    snprintf(in, sizeof in, "%s", b.prev);
    int j = 0;
    if (k->exp != k->in) {
      snprintf(pre, sizeof pre, "features.%d.block.%d", i + 1, j++);
      if ((st = cna(&b, pre, k->exp, 1, 1, 1, act))) goto fail;
    }
    snprintf(pre, sizeof pre, "features.%d.block.%d", i + 1, j++);
    if ((st = cna(&b, pre, k->exp, k->k, k->stride, k->exp, act))) goto fail;
    if (k->se) {
      snprintf(pre, sizeof pre, "features.%d.block.%d", i + 1, j++);
      if ((st = strop__pt_add(b.m, pre, "squeeze_excitation", NULL,
                              "input_channels=%d squeeze_channels=%lld "
                              "scale_activation=hardsigmoid",
                              k->exp, (long long)make_divisible(k->exp / 4))))
        goto fail;
      snprintf(b.prev, sizeof b.prev, "%s.mul", pre);
    }
    snprintf(pre, sizeof pre, "features.%d.block.%d", i + 1, j);
    if ((st = cna(&b, pre, k->out, 1, 1, 1, NULL))) goto fail;
    if (k->stride == 1 && k->in == k->out && (st = residual(&b, i + 1, in))) goto fail;
  }
  char pre[32];
  snprintf(pre, sizeof pre, "features.%d", n_blocks + 1);
  if ((st = cna(&b, pre, 6 * cfg[n_blocks - 1].out, 1, 1, 1, "hardswish")) ||
      (st = strop__pt_add(b.m, "avgpool", "global_avgpool", NULL, NULL)) ||
      (st = strop__pt_add(b.m, "classifier.0", "linear", NULL, "out_features=%lld",
                          (long long)last_channel)) ||
      (st = strop__pt_add(b.m, "classifier.1", "hardswish", NULL, NULL)) ||
      (st = strop__pt_add(b.m, "classifier.2", "dropout", NULL, "p=0.2")) ||
      (st = strop__pt_add(b.m, "classifier.3", "linear", NULL, "out_features=%lld",
                          (long long)classes)))
    goto fail;
  *out = b.m;
  return STROP_OK;
fail:
  strop_model_free(b.m);
  return st;
}

static strop_status build_mobilenet_v3_large(const strop__pt_ctx *c, strop_model **out) {
  return mobilenet_v3(c, &strop__arch_mobilenet_v3_large, V3_LARGE,
                      (int)(sizeof V3_LARGE / sizeof V3_LARGE[0]), 1280, out);
}

static strop_status build_mobilenet_v3_small(const strop__pt_ctx *c, strop_model **out) {
  return mobilenet_v3(c, &strop__arch_mobilenet_v3_small, V3_SMALL,
                      (int)(sizeof V3_SMALL / sizeof V3_SMALL[0]), 1024, out);
}

const strop__arch strop__arch_mobilenet_v2 = {
    .name = "mobilenet_v2",
    .family = "torchvision",
    .doc = "torchvision.models.mobilenet_v2: inverted residuals with ReLU6, classifier "
           "(Dropout 0.2, Linear) classes from the file",
    .build = build_mobilenet_v2,
};

const strop__arch strop__arch_mobilenet_v3_small = {
    .name = "mobilenet_v3_small",
    .family = "torchvision",
    .doc = "torchvision.models.mobilenet_v3_small: hardswish, squeeze-excitation, BatchNorm "
           "eps 0.001, classifier (Linear 1024, Hardswish, Dropout 0.2, Linear) classes from "
           "the file",
    .build = build_mobilenet_v3_small,
};

const strop__arch strop__arch_mobilenet_v3_large = {
    .name = "mobilenet_v3_large",
    .family = "torchvision",
    .doc = "torchvision.models.mobilenet_v3_large: hardswish, squeeze-excitation, BatchNorm "
           "eps 0.001, classifier (Linear 1280, Hardswish, Dropout 0.2, Linear) classes from "
           "the file",
    .build = build_mobilenet_v3_large,
};
