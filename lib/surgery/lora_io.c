/* SPDX-License-Identifier: MIT */
/* strop — LoRA adapters as a whole: merge into / unmerge from the base weights, and the
 * adapter files in Hugging Face PEFT's layout (adapter_model.safetensors + adapter_config.json)
 * so adapters move between strop and PEFT. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sbuf.h"
#include "io/atomic.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "surgery/surgery_impl.h"

#define PREFIX "base_model.model."
#define MTS_KEY "lora.modules_to_save"

/* ---- modules_to_save: the list in the model's metadata ---- */

static void names_free(char **v, int n) {
  for (int i = 0; i < n; i++) strop__free(v[i]);
  strop__free(v);
}

strop_status strop__mts_get(const strop_model *m, char ***names, int *n) {
  *names = NULL;
  *n = 0;
  const char *v = strop__meta_get(&m->meta, MTS_KEY);
  if (!v) return STROP_OK;
  strop__json j;
  memset(&j, 0, sizeof j);
  strop_status st = strop__json_parse(v, strlen(v), 0, 4, &j);
  if (st == STROP_E_NOMEM) return strop__err(st, "out of memory");
  const strop__jnode *r = st ? NULL : strop__json_at(&j, 0);
  int ok = r && r->type == STROP__J_ARR;
  for (const strop__jnode *c = ok ? strop__json_at(&j, r->child) : NULL; c;
       c = strop__json_at(&j, c->next))
    ok = ok && c->type == STROP__J_STR && c->len > 0;
  if (!ok) {
    strop__json_free(&j);
    return strop__err(STROP_E_FORMAT, "the model's metadata '" MTS_KEY "' is not a JSON list of "
                                      "node names (docs/formats.md, model metadata)");
  }
  const int count = r->count;
  char **v2 = strop__calloc((size_t)count + 1, sizeof *v2);
  int k = 0;
  for (const strop__jnode *c = v2 ? strop__json_at(&j, r->child) : NULL; c;
       c = strop__json_at(&j, c->next), k++)
    if (!(v2[k] = strop__strdup(c->str))) break;
  strop__json_free(&j);
  if (!v2 || k < count) {
    names_free(v2, k);
    return strop__err(STROP_E_NOMEM, "out of memory");
  }
  *names = v2;
  *n = k;
  return STROP_OK;
}

/* Writes the list back as the key's value (removing the key when n is 0). */
static strop_status mts_put(strop_model *m, char *const *names, int n) {
  if (!n) return strop__meta_set(&m->meta, "surgery", MTS_KEY, NULL);
  strop__sbuf b = {0};
  strop__sbuf_puts(&b, "[");
  for (int i = 0; i < n; i++) {
    if (i) strop__sbuf_puts(&b, ", ");
    strop__sbuf_json_str(&b, names[i]);
  }
  strop__sbuf_puts(&b, "]");
  strop_status st = b.oom ? strop__err(STROP_E_NOMEM, "out of memory")
                          : strop__meta_set(&m->meta, "surgery", MTS_KEY, b.s);
  strop__sbuf_free(&b);
  return st;
}

strop_status strop__mts_add(strop_model *m, const char *node) {
  char **names = NULL;
  int n = 0;
  strop_status st = strop__mts_get(m, &names, &n);
  if (st) return st;
  int have = 0;
  for (int i = 0; i < n; i++) have |= !strcmp(names[i], node);
  if (!have) {
    char **v = strop__realloc(names, ((size_t)n + 1) * sizeof *v);
    char *d = v ? strop__strdup(node) : NULL;
    if (v) names = v;
    if (!d) st = strop__err(STROP_E_NOMEM, "out of memory");
    else names[n++] = d;
  }
  if (!st && !have) st = mts_put(m, names, n);
  names_free(names, n);
  return st;
}

strop_status strop__mts_prune(strop_model *m) {
  char **names = NULL;
  int n = 0, kept = 0;
  strop_status st = strop__mts_get(m, &names, &n);
  if (st || !n) return st;
  for (int i = 0; i < n; i++) {
    if (strop__model_node_find(m, names[i]) >= 0) names[kept++] = names[i];
    else strop__free(names[i]);
  }
  if (kept < n) st = mts_put(m, names, kept);
  names_free(names, kept);
  return st;
}

/* The adapted modules of node n: its parts (bit i) with adapters, or 1 for a whole-node
 * adapter; 0 when it has none. */
static unsigned adapted_mask(const strop__node *n) {
  const strop__lora_ops *lo = n->vt->lora;
  if (!lo || !lo->rank) return 0;
  if (!lo->parts) return lo->rank(n, 0, NULL, NULL) > 0;
  unsigned mask = 0;
  for (int p = 0; lo->parts[p] && p < 32; p++)
    if (lo->rank(n, p, NULL, NULL) > 0) mask |= 1u << p;
  return mask;
}

/* The names of a module's A and B tensors after its name, as PEFT saves them: lora_A.weight and
 * lora_B.weight (a linear, a projection; [r, in] and [out, r]) or what the layer type says
 * (an embedding's lora_embedding_A [r, num_embeddings] and lora_embedding_B [dim, r]). */
