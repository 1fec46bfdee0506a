/* SPDX-License-Identifier: MIT */
/* strop bench — cached generation (strop_generate) on a GPT-2-small-shaped model loaded through
 * strop_model_load_pretrained (random weights: a partial load of an empty file initialises them
 * from a seed; a token costs the same), with the small-m kernels of lib/ops/gemv.c on and off,
 * interleaved in one process (on, off, on, off, ...: both see the same machine load), so that
 * the ratio holds on a loaded machine where the absolute times do not.
 *
 *   bench_generate [threads] [tokens] [repeats] [layers] [prompt]
 *
 * Prints per mode the best run's seconds, tokens/s over the whole call (prompt included, as
 * bench/generate_vs_torch.py counts), milliseconds per decoded token (the time after the first
 * new token) and the process's CPU time per decoded token (all threads, spinning included;
 * what a loaded machine's preemption does not inflate), the ratios, and whether both modes produced the same ids (they must: the
 * kernels give the GEMM's bits). FROZEN_DTYPE=bf16|int8 holds the weights in fewer bits
 * (strop_model_set_frozen_dtype); MODE=on|off runs one mode only (for perf record / callgrind).
 * KN_SLICES=ab compares strop__kn_slices on and off instead (an int8 base's products of a few
 * rows on the AMX tiles in slices of k across groups of columns, or as larger products), and
 * INT8_PF=ab strop__int8_pf (its rows prefetched while packed, or not): the same bits, the
 * small-m kernels decided per product in both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "ops/lowp.h"
#include "ops/ops.h"

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "bench_generate: cannot write %s\n", path);
    exit(1);
  }
}

/* CPU seconds of the process (all threads): what a run costs whatever else the machine runs */
static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct timing {
  double t0, c0, first, cfirst;
} timing;

static int on_token(int64_t id, void *user) {
  (void)id;
  timing *t = user;
  if (t->first == 0.0) {
    t->first = bench_now() - t->t0;
    t->cfirst = cpu_now() - t->c0;
  }
  return 0;
}

