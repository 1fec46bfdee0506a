/* SPDX-License-Identifier: MIT */
/* strop — BF16 and int8 weights: conversions, and the BF16 x BF16 -> FP32 product on
 * AVX512_BF16 (vdpbf16ps; an int8 weight expanded to BF16 as its panels are packed). The
 * fallback is not here: a layer widens the weight to FP32 and runs the FP32 GEMM, so it gives
 * the bits of an FP32 model whose weights hold the same values. */
#include "ops/lowp.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__) && defined(__x86_64__)
#  include <cpuid.h>
#  include <sys/syscall.h>
#  include <unistd.h>
#endif

#include "core/core.h"
#include "ops/ops.h"

int strop__bf16_impl = 0;
int strop__bf16_amx = 1;
int strop__bf16_held_groups = 1;
int strop__int8_sweep = 1;
int strop__kn_slices = 1;
int strop__int8_pf = 1;
int strop__bf16_pack_groups = 1;

uint16_t strop__bf16_from_f32(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (uint16_t)strop__bf16_rne_bits(u);
}

float strop__bf16_to_f32(uint16_t h) { return strop__bf16_val(h); }

STROP__CLONES void strop__bf16_round_n(const float *x, uint16_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    out[i] = (uint16_t)strop__bf16_rne_bits(u);
  }
}

STROP__CLONES void strop__bf16_widen_n(const uint16_t *h, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const uint32_t u = (uint32_t)h[i] << 16;
    memcpy(&out[i], &u, sizeof u);
  }
}

/* strop__bf16_compact_par / _expand_par, n values */
STROP__CLONES static void compact_n(const float *x, uint16_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], sizeof u);
    const uint32_t r = strop__bf16_rne_bits(u), a = u & 0x7fffffffu;
    out[i] = (uint16_t)(a - 1u < 0x8000u ? ((u >> 16) & 0x8000u) | STROP__BF16_TINY : r);
  }
}

STROP__CLONES static void expand_n(const uint16_t *h, float *out, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = strop__bf16_held_val(h[i]);
}

/* runs of 64K values a task */
typedef struct conv_job {
  const void *src;
  void *dst;
  size_t n;
  int expand;
} conv_job;

static void conv_run(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *J = ctx;
  const size_t a = (size_t)lo << 16, b = (size_t)hi << 16 < J->n ? (size_t)hi << 16 : J->n;
  if (J->expand) expand_n((const uint16_t *)J->src + a, (float *)J->dst + a, b - a);
  else compact_n((const float *)J->src + a, (uint16_t *)J->dst + a, b - a);
}

void strop__bf16_compact_par(const float *x, uint16_t *out, size_t n) {
  conv_job J = {x, out, n, 0};
  strop__par_for((int64_t)((n + 0xffff) >> 16), 4, conv_run, &J);
}

void strop__bf16_expand_par(const uint16_t *h, float *out, size_t n) {
  conv_job J = {h, out, n, 1};
  strop__par_for((int64_t)((n + 0xffff) >> 16), 4, conv_run, &J);
}

/* strop__bf16_compact_centred_par, one row of l values around ctr */
STROP__CLONES static void compact_row_centred(const float *x, uint16_t *out, size_t l,
                                              float ctr) {
  for (size_t i = 0; i < l; i++) {
    const float d = x[i] - ctr;
    uint32_t u;
    memcpy(&u, &d, sizeof u);
    out[i] = (uint16_t)strop__bf16_rne_bits(u);
  }
}

/* rows of l values, per task a run of rows of about 64K values */
typedef struct centred_job {
  const float *src;
  uint16_t *dst;
  size_t rows, l, c, per;
  const float *centre;
} centred_job;

static void centred_run(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const centred_job *J = ctx;
  const size_t a = (size_t)lo * J->per,
               b = (size_t)hi * J->per < J->rows ? (size_t)hi * J->per : J->rows;
  for (size_t r = a; r < b; r++)
    compact_row_centred(J->src + r * J->l, J->dst + r * J->l, J->l, J->centre[r % J->c]);
}

void strop__bf16_compact_centred_par(const float *x, uint16_t *out, size_t rows, size_t l,
                                     size_t c, const float *centre) {
  centred_job J = {x, out, rows, l, c, 0, centre};
  J.per = l >= 0x10000 ? 1 : 0x10000 / (l ? l : 1);
  strop__par_for((int64_t)((rows + J.per - 1) / J.per), 4, centred_run, &J);
}

/* absmax / 127 over the n values x[0], x[stride], ... (0 when they are all zero) */
static float absmax_scale(const float *x, int64_t n, int64_t stride) {
  float a = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float v = fabsf(x[i * stride]);
    if (v > a) a = v;
  }
  return isfinite(a) ? a / 127.0f : 0.0f;
}

static int8_t quantize(float w, float scale) {
  if (!(scale > 0.0f)) return 0;
  float r = nearbyintf(w / scale);
  if (!(r == r)) r = 0.0f;
  return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
}

/* inputs per output channel of a rows x cols weight, and scales per output channel */
static int64_t lowp_inputs(const strop__lowp *q) { return q->scale_cols ? q->rows : q->cols; }
static int64_t lowp_groups(const strop__lowp *q) {
  const int64_t in = lowp_inputs(q);
  return q->group > 0 && q->group < in ? (in + q->group - 1) / q->group : 1;
}

int64_t strop__lowp_scales(const strop__lowp *q) {
  if (q->dtype != STROP__LOWP_INT8) return 0;
  return (q->scale_cols ? q->cols : q->rows) * lowp_groups(q);
}

/* the scale of W(r, c): its output channel's, of the group its input falls in */
static inline int64_t scale_at(const strop__lowp *q, int64_t ng, int64_t r, int64_t c) {
  const int64_t o = q->scale_cols ? c : r, i = q->scale_cols ? r : c;
  return o * ng + (ng > 1 ? i / q->group : 0);
}

int strop__lowp_make(strop__lowp *q, int dtype, const float *w, int64_t rows, int64_t cols,
                     int scale_cols, int64_t group) {
  const size_t n = (size_t)rows * (size_t)cols;
  strop__lowp t = {dtype, scale_cols, rows, cols, 0, NULL, NULL, 0};
  if (dtype == STROP__LOWP_BF16) {
    uint16_t *v = strop__malloc_aligned(n * sizeof *v + 1);
    if (!v) return -1;
    if (!scale_cols) strop__bf16_round_n(w, v, n);
    else /* stored [out, in]: v[c * rows + r] = W(r, c) */
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
          v[c * rows + r] = strop__bf16_from_f32(w[r * cols + c]);
    t.v = v;
  } else if (dtype == STROP__LOWP_INT8) {
    t.group = group > 0 ? group : 0;
    const int64_t ng = lowp_groups(&t), nout = scale_cols ? cols : rows, nin = lowp_inputs(&t);
    const int64_t gl = ng > 1 ? t.group : nin; /* inputs of a full group */
    int8_t *v = strop__malloc_aligned(n + 1);
    float *s = strop__malloc((size_t)(nout * ng) * sizeof *s + 1);
    if (!v || !s) {
      strop__free_aligned(v);
      strop__free(s);
      return -1;
    }
    /* output channel o's inputs i0 .. i0 + len - 1: strided down a column of W [in, out], along
     * a row of W [out, in] */
    for (int64_t o = 0; o < nout; o++)
      for (int64_t g = 0; g < ng; g++) {
        const int64_t i0 = g * gl, len = nin - i0 < gl ? nin - i0 : gl;
        s[o * ng + g] = scale_cols ? absmax_scale(w + i0 * cols + o, len, cols)
                                   : absmax_scale(w + o * cols + i0, len, 1);
      }
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        v[r * cols + c] = quantize(w[r * cols + c], s[scale_at(&t, ng, r, c)]);
    t.v = v;
    t.scale = s;
  } else {
    return -1;
  }
  *q = t;
  return 0;
}

