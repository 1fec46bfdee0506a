/* SPDX-License-Identifier: MIT */
/* strop — the 2-D convolution layer (torch.nn.Conv2d, zero padding): [N, C, H, W] ->
 * [N, out_channels, OH, OW], weight [out, in/groups, kh, kw]. Math in ops/conv.c. */
#include <stdlib.h>
#include <string.h>

#include "layers/fuse.h"
#include "layers/init.h"
#include "layers/layer.h"
#include "ops/conv.h"
#include "ops/lowp.h"

typedef struct conv_cfg {
  int64_t in_channels; /* 0 ("auto") until inferred */
  int64_t out_channels;
  int64_t kernel[2], stride[2], padding[2], dilation[2]; /* padding: as given, or a word */
  int64_t groups;
  int bias;
  int padding_mode; /* only 0, "zeros", is supported */
  int exact_fit;    /* 1: an input the windows do not cover exactly is refused */
  int in_given;     /* 1: in_channels came from the options and is checked, not inferred */
  int64_t pad[2];   /* the padding in use ("same" resolved from kernel and dilation) */
  /* run time, from conv_fuse: a relu and/or a max-pool computed in the conv's epilogue
   * (relu, pool and pd set; argmax and y are per call) */
  strop__conv2d_epilogue ep;
  /* run time, from conv_fuse: a frozen batch norm after this frozen conv, folded into its
   * weights (fuse.h), or NULL */
  const strop__node *norm;
  int add; /* run time, from conv_fuse: 1 when it adds a residual sum's other input (ep.res,
              the exec's fused_side) before the relu */
} conv_cfg;

enum { W, B }; /* parameter slots */

#define PAD_SAME (-1)
#define PAD_VALID (-2)

static const char *const PAD_WORDS[] = {"same", "valid", NULL};
static const double PAD_V[] = {PAD_SAME, PAD_VALID};
static const char *const MODES[] = {"zeros", "reflect", "replicate", "circular", NULL};

static const strop__optdef OPTIONS[] = {
    STROP__OPT_AUTO_INT(conv_cfg, in_channels, "in_channels",
                        "input channels C of the [C, H, W] input; auto: inferred"),
    {.name = "out_channels",
     .type = STROP__OT_INT,
     .off = offsetof(conv_cfg, out_channels),
     .lo = 1,
     .hi = INT32_MAX,
     .example = "4",
     .doc = "output channels"},
    {.name = "kernel_size",
     .type = STROP__OT_INTS,
     .off = offsetof(conv_cfg, kernel),
     .lo = 1,
     .hi = 1 << 16,
     .n = 2,
     .example = "3",
     .doc = "kernel height and width (one value: both)"},
    STROP__OPT_INTS(conv_cfg, stride, "stride", "[1, 1]", 2, 1, 1 << 16, "step between windows"),
    {.name = "padding",
     .type = STROP__OT_INTS,
     .off = offsetof(conv_cfg, padding),
     .dflt = "[0, 0]",
     .lo = 0,
     .hi = 1 << 16,
     .n = 2,
     .words = PAD_WORDS,
     .word_values = PAD_V,
     .doc = "zeros added on each side; same: output size = input size (stride 1); valid: none"},
    STROP__OPT_INTS(conv_cfg, dilation, "dilation", "[1, 1]", 2, 1, 1 << 16,
                    "spacing between kernel elements"),
    STROP__OPT_INT(conv_cfg, groups, "groups", "1", 1, INT32_MAX,
                   "blocked connections; divides in_channels and out_channels"),
    STROP__OPT_BOOL(conv_cfg, bias, "bias", "true", "learn an additive bias per channel"),
    STROP__OPT_ENUM(conv_cfg, padding_mode, "padding_mode", "zeros", MODES,
                    "only zeros is supported"),
    STROP__OPT_BOOL(conv_cfg, exact_fit, "exact_fit", "false",
                    "refuse an input whose last rows or columns no window reaches (a patch "
                    "embedding: sizes that are a multiple of the patch)"),
    {NULL}};

static const strop__paramdef PARAMS[] = {
    [W] = {"weight", 0, "[out_channels, in_channels / groups, kh, kw]"},
    [B] = {"bias", 0, "[out_channels], when bias is true"},
    {NULL}};

