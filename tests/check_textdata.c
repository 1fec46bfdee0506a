/* SPDX-License-Identifier: MIT */
/* strop tests — the text-data suite: JSON Lines, CSV and plain-text sources tokenised with a
 * strop_tokenizer (ids equal the tokenizer's own encoding), padding masks and batches cut to
 * their longest row, packed causal-LM windows, prompt masking, splits and few-shot on text
 * datasets, the bad inputs (each with its sentence) and an allocation-failure sweep. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "data/data_impl.h"
#include "strop/strop.h"
#include "testutil.h"

static char g_dir[256];

static const char *tmpdir(void) {
  if (!g_dir[0]) strop_test_tmpdir("check_textdata", g_dir, sizeof g_dir);
  return g_dir;
}

/* Writes content to a file of the test's folder; returns its path (static, per name slot). */
static const char *put(const char *name, const char *content) {
  static char paths[8][512];
  static int slot;
  char *p = paths[slot++ % 8];
  snprintf(p, 512, "%s/%s", tmpdir(), name);
  FILE *f = fopen(p, "wb");
  ck_assert_ptr_nonnull(f);
  fwrite(content, 1, strlen(content), f);
  fclose(f);
  return p;
}

/* A small BERT-style WordPiece tokenizer: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, pair template
 * [CLS] A [SEP] B [SEP]. */
static const char WORDPIECE[] =
    "{\"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": true},"
    " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
    " \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 3],"
    " \"cls\": [\"[CLS]\", 2]},"
    " \"added_tokens\": [{\"id\": 0, \"content\": \"[PAD]\", \"special\": true},"
    " {\"id\": 1, \"content\": \"[UNK]\", \"special\": true},"
    " {\"id\": 2, \"content\": \"[CLS]\", \"special\": true},"
    " {\"id\": 3, \"content\": \"[SEP]\", \"special\": true}],"
    " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\","
    " \"continuing_subword_prefix\": \"##\", \"vocab\": {\"[PAD]\": 0, \"[UNK]\": 1,"
    " \"[CLS]\": 2, \"[SEP]\": 3, \"the\": 4, \"cat\": 5, \"dog\": 6, \"sat\": 7, \"ran\": 8,"
    " \"on\": 9, \"mat\": 10, \"a\": 11, \"##s\": 12, \".\": 13, \",\": 14, \"big\": 15}}}";

static strop_tokenizer *wordpiece(void) {
  strop_tokenizer *t = NULL;
  strop_test_must(strop_tokenizer_load(put("wp.json", WORDPIECE), NULL, &t), "load tokenizer");
  return t;
}

/* A byte-level BPE trained on a small corpus, with <|endoftext|> as its EOS. */
static strop_tokenizer *bpe_eos(int eos) {
  const char *corpus = put("corpus.txt", "the cat sat on the mat. the dog ran on the mat.\n"
                                         "a big cat, a big dog. the cats sat.\n");
  strop_bpe_train_options o;
  strop_bpe_train_options_init(&o);
  o.vocab_size = 300;
  const char *special[1] = {"<|endoftext|>"};
  o.special_tokens = special;
  o.num_special_tokens = 1;
  strop_tokenizer *t = NULL;
  strop_test_must(strop_tokenizer_train_bpe(&corpus, 1, &o, &t), "train bpe");
  strop_test_must(strop_tokenizer_set_special_id(t, STROP_ROLE_EOS, eos ? 0 : -1), "eos");
  return t;
}

static strop_tokenizer *bpe(void) { return bpe_eos(1); }

static int64_t encode(strop_tokenizer *t, const char *text, const char *pair, int special,
                      int64_t *ids, int64_t cap) {
  strop_encode_options eo;
  strop_encode_options_init(&eo);
  eo.add_special_tokens = special;
  eo.padding = STROP_PAD_NONE;
  const char *texts[1] = {text}, *pairs[1] = {pair};
  int64_t w = 0;
  strop_test_must(strop_tokenizer_encode_batch(t, texts, pair ? pairs : NULL, 1, &eo, ids, NULL,
                                               NULL, NULL, cap, &w),
                  "encode");
  return w;
}

/* Sample i's input ids and the count of its leading non-padding positions (from the mask). */
static int64_t sample_ids(strop_dataset *ds, int64_t i, int64_t L, int64_t *ids, float *tgt,
                          size_t tcap) {
  float in[64];
  ck_assert_int_le(L, 64);
  strop_test_must(strop_dataset_get(ds, i, in, (size_t)L, tgt, tcap), "get");
  for (int64_t k = 0; k < L; k++) ids[k] = (int64_t)in[k];
  /* the mask through a one-sample subset's batch */
  strop_dataset *one = NULL;
  strop_test_must(strop_dataset_subset(ds, &i, 1, &one), "subset");
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(one, 1, 0, 0, &it), "iter");
  strop_tensor *x = NULL, *y = NULL;
  int64_t rows = 0;
  strop_test_must(strop_batch_iter_next(it, &x, &y, &rows), "next");
  const strop_tensor *m = strop_batch_iter_mask(it);
  ck_assert_ptr_nonnull(m);
  int64_t n = strop_tensor_dim(m, 1);
  for (int64_t k = 0; k < n; k++) ck_assert(strop_tensor_data_const(m)[k] == 1.0f);
  strop_batch_iter_free(it);
  strop_dataset_free(one);
  return n;
}

/* ------------------------------------------------------------------ sources ---- */

