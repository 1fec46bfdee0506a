/* SPDX-License-Identifier: MIT */
/* strop — what a weight load found (load reports) and a listing API for safetensors files.
 * The strop_model_* functions that read and write model files are declared in model.h. */
#ifndef STROP_IO_H
#define STROP_IO_H

#include "common.h"
#include "error.h"
#include "model.h"

/**
 * @file io.h
 * @brief Load reports and the safetensors listing API.
 *
 * The functions that load and save a model's spec and weights (strop_model_load_spec(),
 * strop_model_load_weights(), strop_model_save_weights() ...) are declared in model.h with
 * every other strop_model_* function, together with the load flags and the
 * strop_load_report type whose getters are here.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/* ------------------------------------------------------------------------------------ */
/* Load reports (strop_model_load_weights(), strop_model_load_pretrained())               */
/* ------------------------------------------------------------------------------------ */

/** @brief Entry kinds of a load report (strop_load_report_count()). @since 0.1 */
enum {
  STROP_REPORT_MISSING = 0,    /**< Model tensors the file lacks. */
  STROP_REPORT_UNEXPECTED = 1, /**< File tensors the model lacks (after prefix remapping). */
  STROP_REPORT_MISMATCHED = 2, /**< Present in both with another shape or dtype. */
  STROP_REPORT_LOADED = 3      /**< Tensors copied into the model. */
};

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
STROP_API int64_t strop_st_file_name(const strop_st_file *file, int64_t i, char *buf, size_t cap);

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
