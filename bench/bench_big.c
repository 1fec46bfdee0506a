/* SPDX-License-Identifier: MIT */
/* strop bench — issue 21's real-size rows, strop's side of bench/run_big_vs_torch.sh
 * (bench/torch_big.py writes the checkpoints and runs PyTorch's side): a fine-tuning step with
 * AdamW on a checkpoint of random weights loaded through strop_model_load_pretrained.
 *
 *   bench_big ROW DIR [threads] [steps] [repeats]
 *
 * ROW resnet50_full | resnet50_frozen (224 x 224, batch 8; everything but fc frozen) |
 * bert_full (sequence classification, 8 x 128) | gpt2_full | gpt2_lora (4 x 128, LoRA r8 alpha
 * 16 on c_attn) | tinyllama_lora (1 x 256, LoRA r8 on q_proj and v_proj). SIZE=, BATCH=,
 * TOKENS= in the environment change the shape; FROZEN_DTYPE=f32|bf16|int8 how the frozen
 * weights are held; COMPUTE_DTYPE=f32|bf16 the precision of the linear products
 * (strop_model_set_compute_dtype: bf16 is mixed-precision training), and COMPUTE_DTYPE=ab
 * alternates FP32 and BF16 steps on the one model (`repeats` rounds of `steps` steps each, the
 * order swapped every round) and prints the best step of each and their ratio, by the wall
 * clock and by the process's CPU time (the machine is shared: a ratio measured in one process
 * is what carries over); LOG=debug prints the library's DEBUG lines (the planning's account of the
 * step memory by kind) on stderr; STROP_MEMORY_PLAN=0 runs the steps on the free list instead
 * of the lifetime-planned arena; STROP_FUSED_LOSS=0 holds the whole [tokens x vocabulary]
 * logits and their gradient (and predicts that) instead of running the LM head with its
 * cross-entropy a chunk of rows at a time; FUSED_LOSS=ab alternates unfused and fused steps as
 * COMPUTE_DTYPE=ab does (fused_cpu_speedup > 1: the fused step is faster; round_cpu_ratios: each
 * round's fused CPU time over its unfused one), FUSED_ROWS=n sets the rows per chunk;
 * KERNELS=ab alternates the row kernels' statistics one row at a time (rows1) and several
 * rows side by side (rows: strop__rows_together's default, or ROWS_TOGETHER=n) the same way —
 * the same bits; CONV_BATCH=ab alternates FP32 convs of small images an image per product and
 * batched (strop__conv_batch; batched_cpu_speedup > 1: batching is faster); CONV_PACK=ab
 * alternates the BF16 convs' columns written by im2col and packed straight from the images
 * (strop__conv_bf16_direct, the same bits; with COMPUTE_DTYPE=bf16); CONV_BWD=ab the FP32
 * lowered conv backward of those convs an image per product in each chunk and batched with its
 * products split over the threads (strop__conv_batch_backward; CONV_BWD=0: per chunk only);
 * HELD_DOT=ab alternates the frozen BF16 / int8 weights' products on the exact fallback
 * (widened to FP32, strop__bf16_impl 1: an int8 base's only path before it was expanded into
 * the vdpbf16ps panels) and on vdpbf16ps (dot_cpu_speedup > 1: vdpbf16ps is faster);
 * GELU=ab alternates GELU (both forms) on the per-CPU clones of the plain loops and on its
 * AVX-512 kernels (strop__gelu_isa; gelu_cpu_speedup > 1: AVX-512 is faster; GELU=clones runs
 * the clones only); B_GROUPS=ab the BF16 weight gradients' B a panel of 32 columns at a time
 * against all of A and in groups of panels that fit in L2 (strop__bf16_b_groups, the same bits;
 * with COMPUTE_DTYPE=bf16); K_SLICES=ab the LM head's BF16 input gradient (k the vocabulary) all
 * of k at once and in slices of k whose panels stay in L2 (strop__bf16_kslices, the same bits).
 * WINO_ROWS=ab the large Winograd transforms held whole and a row / block at a time
 * (strop__conv_wino_rows, the same bits; WINO_ROWS=0: whole only); WINO_SIDE=ab the FP32 3x3
 * stride-1 convs by Winograd F(4x4) at every output side (strop__conv_winograd 4: every such
 * conv, as ResNet's, all of 64 or more channels, ran before) and by default, from 8 a side up
 * (the lowered forward below: ResNet's 7 x 7 stage; not the same bits), WINO_SIDE=0 every side;
 * GATHER2=ab a stride-2 conv's columns (im2col: the stem, the strided 3x3 convs) gathered a
 * value at a time and 16 at a time with AVX-512 permutes (strop__conv_gather2, the same bits),
 * GATHER2=0 a value at a time; BIAS_FILL=ab an FP32 per-image conv's bias written into y by
 * the rank-1 product b 1^T (OpenBLAS) and by a fill (strop__conv_bias_fill, the same bits),
 * BIAS_FILL=0 by the product;
 * PLAN_SCRATCH=ab the convs'
 * scratch above the planned region and planned in it (strop__plan_scratch; PLAN_SCRATCH=0:
 * above it, as before); FUSION=ab every layer run by itself (the model's no_fusion) and the
 * layers' fusions (a relu with the max-pool after it, a conv's epilogues); FUSION=0: none (with
 * WINO_ROWS=0 PLAN_SCRATCH=0, the step's memory before branch rnmem). DIN_FIRST=ab an input
 * gradient zeroed and added to unless its sole reader writes it, and written by its first
 * writer in the backward (a residual sum's two; strop__din_first_writer), DIN_FIRST=0 zeroed.
 * ACCUM=n makes each step one of n micro-batches of a window (the trainer's
 * STROP_TRAIN_ACCUM_STEPS); PLAN_GRADS=ab the parameters' gradients in memory of their own kept
 * from step to step and
 * planned with the step's activations, in the memory the backward gives back
 * (strop__plan_grads, the same bits), PLAN_GRADS=0 their own. WEIGHTS_OUT=file saves the
 * weights after the steps (safetensors), to compare two runs bit for bit. Frozen and LoRA
 * rows load with STROP_LOAD_FROZEN | STROP_LOAD_MMAP: the frozen base is read straight from
 * the mapped file (docs/performance.md); MMAP=0 copies it. CONV_HELD=ab alternates a frozen
 * BF16 conv's weight packed per call and kept packed (strop__conv_keep_packed; with
 * COMPUTE_DTYPE=bf16), CONV_HELD=0 packs per call; ADD_RELU=ab a residual sum and the relu
 * after it apart and in one pass (strop__add_fuse_relu, the same bits), ADD_RELU=0 apart;
 * FROZEN_PATH=ab those two and a conv's relu in its vdpbf16ps tiles' stores
 * (strop__conv_tile_relu) all off and all on (the BF16 frozen trunk before and after
 * 2026-12-05's changes, the same bits), FROZEN_PATH=0 all off. CONV_ADD=ab alternates a
 * residual sum after a frozen conv (and its relu) run by the add and in the conv's epilogue (its
 * BF16 tiles' stores; strop__conv_fuse_add, the same bits), CONV_ADD=0 by the add; EP_COPY=ab the
 * FP32 forward's epilogue of a batched block of images (a sum, a relu) after the copy out of the
 * block and in it (strop__conv_ep_copy, the same bits), EP_COPY=0 after it; TILE_PF=ab
 * the BF16 conv tiles' output lines asked for before their sums or not
 * (strop__conv_tile_prefetch, the same bits), TILE_PF=0 not; CONV_POOL=ab a max-pool after a
 * conv (ResNet's stem: after its folded norm and relu) by itself and in the conv's epilogue
 * (strop__conv_fuse_pool, the same bits), CONV_POOL=0 by itself; CONV_EPI=ab those three all
 * off and all on (branch rnfz2's changes), CONV_EPI=0 all off; CONV_DX=ab the BF16 stride-1
 * convs' input gradient through FP32 columns and col2im and as the forward of dy with the
 * flipped weight (strop__conv_bf16_dx; not the same bits), CONV_DX=0 through col2im.
 * WINO_BF16=ab the BF16 3x3 stride-1 convs' forward direct and as Winograd F(2x2, 3x3)
 * (strop__conv_bf16_wino; not the same bits), WINO_BF16=0 direct; WINO_DX=ab their input
 * gradient direct and as the BF16 Winograd forward of dy (strop__conv_bf16_wino_dx; not the
 * same bits), WINO_DX=0 direct. WEIGHT_CACHE=ab the trained weights' BF16 products packed per
 * call and through their kept copies (strop_model_set_weight_cache; the same bits),
 * WEIGHT_CACHE=0 packed per call.
 * BN_FUSE=ab alternates a batch norm and the relu after it run apart and the relu in the norm's
 * passes (strop__bn_fuse_relu, the same bits; BN_FUSE=0: apart), BN_ISA=ab the norms' group
 * sums in plain C and on AVX-512 (strop__bn_isa, the same bits; BN_ISA=c: plain C), BN_PATH=ab
 * both off and both on; BN_ADD=ab a batch norm, the residual sum after it and the sum's relu
 * apart and in the norm's passes (strop__bn_fuse_add, the same bits; BN_ADD=0: apart); CE=ab
 * the cross-entropy's exponentials on the plain loops' per-CPU clones and on AVX-512
 * (strop__ce_isa, the same bits; CE=clones the clones only). CKPT=auto checkpoints the model's
 * blocks for the whole run (strop_model_set_checkpointing "auto", before the planning), CKPT=ab
 * alternates plain and checkpointed steps (the same bits; checkpointed_cpu_speedup < 1: the
 * recompute's cost); MEMORY_PLAN=ab the free list and the lifetime-planned arena (the same
 * bits).
 * HEAD_CHUNK=ab the LM head's chunks of rows at most 16 MiB of logits and as large as the head's
 * weight gradient when it trains (strop__rows_chunk_grads: GPT-2 full's 512 rows in one chunk
 * instead of three; its dW then sums in another order), HEAD_CHUNK=0 16 MiB only; HEAD_ROWS=n
 * gives the second side n rows a chunk instead. HELD_GROUPS=ab a held BF16 weight's _nt product
 * (the LM head's forward) a panel of the weight against all of A at a time and a group of
 * panels against each tile of A (strop__bf16_held_groups, the same bits; with
 * COMPUTE_DTYPE=bf16), HELD_GROUPS=0 a panel at a time.
 * PAR_SPLIT=ab the split-independent passes (strop__par_for) a chunk per thread and 4 chunks per
 * thread claimed as they come (strop__par_for_split, the same bits), PAR_SPLIT=0 a chunk per
 * thread (the default); SDPA_SPLIT=ab the tiled attention core's chunks over the samples and
 * over (sample, kv head) items (strop__sdpa_split_heads, the same bits), SDPA_SPLIT=0 over the
 * samples; SPLIT_PASSES=ab a linear's bias rows and bias gradient, layer norm's parameter
 * gradients, the BF16 panels of 768-wide outputs and the gated MLP's SiLU gate on the calling
 * thread and split over the threads (strop__split_passes, the same bits), SPLIT_PASSES=0
 * serial. PACK_GROUPS=ab the BF16 products' panels (a held weight's read in place where A fits
 * in L2, the packed ones: input gradients, plain BF16 and int8 weights) a panel at a time and in
 * groups of 256 KB against each 8-row tile of A (strop__bf16_pack_groups, the same bits; with
 * COMPUTE_DTYPE=bf16), PACK_GROUPS=0 a panel at a time; KS_WIDE=ab the LM head's input
 * gradient's slices of k a column block at a time (1024 of k, the weight's rows read in 2 KB
 * runs) and across the chunk's column blocks (256 of k, a block's rows in one run;
 * strop__bf16_kslices 1 / 2, the same bits), KS_WIDE=0 a column block at a time; HELD_PACK=ab
 * both off and both on (branch glr's changes), HELD_PACK=0 both off.
 * PACK_SWEEP=ab the BF16 products' operands stored [k, cols] (the weight gradients' x
 * and dy, a W [in, out] weight's BF16 panels) packed a panel at a time down all k rows and a
 * few panels at once in one pass down the rows (strop__bf16_pack_sweep, the same bits),
 * PACK_SWEEP=0 a panel at a time; CHECK_FINITE=ab a BF16 weight gradient written outright
 * read again by the trainer's guard and seen finite as its tiles are stored
 * (strop__bf16_gemm_check_finite), CHECK_FINITE=0 read by the guard; GFL_PATH=ab both off and
 * both on (branch gfl), GFL_PATH=0 both off. CE_FP32=ab alternates mixed precision's
 * cross-entropy exponentials in double and in single precision (strop__ce_fp32; not the same
 * bits, within 2 ulp; with COMPUTE_DTYPE=bf16), CE_FP32=0 in double; CE_FTZ=ab those single
 * precision exponentials with their subnormal values and flushed to zero (strop__ce_ftz; not the
 * same bits below FLT_MIN), CE_FTZ=0 subnormal.
 *
 * Prints one RESULT line: samples/s or tokens/s (best of `repeats` windows of `steps` steps
 * after a warm-up), the step's multiply-add work (gemm_flops: the matrix products and
 * convolutions of forward and backward, counted from the shapes) for the floor against the
 * peak of bench_peak, the RSS at the start, the peak RSS of the setup (load, surgery, planning:
 * peak_setup_kb) and of the steps (peak_rss_kb, VmHWM reset before the first),
 * strop_trainer_step_memory's prediction of the step's peak, and strop_model_memory_estimate's
 * (its four figures' sum: a language model is loaded declared for TOKENS, its input shape).
 * GEMM_PROFILE=1 prints instead, for `steps` steps after a warm-up (1 thread: the products run
 * on the calling thread), one GEMM line per product kind and shape (op, m n k, alpha 1 or not,
 * the kernel: own, openblas or gemv; with COMPUTE_DTYPE=bf16 also bf16, two FP32 operands
 * rounded while packed, and bf16_held, a weight's BF16 copy; attention's per-block products
 * are not seen) with its calls and thread CPU time per step, GFLOP/s and
 * share of the step's process CPU time, and a RESULT line with their sums.
 * POOL_PROFILE=1 prints instead, for `steps` steps after a warm-up, where the calling thread's
 * CPU time went (strop__pool_profile): in runs split over the workers (par), in runs on that
 * thread alone (lone: one chunk, or the pool busy), and outside any run (outside: the passes
 * nobody split) — lone and outside are the step's serial share; one POOL line per run callback
 * (its address in the executable: `addr2line -f -e bench_big ADDR` names it). */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "benchutil.h"
