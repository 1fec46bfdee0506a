/* SPDX-License-Identifier: MIT */
/* strop — the models that turn one pre-tokenized piece into ids: BPE (Hugging Face's ranked
 * merges, or SentencePiece's scored pieces), WordPiece (greedy longest match), WordLevel, and
 * Unigram (Viterbi over the pieces' log-probabilities), with byte fallback and a piece cache. */
#include <stdio.h>
#include <string.h>

#include "text/text_impl.h"

/* ---- derived tables ---- */
strop_status strop__tx_model_finish(tx_model *m, const char *fn, const char *where) {
  char buf[8];
  m->max_len = 0;
  for (int32_t id = 0; id < m->vocab.n; id++)
    if (m->vocab.len[id] != TX_NONE && m->vocab.len[id] > m->max_len)
      m->max_len = m->vocab.len[id];
  for (int b = 0; b < 256; b++) {
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    m->byte_id[b] = strop__tx_vocab_find(&m->vocab, buf, 6);
    char u[4];
    size_t k = strop__tx_utf8_put(strop__tx_byte_char((uint8_t)b), u);
    m->bytechar_id[b] = strop__tx_vocab_find(&m->vocab, u, k);
  }
  if (m->spm && m->ptype) {
    /* SentencePiece's byte pieces are reserved: only BYTE pieces serve as fallback */
    for (int b = 0; b < 256; b++)
      if (m->byte_id[b] >= 0 && m->ptype[m->byte_id[b]] != TX_SP_BYTE) m->byte_id[b] = -1;
  }
  if (m->kind == TX_M_UNIGRAM) {
    strop_status st = strop__tx_trie_init(&m->trie);
    if (st) return st;
    m->min_score = 1e300;
    m->max_score = m->spm ? 1.17549435e-38 /* FLT_MIN, as SentencePiece starts */ : -1e300;
    for (int32_t id = 0; id < m->vocab.n; id++) {
      size_t n;
      const char *s = strop__tx_vocab_str(&m->vocab, id, &n);
      if (!s) continue;
      double sc = m->spm ? (double)m->score[id] : m->dscore[id];
      if (m->spm) {
        int t = m->ptype[id];
        if (t == TX_SP_NORMAL) {
          if (sc < m->min_score) m->min_score = sc;
          if (sc > m->max_score) m->max_score = sc;
        }
        if (t != TX_SP_NORMAL && t != TX_SP_USER && t != TX_SP_UNUSED) continue;
      } else if (sc < m->min_score) {
        m->min_score = sc;
      }
      if ((st = strop__tx_trie_add(&m->trie, s, n, id))) return st;
    }
    if (m->min_score > 1e299) m->min_score = 0;
  }
  (void)fn;
  (void)where;
  return STROP_OK;
}

void strop__tx_model_free(tx_model *m) {
  strop__tx_vocab_free(&m->vocab);
  strop__free(m->unk_token);
  strop__tx_pairs_free(&m->merges);
  strop__free(m->merge_a);
  strop__free(m->merge_b);
  strop__free(m->prefix);
  strop__free(m->suffix);
  strop__free(m->score);
  strop__free(m->dscore);
  strop__free(m->ptype);
  strop__tx_trie_free(&m->trie);
  memset(m, 0, sizeof *m);
}

/* ---- the piece cache ---- */
#define CACHE_MAX_KEY 256
#define CACHE_MAX_ENTRIES 65536

static uint64_t cache_hash(const char *s, size_t n, uint32_t flags) {
  return strop__tx_hash(s, n) ^ ((uint64_t)flags * 0x9E3779B97F4A7C15ull) ^ 1;
}

static int cache_get(const tx_cache *c, const char *s, size_t n, uint32_t flags,
                     const int32_t **v, size_t *vn) {
  if (!c->nslot || n > CACHE_MAX_KEY) return 0;
  uint64_t h = cache_hash(s, n, flags);
  size_t m = c->nslot - 1, i = (size_t)h & m;
  while (c->slot[i].hash) {
    const tx_centry *e = &c->slot[i];
    if (e->hash == h && e->klen == n && !memcmp(c->kpool + e->koff, s, n)) {
      *v = c->vpool + e->voff;
      *vn = e->vlen;
      return 1;
    }
    i = (i + 1) & m;
  }
  return 0;
}

