/* SPDX-License-Identifier: MIT */
/* strop — finding and reading tokenizer files: a folder's tokenizer.json or .model, GPT-2's
 * vocab.json + merges.txt (built as Hugging Face's GPT-2 converter does), BERT's vocab.txt
 * (as its BERT converter does), tokenizer_config.json's few settings; and writing a file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "text/text_impl.h"

#define FN "strop_tokenizer_load"
#define MAX_FILE ((size_t)1 << 31)

strop_status strop__tx_read_file(const char *fn, const char *path, size_t max, char **out,
                                 size_t *n) {
  *out = NULL;
  *n = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return strop__err(STROP_E_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
    close(fd);
    return strop__err(STROP_E_IO, "%s: %s is not a regular file", fn, path);
  }
  if ((uint64_t)sb.st_size > max) {
    close(fd);
    return strop__err(STROP_E_IO,
                      "%s: %s has %lld bytes, more than the %zu a tokenizer file may "
                      "have",
                      fn, path, (long long)sb.st_size, max);
  }
  size_t size = (size_t)sb.st_size;
  char *buf = strop__malloc(size + 1);
  if (!buf) {
    close(fd);
    return STROP__NOMEM(fn);
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int e = errno;
      close(fd);
      strop__free(buf);
      return strop__err(STROP_E_IO, "%s: %s: read failed after %zu of %zu bytes: %s", fn, path,
                        got, size, r < 0 ? strerror(e) : "unexpected end of file");
    }
    got += (size_t)r;
  }
  close(fd);
  buf[size] = '\0';
  *out = buf;
  *n = size;
  return STROP_OK;
}

/* Written beside the target and renamed over it, so a failure leaves the old file. (lib/io's
 * atomic writer sits above this module in the layering.) */
strop_status strop__tx_write_file(const char *fn, const char *path, const char *data, size_t n) {
  size_t pl = strlen(path);
  char *tmp = strop__malloc(pl + 32);
  if (!tmp) return STROP__NOMEM(fn);
  snprintf(tmp, pl + 32, "%s.tmp%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    strop_status st = strop__err(STROP_E_IO, "%s: cannot create %s: %s", fn, tmp,
                                 strerror(errno));
    strop__free(tmp);
    return st;
  }
  size_t done = 0;
  int err = 0;
  while (done < n) {
    ssize_t w = write(fd, data + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      err = w < 0 ? errno : EIO;
      break;
    }
    done += (size_t)w;
  }
  if (!err && fsync(fd)) err = errno;
  if (close(fd) && !err) err = errno;
  if (!err && rename(tmp, path)) err = errno;
  if (err) {
    unlink(tmp);
    strop__free(tmp);
    return strop__err(STROP_E_IO, "%s: cannot write %s: %s", fn, path, strerror(err));
  }
  strop__free(tmp);
  return STROP_OK;
}

/* ---- GPT-2's vocab.json + merges.txt ---- */
static strop_status add_bytelevel(strop_tokenizer *t, int add_prefix_space) {
  t->pre = strop__calloc(1, sizeof *t->pre);
  t->dec = strop__calloc(1, sizeof *t->dec);
  t->post = strop__calloc(1, sizeof *t->post);
  if (!t->pre || !t->dec || !t->post) return STROP__NOMEM(FN);
  t->npre = t->ndec = t->npost = 1;
  t->pre->kind = TX_P_BYTELEVEL;
  t->pre->add_prefix_space = add_prefix_space;
  t->pre->use_regex = 1;
  t->pre->trim_offsets = 1;
  t->dec->kind = TX_D_BYTELEVEL;
  t->post->kind = TX_Q_BYTELEVEL;
  t->post->trim_offsets = 0;
  t->post->add_prefix_space = add_prefix_space;
  t->post->use_regex = 1;
  return strop__tx_pattern_compile(&t->pre->pat, TX_PAT_REGEX, strop__tx_gpt2_regex,
                                   strlen(strop__tx_gpt2_regex), FN, "ByteLevel");
}

