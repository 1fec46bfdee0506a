/* strop — the 2-D convolution layer (torch.nn.Conv2d, zero padding): [N, C, H, W] ->
 * [N, out_channels, OH, OW], weight [out, in/groups, kh, kw]. Math in ops/conv.c. */
#include <string.h>

#include "layers/fuse.h"
#include "layers/init.h"
#include "layers/layer.h"
#include "ops/conv.h"

enum { PAD_EXPLICIT = 0, PAD_SAME = 1, PAD_VALID = 2 };

typedef struct conv_cfg {
  int64_t in_channels; /* 0 until inferred when the option is omitted */
  int64_t out_channels;
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  int64_t groups;
  int bias;
  int pad_mode;        /* PAD_*; "same" resolves padding (left side) in infer */
  int64_t oh, ow;      /* output size, from infer */
  /* run time, from conv_fuse: a relu and/or a max-pool computed in the conv's epilogue
   * (relu, pool and pd set; argmax and y are per call) */
  strop__conv2d_epilogue ep;
} conv_cfg;

static strop__opt *raw_opt(strop__opts *o, const char *key) {
  for (int i = 0; i < o->n; i++)
    if (strcmp(o->v[i].key, key) == 0) return &o->v[i];
  return NULL;
}

static strop_status conv_parse(void *cfg, strop__opts *o) {
  conv_cfg *c = cfg;
  strop_status st;
  c->stride[0] = c->stride[1] = 1;
  c->dilation[0] = c->dilation[1] = 1;
  c->groups = 1;
  c->bias = 1;
  if ((st = strop__opt_int(o, "in_channels", 1, INT32_MAX, &c->in_channels))) return st;
  if ((st = strop__opt_require(o, "out_channels"))) return st;
  if ((st = strop__opt_int(o, "out_channels", 1, INT32_MAX, &c->out_channels))) return st;
  if ((st = strop__opt_require(o, "kernel_size"))) return st;
  if ((st = strop__opt_ints(o, "kernel_size", 2, 1, 1 << 16, c->kernel))) return st;
  if ((st = strop__opt_ints(o, "stride", 2, 1, 1 << 16, c->stride))) return st;
  if ((st = strop__opt_ints(o, "dilation", 2, 1, 1 << 16, c->dilation))) return st;
  if ((st = strop__opt_int(o, "groups", 1, INT32_MAX, &c->groups))) return st;
  if ((st = strop__opt_bool(o, "bias", &c->bias))) return st;
  strop__opt *p = raw_opt(o, "padding");
  if (p && (!strcmp(p->val, "same") || !strcmp(p->val, "valid"))) {
    p->used = 1;
    c->pad_mode = p->val[0] == 's' ? PAD_SAME : PAD_VALID;
    if (c->pad_mode == PAD_SAME && (c->stride[0] != 1 || c->stride[1] != 1))
      return strop__opt_error(o, "padding", "'same' needs stride 1, got stride [%lld, %lld]",
                              (long long)c->stride[0], (long long)c->stride[1]);
  } else if ((st = strop__opt_ints(o, "padding", 2, 0, 1 << 16, c->padding))) {
    return st;
  }
  static const char *const modes[] = {"zeros", "reflect", "replicate", "circular", NULL};
  int mode = 0;
  if ((st = strop__opt_enum(o, "padding_mode", modes, &mode))) return st;
  if (mode != 0)
    return strop__err(STROP_E_UNSUPPORTED,
                      "layer '%s' (conv2d): option 'padding_mode': only 'zeros' is supported, "
                      "got '%s'", o->layer ? o->layer : "?", modes[mode]);
  if (c->out_channels % c->groups)
    return strop__opt_error(o, "groups", "out_channels %lld is not divisible by groups %lld",
                            (long long)c->out_channels, (long long)c->groups);
  if (c->in_channels && c->in_channels % c->groups)
    return strop__opt_error(o, "groups", "in_channels %lld is not divisible by groups %lld",
                            (long long)c->in_channels, (long long)c->groups);
  return STROP_OK;
}

static void conv_write(const void *cfg, strop__optbuf *b) {
  const conv_cfg *c = cfg;
  strop__optbuf_int(b, "in_channels", c->in_channels);
  strop__optbuf_int(b, "out_channels", c->out_channels);
  strop__optbuf_ints(b, "kernel_size", c->kernel, 2);
  strop__optbuf_ints(b, "stride", c->stride, 2);
  if (c->pad_mode == PAD_SAME)
    strop__optbuf_str(b, "padding", "same");
  else
    strop__optbuf_ints(b, "padding", c->padding, 2);
  strop__optbuf_ints(b, "dilation", c->dilation, 2);
  strop__optbuf_int(b, "groups", c->groups);
  strop__optbuf_bool(b, "bias", c->bias);
  strop__optbuf_str(b, "padding_mode", "zeros");
}

