/* SPDX-License-Identifier: MIT */
/* strop — the architectures strop_model_load_pretrained knows, by name and by what a Hugging
 * Face config.json says. Adding one is adding its adapter and a line here. */
#include <string.h>

#include "pretrained/pretrained.h"

static const strop__arch *const ARCHS[] = {
    &strop__arch_resnet18,           &strop__arch_resnet34,       &strop__arch_resnet50,
    &strop__arch_resnet101,          &strop__arch_mobilenet_v2,   &strop__arch_mobilenet_v3_small,
    &strop__arch_mobilenet_v3_large, &strop__arch_gpt2_lm,        &strop__arch_gpt2_cls,
    &strop__arch_llama_lm,           &strop__arch_llama_cls,      &strop__arch_bert,
    &strop__arch_bert_cls,           &strop__arch_roberta,        &strop__arch_roberta_cls,
    &strop__arch_distilbert,         &strop__arch_distilbert_cls, &strop__arch_vit_b_16,
};
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

int strop__arch_count(void) { return N_ARCHS; }

const strop__arch *strop__arch_at(int i) { return i >= 0 && i < N_ARCHS ? ARCHS[i] : NULL; }

const strop__arch *strop__arch_find(const char *name) {
  for (int i = 0; name && i < N_ARCHS; i++)
    if (!strcmp(ARCHS[i]->name, name)) return ARCHS[i];
  return NULL;
}

static const strop__arch *serving(const char *what) {
  for (int i = 0; what && i < N_ARCHS; i++)
    for (const char *const *h = ARCHS[i]->hf_names; h && *h; h++)
      if (!strcmp(*h, what)) return ARCHS[i];
  return NULL;
}

const strop__arch *strop__arch_for_config(const strop__json *j, const strop__jnode *cfg) {
  const strop__jnode *a = strop__json_get(j, cfg, "architectures");
  if (a && a->type == STROP__J_ARR)
    for (const strop__jnode *e = strop__json_at(j, a->child); e; e = strop__json_at(j, e->next))
      if (e->type == STROP__J_STR && serving(e->str)) return serving(e->str);
  const strop__jnode *mt = strop__json_get(j, cfg, "model_type");
  return mt && mt->type == STROP__J_STR ? serving(mt->str) : NULL;
}

int strop_pretrained_arch_count(void) { return N_ARCHS; }

const char *strop_pretrained_arch_name(int i) {
  const strop__arch *a = strop__arch_at(i);
  return a ? a->name : NULL;
}

const char *strop_pretrained_arch_doc(const char *name) {
  const strop__arch *a = strop__arch_find(name);
  return a ? a->doc : NULL;
}
