/* strop tool — `strop tune RECIPE`: runs the recipe's tune: section and shows a live table of
 * trials. The search itself is the library's (strop_recipe_tune). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

int tool_cmd_tune(const char *const *args, int nargs, const char *const *sets, int nsets, int quiet,
                  int json, int64_t epochs_cap, volatile sig_atomic_t *interrupted) {
  (void)args; (void)nargs; (void)sets; (void)nsets; (void)quiet; (void)json; (void)epochs_cap;
  (void)interrupted;
  fprintf(stderr, "strop tune: not built yet\n");
  return 1;
}
