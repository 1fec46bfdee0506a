/* SPDX-License-Identifier: MIT */
/* strop — text generation: a causal decoder run one position at a time over key/value caches
 * (strop__decode, read by the attention and positional_embedding layers), and the choice of
 * each next token (repetition penalty, greedy, temperature, top-k, top-p) as Hugging Face's
 * generate() makes it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "graph/graph.h"
#include "strop/generate.h"

static const char FN_ONE[] = "strop_generate";
static const char FN_BATCH[] = "strop_generate_batch";

void strop_generate_options_init(strop_generate_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->max_new_tokens = 32;
  opt->temperature = 0.0f;
  opt->top_k = 0;
  opt->top_p = 1.0f;
  opt->repetition_penalty = 1.0f;
  opt->num_beams = 1;
  opt->length_penalty = 1.0f;
}

/* The layer types whose output at a position depends on that position's input alone, so a
 * step over new positions needs nothing of the earlier ones; attention (from its cache) and
 * positional_embedding (from the step's offset) read the decoding state themselves. */
static const char *const PER_POSITION[] = {"embedding",
                                           "linear",
                                           "lora_linear",
                                           "layernorm",
                                           "rmsnorm",
                                           "dropout",
                                           "relu",
                                           "leaky_relu",
                                           "gelu",
                                           "silu",
                                           "tanh",
                                           "sigmoid",
                                           "hardswish",
                                           "hardsigmoid",
                                           "relu6",
                                           "add",
                                           "mul",
                                           "gated_mlp",
                                           "positional_embedding",
                                           "lora_embedding",
                                           NULL};

static int per_position(const char *type) {
  for (int i = 0; PER_POSITION[i]; i++)
    if (!strcmp(PER_POSITION[i], type)) return 1;
  return 0;
}

/* 1 when the node's option `key` is written back as "true" */
static strop_status opt_true(const strop__node *nd, const char *key, int *yes) {
  strop__opts o;
  strop_status st = strop__node_write_opts(nd, &o);
  if (st) return st;
  const char *v = strop__opts_get(&o, key);
  *yes = v && !strcmp(v, "true");
  strop__opts_free(&o);
  return STROP_OK;
}

/* A causal language model every node of which can run incrementally; the number of its
 * attention nodes in *n_attn. */
static strop_status check_model(const char *fn, const strop_model *m, int64_t *ctx,
                                int64_t *vocab, int *n_attn) {
  char buf[96];
  if (!m->finalized) return strop__err(STROP_E_STATE, "%s: model is not finalized", fn);
  if (m->in_shape.rank != 1 || m->n_nodes < 1)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: the model's input is [N, %s, not [N, T] token "
                      "ids",
                      fn, strop__shape_str(&m->in_shape, buf, sizeof buf) + 1);
  const int64_t t = m->in_shape.d[0];
  const strop__shape *os = &m->nodes[m->n_nodes - 1].out_shape;
  if (os->rank != 2 || os->d[0] != t)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: the model's output is [N, %s, not [N, %lld, "
                      "vocab] logits per position",
                      fn, strop__shape_str(os, buf, sizeof buf) + 1, (long long)t);
  *n_attn = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    const strop__node *nd = &m->nodes[i];
    const char *type = nd->vt->type;
    if (!strcmp(type, "attention")) {
      int causal = 0;
      strop_status st = opt_true(nd, "causal", &causal);
      if (st) return st;
      if (!causal)
        return strop__err(STROP_E_UNSUPPORTED,
                          "%s: layer '%s' (attention) is not causal: its "
                          "positions see later ones, which do not exist yet while generating",
                          fn, nd->name);
      (*n_attn)++;
    } else if (!per_position(type)) {
      return strop__err(STROP_E_UNSUPPORTED,
                        "%s: layer '%s' (%s) cannot run one position at a "
                        "time with a key/value cache",
                        fn, nd->name, type);
    }
    if (nd->out_shape.rank < 1 || nd->out_shape.d[0] != t)
      return strop__err(STROP_E_UNSUPPORTED,
                        "%s: layer '%s' (%s) has output %s: a decoder's "
                        "nodes keep the %lld positions as their first dimension",
                        fn, nd->name, type, strop__shape_str(&nd->out_shape, buf, sizeof buf),
                        (long long)t);
  }
  *ctx = t;
  *vocab = os->d[1];
  return STROP_OK;
}

