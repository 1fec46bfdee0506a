/* SPDX-License-Identifier: MIT */
/* strop — what a surgery plan would do, in words: one line per edit as it runs, and the
 * comparison of the model before and after at the end of a dry run (strop_surgery_describe). */
#include <stdio.h>
#include <string.h>

#include "surgery/surgery_impl.h"

static void param_dims(const strop__param *p, char *buf, size_t cap) {
  strop__shape s = {p->rank, {0}};
  memcpy(s.d, p->dims, sizeof s.d);
  strop__shape_str(&s, buf, cap);
}

static int param_same_shape(const strop__param *a, const strop__param *b) {
  if (a->rank != b->rank || a->numel != b->numel || a->is_int64 != b->is_int64) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

static int64_t model_count(const strop_model *m, int trainable_only) {
  int64_t c = 0;
  for (int i = 0; i < m->n_nodes; i++) c += strop__node_count(&m->nodes[i], trainable_only);
  return c;
}

void strop__describe_node(strop__sbuf *log, const strop_model *m, int i) {
  if (!log || i < 0) return;
  const strop__node *nd = &m->nodes[i];
  char b[96];
  strop__sbuf_printf(log, "'%s' (%s) output %s, %lld parameters", nd->name, nd->vt->type,
                     strop__shape_str(&nd->out_shape, b, sizeof b),
                     (long long)strop__node_count(nd, 0));
}

void strop__describe_edit_head(strop__sbuf *log, const strop_surgery *s, int k) {
  const strop__edit *e = &s->e[k];
  strop__sbuf_printf(log, "edit %d: %s '%s'", k + 1, strop__edit_kind_names[e->kind],
                     e->target ? e->target : e->name);
  if (e->kind == STROP__E_INSERT_AFTER || e->kind == STROP__E_INSERT_BEFORE)
    strop__sbuf_printf(log, " new '%s'", e->name);
  if (e->type)
    strop__sbuf_printf(log, " %s%s%s", e->type, e->options && *e->options ? " " : "",
                       e->options ? e->options : "");
  strop__sbuf_printf(log, ": ");
}

/* The before/after comparison at the end of a dry run. */
void strop__describe_diff(strop__sbuf *t, const strop_model *a, const strop__work *w) {
  const strop_model *b = w->g.m;
  char s1[96], s2[96];
  const char *sep = "";
  strop__sbuf_printf(t, "nodes added:");
  for (int i = 0; i < b->n_nodes; i++)
    if (strop__model_node_find(a, b->nodes[i].name) < 0) {
      strop__sbuf_printf(t, "%s %s (%s)", sep, b->nodes[i].name, b->nodes[i].vt->type);
      sep = ",";
    }
  strop__sbuf_printf(t, "%s\nnodes removed:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < a->n_nodes; i++)
    if (strop__model_node_find(b, a->nodes[i].name) < 0) {
      strop__sbuf_printf(t, "%s %s (%s)", sep, a->nodes[i].name, a->nodes[i].vt->type);
      sep = ",";
    }
  strop__sbuf_printf(t, "%s\nnodes replaced or retyped:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < b->n_nodes; i++) {
    int j = strop__model_node_find(a, b->nodes[i].name);
    if (j < 0 || (a->nodes[j].vt == b->nodes[i].vt && !strop__work_aux(w, i)->fresh)) continue;
    strop__sbuf_printf(t, "%s %s (%s -> %s)", sep, b->nodes[i].name, a->nodes[j].vt->type,
                       b->nodes[i].vt->type);
    sep = ",";
  }
  strop__sbuf_printf(t, "%s\nparameters added:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < b->n_nodes; i++)
    for (int k = 0; k < b->nodes[i].n_params; k++) {
      const strop__param *p = &b->nodes[i].params[k];
      int ja = strop__model_node_find(a, b->nodes[i].name);
      const strop__param *q = NULL;
      for (int l = 0; ja >= 0 && l < a->nodes[ja].n_params && !q; l++)
        if (!strcmp(a->nodes[ja].params[l].name, p->name)) q = &a->nodes[ja].params[l];
      if (q && !strop__work_aux(w, i)->fresh && param_same_shape(p, q)) continue;
      param_dims(p, s1, sizeof s1);
      strop__sbuf_printf(t, "%s %s %s%s", sep, p->name, s1, q ? " (re-initialised)" : "");
      sep = ",";
    }
  strop__sbuf_printf(t, "%s\nparameters removed:", *sep ? "" : " none");
  sep = "";
  for (int i = 0; i < a->n_nodes; i++)
    for (int k = 0; k < a->nodes[i].n_params; k++) {
      const strop__param *p = &a->nodes[i].params[k];
      int jb = strop__model_node_find(b, a->nodes[i].name);
      int found = 0;
      for (int l = 0; jb >= 0 && l < b->nodes[jb].n_params && !found; l++)
        found = !strcmp(b->nodes[jb].params[l].name, p->name);
      if (found) continue;
      param_dims(p, s1, sizeof s1);
      strop__sbuf_printf(t, "%s %s %s", sep, p->name, s1);
      sep = ",";
    }
  int64_t frozen = 0, unfrozen = 0;
  for (int i = 0; i < b->n_nodes; i++)
    for (int k = 0; k < b->nodes[i].n_params; k++) {
      const strop__param *p = &b->nodes[i].params[k];
      if (p->is_buffer) continue;
      int ja = strop__model_node_find(a, b->nodes[i].name);
      int was = 1; /* new parameters count against "trainable by default" */
      for (int l = 0; ja >= 0 && l < a->nodes[ja].n_params; l++)
        if (!strcmp(a->nodes[ja].params[l].name, p->name)) was = a->nodes[ja].params[l].trainable;
      frozen += was && !p->trainable;
      unfrozen += !was && p->trainable;
    }
  strop__sbuf_printf(t, "%s\nparameter tensors newly frozen: %lld, newly trainable: %lld\n",
                     *sep ? "" : " none", (long long)frozen, (long long)unfrozen);
  strop__sbuf_printf(t, "output shape: %s -> %s\n",
                     strop__shape_str(&a->nodes[a->n_nodes - 1].out_shape, s1, sizeof s1),
                     strop__shape_str(&b->nodes[b->n_nodes - 1].out_shape, s2, sizeof s2));
  strop__sbuf_printf(t, "parameters: %lld -> %lld; trainable: %lld -> %lld\n",
                     (long long)model_count(a, 0), (long long)model_count(b, 0),
                     (long long)model_count(a, 1), (long long)model_count(b, 1));
}
