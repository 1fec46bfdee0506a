/* SPDX-License-Identifier: MIT */
/* strop — the batch iterator: per-epoch orders that are pure functions of (seed, epoch),
 * per-sample transforms, and a double-buffered prefetch of the next batch on a worker thread. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "core/tensor_impl.h"
#include "data/data_impl.h"
#include "ops/resize.h"

enum {
  XF_SCALE = 1,
  XF_NORMALIZE,
  XF_HFLIP,
  XF_CROP,
  XF_RESIZE,
  XF_RESIZE_SHORT,
  XF_CENTER_CROP,
  XF_RRC,
  XF_JITTER
};

typedef struct xform {
  int type;
  float a;             /* scale factor, flip probability */
  int64_t c;           /* channels at this stage */
  int64_t oh, ow, pad; /* output size (crops, resize), padding (crop); RESIZE_SHORT: oh the
                           shorter side, ow the longer side's limit (0: none) */
  int mode;            /* resize mode */
  float *mean, *std;   /* normalize: c values each */
  float p[4];          /* RRC: scale and ratio ranges; JITTER: brightness, contrast,
                           saturation, hue */
} xform;

/* What an iterator keeps of a sample of an image dataset: the output of its leading
 * transforms that draw nothing (scale, normalize, resize, centre crop), c x h x w floats. */
typedef struct kept {
  int64_t h, w;
  size_t bytes; /* charged to the dataset's cache budget */
  float px[];
} kept;

/* Job states of the prefetch workers. */
enum { JOB_NONE = 0, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

/* Scratch of one thread filling rows: two stage buffers and a resize workspace. */
typedef struct scratch {
  float *s0, *s1, *work;
} scratch;

#define MAX_WORKERS 64

struct strop_batch_iter {
  strop_dataset *ds;
  int64_t bs, n, nb, end; /* end: samples per epoch actually visited */
  uint64_t seed;
  int flags;
  int64_t epoch, pos;
  int started;

  int64_t *perm;
  int64_t perm_epoch;
  uint64_t perm_seed;

  xform *xf;
  int nxf;
  int inplace;  /* 1 while no transform changes the shape (no crop, no resize) */
  int var;      /* 1 while the image size at the end of the pipeline varies per sample */
  int out_rank; /* per-sample shape after transforms (0 for a varying size) */
  int64_t out_dims[STROP_MAX_RANK];
  size_t out_numel, max_numel, max_work; /* largest stage and resize workspace, in floats */
  int pre;                               /* > 0: transforms [0, pre) draw nothing and resize or
                                            crop, and their output is kept per sample in kept
                                            (an image dataset with a cache budget) */
  _Atomic(kept *) *kept;                 /* per sample of ds, or NULL */
  _Atomic int64_t kept_hits;
  scratch main_s; /* the calling thread's */

  struct {
    float *x, *y, *m, *k; /* inputs, targets, masks, token types */
    strop_tensor *tx, *ty, *tm, *tk;
  } buf[2];
  int cur;
  int64_t mask_len;               /* positions of a sample's padding mask; 0: no masks */
  int64_t types_len;              /* positions of a sample's token types; 0: none */
  const strop_tensor *last_mask;  /* the mask of the batch last returned, or NULL */
  const strop_tensor *last_types; /* its token types, or NULL */

  /* a share of every batch (a data-parallel rank's, strop__batch_iter_set_share): only its
   * rows are read, decoded and transformed; NULL: the whole batch */
  strop__batch_share_fn share;
  const void *share_ctx;

  int nworkers; /* prefetch threads (1 unless set) */
  int threaded; /* threads started */
  pthread_t th[MAX_WORKERS];
  scratch ws[MAX_WORKERS];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int job, stop;
  int64_t job_epoch, job_pos, job_rows, job_claimed, job_finished;
  int64_t job_off, job_global; /* the share's first row and the batch's rows */
  int job_buf;
  strop_status job_st;
  char job_msg[1024];
};

/* ------------------------------------------------------------------ seeds ---- */

static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static void sample_rng(const strop_batch_iter *it, int64_t epoch, int64_t pos, strop__rng *r) {
  uint64_t h = mix64(it->seed ^ mix64((uint64_t)epoch ^ mix64((uint64_t)pos + 0x1234567ULL)));
  strop__rng_seed(r, h, 0x7866ULL);
}

/* ------------------------------------------------------------------ geometry ---- */

/* torchvision's _compute_resized_output_size for Resize(size) with an int size: the shorter
 * side becomes `size`, the longer int(size * long / short), both scaled down when the longer
 * exceeds max_size (0: no limit). */
static void short_side_size(int64_t h, int64_t w, int64_t size, int64_t max_size, int64_t *oh,
                            int64_t *ow) {
  int64_t s = w <= h ? w : h, l = w <= h ? h : w;
  int64_t ns = size, nl = (int64_t)((double)(size * l) / (double)s);
  if (max_size > 0 && nl > max_size) {
    ns = (int64_t)((double)(max_size * ns) / (double)nl);
    nl = max_size;
  }
  *ow = w <= h ? ns : nl;
  *oh = w <= h ? nl : ns;
}

/* Python's round() of a half-integer or integer: half to even. */
static int64_t round_even(double v) { return (int64_t)nearbyint(v); }

/* torchvision's CenterCrop offsets: zero padding centred (floor on the top/left) when the crop
 * is larger, else round((in - crop) / 2) with Python's rounding. */
static int64_t center_offset(int64_t in, int64_t crop) {
  if (crop > in) return -((crop - in) / 2);
  return round_even((double)(in - crop) / 2.0);
}

void strop__rrc_params(int64_t h, int64_t w, const float scale[2], const float ratio[2],
                       strop__rrc_draw_fn draw, void *ctx, int64_t out[4]) {
  double area = (double)h * (double)w;
  float lr0 = logf(ratio[0]), lr1 = logf(ratio[1]);
  for (int attempt = 0; attempt < 10; attempt++) {
    float sv, av;
    draw(ctx, scale[0], scale[1], lr0, lr1, &sv, &av);
    double target = area * (double)sv;
    int64_t cw = (int64_t)nearbyint(sqrt(target * (double)av));
    int64_t ch = (int64_t)nearbyint(sqrt(target / (double)av));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      out[0] = (int64_t)draw(ctx, 0, 0, 0, (float)(h - ch + 1), NULL, NULL);
      out[1] = (int64_t)draw(ctx, 0, 0, 0, (float)(w - cw + 1), NULL, NULL);
      out[2] = ch;
      out[3] = cw;
      return;
    }
  }
  /* fallback: the central crop of the nearest allowed ratio */
  double in_ratio = (double)w / (double)h;
  double rmin = ratio[0] < ratio[1] ? ratio[0] : ratio[1];
  double rmax = ratio[0] < ratio[1] ? ratio[1] : ratio[0];
  int64_t cw, ch;
  if (in_ratio < rmin) {
    cw = w;
    ch = (int64_t)nearbyint((double)cw / rmin);
  } else if (in_ratio > rmax) {
    ch = h;
    cw = (int64_t)nearbyint((double)ch * rmax);
  } else {
    cw = w;
    ch = h;
  }
  out[0] = (h - ch) / 2;
  out[1] = (w - cw) / 2;
  out[2] = ch;
  out[3] = cw;
}

/* The iterator's draws: scale uniform in [s0, s1), exp of a uniform log-ratio, both in float
 * as torch draws them; an integer in [0, n) when sv is NULL. */
static double rng_draw(void *ctx, float s0, float s1, float l0, float l1, float *sv, float *av) {
  strop__rng *r = ctx;
  if (!sv) return (double)strop__rng_below(r, (uint64_t)l1);
  float u = strop__rng_uniform(r), v = strop__rng_uniform(r);
  *sv = s0 + (s1 - s0) * u;
  *av = expf(l0 + (l1 - l0) * v);
  return 0;
}

/* The size after transform x of an input of h x w. */
static void xf_out_size(const xform *x, int64_t h, int64_t w, int64_t *oh, int64_t *ow) {
  switch (x->type) {
    case XF_CROP:
    case XF_RESIZE:
    case XF_CENTER_CROP:
    case XF_RRC:
      *oh = x->oh;
      *ow = x->ow;
      return;
    case XF_RESIZE_SHORT: short_side_size(h, w, x->oh, x->ow, oh, ow); return;
    default: *oh = h; *ow = w;
  }
}

