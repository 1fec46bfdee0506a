/* SPDX-License-Identifier: MIT */
/* strop — generation suite: the key/value cache's incremental steps against full forwards
 * (GPT-2- and Llama-shaped graphs: learned positions, packed q|k|v, rotary with linear
 * scaling, grouped-query heads), strop_generate against loops over full forwards (greedy,
 * repetition penalty), seeded sampling, stop ids and strings, the callback, bad arguments;
 * and, with STROP_GEN_FIXTURES set by tests/pretrained/run_generate.py, the ids of PyTorch's
 * greedy loops over the same Hugging Face folders. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "graph/graph.h"
#include "testutil.h"

enum { T = 24, V = 300, D = 32 };

/* GPT-2's graph (as lib/pretrained/gpt2.c builds it): learned positions, packed c_attn */
static strop_model *gpt2_like(uint64_t seed) {
  static const strop_test_node nodes[] = {
      {"wte", "embedding", "num_embeddings=300 embedding_dim=32", "input"},
      {"wpe", "positional_embedding", "num_embeddings=24", NULL},
      {"h0.ln_1", "layernorm", "normalized_shape=32", NULL},
      {"h0.c_attn", "linear", "out_features=96", NULL},
      {"h0.attn", "attention", "num_heads=4 causal=true", NULL},
      {"h0.c_proj", "linear", "out_features=32", NULL},
      {"h0.add_1", "add", NULL, "wpe,h0.c_proj"},
      {"h0.ln_2", "layernorm", "normalized_shape=32", NULL},
      {"h0.fc", "linear", "out_features=64", NULL},
      {"h0.act", "gelu", "approximate=tanh", NULL},
      {"h0.proj", "linear", "out_features=32", NULL},
      {"h0.add_2", "add", NULL, "h0.add_1,h0.proj"},
      {"h1.ln_1", "layernorm", "normalized_shape=32", NULL},
      {"h1.c_attn", "linear", "out_features=96", NULL},
      {"h1.attn", "attention", "num_heads=4 causal=true", NULL},
      {"h1.c_proj", "linear", "out_features=32", NULL},
      {"h1.add_1", "add", NULL, "h0.add_2,h1.c_proj"},
      {"h1.ln_2", "layernorm", "normalized_shape=32", NULL},
      {"h1.fc", "linear", "out_features=64", NULL},
      {"h1.act", "gelu", "approximate=tanh", NULL},
      {"h1.proj", "linear", "out_features=32", NULL},
      {"h1.add_2", "add", NULL, "h1.add_1,h1.proj"},
      {"ln_f", "layernorm", "normalized_shape=32", NULL},
      {"lm_head", "linear", "out_features=300 bias=false", NULL},
  };
  const int64_t shape[1] = {T};
  return strop_test_build(1, shape, nodes, (int)(sizeof nodes / sizeof nodes[0]), seed);
}

/* Llama's graph (lib/pretrained/llama.c): RMSNorm, separate q, k, v with 2 key/value heads
 * for 4 query heads, rotary embeddings with rope_theta and linear scaling, gated MLP */
static strop_model *llama_like(uint64_t seed) {
  static const char *const ATT = "num_heads=4 num_kv_heads=2 head_dim=8 causal=true "
                                 "rope=rotate_half rope_theta=500000 rope_factor=2";
  const strop_test_node nodes[] = {
      {"embed", "embedding", "num_embeddings=300 embedding_dim=32", "input"},
      {"l0.norm1", "rmsnorm", "normalized_shape=32", NULL},
      {"l0.q", "linear", "out_features=32 bias=false", "l0.norm1"},
      {"l0.k", "linear", "out_features=16 bias=false", "l0.norm1"},
      {"l0.v", "linear", "out_features=16 bias=false", "l0.norm1"},
      {"l0.attn", "attention", ATT, "l0.q,l0.k,l0.v"},
      {"l0.o", "linear", "out_features=32 bias=false", NULL},
      {"l0.add_1", "add", NULL, "embed,l0.o"},
      {"l0.norm2", "rmsnorm", "normalized_shape=32", NULL},
      {"l0.mlp", "gated_mlp", "intermediate_size=48 bias=false activation=silu", NULL},
      {"l0.add_2", "add", NULL, "l0.add_1,l0.mlp"},
      {"l1.norm1", "rmsnorm", "normalized_shape=32", NULL},
      {"l1.q", "linear", "out_features=32 bias=false", "l1.norm1"},
      {"l1.k", "linear", "out_features=16 bias=false", "l1.norm1"},
      {"l1.v", "linear", "out_features=16 bias=false", "l1.norm1"},
      {"l1.attn", "attention", ATT, "l1.q,l1.k,l1.v"},
      {"l1.o", "linear", "out_features=32 bias=false", NULL},
      {"l1.add_1", "add", NULL, "l0.add_2,l1.o"},
      {"l1.norm2", "rmsnorm", "normalized_shape=32", NULL},
      {"l1.mlp", "gated_mlp", "intermediate_size=48 bias=false activation=silu", NULL},
      {"l1.add_2", "add", NULL, "l1.add_1,l1.mlp"},
      {"norm", "rmsnorm", "normalized_shape=32", NULL},
      {"lm_head", "linear", "out_features=300 bias=false", NULL},
  };
  const int64_t shape[1] = {T};
  return strop_test_build(1, shape, nodes, (int)(sizeof nodes / sizeof nodes[0]), seed);
}

