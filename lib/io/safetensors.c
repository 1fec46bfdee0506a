/* SPDX-License-Identifier: MIT */
/* strop — safetensors: a reader that validates every byte of the header before trusting it
 * and serves tensors straight from a read-only mapping, and an atomic writer. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/json.h"
#include "core/sbuf.h"

/* ---- dtypes ---- */

static const struct {
  const char *name;
  size_t size;
} g_dtypes[STROP__DT_COUNT] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

const char *strop__dtype_name(int dt) {
  return dt >= 0 && dt < STROP__DT_COUNT ? g_dtypes[dt].name : "?";
}
size_t strop__dtype_size(int dt) {
  return dt >= 0 && dt < STROP__DT_COUNT ? g_dtypes[dt].size : 0;
}
int strop__dtype_parse(const char *name) {
  for (int i = 0; i < STROP__DT_COUNT; i++)
    if (strcmp(g_dtypes[i].name, name) == 0) return i;
  return -1;
}
int strop__dtype_is_float(int dt) {
  return dt == STROP__DT_F32 || dt == STROP__DT_F16 || dt == STROP__DT_BF16 ||
         dt == STROP__DT_F64;
}
int strop__dtype_is_int(int dt) {
  switch (dt) {
    case STROP__DT_BOOL:
    case STROP__DT_U8:
    case STROP__DT_I8:
    case STROP__DT_I16:
    case STROP__DT_U16:
    case STROP__DT_I32:
    case STROP__DT_U32:
    case STROP__DT_I64:
    case STROP__DT_U64: return 1;
    default: return 0;
  }
}

const char *strop__dims_str(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t n = 0;
  if (cap == 0) return buf;
  buf[0] = '\0';
  n += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
  return buf;
}

/* ---- little-endian loads (portable; compilers turn them into plain loads) ---- */

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const unsigned char *p) {
  return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static int host_is_le(void) {
  const uint16_t one = 1;
  unsigned char c;
  memcpy(&c, &one, 1);
  return c == 1;
}

static float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);
    exp = 113; /* 127 - 14: normalise the subnormal */
    while (!(mant & 0x400u)) {
      mant <<= 1;
      exp--;
    }
    mant &= 0x3FFu;
    return bits_to_float(sign | (exp << 23) | (mant << 13));
  }
  if (exp == 31) return bits_to_float(sign | 0x7F800000u | (mant << 13));
  return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

/* ---- reader ---- */

static strop_status ferr(const char *fn, const char *label, strop_status st, const char *fmt, ...)
    STROP__PRINTF(4, 5);
static strop_status ferr(const char *fn, const char *label, strop_status st, const char *fmt,
                         ...) {
  va_list ap;
  va_start(ap, fmt);
  strop__verr(st, fmt, ap);
  va_end(ap);
  strop__err_prefix("%s: %s", fn, label);
  return st;
}

void strop__st_close(strop__st_file *f) {
  if (!f) return;
  if (f->json) {
    strop__json_free(f->json);
    strop__free(f->json);
  }
  strop__mapping_unref(f->map);
  strop__free(f->label);
  strop__free(f->t);
  strop__free(f->by_name);
  strop__free(f->meta_keys);
  strop__free(f->meta_vals);
  strop__free(f);
}

/* qsort without a context argument: sort (key, index) pairs instead. */
typedef struct sort_item {
  uint64_t a, b;
  const char *s;
  int i;
} sort_item;

static int cmp_item_off(const void *p, const void *q) {
  const sort_item *x = p, *y = q;
  if (x->a != y->a) return x->a < y->a ? -1 : 1;
  if (x->b != y->b) return x->b < y->b ? -1 : 1;
  return x->i - y->i;
}
static int cmp_item_name(const void *p, const void *q) {
  const sort_item *x = p, *y = q;
  return strcmp(x->s, y->s);
}

