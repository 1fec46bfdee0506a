/* SPDX-License-Identifier: MIT */
/* strop example — knowledge distillation from C, with a loss the host computes. The teacher
 * is the bundled Fashion-MNIST base CNN (classes 0-4, 93% accurate); the student a small MLP.
 * Only 20 images per class have labels; the teacher also sees 5,000 images nobody labelled.
 * The host takes the student's logits from strop_trainer_forward(), computes Hinton et al.'s
 * loss at temperature T against the teacher's logits -- T^2 KL(teacher_T || student_T), plus
 * (1 - a) of the cross-entropy on a label where the image has one -- and hands its gradient to
 * strop_trainer_backward(); strop_trainer_apply() makes the optimizer step. The baseline is
 * the same student trained on the labelled images alone with strop_trainer_step(): same
 * initial weights, optimizer, batch size and number of steps. It prints both test accuracies.
 * Run from the source tree: build/examples/distill [SEED]. docs/host-loss.md shows this file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <strop/strop.h>

#define FASHION "/usr/share/datasets/fashion-mnist/" /* Debian's dataset-fashion-mnist */

#define CHECK(call)                                                                      \
  do {                                                                                   \
    strop_status s_ = (call);                                                            \
    if (s_ != STROP_OK) {                                                                \
      fprintf(stderr, "%s: %s (%s)\n", #call, strop_last_error(), strop_status_str(s_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

enum {
  CLASSES = 5,     /* the teacher's classes 0-4 */
  LABELLED = 20,   /* labelled images per class */
  TRANSFER = 1000, /* images per class the teacher labels (the 20 among them) */
  BATCH = 50,
  STEPS = 400 /* optimizer steps of each student */
};
static const double T = 4.0;     /* temperature of the soft targets */
static const double ALPHA = 0.9; /* weight of the distillation term where a label exists */

/* softmax(z / t) of one row of logits, in double. */
static void softmax_t(const float *z, double t, double *p) {
  double m = z[0], s = 0.0;
  for (int j = 1; j < CLASSES; j++) m = z[j] > m ? z[j] : m;
  for (int j = 0; j < CLASSES; j++) s += p[j] = exp(((double)z[j] - m) / t);
  for (int j = 0; j < CLASSES; j++) p[j] /= s;
}

/* The mean over n rows of a T^2 KL(p_T || q_T) + (1 - a) CE(y, q) -- where labelled[r] is 0
 * the row has no label and its loss is T^2 KL alone -- and its gradient with respect to the
 * student's logits z: T (q_T - p_T) for the soft term (the T^2 keeps its gradient at the
 * hard term's scale as T changes, Hinton et al. 2015), q - onehot(y) for the hard one. */
static double distill_loss(const float *z, const float *teacher, const float *y,
                           const int *labelled, int64_t n, float *dz) {
  double total = 0.0;
  for (int64_t r = 0; r < n; r++) {
    double q[CLASSES], qt[CLASSES], pt[CLASSES];
    softmax_t(z + r * CLASSES, 1.0, q);
    softmax_t(z + r * CLASSES, T, qt);
    softmax_t(teacher + r * CLASSES, T, pt);
    double a = labelled[r] ? ALPHA : 1.0, kl = 0.0;
    int c = (int)y[r];
    for (int j = 0; j < CLASSES; j++) kl += pt[j] * (log(pt[j]) - log(qt[j]));
    total += a * T * T * kl + (1.0 - a) * -log(q[c]);
    for (int j = 0; j < CLASSES; j++) {
      double soft = T * (qt[j] - pt[j]), hard = q[j] - (j == c);
      dz[r * CLASSES + j] = (float)((a * soft + (1.0 - a) * hard) / (double)n);
    }
  }
  return total / (double)n;
}

/* flatten -> 64 -> relu -> 5: 50k weights, no convolution (the teacher: 120k, two). */
static strop_model *student(uint64_t seed) {
  int64_t in[3] = {1, 28, 28};
  strop_model *m = NULL;
  CHECK(strop_model_create(3, in, &m));
  CHECK(strop_model_add(m, "flatten", "flatten", NULL, NULL));
  CHECK(strop_model_add(m, "fc", "linear", "out_features=64", NULL));
  CHECK(strop_model_add(m, "act", "relu", NULL, NULL));
  CHECK(strop_model_add(m, "head", "linear", "out_features=5", NULL));
  CHECK(strop_model_finalize(m, seed));
  return m;
}

/* Top-1 accuracy of a model in eval mode over one pass of the test batches. */
static double accuracy(strop_model *m, strop_batch_iter *test) {
  int64_t epoch, pos, sd, right = 0, seen = 0;
  CHECK(strop_batch_iter_get_state(test, &epoch, &pos, &sd));
  CHECK(strop_batch_iter_set_state(test, epoch, 0, sd)); /* from the first batch */
  CHECK(strop_model_set_training(m, 0));
  for (;;) {
    strop_tensor *x = NULL, *y = NULL, *z = NULL;
    int64_t rows = 0;
    CHECK(strop_batch_iter_next(test, &x, &y, &rows));
    if (rows == 0) break;
    CHECK(strop_model_forward(m, x, &z));
    for (int64_t r = 0; r < rows; r++) {
      const float *zr = strop_tensor_data(z) + r * CLASSES;
      int best = 0;
      for (int j = 1; j < CLASSES; j++) best = zr[j] > zr[best] ? j : best;
      right += best == (int)strop_tensor_data(y)[r];
    }
    seen += rows;
    strop_tensor_free(z);
  }
  return (double)right / (double)seen;
}

/* The next batch of an iterator, starting its next epoch when one ends. */
static int64_t next_batch(strop_batch_iter *it, strop_tensor **x, strop_tensor **y) {
  int64_t rows = 0;
  CHECK(strop_batch_iter_next(it, x, y, &rows));
  if (rows == 0) CHECK(strop_batch_iter_next(it, x, y, &rows));
  return rows;
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;

  /* The teacher: the pre-trained CNN, in eval mode (BatchNorm's running statistics). */
  strop_model *teacher = NULL;
  CHECK(strop_model_load_spec("examples/fashion/base.yaml", &teacher));
  CHECK(strop_model_load_weights(teacher, "examples/fashion/base.safetensors", STROP_LOAD_STRICT,
                                 NULL));
  CHECK(strop_model_set_training(teacher, 0));

  /* Data: classes 0-4; 1,000 training images per class for the teacher to label, 20 of each
   * with their labels; the 5,000 test images. */
  static const int64_t classes[CLASSES] = {0, 1, 2, 3, 4};
  strop_dataset *all = NULL, *five = NULL, *transfer = NULL, *labelled = NULL, *test_all = NULL,
                *test = NULL;
  CHECK(strop_dataset_load_idx(FASHION "train-images-idx3-ubyte.gz",
                               FASHION "train-labels-idx1-ubyte.gz", 10, &all));
  CHECK(strop_dataset_filter_classes(all, classes, CLASSES, &five));
  CHECK(strop_dataset_few_shot(five, TRANSFER, seed, &transfer));
  CHECK(strop_dataset_few_shot(transfer, LABELLED, seed, &labelled));
  CHECK(strop_dataset_load_idx(FASHION "t10k-images-idx3-ubyte.gz",
                               FASHION "t10k-labels-idx1-ubyte.gz", 10, &test_all));
  CHECK(strop_dataset_filter_classes(test_all, classes, CLASSES, &test));
  strop_batch_iter *test_it = NULL;
  CHECK(strop_batch_iter_create(test, 500, 0, 0, &test_it));
  CHECK(strop_batch_iter_add_scale(test_it, 1.0f / 255.0f));
  printf("%-36s test accuracy %.2f%%\n",
         "teacher (the base CNN):", 100 * accuracy(teacher, test_it));

  /* The two students, from the same initial weights, each for STEPS optimizer steps. */
  double acc[2];
  for (int distill = 0; distill < 2; distill++) {
    strop_model *m = student(seed);
    strop_optimizer *opt = NULL;
    strop_trainer *tr = NULL;
    strop_batch_iter *lab = NULL, *tra = NULL;
    CHECK(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt));
    CHECK(strop_optimizer_set_double(opt, STROP_OPT_LR, 1e-3));
    CHECK(strop_trainer_create(m, opt, &tr));
    CHECK(strop_batch_iter_create(labelled, BATCH, seed, STROP_ITER_SHUFFLE, &lab));
    CHECK(strop_batch_iter_add_scale(lab, 1.0f / 255.0f));
    CHECK(strop_batch_iter_create(transfer, BATCH, seed, STROP_ITER_SHUFFLE, &tra));
    CHECK(strop_batch_iter_add_scale(tra, 1.0f / 255.0f));
    double sum = 0.0;
    for (int step = 1; step <= STEPS; step++) {
      strop_tensor *x = NULL, *y = NULL; /* borrowed from the iterator */
      if (!distill) {                    /* the labels alone: the trainer's own cross-entropy */
        next_batch(lab, &x, &y);
        float loss = 0.0f;
        CHECK(strop_trainer_step(tr, x, y, &loss));
        sum += loss;
      } else { /* the teacher's knowledge: the host's loss */
        /* nine batches in ten from the images the teacher labels (their labels unread),
         * the tenth from the 100 labelled ones */
        int with_labels = step % 10 == 0;
        int64_t rows = next_batch(with_labels ? lab : tra, &x, &y);
        strop_tensor *t_out = NULL, *s_out = NULL, *dz = NULL;
        int has_label[BATCH];
        for (int64_t r = 0; r < rows; r++) has_label[r] = with_labels;
        CHECK(strop_model_forward(teacher, x, &t_out)); /* the teacher's logits */
        CHECK(strop_trainer_forward(tr, x, &s_out));    /* the student's, kept */
        CHECK(strop_tensor_copy(s_out, &dz));           /* [rows, 5] for the gradient */
        sum += distill_loss(strop_tensor_data(s_out), strop_tensor_data(t_out),
                            strop_tensor_data(y), has_label, rows, strop_tensor_data(dz));
        CHECK(strop_trainer_backward(tr, dz)); /* d loss / d logits */
        CHECK(strop_trainer_apply(tr));        /* the optimizer step */
        strop_tensor_free(dz);
        strop_tensor_free(s_out);
        strop_tensor_free(t_out);
      }
      if (step % 100 == 0) {
        printf("  %s step %d: mean loss %.4f\n", distill ? "distilled" : "labels only", step,
               sum / 100);
        sum = 0.0;
      }
    }
    acc[distill] = accuracy(m, test_it);
    printf("%-36s test accuracy %.2f%%\n",
           distill ? "student taught by the teacher:" : "student on the 100 labels alone:",
           100 * acc[distill]);
    strop_batch_iter_free(tra);
    strop_batch_iter_free(lab);
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
    strop_model_free(m);
  }
  printf("distillation: %+.2f points over the labels alone (%d steps of %d, seed %llu)\n",
         100 * (acc[1] - acc[0]), STEPS, BATCH, (unsigned long long)seed);

  strop_batch_iter_free(test_it);
  strop_dataset_free(test);
  strop_dataset_free(test_all);
  strop_dataset_free(labelled);
  strop_dataset_free(transfer);
  strop_dataset_free(five);
  strop_dataset_free(all);
  strop_model_free(teacher);
  return 0;
}