strop_status strop__tx_load_gpt2(struct json_t *root, const char *merges, size_t mn,
                                 const char *where, int add_prefix_space, strop_tokenizer **out) {
  *out = NULL;
  strop_tokenizer *t = NULL;
  strop_status st = strop__tx_new(where, TX_FROM_GPT2, &t);
  if (st) goto done;
  tx_model *m = &t->model;
  m->kind = TX_M_BPE;
  if (!json_is_object(root)) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: a vocabulary must be a JSON object of token: id", FN,
                    where);
    goto done;
  }
  if ((st = strop__tx_vocab_reserve(&m->vocab, json_object_size(root)))) goto done;
  const char *key;
  size_t klen;
  json_t *val;
  json_object_keylen_foreach(root, key, klen, val) {
    if (!json_is_integer(val) || json_integer_value(val) < 0 ||
        json_integer_value(val) >= TX_MAX_IDS || klen >= TX_MAX_TOKEN_BYTES) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: \"%.60s\" must map to an id in [0, %d)", FN, where,
                      key, TX_MAX_IDS);
      goto done;
    }
    int32_t id = (int32_t)json_integer_value(val);
    if (id < m->vocab.n && m->vocab.len[id] != TX_NONE) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: id %d is given twice (\"%.60s\")", FN, where, id,
                      key);
      goto done;
    }
    if ((st = strop__tx_vocab_put(&m->vocab, id, key, klen))) goto done;
  }
  /* merges: "#version" header, then "a b" per line */
  size_t cap = 1024, nm = 0;
  m->merge_a = strop__malloc(cap * sizeof *m->merge_a);
  m->merge_b = strop__malloc(cap * sizeof *m->merge_b);
  if (!m->merge_a || !m->merge_b) {
    st = STROP__NOMEM(FN);
    goto done;
  }
  char buf[2 * TX_MAX_TOKEN_BYTES];
  size_t line = 0;
  for (size_t i = 0; i < mn;) {
    size_t e = i;
    while (e < mn && merges[e] != '\n') e++;
    line++;
    size_t l = e;
    if (l > i && merges[l - 1] == '\r') l--;
    const char *s = merges + i;
    size_t n = l - i;
    i = e + 1;
    if (!n || (n >= 8 && !memcmp(s, "#version", 8))) continue;
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp + 1 == s + n || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)) ||
        n >= sizeof buf) {
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s (merges): line %zu is not two tokens separated by "
                      "one space",
                      FN, where, line);
      goto done;
    }
    size_t an = (size_t)(sp - s), bn = n - an - 1;
    int32_t a = strop__tx_vocab_find(&m->vocab, s, an),
            b = strop__tx_vocab_find(&m->vocab, sp + 1, bn);
    memcpy(buf, s, an);
    memcpy(buf + an, sp + 1, bn);
    int32_t to = strop__tx_vocab_find(&m->vocab, buf, an + bn);
    if (a < 0 || b < 0 || to < 0) {
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s (merges): line %zu: \"%.*s\" is not in the "
                      "vocabulary",
                      FN, where, line,
                      (int)(a < 0   ? an
                            : b < 0 ? bn
                                    : an + bn),
                      a < 0   ? s
                      : b < 0 ? sp + 1
                              : buf);
      goto done;
    }
    if (nm == cap) {
      size_t c1 = cap, c2 = cap;
      if (strop__tx_reserve((void **)&m->merge_a, &c1, cap + 1, sizeof *m->merge_a) ||
          strop__tx_reserve((void **)&m->merge_b, &c2, cap + 1, sizeof *m->merge_b)) {
        st = STROP__NOMEM(FN);
        goto done;
      }
      cap = c1 < c2 ? c1 : c2;
    }
    if (nm >= TX_MAX_IDS) {
      st = strop__err(STROP_E_FORMAT, "%s: %s (merges): too many merges", FN, where);
      goto done;
    }
    m->merge_a[nm] = a;
    m->merge_b[nm] = b;
    if ((st = strop__tx_pairs_put(&m->merges, a, b, (int32_t)nm, to))) goto done;
    nm++;
  }
  m->nmerges = (int32_t)nm;
  if ((st = add_bytelevel(t, add_prefix_space))) goto done;
  if ((st = strop__tx_model_finish(m, FN, where))) goto done;
  /* GPT-2's tokenizer registers <|endoftext|> (its bos, eos and unk) as a special token */
  int32_t eot = strop__tx_vocab_find(&m->vocab, "<|endoftext|>", 13);
  if (eot >= 0 && (st = strop__tx_add(t, "<|endoftext|>", 13, eot, STROP_TOKEN_SPECIAL, FN)))
    goto done;
  st = strop__tx_finish(t, FN);