static strop_status read_options(const char *fn, const strop_generate_options *opt,
                                 strop_generate_options *o) {
  strop_generate_options_init(o);
  if (opt) {
    if (opt->size < sizeof opt->size)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: opt->size is %zu: fill opt with "
                        "strop_generate_options_init()",
                        fn, opt->size);
    const size_t k = opt->size < sizeof *o ? opt->size : sizeof *o;
    memcpy((char *)o + sizeof o->size, (const char *)opt + sizeof o->size, k - sizeof o->size);
  }
  if (o->max_new_tokens < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: max_new_tokens must be >= 0, got %lld", fn,
                      (long long)o->max_new_tokens);
  if (!(o->temperature >= 0.0f) || isinf(o->temperature))
    return strop__err(STROP_E_INVALID_ARG, "%s: temperature must be finite and >= 0, got %g", fn,
                      (double)o->temperature);
  if (o->top_k < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: top_k must be >= 0, got %lld", fn,
                      (long long)o->top_k);
  if (!(o->top_p > 0.0f && o->top_p <= 1.0f))
    return strop__err(STROP_E_INVALID_ARG, "%s: top_p must be in (0, 1], got %g", fn,
                      (double)o->top_p);
  if (!(o->repetition_penalty > 0.0f) || isinf(o->repetition_penalty))
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: repetition_penalty must be finite and > 0, "
                      "got %g",
                      fn, (double)o->repetition_penalty);
  if (o->num_stop_ids < 0 || (o->num_stop_ids > 0 && !o->stop_ids))
    return strop__err(STROP_E_INVALID_ARG, "%s: num_stop_ids is %lld with stop_ids %s", fn,
                      (long long)o->num_stop_ids, o->stop_ids ? "set" : "NULL");
  if (o->num_stop_strings < 0 || (o->num_stop_strings > 0 && !o->stop_strings))
    return strop__err(STROP_E_INVALID_ARG, "%s: num_stop_strings is %lld with stop_strings %s",
                      fn, (long long)o->num_stop_strings, o->stop_strings ? "set" : "NULL");
  for (int64_t i = 0; i < o->num_stop_strings; i++)
    if (!o->stop_strings[i] || !o->stop_strings[i][0])
      return strop__err(STROP_E_INVALID_ARG, "%s: stop_strings[%lld] is %s", fn, (long long)i,
                        o->stop_strings[i] ? "empty" : "NULL");
  if (o->num_beams < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: num_beams must be >= 1, got %lld", fn,
                      (long long)o->num_beams);
  if (!isfinite(o->length_penalty))
    return strop__err(STROP_E_INVALID_ARG, "%s: length_penalty must be finite, got %g", fn,
                      (double)o->length_penalty);
  if (o->num_beams > 1 && o->temperature > 0.0f)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: beam search (num_beams %lld) does not sample: set temperature 0", fn,
                      (long long)o->num_beams);
  if (o->num_beams > 1 && o->num_stop_strings > 0)
    return strop__err(STROP_E_UNSUPPORTED,
                      "%s: beam search (num_beams %lld) stops at stop ids, not stop strings", fn,
                      (long long)o->num_beams);
  if (o->num_stop_strings > 0 && !o->tokenizer)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: stop_strings need the model's tokenizer to "
                      "decode the output: set tokenizer",
                      fn);
  return STROP_OK;
}

/* ---- choosing the next token ---- */

typedef struct cand {
  float v;
  int64_t id;
} cand;

/* descending by value, ties by id, so the order (and a seeded draw) is deterministic */
static int cand_desc(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->v != y->v) return x->v > y->v ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static int64_t argmax(const float *l, int64_t v) {
  int64_t best = 0;
  for (int64_t i = 1; i < v; i++)
    if (l[i] > l[best]) best = i;
  return best;
}

/* Temperature, top-k (ties with the k-th kept, as Hugging Face keeps them), top-p (the
 * smallest prefix of the sorted tokens reaching top_p, at least one) and a draw. */
static int64_t sample(const strop_generate_options *o, float *l, int64_t v, cand *c,
                      strop__rng *rng) {
  const float inv_t = 1.0f / o->temperature;
  for (int64_t i = 0; i < v; i++) c[i] = (cand){l[i] * inv_t, i};
  qsort(c, (size_t)v, sizeof *c, cand_desc);
  int64_t n = v;
  if (o->top_k > 0 && o->top_k < v) {
    n = o->top_k;
    while (n < v && c[n].v == c[o->top_k - 1].v) n++;
  }
  const float mx = c[0].v;
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) sum += exp((double)(c[i].v - mx));
  if (o->top_p < 1.0f) {
    double cum = 0.0;
    int64_t keep = 0;
    while (keep < n) {
      cum += exp((double)(c[keep].v - mx)) / sum;
      keep++;
      if (cum >= (double)o->top_p) break;
    }
    n = keep;
    sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)(c[i].v - mx));
  }
  const double u = (double)strop__rng_uniform(rng) * sum;
  double acc = 0.0;
  for (int64_t i = 0; i < n; i++) {
    acc += exp((double)(c[i].v - mx));
    if (u < acc) return c[i].id;
  }
  return c[n - 1].id;
}

