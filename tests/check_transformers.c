/* SPDX-License-Identifier: MIT */
/* strop tests — transformers as people have them (lib/pretrained: gpt2.c, llama.c, bert.c;
 * the torch.nn composites).
 *
 * Without PyTorch: the architecture list, and a corpus of broken Hugging Face folders (config
 * fields missing or of the wrong type, shapes the config does not describe, a missing shard,
 * an unknown architecture, unsupported options) each refused with its own sentence, the
 * checkpoints made by strop itself (a partial load and a save).
 * With PyTorch (tests/pretrained/run_transformers.py generates the folders and answers of
 * reference modules that follow transformers 4.44, and torch.nn's own encoder, and runs this
 * suite with STROP_PT_FIXTURES pointing there): for each family, eval logits of a right-padded
 * batch with its mask, the loss, every gradient and one AdamW step match PyTorch; the hub's
 * GPT-2 form, a BF16 checkpoint and a sharded folder load. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph/graph.h"
#include "strop/strop.h"
#include "testutil.h"

static const char *fixtures(void) { return getenv("STROP_PT_FIXTURES"); }

static char g_tmp[256];

static void tmp_setup(void) {
  snprintf(g_tmp, sizeof g_tmp, "%s/tf_XXXXXX", P_tmpdir);
  ck_assert_ptr_nonnull(mkdtemp(g_tmp));
}

static void tmp_teardown(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
  ck_assert_int_eq(system(cmd), 0);
}

/* ---- reference files ---- */

static float *ref_read(const strop_st_file *f, const char *name, size_t *n) {
  int64_t i = strop_st_file_find(f, name);
  ck_assert_msg(i >= 0, "reference lacks %s", name);
  int64_t dims[8];
  int r = strop_st_file_shape(f, i, dims, 8);
  size_t cnt = 1;
  for (int k = 0; k < r; k++) cnt *= (size_t)dims[k];
  float *v = malloc(cnt * sizeof *v + 4);
  strop_test_must(strop_st_file_read_f32(f, i, v, cnt), name);
  if (n) *n = cnt;
  return v;
}

static strop_tensor *ref_tensor(const strop_st_file *f, const char *name) {
  int64_t i = strop_st_file_find(f, name);
  ck_assert_msg(i >= 0, "reference lacks %s", name);
  int64_t dims[8];
  int r = strop_st_file_shape(f, i, dims, 8);
  strop_tensor *t = NULL;
  strop_test_must(strop_tensor_create(r, dims, &t), name);
  strop_test_must(
      strop_st_file_read_f32(f, i, strop_tensor_data(t), (size_t)strop_tensor_numel(t)), name);
  return t;
}

static double rel_to_max(const float *a, const float *b, size_t n, double floor) {
  double worst = 0, top = floor;
  for (size_t i = 0; i < n; i++)
    if (fabs(b[i]) > top) top = fabs(b[i]);
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= worst)) worst = d;
  }
  return worst / top;
}

static double tol_for(const strop_st_file *f, const char *key, double floor) {
  char name[300];
  snprintf(name, sizeof name, "tol.%s", key);
  if (strop_st_file_find(f, name) < 0) return floor;
  float *t = ref_read(f, name, NULL);
  double tol = fmax(floor, 3.0 * t[0]);
  free(t);
  return tol;
}

static strop_model *load_hf(const char *dir, const char *name, const char *arch) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  strop_model *m = NULL;
  strop_load_report *r = NULL;
  strop_test_must(strop_model_load_pretrained(p, arch, NULL, &m, &r), p);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_MISSING), 0);
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_UNEXPECTED), 0);
  strop_load_report_free(r);
  return m;
}

/* torch.nn.TransformerEncoder inside a small classifier, built from a spec with the
 * transformer_encoder composite and loaded strictly from the state_dict */
static strop_model *load_torchnn(const char *dir, const char *name, const char *norm_first) {
  strop_model *m = NULL;
  const int64_t shape[1] = {16};
  char enc[300], p[512];
  snprintf(enc, sizeof enc,
           "num_layers=2 d_model=32 nhead=4 dim_feedforward=48 dropout=0 "
           "activation=%s norm_first=%s norm=true",
           strcmp(norm_first, "true") ? "relu" : "gelu", norm_first);
  strop_test_must(strop_model_create(1, shape, &m), "create");
  strop_test_must(
      strop_model_add(m, "emb", "embedding", "num_embeddings=30 embedding_dim=32", NULL), "emb");
  strop_test_must(strop_model_add(m, "encoder", "transformer_encoder", enc, NULL), "encoder");
  strop_test_must(strop_model_add(m, "pool", "mean_pool", NULL, NULL), "pool");
  strop_test_must(strop_model_add(m, "head", "linear", "out_features=3", NULL), "head");
  strop_test_must(strop_model_finalize(m, 1), "finalize");
  snprintf(p, sizeof p, "%s/%s.safetensors", dir, name);
  strop_test_must(strop_model_load_weights(m, p, STROP_LOAD_STRICT, NULL), p);
  return m;
}

typedef strop_model *(*loader)(const char *dir, const char *name);

static strop_model *ld_torchnn_post(const char *d, const char *n) {
  return load_torchnn(d, n, "false");
}
static strop_model *ld_torchnn_pre(const char *d, const char *n) {
  return load_torchnn(d, n, "true");
}
static strop_model *ld_auto(const char *d, const char *n) { return load_hf(d, n, NULL); }

/* torchvision's ViT: a state_dict file, the architecture named, the image size from the file */
static strop_model *ld_vit(const char *d, const char *n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s.safetensors", d, n);
  strop_model *m = NULL;
  strop_test_must(strop_model_load_pretrained(p, "vit_b_16", NULL, &m, NULL), p);
  return m;
}

/* strop_model_add_classifier_head on a loaded trunk (gen_transformers.py's heads()): the case
 * names the folder and the pooling; the trunk and the head's weights then come from the
 * reference's classifier, loaded strictly by the names the head gave its nodes. */
static strop_model *ld_head(const char *d, const char *n) {
  static const struct {
    const char *name, *folder, *pool;
  } CASES[] = {{"head_gpt2_last_left", "gpt2_lm", "last"},
               {"head_gpt2_last_right", "gpt2_lm", NULL},
               {"head_llama_last_left", "llama_lm", "last"},
               {"head_bert_mean", "bert", "mean"},
               {"head_gpt2_mean_left", "gpt2_lm", "mean"}};
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    if (strcmp(CASES[i].name, n)) continue;
    strop_model *m = load_hf(d, CASES[i].folder, NULL);
    strop_test_must(strop_model_add_classifier_head(m, CASES[i].pool, 3, 0.0f, 5), n);
    char p[512];
    snprintf(p, sizeof p, "%s/%s.weights.safetensors", d, n);
    strop_test_must(strop_model_load_weights(m, p, STROP_LOAD_STRICT, NULL), p);
    return m;
  }
  ck_abort_msg("no head case %s", n);
  return NULL;
}

/* the padding mask of the reference, or NULL (images) */
static strop_tensor *ref_mask(const strop_st_file *f) {
  return strop_st_file_find(f, "mask") >= 0 ? ref_tensor(f, "mask") : NULL;
}

/* the token types of the reference (text pairs), or NULL */
static strop_tensor *ref_types(const strop_st_file *f) {
  return strop_st_file_find(f, "types") >= 0 ? ref_tensor(f, "types") : NULL;
}

/* the reference batch's side inputs */
static strop_side_inputs side_of(const strop_tensor *mask, const strop_tensor *types) {
  strop_side_inputs side;
  strop_side_inputs_init(&side);
  side.mask = mask;
  side.token_types = types;
  return side;
}

