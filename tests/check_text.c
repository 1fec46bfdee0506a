/* SPDX-License-Identifier: MIT */
/* strop tests — the text suite: tokenizer.json components one by one (normalizers,
 * pre-tokenizers, models, post-processors, decoders), added tokens, offsets, invalid UTF-8,
 * batches with truncation and padding, SentencePiece protobufs, vocabulary files, training and
 * saving, every public function's error paths and allocation-failure sweeps. The references
 * against real tokenizers (GPT-2, SentencePiece, BERT) are the CTest tests text_*. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "strop/strop.h"
#include "testutil.h"
#include "text/text_impl.h"

/* ------------------------------------------------------------------ helpers ---- */

static char g_dir[256];

static const char *tmpdir(void) {
  if (!g_dir[0]) {
    snprintf(g_dir, sizeof g_dir, "/tmp/strop_check_text_XXXXXX");
    if (!mkdtemp(g_dir)) g_dir[0] = '\0';
  }
  return g_dir;
}

static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char p[700];
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (!stat(p, &sb) && S_ISDIR(sb.st_mode)) rm_dir(p);
    else unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static const char *put_file(const char *name, const void *data, size_t len) {
  static char slots[8][512];
  static int next;
  char *p = slots[next++ % 8];
  snprintf(p, 512, "%s/%s", tmpdir(), name);
  char *slash = strrchr(p, '/');
  if (slash && slash > p + strlen(tmpdir())) { /* a sub-folder */
    *slash = '\0';
    mkdir(p, 0755);
    *slash = '/';
  }
  FILE *f = fopen(p, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
  return p;
}

static const char *put_text(const char *name, const char *text) {
  return put_file(name, text, strlen(text));
}

/* A tokenizer from tokenizer.json text (failing the test on error). */
static strop_tokenizer *J(const char *json) {
  strop_tokenizer *t = NULL;
  strop_status st = strop__tx_load_json(json, strlen(json), "test.json", &t);
  ck_assert_msg(st == STROP_OK, "load: %s", strop_last_error());
  return t;
}

/* The status and sentence of loading json. */
static strop_status J_err(const char *json) {
  strop_tokenizer *t = NULL;
  strop_clear_error();
  strop_status st = strop__tx_load_json(json, strlen(json), "bad.json", &t);
  ck_assert_ptr_null(t);
  ck_assert_msg(st != STROP_OK, "loaded a broken tokenizer.json: %s", json);
  ck_assert_msg(strop_last_error()[0], "no sentence for %s", json);
  return st;
}

/* "id id id" of text (special tokens as opt says; NULL: defaults). */
static const char *ids_of(strop_tokenizer *t, const char *text, const strop_encode_options *o) {
  static char out[4096];
  int64_t ids[512], n = 0;
  strop_status st = strop_tokenizer_encode(t, text, strlen(text), o, ids, 512, &n);
  ck_assert_msg(st == STROP_OK, "encode '%s': %s", text, strop_last_error());
  ck_assert_int_le(n, 512);
  size_t k = 0;
  out[0] = '\0';
  for (int64_t i = 0; i < n; i++)
    k += (size_t)snprintf(out + k, sizeof out - k, "%s%lld", i ? " " : "", (long long)ids[i]);
  return out;
}

/* "tok|tok|tok" of text. */
static const char *toks_of(strop_tokenizer *t, const char *text) {
  static char out[4096];
  int64_t ids[512], n = 0;
  strop_status st = strop_tokenizer_encode(t, text, strlen(text), NULL, ids, 512, &n);
  ck_assert_msg(st == STROP_OK, "encode '%s': %s", text, strop_last_error());
  size_t k = 0;
  out[0] = '\0';
  for (int64_t i = 0; i < n && i < 512; i++) {
    char tk[256];
    ck_assert_int_ge(strop_tokenizer_id_to_token(t, ids[i], tk, sizeof tk), 0);
    k += (size_t)snprintf(out + k, sizeof out - k, "%s%s", i ? "|" : "", tk);
  }
  return out;
}

#define TOKS(t, text, want) ck_assert_str_eq(toks_of((t), (text)), (want))
#define IDS(t, text, want) ck_assert_str_eq(ids_of((t), (text), NULL), (want))

static const char *decode_of(strop_tokenizer *t, const char *ids_text, int skip) {
  static char out[4096];
  int64_t ids[256];
  int n = 0;
  for (const char *p = ids_text; *p && n < 256;) {
    char *end;
    ids[n++] = strtoll(p, &end, 10);
    p = end;
    while (*p == ' ') p++;
  }
  int64_t len = strop_tokenizer_decode(t, ids, n, skip, out, sizeof out);
  ck_assert_msg(len >= 0, "decode: %s", strop_last_error());
  return out;
}

/* Offsets of each token of text, "a-b a-b". */
static const char *offsets_of(strop_tokenizer *t, const char *text) {
  static char out[2048];
  const char *texts[1] = {text};
  int64_t offs[512], ids[256], mask[256], w = 0;
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.add_special_tokens = 0;
  strop_status st = strop_tokenizer_encode_batch(t, texts, NULL, 1, &o, ids, NULL, mask, offs,
                                                 256, &w);
  ck_assert_msg(st == STROP_OK, "encode_batch: %s", strop_last_error());
  size_t k = 0;
  out[0] = '\0';
  for (int64_t i = 0; i < w; i++)
    k += (size_t)snprintf(out + k, sizeof out - k, "%s%lld-%lld", i ? " " : "",
                          (long long)offs[2 * i], (long long)offs[2 * i + 1]);
  return out;
}

/* ---- small tokenizers ---- */
static const char BPE_JSON[] =
    "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, "
    "\"a\": 1, \"b\": 2, \"c\": 3, \"ab\": 4, \"abc\": 5, \"<0x78>\": 6, \"d\": 7, \"bc\": 8},"
    " \"merges\": [\"a b\", [\"ab\", \"c\"], \"b c\"]},"
    " \"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}}";

static const char WP_JSON[] =
    "{\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true,"
    " \"handle_chinese_chars\": true, \"strip_accents\": null, \"lowercase\": true},"
    " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
    " \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 3],"
    " \"cls\": [\"[CLS]\", 2]},"
    " \"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true},"
    " \"added_tokens\": [{\"id\": 0, \"content\": \"[PAD]\", \"special\": true},"
    " {\"id\": 1, \"content\": \"[UNK]\", \"special\": true},"
    " {\"id\": 2, \"content\": \"[CLS]\", \"special\": true},"
    " {\"id\": 3, \"content\": \"[SEP]\", \"special\": true},"
    " {\"id\": 4, \"content\": \"[MASK]\", \"special\": true}],"
    " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\","
    " \"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": 12,"
    " \"vocab\": {\"[PAD]\": 0, \"[UNK]\": 1, \"[CLS]\": 2, \"[SEP]\": 3, \"[MASK]\": 4,"
    " \"un\": 5, \"##aff\": 6, \"##able\": 7, \"hello\": 8, \"##s\": 9, \",\": 10,"
    " \"world\": 11, \"cafe\": 12, \"日\": 13, \"!\": 14, \"'\": 15, \"s\": 16}}}";

static const char UNI_JSON[] =
    "{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"byte_fallback\": true, \"vocab\": ["
    "[\"<unk>\", 0.0], [\"a\", -1.0], [\"b\", -2.0], [\"ab\", -1.5], [\"c\", -3.0],"
    " [\"<0x64>\", -10.0], [\"\xe2\x96\x81\", -1.0], [\"\xe2\x96\x81"
    "a\", -0.4]]},"
    " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\","
    " \"prepend_scheme\": \"always\", \"split\": true},"
    " \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\","
    " \"prepend_scheme\": \"always\", \"split\": true}}";

/* ------------------------------------------------------------------ models ---- */

START_TEST(bpe_merges_in_rank_order) {
  strop_tokenizer *t = J(BPE_JSON);
  TOKS(t, "abc ab ca", "abc|ab|c|a");
  /* "bc" would merge b c, but a b ranks first and ab c takes the rest */
  TOKS(t, "abc", "abc");
  TOKS(t, "bca", "bc|a");
  /* unknown characters: each one <unk> (fuse_unk is off), x by byte fallback only when on */
  IDS(t, "yy", "0 0");
  ck_assert_int_eq(strop_tokenizer_vocab_size(t), 9);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_UNK), 0);
  strop_tokenizer_free(t);
  char buf[600];
  snprintf(buf, sizeof buf, "%.*s, \"fuse_unk\": true, \"byte_fallback\": true%s",
           (int)(strstr(BPE_JSON, "\"merges\"") - BPE_JSON - 2), BPE_JSON,
           strstr(BPE_JSON, ", \"merges\""));
  t = J(buf);
  IDS(t, "yyab", "0 4");
  IDS(t, "xab", "6 4");
  IDS(t, "xyy", "6 0");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(bpe_continuing_prefix_and_ignore_merges) {
  strop_tokenizer *t = J(
      "{\"model\": {\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\","
      " \"end_of_word_suffix\": \"</w>\", \"vocab\": {\"a\": 0, \"##b\": 1, \"##c</w>\": 2,"
      " \"a##b\": 3, \"ab\": 4, \"##b##c</w>\": 5, \"##bc</w>\": 6, \"abc</w>\": 7},"
      " \"merges\": [\"a ##b\", \"##b ##c</w>\", \"ab ##c</w>\"]}}");
  /* a ##b merges to "ab" (the prefix of the second part dropped), then ab ##c</w> */
  TOKS(t, "abc", "abc</w>");
  strop_tokenizer_free(t);
  t = J(
      "{\"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"vocab\": {\"h\": 0,"
      " \"e\": 1, \"y\": 2, \"he\": 3, \"hey\": 4, \"ey\": 5}, \"merges\": [\"e y\", \"h e\"]}}");
  /* ignore_merges: a word in the vocabulary is one token even where merges would not make it */
  TOKS(t, "hey", "hey");
  strop_tokenizer_free(t);
  t = J("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"h\": 0, \"e\": 1, \"y\": 2, \"he\": 3,"
        " \"hey\": 4, \"ey\": 5}, \"merges\": [\"e y\", \"h e\"]}}");
  TOKS(t, "hey", "h|ey");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(wordpiece_bert_pipeline) {
  strop_tokenizer *t = J(WP_JSON);
  /* lower-cased, accents stripped, punctuation split off, greedy longest match with ## */
  IDS(t, "UNaffable Hellos, Café!", "2 5 6 7 8 9 10 12 14 3");
  TOKS(t, "UNaffable Hellos", "[CLS]|un|##aff|##able|hello|##s|[SEP]");
  /* a word with a part no piece matches is [UNK] as a whole; too long a word too */
  TOKS(t, "unknownable helloooooooooooooo", "[CLS]|[UNK]|[UNK]|[SEP]");
  /* CJK characters are words of their own */
  TOKS(t, "日日x", "[CLS]|日|日|[UNK]|[SEP]");
  /* control characters vanish, odd whitespace is a space */
  TOKS(t, "hello\x01\xc2\xa0world", "[CLS]|hello|world|[SEP]");
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_CLS), 2);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_SEP), 3);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_PAD), 0);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_MASK), 4);
  /* special tokens in the text are matched before anything else */
  TOKS(t, "hello[MASK]world", "[CLS]|hello|[MASK]|world|[SEP]");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(unigram_viterbi_and_byte_fallback) {
  strop_tokenizer *t = J(UNI_JSON);
  /* "▁abc": ▁a(-0.4) b(-2) c(-3) beats ▁(-1) ab(-1.5) c(-3) */
  TOKS(t, "abc",
       "\xe2\x96\x81"
       "a|b|c");
  TOKS(t, "bab", "\xe2\x96\x81|b|ab");
  /* unknown characters fuse into one piece; with byte pieces for its bytes they become those */
  TOKS(t, "dd", "\xe2\x96\x81|<0x64>|<0x64>");
  IDS(t, "ee", "6 0");
  ck_assert_str_eq(decode_of(t, "7 2 4", 0), "abc");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(wordlevel_and_old_files) {
  /* no "type": told apart by the fields, as Hugging Face does for old files */
  strop_tokenizer *t = J(
      "{\"model\": {\"vocab\": {\"[UNK]\": 0, \"hi\": 1, \"there\": 2},"
      " \"unk_token\": \"[UNK]\"}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}");
  IDS(t, "hi there you", "1 2 0");
  strop_tokenizer_free(t);
}
END_TEST

/* --------------------------------------------------------------- normalizers ---- */

static strop_tokenizer *char_tok(const char *normalizer) {
  /* every character its own token: a WordLevel over a Split that isolates characters */
  static char json[16384];
  snprintf(
      json, sizeof json,
      "{\"normalizer\": %.12000s, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\":"
      " {\"Regex\": \".\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"WordLevel\","
      " \"unk_token\": \"?\", \"vocab\": {\"?\": 0, \"a\": 1, \"b\": 2, \"e\": 3,"
      " \"\xcc\x81\": 4, \"\xc3\xa9\": 5, \"f\": 6, \"i\": 7, \" \": 8, \"x\": 9, \"B\": 10,"
      " \"\xe2\x96\x81\": 11, \"\xc3\x89\": 12, \"H\": 13}}}",
      normalizer);
  return J(json);
}

START_TEST(unicode_normal_forms) {
  strop_tokenizer *t = char_tok("{\"type\": \"NFD\"}");
  IDS(t, "\xc3\xa9", "3 4"); /* é -> e + combining acute */
  ck_assert_str_eq(offsets_of(t, "a\xc3\xa9"), "0-1 1-3 1-3");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"NFC\"}");
  IDS(t, "e\xcc\x81", "5");
  ck_assert_str_eq(offsets_of(t, "xe\xcc\x81x"), "0-1 1-4 4-5");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"NFKC\"}");
  IDS(t, "\xef\xac\x81", "6 7"); /* the ligature ﬁ -> f i */
  ck_assert_str_eq(offsets_of(t, "\xef\xac\x81"), "0-3 0-3");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"NFKD\"}");
  IDS(t, "\xc3\xa9\xef\xac\x81", "3 4 6 7");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(other_normalizers) {
  strop_tokenizer *t = char_tok("{\"type\": \"Lowercase\"}");
  IDS(t, "AB\xc3\x89", "1 2 5");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"},"
               " {\"type\": \"StripAccents\"}]}");
  IDS(t,
      "\xc3\xa9"
      "a",
      "3 1");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\":"
               " \"\xe2\x96\x81\"}");
  IDS(t, "a b", "1 11 2");
  strop_tokenizer_free(t);
  t = char_tok(
      "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"[ab]+\"}, \"content\": \"x\"}");
  IDS(t, "abba e", "9 8 3");
  ck_assert_str_eq(offsets_of(t, "abba e"), "0-4 4-5 5-6");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Strip\", \"strip_left\":"
               " true, \"strip_right\": true}, {\"type\": \"Prepend\", \"prepend\": \"x\"}]}");
  IDS(t, "  a b \t", "9 1 8 2");
  ck_assert_str_eq(offsets_of(t, "  a b \t"), "2-3 2-3 3-4 4-5");
  IDS(t, "", "");
  strop_tokenizer_free(t);
  t = char_tok("{\"type\": \"BertNormalizer\", \"lowercase\": false}");
  IDS(t, "\xc3\x89", "12"); /* strip_accents follows lowercase: kept */
  strop_tokenizer_free(t);
}
END_TEST

