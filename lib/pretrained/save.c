/* SPDX-License-Identifier: MIT */
/* strop — strop_model_save_pretrained: a model loaded from a Hugging Face folder, fine-tuned,
 * written back as one (config.json + model.safetensors with metadata format=pt, tied weights
 * once, LoRA adapters folded in), so transformers' from_pretrained and strop load it. The
 * config is the one the load kept in the model's metadata, with what fine-tuning changed: the
 * dtype (float32) and, for a classifier whose head now has another number of classes, the
 * labels. */
#include <stdio.h>
#include <string.h>

#include "core/sbuf.h"
#include "io/atomic.h"
#include "io/io_internal.h"
#include "pretrained/pretrained.h"
#include "strop/surgery.h"

/* ---- config.json written back: the parsed tree with some top-level keys replaced ---- */

static void put_string(strop__sbuf *b, const char *s) { strop__sbuf_json_str(b, s); }

static void put_value(strop__sbuf *b, const strop__json *j, const strop__jnode *v, int depth) {
  switch (v->type) {
    case STROP__J_NULL: strop__sbuf_printf(b, "null"); break;
    case STROP__J_TRUE: strop__sbuf_printf(b, "true"); break;
    case STROP__J_FALSE: strop__sbuf_printf(b, "false"); break;
    case STROP__J_NUM: strop__sbuf_printf(b, "%s", v->str); break;
    case STROP__J_STR: put_string(b, v->str); break;
    default: {
      const int obj = v->type == STROP__J_OBJ;
      strop__sbuf_printf(b, "%s", obj ? "{" : "[");
      int first = 1;
      for (const strop__jnode *e = strop__json_at(j, v->child); e;
           e = strop__json_at(j, e->next)) {
        strop__sbuf_printf(b, "%s\n%*s", first ? "" : ",", 2 * (depth + 1), "");
        if (obj) {
          put_string(b, e->key);
          strop__sbuf_printf(b, ": ");
        }
        put_value(b, j, e, depth + 1);
        first = 0;
      }
      strop__sbuf_printf(b, "%s%*s%s", first ? "" : "\n", first ? 0 : 2 * depth, "",
                         obj ? "}" : "]");
    }
  }
}

typedef struct override {
  const char *key;
  const char *json; /* the value's JSON text */
} override;

/* The config with the top-level keys of ov (n of them) set to their JSON texts (replaced where
 * present, appended otherwise), Hugging Face's 2-space indentation. */
static strop_status config_text(const char *fn, const strop__json *j, const override *ov, int n,
                                strop__sbuf *b) {
  const strop__jnode *root = &j->nodes[0];
  strop__sbuf_printf(b, "{");
  int first = 1;
  for (const strop__jnode *e = strop__json_at(j, root->child); e;
       e = strop__json_at(j, e->next)) {
    strop__sbuf_printf(b, "%s\n  ", first ? "" : ",");
    put_string(b, e->key);
    strop__sbuf_printf(b, ": ");
    int k = 0;
    while (k < n && strcmp(ov[k].key, e->key)) k++;
    if (k < n) strop__sbuf_printf(b, "%s", ov[k].json);
    else put_value(b, j, e, 1);
    first = 0;
  }
  for (int k = 0; k < n; k++)
    if (!strop__json_get(j, root, ov[k].key)) {
      strop__sbuf_printf(b, "%s\n  ", first ? "" : ",");
      put_string(b, ov[k].key);
      strop__sbuf_printf(b, ": %s", ov[k].json);
      first = 0;
    }
  strop__sbuf_printf(b, "\n}\n");
  return b->oom ? STROP__NOMEM(fn) : STROP_OK;
}

/* A classifier's labels when its head has another number of classes than id2label names:
 * "LABEL_i", as transformers names labels it was not told. */
