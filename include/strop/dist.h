/* SPDX-License-Identifier: MIT */
/* strop — distributed (data-parallel) training: a small collective interface (all-reduce,
 * broadcast, barrier) with MPI as its built-in implementation and room for a host's own. */
#ifndef STROP_DIST_H
#define STROP_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "error.h"

/** @file dist.h @brief Data-parallel training over MPI or a host's collectives. @since 0.2 */

STROP_BEGIN_DECLS

/**
 * @brief A group of processes (ranks) that train one model together.
 *
 * Every collective call (an all-reduce inside a trainer step, strop_dist_barrier()) must be
 * made by every rank of the group, in the same order. A handle is used from one thread at a
 * time. @since 0.2
 */
typedef struct strop_dist strop_dist;

/**
 * @brief The collectives a host provides to strop_dist_custom() (NCCL, Gloo, its own MPI
 * wrapper). Fill it with strop_dist_ops_init() first; fields are only appended.
 *
 * Every callback receives the @c ctx given to strop_dist_custom() and returns 0 on success or
 * non-zero on failure (then the strop call that needed it fails with STROP_E_CALLBACK). The
 * reductions work in place and must leave the same values on every rank. @since 0.2
 */
typedef struct strop_dist_ops {
  size_t size;                  /**< sizeof(strop_dist_ops). */
  int (*rank)(void *ctx);       /**< This process's rank, 0 .. size-1. */
  int (*world_size)(void *ctx); /**< The number of ranks (>= 1). */
  /** Sums @p n floats element-wise over all ranks, in place. */
  int (*allreduce_sum_float)(void *ctx, float *data, int64_t n);
  /** Sums @p n doubles element-wise over all ranks, in place. */
  int (*allreduce_sum_double)(void *ctx, double *data, int64_t n);
  /** Copies @p bytes bytes at @p data on rank @p root to @p data on every other rank. */
  int (*broadcast)(void *ctx, void *data, size_t bytes, int root);
  int (*barrier)(void *ctx); /**< Returns once every rank called it. */
  /** Ends every rank of the group (exit status @p code); optional (NULL: not offered). */
  void (*abort_all)(void *ctx, int code);
  /** Called by strop_dist_free() for @p ctx; optional. */
  void (*destroy)(void *ctx);
  /**
   * Starts summing @p n floats element-wise over all ranks, in place, and returns without
   * waiting; optional, together with @c wait (both or neither; @since 0.2, appended: a host
   * built against an older header, whose @c size ends before it, keeps the blocking
   * allreduce_sum_float). Sets @p *request to a token that @c test and @c wait take (or to
   * NULL when the sum is already done: then neither is called). strop leaves @p data alone until @c wait returns, starts the operations in
   * the same order on every rank, and waits for each exactly once. With it, a trainer step
   * starts each gradient bucket's sum as soon as the backward has made it final, so the
   * communication overlaps the rest of the backward; the result must equal
   * allreduce_sum_float's bit for bit (the same sum in the same order).
   */
  int (*iallreduce_sum_float)(void *ctx, float *data, int64_t n, void **request);
  /** Lets a started operation progress without blocking (MPI_Test); sets @p *done to 1 when
   * it is complete (it is still waited for). Optional: strop calls it between the backwards
   * of the model's layers, where a library that progresses only inside its calls needs it. */
  int (*test)(void *ctx, void *request, int *done);
  /** Returns once the started operation @p request is complete (its data holds the sums). */
  int (*wait)(void *ctx, void *request);
} strop_dist_ops;

/**
 * @brief Fills @p ops with its size and NULL callbacks.
 * @param[out] ops The struct to fill; NULL is a no-op.
 * @since 0.2
 */
STROP_API void strop_dist_ops_init(strop_dist_ops *ops);

/**
 * @brief A group over MPI: the host's communicator, or MPI_COMM_WORLD.
 *
 * strop duplicates the communicator (its messages never mix with the host's) and sets
 * MPI_ERRORS_RETURN on the copy, so a failed collective is a status, not an abort. With
 * @p mpi_comm NULL, strop uses MPI_COMM_WORLD and initialises MPI (MPI_Init_thread) if the
 * host has not; the last strop_dist_free() then finalises it.
 * @param[in] mpi_comm A pointer to an @c MPI_Comm (borrowed: read during the call only), or
 *                     NULL for MPI_COMM_WORLD.
 * @param[out] out The group, owned by the caller (strop_dist_free()); NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (@p out NULL); STROP_E_UNSUPPORTED (a build without
 *         MPI: configure with -DSTROP_WITH_MPI=ON); STROP_E_IO (MPI failed, with its message);
 *         STROP_E_NOMEM. Thread safety: call it from the thread that runs MPI. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dist_init_mpi(void *mpi_comm, strop_dist **out);

/**
 * @brief A group over the host's own collectives.
 * @param[in] ops The callbacks; copied (only the bytes its @c size covers). rank, world_size,
 *                allreduce_sum_float, allreduce_sum_double, broadcast and barrier are required;
 *                iallreduce_sum_float and wait are optional but go together.
 * @param[in] ctx Passed to every callback; borrowed until strop_dist_free(), which calls
 *                @c ops->destroy(ctx) when given.
 * @param[out] out The group, owned by the caller; NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL argument, a required callback missing, a size
 *         too small, rank outside [0, size), only one of iallreduce_sum_float and wait);
 *         STROP_E_NOMEM. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dist_custom(const strop_dist_ops *ops, void *ctx,
                                                         strop_dist **out);

/**
 * @brief This process's rank in the group.
 * @param[in] d The group, or NULL (one process).
 * @return The rank, 0 .. size-1; 0 for NULL (one process is rank 0 of 1).
 * @since 0.2
 */
STROP_API int strop_dist_rank(const strop_dist *d);

/**
 * @brief The number of ranks in the group.
 * @param[in] d The group, or NULL (one process).
 * @return The number of ranks (>= 1); 1 for NULL.
 * @since 0.2
 */
STROP_API int strop_dist_size(const strop_dist *d);

/**
 * @brief Waits until every rank of @p d has called it (a collective).
 * @param[in,out] d The group.
 * @return STROP_OK; STROP_E_INVALID_ARG (@p d NULL); STROP_E_IO (MPI failed) or
 *         STROP_E_CALLBACK (a custom barrier failed). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dist_barrier(strop_dist *d);

/**
 * @brief Ends every process of the group with exit status @p code (MPI_Abort): what a host
 * calls when its rank failed and the others would otherwise wait for it forever. strop never
 * calls it by itself.
 * @param[in,out] d    The group.
 * @param[in]     code The exit status every process ends with.
 * @return Never STROP_OK: STROP_E_INVALID_ARG (@p d NULL), STROP_E_UNSUPPORTED (a custom
 *         group without abort_all), STROP_E_INTERNAL (abort_all returned); with a working
 *         abort_all it does not return. @since 0.2
 */
STROP_API strop_status strop_dist_abort(strop_dist *d, int code);

/**
 * @brief Frees the group (MPI: frees the duplicated communicator, and finalises MPI when strop
 * initialised it and this was its last group; a custom group: calls its destroy). Not a
 * collective, but with MPI finalising waits for the other ranks: call it on every rank.
 * @param[in] d The group; NULL is a no-op.
 * @since 0.2
 */
STROP_API void strop_dist_free(strop_dist *d);

STROP_END_DECLS

#endif