static strop_status conv_check(void *cfg, strop__opts *o) {
  conv_cfg *c = cfg;
  if ((c->padding[0] < 0 || c->padding[1] < 0) && c->padding[0] != c->padding[1])
    return strop__opt_error(o, "padding",
                            "'same' and 'valid' apply to both sides: give the word "
                            "alone");
  if (c->padding[0] == PAD_SAME && (c->stride[0] != 1 || c->stride[1] != 1))
    return strop__opt_error(o, "padding", "'same' needs stride 1, got stride [%lld, %lld]",
                            (long long)c->stride[0], (long long)c->stride[1]);
  if (c->padding_mode != 0)
    return strop__err(STROP_E_UNSUPPORTED,
                      "layer '%s' (conv2d): option 'padding_mode': only 'zeros' is supported, "
                      "got '%s'",
                      o->layer ? o->layer : "?", MODES[c->padding_mode]);
  if (c->out_channels % c->groups)
    return strop__opt_error(o, "groups", "out_channels %lld is not divisible by groups %lld",
                            (long long)c->out_channels, (long long)c->groups);
  if (c->in_channels && c->in_channels % c->groups)
    return strop__opt_error(o, "groups", "in_channels %lld is not divisible by groups %lld",
                            (long long)c->in_channels, (long long)c->groups);
  c->in_given = c->in_channels != 0;
  for (int i = 0; i < 2; i++) {
    const int64_t span = c->dilation[i] * (c->kernel[i] - 1) + 1;
    c->pad[i] = c->padding[i] == PAD_SAME    ? (span - 1) / 2 /* PyTorch: left = total / 2 */
                : c->padding[i] == PAD_VALID ? 0
                                             : c->padding[i];
  }
  return STROP_OK;
}

/* output size of one axis for an input of `in` (same: the input's) */
static int64_t out_len(const conv_cfg *c, int i, int64_t in) {
  return c->padding[0] == PAD_SAME
             ? in
             : strop__conv_out_len(in, c->kernel[i], c->stride[i], c->pad[i], c->dilation[i]);
}

/* [C, H, W] -> [out_channels, OH, OW] for any H and W the kernel fits */
static strop_status conv_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  const conv_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank != 3)
    return strop__shape_error(n, "input must be [C, H, W] per sample, got %s",
                              strop__shape_str(s, buf, sizeof buf));
  if (c->in_channels && c->in_channels != s->d[0])
    return strop__shape_error(n,
                              "in_channels is %lld but the input has %lld channels (input "
                              "shape %s)",
                              (long long)c->in_channels, (long long)s->d[0],
                              strop__shape_str(s, buf, sizeof buf));
  if (s->d[0] % c->groups)
    return strop__shape_error(n,
                              "in_channels %lld (from input shape %s) is not divisible by "
                              "groups %lld",
                              (long long)s->d[0], strop__shape_str(s, buf, sizeof buf),
                              (long long)c->groups);
  const int64_t oh = out_len(c, 0, s->d[1]), ow = out_len(c, 1, s->d[2]);
  if (oh <= 0 || ow <= 0 || s->d[1] <= 0 || s->d[2] <= 0) {
    int64_t span[2];
    for (int i = 0; i < 2; i++) span[i] = c->dilation[i] * (c->kernel[i] - 1) + 1;
    return strop__shape_error(
        n,
        "kernel_size %lldx%lld (dilation %lldx%lld, span %lldx%lld) is "
        "larger than the padded input %lldx%lld (input shape %s, padding "
        "%lldx%lld)",
        (long long)c->kernel[0], (long long)c->kernel[1], (long long)c->dilation[0],
        (long long)c->dilation[1], (long long)span[0], (long long)span[1],
        (long long)(s->d[1] + 2 * c->pad[0]), (long long)(s->d[2] + 2 * c->pad[1]),
        strop__shape_str(s, buf, sizeof buf), (long long)c->pad[0], (long long)c->pad[1]);
  }
  if (c->exact_fit && c->padding[0] != PAD_SAME) {
    /* the rows and columns past the last window, which PyTorch's conv silently drops */
    int64_t left[2];
    for (int i = 0; i < 2; i++)
      left[i] = s->d[1 + i] + 2 * c->pad[i] - (c->dilation[i] * (c->kernel[i] - 1) + 1) -
                ((i ? ow : oh) - 1) * c->stride[i];
    if (left[0] || left[1]) {
      if (c->kernel[0] == c->stride[0] && c->kernel[1] == c->stride[1] && !c->pad[0] &&
          !c->pad[1] && c->dilation[0] == 1 && c->dilation[1] == 1)
        return strop__shape_error(n,
                                  "the input is %lldx%lld, not a multiple of the %lldx%lld patch "
                                  "(input shape %s, exact_fit): its last %lld rows and %lld "
                                  "columns would be dropped",
                                  (long long)s->d[1], (long long)s->d[2], (long long)c->kernel[0],
                                  (long long)c->kernel[1], strop__shape_str(s, buf, sizeof buf),
                                  (long long)left[0], (long long)left[1]);
      return strop__shape_error(
          n,
          "the input is %lldx%lld (padding %lldx%lld), which windows of "
          "kernel_size %lldx%lld and stride %lldx%lld do not cover exactly "
          "(input shape %s, exact_fit): its last %lld rows and %lld columns "
          "would be dropped",
          (long long)s->d[1], (long long)s->d[2], (long long)c->pad[0], (long long)c->pad[1],
          (long long)c->kernel[0], (long long)c->kernel[1], (long long)c->stride[0],
          (long long)c->stride[1], strop__shape_str(s, buf, sizeof buf), (long long)left[0],
          (long long)left[1]);
    }
  }
  out->rank = 3;
  out->d[0] = c->out_channels;
  out->d[1] = oh;
  out->d[2] = ow;
  return STROP_OK;
}