static const char *const LINEAR_TENSORS[] = {"lora_A.weight", "lora_B.weight", NULL};

static const char *const *tensor_names(const strop__node *n) {
  const strop__lora_ops *lo = n->vt->lora;
  return lo && lo->tensors ? lo->tensors : LINEAR_TENSORS;
}

/* One adapted module in PEFT's sense: a whole node with an adapter (lora_linear,
 * lora_embedding) or a part "<node>.<part>" (an attention projection). */
typedef struct lmodule {
  const strop__node *n;
  char name[300];
  int64_t r;
  float alpha, dropout;
} lmodule;

/* The k-th adapted module in node order; 0 when there are fewer. */
static int module_at(const strop_model *m, int k, lmodule *out) {
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *n = &m->nodes[i];
    const unsigned mask = adapted_mask(n);
    for (int p = 0; p < 32; p++) {
      if (!(mask & (1u << p)) || k-- > 0) continue;
      const strop__lora_ops *lo = n->vt->lora;
      out->n = n;
      out->r = lo->rank(n, p, &out->alpha, &out->dropout);
      if (lo->parts) snprintf(out->name, sizeof out->name, "%s.%s", n->name, lo->parts[p]);
      else snprintf(out->name, sizeof out->name, "%s", n->name);
      return 1;
    }
  }
  return 0;
}

/* The bias of adapted module mod's base layer ("<module>.bias": a linear's own, or an attention
 * projection's), or NULL when it has none. */
static const strop__param *module_bias(const lmodule *mod) {
  const char *part = mod->name + strlen(mod->n->name); /* "" or ".<part>" */
  char sfx[300];
  snprintf(sfx, sizeof sfx, "%s%sbias", *part ? part + 1 : "", *part ? "." : "");
  const strop__param *p = strop__node_param((strop__node *)mod->n, sfx);
  return p && p->data && !p->tied && !p->is_adapter && !p->is_buffer ? p : NULL;
}

/* The biases of adapted modules that train (PEFT's bias "lora_only"), counted in *n; refuses
 * any other parameter of an adapted node that trains (its base weight, a packed in_proj_bias):
 * a PEFT folder has no place for it, and leaving it out would not give the trained model. */
static strop_status trained_biases(const char *fn, const strop_model *m, int *n) {
  *n = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    if (!adapted_mask(nd)) continue;
    for (int j = 0; j < nd->n_params; j++) {
      const strop__param *p = &nd->params[j];
      if (p->is_adapter || p->tied || p->is_buffer || !p->trainable) continue;
      int is_bias = 0;
      lmodule mod;
      for (int k = 0; !is_bias && module_at(m, k, &mod); k++)
        is_bias = mod.n == nd && module_bias(&mod) == p;
      if (!is_bias)
        return strop__err(STROP_E_UNSUPPORTED,
                          "%s: '%s' trains, but a LoRA adapter folder holds only the adapters, "
                          "the biases of adapted modules and whole modules without adapters "
                          "(nothing saved); freeze it, or merge the adapters and save the model",
                          fn, p->name);
      (*n)++;
    }
  }
  return STROP_OK;
}

strop_status strop__lora_merge_check(const char *fn, const strop_model *model) {
  /* a base tied to another tensor (a LoRA on GPT-2's lm_head, whose weight is the token
   * embedding, or on that embedding) would change that tensor too: the merged model would not
   * be the trained one */
  for (int i = 0; i < model->n_nodes; i++) {
    const strop__node *n = &model->nodes[i];
    const strop__lora_ops *lo = n->vt->lora;
    if (!adapted_mask(n) || !lo->set_merged || (lo->merged && lo->merged(n))) continue;
    for (int j = 0; j < n->n_params; j++) {
      const strop__param *p = &n->params[j], *o = p->tied;
      for (int a = 0; !o && !p->is_adapter && a < model->n_nodes; a++)
        for (int b = 0; !o && b < model->nodes[a].n_params; b++)
          if (model->nodes[a].params[b].tied == p) o = &model->nodes[a].params[b];
      if (o && !p->is_adapter)
        return strop__err(STROP_E_UNSUPPORTED,
                          "%s: the LoRA adapter of '%s' cannot be merged: '%s' is tied to "
                          "'%s', which merging would change too (nothing merged); keep the "
                          "adapters apart (strop_model_lora_save)",
                          fn, n->name, p->name, o->name);
    }
  }
  return STROP_OK;
}

