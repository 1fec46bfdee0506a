/* SPDX-License-Identifier: MIT */
/* strop — shared pieces of the SVG plots: round ticks and escaped text. A tick step is 1, 2 or
 * 5 times a power of ten, so axis labels read 0, 0.5, 1.0, 1.5 rather than 0, 0.394, 0.789. */
#include <math.h>
#include <string.h>

#include "recipe/plot.h"

void strop__plot_ticks(double lo, double hi, int max_intervals, strop__ticks *t) {
  if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
  if (hi < lo) {
    double x = lo;
    lo = hi;
    hi = x;
  }
  if (max_intervals < 1) max_intervals = 1;
  if (hi - lo <= 1e-12 * (fabs(hi) + fabs(lo)) || hi == lo) {
    double d = fabs(lo) > 0 ? 0.1 * fabs(lo) : 0.5;
    lo -= d;
    hi += d;
  }
  double raw = (hi - lo) / max_intervals;
  double mag = pow(10.0, floor(log10(raw)));
  static const double mult[] = {1, 2, 5, 10};
  double step = 10 * mag;
  int64_t k0 = 0, k1 = 0;
  for (int i = 0; i < 4; i++) {
    step = mult[i] * mag;
    /* the tolerance keeps a value that is a multiple of the step (1.0 of 0.2) on its tick */
    k0 = (int64_t)floor(lo / step + 1e-9);
    k1 = (int64_t)ceil(hi / step - 1e-9);
    if (k1 - k0 <= max_intervals) break;
  }
  if (k1 == k0) k1 = k0 + 1;
  t->step = step;
  t->n = (int)(k1 - k0);
  t->lo = (double)k0 * step;
  t->hi = (double)k1 * step;
  int d = (int)-floor(log10(step) + 1e-9);
  t->decimals = d > 0 ? d : 0;
}

double strop__plot_tick(const strop__ticks *t, int i) {
  double k0 = floor(t->lo / t->step + 0.5);
  return (k0 + i) * t->step;
}

int64_t strop__plot_int_step(int64_t n, int max_ticks) {
  if (max_ticks < 1) max_ticks = 1;
  static const int64_t mult[] = {1, 2, 5};
  for (int64_t mag = 1;; mag *= 10)
    for (int i = 0; i < 3; i++)
      if (n / (mult[i] * mag) <= max_ticks || mag > INT64_MAX / 100) return mult[i] * mag;
}

void strop__plot_text(strop__sbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '<') strop__sbuf_puts(b, "&lt;");
    else if (*s == '>') strop__sbuf_puts(b, "&gt;");
    else if (*s == '&') strop__sbuf_puts(b, "&amp;");
    else if (*s == '"') strop__sbuf_puts(b, "&quot;");
    else strop__sbuf_put(b, s, 1);
  }
}

double strop__plot_text_width(const char *s, double font_size) {
  double n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++; /* count UTF-8 characters, not bytes */
  return 0.6 * font_size * n;
}