static char *b64(const uint8_t *d, size_t n) {
  static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
                 (i + 2 < n ? d[i + 2] : 0);
    *o++ = T[v >> 18];
    *o++ = T[(v >> 12) & 63];
    *o++ = i + 1 < n ? T[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? T[v & 63] : '=';
  }
  *o = '\0';
  return s;
}

START_TEST(precompiled_charsmap) {
  /* the character map of a SentencePiece model trained with two custom rules (the fuzz seed
   * tests/fuzz/corpus/spm_model/charsmap.model): U+FF28 -> H, U+3000 -> space */
  size_t n;
  char *model = strop_test_read_file(
      STROP_SOURCE_DIR "/tests/fuzz/corpus/spm_model/charsmap.model", &n);
  ck_assert_ptr_nonnull(model);
  strop_tokenizer *spm = NULL;
  strop_test_must(strop__tx_load_spm((const uint8_t *)model, n, "charsmap.model", 0, 0, &spm),
                  "charsmap.model");
  free(model);
  char *blob = b64(spm->norm[0].map.blob, spm->norm[0].map.nblob);
  strop_tokenizer_free(spm);
  char norm[12000];
  ck_assert_uint_lt(strlen(blob), 11000);
  snprintf(norm, sizeof norm, "{\"type\": \"Precompiled\", \"precompiled_charsmap\": \"%s\"}",
           blob);
  free(blob);
  strop_tokenizer *t = char_tok(norm);
  /* Ｈ　x -> H, space, x; offsets keep the original characters */
  IDS(t, "\xef\xbc\xa8\xe3\x80\x80x", "13 8 9");
  ck_assert_str_eq(offsets_of(t, "\xef\xbc\xa8\xe3\x80\x80x"), "0-3 3-6 6-7");
  /* and saved as base64 again, it loads to the same */
  char *out;
  size_t outn;
  strop_test_must(strop__tx_save_json(t, &out, &outn), "save");
  strop_tokenizer *u = NULL;
  strop_test_must(strop__tx_load_json(out, outn, "saved.json", &u), "reload");
  strop__free(out);
  IDS(u, "\xef\xbc\xa8\xe3\x80\x80x", "13 8 9");
  strop_tokenizer_free(u);
  strop_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------ pre-tokenizers ---- */

static const char *split_with(const char *pretok, const char *text) {
  static char json[2048];
  snprintf(json, sizeof json,
           "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"WordLevel\", \"unk_token\": \"?\","
           " \"vocab\": {\"?\": 0}}}",
           pretok);
  strop_tokenizer *t = J(json);
  /* the pieces, read back through offsets */
  static char out[1024];
  const char *offs = offsets_of(t, text);
  size_t k = 0;
  out[0] = '\0';
  for (const char *p = offs; *p;) {
    char *end;
    long a = strtol(p, &end, 10);
    long b = strtol(end + 1, &end, 10);
    k += (size_t)snprintf(out + k, sizeof out - k, "%s%.*s", k ? "|" : "", (int)(b - a),
                          text + a);
    p = *end ? end + 1 : end;
  }
  strop_tokenizer_free(t);
  return out;
}

START_TEST(split_behaviours) {
#define SPLIT(b) \
  "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"" b "\"}"
  ck_assert_str_eq(split_with(SPLIT("Removed"), "a-b--c"), "a|b|c");
  ck_assert_str_eq(split_with(SPLIT("Isolated"), "a-b--c"), "a|-|b|-|-|c");
  ck_assert_str_eq(split_with(SPLIT("MergedWithPrevious"), "a-b--c"), "a-|b-|-|c");
  ck_assert_str_eq(split_with(SPLIT("MergedWithNext"), "a-b--c"), "a|-b|-|-c");
  ck_assert_str_eq(split_with(SPLIT("Contiguous"), "a-b--c"), "a|-|b|--|c");
  ck_assert_str_eq(split_with("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[a-c]\"},"
                              " \"behavior\": \"Removed\", \"invert\": true}",
                              "a-b--c"),
                   "a|b|c");
  ck_assert_str_eq(split_with("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"},"
                              " \"behavior\": \"Removed\"}",
                              " x  yz "),
                   "x|yz");
#undef SPLIT
}
END_TEST

