/* strop tool — shared pieces of the command-line tool: the command line, progress display,
 * reports, small file readers. */
#ifndef STROP_TOOL_H
#define STROP_TOOL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <strop/strop.h>

/* ---- the command line (options.c: one table of commands and options) ---- */
enum {
  TOOL_EXIT_DONE = -1, /* tool_parse_args printed the help asked for: exit 0 */
  TOOL_EXIT_USAGE = 2
};
#define TOOL_MAX_ARGS 8
#define TOOL_MAX_SETS 64
typedef struct tool_opts {
  const char *cmd;
  const char *args[TOOL_MAX_ARGS];
  int nargs;
  const char *sets[TOOL_MAX_SETS]; /* --set KEY=VALUE, in order */
  int nsets;
  int64_t seed;       /* --seed; -1: the recipe's */
  int64_t threads;    /* --threads; 0: not given */
  int64_t epochs_cap; /* --epochs; 0: not given */
  int64_t top;        /* --top (default 1) */
  int quiet, json, no_baselines, markdown;
  int decode, no_special; /* tokenize */
  const char *weights, *spec, *split;
} tool_opts;
/* Parses argv against the tables: 0 when a command is to run, TOOL_EXIT_DONE after printing
 * help, TOOL_EXIT_USAGE (with a message on stderr) for a bad command line. */
int tool_parse_args(int argc, char **argv, tool_opts *o);
void tool_usage(FILE *f);
/* The help of one command, with exactly the options its parser accepts; -1 if unknown. */
int tool_command_help(FILE *f, const char *cmd);

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

/* A float array read from a .npy file (float32, float64, uint8, int32, int64; C order). */
typedef struct tool_array {
  float *data;
  size_t count;
  int rank;
  long long dims[8];
} tool_array;
int tool_npy_load(const char *path, tool_array *out, char *err, size_t cap);

/* `strop tune`: r is the recipe loaded from path with the command line's --set and --seed. */
int tool_cmd_tune(const strop_recipe *r, const char *path, int quiet, int json, int64_t epochs_cap,
                  volatile sig_atomic_t *interrupted);

/* strop layers [TYPE] [--markdown]: the layer types, their options and parameters */
int tool_cmd_layers(const char *const *args, int nargs, int as_markdown);

/* strop tokenize TOKENIZER [FILE] [--decode] [--no-special] */
int tool_cmd_tokenize(const char *const *args, int nargs, int decode, int no_special);

#endif
