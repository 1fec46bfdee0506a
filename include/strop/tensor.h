/* SPDX-License-Identifier: MIT */
/* strop — the opaque float32 tensor: row-major, batch-first, rank 1..8, owning its
 * storage or borrowing the caller's. */
#ifndef STROP_TENSOR_H
#define STROP_TENSOR_H

#include "common.h"
#include "error.h"

/**
 * @file tensor.h
 * @brief Opaque float32 tensors.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief A dense float32 tensor in row-major order, rank 1 .. #STROP_MAX_RANK.
 *
 * Its storage is shared between a tensor and the views made from it (reference counted,
 * atomically), so freeing the source of a view is safe, also from another thread. Writes
 * through one handle are seen by every handle sharing the storage; writing shared values
 * from two threads at once is a data race like any shared memory. One handle from one thread
 * at a time.
 * @since 0.1
 */
typedef struct strop_tensor strop_tensor;

/**
 * @brief Creates a tensor of the given shape, filled with zeros.
 * @param[in]  rank Number of dimensions, 1 .. #STROP_MAX_RANK.
 * @param[in]  dims @p rank sizes, each > 0; copied.
 * @param[out] out  The new tensor, owned by the caller (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG for a NULL pointer, a rank out of range or a size
 *         <= 0; STROP_E_SHAPE when the element count or byte size overflows; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_create(int rank, const int64_t *dims,
                                                           strop_tensor **out);

/**
 * @brief Creates a tensor holding a copy of @p count floats from @p data.
 * @param[in]  data  Source values; copied (the caller keeps them).
 * @param[in]  count Number of floats at @p data; must equal the shape's element count.
 * @param[in]  rank  Number of dimensions, 1 .. #STROP_MAX_RANK.
 * @param[in]  dims  @p rank sizes, each > 0; copied.
 * @param[out] out   The new tensor, owned by the caller (strop_tensor_free()); NULL on error.
 * @return STROP_OK; as strop_tensor_create() (STROP_E_INVALID_ARG also for NULL @p data);
 *         STROP_E_SHAPE also when @p count differs from the element count.
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
 * @param[in,out] data  A buffer of at least the shape's element count floats; borrowed.
 * @param[in]     count Number of floats in @p data; must be >= the shape's element count.
 * @param[in]     rank  Number of dimensions, 1 .. #STROP_MAX_RANK.
 * @param[in]     dims  @p rank sizes, each > 0; copied.
 * @param[out]    out   The new tensor, owned by the caller (strop_tensor_free(), which
 *                      leaves @p data alone); NULL on error.
 * @return STROP_OK; as strop_tensor_create() (STROP_E_INVALID_ARG also for NULL @p data);
 *         STROP_E_SHAPE also when @p count is smaller than the element count.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_wrap(float *data, size_t count, int rank,
                                                         const int64_t *dims, strop_tensor **out);

/**
 * @brief Deep copy: a new tensor with its own storage and the same shape and values.
 * @param[in]  src The tensor to copy (only read).
 * @param[out] out The copy, owned by the caller (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_copy(const strop_tensor *src,
                                                         strop_tensor **out);

/**
 * @brief A view of @p src with another shape and the same element count, sharing storage.
 *
 * Writes through either handle are seen by both. The storage lives until the last handle
 * sharing it is freed (for wrapped storage, the caller's buffer must outlive them all).
 * @param[in]  src  The tensor to view; its storage gains a reference (@p src itself may be
 *                  freed before the view).
 * @param[in]  rank Number of dimensions, 1 .. #STROP_MAX_RANK.
 * @param[in]  dims @p rank sizes, each > 0, except one that may be -1: it is inferred.
 * @param[out] out  The view, owned by the caller (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_SHAPE when the counts differ, -1 cannot be inferred or appears
 *         twice; STROP_E_INVALID_ARG (NULL, a rank out of range, a size <= 0 other than -1);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_reshape(const strop_tensor *src, int rank,
                                                            const int64_t *dims,
                                                            strop_tensor **out);

/**
 * @brief Sets every element to @p value.
 * @param[in,out] t     The tensor.
 * @param[in]     value The value.
 * @return STROP_OK; STROP_E_INVALID_ARG for NULL.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_fill(strop_tensor *t, float value);

/**
 * @brief Copies @p count floats from @p src into the tensor.
 * @param[in,out] t     The tensor.
 * @param[in]     src   The values (may overlap the tensor's storage); only read.
 * @param[in]     count Floats at @p src; must equal the element count.
 * @return STROP_OK; STROP_E_SHAPE if @p count is not the element count; STROP_E_INVALID_ARG
 *         (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_copy_from(strop_tensor *t, const float *src,
                                                              size_t count);

/**
 * @brief Copies the tensor's elements into the caller's buffer @p dst of @p count floats.
 * @param[in]  t     The tensor (only read).
 * @param[out] dst   Receives the element count floats, in row-major order.
 * @param[in]  count Floats available at @p dst; at least the element count.
 * @return STROP_OK; STROP_E_SHAPE if @p count is smaller than the element count;
 *         STROP_E_INVALID_ARG (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_copy_to(const strop_tensor *t, float *dst,
                                                            size_t count);

/**
 * @brief The first element of the tensor's storage, borrowed.
 * @param[in] t The tensor.
 * @return The data, valid while any handle sharing the storage lives; NULL for a NULL
 *         tensor.
 * @since 0.1
 */
STROP_API float *strop_tensor_data(strop_tensor *t);

/**
 * @brief Read-only data pointer, borrowed as strop_tensor_data()'s.
 * @param[in] t The tensor.
 * @return The data, or NULL for a NULL tensor.
 * @since 0.1
 */
STROP_API const float *strop_tensor_data_const(const strop_tensor *t);

/**
 * @brief Number of dimensions.
 * @param[in] t The tensor.
 * @return The rank, or 0 for a NULL tensor.
 * @since 0.1
 */
STROP_API int strop_tensor_rank(const strop_tensor *t);

/**
 * @brief Size of dimension @p i; negative @p i counts from the end (-1 is the last).
 * @param[in] t The tensor.
 * @param[in] i -rank .. rank - 1.
 * @return The size, or -1 (with strop_last_error() set) for NULL or @p i out of range.
 * @since 0.1
 */
STROP_API int64_t strop_tensor_dim(const strop_tensor *t, int i);

/**
 * @brief Number of elements.
 * @param[in] t The tensor.
 * @return The element count, or -1 for a NULL tensor.
 * @since 0.1
 */
STROP_API int64_t strop_tensor_numel(const strop_tensor *t);

/**
 * @brief Copies the shape into @p dims (up to @p cap entries).
 * @param[in]  t    The tensor.
 * @param[out] dims Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap  Entries available at @p dims.
 * @return The rank (which may exceed @p cap: then only @p cap entries were written), or -1
 *         (with strop_last_error() set) for a NULL tensor, or NULL @p dims with @p cap > 0.
 * @since 0.1
 */
STROP_API int strop_tensor_shape(const strop_tensor *t, int64_t *dims, int cap);

/**
 * @brief Frees the handle; the storage is released with its last handle (wrapped storage:
 *        the caller's buffer is left alone).
 * @param[in] t The tensor, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_tensor_free(strop_tensor *t);

STROP_END_DECLS

#endif