/* Eval-mode logits of the reference's padded batch, with its mask (and token types). */
static void check_eval(strop_model *m, const strop_st_file *rf, const char *key, double floor) {
  strop_tensor *x = ref_tensor(rf, "x"), *mask = ref_mask(rf), *types = ref_types(rf),
               *out = NULL;
  size_t n;
  float *want = ref_read(rf, key, &n);
  const strop_side_inputs side = side_of(mask, types);
  strop_test_must(strop_model_forward_ext(m, x, &side, &out), "forward");
  ck_assert_int_eq(strop_tensor_numel(out), (int64_t)n);
  /* per-token logits at padded positions mean nothing: compare tokens only */
  const int64_t rows = strop_tensor_dim(x, 0) * strop_tensor_dim(x, 1);
  const int per_token = mask && (int64_t)n % rows == 0 && strop_tensor_rank(out) == 3;
  float *got = strop_tensor_data(out);
  if (per_token) {
    const size_t v = n / (size_t)rows;
    for (int64_t r = 0; r < rows; r++)
      if (strop_tensor_data(mask)[r] == 0.0f)
        for (size_t k = 0; k < v; k++) got[(size_t)r * v + k] = want[(size_t)r * v + k];
  }
  double e = rel_to_max(got, want, n, 1e-3), tol = tol_for(rf, key, floor);
  ck_assert_msg(e < tol, "%s: worst error %.3g of the largest logit (tolerance %.2g)", key, e,
                tol);
  strop_tensor_free(x);
  strop_tensor_free(mask);
  strop_tensor_free(types);
  strop_tensor_free(out);
  free(want);
}

/* d mean CE / d logits for rows of `classes` logits and targets y (-100: ignored) */
static double ce_grad(const float *z, const float *y, int64_t rows, int64_t classes, float *dz) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; r++) count += y[r] != -100.0f;
  double loss = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *zr = z + r * classes;
    float *dr = dz + r * classes;
    if (y[r] == -100.0f) {
      memset(dr, 0, (size_t)classes * sizeof *dr);
      continue;
    }
    double mx = zr[0], s = 0;
    for (int64_t c = 1; c < classes; c++) mx = fmax(mx, zr[c]);
    for (int64_t c = 0; c < classes; c++) s += exp(zr[c] - mx);
    loss += (log(s) + mx - zr[(int64_t)y[r]]) / (double)count;
    for (int64_t c = 0; c < classes; c++)
      dr[c] = (float)((exp(zr[c] - mx) / s - (c == (int64_t)y[r])) / (double)count);
  }
  return loss;
}

/* Everything a family must match: eval logits, the loss, every gradient, one AdamW step. */
static void parity(const char *name, loader load) {
  const char *dir = fixtures();
  char rpath[512];
  snprintf(rpath, sizeof rpath, "%s/%s.ref.safetensors", dir, name);
  strop_st_file *rf = NULL;
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  strop_model *m = load(dir, name);
  check_eval(m, rf, "eval.output", 1e-4);

  /* gradients of the mean cross-entropy through the host-loss path, then AdamW */
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt), "optimizer");
  strop_test_must(strop_optimizer_set_double(opt, STROP_OPT_LR, 1e-3), "lr");
  strop_test_must(strop_optimizer_set_double(opt, STROP_OPT_WEIGHT_DECAY, 0.01), "wd");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_tensor *x = ref_tensor(rf, "x"), *mask = ref_mask(rf), *y = ref_tensor(rf, "y");
  strop_tensor *types = ref_types(rf), *out = NULL, *dout = NULL;
  const strop_side_inputs side = side_of(mask, types);
  strop_test_must(strop_trainer_forward_ext(tr, x, &side, &out), "train forward");
  strop_test_must(strop_tensor_copy(out, &dout), "copy");
  const int64_t rows = strop_tensor_numel(y), classes = strop_tensor_numel(out) / rows;
  const double loss = ce_grad(strop_tensor_data(out), strop_tensor_data(y), rows, classes,
                              strop_tensor_data(dout));
  float *want_loss = ref_read(rf, "loss", NULL);
  ck_assert_msg(fabs(loss - want_loss[0]) < 2e-5 * fmax(1, fabs(want_loss[0])),
                "%s: loss %.8g, PyTorch %.8g", name, loss, want_loss[0]);
  strop_test_must(strop_trainer_backward(tr, dout), "backward");
  int checked = 0;
  float **grads = calloc((size_t)m->n_params, sizeof *grads);
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (!p->trainable || p->is_buffer) continue;
    char key[300];
    snprintf(key, sizeof key, "grad.%s", p->name);
    size_t n;
    float *g = ref_read(rf, key, &n);
    ck_assert_uint_eq(n, p->numel);
    grads[i] = malloc(n * sizeof **grads);
    strop_test_must(strop_model_get_grad(m, p->name, grads[i], n), p->name);
    const double e = rel_to_max(grads[i], g, n, 1e-6), tol = tol_for(rf, key, 1e-3);
    if (getenv("STROP_PT_VERBOSE")) printf("  %s %s: %.3g (tolerance %.3g)\n", name, key, e, tol);
    ck_assert_msg(e < tol, "%s: %s: worst error %.3g of the largest gradient (tolerance %.2g)",
                  name, key, e, tol);
    free(g);
    checked++;
  }
  ck_assert_int_gt(checked, 10);
  strop_test_must(strop_trainer_apply(tr), "apply");
  for (int i = 0; i < m->n_params; i++) {
    const strop__param *p = m->params[i];
    if (!grads[i]) continue;
    char key[300];
    snprintf(key, sizeof key, "after.%s", p->name);
    size_t n;
    float *a = ref_read(rf, key, &n);
    snprintf(key, sizeof key, "grad.%s", p->name);
    float *g = ref_read(rf, key, NULL);
    /* Adam's first step is ~lr * sign(g): where the gradient is within the strop-PyTorch gap
     * of zero, its sign is rounding's (see check_pretrained.c) */
    double gap = 0;
    for (size_t k = 0; k < n; k++) gap = fmax(gap, fabs((double)grads[i][k] - g[k]));
    for (size_t k = 0; k < n; k++) {
      const double d = fabs((double)p->data[k] - a[k]);
      if (fabs(g[k]) <= 2 * gap + 1e-7)
        ck_assert_msg(d <= 2.1e-3, "%s: %s[%zu]: %.8g vs %.8g", name, p->name, k, p->data[k],
                      a[k]);
      else
        ck_assert_msg(d <= 2e-6 + 1e-5 * fabs(a[k]),
                      "%s: %s[%zu] after AdamW: %.8g, PyTorch "
                      "%.8g (grad %.3g)",
                      name, p->name, k, p->data[k], a[k], g[k]);
    }
    free(a);
    free(g);
  }
  printf("%s: eval logits, loss, %d gradients and one AdamW step match PyTorch\n", name, checked);
  for (int i = 0; i < m->n_params; i++) free(grads[i]);
  free(grads);
  strop_tensor_free(out);
  strop_tensor_free(dout);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);

  /* the loss through the trainer's own step, from the file again */
  m = load(dir, name);
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt), "optimizer");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  float l = 0;
  strop_test_must(strop_trainer_step_ext(tr, x, &side, y, &l), "step");
  ck_assert_msg(fabs(l - want_loss[0]) < 2e-5 * fmax(1, fabs(want_loss[0])),
                "%s: trainer loss %.8g, PyTorch %.8g", name, (double)l, want_loss[0]);
  /* saved for run_transformers.py to reload in PyTorch with strict=True */
  char spath[512];
  snprintf(spath, sizeof spath, "%s/%s.stepped.safetensors", dir, name);
  strop_test_must(strop_model_save_weights(m, spath), "save");
  /* and as a Hugging Face folder, which strop loads back to the same model */
  snprintf(spath, sizeof spath, "%s/%s.saved", dir, name);
  if (!strncmp(name, "torchnn", 7) || !strcmp(name, "vit")) {
    ck_assert_int_eq(strop_model_save_pretrained(m, spath), STROP_E_STATE);
    ck_assert(strstr(strop_last_error(), "strop_model_save_weights"));
  } else if (strstr(name, "_mean")) {
    /* a mean-pooled head: no Hugging Face class has it */
    ck_assert_int_eq(strop_model_save_pretrained(m, spath), STROP_E_UNSUPPORTED);
    ck_assert(strstr(strop_last_error(), "'mean'"));
  } else {
    strop_test_must(strop_model_save_pretrained(m, spath), "save_pretrained");
    strop_model *back = load_hf(dir, strrchr(spath, '/') + 1, NULL);
    strop_tensor *o1 = NULL, *o2 = NULL;
    strop_test_must(strop_model_set_training(m, 0), "eval");
    strop_test_must(strop_model_forward_ext(m, x, &side, &o1), "stepped");
    strop_test_must(strop_model_forward_ext(back, x, &side, &o2), "reloaded");
    ck_assert(memcmp(strop_tensor_data(o1), strop_tensor_data(o2),
                     (size_t)strop_tensor_numel(o1) * sizeof(float)) == 0);
    strop_tensor_free(o1);
    strop_tensor_free(o2);
    strop_model_free(back);
  }
  free(want_loss);
  strop_tensor_free(x);
  strop_tensor_free(mask);
  strop_tensor_free(types);
  strop_tensor_free(y);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  strop_st_file_free(rf);
}

