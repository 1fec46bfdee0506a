/* SPDX-License-Identifier: MIT */
/* strop tests — shared helpers (see testutil.h). */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "ops/lowp.h"

int strop_test_run(Suite *s) {
  /* a suite's second run on vdpbf16ps (tests/CMakeLists.txt) only means something where the
   * first ran on the AMX tiles: elsewhere it is skipped (77), not run twice */
  const char *only = getenv("STROP_TEST_ONLY_WITH_AMX");
  if (only && *only && !strop__cpu_has_amx()) {
    printf("skipped: no AMX on this CPU (the suite's first run took vdpbf16ps already)\n");
    return 77;
  }
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

double strop_test_max_rel(const float *a, const float *b, size_t n, double floor,
                          size_t *where_out) {
  double worst = 0.0;
  size_t where = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    double m = fabs((double)b[i]);
    double r = d / (m > floor ? m : floor);
    if (!(r <= worst)) { /* also catches NaN */
      worst = isnan(r) ? INFINITY : r;
      where = i;
    }
  }
  if (where_out) *where_out = where;
  return worst;
}

char *strop_test_read_file(const char *path, size_t *len_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[n] = '\0';
    if (len_out) *len_out = (size_t)n;
  }
  return buf;
}

int strop_test_alloc_sweep(strop_test_op op, void (*cleanup)(void *ctx), void *ctx) {
  int failures = 0;
  for (int64_t n = 1; n < 100000; n++) {
    int64_t live = strop__alloc_live();
    strop_clear_error();
    strop__alloc_fail_at(n);
    int st = op(ctx);
    int hit = strop__alloc_failed();
    strop__alloc_fail_at(0);
    if (!hit) {
      ck_assert_msg(st == STROP_OK, "op failed without an injected failure: %s",
                    strop_last_error());
      if (cleanup) cleanup(ctx);
      ck_assert_msg(strop__alloc_live() == live, "leak after success: %lld live, was %lld",
                    (long long)strop__alloc_live(), (long long)live);
      return failures;
    }
    failures++;
    ck_assert_msg(st == STROP_E_NOMEM, "allocation %lld failed but status was %d (%s)",
                  (long long)n, st, strop_last_error());
    ck_assert_msg(strop_last_error()[0] != '\0', "no error sentence after failure %lld",
                  (long long)n);
    ck_assert_msg(strop__alloc_live() == live,
                  "leak after failing allocation %lld: %lld live, "
                  "was %lld",
                  (long long)n, (long long)strop__alloc_live(), (long long)live);
  }
  ck_abort_msg("allocation sweep did not end");
  return failures;
}

void strop_test_blobs(const char *dir) {
  char p[256];
  snprintf(p, sizeof p, "%s/blobs.csv", dir);
  FILE *f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  strop_rng *g = NULL;
  ck_assert_int_eq(strop_rng_create(5, &g), STROP_OK);
  for (int i = 0; i < 240; i++) {
    int c = i % 4;
    float x[6];
    ck_assert_int_eq(strop_rng_normal(g, 0, 0.6f, x, 6), STROP_OK);
    x[c] += 2.0f;
    for (int k = 0; k < 6; k++) fprintf(f, "%.5f,", x[k]);
    fprintf(f, "%d\n", c);
  }
  fclose(f);
  strop_rng_free(g);
  snprintf(p, sizeof p, "%s/net.yaml", dir);
  f = fopen(p, "w");
  ck_assert_ptr_nonnull(f);
  fputs("input: [6]\nlayers:\n"
        "  - {name: body.0, type: linear, out_features: 16}\n"
        "  - {name: body.1, type: relu}\n"
        "  - {name: head, type: linear, out_features: 4}\n",
        f);
  fclose(f);
}

void strop_test_must(int status, const char *what) {
  ck_assert_msg(status == STROP_OK, "%s: %s (%s)", what, strop_status_str(status),
                strop_last_error());
}

strop_model *strop_test_build(int rank, const int64_t *shape, const strop_test_node *nodes,
                              int n_nodes, uint64_t seed) {
  strop_model *m = NULL;
  strop_test_must(strop_model_create(rank, shape, &m), "strop_model_create");
  for (int i = 0; i < n_nodes; i++)
    strop_test_must(
        strop_model_add(m, nodes[i].name, nodes[i].type, nodes[i].opts, nodes[i].inputs),
        nodes[i].name);
  strop_test_must(strop_model_finalize(m, seed), "strop_model_finalize");
  return m;
}

void strop_test_wait_child(int pid) {
  int status = 0;
  ck_assert_int_eq(waitpid((pid_t)pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status), "the child did not finish (signal %d: hung?)",
                WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  ck_assert_msg(WEXITSTATUS(status) == 0, "the child exited %d", WEXITSTATUS(status));
}

int strop_test_limit_address_space(long extra_mb) {
  FILE *st = fopen("/proc/self/status", "r");
  char line[256];
  long vm = 0;
  while (st && fgets(line, sizeof line, st))
    if (!strncmp(line, "VmSize:", 7)) vm = atol(line + 7);
  if (st) fclose(st);
  const rlim_t lim = (rlim_t)vm * 1024 + ((rlim_t)extra_mb << 20);
  struct rlimit rl = {lim, lim};
  return vm && !setrlimit(RLIMIT_AS, &rl) ? 0 : -1;
}

/* the folders strop_test_tmpdir made, each with the process that made it */
typedef struct tmp_dir {
  pid_t pid;
  char path[256];
} tmp_dir;
static tmp_dir *g_tmp_dirs;
static int g_ntmp, g_tmp_hooked;

/* path with everything under it; symbolic links are removed, not followed */
static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      char sub[1024];
      for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) < (int)sizeof sub)
          remove_tree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* At exit: the folders this process made, with what they hold (a forked test's child inherits
 * its parent's list, and leaves the parent's folders alone). */
static void remove_tmp_dirs(void) {
  for (int i = 0; i < g_ntmp; i++)
    if (g_tmp_dirs[i].pid == getpid()) remove_tree(g_tmp_dirs[i].path);
}

const char *strop_test_tmpdir(const char *tag, char *buf, size_t size) {
  const char *root = getenv("TMPDIR");
  if (!root || !*root) root = "/tmp";
  const int n = snprintf(buf, size, "%s/strop_%s_XXXXXX", root, tag);
  ck_assert_msg(n > 0 && (size_t)n < size && (size_t)n < sizeof g_tmp_dirs->path,
                "strop_test_tmpdir: the path of %s is too long", tag);
  tmp_dir *more = realloc(g_tmp_dirs, (size_t)(g_ntmp + 1) * sizeof *more);
  ck_assert_ptr_nonnull(more);
  g_tmp_dirs = more;
  ck_assert_msg(mkdtemp(buf) != NULL, "strop_test_tmpdir: cannot make %s", buf);
  if (!g_tmp_hooked) {
    ck_assert_int_eq(atexit(remove_tmp_dirs), 0);
    g_tmp_hooked = 1;
  }
  g_tmp_dirs[g_ntmp].pid = getpid();
  snprintf(g_tmp_dirs[g_ntmp].path, sizeof g_tmp_dirs[g_ntmp].path, "%s", buf);
  g_ntmp++;
  return buf;
}