size_t strop__bf16_panels_bytes(int64_t out, int64_t in) {
  return (size_t)((out + 31) / 32 * 32) * (size_t)((in + 31) / 32 * 32) * sizeof(uint16_t);
}

/* W(o, i) of a BF16 weight held in panels: output channel o, input i */
static inline uint16_t panel_at(const uint16_t *v, int64_t in, int64_t o, int64_t i) {
  const int64_t kh = (in + 31) / 32 * 16; /* pairs per row of a panel */
  return v[2 * ((o / 32 * kh + i / 2) * 32 + o % 32) + (i & 1)];
}

size_t strop__lowp_bytes(const strop__lowp *q) {
  const size_t n = (size_t)q->rows * (size_t)q->cols;
  if (q->dtype == STROP__LOWP_BF16 && q->panels)
    return strop__bf16_panels_bytes(q->scale_cols ? q->cols : q->rows, lowp_inputs(q));
  if (q->dtype == STROP__LOWP_BF16) return n * sizeof(uint16_t);
  if (q->dtype == STROP__LOWP_INT8) return n + (size_t)strop__lowp_scales(q) * sizeof(float);
  return 0;
}

int strop__lowp_copy(strop__lowp *dst, const strop__lowp *src) {
  strop__lowp t = *src;
  const size_t sb = src->scale ? (size_t)strop__lowp_scales(src) * sizeof(float) : 0;
  const size_t vb = strop__lowp_bytes(src) - sb;
  t.v = strop__malloc_aligned(vb + 1);
  t.scale = sb ? strop__malloc(sb) : NULL;
  if (!t.v || (sb && !t.scale)) {
    strop__free_aligned(t.v);
    strop__free(t.scale);
    return -1;
  }
  memcpy(t.v, src->v, vb);
  if (sb) memcpy(t.scale, src->scale, sb);
  *dst = t;
  return 0;
}

void strop__lowp_free(strop__lowp *q) {
  strop__free_aligned(q->v);
  strop__free(q->scale);
  memset(q, 0, sizeof *q);
}

void strop__lowp_expand(const strop__lowp *q, float *dst) {
  const size_t n = (size_t)q->rows * (size_t)q->cols;
  if (q->dtype == STROP__LOWP_BF16 && q->panels) {
    const int64_t in = lowp_inputs(q);
    for (int64_t r = 0; r < q->rows; r++)
      for (int64_t c = 0; c < q->cols; c++)
        dst[r * q->cols + c] = strop__bf16_to_f32(q->scale_cols ? panel_at(q->v, in, c, r)
                                                                : panel_at(q->v, in, r, c));
  } else if (q->dtype == STROP__LOWP_BF16 && !q->scale_cols) {
    strop__bf16_widen_n(q->v, dst, n);
  } else if (q->dtype == STROP__LOWP_BF16) {
    const uint16_t *v = q->v;
    for (int64_t r = 0; r < q->rows; r++)
      for (int64_t c = 0; c < q->cols; c++)
        dst[r * q->cols + c] = strop__bf16_to_f32(v[c * q->rows + r]);
  } else if (q->dtype == STROP__LOWP_INT8) {
    const int8_t *v = q->v;
    const int64_t ng = lowp_groups(q), gl = ng > 1 ? q->group : q->cols;
    for (int64_t r = 0; r < q->rows; r++) {
      const int8_t *vr = v + r * q->cols;
      float *dr = dst + r * q->cols;
      if (q->scale_cols) { /* W [in, out]: row r is input r, in group r / group of each column */
        const float *sr = q->scale + (ng > 1 ? r / q->group : 0);
        for (int64_t c = 0; c < q->cols; c++) dr[c] = (float)vr[c] * sr[c * ng];
      } else { /* W [out, in]: row r is output channel r, its groups along the row */
        const float *sr = q->scale + r * ng;
        for (int64_t c0 = 0, g = 0; c0 < q->cols; c0 += gl, g++) {
          const int64_t c1 = c0 + gl < q->cols ? c0 + gl : q->cols;
          for (int64_t c = c0; c < c1; c++) dr[c] = (float)vr[c] * sr[g];
        }
      }
    }
  }
}

typedef struct scratch {
  struct scratch *next;
  size_t cap;
  /* the buffer follows, 64-byte aligned */
} scratch;
enum { HDR = 64 };
static pthread_mutex_t g_scr_mu = PTHREAD_MUTEX_INITIALIZER;
static scratch *g_scr;

void *strop__lowp_scratch_take(size_t bytes) {
  pthread_mutex_lock(&g_scr_mu);
  /* the smallest buffer that is large enough, else the smallest one is replaced: products of
   * several sizes running one after another (a step's layers, a product taking two buffers)
   * then keep their buffers instead of freeing and mapping one at each call */
  scratch **pp = NULL, *s = NULL;
  for (scratch **q = &g_scr; *q; q = &(*q)->next)
    if (!pp || ((*q)->cap >= bytes) != ((*pp)->cap >= bytes) ? (*q)->cap >= bytes
                                                             : (*q)->cap < (*pp)->cap)
      pp = q;
  if (pp) {
    s = *pp;
    *pp = s->next;
  }
  pthread_mutex_unlock(&g_scr_mu);
  if (s && s->cap >= bytes) return (char *)s + HDR;
  strop__free_aligned(s);
  s = strop__malloc_aligned(HDR + bytes);
  if (!s) return NULL;
  s->cap = bytes;
  return (char *)s + HDR;
}

void strop__lowp_scratch_give(void *p) {
  if (!p) return;
  scratch *s = (scratch *)(void *)((char *)p - HDR);
  pthread_mutex_lock(&g_scr_mu);
  s->next = g_scr;
  g_scr = s;
  pthread_mutex_unlock(&g_scr_mu);
}

size_t strop__lowp_scratch_bytes(void) {
  size_t n = 0;
  pthread_mutex_lock(&g_scr_mu);
  for (const scratch *s = g_scr; s; s = s->next) n += HDR + s->cap;
  pthread_mutex_unlock(&g_scr_mu);
  return n;
}

__attribute__((destructor)) static void scratch_release(void) {
  pthread_mutex_lock(&g_scr_mu);
  while (g_scr) {
    scratch *s = g_scr;
    g_scr = s->next;
    strop__free_aligned(s);
  }
  pthread_mutex_unlock(&g_scr_mu);
}

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  include <immintrin.h>
#  define HAVE_DPBF16 1