static strop_status parse_tensor(const char *fn, strop__st_file *f, const strop__json *j,
                                 const strop__jnode *e, strop__st_tensor *t, uint64_t data_size) {
  const char *L = f->label, *nm = e->key;
  char sb[160];
  t->name = nm;
  if (!nm[0]) return ferr(fn, L, STROP_E_FORMAT, "a tensor has an empty name");
  if (e->type != STROP__J_OBJ)
    return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': entry is not a JSON object", nm);
  const strop__jnode *dt = strop__json_get(j, e, "dtype");
  const strop__jnode *sh = strop__json_get(j, e, "shape");
  const strop__jnode *of = strop__json_get(j, e, "data_offsets");
  if (!dt) return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': missing \"dtype\"", nm);
  if (!sh) return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': missing \"shape\"", nm);
  if (!of) return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': missing \"data_offsets\"", nm);
  if (dt->type != STROP__J_STR)
    return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': \"dtype\" is not a string", nm);
  t->dtype = strop__dtype_parse(dt->str);
  if (t->dtype < 0)
    return ferr(fn, L, STROP_E_FORMAT,
                "tensor '%s': unknown dtype \"%.40s\" (expected F64, F32, F16, BF16, I64, I32, "
                "I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3 or F8_E5M2)",
                nm, dt->str);
  if (sh->type != STROP__J_ARR)
    return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': \"shape\" is not an array", nm);
  if (sh->count > STROP_MAX_RANK)
    return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': rank %d exceeds the maximum %d", nm,
                sh->count, STROP_MAX_RANK);
  t->rank = sh->count;
  /* Every dimension is bounded and so is the product of the non-zero ones, whatever their
   * order: a zero elsewhere must not let [0, 2^63-1] through to code that multiplies dims. */
  size_t numel = 1, span = 1; /* span: the product of the non-zero dims */
  int overflow = 0, k = 0;
  for (int c = sh->child; c >= 0; c = j->nodes[c].next, k++) {
    const strop__jnode *d = &j->nodes[c];
    if (d->type != STROP__J_NUM || !d->is_int) {
      if (d->type == STROP__J_NUM && d->len > 0 && d->str[0] == '-')
        return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': shape[%d] is negative (%.40s)", nm, k,
                    d->str);
      return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': shape[%d] is not an integer", nm, k);
    }
    if (d->ival < 0)
      return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': shape[%d] is negative (%lld)", nm, k,
                  (long long)d->ival);
    if ((uint64_t)d->ival > STROP__ST_MAX_DIM)
      return ferr(fn, L, STROP_E_FORMAT,
                  "tensor '%s': shape[%d] is %lld, above the limit of 2^40 "
                  "for a dimension",
                  nm, k, (long long)d->ival);
    t->dims[k] = d->ival;
    if (d->ival && strop__mul_overflow(span, (size_t)d->ival, &span)) overflow = 1;
    numel *= (size_t)d->ival; /* <= span, or 0 */
  }
  size_t nbytes = 0;
  if (overflow || strop__mul_overflow(span, strop__dtype_size(t->dtype), &nbytes) ||
      nbytes > (uint64_t)INT64_MAX)
    return ferr(fn, L, STROP_E_FORMAT,
                "tensor '%s': shape %s is too large (the byte size overflows)", nm,
                strop__dims_str(t->rank, t->dims, sb, sizeof sb));
  nbytes = numel * strop__dtype_size(t->dtype);
  t->numel = numel;
  t->nbytes = nbytes;
  if (of->type != STROP__J_ARR || of->count != 2)
    return ferr(fn, L, STROP_E_FORMAT,
                "tensor '%s': \"data_offsets\" is not an array of 2 integers", nm);
  const strop__jnode *b = &j->nodes[of->child], *en = &j->nodes[b->next];
  if (b->type != STROP__J_NUM || !b->is_int || en->type != STROP__J_NUM || !en->is_int ||
      b->ival < 0 || en->ival < 0)
    return ferr(fn, L, STROP_E_FORMAT,
                "tensor '%s': \"data_offsets\" must be 2 non-negative integers", nm);
  uint64_t beg = (uint64_t)b->ival, end = (uint64_t)en->ival;
  if (beg > end)
    return ferr(fn, L, STROP_E_FORMAT, "tensor '%s': data_offsets [%llu, %llu] are reversed", nm,
                (unsigned long long)beg, (unsigned long long)end);
  if (end > data_size)
    return ferr(fn, L, STROP_E_FORMAT,
                "tensor '%s': data_offsets [%llu, %llu] are out of range: the data area has %llu "
                "bytes (truncated file?)",
                nm, (unsigned long long)beg, (unsigned long long)end,
                (unsigned long long)data_size);
  if (end - beg != nbytes)
    return ferr(fn, L, STROP_E_FORMAT,
                "tensor '%s': data_offsets [%llu, %llu] span %llu bytes but shape %s of %s needs "
                "%zu",
                nm, (unsigned long long)beg, (unsigned long long)end,
                (unsigned long long)(end - beg), strop__dims_str(t->rank, t->dims, sb, sizeof sb),
                strop__dtype_name(t->dtype), nbytes);
  t->offset = beg;
  return STROP_OK;
}