START_TEST(torchnn_post_norm) { parity("torchnn_post", ld_torchnn_post); }
END_TEST
START_TEST(torchnn_pre_norm) { parity("torchnn_pre", ld_torchnn_pre); }
END_TEST
START_TEST(gpt2_lm) { parity("gpt2_lm", ld_auto); }
END_TEST
START_TEST(gpt2_cls) { parity("gpt2_cls", ld_auto); }
END_TEST
START_TEST(llama_lm) { parity("llama_lm", ld_auto); }
END_TEST
START_TEST(qwen2_lm) { parity("qwen2_lm", ld_auto); }
END_TEST
START_TEST(mistral_lm) { parity("mistral_lm", ld_auto); }
END_TEST
START_TEST(llama_cls) { parity("llama_cls", ld_auto); }
END_TEST
START_TEST(bert_base) { parity("bert", ld_auto); }
END_TEST
START_TEST(bert_cls) { parity("bert_cls", ld_auto); }
END_TEST

/* sentence pairs with token types 0 and 1: logits, loss, every gradient (token_type_embeddings'
 * rows 0 and 1 both get one) and one AdamW step */
START_TEST(bert_pair) {
  parity("bert_pair", ld_auto);
  /* the types reach the model: with all-zero types the logits differ (row 1 differs from 0) */
  char rpath[512];
  snprintf(rpath, sizeof rpath, "%s/bert_pair.ref.safetensors", fixtures());
  strop_st_file *rf = NULL;
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  strop_model *m = load_hf(fixtures(), "bert_pair", NULL);
  strop_tensor *x = ref_tensor(rf, "x"), *mask = ref_mask(rf), *types = ref_types(rf);
  strop_tensor *zeros = NULL, *o1 = NULL, *o2 = NULL;
  strop_test_must(strop_tensor_copy(types, &zeros), "copy");
  memset(strop_tensor_data(zeros), 0, (size_t)strop_tensor_numel(zeros) * sizeof(float));
  strop_side_inputs side = side_of(mask, types);
  strop_test_must(strop_model_forward_ext(m, x, &side, &o1), "types");
  side.token_types = zeros;
  strop_test_must(strop_model_forward_ext(m, x, &side, &o2), "zeros");
  ck_assert(rel_to_max(strop_tensor_data(o1), strop_tensor_data(o2),
                       (size_t)strop_tensor_numel(o1), 1e-3) > 1e-3);
  /* all-zero types are what no types give */
  strop_tensor *o3 = NULL;
  strop_test_must(strop_model_forward_masked(m, x, mask, &o3), "no types");
  ck_assert(memcmp(strop_tensor_data(o2), strop_tensor_data(o3),
                   (size_t)strop_tensor_numel(o2) * sizeof(float)) == 0);
  strop_tensor_free(o1);
  strop_tensor_free(o2);
  strop_tensor_free(o3);
  strop_tensor_free(zeros);
  strop_tensor_free(x);
  strop_tensor_free(mask);
  strop_tensor_free(types);
  strop_model_free(m);
  strop_st_file_free(rf);
}
END_TEST
START_TEST(roberta_cls) { parity("roberta_cls", ld_auto); }
END_TEST
START_TEST(distilbert_cls) { parity("distilbert_cls", ld_auto); }
END_TEST

/* The forms people have: the hub's GPT-2 file, BF16, shards. */
START_TEST(vit) { parity("vit", ld_vit); }
END_TEST
START_TEST(head_gpt2_last_left) { parity("head_gpt2_last_left", ld_head); }
END_TEST
START_TEST(head_gpt2_last_right) { parity("head_gpt2_last_right", ld_head); }
END_TEST
START_TEST(head_llama_last_left) { parity("head_llama_last_left", ld_head); }
END_TEST
START_TEST(head_bert_mean) { parity("head_bert_mean", ld_head); }
END_TEST
START_TEST(head_gpt2_mean_left) { parity("head_gpt2_mean_left", ld_head); }
END_TEST

/* declared for the checkpoint's 32 x 32, run at 48 x 48: torchvision's logits after its
 * interpolate_embeddings */
START_TEST(vit_other_size) {
  const char *dir = fixtures();
  char rpath[512];
  snprintf(rpath, sizeof rpath, "%s/vit.ref.safetensors", dir);
  strop_st_file *rf = NULL;
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  strop_model *m = ld_vit(dir, "vit");
  int64_t dims[3];
  ck_assert_int_eq(strop_model_input_shape(m, dims, 3), 3);
  ck_assert_int_eq(dims[1], 32);
  strop_tensor *x = ref_tensor(rf, "x48"), *out = NULL;
  size_t n;
  float *want = ref_read(rf, "eval48.output", &n);
  strop_test_must(strop_model_forward(m, x, &out), "forward at 48");
  const double e = rel_to_max(strop_tensor_data(out), want, n, 1e-3);
  ck_assert_msg(e < 1e-4, "48 x 48: worst error %.3g of the largest logit", e);
  /* and it trains there: a step changes the 32 x 32 table through the resize */
  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_SGD, &opt), "optimizer");
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  const int64_t yd[1] = {2};
  strop_tensor *y = NULL;
  strop_test_must(strop_tensor_create(1, yd, &y), "y");
  strop_tensor_data(y)[0] = 1;
  strop_tensor_data(y)[1] = 3;
  float loss = 0;
  strop_test_must(strop_trainer_step(tr, x, y, &loss), "step at 48");
  ck_assert(isfinite(loss));
  strop_tensor_free(y);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  free(want);
  strop_tensor_free(x);
  strop_tensor_free(out);
  strop_model_free(m);
  strop_st_file_free(rf);
}
END_TEST

/* An image size that is no multiple of the patch (8 here) is refused, where conv_proj would
 * drop the border silently: at the load (image_size 36) and in a batch of another size (44 x 44
 * on a model declared for 32), STROP_E_SHAPE naming the layer, the size and the patch; a
 * multiple (40 x 40) still runs. */
START_TEST(vit_size_not_multiple) {
  const char *dir = fixtures();
  char p[512];
  snprintf(p, sizeof p, "%s/vit.safetensors", dir);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.image_size = 36;
  strop_model *m = NULL;
  strop_status st = strop_model_load_pretrained(p, "vit_b_16", &o, &m, NULL);
  const char *msg = strop_last_error();
  ck_assert_msg(st == STROP_E_SHAPE, "load at 36: status %d: %s", st, msg);
  ck_assert_ptr_null(m);
  ck_assert_msg(strstr(msg, "conv_proj") && strstr(msg, "36x36") && strstr(msg, "8x8 patch"),
                "load at 36: %s", msg);
  m = ld_vit(dir, "vit");
  for (int k = 0; k < 2; k++) {
    const int64_t side = k ? 40 : 44, dims[4] = {2, 3, side, side};
    strop_tensor *x = NULL, *out = NULL;
    strop_test_must(strop_tensor_create(4, dims, &x), "x");
    float *v = strop_tensor_data(x);
    for (int64_t i = 0; i < 2 * 3 * side * side; i++) v[i] = sinf(0.1f * (float)i);
    st = strop_model_forward(m, x, &out);
    if (k) {
      ck_assert_msg(st == STROP_OK, "forward at 40: %s", strop_last_error());
    } else {
      msg = strop_last_error();
      ck_assert_msg(st == STROP_E_SHAPE, "forward at 44: status %d: %s", st, msg);
      ck_assert_ptr_null(out);
      ck_assert_msg(strstr(msg, "conv_proj") && strstr(msg, "44x44") && strstr(msg, "8x8 patch"),
                    "forward at 44: %s", msg);
    }
    strop_tensor_free(out);
    strop_tensor_free(x);
  }
  strop_model_free(m);
}
END_TEST

START_TEST(forms) {
  const char *dir = fixtures();
  char rpath[512];
  strop_st_file *rf = NULL;
  snprintf(rpath, sizeof rpath, "%s/gpt2_lm.ref.safetensors", dir);
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  strop_model *m = load_hf(dir, "gpt2_hub", NULL);
  check_eval(m, rf, "eval.output", 1e-4);
  strop_model_free(m);
  strop_st_file_free(rf);
  snprintf(rpath, sizeof rpath, "%s/llama_lm.ref.safetensors", dir);
  strop_test_must(strop_st_file_open(rpath, &rf), rpath);
  m = load_hf(dir, "llama_bf16", NULL);
  check_eval(m, rf, "bf16.output", 1e-4);
  strop_model_free(m);
  m = load_hf(dir, "llama_sharded", NULL);
  check_eval(m, rf, "eval.output", 1e-4);
  strop_model_free(m);
  strop_st_file_free(rf);
}
END_TEST

