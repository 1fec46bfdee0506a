/* SPDX-License-Identifier: MIT */
/* strop — numbers written as text so they read back to the same value: the shortest decimal
 * form of a double that strtod turns into exactly that double (recipes, trials files, reports). */
#ifndef STROP_NUMFMT_H
#define STROP_NUMFMT_H

#include <stddef.h>

/* Longest text strop__fmt_double writes, with its NUL ("-2.2250738585072014e-308"). */
#define STROP__FMT_DOUBLE_MAX 32

/* Writes v into buf (cap bytes, snprintf style) so that strtod reads back exactly v: an
 * integer below 1e16 as its digits ("10", "-100", "-0"), any other value with the fewest
 * significant digits (1 to 17) in %g notation ("0.001", "1e-05", "0.000123456789012");
 * "nan", "inf" or "-inf" for the non-finite values. Returns the length written (without the
 * NUL), or what it would be. Thread-safe; uses the C locale's decimal point. */
size_t strop__fmt_double(double v, char *buf, size_t cap);

#endif
