/* SPDX-License-Identifier: MIT */
/* strop — text generation from a causal decoder (GPT-2, Llama family) with a key/value cache:
 * greedy or sampled (temperature, top-k, top-p, repetition penalty), stop ids and strings, a
 * per-token callback that streams and cancels. */
#ifndef STROP_GENERATE_H
#define STROP_GENERATE_H

#include "common.h"
#include "error.h"
#include "model.h"
#include "text.h"

/** @file generate.h
 *  @brief Text generation with a key/value cache. @since 0.2
 *
 * strop_generate() continues a prompt of token ids with a causal language model whose input is
 * [T] token ids and whose output is [T, vocab] logits (what strop_model_load_pretrained() builds
 * from a Hugging Face GPT-2 or Llama-family folder). The prompt runs through the model once;
 * after that each new token costs one position: every attention node keeps the keys and values
 * of the positions before in a cache that lives for the call, outside the training arena, so a
 * host may generate between training steps. Positions continue across steps (a learned
 * position embedding takes the position's row, rotary embeddings rotate by the absolute
 * position).
 *
 * Each step turns the last position's logits into the next token, in Hugging Face's order:
 * repetition penalty (over the prompt and the tokens so far), then greedy choice when
 * temperature is 0, otherwise temperature, top-k, top-p and a draw from a generator seeded with
 * the options' seed (the same seed gives the same ids).
 *
 * Threads: the model is used by one thread at a time (the call runs forwards on it); distinct
 * models are independent.
 */

STROP_BEGIN_DECLS

/** @brief Called with each new token id, in order; a non-zero return cancels the generation
 *  (strop_generate() then returns STROP_E_CANCELLED with the ids so far). @since 0.2 */
typedef int (*strop_token_callback)(int64_t id, void *user_data);

/** @brief Called by strop_generate_batch() (and strop_generate(), as sequence 0) with each new
 *  token id and the index of the sequence it continues, in order; a non-zero return cancels
 *  the whole generation (STROP_E_CANCELLED with the ids so far). @since 0.2 */
typedef int (*strop_row_token_callback)(int64_t row, int64_t id, void *user_data);

/**
 * @brief Options of strop_generate(). Fill with strop_generate_options_init(); fields are only
 * ever appended. @since 0.2
 */
typedef struct strop_generate_options {
  size_t size;              /**< sizeof(strop_generate_options), set by the init function. */
  int64_t max_new_tokens;   /**< Most tokens to generate, >= 0. Default 32. */
  float temperature;        /**< 0 (default): greedy, the most likely token each step;
                                    > 0: sample from softmax(logits / temperature). */
  int64_t top_k;            /**< Sampling: keep only the top_k most likely tokens; 0
                                    (default): all. */
  float top_p;              /**< Sampling: keep the smallest set of most likely tokens whose
                                    probabilities sum to at least top_p, in (0, 1]; 1 (default):
                                    all. */
  float repetition_penalty; /**< > 0; 1 (default): none. The logit of a token already in the
                                    prompt or the output is divided by it when positive and
                                    multiplied by it when negative (CTRL's penalty, as Hugging
                                    Face applies it, greedy or not). */
  uint64_t seed;            /**< Seed of the sampling generator. Default 0. */
  const int64_t *stop_ids;  /**< NULL, or num_stop_ids ids that end the generation (an
                                    end-of-sequence id); the stop id is part of the output. */
  int64_t num_stop_ids;     /**< Entries of stop_ids. Default 0. */
  const char *const *stop_strings;       /**< NULL, or num_stop_strings non-empty strings: the
                                    generation ends once the decoded output contains one of
                                    them (the token that completed it is part of the output).
                                    Needs tokenizer. */
  int64_t num_stop_strings;              /**< Entries of stop_strings. Default 0. */
  strop_tokenizer *tokenizer;            /**< The model's tokenizer, to decode the output for
                                    stop_strings; NULL (default) when there are none. Borrowed
                                    for the call; its work buffers change. */
  strop_token_callback on_token;         /**< Called with each new id (after it is stored in the
                                    output); NULL (default): none. */
  void *user_data;                       /**< Passed to on_token and on_row_token. */
  strop_row_token_callback on_row_token; /**< Called with each new id and its sequence's
                                    index (after it is stored); used instead of on_token when
                                    set, and the callback strop_generate_batch() takes. NULL
                                    (default): none. Appended in 0.2 (batched generation). */
  int64_t num_beams;    /**< 1 (default): greedy or sampling as above. > 1: beam search with
                                    that many beams, as Hugging Face's generate(num_beams=...)
                                    searches: each step the processed log-probabilities
                                    (repetition_penalty applied to them) of every beam's next
                                    token, plus the beam's score, the best max(2, 1 + stop
                                    ids) · num_beams candidates kept in order; a candidate
                                    ending in a stop id
                                    among the first num_beams becomes a finished hypothesis, the
                                    others the next beams. The result is the best hypothesis
                                    (finished, or open when the length runs out), scored by its
                                    summed log-probabilities over its generated length to the
                                    power length_penalty. Needs temperature 0; stop_strings are
                                    refused. Tokens reach on_token / on_row_token after the
                                    search, in order (so a search cannot be cancelled through
                                    them). The prompt runs once and its keys and values are
                                    copied to every beam. STROP_E_NOMEM, before the beams
                                    take any memory, when what they hold — each attention
                                    layer's key/value cache, a step's activations for their
                                    rows, the scores and marks over the vocabulary, the
                                    histories — passes the machine's free memory
                                    (strop_memory_available()); the message gives the size a
                                    beam. Appended in 0.2 (beam
                                    search). */
  float length_penalty; /**< Beam search: the exponent above; 1 (default); > 0 favours
                                    longer hypotheses, < 0 shorter ones. */
  int early_stopping;   /**< Beam search: 1 stops once num_beams hypotheses have finished; 0
                                    (default) once no open beam can beat the worst finished one
                                    by Hugging Face's estimate (its best score over the length
                                    so far). */
} strop_generate_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_generate_options.
 * @param[out] opt The options to fill; NULL is a no-op.
 * Thread-safe. @since 0.2
 */
