/* SPDX-License-Identifier: MIT */
/* strop tool — `strop generate MODEL_DIR`: a Hugging Face causal LM folder and its
 * tokenizer.json continue a prompt; the text is printed as the tokens come. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static int fail(const char *what, strop_status s) {
  fprintf(stderr, "strop generate: %s: %s\n  (%s)\n", what, strop_last_error(),
          strop_status_str(s));
  switch (s) {
    case STROP_E_FORMAT:
    case STROP_E_NOT_FOUND:
    case STROP_E_UNSUPPORTED:
    case STROP_E_SHAPE:
    case STROP_E_INVALID_ARG: return 3;
    default: return 1;
  }
}

/* What the callback streams: the ids so far and how much of their text is printed. */
typedef struct stream {
  strop_tokenizer *tok;
  int64_t *ids;
  int64_t n, cap;
  char *text;
  size_t tcap, printed;
  volatile sig_atomic_t *interrupted;
  int failed;
} stream;

/* Prints the text of the ids beyond what is printed; a trailing U+FFFD (a character whose
 * bytes are still coming) waits unless final. */
static void flush_text(stream *s, int final) {
  int64_t len = strop_tokenizer_decode(s->tok, s->ids, s->n, 1, s->text, s->tcap);
  if (len >= 0 && (size_t)len >= s->tcap) {
    char *t = realloc(s->text, (size_t)len + 1);
    if (!t) {
      s->failed = 1;
      return;
    }
    s->text = t;
    s->tcap = (size_t)len + 1;
    len = strop_tokenizer_decode(s->tok, s->ids, s->n, 1, s->text, s->tcap);
  }
  if (len < 0) return;
  size_t end = (size_t)len;
  if (!final && end >= 3 && !memcmp(s->text + end - 3, "\xEF\xBF\xBD", 3)) end -= 3;
  if (end > s->printed) {
    fwrite(s->text + s->printed, 1, end - s->printed, stdout);
    fflush(stdout);
    s->printed = end;
  }
}

static int on_token(int64_t id, void *user_data) {
  stream *s = user_data;
  if (s->n < s->cap) s->ids[s->n++] = id;
  flush_text(s, 0);
  return *s->interrupted || s->failed;
}

int tool_cmd_generate(const tool_opts *o, volatile sig_atomic_t *interrupted) {
  if (o->nargs != 1) {
    fprintf(stderr, "strop generate: expected MODEL_DIR (see strop generate --help)\n");
    return 2;
  }
  const char *dir = o->args[0];
  strop_model *m = NULL;
  strop_tokenizer *tok = NULL;
  int64_t *prompt = NULL, *out = NULL;
  stream s = {.interrupted = interrupted};
  int rc = 0;
  strop_status st = strop_model_load_pretrained(dir, NULL, NULL, &m, NULL);
  if (st) return fail("loading the model", st);
  if ((st = strop_tokenizer_load(dir, NULL, &tok))) {
    rc = fail("loading the tokenizer", st);
    goto done;
  }
  int64_t np = 0;
  const int64_t bos = strop_tokenizer_special_id(tok, STROP_ROLE_BOS);
  const int64_t eos = strop_tokenizer_special_id(tok, STROP_ROLE_EOS);
  char *chat = NULL; /* --chat: the prompt as the chat template renders it */
  if (o->chat) {
    const char *roles[1] = {"user"}, *texts[1] = {o->prompt ? o->prompt : ""};
    size_t need = 0;
    if ((st = strop_tokenizer_apply_chat_template(tok, NULL, roles, texts, 1, 1, NULL, 0,
                                                  &need)) ||
        !(chat = malloc(need + 1)) ||
        (st = strop_tokenizer_apply_chat_template(tok, NULL, roles, texts, 1, 1, chat, need + 1,
                                                  &need))) {
      free(chat);
      rc = fail("rendering the chat template", st ? st : STROP_E_NOMEM);
      goto done;
    }
  }
  const char *ptext = chat ? chat : o->prompt;
  if (ptext && ptext[0]) {
    strop_encode_options eo;
    strop_encode_options_init(&eo);
    eo.add_special_tokens = !chat; /* a chat template writes its own */
    if ((st = strop_tokenizer_encode(tok, ptext, strlen(ptext), &eo, NULL, 0, &np)) ||
        !(prompt = malloc((size_t)(np ? np : 1) * sizeof *prompt)) ||
        (st = strop_tokenizer_encode(tok, ptext, strlen(ptext), &eo, prompt, np, &np))) {
      free(chat);
      rc = st ? fail("encoding the prompt", st) : fail("encoding the prompt", STROP_E_NOMEM);
      goto done;
    }
  }
  free(chat);
  if (np == 0) { /* start from the beginning-of-sequence token, GPT-2's end-of-text */
    const int64_t start = bos >= 0 ? bos : eos;
    if (start < 0) {
      fprintf(stderr, "strop generate: the tokenizer has neither a beginning- nor an "
                      "end-of-sequence token to start from: give --prompt\n");
      rc = 2;
      goto done;
    }
    free(prompt);
    if (!(prompt = malloc(sizeof *prompt))) {
      rc = fail("starting", STROP_E_NOMEM);
      goto done;
    }
    prompt[0] = start;
    np = 1;
  }
  strop_generate_options go;
  strop_generate_options_init(&go);
  go.max_new_tokens = o->max_tokens;
  go.temperature = (float)o->temperature;
  go.top_k = o->top_k;
  go.top_p = (float)o->top_p;
  go.seed = o->seed >= 0 ? (uint64_t)o->seed : 0;
  if (eos >= 0) {
    go.stop_ids = &eos;
    go.num_stop_ids = 1;
  }
  go.on_token = on_token;
  go.user_data = &s;
  s.tok = tok;
  s.cap = o->max_tokens;
  out = malloc((size_t)(o->max_tokens ? o->max_tokens : 1) * sizeof *out);
  s.ids = malloc((size_t)(o->max_tokens ? o->max_tokens : 1) * sizeof *s.ids);
  if (!out || !s.ids) {
    rc = fail("starting", STROP_E_NOMEM);
    goto done;
  }
  /* the prompt as the tokenizer reads it back (special tokens left out), then the new text;
   * a chat prints only the reply */
  if (!o->chat) {
    char buf[1];
    int64_t len = strop_tokenizer_decode(tok, prompt, np, 1, buf, 0);
    char *pt = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (pt && strop_tokenizer_decode(tok, prompt, np, 1, pt, (size_t)len + 1) == len)
      fwrite(pt, 1, (size_t)len, stdout);
    free(pt);
    fflush(stdout);
  }
  int64_t count = 0;
  st = strop_generate(m, prompt, np, &go, out, o->max_tokens, &count);
  if (st == STROP_OK || st == STROP_E_CANCELLED) flush_text(&s, 1);
  fputc('\n', stdout);
  if (st == STROP_E_CANCELLED && *interrupted) rc = 130;
  else if (st == STROP_E_CANCELLED && s.failed) rc = fail("printing", STROP_E_NOMEM);
  else if (st) rc = fail("generating", st);
done:
  if (fflush(stdout) && !rc) rc = 1;
  free(prompt);
  free(out);
  free(s.ids);
  free(s.text);
  strop_tokenizer_free(tok);
  strop_model_free(m);
  return rc;
}
