/* SPDX-License-Identifier: MIT */
/* strop — the strop_tokenizer handle: added tokens cut out first, then normalizers,
 * pre-tokenizers and the model per piece, truncation, the post-processor's template, padding;
 * and the public calls on the handle (lookups, encode, batch encode, decode). */
#include <string.h>

#include "text/text_impl.h"

/* ---- the handle ---- */
strop_status strop__tx_new(const char *source, int origin, strop_tokenizer **out) {
  strop_tokenizer *t = strop__calloc(1, sizeof *t);
  if (!t) return STROP__NOMEM("strop_tokenizer_load");
  t->source = strop__strdup(source ? source : "");
  if (!t->source) {
    strop__free(t);
    return STROP__NOMEM("strop_tokenizer_load");
  }
  t->origin = origin;
  t->model.unk = -1;
  t->model.dropout = -1;
  t->model.max_chars = 100;
  for (int i = 0; i < TX_ROLES; i++) t->role[i] = -1;
  for (int i = 0; i < 256; i++) t->araw.root[i] = t->anorm.root[i] = -1;
  *out = t;
  return STROP_OK;
}

void strop_tokenizer_free(strop_tokenizer *tok) {
  if (!tok) return;
  for (int i = 0; i < tok->nnorm; i++) strop__tx_norm_free(&tok->norm[i]);
  for (int i = 0; i < tok->npre; i++) strop__tx_pretok_free(&tok->pre[i]);
  for (int i = 0; i < tok->npost; i++) strop__tx_post_free(&tok->post[i]);
  for (int i = 0; i < tok->ndec; i++) strop__tx_dec_free(&tok->dec[i]);
  for (int i = 0; i < tok->nadded; i++) strop__free(tok->added[i].content);
  strop__free(tok->norm);
  strop__free(tok->pre);
  strop__free(tok->post);
  strop__free(tok->dec);
  strop__free(tok->added);
  strop__free(tok->added_idx);
  strop__tx_model_free(&tok->model);
  strop__tx_trie_free(&tok->araw);
  strop__tx_trie_free(&tok->anorm);
  strop__tx_work_free(&tok->w);
  strop__tx_cache_free(&tok->cache);
  for (int i = 0; i < tok->nchat; i++) {
    strop__free(tok->chat_names[i]);
    strop__free(tok->chat_texts[i]);
    strop__free(tok->chat_where[i]);
  }
  strop__free(tok->chat_names);
  strop__free(tok->chat_texts);
  strop__free(tok->chat_where);
  for (int i = 0; i < tok->nspecial; i++) {
    strop__free(tok->special_keys[i]);
    strop__free(tok->special_vals[i]);
  }
  strop__free(tok->special_keys);
  strop__free(tok->special_vals);
  strop__free(tok->source);
  strop__free(tok);
}

strop_status strop__tx_add(strop_tokenizer *tok, const char *content, size_t len, int32_t id,
                           int flags, const char *fn) {
  if (!len || len >= TX_MAX_TOKEN_BYTES || !strop__tx_utf8_check(content, len))
    return strop__err(STROP_E_INVALID_ARG, "%s: an added token must be 1 to %d bytes of UTF-8",
                      fn, TX_MAX_TOKEN_BYTES - 1);
  flags &= ~STROP_TOKEN_ADDED;
  for (int i = 0; i < tok->nadded; i++) {
    tx_added *a = &tok->added[i];
    if (a->len == len && !memcmp(a->content, content, len)) {
      a->flags = flags; /* the same token again: new flags, same id */
      return STROP_OK;
    }
  }
  /* a token the model knows keeps the model's id (as Hugging Face assigns them) */
  int32_t mid = strop__tx_vocab_find(&tok->model.vocab, content, len);
  if (mid >= 0) id = mid;
  if (id < 0) {
    int64_t next = tok->model.vocab.n;
    for (int i = 0; i < tok->nadded; i++)
      if (tok->added[i].id >= next) next = tok->added[i].id + 1;
    if (next >= TX_MAX_IDS)
      return strop__err(STROP_E_INVALID_ARG, "%s: the vocabulary is full (%d ids)", fn,
                        TX_MAX_IDS);
    id = (int32_t)next;
  }
  for (int i = 0; i < tok->nadded; i++)
    if (tok->added[i].id == id)
      return strop__err(STROP_E_FORMAT, "%s: %s: added tokens \"%.*s\" and \"%.*s\" share id %d",
                        fn, tok->source, (int)(len > 60 ? 60 : len), content,
                        (int)(tok->added[i].len > 60 ? 60 : tok->added[i].len),
                        tok->added[i].content, id);
  if (mid < 0 && id < tok->model.vocab.n && tok->model.vocab.len[id] != TX_NONE) {
    size_t on = 0;
    const char *o = strop__tx_vocab_str(&tok->model.vocab, id, &on);
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: added token \"%.*s\" has id %d, which is the "
                      "model's \"%.*s\"",
                      fn, tok->source, (int)(len > 60 ? 60 : len), content, id,
                      (int)(on > 60 ? 60 : on), o);
  }
  tx_added *v = strop__realloc(tok->added, ((size_t)tok->nadded + 1) * sizeof *v);
  if (!v) return STROP__NOMEM(fn);
  tok->added = v;
  char *c = strop__tx_strndup(content, len);
  if (!c) return STROP__NOMEM(fn);
  v[tok->nadded++] = (tx_added){c, len, id, flags};
  return STROP_OK;
}