/* logits [n, V] of a full forward over ids[0..n) (eval mode) */
static float *full_logits(strop_model *m, const int64_t *ids, int64_t n, int64_t vocab) {
  int64_t dims[2] = {1, n};
  strop_tensor *in = NULL, *out = NULL;
  strop_test_must(strop_tensor_create(2, dims, &in), "input");
  for (int64_t i = 0; i < n; i++) strop_tensor_data(in)[i] = (float)ids[i];
  strop_test_must(strop_model_forward(m, in, &out), "full forward");
  ck_assert_int_eq(strop_tensor_numel(out), n * vocab);
  float *l = malloc((size_t)(n * vocab) * sizeof *l);
  memcpy(l, strop_tensor_data(out), (size_t)(n * vocab) * sizeof *l);
  strop_tensor_free(in);
  strop_tensor_free(out);
  return l;
}

static void random_ids(int64_t *ids, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    ids[i] = (int64_t)((seed >> 33) % V);
  }
}

/* Runs ids[0..n) as incremental steps of the lengths in steps[] (their sum is n) and checks
 * each step's logits against the rows of one full forward; returns the worst relative error
 * (to the largest logit). */
static double incremental_vs_full(strop_model *m, const int64_t *steps, int n_steps) {
  int64_t n = 0;
  for (int i = 0; i < n_steps; i++) n += steps[i];
  int64_t ids[T];
  random_ids(ids, n, 7);
  float *full = full_logits(m, ids, n, V);
  int n_attn = 0;
  for (int i = 0; i < m->n_nodes; i++) n_attn += !strcmp(m->nodes[i].vt->type, "attention");
  strop__decode dec = {
      .pos = 0, .cap = n, .kv = calloc((size_t)n_attn, sizeof *dec.kv), .n_kv = n_attn};
  for (int i = 0, k = 0; i < m->n_nodes; i++)
    if (!strcmp(m->nodes[i].vt->type, "attention")) dec.kv[k++].node = &m->nodes[i];
  double worst = 0;
  for (int s = 0; s < n_steps; s++) {
    float in[T];
    for (int64_t i = 0; i < steps[s]; i++) in[i] = (float)ids[dec.pos + i];
    const strop__shape shape = {1, {steps[s]}};
    const strop__act *o = NULL;
    m->decode = &dec;
    strop_test_must(strop__model_forward_shaped(m, in, 1, &shape, 0, NULL, &o), "step");
    m->decode = NULL;
    ck_assert_int_eq(o->shape.d[0], steps[s]);
    double e = strop_test_max_rel(o->data, full + dec.pos * V, (size_t)(steps[s] * V), 1.0, NULL);
    if (e > worst) worst = e;
    strop__model_step_end(m);
    dec.pos += steps[s];
  }
  for (int i = 0; i < n_attn; i++) {
    strop__free(dec.kv[i].k);
    strop__free(dec.kv[i].v);
  }
  free(dec.kv);
  free(full);
  return worst;
}

/* ---- cache: incremental steps equal full forwards ---- */

/* float32 sums in another order: 1e-5 of the largest logit */
#define STEP_TOL 1e-5

START_TEST(cache_gpt2) {
  strop_model *m = gpt2_like(1);
  const int64_t steps[] = {5, 1, 1, 2, 1, 3, 1};
  double e = incremental_vs_full(m, steps, 7);
  ck_assert_msg(e < STEP_TOL, "GPT-2-shaped: incremental logits differ by %g", e);
  /* the whole context, one position at a time after a one-token prompt */
  int64_t ones[T];
  for (int i = 0; i < T; i++) ones[i] = 1;
  e = incremental_vs_full(m, ones, T);
  ck_assert_msg(e < STEP_TOL, "GPT-2-shaped, token by token: %g", e);
  strop_model_free(m);
}
END_TEST

START_TEST(cache_llama) {
  strop_model *m = llama_like(2);
  const int64_t steps[] = {4, 1, 1, 1, 2, 1, 1, 5};
  double e = incremental_vs_full(m, steps, 8);
  ck_assert_msg(e < STEP_TOL, "Llama-shaped (GQA, rotary): incremental logits differ by %g", e);
  int64_t ones[T];
  for (int i = 0; i < T; i++) ones[i] = 1;
  e = incremental_vs_full(m, ones, T);
  ck_assert_msg(e < STEP_TOL, "Llama-shaped, token by token: %g", e);
  strop_model_free(m);
}
END_TEST

/* ---- strop_generate against loops over full forwards ---- */

/* the next ids by a greedy loop that re-runs the growing prefix, with Hugging Face's
 * repetition penalty */
static void greedy_reference(strop_model *m, const int64_t *prompt, int64_t np, int64_t want,
                             float penalty, int64_t *out) {
  int64_t seq[T + 1]; /* the last new id is stored, never fed */
  memcpy(seq, prompt, (size_t)np * sizeof *seq);
  for (int64_t k = 0; k < want; k++) {
    const int64_t n = np + k;
    float *l = full_logits(m, seq, n, V);
    float *last = l + (n - 1) * V;
    for (int64_t j = 0; j < V; j++) {
      int seen = 0;
      for (int64_t i = 0; i < n; i++) seen |= seq[i] == j;
      if (seen && penalty != 1.0f) last[j] = last[j] < 0 ? last[j] * penalty : last[j] / penalty;
    }
    int64_t best = 0;
    for (int64_t j = 1; j < V; j++)
      if (last[j] > last[best]) best = j;
    out[k] = seq[n] = best;
    free(l);
  }
}

static void check_greedy(strop_model *m, float penalty) {
  const int64_t prompt[] = {17, 203, 5, 99, 42};
  int64_t want[T], got[T], count = -1;
  greedy_reference(m, prompt, 5, 12, penalty, want);
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 12;
  o.repetition_penalty = penalty;
  strop_test_must(strop_generate(m, prompt, 5, &o, got, T, &count), "generate");
  ck_assert_int_eq(count, 12);
  for (int i = 0; i < 12; i++)
    ck_assert_msg(got[i] == want[i], "token %d: %lld, the full-forward loop gives %lld", i,
                  (long long)got[i], (long long)want[i]);
}

