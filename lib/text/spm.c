/* SPDX-License-Identifier: MIT */
/* strop — SentencePiece .model files: the few fields of the ModelProto protobuf the encoder needs
 * (pieces, model type, byte fallback, special ids, the normalizer spec), read with every length
 * checked; the result runs SentencePiece's own normalizer, unigram or BPE and decoder rules. */
#include <stdio.h>
#include <string.h>

#include "text/text_impl.h"

#define FN "strop_tokenizer_load"

typedef struct pb {
  const uint8_t *p, *end;
  const char *file;
  const char *where; /* the message being read, for errors */
} pb;

static strop_status pb_err(const pb *b, const char *what) {
  return strop__err(STROP_E_FORMAT, "%s: %s: not a SentencePiece model: %s: %s", FN, b->file,
                    b->where, what);
}

static strop_status varint(pb *b, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (b->p >= b->end) return pb_err(b, "a varint runs past the end");
    uint8_t c = *b->p++;
    x |= (uint64_t)(c & 0x7F) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return STROP_OK;
    }
  }
  return pb_err(b, "a varint is longer than 10 bytes");
}

/* One field: its number and wire type; for length-delimited fields the payload. */
typedef struct pbfield {
  uint32_t num;
  int wire;
  uint64_t v;          /* varint value, or the 32/64-bit value */
  const uint8_t *data; /* wire type 2 */
  size_t len;
} pbfield;

static strop_status next_field(pb *b, pbfield *f) {
  uint64_t key;
  strop_status st = varint(b, &key);
  if (st) return st;
  f->num = (uint32_t)(key >> 3);
  f->wire = (int)(key & 7);
  if (f->num == 0 || key >> 32) return pb_err(b, "a field number is 0 or too large");
  switch (f->wire) {
    case 0: return varint(b, &f->v);
    case 1:
      if (b->end - b->p < 8) return pb_err(b, "a 64-bit field runs past the end");
      f->v = 0;
      for (int i = 0; i < 8; i++) f->v |= (uint64_t)b->p[i] << (8 * i);
      b->p += 8;
      return STROP_OK;
    case 5:
      if (b->end - b->p < 4) return pb_err(b, "a 32-bit field runs past the end");
      f->v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 |
             (uint64_t)b->p[3] << 24;
      b->p += 4;
      return STROP_OK;
    case 2: {
      uint64_t n;
      if ((st = varint(b, &n))) return st;
      if (n > (uint64_t)(b->end - b->p)) return pb_err(b, "a field's length runs past the end");
      f->data = b->p;
      f->len = (size_t)n;
      b->p += n;
      return STROP_OK;
    }
    default: return pb_err(b, "an unknown wire type (groups are not used by this format)");
  }
}

typedef struct spec {
  int model_type, byte_fallback, ws_suffix;
  int64_t unk_id, bos_id, eos_id, pad_id;
  const uint8_t *unk_surface;
  size_t unk_surface_len;
  const uint8_t *charsmap;
  size_t charsmap_len;
  int add_dummy_prefix, remove_ws, escape_ws;
} spec;

static int64_t as_int32(uint64_t v) { return (int64_t)(int32_t)(uint32_t)v; }

static strop_status read_trainer(pb *parent, const pbfield *f, spec *s) {
  pb b = {f->data, f->data + f->len, parent->file, "trainer_spec"};
  pbfield g;
  while (b.p < b.end) {
    strop_status st = next_field(&b, &g);
    if (st) return st;
    switch (g.num) {
      case 3: s->model_type = (int)g.v; break;
      case 24: s->ws_suffix = g.v != 0; break;
      case 35: s->byte_fallback = g.v != 0; break;
      case 40: s->unk_id = as_int32(g.v); break;
      case 41: s->bos_id = as_int32(g.v); break;
      case 42: s->eos_id = as_int32(g.v); break;
      case 43: s->pad_id = as_int32(g.v); break;
      case 44:
        if (g.wire != 2) return pb_err(&b, "unk_surface is not a string");
        s->unk_surface = g.data;
        s->unk_surface_len = g.len;
        break;
      default: break;
    }
  }
  return STROP_OK;
}

