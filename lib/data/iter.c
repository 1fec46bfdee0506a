/* strop — the batch iterator: per-epoch orders that are pure functions of (seed, epoch),
 * per-sample transforms, and a double-buffered prefetch of the next batch on a worker thread. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "core/tensor_impl.h"
#include "data/data_impl.h"
#include "ops/resize.h"

enum { XF_SCALE = 1, XF_NORMALIZE, XF_HFLIP, XF_CROP, XF_RESIZE };

typedef struct xform {
  int type;
  float a;              /* scale factor, flip probability */
  int64_t c, h, w;      /* input image shape at this stage (c = 1 for rank 2) */
  int64_t oh, ow, pad;  /* output size (crop, resize), padding (crop) */
  int mode;             /* resize mode */
  float *mean, *std;    /* normalize: c values each */
} xform;

/* Job states of the prefetch worker. */
enum { JOB_NONE = 0, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

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
  int inplace; /* 1 while no transform changes the shape (no crop, no resize) */
  int out_rank;                 /* per-sample shape after transforms */
  int64_t out_dims[STROP_MAX_RANK];
  size_t out_numel, max_numel;  /* max_numel: largest stage, sizes the scratch */
  float *s0, *s1;

  struct {
    float *x, *y, *m;
    strop_tensor *tx, *ty, *tm;
  } buf[2];
  int cur;
  int64_t mask_len;             /* positions of a sample's padding mask; 0: no masks */
  const strop_tensor *last_mask; /* the mask of the batch last returned, or NULL */

