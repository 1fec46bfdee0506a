/* SPDX-License-Identifier: MIT */
/* strop — batch normalisation layers (torch.nn.BatchNorm1d on [N, C] / [N, C, L], BatchNorm2d
 * on [N, C, H, W]): batch statistics in train mode, running statistics in eval mode or when
 * the node's statistics are frozen. Math in ops/norm.c. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "layers/fuse.h"
#include "layers/init.h"
#include "layers/layer.h"
#include "ops/norm.h"

extern const strop__layer_vtable strop__layer_batchnorm1d, strop__layer_batchnorm2d;

typedef struct bn_cfg {
  int64_t num_features; /* 0 until inferred when the option is omitted */
  float eps;
  float momentum; /* < 0: momentum=None, the cumulative average */
  int affine;
  int track_running_stats;
  int relu; /* run time, from bn_fuse: 1 when it computes the relu after it too */
  int res;  /* run time, from bn_fuse: 1 when it computes the residual sum after it (its
               other operand in the exec's fused_side), 2 with the sum's relu too */
} bn_cfg;

/* What the forward left for the backward (arena). */
typedef struct bn_saved {
  int batch_stats; /* 1: normalised with the batch's statistics */
  float *mean, *invstd;
  float *relu_ab; /* with the relu fused: each channel's y = x a + b, its a and b (norm.h) */
  double count;   /* over a group (x->group): the group's values per channel; else 0 */
} bn_saved;

enum { W, B, RM, RV, NBT }; /* parameter slots */

static const double NONE_V[] = {-1, -1, -1};

static const strop__optdef OPTIONS[] = {
    STROP__OPT_AUTO_INT(bn_cfg, num_features, "num_features",
                        "channels C (dim 0 of each sample); auto: inferred"),
    STROP__OPT_FLOAT(bn_cfg, eps, "eps", "1e-05", 0, 1, 0, "added to the variance for stability"),
    {.name = "momentum",
     .type = STROP__OT_FLOAT,
     .off = offsetof(bn_cfg, momentum),
     .dflt = "0.1",
     .lo = 0,
     .hi = 1,
     .words = strop__word_none,
     .word_values = NONE_V,
     .doc = "weight of a batch in the running statistics; none: cumulative average"},
    STROP__OPT_BOOL(bn_cfg, affine, "affine", "true", "learn a per-channel weight and bias"),
    STROP__OPT_BOOL(bn_cfg, track_running_stats, "track_running_stats", "true",
                    "keep running statistics for eval mode"),
    {NULL}};

static const strop__paramdef PARAMS[] = {
    [W] = {"weight", 0, "[C], when affine"},
    [B] = {"bias", 0, "[C], when affine"},
    [RM] = {"running_mean", STROP__PD_BUFFER, "[C], when track_running_stats"},
    [RV] = {"running_var", STROP__PD_BUFFER, "[C]"},
    [NBT] = {"num_batches_tracked", STROP__PD_INT64, "int64 scalar"},
    {NULL}};

/* [C, ...] of rank rank_lo..rank_hi with C = num_features (when known): the same shape */
static strop_status bn_shape_common(const strop__node *n, const strop__shape *in,
                                    strop__shape *out, int rank_lo, int rank_hi,
                                    const char *expect) {
  const bn_cfg *c = n->cfg;
  const strop__shape *s = &in[0];
  char buf[96];
  if (s->rank < rank_lo || s->rank > rank_hi)
    return strop__shape_error(n, "input must be %s per sample, got %s", expect,
                              strop__shape_str(s, buf, sizeof buf));
  if (c->num_features && c->num_features != s->d[0])
    return strop__shape_error(n,
                              "num_features is %lld but the input has %lld channels (input "
                              "shape %s)",
                              (long long)c->num_features, (long long)s->d[0],
                              strop__shape_str(s, buf, sizeof buf));
  *out = *s;
  return STROP_OK;
}

static strop_status bn1d_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  return bn_shape_common(n, in, out, 1, 2, "[C] or [C, L]");
}
static strop_status bn2d_shape(const strop__node *n, const strop__shape *in, strop__shape *out) {
  return bn_shape_common(n, in, out, 3, 3, "[C, H, W]");
}