/* Resizes the region (iy, ix, ih, iw) of a [c, H, W] image to oh x ow and writes the window
 * (oy, ox, wh, ww) of the result to dst. Modes other than antialiased bilinear go through tmp
 * (room for the region and the full result). */
static void resize_region(const float *src, int64_t c, int64_t H, int64_t W, int64_t iy,
                          int64_t ix, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t oy,
                          int64_t ox, int64_t wh, int64_t ww, int mode, float *dst, float *work) {
  if (mode == STROP_RESIZE_BILINEAR_AA) {
    strop__resize_aa_args a = {c, H, W, iy, ix, ih, iw, oh, ow, oy, ox, wh, ww};
    strop__resize_bilinear_aa(src, &a, dst, work);
    return;
  }
  const float *reg = src;
  float *region = work, *full = work + (size_t)c * (size_t)(ih * iw);
  if (iy || ix || ih != H || iw != W) {
    for (int64_t k = 0; k < c; k++)
      for (int64_t y = 0; y < ih; y++)
        memcpy(region + (size_t)((k * ih + y) * iw), src + (size_t)((k * H + iy + y) * W + ix),
               (size_t)iw * sizeof(float));
    reg = region;
  }
  int whole = !oy && !ox && wh == oh && ww == ow;
  float *to = whole ? dst : full;
  if (mode == STROP_RESIZE_BILINEAR) strop__resize_bilinear(reg, c, ih, iw, to, oh, ow);
  else strop__resize_nearest(reg, c, ih, iw, to, oh, ow);
  if (!whole)
    for (int64_t k = 0; k < c; k++)
      for (int64_t y = 0; y < wh; y++)
        memcpy(dst + (size_t)((k * wh + y) * ww), full + (size_t)((k * oh + oy + y) * ow + ox),
               (size_t)ww * sizeof(float));
}

/* Workspace resize_region needs. */
static size_t resize_work(int64_t c, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int mode) {
  if (mode == STROP_RESIZE_BILINEAR_AA) {
    strop__resize_aa_args a = {c, ih, iw, 0, 0, ih, iw, oh, ow, 0, 0, oh, ow};
    return strop__resize_aa_work(&a);
  }
  return (size_t)c * (size_t)(ih * iw + oh * ow);
}

/* ---------------------------------------------------------------- colour jitter ---- */

/* torchvision's functional_tensor on float images in [0, 1]: _blend clamps to [0, 1];
 * grey is 0.2989 R + 0.587 G + 0.114 B. */
static void blend(float *a, const float *b, float bconst, size_t n, float f) {
  float g = (float)(1.0 - (double)f); /* Python computes 1 - ratio in double */
  for (size_t k = 0; k < n; k++) {
    float v = f * a[k] + g * (b ? b[k] : bconst);
    a[k] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  }
}

static void grey_of(const float *img, size_t plane, float *g) {
  for (size_t k = 0; k < plane; k++)
    g[k] = 0.2989f * img[k] + 0.587f * img[plane + k] + 0.114f * img[2 * plane + k];
}

/* torchvision's _rgb2hsv / _hsv2rgb with the hue shifted by f (adjust_hue). */
static void shift_hue(float *img, size_t plane, float f) {
  for (size_t k = 0; k < plane; k++) {
    float r = img[k], g = img[plane + k], b = img[2 * plane + k];
    float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
    int eqc = maxc == minc;
    float cr = maxc - minc;
    float ones = 1.0f;
    float s = cr / (eqc ? ones : maxc);
    float crd = eqc ? ones : cr;
    float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
    float hr = (maxc == r) ? (bc - gc) : 0.0f;
    float hg = (maxc == g && maxc != r) ? (2.0f + rc - bc) : 0.0f;
    float hb = (maxc != g && maxc != r) ? (4.0f + gc - rc) : 0.0f;
    float h = hr + hg + hb;
    h = fmodf(h / 6.0f + 1.0f, 1.0f);
    /* adjust_hue: (h + f) % 1.0 (Python's modulo: the result takes the divisor's sign) */
    h = fmodf(h + f, 1.0f);
    if (h < 0.0f) h += 1.0f;
    float v = maxc;
    float i = floorf(h * 6.0f);
    float fr = h * 6.0f - i;
    int ii = (int)i % 6;
    float p = fminf(fmaxf(v * (1.0f - s), 0.0f), 1.0f);
    float q = fminf(fmaxf(v * (1.0f - s * fr), 0.0f), 1.0f);
    float t = fminf(fmaxf(v * (1.0f - s * (1.0f - fr)), 0.0f), 1.0f);
    float o[3];
    switch (ii) {
      case 0:
        o[0] = v;
        o[1] = t;
        o[2] = p;
        break;
      case 1:
        o[0] = q;
        o[1] = v;
        o[2] = p;
        break;
      case 2:
        o[0] = p;
        o[1] = v;
        o[2] = t;
        break;
      case 3:
        o[0] = p;
        o[1] = q;
        o[2] = v;
        break;
      case 4:
        o[0] = t;
        o[1] = p;
        o[2] = v;
        break;
      default:
        o[0] = v;
        o[1] = p;
        o[2] = q;
        break;
    }
    img[k] = o[0];
    img[plane + k] = o[1];
    img[2 * plane + k] = o[2];
  }
}

void strop__color_jitter_step(float *img, int64_t c, int64_t h, int64_t w, int which, float f,
                              float *grey) {
  size_t plane = (size_t)(h * w), n = (size_t)c * plane;
  switch (which) {
    case 0: /* brightness: blend with black */ blend(img, NULL, 0.0f, n, f); break;
    case 1: { /* contrast: blend with the mean grey level */
      double sum = 0;
      if (c == 3) {
        grey_of(img, plane, grey);
        for (size_t k = 0; k < plane; k++) sum += grey[k];
      } else {
        for (size_t k = 0; k < n; k++) sum += img[k];
        plane = n;
      }
      blend(img, NULL, (float)(sum / (double)plane), n, f);
      break;
    }
    case 2: /* saturation: blend with the grey image (a grey image is left as it is) */
      if (c == 3) {
        grey_of(img, plane, grey);
        for (int64_t k = 0; k < c; k++) blend(img + (size_t)k * plane, grey, 0, plane, f);
      }
      break;
    default: /* hue (a grey image is left as it is) */
      if (c == 3) shift_hue(img, plane, f);
      break;
  }
}

/* ---------------------------------------------------------------- the pipeline ---- */

/* Runs transforms [first, count) on one sample in s0 of shape (c, h, w); returns the buffer
 * holding the result (s0 or s1) and its size in *ph, *pw. sample names the sample in errors. */