static strop__conv2d_dims conv_dims(const conv_cfg *c, const strop__shape *s, int64_t n) {
  strop__conv2d_dims d;
  d.n = n;
  d.c_in = s->d[0];
  d.h = s->d[1];
  d.w = s->d[2];
  d.c_out = c->out_channels;
  d.kh = c->kernel[0];
  d.kw = c->kernel[1];
  d.sh = c->stride[0];
  d.sw = c->stride[1];
  d.ph = c->padding[0];
  d.pw = c->padding[1];
  d.dh = c->dilation[0];
  d.dw = c->dilation[1];
  d.groups = c->groups;
  d.oh = c->oh;
  d.ow = c->ow;
  return d;
}

static strop_status conv_infer(strop__node *n) {
  conv_cfg *c = n->cfg;
  const strop__shape *s = &n->in_shapes[0];
  char buf[96];
  if (s->rank != 3)
    return strop__err(STROP_E_SHAPE, "layer '%s' (conv2d): input must be [C, H, W] per sample, "
                                     "got %s",
                      n->name, strop__shape_str(s, buf, sizeof buf));
  if (c->in_channels && c->in_channels != s->d[0])
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (conv2d): in_channels is %lld but the input has %lld channels "
                      "(input shape %s)",
                      n->name, (long long)c->in_channels, (long long)s->d[0],
                      strop__shape_str(s, buf, sizeof buf));
  if (s->d[0] % c->groups)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (conv2d): in_channels %lld (from input shape %s) is not "
                      "divisible by groups %lld",
                      n->name, (long long)s->d[0], strop__shape_str(s, buf, sizeof buf),
                      (long long)c->groups);
  c->in_channels = s->d[0];
  int64_t span[2];
  for (int i = 0; i < 2; i++) {
    span[i] = c->dilation[i] * (c->kernel[i] - 1) + 1;
    if (c->pad_mode == PAD_SAME) c->padding[i] = (span[i] - 1) / 2; /* PyTorch: left = total/2 */
    if (c->pad_mode == PAD_VALID) c->padding[i] = 0;
  }
  if (c->pad_mode == PAD_SAME) {
    c->oh = s->d[1];
    c->ow = s->d[2];
  } else {
    c->oh = strop__conv_out_len(s->d[1], c->kernel[0], c->stride[0], c->padding[0],
                                c->dilation[0]);
    c->ow = strop__conv_out_len(s->d[2], c->kernel[1], c->stride[1], c->padding[1],
                                c->dilation[1]);
  }
  if (c->oh <= 0 || c->ow <= 0 || s->d[1] <= 0 || s->d[2] <= 0)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (conv2d): kernel_size %lldx%lld (dilation %lldx%lld, span "
                      "%lldx%lld) is larger than the padded input %lldx%lld (input shape %s, "
                      "padding %lldx%lld)",
                      n->name, (long long)c->kernel[0], (long long)c->kernel[1],
                      (long long)c->dilation[0], (long long)c->dilation[1], (long long)span[0],
                      (long long)span[1], (long long)(s->d[1] + 2 * c->padding[0]),
                      (long long)(s->d[2] + 2 * c->padding[1]),
                      strop__shape_str(s, buf, sizeof buf), (long long)c->padding[0],
                      (long long)c->padding[1]);
  n->out_shape.rank = 3;
  n->out_shape.d[0] = c->out_channels;
  n->out_shape.d[1] = c->oh;
  n->out_shape.d[2] = c->ow;
  int64_t wd[4] = {c->out_channels, c->in_channels / c->groups, c->kernel[0], c->kernel[1]};
  strop_status st = strop__node_add_param(n, "weight", 4, wd, 0);
  if (st == STROP_OK && c->bias) st = strop__node_add_param(n, "bias", 1, &c->out_channels, 0);
  return st;
}

static void conv_init(strop__node *n, strop__rng *rng) {
  const conv_cfg *c = n->cfg;
  int64_t fan_in = c->in_channels / c->groups * c->kernel[0] * c->kernel[1];
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  if (w) strop__init_pytorch_linear_default(w->data, w->numel, fan_in, rng);
  if (b) strop__init_pytorch_linear_default(b->data, b->numel, fan_in, rng);
}

