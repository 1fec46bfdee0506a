/* SPDX-License-Identifier: MIT */
/* strop — atomic file replacement: write a temporary file in the target's folder, fsync it,
 * rename it over the target and fsync the folder, so a crash leaves the old file or the new. */
#ifndef STROP_IO_ATOMIC_H
#define STROP_IO_ATOMIC_H

#include <stdint.h>

#include "core/core.h"

typedef struct strop__afile {
  int fd;         /* -1 when closed */
  char *path;     /* the target */
  char *tmp;      /* the temporary file beside it */
  const char *fn; /* caller's function name, for messages */
  uint64_t written;
} strop__afile;

/* Creates the temporary file. On error nothing is left behind. */
strop_status strop__afile_open(strop__afile *f, const char *fn, const char *path);
/* Writes all n bytes (retries short writes and EINTR). On error the caller must abort. */
strop_status strop__afile_write(strop__afile *f, const void *buf, size_t n);
/* fsync, close, rename over the target, fsync the folder. On error the temporary file is
 * removed and the target untouched. Always ends the afile (no abort needed after). */
strop_status strop__afile_commit(strop__afile *f);
/* Closes and removes the temporary file. Safe after a failed open or commit. */
void strop__afile_abort(strop__afile *f);

/* Writes a whole buffer to path atomically. */
strop_status strop__write_file_atomic(const char *fn, const char *path, const void *buf,
                                      size_t n);
/* Writes, fsyncs and removes a 4 KiB file in dir, so a folder that is read-only, full or
 * missing is reported (naming it) before work whose result would go there. STROP_E_IO. */
strop_status strop__dir_probe(const char *fn, const char *dir);
/* Creates the folder path and its missing parents (mkdir -p); an existing folder is fine.
 * STROP_E_IO naming fn and the folder that could not be made. */
strop_status strop__mkdirs(const char *fn, const char *path);
/* The folder of the file path into dir (cap bytes): "." for a bare name, "/" for a file at the
 * root; returns the file's last component, a pointer into path. */
const char *strop__path_dir(const char *path, char *dir, size_t cap);

/* Test hook: every atomic writer fails once it has written more than n bytes in total
 * (counting from this call); a negative n switches the hook off. */
void strop__afile_fail_after(int64_t n);

#endif
