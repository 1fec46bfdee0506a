/* SPDX-License-Identifier: MIT */
/* strop — what lora_linear and multihead_attention share of LoRA: the lora_linear config and
 * PEFT's adapter init. Private to lib/layers: everything else reaches LoRA through the
 * descriptor's strop__lora_ops. */
#ifndef STROP_LAYERS_LORA_H
#define STROP_LAYERS_LORA_H

#include "layers/layer.h"

typedef struct strop__lora_cfg {
  int64_t in_features; /* 0 ("auto") until inferred */
  int in_given;        /* 1: in_features came from the options and is checked */
  int64_t out_features;
  int bias;
  int64_t r;     /* rank */
  float alpha;   /* scale = alpha / r, as PEFT's lora_alpha */
  float dropout; /* on the adapter's input, train mode only */
  int merged;    /* 1: B A is folded into weight; the adapter path is skipped */
  int layout;    /* the base weight: 0 [out, in] (nn.Linear), 1 [in, out] (Conv1D) */
} strop__lora_cfg;

/* alpha / r */
float strop__lora_scale(const strop__lora_cfg *c);
/* A ~ kaiming_uniform(a = sqrt(5)) over fan_in (PEFT's default), B = 0, so the adapter starts
 * at zero. Either may be NULL or unallocated (skipped). */
void strop__lora_init_pair(strop__param *a, strop__param *b, int64_t fan_in, strop__rng *rng);

#endif