START_TEST(greedy_gpt2) {
  strop_model *m = gpt2_like(3);
  check_greedy(m, 1.0f);
  check_greedy(m, 1.3f);
  strop_model_free(m);
}
END_TEST

START_TEST(greedy_llama) {
  strop_model *m = llama_like(4);
  check_greedy(m, 1.0f);
  check_greedy(m, 1.3f);
  /* the training flag is left as it was; generation runs in eval mode anyway */
  strop_test_must(strop_model_set_training(m, 1), "train mode");
  const int64_t prompt[] = {1, 2, 3};
  int64_t ids[4], count;
  strop_test_must(strop_generate(m, prompt, 3, NULL, ids, 4, &count), "generate in train mode");
  ck_assert_int_eq(strop_model_is_training(m), 1);
  strop_model_free(m);
}
END_TEST

/* the context ends generation: a prompt of T - 2 gets 3 tokens (the last is never fed back) */
START_TEST(context_end) {
  strop_model *m = gpt2_like(5);
  int64_t prompt[T], ids[16], count = -1, want[3];
  random_ids(prompt, T - 2, 3);
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 16;
  strop_test_must(strop_generate(m, prompt, T - 2, &o, ids, 16, &count), "generate");
  ck_assert_int_eq(count, 3);
  greedy_reference(m, prompt, T - 2, 3, 1.0f, want);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(ids[i], want[i]);
  /* cap bounds the output as max_new_tokens does */
  strop_test_must(strop_generate(m, prompt, 4, &o, ids, 2, &count), "generate, cap 2");
  ck_assert_int_eq(count, 2);
  o.max_new_tokens = 0;
  strop_test_must(strop_generate(m, prompt, 4, &o, ids, 16, &count), "generate nothing");
  ck_assert_int_eq(count, 0);
  strop_model_free(m);
}
END_TEST

/* ---- sampling ---- */

static int64_t run(strop_model *m, const strop_generate_options *o, int64_t *ids) {
  const int64_t prompt[] = {10, 20, 30};
  int64_t count = -1;
  strop_test_must(strop_generate(m, prompt, 3, o, ids, 16, &count), "generate");
  return count;
}

START_TEST(sampling_seeded) {
  strop_model *m = llama_like(6);
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 16;
  o.temperature = 1.5f;
  o.seed = 1234;
  int64_t a[16], b[16], g[16];
  ck_assert_int_eq(run(m, &o, a), 16);
  ck_assert_int_eq(run(m, &o, b), 16);
  ck_assert_mem_eq(a, b, sizeof a); /* same seed, same ids */
  int differs = 0;
  for (uint64_t s = 1; s <= 4 && !differs; s++) {
    o.seed = 1234 + s;
    ck_assert_int_eq(run(m, &o, b), 16);
    differs = memcmp(a, b, sizeof a) != 0;
  }
  ck_assert_msg(differs, "four other seeds all drew the same 16 tokens at temperature 1.5");
  /* top-k 1 is greedy, whatever the temperature and seed */
  strop_generate_options gr;
  strop_generate_options_init(&gr);
  gr.max_new_tokens = 16;
  ck_assert_int_eq(run(m, &gr, g), 16);
  o.top_k = 1;
  ck_assert_int_eq(run(m, &o, b), 16);
  ck_assert_mem_eq(g, b, sizeof g);
  /* so is a tiny top-p */
  o.top_k = 0;
  o.top_p = 1e-6f;
  ck_assert_int_eq(run(m, &o, b), 16);
  ck_assert_mem_eq(g, b, sizeof g);
  /* top-k 5 draws only among the 5 most likely of each step */
  o.top_p = 1.0f;
  o.top_k = 5;
  o.temperature = 50.0f;
  ck_assert_int_eq(run(m, &o, a), 16);
  int64_t seq[T] = {10, 20, 30};
  for (int k = 0; k < 16; k++) {
    float *l = full_logits(m, seq, 3 + k, V), *last = l + (2 + k) * V;
    int above = 0;
    for (int64_t j = 0; j < V; j++) above += last[j] > last[a[k]];
    ck_assert_msg(above < 5, "step %d drew a token with %d more likely ones", k, above);
    seq[3 + k] = a[k];
    free(l);
  }
  strop_model_free(m);
}
END_TEST

/* ---- stopping ---- */

typedef struct cb_state {
  int64_t seen[32];
  int n, cancel_at;
} cb_state;

static int on_token(int64_t id, void *user) {
  cb_state *s = user;
  s->seen[s->n++] = id;
  return s->n == s->cancel_at;
}

START_TEST(callback_streams_and_cancels) {
  strop_model *m = gpt2_like(7);
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 10;
  cb_state s = {.cancel_at = -1};
  o.on_token = on_token;
  o.user_data = &s;
  int64_t ids[16], count = -1;
  const int64_t prompt[] = {3, 4};
  strop_test_must(strop_generate(m, prompt, 2, &o, ids, 16, &count), "generate");
  ck_assert_int_eq(count, 10);
  ck_assert_int_eq(s.n, 10);
  ck_assert_mem_eq(s.seen, ids, 10 * sizeof *ids);
  s = (cb_state){.cancel_at = 4};
  ck_assert_int_eq(strop_generate(m, prompt, 2, &o, ids, 16, &count), STROP_E_CANCELLED);
  ck_assert_int_eq(count, 4);
  ck_assert_int_eq(s.n, 4);
  ck_assert_mem_eq(s.seen, ids, 4 * sizeof *ids);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "cancelled"));
  strop_model_free(m);
}
END_TEST