/* The batch splits into one chunk of images per thread. */
static int conv_chunks(const strop__exec *x, const strop__conv2d_dims *d) {
  return strop__par_chunks(x->nthreads, d->n, 1);
}

/* The epilogue of the fused relu / max-pool, or NULL when nothing is fused. */
static strop__conv2d_epilogue *conv_epilogue(const conv_cfg *c, strop__conv2d_epilogue *ep) {
  if (!c->ep.relu && !c->ep.pool) return NULL;
  *ep = c->ep;
  return ep;
}

/* A relu, a max-pool, or a relu then a max-pool after the conv run in its epilogue, image by
 * image while the conv's output is in cache: the two full-size activations are never stored,
 * and the numbers are the unfused ones (same kernels, same order). */
static int conv_fuse(strop__node *n, strop__node *const *next, int n_next) {
  conv_cfg *c = n->cfg;
  int k = 0;
  memset(&c->ep, 0, sizeof c->ep);
  if (k < n_next && strop__layer_is_relu(next[k])) {
    c->ep.relu = 1;
    k++;
  }
  if (k < n_next && strop__layer_maxpool_window(next[k], &c->ep.pd)) {
    c->ep.pool = 1;
    k++;
  }
  return k;
}

static float *conv_scratch(strop__node *n, const strop__exec *x, const strop__conv2d_dims *d,
                           int backward, strop_status *st) {
  strop__conv2d_epilogue ep;
  size_t fl = strop__conv2d_scratch_floats(d, backward, conv_chunks(x, d),
                                           conv_epilogue(n->cfg, &ep));
  *st = STROP_OK;
  float *p = strop__arena_alloc(x->arena, fl * sizeof(float));
  if (!p)
    *st = strop__err(STROP_E_NOMEM, "layer '%s' (conv2d): out of memory for %zu bytes of "
                                    "scratch", n->name, fl * sizeof(float));
  return p;
}

static strop_status conv_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                                 strop__act *out) {
  const conv_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  strop__conv2d_dims d = conv_dims(c, &in[0].shape, in[0].n);
  strop_status st;
  strop__conv2d_epilogue epb;
  strop__conv2d_epilogue *ep = conv_epilogue(c, &epb);
  n->saved = NULL;
  if (ep && ep->pool) {
    /* the pool's winners, kept for the backward */
    size_t cnt = (size_t)(d.n * d.c_out * ep->pd.oh * ep->pd.ow);
    ep->argmax = strop__arena_alloc(x->arena, (cnt ? cnt : 1) * sizeof(int32_t));
    if (!ep->argmax)
      return strop__err(STROP_E_NOMEM, "layer '%s' (conv2d): out of memory for the fused "
                                       "max-pool's argmax", n->name);
    n->saved = ep->argmax;
  }
  float *scratch = conv_scratch(n, x, &d, 0, &st);
  if (st) return st;
  strop__conv2d_forward(&d, in[0].data, w->data, b ? b->data : NULL, out->data, scratch,
                        conv_chunks(x, &d), ep);
  return STROP_OK;
}

static strop_status conv_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                  const strop__act *out, const float *dout, float *const *din) {
  const conv_cfg *c = n->cfg;
  strop__param *w = strop__node_param(n, "weight"), *b = strop__node_param(n, "bias");
  float *dw = w->trainable ? w->grad : NULL;
  float *db = b && b->trainable ? b->grad : NULL;
  if (!dw && !db && !din[0]) return STROP_OK;
  strop__conv2d_dims d = conv_dims(c, &in[0].shape, in[0].n);
  strop_status st = STROP_OK;
  strop__conv2d_epilogue epb;
  strop__conv2d_epilogue *ep = conv_epilogue(c, &epb);
  if (ep) {
    if (ep->pool && !n->saved)
      return strop__err(STROP_E_INTERNAL, "layer '%s' (conv2d): backward without forward",
                        n->name);
    ep->argmax = n->saved;
    ep->y = out->data;
  }
  float *scratch = conv_scratch(n, x, &d, 1, &st);
  if (st) return st;
  strop__conv2d_backward(&d, in[0].data, w->data, dout, din[0], dw, db, scratch,
                         conv_chunks(x, &d), ep);
  return STROP_OK;
}

const strop__layer_vtable strop__layer_conv2d = {
    .type = "conv2d",
    .cfg_size = sizeof(conv_cfg),
    .n_inputs = 1,
    .flags = 0,
    .parse = conv_parse,
    .write = conv_write,
    .infer = conv_infer,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .fuse = conv_fuse,
};
