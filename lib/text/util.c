/* SPDX-License-Identifier: MIT */
/* strop — the text module's building blocks: UTF-8, the character classes of Hugging Face's
 * tokenizers (from utf8proc's Unicode data), hash tables, a byte trie, patterns, work buffers. */
#include <string.h>

#include <utf8proc.h>

#include "text/text_impl.h"

strop_status strop__tx_reserve(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return STROP_OK;
  size_t ncap = *cap ? *cap : 16;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2) return STROP__NOMEM("strop__tx_reserve");
    ncap *= 2;
  }
  size_t bytes;
  if (strop__mul_overflow(ncap, elem, &bytes)) return STROP__NOMEM("strop__tx_reserve");
  void *q = strop__realloc(*p, bytes);
  if (!q) return STROP__NOMEM("strop__tx_reserve");
  *p = q;
  *cap = ncap;
  return STROP_OK;
}

uint64_t strop__tx_hash(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t k;
    memcpy(&k, s, 8);
    h = (h ^ k) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    s += 8;
    n -= 8;
  }
  uint64_t k = 0;
  if (n) memcpy(&k, s, n);
  h = (h ^ k) * 0x94d049bb133111ebull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 32);
}

char *strop__tx_strndup(const char *s, size_t n) {
  char *d = strop__malloc(n + 1);
  if (!d) return NULL;
  if (n) memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* ---- UTF-8 ---- */
uint32_t strop__tx_utf8_get(const char *str, size_t *len) {
  const unsigned char *s = (const unsigned char *)str;
  unsigned char c = s[0];
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  if (c < 0xE0) {
    *len = 2;
    return (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F);
  }
  if (c < 0xF0) {
    *len = 3;
    return (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
  }
  *len = 4;
  return (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
         (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

size_t strop__tx_utf8_put(uint32_t cp, char out[4]) {
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

/* Unicode's table 3-7 of well-formed byte sequences: the valid range of the second byte after
 * each lead byte; later bytes are 80..BF. An incomplete sequence is one invalid unit (its
 * "maximal subpart"), as Python's and Rust's lossy decoders count them. */
size_t strop__tx_utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
  unsigned char c = s[0];
  *bad = 1;
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t k = 1;
  for (; k < len; k++) {
    if (k >= n) break;
    unsigned char b = s[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  if (k == len) return len;
  *bad = k;
  return 0;
}

int strop__tx_utf8_check(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, bad;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = strop__tx_utf8_valid(s + i, n - i, &bad);
    if (!k) return 0;
    i += k;
  }
  return 1;
}

/* ---- character classes ---- */
int strop__tx_is_space(uint32_t cp) {
  /* Unicode's White_Space property (PropList.txt), which Rust's char::is_whitespace tests */
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return 0;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int strop__tx_is_control(uint32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return 0;
  if (cp < 0x20 || cp == 0x7F) return 1;
  if (cp < 0x80) return 0;
  switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: return 1;
    default: return 0;
  }
}

int strop__tx_is_punct(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
  int c = utf8proc_category((utf8proc_int32_t)cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

int strop__tx_is_cjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

int strop__tx_is_numeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  int c = utf8proc_category((utf8proc_int32_t)cp);
  return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

int strop__tx_is_word(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  if (cp == 0x200C || cp == 0x200D) return 1;
  int c = utf8proc_category((utf8proc_int32_t)cp);
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ND) || c == UTF8PROC_CATEGORY_NL ||
         c == UTF8PROC_CATEGORY_PC;
}

int strop__tx_is_mn(uint32_t cp) {
  return cp >= 0x300 && utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_MN;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the 68 others get
 * U+0100 onwards in byte order. */
uint32_t strop__tx_byte_char(uint8_t b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
  if (b <= 32) return 256u + b;
  if (b >= 127 && b <= 160) return 256u + 33u + (b - 127u);
  return 256u + 33u + 34u; /* 173 */
}

int strop__tx_char_byte(uint32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
    return (int)cp;
  if (cp >= 256 && cp <= 288) return (int)(cp - 256);
  if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
  if (cp == 323) return 173;
  return -1;
}

/* ---- vocabulary ---- */
void strop__tx_vocab_free(tx_vocab *v) {
  strop__free(v->blob);
  strop__free(v->off);
  strop__free(v->len);
  strop__free(v->slot);
  memset(v, 0, sizeof *v);
}

int32_t strop__tx_vocab_find(const tx_vocab *v, const char *s, size_t n) {
  if (!v->nslot) return -1;
  size_t m = v->nslot - 1, i = (size_t)strop__tx_hash(s, n) & m;
  for (;;) {
    int32_t id = v->slot[i];
    if (id < 0) return -1;
    if (v->len[id] == n && !memcmp(v->blob + v->off[id], s, n)) return id;
    i = (i + 1) & m;
  }
}

static strop_status vocab_rehash(tx_vocab *v, size_t nslot) {
  int32_t *slot = strop__malloc(nslot * sizeof *slot);
  if (!slot) return STROP__NOMEM("strop__tx_vocab_put");
  memset(slot, 0xFF, nslot * sizeof *slot);
  for (int32_t id = 0; id < v->n; id++) {
    if (v->len[id] == TX_NONE) continue;
    size_t i = (size_t)strop__tx_hash(v->blob + v->off[id], v->len[id]) & (nslot - 1);
    while (slot[i] >= 0) i = (i + 1) & (nslot - 1);
    slot[i] = id;
  }
  strop__free(v->slot);
  v->slot = slot;
  v->nslot = nslot;
  return STROP_OK;
}

strop_status strop__tx_vocab_reserve(tx_vocab *v, size_t count) {
  size_t ns = v->nslot ? v->nslot : 64;
  while (ns < 2 * count && ns < (size_t)1 << 30) ns *= 2;
  return ns > v->nslot ? vocab_rehash(v, ns) : STROP_OK;
}

strop_status strop__tx_vocab_put(tx_vocab *v, int32_t id, const char *s, size_t n) {
  if (id < 0 || id >= TX_MAX_IDS || n >= TX_MAX_TOKEN_BYTES ||
      (id < v->n && v->len[id] != TX_NONE))
    return strop__err(STROP_E_INTERNAL, "strop__tx_vocab_put: bad id %d or length %zu", id, n);
  if ((size_t)id >= v->idcap) {
    size_t cap = v->idcap, cap2 = v->idcap;
    if (strop__tx_reserve((void **)&v->off, &cap, (size_t)id + 1, sizeof *v->off) ||
        strop__tx_reserve((void **)&v->len, &cap2, (size_t)id + 1, sizeof *v->len))
      return STROP__NOMEM("strop__tx_vocab_put");
    /* both arrays now hold at least id + 1; keep the smaller capacity as the common one */
    v->idcap = cap < cap2 ? cap : cap2;
  }
  for (int32_t i = v->n; i <= id; i++) v->len[i] = TX_NONE;
  if (id >= v->n) v->n = id + 1;
  if (v->blen + n + 1 > UINT32_MAX) return STROP__NOMEM("strop__tx_vocab_put");
  if (strop__tx_reserve((void **)&v->blob, &v->bcap, v->blen + n + 1, 1))
    return STROP__NOMEM("strop__tx_vocab_put");
  if ((size_t)(v->count + 1) * 2 > v->nslot) {
    strop_status st = vocab_rehash(v, v->nslot ? v->nslot * 2 : 64);
    if (st) return st;
  }
  memcpy(v->blob + v->blen, s, n);
  v->blob[v->blen + n] = '\0';
  v->off[id] = (uint32_t)v->blen;
  v->len[id] = (uint32_t)n;
  v->blen += n + 1;
  size_t m = v->nslot - 1, i = (size_t)strop__tx_hash(s, n) & m;
  while (v->slot[i] >= 0) i = (i + 1) & m;
  v->slot[i] = id;
  v->count++;
  return STROP_OK;
}

strop_status strop__tx_vocab_move(tx_vocab *v, int32_t from, int32_t to) {
  size_t n;
  const char *s = strop__tx_vocab_str(v, from, &n);
  if (!s || to < 0 || to >= TX_MAX_IDS || (to < v->n && v->len[to] != TX_NONE))
    return strop__err(STROP_E_INTERNAL, "strop__tx_vocab_move: bad ids %d -> %d", from, to);
  if ((size_t)to >= v->idcap) {
    size_t cap = v->idcap, cap2 = v->idcap;
    if (strop__tx_reserve((void **)&v->off, &cap, (size_t)to + 1, sizeof *v->off) ||
        strop__tx_reserve((void **)&v->len, &cap2, (size_t)to + 1, sizeof *v->len))
      return STROP__NOMEM("strop__tx_vocab_move");
    v->idcap = cap < cap2 ? cap : cap2;
  }
  for (int32_t i = v->n; i <= to; i++) v->len[i] = TX_NONE;
  if (to >= v->n) v->n = to + 1;
  size_t m = v->nslot - 1, i = (size_t)strop__tx_hash(s, n) & m;
  while (v->slot[i] != from) i = (i + 1) & m;
  v->slot[i] = to;
  v->off[to] = v->off[from];
  v->len[to] = v->len[from];
  v->len[from] = TX_NONE;
  return STROP_OK;
}

/* ---- pairs ---- */
void strop__tx_pairs_free(tx_pairs *p) {
  strop__free(p->slot);
  memset(p, 0, sizeof *p);
}

static void pairs_insert(tx_pair *slot, size_t nslot, tx_pair e) {
  size_t m = nslot - 1, i = (size_t)strop__tx_mix64(e.key) & m;
  while (slot[i].key != UINT64_MAX && slot[i].key != e.key) i = (i + 1) & m;
  slot[i] = e;
}

strop_status strop__tx_pairs_put(tx_pairs *p, int32_t a, int32_t b, int32_t rank, int32_t to) {
  if ((p->n + 1) * 2 > p->nslot) {
    size_t ns = p->nslot ? p->nslot * 2 : 1024;
    tx_pair *slot = strop__malloc(ns * sizeof *slot);
    if (!slot) return STROP__NOMEM("strop__tx_pairs_put");
    for (size_t i = 0; i < ns; i++) slot[i].key = UINT64_MAX;
    for (size_t i = 0; i < p->nslot; i++)
      if (p->slot[i].key != UINT64_MAX) pairs_insert(slot, ns, p->slot[i]);
    strop__free(p->slot);
    p->slot = slot;
    p->nslot = ns;
  }
  if (strop__tx_pairs_find(p, a, b)) return STROP_OK; /* the first (best) rank stays */
  pairs_insert(p->slot, p->nslot, (tx_pair){(uint64_t)(uint32_t)a << 32 | (uint32_t)b, rank, to});
  p->n++;
  return STROP_OK;
}

/* ---- trie ---- */
strop_status strop__tx_trie_init(tx_trie *t) {
  memset(t, 0, sizeof *t);
  for (int i = 0; i < 256; i++) t->root[i] = -1;
  if (strop__tx_reserve((void **)&t->val, &t->nodecap, 64, sizeof *t->val))
    return STROP__NOMEM("strop__tx_trie_init");
  t->val[0] = -1;
  t->nnode = 1;
  return STROP_OK;
}

void strop__tx_trie_free(tx_trie *t) {
  strop__free(t->ekey);
  strop__free(t->echild);
  strop__free(t->val);
  memset(t, 0, sizeof *t);
  for (int i = 0; i < 256; i++) t->root[i] = -1;
}

static strop_status trie_grow_edges(tx_trie *t) {
  size_t ns = t->nslot ? t->nslot * 2 : 1024;
  uint64_t *k = strop__calloc(ns, sizeof *k);
  int32_t *c = strop__malloc(ns * sizeof *c);
  if (!k || !c) {
    strop__free(k);
    strop__free(c);
    return STROP__NOMEM("strop__tx_trie_add");
  }
  for (size_t i = 0; i < t->nslot; i++) {
    if (!t->ekey[i]) continue;
    size_t m = ns - 1, j = (size_t)strop__tx_mix64(t->ekey[i]) & m;
    while (k[j]) j = (j + 1) & m;
    k[j] = t->ekey[i];
    c[j] = t->echild[i];
  }
  strop__free(t->ekey);
  strop__free(t->echild);
  t->ekey = k;
  t->echild = c;
  t->nslot = ns;
  return STROP_OK;
}

strop_status strop__tx_trie_add(tx_trie *t, const char *s, size_t n, int32_t value) {
  int32_t node = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t b = (uint8_t)s[i];
    int32_t next = strop__tx_trie_step(t, node, b);
    if (next < 0) {
      if (t->nnode == INT32_MAX) return STROP__NOMEM("strop__tx_trie_add");
      if (strop__tx_reserve((void **)&t->val, &t->nodecap, (size_t)t->nnode + 1, sizeof *t->val))
        return STROP__NOMEM("strop__tx_trie_add");
      if (node != 0 && (t->nedge + 1) * 2 > t->nslot && trie_grow_edges(t))
        return STROP__NOMEM("strop__tx_trie_add");
      next = t->nnode++;
      t->val[next] = -1;
      if (node == 0) {
        t->root[b] = next;
      } else {
        uint64_t k = ((uint64_t)(uint32_t)node << 8 | b) + 1;
        size_t m = t->nslot - 1, j = (size_t)strop__tx_mix64(k) & m;
        while (t->ekey[j]) j = (j + 1) & m;
        t->ekey[j] = k;
        t->echild[j] = next;
        t->nedge++;
      }
    }
    node = next;
  }
  t->val[node] = value;
  return STROP_OK;
}

/* The first occurrence of needle (k > 0 bytes) in s[0..n), or NULL. */
static const char *find_bytes(const char *s, size_t n, const char *needle, size_t k) {
  while (n >= k) {
    const char *hit = memchr(s, needle[0], n - k + 1);
    if (!hit) return NULL;
    if (!memcmp(hit, needle, k)) return hit;
    n -= (size_t)(hit - s) + 1;
    s = hit + 1;
  }
  return NULL;
}

/* ---- patterns ---- */
const char strop__tx_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static void *pcre_alloc(size_t n, void *data) {
  (void)data;
  return strop__malloc(n);
}
static void pcre_release(void *p, void *data) {
  (void)data;
  strop__free(p);
}

strop_status strop__tx_pattern_compile(tx_pattern *p, int kind, const char *src, size_t n,
                                       const char *fn, const char *where) {
  memset(p, 0, sizeof *p);
  p->kind = kind;
  p->src = strop__tx_strndup(src, n);
  if (!p->src) return STROP__NOMEM(fn);
  p->srclen = n;
  if (kind != TX_PAT_REGEX) return STROP_OK;
  pcre2_general_context *g = pcre2_general_context_create(pcre_alloc, pcre_release, NULL);
  pcre2_compile_context *cc = g ? pcre2_compile_context_create(g) : NULL;
  if (!cc) {
    pcre2_general_context_free(g);
    strop__tx_pattern_free(p);
    return STROP__NOMEM(fn);
  }
  int err = 0;
  PCRE2_SIZE erroff = 0;
  p->re = pcre2_compile((PCRE2_SPTR)src, n, PCRE2_UTF | PCRE2_UCP, &err, &erroff, cc);
  pcre2_compile_context_free(cc);
  pcre2_general_context_free(g);
  if (!p->re) {
    strop__tx_pattern_free(p);
    if (err == 121 /* "failed to get memory" */) return STROP__NOMEM(fn);
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    return strop__err(STROP_E_FORMAT, "%s: %s: regex /%.*s/ does not compile at offset %zu: %s",
                      fn, where, (int)(n > 200 ? 200 : n), src, (size_t)erroff, (char *)msg);
  }
  /* without JIT (not built in, or the pattern needs what it lacks) the interpreter runs; only
   * running out of memory is a failure */
  if (pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE) == PCRE2_ERROR_NOMEMORY) {
    strop__tx_pattern_free(p);
    return STROP__NOMEM(fn);
  }
  return STROP_OK;
}

void strop__tx_pattern_free(tx_pattern *p) {
  strop__free(p->src);
  if (p->re) pcre2_code_free(p->re);
  memset(p, 0, sizeof *p);
}

/* ---- work buffers ---- */
void strop__tx_work_free(tx_work *w) {
  strop__free(w->s);
  strop__free(w->o0);
  strop__free(w->o1);
  strop__free(w->p);
  strop__free(w->q);
  strop__free(w->r);
  strop__tx_enc_free(&w->seq[0]);
  strop__tx_enc_free(&w->seq[1]);
  strop__tx_enc_free(&w->out);
  if (w->md) pcre2_match_data_free(w->md);
  if (w->gctx) pcre2_general_context_free(w->gctx);
  for (int i = 0; i < TX_SCRATCH; i++) strop__free(w->scratch[i]);
  memset(w, 0, sizeof *w);
}

void *strop__tx_scratch(tx_work *w, int slot, size_t bytes) {
  if (bytes > w->scratch_cap[slot]) {
    size_t cap = w->scratch_cap[slot] ? w->scratch_cap[slot] : 256;
    while (cap < bytes) {
      if (cap > SIZE_MAX / 2) return NULL;
      cap *= 2;
    }
    void *p = strop__realloc(w->scratch[slot], cap);
    if (!p) return NULL;
    w->scratch[slot] = p;
    w->scratch_cap[slot] = cap;
  }
  return w->scratch[slot];
}

static strop_status work_reserve(tx_work *w, size_t extra) {
  size_t need = w->n + extra;
  if (need < w->n || need > (size_t)UINT32_MAX) return STROP__NOMEM("strop__tx_emit");
  if (need <= w->cap) return STROP_OK;
  size_t c0 = w->cap, c1 = w->cap, c2 = w->cap;
  if (strop__tx_reserve((void **)&w->s, &c0, need, 1) ||
      strop__tx_reserve((void **)&w->o0, &c1, need, sizeof *w->o0) ||
      strop__tx_reserve((void **)&w->o1, &c2, need, sizeof *w->o1))
    return STROP__NOMEM("strop__tx_emit");
  w->cap = c0 < c1 ? (c0 < c2 ? c0 : c2) : (c1 < c2 ? c1 : c2);
  return STROP_OK;
}

strop_status strop__tx_emit(tx_work *w, const char *s, size_t n, uint32_t o0, uint32_t o1) {
  if (w->n + n > w->cap) {
    /* s may point into the work text, which may move */
    size_t inside = (s >= w->s && w->s && s < w->s + w->n) ? (size_t)(s - w->s) + 1 : 0;
    strop_status st = work_reserve(w, n);
    if (st) return st;
    if (inside) s = w->s + inside - 1;
  }
  memcpy(w->s + w->n, s, n);
  for (size_t i = 0; i < n; i++) {
    w->o0[w->n + i] = o0;
    w->o1[w->n + i] = o1;
  }
  w->n += n;
  return STROP_OK;
}

strop_status strop__tx_emit_copy(tx_work *w, size_t from, size_t n) {
  strop_status st = work_reserve(w, n);
  if (st) return st;
  memmove(w->s + w->n, w->s + from, n);
  memmove(w->o0 + w->n, w->o0 + from, n * sizeof *w->o0);
  memmove(w->o1 + w->n, w->o1 + from, n * sizeof *w->o1);
  w->n += n;
  return STROP_OK;
}

strop_status strop__tx_push_piece(tx_work *w, uint32_t off, uint32_t len, int32_t id,
                                  uint32_t flags) {
  if (w->nq == w->qcap && strop__tx_reserve((void **)&w->q, &w->qcap, w->nq + 1, sizeof *w->q))
    return STROP__NOMEM("strop__tx_push_piece");
  w->q[w->nq++] = (tx_piece){off, len, id, flags};
  return STROP_OK;
}

void strop__tx_swap_pieces(tx_work *w) {
  tx_piece *t = w->p;
  size_t c = w->pcap;
  w->p = w->q;
  w->pcap = w->qcap;
  w->np = w->nq;
  w->q = t;
  w->qcap = c;
  w->nq = 0;
}

strop_status strop__tx_materialize(tx_work *w, tx_piece *p) {
  if (!(p->flags & TX_PIECE_BYTES)) return STROP_OK;
  size_t start = w->n;
  strop_status st = work_reserve(w, (size_t)p->len * 2);
  if (st) return st;
  for (uint32_t i = 0; i < p->len; i++) {
    char u[4];
    size_t k = strop__tx_utf8_put(strop__tx_byte_char((uint8_t)w->s[p->off + i]), u);
    uint32_t a = w->o0[p->off + i], b = w->o1[p->off + i];
    for (size_t j = 0; j < k; j++) {
      w->s[w->n] = u[j];
      w->o0[w->n] = a;
      w->o1[w->n] = b;
      w->n++;
    }
  }
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  p->flags &= ~(uint32_t)TX_PIECE_BYTES;
  return STROP_OK;
}

pcre2_match_data *strop__tx_match_data(tx_work *w, const tx_pattern *pat) {
  uint32_t pairs = 0;
  pcre2_pattern_info(pat->re, PCRE2_INFO_CAPTURECOUNT, &pairs);
  pairs += 1;
  if (w->md && pcre2_get_ovector_count(w->md) >= pairs) return w->md;
  if (!w->gctx) {
    w->gctx = pcre2_general_context_create(pcre_alloc, pcre_release, NULL);
    if (!w->gctx) return NULL;
  }
  pcre2_match_data *md = pcre2_match_data_create(pairs < 8 ? 8 : pairs, w->gctx);
  if (!md) return NULL;
  if (w->md) pcre2_match_data_free(w->md);
  w->md = md;
  return md;
}

static strop_status push_range(tx_work *w, size_t a, size_t b, int m) {
  if (w->nr == w->rcap && strop__tx_reserve((void **)&w->r, &w->rcap, w->nr + 1, sizeof *w->r))
    return STROP__NOMEM("strop__tx_find_matches");
  w->r[w->nr++] = (tx_range){(uint32_t)a, (uint32_t)b, m};
  return STROP_OK;
}

strop_status strop__tx_find_matches(tx_work *w, const tx_pattern *pat, const char *s, size_t n) {
  w->nr = 0;
  if (!n) return push_range(w, 0, 0, 0);
  size_t prev = 0;
  if (pat->kind == TX_PAT_REGEX) {
    pcre2_match_data *md = strop__tx_match_data(w, pat);
    if (!md) return STROP__NOMEM("strop__tx_find_matches");
    size_t at = 0;
    while (at < n) {
      int rc = pcre2_match(pat->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc == PCRE2_ERROR_NOMEMORY) return STROP__NOMEM("strop__tx_find_matches");
      if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return strop__err(STROP_E_INVALID_ARG, "regex /%s/ failed on the text: %s", pat->src,
                          (char *)msg);
      }
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
      size_t a = ov[0], b = ov[1];
      if (b == a) {
        /* an empty match splits nothing: step over one character */
        size_t k = 1;
        while (at + k < n && ((unsigned char)s[at + k] & 0xC0) == 0x80) k++;
        at = (a > at ? a : at) + k;
        continue;
      }
      if (prev < a && push_range(w, prev, a, 0)) return STROP__NOMEM("strop__tx_find_matches");
      if (push_range(w, a, b, 1)) return STROP__NOMEM("strop__tx_find_matches");
      prev = at = b;
    }
  } else if (pat->srclen) {
    size_t at = 0;
    while (at + pat->srclen <= n) {
      const char *hit = find_bytes(s + at, n - at, pat->src, pat->srclen);
      if (!hit) break;
      size_t a = (size_t)(hit - s), b = a + pat->srclen;
      if (prev < a && push_range(w, prev, a, 0)) return STROP__NOMEM("strop__tx_find_matches");
      if (push_range(w, a, b, 1)) return STROP__NOMEM("strop__tx_find_matches");
      prev = at = b;
    }
  }
  if (prev < n && push_range(w, prev, n, 0)) return STROP__NOMEM("strop__tx_find_matches");
  return STROP_OK;
}

/* ---- encodings ---- */
strop_status strop__tx_enc_push(tx_enc *e, int32_t id, uint32_t o0, uint32_t o1, int type,
                                int special) {
  if (e->n == e->cap) {
    size_t c[5] = {e->cap, e->cap, e->cap, e->cap, e->cap};
    size_t need = e->n + 1;
    if (strop__tx_reserve((void **)&e->id, &c[0], need, sizeof *e->id) ||
        strop__tx_reserve((void **)&e->o0, &c[1], need, sizeof *e->o0) ||
        strop__tx_reserve((void **)&e->o1, &c[2], need, sizeof *e->o1) ||
        strop__tx_reserve((void **)&e->type, &c[3], need, 1) ||
        strop__tx_reserve((void **)&e->special, &c[4], need, 1))
      return STROP__NOMEM("strop__tx_enc_push");
    size_t m = c[0];
    for (int i = 1; i < 5; i++) m = c[i] < m ? c[i] : m;
    e->cap = m;
  }
  e->id[e->n] = id;
  e->o0[e->n] = o0;
  e->o1[e->n] = o1;
  e->type[e->n] = (uint8_t)type;
  e->special[e->n] = (uint8_t)special;
  e->n++;
  return STROP_OK;
}

void strop__tx_enc_free(tx_enc *e) {
  strop__free(e->id);
  strop__free(e->o0);
  strop__free(e->o1);
  strop__free(e->type);
  strop__free(e->special);
  memset(e, 0, sizeof *e);
}

/* ---- the piece cache ---- */
void strop__tx_cache_free(tx_cache *c) {
  strop__free(c->slot);
  strop__free(c->kpool);
  strop__free(c->vpool);
  memset(c, 0, sizeof *c);
}

void strop__tx_cache_clear(tx_cache *c) {
  if (c->slot) memset(c->slot, 0, c->nslot * sizeof *c->slot);
  c->n = c->kn = c->vn = 0;
}
