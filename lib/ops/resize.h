/* SPDX-License-Identifier: MIT */
/* strop — image resizing kernels on [C, H, W] planes. */
#ifndef STROP_OPS_RESIZE_H
#define STROP_OPS_RESIZE_H

#include <stddef.h>
#include <stdint.h>

/* src [c, ih, iw] -> dst [c, oh, ow] as torch.nn.functional.interpolate(mode="bilinear",
 * align_corners=False, antialias=False) computes it in float32 on the CPU (PyTorch 1.13). */
void strop__resize_bilinear(const float *src, int64_t c, int64_t ih, int64_t iw, float *dst,
                            int64_t oh, int64_t ow);
/* The same with mode="nearest" (PyTorch's legacy nearest: floor(o * in / out)). */
void strop__resize_nearest(const float *src, int64_t c, int64_t ih, int64_t iw, float *dst,
                           int64_t oh, int64_t ow);

/* Antialiased bilinear resampling as torch.nn.functional.interpolate(mode="bilinear",
 * align_corners=False, antialias=True) computes it in float32 on the CPU (PyTorch 1.13's
 * separable kernel: the last axis first, then rows; an axis whose size is unchanged is copied;
 * weights built in float as ATen's _compute_weights_aa builds them). This is torchvision's
 * Resize(antialias=True) on float tensors.
 *
 * A region (iy, ix, ih, iw) of a [c, src_h, src_w] image is resized to oh x ow, and only the
 * window (oy, ox, wh, ww) of that result is written to dst [c, wh, ww]: a crop before (as
 * RandomResizedCrop) or after (as CenterCrop) costs no copy, and the window's values are
 * bit-for-bit those of the full result. */
typedef struct strop__resize_aa_args {
  int64_t c, src_h, src_w; /* the source planes */
  int64_t iy, ix, ih, iw;  /* the region resized, inside the source */
  int64_t oh, ow;          /* its size after resizing */
  int64_t oy, ox, wh, ww;  /* the window of the result written, inside [oh, ow] */
} strop__resize_aa_args;
/* Floats of workspace strop__resize_bilinear_aa needs for a. */
size_t strop__resize_aa_work(const strop__resize_aa_args *a);
void strop__resize_bilinear_aa(const float *src, const strop__resize_aa_args *a, float *dst,
                               float *work);

#endif
