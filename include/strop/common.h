/* strop — shared macros of the public headers: export marker, result attribute,
 * C++ linkage. Included by every other public header; not useful on its own. */
#ifndef STROP_COMMON_H
#define STROP_COMMON_H

#include <stddef.h>
#include <stdint.h>

/** @file common.h
 *  @brief Export and attribute macros used by every strop header. @since 0.1 */

#if defined(_WIN32) && defined(STROP_BUILDING)
#  define STROP_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(STROP_STATIC)
#  define STROP_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#  define STROP_API __attribute__((visibility("default")))
#else
#  define STROP_API
#endif

/** Marks functions whose returned status must be looked at. */
#if defined(__GNUC__) || defined(__clang__)
#  define STROP_NODISCARD __attribute__((warn_unused_result))
#else
#  define STROP_NODISCARD
#endif

#ifdef __cplusplus
#  define STROP_BEGIN_DECLS extern "C" {
#  define STROP_END_DECLS }
#else
#  define STROP_BEGIN_DECLS
#  define STROP_END_DECLS
#endif

/** Largest tensor rank the library handles. @since 0.1 */
#define STROP_MAX_RANK 8

#endif