START_TEST(classify_jsonl_ids_equal_encode) {
  strop_tokenizer *t = wordpiece();
  const char *path = put("cls.jsonl",
                         "{\"text\": \"The cat sat on the mat.\", \"label\": \"pos\"}\n"
                         "\n"
                         "{\"text\": \"a dog\", \"label\": \"neg\", \"x\": 1}\n"
                         "{\"label\": \"pos\", \"text\": \"the big, big cats ran\"}\n");
  strop_text_options o;
  strop_text_options_init(&o);
  o.max_length = 8;
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
  ck_assert_int_eq(strop_dataset_size(ds), 3);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 2);
  ck_assert_int_eq(strop_dataset_has_mask(ds), 1);
  char name[16];
  strop_dataset_class_name(ds, 0, name, sizeof name);
  ck_assert_str_eq(name, "neg");
  const char *texts[3] = {"The cat sat on the mat.", "a dog", "the big, big cats ran"};
  const float labels[3] = {1, 0, 1};
  for (int64_t i = 0; i < 3; i++) {
    int64_t want[64], got[64];
    float y = -1;
    /* truncated as the tokenizer truncates: max_length with its special tokens */
    strop_encode_options eo;
    strop_encode_options_init(&eo);
    eo.max_length = 8;
    eo.padding = STROP_PAD_NONE;
    int64_t w = 0;
    strop_test_must(
        strop_tokenizer_encode_batch(t, &texts[i], NULL, 1, &eo, want, NULL, NULL, NULL, 64, &w),
        "encode");
    int64_t n = sample_ids(ds, i, 8, got, &y, 1);
    ck_assert_int_eq(n, w);
    for (int64_t k = 0; k < 8; k++) ck_assert_int_eq(got[k], k < w ? want[k] : 0);
    ck_assert(y == labels[i]);
  }
  /* sample 0 was truncated to 8 with [SEP] kept last */
  int64_t got[8];
  float y;
  sample_ids(ds, 0, 8, got, &y, 1);
  ck_assert_int_eq(got[0], 2);
  ck_assert_int_eq(got[7], 3);
  strop_dataset_free(ds);
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(csv_pairs_quotes_and_integer_labels) {
  strop_tokenizer *t = wordpiece();
  const char *path = put("pairs.csv", "id,premise,hypothesis,label\r\n"
                                      "1,\"the cat, the dog\",\"a \"\"big\"\" cat\",2\r\n"
                                      "2,\"the mat\non the dog\",a dog,0\r\n"
                                      "\r\n"
                                      "3,cat,dog,1\r\n");
  strop_text_options o;
  strop_text_options_init(&o);
  o.text_field = "premise";
  o.pair_field = "hypothesis";
  o.max_length = 16;
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
  ck_assert_int_eq(strop_dataset_size(ds), 3);
  ck_assert_int_eq(strop_dataset_num_classes(ds), 3);
  const char *a[3] = {"the cat, the dog", "the mat\non the dog", "cat"};
  const char *b[3] = {"a \"big\" cat", "a dog", "dog"};
  const float labels[3] = {2, 0, 1};
  for (int64_t i = 0; i < 3; i++) {
    int64_t want[64], got[64];
    int64_t w = encode(t, a[i], b[i], 1, want, 64);
    float y = -1;
    int64_t n = sample_ids(ds, i, 16, got, &y, 1);
    ck_assert_int_eq(n, w);
    for (int64_t k = 0; k < w; k++) ck_assert_int_eq(got[k], want[k]);
    ck_assert(y == labels[i]);
  }
  strop_dataset_free(ds);
  /* num_classes given: a label beyond it names its line */
  o.num_classes = 2;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_FORMAT);
  ck_assert_ptr_null(ds);
  ck_assert_msg(strstr(strop_last_error(), "pairs.csv:2: label 2"), "%s", strop_last_error());
  strop_tokenizer_free(t);
}
END_TEST

/* Batches are as long as their longest row (STROP_PAD_LONGEST) or L (STROP_PAD_MAX_LENGTH),
 * with masks cut alike; shuffled and prefetched batches too. */
START_TEST(batches_cut_to_longest) {
  strop_tokenizer *t = wordpiece();
  const char *path = put("len.jsonl", "{\"text\": \"cat\", \"label\": 0}\n"
                                      "{\"text\": \"the cat sat\", \"label\": 1}\n"
                                      "{\"text\": \"the big dog ran on the mat\", \"label\": 0}\n"
                                      "{\"text\": \"a dog\", \"label\": 1}\n");
  const int64_t lens[4] = {3, 5, 9, 4};
  strop_text_options o;
  strop_text_options_init(&o);
  o.max_length = 12;
  for (int mode = 0; mode < 2; mode++) {
    o.padding = mode ? STROP_PAD_MAX_LENGTH : STROP_PAD_LONGEST;
    strop_dataset *ds = NULL;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
    for (int flags = 0; flags < 4; flags++) {
      int f = ((flags & 1) ? STROP_ITER_SHUFFLE : 0) | ((flags & 2) ? STROP_ITER_PREFETCH : 0);
      strop_batch_iter *it = NULL;
      strop_test_must(strop_batch_iter_create(ds, 2, 5, f, &it), "iter");
      for (int epoch = 0; epoch < 2; epoch++) {
        int seen = 0;
        for (;;) {
          strop_tensor *x = NULL, *y = NULL;
          int64_t rows = 0;
          strop_test_must(strop_batch_iter_next(it, &x, &y, &rows), "next");
          if (!rows) break;
          const strop_tensor *m = strop_batch_iter_mask(it);
          int64_t T = strop_tensor_dim(x, 1), longest = 0;
          ck_assert_int_eq(strop_tensor_dim(m, 1), T);
          ck_assert_int_eq((int64_t)strop_tensor_numel(x), rows * T);
          for (int64_t r = 0; r < rows; r++) {
            const float *xr = strop_tensor_data(x) + r * T;
            const float *mr = strop_tensor_data_const(m) + r * T;
            int64_t n = 0;
            while (n < T && mr[n] == 1.0f) n++;
            for (int64_t k = n; k < T; k++) ck_assert(mr[k] == 0.0f && xr[k] == 0.0f);
            /* which sample: its length identifies it, [CLS] first and [SEP] last */
            int found = 0;
            for (int s = 0; s < 4; s++) found |= lens[s] == n;
            ck_assert_msg(found, "row of %lld tokens", (long long)n);
            ck_assert(xr[0] == 2.0f && xr[n - 1] == 3.0f);
            if (n > longest) longest = n;
          }
          ck_assert_int_eq(T, mode ? 12 : longest);
          seen += (int)rows;
        }
        ck_assert_int_eq(seen, 4);
      }
      strop_batch_iter_free(it);
    }
    strop_dataset_free(ds);
  }
  strop_tokenizer_free(t);
}
END_TEST

/* Regression: with STROP_ITER_PREFETCH the workers filled the rows but no one read the masks,
 * so every prefetched batch carried the masks of the buffer's previous batch (or garbage). */
START_TEST(prefetch_batches_carry_their_masks) {
  enum { N = 6, T = 4 };
  float x[N * T], labels[N], mask[N * T];
  for (int i = 0; i < N; i++) {
    labels[i] = (float)(i % 2);
    for (int k = 0; k < T; k++) {
      mask[i * T + k] = k <= i % T ? 1.0f : 0.0f;
      x[i * T + k] = mask[i * T + k] * (float)(1 + k);
    }
  }
  const int64_t dims[1] = {T};
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(x, labels, N, 1, dims, 0, NULL, 2, &ds), "ds");
  strop_test_must(strop_dataset_set_mask(ds, mask, N * T), "mask");
  strop_batch_iter *it = NULL;
  strop_test_must(
      strop_batch_iter_create(ds, 2, 3, STROP_ITER_SHUFFLE | STROP_ITER_PREFETCH, &it), "iter");
  for (int b = 0; b < 9; b++) {
    strop_tensor *bx = NULL, *by = NULL;
    int64_t rows = 0;
    strop_test_must(strop_batch_iter_next(it, &bx, &by, &rows), "next");
    if (!rows) continue;
    const strop_tensor *m = strop_batch_iter_mask(it);
    ck_assert_ptr_nonnull(m);
    for (int64_t i = 0; i < rows * T; i++)
      ck_assert_msg((strop_tensor_data_const(m)[i] != 0.0f) == (strop_tensor_data(bx)[i] != 0.0f),
                    "batch %d position %lld", b, (long long)i);
  }
  strop_batch_iter_free(it);
  strop_dataset_free(ds);
}
END_TEST

