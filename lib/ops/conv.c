/* SPDX-License-Identifier: MIT */
/* strop — 2-D convolution by lowering to GEMM: im2col + strop__sgemm forward; backward dW by
 * GEMM with the recomputed columns, dX by GEMM into columns then col2im. 1x1 stride-1 convs
 * read and write the images directly (no columns); depthwise convs (a group per input
 * channel) run a direct stencil per plane; 3x3 stride-1 convs of enough channels run forward,
 * dX and dW as Winograd's batched GEMMs (winograd.h). In BF16 on vdpbf16ps the columns are
 * packed straight from the images, and a stride-1 conv's dX is the forward of dY with the
 * flipped weight (bf16_dx). */
#include "ops/conv.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ops/bf16gemm.h"
#include "ops/dense.h"
#include "ops/lowp.h"
#include "ops/ops.h"
#include "ops/winograd.h"

int64_t strop__conv_out_len(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  if (stride <= 0) return 0;
  int64_t span = in + 2 * pad - dil * (k - 1) - 1;
  if (span < 0) return 0;
  return span / stride + 1;
}

void strop__conv2d_out_size(strop__conv2d_dims *d) {
  d->oh = strop__conv_out_len(d->h, d->kh, d->sh, d->ph, d->dh);
  d->ow = strop__conv_out_len(d->w, d->kw, d->sw, d->pw, d->dw);
}

static int is_pointwise(const strop__conv2d_dims *d) {
  return d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
}

/* One group per input channel (MobileNet's 3x3 and 5x5 convs): a GEMM per group would be
 * 1 x P x kh kw, so these run the direct kernel below instead. Not with an epilogue (the
 * layer does not fuse one into a depthwise conv). */
int strop__conv_depthwise_direct = 1;

static int depthwise(const strop__conv2d_dims *d, const strop__conv2d_epilogue *ep) {
  return strop__conv_depthwise_direct && d->groups == d->c_in && d->groups > 1 &&
         (!ep || (!ep->relu && !ep->pool && !ep->res));
}

/* 3x3 stride-1 ungrouped convs of at least WINO_MIN_CHANNELS input and output channels (ResNet's
 * trunks; not the Fashion demo's 1->32 and 32->64, which keep their bits) whose output is at
 * least WINO_MIN_SIDE a side run the forward as Winograd F(4x4, 3x3). Below that side the tiles
 * cover the output poorly (7 x 7: 2 x 2 tiles, 64 values made for 49) and the transforms weigh
 * on few products: ResNet's last stage, 512 -> 512 at 7 x 7, ran 0.98x / 0.85x the lowered
 * forward at 1 / 2 threads and 0.75x / 0.69x its backward (`bench_conv resnet`). STROP_WINOGRAD
 * in the environment overrides that once per process: "0" never, "2" or "4" F(2x2, 3x3) or
 * F(4x4, 3x3) on every 3x3 stride-1 ungrouped conv. */
int strop__conv_winograd = -1;
enum { WINO_MIN_CHANNELS = 64, WINO_MIN_SIDE = 8 };

static int wino_env(void) {
  static int env = -2; /* -2: not read yet; -1 unset (or another value), 0, 2 or 4 */
  int e = __atomic_load_n(&env, __ATOMIC_RELAXED);
  if (e == -2) {
    const char *v = getenv("STROP_WINOGRAD");
    e = !v ? -1 : !strcmp(v, "0") ? 0 : !strcmp(v, "2") ? 2 : !strcmp(v, "4") ? 4 : -1;
    __atomic_store_n(&env, e, __ATOMIC_RELAXED);
  }
  return e;
}

/* The tile size m of the Winograd forward for d, or 0 for the lowered one; side: the smallest
 * output side on which it runs by default (WINO_MIN_SIDE in FP32) */
static int wino_m_side(const strop__conv2d_dims *d, int64_t side) {
  if (d->kh != 3 || d->kw != 3 || d->sh != 1 || d->sw != 1 || d->dh != 1 || d->dw != 1 ||
      d->groups != 1 || d->oh < 1 || d->ow < 1 || d->bf16)
    return 0;
  int s = strop__conv_winograd;
  if (s < 0) s = wino_env();
  if (s == 0 || s == 2 || s == 4) return s;
  return d->c_in >= WINO_MIN_CHANNELS && d->c_out >= WINO_MIN_CHANNELS && d->oh >= side &&
                 d->ow >= side
             ? 4
             : 0;
}
static int wino_m(const strop__conv2d_dims *d) { return wino_m_side(d, WINO_MIN_SIDE); }

/* Ungrouped lowered convs fold the bias into the GEMM: the columns get an extra row of ones
 * and the weight an extra column holding the bias (forward), and the bias gradient comes out
 * as the extra column of an augmented dW (backward). No separate pass over y or dy. */
static int fused_bias(const strop__conv2d_dims *d) { return d->groups == 1 && !is_pointwise(d); }

/* Scratch layout: a row of P ones (bias broadcast and bias gradient of the other convs go
 * through the GEMM), padded to 16 floats; the augmented weight [c_out, K + 1] (forward, fused
 * bias); then per chunk of images a column matrix with room for the extra row of ones and, in
 * the backward, that chunk's [dW | db] partial sum. */
static int64_t ones_len(const strop__conv2d_dims *d) { return (d->oh * d->ow + 15) / 16 * 16; }
static int64_t cols_len(const strop__conv2d_dims *d) {
  int64_t c = is_pointwise(d) ? 0 : (d->c_in * d->kh * d->kw + 1) * (d->oh * d->ow);
  return (c + 15) / 16 * 16;
}
static int64_t kdim(const strop__conv2d_dims *d) { return d->c_in / d->groups * d->kh * d->kw; }
/* [c_out, K + 1] for the fused layout; dW [c_out, K] then db [c_out] otherwise */
static int64_t part_len(const strop__conv2d_dims *d) {
  return (d->c_out * (kdim(d) + 1) + 15) / 16 * 16;
}

/* Per chunk, for an epilogue: the image's raw output before the pool (forward) or its
 * gradient (backward). */
static int64_t ep_len(const strop__conv2d_dims *d, int backward,
                      const strop__conv2d_epilogue *ep) {
  if (!ep || !(ep->pool || (backward && ep->relu))) return 0;
  return (d->c_out * d->oh * d->ow + 15) / 16 * 16;
}

/* ---- Winograd forward: scratch holds the transformed filters U [a^2, c_out, c_in] (a = m + 2),
 *      then per chunk the epilogue's area, the transformed tiles V [a^2, c_in, T] of a block
 *      of images, their products M [a^2, c_out, T] and the transforms' work rows ---- */

/* Tiles per block of images: enough columns for the a^2 GEMMs to run at speed. */
enum { WINO_TILES = 128 };

static int64_t r16(int64_t n) { return (n + 15) / 16 * 16; }

/* The stride between two of the a^2 planes of a transformed block (V, M, Y: the transforms
 * write or read all a^2 of them at once, a tile at a time): the plane rounded up to 16 floats,
 * plus 16 when that makes an even number of 64-byte lines. With c_in or c_out a multiple of
 * 64 and whole images of 2^k tiles (ResNet's 256 and 512 channels) a plane is a multiple of
 * 4 KiB, and all a^2 streams fell into the same L1 set; an odd number of lines spreads them
 * over the sets. Never decreasing in n, so a smaller last block fits where the full one
 * was counted. */
static int64_t wplane(int64_t n) {
  const int64_t p = r16(n);
  return (p / 16) % 2 ? p : p + 16;
}

/* Images per block: whole images up to WINO_TILES tiles, at most a chunk's share. */
static int64_t wino_block(const strop__conv2d_dims *d, int m, int chunks) {
  const int64_t tpi = strop__winograd_tiles(d, m), share = (d->n + chunks - 1) / chunks;
  int64_t nb = (WINO_TILES + tpi - 1) / tpi;
  if (nb > share) nb = share;
  return nb < 1 ? 1 : nb;
}
static int64_t wino_u_len(const strop__conv2d_dims *d, int m) {
  return r16((int64_t)(m + 2) * (m + 2) * d->c_out * d->c_in);
}
static int64_t wino_v_len(const strop__conv2d_dims *d, int m, int chunks) {
  return (int64_t)(m + 2) * (m + 2) *
         wplane(d->c_in * wino_block(d, m, chunks) * strop__winograd_tiles(d, m));
}
static int64_t wino_m_len(const strop__conv2d_dims *d, int m, int chunks) {
  return (int64_t)(m + 2) * (m + 2) *
         wplane(d->c_out * wino_block(d, m, chunks) * strop__winograd_tiles(d, m));
}
static int64_t wino_chunk_len(const strop__conv2d_dims *d, int m, int chunks,
                              const strop__conv2d_epilogue *ep) {
  return ep_len(d, 0, ep) + wino_v_len(d, m, chunks) + wino_m_len(d, m, chunks) +
         r16((int64_t)strop__winograd_work_floats(d, m));
}

/* Transformed filters of at least this many floats (ResNet-50's 512-channel 3x3 convs: 37.7 MB,
 * in every step's scratch at the step's peak) are made a row of m + 2 planes at a time: the
 * a^2 products run a row after another (each the product the whole filters ran), the filters
 * of the next row written over the last, and every chunk's tiles V and products M stay in its
 * area from the first row to the last (its images are one block). The same bits, a sixth of
 * the filters' memory. */
enum { WINO_ROWS_MIN = 1 << 22 };
int strop__conv_wino_rows = 1;

/* 1 when d's Winograd forward runs its filters a row at a time (above). */
static int wino_rows(const strop__conv2d_dims *d, int m, int chunks) {
  const int64_t share = (d->n + chunks - 1) / chunks;
  return strop__conv_wino_rows && m && wino_u_len(d, m) >= WINO_ROWS_MIN &&
         wino_block(d, m, chunks) >= share;
}
/* the filters held: all of them, or one row */
static int64_t wino_u_held(const strop__conv2d_dims *d, int m, int chunks) {
  return wino_rows(d, m, chunks) ? r16((int64_t)(m + 2) * d->c_out * d->c_in) : wino_u_len(d, m);
}

/* The input gradient of a stride-1 conv is the forward of another: dx = conv(dy, w'), w'
 * [c_in, c_out] the filters rotated by 180 degrees and transposed, padding d (k - 1) - p (so
 * the output is [h, w] again; 2 - p for a 3x3). Run through Winograd like the forward where it
 * applies and p <= 2, and on vdpbf16ps as the BF16 forward runs (bf16_dx). */
static strop__conv2d_dims dx_dims(const strop__conv2d_dims *d) {
  strop__conv2d_dims e = *d;
  e.c_in = d->c_out;
  e.c_out = d->c_in;
  e.h = d->oh;
  e.w = d->ow;
  e.ph = d->dh * (d->kh - 1) - d->ph;
  e.pw = d->dw * (d->kw - 1) - d->pw;
  e.oh = d->h;
  e.ow = d->w;
  return e;
}
static int wino_dx_m(const strop__conv2d_dims *d) {
  return d->ph <= 2 && d->pw <= 2 ? wino_m(d) : 0;
}
/* the backward's per-chunk Winograd areas (V, M, work of the input gradient's conv) */
static int64_t wino_dx_len(const strop__conv2d_dims *d, int m, int chunks) {
  const strop__conv2d_dims e = dx_dims(d);
  return wino_chunk_len(&e, m, chunks, NULL);
}

/* The weight gradient of the same convs is F(3x3, m x m) (winograd.h): per block of images, the
 * input patches and the dy tiles transformed (split over the images), then the a^2 products
 * M_xi += Y_xi V_xi^T, [c_out x tiles] [tiles x c_in], summed over the blocks in order (split
 * over xi), and once the batch is in, dW += G^T M G (split over the output channels). No sum
 * depends on the split, so dW has the same bits at any thread count. db is the sum of the
 * transformed tiles' (1, 1) entry, which A makes the sum of the tile. Scratch: M
 * [a^2, c_out, c_in], a block's V [a^2, c_in, T] and Y [a^2, c_out, T], and per chunk the
 * epilogue's area and the transforms' work rows. */
enum { WINO_DW_TILES = 512 };

/* Images per block: at least WINO_DW_TILES tiles (the products' inner dimension), a multiple
 * of the chunks so the transforms split evenly, at most the batch. */
static int64_t wino_dw_block(const strop__conv2d_dims *d, int m, int chunks) {
  const int64_t tpi = strop__winograd_tiles(d, m);
  int64_t nb = (WINO_DW_TILES + tpi - 1) / tpi;
  nb = (nb + chunks - 1) / chunks * chunks;
  if (nb > d->n) nb = d->n;
  return nb < 1 ? 1 : nb;
}
static int64_t wino_dw_chunk_len(const strop__conv2d_dims *d, int m,
                                 const strop__conv2d_epilogue *ep) {
  return ep_len(d, 1, ep) + r16((int64_t)strop__winograd_work_floats(d, m));
}
/* M is as large as the forward's filters: where it is at least WINO_ROWS_MIN floats and the
 * batch is one block of images (the 7 x 7 stage), the products and G^T M G run a block of output
 * channels at a time, M held for WINO_DW_FLOATS at most, each block's product on the path the
 * whole one takes (strop__sgemm_rows: the same bits). Output channels per block: */
enum { WINO_DW_FLOATS = 1 << 20 };
static int64_t wino_dw_rows(const strop__conv2d_dims *d, int m, int chunks) {
  const int64_t a2 = (int64_t)(m + 2) * (m + 2);
  if (!strop__conv_wino_rows || a2 * d->c_out * d->c_in < WINO_ROWS_MIN ||
      wino_dw_block(d, m, chunks) < d->n)
    return d->c_out;
  const int64_t r = WINO_DW_FLOATS / (a2 * d->c_in) / 8 * 8;
  return r < 8 ? 8 : r > d->c_out ? d->c_out : r;
}
static int64_t wino_dw_len(const strop__conv2d_dims *d, int m, int chunks,
                           const strop__conv2d_epilogue *ep) {
  const int64_t a2 = (int64_t)(m + 2) * (m + 2),
                T = wino_dw_block(d, m, chunks) * strop__winograd_tiles(d, m);
  return a2 * (wplane(wino_dw_rows(d, m, chunks) * d->c_in) + wplane(d->c_in * T) +
               wplane(d->c_out * T)) +
         chunks * wino_dw_chunk_len(d, m, ep);
}

/* The FP32 lowered forward batches small images: where the weight is the larger operand (more
 * output channels than an image has positions: ResNet's 14x14 and 7x7 stages), a product per
 * image would pack the whole weight for a few columns (and run the GEMM's narrow edge kernels),
 * so a block of nb images' columns lie side by side, [K (+ 1), nb P], one product per block
 * into [c_out, nb P], then each image's rows are copied out. Ungrouped convs; nb 1 elsewhere,
 * the per-image path with its bits (the Fashion demo's convs have fewer channels than
 * positions). */
int strop__conv_batch = 1;

static int64_t f32_block(const strop__conv2d_dims *d, int chunks) {
  const int64_t P = d->oh * d->ow;
  if (!strop__conv_batch || d->groups != 1 || P <= 0 || d->c_out <= P) return 1;
  const int64_t share = (d->n + chunks - 1) / chunks;
  int64_t nb = (d->c_out + P - 1) / P;
  if (nb > share) nb = share;
  return nb < 1 ? 1 : nb;
}
/* the forward's per-chunk columns: a batched block's columns and products, or one image's */
static int64_t fwd_cols_len(const strop__conv2d_dims *d, int chunks) {
  const int64_t nb = f32_block(d, chunks), L = nb * d->oh * d->ow;
  return nb == 1 ? cols_len(d) : r16((kdim(d) + 1) * L) + r16(d->c_out * L);
}

/* The FP32 lowered backward of the same convs (more output channels than an image has
 * positions, not Winograd's) runs blocks of images as well, and splits each block's products
 * rather than its images (bwd_batched): with an image per chunk, every chunk packed the whole
 * weight for a few columns of the input gradient, summed a weight gradient of inner dimension
 * P into its own partial [c_out, K] (cleared, then added up after), and at batch 8 on 2
 * threads each thread had four images of 49 positions. The batch splits into as few blocks of
 * equal size as keep each within BWD_COLS columns (or one image): ResNet-50's 7 x 7 stage at
 * batch 8 is one block, its 14 x 14 stage two of four images. The block depends on d alone. */
int strop__conv_batch_backward = 1;
enum { BWD_COLS = 1024 };

static int64_t bwd_block(const strop__conv2d_dims *d) {
  const int64_t P = d->oh * d->ow;
  if (!strop__conv_batch_backward || d->groups != 1 || d->bf16 || P <= 0 || d->c_out <= P ||
      wino_m(d) || d->n < 1)
    return 0;
  const int64_t blocks = (d->n * P + BWD_COLS - 1) / BWD_COLS;
  return (d->n + blocks - 1) / blocks;
}
/* a block's output gradient [c_out, L] and columns [K + 1, L] (the bias gradient's ones in the
 * last row), then per chunk the epilogue's area */
static int64_t bwd_block_len(const strop__conv2d_dims *d, int chunks,
                             const strop__conv2d_epilogue *ep) {
  const int64_t L = bwd_block(d) * d->oh * d->ow;
  return r16(d->c_out * L) + r16((kdim(d) + 1) * L) + chunks * ep_len(d, 1, ep);
}

/* ---- BF16 products (d->bf16) ---- */

/* 1: vdpbf16ps (ungrouped convs where the CPU runs it); 2: the exact fallback, the FP32 lowered
 * GEMMs on operands rounded to BF16 (the rounded weight once per call in the shared scratch,
 * each chunk's image and output gradient rounded into its own area); 0: FP32 */
static int bf16_mode(const strop__conv2d_dims *d) {
  if (!d->bf16) return 0;
  return d->groups == 1 && strop__bf16_dot_enabled() ? 1 : 2;
}

