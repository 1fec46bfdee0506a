/* SPDX-License-Identifier: MIT */
/* strop tool — the commands and options, declared once in two tables: the parser reads them,
 * and `strop --help` and `strop COMMAND --help` are printed from them, so help and parser
 * cannot disagree about what a command accepts. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

typedef struct command_info {
  const char *name;
  const char *args;    /* positional arguments, as in the usage line */
  const char *summary; /* one line for `strop --help` */
  const char *text;    /* the paragraph of `strop COMMAND --help` */
} command_info;

static const command_info COMMANDS[] = {
    {"train", "RECIPE", "train a model from fresh weights (e.g. pre-training)",
     "Builds model.spec with fresh weights and trains it as the recipe says (its\n"
     "model.weights is not read). Writes the recipe's outputs.\n"},
    {"finetune", "RECIPE", "fine-tune a pre-trained model as the recipe says",
     "Loads model.spec and the pre-trained model.weights, applies the surgery,\n"
     "runs every stage, evaluates on the test data after each, runs the baselines,\n"
     "and writes the outputs (weights, spec, metrics, plot, report).\n"},
    {"tune", "RECIPE", "search hyperparameters (the recipe's tune: section)",
     "Runs the recipe's tune: section: trials of the fine-tune with values drawn by\n"
     "grid, random or Bayesian search; a live table, a trials file, the best recipe.\n"
     "A second run resumes from the trials file: it runs the trials still missing and,\n"
     "first, one that Ctrl-C interrupted.\n"},
    {"eval", "RECIPE", "evaluate a model on the recipe's test data",
     "Evaluates a model (by default the recipe's output spec and weights) on the\n"
     "recipe's data: loss, accuracy, top-5 (with more than 5 classes), per-class\n"
     "precision/recall/F1, confusion.\n"},
    {"predict", "SPEC WEIGHTS INPUT.npy|IMAGE...|--text TEXT",
     "the classes of each row of INPUT (or each image), with their names",
     "Runs the model on every row of INPUT (float32/float64/uint8/int .npy, C or\n"
     "Fortran order, plain or gzip; N samples), or on each JPEG/PNG IMAGE, as its\n"
     "training data were prepared: the scale, resize, centre crop and normalization\n"
     "its recipe used, saved in WEIGHTS, are applied (raw uint8 images go in as they\n"
     "are; an image of any size when the recipe resized or cropped). Prints the K most likely "
     "classes\n"
     "of each row: label (as in the source data), name, probability. NaN or infinite\n"
     "inputs are refused (exit 3). With --text or --text-file a model trained on text\n"
     "classifies raw strings, encoded by the tokenizer its recipe used.\n"},
    {"summary", "SPEC [WEIGHTS]", "the layer table of a model",
     "Prints the layer table: name, type, output shape, parameters, trainable.\n"},
    {"inspect", "FILE", "tensors, dtypes, shapes and metadata of a safetensors file",
     "Lists a safetensors weights or checkpoint file: names, dtypes, shapes, metadata.\n"},
    {"import", "PATH", "a pre-trained checkpoint as a model spec strop can edit",
     "Reads a checkpoint as people have it — a Hugging Face model folder (config.json\n"
     "and model.safetensors or its shards) or a torchvision state_dict saved as\n"
     "safetensors (name it with --arch) — checks that every tensor loads, and writes\n"
     "the equivalent YAML spec with the checkpoint's own names, so recipes and surgery\n"
     "use it like any other spec. --list names the architectures.\n"},
    {"layers", "[TYPE]", "the layer types a spec may use, their options and parameters",
     "Lists the layer types a model spec may use; with TYPE, its options (kind,\n"
     "default, allowed values) and parameters; --markdown prints the tables of\n"
     "docs/formats.md.\n"},
    {"tokenize", "TOKENIZER [FILE]", "token ids of each line of FILE (or stdin), or back",
     "Loads TOKENIZER (a tokenizer.json, a SentencePiece .model, GPT-2's vocab.json\n"
     "with merges.txt beside it, BERT's vocab.txt, or a folder holding one of them)\n"
     "and prints the ids of each input line, space-separated, one line per line;\n"
     "the tokenizer's special tokens ([CLS], BOS, ...) are added. With --decode\n"
     "each input line holds ids and the text they stand for is printed.\n"},
    {"generate", "MODEL_DIR", "continue a prompt with a causal language model",
     "Loads a Hugging Face causal language model folder (config.json, the\n"
     "safetensors weights and tokenizer.json: GPT-2, Llama family) and prints the\n"
     "prompt followed by the text it generates, token by token as it comes. Greedy\n"
     "by default; with --temperature above 0 it samples (--top-k, --top-p, --seed);\n"
     "with --num-beams N it searches with N beams as transformers does.\n"
     "It stops at the tokenizer's end-of-sequence token, after --max-tokens tokens, or\n"
     "when the model's context is full. Without --prompt it starts from the\n"
     "beginning-of-sequence token (or the end-of-sequence one, as GPT-2 does).\n"
     "Several prompts (--prompt more than once, --prompts FILE) are continued\n"
     "together as one batch, each as it would be alone; each prompt and its\n"
     "continuation is printed on a line of its own, in order, once all are done.\n"
     "With --chat each prompt is a user's message, rendered with the folder's chat\n"
     "template, and only the reply is printed.\n"},
    {"version", "", "the library's version (also: strop --version)",
     "Prints the version of the strop library the tool runs on.\n"},
};

