/* SPDX-License-Identifier: MIT */
/* strop — glob matching over whole hierarchical names ("features.*", "blocks.[0-3].*"):
 * surgery targets, checkpoint tensors that are not parameters. fnmatch-like. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

/* Matches one class "[...]" at *pp against c; advances *pp past it. -1 if unterminated. */
static int class_match(const char **pp, char c) {
  const char *p = *pp + 1;
  int neg = 0, hit = 0;
  if (*p == '!' || *p == '^') {
    neg = 1;
    p++;
  }
  int first = 1;
  while (*p && (*p != ']' || first)) {
    char lo = *p, hi;
    if (lo == '\\' && p[1]) lo = *++p;
    p++;
    hi = lo;
    if (*p == '-' && p[1] && p[1] != ']') {
      p++;
      if (*p == '\\' && p[1]) p++;
      hi = *p++;
    }
    if (c >= lo && c <= hi) hit = 1;
    first = 0;
  }
  if (*p != ']') return -1;
  *pp = p + 1;
  return hit != neg;
}

int strop__glob_match(const char *pat, const char *s) {
  const char *star_p = NULL, *star_s = NULL;
  while (1) {
    if (*pat == '*') {
      while (*pat == '*') pat++;
      if (!*pat) return 1;
      star_p = pat;
      star_s = s;
      continue;
    }
    if (*s) {
      int ok;
      const char *next = pat + 1;
      if (*pat == '?') {
        ok = 1;
      } else if (*pat == '[') {
        const char *q = pat;
        int r = class_match(&q, *s);
        if (r < 0) { /* an unterminated '[' is a literal */
          ok = *s == '[';
        } else {
          ok = r;
          next = q;
        }
      } else if (*pat == '\\' && pat[1]) {
        ok = pat[1] == *s;
        next = pat + 2;
      } else {
        ok = *pat != '\0' && *pat == *s;
      }
      if (ok) {
        pat = next;
        s++;
        continue;
      }
    } else if (!*pat) {
      return 1;
    }
    if (!star_p || !*star_s) return 0;
    pat = star_p;
    s = ++star_s;
  }
}

int strop__glob_is_pattern(const char *pat) { return strpbrk(pat, "*?[") != NULL; }
