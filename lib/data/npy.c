/* SPDX-License-Identifier: MIT */
/* strop — NumPy .npy arrays from memory (header dict, dtype, shape, order) and the loader of an
 * x.npy + y.npy pair. Fortran-order arrays are transposed to C order on conversion. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/data_impl.h"

/* Finds 'key' in the header dict and returns the text after its colon, or NULL. */
static const char *dict_value(const char *h, size_t n, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i + kl + 2 <= n; i++) {
    if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 &&
        h[i + 1 + kl] == h[i]) {
      size_t j = i + kl + 2;
      while (j < n && (h[j] == ' ')) j++;
      if (j < n && h[j] == ':') {
        j++;
        while (j < n && h[j] == ' ') j++;
        return j < n ? h + j : NULL;
      }
    }
  }
  return NULL;
}

/* The header: dtype, order, shape and element count; *data_off gets where the data starts.
 * The data is not looked at. */
static strop_status parse_header(const uint8_t *buf, size_t len, const char *name,
                                 strop__npy *out, size_t *data_off) {
  memset(out, 0, sizeof *out);
  static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (len < 10 || memcmp(buf, magic, 6) != 0)
    return strop__err(STROP_E_FORMAT, "%s: not an NPY file (bad magic; expected \\x93NUMPY)",
                      name);
  int major = buf[6];
  size_t hl, off;
  if (major == 1) {
    hl = (size_t)buf[8] | (size_t)buf[9] << 8;
    off = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return strop__err(STROP_E_FORMAT, "%s: truncated NPY header", name);
    hl = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    off = 12;
  } else {
    return strop__err(STROP_E_UNSUPPORTED, "%s: NPY format version %d.%d is not supported", name,
                      major, buf[7]);
  }
  if (hl > len - off)
    return strop__err(STROP_E_FORMAT,
                      "%s: bad NPY header: length %zu exceeds the file (%zu bytes)", name, hl,
                      len);
  const char *h = (const char *)buf + off;
  size_t hn = hl;
  /* descr */
  const char *d = dict_value(h, hn, "descr");
  if (!d || (*d != '\'' && *d != '"'))
    return strop__err(STROP_E_FORMAT, "%s: bad NPY header: no 'descr' string", name);
  const char *de = memchr(d + 1, *d, hn - (size_t)(d + 1 - h));
  if (!de || de - d - 1 > 16)
    return strop__err(STROP_E_FORMAT, "%s: bad NPY header: unterminated 'descr'", name);
  char descr[20];
  memcpy(descr, d + 1, (size_t)(de - d - 1));
  descr[de - d - 1] = '\0';
  static const struct {
    const char *s;
    int t;
    size_t sz;
  } types[] = {{"<f4", STROP__NPY_F4, 4}, {"<f8", STROP__NPY_F8, 8}, {"|u1", STROP__NPY_U1, 1},
               {"<u1", STROP__NPY_U1, 1}, {">u1", STROP__NPY_U1, 1}, {"<i4", STROP__NPY_I4, 4},
               {"<i8", STROP__NPY_I8, 8}};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcmp(descr, types[i].s) == 0) {
      out->dtype = types[i].t;
      out->elem_size = types[i].sz;
    }
  if (!out->dtype)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: NPY dtype '%s' is not supported (use <f4 <f8 |u1 <i4 <i8)", name,
                      descr);
  /* fortran_order */
  const char *fo = dict_value(h, hn, "fortran_order");
  size_t rest = fo ? hn - (size_t)(fo - h) : 0;
  if (fo && rest >= 4 && memcmp(fo, "True", 4) == 0) {
    out->fortran = 1;
  } else if (!fo || rest < 5 || memcmp(fo, "False", 5) != 0) {
    return strop__err(STROP_E_FORMAT, "%s: bad NPY header: 'fortran_order' must be True or False",
                      name);
  }
  /* shape */
  const char *sp = dict_value(h, hn, "shape");
  if (!sp || *sp != '(')
    return strop__err(STROP_E_FORMAT, "%s: bad NPY header: no 'shape' tuple", name);
  const char *p = sp + 1, *he = h + hn;
  size_t count = 1;
  int rank = 0;
  for (;;) {
    while (p < he && (*p == ' ' || *p == ',')) p++;
    if (p >= he)
      return strop__err(STROP_E_FORMAT, "%s: bad NPY header: unterminated 'shape'", name);
    if (*p == ')') break;
    if (*p == '-')
      return strop__err(STROP_E_FORMAT, "%s: bad NPY header: 'shape' entry %d is negative", name,
                        rank);
    if (*p < '0' || *p > '9')
      return strop__err(STROP_E_FORMAT, "%s: bad NPY header: 'shape' entry %d is not a number",
                        name, rank);
    uint64_t v = 0;
    const char *digits = p;
    while (p < he && *p >= '0' && *p <= '9') {
      v = v * 10 + (uint64_t)(*p - '0');
      if (v > ((uint64_t)1 << 40)) {
        while (p < he && *p >= '0' && *p <= '9') p++;
        return strop__err(STROP_E_FORMAT,
                          "%s: NPY shape entry %d is %.*s, above the limit of "
                          "2^40",
                          name, rank, (int)(p - digits < 40 ? p - digits : 40), digits);
      }
      p++;
    }
    if (p < he && *p == 'L') p++;
    if (rank == STROP_MAX_RANK)
      return strop__err(STROP_E_UNSUPPORTED, "%s: NPY rank exceeds %d", name, STROP_MAX_RANK);
    out->dims[rank++] = (int64_t)v;
    if (strop__mul_overflow(count, (size_t)v, &count) || count > ((size_t)1 << 40))
      return strop__err(STROP_E_FORMAT, "%s: NPY element count overflows", name);
  }
  out->rank = rank;
  out->count = count;
  *data_off = off + hl;
  return STROP_OK;
}