/* The geometry of a call on n inputs of shape s; the products in the step's compute dtype
 * (strop_model_set_compute_dtype: BF16 operands with FP32 sums, ops/conv.h). */
static strop__conv2d_dims conv_dims(const conv_cfg *c, const strop__exec *x,
                                    const strop__shape *s, int64_t n) {
  strop__conv2d_dims d;
  d.bf16 = x->compute_dtype == STROP__LOWP_BF16;
  d.n = n;
  d.c_in = s->d[0];
  d.h = s->d[1];
  d.w = s->d[2];
  d.c_out = c->out_channels;
  d.kh = c->kernel[0];
  d.kw = c->kernel[1];
  d.sh = c->stride[0];
  d.sw = c->stride[1];
  d.ph = c->pad[0];
  d.pw = c->pad[1];
  d.dh = c->dilation[0];
  d.dw = c->dilation[1];
  d.groups = c->groups;
  d.oh = out_len(c, 0, d.h);
  d.ow = out_len(c, 1, d.w);
  return d;
}

static strop_status conv_infer(strop__node *n) {
  conv_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  if (!c->in_given) c->in_channels = s->rank == 3 ? s->d[0] : 0;
  strop_status st = conv_shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  int64_t wd[4] = {c->out_channels, c->in_channels / c->groups, c->kernel[0], c->kernel[1]};
  st = strop__node_declare(n, W, 4, wd);
  if (st == STROP_OK && c->bias) st = strop__node_declare(n, B, 1, &c->out_channels);
  return st;
}

static void conv_init(strop__node *n, strop__rng *rng) {
  const conv_cfg *c = n->cfg;
  int64_t fan_in = c->in_channels / c->groups * c->kernel[0] * c->kernel[1];
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  if (w) strop__init_pytorch_linear_default(w->data, w->numel, fan_in, rng);
  if (b) strop__init_pytorch_linear_default(b->data, b->numel, fan_in, rng);
}

/* The batch splits into one chunk of images per thread. */
static int conv_chunks(const strop__exec *x, const strop__conv2d_dims *d) {
  return strop__par_chunks(x->nthreads, d->n, 1);
}

/* The epilogue of the fused residual sum / relu / max-pool for this call's geometry d and
 * exec x (the sum's other input), or NULL when nothing is fused. */
