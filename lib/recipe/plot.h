/* SPDX-License-Identifier: MIT */
/* strop — the pieces the SVG plots of recipe runs and searches share: round axis ticks
 * (steps of 1, 2 or 5 times a power of ten), escaped text, text width estimates. */
#ifndef STROP_RECIPE_PLOT_H
#define STROP_RECIPE_PLOT_H

#include <stdint.h>

#include "core/sbuf.h"

typedef struct strop__ticks {
  double lo, hi; /* the axis range: the outer ticks, covering the data */
  double step;   /* 1, 2 or 5 times a power of ten */
  int n;         /* intervals: ticks are lo + i * step for i = 0 .. n */
  int decimals;  /* digits after the point that print every tick exactly */
} strop__ticks;

/* Ticks over [lo, hi] with at most max_intervals intervals (at least 1 interval; a single
 * value gets a range around it). Non-finite input gives [0, 1]. */
void strop__plot_ticks(double lo, double hi, int max_intervals, strop__ticks *t);
/* Tick i's value, computed as an integer multiple of the step (no accumulated error). */
double strop__plot_tick(const strop__ticks *t, int i);
/* Integer ticks for counts (epochs, trials): a step of 1, 2 or 5 times a power of ten, >= 1,
 * giving at most max_ticks ticks over [1, n]. */
int64_t strop__plot_int_step(int64_t n, int max_ticks);
/* s with <, > and & escaped, for SVG text and attributes. */
void strop__plot_text(strop__sbuf *b, const char *s);
/* Rough width in pixels of s at a font size (DejaVu Sans averages 0.6 em per character). */
double strop__plot_text_width(const char *s, double font_size);

#endif