static int64_t next_token(const strop_generate_options *o, float *l, int64_t v,
                          const uint8_t *seen, cand *c, strop__rng *rng) {
  if (o->repetition_penalty != 1.0f)
    for (int64_t i = 0; i < v; i++)
      if (seen[i])
        l[i] = l[i] < 0.0f ? l[i] * o->repetition_penalty : l[i] / o->repetition_penalty;
  return o->temperature > 0.0f ? sample(o, l, v, c, rng) : argmax(l, v);
}

/* ---- the incremental forward ---- */

/* Runs ids [nb, t] at positions [dec->pos, dec->pos + t) and copies each sequence's last
 * position's logits into logits[nb, vocab]. */
static strop_status step(const char *fn, strop_model *m, strop__decode *dec, const int64_t *ids,
                         int64_t nb, int64_t t, float *in, int64_t vocab, float *logits) {
  for (int64_t i = 0; i < nb * t; i++) in[i] = (float)ids[i];
  const strop__shape shape = {1, {t}};
  const strop__act *o = NULL;
  m->decode = dec;
  strop_status st = strop__model_forward_shaped(m, in, nb, &shape, 0, NULL, &o);
  m->decode = NULL;
  if (st) {
    strop__err_prefix("%s: at position %lld", fn, (long long)dec->pos);
    strop__model_step_end(m);
    return st;
  }
  for (int64_t b = 0; b < nb; b++)
    memcpy(logits + b * vocab, o->data + (b * t + t - 1) * vocab, (size_t)vocab * sizeof *logits);
  strop__model_step_end(m);
  dec->pos += t;
  return STROP_OK;
}

/* 1 when the decoded output contains a stop string (decoding errors: 0, generation goes on) */
static int hit_stop_string(const strop_generate_options *o, const int64_t *ids, int64_t n,
                           char **text, size_t *cap) {
  const int64_t len = strop_tokenizer_decode(o->tokenizer, ids, n, 0, *text, *cap);
  if (len < 0) return 0;
  if ((size_t)len >= *cap) {
    char *bigger = strop__realloc(*text, (size_t)len + 1);
    if (!bigger) return 0;
    *text = bigger;
    *cap = (size_t)len + 1;
    if (strop_tokenizer_decode(o->tokenizer, ids, n, 0, *text, *cap) != len) return 0;
  }
  for (int64_t i = 0; i < o->num_stop_strings; i++)
    if (strstr(*text, o->stop_strings[i])) return 1;
  return 0;
}

static int is_stop_id(const strop_generate_options *o, int64_t id) {
  for (int64_t i = 0; i < o->num_stop_ids; i++)
    if (o->stop_ids[i] == id) return 1;
  return 0;
}

/* A start after every position: the sequence is padding from now on (it has finished). */
#define FINISHED (INT64_MAX / 4)

/* One token callback for both entry points: strop_generate's on_token, or on_row_token. */
static int call_back(const strop_generate_options *o, int64_t row, int64_t id) {
  if (o->on_row_token) return o->on_row_token(row, id, o->user_data);
  return o->on_token ? o->on_token(id, o->user_data) : 0;
}

/* The decoding state of a generation: a cache per attention node (filled by the layers), and
 * a linear head asked for each sequence's last row of logits only (step reads no other: the
 * prompt's step multiplies one row per sequence by the LM head, not all of them). */
static strop_status decode_open(strop_model *model, int n_attn, int64_t cap, strop__decode *dec) {
  memset(dec, 0, sizeof *dec);
  dec->cap = cap;
  dec->n_kv = n_attn;
  dec->kv = strop__calloc((size_t)(n_attn ? n_attn : 1), sizeof *dec->kv);
  if (!dec->kv) return STROP_E_NOMEM;
  for (int i = 0, k = 0; i < model->n_nodes; i++)
    if (!strcmp(model->nodes[i].vt->type, "attention")) dec->kv[k++].node = &model->nodes[i];
  const strop__node *head = &model->nodes[model->n_nodes - 1];
  if (!strcmp(head->vt->type, "linear")) dec->last_rows_only = head;
  return STROP_OK;
}

static void decode_close(strop__decode *dec) {
  for (int i = 0; dec->kv && i < dec->n_kv; i++) {
    strop__free(dec->kv[i].k);
    strop__free(dec->kv[i].v);
  }
  strop__free(dec->kv);
  dec->kv = NULL;
}

/* ---- beam search ---- */

/* A finished hypothesis: its score (summed log-probabilities over its generated length to the
 * power length_penalty), its generated ids and the stop id that ended it (-1: none). */
typedef struct beam_hyp {
  float score;
  int64_t n, stop;
  int64_t *ids;
} beam_hyp;