/* Stores the token triples (id, start, end) of a piece; a full cache starts over. */
static strop_status cache_put(tx_cache *c, const char *s, size_t n, uint32_t flags,
                              const int32_t *v, size_t vn) {
  if (n > CACHE_MAX_KEY) return STROP_OK;
  if (c->n >= CACHE_MAX_ENTRIES) strop__tx_cache_clear(c);
  if (!c->nslot) {
    size_t ns = 2 * CACHE_MAX_ENTRIES;
    c->slot = strop__calloc(ns, sizeof *c->slot);
    if (!c->slot) return STROP__NOMEM("strop__tx_model_tokenize");
    c->nslot = ns;
  }
  if (c->kn + n > UINT32_MAX || c->vn + vn > UINT32_MAX) strop__tx_cache_clear(c);
  if (strop__tx_reserve((void **)&c->kpool, &c->kcap, c->kn + n + 1, 1) ||
      strop__tx_reserve((void **)&c->vpool, &c->vcap, c->vn + vn + 1, sizeof *c->vpool))
    return STROP__NOMEM("strop__tx_model_tokenize");
  uint64_t h = cache_hash(s, n, flags);
  size_t m = c->nslot - 1, i = (size_t)h & m;
  while (c->slot[i].hash) i = (i + 1) & m;
  memcpy(c->kpool + c->kn, s, n);
  memcpy(c->vpool + c->vn, v, vn * sizeof *v);
  c->slot[i] = (tx_centry){h, (uint32_t)c->kn, (uint32_t)n, (uint32_t)c->vn, (uint32_t)vn};
  c->kn += n;
  c->vn += vn;
  c->n++;
  return STROP_OK;
}

/* ---- token lists: triples (id, start, end) in slot 2 of the scratch ---- */
typedef struct toks {
  int32_t *v;
  size_t n, cap;
} toks;

static strop_status tok_add(tx_work *w, toks *t, int32_t id, uint32_t a, uint32_t b) {
  if (3 * (t->n + 1) > t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 96;
    int32_t *v = strop__tx_scratch(w, 2, cap * sizeof *v);
    if (!v) return STROP__NOMEM("strop__tx_model_tokenize");
    t->v = v;
    t->cap = cap;
  }
  t->v[3 * t->n] = id;
  t->v[3 * t->n + 1] = (int32_t)a;
  t->v[3 * t->n + 2] = (int32_t)b;
  t->n++;
  return STROP_OK;
}

/* ---- BPE ---- */
typedef struct bsym {
  int32_t id;
  uint32_t start, end; /* bytes of the piece */
  int32_t prev, next;
  uint8_t frozen, dead;
} bsym;

typedef struct bcand {
  double pri; /* smaller merges first: the rank, or minus the piece's score */
  int32_t left, right;
  int32_t to;
  uint32_t size; /* SentencePiece: the merged piece's bytes */
  int32_t a, b;  /* the symbols' ids when it was found (still valid while equal) */
} bcand;

static int cand_less(const bcand *a, const bcand *b) {
  return a->pri < b->pri || (a->pri == b->pri && a->left < b->left);
}

typedef struct bheap {
  bcand *v;
  size_t n, cap;
} bheap;

static strop_status heap_push(tx_work *w, bheap *h, bcand c) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 64;
    bcand *v = strop__tx_scratch(w, 4, cap * sizeof *v);
    if (!v) return STROP__NOMEM("strop__tx_model_tokenize");
    h->v = v;
    h->cap = cap;
  }
  size_t i = h->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!cand_less(&c, &h->v[p])) break;
    h->v[i] = h->v[p];
    i = p;
  }
  h->v[i] = c;
  return STROP_OK;
}