static strop_status run_transforms(const strop_batch_iter *it, int first, int count, int64_t c,
                                   int64_t *ph, int64_t *pw, const scratch *sc, float *s0,
                                   float *s1, strop__rng *r, int64_t sample, float **result) {
  float *a = s0, *b = s1;
  int64_t h = *ph, w = *pw;
  for (int t = first; t < count; t++) {
    const xform *x = &it->xf[t];
    size_t plane = (size_t)(h * w), numel = (size_t)c * plane;
    float *tmp;
    switch (x->type) {
      case XF_SCALE:
        for (size_t k = 0; k < numel; k++) a[k] *= x->a;
        break;
      case XF_NORMALIZE:
        for (int64_t k = 0; k < c; k++) {
          float m = x->mean[k], inv = 1.0f / x->std[k];
          float *p = a + (size_t)k * plane;
          for (size_t q = 0; q < plane; q++) p[q] = (p[q] - m) * inv;
        }
        break;
      case XF_HFLIP:
        if (strop__rng_uniform(r) < x->a)
          for (size_t row = 0; row < (size_t)c * (size_t)h; row++) {
            float *p = a + row * (size_t)w;
            for (int64_t i = 0, j = w - 1; i < j; i++, j--) {
              float v = p[i];
              p[i] = p[j];
              p[j] = v;
            }
          }
        break;
      case XF_CROP: {
        int64_t ph2 = h + 2 * x->pad, pw2 = w + 2 * x->pad;
        if (x->oh > ph2 || x->ow > pw2)
          return strop__err(STROP_E_SHAPE,
                            "strop_batch_iter_next: sample %lld: crop %lld x %lld "
                            "exceeds the padded image %lld x %lld",
                            (long long)sample, (long long)x->oh, (long long)x->ow, (long long)ph2,
                            (long long)pw2);
        int64_t top = (int64_t)strop__rng_below(r, (uint64_t)(ph2 - x->oh + 1));
        int64_t left = (int64_t)strop__rng_below(r, (uint64_t)(pw2 - x->ow + 1));
        for (int64_t k = 0; k < c; k++)
          for (int64_t y = 0; y < x->oh; y++) {
            int64_t sy = top + y - x->pad;
            float *d = b + (size_t)((k * x->oh + y) * x->ow);
            for (int64_t xx = 0; xx < x->ow; xx++) {
              int64_t sx = left + xx - x->pad;
              d[xx] = (sy >= 0 && sy < h && sx >= 0 && sx < w)
                          ? a[(size_t)((k * h + sy) * w + sx)]
                          : 0.0f;
            }
          }
        h = x->oh;
        w = x->ow;
        tmp = a;
        a = b;
        b = tmp;
        break;
      }
      case XF_CENTER_CROP: {
        int64_t top = center_offset(h, x->oh), left = center_offset(w, x->ow);
        for (int64_t k = 0; k < c; k++)
          for (int64_t y = 0; y < x->oh; y++) {
            int64_t sy = top + y;
            float *d = b + (size_t)((k * x->oh + y) * x->ow);
            for (int64_t xx = 0; xx < x->ow; xx++) {
              int64_t sx = left + xx;
              d[xx] = (sy >= 0 && sy < h && sx >= 0 && sx < w)
                          ? a[(size_t)((k * h + sy) * w + sx)]
                          : 0.0f;
            }
          }
        h = x->oh;
        w = x->ow;
        tmp = a;
        a = b;
        b = tmp;
        break;
      }
      case XF_RESIZE:
      case XF_RESIZE_SHORT: {
        int64_t oh, ow;
        xf_out_size(x, h, w, &oh, &ow);
        /* a centre crop right after, inside the resized image: only its window is computed
         * (the same values: each output depends on its own position only) */
        const xform *nx = t + 1 < count ? &it->xf[t + 1] : NULL;
        if (x->mode == STROP_RESIZE_BILINEAR_AA && nx && nx->type == XF_CENTER_CROP &&
            nx->oh <= oh && nx->ow <= ow) {
          resize_region(a, c, h, w, 0, 0, h, w, oh, ow, center_offset(oh, nx->oh),
                        center_offset(ow, nx->ow), nx->oh, nx->ow, x->mode, b, sc->work);
          oh = nx->oh;
          ow = nx->ow;
          t++;
        } else if (oh == h && ow == w && x->mode == STROP_RESIZE_BILINEAR_AA) {
          break; /* torch copies an unchanged size */
        } else {
          resize_region(a, c, h, w, 0, 0, h, w, oh, ow, 0, 0, oh, ow, x->mode, b, sc->work);
        }
        h = oh;
        w = ow;
        tmp = a;
        a = b;
        b = tmp;
        break;
      }
      case XF_RRC: {
        int64_t prm[4];
        strop__rrc_params(h, w, x->p, x->p + 2, rng_draw, r, prm);
        resize_region(a, c, h, w, prm[0], prm[1], prm[2], prm[3], x->oh, x->ow, 0, 0, x->oh,
                      x->ow, x->mode, b, sc->work);
        h = x->oh;
        w = x->ow;
        tmp = a;
        a = b;
        b = tmp;
        break;
      }
      case XF_JITTER: {
        /* torchvision's ColorJitter.get_params: an order of the four, then a factor for each
         * one that is on, applied in that order (the grey plane lives in b, free here) */
        int order[4] = {0, 1, 2, 3};
        for (int i = 3; i > 0; i--) {
          int j = (int)strop__rng_below(r, (uint64_t)(i + 1));
          int v = order[i];
          order[i] = order[j];
          order[j] = v;
        }
        float f[4] = {1.0f, 1.0f, 1.0f, 0.0f};
        for (int k = 0; k < 4; k++) {
          float m = x->p[k];
          if (m <= 0.0f) continue;
          float lo = k == 3 ? -m : fmaxf(0.0f, 1.0f - m), hi = k == 3 ? m : 1.0f + m;
          f[k] = lo + (hi - lo) * strop__rng_uniform(r);
        }
        for (int k = 0; k < 4; k++)
          if (x->p[order[k]] > 0.0f)
            strop__color_jitter_step(a, c, h, w, order[k], f[order[k]], b);
        break;
      }
      default: break;
    }
  }
  *ph = h;
  *pw = w;
  *result = a;
  return STROP_OK;
}
/* ------------------------------------------------------------------ batches ---- */

static void ensure_perm(strop_batch_iter *it, int64_t epoch) {
  if (it->perm_epoch == epoch && it->perm_seed == it->seed) return;
  strop__rng r;
  strop__rng_seed(&r, mix64(it->seed ^ mix64((uint64_t)epoch)), 0x7368756666ULL);
  strop__rng_permutation(&r, it->n, it->perm);
  it->perm_epoch = epoch;
  it->perm_seed = it->seed;
}

static void set_rows(strop_tensor *t, int64_t rows) {
  t->dims[0] = rows;
  size_t per = 1;
  for (int i = 1; i < t->rank; i++) per *= (size_t)t->dims[i];
  t->numel = per * (size_t)rows;
}

/* Rows of the batch at (epoch, pos) in buffer b. */
static int64_t batch_rows(const strop_batch_iter *it, int64_t pos) {
  return it->end - pos < it->bs ? it->end - pos : it->bs;
}

/* The rows [*off, *off + *cnt) of the batch at pos that this iterator loads (its share, or
 * all of them); returns the batch's rows. */
static int64_t batch_share(const strop_batch_iter *it, int64_t pos, int64_t *off, int64_t *cnt) {
  int64_t rows = batch_rows(it, pos);
  *off = 0;
  *cnt = rows;
  if (it->share) it->share(it->share_ctx, rows, off, cnt);
  return rows;
}

/* Fills row r of buffer b with the sample at epoch position pos + r, using scratch sc.
 * The order (perm) must be ready. Allocates nothing but what decoding a file needs. */
/* Keeps sample j's px (c x h x w, the output of transforms [0, it->pre)) while the dataset's
 * cache budget lasts; another thread may have kept it first. Nothing when out of memory. */
static void keep_sample(const strop_batch_iter *it, int64_t j, int64_t c, int64_t h, int64_t w,
                        const float *px) {
  const size_t n = (size_t)(c * h * w), bytes = sizeof(kept) + n * sizeof(float);
  const strop_dataset *rt = strop__ds_root(it->ds);
  if (!strop__images_cache_charge(rt, bytes)) return;
  kept *k = strop__malloc(bytes);
  kept *expect = NULL;
  if (k) {
    *k = (kept){h, w, bytes};
    memcpy(k->px, px, n * sizeof(float));
  }
  if (!k || !atomic_compare_exchange_strong(&it->kept[j], &expect, k)) {
    strop__free(k);
    strop__images_cache_release(rt, bytes);
  }
}

/* Where the iterator keeps its samples' resized pixels (it->pre, it->kept): an image dataset
 * with a cache budget whose leading transforms draw nothing and resize or crop — those are the
 * same every epoch and cost a decode and a resize; kept, the decoded pixels are not. */
int strop__iter_keep_resized = 1;

static strop_status plan_kept(strop_batch_iter *it, const char *fn) {
  const strop_dataset *rt = strop__ds_root(it->ds);
  it->pre = 0;
  if (rt->kind != STROP__DS_IMAGES || !rt->img_cache || it->inplace || !strop__iter_keep_resized)
    return STROP_OK;
  int t = 0, resizes = 0;
  for (; t < it->nxf; t++) {
    const int ty = it->xf[t].type;
    if (ty != XF_SCALE && ty != XF_NORMALIZE && ty != XF_RESIZE && ty != XF_RESIZE_SHORT &&
        ty != XF_CENTER_CROP)
      break;
    resizes += ty != XF_SCALE && ty != XF_NORMALIZE;
  }
  if (!resizes) return STROP_OK;
  it->kept = strop__calloc((size_t)it->n, sizeof *it->kept);
  if (!it->kept) return STROP__NOMEM(fn);
  it->pre = t;
  return STROP_OK;
}

int64_t strop__batch_iter_cache_hits(const strop_batch_iter *it) {
  return atomic_load(&((strop_batch_iter *)it)->kept_hits);
}

