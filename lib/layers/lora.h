/* strop — the lora_linear layer's internals that surgery needs: its config, adapter init and
 * merge. The layer is a linear whose base weight is frozen plus a trainable low-rank path. */
#ifndef STROP_LAYERS_LORA_H
#define STROP_LAYERS_LORA_H

#include "layers/layer.h"

typedef struct strop__lora_cfg {
  int64_t in_features; /* 0 until inferred when the option is omitted */
  int in_given;        /* 1: in_features came from the options and is checked */
  int64_t out_features;
  int bias;
  int64_t r;           /* rank */
  float alpha;         /* scale = alpha / r, as PEFT's lora_alpha */
  float dropout;       /* on the adapter's input, train mode only */
  int merged;          /* 1: B A is folded into weight; the adapter path is skipped */
} strop__lora_cfg;

extern const strop__layer_vtable strop__layer_lora_linear;

/* alpha / r */
float strop__lora_scale(const strop__lora_cfg *c);
/* A ~ kaiming_uniform(a = sqrt(5)) (PEFT's default), B = 0, so the adapter starts at zero. */
void strop__lora_init_adapters(strop__node *n, strop__rng *rng);
/* Folds B A into the base weight (merge = 1) or takes it out again (merge = 0); a no-op when
 * the node is already in that state. n must be a lora_linear node with its params. */
void strop__lora_set_merged(strop__node *n, int merge);

/* ---- LoRA on multihead_attention's projections (attention.c) ---- */
extern const strop__layer_vtable strop__layer_multihead_attention;
/* "q_proj", "k_proj", "v_proj", "out_proj": proj index 0..3, adapter params
 * "<node>.<proj>.lora_A.weight" [r, D] and ".lora_B.weight" [D, r] */
extern const char *const strop__mha_proj_names[4];
/* Sets the adapter of projection proj in a multihead_attention cfg (r = 0: none). */
void strop__mha_lora_set(void *cfg, int proj, int64_t r, float alpha);
/* Its rank (0: none) and alpha. */
int64_t strop__mha_lora_rank(const strop__node *n, int proj, float *alpha);
int strop__mha_lora_merged(const strop__node *n);
/* A ~ kaiming_uniform(a = sqrt(5)), B = 0 for the projections in mask (bit i = proj i). */
void strop__mha_lora_init_adapters(strop__node *n, int mask, strop__rng *rng);
/* Folds every adapter of the node into its base weight, or takes them out again. */
void strop__mha_lora_set_merged(strop__node *n, int merge);

#endif
