/* strop — the layer registry: type name -> vtable. Adding a layer is adding its file and one
 * line here. Lookups are by name, so files never depend on table order. */
#include <string.h>

#include "layers/layer.h"

#define L(x) extern const strop__layer_vtable strop__layer_##x __attribute__((weak));
#define LAYERS(X)                                                                         \
  X(linear) X(conv2d) X(maxpool2d) X(avgpool2d) X(global_avgpool) X(batchnorm1d)          \
  X(batchnorm2d) X(layernorm) X(dropout) X(relu) X(leaky_relu) X(gelu) X(silu) X(tanh)    \
  X(sigmoid) X(softmax) X(log_softmax) X(flatten) X(reshape) X(embedding)                \
  X(positional_embedding) X(multihead_attention) X(add) X(concat) X(mean_pool) X(lora_linear)
LAYERS(L)
#undef L

#define P(x) &strop__layer_##x,
static const strop__layer_vtable *const g_all[] = {LAYERS(P)};
#undef P

/* Only the layers linked in count (the table is weak while families are being added). */
static const strop__layer_vtable *g_live[sizeof g_all / sizeof g_all[0]];
static int g_n = -1;

static void build(void) {
  if (g_n >= 0) return;
  int n = 0;
  for (size_t i = 0; i < sizeof g_all / sizeof g_all[0]; i++)
    if (g_all[i]) g_live[n++] = g_all[i];
  g_n = n;
}

const strop__layer_vtable *strop__layer_find(const char *type) {
  build();
  for (int i = 0; type && i < g_n; i++)
    if (strcmp(g_live[i]->type, type) == 0) return g_live[i];
  return NULL;
}

int strop__layer_count(void) {
  build();
  return g_n;
}

const strop__layer_vtable *strop__layer_at(int i) {
  build();
  return i >= 0 && i < g_n ? g_live[i] : NULL;
}
