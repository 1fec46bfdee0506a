/* SPDX-License-Identifier: MIT */
/* strop — opening the files the library reads: regular files only, opened without waiting, so
 * a FIFO, a device or a folder given as a data or model path is refused instead of blocking. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

strop_status strop__open_input(const char *fn, const char *path, int *fd_out, size_t *size_out) {
  *fd_out = -1;
  if (size_out) *size_out = 0;
  /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return strop__err(STROP_E_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return strop__err(STROP_E_IO, "%s: cannot stat %s: %s", fn, path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return strop__err(STROP_E_IO, "%s: %s is %s; give a regular file", fn, path,
                      kind_of(sb.st_mode));
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    int e = errno;
    close(fd);
    return strop__err(STROP_E_IO, "%s: %s: %s", fn, path, strerror(e));
  }
  *fd_out = fd;
  if (size_out) *size_out = (size_t)sb.st_size;
  return STROP_OK;
}

strop_status strop__read_file(const char *fn, const char *path, size_t max, char **out,
                              size_t *len_out) {
  *out = NULL;
  if (len_out) *len_out = 0;
  int fd;
  size_t n;
  strop_status st = strop__open_input(fn, path, &fd, &n);
  if (st != STROP_OK) return st;
  if (n > max) {
    close(fd);
    return strop__err(STROP_E_FORMAT, "%s: '%s' is %zu bytes, more than the limit of %zu", fn,
                      path, n, max);
  }
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
