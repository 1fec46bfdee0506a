/* SPDX-License-Identifier: MIT */
/* strop — the library's version, as macros for the headers compiled against and as a
 * function for the library actually loaded. */
#ifndef STROP_VERSION_H
#define STROP_VERSION_H

#include "common.h"

/**
 * @file version.h
 * @brief Compile-time and run-time version.
 *
 * The macros are the version of the headers a program was compiled against; strop_version()
 * and strop_version_number() are the version of the library it runs with, which may be newer
 * (docs/abi.md).
 * @since 0.1
 */

/** @brief Major version of these headers. @since 0.1 */
#define STROP_VERSION_MAJOR 0
/** @brief Minor version of these headers. @since 0.1 */
#define STROP_VERSION_MINOR 2
/** @brief Patch version of these headers. @since 0.1 */
#define STROP_VERSION_PATCH 0
/** @brief The headers' version as one number: major * 10000 + minor * 100 + patch. @since 0.1 */
#define STROP_VERSION_NUMBER \
  (STROP_VERSION_MAJOR * 10000 + STROP_VERSION_MINOR * 100 + STROP_VERSION_PATCH)

STROP_BEGIN_DECLS

/**
 * @brief Version of the library loaded at run time, as "MAJOR.MINOR.PATCH".
 * @return A static string owned by the library; never NULL. Thread-safe.
 * @since 0.1
 */
STROP_API const char *strop_version(void);

/**
 * @brief Version of the library loaded at run time as one number, to compare with
 *        #STROP_VERSION_NUMBER.
 * @return major * 10000 + minor * 100 + patch. Thread-safe.
 * @since 0.1
 */
STROP_API int strop_version_number(void);

STROP_END_DECLS

#endif
