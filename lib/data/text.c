/* SPDX-License-Identifier: MIT */
/* strop — text: byte- and character-level vocabularies (build, save, load, encode, decode) and
 * the datasets built on them: language-modelling windows and per-file text classification. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"
#include "io/atomic.h"
#include "core/sbuf.h"

struct strop_vocab {
  int mode;
  int64_t size;
  uint32_t *cps; /* chars: code point of token i (cps[0] unused: <unk>), sorted from 1 */
};

#define REPLACEMENT 0xFFFDu

/* Decodes one UTF-8 character at s (n > 0 bytes); invalid sequences read as U+FFFD, 1 byte. */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *used) {
  uint8_t c = s[0];
  *used = 1;
  if (c < 0x80) return c;
  int len;
  uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else {
    return REPLACEMENT;
  }
  if ((size_t)len > n) return REPLACEMENT;
  for (int i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return REPLACEMENT;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return REPLACEMENT;
  *used = (size_t)len;
  return cp;
}

static size_t utf8_put(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int64_t char_id(const strop_vocab *v, uint32_t cp) {
  int64_t lo = 1, hi = v->size - 1;
  while (lo <= hi) {
    int64_t mid = (lo + hi) / 2;
    if (v->cps[mid] == cp) return mid;
    if (v->cps[mid] < cp) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

/* Token ids of a whole buffer; *ids malloc'd (int32). */
static strop_status encode_all(const strop_vocab *v, const char *fn, const uint8_t *s, size_t n,
                               int32_t **ids, int64_t *count) {
  int32_t *t = strop__malloc((n ? n : 1) * sizeof *t);
  if (!t) return STROP__NOMEM(fn);
  int64_t m = 0;
  if (v->mode == STROP_TOKENS_BYTES) {
    for (size_t i = 0; i < n; i++) t[m++] = s[i];
  } else {
    for (size_t i = 0; i < n;) {
      size_t used;
      uint32_t cp = utf8_next(s + i, n - i, &used);
      t[m++] = (int32_t)char_id(v, cp);
      i += used;
    }
  }
  *ids = t;
  *count = m;
  return STROP_OK;
}

static strop_status vocab_new(const char *fn, int mode, int64_t size, strop_vocab **out) {
  strop_vocab *v = strop__calloc(1, sizeof *v);
  if (!v) return STROP__NOMEM(fn);
  v->mode = mode;
  v->size = size;
  if (mode == STROP_TOKENS_CHARS) {
    v->cps = strop__calloc((size_t)size, sizeof *v->cps);
    if (!v->cps) {
      strop__free(v);
      return STROP__NOMEM(fn);
    }
  }
  *out = v;
  return STROP_OK;
}

void strop_vocab_free(strop_vocab *vocab) {
  if (!vocab) return;
  strop__free(vocab->cps);
  strop__free(vocab);
}

int64_t strop_vocab_size(const strop_vocab *vocab) { return vocab ? vocab->size : -1; }

strop_status strop_vocab_build(const char *const *paths, int64_t count, int mode,
                               strop_vocab **out) {
  const char *fn = "strop_vocab_build";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (mode != STROP_TOKENS_BYTES && mode != STROP_TOKENS_CHARS)
    return strop__err(STROP_E_INVALID_ARG, "%s: unknown mode %d", fn, mode);
  if (mode == STROP_TOKENS_BYTES) return vocab_new(fn, mode, 256, out);
  if (!paths || count < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: need at least one path, got %lld", fn,
                      (long long)count);
  uint8_t *seen = strop__calloc(0x110000 / 8, 1);
  if (!seen) return STROP__NOMEM(fn);
  strop_status st = STROP_OK;
  for (int64_t k = 0; k < count && !st; k++) {
    if (!paths[k]) {
      st = strop__err(STROP_E_INVALID_ARG, "%s: paths[%lld] is NULL", fn, (long long)k);
      break;
    }
    strop__file f;
    st = strop__file_read(fn, paths[k], 1, NULL, &f);
    if (st) break;
    for (size_t i = 0; i < f.len;) {
      size_t used;
      uint32_t cp = utf8_next(f.data + i, f.len - i, &used);
      seen[cp >> 3] |= (uint8_t)(1u << (cp & 7));
      i += used;
    }
    strop__file_close(&f);
  }
  if (st) {
    strop__free(seen);
    return st;
  }
  int64_t distinct = 0;
  for (uint32_t cp = 0; cp < 0x110000; cp++) distinct += (seen[cp >> 3] >> (cp & 7)) & 1;
  strop_vocab *v = NULL;
  st = vocab_new(fn, mode, distinct + 1, &v);
  if (!st) {
    int64_t i = 1;
    for (uint32_t cp = 0; cp < 0x110000; cp++)
      if ((seen[cp >> 3] >> (cp & 7)) & 1) v->cps[i++] = cp;
    *out = v;
  }
  strop__free(seen);
  return st;
}

strop_status strop_vocab_save(const strop_vocab *vocab, const char *path) {
  const char *fn = "strop_vocab_save";
  if (!vocab || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, vocab ? "path" : "vocab");
  strop__sbuf b;
  memset(&b, 0, sizeof b);
  strop__sbuf_printf(&b, "strop-vocab 1 %s %lld\n",
                     vocab->mode == STROP_TOKENS_BYTES ? "bytes" : "chars",
                     (long long)vocab->size);
  if (vocab->mode == STROP_TOKENS_CHARS) {
    strop__sbuf_puts(&b, "<unk>\n");
    for (int64_t i = 1; i < vocab->size; i++)
      strop__sbuf_printf(&b, "U+%04X\n", (unsigned)vocab->cps[i]);
  }
  /* the atomic writer: a killed save leaves a temporary the next save removes */
  strop_status st = b.oom ? STROP__NOMEM(fn) : strop__write_file_atomic(fn, path, b.s, b.n);
  strop__sbuf_free(&b);
  return st;
}

strop_status strop_vocab_load(const char *path, strop_vocab **out) {
  const char *fn = "strop_vocab_load";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  strop__file f;
  strop_status st = strop__file_read(fn, path, 0, NULL, &f);
  if (st) return st;
  const char *s = (const char *)f.data, *e = s + f.len;
  char line[128];
  int64_t lineno = 0;
  strop_vocab *v = NULL;
  int64_t next = 1;
  while (s < e) {
    const char *nl = memchr(s, '\n', (size_t)(e - s));
    const char *le = nl ? nl : e;
    size_t n = (size_t)(le - s);
    lineno++;
    if (n >= sizeof line) {
      st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: line too long", fn, path, (long long)lineno);
      goto fail;
    }
    memcpy(line, s, n);
    line[n] = '\0';
    s = nl ? nl + 1 : e;
    if (lineno == 1) {
      char kind[16];
      long long size = 0;
      int ver = 0;
      if (sscanf(line, "strop-vocab %d %15s %lld", &ver, kind, &size) != 3 || ver != 1) {
        st = strop__err(STROP_E_FORMAT, "%s: %s:1: expected 'strop-vocab 1 <bytes|chars> <size>'",
                        fn, path);
        goto fail;
      }
      if (strcmp(kind, "bytes") == 0 && size == 256) {
        st = vocab_new(fn, STROP_TOKENS_BYTES, 256, &v);
      } else if (strcmp(kind, "chars") == 0 && size >= 1 && size <= 0x110001) {
        st = vocab_new(fn, STROP_TOKENS_CHARS, size, &v);
      } else {
        st = strop__err(STROP_E_FORMAT, "%s: %s:1: bad kind '%s' or size %lld", fn, path, kind,
                        size);
      }
      if (st) goto fail;
      continue;
    }
    if (v->mode == STROP_TOKENS_BYTES) {
      st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: a bytes vocabulary lists no tokens", fn, path,
                      (long long)lineno);
      goto fail;
    }
    if (lineno == 2) {
      if (strcmp(line, "<unk>") != 0) {
        st = strop__err(STROP_E_FORMAT, "%s: %s:2: expected '<unk>'", fn, path);
        goto fail;
      }
      continue;
    }
    unsigned cp = 0;
    char extra;
    if (sscanf(line, "U+%X%c", &cp, &extra) != 1 || cp > 0x10FFFF || next >= v->size ||
        (next > 1 && cp <= v->cps[next - 1])) {
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s:%lld: expected U+XXXX, ascending, at most %lld "
                      "tokens; got '%.40s'",
                      fn, path, (long long)lineno, (long long)(v->size), line);
      goto fail;
    }
    v->cps[next++] = cp;
  }
  if (!v || (v->mode == STROP_TOKENS_CHARS && next != v->size)) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: %s", fn, path,
                    v ? "fewer tokens than the header says" : "empty file");
    goto fail;
  }
  strop__file_close(&f);
  *out = v;
  return STROP_OK;
fail:
  strop_vocab_free(v);
  strop__file_close(&f);
  return st;
}

