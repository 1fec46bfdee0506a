/* SPDX-License-Identifier: MIT */
/* strop — fresh weights drawn as a Hugging Face family's PreTrainedModel._init_weights draws
 * them from config.json (transformers 4.x): every Linear / Conv1D and Embedding weight
 * N(0, initializer_range), biases 0, LayerNorm and RMSNorm weights 1 (biases 0), the padding
 * row of an embedding built with padding_idx = pad_token_id zero, and the weights the family
 * rescales (GPT-2's c_proj: initializer_range / sqrt(2 n_layer)). The random stream is
 * strop's (seeded), not torch's: the same seed gives the same bits here, the same
 * distributions there. */
#include <math.h>
#include <string.h>

#include "graph/meta.h"
#include "layers/init.h"
#include "pretrained/pretrained.h"

/* the part of a parameter's name after the node's: "weight", "bias" */
static const char *slot_of(const strop__node *nd, const strop__param *p) {
  const size_t l = strlen(nd->name);
  return !strncmp(p->name, nd->name, l) && p->name[l] == '.' ? p->name + l + 1 : p->name;
}

static int matches(const char *const *globs, const char *name) {
  for (const char *const *g = globs; g && *g; g++)
    if (strop__glob_match(*g, name)) return 1;
  return 0;
}

strop_status strop__pt_init_fresh(const strop__pt_ctx *c, const strop__arch *a, strop_model *m,
                                  uint64_t seed) {
  const strop__hf_init *hi = a->init;
  if (!hi)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: architecture %s (%s) has no Hugging Face initialisation to draw "
                      "fresh weights from (the transformers families have: gpt2, llama, bert, "
                      "roberta, distilbert and their classifiers); load its weights, or call "
                      "strop_model_reinit() for PyTorch's layer defaults",
                      c->fn, a->name, a->family);
  static const double RANGE = 0.02;
  double range = 0;
  int64_t layers = 0, pad = -1;
  const int64_t no_pad = -1;
  strop_status st = strop__pt_float(c, "initializer_range", &RANGE, 0, 10, &range);
  if (!st && hi->layers_key)
    st = strop__pt_int(c, hi->layers_key, &hi->layers_default, 0, 100000, &layers);
  if (!st && hi->padded)
    st = strop__pt_int(c, "pad_token_id", hi->pad_default >= 0 ? &hi->pad_default : &no_pad, -1,
                       INT32_MAX, &pad);
  if (st) return st;
  const double scaled = layers > 0 ? range / sqrt(2.0 * (double)layers) : range;
  strop__rng rng;
  strop__rng_seed(&rng, seed, 0x1417); /* a stream of its own: not the layers' defaults */
  for (int i = 0; i < m->n_nodes; i++) {
    strop__node *nd = &m->nodes[i];
    const char *type = nd->vt->type;
    /* linear-like: Linear, Conv1D (in_out linear), Llama's gated MLP (three projections) */
    const int lin = !strcmp(type, "linear") || !strcmp(type, "gated_mlp"),
              emb = !strcmp(type, "embedding") || !strcmp(type, "positional_embedding"),
              norm = !strcmp(type, "layernorm") || !strcmp(type, "rmsnorm");
    for (int j = 0; j < nd->n_params; j++) {
      strop__param *p = &nd->params[j];
      if (p->tied || p->is_buffer || p->is_int64) continue; /* a tie's owner draws it */
      const char *s = slot_of(nd, p);
      const size_t l = strlen(s);
      const int w = l >= 6 && !strcmp(s + l - 6, "weight") && (l == 6 || s[l - 7] == '.'),
                b = l >= 4 && !strcmp(s + l - 4, "bias") && (l == 4 || s[l - 5] == '.');
      if (!p->data || p->is_adapter || !(lin || emb || norm) || !(w || b) || (emb && b))
        return strop__err(STROP_E_INTERNAL,
                          "%s: %s: '%s' of layer '%s' (%s) has no Hugging Face "
                          "initialisation in strop",
                          c->fn, a->name, p->name, nd->name, type);
      if (b) strop__init_zeros(p->data, p->numel);
      else if (norm) strop__init_ones(p->data, p->numel);
      else {
        const double sd = hi->scaled && strop__glob_match(hi->scaled, p->name) ? scaled : range;
        strop__init_normal(p->data, p->numel, 0.0f, (float)sd, &rng);
      }
      if (emb && w && pad >= 0 && matches(hi->padded, p->name)) {
        if (p->rank != 2 || pad >= p->dims[0])
          return strop__err(STROP_E_FORMAT,
                            "%s: %s: 'pad_token_id' %lld is not a row of '%s' (%lld rows)", c->fn,
                            c->config_path, (long long)pad, p->name,
                            (long long)(p->rank ? p->dims[0] : 0));
        strop__init_zeros(p->data + pad * p->dims[1], (size_t)p->dims[1]);
      }
      p->version++;
    }
  }
  return STROP_OK;
}

strop_status strop__pt_redraw(const char *fn, strop_model *m, uint64_t seed, int *drawn) {
  *drawn = 0;
  const char *name = strop__meta_get(&m->meta, STROP__PT_META_ARCH);
  const char *text = strop__meta_get(&m->meta, STROP__PT_META_CONFIG);
  const strop__arch *a = name ? strop__arch_find(name) : NULL;
  if (!a || !a->init || !text) return STROP_OK;
  strop__json js = {0};
  strop_status st = strop__json_parse(text, strlen(text), 0, 32, &js);
  if (st) return st;
  strop_pretrained_options opt;
  strop_pretrained_options_init(&opt);
  const strop__pt_ctx c = {.fn = fn,
                           .arch = a->name,
                           .config_path = "config.json",
                           .json = &js,
                           .cfg = js.nodes[0].type == STROP__J_OBJ ? &js.nodes[0] : NULL,
                           .opt = &opt};
  st = strop__pt_init_fresh(&c, a, m, seed);
  strop__json_free(&js);
  if (!st) *drawn = 1;
  return st;
}