done:
  if (st) {
    strop_tokenizer_free(t);
    return st;
  }
  *out = t;
  return STROP_OK;
}

/* ---- BERT's vocab.txt ---- */
strop_status strop__tx_load_bert(const char *vocab, size_t vn, const char *where, int lowercase,
                                 strop_tokenizer **out) {
  *out = NULL;
  strop_tokenizer *t = NULL;
  strop_status st = strop__tx_new(where, TX_FROM_BERT, &t);
  if (st) return st;
  tx_model *m = &t->model;
  m->kind = TX_M_WORDPIECE;
  m->max_chars = 100;
  int32_t id = 0;
  for (size_t i = 0; i < vn;) {
    size_t e = i;
    while (e < vn && vocab[e] != '\n') e++;
    size_t l = e;
    /* Hugging Face reads each line with its trailing whitespace trimmed */
    while (l > i && (vocab[l - 1] == '\r' || vocab[l - 1] == ' ' || vocab[l - 1] == '\t')) l--;
    if (e == vn && l == i) break; /* no empty token after the last newline */
    if (!strop__tx_utf8_check(vocab + i, l - i) || l - i >= TX_MAX_TOKEN_BYTES) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: line %d is not a UTF-8 token", FN, where, id + 1);
      goto fail;
    }
    if (id >= TX_MAX_IDS) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: more than %d tokens", FN, where, TX_MAX_IDS);
      goto fail;
    }
    /* a repeated token takes its later line's id, as Hugging Face's reader (a map filled in
     * order) gives it; the earlier id is left without a token */
    int32_t old = strop__tx_vocab_find(&m->vocab, vocab + i, l - i);
    st = old >= 0 ? strop__tx_vocab_move(&m->vocab, old, id)
                  : strop__tx_vocab_put(&m->vocab, id, vocab + i, l - i);
    if (st) goto fail;
    id++;
    i = e + 1;
  }
  if (!m->vocab.count) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: no tokens", FN, where);
    goto fail;
  }
  m->unk_token = strop__strdup("[UNK]");
  m->prefix = strop__strdup("##");
  m->prefixn = 2;
  t->norm = strop__calloc(1, sizeof *t->norm);
  t->pre = strop__calloc(1, sizeof *t->pre);
  t->dec = strop__calloc(1, sizeof *t->dec);
  if (!m->unk_token || !m->prefix || !t->norm || !t->pre || !t->dec) {
    st = STROP__NOMEM(FN);
    goto fail;
  }
  m->unk = strop__tx_vocab_find(&m->vocab, "[UNK]", 5);
  t->nnorm = t->npre = t->ndec = 1;
  t->norm->kind = TX_N_BERT;
  t->norm->clean_text = 1;
  t->norm->chinese = 1;
  t->norm->strip_accents_null = 1;
  t->norm->strip_accents = lowercase;
  t->norm->lowercase = lowercase;
  t->pre->kind = TX_P_BERT;
  t->dec->kind = TX_D_WORDPIECE;
  t->dec->cleanup = 1;
  t->dec->a = strop__strdup("##");
  t->dec->an = 2;
  if (!t->dec->a) {
    st = STROP__NOMEM(FN);
    goto fail;
  }
  int32_t cls = strop__tx_vocab_find(&m->vocab, "[CLS]", 5),
          sep = strop__tx_vocab_find(&m->vocab, "[SEP]", 5);
  if (cls >= 0 && sep >= 0) {
    t->post = strop__calloc(1, sizeof *t->post);
    if (!t->post) {
      st = STROP__NOMEM(FN);
      goto fail;
    }
    t->npost = 1;
    tx_post *p = t->post;
    p->kind = TX_Q_TEMPLATE;
    p->sp = strop__calloc(2, sizeof *p->sp);
    p->single = strop__malloc(3 * sizeof *p->single);
    p->pair = strop__malloc(5 * sizeof *p->pair);
    if (!p->sp || !p->single || !p->pair) {
      st = STROP__NOMEM(FN);
      goto fail;
    }
    p->nsp = 2;
    const char *names[2] = {"[CLS]", "[SEP]"};
    int32_t ids[2] = {cls, sep};
    for (int k = 0; k < 2; k++) {
      p->sp[k].name = strop__strdup(names[k]);
      p->sp[k].ids = strop__malloc(sizeof *p->sp[k].ids);
      p->sp[k].tokens = strop__calloc(1, sizeof *p->sp[k].tokens);
      if (!p->sp[k].name || !p->sp[k].ids || !p->sp[k].tokens ||
          !(p->sp[k].tokens[0] = strop__strdup(names[k]))) {
        p->sp[k].n = p->sp[k].tokens ? 1 : 0;
        st = STROP__NOMEM(FN);
        goto fail;
      }
      p->sp[k].n = 1;
      p->sp[k].ids[0] = ids[k];
    }
    tx_tpiece single[3] = {{0, 0, 0}, {-1, 0, 0}, {1, 0, 0}};
    tx_tpiece pair[5] = {{0, 0, 0}, {-1, 0, 0}, {1, 0, 0}, {-1, 1, 1}, {1, 0, 1}};
    memcpy(p->single, single, sizeof single);
    memcpy(p->pair, pair, sizeof pair);
    p->nsingle = 3;
    p->npair = 5;
    t->role[STROP_ROLE_CLS] = cls;
    t->role[STROP_ROLE_SEP] = sep;
  }
  if ((st = strop__tx_model_finish(m, FN, where))) goto fail;
  static const char *SPECIAL[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int k = 0; k < 5; k++) {
    int32_t sid = strop__tx_vocab_find(&m->vocab, SPECIAL[k], strlen(SPECIAL[k]));
    if (sid >= 0 &&
        (st = strop__tx_add(t, SPECIAL[k], strlen(SPECIAL[k]), sid, STROP_TOKEN_SPECIAL, FN)))
      goto fail;
  }
  if ((st = strop__tx_finish(t, FN))) goto fail;
  *out = t;
  return STROP_OK;