static strop_status set_merged(const char *fn, strop_model *model, int merge) {
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  int hits = 0;
  strop_status st0 = merge ? strop__lora_merge_check(fn, model) : STROP_OK;
  if (st0) return st0;
  /* adapters fold into FP32 bases only: bases held in BF16 or int8 are widened first, and the
   * model's frozen dtype becomes FP32 (a merged base would not unmerge exactly if rounded) */
  for (int i = 0; i < model->n_nodes && model->frozen_dtype; i++) {
    strop__node *n = &model->nodes[i];
    if (!adapted_mask(n)) continue;
    for (int j = 0; j < n->n_params; j++)
      if (n->params[j].lowp.dtype) {
        strop_status st = strop__model_store(fn, model, STROP_DTYPE_F32);
        if (st) return st;
        break;
      }
  }
  /* the bases are written: those borrowed from a mapped file are copied out of it first */
  for (int i = 0; i < model->n_nodes; i++) {
    strop__node *n = &model->nodes[i];
    if (!adapted_mask(n) || !n->vt->lora->set_merged) continue;
    for (int j = 0; j < n->n_params; j++)
      if (strop__param_own(strop__param_owner(&n->params[j])))
        return strop__err(STROP_E_NOMEM,
                          "%s: out of memory copying '%s' out of its mapped file "
                          "(nothing merged)",
                          fn, n->params[j].name);
  }
  for (int i = 0; i < model->n_nodes; i++) {
    strop__node *n = &model->nodes[i];
    if (!adapted_mask(n) || !n->vt->lora->set_merged) continue;
    n->vt->lora->set_merged(n, merge);
    hits++;
  }
  if (!hits) return strop__err(STROP_E_NOT_FOUND, "%s: the model has no LoRA adapters", fn);
  return STROP_OK;
}

strop_status strop_model_lora_merge(strop_model *model) {
  return set_merged("strop_model_lora_merge", model, 1);
}

strop_status strop_model_lora_unmerge(strop_model *model) {
  return set_merged("strop_model_lora_unmerge", model, 0);
}

static char *join(const char *dir, const char *file) {
  size_t l = strlen(dir) + strlen(file) + 2;
  char *p = strop__malloc(l);
  if (p) snprintf(p, l, "%s/%s", dir, file);
  return p;
}

/* a JSON number for a float: integral values without a fraction, as PEFT writes them */
static void json_float(strop__sbuf *t, double v) {
  if (v == floor(v) && fabs(v) < 1e15) strop__sbuf_printf(t, "%lld", (long long)v);
  else strop__sbuf_printf(t, "%.7g", v);
}

/* Whether node n trains whole beside the adapters: it has none of its own, and one of its own
 * parameters (not a buffer, not another's tied tensor) trains — a LayerNorm unfrozen beside
 * LoRA, say. The base model's values of it are not the trained ones, so adapter files carry it
 * as a module to save, as PEFT does with the modules it trains in full. */
static int trained_whole(const strop__node *n) {
  if (adapted_mask(n)) return 0;
  for (int j = 0; j < n->n_params; j++) {
    const strop__param *p = &n->params[j];
    if (!p->is_adapter && !p->tied && !p->is_buffer && p->trainable) return 1;
  }
  return 0;
}

/* Adds node nd's own parameters and buffers (adapters and tied slots aside) under PEFT's
 * names and lists the node in cfg. */
static strop_status save_module(const strop__node *nd, strop__st_writer *w, strop__sbuf *cfg,
                                int first) {
  char key[600];
  strop__sbuf_printf(cfg, "%s\"%s\"", first ? "[" : ", ",
                     nd->name); /* node names need no JSON escape */
  strop_status st = STROP_OK;
  for (int j = 0; !st && j < nd->n_params; j++) {
    const strop__param *p = &nd->params[j];
    if (p->is_adapter || p->tied) continue;
    snprintf(key, sizeof key, PREFIX "%s", p->name);
    st = p->data ? strop__st_writer_add_f32(w, key, p->rank, p->dims, p->data)
                 : strop__st_writer_add_i64(w, key, p->rank, p->dims, p->idata);
  }
  return st;
}

/* Adds the full weights of the modules_to_save nodes under PEFT's names (the module's own
 * state_dict names after "base_model.model.": PEFT drops "modules_to_save.<adapter>." when it
 * saves) and lists the nodes in cfg: those the metadata lists, then those that train whole.
 * Adapter tensors of such a node stay with the adapters. */
static strop_status save_modules(const char *fn, const strop_model *m, strop__st_writer *w,
                                 strop__sbuf *cfg) {
  char **names = NULL;
  int n = 0, listed = 0;
  strop_status st = strop__mts_get(m, &names, &n);
  if (st) {
    strop__err_prefix("%s", fn);
    return st;
  }
  for (int i = 0; !st && i < n; i++) {
    int idx = strop__model_node_find(m, names[i]);
    if (idx < 0) {
      st = strop__err(STROP_E_NOT_FOUND,
                      "%s: the model's metadata '" MTS_KEY "' names '%s', "
                      "which is not a node of the model",
                      fn, names[i]);
      break;
    }
    st = save_module(&m->nodes[idx], w, cfg, !listed++);
  }
  for (int i = 0; !st && i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    int have = 0;
    for (int k = 0; k < n; k++) have |= !strcmp(names[k], nd->name);
    if (!have && trained_whole(nd)) st = save_module(nd, w, cfg, !listed++);
  }
  strop__sbuf_printf(cfg, listed ? "]" : "null");
  names_free(names, n);
  return st;
}

