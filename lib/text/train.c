/* SPDX-License-Identifier: MIT */
/* strop — training a byte-level BPE vocabulary: count the words GPT-2's pre-tokenizer makes of
 * the corpus, then merge the most frequent adjacent pair again and again (Hugging Face's
 * BpeTrainer: ties to the pair of smaller ids; pair counts updated in place, word by word). */
#include <stdio.h>
#include <string.h>

#include "text/text_impl.h"

#define FN "strop_tokenizer_train_bpe"

void strop_bpe_train_options_init(strop_bpe_train_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->vocab_size = 8000;
  opt->min_frequency = 2;
}

/* ---- words: distinct pieces of the corpus with their counts ---- */
typedef struct words {
  char *pool; /* the pieces' bytes */
  size_t n, cap;
  uint32_t *off, *len; /* per word */
  int64_t *count;
  size_t nw, wcap;
  int32_t *slot; /* hash slots -> word, -1 empty */
  size_t nslot;
} words;

static void words_free(words *w) {
  strop__free(w->pool);
  strop__free(w->off);
  strop__free(w->len);
  strop__free(w->count);
  strop__free(w->slot);
}

static strop_status words_add(words *w, const char *s, size_t n) {
  if ((w->nw + 1) * 2 > w->nslot) {
    size_t ns = w->nslot ? w->nslot * 2 : 4096;
    int32_t *slot = strop__malloc(ns * sizeof *slot);
    if (!slot) return STROP__NOMEM(FN);
    memset(slot, 0xFF, ns * sizeof *slot);
    for (size_t i = 0; i < w->nw; i++) {
      size_t j = (size_t)strop__tx_hash(w->pool + w->off[i], w->len[i]) & (ns - 1);
      while (slot[j] >= 0) j = (j + 1) & (ns - 1);
      slot[j] = (int32_t)i;
    }
    strop__free(w->slot);
    w->slot = slot;
    w->nslot = ns;
  }
  size_t m = w->nslot - 1, j = (size_t)strop__tx_hash(s, n) & m;
  while (w->slot[j] >= 0) {
    int32_t k = w->slot[j];
    if (w->len[k] == n && !memcmp(w->pool + w->off[k], s, n)) {
      w->count[k]++;
      return STROP_OK;
    }
    j = (j + 1) & m;
  }
  if (w->nw >= INT32_MAX || w->n + n > UINT32_MAX) return STROP__NOMEM(FN);
  if (w->nw == w->wcap) {
    size_t c1 = w->wcap, c2 = w->wcap, c3 = w->wcap;
    if (strop__tx_reserve((void **)&w->off, &c1, w->nw + 1, sizeof *w->off) ||
        strop__tx_reserve((void **)&w->len, &c2, w->nw + 1, sizeof *w->len) ||
        strop__tx_reserve((void **)&w->count, &c3, w->nw + 1, sizeof *w->count))
      return STROP__NOMEM(FN);
    w->wcap = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
  }
  if (strop__tx_reserve((void **)&w->pool, &w->cap, w->n + n + 1, 1)) return STROP__NOMEM(FN);
  memcpy(w->pool + w->n, s, n);
  w->off[w->nw] = (uint32_t)w->n;
  w->len[w->nw] = (uint32_t)n;
  w->count[w->nw] = 1;
  w->slot[j] = (int32_t)w->nw;
  w->n += n;
  w->nw++;
  return STROP_OK;
}

/* ---- pair statistics ---- */
typedef struct pstat {
  uint64_t key; /* a << 32 | b */
  int64_t count;
  int32_t *where; /* words that held the pair (may repeat, may be stale) */
  size_t nwhere, wcap;
  uint32_t queued; /* the merge that last requeued it */
} pstat;

typedef struct pairs {
  pstat *v;
  size_t n, cap;
  int32_t *slot;
  size_t nslot;
} pairs;

static void pairs_free(pairs *p) {
  for (size_t i = 0; i < p->n; i++) strop__free(p->v[i].where);
  strop__free(p->v);
  strop__free(p->slot);
}