static int g_env = -1; /* 1: STROP_BF16_FALLBACK is set (non-empty, not "0") */

int strop__bf16_dot_enabled(void) {
  if (strop__bf16_impl == 1) return 0;
  int e = __atomic_load_n(&g_env, __ATOMIC_RELAXED);
  if (e < 0) {
    const char *v = getenv("STROP_BF16_FALLBACK");
    e = v && *v && strcmp(v, "0") != 0;
    __atomic_store_n(&g_env, e, __ATOMIC_RELAXED);
  }
  return !e && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
}

/* 1 when this process may run the AMX tiles: the CPU has AMX-TILE and AMX-BF16, the OS saves
 * their state (XCR0 bits 17 and 18) and Linux granted the process the tile data
 * (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA), and STROP_BF16_AMX is not "0" */
static int g_amx;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

int strop__cpu_has_amx(void) {
#  if defined(__linux__)
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, NULL) < 7) return 0;
  __cpuid_count(7, 0, a, b, c, d);
  return (d & (1u << 22)) && (d & (1u << 24)); /* AMX-BF16, AMX-TILE */
#  else
  return 0;
#  endif
}

static void amx_probe(void) {
  const char *v = getenv("STROP_BF16_AMX");
  if (v && strcmp(v, "0") == 0) return;
#  if defined(__linux__)
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
  if (!strop__cpu_has_amx()) return;
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  if ((lo & (3u << 17)) != (3u << 17)) return; /* XTILECFG, XTILEDATA */
  g_amx = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#  endif
}

int strop__bf16_amx_runs(void) {
  if (!strop__bf16_amx || !strop__bf16_dot_enabled()) return 0;
  pthread_once(&g_amx_once, amx_probe);
  return g_amx;
}

#  define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#  include "ops/amxtile.h"
#  include "ops/bf16tile.h"

typedef struct bf16_job {
  int64_t m, n, k, ka, ldc;
  int b_kn; /* 0: B's element (j, kk) at b[j k + kk] (stored [n, k]); 1: at b[kk n + j] */
  int held; /* 1: b holds the weight in panels (strop__lowp.panels) */
  const uint16_t *a, *b;
  float beta;
  float *c;
  uint32_t *panels;     /* one KA/2 x 32 panel of B's pairs per chunk */
  const strop__lowp *q; /* the weight; int8: expanded to BF16 as its panels are packed */
  int64_t ng, gl;       /* int8: scales per output channel, inputs per scale */
  float *acc;           /* bf16_chunk_kslices: C's sums so far, [n / 32][acc_rows][32] */
  int amx;              /* 1: the AMX tile (strop__bf16_amx_runs), blocks of 32 rows */
  const float *colb;    /* NULL, or one value per column of C added first (the bias) */
} bf16_job;

enum { BNR = 32, BMR = 8, AMR = 32 };

/* C's rows a tile makes: 8 on vdpbf16ps, 32 on AMX */
static int64_t row_step(const bf16_job *J) { return J->amx ? AMR : BMR; }
/* m rounded up to whole blocks of 32 rows: A's rows and the sliced sums are allocated so (the
 * AMX tile reads and writes whole blocks) */
static int64_t rows32(int64_t m) { return (m + AMR - 1) / AMR * AMR; }

/* W(o, i): output channel o, input i (B's (j, kk) for _nt, (kk, j) for _nn), 0 past the edges;
 * an int8 weight's as the BF16 value nearest its FP32 value (float)q * scale */
static uint32_t w_at(const bf16_job *J, int64_t o, int64_t i) {
  const int64_t nout = J->b_kn ? J->k : J->n, nin = J->b_kn ? J->n : J->k;
  if (o >= nout || i >= nin) return 0;
  if (J->q->dtype == STROP__LOWP_INT8) {
    const int8_t *v = J->q->v;
    const float w = (float)v[J->q->scale_cols ? i * nout + o : o * nin + i] *
                    J->q->scale[o * J->ng + (J->ng > 1 ? i / J->gl : 0)];
    /* below the normal range a zero of its sign, as vcvtne2ps2bf16 (bf16tile.h) */
    return fabsf(w) < FLT_MIN ? strop__bf16_from_f32(copysignf(0.0f, w))
                              : strop__bf16_from_f32(w);
  }
  return J->held ? panel_at(J->b, nin, o, i) : J->b[o * nin + i];
}

/* B's columns j0 .. j0+31 as pairs along k: p[q * 32 + c] = B(2q, j0 + c) | B(2q + 1, j0 + c)
 * << 16, zero past n and k; so that one 32-bit broadcast of A's pair (2q, 2q + 1) against a row
 * of the panel is one vdpbf16ps for 16 columns. The element-wise reference for pack_panel (and
 * for a weight held in panels, whose _nt panels are then packed from it), which
 * strop__bf16_impl 2 runs (tests compare the two bit for bit). */
static void pack_panel_scalar(const bf16_job *J, int64_t j0, uint32_t *p) {
  for (int64_t q = 0; q < J->ka / 2; q++)
    for (int64_t c = 0; c < BNR; c++)
      p[q * BNR + c] = J->b_kn ? w_at(J, 2 * q, j0 + c) | w_at(J, 2 * q + 1, j0 + c) << 16
                               : w_at(J, j0 + c, 2 * q) | w_at(J, j0 + c, 2 * q + 1) << 16;
}

/* r[0 .. 7] (8 64-bit lanes each) transposed in place: r[j] lane i = old r[i] lane j (the
 * pattern of strop__transpose16, on 64-bit lanes) */
__attribute__((target("avx512f"))) static inline void transpose8_epi64(__m512i r[8]) {
  __m512i t[8];
  for (int i = 0; i < 4; i++) { /* t[2i] lane pair L: (r[2i].2L, r[2i+1].2L); t[2i+1] odd lanes */
    t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);
  }
  for (int s = 0; s < 2; s++) { /* s 0: the even lanes j, 1: the odd ones */
    const __m512i v0 = _mm512_shuffle_i64x2(t[s], t[2 + s], 0x88);
    const __m512i v1 = _mm512_shuffle_i64x2(t[s], t[2 + s], 0xdd);
    const __m512i w0 = _mm512_shuffle_i64x2(t[4 + s], t[6 + s], 0x88);
    const __m512i w1 = _mm512_shuffle_i64x2(t[4 + s], t[6 + s], 0xdd);
    r[0 + s] = _mm512_shuffle_i64x2(v0, w0, 0x88);
    r[4 + s] = _mm512_shuffle_i64x2(v0, w0, 0xdd);
    r[2 + s] = _mm512_shuffle_i64x2(v1, w1, 0x88);
    r[6 + s] = _mm512_shuffle_i64x2(v1, w1, 0xdd);
  }
}

/* _nn's panel from a weight held in _nt's panels: output channels 2q and 2q + 1 are neighbouring
 * lanes of a held panel row, so its 64-bit lane holds W(2q, i), W(2q, i + 1), W(2q + 1, i),
 * W(2q + 1, i + 1) for an even input i; the middle two swapped, that is _nn's pairs of columns i
 * and i + 1 of its row q. Per block of 32 output channels, the 16 held rows of inputs j0 ..
 * j0 + 31 (2 KB, contiguous) are read, swapped and transposed 8 x 8 on 64-bit lanes into _nn's
 * 16 rows of the block (2 KB, contiguous). Nothing to mask: the held panels are zero past both
 * edges and cover every row and column read. */