size_t strop__npy_declared_len(const uint8_t *prefix, size_t n) {
  if (n < 12) return 0;
  size_t off = prefix[6] == 1 ? 10 : 12;
  size_t hl = (size_t)prefix[8] | (size_t)prefix[9] << 8;
  if (off == 12) hl |= (size_t)prefix[10] << 16 | (size_t)prefix[11] << 24;
  if (n < off + hl) return 0;
  strop__npy a;
  size_t data_off;
  if (parse_header(prefix, n, "", &a, &data_off) != STROP_OK) return SIZE_MAX;
  return data_off + a.count * a.elem_size;
}

strop_status strop__npy_parse(const uint8_t *buf, size_t len, const char *name, strop__npy *out) {
  size_t data_off;
  strop_status st = parse_header(buf, len, name, out, &data_off);
  if (st != STROP_OK) return st;
  size_t bytes = out->count * out->elem_size;
  if (len - data_off < bytes)
    return strop__err(STROP_E_FORMAT, "%s: truncated NPY data: %zu bytes, shape needs %zu", name,
                      len - data_off, bytes);
  if (len - data_off > bytes)
    return strop__err(STROP_E_FORMAT, "%s: NPY file has %zu bytes of data, shape needs only %zu",
                      name, len - data_off, bytes);
  out->data = buf + data_off;
  return STROP_OK;
}

static float elem(const strop__npy *a, size_t i) {
  const uint8_t *p = a->data + i * a->elem_size;
  switch (a->dtype) {
    case STROP__NPY_F4: {
      uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24;
      float f;
      memcpy(&f, &u, 4);
      return f;
    }
    case STROP__NPY_F8: {
      uint64_t u = 0;
      for (int k = 7; k >= 0; k--) u = u << 8 | p[k];
      double d;
      memcpy(&d, &u, 8);
      return (float)d;
    }
    case STROP__NPY_U1: return (float)p[0];
    case STROP__NPY_I4:
      return (float)(int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                              (uint32_t)p[3] << 24);
    case STROP__NPY_I8: {
      uint64_t u = 0;
      for (int k = 7; k >= 0; k--) u = u << 8 | p[k];
      return (float)(int64_t)u;
    }
    default: return 0.0f;
  }
}

void strop__npy_to_float(const strop__npy *a, float *dst) {
  if (!a->fortran || a->rank < 2) {
    for (size_t i = 0; i < a->count; i++) dst[i] = elem(a, i);
    return;
  }
  /* walk C order, keeping the Fortran offset: stride of axis k is prod(dims[0..k)) */
  size_t fstride[STROP_MAX_RANK], idx[STROP_MAX_RANK] = {0}, off = 0;
  size_t s = 1;
  for (int k = 0; k < a->rank; k++) {
    fstride[k] = s;
    s *= (size_t)a->dims[k];
  }
  for (size_t i = 0; i < a->count; i++) {
    dst[i] = elem(a, off);
    for (int k = a->rank - 1; k >= 0; k--) {
      idx[k]++;
      off += fstride[k];
      if (idx[k] < (size_t)a->dims[k]) break;
      off -= fstride[k] * idx[k];
      idx[k] = 0;
    }
  }
}