static const char *ROLE_NAMES[TX_ROLES][7] = {
    {"[UNK]", "<unk>", "<|unk|>", NULL},
    {"[PAD]", "<pad>", "<|pad|>", "<|padding|>", NULL},
    {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", "[BOS]", "<|endoftext|>", NULL},
    {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]", NULL},
    {"[CLS]", "<cls>", NULL},
    {"[SEP]", "<sep>", NULL},
    {"[MASK]", "<mask>", "<|mask|>", NULL}};

static int32_t token_id(const strop_tokenizer *tok, const char *s, size_t n) {
  for (int i = 0; i < tok->nadded; i++)
    if (tok->added[i].len == n && !memcmp(tok->added[i].content, s, n)) return tok->added[i].id;
  return strop__tx_vocab_find(&tok->model.vocab, s, n);
}

strop_status strop__tx_finish(strop_tokenizer *tok, const char *fn) {
  int64_t size = tok->model.vocab.n;
  for (int i = 0; i < tok->nadded; i++)
    if (tok->added[i].id >= size) size = tok->added[i].id + 1;
  int32_t *idx = strop__malloc(((size_t)size + 1) * sizeof *idx);
  if (!idx) return STROP__NOMEM(fn);
  memset(idx, 0xFF, ((size_t)size + 1) * sizeof *idx);
  for (int i = 0; i < tok->nadded; i++) idx[tok->added[i].id] = i;
  /* the tries of added tokens: raw ones as written, normalized ones as the normalizers make them */
  tx_trie raw, norm;
  strop_status st = strop__tx_trie_init(&raw);
  if (!st) {
    st = strop__tx_trie_init(&norm);
    if (st) strop__tx_trie_free(&raw);
  }
  if (st) {
    strop__free(idx);
    return st;
  }
  int nraw = 0, nnorm = 0;
  int64_t old_size = tok->size;
  int32_t *old_idx = tok->added_idx;
  tok->size = size;
  tok->added_idx = idx;
  for (int i = 0; i < tok->nadded && !st; i++) {
    const tx_added *a = &tok->added[i];
    if ((a->flags & STROP_TOKEN_NORMALIZED) && tok->nnorm) {
      char *s;
      size_t n;
      st = strop__tx_normalize_str(tok, a->content, a->len, &s, &n);
      if (!st && n) {
        st = strop__tx_trie_add(&norm, s, n, i);
        nnorm++;
      }
      strop__free(s);
    } else {
      st = strop__tx_trie_add(&raw, a->content, a->len, i);
      nraw++;
    }
  }
  if (st) {
    strop__tx_trie_free(&raw);
    strop__tx_trie_free(&norm);
    tok->size = old_size;
    tok->added_idx = old_idx;
    strop__free(idx);
    return st;
  }
  strop__free(old_idx);
  strop__tx_trie_free(&tok->araw);
  strop__tx_trie_free(&tok->anorm);
  tok->araw = raw;
  tok->anorm = norm;
  tok->have_araw = nraw > 0;
  tok->have_anorm = nnorm > 0;
  /* every id a template adds must be a token of the vocabulary */
  for (int i = 0; i < tok->npost; i++)
    for (int k = 0; k < tok->post[i].nsp; k++)
      for (int j = 0; j < tok->post[i].sp[k].n; j++) {
        int32_t id = tok->post[i].sp[k].ids[j];
        size_t n;
        if (id < 0 || id >= tok->size || !strop__tx_id_str(tok, id, &n))
          return strop__err(STROP_E_FORMAT,
                            "%s: %s: post_processor: special token \"%.60s\" has "
                            "id %d, which is not in the vocabulary",
                            fn, tok->source, tok->post[i].sp[k].name, id);
      }
  /* roles: the model's unk, the post-processor's tokens, then tokens named like them */
  if (tok->role[STROP_ROLE_UNK] < 0) tok->role[STROP_ROLE_UNK] = tok->model.unk;
  for (int i = 0; i < tok->npost; i++) {
    const tx_post *p = &tok->post[i];
    if (p->kind == TX_Q_BYTELEVEL || !p->nsingle) continue;
    const tx_tpiece *f = &p->single[0], *l = &p->single[p->nsingle - 1];
    if (f->special >= 0 && p->sp[f->special].n == 1) {
      if (tok->role[STROP_ROLE_CLS] < 0 && p->kind != TX_Q_TEMPLATE)
        tok->role[STROP_ROLE_CLS] = p->sp[f->special].ids[0];
      if (tok->role[STROP_ROLE_BOS] < 0 && p->kind != TX_Q_BERT)
        tok->role[STROP_ROLE_BOS] = p->sp[f->special].ids[0];
    }
    if (l->special >= 0 && p->sp[l->special].n == 1) {
      if (tok->role[STROP_ROLE_SEP] < 0 && p->kind != TX_Q_TEMPLATE)
        tok->role[STROP_ROLE_SEP] = p->sp[l->special].ids[0];
      if (tok->role[STROP_ROLE_EOS] < 0 && p->kind != TX_Q_BERT)
        tok->role[STROP_ROLE_EOS] = p->sp[l->special].ids[0];
    }
  }
  for (int r = 0; r < TX_ROLES; r++)
    for (int k = 0; ROLE_NAMES[r][k] && tok->role[r] < 0; k++)
      tok->role[r] = token_id(tok, ROLE_NAMES[r][k], strlen(ROLE_NAMES[r][k]));
  for (int r = 0; r < TX_ROLES; r++)
    if (tok->role[r] >= tok->size) tok->role[r] = -1;
  return STROP_OK;
}

/* ---- one sequence ---- */

/* The text as valid UTF-8 in the work buffer: each maximal invalid subsequence becomes U+FFFD,
 * every byte remembers the input bytes it stands for. */
static strop_status load_text(tx_work *w, const char *text, size_t len) {
  w->n = 0;
  const unsigned char *s = (const unsigned char *)text;
  size_t i = 0, bad;
  while (i < len) {
    size_t j = i;
    while (j < len && s[j] < 0x80) j++;
    if (j > i) { /* an ASCII run */
      strop_status st = strop__tx_emit(w, text + i, j - i, 0, 0);
      if (st) return st;
      for (size_t k = i; k < j; k++) {
        w->o0[w->n - (j - k)] = (uint32_t)k;
        w->o1[w->n - (j - k)] = (uint32_t)k + 1;
      }
      i = j;
      continue;
    }
    size_t k = strop__tx_utf8_valid(s + i, len - i, &bad);
    strop_status st = k ? strop__tx_emit(w, text + i, k, (uint32_t)i, (uint32_t)(i + k))
                        : strop__tx_emit(w, "\xEF\xBF\xBD", 3, (uint32_t)i, (uint32_t)(i + bad));
    if (st) return st;
    i += k ? k : bad;
  }
  return STROP_OK;
}

static inline int word_before(const tx_work *w, const tx_piece *p, uint32_t at) {
  if (at == 0) return 0;
  uint32_t b = at - 1;
  while (b > 0 && ((unsigned char)w->s[p->off + b] & 0xC0) == 0x80) b--;
  size_t k;
  return strop__tx_is_word(strop__tx_utf8_get(w->s + p->off + b, &k));
}

static inline int word_at(const tx_work *w, const tx_piece *p, uint32_t at) {
  if (at >= p->len) return 0;
  size_t k;
  return strop__tx_is_word(strop__tx_utf8_get(w->s + p->off + at, &k));
}

/* Cuts the added tokens of trie t out of every piece (Hugging Face's leftmost-longest match,
 * with the single_word, lstrip and rstrip rules). */
static strop_status split_added(strop_tokenizer *tok, tx_work *w, const tx_trie *t) {
  w->nq = 0;
  for (size_t pi = 0; pi < w->np; pi++) {
    tx_piece p = w->p[pi];
    strop_status st;
    if (p.id >= 0) {
      if ((st = strop__tx_push_piece(w, p.off, p.len, p.id, p.flags))) return st;
      continue;
    }
    const unsigned char *s = (const unsigned char *)w->s + p.off;
    uint32_t done = 0, i = 0;
    while (i < p.len) {
      if (t->root[s[i]] < 0) {
        i++;
        continue;
      }
      int32_t node = 0, best_val = -1;
      uint32_t best = 0;
      for (uint32_t j = i; j < p.len; j++) {
        node = strop__tx_trie_step(t, node, s[j]);
        if (node < 0) break;
        if (t->val[node] >= 0) {
          best = j + 1 - i;
          best_val = t->val[node];
        }
      }
      if (!best) {
        i++;
        continue;
      }
      const tx_added *a = &tok->added[best_val];
      uint32_t start = i, stop = i + best;
      if ((a->flags & STROP_TOKEN_SINGLE_WORD) &&
          (word_before(w, &p, start) || word_at(w, &p, stop))) {
        i = stop;
        continue;
      }
      size_t k;
      if (a->flags & STROP_TOKEN_LSTRIP) {
        uint32_t b = start;
        while (b > done) {
          uint32_t c = b - 1;
          while (c > 0 && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
          if (!strop__tx_is_space(strop__tx_utf8_get((const char *)s + c, &k))) break;
          b = c;
        }
        start = b;
      }
      if (a->flags & STROP_TOKEN_RSTRIP)
        while (stop < p.len && strop__tx_is_space(strop__tx_utf8_get((const char *)s + stop, &k)))
          stop += (uint32_t)k;
      if (done < start && (st = strop__tx_push_piece(w, p.off + done, start - done, -1, p.flags)))
        return st;
      if ((st = strop__tx_push_piece(w, p.off + start, stop - start, a->id, p.flags))) return st;
      s = (const unsigned char *)w->s + p.off;
      done = i = stop;
    }
    if (done < p.len && (st = strop__tx_push_piece(w, p.off + done, p.len - done, -1, p.flags)))
      return st;
  }
  strop__tx_swap_pieces(w);
  return STROP_OK;
}

strop_status strop__tx_pieces(strop_tokenizer *tok, const char *text, size_t len) {
  tx_work *w = &tok->w;
  strop_status st = load_text(w, text, len);
  if (st) return st;
  w->np = w->nq = 0;
  if ((st = strop__tx_push_piece(w, 0, (uint32_t)w->n, -1, 0))) return st;
  strop__tx_swap_pieces(w);
  if (tok->have_araw && (st = split_added(tok, w, &tok->araw))) return st;
  if (tok->nnorm) {
    size_t n = 0;
    for (size_t i = 0; i < w->np; i++) {
      tx_piece p = w->p[i];
      if (p.id < 0)
        for (int k = 0; k < tok->nnorm; k++)
          if ((st = strop__tx_normalize(&tok->norm[k], w, &p))) return st;
      if (p.len || p.id >= 0) w->p[n++] = p;
    }
    w->np = n;
  }
  if (tok->have_anorm && (st = split_added(tok, w, &tok->anorm))) return st;
  for (int k = 0; k < tok->npre; k++)
    if ((st = strop__tx_pretokenize(&tok->pre[k], w))) return st;
  return STROP_OK;
}

strop_status strop__tx_encode_seq(strop_tokenizer *tok, const char *text, size_t len, int which) {
  tx_work *w = &tok->w;
  strop_status st = strop__tx_pieces(tok, text, len);
  if (st) return st;
  tx_enc *e = &w->seq[which];
  e->n = 0;
  for (size_t i = 0; i < w->np; i++) {
    const tx_piece *p = &w->p[i];
    if (p->id >= 0) {
      uint32_t a = p->len ? w->o0[p->off] : 0, b = p->len ? w->o1[p->off + p->len - 1] : 0;
      if ((st = strop__tx_enc_push(e, p->id, a, b, which, 0))) return st;
    } else if ((st = strop__tx_model_tokenize(tok, w, p, which, e))) {
      return st;
    }
  }
  /* SentencePiece joins a run of unknown pieces into one (without byte fallback) */
  if (tok->model.spm && !tok->model.byte_fallback && tok->model.unk >= 0) {
    size_t n = 0;
    for (size_t i = 0; i < e->n; i++) {
      if (n && e->id[i] == tok->model.unk && e->id[n - 1] == tok->model.unk) {
        e->o1[n - 1] = e->o1[i];
        continue;
      }
      e->id[n] = e->id[i];
      e->o0[n] = e->o0[i];
      e->o1[n] = e->o1[i];
      e->type[n] = e->type[i];
      e->special[n] = e->special[i];
      n++;
    }
    e->n = n;
  }
  return STROP_OK;
}

strop_status strop__tx_normalize_str(strop_tokenizer *tok, const char *s, size_t n, char **out,
                                     size_t *outn) {
  tx_work w = {0};
  *out = NULL;
  strop_status st = load_text(&w, s, n);
  tx_piece p = {0, (uint32_t)w.n, -1, 0};
  for (int k = 0; k < tok->nnorm && !st; k++) st = strop__tx_normalize(&tok->norm[k], &w, &p);
  if (!st) {
    *out = strop__tx_strndup(w.s ? w.s + p.off : "", p.len);
    *outn = p.len;
    if (!*out) st = STROP__NOMEM("strop_tokenizer_load");
  }
  strop__tx_work_free(&w);
  return st;
}

/* ---- truncation and the batch rows ---- */
static void truncate_to(tx_enc *e, size_t keep, int side) {
  if (e->n <= keep) return;
  if (side == STROP_SIDE_LEFT) {
    size_t drop = e->n - keep;
    memmove(e->id, e->id + drop, keep * sizeof *e->id);
    memmove(e->o0, e->o0 + drop, keep * sizeof *e->o0);
    memmove(e->o1, e->o1 + drop, keep * sizeof *e->o1);
    memmove(e->type, e->type + drop, keep);
    memmove(e->special, e->special + drop, keep);
  }
  e->n = keep;
}

/* Hugging Face's truncate_encodings for one row; max is what is left after special tokens. */
static strop_status truncate_row(tx_enc *a, tx_enc *b, int64_t max, int strategy, int side,
                                 int64_t row, const char *fn) {
  size_t total = a->n + (b ? b->n : 0);
  if ((int64_t)total <= max) return STROP_OK;
  size_t remove = total - (size_t)max, m = (size_t)max;
  switch (strategy) {
    case STROP_TRUNCATE_LONGEST_FIRST:
      if (!b) {
        truncate_to(a, m, side);
      } else {
        int swap = a->n > b->n;
        size_t s = swap ? b->n : a->n; /* the shorter */
        size_t l = s > m ? s : (s > m - s ? s : m - s);
        if (s + l > m) {
          s = m / 2;
          l = s + m % 2;
        }
        truncate_to(swap ? b : a, s, side);
        truncate_to(swap ? a : b, l, side);
      }
      return STROP_OK;
    case STROP_TRUNCATE_ONLY_FIRST:
    case STROP_TRUNCATE_ONLY_SECOND: {
      tx_enc *t = strategy == STROP_TRUNCATE_ONLY_FIRST ? a : b;
      if (!t)
        return strop__err(STROP_E_INVALID_ARG,
                          "%s: row %lld: truncation ONLY_SECOND needs a "
                          "text pair",
                          fn, (long long)row);
      if (t->n <= remove)
        return strop__err(STROP_E_INVALID_ARG,
                          "%s: row %lld: the %s text has %zu tokens, too few "
                          "to remove the %zu that exceed max_length",
                          fn, (long long)row, t == a ? "first" : "second", t->n, remove);
      truncate_to(t, t->n - remove, side);
      return STROP_OK;
    }
    default: return STROP_OK;
  }
}

static const strop_encode_options *resolve_opt(const strop_encode_options *in,
                                               strop_encode_options *out) {
  strop_encode_options_init(out);
  if (in) {
    size_t n = in->size < sizeof *out ? in->size : sizeof *out;
    if (n > sizeof out->size)
      memcpy((char *)out + sizeof out->size, (const char *)in + sizeof in->size,
             n - sizeof out->size);
  }
  return out;
}

static strop_status check_opt(const strop_tokenizer *tok, const strop_encode_options *o,
                              const char *fn) {
  if (o->max_length < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: opt->max_length must be >= 0, got %lld", fn,
                      (long long)o->max_length);
  if (o->truncation < STROP_TRUNCATE_NONE || o->truncation > STROP_TRUNCATE_ONLY_SECOND)
    return strop__err(STROP_E_INVALID_ARG, "%s: opt->truncation %d is not a strop_truncation", fn,
                      o->truncation);
  if (o->padding < STROP_PAD_NONE || o->padding > STROP_PAD_MAX_LENGTH)
    return strop__err(STROP_E_INVALID_ARG, "%s: opt->padding %d is not a strop_padding", fn,
                      o->padding);
  if ((o->truncation_side != 0 && o->truncation_side != 1) ||
      (o->padding_side != 0 && o->padding_side != 1))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: opt->truncation_side and padding_side must be "
                      "STROP_SIDE_RIGHT or STROP_SIDE_LEFT",
                      fn);
  if (o->padding == STROP_PAD_MAX_LENGTH && o->max_length <= 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: STROP_PAD_MAX_LENGTH needs opt->max_length > 0",
                      fn);
  if (o->pad_to_multiple_of < 0 || o->pad_id < -1 || o->pad_id >= tok->size ||
      o->pad_type_id < 0 || o->pad_type_id > 255)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: bad padding option (pad_to_multiple_of %lld, "
                      "pad_id %lld of %lld ids, pad_type_id %lld)",
                      fn, (long long)o->pad_to_multiple_of, (long long)o->pad_id,
                      (long long)tok->size, (long long)o->pad_type_id);
  return STROP_OK;
}

/* Encodes one row (text and optional pair) into w->out: tokens, truncation, template. */
static strop_status encode_row(strop_tokenizer *tok, const char *text, size_t len,
                               const char *pair, size_t plen, const strop_encode_options *o,
                               int64_t row, const char *fn) {
  tx_work *w = &tok->w;
  int has_pair = pair != NULL;
  strop_status st = strop__tx_encode_seq(tok, text, len, 0);
  if (!st && has_pair) st = strop__tx_encode_seq(tok, pair, plen, 1);
  if (st) return st;
  if (o->max_length > 0 && o->truncation != STROP_TRUNCATE_NONE) {
    int64_t added = o->add_special_tokens ? strop__tx_post_added(tok, has_pair) : 0;
    if (o->max_length < added)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: row %lld: max_length %lld cannot hold the %lld "
                        "special tokens of the template",
                        fn, (long long)row, (long long)o->max_length, (long long)added);
    if ((st = truncate_row(&w->seq[0], has_pair ? &w->seq[1] : NULL, o->max_length - added,
                           o->truncation, o->truncation_side, row, fn)))
      return st;
  }
  return strop__tx_post_process(tok, w, has_pair, o->add_special_tokens);
}

