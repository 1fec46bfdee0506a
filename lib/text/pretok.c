/* SPDX-License-Identifier: MIT */
/* strop — pre-tokenizers: they cut each piece of normalized text into the words the model sees,
 * with Hugging Face's split behaviours (removed, isolated, merged with the previous or next,
 * contiguous). Matches come from a regex, a literal or a character class. */
#include <string.h>

#include "text/text_impl.h"

const char *strop__tx_behavior_name(int b) {
  switch (b) {
    case TX_B_REMOVED: return "Removed";
    case TX_B_ISOLATED: return "Isolated";
    case TX_B_MERGED_PREV: return "MergedWithPrevious";
    case TX_B_MERGED_NEXT: return "MergedWithNext";
    default: return "Contiguous";
  }
}

static strop_status push_range(tx_work *w, uint32_t a, uint32_t b, int m) {
  if (w->nr == w->rcap && strop__tx_reserve((void **)&w->r, &w->rcap, w->nr + 1, sizeof *w->r))
    return STROP__NOMEM("strop__tx_pretokenize");
  w->r[w->nr++] = (tx_range){a, b, m};
  return STROP_OK;
}

typedef int (*char_pred)(uint32_t cp, const void *ctx);

/* Each character the predicate accepts is a match of its own (Hugging Face's char patterns). */
static strop_status char_matches(tx_work *w, const tx_piece *p, char_pred pred, const void *ctx) {
  w->nr = 0;
  if (!p->len) return push_range(w, 0, 0, 0);
  uint32_t last = 0;
  for (uint32_t i = 0; i < p->len;) {
    size_t k;
    uint32_t cp = strop__tx_utf8_get(w->s + p->off + i, &k);
    if (pred(cp, ctx)) {
      if (last < i && push_range(w, last, i, 0)) return STROP__NOMEM("strop__tx_pretokenize");
      if (push_range(w, i, i + (uint32_t)k, 1)) return STROP__NOMEM("strop__tx_pretokenize");
      last = i + (uint32_t)k;
    }
    i += (uint32_t)k;
  }
  if (last < p->len) return push_range(w, last, p->len, 0);
  return STROP_OK;
}