/* A plain corpus packed into windows of L: inputs and next-token targets from the one stream,
 * EOS after the document, the last window padded with mask 0 and target -100. */
START_TEST(causal_lm_packed_windows) {
  strop_tokenizer *t = bpe();
  const char *text = "the cat sat on the mat. the dog ran on the mat. a big cat.";
  const char *path = put("corpus_lm.txt", text);
  int64_t stream[256];
  int64_t T = encode(t, text, NULL, 1, stream, 255);
  stream[T++] = 0; /* EOS */
  ck_assert_int_gt(T, 12);
  for (int64_t stride = 0; stride <= 3; stride += 3) {
    strop_text_options o;
    strop_text_options_init(&o);
    o.task = STROP_TEXT_CAUSAL_LM;
    o.max_length = 5;
    o.stride = stride;
    o.padding = STROP_PAD_MAX_LENGTH;
    strop_dataset *ds = NULL;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
    int64_t S = stride ? stride : 5, n = strop_dataset_size(ds);
    ck_assert_int_eq(strop_dataset_num_classes(ds), strop_tokenizer_vocab_size(t));
    int64_t td[2];
    ck_assert_int_eq(strop_dataset_target_shape(ds, td, 2), 1);
    ck_assert_int_eq(td[0], 5);
    for (int64_t i = 0; i < n; i++) {
      float in[5], tg[5];
      strop_test_must(strop_dataset_get(ds, i, in, 5, tg, 5), "get");
      for (int64_t k = 0; k < 5; k++) {
        int64_t at = i * S + k;
        if (at + 1 < T) {
          ck_assert(in[k] == (float)stream[at]);
          ck_assert(tg[k] == (float)stream[at + 1]);
        } else {
          ck_assert(tg[k] == -100.0f);
        }
      }
    }
    /* the windows cover the stream: the last one reaches its end */
    ck_assert_int_ge((n - 1) * S + 5, T - 1);
    ck_assert_int_lt((n - 2) * S + 5, T - 1);
    strop_dataset_free(ds);
  }
  strop_tokenizer_free(t);
}
END_TEST

/* One sample per JSON record, and prompt/response pairs whose prompt takes no loss. */
START_TEST(prompt_tokens_masked_out) {
  strop_tokenizer *t = bpe();
  const char *path = put("pr.jsonl",
                         "{\"prompt\": \"the cat\", \"response\": \" sat on the mat\"}\n"
                         "{\"prompt\": \"a dog\", \"response\": \" ran\"}\n");
  strop_text_options o;
  strop_text_options_init(&o);
  o.task = STROP_TEXT_PROMPT_RESPONSE;
  o.max_length = 16;
  o.prompt_template = "Q: {prompt}\nA:";
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
  ck_assert_int_eq(strop_dataset_size(ds), 2);
  const char *prompts[2] = {"Q: the cat\nA:", "Q: a dog\nA:"};
  const char *resp[2] = {" sat on the mat", " ran"};
  for (int64_t i = 0; i < 2; i++) {
    int64_t p[64], r[64], seq[128];
    int64_t P = encode(t, prompts[i], NULL, 1, p, 64), R = encode(t, resp[i], NULL, 0, r, 64);
    int64_t n = 0;
    for (int64_t k = 0; k < P; k++) seq[n++] = p[k];
    for (int64_t k = 0; k < R; k++) seq[n++] = r[k];
    seq[n++] = 0;
    float in[16], tg[16];
    strop_test_must(strop_dataset_get(ds, i, in, 16, tg, 16), "get");
    for (int64_t k = 0; k < 16; k++) {
      if (k + 1 < n) {
        ck_assert(in[k] == (float)seq[k]);
        ck_assert(tg[k] == (k + 1 < P ? -100.0f : (float)seq[k + 1]));
      } else {
        ck_assert(tg[k] == -100.0f);
      }
    }
  }
  strop_dataset_free(ds);
  /* over-long: truncated at L + 1 ids, or refused naming the line */
  o.max_length = 9;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "truncated");
  strop_dataset_free(ds);
  o.truncate = 0;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "pr.jsonl:1:"), "%s", strop_last_error());
  /* a prompt that fills max_length leaves nothing to learn */
  o.truncate = 1;
  o.max_length = 2;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "no room for the response"), "%s", strop_last_error());
  /* one causal-LM sample per record */
  strop_text_options_init(&o);
  o.task = STROP_TEXT_CAUSAL_LM;
  o.pack = 0;
  o.text_field = "response";
  o.max_length = 3;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "per record");
  ck_assert_int_eq(strop_dataset_size(ds), 2);
  int64_t r[64];
  int64_t R = encode(t, " sat on the mat", NULL, 1, r, 64);
  ck_assert_int_ge(R, 4);
  float in[3], tg[3];
  strop_test_must(strop_dataset_get(ds, 0, in, 3, tg, 3), "get");
  for (int k = 0; k < 3; k++) ck_assert(in[k] == (float)r[k] && tg[k] == (float)r[k + 1]);
  strop_dataset_free(ds);
  strop_tokenizer_free(t);
}
END_TEST

/* With a chat template the prompt is the render of [user] with the generation prompt and the
 * response what the full conversation's render adds (its EOS written by the template). */
START_TEST(prompt_response_chat_template) {
  strop_tokenizer *t = bpe();
  const char *path = put("chat.jsonl",
                         "{\"prompt\": \"the cat\", \"response\": \" sat on the mat\"}\n"
                         "{\"prompt\": \"a dog\", \"response\": \" ran\"}\n");
  strop_text_options o;
  strop_text_options_init(&o);
  o.task = STROP_TEXT_PROMPT_RESPONSE;
  o.max_length = 24;
  o.chat = 1;
  o.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if m.role == "
                    "'assistant' %}{{ eos_token }}{% endif %}{% endfor %}{% if "
                    "add_generation_prompt %}<assistant>{% endif %}";
  o.prompt_template = "ignored {prompt}";
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
  const char *prompts[2] = {"<user>the cat<assistant>", "<user>a dog<assistant>"};
  const char *resp[2] = {" sat on the mat<|endoftext|>", " ran<|endoftext|>"};
  for (int64_t i = 0; i < 2; i++) {
    int64_t p[64], r[64], seq[128];
    int64_t P = encode(t, prompts[i], NULL, 0, p, 64), R = encode(t, resp[i], NULL, 0, r, 64);
    ck_assert_int_eq(r[R - 1], 0); /* the template's EOS, not one added again */
    int64_t n = 0;
    for (int64_t k = 0; k < P; k++) seq[n++] = p[k];
    for (int64_t k = 0; k < R; k++) seq[n++] = r[k];
    float in[24], tg[24];
    strop_test_must(strop_dataset_get(ds, i, in, 24, tg, 24), "get");
    for (int64_t k = 0; k < 24; k++) {
      if (k + 1 < n) {
        ck_assert(in[k] == (float)seq[k]);
        ck_assert(tg[k] == (k + 1 < P ? -100.0f : (float)seq[k + 1]));
      } else {
        ck_assert(tg[k] == -100.0f);
      }
    }
  }
  strop_dataset_free(ds);
  /* the tokenizer's own template: it has none */
  o.chat_template = NULL;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_NOT_FOUND);
  ck_assert_msg(strstr(strop_last_error(), "chat.jsonl:1") &&
                    strstr(strop_last_error(), "no chat template"),
                "%s", strop_last_error());
  /* a template whose full render does not extend the prompt's */
  o.chat_template = "{% if add_generation_prompt %}A{% else %}B{% endif %}";
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "cannot be told apart"), "%s", strop_last_error());
  /* one with no response part */
  o.chat_template = "{{ messages[0].content }}";
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "chat.jsonl:1: the chat template renders no response"),
                "%s", strop_last_error());
  /* template errors keep their line and column, after the record's */
  o.chat_template = "{{ foo( }}";
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_FORMAT);
  ck_assert_msg(strstr(strop_last_error(), "chat.jsonl:1") &&
                    strstr(strop_last_error(), "the chat template:1:"),
                "%s", strop_last_error());
  /* chat is for prompt/response only */
  o.task = STROP_TEXT_CAUSAL_LM;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_INVALID_ARG);
  o.task = STROP_TEXT_PROMPT_RESPONSE;
  o.chat = 2;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(ds);
  strop_tokenizer_free(t);
}
END_TEST

