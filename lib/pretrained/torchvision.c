/* strop — torchvision's classification networks with torchvision's module names, so a
 * state_dict saved as safetensors (save_file(model.state_dict(), path)) loads strictly and a
 * fine-tuned model saves back into a file torchvision's model loads with strict=True.
 *
 * ResNet (torchvision.models.resnet, v1.5: the stride on the 3x3 conv of a Bottleneck):
 *   conv1 bn1 relu maxpool layer1..layer4 avgpool fc; block i of layerN is
 *   layerN.i.{conv1,bn1,conv2,bn2[,conv3,bn3][,downsample.0,downsample.1]}.
 * torchvision reuses one ReLU module per block; here each application is its own
 * parameter-free node (relu1, relu2, ...), which changes no tensor name. */
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
  const char *parts[] = {"conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3",
                         "downsample.0", "downsample.1", "add", bottleneck ? "relu3" : "relu2"};
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

#define RESNET(NAME, BOTTLENECK, B0, B1, B2, B3, DOC)                                       \
  static strop_status build_##NAME(const strop__pt_ctx *c, strop_model **out) {             \
    static const int blocks[4] = {B0, B1, B2, B3};                                          \
    return resnet(c, &strop__arch_##NAME, BOTTLENECK, blocks, out);                         \
  }                                                                                         \
  const strop__arch strop__arch_##NAME = {                                                  \
      .name = #NAME,                                                                        \
      .family = "torchvision",                                                              \
      .doc = DOC,                                                                           \
      .build = build_##NAME,                                                                \
  };

RESNET(resnet18, 0, 2, 2, 2, 2,
       "torchvision.models.resnet18: BasicBlocks [2, 2, 2, 2], fc classes from the file")
RESNET(resnet34, 0, 3, 4, 6, 3,
       "torchvision.models.resnet34: BasicBlocks [3, 4, 6, 3], fc classes from the file")
RESNET(resnet50, 1, 3, 4, 6, 3,
       "torchvision.models.resnet50: Bottlenecks [3, 4, 6, 3] (v1.5), fc classes from the file")
RESNET(resnet101, 1, 3, 4, 23, 3,
       "torchvision.models.resnet101: Bottlenecks [3, 4, 23, 3] (v1.5), fc classes from the file")