/* Applies a split behaviour to w->r (ranges of piece p) and pushes the pieces it keeps. */
static strop_status split_ranges(tx_work *w, const tx_piece *p, int behavior, int invert) {
  if (invert)
    for (size_t i = 0; i < w->nr; i++) w->r[i].match = !w->r[i].match;
  size_t n = 0;
  tx_range *r = w->r;
  switch (behavior) {
    case TX_B_REMOVED:
      for (size_t i = 0; i < w->nr; i++)
        if (!r[i].match) r[n++] = r[i];
      break;
    case TX_B_ISOLATED: n = w->nr; break;
    case TX_B_CONTIGUOUS: {
      int prev = 0;
      for (size_t i = 0; i < w->nr; i++) {
        int m = r[i].match;
        if (m == prev && n > 0) r[n - 1].b = r[i].b;
        else r[n++] = r[i];
        prev = m;
      }
      break;
    }
    case TX_B_MERGED_PREV: {
      int prev = 0;
      for (size_t i = 0; i < w->nr; i++) {
        int m = r[i].match;
        if (m && !prev && n > 0) r[n - 1].b = r[i].b;
        else r[n++] = r[i];
        prev = m;
      }
      break;
    }
    case TX_B_MERGED_NEXT: {
      /* right to left, then the kept ranges are in reverse order at the end of r */
      int prev = 0;
      size_t top = w->nr;
      for (size_t i = w->nr; i-- > 0;) {
        int m = r[i].match;
        tx_range g = r[i];
        if (m && !prev && top < w->nr) r[top].a = g.a;
        else r[--top] = g;
        prev = m;
      }
      for (size_t i = top; i < w->nr; i++) r[n++] = r[i];
      break;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (r[i].b <= r[i].a) continue;
    strop_status st = strop__tx_push_piece(w, p->off + r[i].a, r[i].b - r[i].a, -1, p->flags);
    if (st) return st;
  }
  return STROP_OK;
}

/* ---- character classes used as patterns ---- */
static int pred_space(uint32_t cp, const void *ctx) {
  (void)ctx;
  return strop__tx_is_space(cp);
}
static int pred_punct(uint32_t cp, const void *ctx) {
  (void)ctx;
  return strop__tx_is_punct(cp);
}
static int pred_numeric(uint32_t cp, const void *ctx) {
  (void)ctx;
  return strop__tx_is_numeric(cp);
}
static int pred_char(uint32_t cp, const void *ctx) { return cp == *(const uint32_t *)ctx; }

/* Whitespace: the words of `\w+|[^\w\s]+`, the rest dropped. */
static strop_status whitespace(tx_work *w, const tx_piece *p) {
  uint32_t i = 0;
  while (i < p->len) {
    size_t k;
    uint32_t cp = strop__tx_utf8_get(w->s + p->off + i, &k);
    int cls = strop__tx_is_word(cp) ? 1 : strop__tx_is_space(cp) ? 0 : 2;
    uint32_t j = i + (uint32_t)k;
    if (cls) {
      while (j < p->len) {
        uint32_t c2 = strop__tx_utf8_get(w->s + p->off + j, &k);
        int cl2 = strop__tx_is_word(c2) ? 1 : strop__tx_is_space(c2) ? 0 : 2;
        if (cl2 != cls) break;
        j += (uint32_t)k;
      }
      strop_status st = strop__tx_push_piece(w, p->off + i, j - i, -1, p->flags);
      if (st) return st;
    }
    i = j;
  }
  return STROP_OK;
}

/* BertPreTokenizer: split on whitespace (dropped), then every punctuation character alone. */
static strop_status bert(tx_work *w, const tx_piece *p) {
  uint32_t start = 0, i = 0;
  while (i < p->len) {
    size_t k;
    uint32_t cp = strop__tx_utf8_get(w->s + p->off + i, &k);
    int sp = strop__tx_is_space(cp), pu = !sp && strop__tx_is_punct(cp);
    if (sp || pu) {
      if (start < i) {
        strop_status st = strop__tx_push_piece(w, p->off + start, i - start, -1, p->flags);
        if (st) return st;
      }
      if (pu) {
        strop_status st = strop__tx_push_piece(w, p->off + i, (uint32_t)k, -1, p->flags);
        if (st) return st;
      }
      start = i + (uint32_t)k;
    }
    i += (uint32_t)k;
  }
  if (start < p->len)
    return strop__tx_push_piece(w, p->off + start, p->len - start, -1, p->flags);
  return STROP_OK;
}

/* Metaspace: spaces become the replacement, which is prepended as the scheme says; then the
 * piece is split before each replacement. */
static strop_status metaspace(const tx_pretok *pt, tx_work *w, const tx_piece *pin) {
  tx_piece p = *pin;
  size_t start = w->n;
  int starts = p.len >= pt->repln && !memcmp(w->s + p.off, pt->repl, pt->repln);
  int prepend = pt->prepend_scheme == TX_PREPEND_ALWAYS ||
                (pt->prepend_scheme == TX_PREPEND_FIRST && p.len && w->o0[p.off] == 0);
  if (p.len && w->s[p.off] == ' ') starts = 1; /* the space becomes the replacement below */
  strop_status st = STROP_OK;
  if (prepend && !starts && p.len) {
    size_t k;
    strop__tx_utf8_get(w->s + p.off, &k);
    st = strop__tx_emit(w, pt->repl, pt->repln, w->o0[p.off], w->o1[p.off + k - 1]);
  }
  for (uint32_t i = 0; i < p.len && !st;) {
    if (w->s[p.off + i] == ' ') {
      st = strop__tx_emit(w, pt->repl, pt->repln, w->o0[p.off + i], w->o1[p.off + i]);
      i++;
    } else {
      uint32_t j = i + 1;
      while (j < p.len && w->s[p.off + j] != ' ') j++;
      st = strop__tx_emit_copy(w, p.off + i, j - i);
      i = j;
    }
  }
  if (st) return st;
  p.off = (uint32_t)start;
  p.len = (uint32_t)(w->n - start);
  if (!pt->split) return p.len ? strop__tx_push_piece(w, p.off, p.len, -1, p.flags) : STROP_OK;
  if ((st = char_matches(w, &p, pred_char, &pt->repl_cp))) return st;
  return split_ranges(w, &p, TX_B_MERGED_NEXT, 0);
}

static strop_status bytelevel(const tx_pretok *pt, tx_work *w, const tx_piece *pin) {
  tx_piece p = *pin;
  strop_status st;
  if (pt->add_prefix_space && p.len && w->s[p.off] != ' ') {
    size_t start = w->n, k;
    strop__tx_utf8_get(w->s + p.off, &k);
    st = strop__tx_emit(w, " ", 1, w->o0[p.off], w->o1[p.off + k - 1]);
    if (!st) st = strop__tx_emit_copy(w, p.off, p.len);
    if (st) return st;
    p.off = (uint32_t)start;
    p.len = (uint32_t)(w->n - start);
  }
  p.flags |= TX_PIECE_BYTES;
  if (!pt->use_regex)
    return p.len ? strop__tx_push_piece(w, p.off, p.len, -1, p.flags) : STROP_OK;
  if ((st = strop__tx_find_matches(w, &pt->pat, w->s + p.off, p.len))) return st;
  return split_ranges(w, &p, TX_B_ISOLATED, 0);
}

static strop_status one_piece(const tx_pretok *pt, tx_work *w, const tx_piece *p) {
  strop_status st;
  switch (pt->kind) {
    case TX_P_BYTELEVEL: return bytelevel(pt, w, p);
    case TX_P_SPLIT:
      if ((st = strop__tx_find_matches(w, &pt->pat, w->s + p->off, p->len))) return st;
      return split_ranges(w, p, pt->behavior, pt->invert);
    case TX_P_WHITESPACE: return whitespace(w, p);
    case TX_P_WSSPLIT:
      if ((st = char_matches(w, p, pred_space, NULL))) return st;
      return split_ranges(w, p, TX_B_REMOVED, 0);
    case TX_P_BERT: return bert(w, p);
    case TX_P_METASPACE: return metaspace(pt, w, p);
    case TX_P_DIGITS:
      if ((st = char_matches(w, p, pred_numeric, NULL))) return st;
      return split_ranges(w, p, pt->individual_digits ? TX_B_ISOLATED : TX_B_CONTIGUOUS, 0);
    case TX_P_PUNCT:
      if ((st = char_matches(w, p, pred_punct, NULL))) return st;
      return split_ranges(w, p, pt->behavior, 0);
    case TX_P_SPM_SPLIT: {
      static const uint32_t sym = 0x2581;
      if ((st = char_matches(w, p, pred_char, &sym))) return st;
      return split_ranges(w, p, TX_B_MERGED_NEXT, 0);
    }
    default: return strop__err(STROP_E_INTERNAL, "strop__tx_pretokenize: kind %d", pt->kind);
  }
}

strop_status strop__tx_pretokenize(const tx_pretok *pt, tx_work *w) {
  w->nq = 0;
  for (size_t i = 0; i < w->np; i++) {
    tx_piece p = w->p[i];
    strop_status st;
    if (p.id >= 0) {
      st = strop__tx_push_piece(w, p.off, p.len, p.id, p.flags);
    } else {
      if ((p.flags & TX_PIECE_BYTES) && (st = strop__tx_materialize(w, &p))) return st;
      st = one_piece(pt, w, &p);
    }
    if (st) return st;
  }
  strop__tx_swap_pieces(w);
  return STROP_OK;
}

void strop__tx_pretok_free(tx_pretok *p) {
  strop__tx_pattern_free(&p->pat);
  strop__free(p->repl);
  memset(p, 0, sizeof *p);
}