static strop_status bn_infer(strop__node *n) {
  bn_cfg *c = n->cfg;
  strop_status st = n->vt->shape(n, n->in_shapes, &n->out_shape);
  if (st) return st;
  c->num_features = n->in_shapes[0].d[0];
  const int64_t *nf = &c->num_features;
  if (c->affine) {
    if ((st = strop__node_declare(n, W, 1, nf))) return st;
    if ((st = strop__node_declare(n, B, 1, nf))) return st;
  }
  if (c->track_running_stats) {
    if ((st = strop__node_declare(n, RM, 1, nf))) return st;
    if ((st = strop__node_declare(n, RV, 1, nf))) return st;
    st = strop__node_declare(n, NBT, 0, NULL);
  }
  return st;
}

static void bn_init(strop__node *n, strop__rng *rng) {
  (void)rng;
  strop__param *p;
  if ((p = strop__node_p(n, W))) strop__init_ones(p->data, p->numel);
  if ((p = strop__node_p(n, B))) strop__init_zeros(p->data, p->numel);
  if ((p = strop__node_p(n, RM))) strop__init_zeros(p->data, p->numel);
  if ((p = strop__node_p(n, RV))) strop__init_ones(p->data, p->numel);
  if ((p = strop__node_p(n, NBT)) && p->idata) p->idata[0] = 0;
}

/* 1 when the node normalises with the batch's statistics in a step run with x's settings (train
 * mode with its statistics not frozen, or no running statistics at all) */
static int bn_batch_stats(const strop__node *n, const strop__exec *x) {
  const bn_cfg *c = n->cfg;
  return !c->track_running_stats || (x->training && !n->frozen_stats);
}

/* channels and the per-channel length l of an activation [n, C, ...] */
static int64_t bn_len(const strop__shape *s) {
  int64_t l = 1;
  for (int i = 1; i < s->rank; i++) l *= s->d[i];
  return l;
}

/* The running statistics moved by a training forward's batch statistics over count values */
static void update_running(strop__node *n, const strop__exec *x, const float *mean,
                           const float *var, int64_t count) {
  const bn_cfg *c = n->cfg;
  if (!x->training || !c->track_running_stats || x->recompute) return;
  strop__param *rm = strop__node_p(n, RM), *rv = strop__node_p(n, RV),
               *nbt = strop__node_p(n, NBT);
  float m = c->momentum;
  if (nbt && nbt->idata) {
    nbt->idata[0] += 1;
    if (m < 0.0f) m = (float)(1.0 / (double)nbt->idata[0]);
  }
  if (m < 0.0f) m = 0.0f;
  strop__batchnorm_update_running(c->num_features, mean, var, count, m, rm->data, rv->data);
  rm->version++; /* what a fold derived from them is stale */
  rv->version++;
}

/* Adds v[0..k) over the step's group (x->group); a stand-in's rows add nothing */
static strop_status group_sum(const strop__node *n, const strop__exec *x, double *v, int64_t k) {
  if (x->group->phantom) memset(v, 0, (size_t)k * sizeof *v);
  strop_status s = x->group->sum(x->group->ctx, v, k);
  if (s) strop__err_prefix("layer '%s' (%s)", n->name, n->vt->type);
  return s;
}

/* SyncBatchNorm: the batch statistics of the rows of every process of x->group — the sums of
 * x (and the count), then of the squared deviations from the group's mean, each added up over
 * the group; with a group of one process, the bits of the forward without one. */
static strop_status bn_forward_group(strop__node *n, const strop__exec *x, const strop__act *in,
                                     strop__act *out, bn_saved *sv, const strop__bn_res *rp) {
  const bn_cfg *c = n->cfg;
  const int64_t C = c->num_features, l = bn_len(&in[0].shape), N = in[0].n;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  float *buf = strop__arena_alloc(x->arena, 3 * (size_t)C * sizeof(float));
  double *sums = strop__arena_alloc(x->arena, (3 * (size_t)C + 1) * sizeof(double));
  if (!buf || !sums)
    return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory", n->name, n->vt->type);
  double *mu = sums + C + 1, *sq = mu + C;
  strop__batchnorm_sums(N, C, l, in[0].data, NULL, sums);
  sums[C] = (double)(N * l);
  strop_status s = group_sum(n, x, sums, C + 1);
  if (s) return s;
  const double cnt = sums[C];
  if (cnt <= 1.0)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (%s): batch statistics need more than 1 value per channel, "
                      "got %.0f over the group's processes (use eval mode or freeze the "
                      "statistics)",
                      n->name, n->vt->type, cnt);
  for (int64_t ch = 0; ch < C; ch++) mu[ch] = sums[ch] / cnt;
  strop__batchnorm_sums(N, C, l, in[0].data, mu, sq);
  if ((s = group_sum(n, x, sq, C))) return s;
  sv->mean = buf;
  sv->invstd = buf + C;
  sv->count = cnt;
  float *var = buf + 2 * C;
  strop__batchnorm_forward_sums(N, C, l, in[0].data, w ? w->data : NULL, b ? b->data : NULL,
                                c->eps, sums, sq, cnt, sv->relu_ab, out->data, sv->mean,
                                sv->invstd, var, rp);
  update_running(n, x, sv->mean, var, (int64_t)cnt);
  return STROP_OK;
}