static strop_status validate(const char *fn, strop__st_file *f) {
  const char *L = f->label;
  if (f->size < 8)
    return ferr(fn, L, STROP_E_FORMAT,
                "file is %zu bytes, too short for the 8-byte header length (truncated?)",
                f->size);
  uint64_t hlen = le64(f->base);
  if (hlen > f->size - 8)
    return ferr(fn, L, STROP_E_FORMAT,
                "header length %llu exceeds the %zu bytes that follow it (truncated file or not "
                "safetensors)",
                (unsigned long long)hlen, f->size - 8);
  if (hlen > STROP__ST_MAX_HEADER)
    return ferr(fn, L, STROP_E_FORMAT, "header length %llu exceeds the limit of %llu bytes",
                (unsigned long long)hlen, (unsigned long long)STROP__ST_MAX_HEADER);
  if (hlen < 2)
    return ferr(fn, L, STROP_E_FORMAT, "header length %llu is too small for a JSON object",
                (unsigned long long)hlen);
  const char *htext = (const char *)f->base + 8;
  if (htext[0] != '{')
    return ferr(fn, L, STROP_E_FORMAT,
                "header does not start with '{' (not a safetensors file?)");
  strop__json *j = strop__calloc(1, sizeof *j);
  if (!j) return STROP__NOMEM(fn);
  f->json = j;
  strop_status st = strop__json_parse(htext, (size_t)hlen, 8, STROP__ST_MAX_DEPTH, j);
  if (st != STROP_OK) {
    strop__err_prefix("%s: %s: header JSON", fn, L);
    return st;
  }
  const strop__jnode *root = &j->nodes[0];
  uint64_t data_size = f->size - 8 - hlen;
  const unsigned char *data = f->base + 8 + hlen;

  int n_t = 0;
  const strop__jnode *meta = NULL;
  for (int c = root->child; c >= 0; c = j->nodes[c].next) {
    if (strcmp(j->nodes[c].key, "__metadata__") == 0) meta = &j->nodes[c];
    else n_t++;
  }
  if (meta) {
    if (meta->type != STROP__J_OBJ)
      return ferr(fn, L, STROP_E_FORMAT, "\"__metadata__\" is not a JSON object");
    f->meta_keys = strop__calloc((size_t)meta->count + 1, sizeof *f->meta_keys);
    f->meta_vals = strop__calloc((size_t)meta->count + 1, sizeof *f->meta_vals);
    if (!f->meta_keys || !f->meta_vals) return STROP__NOMEM(fn);
    for (int c = meta->child; c >= 0; c = j->nodes[c].next) {
      const strop__jnode *m = &j->nodes[c];
      if (m->type != STROP__J_STR)
        return ferr(fn, L, STROP_E_FORMAT, "\"__metadata__\" entry '%.100s' is not a string",
                    m->key);
      if (strlen(m->str) != m->len)
        return ferr(fn, L, STROP_E_FORMAT, "\"__metadata__\" entry '%.100s' contains NUL",
                    m->key);
      f->meta_keys[f->n_meta] = m->key;
      f->meta_vals[f->n_meta] = m->str;
      f->n_meta++;
    }
  }
  f->t = strop__calloc((size_t)n_t + 1, sizeof *f->t);
  f->by_name = strop__calloc((size_t)n_t + 1, sizeof *f->by_name);
  sort_item *items = strop__calloc((size_t)n_t + 1, sizeof *items);
  if (!f->t || !f->by_name || !items) {
    strop__free(items);
    return STROP__NOMEM(fn);
  }
  int k = 0;
  for (int c = root->child; c >= 0; c = j->nodes[c].next) {
    if (&j->nodes[c] == meta) continue;
    st = parse_tensor(fn, f, j, &j->nodes[c], &f->t[k], data_size);
    if (st != STROP_OK) {
      strop__free(items);
      return st;
    }
    f->t[k].data = f->t[k].nbytes ? data + f->t[k].offset : NULL;
    k++;
  }
  f->n = n_t;
  /* contiguous and non-overlapping, covering the data area exactly */
  for (int i = 0; i < n_t; i++) {
    items[i].a = f->t[i].offset;
    items[i].b = f->t[i].offset + f->t[i].nbytes;
    items[i].i = i;
  }
  qsort(items, (size_t)n_t, sizeof *items, cmp_item_off);
  uint64_t pos = 0;
  for (int i = 0; i < n_t && st == STROP_OK; i++) {
    const strop__st_tensor *t = &f->t[items[i].i];
    if (items[i].a < pos) {
      const strop__st_tensor *prev = &f->t[items[i - 1].i];
      st = ferr(fn, L, STROP_E_FORMAT, "tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                prev->name, (unsigned long long)items[i - 1].a,
                (unsigned long long)items[i - 1].b, t->name, (unsigned long long)items[i].a,
                (unsigned long long)items[i].b);
    } else if (items[i].a > pos) {
      st = ferr(fn, L, STROP_E_FORMAT,
                "gap of %llu bytes before tensor '%s' at offset %llu (data must be contiguous)",
                (unsigned long long)(items[i].a - pos), t->name, (unsigned long long)items[i].a);
    }
    pos = items[i].b;
  }
  if (st == STROP_OK && pos != data_size)
    st = ferr(fn, L, STROP_E_FORMAT, "%llu bytes after the last tensor's data",
              (unsigned long long)(data_size - pos));
  if (st == STROP_OK) {
    for (int i = 0; i < n_t; i++) {
      items[i].s = f->t[i].name;
      items[i].i = i;
    }
    qsort(items, (size_t)n_t, sizeof *items, cmp_item_name);
    for (int i = 0; i < n_t; i++) f->by_name[i] = items[i].i;
  }
  strop__free(items);
  return st;
}

