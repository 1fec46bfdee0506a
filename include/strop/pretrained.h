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
 * @brief Pre-trained checkpoints: torchvision state_dicts and Hugging Face model folders.
 * @since 0.2
 */

STROP_BEGIN_DECLS

/**
 * @brief Options of strop_model_load_pretrained(). Fill with strop_pretrained_options_init(),
 * then change fields; fields are only ever appended. @since 0.2
 */
typedef struct strop_pretrained_options {
  size_t size;          /**< sizeof(strop_pretrained_options), set by the init function. */
  int flags;            /**< STROP_LOAD_STRICT (default: every tensor, nothing else) or
                             STROP_LOAD_PARTIAL (load what matches; the rest keeps its
                             initialisation from @c seed; the report says what). */
  int64_t image_size;   /**< Vision: the height and width the model is declared for (its
                             input shape; other sizes still run where the architecture
                             allows). 0 (default): the architecture's own, 224. */
  int64_t max_length;   /**< Language: the longest sequence the model is declared for. 0
                             (default): what config.json says (n_positions,
                             max_position_embeddings). */
  uint64_t seed;        /**< Initialises what a partial load leaves out. Default 0. */
} strop_pretrained_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_pretrained_options (and its size).
 * @param[out] opt The options, or NULL (a no-op).
 * @since 0.2
 */
STROP_API void strop_pretrained_options_init(strop_pretrained_options *opt);

/**
 * @brief Builds a pre-trained network from its checkpoint, with the checkpoint's own tensor
 *        names and layouts, and loads its weights.
 *
 * @p path is either a Hugging Face model folder (config.json with "architectures" or
 * "model_type", and model.safetensors or the shards model.safetensors.index.json lists) or
 * one safetensors file (a torchvision state_dict: name the architecture). The result is a
 * finalized model in eval mode like any other: surgery, training, strop_model_save_weights()
 * (which writes the same names and layouts back, so PyTorch loads the file with
 * strict=True). Float tensors may be stored as F32, F16, BF16 or F64. The list of
 * architectures: strop_pretrained_arch_count(), strop_pretrained_arch_name(), and
 * docs/pretrained.md.
 * @param[in]  path       A folder or a .safetensors file; read during the call.
 * @param[in]  arch       An architecture name ("resnet18"), or NULL to take it from
 *                        config.json.
 * @param[in]  opt        Options (strop_pretrained_options_init()), or NULL for the defaults;
 *                        only read.
 * @param[out] out        The model, owned by the caller (strop_model_free()); NULL on error.
 * @param[out] report_out Optional (NULL to ignore): what the load matched, as for
 *                        strop_model_load_weights(); owned by the caller
 *                        (strop_load_report_free()).
 * @return STROP_OK; STROP_E_IO (a file cannot be read: the sentence names it, and for a
 *         sharded folder the missing shard); STROP_E_FORMAT (a malformed config.json or file,
 *         a config field missing or out of range: the sentence names the file and key);
 *         STROP_E_UNSUPPORTED (an architecture strop does not know, naming those it does);
 *         STROP_E_NOT_FOUND / STROP_E_SHAPE (strict: missing, unexpected or mismatched
 *         tensors, named); STROP_E_INVALID_ARG (NULL @p path or @p out, an uninitialised
 *         @p opt, unknown flags, image_size or max_length out of range, no architecture named
 *         for a single file or a folder without config.json); STROP_E_NOMEM. Nothing is
 *         returned half-loaded. Thread-safe (it touches no shared state).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_pretrained(
    const char *path, const char *arch, const strop_pretrained_options *opt, strop_model **out,
    strop_load_report **report_out);

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