static int64_t pad_id_of(const strop_tokenizer *tok, const strop_encode_options *o) {
  return o->pad_id >= 0 ? o->pad_id : tok->role[STROP_ROLE_PAD];
}

static int64_t round_up(int64_t n, int64_t m) { return m > 0 && n % m ? n + (m - n % m) : n; }

/* ---- public calls ---- */
void strop_encode_options_init(strop_encode_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->add_special_tokens = 1;
  opt->truncation = STROP_TRUNCATE_LONGEST_FIRST;
  opt->padding = STROP_PAD_LONGEST;
  opt->pad_id = -1;
}

strop_status strop_tokenizer_encode(strop_tokenizer *tok, const char *text, size_t len,
                                    const strop_encode_options *opt, int64_t *ids, int64_t cap,
                                    int64_t *count) {
  const char *fn = "strop_tokenizer_encode";
  if (!tok || !count || (!text && len) || (!ids && cap) || cap < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s", fn,
                      !tok             ? "tok is NULL"
                      : !count         ? "count is NULL"
                      : (!text && len) ? "text is NULL but len > 0"
                      : cap < 0        ? "cap < 0"
                                       : "ids is NULL but cap > 0");
  if (len > TX_MAX_TEXT)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: a text of %zu bytes exceeds the limit of 2^31 - 1", fn, len);
  strop_encode_options o;
  resolve_opt(opt, &o);
  strop_status st = check_opt(tok, &o, fn);
  if (st) return st;
  if ((st = encode_row(tok, text ? text : "", len, NULL, 0, &o, 0, fn))) {
    strop__err_prefix("%s", fn);
    return st;
  }
  const tx_enc *e = &tok->w.out;
  int64_t n = (int64_t)e->n, total = n, pad = 0;
  if (o.padding == STROP_PAD_MAX_LENGTH) {
    int64_t target = round_up(o.max_length, o.pad_to_multiple_of);
    if (target > n) {
      pad = target - n;
      total = target;
    }
  }
  int64_t pid = pad_id_of(tok, &o);
  if (pad && pid < 0)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: padding needs a pad id: the tokenizer has no pad "
                      "token; set opt->pad_id or strop_tokenizer_set_special_id()",
                      fn);
  for (int64_t i = 0; i < total && i < cap; i++) {
    int64_t j = o.padding_side == STROP_SIDE_LEFT ? i - pad : i;
    ids[i] = (j >= 0 && j < n) ? e->id[j] : pid;
  }
  *count = total;
  return STROP_OK;
}