strop_status strop__st_open_mem(const char *fn, const void *buf, size_t len, const char *label,
                                strop__st_file **out) {
  *out = NULL;
  strop__st_file *f = strop__calloc(1, sizeof *f);
  if (!f) return STROP__NOMEM(fn);
  f->base = buf;
  f->size = len;
  f->label = strop__strdup(label ? label : "<memory>");
  if (!f->label) {
    strop__st_close(f);
    return STROP__NOMEM(fn);
  }
  strop_status st = validate(fn, f);
  if (st != STROP_OK) {
    strop__st_close(f);
    return st;
  }
  *out = f;
  return STROP_OK;
}

strop_status strop__st_open(const char *fn, const char *path, strop__st_file **out) {
  *out = NULL;
  int fd;
  size_t size;
  strop_status st = strop__open_input(fn, path, &fd, &size);
  if (st != STROP_OK) return st;
  strop__st_file *f = strop__calloc(1, sizeof *f);
  if (!f) {
    close(fd);
    return STROP__NOMEM(fn);
  }
  f->label = strop__strdup(path);
  if (!f->label) {
    close(fd);
    strop__st_close(f);
    return STROP__NOMEM(fn);
  }
  f->size = size;
  if (f->size >= 8) {
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      strop__st_close(f);
      return strop__err(STROP_E_IO, "%s: cannot map '%s': %s", fn, path, strerror(e));
    }
    if (!(f->map = strop__mapping_new(p, f->size))) {
      munmap(p, f->size);
      close(fd);
      strop__st_close(f);
      return STROP__NOMEM(fn);
    }
    f->base = p;
  }
  close(fd);
  st = validate(fn, f);
  if (st != STROP_OK) {
    strop__st_close(f);
    return st;
  }
  *out = f;
  return STROP_OK;
}

