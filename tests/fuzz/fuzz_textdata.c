/* SPDX-License-Identifier: MIT */
/* strop fuzz target — the text-data reader (strop__text_dataset_parse: JSON Lines, CSV and
 * plain text, tokenised into samples). The first byte picks the options (format, task, a text
 * pair, truncation, max_length); the rest is the file. The tokenizer, a small WordPiece with a
 * [CLS] A [SEP] B [SEP] template, is loaded once. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "data/data_impl.h"
#include "text/text_impl.h"

static const char TOKENIZER[] =
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
    " \"[CLS]\": 2, \"[SEP]\": 3, \"the\": 4, \"cat\": 5, \"dog\": 6, \"a\": 7, \"##s\": 8,"
    " \".\": 9}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static strop_tokenizer *tok;
  if (!tok && strop__tx_load_json(TOKENIZER, sizeof TOKENIZER - 1, "fuzz.json", &tok)) return 0;
  if (size < 1) return 0;
  uint8_t b = data[0];
  static const int formats[4] = {STROP_TEXT_JSONL, STROP_TEXT_CSV, STROP_TEXT_PLAIN,
                                 STROP_TEXT_JSONL};
  static const int64_t lengths[4] = {1, 4, 16, 64};
  strop_text_options o;
  strop_text_options_init(&o);
  o.format = formats[b & 3];
  o.task = ((b >> 2) & 3) % 3;
  if (o.format == STROP_TEXT_PLAIN) o.task = STROP_TEXT_CAUSAL_LM;
  if (o.task == STROP_TEXT_CLASSIFY && (b & 0x10)) o.pair_field = "pair";
  o.truncate = (b >> 5) & 1;
  o.pack = (b >> 5) & 1;
  o.max_length = lengths[b >> 6];
  strop_dataset *ds = NULL;
  if (strop__text_dataset_parse(data + 1, size - 1, "fuzz.jsonl", tok, &o, &ds) != STROP_OK)
    return 0;
  float in[64], tgt[64];
  volatile float acc = 0;
  for (int64_t i = 0; i < strop_dataset_size(ds); i++)
    if (strop_dataset_get(ds, i, in, 64, tgt, 64) == STROP_OK) acc += in[0] + tgt[0];
  strop_dataset_free(ds);
  return 0;
}