START_TEST(pre_tokenizers) {
  ck_assert_str_eq(split_with("{\"type\": \"Whitespace\"}", "Hey, you!! x_y"),
                   "Hey|,|you|!!|x_y");
  ck_assert_str_eq(split_with("{\"type\": \"WhitespaceSplit\"}", "Hey, you!!\t x"),
                   "Hey,|you!!|x");
  ck_assert_str_eq(split_with("{\"type\": \"BertPreTokenizer\"}", "Hey, you!!"), "Hey|,|you|!|!");
  ck_assert_str_eq(split_with("{\"type\": \"Digits\", \"individual_digits\": true}", "a123b"),
                   "a|1|2|3|b");
  ck_assert_str_eq(split_with("{\"type\": \"Digits\", \"individual_digits\": false}", "a123b4"),
                   "a|123|b|4");
  ck_assert_str_eq(split_with("{\"type\": \"Punctuation\"}", "a,b.."), "a|,|b|.|.");
  ck_assert_str_eq(
      split_with("{\"type\": \"Punctuation\", \"behavior\": \"Contiguous\"}", "a,b.."),
      "a|,|b|..");
  /* the GPT-2 regex: contractions, letters, numbers, other, spaces before the next word */
  ck_assert_str_eq(
      split_with("{\"type\": \"ByteLevel\", \"add_prefix_space\": false}", "It's  42 pies!"),
      "It|'s| | 42| pies|!");
  ck_assert_str_eq(
      split_with("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\":"
                 " \"WhitespaceSplit\"}, {\"type\": \"Digits\", \"individual_digits\":"
                 " true}]}",
                 "a12 b"),
      "a|1|2|b");
}
END_TEST

START_TEST(metaspace_prepend_schemes) {
  const char *base =
      "{\"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\","
      " \"prepend_scheme\": \"%s\", \"split\": %s}, \"added_tokens\": [{\"id\": 1, \"content\":"
      " \"<x>\", \"special\": true}], \"model\": {\"type\": \"WordLevel\", \"unk_token\": \"?\","
      " \"vocab\": {\"?\": 0, \"<x>\": 1, \"\xe2\x96\x81"
      "Hey\": 2, \"Hey\": 3,"
      " \"\xe2\x96\x81"
      "you\": 4, \"\xe2\x96\x81"
      "Hey\xe2\x96\x81"
      "you\": 5}}}";
  char json[1024];
  snprintf(json, sizeof json, base, "always", "true");
  strop_tokenizer *t = J(json);
  IDS(t, "Hey you", "2 4");
  IDS(t, "<x>Hey you", "1 2 4");
  strop_tokenizer_free(t);
  snprintf(json, sizeof json, base, "first", "true");
  t = J(json);
  IDS(t, "Hey you", "2 4");
  IDS(t, "<x>Hey you", "1 3 4"); /* not at the start of the text: no prefix */
  strop_tokenizer_free(t);
  snprintf(json, sizeof json, base, "never", "false");
  t = J(json);
  IDS(t, "Hey you", "0");
  IDS(t, " Hey you", "5");
  strop_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------- added tokens ---- */

START_TEST(added_token_flags) {
  const char *json =
      "{\"normalizer\": {\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\":"
      " \"WhitespaceSplit\"}, \"added_tokens\": ["
      " {\"id\": 10, \"content\": \"<mask>\", \"lstrip\": true, \"special\": true},"
      " {\"id\": 11, \"content\": \"ony\", \"single_word\": true, \"normalized\": true},"
      " {\"id\": 12, \"content\": \"[R]\", \"rstrip\": true}],"
      " \"model\": {\"type\": \"WordLevel\", \"unk_token\": \"?\", \"vocab\": {\"?\": 0,"
      " \"my\": 1, \"anthony\": 2, \"x\": 3}}}";
  strop_tokenizer *t = J(json);
  /* lstrip takes the spaces before it; single_word does not match inside "anthony" */
  IDS(t, "My  <mask> anthony", "1 10 2");
  ck_assert_str_eq(offsets_of(t, "My  <mask> anthony"), "0-2 2-10 11-18");
  /* normalized: matched after lower-casing, only as a word of its own */
  IDS(t, "x ONY x", "3 11 3");
  IDS(t, "xony", "0");
  /* rstrip takes the spaces after it */
  ck_assert_str_eq(offsets_of(t, "x[R]  x"), "0-1 1-6 6-7");
  ck_assert_int_eq(strop_tokenizer_token_flags(t, 10),
                   STROP_TOKEN_ADDED | STROP_TOKEN_SPECIAL | STROP_TOKEN_LSTRIP);
  ck_assert_int_eq(strop_tokenizer_token_flags(t, 1), 0);
  ck_assert_int_eq(strop_tokenizer_vocab_size(t), 13);
  /* decoding leaves special tokens out on request */
  ck_assert_str_eq(decode_of(t, "1 10 2", 0), "my <mask> anthony");
  ck_assert_str_eq(decode_of(t, "1 10 2", 1), "my anthony");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(add_token_at_run_time) {
  strop_tokenizer *t = J(BPE_JSON);
  int64_t id = -1;
  strop_test_must(strop_tokenizer_add_token(t, "<new>", STROP_TOKEN_SPECIAL, &id), "add");
  ck_assert_int_eq(id, 9);
  ck_assert_int_eq(strop_tokenizer_vocab_size(t), 10);
  TOKS(t, "ab<new>c", "ab|<new>|c");
  /* a token the model has keeps its id */
  strop_test_must(strop_tokenizer_add_token(t, "abc", 0, &id), "add abc");
  ck_assert_int_eq(id, 5);
  ck_assert_int_eq(strop_tokenizer_vocab_size(t), 10);
  ck_assert_int_eq(strop_tokenizer_token_to_id(t, "<new>"), 9);
  strop_tokenizer_free(t);
}
END_TEST

/* -------------------------------------------------------- post-processors ---- */

START_TEST(templates_and_type_ids) {
  const char *json =
      "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"post_processor\": {\"type\":"
      " \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"[CLS]\", \"type_id\":"
      " 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\":"
      " \"[SEP]\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\": {\"id\": \"[CLS]\","
      " \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\":"
      " {\"id\": \"[SEP]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}},"
      " {\"SpecialToken\": {\"id\": \"[SEP]\", \"type_id\": 1}}], \"special_tokens\": {\"[CLS]\":"
      " {\"id\": \"[CLS]\", \"ids\": [1], \"tokens\": [\"[CLS]\"]}, \"[SEP]\": {\"id\": "
      "\"[SEP]\","
      " \"ids\": [2], \"tokens\": [\"[SEP]\"]}}}, \"model\": {\"type\": \"WordLevel\","
      " \"unk_token\": \"?\", \"vocab\": {\"?\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"a\": 3, \"b\": "
      "4}}}";
  strop_tokenizer *t = J(json);
  IDS(t, "a b", "1 3 4 2");
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.add_special_tokens = 0;
  ck_assert_str_eq(ids_of(t, "a b", &o), "3 4");
  const char *texts[2] = {"a", "a b"}, *pairs[2] = {"b b", NULL};
  int64_t ids[16], types[16], mask[16], offs[32], w = 0;
  /* no pad token: the default padding must be told one */
  ck_assert_int_eq(
      strop_tokenizer_encode_batch(t, texts, pairs, 2, NULL, ids, types, mask, offs, 16, &w),
      STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "pad id"));
  const int64_t want_ids[12] = {1, 3, 2, 4, 4, 2, 1, 3, 4, 2, 0, 0};
  const int64_t want_types[12] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  const int64_t want_mask[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_PAD), -1);
  strop_encode_options_init(&o);
  o.padding = STROP_PAD_LONGEST;
  o.pad_id = 0;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, pairs, 2, &o, ids, types, mask, offs, 16, &w),
      "batch");
  ck_assert_int_eq(w, 6);
  for (int i = 0; i < 12; i++) {
    ck_assert_int_eq(ids[i], want_ids[i]);
    ck_assert_int_eq(types[i], want_types[i]);
    ck_assert_int_eq(mask[i], want_mask[i]);
  }
  /* offsets point into each row's own text (the pair's into the pair); specials are 0-0 */
  ck_assert_int_eq(offs[2 * 3], 0);
  ck_assert_int_eq(offs[2 * 4], 2);
  ck_assert_int_eq(offs[2 * 4 + 1], 3);
  ck_assert_int_eq(offs[2 * 2 + 1], 0);
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(bert_and_roberta_processing) {
  strop_tokenizer *t = J(WP_JSON);
  const char *texts[1] = {"hello"}, *pairs[1] = {"world"};
  int64_t ids[8], types[8], w;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, NULL, ids, types, NULL, NULL, 8, &w),
      "bert pair");
  ck_assert_int_eq(w, 5);
  const int64_t bi[5] = {2, 8, 3, 11, 3}, bt[5] = {0, 0, 0, 1, 1};
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(ids[i], bi[i]);
    ck_assert_int_eq(types[i], bt[i]);
  }
  strop_tokenizer_free(t);
  t = J("{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"post_processor\": {\"type\":"
        " \"RobertaProcessing\", \"sep\": [\"</s>\", 2], \"cls\": [\"<s>\", 0],"
        " \"trim_offsets\": true, \"add_prefix_space\": true}, \"model\": {\"type\":"
        " \"WordLevel\", \"unk_token\": \"?\", \"vocab\": {\"<s>\": 0, \"?\": 1, \"</s>\": 2,"
        " \"a\": 3}}}");
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, NULL, ids, types, NULL, NULL, 8, &w),
      "roberta pair");
  const int64_t ri[6] = {0, 1, 2, 2, 1, 2};
  ck_assert_int_eq(w, 6);
  for (int i = 0; i < 6; i++) {
    ck_assert_int_eq(ids[i], ri[i]);
    ck_assert_int_eq(types[i], 0);
  }
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_BOS), 0);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_EOS), 2);
  strop_tokenizer_free(t);
}
END_TEST

/* ---------------------------------------------------------------- decoders ---- */

