/* strop — model files: YAML architecture specs, safetensors weights (PyTorch's names and
 * layouts), load reports for partial loading, and a listing API for safetensors files. */
#ifndef STROP_IO_H
#define STROP_IO_H

#include "common.h"
#include "error.h"
#include "model.h"

/** @file io.h @brief Model specs (YAML), weights (safetensors), file listing. @since 0.1 */

STROP_BEGIN_DECLS

/* ------------------------------------------------------------------------------------ */
/* Architecture specs                                                                     */
/* ------------------------------------------------------------------------------------ */

/**
 * @brief Loads a model architecture from a YAML spec file and finalizes it.
 *
 * The spec gives the per-sample `input:` shape, an optional `seed:` (default 0) and the
 * `layers:` list; see docs/formats.md. Parameters are freshly initialised from the seed.
 * Errors name the file, line and column and what was expected, e.g.
 * "strop_model_load_spec: model.yaml:14:9: layer 'head': unknown option 'out_feature'".
 * Hostile input is bounded: YAML aliases are refused, nesting depth, node count, scalar
 * length and file size are limited.
 * @param path     The spec file.
 * @param[out] out The finalized model, owned by the caller (strop_model_free()); NULL on error.
 * @return STROP_OK; STROP_E_IO (cannot read the file); STROP_E_FORMAT (not YAML, wrong
 *         structure, limits exceeded); STROP_E_INVALID_ARG / STROP_E_NOT_FOUND /
 *         STROP_E_SHAPE (a layer's options, type, inputs or shapes); STROP_E_NOMEM.
 * Thread-safe for distinct outputs. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_spec(const char *path, strop_model **out);

/**
 * @brief As strop_model_load_spec(), from a NUL-terminated YAML string (copied).
 * Errors name "<string>" as the file. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_spec_string(const char *yaml,
                                                                    strop_model **out);

/**
 * @brief Writes the model's architecture (input shape, seed, every node with its type, inputs
 *        and all options, defaults included) as a YAML spec, atomically (temporary file in the
 *        same folder, fsync, rename). Loading the result gives a model with the same nodes,
 *        options and shapes. Weights are not part of a spec (strop_model_save_weights()).
 * @param model A model with at least one node (finalized or not).
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_IO (the old file, if any, is intact);
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_spec(const strop_model *model,
                                                             const char *path);

/**
 * @brief The model's YAML spec into the caller's buffer, snprintf-style.
 * @param buf Buffer of @p cap bytes (may be NULL when @p cap is 0); always NUL-terminated
 *            when @p cap > 0.
 * @return The full length of the spec (excluding the NUL), or -1 on error (bad arguments,
 *         out of memory; strop_last_error() says which). @since 0.1
 */
STROP_API int64_t strop_model_spec_string(const strop_model *model, char *buf, size_t cap);

/* ------------------------------------------------------------------------------------ */
/* Weights                                                                                */
/* ------------------------------------------------------------------------------------ */

/** Load flags for strop_model_load_weights(). @since 0.1 */
enum {
  /** Default: every model tensor must be in the file with its shape, and nothing else. */
  STROP_LOAD_STRICT = 0,
  /** PyTorch's strict=False: load what matches by name and shape, report the rest. */
  STROP_LOAD_PARTIAL = 1
};

/** Entry kinds of a load report. @since 0.1 */
enum {
  STROP_REPORT_MISSING = 0,    /**< Model tensors the file lacks. */
  STROP_REPORT_UNEXPECTED = 1, /**< File tensors the model lacks (after prefix remapping). */
  STROP_REPORT_MISMATCHED = 2, /**< Present in both with another shape or dtype. */
  STROP_REPORT_LOADED = 3      /**< Tensors copied into the model. */
};

/**
 * @brief What a weight load found: missing, unexpected, mismatched and loaded tensor names.
 * Owned by the caller once returned; free with strop_load_report_free().
 */
typedef struct strop_load_report strop_load_report;

