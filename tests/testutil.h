/* SPDX-License-Identifier: MIT */
/* strop tests — helpers shared by the Check suites: run a suite, compare arrays,
 * sweep allocation failures. */
#ifndef STROP_TESTUTIL_H
#define STROP_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "strop/strop.h"

/* Fails the running test with the status and the library's sentence unless status is OK. */
void strop_test_must(int status, const char *what);
/* Writes into the folder dir a small CSV (blobs.csv: 240 rows, 4 blobs in 6-D, label last) and
 * a spec of two linear layers for it (net.yaml): the data of the suites that run recipes. */
void strop_test_blobs(const char *dir);

/* A node for strop_test_build: name, type, options ("k=v ..."), inputs (NULL: previous). */
typedef struct strop_test_node {
  const char *name, *type, *opts, *inputs;
} strop_test_node;

/* Builds and finalizes a model of the given nodes (failing the test on any error). */
strop_model *strop_test_build(int rank, const int64_t *shape, const strop_test_node *nodes,
                              int n_nodes, uint64_t seed);

/* Runs the suite and returns the process exit code. */
int strop_test_run(Suite *s);
/* Makes a new empty folder $TMPDIR/strop_<tag>_XXXXXX (/tmp without TMPDIR), writes its path to
 * buf (size bytes) and returns buf. The process that made it removes it with everything in it
 * when it exits normally, so a run of the suites leaves nothing behind; a test's forked child
 * removes only the folders it made itself. Fails the test when the folder cannot be made. */
const char *strop_test_tmpdir(const char *tag, char *buf, size_t size);

/* Largest |a-b| / max(|b|, floor) over n elements; where_out gets the index. */
double strop_test_max_rel(const float *a, const float *b, size_t n, double floor,
                          size_t *where_out);

/* Reads a whole file into a malloc'd buffer (NUL-terminated); NULL if it cannot. */
char *strop_test_read_file(const char *path, size_t *len_out);

/* Limits this process's address space (RLIMIT_AS) to what it maps now plus extra_mb: 0 when
 * set, -1 when VmSize could not be read or the limit not set. For forked children only. */
int strop_test_limit_address_space(long extra_mb);

/* Waits for the forked child pid and fails the test unless it exited with status 0: a child
 * ended by a signal (an alarm that ended a hang) is named as such, with the signal. */
void strop_test_wait_child(int pid);

/* Runs op(ctx) with the 1st, 2nd, ... allocation failing until it succeeds. Each failure must
 * return STROP_E_NOMEM, leave a non-empty error sentence and no live allocation beyond those
 * present before (cleanup(ctx) is called after each successful run to free its result).
 * Returns the number of failing runs seen; fails the test on any violation. */
typedef int (*strop_test_op)(void *ctx);
int strop_test_alloc_sweep(strop_test_op op, void (*cleanup)(void *ctx), void *ctx);

#endif
