/* strop — LoRA adapters as a whole: merge into / unmerge from the base weights, and the
 * adapter files in Hugging Face PEFT's layout (adapter_model.safetensors + adapter_config.json)
 * so adapters move between strop and PEFT. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "surgery/surgery_impl.h"

#define PREFIX "base_model.model."

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

/* One adapted module in PEFT's sense: a whole node with an adapter (lora_linear) or a part
 * "<node>.<part>" (an attention projection). */
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
      if (lo->parts)
        snprintf(out->name, sizeof out->name, "%s.%s", n->name, lo->parts[p]);
      else
        snprintf(out->name, sizeof out->name, "%s", n->name);
      return 1;
    }
  }
  return 0;
}

static strop_status set_merged(const char *fn, strop_model *model, int merge) {
  if (!model) return strop__err(STROP_E_INVALID_ARG, "%s: model is NULL", fn);
  int hits = 0;
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
  if (v == floor(v) && fabs(v) < 1e15)
    strop__sbuf_printf(t, "%lld", (long long)v);
  else
    strop__sbuf_printf(t, "%.7g", v);
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
  strop_status st = st_path && cfg_path ? strop__st_writer_create(fn, &w) : STROP__NOMEM(fn);
  if (!st) st = strop__st_writer_set_meta(w, "format", "pt");
  strop__sbuf_printf(&cfg, "{\n  \"peft_type\": \"LORA\",\n  \"r\": %lld,\n  \"lora_alpha\": ",
                  (long long)c0.r);
  json_float(&cfg, c0.alpha);
  strop__sbuf_printf(&cfg, ",\n  \"lora_dropout\": ");
  json_float(&cfg, c0.dropout);
  strop__sbuf_printf(&cfg, ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n"
                  "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                  "  \"task_type\": null,\n  \"base_model_name_or_path\": null,\n"
                  "  \"modules_to_save\": null,\n  \"target_modules\": [");
  for (int k = 0; !st && module_at(model, k, &mod); k++) {
    strop__sbuf_printf(&cfg, "%s\"%s\"", k ? ", " : "", mod.name);
    static const char *const sfx[2] = {"lora_A.weight", "lora_B.weight"};
    for (int j = 0; !st && j < 2; j++) {
      snprintf(name, sizeof name, "%s.%s", mod.name, sfx[j]);
      const strop__param *p = strop__node_param((strop__node *)mod.n, name + strlen(mod.n->name) + 1);
      if (!p || !p->data) {
        st = strop__err(STROP_E_INTERNAL, "%s: module '%s' lacks '%s'", fn, mod.name, sfx[j]);
        break;
      }
      snprintf(name, sizeof name, PREFIX "%s.%s", mod.name, sfx[j]);
      st = strop__st_writer_add_f32(w, name, p->rank, p->dims, p->data);
    }
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
  int a, b; /* tensor indices in the file, -1 if absent */
} lmod;

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
  int nm = 0;
  strop_surgery *s = NULL;
  strop_model *c = NULL;
  strop_status st = st_path && cfg_path ? STROP_OK : STROP__NOMEM(fn);
  if (!st) st = strop__read_file(fn, cfg_path, (size_t)1 << 20, &text, &len);
  if (!st && (st = strop__json_parse(text, len, 0, 16, &j)) != STROP_OK)
    strop__err_prefix("%s: %s", fn, cfg_path);
  const strop__jnode *root = st ? NULL : strop__json_at(&j, 0);
  double alpha = 8.0, dropout = 0.0;
  if (!st && root->type != STROP__J_OBJ)
    st = strop__err(STROP_E_FORMAT, "%s: %s: expected a JSON object", fn, cfg_path);
  if (!st) {
    const strop__jnode *pt = strop__json_get(&j, root, "peft_type");
    const strop__jnode *rs = strop__json_get(&j, root, "use_rslora");
    const strop__jnode *dora = strop__json_get(&j, root, "use_dora");
    if (pt && (pt->type != STROP__J_STR || strcmp(pt->str, "LORA") != 0))
      st = strop__err(STROP_E_UNSUPPORTED, "%s: %s: peft_type is not \"LORA\"", fn, cfg_path);
    else if ((rs && rs->type == STROP__J_TRUE) || (dora && dora->type == STROP__J_TRUE))
      st = strop__err(STROP_E_UNSUPPORTED, "%s: %s: %s adapters are not supported", fn,
                      cfg_path, rs && rs->type == STROP__J_TRUE ? "rsLoRA" : "DoRA");
    alpha = jnum(strop__json_get(&j, root, "lora_alpha"), 8.0);
    dropout = jnum(strop__json_get(&j, root, "lora_dropout"), 0.0);
    if (!st && (!(alpha > 0.0) || !(dropout >= 0.0 && dropout < 1.0)))
      st = strop__err(STROP_E_FORMAT, "%s: %s: lora_alpha must be > 0 and lora_dropout in "
                      "[0, 1), got %g and %g", fn, cfg_path, alpha, dropout);
  }
  if (!st) st = strop__st_open(fn, st_path, &f);
  if (!st) mods = strop__calloc((size_t)(f->n ? f->n : 1), sizeof *mods);
  if (!st && !mods) st = STROP__NOMEM(fn);
  /* group the tensors by module */
  for (int i = 0; !st && i < f->n; i++) {
    const char *tn = f->t[i].name;
    size_t l = strlen(tn), pl = sizeof PREFIX - 1;
    int which = -1;
    if (l > pl + 15 && !strncmp(tn, PREFIX, pl)) {
      if (!strcmp(tn + l - 14, ".lora_A.weight")) which = 0;
      if (!strcmp(tn + l - 14, ".lora_B.weight")) which = 1;
    }
    if (which < 0) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: tensor '%s' is not a LoRA adapter of a linear "
                      "module ('" PREFIX "<module>.lora_A.weight' or '.lora_B.weight')", fn,
                      st_path, tn);
      break;
    }
    size_t ml = l - pl - 14;
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
      nm++;
    }
    if (which == 0) mods[k].a = i;
    else mods[k].b = i;
  }
  if (!st && nm == 0) st = strop__err(STROP_E_FORMAT, "%s: %s: no adapter tensors", fn, st_path);
  for (int k = 0; !st && k < nm; k++) {
    const strop__st_tensor *ta = mods[k].a >= 0 ? &f->t[mods[k].a] : NULL;
    const strop__st_tensor *tb = mods[k].b >= 0 ? &f->t[mods[k].b] : NULL;
    if (!ta || !tb)
      st = strop__err(STROP_E_FORMAT, "%s: %s: module '%s' has lora_%s but not lora_%s", fn,
                      st_path, mods[k].name, ta ? "A" : "B", ta ? "B" : "A");
    else if (ta->rank != 2 || tb->rank != 2 || ta->dims[0] != tb->dims[1] || ta->dims[0] < 1 ||
             !strop__dtype_is_float(ta->dtype) || !strop__dtype_is_float(tb->dtype))
      st = strop__err(STROP_E_FORMAT, "%s: %s: module '%s': lora_A and lora_B must be float "
                      "matrices [r, in] and [out, r]", fn, st_path, mods[k].name);
  }
  /* one plan: LoRA on every module; then the saved values into the edited copy */
  if (!st) st = strop_surgery_create(model, &s);
  for (int k = 0; !st && k < nm; k++) {
    const strop__jnode *pa = pattern_for(&j, strop__json_get(&j, root, "alpha_pattern"),
                                         mods[k].name);
    double a = pa ? jnum(pa, alpha) : alpha;
    st = strop_surgery_lora(s, mods[k].name, f->t[mods[k].a].dims[0], (float)a, (float)dropout);
  }
  if (!st) st = strop__surgery_run(fn, s, NULL, &c, NULL);
  for (int k = 0; !st && k < nm; k++) {
    static const char *const sfx[2] = {"lora_A.weight", "lora_B.weight"};
    for (int ab = 0; !st && ab < 2; ab++) {
      const strop__st_tensor *t = &f->t[ab ? mods[k].b : mods[k].a];
      /* by full name: a module is a node (lora_linear) or "<node>.<proj>" (attention) */
      char full[600];
      snprintf(full, sizeof full, "%s.%s", mods[k].name, sfx[ab]);
      strop__param *p = strop__model_param_find(c, full);
      if (!p) {
        st = strop__err(STROP_E_INTERNAL, "%s: '%s' missing after adding the adapters", fn, full);
        break;
      }
      if (t->dims[0] != p->dims[0] || t->dims[1] != p->dims[1])
        st = strop__err(STROP_E_SHAPE, "%s: %s: '%s' is [%lld, %lld] but module '%s' needs "
                        "[%lld, %lld]", fn, st_path, t->name, (long long)t->dims[0],
                        (long long)t->dims[1], mods[k].name, (long long)p->dims[0],
                        (long long)p->dims[1]);
      else
        st = strop__st_read_f32(fn, t, p->data, p->numel);
    }
  }
  if (!st) {
    strop__model_swap_in(model, c);
    c = NULL;
  }
  strop_model_free(c);
  strop_surgery_free(s);
  for (int k = 0; k < nm; k++) strop__free(mods[k].name);
  strop__free(mods);
  strop__st_close(f);
  strop__json_free(&j);
  strop__free(text);
  strop__free(st_path);
  strop__free(cfg_path);
  return st;
}