int strop__conv2d_reads_x_rounded(const strop__conv2d_dims *d) {
  if (!bf16_mode(d) || depthwise(d, NULL)) return 0;
  return bf16_mode(d) == 1 ? 2 : 1;
}

/* vdpbf16ps: a chunk's images run in blocks whose columns lie side by side, [K, nb P], at least
 * BF16_COLS of them (a chunk's share at most), so that one packing of the weight serves the
 * block: ResNet's 14x14 and 7x7 stages would otherwise pack their large weights once per image
 * (as much memory traffic as the product's multiply-adds take time). */
enum { BF16_COLS = 512 };

static int64_t bf16_block(const strop__conv2d_dims *d, int chunks) {
  const int64_t P = d->oh * d->ow, share = (d->n + chunks - 1) / chunks;
  int64_t nb = (BF16_COLS + P - 1) / (P > 0 ? P : 1);
  if (nb > share) nb = share;
  return nb < 1 ? 1 : nb;
}

static int bf16_dx(const strop__conv2d_dims *d, int64_t nb);

/* floats of strop__bf16_gemm_f32's work area for every block of 1 .. bf16_block images (a
 * chunk's last block may be smaller, and a smaller product may need more: it packs all of B at
 * once when that fits in 512 KB), 64-byte aligned: the forward's W cols, or the backward's
 * W^T dY and dY cols^T */
static int64_t bf16_work(const strop__conv2d_dims *d, int chunks, int backward) {
  const int64_t K = kdim(d), CO = d->c_out, P = d->oh * d->ow, nbm = bf16_block(d, chunks);
  size_t most = 0;
  for (int64_t nb = 1; nb <= nbm; nb++) {
    const int64_t L = nb * P;
    size_t w = backward ? strop__bf16_gemm_f32_scratch(K, L, CO)
                        : strop__bf16_gemm_f32_scratch(CO, L, K);
    if (backward && strop__bf16_gemm_f32_scratch(CO, K, L) > w)
      w = strop__bf16_gemm_f32_scratch(CO, K, L);
    const size_t f = strop__bf16_gemm_f32_scratch(d->c_in, nb * d->h * d->w, CO * d->kh * d->kw);
    if (backward && bf16_dx(d, nbm) && f > w) w = f;
    if (w > most) most = w;
  }
  return r16((int64_t)((most + 3) / 4));
}

/* vdpbf16ps, the forward's weight before the chunks: packed once (strop__bf16_pack_a), or
 * transposed [K, c_out] for each block's product to pack (strop__conv_bf16_direct 0) */
static int64_t bf16_a_len(const strop__conv2d_dims *d) {
  return r16((int64_t)((strop__bf16_pack_a_bytes(d->c_out, kdim(d)) + 3) / 4));
}
static int64_t bf16_w_len(const strop__conv2d_dims *d) {
  const int64_t t = r16(kdim(d) * d->c_out), a = bf16_a_len(d);
  return a > t ? a : t;
}

/* d's forward can take its weight already packed for vdpbf16ps (strop__conv2d_filters): the
 * packing is the same whatever the images, so a frozen weight's can be made once */
static int held_packed(const strop__conv2d_dims *d) {
  return bf16_mode(d) == 1 && strop__conv_bf16_direct;
}

/* ---- BF16 Winograd forward (strop__conv_bf16_wino): F(2x2, 3x3) where the FP32 forward would
 *      run Winograd. The filters are transformed in FP32 (G g G^T in double, rounded once, as
 *      the FP32 path's), a block of output channels' 16 planes at a time, each plane rounded
 *      to BF16: packed for vdpbf16ps (bf16_mode 1) or kept as FP32 values (the fallback, 2).
 *      Per block of whole images or strip of an image's tile rows (wbf_split), the tiles are
 *      transformed in FP32 with winograd.c's operations and rounded to BF16 — on vdpbf16ps
 *      straight into the products' packed panels (wbf_in_rows), on the fallback into FP32
 *      planes rounded in place —, the 16 products run with FP32 sums, and the output transform
 *      (winograd.c's operations: wbf_out_rows, or winograd.c itself), the bias and the
 *      epilogue follow. ---- */
int strop__conv_bf16_wino = 1;
enum { WBF_M = 2, WBF_A2 = 16 };

static int wino_bf(const strop__conv2d_dims *d) {
  if (!d->bf16 || !strop__conv_bf16_wino || !bf16_mode(d)) return 0;
  strop__conv2d_dims f = *d;
  f.bf16 = 0;
  return wino_m_side(&f, 1) ? WBF_M : 0; /* F(2x2) on every side (small ones not measured) */
}
/* a transformed plane [c_out, c_in]: packed (vdpbf16ps), or rounded FP32 values */
static int64_t wbf_plane(const strop__conv2d_dims *d) {
  return bf16_mode(d) == 1 ? r16((int64_t)((strop__bf16_pack_a_bytes(d->c_out, d->c_in) + 3) / 4))
                           : r16(d->c_out * d->c_in);
}
static int64_t wbf_u_len(const strop__conv2d_dims *d) { return WBF_A2 * wbf_plane(d); }
/* The planes are made a block of output channels at a time, all 16 of the block's FP32 planes
 * (at most WBF_FBLOCK floats: in L2) from one read of its rows of the weight: */
enum { WBF_FBLOCK = 1 << 17 };
/* output channels per block, a multiple of 8 (a packed panel's rows) */
static int64_t wbf_oblock(const strop__conv2d_dims *d) {
  int64_t ob = WBF_FBLOCK / (WBF_A2 * d->c_in) / 8 * 8;
  if (ob < 8) ob = 8;
  return ob < d->c_out ? ob : d->c_out;
}
/* the floats the planes are made through: a block's 16 FP32 planes, and (dx's planes, packed
 * transposed) the block's own packing */
static int64_t wbf_make_len(const strop__conv2d_dims *d) {
  const int64_t ob = wbf_oblock(d);
  return r16(WBF_A2 * ob * d->c_in) +
         r16((int64_t)((strop__bf16_pack_a_bytes(d->c_in, ob) + 3) / 4));
}
/* Tiles a product runs over: a block of whole images, or a strip of an image's tile rows, of
 * about WBF_TILES, so that a strip's 16 planes of tiles and of products stay in L2 between the
 * transforms and the products (96 and 192 measured alike). */
enum { WBF_TILES = 96 };
/* tile rows a strip of one image (*nb 1), or images a block of whole images (*rows: all) */
static void wbf_split(const strop__conv2d_dims *d, int chunks, int64_t *nb, int64_t *rows) {
  const int64_t tpi = strop__winograd_tiles(d, WBF_M), txn = (d->ow + 1) / 2;
  const int64_t tyn = (d->oh + 1) / 2, share = (d->n + chunks - 1) / chunks, t = WBF_TILES;
  if (tpi > t) {
    *nb = 1;
    *rows = t / txn > 1 ? t / txn : 1;
    if (*rows > tyn) *rows = tyn;
  } else {
    *rows = tyn;
    *nb = t / tpi < share ? t / tpi : share;
    if (*nb < 1) *nb = 1;
  }
}
static int64_t wbf_cols(const strop__conv2d_dims *d, int chunks) {
  int64_t nb, rows;
  wbf_split(d, chunks, &nb, &rows);
  return nb * rows * ((d->ow + 1) / 2);
}
/* a plane of a strip's tiles: packed panels (vdpbf16ps), or FP32 [c_in, cols] (the fallback) */
static int64_t wbf_vplane(const strop__conv2d_dims *d, int64_t cols) {
  return bf16_mode(d) == 1 ? r16((cols + 31) / 32 * ((d->c_in + 1) / 2) * 32)
                           : wplane(d->c_in * cols);
}
/* the transforms' work: winograd.c's rows (the fallback; vdpbf16ps needs none) */
static int64_t wbf_work_len(const strop__conv2d_dims *d) {
  return bf16_mode(d) == 1 ? 0 : r16((int64_t)strop__winograd_work_floats(d, WBF_M));
}
/* per chunk: the epilogue's image, a strip's tiles V and products M [16, c, cols], the
 * transforms' work */
static int64_t wbf_chunk_len(const strop__conv2d_dims *d, int chunks,
                             const strop__conv2d_epilogue *ep) {
  const int64_t T = wbf_cols(d, chunks);
  return ep_len(d, 0, ep) + WBF_A2 * (wbf_vplane(d, T) + wplane(d->c_out * T)) + wbf_work_len(d);
}

/* d's vdpbf16ps forward packs its columns straight from the images (pack_cols) for blocks of up
 * to nb images: a half panel's lanes fall into at most COL_RUNS runs (an image's rows one line:
 * stride 1, the output as wide as the input, P >= 16; else runs of an output row: ow >= 5),
 * stride 1 or 2, at most COL_TAPS (64) taps, and the int32 arithmetic of the lanes' taps
 * holds */
static int col_pack_ok(const strop__conv2d_dims *d, int64_t nb) {
  const int contig = d->sh == 1 && d->sw == 1 && d->ow == d->w && d->oh * d->ow >= 16;
  return strop__conv_bf16_direct && (contig || ((d->sw == 1 || d->sw == 2) && d->ow >= 5)) &&
         d->kh * d->kw <= 64 && (nb + 1) * d->c_in * d->h * d->w < ((int64_t)1 << 31);
}

/* d's vdpbf16ps input gradient is the forward of dY with the flipped weight (dx_dims), its
 * columns packed straight from dY (pack_cols) and the product written into dx (or added to it),
 * for blocks of up to nb images: stride 1 (a pointwise conv's dx is one product already), the
 * padding within the dilated kernel, and pack_cols and the C layout able to take it. No FP32
 * columns, no col2im. */
int strop__conv_bf16_dx = 1;

/* d's vdpbf16ps input gradient may run as the forward of dY (dx_dims): stride 1, the padding
 * within the dilated kernel (bf16_dx and wbf_dx add their kernels' own conditions) */
static int dx_as_forward(const strop__conv2d_dims *d) {
  return strop__conv_bf16_dx && bf16_mode(d) == 1 && !is_pointwise(d) && d->sh == 1 &&
         d->sw == 1 && d->ph <= d->dh * (d->kh - 1) && d->pw <= d->dw * (d->kw - 1);
}

static int bf16_dx(const strop__conv2d_dims *d, int64_t nb) {
  if (!dx_as_forward(d)) return 0;
  const strop__conv2d_dims e = dx_dims(d);
  return col_pack_ok(&e, nb) && (nb == 1 || d->h * d->w >= 32);
}

/* d's vdpbf16ps input gradient as the BF16 Winograd forward of dY with the flipped weight
 * (wbf_dx_block): stride 1, the padding within the kernel, and dx's conv (dx_dims) one whose
 * forward runs as Winograd (wino_bf: 3x3, 64 or more channels in and out). The flipped weight's
 * 16 transformed planes are made once per call; dY's tiles are read straight from the block's
 * output gradient, and the outputs written into dx (or added to it). */
int strop__conv_bf16_wino_dx = 1;

static int wbf_dx(const strop__conv2d_dims *d) {
  if (!strop__conv_bf16_wino_dx || !dx_as_forward(d)) return 0;
  const strop__conv2d_dims e = dx_dims(d);
  return wino_bf(&e) != 0;
}

/* per chunk: a strip's tiles V and products M of dx's conv (wbf_dx), else nothing */
static int64_t wbf_dx_len(const strop__conv2d_dims *d, int chunks) {
  if (!wbf_dx(d)) return 0;
  const strop__conv2d_dims e = dx_dims(d);
  const int64_t T = wbf_cols(&e, chunks);
  return WBF_A2 * (wbf_vplane(&e, T) + wplane(e.c_out * T));
}

/* the backward's weight packed once for the input gradient's products: W^T [K, c_out], or the
 * flipped weight [c_in, c_out kh kw] (bf16_dx), or (wbf_dx) dx's 16 Winograd planes and the
 * area they are made through (wbf_make_len) */
static int64_t bf16_wt_len(const strop__conv2d_dims *d) {
  const size_t t = strop__bf16_pack_a_bytes(kdim(d), d->c_out);
  const size_t f = strop__bf16_pack_a_bytes(d->c_in, d->c_out * d->kh * d->kw);
  const int64_t a = r16((int64_t)(((t > f ? t : f) + 3) / 4));
  if (!wbf_dx(d)) return a;
  const strop__conv2d_dims e = dx_dims(d);
  const int64_t u = wbf_u_len(&e) + wbf_make_len(d);
  return u > a ? u : a;
}

/* The vdpbf16ps backward's per-chunk FP32 columns [K, L]: for the input gradient's product
 * where it is neither bf16_dx nor a pointwise conv's written into dx, and for the weight
 * gradient's where they are not packed from the images (a lone image's pointwise columns are
 * the image) */
static int bwd_cols_needed(const strop__conv2d_dims *d, int64_t nbm) {
  if (!strop__conv_bf16_direct) return 1;
  if (is_pointwise(d)) return nbm > 1 && (d->oh * d->ow < 32 || !col_pack_ok(d, nbm));
  if (wbf_dx(d)) return !col_pack_ok(d, nbm);
  return !bf16_dx(d, nbm) || !col_pack_ok(d, nbm);
}

/* The vdpbf16ps forward's per-chunk FP32 columns: not where they are packed from the images;
 * and its products [c_out, L]: only where they cannot go straight to y (bf16_fwd_chunk) */
static int fwd_cols_needed(const strop__conv2d_dims *d, int64_t nbm) {
  return !col_pack_ok(d, nbm);
}
static int fwd_cbuf_needed(const strop__conv2d_dims *d, int64_t nbm,
                           const strop__conv2d_epilogue *ep) {
  return !strop__conv_bf16_direct || (nbm > 1 && ((ep && ep->pool) || d->oh * d->ow < 32));
}

static size_t lanes_bytes(int64_t L);
/* the vdpbf16ps backward's lanes of a block's columns (col_lanes_all) for the weight gradient's
 * columns packed from the images */
static int64_t bwd_lanes_len(const strop__conv2d_dims *d, int64_t nbm) {
  return col_pack_ok(d, nbm) ? r16((int64_t)(lanes_bytes(nbm * d->oh * d->ow) + 3) / 4) : 0;
}

/* the vdpbf16ps backward's weight and bias gradients' partial sums per chunk: none for one
 * chunk, which adds into the gradients themselves */
static int64_t bf16_part_len(const strop__conv2d_dims *d, int chunks) {
  return chunks > 1 ? part_len(d) : 0;
}

/* vdpbf16ps, per chunk. Forward: the pool's raw output (epilogue), the block's columns
 * [K, L] and its products [c_out, L] where they are needed (fwd_cols_needed, fwd_cbuf_needed),
 * and the GEMM's work (L = nb P). Backward: the weight and bias
 * gradients' partial sums, the epilogue's area, the columns [K, L] (the input gradient's, then
 * the block's own), the block's output gradient [c_out, L], the Winograd input gradient's
 * tiles and products (wbf_dx), the GEMMs' work. */
static int64_t bf16_chunk_len(const strop__conv2d_dims *d, int backward, int chunks,
                              const strop__conv2d_epilogue *ep) {
  const int64_t K = kdim(d), CO = d->c_out, L = bf16_block(d, chunks) * d->oh * d->ow;
  const int64_t nbm = bf16_block(d, chunks);
  if (!backward)
    return ep_len(d, 0, ep) + (fwd_cols_needed(d, nbm) ? r16(K * L) : 0) +
           (fwd_cbuf_needed(d, nbm, ep) ? r16(CO * L) : 0) + bf16_work(d, chunks, 0);
  return bf16_part_len(d, chunks) + ep_len(d, 1, ep) +
         (bwd_cols_needed(d, nbm) ? r16(K * L) : 0) + r16(CO * L) + bwd_lanes_len(d, nbm) +
         wbf_dx_len(d, chunks) + bf16_work(d, chunks, 1);
}

/* the exact fallback's per-chunk areas (the rounded image, and in the backward the rounded
 * output gradient) after the FP32 layout's, and its rounded weight before the chunks */
static int64_t round_chunk_len(const strop__conv2d_dims *d, int backward) {
  return r16(d->c_in * d->h * d->w) + (backward ? r16(d->c_out * d->oh * d->ow) : 0);
}
static int64_t round_w_len(const strop__conv2d_dims *d) { return r16(d->c_out * kdim(d)); }

size_t strop__conv2d_scratch_floats(const strop__conv2d_dims *d, int backward, int chunks,
                                    const strop__conv2d_epilogue *ep) {
  if (chunks < 1) chunks = 1;
  if (depthwise(d, ep)) return 16; /* the direct kernel needs none */
  const int bm = bf16_mode(d);
  if (backward != 1 &&
      wino_bf(d)) { /* the filters (unless given), made through the chunks' area */
    const int64_t ch = chunks * wbf_chunk_len(d, chunks, ep);
    if (backward == 2 && bm == 1) return (size_t)ch;
    return (size_t)(wbf_u_len(d) + (ch > wbf_make_len(d) ? ch : wbf_make_len(d)));
  }
  if (bm == 1) { /* forward: the weight (bf16_w_len, unless given packed) first; backward: the
                  ones row and W^T */
    const int64_t bw = backward == 1;
    const int64_t wl = bw                                ? ones_len(d) + bf16_wt_len(d)
                       : backward == 2 && held_packed(d) ? 0
                                                         : bf16_w_len(d);
    return (size_t)(wl + chunks * bf16_chunk_len(d, (int)bw, chunks, ep));
  }
  if (bm == 2) {
    const int64_t bw = backward == 1;
    return (size_t)(ones_len(d) + round_w_len(d) + (bw ? 0 : part_len(d)) +
                    chunks *
                        ((bw ? cols_len(d) : fwd_cols_len(d, chunks)) + (bw ? part_len(d) : 0) +
                         ep_len(d, (int)bw, ep) + round_chunk_len(d, (int)bw)));
  }
  if (backward == 1 && bwd_block(d)) return (size_t)bwd_block_len(d, chunks, ep);
  const int m = backward == 1 ? 0 : wino_m(d);
  if (m)
    return (size_t)((backward ? 0 : wino_u_held(d, m, chunks)) +
                    chunks * wino_chunk_len(d, m, chunks, ep));
  if (backward == 2) backward = 0;
  int64_t per = (backward ? cols_len(d) + part_len(d) : fwd_cols_len(d, chunks)) +
                ep_len(d, backward, ep);
  int64_t aug = !backward && fused_bias(d) ? part_len(d) : 0;
  const int mdx = backward ? wino_dx_m(d) : 0;
  const strop__conv2d_dims dd = dx_dims(d);
  if (mdx && !(ep && (ep->relu || ep->pool)) && wino_rows(&dd, mdx, chunks)) {
    /* a row of dx's filters and the chunks' Winograd areas alone (wino_dx_rows_chunk) */
    aug = wino_u_held(&dd, mdx, chunks);
    per = wino_dx_len(d, mdx, chunks);
  } else if (mdx) {
    aug += wino_u_len(d, mdx);
    per += wino_dx_len(d, mdx, chunks);
  }
  int64_t rest = aug + chunks * per;
  /* the Winograd weight gradient runs first, then the input gradient in the same memory */
  const int mdw = backward ? wino_m(d) : 0;
  if (mdw && wino_dw_len(d, mdw, chunks, ep) > rest) rest = wino_dw_len(d, mdw, chunks, ep);
  return (size_t)(ones_len(d) + rest);
}