static strop_status fill_row(const strop_batch_iter *it, int64_t epoch, int64_t pos, int b,
                             int64_t r, const scratch *sc) {
  const char *fn = "strop_batch_iter_next";
  int64_t j = (it->flags & STROP_ITER_SHUFFLE) ? it->perm[pos + r] : pos + r;
  float *xo = it->buf[b].x + (size_t)r * it->out_numel;
  float *yo = it->buf[b].y + (size_t)r * it->ds->tgt_numel;
  strop_status st;
  if (it->nxf == 0) return strop__ds_read(it->ds, fn, j, xo, yo);
  strop__rng rng;
  sample_rng(it, epoch, pos + r, &rng);
  int64_t d[STROP_MAX_RANK];
  int rank = strop__ds_sample_dims(it->ds, j, d);
  int64_t c = rank == 3 ? d[0] : 1, h = rank >= 2 ? d[rank - 2] : 1;
  int64_t w = rank >= 2 ? d[rank - 1] : (int64_t)it->ds->in_numel;
  float *res;
  /* a leading scale is applied as the samples are read: the same products, one pass less */
  int first = it->xf[0].type == XF_SCALE ? 1 : 0;
  float scale = first ? it->xf[0].a : 1.0f;
  if (it->inplace) {
    /* scale / normalize / flip / jitter only: work in the output row, no scratch copies */
    if ((st = strop__ds_read_scaled(it->ds, fn, j, xo, yo, scale, 1))) return st;
    return run_transforms(it, first, it->nxf, c, &h, &w, sc, xo, sc->s1, &rng, j, &res);
  }
  float *a = sc->s0, *t = sc->s1;
  const kept *k = it->kept ? atomic_load(&it->kept[j]) : NULL;
  if (k) { /* the leading transforms' output, kept from an earlier epoch */
    atomic_fetch_add(&((strop_batch_iter *)it)->kept_hits, 1);
    if ((st = strop__ds_read(it->ds, fn, j, NULL, yo))) return st;
    h = k->h;
    w = k->w;
    memcpy(a, k->px, (size_t)(c * h * w) * sizeof(float));
    first = it->pre;
  } else {
    if ((st = strop__ds_read_scaled(it->ds, fn, j, a, yo, scale, !it->kept))) return st;
    if (it->kept) {
      if ((st = run_transforms(it, first, it->pre, c, &h, &w, sc, a, t, &rng, j, &res)))
        return st;
      keep_sample(it, j, c, h, w, res);
      a = res;
      t = res == sc->s0 ? sc->s1 : sc->s0;
      first = it->pre;
    }
  }
  st = run_transforms(it, first, it->nxf, c, &h, &w, sc, a, t, &rng, j, &res);
  if (st) return st;
  if ((size_t)(c * h * w) != it->out_numel)
    return strop__err(STROP_E_INTERNAL, "%s: sample %lld came out %lld x %lld", fn, (long long)j,
                      (long long)h, (long long)w);
  memcpy(xo, res, it->out_numel * sizeof(float));
  return STROP_OK;
}

/* Names the file behind a failed sample of an image dataset (its sentence usually does). */
static strop_status row_error(const strop_batch_iter *it, strop_status st) {
  (void)it;
  return st;
}

/* Fills buffer b with the batch at (epoch, pos) on the calling thread. */
static strop_status fill_batch(strop_batch_iter *it, int64_t epoch, int64_t pos, int b,
                               int64_t *rows_out) {
  int64_t off, cnt, rows = batch_share(it, pos, &off, &cnt);
  if (it->flags & STROP_ITER_SHUFFLE) ensure_perm(it, epoch);
  for (int64_t r = 0; r < cnt; r++) { /* its own positions: the same draws as in the batch */
    strop_status st = fill_row(it, epoch, pos + off, b, r, &it->main_s);
    if (st) return row_error(it, st);
  }
  set_rows(it->buf[b].tx, cnt);
  set_rows(it->buf[b].ty, cnt);
  *rows_out = rows;
  return STROP_OK;
}

/* Sets the sequence length (dims[1]) of a [rows, T, ...] batch tensor. */
static void set_len(strop_tensor *t, int64_t len) {
  t->dims[1] = len;
  set_rows(t, t->dims[0]);
}

/* The token types of the batch's rows [off, off + cnt) at (epoch, pos) into buffer b. */
static void batch_types(strop_batch_iter *it, int64_t pos, int b, int64_t off, int64_t cnt) {
  const int64_t T = it->types_len;
  if (!T) return;
  float *k = it->buf[b].k;
  for (int64_t r = 0; r < cnt; r++) {
    int64_t j = (it->flags & STROP_ITER_SHUFFLE) ? it->perm[pos + off + r] : pos + off + r;
    (void)strop__ds_read_types(it->ds, j, k + r * T);
  }
  set_rows(it->buf[b].tk, cnt);
}

/* The padding masks (and token types) of the batch at (epoch, pos) in buffer b, on the calling
 * thread once its rows are filled (by this thread or the workers, which read no masks). With a
 * dataset that trims its batches (text datasets with STROP_PAD_LONGEST), the rows are then cut
 * to the longest row's last token: the inputs, the masks, the types and per-position targets
 * alike. */
static void batch_masks(strop_batch_iter *it, int64_t epoch, int64_t pos, int b, int64_t rows) {
  const int64_t T = it->mask_len;
  if (T || it->types_len) {
    if (it->flags & STROP_ITER_SHUFFLE) ensure_perm(it, epoch);
    int64_t off, cnt;
    (void)batch_share(it, pos, &off, &cnt);
    batch_types(it, pos, b, off, cnt);
  }
  if (!T) return;
  float *m = it->buf[b].m, *kt = it->types_len == T ? it->buf[b].k : NULL;
  /* every row's mask (they are cheap), so that a share is cut where the batch is */
  for (int64_t r = 0; r < rows; r++) {
    int64_t j = (it->flags & STROP_ITER_SHUFFLE) ? it->perm[pos + r] : pos + r;
    (void)strop__ds_read_mask(it->ds, j, m + r * T);
  }
  int64_t len = 1;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = T - 1; k >= len; k--)
      if (m[r * T + k] != 0.0f) {
        len = k + 1;
        break;
      }
  int64_t off, cnt;
  (void)batch_share(it, pos, &off, &cnt);
  if (off > 0) memmove(m, m + off * T, (size_t)(cnt * T) * sizeof *m);
  rows = cnt;
  set_rows(it->buf[b].tm, rows);
  if (!strop__ds_root(it->ds)->trim || it->out_rank != 1) return;
  const int per_pos = it->ds->tgt_rank == 1 && it->ds->tgt_dims[0] == T;
  float *x = it->buf[b].x, *y = it->buf[b].y;
  if (len < T)
    for (int64_t r = 1; r < rows; r++) {
      memmove(x + r * len, x + r * T, (size_t)len * sizeof *x);
      memmove(m + r * len, m + r * T, (size_t)len * sizeof *m);
      if (kt) memmove(kt + r * len, kt + r * T, (size_t)len * sizeof *kt);
      if (per_pos) memmove(y + r * len, y + r * T, (size_t)len * sizeof *y);
    }
  set_len(it->buf[b].tx, len);
  set_len(it->buf[b].tm, len);
  if (kt) set_len(it->buf[b].tk, len);
  if (per_pos) set_len(it->buf[b].ty, len);
}

typedef struct worker_arg {
  strop_batch_iter *it;
  int id;
} worker_arg;

/* A prefetch worker: claims rows of the queued batch one at a time; the one that finishes the
 * last row marks the job done. Every row's randomness comes from its own position, so the
 * batches do not depend on the number of workers. */
static void *worker_main(void *arg) {
  strop_batch_iter *it = ((worker_arg *)arg)->it;
  int id = ((worker_arg *)arg)->id;
  strop__free(arg);
  pthread_mutex_lock(&it->mu);
  for (;;) {
    while (!it->stop &&
           !((it->job == JOB_QUEUED || it->job == JOB_RUNNING) && it->job_claimed < it->job_rows))
      pthread_cond_wait(&it->cv, &it->mu);
    if (it->stop) break;
    if (it->job == JOB_QUEUED) {
      it->job = JOB_RUNNING;
      if (it->flags & STROP_ITER_SHUFFLE) ensure_perm(it, it->job_epoch);
    }
    int64_t r = it->job_claimed++, e = it->job_epoch, p = it->job_pos + it->job_off;
    int b = it->job_buf;
    int failed = it->job_st != STROP_OK;
    pthread_mutex_unlock(&it->mu);
    strop_status st = failed ? STROP_OK : fill_row(it, e, p, b, r, &it->ws[id]);
    pthread_mutex_lock(&it->mu);
    if (st && !it->job_st) {
      it->job_st = st;
      strncpy(it->job_msg, strop_last_error(), sizeof it->job_msg - 1);
      it->job_msg[sizeof it->job_msg - 1] = '\0';
    }
    if (++it->job_finished == it->job_rows) {
      if (!it->job_st) {
        set_rows(it->buf[b].tx, it->job_rows);
        set_rows(it->buf[b].ty, it->job_rows);
      }
      it->job = JOB_DONE;
      pthread_cond_broadcast(&it->cv);
    }
  }
  pthread_mutex_unlock(&it->mu);
  return NULL;
}