static strop__conv2d_epilogue *conv_epilogue(const conv_cfg *c, const strop__exec *x,
                                             const strop__conv2d_dims *d,
                                             strop__conv2d_epilogue *ep) {
  if (!c->ep.relu && !c->ep.pool && !c->add) return NULL;
  *ep = c->ep;
  if (c->add && x->fused_side) {
    ep->res = x->fused_side->data;
    ep->res_first = x->fused_side_slot == 0;
  }
  if (ep->pool) { /* the pool's window over this call's conv output */
    strop__pool2d_dims *p = &ep->pd;
    p->oh = strop__conv_out_len(d->oh, p->kh, p->sh, p->ph, p->dh);
    p->ow = strop__conv_out_len(d->ow, p->kw, p->sw, p->pw, p->dw);
  }
  return ep;
}

/* The weight and bias the conv computes with: its own, or with the fused norm folded in. */
static strop_status conv_weights(strop__node *n, const float **w, const float **b) {
  const conv_cfg *c = n->cfg;
  const strop__param *pw = strop__node_p(n, W), *pb = strop__node_p(n, B);
  if (c->norm) return strop__layer_fold_norm(n, pw, pb, c->norm, w, b);
  *w = pw->data;
  *b = pb ? pb->data : NULL;
  return STROP_OK;
}

/* A frozen batch norm after a frozen conv (a pre-trained trunk: ResNet, MobileNet) folds into
 * its weights and bias, so the pair is one conv (the norm's pass over the activation and the
 * activation itself are gone; the values differ from the unfused ones by float rounding); then
 * a residual sum with an output computed before the conv (offered where no backward runs
 * through them: a frozen ResNet block's end, its relu with it), a relu, a max-pool, or a relu
 * then a max-pool run in its epilogue, image by image while the conv's output is in cache (the
 * BF16 products' sum and relu in their tiles' stores): those full-size activations are never
 * stored either, and their numbers are the unfused ones (same kernels, same order, the sum's
 * two floats in its order). strop__conv_fuse_add 0 leaves the sum to the add. */
int strop__conv_fuse_add = 1;
int strop__conv_fuse_pool = 1;

static int conv_fuse(strop__node *n, strop__node *const *next, int n_next, int shared) {
  conv_cfg *c = n->cfg;
  int k = 0;
  memset(&c->ep, 0, sizeof c->ep);
  c->norm = NULL;
  c->add = 0;
  if (shared) return 0; /* its epilogue never writes the conv's own output */
  const strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  if (n_next > 0 && !w->trainable && !(b && b->trainable) &&
      strop__layer_norm_foldable(next[0], c->out_channels)) {
    c->norm = next[0];
    k++;
  }
  if (c->groups > 1 && c->groups == c->in_channels) return k; /* depthwise: a direct kernel */
  if (strop__conv_fuse_add && k < n_next && next[k]->n_in == 2 &&
      (next[k]->vt->flags & STROP__LAYER_EPILOGUE_ADD)) {
    c->add = 1;
    k++;
  }
  if (k < n_next && (next[k]->vt->flags & STROP__LAYER_EPILOGUE_RELU)) {
    c->ep.relu = 1;
    k++;
  }
  if (strop__conv_fuse_pool && k < n_next && strop__layer_maxpool_window(next[k], &c->ep.pd)) {
    c->ep.pool = 1;
    k++;
  }
  return k;
}

/* n->wino: what the forward computes from a frozen weight alone (ops/conv.h:
 * strop__conv2d_filters), made by the first forward that needs it and kept, so later forwards
 * skip it. Winograd's transformed filters (at batch 16 about 5% of a ResNet trunk's Winograd
 * forward) are kept only where strop__conv_keep_filters says: 4x the weight's memory would take
 * the frozen trunks' peak RSS past issue 21's and issue 19's targets (see
 * docs/performance.md). The weight rounded to BF16 and packed for vdpbf16ps is half its bytes
 * and kept by default (strop__conv_keep_packed); where the conv's backward never runs (nothing
 * trainable upstream: a frozen trunk's) the folded bias is kept beside it and the FP32 folded
 * copy given back (strop__layer_fold_drop), so the trunk holds half the bytes it held. The same
 * bits as the work per call. Keyed as the norm fold is: the weights they came from (the weight,
 * or its folded copy while it is kept), the compute dtype, and the address and version of every
 * tensor behind those (the weight, the bias and the folded norm's); never trusted while one of
 * them has a writable view out; freed when the weight trains. */