/* ---- without PyTorch ---- */

START_TEST(arch_list) {
  static const char *const want[] = {"gpt2",       "gpt2_cls",      "llama",   "llama_cls",
                                     "bert",       "bert_cls",      "roberta", "roberta_cls",
                                     "distilbert", "distilbert_cls"};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    int found = 0;
    for (int i = 0; i < strop_pretrained_arch_count(); i++)
      found += !strcmp(strop_pretrained_arch_name(i), want[k]);
    ck_assert_msg(found == 1, "%s listed %d times", want[k], found);
    ck_assert_ptr_nonnull(strop_pretrained_arch_doc(want[k]));
  }
}
END_TEST

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  ck_assert_int_eq(fclose(f), 0);
}

static const char *in_dir(const char *dir, const char *name) {
  static char buf[4][600];
  static int k;
  char *p = buf[k++ & 3];
  snprintf(p, 600, "%s/%s", dir, name);
  return p;
}

/* A folder made by strop: config.json as given, weights from a partial load (initialised from
 * a seed) saved by strop. */
static void make_folder(const char *dir, const char *config) {
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"), config);
  /* an empty safetensors file, then a partial load of it initialises everything */
  FILE *f = fopen(in_dir(dir, "model.safetensors"), "wb");
  ck_assert_ptr_nonnull(f);
  const unsigned char len[8] = {8, 0, 0, 0, 0, 0, 0, 0};
  fwrite(len, 1, 8, f);
  fwrite("{}      ", 1, 8, f);
  ck_assert_int_eq(fclose(f), 0);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = STROP_LOAD_PARTIAL;
  strop_model *m = NULL;
  strop_test_must(strop_model_load_pretrained(dir, NULL, &o, &m, NULL), dir);
  strop_test_must(strop_model_save_weights(m, in_dir(dir, "model.safetensors")), "save");
  strop_model_free(m);
}

static void expect(strop_status got, strop_status want, const char *const *words) {
  const char *msg = strop_last_error();
  ck_assert_msg(got == want, "status %d, want %d: %s", got, want, msg);
  for (const char *const *w = words; *w; w++)
    ck_assert_msg(strstr(msg, *w), "'%s' does not say '%s'", msg, *w);
}

#define LLAMA_CFG(EXTRA)                                                                        \
  "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 20, " \
  "\"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 1, "                  \
  "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"max_position_embeddings\": "       \
  "32" EXTRA "}"

START_TEST(broken_folders) {
  char good[400];
  snprintf(good, sizeof good, "%s/good", g_tmp);
  make_folder(good, LLAMA_CFG(""));
  strop_model *m = NULL;
  strop_load_report *r = NULL;
  strop_test_must(strop_model_load_pretrained(good, NULL, NULL, &m, &r), "good folder");
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_LOADED), 1 + 9 + 2);
  strop_load_report_free(r);
  strop_model_free(m);
  struct {
    const char *config;
    strop_status st;
    const char *words[4];
  } cases[] = {
      /* a field of the wrong type, named with the file */
      {LLAMA_CFG(", \"rms_norm_eps\": \"small\""),
       STROP_E_FORMAT,
       {"config.json", "'rms_norm_eps'", "not a number", NULL}},
      /* a missing field takes its default, which does not fit: the key is named */
      {"{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": "
       "20, "
       "\"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 1, "
       "\"max_position_embeddings\": 32}",
       STROP_E_FORMAT,
       {"'hidden_size' 16", "'num_attention_heads' 32", "default", NULL}},
      /* sizes the checkpoint does not have */
      {"{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": "
       "21, "
       "\"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 1, "
       "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"max_position_embeddings\": 32}",
       STROP_E_SHAPE,
       {"'vocab_size' is 21", "model.embed_tokens.weight", "20", NULL}},
      {LLAMA_CFG(", \"num_key_value_heads\": 4"), STROP_E_FORMAT, {"duplicate", NULL}},
      /* unsupported options */
      {LLAMA_CFG(", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"),
       STROP_E_UNSUPPORTED,
       {"'rope_scaling.rope_type'", "yarn", "linear", NULL}},
      {LLAMA_CFG(", \"sliding_window\": 8"),
       STROP_E_UNSUPPORTED,
       {"'sliding_window'", "8", "max_length", NULL}},
      {LLAMA_CFG(", \"hidden_act\": \"quick_gelu\""),
       STROP_E_UNSUPPORTED,
       {"'hidden_act'", "quick_gelu", NULL}},
      /* an architecture strop does not know */
      {"{\"architectures\": [\"T5ForConditionalGeneration\"], \"model_type\": \"t5\"}",
       STROP_E_UNSUPPORTED,
       {"T5ForConditionalGeneration", "LlamaForCausalLM", NULL}},
      /* more layers than the file has: the strict load names what is missing */
      {"{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 20, \"hidden_size\": 16, "
       "\"intermediate_size\": 24, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
       "\"num_key_value_heads\": 2, \"max_position_embeddings\": 32}",
       STROP_E_NOT_FOUND,
       {"missing", "model.layers.1.", NULL}},
  };
  char dir[400];
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    snprintf(dir, sizeof dir, "%s/case%zu", g_tmp, k);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    write_text(in_dir(dir, "config.json"), cases[k].config);
    ck_assert_int_eq(link(in_dir(good, "model.safetensors"), in_dir(dir, "model.safetensors")),
                     0);
    m = (strop_model *)1;
    expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), cases[k].st, cases[k].words);
    ck_assert_ptr_null(m);
  }
  /* a config that is not JSON, names the file and the byte */
  snprintf(dir, sizeof dir, "%s/notjson", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"), "{\"model_type\": \"llama\",");
  ck_assert_int_eq(link(in_dir(good, "model.safetensors"), in_dir(dir, "model.safetensors")), 0);
  expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_FORMAT,
         (const char *[]){"config.json", "byte", NULL});
  /* a sharded folder whose index names a shard that is not there */
  snprintf(dir, sizeof dir, "%s/shards", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"), LLAMA_CFG(""));
  ck_assert_int_eq(
      link(in_dir(good, "model.safetensors"), in_dir(dir, "model-00001-of-00002.safetensors")),
      0);
  write_text(in_dir(dir, "model.safetensors.index.json"),
             "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\", "
             "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"}}");
  expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_IO,
         (const char *[]){"shard 'model-00002-of-00002.safetensors'", "missing", NULL});
  /* GPT-2 and BERT configs with bad values, their own keys named */
  snprintf(dir, sizeof dir, "%s/gpt2", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"),
             "{\"architectures\": [\"GPT2LMHeadModel\"], \"n_embd\": 30, \"n_head\": 4}");
  ck_assert_int_eq(link(in_dir(good, "model.safetensors"), in_dir(dir, "model.safetensors")), 0);
  expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_FORMAT,
         (const char *[]){"'n_embd' 30", "'n_head' 4", NULL});
  write_text(in_dir(dir, "config.json"),
             "{\"architectures\": [\"GPT2LMHeadModel\"], \"activation_function\": \"mish\"}");
  expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_UNSUPPORTED,
         (const char *[]){"'activation_function'", "mish", NULL});
  write_text(in_dir(dir, "config.json"),
             "{\"architectures\": [\"BertModel\"], \"position_embedding_type\": "
             "\"relative_key\"}");
  expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_UNSUPPORTED,
         (const char *[]){"'position_embedding_type'", "relative_key", NULL});
  write_text(in_dir(dir, "config.json"),
             "{\"architectures\": [\"GPT2LMHeadModel\"], \"n_layer\": -1}");
  expect(strop_model_load_pretrained(dir, NULL, NULL, &m, NULL), STROP_E_FORMAT,
         (const char *[]){"'n_layer'", "-1", NULL});
  /* a Llama file named as GPT-2: the strict load names the tensors */
  expect(strop_model_load_pretrained(good, "gpt2", NULL, &m, NULL), STROP_E_NOT_FOUND,
         (const char *[]){"missing", "transformer.wte.weight", "unexpected",
                          "model.embed_tokens.weight", NULL});
}
END_TEST