START_TEST(decoders) {
  strop_tokenizer *t = J(WP_JSON);
  /* ## pieces join their word, cleanup re-attaches punctuation */
  ck_assert_str_eq(decode_of(t, "2 5 6 7 8 10 11 3", 0), "[CLS] unaffable hello, world [SEP]");
  ck_assert_str_eq(decode_of(t, "2 5 6 7 8 10 11 3", 1), "unaffable hello, world");
  strop_tokenizer_free(t);
  /* Llama-2's chain: spaces back, byte pieces joined into UTF-8, fused, one leading space cut */
  t = J("{\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\","
        " \"pattern\": {\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, {\"type\":"
        " \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \","
        " \"start\": 1, \"stop\": 0}]}, \"model\": {\"type\": \"BPE\", \"byte_fallback\": true,"
        " \"vocab\": {\"\xe2\x96\x81Hello\": 0, \"<0xE6>\": 1, \"<0x97>\": 2, \"<0xA5>\": 3,"
        " \"\xe2\x96\x81world\": 4}, \"merges\": []}}");
  ck_assert_str_eq(decode_of(t, "0 1 2 3 4", 0), "Hello\xe6\x97\xa5 world");
  /* a cut byte sequence: one U+FFFD per byte */
  ck_assert_str_eq(decode_of(t, "0 1 2", 0), "Hello\xef\xbf\xbd\xef\xbf\xbd");
  strop_tokenizer_free(t);
  /* no decoder: tokens joined with spaces */
  t = J(BPE_JSON);
  ck_assert_str_eq(decode_of(t, "5 4 3", 0), "abc ab c");
  strop_tokenizer_free(t);
  t = J("{\"decoder\": {\"type\": \"BPEDecoder\", \"suffix\": \"</w>\"}, \"model\": {\"type\":"
        " \"BPE\", \"vocab\": {\"hi</w>\": 0, \"th\": 1, \"ere</w>\": 2}, \"merges\": []}}");
  ck_assert_str_eq(decode_of(t, "0 1 2", 0), "hi there");
  strop_tokenizer_free(t);
}
END_TEST

/* ----------------------------------------------------------- batches ---- */

START_TEST(truncation_strategies) {
  strop_tokenizer *t = J(WP_JSON);
  const char *a = "hello hello hello hello hello hello", *b = "world world";
  const char *texts[1] = {a}, *pairs[1] = {b};
  int64_t ids[32], w;
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.max_length = 7; /* 3 special tokens + 4: the shorter keeps its 2, the longer gets 2 */
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, &o, ids, NULL, NULL, NULL, 32, &w),
      "longest first");
  ck_assert_int_eq(w, 7);
  const int64_t want[7] = {2, 8, 8, 3, 11, 11, 3};
  for (int i = 0; i < 7; i++) ck_assert_int_eq(ids[i], want[i]);
  o.max_length = 6; /* 3 left for 6 + 2: halves, the extra one to the longer */
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, &o, ids, NULL, NULL, NULL, 32, &w),
      "longest first halves");
  const int64_t want2[6] = {2, 8, 8, 3, 11, 3};
  for (int i = 0; i < 6; i++) ck_assert_int_eq(ids[i], want2[i]);
  o.truncation_side = STROP_SIDE_LEFT;
  o.max_length = 4;
  ck_assert_str_eq(ids_of(t, "un hello world", &o), "2 8 11 3");
  o.truncation_side = STROP_SIDE_RIGHT;
  ck_assert_str_eq(ids_of(t, "un hello world", &o), "2 5 8 3");
  /* only_second cannot remove 5 from a pair side of 2 */
  o.truncation = STROP_TRUNCATE_ONLY_SECOND;
  o.max_length = 5;
  strop_clear_error();
  ck_assert_int_eq(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, &o, ids, NULL, NULL, NULL, 32, &w),
      STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "row 0"));
  o.truncation = STROP_TRUNCATE_ONLY_FIRST;
  ck_assert_int_eq(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, &o, ids, NULL, NULL, NULL, 32, &w),
      STROP_E_INVALID_ARG);
  o.max_length = 6;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, &o, ids, NULL, NULL, NULL, 32, &w),
      "only first");
  ck_assert_int_eq(w, 6);
  /* max_length below the template's special tokens */
  o.max_length = 2;
  ck_assert_int_eq(
      strop_tokenizer_encode_batch(t, texts, pairs, 1, &o, ids, NULL, NULL, NULL, 32, &w),
      STROP_E_INVALID_ARG);
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(padding_sides_and_lengths) {
  strop_tokenizer *t = J(WP_JSON);
  const char *texts[3] = {"hello", "hello world hello", ""};
  int64_t ids[64], mask[64], w = 0;
  strop_encode_options o;
  strop_encode_options_init(&o);
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, NULL, 3, &o, ids, NULL, mask, NULL, 64, &w),
      "longest");
  ck_assert_int_eq(w, 5);
  const int64_t r0[5] = {2, 8, 3, 0, 0}, r2[5] = {2, 3, 0, 0, 0};
  for (int i = 0; i < 5; i++) {
    ck_assert_int_eq(ids[i], r0[i]);
    ck_assert_int_eq(ids[10 + i], r2[i]);
    ck_assert_int_eq(mask[i], i < 3);
  }
  o.padding_side = STROP_SIDE_LEFT;
  o.pad_to_multiple_of = 4;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, NULL, 3, &o, ids, NULL, mask, NULL, 64, &w),
      "left, multiple of 4");
  ck_assert_int_eq(w, 8);
  ck_assert_int_eq(ids[5], 2);
  ck_assert_int_eq(mask[4], 0);
  ck_assert_int_eq(mask[5], 1);
  o.padding = STROP_PAD_MAX_LENGTH;
  o.padding_side = STROP_SIDE_RIGHT;
  o.pad_to_multiple_of = 0;
  o.max_length = 10;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, NULL, 3, &o, ids, NULL, mask, NULL, 64, &w),
      "max_length");
  ck_assert_int_eq(w, 10);
  ck_assert_str_eq(ids_of(t, "hello", &o), "2 8 3 0 0 0 0 0 0 0");
  /* a buffer too small: the width comes back, nothing is written */
  ids[0] = -7;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, NULL, 3, &o, ids, NULL, NULL, NULL, 29, &w),
      "small cap");
  ck_assert_int_eq(w, 10);
  ck_assert_int_eq(ids[0], -7);
  /* no padding: rows end where they end, the rest holds the pad id with mask 0 */
  o.padding = STROP_PAD_NONE;
  strop_test_must(
      strop_tokenizer_encode_batch(t, texts, NULL, 3, &o, ids, NULL, mask, NULL, 64, &w), "none");
  ck_assert_int_eq(w, 5);
  ck_assert_int_eq(mask[3], 0);
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(single_encode_cap) {
  strop_tokenizer *t = J(WP_JSON);
  int64_t ids[2] = {-1, -1}, n = 0;
  strop_test_must(strop_tokenizer_encode(t, "hello world", 11, NULL, ids, 2, &n), "cap 2");
  ck_assert_int_eq(n, 4);
  ck_assert_int_eq(ids[0], 2);
  ck_assert_int_eq(ids[1], 8);
  strop_test_must(strop_tokenizer_encode(t, "hello world", 11, NULL, NULL, 0, &n), "cap 0");
  ck_assert_int_eq(n, 4);
  strop_test_must(strop_tokenizer_encode(t, NULL, 0, NULL, NULL, 0, &n), "empty");
  ck_assert_int_eq(n, 2);
  strop_tokenizer_free(t);
}
END_TEST

/* ---------------------------------------------------------- invalid UTF-8 ---- */