strop_status strop_model_lora_save(const strop_model *model, const char *dir) {
  static const char fn[] = "strop_model_lora_save";
  if (!model || !dir)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "dir" : "model");
  lmodule c0, mod;
  if (!module_at(model, 0, &c0))
    return strop__err(STROP_E_NOT_FOUND, "%s: the model has no LoRA adapters", fn);
  strop__st_writer *w = NULL;
  strop__sbuf cfg;
  memset(&cfg, 0, sizeof cfg);
  char *st_path = join(dir, "adapter_model.safetensors");
  char *cfg_path = join(dir, "adapter_config.json");
  char name[512];
  int n_bias = 0;
  strop_status st = trained_biases(fn, model, &n_bias);
  if (!st) st = st_path && cfg_path ? strop__st_writer_create(fn, &w) : STROP__NOMEM(fn);
  if (!st) st = strop__st_writer_set_meta(w, "format", "pt");
  strop__sbuf_printf(
      &cfg, "{\n  \"peft_type\": \"LORA\",\n  \"r\": %lld,\n  \"lora_alpha\": ", (long long)c0.r);
  json_float(&cfg, c0.alpha);
  strop__sbuf_printf(&cfg, ",\n  \"lora_dropout\": ");
  json_float(&cfg, c0.dropout);
  /* trained biases of adapted modules: PEFT's "lora_only" (its "all" would take every bias) */
  strop__sbuf_printf(&cfg, ",\n  \"bias\": \"%s\",\n  \"fan_in_fan_out\": false,\n",
                     n_bias ? "lora_only" : "none");
  strop__sbuf_printf(&cfg, "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                           "  \"task_type\": null,\n  \"base_model_name_or_path\": null,\n"
                           "  \"modules_to_save\": ");
  if (!st) st = save_modules(fn, model, w, &cfg);
  strop__sbuf_printf(&cfg, ",\n  \"target_modules\": [");
  for (int k = 0; !st && module_at(model, k, &mod); k++) {
    strop__sbuf_printf(&cfg, "%s\"%s\"", k ? ", " : "", mod.name);
    const char *const *sfx = tensor_names(mod.n);
    for (int j = 0; !st && j < 2; j++) {
      snprintf(name, sizeof name, "%s.%s", mod.name, sfx[j]);
      const strop__param *p = strop__node_param((strop__node *)mod.n,
                                                name + strlen(mod.n->name) + 1);
      if (!p || !p->data) {
        st = strop__err(STROP_E_INTERNAL, "%s: module '%s' lacks '%s'", fn, mod.name, sfx[j]);
        break;
      }
      snprintf(name, sizeof name, PREFIX "%s.%s", mod.name, sfx[j]);
      st = strop__st_writer_add_f32(w, name, p->rank, p->dims, p->data);
    }
  }
  /* under the name a PEFT model holds them by: its LoRA layer wraps the base as base_layer */
  for (int k = 0; !st && n_bias && module_at(model, k, &mod); k++) {
    const strop__param *p = module_bias(&mod);
    if (!p || !p->trainable) continue;
    snprintf(name, sizeof name, PREFIX "%s.base_layer.bias", mod.name);
    st = strop__st_writer_add_f32(w, name, p->rank, p->dims, p->data);
  }
  /* modules whose rank or alpha differ from the first go to PEFT's per-module patterns */
  for (int pass = 0; pass < 2; pass++) {
    strop__sbuf_printf(&cfg, pass ? "},\n  \"alpha_pattern\": {" : "],\n  \"rank_pattern\": {");
    int n = 0;
    for (int k = 0; module_at(model, k, &mod); k++) {
      if (!pass && mod.r != c0.r) {
        strop__sbuf_printf(&cfg, "%s\"%s\": %lld", n++ ? ", " : "", mod.name, (long long)mod.r);
      } else if (pass && mod.alpha != c0.alpha) {
        strop__sbuf_printf(&cfg, "%s\"%s\": ", n++ ? ", " : "", mod.name);
        json_float(&cfg, mod.alpha);
      }
    }
  }
  strop__sbuf_printf(&cfg, "}\n}\n");
  if (!st && cfg.oom) st = STROP__NOMEM(fn);
  /* the folder is made when missing, as an output folder of a recipe is */
  if (!st) st = strop__mkdirs(fn, dir);
  if (!st) st = strop__st_writer_save(w, st_path);
  if (!st) st = strop__write_file_atomic(fn, cfg_path, cfg.s, cfg.n);
  strop__st_writer_free(w);
  strop__sbuf_free(&cfg);
  strop__free(st_path);
  strop__free(cfg_path);
  return st;
}

/* ---- loading ---- */
static double jnum(const strop__jnode *n, double dflt) {
  if (!n || n->type != STROP__J_NUM) return dflt;
  return n->is_int ? (double)n->ival : strtod(n->str, NULL);
}

/* PEFT's pattern keys name a module or a suffix of its name. */
static const strop__jnode *pattern_for(const strop__json *j, const strop__jnode *obj,
                                       const char *module) {
  if (!obj || obj->type != STROP__J_OBJ) return NULL;
  size_t ml = strlen(module);
  for (const strop__jnode *c = strop__json_at(j, obj->child); c; c = strop__json_at(j, c->next)) {
    size_t kl = strlen(c->key);
    if (!strcmp(c->key, module) ||
        (kl < ml && module[ml - kl - 1] == '.' && !strcmp(module + ml - kl, c->key)))
      return c;
  }
  return NULL;
}