static strop_status label_overrides(const char *fn, const strop_model *m, const strop__json *j,
                                    int classifier, strop__sbuf *id2, strop__sbuf *l2id,
                                    int *n_ov, override *ov) {
  const strop__jnode *root = &j->nodes[0];
  const strop__jnode *labels = strop__json_get(j, root, "id2label");
  const strop__shape *os = &m->nodes[m->n_nodes - 1].out_shape;
  /* a language model given a classification head (head.c) has no labels yet */
  const int is_labelled = labels && labels->type == STROP__J_OBJ;
  if (!is_labelled && !classifier) return STROP_OK;
  if (os->rank != 1 || (is_labelled && labels->count == os->d[0])) return STROP_OK;
  const int64_t c = os->d[0];
  strop__sbuf_printf(id2, "{");
  strop__sbuf_printf(l2id, "{");
  for (int64_t i = 0; i < c; i++) {
    strop__sbuf_printf(id2, "%s\n    \"%lld\": \"LABEL_%lld\"", i ? "," : "", (long long)i,
                       (long long)i);
    strop__sbuf_printf(l2id, "%s\n    \"LABEL_%lld\": %lld", i ? "," : "", (long long)i,
                       (long long)i);
  }
  strop__sbuf_printf(id2, "\n  }");
  strop__sbuf_printf(l2id, "\n  }");
  if (id2->oom || l2id->oom) return STROP__NOMEM(fn);
  ov[(*n_ov)++] = (override){"id2label", id2->s};
  ov[(*n_ov)++] = (override){"label2id", l2id->s};
  return STROP_OK;
}

/* A model whose architecture the load did not find in config.json (a language model given a
 * classification head became its *ForSequenceClassification, head.c): "architectures" names
 * the class, the config's own class with its head's suffix replaced ("GPT2LMHeadModel" ->
 * "GPT2ForSequenceClassification", "MistralForCausalLM" -> "MistralForSequenceClassification"),
 * else the architecture's first Hugging Face name. */
static strop_status arch_override(const char *fn, const strop__json *j, const strop__arch *a,
                                  strop__sbuf *b, int *n_ov, override *ov) {
  const strop__jnode *root = &j->nodes[0];
  if (!a || !a->hf_names || !a->hf_names[0] || strop__arch_for_config(j, root) == a)
    return STROP_OK;
  static const char *const SUFFIXES[] = {"LMHeadModel", "ForCausalLM", "Model", NULL};
  const strop__jnode *arr = strop__json_get(j, root, "architectures"), *e = NULL;
  if (arr && arr->type == STROP__J_ARR) e = strop__json_at(j, arr->child);
  const char *own = e && e->type == STROP__J_STR ? e->str : NULL;
  size_t keep = 0;
  for (int k = 0; own && SUFFIXES[k] && !keep; k++) {
    size_t lo = strlen(own), ls = strlen(SUFFIXES[k]);
    if (lo > ls && !strcmp(own + lo - ls, SUFFIXES[k])) keep = lo - ls;
  }
  strop__sbuf_printf(b, "[\n    ");
  if (keep) {
    strop__sbuf name = {0};
    strop__sbuf_printf(&name, "%.*sForSequenceClassification", (int)keep, own);
    if (name.oom) {
      strop__free(name.s);
      return STROP__NOMEM(fn);
    }
    strop__sbuf_json_str(b, name.s);
    strop__free(name.s);
  } else {
    strop__sbuf_json_str(b, a->hf_names[0]);
  }
  strop__sbuf_printf(b, "\n  ]");
  if (b->oom) return STROP__NOMEM(fn);
  ov[(*n_ov)++] = (override){"architectures", b->s};
  return STROP_OK;
}

static char *join(const char *dir, const char *name) {
  strop__sbuf b = {0};
  size_t l = strlen(dir);
  strop__sbuf_printf(&b, "%s%s%s", dir, l && dir[l - 1] == '/' ? "" : "/", name);
  if (b.oom) {
    strop__free(b.s);
    return NULL;
  }
  return b.s;
}