fail:
  strop_tokenizer_free(t);
  return st;
}

/* ---- finding the files ---- */
static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = strop__malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, name, b + 1);
  return p;
}

static char *dir_of(const char *path) {
  const char *s = strrchr(path, '/');
  if (!s) return strop__strdup(".");
  if (s == path) return strop__strdup("/");
  return strop__tx_strndup(path, (size_t)(s - path));
}

static const char *base_of(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static int ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

static int is_file(const char *p) {
  struct stat sb;
  return p && !stat(p, &sb) && S_ISREG(sb.st_mode);
}

/* tokenizer_config.json's boolean `key` in dir: 1/0, or -1 when absent. */
static int config_flag(const char *dir, const char *key) {
  char *p = join(dir, "tokenizer_config.json");
  int v = -1;
  if (p && is_file(p)) {
    json_t *root = json_load_file(p, 0, NULL);
    json_t *x = json_object_get(root, key);
    if (json_is_boolean(x)) v = json_is_true(x);
    json_decref(root);
  }
  strop__free(p);
  return v;
}

/* Appends a chat template (name, text, where for messages) to tok. */
static strop_status add_chat(strop_tokenizer *tok, const char *name, const char *text,
                             const char *file) {
  int n = tok->nchat;
  char **a = strop__realloc(tok->chat_names, (size_t)(n + 1) * sizeof *a);
  if (a) tok->chat_names = a;
  char **b = a ? strop__realloc(tok->chat_texts, (size_t)(n + 1) * sizeof *b) : NULL;
  if (b) tok->chat_texts = b;
  char **c = b ? strop__realloc(tok->chat_where, (size_t)(n + 1) * sizeof *c) : NULL;
  if (c) tok->chat_where = c;
  if (!c) return STROP__NOMEM(FN);
  size_t wl = strlen(file) + strlen(name) + 40;
  char *nm = strop__strdup(name), *tx = strop__strdup(text), *wh = strop__malloc(wl);
  if (!nm || !tx || !wh) {
    strop__free(nm);
    strop__free(tx);
    strop__free(wh);
    return STROP__NOMEM(FN);
  }
  snprintf(wh, wl, "%s (chat_template '%s')", file, name);
  tok->chat_names[n] = nm;
  tok->chat_texts[n] = tx;
  tok->chat_where[n] = wh;
  tok->nchat = n + 1;
  return STROP_OK;
}

static strop_status add_special(strop_tokenizer *tok, const char *key, const char *val) {
  int n = tok->nspecial;
  char **a = strop__realloc(tok->special_keys, (size_t)(n + 1) * sizeof *a);
  if (a) tok->special_keys = a;
  char **b = a ? strop__realloc(tok->special_vals, (size_t)(n + 1) * sizeof *b) : NULL;
  if (b) tok->special_vals = b;
  char *k = b ? strop__strdup(key) : NULL, *v = k ? strop__strdup(val) : NULL;
  if (!v) {
    strop__free(k);
    return STROP__NOMEM(FN);
  }
  tok->special_keys[n] = k;
  tok->special_vals[n] = v;
  tok->nspecial = n + 1;
  return STROP_OK;
}

/* tokenizer_config.json's chat_template (a string, or a list of {name, template}) and its
 * special tokens (keys ending in _token: a string or an {"content": ...} object); a
 * chat_template.jinja file beside it gives the default template when the config has none. */
strop_status strop__tx_load_config(strop_tokenizer *tok, const char *dir) {
  char *p = join(dir, "tokenizer_config.json"), *jp = join(dir, "chat_template.jinja");
  strop_status st = p && jp ? STROP_OK : STROP__NOMEM(FN);
  json_t *root = NULL;
  if (!st && is_file(p)) {
    char *data = NULL;
    size_t n = 0;
    st = strop__tx_read_file(FN, p, MAX_FILE, &data, &n);
    if (!st) st = strop__tx_parse_json(data, n, FN, p, &root);
    strop__free(data);
    if (!st && !json_is_object(root))
      st = strop__err(STROP_E_FORMAT, "%s: %s is not a JSON object", FN, p);
  }
  if (!st && root) {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
      size_t kl = strlen(key);
      if (kl < 6 || strcmp(key + kl - 6, "_token")) continue;
      json_t *c = json_is_object(v) ? json_object_get(v, "content") : v;
      if (json_is_string(c) && (st = add_special(tok, key, json_string_value(c)))) break;
    }
    json_t *ct = json_object_get(root, "chat_template");
    if (!st && json_is_string(ct)) {
      st = add_chat(tok, "default", json_string_value(ct), p);
    } else if (!st && json_is_array(ct)) {
      size_t i;
      json_t *e;
      json_array_foreach(ct, i, e) {
        json_t *nm = json_object_get(e, "name"), *tx = json_object_get(e, "template");
        if (!json_is_string(nm) || !json_is_string(tx)) {
          st = strop__err(STROP_E_FORMAT,
                          "%s: %s: chat_template[%zu] must be an object with the strings "
                          "\"name\" and \"template\"",
                          FN, p, i);
          break;
        }
        if ((st = add_chat(tok, json_string_value(nm), json_string_value(tx), p))) break;
      }
    } else if (!st && ct && !json_is_null(ct)) {
      st = strop__err(STROP_E_FORMAT,
                      "%s: %s: chat_template must be a string or a list of {name, template}, "
                      "got a JSON %s",
                      FN, p,
                      json_is_object(ct)   ? "object"
                      : json_is_number(ct) ? "number"
                                           : "boolean");
    }
  }
  int have_default = 0;
  for (int k = 0; k < tok->nchat; k++) have_default |= !strcmp(tok->chat_names[k], "default");
  if (!st && !have_default && is_file(jp)) {
    char *data = NULL;
    size_t n = 0;
    st = strop__tx_read_file(FN, jp, MAX_FILE, &data, &n);
    if (!st) st = add_chat(tok, "default", data, jp);
    strop__free(data);
  }
  json_decref(root);
  strop__free(p);
  strop__free(jp);
  return st;
}