int strop__st_find_index(const strop__st_file *f, const char *name) {
  int lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(f->t[f->by_name[mid]].name, name);
    if (c == 0) return f->by_name[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

const strop__st_tensor *strop__st_find(const strop__st_file *f, const char *name) {
  int i = strop__st_find_index(f, name);
  return i >= 0 ? &f->t[i] : NULL;
}

const char *strop__st_meta(const strop__st_file *f, const char *key) {
  for (int i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
  return NULL;
}

const float *strop__st_f32_view(const strop__st_tensor *t) {
  if (t->dtype != STROP__DT_F32 || !t->data || ((uintptr_t)t->data & 3u) || !host_is_le())
    return NULL;
  return (const float *)(const void *)t->data;
}

strop_status strop__st_read_f32(const char *fn, const strop__st_tensor *t, float *dst,
                                size_t count) {
  if (count != t->numel)
    return strop__err(STROP_E_SHAPE, "%s: tensor '%s' has %zu elements, not %zu", fn, t->name,
                      t->numel, count);
  const unsigned char *p = t->data;
  size_t n = t->numel;
  switch (t->dtype) {
    case STROP__DT_F32:
      if (host_is_le()) {
        if (n) memcpy(dst, p, n * 4);
      } else {
        for (size_t i = 0; i < n; i++) dst[i] = bits_to_float(le32(p + 4 * i));
      }
      break;
    case STROP__DT_F16:
      for (size_t i = 0; i < n; i++) dst[i] = half_to_float(le16(p + 2 * i));
      break;
    case STROP__DT_BF16:
      for (size_t i = 0; i < n; i++) dst[i] = bits_to_float((uint32_t)le16(p + 2 * i) << 16);
      break;
    case STROP__DT_F64:
      for (size_t i = 0; i < n; i++) {
        uint64_t u = le64(p + 8 * i);
        double d;
        memcpy(&d, &u, sizeof d);
        dst[i] = (float)d;
      }
      break;
    case STROP__DT_BOOL:
    case STROP__DT_U8:
      for (size_t i = 0; i < n; i++) dst[i] = (float)p[i];
      break;
    case STROP__DT_I8:
      for (size_t i = 0; i < n; i++) dst[i] = (float)(int8_t)p[i];
      break;
    case STROP__DT_I16:
      for (size_t i = 0; i < n; i++) dst[i] = (float)(int16_t)le16(p + 2 * i);
      break;
    case STROP__DT_U16:
      for (size_t i = 0; i < n; i++) dst[i] = (float)le16(p + 2 * i);
      break;
    case STROP__DT_I32:
      for (size_t i = 0; i < n; i++) dst[i] = (float)(int32_t)le32(p + 4 * i);
      break;
    case STROP__DT_U32:
      for (size_t i = 0; i < n; i++) dst[i] = (float)le32(p + 4 * i);
      break;
    case STROP__DT_I64:
      for (size_t i = 0; i < n; i++) dst[i] = (float)(int64_t)le64(p + 8 * i);
      break;
    case STROP__DT_U64:
      for (size_t i = 0; i < n; i++) dst[i] = (float)le64(p + 8 * i);
      break;
    default:
      return strop__err(STROP_E_UNSUPPORTED,
                        "%s: tensor '%s': dtype %s cannot be read as float32", fn, t->name,
                        strop__dtype_name(t->dtype));
  }
  return STROP_OK;
}

strop_status strop__st_read_i64(const char *fn, const strop__st_tensor *t, int64_t *dst,
                                size_t count) {
  if (count != t->numel)
    return strop__err(STROP_E_SHAPE, "%s: tensor '%s' has %zu elements, not %zu", fn, t->name,
                      t->numel, count);
  const unsigned char *p = t->data;
  size_t n = t->numel;
  switch (t->dtype) {
    case STROP__DT_I64:
      for (size_t i = 0; i < n; i++) dst[i] = (int64_t)le64(p + 8 * i);
      break;
    case STROP__DT_U64:
      for (size_t i = 0; i < n; i++) {
        uint64_t u = le64(p + 8 * i);
        if (u > (uint64_t)INT64_MAX)
          return strop__err(STROP_E_FORMAT, "%s: tensor '%s': U64 value %llu exceeds int64", fn,
                            t->name, (unsigned long long)u);
        dst[i] = (int64_t)u;
      }
      break;
    case STROP__DT_I32:
      for (size_t i = 0; i < n; i++) dst[i] = (int32_t)le32(p + 4 * i);
      break;
    case STROP__DT_U32:
      for (size_t i = 0; i < n; i++) dst[i] = le32(p + 4 * i);
      break;
    case STROP__DT_I16:
      for (size_t i = 0; i < n; i++) dst[i] = (int16_t)le16(p + 2 * i);
      break;
    case STROP__DT_U16:
      for (size_t i = 0; i < n; i++) dst[i] = le16(p + 2 * i);
      break;
    case STROP__DT_I8:
      for (size_t i = 0; i < n; i++) dst[i] = (int8_t)p[i];
      break;
    case STROP__DT_U8:
    case STROP__DT_BOOL:
      for (size_t i = 0; i < n; i++) dst[i] = p[i];
      break;
    default:
      return strop__err(STROP_E_UNSUPPORTED, "%s: tensor '%s': dtype %s is not an integer type",
                        fn, t->name, strop__dtype_name(t->dtype));
  }
  return STROP_OK;
}

/* ---- writer ---- */

typedef struct wt {
  char *name;
  int dtype;
  int rank;
  int64_t dims[STROP_MAX_RANK];
  size_t nbytes;
  const void *data;
  void *owned;
} wt;

struct strop__st_writer {
  const char *fn;
  wt *t;
  int n, cap;
  char **mk, **mv;
  int n_meta, cap_meta;
};

strop_status strop__st_writer_create(const char *fn, strop__st_writer **out) {
  *out = strop__calloc(1, sizeof **out);
  if (!*out) return STROP__NOMEM(fn);
  (*out)->fn = fn;
  return STROP_OK;
}

void strop__st_writer_free(strop__st_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++) {
    strop__free(w->t[i].name);
    strop__free(w->t[i].owned);
  }
  for (int i = 0; i < w->n_meta; i++) {
    strop__free(w->mk[i]);
    strop__free(w->mv[i]);
  }
  strop__free(w->t);
  strop__free(w->mk);
  strop__free(w->mv);
  strop__free(w);
}

static strop_status writer_add(strop__st_writer *w, const char *name, int dtype, int rank,
                               const int64_t *dims, const void *data, int copy) {
  const char *fn = w->fn;
  if (!name || !name[0] || strcmp(name, "__metadata__") == 0 ||
      !strop__utf8_valid(name, strlen(name)))
    return strop__err(STROP_E_INVALID_ARG, "%s: invalid tensor name '%s'", fn,
                      name ? name : "(null)");
  if (rank < 0 || rank > STROP_MAX_RANK || (rank > 0 && !dims))
    return strop__err(STROP_E_INVALID_ARG, "%s: tensor '%s': rank %d out of range 0..%d", fn,
                      name, rank, STROP_MAX_RANK);
  size_t numel = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0 || strop__mul_overflow(numel, (size_t)dims[i], &numel))
      return strop__err(STROP_E_INVALID_ARG, "%s: tensor '%s': bad dims[%d] = %lld", fn, name, i,
                        (long long)dims[i]);
  }
  size_t nbytes;
  if (strop__mul_overflow(numel, strop__dtype_size(dtype), &nbytes))
    return strop__err(STROP_E_INVALID_ARG, "%s: tensor '%s' is too large", fn, name);
  if (nbytes && !data)
    return strop__err(STROP_E_INVALID_ARG, "%s: tensor '%s': data is NULL", fn, name);
  if (w->n == w->cap) {
    int cap = w->cap ? w->cap * 2 : 16;
    wt *v = strop__realloc(w->t, (size_t)cap * sizeof *v);
    if (!v) return STROP__NOMEM(fn);
    w->t = v;
    w->cap = cap;
  }
  wt *t = &w->t[w->n];
  memset(t, 0, sizeof *t);
  t->name = strop__strdup(name);
  if (!t->name) return STROP__NOMEM(fn);
  if (copy && nbytes) {
    t->owned = strop__malloc(nbytes);
    if (!t->owned) {
      strop__free(t->name);
      return STROP__NOMEM(fn);
    }
    memcpy(t->owned, data, nbytes);
    data = t->owned;
  }
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
  t->nbytes = nbytes;
  t->data = data;
  w->n++;
  return STROP_OK;
}