STROP_API void strop_generate_options_init(strop_generate_options *opt);

/**
 * @brief Continues @p prompt with up to max_new_tokens tokens from a causal language model.
 *
 * Generation ends after max_new_tokens tokens, after a stop id, once the output contains a stop
 * string, when @p cap ids have been written, or when prompt and output fill the model's
 * context (the sequence length of its input shape, n_positions or max_length); the reason is
 * not an error. The model runs in eval mode (dropout off) whatever its training flag, which is
 * left as it was; its parameters are not changed.
 * @param[in,out] model    A finalized model with input [T] of token ids and output [T, vocab]
 *                         logits, built from layers that can run one position at a time
 *                         (embedding, positional_embedding, causal attention, linear, norms,
 *                         activations, gated_mlp, add, dropout); a model with any other layer,
 *                         or with non-causal attention, is refused with STROP_E_UNSUPPORTED
 *                         naming it. Its step state is used by the call.
 * @param[in]  prompt      @p n_prompt ids in [0, vocab).
 * @param[in]  n_prompt    Number of prompt ids, >= 1 and below the model's context length.
 * @param[in]  opt         Options, or NULL for the defaults.
 * @param[out] ids         Receives the new ids (the prompt is not repeated); room for @p cap.
 * @param[in]  cap         Capacity of @p ids, >= 0.
 * @param[out] count       The number of ids written.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL arguments, an id out of range — the sentence
 *         names its index and value —, bad options, stop strings without a tokenizer);
 *         STROP_E_UNSUPPORTED (a layer or model shape that cannot run incrementally, named);
 *         STROP_E_STATE (model not finalized); STROP_E_CANCELLED (on_token returned non-zero:
 *         @p ids and @p count hold the tokens so far, the one passed to the callback included);
 *         STROP_E_NOMEM. On any other error @p count is 0. The model's parameters and
 *         training flag are unchanged in every case.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_generate(strop_model *model, const int64_t *prompt,
                                                      int64_t n_prompt,
                                                      const strop_generate_options *opt,
                                                      int64_t *ids, int64_t cap, int64_t *count);

/**
 * @brief Continues @p n prompts at once, each as strop_generate() continues it alone.
 *
 * The prompts, of any lengths, are left-padded to the longest and run as one batch through the
 * key/value caches; each sequence attends only to its own tokens and counts its positions from
 * its first token, so greedy ids equal those of strop_generate() on each prompt alone (and a
 * seeded sampling draws the same ids: every sequence has its own generator, seeded with the
 * options' seed as strop_generate() seeds its one). Each sequence has its own stop conditions
 * (max_new_tokens, stop ids, stop strings, the model's context) and stops being computed
 * when it has finished; the call returns when every sequence has.
 * @param[in,out] model     As strop_generate().
 * @param[in]  prompts      @p n pointers to prompts of ids in [0, vocab).
 * @param[in]  n_prompts    @p n lengths, each >= 1 and at most the model's context length.
 * @param[in]  n            Number of prompts, >= 1.
 * @param[in]  opt          Options, or NULL for the defaults. on_token is refused (it does not
 *                          say which sequence a token continues): set on_row_token.
 * @param[out] ids          [n, cap] row-major: sequence b's new ids at ids + b * cap (the
 *                          prompt is not repeated).
 * @param[in]  cap          Room per sequence, >= 0.
 * @param[out] counts       @p n entries: the number of ids written for each sequence.
 * @return STROP_OK; otherwise as strop_generate(), the sentence naming the prompt
 *         (prompts[b][i]) for a bad
 *         id or length; STROP_E_INVALID_ARG also for n < 1, NULL @p prompts / @p n_prompts /
 *         @p counts, on_token without on_row_token. On STROP_E_CANCELLED @p ids and
 *         @p counts hold what every sequence had so far; on any other error @p counts are 0.
 *         The model's parameters and training flag are unchanged in every case.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_generate_batch(
    strop_model *model, const int64_t *const *prompts, const int64_t *n_prompts, int64_t n,
    const strop_generate_options *opt, int64_t *ids, int64_t cap, int64_t *counts);

STROP_END_DECLS

#endif