static bcand heap_pop(bheap *h) {
  bcand top = h->v[0], last = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const bcand *best = &last;
    if (l < h->n && cand_less(&h->v[l], best)) {
      m = l;
      best = &h->v[l];
    }
    if (r < h->n && cand_less(&h->v[r], best)) m = r;
    if (m == i) break;
    h->v[i] = h->v[m];
    i = m;
  }
  if (h->n) h->v[i] = last;
  return top;
}

/* The text of a unit for vocabulary lookups: its bytes, or GPT-2's characters for them. */
static const char *unit_text(const tx_model *m, const char *s, uint32_t start, uint32_t len,
                             int bytes, char *buf, size_t cap, size_t *n, int with_prefix,
                             int with_suffix) {
  size_t k = 0;
  if (with_prefix && m->prefixn <= cap) {
    memcpy(buf, m->prefix, m->prefixn);
    k = m->prefixn;
  }
  if (bytes) {
    for (uint32_t i = 0; i < len && k + 4 <= cap; i++) {
      char u[4];
      size_t j = strop__tx_utf8_put(strop__tx_byte_char((uint8_t)s[start + i]), u);
      memcpy(buf + k, u, j);
      k += j;
    }
  } else if (k + len <= cap) {
    memcpy(buf + k, s + start, len);
    k += len;
  }
  if (with_suffix && k + m->suffixn <= cap) {
    memcpy(buf + k, m->suffix, m->suffixn);
    k += m->suffixn;
  }
  *n = k;
  return buf;
}

/* Candidate merge of symbols l and r, pushed when the model has it. */
static strop_status bpe_candidate(const tx_model *m, tx_work *w, bheap *h, const bsym *sym,
                                  const char *s, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return STROP_OK;
  if (m->spm) {
    if (sym[l].frozen || sym[r].frozen) return STROP_OK;
    uint32_t size = sym[r].end - sym[l].start;
    int32_t id = strop__tx_vocab_find(&m->vocab, s + sym[l].start, size);
    if (id < 0) return STROP_OK;
    int t = m->ptype[id];
    if (t != TX_SP_NORMAL && t != TX_SP_USER && t != TX_SP_UNUSED) return STROP_OK;
    return heap_push(w, h, (bcand){-(double)m->score[id], l, r, id, size, 0, 0});
  }
  if (sym[l].id < 0 || sym[r].id < 0) return STROP_OK;
  const tx_pair *k = strop__tx_pairs_find(&m->merges, sym[l].id, sym[r].id);
  if (!k) return STROP_OK;
  return heap_push(w, h, (bcand){(double)k->rank, l, r, k->to, 0, sym[l].id, sym[r].id});
}

/* SentencePiece's resegmentation of unused pieces: split them back into what formed them. */
typedef struct rev_merge {
  int32_t id;
  uint32_t left_len;
} rev_merge;