strop_status strop_tokenizer_encode_batch(strop_tokenizer *tok, const char *const *texts,
                                          const char *const *pairs, int64_t n,
                                          const strop_encode_options *opt, int64_t *ids,
                                          int64_t *type_ids, int64_t *mask, int64_t *offsets,
                                          int64_t cap, int64_t *width) {
  const char *fn = "strop_tokenizer_encode_batch";
  if (!tok || !texts || !width || n < 1 || cap < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s", fn,
                      !tok     ? "tok is NULL"
                      : !texts ? "texts is NULL"
                      : !width ? "width is NULL"
                      : n < 1  ? "n must be >= 1"
                               : "cap < 0");
  if (cap > 0 && !ids && !type_ids && !mask && !offsets)
    return strop__err(STROP_E_INVALID_ARG, "%s: cap > 0 but every output is NULL", fn);
  for (int64_t i = 0; i < n; i++) {
    if (!texts[i])
      return strop__err(STROP_E_INVALID_ARG, "%s: texts[%lld] is NULL", fn, (long long)i);
    size_t len = strlen(texts[i]), plen = pairs && pairs[i] ? strlen(pairs[i]) : 0;
    if (len > TX_MAX_TEXT || plen > TX_MAX_TEXT)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: row %lld: a text of %zu bytes exceeds the "
                        "limit of 2^31 - 1",
                        fn, (long long)i, len > plen ? len : plen);
  }
  strop_encode_options o;
  resolve_opt(opt, &o);
  strop_status st = check_opt(tok, &o, fn);
  if (st) return st;
  /* every row first (the width depends on all of them), kept in one buffer */
  tx_enc rows = {0};
  size_t *start = strop__malloc(((size_t)n + 1) * sizeof *start);
  if (!start) return STROP__NOMEM(fn);
  for (int64_t r = 0; r < n && !st; r++) {
    const char *p = pairs ? pairs[r] : NULL;
    st = encode_row(tok, texts[r], strlen(texts[r]), p, p ? strlen(p) : 0, &o, r, fn);
    start[r] = rows.n;
    const tx_enc *e = &tok->w.out;
    for (size_t i = 0; i < e->n && !st; i++)
      st = strop__tx_enc_push(&rows, e->id[i], e->o0[i], e->o1[i], e->type[i], e->special[i]);
  }
  start[n] = rows.n;
  if (st) {
    strop__err_prefix("%s", fn);
    goto done;
  }
  int64_t longest = 0;
  for (int64_t r = 0; r < n; r++)
    if ((int64_t)(start[r + 1] - start[r]) > longest)
      longest = (int64_t)(start[r + 1] - start[r]);
  int64_t wd = longest;
  if (o.padding == STROP_PAD_MAX_LENGTH && o.max_length > wd) wd = o.max_length;
  if (o.padding != STROP_PAD_NONE) wd = round_up(wd, o.pad_to_multiple_of);
  int64_t pid = pad_id_of(tok, &o);
  int needs_pad = 0;
  for (int64_t r = 0; r < n; r++) needs_pad |= (int64_t)(start[r + 1] - start[r]) < wd;
  if (needs_pad && o.padding != STROP_PAD_NONE && pid < 0) {
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: padding needs a pad id: the tokenizer has no pad "
                    "token; set opt->pad_id or strop_tokenizer_set_special_id()",
                    fn);
    goto done;
  }
  if (pid < 0) pid = 0;
  *width = wd;
  if (wd > 0 && n > INT64_MAX / wd) {
    st = strop__err(STROP_E_INVALID_ARG, "%s: the batch of %lld rows of %lld is too large", fn,
                    (long long)n, (long long)wd);
    goto done;
  }
  if (n * wd > cap) goto done; /* the caller learns the width and calls again */
  for (int64_t r = 0; r < n; r++) {
    int64_t len = (int64_t)(start[r + 1] - start[r]), pad = wd - len;
    for (int64_t c = 0; c < wd; c++) {
      int64_t j = o.padding_side == STROP_SIDE_LEFT ? c - pad : c;
      int real = j >= 0 && j < len;
      size_t k = start[r] + (size_t)(real ? j : 0);
      int64_t at = r * wd + c;
      if (ids) ids[at] = real ? rows.id[k] : pid;
      if (type_ids) type_ids[at] = real ? rows.type[k] : o.pad_type_id;
      if (mask) mask[at] = real;
      if (offsets) {
        int plain = real && !rows.special[k];
        offsets[2 * at] = plain ? rows.o0[k] : 0;
        offsets[2 * at + 1] = plain ? rows.o1[k] : 0;
      }
    }
  }
