/* SPDX-License-Identifier: MIT */
/* strop Python bindings — the C side of the end-to-end test (test_reference.py): trains a
 * small MLP on deterministic data twice — (a) 30 manual strop_trainer_step() calls on wrapped
 * buffers, (b) strop_trainer_fit() over a shuffled iterator — and prints every parameter's
 * float bits as hex, so the test can compare the Python run bit for bit.
 * Build: cc c_reference.c -I include -L build -lstrop */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <strop/strop.h>

#define N 96
#define D 8
#define C 3
#define BATCH 32

#define CHECK(call)                                                                      \
  do {                                                                                   \
    strop_status st_ = (call);                                                           \
    if (st_ != STROP_OK) {                                                               \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, strop_last_error()); \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

static float xs[N * D], ys[N];

static int build(strop_model **m) {
  int64_t in[1] = {D};
  CHECK(strop_model_create(1, in, m));
  CHECK(strop_model_add(*m, "fc1", "linear", "in_features=8 out_features=16", NULL));
  CHECK(strop_model_add(*m, "act", "relu", NULL, NULL));
  CHECK(strop_model_add(*m, "fc2", "linear", "in_features=16 out_features=3", NULL));
  CHECK(strop_model_finalize(*m, 42));
  return 0;
}

static int dump(const char *tag, strop_model *m) {
  int64_t n = strop_model_num_tensors(m);
  for (int64_t i = 0; i < n; i++) {
    char name[128];
    strop_model_tensor_name(m, i, name, sizeof name);
    strop_tensor *t = NULL;
    CHECK(strop_model_tensor_view(m, name, &t));
    const float *p = strop_tensor_data_const(t);
    printf("%s %s", tag, name);
    for (int64_t k = 0; k < strop_tensor_numel(t); k++) {
      uint32_t bits;
      memcpy(&bits, &p[k], 4);
      printf(" %08x", bits);
    }
    printf("\n");
    strop_tensor_free(t);
  }
  return 0;
}

int main(void) {
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < D; j++) xs[i * D + j] = (float)((i * 7 + j * 3) % 17) / 16.0f - 0.5f;
    ys[i] = (float)((i * 5 + i / 7) % C);
  }
  /* (a) manual steps */
  strop_model *m = NULL;
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  if (build(&m)) return 1;
  CHECK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt));
  CHECK(strop_optimizer_set_float(opt, STROP_OPT_LR, 0.01f));
  CHECK(strop_trainer_create(m, opt, &tr));
  float loss = 0;
  for (int s = 0; s < 30; s++) {
    int off = (s * BATCH) % N;
    int64_t xd[2] = {BATCH, D}, yd[1] = {BATCH};
    strop_tensor *x = NULL, *y = NULL;
    CHECK(strop_tensor_wrap(xs + off * D, BATCH * D, 2, xd, &x));
    CHECK(strop_tensor_wrap(ys + off, BATCH, 1, yd, &y));
    CHECK(strop_trainer_step(tr, x, y, &loss));
    strop_tensor_free(x);
    strop_tensor_free(y);
  }
  uint32_t lb;
  memcpy(&lb, &loss, 4);
  printf("loss_a %08x\n", lb);
  if (dump("a", m)) return 1;
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);

  /* (b) the fit loop over a shuffled iterator, SGD with momentum and a cosine schedule */
  strop_dataset *ds = NULL;
  strop_batch_iter *it = NULL;
  strop_scheduler *sch = NULL;
  int64_t in[1] = {D};
  if (build(&m)) return 1;
  CHECK(strop_dataset_from_memory(xs, ys, N, 1, in, 0, NULL, C, &ds));
  CHECK(strop_batch_iter_create(ds, 16, 3, STROP_ITER_SHUFFLE, &it));
  CHECK(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt));
  CHECK(strop_optimizer_set_float(opt, STROP_OPT_LR, 0.05f));
  CHECK(strop_optimizer_set_float(opt, STROP_OPT_MOMENTUM, 0.9f));
  CHECK(strop_scheduler_create(opt, STROP_SCHED_COSINE, &sch));
  CHECK(strop_scheduler_set_int(sch, STROP_SCH_T_MAX, 24));
  CHECK(strop_trainer_create(m, opt, &tr));
  CHECK(strop_trainer_set_scheduler(tr, sch));
  strop_fit_options fo;
  strop_fit_options_init(&fo);
  fo.epochs = 4;
  CHECK(strop_trainer_fit(tr, it, NULL, &fo));
  if (dump("b", m)) return 1;
  strop_trainer_free(tr);
  strop_scheduler_free(sch);
  strop_optimizer_free(opt);
  strop_batch_iter_free(it);
  strop_dataset_free(ds);
  strop_model_free(m);
  return 0;
}
