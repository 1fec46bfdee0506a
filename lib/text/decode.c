/* SPDX-License-Identifier: MIT */
/* strop — decoders: ids back to text through the tokenizer's chain (GPT-2's byte map,
 * Metaspace, WordPiece's ##, byte fallback, fuse, strip, replace) or SentencePiece's rules. */
#include <string.h>

#include "text/text_impl.h"

void strop__tx_dec_free(tx_dec *d) {
  strop__free(d->a);
  strop__tx_pattern_free(&d->pat);
  memset(d, 0, sizeof *d);
}

/* A list of strings in one pool. */
typedef struct slist {
  char *pool;
  size_t n, cap;
  size_t *off, *len;
  size_t count, lcap;
} slist;

static void sl_free(slist *l) {
  strop__free(l->pool);
  strop__free(l->off);
  strop__free(l->len);
  memset(l, 0, sizeof *l);
}

/* Starts a new string (the previous one is done). */
static strop_status sl_begin(slist *l) {
  if (l->count == l->lcap) {
    size_t c1 = l->lcap, c2 = l->lcap;
    if (strop__tx_reserve((void **)&l->off, &c1, l->count + 1, sizeof *l->off) ||
        strop__tx_reserve((void **)&l->len, &c2, l->count + 1, sizeof *l->len))
      return STROP__NOMEM("strop_tokenizer_decode");
    l->lcap = c1 < c2 ? c1 : c2;
  }
  l->off[l->count] = l->n;
  l->len[l->count] = 0;
  l->count++;
  return STROP_OK;
}

/* Appends to the current string. */
static strop_status sl_put(slist *l, const char *s, size_t n) {
  if (strop__tx_reserve((void **)&l->pool, &l->cap, l->n + n + 1, 1))
    return STROP__NOMEM("strop_tokenizer_decode");
  if (n) memcpy(l->pool + l->n, s, n);
  l->n += n;
  l->len[l->count - 1] += n;
  return STROP_OK;
}

static strop_status sl_add(slist *l, const char *s, size_t n) {
  strop_status st = sl_begin(l);
  return st ? st : sl_put(l, s, n);
}

#define STR(l, i) ((l)->pool + (l)->off[i])

/* Appends bytes as UTF-8, each maximal invalid subsequence as U+FFFD (lossy, as Rust's
 * from_utf8_lossy); per_byte: each invalid byte alone (SentencePiece's rule). */
static strop_status put_lossy(slist *l, const unsigned char *b, size_t n, int per_byte) {
  size_t i = 0, bad;
  while (i < n) {
    size_t k = b[i] < 0x80 ? 1 : strop__tx_utf8_valid(b + i, n - i, &bad);
    strop_status st;
    if (k) {
      st = sl_put(l, (const char *)b + i, k);
      i += k;
    } else {
      st = sl_put(l, "\xEF\xBF\xBD", 3);
      i += per_byte ? 1 : bad;
    }
    if (st) return st;
  }
  return STROP_OK;
}

