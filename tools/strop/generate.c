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

/* The ids of one prompt text (NULL or empty: the beginning-of-sequence token, else GPT-2's
 * end-of-text) into a new array *out of *np ids; 0 or the exit status after a message. */
static int encode_prompt(strop_tokenizer *tok, const char *text, int chat, int64_t **out,
                         int64_t *np) {
  int64_t n = 0, *ids = NULL;
  strop_status st;
  char *rendered = NULL; /* --chat: the prompt as the chat template renders it */
  *out = NULL;
  if (chat) {
    const char *roles[1] = {"user"}, *texts[1] = {text ? text : ""};
    size_t need = 0;
    if ((st = strop_tokenizer_apply_chat_template(tok, NULL, roles, texts, 1, 1, NULL, 0,
                                                  &need)) ||
        !(rendered = malloc(need + 1)) ||
        (st = strop_tokenizer_apply_chat_template(tok, NULL, roles, texts, 1, 1, rendered,
                                                  need + 1, &need))) {
      free(rendered);
      return fail("rendering the chat template", st ? st : STROP_E_NOMEM);
    }
    text = rendered;
  }
  if (text && text[0]) {
    strop_encode_options eo;
    strop_encode_options_init(&eo);
    eo.add_special_tokens = !chat; /* a chat template writes its own */
    if ((st = strop_tokenizer_encode(tok, text, strlen(text), &eo, NULL, 0, &n))) {
      free(rendered);
      return fail("encoding the prompt", st);
    }
    if (!(ids = malloc((size_t)(n ? n : 1) * sizeof *ids))) {
      free(rendered);
      return fail("encoding the prompt", STROP_E_NOMEM);
    }
    if ((st = strop_tokenizer_encode(tok, text, strlen(text), &eo, ids, n, &n))) {
      free(ids);
      free(rendered);
      return fail("encoding the prompt", st);
    }
  }
  free(rendered);
  if (n == 0) { /* start from the beginning-of-sequence token, GPT-2's end-of-text */
    const int64_t bos = strop_tokenizer_special_id(tok, STROP_ROLE_BOS);
    const int64_t start = bos >= 0 ? bos : strop_tokenizer_special_id(tok, STROP_ROLE_EOS);
    free(ids);
    if (start < 0) {
      fprintf(stderr, "strop generate: the tokenizer has neither a beginning- nor an "
                      "end-of-sequence token to start from: give --prompt\n");
      return 2;
    }
    if (!(ids = malloc(sizeof *ids))) return fail("starting", STROP_E_NOMEM);
    ids[0] = start;
    n = 1;
  }
  *out = ids;
  *np = n;
  return 0;
}

/* Prints the text of ids (special tokens left out) */
static void print_ids(strop_tokenizer *tok, const int64_t *ids, int64_t n) {
  char buf[1];
  int64_t len = strop_tokenizer_decode(tok, ids, n, 1, buf, 0);
  char *t = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (t && strop_tokenizer_decode(tok, ids, n, 1, t, (size_t)len + 1) == len)
    fwrite(t, 1, (size_t)len, stdout);
  free(t);
}

/* The prompt texts: the --prompt ones, then the lines of --prompts FILE (kept in *file_text,
 * split in place); NULL entries for none. 0 or the exit status. */
static int collect_prompts(const tool_opts *o, char **file_text, const char ***texts,
                           int64_t *n) {
  int64_t lines = 0;
  *file_text = NULL;
  if (o->prompts_file) {
    FILE *f = fopen(o->prompts_file, "rb");
    if (!f) {
      fprintf(stderr, "strop generate: cannot read %s\n", o->prompts_file);
      return 1;
    }
    size_t cap = 4096, len = 0, got;
    char *t = malloc(cap);
    while (t && (got = fread(t + len, 1, cap - len - 1, f)) > 0) {
      len += got;
      if (cap - len - 1 == 0) {
        char *bigger = realloc(t, cap * 2);
        if (!bigger) {
          free(t);
          t = NULL;
          break;
        }
        t = bigger;
        cap *= 2;
      }
    }
    fclose(f);
    if (!t) return fail("reading the prompts", STROP_E_NOMEM);
    t[len] = '\0';
    *file_text = t;
    for (char *p = t; *p; lines++) {
      char *nl = strchr(p, '\n');
      if (!nl) break;
      p = nl + 1;
    }
    if (len && t[len - 1] != '\n') lines++;
    if (lines == 0) {
      fprintf(stderr, "strop generate: %s holds no prompt\n", o->prompts_file);
      return 2;
    }
  }
  const int64_t total = o->nprompts + lines;
  *n = total ? total : 1;
  *texts = calloc((size_t)*n, sizeof **texts);
  if (!*texts) return fail("reading the prompts", STROP_E_NOMEM);
  for (int i = 0; i < o->nprompts; i++) (*texts)[i] = o->prompts[i];
  char *p = *file_text;
  for (int64_t k = 0; k < lines; k++) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    size_t l = strlen(p);
    if (l && p[l - 1] == '\r') p[l - 1] = '\0';
    (*texts)[o->nprompts + k] = p;
    p = nl ? nl + 1 : p + l;
  }
  return 0;
}

