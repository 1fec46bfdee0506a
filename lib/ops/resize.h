/* strop — image resizing kernels on [C, H, W] planes. */
#ifndef STROP_OPS_RESIZE_H
#define STROP_OPS_RESIZE_H

#include <stdint.h>

/* src [c, ih, iw] -> dst [c, oh, ow] as torch.nn.functional.interpolate(mode="bilinear",
 * align_corners=False, antialias=False) computes it in float32 on the CPU (PyTorch 1.13). */
void strop__resize_bilinear(const float *src, int64_t c, int64_t ih, int64_t iw, float *dst,
                            int64_t oh, int64_t ow);
/* The same with mode="nearest" (PyTorch's legacy nearest: floor(o * in / out)). */
void strop__resize_nearest(const float *src, int64_t c, int64_t ih, int64_t iw, float *dst,
                           int64_t oh, int64_t ow);

#endif
