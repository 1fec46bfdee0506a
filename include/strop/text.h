/* SPDX-License-Identifier: MIT */
/* strop — tokenizers: load the tokenizers pre-trained checkpoints ship (Hugging Face
 * tokenizer.json, GPT-2's vocab.json + merges.txt, BERT's vocab.txt, SentencePiece .model),
 * encode and decode text, batch with truncation and padding, train a byte-level BPE. */
#ifndef STROP_TEXT_H
#define STROP_TEXT_H

#include "common.h"
#include "error.h"

/** @file text.h
 *  @brief Tokenizers: text to token ids and back. @since 0.2
 *
 * A tokenizer runs the pipeline of Hugging Face's `tokenizers` library: added tokens are cut
 * out of the text first, then the normalizer, the pre-tokenizer and the model (BPE, WordPiece,
 * Unigram, WordLevel) turn each remaining piece into ids, and the post-processor adds special
 * tokens ([CLS] A [SEP] B [SEP], BOS/EOS). docs/text.md lists the components that load.
 *
 * Text is UTF-8. Bytes that are not valid UTF-8 are read as U+FFFD (one per maximal invalid
 * subsequence, as Python's and Rust's lossy decoders do); offsets still point into the bytes
 * given. Ids are int64_t (an embedding's row); every id a tokenizer returns is in
 * [0, strop_tokenizer_vocab_size()).
 *
 * Lifetimes: a tokenizer returned through `**out` belongs to the caller and is freed with
 * strop_tokenizer_free(). Threads: encoding and decoding reuse work buffers and a cache held
 * by the handle, so one tokenizer is used by one thread at a time; distinct tokenizers are
 * independent. Functions taking a `const strop_tokenizer *` only read it.
 */

STROP_BEGIN_DECLS

/** @brief A loaded or trained tokenizer; see the file overview. @since 0.2 */
typedef struct strop_tokenizer strop_tokenizer;

/** @brief Flags of an added token (strop_tokenizer_add_token(), strop_tokenizer_token_flags()),
 *  with Hugging Face's meaning. @since 0.2 */
typedef enum strop_token_flag {
  STROP_TOKEN_SPECIAL = 1,     /**< Special: skipped by decoding with skip_special set. */
  STROP_TOKEN_SINGLE_WORD = 2, /**< Matches only where no word character touches it. */
  STROP_TOKEN_LSTRIP = 4,      /**< Takes the whitespace on its left into the token. */
  STROP_TOKEN_RSTRIP = 8,      /**< Takes the whitespace on its right into the token. */
  STROP_TOKEN_NORMALIZED = 16, /**< Matched in the normalized text (else in the raw text). */
  STROP_TOKEN_ADDED = 32       /**< Reported only: the token is an added token. */
} strop_token_flag;

/** @brief Roles a tokenizer may know a token for (strop_tokenizer_special_id()). @since 0.2 */
typedef enum strop_token_role {
  STROP_ROLE_UNK = 0, /**< The model's unknown token. */
  STROP_ROLE_PAD = 1, /**< Padding. */
  STROP_ROLE_BOS = 2, /**< Beginning of sequence. */
  STROP_ROLE_EOS = 3, /**< End of sequence. */
  STROP_ROLE_CLS = 4, /**< BERT's [CLS] (the first token of the template). */
  STROP_ROLE_SEP = 5, /**< BERT's [SEP]. */
  STROP_ROLE_MASK = 6 /**< The masked-language-model mask token. */
} strop_token_role;

/**
 * @brief Options of strop_tokenizer_load(). Fill with strop_tokenizer_options_init(); fields
 * are only ever appended and the library reads only the bytes @c size covers. @since 0.2
 */