BF16_TARGET static void pack_panel_held_kn(const bf16_job *J, int64_t j0, int64_t b0, int64_t b1,
                                           uint32_t *p) {
  const int64_t kh = (J->n + 31) / 32 * 16; /* pairs per held row: the inputs are _nn's n */
  const uint32_t *w = (const uint32_t *)(const void *)J->b;
  const __m512i swap = _mm512_broadcast_i32x4(
      _mm_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15));
  for (int64_t blk = b0; blk < b1; blk++) {
    const uint32_t *src = w + (size_t)(blk * kh + j0 / 2) * BNR;
    uint32_t *dst = p + (size_t)(blk - b0) * 16 * BNR;
    for (int h = 0; h < 2; h++)     /* output channels 16 h .. 16 h + 15 of the block */
      for (int g = 0; g < 2; g++) { /* inputs j0 + 16 g .. j0 + 16 g + 15 */
        __m512i r[8];
        for (int i = 0; i < 8; i++)
          r[i] = _mm512_shuffle_epi8(_mm512_load_si512(src + (8 * g + i) * BNR + 16 * h), swap);
        transpose8_epi64(r);
        for (int l = 0; l < 8; l++) _mm512_store_si512(dst + (8 * h + l) * BNR + 16 * g, r[l]);
      }
  }
}

/* pack_panel_scalar's layout from an int8 weight, each value scaled and rounded to BF16 as it
 * is packed (bf16tile.h). The weight is stored in its own layout, so B [k, n] in memory
 * (two rows interleaved, as a BF16 B [k, n]) is W [in, out] for _nt and W [out, in] for _nn;
 * B [n, k] (a row's 32 values, 16 rows transposed 16 x 16) the other two. The lanes of a row
 * are output channels (scales loaded or gathered per run of inputs) or inputs of one channel
 * (its scale broadcast, or gathered where a run ends among them). */
BF16_TARGET static void pack_panel_int8(const bf16_job *J, int64_t j0, uint32_t *p) {
  const strop__lowp *q = J->q;
  const int8_t *v = q->v;
  const int64_t kp = J->ka / 2, nr = J->n - j0 < BNR ? J->n - j0 : BNR, ng = J->ng, gl = J->gl;
  const int lanes_out = !J->b_kn; /* B's columns j are output channels (_nt) or inputs (_nn) */
  if (J->b_kn != q->scale_cols) { /* B [k, n]: rows kk of n values */
    const __mmask16 mh[2] = {(__mmask16)strop__lanes32(nr), (__mmask16)strop__lanes32(nr - 16)};
    __m512 so[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}; /* lanes_out: run g's scales */
    strop__int8_runs ri[2];                                    /* else: the inputs' runs */
    int64_t g = -1, next = 0; /* lanes_out: the run of row kk (an input), where it ends */
    for (int h = 0; h < 2; h++) ri[h] = strop__int8_runs_at(ng, gl, j0 + 16 * h);
    for (int64_t qq = 0; qq < kp; qq++) {
      __m512 r[2][2]; /* [row 2qq + t][h], scaled */
      for (int t = 0; t < 2; t++) {
        const int64_t kk = 2 * qq + t;
        for (int h = 0; h < 2; h++) r[t][h] = _mm512_setzero_ps();
        if (kk >= J->k) continue;
        if (lanes_out && kk >= next) { /* rows go up one at a time: the runs in order */
          g = ng > 1 ? kk / gl : 0;
          next = ng > 1 ? (g + 1) * gl : J->k;
          for (int h = 0; h < 2; h++)
            so[h] = strop__int8_scales_out(q->scale, ng, g, j0 + 16 * h, mh[h]);
        }
        for (int h = 0; h < 2; h++) {
          if (!mh[h]) continue;
          const __m512 sc = lanes_out ? so[h] : strop__int8_scales_in(q->scale + kk * ng, &ri[h]);
          r[t][h] = strop__int8_scaled16(v + kk * J->n + j0 + 16 * h, mh[h], sc);
        }
      }
      for (int h = 0; h < 2; h++)
        _mm512_store_si512(p + qq * BNR + 16 * h, strop__bf16_pairs16(r[0][h], r[1][h]));
    }
    return;
  }
  /* B [n, k]: row j0 + c holds its k values contiguously */
  int64_t grow[BNR]; /* !lanes_out: the run of each row's input */
  for (int c = 0; c < BNR; c++) grow[c] = !lanes_out && ng > 1 ? (j0 + c) / gl : 0;
  for (int64_t q0 = 0; q0 < kp; q0 += 16) {
    const __mmask32 mk = strop__lanes32(J->k - 2 * q0);
    strop__int8_runs ri[2];
    __m512 so[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int t = 0; t < 2; t++) {
      const int64_t i0 = 2 * q0 + 16 * t;
      ri[t] = strop__int8_runs_at(lanes_out ? ng : 1, gl, i0);
      if (!lanes_out && ng <= 1)
        so[t] = strop__int8_scales_out(q->scale, 1, 0, i0, (__mmask16)(mk >> (16 * t)));
    }
    for (int h = 0; h < 2; h++) { /* rows j0 + 16 h .. j0 + 16 h + 15 */
      __m512i r[16];
      for (int c = 0; c < 16; c++) {
        const int64_t j = j0 + 16 * h + c;
        if (16 * h + c >= nr) {
          r[c] = _mm512_setzero_si512();
          continue;
        }
        __m512 s0, s1;
        if (lanes_out) {
          s0 = strop__int8_scales_in(q->scale + j * ng, &ri[0]);
          s1 = strop__int8_scales_in(q->scale + j * ng, &ri[1]);
        } else if (ng <= 1) {
          s0 = so[0];
          s1 = so[1];
        } else {
          s0 = strop__int8_scales_out(q->scale, ng, grow[16 * h + c], 2 * q0, (__mmask16)mk);
          s1 = strop__int8_scales_out(q->scale, ng, grow[16 * h + c], 2 * q0 + 16,
                                      (__mmask16)(mk >> 16));
        }
        r[c] = strop__int8_bf16_32(v + j * J->k + 2 * q0, mk, s0, s1);
      }
      strop__transpose16(r);
      for (int qq = 0; qq < 16; qq++) _mm512_store_si512(p + (q0 + qq) * BNR + 16 * h, r[qq]);
    }
  }
}

/* rows ahead that pack_group_int8_kn prefetches (8, 16 and 32 decoded a token alike) */
enum { INT8_PF = 16 };

/* pack_panel_int8's pairs [q0, q1) of panels [g0, g1) (pair qq of panel jb at p + (jb - g0)
 * stride + (qq - q0) 32) of an int8 weight stored as B [k, n] with one scale per output channel,
 * a row pair at a time across all of them: each row's int8 values read in order, 32 bytes a
 * panel, where a panel at a time down all k rows read 32 bytes of every n-byte row (a decoded
 * token's product, which packs every panel once for one row, ran at a quarter of the memory's
 * rate); the group's bytes of the rows INT8_PF below prefetched (strop__int8_pf). The same
 * values. */