static strop_status bpe(const tx_model *m, tx_work *w, const char *s, uint32_t n, int bytes,
                        const tx_trie *user, toks *out) {
  if (!n) return STROP_OK;
  if (m->ignore_merges && !m->spm) {
    char buf[1024];
    size_t k;
    const char *t = unit_text(m, s, 0, n, bytes, buf, sizeof buf, &k, 0, 0);
    if (k < sizeof buf - 4) {
      int32_t id = strop__tx_vocab_find(&m->vocab, t, k);
      if (id >= 0) return tok_add(w, out, id, 0, n);
    }
  }
  size_t symcap = (size_t)n + 8;
  bsym *sym = strop__tx_scratch(w, 3, symcap * sizeof *sym);
  if (!sym) return STROP__NOMEM("strop__tx_model_tokenize");
  int32_t ns = 0;
  /* initial symbols: characters (or bytes), unknown ones fused or split into bytes */
  int32_t unk_open = -1; /* index of a pending fused unknown symbol */
  for (uint32_t i = 0; i < n;) {
    size_t k = 1;
    int frozen = 0;
    if (user) { /* SentencePiece user-defined symbols are never split or merged */
      int32_t node = 0;
      size_t best = 0;
      for (uint32_t j = i; j < n; j++) {
        node = strop__tx_trie_step(user, node, (uint8_t)s[j]);
        if (node < 0) break;
        if (user->val[node] >= 0) best = j - i + 1;
      }
      if (best) {
        k = best;
        frozen = 1;
      }
    }
    if (!frozen && !bytes) strop__tx_utf8_get(s + i, &k);
    int first = i == 0, last = i + k == n;
    char buf[256];
    size_t tn = 0;
    const char *t = NULL;
    int32_t id;
    if (m->spm) {
      id = 0; /* ids are looked up after merging */
    } else if (bytes && !m->prefix && !m->suffix) {
      id = m->bytechar_id[(uint8_t)s[i]];
    } else {
      t = unit_text(m, s, i, (uint32_t)k, bytes, buf, sizeof buf, &tn, !first && m->prefix,
                    last && m->suffix);
      id = strop__tx_vocab_find(&m->vocab, t, tn);
    }
    /* room for this unit's symbols: one, or one per byte of its text */
    size_t need = (size_t)ns + 4 + (tn > k ? tn : k);
    if (need > symcap) {
      symcap = 2 * need;
      sym = strop__tx_scratch(w, 3, symcap * sizeof *sym);
      if (!sym) return STROP__NOMEM("strop__tx_model_tokenize");
    }
    if (m->spm || id >= 0) {
      unk_open = -1;
      sym[ns] = (bsym){id, i, i + (uint32_t)k, ns - 1, -1, (uint8_t)frozen, 0};
      ns++;
    } else {
      int done = 0;
      if (m->byte_fallback) {
        /* the unit's bytes as <0xXX> tokens (all of them known, or none used) */
        if (!t)
          t = unit_text(m, s, i, (uint32_t)k, bytes, buf, sizeof buf, &tn, !first && m->prefix,
                        last && m->suffix);
        size_t j = 0;
        while (j < tn && m->byte_id[(uint8_t)t[j]] >= 0) j++;
        if (j == tn && tn) {
          if ((size_t)ns + tn + 4 > symcap) {
            symcap = 2 * ((size_t)ns + tn + 4);
            sym = strop__tx_scratch(w, 3, symcap * sizeof *sym);
            if (!sym) return STROP__NOMEM("strop__tx_model_tokenize");
          }
          /* byte j covers byte j of the unit (the last unit byte when the text is longer) */
          for (j = 0; j < tn; j++) {
            uint32_t a = i + (uint32_t)(j < k ? j : k - 1);
            sym[ns] = (bsym){m->byte_id[(uint8_t)t[j]], a, a + 1, ns - 1, -1, 1, 0};
            ns++;
          }
          done = 1;
          unk_open = -1;
        }
      }
      if (!done && m->unk >= 0) {
        if (unk_open >= 0 && m->fuse_unk) {
          sym[unk_open].end = i + (uint32_t)k;
        } else {
          sym[ns] = (bsym){m->unk, i, i + (uint32_t)k, ns - 1, -1, 1, 0};
          unk_open = ns++;
        }
      }
    }
    i += (uint32_t)k;
  }
  for (int32_t i = 0; i < ns; i++) sym[i].next = i + 1 < ns ? i + 1 : -1;
  bheap h = {0};
  strop_status st;
  for (int32_t i = 0; i + 1 < ns; i++)
    if ((st = bpe_candidate(m, w, &h, sym, s, i, i + 1))) return st;
  rev_merge *rev = NULL;
  size_t nrev = 0, revcap = 0;
  while (h.n) {
    bcand c = heap_pop(&h);
    bsym *l = &sym[c.left], *r = &sym[c.right];
    if (l->dead || r->dead || l->next != c.right) continue;
    if (m->spm) {
      if (r->end - l->start != c.size) continue;
      if (m->ptype[c.to] == TX_SP_UNUSED) {
        if (nrev == revcap) {
          revcap = revcap ? 2 * revcap : 16;
          rev = strop__tx_scratch(w, 5, revcap * sizeof *rev);
          if (!rev) return STROP__NOMEM("strop__tx_model_tokenize");
        }
        rev[nrev++] = (rev_merge){c.to, l->end - l->start};
      }
    } else if (l->id != c.a || r->id != c.b) {
      continue;
    }
    l->id = c.to;
    l->end = r->end;
    l->next = r->next;
    if (r->next >= 0) sym[r->next].prev = c.left;
    r->dead = 1;
    if ((st = bpe_candidate(m, w, &h, sym, s, l->prev, c.left))) return st;
    if ((st = bpe_candidate(m, w, &h, sym, s, c.left, l->next))) return st;
  }
  for (int32_t i = ns ? 0 : -1; i >= 0; i = sym[i].next) {
    if (!m->spm) {
      if ((st = tok_add(w, out, sym[i].id, sym[i].start, sym[i].end))) return st;
      continue;
    }
    /* SentencePiece: look the piece up; unused pieces split back (a small explicit stack) */
    uint32_t stack[64][2];
    int sp = 0;
    stack[sp][0] = sym[i].start;
    stack[sp][1] = sym[i].end - sym[i].start;
    sp++;
    while (sp > 0) {
      sp--;
      uint32_t a = stack[sp][0], len = stack[sp][1];
      int32_t id = strop__tx_vocab_find(&m->vocab, s + a, len);
      if (id >= 0 && m->ptype[id] == TX_SP_UNUSED && sp + 2 <= 64) {
        uint32_t left = 0;
        for (size_t r = nrev; r-- > 0;)
          if (rev[r].id == id) {
            left = rev[r].left_len;
            break;
          }
        if (left > 0 && left < len) {
          stack[sp][0] = a + left; /* right part after the left one */
          stack[sp][1] = len - left;
          sp++;
          stack[sp][0] = a;
          stack[sp][1] = left;
          sp++;
          continue;
        }
      }
      if (id < 0 || (m->ptype[id] != TX_SP_NORMAL && m->ptype[id] != TX_SP_USER &&
                     m->ptype[id] != TX_SP_UNUSED))
        id = m->unk;
      if ((st = tok_add(w, out, id, a, a + len))) return st;
    }
  }
  return STROP_OK;
}