/* A candidate of a step: the beam's score plus the token's log-probability. */
typedef struct beam_cand {
  float score;
  int64_t beam, id;
} beam_cand;

/* 1 when candidate a ranks before b: the higher score; on a tie the lower beam, then the lower
 * id, which is the lower flat index of torch.topk over [beams x vocab]. Scores are never NaN
 * here (cand_offer takes NaN as -inf), so this is a total order. */
static int cand_before(const beam_cand *a, const beam_cand *b) {
  if (a->score != b->score) return a->score > b->score;
  return a->beam != b->beam ? a->beam < b->beam : a->id < b->id;
}

/* Restores the heap of the n kept candidates below slot i: every slot ranks before its
 * children, so top[0] is the one that ranks last (the first to go). */
static void cand_sift(beam_cand *top, int64_t n, int64_t i) {
  for (;;) {
    int64_t l = 2 * i + 1, w = i;
    if (l < n && cand_before(&top[w], &top[l])) w = l;
    if (l + 1 < n && cand_before(&top[w], &top[l + 1])) w = l + 1;
    if (w == i) return;
    const beam_cand t = top[i];
    top[i] = top[w];
    top[w] = t;
    i = w;
  }
}

/* Keeps the k best of the candidates offered, as a heap whose root ranks last: a candidate
 * that does not rank before the root costs one comparison (a sorted list cost O(k) each:
 * beams x vocabulary x 2 beams a step, an hour at a million beams). cand_sort orders them. */
static void cand_offer(beam_cand *top, int64_t *n, int64_t k, beam_cand c) {
  if (isnan(c.score)) c.score = -INFINITY;
  if (*n < k) { /* sift the new one up */
    int64_t i = (*n)++;
    while (i > 0 && cand_before(&top[(i - 1) / 2], &c)) {
      top[i] = top[(i - 1) / 2];
      i = (i - 1) / 2;
    }
    top[i] = c;
    return;
  }
  if (!cand_before(&c, &top[0])) return; /* offered in flat order: a tie goes to the earlier */
  top[0] = c;
  cand_sift(top, k, 0);
}

