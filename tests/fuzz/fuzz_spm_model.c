/* SPDX-License-Identifier: MIT */
/* strop fuzz target — SentencePiece .model files: the bounded protobuf reader, the piece
 * table, the precompiled character map, then SentencePiece's normalizer, unigram Viterbi or
 * BPE and decoder on fixed texts and on the input's own bytes. Never crashes, never leaks,
 * never returns an id outside [0, vocab size). */
#include <stdint.h>
#include <string.h>

#include "text/text_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > (1 << 18)) return 0;
  strop_tokenizer *t = NULL;
  if (strop__tx_load_spm(data, size, "fuzz.model", size & 1, (size >> 1) & 1, &t) != STROP_OK)
    return 0;
  static const char *texts[] = {"Hello world, it's 2024!", "  spaces  and\ttabs ",
                                "Caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80", "",
                                "a\xff\xfe invalid"};
  int64_t ids[4096], n;
  char out[8192];
  for (size_t i = 0; i <= sizeof texts / sizeof texts[0]; i++) {
    const char *s = i < sizeof texts / sizeof texts[0] ? texts[i] : (const char *)data;
    size_t len = i < sizeof texts / sizeof texts[0] ? strlen(s) : (size < 4096 ? size : 4096);
    if (strop_tokenizer_encode(t, s, len, NULL, ids, 4096, &n) != STROP_OK || n > 4096) continue;
    for (int64_t k = 0; k < n; k++)
      if (ids[k] < 0 || ids[k] >= strop_tokenizer_vocab_size(t)) __builtin_trap();
    (void)strop_tokenizer_decode(t, ids, n, (int)(i & 1), out, sizeof out);
  }
  strop_tokenizer_free(t);
  return 0;
}