/* ARG_COUNT1: a count from 1 (a cap of 0 epochs would be the library's "no cap", the top 0
 * classes nothing); ARG_PROB: a probability in (0, 1] */
enum { ARG_FLAG, ARG_COUNT, ARG_COUNT1, ARG_STRING, ARG_SET, ARG_REAL, ARG_PROB, ARG_LIST };

typedef struct option_info {
  const char *name, *alias;
  const char *value; /* the value's placeholder, NULL for a flag */
  int kind;
  size_t field;         /* offsetof(tool_opts, ...) */
  const char *commands; /* the commands that accept it, separated by spaces */
  const char *help;
} option_info;

#define RUNS "train finetune tune"
static const option_info OPTIONS[] = {
    {"--set", NULL, "KEY=VALUE", ARG_SET, 0, RUNS " eval",
     "override a recipe value by key path (optimizer.lr=3e-4,\n"
     "stages[1].epochs=5); repeatable"},
    {"--seed", NULL, "N", ARG_COUNT, offsetof(tool_opts, seed), RUNS " eval generate",
     "override the recipe's seed (generate: the sampling\nseed, default 0)"},
    {"--threads", NULL, "N", ARG_COUNT, offsetof(tool_opts, threads),
     RUNS " eval predict generate", "threads for strop's kernels (0: every CPU)"},
    {"--epochs", NULL, "N", ARG_COUNT1, offsetof(tool_opts, epochs_cap), RUNS,
     "cap every stage at N epochs (quick runs)"},
    {"--trials", NULL, "N", ARG_COUNT, offsetof(tool_opts, trials), "tune",
     "N trials in all, those in the trials file counted\n"
     "(instead of tune.trials)"},
    {"--time", NULL, "SECONDS", ARG_COUNT, offsetof(tool_opts, time_budget), "tune",
     "start no trial after SECONDS; the running ones finish\n"
     "(instead of tune.time_budget)"},
    {"--no-baselines", NULL, NULL, ARG_FLAG, offsetof(tool_opts, no_baselines), "train finetune",
     "skip the recipe's baselines"},
    {"--resume", NULL, NULL, ARG_FLAG, offsetof(tool_opts, resume), "train finetune",
     "continue from the recipe's output.checkpoint (written every\n"
     "train.checkpoint_every steps) where a stopped run left it"},
    {"--weights", NULL, "FILE", ARG_STRING, offsetof(tool_opts, weights), "eval",
     "weights to evaluate; default: the recipe's output"},
    {"--spec", NULL, "FILE", ARG_STRING, offsetof(tool_opts, spec), "eval",
     "architecture; default: the recipe's output spec"},
    {"--split", NULL, "test|val|train", ARG_STRING, offsetof(tool_opts, split), "eval",
     "which data to use (default test)"},
    {"--top", NULL, "K", ARG_COUNT1, offsetof(tool_opts, top), "predict",
     "print the K best classes per row (default 1)"},
    {"--quiet", "-q", NULL, ARG_FLAG, offsetof(tool_opts, quiet), RUNS, "no progress output"},
    {"--json", NULL, NULL, ARG_FLAG, offsetof(tool_opts, json), RUNS " eval predict inspect",
     "print the result as JSON on stdout"},
    {"--arch", NULL, "NAME", ARG_STRING, offsetof(tool_opts, arch), "import",
     "the architecture (resnet18, ...); default: config.json's"},
    {"--image-size", NULL, "N", ARG_COUNT, offsetof(tool_opts, image_size), "import",
     "declare the model for N x N images (default: the\n"
     "architecture's)"},
    {"--max-length", NULL, "N", ARG_COUNT, offsetof(tool_opts, max_length), "import",
     "declare the model for sequences of up to N tokens\n"
     "(default: config.json's)"},
    {"--output", "-o", "SPEC", ARG_STRING, offsetof(tool_opts, output), "import",
     "write the spec to SPEC (default: print it)"},
    {"--weights-out", NULL, "FILE", ARG_STRING, offsetof(tool_opts, weights_out), "import",
     "also write the weights as one safetensors file"},
    {"--list", NULL, NULL, ARG_FLAG, offsetof(tool_opts, list), "import",
     "list the architectures strop reads"},
    {"--markdown", NULL, NULL, ARG_FLAG, offsetof(tool_opts, markdown), "layers",
     "print markdown tables (those of docs/formats.md)"},
    {"--decode", NULL, NULL, ARG_FLAG, offsetof(tool_opts, decode), "tokenize",
     "read lines of ids and print their text"},
    {"--no-special", NULL, NULL, ARG_FLAG, offsetof(tool_opts, no_special), "tokenize",
     "no special tokens: none added when encoding,\nnone printed when decoding"},
    {"--prompt", NULL, "TEXT", ARG_LIST, offsetof(tool_opts, prompts), "generate",
     "the text to continue; given several times, the\nprompts are continued together"},
    {"--prompts", NULL, "FILE", ARG_STRING, offsetof(tool_opts, prompts_file), "generate",
     "continue each line of FILE (after the --prompt ones),\nall together"},
    {"--chat", NULL, NULL, ARG_FLAG, offsetof(tool_opts, chat), "generate",
     "the prompt is a user message: rendered with the\n"
     "folder's chat template (tokenizer_config.json)"},
    {"--text", NULL, "TEXT", ARG_STRING, offsetof(tool_opts, text), "predict",
     "classify TEXT (a model trained on text: its recipe's\n"
     "tokenizer, saved in WEIGHTS, encodes it)"},
    {"--text-file", NULL, "FILE", ARG_STRING, offsetof(tool_opts, text_file), "predict",
     "classify each line of FILE (- for stdin)"},
    {"--max-tokens", NULL, "N", ARG_COUNT, offsetof(tool_opts, max_tokens), "generate",
     "most tokens to generate (default 50)"},
    {"--temperature", NULL, "T", ARG_REAL, offsetof(tool_opts, temperature), "generate",
     "0 (default): greedy; above 0: sample at this\ntemperature"},
    {"--top-k", NULL, "K", ARG_COUNT, offsetof(tool_opts, top_k), "generate",
     "sample among the K most likely tokens (default 0: all)"},
    {"--top-p", NULL, "P", ARG_PROB, offsetof(tool_opts, top_p), "generate",
     "sample among the most likely tokens that make up\nprobability P (default 1: all)"},
    {"--num-beams", NULL, "N", ARG_COUNT, offsetof(tool_opts, num_beams), "generate",
     "beam search with N beams (default 1: greedy); the\ntext comes when the search ends"},
    {"--help", "-h", NULL, ARG_FLAG, 0, NULL, "this help"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static const char EXIT_TEXT[] =
    "exit status: 0 success; 1 the job failed (I/O, numeric, out of memory); 2 bad command\n"
    "line; 3 invalid recipe, model or data (the message names file, line and column);\n"
    "130 interrupted.\n";

static const command_info *find_command(const char *name) {
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (!strcmp(COMMANDS[i].name, name)) return &COMMANDS[i];
  return NULL;
}

/* Whether option o applies to command cmd (every command takes --help). */
static int accepts(const option_info *o, const char *cmd) {
  if (!o->commands) return 1;
  size_t n = strlen(cmd);
  for (const char *p = o->commands; (p = strstr(p, cmd)) != NULL; p += n)
    if ((p == o->commands || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return 1;
  return 0;
}

/* "  --seed N" padded to a column, then the help, continuation lines indented alike; with
 * for_all, also the commands that take it. */
static void print_option(FILE *f, const option_info *o, int for_all) {
  char head[64];
  snprintf(head, sizeof head, "  %s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "",
           o->name, o->value ? " " : "", o->value ? o->value : "");
  size_t w = strlen(head);
  fprintf(f, "%s%*s", head, w < 26 ? (int)(26 - w) : 1, "");
  for (const char *h = o->help; *h; h++) {
    fputc(*h, f);
    if (*h == '\n') fprintf(f, "%26s", "");
  }
  if (for_all && o->commands) fprintf(f, "\n%26s(%s)", "", o->commands);
  fputc('\n', f);
}

void tool_usage(FILE *f) {
  fputs("usage: strop COMMAND [options] ARGS\n\ncommands:\n", f);
  for (size_t i = 0; i < N_COMMANDS; i++) {
    char head[64];
    snprintf(head, sizeof head, "  %s %s", COMMANDS[i].name, COMMANDS[i].args);
    size_t w = strlen(head);
    fprintf(f, "%s%*s%s\n", head, w < 34 ? (int)(34 - w) : 1, "", COMMANDS[i].summary);
  }
  fputs("\noptions (strop COMMAND --help lists those of one command):\n", f);
  for (size_t i = 0; i < N_OPTIONS; i++) print_option(f, &OPTIONS[i], 1);
  fputs("  --version               the library's version (strop version)\n\n", f);
  fputs(EXIT_TEXT, f);
}

int tool_command_help(FILE *f, const char *cmd) {
  const command_info *c = find_command(cmd);
  if (!c) {
    fprintf(stderr, "strop: unknown command '%s' (see strop --help)\n", cmd);
    return -1;
  }
  fprintf(f, "usage: strop %s%s%s [options]\n", c->name, c->args[0] ? " " : "", c->args);
  fputs(c->text, f);
  fputs("\noptions:\n", f);
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (accepts(&OPTIONS[i], cmd)) print_option(f, &OPTIONS[i], 0);
  return 0;
}

int tool_parse_args(int argc, char **argv, tool_opts *o) {
  memset(o, 0, sizeof *o);
  o->top = 1;
  o->seed = -1;
  o->max_tokens = 50;
  o->top_p = 1.0;
  if (argc < 2) {
    tool_usage(stderr);
    return TOOL_EXIT_USAGE;
  }
  o->cmd = argv[1];
  if (!strcmp(o->cmd, "-h") || !strcmp(o->cmd, "--help") || !strcmp(o->cmd, "help")) {
    if (argc > 2 && !strcmp(o->cmd, "help"))
      return tool_command_help(stdout, argv[2]) ? TOOL_EXIT_USAGE : TOOL_EXIT_DONE;
    tool_usage(stdout);
    return TOOL_EXIT_DONE;
  }
  if (!strcmp(o->cmd, "--version")) o->cmd = "version";
  if (!find_command(o->cmd)) {
    fprintf(stderr, "strop: unknown command '%s'\n\n", o->cmd);
    tool_usage(stderr);
    return TOOL_EXIT_USAGE;
  }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const option_info *opt = NULL;
    for (size_t k = 0; k < N_OPTIONS && !opt; k++)
      if (!strcmp(a, OPTIONS[k].name) || (OPTIONS[k].alias && !strcmp(a, OPTIONS[k].alias)))
        opt = &OPTIONS[k];
    if (!opt) {
      if (a[0] == '-' && a[1]) {
        fprintf(stderr, "strop %s: unknown option '%s' (see strop %s --help)\n", o->cmd, a,
                o->cmd);
        return TOOL_EXIT_USAGE;
      }
      if (o->nargs == TOOL_MAX_ARGS) {
        fprintf(stderr, "strop %s: too many arguments (see strop %s --help)\n", o->cmd, o->cmd);
        return TOOL_EXIT_USAGE;
      }
      o->args[o->nargs++] = a;
      continue;
    }
    if (!strcmp(opt->name, "--help")) {
      tool_command_help(stdout, o->cmd);
      return TOOL_EXIT_DONE;
    }
    if (!accepts(opt, o->cmd)) {
      fprintf(stderr, "strop %s: option '%s' does not apply to %s (see strop %s --help)\n",
              o->cmd, opt->name, o->cmd, o->cmd);
      return TOOL_EXIT_USAGE;
    }
    char *field = (char *)o + opt->field;
    if (opt->kind == ARG_FLAG) {
      *(int *)field = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "strop %s: %s needs a value (%s)\n", o->cmd, opt->name, opt->value);
      return TOOL_EXIT_USAGE;
    }
    const char *v = argv[++i];
    if (opt->kind == ARG_STRING) {
      /* a placeholder of alternatives (test|val|train) is the list of valid values */
      if (strchr(opt->value, '|')) {
        size_t n = strlen(v);
        const char *p = strstr(opt->value, v);
        if (!n || !p || (p != opt->value && p[-1] != '|') || (p[n] != '|' && p[n] != '\0')) {
          fprintf(stderr, "strop %s: %s takes one of %s, got '%s'\n", o->cmd, opt->name,
                  opt->value, v);
          return TOOL_EXIT_USAGE;
        }
      }
      *(const char **)field = v;
    } else if (opt->kind == ARG_SET) {
      if (o->nsets == TOOL_MAX_SETS || !strchr(v, '=')) {
        fprintf(stderr, "strop %s: --set takes KEY=VALUE, got '%s'\n", o->cmd, v);
        return TOOL_EXIT_USAGE;
      }
      o->sets[o->nsets++] = v;
    } else if (opt->kind == ARG_LIST) {
      if (o->nprompts == TOOL_MAX_SETS) {
        fprintf(stderr, "strop %s: at most %d %s options (use --prompts FILE)\n", o->cmd,
                TOOL_MAX_SETS, opt->name);
        return TOOL_EXIT_USAGE;
      }
      o->prompts[o->nprompts++] = v;
    } else if (opt->kind == ARG_REAL || opt->kind == ARG_PROB) {
      char *end;
      double x = strtod(v, &end);
      if (*end || end == v || !(x >= 0.0 && x <= 1e6)) {
        fprintf(stderr, "strop %s: %s takes a number >= 0, got '%s'\n", o->cmd, opt->name, v);
        return TOOL_EXIT_USAGE;
      }
      if (opt->kind == ARG_PROB && !(x > 0.0 && x <= 1.0)) { /* before any output */
        fprintf(stderr, "strop %s: %s takes a probability in (0, 1], got '%s'\n", o->cmd,
                opt->name, v);
        return TOOL_EXIT_USAGE;
      }
      *(double *)field = x;
    } else {
      const long long lo = opt->kind == ARG_COUNT1;
      char *end;
      long long n = strtoll(v, &end, 10);
      if (*end || end == v || n < lo || n > 2147483647) {
        fprintf(stderr, "strop %s: %s takes a whole number from %lld to 2147483647, got '%s'\n",
                o->cmd, opt->name, lo, v);
        return TOOL_EXIT_USAGE;
      }
      *(int64_t *)field = n;
    }
  }
  if (o->top < 1) o->top = 1;
  return 0;
}
