/* SPDX-License-Identifier: MIT */
/* strop — status codes, the per-thread error sentence, and the host's log callback. */
#ifndef STROP_ERROR_H
#define STROP_ERROR_H

#include "common.h"

/**
 * @file error.h
 * @brief Status codes, the per-thread error sentence, and the host's log handler.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief Result of every fallible call. 0 is success; failures are negative.
 *
 * The numbers are fixed and the list only grows: treat a negative value you do not know as a
 * failure. strop_status_str() names a status; strop_last_error() says what went wrong.
 * @since 0.1
 */
typedef enum strop_status {
  STROP_OK = 0,             /**< Success. */
  STROP_E_INVALID_ARG = -1, /**< An argument is NULL, out of range or inconsistent. */
  STROP_E_NOMEM = -2,       /**< An allocation failed. */
  STROP_E_IO = -3,          /**< A file could not be opened, read or written. */
  STROP_E_FORMAT = -4,      /**< A file or string is malformed. */
  STROP_E_SHAPE = -5,       /**< Tensor shapes do not agree. */
  STROP_E_NOT_FOUND = -6,   /**< A named thing (layer, tensor, key) does not exist. */
  STROP_E_STATE = -7,       /**< The call is not allowed in the object's current state. */
  STROP_E_NUMERIC = -8,     /**< A non-finite value appeared (loss, gradient). */
  STROP_E_UNSUPPORTED = -9, /**< Valid but not supported by this build or version. */
  STROP_E_INTERNAL = -10,   /**< A broken invariant inside the library (a bug). */
  STROP_E_CALLBACK = -11,   /**< A host callback reported failure. */
  STROP_E_CANCELLED = -12   /**< The host asked to stop (e.g. from a progress callback). */
} strop_status;

/**
 * @brief A short constant description of a status ("invalid argument").
 * @param[in] status A ::strop_status, or any int.
 * @return A static string owned by the library; "unknown status" for a number not in the
 *         list. Never NULL. Thread-safe.
 * @since 0.1
 */
STROP_API const char *strop_status_str(int status);

/**
 * @brief The sentence describing the last failure on the calling thread.
 *
 * It names the function, the argument and the values, e.g.
 * "strop_tensor_create: dims[1] must be > 0, got -3". Calls that succeed do not clear it.
 * @return A thread-local string owned by the library, valid until the next failing call
 *         on the same thread; never NULL (empty if nothing failed yet). Thread-safe: each
 *         thread reads its own.
 * @since 0.1
 */
STROP_API const char *strop_last_error(void);

/**
 * @brief Clears the calling thread's error sentence (strop_last_error() returns "" after).
 * Thread-safe: it clears only the calling thread's.
 * @since 0.1
 */
STROP_API void strop_clear_error(void);

/** @brief Log levels, most severe first. @since 0.1 */
typedef enum strop_log_level {
  STROP_LOG_ERROR = 0, /**< Failures. */
  STROP_LOG_WARN = 1,  /**< Suspicious input that was accepted. */
  STROP_LOG_INFO = 2,  /**< Progress of long operations. */
  STROP_LOG_DEBUG = 3  /**< Details for developers. */
} strop_log_level;

/**
 * @brief A host function that receives log messages.
 *
 * It may be called from any thread that calls into strop or from the library's own
 * worker threads, also from several at once; it must not call back into strop.
 * @param[in] level     One of ::strop_log_level.
 * @param[in] message   The message, without a trailing newline; borrowed, valid only during
 *                      the call.
 * @param[in] user_data The pointer given to strop_set_log_handler().
 * @since 0.1
 */
typedef void (*strop_log_fn)(int level, const char *message, void *user_data);

/**
 * @brief Installs the process-wide log handler. The default is none: strop is silent.
 *
 * Thread-safe (serialised internally); a message being delivered when the handler changes
 * may still reach the old one.
 * @param[in] fn        The handler, or NULL to silence logging again.
 * @param[in] max_level Messages with a level above this (a ::strop_log_level) are dropped.
 * @param[in] user_data Passed back to @p fn; the library never dereferences it.
 * @since 0.1
 */
STROP_API void strop_set_log_handler(strop_log_fn fn, int max_level, void *user_data);

STROP_END_DECLS

#endif
