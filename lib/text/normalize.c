/* SPDX-License-Identifier: MIT */
/* strop — normalizers: Unicode normal forms (utf8proc), lower-casing, accent stripping, BERT's
 * cleaning, Replace/Prepend/Strip, and SentencePiece's precompiled character map. Every output
 * byte keeps the original byte range it came from, so token offsets point into the input. */
#include <string.h>

#include <utf8proc.h>

#include "text/text_impl.h"

/* ---- per-character transforms ---- */

/* The original range of the character at piece byte i (k bytes). */
static inline void char_range(const tx_work *w, uint32_t at, size_t k, uint32_t *a, uint32_t *b) {
  *a = w->o0[at];
  *b = w->o1[at + k - 1];
}

static strop_status emit_cp(tx_work *w, uint32_t cp, uint32_t a, uint32_t b) {
  char u[4];
  size_t k = strop__tx_utf8_put(cp, u);
  return strop__tx_emit(w, u, k, a, b);
}

static void lower_cp(uint32_t cp, uint32_t out[2], int *nout) {
  if (cp < 0x80) {
    out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    *nout = 1;
    return;
  }
  if (cp == 0x130) { /* İ: the one multi-character lower case of SpecialCasing.txt */
    out[0] = 'i';
    out[1] = 0x307;
    *nout = 2;
    return;
  }
  out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
  *nout = 1;
}

enum { CT_LOWER, CT_STRIP_MARKS, CT_BERT_CLEAN, CT_CHINESE, CT_STRIP_MN };

/* One pass of a per-character transform over the piece. */
static strop_status per_char(tx_work *w, tx_piece *p, int what) {
  size_t start = w->n;
  uint32_t off = p->off;
  for (uint32_t i = 0; i < p->len;) {
    size_t k;
    uint32_t cp = strop__tx_utf8_get(w->s + off + i, &k), a, b;
    char_range(w, off + i, k, &a, &b);
    strop_status st = STROP_OK;
    switch (what) {
      case CT_LOWER: {
        if (cp < 0x80) {
          char c = (char)((cp >= 'A' && cp <= 'Z') ? cp + 32 : cp);
          st = strop__tx_emit(w, &c, 1, a, b);
          break;
        }
        uint32_t out[2];
        int n;
        lower_cp(cp, out, &n);
        for (int j = 0; j < n && !st; j++) st = emit_cp(w, out[j], a, b);
        break;
      }
      case CT_STRIP_MARKS: { /* StripAccents: every combining mark (category M) */
        int c = cp < 0x300 ? 0 : utf8proc_category((utf8proc_int32_t)cp);
        if (c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME)
          st = strop__tx_emit_copy(w, off + i, k);
        break;
      }
      case CT_STRIP_MN:
        if (!strop__tx_is_mn(cp)) st = strop__tx_emit_copy(w, off + i, k);
        break;
      case CT_BERT_CLEAN:
        if (cp == 0 || cp == 0xFFFD || strop__tx_is_control(cp)) break;
        if (strop__tx_is_space(cp)) st = strop__tx_emit(w, " ", 1, a, b);
        else st = strop__tx_emit_copy(w, off + i, k);
        break;
      case CT_CHINESE:
        if (strop__tx_is_cjk(cp)) {
          st = strop__tx_emit(w, " ", 1, a, b);
          if (!st) st = strop__tx_emit_copy(w, off + i, k);
          if (!st) st = strop__tx_emit(w, " ", 1, a, b);
        } else {
          st = strop__tx_emit_copy(w, off + i, k);
        }
        break;
    }
    if (st) return st;
    i += (uint32_t)k;
  }
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  return STROP_OK;
}

/* ---- Unicode normal forms ---- */

/* Whether nothing before cp can interact with cp or what follows it under normalization:
 * cp (and the first character of its decomposition) is a starter that no composition takes
 * as its second character. Every such second character is a mark, has a non-zero combining
 * class, or is a Hangul vowel or trailing consonant jamo. */
