/* strop — model files: YAML architecture specs, safetensors weights (PyTorch's names and
 * layouts), load reports for partial loading, and a listing API for safetensors files. */
#ifndef STROP_IO_H
#define STROP_IO_H

#include "common.h"
#include "error.h"
#include "model.h"

/**
 * @file io.h
 * @brief Model specs (YAML), weights (safetensors), load reports, safetensors listing.
 * @since 0.1
 */

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
 * length and file size (16 MiB) are limited.
 * @param[in]  path The spec file; read during the call.
 * @param[out] out  The finalized model, owned by the caller (strop_model_free()); NULL on
 *                  error.
 * @return STROP_OK; STROP_E_IO (cannot read the file); STROP_E_FORMAT (not YAML, wrong
 *         structure, limits exceeded); STROP_E_INVALID_ARG (NULL, a layer's options or
 *         name) / STROP_E_NOT_FOUND (an unknown type or input) / STROP_E_SHAPE (a shape
 *         conflict), as strop_model_add() and strop_model_finalize() return them;
 *         STROP_E_NOMEM. Thread-safe (it touches no shared state).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_spec(const char *path, strop_model **out);

/**
 * @brief As strop_model_load_spec(), from a NUL-terminated YAML string; errors name
 *        "<string>" as the file.
 * @param[in]  yaml The spec text, at most 16 MiB; only read during the call.
 * @param[out] out  The finalized model, owned by the caller (strop_model_free()); NULL on
 *                  error.
 * @return STROP_OK; the statuses of strop_model_load_spec() but STROP_E_IO (STROP_E_FORMAT
 *         also for a string over the limit). Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_spec_string(const char *yaml,
                                                                    strop_model **out);

/**
 * @brief Writes the model's architecture (input shape, seed, every node with its type, inputs,
 *        ties and all options, defaults included) as a YAML spec, atomically (temporary file
 *        in the same folder, fsync, rename). Loading the result gives a model with the same
 *        nodes, options and shapes. Weights are not part of a spec (strop_model_save_weights()).
 * @param[in] model A model with at least one node (finalized or not); only read.
 * @param[in] path  The file to write.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, no nodes); STROP_E_IO (naming the path; the
 *         old file, if any, is intact); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_spec(const strop_model *model,
                                                             const char *path);

/**
 * @brief The model's YAML spec (as strop_model_save_spec() writes it) into the caller's
 *        buffer, snprintf-style.
 * @param[in]  model A model with at least one node (finalized or not); only read.
 * @param[out] buf   Buffer of @p cap bytes (may be NULL when @p cap is 0); always
 *                   NUL-terminated when @p cap > 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length of the spec (excluding the NUL), or -1 on error (NULL model, no
 *         nodes, NULL @p buf with @p cap > 0, out of memory; strop_last_error() says which).
 * @since 0.1
 */
STROP_API int64_t strop_model_spec_string(const strop_model *model, char *buf, size_t cap);

/* ------------------------------------------------------------------------------------ */
/* Weights                                                                                */
/* ------------------------------------------------------------------------------------ */

/** @brief Load flags of strop_model_load_weights() and its variants. @since 0.1 */
enum {
  /** Default: every model tensor must be in the file with its shape, and nothing else. */
  STROP_LOAD_STRICT = 0,
  /** PyTorch's strict=False: load what matches by name and shape, report the rest. */
  STROP_LOAD_PARTIAL = 1
};

/** @brief Entry kinds of a load report (strop_load_report_count()). @since 0.1 */
enum {
  STROP_REPORT_MISSING = 0,    /**< Model tensors the file lacks. */
  STROP_REPORT_UNEXPECTED = 1, /**< File tensors the model lacks (after prefix remapping). */
  STROP_REPORT_MISMATCHED = 2, /**< Present in both with another shape or dtype. */
  STROP_REPORT_LOADED = 3      /**< Tensors copied into the model. */
};

/**
 * @brief What a weight load found: missing, unexpected, mismatched and loaded tensor names.
 *
 * Read-only once made: its getters may run on several threads at once.
 * Owned by the caller once returned; free with strop_load_report_free().
 * @since 0.1
 */