done:
  strop__free(start);
  strop__tx_enc_free(&rows);
  return st;
}

int64_t strop_tokenizer_decode(strop_tokenizer *tok, const int64_t *ids, int64_t n,
                               int skip_special, char *buf, size_t cap) {
  const char *fn = "strop_tokenizer_decode";
  if (!tok || (!ids && n) || n < 0 || (!buf && cap)) {
    strop__err(STROP_E_INVALID_ARG, "%s: %s", fn,
               !tok          ? "tok is NULL"
               : n < 0       ? "n < 0"
               : (!ids && n) ? "ids is NULL but n > 0"
                             : "buf is NULL but cap > 0");
    return -1;
  }
  return strop__tx_decode(tok, ids, n, skip_special, buf, cap, fn);
}

int64_t strop_tokenizer_vocab_size(const strop_tokenizer *tok) { return tok ? tok->size : -1; }

int64_t strop_tokenizer_token_to_id(const strop_tokenizer *tok, const char *token) {
  if (!tok || !token) {
    strop__err(STROP_E_INVALID_ARG, "strop_tokenizer_token_to_id: %s is NULL",
               !tok ? "tok" : "token");
    return -1;
  }
  int32_t id = token_id(tok, token, strlen(token));
  if (id < 0)
    strop__err(STROP_E_NOT_FOUND,
               "strop_tokenizer_token_to_id: \"%.80s\" is not in the "
               "vocabulary of %s",
               token, tok->source);
  return id;
}