int strop__conv_keep_filters = -1;
int strop__conv_keep_packed = 1;

static int keep_filters(void) {
  static int env = -1; /* -1: not read yet */
  int k = strop__conv_keep_filters;
  if (k >= 0) return k;
  int e = __atomic_load_n(&env, __ATOMIC_RELAXED);
  if (e < 0) {
    const char *v = getenv("STROP_WINOGRAD_CACHE");
    e = v && !strcmp(v, "1");
    __atomic_store_n(&env, e, __ATOMIC_RELAXED);
  }
  return e;
}

enum { WC_SRC = 9 };
typedef struct wino_cache {
  const float *from; /* the folded copy they came from, or NULL (given back, or no fold) */
  const void *src[WC_SRC];
  int ver[WC_SRC], nsrc, valid;
  int bf16; /* the compute dtype they were made for */
  int bias; /* 1: the folded bias follows them (their floats rounded up to 16) */
  size_t floats;
} wino_cache;
#define WC_HEAD ((sizeof(wino_cache) + 63) / 64 * 64)

static void wino_drop(strop__node *n) {
  strop__free_aligned(n->wino);
  n->wino = NULL;
  n->wino_bytes = 0;
}

/* The key of n's kept values computed from `from` (NULL: from the tensors behind it) into k;
 * 0 when no kept copy can be trusted (a writable view of a tensor behind them is out: they are
 * made anew at each call). */
static int wino_key(const strop__node *n, const float *from, wino_cache *k) {
  const conv_cfg *c = n->cfg;
  const strop__param *ps[WC_SRC];
  int np = 0;
  ps[np++] = strop__node_p(n, W);
  if (strop__node_p(n, B)) ps[np++] = strop__node_p(n, B);
  for (int i = 0; c->norm && i < c->norm->n_params && np < WC_SRC; i++)
    ps[np++] = strop__param_owner(&c->norm->params[i]);
  k->from = from;
  k->nsrc = np;
  int ok = !c->norm || c->norm->n_params < WC_SRC - 1;
  for (int i = 0; i < np; i++) {
    k->src[i] = ps[i]->data ? (const void *)ps[i]->data : (const void *)ps[i]->idata;
    k->ver[i] = ps[i]->version;
    ok = ok && !ps[i]->viewed;
  }
  return ok;
}

/* The weight *wd, bias *bd and (NULL, or) what the forward of d takes made from the weight
 * alone, *u: kept in n->wino (made now if the key changed) where the weight is frozen and the
 * policy above keeps it; then, where the fold was given back, *bd is the kept folded bias and
 * *wd the unfolded weight, which a forward given *u does not read. */
static strop_status conv_prepared(strop__node *n, const strop__conv2d_dims *d, const float **wd,
                                  const float **bd, const float **u) {
  const conv_cfg *c = n->cfg;
  const strop__param *w = strop__node_p(n, W);
  const size_t fl = strop__conv2d_filters_floats(d);
  const int keep = !w->trainable && fl && (d->bf16 ? strop__conv_keep_packed : keep_filters());
  strop_status st;
  *u = NULL;
  if (!keep) {
    wino_drop(n);
    return conv_weights(n, wd, bd);
  }
  /* the folded copy is given back: only the packed weight and the bias are read */
  const int alone = d->bf16 && c->norm && !n->needs_backward;
  if (!alone && (st = conv_weights(n, wd, bd))) return st;
  wino_cache k;
  memset(&k, 0, sizeof k);
  const int trusted = wino_key(n, alone ? NULL : *wd, &k);
  k.bf16 = d->bf16;
  k.bias = alone;
  wino_cache *wc = n->wino;
  const size_t held = fl + (alone ? ((size_t)c->out_channels + 15) / 16 * 16 : 0);
  float *uf = wc ? (float *)((char *)wc + WC_HEAD) : NULL;
  if (trusted && wc && wc->valid && wc->floats == fl && wc->from == k.from &&
      wc->bf16 == k.bf16 && wc->bias == k.bias && wc->nsrc == k.nsrc &&
      !memcmp(wc->src, k.src, sizeof k.src) && !memcmp(wc->ver, k.ver, sizeof k.ver)) {
    *u = uf;
    if (alone) {
      *wd = w->data;
      *bd = uf + fl;
    }
    return STROP_OK;
  }
  if (alone && (st = conv_weights(n, wd, bd))) return st;
  if (!wc || wc->floats != fl || wc->bias != alone) {
    wino_drop(n);
    const size_t bytes = WC_HEAD + held * sizeof(float);
    if (!(wc = strop__malloc_aligned(bytes)))
      return strop__err(STROP_E_NOMEM, "layer '%s' (conv2d): out of memory for %zu bytes of %s",
                        n->name, bytes, d->bf16 ? "its packed weight" : "transformed filters");
    n->wino = wc;
    n->wino_bytes = bytes;
    uf = (float *)((char *)wc + WC_HEAD);
  }
  wc->valid = 0;
  if (strop__conv2d_filters(d, *wd, uf))
    return strop__err(STROP_E_NOMEM,
                      "layer '%s' (conv2d): out of memory for %zu bytes to transform its filters",
                      n->name, (size_t)(16 * d->c_out * d->c_in));
  *wc = k;
  wc->floats = fl;
  wc->valid = 1;
  *u = uf;
  if (alone) {
    memcpy(uf + fl, *bd, sizeof(float) * (size_t)c->out_channels);
    *bd = uf + fl;
    *wd = w->data;
    strop__layer_fold_drop(n);
  }
  return STROP_OK;
}