static int64_t pair_index(pairs *p, uint64_t key, int create, strop_status *st) {
  *st = STROP_OK;
  if (p->nslot) {
    size_t m = p->nslot - 1, j = (size_t)strop__tx_mix64(key) & m;
    while (p->slot[j] >= 0) {
      if (p->v[p->slot[j]].key == key) return p->slot[j];
      j = (j + 1) & m;
    }
  }
  if (!create) return -1;
  if ((p->n + 1) * 2 > p->nslot) {
    size_t ns = p->nslot ? p->nslot * 2 : 4096;
    int32_t *slot = strop__malloc(ns * sizeof *slot);
    if (!slot) {
      *st = STROP__NOMEM(FN);
      return -1;
    }
    memset(slot, 0xFF, ns * sizeof *slot);
    for (size_t i = 0; i < p->n; i++) {
      size_t j = (size_t)strop__tx_mix64(p->v[i].key) & (ns - 1);
      while (slot[j] >= 0) j = (j + 1) & (ns - 1);
      slot[j] = (int32_t)i;
    }
    strop__free(p->slot);
    p->slot = slot;
    p->nslot = ns;
  }
  if (p->n == p->cap && strop__tx_reserve((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v)) {
    *st = STROP__NOMEM(FN);
    return -1;
  }
  if (p->n >= INT32_MAX) {
    *st = STROP__NOMEM(FN);
    return -1;
  }
  size_t m = p->nslot - 1, j = (size_t)strop__tx_mix64(key) & m;
  while (p->slot[j] >= 0) j = (j + 1) & m;
  p->slot[j] = (int32_t)p->n;
  p->v[p->n] = (pstat){key, 0, NULL, 0, 0, 0};
  return (int64_t)p->n++;
}

static strop_status pair_add(pairs *p, int32_t a, int32_t b, int64_t delta, int32_t word) {
  strop_status st;
  int64_t i = pair_index(p, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, 1, &st);
  if (i < 0) return st;
  pstat *s = &p->v[i];
  s->count += delta;
  if (delta > 0 && word >= 0) {
    if (s->nwhere == s->wcap &&
        strop__tx_reserve((void **)&s->where, &s->wcap, s->nwhere + 1, sizeof *s->where))
      return STROP__NOMEM(FN);
    s->where[s->nwhere++] = word;
  }
  return STROP_OK;
}

static strop_status note_change(uint64_t **v, size_t *n, size_t *cap, int32_t a, int32_t b) {
  if (*n == *cap && strop__tx_reserve((void **)v, cap, *n + 1, sizeof **v))
    return STROP__NOMEM(FN);
  (*v)[(*n)++] = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  return STROP_OK;
}

/* ---- the merge queue: largest count first, then the smaller pair ---- */
typedef struct qent {
  int64_t count;
  uint64_t key;
} qent;

static int q_before(const qent *a, const qent *b) {
  return a->count > b->count || (a->count == b->count && a->key < b->key);
}

typedef struct queue {
  qent *v;
  size_t n, cap;
} queue;

static strop_status q_push(queue *q, qent e) {
  if (q->n == q->cap && strop__tx_reserve((void **)&q->v, &q->cap, q->n + 1, sizeof *q->v))
    return STROP__NOMEM(FN);
  size_t i = q->n++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!q_before(&e, &q->v[p])) break;
    q->v[i] = q->v[p];
    i = p;
  }
  q->v[i] = e;
  return STROP_OK;
}

static qent q_pop(queue *q) {
  qent top = q->v[0], last = q->v[--q->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const qent *best = &last;
    if (l < q->n && q_before(&q->v[l], best)) {
      m = l;
      best = &q->v[l];
    }
    if (r < q->n && q_before(&q->v[r], best)) m = r;
    if (m == i) break;
    q->v[i] = q->v[m];
    i = m;
  }
  if (q->n) q->v[i] = last;
  return top;
}

/* Reads every file and counts the pieces the tokenizer's pre-tokenizer makes of each line
 * (newline kept, as Hugging Face feeds lines). */