/**
 * @brief Loads parameters and buffers from a safetensors file by PyTorch name.
 *
 * Float tensors may be stored as F32, F16, BF16 or F64 (converted to float32); int64
 * buffers (BatchNorm's num_batches_tracked) as I64 or I32. Everything is validated
 * before the model is touched: in strict mode any missing, unexpected or mismatched tensor
 * fails the call naming the first few, and the model is unchanged. The file is memory-mapped.
 *
 * Model metadata (strop_model_set_meta()): a strict load of a file that has
 * "strop.meta.<key>" entries replaces the model's metadata by them (the file describes the
 * whole model now); a file without such entries (PyTorch's, strop 0.1's) and every partial
 * load leave the model's metadata as it was. An entry a strict load cannot take (a key or
 * value outside strop_model_set_meta()'s bounds) fails the load with STROP_E_FORMAT.
 * @param model      A finalized model.
 * @param path       A safetensors file.
 * @param flags      STROP_LOAD_STRICT or STROP_LOAD_PARTIAL.
 * @param[out] report_out Optional (NULL to ignore): the report, owned by the caller; set
 *                   whenever the file could be read (also when strict mode fails on keys),
 *                   else NULL.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (a malformed file: the sentence says what);
 *         STROP_E_NOT_FOUND (strict: missing or unexpected keys); STROP_E_SHAPE (strict:
 *         shape or dtype mismatch); STROP_E_STATE (not finalized); STROP_E_INVALID_ARG;
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights(strop_model *model,
                                                                const char *path, int flags,
                                                                strop_load_report **report_out);

/**
 * @brief As strop_model_load_weights(), from a safetensors file image in memory (a host that
 *        embeds or downloads its model): the same checks (header bounds, dtypes, offsets,
 *        strict or partial, metadata), with errors naming "<memory>" where the file's path
 *        would be.
 * @param[in,out] model  A finalized model.
 * @param[in] data       The file's bytes. Read during the call only, never kept or written:
 *                       the caller may free it as soon as the call returns. Any alignment.
 * @param[in] size       Bytes at @p data.
 * @param[in] flags      STROP_LOAD_STRICT or STROP_LOAD_PARTIAL.
 * @param[out] report_out Optional (NULL to ignore), as for strop_model_load_weights().
 * @return STROP_OK; STROP_E_FORMAT (not a valid safetensors image: the sentence says what);
 *         STROP_E_NOT_FOUND / STROP_E_SHAPE (strict: missing, unexpected or mismatched
 *         tensors); STROP_E_STATE (not finalized); STROP_E_INVALID_ARG (NULL model or data,
 *         unknown flags); STROP_E_NOMEM. The model is unchanged on error. Thread-safe for
 *         distinct models (the buffer may be shared). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights_mem(strop_model *model,
                                                                    const void *data, size_t size,
                                                                    int flags,
                                                                    strop_load_report **report_out);

/**
 * @brief As strop_model_load_weights(), renaming file tensors first: a name starting with
 *        @p from_prefix has that prefix replaced by @p to_prefix ("features." -> "backbone."
 *        loads features.0.weight into backbone.0.weight). Other names are kept.
 * @param from_prefix Prefix in the file ("" matches every name).
 * @param to_prefix   Replacement (may be "").
 * @return As strop_model_load_weights(). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights_remap(
    strop_model *model, const char *path, int flags, const char *from_prefix,
    const char *to_prefix, strop_load_report **report_out);

/**
 * @brief Saves every parameter and buffer as a safetensors file (float tensors as F32, int64
 *        buffers as I64, PyTorch names and layouts; metadata "format" = "strop",
 *        "strop_version" and, since 0.2, every model metadata entry as "strop.meta.<key>"),
 *        atomically: a failure leaves any old file intact.
 * @param model A finalized model.
 * @return STROP_OK; STROP_E_IO; STROP_E_STATE (not finalized); STROP_E_INVALID_ARG;
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_weights(const strop_model *model,
                                                                const char *path);

/** @brief Number of report entries of @p kind (STROP_REPORT_*); -1 for bad arguments.
 *  @since 0.1 */
STROP_API int64_t strop_load_report_count(const strop_load_report *report, int kind);

/**
 * @brief Tensor name of entry @p i of @p kind into @p buf, snprintf-style (model-side names,
 *        i.e. after remapping).
 * @return The full length, or -1 for bad arguments. @since 0.1
 */