START_TEST(stop_ids) {
  strop_model *m = gpt2_like(8);
  const int64_t prompt[] = {3, 4, 5};
  int64_t all[12], ids[12], count = -1;
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 12;
  strop_test_must(strop_generate(m, prompt, 3, &o, all, 12, &count), "generate");
  ck_assert_int_eq(count, 12);
  /* stop at the first occurrence of the 4th token (or of an id never drawn) */
  const int64_t stop[2] = {-1, all[3]};
  o.stop_ids = stop;
  o.num_stop_ids = 2;
  int64_t until = 0;
  while (all[until] != all[3]) until++;
  strop_test_must(strop_generate(m, prompt, 3, &o, ids, 12, &count), "generate with stop ids");
  ck_assert_int_eq(count, until + 1);
  ck_assert_mem_eq(ids, all, (size_t)count * sizeof *ids); /* the stop id is kept */
  strop_model_free(m);
}
END_TEST

static strop_tokenizer *small_bpe(int64_t vocab) {
  char path[] = "/tmp/strop_gen_corpus_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  FILE *f = fdopen(fd, "w");
  for (int i = 0; i < 40; i++)
    fprintf(f, "the quick brown fox jumps over the lazy dog %d times, then stops.\n", i);
  fclose(f);
  strop_bpe_train_options bo;
  strop_bpe_train_options_init(&bo);
  bo.vocab_size = vocab;
  bo.min_frequency = 1;
  const char *paths[1] = {path};
  strop_tokenizer *tok = NULL;
  strop_test_must(strop_tokenizer_train_bpe(paths, 1, &bo, &tok), "train a BPE");
  unlink(path);
  ck_assert_int_eq(strop_tokenizer_vocab_size(tok), vocab);
  return tok;
}

START_TEST(stop_strings) {
  strop_model *m = gpt2_like(9);
  strop_tokenizer *tok = small_bpe(V);
  const int64_t prompt[] = {70, 71, 72};
  int64_t all[12], ids[12], count = -1;
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 12;
  strop_test_must(strop_generate(m, prompt, 3, &o, all, 12, &count), "generate");
  ck_assert_int_eq(count, 12);
  /* the text of the first 6 tokens' last 2 bytes (or fewer) */
  char text[512], stop[8];
  int64_t len = strop_tokenizer_decode(tok, all, 6, 0, text, sizeof text);
  ck_assert_int_gt(len, 0);
  memcpy(stop, text + (len > 2 ? len - 2 : 0), 3);
  const char *stops[2] = {"\x01never", stop};
  o.stop_strings = stops;
  o.num_stop_strings = 2;
  o.tokenizer = tok;
  strop_test_must(strop_generate(m, prompt, 3, &o, ids, 12, &count),
                  "generate with stop strings");
  ck_assert_int_le(count, 6);
  ck_assert_mem_eq(ids, all, (size_t)count * sizeof *ids);
  /* it stopped at the first token whose text contains the string */
  len = strop_tokenizer_decode(tok, ids, count, 0, text, sizeof text);
  ck_assert_ptr_nonnull(strstr(text, stop));
  strop_tokenizer_decode(tok, ids, count - 1, 0, text, sizeof text);
  ck_assert_ptr_null(strstr(text, stop));
  strop_tokenizer_free(tok);
  strop_model_free(m);
}
END_TEST

/* ---- bad arguments and unsupported models ---- */

static void expect(strop_status got, strop_status want, const char *word) {
  ck_assert_int_eq(got, want);
  const char *e = strop_last_error();
  ck_assert_msg(e && e[0], "no error sentence");
  ck_assert_msg(strstr(e, "strop_generate"), "the sentence does not name the function: %s", e);
  if (word) ck_assert_msg(strstr(e, word), "the sentence lacks '%s': %s", word, e);
}