strop_status strop__st_writer_add_f32(strop__st_writer *w, const char *name, int rank,
                                      const int64_t *dims, const float *data) {
  return writer_add(w, name, STROP__DT_F32, rank, dims, data, 0);
}
strop_status strop__st_writer_add_i64(strop__st_writer *w, const char *name, int rank,
                                      const int64_t *dims, const int64_t *data) {
  return writer_add(w, name, STROP__DT_I64, rank, dims, data, 0);
}
strop_status strop__st_writer_add_f32_copy(strop__st_writer *w, const char *name, int rank,
                                           const int64_t *dims, const float *data) {
  return writer_add(w, name, STROP__DT_F32, rank, dims, data, 1);
}
strop_status strop__st_writer_add_i64_copy(strop__st_writer *w, const char *name, int rank,
                                           const int64_t *dims, const int64_t *data) {
  return writer_add(w, name, STROP__DT_I64, rank, dims, data, 1);
}

strop_status strop__st_writer_set_meta(strop__st_writer *w, const char *key, const char *value) {
  const char *fn = w->fn;
  if (!key || !value || !strop__utf8_valid(key, strlen(key)) ||
      !strop__utf8_valid(value, strlen(value)))
    return strop__err(STROP_E_INVALID_ARG, "%s: metadata key and value must be UTF-8 strings",
                      fn);
  for (int i = 0; i < w->n_meta; i++) {
    if (strcmp(w->mk[i], key) == 0) {
      char *v = strop__strdup(value);
      if (!v) return STROP__NOMEM(fn);
      strop__free(w->mv[i]);
      w->mv[i] = v;
      return STROP_OK;
    }
  }
  if (w->n_meta == w->cap_meta) {
    int cap = w->cap_meta ? w->cap_meta * 2 : 8;
    char **a = strop__realloc(w->mk, (size_t)cap * sizeof *a);
    if (!a) return STROP__NOMEM(fn);
    w->mk = a;
    char **b = strop__realloc(w->mv, (size_t)cap * sizeof *b);
    if (!b) return STROP__NOMEM(fn);
    w->mv = b;
    w->cap_meta = cap;
  }
  char *k = strop__strdup(key), *v = strop__strdup(value);
  if (!k || !v) {
    strop__free(k);
    strop__free(v);
    return STROP__NOMEM(fn);
  }
  w->mk[w->n_meta] = k;
  w->mv[w->n_meta] = v;
  w->n_meta++;
  return STROP_OK;
}