static float *fill_ones(const strop__conv2d_dims *d, float *scratch) {
  const int64_t P = d->oh * d->ow;
  for (int64_t p = 0; p < P; p++) scratch[p] = 1.0f;
  return scratch;
}

/* Output positions o in [lo, hi) whose input index o * stride + off falls in [0, in). */
static void valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t *lo,
                        int64_t *hi) {
  int64_t l = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t h = in - 1 - off < 0 ? 0 : (in - 1 - off) / stride + 1;
  if (h > out) h = out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* Stride 1 with the output as wide as the input: input row oy + off and column row oy have
 * the same pitch, so a block of rows moves as one contiguous range. */
static int rows_contiguous(const strop__conv2d_dims *d) {
  return d->sh == 1 && d->sw == 1 && d->ow == d->w;
}

int strop__conv_gather2 = 1;

#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  include <immintrin.h>

/* dst[i] = src[2 i] for i < n: 16 values a time from two loads and one permute, the loads
 * masked so that nothing past src[2 (n - 1)] is read */
__attribute__((target("avx512f"))) static void gather_even(float *restrict dst,
                                                           const float *restrict src, int64_t n) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2,
                                        0);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 lo = _mm512_loadu_ps(src + 2 * i);
    const __m512 hi = _mm512_maskz_loadu_ps(0x7fff, src + 2 * i + 16);
    _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(lo, even, hi));
  }
  if (i < n) { /* r < 16 values from the 2 r - 1 floats that hold them */
    const int64_t r = n - i, e = 2 * r - 1;
    const __mmask16 mlo = e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << e) - 1);
    const __mmask16 mhi = e > 16 ? (__mmask16)((1u << (e - 16)) - 1) : (__mmask16)0;
    const __m512 lo = _mm512_maskz_loadu_ps(mlo, src + 2 * i);
    const __m512 hi = _mm512_maskz_loadu_ps(mhi, src + 2 * i + 16);
    _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << r) - 1),
                          _mm512_permutex2var_ps(lo, even, hi));
  }
}

/* dst[2 i] += src[i] for i < n (col2im of a stride-2 conv), 16 a time: src's values spread to
 * the even lanes and added there only (an odd lane's -0 stays -0), nothing past dst[2 (n - 1)]
 * read or written */
__attribute__((target("avx512f"))) static void scatter_even_add(float *restrict dst,
                                                                const float *restrict src,
                                                                int64_t n) {
  const __m512i lo_idx = _mm512_set_epi32(0, 7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0);
  const __m512i hi_idx = _mm512_set_epi32(0, 15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16, e = 2 * r - 1; /* values, floats of dst */
    const __mmask16 mlo = e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << e) - 1);
    const __mmask16 mhi = e > 16 ? (__mmask16)((1u << (e - 16)) - 1) : (__mmask16)0;
    const __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1), src + i);
    float *d = dst + 2 * i;
    const __m512 lo = _mm512_maskz_loadu_ps(mlo, d), hi = _mm512_maskz_loadu_ps(mhi, d + 16);
    const __mmask16 even = (__mmask16)0x5555;
    _mm512_mask_storeu_ps(
        d, mlo, _mm512_mask_add_ps(lo, even & mlo, lo, _mm512_permutexvar_ps(lo_idx, v)));
    if (mhi)
      _mm512_mask_storeu_ps(
          d + 16, mhi, _mm512_mask_add_ps(hi, even & mhi, hi, _mm512_permutexvar_ps(hi_idx, v)));
  }
}

static int gather2_fast(void) {
  static int v = -1;
  int h = __atomic_load_n(&v, __ATOMIC_RELAXED);
  if (h < 0) {
    h = __builtin_cpu_supports("avx512f") != 0;
    __atomic_store_n(&v, h, __ATOMIC_RELAXED);
  }
  return h && strop__conv_gather2;
}
#else
static void gather_even(float *restrict dst, const float *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = src[2 * i];
}
static void scatter_even_add(float *restrict dst, const float *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[2 * i] += src[i];
}
static int gather2_fast(void) { return 0; }
#endif

/* One image [c, h, w] -> columns [c * kh * kw, oh * ow], rows ld floats apart (ld >= oh ow:
 * the BF16 products lay a block of images' columns side by side). */
static void im2col(const strop__conv2d_dims *d, const float *x, float *col, int64_t ld) {
  const int64_t oh = d->oh, ow = d->ow, H = d->h, W = d->w;
  const int gather2 = gather2_fast();
  for (int64_t c = 0; c < d->c_in; c++) {
    const float *xc = x + c * H * W;
    for (int64_t ki = 0; ki < d->kh; ki++) {
      int64_t offy = ki * d->dh - d->ph, ylo, yhi;
      valid_range(offy, d->sh, H, oh, &ylo, &yhi);
      for (int64_t kj = 0; kj < d->kw; kj++) {
        int64_t offx = kj * d->dw - d->pw, xlo, xhi;
        valid_range(offx, d->sw, W, ow, &xlo, &xhi);
        float *r = col + ((c * d->kh + ki) * d->kw + kj) * ld;
        if (ylo > 0) memset(r, 0, sizeof(float) * (size_t)(ylo * ow));
        if (rows_contiguous(d) && yhi > ylo && xhi > xlo) {
          /* input rows and column rows line up: one copy for the whole block, then clear
           * the cells that wrapped around from the neighbouring rows */
          const int64_t b0 = ylo * ow + xlo, b1 = (yhi - 1) * ow + xhi;
          memcpy(r + b0, xc + b0 + offy * W + offx, sizeof(float) * (size_t)(b1 - b0));
          for (int64_t oy = ylo; oy < yhi; oy++) {
            float *dst = r + oy * ow;
            for (int64_t ox = 0; ox < xlo; ox++) dst[ox] = 0.0f;
            for (int64_t ox = xhi; ox < ow; ox++) dst[ox] = 0.0f;
          }
        } else {
          for (int64_t oy = ylo; oy < yhi; oy++) {
            const float *src = xc + (oy * d->sh + offy) * W + offx;
            float *dst = r + oy * ow;
            for (int64_t ox = 0; ox < xlo; ox++) dst[ox] = 0.0f;
            if (d->sw == 1) {
              memcpy(dst + xlo, src + xlo, sizeof(float) * (size_t)(xhi - xlo));
            } else if (d->sw == 2 && gather2) { /* ResNet's strided convs and stem */
              gather_even(dst + xlo, src + 2 * xlo, xhi - xlo);
            } else {
              const int64_t s = d->sw;
              for (int64_t ox = xlo; ox < xhi; ox++) dst[ox] = src[ox * s];
            }
            for (int64_t ox = xhi; ox < ow; ox++) dst[ox] = 0.0f;
          }
        }
        if (yhi < oh) memset(r + yhi * ow, 0, sizeof(float) * (size_t)((oh - yhi) * ow));
      }
    }
  }
}

/* dst += src over n floats: a loop the compiler vectorises (a BLAS call per kernel tap costs
 * more than the ~200 adds it does). */
static void add_into(float *restrict dst, const float *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* Columns [c * kh * kw, oh * ow] (rows ld floats apart) -> ADDED into one image gradient
 * [c, h, w]. Clobbers the column entries that fall into the padding. */
static void col2im(const strop__conv2d_dims *d, float *col, int64_t ld, float *dx) {
  const int64_t oh = d->oh, ow = d->ow, H = d->h, W = d->w;
  const int gather2 = gather2_fast();
  for (int64_t c = 0; c < d->c_in; c++) {
    float *xc = dx + c * H * W;
    for (int64_t ki = 0; ki < d->kh; ki++) {
      int64_t offy = ki * d->dh - d->ph, ylo, yhi;
      valid_range(offy, d->sh, H, oh, &ylo, &yhi);
      for (int64_t kj = 0; kj < d->kw; kj++) {
        int64_t offx = kj * d->dw - d->pw, xlo, xhi;
        valid_range(offx, d->sw, W, ow, &xlo, &xhi);
        float *r = col + ((c * d->kh + ki) * d->kw + kj) * ld;
        if (rows_contiguous(d) && yhi > ylo && xhi > xlo) {
          /* zero the entries that belong to the padding, then one long axpy */
          for (int64_t oy = ylo; oy < yhi; oy++) {
            float *src = r + oy * ow;
            for (int64_t ox = 0; ox < xlo; ox++) src[ox] = 0.0f;
            for (int64_t ox = xhi; ox < ow; ox++) src[ox] = 0.0f;
          }
          const int64_t b0 = ylo * ow + xlo, b1 = (yhi - 1) * ow + xhi;
          add_into(xc + b0 + offy * W + offx, r + b0, b1 - b0);
          continue;
        }
        for (int64_t oy = ylo; oy < yhi; oy++) {
          float *dst = xc + (oy * d->sh + offy) * W + offx;
          const float *src = r + oy * ow;
          if (d->sw == 1) {
            for (int64_t ox = xlo; ox < xhi; ox++) dst[ox] += src[ox];
          } else if (d->sw == 2 && gather2) {
            scatter_even_add(dst + 2 * xlo, src + xlo, xhi - xlo);
          } else {
            const int64_t s = d->sw;
            for (int64_t ox = xlo; ox < xhi; ox++) dst[ox * s] += src[ox];
          }
        }
      }
    }
  }
}

typedef struct conv_job {
  const strop__conv2d_dims *d;
  const float *x, *w, *b, *dy, *ones;
  /* backward: x held in BF16 (strop__conv2d_backward_held; x NULL then), or NULL */
  const uint16_t *xh;
  float *y, *dx, *dw, *db;
  float *waug;        /* forward, fused bias: [c_out, K + 1]; BF16: the weight transposed */
  const uint32_t *ap; /* BF16: the weight packed (strop__bf16_pack_a; the backward's W^T), or
                         NULL */
  float *chunk0;      /* per-chunk areas start here, each cols_len (+ part_len in the backward)
                    + ep_len */
  int64_t per;        /* floats per chunk area */
  int chunks, fused, partial;
  int assign;            /* backward: dx is written, not added to */
  int dxd;               /* BF16 backward: dx as the forward of dY (bf16_dx; ap the flipped
                            weight packed, dd its conv) */
  int dxw;               /* BF16 backward: dx as the BF16 Winograd forward of dY (wbf_dx; u
                            and uplane its filters, dd its conv) */
  int rnd;               /* the exact BF16 fallback: w is the rounded weight, and the chunks
                            round their images and output gradients (round_chunk_len) */
  int64_t part_off;      /* backward: where a chunk's partial sums start in its area */
  int m;                 /* Winograd: the tile size (backward: of dx) */
  int row;               /* Winograd, filters a row at a time (wino_rows): the row, else -1 */
  int wbf;               /* BF16 Winograd forward (wino_bf): bf16_mode's 1 or 2, else 0 */
  int64_t uplane;        /* BF16 Winograd: floats between two of u's planes */
  float *u;              /* Winograd: the transformed filters (backward: of dx) */
  strop__conv2d_dims dd; /* backward with Winograd: dx's conv (dx_dims) */
  /* Winograd weight gradient: the tile size, M, a block's V and Y, the per-chunk areas, and
   * the block being summed (images n0 .. n0 + nn - 1, T tiles; first: M starts there) */
  int mw, first;
  float *wm, *wv, *wy, *wc;
  int64_t wper, n0, nn, T;
  int64_t o0, no, pm; /* its block of output channels o0 .. o0 + no - 1 and M's plane stride */
  float *by, *bc;     /* batched backward: a block's dY [c_out, L] and columns [K + 1, L] */
  const strop__conv2d_epilogue *ep; /* NULL: none */
  strop__pool2d_dims pd;            /* the epilogue's pool over one image */
} conv_job;

/* The epilogue's per-chunk buffers: after the columns and (backward) the partial sums. */
static float *ep_area(const conv_job *j, float *colbuf, int backward) {
  return colbuf + (backward ? cols_len(j->d) + part_len(j->d) : fwd_cols_len(j->d, j->chunks));
}

/* The exact BF16 fallback's operand: v (cnt floats) rounded into buf; v itself otherwise. */
static const float *image(const conv_job *j, const float *v, int64_t cnt, float *buf) {
  if (!j->rnd) return v;
  strop__bf16_round_f32(v, buf, (size_t)cnt);
  return buf;
}

/* Output v after the epilogue: + r[k] (r NULL: nothing) as r + v (first) or v + r, then (relu)
 * strop__relu_forward's select — a residual sum and its relu with add's bits (layers/merge.c) */
static inline float ep_value(float v, const float *restrict r, int64_t k, int first, int relu) {
  if (r) v = first ? r[k] + v : v + r[k];
  return relu && v < 0.0f ? 0.0f : v;
}

/* y = ep_value(y): a residual sum and its relu in one pass over y */
static void res_add(float *restrict y, const float *restrict r, int64_t cnt, int first,
                    int relu) {
  for (int64_t k = 0; k < cnt; k++) y[k] = ep_value(y[k], r, k, first, relu);
}

int strop__conv_ep_copy = 1;

/* dst = ep_value(src): fwd_epilogue's values (without a pool) for cnt of an image's outputs,
 * in the pass that copies them out of a batched block rather than in a pass over y after it */
static void ep_copy(float *restrict dst, const float *restrict src, const float *restrict r,
                    int64_t cnt, int first, int relu) {
  for (int64_t k = 0; k < cnt; k++) dst[k] = ep_value(src[k], r, k, first, relu);
}

/* Forward epilogue of image n, whose raw output is yn: the residual added, then the pool (of
 * the relu) into y, or the relu in place. */
static void fwd_epilogue(const conv_job *j, int64_t n, float *yn) {
  const strop__conv2d_epilogue *ep = j->ep;
  const int64_t C = j->d->c_out;
  if (!ep) return;
  if (ep->res) {
    const int64_t cnt = C * j->d->oh * j->d->ow;
    res_add(yn, ep->res + n * cnt, cnt, ep->res_first, ep->relu && !ep->pool);
    if (!ep->pool) return;
  }
  if (ep->pool) {
    const int64_t O = j->pd.oh * j->pd.ow;
    strop__maxpool2d_forward_ex(&j->pd, yn, j->y + n * C * O,
                                ep->argmax ? ep->argmax + n * C * O : NULL, ep->relu);
  } else if (ep->relu) {
    strop__relu_forward(yn, yn, (size_t)(C * j->d->oh * j->d->ow));
  }
}

int strop__conv_bias_fill = 1;

/* y[o][p] = b[o] for o < rows, p < cols: a fill the compiler vectorises (the rank-1 product
 * it stands for, b 1^T, ran at 2-5 GFLOP/s through OpenBLAS on ResNet's 1x1 convs) */
static void bias_fill(float *restrict y, const float *restrict b, int64_t rows, int64_t cols) {
  for (int64_t o = 0; o < rows; o++) {
    const float v = b[o];
    float *restrict r = y + o * cols;
    for (int64_t p = 0; p < cols; p++) r[p] = v;
  }
}

static void fwd_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t G = d->groups, cout_g = d->c_out / G, K = kdim(d), P = d->oh * d->ow;
  const int64_t HW = d->h * d->w;
  float *colbuf = j->chunk0 + chunk * j->per;
  /* with a pool the raw output stays in this chunk's buffer; otherwise it is y itself */
  float *raw = j->ep && j->ep->pool ? ep_area(j, colbuf, 0) : NULL;
  float *xr = j->rnd ? ep_area(j, colbuf, 0) + ep_len(d, 0, j->ep) : NULL;
  if (j->fused) {
    for (int64_t p = 0; p < P; p++) colbuf[K * P + p] = 1.0f;
    for (int64_t n = lo; n < hi; n++) {
      float *yn = raw ? raw : j->y + n * d->c_out * P;
      im2col(d, image(j, j->x + n * d->c_in * HW, d->c_in * HW, xr), colbuf, P);
      strop__sgemm(0, 0, d->c_out, P, K + 1, 1.0f, j->waug, K + 1, colbuf, P, 0.0f, yn, P);
      fwd_epilogue(j, n, yn);
    }
    return;
  }
  for (int64_t n = lo; n < hi; n++) {
    const float *xn = image(j, j->x + n * d->c_in * HW, d->c_in * HW, xr);
    float *yn = raw ? raw : j->y + n * d->c_out * P;
    const float *cols = xn; /* pointwise: the image is its own column matrix */
    if (!is_pointwise(d)) {
      im2col(d, xn, colbuf, P);
      cols = colbuf;
    }
    /* y = b 1^T, then y += W cols */
    if (j->b && strop__conv_bias_fill) bias_fill(yn, j->b, d->c_out, P);
    else if (j->b) strop__sgemm(0, 0, d->c_out, P, 1, 1.0f, j->b, 1, j->ones, P, 0.0f, yn, P);
    for (int64_t g = 0; g < G; g++)
      strop__sgemm(0, 0, cout_g, P, K, 1.0f, j->w + g * cout_g * K, K, cols + g * K * P, P,
                   j->b ? 1.0f : 0.0f, yn + g * cout_g * P, P);
    fwd_epilogue(j, n, yn);
  }
}