/* Waits until no worker runs a job and drops any queued or finished one. */
static void quiesce(strop_batch_iter *it) {
  if (!it->threaded) return;
  pthread_mutex_lock(&it->mu);
  while (it->job == JOB_RUNNING) pthread_cond_wait(&it->cv, &it->mu);
  it->job = JOB_NONE;
  pthread_mutex_unlock(&it->mu);
}

/* Queues the batch at (epoch, pos) into buffer b. Called with mu held. */
static void queue_job(strop_batch_iter *it, int64_t epoch, int64_t pos, int b) {
  it->job_epoch = epoch;
  it->job_pos = pos;
  it->job_buf = b;
  it->job_global = batch_share(it, pos, &it->job_off, &it->job_rows);
  it->job_claimed = it->job_finished = 0;
  it->job_st = STROP_OK;
  it->job = JOB_QUEUED;
  if (it->job_rows == 0) { /* an empty share: nothing for the workers to do */
    set_rows(it->buf[b].tx, 0);
    set_rows(it->buf[b].ty, 0);
    it->job = JOB_DONE;
  }
  pthread_cond_broadcast(&it->cv);
}

/* ------------------------------------------------------------------ public ---- */

strop_status strop_batch_iter_create(strop_dataset *ds, int64_t batch_size, uint64_t seed,
                                     int flags, strop_batch_iter **out) {
  const char *fn = "strop_batch_iter_create";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!ds) return strop__err(STROP_E_INVALID_ARG, "%s: ds is NULL", fn);
  if (batch_size < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: batch_size must be >= 1, got %lld", fn,
                      (long long)batch_size);
  if (flags & ~(STROP_ITER_SHUFFLE | STROP_ITER_DROP_LAST | STROP_ITER_PREFETCH))
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown flags 0x%x", fn, (unsigned)flags);
  if (ds->n < 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: the dataset has no samples (an empty subset, "
                      "split or class filter?)",
                      fn);
  if ((flags & STROP_ITER_DROP_LAST) && ds->n < batch_size)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: drop_last with batch_size %lld > dataset size %lld gives no batches",
                      fn, (long long)batch_size, (long long)ds->n);
  if (ds->in_rank >= STROP_MAX_RANK || ds->tgt_rank >= STROP_MAX_RANK)
    return strop__err(STROP_E_SHAPE, "%s: sample rank leaves no room for the batch axis", fn);
  strop_batch_iter *it = strop__calloc(1, sizeof *it);
  if (!it) return STROP__NOMEM(fn);
  it->ds = ds;
  it->bs = batch_size;
  it->n = ds->n;
  /* n / b rounded up without n + b - 1, which overflowed for a batch size near INT64_MAX */
  it->nb = (flags & STROP_ITER_DROP_LAST) ? ds->n / batch_size
                                          : ds->n / batch_size + (ds->n % batch_size != 0);
  it->end = (flags & STROP_ITER_DROP_LAST) ? it->nb * batch_size : ds->n;
  it->seed = seed;
  it->flags = flags;
  it->perm_epoch = -1;
  it->cur = 1;
  it->out_rank = ds->in_rank;
  memcpy(it->out_dims, ds->in_dims, sizeof it->out_dims);
  it->out_numel = it->max_numel = ds->in_numel;
  it->inplace = !ds->var_size;
  it->var = ds->var_size;
  if (it->var) it->out_dims[1] = it->out_dims[2] = 0;
  it->nworkers = 1;
  strop__ds_ref(ds);
  *out = it;
  return STROP_OK;
}

/* The largest stage (floats) and resize workspace of transforms [0, count) over every sample
 * size of the dataset (one size unless the images vary). */
static void plan_scratch(const strop_batch_iter *it, int count, size_t *max_numel,
                         size_t *max_work) {
  const strop_dataset *ds = it->ds;
  size_t mx = ds->in_numel, mw = 1;
  int64_t ns = ds->var_size ? ds->n : 1;
  for (int64_t i = 0; i < ns; i++) {
    int64_t d[STROP_MAX_RANK];
    int rank = strop__ds_sample_dims(ds, i, d);
    int64_t c = rank == 3 ? d[0] : 1, h = rank >= 2 ? d[rank - 2] : 1;
    int64_t w = rank >= 2 ? d[rank - 1] : (int64_t)ds->in_numel;
    for (int t = 0; t < count; t++) {
      const xform *x = &it->xf[t];
      int64_t oh, ow;
      xf_out_size(x, h, w, &oh, &ow);
      size_t need = 0;
      if (x->type == XF_RESIZE || x->type == XF_RESIZE_SHORT || x->type == XF_RRC)
        need = resize_work(c, h, w, oh, ow, x->mode);
      if (x->type == XF_JITTER) need = (size_t)(h * w);
      if (need > mw) mw = need;
      h = oh;
      w = ow;
      if ((size_t)(c * h * w) > mx) mx = (size_t)(c * h * w);
    }
  }
  *max_numel = mx;
  *max_work = mw;
}

static void scratch_free(scratch *sc) {
  strop__free(sc->s0);
  strop__free(sc->s1);
  strop__free(sc->work);
  memset(sc, 0, sizeof *sc);
}

static strop_status scratch_alloc(const strop_batch_iter *it, const char *fn, scratch *sc) {
  if (!it->nxf) return STROP_OK;
  sc->s0 = strop__malloc(it->max_numel * sizeof(float));
  sc->s1 = strop__malloc(it->max_numel * sizeof(float));
  sc->work = strop__malloc(it->max_work * sizeof(float));
  if (!sc->s0 || !sc->s1 || !sc->work) {
    scratch_free(sc);
    return STROP__NOMEM(fn);
  }
  return STROP_OK;
}

/* Stops and joins the first k workers. */
static void stop_workers(strop_batch_iter *it, int k) {
  pthread_mutex_lock(&it->mu);
  it->stop = 1;
  pthread_cond_broadcast(&it->cv);
  pthread_mutex_unlock(&it->mu);
  for (int i = 0; i < k; i++) pthread_join(it->th[i], NULL);
}