/* ---------------------------------------------------------------- cache ---- */

/* 1 when a and b hold the same samples bit for bit: ids, masks, targets or labels, names. */
static int same_dataset(const strop_dataset *a, const strop_dataset *b) {
  if (a->n != b->n || a->seq_len != b->seq_len || a->lm != b->lm ||
      a->num_classes != b->num_classes || a->trim != b->trim || a->ntokens != b->ntokens)
    return 0;
  size_t nl = (size_t)(a->n * a->seq_len);
  if (memcmp(a->tokens, b->tokens, nl * 4) || memcmp(a->mask, b->mask, nl * 4)) return 0;
  if (a->lm ? memcmp(a->lm_targets, b->lm_targets, nl * 4) : memcmp(a->y, b->y, (size_t)a->n * 4))
    return 0;
  if (!a->class_names != !b->class_names) return 0;
  for (int64_t c = 0; a->class_names && c < a->num_classes; c++)
    if (strcmp(a->class_names[c], b->class_names[c])) return 0;
  return 1;
}

/* The one *.tokens file of dir (path into buf), or "" when there are none or several. */
static int cache_files(const char *dir, char *buf, size_t cap) {
  DIR *d = opendir(dir);
  int n = 0;
  buf[0] = '\0';
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > 7 && !strcmp(e->d_name + l - 7, ".tokens")) {
      snprintf(buf, cap, "%s/%s", dir, e->d_name);
      n++;
    }
  }
  if (d) closedir(d);
  return n;
}

/* The tokenised dataset is written once to cache_dir and read back (bit for bit, without
 * tokenising) while nothing changes; a changed source, tokenizer or option makes a new one;
 * a corrupt or truncated file is rebuilt. */
START_TEST(cache_reuses_and_invalidates) {
  strop_tokenizer *t = bpe();
  char dir[600];
  snprintf(dir, sizeof dir, "%s/cache/sub", tmpdir());
  const char *path = put("cached.jsonl",
                         "{\"text\": \"the cat sat on the mat\", \"label\": \"a\"}\n"
                         "{\"text\": \"a dog ran\", \"label\": \"b\"}\n"
                         "{\"text\": \"the big cats\", \"label\": \"a\"}\n");
  strop_text_options o;
  strop_text_options_init(&o);
  o.max_length = 12;
  strop_dataset *fresh = NULL, *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &fresh), "no cache");
  o.cache_dir = dir;
  int64_t before = strop__textdata_tokenised;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "first");
  ck_assert_int_eq(strop__textdata_tokenised, before + 1);
  ck_assert(same_dataset(ds, fresh));
  strop_dataset_free(ds);
  char file[800];
  ck_assert_int_eq(cache_files(dir, file, sizeof file), 1);
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "second");
  ck_assert_int_eq(strop__textdata_tokenised, before + 1); /* read back, not tokenised */
  ck_assert(same_dataset(ds, fresh));
  strop_dataset_free(ds);
  /* corrupt (one byte in the ids), truncated, garbage: rebuilt, never wrong */
  for (int how = 0; how < 3; how++) {
    FILE *f = fopen(file, "r+b");
    ck_assert_ptr_nonnull(f);
    if (how == 0) {
      fseek(f, 100, SEEK_SET);
      int c = fgetc(f);
      fseek(f, 100, SEEK_SET);
      fputc(c ^ 1, f);
    } else if (how == 1) {
      ck_assert_int_eq(ftruncate(fileno(f), 57), 0);
    } else {
      ck_assert_int_eq(ftruncate(fileno(f), 0), 0);
      fputs("not a cache file at all", f);
    }
    fclose(f);
    int64_t k = strop__textdata_tokenised;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "rebuilt");
    ck_assert_int_eq(strop__textdata_tokenised, k + 1);
    ck_assert(same_dataset(ds, fresh));
    strop_dataset_free(ds);
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "reused after rebuild");
    ck_assert_int_eq(strop__textdata_tokenised, k + 1);
    ck_assert(same_dataset(ds, fresh));
    strop_dataset_free(ds);
  }
  strop_dataset_free(fresh);
  /* a changed option, tokenizer or source: tokenised again, equal to a load without cache */
  for (int change = 0; change < 4; change++) {
    if (change == 0) o.max_length = 6;
    if (change == 1) o.padding = STROP_PAD_MAX_LENGTH;
    if (change == 2) strop_test_must(strop_tokenizer_add_token(t, "cat", 0, NULL), "add token");
    if (change == 3) put("cached.jsonl", "{\"text\": \"the cat\", \"label\": \"b\"}\n");
    o.cache_dir = NULL;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &fresh), "fresh");
    o.cache_dir = dir;
    int64_t k = strop__textdata_tokenised;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "changed");
    ck_assert_msg(strop__textdata_tokenised == k + 1, "change %d was not seen", change);
    ck_assert(same_dataset(ds, fresh));
    strop_dataset_free(ds);
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "changed, again");
    ck_assert_int_eq(strop__textdata_tokenised, k + 1);
    ck_assert(same_dataset(ds, fresh));
    strop_dataset_free(ds);
    strop_dataset_free(fresh);
  }
  /* a causal-LM dataset (targets, not labels) round-trips too */
  strop_text_options_init(&o);
  o.task = STROP_TEXT_CAUSAL_LM;
  o.max_length = 4;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &fresh), "lm fresh");
  o.cache_dir = dir;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "lm first");
  strop_dataset_free(ds);
  int64_t k = strop__textdata_tokenised;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "lm second");
  ck_assert_int_eq(strop__textdata_tokenised, k);
  ck_assert(same_dataset(ds, fresh));
  strop_dataset_free(ds);
  strop_dataset_free(fresh);
  /* a cache folder that cannot be made is named */
  put("plainfile", "x");
  char bad[700];
  snprintf(bad, sizeof bad, "%s/plainfile/cache", tmpdir());
  o.cache_dir = bad;
  ds = (strop_dataset *)&ds;
  ck_assert_int_eq(strop_dataset_load_text_file(path, t, &o, &ds), STROP_E_IO);
  ck_assert_ptr_null(ds);
  ck_assert_msg(strstr(strop_last_error(), "plainfile"), "%s", strop_last_error());
  strop_tokenizer_free(t);
}
END_TEST

