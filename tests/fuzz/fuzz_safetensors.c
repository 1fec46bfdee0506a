/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the safetensors reader from memory: header validation, lookups, dtype
 * conversion, loading into a small model in partial mode, and the public memory loader
 * (strop_model_load_weights_mem, strict and partial, with the model metadata it takes).
 * Never crashes, never leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "io/io_internal.h"
#include "io/safetensors.h"
#include "strop/strop.h"

static strop_model *g_model;

static void make_model(void) {
  if (g_model) return;
  int64_t in = 4;
  if (strop_model_create(1, &in, &g_model) != STROP_OK) return;
  if (strop_model_add(g_model, "fc", "linear", "in_features=4 out_features=2", NULL) !=
          STROP_OK ||
      strop_model_finalize(g_model, 1) != STROP_OK) {
    strop_model_free(g_model);
    g_model = NULL;
  }
}

/* The public loader: whatever the input, the model stays usable and its metadata within the
 * bounds strop_model_set_meta() states. */
static void load_public(const uint8_t *data, size_t size) {
  if (!g_model) return;
  for (int flags = 0; flags < 2; flags++) {
    strop_load_report *r = NULL;
    (void)strop_model_load_weights_mem(g_model, data, size, flags, &r);
    strop_load_report_free(r);
  }
  char key[STROP_META_KEY_MAX + 1];
  for (int64_t i = 0; i < strop_model_meta_count(g_model); i++) {
    if (strop_model_meta_key(g_model, i, key, sizeof key) < 1) __builtin_trap();
    if (strop_model_get_meta(g_model, key, NULL, 0) < 0) __builtin_trap();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  make_model();
  load_public(data, size);
  strop__st_file *f = NULL;
  if (strop__st_open_mem("fuzz", data, size, "fuzz", &f) != STROP_OK) return 0;
  for (int i = 0; i < f->n; i++) {
    const strop__st_tensor *t = &f->t[i];
    if (strop__st_find(f, t->name) == NULL) __builtin_trap(); /* every name must be found */
    if (t->numel > (1u << 20)) continue;
    if (strop__dtype_is_int(t->dtype)) {
      int64_t *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
      if (v) (void)strop__st_read_i64("fuzz", t, v, t->numel);
      free(v);
    }
    float *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
    if (v) (void)strop__st_read_f32("fuzz", t, v, t->numel);
    free(v);
    (void)strop__st_f32_view(t);
  }
  for (int i = 0; i < f->n_meta; i++) (void)strop__st_meta(f, f->meta_keys[i]);
  if (g_model) {
    strop_load_report *r = NULL;
    (void)strop__model_load_st("fuzz", g_model, f, STROP_LOAD_PARTIAL, "a.", "fc.", 0, &r);
    strop_load_report_free(r);
  }
  strop__st_close(f);
  return 0;
}
