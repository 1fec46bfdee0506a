/* SPDX-License-Identifier: MIT */
/* strop — the text module's private types: the tokenizer's pipeline (normalizers,
 * pre-tokenizers, model, post-processors, decoders) and the work buffers one encode uses. */
#ifndef STROP_TEXT_IMPL_H
#define STROP_TEXT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#  define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "core/core.h"
#include "strop/text.h"

/* Limits that keep hostile files bounded (ids fit an int32, offsets a uint32). */
#define TX_MAX_IDS (1 << 24)     /* ids of one vocabulary */
#define TX_MAX_TOKEN_BYTES 65536 /* bytes of one vocabulary token */
#define TX_MAX_TEXT 0x7FFFFFFFu  /* bytes of one text */
#define TX_NONE UINT32_MAX

/* ---- small helpers (util.c) ---- */
/* A 64-bit key to a well-spread hash (every input bit reaches the low bits that index). */
static inline uint64_t strop__tx_mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  return k ^ (k >> 33);
}
/* Grows *p (elements of elem bytes, capacity *cap) to hold at least need elements. */
strop_status strop__tx_reserve(void **p, size_t *cap, size_t need, size_t elem);
uint64_t strop__tx_hash(const void *p, size_t n);
char *strop__tx_strndup(const char *s, size_t n);

/* UTF-8 of text that is known to be valid. */
uint32_t strop__tx_utf8_get(const char *s, size_t *len);
size_t strop__tx_utf8_put(uint32_t cp, char out[4]);
/* Length of the valid UTF-8 character at s (n bytes left), 0 if invalid; the invalid unit's
 * length (maximal subpart, >= 1) in *bad. */
size_t strop__tx_utf8_valid(const unsigned char *s, size_t n, size_t *bad);
int strop__tx_utf8_check(const char *s, size_t n); /* 1 if all of s is valid UTF-8 */

/* Character classes, as Hugging Face's tokenizers define them (Rust's char methods). */
int strop__tx_is_space(uint32_t cp);   /* White_Space */
int strop__tx_is_control(uint32_t cp); /* BERT: category C*, except \t \n \r */
int strop__tx_is_punct(uint32_t cp);   /* ASCII punctuation or category P* */
int strop__tx_is_cjk(uint32_t cp);     /* BERT's CJK ideograph blocks */
int strop__tx_is_numeric(uint32_t cp); /* category N* */
int strop__tx_is_word(uint32_t cp);    /* regex \w: letters, marks, Nd, Nl, Pc, ZWJ/ZWNJ */
int strop__tx_is_mn(uint32_t cp);      /* category Mn */

/* GPT-2's byte <-> character map (bytes_to_unicode). */
uint32_t strop__tx_byte_char(uint8_t b);
int strop__tx_char_byte(uint32_t cp); /* -1 for a character outside the map */

/* ---- a vocabulary: token strings by id, and a hash from string to id ---- */
typedef struct tx_vocab {
  char *blob;
  size_t blen, bcap;
  uint32_t *off, *len; /* per id; len TX_NONE: the id has no token */
  int32_t n;           /* ids 0 .. n-1 */
  size_t idcap;
  int32_t *slot; /* open addressing over ids, -1 empty */
  size_t nslot;
  int32_t count; /* ids that have a token */
} tx_vocab;
void strop__tx_vocab_free(tx_vocab *v);
int32_t strop__tx_vocab_find(const tx_vocab *v, const char *s, size_t n);
/* Sizes the hash for count tokens (so filling it never rehashes). */
strop_status strop__tx_vocab_reserve(tx_vocab *v, size_t count);
/* Gives id the token s (id must not have one yet and s must not be present). */
strop_status strop__tx_vocab_put(tx_vocab *v, int32_t id, const char *s, size_t n);
/* Gives token of id `from` the id `to` (which has none); `from` is left without a token. */
strop_status strop__tx_vocab_move(tx_vocab *v, int32_t from, int32_t to);
static inline const char *strop__tx_vocab_str(const tx_vocab *v, int32_t id, size_t *n) {
  if (id < 0 || id >= v->n || v->len[id] == TX_NONE) return NULL;
  *n = v->len[id];
  return v->blob + v->off[id];
}