/* fwd_chunk for blocks of f32_block images: their columns side by side (with the fused bias's
 * row of ones), one product, each image's rows copied into y, its epilogue run. */
static void fwd_block_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t K = kdim(d), P = d->oh * d->ow, HW = d->h * d->w, CO = d->c_out;
  const int64_t nbm = f32_block(d, j->chunks);
  float *colbuf = j->chunk0 + chunk * j->per;
  float *cbuf = colbuf + r16((K + 1) * nbm * P);
  float *raw = j->ep && j->ep->pool ? ep_area(j, colbuf, 0) : NULL;
  float *xr = j->rnd ? ep_area(j, colbuf, 0) + ep_len(d, 0, j->ep) : NULL;
  const int pw = is_pointwise(d);
  const strop__conv2d_epilogue *ep = j->ep;
  for (int64_t n0 = lo; n0 < hi; n0 += nbm) {
    const int64_t nb = hi - n0 < nbm ? hi - n0 : nbm, L = nb * P;
    for (int64_t s = 0; s < nb; s++) {
      const float *xn = image(j, j->x + (n0 + s) * d->c_in * HW, d->c_in * HW, xr);
      if (!pw) im2col(d, xn, colbuf + s * P, L);
      else
        for (int64_t c = 0; c < d->c_in; c++)
          memcpy(colbuf + c * L + s * P, xn + c * P, sizeof(float) * (size_t)P);
    }
    if (j->fused) {
      for (int64_t p = 0; p < L; p++) colbuf[K * L + p] = 1.0f;
      strop__sgemm(0, 0, CO, L, K + 1, 1.0f, j->waug, K + 1, colbuf, L, 0.0f, cbuf, L);
    } else {
      if (j->b) bias_fill(cbuf, j->b, CO, L); /* y = b 1^T, then y += W cols */
      strop__sgemm(0, 0, CO, L, K, 1.0f, j->w, K, colbuf, L, j->b ? 1.0f : 0.0f, cbuf, L);
    }
    for (int64_t s = 0; s < nb; s++) {
      float *yn = raw ? raw : j->y + (n0 + s) * CO * P;
      if (ep && !ep->pool && strop__conv_ep_copy) { /* the epilogue in the copy */
        const float *res = ep->res ? ep->res + (n0 + s) * CO * P : NULL;
        for (int64_t o = 0; o < CO; o++)
          ep_copy(yn + o * P, cbuf + o * L + s * P, res ? res + o * P : NULL, P, ep->res_first,
                  ep->relu);
        continue;
      }
      for (int64_t o = 0; o < CO; o++)
        memcpy(yn + o * P, cbuf + o * L + s * P, sizeof(float) * (size_t)P);
      fwd_epilogue(j, n0 + s, yn);
    }
  }
}

/* Winograd forward of a chunk's images, a block at a time: each image's tiles transformed into
 * V, the a^2 products M_xi = U_xi V_xi, each image's output transformed back (with the bias)
 * and its epilogue run. */
static void wino_fwd_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int m = j->m, a2 = (m + 2) * (m + 2);
  const int64_t HW = d->h * d->w, P = d->oh * d->ow, CI = d->c_in, CO = d->c_out;
  const int64_t tpi = strop__winograd_tiles(d, m), nb = wino_block(d, m, j->chunks);
  float *base = j->chunk0 + chunk * j->per;
  float *raw = j->ep && j->ep->pool ? base : NULL;
  float *v = base + ep_len(d, 0, j->ep);
  float *mm = v + wino_v_len(d, m, j->chunks);
  float *work = mm + wino_m_len(d, m, j->chunks);
  /* filters a row at a time: this call runs row j->row's products; the first transforms the
   * tiles, the last transforms the products back (the chunk is one block) */
  const int x0 = j->row < 0 ? 0 : j->row * (m + 2), x1 = j->row < 0 ? a2 : x0 + m + 2;
  for (int64_t n0 = lo; n0 < hi; n0 += nb) {
    const int64_t nn = hi - n0 < nb ? hi - n0 : nb, T = nn * tpi;
    const int64_t pv = wplane(CI * T), pm = wplane(CO * T);
    for (int64_t s = 0; s < nn && j->row <= 0; s++)
      strop__winograd_input(d, m, j->x + (n0 + s) * CI * HW, v, T, pv, s * tpi, work);
    for (int xi = x0; xi < x1; xi++)
      strop__sgemm(0, 0, CO, T, CI, 1.0f, j->u + (xi - x0) * CO * CI, CI, v + xi * pv, T, 0.0f,
                   mm + xi * pm, T);
    if (x1 < a2) continue;
    for (int64_t s = 0; s < nn; s++) {
      float *yn = raw ? raw : j->y + (n0 + s) * CO * P;
      strop__winograd_output(d, m, mm, T, pm, s * tpi, j->b, yn, 0, work);
      fwd_epilogue(j, n0 + s, yn);
    }
  }
}

/* ---- BF16 products on vdpbf16ps (bf16_mode 1) ---- */

static const float *bwd_epilogue(const conv_job *j, int64_t n, float *buf);

/* 1 (the default): the vdpbf16ps products pack the forward's and the weight gradient's columns
 * straight from the images where col_pack_ok allows (pack_cols, pack_cols_t), the weight once
 * per call, and write y (and a pointwise conv's dx) themselves; 0: the path before them —
 * im2col writes FP32 columns, the weight is transposed and packed per block, the products go
 * through a buffer. The same bits (tests, bench_big's CONV_PACK=ab, bench_bf16conv). */
int strop__conv_bf16_direct = 1;
int strop__conv_tile_relu = 1;
int strop__conv_tile_prefetch = 1;

/* dst [cols, rows] (rows ldd apart) = src [rows, cols] (ld lds) transposed: 16 x 16 blocks
 * through registers where AVX-512 runs (the only place the vdpbf16ps path runs) */
#if defined(__x86_64__) && defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#  include <immintrin.h>

#  include "ops/bf16tile.h"

__attribute__((target("avx512f,avx512bw"))) static void transpose(const float *src, int64_t rows,
                                                                  int64_t cols, int64_t lds,
                                                                  float *dst, int64_t ldd) {
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int64_t nr = rows - i0 < 16 ? rows - i0 : 16;
    const __mmask16 ms = (__mmask16)((1u << nr) - 1u);
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t nc = cols - j0 < 16 ? cols - j0 : 16;
      const __mmask16 ml = (__mmask16)((1u << nc) - 1u);
      __m512i t[16];
      for (int64_t i = 0; i < 16; i++)
        t[i] = i < nr ? _mm512_maskz_loadu_epi32(ml, src + (i0 + i) * lds + j0)
                      : _mm512_setzero_si512();
      strop__transpose16(t);
      for (int64_t c = 0; c < nc; c++)
        _mm512_mask_storeu_epi32(dst + (j0 + c) * ldd + i0, ms, t[c]);
    }
  }
}

/* The forward's columns [K, L] of a block of images (im2col's values, the images side by side)
 * packed for the product straight from the images (strop__bf16_pack_b_fn): no FP32 columns are
 * written and read again (col_pack_ok says where). Per half panel (16 columns), each lane's
 * tap (0, 0) and the runs of lanes whose sources lie in one line: one image where stride 1 and
 * the output as wide as the input make its rows one line (ResNet's 1x1 and padded 3x3 convs,
 * P >= 16: two runs at most), else one output row (ow >= 5: four runs at most). Per row k =
 * (c kh + ki) kw + kj, the lanes whose tap falls inside the image are read run by run: a masked
 * load at stride 1; at stride 2 the run's even elements, loaded masked and gathered in
 * registers (vpermt2ps). */
enum { COL_RUNS = 4, COL_TAPS = 64 };

typedef struct col_pack {
  const strop__conv2d_dims *d;
  const float *x;     /* the block's first image */
  int64_t L;          /* its columns, nb P */
  int64_t img, chan;  /* x's strides between images and between channels: c_in h w and h w
                        for a block of images; P and L for a block's dY laid side by side */
  const void *lanes;  /* pack_cols_t: the lanes of every 32 columns (col_lanes_all), or NULL */
  const uint16_t *xh; /* pack_cols_t: the block's first image held in BF16 (x unread), or NULL */
} col_pack;

typedef struct half_lanes {
  __m512i iy, ix; /* each lane's tap (0, 0): input row and column (outside: the padding) */
  int nr;
  __mmask16 m[COL_RUNS]; /* the lanes of each run */
  int a[COL_RUNS];       /* its first lane */
  int64_t b[COL_RUNS];   /* its first lane's tap (0, 0), from x */
  __m512i idx[COL_RUNS]; /* stride 2: lane l takes element 2 (l - a) of the 32 loaded */
} half_lanes;

/* stride 1, the output as wide as the input: the rows of an image are one line */
static int col_contig(const strop__conv2d_dims *d) {
  return d->sh == 1 && d->sw == 1 && d->ow == d->w;
}

/* the live lanes of h whose tap displaced by (dy, dx) falls inside the image (h x w) */
__attribute__((target("avx512f"))) static inline __mmask16 tap_mask(const half_lanes *h,
                                                                    __mmask16 live, int32_t dy,
                                                                    int32_t dx, __m512i hh,
                                                                    __m512i ww) {
  return live & _mm512_cmplt_epu32_mask(_mm512_add_epi32(h->iy, _mm512_set1_epi32(dy)), hh) &
         _mm512_cmplt_epu32_mask(_mm512_add_epi32(h->ix, _mm512_set1_epi32(dx)), ww);
}

/* the 16 values of a row of columns at the lanes m (tap_mask) of h, the tap's offset delta */
__attribute__((target("avx512f,bmi2"))) static inline __m512 cols_row16(const half_lanes *h,
                                                                        const float *x, int sw,
                                                                        __mmask16 m,
                                                                        int64_t delta) {
  __m512 v = _mm512_setzero_ps();
  for (int r = 0; r < h->nr; r++) {
    const __mmask16 mr = m & h->m[r];
    const float *src = x + h->b[r] + delta;
    if (sw == 1) {
      v = _mm512_mask_loadu_ps(v, mr, src - h->a[r]);
      continue;
    }
    const uint32_t e = _pdep_u32((uint32_t)mr >> h->a[r], 0x55555555u);
    const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)e, src);
    const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(e >> 16), src + 16);
    v = _mm512_mask_mov_ps(v, mr, _mm512_permutex2var_ps(lo, h->idx[r], hi));
  }
  return v;
}

/* cols_row16 of images held in BF16 (x's values rounded to BF16: their bits): the same 16
 * lanes, as BF16 values. At stride 2 a run's 32 loaded values (one mask over them) give their
 * even ones by one permute of 16-bit lanes. */
__attribute__((target("avx512f,avx512bw,avx512vl,bmi2"))) static inline __m256i cols_row16_h(
    const half_lanes *h, const uint16_t *x, int sw, __mmask16 m, int64_t delta) {
  __m256i v = _mm256_setzero_si256();
  for (int r = 0; r < h->nr; r++) {
    const __mmask16 mr = m & h->m[r];
    const uint16_t *src = x + h->b[r] + delta;
    if (sw == 1) {
      v = _mm256_mask_loadu_epi16(v, mr, src - h->a[r]);
      continue;
    }
    const __mmask32 e = _pdep_u32((uint32_t)mr >> h->a[r], 0x55555555u);
    const __m512i w = _mm512_maskz_loadu_epi16(e, src);
    const __m512i idx = _mm512_castsi256_si512(_mm512_cvtepi32_epi16(h->idx[r]));
    v = _mm256_mask_mov_epi16(v, mr, _mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, w)));
  }
  return v;
}

/* hl: the lanes of columns j0 .. j0 + 31 (live: those of the block) */
__attribute__((target("avx512f"))) static void col_lanes(const strop__conv2d_dims *d, int64_t img,
                                                         int64_t j0, __mmask32 live,
                                                         half_lanes hl[2]) {
  const int64_t P = d->oh * d->ow, W = d->w;
  const int contig = col_contig(d), sw = (int)d->sw;
  int64_t s = j0 / P, oy = j0 % P / d->ow, ox = j0 % P % d->ow; /* column j0's image, output */
  for (int h = 0; h < 2; h++) {
    int32_t iy[16], ix[16];
    hl[h].nr = 0;
    for (int l = 0; l < 16; l++) {
      iy[l] = (int32_t)(oy * d->sh - d->ph);
      ix[l] = (int32_t)(ox * d->sw - d->pw);
      if (!((live >> (16 * h + l)) & 1u)) continue;
      /* a run starts at the half's first lane, an image's first column, or (not contiguous)
       * an output row's */
      if (l == 0 || (ox == 0 && (!contig || oy == 0))) {
        const int r = hl[h].nr++;
        hl[h].m[r] = 0;
        hl[h].a[r] = l;
        hl[h].b[r] = s * img + iy[l] * W + ix[l];
        if (sw == 2)
          hl[h].idx[r] = _mm512_slli_epi32(
              _mm512_sub_epi32(
                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                  _mm512_set1_epi32(l)),
              1);
      }
      hl[h].m[hl[h].nr - 1] |= (__mmask16)(1u << l);
      if (++ox == d->ow) {
        ox = 0;
        if (++oy == d->oh) oy = 0, s++;
      }
    }
    hl[h].iy = _mm512_loadu_si512(iy);
    hl[h].ix = _mm512_loadu_si512(ix);
  }
}

__attribute__((target("avx512f,avx512bw,bmi2"))) static void pack_cols(const void *ctx,
                                                                       int64_t j0, uint32_t *p) {
  const col_pack *cp = ctx;
  const strop__conv2d_dims *d = cp->d;
  const int64_t P = d->oh * d->ow, W = d->w, HW = cp->chan, CHW = cp->img, K = kdim(d);
  const int64_t kp = (K + 1) / 2;
  const int sw = (int)d->sw;
  const __mmask32 live = strop__lanes32(cp->L - j0);
  if (is_pointwise(d)) { /* row k is channel k, every tap inside: per half, one or two runs */
    const float *b0[2], *b1[2];
    __mmask16 m0[2], m1[2];
    for (int h = 0; h < 2; h++) {
      const int64_t j = j0 + 16 * h, s = j / P, r = j % P, n0 = P - r < 16 ? P - r : 16;
      const __mmask16 lv = (__mmask16)(live >> (16 * h));
      m0[h] = lv & (__mmask16)((1u << n0) - 1u);
      m1[h] = lv & (__mmask16) ~((1u << n0) - 1u);
      b0[h] = cp->x + s * CHW + r;        /* lane l reads b0[l] */
      b1[h] = cp->x + (s + 1) * CHW - n0; /* and past the image's edge b1[l] */
    }
    for (int64_t q = 0; q < kp; q++) {
      __m512 v[2][2];
      for (int t = 0; t < 2; t++)
        for (int h = 0; h < 2; h++) {
          const int64_t k = 2 * q + t;
          v[t][h] = _mm512_setzero_ps();
          if (k >= K) continue;
          v[t][h] = _mm512_maskz_loadu_ps(m0[h], b0[h] + k * HW);
          if (m1[h]) v[t][h] = _mm512_mask_loadu_ps(v[t][h], m1[h], b1[h] + k * HW);
        }
      _mm512_store_si512(p + q * 32, strop__pairs16_ps(v[0][0], v[1][0]));
      _mm512_store_si512(p + q * 32 + 16, strop__pairs16_ps(v[0][1], v[1][1]));
    }
    return;
  }
  half_lanes hl[2];
  col_lanes(d, cp->img, j0, live, hl);
  const __mmask16 lv0 = (__mmask16)live, lv1 = (__mmask16)(live >> 16);
  const __m512i hh = _mm512_set1_epi32((int32_t)d->h), ww = _mm512_set1_epi32((int32_t)W);
  const float *x = cp->x;
  /* each tap's lanes inside the image, per half: the same for every input channel */
  const int taps = (int)(d->kh * d->kw);
  __mmask16 tm[2][COL_TAPS];
  int64_t toff[COL_TAPS];
  for (int t = 0; t < taps; t++) {
    const int32_t dy = (int32_t)(t / d->kw * d->dh), dx = (int32_t)(t % d->kw * d->dw);
    tm[0][t] = tap_mask(&hl[0], lv0, dy, dx, hh, ww);
    tm[1][t] = tap_mask(&hl[1], lv1, dy, dx, hh, ww);
    toff[t] = dy * W + dx;
  }
  int64_t c = 0;
  int t = 0; /* row 2q's input channel and tap */
  for (int64_t q = 0; q < kp; q++) {
    int64_t delta = c * HW + toff[t];
    const __m512 a0 = cols_row16(&hl[0], x, sw, tm[0][t], delta);
    const __m512 a1 = cols_row16(&hl[1], x, sw, tm[1][t], delta);
    if (++t == taps) t = 0, c++;
    __m512 b0 = _mm512_setzero_ps(), b1 = b0;
    if (2 * q + 1 < K) {
      delta = c * HW + toff[t];
      b0 = cols_row16(&hl[0], x, sw, tm[0][t], delta);
      b1 = cols_row16(&hl[1], x, sw, tm[1][t], delta);
      if (++t == taps) t = 0, c++;
    }
    _mm512_store_si512(p + q * 32, strop__pairs16_ps(a0, b0));
    _mm512_store_si512(p + q * 32 + 16, strop__pairs16_ps(a1, b1));
  }
}

