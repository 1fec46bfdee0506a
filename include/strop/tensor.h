/* strop — the opaque float32 tensor: row-major, batch-first, rank 1..8, owning its
 * storage or borrowing the caller's. */
#ifndef STROP_TENSOR_H
#define STROP_TENSOR_H

#include "common.h"
#include "error.h"

/** @file tensor.h @brief Opaque float32 tensors. @since 0.1 */

STROP_BEGIN_DECLS

/**
 * @brief A dense float32 tensor in row-major order.
 * Its storage is shared between a tensor and the views made from it (reference
 * counted), so freeing the source of a view is safe. One handle from one thread at a time.
 */
typedef struct strop_tensor strop_tensor;

/**
 * @brief Creates a tensor of the given shape, filled with zeros.
 * @param rank Number of dimensions, 1..STROP_MAX_RANK.
 * @param dims @p rank sizes, each > 0.
 * @param[out] out The new tensor, owned by the caller (strop_tensor_free()).
 * @return STROP_OK; STROP_E_INVALID_ARG for a NULL pointer, a rank out of range or a size
 *         <= 0; STROP_E_SHAPE when the element count overflows; STROP_E_NOMEM.
 * On failure *out is set to NULL. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_create(int rank, const int64_t *dims,
                                                           strop_tensor **out);

/**
 * @brief Creates a tensor holding a copy of @p count floats from @p data.
 * @param data Source values; at least as many as the shape holds. Copied.
 * @param count Number of floats at @p data; must equal the shape's element count.
 * @return As strop_tensor_create(), and STROP_E_SHAPE when @p count differs.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_from_data(const float *data, size_t count,
                                                              int rank, const int64_t *dims,
                                                              strop_tensor **out);

/**
 * @brief Wraps the caller's buffer as a tensor without copying.
 *
 * The caller keeps ownership of @p data: it must stay valid, and must not be freed, while
 * the tensor or any view of it lives. The library reads and may write it, never frees it.
 * @param data A buffer of at least the shape's element count floats.
 * @param count Number of floats in @p data; must be >= the shape's element count.
 * @return As strop_tensor_create(). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_wrap(float *data, size_t count, int rank,
                                                         const int64_t *dims,
                                                         strop_tensor **out);

/**
 * @brief Deep copy: a new tensor with its own storage and the same shape and values.
 * @return STROP_OK, STROP_E_INVALID_ARG, STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_copy(const strop_tensor *src,
                                                         strop_tensor **out);

/**
 * @brief A view of @p src with another shape and the same element count, sharing storage.
 * One entry of @p dims may be -1: it is inferred.
 * Writes through either handle are seen by both. The storage lives until the last handle
 * sharing it is freed (for wrapped storage, the caller's buffer must outlive them all).
 * @return STROP_OK; STROP_E_SHAPE when the counts differ or -1 cannot be inferred;
 *         STROP_E_INVALID_ARG; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_reshape(const strop_tensor *src, int rank,
                                                            const int64_t *dims,
                                                            strop_tensor **out);

/**
 * @brief Sets every element to @p value.
 * @return STROP_OK or STROP_E_INVALID_ARG for NULL. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_fill(strop_tensor *t, float value);

/**
 * @brief Copies @p count floats from @p src into the tensor.
 * @return STROP_OK; STROP_E_SHAPE if @p count is not the element count; STROP_E_INVALID_ARG.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_copy_from(strop_tensor *t, const float *src,
                                                              size_t count);

/**
 * @brief Copies the tensor's elements into the caller's buffer @p dst of @p count floats.
 * @return STROP_OK; STROP_E_SHAPE if @p count is smaller than the element count;
 *         STROP_E_INVALID_ARG. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_copy_to(const strop_tensor *t, float *dst,
                                                            size_t count);

/**
 * @brief The first element of the tensor's storage, borrowed.
 * Valid while any handle sharing the storage lives. NULL for a NULL tensor. @since 0.1
 */
STROP_API float *strop_tensor_data(strop_tensor *t);

/** @brief Read-only data pointer; as strop_tensor_data(). @since 0.1 */
STROP_API const float *strop_tensor_data_const(const strop_tensor *t);

/** @brief Number of dimensions, or 0 for a NULL tensor. @since 0.1 */
STROP_API int strop_tensor_rank(const strop_tensor *t);

/**
 * @brief Size of dimension @p i; negative @p i counts from the end (-1 is the last).
 * @return The size, or -1 (with strop_last_error() set) for NULL or @p i out of range.
 * @since 0.1
 */
STROP_API int64_t strop_tensor_dim(const strop_tensor *t, int i);

/** @brief Number of elements, or -1 for a NULL tensor. @since 0.1 */
STROP_API int64_t strop_tensor_numel(const strop_tensor *t);

/**
 * @brief Copies the shape into @p dims (up to @p cap entries).
 * @return The rank (which may exceed @p cap: then only @p cap entries were written), or -1
 *         for NULL arguments. @since 0.1
 */
STROP_API int strop_tensor_shape(const strop_tensor *t, int64_t *dims, int cap);

/** @brief Frees the handle; storage is released with its last handle. NULL is a no-op.
 *  @since 0.1 */
STROP_API void strop_tensor_free(strop_tensor *t);

STROP_END_DECLS

#endif