/* Weight tying through the trainer's lazy zeroing (regression: the embedding's backward
 * cleared the stale-marked gradient lm_head had just added into, so a tied embedding learned
 * from its input use only): the tied gradient is the sum of both uses', step after step. */
START_TEST(tied_gradients_through_the_trainer) {
  strop_model *mm[2];
  strop_optimizer *oo[2];
  strop_trainer *tt[2];
  const int64_t shape[1] = {5};
  for (int k = 0; k < 2; k++) {
    strop_test_must(strop_model_create(1, shape, &mm[k]), "create");
    strop_test_must(
        strop_model_add(mm[k], "wte", "embedding", "num_embeddings=7 embedding_dim=4", NULL),
        "wte");
    strop_test_must(strop_model_add(mm[k], "ln", "layernorm", "normalized_shape=4", NULL), "ln");
    strop_test_must(
        strop_model_add(mm[k], "lm_head", "linear", "out_features=7 bias=false", NULL), "head");
    if (k == 0) strop_test_must(strop_model_tie(mm[k], "lm_head.weight", "wte.weight"), "tie");
    strop_test_must(strop_model_finalize(mm[k], 3), "finalize");
    strop_test_must(strop_optimizer_create(mm[k], STROP_OPTIM_SGD, &oo[k]), "optimizer");
    strop_test_must(strop_optimizer_set_double(oo[k], STROP_OPT_LR, 0.0), "lr");
    strop_test_must(strop_trainer_create(mm[k], oo[k], &tt[k]), "trainer");
  }
  float w[28];
  strop_tensor *wv = NULL;
  strop_test_must(strop_model_tensor_view(mm[0], "wte.weight", &wv), "view");
  memcpy(w, strop_tensor_data(wv), sizeof w);
  strop_tensor_free(wv);
  strop_test_must(strop_model_set_tensor(mm[1], "wte.weight", w, 28), "set");
  strop_test_must(strop_model_set_tensor(mm[1], "lm_head.weight", w, 28), "set");
  const int64_t xd[2] = {2, 5};
  strop_tensor *x = NULL;
  strop_test_must(strop_tensor_create(2, xd, &x), "x");
  for (int i = 0; i < 10; i++) strop_tensor_data(x)[i] = (float)((i * 3) % 7);
  for (int step = 0; step < 3; step++) {
    float g[2][28], gh[28];
    for (int k = 0; k < 2; k++) {
      strop_tensor *out = NULL, *dout = NULL;
      strop_test_must(strop_trainer_forward(tt[k], x, &out), "forward");
      strop_test_must(strop_tensor_copy(out, &dout), "copy");
      for (int i = 0; i < 70; i++) strop_tensor_data(dout)[i] = sinf((float)(i + 7 * step));
      strop_test_must(strop_trainer_backward(tt[k], dout), "backward");
      strop_test_must(strop_model_get_grad(mm[k], "wte.weight", g[k], 28), "grad");
      if (k == 1) strop_test_must(strop_model_get_grad(mm[k], "lm_head.weight", gh, 28), "grad");
      strop_test_must(strop_trainer_apply(tt[k]), "apply");
      strop_tensor_free(out);
      strop_tensor_free(dout);
    }
    for (int i = 0; i < 28; i++)
      ck_assert_msg(fabsf(g[0][i] - (g[1][i] + gh[i])) < 1e-5f,
                    "step %d: tied grad[%d] %g, the "
                    "two uses' sum %g",
                    step, i, (double)g[0][i], (double)(g[1][i] + gh[i]));
  }
  strop_tensor_free(x);
  for (int k = 0; k < 2; k++) {
    strop_trainer_free(tt[k]);
    strop_optimizer_free(oo[k]);
    strop_model_free(mm[k]);
  }
}
END_TEST

/* save_pretrained of a model strop made from a folder: LoRA folded in, a new head's labels,
 * the config otherwise as read; and its errors. */
START_TEST(save_pretrained_api) {
  char src[400], dst[400];
  snprintf(src, sizeof src, "%s/src", g_tmp);
  make_folder(
      src, "{\"architectures\": [\"LlamaForSequenceClassification\"], \"model_type\": "
           "\"llama\", \"vocab_size\": 20, \"hidden_size\": 16, \"intermediate_size\": 24, "
           "\"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
           "\"max_position_embeddings\": 32, \"pad_token_id\": 0, \"rope_theta\": 1e4, "
           "\"id2label\": {\"0\": \"neg\", \"1\": \"pos\"}, \"custom\": [1, \"a\\\"b\", null]}");
  strop_model *m = NULL;
  strop_test_must(strop_model_load_pretrained(src, NULL, NULL, &m, NULL), "load");
  /* LoRA on q and v, trained a little (B made non-zero), and a head of 3 classes */
  strop_surgery *sg = NULL;
  strop_test_must(strop_surgery_create(m, &sg), "surgery");
  strop_test_must(strop_surgery_lora(sg, "*.[qv]_proj", 2, 4.0f, 0.0f), "lora");
  strop_test_must(strop_surgery_replace(sg, "score", "linear", "out_features=3 bias=false", 5),
                  "head");
  strop_test_must(strop_surgery_apply(sg), "apply");
  strop_surgery_free(sg);
  strop_tensor *b = NULL;
  strop_test_must(strop_model_tensor_view(m, "model.layers.0.self_attn.v_proj.lora_B.weight", &b),
                  "B");
  for (int64_t i = 0; i < strop_tensor_numel(b); i++)
    strop_tensor_data(b)[i] = 0.01f * (float)(i % 7);
  strop_tensor_free(b);
  snprintf(dst, sizeof dst, "%s/out/nested", g_tmp);
  strop_test_must(strop_model_save_pretrained(m, dst), "save");
  strop_model *back = NULL;
  strop_load_report *r = NULL;
  strop_test_must(strop_model_load_pretrained(dst, NULL, NULL, &back, &r), "reload");
  ck_assert_int_eq(strop_load_report_count(r, STROP_REPORT_UNEXPECTED), 0);
  strop_load_report_free(r);
  const int64_t xd[2] = {2, 6}, md[2] = {2, 6};
  strop_tensor *x = NULL, *mk = NULL, *o1 = NULL, *o2 = NULL;
  strop_test_must(strop_tensor_create(2, xd, &x), "x");
  strop_test_must(strop_tensor_create(2, md, &mk), "mask");
  for (int i = 0; i < 12; i++) {
    strop_tensor_data(x)[i] = i % 6 < 4 + i / 6 ? (float)(1 + i % 19) : 0.0f;
    strop_tensor_data(mk)[i] = i % 6 < 4 + i / 6 ? 1.0f : 0.0f;
  }
  strop_test_must(strop_model_forward_masked(m, x, mk, &o1), "adapted");
  strop_test_must(strop_model_forward_masked(back, x, mk, &o2), "merged file");
  ck_assert_int_eq(strop_tensor_numel(o2), 6);
  for (int i = 0; i < 6; i++)
    ck_assert_msg(fabsf(strop_tensor_data(o1)[i] - strop_tensor_data(o2)[i]) < 1e-5f,
                  "[%d] %g vs %g", i, (double)strop_tensor_data(o1)[i],
                  (double)strop_tensor_data(o2)[i]);
  /* the config: labels for 3 classes, float32, the rest as it was */
  size_t len = 0;
  char *cfg = strop_test_read_file(in_dir(dst, "config.json"), &len);
  ck_assert_ptr_nonnull(cfg);
  ck_assert_msg(strstr(cfg, "\"LABEL_2\": 2") && strstr(cfg, "\"torch_dtype\": \"float32\"") &&
                    strstr(cfg, "\"a\\\"b\"") && !strstr(cfg, "\"neg\""),
                "%s", cfg);
  free(cfg);
  /* errors: the model is left as it was */
  const int64_t n_before = strop_model_num_tensors(m);
  ck_assert_int_eq(strop_model_save_pretrained(NULL, dst), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_save_pretrained(m, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_model_save_pretrained(m, ""), STROP_E_INVALID_ARG);
  ck_assert_int_ne(strlen(strop_last_error()), 0);
  /* a folder that cannot be made: a file is in the way */
  char blocked[600];
  snprintf(blocked, sizeof blocked, "%s/config.json/sub", dst);
  ck_assert_int_eq(strop_model_save_pretrained(m, blocked), STROP_E_IO);
  ck_assert(strstr(strop_last_error(), "config.json"));
  ck_assert_int_eq(strop_model_num_tensors(m), n_before);
  /* a model that did not come from a folder */
  const int64_t shape[1] = {4};
  strop_model *plain = NULL;
  strop_test_must(strop_model_create(1, shape, &plain), "create");
  strop_test_must(strop_model_add(plain, "fc", "linear", "out_features=2", NULL), "fc");
  strop_test_must(strop_model_finalize(plain, 1), "finalize");
  ck_assert_int_eq(strop_model_save_pretrained(plain, dst), STROP_E_STATE);
  ck_assert(strstr(strop_last_error(), "pretrained.config"));
  strop_model_free(plain);
  strop_tensor_free(x);
  strop_tensor_free(mk);
  strop_tensor_free(o1);
  strop_tensor_free(o2);
  strop_model_free(back);
  strop_model_free(m);
}
END_TEST

static int has_param(const strop_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i]->name, name)) return 1;
  return 0;
}