typedef struct strop_load_report strop_load_report;

/**
 * @brief Loads parameters and buffers from a safetensors file by PyTorch name.
 *
 * Float tensors may be stored as F32, F16, BF16 or F64 (converted to float32); int64
 * buffers (BatchNorm's num_batches_tracked) as I64 or I32. Everything is validated
 * before the model is touched: in strict mode any missing, unexpected or mismatched tensor
 * fails the call naming the first few, and the model is unchanged. The file is memory-mapped
 * during the call.
 *
 * Model metadata (strop_model_set_meta()): a strict load of a file that has
 * "strop.meta.<key>" entries replaces the model's metadata by them (the file describes the
 * whole model now); a file without such entries (PyTorch's, strop 0.1's) and every partial
 * load leave the model's metadata as it was. An entry a strict load cannot take (a key or
 * value outside strop_model_set_meta()'s bounds) fails the load with STROP_E_FORMAT.
 * @param[in,out] model      A finalized model; unchanged on error.
 * @param[in]     path       A safetensors file.
 * @param[in]     flags      ::STROP_LOAD_STRICT or ::STROP_LOAD_PARTIAL.
 * @param[out]    report_out Optional (NULL to ignore): the report, owned by the caller
 *                           (strop_load_report_free()); set when the file's tensors were
 *                           matched against the model (on success, and when a strict load
 *                           fails on names or shapes), else NULL.
 * @return STROP_OK; STROP_E_IO (the file cannot be opened or mapped); STROP_E_FORMAT (a
 *         malformed file or metadata entry: the sentence says what); STROP_E_NOT_FOUND
 *         (strict: missing or unexpected tensors); STROP_E_SHAPE (strict: a shape or dtype
 *         mismatch); STROP_E_STATE (not finalized); STROP_E_INVALID_ARG (NULL, unknown
 *         flags); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights(strop_model *model,
                                                                const char *path, int flags,
                                                                strop_load_report **report_out);

/**
 * @brief As strop_model_load_weights(), from a safetensors file image in memory (a host that
 *        embeds or downloads its model): the same checks (header bounds, dtypes, offsets,
 *        strict or partial, metadata), with errors naming "<memory>" where the file's path
 *        would be.
 * @param[in,out] model      A finalized model; unchanged on error.
 * @param[in]     data       The file's bytes. Read during the call only, never kept or
 *                           written: the caller may free it as soon as the call returns. Any
 *                           alignment.
 * @param[in]     size       Bytes at @p data.
 * @param[in]     flags      ::STROP_LOAD_STRICT or ::STROP_LOAD_PARTIAL.
 * @param[out]    report_out Optional (NULL to ignore), as for strop_model_load_weights().
 * @return STROP_OK; STROP_E_FORMAT (not a valid safetensors image: the sentence says what);
 *         STROP_E_NOT_FOUND / STROP_E_SHAPE (strict: missing, unexpected or mismatched
 *         tensors); STROP_E_STATE (not finalized); STROP_E_INVALID_ARG (NULL model or data,
 *         unknown flags); STROP_E_NOMEM. Thread-safe for distinct models (the buffer may be
 *         shared).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights_mem(strop_model *model,
                                                                    const void *data, size_t size,
                                                                    int flags,
                                                                    strop_load_report **report_out);

/**
 * @brief As strop_model_load_weights(), renaming file tensors first: a name starting with
 *        @p from_prefix has that prefix replaced by @p to_prefix ("features." -> "backbone."
 *        loads features.0.weight into backbone.0.weight). Other names are kept.
 * @param[in,out] model       A finalized model; unchanged on error.
 * @param[in]     path        A safetensors file.
 * @param[in]     flags       ::STROP_LOAD_STRICT or ::STROP_LOAD_PARTIAL.
 * @param[in]     from_prefix Prefix in the file ("" matches every name).
 * @param[in]     to_prefix   Replacement (may be "").
 * @param[out]    report_out  Optional (NULL to ignore), as for strop_model_load_weights();
 *                            its names are the model's (after renaming).
 * @return STROP_OK; the statuses of strop_model_load_weights() (STROP_E_INVALID_ARG also for
 *         a NULL prefix).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights_remap(
    strop_model *model, const char *path, int flags, const char *from_prefix,
    const char *to_prefix, strop_load_report **report_out);

/**
 * @brief Saves every parameter and buffer as a safetensors file (float tensors as F32, int64
 *        buffers as I64, PyTorch names and layouts; metadata "format" = "strop",
 *        "strop_version" and, since 0.2, every model metadata entry as "strop.meta.<key>"),
 *        atomically: a failure leaves any old file intact.
 * @param[in] model A finalized model; only read.
 * @param[in] path  The file to write.
 * @return STROP_OK; STROP_E_IO (naming the path); STROP_E_STATE (not finalized);
 *         STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_weights(const strop_model *model,
                                                                const char *path);

/**
 * @brief Number of report entries of @p kind.
 * @param[in] report The report.
 * @param[in] kind   ::STROP_REPORT_MISSING, ::STROP_REPORT_UNEXPECTED,
 *                   ::STROP_REPORT_MISMATCHED or ::STROP_REPORT_LOADED.
 * @return The count, or -1 (NULL report, unknown kind).
 * @since 0.1
 */