/* Splits (stratified), few-shot and class counts work on text datasets, and their batches
 * carry the masks of the samples they hold. */
START_TEST(splits_and_few_shot) {
  strop_tokenizer *t = wordpiece();
  char buf[4096];
  size_t n = 0;
  n += (size_t)snprintf(buf + n, sizeof buf - n, "text,label\n");
  const char *words[4] = {"cat", "the dog", "a big mat", "the cat sat on"};
  for (int i = 0; i < 40; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%s,%s\n", words[i % 4],
                          i % 4 == 3 ? "rare" : "common");
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(put("many.csv", buf), t, NULL, &ds), "load");
  int64_t counts[2];
  strop_test_must(strop_dataset_class_counts(ds, counts, 2), "counts");
  ck_assert_int_eq(counts[0], 30);
  ck_assert_int_eq(counts[1], 10);
  strop_dataset *tr = NULL, *va = NULL;
  strop_test_must(strop_dataset_split(ds, 0.8f, 0.2f, 1, STROP_SPLIT_STRATIFIED, &tr, &va, NULL),
                  "split");
  strop_test_must(strop_dataset_class_counts(va, counts, 2), "val counts");
  ck_assert_int_eq(counts[0], 6);
  ck_assert_int_eq(counts[1], 2);
  strop_dataset *few = NULL;
  strop_test_must(strop_dataset_few_shot(tr, 3, 2, &few), "few shot");
  ck_assert_int_eq(strop_dataset_size(few), 6);
  ck_assert_int_eq(strop_dataset_has_mask(few), 1);
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(few, 6, 0, 0, &it), "iter");
  strop_tensor *x = NULL, *y = NULL;
  int64_t rows = 0;
  strop_test_must(strop_batch_iter_next(it, &x, &y, &rows), "next");
  ck_assert_int_eq(rows, 6);
  int64_t T = strop_tensor_dim(x, 1);
  for (int64_t r = 0; r < rows; r++) {
    /* the rare class is the longest text: 6 tokens with [CLS] and [SEP] */
    const float *mr = strop_tensor_data_const(strop_batch_iter_mask(it)) + r * T;
    int64_t len = 0;
    while (len < T && mr[len] == 1.0f) len++;
    ck_assert_int_eq(strop_tensor_data(y)[r] == 1.0f, len == 6);
  }
  ck_assert_int_eq(T, 6);
  strop_batch_iter_free(it);
  strop_dataset_free(few);
  strop_dataset_free(tr);
  strop_dataset_free(va);
  strop_dataset_free(ds);
  strop_tokenizer_free(t);
}
END_TEST

/* A causal-LM text dataset trains through strop_trainer_fit with batches of varying length. */
START_TEST(fit_on_text) {
  strop_tokenizer *t = bpe();
  const char *path = put("fit.jsonl", "{\"text\": \"the cat sat on the mat.\"}\n"
                                      "{\"text\": \"a dog ran.\"}\n"
                                      "{\"text\": \"the big cat sat.\"}\n"
                                      "{\"text\": \"a cat.\"}\n");
  strop_text_options o;
  strop_text_options_init(&o);
  o.task = STROP_TEXT_CAUSAL_LM;
  o.pack = 0;
  o.max_length = 16;
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
  int64_t V = strop_tokenizer_vocab_size(t);
  char spec[1024];
  snprintf(spec, sizeof spec,
           "input: [16]\nlayers:\n"
           "  - {name: emb, type: embedding, num_embeddings: %lld, embedding_dim: 16}\n"
           "  - {name: head, type: linear, in_features: 16, out_features: %lld}\n",
           (long long)V, (long long)V);
  strop_model *m = NULL;
  strop_test_must(strop_model_load_spec_string(spec, &m), "model");
  strop_optimizer *opt = NULL;
  strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "opt");
  strop_test_must(strop_optimizer_set_double(opt, STROP_OPT_LR, 0.05), "lr");
  strop_trainer *tr = NULL;
  strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
  strop_metrics *before = NULL, *after = NULL;
  strop_test_must(strop_trainer_eval_dataset(tr, ds, 2, &before), "eval");
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 2, 1, STROP_ITER_SHUFFLE, &it), "iter");
  strop_fit_options fo;
  strop_fit_options_init(&fo);
  fo.epochs = 20;
  strop_test_must(strop_trainer_fit(tr, it, NULL, &fo), "fit");
  strop_test_must(strop_trainer_eval_dataset(tr, ds, 2, &after), "eval");
  double l0 = strop_metrics_get(before, STROP_METRIC_LOSS);
  double l1 = strop_metrics_get(after, STROP_METRIC_LOSS);
  ck_assert_msg(l1 < 0.5 * l0, "loss %g -> %g", l0, l1);
  /* perplexity is exp of the per-token loss; per-token accuracy counts no padding */
  double ppl = strop_metrics_get(after, STROP_METRIC_PERPLEXITY);
  ck_assert_msg(isfinite(ppl) && ppl >= 1.0 && ppl < exp(l0), "perplexity %g", ppl);
  double acc = strop_metrics_get(after, STROP_METRIC_TOKEN_ACCURACY);
  ck_assert_msg(acc > 0.3 && acc <= 1.0, "token accuracy %g", acc);
  ck_assert(acc == strop_metrics_get(after, STROP_METRIC_ACCURACY));
  strop_metrics_free(before);
  strop_metrics_free(after);
  strop_batch_iter_free(it);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  strop_dataset_free(ds);
  strop_tokenizer_free(t);
}
END_TEST

/* Text pairs carry token types: the tokenizer's pair template's (0 for [CLS] A [SEP], 1 for
 * B [SEP]), 0 at padding, in every batch (shuffled, prefetched, cut to the longest row like the
 * mask) and through the tokenisation cache. */
