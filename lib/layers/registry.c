/* strop — the layer registry: type name -> vtable. Adding a layer is adding its file and one
 * line here. Lookups are by name, so files never depend on table order. */
#include <string.h>

#include "layers/layer.h"

#define L(x) extern const strop__layer_vtable strop__layer_##x;
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

#define N_LAYERS ((int)(sizeof g_all / sizeof g_all[0]))

const strop__layer_vtable *strop__layer_find(const char *type) {
  for (int i = 0; type && i < N_LAYERS; i++)
    if (strcmp(g_all[i]->type, type) == 0) return g_all[i];
  return NULL;
}

int strop__layer_count(void) { return N_LAYERS; }

const strop__layer_vtable *strop__layer_at(int i) { return i >= 0 && i < N_LAYERS ? g_all[i] : NULL; }
