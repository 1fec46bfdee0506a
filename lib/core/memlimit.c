/* SPDX-License-Identifier: MIT */
/* strop — how much more memory this process may take, from the machine's limits: the cgroup's
 * memory.max (v2) or memory.limit_in_bytes (v1) less what the cgroup uses, RLIMIT_AS and
 * RLIMIT_DATA less what the process maps, and the system's MemAvailable; the lowest wins. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/core.h"
#include "strop/runtime.h"

/* the first line of a small file, NUL-terminated (newline dropped); 0 when unreadable */
static int read_line(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int ok = fgets(buf, (int)cap, f) != NULL;
  fclose(f);
  if (ok) buf[strcspn(buf, "\n")] = 0;
  return ok;
}

/* a byte count in a cgroup file: 1 with *v; 0 when unreadable or "max" (no limit) */
static int read_bytes(const char *path, uint64_t *v) {
  char line[64], *end;
  if (!read_line(path, line, sizeof line) || !strcmp(line, "max")) return 0;
  unsigned long long x = strtoull(line, &end, 10);
  if (end == line) return 0;
  *v = x;
  return 1;
}

/* "Key:   1234 kB" in a /proc file, in bytes; 0 when absent */
static int read_kb(const char *path, const char *key, uint64_t *v) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[256];
  const size_t kl = strlen(key);
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    if (strncmp(line, key, kl) || line[kl] != ':') continue;
    unsigned long long kb;
    if (sscanf(line + kl + 1, "%llu", &kb) == 1) {
      *v = (uint64_t)kb * 1024;
      found = 1;
    }
  }
  fclose(f);
  return found;
}

typedef struct best {
  uint64_t room, limit;
  char what[64];
  int have;
} best;

static void consider(best *b, const char *what, uint64_t limit, uint64_t used) {
  const uint64_t room = used < limit ? limit - used : 0;
  if (b->have && room >= b->room) return;
  b->room = room;
  b->limit = limit;
  snprintf(b->what, sizeof b->what, "%s", what);
  b->have = 1;
}

/* cgroup v2: the process's group and each group above it (the lowest room among them); a
 * group path that is not under the mounted root (another cgroup namespace) reads the root */
static void cgroup_v2(best *b, const char *sys, const char *path) {
  char dir[1024], f[1100];
  snprintf(dir, sizeof dir, "%s%s", sys, path);
  size_t root = strlen(sys);
  for (;;) {
    uint64_t max, cur;
    snprintf(f, sizeof f, "%s/memory.max", dir);
    if (read_bytes(f, &max)) {
      snprintf(f, sizeof f, "%s/memory.current", dir);
      if (!read_bytes(f, &cur)) cur = 0;
      consider(b, "cgroup memory.max", max, cur);
    }
    char *slash = strrchr(dir, '/');
    if (!slash || (size_t)(slash - dir) < root) break;
    *slash = 0;
  }
}

/* cgroup v1: the memory controller's group (or its mounted root) */
static void cgroup_v1(best *b, const char *sys, const char *path) {
  char f[1100];
  for (int k = 0; k < 2; k++) {
    uint64_t lim, use;
    snprintf(f, sizeof f, "%s/memory%s/memory.limit_in_bytes", sys, k ? "" : path);
    if (!read_bytes(f, &lim)) continue;
    /* "no limit" is the largest page-aligned signed value */
    if (lim >= ((uint64_t)1 << 60)) return;
    snprintf(f, sizeof f, "%s/memory%s/memory.usage_in_bytes", sys, k ? "" : path);
    if (!read_bytes(f, &use)) use = 0;
    consider(b, "cgroup memory.limit_in_bytes", lim, use);
    return;
  }
}

static void cgroups(best *b, const char *proc, const char *sys) {
  char f[1100], line[1200];
  snprintf(f, sizeof f, "%s/self/cgroup", proc);
  FILE *cg = fopen(f, "r");
  if (!cg) return;
  while (fgets(line, sizeof line, cg)) {
    line[strcspn(line, "\n")] = 0;
    /* "0::/path" (v2), "4:memory:/path" or "4:cpu,memory:/path" (v1) */
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = 0;
    const char *ctl = c1 + 1, *path = c2 + 1;
    if (!strcmp(path, "/")) path = "";
    if (!*ctl) cgroup_v2(b, sys, path);
    else {
      char ctls[256];
      snprintf(ctls, sizeof ctls, ",%s,", ctl);
      if (strstr(ctls, ",memory,")) cgroup_v1(b, sys, path);
    }
  }
  fclose(cg);
}

/* the per-process limits and what the process has taken of each (a key of /proc/self/status) */
static const struct {
  int res;
  const char *name, *used;
} g_rlimits[] = {{RLIMIT_AS, "RLIMIT_AS", "VmSize"}, {RLIMIT_DATA, "RLIMIT_DATA", "VmData"}};

static void rlimits(best *b, const char *proc) {
  char f[1100];
  snprintf(f, sizeof f, "%s/self/status", proc);
  for (size_t i = 0; i < sizeof g_rlimits / sizeof g_rlimits[0]; i++) {
    struct rlimit rl;
    if (getrlimit(g_rlimits[i].res, &rl) || rl.rlim_cur == RLIM_INFINITY) continue;
    uint64_t used = 0;
    if (!read_kb(f, g_rlimits[i].used, &used)) used = 0;
    consider(b, g_rlimits[i].name, (uint64_t)rl.rlim_cur, used);
  }
}

int strop__rlimit_room(uint64_t *room) {
  best b;
  memset(&b, 0, sizeof b);
  for (size_t i = 0; i < sizeof g_rlimits / sizeof g_rlimits[0]; i++) {
    struct rlimit rl;
    if (getrlimit(g_rlimits[i].res, &rl) || rl.rlim_cur == RLIM_INFINITY) continue;
    uint64_t used = 0;
    if (!read_kb("/proc/self/status", g_rlimits[i].used, &used)) return 0;
    consider(&b, g_rlimits[i].name, (uint64_t)rl.rlim_cur, used);
  }
  *room = b.have ? b.room : UINT64_MAX;
  return 1;
}

strop_status strop__memory_available_at(const char *proc, const char *sys, size_t *bytes,
                                        char *source, size_t cap) {
  best b;
  memset(&b, 0, sizeof b);
  cgroups(&b, proc, sys);
  rlimits(&b, proc);
  char f[1100];
  snprintf(f, sizeof f, "%s/meminfo", proc);
  uint64_t avail;
  if (read_kb(f, "MemAvailable", &avail)) consider(&b, "MemAvailable", avail, 0);
  if (!b.have)
    return strop__err(STROP_E_UNSUPPORTED,
                      "strop_memory_available: no memory limit could be read (%s/self/cgroup, "
                      "RLIMIT_AS, RLIMIT_DATA, %s/meminfo)",
                      proc, proc);
  *bytes = b.room > SIZE_MAX ? SIZE_MAX : (size_t)b.room;
  if (cap) {
    const double v = (double)b.limit;
    if (v >= 1e9) snprintf(source, cap, "%s %.2f GB", b.what, v / 1e9);
    else snprintf(source, cap, "%s %.1f MB", b.what, v / 1e6);
  }
  return STROP_OK;
}

strop_status strop_memory_available(size_t *bytes, char *source, size_t cap) {
  if (!bytes || (!source && cap))
    return strop__err(STROP_E_INVALID_ARG, "strop_memory_available: %s is NULL",
                      bytes ? "source" : "bytes");
  return strop__memory_available_at("/proc", "/sys/fs/cgroup", bytes, source, cap);
}