typedef struct lmod {
  char *name;
  int a, b;                 /* tensor indices in the file, -1 if absent */
  const char *const *names; /* the names of its A and B (tensor_names) */
} lmod;

/* Which adapter tensor the file's tensor tn is: 0 (A) or 1 (B) of the names *names (those of a
 * linear, or of a layer type that names its own), its module's name being tn[PREFIX, *ml);
 * -1 when it is none. */
static int adapter_tensor(const char *tn, const char *const **names, size_t *ml) {
  const size_t l = strlen(tn), pl = sizeof PREFIX - 1;
  if (strncmp(tn, PREFIX, pl) != 0) return -1;
  for (int k = -1; k < strop__layer_count(); k++) {
    const strop__layer_vtable *vt = k < 0 ? NULL : strop__layer_at(k);
    const char *const *v = vt ? (vt->lora ? vt->lora->tensors : NULL) : LINEAR_TENSORS;
    for (int ab = 0; v && ab < 2; ab++) {
      const size_t sl = strlen(v[ab]);
      if (l > pl + sl + 1 && tn[l - sl - 1] == '.' && !strcmp(tn + l - sl, v[ab])) {
        *names = v;
        *ml = l - pl - sl - 1;
        return ab;
      }
    }
  }
  return -1;
}

/* A module of the config's modules_to_save: its node in the base model, the file's tensors
 * of it, and whether its node must be made again (a head of another shape). */
typedef struct kmod {
  const char *name; /* in the parsed config */
  int node;
  int *t; /* tensor indices of the file */
  int nt;
  int recreate;
} kmod;

/* The tensor of the file whose name is PREFIX "<module>.<suffix>", or -1. */
static int file_tensor(const strop__st_file *f, const char *module, const char *suffix) {
  char key[700];
  snprintf(key, sizeof key, PREFIX "%s.%s", module, suffix);
  return strop__st_find_index(f, key);
}

/* Whether the file's tensors of module k fit its node as it is (every non-adapter tensor, with
 * its shape, and nothing else); when not, whether a linear of the file's shape can take its
 * place (PEFT's modules_to_save of a classifier head with another number of classes). */
static strop_status plan_module(const char *fn, const char *path, const strop_model *m,
                                const strop__st_file *f, kmod *k, strop_surgery *s) {
  const strop__node *nd = &m->nodes[k->node];
  const size_t nl = strlen(k->name) + 1;
  int fits = 1, own = 0;
  for (int j = 0; j < nd->n_params; j++) {
    const strop__param *p = &nd->params[j];
    if (p->is_adapter || p->tied) continue;
    own++;
    int t = file_tensor(f, k->name, p->name + nl);
    if (t < 0 || f->t[t].rank != p->rank) {
      fits = 0;
      continue;
    }
    for (int d = 0; d < p->rank; d++) fits &= f->t[t].dims[d] == p->dims[d];
  }
  if (fits && own == k->nt) return STROP_OK;
  /* another shape: a linear (weight [out, in], bias [out] or none) is made anew */
  int w = file_tensor(f, k->name, "weight"), b = file_tensor(f, k->name, "bias");
  const int linear = !strcmp(nd->vt->type, "linear") || !strcmp(nd->vt->type, "lora_linear");
  if (!linear || w < 0 || f->t[w].rank != 2 || k->nt != 1 + (b >= 0) ||
      (b >= 0 && (f->t[b].rank != 1 || f->t[b].dims[0] != f->t[w].dims[0])))
    return strop__err(STROP_E_SHAPE,
                      "%s: %s: module '%s' of modules_to_save does not fit node "
                      "'%s' (%s) of the model, and only a linear node can be made anew from a "
                      "file's weight [out, in] (and bias [out])",
                      fn, path, k->name, nd->name, nd->vt->type);
  char opts[160];
  snprintf(opts, sizeof opts, "in_features=%lld out_features=%lld bias=%s",
           (long long)f->t[w].dims[1], (long long)f->t[w].dims[0], b >= 0 ? "true" : "false");
  k->recreate = 1;
  return strop_surgery_replace(s, k->name, "linear", opts, 0);
}

/* Copies the file's tensors of module k into its node of c (after the plan ran). */
static strop_status fill_module(const char *fn, const char *path, strop_model *c,
                                const strop__st_file *f, const kmod *k) {
  const size_t pl = sizeof PREFIX - 1;
  int idx = strop__model_node_lookup(c, k->name);
  if (idx < 0) return strop__err(STROP_E_INTERNAL, "%s: node '%s' lost by the plan", fn, k->name);
  for (int i = 0; i < k->nt; i++) {
    const strop__st_tensor *t = &f->t[k->t[i]];
    strop__param *p = strop__model_param_find(c, t->name + pl);
    int ok = p && !p->is_adapter && !p->tied && p->rank == t->rank &&
             (p->data ? strop__dtype_is_float(t->dtype) : strop__dtype_is_int(t->dtype));
    for (int d = 0; ok && d < p->rank; d++) ok = p->dims[d] == t->dims[d];
    if (!ok)
      return strop__err(STROP_E_SHAPE, "%s: %s: '%s' does not fit the model's '%s'", fn, path,
                        t->name, t->name + pl);
    if (strop__param_own(p)) return STROP__NOMEM(fn); /* borrowed from a mapped file */
    strop_status st = p->data ? strop__st_read_f32(fn, t, p->data, p->numel)
                              : strop__st_read_i64(fn, t, p->idata, p->numel);
    if (st) return st;
    p->version++;
  }
  return strop__mts_add(c, k->name);
}