START_TEST(errors) {
  strop_model *m = gpt2_like(10);
  const int64_t prompt[] = {1, 2, 3};
  int64_t ids[8], count = 77;
  strop_generate_options o;
  strop_generate_options_init(&o);
  /* warm: the model's step arena and shape tables grow on its first forwards */
  strop_test_must(strop_generate(m, prompt, 3, &o, ids, 8, &count), "warm-up");
  const int64_t live = strop__alloc_live();
  expect(strop_generate(NULL, prompt, 3, &o, ids, 8, &count), STROP_E_INVALID_ARG, "model");
  ck_assert_int_eq(count, 0);
  expect(strop_generate(m, NULL, 3, &o, ids, 8, &count), STROP_E_INVALID_ARG, "prompt");
  expect(strop_generate(m, prompt, 3, &o, NULL, 8, &count), STROP_E_INVALID_ARG, "ids");
  ck_assert_int_eq(strop_generate(m, prompt, 3, &o, ids, 8, NULL), STROP_E_INVALID_ARG);
  expect(strop_generate(m, prompt, 3, &o, ids, -1, &count), STROP_E_INVALID_ARG, "cap");
  expect(strop_generate(m, prompt, 0, &o, ids, 8, &count), STROP_E_INVALID_ARG, "prompt");
  int64_t long_prompt[T + 1] = {0};
  expect(strop_generate(m, long_prompt, T + 1, &o, ids, 8, &count), STROP_E_INVALID_ARG, "25");
  const int64_t bad[] = {1, V, 2};
  expect(strop_generate(m, bad, 3, &o, ids, 8, &count), STROP_E_INVALID_ARG, "prompt[1] is 300");
  const int64_t neg[] = {-4};
  expect(strop_generate(m, neg, 1, &o, ids, 8, &count), STROP_E_INVALID_ARG, "-4");
  strop_generate_options b = o;
  b.max_new_tokens = -1;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "max_new_tokens");
  b = o;
  b.temperature = -1.0f;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "temperature");
  b.temperature = NAN;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "temperature");
  b = o;
  b.top_k = -2;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "top_k");
  b = o;
  b.top_p = 0.0f;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "top_p");
  b.top_p = 1.5f;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "top_p");
  b = o;
  b.repetition_penalty = 0.0f;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG,
         "repetition_penalty");
  b = o;
  b.num_stop_ids = 2;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "stop_ids");
  b = o;
  const char *stops[2] = {"x", ""};
  b.stop_strings = stops;
  b.num_stop_strings = 1;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "tokenizer");
  b.num_stop_strings = 2;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG,
         "stop_strings[1] is empty");
  b = o;
  b.num_beams = 0;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "num_beams");
  b.num_beams = 3;
  b.length_penalty = INFINITY;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "length_penalty");
  b.length_penalty = 1.0f;
  b.temperature = 0.7f;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_UNSUPPORTED, "temperature 0");
  b.temperature = 0.0f;
  b.stop_strings = stops;
  b.num_stop_strings = 1;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_UNSUPPORTED, "stop strings");
  b = o;
  b.size = 0;
  expect(strop_generate(m, prompt, 3, &b, ids, 8, &count), STROP_E_INVALID_ARG, "size");
  /* a shorter (older) options struct: the fields past its size take their defaults */
  b = o;
  b.size = offsetof(strop_generate_options, temperature);
  b.max_new_tokens = 2;
  b.temperature = -5.0f; /* beyond the size: not read */
  strop_test_must(strop_generate(m, prompt, 3, &b, ids, 8, &count), "an older options size");
  ck_assert_int_eq(count, 2);
  /* the model is unchanged and still generates */
  strop_test_must(strop_generate(m, prompt, 3, &o, ids, 8, &count), "generate after errors");
  ck_assert_int_eq(count, 8);
  ck_assert_int_eq(strop__alloc_live(), live);
  /* an allocation failing anywhere in a beam search: STROP_E_NOMEM, nothing leaks (a
   * search's first batch of 3 rows grows the model's step memory, kept for the next) */
  b = o;
  b.num_beams = 3;
  int64_t want_ids[8], want_n = 0, failures = 0;
  strop_test_must(strop_generate(m, prompt, 3, &b, want_ids, 8, &want_n), "beam search");
  const int64_t kept = strop__alloc_live(); /* the model's step memory, made by the search */
  for (int64_t k = 1; k < 1000; k++) {
    strop__alloc_fail_at(k);
    const strop_status st = strop_generate(m, prompt, 3, &b, ids, 8, &count);
    const int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    if (st == STROP_OK) { /* (an allocation the forward can do without may fail too) */
      ck_assert_int_eq(count, want_n);
      ck_assert_mem_eq(ids, want_ids, (size_t)want_n * sizeof *ids);
    } else {
      failures++;
      ck_assert_msg(st == STROP_E_NOMEM, "allocation %lld: status %d (%s)", (long long)k, st,
                    strop_last_error());
      ck_assert_int_eq(count, 0);
    }
    ck_assert_msg(strop__alloc_live() == kept, "allocation %lld (status %d): %lld blocks leaked",
                  (long long)k, st, (long long)(strop__alloc_live() - kept));
    if (!hit) break;
  }
  ck_assert_int_ge(failures, 10);
  strop_model_free(m);

  /* not finalized */
  strop_model *raw = NULL;
  const int64_t shape[1] = {T};
  strop_test_must(strop_model_create(1, shape, &raw), "create");
  expect(strop_generate(raw, prompt, 3, &o, ids, 8, &count), STROP_E_STATE, "finalized");
  strop_model_free(raw);
}
END_TEST

START_TEST(unsupported_models) {
  const int64_t prompt[] = {1, 2, 3};
  int64_t ids[4], count;
  const int64_t shape[1] = {8};
  /* a non-causal attention (an encoder) */
  const strop_test_node enc[] = {
      {"emb", "embedding", "num_embeddings=50 embedding_dim=16", NULL},
      {"qkv", "linear", "out_features=48", NULL},
      {"encoder.attn", "attention", "num_heads=2", NULL},
      {"head", "linear", "out_features=50", NULL},
  };
  strop_model *m = strop_test_build(1, shape, enc, 4, 1);
  expect(strop_generate(m, prompt, 3, NULL, ids, 4, &count), STROP_E_UNSUPPORTED,
         "'encoder.attn' (attention) is not causal");
  strop_model_free(m);
  /* a layer that mixes positions outside attention */
  const strop_test_node pooled[] = {
      {"emb", "embedding", "num_embeddings=50 embedding_dim=16", NULL},
      {"mha", "multihead_attention", "num_heads=2 causal=true", NULL},
      {"head", "linear", "out_features=50", NULL},
  };
  m = strop_test_build(1, shape, pooled, 3, 1);
  expect(strop_generate(m, prompt, 3, NULL, ids, 4, &count), STROP_E_UNSUPPORTED,
         "'mha' (multihead_attention)");
  strop_model_free(m);
  /* a classifier: [N, classes] out, not logits per position */
  const strop_test_node cls[] = {
      {"emb", "embedding", "num_embeddings=50 embedding_dim=16", NULL},
      {"pool", "mean_pool", NULL, NULL},
      {"head", "linear", "out_features=3", NULL},
  };
  m = strop_test_build(1, shape, cls, 3, 1);
  expect(strop_generate(m, prompt, 3, NULL, ids, 4, &count), STROP_E_UNSUPPORTED, "logits");
  strop_model_free(m);
}
END_TEST

/* every allocation of building a small decoder and generating from it, failed in turn: each
 * failure is STROP_E_NOMEM with a sentence and leaves nothing allocated */
