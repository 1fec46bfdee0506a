/* SPDX-License-Identifier: MIT */
/* strop — the IDX format (MNIST, Fashion-MNIST): header parsing from memory and the loader
 * of an images + labels pair. uint8 images stay uint8 and are widened when a batch is built. */
#include <string.h>

#include "data/data_impl.h"

static size_t type_size(int t) {
  switch (t) {
    case 0x08:
    case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C:
    case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

/* The header: type, rank, dims and element count; *hdr_out gets its length. The payload is
 * not looked at. */
static strop_status parse_header(const uint8_t *buf, size_t len, const char *name,
                                 strop__idx *out, size_t *hdr_out) {
  memset(out, 0, sizeof *out);
  if (len < 4)
    return strop__err(STROP_E_FORMAT, "%s: %zu bytes is too short for an IDX header", name, len);
  uint32_t magic = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 |
                   buf[3];
  size_t es = type_size(buf[2]);
  if (buf[0] != 0 || buf[1] != 0 || es == 0 || buf[3] == 0)
    return strop__err(STROP_E_FORMAT,
                      "%s: bad IDX magic 0x%08x, expected 0x0000TTDD (TT = 08 09 0b 0c 0d 0e, "
                      "DD = rank >= 1)",
                      name, (unsigned)magic);
  int rank = buf[3];
  if (rank > STROP_MAX_RANK)
    return strop__err(STROP_E_FORMAT, "%s: IDX rank %d exceeds %d", name, rank, STROP_MAX_RANK);
  size_t hdr = 4 + 4 * (size_t)rank;
  if (len < hdr)
    return strop__err(STROP_E_FORMAT, "%s: truncated IDX header: %zu bytes, need %zu for rank %d",
                      name, len, hdr, rank);
  size_t count = 1;
  for (int i = 0; i < rank; i++) {
    const uint8_t *p = buf + 4 + 4 * i;
    uint32_t d = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (d == 0 || d > 0x7fffffffu)
      return strop__err(STROP_E_FORMAT, "%s: IDX dimension %d is %u, must be in [1, 2^31)", name,
                        i, (unsigned)d);
    out->dims[i] = d;
    if (strop__mul_overflow(count, d, &count) || count > ((size_t)1 << 40))
      return strop__err(STROP_E_FORMAT, "%s: IDX element count overflows", name);
  }
  out->type = buf[2];
  out->rank = rank;
  out->count = count;
  out->elem_size = es;
  *hdr_out = hdr;
  return STROP_OK;
}

size_t strop__idx_declared_len(const uint8_t *prefix, size_t n) {
  if (n < 4 || n < 4 + 4 * (size_t)prefix[3]) return 0;
  strop__idx a;
  size_t hdr;
  if (parse_header(prefix, n, "", &a, &hdr) != STROP_OK) return SIZE_MAX;
  return hdr + a.count * a.elem_size;
}

strop_status strop__idx_parse(const uint8_t *buf, size_t len, const char *name, strop__idx *out) {
  size_t hdr;
  strop_status st = parse_header(buf, len, name, out, &hdr);
  if (st != STROP_OK) return st;
  size_t bytes = out->count * out->elem_size;
  if (len - hdr < bytes)
    return strop__err(STROP_E_FORMAT,
                      "%s: truncated IDX payload: %zu bytes after the header, dims need %zu",
                      name, len - hdr, bytes);
  if (len - hdr > bytes)
    return strop__err(STROP_E_FORMAT,
                      "%s: IDX payload has %zu bytes after the header, dims need only %zu", name,
                      len - hdr, bytes);
  out->data = buf + hdr;
  return STROP_OK;
}

double strop__idx_get(const strop__idx *a, size_t i) {
  const uint8_t *p = a->data + i * a->elem_size;
  switch (a->type) {
    case 0x08: return p[0];
    case 0x09: return (int8_t)p[0];
    case 0x0B: return (int16_t)(uint16_t)((unsigned)p[0] << 8 | p[1]);
    case 0x0C:
      return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    case 0x0D: {
      uint32_t u = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
      float f;
      memcpy(&f, &u, 4);
      return f;
    }
    case 0x0E: {
      uint64_t u = 0;
      for (int k = 0; k < 8; k++) u = u << 8 | p[k];
      double d;
      memcpy(&d, &u, 8);
      return d;
    }
    default: return 0.0;
  }
}

strop_status strop_dataset_load_idx(const char *images_path, const char *labels_path,
                                    int64_t num_classes, strop_dataset **out) {
  const char *fn = "strop_dataset_load_idx";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!images_path || !labels_path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      images_path ? "labels_path" : "images_path");
  if (num_classes < STROP_CLASSES_INFER || num_classes > STROP__MAX_CLASSES)
    return strop__err(STROP_E_INVALID_ARG, "%s: num_classes must be in [-1, 2^24], got %lld", fn,
                      (long long)num_classes);
  strop__file fi, fl;
  strop_status st = strop__file_read(fn, images_path, 1, strop__idx_declared_len, &fi);
  if (st) return st;
  st = strop__file_read(fn, labels_path, 0, strop__idx_declared_len, &fl);
  if (st) {
    strop__file_close(&fi);
    return st;
  }
  strop__idx im, lb;
  strop_dataset *ds = NULL;
  float *y = NULL;
  st = strop__idx_parse(fi.data, fi.len, images_path, &im);
  if (!st) st = strop__idx_parse(fl.data, fl.len, labels_path, &lb);
  if (st) {
    strop__err_prefix("%s", fn);
    goto fail;
  }
  if (lb.rank != 1 || lb.type == 0x0D || lb.type == 0x0E) {
    st = strop__err(STROP_E_FORMAT,
                    "%s: %s: labels must be a rank-1 integer IDX array, got rank "
                    "%d type 0x%02x",
                    fn, labels_path, lb.rank, (unsigned)lb.type);
    goto fail;
  }
  if (lb.dims[0] != im.dims[0]) {
    st = strop__err(STROP_E_FORMAT, "%s: %s has %lld images but %s has %lld labels", fn,
                    images_path, (long long)im.dims[0], labels_path, (long long)lb.dims[0]);
    goto fail;
  }
  int64_t n = im.dims[0];
  y = strop__malloc((size_t)n * sizeof *y);
  if (!y) {
    st = STROP__NOMEM(fn);
    goto fail;
  }
  /* labels are checked exact, before the float they become could round them */
  int64_t hi = num_classes > 0 ? num_classes : STROP__MAX_CLASSES;
  for (int64_t i = 0; i < n; i++) {
    double v = strop__idx_get(&lb, (size_t)i);
    if (num_classes != 0 && (v < 0 || v >= (double)hi)) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: label %lld is %.0f, outside [0, %lld)%s", fn,
                      labels_path, (long long)i, v, (long long)hi,
                      num_classes > 0 ? "" : " (class indices stop below 2^24)");
      goto fail;
    }
    y[i] = (float)v;
  }
  int64_t in_dims[STROP_MAX_RANK];
  int in_rank;
  if (im.rank == 3) {
    in_rank = 3;
    in_dims[0] = 1;
    in_dims[1] = im.dims[1];
    in_dims[2] = im.dims[2];
  } else if (im.rank == 1) {
    in_rank = 1;
    in_dims[0] = 1;
  } else {
    in_rank = im.rank - 1;
    memcpy(in_dims, im.dims + 1, (size_t)in_rank * sizeof *in_dims);
  }
  int64_t one = 1;
  st = strop__ds_new_root(fn, im.type == 0x08 ? STROP__DS_U8 : STROP__DS_F32, n, in_rank, in_dims,
                          num_classes == 0 ? 1 : 0, &one, num_classes, &ds);
  if (st) goto fail;
  if (num_classes == STROP_CLASSES_INFER) {
    int64_t mx = 0;
    for (int64_t i = 0; i < n; i++)
      if ((int64_t)y[i] > mx) mx = (int64_t)y[i];
    ds->num_classes = mx + 1;
  }
  ds->y_owned = y;
  ds->y = y;
  y = NULL;
  if (im.type == 0x08) {
    ds->xu8 = im.data;
    ds->map = fi.map;
    ds->map_len = fi.map_len;
    ds->buf_owned = fi.buf;
    fi.map = NULL;
    fi.buf = NULL;
  } else {
    float *x = strop__malloc(im.count * sizeof *x);
    if (!x) {
      st = STROP__NOMEM(fn);
      goto fail;
    }
    ds->x_owned = x;
    ds->x = x;
    for (size_t i = 0; i < im.count; i++) x[i] = (float)strop__idx_get(&im, i);
    /* NaN and infinity are refused as the NPY and CSV readers refuse them */
    if ((st = strop__check_finite(fn, images_path, x, im.count))) goto fail;
  }
  strop__file_close(&fi);
  strop__file_close(&fl);
  *out = ds;
  return STROP_OK;
fail:
  strop_dataset_free(ds);
  strop__free(y);
  strop__file_close(&fi);
  strop__file_close(&fl);
  return st;
}