START_TEST(pairs_carry_token_types) {
  strop_tokenizer *t = wordpiece();
  const char *path = put("types.jsonl",
                         "{\"a\": \"the cat\", \"b\": \"a dog ran\", \"label\": 0}\n"
                         "{\"a\": \"cat\", \"b\": \"dog\", \"label\": 1}\n"
                         "{\"a\": \"the big dog sat\", \"b\": \"on a mat\", "
                         "\"label\": 1}\n");
  const char *a[3] = {"the cat", "cat", "the big dog sat"},
             *b[3] = {"a dog ran", "dog", "on a mat"};
  strop_text_options o;
  strop_text_options_init(&o);
  o.text_field = "a";
  o.pair_field = "b";
  o.max_length = 16;
  char dir[600];
  snprintf(dir, sizeof dir, "%s/types_cache", tmpdir());
  for (int pass = 0; pass < 3; pass++) {
    o.cache_dir = pass ? dir : NULL; /* pass 1 writes the cache, pass 2 reads it */
    strop_dataset *ds = NULL;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
    ck_assert_int_eq(strop_dataset_has_token_types(ds), 1);
    for (int flags = 0; flags < 4; flags++) {
      int f = ((flags & 1) ? STROP_ITER_SHUFFLE : 0) | ((flags & 2) ? STROP_ITER_PREFETCH : 0);
      strop_batch_iter *it = NULL;
      strop_test_must(strop_batch_iter_create(ds, 2, 3, f, &it), "iter");
      for (int epoch = 0; epoch < 2; epoch++)
        for (;;) {
          strop_tensor *x = NULL, *y = NULL;
          int64_t rows = 0;
          strop_test_must(strop_batch_iter_next(it, &x, &y, &rows), "next");
          if (!rows) {
            ck_assert_ptr_null(strop_batch_iter_token_types(it));
            break;
          }
          const strop_tensor *m = strop_batch_iter_mask(it),
                             *k = strop_batch_iter_token_types(it);
          ck_assert_ptr_nonnull(k);
          ck_assert_int_eq(strop_tensor_dim(k, 0), rows);
          const int64_t w = strop_tensor_dim(x, 1);
          ck_assert_int_eq(strop_tensor_dim(k, 1), w);
          ck_assert_int_eq(strop_tensor_dim(m, 1), w);
          for (int64_t r = 0; r < rows; r++) {
            const float *xr = strop_tensor_data_const(x) + r * w;
            int i = 0; /* which record: the one whose encoding the row holds */
            int64_t want[32], types[32], ids[32];
            for (; i < 3; i++) {
              strop_encode_options eo;
              strop_encode_options_init(&eo);
              eo.padding = STROP_PAD_NONE;
              const char *ta[1] = {a[i]}, *tb[1] = {b[i]};
              int64_t n = 0;
              strop_test_must(
                  strop_tokenizer_encode_batch(t, ta, tb, 1, &eo, ids, types, NULL, NULL, 32, &n),
                  "encode");
              int same = n <= w;
              for (int64_t c = 0; c < w && same; c++)
                same = xr[c] == (c < n ? (float)ids[c] : 0.0f);
              if (!same) continue;
              for (int64_t c = 0; c < w; c++) want[c] = c < n ? types[c] : 0;
              break;
            }
            ck_assert_int_lt(i, 3);
            int ones = 0;
            for (int64_t c = 0; c < w; c++) {
              ck_assert_msg(strop_tensor_data_const(k)[r * w + c] == (float)want[c],
                            "pass %d flags %d record %d position %lld: type %g, want %lld", pass,
                            flags, i, (long long)c, (double)strop_tensor_data_const(k)[r * w + c],
                            (long long)want[c]);
              ones += want[c] == 1;
            }
            ck_assert_int_gt(ones, 1); /* B and its [SEP] */
          }
        }
      strop_batch_iter_free(it);
    }
    strop_dataset_free(ds);
  }
  /* single texts carry none */
  o.pair_field = NULL;
  o.cache_dir = NULL;
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
  ck_assert_int_eq(strop_dataset_has_token_types(ds), 0);
  strop_dataset_free(ds);
  strop_tokenizer_free(t);
}
END_TEST

/* "Is cat in the first segment?": a bag of tokens cannot tell (cat, w) from (w, cat), so a model
 * that mean-pools its tokens learns it only when the token types reach it through fit and
 * eval. */
