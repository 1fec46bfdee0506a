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