/* ---- WordPiece and WordLevel ---- */
static strop_status wordpiece(const tx_model *m, tx_work *w, const char *s, uint32_t n,
                              toks *out) {
  uint32_t chars = 0;
  for (uint32_t i = 0; i < n; i++) chars += ((unsigned char)s[i] & 0xC0) != 0x80;
  size_t first = out->n;
  if ((int64_t)chars > m->max_chars) goto unknown;
  char *buf = strop__tx_scratch(w, 3, (size_t)n + m->prefixn + 1);
  if (!buf) return STROP__NOMEM("strop__tx_model_tokenize");
  uint32_t start = 0;
  while (start < n) {
    /* no piece is longer than the longest token: start the search there */
    uint32_t end = n;
    if ((size_t)(end - start) > m->max_len) {
      end = start + (uint32_t)m->max_len;
      while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80) end--;
    }
    int32_t id = -1;
    while (start < end) {
      size_t k = 0;
      if (start > 0) {
        memcpy(buf, m->prefix, m->prefixn);
        k = m->prefixn;
      }
      memcpy(buf + k, s + start, end - start);
      k += end - start;
      id = strop__tx_vocab_find(&m->vocab, buf, k);
      if (id >= 0) break;
      do end--;
      while (end > start && ((unsigned char)s[end] & 0xC0) == 0x80);
    }
    if (id < 0) {
      out->n = first;
      goto unknown;
    }
    strop_status st = tok_add(w, out, id, start, end);
    if (st) return st;
    start = end;
  }
  return STROP_OK;
unknown:
  if (m->unk < 0) return STROP_OK;
  return tok_add(w, out, m->unk, 0, n);
}

static strop_status wordlevel(const tx_model *m, tx_work *w, const char *s, uint32_t n,
                              toks *out) {
  int32_t id = strop__tx_vocab_find(&m->vocab, s, n);
  if (id < 0) id = m->unk;
  if (id < 0) return STROP_OK;
  return tok_add(w, out, id, 0, n);
}