/* The weight gradient's columns read transposed (dW = dY cols^T: op(B) = cols^T, as
 * strop__bf16_gemm_f32 packs B stored [K, L] with tb 1) straight from the images: the panel's
 * 32 taps j0 .. j0 + 31, each a row of 32 columns at a time read as pack_cols reads them,
 * rounded into 16 pairs of neighbouring columns (or, from images held in BF16, cp->xh, taken
 * as they are: cols_row16_h); 16 taps' pairs transposed (16 x 16). */
__attribute__((target("avx512f,avx512bw,avx512vl,bmi2"))) static void pack_cols_t(const void *ctx,
                                                                                  int64_t j0,
                                                                                  uint32_t *p) {
  const col_pack *cp = ctx;
  const strop__conv2d_dims *d = cp->d;
  const int64_t W = d->w, HW = cp->chan, K = kdim(d), kp = (cp->L + 1) / 2;
  const int sw = (int)d->sw, nt = K - j0 < 32 ? (int)(K - j0) : 32;
  int32_t ty[32], tx[32];
  int64_t tdel[32];
  for (int c = 0; c < nt; c++) { /* tap k = (ci kh + ki) kw + kj */
    const int64_t k = j0 + c, kj = k % d->kw, ki = k / d->kw % d->kh, ci = k / (d->kw * d->kh);
    ty[c] = (int32_t)(ki * d->dh);
    tx[c] = (int32_t)(kj * d->dw);
    tdel[c] = ci * HW + ty[c] * W + tx[c];
  }
  const __m512i hh = _mm512_set1_epi32((int32_t)d->h), ww = _mm512_set1_epi32((int32_t)W);
  for (int64_t q0 = 0; q0 < kp; q0 += 16) {
    const __mmask32 live = strop__lanes32(cp->L - 2 * q0);
    half_lanes hb[2];
    const half_lanes *hl = hb;
    if (cp->lanes) hl = (const half_lanes *)cp->lanes + q0 / 8;
    else col_lanes(d, cp->img, 2 * q0, live, hb);
    const int64_t nq = kp - q0 < 16 ? kp - q0 : 16;
    for (int h = 0; h < 2; h++) {
      __m512i t[16];
      for (int c = 0; c < 16; c++) {
        const int tc = 16 * h + c;
        if (tc >= nt) {
          t[c] = _mm512_setzero_si512();
          continue;
        }
        if (cp->xh) { /* the held values are their own rounding */
          const __m256i v0 = cols_row16_h(
              &hl[0], cp->xh, sw, tap_mask(&hl[0], (__mmask16)live, ty[tc], tx[tc], hh, ww),
              tdel[tc]);
          const __m256i v1 = cols_row16_h(
              &hl[1], cp->xh, sw,
              tap_mask(&hl[1], (__mmask16)(live >> 16), ty[tc], tx[tc], hh, ww), tdel[tc]);
          /* a nonzero value that rounded to zero is held as a marker: the zero, with its sign */
          t[c] = strop__bf16_held_rounded32(
              _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1));
          continue;
        }
        const __m512 v0 = cols_row16(&hl[0], cp->x, sw,
                                     tap_mask(&hl[0], (__mmask16)live, ty[tc], tx[tc], hh, ww),
                                     tdel[tc]);
        const __m512 v1 = cols_row16(
            &hl[1], cp->x, sw, tap_mask(&hl[1], (__mmask16)(live >> 16), ty[tc], tx[tc], hh, ww),
            tdel[tc]);
        t[c] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm512_cvtepi32_epi16(strop__rne16(_mm512_castps_si512(v0)))),
            _mm512_cvtepi32_epi16(strop__rne16(_mm512_castps_si512(v1))), 1);
      }
      strop__transpose16(t);
      for (int64_t q = 0; q < nq; q++) _mm512_store_si512(p + (q0 + q) * 32 + 16 * h, t[q]);
    }
  }
}
/* bytes of the lanes of L columns (col_lanes_all), a multiple of 64 */
static size_t lanes_bytes(int64_t L) { return (size_t)((L + 31) / 32) * 2 * sizeof(half_lanes); }

/* the lanes of cp's columns, 32 at a time, into buf (64-byte aligned, lanes_bytes(cp->L)): the
 * same for every panel of taps pack_cols_t packs from them, so found once per product */
static void col_lanes_all(const col_pack *cp, void *buf) {
  half_lanes *hl = buf;
  for (int64_t j = 0; j < cp->L; j += 32)
    col_lanes(cp->d, cp->img, j, strop__lanes32(cp->L - j), hl + j / 16);
}

/* ---- BF16 Winograd F(2x2, 3x3) on AVX-512: the tile transform writes the products' packed
 *      panels itself, and the output transform reads the products 16 tiles at a time. The
 *      same operations in the same order as winograd.c's transforms for m = 2 (down the
 *      columns, then across), so the tiles and outputs are theirs bit for bit. ---- */

/* lanes l of 16 with lo <= l < hi */
static inline __mmask16 wbf_span(int64_t lo, int64_t hi) {
  lo = lo < 0 ? 0 : lo > 16 ? 16 : lo;
  hi = hi < 0 ? 0 : hi > 16 ? 16 : hi;
  return hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

/* The tiles of tile rows ty0 .. ty1 - 1 of image x (channels cs floats apart), B^T p B of each
 * 4x4 patch, rounded to BF16 and paired along the channels straight into the 16 planes' packed
 * panels (plane xi at vp + xi vps; panels of 32 columns, kp pairs of channels each; the strip's
 * tiles at columns col0 ..). A patch's taps are read by masked loads: zeros in the padding. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void wbf_in_rows(
    const strop__conv2d_dims *d, const float *x, int64_t cs, int64_t ty0, int64_t ty1,
    uint32_t *vp, int64_t vps, int64_t col0) {
  const int64_t H = d->h, W = d->w, CI = d->c_in, txn = (d->ow + 1) / 2, kp = (CI + 1) / 2;
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  static const int off[4] = {0, 16, 2, 18};
  static const int16_t pairs[32] __attribute__((aligned(64))) = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i pair16 = _mm512_load_si512(pairs);
  float v0[16][16] __attribute__((aligned(64)));
  for (int64_t q = 0; q < kp; q++)
    for (int64_t ty = ty0; ty < ty1; ty++)
      for (int64_t tx0 = 0; tx0 < txn; tx0 += 16) {
        const int64_t nl = txn - tx0 < 16 ? txn - tx0 : 16;
        __mmask16
            lm[4]; /* the lanes of each load inside the row: input column 2 tx0 + o - pw + l */
        for (int e = 0; e < 4; e++) {
          const int64_t x0 = 2 * tx0 + off[e] - d->pw;
          lm[e] = wbf_span(-x0, W - x0);
        }
        for (int h = 0; h < 2; h++) {
          const int64_t c = 2 * q + h;
          __m512 dk[4][4];
          for (int l = 0; l < 4; l++) {
            const int64_t yy = 2 * ty - d->ph + l;
            __m512 ld[4];
            for (int e = 0; e < 4; e++) {
              if (c >= CI || yy < 0 || yy >= H || !lm[e]) {
                ld[e] = _mm512_setzero_ps();
                continue;
              }
              /* the first lane's address may lie before the row: its lanes are masked off */
              const uintptr_t at = (uintptr_t)(x + c * cs + yy * W) +
                                   (uintptr_t)((2 * tx0 + off[e] - d->pw) *
                                               (int64_t)sizeof(float));
              ld[e] = _mm512_maskz_loadu_ps(lm[e], (const void *)at);
            }
            dk[l][0] = _mm512_permutex2var_ps(ld[0], ie, ld[1]);
            dk[l][1] = _mm512_permutex2var_ps(ld[0], io, ld[1]);
            dk[l][2] = _mm512_permutex2var_ps(ld[2], ie, ld[3]);
            dk[l][3] = _mm512_permutex2var_ps(ld[2], io, ld[3]);
          }
          __m512 t[4][4]; /* t[i][k]: B^T down the rows, column k of each tile */
          for (int k = 0; k < 4; k++) {
            t[0][k] = _mm512_sub_ps(dk[0][k], dk[2][k]);
            t[1][k] = _mm512_add_ps(dk[1][k], dk[2][k]);
            t[2][k] = _mm512_sub_ps(dk[2][k], dk[1][k]);
            t[3][k] = _mm512_sub_ps(dk[1][k], dk[3][k]);
          }
          for (int i = 0; i < 4; i++) {
            __m512 v[4];
            v[0] = _mm512_sub_ps(t[i][0], t[i][2]);
            v[1] = _mm512_add_ps(t[i][1], t[i][2]);
            v[2] = _mm512_sub_ps(t[i][2], t[i][1]);
            v[3] = _mm512_sub_ps(t[i][1], t[i][3]);
            for (int j = 0; j < 4; j++) {
              if (!h) {
                _mm512_store_ps(v0[i * 4 + j], v[j]);
                continue;
              }
              const int xi = i * 4 + j;
              /* vcvtne2ps2bf16 rounds as strop__pairs16_ps does but for denormals, which it
               * makes zeros of their sign: vdpbf16ps reads them as zeros anyway */
              const __m512i pr = _mm512_permutexvar_epi16(
                  pair16, (__m512i)_mm512_cvtne2ps_pbh(v[j], _mm512_load_ps(v0[xi])));
              const int64_t col = col0 + (ty - ty0) * txn + tx0, o = col % 32, n1 = 32 - o;
              uint32_t *base = vp + xi * vps + (col / 32) * kp * 32 + q * 32;
              if (n1 >= nl) {
                _mm512_mask_storeu_epi32(base + o, (__mmask16)((1u << nl) - 1u), pr);
              } else {
                _mm512_mask_storeu_epi32(base + o, (__mmask16)((1u << n1) - 1u), pr);
                const __m512i sh = _mm512_permutexvar_epi32(
                    _mm512_add_epi32(iota, _mm512_set1_epi32((int)n1)), pr);
                _mm512_mask_storeu_epi32(base + kp * 32, (__mmask16)((1u << (nl - n1)) - 1u), sh);
              }
            }
          }
        }
      }
}

/* The products mm [16, c_out, ld] (planes ps apart) of the tile rows ty0 .. ty1 - 1 at columns
 * col0 .. -> y's rows of them: A^T M A of each tile plus b[o], 16 tiles at a time; added to
 * y's values (y + that) with add. */
__attribute__((target("avx512f"))) static void wbf_out_rows(const strop__conv2d_dims *d,
                                                            const float *mm, int64_t ld,
                                                            int64_t ps, int64_t col0, int64_t ty0,
                                                            int64_t ty1, const float *b, float *y,
                                                            int add) {
  const int64_t OH = d->oh, OW = d->ow, CO = d->c_out, txn = (OW + 1) / 2;
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi = _mm512_add_epi32(ilo, _mm512_set1_epi32(8));
  for (int64_t o = 0; o < CO; o++) {
    const __m512 bias = _mm512_set1_ps(b ? b[o] : 0.0f);
    float *yo = y + o * OH * OW;
    for (int64_t ty = ty0; ty < ty1; ty++)
      for (int64_t tx0 = 0; tx0 < txn; tx0 += 16) {
        const int64_t nl = txn - tx0 < 16 ? txn - tx0 : 16;
        const __mmask16 live = (__mmask16)((1u << nl) - 1u);
        const float *mt = mm + o * ld + col0 + (ty - ty0) * txn + tx0;
        __m512 t[4][2]; /* across: t[i][j'] = (M A)_i j' */
        for (int i = 0; i < 4; i++) {
          const __m512 s0 = _mm512_maskz_loadu_ps(live, mt + (i * 4 + 0) * ps);
          const __m512 s1 = _mm512_maskz_loadu_ps(live, mt + (i * 4 + 1) * ps);
          const __m512 s2 = _mm512_maskz_loadu_ps(live, mt + (i * 4 + 2) * ps);
          const __m512 s3 = _mm512_maskz_loadu_ps(live, mt + (i * 4 + 3) * ps);
          t[i][0] = _mm512_add_ps(_mm512_add_ps(s0, s1), s2);
          t[i][1] = _mm512_sub_ps(_mm512_sub_ps(s1, s2), s3);
        }
        for (int i = 0; i < 2; i++) { /* down: output row 2 ty + i */
          const int64_t row = 2 * ty + i;
          if (row >= OH) break;
          __m512 r[2];
          for (int j = 0; j < 2; j++)
            r[j] = i == 0 ? _mm512_add_ps(_mm512_add_ps(t[0][j], t[1][j]), t[2][j])
                          : _mm512_sub_ps(_mm512_sub_ps(t[1][j], t[2][j]), t[3][j]);
          r[0] = _mm512_add_ps(r[0], bias);
          r[1] = _mm512_add_ps(r[1], bias);
          const int64_t x0 = 2 * tx0, nc = OW - x0 < 2 * nl ? OW - x0 : 2 * nl;
          const __mmask32 cm = strop__lanes32(nc);
          float *yr = yo + row * OW + x0;
          __m512 o0 = _mm512_permutex2var_ps(r[0], ilo, r[1]);
          __m512 o1 = _mm512_permutex2var_ps(r[0], ihi, r[1]);
          if (add) {
            o0 = _mm512_add_ps(_mm512_maskz_loadu_ps((__mmask16)cm, yr), o0);
            o1 = _mm512_add_ps(_mm512_maskz_loadu_ps((__mmask16)(cm >> 16), yr + 16), o1);
          }
          _mm512_mask_storeu_ps(yr, (__mmask16)cm, o0);
          _mm512_mask_storeu_ps(yr + 16, (__mmask16)(cm >> 16), o1);
        }
      }
  }
}

#else
static void wbf_in_rows(const strop__conv2d_dims *d, const float *x, int64_t cs, int64_t ty0,
                        int64_t ty1, uint32_t *vp, int64_t vps, int64_t col0) {
  (void)d, (void)x, (void)cs, (void)ty0, (void)ty1, (void)vp, (void)vps, (void)col0;
}
static void wbf_out_rows(const strop__conv2d_dims *d, const float *mm, int64_t ld, int64_t ps,
                         int64_t col0, int64_t ty0, int64_t ty1, const float *b, float *y,
                         int add) {
  (void)d, (void)mm, (void)ld, (void)ps, (void)col0, (void)ty0, (void)ty1, (void)b, (void)y;
  (void)add;
}
static void transpose(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst,
                      int64_t ldd) {
  for (int64_t i = 0; i < rows; i++)
    for (int64_t c = 0; c < cols; c++) dst[c * ldd + i] = src[i * lds + c];
}
typedef struct col_pack {
  const strop__conv2d_dims *d;
  const float *x;
  int64_t L, img, chan;
  const void *lanes;
  const uint16_t *xh;
} col_pack;
static size_t lanes_bytes(int64_t L) {
  (void)L;
  return 0;
}
static void col_lanes_all(const col_pack *cp, void *buf) { (void)cp, (void)buf; }
static void pack_cols(const void *ctx, int64_t j0, uint32_t *p) { (void)ctx, (void)j0, (void)p; }
static void pack_cols_t(const void *ctx, int64_t j0, uint32_t *p) {
  (void)ctx, (void)j0, (void)p;
}
#endif

/* vdpbf16ps: the tiles of tile rows ty0 .. ty1 - 1 of nn images (image s at x + s is, channels
 * cs apart) into the 16 planes' packed panels at v (wbf_in_rows; the last panel's columns past
 * the strip's T zeroed), then the 16 products M_xi = U_xi V_xi into mm (planes pm apart), U's
 * planes at u, uplane floats apart: wbf_fwd_chunk's and wbf_dx_block's strip */
static void wbf_strip_products(const strop__conv2d_dims *d, const float *u, int64_t uplane,
                               const float *x, int64_t is, int64_t cs, int64_t nn, int64_t ty0,
                               int64_t ty1, float *v, float *mm) {
  const int64_t CI = d->c_in, CO = d->c_out, kp = (CI + 1) / 2;
  const int64_t T = nn * (ty1 - ty0) * ((d->ow + 1) / 2), pm = wplane(CO * T);
  const int64_t np = (T + 31) / 32, vps = r16(np * kp * 32);
  uint32_t *vp = (uint32_t *)(void *)v;
  if (T % 32) /* the last panel's columns past T */
    for (int xi = 0; xi < WBF_A2; xi++)
      memset(vp + xi * vps + (np - 1) * kp * 32, 0, sizeof(uint32_t) * (size_t)(kp * 32));
  for (int64_t s = 0; s < nn; s++)
    wbf_in_rows(d, x + s * is, cs, ty0, ty1, vp, vps, s * (T / nn));
  for (int xi = 0; xi < WBF_A2; xi++) {
    const uint32_t *ap = (const uint32_t *)(const void *)(u + xi * uplane);
    strop__bf16_gemm_f32_prepacked(CO, T, CI, ap, vp + xi * vps, 0.0f, mm + xi * pm, T);
  }
}

/* BF16 Winograd forward of a chunk's images (wino_bf): per block of whole images or strip of
 * an image's tile rows (wbf_split), the tiles transformed (on vdpbf16ps straight into the
 * products' packed panels; on the fallback into FP32 planes, then rounded), the 16 products
 * M_xi = U_xi V_xi with FP32 sums, the products transformed back (with the bias) into the
 * image's rows, and its epilogue once its last strip is in. */