BF16_TARGET static void pack_group_int8_kn(const bf16_job *J, int64_t g0, int64_t g1, int64_t q0,
                                           int64_t q1, size_t stride, uint32_t *p) {
  const strop__lowp *q = J->q;
  const int8_t *v = q->v;
  const int lanes_out = !J->b_kn; /* lanes are output channels (_nt) or inputs (_nn) */
  enum { MAXG = 64 };
  for (int64_t s0 = g0; s0 < g1; s0 += MAXG) {
    const int64_t s1 = s0 + MAXG < g1 ? s0 + MAXG : g1;
    __mmask16 mh[MAXG][2];
    __m512 so[MAXG][2];
    for (int64_t jb = s0; jb < s1; jb++) {
      const int64_t j0 = jb * BNR, nr = J->n - j0 < BNR ? J->n - j0 : BNR;
      for (int h = 0; h < 2; h++) {
        mh[jb - s0][h] = (__mmask16)strop__lanes32(nr - 16 * h);
        so[jb - s0][h] = lanes_out
                             ? strop__int8_scales_out(q->scale, 1, 0, j0 + 16 * h, mh[jb - s0][h])
                             : _mm512_setzero_ps();
      }
    }
    for (int64_t qq = q0; qq < q1; qq++) {
      __m512 sc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}; /* !lanes_out: rows' scales */
      for (int t = 0; t < 2 && !lanes_out; t++)
        if (2 * qq + t < J->k) sc[t] = _mm512_set1_ps(q->scale[2 * qq + t]);
      for (int64_t jb = s0; jb < s1; jb++) {
        const int64_t j0 = jb * BNR;
        uint32_t *d = p + (size_t)(jb - g0) * stride + (size_t)(qq - q0) * BNR;
        if (strop__int8_pf && (jb & 1) == 0 && 2 * qq + INT8_PF + 1 < J->k) {
          _mm_prefetch((const char *)(v + (2 * qq + INT8_PF) * J->n + j0), _MM_HINT_T0);
          _mm_prefetch((const char *)(v + (2 * qq + INT8_PF + 1) * J->n + j0), _MM_HINT_T0);
        }
        for (int h = 0; h < 2; h++) {
          __m512 r[2];
          for (int t = 0; t < 2; t++) {
            const int64_t kk = 2 * qq + t;
            r[t] = kk < J->k && mh[jb - s0][h]
                       ? strop__int8_scaled16(v + kk * J->n + j0 + 16 * h, mh[jb - s0][h],
                                              lanes_out ? so[jb - s0][h] : sc[t])
                       : _mm512_setzero_ps();
          }
          _mm512_store_si512(d + 16 * h, strop__bf16_pairs16(r[0], r[1]));
        }
      }
    }
  }
}

/* pack_panel's pairs [q0, q1) of panels [g0, g1) of a BF16 weight read in place as B [k, n]
 * (pair qq of panel jb at p + (jb - g0) stride + (qq - q0) 32), a row pair at a time across all
 * of them: each row's values read in order, 64 bytes a panel. The same values as pack_panel. */
BF16_TARGET static void pack_group_bf16_kn(const bf16_job *J, int64_t g0, int64_t g1, int64_t q0,
                                           int64_t q1, size_t stride, uint32_t *p) {
  for (int64_t qq = q0; qq < q1; qq++)
    for (int64_t jb = g0; jb < g1; jb++) {
      const int64_t j0 = jb * BNR, nr = J->n - j0 < BNR ? J->n - j0 : BNR;
      const __mmask32 mk = strop__lanes32(nr);
      __m512i w0 = _mm512_setzero_si512(), w1 = w0;
      if (2 * qq < J->k) w0 = _mm512_maskz_loadu_epi16(mk, J->b + 2 * qq * J->n + j0);
      if (2 * qq + 1 < J->k) w1 = _mm512_maskz_loadu_epi16(mk, J->b + (2 * qq + 1) * J->n + j0);
      uint32_t *d = p + (size_t)(jb - g0) * stride + (size_t)(qq - q0) * BNR;
      _mm512_store_si512(
          d, _mm512_or_si512(
                 _mm512_cvtepu16_epi32(_mm512_castsi512_si256(w0)),
                 _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(w1)), 16)));
      _mm512_store_si512(
          d + 16,
          _mm512_or_si512(
              _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w0, 1)),
              _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w1, 1)), 16)));
    }
}

/* pack_panel_scalar's layout, vectorised. B [n, k]: a row's pairs are its consecutive 32-bit
 * words, so 16 pairs of each of 32 rows are loaded (masked to k: an odd k's last pair reads no
 * further) and transposed 16 x 16 (strop__transpose16). B [k, n]: 32 values of each of two rows, zero-extended and
 * interleaved. */
BF16_TARGET static void pack_panel(const bf16_job *J, int64_t j0, uint32_t *p) {
  if (strop__bf16_impl == 2) {
    pack_panel_scalar(J, j0, p);
    return;
  }
  if (J->held) { /* _nt runs on the held panels themselves (bf16_chunk) */
    pack_panel_held_kn(J, j0, 0, J->ka / 32, p);
    return;
  }
  if (J->q->dtype == STROP__LOWP_INT8) {
    pack_panel_int8(J, j0, p);
    return;
  }
  const int64_t kp = J->ka / 2, nr = J->n - j0 < BNR ? J->n - j0 : BNR;
  if (J->b_kn) { /* one panel of the group packing */
    pack_group_bf16_kn(J, j0 / BNR, j0 / BNR + 1, 0, kp, (size_t)kp * BNR, p);
    return;
  }
  for (int64_t q0 = 0; q0 < kp; q0 += 16) { /* ka is a multiple of 32: kp of 16 */
    const __mmask32 mk = strop__lanes32(J->k - 2 * q0);
    for (int h = 0; h < 2; h++) { /* rows j0 + 16 h .. j0 + 16 h + 15 */
      __m512i r[16];
      for (int c = 0; c < 16; c++)
        r[c] = 16 * h + c < nr
                   ? _mm512_maskz_loadu_epi16(mk, J->b + (j0 + 16 * h + c) * J->k + 2 * q0)
                   : _mm512_setzero_si512();
      strop__transpose16(r);
      for (int q = 0; q < 16; q++) _mm512_store_si512(p + (q0 + q) * BNR + 16 * h, r[q]);
    }
  }
}

/* C rows i .. i + row_step - 1 (rows past m are not stored) x the panel's 32 columns: on
 * vdpbf16ps 16 accumulators, each lane summing its column's pairs in k order (FP32); on AMX the
 * tiles' sums (A's rows past m allocated: rows32) */
