/* SPDX-License-Identifier: MIT */
/* strop tool — `strop layers`: the layer types the library accepts in a spec, with every
 * option (kind, default, allowed values) and parameter, read through the public API, so the
 * listing and the docs' table (--markdown) say exactly what the library does. */
#include <stdio.h>
#include <string.h>

#include "tool.h"

/* Option j's kind and allowed values of `type`. */
static void option_facts(const char *type, int j, char *kind, size_t kcap, char *allowed,
                         size_t acap) {
  if (strop_layer_option_kind(type, j, kind, kcap) < 0) kind[0] = '\0';
  if (strop_layer_option_allowed(type, j, allowed, acap) < 0) allowed[0] = '\0';
}

static void markdown(FILE *f, const char *type) {
  char kind[64], allowed[256];
  const int comp = strop_layer_type_is_composite(type);
  fprintf(f, "#### `%s`%s\n\n%s.\n\n", type, comp > 0 ? " (composite)" : "",
          strop_layer_type_doc(type));
  const int no = strop_layer_option_count(type);
  if (no > 0) {
    fprintf(f, "| Option | Kind | Default | Allowed | Meaning |\n|---|---|---|---|---|\n");
    for (int j = 0; j < no; j++) {
      option_facts(type, j, kind, sizeof kind, allowed, sizeof allowed);
      const char *d = strop_layer_option_default(type, j);
      fprintf(f, "| `%s` | %s | %s%s%s | %s | %s |\n", strop_layer_option_name(type, j), kind,
              d ? "`" : "", d ? d : "required", d ? "`" : "", allowed,
              strop_layer_option_doc(type, j));
    }
    fputc('\n', f);
  } else {
    fprintf(f, "No options.\n\n");
  }
  const int np = strop_layer_param_count(type);
  if (np > 0) {
    fprintf(f, "Parameters and buffers (after the node's name):");
    for (int j = 0; j < np; j++)
      fprintf(f, "%s `%s` %s", j ? ";" : "", strop_layer_param_name(type, j),
              strop_layer_param_doc(type, j));
    fprintf(f, ".\n\n");
  }
}

static void text(FILE *f, const char *type) {
  char kind[64], allowed[256];
  fprintf(f, "%s%s: %s\n", type, strop_layer_type_is_composite(type) > 0 ? " (composite)" : "",
          strop_layer_type_doc(type));
  const int no = strop_layer_option_count(type);
  for (int j = 0; j < no; j++) {
    option_facts(type, j, kind, sizeof kind, allowed, sizeof allowed);
    const char *d = strop_layer_option_default(type, j);
    fprintf(f, "  %-20s %-9s %-14s %s\n", strop_layer_option_name(type, j), kind,
            d ? d : "(required)", allowed);
    fprintf(f, "  %-20s %s\n", "", strop_layer_option_doc(type, j));
  }
  const int np = strop_layer_param_count(type);
  for (int j = 0; j < np; j++)
    fprintf(f, "  param %-14s %s\n", strop_layer_param_name(type, j),
            strop_layer_param_doc(type, j));
}

int tool_cmd_layers(const char *const *args, int nargs, int as_markdown) {
  if (nargs > 1) {
    fprintf(stderr, "strop layers: expected at most one layer type (see strop layers --help)\n");
    return 2;
  }
  if (nargs == 1 && !strop_layer_type_doc(args[0])) {
    fprintf(stderr, "strop layers: unknown layer type '%s'; known:", args[0]);
    for (int i = 0; i < strop_layer_type_count(); i++)
      fprintf(stderr, "%s %s", i ? "," : "", strop_layer_type_name(i));
    fputc('\n', stderr);
    return 3;
  }
  for (int i = 0; i < strop_layer_type_count(); i++) {
    const char *t = strop_layer_type_name(i);
    if (nargs == 1 && strcmp(t, args[0]) != 0) continue;
    if (as_markdown) markdown(stdout, t);
    else if (nargs == 1) text(stdout, t);
    else printf("%-22s %s\n", t, strop_layer_type_doc(t));
  }
  return 0;
}