int64_t strop_tokenizer_id_to_token(const strop_tokenizer *tok, int64_t id, char *buf,
                                    size_t cap) {
  const char *fn = "strop_tokenizer_id_to_token";
  if (!tok) {
    strop__err(STROP_E_INVALID_ARG, "%s: tok is NULL", fn);
    return -1;
  }
  size_t n;
  const char *s = id >= 0 && id < tok->size ? strop__tx_id_str(tok, (int32_t)id, &n) : NULL;
  if (!s) {
    strop__err(STROP_E_INVALID_ARG, "%s: id %lld is not an id of this tokenizer (0 .. %lld)", fn,
               (long long)id, (long long)tok->size - 1);
    return -1;
  }
  if (!buf && cap) {
    strop__err(STROP_E_INVALID_ARG, "%s: buf is NULL but cap is %zu", fn, cap);
    return -1;
  }
  if (cap) {
    size_t k = n < cap ? n : cap - 1;
    memcpy(buf, s, k);
    buf[k] = '\0';
  }
  return (int64_t)n;
}

int strop_tokenizer_token_flags(const strop_tokenizer *tok, int64_t id) {
  if (!tok || id < 0 || id >= tok->size) {
    strop__err(STROP_E_INVALID_ARG, "strop_tokenizer_token_flags: %s",
               !tok ? "tok is NULL" : "id out of range");
    return -1;
  }
  int32_t a = tok->added_idx[id];
  return a >= 0 ? tok->added[a].flags | STROP_TOKEN_ADDED : 0;
}