/* strop_model_add_classifier_head without PyTorch: the nodes and names it makes per family,
 * the architecture save_pretrained then writes, and its errors (the model unchanged). */
START_TEST(classifier_head_api) {
  char lm[400], bert[400], out[400];
  snprintf(lm, sizeof lm, "%s/lm", g_tmp);
  snprintf(bert, sizeof bert, "%s/bert", g_tmp);
  make_folder(lm, LLAMA_CFG(""));
  make_folder(
      bert, "{\"architectures\": [\"BertForSequenceClassification\"], \"model_type\": \"bert\", "
            "\"vocab_size\": 20, \"hidden_size\": 16, \"num_hidden_layers\": 1, "
            "\"num_attention_heads\": 2, \"intermediate_size\": 24, "
            "\"max_position_embeddings\": 16, \"hidden_dropout_prob\": 0.0}");
  strop_model *m = NULL;
  strop_test_must(strop_model_load_pretrained(lm, NULL, NULL, &m, NULL), "load");
  char before[4096], after[4096], name[128];
  ck_assert_int_gt(strop_model_summary(m, before, sizeof before), 0);
  const char *const bad_pool[] = {"strop_model_add_classifier_head", "'first'", "cls", NULL};
  expect(strop_model_add_classifier_head(m, "first", 2, 0.0f, 1), STROP_E_INVALID_ARG, bad_pool);
  const char *const bad_classes[] = {"classes 0", NULL};
  expect(strop_model_add_classifier_head(m, NULL, 0, 0.0f, 1), STROP_E_INVALID_ARG, bad_classes);
  const char *const bad_p[] = {"dropout 1", NULL};
  expect(strop_model_add_classifier_head(m, NULL, 2, 1.0f, 1), STROP_E_INVALID_ARG, bad_p);
  const char *const null_m[] = {"model is NULL", NULL};
  expect(strop_model_add_classifier_head(NULL, NULL, 2, 0.0f, 1), STROP_E_INVALID_ARG, null_m);
  ck_assert_int_gt(strop_model_summary(m, after, sizeof after), 0);
  ck_assert_str_eq(before, after);
  /* Llama: last token, a bias-free `score`; the model becomes LlamaForSequenceClassification */
  strop_test_must(strop_model_add_classifier_head(m, NULL, 4, 0.1f, 1), "head");
  const int64_t nn = strop_model_num_nodes(m);
  const char *const want[] = {"score", "dropout", "pool"};
  for (int k = 0; k < 3; k++) {
    ck_assert_int_ge(strop_model_node_name(m, nn - 1 - k, name, sizeof name), 0);
    ck_assert_str_eq(name, want[k]);
  }
  ck_assert(!has_param(m, "score.bias"));
  ck_assert(has_param(m, "score.weight"));
  ck_assert(!has_param(m, "lm_head.weight"));
  ck_assert_int_gt(strop_model_get_meta(m, "pretrained.arch", name, sizeof name), 0);
  ck_assert_str_eq(name, "llama_cls");
  /* PEFT's modules_to_save: LoRA adapters saved with the head, applied to base + head */
  ck_assert_int_gt(strop_model_get_meta(m, "lora.modules_to_save", name, sizeof name), 0);
  ck_assert_str_eq(name, "[\"score\"]");
  {
    strop_surgery *sg = NULL;
    strop_test_must(strop_surgery_create(m, &sg), "surgery");
    strop_test_must(strop_surgery_lora(sg, "*.q_proj", 2, 4.0f, 0.0f), "lora");
    strop_test_must(strop_surgery_apply(sg), "apply");
    strop_surgery_free(sg);
    float w[64];
    for (int i = 0; i < 64; i++) w[i] = 0.01f * (float)i;
    strop_test_must(strop_model_set_tensor(m, "score.weight", w, 64), "score");
    snprintf(out, sizeof out, "%s/peft", g_tmp);
    strop_test_must(strop_model_lora_save(m, out), "lora_save");
    strop_model *base = NULL;
    strop_test_must(strop_model_load_pretrained(lm, NULL, NULL, &base, NULL), "base");
    strop_test_must(strop_model_add_classifier_head(base, NULL, 4, 0.1f, 9), "base head");
    strop_test_must(strop_model_lora_load(base, out), "lora_load");
    strop_tensor *got = NULL;
    strop_test_must(strop_model_tensor_view(base, "score.weight", &got), "view");
    ck_assert_mem_eq(strop_tensor_data(got), w, sizeof w);
    strop_tensor_free(got);
    strop_model_free(base);
    strop_test_must(strop_model_lora_merge(m), "merge");
  }
  snprintf(out, sizeof out, "%s/lm_cls", g_tmp);
  strop_test_must(strop_model_save_pretrained(m, out), "save");
  FILE *f = fopen(in_dir(out, "config.json"), "r");
  ck_assert_ptr_nonnull(f);
  char cfg[4096] = "";
  ck_assert_uint_gt(fread(cfg, 1, sizeof cfg - 1, f), 0);
  fclose(f);
  ck_assert_msg(strstr(cfg, "\"LlamaForSequenceClassification\""), "%s", cfg);
  ck_assert_msg(strstr(cfg, "\"LABEL_3\": 3"), "%s", cfg);
  strop_model *back = NULL;
  strop_test_must(strop_model_load_pretrained(out, NULL, NULL, &back, NULL), "reload");
  int64_t dims[4];
  ck_assert_int_eq(strop_model_output_shape(back, dims, 4), 1);
  ck_assert_int_eq(dims[0], 4);
  strop_model_free(back);
  /* mean pooling: no Hugging Face class, so no folder */
  strop_test_must(strop_model_add_classifier_head(m, "mean", 2, 0.0f, 1), "mean head");
  const char *const no_class[] = {"'mean'", "strop_model_save_weights", NULL};
  expect(strop_model_save_pretrained(m, out), STROP_E_UNSUPPORTED, no_class);
  strop_model_free(m);
  /* BERT: [CLS] through the pooler, then `classifier` with a bias */
  strop_test_must(strop_model_load_pretrained(bert, NULL, NULL, &m, NULL), "bert");
  strop_test_must(strop_model_add_classifier_head(m, "cls", 3, 0.0f, 1), "bert head");
  ck_assert(has_param(m, "bert.pooler.dense.weight"));
  ck_assert(has_param(m, "classifier.bias"));
  strop_model_free(m);
  strop_test_must(strop_model_load_pretrained(bert, NULL, NULL, &m, NULL), "bert");
  strop_test_must(strop_model_add_classifier_head(m, "mean", 3, 0.0f, 1), "bert mean head");
  ck_assert(!has_param(m, "bert.pooler.dense.weight"));
  strop_model_free(m);
  /* a model without a token sequence */
  const int64_t shape[1] = {4};
  strop_test_must(strop_model_create(1, shape, &m), "create");
  strop_test_must(strop_model_add(m, "fc", "linear", "out_features=2", NULL), "fc");
  strop_test_must(strop_model_finalize(m, 1), "finalize");
  const char *const unsupported[] = {"strop_model_load_pretrained", NULL};
  expect(strop_model_add_classifier_head(m, NULL, 2, 0.0f, 1), STROP_E_UNSUPPORTED, unsupported);
  strop_model_free(m);
}
END_TEST

/* ---- fresh weights drawn from config.json (STROP_LOAD_FRESH, lib/pretrained/init.c) ---- */

static strop__param *param_named(strop_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i]->name, name)) return m->params[i];
  ck_abort_msg("no parameter %s", name);
  return NULL;
}