/* ---- id pairs -> (rank, merged id): BPE merges ---- */
typedef struct tx_pair {
  uint64_t key; /* a << 32 | b; UINT64_MAX empty */
  int32_t rank, to;
} tx_pair;
typedef struct tx_pairs {
  tx_pair *slot; /* one cache line holds a pair's key and its answer */
  size_t nslot, n;
} tx_pairs;
void strop__tx_pairs_free(tx_pairs *p);
strop_status strop__tx_pairs_put(tx_pairs *p, int32_t a, int32_t b, int32_t rank, int32_t to);
/* The pair's entry, or NULL. */
static inline const tx_pair *strop__tx_pairs_find(const tx_pairs *p, int32_t a, int32_t b) {
  if (!p->nslot) return NULL;
  uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
  size_t m = p->nslot - 1, i = (size_t)strop__tx_mix64(k) & m;
  while (p->slot[i].key != UINT64_MAX) {
    if (p->slot[i].key == k) return &p->slot[i];
    i = (i + 1) & m;
  }
  return NULL;
}

/* ---- a byte trie (transitions hashed): prefix searches of vocabularies, added tokens ---- */
typedef struct tx_trie {
  int32_t root[256]; /* child of the root per byte, -1 none */
  uint64_t *ekey;    /* (node << 8 | byte) + 1; 0 empty */
  int32_t *echild;
  size_t nslot, nedge;
  int32_t *val; /* per node: value or -1 */
  int32_t nnode;
  size_t nodecap;
} tx_trie;
strop_status strop__tx_trie_init(tx_trie *t);
void strop__tx_trie_free(tx_trie *t);
strop_status strop__tx_trie_add(tx_trie *t, const char *s, size_t n, int32_t value);
/* The child of node by byte b, or -1 (node 0 is the root). */
static inline int32_t strop__tx_trie_step(const tx_trie *t, int32_t node, uint8_t b) {
  if (node == 0) return t->root[b];
  if (!t->nslot) return -1;
  uint64_t k = ((uint64_t)(uint32_t)node << 8 | b) + 1;
  size_t m = t->nslot - 1, i = (size_t)strop__tx_mix64(k) & m;
  while (t->ekey[i]) {
    if (t->ekey[i] == k) return t->echild[i];
    i = (i + 1) & m;
  }
  return -1;
}

/* ---- patterns: a literal string or a PCRE2 regex (Hugging Face's Split, Replace) ---- */
enum { TX_PAT_STRING = 0, TX_PAT_REGEX = 1 };
typedef struct tx_pattern {
  int kind;
  char *src;
  size_t srclen;
  pcre2_code *re;
} tx_pattern;
/* where names the component for the error sentence ("pre_tokenizer.pattern"). */
strop_status strop__tx_pattern_compile(tx_pattern *p, int kind, const char *src, size_t n,
                                       const char *fn, const char *where);
void strop__tx_pattern_free(tx_pattern *p);
/* The pattern the GPT-2 ByteLevel pre-tokenizer splits with, compiled once per tokenizer. */
extern const char strop__tx_gpt2_regex[];

/* ---- the work buffers of one encode ---- */
enum { TX_PIECE_BYTES = 1 }; /* the piece's bytes still need GPT-2's byte-to-char map */
typedef struct tx_piece {
  uint32_t off, len; /* in the work text */
  int32_t id;        /* >= 0: an added token, final */
  uint32_t flags;
} tx_piece;

typedef struct tx_range {
  uint32_t a, b; /* [a, b) in a piece */
  int match;
} tx_range;

/* A sequence of tokens with their original byte offsets. */
typedef struct tx_enc {
  int32_t *id;
  uint32_t *o0, *o1;
  uint8_t *type, *special;
  size_t n, cap;
} tx_enc;
strop_status strop__tx_enc_push(tx_enc *e, int32_t id, uint32_t o0, uint32_t o1, int type,
                                int special);
void strop__tx_enc_free(tx_enc *e);

#define TX_SCRATCH 8
typedef struct tx_work {
  char *s;           /* the work text: every piece's bytes, appended as they are made */
  uint32_t *o0, *o1; /* per byte: the original bytes [o0, o1) it came from */
  size_t n, cap;
  tx_piece *p, *q; /* the current pieces, and the next ones a stage builds */
  size_t np, nq, pcap, qcap;
  tx_range *r;
  size_t nr, rcap;
  tx_enc seq[2], out;
  pcre2_match_data *md;
  pcre2_general_context *gctx;
  void *scratch[TX_SCRATCH];
  size_t scratch_cap[TX_SCRATCH];
} tx_work;
void strop__tx_work_free(tx_work *w);
void *strop__tx_scratch(tx_work *w, int slot, size_t bytes);
/* Appends n bytes that all come from the original range [o0, o1). */
strop_status strop__tx_emit(tx_work *w, const char *s, size_t n, uint32_t o0, uint32_t o1);
/* Appends w->s[from .. from + n) with its own alignment (a copy inside the work text). */
strop_status strop__tx_emit_copy(tx_work *w, size_t from, size_t n);
strop_status strop__tx_push_piece(tx_work *w, uint32_t off, uint32_t len, int32_t id,
                                  uint32_t flags);