static strop_status start(strop_batch_iter *it, const char *fn) {
  strop_dataset *ds = it->ds;
  if (it->var) {
    int64_t a[3], b[3], k = 1;
    (void)strop__ds_sample_dims(ds, 0, a);
    for (; k < ds->n; k++) {
      (void)strop__ds_sample_dims(ds, k, b);
      if (b[1] != a[1] || b[2] != a[2]) break;
    }
    if (k == ds->n) k = 0, b[1] = a[1], b[2] = a[2];
    return strop__err(STROP_E_SHAPE,
                      "%s: the images differ in size (sample 0 is %lld x %lld, "
                      "sample %lld is %lld x %lld): add a resize to a fixed size, a centre crop "
                      "or a random resized crop before the first batch",
                      fn, (long long)a[2], (long long)a[1], (long long)k, (long long)b[2],
                      (long long)b[1]);
  }
  if (it->flags & STROP_ITER_SHUFFLE) {
    it->perm = strop__malloc((size_t)it->n * sizeof *it->perm);
    if (!it->perm) return STROP__NOMEM(fn);
  }
  plan_scratch(it, it->nxf, &it->max_numel, &it->max_work);
  strop_status sst = scratch_alloc(it, fn, &it->main_s);
  if (!sst) sst = plan_kept(it, fn);
  if (sst) return sst;
  /* no batch holds more rows than an epoch visits: a batch size above the dataset's size
   * costs nothing more than the dataset */
  int64_t rows = it->bs < it->end ? it->bs : it->end;
  size_t nx, ny;
  if (strop__mul_overflow((size_t)rows, it->out_numel * sizeof(float), &nx) ||
      strop__mul_overflow((size_t)rows, ds->tgt_numel * sizeof(float), &ny))
    return strop__err(STROP_E_SHAPE,
                      "%s: a batch of %lld samples of %zu values overflows the "
                      "size",
                      fn, (long long)rows, it->out_numel);
  nx = (size_t)rows * it->out_numel;
  ny = (size_t)rows * ds->tgt_numel;
  int64_t xd[STROP_MAX_RANK], yd[STROP_MAX_RANK];
  xd[0] = yd[0] = rows;
  memcpy(xd + 1, it->out_dims, (size_t)it->out_rank * sizeof *xd);
  if (ds->tgt_rank) memcpy(yd + 1, ds->tgt_dims, (size_t)ds->tgt_rank * sizeof *yd);
  it->mask_len = strop__ds_root(ds)->mask ? strop__ds_root(ds)->mask_len : 0;
  if (it->mask_len && (it->out_rank < 1 || it->out_dims[0] != it->mask_len))
    return strop__err(STROP_E_SHAPE,
                      "%s: the dataset's padding masks have %lld positions per "
                      "sample, its batches' inputs %lld (a reshape or a transform changed the "
                      "sequence)",
                      fn, (long long)it->mask_len,
                      (long long)(it->out_rank ? it->out_dims[0] : 0));
  it->types_len = strop__ds_root(ds)->types ? strop__ds_root(ds)->types_len : 0;
  if (it->types_len && (it->out_rank < 1 || it->out_dims[0] != it->types_len))
    return strop__err(STROP_E_SHAPE,
                      "%s: the dataset's token types have %lld positions per "
                      "sample, its batches' inputs %lld (a reshape or a transform changed the "
                      "sequence)",
                      fn, (long long)it->types_len,
                      (long long)(it->out_rank ? it->out_dims[0] : 0));
  for (int b = 0; b < ((it->flags & STROP_ITER_PREFETCH) ? 2 : 1); b++) {
    if (it->types_len) {
      const int64_t kd[2] = {rows, it->types_len};
      const size_t nk = (size_t)rows * (size_t)it->types_len;
      if (!(it->buf[b].k = strop__malloc_aligned(nk * sizeof(float)))) return STROP__NOMEM(fn);
      strop_status st = strop_tensor_wrap(it->buf[b].k, nk, 2, kd, &it->buf[b].tk);
      if (st) {
        strop__err_prefix("%s", fn);
        return st;
      }
    }
    if (it->mask_len) {
      const int64_t md[2] = {rows, it->mask_len};
      const size_t nm = (size_t)rows * (size_t)it->mask_len;
      if (!(it->buf[b].m = strop__malloc_aligned(nm * sizeof(float)))) return STROP__NOMEM(fn);
      strop_status st = strop_tensor_wrap(it->buf[b].m, nm, 2, md, &it->buf[b].tm);
      if (st) {
        strop__err_prefix("%s", fn);
        return st;
      }
    }
    it->buf[b].x = strop__malloc_aligned(nx * sizeof(float));
    it->buf[b].y = strop__malloc_aligned(ny * sizeof(float));
    if (!it->buf[b].x || !it->buf[b].y) return STROP__NOMEM(fn);
    strop_status st = strop_tensor_wrap(it->buf[b].x, nx, it->out_rank + 1, xd, &it->buf[b].tx);
    if (!st) st = strop_tensor_wrap(it->buf[b].y, ny, ds->tgt_rank + 1, yd, &it->buf[b].ty);
    if (st) {
      strop__err_prefix("%s", fn);
      return st;
    }
  }
  if (!(it->flags & STROP_ITER_PREFETCH)) {
    it->buf[1] = it->buf[0]; /* one buffer: both slots alias it */
    it->cur = 1;
  }
  if (it->flags & STROP_ITER_PREFETCH) {
    for (int k = 0; k < it->nworkers; k++) {
      strop_status st = scratch_alloc(it, fn, &it->ws[k]);
      if (st) return st;
    }
    if (pthread_mutex_init(&it->mu, NULL) != 0)
      return strop__err(STROP_E_INTERNAL, "%s: cannot create a mutex", fn);
    if (pthread_cond_init(&it->cv, NULL) != 0) {
      pthread_mutex_destroy(&it->mu);
      return strop__err(STROP_E_INTERNAL, "%s: cannot create a condition variable", fn);
    }
    int k = 0, oom = 0;
    for (; k < it->nworkers; k++) {
      worker_arg *wa = strop__malloc(sizeof *wa);
      if (!wa) {
        oom = 1;
        break;
      }
      wa->it = it;
      wa->id = k;
      if (pthread_create(&it->th[k], NULL, worker_main, wa) != 0) {
        strop__free(wa);
        break;
      }
    }
    if (k < it->nworkers) {
      stop_workers(it, k);
      it->stop = 0;
      pthread_cond_destroy(&it->cv);
      pthread_mutex_destroy(&it->mu);
      if (oom) return STROP__NOMEM(fn);
      return strop__err(STROP_E_INTERNAL, "%s: cannot start prefetch thread %d of %d", fn, k + 1,
                        it->nworkers);
    }
    it->threaded = 1;
  }
  it->started = 1;
  return STROP_OK;
}

static void release_buffers(strop_batch_iter *it) {
  int nbuf = (it->flags & STROP_ITER_PREFETCH) ? 2 : 1;
  for (int b = 0; b < nbuf; b++) {
    strop_tensor_free(it->buf[b].tx);
    strop_tensor_free(it->buf[b].ty);
    strop_tensor_free(it->buf[b].tm);
    strop_tensor_free(it->buf[b].tk);
    strop__free_aligned(it->buf[b].x);
    strop__free_aligned(it->buf[b].y);
    strop__free_aligned(it->buf[b].m);
    strop__free_aligned(it->buf[b].k);
  }
  memset(it->buf, 0, sizeof it->buf);
  it->last_mask = NULL;
  it->last_types = NULL;
  strop__free(it->perm);
  it->perm = NULL;
  if (it->kept) {
    const strop_dataset *rt = strop__ds_root(it->ds);
    for (int64_t j = 0; j < it->n; j++) {
      kept *k = atomic_load(&it->kept[j]);
      if (!k) continue;
      strop__images_cache_release(rt, k->bytes);
      strop__free(k);
    }
    strop__free((void *)it->kept);
    it->kept = NULL;
  }
  scratch_free(&it->main_s);
  for (int k = 0; k < MAX_WORKERS; k++) scratch_free(&it->ws[k]);
}

strop_status strop_batch_iter_next(strop_batch_iter *it, strop_tensor **inputs,
                                   strop_tensor **targets, int64_t *rows) {
  const char *fn = "strop_batch_iter_next";
  if (inputs) *inputs = NULL;
  if (targets) *targets = NULL;
  if (rows) *rows = 0;
  if (!it) return strop__err(STROP_E_INVALID_ARG, "%s: it is NULL", fn);
  it->last_mask = NULL;
  it->last_types = NULL;
  if (!it->started) {
    strop_status st = start(it, fn);
    if (st) {
      release_buffers(it);
      return st;
    }
  }
  if (it->pos >= it->end) {
    it->epoch++;
    it->pos = 0;
    return STROP_OK;
  }
  int b = -1;
  int64_t got = 0;
  strop_status st = STROP_OK;
  if (it->threaded) {
    pthread_mutex_lock(&it->mu);
    if (it->job != JOB_NONE && it->job_epoch == it->epoch && it->job_pos == it->pos) {
      while (it->job != JOB_DONE) pthread_cond_wait(&it->cv, &it->mu);
      b = it->job_buf;
      got = it->job_global;
      st = it->job_st;
      it->job = JOB_NONE;
      if (st) strop__err(st, "%s", it->job_msg);
    } else {
      while (it->job == JOB_RUNNING) pthread_cond_wait(&it->cv, &it->mu);
      it->job = JOB_NONE;
    }
    pthread_mutex_unlock(&it->mu);
  }
  if (b < 0 && !st) {
    b = 1 - it->cur;
    st = fill_batch(it, it->epoch, it->pos, b, &got);
  }
  if (st) return st;
  batch_masks(it, it->epoch, it->pos, b, got);
  it->cur = b;
  it->pos += got;
  if (it->threaded) {
    pthread_mutex_lock(&it->mu);
    queue_job(it, it->pos >= it->end ? it->epoch + 1 : it->epoch,
              it->pos >= it->end ? 0 : it->pos, 1 - b);
    pthread_mutex_unlock(&it->mu);
  }
  if (inputs) *inputs = it->buf[b].tx;
  if (targets) *targets = it->buf[b].ty;
  if (rows) *rows = got;
  it->last_mask = it->buf[b].tm;
  it->last_types = it->buf[b].tk;
  return STROP_OK;
}

