/* SPDX-License-Identifier: MIT */
/* strop tool — `strop tokenize TOKENIZER [FILE]`: each input line's token ids, space-separated,
 * one output line per input line; with --decode, lines of ids back to text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static int fail(const char *what, strop_status s) {
  fprintf(stderr, "strop tokenize: error: %s\n  (%s)\n", strop_last_error(), strop_status_str(s));
  (void)what;
  switch (s) {
    case STROP_E_FORMAT:
    case STROP_E_NOT_FOUND:
    case STROP_E_UNSUPPORTED:
    case STROP_E_INVALID_ARG: return 3;
    default: return 1;
  }
}

/* Encodes one line (without its newline) and prints its ids. */
static int encode_line(strop_tokenizer *tok, const strop_encode_options *eo, const char *line,
                       size_t len, int64_t **ids, int64_t *cap, long long lineno) {
  int64_t n = 0;
  strop_status s = strop_tokenizer_encode(tok, line, len, eo, *ids, *cap, &n);
  if (!s && n > *cap) {
    int64_t c = n + n / 2 + 16;
    int64_t *v = realloc(*ids, (size_t)c * sizeof *v);
    if (!v) {
      fprintf(stderr, "strop tokenize: out of memory at line %lld\n", lineno);
      return 1;
    }
    *ids = v;
    *cap = c;
    s = strop_tokenizer_encode(tok, line, len, eo, *ids, *cap, &n);
  }
  if (s) {
    fprintf(stderr, "strop tokenize: line %lld:\n", lineno);
    return fail("encode", s);
  }
  for (int64_t i = 0; i < n; i++) printf(i ? " %lld" : "%lld", (long long)(*ids)[i]);
  putchar('\n');
  return 0;
}

/* Parses a line of ids and prints their text. */
static int decode_line(strop_tokenizer *tok, int skip_special, char *line, int64_t **ids,
                       int64_t *cap, char **text, size_t *tcap, long long lineno) {
  int64_t n = 0;
  char *p = line;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    if (!*p) break;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || (*end && *end != ' ' && *end != '\t' && *end != '\r')) {
      fprintf(stderr, "strop tokenize --decode: line %lld: '%.20s' is not an id\n", lineno, p);
      return 3;
    }
    if (n == *cap) {
      int64_t c = 2 * *cap + 16;
      int64_t *nv = realloc(*ids, (size_t)c * sizeof *nv);
      if (!nv) return 1;
      *ids = nv;
      *cap = c;
    }
    (*ids)[n++] = v;
    p = end;
  }
  int64_t len = strop_tokenizer_decode(tok, *ids, n, skip_special, *text, *tcap);
  if (len >= 0 && (size_t)len >= *tcap) {
    size_t c = (size_t)len + 1;
    char *t = realloc(*text, c);
    if (!t) return 1;
    *text = t;
    *tcap = c;
    len = strop_tokenizer_decode(tok, *ids, n, skip_special, *text, *tcap);
  }
  if (len < 0) {
    fprintf(stderr, "strop tokenize --decode: line %lld: %s\n", lineno, strop_last_error());
    return 3;
  }
  fwrite(*text, 1, (size_t)len, stdout);
  putchar('\n');
  return 0;
}

int tool_cmd_tokenize(const char *const *args, int nargs, int decode, int no_special) {
  if (nargs < 1 || nargs > 2) {
    fprintf(stderr, "strop tokenize: expected TOKENIZER [FILE] (see strop tokenize --help)\n");
    return 2;
  }
  strop_tokenizer *tok = NULL;
  strop_status s = strop_tokenizer_load(args[0], NULL, &tok);
  if (s) return fail("load", s);
  FILE *in = stdin;
  if (nargs == 2 && !(in = fopen(args[1], "rb"))) {
    perror(args[1]);
    strop_tokenizer_free(tok);
    return 1;
  }
  static char outbuf[1 << 16];
  setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
  strop_encode_options eo;
  strop_encode_options_init(&eo);
  eo.add_special_tokens = !no_special;
  char *line = NULL, *text = NULL;
  size_t lcap = 0, tcap = 0;
  int64_t *ids = NULL, cap = 0;
  long long lineno = 0;
  int rc = 0;
  ssize_t got;
  while (!rc && (got = getline(&line, &lcap, in)) >= 0) {
    lineno++;
    size_t len = (size_t)got;
    if (len && line[len - 1] == '\n') line[--len] = '\0';
    rc = decode ? decode_line(tok, no_special, line, &ids, &cap, &text, &tcap, lineno)
                : encode_line(tok, &eo, line, len, &ids, &cap, lineno);
  }
  if (!rc && ferror(in)) {
    perror(nargs == 2 ? args[1] : "stdin");
    rc = 1;
  }
  if (fflush(stdout)) rc = 1;
  free(line);
  free(text);
  free(ids);
  if (in != stdin) fclose(in);
  strop_tokenizer_free(tok);
  return rc;
}