/* Makes w->q the current piece list. */
void strop__tx_swap_pieces(tx_work *w);
/* Rewrites a TX_PIECE_BYTES piece as GPT-2's byte characters. */
strop_status strop__tx_materialize(tx_work *w, tx_piece *p);
/* Finds matches of a pattern in s[0..n): w->r gets ranges covering s. */
strop_status strop__tx_find_matches(tx_work *w, const tx_pattern *pat, const char *s, size_t n);
/* The match data for a pattern (reallocated when too small). */
pcre2_match_data *strop__tx_match_data(tx_work *w, const tx_pattern *pat);

/* ---- normalizers ---- */
enum {
  TX_N_NFC,
  TX_N_NFD,
  TX_N_NFKC,
  TX_N_NFKD,
  TX_N_LOWERCASE,
  TX_N_STRIP_ACCENTS,
  TX_N_BERT,
  TX_N_REPLACE,
  TX_N_PREPEND,
  TX_N_STRIP,
  TX_N_PRECOMPILED,
  TX_N_SPM
};
typedef struct tx_charsmap {
  uint8_t *blob; /* the whole precompiled_charsmap (owned) */
  size_t nblob;
  const uint32_t *unit; /* the double-array trie inside blob (aligned copy) */
  uint32_t *unit_own;
  size_t nunit;
  const char *norm; /* the NUL-separated replacement strings */
  size_t nnorm;
} tx_charsmap;
typedef struct tx_norm {
  int kind;
  int clean_text, chinese, strip_accents, lowercase; /* BertNormalizer */
  int strip_accents_null;                            /* BertNormalizer's strip_accents: null */
  int left, right;                                   /* Strip */
  char *str;                                         /* Prepend's text, Replace's content */
  size_t strn;
  tx_pattern pat;                                        /* Replace */
  tx_charsmap map;                                       /* Precompiled, SentencePiece */
  int add_dummy_prefix, remove_ws, escape_ws, ws_suffix; /* SentencePiece */
  tx_trie *user;                                         /* SentencePiece user-defined symbols */
} tx_norm;
void strop__tx_norm_free(tx_norm *n);
strop_status strop__tx_charsmap_init(tx_charsmap *m, const uint8_t *blob, size_t n,
                                     const char *fn, const char *where);
/* Normalizes the piece in place (its bytes are re-emitted at the end of the work text). */
strop_status strop__tx_normalize(const tx_norm *n, tx_work *w, tx_piece *p);

/* ---- pre-tokenizers ---- */
enum {
  TX_P_BYTELEVEL,
  TX_P_SPLIT,
  TX_P_WHITESPACE,
  TX_P_WSSPLIT,
  TX_P_BERT,
  TX_P_METASPACE,
  TX_P_DIGITS,
  TX_P_PUNCT,
  TX_P_SPM_SPLIT
};
enum { TX_B_REMOVED, TX_B_ISOLATED, TX_B_MERGED_PREV, TX_B_MERGED_NEXT, TX_B_CONTIGUOUS };
enum { TX_PREPEND_ALWAYS, TX_PREPEND_FIRST, TX_PREPEND_NEVER };
typedef struct tx_pretok {
  int kind;
  int add_prefix_space, use_regex, trim_offsets; /* ByteLevel */
  tx_pattern pat;                                /* Split (and ByteLevel's regex) */
  int behavior, invert;                          /* Split, Punctuation */
  char *repl;                                    /* Metaspace */
  size_t repln;
  uint32_t repl_cp;
  int prepend_scheme, split, legacy; /* Metaspace (legacy: add_prefix_space) */
  int individual_digits;             /* Digits */
} tx_pretok;
void strop__tx_pretok_free(tx_pretok *p);
/* Splits every piece of w->p that is not an added token. */
strop_status strop__tx_pretokenize(const tx_pretok *pt, tx_work *w);
const char *strop__tx_behavior_name(int b);