static strop_status bn_forward(strop__node *n, const strop__exec *x, const strop__act *in,
                               strop__act *out) {
  const bn_cfg *c = n->cfg;
  const int64_t C = c->num_features, l = bn_len(&in[0].shape), N = in[0].n;
  strop__param *w = strop__node_p(n, W), *b = strop__node_p(n, B);
  strop__param *rm = strop__node_p(n, RM), *rv = strop__node_p(n, RV);
  const float *gamma = w ? w->data : NULL, *beta = b ? b->data : NULL;
  bn_saved *sv = strop__arena_alloc(x->arena, sizeof *sv);
  if (!sv)
    return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory", n->name, n->vt->type);
  memset(sv, 0, sizeof *sv);
  sv->batch_stats = bn_batch_stats(n, x);
  n->saved = sv;
  if (n->fused > 0 && c->relu &&
      !(sv->relu_ab = strop__arena_alloc(x->arena, 2 * (size_t)C * sizeof(float))))
    return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory", n->name, n->vt->type);
  strop__bn_res res = {0}, *rp = NULL;
  if (n->fused > 0 && c->res) {
    if (!x->fused_side || !x->fused_side->data)
      return strop__err(STROP_E_INTERNAL, "layer '%s' (%s): fused without the sum's other input",
                        n->name, n->vt->type);
    res.r = x->fused_side->data;
    res.r_first = x->fused_side_slot == 0;
    res.relu = c->res == 2;
    rp = &res;
  }
  if (!sv->batch_stats) {
    strop__batchnorm_forward_eval(N, C, l, in[0].data, gamma, beta, rm->data, rv->data, c->eps,
                                  sv->relu_ab, out->data, rp);
    return STROP_OK;
  }
  if (x->group) return bn_forward_group(n, x, in, out, sv, rp);
  if (N * l <= 1)
    return strop__err(STROP_E_SHAPE,
                      "layer '%s' (%s): batch statistics need more than 1 value per channel, "
                      "got batch %lld of %lld per sample (use eval mode or freeze the "
                      "statistics)",
                      n->name, n->vt->type, (long long)N, (long long)l);
  float *buf = strop__arena_alloc(x->arena, 3 * (size_t)C * sizeof(float));
  if (!buf)
    return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory", n->name, n->vt->type);
  sv->mean = buf;
  sv->invstd = buf + C;
  float *var = buf + 2 * C;
  strop__batchnorm_forward_train(N, C, l, in[0].data, gamma, beta, c->eps, sv->relu_ab, out->data,
                                 sv->mean, sv->invstd, var, rp);
  update_running(n, x, sv->mean, var, N * l);
  return STROP_OK;
}

/* The floats of the backward's scratch: the stage of the dot pass of a norm with a residual
 * chain after it (ops/norm.h), for batch n of per-channel length l on nthreads threads */
static size_t bn_stage_floats(const strop__node *n, int nthreads, int64_t batch, int64_t l) {
  const bn_cfg *c = n->cfg;
  if (n->fused <= 0 || !c->res || !strop__bn_stage) return 0;
  return strop__batchnorm_stage_floats(nthreads, batch, c->num_features, l);
}

static size_t bn_scratch(const strop__node *n, const strop__exec *x, const strop__shape *in,
                         int64_t batch, int backward) {
  return backward ? bn_stage_floats(n, x->nthreads, batch, bn_len(&in[0])) * sizeof(float) : 0;
}