static void wbf_fwd_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t HW = d->h * d->w, P = d->oh * d->ow, CI = d->c_in, CO = d->c_out;
  const int64_t txn = (d->ow + 1) / 2, tyn = (d->oh + 1) / 2, cols = wbf_cols(d, j->chunks);
  const int64_t vpl = wbf_vplane(d, cols);
  int64_t nb, rows;
  wbf_split(d, j->chunks, &nb, &rows);
  float *base = j->chunk0 + chunk * j->per;
  float *raw = j->ep && j->ep->pool ? base : NULL;
  float *v = base + ep_len(d, 0, j->ep);
  float *mm = v + WBF_A2 * vpl;
  float *work = mm + WBF_A2 * wplane(CO * cols);
  for (int64_t n0 = lo; n0 < hi; n0 += nb) {
    const int64_t nn = hi - n0 < nb ? hi - n0 : nb;
    for (int64_t ty0 = 0; ty0 < tyn; ty0 += rows) {
      const int64_t ty1 = ty0 + rows < tyn ? ty0 + rows : tyn, ts = (ty1 - ty0) * txn;
      const int64_t T = nn * ts, pv = wplane(CI * T), pm = wplane(CO * T);
      if (j->wbf == 1) {
        wbf_strip_products(d, j->u, j->uplane, j->x + n0 * CI * HW, CI * HW, HW, nn, ty0, ty1, v,
                           mm);
      } else { /* the fallback: FP32 tiles, rounded, and the FP32 product of the rounded values */
        for (int64_t s = 0; s < nn; s++)
          strop__winograd_input_rows(d, WBF_M, j->x + (n0 + s) * CI * HW, v, T, pv, s * ts, ty0,
                                     ty1, work);
        for (int xi = 0; xi < WBF_A2; xi++) {
          float *vx = v + xi * pv;
          strop__bf16_round_f32(vx, vx, (size_t)(CI * T));
          strop__sgemm(0, 0, CO, T, CI, 1.0f, j->u + xi * j->uplane, CI, vx, T, 0.0f,
                       mm + xi * pm, T);
        }
      }
      for (int64_t s = 0; s < nn; s++) {
        float *yn = raw ? raw : j->y + (n0 + s) * CO * P;
        if (j->wbf == 1) wbf_out_rows(d, mm, T, pm, s * ts, ty0, ty1, j->b, yn, 0);
        else
          strop__winograd_output_rows(d, WBF_M, mm, T, pm, s * ts, ty0, ty1, j->b, yn, 0, work);
        if (ty1 == tyn) fwd_epilogue(j, n0 + s, yn);
      }
    }
  }
}

/* Forward of a chunk's images, a block of nb at a time (bf16_block): their columns [K, nb P]
 * side by side (a pointwise conv's images themselves when alone), C = W cols on vdpbf16ps with
 * the weight transposed in j->waug, then each image's rows plus the FP32 bias into y (a lone
 * image's product is written in place) and its epilogue. */
static void bf16_fwd_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t K = kdim(d), P = d->oh * d->ow, HW = d->h * d->w, CO = d->c_out;
  const int64_t nbm = bf16_block(d, j->chunks);
  float *base = j->chunk0 + chunk * j->per;
  float *raw = j->ep && j->ep->pool ? base : NULL;
  float *cols = base + ep_len(d, 0, j->ep);
  float *cbuf = cols + (fwd_cols_needed(d, nbm) ? r16(K * nbm * P) : 0);
  void *work = cbuf + (fwd_cbuf_needed(d, nbm, j->ep) ? r16(CO * nbm * P) : 0);
  const int pw = is_pointwise(d);
  const int direct = j->ap && !fwd_cols_needed(d, nbm);
  /* the epilogue without a pool (a residual sum, a relu) in the tiles' stores where the
   * product writes y itself */
  const int tile_ep = strop__conv_tile_relu && j->ep && !j->ep->pool;
  for (int64_t n0 = lo; n0 < hi; n0 += nbm) {
    const int64_t nb = hi - n0 < nbm ? hi - n0 : nbm, L = nb * P;
    /* the product straight into y (or a lone image's raw output) with the bias, when its
     * tiles cross one image's edge at most */
    float *to = !j->ap || (nb > 1 && (raw || P < 32)) ? NULL : raw ? raw : j->y + n0 * CO * P;
    const strop__bf16_c_layout lay = {
        .period = P,
        .stride = CO * P,
        .add = j->b,
        .relu = tile_ep && j->ep->relu,
        .res = tile_ep && j->ep->res ? j->ep->res + n0 * CO * P : NULL,
        .res_first = tile_ep && j->ep->res_first,
        .prefetch = strop__conv_tile_prefetch};
    float *c = to ? to : nb > 1 ? cbuf : raw ? raw : j->y + n0 * CO * P;
    const strop__bf16_c_layout *cl = to ? &lay : NULL;
    const int64_t ldc = to ? P : L;
    if (direct) {
      const col_pack cp = {d, j->x + n0 * d->c_in * HW, L, d->c_in * HW, HW, NULL, NULL};
      strop__bf16_gemm_f32_packed(CO, L, K, j->ap, NULL, 0, pack_cols, &cp, 0.0f, c, ldc, cl,
                                  work);
    } else {
      const float *bm = cols;
      for (int64_t s = 0; s < nb; s++) {
        const float *xn = j->x + (n0 + s) * d->c_in * HW;
        if (!pw) im2col(d, xn, cols + s * P, L);
        else if (nb == 1) bm = xn;
        else
          for (int64_t ch = 0; ch < d->c_in; ch++)
            memcpy(cols + ch * L + s * P, xn + ch * P, sizeof(float) * (size_t)P);
      }
      if (j->ap)
        strop__bf16_gemm_f32_packed(CO, L, K, j->ap, bm, L, NULL, NULL, 0.0f, c, ldc, cl, work);
      else strop__bf16_gemm_f32(1, 0, CO, L, K, j->waug, CO, bm, L, 0.0f, c, L, work);
    }
    for (int64_t s = 0; s < nb; s++) {
      float *yn = raw ? raw : j->y + (n0 + s) * CO * P;
      if (to) {
        if (!tile_ep) fwd_epilogue(j, n0 + s, yn);
        continue;
      }
      for (int64_t o = 0; o < CO; o++) {
        const float bo = j->b ? j->b[o] : 0.0f, *src = c + o * L + s * P;
        float *dst = yn + o * P;
        if (src == dst) {
          if (j->b)
            for (int64_t p = 0; p < P; p++) dst[p] += bo;
        } else {
          for (int64_t p = 0; p < P; p++) dst[p] = src[p] + bo;
        }
      }
      fwd_epilogue(j, n0 + s, yn);
    }
  }
}

/* The input gradient of a block of nb images (from n0) as the BF16 Winograd forward of their
 * output gradient g (image s at g + s P, channels cs apart) with the flipped weight's filters
 * j->u (wbf_dx): as wbf_fwd_chunk, by dx's conv j->dd's blocks of whole images or strips of an
 * image's tile rows (wbf_split) in area (wbf_dx_len), each image's rows written into dx, or
 * added to it unless j->assign. */
static void wbf_dx_block(const conv_job *j, const float *g, int64_t cs, int64_t n0, int64_t nb,
                         float *area) {
  const strop__conv2d_dims *e = &j->dd;
  const int64_t P = j->d->oh * j->d->ow, HW = e->oh * e->ow, CO = e->c_out;
  const int64_t txn = (e->ow + 1) / 2, tyn = (e->oh + 1) / 2;
  int64_t nbw, rows;
  wbf_split(e, j->chunks, &nbw, &rows);
  float *mm = area + WBF_A2 * wbf_vplane(e, wbf_cols(e, j->chunks));
  for (int64_t s0 = 0; s0 < nb; s0 += nbw) {
    const int64_t nn = nb - s0 < nbw ? nb - s0 : nbw;
    for (int64_t ty0 = 0; ty0 < tyn; ty0 += rows) {
      const int64_t ty1 = ty0 + rows < tyn ? ty0 + rows : tyn, ts = (ty1 - ty0) * txn;
      const int64_t T = nn * ts, pm = wplane(CO * T);
      wbf_strip_products(e, j->u, j->uplane, g + s0 * P, P, cs, nn, ty0, ty1, area, mm);
      for (int64_t s = 0; s < nn; s++)
        wbf_out_rows(e, mm, T, pm, s * ts, ty0, ty1, NULL, j->dx + (n0 + s0 + s) * CO * HW,
                     !j->assign);
    }
  }
}

/* Backward of a chunk's images, a block at a time: the block's output gradient [c_out, L]; the
 * input gradient as the forward of dY with the flipped weight (bf16_dx), or a pointwise conv's
 * W^T dY written into dx, or else the columns W^T dY [K, L] each image's added back (col2im); the
 * weight gradient dY cols^T straight from the block's dY and columns (the product transposes
 * while it packs); the bias gradient from the unrounded dY in FP32. */
static void bf16_bwd_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t K = kdim(d), P = d->oh * d->ow, HW = d->h * d->w, CO = d->c_out, CI = d->c_in;
  const int64_t nbm = bf16_block(d, j->chunks), Lm = nbm * P;
  const int pw = is_pointwise(d);
  float *part = j->chunk0 + chunk * j->per;
  float *epa = part + bf16_part_len(d, j->chunks);
  float *cols = epa + ep_len(d, 1, j->ep);
  float *dyb = cols + (bwd_cols_needed(d, nbm) ? r16(K * Lm) : 0);
  float *lanes = dyb + r16(CO * Lm);
  float *wv = lanes + bwd_lanes_len(d, nbm);
  void *work = wv + wbf_dx_len(d, j->chunks);
  float *dw = j->dw, *db = j->db;
  if (j->partial) {
    memset(part, 0, sizeof(float) * (size_t)part_len(d));
    if (dw) dw = part;
    if (db) db = part + CO * K;
  }
  for (int64_t n0 = lo; n0 < hi; n0 += nbm) {
    const int64_t nb = hi - n0 < nbm ? hi - n0 : nbm, L = nb * P;
    const float *g = dyb;
    for (int64_t s = 0; s < nb; s++) {
      const int64_t n = n0 + s;
      const float *dyn = j->ep ? bwd_epilogue(j, n, epa) : j->dy + n * CO * P;
      if (db) strop__sgemm(0, 0, CO, 1, P, 1.0f, dyn, P, j->ones, 1, 1.0f, db, 1);
      if (nb == 1) g = dyn;
      else
        for (int64_t o = 0; o < CO; o++)
          memcpy(dyb + o * L + s * P, dyn + o * P, sizeof(float) * (size_t)P);
    }
    if (j->dx && j->dxw) {
      wbf_dx_block(j, g, nb > 1 ? L : P, n0, nb, wv);
    } else if (j->dx && j->dxd) {
      /* dx = conv(dY, w') as a forward: dY's columns packed from the block's dY (side by
       * side: images P apart, channels L), the product written into (or added to) dx */
      const col_pack cp = {&j->dd, g, nb * HW, P, L, NULL, NULL};
      const strop__bf16_c_layout lay = {HW, CI * HW, NULL, 0, NULL, 0, 0};
      strop__bf16_gemm_f32_packed(CI, nb * HW, kdim(&j->dd), j->ap, NULL, 0, pack_cols, &cp,
                                  j->assign ? 0.0f : 1.0f, j->dx + n0 * CI * HW, HW, &lay, work);
    } else if (j->dx && j->ap && pw && (nb == 1 || P >= 32)) {
      /* pointwise, the weight packed once: the product writes (or adds into) the image
       * gradients themselves */
      const strop__bf16_c_layout lay = {P, CI * HW, NULL, 0, NULL, 0, 0};
      strop__bf16_gemm_f32_packed(K, L, CO, j->ap, g, L, NULL, NULL, j->assign ? 0.0f : 1.0f,
                                  j->dx + n0 * CI * HW, P, &lay, work);
    } else if (j->dx) {
      /* pointwise: the columns are the image gradients' rows themselves */
      if (j->ap)
        strop__bf16_gemm_f32_packed(K, L, CO, j->ap, g, L, NULL, NULL, 0.0f, cols, L, NULL, work);
      else strop__bf16_gemm_f32(1, 0, K, L, CO, j->w, K, g, L, 0.0f, cols, L, work);
      for (int64_t s = 0; s < nb; s++) {
        float *dxn = j->dx + (n0 + s) * CI * HW;
        if (pw) {
          for (int64_t c = 0; c < CI; c++) {
            if (j->assign) memcpy(dxn + c * P, cols + c * L + s * P, sizeof(float) * (size_t)P);
            else add_into(dxn + c * P, cols + c * L + s * P, P);
          }
          continue;
        }
        if (j->assign) memset(dxn, 0, sizeof(float) * (size_t)(CI * HW));
        col2im(d, cols + s * P, L, dxn);
      }
    }
    if (dw) {
      /* dY [CO, L] times the columns [K, L] read transposed: the product packs both operands
       * from these layouts itself, so no transposed copies (pointwise: a lone image's rows
       * are its columns) */
      if (j->xh || ((!pw || nb > 1) && col_pack_ok(d, nbm))) { /* packed from the images */
        col_pack cp = {d, NULL, L, CI * HW, HW, lanes, NULL};
        if (j->xh) cp.xh = j->xh + n0 * CI * HW; /* held: any block (reads_x_held) */
        else cp.x = j->x + n0 * CI * HW;
        col_lanes_all(&cp, lanes);
        strop__bf16_gemm_f32_packb(0, CO, K, L, g, L, pack_cols_t, &cp, 1.0f, dw, K, work);
        continue;
      }
      const float *bc = cols;
      for (int64_t s = 0; s < nb; s++) {
        const float *xn = j->x + (n0 + s) * CI * HW;
        if (!pw) im2col(d, xn, cols + s * P, L);
        else if (nb == 1) bc = xn;
        else
          for (int64_t c = 0; c < CI; c++)
            memcpy(cols + c * L + s * P, xn + c * P, sizeof(float) * (size_t)P);
      }
      strop__bf16_gemm_f32(0, 1, CO, K, L, g, L, bc, L, 1.0f, dw, K, work);
    }
  }
}

static void wino_filter_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  strop__winograd_filter_row(j->d, j->m, j->w, 0, j->row, j->u, lo, hi);
}

/* the input gradient's filters: rotated and transposed */
static void wino_dx_filter_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  strop__winograd_filter_row(&j->dd, j->m, j->w, 1, j->row, j->u, lo, hi);
}

/* The epilogue's pool over one image of c_out planes (unused without a pool). */
static strop__pool2d_dims image_pool(const strop__conv2d_dims *d,
                                     const strop__conv2d_epilogue *ep) {
  strop__pool2d_dims pd;
  memset(&pd, 0, sizeof pd);
  if (!ep || !ep->pool) return pd;
  pd = ep->pd;
  pd.n = 1;
  pd.c = d->c_out;
  pd.h = d->oh;
  pd.w = d->ow;
  return pd;
}

/* ---- depthwise: input channel c feeds output channels c m .. c m + m - 1 (m = c_out / c_in),
 *      each a kh x kw stencil over its own plane ---- */

typedef struct dw_job {
  const strop__conv2d_dims *d;
  const float *x, *w, *b, *dy;
  float *y, *dx, *dw, *db;
  int assign; /* backward: dx is written, not added to */
} dw_job;

/* y plane [oh, ow] = b + the stencil of weights k [kh, kw] over plane x [h, w] */
static void dw_plane_fwd(const strop__conv2d_dims *d, const float *x, const float *k, float b,
                         float *y) {
  const int64_t OW = d->ow, W = d->w, P = d->oh * OW;
  for (int64_t p = 0; p < P; p++) y[p] = b;
  for (int64_t ki = 0; ki < d->kh; ki++) {
    int64_t offy = ki * d->dh - d->ph, ylo, yhi;
    valid_range(offy, d->sh, d->h, d->oh, &ylo, &yhi);
    for (int64_t kj = 0; kj < d->kw; kj++) {
      int64_t offx = kj * d->dw - d->pw, xlo, xhi;
      valid_range(offx, d->sw, W, OW, &xlo, &xhi);
      const float wv = k[ki * d->kw + kj];
      for (int64_t oy = ylo; oy < yhi; oy++) {
        const float *restrict src = x + (oy * d->sh + offy) * W + offx;
        float *restrict dst = y + oy * OW;
        if (d->sw == 1) {
          for (int64_t ox = xlo; ox < xhi; ox++) dst[ox] += wv * src[ox];
        } else {
          const int64_t s = d->sw;
          for (int64_t ox = xlo; ox < xhi; ox++) dst[ox] += wv * src[ox * s];
        }
      }
    }
  }
}

/* The backward of one output plane: dk [kh, kw] and *db gain the sums, dx plane (if any)
 * gains the stencil's transpose. */
static void dw_plane_bwd(const strop__conv2d_dims *d, const float *x, const float *k,
                         const float *dy, float *dx, float *dk, float *db) {
  const int64_t OW = d->ow, W = d->w, P = d->oh * OW;
  if (db) {
    float s = 0.0f;
    for (int64_t p = 0; p < P; p++) s += dy[p];
    *db += s;
  }
  for (int64_t ki = 0; ki < d->kh; ki++) {
    int64_t offy = ki * d->dh - d->ph, ylo, yhi;
    valid_range(offy, d->sh, d->h, d->oh, &ylo, &yhi);
    for (int64_t kj = 0; kj < d->kw; kj++) {
      int64_t offx = kj * d->dw - d->pw, xlo, xhi;
      valid_range(offx, d->sw, W, OW, &xlo, &xhi);
      const float wv = k[ki * d->kw + kj];
      float acc = 0.0f;
      for (int64_t oy = ylo; oy < yhi; oy++) {
        const int64_t r = (oy * d->sh + offy) * W + offx;
        const float *restrict g = dy + oy * OW;
        if (d->sw == 1) {
          const float *restrict src = x + r;
          if (dk)
            for (int64_t ox = xlo; ox < xhi; ox++) acc += g[ox] * src[ox];
          if (dx) {
            float *restrict dst = dx + r;
            for (int64_t ox = xlo; ox < xhi; ox++) dst[ox] += wv * g[ox];
          }
        } else {
          const int64_t s = d->sw;
          const float *restrict src = x + r;
          if (dk)
            for (int64_t ox = xlo; ox < xhi; ox++) acc += g[ox] * src[ox * s];
          if (dx) {
            float *restrict dst = dx + r;
            for (int64_t ox = xlo; ox < xhi; ox++) dst[ox * s] += wv * g[ox];
          }
        }
      }
      if (dk) dk[ki * d->kw + kj] += acc;
    }
  }
}