/* ---- models ---- */
enum { TX_M_BPE, TX_M_WORDPIECE, TX_M_UNIGRAM, TX_M_WORDLEVEL };
/* SentencePiece piece types */
enum {
  TX_SP_NORMAL = 1,
  TX_SP_UNKNOWN = 2,
  TX_SP_CONTROL = 3,
  TX_SP_USER = 4,
  TX_SP_UNUSED = 5,
  TX_SP_BYTE = 6
};
typedef struct tx_model {
  int kind;
  tx_vocab vocab;
  int32_t unk;     /* -1: none */
  char *unk_token; /* BPE / WordPiece / WordLevel: its text, for saving */
  /* BPE */
  tx_pairs merges;
  int32_t *merge_a, *merge_b; /* merges by rank, for saving */
  int32_t nmerges;
  char *prefix, *suffix; /* continuing_subword_prefix (also WordPiece's), end_of_word_suffix */
  size_t prefixn, suffixn;
  int fuse_unk, byte_fallback, ignore_merges;
  double dropout;           /* < 0: null */
  int spm;                  /* SentencePiece's flavour (merge by score; its unigram) */
  float *score;             /* per id: Unigram and SentencePiece BPE */
  double *dscore;           /* per id: Unigram from tokenizer.json (f64 as Hugging Face) */
  uint8_t *ptype;           /* per id: SentencePiece piece type */
  int32_t byte_id[256];     /* <0xXX> ids, -1 none */
  int32_t bytechar_id[256]; /* id of GPT-2's character of each byte, -1 none */
  int64_t max_chars;        /* WordPiece: max_input_chars_per_word */
  size_t max_len;           /* bytes of the longest token */
  tx_trie trie;             /* Unigram: every piece */
  double min_score, max_score;
  int has_user; /* SentencePiece: user-defined pieces present */
} tx_model;
void strop__tx_model_free(tx_model *m);
/* Prepares the derived tables (byte ids, pair map, trie) once the vocabulary is in. */
strop_status strop__tx_model_finish(tx_model *m, const char *fn, const char *where);
/* Tokenizes one piece: tokens go to e with offsets mapped through the work text. */
strop_status strop__tx_model_tokenize(strop_tokenizer *tok, tx_work *w, const tx_piece *p,
                                      int type, tx_enc *e);

/* ---- post-processors ---- */
enum { TX_Q_TEMPLATE, TX_Q_BERT, TX_Q_ROBERTA, TX_Q_BYTELEVEL };
typedef struct tx_tpiece {
  int special; /* index into specials, or -1 for a sequence */
  int seq;     /* 0: A, 1: B */
  int type_id;
} tx_tpiece;
typedef struct tx_tspecial {
  char *name;
  int32_t *ids;
  char **tokens;
  int n;
} tx_tspecial;
typedef struct tx_post {
  int kind;
  tx_tpiece *single, *pair;
  int nsingle, npair;
  tx_tspecial *sp;
  int nsp;
  int trim_offsets, add_prefix_space, use_regex;
} tx_post;
void strop__tx_post_free(tx_post *p);
/* Special tokens the post-processors add for one text (pair = 0) or a pair. */
int strop__tx_post_added(const strop_tokenizer *tok, int pair);
/* Merges w->seq[0] (and w->seq[1] when has_pair) into w->out. */
strop_status strop__tx_post_process(strop_tokenizer *tok, tx_work *w, int has_pair,
                                    int add_special);

/* ---- decoders ---- */
enum {
  TX_D_BYTELEVEL,
  TX_D_METASPACE,
  TX_D_WORDPIECE,
  TX_D_BYTEFALLBACK,
  TX_D_FUSE,
  TX_D_STRIP,
  TX_D_REPLACE,
  TX_D_BPE,
  TX_D_SPM
};
typedef struct tx_dec {
  int kind;
  char *a; /* Metaspace replacement, WordPiece prefix, Strip content, Replace
                           content, BPEDecoder suffix */
  size_t an;
  uint32_t cp;                       /* Metaspace replacement, Strip content as a character */
  int start, stop;                   /* Strip */
  int cleanup;                       /* WordPiece */
  int prepend_scheme, split, legacy; /* Metaspace */
  tx_pattern pat;                    /* Replace */
} tx_dec;
void strop__tx_dec_free(tx_dec *d);

/* ---- added tokens ---- */
typedef struct tx_added {
  char *content;
  size_t len;
  int32_t id;
  int flags;
} tx_added;

/* ---- the handle ---- */
enum { TX_FROM_JSON, TX_FROM_SPM, TX_FROM_GPT2, TX_FROM_BERT, TX_FROM_TRAIN };
#define TX_ROLES 7

/* The cache of one model: piece bytes -> tokens (id, start, end within the piece). */
typedef struct tx_centry {
  uint64_t hash; /* 0: empty */
  uint32_t koff, klen, voff, vlen;
} tx_centry;
typedef struct tx_cache {
  tx_centry *slot;
  size_t nslot, n;
  char *kpool;
  size_t kn, kcap;
  int32_t *vpool;
  size_t vn, vcap;
} tx_cache;
void strop__tx_cache_free(tx_cache *c);
void strop__tx_cache_clear(tx_cache *c);