/* Data order: 8-byte dtypes first, then the rest, each group in insertion order, so every
 * tensor is aligned to its element size when the data area is 8-aligned (the header is
 * padded so that it is). *order gets the permutation; returns the padded header. */
static strop_status build_header(strop__st_writer *w, strop__sbuf *h, int **order_out) {
  const char *fn = w->fn;
  int *order = strop__malloc(((size_t)w->n + 1) * sizeof *order);
  sort_item *items = strop__malloc(((size_t)w->n + 1) * sizeof *items);
  uint64_t *offs = strop__malloc(((size_t)w->n + 1) * sizeof *offs);
  if (!order || !items || !offs) {
    strop__free(order);
    strop__free(items);
    strop__free(offs);
    return STROP__NOMEM(fn);
  }
  strop_status st = STROP_OK;
  for (int i = 0; i < w->n; i++) {
    items[i].s = w->t[i].name;
    items[i].i = i;
  }
  qsort(items, (size_t)w->n, sizeof *items, cmp_item_name);
  for (int i = 1; i < w->n; i++)
    if (strcmp(items[i - 1].s, items[i].s) == 0) {
      st = strop__err(STROP_E_INVALID_ARG, "%s: duplicate tensor name '%s'", fn, items[i].s);
      break;
    }
  strop__free(items);
  int k = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < w->n; i++)
      if ((strop__dtype_size(w->t[i].dtype) == 8) == (pass == 0)) order[k++] = i;
  uint64_t pos = 0;
  for (int i = 0; i < w->n; i++) {
    offs[order[i]] = pos;
    pos += w->t[order[i]].nbytes;
  }
  if (st == STROP_OK) {
    strop__sbuf_puts(h, "{");
    int first = 1;
    if (w->n_meta) {
      strop__sbuf_puts(h, "\"__metadata__\":{");
      for (int i = 0; i < w->n_meta; i++) {
        if (i) strop__sbuf_puts(h, ",");
        strop__sbuf_json_str(h, w->mk[i]);
        strop__sbuf_puts(h, ":");
        strop__sbuf_json_str(h, w->mv[i]);
      }
      strop__sbuf_puts(h, "}");
      first = 0;
    }
    for (int i = 0; i < w->n; i++) {
      const wt *t = &w->t[i];
      if (!first) strop__sbuf_puts(h, ",");
      first = 0;
      strop__sbuf_json_str(h, t->name);
      strop__sbuf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", strop__dtype_name(t->dtype));
      for (int d = 0; d < t->rank; d++)
        strop__sbuf_printf(h, "%s%lld", d ? "," : "", (long long)t->dims[d]);
      strop__sbuf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offs[i],
                         (unsigned long long)(offs[i] + t->nbytes));
    }
    strop__sbuf_puts(h, "}");
    while (h->n % 8 && !h->oom) strop__sbuf_puts(h, " "); /* oom: n stops growing */
    if (h->oom) st = STROP__NOMEM(fn);
  }
  strop__free(offs);
  if (st != STROP_OK) {
    strop__free(order);
    return st;
  }
  *order_out = order;
  return STROP_OK;
}

static void put_le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Little-endian bytes of a tensor's data, through a bounce buffer on big-endian hosts. */
typedef strop_status (*sink_fn)(void *ctx, const void *p, size_t n);

static strop_status emit_data(const wt *t, sink_fn sink, void *ctx) {
  if (!t->nbytes) return STROP_OK;
  if (host_is_le()) return sink(ctx, t->data, t->nbytes);
  size_t es = strop__dtype_size(t->dtype);
  unsigned char tmp[4096];
  const unsigned char *p = t->data;
  for (size_t off = 0; off < t->nbytes; off += sizeof tmp) {
    size_t n = t->nbytes - off < sizeof tmp ? t->nbytes - off : sizeof tmp;
    for (size_t i = 0; i < n; i += es)
      for (size_t b = 0; b < es; b++) tmp[i + b] = p[off + i + es - 1 - b];
    strop_status st = sink(ctx, tmp, n);
    if (st != STROP_OK) return st;
  }
  return STROP_OK;
}

static strop_status emit(strop__st_writer *w, sink_fn sink, void *ctx) {
  strop__sbuf h = {0};
  int *order = NULL;
  strop_status st = build_header(w, &h, &order);
  if (st != STROP_OK) {
    strop__sbuf_free(&h);
    return st;
  }
  unsigned char len8[8];
  put_le64(len8, h.n);
  st = sink(ctx, len8, 8);
  if (st == STROP_OK) st = sink(ctx, h.s, h.n);
  for (int i = 0; i < w->n && st == STROP_OK; i++) st = emit_data(&w->t[order[i]], sink, ctx);
  strop__sbuf_free(&h);
  strop__free(order);
  return st;
}