strop_status strop_vocab_encode(const strop_vocab *vocab, const char *text, size_t len,
                                int64_t *ids, int64_t cap, int64_t *count) {
  const char *fn = "strop_vocab_encode";
  if (!vocab || !count || (!text && len) || (!ids && cap > 0))
    return strop__err(STROP_E_INVALID_ARG, "%s: NULL argument", fn);
  const uint8_t *s = (const uint8_t *)text;
  int64_t m = 0;
  for (size_t i = 0; i < len;) {
    int64_t id;
    if (vocab->mode == STROP_TOKENS_BYTES) {
      id = s[i++];
    } else {
      size_t used;
      id = char_id(vocab, utf8_next(s + i, len - i, &used));
      i += used;
    }
    if (m < cap) ids[m] = id;
    m++;
  }
  *count = m;
  return STROP_OK;
}

int64_t strop_vocab_decode(const strop_vocab *vocab, const int64_t *ids, int64_t n, char *buf,
                           size_t cap) {
  if (!vocab || (!ids && n > 0) || (!buf && cap > 0)) {
    strop__err(STROP_E_INVALID_ARG, "strop_vocab_decode: NULL argument");
    return -1;
  }
  size_t m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= vocab->size) {
      strop__err(STROP_E_INVALID_ARG,
                 "strop_vocab_decode: ids[%lld] = %lld out of range [0, %lld)", (long long)i,
                 (long long)ids[i], (long long)vocab->size);
      return -1;
    }
    char tmp[4];
    size_t k;
    if (vocab->mode == STROP_TOKENS_BYTES) {
      tmp[0] = (char)ids[i];
      k = 1;
    } else {
      k = utf8_put(ids[i] == 0 ? REPLACEMENT : vocab->cps[ids[i]], tmp);
    }
    for (size_t j = 0; j < k; j++, m++)
      if (m + 1 < cap) buf[m] = tmp[j];
  }
  if (cap) buf[m < cap ? m : cap - 1] = '\0';
  return (int64_t)m;
}