static size_t scratch_floats(const strop__node *n, const strop__exec *x,
                             const strop__conv2d_dims *d, int backward) {
  strop__conv2d_epilogue ep;
  return strop__conv2d_scratch_floats(d, backward, conv_chunks(x, d),
                                      conv_epilogue(n->cfg, x, d, &ep));
}

/* the scratch of a call (the forward's with the filters transformed per call: at least that of
 * one with kept filters), which the graph plans with the step's tensors */
static size_t conv_scratch_bytes(const strop__node *n, const strop__exec *x,
                                 const strop__shape *in, int64_t batch, int backward) {
  if (in[0].rank != 3) return 0;
  const strop__conv2d_dims d = conv_dims(n->cfg, x, &in[0], batch);
  return scratch_floats(n, x, &d, backward) * sizeof(float);
}

static float *conv_scratch(strop__node *n, const strop__exec *x, const strop__conv2d_dims *d,
                           int backward, strop_status *st) {
  size_t fl = scratch_floats(n, x, d, backward);
  *st = STROP_OK;
  float *p = strop__exec_scratch(x, fl * sizeof(float));
  if (!p)
    *st = strop__err(STROP_E_NOMEM,
                     "layer '%s' (conv2d): out of memory for %zu bytes of "
                     "scratch",
                     n->name, fl * sizeof(float));
  return p;
}

static strop_status conv_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  const conv_cfg *c = n->cfg;
  strop__conv2d_dims d = conv_dims(c, x, &in[0].shape, in[0].n);
  strop_status st;
  strop__conv2d_epilogue epb;
  strop__conv2d_epilogue *ep = conv_epilogue(c, x, &d, &epb);
  n->saved = NULL;
  if (c->add && !x->fused_side)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (conv2d): fused sum without its input",
                      n->name);
  if (ep && ep->pool && n->needs_backward) {
    /* the pool's winners, kept for the backward (none where no backward runs: a frozen trunk's
     * stem) */
    size_t cnt = (size_t)(d.n * d.c_out * ep->pd.oh * ep->pd.ow);
    ep->argmax = strop__arena_alloc(x->arena, (cnt ? cnt : 1) * sizeof(int32_t));
    if (!ep->argmax)
      return strop__err(STROP_E_NOMEM,
                        "layer '%s' (conv2d): out of memory for the fused "
                        "max-pool's argmax",
                        n->name);
    n->saved = ep->argmax;
  }
  /* the columns are scratch: given back to the arena once the output is computed, so a
   * forward does not hold every conv's lowering until the step ends */
  const float *wd, *bd, *u;
  if ((st = conv_prepared(n, &d, &wd, &bd, &u))) return st;
  strop__arena_mark mk = strop__arena_get_mark(x->arena);
  float *scratch = conv_scratch(n, x, &d, u ? 2 : 0, &st);
  if (st) return st;
  strop__conv2d_forward_filtered(&d, in[0].data, wd, u, bd, out->data, scratch,
                                 conv_chunks(x, &d), ep);
  strop__arena_rollback(x->arena, mk);
  return STROP_OK;
}