STROP__AMX_TARGET static void kernel_tile(const bf16_job *J, int64_t i, int64_t j0,
                                          const uint32_t *p) {
  const int64_t mr = J->m - i < row_step(J) ? J->m - i : row_step(J);
  const int64_t nr = J->n - j0 < BNR ? J->n - j0 : BNR;
  const uint32_t *a = (const uint32_t *)(const void *)(J->a +
                                                       i * J->ka); /* rows of ka / 2 pairs */
  const float *add = J->colb ? J->colb + j0 : NULL;
  const int opts = J->colb ? STROP__TILE_ADD_COLS : 0;
  float *c = J->c + i * J->ldc + j0;
  if (J->amx)
    strop__amx_tile_32x32(a, J->ka / 2, J->ka / 2, p, mr, nr, 1.0f, J->beta, add, 0, c, 32, c,
                          J->ldc, NULL, NULL, opts);
  else
    strop__bf16_tile_8x32_ex(a, J->ka / 2, 1, J->ka / 2, p, mr, nr, 1.0f, J->beta, add, 0, c, 32,
                             c, J->ldc, NULL, NULL, opts);
}

int strop__bf16_kslices = 2;

/* A's bytes past which a held weight's panels read in place run in groups (unless
 * strop__bf16_pack_groups: at every size), and a group's bytes */
enum { HG_A = 512 << 10, HG_B = 256 << 10 };

/* a chunk's words of panels: one panel, or a group of them (at most HG_B) */
static size_t chunk_words(int64_t ka) {
  const size_t panel = (size_t)(ka / 2) * BNR;
  return panel * sizeof(uint32_t) <= HG_B / 2 ? HG_B / sizeof(uint32_t) : panel;
}

/* k in slices of KS_BLOCKS blocks of 32 (512 pairs: a panel's slice 64 KB) where a held weight's
 * _nn panel passes KS_PANEL bytes */
enum { KS_BLOCKS = 32, KS_PANEL = 512 << 10 };
/* strop__bf16_kslices 2: slices of KW_BLOCKS blocks of 32 (256 of k) across up to KW_COLS
 * column blocks (a group of panels 384 KB, within a chunk's scratch: KS_PANEL is larger) */
enum { KW_BLOCKS = 8, KW_COLS = 24 };
static int kslices(int64_t ka) { return (size_t)ka / 2 * BNR * sizeof(uint32_t) > KS_PANEL; }
/* the rows of C's sums carried between slices of k (J->acc: [n / 32][acc_rows][32]): 16 for a
 * product of at most 16 rows (one AMX tile of rows, two tiles of vdpbf16ps), else m in whole
 * blocks of 32 */
static int64_t acc_rows(int64_t m) { return m <= 16 ? 16 : rows32(m); }
/* 1 where the weight is read as rows of n values of B [k, n] from its own storage: an int8
 * weight with one scale per output channel whose rows are B's, and a BF16 weight used in place
 * (not in panels, so stored [out, in]) in _nn. Such a product runs in slices of k on the AMX
 * tiles (strop__kn_slices); its scratch holds C's sums for that whatever the switches. */
static int kn_rows(const strop__lowp *q, int b_kn) {
  if (q->dtype == STROP__LOWP_INT8) return b_kn != q->scale_cols && lowp_groups(q) <= 1;
  return q->dtype == STROP__LOWP_BF16 && !q->panels && b_kn;
}
/* C's sums are carried for the held weights' k slices and for kn_rows' */
static int acc_kept(const strop__lowp *q, int b_kn, int64_t ka) {
  return kslices(ka) || kn_rows(q, b_kn);
}

/* acc (8 rows of 32 sums, stored whole; 32 rows on AMX) += rows a + r rs (on vdpbf16ps those
 * past mr read row mr - 1) times the panel p over kp pairs, from zero unless load:
 * strop__bf16_tile_8x32's sums in its order (strop__amx_acc_32x32's on AMX), carried between
 * calls in FP32 (stored and loaded exactly), so that k may come in slices */
STROP__AMX_TARGET static void tile_acc(int amx, const uint32_t *a, int64_t rs, int64_t kp,
                                       const uint32_t *p, int64_t mr, float *acc, int load) {
  if (amx) {
    strop__amx_acc_32x32(a, rs, kp, p, mr, acc, load);
    return;
  }
  const uint32_t *ar[8];
  for (int r = 0; r < 8; r++) ar[r] = a + (r < mr ? r : mr - 1) * rs;
  __m512 v[8][2];
  for (int r = 0; r < 8; r++) {
    v[r][0] = load ? _mm512_load_ps(acc + r * BNR) : _mm512_setzero_ps();
    v[r][1] = load ? _mm512_load_ps(acc + r * BNR + 16) : _mm512_setzero_ps();
  }
  for (int64_t q = 0; q < kp; q++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(p + q * BNR);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(p + q * BNR + 16);
    for (int r = 0; r < 8; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ar[r][q]);
      v[r][0] = _mm512_dpbf16_ps(v[r][0], av, b0);
      v[r][1] = _mm512_dpbf16_ps(v[r][1], av, b1);
    }
  }
  for (int r = 0; r < 8; r++) {
    _mm512_store_ps(acc + r * BNR, v[r][0]);
    _mm512_store_ps(acc + r * BNR + 16, v[r][1]);
  }
}

/* bf16_chunk for a held weight's _nn product whose panel would pass L2 (the LM head's input
 * gradient: k the 50257 words, a panel of 32 columns 3.2 MB, which every 8-row tile read from
 * L3), and on the AMX tiles for a weight read as rows of B [k, n] (kn_rows: int8, or BF16 in
 * place): column blocks [lo, hi) a slice of k at a time, each block's slice packed
 * (pack_panel_held_kn; pack_group_int8_kn or pack_group_bf16_kn across the group) and run by
 * every tile, whose sums wait in J->acc for the next slice; then C written once (+ C with beta)
 * as the tile writes it. The same bits. */
