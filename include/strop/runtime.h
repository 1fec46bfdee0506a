/* strop — process-wide run-time settings (threads) and the seedable random generator
 * the host may use to reproduce the library's sampling. */
#ifndef STROP_RUNTIME_H
#define STROP_RUNTIME_H

#include "common.h"
#include "error.h"

/** @file runtime.h @brief Threads and the portable random generator. @since 0.1 */

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
 * Call it when no training step is running.
 * @param n Threads, >= 1; 0 restores the default (the number of online CPUs).
 * @return STROP_OK or STROP_E_INVALID_ARG for n < 0. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_set_num_threads(int n);

/** @brief The thread count last set (or the default). Thread-safe. @since 0.1 */
STROP_API int strop_get_num_threads(void);

/**
 * @brief A seedable random generator (PCG32) that yields the same numbers on every
 * platform for the same seed. One handle from one thread at a time.
 */
typedef struct strop_rng strop_rng;

/**
 * @brief Creates a generator seeded with @p seed.
 * @param[out] out Owned by the caller; free with strop_rng_free().
 * @return STROP_OK, STROP_E_INVALID_ARG, STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_create(uint64_t seed, strop_rng **out);

/** @brief Frees the generator; NULL is a no-op. @since 0.1 */
STROP_API void strop_rng_free(strop_rng *rng);

/**
 * @brief Fills @p out with @p n floats uniform in [lo, hi).
 * @return STROP_OK or STROP_E_INVALID_ARG (NULL, hi < lo). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_uniform(strop_rng *rng, float lo, float hi,
                                                         float *out, size_t n);

/**
 * @brief Fills @p out with @p n normal samples of the given mean and standard deviation.
 * @return STROP_OK or STROP_E_INVALID_ARG (NULL, std < 0). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_normal(strop_rng *rng, float mean, float std,
                                                        float *out, size_t n);

/**
 * @brief Writes a uniformly random permutation of 0..n-1 into @p out.
 * @return STROP_OK or STROP_E_INVALID_ARG (NULL, n < 0). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_rng_permutation(strop_rng *rng, int64_t n,
                                                             int64_t *out);

/** @brief The next raw 32-bit output; 0 for a NULL generator. @since 0.1 */
STROP_API uint32_t strop_rng_next_u32(strop_rng *rng);

STROP_END_DECLS

#endif
