/* SPDX-License-Identifier: MIT */
/* strop — pre-trained checkpoints as people have them (torchvision state_dicts, PyTorch
 * modules, Hugging Face folders): one adapter per architecture builds the graph from ordinary
 * layer types with the checkpoint's own names, and says which file tensors are not parameters.
 * No layer knows a checkpoint format; this module sits beside io and surgery. */
#ifndef STROP_PRETRAINED_PRETRAINED_H
#define STROP_PRETRAINED_PRETRAINED_H

#include "graph/graph.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "strop/pretrained.h"

/* What an adapter is given. */
typedef struct strop__pt_ctx {
  const char *fn;          /* the public function, for messages */
  const char *arch;        /* the architecture's name as asked for or found */
  const char *config_path; /* config.json, or NULL (a torchvision file has none) */
  const strop__json *json; /* its parsed text, or NULL */
  const strop__jnode *cfg; /* the config's root object, or NULL */
  const strop_pretrained_options *opt;
  const strop__st_file *const *files; /* the checkpoint's files (read-only, for shapes) */
  int n_files;
} strop__pt_ctx;

/* How a Hugging Face family's PreTrainedModel._init_weights draws a fresh model (init.c):
 * every linear (Linear, Conv1D) and embedding weight N(0, config's initializer_range, default
 * 0.02), biases 0, LayerNorm / RMSNorm weights 1; the weights matching `scaled` drawn with
 * initializer_range / sqrt(2 * config[layers_key]) (GPT-2's c_proj); the row pad_token_id
 * (pad_default when the config lacks it, -1: none) of the embedding weights matching a
 * `padded` glob zero, as nn.Embedding's padding_idx row. */
typedef struct strop__hf_init {
  const char *scaled;
  const char *layers_key;
  int64_t layers_default;
  const char *const *padded; /* NULL-terminated globs, or NULL */
  int64_t pad_default;
} strop__hf_init;

/* One architecture. */
typedef struct strop__arch {
  const char *name;   /* "resnet18", "gpt2", "llama" */
  const char *family; /* "torchvision", "transformers", "torch.nn" */
  const char *doc;    /* one line */
  /* config.json's "architectures" entries (or "model_type") it serves; NULL-terminated */
  const char *const *hf_names;
  /* Builds an unfinalized model whose nodes carry the checkpoint's names. */
  strop_status (*build)(const strop__pt_ctx *c, strop_model **out);
  /* file tensors that are not parameters (globs: GPT-2's "*.attn.bias" masks); NULL-terminated */
  const char *const *ignore;
  /* a prefix file names may carry that the model's do not ("transformer."); NULL-terminated */
  const char *const *prefixes;
  /* a sequence-classification head added to it (head.c), or NULL head_name when the
   * architecture has no token sequence: the linear layer's name and bias as the family's
   * *ForSequenceClassification has it ("score", bias-free, for GPT-2 and Llama;
   * "classifier" for the BERT family), the pooling that class uses ("last", "cls"), and that
   * class's architecture when a head with that pooling reproduces it (the name
   * save_pretrained then writes; NULL when the names would differ) */
  const char *head_name;
  int head_bias;
  const char *head_pool;
  const char *cls_arch;
  /* how the family draws a fresh model (STROP_LOAD_FRESH), or NULL: it cannot */
  const strop__hf_init *init;
} strop__arch;

/* What a load keeps in the model's metadata, so the model can be saved back as the folder it
 * came from (save.c): the architecture's name and config.json's text. */
#define STROP__PT_META_ARCH "pretrained.arch"
#define STROP__PT_META_CONFIG "pretrained.config"
/* Where a text model's last hidden state [T, D] is (the node a classification head pools),
 * and BERT's pooler output when it has one; set by the adapters. */
#define STROP__PT_META_HIDDEN "pretrained.hidden"
#define STROP__PT_META_POOLED "pretrained.pooled"
/* A classification head no Hugging Face class has (its pooling word), set by head.c:
 * save_pretrained refuses such a model. */
#define STROP__PT_META_HEAD "pretrained.head"

/* Replaces whatever follows the hidden state of m (a text model strop_model_load_pretrained
 * loaded) by a sequence-classification head (head.c): pool "cls" (the first token the mask
 * keeps; BERT's through its pooler), "mean" (masked mean), "last" (the last token the mask
 * keeps), or NULL/"default" (the family's own); then dropout (when > 0) and a linear layer of
 * `classes` outputs named as the family's head. A surgery plan, so m is unchanged on error. */
strop_status strop__pt_add_head(const char *fn, strop_model *m, const char *pool, int64_t classes,
                                double dropout, uint64_t seed);