/* forward: items are (image, output channel) planes, each written by one call */
static void dw_fwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const dw_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t m = d->c_out / d->c_in, K = d->kh * d->kw, HW = d->h * d->w, P = d->oh * d->ow;
  for (int64_t i = lo; i < hi; i++) {
    const int64_t n = i / d->c_out, o = i % d->c_out;
    dw_plane_fwd(d, j->x + (n * d->c_in + o / m) * HW, j->w + o * K, j->b ? j->b[o] : 0.0f,
                 j->y + i * P);
  }
}

/* backward: items are input channels; each owns its m output channels' weight and bias
 * gradients and its own dx planes, and sums over the batch in order, so any split of the
 * channels gives the same bits */
static void dw_bwd_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const dw_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t m = d->c_out / d->c_in, K = d->kh * d->kw, HW = d->h * d->w, P = d->oh * d->ow;
  for (int64_t c = lo; c < hi; c++)
    for (int64_t n = 0; n < d->n && j->dx && j->assign; n++)
      memset(j->dx + (n * d->c_in + c) * HW, 0, sizeof(float) * (size_t)HW);
  for (int64_t c = lo; c < hi; c++)
    for (int64_t o = c * m; o < (c + 1) * m; o++)
      for (int64_t n = 0; n < d->n; n++)
        dw_plane_bwd(d, j->x + (n * d->c_in + c) * HW, j->w + o * K,
                     j->dy + (n * d->c_out + o) * P,
                     j->dx ? j->dx + (n * d->c_in + c) * HW : NULL, j->dw ? j->dw + o * K : NULL,
                     j->db ? j->db + o : NULL);
}

/* planes per thread below which a split does not pay */
static int64_t dw_grain(const strop__conv2d_dims *d) {
  const int64_t work = d->oh * d->ow * d->kh * d->kw;
  return work >= 16384 ? 1 : 16384 / (work ? work : 1);
}

size_t strop__conv2d_filters_floats(const strop__conv2d_dims *d) {
  if (wino_bf(d)) return bf16_mode(d) == 1 ? (size_t)wbf_u_len(d) : 0;
  if (held_packed(d)) return (size_t)bf16_a_len(d);
  const int m = wino_m(d);
  return m ? (size_t)wino_u_len(d, m) : 0;
}

/* The forward's 16 FP32 planes of output channels [o0, o0 + n) into tmp (16 n c_in floats,
 * plane xi at tmp + xi n c_in): winograd.c's transform of those rows of the weight */
static void wbf_block_planes(const strop__conv2d_dims *d, const float *w, int64_t o0, int64_t n,
                             float *tmp) {
  strop__conv2d_dims b = *d;
  b.c_out = n;
  conv_job j = {.d = &b, .w = w + o0 * d->c_in * 9, .u = tmp, .m = WBF_M, .row = -1};
  strop__par_for(n, 8, wino_filter_range, &j);
}

/* BF16 Winograd's 16 planes into u (wbf_u_len) through tmp (wbf_make_len), a block of output
 * channels at a time (wbf_oblock): the block's FP32 planes, then its rows of each plane packed
 * (rows of pairs, each block at its first row) or rounded. The same values as the whole planes
 * at once. */
static void wbf_filters(const strop__conv2d_dims *d, const float *w, float *u, float *tmp) {
  const int64_t CI = d->c_in, pl = wbf_plane(d), ob = wbf_oblock(d), kp = (CI + 1) / 2;
  for (int64_t o0 = 0; o0 < d->c_out; o0 += ob) {
    const int64_t n = d->c_out - o0 < ob ? d->c_out - o0 : ob;
    wbf_block_planes(d, w, o0, n, tmp);
    for (int xi = 0; xi < WBF_A2; xi++) {
      const float *src = tmp + xi * n * CI;
      if (bf16_mode(d) == 1)
        strop__bf16_pack_a(0, n, CI, src, CI, (uint32_t *)(void *)(u + xi * pl) + o0 * kp);
      else strop__bf16_round_f32(src, u + xi * pl + o0 * CI, (size_t)(n * CI));
    }
  }
}

/* dx's 16 planes (wbf_dx; e = dx_dims(d)) from the forward's: with F(2x2, 3x3)'s G, the
 * transform of the rotated filter is Q (G g G^T) Q, Q swapping rows (and columns) 0 and 3, so
 * dx's plane (i, j) is the forward's plane (q(i), q(j)) transposed. A block of the forward's
 * output channels at a time (wbf_block_planes: the weight read in order, where the rotated and
 * transposed weight is read 36 bytes of every line), each plane's block packed transposed — a
 * block of dx's plane's columns: its pairs of each row — then copied into place.
 * The same values as the rotated filter's transform wherever the transform's sums of three
 * taps are exact in double (their order is reversed). */
static void wbf_dx_filters(const strop__conv2d_dims *d, const strop__conv2d_dims *e,
                           const float *w, float *u, float *tmp) {
  static const int q[4] = {3, 1, 2, 0};
  const int64_t CI = d->c_in, pl = wbf_plane(e), ob = wbf_oblock(d);
  const int64_t kp = (d->c_out + 1) / 2;
  uint32_t *buf = (uint32_t *)(void *)(tmp + r16(WBF_A2 * ob * CI));
  for (int64_t o0 = 0; o0 < d->c_out; o0 += ob) {
    const int64_t n = d->c_out - o0 < ob ? d->c_out - o0 : ob, kb = (n + 1) / 2;
    wbf_block_planes(d, w, o0, n, tmp);
    for (int xi = 0; xi < WBF_A2; xi++) {
      uint32_t *dst =
          (uint32_t *)(void *)(u +
                               (q[xi / (WBF_M + 2)] * (WBF_M + 2) + q[xi % (WBF_M + 2)]) * pl);
      strop__bf16_pack_a(1, CI, n, tmp + xi * n * CI, CI, buf);
      for (int64_t r = 0; r < CI; r++) /* pairs o0 / 2 .. of row r */
        memcpy(dst + r * kp + o0 / 2, buf + r * kb, sizeof(uint32_t) * (size_t)kb);
    }
  }
}

int strop__conv2d_filters(const strop__conv2d_dims *d, const float *w, float *u) {
  if (wino_bf(d)) { /* the same filters as the forward's per call */
    float *tmp = strop__malloc_aligned((size_t)wbf_make_len(d) * sizeof(float));
    if (!tmp) return -1;
    wbf_filters(d, w, u, tmp);
    strop__free_aligned(tmp);
    return 0;
  }
  if (held_packed(d)) { /* the same packing as the forward's per call */
    strop__bf16_pack_a(0, d->c_out, kdim(d), w, kdim(d), (uint32_t *)(void *)u);
    return 0;
  }
  conv_job j = {.d = d, .w = w, .u = u, .m = wino_m(d), .row = -1};
  if (j.m) strop__par_for(d->c_out, 8, wino_filter_range, &j);
  return 0;
}

void strop__conv2d_forward(const strop__conv2d_dims *d, const float *x, const float *w,
                           const float *b, float *y, float *scratch, int chunks,
                           const strop__conv2d_epilogue *ep) {
  strop__conv2d_forward_filtered(d, x, w, NULL, b, y, scratch, chunks, ep);
}

void strop__conv2d_forward_filtered(const strop__conv2d_dims *d, const float *x, const float *w,
                                    const float *u, const float *b, float *y, float *scratch,
                                    int chunks, const strop__conv2d_epilogue *ep) {
  const int64_t K = kdim(d);
  if (chunks < 1) chunks = 1;
  if (ep && !ep->relu && !ep->pool && !ep->res) ep = NULL;
  if (depthwise(d, ep)) {
    dw_job dj = {.d = d, .x = x, .w = w, .b = b, .y = y};
    strop__par_for(d->n * d->c_out, dw_grain(d), dw_fwd_range, &dj);
    return;
  }
  conv_job j = {.d = d,
                .x = x,
                .w = w,
                .b = b,
                .y = y,
                .chunks = chunks,
                .ep = ep,
                .pd = image_pool(d, ep)};
  const int bm = bf16_mode(d);
  if ((j.m = wino_bf(d))) {
    j.row = -1;
    j.wbf = bm;
    j.uplane = wbf_plane(d);
    j.per = wbf_chunk_len(d, chunks, ep);
    j.chunk0 = scratch;
    if (u && bm == 1) {
      j.u = (float *)u; /* only read */
    } else {
      j.u = scratch;
      j.chunk0 = scratch + wbf_u_len(d);
      wbf_filters(d, w, j.u, j.chunk0);
    }
    strop__par_run(chunks, d->n, wbf_fwd_chunk, &j);
    return;
  }
  if (bm == 1) {
    j.chunk0 = scratch + bf16_w_len(d);
    if (u && held_packed(d)) { /* the weight packed by the caller (strop__conv2d_filters) */
      j.ap = (const uint32_t *)(const void *)u;
      j.chunk0 = scratch;
    } else if (strop__conv_bf16_direct) { /* the weight rounded and packed once for every block */
      strop__bf16_pack_a(0, d->c_out, K, w, K, (uint32_t *)(void *)scratch);
      j.ap = (const uint32_t *)(const void *)scratch;
    } else { /* the weight transposed, [K, c_out], which the product packs per block */
      transpose(w, d->c_out, K, K, scratch, d->c_out);
      j.waug = scratch;
    }
    j.per = bf16_chunk_len(d, 0, chunks, ep);
    strop__par_run(chunks, d->n, bf16_fwd_chunk, &j);
    return;
  }
  j.row = -1;
  if ((j.m = wino_m(d))) {
    j.u = (float *)u; /* only read */
    j.chunk0 = scratch;
    j.per = wino_chunk_len(d, j.m, chunks, ep);
    if (!u && wino_rows(d, j.m, chunks)) { /* a row of filters at a time */
      j.u = scratch;
      j.chunk0 = scratch + wino_u_held(d, j.m, chunks);
      for (j.row = 0; j.row < j.m + 2; j.row++) {
        strop__par_for(d->c_out, 8, wino_filter_range, &j);
        strop__par_run(chunks, d->n, wino_fwd_chunk, &j);
      }
      return;
    }
    if (!u) {
      j.u = scratch;
      strop__par_for(d->c_out, 8, wino_filter_range, &j);
      j.chunk0 = scratch + wino_u_len(d, j.m);
    }
    strop__par_run(chunks, d->n, wino_fwd_chunk, &j);
    return;
  }
  j.fused = b && fused_bias(d);
  float *p = scratch + ones_len(d);
  if (bm == 2) { /* the fallback: the FP32 path on the rounded weight and images */
    j.rnd = 1;
    strop__bf16_round_f32(w, p, (size_t)(d->c_out * K));
    j.w = w = p;
    p += round_w_len(d);
  }
  if (j.fused) {
    j.waug = p;
    for (int64_t c = 0; c < d->c_out; c++) {
      memcpy(j.waug + c * (K + 1), w + c * K, sizeof(float) * (size_t)K);
      j.waug[c * (K + 1) + K] = b[c];
    }
    p += part_len(d);
  } else if (b) {
    j.ones = fill_ones(d, scratch);
  }
  j.chunk0 = p;
  j.per = fwd_cols_len(d, chunks) + ep_len(d, 0, ep) + (bm == 2 ? round_chunk_len(d, 0) : 0);
  strop__par_run(chunks, d->n, f32_block(d, chunks) > 1 ? fwd_block_chunk : fwd_chunk, &j);
}

/* The gradient of image n's raw output, from the epilogue's output gradient, in buf (the
 * chunk's epilogue area): the pool's backward into the window winners, with the relu's mask,
 * which at a winner is the pooled output's sign. */
static const float *bwd_epilogue(const conv_job *j, int64_t n, float *buf) {
  const strop__conv2d_epilogue *ep = j->ep;
  const int64_t P = j->d->oh * j->d->ow, C = j->d->c_out;
  if (!ep->pool) {
    strop__relu_backward_assign(ep->y + n * C * P, j->dy + n * C * P, buf, (size_t)(C * P));
    return buf;
  }
  const int64_t O = j->pd.oh * j->pd.ow;
  strop__maxpool2d_backward_assign_ex(&j->pd, j->dy + n * C * O, ep->argmax + n * C * O,
                                      ep->relu ? ep->y + n * C * O : NULL, buf);
  return buf;
}

static void bwd_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t G = d->groups, cout_g = d->c_out / G, K = kdim(d), P = d->oh * d->ow;
  const int64_t HW = d->h * d->w;
  const int pw = is_pointwise(d);
  float *colbuf = j->chunk0 + chunk * j->per;
  /* where this chunk's weight and bias gradients go: its own zeroed partial (summed in chunk
   * order afterwards), or straight into dw / db when there is one chunk and no fused layout */
  float *part = colbuf + j->part_off;
  float *dw = j->dw, *db = j->db;
  if (j->partial) {
    memset(part, 0, sizeof(float) * (size_t)part_len(d));
    if (dw) dw = part;
    if (db) db = j->fused ? NULL : part + d->c_out * K;
    if (j->fused)
      for (int64_t p = 0; p < P; p++) colbuf[K * P + p] = 1.0f;
  }
  /* Winograd input gradient: each image's dY transformed as it comes, a block's products and
   * output transforms (added into dx) once the block is full */
  const strop__conv2d_dims *dd = &j->dd;
  const int64_t tpi = j->m ? strop__winograd_tiles(dd, j->m) : 0;
  const int64_t nb = j->m ? wino_block(dd, j->m, j->chunks) : 0;
  float *wv = ep_area(j, colbuf, 1) + ep_len(d, 1, j->ep);
  float *wm = j->m ? wv + wino_v_len(dd, j->m, j->chunks) : NULL;
  float *work = j->m ? wm + wino_m_len(dd, j->m, j->chunks) : NULL;
  int64_t n0 = lo, nn = 0;
  /* the exact BF16 fallback's rounded image and output gradient (the bias gradient sums the
   * unrounded one) */
  float *xr = j->rnd ? ep_area(j, colbuf, 1) + ep_len(d, 1, j->ep) : NULL;
  float *dyr = xr ? xr + r16(d->c_in * HW) : NULL;
  for (int64_t n = lo; n < hi; n++) {
    const float *xn = j->x + n * d->c_in * HW;
    const float *dyn = j->ep ? bwd_epilogue(j, n, ep_area(j, colbuf, 1))
                             : j->dy + n * d->c_out * P;
    const float *dyp = image(j, dyn, d->c_out * P, dyr);
    if (dw) xn = image(j, xn, d->c_in * HW, xr);
    if (j->dx && j->m) {
      if (n - n0 == nn) { /* a new block */
        n0 = n;
        nn = hi - n < nb ? hi - n : nb;
      }
      const int64_t T = nn * tpi, s = n - n0;
      const int64_t pv = wplane(d->c_out * T), pm = wplane(d->c_in * T);
      strop__winograd_input(dd, j->m, dyn, wv, T, pv, s * tpi, work);
      if (s == nn - 1) {
        const int a2 = (j->m + 2) * (j->m + 2);
        for (int xi = 0; xi < a2; xi++)
          strop__sgemm(0, 0, d->c_in, T, d->c_out, 1.0f, j->u + xi * d->c_in * d->c_out, d->c_out,
                       wv + xi * pv, T, 0.0f, wm + xi * pm, T);
        for (int64_t t = 0; t < nn; t++)
          strop__winograd_output(dd, j->m, wm, T, pm, t * tpi, NULL,
                                 j->dx + (n0 + t) * d->c_in * HW, !j->assign, work);
      }
    }
    /* db += dY 1 */
    if (db) strop__sgemm(0, 0, d->c_out, 1, P, 1.0f, dyn, P, j->ones, 1, 1.0f, db, 1);
    if (dw) {
      const float *cols = xn;
      if (!pw) {
        im2col(d, xn, colbuf, P);
        cols = colbuf;
      }
      /* dW_g [cout_g, K] += dY_g [cout_g, P] * cols_g^T [P, K]; fused: [dW | db] at once */
      if (j->fused)
        strop__sgemm(0, 1, d->c_out, K + 1, P, 1.0f, dyp, P, cols, P, 1.0f, dw, K + 1);
      else
        for (int64_t g = 0; g < G; g++)
          strop__sgemm(0, 1, cout_g, K, P, 1.0f, dyp + g * cout_g * P, P, cols + g * K * P, P,
                       1.0f, dw + g * cout_g * K, K);
    }
    if (j->dx && !j->m) {
      float *dxn = j->dx + n * d->c_in * HW;
      /* col2im adds: an assigned dx starts from zero (here, in this chunk, while it is hot) */
      if (j->assign && !pw) memset(dxn, 0, sizeof(float) * (size_t)(d->c_in * HW));
      /* dcols_g [K, P] = W_g^T [K, cout_g] * dY_g [cout_g, P]; pointwise adds straight in */
      for (int64_t g = 0; g < G; g++)
        strop__sgemm(1, 0, K, P, cout_g, 1.0f, j->w + g * cout_g * K, K, dyp + g * cout_g * P, P,
                     pw && !j->assign ? 1.0f : 0.0f, pw ? dxn + g * K * P : colbuf + g * K * P,
                     P);
      if (!pw) col2im(d, colbuf, P, dxn);
    }
  }
}

/* Winograd weight gradient, phase 1 of a block: its images' input patches (when dW is wanted)
 * and dy tiles transformed into columns s tpi .. of V and Y. */
static void wdw_transform(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t tpi = strop__winograd_tiles(d, j->mw), P = d->oh * d->ow, HW = d->h * d->w;
  float *area = j->wc + chunk * j->wper, *work = area + ep_len(d, 1, j->ep);
  for (int64_t s = lo; s < hi; s++) {
    const int64_t n = j->n0 + s;
    const float *dyn = j->ep ? bwd_epilogue(j, n, area) : j->dy + n * d->c_out * P;
    if (j->dw)
      strop__winograd_input(d, j->mw, j->x + n * d->c_in * HW, j->wv, j->T,
                            wplane(d->c_in * j->T), s * tpi, work);
    strop__winograd_dy(d, j->mw, dyn, j->wy, j->T, wplane(d->c_out * j->T), s * tpi, work);
  }
}