static int op_build_generate(void *ctx) {
  (void)ctx;
  static const char *const nodes[][4] = {
      {"wte", "embedding", "num_embeddings=40 embedding_dim=8", "input"},
      {"wpe", "positional_embedding", "num_embeddings=8", NULL},
      {"c_attn", "linear", "out_features=24", NULL},
      {"attn", "attention", "num_heads=2 causal=true", NULL},
      {"q", "linear", "out_features=8", "wpe"},
      {"rot", "attention", "num_heads=2 causal=true rope=rotate_half", "q,q,q"},
      {"add", "add", NULL, "attn,rot"},
      {"lm_head", "linear", "out_features=40 bias=false", NULL},
  };
  const int64_t shape[1] = {8};
  strop_model *m = NULL;
  strop_status st = strop_model_create(1, shape, &m);
  for (size_t i = 0; !st && i < sizeof nodes / sizeof nodes[0]; i++)
    st = strop_model_add(m, nodes[i][0], nodes[i][1], nodes[i][2], nodes[i][3]);
  if (!st) st = strop_model_finalize(m, 1);
  const int64_t prompt[2] = {3, 4};
  int64_t ids[5], count;
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 5;
  o.temperature = 1.0f;
  o.top_p = 0.9f;
  o.repetition_penalty = 1.2f;
  if (!st) st = strop_generate(m, prompt, 2, &o, ids, 5, &count);
  /* beam search: the prompt's caches copied to the beams, the gather's scratch */
  o.temperature = 0.0f;
  o.top_p = 1.0f;
  o.num_beams = 3;
  if (!st) st = strop_generate(m, prompt, 2, &o, ids, 5, &count);
  strop_model_free(m);
  return st;
}

START_TEST(allocation_failures_are_clean) {
  /* once first: the GEMM's per-thread packing buffers are made on first use and kept (a
   * failure there falls back to another path by design, so it is not swept) */
  strop_test_must(op_build_generate(NULL), "a first run");
  ck_assert_int_ge(strop_test_alloc_sweep(op_build_generate, NULL, NULL), 10);
}
END_TEST

/* ---- batched generation ---- */

enum { NB = 5, CAP = 20 };

/* strop_generate_batch of prompts of 1 to T - 2 ids against strop_generate of each alone,
 * with options o (stop conditions per sequence included) */
static void check_batch(strop_model *m, const strop_generate_options *o) {
  int64_t p[NB][T];
  const int64_t lens[NB] = {5, 1, 9, T - 2, 3};
  const int64_t *prompts[NB];
  for (int b = 0; b < NB; b++) {
    random_ids(p[b], lens[b], 40 + (uint64_t)b);
    prompts[b] = p[b];
  }
  int64_t ids[NB * CAP], counts[NB];
  strop_test_must(strop_generate_batch(m, prompts, lens, NB, o, ids, CAP, counts), "batch");
  for (int b = 0; b < NB; b++) {
    int64_t alone[CAP], count = -1;
    strop_test_must(strop_generate(m, p[b], lens[b], o, alone, CAP, &count), "alone");
    ck_assert_msg(counts[b] == count, "sequence %d: %lld ids in the batch, %lld alone", b,
                  (long long)counts[b], (long long)count);
    for (int64_t i = 0; i < count; i++)
      ck_assert_msg(ids[b * CAP + i] == alone[i], "sequence %d token %lld: %lld, alone %lld", b,
                    (long long)i, (long long)ids[b * CAP + i], (long long)alone[i]);
  }
  /* the context ends the longest prompt after 3 tokens (its last never fed back) */
  const int64_t want = o->max_new_tokens < CAP ? o->max_new_tokens : CAP;
  ck_assert_int_le(counts[3], 3);
  ck_assert_int_le(counts[1], want);
}

START_TEST(batch_equals_each_alone) {
  strop_model *mm[2] = {gpt2_like(3), llama_like(4)};
  for (int k = 0; k < 2; k++) {
    strop_generate_options o;
    strop_generate_options_init(&o);
    o.max_new_tokens = 14;
    check_batch(mm[k], &o); /* greedy */
    o.repetition_penalty = 1.3f;
    check_batch(mm[k], &o);
    o.repetition_penalty = 1.0f;
    o.temperature = 0.9f; /* seeded sampling: a generator per sequence, seeded as alone */
    o.top_k = 50;
    o.seed = 11;
    check_batch(mm[k], &o);
    strop_model_free(mm[k]);
  }
}
END_TEST

/* each sequence stops on its own: a stop id one sequence meets early, the others go on */
START_TEST(batch_stops_per_sequence) {
  strop_model *m = gpt2_like(8);
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 12;
  /* the third token of prompt 0's own greedy continuation */
  int64_t p0[5], first[12], count = 0;
  random_ids(p0, 5, 40);
  strop_test_must(strop_generate(m, p0, 5, &o, first, 12, &count), "alone");
  o.stop_ids = &first[2];
  o.num_stop_ids = 1;
  check_batch(m, &o);
  strop_model_free(m);
}
END_TEST

typedef struct row_state {
  int64_t rows[64], ids[64];
  int n, cancel_at;
} row_state;

static int on_row(int64_t row, int64_t id, void *user) {
  row_state *s = user;
  s->rows[s->n] = row;
  s->ids[s->n++] = id;
  return s->n == s->cancel_at;
}