static strop_status gpt2_pair(json_t *vocab, const char *vocab_path, const char *merges_path,
                              const char *dir, const strop_tokenizer_options *o,
                              strop_tokenizer **out) {
  char *mdata = NULL;
  size_t mn = 0;
  strop_status st = strop__tx_read_file(FN, merges_path, MAX_FILE, &mdata, &mn);
  if (st) return st;
  int aps = o->add_prefix_space >= 0 ? o->add_prefix_space : config_flag(dir, "add_prefix_space");
  st = strop__tx_load_gpt2(vocab, mdata, mn, vocab_path, aps > 0, out);
  strop__free(mdata);
  return st;
}

static strop_status load_file(const char *path, const strop_tokenizer_options *o,
                              strop_tokenizer **out) {
  char *data = NULL, *dir = dir_of(path), *other = NULL;
  size_t n = 0;
  json_t *root = NULL;
  const char *base = base_of(path);
  strop_status st = dir ? strop__tx_read_file(FN, path, MAX_FILE, &data, &n) : STROP__NOMEM(FN);
  if (st) goto done;
  /* by name first; a file named otherwise is JSON when it starts like a JSON object */
  int json = 0;
  if (!ends_with(base, ".model")) {
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r'))
      i++;
    json = ends_with(base, ".json") || (i < n && data[i] == '{');
  }
  if (json) {
    if ((st = strop__tx_parse_json(data, n, FN, path, &root))) {
      if (!ends_with(base, ".json")) { /* not JSON after all: a SentencePiece model? */
        strop_clear_error();
        st = strop__tx_load_spm((const uint8_t *)data, n, path, o->add_bos > 0, o->add_eos > 0,
                                out);
      }
      goto done;
    }
    strop__free(data); /* the tree holds what is needed */
    data = NULL;
    if (!json_is_object(root) || json_is_object(json_object_get(root, "model"))) {
      st = strop__tx_load_json_root(root, path, out); /* it says what is wrong */
      goto done;
    }
    /* a vocabulary: GPT-2's merges beside it */
    const char *names[2] = {"merges.txt", "vocab.bpe"};
    for (int k = 0; k < 2 && !other; k++) {
      other = join(dir, names[k]);
      if (other && !is_file(other)) {
        strop__free(other);
        other = NULL;
      }
    }
    if (!other) {
      st = strop__err(STROP_E_NOT_FOUND,
                      "%s: %s is a vocabulary (token: id) without merges.txt "
                      "or vocab.bpe beside it",
                      FN, path);
      goto done;
    }
    st = gpt2_pair(root, path, other, dir, o, out);
  } else if (!strcmp(base, "merges.txt") || !strcmp(base, "vocab.bpe")) {
    other = join(dir, !strcmp(base, "vocab.bpe") ? "encoder.json" : "vocab.json");
    char *vdata = NULL;
    size_t vn = 0;
    if (!other) {
      st = STROP__NOMEM(FN);
      goto done;
    }
    if ((st = strop__tx_read_file(FN, other, MAX_FILE, &vdata, &vn))) goto done;
    st = strop__tx_parse_json(vdata, vn, FN, other, &root);
    strop__free(vdata);
    if (!st) st = gpt2_pair(root, other, path, dir, o, out);
  } else if (ends_with(base, ".txt")) {
    int lower = o->lowercase >= 0 ? o->lowercase : config_flag(dir, "do_lower_case");
    st = strop__tx_load_bert(data, n, path, lower != 0, out);
  } else {
    st = strop__tx_load_spm((const uint8_t *)data, n, path, o->add_bos > 0, o->add_eos > 0, out);
  }
done:
  json_decref(root);
  strop__free(data);
  strop__free(other);
  strop__free(dir);
  return st;
}

