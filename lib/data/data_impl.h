/* SPDX-License-Identifier: MIT */
/* strop — private layout of datasets, the file reader shared by the parsers, and the
 * parse-from-memory entry points of the IDX, CSV and NPY formats (used by the fuzz targets). */
#ifndef STROP_DATA_IMPL_H
#define STROP_DATA_IMPL_H

#include <stdatomic.h>

#include "core/core.h"
#include "strop/data.h"

/* Root storage kinds. */
enum {
  STROP__DS_F32 = 1,
  STROP__DS_U8 = 2,
  STROP__DS_TOKENS = 3,
  STROP__DS_CALLBACK = 4,
  STROP__DS_IMAGES = 5
};

/* One struct for roots and views. A root owns storage; a view (root != NULL) holds one
 * reference to its root and describes a selection (idx), a relabelling and a shape. Views of
 * views are flattened at creation, so reading a sample is one indirection at most. */
struct strop_dataset {
  _Atomic long refs;
  strop_dataset *root; /* NULL for a root */

  /* what this handle presents */
  int64_t n;
  int64_t *idx;       /* NULL: identity into the root (n == root n) */
  int32_t *label_map; /* NULL: identity; else root class -> this class (-1: dropped) */
  int64_t lmap_len;   /* entries of label_map (the root's class count) */
  int onehot;
  int in_rank;
  int64_t in_dims[STROP_MAX_RANK];
  size_t in_numel;
  int tgt_rank;
  int64_t tgt_dims[STROP_MAX_RANK];
  size_t tgt_numel;     /* presented target (after one-hot) */
  size_t raw_tgt_numel; /* the root's target element count (before one-hot) */
  int64_t num_classes;
  char **class_names; /* num_classes names, or NULL */

  /* root storage */
  int kind;
  const float *x, *y; /* F32: inputs/targets; U8, TOKENS: y = per-sample class labels */
  float *x_owned, *y_owned;
  const uint8_t *xu8; /* U8 inputs */
  void *map;          /* mmap'd file behind xu8, or NULL */
  size_t map_len;
  void *buf_owned; /* decompressed buffer behind xu8, or NULL */
  strop_release_fn release;
  void *release_ud;
  strop_dataset_fill_fn fill;
  void *fill_ud;
  int32_t *tokens; /* TOKENS: the token stream */
  int64_t ntokens;
  int64_t *starts; /* TOKENS: start of sample i in tokens */
  int lm;          /* TOKENS: 1 = targets are the shifted window */
  int64_t seq_len;
  int32_t *lm_targets; /* TOKENS with lm: the target of every position of tokens (the next
                          token, or -100 where no loss is taken), or NULL: targets are the
                          stream shifted by one */
  int trim;            /* with masks: each batch is cut to its longest sample (right padding) */
  float *mask;         /* padding masks [n, mask_len] of the root's samples (1 token, 0
                          padding), or NULL; shared by every view of the root */
  int64_t mask_len;
  float *types; /* token types [n, types_len] of the root's samples (BERT's token_type_ids,
                         0 at padding), or NULL; shared by every view of the root */
  int64_t types_len;

  /* IMAGES: files decoded when read; y holds the labels */
  int var_size;     /* views too: samples differ in H and W; in_dims bounds each axis and
                          in_numel any sample's element count */
  char *img_paths;  /* NUL-terminated paths, one after another */
  int64_t *img_off; /* start of sample i's path */
  int32_t *img_hw;  /* height, width of sample i (from its header) */
  int img_c;        /* channels delivered: 1, 3 or 4 */
  int64_t img_max_pixels;
  _Atomic(uint8_t *) *img_cache; /* decoded pixels kept (NULL: no cache) */
  size_t img_cache_cap;
  _Atomic size_t img_cache_used;
  char **img_skipped; /* sentences of the files skipped at load */
  int64_t img_nskipped, img_ignored;
};

/* A share of a batch of n rows: rows [*off, *off + *cnt) (a data-parallel rank's). */
typedef void (*strop__batch_share_fn)(const void *ctx, int64_t n, int64_t *off, int64_t *cnt);

/* Makes it load only share's rows of every batch (NULL: all of them again): their samples are
 * read, decoded and transformed as the same rows of the whole batch would be (the same
 * positions, so the same augmentation draws), the masks cut where the whole batch's are, and
 * strop_batch_iter_next returns tensors of those rows while its *rows counts the whole batch
 * (the position advances by it). A prefetched batch is dropped. ctx is borrowed. */
void strop__batch_iter_set_share(strop_batch_iter *it, strop__batch_share_fn share,
                                 const void *ctx);

/* The root that owns the storage of ds. */
static inline const strop_dataset *strop__ds_root(const strop_dataset *ds) {
  return ds->root ? ds->root : ds;
}

/* A fresh root with refs = 1 and shapes set; storage left to the caller. Errors name fn. */
strop_status strop__ds_new_root(const char *fn, int kind, int64_t n, int in_rank,
                                const int64_t *in_dims, int tgt_rank, const int64_t *tgt_dims,
                                int64_t num_classes, strop_dataset **out);
