/* SPDX-License-Identifier: MIT */
/* strop bench — tokenizer encode throughput: load a tokenizer, then encode every line of a text
 * file one call per line (as a data pipeline would), once, timed without the load. Prints one
 * line of key=value pairs that bench/run_tokenizers.sh reads.
 *   bench_tokenizer TOKENIZER FILE [passes]
 * passes > 1 encodes the file again (the piece cache warm) and reports each pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench_tokenizer TOKENIZER FILE [passes]\n");
    return 2;
  }
  int passes = argc > 3 ? atoi(argv[3]) : 1;
  if (passes < 1) passes = 1;
  FILE *f = fopen(argv[2], "rb");
  if (!f) {
    perror(argv[2]);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)size + 1);
  if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  fclose(f);
  text[size] = '\0';
  /* lines: offsets and lengths, newlines not included */
  size_t nl = 0, cap = 1024;
  size_t *off = malloc(cap * sizeof *off), *len = malloc(cap * sizeof *len);
  for (size_t i = 0; i < (size_t)size;) {
    size_t e = i;
    while (e < (size_t)size && text[e] != '\n') e++;
    if (nl == cap) {
      cap *= 2;
      off = realloc(off, cap * sizeof *off);
      len = realloc(len, cap * sizeof *len);
    }
    off[nl] = i;
    len[nl] = e - i;
    nl++;
    i = e + 1;
  }
  double t0 = bench_now();
  strop_tokenizer *tok = NULL;
  bench_must(strop_tokenizer_load(argv[1], NULL, &tok), "strop_tokenizer_load");
  double load = bench_now() - t0;
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.add_special_tokens = 0;
  int64_t ids[1 << 16], n;
  for (int p = 0; p < passes; p++) {
    int64_t tokens = 0;
    t0 = bench_now();
    for (size_t i = 0; i < nl; i++) {
      bench_must(strop_tokenizer_encode(tok, text + off[i], len[i], &o, ids, 1 << 16, &n),
                 "strop_tokenizer_encode");
      tokens += n;
    }
    double s = bench_now() - t0;
    printf("impl=strop pass=%d lines=%zu bytes=%ld tokens=%lld load_s=%.3f seconds=%.4f "
           "mb_s=%.2f tok_s=%.0f\n",
           p + 1, nl, size, (long long)tokens, load, s, (double)size / 1e6 / s,
           (double)tokens / s);
  }
  strop_tokenizer_free(tok);
  free(off);
  free(len);
  free(text);
  return 0;
}
