/* SPDX-License-Identifier: MIT */
/* strop bench — fine-tuning steps of language models loaded through
 * strop_model_load_pretrained from a Hugging Face folder (config.json + weights), the same
 * shapes torch_llm.py runs in PyTorch: a causal-LM step (forward, next-token cross-entropy,
 * backward, AdamW) on batch x tokens of random ids.
 *
 *   bench_llm gpt2|llama|example [threads] [steps] [repeats] [layers] [batch] [tokens]
 *
 * gpt2: GPT-2 small's shape (12 layers, d 768, 12 heads, vocab 50257); llama: a Llama-shaped
 * model of the same width (12 layers, d 768, 12 heads with 4 key/value heads, SwiGLU 2048,
 * vocab 32000, RMSNorm, rotary embeddings); example: the shape of examples/text/base (a GPT-2
 * of 4 layers, d 192, 4 heads, vocab 4096, 128 positions, tied output layer; `layers` defaults
 * to 4 for it). `layers` shrinks any of them for a smoke run. The
 * weights are random (a partial load of an empty file initialises them from a seed): the step
 * costs the same. Prints one RESULT line like bench_train's.
 *
 * LORA=r in the environment: a LoRA fine-tune instead of a full one — every weight frozen, LoRA
 * adapters of rank r (alpha 2r) on the attention projections (GPT-2's c_attn, Llama's q_proj and
 * v_proj). FROZEN_DTYPE=f32|bf16|int8: how the frozen weights are held
 * (strop_model_set_frozen_dtype; docs/performance.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "benchutil.h"

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "bench_llm: cannot write %s\n", path);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2 ||
      (strcmp(argv[1], "gpt2") && strcmp(argv[1], "llama") && strcmp(argv[1], "example"))) {
    fprintf(stderr, "usage: bench_llm gpt2|llama|example [threads] [steps] [repeats] [layers] "
                    "[batch] [tokens]\n");
    return 2;
  }
  const int example = !strcmp(argv[1], "example");
  const int gpt2 = example || !strcmp(argv[1], "gpt2");
  int threads, steps, repeats;
  bench_args(argc, argv, 2, 3, &threads, &steps, &repeats);
  const int layers = argc > 5 ? atoi(argv[5]) : example ? 4 : 12;
  const int64_t batch = argc > 6 ? atoi(argv[6]) : 4, tokens = argc > 7 ? atoi(argv[7]) : 128;
  const int64_t vocab = example ? 4096 : gpt2 ? 50257 : 32000;

  char dir[] = "/tmp/strop_bench_llm_XXXXXX", path[600], cfg[1024];
  if (!mkdtemp(dir)) return 1;
  if (example)
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": "
             "\"gpt2\", \"n_layer\": %d, \"n_embd\": 192, \"n_head\": 4, \"vocab_size\": 4096, "
             "\"n_positions\": 128, \"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0, \"attn_pdrop\": "
             "0.0, \"tie_word_embeddings\": true}",
             layers);
  else if (gpt2)
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": "
             "\"gpt2\", \"n_layer\": %d, \"n_embd\": 768, \"n_head\": 12, \"vocab_size\": 50257, "
             "\"n_positions\": 1024, \"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0, \"attn_pdrop\": "
             "0.0}",
             layers);
  else
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": "
             "\"llama\", \"num_hidden_layers\": %d, \"hidden_size\": 768, "
             "\"num_attention_heads\": 12, \"num_key_value_heads\": 4, \"intermediate_size\": "
             "2048, \"vocab_size\": 32000, \"max_position_embeddings\": 2048, "
             "\"tie_word_embeddings\": false}",
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

  const char *lora = getenv("LORA"), *fdt = getenv("FROZEN_DTYPE");
  const int rank = lora ? atoi(lora) : 0;
  if (rank > 0) {
    strop_surgery *s = NULL;
    bench_must(strop_surgery_create(m, &s), "surgery");
    bench_must(strop_surgery_freeze(s, "*", 0), "freeze");
    if (gpt2) {
      bench_must(strop_surgery_lora(s, "*.attn.c_attn", rank, 2.0f * (float)rank, 0.0f), "lora");
    } else {
      bench_must(strop_surgery_lora(s, "*.q_proj", rank, 2.0f * (float)rank, 0.0f), "lora q");
      bench_must(strop_surgery_lora(s, "*.v_proj", rank, 2.0f * (float)rank, 0.0f), "lora v");
    }
    bench_must(strop_surgery_apply(s), "apply");
    strop_surgery_free(s);
  }
  int dtype = STROP_DTYPE_F32;
  if (fdt && !strcmp(fdt, "bf16")) dtype = STROP_DTYPE_BF16;
  if (fdt && !strcmp(fdt, "int8")) dtype = STROP_DTYPE_INT8;
  bench_must(strop_model_set_frozen_dtype(m, dtype), "frozen dtype");
  size_t wbytes = 0;
  bench_must(strop_model_memory_estimate(m, batch, 2, &wbytes, NULL, NULL, NULL), "estimate");

  strop_optimizer *opt = NULL;
  strop_trainer *tr = NULL;
  bench_must(strop_optimizer_create(m, STROP_OPTIM_ADAMW, &opt), "optimizer");
  bench_must(strop_optimizer_set_float(opt, STROP_OPT_LR, 1e-4f), "lr");
  bench_must(strop_trainer_create(m, opt, &tr), "trainer");
  const int64_t dims[2] = {batch, tokens};
  strop_tensor *x = NULL, *y = NULL;
  bench_must(strop_tensor_create(2, dims, &x), "x");
  bench_must(strop_tensor_create(2, dims, &y), "y");
  srand(7);
  for (int64_t i = 0; i < batch * tokens; i++)
    strop_tensor_data(x)[i] = (float)(rand() % (int)vocab);
  for (int64_t i = 0; i < batch * tokens; i++) /* next-token targets; the last is ignored */
    strop_tensor_data(y)[i] = (i + 1) % tokens ? strop_tensor_data(x)[i + 1] : -100.0f;
  float loss = 0;
  const double best = bench_best_step(tr, x, y, steps, repeats, &loss);
  printf("RESULT impl=strop model=%s threads=%d layers=%d batch=%lld tokens=%lld step_ms=%.1f "
         "tokens_per_s=%.1f params=%lld loss=%.4f peak_rss_kb=%ld lora=%d frozen_dtype=%s "
         "weights_mb=%.1f\n",
         argv[1], threads, layers, (long long)batch, (long long)tokens, best * 1e3,
         (double)(batch * tokens) / best, (long long)strop_model_param_count(m, 0), (double)loss,
         bench_peak_rss_kb(), rank, fdt ? fdt : "f32", (double)wbytes / 1048576.0);
  strop_tensor_free(x);
  strop_tensor_free(y);
  strop_trainer_free(tr);
  strop_optimizer_free(opt);
  strop_model_free(m);
  return 0;
}