/* mean 0 and standard deviation sd within sampling tolerance (5 standard errors) */
static void assert_normal(const strop__param *p, double sd) {
  double s1 = 0, s2 = 0;
  const double n = (double)p->numel;
  for (size_t i = 0; i < p->numel; i++) {
    s1 += p->data[i];
    s2 += (double)p->data[i] * p->data[i];
  }
  const double mean = s1 / n, std = sqrt(s2 / n - mean * mean);
  ck_assert_msg(fabs(mean) < 5 * sd / sqrt(n), "%s: mean %g (std %g)", p->name, mean, sd);
  ck_assert_msg(fabs(std / sd - 1) < 5 / sqrt(2 * n), "%s: std %g, want %g", p->name, std, sd);
}

static void assert_constant(const strop__param *p, float v) {
  for (size_t i = 0; i < p->numel; i++)
    ck_assert_msg(p->data[i] == v, "%s[%zu] = %g, want %g", p->name, i, (double)p->data[i],
                  (double)v);
}

static strop_model *load_fresh(const char *dir, uint64_t seed) {
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = STROP_LOAD_FRESH;
  o.seed = seed;
  strop_model *m = NULL;
  strop_load_report *r = (strop_load_report *)&o; /* must come back NULL: nothing was read */
  strop_test_must(strop_model_load_pretrained(dir, NULL, &o, &m, &r), dir);
  ck_assert_ptr_null(r);
  return m;
}

#define GPT2_FRESH_CFG(EXTRA)                                                                  \
  "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"vocab_size\": 300, " \
  "\"n_positions\": 64, \"n_embd\": 48, \"n_layer\": 3, \"n_head\": 4" EXTRA "}"

START_TEST(fresh_gpt2) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/gpt2", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"), GPT2_FRESH_CFG(", \"initializer_range\": 0.05"));
  strop_model *m = load_fresh(dir, 7);
  const double r = 0.05, proj = 0.05 / sqrt(2.0 * 3);
  assert_normal(param_named(m, "transformer.wte.weight"), r);
  assert_normal(param_named(m, "transformer.wpe.weight"), r);
  char n[120];
  for (int i = 0; i < 3; i++) {
    static const char *const normal[] = {"attn.c_attn", "mlp.c_fc"}, *const scaled[] = {
                                                                         "attn.c_proj",
                                                                         "mlp.c_proj"};
    for (int k = 0; k < 2; k++) {
      snprintf(n, sizeof n, "transformer.h.%d.%s.weight", i, normal[k]);
      assert_normal(param_named(m, n), r);
      snprintf(n, sizeof n, "transformer.h.%d.%s.weight", i, scaled[k]);
      assert_normal(param_named(m, n), proj);
      snprintf(n, sizeof n, "transformer.h.%d.%s.bias", i, normal[k]);
      assert_constant(param_named(m, n), 0);
      snprintf(n, sizeof n, "transformer.h.%d.%s.bias", i, scaled[k]);
      assert_constant(param_named(m, n), 0);
    }
    static const char *const ln[] = {"ln_1", "ln_2"};
    for (int k = 0; k < 2; k++) {
      snprintf(n, sizeof n, "transformer.h.%d.%s.weight", i, ln[k]);
      assert_constant(param_named(m, n), 1);
      snprintf(n, sizeof n, "transformer.h.%d.%s.bias", i, ln[k]);
      assert_constant(param_named(m, n), 0);
    }
  }
  assert_constant(param_named(m, "transformer.ln_f.weight"), 1);
  assert_constant(param_named(m, "transformer.ln_f.bias"), 0);
  /* the same seed draws the same bits; another seed other ones */
  strop_model *same = load_fresh(dir, 7), *other = load_fresh(dir, 8);
  ck_assert_int_eq(same->n_params, m->n_params);
  for (int i = 0; i < m->n_params; i++)
    ck_assert_msg(
        !memcmp(m->params[i]->data, same->params[i]->data, m->params[i]->numel * sizeof(float)),
        "%s differs with the same seed", m->params[i]->name);
  ck_assert(memcmp(param_named(m, "transformer.wte.weight")->data,
                   param_named(other, "transformer.wte.weight")->data, 300 * 48 * sizeof(float)));
  strop_model_free(same);
  strop_model_free(other);
  /* initializer_range absent: transformers' default 0.02; the model trains and saves back */
  strop_model_free(m);
  snprintf(dir, sizeof dir, "%s/gpt2d", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"),
             GPT2_FRESH_CFG(", \"attn_pdrop\": 0.0, \"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0, "
                            "\"layer_norm_epsilon\": 1e-05, \"activation_function\": "
                            "\"gelu_new\""));
  m = load_fresh(dir, 1);
  assert_normal(param_named(m, "transformer.wte.weight"), 0.02);
  assert_normal(param_named(m, "transformer.h.2.mlp.c_proj.weight"), 0.02 / sqrt(6.0));
  char saved[400];
  snprintf(saved, sizeof saved, "%s/gpt2d.saved", g_tmp);
  strop_test_must(strop_model_save_pretrained(m, saved), "save_pretrained");
  strop_model *back = load_hf(g_tmp, "gpt2d.saved", NULL);
  ck_assert(!memcmp(param_named(m, "transformer.h.0.attn.c_attn.weight")->data,
                    param_named(back, "transformer.h.0.attn.c_attn.weight")->data,
                    48 * 144 * sizeof(float)));
  strop_model_free(back);
  if (fixtures()) { /* for run_transformers.py: PyTorch loads it with strict names */
    snprintf(saved, sizeof saved, "%s/fresh_gpt2", fixtures());
    strop_test_must(strop_model_save_pretrained(m, saved), "save_pretrained for PyTorch");
  }
  strop_model_free(m);
}
END_TEST

START_TEST(fresh_llama_bert) {
  char dir[400];
  /* Llama: embed_tokens' padding row (pad_token_id) zero, RMSNorm 1, lm_head untied N(0, r) */
  snprintf(dir, sizeof dir, "%s/llama", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"),
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
             "\"vocab_size\": 200, \"hidden_size\": 32, \"intermediate_size\": 64, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
             "\"max_position_embeddings\": 32, \"pad_token_id\": 3, \"tie_word_embeddings\": "
             "false, \"initializer_range\": 0.03, \"rms_norm_eps\": 1e-06}");
  strop_model *m = load_fresh(dir, 2);
  strop__param *e = param_named(m, "model.embed_tokens.weight");
  for (int j = 0; j < 32; j++) ck_assert_float_eq(e->data[3 * 32 + j], 0.0f);
  ck_assert_float_ne(e->data[2 * 32], 0.0f);
  assert_normal(e, 0.03);
  assert_normal(param_named(m, "lm_head.weight"), 0.03);
  assert_normal(param_named(m, "model.layers.1.self_attn.o_proj.weight"), 0.03);
  assert_normal(param_named(m, "model.layers.0.mlp.down_proj.weight"), 0.03);
  assert_normal(param_named(m, "model.layers.0.mlp.gate_proj.weight"), 0.03);
  assert_constant(param_named(m, "model.layers.0.input_layernorm.weight"), 1);
  assert_constant(param_named(m, "model.norm.weight"), 1);
  if (fixtures()) {
    char saved[400];
    snprintf(saved, sizeof saved, "%s/fresh_llama", fixtures());
    strop_test_must(strop_model_save_pretrained(m, saved), "save_pretrained for PyTorch");
  }
  strop_model_free(m);
  /* RoBERTa: pad_token_id (default 1) zeroes a row of the word and the position embeddings */
  snprintf(dir, sizeof dir, "%s/roberta", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"),
             "{\"architectures\": [\"RobertaForSequenceClassification\"], \"model_type\": "
             "\"roberta\", \"vocab_size\": 100, \"hidden_size\": 32, \"num_hidden_layers\": 1, "
             "\"num_attention_heads\": 4, \"intermediate_size\": 64, "
             "\"max_position_embeddings\": 40, \"type_vocab_size\": 1, \"num_labels\": 3}");
  m = load_fresh(dir, 3);
  static const char *const padded[] = {"roberta.embeddings.word_embeddings.weight",
                                       "roberta.embeddings.position_embeddings.weight"};
  for (int k = 0; k < 2; k++) {
    e = param_named(m, padded[k]);
    for (int j = 0; j < 32; j++) ck_assert_float_eq(e->data[1 * 32 + j], 0.0f);
    ck_assert_float_ne(e->data[0], 0.0f);
  }
  assert_normal(param_named(m, "roberta.embeddings.word_embeddings.weight"), 0.02);
  assert_normal(param_named(m, "classifier.out_proj.weight"), 0.02);
  assert_constant(param_named(m, "classifier.out_proj.bias"), 0);
  assert_constant(param_named(m, "roberta.embeddings.LayerNorm.weight"), 1);
  assert_constant(param_named(m, "roberta.encoder.layer.0.output.LayerNorm.bias"), 0);
  strop_model_free(m);
}
END_TEST