const strop_tensor *strop_batch_iter_mask(const strop_batch_iter *it) {
  return it ? it->last_mask : NULL;
}

const strop_tensor *strop_batch_iter_token_types(const strop_batch_iter *it) {
  return it ? it->last_types : NULL;
}

int64_t strop_batch_iter_num_batches(const strop_batch_iter *it) { return it ? it->nb : -1; }

int strop_batch_iter_input_shape(const strop_batch_iter *it, int64_t *dims, int cap) {
  if (!it || (!dims && cap > 0)) return -1;
  for (int i = 0; i < it->out_rank && i < cap; i++) dims[i] = it->out_dims[i];
  return it->out_rank;
}

strop_status strop_batch_iter_get_state(const strop_batch_iter *it, int64_t *epoch,
                                        int64_t *position, int64_t *seed) {
  if (!it || !epoch || !position || !seed)
    return strop__err(STROP_E_INVALID_ARG, "strop_batch_iter_get_state: NULL argument");
  *epoch = it->epoch;
  *position = it->pos;
  *seed = (int64_t)it->seed;
  return STROP_OK;
}

strop_status strop_batch_iter_set_state(strop_batch_iter *it, int64_t epoch, int64_t position,
                                        int64_t seed) {
  const char *fn = "strop_batch_iter_set_state";
  if (!it) return strop__err(STROP_E_INVALID_ARG, "%s: it is NULL", fn);
  if (epoch < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: epoch must be >= 0, got %lld", fn,
                      (long long)epoch);
  if (position < 0 || position > it->n)
    return strop__err(STROP_E_INVALID_ARG, "%s: position %lld out of range [0, %lld]", fn,
                      (long long)position, (long long)it->n);
  quiesce(it);
  it->epoch = epoch;
  it->pos = position;
  it->seed = (uint64_t)seed;
  return STROP_OK;
}

void strop__batch_iter_set_share(strop_batch_iter *it, strop__batch_share_fn share,
                                 const void *ctx) {
  if (!it || (it->share == share && it->share_ctx == ctx)) return; /* keeps its prefetch */
  quiesce(it); /* a prefetched batch was the old share's */
  it->share = share;
  it->share_ctx = ctx;
}

void strop_batch_iter_free(strop_batch_iter *it) {
  if (!it) return;
  if (it->threaded) {
    stop_workers(it, it->nworkers);
    pthread_cond_destroy(&it->cv);
    pthread_mutex_destroy(&it->mu);
  }
  release_buffers(it);
  for (int t = 0; t < it->nxf; t++) {
    strop__free(it->xf[t].mean);
    strop__free(it->xf[t].std);
  }
  strop__free(it->xf);
  strop_dataset_free(it->ds);
  strop__free(it);
}

/* ------------------------------------------------------------------ transforms ---- */

/* Checks the iterator may still take transforms and that the current shape is an image;
 * gives its (c, h, w). */
static strop_status xf_begin(strop_batch_iter *it, const char *fn, int image, int64_t *c,
                             int64_t *h, int64_t *w) {
  if (!it) return strop__err(STROP_E_INVALID_ARG, "%s: it is NULL", fn);
  if (it->started)
    return strop__err(STROP_E_STATE, "%s: transforms must be added before the first batch", fn);
  if (it->out_rank == 3) {
    *c = it->out_dims[0];
    *h = it->out_dims[1]; /* 0 while the images differ in size */
    *w = it->out_dims[2];
  } else if (it->out_rank == 2) {
    *c = 1;
    *h = it->out_dims[0];
    *w = it->out_dims[1];
  } else {
    if (image)
      return strop__err(STROP_E_SHAPE,
                        "%s: image transforms need inputs of rank 2 (H, W) or 3 (C, H, W), got "
                        "rank %d (see strop_dataset_reshape)",
                        fn, it->out_rank);
    *c = 1;
    *h = 1;
    *w = (int64_t)it->out_numel;
  }
  return STROP_OK;
}

static strop_status xf_push(strop_batch_iter *it, const char *fn, const xform *x) {
  xform *nx = strop__realloc(it->xf, (size_t)(it->nxf + 1) * sizeof *nx);
  if (!nx) return STROP__NOMEM(fn);
  it->xf = nx;
  it->xf[it->nxf++] = *x;
  return STROP_OK;
}

/* Sets the output image size after a shape-changing transform. */
static void xf_set_out(strop_batch_iter *it, int64_t oh, int64_t ow) {
  if (it->out_rank == 3) {
    it->out_dims[1] = oh;
    it->out_dims[2] = ow;
  } else {
    it->out_dims[0] = oh;
    it->out_dims[1] = ow;
  }
  size_t c = it->out_rank == 3 ? (size_t)it->out_dims[0] : 1;
  it->out_numel = c * (size_t)oh * (size_t)ow;
  if (it->out_numel > it->max_numel) it->max_numel = it->out_numel;
  it->inplace = 0;
  it->var = 0;
}

strop_status strop_batch_iter_add_scale(strop_batch_iter *it, float factor) {
  const char *fn = "strop_batch_iter_add_scale";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 0, &c, &h, &w);
  if (st) return st;
  if (!isfinite(factor))
    return strop__err(STROP_E_INVALID_ARG, "%s: factor must be finite, got %g", fn,
                      (double)factor);
  xform x = {.type = XF_SCALE, .a = factor, .c = c};
  return xf_push(it, fn, &x);
}

strop_status strop_batch_iter_add_normalize(strop_batch_iter *it, int64_t channels,
                                            const float *mean, const float *std) {
  const char *fn = "strop_batch_iter_add_normalize";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 0, &c, &h, &w);
  if (st) return st;
  if (channels != c)
    return strop__err(STROP_E_SHAPE,
                      "%s: the inputs have %lld channel(s) here, got channels %lld", fn,
                      (long long)c, (long long)channels);
  if ((mean == NULL) != (std == NULL))
    return strop__err(STROP_E_INVALID_ARG, "%s: give both mean and std, or neither", fn);
  for (int64_t k = 0; std && k < c; k++)
    if (!(std[k] > 0.0f) || !isfinite(mean[k]) || !isfinite(std[k]))
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: channel %lld: std must be > 0 and finite, got "
                        "mean %g std %g",
                        fn, (long long)k, (double)mean[k], (double)std[k]);
  xform x = {.type = XF_NORMALIZE, .c = c};
  x.mean = strop__malloc((size_t)c * sizeof(float));
  x.std = strop__malloc((size_t)c * sizeof(float));
  if (!x.mean || !x.std) {
    st = STROP__NOMEM(fn);
    goto fail;
  }
  if (mean) {
    memcpy(x.mean, mean, (size_t)c * sizeof(float));
    memcpy(x.std, std, (size_t)c * sizeof(float));
  } else {
    /* statistics of the pipeline so far, random transforms drawn from a fixed seed */
    double *acc = strop__calloc((size_t)c * 2, sizeof *acc);
    scratch sc = {0};
    plan_scratch(it, it->nxf, &it->max_numel, &it->max_work);
    st = scratch_alloc(it, fn, &sc);
    if (!acc || st) {
      strop__free(acc);
      scratch_free(&sc);
      st = STROP__NOMEM(fn);
      goto fail;
    }
    double cnt = 0;
    for (int64_t i = 0; i < it->n && !st; i++) {
      st = strop__ds_read(it->ds, fn, i, sc.s0, NULL);
      if (st) break;
      strop__rng r;
      strop__rng_seed(&r, (uint64_t)i, 0x73746174ULL);
      int64_t d[STROP_MAX_RANK];
      int rank = strop__ds_sample_dims(it->ds, i, d);
      int64_t sh = rank >= 2 ? d[rank - 2] : 1;
      int64_t sw = rank >= 2 ? d[rank - 1] : (int64_t)it->ds->in_numel;
      float *p = NULL;
      st = run_transforms(it, 0, it->nxf, c, &sh, &sw, &sc, sc.s0, sc.s1, &r, i, &p);
      if (st) break;
      size_t plane = (size_t)(sh * sw);
      cnt += (double)plane;
      for (int64_t k = 0; k < c; k++) {
        double s = 0, s2 = 0;
        for (size_t q = 0; q < plane; q++) {
          double v = p[(size_t)k * plane + q];
          s += v;
          s2 += v * v;
        }
        acc[2 * k] += s;
        acc[2 * k + 1] += s2;
      }
    }
    if (!st) {
      for (int64_t k = 0; k < c; k++) {
        double m = acc[2 * k] / cnt, var = acc[2 * k + 1] / cnt - m * m;
        double sd = sqrt(var > 0 ? var : 0);
        x.mean[k] = (float)m;
        x.std[k] = sd > 1e-12 ? (float)sd : 1.0f; /* a constant channel is only centred */
      }
    }
    strop__free(acc);
    scratch_free(&sc);
    if (st) goto fail;
  }
  st = xf_push(it, fn, &x);
  if (st) goto fail;
  return STROP_OK;
