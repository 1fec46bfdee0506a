/* SPDX-License-Identifier: MIT */
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
  int64_t seed;        /* --seed; -1: the recipe's */
  int64_t threads;     /* --threads; 0: not given */
  int64_t epochs_cap;  /* --epochs; 0: not given */
  int64_t trials;      /* --trials; 0: not given */
  int64_t time_budget; /* --time, seconds; 0: not given */
  int64_t top;         /* --top (default 1) */
  int64_t image_size;  /* --image-size; 0: not given */
  int64_t max_length;  /* --max-length; 0: not given */
  int quiet, json, no_baselines, markdown, resume, list;
  int decode, no_special; /* tokenize */
  const char *weights, *spec, *split;
  const char *arch, *output, *weights_out; /* import */
  const char *prompts[TOOL_MAX_SETS];      /* generate: --prompt, in order */
  int nprompts;
  const char *prompts_file;     /* generate: --prompts FILE, one prompt per line */
  int chat;                     /* generate --chat */
  const char *text, *text_file; /* predict --text, --text-file */
  int64_t max_tokens, top_k, num_beams;
  double temperature, top_p;
} tool_opts;
/* Parses argv against the tables: 0 when a command is to run, TOOL_EXIT_DONE after printing
 * help, TOOL_EXIT_USAGE (with a message on stderr) for a bad command line. */
int tool_parse_args(int argc, char **argv, tool_opts *o);
void tool_usage(FILE *f);
/* The help of one command, with exactly the options its parser accepts; -1 if unknown. */
int tool_command_help(FILE *f, const char *cmd);

typedef struct tool_progress {
  int quiet;
  int tty;      /* stderr is a terminal: redraw a bar in place */
  int bar_open; /* a bar line is on screen without its newline */
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

/* A text buffer that grows (free s when done). */
typedef struct tool_text {
  char *s;
  size_t len, cap;
} tool_text;
/* Makes room for n bytes in t (its text is kept); 0, or -1 out of memory. */
int tool_text_reserve(tool_text *t, size_t n);
/* Sets t to "[d0, d1, ...]" however long; 0, or -1 out of memory. */
int tool_shape_text(tool_text *t, const int64_t *dims, int rank);
/* Sets t to the whole string an snprintf-style getter of the library returns for (file, i)
 * ("" when the getter refuses); 0, or -1 out of memory. */
int tool_getter_text(tool_text *t, int64_t (*get)(const strop_st_file *, int64_t, char *, size_t),
                     const strop_st_file *file, int64_t i);

/* `strop tune`: r is the recipe loaded from path with the command line's --set and --seed;
 * o gives --quiet, --json, --epochs, --trials and --time; d the ranks mpirun started (NULL:
 * one process), of which only rank 0 prints. */
int tool_cmd_tune(const strop_recipe *r, const char *path, const tool_opts *o, strop_dist *d,
                  volatile sig_atomic_t *interrupted);

/* strop layers [TYPE] [--markdown]: the layer types, their options and parameters */
int tool_cmd_layers(const char *const *args, int nargs, int as_markdown);

/* strop generate MODEL_DIR [--prompt TEXT]... [--prompts FILE] [--max-tokens N] [--temperature T] [--top-k K]
 * [--top-p P] [--seed S]; interrupted (Ctrl-C) ends it with exit 130 */
int tool_cmd_generate(const tool_opts *o, volatile sig_atomic_t *interrupted);

/* strop tokenize TOKENIZER [FILE] [--decode] [--no-special] */
int tool_cmd_tokenize(const char *const *args, int nargs, int decode, int no_special);

#endif