static strop_status bn_backward(strop__node *n, const strop__exec *x, const strop__act *in,
                                const strop__act *out, const float *dout, float *const *din) {
  const bn_cfg *c = n->cfg; /* the fused relu's mask comes from the input (sv->relu_ab) */
  const bn_saved *sv = n->saved;
  if (!sv)
    return strop__err(STROP_E_INTERNAL, "layer '%s' (%s): backward without forward", n->name,
                      n->vt->type);
  const int64_t C = c->num_features, l = bn_len(&in[0].shape), N = in[0].n;
  strop__param *w = strop__node_p(n, W);
  float *dg = strop__node_grad(n, W), *dbt = strop__node_grad(n, B);
  const float *gamma = w ? w->data : NULL;
  /* the residual sum's relu selects dy by the chain's output; the sum hands its gradient to
   * its other input as the add would */
  const int res = n->fused > 0 && c->res;
  strop__bn_res rs = {.relu = res && c->res == 2,
                      .dr = res ? x->fused_side_grad : NULL,
                      .dr_assign = x->fused_side_assign};
  const strop__bn_res *rp = res ? &rs : NULL;
  const float *ab = sv->relu_ab;
  if (x->centred_in) { /* x - mean held in BF16 (bn_bf16_centred): the relu's select from out */
    rs.dev = x->centred_in;
    rp = &rs;
    if (ab) rs.relu = 1, ab = NULL;
  }
  if (rs.relu) { /* the output held in BF16 with its signs (bn_out_sign_only), else as it is */
    rs.out = x->held_out ? NULL : out->data;
    rs.out_h = x->held_out;
  }
  if (!dg && !dbt && !din[0] && !rs.dr) return STROP_OK;
  if (res) { /* without it (out of memory) the dot pass reads as before: the same bits */
    const size_t fl = bn_stage_floats(n, x->nthreads, N, l);
    if (fl && (rs.stage = strop__exec_scratch(x, fl * sizeof(float)))) rs.stage_floats = fl;
  }
  if (sv->batch_stats && sv->count > 0) { /* over the group: its sums of dy, (x - mean) dy */
    double *sums = strop__arena_alloc(x->arena, 2 * (size_t)C * sizeof(double));
    if (!sums)
      return strop__err(STROP_E_NOMEM, "layer '%s' (%s): out of memory", n->name, n->vt->type);
    strop__batchnorm_dots(N, C, l, in[0].data, dout, ab, sv->mean, sv->invstd, dg, dbt, sums,
                          sums + C, rp);
    if (!din[0]) return STROP_OK; /* (the same on every process: the same graph) */
    strop_status s = group_sum(n, x, sums, 2 * C);
    if (s) return s;
    if (x->group->phantom) { /* a stand-in row: no gradient flows back from it */
      if (x->din_assign) memset(din[0], 0, (size_t)(N * C * l) * sizeof(float));
      return STROP_OK;
    }
    strop__batchnorm_backward_sums(N, C, l, in[0].data, dout, ab, gamma, sv->mean, sv->invstd,
                                   sums, sums + C, sv->count, din[0], x->din_assign, rp);
  } else if (sv->batch_stats) {
    strop__batchnorm_backward_train(N, C, l, in[0].data, dout, ab, gamma, sv->mean, sv->invstd,
                                    din[0], dg, dbt, x->din_assign, rp);
  } else {
    strop__param *rm = strop__node_p(n, RM), *rv = strop__node_p(n, RV);
    strop__batchnorm_backward_eval(N, C, l, in[0].data, dout, ab, gamma, rm->data, rv->data,
                                   c->eps, din[0], dg, dbt, x->din_assign, rp);
  }
  return STROP_OK;
}

/* A norm whose sole reader is a relu (a ResNet block's conv, norm, relu) computes the relu in
 * its affine pass, and the relu's gradient mask in its backward's passes: the norm's output is
 * never stored and read again, nor is the relu's input gradient, and the bits are those of the
 * two layers apart (strop__relu_forward's select on the same float; in the backward
 * strop__relu_backward_assign's select on dy where the norm reads it). Not when a max-pool
 * reads the relu: the relu runs with the pool then (layers/activation.c), which keeps the
 * relu's full-size output from being stored at all (a ResNet's stem). */
int strop__bn_fuse_relu = 1;

/* A norm whose sole reader is a residual sum of two inputs (a ResNet bottleneck's last norm:
 * add(norm, shortcut), then a relu) computes the sum in its affine pass, the sum's other operand
 * read from the exec's fused_side, and the relu after the sum too (as the sum took it before:
 * a max-pool after it runs by itself). In the backward, the dot pass takes dy through the relu's
 * select on the chain's output and hands it to the other operand's gradient (x->fused_side_grad,
 * written or added, as the sum's backward), and the write pass reads it back from there when it
 * was written: the norm's output and the sum's are never stored, nor the sum's gradient, and the
 * bits are those of the three layers apart (the affine's float, the add's in its operand order,
 * the relu's select; the sum's gradient through add_bwd_range's select). */