static strop_status conv_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  const conv_cfg *c = n->cfg;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  float *dw = w->trainable ? w->grad : NULL;
  float *db = b && b->trainable ? b->grad : NULL;
  if (!dw && !db && !din[0]) return STROP_OK;
  strop__conv2d_dims d = conv_dims(c, x, &in[0].shape, in[0].n);
  strop_status st = STROP_OK;
  strop__conv2d_epilogue epb;
  strop__conv2d_epilogue *ep = conv_epilogue(c, x, &d, &epb);
  if (c->add)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (conv2d): no backward of a fused sum",
                      n->name);
  if (ep) {
    if (ep->pool && !n->saved)
      return strop__err(STROP_E_INTERNAL, "layer '%s' (conv2d): backward without forward",
                        n->name);
    ep->argmax = n->saved;
    ep->y = out->data;
  }
  const float *wd, *bd;
  if ((st = conv_weights(n, &wd, &bd))) return st;
  float *scratch = conv_scratch(n, x, &d, 1, &st);
  if (st) return st;
  const int chunks = conv_chunks(x, &d), assign = x->din_assign && din[0];
  const float *xv = in[0].data;
  const uint16_t *xh = x->held_in ? x->held_in[0] : NULL;
  if (xh && strop__conv2d_reads_x_held(&d, chunks)) {
    strop__conv2d_backward_held(&d, xh, wd, dout, din[0], dw, db, scratch, chunks, ep, assign);
    return STROP_OK;
  }
  if (xh) { /* a geometry the held columns do not take: x widened back, for this call only */
    const size_t numel = (size_t)(d.n * d.c_in * d.h * d.w);
    float *xf = strop__arena_alloc(x->arena, numel * sizeof *xf);
    if (!xf)
      return strop__err(STROP_E_NOMEM,
                        "layer '%s' (conv2d): out of memory for %zu bytes of its input widened "
                        "from BF16",
                        n->name, numel * sizeof *xf);
    strop__bf16_expand_par(xh, xf, numel);
    xv = xf;
  }
  if (assign)
    strop__conv2d_backward_assign(&d, xv, wd, dout, din[0], dw, db, scratch, chunks, ep);
  else strop__conv2d_backward(&d, xv, wd, dout, din[0], dw, db, scratch, chunks, ep);
  return STROP_OK;
}

/* In BF16, x is read by the backward only through the weight gradient's products, which round
 * it (strop__conv2d_reads_x_rounded: not a depthwise conv's FP32 stencil) — a ResNet block's
 * input, the output of a norm and relu or of a residual sum, is then held in BF16 from its
 * last reader's forward to its first reader's backward (graph/model.c, compact_plan). On
 * vdpbf16ps (2) the backward reads it as it is held (conv_backward), widened by none. */
static int conv_bf16_input(const strop__node *n, const strop__exec *x, int slot) {
  (void)slot;
  const conv_cfg *c = n->cfg;
  strop__conv2d_dims d;
  memset(&d, 0, sizeof d);
  d.bf16 = x->compute_dtype == STROP__LOWP_BF16;
  d.c_in = c->in_channels;
  d.groups = c->groups;
  return strop__conv2d_reads_x_rounded(&d);
}

const strop__layer_vtable strop__layer_conv2d = {
    .type = "conv2d",
    .doc = "2-D convolution with zero padding on [C, H, W] (torch.nn.Conv2d)",
    .cfg_size = sizeof(conv_cfg),
    .n_inputs = 1,
    /* alone (no chain fused) the backward reads x, the weight and dy, never y: only an
     * epilogue's relu or pool reads y, and its fuse sets one in a chain alone */
    .flags = STROP__LAYER_FOLD_CF | STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_OUT_UNREAD,
    .options = OPTIONS,
    .params = PARAMS,
    .check = conv_check,
    .shape = conv_shape,
    .infer = conv_infer,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .fuse = conv_fuse,
    .scratch = conv_scratch_bytes,
    .bf16_input = conv_bf16_input,
};