static int byte_token(const char *s, size_t n) {
  if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Replaces every occurrence of pattern in s with rep, appending to the current string. */
static strop_status put_replaced(tx_work *w, slist *l, const tx_pattern *pat, const char *s,
                                 size_t n, const char *rep, size_t repn) {
  strop_status st = strop__tx_find_matches(w, pat, s, n);
  for (size_t r = 0; r < w->nr && !st; r++) {
    tx_range g = w->r[r];
    st = g.match ? sl_put(l, rep, repn) : sl_put(l, s + g.a, g.b - g.a);
  }
  return st;
}

static const char *WP_CLEANUP[][2] = {{" .", "."},     {" ?", "?"},           {" !", "!"},
                                      {" ,", ","},     {" ' ", "'"},          {" n't", "n't"},
                                      {" 'm", "'m"},   {" do not", " don't"}, {" 's", "'s"},
                                      {" 've", "'ve"}, {" 're", "'re"}};

/* Hugging Face's WordPiece cleanup: each replacement over the whole string in turn. */
static strop_status wp_cleanup(slist *l, const char *s, size_t n) {
  char *a = strop__tx_strndup(s, n);
  if (!a) return STROP__NOMEM("strop_tokenizer_decode");
  size_t an = n;
  for (size_t r = 0; r < sizeof WP_CLEANUP / sizeof WP_CLEANUP[0]; r++) {
    const char *from = WP_CLEANUP[r][0], *to = WP_CLEANUP[r][1];
    size_t fn = strlen(from), tn = strlen(to);
    char *b = strop__malloc(an + 1);
    if (!b) {
      strop__free(a);
      return STROP__NOMEM("strop_tokenizer_decode");
    }
    size_t bn = 0;
    for (size_t i = 0; i < an;) {
      if (i + fn <= an && !memcmp(a + i, from, fn)) {
        memcpy(b + bn, to, tn); /* never longer than the text it replaces */
        bn += tn;
        i += fn;
      } else {
        b[bn++] = a[i++];
      }
    }
    strop__free(a);
    a = b;
    an = bn;
  }
  strop_status st = sl_put(l, a, an);
  strop__free(a);
  return st;
}

/* One decoder over the list in, giving the list out. */
static strop_status decode_step(strop_tokenizer *tok, const tx_dec *d, const slist *in,
                                slist *out) {
  strop_status st = STROP_OK;
  size_t k;
  switch (d->kind) {
    case TX_D_BYTELEVEL: {
      unsigned char *buf = strop__malloc(in->n + 1);
      if (!buf) return STROP__NOMEM("strop_tokenizer_decode");
      size_t bn = 0;
      for (size_t i = 0; i < in->count; i++) {
        const char *s = STR(in, i);
        size_t n = in->len[i], at = 0, start = bn;
        int mapped = 1;
        while (at < n) {
          int b = strop__tx_char_byte(strop__tx_utf8_get(s + at, &k));
          if (b < 0) {
            mapped = 0;
            break;
          }
          buf[bn++] = (unsigned char)b;
          at += k;
        }
        if (!mapped) { /* a token outside the byte map stands for its own bytes */
          bn = start;
          memcpy(buf + bn, s, n);
          bn += n;
        }
      }
      st = sl_begin(out);
      if (!st) st = put_lossy(out, buf, bn, 0);
      strop__free(buf);
      return st;
    }
    case TX_D_METASPACE:
      for (size_t i = 0; i < in->count && !st; i++) {
        const char *s = STR(in, i);
        size_t n = in->len[i];
        st = sl_begin(out);
        for (size_t at = 0; at < n && !st; at += k) {
          uint32_t cp = strop__tx_utf8_get(s + at, &k);
          if (cp == d->cp) {
            if (!(i == 0 && d->prepend_scheme != TX_PREPEND_NEVER)) st = sl_put(out, " ", 1);
          } else {
            st = sl_put(out, s + at, k);
          }
        }
      }
      return st;
    case TX_D_WORDPIECE:
      for (size_t i = 0; i < in->count && !st; i++) {
        const char *s = STR(in, i);
        size_t n = in->len[i];
        slist one = {0};
        st = sl_begin(&one);
        if (!st && i != 0) {
          if (n >= d->an && !memcmp(s, d->a, d->an)) {
            s += d->an;
            n -= d->an;
          } else {
            st = sl_put(&one, " ", 1);
          }
        }
        if (!st) st = sl_put(&one, s, n);
        if (!st) st = sl_begin(out);
        if (!st)
          st = d->cleanup ? wp_cleanup(out, one.pool, one.n) : sl_put(out, one.pool, one.n);
        sl_free(&one);
      }
      return st;
    case TX_D_BYTEFALLBACK: {
      unsigned char *bytes = strop__malloc(in->count + 1);
      if (!bytes) return STROP__NOMEM("strop_tokenizer_decode");
      size_t nb = 0;
      for (size_t i = 0; i <= in->count && !st; i++) {
        int b = i < in->count ? byte_token(STR(in, i), in->len[i]) : -1;
        if (b >= 0) {
          bytes[nb++] = (unsigned char)b;
          continue;
        }
        if (nb) {
          if (strop__tx_utf8_check((const char *)bytes, nb)) {
            st = sl_add(out, (const char *)bytes, nb);
          } else {
            for (size_t j = 0; j < nb && !st; j++) st = sl_add(out, "\xEF\xBF\xBD", 3);
          }
          nb = 0;
        }
        if (!st && i < in->count) st = sl_add(out, STR(in, i), in->len[i]);
      }
      strop__free(bytes);
      return st;
    }
    case TX_D_FUSE:
      st = sl_begin(out);
      if (!st) st = sl_put(out, in->pool, 0);
      for (size_t i = 0; i < in->count && !st; i++) st = sl_put(out, STR(in, i), in->len[i]);
      return st;
    case TX_D_STRIP:
      for (size_t i = 0; i < in->count && !st; i++) {
        const char *s = STR(in, i);
        size_t n = in->len[i], a = 0, b = n;
        for (int c = 0; c < d->start && a < n; c++) {
          if (strop__tx_utf8_get(s + a, &k) != d->cp) break;
          a += k;
        }
        for (int c = 0; c < d->stop && b > a; c++) {
          size_t e = b - 1;
          while (e > a && ((unsigned char)s[e] & 0xC0) == 0x80) e--;
          if (strop__tx_utf8_get(s + e, &k) != d->cp) break;
          b = e;
        }
        st = sl_add(out, s + a, b - a);
      }
      return st;
    case TX_D_REPLACE:
      for (size_t i = 0; i < in->count && !st; i++) {
        st = sl_begin(out);
        if (!st) st = put_replaced(&tok->w, out, &d->pat, STR(in, i), in->len[i], d->a, d->an);
      }
      return st;
    case TX_D_BPE:
      for (size_t i = 0; i < in->count && !st; i++) {
        st = sl_begin(out);
        tx_pattern pat = {TX_PAT_STRING, d->a, d->an, NULL};
        const char *rep = i + 1 == in->count ? "" : " ";
        if (!st) st = put_replaced(&tok->w, out, &pat, STR(in, i), in->len[i], rep, strlen(rep));
      }
      return st;
    default:
      return strop__err(STROP_E_INTERNAL, "strop_tokenizer_decode: decoder kind %d", d->kind);
  }
}

/* SentencePiece's DecodeIds: control ids vanish, <unk> shows as its surface, byte pieces
 * join into UTF-8 (an invalid byte is U+FFFD), U+2581 is a space and the first piece's leading
 * one is dropped. */
static int64_t decode_spm(strop_tokenizer *tok, const tx_dec *d, const int64_t *ids, int64_t n,
                          int skip_special, slist *out) {
  const tx_model *m = &tok->model;
  strop_status st = sl_begin(out);
  unsigned char *bytes = strop__malloc((size_t)n + 1);
  if (!bytes) st = STROP__NOMEM("strop_tokenizer_decode");
  size_t nb = 0;
  int bos_ws = 1, bos_seen = 0;
  for (int64_t i = 0; i <= n && !st; i++) {
    int32_t id = i < n ? (int32_t)ids[i] : -1;
    /* a token added to the model: its text as it is (special ones left out on request) */
    if (id >= 0 && tok->added_idx[id] >= 0 && id >= m->vocab.n) {
      const tx_added *a = &tok->added[tok->added_idx[id]];
      if (nb) {
        st = put_lossy(out, bytes, nb, 1);
        nb = 0;
      }
      if (!st && !(skip_special && (a->flags & STROP_TOKEN_SPECIAL)))
        st = sl_put(out, a->content, a->len);
      continue;
    }
    int t = id >= 0 ? m->ptype[id] : 0;
    if (id >= 0 && t == TX_SP_BYTE) {
      size_t k = 0;
      const char *s = strop__tx_vocab_str(&m->vocab, id, &k);
      bytes[nb++] = (unsigned char)byte_token(s, k);
      continue;
    }
    if (nb) {
      st = put_lossy(out, bytes, nb, 1);
      nb = 0;
    }
    if (id < 0 || st) break;
    if (bos_seen || out->n) bos_ws = 0;
    bos_seen = 0;
    if (t == TX_SP_CONTROL) continue;
    size_t k = 0;
    const char *s = strop__tx_vocab_str(&m->vocab, id, &k);
    if (t == TX_SP_UNKNOWN) {
      if (!skip_special) st = sl_put(out, d->a, d->an);
      continue;
    }
    if (bos_ws && (d->start || d->stop) && k >= 3 && !memcmp(s, "\xe2\x96\x81", 3)) {
      s += 3;
      k -= 3;
      bos_seen = !d->stop; /* with remove_extra_whitespaces every leading one goes */
    }
    for (size_t a = 0; a < k && !st;) {
      if (a + 3 <= k && !memcmp(s + a, "\xe2\x96\x81", 3)) {
        st = sl_put(out, " ", 1);
        a += 3;
      } else {
        st = sl_put(out, s + a, 1);
        a++;
      }
    }
  }
  strop__free(bytes);
  return st;
}

const char *strop__tx_id_str(const strop_tokenizer *tok, int32_t id, size_t *n) {
  if (id >= 0 && id < tok->size && tok->added_idx && tok->added_idx[id] >= 0) {
    const tx_added *a = &tok->added[tok->added_idx[id]];
    *n = a->len;
    return a->content;
  }
  return strop__tx_vocab_str(&tok->model.vocab, id, n);
}

int64_t strop__tx_decode(strop_tokenizer *tok, const int64_t *ids, int64_t n, int skip_special,
                         char *buf, size_t cap, const char *fn) {
  for (int64_t i = 0; i < n; i++) {
    size_t k;
    if (ids[i] < 0 || ids[i] >= tok->size || !strop__tx_id_str(tok, (int32_t)ids[i], &k)) {
      strop__err(STROP_E_INVALID_ARG,
                 "%s: ids[%lld] = %lld is not an id of this tokenizer "
                 "(0 .. %lld)",
                 fn, (long long)i, (long long)ids[i], (long long)tok->size - 1);
      return -1;
    }
  }
  slist a = {0}, b = {0};
  strop_status st = STROP_OK;
  if (tok->ndec == 1 && tok->dec[0].kind == TX_D_SPM) {
    st = decode_spm(tok, &tok->dec[0], ids, n, skip_special, &a);
  } else {
    for (int64_t i = 0; i < n && !st; i++) {
      int32_t id = (int32_t)ids[i];
      if (skip_special && tok->added_idx[id] >= 0 &&
          (tok->added[tok->added_idx[id]].flags & STROP_TOKEN_SPECIAL))
        continue;
      size_t k;
      const char *s = strop__tx_id_str(tok, id, &k);
      st = sl_add(&a, s, k);
    }
    if (!tok->ndec) {
      slist j = {0};
      if (!st) st = sl_begin(&j);
      if (!st) st = sl_put(&j, "", 0);
      for (size_t i = 0; i < a.count && !st; i++) {
        if (i) st = sl_put(&j, " ", 1);
        if (!st) st = sl_put(&j, STR(&a, i), a.len[i]);
      }
      sl_free(&a);
      a = j;
    }
    for (int d = 0; d < tok->ndec && !st; d++) {
      st = decode_step(tok, &tok->dec[d], &a, &b);
      sl_free(&a);
      a = b;
      memset(&b, 0, sizeof b);
    }
  }
  int64_t len = -1;
  if (!st) {
    /* the strings of the last list, joined */
    size_t total = 0;
    for (size_t i = 0; i < a.count; i++) total += a.len[i];
    if (cap) {
      size_t w = 0;
      for (size_t i = 0; i < a.count && w + 1 < cap; i++) {
        size_t k = a.len[i] < cap - 1 - w ? a.len[i] : cap - 1 - w;
        if (k) memcpy(buf + w, STR(&a, i), k); /* an empty piece may have no storage */
        w += k;
      }
      buf[w] = '\0';
    }
    len = (int64_t)total;
  }
  sl_free(&a);
  sl_free(&b);
  return len;
}