strop_status strop_model_save_pretrained(const strop_model *model, const char *dir) {
  static const char fn[] = "strop_model_save_pretrained";
  if (!model || !dir)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, model ? "dir" : "model");
  if (!*dir) return strop__err(STROP_E_INVALID_ARG, "%s: dir is empty", fn);
  if (!model->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  const char *config = strop__meta_get(&model->meta, STROP__PT_META_CONFIG);
  const char *arch = strop__meta_get(&model->meta, STROP__PT_META_ARCH);
  if (!config || !arch)
    return strop__err(STROP_E_STATE,
                      "%s: the model was not loaded from a Hugging Face folder "
                      "(its metadata has no '%s'): save it with strop_model_save_weights",
                      fn, STROP__PT_META_CONFIG);
  const char *head = strop__meta_get(&model->meta, STROP__PT_META_HEAD);
  if (head)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: the model's classification head pools '%s', which no Hugging "
                      "Face class of %s does: save it with strop_model_save_weights",
                      fn, head, arch);
  strop__json j = {0};
  strop_status st = strop__json_parse(config, strlen(config), 0, 32, &j);
  if (st) {
    strop__err_prefix("%s: the metadata's %s", fn, STROP__PT_META_CONFIG);
    return st;
  }
  strop_model *c = NULL;
  strop__st_writer *w = NULL;
  strop__sbuf text = {0}, id2 = {0}, l2id = {0}, archs = {0};
  char *wpath = NULL, *cpath = NULL;
  override ov[4] = {{"torch_dtype", "\"float32\""}};
  int n_ov = 1;
  if (j.nodes[0].type != STROP__J_OBJ) {
    st = strop__err(STROP_E_FORMAT, "%s: the metadata's %s is not a JSON object", fn,
                    STROP__PT_META_CONFIG);
    goto done;
  }
  /* adapters folded into their base weights, on a copy: the file holds the model as
   * transformers computes it (PEFT's merge_and_unload) */
  if ((st = strop__model_clone(model, &c))) goto done;
  /* the file holds float32: weights held in BF16 or int8 are widened on the copy */
  if ((st = strop_model_set_frozen_dtype(c, STROP_DTYPE_F32))) goto done;
  st = strop_model_lora_merge(c);
  if (st == STROP_E_NOT_FOUND) st = STROP_OK;
  if (st) goto done;
  if ((st = strop__st_writer_create(fn, &w))) goto done;
  for (int i = 0; i < c->n_params && !st; i++) {
    const strop__param *p = c->params[i];
    if (p->is_adapter) continue;
    st = p->data ? strop__st_writer_add_f32(w, p->name, p->rank, p->dims, p->data)
                 : strop__st_writer_add_i64(w, p->name, p->rank, p->dims, p->idata);
  }
  /* transformers refuses a safetensors file without format=pt */
  if (!st) st = strop__st_writer_set_meta(w, "format", "pt");
  const strop__arch *a = strop__arch_find(arch);
  if (!st) st = arch_override(fn, &j, a, &archs, &n_ov, ov);
  if (!st)
    st = label_overrides(fn, c, &j, a && a->cls_arch && !strcmp(a->name, a->cls_arch), &id2,
                         &l2id, &n_ov, ov);
  if (!st) st = config_text(fn, &j, ov, n_ov, &text);
  if (st) goto done;
  wpath = join(dir, "model.safetensors");
  cpath = join(dir, "config.json");
  if (!wpath || !cpath) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  /* each file is replaced atomically; the weights first, so a config is never newer than
   * the weights it describes */
  if ((st = strop__mkdirs(fn, dir)) || (st = strop__st_writer_save(w, wpath)) ||
      (st = strop__write_file_atomic(fn, cpath, text.s, strlen(text.s))))
    goto done;
  strop__log(STROP_LOG_INFO, "%s: %s (%s) to %s", fn, arch, "transformers", dir);
done:
  strop__free(wpath);
  strop__free(cpath);
  strop__free(text.s);
  strop__free(id2.s);
  strop__free(l2id.s);
  strop__free(archs.s);
  strop__st_writer_free(w);
  strop_model_free(c);
  strop__json_free(&j);
  return st;
}