strop_status strop_dataset_load_npy(const char *x_path, const char *y_path, int64_t num_classes,
                                    strop_dataset **out) {
  const char *fn = "strop_dataset_load_npy";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!x_path || !y_path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, x_path ? "y_path" : "x_path");
  if (num_classes < STROP_CLASSES_INFER)
    return strop__err(STROP_E_INVALID_ARG, "%s: num_classes must be >= -1, got %lld", fn,
                      (long long)num_classes);
  strop__file fx, fy;
  strop_status st = strop__file_read(fn, x_path, 1, strop__npy_declared_len, &fx);
  if (st) return st;
  st = strop__file_read(fn, y_path, 1, strop__npy_declared_len, &fy);
  if (st) {
    strop__file_close(&fx);
    return st;
  }
  strop__npy ax, ay;
  float *x = NULL, *y = NULL;
  strop_dataset *ds = NULL;
  st = strop__npy_parse(fx.data, fx.len, x_path, &ax);
  if (!st) st = strop__npy_parse(fy.data, fy.len, y_path, &ay);
  if (st) {
    strop__err_prefix("%s", fn);
    goto done;
  }
  if (ax.rank < 1 || ay.rank < 1 || ax.dims[0] < 1) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: arrays need a first (sample) dimension >= 1", fn,
                    ax.rank < 1 || ax.dims[0] < 1 ? x_path : y_path);
    goto done;
  }
  if (ay.dims[0] != ax.dims[0]) {
    st = strop__err(STROP_E_FORMAT, "%s: %s has %lld samples but %s has %lld", fn, x_path,
                    (long long)ax.dims[0], y_path, (long long)ay.dims[0]);
    goto done;
  }
  int64_t n = ax.dims[0];
  int64_t in_dims[STROP_MAX_RANK], tg_dims[STROP_MAX_RANK];
  int in_rank = ax.rank > 1 ? ax.rank - 1 : 1, tg_rank = ay.rank > 1 ? ay.rank - 1 : 1;
  in_dims[0] = tg_dims[0] = 1;
  for (int k = 1; k < ax.rank; k++) in_dims[k - 1] = ax.dims[k];
  for (int k = 1; k < ay.rank; k++) tg_dims[k - 1] = ay.dims[k];
  if (num_classes != 0) {
    if (ay.count != (size_t)n) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: class labels must be shape (%lld) or (%lld, 1)",
                      fn, y_path, (long long)n, (long long)n);
      goto done;
    }
    tg_rank = 0;
  }
  for (int k = 0; k < in_rank; k++)
    if (in_dims[k] < 1) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: zero-sized sample dimension", fn, x_path);
      goto done;
    }
  for (int k = 0; tg_rank && k < tg_rank; k++)
    if (tg_dims[k] < 1) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: zero-sized target dimension", fn, y_path);
      goto done;
    }
  x = strop__malloc(ax.count * sizeof *x);
  y = x ? strop__malloc(ay.count * sizeof *y) : NULL;
  if (!y) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  strop__npy_to_float(&ax, x);
  strop__npy_to_float(&ay, y);
  if ((st = strop__check_finite(fn, x_path, x, ax.count)) ||
      (num_classes == 0 && (st = strop__check_finite(fn, y_path, y, ay.count))))
    goto done;
  int64_t C = num_classes;
  if (C != 0) {
    st = strop__check_labels(fn, y_path, y, n, &C);
    if (st) {
      char msg[1024];
      snprintf(msg, sizeof msg, "%s", strop_last_error());
      st = strop__err(STROP_E_FORMAT, "%s", msg);
      goto done;
    }
  }
  st = strop__ds_new_root(fn, STROP__DS_F32, n, in_rank, in_dims, tg_rank, tg_dims, C, &ds);
  if (st) goto done;
  ds->x = ds->x_owned = x;
  ds->y = ds->y_owned = y;
  x = y = NULL;
  *out = ds;
done:
  strop__free(x);
  strop__free(y);
  strop__file_close(&fx);
  strop__file_close(&fy);
  return st;
}

strop_status strop_tensor_load_npy(const char *path, strop_tensor **out) {
  const char *fn = "strop_tensor_load_npy";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  strop__file f;
  strop_status st = strop__file_read(fn, path, 1, strop__npy_declared_len, &f);
  if (st) return st;
  strop__npy a;
  strop_tensor *t = NULL;
  st = strop__npy_parse(f.data, f.len, path, &a);
  if (st) {
    strop__err_prefix("%s", fn);
  } else if (a.rank < 1 || a.count == 0) {
    st = strop__err(STROP_E_FORMAT,
                    "%s: %s: a tensor needs rank >= 1 and no zero dimension; the "
                    "array has rank %d and %zu elements",
                    fn, path, a.rank, a.count);
  } else if (!(st = strop_tensor_create(a.rank, a.dims, &t))) {
    strop__npy_to_float(&a, strop_tensor_data(t));
    st = strop__check_finite(fn, path, strop_tensor_data(t), a.count);
  } else {
    strop__err_prefix("%s: %s", fn, path);
  }
  strop__file_close(&f);
  if (st) {
    strop_tensor_free(t);
    return st;
  }
  *out = t;
  return STROP_OK;
}