typedef struct strop_tokenizer_options {
  size_t size;          /**< sizeof(strop_tokenizer_options), set by the init function. */
  int lowercase;        /**< BERT vocab.txt: 1 lower-cases and strips accents, 0 keeps case;
                             -1 (default): tokenizer_config.json's do_lower_case beside the
                             file, else 1. */
  int add_prefix_space; /**< GPT-2 vocab.json + merges.txt: 1 adds a space before the text;
                             -1 (default): tokenizer_config.json's add_prefix_space, else 0. */
  int add_bos;          /**< SentencePiece .model: 1 puts the model's BOS id first. Default 0
                             (spm_encode's output). */
  int add_eos;          /**< SentencePiece .model: 1 puts the model's EOS id last. Default 0. */
} strop_tokenizer_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_tokenizer_options.
 * @param[out] opt The options to fill; NULL is a no-op.
 * Thread-safe. @since 0.2
 */
STROP_API void strop_tokenizer_options_init(strop_tokenizer_options *opt);

/**
 * @brief Loads a tokenizer from a file or a folder.
 *
 * A file is read by its name and content: `*.json` holding a "model" object is a Hugging
 * Face tokenizer.json; `vocab.json` (or any other JSON object of token -> id) is GPT-2's
 * vocabulary, with `merges.txt` beside it; `*.txt` is BERT's vocab.txt (one token per line);
 * anything else must be a SentencePiece model (protobuf). A folder is searched in this order:
 * tokenizer.json, tokenizer.model, spiece.model, sentencepiece.bpe.model, vocab.json +
 * merges.txt, vocab.txt.
 * @param[in]  path Path of the file or folder.
 * @param[in]  opt  Options, or NULL for the defaults.
 * @param[out] out  The new tokenizer, owned by the caller (free with strop_tokenizer_free());
 *                  NULL on failure.
 * @return STROP_OK; STROP_E_IO (cannot open or read); STROP_E_FORMAT (malformed file: the
 *         sentence names the file and the JSON path, line or protobuf field);
 *         STROP_E_UNSUPPORTED (a component type this version does not implement: the sentence
 *         names the file, the component and the type); STROP_E_NOT_FOUND (a folder without any
 *         of the files above); STROP_E_INVALID_ARG (NULL @p path or @p out, a bad option);
 *         STROP_E_NOMEM.
 * Thread-safe (no shared state). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_load(const char *path,
                                                            const strop_tokenizer_options *opt,
                                                            strop_tokenizer **out);

/**
 * @brief Writes the tokenizer as a Hugging Face tokenizer.json (which strop_tokenizer_load()
 * and Hugging Face's `tokenizers` read back). Written to a temporary file beside @p path and
 * renamed over it.
 * @param[in] tok  The tokenizer (only read).
 * @param[in] path Destination file.
 * @return STROP_OK; STROP_E_IO; STROP_E_UNSUPPORTED for a tokenizer loaded from a
 *         SentencePiece .model (its normalization rules have no tokenizer.json form here);
 *         STROP_E_INVALID_ARG for NULL arguments; STROP_E_NOMEM.
 * Safe while no other thread uses @p tok. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_save(const strop_tokenizer *tok,
                                                            const char *path);

/**
 * @brief Frees the tokenizer and everything it holds.
 * @param[in] tok A tokenizer from strop_tokenizer_load() or strop_tokenizer_train_bpe(); NULL
 *                is a no-op. It must not be in use by another thread.
 * @since 0.2
 */
STROP_API void strop_tokenizer_free(strop_tokenizer *tok);

/**
 * @brief The number of ids: one more than the largest id of the model's vocabulary and the
 * added tokens (the rows an embedding needs).
 * @param[in] tok The tokenizer (only read).
 * @return The size, or -1 for NULL @p tok. Safe while no thread changes @p tok. @since 0.2
 */
STROP_API int64_t strop_tokenizer_vocab_size(const strop_tokenizer *tok);

/**
 * @brief The id of a token string: an added token's id, else the model's.
 * @param[in] tok   The tokenizer (only read).
 * @param[in] token The token as the vocabulary writes it ("Ġthe", "##ing", "▁the", "[CLS]"),
 *                  NUL-terminated.
 * @return The id, or -1 when the token is not in the vocabulary (STROP_E_NOT_FOUND's sentence)
 *         or an argument is NULL (STROP_E_INVALID_ARG's); strop_last_error() says which.
 *         Safe while no thread changes @p tok. @since 0.2
 */