int main(int argc, char **argv) {
  int threads, tokens, repeats;
  bench_args(argc, argv, 1, 64, &threads, &tokens, &repeats);
  const int layers = argc > 4 ? atoi(argv[4]) : 12;
  const int prompt_len = argc > 5 ? atoi(argv[5]) : 32;
  const char *mode = getenv("MODE"), *fdt = getenv("FROZEN_DTYPE");
  const char *rows_ab = getenv("KN_SLICES"), *pf_ab = getenv("INT8_PF");
  /* what the two modes switch: 0 the small-m kernels, 1 strop__kn_slices, 2 strop__int8_pf */
  const int knob = rows_ab && !strcmp(rows_ab, "ab") ? 1 : pf_ab && !strcmp(pf_ab, "ab") ? 2 : 0;

  char dir[] = "/tmp/strop_bench_gen_XXXXXX", path[600], cfg[1024];
  if (!mkdtemp(dir)) return 1;
  snprintf(
      cfg, sizeof cfg,
      "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_layer\": %d, "
      "\"n_embd\": 768, \"n_head\": 12, \"vocab_size\": 50257, \"n_positions\": 1024, "
      "\"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0, \"attn_pdrop\": 0.0}",
      layers);
  snprintf(path, sizeof path, "%s/config.json", dir);
  write_file(path, cfg, strlen(cfg));
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  write_file(path, "\x08\0\0\0\0\0\0\0{}      ", 16);
  strop_pretrained_options o;
  strop_pretrained_options_init(&o);
  o.flags = STROP_LOAD_PARTIAL;
  o.seed = 1;
  strop_model *m = NULL;
  bench_must(strop_model_load_pretrained(dir, NULL, &o, &m, NULL), "load");
  unlink(path);
  snprintf(path, sizeof path, "%s/config.json", dir);
  unlink(path);
  rmdir(dir);
  int dtype = STROP_DTYPE_F32;
  if (fdt && !strcmp(fdt, "bf16")) dtype = STROP_DTYPE_BF16;
  if (fdt && !strcmp(fdt, "int8")) dtype = STROP_DTYPE_INT8;
  if (dtype != STROP_DTYPE_F32) {
    strop_surgery *s = NULL;
    bench_must(strop_surgery_create(m, &s), "surgery");
    bench_must(strop_surgery_freeze(s, "*", 0), "freeze");
    bench_must(strop_surgery_apply(s), "apply");
    strop_surgery_free(s);
    bench_must(strop_model_set_frozen_dtype(m, dtype), "frozen dtype");
  }

  int64_t *prompt = malloc((size_t)prompt_len * sizeof *prompt);
  int64_t *ids[2] = {malloc((size_t)tokens * sizeof(int64_t)),
                     malloc((size_t)tokens * sizeof(int64_t))};
  srand(7);
  for (int i = 0; i < prompt_len; i++) prompt[i] = rand() % 50257;
  const int modes = mode ? 1 : 2, first = mode && !strcmp(mode, "off") ? 1 : 0;
  double best[2] = {1e30, 1e30}, best_tok[2] = {1e30, 1e30}, best_cpu[2] = {1e30, 1e30};
  int64_t count[2] = {0, 0};
  for (int r = 0; r < repeats; r++)
    for (int v = first; v < first + modes; v++) {
      if (knob == 1) strop__kn_slices = !v; /* 0: on, 1: off */
      else if (knob == 2) strop__int8_pf = !v;
      else strop__gemv_impl = v; /* 0: decided per product (on), 1: off */
      timing t = {bench_now(), cpu_now(), 0.0, 0.0};
      strop_generate_options g;
      strop_generate_options_init(&g);
      g.max_new_tokens = tokens;
      g.on_token = on_token;
      g.user_data = &t;
      bench_must(strop_generate(m, prompt, prompt_len, &g, ids[v], tokens, &count[v]),
                 "generate");
      const double s = bench_now() - t.t0, cs = cpu_now() - t.c0;
      if (s < best[v]) best[v] = s;
      const double per = count[v] > 1 ? (s - t.first) / (double)(count[v] - 1) : s;
      if (per < best_tok[v]) best_tok[v] = per;
      const double cper = count[v] > 1 ? (cs - t.cfirst) / (double)(count[v] - 1) : cs;
      if (cper < best_cpu[v]) best_cpu[v] = cper;
    }
  strop__gemv_impl = 0;
  strop__kn_slices = 1;
  strop__int8_pf = 1;
  printf("GPT-2 shape: %d layers, prompt %d, %d new tokens, %d thread(s), best of %d, weights "
         "%s\n",
         layers, prompt_len, tokens, threads, repeats, fdt ? fdt : "f32");
  static const char *const NAMES[3][2] = {
      {"gemv on", "gemv off"}, {"slices on", "slices off"}, {"pf on", "pf off"}};
  for (int v = first; v < first + modes; v++)
    printf("  %-9s %8.1f tokens/s  %7.3f s  %7.2f ms per decoded token (%.2f ms CPU)\n",
           NAMES[knob][v], (double)count[v] / best[v], best[v], best_tok[v] * 1e3,
           best_cpu[v] * 1e3);
  if (modes == 2) {
    printf("  on / off: %.2fx (whole call)  %.2fx (per decoded token)  %.2fx (its CPU time)\n",
           best[1] / best[0], best_tok[1] / best_tok[0], best_cpu[1] / best_cpu[0]);
    const int same = count[0] == count[1] &&
                     !memcmp(ids[0], ids[1], (size_t)count[0] * sizeof(int64_t));
    printf("  same ids: %s\n", same ? "yes" : "NO");
  }
  free(prompt);
  free(ids[0]);
  free(ids[1]);
  strop_model_free(m);
  return 0;
}