START_TEST(invalid_utf8_reads_as_replacement) {
  strop_tokenizer *t = char_tok("null");
  /* each maximal invalid subsequence is one U+FFFD standing for its bytes */
  IDS(t,
      "a\xff"
      "b",
      "1 0 2");
  ck_assert_str_eq(offsets_of(t, "a\xff"
                                 "b"),
                   "0-1 1-2 2-3");
  ck_assert_str_eq(offsets_of(t, "a\xe2\x82"
                                 "b"),
                   "0-1 1-3 3-4");
  ck_assert_str_eq(offsets_of(t, "\xed\xa0\x80"), "0-1 1-2 2-3"); /* a surrogate: 3 units */
  strop_tokenizer_free(t);
  /* a byte-level tokenizer decodes a cut sequence to U+FFFD too */
  const char *corpus = put_text("c.txt", "hello hello world\n");
  const char *paths[1] = {corpus};
  strop_bpe_train_options bo;
  strop_bpe_train_options_init(&bo);
  bo.vocab_size = 270;
  strop_test_must(strop_tokenizer_train_bpe(paths, 1, &bo, &t), "train");
  int64_t ids[8], n;
  strop_test_must(strop_tokenizer_encode(t, "\xc3\xa9", 2, NULL, ids, 8, &n), "encode é");
  ck_assert_int_eq(n, 2);
  char out[32];
  ck_assert_int_eq(strop_tokenizer_decode(t, ids, 1, 0, out, sizeof out), 3);
  ck_assert_str_eq(out, "\xef\xbf\xbd");
  strop_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------ SentencePiece ---- */

/* Protobuf writers for a tiny ModelProto. */
static size_t pb_varint(uint8_t *o, uint64_t v) {
  size_t k = 0;
  do {
    o[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
    v >>= 7;
  } while (v);
  return k;
}

static size_t pb_piece(uint8_t *o, const char *piece, float score, int type) {
  uint8_t inner[128];
  size_t k = 0, n = strlen(piece);
  inner[k++] = 0x0A;
  k += pb_varint(inner + k, n);
  memcpy(inner + k, piece, n);
  k += n;
  inner[k++] = 0x15;
  memcpy(inner + k, &score, 4); /* little-endian host, as the format */
  k += 4;
  inner[k++] = 0x18;
  k += pb_varint(inner + k, (uint64_t)type);
  size_t m = 0;
  o[m++] = 0x0A;
  m += pb_varint(o + m, k);
  memcpy(o + m, inner, k);
  return m + k;
}

/* A unigram (or BPE) model: <unk> <s> </s> ▁ a b ab ▁ab c <0x63>... */
static size_t make_spm(uint8_t *buf, int bpe, int byte_fallback) {
  size_t k = 0;
  k += pb_piece(buf + k, "<unk>", 0, 2);
  k += pb_piece(buf + k, "<s>", 0, 3);
  k += pb_piece(buf + k, "</s>", 0, 3);
  k += pb_piece(buf + k, "\xe2\x96\x81", -1, 1);
  k += pb_piece(buf + k, "a", -2, 1);
  k += pb_piece(buf + k, "b", -3, 1);
  k += pb_piece(buf + k, "ab", -1.5f, 1);
  k += pb_piece(buf + k,
                "\xe2\x96\x81"
                "ab",
                -1, 1);
  k += pb_piece(buf + k, "c", -4, 1);
  k += pb_piece(buf + k, "<0x78>", 0, 6);
  k += pb_piece(buf + k,
                "\xe2\x96\x81"
                "a",
                -5, 1);
  /* trainer_spec: model_type, byte_fallback */
  uint8_t ts[16];
  size_t t = 0;
  ts[t++] = 0x18;
  ts[t++] = bpe ? 2 : 1;
  ts[t++] = 0x98; /* field 35, varint: (35 << 3) = 0x118 */
  ts[t++] = 0x02;
  ts[t++] = (uint8_t)byte_fallback;
  buf[k++] = 0x12;
  k += pb_varint(buf + k, t);
  memcpy(buf + k, ts, t);
  k += t;
  /* normalizer_spec: no charsmap, the default flags */
  buf[k++] = 0x1A;
  buf[k++] = 0;
  return k;
}

START_TEST(spm_protobuf_unigram_and_bpe) {
  uint8_t buf[2048];
  size_t n = make_spm(buf, 0, 1);
  strop_tokenizer *t = NULL;
  strop_test_must(strop__tx_load_spm(buf, n, "u.model", 0, 0, &t), "unigram");
  /* leading/trailing/double spaces collapse, ▁ first; x falls back to its byte, y is <unk> */
  TOKS(t, "  ab  abc x",
       "\xe2\x96\x81"
       "ab|\xe2\x96\x81"
       "ab|c|\xe2\x96\x81|<0x78>");
  IDS(t, "ay", "3 4 0"); /* ▁ a (-3) beats ▁a (-5) */
  ck_assert_str_eq(decode_of(t, "7 7 8 3 9 1", 0), "ab abc x");
  ck_assert_str_eq(decode_of(t, "7 0", 0), "ab \xe2\x81\x87 ");
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_BOS), 1);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_EOS), 2);
  /* a token added to a SentencePiece model: cut out before normalization, decoded as it is */
  int64_t nid;
  strop_test_must(strop_tokenizer_add_token(t, "<mask>", STROP_TOKEN_SPECIAL, &nid), "add");
  ck_assert_int_eq(nid, 11);
  IDS(t, "ab<mask>ab", "7 11 7");
  ck_assert_str_eq(decode_of(t, "7 11 7", 0), "ab<mask> ab");
  ck_assert_str_eq(decode_of(t, "7 11 7", 1), "ab ab");
  /* no tokenizer.json form for SentencePiece's rules */
  ck_assert_int_eq(strop_tokenizer_save(t, put_text("x.json", "")), STROP_E_UNSUPPORTED);
  strop_tokenizer_free(t);
  n = make_spm(buf, 1, 0);
  strop_test_must(strop__tx_load_spm(buf, n, "b.model", 1, 1, &t), "bpe");
  /* merges by score: ▁ab (-1) first; unknown characters join into one <unk> */
  IDS(t, "abab xy", "1 7 6 3 0 2");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(spm_broken_files) {
  uint8_t buf[2048];
  size_t n = make_spm(buf, 0, 0);
  strop_tokenizer *t = NULL;
  /* every truncation of a valid model fails cleanly or loads */
  for (size_t cut = 0; cut < n; cut++) {
    strop_status st = strop__tx_load_spm(buf, cut, "cut.model", 0, 0, &t);
    if (st == STROP_OK) strop_tokenizer_free(t);
    else ck_assert_msg(strop_last_error()[0], "no sentence at cut %zu", cut);
    t = NULL;
  }
  /* a length past the end */
  uint8_t bad[4] = {0x0A, 0x7F, 0x0A, 0x01};
  ck_assert_int_eq(strop__tx_load_spm(bad, 4, "bad.model", 0, 0, &t), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "bad.model"));
  /* a WORD model is named */
  size_t k = make_spm(buf, 0, 0);
  for (size_t i = 0; i + 1 < k; i++)
    if (buf[i] == 0x18 && buf[i + 1] == 1 && buf[i - 2] == 0x12) buf[i + 1] = 3;
  ck_assert_int_eq(strop__tx_load_spm(buf, k, "w.model", 0, 0, &t), STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "WORD"));
}
END_TEST

/* ------------------------------------------------------------ files ---- */

START_TEST(vocab_files_and_folders) {
  /* GPT-2's pair: vocab.json + merges.txt, found from either file or the folder */
  char vocab[8192] = "{";
  size_t k = 1;
  for (int b = 0; b < 256; b++) {
    char u[4];
    size_t n = strop__tx_utf8_put(strop__tx_byte_char((uint8_t)b), u);
    char esc[16];
    if (u[0] == '"' || u[0] == '\\') snprintf(esc, sizeof esc, "\\%c", u[0]);
    else snprintf(esc, sizeof esc, "%.*s", (int)n, u);
    k += (size_t)snprintf(vocab + k, sizeof vocab - k, "\"%s\": %d, ", esc, b);
  }
  snprintf(vocab + k, sizeof vocab - k,
           "\"\xc4\xa0h\": 256, \"\xc4\xa0hi\": 257, \"<|endoftext|>\": 258}");
  put_text("gpt2/vocab.json", vocab);
  put_text("gpt2/merges.txt", "#version: 0.2\n\xc4\xa0 h\n\xc4\xa0h i\n");
  char dir[600];
  snprintf(dir, sizeof dir, "%s/gpt2", tmpdir());
  strop_tokenizer *t = NULL;
  strop_test_must(strop_tokenizer_load(dir, NULL, &t), "folder");
  IDS(t, "hi hi<|endoftext|>", "104 105 257 258");
  ck_assert_str_eq(decode_of(t, "104 105 257 258", 1), "hi hi");
  strop_tokenizer_free(t);
  strop_tokenizer_options opt;
  strop_tokenizer_options_init(&opt);
  opt.add_prefix_space = 1;
  char path[700];
  snprintf(path, sizeof path, "%s/gpt2/merges.txt", tmpdir());
  strop_test_must(strop_tokenizer_load(path, &opt, &t), "merges.txt");
  IDS(t, "hi", "257");
  strop_tokenizer_free(t);
  /* BERT's vocab.txt, cased through tokenizer_config.json */
  put_text("bert/vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nHello\n##s\n");
  put_text("bert/tokenizer_config.json", "{\"do_lower_case\": false}");
  snprintf(dir, sizeof dir, "%s/bert", tmpdir());
  strop_test_must(strop_tokenizer_load(dir, NULL, &t), "bert folder");
  IDS(t, "Hellos hello", "2 6 7 5 3");
  strop_tokenizer_free(t);
  opt.lowercase = 1;
  strop_test_must(strop_tokenizer_load(dir, &opt, &t), "bert folder, lower");
  IDS(t, "Hellos", "2 5 7 3");
  strop_tokenizer_free(t);
  /* a folder with nothing to load */
  snprintf(dir, sizeof dir, "%s/empty", tmpdir());
  mkdir(dir, 0755);
  ck_assert_int_eq(strop_tokenizer_load(dir, NULL, &t), STROP_E_NOT_FOUND);
  ck_assert_ptr_null(t);
}
END_TEST

START_TEST(unknown_types_are_named) {
  ck_assert_int_eq(J_err("{\"normalizer\": {\"type\": \"Fancy\"}, \"model\": {\"type\": \"BPE\","
                         " \"vocab\": {}, \"merges\": []}}"),
                   STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "bad.json"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "normalizer"));
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "'Fancy'"));
  ck_assert_int_eq(J_err("{\"model\": {\"type\": \"Unigrammar\", \"vocab\": []}}"),
                   STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "model"));
  ck_assert_int_eq(J_err("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\":"
                         " [{\"type\": \"UnicodeScripts\"}]}, \"model\": {\"type\": \"BPE\","
                         " \"vocab\": {}, \"merges\": []}}"),
                   STROP_E_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "pre_tokenizer.pretokenizers[0]"));
  ck_assert_int_eq(J_err("{\"decoder\": {\"type\": \"CTC\"}, \"model\": {\"type\": \"BPE\","
                         " \"vocab\": {}, \"merges\": []}}"),
                   STROP_E_UNSUPPORTED);
  ck_assert_int_eq(J_err("{\"post_processor\": {\"type\": \"Nope\"}, \"model\": {\"type\":"
                         " \"BPE\", \"vocab\": {}, \"merges\": []}}"),
                   STROP_E_UNSUPPORTED);
  /* malformed files name the line and column or the JSON path */
  ck_assert_int_eq(J_err("{\"model\": {\n\"type\": }"), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "bad.json:2:"));
  ck_assert_int_eq(J_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\":"
                         " [\"a b\"]}}"),
                   STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "\"b\" is not in the vocabulary"));
  ck_assert_int_eq(J_err("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0},"
                         " \"merges\": []}}"),
                   STROP_E_FORMAT);
  ck_assert_int_eq(J_err("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\":"
                         " \"(\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"BPE\","
                         " \"vocab\": {}, \"merges\": []}}"),
                   STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "does not compile"));
  ck_assert_int_eq(J_err("{\"vocab\": {}}"), STROP_E_FORMAT);
  ck_assert_int_eq(J_err("[1, 2]"), STROP_E_FORMAT);
  ck_assert_int_eq(J_err("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": -1}}}"),
                   STROP_E_FORMAT);
  ck_assert_int_eq(J_err("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0], [\"a\","
                         " 1]]}}"),
                   STROP_E_FORMAT);
  ck_assert_int_eq(J_err("{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\":"
                         " [{\"SpecialToken\": {\"id\": \"[X]\", \"type_id\": 0}}], \"pair\": [],"
                         " \"special_tokens\": {}}, \"model\": {\"type\": \"BPE\", \"vocab\": {},"
                         " \"merges\": []}}"),
                   STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "[X]"));
}
END_TEST

