/* SPDX-License-Identifier: MIT */
/* strop — loss functions on raw arrays: the value and, optionally, its gradient with respect
 * to the predictions. The trainer calls these; they are not graph nodes. */
#ifndef STROP_OPS_LOSS_H
#define STROP_OPS_LOSS_H

#include <stdint.h>

#include "core/core.h"

/* Loss kinds, numbered as the public strop_loss_kind (train checks that they agree). */
enum {
  STROP__LOSS_CROSS_ENTROPY = 1,
  STROP__LOSS_MSE = 2,
  STROP__LOSS_L1 = 3,
  STROP__LOSS_HUBER = 4,
  STROP__LOSS_BCE_WITH_LOGITS = 5
};

/* Reductions; zero (the default of a zeroed config) is PyTorch's default "mean". */
enum { STROP__LOSS_REDUCTION_MEAN = 0, STROP__LOSS_REDUCTION_SUM = 1 };

typedef struct strop__loss_cfg {
  int kind;                   /* STROP__LOSS_* */
  float label_smoothing;      /* cross-entropy: [0, 1] */
  int64_t ignore_index;       /* cross-entropy: rows with this target count for nothing (-100) */
  float delta;                /* huber: the quadratic-to-linear threshold (> 0; 1.0) */
  const float *class_weights; /* cross-entropy: n_classes weights, or NULL (all ones); borrowed */
  int64_t n_classes;          /* cross-entropy: C; 0 = per_sample / target_per_sample */
  int reduction;              /* STROP__LOSS_REDUCTION_* */
  const float
      *pos_weight; /* bce: n_pos_weight weights of positives along the last dim, or NULL */
  int64_t n_pos_weight;
  int fp32_exp; /* cross-entropy: 1 takes the exponentials in single precision (vexp16, within 2
                   ulp) on AVX-512 CPUs, for rows without class weights that hold no NaN or
                   infinity — mixed-precision training (the trainer sets it from the model's
                   compute dtype); 0, the default, in double (strop__vexp), the reference */
} strop__loss_cfg;

/* PyTorch's defaults: mean reduction, ignore_index -100, delta 1, no weights. */
void strop__loss_cfg_init(strop__loss_cfg *c, int kind);

/* Evaluates the loss of n samples.
 * pred:   n * per_sample floats (logits for cross-entropy and bce, values otherwise).
 * target: n * target_per_sample floats. Cross-entropy takes class indices stored as floats,
 *         target_per_sample 1 (pred [n, C]) or T (pred [n, T, C] flattened, per_sample = T*C);
 *         the other losses take targets shaped like pred (target_per_sample == per_sample).
 * loss_out: the reduced loss (double).
 * dpred:  nullable; when given, receives (overwrites, not adds) d loss / d pred, n * per_sample.
 * Cross-entropy with reduction mean divides by the summed class weight of the rows that are
 * not ignored (PyTorch's weighted mean, label smoothing included as torch does it); when every
 * row is ignored the loss and gradient are 0 (PyTorch would give NaN).
 * Returns STROP_OK, or STROP_E_INVALID_ARG (bad sizes or config; a class index out of range or
 * not an integer, naming the sample and value). NaN predictions propagate. No allocation. */
strop_status strop__loss_eval(const strop__loss_cfg *c, const float *pred, int64_t n,
                              int64_t per_sample, const float *target, int64_t target_per_sample,
                              double *loss_out, float *dpred);

/* Cross-entropy evaluated a run of rows at a time, for a loss fused with the layer before it
 * (an LM head whose logits are computed and differentiated a chunk of rows at a time, so that
 * [rows x classes] is never held whole): the numbers of strop__loss_eval, bit for bit (each
 * row's value and gradient are the same code; the sums run in the same row order; the mean's
 * divisor is summed from the targets beforehand, in the order strop__loss_eval sums it). */
typedef struct strop__ce_rows {
  const strop__loss_cfg *c; /* borrowed */
  const float *target;      /* every row's class index (borrowed) */
  int64_t rows, C;
  double wsum;  /* the summed class weight (C when there are none) */
  double scale; /* of the reduction: 1 / the summed weight of the rows not ignored (mean) */
  double total; /* the rows' losses so far */
} strop__ce_rows;

/* Starts st over n samples of per_sample logits and target_per_sample targets each, as
 * strop__loss_eval reads them (c->kind must be cross-entropy): validates every target first,
 * with strop__loss_eval's errors (STROP_E_INVALID_ARG), and sums the mean's divisor. */
strop_status strop__ce_rows_begin(strop__ce_rows *st, const strop__loss_cfg *c, int64_t n,
                                  int64_t per_sample, const float *target,
                                  int64_t target_per_sample);
/* Rows [r0, r0 + nr) of the logits, z (nr x C): adds their loss to st->total and, with grad,
 * writes d loss / d z over z, scaled by the reduction as strop__loss_eval scales its dpred. */
void strop__ce_rows_eval(strop__ce_rows *st, int64_t r0, int64_t nr, float *z, int grad);
/* The reduced loss once every row has been evaluated. */
double strop__ce_rows_loss(const strop__ce_rows *st);

/* 0 (the default): the cross-entropy's exponentials run on AVX-512 where the CPU has it (8 rows'
 * sums side by side, the gradient in one pass), the same bits as the plain loops' per-CPU clones,
 * which 1 selects (tests and bench_big CE=ab compare the two). strop__vexp8: strop__vexp of n
 * values as that path computes them (for the tests; AVX-512 CPUs only, strop__vexp elsewhere):
 * checked 1 for any x, 0 the form without clamps and selects that rows whose exponents are all
 * numbers in [-745.1332191019412, 0] take. */
extern int strop__ce_isa;
void strop__vexp8(const double *x, double *out, int64_t n, int checked);
/* 1 (the default): a cfg's fp32_exp is followed; 0 ignores it (bench_big CE_FP32=ab, tests).
 * strop__vexp16: the single-precision exponential of n values at most 0 as fp32_exp computes it
 * (AVX-512 CPUs; elsewhere strop__vexp rounded to float). */
extern int strop__ce_fp32;
/* 1 (the default): fp32_exp's rows run with MXCSR's flush-to-zero set (and put back after
 * each): an exponential, or a gradient value, below FLT_MIN is zero, as the BF16 products read
 * such inputs; 0 keeps the subnormal values (bench_big CE_FTZ=ab, tests). */
extern int strop__ce_ftz;
void strop__vexp16(const float *x, float *out, int64_t n);
/* 1 where fp32_exp takes effect: the AVX-512 path is built (not under the sanitizers' builds,
 * which leave out the per-CPU code) and the CPU has it, with strop__ce_isa 0 */
int strop__ce_fp32_available(void);

/* "cross_entropy", "mse", ... or "unknown". */
const char *strop__loss_name(int kind);

#endif
