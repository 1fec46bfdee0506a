/* SPDX-License-Identifier: MIT */
/* strop — atomic file writes (temp file beside the target, fsync, rename, fsync folder) and
 * small whole-file reads. Every file the library writes goes through here. */
#include "io/atomic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static _Atomic int64_t g_fail_budget = -1; /* bytes left before an injected failure */
static _Atomic unsigned g_tmp_counter;

void strop__afile_fail_after(int64_t n) { atomic_store(&g_fail_budget, n < 0 ? -1 : n); }

static void afile_reset(strop__afile *f) {
  strop__free(f->path);
  strop__free(f->tmp);
  f->path = f->tmp = NULL;
  f->fd = -1;
}

/* The pid of a temporary "<base>.tmp.<pid>.<n>" of the target named base, or 0. */
static long temp_pid(const char *name, const char *base, size_t bl) {
  if (strncmp(name, base, bl) != 0 || strncmp(name + bl, ".tmp.", 5) != 0) return 0;
  const char *p = name + bl + 5;
  char *end;
  if (*p < '0' || *p > '9') return 0;
  long pid = strtol(p, &end, 10);
  if (*end != '.' || pid <= 0) return 0;
  p = end + 1;
  if (*p < '0' || *p > '9') return 0;
  (void)strtoul(p, &end, 10);
  return *end == '\0' ? pid : 0;
}

/* Removes the temporaries that writers killed mid-write (kill -9, power loss) left beside
 * path. A temporary is stale when its writer's process is gone and nobody holds the lock a
 * writer keeps on its temporary while it writes (so a writer whose pid this process cannot
 * see, in another pid namespace, is safe too). Best effort: errors are ignored. */
static void remove_stale_temps(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char dir[4096];
  if (!slash) {
    strcpy(dir, ".");
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) return;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  size_t bl = strlen(base);
  DIR *d = opendir(dir);
  if (!d) return;
  long self = (long)getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long pid = temp_pid(e->d_name, base, bl);
    if (pid == 0 || pid == self) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
    int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0)
      (void)unlinkat(dirfd(d), e->d_name, 0);
    close(fd);
  }
  closedir(d);
}

/* What path names, for a write that renames a new file over it: a symbolic link is followed
 * to the file it names (*real, the caller frees: the link stays, the file it names is
 * replaced), an existing file's permission bits go to *mode (-1: none yet); anything but a
 * regular file — a device, a pipe, a folder — is refused, since the rename would replace the
 * node itself (a save "to /dev/full" reported success and left a regular file there). */
static strop_status write_target(const char *fn, const char *path, char **real, int *mode) {
  struct stat sb;
  *real = NULL;
  *mode = -1;
  if (lstat(path, &sb) != 0) return STROP_OK; /* a new file (or a folder the open reports) */
  if (S_ISLNK(sb.st_mode)) {
    *real = realpath(path, NULL);
    if (!*real)
      return strop__err(STROP_E_IO,
                        "%s: '%s' is a symbolic link to a missing file (%s); save to the file "
                        "itself, or remove the link",
                        fn, path, strerror(errno));
    if (stat(*real, &sb) != 0) return STROP_OK;
  }
  if (!S_ISREG(sb.st_mode)) {
    const char *what = S_ISDIR(sb.st_mode)                          ? "a folder"
                       : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                       : S_ISFIFO(sb.st_mode)                       ? "a pipe"
                                                                    : "not a regular file";
    strop_status st = strop__err(STROP_E_IO,
                                 "%s: '%s' is %s; strop writes a file by renaming a new one "
                                 "over it, which would replace it: name a regular file",
                                 fn, *real ? *real : path, what);
    free(*real);
    *real = NULL;
    return st;
  }
  *mode = (int)(sb.st_mode & 07777);
  return STROP_OK;
}

strop_status strop__afile_open(strop__afile *f, const char *fn, const char *path) {
  f->fd = -1;
  f->path = f->tmp = NULL;
  f->fn = fn;
  f->written = 0;
  if (!path || !*path) return strop__err(STROP_E_INVALID_ARG, "%s: path is empty", fn);
  char *real;
  int mode;
  strop_status ts = write_target(fn, path, &real, &mode);
  if (ts) return ts;
  if (real) path = real;
  f->path = strop__strdup(path);
  size_t n = strlen(path) + 64;
  f->tmp = strop__malloc(n);
  if (!f->path || !f->tmp) {
    free(real);
    afile_reset(f);
    return STROP__NOMEM(fn);
  }
  remove_stale_temps(path);
  for (int attempt = 0; attempt < 100; attempt++) {
    snprintf(f->tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&g_tmp_counter, 1));
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (f->fd >= 0) {
      (void)flock(f->fd, LOCK_EX | LOCK_NB); /* held until close: "a writer is at work" */
      /* the replaced file's permissions carry over (a 0600 file stays 0600) */
      if (mode >= 0) (void)fchmod(f->fd, (mode_t)mode);
      free(real);
      return STROP_OK;
    }
    if (errno != EEXIST) break;
  }
  int e = errno;
  strop_status st = strop__err(STROP_E_IO, "%s: cannot create a temporary file beside '%s': %s",
                               fn, path, strerror(e));
  free(real);
  afile_reset(f);
  return st;
}

