/* SPDX-License-Identifier: MIT */
/* strop — shared macros of the public headers: export marker, result and deprecation
 * attributes, C++ linkage. Included by every other public header; not useful on its own. */
#ifndef STROP_COMMON_H
#define STROP_COMMON_H

#include <stddef.h>
#include <stdint.h>

/**
 * @file common.h
 * @brief Export, attribute and linkage macros used by every strop header.
 *
 * The rules every declaration of the other headers follows — status codes, who owns what, one
 * handle from one thread at a time — are on the main page (@ref conventions, @ref threads).
 * @since 0.1
 */

/**
 * @brief Marks every function the library exports.
 *
 * Default visibility on ELF and Mach-O (the library is built with hidden visibility, so
 * nothing unmarked is exported); dllexport while building strop on Windows and dllimport when
 * using it, unless `STROP_STATIC` is defined for a static link.
 * @since 0.1
 */
#if defined(_WIN32) && defined(STROP_BUILDING)
#  define STROP_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(STROP_STATIC)
#  define STROP_API __declspec(dllimport)
#elif defined(__GNUC__) || defined(__clang__)
#  define STROP_API __attribute__((visibility("default")))
#else
#  define STROP_API
#endif

/**
 * @brief Marks functions whose returned status must be looked at (GCC's and Clang's
 *        warn_unused_result; nothing elsewhere).
 * @since 0.1
 */
#if defined(__GNUC__) || defined(__clang__)
#  define STROP_NODISCARD __attribute__((warn_unused_result))
#else
#  define STROP_NODISCARD
#endif

/**
 * @brief Marks a deprecated function: a call to it warns (GCC's and Clang's
 *        -Wdeprecated-declarations, MSVC's C4996).
 *
 * A deprecated function stays exported, with its symbol and behaviour, until the SONAME
 * changes (docs/abi.md); its documentation says since when and what replaces it. A program
 * that must go on calling one without warnings (a -Werror build that still supports 0.1)
 * defines `STROP_NO_DEPRECATION_WARNINGS` before including any strop header, which makes this
 * macro empty. It is also empty while strop itself is built (`STROP_BUILDING`).
 * @since 0.2
 */
#if defined(STROP_NO_DEPRECATION_WARNINGS) || defined(STROP_BUILDING)
#  define STROP_DEPRECATED
#elif defined(__GNUC__) || defined(__clang__)
#  define STROP_DEPRECATED __attribute__((deprecated))
#elif defined(_MSC_VER)
#  define STROP_DEPRECATED __declspec(deprecated)
#else
#  define STROP_DEPRECATED
#endif

/** @brief Opens C linkage (`extern "C" {`) in C++; nothing in C. @since 0.1 */
#ifdef __cplusplus
#  define STROP_BEGIN_DECLS extern "C" {
#else
#  define STROP_BEGIN_DECLS
#endif

/** @brief Closes what #STROP_BEGIN_DECLS opened. @since 0.1 */
#ifdef __cplusplus
#  define STROP_END_DECLS }
#else
#  define STROP_END_DECLS
#endif

/** @brief Largest tensor rank the library handles (batch dimension included). @since 0.1 */
#define STROP_MAX_RANK 8

#endif