static strop_status sink_file(void *ctx, const void *p, size_t n) {
  return strop__afile_write(ctx, p, n);
}

strop_status strop__st_writer_save(strop__st_writer *w, const char *path) {
  strop__afile f;
  strop_status st = strop__afile_open(&f, w->fn, path);
  if (st != STROP_OK) return st;
  st = emit(w, sink_file, &f);
  if (st != STROP_OK) {
    strop__afile_abort(&f);
    return st;
  }
  return strop__afile_commit(&f);
}

typedef struct mem_sink {
  unsigned char *p;
  size_t n, cap;
} mem_sink;

static strop_status sink_mem(void *ctx, const void *p, size_t n) {
  mem_sink *m = ctx;
  if (m->n + n > m->cap) {
    size_t cap = m->cap ? m->cap : 4096;
    while (cap < m->n + n) cap *= 2;
    unsigned char *q = strop__realloc(m->p, cap);
    if (!q) return strop__err(STROP_E_NOMEM, "out of memory");
    m->p = q;
    m->cap = cap;
  }
  memcpy(m->p + m->n, p, n);
  m->n += n;
  return STROP_OK;
}

strop_status strop__st_writer_to_mem(strop__st_writer *w, unsigned char **out, size_t *len) {
  mem_sink m = {0};
  *out = NULL;
  *len = 0;
  strop_status st = emit(w, sink_mem, &m);
  if (st != STROP_OK) {
    strop__free(m.p);
    return st;
  }
  *out = m.p;
  *len = m.n;
  return STROP_OK;
}

/* ---- public listing API ---- */

static int64_t copy_out(const char *s, char *buf, size_t cap) {
  size_t n = strlen(s);
  if (buf && cap) {
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(buf, s, k);
    buf[k] = '\0';
  }
  return (int64_t)n;
}

strop_status strop_st_file_open(const char *path, strop_st_file **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "strop_st_file_open: out is NULL");
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "strop_st_file_open: path is NULL");
  return strop__st_open("strop_st_file_open", path, out);
}

void strop_st_file_free(strop_st_file *file) { strop__st_close(file); }

int64_t strop_st_file_count(const strop_st_file *f) { return f ? f->n : -1; }

int64_t strop_st_file_find(const strop_st_file *f, const char *name) {
  if (!f || !name) return -1;
  return strop__st_find_index(f, name);
}

int64_t strop_st_file_name(const strop_st_file *f, int64_t i, char *buf, size_t cap) {
  if (!f || i < 0 || i >= f->n) return -1;
  return copy_out(f->t[i].name, buf, cap);
}

int64_t strop_st_file_dtype(const strop_st_file *f, int64_t i, char *buf, size_t cap) {
  if (!f || i < 0 || i >= f->n) return -1;
  return copy_out(strop__dtype_name(f->t[i].dtype), buf, cap);
}

int strop_st_file_shape(const strop_st_file *f, int64_t i, int64_t *dims, int cap) {
  if (!f || i < 0 || i >= f->n || (cap > 0 && !dims)) return -1;
  for (int d = 0; d < f->t[i].rank && d < cap; d++) dims[d] = f->t[i].dims[d];
  return f->t[i].rank;
}

strop_status strop_st_file_read_f32(const strop_st_file *f, int64_t i, float *dst, size_t count) {
  const char *fn = "strop_st_file_read_f32";
  if (!f || !dst) return strop__err(STROP_E_INVALID_ARG, "%s: file or dst is NULL", fn);
  if (i < 0 || i >= f->n)
    return strop__err(STROP_E_INVALID_ARG, "%s: index %lld out of range 0..%d", fn, (long long)i,
                      f->n - 1);
  return strop__st_read_f32(fn, &f->t[i], dst, count);
}

int64_t strop_st_file_meta_count(const strop_st_file *f) { return f ? f->n_meta : -1; }

int64_t strop_st_file_meta_key(const strop_st_file *f, int64_t i, char *buf, size_t cap) {
  if (!f || i < 0 || i >= f->n_meta) return -1;
  return copy_out(f->meta_keys[i], buf, cap);
}

int64_t strop_st_file_meta_value(const strop_st_file *f, int64_t i, char *buf, size_t cap) {
  if (!f || i < 0 || i >= f->n_meta) return -1;
  return copy_out(f->meta_vals[i], buf, cap);
}