START_TEST(batch_callback_and_errors) {
  strop_model *m = gpt2_like(7);
  const int64_t a[] = {3, 4}, b[] = {5, 6, 7, 8}, bad[] = {1, 2, V};
  const int64_t *prompts[2] = {a, b}, lens[2] = {2, 4};
  int64_t ids[2 * 8], counts[2] = {9, 9};
  strop_generate_options o;
  strop_generate_options_init(&o);
  o.max_new_tokens = 3;
  row_state s = {.cancel_at = -1};
  o.on_row_token = on_row;
  o.user_data = &s;
  strop_test_must(strop_generate_batch(m, prompts, lens, 2, &o, ids, 8, counts), "batch");
  ck_assert_int_eq(s.n, 6);
  for (int i = 0; i < 6; i++) {
    ck_assert_int_eq(s.rows[i], i % 2); /* a token of each sequence per step */
    ck_assert_int_eq(s.ids[i], ids[(i % 2) * 8 + i / 2]);
  }
  s = (row_state){.cancel_at = 3};
  ck_assert_int_eq(strop_generate_batch(m, prompts, lens, 2, &o, ids, 8, counts),
                   STROP_E_CANCELLED);
  ck_assert_int_eq(counts[0], 2);
  ck_assert_int_eq(counts[1], 1);
  /* strop_generate calls on_row_token as sequence 0 */
  s = (row_state){.cancel_at = -1};
  int64_t count = 0;
  strop_test_must(strop_generate(m, b, 4, &o, ids, 8, &count), "alone");
  ck_assert_int_eq(s.n, 3);
  ck_assert_int_eq(s.rows[2], 0);
  o.on_row_token = NULL;
  o.on_token = on_token;
  expect(strop_generate_batch(m, prompts, lens, 2, &o, ids, 8, counts), STROP_E_INVALID_ARG,
         "on_row_token");
  ck_assert_int_eq(counts[0] + counts[1], 0);
  expect(strop_generate_batch(m, prompts, lens, 0, NULL, ids, 8, counts), STROP_E_INVALID_ARG,
         "n must be >= 1");
  expect(strop_generate_batch(m, prompts, lens, 2, NULL, ids, 8, NULL), STROP_E_INVALID_ARG,
         "counts is NULL");
  expect(strop_generate_batch(m, NULL, lens, 2, NULL, ids, 8, counts), STROP_E_INVALID_ARG,
         "prompts is NULL");
  const int64_t *with_null[2] = {a, NULL};
  expect(strop_generate_batch(m, with_null, lens, 2, NULL, ids, 8, counts), STROP_E_INVALID_ARG,
         "prompts[1] is NULL");
  const int64_t *with_bad[2] = {a, bad}, bad_lens[2] = {2, 3};
  expect(strop_generate_batch(m, with_bad, bad_lens, 2, NULL, ids, 8, counts),
         STROP_E_INVALID_ARG, "prompts[1][2] is 300");
  const int64_t zero[2] = {2, 0};
  expect(strop_generate_batch(m, prompts, zero, 2, NULL, ids, 8, counts), STROP_E_INVALID_ARG,
         "prompts[1] has 0 ids");
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "strop_generate_batch"));
  strop_model_free(m);
}
END_TEST

/* ---- PyTorch: the ids of Hugging Face reference modules' greedy loops ---- */