STROP_API int64_t strop_load_report_count(const strop_load_report *report, int kind);

/**
 * @brief Tensor name of entry @p i of @p kind into @p buf, snprintf-style (model-side names,
 *        i.e. after remapping).
 * @param[in]  report The report.
 * @param[in]  kind   A STROP_REPORT_* kind.
 * @param[in]  i      0 .. strop_load_report_count() - 1.
 * @param[out] buf    Receives the name; may be NULL when @p cap is 0.
 * @param[in]  cap    Bytes available at @p buf.
 * @return The full length, or -1 for bad arguments (NULL report, unknown kind, @p i out of
 *         range, NULL @p buf with @p cap > 0; strop_last_error() is not set).
 * @since 0.1
 */
STROP_API int64_t strop_load_report_name(const strop_load_report *report, int kind, int64_t i,
                                         char *buf, size_t cap);

/**
 * @brief A sentence on entry @p i of @p kind into @p buf, snprintf-style; for a mismatch
 *        it names both shapes or dtypes ("head.weight: file [10, 64] F32, model [5, 64] F32").
 * @param[in]  report The report.
 * @param[in]  kind   A STROP_REPORT_* kind.
 * @param[in]  i      0 .. strop_load_report_count() - 1.
 * @param[out] buf    Receives the sentence; may be NULL when @p cap is 0.
 * @param[in]  cap    Bytes available at @p buf.
 * @return The full length, or -1 for bad arguments (as strop_load_report_name()).
 * @since 0.1
 */
STROP_API int64_t strop_load_report_detail(const strop_load_report *report, int kind, int64_t i,
                                           char *buf, size_t cap);

/**
 * @brief Frees a report.
 * @param[in] report The report, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_load_report_free(strop_load_report *report);

/* ------------------------------------------------------------------------------------ */
/* Safetensors files: listing and reading (strop inspect)                                 */
/* ------------------------------------------------------------------------------------ */

/**
 * @brief An open, fully validated safetensors file (memory-mapped, read-only).
 *
 * Weights and checkpoints written by strop are such files. Its getters only read: they may
 * run on several threads at once on a file no one frees.
 * @since 0.1
 */
typedef struct strop_st_file strop_st_file;

/**
 * @brief Opens and validates a safetensors file: header length against file size, strict
 *        JSON (UTF-8), known dtypes, shapes, offsets in range, contiguous and
 *        non-overlapping, byte lengths equal to shape × dtype size, unique names.
 * @param[in]  path The file; mapped until strop_st_file_free().
 * @param[out] out  The handle, owned by the caller (strop_st_file_free()); NULL on error.
 * @return STROP_OK; STROP_E_IO (cannot open, read or map it); STROP_E_FORMAT (naming the
 *         first problem and where); STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_st_file_open(const char *path, strop_st_file **out);

/**
 * @brief Unmaps and closes the file.
 * @param[in] file The file, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_st_file_free(strop_st_file *file);

/**
 * @brief Number of tensors.
 * @param[in] file The file.
 * @return The count (tensors are indexed in header order), or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_st_file_count(const strop_st_file *file);

/**
 * @brief Index of the tensor called @p name.
 * @param[in] file The file.
 * @param[in] name A tensor name.
 * @return The index, or -1 when absent or for NULL arguments.
 * @since 0.1
 */