strop_status strop_tokenizer_add_token(strop_tokenizer *tok, const char *content, int flags,
                                       int64_t *id) {
  const char *fn = "strop_tokenizer_add_token";
  int known = STROP_TOKEN_SPECIAL | STROP_TOKEN_SINGLE_WORD | STROP_TOKEN_LSTRIP |
              STROP_TOKEN_RSTRIP | STROP_TOKEN_NORMALIZED;
  if (!tok || !content || !content[0])
    return strop__err(STROP_E_INVALID_ARG, "%s: %s", fn,
                      !tok       ? "tok is NULL"
                      : !content ? "content is NULL"
                                 : "content is empty");
  if (flags & ~known)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: flags 0x%x has bits that are not strop_token_flag "
                      "values",
                      fn, (unsigned)flags);
  size_t len = strlen(content);
  /* on failure the tokenizer must stay as it was: remember what to undo */
  int n0 = tok->nadded, old_flags = -1, at = -1;
  for (int i = 0; i < tok->nadded; i++)
    if (tok->added[i].len == len && !memcmp(tok->added[i].content, content, len)) {
      at = i;
      old_flags = tok->added[i].flags;
    }
  strop_status st = strop__tx_add(tok, content, len, -1, flags, fn);
  if (!st) st = strop__tx_finish(tok, fn);
  if (st) {
    if (tok->nadded > n0) {
      strop__free(tok->added[tok->nadded - 1].content);
      tok->nadded = n0;
    }
    if (at >= 0) tok->added[at].flags = old_flags;
    return st;
  }
  if (id) *id = token_id(tok, content, len);
  return STROP_OK;
}

int64_t strop_tokenizer_special_id(const strop_tokenizer *tok, int role) {
  if (!tok || role < 0 || role >= TX_ROLES) return -1;
  return tok->role[role];
}

strop_status strop_tokenizer_set_special_id(strop_tokenizer *tok, int role, int64_t id) {
  const char *fn = "strop_tokenizer_set_special_id";
  if (!tok) return strop__err(STROP_E_INVALID_ARG, "%s: tok is NULL", fn);
  if (role < 0 || role >= TX_ROLES)
    return strop__err(STROP_E_INVALID_ARG, "%s: role %d is not a strop_token_role", fn, role);
  if (id < -1 || id >= tok->size)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: id %lld is not -1 or an id of this tokenizer "
                      "(0 .. %lld)",
                      fn, (long long)id, (long long)tok->size - 1);
  tok->role[role] = (int32_t)id;
  return STROP_OK;
}
