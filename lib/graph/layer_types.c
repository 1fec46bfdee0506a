/* SPDX-License-Identifier: MIT */
/* strop — the registered layer types as the public API shows them (model.h): names, docs,
 * options and parameters, read from the descriptors' schemas, so the tool, the bindings and the
 * docs list what the library really accepts. */
#include <string.h>

#include "graph/graph.h"

int strop_layer_type_count(void) { return strop__layer_count(); }

const char *strop_layer_type_name(int i) {
  const strop__layer_vtable *vt = strop__layer_at(i);
  return vt ? vt->type : NULL;
}

const char *strop_layer_type_doc(const char *type) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  return vt ? vt->doc : NULL;
}

int strop_layer_type_is_composite(const char *type) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  return vt ? vt->expand != NULL : -1;
}

int strop_layer_option_count(const char *type) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  return vt ? strop__schema_count(vt->options) : -1;
}

static const strop__optdef *option(const char *type, int j) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  if (!vt || j < 0 || j >= strop__schema_count(vt->options)) return NULL;
  return &vt->options[j];
}

const char *strop_layer_option_name(const char *type, int j) {
  const strop__optdef *d = option(type, j);
  return d ? d->name : NULL;
}

const char *strop_layer_option_default(const char *type, int j) {
  const strop__optdef *d = option(type, j);
  return d ? d->dflt : NULL;
}

const char *strop_layer_option_doc(const char *type, int j) {
  const strop__optdef *d = option(type, j);
  return d ? d->doc : NULL;
}

/* A description of option j into buf, by what (0 kind, 1 allowed values). */
static int64_t option_text(const char *fn, const char *type, int j, int what, char *buf,
                           size_t cap) {
  const strop__optdef *d = option(type, j);
  if (!d) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s '%s' has no option %d", fn,
               strop__layer_find(type) ? "layer type" : "unknown layer type",
               type ? type : "(null)", j);
    return -1;
  }
  char text[512];
  if (what == 0) strop__optdef_kind(d, text, sizeof text);
  else strop__optdef_allowed(d, text, sizeof text);
  return strop__copy_out(fn, text, buf, cap);
}

int64_t strop_layer_option_kind(const char *type, int j, char *buf, size_t cap) {
  return option_text("strop_layer_option_kind", type, j, 0, buf, cap);
}

int64_t strop_layer_option_allowed(const char *type, int j, char *buf, size_t cap) {
  return option_text("strop_layer_option_allowed", type, j, 1, buf, cap);
}

static int param_count(const strop__layer_vtable *vt) {
  int n = 0;
  while (vt->params && vt->params[n].name) n++;
  return n;
}

int strop_layer_param_count(const char *type) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  return vt ? param_count(vt) : -1;
}

const char *strop_layer_param_name(const char *type, int j) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  return vt && j >= 0 && j < param_count(vt) ? vt->params[j].name : NULL;
}

const char *strop_layer_param_doc(const char *type, int j) {
  const strop__layer_vtable *vt = strop__layer_find(type);
  return vt && j >= 0 && j < param_count(vt) ? vt->params[j].doc : NULL;
}