/* ------------------------------------------------------ training and saving ---- */

START_TEST(train_save_reload) {
  char text[4096] = "";
  for (int i = 0; i < 8; i++)
    strcat(text, "the cat sat on the mat\nthe dog sat on the log\nthe cat and the dog\n"
                 "<|endoftext|> the end of a story\n");
  const char *paths[1] = {put_text("train.txt", text)};
  const char *specials[2] = {"<|endoftext|>", "<pad>"};
  strop_bpe_train_options o;
  strop_bpe_train_options_init(&o);
  o.vocab_size = 280;
  o.special_tokens = specials;
  o.num_special_tokens = 2;
  strop_tokenizer *t = NULL;
  strop_test_must(strop_tokenizer_train_bpe(paths, 1, &o, &t), "train");
  ck_assert_int_eq(strop_tokenizer_vocab_size(t), 280);
  ck_assert_int_eq(strop_tokenizer_token_to_id(t, "<|endoftext|>"), 0);
  ck_assert_int_eq(strop_tokenizer_token_to_id(t, "<pad>"), 1);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_PAD), 1);
  /* the most frequent pairs merged first: " the" is one token */
  ck_assert_int_ge(strop_tokenizer_token_to_id(t, "\xc4\xa0the"), 258);
  ck_assert_int_ge(strop_tokenizer_token_to_id(t, "\xc4\xa0sat"), 258);
  const char *probe = "the cat sat on the log, unseen words too <|endoftext|>";
  char ids1[4096];
  snprintf(ids1, sizeof ids1, "%s", ids_of(t, probe, NULL));
  ck_assert_str_eq(decode_of(t, ids1, 0), probe);
  const char *saved = put_text("trained.json", "");
  strop_test_must(strop_tokenizer_save(t, saved), "save");
  {
    /* merges as "a b", which every version of Hugging Face's reader takes */
    size_t n;
    char *f = strop_test_read_file(saved, &n);
    ck_assert_ptr_nonnull(strstr(f, "\"\xc4\xa0 the\""));
    free(f);
  }
  strop_tokenizer *u = NULL;
  strop_test_must(strop_tokenizer_load(saved, NULL, &u), "reload");
  ck_assert_str_eq(ids_of(u, probe, NULL), ids1);
  ck_assert_int_eq(strop_tokenizer_vocab_size(u), 280);
  /* saved again, byte for byte the same */
  const char *again = put_text("again.json", "");
  strop_test_must(strop_tokenizer_save(u, again), "save again");
  size_t n1, n2;
  char *f1 = strop_test_read_file(saved, &n1), *f2 = strop_test_read_file(again, &n2);
  ck_assert_uint_eq(n1, n2);
  ck_assert_int_eq(memcmp(f1, f2, n1), 0);
  free(f1);
  free(f2);
  strop_tokenizer_free(u);
  strop_tokenizer_free(t);
  /* a loaded tokenizer.json round-trips too */
  t = J(WP_JSON);
  saved = put_text("wp.json", "");
  strop_test_must(strop_tokenizer_save(t, saved), "save wp");
  strop_test_must(strop_tokenizer_load(saved, NULL, &u), "reload wp");
  ck_assert_str_eq(ids_of(u, "UNaffable Hellos, Café!", NULL), "2 5 6 7 8 9 10 12 14 3");
  strop_tokenizer_free(u);
  strop_tokenizer_free(t);
}
END_TEST

/* -------------------------------------------------------------- errors ---- */