/* ------------------------------------------------------------------ datasets ---- */

strop_status strop_dataset_load_text(const char *path, const strop_vocab *vocab, int64_t seq_len,
                                     int64_t stride, strop_dataset **out) {
  const char *fn = "strop_dataset_load_text";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!path || !vocab)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, path ? "vocab" : "path");
  if (seq_len < 1 || stride < 1 || seq_len > (1 << 24))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need seq_len in [1, 2^24] and stride >= 1, got "
                      "%lld and %lld",
                      fn, (long long)seq_len, (long long)stride);
  strop__file f;
  strop_status st = strop__file_read(fn, path, 1, NULL, &f);
  if (st) return st;
  int32_t *ids = NULL;
  int64_t T = 0;
  st = encode_all(vocab, fn, f.data, f.len, &ids, &T);
  strop__file_close(&f);
  if (st) return st;
  if (T < seq_len + 1) {
    strop__free(ids);
    return strop__err(STROP_E_FORMAT, "%s: %s has %lld tokens, fewer than seq_len + 1 = %lld", fn,
                      path, (long long)T, (long long)(seq_len + 1));
  }
  int64_t n = (T - seq_len - 1) / stride + 1;
  strop_dataset *ds = NULL;
  int64_t dims[1] = {seq_len};
  st = strop__ds_new_root(fn, STROP__DS_TOKENS, n, 1, dims, 1, dims, vocab->size, &ds);
  if (st) {
    strop__free(ids);
    return st;
  }
  ds->tokens = ids;
  ds->ntokens = T;
  ds->lm = 1;
  ds->seq_len = seq_len;
  ds->starts = strop__malloc((size_t)n * sizeof *ds->starts);
  if (!ds->starts) {
    strop_dataset_free(ds);
    return STROP__NOMEM(fn);
  }
  for (int64_t i = 0; i < n; i++) ds->starts[i] = i * stride;
  *out = ds;
  return STROP_OK;
}