static int cand_cmp(const void *a, const void *b) {
  return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* The kept candidates best first. */
static void cand_sort(beam_cand *top, int64_t n) { qsort(top, (size_t)n, sizeof *top, cand_cmp); }

/* Hugging Face's BeamHypotheses.add: kept while fewer than num_beams, or better than the worst
 * (which then goes). A hypothesis of no generated tokens scores -inf. */
static void hyp_add(beam_hyp *h, int64_t *nh, int64_t k, float *worst, const int64_t *ids,
                    int64_t n, int64_t stop, float sum, float penalty) {
  const float score = n > 0 ? (float)((double)sum / pow((double)n, (double)penalty)) : -INFINITY;
  if (*nh >= k && !(score > *worst)) return;
  int64_t slot = *nh;
  if (*nh < k) {
    (*nh)++;
    *worst = *nh == 1 || score < *worst ? score : *worst;
  } else { /* replace the worst, then find the new worst */
    slot = 0;
    for (int64_t i = 1; i < k; i++)
      if (h[i].score < h[slot].score) slot = i;
  }
  h[slot].score = score;
  h[slot].n = n;
  h[slot].stop = stop;
  memcpy(h[slot].ids, ids, (size_t)n * sizeof *ids);
  if (*nh >= k && slot < k) {
    *worst = h[0].score;
    for (int64_t i = 1; i < k; i++)
      if (h[i].score < *worst) *worst = h[i].score;
  }
}

/* Gathers each cache's rows: beam b continues beam from[b]; positions [0, pos). */
static void kv_reorder(strop__decode *dec, const int64_t *from, int64_t nb, float *tmp) {
  for (int i = 0; i < dec->n_kv; i++) {
    strop__kv_cache *c = &dec->kv[i];
    for (int kv = 0; kv < 2; kv++) {
      float *base = kv ? c->v : c->k;
      if (!base) continue;
      const size_t row = (size_t)(dec->cap * c->width), used = (size_t)(dec->pos * c->width);
      for (int64_t b = 0; b < nb; b++)
        memcpy(tmp + (size_t)b * used, base + (size_t)from[b] * row, used * sizeof *tmp);
      for (int64_t b = 0; b < nb; b++)
        memcpy(base + (size_t)b * row, tmp + (size_t)b * used, used * sizeof *tmp);
    }
  }
}

/* One prompt continued by beam search (strop_generate_options.num_beams), as Hugging Face's
 * generate(num_beams=B) searches with its BeamSearchScorer: the processed log-probabilities of
 * each beam's next token plus the beam's score (beams other than the first start at -1e9), the
 * best max(2, 1 + stop ids) · B candidates in order; a stop id among the first B finishes a
 * hypothesis of the beam's ids so far, the others continue as the next B beams; done when B
 * hypotheses have finished and (early_stopping, or) the best candidate's score over the
 * generated length cannot beat the worst of them, or when the length runs out (the open beams
 * then join the hypotheses). Writes the best hypothesis's ids (with the stop id that ended it)
 * to out, then hands them to the callback in order. */
static strop_status beam_one(const char *fn, strop_model *model, const int64_t *prompt,
                             int64_t len, const strop_generate_options *o, int64_t ctx,
                             int64_t vocab, int n_attn, int64_t want, int64_t *out,
                             int64_t *count, int64_t row) {
  const int64_t B = o->num_beams;
  const int64_t maxgen = want < ctx - len + 1 ? want : ctx - len + 1;
  const int64_t keep = (o->num_stop_ids + 1 > 2 ? o->num_stop_ids + 1 : 2) * B;
  /* The prompt runs once, as one sequence; its keys and values are then copied to every beam
   * (each beam starts from the same prompt: B copies of its forward gave the same rows). */
  strop__decode dec;
  strop_status st = decode_open(model, n_attn, len + maxgen - 1 > len ? len + maxgen - 1 : len,
                                &dec);
  float *logits = NULL, *in = strop__malloc((size_t)len * sizeof *in);
  int64_t *feed = NULL;
  uint8_t *seen = NULL, *seen2 = NULL;
  int64_t *seq = NULL, *seq2 = NULL, *from = NULL, *hyp_ids = NULL;
  float *score = NULL, *tmp = NULL;
  beam_cand *top = NULL;
  beam_hyp *hyps = NULL;
  float *first = strop__malloc((size_t)vocab * sizeof *first);
  if (st || !in || !first) st = STROP__NOMEM(fn); /* decode_open fails only so */
  if (st || (st = step(fn, model, &dec, prompt, 1, len, in, vocab, first))) goto done;
  /* What the search holds for B beams — the caches of every attention node, the gather's
   * scratch, the scores and marks over the vocabulary, the histories, and a step's activations
   * (every node's output for one position of each beam's row: the step's arena keeps them all
   * until the step ends) — against the machine's room, before any of it is taken (100000 beams
   * of a small model grew to gigabytes before). */
  size_t room = 0, most = 0;
  double cache = 0.0, acts = 0.0;
  for (int i = 0; i < dec.n_kv; i++) {
    cache += 2.0 * (double)dec.cap * (double)dec.kv[i].width * sizeof(float);
    if ((size_t)(dec.cap * dec.kv[i].width) > most) most = (size_t)(dec.cap * dec.kv[i].width);
  }
  for (int i = 0; i < model->n_nodes; i++)
    acts += (double)strop__shape_numel(&model->nodes[i].out_shape) * sizeof(float);
  acts /= (double)model->in_shape.d[0];
  const double per_beam = cache + acts + (double)most * sizeof(float) +
                          (double)vocab * (sizeof(float) + 2.0) + 3.0 * (double)maxgen * 8.0,
               need = (double)B * per_beam;
  strop__log(STROP_LOG_DEBUG,
             "%s: %lld beams: %.1f MB a beam (key/value caches %.1f, a step's activations "
             "%.1f), %.2f GB in all",
             fn, (long long)B, per_beam / 1e6, cache / 1e6, acts / 1e6, need / 1e9);
  if (strop_memory_available(&room, NULL, 0) == STROP_OK && need > (double)room) {
    st = strop__err(STROP_E_NOMEM,
                    "%s: num_beams %lld needs %.2f GB (%.1f MB a beam: its key/value caches of "
                    "%lld positions, a step's activations, its scores over the %lld words), "
                    "more than the %.2f GB "
                    "this machine has free; use fewer beams",
                    fn, (long long)B, need / 1e9, per_beam / 1e6, (long long)dec.cap,
                    (long long)vocab, (double)room / 1e9);
    goto done;
  }
  for (int i = 0; i < dec.n_kv && B > 1; i++) { /* the prompt's rows, to every beam */
    strop__kv_cache *c = &dec.kv[i];
    if (!c->k) continue;
    const size_t span = (size_t)(dec.cap * c->width), used = (size_t)(dec.pos * c->width);
    float *k = strop__calloc((size_t)B * span, sizeof *k),
          *v = strop__calloc((size_t)B * span, sizeof *v);
    if (!k || !v) {
      strop__free(k);
      strop__free(v);
      st = STROP__NOMEM(fn);
      goto done;
    }
    for (int64_t b = 0; b < B; b++) {
      memcpy(k + (size_t)b * span, c->k, used * sizeof *k);
      memcpy(v + (size_t)b * span, c->v, used * sizeof *v);
    }
    strop__free(c->k);
    strop__free(c->v);
    c->k = k, c->v = v, c->batch = B;
  }
  if (B > len) {
    float *wider = strop__realloc(in, (size_t)B * sizeof *in);
    if (!wider) {
      st = STROP__NOMEM(fn);
      goto done;
    }
    in = wider;
  }
  feed = strop__malloc((size_t)B * sizeof *feed);
  logits = strop__malloc((size_t)(B * vocab) * sizeof *logits);
  seen = strop__calloc((size_t)(B * vocab), 1), seen2 = strop__malloc((size_t)(B * vocab));
  seq = strop__malloc((size_t)(B * maxgen) * sizeof *seq);
  seq2 = strop__malloc((size_t)(B * maxgen) * sizeof *seq2);
  score = strop__malloc((size_t)B * sizeof *score);
  top = strop__malloc((size_t)keep * sizeof *top);
  from = strop__malloc((size_t)B * sizeof *from);
  hyps = strop__calloc((size_t)B, sizeof *hyps);
  hyp_ids = strop__malloc((size_t)(B * maxgen) * sizeof *hyp_ids);
  if (!feed || !logits || !seen || !seen2 || !seq || !seq2 || !score || !top || !from || !hyps ||
      !hyp_ids) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  for (int64_t b = 0; b < B; b++) {
    hyps[b].ids = hyp_ids + b * maxgen;
    score[b] = b == 0 ? 0.0f : -1e9f;
    memcpy(logits + b * vocab, first, (size_t)vocab * sizeof *logits);
    for (int64_t i = 0; i < len; i++) seen[b * vocab + prompt[i]] = 1;
  }
  int64_t nh = 0, g = 0, done_early = 0;
  float worst = 1e9f;
  for (;;) {
    /* each beam's log-probabilities, processed, plus its score; the best `keep` candidates */
    int64_t nt = 0;
    for (int64_t b = 0; b < B; b++) {
      float *l = logits + b * vocab;
      float mx = l[0];
      for (int64_t i = 1; i < vocab; i++) mx = l[i] > mx ? l[i] : mx;
      double sum = 0.0;
      for (int64_t i = 0; i < vocab; i++) sum += exp((double)l[i] - (double)mx);
      const double lse = (double)mx + log(sum);
      for (int64_t i = 0; i < vocab; i++) {
        float lp = (float)((double)l[i] - lse);
        if (o->repetition_penalty != 1.0f && seen[b * vocab + i])
          lp = lp < 0.0f ? lp * o->repetition_penalty : lp / o->repetition_penalty;
        cand_offer(top, &nt, keep, (beam_cand){lp + score[b], b, i});
      }
    }
    cand_sort(top, nt);
    /* the scorer: stop ids among the first B finish hypotheses, the rest continue */
    int64_t nb = 0;
    for (int64_t r = 0; r < nt && nb < B; r++) {
      const beam_cand *c = &top[r];
      if (is_stop_id(o, c->id)) {
        if (r >= B) continue;
        hyp_add(hyps, &nh, B, &worst, seq + c->beam * maxgen, g, c->id, c->score,
                o->length_penalty);
        continue;
      }
      from[nb] = c->beam;
      score[nb] = c->score;
      seq2[nb * maxgen + g] = c->id;
      nb++;
    }
    if (nh >= B) { /* Hugging Face's is_done, with the best candidate of this step */
      if (o->early_stopping) done_early = 1;
      else if (g > 0 &&
               (double)worst >= (double)top[0].score / pow((double)g, (double)o->length_penalty))
        done_early = 1;
    }
    /* the next beams: their ids, histories and caches from the beams they continue */
    for (int64_t b = 0; b < nb; b++) {
      memcpy(seq2 + b * maxgen, seq + from[b] * maxgen, (size_t)g * sizeof *seq);
      memcpy(seen2 + b * vocab, seen + from[b] * vocab, (size_t)vocab);
      seen2[b * vocab + seq2[b * maxgen + g]] = 1;
    }
    int64_t *ts = seq;
    seq = seq2, seq2 = ts;
    uint8_t *tn = seen;
    seen = seen2, seen2 = tn;
    g++;
    if (done_early || g >= maxgen) break;
    if (!tmp) {
      tmp = strop__malloc((size_t)B * (most ? most : 1) * sizeof *tmp);
      if (!tmp) {
        st = STROP__NOMEM(fn);
        goto done;
      }
    }
    kv_reorder(&dec, from, B, tmp);
    for (int64_t b = 0; b < B; b++) feed[b] = seq[b * maxgen + g - 1];
    if ((st = step(fn, model, &dec, feed, B, 1, in, vocab, logits))) goto done;
  }
  if (!done_early) /* the length ran out: the open beams are hypotheses too */
    for (int64_t b = 0; b < B; b++)
      hyp_add(hyps, &nh, B, &worst, seq + b * maxgen, g, -1, score[b], o->length_penalty);
  int64_t best = 0;
  for (int64_t i = 1; i < nh; i++)
    if (hyps[i].score > hyps[best].score) best = i;
  const beam_hyp *h = &hyps[best];
  int64_t n = 0;
  for (int64_t i = 0; i < h->n; i++) out[n++] = h->ids[i];
  if (h->stop >= 0 && n < want) out[n++] = h->stop;
  for (int64_t i = 0; i < n; i++) {
    *count = i + 1;
    if (call_back(o, row, out[i])) {
      st = strop__err(STROP_E_CANCELLED, "%s: the token callback cancelled after %lld tokens", fn,
                      (long long)*count);
      goto done;
    }
  }
  *count = n;
done:
  decode_close(&dec);
  strop__free(tmp);
  strop__free(first);
  strop__free(logits);
  strop__free(in);
  strop__free(feed);
  strop__free(seen);
  strop__free(seen2);
  strop__free(seq);
  strop__free(seq2);
  strop__free(score);
  strop__free(top);
  strop__free(from);
  strop__free(hyps);
  strop__free(hyp_ids);
  return st;
}

/* The n prompts continued together: left-padded to the longest, each sequence run from its
 * own start (strop__decode.start), so each computes what it computes alone; every sequence
 * has its own repetition history, generator (seeded as strop_generate seeds its one) and stop
 * conditions, and stops being computed once it has finished. New ids of sequence b go to
 * ids + b * cap, their number to counts[b]. */
static strop_status generate_rows(const char *fn, strop_model *model,
                                  const int64_t *const *prompts, const int64_t *lens, int64_t n,
                                  int batch, const strop_generate_options *opt, int64_t *ids,
                                  int64_t cap, int64_t *counts) {
  strop_generate_options o;
  int64_t ctx = 0, vocab = 0;
  int n_attn = 0;
  strop_status st = read_options(fn, opt, &o);
  if (st || (st = check_model(fn, model, &ctx, &vocab, &n_attn))) return st;
  if (batch && o.on_token && !o.on_row_token)
    return strop__err(STROP_E_INVALID_ARG,
                      "%s: on_token does not say which sequence a token is of: set "
                      "on_row_token",
                      fn);
  int64_t longest = 0;
  for (int64_t b = 0; b < n; b++) {
    const char *who = n > 1 ? "prompts[" : "the prompt";
    char idx[32] = "";
    if (n > 1) snprintf(idx, sizeof idx, "%lld]", (long long)b);
    if (!prompts[b]) return strop__err(STROP_E_INVALID_ARG, "%s: %s%s is NULL", fn, who, idx);
    if (lens[b] < 1 || lens[b] > ctx)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: %s%s has %lld ids; the model takes 1 to "
                        "%lld",
                        fn, who, idx, (long long)lens[b], (long long)ctx);
    for (int64_t i = 0; i < lens[b]; i++)
      if (prompts[b][i] < 0 || prompts[b][i] >= vocab)
        return strop__err(STROP_E_INVALID_ARG,
                          "%s: %s%s[%lld] is %lld, outside the vocabulary "
                          "0 .. %lld",
                          fn, n > 1 ? "prompts[" : "prompt", n > 1 ? idx : "", (long long)i,
                          (long long)prompts[b][i], (long long)(vocab - 1));
    if (lens[b] > longest) longest = lens[b];
  }
  const int64_t want = o.max_new_tokens < cap ? o.max_new_tokens : cap;
  if (want == 0) return STROP_OK;
  if (o.num_beams > 1) { /* each prompt searched alone */
    for (int64_t b = 0; b < n && !st; b++)
      st = beam_one(fn, model, prompts[b], lens[b], &o, ctx, vocab, n_attn, want, ids + b * cap,
                    &counts[b], b);
    return st;
  }
  /* sequence b starts at cache position longest - lens[b]; its last new token is never fed
   * back, and it stops at the model's context: positions up to start + min(len + want - 1,
   * ctx) */
  int64_t positions = longest;
  for (int64_t b = 0; b < n; b++) {
    const int64_t own = lens[b] + want - 1 < ctx ? lens[b] + want - 1 : ctx;
    if (longest - lens[b] + own > positions) positions = longest - lens[b] + own;
  }
  int64_t *start = strop__calloc((size_t)n, sizeof *start);
  strop__decode dec;
  const strop_status opened = decode_open(model, n_attn, positions, &dec);
  dec.start = n > 1 ? start : NULL;
  float *logits = strop__malloc((size_t)(n * vocab) * sizeof *logits);
  float *in = strop__malloc((size_t)(n * longest) * sizeof *in);
  int64_t *feed = strop__calloc((size_t)(n * longest), sizeof *feed);
  uint8_t *seen = strop__calloc((size_t)(n * vocab), 1);
  uint8_t *done = strop__calloc((size_t)n, 1);
  strop__rng *rng = strop__malloc((size_t)n * sizeof *rng);
  cand *c = o.temperature > 0.0f ? strop__malloc((size_t)vocab * sizeof *c) : NULL;
  size_t text_cap = 256;
  char *text = o.num_stop_strings ? strop__malloc(text_cap) : NULL;
  if (!start || opened || !logits || !in || !feed || !seen || !done || !rng ||
      (o.temperature > 0.0f && !c) || (o.num_stop_strings && !text)) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  for (int64_t b = 0; b < n; b++) {
    start[b] = longest - lens[b];
    for (int64_t i = 0; i < lens[b]; i++) {
      feed[b * longest + start[b] + i] = prompts[b][i];
      seen[b * vocab + prompts[b][i]] = 1;
    }
    strop__rng_seed(&rng[b], o.seed, 0x67656e6572617465ULL /* "generate" */);
  }
  if ((st = step(fn, model, &dec, feed, n, longest, in, vocab, logits))) goto done;
  for (int64_t left = n;;) {
    for (int64_t b = 0; b < n; b++) {
      if (done[b]) continue;
      int64_t *row = ids + b * cap;
      const int64_t id = next_token(&o, logits + b * vocab, vocab, seen + b * vocab, c, &rng[b]);
      row[counts[b]++] = id;
      seen[b * vocab + id] = 1;
      feed[b] = id;
      if (call_back(&o, b, id)) {
        st = strop__err(STROP_E_CANCELLED, "%s: the token callback cancelled after %lld tokens%s",
                        fn, (long long)counts[b], n > 1 ? " of a sequence" : "");
        goto done;
      }
      /* the sequence's own position of the token just chosen */
      if (counts[b] >= want || is_stop_id(&o, id) ||
          (text && hit_stop_string(&o, row, counts[b], &text, &text_cap)) ||
          dec.pos - start[b] >= ctx) {
        done[b] = 1;
        start[b] = FINISHED;
        left--;
      }
    }
    if (left == 0) break;
    if ((st = step(fn, model, &dec, feed, n, 1, in, vocab, logits))) {
      for (int64_t b = 0; b < n; b++) counts[b] = 0;
      break;
    }
  }
done:
  decode_close(&dec);
  strop__free(start);
  strop__free(logits);
  strop__free(in);
  strop__free(feed);
  strop__free(seen);
  strop__free(done);
  strop__free(rng);
  strop__free(c);
  strop__free(text);
  return st;
}