static strop_status count_words(strop_tokenizer *tok, const char *const *paths, int64_t n,
                                words *wd) {
  for (int64_t f = 0; f < n; f++) {
    char *data;
    size_t len;
    strop_status st = strop__tx_read_file(FN, paths[f], (size_t)1 << 31, &data, &len);
    if (st) return st;
    for (size_t i = 0; i < len && !st;) {
      size_t e = i;
      while (e < len && data[e] != '\n') e++;
      if (e < len) e++;
      st = strop__tx_pieces(tok, data + i, e - i);
      for (size_t p = 0; p < tok->w.np && !st; p++)
        if (tok->w.p[p].id < 0) st = words_add(wd, tok->w.s + tok->w.p[p].off, tok->w.p[p].len);
      i = e;
    }
    strop__free(data);
    if (st) return st;
  }
  return STROP_OK;
}

strop_status strop_tokenizer_train_bpe(const char *const *paths, int64_t n,
                                       const strop_bpe_train_options *opt,
                                       strop_tokenizer **out) {
  if (out) *out = NULL;
  if (!paths || !out || n < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s", FN,
                      !paths ? "paths is NULL"
                      : !out ? "out is NULL"
                             : "n must be >= 1");
  for (int64_t i = 0; i < n; i++)
    if (!paths[i])
      return strop__err(STROP_E_INVALID_ARG, "%s: paths[%lld] is NULL", FN, (long long)i);
  strop_bpe_train_options o;
  strop_bpe_train_options_init(&o);
  if (opt) {
    if (opt->size < sizeof opt->size)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: opt->size is %zu: fill opt with "
                        "strop_bpe_train_options_init()",
                        FN, opt->size);
    size_t k = opt->size < sizeof o ? opt->size : sizeof o;
    memcpy((char *)&o + sizeof o.size, (const char *)opt + sizeof o.size, k - sizeof o.size);
  }
  if (o.num_special_tokens < 0 || (o.num_special_tokens && !o.special_tokens) ||
      o.num_special_tokens > 1 << 16)
    return strop__err(STROP_E_INVALID_ARG, "%s: %lld special tokens at %p", FN,
                      (long long)o.num_special_tokens, (const void *)o.special_tokens);
  if (o.vocab_size < 256 + o.num_special_tokens || o.vocab_size > TX_MAX_IDS)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: vocab_size %lld must be in [256 + %lld special "
                      "tokens, %d]",
                      FN, (long long)o.vocab_size, (long long)o.num_special_tokens, TX_MAX_IDS);
  if (o.min_frequency < 0 || o.max_token_length < 0 || o.add_prefix_space < 0 ||
      o.add_prefix_space > 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: min_frequency %lld and max_token_length %lld must "
                      "be >= 0, add_prefix_space 0 or 1",
                      FN, (long long)o.min_frequency, (long long)o.max_token_length);
  strop_tokenizer *tok = NULL;
  strop_status st = strop__tx_new("(trained)", TX_FROM_TRAIN, &tok);
  if (st) return st;
  words wd = {0};
  pairs pr = {0};
  queue q = {0};
  int32_t **sym = NULL; /* per word: its symbols */
  uint32_t *nsym = NULL;
  uint32_t *stamp = NULL;
  uint64_t *changed = NULL;
  size_t nchanged = 0, ccap = 0;
  tx_model *m = &tok->model;
  m->kind = TX_M_BPE;
  /* the pipeline: ByteLevel pre-tokenizer, decoder and post-processor */
  tok->pre = strop__calloc(1, sizeof *tok->pre);
  tok->dec = strop__calloc(1, sizeof *tok->dec);
  tok->post = strop__calloc(1, sizeof *tok->post);
  if (!tok->pre || !tok->dec || !tok->post) {
    st = STROP__NOMEM(FN);
    goto done;
  }
  tok->npre = tok->ndec = tok->npost = 1;
  tok->pre->kind = TX_P_BYTELEVEL;
  tok->pre->add_prefix_space = o.add_prefix_space;
  tok->pre->use_regex = 1;
  tok->pre->trim_offsets = 1;
  tok->dec->kind = TX_D_BYTELEVEL;
  tok->post->kind = TX_Q_BYTELEVEL;
  tok->post->add_prefix_space = o.add_prefix_space;
  tok->post->use_regex = 1;
  if ((st = strop__tx_pattern_compile(&tok->pre->pat, TX_PAT_REGEX, strop__tx_gpt2_regex,
                                      strlen(strop__tx_gpt2_regex), FN, "ByteLevel")))
    goto done;
  /* special tokens: ids 0.., cut out of the training text like any added token */
  for (int64_t i = 0; i < o.num_special_tokens; i++) {
    const char *s = o.special_tokens[i];
    if (!s || !s[0]) {
      st = strop__err(STROP_E_INVALID_ARG, "%s: special_tokens[%lld] is NULL or empty", FN,
                      (long long)i);
      goto done;
    }
    if (strop__tx_vocab_find(&m->vocab, s, strlen(s)) >= 0) {
      st = strop__err(STROP_E_INVALID_ARG, "%s: special token \"%.60s\" is given twice", FN, s);
      goto done;
    }
    if ((st = strop__tx_vocab_put(&m->vocab, (int32_t)i, s, strlen(s)))) goto done;
  }
  for (int64_t i = 0; i < o.num_special_tokens; i++) {
    const char *s = o.special_tokens[i];
    if ((st = strop__tx_add(tok, s, strlen(s), (int32_t)i, STROP_TOKEN_SPECIAL, FN))) goto done;
  }
  if ((st = strop__tx_finish(tok, FN))) goto done;
  /* the alphabet: GPT-2's 256 byte characters in code point order */
  int32_t byte_id[256];
  {
    uint32_t cps[256];
    for (int b = 0; b < 256; b++) cps[b] = strop__tx_byte_char((uint8_t)b);
    int order[256];
    for (int i = 0; i < 256; i++) order[i] = i;
    for (int i = 1; i < 256; i++) { /* insertion sort by code point */
      int x = order[i], j = i;
      while (j > 0 && cps[order[j - 1]] > cps[x]) {
        order[j] = order[j - 1];
        j--;
      }
      order[j] = x;
    }
    for (int i = 0; i < 256; i++) {
      char u[4];
      size_t k = strop__tx_utf8_put(cps[order[i]], u);
      int32_t id = m->vocab.n;
      int32_t have = strop__tx_vocab_find(&m->vocab, u, k);
      if (have >= 0) {
        byte_id[order[i]] = have; /* a special token spelled like a byte character */
        continue;
      }
      if ((st = strop__tx_vocab_put(&m->vocab, id, u, k))) goto done;
      byte_id[order[i]] = id;
    }
  }
  if ((st = count_words(tok, paths, n, &wd))) goto done;
  /* words as symbol ids, and the pair counts */
  sym = strop__calloc(wd.nw + 1, sizeof *sym);
  nsym = strop__calloc(wd.nw + 1, sizeof *nsym);
  stamp = strop__calloc(wd.nw + 1, sizeof *stamp);
  if (!sym || !nsym || !stamp) {
    st = STROP__NOMEM(FN);
    goto done;
  }
  for (size_t i = 0; i < wd.nw; i++) {
    uint32_t L = wd.len[i];
    sym[i] = strop__malloc(((size_t)L + 1) * sizeof **sym);
    if (!sym[i]) {
      st = STROP__NOMEM(FN);
      goto done;
    }
    for (uint32_t k = 0; k < L; k++) sym[i][k] = byte_id[(uint8_t)wd.pool[wd.off[i] + k]];
    nsym[i] = L;
    for (uint32_t k = 0; k + 1 < L; k++)
      if ((st = pair_add(&pr, sym[i][k], sym[i][k + 1], wd.count[i], (int32_t)i))) goto done;
  }
  for (size_t i = 0; i < pr.n; i++)
    if (pr.v[i].count > 0 && (st = q_push(&q, (qent){pr.v[i].count, pr.v[i].key}))) goto done;
  size_t mcap = 0;
  char *buf = NULL;
  size_t bcap = 0;
  uint32_t merge_no = 0;
  while (m->vocab.n < o.vocab_size && q.n) {
    qent top = q_pop(&q);
    int64_t pi = pair_index(&pr, top.key, 0, &st);
    int64_t cur = pi >= 0 ? pr.v[pi].count : 0;
    if (cur != top.count) { /* stale: requeue with the current count */
      if (cur > 0 && (st = q_push(&q, (qent){cur, top.key}))) break;
      continue;
    }
    if (top.count < 1 || top.count < o.min_frequency) break;
    int32_t a = (int32_t)(top.key >> 32), b = (int32_t)(uint32_t)top.key;
    size_t an = 0, bn = 0;
    const char *as = strop__tx_vocab_str(&m->vocab, a, &an);
    const char *bs = strop__tx_vocab_str(&m->vocab, b, &bn);
    if (strop__tx_reserve((void **)&buf, &bcap, an + bn + 1, 1)) {
      st = STROP__NOMEM(FN);
      break;
    }
    memcpy(buf, as, an);
    memcpy(buf + an, bs, bn);
    if (o.max_token_length > 0) {
      int64_t chars = 0;
      for (size_t k = 0; k < an + bn; k++) chars += ((unsigned char)buf[k] & 0xC0) != 0x80;
      if (chars > o.max_token_length) continue;
    }
    int32_t to = strop__tx_vocab_find(&m->vocab, buf, an + bn);
    if (to < 0) {
      to = m->vocab.n;
      if ((st = strop__tx_vocab_put(&m->vocab, to, buf, an + bn))) break;
    }
    if ((size_t)m->nmerges == mcap) {
      size_t c1 = mcap, c2 = mcap;
      if (strop__tx_reserve((void **)&m->merge_a, &c1, mcap + 1, sizeof *m->merge_a) ||
          strop__tx_reserve((void **)&m->merge_b, &c2, mcap + 1, sizeof *m->merge_b)) {
        st = STROP__NOMEM(FN);
        break;
      }
      mcap = c1 < c2 ? c1 : c2;
    }
    m->merge_a[m->nmerges] = a;
    m->merge_b[m->nmerges] = b;
    if ((st = strop__tx_pairs_put(&m->merges, a, b, m->nmerges, to))) break;
    m->nmerges++;
    merge_no++;
    /* apply the merge in every word that held the pair, as Hugging Face's Word::merge does:
     * left to right, the left neighbour already merged, the right one not yet */
    nchanged = 0;
    for (size_t k = 0; k < pr.v[pi].nwhere && !st; k++) {
      int32_t wi = pr.v[pi].where[k];
      if (stamp[wi] == merge_no) continue;
      stamp[wi] = merge_no;
      int32_t *s = sym[wi];
      uint32_t L = nsym[wi], o_ = 0;
      int64_t c = wd.count[wi];
      for (uint32_t i = 0; i < L && !st;) {
        if (i + 1 < L && s[i] == a && s[i + 1] == b) {
          if (o_ > 0) {
            st = pair_add(&pr, s[o_ - 1], a, -c, -1);
            if (!st) st = pair_add(&pr, s[o_ - 1], to, c, wi);
            if (!st) st = note_change(&changed, &nchanged, &ccap, s[o_ - 1], to);
          }
          if (!st && i + 2 < L) {
            st = pair_add(&pr, b, s[i + 2], -c, -1);
            if (!st) st = pair_add(&pr, to, s[i + 2], c, wi);
            if (!st) st = note_change(&changed, &nchanged, &ccap, to, s[i + 2]);
          }
          s[o_++] = to;
          i += 2;
        } else {
          s[o_++] = s[i++];
        }
      }
      nsym[wi] = o_;
    }
    if (st) break;
    pr.v[pi].count = 0;
    pr.v[pi].nwhere = 0;
    /* the pairs that gained go back in the queue with their counts */
    for (size_t i = 0; i < nchanged && !st; i++) {
      int64_t j = pair_index(&pr, changed[i], 0, &st);
      if (j >= 0 && pr.v[j].count > 0 && pr.v[j].queued != merge_no) {
        pr.v[j].queued = merge_no;
        st = q_push(&q, (qent){pr.v[j].count, changed[i]});
      }
    }
    if (st) break;
  }
  strop__free(buf);
  if (st) goto done;
  if ((st = strop__tx_model_finish(m, FN, "(trained)"))) goto done;
  st = strop__tx_finish(tok, FN);
done:
  for (size_t i = 0; sym && i < wd.nw; i++) strop__free(sym[i]);
  strop__free(sym);
  strop__free(nsym);
  strop__free(stamp);
  strop__free(changed);
  strop__free(q.v);
  pairs_free(&pr);
  words_free(&wd);
  if (st) {
    strop_tokenizer_free(tok);
    return st;
  }
  /* the counts and work text of training are not needed any more */
  strop__tx_work_free(&tok->w);
  strop__tx_cache_free(&tok->cache);
  *out = tok;
  return STROP_OK;
}