strop_status strop_dataset_load_text_classes(const char *const *paths, const int64_t *labels,
                                             int64_t count, const strop_vocab *vocab,
                                             int64_t seq_len, int64_t stride,
                                             strop_dataset **out) {
  const char *fn = "strop_dataset_load_text_classes";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!paths || !labels || !vocab || count < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: need paths, labels, vocab and count >= 1", fn);
  if (seq_len < 1 || stride < 1 || seq_len > (1 << 24))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: need seq_len in [1, 2^24] and stride >= 1, got "
                      "%lld and %lld",
                      fn, (long long)seq_len, (long long)stride);
  int64_t C = 0;
  for (int64_t k = 0; k < count; k++) {
    if (!paths[k] || labels[k] < 0 || labels[k] >= (1 << 24))
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: paths[%lld] is NULL or labels[%lld] = %lld is "
                        "not in [0, 2^24)",
                        fn, (long long)k, (long long)k, (long long)labels[k]);
    if (labels[k] + 1 > C) C = labels[k] + 1;
  }
  int32_t *toks = NULL;
  int64_t *starts = NULL;
  float *ys = NULL;
  int64_t T = 0, capT = 0, n = 0, capn = 0;
  strop_status st = STROP_OK;
  for (int64_t k = 0; k < count && !st; k++) {
    strop__file f;
    st = strop__file_read(fn, paths[k], 1, NULL, &f);
    if (st) break;
    int32_t *ids = NULL;
    int64_t m = 0;
    st = encode_all(vocab, fn, f.data, f.len, &ids, &m);
    strop__file_close(&f);
    if (st) break;
    if (m == 0) {
      strop__free(ids);
      st = strop__err(STROP_E_FORMAT, "%s: %s is empty", fn, paths[k]);
      break;
    }
    int64_t padded = m < seq_len ? seq_len : m;
    int64_t windows = m <= seq_len ? 1 : (m - seq_len) / stride + 1;
    if (T + padded > capT) {
      int64_t nc = (T + padded) * 2;
      int32_t *nt = strop__realloc(toks, (size_t)nc * sizeof *nt);
      if (!nt) {
        strop__free(ids);
        st = STROP__NOMEM(fn);
        break;
      }
      toks = nt;
      capT = nc;
    }
    if (n + windows > capn) {
      int64_t nc = (n + windows) * 2;
      int64_t *ns = strop__realloc(starts, (size_t)nc * sizeof *ns);
      if (ns) starts = ns;
      float *ny = ns ? strop__realloc(ys, (size_t)nc * sizeof *ny) : NULL;
      if (ny) ys = ny;
      if (!ns || !ny) {
        strop__free(ids);
        st = STROP__NOMEM(fn);
        break;
      }
      capn = nc;
    }
    memcpy(toks + T, ids, (size_t)m * sizeof *ids);
    for (int64_t i = m; i < padded; i++) toks[T + i] = 0;
    for (int64_t w = 0; w < windows; w++) {
      starts[n] = T + w * stride;
      ys[n] = (float)labels[k];
      n++;
    }
    T += padded;
    strop__free(ids);
  }
  strop_dataset *ds = NULL;
  int64_t dims[1] = {seq_len};
  if (!st) st = strop__ds_new_root(fn, STROP__DS_TOKENS, n, 1, dims, 0, NULL, C, &ds);
  if (st) {
    strop__free(toks);
    strop__free(starts);
    strop__free(ys);
    return st;
  }
  ds->tokens = toks;
  ds->ntokens = T;
  ds->starts = starts;
  ds->y = ds->y_owned = ys;
  ds->seq_len = seq_len;
  *out = ds;
  return STROP_OK;
}