struct strop_tokenizer {
  char *source; /* the file it came from, for messages */
  int origin;
  tx_norm *norm;
  int nnorm, norm_seq; /* norm_seq: the file had a Sequence (saved as one) */
  tx_pretok *pre;
  int npre, pre_seq;
  tx_model model;
  tx_post *post;
  int npost, post_seq;
  tx_dec *dec;
  int ndec, dec_seq;
  tx_added *added;
  int nadded;
  tx_trie araw, anorm; /* added tokens matched in the raw / the normalized text */
  int have_araw, have_anorm;
  int32_t role[TX_ROLES];
  int32_t *added_idx; /* per id: index into added, or -1 */
  int64_t size;       /* one more than the largest id */
  int spm_add_bos, spm_add_eos;
  /* tokenizer_config.json beside the file: chat templates (by name, "default" first) and the
   * special tokens' strings (bos_token, eos_token, ...) the templates print */
  char **chat_names, **chat_texts, **chat_where;
  int nchat;
  char **special_keys, **special_vals;
  int nspecial;
  tx_work w;
  tx_cache cache;
};
/* The text of an id: an added token's content, else the model's token (NULL if none). */
const char *strop__tx_id_str(const strop_tokenizer *tok, int32_t id, size_t *n);

/* tokenizer.c */
strop_status strop__tx_new(const char *source, int origin, strop_tokenizer **out);
/* Called once the components are in: added-token tries, roles, vocabulary size. */
strop_status strop__tx_finish(strop_tokenizer *tok, const char *fn);
strop_status strop__tx_add(strop_tokenizer *tok, const char *content, size_t len, int32_t id,
                           int flags, const char *fn);
/* Cuts a text into the pieces the model sees (added tokens, normalizers, pre-tokenizers):
 * tok->w.p. */
strop_status strop__tx_pieces(strop_tokenizer *tok, const char *text, size_t len);
/* Encodes one sequence into w->seq[which] (type id = which). */
strop_status strop__tx_encode_seq(strop_tokenizer *tok, const char *text, size_t len, int which);
/* Normalizes a string with the tokenizer's normalizers into a new strop__malloc'd string. */
strop_status strop__tx_normalize_str(strop_tokenizer *tok, const char *s, size_t n, char **out,
                                     size_t *outn);
/* Decoder chain over token strings (decode.c). */
int64_t strop__tx_decode(strop_tokenizer *tok, const int64_t *ids, int64_t n, int skip_special,
                         char *buf, size_t cap, const char *fn);

/* files.c: a 128-bit fingerprint of what decides a tokenizer's ids and renders (the text
 * dataset cache's key). */
strop_status strop__tx_fingerprint(const strop_tokenizer *tok, uint64_t fp[2]);
/* files.c: reads tokenizer_config.json (and chat_template.jinja) in dir into tok. */
strop_status strop__tx_load_config(strop_tokenizer *tok, const char *dir);

/* json.c: tokenizer.json from memory or a parsed tree; where names the file in messages. */
struct json_t;
strop_status strop__tx_parse_json(const char *data, size_t n, const char *fn, const char *where,
                                  struct json_t **root);
strop_status strop__tx_load_json(const char *data, size_t n, const char *where,
                                 strop_tokenizer **out);
strop_status strop__tx_load_json_root(struct json_t *root, const char *where,
                                      strop_tokenizer **out);
strop_status strop__tx_save_json(const strop_tokenizer *tok, char **out, size_t *outn);
/* spm.c: a SentencePiece ModelProto from memory. */
strop_status strop__tx_load_spm(const uint8_t *data, size_t n, const char *where, int add_bos,
                                int add_eos, strop_tokenizer **out);
/* files.c */
strop_status strop__tx_read_file(const char *fn, const char *path, size_t max, char **out,
                                 size_t *n);
strop_status strop__tx_write_file(const char *fn, const char *path, const char *data, size_t n);
/* GPT-2's vocabulary (a parsed JSON object of token: id) with merges.txt's text. */
strop_status strop__tx_load_gpt2(struct json_t *vocab, const char *merges, size_t mn,
                                 const char *where, int add_prefix_space, strop_tokenizer **out);
strop_status strop__tx_load_bert(const char *vocab, size_t vn, const char *where, int lowercase,
                                 strop_tokenizer **out);

#endif