STROP_API int64_t strop_load_report_name(const strop_load_report *report, int kind, int64_t i,
                                         char *buf, size_t cap);

/**
 * @brief A sentence on entry @p i of @p kind into @p buf, snprintf-style; for a mismatch
 *        it names both shapes or dtypes ("head.weight: file [10, 64] F32, model [5, 64]").
 * @return The full length, or -1 for bad arguments. @since 0.1
 */
STROP_API int64_t strop_load_report_detail(const strop_load_report *report, int kind, int64_t i,
                                           char *buf, size_t cap);

/** @brief Frees a report. NULL is a no-op. @since 0.1 */
STROP_API void strop_load_report_free(strop_load_report *report);

/* ------------------------------------------------------------------------------------ */
/* Safetensors files: listing and reading (strop inspect)                                 */
/* ------------------------------------------------------------------------------------ */

/**
 * @brief An open, fully validated safetensors file (memory-mapped, read-only).
 * Weights and checkpoints written by strop are such files. One handle from one thread at
 * a time.
 */
typedef struct strop_st_file strop_st_file;

/**
 * @brief Opens and validates a safetensors file: header length against file size, strict
 *        JSON (UTF-8), known dtypes, shapes, offsets in range, contiguous and
 *        non-overlapping, byte lengths equal to shape × dtype size, unique names.
 * @param[out] out The handle, owned by the caller (strop_st_file_free()); NULL on error.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (naming the first problem and where);
 *         STROP_E_INVALID_ARG; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_st_file_open(const char *path, strop_st_file **out);

/** @brief Closes the file. NULL is a no-op. @since 0.1 */
STROP_API void strop_st_file_free(strop_st_file *file);

/** @brief Number of tensors (header order); -1 for NULL. @since 0.1 */
STROP_API int64_t strop_st_file_count(const strop_st_file *file);

/** @brief Index of the tensor called @p name, or -1 when absent or for bad arguments.
 *  @since 0.1 */
STROP_API int64_t strop_st_file_find(const strop_st_file *file, const char *name);

/** @brief Name of tensor @p i into @p buf, snprintf-style; -1 for bad arguments. @since 0.1 */
STROP_API int64_t strop_st_file_name(const strop_st_file *file, int64_t i, char *buf,
                                     size_t cap);

/** @brief Dtype string of tensor @p i ("F32", "BF16", "I64", ...) into @p buf,
 *  snprintf-style; -1 for bad arguments. @since 0.1 */
STROP_API int64_t strop_st_file_dtype(const strop_st_file *file, int64_t i, char *buf,
                                      size_t cap);

/**
 * @brief Shape of tensor @p i into @p dims (up to @p cap entries).
 * @return The rank (0 for a scalar; may exceed @p cap), or -1 for bad arguments. @since 0.1
 */
STROP_API int strop_st_file_shape(const strop_st_file *file, int64_t i, int64_t *dims, int cap);

/**
 * @brief Copies tensor @p i as float32 into @p dst, converting F16, BF16, F64 and integer
 *        dtypes.
 * @param count Floats at @p dst; must equal the tensor's element count.
 * @return STROP_OK; STROP_E_SHAPE (count differs); STROP_E_UNSUPPORTED (e.g. F8);
 *         STROP_E_INVALID_ARG. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_st_file_read_f32(const strop_st_file *file,
                                                              int64_t i, float *dst,
                                                              size_t count);

/** @brief Number of `__metadata__` entries; -1 for NULL. @since 0.1 */
STROP_API int64_t strop_st_file_meta_count(const strop_st_file *file);

/** @brief Key of metadata entry @p i into @p buf, snprintf-style; -1 for bad arguments.
 *  @since 0.1 */
STROP_API int64_t strop_st_file_meta_key(const strop_st_file *file, int64_t i, char *buf,
                                         size_t cap);

/** @brief Value of metadata entry @p i into @p buf, snprintf-style; -1 for bad arguments.
 *  @since 0.1 */
STROP_API int64_t strop_st_file_meta_value(const strop_st_file *file, int64_t i, char *buf,
                                           size_t cap);

STROP_END_DECLS

#endif