static int on_row(int64_t row, int64_t id, void *user_data) {
  (void)row;
  (void)id;
  return *(volatile sig_atomic_t *)user_data;
}

int tool_cmd_generate(const tool_opts *o, volatile sig_atomic_t *interrupted) {
  if (o->nargs != 1) {
    fprintf(stderr, "strop generate: expected MODEL_DIR (see strop generate --help)\n");
    return 2;
  }
  const char *dir = o->args[0];
  strop_model *m = NULL;
  strop_tokenizer *tok = NULL;
  int64_t *out = NULL, n = 0, *lens = NULL, *counts = NULL;
  int64_t **prompts = NULL;
  const char **texts = NULL;
  char *file_text = NULL;
  stream s = {.interrupted = interrupted};
  int rc = 0;
  strop_status st = strop_model_load_pretrained(dir, NULL, NULL, &m, NULL);
  if (st) return fail("loading the model", st);
  if ((st = strop_tokenizer_load(dir, NULL, &tok))) {
    rc = fail("loading the tokenizer", st);
    goto done;
  }
  if ((rc = collect_prompts(o, &file_text, &texts, &n))) goto done;
  prompts = calloc((size_t)n, sizeof *prompts);
  lens = calloc((size_t)n, sizeof *lens);
  counts = calloc((size_t)n, sizeof *counts);
  if (!prompts || !lens || !counts) {
    rc = fail("starting", STROP_E_NOMEM);
    goto done;
  }
  for (int64_t b = 0; b < n; b++)
    if ((rc = encode_prompt(tok, texts[b], o->chat, &prompts[b], &lens[b]))) goto done;
  const int64_t eos = strop_tokenizer_special_id(tok, STROP_ROLE_EOS);
  strop_generate_options go;
  strop_generate_options_init(&go);
  go.max_new_tokens = o->max_tokens;
  go.temperature = (float)o->temperature;
  go.top_k = o->top_k;
  go.top_p = (float)o->top_p;
  go.num_beams = o->num_beams > 1 ? o->num_beams : 1;
  /* a beam search calls back only once it is done, so it cannot see the interrupt flag: Ctrl-C
   * stops the process itself (nothing is being written) */
  if (go.num_beams > 1) signal(SIGINT, SIG_DFL);
  go.seed = o->seed >= 0 ? (uint64_t)o->seed : 0;
  if (eos >= 0) {
    go.stop_ids = &eos;
    go.num_stop_ids = 1;
  }
  const int64_t per = o->max_tokens ? o->max_tokens : 1;
  out = malloc((size_t)(n * per) * sizeof *out);
  if (!out) {
    rc = fail("starting", STROP_E_NOMEM);
    goto done;
  }
  if (n > 1) {
    /* several prompts: one batch, each printed with its continuation once all are done */
    go.on_row_token = on_row;
    go.user_data = (void *)interrupted;
    st = strop_generate_batch(m, (const int64_t *const *)prompts, lens, n, &go, out,
                              o->max_tokens, counts);
    if (st == STROP_E_CANCELLED && *interrupted) {
      rc = 130;
    } else if (st) {
      rc = fail("generating", st);
    } else {
      for (int64_t b = 0; b < n; b++) {
        if (!o->chat) print_ids(tok, prompts[b], lens[b]);
        print_ids(tok, out + b * o->max_tokens, counts[b]);
        fputc('\n', stdout);
      }
    }
    goto done;
  }
  go.on_token = on_token;
  go.user_data = &s;
  s.tok = tok;
  s.cap = o->max_tokens;
  s.ids = malloc((size_t)per * sizeof *s.ids);
  if (!s.ids) {
    rc = fail("starting", STROP_E_NOMEM);
    goto done;
  }
  /* the prompt as the tokenizer reads it back (special tokens left out), then the new text */
  if (!o->chat) /* a chat prints only the reply */
    print_ids(tok, prompts[0], lens[0]);
  fflush(stdout);
  int64_t count = 0;
  st = strop_generate(m, prompts[0], lens[0], &go, out, o->max_tokens, &count);
  if (st == STROP_OK || st == STROP_E_CANCELLED) flush_text(&s, 1);
  fputc('\n', stdout);
  if (st == STROP_E_CANCELLED && *interrupted) rc = 130;
  else if (st == STROP_E_CANCELLED && s.failed) rc = fail("printing", STROP_E_NOMEM);
  else if (st) rc = fail("generating", st);
done:
  if (fflush(stdout) && !rc) rc = 1;
  for (int64_t b = 0; prompts && b < n; b++) free(prompts[b]);
  free(prompts);
  free(lens);
  free(counts);
  free(texts);
  free(file_text);
  free(out);
  free(s.ids);
  free(s.text);
  strop_tokenizer_free(tok);
  strop_model_free(m);
  return rc;
}
