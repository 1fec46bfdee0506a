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
                             initialisation from @c seed; the report says what); optionally
                             | STROP_LOAD_FROZEN (every parameter frozen) and | STROP_LOAD_MMAP
                             (frozen weights borrowed from the mapped file). */
  int64_t image_size; /**< Vision: the height and width the model is declared for (its
                             input shape; other sizes still run where the architecture
                             allows). 0 (default): the architecture's own, 224. */
  int64_t max_length; /**< Language: the longest sequence the model is declared for. 0
                             (default): what config.json says (n_positions,
                             max_position_embeddings). */
  uint64_t seed;      /**< Initialises what a partial load leaves out. Default 0. */
  int frozen_dtype;   /**< The model's frozen dtype (strop_model_set_frozen_dtype()), set before
                             the weights are read, so that with ::STROP_LOAD_MMAP a BF16 file's
                             frozen weights are borrowed as BF16. Default STROP_DTYPE_F32.
                             @since 0.2 */
  int64_t int8_group; /**< With @c frozen_dtype STROP_DTYPE_INT8: inputs per scale
                             (strop_model_set_frozen_int8_group()), set before the weights are
                             read. Default 0: one scale per output channel. @since 0.2 */
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

STROP_END_DECLS

#endif
