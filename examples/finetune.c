/* SPDX-License-Identifier: MIT */
/* strop example — fine-tuning from C, one step at a time under the host's control:
 * load the bundled Fashion-MNIST base CNN, replace its head for five new classes, freeze
 * the trunk, train on 20 images per class, evaluate on the test set, save the result.
 * Run from the source tree: build/examples/finetune. docs/guide.md shows this file. */
#include <stdio.h>
#include <stdlib.h>

#include <strop/strop.h>

#define FASHION "/usr/share/datasets/fashion-mnist/" /* Debian's dataset-fashion-mnist */

/* Every call returns a strop_status; on failure strop_last_error() says what and where. */
#define CHECK(call)                                                                      \
  do {                                                                                   \
    strop_status s_ = (call);                                                            \
    if (s_ != STROP_OK) {                                                                \
      fprintf(stderr, "%s: %s (%s)\n", #call, strop_last_error(), strop_status_str(s_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

int main(void) {
  /* 1. The pre-trained model: architecture (YAML) + weights (safetensors, PyTorch names). */
  strop_model *model = NULL;
  CHECK(strop_model_load_spec("examples/fashion/base.yaml", &model));
  CHECK(strop_model_load_weights(model, "examples/fashion/base.safetensors", STROP_LOAD_STRICT,
                                 NULL));

  /* 2. Surgery, one transaction: a new head, the trunk frozen (its BatchNorm in eval mode). */
  strop_surgery *plan = NULL;
  CHECK(strop_surgery_create(model, &plan));
  CHECK(strop_surgery_replace(plan, "head", "linear", "out_features=5", 42));
  CHECK(strop_surgery_freeze(plan, "features.*", 0));
  CHECK(strop_surgery_apply(plan)); /* all edits or none */
  strop_surgery_free(plan);
  printf("trainable parameters: %lld of %lld\n", (long long)strop_model_param_count(model, 1),
         (long long)strop_model_param_count(model, 0));

  /* 3. Data: classes 5-9 as 0-4, 20 training images per class, batches scaled to [0, 1]. */
  static const int64_t classes[5] = {5, 6, 7, 8, 9};
  strop_dataset *all = NULL, *five = NULL, *train = NULL, *test_all = NULL, *test = NULL;
  CHECK(strop_dataset_load_idx(FASHION "train-images-idx3-ubyte.gz",
                               FASHION "train-labels-idx1-ubyte.gz", 10, &all));
  CHECK(strop_dataset_filter_classes(all, classes, 5, &five));
  CHECK(strop_dataset_few_shot(five, 20, /*seed*/ 7, &train));
  CHECK(strop_dataset_load_idx(FASHION "t10k-images-idx3-ubyte.gz",
                               FASHION "t10k-labels-idx1-ubyte.gz", 10, &test_all));
  CHECK(strop_dataset_filter_classes(test_all, classes, 5, &test));
  strop_batch_iter *it = NULL, *test_it = NULL;
  CHECK(strop_batch_iter_create(train, 20, /*seed*/ 1, STROP_ITER_SHUFFLE, &it));
  CHECK(strop_batch_iter_add_scale(it, 1.0f / 255.0f));
  CHECK(strop_batch_iter_create(test, 500, 0, 0, &test_it));
  CHECK(strop_batch_iter_add_scale(test_it, 1.0f / 255.0f));

  /* 4. Optimizer and trainer; the host drives every step. */
  strop_optimizer *opt = NULL;
  strop_trainer *trainer = NULL;
  CHECK(strop_optimizer_create(model, STROP_OPTIM_ADAM, &opt));
  CHECK(strop_optimizer_set_double(opt, STROP_OPT_LR, 3e-3));
  CHECK(strop_trainer_create(model, opt, &trainer));
  for (int epoch = 1; epoch <= 30; epoch++) {
    double sum = 0;
    int batches = 0;
    for (;;) {
      strop_tensor *x = NULL, *y = NULL; /* borrowed from the iterator */
      int64_t rows = 0;
      CHECK(strop_batch_iter_next(it, &x, &y, &rows));
      if (rows == 0) break; /* end of the epoch */
      float loss = 0;
      CHECK(strop_trainer_step(trainer, x, y, &loss));
      sum += loss;
      batches++;
    }
    if (epoch % 10 == 0) printf("epoch %d: mean loss %.4f\n", epoch, sum / batches);
  }

  /* 5. Evaluate on the 5,000 test images and save (PyTorch loads the weights as they are). */
  strop_metrics *m = NULL;
  CHECK(strop_trainer_eval(trainer, test_it, &m));
  printf("test accuracy %.2f%% on %.0f images\n",
         100 * strop_metrics_get(m, STROP_METRIC_ACCURACY),
         strop_metrics_get(m, STROP_METRIC_SAMPLES));
  CHECK(strop_model_save_weights(model, "finetuned.safetensors"));
  CHECK(strop_model_save_spec(model, "finetuned.yaml"));

  strop_metrics_free(m);
  strop_trainer_free(trainer);
  strop_optimizer_free(opt);
  strop_batch_iter_free(it);
  strop_batch_iter_free(test_it);
  strop_dataset_free(all);
  strop_dataset_free(five);
  strop_dataset_free(train);
  strop_dataset_free(test_all);
  strop_dataset_free(test);
  strop_model_free(model);
  return 0;
}
