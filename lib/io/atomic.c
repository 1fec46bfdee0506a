/* strop — atomic file writes (temp file beside the target, fsync, rename, fsync folder) and
 * small whole-file reads. Every file the library writes goes through here. */
#include "io/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
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

strop_status strop__afile_open(strop__afile *f, const char *fn, const char *path) {
  f->fd = -1;
  f->path = f->tmp = NULL;
  f->fn = fn;
  f->written = 0;
  if (!path || !*path) return strop__err(STROP_E_INVALID_ARG, "%s: path is empty", fn);
  f->path = strop__strdup(path);
  size_t n = strlen(path) + 64;
  f->tmp = strop__malloc(n);
  if (!f->path || !f->tmp) {
    afile_reset(f);
    return STROP__NOMEM(fn);
  }
  for (int attempt = 0; attempt < 100; attempt++) {
    snprintf(f->tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&g_tmp_counter, 1));
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (f->fd >= 0) return STROP_OK;
    if (errno != EEXIST) break;
  }
  int e = errno;
  strop_status st = strop__err(STROP_E_IO, "%s: cannot create a temporary file beside '%s': %s",
                               fn, path, strerror(e));
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

strop_status strop__read_file(const char *fn, const char *path, size_t max, char **out,
                              size_t *len_out) {
  *out = NULL;
  if (len_out) *len_out = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strop__err(STROP_E_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return strop__err(STROP_E_IO, "%s: '%s' is not a regular file", fn, path);
  }
  if ((uint64_t)sb.st_size > max) {
    close(fd);
    return strop__err(STROP_E_FORMAT, "%s: '%s' is %lld bytes, more than the limit of %zu", fn,
                      path, (long long)sb.st_size, max);
  }
  size_t n = (size_t)sb.st_size;
  char *buf = strop__malloc(n + 1);
  if (!buf) {
    close(fd);
    return STROP__NOMEM(fn);
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = r < 0 ? errno : EIO;
      close(fd);
      strop__free(buf);
      return strop__err(STROP_E_IO, "%s: reading '%s': %s", fn, path, strerror(e));
    }
    got += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *out = buf;
  if (len_out) *len_out = n;
  return STROP_OK;
}