static int nf_starter(uint32_t cp) {
  if (cp < 0x80) return 1;
  if ((cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2)) return 0;
  const utf8proc_property_t *pr = utf8proc_get_property((utf8proc_int32_t)cp);
  if (pr->combining_class != 0) return 0;
  int c = pr->category;
  return c != UTF8PROC_CATEGORY_MN && c != UTF8PROC_CATEGORY_MC && c != UTF8PROC_CATEGORY_ME;
}

static int nf_boundary(uint32_t cp, int compat) {
  if (cp < 0x80) return 1;
  if (!nf_starter(cp)) return 0;
  utf8proc_int32_t d[32];
  int last = 0;
  utf8proc_ssize_t n = utf8proc_decompose_char(
      (utf8proc_int32_t)cp, d, 32, UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0), &last);
  return n < 1 || n > 32 || nf_starter((uint32_t)d[0]);
}

/* Normalizes the piece segment by segment: a segment starts at a boundary character and holds
 * the characters up to the next one, so normalizing segments alone equals normalizing the
 * whole text, and each segment's output maps to the segment's original range. */
static strop_status norm_unicode(tx_work *w, tx_piece *p, int form) {
  int compat = form == TX_N_NFKC || form == TX_N_NFKD;
  int compose = form == TX_N_NFC || form == TX_N_NFKC;
  utf8proc_option_t opt = UTF8PROC_STABLE | (compose ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
                          (compat ? UTF8PROC_COMPAT : 0);
  size_t start = w->n;
  uint32_t off = p->off, i = 0;
  while (i < p->len) {
    /* the segment [i, j) */
    uint32_t j = i;
    size_t k;
    strop__tx_utf8_get(w->s + off + j, &k);
    j += (uint32_t)k;
    int ascii = k == 1;
    while (j < p->len) {
      uint32_t cp = strop__tx_utf8_get(w->s + off + j, &k);
      if (nf_boundary(cp, compat)) break;
      ascii = 0;
      j += (uint32_t)k;
    }
    strop_status st;
    if (ascii) {
      st = strop__tx_emit_copy(w, off + i, 1);
    } else {
      uint32_t a = w->o0[off + i], b = w->o1[off + j - 1];
      size_t cap = (size_t)(j - i) * 18 + 8;
      utf8proc_int32_t *buf = strop__tx_scratch(w, 0, cap * sizeof *buf);
      if (!buf) return STROP__NOMEM("strop__tx_normalize");
      utf8proc_ssize_t n = utf8proc_decompose((const utf8proc_uint8_t *)w->s + off + i, j - i,
                                              buf, (utf8proc_ssize_t)cap, opt);
      if (n < 0 || (size_t)n > cap)
        return strop__err(STROP_E_INTERNAL, "strop__tx_normalize: utf8proc: %s",
                          n < 0 ? utf8proc_errmsg(n) : "decomposition too long");
      if (compose) n = utf8proc_normalize_utf32(buf, n, opt);
      if (n < 0)
        return strop__err(STROP_E_INTERNAL, "strop__tx_normalize: utf8proc: %s",
                          utf8proc_errmsg(n));
      st = STROP_OK;
      for (utf8proc_ssize_t t = 0; t < n && !st; t++) st = emit_cp(w, (uint32_t)buf[t], a, b);
    }
    if (st) return st;
    i = j;
  }
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  return STROP_OK;
}

/* ---- Replace, Prepend, Strip ---- */
static strop_status norm_replace(const tx_norm *nm, tx_work *w, tx_piece *p) {
  strop_status st = strop__tx_find_matches(w, &nm->pat, w->s + p->off, p->len);
  if (st) return st;
  size_t start = w->n;
  for (size_t r = 0; r < w->nr; r++) {
    tx_range g = w->r[r];
    if (!g.match) {
      st = strop__tx_emit_copy(w, p->off + g.a, g.b - g.a);
    } else if (nm->strn) {
      st = strop__tx_emit(w, nm->str, nm->strn, w->o0[p->off + g.a], w->o1[p->off + g.b - 1]);
    }
    if (st) return st;
  }
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  return STROP_OK;
}

static strop_status norm_prepend(const tx_norm *nm, tx_work *w, tx_piece *p) {
  if (!p->len) return STROP_OK;
  size_t start = w->n, k;
  strop__tx_utf8_get(w->s + p->off, &k);
  strop_status st = strop__tx_emit(w, nm->str, nm->strn, w->o0[p->off], w->o1[p->off + k - 1]);
  if (!st) st = strop__tx_emit_copy(w, p->off, p->len);
  if (st) return st;
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  return STROP_OK;
}

static void norm_strip(const tx_norm *nm, tx_work *w, tx_piece *p) {
  size_t k;
  if (nm->left) {
    while (p->len) {
      uint32_t cp = strop__tx_utf8_get(w->s + p->off, &k);
      if (!strop__tx_is_space(cp)) break;
      p->off += (uint32_t)k;
      p->len -= (uint32_t)k;
    }
  }
  if (nm->right) {
    while (p->len) {
      uint32_t e = p->len - 1;
      while (e && ((unsigned char)w->s[p->off + e] & 0xC0) == 0x80) e--;
      uint32_t cp = strop__tx_utf8_get(w->s + p->off + e, &k);
      if (!strop__tx_is_space(cp)) break;
      p->len = e;
    }
  }
}

/* ---- SentencePiece's precompiled character map (a Darts double-array trie) ---- */
strop_status strop__tx_charsmap_init(tx_charsmap *m, const uint8_t *blob, size_t n,
                                     const char *fn, const char *where) {
  memset(m, 0, sizeof *m);
  if (n <= 4)
    return strop__err(STROP_E_FORMAT, "%s: %s: precompiled_charsmap of %zu bytes is too short",
                      fn, where, n);
  uint32_t tsize = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                   (uint32_t)blob[3] << 24;
  if ((size_t)tsize >= n - 4 || tsize % 4)
    return strop__err(
        STROP_E_FORMAT,
        "%s: %s: precompiled_charsmap's trie of %u bytes does not fit its %zu bytes", fn, where,
        tsize, n);
  m->blob = strop__malloc(n);
  m->unit_own = strop__malloc(tsize ? tsize : 4);
  if (!m->blob || !m->unit_own) {
    strop__free(m->blob);
    strop__free(m->unit_own);
    memset(m, 0, sizeof *m);
    return STROP__NOMEM(fn);
  }
  memcpy(m->blob, blob, n);
  m->nblob = n;
  m->nunit = tsize / 4;
  for (size_t i = 0; i < m->nunit; i++) {
    const uint8_t *u = blob + 4 + 4 * i;
    m->unit_own[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                     (uint32_t)u[3] << 24;
  }
  m->unit = m->unit_own;
  m->norm = (const char *)m->blob + 4 + tsize;
  m->nnorm = n - 4 - tsize;
  return STROP_OK;
}

static void charsmap_free(tx_charsmap *m) {
  strop__free(m->blob);
  strop__free(m->unit_own);
  memset(m, 0, sizeof *m);
}

/* A rule of the map that is a prefix of s[0..n): the longest among the first 32 (as
 * SentencePiece's normalizer looks), or the shortest (as Hugging Face's Precompiled looks).
 * Returns its length (0: none) and puts its replacement in *rep and *repn. */
static size_t charsmap_match(const tx_charsmap *m, const unsigned char *s, size_t n, int shortest,
                             const char **rep, size_t *repn) {
  if (!m->nunit) return 0;
  const uint32_t *u = m->unit;
  size_t nu = m->nunit, pos = 0, best = 0;
  uint32_t unit = u[0], value = 0;
  int found = 0;
  pos ^= (size_t)((unit >> 10) << ((unit & (1u << 9)) >> 6));
  for (size_t i = 0; i < n; i++) {
    pos ^= s[i];
    if (pos >= nu) break;
    unit = u[pos];
    if ((unit & ((1u << 31) | 0xFFu)) != s[i]) break;
    pos ^= (size_t)((unit >> 10) << ((unit & (1u << 9)) >> 6));
    if ((unit >> 8) & 1) {
      if (pos >= nu) break;
      if (found < 32) {
        best = i + 1;
        value = u[pos] & 0x7FFFFFFFu;
      }
      found++;
      if (shortest) break;
    }
  }
  if (!best || value >= m->nnorm) return 0;
  const char *r = m->norm + value;
  const char *end = memchr(r, '\0', m->nnorm - value);
  *rep = r;
  *repn = end ? (size_t)(end - r) : m->nnorm - value;
  return best;
}

/* Hugging Face's Precompiled: grapheme clusters shorter than 6 bytes are looked up whole,
 * others character by character. */
static strop_status norm_precompiled(const tx_norm *nm, tx_work *w, tx_piece *p) {
  size_t start = w->n;
  uint32_t off = p->off, i = 0;
  while (i < p->len) {
    size_t k;
    uint32_t cp = strop__tx_utf8_get(w->s + off + i, &k);
    uint32_t j = i + (uint32_t)k;
    utf8proc_int32_t state = 0;
    while (j < p->len) {
      uint32_t next = strop__tx_utf8_get(w->s + off + j, &k);
      if (utf8proc_grapheme_break_stateful((utf8proc_int32_t)cp, (utf8proc_int32_t)next, &state))
        break;
      cp = next;
      j += (uint32_t)k;
    }
    const char *rep;
    size_t repn;
    strop_status st = STROP_OK;
    if (j - i < 6 &&
        charsmap_match(&nm->map, (const unsigned char *)w->s + off + i, j - i, 1, &rep, &repn)) {
      st = strop__tx_emit(w, rep, repn, w->o0[off + i], w->o1[off + j - 1]);
    } else {
      for (uint32_t c = i; c < j && !st;) {
        strop__tx_utf8_get(w->s + off + c, &k);
        if (charsmap_match(&nm->map, (const unsigned char *)w->s + off + c, k, 1, &rep, &repn))
          st = strop__tx_emit(w, rep, repn, w->o0[off + c], w->o1[off + c + k - 1]);
        else st = strop__tx_emit_copy(w, off + c, k);
        c += (uint32_t)k;
      }
    }
    if (st) return st;
    i = j;
  }
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  return STROP_OK;
}

/* SentencePiece's Normalizer::Normalize: user-defined symbols pass as they are, the rest goes
 * through the character map by longest prefix; leading, trailing and repeated spaces are
 * dropped (remove_extra_whitespaces), a space is put first (add_dummy_prefix) and spaces are
 * written as U+2581 (escape_whitespaces). */
static const char SPACE_SYM[] = "\xe2\x96\x81";

static size_t spm_prefix(const tx_norm *nm, const tx_work *w, uint32_t at, uint32_t left,
                         const char **rep, size_t *repn) {
  const unsigned char *s = (const unsigned char *)w->s + at;
  if (nm->user) {
    int32_t node = 0;
    size_t best = 0;
    for (uint32_t i = 0; i < left; i++) {
      node = strop__tx_trie_step(nm->user, node, s[i]);
      if (node < 0) break;
      if (nm->user->val[node] >= 0) best = i + 1;
    }
    if (best) {
      *rep = (const char *)s;
      *repn = best;
      return best;
    }
  }
  size_t k = charsmap_match(&nm->map, s, left, 0, rep, repn);
  if (k) return k;
  strop__tx_utf8_get((const char *)s, &k);
  *rep = (const char *)s;
  *repn = k;
  return k;
}

static strop_status norm_spm(const tx_norm *nm, tx_work *w, tx_piece *p) {
  uint32_t off = p->off, len = p->len, i = 0;
  const char *rep;
  size_t repn;
  if (nm->remove_ws) {
    while (i < len) {
      size_t k = spm_prefix(nm, w, off + i, len - i, &rep, &repn);
      if (repn != 1 || rep[0] != ' ') break;
      i += (uint32_t)k;
    }
  }
  size_t start = w->n;
  if (i == len) {
    p->off = (uint32_t)start;
    p->len = 0;
    return STROP_OK;
  }
  uint32_t first = w->o0[off + i], last = w->o1[off + len - 1];
  strop_status st = STROP_OK;
  if (!nm->ws_suffix && nm->add_dummy_prefix)
    st = nm->escape_ws ? strop__tx_emit(w, SPACE_SYM, 3, first, first)
                       : strop__tx_emit(w, " ", 1, first, first);
  int prev_space = nm->remove_ws;
  char local[64];
  while (i < len && !st) {
    size_t k = spm_prefix(nm, w, off + i, len - i, &rep, &repn);
    /* rep may point into the work text, which emitting may move: copy it first */
    char *buf = local;
    if (repn > sizeof local) {
      buf = strop__tx_scratch(w, 1, repn);
      if (!buf) return STROP__NOMEM("strop__tx_normalize");
    }
    memcpy(buf, rep, repn);
    const char *sp = buf;
    if (prev_space)
      while (repn && sp[0] == ' ') {
        sp++;
        repn--;
      }
    uint32_t a = w->o0[off + i], b = w->o1[off + i + (uint32_t)k - 1];
    for (size_t t = 0; t < repn && !st; t++) {
      if (nm->escape_ws && sp[t] == ' ') st = strop__tx_emit(w, SPACE_SYM, 3, a, b);
      else st = strop__tx_emit(w, sp + t, 1, a, b);
    }
    if (repn) prev_space = sp[repn - 1] == ' ';
    i += (uint32_t)k;
    if (!nm->remove_ws) prev_space = 0;
  }
  if (st) return st;
  if (nm->remove_ws) {
    size_t sl = nm->escape_ws ? 3 : 1;
    const char *sym = nm->escape_ws ? SPACE_SYM : " ";
    while (w->n - start >= sl && !memcmp(w->s + w->n - sl, sym, sl)) w->n -= sl;
  }
  if (nm->ws_suffix && nm->add_dummy_prefix)
    st = nm->escape_ws ? strop__tx_emit(w, SPACE_SYM, 3, last, last)
                       : strop__tx_emit(w, " ", 1, last, last);
  if (st) return st;
  p->off = (uint32_t)start;
  p->len = (uint32_t)(w->n - start);
  return STROP_OK;
}

/* ---- dispatch ---- */
strop_status strop__tx_normalize(const tx_norm *nm, tx_work *w, tx_piece *p) {
  switch (nm->kind) {
    case TX_N_NFC:
    case TX_N_NFD:
    case TX_N_NFKC:
    case TX_N_NFKD: return norm_unicode(w, p, nm->kind);
    case TX_N_LOWERCASE: return per_char(w, p, CT_LOWER);
    case TX_N_STRIP_ACCENTS: return per_char(w, p, CT_STRIP_MARKS);
    case TX_N_BERT: {
      strop_status st = STROP_OK;
      if (nm->clean_text) st = per_char(w, p, CT_BERT_CLEAN);
      if (!st && nm->chinese) st = per_char(w, p, CT_CHINESE);
      if (!st && nm->strip_accents) {
        st = norm_unicode(w, p, TX_N_NFD);
        if (!st) st = per_char(w, p, CT_STRIP_MN);
      }
      if (!st && nm->lowercase) st = per_char(w, p, CT_LOWER);
      return st;
    }
    case TX_N_REPLACE: return norm_replace(nm, w, p);
    case TX_N_PREPEND: return norm_prepend(nm, w, p);
    case TX_N_STRIP: norm_strip(nm, w, p); return STROP_OK;
    case TX_N_PRECOMPILED: return norm_precompiled(nm, w, p);
    case TX_N_SPM: return norm_spm(nm, w, p);
    default: return strop__err(STROP_E_INTERNAL, "strop__tx_normalize: kind %d", nm->kind);
  }
}

void strop__tx_norm_free(tx_norm *n) {
  strop__free(n->str);
  strop__tx_pattern_free(&n->pat);
  charsmap_free(&n->map);
  if (n->user) {
    strop__tx_trie_free(n->user);
    strop__free(n->user);
  }
  memset(n, 0, sizeof *n);
}
