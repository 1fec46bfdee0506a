/* SPDX-License-Identifier: MIT */
/* strop — post-processors: the templates that put special tokens around one text or a pair
 * ([CLS] A [SEP] B [SEP], <s> A </s></s> B </s>, BOS/EOS) with their type ids, and the byte-level
 * offset trimming of GPT-2-style tokenizers. */
#include <string.h>

#include "text/text_impl.h"

void strop__tx_post_free(tx_post *p) {
  strop__free(p->single);
  strop__free(p->pair);
  for (int i = 0; i < p->nsp; i++) {
    strop__free(p->sp[i].name);
    strop__free(p->sp[i].ids);
    for (int j = 0; j < p->sp[i].n; j++) strop__free(p->sp[i].tokens ? p->sp[i].tokens[j] : NULL);
    strop__free(p->sp[i].tokens);
  }
  strop__free(p->sp);
  memset(p, 0, sizeof *p);
}

/* The post-processor that places the sequences: the last template-like one. */
static const tx_post *template_of(const strop_tokenizer *tok) {
  const tx_post *t = NULL;
  for (int i = 0; i < tok->npost; i++)
    if (tok->post[i].kind != TX_Q_BYTELEVEL) t = &tok->post[i];
  return t;
}

int strop__tx_post_added(const strop_tokenizer *tok, int pair) {
  const tx_post *t = template_of(tok);
  int n = 0;
  if (t) {
    const tx_tpiece *v = pair ? t->pair : t->single;
    int nv = pair ? t->npair : t->nsingle;
    for (int i = 0; i < nv; i++)
      if (v[i].special >= 0) n += t->sp[v[i].special].n;
  }
  if (tok->origin == TX_FROM_SPM) n += (tok->spm_add_bos + tok->spm_add_eos) * (pair ? 2 : 1);
  return n;
}

/* Hugging Face's ByteLevel offset trimming: a token's leading and trailing spaces (GPT-2's
 * U+0120 or whitespace) are not part of the text it stands for. */
static void trim_offsets(const strop_tokenizer *tok, tx_enc *e, int add_prefix_space) {
  for (size_t i = 0; i < e->n; i++) {
    size_t n;
    const char *s = strop__tx_id_str(tok, e->id[i], &n);
    if (!s || !n) continue;
    uint32_t lead = 0, trail = 0;
    size_t at = 0, k;
    while (at < n) {
      uint32_t cp = strop__tx_utf8_get(s + at, &k);
      if (cp != 0x120 && !strop__tx_is_space(cp)) break;
      lead++;
      at += k;
    }
    if (at < n) {
      size_t end = n;
      while (end > at) {
        size_t b = end - 1;
        while (b > at && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
        uint32_t cp = strop__tx_utf8_get(s + b, &k);
        if (cp != 0x120 && !strop__tx_is_space(cp)) break;
        trail++;
        end = b;
      }
    } else {
      trail = lead; /* a token of spaces only: Rust counts it from both ends */
    }
    if (lead) {
      int first = i == 0 || e->o0[i] == 0;
      if (first && add_prefix_space && lead == 1) lead = 0;
      uint32_t a = e->o0[i] + lead;
      e->o0[i] = a < e->o1[i] ? a : e->o1[i];
    }
    if (trail && e->o1[i] >= trail) {
      uint32_t b = e->o1[i] - trail;
      e->o1[i] = b > e->o0[i] ? b : e->o0[i];
    }
  }
}

static strop_status append_seq(tx_enc *out, const tx_enc *in, int type) {
  for (size_t i = 0; i < in->n; i++) {
    strop_status st = strop__tx_enc_push(out, in->id[i], in->o0[i], in->o1[i],
                                         type < 0 ? in->type[i] : type, in->special[i]);
    if (st) return st;
  }
  return STROP_OK;
}

strop_status strop__tx_post_process(strop_tokenizer *tok, tx_work *w, int has_pair,
                                    int add_special) {
  for (int i = 0; i < tok->npost; i++) {
    const tx_post *p = &tok->post[i];
    if ((p->kind == TX_Q_BYTELEVEL || p->kind == TX_Q_ROBERTA) && p->trim_offsets)
      for (int s = 0; s <= has_pair; s++) trim_offsets(tok, &w->seq[s], p->add_prefix_space);
  }
  tx_enc *out = &w->out;
  out->n = 0;
  strop_status st = STROP_OK;
  if (tok->origin == TX_FROM_SPM) {
    /* SentencePiece: optional BOS/EOS around each text */
    for (int s = 0; s <= has_pair && !st; s++) {
      if (add_special && tok->spm_add_bos && tok->role[STROP_ROLE_BOS] >= 0)
        st = strop__tx_enc_push(out, tok->role[STROP_ROLE_BOS], 0, 0, s, 1);
      if (!st) st = append_seq(out, &w->seq[s], s);
      if (!st && add_special && tok->spm_add_eos && tok->role[STROP_ROLE_EOS] >= 0)
        st = strop__tx_enc_push(out, tok->role[STROP_ROLE_EOS], 0, 0, s, 1);
    }
    return st;
  }
  const tx_post *t = template_of(tok);
  if (!t) {
    st = append_seq(out, &w->seq[0], -1);
    if (!st && has_pair) st = append_seq(out, &w->seq[1], -1);
    return st;
  }
  const tx_tpiece *v = has_pair ? t->pair : t->single;
  int nv = has_pair ? t->npair : t->nsingle;
  for (int i = 0; i < nv && !st; i++) {
    if (v[i].special < 0) {
      if (v[i].seq <= has_pair) st = append_seq(out, &w->seq[v[i].seq], v[i].type_id);
    } else if (add_special) {
      const tx_tspecial *sp = &t->sp[v[i].special];
      for (int j = 0; j < sp->n && !st; j++)
        st = strop__tx_enc_push(out, sp->ids[j], 0, 0, v[i].type_id, 1);
    }
  }
  return st;
}