enum { BIAS_NONE, BIAS_LORA, BIAS_ALL }; /* PEFT's LoraConfig.bias */

/* The model's parameter that the file's bias tensor t names, into pname: the bias of an adapted
 * module ("<module>.base_layer.bias", where a PEFT model holds it, or "<module>.bias", as PEFT
 * before its layers wrapped the base wrote it), or with bias "all" any bias of the model. The
 * tensor must fit it: one dimension, the parameter's. */
static strop_status bias_param(const char *fn, const char *path, strop_model *m,
                               const strop__st_file *f, const lmod *mods, int nm, int mode, int t,
                               char *pname) {
  static const char BL[] = ".base_layer";
  const strop__st_tensor *tt = &f->t[t];
  const size_t pl = sizeof PREFIX - 1, bl = sizeof BL - 1;
  size_t ml = strlen(tt->name) - pl - 5; /* the module's name: without ".bias" */
  if (ml > bl && !strncmp(tt->name + pl + ml - bl, BL, bl)) ml -= bl;
  int adapted = 0;
  for (int k = 0; k < nm && !adapted; k++)
    adapted = strlen(mods[k].name) == ml && !strncmp(mods[k].name, tt->name + pl, ml);
  snprintf(pname, 600, "%.*s.bias", (int)ml, tt->name + pl);
  if (mode == BIAS_NONE || (mode == BIAS_LORA && !adapted))
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: tensor '%s' is a bias of %s, but the config's bias is \"%s\"", fn,
                      path, tt->name, adapted ? "an adapted module" : "a module without adapters",
                      mode == BIAS_NONE ? "none" : "lora_only");
  const strop__param *p = strop__model_param_find(m, pname);
  if (!p || !p->data || p->is_adapter || p->tied || p->is_buffer)
    return strop__err(STROP_E_NOT_FOUND, "%s: %s: tensor '%s': the model has no bias '%s'", fn,
                      path, tt->name, pname);
  if (tt->rank != 1 || p->rank != 1 || tt->dims[0] != p->dims[0] ||
      !strop__dtype_is_float(tt->dtype))
    return strop__err(STROP_E_SHAPE, "%s: %s: '%s' does not fit the model's '%s' [%lld]", fn,
                      path, tt->name, pname, (long long)p->dims[0]);
  return STROP_OK;
}