START_TEST(public_functions_refuse_bad_arguments) {
  strop_tokenizer *t = J(WP_JSON);
  int64_t size = strop_tokenizer_vocab_size(t), ids[8], n = 0, w = 0;
  int64_t live = strop__alloc_live();
#define REFUSED(call, status)                                         \
  do {                                                                \
    strop_clear_error();                                              \
    ck_assert_int_eq((call), (status));                               \
    ck_assert_msg(strop_last_error()[0], "no sentence after " #call); \
    ck_assert_int_eq(strop__alloc_live(), live);                      \
  } while (0)
  strop_tokenizer *none = (strop_tokenizer *)1;
  REFUSED(strop_tokenizer_load(NULL, NULL, &none), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_load(tmpdir(), NULL, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_load("/nonexistent/tok.json", NULL, &none), STROP_E_IO);
  ck_assert_ptr_null(none);
  strop_tokenizer_options lo;
  strop_tokenizer_options_init(&lo);
  lo.lowercase = 7;
  REFUSED(strop_tokenizer_load(tmpdir(), &lo, &none), STROP_E_INVALID_ARG);
  lo.size = 0;
  REFUSED(strop_tokenizer_load(tmpdir(), &lo, &none), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_save(NULL, "x.json"), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_save(t, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_save(t, "/nonexistent/dir/x.json"), STROP_E_IO);
  REFUSED(strop_tokenizer_token_to_id(t, "zzz"), -1);
  REFUSED(strop_tokenizer_token_to_id(NULL, "a"), -1);
  REFUSED(strop_tokenizer_id_to_token(t, size, NULL, 0), -1);
  REFUSED(strop_tokenizer_id_to_token(t, -1, NULL, 0), -1);
  REFUSED(strop_tokenizer_id_to_token(t, 0, NULL, 5), -1);
  REFUSED(strop_tokenizer_id_to_token(NULL, 0, NULL, 0), -1);
  REFUSED(strop_tokenizer_token_flags(t, size), -1);
  REFUSED(strop_tokenizer_token_flags(NULL, 0), -1);
  REFUSED(strop_tokenizer_add_token(t, "", 0, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_add_token(t, NULL, 0, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_add_token(t, "\xff", 0, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_add_token(t, "x", 1 << 10, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_add_token(NULL, "x", 0, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_tokenizer_vocab_size(t), size);
  ck_assert_int_eq(strop_tokenizer_special_id(t, 99), -1);
  ck_assert_int_eq(strop_tokenizer_special_id(NULL, 0), -1);
  REFUSED(strop_tokenizer_set_special_id(t, 99, 0), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_set_special_id(t, STROP_ROLE_PAD, size), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_set_special_id(NULL, 0, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_tokenizer_special_id(t, STROP_ROLE_PAD), 0);
  REFUSED(strop_tokenizer_encode(NULL, "a", 1, NULL, ids, 8, &n), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode(t, NULL, 1, NULL, ids, 8, &n), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode(t, "a", 1, NULL, NULL, 8, &n), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode(t, "a", 1, NULL, ids, 8, NULL), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode(t, "a", 1, NULL, ids, -1, &n), STROP_E_INVALID_ARG);
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.max_length = -1;
  REFUSED(strop_tokenizer_encode(t, "a", 1, &o, ids, 8, &n), STROP_E_INVALID_ARG);
  strop_encode_options_init(&o);
  o.truncation = 9;
  REFUSED(strop_tokenizer_encode(t, "a", 1, &o, ids, 8, &n), STROP_E_INVALID_ARG);
  strop_encode_options_init(&o);
  o.padding = STROP_PAD_MAX_LENGTH;
  REFUSED(strop_tokenizer_encode(t, "a", 1, &o, ids, 8, &n), STROP_E_INVALID_ARG);
  strop_encode_options_init(&o);
  o.pad_id = size;
  REFUSED(strop_tokenizer_encode(t, "a", 1, &o, ids, 8, &n), STROP_E_INVALID_ARG);
  const char *texts[2] = {"a", NULL};
  REFUSED(strop_tokenizer_encode_batch(t, texts, NULL, 2, NULL, ids, NULL, NULL, NULL, 8, &w),
          STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode_batch(t, texts, NULL, 0, NULL, ids, NULL, NULL, NULL, 8, &w),
          STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode_batch(t, NULL, NULL, 1, NULL, ids, NULL, NULL, NULL, 8, &w),
          STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode_batch(t, texts, NULL, 1, NULL, NULL, NULL, NULL, NULL, 8, &w),
          STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode_batch(t, texts, NULL, 1, NULL, ids, NULL, NULL, NULL, 8, NULL),
          STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_encode_batch(NULL, texts, NULL, 1, NULL, ids, NULL, NULL, NULL, 8, &w),
          STROP_E_INVALID_ARG);
  int64_t bad[2] = {2, size + 5};
  char out[16];
  REFUSED(strop_tokenizer_decode(t, bad, 2, 0, out, sizeof out), -1);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "ids[1]"));
  REFUSED(strop_tokenizer_decode(t, NULL, 2, 0, out, sizeof out), -1);
  REFUSED(strop_tokenizer_decode(t, bad, -1, 0, out, sizeof out), -1);
  REFUSED(strop_tokenizer_decode(t, bad, 1, 0, NULL, 4), -1);
  REFUSED(strop_tokenizer_decode(NULL, bad, 1, 0, out, sizeof out), -1);
  const char *paths[1] = {"/nonexistent/corpus.txt"};
  strop_bpe_train_options bo;
  strop_bpe_train_options_init(&bo);
  REFUSED(strop_tokenizer_train_bpe(paths, 1, &bo, &none), STROP_E_IO);
  REFUSED(strop_tokenizer_train_bpe(NULL, 1, &bo, &none), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_train_bpe(paths, 0, &bo, &none), STROP_E_INVALID_ARG);
  REFUSED(strop_tokenizer_train_bpe(paths, 1, &bo, NULL), STROP_E_INVALID_ARG);
  bo.vocab_size = 100;
  REFUSED(strop_tokenizer_train_bpe(paths, 1, &bo, &none), STROP_E_INVALID_ARG);
  strop_bpe_train_options_init(&bo);
  const char *dup[2] = {"<a>", "<a>"};
  bo.special_tokens = dup;
  bo.num_special_tokens = 2;
  const char *good[1] = {put_text("tiny.txt", "abc\n")};
  REFUSED(strop_tokenizer_train_bpe(good, 1, &bo, &none), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(none);
#undef REFUSED
  /* NULL-safe initialisers and free */
  strop_tokenizer_options_init(NULL);
  strop_encode_options_init(NULL);
  strop_bpe_train_options_init(NULL);
  strop_tokenizer_free(NULL);
  ck_assert_int_eq(strop_tokenizer_vocab_size(NULL), -1);
  /* the tokenizer still works as before */
  IDS(t, "hello", "2 8 3");
  strop_tokenizer_free(t);
}
END_TEST

/* ---------------------------------------------------------- chat templates ---- */

#define CHAT_VOCAB                                                                            \
  "{\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0," \
  " \"<s>\": 1, \"</s>\": 2, \"hi\": 3}}, \"pre_tokenizer\": {\"type\": \"Whitespace\"}}"

/* A tokenizer folder with tokenizer_config.json (special tokens, and `config` spliced in). */
static strop_tokenizer *chat_tokenizer(const char *sub, const char *config) {
  char name[128], cfg[4096];
  snprintf(name, sizeof name, "%s/tokenizer.json", sub);
  put_text(name, CHAT_VOCAB);
  snprintf(name, sizeof name, "%s/tokenizer_config.json", sub);
  snprintf(cfg, sizeof cfg,
           "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\", \"special\": true},"
           " \"model_max_length\": 512%s%s}",
           config ? ", " : "", config ? config : "");
  const char *path = put_text(name, cfg);
  char dir[512];
  snprintf(dir, sizeof dir, "%s", path);
  *strrchr(dir, '/') = '\0';
  strop_tokenizer *t = NULL;
  ck_assert_int_eq(strop_tokenizer_load(dir, NULL, &t), STROP_OK);
  return t;
}

/* Renders with tmpl into a malloc'd string (NULL on error). */
static char *render(strop_tokenizer *t, const char *tmpl, const char *const *roles,
                    const char *const *contents, int64_t n, int gen) {
  size_t need = 0;
  if (strop_tokenizer_apply_chat_template(t, tmpl, roles, contents, n, gen, NULL, 0, &need))
    return NULL;
  char *buf = malloc(need + 1);
  size_t again = 0;
  ck_assert_int_eq(strop_tokenizer_apply_chat_template(t, tmpl, roles, contents, n, gen, buf,
                                                       need + 1, &again),
                   STROP_OK);
  ck_assert_uint_eq(again, need);
  ck_assert_uint_eq(strlen(buf), need);
  return buf;
}

static const char *const CONV_ROLES[4] = {"system", "user", "assistant", "user"};
static const char *const CONV_TEXTS[4] = {"Be brief.", "Hi there", "Hello.", "Bye"};

/* The real templates (tests/fixtures/chat_templates) against Jinja2's renders, recorded with
 * python3-jinja2 under transformers' settings; bindings/python/tests/test_chat.py compares
 * many more conversations against Jinja2 itself. */
START_TEST(real_templates_render_as_jinja) {
  strop_tokenizer *t = chat_tokenizer("chat", NULL);
  static const struct {
    const char *name, *want;
  } CASES[] = {
      {"chatml", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi "
                 "there<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n"
                 "Bye<|im_end|>\n<|im_start|>assistant\n"},
      {"llama2", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello. "
                 "</s><s>[INST] Bye [/INST]"},
      {"llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_"
                 "header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>"
                 "assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_"
                 "header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
      {"mistral", "<s>[INST] Hi there [/INST]Hello.</s>[INST] Bye [/INST]"},
      {"zephyr", "<|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\nHello.</s>\n"
                 "<|user|>\nBye</s>\n<|assistant|>\n"},
      {"qwen2", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi "
                "there<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\n"
                "Bye<|im_end|>\n<|im_start|>assistant\n"},
  };
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/chat_templates/%s.jinja", STROP_SOURCE_DIR,
             CASES[i].name);
    char *tmpl = strop_test_read_file(path, NULL);
    ck_assert_ptr_nonnull(tmpl);
    int skip = !strcmp(CASES[i].name, "mistral"); /* no system role */
    char *got = render(t, tmpl, CONV_ROLES + skip, CONV_TEXTS + skip, 4 - skip, 1);
    ck_assert_msg(got, "%s: %s", CASES[i].name, strop_last_error());
    ck_assert_str_eq(got, CASES[i].want);
    free(got);
    if (skip) { /* mistral refuses a system message with the template's own sentence */
      size_t need;
      ck_assert_int_eq(strop_tokenizer_apply_chat_template(t, tmpl, CONV_ROLES, CONV_TEXTS, 4, 1,
                                                           NULL, 0, &need),
                       STROP_E_INVALID_ARG);
      ck_assert_ptr_nonnull(strstr(strop_last_error(), "Conversation roles must alternate"));
    }
    free(tmpl);
  }
  /* truncation is snprintf's: the needed length, the start of the text */
  char small[8];
  size_t need = 0;
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "{{ messages[1].content * 1 }}abcdef", CONV_ROLES,
                                          CONV_TEXTS, 4, 0, small, sizeof small, &need),
      STROP_E_FORMAT); /* a string times an int is not in the subset */
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "{{ messages[1].content }}abcdef", CONV_ROLES,
                                          CONV_TEXTS, 4, 0, small, sizeof small, &need),
      STROP_OK);
  ck_assert_uint_eq(need, 14);
  ck_assert_str_eq(small, "Hi ther");
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(config_templates_and_special_tokens) {
  /* one template string: the default; special tokens from the config */
  strop_tokenizer *t = chat_tokenizer(
      "cfg1", "\"chat_template\": \"{{ bos_token }}{% for m in messages %}"
              "[{{ m.role }}]{{ m['content'] }}{% endfor %}{{ eos_token }}\"");
  char *got = render(t, NULL, CONV_ROLES, CONV_TEXTS, 2, 0);
  ck_assert_ptr_nonnull(got);
  ck_assert_str_eq(got, "<s>[system]Be brief.[user]Hi there</s>");
  free(got);
  strop_tokenizer_free(t);
  /* named templates: NULL picks "default", a name picks its template, other strings are
   * templates */
  t = chat_tokenizer("cfg2",
                     "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
                     " {\"name\": \"default\", \"template\": \"D{{ messages|length }}\"}]");
  got = render(t, NULL, CONV_ROLES, CONV_TEXTS, 3, 0);
  ck_assert_str_eq(got, "D3");
  free(got);
  got = render(t, "tool_use", CONV_ROLES, CONV_TEXTS, 3, 0);
  ck_assert_str_eq(got, "T");
  free(got);
  got = render(t, "{{ add_generation_prompt }}", NULL, NULL, 0, 1);
  ck_assert_str_eq(got, "True");
  free(got);
  strop_tokenizer_free(t);
  /* chat_template.jinja beside a config without one (transformers' newer layout) */
  put_text("cfg3/chat_template.jinja", "J{{ messages[0].content }}\n");
  t = chat_tokenizer("cfg3", NULL);
  got = render(t, NULL, CONV_ROLES, CONV_TEXTS, 1, 0);
  ck_assert_str_eq(got, "JBe brief.");
  free(got);
  strop_tokenizer_free(t);
  /* a config whose chat_template has the wrong type is refused, naming the file */
  put_text("cfg4/tokenizer_config.json", "{\"chat_template\": 3}");
  const char *cfg = put_text("cfg4/tokenizer.json", CHAT_VOCAB);
  strop_tokenizer *none = (strop_tokenizer *)1;
  ck_assert_int_eq(strop_tokenizer_load(cfg, NULL, &none), STROP_E_FORMAT); /* a file */
  ck_assert_ptr_null(none);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "cfg4/tokenizer_config.json"));
  /* without tokenizer_config.json: the tokenizer's own role tokens */
  put_text(
      "cfg5/tokenizer.json",
      "{\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\":"
      " 0, \"<s>\": 1, \"</s>\": 2}}, \"post_processor\": {\"type\": \"TemplateProcessing\","
      " \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": "
      "{\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": "
      "0}}], \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], "
      "\"tokens\": [\"<s>\"]}, \"</s>\": {\"id\": \"</s>\", \"ids\": [2], \"tokens\": "
      "[\"</s>\"]}}}}");
  char dir[512];
  snprintf(dir, sizeof dir, "%s/cfg5", tmpdir());
  ck_assert_int_eq(strop_tokenizer_load(dir, NULL, &t), STROP_OK);
  got = render(t, "{{ unk_token }}|{{ bos_token }}|{{ eos_token }}", NULL, NULL, 0, 0);
  ck_assert_ptr_nonnull(got);
  ck_assert_str_eq(got, "<unk>|<s>|</s>");
  free(got);
  strop_tokenizer_free(t);
}
END_TEST

START_TEST(chat_template_errors) {
  strop_tokenizer *t = chat_tokenizer("chaterr", NULL);
  const char *roles[2] = {"user", NULL}, *texts[2] = {"hi", "x"};
  char buf[64];
  size_t need = 7;
#define CHAT_REFUSED(tmpl, status, part)                                                   \
  do {                                                                                     \
    need = 7;                                                                              \
    ck_assert_int_eq(strop_tokenizer_apply_chat_template(t, tmpl, roles, texts, 1, 1, buf, \
                                                         sizeof buf, &need),               \
                     status);                                                              \
    ck_assert_msg(strstr(strop_last_error(), part), "%s", strop_last_error());             \
    ck_assert_uint_eq(need, 0);                                                            \
  } while (0)
  /* no template of its own */
  CHAT_REFUSED(NULL, STROP_E_NOT_FOUND, "no chat template");
  /* syntax the subset does not know: named with the template, line and column */
  CHAT_REFUSED("ab\n  {{ 1 + @ }}", STROP_E_FORMAT, "the chat template:2:10: unknown syntax '@'");
  CHAT_REFUSED("{% macro f() %}{% endmacro %}", STROP_E_FORMAT,
               "1:4: unknown syntax: the statement 'macro'");
  CHAT_REFUSED("{% if x %}never closed", STROP_E_FORMAT, "1:1: the block is never closed");
  CHAT_REFUSED("x {{ 1 ", STROP_E_FORMAT, "1:3: '{{' is never closed");
  CHAT_REFUSED("{{ 'abc }}", STROP_E_FORMAT, "1:1: '{{' is never closed");
  CHAT_REFUSED("{{ 1.5 }}", STROP_E_FORMAT, "integers only");
  CHAT_REFUSED("{{ x | wordcount }}", STROP_E_FORMAT, "unknown filter 'wordcount'");
  CHAT_REFUSED("{{ x | tojson }}", STROP_E_FORMAT, "tojson cannot write a undefined");
  CHAT_REFUSED("{{ x is callable }}", STROP_E_FORMAT, "unknown test 'callable'");
  CHAT_REFUSED("{{ 'a' + 1 }}", STROP_E_FORMAT, "unsupported operand types for +: str and int");
  CHAT_REFUSED("{{ 1 // 0 }}", STROP_E_FORMAT, "division by zero");
  CHAT_REFUSED("{{ messages[0].content.foo() }}", STROP_E_FORMAT, "unknown method 'foo'");
  CHAT_REFUSED("{% break %}", STROP_E_FORMAT, "outside a loop");
  CHAT_REFUSED("{{ raise_exception('Only user and assistant roles') }}", STROP_E_INVALID_ARG,
               "the template refused the messages: Only user and assistant roles");
  /* bounds: nesting, output size, steps */
  char deep[400];
  memset(deep, '(', 200);
  snprintf(deep, 3, "{{");
  memset(deep + 2, '(', 200);
  snprintf(deep + 202, sizeof deep - 202, "1");
  for (int k = 0; k < 100; k++) deep[203 + k] = ')';
  snprintf(deep + 303, sizeof deep - 303, "}}");
  CHAT_REFUSED(deep, STROP_E_FORMAT, "nested too deeply");
  CHAT_REFUSED(
      "{% set s = 'xxxxxxxxxxxxxxxx' %}{% for i in range(1000000) %}{{ s }}{{ s }}{{ s }}"
      "{{ s }}{{ s }}{% endfor %}",
      STROP_E_FORMAT, "longer than 64 MiB");
  CHAT_REFUSED(
      "{% set r = range(5000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
      STROP_E_FORMAT, "too many steps");
  CHAT_REFUSED(
      "{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}",
      STROP_E_FORMAT, "more than 256 MiB of values");
  /* bad arguments */
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(NULL, "x", roles, texts, 1, 0, buf, sizeof buf, &need),
      STROP_E_INVALID_ARG);
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", roles, texts, 1, 0, buf, sizeof buf, NULL),
      STROP_E_INVALID_ARG);
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", NULL, texts, 1, 0, buf, sizeof buf, &need),
      STROP_E_INVALID_ARG);
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", roles, texts, 2, 0, buf, sizeof buf, &need),
      STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "roles[1] is NULL"));
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", roles, texts, -1, 0, buf, sizeof buf, &need),
      STROP_E_INVALID_ARG);
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", roles, texts, 1, 2, buf, sizeof buf, &need),
      STROP_E_INVALID_ARG);
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", roles, texts, 1, 0, NULL, 4, &need),
      STROP_E_INVALID_ARG);
  const char *bad[1] = {"\xff"};
  ck_assert_int_eq(
      strop_tokenizer_apply_chat_template(t, "x", roles, bad, 1, 0, buf, sizeof buf, &need),
      STROP_E_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "contents[0] is not valid UTF-8"));
  ck_assert_int_eq(strop_tokenizer_apply_chat_template(t, "\xff{{", roles, texts, 1, 0, buf,
                                                       sizeof buf, &need),
                   STROP_E_FORMAT);