STROP_API int64_t strop_st_file_find(const strop_st_file *file, const char *name);

/**
 * @brief Name of tensor @p i into @p buf, snprintf-style.
 * @param[in]  file The file.
 * @param[in]  i    0 .. strop_st_file_count() - 1.
 * @param[out] buf  Receives the name; may be NULL (nothing is written).
 * @param[in]  cap  Bytes available at @p buf.
 * @return The full length, or -1 (NULL file, @p i out of range; strop_last_error() is not
 *         set).
 * @since 0.1
 */
STROP_API int64_t strop_st_file_name(const strop_st_file *file, int64_t i, char *buf,
                                     size_t cap);

/**
 * @brief Dtype of tensor @p i ("F32", "BF16", "I64", ...) into @p buf, snprintf-style.
 * @param[in]  file The file.
 * @param[in]  i    0 .. strop_st_file_count() - 1.
 * @param[out] buf  Receives the dtype; may be NULL (nothing is written).
 * @param[in]  cap  Bytes available at @p buf.
 * @return The full length, or -1 (NULL file, @p i out of range).
 * @since 0.1
 */
STROP_API int64_t strop_st_file_dtype(const strop_st_file *file, int64_t i, char *buf,
                                      size_t cap);

/**
 * @brief Shape of tensor @p i into @p dims (up to @p cap entries).
 * @param[in]  file The file.
 * @param[in]  i    0 .. strop_st_file_count() - 1.
 * @param[out] dims Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap  Entries available at @p dims.
 * @return The rank (0 for a scalar; may exceed @p cap), or -1 (NULL file, @p i out of range,
 *         NULL @p dims with @p cap > 0).
 * @since 0.1
 */
STROP_API int strop_st_file_shape(const strop_st_file *file, int64_t i, int64_t *dims, int cap);

/**
 * @brief Copies tensor @p i as float32 into @p dst, converting F16, BF16, F64 and integer
 *        dtypes.
 * @param[in]  file  The file.
 * @param[in]  i     0 .. strop_st_file_count() - 1.
 * @param[out] dst   Receives the values in row-major order.
 * @param[in]  count Floats at @p dst; must equal the tensor's element count.
 * @return STROP_OK; STROP_E_SHAPE (@p count differs); STROP_E_UNSUPPORTED (a dtype with no
 *         float reading, e.g. F8); STROP_E_INVALID_ARG (NULL, @p i out of range).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_st_file_read_f32(const strop_st_file *file,
                                                              int64_t i, float *dst,
                                                              size_t count);

/**
 * @brief Number of `__metadata__` entries.
 * @param[in] file The file.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_st_file_meta_count(const strop_st_file *file);

/**
 * @brief Key of metadata entry @p i into @p buf, snprintf-style.
 * @param[in]  file The file.
 * @param[in]  i    0 .. strop_st_file_meta_count() - 1.
 * @param[out] buf  Receives the key; may be NULL (nothing is written).
 * @param[in]  cap  Bytes available at @p buf.
 * @return The full length, or -1 (NULL file, @p i out of range).
 * @since 0.1
 */
STROP_API int64_t strop_st_file_meta_key(const strop_st_file *file, int64_t i, char *buf,
                                         size_t cap);

/**
 * @brief Value of metadata entry @p i into @p buf, snprintf-style.
 * @param[in]  file The file.
 * @param[in]  i    0 .. strop_st_file_meta_count() - 1.
 * @param[out] buf  Receives the value; may be NULL (nothing is written).
 * @param[in]  cap  Bytes available at @p buf.
 * @return The full length, or -1 (NULL file, @p i out of range).
 * @since 0.1
 */
STROP_API int64_t strop_st_file_meta_value(const strop_st_file *file, int64_t i, char *buf,
                                           size_t cap);

STROP_END_DECLS

#endif