fail:
  strop__free(x.mean);
  strop__free(x.std);
  return st;
}

strop_status strop_batch_iter_add_hflip(strop_batch_iter *it, float p) {
  const char *fn = "strop_batch_iter_add_hflip";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (!(p >= 0.0f && p <= 1.0f))
    return strop__err(STROP_E_INVALID_ARG, "%s: p must be in [0, 1], got %g", fn, (double)p);
  xform x = {.type = XF_HFLIP, .a = p, .c = c};
  return xf_push(it, fn, &x);
}

strop_status strop_batch_iter_add_random_crop(strop_batch_iter *it, int64_t height, int64_t width,
                                              int64_t padding) {
  const char *fn = "strop_batch_iter_add_random_crop";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (height < 1 || width < 1 || padding < 0 || padding > 1 << 20)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need height, width >= 1 and padding >= 0, got %lld x %lld pad %lld",
                      fn, (long long)height, (long long)width, (long long)padding);
  if (h > 0 && (height > h + 2 * padding || width > w + 2 * padding))
    return strop__err(STROP_E_SHAPE, "%s: crop %lld x %lld exceeds the padded image %lld x %lld",
                      fn, (long long)height, (long long)width, (long long)(h + 2 * padding),
                      (long long)(w + 2 * padding));
  xform x = {.type = XF_CROP, .c = c, .oh = height, .ow = width, .pad = padding};
  st = xf_push(it, fn, &x);
  if (!st) xf_set_out(it, height, width);
  return st;
}

strop_status strop_batch_iter_add_resize(strop_batch_iter *it, int64_t height, int64_t width,
                                         int mode) {
  const char *fn = "strop_batch_iter_add_resize";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (height < 1 || width < 1 || height > 1 << 16 || width > 1 << 16)
    return strop__err(STROP_E_INVALID_ARG, "%s: size must be in [1, 65536], got %lld x %lld", fn,
                      (long long)height, (long long)width);
  if (mode != STROP_RESIZE_NEAREST && mode != STROP_RESIZE_BILINEAR &&
      mode != STROP_RESIZE_BILINEAR_AA)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown mode %d", fn, mode);
  xform x = {.type = XF_RESIZE, .c = c, .oh = height, .ow = width, .mode = mode};
  st = xf_push(it, fn, &x);
  if (!st) xf_set_out(it, height, width);
  return st;
}

strop_status strop_batch_iter_add_resize_shorter(strop_batch_iter *it, int64_t size,
                                                 int64_t max_size, int mode) {
  const char *fn = "strop_batch_iter_add_resize_shorter";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (size < 1 || size > 1 << 16 || max_size < 0 || max_size > 1 << 16)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: size must be in [1, 65536] and max_size in "
                      "[0, 65536], got %lld and %lld",
                      fn, (long long)size, (long long)max_size);
  if (max_size > 0 && max_size <= size)
    return strop__err(STROP_E_INVALID_ARG, "%s: max_size %lld must be larger than size %lld", fn,
                      (long long)max_size, (long long)size);
  if (mode != STROP_RESIZE_NEAREST && mode != STROP_RESIZE_BILINEAR &&
      mode != STROP_RESIZE_BILINEAR_AA)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown mode %d", fn, mode);
  xform x = {.type = XF_RESIZE_SHORT, .c = c, .oh = size, .ow = max_size, .mode = mode};
  st = xf_push(it, fn, &x);
  if (st) return st;
  it->inplace = 0;
  if (h > 0) {
    int64_t oh, ow;
    xf_out_size(&x, h, w, &oh, &ow);
    xf_set_out(it, oh, ow);
  }
  return STROP_OK;
}

strop_status strop_batch_iter_add_center_crop(strop_batch_iter *it, int64_t height,
                                              int64_t width) {
  const char *fn = "strop_batch_iter_add_center_crop";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (height < 1 || width < 1 || height > 1 << 16 || width > 1 << 16)
    return strop__err(STROP_E_INVALID_ARG, "%s: size must be in [1, 65536], got %lld x %lld", fn,
                      (long long)height, (long long)width);
  xform x = {.type = XF_CENTER_CROP, .c = c, .oh = height, .ow = width};
  st = xf_push(it, fn, &x);
  if (!st) xf_set_out(it, height, width);
  return st;
}

strop_status strop_batch_iter_add_random_resized_crop(strop_batch_iter *it, int64_t height,
                                                      int64_t width, float scale_min,
                                                      float scale_max, float ratio_min,
                                                      float ratio_max, int mode) {
  const char *fn = "strop_batch_iter_add_random_resized_crop";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (height < 1 || width < 1 || height > 1 << 16 || width > 1 << 16)
    return strop__err(STROP_E_INVALID_ARG, "%s: size must be in [1, 65536], got %lld x %lld", fn,
                      (long long)height, (long long)width);
  if (!(scale_min > 0.0f && scale_min <= scale_max && scale_max <= 1.0f))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need 0 < scale_min <= scale_max <= 1, got %g "
                      "and %g",
                      fn, (double)scale_min, (double)scale_max);
  if (!(ratio_min > 0.0f && ratio_min <= ratio_max && isfinite(ratio_max)))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need 0 < ratio_min <= ratio_max (finite), got "
                      "%g and %g",
                      fn, (double)ratio_min, (double)ratio_max);
  if (mode != STROP_RESIZE_NEAREST && mode != STROP_RESIZE_BILINEAR &&
      mode != STROP_RESIZE_BILINEAR_AA)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown mode %d", fn, mode);
  xform x = {.type = XF_RRC,
             .c = c,
             .oh = height,
             .ow = width,
             .mode = mode,
             .p = {scale_min, scale_max, ratio_min, ratio_max}};
  st = xf_push(it, fn, &x);
  if (!st) xf_set_out(it, height, width);
  return st;
}

strop_status strop_batch_iter_add_color_jitter(strop_batch_iter *it, float brightness,
                                               float contrast, float saturation, float hue) {
  const char *fn = "strop_batch_iter_add_color_jitter";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (c != 1 && c != 3)
    return strop__err(STROP_E_SHAPE, "%s: colour jitter needs 1 or 3 channels, got %lld", fn,
                      (long long)c);
  if (!(brightness >= 0.0f && contrast >= 0.0f && saturation >= 0.0f && hue >= 0.0f &&
        isfinite(brightness) && isfinite(contrast) && isfinite(saturation) && hue <= 0.5f))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need brightness, contrast, saturation >= 0 and "
                      "hue in [0, 0.5], got %g %g %g %g",
                      fn, (double)brightness, (double)contrast, (double)saturation, (double)hue);
  xform x = {.type = XF_JITTER, .c = c, .p = {brightness, contrast, saturation, hue}};
  st = xf_push(it, fn, &x);
  if (!st) it->inplace = it->inplace && 1;
  return st;
}

strop_status strop_batch_iter_set_workers(strop_batch_iter *it, int workers) {
  const char *fn = "strop_batch_iter_set_workers";
  if (!it) return strop__err(STROP_E_INVALID_ARG, "%s: it is NULL", fn);
  if (it->started)
    return strop__err(STROP_E_STATE, "%s: set the workers before the first batch", fn);
  if (workers < 1 || workers > MAX_WORKERS)
    return strop__err(STROP_E_INVALID_ARG, "%s: workers must be in [1, %d], got %d", fn,
                      MAX_WORKERS, workers);
  if (!(it->flags & STROP_ITER_PREFETCH) && workers > 1)
    return strop__err(STROP_E_STATE,
                      "%s: workers prepare batches ahead: create the iterator "
                      "with STROP_ITER_PREFETCH",
                      fn);
  it->nworkers = workers;
  return STROP_OK;
}
