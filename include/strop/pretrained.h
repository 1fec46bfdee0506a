/* SPDX-License-Identifier: MIT */
/* strop — pre-trained networks as people have them: a torchvision state_dict saved as
 * safetensors, a Hugging Face model folder. */
#ifndef STROP_PRETRAINED_H
#define STROP_PRETRAINED_H

#include "common.h"
#include "error.h"
#include "io.h"
#include "model.h"

/**
 * @file pretrained.h
 * @brief Pre-trained checkpoints: torchvision state_dicts and Hugging Face model folders —
 *        the options of strop_model_load_pretrained() (declared in model.h) and the list of
 *        architectures it knows.
 * @since 0.2
 */

STROP_BEGIN_DECLS

/**
 * @brief Options of strop_model_load_pretrained(). Fill with strop_pretrained_options_init(),
 *        then change fields; fields are only ever appended. Its typedef is in model.h (which
 *        declares strop_model_load_pretrained()), so it is not repeated here.
 * @since 0.2
 */
struct strop_pretrained_options {
  size_t size;        /**< sizeof(strop_pretrained_options), set by the init function. */
  int flags;          /**< STROP_LOAD_STRICT (default: every tensor, nothing else) or
                             STROP_LOAD_PARTIAL (load what matches; the rest keeps its
                             initialisation from @c seed; the report says what). */
  int64_t image_size; /**< Vision: the height and width the model is declared for (its
                             input shape; other sizes still run where the architecture
                             allows). 0 (default): the architecture's own, 224. */
  int64_t max_length; /**< Language: the longest sequence the model is declared for. 0
                             (default): what config.json says (n_positions,
                             max_position_embeddings). */
  uint64_t seed;      /**< Initialises what a partial load leaves out. Default 0. */
};

/**
 * @brief Fills @p opt with the defaults listed in strop_pretrained_options (and its size).
 * @param[out] opt The options, or NULL (a no-op).
 * @since 0.2
 */
STROP_API void strop_pretrained_options_init(strop_pretrained_options *opt);

/**
 * @brief Number of architectures strop_model_load_pretrained() knows.
 * @return The count; constant for the library's lifetime. Thread-safe.
 * @since 0.2
 */
STROP_API int strop_pretrained_arch_count(void);

/**
 * @brief Name of architecture @p i ("resnet18").
 * @param[in] i 0 .. strop_pretrained_arch_count() - 1.
 * @return A static string, or NULL out of range. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_pretrained_arch_name(int i);

/**
 * @brief One line on architecture @p name: its family and what it reads.
 * @param[in] name An architecture name.
 * @return A static string, or NULL for an unknown name or NULL. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_pretrained_arch_doc(const char *name);

/**
 * @brief Gives a text model loaded by strop_model_load_pretrained() (GPT-2, the Llama family,
 *        the BERT family) a sequence-classification head in place of whatever follows its last
 *        hidden state (an LM head, a pooler, a classifier): a pooling layer that reads the
 *        batch's padding mask, dropout when @p dropout > 0, and a linear layer of @p classes
 *        outputs named as the family's *ForSequenceClassification names it — `score` (no bias)
 *        for GPT-2 and Llama, `classifier` for the BERT family — so PEFT's modules_to_save and
 *        strop_model_save_pretrained() keep those names.
 *
 * It is a surgery plan (truncate at the hidden state, append pool, dropout and linear), with
 * the new nodes `pool`, `dropout` and the head. The hidden state's node is the model's
 * metadata "pretrained.hidden" (BERT's pooler output "pretrained.pooled"). When the head is
 * the one the family's Hugging Face class has (GPT-2, Llama: `last`; BERT loaded as
 * bert_cls or with a pooler: `cls`, through the pooler), the model's architecture becomes that
 * class (gpt2_cls, llama_cls, bert_cls) and strop_model_save_pretrained() writes it
 * ("architectures", LABEL_i labels); with another pooling, saving a Hugging Face folder is
 * refused (STROP_E_UNSUPPORTED) and strop_model_save_weights() keeps it.
 * @param[in,out] model   A finalized model loaded by strop_model_load_pretrained().
 * @param[in]     pool    "cls": the first token the padding mask keeps (BERT's [CLS]; through
 *                        BERT's pooler when it has one); "mean": the mean over the tokens the
 *                        mask keeps; "last": the last token the mask keeps (a decoder's, left
 *                        or right padding); NULL or "default": the family's own (last for
 *                        decoders, cls for encoders).
 * @param[in]     classes Outputs of the head, >= 1.
 * @param[in]     dropout Dropout before the head, in [0, 1); 0: none.
 * @param[in]     seed    Initialises the head's weights.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, an unknown pool word, classes < 1,
 *         dropout out of range); STROP_E_UNSUPPORTED (a model without a token sequence or not
 *         loaded by strop_model_load_pretrained, named); STROP_E_STATE (model not
 *         finalized); STROP_E_NOMEM. On error the model is unchanged. The model is used by one
 *         thread at a time.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_add_classifier_head(
    strop_model *model, const char *pool, int64_t classes, float dropout, uint64_t seed);

STROP_END_DECLS

#endif