STROP__AMX_TARGET static void bf16_chunk_kslices(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const bf16_job *J = ctx;
  const int64_t kb = J->ka / 32, ar = acc_rows(J->m), step = row_step(J);
  if (J->amx) strop__amx_begin();
  const uint32_t *a = (const uint32_t *)(const void *)J->a; /* rows of ka / 2 pairs */
  if (!J->held) {
    /* kn_rows: slices of KW_BLOCKS blocks across as many column blocks as a chunk's scratch
     * holds (16 for k up to 2048: each row read in runs of 512 bytes of int8, 1 KB of BF16),
     * the group's rows packed a pair at a time */
    const int64_t sb = kb < KW_BLOCKS ? kb : KW_BLOCKS;
    const size_t cw = (size_t)sb * 16 * BNR;
    const int64_t cols = (int64_t)(chunk_words(J->ka) / cw);
    uint32_t *p = J->panels + (size_t)chunk * chunk_words(J->ka);
    for (int64_t g0 = lo; g0 < hi; g0 += cols) {
      const int64_t g1 = g0 + cols < hi ? g0 + cols : hi;
      for (int64_t b0 = 0; b0 < kb; b0 += sb) {
        const int64_t b1 = b0 + sb < kb ? b0 + sb : kb;
        if (J->q->dtype == STROP__LOWP_INT8)
          pack_group_int8_kn(J, g0, g1, b0 * 16, b1 * 16, cw, p);
        else pack_group_bf16_kn(J, g0, g1, b0 * 16, b1 * 16, cw, p);
        for (int64_t i = 0; i < J->m; i += step)
          for (int64_t jb = g0; jb < g1; jb++)
            tile_acc(J->amx, a + i * (J->ka / 2) + b0 * 16, J->ka / 2, (b1 - b0) * 16,
                     p + (size_t)(jb - g0) * cw, J->m - i < step ? J->m - i : step,
                     J->acc + ((size_t)jb * ar + i) * BNR, b0 > 0);
      }
    }
  } else if (strop__bf16_kslices == 2) {
    /* slices of KW_BLOCKS blocks, each block's rows for up to KW_COLS column blocks packed as
     * one run of up to 48 KB read in order (a column block at a time reads 2 KB runs 48 KB
     * apart, from memory: the LM head's input gradient then took ~22 ms of a GPT-2 LoRA step
     * more than when the same runs came from cache); every tile's slice of A (4 KB, in L1)
     * then runs against the group's panels (384 KB, in L2) */
    const size_t cw = (size_t)KW_BLOCKS * 16 * BNR; /* a column block's slice, in words */
    uint32_t *p = J->panels + (size_t)chunk * KW_COLS * cw;
    for (int64_t b0 = 0; b0 < kb; b0 += KW_BLOCKS) {
      const int64_t b1 = b0 + KW_BLOCKS < kb ? b0 + KW_BLOCKS : kb;
      for (int64_t g0 = lo; g0 < hi; g0 += KW_COLS) {
        const int64_t g1 = g0 + KW_COLS < hi ? g0 + KW_COLS : hi;
        for (int64_t blk = b0; blk < b1; blk++)
          for (int64_t jb = g0; jb < g1; jb++)
            pack_panel_held_kn(J, jb * BNR, blk, blk + 1,
                               p + (size_t)(jb - g0) * cw + (size_t)(blk - b0) * 16 * BNR);
        for (int64_t i = 0; i < J->m; i += step)
          for (int64_t jb = g0; jb < g1; jb++)
            tile_acc(J->amx, a + i * (J->ka / 2) + b0 * 16, J->ka / 2, (b1 - b0) * 16,
                     p + (size_t)(jb - g0) * cw, J->m - i < step ? J->m - i : step,
                     J->acc + ((size_t)jb * ar + i) * BNR, b0 > 0);
      }
    }
  } else {
    uint32_t *p = J->panels + (size_t)chunk * KS_BLOCKS * 16 * BNR;
    for (int64_t b0 = 0; b0 < kb; b0 += KS_BLOCKS) {
      const int64_t b1 = b0 + KS_BLOCKS < kb ? b0 + KS_BLOCKS : kb;
      for (int64_t jb = lo; jb < hi; jb++) {
        pack_panel_held_kn(J, jb * BNR, b0, b1, p);
        for (int64_t i = 0; i < J->m; i += step)
          tile_acc(J->amx, a + i * (J->ka / 2) + b0 * 16, J->ka / 2, (b1 - b0) * 16, p,
                   J->m - i < step ? J->m - i : step, J->acc + ((size_t)jb * ar + i) * BNR,
                   b0 > 0);
      }
    }
  }
  for (int64_t jb = lo; jb < hi; jb++) {
    const int64_t nr = J->n - jb * BNR < BNR ? J->n - jb * BNR : BNR;
    const __mmask16 m0 = (__mmask16)strop__lanes32(nr), m1 = (__mmask16)strop__lanes32(nr - 16);
    const __m512 b0 = J->colb ? _mm512_maskz_loadu_ps(m0, J->colb + jb * BNR)
                              : _mm512_setzero_ps();
    const __m512 b1 = J->colb ? _mm512_maskz_loadu_ps(m1, J->colb + jb * BNR + 16)
                              : _mm512_setzero_ps();
    for (int64_t i = 0; i < J->m; i++) {
      const float *s = J->acc + ((size_t)jb * ar + i) * BNR;
      float *c = J->c + i * J->ldc + jb * BNR;
      __m512 v0 = _mm512_load_ps(s), v1 = _mm512_load_ps(s + 16);
      if (J->colb) { /* as the tile adds it (STROP__TILE_ADD_COLS) */
        v0 = _mm512_add_ps(b0, v0);
        v1 = _mm512_add_ps(b1, v1);
      }
      if (J->beta != 0.0f) {
        v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), v0);
        v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), v1);
      }
      _mm512_mask_storeu_ps(c, m0, v0);
      if (m1) _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
  }
  if (J->amx) strop__amx_end();
}

static void bf16_chunk_tiles(const bf16_job *J, int64_t lo, int64_t hi, int chunk);

/* column blocks [lo, hi) of 32, the tiles configured around them where they run on AMX */
STROP__AMX_TARGET static void bf16_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const bf16_job *J = ctx;
  if (J->amx) strop__amx_begin();
  bf16_chunk_tiles(J, lo, hi, chunk);
  if (J->amx) strop__amx_end();
}

static void bf16_chunk_tiles(const bf16_job *J, int64_t lo, int64_t hi, int chunk) {
  uint32_t *p = J->panels + (size_t)chunk * chunk_words(J->ka);
  const int direct = J->held && !J->b_kn && strop__bf16_impl != 2;
  const size_t panel = (size_t)(J->ka / 2) * BNR * sizeof(uint32_t);
  /* each tile of A (8 rows, in L1) against a group's panels (in L2): the same tiles. Before
   * strop__bf16_pack_groups a tile and a panel both came from L2 where A fit there (the LM
   * head's 192-row chunks, 184 GFLOP/s against the blocks' 219), and packed panels went one
   * at a time (the input gradients, 192-206) */
  const int64_t g = panel <= HG_B / 2 ? (int64_t)(HG_B / panel) : 1;
  if ((g > 1 && direct && strop__bf16_held_groups &&
       (strop__bf16_pack_groups || (size_t)J->m * (size_t)J->ka * 2 > HG_A)) ||
      (!direct && strop__bf16_pack_groups)) {
    const uint32_t *w = (const uint32_t *)(const void *)J->b;
    for (int64_t g0 = lo; g0 < hi; g0 += g) {
      const int64_t g1 = g0 + g < hi ? g0 + g : hi;
      if (!direct && J->q->dtype == STROP__LOWP_INT8 && kn_rows(J->q, J->b_kn) &&
          strop__bf16_impl != 2 && strop__int8_sweep)
        pack_group_int8_kn(J, g0, g1, 0, J->ka / 2, (size_t)(J->ka / 2) * BNR, p);
      else if (!direct)
        for (int64_t jb = g0; jb < g1; jb++)
          pack_panel(J, jb * BNR, p + (size_t)(jb - g0) * (size_t)(J->ka / 2) * BNR);
      const uint32_t *pg = direct ? w + (size_t)g0 * (size_t)(J->ka / 2) * BNR : p;
      for (int64_t i = 0; i < J->m; i += row_step(J))
        for (int64_t jb = g0; jb < g1; jb++)
          kernel_tile(J, i, jb * BNR, pg + (size_t)(jb - g0) * (size_t)(J->ka / 2) * BNR);
    }
    return;
  }
  for (int64_t jb = lo; jb < hi; jb++) {
    const uint32_t *pp = p;
    if (direct)
      pp = (const uint32_t *)(const void *)J->b + (size_t)jb * (size_t)(J->ka / 2) * BNR;
    else pack_panel(J, jb * BNR, p);
    for (int64_t i = 0; i < J->m; i += row_step(J)) kernel_tile(J, i, jb * BNR, pp);
  }
}

