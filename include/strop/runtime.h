/* SPDX-License-Identifier: MIT */
/* strop — process-wide run-time settings (threads) and the seedable random generator
 * the host may use to reproduce the library's sampling. */
#ifndef STROP_RUNTIME_H
#define STROP_RUNTIME_H

#include "common.h"
#include "error.h"

/**
 * @file runtime.h
 * @brief Threads and the portable random generator.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief Sets the number of threads strop's kernels use (process-wide, every handle).
 *
 * strop splits a batch, a GEMM or an optimizer pass across its own pool of worker threads
 * and runs BLAS single-threaded inside them. OpenBLAS's thread count is process-wide (the
 * host's numpy uses it too): strop sets it to 1 (openblas_set_num_threads) only while one of
 * its calls runs BLAS, and restores the value it found when that work ends, so a host that
 * uses OpenBLAS directly keeps its own setting (set it when no strop call runs; BLAS calls the
 * host makes on another thread while a strop call runs BLAS run single-threaded). Results are
 * deterministic for a given thread count; they may differ in the last bits between thread
 * counts (convolution weight gradients are summed per thread, then in thread order).
 *
 * A process-wide setting: call it when no strop call is running on any thread.
 * @param[in] n Threads, >= 1; 0 restores the default (the number of online CPUs). strop runs
 *              at most 64 threads: a larger @p n (or CPU count) is taken as 64, which
 *              strop_get_num_threads() then returns.
 * @return STROP_OK; STROP_E_INVALID_ARG for @p n < 0 (the setting is then unchanged).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_set_num_threads(int n);

/**
 * @brief The thread count last set with strop_set_num_threads(), or the default.
 * @return The count, >= 1. Thread-safe.
 * @since 0.1
 */
STROP_API int strop_get_num_threads(void);

/**
 * @brief A seedable random generator (PCG32) that yields the same numbers on every
 *        platform for the same seed: the stream the library's own sampling uses, for hosts
 *        that reproduce it. One handle from one thread at a time.
 * @since 0.1
 */
typedef struct strop_rng strop_rng;

/**
 * @brief Creates a generator seeded with @p seed.
 * @param[in]  seed Any value; equal seeds give equal streams.
 * @param[out] out  The generator, owned by the caller (strop_rng_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (@p out is NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_create(uint64_t seed, strop_rng **out);

/**
 * @brief Frees the generator.
 * @param[in] rng The generator, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_rng_free(strop_rng *rng);

/**
 * @brief Fills @p out with @p n floats uniform in [lo, hi).
 * @param[in,out] rng The generator; advances by @p n draws.
 * @param[in]     lo  Lower bound (included).
 * @param[in]     hi  Upper bound (excluded), >= @p lo.
 * @param[out]    out Room for @p n floats; may be NULL when @p n is 0.
 * @param[in]     n   Number of values.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p rng or @p out, @p hi < @p lo, NaN, or a bound
 *         or span @p hi - @p lo that is not finite; nothing is drawn).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_uniform(strop_rng *rng, float lo, float hi,
                                                         float *out, size_t n);

/**
 * @brief Fills @p out with @p n normal samples of the given mean and standard deviation.
 * @param[in,out] rng  The generator.
 * @param[in]     mean Mean of the distribution.
 * @param[in]     std  Standard deviation, >= 0.
 * @param[out]    out  Room for @p n floats; may be NULL when @p n is 0.
 * @param[in]     n    Number of values.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p rng or @p out, @p std < 0, a @p mean or
 *         @p std that is not finite).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_normal(strop_rng *rng, float mean, float std,
                                                        float *out, size_t n);

/**
 * @brief Writes a uniformly random permutation of 0 .. @p n - 1 into @p out.
 * @param[in,out] rng The generator.
 * @param[in]     n   Number of elements, >= 0.
 * @param[out]    out Room for @p n values; may be NULL when @p n is 0.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p rng or @p out, @p n < 0).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_permutation(strop_rng *rng, int64_t n,
                                                             int64_t *out);

/**
 * @brief The next raw 32-bit output of the generator.
 * @param[in,out] rng The generator.
 * @return The value; 0 for a NULL generator.
 * @since 0.1
 */
STROP_API uint32_t strop_rng_next_u32(strop_rng *rng);

/**
 * @brief How much more memory this process may take now, from the machine's limits, and
 *        which limit that is.
 *
 * Reads, where they exist: the cgroup v2 memory.max less memory.current of the process's
 * group and of each group above it, or the cgroup v1 memory.limit_in_bytes less
 * memory.usage_in_bytes; RLIMIT_AS less the address space the process maps (VmSize) and
 * RLIMIT_DATA less its data segments (VmData); and the system's MemAvailable. The lowest room
 * wins. A limit that is "max" or unset is not one. The figures are a snapshot: other threads
 * and processes change them. The recipe key `train.memory_limit_mb: auto` checks a training
 * step against this room (see strop_model_check_memory()).
 *
 * @param[out] bytes  The room under the lowest limit, in bytes (0 when the process is already
 *                    at or over it).
 * @param[out] source The limit named with its size, e.g. "cgroup memory.max 2.00 GB",
 *                    "RLIMIT_AS 1.50 GB", "MemAvailable 20.13 GB" (NUL-terminated, cut to
 *                    @p cap bytes); may be NULL when @p cap is 0.
 * @param[in]  cap    Bytes of @p source.
 * @return STROP_OK; STROP_E_INVALID_ARG (@p bytes NULL, or @p source NULL with @p cap > 0);
 *         STROP_E_UNSUPPORTED when no limit can be read (no /proc: not Linux). Outputs are
 *         written only on success. Thread-safe.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_memory_available(size_t *bytes, char *source,
                                                              size_t cap);

STROP_END_DECLS

#endif