/* phase 2: the products M_xi (+)= Y_xi V_xi^T for xi in [lo, hi); db from Y's (1, 1) entry */
static void wdw_products(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  const int64_t CO = j->d->c_out, CI = j->d->c_in, T = j->T, a = j->mw + 2;
  const int64_t py = wplane(CO * T), pv = wplane(CI * T), pm = j->pm;
  for (int64_t xi = lo; xi < hi; xi++) {
    const float *y = j->wy + xi * py;
    if (j->dw) /* the output channels o0 .. o0 + no - 1 */
      strop__sgemm_rows(CO, 0, 1, j->no, CI, T, 1.0f, y + j->o0 * T, T, j->wv + xi * pv, T,
                        j->first ? 0.0f : 1.0f, j->wm + xi * pm, CI);
    if (j->db && xi == a + 1)
      for (int64_t o = j->o0; o < j->o0 + j->no; o++) {
        double sum = 0.0;
        for (int64_t t = 0; t < T; t++) sum += y[o * T + t];
        j->db[o] += (float)sum;
      }
  }
}

/* phase 3, once the batch is summed: dW += G^T M G for the output channels [lo, hi) */
static void wdw_filters(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  strop__winograd_filter_grad(j->d, j->mw, j->wm, j->pm, j->dw + j->o0 * j->d->c_in * 9, lo, hi);
}

/* The weight and bias gradients by Winograd (see wino_dw_block), in scratch. */
static void wino_dw(conv_job *j, float *scratch) {
  const strop__conv2d_dims *d = j->d;
  const int m = j->mw, chunks = j->chunks;
  const int64_t a2 = (int64_t)(m + 2) * (m + 2), tpi = strop__winograd_tiles(d, m);
  const int64_t nb = wino_dw_block(d, m, chunks), tb = nb * tpi;
  const int64_t rows = wino_dw_rows(d, m, chunks);
  j->pm = wplane(rows * d->c_in);
  j->wm = scratch;
  j->wv = j->wm + a2 * j->pm;
  j->wy = j->wv + a2 * wplane(d->c_in * tb);
  j->wc = j->wy + a2 * wplane(d->c_out * tb);
  j->wper = wino_dw_chunk_len(d, m, j->ep);
  j->o0 = 0;
  j->no = d->c_out;
  if (rows < d->c_out) { /* one block of images; its products a block of channels at a time */
    j->n0 = 0;
    j->nn = d->n;
    j->T = j->nn * tpi;
    j->first = 1;
    strop__par_run(strop__par_chunks(chunks, j->nn, 1), j->nn, wdw_transform, j);
    for (j->o0 = 0; j->o0 < d->c_out; j->o0 += rows) {
      j->no = d->c_out - j->o0 < rows ? d->c_out - j->o0 : rows;
      strop__par_run(strop__par_chunks(chunks, a2, 1), a2, wdw_products, j);
      if (j->dw) strop__par_run(strop__par_chunks(chunks, j->no, 8), j->no, wdw_filters, j);
    }
    return;
  }
  for (j->n0 = 0; j->n0 < d->n; j->n0 += nb) {
    j->nn = d->n - j->n0 < nb ? d->n - j->n0 : nb;
    j->T = j->nn * tpi;
    j->first = j->n0 == 0;
    strop__par_run(strop__par_chunks(chunks, j->nn, 1), j->nn, wdw_transform, j);
    strop__par_run(strop__par_chunks(chunks, a2, 1), a2, wdw_products, j);
  }
  if (j->dw) strop__par_run(strop__par_chunks(chunks, d->c_out, 8), d->c_out, wdw_filters, j);
}

/* The chunks' partial weight and bias gradients added into dw and db, for the output channels
 * [lo, hi): each element sums the chunks in chunk order, whatever the split over channels. */
static void bwd_reduce_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t K = kdim(d);
  for (int c = 0; c < j->chunks; c++) {
    const float *part = j->chunk0 + c * j->per + j->part_off;
    for (int64_t o = lo; o < hi; o++) {
      if (j->fused) {
        const float *r = part + o * (K + 1);
        float *dwo = j->dw + o * K;
        for (int64_t k = 0; k < K; k++) dwo[k] += r[k];
        j->db[o] += r[K];
      } else {
        if (j->dw)
          for (int64_t k = 0; k < K; k++) j->dw[o * K + k] += part[o * K + k];
        if (j->db) j->db[o] += part[d->c_out * K + o];
      }
    }
  }
}

/* Batched backward, phase 1 of a block (images n0 .. n0 + nn - 1, L = nn P columns): each
 * image's output gradient (through the epilogue's backward) and, when dW is wanted, its columns
 * (a pointwise conv's image rows) into column s P of the block's dY and columns. */
static void bwd_gather(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t P = d->oh * d->ow, HW = d->h * d->w, CO = d->c_out, CI = d->c_in;
  const int64_t L = j->nn * P;
  for (int64_t s = lo; s < hi; s++) {
    const int64_t n = j->n0 + s;
    const float *dyn = j->ep ? bwd_epilogue(j, n, j->chunk0 + chunk * j->per)
                             : j->dy + n * CO * P;
    for (int64_t o = 0; o < CO; o++)
      memcpy(j->by + o * L + s * P, dyn + o * P, sizeof(float) * (size_t)P);
    if (!j->dw) continue;
    const float *xn = j->x + n * CI * HW;
    if (is_pointwise(d))
      for (int64_t c = 0; c < CI; c++)
        memcpy(j->bc + c * L + s * P, xn + c * P, sizeof(float) * (size_t)P);
    else im2col(d, xn, j->bc + s * P, L);
  }
}

/* phase 3: the block's input-gradient columns [K, L] back into each image's dx (a pointwise
 * conv's columns are dx's rows) */
static void bwd_scatter(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t P = d->oh * d->ow, HW = d->h * d->w, CI = d->c_in, L = j->nn * P;
  for (int64_t s = lo; s < hi; s++) {
    float *dxn = j->dx + (j->n0 + s) * CI * HW;
    if (is_pointwise(d)) {
      for (int64_t c = 0; c < CI; c++) {
        if (j->assign) memcpy(dxn + c * P, j->bc + c * L + s * P, sizeof(float) * (size_t)P);
        else add_into(dxn + c * P, j->bc + c * L + s * P, P);
      }
      continue;
    }
    if (j->assign) memset(dxn, 0, sizeof(float) * (size_t)(CI * HW));
    col2im(d, j->bc + s * P, L, dxn);
  }
}

/* The FP32 lowered backward of bwd_block's convs, a block of images at a time: dY and the
 * columns gathered (split over the images), dW += dY cols^T and db += dY 1 as single products
 * of inner dimension L (strop__sgemm splits them over dW's rows or columns: no partial sums),
 * the input gradient's columns W^T dY [K, L] into the columns' room, then added back per image.
 * No sum depends on the split, so every gradient has the same bits at any thread count. */
static void bwd_batched(conv_job *j, float *scratch) {
  const strop__conv2d_dims *d = j->d;
  const int64_t nbm = bwd_block(d), P = d->oh * d->ow, K = kdim(d), CO = d->c_out;
  j->by = scratch;
  j->bc = j->by + r16(CO * nbm * P);
  j->chunk0 = j->bc + r16((K + 1) * nbm * P);
  j->per = ep_len(d, 1, j->ep);
  for (j->n0 = 0; j->n0 < d->n; j->n0 += nbm) {
    j->nn = d->n - j->n0 < nbm ? d->n - j->n0 : nbm;
    const int64_t L = j->nn * P;
    const int chunks = strop__par_chunks(j->chunks, j->nn, 1);
    strop__par_run(chunks, j->nn, bwd_gather, j);
    if (j->dw) strop__sgemm(0, 1, CO, K, L, 1.0f, j->by, L, j->bc, L, 1.0f, j->dw, K);
    if (j->db) {
      float *ones = j->bc + K * L;
      for (int64_t p = 0; p < L; p++) ones[p] = 1.0f;
      strop__sgemm(0, 0, CO, 1, L, 1.0f, j->by, L, ones, 1, 1.0f, j->db, 1);
    }
    if (j->dx) {
      strop__sgemm(1, 0, K, L, CO, 1.0f, j->w, K, j->by, L, 0.0f, j->bc, L);
      strop__par_run(chunks, j->nn, bwd_scatter, j);
    }
  }
}

/* The input gradient by Winograd with dx's filters a row at a time (wino_rows): row j->row's
 * products; the first row transforms the chunk's output gradients (its images are one block),
 * the last transforms the products back into dx. bwd_chunk's arithmetic, in that order. */
static void wino_dx_rows_chunk(void *ctx, int64_t lo, int64_t hi, int chunk) {
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d, *dd = &j->dd;
  const int m = j->m, a = m + 2;
  const int64_t tpi = strop__winograd_tiles(dd, m), T = (hi - lo) * tpi;
  const int64_t P = d->oh * d->ow, HW = d->h * d->w, CI = d->c_in, CO = d->c_out;
  const int64_t pv = wplane(CO * T), pm = wplane(CI * T);
  float *wv = j->chunk0 + chunk * j->per;
  float *wm = wv + wino_v_len(dd, m, j->chunks);
  float *work = wm + wino_m_len(dd, m, j->chunks);
  if (j->row == 0)
    for (int64_t s = 0; s < hi - lo; s++)
      strop__winograd_input(dd, m, j->dy + (lo + s) * CO * P, wv, T, pv, s * tpi, work);
  for (int xi = j->row * a; xi < (j->row + 1) * a; xi++)
    strop__sgemm(0, 0, CI, T, CO, 1.0f, j->u + (xi - j->row * a) * CI * CO, CO, wv + xi * pv, T,
                 0.0f, wm + xi * pm, T);
  if (j->row == a - 1)
    for (int64_t t = 0; t < hi - lo; t++)
      strop__winograd_output(dd, m, wm, T, pm, t * tpi, NULL, j->dx + (lo + t) * CI * HW,
                             !j->assign, work);
}

/* strop__conv2d_backward, and with `assign` dx written instead of added to. */
/* rows [lo, hi) of the flipped weight w' [c_in, c_out kh kw] (dx_dims) into j->chunk0:
 * w'(c, (o kh + a) kw + b) = w(o, c, kh - 1 - a, kw - 1 - b), the kernel's taps reversed */
static void flip_range(void *ctx, int64_t lo, int64_t hi, int chunk) {
  (void)chunk;
  const conv_job *j = ctx;
  const strop__conv2d_dims *d = j->d;
  const int64_t KK = d->kh * d->kw, CO = d->c_out, K = kdim(d);
  for (int64_t c = lo; c < hi; c++)
    for (int64_t o = 0; o < CO; o++) {
      const float *src = j->w + o * K + c * KK;
      float *dst = j->chunk0 + (c * CO + o) * KK;
      for (int64_t t = 0; t < KK; t++) dst[t] = src[KK - 1 - t];
    }
}

/* xh: x held in BF16 instead (strop__conv2d_backward_held; x NULL), or NULL */
static void conv2d_backward(const strop__conv2d_dims *d, const float *x, const uint16_t *xh,
                            const float *w, const float *dy, float *dx, float *dw, float *db,
                            float *scratch, int chunks, const strop__conv2d_epilogue *ep,
                            int assign) {
  if (chunks < 1) chunks = 1;
  /* no more chunks than images: strop__par_run runs at most n, and the weight gradient's
   * partial sums of every chunk are added up (a chunk with no image would add what its area
   * held before). Each chunk's areas are those of the chunks asked for: a chunk's share is one
   * image either way. */
  if (d->n > 0 && chunks > d->n) chunks = (int)d->n;
  if (ep && !ep->relu && !ep->pool) ep = NULL;
  if (depthwise(d, ep)) {
    dw_job dj = {
        .d = d, .x = x, .w = w, .dy = dy, .dx = dx, .dw = dw, .db = db, .assign = assign};
    strop__par_for(d->c_in, (dw_grain(d) + d->n - 1) / d->n, dw_bwd_range, &dj);
    return;
  }
  conv_job j = {.d = d,
                .x = x,
                .xh = xh,
                .w = w,
                .dy = dy,
                .dx = dx,
                .dw = dw,
                .db = db,
                .chunks = chunks,
                .assign = assign,
                .row = -1,
                .ep = ep,
                .pd = image_pool(d, ep)};
  /* 3x3 stride 1 as the forward: the weight and bias gradients by Winograd first, then the
   * input gradient below in the same scratch */
  if ((dw || db) && (j.mw = wino_m(d))) {
    wino_dw(&j, scratch + ones_len(d));
    j.dw = dw = NULL;
    j.db = db = NULL;
    if (!dx) return;
  }
  const int bm = bf16_mode(d);
  if (bm == 1) {
    j.partial = (dw || db) && chunks > 1;
    if (db) j.ones = fill_ones(d, scratch);
    j.chunk0 = scratch + ones_len(d) + bf16_wt_len(d);
    uint32_t *ap = (uint32_t *)(void *)(scratch + ones_len(d));
    if (dx && wbf_dx(d)) { /* dx's 16 planes, made through the area after them, once */
      j.dxw = 1;
      j.dd = dx_dims(d);
      j.u = scratch + ones_len(d);
      j.uplane = wbf_plane(&j.dd);
      wbf_dx_filters(d, &j.dd, w, j.u, j.u + wbf_u_len(&j.dd));
    } else if (dx && bf16_dx(d, bf16_block(d, chunks))) {
      /* the flipped weight [c_in, c_out kh kw], made in the first chunk's area (its partial
       * sums, at least as large: cleared by the chunk before use), packed once */
      j.dxd = 1;
      j.dd = dx_dims(d);
      strop__par_for(d->c_in, 8, flip_range, &j);
      strop__bf16_pack_a(0, d->c_in, kdim(&j.dd), j.chunk0, kdim(&j.dd), ap);
      j.ap = ap;
    } else if (dx && strop__conv_bf16_direct) { /* W^T [K, c_out] packed once for every block */
      strop__bf16_pack_a(1, kdim(d), d->c_out, w, kdim(d), ap);
      j.ap = ap;
    }
    j.per = bf16_chunk_len(d, 1, chunks, ep);
    strop__par_run(chunks, d->n, bf16_bwd_chunk, &j);
    if (j.partial) strop__par_for(d->c_out, 8, bwd_reduce_range, &j);
    return;
  }
  if (!bm && bwd_block(d)) {
    bwd_batched(&j, scratch);
    return;
  }
  if (wino_dx_m(d) && dx && !ep) {
    j.dd = dx_dims(d);
    j.m = wino_dx_m(d);
    if (wino_rows(&j.dd, j.m, chunks)) { /* dx's filters a row at a time */
      j.u = scratch + ones_len(d);
      j.chunk0 = j.u + wino_u_held(&j.dd, j.m, chunks);
      j.per = wino_dx_len(d, j.m, chunks);
      for (j.row = 0; j.row < j.m + 2; j.row++) {
        strop__par_for(d->c_in, 8, wino_dx_filter_range, &j);
        strop__par_run(chunks, d->n, wino_dx_rows_chunk, &j);
      }
      return;
    }
    j.m = 0;
  }
  /* [dW | db] accumulated together through the ones row of the columns (not on BF16 values:
   * the bias gradient sums the unrounded output gradient) */
  j.fused = dw && db && fused_bias(d) && !bm;
  j.partial = (dw || db) && (chunks > 1 || j.fused);
  if (db && !j.fused) j.ones = fill_ones(d, scratch);
  j.chunk0 = scratch + ones_len(d);
  j.part_off = cols_len(d);
  j.per = cols_len(d) + part_len(d) + ep_len(d, 1, ep);
  if (bm == 2) {
    j.rnd = 1;
    strop__bf16_round_f32(w, j.chunk0, (size_t)(d->c_out * kdim(d)));
    j.w = j.chunk0;
    j.chunk0 += round_w_len(d);
    j.per += round_chunk_len(d, 1);
  }
  const int mdx = wino_dx_m(d);
  if (mdx) { /* the scratch has room for it whether or not dx is wanted */
    j.chunk0 += wino_u_len(d, mdx);
    j.per += wino_dx_len(d, mdx, chunks);
  }
  if (mdx && dx) {
    j.m = mdx;
    j.dd = dx_dims(d);
    j.u = scratch + ones_len(d);
    strop__par_for(d->c_in, 8, wino_dx_filter_range, &j);
  }
  strop__par_run(chunks, d->n, bwd_chunk, &j);
  if (j.partial) strop__par_for(d->c_out, 8, bwd_reduce_range, &j);
}

void strop__conv2d_backward(const strop__conv2d_dims *d, const float *x, const float *w,
                            const float *dy, float *dx, float *dw, float *db, float *scratch,
                            int chunks, const strop__conv2d_epilogue *ep) {
  conv2d_backward(d, x, NULL, w, dy, dx, dw, db, scratch, chunks, ep, 0);
}

void strop__conv2d_backward_assign(const strop__conv2d_dims *d, const float *x, const float *w,
                                   const float *dy, float *dx, float *dw, float *db,
                                   float *scratch, int chunks, const strop__conv2d_epilogue *ep) {
  conv2d_backward(d, x, NULL, w, dy, dx, dw, db, scratch, chunks, ep, 1);
}

int strop__conv2d_reads_x_held(const strop__conv2d_dims *d, int chunks) {
  if (chunks < 1) chunks = 1;
  if (d->n > 0 && chunks > d->n) chunks = (int)d->n;
  return bf16_mode(d) == 1 && !depthwise(d, NULL) && col_pack_ok(d, bf16_block(d, chunks));
}

void strop__conv2d_backward_held(const strop__conv2d_dims *d, const uint16_t *xh, const float *w,
                                 const float *dy, float *dx, float *dw, float *db, float *scratch,
                                 int chunks, const strop__conv2d_epilogue *ep, int assign) {
  conv2d_backward(d, NULL, xh, w, dy, dx, dw, db, scratch, chunks, ep, assign);
}