void strop_tokenizer_options_init(strop_tokenizer_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->lowercase = -1;
  opt->add_prefix_space = -1;
}

strop_status strop_tokenizer_load(const char *path, const strop_tokenizer_options *opt,
                                  strop_tokenizer **out) {
  if (out) *out = NULL;
  if (!path || !out)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", FN, !path ? "path" : "out");
  strop_tokenizer_options o;
  strop_tokenizer_options_init(&o);
  if (opt) {
    if (opt->size < sizeof opt->size)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: opt->size is %zu: fill opt with "
                        "strop_tokenizer_options_init()",
                        FN, opt->size);
    size_t k = opt->size < sizeof o ? opt->size : sizeof o;
    memcpy((char *)&o + sizeof o.size, (const char *)opt + sizeof o.size, k - sizeof o.size);
  }
  if (o.lowercase < -1 || o.lowercase > 1 || o.add_prefix_space < -1 || o.add_prefix_space > 1 ||
      o.add_bos < 0 || o.add_bos > 1 || o.add_eos < 0 || o.add_eos > 1)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: options must be -1, 0 or 1 (lowercase %d, "
                      "add_prefix_space %d, add_bos %d, add_eos %d)",
                      FN, o.lowercase, o.add_prefix_space, o.add_bos, o.add_eos);
  struct stat sb;
  if (stat(path, &sb))
    return strop__err(STROP_E_IO, "%s: cannot open %s: %s", FN, path, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) {
    strop_status st = load_file(path, &o, out);
    char *dir = st ? NULL : dir_of(path);
    if (!st) st = dir ? strop__tx_load_config(*out, dir) : STROP__NOMEM(FN);
    strop__free(dir);
    if (st) {
      strop_tokenizer_free(*out);
      *out = NULL;
    }
    return st;
  }
  static const char *ORDER[] = {
      "tokenizer.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model",
      "vocab.json",     "encoder.json",    "vocab.txt"};
  for (size_t i = 0; i < sizeof ORDER / sizeof ORDER[0]; i++) {
    char *p = join(path, ORDER[i]);
    if (!p) return STROP__NOMEM(FN);
    if (is_file(p)) {
      strop_status st = load_file(p, &o, out);
      strop__free(p);
      if (!st && (st = strop__tx_load_config(*out, path))) {
        strop_tokenizer_free(*out);
        *out = NULL;
      }
      return st;
    }
    strop__free(p);
  }
  return strop__err(STROP_E_NOT_FOUND,
                    "%s: %s holds none of tokenizer.json, tokenizer.model, "
                    "spiece.model, sentencepiece.bpe.model, vocab.json + merges.txt, vocab.txt",
                    FN, path);
}