STROP_API int64_t strop_tokenizer_token_to_id(const strop_tokenizer *tok, const char *token);

/**
 * @brief The token string of an id, snprintf style.
 * @param[in]  tok The tokenizer (only read).
 * @param[in]  id  0 .. strop_tokenizer_vocab_size() - 1.
 * @param[out] buf Receives the token, NUL-terminated and truncated to @p cap; may be NULL when
 *                 @p cap is 0, to ask for the length.
 * @param[in]  cap Bytes available at @p buf.
 * @return The full length (excluding the NUL), or -1 (NULL @p tok, an id out of range or
 *         without a token, NULL @p buf with @p cap > 0) with strop_last_error() set. @since 0.2
 */
STROP_API int64_t strop_tokenizer_id_to_token(const strop_tokenizer *tok, int64_t id, char *buf,
                                              size_t cap);

/**
 * @brief The flags of an id: STROP_TOKEN_ADDED and the added token's flags, or 0 for an
 * ordinary vocabulary token.
 * @param[in] tok The tokenizer (only read).
 * @param[in] id  0 .. strop_tokenizer_vocab_size() - 1.
 * @return A combination of strop_token_flag, or -1 for NULL @p tok or an id out of range
 *         (with strop_last_error() set). Safe while no thread changes @p tok. @since 0.2
 */
STROP_API int strop_tokenizer_token_flags(const strop_tokenizer *tok, int64_t id);

/**
 * @brief Adds a token that is cut out of the text before the model sees it, as Hugging Face's
 * add_tokens() / add_special_tokens() do. A token already in the vocabulary keeps its id (and
 * gets the flags); a new one gets the id strop_tokenizer_vocab_size().
 * @param[in]  tok     The tokenizer (changed; one thread at a time).
 * @param[in]  content The token text, non-empty UTF-8.
 * @param[in]  flags   A combination of STROP_TOKEN_SPECIAL, _SINGLE_WORD, _LSTRIP, _RSTRIP and
 *                     _NORMALIZED.
 * @param[out] id      The token's id; may be NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or empty @p content, invalid UTF-8, unknown
 *         flags); STROP_E_NOMEM. On failure the tokenizer is unchanged. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_add_token(strop_tokenizer *tok,
                                                                 const char *content, int flags,
                                                                 int64_t *id);

/**
 * @brief The id the tokenizer knows for a role: from the SentencePiece model (unk/bos/eos/pad
 * ids), the tokenizer.json (the model's unk_token, the post-processor's cls/sep or bos/eos, the
 * padding section) or tokens named like them (`[PAD]`, `<pad>`, `[MASK]`, `<mask>`, ...).
 * @param[in] tok  The tokenizer (only read).
 * @param[in] role A strop_token_role.
 * @return The id, or -1 when none is known (not an error, strop_last_error() untouched) or for
 *         NULL @p tok or a bad role. Safe while no thread changes @p tok. @since 0.2
 */
STROP_API int64_t strop_tokenizer_special_id(const strop_tokenizer *tok, int role);

/**
 * @brief Sets the id of a role (for example the pad id a batch pads with).
 * @param[in] tok  The tokenizer (changed; one thread at a time).
 * @param[in] role A strop_token_role.
 * @param[in] id   An id in [0, strop_tokenizer_vocab_size()), or -1 to forget the role.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p tok, a bad role or id). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_set_special_id(strop_tokenizer *tok,
                                                                      int role, int64_t id);

/** @brief How strop_encode_options::truncation shortens what exceeds max_length. @since 0.2 */
typedef enum strop_truncation {
  STROP_TRUNCATE_NONE = 0,          /**< Never truncate. */
  STROP_TRUNCATE_LONGEST_FIRST = 1, /**< Shorten the longer of a pair first (Hugging Face's
                                         longest_first). */
  STROP_TRUNCATE_ONLY_FIRST = 2,    /**< Shorten only the first text. */
  STROP_TRUNCATE_ONLY_SECOND = 3    /**< Shorten only the second text of a pair. */
} strop_truncation;

