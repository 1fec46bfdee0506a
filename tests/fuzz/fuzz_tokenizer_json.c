/* SPDX-License-Identifier: MIT */
/* strop fuzz target — tokenizer.json: the JSON reader and every component parser, then the
 * tokenizer at work on fixed texts and on the input's own bytes (encode, batch with truncation
 * and padding, decode), and the writer, whose output must load again. Never crashes, never
 * leaks, never returns an id outside [0, vocab size). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/text_impl.h"

static void check_ids(const strop_tokenizer *t, const int64_t *ids, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= strop_tokenizer_vocab_size(t)) __builtin_trap();
}

static void exercise(strop_tokenizer *t, const char *raw, size_t rawn) {
  static const char *texts[] = {"Hello world, it's 2024!",
                                "  spaces  and\ttabs\n",
                                "Caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80",
                                "a\xff\xfe invalid",
                                "",
                                "<s>[CLS]<|endoftext|>[MASK]"};
  int64_t ids[4096], n;
  char out[8192];
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    if (strop_tokenizer_encode(t, texts[i], strlen(texts[i]), NULL, ids, 4096, &n) != STROP_OK)
      continue;
    if (n > 4096) continue;
    check_ids(t, ids, n);
    (void)strop_tokenizer_decode(t, ids, n, (int)(i & 1), out, sizeof out);
  }
  if (strop_tokenizer_encode(t, raw, rawn, NULL, ids, 4096, &n) == STROP_OK && n <= 4096) {
    check_ids(t, ids, n);
    (void)strop_tokenizer_decode(t, ids, n, 0, out, sizeof out);
  }
  const char *pairs[3] = {"world", NULL, "x y z"};
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.max_length = 7;
  o.pad_id = 0;
  o.padding_side = STROP_SIDE_LEFT;
  int64_t types[4096], mask[4096], offs[8192], w;
  if (strop_tokenizer_encode_batch(t, texts, pairs, 3, &o, ids, types, mask, offs, 4096, &w) ==
          STROP_OK &&
      3 * w <= 4096)
    check_ids(t, ids, 3 * w);
  for (int64_t id = 0; id < strop_tokenizer_vocab_size(t) && id < 64; id++) {
    (void)strop_tokenizer_id_to_token(t, id, out, sizeof out);
    (void)strop_tokenizer_token_flags(t, id);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1 << 16)) return 0;
  strop_tokenizer *t = NULL;
  if (strop__tx_load_json((const char *)data, size, "fuzz.json", &t) != STROP_OK) return 0;
  exercise(t, (const char *)data, size);
  char *saved = NULL;
  size_t n = 0;
  if (strop__tx_save_json(t, &saved, &n) == STROP_OK) {
    strop_tokenizer *u = NULL;
    strop_status st = strop__tx_load_json(saved, n, "fuzz-saved.json", &u);
    /* what the writer writes, the reader reads (an out-of-memory aside) */
    if (st != STROP_OK && st != STROP_E_NOMEM) __builtin_trap();
    strop_tokenizer_free(u);
    strop__free(saved);
  }
  strop_tokenizer_free(t);
  return 0;
}