strop_status strop_generate(strop_model *model, const int64_t *prompt, int64_t n_prompt,
                            const strop_generate_options *opt, int64_t *ids, int64_t cap,
                            int64_t *count) {
  if (!count) return strop__err(STROP_E_INVALID_ARG, "%s: count is NULL", FN_ONE);
  *count = 0;
  if (!model || !prompt || (!ids && cap > 0))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", FN_ONE,
                      !model    ? "model"
                      : !prompt ? "prompt"
                                : "ids");
  if (cap < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: cap must be >= 0, got %lld", FN_ONE,
                      (long long)cap);
  strop_status st = generate_rows(FN_ONE, model, &prompt, &n_prompt, 1, 0, opt, ids, cap, count);
  if (st && st != STROP_E_CANCELLED) *count = 0;
  return st;
}

strop_status strop_generate_batch(strop_model *model, const int64_t *const *prompts,
                                  const int64_t *n_prompts, int64_t n,
                                  const strop_generate_options *opt, int64_t *ids, int64_t cap,
                                  int64_t *counts) {
  const char *fn = FN_BATCH;
  if (!counts) return strop__err(STROP_E_INVALID_ARG, "%s: counts is NULL", fn);
  if (n < 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: n must be >= 1, got %lld", fn, (long long)n);
  memset(counts, 0, (size_t)n * sizeof *counts);
  if (!model || !prompts || !n_prompts || (!ids && cap > 0))
    return strop__err(STROP_E_INVALID_ARG, "%s: %s is NULL", fn,
                      !model       ? "model"
                      : !prompts   ? "prompts"
                      : !n_prompts ? "n_prompts"
                                   : "ids");
  if (cap < 0)
    return strop__err(STROP_E_INVALID_ARG, "%s: cap must be >= 0, got %lld", fn, (long long)cap);
  strop_status st = generate_rows(fn, model, prompts, n_prompts, n, 1, opt, ids, cap, counts);
  if (st && st != STROP_E_CANCELLED) memset(counts, 0, (size_t)n * sizeof *counts);
  return st;
}