/** @brief How strop_encode_options::padding fills the rows of a batch. @since 0.2 */
typedef enum strop_padding {
  STROP_PAD_NONE = 0,      /**< No padding tokens: a row's tail (to the longest row) holds the
                                 pad id, or 0 without one, with mask 0. */
  STROP_PAD_LONGEST = 1,   /**< Pad every row to the longest row of the batch. */
  STROP_PAD_MAX_LENGTH = 2 /**< Pad every row to max_length. */
} strop_padding;

/** @brief The side that strop_encode_options truncates or pads on. @since 0.2 */
typedef enum strop_side {
  STROP_SIDE_RIGHT = 0, /**< The end of the sequence. */
  STROP_SIDE_LEFT = 1   /**< The start of the sequence. */
} strop_side;

/**
 * @brief Options of strop_tokenizer_encode() and strop_tokenizer_encode_batch(). Fill with
 * strop_encode_options_init(); fields are only ever appended. @since 0.2
 */
typedef struct strop_encode_options {
  size_t size;                /**< sizeof(strop_encode_options), set by the init function. */
  int add_special_tokens;     /**< 1 (default): the post-processor's special tokens are added;
                                   0: none (type ids still follow the template). */
  int64_t max_length;         /**< > 0: truncate to this many ids, special tokens included
                                   (and the length STROP_PAD_MAX_LENGTH pads to); 0 (default):
                                   no limit. */
  int truncation;             /**< A strop_truncation, default STROP_TRUNCATE_LONGEST_FIRST
                                   (effective only with max_length > 0). */
  int truncation_side;        /**< A strop_side, default STROP_SIDE_RIGHT. */
  int padding;                /**< A strop_padding, default STROP_PAD_LONGEST. */
  int padding_side;           /**< A strop_side, default STROP_SIDE_RIGHT. */
  int64_t pad_to_multiple_of; /**< > 0: padded lengths are rounded up to a multiple of this.
                                   Default 0. */
  int64_t pad_id;             /**< The id padding uses; -1 (default): the tokenizer's
                                   STROP_ROLE_PAD id. */
  int64_t pad_type_id;        /**< The type id of padding, default 0. */
} strop_encode_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_encode_options.
 * @param[out] opt The options to fill; NULL is a no-op.
 * Thread-safe. @since 0.2
 */
STROP_API void strop_encode_options_init(strop_encode_options *opt);