static strop_status read_normalizer(pb *parent, const pbfield *f, spec *s) {
  pb b = {f->data, f->data + f->len, parent->file, "normalizer_spec"};
  pbfield g;
  while (b.p < b.end) {
    strop_status st = next_field(&b, &g);
    if (st) return st;
    switch (g.num) {
      case 2:
        if (g.wire != 2) return pb_err(&b, "precompiled_charsmap is not bytes");
        s->charsmap = g.data;
        s->charsmap_len = g.len;
        break;
      case 3: s->add_dummy_prefix = g.v != 0; break;
      case 4: s->remove_ws = g.v != 0; break;
      case 5: s->escape_ws = g.v != 0; break;
      default: break;
    }
  }
  return STROP_OK;
}

strop_status strop__tx_load_spm(const uint8_t *data, size_t n, const char *where, int add_bos,
                                int add_eos, strop_tokenizer **out) {
  *out = NULL;
  pb b = {data, data + n, where, "ModelProto"};
  spec s = {1, 0, 0, 0, 1, 2, -1, (const uint8_t *)" \xE2\x81\x87 ", 5, NULL, 0, 1, 1, 1};
  strop_tokenizer *t = NULL;
  strop_status st = strop__tx_new(where, TX_FROM_SPM, &t);
  if (st) return st;
  tx_model *m = &t->model;
  m->spm = 1;
  size_t cap = 0;
  int32_t np = 0;
  pbfield f;
  char msg[160];
  while (b.p < b.end) {
    if ((st = next_field(&b, &f))) goto fail;
    if (f.num == 2 && f.wire == 2) {
      if ((st = read_trainer(&b, &f, &s))) goto fail;
    } else if (f.num == 3 && f.wire == 2) {
      if ((st = read_normalizer(&b, &f, &s))) goto fail;
    } else if (f.num == 1) {
      if (f.wire != 2) {
        st = pb_err(&b, "a piece is not a message");
        goto fail;
      }
      if (np >= TX_MAX_IDS) {
        st = pb_err(&b, "too many pieces");
        goto fail;
      }
      pb pbp = {f.data, f.data + f.len, where, "pieces"};
      const uint8_t *piece = NULL;
      size_t plen = 0;
      float score = 0;
      int type = TX_SP_NORMAL;
      pbfield g;
      while (pbp.p < pbp.end) {
        if ((st = next_field(&pbp, &g))) goto fail;
        if (g.num == 1 && g.wire == 2) {
          piece = g.data;
          plen = g.len;
        } else if (g.num == 2 && g.wire == 5) {
          uint32_t bits = (uint32_t)g.v;
          memcpy(&score, &bits, sizeof score);
        } else if (g.num == 3 && g.wire == 0) {
          type = (int)g.v;
        }
      }
      if (!piece || !plen || plen >= TX_MAX_TOKEN_BYTES ||
          !strop__tx_utf8_check((const char *)piece, plen)) {
        snprintf(msg, sizeof msg, "piece %d is empty, too long or not UTF-8", np);
        st = pb_err(&b, msg);
        goto fail;
      }
      if (type < TX_SP_NORMAL || type > TX_SP_BYTE) {
        snprintf(msg, sizeof msg, "piece %d has the unknown type %d", np, type);
        st = pb_err(&b, msg);
        goto fail;
      }
      if (strop__tx_vocab_find(&m->vocab, (const char *)piece, plen) >= 0) {
        snprintf(msg, sizeof msg, "piece %d \"%.*s\" is defined twice", np,
                 (int)(plen > 60 ? 60 : plen), (const char *)piece);
        st = pb_err(&b, msg);
        goto fail;
      }
      if ((size_t)np >= cap) {
        size_t c1 = cap, c2 = cap;
        if (strop__tx_reserve((void **)&m->score, &c1, (size_t)np + 1, sizeof *m->score) ||
            strop__tx_reserve((void **)&m->ptype, &c2, (size_t)np + 1, 1)) {
          st = STROP__NOMEM(FN);
          goto fail;
        }
        cap = c1 < c2 ? c1 : c2;
      }
      if ((st = strop__tx_vocab_put(&m->vocab, np, (const char *)piece, plen))) goto fail;
      m->score[np] = score;
      m->ptype[np] = (uint8_t)type;
      if (type == TX_SP_UNKNOWN) {
        if (m->unk >= 0) {
          st = pb_err(&b, "more than one unknown piece");
          goto fail;
        }
        m->unk = np;
      }
      if (type == TX_SP_USER) m->has_user = 1;
      np++;
    }
  }
  if (!np) {
    st = pb_err(&b, "no pieces");
    goto fail;
  }
  if (m->unk < 0) {
    st = pb_err(&b, "no unknown piece (<unk>)");
    goto fail;
  }
  if (s.model_type != 1 && s.model_type != 2) {
    st = strop__err(STROP_E_UNSUPPORTED,
                    "%s: %s: SentencePiece model_type %d (%s) is not "
                    "supported (supported: UNIGRAM, BPE)",
                    FN, where, s.model_type,
                    s.model_type == 3   ? "WORD"
                    : s.model_type == 4 ? "CHAR"
                                        : "unknown");
    goto fail;
  }
  m->kind = s.model_type == 1 ? TX_M_UNIGRAM : TX_M_BPE;
  m->byte_fallback = s.byte_fallback;
  /* the normalizer */
  t->norm = strop__calloc(1, sizeof *t->norm);
  if (!t->norm) {
    st = STROP__NOMEM(FN);
    goto fail;
  }
  t->nnorm = 1;
  tx_norm *nm = t->norm;
  nm->kind = TX_N_SPM;
  nm->add_dummy_prefix = s.add_dummy_prefix;
  nm->remove_ws = s.remove_ws;
  nm->escape_ws = s.escape_ws;
  nm->ws_suffix = s.ws_suffix;
  if (s.charsmap_len) {
    char w2[600];
    snprintf(w2, sizeof w2, "%s: normalizer_spec", where);
    if ((st = strop__tx_charsmap_init(&nm->map, s.charsmap, s.charsmap_len, FN, w2))) goto fail;
  }
  if (m->has_user) {
    nm->user = strop__malloc(sizeof *nm->user);
    if (!nm->user || (st = strop__tx_trie_init(nm->user))) {
      strop__free(nm->user);
      nm->user = NULL;
      if (!st) st = STROP__NOMEM(FN);
      goto fail;
    }
    for (int32_t id = 0; id < np; id++) {
      size_t k = 0;
      const char *p = strop__tx_vocab_str(&m->vocab, id, &k);
      if (m->ptype[id] == TX_SP_USER && (st = strop__tx_trie_add(nm->user, p, k, id))) goto fail;
    }
  }
  /* BPE words never span a space symbol unless a piece holds one inside: split there first */
  if (m->kind == TX_M_BPE && nm->escape_ws && !nm->ws_suffix) {
    int inner = 0;
    for (int32_t id = 0; id < np && !inner; id++) {
      size_t k = 0;
      const char *p = strop__tx_vocab_str(&m->vocab, id, &k);
      for (size_t i = 1; i + 3 <= k; i++)
        if (!memcmp(p + i, "\xe2\x96\x81", 3)) inner = 1;
    }
    if (!inner) {
      t->pre = strop__calloc(1, sizeof *t->pre);
      if (!t->pre) {
        st = STROP__NOMEM(FN);
        goto fail;
      }
      t->npre = 1;
      t->pre->kind = TX_P_SPM_SPLIT;
    }
  }
  t->dec = strop__calloc(1, sizeof *t->dec);
  if (!t->dec) {
    st = STROP__NOMEM(FN);
    goto fail;
  }
  t->ndec = 1;
  t->dec->kind = TX_D_SPM;
  t->dec->start = s.add_dummy_prefix;
  t->dec->stop = s.remove_ws;
  t->dec->a = strop__tx_strndup((const char *)s.unk_surface, s.unk_surface_len);
  t->dec->an = s.unk_surface_len;
  if (!t->dec->a) {
    st = STROP__NOMEM(FN);
    goto fail;
  }
  if ((st = strop__tx_model_finish(m, FN, where))) goto fail;
  t->spm_add_bos = add_bos;
  t->spm_add_eos = add_eos;
  t->role[STROP_ROLE_UNK] = m->unk;
  int64_t ids[3] = {s.bos_id, s.eos_id, s.pad_id};
  int roles[3] = {STROP_ROLE_BOS, STROP_ROLE_EOS, STROP_ROLE_PAD};
  for (int k = 0; k < 3; k++)
    if (ids[k] >= 0 && ids[k] < np) t->role[roles[k]] = (int32_t)ids[k];
  if ((add_bos && t->role[STROP_ROLE_BOS] < 0) || (add_eos && t->role[STROP_ROLE_EOS] < 0)) {
    st = strop__err(STROP_E_INVALID_ARG,
                    "%s: %s: add_bos/add_eos asked for, but the model has "
                    "no %s id",
                    FN, where, add_bos && t->role[STROP_ROLE_BOS] < 0 ? "bos" : "eos");
    goto fail;
  }
  if ((st = strop__tx_finish(t, FN))) goto fail;
  *out = t;
  return STROP_OK;
fail:
  strop_tokenizer_free(t);
  return st;
}