/* Checks that n labels are integers in [0, C) (C > 0) or, for C == STROP_CLASSES_INFER,
 * integers >= 0 and sets *classes to max + 1. `what` names the source in messages. */
strop_status strop__check_labels(const char *fn, const char *what, const float *y, int64_t n,
                                 int64_t *classes);
/* Checks n values are finite: STROP_E_FORMAT "fn: what: element i is not finite (v)". */
strop_status strop__check_finite(const char *fn, const char *what, const float *v, size_t n);
/* Reads sample i of ds (view index) into in (in_numel floats) and tgt (tgt_numel floats,
 * one-hot expanded); either may be NULL. Errors name fn. */
strop_status strop__ds_read(const strop_dataset *ds, const char *fn, int64_t i, float *in,
                            float *tgt);
/* The padding mask of sample i of ds (view index) into out (mask_len floats): a no-op
 * returning 0 when the dataset has none, else 1. */
int strop__ds_read_mask(const strop_dataset *ds, int64_t i, float *out);
/* The same for the token types of sample i (types_len floats). */
int strop__ds_read_types(const strop_dataset *ds, int64_t i, float *out);
/* The per-sample input shape of sample i (view index): in_dims, or an image's own size for a
 * dataset whose sizes vary. Returns the rank. */
int strop__ds_sample_dims(const strop_dataset *ds, int64_t i, int64_t *dims);
/* All n labels of a classification dataset with scalar targets, malloc'd (strop__free). */
strop_status strop__ds_labels(const strop_dataset *ds, const char *fn, int32_t **out);
/* Takes one more reference. */
void strop__ds_ref(strop_dataset *ds);

/* Class labels are stored as floats: a class index is an integer below 2^24, the range a
 * float holds exactly, which also bounds per-class tables (docs/errors.md, input bounds). */
#define STROP__MAX_CLASSES ((int64_t)1 << 24)

/* ---- files: whole contents, mmap'd when plain, inflated when gzip ---- */
typedef struct strop__file {
  const uint8_t *data;
  size_t len;
  void *map; /* munmap on close */
  size_t map_len;
  uint8_t *buf; /* strop__free on close */
} strop__file;
/* How long a whole file says it is, from its first n bytes: 0 when more bytes are needed to
 * tell, SIZE_MAX when it cannot tell (the format declares no size, or the parser will refuse
 * the header), else the length. Lets a gzip file stop inflating where its header says. */
typedef size_t (*strop__declared_len_fn)(const uint8_t *prefix, size_t n);
/* A gzip file inflates to at most the larger of these (docs/errors.md): */
#define STROP__GZ_MIN_LIMIT ((size_t)256 << 20) /* bytes */
#define STROP__GZ_MAX_RATIO 64                  /* times the compressed size */
size_t strop__gzip_limit(size_t compressed);
/* Reads path whole (a regular file only; plain files mapped when allow_map). A gzip file is
 * inflated, no further than declared() allows (may be NULL) and strop__gzip_limit(). */
strop_status strop__file_read(const char *fn, const char *path, int allow_map,
                              strop__declared_len_fn declared, strop__file *f);
void strop__file_close(strop__file *f);

/* ---- IDX ---- */
typedef struct strop__idx {
  int type; /* 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64 */
  int rank;
  int64_t dims[STROP_MAX_RANK];
  size_t count; /* elements */
  size_t elem_size;
  const uint8_t *data; /* big-endian payload inside the parsed buffer */
} strop__idx;
/* Parses an IDX header and checks the payload size; name is used in messages. */
strop_status strop__idx_parse(const uint8_t *buf, size_t len, const char *name, strop__idx *out);
/* The length an IDX file declares (a strop__declared_len_fn). */
size_t strop__idx_declared_len(const uint8_t *prefix, size_t n);
/* Element i as a double (big-endian conversion). */
double strop__idx_get(const strop__idx *a, size_t i);

/* ---- CSV ---- */
typedef struct strop__csv_table {
  int64_t rows, features;
  float *x;            /* rows * features */
  float *y;            /* rows */
  int64_t num_classes; /* 0 for regression */
  char **class_names;  /* num_classes names or NULL */
} strop__csv_table;
strop_status strop__csv_parse(const char *buf, size_t len, const char *name,
                              const strop_csv_options *opt, strop__csv_table *out);
void strop__csv_table_free(strop__csv_table *t);

/* ---- text datasets (textdata.c) ---- */
/* strop_dataset_load_text_file on the file's bytes (data, len), named path in messages; opt
 * complete and checked, its format resolved (not STROP_TEXT_AUTO). Used by the fuzz target. */
strop_status strop__text_dataset_parse(const uint8_t *data, size_t len, const char *path,
                                       strop_tokenizer *tok, const strop_text_options *opt,
                                       strop_dataset **out);
/* How many times this thread tokenised a text file (tests: a cache hit does not). */
extern _Thread_local int64_t strop__textdata_tokenised;