strop_status strop_model_lora_load(strop_model *model, const char *dir) {
  static const char fn[] = "strop_model_lora_load";
  if (!model || !dir)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "dir" : "model");
  char *st_path = join(dir, "adapter_model.safetensors");
  char *cfg_path = join(dir, "adapter_config.json");
  char *text = NULL;
  size_t len = 0;
  strop__json j;
  memset(&j, 0, sizeof j);
  strop__st_file *f = NULL;
  lmod *mods = NULL;
  kmod *keep = NULL;
  int nm = 0, nk = 0;
  strop_surgery *s = NULL;
  strop_model *c = NULL;
  strop_status st = st_path && cfg_path ? STROP_OK : STROP__NOMEM(fn);
  if (!st) st = strop__read_file(fn, cfg_path, (size_t)1 << 20, &text, &len);
  if (!st && (st = strop__json_parse(text, len, 0, 16, &j)) != STROP_OK)
    strop__err_prefix("%s: %s", fn, cfg_path);
  const strop__jnode *root = st ? NULL : strop__json_at(&j, 0);
  const strop__jnode *mts = NULL;
  double alpha = 8.0, dropout = 0.0;
  int bias_mode = BIAS_NONE;
  int *biases = NULL, nb = 0; /* the file's bias tensors that are no module's to save */
  if (!st && root->type != STROP__J_OBJ)
    st = strop__err(STROP_E_FORMAT, "%s: %s: expected a JSON object", fn, cfg_path);
  if (!st) {
    const strop__jnode *pt = strop__json_get(&j, root, "peft_type");
    const strop__jnode *rs = strop__json_get(&j, root, "use_rslora");
    const strop__jnode *dora = strop__json_get(&j, root, "use_dora");
    if (pt && (pt->type != STROP__J_STR || strcmp(pt->str, "LORA") != 0))
      st = strop__err(STROP_E_UNSUPPORTED, "%s: %s: peft_type is not \"LORA\"", fn, cfg_path);
    else if ((rs && rs->type == STROP__J_TRUE) || (dora && dora->type == STROP__J_TRUE))
      st = strop__err(STROP_E_UNSUPPORTED, "%s: %s: %s adapters are not supported", fn, cfg_path,
                      rs && rs->type == STROP__J_TRUE ? "rsLoRA" : "DoRA");
    alpha = jnum(strop__json_get(&j, root, "lora_alpha"), 8.0);
    dropout = jnum(strop__json_get(&j, root, "lora_dropout"), 0.0);
    if (!st && (!(alpha > 0.0) || !(dropout >= 0.0 && dropout < 1.0)))
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: lora_alpha must be > 0 and lora_dropout in "
                      "[0, 1), got %g and %g",
                      fn, cfg_path, alpha, dropout);
    const strop__jnode *bj = strop__json_get(&j, root, "bias");
    if (bj && bj->type == STROP__J_STR && !strcmp(bj->str, "lora_only")) bias_mode = BIAS_LORA;
    else if (bj && bj->type == STROP__J_STR && !strcmp(bj->str, "all")) bias_mode = BIAS_ALL;
    else if (!st && bj && bj->type != STROP__J_NULL &&
             (bj->type != STROP__J_STR || strcmp(bj->str, "none") != 0))
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: bias must be \"none\", \"lora_only\" or \"all\" "
                      "(PEFT's LoraConfig.bias)",
                      fn, cfg_path);
    mts = strop__json_get(&j, root, "modules_to_save");
    if (mts && mts->type == STROP__J_NULL) mts = NULL;
    int ok = !mts || mts->type == STROP__J_ARR;
    for (const strop__jnode *e = ok && mts ? strop__json_at(&j, mts->child) : NULL; e;
         e = strop__json_at(&j, e->next))
      ok = ok && e->type == STROP__J_STR && e->len > 0;
    if (!st && !ok)
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: modules_to_save must be null or a list of module "
                      "names",
                      fn, cfg_path);
  }
  if (!st) st = strop__st_open(fn, st_path, &f);
  if (!st) mods = strop__calloc((size_t)(f->n ? f->n : 1), sizeof *mods);
  if (!st) biases = strop__calloc((size_t)(f->n ? f->n : 1), sizeof *biases);
  if (!st && (!mods || !biases)) st = STROP__NOMEM(fn);
  if (!st && mts) {
    keep = strop__calloc((size_t)mts->count + 1, sizeof *keep);
    if (!keep) st = STROP__NOMEM(fn);
    for (const strop__jnode *e = keep ? strop__json_at(&j, mts->child) : NULL; e && !st;
         e = strop__json_at(&j, e->next), nk++) {
      keep[nk].name = e->str;
      keep[nk].node = strop__model_node_find(model, e->str);
      keep[nk].t = strop__calloc((size_t)f->n + 1, sizeof *keep[nk].t);
      if (!keep[nk].t) st = STROP__NOMEM(fn);
      else if (keep[nk].node < 0)
        st = strop__err(STROP_E_NOT_FOUND,
                        "%s: %s: module '%s' of modules_to_save is not a "
                        "node of the model",
                        fn, cfg_path, e->str);
    }
  }
  /* group the tensors: adapters by module; a listed module's own weights by module */
  for (int i = 0; !st && i < f->n; i++) {
    const char *tn = f->t[i].name;
    size_t l = strlen(tn), pl = sizeof PREFIX - 1, ml = 0;
    const char *const *names = NULL;
    const int which = adapter_tensor(tn, &names, &ml);
    if (which < 0) {
      int owner = -1;
      for (int k = 0; l > pl && !strncmp(tn, PREFIX, pl) && k < nk; k++) {
        size_t kl = strlen(keep[k].name);
        if (!strncmp(tn + pl, keep[k].name, kl) && tn[pl + kl] == '.' && tn[pl + kl + 1] &&
            (owner < 0 || kl > strlen(keep[owner].name)))
          owner = k;
      }
      if (owner < 0 && l > pl + 5 && !strncmp(tn, PREFIX, pl) && !strcmp(tn + l - 5, ".bias")) {
        biases[nb++] = i; /* matched with the adapted modules below */
        continue;
      }
      if (owner < 0) {
        st = strop__err(STROP_E_FORMAT,
                        "%s: %s: tensor '%s' is neither a LoRA adapter of a "
                        "linear module ('" PREFIX "<module>.lora_A.weight' or '.lora_B.weight') "
                        "or of an embedding ('.lora_embedding_A' or '.lora_embedding_B'), nor a "
                        "weight of a module in modules_to_save, nor a bias",
                        fn, st_path, tn);
        break;
      }
      keep[owner].t[keep[owner].nt++] = i;
      continue;
    }
    int k = 0;
    while (k < nm && (strlen(mods[k].name) != ml || strncmp(mods[k].name, tn + pl, ml))) k++;
    if (k == nm) {
      mods[nm].name = strop__malloc(ml + 1);
      if (!mods[nm].name) {
        st = STROP__NOMEM(fn);
        break;
      }
      memcpy(mods[nm].name, tn + pl, ml);
      mods[nm].name[ml] = '\0';
      mods[nm].a = mods[nm].b = -1;
      mods[nm].names = names;
      nm++;
    }
    if (mods[k].names != names) {
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: module '%s' has adapter tensors of two kinds ('%s' and '%s')", fn,
                      st_path, mods[k].name, mods[k].names[which], names[which]);
      break;
    }
    if (which == 0) mods[k].a = i;
    else mods[k].b = i;
  }
  if (!st && nm == 0) st = strop__err(STROP_E_FORMAT, "%s: %s: no adapter tensors", fn, st_path);
  for (int k = 0; !st && k < nm; k++) {
    const strop__st_tensor *ta = mods[k].a >= 0 ? &f->t[mods[k].a] : NULL;
    const strop__st_tensor *tb = mods[k].b >= 0 ? &f->t[mods[k].b] : NULL;
    const char *const *sfx = mods[k].names;
    if (!ta || !tb)
      st = strop__err(STROP_E_FORMAT, "%s: %s: module '%s' has %s but not %s", fn, st_path,
                      mods[k].name, sfx[ta ? 0 : 1], sfx[ta ? 1 : 0]);
    else if (ta->rank != 2 || tb->rank != 2 || ta->dims[0] != tb->dims[1] || ta->dims[0] < 1 ||
             !strop__dtype_is_float(ta->dtype) || !strop__dtype_is_float(tb->dtype))
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: module '%s': lora_A and lora_B must be float "
                      "matrices [r, in] and [out, r]",
                      fn, st_path, mods[k].name);
  }
  /* one plan: the heads to make anew first, then LoRA on every module; then the saved values
   * into the edited copy */
  if (!st) st = strop_surgery_create(model, &s);
  for (int k = 0; !st && k < nk; k++) st = plan_module(fn, st_path, model, f, &keep[k], s);
  for (int k = 0; !st && k < nm; k++) {
    const strop__jnode *pa = pattern_for(&j, strop__json_get(&j, root, "alpha_pattern"),
                                         mods[k].name);
    double a = pa ? jnum(pa, alpha) : alpha;
    st = strop_surgery_lora(s, mods[k].name, f->t[mods[k].a].dims[0], (float)a, (float)dropout);
  }
  /* the biases train again, as they did: a new save writes them back */
  for (int k = 0; !st && k < nb; k++) {
    char pname[600];
    if (!(st = bias_param(fn, st_path, model, f, mods, nm, bias_mode, biases[k], pname)))
      st = strop_surgery_unfreeze(s, pname, 0);
  }
  if (!st) st = strop__surgery_run(fn, s, NULL, &c, NULL);
  for (int k = 0; !st && k < nk; k++) st = fill_module(fn, st_path, c, f, &keep[k]);
  for (int k = 0; !st && k < nb; k++) {
    char pname[600];
    st = bias_param(fn, st_path, model, f, mods, nm, bias_mode, biases[k], pname);
    strop__param *p = st ? NULL : strop__model_param_find(c, pname);
    if (!st && !p) st = strop__err(STROP_E_INTERNAL, "%s: '%s' lost by the plan", fn, pname);
    else if (!st && strop__param_own(p)) st = STROP__NOMEM(fn); /* borrowed from a mapped file */
    if (!st) st = strop__st_read_f32(fn, &f->t[biases[k]], p->data, p->numel);
    if (!st) p->version++;
  }
  for (int k = 0; !st && k < nm; k++) {
    const char *const *sfx = mods[k].names;
    for (int ab = 0; !st && ab < 2; ab++) {
      const strop__st_tensor *t = &f->t[ab ? mods[k].b : mods[k].a];
      /* by full name: a module is a node (lora_linear, lora_embedding) or "<node>.<proj>"
       * (attention) */
      char full[600];
      snprintf(full, sizeof full, "%s.%s", mods[k].name, sfx[ab]);
      strop__param *p = strop__model_param_find(c, full);
      if (!p) {
        /* the file names the adapter as another kind of module than the model's node is */
        const int at = strop__model_node_lookup(c, mods[k].name);
        st = at >= 0 && tensor_names(&c->nodes[at]) != sfx
                 ? strop__err(STROP_E_FORMAT,
                              "%s: %s: '%s' does not fit module '%s', a %s node of the model, "
                              "whose adapter is '%s.%s'",
                              fn, st_path, t->name, mods[k].name, c->nodes[at].vt->type,
                              mods[k].name, tensor_names(&c->nodes[at])[ab])
                 : strop__err(STROP_E_INTERNAL, "%s: '%s' missing after adding the adapters", fn,
                              full);
        break;
      }
      if (t->dims[0] != p->dims[0] || t->dims[1] != p->dims[1])
        st = strop__err(STROP_E_SHAPE,
                        "%s: %s: '%s' is [%lld, %lld] but module '%s' needs "
                        "[%lld, %lld]",
                        fn, st_path, t->name, (long long)t->dims[0], (long long)t->dims[1],
                        mods[k].name, (long long)p->dims[0], (long long)p->dims[1]);
      else st = strop__st_read_f32(fn, t, p->data, p->numel);
    }
  }
  if (!st) {
    strop__model_swap_in(model, c);
    c = NULL;
  }
  if (c) strop__surgery_discard(model, c); /* the frozen weights the clone shared come back */
  strop_surgery_free(s);
  for (int k = 0; k < nm; k++) strop__free(mods[k].name);
  strop__free(mods);
  strop__free(biases);
  for (int k = 0; keep && k < mts->count; k++) strop__free(keep[k].t);
  strop__free(keep);
  strop__st_close(f);
  strop__json_free(&j);
  strop__free(text);
  strop__free(st_path);
  strop__free(cfg_path);
  return st;
}