strop_status strop__afile_write(strop__afile *f, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    int64_t budget = atomic_load(&g_fail_budget);
    if (budget >= 0) {
      if ((uint64_t)budget == 0)
        return strop__err(STROP_E_IO, "%s: writing '%s': injected write failure after %llu bytes",
                          f->fn, f->path, (unsigned long long)f->written);
      if ((uint64_t)budget < chunk) chunk = (size_t)budget;
    }
    ssize_t w = write(f->fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return strop__err(STROP_E_IO, "%s: writing '%s': %s", f->fn, f->tmp, strerror(errno));
    }
    if (budget >= 0) atomic_fetch_sub(&g_fail_budget, (int64_t)w);
    p += w;
    n -= (size_t)w;
    f->written += (uint64_t)w;
  }
  return STROP_OK;
}

static void fsync_dir_of(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    strcpy(dir, ".");
  } else {
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1; /* "/file" */
    if (n >= sizeof dir) return;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return; /* best effort: the rename itself succeeded */
  (void)fsync(d);
  close(d);
}

strop_status strop__afile_commit(strop__afile *f) {
  strop_status st = STROP_OK;
  if (f->fd < 0) return strop__err(STROP_E_INTERNAL, "%s: commit of a closed file", f->fn);
  if (fsync(f->fd) != 0)
    st = strop__err(STROP_E_IO, "%s: fsync of '%s': %s", f->fn, f->tmp, strerror(errno));
  if (close(f->fd) != 0 && st == STROP_OK)
    st = strop__err(STROP_E_IO, "%s: closing '%s': %s", f->fn, f->tmp, strerror(errno));
  f->fd = -1;
  if (st == STROP_OK && rename(f->tmp, f->path) != 0)
    st = strop__err(STROP_E_IO, "%s: renaming '%s' to '%s': %s", f->fn, f->tmp, f->path,
                    strerror(errno));
  if (st != STROP_OK) {
    unlink(f->tmp);
  } else {
    fsync_dir_of(f->path);
  }
  afile_reset(f);
  return st;
}

void strop__afile_abort(strop__afile *f) {
  if (f->fd >= 0) close(f->fd);
  if (f->tmp) unlink(f->tmp);
  afile_reset(f);
}

strop_status strop__write_file_atomic(const char *fn, const char *path, const void *buf,
                                      size_t n) {
  strop__afile f;
  strop_status st = strop__afile_open(&f, fn, path);
  if (st != STROP_OK) return st;
  st = strop__afile_write(&f, buf, n);
  if (st != STROP_OK) {
    strop__afile_abort(&f);
    return st;
  }
  return strop__afile_commit(&f);
}

const char *strop__path_dir(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, cap, ".");
  else if (slash == path) snprintf(dir, cap, "/");
  else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
  return slash ? slash + 1 : path;
}

strop_status strop__mkdirs(const char *fn, const char *path) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
    return strop__err(STROP_E_IO, "%s: cannot create the folder %.200s...: the path is too long",
                      fn, path);
  size_t n = strlen(tmp);
  for (size_t i = 1; i <= n; i++) {
    if (tmp[i] != '/' && tmp[i] != '\0') continue;
    char c = tmp[i];
    tmp[i] = '\0';
    if (mkdir(tmp, 0775) != 0 && errno != EEXIST)
      return strop__err(STROP_E_IO, "%s: cannot create the folder %s: %s", fn, tmp,
                        strerror(errno));
    tmp[i] = c;
  }
  return STROP_OK;
}

strop_status strop__dir_probe(const char *fn, const char *dir) {
  const char *d = dir[0] ? dir : ".";
  char path[4200];
  snprintf(path, sizeof path, "%s/.strop-write-test.%ld.%u", d, (long)getpid(),
           atomic_fetch_add(&g_tmp_counter, 1));
  static const char block[4096];
  const char *step = "creating a file";
  int e = 0, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    e = errno;
  } else {
    size_t done = 0;
    while (done < sizeof block && !e) {
      ssize_t w = write(fd, block + done, sizeof block - done);
      if (w > 0) done += (size_t)w;
      else if (w == 0) e = ENOSPC;
      else if (errno != EINTR) e = errno;
    }
    if (e) {
      step = "writing";
    } else if (fsync(fd) != 0) {
      e = errno;
      step = "fsync";
    }
    close(fd);
    unlink(path);
  }
  if (e)
    return strop__err(STROP_E_IO, "%s: the folder '%s' cannot take files (%s failed: %s)", fn, d,
                      step, strerror(e));
  return STROP_OK;
}