#include "graph/graph.h"
#include "ops/attention.h"
#include "ops/bf16gemm.h"
#include "ops/conv.h"
#include "ops/dense.h"
#include "ops/loss.h"
#include "ops/lowp.h"
#include "ops/norm.h"
#include "core/pool_profile.h"
#include "ops/ops.h"

/* the process's CPU time (s): on a shared machine the wall clock also counts the time the
 * step was not scheduled */
static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the calling thread's CPU time (s): the step's own thread never sleeps in a step (it spins
 * while the workers finish their chunks), so this is the step's critical path as far as it was
 * scheduled — what a serial pass lengthens and the process's CPU time does not show when the
 * idle workers sleep */
static double thread_cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the process's system CPU time (s) and minor page faults so far: a step that takes fresh
 * memory from the system pays for it here */
static double sys_now(long *faults) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  *faults = u.ru_minflt;
  return (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

static int64_t env_int(const char *k, int64_t def) {
  const char *v = getenv(k);
  return v && atoll(v) > 0 ? atoll(v) : def;
}

/* What an interleaved A/B alternates: each switch's environment variable (`ab` alternates its
 * off (0) and on (1) sides; off_word / on_word, where given, set one side for the whole run),
 * the labels of the two sides and the key of the RESULT line. The first variable set to `ab` in
 * the table's order is the one alternated; none: COMPUTE_DTYPE. */
typedef struct ab_switch {
  const char *env, *off_word, *on_word;
  const char *off, *on, *key;
  void (*set)(strop_model *m, int on);
} ab_switch;

static void set_dtype(strop_model *m, int on) {
  bench_must(strop_model_set_compute_dtype(m, on ? STROP_DTYPE_BF16 : STROP_DTYPE_F32),
             "compute dtype");
}
/* the unfused / fused LM head and cross-entropy (the library's own switch) */
static void set_fused(strop_model *m, int on) { (void)m, strop__fused_loss = on; }
/* the row kernels' statistics one row at a time / strop__rows_together's default rows side
 * by side: the same bits */
static void set_rows(strop_model *m, int on) {
  static int rows_default = 0;
  (void)m;
  if (!rows_default) rows_default = strop__rows_together;
  strop__rows_together = on ? rows_default : 1;
}
/* an image per conv product / small images batched */
static void set_conv(strop_model *m, int on) { (void)m, strop__conv_batch = on; }
/* the BF16 convs' im2col path / columns packed straight from the images: the same bits */
static void set_pack(strop_model *m, int on) { (void)m, strop__conv_bf16_direct = on; }
/* the FP32 conv backward per chunk / batched */
static void set_conv_bwd(strop_model *m, int on) { (void)m, strop__conv_batch_backward = on; }
/* frozen BF16 / int8 products on the fallback / vdpbf16ps */
static void set_held(strop_model *m, int on) { (void)m, strop__bf16_impl = on ? 0 : 1; }
/* GELU on the per-CPU clones / the AVX-512 kernels */
static void set_gelu(strop_model *m, int on) { (void)m, strop__gelu_isa = on ? 0 : 1; }

static void set_bias_cols(strop_model *m, int on) { (void)m, strop__bias_cols = on; }

static void set_dy_once(strop_model *m, int on) { (void)m, strop__dy_once = on; }

static void set_linear_held(strop_model *m, int on) { (void)m, strop__linear_held = on; }

static void set_hold_rec(strop_model *m, int on) { (void)m, strop__hold_recomputable = on; }
/* BF16 weight gradients a panel of B at a time / B's panels in groups: the same bits */
static void set_bgroups(strop_model *m, int on) { (void)m, strop__bf16_b_groups = on; }
/* the LM head's BF16 input gradient all of k at once / in slices: the same bits */
static void set_kslices(strop_model *m, int on) { (void)m, strop__bf16_kslices = on ? 2 : 0; }
/* BF16 operands stored [k, cols] packed a panel at a time / swept down their rows: the same
 * bits */
static void set_pack_sweep(strop_model *m, int on) { (void)m, strop__bf16_pack_sweep = on; }
/* BF16 weight gradients read by the trainer's guard / seen finite as the tiles store them */
static void set_check_finite(strop_model *m, int on) {
  (void)m, strop__bf16_gemm_check_finite = on;
}
/* branch gfl's two (PACK_SWEEP, CHECK_FINITE) both off / both on: the same bits */
static void set_gfl(strop_model *m, int on) {
  set_pack_sweep(m, on);
  set_check_finite(m, on);
}
/* a frozen BF16 conv's weight packed per call / kept packed: the same bits */
static void set_heldw(strop_model *m, int on) { (void)m, strop__conv_keep_packed = on; }
/* a residual sum and its relu apart / in one pass: the same bits */
static void set_addrelu(strop_model *m, int on) { (void)m, strop__add_fuse_relu = on; }
/* a residual sum (and its relu) after a frozen conv by itself / in the conv's epilogue: the
 * same bits */
static void set_convadd(strop_model *m, int on) { (void)m, strop__conv_fuse_add = on; }
/* the FP32 lowered forward's epilogue after the copy out of a batched block / in it */
static void set_ep_copy(strop_model *m, int on) { (void)m, strop__conv_ep_copy = on; }
/* a max-pool after a conv (ResNet's stem) by itself / in the conv's epilogue */
static void set_convpool(strop_model *m, int on) { (void)m, strop__conv_fuse_pool = on; }
/* the BF16 conv tiles' output lines asked for before their sums: off / on (the same bits) */
static void set_tilepf(strop_model *m, int on) { (void)m, strop__conv_tile_prefetch = on; }
/* the three above (a residual sum, a stem's pool in a conv's epilogue; the tiles' lines asked
 * for) all off / all on */
static void set_conv_epi(strop_model *m, int on) {
  (void)m;
  strop__conv_fuse_add = strop__conv_fuse_pool = strop__conv_tile_prefetch = on;
}
/* those two and the relu in the BF16 tiles' stores all off / all on */
static void set_frozen(strop_model *m, int on) {
  (void)m;
  strop__conv_keep_packed = strop__add_fuse_relu = strop__conv_tile_relu = on;
}
/* the large Winograd transforms whole / a row or block at a time: the same bits */
static void set_wino_rows(strop_model *m, int on) { (void)m, strop__conv_wino_rows = on; }
/* a stride-2 conv's columns gathered a value at a time / 16 at a time (AVX-512 permutes) */
static void set_gather2(strop_model *m, int on) { (void)m, strop__conv_gather2 = on; }
/* an FP32 per-image conv's bias written by the rank-1 product b 1^T / by a fill */
static void set_bias_fill(strop_model *m, int on) { (void)m, strop__conv_bias_fill = on; }
/* the FP32 3x3 convs by Winograd F(4x4) at every output side / by default (from 8 up) */
static void set_wino_side(strop_model *m, int on) { (void)m, strop__conv_winograd = on ? -1 : 4; }
/* the convs' scratch above the planned region / planned in it */
static void set_plan_scratch(strop_model *m, int on) { (void)m, strop__plan_scratch = on; }
static void set_din_first(strop_model *m, int on) { (void)m, strop__din_first_writer = on; }
/* the parameters' gradients in memory of their own / planned with the step's activations */
static void set_plan_grads(strop_model *m, int on) { (void)m, strop__plan_grads = on; }
/* the BF16 stride-1 convs' input gradient through FP32 columns and col2im / as the forward of
 * dy with the flipped weight */
static void set_convdx(strop_model *m, int on) { (void)m, strop__conv_bf16_dx = on; }
/* the cross-entropy's exponentials on the plain loops' clones / on AVX-512: the same bits */
static void set_ce(strop_model *m, int on) { (void)m, strop__ce_isa = on ? 0 : 1; }
/* the LM head's chunks of 16 MiB of logits / as large as the head's weight gradient when it
 * trains (strop__rows_chunk_grads); HEAD_ROWS=n: n rows a chunk on the second side instead */
static void set_head_chunk(strop_model *m, int on) {
  (void)m;
  strop__rows_chunk_grads = on;
  strop__fused_loss_rows = on ? env_int("HEAD_ROWS", 0) : 0;
}
/* a held weight's _nt panels a panel at a time / in groups against A's tiles: the same bits */
static void set_held_groups(strop_model *m, int on) { (void)m, strop__bf16_held_groups = on; }
/* every layer run by itself / the layers' fusions */
static void set_fusion(strop_model *m, int on) { m->no_fusion = !on; }
/* a batch norm and the relu after it apart / in the norm's passes: the same bits */
static void set_bnfuse(strop_model *m, int on) { (void)m, strop__bn_fuse_relu = on; }
/* the batch norms' group sums in plain C / on AVX-512: the same bits */
static void set_bnisa(strop_model *m, int on) { (void)m, strop__bn_isa = on ? 0 : 1; }
/* a batch norm, the residual sum after it and the sum's relu apart (the sum and its relu in one
 * pass) / in the norm's passes: the same bits */
static void set_bnadd(strop_model *m, int on) { (void)m, strop__bn_fuse_add = on; }
/* both off / both on (the batch norms before and after branch rnbn) */
static void set_bnpath(strop_model *m, int on) {
  set_bnfuse(m, on);
  set_bnisa(m, on);
}

/* no activation checkpointing / every block of "auto" checkpointed (CKPT=auto: the whole run) */
static void set_ckpt(strop_model *m, int on) {
  bench_must(strop_model_set_checkpointing(m, on ? "auto" : NULL), "checkpointing");
}
/* the step on the free list / planned from its tensors' lifetimes */
static void set_plan(strop_model *m, int on) { (void)m, strop__memory_plan = on; }

/* the split-independent passes a chunk per thread / in 4 chunks per thread, claimed as they
 * come: the same bits */
static void set_par_split(strop_model *m, int on) {
  (void)m;
  strop__par_for_split = on ? 4 : 1;
}

/* the tiled attention core's chunks over the samples / over (sample, kv head) items: the same
 * bits */
static void set_sdpa_split(strop_model *m, int on) { (void)m, strop__sdpa_split_heads = on; }

/* the passes branch tt split (bias rows and gradients, layer norm's parameter gradients, the
 * BF16 panels of 768-wide outputs, the SiLU gate) on the calling thread / split: the same bits */
/* the attention weights kept where strop__sdpa_pick_tiled's rule keeps them / always tiled
 * (strop_model_set_attention) */
static void set_sdpa_tiled(strop_model *m, int on) {
  bench_must(strop_model_set_attention(m, on ? STROP_ATTENTION_TILED : STROP_ATTENTION_AUTO),
             "attention");
}

/* the outputs only BF16 products read kept in FP32 / held in BF16 between their forward and
 * backward (strop__compact_acts): the same bits */
static void set_compact(strop_model *m, int on) { (void)m, strop__compact_acts = on; }

/* a batch norm's input kept in FP32 / held in BF16 around its batch mean (strop__compact_centred;
 * not the same bits: the norm's backward reads the deviations rounded to BF16) */
static void set_compact_norm(strop_model *m, int on) { (void)m, strop__compact_centred = on; }

/* the outputs held in BF16 widened back to FP32 for their readers' backwards / read by them as
 * held where every reader can (strop__compact_held: a ResNet's conv inputs): the same bits */
static void set_compact_held(strop_model *m, int on) { (void)m, strop__compact_held = on; }

static void set_split_passes(strop_model *m, int on) { (void)m, strop__split_passes = on; }

/* the held and packed BF16 products' panels one at a time where A fit in L2 or B was packed /
 * in groups against each tile of A (strop__bf16_pack_groups): the same bits */
static void set_pack_groups(strop_model *m, int on) { (void)m, strop__bf16_pack_groups = on; }
/* the LM head's input gradient in slices of k a column block at a time / across the chunk's
 * column blocks, each block's rows packed in one run (strop__bf16_kslices 1 / 2): the same bits */
static void set_ks_wide(strop_model *m, int on) { (void)m, strop__bf16_kslices = on ? 2 : 1; }
/* both off / both on (the held products before and after branch glr) */
static void set_held_pack(strop_model *m, int on) {
  set_pack_groups(m, on);
  set_ks_wide(m, on);
}

/* a residual chain's norm's dot pass reading its rows side by side / its chain's gradient staged
 * an image at a time (strop__bn_stage): the same bits */
static void set_bn_stage(strop_model *m, int on) { (void)m, strop__bn_stage = on; }
/* a BF16 3x3 conv's forward direct / as Winograd F(2x2, 3x3) (strop__conv_bf16_wino; not the
 * same bits) */
static void set_wino_bf16(strop_model *m, int on) { (void)m, strop__conv_bf16_wino = on; }
/* the BF16 input gradient of 3x3 stride-1 convs direct / as the BF16 Winograd forward of dy */
static void set_wino_dx(strop_model *m, int on) { (void)m, strop__conv_bf16_wino_dx = on; }
static void set_wcache(strop_model *m, int on) {
  bench_must(strop_model_set_weight_cache(m, on), "weight cache");
}

/* the BF16 products on vdpbf16ps / on the AMX tiles (strop__bf16_amx; not the same bits) */
static void set_amx(strop_model *m, int on) { (void)m, strop__bf16_amx = on; }
/* an int8 weight's group of panels packed a panel at a time / a row pair across them (the same
 * bits) */
static void set_int8_sweep(strop_model *m, int on) { (void)m, strop__int8_sweep = on; }

/* a weight read as rows of B [k, n] (int8, or BF16 in place) packed across all of k per panel
 * group / in slices of k across groups of columns with the sums carried (the same bits) */
static void set_kn_slices(strop_model *m, int on) { (void)m, strop__kn_slices = on; }

/* an int8 weight's rows read without / with software prefetches 16 rows ahead (the same bits) */
static void set_int8_pf(strop_model *m, int on) { (void)m, strop__int8_pf = on; }

/* mixed precision's cross-entropy exponentials in double / in single precision
 * (strop__ce_fp32; not the same bits: within 2 ulp) */
static void set_ce_fp32(strop_model *m, int on) { (void)m, strop__ce_fp32 = on; }
/* mixed precision's cross-entropy exponentials with their subnormal values / flushed to zero
 * (strop__ce_ftz; not the same bits where a value falls below FLT_MIN) */
static void set_ce_ftz(strop_model *m, int on) { (void)m, strop__ce_ftz = on; }

static const ab_switch AB[] = {
    {"FUSED_LOSS", NULL, NULL, "unfused", "fused", "fused_loss", set_fused},
    {"KERNELS", NULL, NULL, "rows1", "rows", "kernels", set_rows},
    {"CONV_BATCH", NULL, NULL, "per_image", "batched", "conv_batch", set_conv},
    {"CONV_PACK", NULL, NULL, "im2col", "direct", "conv_pack", set_pack},
    {"CONV_BWD", "0", NULL, "per_chunk", "batched", "conv_bwd", set_conv_bwd},
    {"HELD_DOT", NULL, NULL, "fallback", "dot", "held_dot", set_held},
    {"GELU", "clones", NULL, "clones", "avx512", "gelu", set_gelu},
    {"B_GROUPS", NULL, NULL, "panels", "groups", "b_groups", set_bgroups},
    {"K_SLICES", NULL, NULL, "whole_k", "sliced", "k_slices", set_kslices},
    {"CONV_HELD", "0", NULL, "per_call", "held", "conv_held", set_heldw},
    {"ADD_RELU", "0", NULL, "apart", "fused", "add_relu", set_addrelu},
    {"FROZEN_PATH", "0", NULL, "before", "after", "frozen_path", set_frozen},
    {"CONV_ADD", "0", NULL, "apart", "fused", "conv_add", set_convadd},
    {"EP_COPY", "0", NULL, "after_copy", "in_copy", "ep_copy", set_ep_copy},
    {"TILE_PF", "0", NULL, "off", "on", "tile_pf", set_tilepf},
    {"CONV_POOL", "0", NULL, "apart", "fused", "conv_pool", set_convpool},
    {"CONV_EPI", "0", NULL, "before", "after", "conv_epi", set_conv_epi},
    {"WINO_ROWS", "0", NULL, "whole", "rows", "wino_rows", set_wino_rows},
    {"WINO_SIDE", "0", NULL, "every_side", "min_side", "wino_side", set_wino_side},
    {"GATHER2", "0", NULL, "scalar", "permutes", "gather2", set_gather2},
    {"BIAS_FILL", "0", NULL, "rank1", "fill", "bias_fill", set_bias_fill},
    {"PLAN_SCRATCH", "0", NULL, "arena", "planned", "plan_scratch", set_plan_scratch},
    {"DIN_FIRST", "0", NULL, "zeroed", "first_writes", "din_first", set_din_first},
    {"PLAN_GRADS", "0", NULL, "own", "planned", "plan_grads", set_plan_grads},
    {"FUSION", "0", NULL, "unfused", "fused", "fusion", set_fusion},
    {"CONV_DX", "0", NULL, "col2im", "direct", "conv_dx", set_convdx},
    {"BN_FUSE", "0", NULL, "apart", "fused", "bn_fuse", set_bnfuse},
    {"BN_ISA", "c", NULL, "plain_c", "avx512", "bn_isa", set_bnisa},
    {"BN_PATH", "0", NULL, "before", "after", "bn_path", set_bnpath},
    {"BN_ADD", "0", NULL, "apart", "fused", "bn_add", set_bnadd},
    {"CE", "clones", NULL, "clones", "avx512", "ce", set_ce},
    {"CKPT", "0", "auto", "plain", "checkpointed", "ckpt", set_ckpt},
    {"MEMORY_PLAN", "0", NULL, "free_list", "planned", "memory_plan", set_plan},
    {"HEAD_CHUNK", "0", NULL, "chunks_16mib", "chunks_grads", "head_chunk", set_head_chunk},
    {"HELD_GROUPS", "0", NULL, "panels", "groups", "held_groups", set_held_groups},

    {"PAR_SPLIT", "0", NULL, "per_thread", "split", "par_split", set_par_split},
    {"SDPA_SPLIT", "0", NULL, "samples", "items", "sdpa_split", set_sdpa_split},
    {"SDPA_TILED", "0", "1", "picked", "tiled", "sdpa_tiled", set_sdpa_tiled},
    {"COMPACT", "0", NULL, "f32", "bf16", "compact", set_compact},
    {"COMPACT_NORM", "0", NULL, "f32", "centred", "compact_norm", set_compact_norm},
    {"COMPACT_HELD", "0", NULL, "widened", "held", "compact_held", set_compact_held},
    {"BIAS_COLS", "0", NULL, "rows", "tiles", "bias_cols", set_bias_cols},
    {"DY_ONCE", "0", NULL, "twice", "once", "dy_once", set_dy_once},
    {"LINEAR_HELD", "0", NULL, "widened", "held", "linear_held", set_linear_held},
    {"HOLD_RECOMPUTABLE", "0", NULL, "recomputed", "held", "hold_recomputable", set_hold_rec},
    {"SPLIT_PASSES", "0", NULL, "serial", "split", "split_passes", set_split_passes},
    {"PACK_GROUPS", "0", NULL, "panels", "groups", "pack_groups", set_pack_groups},
    {"KS_WIDE", "0", NULL, "per_block", "wide", "ks_wide", set_ks_wide},
    {"HELD_PACK", "0", NULL, "before", "after", "held_pack", set_held_pack},
    {"PACK_SWEEP", "0", NULL, "panels", "sweep", "pack_sweep", set_pack_sweep},
    {"CHECK_FINITE", "0", NULL, "guard", "tiles", "check_finite", set_check_finite},
    {"GFL_PATH", "0", NULL, "before", "after", "gfl_path", set_gfl},
    {"BN_STAGE", "0", NULL, "rows", "staged", "bn_stage", set_bn_stage},
    {"WINO_BF16", "0", NULL, "direct", "winograd", "wino_bf16", set_wino_bf16},
    {"WINO_DX", "0", NULL, "direct", "winograd", "wino_dx", set_wino_dx},
    {"WEIGHT_CACHE", "0", NULL, "packed_per_call", "kept", "weight_cache", set_wcache},
    {"CE_FP32", "0", NULL, "double", "single", "ce_fp32", set_ce_fp32},
    {"CE_FTZ", "0", NULL, "subnormal", "ftz", "ce_ftz", set_ce_ftz},
    {"AMX", "0", NULL, "vdpbf16ps", "amx", "amx", set_amx},
    {"INT8_SWEEP", "0", NULL, "panels", "sweep", "int8_sweep", set_int8_sweep},
    {"INT8_PF", "0", NULL, "plain", "prefetch", "int8_pf", set_int8_pf},
    {"KN_SLICES", "0", NULL, "whole_k", "slices", "kn_slices", set_kn_slices},
    {"COMPUTE_DTYPE", NULL, "bf16", "f32", "bf16", "compute_dtype", set_dtype},
};
#define N_AB ((int)(sizeof AB / sizeof AB[0]))

/* GEMM_PROFILE=1: every product of the steps by kind and shape (strop__gemm_observer), its
 * calls, thread CPU time and rate */
typedef struct gemm_kind {
  int ta, tb, kernel, scaled;
  int64_t m, n, k;
  int calls;
  double seconds;
} gemm_kind;
static gemm_kind g_kinds[256];
static int g_nkinds;

static void gemm_seen(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, int kernel,
                      double seconds) {
  const int scaled = alpha != 1.0f;
  int i = 0;
  while (i < g_nkinds &&
         !(g_kinds[i].ta == ta && g_kinds[i].tb == tb && g_kinds[i].m == m && g_kinds[i].n == n &&
           g_kinds[i].k == k && g_kinds[i].kernel == kernel && g_kinds[i].scaled == scaled))
    i++;
  if (i == g_nkinds) {
    if (g_nkinds == 256) return;
    g_kinds[g_nkinds++] = (gemm_kind){ta, tb, kernel, scaled, m, n, k, 0, 0.0};
  }
  g_kinds[i].calls++;
  g_kinds[i].seconds += seconds;
}

static int by_time(const void *a, const void *b) {
  const double x = ((const gemm_kind *)a)->seconds, y = ((const gemm_kind *)b)->seconds;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* LOG=debug: the library's DEBUG lines on stderr (the planning's account of the step memory) */
static void log_stderr(int level, const char *message, void *user_data) {
  (void)level;
  (void)user_data;
  fprintf(stderr, "strop: %s\n", message);
}

/* Frees what main made for the steps; main's exit status. */
static int finish(strop_tensor *x, strop_tensor *y, strop_trainer *tr, strop_optimizer *opt,
                  strop_model *m) {
  const char *wo = getenv("WEIGHTS_OUT"); /* the trained weights, to compare two runs' bits */
  if (wo) bench_must(strop_model_save_weights(m, wo), "save weights");
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_big ROW DIR [threads] [steps] [repeats]\n");
    return 2;
  }
  const char *row = argv[1], *dir = argv[2];
  const char *lg = getenv("LOG");
  if (lg && !strcmp(lg, "debug")) strop_set_log_handler(log_stderr, STROP_LOG_DEBUG, NULL);
  int threads, steps, repeats;
  bench_args(argc, argv, 3, 3, &threads, &steps, &repeats);
  const int resnet = !strncmp(row, "resnet50", 8), bert = !strncmp(row, "bert", 4);
  const int gpt2 = !strncmp(row, "gpt2", 4), llama = !strncmp(row, "tinyllama", 9);
  const int lora = strstr(row, "_lora") != NULL, frozen = strstr(row, "_frozen") != NULL;
  if (!resnet && !bert && !gpt2 && !llama) {
    fprintf(stderr, "bench_big: unknown row %s\n", row);
    return 2;
  }
  const char *fdt = getenv("FROZEN_DTYPE");
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  const char *mm = getenv("MMAP");
  if (lora || frozen)
    o.flags = STROP_LOAD_FROZEN | (mm && !strcmp(mm, "0") ? 0 : STROP_LOAD_MMAP);
  if (fdt && !strcmp(fdt, "bf16")) o.frozen_dtype = STROP_DTYPE_BF16;
  if (fdt && !strcmp(fdt, "int8")) o.frozen_dtype = STROP_DTYPE_INT8;
  const int64_t size = env_int("SIZE", 224);
  o.image_size = size;
  /* a language model declared for the steps' length: strop_model_memory_estimate plans a step
   * of the model's input shape */
  if (!resnet) o.max_length = env_int("TOKENS", llama ? 256 : 128);
  char path[1024];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  const long rss_start = bench_status_kb("VmRSS:");
  strop_model *m = NULL;
  const double t_load = bench_now();
  bench_must(
      strop_model_load_pretrained(resnet ? path : dir, resnet ? "resnet50" : NULL, &o, &m, NULL),
      "load");
  const double load_s = bench_now() - t_load;
  const long hwm_load = bench_status_kb("VmHWM:");
  if (frozen) bench_must(strop_model_unfreeze(m, "fc"), "unfreeze fc");
  if (lora) {
    strop_surgery *s = NULL;
    bench_must(strop_surgery_create(m, &s), "surgery");
    if (gpt2) bench_must(strop_surgery_lora(s, "*.attn.c_attn", 8, 16.0f, 0.0f), "lora");
    else {
      bench_must(strop_surgery_lora(s, "*.q_proj", 8, 16.0f, 0.0f), "lora q");
      bench_must(strop_surgery_lora(s, "*.v_proj", 8, 16.0f, 0.0f), "lora v");
    }
    bench_must(strop_surgery_apply(s), "lora apply");
    strop_surgery_free(s);
  }

  /* the shapes, and the multiply-adds of a step from them */
  int64_t batch, tokens = 0, vocab = 0, classes = 1000;
  double fwd = 0, step_flops;
  if (resnet) {
    batch = env_int("BATCH", 8);
    fwd = 2.0 * 4.09e9 * (double)(size * size) / (224.0 * 224.0) * (double)batch;
  } else {
    batch = env_int("BATCH", bert ? 8 : gpt2 ? 4 : 1);
    tokens = env_int("TOKENS", llama ? 256 : 128);
    const int64_t d = llama ? 2048 : 768, ff = llama ? 5632 : 3072;
    /* layers from the parameter count is fragile: read them from the node names */
    int64_t layers = 0;
    for (int64_t i = 0; i < strop_model_num_nodes(m); i++) {
      char name[256];
      strop_model_node_name(m, i, name, sizeof name);
      const char *l = strstr(name, bert ? "layer." : gpt2 ? "h." : "layers.");
      if (l) {
        const int64_t k = atoll(strchr(l, '.') + 1) + 1;
        if (k > layers) layers = k;
      }
    }
    vocab = bert ? 0 : llama ? 32000 : 50257;
    classes = bert ? 2 : vocab;
    const double per_layer = llama ? 2.0 * d * d + 2.0 * d * (d / 8) + 3.0 * d * ff
                                   : 4.0 * d * d + 2.0 * d * ff;
    const double n = (double)(batch * tokens);
    fwd = 2.0 * n * ((double)layers * per_layer + (double)d * (double)vocab) +
          (double)layers * 4.0 * n * (double)tokens * (double)d; /* scores and their sum */
  }
  /* full: forward + input and weight gradients; frozen trunk: forward; LoRA: forward +
   * input gradients through every layer */
  step_flops = frozen ? fwd : lora ? 2.0 * fwd : 3.0 * fwd;

  int64_t xd[4], yd[2];
  int xr, yr;
  if (resnet) {
    xr = 4, xd[0] = batch, xd[1] = 3, xd[2] = size, xd[3] = size;
    yr = 1, yd[0] = batch;
  } else {
    xr = 2, xd[0] = batch, xd[1] = tokens;
    yr = bert ? 1 : 2, yd[0] = batch, yd[1] = tokens;
  }
  /* interleaved A/B: the first switch of AB set to `ab` (COMPUTE_DTYPE when none is); the
   * others' off_word / on_word fix a side for the whole run */
  const char *cdt = getenv("COMPUTE_DTYPE");
  int what = N_AB - 1, ab = 0;
  for (int i = 0; i < N_AB; i++) {
    const char *v = getenv(AB[i].env);
    if (!v) continue;
    if (!strcmp(v, "ab") && !ab) what = i, ab = 1;
    else if (AB[i].off_word && !strcmp(v, AB[i].off_word)) AB[i].set(m, 0);
    else if (AB[i].on_word && !strcmp(v, AB[i].on_word)) AB[i].set(m, 1);
  }
  if (getenv("FUSED_ROWS")) strop__fused_loss_rows = env_int("FUSED_ROWS", 0);
  if (getenv("ROWS_TOGETHER")) strop__rows_together = (int)env_int("ROWS_TOGETHER", 1);
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  bench_must(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt), "optimizer");
  bench_must(strop_optimizer_set_float(opt, STROP_OPT_LR, 1e-4f), "lr");
  bench_must(strop_trainer_create(m, opt, &tr), "trainer");
  if (getenv("ACCUM")) /* micro-batches a window: each step call is one of them */
    bench_must(strop_trainer_set_int(tr, STROP_TRAIN_ACCUM_STEPS, atoi(getenv("ACCUM"))),
               "accum");
  /* the step as this trainer runs it (AdamW, the cross-entropy, ACCUM), planned before any */
  size_t planned = 0, est[4] = {0, 0, 0, 0};
  if (!getenv("NOPLAN")) { /* NOPLAN=1: the step's own peak, without the planning's */
    bench_must(strop_trainer_step_memory(tr, batch, xd + 1, xr - 1, NULL, &planned), "plan");
    bench_must(strop_model_memory_estimate(m, batch, 2, &est[0], &est[1], &est[2], &est[3]),
               "estimate");
  }
  strop_tensor *x = NULL, *y = NULL;
  bench_must(strop_tensor_create(xr, xd, &x), "x");
  bench_must(strop_tensor_create(yr, yd, &y), "y");
  srand(7);
  const int64_t nx = strop_tensor_numel(x), ny = strop_tensor_numel(y);
  float *xv = strop_tensor_data(x), *yv = strop_tensor_data(y);
  for (int64_t i = 0; i < nx; i++)
    xv[i] = resnet ? (float)rand() / (float)RAND_MAX * 2 - 1 : (float)(1 + rand() % 1000);
  for (int64_t i = 0; i < ny; i++)
    yv[i] = resnet || bert     ? (float)(rand() % (int)classes)
            : (i + 1) % tokens ? xv[i + 1]
                               : -100.0f; /* next token; the last ignored */
  /* the steps' own peak from here: the load, a surgery plan (it runs on a clone that copies
   * the owned weights) and the planning each peak on their own before */
  const long rss_before = bench_status_kb("VmRSS:"), hwm_before = bench_status_kb("VmHWM:");
  bench_reset_peak_rss();
  float loss = 0;
  if (ab) { /* interleaved A/B, the order swapped every round */
    double bt[2] = {1e30, 1e30}, bc[2] = {1e30, 1e30}; /* wall, and the process's CPU time */
    double bm[2] = {1e30, 1e30};                       /* the calling thread's CPU time */
    double rc[64][2];                                  /* each round's CPU time per step */
    double bs[2] = {1e30, 1e30};                       /* system CPU time, page faults */
    long bf[2] = {1L << 60, 1L << 60};
    /* a warm-up step of each (the BF16 copies are made), the second side's first: the first
     * step sizes the arena, and a step that outgrows it later only in scratch a rollback gives
     * back (HEAD_CHUNK's one-chunk side: the LM head's 103 MB of logits) would map and fault
     * that memory again at every step (docs/performance.md, branch gph) */
    for (int h = 0; h < 2; h++) {
      const int d = 1 - h;
      AB[what].set(m, d);
      bench_must(strop_trainer_step(tr, x, y, &loss), "warm-up");
    }
    for (int r = 0; r < repeats; r++)
      for (int h = 0; h < 2; h++) {
        const int d = (r + h) % 2;
        AB[what].set(m, d);
        long f0 = 0, f1 = 0;
        const double s0 = sys_now(&f0);
        const double t0 = bench_now(), c0 = cpu_now(), m0 = thread_cpu_now();
        for (int s = 0; s < steps; s++) bench_must(strop_trainer_step(tr, x, y, &loss), "step");
        const double dt = (bench_now() - t0) / steps, dc = (cpu_now() - c0) / steps;
        const double dm = (thread_cpu_now() - m0) / steps;
        const double ds = (sys_now(&f1) - s0) / steps;
        if (ds < bs[d]) bs[d] = ds;
        if ((f1 - f0) / steps < bf[d]) bf[d] = (f1 - f0) / steps;
        if (dm < bm[d]) bm[d] = dm;
        if (dt < bt[d]) bt[d] = dt;
        if (dc < bc[d]) bc[d] = dc;
        if (r < 64) rc[r][d] = dc;
      }
    const char *a = AB[what].off, *b = AB[what].on;
    printf("RESULT impl=strop row=%s threads=%d batch=%lld tokens=%lld %s=ab "
           "%s_step_ms=%.1f %s_step_ms=%.1f %s_speedup=%.3f %s_cpu_ms=%.1f "
           "%s_cpu_ms=%.1f %s_cpu_speedup=%.3f %s_main_ms=%.1f %s_main_ms=%.1f "
           "%s_main_speedup=%.3f gemm_flops=%.4g round_cpu_ratios=",
           row, threads, (long long)batch, (long long)tokens, AB[what].key, a, bt[0] * 1e3, b,
           bt[1] * 1e3, b, bt[0] / bt[1], a, bc[0] * 1e3, b, bc[1] * 1e3, b, bc[0] / bc[1], a,
           bm[0] * 1e3, b, bm[1] * 1e3, b, bm[0] / bm[1], step_flops);
    for (int r = 0; r < repeats && r < 64; r++)
      printf("%s%.3f", r ? "," : "", rc[r][1] / rc[r][0]); /* B's time over A's */
    printf(" %s_sys_ms=%.1f %s_sys_ms=%.1f %s_faults=%ld %s_faults=%ld\n", a, bs[0] * 1e3, b,
           bs[1] * 1e3, a, bf[0], b, bf[1]);
    return finish(x, y, tr, opt, m);
  }
  if (getenv("POOL_PROFILE")) { /* after a warm-up step, `steps` steps observed */
    bench_must(strop_trainer_step(tr, x, y, &loss), "warm-up");
    strop__pool_par_s = strop__pool_lone_s = 0.0;
    strop__pool_naccounts = 0;
    strop__pool_profile = 1;
    const double c0 = cpu_now(), m0 = thread_cpu_now();
    for (int s = 0; s < steps; s++) bench_must(strop_trainer_step(tr, x, y, &loss), "step");
    const double proc_s = (cpu_now() - c0) / steps, main_s = (thread_cpu_now() - m0) / steps;
    strop__pool_profile = 0;
    double own = 0, wk = 0;
    for (int i = 0; i < strop__pool_naccounts; i++) {
      const strop__pool_account *a = &strop__pool_accounts[i];
      Dl_info di;
      const uintptr_t base = dladdr((void *)(uintptr_t)a->fn, &di) ? (uintptr_t)di.dli_fbase
                                                                   : (uintptr_t)0;
      printf("POOL row=%s fn=%s+0x%lx chunks=%d runs_per_step=%.0f lone_runs_per_step=%.0f "
             "par_ms=%.2f lone_ms=%.2f own_ms=%.2f worker_ms=%.2f own_chunks=%.0f "
             "worker_chunks=%.0f\n",
             row, base ? di.dli_fname : "?", (unsigned long)((uintptr_t)a->fn - base), a->chunks,
             (double)a->runs / steps, (double)a->lone_runs / steps, a->par_s / steps * 1e3,
             a->lone_s / steps * 1e3, a->own_s / steps * 1e3, a->worker_s / steps * 1e3,
             (double)a->own_chunks / steps, (double)a->worker_chunks / steps);
      own += a->own_s / steps, wk += a->worker_s / steps;
    }
    const double par = strop__pool_par_s / steps, lone = strop__pool_lone_s / steps;
    printf("RESULT impl=strop row=%s threads=%d pool_profile=1 process_cpu_ms=%.1f "
           "main_cpu_ms=%.1f par_ms=%.1f lone_ms=%.1f outside_ms=%.1f serial_share=%.3f "
           "own_chunks_ms=%.1f worker_chunks_ms=%.1f wait_ms=%.1f\n",
           row, threads, proc_s * 1e3, main_s * 1e3, par * 1e3, lone * 1e3,
           (main_s - par - lone) * 1e3, (main_s - par) / main_s, own * 1e3, wk * 1e3,
           (par - own) * 1e3);
    return finish(x, y, tr, opt, m);
  }
  if (getenv("GEMM_PROFILE")) { /* after a warm-up step, `steps` steps observed */
    bench_must(strop_trainer_step(tr, x, y, &loss), "warm-up");
    strop__gemm_observer = gemm_seen;
    const double c0 = cpu_now();
    for (int s = 0; s < steps; s++) bench_must(strop_trainer_step(tr, x, y, &loss), "step");
    const double step_s = (cpu_now() - c0) / steps;
    strop__gemm_observer = NULL;
    qsort(g_kinds, (size_t)g_nkinds, sizeof *g_kinds, by_time);
    double total = 0, flops = 0;
    for (int i = 0; i < g_nkinds; i++) {
      const gemm_kind *g = &g_kinds[i];
      const double fl = 2.0 * (double)g->m * (double)g->n * (double)g->k * g->calls / steps;
      total += g->seconds / steps, flops += fl;
      printf("GEMM row=%s op=%c%c m=%lld n=%lld k=%lld alpha=%s kernel=%s calls_per_step=%.0f "
             "ms_per_step=%.2f gflops=%.1f share_of_step=%.4f\n",
             row, g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', (long long)g->m, (long long)g->n,
             (long long)g->k, g->scaled ? "scaled" : "1",
             g->kernel == 4   ? "bf16_held"
             : g->kernel == 3 ? "bf16"
             : g->kernel == 2 ? "gemv"
             : g->kernel      ? "own"
                              : "openblas",
             (double)g->calls / steps, g->seconds / steps * 1e3, fl / (g->seconds / steps) / 1e9,
             g->seconds / steps / step_s);
    }
    printf("RESULT impl=strop row=%s threads=%d gemm_profile=1 step_cpu_ms=%.1f gemm_cpu_ms=%.1f "
           "gemm_share=%.4f gemm_gflops=%.1f counted_gemm_flops=%.4g step_flops=%.4g\n",
           row, threads, step_s * 1e3, total * 1e3, total / step_s, flops / total / 1e9, flops,
           step_flops);
    return finish(x, y, tr, opt, m);
  }
  const double best = bench_best_step(tr, x, y, steps, repeats, &loss);
  const char *fl = getenv("STROP_FUSED_LOSS");
  printf("RESULT impl=strop row=%s threads=%d batch=%lld tokens=%lld frozen_dtype=%s "
         "compute_dtype=%s fused_loss=%d "
         "step_ms=%.1f %s=%.2f gemm_flops=%.4g loss=%.4f params=%lld trainable=%lld "
         "load_s=%.2f rss_start_kb=%ld peak_after_load_kb=%ld rss_before_step_kb=%ld "
         "peak_setup_kb=%ld peak_rss_kb=%ld planned_peak_kb=%zu estimate_peak_kb=%zu\n",
         row, threads, (long long)batch, (long long)tokens, fdt ? fdt : "f32", cdt ? cdt : "f32",
         !(fl && !strcmp(fl, "0")), best * 1e3, resnet ? "samples_per_s" : "tokens_per_s",
         (double)(resnet ? batch : batch * tokens) / best, step_flops, (double)loss,
         (long long)strop_model_param_count(m, 0), (long long)strop_model_param_count(m, 1),
         load_s, rss_start, hwm_load, rss_before, hwm_before, bench_status_kb("VmHWM:"),
         planned / 1024, (est[0] + est[1] + est[2] + est[3]) / 1024);
  return finish(x, y, tr, opt, m);
}