strop_status strop_tokenizer_save(const strop_tokenizer *tok, const char *path) {
  const char *fn = "strop_tokenizer_save";
  if (!tok || !path)
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn, !tok ? "tok" : "path");
  char *text;
  size_t n;
  strop_status st = strop__tx_save_json(tok, &text, &n);
  if (st) return st;
  st = strop__tx_write_file(fn, path, text, n);
  strop__free(text);
  return st;
}

/* A fingerprint of everything that decides the ids a tokenizer gives and the text its chat
 * templates render: its tokenizer.json form (or, for a SentencePiece model, which has none, the
 * source file's bytes and BOS/EOS flags), its added tokens, roles, templates and special
 * strings, as a 128-bit key (strop__hash128_mix). */
strop_status strop__tx_fingerprint(const strop_tokenizer *tok, uint64_t fp[2]) {
  char *text = NULL;
  size_t n = 0;
  strop_status st = strop__tx_save_json(tok, &text, &n);
  if (st == STROP_E_UNSUPPORTED) {
    strop_clear_error();
    st = strop__tx_read_file("strop_tokenizer", tok->source, MAX_FILE, &text, &n);
  }
  if (st) return st;
  uint64_t h[2] = {1, 2};
  strop__hash128_mix(h, text, n);
  strop__free(text);
  /* the rest, mixed in field by field */
  int32_t flags[3] = {tok->spm_add_bos, tok->spm_add_eos, tok->nadded};
  strop__hash128_mix(h, flags, sizeof flags);
  strop__hash128_mix(h, tok->role, sizeof tok->role);
  for (int i = 0; i < tok->nadded; i++) {
    strop__hash128_mix(h, tok->added[i].content, strlen(tok->added[i].content));
    int64_t f2[2] = {tok->added[i].id, tok->added[i].flags};
    strop__hash128_mix(h, f2, sizeof f2);
  }
  for (int i = 0; i < tok->nchat; i++) {
    strop__hash128_mix(h, tok->chat_names[i], strlen(tok->chat_names[i]) + 1);
    strop__hash128_mix(h, tok->chat_texts[i], strlen(tok->chat_texts[i]) + 1);
  }
  for (int i = 0; i < tok->nspecial; i++) {
    strop__hash128_mix(h, tok->special_keys[i], strlen(tok->special_keys[i]) + 1);
    strop__hash128_mix(h, tok->special_vals[i], strlen(tok->special_vals[i]) + 1);
  }
  fp[0] = h[0];
  fp[1] = h[1];
  return STROP_OK;
}