/* Sets the hidden-state metadata on an adapter's model. */
strop_status strop__pt_mark_hidden(const strop__pt_ctx *c, strop_model *m, const char *hidden,
                                   const char *pooled);

/* Draws every parameter of m (built by a's adapter, finalized) as a's Hugging Face class
 * draws a fresh model, from the config in c and seed (init.c). STROP_E_UNSUPPORTED when a has
 * no init. */
strop_status strop__pt_init_fresh(const strop__pt_ctx *c, const strop__arch *a, strop_model *m,
                                  uint64_t seed);
/* The same on a model strop_model_load_pretrained loaded, from the architecture and config its
 * metadata keeps; *drawn says whether it did (0: not a family with an init; m unchanged). */
strop_status strop__pt_redraw(const char *fn, strop_model *m, uint64_t seed, int *drawn);

/* The registry (registry.c). */
const strop__arch *strop__arch_find(const char *name);
const strop__arch *strop__arch_for_config(const strop__json *j, const strop__jnode *cfg);
int strop__arch_count(void);
const strop__arch *strop__arch_at(int i);

/* ---- config.json, read with errors naming the file and the key (config.c) ---- */
/* An integer field: required when dflt is NULL; checked against [lo, hi]. */
strop_status strop__pt_int(const strop__pt_ctx *c, const char *key, const int64_t *dflt,
                           int64_t lo, int64_t hi, int64_t *out);
strop_status strop__pt_float(const strop__pt_ctx *c, const char *key, const double *dflt,
                             double lo, double hi, double *out);
strop_status strop__pt_bool(const strop__pt_ctx *c, const char *key, int dflt, int *out);
/* A string field, or dflt (may be NULL) when absent; a non-string is an error. */
strop_status strop__pt_str(const strop__pt_ctx *c, const char *key, const char *dflt,
                           const char **out);

/* The shape of checkpoint tensor name (looked up as written and under the architecture's
 * prefixes) into dims (cap entries); its rank, or -1 when no file has it. */
int strop__pt_shape(const strop__pt_ctx *c, const strop__arch *a, const char *name, int64_t *dims,
                    int cap);

/* ---- building graphs: one node at a time, options as text (build.c) ---- */
/* strop_model_add with printf-style options, for adapters' many nodes. inputs as for
 * strop_model_add (NULL: the previous node). */
strop_status strop__pt_add(strop_model *m, const char *name, const char *type, const char *inputs,
                           const char *opts_fmt, ...) STROP__PRINTF(5, 6);

/* ---- what the Hugging Face adapters share (hf.c) ---- */
/* A model of token ids [T]: T is the options' max_length, else max_positions (the config's
 * n_positions / max_position_embeddings). */
strop_status strop__hf_text_model(const strop__pt_ctx *c, int64_t max_positions,
                                  strop_model **out);
/* An activation as config.json names it ("gelu_new"): strop's layer type and options. */
typedef struct strop__hf_activation {
  const char *hf_name, *type, *opts;
} strop__hf_activation;
strop_status strop__hf_act(const strop__pt_ctx *c, const char *key, const char *dflt,
                           strop__hf_activation *out);
/* An error naming config key `key` when checkpoint tensor `tensor` has another size than
 * want in dimension dim (nothing when the file lacks the tensor: the strict load says so). */
strop_status strop__hf_check_dims(const strop__pt_ctx *c, const strop__arch *a,
                                  const char *tensor, int dim, int64_t want, const char *key);
/* An error unless b divides a (heads into a width), naming both keys. */
strop_status strop__hf_divides(const strop__pt_ctx *c, const char *key_a, int64_t a,
                               const char *key_b, int64_t b);
/* The classes of a sequence-classification head: head.weight's rows, else config.json's
 * id2label or num_labels, else fallback. */
int64_t strop__hf_classes(const strop__pt_ctx *c, const strop__arch *a, const char *head,
                          int64_t fallback);

/* gpt2.c, llama.c, bert.c, vit.c */
extern const strop__arch strop__arch_gpt2_lm, strop__arch_gpt2_cls, strop__arch_llama_lm,
    strop__arch_llama_cls, strop__arch_bert, strop__arch_bert_cls, strop__arch_roberta,
    strop__arch_roberta_cls, strop__arch_distilbert, strop__arch_distilbert_cls,
    strop__arch_vit_b_16;

/* torchvision.c */
extern const strop__arch strop__arch_resnet18, strop__arch_resnet34, strop__arch_resnet50,
    strop__arch_resnet101, strop__arch_mobilenet_v2, strop__arch_mobilenet_v3_small,
    strop__arch_mobilenet_v3_large;

#endif