  int threaded;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int job, stop;
  int64_t job_epoch, job_pos, job_rows;
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

/* Runs transforms [0, count) on one sample in s0 (shape of the dataset input); returns the
 * buffer holding the result (s0 or s1). */
static float *run_transforms(const strop_batch_iter *it, int count, float *s0, float *s1,
                             strop__rng *r) {
  float *a = s0, *b = s1;
  for (int t = 0; t < count; t++) {
    const xform *x = &it->xf[t];
    size_t plane = (size_t)(x->h * x->w), numel = (size_t)x->c * plane;
    switch (x->type) {
      case XF_SCALE:
        for (size_t k = 0; k < numel; k++) a[k] *= x->a;
        break;
      case XF_NORMALIZE:
        for (int64_t c = 0; c < x->c; c++) {
          float m = x->mean[c], inv = 1.0f / x->std[c];
          float *p = a + (size_t)c * plane;
          for (size_t k = 0; k < plane; k++) p[k] = (p[k] - m) * inv;
        }
        break;
      case XF_HFLIP:
        if (strop__rng_uniform(r) < x->a)
          for (size_t row = 0; row < (size_t)x->c * (size_t)x->h; row++) {
            float *p = a + row * (size_t)x->w;
            for (int64_t i = 0, j = x->w - 1; i < j; i++, j--) {
              float tmp = p[i];
              p[i] = p[j];
              p[j] = tmp;
            }
          }
        break;
      case XF_CROP: {
        int64_t ph = x->h + 2 * x->pad, pw = x->w + 2 * x->pad;
        int64_t top = (int64_t)strop__rng_below(r, (uint64_t)(ph - x->oh + 1));
        int64_t left = (int64_t)strop__rng_below(r, (uint64_t)(pw - x->ow + 1));
        for (int64_t c = 0; c < x->c; c++)
          for (int64_t y = 0; y < x->oh; y++) {
            int64_t sy = top + y - x->pad;
            float *d = b + (size_t)((c * x->oh + y) * x->ow);
            for (int64_t xx = 0; xx < x->ow; xx++) {
              int64_t sx = left + xx - x->pad;
              d[xx] = (sy >= 0 && sy < x->h && sx >= 0 && sx < x->w)
                          ? a[(size_t)((c * x->h + sy) * x->w + sx)]
                          : 0.0f;
            }
          }
        float *tmp = a;
        a = b;
        b = tmp;
        break;
      }
      case XF_RESIZE: {
        if (x->mode == STROP_RESIZE_BILINEAR)
          strop__resize_bilinear(a, x->c, x->h, x->w, b, x->oh, x->ow);
        else
          strop__resize_nearest(a, x->c, x->h, x->w, b, x->oh, x->ow);
        float *tmp = a;
        a = b;
        b = tmp;
        break;
      }
      default:
        break;
    }
  }
  return a;
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

/* Fills buffer b with the batch at (epoch, pos). Allocates nothing. */
static strop_status fill_batch(strop_batch_iter *it, int64_t epoch, int64_t pos, int b,
                               int64_t *rows_out) {
  const char *fn = "strop_batch_iter_next";
  int64_t rows = it->end - pos < it->bs ? it->end - pos : it->bs;
  if (it->flags & STROP_ITER_SHUFFLE) ensure_perm(it, epoch);
  float *x = it->buf[b].x, *y = it->buf[b].y;
  size_t tn = it->ds->tgt_numel;
  for (int64_t r = 0; r < rows; r++) {
    int64_t j = (it->flags & STROP_ITER_SHUFFLE) ? it->perm[pos + r] : pos + r;
    float *xo = x + (size_t)r * it->out_numel, *yo = y + (size_t)r * tn;
    strop_status st;
    if (it->nxf == 0) {
      st = strop__ds_read(it->ds, fn, j, xo, yo);
      if (st) return st;
    } else if (it->inplace) {
      /* scale / normalize / flip only: work in the output row, no scratch copies */
      st = strop__ds_read(it->ds, fn, j, xo, yo);
      if (st) return st;
      strop__rng rng;
      sample_rng(it, epoch, pos + r, &rng);
      (void)run_transforms(it, it->nxf, xo, NULL, &rng);
    } else {
      st = strop__ds_read(it->ds, fn, j, it->s0, yo);
      if (st) return st;
      strop__rng rng;
      sample_rng(it, epoch, pos + r, &rng);
      float *res = run_transforms(it, it->nxf, it->s0, it->s1, &rng);
      memcpy(xo, res, it->out_numel * sizeof(float));
    }
  }
  if (it->mask_len)
    for (int64_t r = 0; r < rows; r++) {
      int64_t j = (it->flags & STROP_ITER_SHUFFLE) ? it->perm[pos + r] : pos + r;
      (void)strop__ds_read_mask(it->ds, j, it->buf[b].m + r * it->mask_len);
    }
  set_rows(it->buf[b].tx, rows);
  set_rows(it->buf[b].ty, rows);
  if (it->mask_len) set_rows(it->buf[b].tm, rows);
  *rows_out = rows;
  return STROP_OK;
}

static void *worker_main(void *arg) {
  strop_batch_iter *it = arg;
  pthread_mutex_lock(&it->mu);
  for (;;) {
    while (!it->stop && it->job != JOB_QUEUED) pthread_cond_wait(&it->cv, &it->mu);
    if (it->stop) break;
    it->job = JOB_RUNNING;
    int64_t e = it->job_epoch, p = it->job_pos;
    int b = it->job_buf;
    pthread_mutex_unlock(&it->mu);
    int64_t rows = 0;
    strop_status st = fill_batch(it, e, p, b, &rows);
    pthread_mutex_lock(&it->mu);
    it->job_rows = rows;
    it->job_st = st;
    if (st) {
      strncpy(it->job_msg, strop_last_error(), sizeof it->job_msg - 1);
      it->job_msg[sizeof it->job_msg - 1] = '\0';
    }
    it->job = JOB_DONE;
    pthread_cond_broadcast(&it->cv);
  }
  pthread_mutex_unlock(&it->mu);
  return NULL;
}

/* Waits until the worker is not running a job and drops any queued or finished one. */
static void quiesce(strop_batch_iter *it) {
  if (!it->threaded) return;
  pthread_mutex_lock(&it->mu);
  while (it->job == JOB_RUNNING) pthread_cond_wait(&it->cv, &it->mu);
  it->job = JOB_NONE;
  pthread_mutex_unlock(&it->mu);
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
    return strop__err(STROP_E_INVALID_ARG, "%s: the dataset has no samples (an empty subset, "
                      "split or class filter?)", fn);
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
  it->nb = (flags & STROP_ITER_DROP_LAST) ? ds->n / batch_size
                                          : (ds->n + batch_size - 1) / batch_size;
  it->end = (flags & STROP_ITER_DROP_LAST) ? it->nb * batch_size : ds->n;
  it->seed = seed;
  it->flags = flags;
  it->perm_epoch = -1;
  it->cur = 1;
  it->out_rank = ds->in_rank;
  memcpy(it->out_dims, ds->in_dims, sizeof it->out_dims);
  it->out_numel = it->max_numel = ds->in_numel;
  it->inplace = 1;
  strop__ds_ref(ds);
  *out = it;
  return STROP_OK;
}

static strop_status start(strop_batch_iter *it, const char *fn) {
  strop_dataset *ds = it->ds;
  if (it->flags & STROP_ITER_SHUFFLE) {
    it->perm = strop__malloc((size_t)it->n * sizeof *it->perm);
    if (!it->perm) return STROP__NOMEM(fn);
  }
  if (it->nxf && !it->inplace) {
    it->s0 = strop__malloc(it->max_numel * sizeof(float));
    it->s1 = strop__malloc(it->max_numel * sizeof(float));
    if (!it->s0 || !it->s1) return STROP__NOMEM(fn);
  }
  /* no batch holds more rows than an epoch visits: a batch size above the dataset's size
   * costs nothing more than the dataset */
  int64_t rows = it->bs < it->end ? it->bs : it->end;
  size_t nx, ny;
  if (strop__mul_overflow((size_t)rows, it->out_numel * sizeof(float), &nx) ||
      strop__mul_overflow((size_t)rows, ds->tgt_numel * sizeof(float), &ny))
    return strop__err(STROP_E_SHAPE, "%s: a batch of %lld samples of %zu values overflows the "
                      "size", fn, (long long)rows, it->out_numel);
  nx = (size_t)rows * it->out_numel;
  ny = (size_t)rows * ds->tgt_numel;
  int64_t xd[STROP_MAX_RANK], yd[STROP_MAX_RANK];
  xd[0] = yd[0] = rows;
  memcpy(xd + 1, it->out_dims, (size_t)it->out_rank * sizeof *xd);
  if (ds->tgt_rank) memcpy(yd + 1, ds->tgt_dims, (size_t)ds->tgt_rank * sizeof *yd);
  it->mask_len = strop__ds_root(ds)->mask ? strop__ds_root(ds)->mask_len : 0;
  if (it->mask_len && (it->out_rank < 1 || it->out_dims[0] != it->mask_len))
    return strop__err(STROP_E_SHAPE, "%s: the dataset's padding masks have %lld positions per "
                      "sample, its batches' inputs %lld (a reshape or a transform changed the "
                      "sequence)", fn, (long long)it->mask_len,
                      (long long)(it->out_rank ? it->out_dims[0] : 0));
  for (int b = 0; b < ((it->flags & STROP_ITER_PREFETCH) ? 2 : 1); b++) {
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
    if (pthread_mutex_init(&it->mu, NULL) != 0)
      return strop__err(STROP_E_INTERNAL, "%s: cannot create a mutex", fn);
    if (pthread_cond_init(&it->cv, NULL) != 0) {
      pthread_mutex_destroy(&it->mu);
      return strop__err(STROP_E_INTERNAL, "%s: cannot create a condition variable", fn);
    }
    if (pthread_create(&it->th, NULL, worker_main, it) != 0) {
      pthread_cond_destroy(&it->cv);
      pthread_mutex_destroy(&it->mu);
      return strop__err(STROP_E_INTERNAL, "%s: cannot start the prefetch thread", fn);
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
    strop__free_aligned(it->buf[b].x);
    strop__free_aligned(it->buf[b].y);
    strop__free_aligned(it->buf[b].m);
  }
  memset(it->buf, 0, sizeof it->buf);
  it->last_mask = NULL;
  strop__free(it->perm);
  strop__free(it->s0);
  strop__free(it->s1);
  it->perm = NULL;
  it->s0 = it->s1 = NULL;
}

strop_status strop_batch_iter_next(strop_batch_iter *it, strop_tensor **inputs,
                                   strop_tensor **targets, int64_t *rows) {
  const char *fn = "strop_batch_iter_next";
  if (inputs) *inputs = NULL;
  if (targets) *targets = NULL;
  if (rows) *rows = 0;
  if (!it) return strop__err(STROP_E_INVALID_ARG, "%s: it is NULL", fn);
  it->last_mask = NULL;
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
      got = it->job_rows;
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
  it->cur = b;
  it->pos += got;
  if (it->threaded) {
    pthread_mutex_lock(&it->mu);
    it->job_epoch = it->pos >= it->end ? it->epoch + 1 : it->epoch;
    it->job_pos = it->pos >= it->end ? 0 : it->pos;
    it->job_buf = 1 - b;
    it->job = JOB_QUEUED;
    pthread_cond_broadcast(&it->cv);
    pthread_mutex_unlock(&it->mu);
  }
  if (inputs) *inputs = it->buf[b].tx;
  if (targets) *targets = it->buf[b].ty;
  if (rows) *rows = got;
  it->last_mask = it->buf[b].tm;
  return STROP_OK;
}

const strop_tensor *strop_batch_iter_mask(const strop_batch_iter *it) {
  return it ? it->last_mask : NULL;
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

void strop_batch_iter_free(strop_batch_iter *it) {
  if (!it) return;
  if (it->threaded) {
    pthread_mutex_lock(&it->mu);
    it->stop = 1;
    pthread_cond_broadcast(&it->cv);
    pthread_mutex_unlock(&it->mu);
    pthread_join(it->th, NULL);
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
    *h = it->out_dims[1];
    *w = it->out_dims[2];
  } else if (it->out_rank == 2) {
    *c = 1;
    *h = it->out_dims[0];
    *w = it->out_dims[1];
  } else {
    if (image)
      return strop__err(STROP_E_SHAPE,
                        "%s: image transforms need inputs of rank 2 (H, W) or 3 (C, H, W), got "
                        "rank %d (see strop_dataset_reshape)", fn, it->out_rank);
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
}

strop_status strop_batch_iter_add_scale(strop_batch_iter *it, float factor) {
  const char *fn = "strop_batch_iter_add_scale";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 0, &c, &h, &w);
  if (st) return st;
  if (!isfinite(factor))
    return strop__err(STROP_E_INVALID_ARG, "%s: factor must be finite, got %g", fn,
                      (double)factor);
  xform x = {.type = XF_SCALE, .a = factor, .c = c, .h = h, .w = w};
  return xf_push(it, fn, &x);
}

strop_status strop_batch_iter_add_normalize(strop_batch_iter *it, int64_t channels,
                                            const float *mean, const float *std) {
  const char *fn = "strop_batch_iter_add_normalize";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 0, &c, &h, &w);
  if (st) return st;
  if (channels != c)
    return strop__err(STROP_E_SHAPE, "%s: the inputs have %lld channel(s) here, got channels %lld",
                      fn, (long long)c, (long long)channels);
  if ((mean == NULL) != (std == NULL))
    return strop__err(STROP_E_INVALID_ARG, "%s: give both mean and std, or neither", fn);
  for (int64_t k = 0; std && k < c; k++)
    if (!(std[k] > 0.0f) || !isfinite(mean[k]) || !isfinite(std[k]))
      return strop__err(STROP_E_INVALID_ARG, "%s: channel %lld: std must be > 0 and finite, got "
                        "mean %g std %g", fn, (long long)k, (double)mean[k], (double)std[k]);
  xform x = {.type = XF_NORMALIZE, .c = c, .h = h, .w = w};
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
    float *s0 = strop__malloc(it->max_numel * sizeof(float));
    float *s1 = strop__malloc(it->max_numel * sizeof(float));
    if (!acc || !s0 || !s1) {
      strop__free(acc);
      strop__free(s0);
      strop__free(s1);
      st = STROP__NOMEM(fn);
      goto fail;
    }
    size_t plane = (size_t)(h * w);
    for (int64_t i = 0; i < it->n && !st; i++) {
      st = strop__ds_read(it->ds, fn, i, s0, NULL);
      if (st) break;
      strop__rng r;
      strop__rng_seed(&r, (uint64_t)i, 0x73746174ULL);
      const float *p = run_transforms(it, it->nxf, s0, s1, &r);
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
      double cnt = (double)it->n * (double)plane;
      for (int64_t k = 0; k < c; k++) {
        double m = acc[2 * k] / cnt, var = acc[2 * k + 1] / cnt - m * m;
        double sd = sqrt(var > 0 ? var : 0);
        x.mean[k] = (float)m;
        x.std[k] = sd > 1e-12 ? (float)sd : 1.0f; /* a constant channel is only centred */
      }
    }
    strop__free(acc);
    strop__free(s0);
    strop__free(s1);
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
  xform x = {.type = XF_HFLIP, .a = p, .c = c, .h = h, .w = w};
  return xf_push(it, fn, &x);
}

strop_status strop_batch_iter_add_random_crop(strop_batch_iter *it, int64_t height,
                                              int64_t width, int64_t padding) {
  const char *fn = "strop_batch_iter_add_random_crop";
  int64_t c = 1, h = 1, w = 1;
  strop_status st = xf_begin(it, fn, 1, &c, &h, &w);
  if (st) return st;
  if (height < 1 || width < 1 || padding < 0 || padding > 1 << 20)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need height, width >= 1 and padding >= 0, got %lld x %lld pad %lld",
                      fn, (long long)height, (long long)width, (long long)padding);
  if (height > h + 2 * padding || width > w + 2 * padding)
    return strop__err(STROP_E_SHAPE, "%s: crop %lld x %lld exceeds the padded image %lld x %lld",
                      fn, (long long)height, (long long)width, (long long)(h + 2 * padding),
                      (long long)(w + 2 * padding));
  xform x = {.type = XF_CROP, .c = c, .h = h, .w = w, .oh = height, .ow = width, .pad = padding};
  st = xf_push(it, fn, &x);
  if (!st) {
    xf_set_out(it, height, width);
    it->inplace = 0;
  }
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
  if (mode != STROP_RESIZE_NEAREST && mode != STROP_RESIZE_BILINEAR)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown mode %d", fn, mode);
  xform x = {.type = XF_RESIZE, .c = c, .h = h, .w = w, .oh = height, .ow = width, .mode = mode};
  st = xf_push(it, fn, &x);
  if (!st) {
    xf_set_out(it, height, width);
    it->inplace = 0;
  }
  return st;
}