/* A LoRA on GPT-2's lm_head trains the output side alone, but its weight is the token
 * embedding: merging (save_pretrained folds adapters in) would change the embedding too, so the
 * merged model would not be the trained one. Refused, nothing changed (it merged before). */
START_TEST(lora_on_tied_head_is_not_merged) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/gpt2t", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"), GPT2_FRESH_CFG(""));
  strop_model *m = load_fresh(dir, 5);
  strop_surgery *s = NULL;
  strop_test_must(strop_surgery_create(m, &s), "surgery");
  strop_test_must(strop_surgery_lora(s, "lm_head", 4, 8.0f, 0.0f), "lora");
  strop_test_must(strop_surgery_apply(s), "apply");
  strop_surgery_free(s);
  strop__param *b = param_named(m, "lm_head.lora_B.weight");
  for (size_t i = 0; i < b->numel; i++) b->data[i] = 0.01f; /* a trained adapter */
  strop__param *wte = param_named(m, "transformer.wte.weight");
  float *before = malloc(wte->numel * sizeof *before);
  memcpy(before, wte->data, wte->numel * sizeof *before);
  const char *const tied[] = {"'lm_head'", "'lm_head.weight'", "'transformer.wte.weight'",
                              "nothing merged", NULL};
  expect(strop_model_lora_merge(m), STROP_E_UNSUPPORTED, tied);
  ck_assert(!memcmp(before, wte->data, wte->numel * sizeof *before));
  char saved[400];
  snprintf(saved, sizeof saved, "%s/gpt2t.saved", g_tmp);
  const char *const tied_save[] = {"'transformer.wte.weight'", NULL};
  expect(strop_model_save_pretrained(m, saved), STROP_E_UNSUPPORTED, tied_save);
  ck_assert(!memcmp(before, wte->data, wte->numel * sizeof *before));
  free(before);
  strop_model_free(m);
}
END_TEST

/* transformer_encoder's num_layers stops at 1024 (the graph finds nodes by name in a list: a
 * spec of 100000 layers took hours to build) */
START_TEST(encoder_layer_cap) {
  const int64_t shape[2] = {4, 8};
  strop_model *m = NULL;
  strop_test_must(strop_model_create(2, shape, &m), "create");
  ck_assert_int_eq(strop_model_add(m, "enc", "transformer_encoder",
                                   "num_layers=1025 d_model=8 nhead=2 dim_feedforward=8", NULL),
                   STROP_E_INVALID_ARG);
  ck_assert_msg(strstr(strop_last_error(), "num_layers") && strstr(strop_last_error(), "1024"),
                "%s", strop_last_error());
  strop_test_must(strop_model_add(m, "enc", "transformer_encoder",
                                  "num_layers=3 d_model=8 nhead=2 dim_feedforward=8", NULL),
                  "three layers");
  strop_model_free(m);
}
END_TEST

START_TEST(fresh_errors) {
  char dir[400], cfg_only[400];
  /* a folder with config.json and no weights: the error names the option that draws them */
  snprintf(cfg_only, sizeof cfg_only, "%s/cfg_only", g_tmp);
  ck_assert_int_eq(mkdir(cfg_only, 0755), 0);
  write_text(in_dir(cfg_only, "config.json"), GPT2_FRESH_CFG(""));
  strop_model *m = (strop_model *)&dir; /* set to NULL on every error */
  const char *const no_weights[] = {"neither model.safetensors", "STROP_LOAD_FRESH", NULL};
  expect(strop_model_load_pretrained(cfg_only, NULL, NULL, &m, NULL), STROP_E_IO, no_weights);
  ck_assert_ptr_null(m);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  /* with what reads weights */
  const char *const partial[] = {"STROP_LOAD_FRESH", "STROP_LOAD_PARTIAL", NULL};
  o.flags = STROP_LOAD_FRESH | STROP_LOAD_PARTIAL;
  expect(strop_model_load_pretrained(cfg_only, NULL, &o, &m, NULL), STROP_E_INVALID_ARG, partial);
  const char *const mmap_[] = {"STROP_LOAD_MMAP", NULL};
  o.flags = STROP_LOAD_FRESH | STROP_LOAD_MMAP;
  expect(strop_model_load_pretrained(cfg_only, NULL, &o, &m, NULL), STROP_E_INVALID_ARG, mmap_);
  ck_assert_ptr_null(m);
  /* no config.json to draw from; a file instead of a folder */
  o.flags = STROP_LOAD_FRESH;
  snprintf(dir, sizeof dir, "%s/empty", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  const char *const no_cfg[] = {"no config.json", "STROP_LOAD_FRESH", NULL};
  expect(strop_model_load_pretrained(dir, NULL, &o, &m, NULL), STROP_E_IO, no_cfg);
  const char *const file[] = {"is a file", NULL};
  expect(strop_model_load_pretrained(in_dir(cfg_only, "config.json"), "gpt2", &o, &m, NULL),
         STROP_E_INVALID_ARG, file);
  /* an architecture without a Hugging Face initialisation */
  const char *const no_init[] = {"resnet18", "no Hugging Face initialisation", NULL};
  expect(strop_model_load_pretrained(cfg_only, "resnet18", &o, &m, NULL), STROP_E_UNSUPPORTED,
         no_init);
  /* a padding row the embedding does not have */
  snprintf(dir, sizeof dir, "%s/badpad", g_tmp);
  ck_assert_int_eq(mkdir(dir, 0755), 0);
  write_text(in_dir(dir, "config.json"), LLAMA_CFG(", \"pad_token_id\": 20"));
  const char *const bad_pad[] = {"'pad_token_id' 20", "model.embed_tokens.weight", NULL};
  expect(strop_model_load_pretrained(dir, NULL, &o, &m, NULL), STROP_E_FORMAT, bad_pad);
  ck_assert_ptr_null(m);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("transformers");
  TCase *tc = tcase_create("api");
  tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
  tcase_add_test(tc, arch_list);
  tcase_add_test(tc, broken_folders);
  tcase_add_test(tc, tied_gradients_through_the_trainer);
  tcase_add_test(tc, save_pretrained_api);
  tcase_add_test(tc, classifier_head_api);
  suite_add_tcase(s, tc);
  tc = tcase_create("fresh");
  tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
  tcase_add_test(tc, fresh_gpt2);
  tcase_add_test(tc, fresh_llama_bert);
  tcase_add_test(tc, fresh_errors);
  tcase_add_test(tc, encoder_layer_cap);
  tcase_add_test(tc, lora_on_tied_head_is_not_merged);
  suite_add_tcase(s, tc);
  if (!fixtures()) return s;
  tc = tcase_create("torchnn");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, torchnn_post_norm);
  tcase_add_test(tc, torchnn_pre_norm);
  suite_add_tcase(s, tc);
  tc = tcase_create("gpt2");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, gpt2_lm);
  tcase_add_test(tc, gpt2_cls);
  suite_add_tcase(s, tc);
  tc = tcase_create("llama");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, llama_lm);
  tcase_add_test(tc, qwen2_lm);
  tcase_add_test(tc, mistral_lm);
  tcase_add_test(tc, llama_cls);
  suite_add_tcase(s, tc);
  tc = tcase_create("bert");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, bert_base);
  tcase_add_test(tc, bert_cls);
  tcase_add_test(tc, bert_pair);
  tcase_add_test(tc, roberta_cls);
  tcase_add_test(tc, distilbert_cls);
  suite_add_tcase(s, tc);
  tc = tcase_create("classifier_heads");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, head_gpt2_last_left);
  tcase_add_test(tc, head_gpt2_last_right);
  tcase_add_test(tc, head_llama_last_left);
  tcase_add_test(tc, head_bert_mean);
  tcase_add_test(tc, head_gpt2_mean_left);
  suite_add_tcase(s, tc);
  tc = tcase_create("vit");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, vit);
  tcase_add_test(tc, vit_other_size);
  tcase_add_test(tc, vit_size_not_multiple);
  suite_add_tcase(s, tc);
  tc = tcase_create("forms");
  tcase_add_test(tc, forms);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  return strop_test_run(suite());
}