#undef CHAT_REFUSED
  /* the tokenizer is unchanged and still renders */
  char *got = render(t, "{{ messages[0]['content'] }}", roles, texts, 1, 0);
  ck_assert_str_eq(got, "hi");
  free(got);
  strop_tokenizer_free(t);
}
END_TEST

static int op_chat(void *ctx) {
  strop_tokenizer *t = ctx;
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fixtures/chat_templates/llama2.jinja", STROP_SOURCE_DIR);
  char *tmpl = strop_test_read_file(path, NULL);
  size_t need;
  char buf[512];
  strop_status st = strop_tokenizer_apply_chat_template(t, tmpl, CONV_ROLES, CONV_TEXTS, 4, 1,
                                                        buf, sizeof buf, &need);
  free(tmpl);
  return st;
}

static int op_chat_load(void *ctx) {
  strop_tokenizer *t = NULL;
  strop_status st = strop_tokenizer_load(ctx, NULL, &t);
  strop_tokenizer_free(t);
  return st;
}

/* ------------------------------------------------------ allocation failures ---- */

static int op_load_encode_json(void *ctx) {
  const char *json = ctx;
  strop_tokenizer *t = NULL;
  strop_status st = strop__tx_load_json(json, strlen(json), "sweep.json", &t);
  if (st) return st;
  int64_t added;
  if ((st = strop_tokenizer_add_token(t, "<added>", STROP_TOKEN_NORMALIZED, &added))) {
    strop_tokenizer_free(t);
    return st;
  }
  const char *texts[2] = {"UNaffable Hellos, Café! 日本", "hello <ADDED> world"};
  const char *pairs[2] = {"hello", NULL};
  int64_t ids[64], types[64], mask[64], offs[128], w;
  strop_encode_options o;
  strop_encode_options_init(&o);
  o.pad_id = 0;
  st = strop_tokenizer_encode_batch(t, texts, pairs, 2, &o, ids, types, mask, offs, 64, &w);
  if (!st) {
    char out[128];
    if (strop_tokenizer_decode(t, ids, w, 1, out, sizeof out) < 0) st = STROP_E_NOMEM;
  }
  strop_tokenizer_free(t);
  return st;
}

static int op_load_encode_spm(void *ctx) {
  (void)ctx;
  uint8_t buf[2048];
  size_t n = make_spm(buf, 1, 1);
  strop_tokenizer *t = NULL;
  strop_status st = strop__tx_load_spm(buf, n, "sweep.model", 0, 0, &t);
  if (st) return st;
  int64_t ids[64], k;
  st = strop_tokenizer_encode(t, "abab x ab", 9, NULL, ids, 64, &k);
  strop_tokenizer_free(t);
  return st;
}

static int op_train(void *ctx) {
  const char *paths[1] = {ctx};
  strop_bpe_train_options o;
  strop_bpe_train_options_init(&o);
  o.vocab_size = 300;
  strop_tokenizer *t = NULL;
  strop_status st = strop_tokenizer_train_bpe(paths, 1, &o, &t);
  if (!st) {
    int64_t ids[64], k;
    st = strop_tokenizer_encode(t, "the cat", 7, NULL, ids, 64, &k);
  }
  strop_tokenizer_free(t);
  return st;
}

START_TEST(allocation_failures_are_clean) {
  ck_assert_int_ge(strop_test_alloc_sweep(op_load_encode_json, NULL, (void *)WP_JSON), 10);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load_encode_json, NULL, (void *)UNI_JSON), 10);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load_encode_json, NULL, (void *)BPE_JSON), 10);
  ck_assert_int_ge(strop_test_alloc_sweep(op_load_encode_spm, NULL, NULL), 10);
  const char *corpus = put_text("sweep.txt", "the cat sat on the mat\nthe dog\n");
  ck_assert_int_ge(strop_test_alloc_sweep(op_train, NULL, (void *)corpus), 10);
  strop_tokenizer *t = chat_tokenizer("chatsweep",
                                      "\"chat_template\": [{\"name\": \"default\", \"template\":"
                                      " \"x\"}], \"pad_token\": \"<pad>\"");
  ck_assert_int_ge(strop_test_alloc_sweep(op_chat, NULL, t), 3);
  strop_tokenizer_free(t);
  char dir[512];
  snprintf(dir, sizeof dir, "%s/chatsweep", tmpdir());
  ck_assert_int_ge(strop_test_alloc_sweep(op_chat_load, NULL, dir), 10);
}
END_TEST

/* -------------------------------------------------------------- suite ---- */

static Suite *suite(void) {
  Suite *s = suite_create("text");
  struct {
    const char *name;
    const TTest *tests[12];
  } cases[] = {
      {"models",
       {bpe_merges_in_rank_order, bpe_continuing_prefix_and_ignore_merges,
        wordpiece_bert_pipeline, unigram_viterbi_and_byte_fallback, wordlevel_and_old_files}},
      {"normalizers", {unicode_normal_forms, other_normalizers, precompiled_charsmap}},
      {"pre_tokenizers", {split_behaviours, pre_tokenizers, metaspace_prepend_schemes}},
      {"added_tokens", {added_token_flags, add_token_at_run_time}},
      {"post_processors", {templates_and_type_ids, bert_and_roberta_processing}},
      {"decoders", {decoders}},
      {"batch", {truncation_strategies, padding_sides_and_lengths, single_encode_cap}},
      {"utf8", {invalid_utf8_reads_as_replacement}},
      {"files",
       {spm_protobuf_unigram_and_bpe, spm_broken_files, vocab_files_and_folders,
        unknown_types_are_named}},
      {"train", {train_save_reload}},
      {"chat_templates",
       {real_templates_render_as_jinja, config_templates_and_special_tokens,
        chat_template_errors}},
      {"errors", {public_functions_refuse_bad_arguments, allocation_failures_are_clean}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    TCase *tc = tcase_create(cases[i].name);
    for (int j = 0; j < 12 && cases[i].tests[j]; j++) tcase_add_test(tc, cases[i].tests[j]);
    suite_add_tcase(s, tc);
  }
  return s;
}

int main(void) {
  tmpdir();
  int rc = strop_test_run(suite());
  rm_dir(g_dir);
  return rc;
}