int strop__bn_fuse_add = 1;

/* The dot pass's stage (bn_stage_floats) */
int strop__bn_stage = 1;

static int bn_fuse(strop__node *n, strop__node *const *next, int n_next, int shared) {
  bn_cfg *c = n->cfg;
  strop__pool2d_dims pd;
  c->relu = c->res = 0;
  if (strop__bn_fuse_add && n_next >= 1 && !shared && next[0]->n_in == 2 &&
      (next[0]->vt->flags & STROP__LAYER_EPILOGUE_ADD)) {
    c->res = n_next >= 2 && (next[1]->vt->flags & STROP__LAYER_EPILOGUE_RELU) ? 2 : 1;
    return c->res;
  }
  c->relu = strop__bn_fuse_relu && n_next >= 1 && !shared &&
            (next[0]->vt->flags & STROP__LAYER_EPILOGUE_RELU) != 0 &&
            !(n_next >= 2 && strop__layer_maxpool_window(next[1], &pd));
  return c->relu;
}

/* ---- folding a frozen norm into the layer before it (fuse.h) ---- */

int strop__layer_norm_foldable(const strop__node *n, int64_t channels) {
  if (n->vt != &strop__layer_batchnorm1d && n->vt != &strop__layer_batchnorm2d) return 0;
  const bn_cfg *c = n->cfg;
  const strop__param *rm = strop__node_p(n, RM), *rv = strop__node_p(n, RV);
  return c->track_running_stats && c->num_features == channels && rm && rv && rm->data &&
         rv->data;
}

/* n->fold: what the folded values came from, then the values (64-byte aligned) */
enum { F_W, F_B, F_GA, F_BE, F_RM, F_RV, F_N };
typedef struct fold_cache {
  const float *src[F_N]; /* the tensors' data (NULL: absent) */
  int ver[F_N];
  float eps;
  size_t wn, c;
  /* bytes of the borrowed weight's pages handed back (strop__param_drop_pages): the training
   * steps read the folded copy only. An evaluation forward, which reads the unfolded weight,
   * faults them in again; the next training forward drops them again. */
  size_t released;
  int valid;
  int dropped; /* the values given back (strop__layer_fold_drop): wn and c 0, released kept */
} fold_cache;

#define FOLD_HEAD ((sizeof(fold_cache) + 63) / 64 * 64)

size_t strop__node_fold_bytes(const strop__node *n) {
  const fold_cache *fc = n->fold;
  return (fc ? FOLD_HEAD + (fc->wn + fc->c) * sizeof(float) : 0) + n->wino_bytes;
}

size_t strop__node_fold_released(const strop__node *n) {
  const fold_cache *fc = n->fold;
  return fc && (fc->valid || fc->dropped) ? fc->released : 0;
}

void strop__layer_fold_drop(strop__node *n) {
  fold_cache *fc = n->fold;
  if (!fc || !fc->wn) return;
  fold_cache *h = strop__malloc_aligned(FOLD_HEAD);
  if (!h) return; /* the values stay: more memory, nothing wrong */
  *h = *fc;
  h->wn = h->c = 0;
  h->valid = 0;
  h->dropped = 1;
  strop__free_aligned(fc);
  n->fold = h;
}