/**
 * @brief Turns one text into ids.
 *
 * Special tokens, truncation and STROP_PAD_MAX_LENGTH padding follow @p opt
 * (STROP_PAD_LONGEST has nothing to pad for one text).
 * @param[in]  tok   The tokenizer (its work buffers and cache change: one thread at a time).
 * @param[in]  text  @p len bytes of UTF-8 (invalid bytes read as U+FFFD); may be NULL when
 *                   @p len is 0. An empty text gives only the template's special tokens.
 * @param[in]  len   Length of @p text in bytes, < 2^31.
 * @param[in]  opt   Options, or NULL for the defaults.
 * @param[out] ids   Room for @p cap ids; may be NULL when @p cap is 0.
 * @param[in]  cap   Capacity of @p ids.
 * @param[out] count The number of ids of the text; it may exceed @p cap, and then only the
 *                   first @p cap were written (call again with a larger buffer).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL arguments, bad options, max_length too short
 *         for the template's special tokens, padding without a pad id); STROP_E_NOMEM.
 *         The handle's cache changes; the tokenizer's behaviour does not. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_encode(strop_tokenizer *tok,
                                                              const char *text, size_t len,
                                                              const strop_encode_options *opt,
                                                              int64_t *ids, int64_t cap,
                                                              int64_t *count);

/**
 * @brief Turns @p n texts (or text pairs) into a row-major [n, width] batch.
 *
 * Each row is one text (with its pair, when @p pairs is given) after special tokens and
 * truncation; rows are padded as @p opt says. width is the longest row (or max_length for
 * STROP_PAD_MAX_LENGTH, when no row is longer), rounded up to pad_to_multiple_of.
 * @param[in]  tok      The tokenizer (its work buffers and cache change: one thread at a time).
 * @param[in]  texts    @p n NUL-terminated UTF-8 texts.
 * @param[in]  pairs    NULL, or @p n second texts of the pairs (an entry may be NULL: that
 *                      row has no pair).
 * @param[in]  n        Number of texts, >= 1.
 * @param[in]  opt      Options, or NULL for the defaults.
 * @param[out] ids      n * width ids, or NULL.
 * @param[out] type_ids n * width type ids (0 for the first text, the template's for the pair),
 *                      or NULL.
 * @param[out] mask     n * width attention mask entries (1 for a token, 0 for padding), or
 *                      NULL.
 * @param[out] offsets  2 * n * width byte offsets: for each token [start, end) in the text it
 *                      came from (the first text or the pair); (0, 0) for special and padding
 *                      tokens. Or NULL.
 * @param[in]  cap      Capacity of @p ids, @p type_ids and @p mask in elements (@p offsets
 *                      holds 2 * @p cap).
 * @param[out] width    The row length. When n * width > @p cap nothing is written: call again
 *                      with a larger buffer.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL arguments, n < 1, bad options, a row whose
 *         max_length cannot hold the template or whose truncation strategy cannot shorten
 *         enough — the sentence names the row —, padding without a pad id); STROP_E_NOMEM.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_encode_batch(
    strop_tokenizer *tok, const char *const *texts, const char *const *pairs, int64_t n,
    const strop_encode_options *opt, int64_t *ids, int64_t *type_ids, int64_t *mask,
    int64_t *offsets, int64_t cap, int64_t *width);

/**
 * @brief Turns ids back into text with the tokenizer's decoder, snprintf style.
 *
 * Without a decoder the tokens are joined with spaces, as Hugging Face does. Bytes that do not
 * form valid UTF-8 (a byte-level or byte-fallback sequence cut in the middle) become U+FFFD.
 * @param[in]  tok          The tokenizer (its work buffers change: one thread at a time).
 * @param[in]  ids          @p n ids; may be NULL when @p n is 0.
 * @param[in]  n            Number of ids, >= 0.
 * @param[in]  skip_special 1: special tokens (added tokens flagged STROP_TOKEN_SPECIAL, and a
 *                          SentencePiece model's control and unknown ids) are left out.
 * @param[out] buf          Receives the text, NUL-terminated and truncated to @p cap; may be
 *                          NULL when @p cap is 0.
 * @param[in]  cap          Bytes available at @p buf.
 * @return The full length of the text (excluding the NUL), or -1 (NULL @p tok, NULL @p ids
 *         with @p n > 0, an id out of range — the sentence names its index and value —, NULL
 *         @p buf with @p cap > 0, out of memory) with strop_last_error() set. @since 0.2
 */
STROP_API int64_t strop_tokenizer_decode(strop_tokenizer *tok, const int64_t *ids, int64_t n,
                                         int skip_special, char *buf, size_t cap);

/**
 * @brief Options of strop_tokenizer_train_bpe(). Fill with strop_bpe_train_options_init();
 * fields are only ever appended. @since 0.2
 */
typedef struct strop_bpe_train_options {
  size_t size;                       /**< sizeof(strop_bpe_train_options). */
  int64_t vocab_size;                /**< Target size: special tokens + 256 byte tokens +
                                           merges. Default 8000; at least 256 + specials. */
  int64_t min_frequency;             /**< A pair seen fewer times is never merged. Default 2. */
  const char *const *special_tokens; /**< NULL, or num_special_tokens strings; they get ids
                                           0.. in order and are added as special tokens. */
  int64_t num_special_tokens;        /**< Default 0. */
  int add_prefix_space;              /**< The ByteLevel pre-tokenizer's add_prefix_space.
                                           Default 0 (GPT-2's). */
  int64_t max_token_length;          /**< > 0: no token longer than this many characters.
                                           Default 0 (no limit). */
} strop_bpe_train_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_bpe_train_options.
 * @param[out] opt The options to fill; NULL is a no-op.
 * Thread-safe. @since 0.2
 */
