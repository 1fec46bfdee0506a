/* SPDX-License-Identifier: MIT */
/* strop fuzz target — chat templates: the input is a Jinja template, parsed and rendered over a
 * fixed conversation with and without the generation prompt. Never crashes, never leaks, stays
 * within its bounds; a render reports its length and writes a NUL-terminated prefix. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/text_impl.h"

static const char VOCAB[] =
    "{\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, "
    "\"<s>\": 1, \"</s>\": 2}}, \"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", "
    "\"special\": "
    "true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}], \"post_processor\": "
    "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", "
    "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], "
    "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static strop_tokenizer *tok;
  if (!tok && strop__tx_load_json(VOCAB, strlen(VOCAB), "fuzz.json", &tok)) __builtin_trap();
  if (size > 65536) return 0;
  char *tmpl = malloc(size + 1);
  if (!tmpl) return 0;
  memcpy(tmpl, data, size);
  tmpl[size] = '\0';
  static const char *const roles[4] = {"system", "user", "assistant", "user"};
  static const char *const texts[4] = {"Be brief.", " Hi there ", "Hello.\n", "Caf\xc3\xa9"};
  char buf[256];
  for (int gen = 0; gen < 2; gen++) {
    size_t need = 0;
    memset(buf, 'x', sizeof buf);
    if (strop_tokenizer_apply_chat_template(tok, tmpl, roles, texts, 4, gen, buf, sizeof buf,
                                            &need) == STROP_OK) {
      size_t w = need < sizeof buf - 1 ? need : sizeof buf - 1;
      if (buf[w] != '\0') __builtin_trap(); /* the text may hold NULs ('\0' escapes) */
    } else if (need != 0 || strop_last_error()[0] == '\0') {
      __builtin_trap();
    }
  }
  free(tmpl);
  return 0;
}