static void pytorch_case(const char *name) {
  const char *dir = getenv("STROP_GEN_FIXTURES");
  if (!dir) return; /* run by tests/pretrained/run_generate.py */
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  strop_model *m = NULL;
  strop_test_must(strop_model_load_pretrained(p, NULL, NULL, &m, NULL), p);
  snprintf(p, sizeof p, "%s/%s.generate.safetensors", dir, name);
  strop_st_file *f = NULL;
  strop_test_must(strop_st_file_open(p, &f), p);
  static struct {
    int64_t np, nw, prompt[64], want[64];
    float penalty;
  } cases[16];
  int n_cases = 0;
  for (int c = 0;; c++) {
    char key[64];
    snprintf(key, sizeof key, "case%d.prompt", c);
    int64_t ip = strop_st_file_find(f, key);
    if (ip < 0) {
      ck_assert_int_gt(c, 0);
      break;
    }
    float pf[64], wf[64], pen[1];
    int64_t dims[4];
    ck_assert_int_eq(strop_st_file_shape(f, ip, dims, 4), 1);
    const int64_t np = dims[0];
    strop_test_must(strop_st_file_read_f32(f, ip, pf, (size_t)np), key);
    snprintf(key, sizeof key, "case%d.ids", c);
    int64_t iw = strop_st_file_find(f, key);
    ck_assert_int_ge(iw, 0);
    ck_assert_int_eq(strop_st_file_shape(f, iw, dims, 4), 1);
    const int64_t nw = dims[0];
    strop_test_must(strop_st_file_read_f32(f, iw, wf, (size_t)nw), key);
    snprintf(key, sizeof key, "case%d.penalty", c);
    strop_test_must(strop_st_file_read_f32(f, strop_st_file_find(f, key), pen, 1), key);
    int64_t prompt[64], ids[64], count = -1;
    for (int64_t i = 0; i < np; i++) prompt[i] = (int64_t)pf[i];
    strop_generate_options o;
    strop_generate_options_init(&o);
    o.max_new_tokens = nw;
    o.repetition_penalty = pen[0];
    strop_test_must(strop_generate(m, prompt, np, &o, ids, 64, &count), name);
    ck_assert_int_eq(count, nw);
    for (int64_t i = 0; i < nw; i++)
      ck_assert_msg(ids[i] == (int64_t)wf[i], "%s case %d token %lld: strop %lld, PyTorch %lld",
                    name, c, (long long)i, (long long)ids[i], (long long)wf[i]);
    if (c < 16) {
      cases[c].np = np;
      cases[c].nw = nw;
      cases[c].penalty = pen[0];
      memcpy(cases[c].prompt, prompt, sizeof prompt);
      for (int64_t i = 0; i < nw; i++) cases[c].want[i] = (int64_t)wf[i];
      n_cases = c + 1;
    }
  }
  /* the cases of one repetition penalty as one left-padded batch: each sequence's ids are
   * PyTorch's greedy loop's for its prompt alone */
  for (int c0 = 0; c0 < n_cases; c0++) {
    const int64_t *prompts[16];
    int64_t lens[16], most = 0, rows[16];
    int nb = 0, first = 1;
    for (int c = 0; c < n_cases; c++) {
      if (cases[c].penalty != cases[c0].penalty) continue;
      if (c < c0) first = 0;
      rows[nb] = c;
      prompts[nb] = cases[c].prompt;
      lens[nb++] = cases[c].np;
      if (cases[c].nw > most) most = cases[c].nw;
    }
    if (!first || nb < 2) continue;
    strop_generate_options o;
    strop_generate_options_init(&o);
    o.max_new_tokens = most;
    o.repetition_penalty = cases[c0].penalty;
    int64_t ids[16 * 64], counts[16];
    strop_test_must(strop_generate_batch(m, prompts, lens, nb, &o, ids, 64, counts), name);
    for (int b = 0; b < nb; b++)
      for (int64_t i = 0; i < cases[rows[b]].nw; i++)
        ck_assert_msg(ids[b * 64 + i] == cases[rows[b]].want[i],
                      "%s batch of %d, case %lld token %lld: strop %lld, PyTorch %lld", name, nb,
                      (long long)rows[b], (long long)i, (long long)ids[b * 64 + i],
                      (long long)cases[rows[b]].want[i]);
    printf("%s: a batch of %d prompts (penalty %g) gives PyTorch's ids for each\n", name, nb,
           (double)cases[c0].penalty);
  }
  /* beam search: transformers' BeamSearchScorer over the same module; each case alone, and the
   * first two as one batch (each searched alone there too) */
  int n_beam = 0;
  for (int c = 0;; c++) {
    char key[64];
    snprintf(key, sizeof key, "beam%d.prompt", c);
    const int64_t ip = strop_st_file_find(f, key);
    if (ip < 0) break;
    float pf[64], wf[64], opts[5];
    int64_t dims[4];
    ck_assert_int_eq(strop_st_file_shape(f, ip, dims, 4), 1);
    const int64_t np = dims[0];
    strop_test_must(strop_st_file_read_f32(f, ip, pf, (size_t)np), key);
    snprintf(key, sizeof key, "beam%d.ids", c);
    const int64_t iw = strop_st_file_find(f, key);
    ck_assert_int_eq(strop_st_file_shape(f, iw, dims, 4), 1);
    const int64_t nw = dims[0];
    strop_test_must(strop_st_file_read_f32(f, iw, wf, (size_t)nw), key);
    snprintf(key, sizeof key, "beam%d.opts", c);
    strop_test_must(strop_st_file_read_f32(f, strop_st_file_find(f, key), opts, 5), key);
    int64_t prompt[64], ids[2 * 64], counts[2] = {-1, -1}, stop = (int64_t)opts[4];
    for (int64_t i = 0; i < np; i++) prompt[i] = (int64_t)pf[i];
    strop_generate_options o;
    strop_generate_options_init(&o);
    o.max_new_tokens = 10;
    o.num_beams = (int64_t)opts[0];
    o.repetition_penalty = opts[1];
    o.length_penalty = opts[2];
    o.early_stopping = (int)opts[3];
    o.stop_ids = stop >= 0 ? &stop : NULL;
    o.num_stop_ids = stop >= 0 ? 1 : 0;
    strop_test_must(strop_generate(m, prompt, np, &o, ids, 64, &counts[0]), name);
    ck_assert_msg(counts[0] == nw, "%s beam case %d: %lld ids, PyTorch %lld", name, c,
                  (long long)counts[0], (long long)nw);
    for (int64_t i = 0; i < nw; i++)
      ck_assert_msg(ids[i] == (int64_t)wf[i],
                    "%s beam case %d (%lld beams) token %lld: strop %lld, PyTorch %lld", name, c,
                    (long long)o.num_beams, (long long)i, (long long)ids[i], (long long)wf[i]);
    if (nw < 10 && stop >= 0) ck_assert_int_eq(ids[nw - 1], stop); /* a hypothesis finished */
    /* the same search twice in one batch */
    const int64_t *two[2] = {prompt, prompt}, lens[2] = {np, np};
    strop_test_must(strop_generate_batch(m, two, lens, 2, &o, ids, 64, counts), name);
    for (int b = 0; b < 2; b++) {
      ck_assert_int_eq(counts[b], nw);
      for (int64_t i = 0; i < nw; i++) ck_assert_int_eq(ids[b * 64 + i], (int64_t)wf[i]);
    }
    n_beam++;
  }
  ck_assert_int_ge(n_beam, 5);
  printf("%s: %d beam searches give PyTorch's ids\n", name, n_beam);
  strop_st_file_free(f);
  strop_model_free(m);
}

START_TEST(pytorch_gpt2) { pytorch_case("gpt2_lm"); }
END_TEST

START_TEST(pytorch_llama) { pytorch_case("llama_lm"); }
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("generate");
  TCase *tc = tcase_create("cache");
  tcase_add_test(tc, cache_gpt2);
  tcase_add_test(tc, cache_llama);
  suite_add_tcase(s, tc);
  tc = tcase_create("greedy");
  tcase_add_test(tc, greedy_gpt2);
  tcase_add_test(tc, greedy_llama);
  tcase_add_test(tc, context_end);
  suite_add_tcase(s, tc);
  tc = tcase_create("sampling");
  tcase_add_test(tc, sampling_seeded);
  suite_add_tcase(s, tc);
  tc = tcase_create("stopping");
  tcase_add_test(tc, callback_streams_and_cancels);
  tcase_add_test(tc, stop_ids);
  tcase_add_test(tc, stop_strings);
  suite_add_tcase(s, tc);
  tc = tcase_create("batch");
  tcase_add_test(tc, batch_equals_each_alone);
  tcase_add_test(tc, batch_stops_per_sequence);
  tcase_add_test(tc, batch_callback_and_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, errors);
  tcase_add_test(tc, unsupported_models);
  suite_add_tcase(s, tc);
  tc = tcase_create("alloc");
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  tc = tcase_create("pytorch");
  tcase_add_test(tc, pytorch_gpt2);
  tcase_add_test(tc, pytorch_llama);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