START_TEST(fit_on_pairs_uses_types) {
  strop_tokenizer *t = wordpiece();
  static const char *const words[] = {"dog", "sat", "ran", "on", "mat", "a", "big", "the"};
  char text[4096], *w = text;
  for (int i = 0; i < 8; i++) {
    w += sprintf(w, "{\"a\": \"cat\", \"b\": \"%s\", \"label\": 1}\n", words[i]);
    w += sprintf(w, "{\"a\": \"%s\", \"b\": \"cat\", \"label\": 0}\n", words[i]);
  }
  const char *path = put("follows.jsonl", text);
  strop_text_options o;
  strop_text_options_init(&o);
  o.text_field = "a";
  o.pair_field = "b";
  o.max_length = 8;
  for (int drop = 0; drop < 2; drop++) {
    strop_dataset *ds = NULL;
    strop_test_must(strop_dataset_load_text_file(path, t, &o, &ds), "load");
    if (drop) strop_test_must(strop_dataset_set_token_types(ds, NULL, 0), "drop types");
    ck_assert_int_eq(strop_dataset_has_token_types(ds), !drop);
    strop_model *m = NULL;
    strop_test_must(
        strop_model_load_spec_string(
            "input: [8]\nlayers:\n"
            "  - {name: tok, type: embedding, num_embeddings: 16, embedding_dim: 16}\n"
            "  - {name: seg, type: positional_embedding, num_embeddings: 2, positions: types}\n"
            "  - {name: act, type: gelu}\n"
            "  - {name: pool, type: mean_pool}\n"
            "  - {name: head, type: linear, in_features: 16, out_features: 2}\n",
            &m),
        "model");
    strop_optimizer *opt = NULL;
    strop_test_must(strop_optimizer_create(m, STROP_OPTIM_ADAM, &opt), "opt");
    strop_test_must(strop_optimizer_set_double(opt, STROP_OPT_LR, 0.03), "lr");
    strop_trainer *tr = NULL;
    strop_test_must(strop_trainer_create(m, opt, &tr), "trainer");
    strop_batch_iter *it = NULL;
    strop_test_must(strop_batch_iter_create(ds, 4, 1, STROP_ITER_SHUFFLE, &it), "iter");
    strop_fit_options fo;
    strop_fit_options_init(&fo);
    fo.epochs = 60;
    strop_test_must(strop_trainer_fit(tr, it, NULL, &fo), "fit");
    strop_metrics *mt = NULL;
    strop_test_must(strop_trainer_eval_dataset(tr, ds, 4, &mt), "eval");
    const double acc = strop_metrics_get(mt, STROP_METRIC_ACCURACY);
    if (drop) ck_assert_msg(acc <= 0.5, "without types: accuracy %g", acc);
    else ck_assert_msg(acc == 1.0, "with types: accuracy %g", acc);
    if (!drop) { /* predict_text on raw pairs passes the pair template's types too */
      const char *first[2] = {"cat", "big"}, *second[2] = {"big", "cat"};
      strop_prediction *p = NULL;
      strop_test_must(strop_model_predict_text(m, t, first, second, 2, 1, &p), "predict");
      ck_assert_int_eq(strop_prediction_class(p, 0, 0), 1);
      ck_assert_int_eq(strop_prediction_class(p, 1, 0), 0);
      strop_prediction_free(p);
    }
    strop_metrics_free(mt);
    strop_batch_iter_free(it);
    strop_trainer_free(tr);
    strop_optimizer_free(opt);
    strop_model_free(m);
    strop_dataset_free(ds);
  }
  strop_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------------ errors ---- */

static void refuse(strop_tokenizer *t, const char *name, const char *content,
                   const strop_text_options *o, strop_status want, const char *needle) {
  strop_dataset *ds = (strop_dataset *)1;
  strop_status st = strop_dataset_load_text_file(put(name, content), t, o, &ds);
  ck_assert_msg(st == want, "%s: status %d, want %d: %s", name, st, want, strop_last_error());
  ck_assert_ptr_null(ds);
  ck_assert_msg(strstr(strop_last_error(), needle), "%s: '%s' lacks '%s'", name,
                strop_last_error(), needle);
}

/* strop_dataset_set_token_types: bad arguments leave the dataset as it was */
START_TEST(token_types_errors) {
  int64_t live = strop__alloc_live();
  enum { N = 3, T = 4 };
  float x[N * T] = {0}, y[N] = {0, 1, 0}, types[N * T] = {0};
  const int64_t dims[1] = {T};
  strop_dataset *ds = NULL, *view = NULL;
  strop_test_must(strop_dataset_from_memory(x, y, N, 1, dims, 0, NULL, 2, &ds), "ds");
  ck_assert_int_eq(strop_dataset_set_token_types(NULL, types, N * T), STROP_E_INVALID_ARG);
  ck_assert(strstr(strop_last_error(), "ds is NULL"));
  ck_assert_int_eq(strop_dataset_set_token_types(ds, types, N * T - 1), STROP_E_SHAPE);
  ck_assert(strstr(strop_last_error(), "11 token types for 3 samples of 4 positions"));
  types[6] = 1.5f;
  ck_assert_int_eq(strop_dataset_set_token_types(ds, types, N * T), STROP_E_INVALID_ARG);
  ck_assert_msg(strstr(strop_last_error(), "token type 1.5 at sample 1, position 2"), "%s",
                strop_last_error());
  types[6] = -1.0f;
  ck_assert_int_eq(strop_dataset_set_token_types(ds, types, N * T), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_has_token_types(ds), 0);
  types[6] = 1.0f;
  const int64_t pick[2] = {2, 0};
  strop_test_must(strop_dataset_subset(ds, pick, 2, &view), "view");
  ck_assert_int_eq(strop_dataset_set_token_types(view, types, N * T), STROP_E_INVALID_ARG);
  ck_assert(strstr(strop_last_error(), "view"));
  strop_test_must(strop_dataset_set_token_types(ds, types, N * T), "set");
  ck_assert_int_eq(strop_dataset_has_token_types(view), 1);
  /* a view's batch carries its own rows' types */
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(view, 2, 0, 0, &it), "iter");
  ck_assert_ptr_null(strop_batch_iter_token_types(it));
  ck_assert_ptr_null(strop_batch_iter_token_types(NULL));
  strop_tensor *bx = NULL, *by = NULL;
  int64_t rows = 0;
  strop_test_must(strop_batch_iter_next(it, &bx, &by, &rows), "next");
  const float *k = strop_tensor_data_const(strop_batch_iter_token_types(it));
  ck_assert(k[2] == 0.0f && k[T + 2] == 0.0f); /* samples 2 and 0 */
  strop_batch_iter_free(it);
  strop_dataset_free(view);
  strop_test_must(strop_dataset_set_token_types(ds, NULL, 0), "remove");
  ck_assert_int_eq(strop_dataset_has_token_types(ds), 0);
  strop_dataset_free(ds);
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

START_TEST(bad_inputs) {
  int64_t live = strop__alloc_live();
  strop_tokenizer *t = wordpiece();
  refuse(t, "bad1.jsonl", "{\"text\": \"cat\", \"label\": 0}\n{\"text\": \"cat\", label: 1}\n",
         NULL, STROP_E_FORMAT, "bad1.jsonl:2:");
  refuse(t, "bad2.jsonl",
         "{\"text\": \"cat\", \"label\": 0}\n\n{\"txt\": \"cat\", \"label\": 1}\n", NULL,
         STROP_E_FORMAT, "bad2.jsonl:3: no field \"text\" (the object has \"txt\", \"label\")");
  refuse(t, "bad3.jsonl", "{\"text\": \"\", \"label\": 0}\n", NULL, STROP_E_FORMAT,
         "bad3.jsonl:1: the field \"text\" is empty");
  refuse(t, "bad4.jsonl",
         "{\"text\": \"cat\", \"label\": 0}\n{\"text\": \"c\xff"
         "t\", "
         "\"label\": 0}\n",
         NULL, STROP_E_FORMAT, "bad4.jsonl:2: invalid UTF-8 (byte 0xFF at byte 12");
  refuse(t, "bad5.jsonl", "{\"text\": 3, \"label\": 0}\n", NULL, STROP_E_FORMAT,
         "field \"text\" must be a string");
  refuse(t, "bad6.jsonl", "{\"text\": \"cat\", \"label\": -1}\n", NULL, STROP_E_FORMAT,
         "\"label\" must be a string or an integer >= 0");
  refuse(t, "bad7.jsonl", "[1, 2]\n", NULL, STROP_E_FORMAT,
         "bad7.jsonl:1: expected a JSON object");
  refuse(t, "bad8.jsonl", "\n\n", NULL, STROP_E_FORMAT, "no records");
  refuse(t, "bad1.csv", "text,lbl\ncat,0\n", NULL, STROP_E_FORMAT,
         "bad1.csv:1: no column \"label\" in the header (\"text\", \"lbl\")");
  refuse(t, "bad2.csv", "text,label\ncat,0\ndog\n", NULL, STROP_E_FORMAT,
         "bad2.csv:3: 1 fields, the header has 2");
  refuse(t, "bad3.csv", "text,label\n\"cat,0\n", NULL, STROP_E_FORMAT,
         "bad3.csv:2: a quoted field is not closed");
  refuse(t, "bad4.csv", "text,label\n\"cat\"x,0\n", NULL, STROP_E_FORMAT,
         "after a closing quote");
  refuse(t, "bad5.csv", "text,label\n,0\n", NULL, STROP_E_FORMAT,
         "bad5.csv:2: the column \"text\" is empty");
  refuse(t, "bad.txt", "the cat\n", NULL, STROP_E_INVALID_ARG, "only the causal-LM task");
  strop_text_options o;
  strop_text_options_init(&o);
  o.max_length = 3;
  o.truncate = 0;
  refuse(t, "long.jsonl",
         "{\"text\": \"cat\", \"label\": 0}\n{\"text\": \"the cat\", \"label\": 0}\n", &o,
         STROP_E_FORMAT, "long.jsonl:2: the text has 4 tokens, more than 3");
  o.max_length = 1; /* too short for [CLS] ... [SEP] */
  o.truncate = 1;
  refuse(t, "short.jsonl", "{\"text\": \"cat\", \"label\": 0}\n", &o, STROP_E_INVALID_ARG,
         "short.jsonl:1");
  strop_text_options_init(&o);
  o.task = STROP_TEXT_CAUSAL_LM;
  strop_tokenizer *noeos = bpe_eos(0);
  refuse(noeos, "one.txt", "c", &o, STROP_E_FORMAT, "windows need at least 2");
  o.pack = 0;
  refuse(noeos, "one.jsonl", "{\"text\": \"c\"}\n", &o, STROP_E_FORMAT,
         "one.jsonl:1: the text gives 1 token");
  strop_tokenizer_free(noeos);
  /* arguments */
  strop_dataset *ds = (strop_dataset *)1;
  ck_assert_int_eq(strop_dataset_load_text_file(NULL, t, NULL, &ds), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(ds);
  ck_assert_int_eq(strop_dataset_load_text_file("x.jsonl", NULL, NULL, &ds), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_load_text_file("x.jsonl", t, NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_ne(strop_last_error()[0], '\0');
  ck_assert_int_eq(strop_dataset_load_text_file("/nonexistent/x.jsonl", t, NULL, &ds),
                   STROP_E_IO);
  const struct {
    int field;
    int64_t v;
    const char *needle;
  } bad[] = {{0, 9, "unknown format 9"}, {1, 7, "unknown task 7"}, {2, 0, "max_length"},
             {3, -1, "stride"},          {4, 0, "padding"},        {5, 0, "num_classes"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    strop_text_options_init(&o);
    if (bad[i].field == 0) o.format = (int)bad[i].v;
    if (bad[i].field == 1) o.task = (int)bad[i].v;
    if (bad[i].field == 2) o.max_length = bad[i].v;
    if (bad[i].field == 3) o.stride = bad[i].v;
    if (bad[i].field == 4) o.padding = (int)bad[i].v;
    if (bad[i].field == 5) o.num_classes = bad[i].v;
    ck_assert_int_eq(strop_dataset_load_text_file("x.jsonl", t, &o, &ds), STROP_E_INVALID_ARG);
    ck_assert_msg(strstr(strop_last_error(), bad[i].needle), "%s", strop_last_error());
  }
  o.size = 2;
  ck_assert_int_eq(strop_dataset_load_text_file("x.jsonl", t, &o, &ds), STROP_E_INVALID_ARG);
  strop_text_options_init(NULL);
  strop_tokenizer_free(t);
  ck_assert_int_eq(strop__alloc_live(), live);
}
END_TEST

/* ------------------------------------------------------------------ memory ---- */

typedef struct sweep_ctx {
  strop_tokenizer *t;
  const char *path;
  strop_text_options o;
  strop_dataset *ds;
} sweep_ctx;

static int op_load(void *p) {
  sweep_ctx *c = p;
  strop_status st = strop_dataset_load_text_file(c->path, c->t, &c->o, &c->ds);
  if (st) return st;
  strop_batch_iter *it = NULL;
  st = strop_batch_iter_create(c->ds, 2, 1, STROP_ITER_SHUFFLE, &it);
  strop_tensor *x, *y;
  int64_t rows;
  if (!st) st = strop_batch_iter_next(it, &x, &y, &rows);
  strop_batch_iter_free(it);
  if (st) {
    strop_dataset_free(c->ds);
    c->ds = NULL;
  }
  return st;
}

static void cleanup_load(void *p) {
  sweep_ctx *c = p;
  strop_dataset_free(c->ds);
  c->ds = NULL;
}

START_TEST(allocation_sweep) {
  sweep_ctx c;
  memset(&c, 0, sizeof c);
  c.t = wordpiece();
  /* warm the tokenizer's caches so the sweep sees the dataset's allocations */
  strop_text_options_init(&c.o);
  c.path = put("sweep.csv", "a,text,label\n1,\"the cat, sat\",pos\n2,a dog,neg\n3,mat,pos\n");
  c.o.pair_field = "a";
  ck_assert_int_eq(op_load(&c), 0); /* the tokenizer's cache warm */
  cleanup_load(&c);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, cleanup_load, &c), 10);
  strop_tokenizer_free(c.t);
  c.t = bpe();
  strop_text_options_init(&c.o);
  c.o.task = STROP_TEXT_PROMPT_RESPONSE;
  c.o.prompt_template = "Q: {prompt} A:";
  c.path = put("sweep.jsonl", "{\"prompt\": \"the cat\", \"response\": \"sat\"}\n"
                              "{\"prompt\": \"a dog\", \"response\": \"ran on the mat\"}\n");
  ck_assert_int_eq(op_load(&c), 0); /* the tokenizer's cache warm */
  cleanup_load(&c);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, cleanup_load, &c), 10);
  strop_text_options_init(&c.o);
  c.o.task = STROP_TEXT_CAUSAL_LM;
  c.o.max_length = 4;
  c.path = put("sweep.txt", "the cat sat on the mat. the dog ran.");
  ck_assert_int_eq(op_load(&c), 0); /* the tokenizer's cache warm */
  cleanup_load(&c);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, cleanup_load, &c), 5);
  /* a chat template's renders; the cache written (first sweep), then read (second) */
  strop_text_options_init(&c.o);
  c.o.task = STROP_TEXT_PROMPT_RESPONSE;
  c.o.chat = 1;
  c.o.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{% endfor %}"
                      "{% if add_generation_prompt %}<assistant>{% endif %}";
  c.path = put("sweep.jsonl", "{\"prompt\": \"the cat\", \"response\": \"sat\"}\n"
                              "{\"prompt\": \"a dog\", \"response\": \"ran on the mat\"}\n");
  ck_assert_int_eq(op_load(&c), 0);
  cleanup_load(&c);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, cleanup_load, &c), 10);
  char dir[600];
  snprintf(dir, sizeof dir, "%s/sweepcache", tmpdir());
  c.o.cache_dir = dir;
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, cleanup_load, &c), 10);
  int64_t k = strop__textdata_tokenised;
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, cleanup_load, &c), 5);
  ck_assert_int_eq(strop__textdata_tokenised, k); /* every run read the cache */
  strop_tokenizer_free(c.t);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("textdata");
  TCase *tc = tcase_create("sources");
  tcase_add_test(tc, classify_jsonl_ids_equal_encode);
  tcase_add_test(tc, csv_pairs_quotes_and_integer_labels);
  tcase_add_test(tc, causal_lm_packed_windows);
  tcase_add_test(tc, prompt_tokens_masked_out);
  tcase_add_test(tc, prompt_response_chat_template);
  suite_add_tcase(s, tc);
  tc = tcase_create("batches");
  tcase_add_test(tc, batches_cut_to_longest);
  tcase_add_test(tc, prefetch_batches_carry_their_masks);
  tcase_add_test(tc, splits_and_few_shot);
  tcase_add_test(tc, fit_on_text);
  tcase_add_test(tc, pairs_carry_token_types);
  tcase_add_test(tc, fit_on_pairs_uses_types);
  suite_add_tcase(s, tc);
  tc = tcase_create("cache");
  tcase_add_test(tc, cache_reuses_and_invalidates);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, bad_inputs);
  tcase_add_test(tc, token_types_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("memory");
  tcase_add_test(tc, allocation_sweep);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return strop_test_run(suite()); }
