/* SPDX-License-Identifier: MIT */
/* strop — torchvision's VisionTransformer (vit_b_16 and its relatives, torchvision 0.14) with
 * torchvision's names, so its state_dict loads strictly and a fine-tuned model saves back into
 * a file torchvision loads with strict=True:
 *
 *   conv_proj, class_token, encoder.pos_embedding, encoder.layers.encoder_layer_N.{ln_1,
 *   self_attention (packed in_proj_weight), ln_2, mlp.0, mlp.3}, encoder.ln, heads.head.
 * A torchvision file has no config: the patch size, width, depth, MLP width, image size (from
 * the position table) and classes come from the tensors' shapes; the heads are width / 64, as
 * in every torchvision ViT. Another image size runs with the checkpoint's position table
 * resized bicubically, as torchvision's interpolate_embeddings does; a size that is no multiple
 * of the patch is refused (conv_proj's exact_fit), at the load and in a batch, where torchvision
 * refuses any size but its own rather than drop the border. */
#include <math.h>
#include <stdio.h>

#include "pretrained/pretrained.h"

static strop_status shape_of(const strop__pt_ctx *c, const char *name, int rank, int64_t *d) {
  const int r = strop__pt_shape(c, &strop__arch_vit_b_16, name, d, STROP_MAX_RANK);
  if (r == rank) return STROP_OK;
  if (r < 0)
    return strop__err(STROP_E_NOT_FOUND,
                      "%s: the checkpoint has no '%s', which vit_b_16 reads "
                      "its sizes from",
                      c->fn, name);
  return strop__err(STROP_E_SHAPE,
                    "%s: '%s' has rank %d, torchvision's VisionTransformer has "
                    "%d",
                    c->fn, name, r, rank);
}

static strop_status build(const strop__pt_ctx *c, strop_model **out) {
  int64_t conv[STROP_MAX_RANK], pos[STROP_MAX_RANK], mlp[1] = {0}, head[STROP_MAX_RANK];
  strop_status st;
  if ((st = shape_of(c, "conv_proj.weight", 4, conv)) ||
      (st = shape_of(c, "encoder.pos_embedding", 3, pos)) ||
      (st = shape_of(c, "heads.head.weight", 2, head)))
    return st;
  const int64_t hidden = conv[0], patch = conv[2], seq = pos[1];
  int64_t layers = 0;
  char name[160];
  for (;; layers++) {
    snprintf(name, sizeof name, "encoder.layers.encoder_layer_%lld.mlp.0.weight",
             (long long)layers);
    int64_t d[STROP_MAX_RANK];
    if (strop__pt_shape(c, &strop__arch_vit_b_16, name, d, STROP_MAX_RANK) != 2) break;
    mlp[0] = d[0];
  }
  const int64_t grid = (int64_t)llround(sqrt((double)(seq - 1)));
  if (conv[1] != 3 || conv[2] != conv[3] || grid * grid != seq - 1 || pos[2] != hidden ||
      hidden % 64 || layers == 0)
    return strop__err(STROP_E_SHAPE,
                      "%s: not a torchvision VisionTransformer: conv_proj.weight "
                      "[%lld, %lld, %lld, %lld], encoder.pos_embedding [1, %lld, %lld], %lld "
                      "encoder layers (square patches of 3 channels, 1 + g^2 positions, a width "
                      "that is a multiple of the 64-wide heads)",
                      c->fn, (long long)conv[0], (long long)conv[1], (long long)conv[2],
                      (long long)conv[3], (long long)seq, (long long)pos[2], (long long)layers);
  const int64_t image = c->opt->image_size > 0 ? c->opt->image_size : grid * patch;
  const int64_t shape[3] = {3, image, image};
  strop_model *m = NULL;
  if ((st = strop_model_create(3, shape, &m))) return st;
  if ((st = strop__pt_add(m, "conv_proj", "conv2d", "input",
                          "out_channels=%lld kernel_size=%lld stride=%lld exact_fit=true",
                          (long long)hidden, (long long)patch, (long long)patch)) ||
      (st = strop__pt_add(m, "patches", "reshape", NULL, "shape=[%lld, -1]",
                          (long long)hidden)) ||
      (st = strop__pt_add(m, "tokens", "transpose", NULL, "dim0=0 dim1=1")) ||
      (st = strop__pt_add(m, "class_token", "class_token", NULL, NULL)) ||
      (st = strop__pt_add(m, "encoder.pos_embedding", "positional_embedding", NULL,
                          "num_embeddings=%lld leading_one=true bare_name=true "
                          "interpolate=bicubic prefix=1",
                          (long long)seq)))
    goto fail;
  char x[200] = "encoder.pos_embedding", n[7][200];
  for (int64_t i = 0; i < layers; i++) {
    static const char *const parts[] = {"ln_1",  "self_attention", "add_1", "ln_2",
                                        "mlp.0", "mlp.1",          "mlp.3"};
    for (int k = 0; k < 7; k++)
      snprintf(n[k], sizeof n[k], "encoder.layers.encoder_layer_%lld.%s", (long long)i, parts[k]);
    char sum1[420], sum2[420], add2[200];
    snprintf(sum1, sizeof sum1, "%s,%s", x, n[1]);
    snprintf(sum2, sizeof sum2, "%s,%s", n[2], n[6]);
    snprintf(add2, sizeof add2, "encoder.layers.encoder_layer_%lld.add_2", (long long)i);
    if ((st = strop__pt_add(m, n[0], "layernorm", x, "normalized_shape=%lld eps=1e-06",
                            (long long)hidden)) ||
        (st = strop__pt_add(m, n[1], "multihead_attention", NULL, "num_heads=%lld packed=true",
                            (long long)(hidden / 64))) ||
        (st = strop__pt_add(m, n[2], "add", sum1, NULL)) ||
        (st = strop__pt_add(m, n[3], "layernorm", NULL, "normalized_shape=%lld eps=1e-06",
                            (long long)hidden)) ||
        (st = strop__pt_add(m, n[4], "linear", NULL, "out_features=%lld", (long long)mlp[0])) ||
        (st = strop__pt_add(m, n[5], "gelu", NULL, NULL)) ||
        (st = strop__pt_add(m, n[6], "linear", NULL, "out_features=%lld", (long long)hidden)) ||
        (st = strop__pt_add(m, add2, "add", sum2, NULL)))
      goto fail;
    snprintf(x, sizeof x, "%s", add2);
  }
  if ((st = strop__pt_add(m, "encoder.ln", "layernorm", x, "normalized_shape=%lld eps=1e-06",
                          (long long)hidden)) ||
      (st = strop__pt_add(m, "first", "token_pool", NULL, "which=first")) ||
      (st = strop__pt_add(m, "heads.head", "linear", NULL, "out_features=%lld",
                          (long long)head[0])))
    goto fail;
  *out = m;
  return STROP_OK;
fail:
  strop_model_free(m);
  return st;
}

const strop__arch strop__arch_vit_b_16 = {
    .name = "vit_b_16",
    .family = "torchvision",
    .doc = "torchvision.models.VisionTransformer (vit_b_16's layout, any patch, width, depth): "
           "sizes and classes from the file's shapes, 64-wide heads, other image sizes through "
           "the bicubic-resized position table",
    .build = build,
};
