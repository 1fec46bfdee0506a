/* SPDX-License-Identifier: MIT */
/* strop — whole-file input for the dataset parsers: plain files are mmap'd (or read), gzip
 * files inflated into a buffer that grows only as data arrives and stops at the size the
 * format's header declares (or at a bound relative to the compressed size). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
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

size_t strop__gzip_limit(size_t compressed) {
  size_t r;
  if (strop__mul_overflow(compressed, STROP__GZ_MAX_RATIO, &r)) return SIZE_MAX;
  return r > STROP__GZ_MIN_LIMIT ? r : STROP__GZ_MIN_LIMIT;
}

/* The whole of fd (size bytes) in memory: mapped, else read. */
static strop_status map_or_read(const char *fn, const char *path, int fd, size_t size,
                                int allow_map, strop__file *f) {
  if (size == 0) {
    f->data = g_empty;
    return STROP_OK;
  }
  if (allow_map) {
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
      f->map = m;
      f->map_len = size;
      f->data = m;
      f->len = size;
      return STROP_OK;
    }
  }
  uint8_t *buf = strop__malloc(size);
  if (!buf) return STROP__NOMEM(fn);
  size_t got = 0;
  while (got < size) {
    ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      strop__free(buf);
      return strop__err(STROP_E_IO, "%s: %s: read failed after %zu of %zu bytes", fn, path, got,
                        size);
    }
    got += (size_t)r;
  }
  f->buf = buf;
  f->data = buf;
  f->len = size;
  return STROP_OK;
}

/* The message for a stream that goes on past stop bytes of output. */
static strop_status too_long(const char *fn, const char *path, size_t want, size_t limit,
                             size_t compressed) {
  if (want && want <= limit)
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: the gzip data inflates to more than the %zu bytes "
                      "its header declares",
                      fn, path, want);
  return strop__err(STROP_E_FORMAT,
                    "%s: %s: the gzip data inflates to more than %zu bytes, the "
                    "limit for a compressed file of %zu bytes (the larger of %d MiB and %d times "
                    "its size)",
                    fn, path, limit, compressed, (int)(STROP__GZ_MIN_LIMIT >> 20),
                    STROP__GZ_MAX_RATIO);
}

/* Inflates the gzip file gz (one member or several) into f. The buffer starts small and
 * doubles as output arrives (the trailer's size field is not trusted), and inflation stops at
 * the length declared() reads from the first bytes, or at strop__gzip_limit(). */
static strop_status inflate_all(const char *fn, const char *path, const strop__file *gz,
                                strop__declared_len_fn declared, strop__file *f) {
  size_t limit = strop__gzip_limit(gz->len), want = 0; /* want: declared length, 0 = unknown */
  size_t cap = gz->len < ((size_t)1 << 14) ? ((size_t)1 << 16) : gz->len * 4;
  if (cap > limit) cap = limit;
  uint8_t *buf = strop__malloc(cap);
  if (!buf) return STROP__NOMEM(fn);
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
    strop__free(buf);
    return STROP__NOMEM(fn);
  }
  size_t len = 0, in = 0;
  int ended = 0; /* the current member's end was seen */
  uint8_t extra;
  strop_status st = STROP_OK;
  for (;;) {
    if (ended) {
      /* another member follows only if its magic does; anything else is ignored (as gzip) */
      if (gz->len - in < 2 || gz->data[in] != 0x1f || gz->data[in + 1] != 0x8b) break;
      inflateReset(&z);
      ended = 0;
    }
    size_t stop = want && want < limit ? want : limit; /* output never goes past this */
    if (len == cap && cap < stop) {
      size_t ncap = cap > stop / 2 ? stop : cap * 2;
      uint8_t *nb = strop__realloc(buf, ncap);
      if (!nb) {
        st = STROP__NOMEM(fn);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    /* at the stop, one more byte of output would be too many: look for it in a scratch byte */
    int at_stop = len == stop;
    size_t room = at_stop ? 1 : (cap < stop ? cap : stop) - len;
    z.next_in = (Bytef *)(uintptr_t)(gz->data + in);
    z.avail_in = (uInt)(gz->len - in < (1u << 30) ? gz->len - in : (1u << 30));
    z.next_out = at_stop ? &extra : buf + len;
    z.avail_out = (uInt)(room < (1u << 30) ? room : (1u << 30));
    uInt out_before = z.avail_out, in_before = z.avail_in;
    int rc = inflate(&z, Z_NO_FLUSH);
    size_t produced = out_before - z.avail_out;
    in += in_before - z.avail_in;
    if (at_stop && produced) {
      st = too_long(fn, path, want, limit, gz->len);
      break;
    }
    if (!at_stop) len += produced;
    if (!want && declared) {
      size_t d = declared(buf, len);
      if (d == SIZE_MAX) declared = NULL; /* the format cannot tell: only the limit holds */
      else want = d;
      if (want && len > want) {
        st = too_long(fn, path, want, limit, gz->len);
        break;
      }
    }
    if (rc == Z_STREAM_END) {
      ended = 1;
    } else if (rc == Z_MEM_ERROR) {
      st = STROP__NOMEM(fn);
      break;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: corrupt gzip data after %zu bytes: %s", fn, path,
                      len, z.msg ? z.msg : "inflate failed");
      break;
    } else if (!produced && in_before == z.avail_in) {
      /* no progress with room to write: the input has run out before the stream's end */
      st = strop__err(STROP_E_FORMAT, "%s: %s: truncated gzip stream after %zu bytes", fn, path,
                      len);
      break;
    }
  }
  inflateEnd(&z);
  if (st) {
    strop__free(buf);
    return st;
  }
  f->buf = buf;
  f->data = len ? buf : g_empty;
  f->len = len;
  return STROP_OK;
}

strop_status strop__file_read(const char *fn, const char *path, int allow_map,
                              strop__declared_len_fn declared, strop__file *f) {
  memset(f, 0, sizeof *f);
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  int fd;
  size_t size;
  strop_status st = strop__open_input(fn, path, &fd, &size);
  if (st) return st;
  uint8_t magic[2] = {0, 0};
  int gzip = size >= 2 && pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  strop__file raw;
  memset(&raw, 0, sizeof raw);
  st = map_or_read(fn, path, fd, size, allow_map || gzip, gzip ? &raw : f);
  close(fd);
  if (st || !gzip) return st;
  st = inflate_all(fn, path, &raw, declared, f);
  strop__file_close(&raw);
  return st;
}