/* the scratch with (kept) or without C's sums between slices of k */
static size_t gemm_scratch(int kept, int64_t m, int64_t n, int64_t k) {
  const size_t ka = (size_t)(k + 31) / 32 * 32;
  /* A's rows (whole blocks of 32: rows32), then bf16_chunk_kslices' sums of all of C, before
   * the panels */
  const size_t acc =
      kept ? (size_t)acc_rows(m) * (size_t)((n + BNR - 1) / BNR * BNR) * sizeof(float) : 0;
  return (size_t)rows32(m) * ka * sizeof(uint16_t) + acc +
         (size_t)(strop__num_threads() + 1) * chunk_words((int64_t)ka) * sizeof(uint32_t) + 64;
}

size_t strop__bf16_gemm_scratch(const strop__lowp *q, int nn, int64_t m, int64_t n, int64_t k) {
  return gemm_scratch(acc_kept(q, nn, (k + 31) / 32 * 32), m, n, k);
}

size_t strop__bf16_gemm_scratch_max(int64_t m, int64_t n, int64_t k) {
  return gemm_scratch(1, m, n, k);
}

/* A's rows [lo, hi) rounded to BF16, zero to ka */
typedef struct round_job {
  const float *a;
  int64_t lda, k, ka;
  uint16_t *abf;
} round_job;

static void round_rows(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const round_job *R = ctx;
  for (int64_t i = lo; i < hi; i++) {
    strop__bf16_round_n(R->a + i * R->lda, R->abf + i * R->ka, (size_t)R->k);
    for (int64_t t = R->k; t < R->ka; t++) R->abf[i * R->ka + t] = 0;
  }
}

static void bf16_gemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                      const strop__lowp *q, int b_kn, const float *colb, float beta, float *c,
                      int64_t ldc, void *work) {
  const int64_t ka = (k + 31) / 32 * 32;
  uint16_t *abf = work;
  const int threads = (double)m * (double)n * (double)k >= (double)(1 << 20)
                          ? strop__num_threads()
                          : 1;
  /* A rounded across threads too: on one, it was a serial pass before each product (0.9% of a
   * GPT-2 BF16 step at 2 threads, the other thread waiting) */
  round_job R = {a, lda, k, ka, abf};
  strop__par_run(strop__par_chunks(threads, m, (1 << 14) / ka + 1), m, round_rows, &R);
  /* the rows past m to a whole block of 32 are zero: the AMX tile reads them (their sums are
   * not stored) */
  memset(abf + (size_t)m * (size_t)ka, 0, (size_t)(rows32(m) - m) * (size_t)ka * sizeof *abf);
  /* the panels follow A's rows, 64-byte aligned (rows32(m) * ka * 2 is a multiple of 64); for
   * the slices of k (bf16_chunk_kslices), C's sums between them (a multiple of 64 bytes too) */
  float *acc = (float *)(void *)(abf + (size_t)rows32(m) * (size_t)ka);
  const size_t acc_n = acc_kept(q, b_kn, ka)
                           ? (size_t)acc_rows(m) * (size_t)((n + BNR - 1) / BNR * BNR)
                           : 0;
  bf16_job J = {m,
                n,
                k,
                ka,
                ldc,
                b_kn,
                q->panels,
                abf,
                q->v,
                beta,
                c,
                (uint32_t *)(void *)(acc + acc_n),
                q,
                1,
                0,
                acc,
                strop__bf16_amx_runs(),
                colb};
  if (q->dtype == STROP__LOWP_INT8) {
    J.ng = lowp_groups(q);
    J.gl = J.ng > 1 ? q->group : lowp_inputs(q);
  }
  /* in slices of k: a held weight's _nn whose panel passes KS_PANEL; on the AMX tiles, a weight
   * read as rows of B [k, n] (kn_rows: packed down all of k a panel group at a time, each row
   * read 64 to 160 bytes at a time, a 4 KB page of its own for every row of a BF16 weight of
   * 2048 inputs; the packing waited on the rows and the pages' translations) */
  const int sliced = strop__bf16_impl != 2 &&
                     ((b_kn && q->panels && q->dtype == STROP__LOWP_BF16 && kslices(ka) &&
                       strop__bf16_kslices) ||
                      (J.amx && kn_rows(q, b_kn) && strop__kn_slices &&
                       (q->dtype != STROP__LOWP_INT8 || strop__int8_sweep)));
  const int64_t blocks = (n + BNR - 1) / BNR;
  strop__par_run(strop__par_chunks(threads, blocks, 1), blocks,
                 sliced ? bf16_chunk_kslices : bf16_chunk, &J);
}

void strop__bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, void *work) {
  strop__gemm_observer_fn obs = strop__gemm_observer;
  const double t0 = obs ? strop__thread_cpu_now() : 0.0;
  bf16_gemm(m, n, k, a, lda, q, 0, NULL, beta, c, ldc, work);
  if (obs) obs(0, 1, m, n, k, 1.0f, 4, strop__thread_cpu_now() - t0);
}

void strop__bf16_gemm_nt_bias(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const strop__lowp *q, const float *bias, float *c, int64_t ldc,
                              void *work) {
  strop__gemm_observer_fn obs = strop__gemm_observer;
  const double t0 = obs ? strop__thread_cpu_now() : 0.0;
  bf16_gemm(m, n, k, a, lda, q, 0, bias, 0.0f, c, ldc, work);
  if (obs) obs(0, 1, m, n, k, 1.0f, 4, strop__thread_cpu_now() - t0);
}

void strop__bf16_gemm_nn(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, void *work) {
  strop__gemm_observer_fn obs = strop__gemm_observer;
  const double t0 = obs ? strop__thread_cpu_now() : 0.0;
  bf16_gemm(m, n, k, a, lda, q, 1, NULL, beta, c, ldc, work);
  if (obs) obs(0, 0, m, n, k, 1.0f, 4, strop__thread_cpu_now() - t0);
}

#else

int strop__bf16_dot_enabled(void) { return 0; }
int strop__bf16_amx_runs(void) { return 0; }
int strop__cpu_has_amx(void) { return 0; }
size_t strop__bf16_gemm_scratch(const strop__lowp *q, int nn, int64_t m, int64_t n, int64_t k) {
  (void)q, (void)nn, (void)m, (void)n, (void)k;
  return 0;
}
size_t strop__bf16_gemm_scratch_max(int64_t m, int64_t n, int64_t k) {
  (void)m, (void)n, (void)k;
  return 0;
}
void strop__bf16_gemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, void *work) {
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)q, (void)beta, (void)c, (void)ldc;
  (void)work;
}
void strop__bf16_gemm_nt_bias(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const strop__lowp *q, const float *bias, float *c, int64_t ldc,
                              void *work) {
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)q, (void)bias, (void)c, (void)ldc;
  (void)work;
}
void strop__bf16_gemm_nn(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                         const strop__lowp *q, float beta, float *c, int64_t ldc, void *work) {
  (void)m, (void)n, (void)k, (void)a, (void)lda, (void)q, (void)beta, (void)c, (void)ldc;
  (void)work;
}

#endif
