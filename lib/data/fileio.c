/* strop — whole-file input for the dataset parsers: plain files are mmap'd (or read), gzip
 * files inflated in one pass into a buffer sized from the gzip trailer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data_impl.h"

static const uint8_t g_empty[1];

void strop__file_close(strop__file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_len);
  strop__free(f->buf);
  memset(f, 0, sizeof *f);
}

/* Inflates a gzip file (possibly several members) into a malloc'd buffer. */
static strop_status read_gzip(const char *fn, const char *path, int fd, size_t csize,
                              strop__file *f) {
  /* ISIZE (last 4 bytes) is the uncompressed size mod 2^32: a good first guess. */
  uint8_t tail[4];
  size_t guess = csize * 4 + 1024;
  if (csize >= 18 && pread(fd, tail, 4, (off_t)(csize - 4)) == 4) {
    size_t isz = (size_t)tail[0] | (size_t)tail[1] << 8 | (size_t)tail[2] << 16 |
                 (size_t)tail[3] << 24;
    if (isz >= csize / 2) guess = isz + 1;
  }
  int fd2 = dup(fd);
  if (fd2 < 0) return strop__err(STROP_E_IO, "%s: %s: %s", fn, path, strerror(errno));
  gzFile gz = gzdopen(fd2, "rb");
  if (!gz) {
    close(fd2);
    return strop__err(STROP_E_IO, "%s: %s: cannot open gzip stream", fn, path);
  }
  gzbuffer(gz, 1u << 17);
  uint8_t *buf = strop__malloc(guess);
  if (!buf) {
    gzclose(gz);
    return STROP__NOMEM(fn);
  }
  size_t cap = guess, len = 0;
  for (;;) {
    if (len == cap) {
      size_t ncap = cap * 2;
      uint8_t *nb = ncap > cap ? strop__realloc(buf, ncap) : NULL;
      if (!nb) {
        strop__free(buf);
        gzclose(gz);
        return STROP__NOMEM(fn);
      }
      buf = nb;
      cap = ncap;
    }
    size_t want = cap - len;
    if (want > (1u << 30)) want = 1u << 30;
    int got = gzread(gz, buf + len, (unsigned)want);
    if (got < 0) {
      int zerr = 0;
      const char *msg = gzerror(gz, &zerr);
      strop_status st = strop__err(STROP_E_IO, "%s: %s: corrupt gzip data after %zu bytes: %s",
                                   fn, path, len, msg ? msg : "?");
      strop__free(buf);
      gzclose(gz);
      return st;
    }
    if (got == 0) break;
    len += (size_t)got;
  }
  int zerr = 0;
  const char *emsg = gzerror(gz, &zerr);
  if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
    strop_status st = strop__err(STROP_E_IO, "%s: %s: gzip error: %s", fn, path,
                                 emsg ? emsg : "?");
    strop__free(buf);
    gzclose(gz);
    return st;
  }
  if (zerr == Z_BUF_ERROR) {
    strop__free(buf);
    gzclose(gz);
    return strop__err(STROP_E_IO, "%s: %s: truncated gzip stream after %zu bytes", fn, path,
                      len);
  }
  gzclose(gz);
  f->buf = buf;
  f->data = buf;
  f->len = len;
  return STROP_OK;
}

strop_status strop__file_read(const char *fn, const char *path, int allow_map, strop__file *f) {
  memset(f, 0, sizeof *f);
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strop__err(STROP_E_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return strop__err(STROP_E_IO, "%s: %s is not a regular file", fn, path);
  }
  size_t size = (size_t)sb.st_size;
  uint8_t magic[2] = {0, 0};
  strop_status st = STROP_OK;
  if (size >= 2 && pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    st = read_gzip(fn, path, fd, size, f);
    close(fd);
    return st;
  }
  if (size == 0) {
    close(fd);
    f->data = g_empty;
    return STROP_OK;
  }
  if (allow_map) {
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
      close(fd);
      f->map = m;
      f->map_len = size;
      f->data = m;
      f->len = size;
      return STROP_OK;
    }
  }
  uint8_t *buf = strop__malloc(size);
  if (!buf) {
    close(fd);
    return STROP__NOMEM(fn);
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      st = strop__err(STROP_E_IO, "%s: %s: read failed after %zu of %zu bytes", fn, path, got,
                      size);
      strop__free(buf);
      close(fd);
      return st;
    }
    got += (size_t)r;
  }
  close(fd);
  f->buf = buf;
  f->data = buf;
  f->len = size;
  return STROP_OK;
}