/* ---- Unigram ---- */
typedef struct unode {
  double score;
  int32_t from; /* start of the best last piece, -1 unreached */
  int32_t id;
} unode;

static strop_status unigram(const tx_model *m, tx_work *w, const char *s, uint32_t n, toks *out) {
  if (!n) return STROP_OK;
  unode *best = strop__tx_scratch(w, 3, ((size_t)n + 1) * sizeof *best);
  if (!best) return STROP__NOMEM("strop__tx_model_tokenize");
  for (uint32_t i = 0; i <= n; i++) best[i] = (unode){0, -1, -1};
  /* kUnkPenalty; SentencePiece subtracts in float */
  const double unk_score = m->spm ? (double)((float)m->min_score - 10.0f) : m->min_score - 10.0;
  for (uint32_t at = 0; at < n;) {
    size_t mblen;
    strop__tx_utf8_get(s + at, &mblen);
    if (at + mblen > n) mblen = n - at;
    int single = 0;
    int32_t node = 0;
    if (m->spm) {
      /* SentencePiece's arithmetic to the bit: path scores are stored as float, a piece's
       * candidate is computed and compared in double, the unknown one in float */
      float here = (float)best[at].score;
      for (uint32_t j = at; j < n; j++) {
        node = strop__tx_trie_step(&m->trie, node, (uint8_t)s[j]);
        if (node < 0) break;
        int32_t id = m->trie.val[node];
        if (id < 0) continue;
        if (m->ptype[id] == TX_SP_UNUSED) continue;
        uint32_t len = j + 1 - at;
        double sc = m->ptype[id] == TX_SP_USER ? (double)((float)len * (float)m->max_score) - 0.1
                                               : (double)m->score[id];
        double cand = sc + (double)here;
        unode *t = &best[j + 1];
        if (t->from < 0 || cand > t->score) *t = (unode){(double)(float)cand, (int32_t)at, id};
        if (len == mblen) single = 1;
      }
      if (!single) {
        float cand = (float)unk_score + here;
        unode *t = &best[at + mblen];
        if (t->from < 0 || cand > (float)t->score) *t = (unode){cand, (int32_t)at, m->unk};
      }
    } else {
      double here = best[at].score;
      for (uint32_t j = at; j < n; j++) {
        node = strop__tx_trie_step(&m->trie, node, (uint8_t)s[j]);
        if (node < 0) break;
        int32_t id = m->trie.val[node];
        if (id < 0) continue;
        double cand = m->dscore[id] + here;
        unode *t = &best[j + 1];
        if (t->from < 0 || cand > t->score) *t = (unode){cand, (int32_t)at, id};
        if (j + 1 - at == mblen) single = 1;
      }
      if (!single && m->unk >= 0) {
        double cand = unk_score + here;
        unode *t = &best[at + mblen];
        if (t->from < 0 || cand > t->score) *t = (unode){cand, (int32_t)at, m->unk};
      }
    }
    at += (uint32_t)mblen;
  }
  /* back from the end; a position never reached (no unk) skips one character */
  size_t first = out->n;
  uint32_t end = n;
  while (end > 0) {
    unode *b = &best[end];
    uint32_t from;
    int32_t id;
    if (b->from < 0) {
      from = end - 1;
      while (from > 0 && ((unsigned char)s[from] & 0xC0) == 0x80) from--;
      id = -1;
    } else {
      from = (uint32_t)b->from;
      id = b->id;
    }
    /* Hugging Face fuses a run of unknown pieces into one */
    if (!m->spm && id >= 0 && id == m->unk && out->n > first &&
        out->v[3 * (out->n - 1)] == m->unk) {
      out->v[3 * (out->n - 1) + 1] = (int32_t)from;
    } else if (id >= 0) {
      strop_status st = tok_add(w, out, id, from, end);
      if (st) return st;
    }
    end = from;
  }
  /* reverse into text order */
  for (size_t i = first, j = out->n; j > i + 1; i++, j--) {
    for (int c = 0; c < 3; c++) {
      int32_t t = out->v[3 * i + c];
      out->v[3 * i + c] = out->v[3 * (j - 1) + c];
      out->v[3 * (j - 1) + c] = t;
    }
  }
  /* a fused unknown run that is a token of the vocabulary after all */
  if (!m->spm) {
    for (size_t i = first; i < out->n; i++) {
      if (out->v[3 * i] != m->unk) continue;
      uint32_t a = (uint32_t)out->v[3 * i + 1], b = (uint32_t)out->v[3 * i + 2];
      int32_t id = strop__tx_vocab_find(&m->vocab, s + a, b - a);
      if (id >= 0) out->v[3 * i] = id;
    }
  }
  return STROP_OK;
}