STROP_API void strop_bpe_train_options_init(strop_bpe_train_options *opt);

/**
 * @brief Trains a byte-level BPE tokenizer (GPT-2's pre-tokenizer, regex split and
 * byte-to-character map) on text files.
 *
 * Each line of each file is pre-tokenized; the most frequent adjacent pair is merged until the
 * vocabulary reaches vocab_size or no pair occurs min_frequency times (ties go to the pair of
 * smaller ids). The result has the ByteLevel pre-tokenizer, decoder and post-processor, and can
 * be saved with strop_tokenizer_save().
 * @param[in]  paths Files of UTF-8 text.
 * @param[in]  n     Number of paths, >= 1.
 * @param[in]  opt   Options, or NULL for the defaults.
 * @param[out] out   The tokenizer, owned by the caller.
 * @return STROP_OK; STROP_E_IO (a file cannot be read); STROP_E_INVALID_ARG (NULL arguments,
 *         vocab_size too small, a duplicate or empty special token); STROP_E_NOMEM.
 * Thread-safe (no shared state). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status
strop_tokenizer_train_bpe(const char *const *paths, int64_t n, const strop_bpe_train_options *opt,
                          strop_tokenizer **out);

/**
 * @brief Renders a conversation with a chat template, as transformers' apply_chat_template()
 * does (with tokenize=False), snprintf style.
 *
 * Templates are Hugging Face's: tokenizer_config.json's `chat_template` (read by
 * strop_tokenizer_load() beside the tokenizer file, with its special tokens' strings) or a
 * string given here. strop runs a bounded subset of Jinja, rendered with transformers'
 * settings (trim_blocks, lstrip_blocks): `{{ }}`, `{% if/elif/else %}`, `{% for %}` with
 * `loop.*`, `{% set %}` (and namespace()), `{%- -%}`, literals, subscripts and slices, `+ - * /
 * // % ~`, comparisons, `and/or/not/in`, `is defined/none/string`, the filters trim, length,
 * upper, lower, first, last, join, default, string, tojson and the string methods strip,
 * lstrip, rstrip, upper, lower, startswith, endswith; docs/text.md lists them. The template sees `messages` (a
 * list of {role, content}), `add_generation_prompt`, and every `*_token` of
 * tokenizer_config.json (else the tokenizer's own BOS, EOS, UNK and PAD tokens).
 * @param[in]  tok      The tokenizer (only read).
 * @param[in]  tmpl     NULL: the tokenizer's default template; the name of one of its named
 *                      templates (a chat_template list); otherwise the template itself.
 * @param[in]  roles    @p n NUL-terminated roles ("system", "user", "assistant", ...).
 * @param[in]  contents @p n NUL-terminated message texts.
 * @param[in]  n        Number of messages, 0 .. 2^20.
 * @param[in]  add_generation_prompt 1: the template adds the start of the assistant's reply
 *                      (when it reads add_generation_prompt); 0: it does not.
 * @param[out] buf      Receives the text, NUL-terminated and truncated to @p cap; may be NULL
 *                      when @p cap is 0.
 * @param[in]  cap      Bytes available at @p buf.
 * @param[out] needed   The full length of the text (excluding the NUL); when it is >= @p cap
 *                      the text was truncated: call again with needed + 1 bytes.
 * @return STROP_OK; STROP_E_NOT_FOUND (@p tmpl NULL and the tokenizer has no template);
 *         STROP_E_FORMAT (syntax this subset does not know, or a template error while
 *         rendering — the sentence names the template, the line and the column; a template or
 *         a render beyond the size bounds); STROP_E_INVALID_ARG (NULL arguments, a bad @p n or
 *         flag; the template's raise_exception(), with its sentence); STROP_E_NOMEM.
 *         Thread-safe for distinct tokenizers; safe while no thread changes @p tok. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tokenizer_apply_chat_template(
    const strop_tokenizer *tok, const char *tmpl, const char *const *roles,
    const char *const *contents, int64_t n, int add_generation_prompt, char *buf, size_t cap,
    size_t *needed);

STROP_END_DECLS

#endif
