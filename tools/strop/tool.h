/* strop tool — shared pieces of the command-line tool: progress display, reports, small
 * file readers, per-command help. */
#ifndef STROP_TOOL_H
#define STROP_TOOL_H

#include <signal.h>
#include <stdio.h>

#include <strop/strop.h>

typedef struct tool_progress {
  int quiet;
  int tty;                 /* stderr is a terminal: redraw a bar in place */
  int bar_open;            /* a bar line is on screen without its newline */
  volatile sig_atomic_t *interrupted;
  double last_draw;
  double stage_t0;
} tool_progress;

void tool_progress_init(tool_progress *p, int quiet, volatile sig_atomic_t *interrupted);
int tool_progress_event(const strop_run_event *e, void *user_data);
void tool_progress_end(tool_progress *p);

void tool_report_text(FILE *f, const strop_recipe *r, strop_run *run);
void tool_report_json(FILE *f, const char *cmd, const char *recipe, strop_run *run);
void tool_json_str(FILE *f, const char *s);
void tool_command_help(const char *cmd);

/* A text buffer that grows (free s when done). */
typedef struct tool_text {
  char *s;
  size_t len, cap;
} tool_text;
/* Sets t to "[d0, d1, ...]" however long; 0, or -1 out of memory. */
int tool_shape_text(tool_text *t, const int64_t *dims, int rank);

int tool_cmd_tune(const char *const *args, int nargs, const char *const *sets, int nsets, int quiet,
                  int json, int64_t epochs_cap, volatile sig_atomic_t *interrupted);

#endif
