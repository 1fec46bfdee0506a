/* SPDX-License-Identifier: MIT */
/* strop docs test — loads one YAML block of the documentation with the library's own loader:
 * `doc_yaml spec FILE` (a model spec, built into a model) or `doc_yaml recipe FILE` (a recipe,
 * every key checked). Exit 0 when it loads; otherwise prints strop_last_error() and exits 1. */
#include <stdio.h>
#include <string.h>

#include <strop/strop.h>

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "spec") && strcmp(argv[1], "recipe"))) {
    fprintf(stderr, "usage: doc_yaml spec|recipe FILE\n");
    return 2;
  }
  strop_status s;
  if (!strcmp(argv[1], "spec")) {
    strop_model *m = NULL;
    s = strop_model_load_spec(argv[2], &m);
    strop_model_free(m);
  } else {
    strop_recipe *r = NULL;
    s = strop_recipe_load(argv[2], &r);
    strop_recipe_free(r);
  }
  if (s != STROP_OK) {
    fprintf(stderr, "%s (%s)\n", strop_last_error(), strop_status_str(s));
    return 1;
  }
  return 0;
}
