/* strop tests — helpers shared by the Check suites: run a suite, compare arrays,
 * sweep allocation failures. */
#ifndef STROP_TESTUTIL_H
#define STROP_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* Runs the suite and returns the process exit code. */
int strop_test_run(Suite *s);

/* Largest |a-b| / max(|b|, floor) over n elements; where_out gets the index. */
double strop_test_max_rel(const float *a, const float *b, size_t n, double floor,
                          size_t *where_out);

/* Reads a whole file into a malloc'd buffer (NUL-terminated); NULL if it cannot. */
char *strop_test_read_file(const char *path, size_t *len_out);

/* Runs op(ctx) with the 1st, 2nd, ... allocation failing until it succeeds. Each failure must
 * return STROP_E_NOMEM, leave a non-empty error sentence and no live allocation beyond those
 * present before (cleanup(ctx) is called after each successful run to free its result).
 * Returns the number of failing runs seen; fails the test on any violation. */
typedef int (*strop_test_op)(void *ctx);
int strop_test_alloc_sweep(strop_test_op op, void (*cleanup)(void *ctx), void *ctx);

#endif