strop_status strop__layer_fold_norm(strop__node *n, const strop__param *w, const strop__param *b,
                                    const strop__node *norm, const float **wf, const float **bf) {
  const bn_cfg *nc = norm->cfg;
  const strop__param *src[F_N] = {w,
                                  b,
                                  strop__node_p(norm, W),
                                  strop__node_p(norm, B),
                                  strop__node_p(norm, RM),
                                  strop__node_p(norm, RV)};
  const size_t C = (size_t)nc->num_features, wn = w->numel;
  fold_cache *fc = n->fold;
  if (!fc || fc->wn != wn || fc->c != C) {
    strop__free_aligned(n->fold);
    n->fold = fc = strop__malloc_aligned(FOLD_HEAD + (wn + C) * sizeof(float));
    if (!fc)
      return strop__err(STROP_E_NOMEM,
                        "layer '%s' (%s): out of memory for the weights with '%s' folded in",
                        n->name, n->vt->type, norm->name);
    memset(fc, 0, sizeof *fc);
    fc->wn = wn;
    fc->c = C;
  }
  float *fw = (float *)((char *)fc + FOLD_HEAD), *fb = fw + wn;
  *wf = fw;
  *bf = fb;
  int same = fc->valid && fc->eps == nc->eps;
  for (int i = 0; i < F_N && same; i++)
    same = (src[i] ? src[i]->data : NULL) == fc->src[i] &&
           (!src[i] || (src[i]->version == fc->ver[i] && !src[i]->viewed));
  if (same) {
    fc->released = strop__param_drop_pages(w);
    return STROP_OK;
  }
  const float *ga = src[F_GA] ? src[F_GA]->data : NULL, *be = src[F_BE] ? src[F_BE]->data : NULL;
  const float *rm = src[F_RM]->data, *rv = src[F_RV]->data, *b0 = b ? b->data : NULL;
  const size_t per = wn / C;
  for (size_t c = 0; c < C; c++) {
    /* the same arithmetic as the eval-mode BatchNorm kernel, in double */
    const double sc = (ga ? (double)ga[c] : 1.0) / sqrt((double)rv[c] + (double)nc->eps);
    const float *row = w->data + c * per;
    float *out = fw + c * per;
    for (size_t k = 0; k < per; k++) out[k] = (float)((double)row[k] * sc);
    fb[c] = (float)(((b0 ? (double)b0[c] : 0.0) - (double)rm[c]) * sc +
                    (be ? (double)be[c] : 0.0));
  }
  for (int i = 0; i < F_N; i++) {
    fc->src[i] = src[i] ? src[i]->data : NULL;
    fc->ver[i] = src[i] ? src[i]->version : 0;
  }
  fc->eps = nc->eps;
  fc->valid = 1;
  fc->released = strop__param_drop_pages(w);
  return STROP_OK;
}

/* Its train-mode backward reads its input as (x - mean) invstd, from the batch mean, which the
 * input may be held around (strop__layer_vtable.bf16_centred); its fused relu's select then
 * comes from the chain's output. */
static int bn_bf16_centred(const strop__node *n, const strop__exec *x, int slot,
                           const float **centre) {
  const bn_saved *sv = n->saved;
  if (slot != 0 || !bn_batch_stats(n, x)) return 0;
  if (!centre) return 1;
  *centre = sv && sv->batch_stats ? sv->mean : NULL;
  return *centre != NULL;
}

/* Its backward never reads its own output; with a residual sum and its relu after it, the
 * chain's backward reads the chain's output for the relu's select alone (out <= 0), and so
 * with the relu after it when its input was held around its mean: from the BF16 values the
 * graph holds too (x->held_out, strop__bn_res.out_h). */
static int bn_out_sign_only(const strop__node *n) {
  (void)n;
  return 2;
}

const strop__layer_vtable strop__layer_batchnorm1d = {
    .type = "batchnorm1d",
    .doc = "batch normalisation over dim 0 of [C] or [C, L] (torch.nn.BatchNorm1d)",
    .cfg_size = sizeof(bn_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_BATCHSTATS | STROP__LAYER_FOLDABLE_NORM | STROP__LAYER_OUT_UNREAD |
             STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_SIDE_GRAD,
    .options = OPTIONS,
    .params = PARAMS,
    .shape = bn1d_shape,
    .infer = bn_infer,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .fuse = bn_fuse,
    .scratch = bn_scratch,
    .bf16_centred = bn_bf16_centred,
    .out_sign_only = bn_out_sign_only,
};

const strop__layer_vtable strop__layer_batchnorm2d = {
    .type = "batchnorm2d",
    .doc = "batch normalisation over the channels of [C, H, W] (torch.nn.BatchNorm2d)",
    .cfg_size = sizeof(bn_cfg),
    .n_inputs = 1,
    .flags = STROP__LAYER_BATCHSTATS | STROP__LAYER_FOLDABLE_NORM | STROP__LAYER_OUT_UNREAD |
             STROP__LAYER_ASSIGNS_DIN | STROP__LAYER_SIDE_GRAD,
    .options = OPTIONS,
    .params = PARAMS,
    .shape = bn2d_shape,
    .infer = bn_infer,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .fuse = bn_fuse,
    .scratch = bn_scratch,
    .bf16_centred = bn_bf16_centred,
    .out_sign_only = bn_out_sign_only,
};
