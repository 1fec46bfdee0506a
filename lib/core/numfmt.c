/* SPDX-License-Identifier: MIT */
/* strop — shortest round-trip formatting of doubles (see numfmt.h). */
#include "core/numfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

size_t strop__fmt_double(double v, char *buf, size_t cap) {
  char tmp[STROP__FMT_DOUBLE_MAX];
  int n = 0;
  if (isnan(v)) {
    n = snprintf(tmp, sizeof tmp, "nan");
  } else if (isinf(v)) {
    n = snprintf(tmp, sizeof tmp, v < 0 ? "-inf" : "inf");
  } else if (v == floor(v) && fabs(v) < 1e16) {
    n = snprintf(tmp, sizeof tmp, "%.0f", v); /* an integer as one: "10", not "1e+01" */
    if (v == 0.0 && signbit(v)) n = snprintf(tmp, sizeof tmp, "-0");
  } else {
    /* %.17g always reads back exactly; the first shorter precision that does is the answer */
    for (int prec = 1; prec <= 17; prec++) {
      n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v) break;
    }
  }
  if (cap > 0) snprintf(buf, cap, "%s", tmp);
  return (size_t)n;
}