/* ---- NPY ---- */
enum { STROP__NPY_F4 = 1, STROP__NPY_F8, STROP__NPY_U1, STROP__NPY_I4, STROP__NPY_I8 };
typedef struct strop__npy {
  int dtype;
  int fortran;
  int rank;
  int64_t dims[STROP_MAX_RANK];
  size_t count;
  size_t elem_size;
  const uint8_t *data;
} strop__npy;
strop_status strop__npy_parse(const uint8_t *buf, size_t len, const char *name, strop__npy *out);
/* The length an NPY file declares (a strop__declared_len_fn). */
size_t strop__npy_declared_len(const uint8_t *prefix, size_t n);
/* Writes the elements as floats in C order (transposing Fortran order). */
void strop__npy_to_float(const strop__npy *a, float *dst);

/* ---- images (image.c: the decoders; images.c: the source) ---- */
enum { STROP__IMG_JPEG = 1, STROP__IMG_PNG = 2 };
typedef struct strop__image_info {
  int format; /* STROP__IMG_* */
  int64_t width, height;
  int channels; /* as stored: 1 grey, 2 grey + alpha, 3 colour, 4 colour + alpha */
} strop__image_info;
/* Set by the fuzz targets only: PNG checksums are not checked, so mutated files reach the
 * decoding paths. */
extern int strop__image_fuzzing;
/* The format of a buffer from its magic bytes, or 0. */
int strop__image_format(const uint8_t *buf, size_t len);
/* Reads the header only: size and stored channels. Refuses (STROP_E_FORMAT, naming `name`)
 * an empty, unknown, broken or over-large (width x height > max_pixels) file and
 * (STROP_E_UNSUPPORTED) CMYK/YCCK JPEGs and 16-bit PNGs. */
strop_status strop__image_probe(const char *fn, const uint8_t *buf, size_t len, const char *name,
                                int64_t max_pixels, strop__image_info *info);
/* Decodes into *pixels (strop__malloc'd, height x width x channels bytes, interleaved), with
 * channels 1 (L), 3 (RGB) or 4 (RGBA) converted as PIL's Image.convert does. Truncated or
 * corrupt data is STROP_E_FORMAT; nothing is allocated past the pixel limit. */
strop_status strop__image_decode(const char *fn, const uint8_t *buf, size_t len, const char *name,
                                 int channels, int64_t max_pixels, uint8_t **pixels,
                                 strop__image_info *info);
/* ---- image transforms of the iterator (iter.c), reachable by the parity tests ---- */
/* The draws of RandomResizedCrop: with sv and av non-NULL, a scale value in [s0, s1) and an
 * aspect ratio exp(uniform(l0, l1)); with sv NULL, an integer in [0, l1) returned. */
typedef double (*strop__rrc_draw_fn)(void *ctx, float s0, float s1, float l0, float l1, float *sv,
                                     float *av);
/* torchvision's RandomResizedCrop.get_params rule: ten tries of an area share and an aspect
 * ratio, then the central crop of the nearest allowed ratio. out = {top, left, h, w}. */
void strop__rrc_params(int64_t h, int64_t w, const float scale[2], const float ratio[2],
                       strop__rrc_draw_fn draw, void *ctx, int64_t out[4]);
/* One ColorJitter step on a float image in [0, 1] (torchvision's functional_tensor): which
 * 0 brightness, 1 contrast, 2 saturation, 3 hue, with factor f; grey has room for h x w. */
void strop__color_jitter_step(float *img, int64_t c, int64_t h, int64_t w, int which, float f,
                              float *grey);

/* Reads root sample r of an image dataset into in (C x H x W floats in [0, 255], each
 * multiplied by scale: 1 for the values themselves); keep: its decoded pixels may be kept in
 * the dataset's cache (0: a reader that keeps what it makes of them instead). */
strop_status strop__images_read(const strop_dataset *rt, const char *fn, int64_t r, float *in,
                                float scale, int keep);
/* The image cache's budget (strop_image_options.cache_bytes), shared by the decoded pixels and
 * what iterators keep of a sample (their resized pixels): charge takes bytes from it and
 * returns 1, or 0 (nothing taken) when they do not fit or the dataset keeps nothing; release
 * gives them back. Safe from any thread. */
int strop__images_cache_charge(const strop_dataset *rt, size_t bytes);
void strop__images_cache_release(const strop_dataset *rt, size_t bytes);
/* strop__ds_read with every input value multiplied by scale as it is read (float(v) * scale,
 * the product a following scale transform would compute); targets as strop__ds_read; keep as
 * for strop__images_read. */
strop_status strop__ds_read_scaled(const strop_dataset *ds, const char *fn, int64_t i, float *in,
                                   float *tgt, float scale, int keep);
/* Benches: 0 makes iterators keep the decoded pixels only, as before they kept resized ones. */
extern int strop__iter_keep_resized;
/* Samples an iterator took from its cache of resized pixels (tests). */
int64_t strop__batch_iter_cache_hits(const strop_batch_iter *it);

#endif