/* ---- one piece ---- */
strop_status strop__tx_model_tokenize(strop_tokenizer *tok, tx_work *w, const tx_piece *pin,
                                      int type, tx_enc *e) {
  const tx_model *m = &tok->model;
  tx_piece p = *pin;
  strop_status st;
  if (!p.len) return STROP_OK;
  if ((p.flags & TX_PIECE_BYTES) && m->kind != TX_M_BPE && (st = strop__tx_materialize(w, &p)))
    return st;
  const int32_t *v = NULL;
  size_t vn = 0;
  int cacheable = m->kind == TX_M_BPE || m->kind == TX_M_WORDPIECE;
  if (!cacheable || !cache_get(&tok->cache, w->s + p.off, p.len, p.flags, &v, &vn)) {
    toks t = {0};
    /* the model reads a copy: its scratch buffers may not alias the work text */
    char *s = strop__tx_scratch(w, 6, (size_t)p.len + 1);
    if (!s) return STROP__NOMEM("strop__tx_model_tokenize");
    memcpy(s, w->s + p.off, p.len);
    switch (m->kind) {
      case TX_M_BPE: {
        const tx_trie *user = NULL;
        if (m->spm && m->has_user && tok->nnorm && tok->norm[0].user) user = tok->norm[0].user;
        st = bpe(m, w, s, p.len, (p.flags & TX_PIECE_BYTES) != 0, user, &t);
        break;
      }
      case TX_M_WORDPIECE: st = wordpiece(m, w, s, p.len, &t); break;
      case TX_M_WORDLEVEL: st = wordlevel(m, w, s, p.len, &t); break;
      default: st = unigram(m, w, s, p.len, &t); break;
    }
    if (st) return st;
    if (cacheable && (st = cache_put(&tok->cache, s, p.len, p.flags, t.v, 3 * t.n))) return st;
    v = t.v;
    vn = 3 * t.n;
  }
  for (size_t i = 0; i < vn; i += 3) {
    uint32_t a = (uint32_t)v[i + 1], b = (uint32_t)v[i + 2];
    int32_t id = v[i];
    /* SentencePiece's byte fallback happens after the model: an unknown piece becomes the
     * byte pieces of its bytes */
    if (m->spm && id == m->unk && m->byte_fallback) {
      for (uint32_t j = a; j < b; j++) {
        int32_t bid = m->byte_id[(uint8_t)w->s[p.off + j]];
        if ((st = strop__tx_enc_push(e, bid >= 0 ? bid : m->unk, w->o0[p.off + a],
                                     w->o1[p.off + b - 1], type, 0)))
          return st;
      }
      continue;
    }
    /* Hugging Face's Unigram: a fused unknown run falls back to bytes too */
    if (!m->spm && m->kind == TX_M_UNIGRAM && id == m->unk && m->byte_fallback) {
      uint32_t j = a;
      while (j < b && m->byte_id[(uint8_t)w->s[p.off + j]] >= 0) j++;
      if (j == b) {
        for (j = a; j < b; j++)
          if ((st = strop__tx_enc_push(e, m->byte_id[(uint8_t)w->s[p.off + j]], w->o0[p.off + a],
                                       w->o1[p.off + b - 1], type, 0)))
            return st;
        continue;
      }
    }
    if ((st = strop__tx_enc_push(e, id, w->o0[p.off + a], w->o1[p.off + b - 1], type, 0)))
      return st;
  }
  return STROP_OK;
}
