/* SPDX-License-Identifier: MIT */
/* strop — datasets: sources (memory, callback, IDX, CSV, NPY, text), task shaping (class
 * filter, few-shot, splits, one-hot) and the seeded, resumable, prefetching batch iterator. */
#ifndef STROP_DATA_H
#define STROP_DATA_H

#include "common.h"
#include "error.h"
#include "tensor.h"
#include "text.h"

/**
 * @file data.h
 * @brief Datasets, splits, batch iteration, transforms and vocabularies.
 *
 * A dataset is N samples; each has an input of a fixed per-sample shape (float32) and a
 * target: a class index stored as a float (target rank 0) or a float tensor of a fixed shape
 * (regression, token sequences, one-hot rows).
 *
 * Lifetimes: every dataset handle returned through `**out` is owned by the caller and freed
 * with strop_dataset_free(). Derived datasets (subsets, filters, splits, few-shot, one-hot,
 * reshape) are cheap views that share the storage of the source they came from; the storage is
 * reference counted, so the source and its views may be freed in any order. A batch iterator
 * keeps its dataset alive in the same way.
 *
 * Threads: datasets are immutable after creation, so one dataset (and its views) may be read
 * from several threads at once, except datasets with a host callback, whose callback is called
 * on whichever thread reads. A batch iterator is used by one thread at a time; with prefetch on
 * it runs one worker thread of its own.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/** @brief An immutable set of (input, target) samples; see the file overview. @since 0.1 */
typedef struct strop_dataset strop_dataset;

/** @brief A batch iterator over a dataset; see strop_batch_iter_create(). @since 0.1 */
typedef struct strop_batch_iter strop_batch_iter;

/** @brief A token vocabulary for text datasets; see strop_vocab_build(). @since 0.1 */
typedef struct strop_vocab strop_vocab;

/** @brief Passed as @c num_classes: classification with (largest label + 1) classes.
 *  @since 0.1 */
#define STROP_CLASSES_INFER (-1)

/* ------------------------------------------------------------------------------------------ */
/* Sources                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Creates a dataset holding a copy of the host's arrays.
 *
 * @param[in]  inputs      @p n samples of @p in_dims each, row-major, one after another.
 *                         Copied; every value finite.
 * @param[in]  targets     For classification, @p n class indices stored as floats; for
 *                         regression, @p n samples of @p tgt_dims each, every value
 *                         finite. Copied.
 * @param[in]  n           Number of samples, >= 1.
 * @param[in]  in_rank     Rank of one input, 1 .. #STROP_MAX_RANK.
 * @param[in]  in_dims     @p in_rank sizes, each > 0; copied.
 * @param[in]  tgt_rank    0 for classification (one class index per sample; @p tgt_dims may
 *                         be NULL); 1 .. #STROP_MAX_RANK for regression.
 * @param[in]  tgt_dims    @p tgt_rank sizes for regression; copied.
 * @param[in]  num_classes > 0: classification, every label must be an integer in
 *                         [0, num_classes); #STROP_CLASSES_INFER: classification with
 *                         (largest label + 1) classes; 0: regression. At most 2^24.
 * @param[out] out         The new dataset, owned by the caller (strop_dataset_free()); NULL
 *                         on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG for NULL pointers, bad ranks/sizes, a non-finite
 *         value, or a label that is not an integer in range (the message names the sample and
 *         the value); STROP_E_SHAPE on size overflow; STROP_E_NOMEM. Thread-safe (no shared
 *         state).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_from_memory(
    const float *inputs, const float *targets, int64_t n, int in_rank, const int64_t *in_dims,
    int tgt_rank, const int64_t *tgt_dims, int64_t num_classes, strop_dataset **out);

/**
 * @brief Releases host buffers lent to strop_dataset_wrap().
 * @param[in] user_data The pointer given to strop_dataset_wrap().
 * @since 0.1
 */
typedef void (*strop_release_fn)(void *user_data);

/**
 * @brief Creates a dataset that borrows the host's arrays without copying.
 *
 * The arrays must stay valid and unchanged until @p release is called, which happens once,
 * when the last handle that shares them (the dataset, its views, iterators over them) is
 * freed, on the thread that frees it. On failure @p release is not called and the buffers stay
 * the caller's. Labels and values are validated once, here.
 * @param[in]  inputs      As strop_dataset_from_memory(), borrowed.
 * @param[in]  targets     As strop_dataset_from_memory(), borrowed.
 * @param[in]  n           As strop_dataset_from_memory().
 * @param[in]  in_rank     As strop_dataset_from_memory().
 * @param[in]  in_dims     As strop_dataset_from_memory() (copied).
 * @param[in]  tgt_rank    As strop_dataset_from_memory().
 * @param[in]  tgt_dims    As strop_dataset_from_memory() (copied).
 * @param[in]  num_classes As strop_dataset_from_memory().
 * @param[in]  release     Called with @p user_data when the arrays are no longer used; may
 *                         be NULL.
 * @param[in]  user_data   Passed to @p release; never dereferenced.
 * @param[out] out         The new dataset, owned by the caller (strop_dataset_free()); NULL
 *                         on failure.
 * @return STROP_OK; the statuses of strop_dataset_from_memory().
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_wrap(
    const float *inputs, const float *targets, int64_t n, int in_rank, const int64_t *in_dims,
    int tgt_rank, const int64_t *tgt_dims, int64_t num_classes, strop_release_fn release,
    void *user_data, strop_dataset **out);

/**
 * @brief Host callback that writes sample @p index into the given buffers.
 *
 * It may be called on an iterator's prefetch worker thread, never concurrently for one
 * iterator; datasets shared between threads may have it called from several at once.
 * @param[in]  index       0 .. n - 1.
 * @param[out] input       Room for one input (the element count of the input shape).
 * @param[out] target      Room for one target (1 float for classification: the class index).
 * @param[out] message     A buffer of @p message_cap bytes (NUL-terminated, empty on entry)
 *                         where the host may write why it failed.
 * @param[in]  message_cap Capacity of @p message, >= 256.
 * @param[in]  user_data   As given at creation.
 * @return 0 on success; anything else stops the read (the epoch, for an iterator) with
 *         STROP_E_CALLBACK and the host's message in strop_last_error().
 * @since 0.1
 */
typedef int (*strop_dataset_fill_fn)(int64_t index, float *input, float *target, char *message,
                                     size_t message_cap, void *user_data);

/**
 * @brief Creates a dataset whose samples the host produces on demand.
 *
 * Class-based operations (class counts, filters, few-shot, stratified splits) call @p fill
 * for every sample to learn labels; a label the callback gives that is not a class in range
 * is a callback failure (STROP_E_CALLBACK) when read.
 * @param[in]  n           Number of samples, >= 1.
 * @param[in]  in_rank     As strop_dataset_from_memory().
 * @param[in]  in_dims     As strop_dataset_from_memory() (copied).
 * @param[in]  tgt_rank    As strop_dataset_from_memory() (ignored for classification).
 * @param[in]  tgt_dims    As strop_dataset_from_memory() (copied).
 * @param[in]  num_classes 0 (regression) or > 0; #STROP_CLASSES_INFER is refused: nothing
 *                         is read up front.
 * @param[in]  fill        The callback.
 * @param[in]  user_data   Passed back to @p fill; never dereferenced.
 * @param[out] out         The new dataset, owned by the caller (strop_dataset_free()); NULL
 *                         on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p out or @p fill, bad shapes or
 *         @p num_classes); STROP_E_SHAPE (size overflow); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_from_callback(
    int64_t n, int in_rank, const int64_t *in_dims, int tgt_rank, const int64_t *tgt_dims,
    int64_t num_classes, strop_dataset_fill_fn fill, void *user_data, strop_dataset **out);

/**
 * @brief Loads an IDX pair (the MNIST format): an images file and a labels file.
 *
 * Each file may be gzip-compressed (detected by its magic bytes) or plain; plain files are
 * memory-mapped. Element types uint8, int8, int16, int32, float32 and float64 are read;
 * uint8 images stay uint8 in memory and become floats in [0, 255] when read (add a scale
 * transform to an iterator for [0, 1]). An images file of dims (N, H, W) gives inputs of shape
 * (1, H, W); other ranks give inputs of shape dims[1:] (rank 1 gives shape (1)).
 * @param[in]  images_path Path of the images file.
 * @param[in]  labels_path Path of the labels file: rank 1, integer type, N entries.
 * @param[in]  num_classes As in strop_dataset_from_memory(); > 0 makes a label >= num_classes
 *                         an error. For Fashion-MNIST pass 10 (or #STROP_CLASSES_INFER).
 * @param[out] out         The new dataset, owned by the caller (strop_dataset_free()); NULL on
 *                         failure.
 * @return STROP_OK; STROP_E_IO (cannot open/read; gzip stream broken); STROP_E_FORMAT (bad
 *         magic, unknown type, truncated or oversized payload, count mismatch between the
 *         files, a label out of range) — the message names the file and the values;
 *         STROP_E_INVALID_ARG (NULL, bad @p num_classes); STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_idx(const char *images_path,
                                                              const char *labels_path,
                                                              int64_t num_classes,
                                                              strop_dataset **out);

/** @brief How the label column of a CSV file is read. @since 0.1 */
typedef enum strop_csv_label_mode {
  STROP_CSV_LABEL_INDEX = 0,        /**< Integer class indices (sklearn's files). */
  STROP_CSV_LABEL_NAMES = 1,        /**< Strings, numbered in order of first appearance. */
  STROP_CSV_LABEL_NAMES_SORTED = 2, /**< Strings, numbered in byte-wise sorted order. */
  STROP_CSV_LABEL_REGRESSION = 3    /**< A number: the target is shape (1). */
} strop_csv_label_mode;

/**
 * @brief Options of strop_dataset_load_csv(). Fill with strop_csv_options_init(), then change
 * fields; fields are only ever appended. @since 0.1
 */
typedef struct strop_csv_options {
  size_t size;            /**< sizeof(strop_csv_options), set by the init function. */
  int delimiter;          /**< Field separator byte, default ','. ' ' splits on runs of
                                 blanks and tabs. */
  int header;             /**< 1: the first line (after skipped ones) names the columns. */
  int64_t skip_lines;     /**< Lines ignored at the top, default 0. */
  int sklearn_header;     /**< 1: the first line is sklearn's `n_samples,n_features,class
                                 names...`: checked against the data and its names become the
                                 class names. Default 0. */
  int64_t label_column;   /**< Column index of the label; negative counts from the end.
                                 Default -1 (last). */
  const char *label_name; /**< When non-NULL, the label column by header name (needs
                                 header = 1); overrides label_column. Default NULL. */
  int label_mode;         /**< A strop_csv_label_mode, default STROP_CSV_LABEL_INDEX. */
  int64_t num_classes;    /**< For STROP_CSV_LABEL_INDEX: as in strop_dataset_from_memory();
                                 default STROP_CLASSES_INFER. */
} strop_csv_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_csv_options (and its size).
 * @param[out] opt The options, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_csv_options_init(strop_csv_options *opt);

/**
 * @brief Loads a CSV table: every column but the label is a numeric feature.
 *
 * gzip-compressed files are detected by their magic bytes. Blank lines are skipped; fields may
 * be double-quoted; spaces around fields are ignored; CRLF line ends are accepted.
 * @param[in]  path The file.
 * @param[in]  opt  Options (strop_csv_options_init()), or NULL for the defaults; only read
 *                  during the call.
 * @param[out] out  The new dataset (inputs of shape (features)), owned by the caller
 *                  (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT for a ragged row, an empty, non-numeric or
 *         non-finite cell, a bad label or a header mismatch (the message names file, line and
 *         column); STROP_E_NOT_FOUND for an unknown label_name; STROP_E_INVALID_ARG (NULL, an
 *         uninitialised or inconsistent @p opt); STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_csv(const char *path,
                                                              const strop_csv_options *opt,
                                                              strop_dataset **out);

/**
 * @brief Loads NumPy .npy arrays: inputs from @p x_path, targets from @p y_path.
 *
 * Types little-endian float32, float64, int32, int64 and uint8 (`<f4 <f8 <i4 <i8 |u1`), any
 * rank; Fortran-order arrays are transposed to C order. The first dimension is the sample
 * count: x of shape (N, ...) gives inputs of shape dims[1:] ((1) for rank 1).
 * @param[in]  x_path      Inputs file.
 * @param[in]  y_path      Targets file, first dimension N. For classification it holds N
 *                         integer labels (shape (N) or (N, 1)); for regression
 *                         (@p num_classes 0) targets are shape dims[1:] ((1) for rank 1).
 * @param[in]  num_classes As in strop_dataset_from_memory().
 * @param[out] out         The new dataset, owned by the caller (strop_dataset_free()); NULL on
 *                         failure.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (bad magic, bad header, truncated data, count
 *         mismatch, bad labels, non-finite values); STROP_E_UNSUPPORTED (big-endian or other
 *         dtypes, object arrays); STROP_E_INVALID_ARG (NULL, bad @p num_classes);
 *         STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_npy(const char *x_path,
                                                              const char *y_path,
                                                              int64_t num_classes,
                                                              strop_dataset **out);

/**
 * @brief Reads one NumPy .npy array (plain or gzip-compressed) into a new float32 tensor of
 *        its shape, with the reader strop_dataset_load_npy() uses.
 *
 * Types as strop_dataset_load_npy(); Fortran order is transposed to C order. NaN and
 * infinity are refused, as the dataset loaders refuse them.
 * @param[in]  path The .npy file; a regular file (a FIFO or folder is refused, not waited on).
 * @param[out] out  The tensor, owned by the caller (strop_tensor_free()); NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL argument); STROP_E_IO (cannot open or read,
 *         not a regular file); STROP_E_FORMAT (bad magic or header, a shape entry negative or
 *         above 2^40, truncated or extra data, rank 0 or a zero dimension, a non-finite value:
 *         the sentence names the file and the element index); STROP_E_UNSUPPORTED (dtype or
 *         format version); STROP_E_NOMEM. Thread-safe (it touches no shared state).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_load_npy(const char *path,
                                                             strop_tensor **out);

/* ------------------------------------------------------------------------------------------ */
/* Images                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** @brief Default of strop_image_options.max_pixels: PIL's decompression-bomb limit
 *  (89,478,485 pixels, about 9459 x 9459). @since 0.2 */
#define STROP_IMAGE_MAX_PIXELS ((int64_t)89478485)

/**
 * @brief Options of strop_dataset_load_images(). Fill with strop_image_options_init(), then
 * change fields; fields are only ever appended. @since 0.2
 */
typedef struct strop_image_options {
  size_t size;        /**< sizeof(strop_image_options), set by the init function. */
  int channels;       /**< Channels of every sample: 3 (RGB, default), 1 (greyscale, PIL's
                             luma L = (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point) or
                             4 (RGBA). Files are converted as PIL's Image.convert() does:
                             greyscale replicated, alpha dropped or 255, a palette expanded
                             (its transparency becomes alpha). */
  int skip_bad;       /**< 0 (default): a file that cannot be read is an error naming it.
                             1: such files are left out at load and listed by
                             strop_dataset_skipped(). */
  int64_t max_pixels; /**< Width x height above which a file is refused before anything is
                             allocated for its pixels (decompression bombs); default
                             STROP_IMAGE_MAX_PIXELS, at most 2^34. */
  size_t cache_bytes; /**< Memory, up to this many bytes, that keeps what later epochs
                             would compute again: each sample's decoded pixels (1 byte per
                             channel), or, for a batch iterator whose transforms start with a
                             resize or centre crop and draw nothing before it (an evaluation
                             pipeline), their output (4 bytes a value), so later epochs skip
                             decoding and resizing; what an iterator keeps is given back when
                             it is freed. Default 0 (none). */
} strop_image_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_image_options (and its size).
 * @param[out] opt The options, or NULL (a no-op).
 * @since 0.2
 */
STROP_API void strop_image_options_init(strop_image_options *opt);

/**
 * @brief Opens a folder of JPEG and PNG images, or a list of them, as a classification dataset.
 *
 * @p path is either
 * - a folder laid out as torchvision's ImageFolder: `path/<class>/<file>` (files may sit in
 *   sub-folders of a class folder). Classes are the sub-folders, numbered in byte-wise sorted
 *   order of their names, which become the class names; within a class, files come in the
 *   order of torchvision's sorted walk. Files ending in `.jpg`, `.jpeg` or `.png` (any case) are
 *   images; torchvision's other image extensions (`.bmp`, `.ppm`, `.pgm`, `.tif`, `.tiff`,
 *   `.webp`) are refused (or skipped), and every other file is ignored, as torchvision
 *   ignores it; or
 * - a list file: CSV lines `path,label` (a first line `path,label` is a header) or, for a name
 *   ending in `.jsonl` or `.json`, JSON lines `{"path": "a/1.jpg", "label": "cat"}`. Relative
 *   paths are relative to the list's folder. When every label is an integer >= 0 the labels
 *   are class indices (num_classes = largest + 1); otherwise they are class names, numbered
 *   in byte-wise sorted order.
 *
 * The header of every file is read now (its size, and whether it is an image strop reads);
 * pixels are decoded when a sample is read — by a batch iterator, on its prefetch thread.
 * Samples are (C, H, W) floats in [0, 255] (add a scale of 1/255 for [0, 1]). When the images
 * differ in size, strop_dataset_input_shape() gives the largest height and width (a bound),
 * strop_dataset_sample_shape() each sample's own shape, and a batch iterator needs a transform
 * that gives every sample one size (resize to a fixed size, a centre crop, a random resized
 * crop) before its first batch.
 *
 * EXIF orientation is not applied (neither PIL's Image.open nor torchvision applies it).
 * @param[in]  path A folder or a list file.
 * @param[in]  opt  Options, or NULL for the defaults.
 * @param[out] out  The dataset, owned by the caller; NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL path or out, bad options); STROP_E_IO (a path
 *         that cannot be opened or read); STROP_E_FORMAT (no class folders, a class folder
 *         without images, an empty list, a bad list line — file:line —, an empty, truncated,
 *         corrupt or non-image file, an image above max_pixels; each names the file);
 *         STROP_E_UNSUPPORTED (a CMYK/YCCK JPEG, a 16-bit PNG, another image format);
 *         STROP_E_NOMEM. With skip_bad, file errors other than STROP_E_NOMEM skip the file
 *         instead, and only a set where no file can be read fails. A file that turns out
 *         broken past its header fails the batch that reads it (STROP_E_FORMAT, naming it).
 * Thread safety: touches no shared state. The dataset may be read from several threads at
 * once (the cache is shared safely). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_images(const char *path,
                                                                 const strop_image_options *opt,
                                                                 strop_dataset **out);

/**
 * @brief Number of files strop_dataset_load_images() skipped (skip_bad).
 * @param[in] ds The dataset; views report their source's count.
 * @return The count; 0 for datasets of other sources; -1 for NULL. Reads only @p ds.
 * @since 0.2
 */
STROP_API int64_t strop_dataset_skipped_count(const strop_dataset *ds);

/**
 * @brief Why skipped file @p i was left out: the error sentence naming the file, snprintf
 * style.
 * @param[in]  ds  The dataset.
 * @param[in]  i   0 .. strop_dataset_skipped_count() - 1.
 * @param[out] buf Receives the sentence, always NUL-terminated when @p cap > 0; may be NULL
 *                 when @p cap is 0.
 * @param[in]  cap Bytes available at @p buf.
 * @return The sentence's length without the NUL, or -1 for NULL or @p i out of range.
 *         Reads only @p ds.
 * @since 0.2
 */
STROP_API int strop_dataset_skipped(const strop_dataset *ds, int64_t i, char *buf, size_t cap);

/**
 * @brief The file of sample @p index of an image dataset (or a view of one), snprintf style.
 * @param[in]  ds    The dataset.
 * @param[in]  index 0 .. strop_dataset_size() - 1.
 * @param[out] buf   Receives the path, NUL-terminated when @p cap > 0; may be NULL when
 *                   @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The path's length without the NUL, or -1 for NULL, an index out of range or a
 *         dataset of another source. Reads only @p ds.
 * @since 0.2
 */
STROP_API int strop_dataset_image_path(const strop_dataset *ds, int64_t index, char *buf,
                                       size_t cap);

/**
 * @brief Reads one JPEG or PNG file into a new tensor of shape (C, H, W), floats in [0, 255],
 * with the decoder and conversions of strop_dataset_load_images().
 * @param[in]  path     The file.
 * @param[in]  channels 1, 3 or 4 (see strop_image_options.channels).
 * @param[out] out      The tensor, owned by the caller (strop_tensor_free()); NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_IO; STROP_E_FORMAT (empty, truncated, corrupt
 *         or non-image data, more than STROP_IMAGE_MAX_PIXELS pixels: the sentence names the
 *         file); STROP_E_UNSUPPORTED (CMYK JPEG, 16-bit PNG); STROP_E_NOMEM.
 * Thread safety: touches no shared state. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_image_load(const char *path, int channels,
                                                        strop_tensor **out);

/* ------------------------------------------------------------------------------------------ */
/* Text                                                                                         */
/* ------------------------------------------------------------------------------------------ */

/** @brief Tokenisation of text. @since 0.1 */
typedef enum strop_token_mode {
  STROP_TOKENS_BYTES = 0, /**< One token per byte; the vocabulary is always the 256 bytes. */
  STROP_TOKENS_CHARS = 1  /**< One token per UTF-8 character (invalid bytes read as U+FFFD);
                               token 0 is `<unk>` for characters outside the vocabulary. */
} strop_token_mode;

/**
 * @brief Builds a vocabulary from text files.
 * @param[in]  paths @p count file paths (UTF-8 text; gzip accepted); read during the call.
 * @param[in]  count Number of paths, >= 1 (for ::STROP_TOKENS_BYTES the files are not read
 *                   and @p paths may be NULL).
 * @param[in]  mode  A ::strop_token_mode.
 * @param[out] out   The vocabulary (characters sorted by code point after `<unk>`), owned by
 *                   the caller (strop_vocab_free()); NULL on failure.
 * @return STROP_OK; STROP_E_IO (a file cannot be read); STROP_E_FORMAT (a broken gzip stream,
 *         a file over the size limit); STROP_E_INVALID_ARG (NULL, unknown mode, no paths);
 *         STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_build(const char *const *paths, int64_t count,
                                                         int mode, strop_vocab **out);

/**
 * @brief Loads a vocabulary written by strop_vocab_save().
 * @param[in]  path The file.
 * @param[out] out  The vocabulary, owned by the caller (strop_vocab_free()); NULL on failure.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (names the line); STROP_E_INVALID_ARG (NULL);
 *         STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_load(const char *path, strop_vocab **out);

/**
 * @brief Saves the vocabulary as text: a line `strop-vocab 1 <bytes|chars> <size>`, then one
 *        token per line (`<unk>` or `U+XXXX`). Written to a temporary file and renamed.
 * @param[in] vocab The vocabulary; only read.
 * @param[in] path  The file to write.
 * @return STROP_OK; STROP_E_IO; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_save(const strop_vocab *vocab,
                                                        const char *path);

/**
 * @brief Number of tokens.
 * @param[in] vocab The vocabulary.
 * @return The count (256 for bytes), or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_vocab_size(const strop_vocab *vocab);

/**
 * @brief Turns UTF-8 text into token ids.
 * @param[in]  vocab The vocabulary (only read: may be shared between threads).
 * @param[in]  text  @p len bytes; may be NULL when @p len is 0.
 * @param[in]  len   Bytes at @p text.
 * @param[out] ids   Room for @p cap ids; may be NULL when @p cap is 0.
 * @param[in]  cap   Entries available at @p ids.
 * @param[out] count The number of tokens of the text (may exceed @p cap: then only @p cap
 *                   were written).
 * @return STROP_OK; STROP_E_INVALID_ARG (a NULL argument).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_encode(const strop_vocab *vocab,
                                                          const char *text, size_t len,
                                                          int64_t *ids, int64_t cap,
                                                          int64_t *count);

/**
 * @brief Turns token ids back into UTF-8 text (`<unk>` becomes U+FFFD), snprintf style.
 * @param[in]  vocab The vocabulary.
 * @param[in]  ids   @p n token ids, each in [0, strop_vocab_size()).
 * @param[in]  n     Number of ids.
 * @param[out] buf   A buffer of @p cap bytes, always NUL-terminated when @p cap > 0; may be
 *                   NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The length the full text needs (without the NUL), or -1 for NULL arguments or an id
 *         out of range (strop_last_error() says which).
 * @since 0.1
 */
STROP_API int64_t strop_vocab_decode(const strop_vocab *vocab, const int64_t *ids, int64_t n,
                                     char *buf, size_t cap);

/**
 * @brief Frees the vocabulary. Datasets built with it keep no pointer to it.
 * @param[in] vocab The vocabulary, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_vocab_free(strop_vocab *vocab);

/**
 * @brief A language-modelling dataset from one text file.
 *
 * The file becomes token ids t[0..T); sample i has input t[s..s+L) and target t[s+1..s+L+1)
 * with s = i * @p stride, both stored as float ids of shape (L). num_classes is the vocabulary
 * size.
 * @param[in]  path    A UTF-8 text file (gzip accepted).
 * @param[in]  vocab   The vocabulary (read only; not retained).
 * @param[in]  seq_len L, 1 .. 2^24.
 * @param[in]  stride  Offset between samples, >= 1 (L for non-overlapping windows).
 * @param[out] out     The dataset, owned by the caller (strop_dataset_free()); NULL on
 *                     failure.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT when the text has fewer than L + 1 tokens (or a
 *         broken gzip stream); STROP_E_INVALID_ARG (NULL, @p seq_len or @p stride out of
 *         range); STROP_E_NOMEM. Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_text(const char *path,
                                                               const strop_vocab *vocab,
                                                               int64_t seq_len, int64_t stride,
                                                               strop_dataset **out);

/**
 * @brief A text-classification dataset: each file is cut into windows of L tokens (every
 *        @p stride tokens; a file shorter than L gives one window padded with token 0), each
 *        labelled with its file's class.
 * @param[in]  paths   @p count files.
 * @param[in]  labels  @p count class indices in [0, 2^24); num_classes is the largest + 1.
 * @param[in]  count   >= 1.
 * @param[in]  vocab   As strop_dataset_load_text().
 * @param[in]  seq_len As strop_dataset_load_text().
 * @param[in]  stride  As strop_dataset_load_text().
 * @param[out] out     The dataset, owned by the caller (strop_dataset_free()); NULL on
 *                     failure.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (an empty file, a broken gzip stream);
 *         STROP_E_INVALID_ARG (NULL, a label or length out of range); STROP_E_NOMEM.
 *         Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_text_classes(
    const char *const *paths, const int64_t *labels, int64_t count, const strop_vocab *vocab,
    int64_t seq_len, int64_t stride, strop_dataset **out);

/** @brief File formats of strop_dataset_load_text_file(). @since 0.2 */
typedef enum strop_text_format {
  STROP_TEXT_AUTO = 0,  /**< From the name: .jsonl, .ndjson, .json: JSON Lines; .csv: CSV;
                             anything else plain text (a trailing .gz is looked through). */
  STROP_TEXT_JSONL = 1, /**< One JSON object per line; blank lines are skipped. */
  STROP_TEXT_CSV = 2,   /**< RFC 4180 CSV, comma-separated, a header row naming the columns;
                             quoted fields may hold commas, quotes ("") and newlines. */
  STROP_TEXT_PLAIN = 3  /**< The whole file is one document (::STROP_TEXT_CAUSAL_LM only). */
} strop_text_format;

/** @brief Tasks of strop_dataset_load_text_file(): what a sample's targets are. @since 0.2 */
typedef enum strop_text_task {
  STROP_TEXT_CLASSIFY = 0,       /**< A text (or text pair) and its class: input [L] ids, a
                                      scalar class target. */
  STROP_TEXT_CAUSAL_LM = 1,      /**< Next-token prediction: input [L] ids, target [L] ids
                                      (the input shifted by one; -100 at padding). */
  STROP_TEXT_PROMPT_RESPONSE = 2 /**< A prompt and its response, one sample each: as
                                      ::STROP_TEXT_CAUSAL_LM, with the targets of the prompt's
                                      tokens -100 (no loss on the prompt). */
} strop_text_task;

/**
 * @brief Options of strop_dataset_load_text_file(). Fill with strop_text_options_init(), then
 * change fields; fields are only ever appended. @since 0.2
 */
typedef struct strop_text_options {
  size_t size;                 /**< sizeof(strop_text_options), set by the init function. */
  int format;                  /**< A strop_text_format, default ::STROP_TEXT_AUTO. */
  int task;                    /**< A strop_text_task, default ::STROP_TEXT_CLASSIFY. */
  const char *text_field;      /**< The text's field (JSON) or column (CSV); NULL (default):
                                    "text", and "prompt" for ::STROP_TEXT_PROMPT_RESPONSE. */
  const char *pair_field;      /**< ::STROP_TEXT_CLASSIFY: the second text of a pair, encoded
                                    with the first as the tokenizer's pair template says; NULL
                                    (default): single texts. */
  const char *label_field;     /**< ::STROP_TEXT_CLASSIFY: the class; NULL (default): "label".
                                    Integers >= 0 are class indices; otherwise each distinct
                                    string is a class, numbered in byte order and named. */
  const char *response_field;  /**< ::STROP_TEXT_PROMPT_RESPONSE: NULL (default): "response". */
  const char *prompt_template; /**< ::STROP_TEXT_PROMPT_RESPONSE: NULL (default), or a chat
                                    template whose every "{prompt}" is replaced by the prompt
                                    before encoding (e.g. "### Question:\n{prompt}\n### Answer:\n"). */
  int64_t max_length;          /**< L, the sequence length of every sample, special tokens
                                    included; 1 .. 2^24, default 128. */
  int truncate;                /**< 1 (default): longer texts are truncated (pairs longest
                                    first, as Hugging Face); 0: refused, naming file and line. */
  int padding;                 /**< ::STROP_PAD_LONGEST (default): each batch is cut to its
                                    longest sample; ::STROP_PAD_MAX_LENGTH: every batch is L
                                    long. */
  int pack;                    /**< ::STROP_TEXT_CAUSAL_LM: 1 (default) joins every text (an
                                    EOS id after each, when the tokenizer has one and the text
                                    does not end with it) into one stream cut into windows of
                                    L; 0: one sample per text, truncated to L + 1 ids. */
  int64_t stride;            /**< Packed windows start every @c stride tokens; 0 (default): L. */
  int64_t num_classes;       /**< ::STROP_TEXT_CLASSIFY with integer labels: the class
                                    count, or #STROP_CLASSES_INFER (default: largest + 1). */
  int chat;                  /**< ::STROP_TEXT_PROMPT_RESPONSE: 1 renders each record as a chat
                                  (strop_tokenizer_apply_chat_template()): the prompt is the
                                  render of [user: prompt] with the generation prompt, the
                                  response what the render of [user: prompt, assistant:
                                  response] adds to it; both are encoded without the
                                  tokenizer's special tokens (the template writes them).
                                  prompt_template is then unused. Default 0. @since 0.2 */
  const char *chat_template; /**< With @c chat: NULL (default) for the tokenizer's own template
                                  (tokenizer_config.json's), the name of one of its named
                                  templates, or a Jinja template string. @since 0.2 */
  const char *cache_dir;     /**< NULL or "" (default): no cache. A folder (made when missing)
                                  where the tokenised dataset is written once, as
                                  `<file name>.<key>.tokens`, and read back by later loads
                                  whose key matches: the source's size, mtime and bytes, the
                                  tokenizer (its pipeline, added tokens, roles, templates) and
                                  these options. A stale, truncated or corrupt file is rebuilt.
                                  @since 0.2 */
} strop_text_options;

/**
 * @brief Fills @p opt with the defaults listed in strop_text_options (and its size).
 * @param[out] opt The options to fill; NULL is a no-op.
 * Thread-safe. @since 0.2
 */
STROP_API void strop_text_options_init(strop_text_options *opt);

/**
 * @brief A text dataset from a JSON Lines, CSV or plain-text file, tokenised once with @p tok.
 *
 * Every sample is stored as L token ids (the tokenizer's post-processor adds its special
 * tokens; padding uses its pad id, or 0) with a padding mask (strop_dataset_has_mask()), so
 * batches carry masks (strop_batch_iter_mask()) and, with ::STROP_PAD_LONGEST, are only as long
 * as their longest row. Splits, subsets, few-shot selections and stratified splits work as on
 * any dataset. Texts must be valid UTF-8: invalid bytes are refused (not replaced), naming file,
 * line and byte. Empty texts (and empty responses) are refused, as are records without a
 * needed field, non-string texts, labels that are neither a string nor an integer >= 0, bad
 * JSON (file:line:column) and, with @c truncate 0, samples longer than L.
 * @param[in]  path The file (gzip accepted).
 * @param[in]  tok  The tokenizer (its cache changes while loading: one thread at a time; not
 *                  retained).
 * @param[in]  opt  Options (strop_text_options_init()), or NULL for the defaults; only read.
 * @param[out] out  The dataset, owned by the caller (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_IO (the file cannot be read); STROP_E_FORMAT (bad JSON or CSV,
 *         invalid UTF-8, a missing field or column, an empty or over-long text, no samples, a
 *         label out of range); STROP_E_INVALID_ARG (NULL @p path, @p tok or @p out, options out
 *         of range, a plain file for a task other than causal LM); STROP_E_NOMEM. Thread-safe
 *         for distinct tokenizers. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_text_file(const char *path,
                                                                    strop_tokenizer *tok,
                                                                    const strop_text_options *opt,
                                                                    strop_dataset **out);

/**
 * @brief Gives the samples of a dataset padding masks: which positions of each sample's
 *        sequence are tokens (1) and which are padding (0), Hugging Face's attention_mask.
 *
 * Batches of the dataset (and of every view made from it: splits, subsets, few-shot
 * selections) then carry their rows' masks (strop_batch_iter_mask()), which strop_trainer_fit()
 * and strop_trainer_eval() pass to the model as strop_trainer_step_masked() does. Set them
 * before making iterators over the dataset or its views.
 * @param[in,out] ds    A dataset made by a source (not a view); changed.
 * @param[in]     mask  n x T values, 0 or 1, T the first dimension of a sample's input shape (its
 *                     sequence); copied. NULL removes the masks.
 * @param[in]     count The number of values at @p mask: n x T.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p ds, a view, a value other than 0 or 1,
 *         naming the sample and position); STROP_E_SHAPE (@p count is not n x T, naming
 *         both); STROP_E_NOMEM. On error the dataset is unchanged. Not thread-safe for the
 *         dataset and its views. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_set_mask(strop_dataset *ds,
                                                              const float *mask, size_t count);

/**
 * @brief Gives the samples of a dataset token types (Hugging Face's token_type_ids: the segment
 *        of a text pair each position belongs to), which its batches then carry
 *        (strop_batch_iter_token_types()) and strop_trainer_fit() and strop_trainer_eval()
 *        pass to the model beside the padding mask (strop_side_inputs).
 *
 * Text datasets of pairs (strop_text_options.pair_field) have them from the tokenizer's pair
 * template; this sets them on a dataset made from arrays. Set them on the dataset, not a view.
 * @param[in,out] ds    The dataset (not a view).
 * @param[in]     types n x T integers >= 0 (below 2^24), T the first dimension of a sample's
 *                      input shape; copied. NULL removes them.
 * @param[in]     count The number of values at @p types: n x T.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL ds, a view, a value that is not an integer in
 *         [0, 2^24), naming the sample and position); STROP_E_SHAPE (count is not n x T);
 *         STROP_E_NOMEM. The dataset is unchanged on error. Not thread-safe for one dataset.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_set_token_types(strop_dataset *ds,
                                                                     const float *types,
                                                                     size_t count);

/**
 * @brief Whether the dataset's samples carry token types (strop_dataset_set_token_types(), or
 *        a text dataset of pairs).
 * @param[in] ds The dataset or a view of it.
 * @return 1 or 0 (0 for NULL).
 * @since 0.2
 */
STROP_API int strop_dataset_has_token_types(const strop_dataset *ds);

/**
 * @brief Whether the dataset's samples carry padding masks (strop_dataset_set_mask()).
 * @param[in] ds The dataset (or a view of it).
 * @return 1 when they do; 0 otherwise or for NULL. Thread-safe.
 * @since 0.2
 */
STROP_API int strop_dataset_has_mask(const strop_dataset *ds);

/* ------------------------------------------------------------------------------------------ */
/* Accessors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Number of samples.
 * @param[in] ds The dataset.
 * @return The count (may be 0 for a view), or -1 for NULL. Thread-safe.
 * @since 0.1
 */
STROP_API int64_t strop_dataset_size(const strop_dataset *ds);

/**
 * @brief Copies the per-sample input shape into @p dims (up to @p cap entries).
 * @param[in]  ds   The dataset.
 * @param[out] dims Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap  Entries available at @p dims.
 * @return The rank (may exceed @p cap), or -1 for NULL (or NULL @p dims with @p cap > 0).
 *         Thread-safe.
 * @since 0.1
 */
STROP_API int strop_dataset_input_shape(const strop_dataset *ds, int64_t *dims, int cap);

/**
 * @brief Copies the per-sample target shape into @p dims (up to @p cap entries).
 * @param[in]  ds   The dataset.
 * @param[out] dims Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap  Entries available at @p dims.
 * @return The rank: 0 for a class index; -1 for NULL (or NULL @p dims with @p cap > 0).
 *         Thread-safe.
 * @since 0.1
 */
STROP_API int strop_dataset_target_shape(const strop_dataset *ds, int64_t *dims, int cap);

/**
 * @brief The input shape of sample @p index: the dataset's input shape, except for images
 * that differ in size, where it is that image's (C, H, W).
 * @param[in]  ds    The dataset.
 * @param[in]  index 0 .. strop_dataset_size() - 1.
 * @param[out] dims  Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap   Entries available at @p dims.
 * @return The rank (may exceed @p cap), or -1 for NULL or an index out of range. Reads only
 *         @p ds.
 * @since 0.2
 */
STROP_API int strop_dataset_sample_shape(const strop_dataset *ds, int64_t index, int64_t *dims,
                                         int cap);

/**
 * @brief Whether the samples differ in shape (images of several sizes: the input shape is
 * then a bound, see strop_dataset_load_images()).
 * @param[in] ds The dataset.
 * @return 1 when they differ; 0 when they all have the input shape; -1 for NULL.
 * @since 0.2
 */
STROP_API int strop_dataset_varies(const strop_dataset *ds);

/**
 * @brief Number of classes.
 * @param[in] ds The dataset.
 * @return The count; 0 for regression; -1 for NULL. Thread-safe.
 * @since 0.1
 */
STROP_API int64_t strop_dataset_num_classes(const strop_dataset *ds);

/**
 * @brief The name of class @p cls (CSV label strings, sklearn class names), snprintf style.
 * @param[in]  ds  The dataset.
 * @param[in]  cls 0 .. strop_dataset_num_classes() - 1.
 * @param[out] buf Receives the name; may be NULL (nothing is written).
 * @param[in]  cap Bytes available at @p buf.
 * @return The length of the name (without the NUL), or -1 when the class has no name or
 *         @p cls is out of range (no error sentence). Thread-safe.
 * @since 0.1
 */
STROP_API int strop_dataset_class_name(const strop_dataset *ds, int64_t cls, char *buf,
                                       size_t cap);

/**
 * @brief Reads sample @p index into the caller's buffers.
 * @param[in]  ds         The dataset.
 * @param[in]  index      0 .. strop_dataset_size() - 1.
 * @param[out] input      Room for @p input_cap floats (>= the input element count; for
 *                        images that differ in size, >= this sample's, see
 *                        strop_dataset_sample_shape()), or NULL.
 * @param[in]  input_cap  Floats available at @p input.
 * @param[out] target     Room for @p target_cap floats (>= the target element count), or
 *                        NULL.
 * @param[in]  target_cap Floats available at @p target.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL dataset, index out of range, capacity too
 *         small); STROP_E_CALLBACK (the host's fill callback failed or gave a bad label; its
 *         message is included); STROP_E_NOMEM (a callback dataset read with a NULL buffer).
 *         Thread-safe for datasets without a callback.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_get(const strop_dataset *ds, int64_t index,
                                                         float *input, size_t input_cap,
                                                         float *target, size_t target_cap);

/**
 * @brief Counts samples per class into @p counts[0..num_classes).
 * @param[in]  ds     A classification dataset.
 * @param[out] counts Receives one count per class.
 * @param[in]  cap    Capacity of @p counts, >= num_classes.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, @p cap too small); STROP_E_UNSUPPORTED for a
 *         dataset whose target is not one class index; STROP_E_CALLBACK; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_class_counts(const strop_dataset *ds,
                                                                  int64_t *counts, int64_t cap);

/**
 * @brief Drops a reference. The storage is released (and a wrap's release callback called)
 *        when the last dataset, view or iterator sharing it is freed.
 * @param[in] ds The dataset, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_dataset_free(strop_dataset *ds);

/* ------------------------------------------------------------------------------------------ */
/* Shaping the task: views sharing the source's storage                                         */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief A view of the samples at @p indices, in that order (repeats allowed).
 * @param[in]  ds      The source; the view shares its storage.
 * @param[in]  indices @p count indices in [0, strop_dataset_size()); copied.
 * @param[in]  count   Number of indices, >= 0 (0 gives an empty view).
 * @param[out] out     The view, owned by the caller (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, an index out of range: names its position);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_subset(const strop_dataset *ds,
                                                            const int64_t *indices, int64_t count,
                                                            strop_dataset **out);

/**
 * @brief Keeps the samples of the listed classes and renumbers them: class @p classes[i]
 *        becomes class i (e.g. {5,6,7,8,9} keeps classes 5–9 as 0–4). Order of samples is
 *        kept.
 * @param[in]  ds      A classification dataset; the view shares its storage.
 * @param[in]  classes @p count distinct class indices, each in [0, num_classes); copied.
 * @param[in]  count   Number of classes, >= 1.
 * @param[out] out     The view, owned by the caller (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, a class out of range or repeated);
 *         STROP_E_UNSUPPORTED (not a classification dataset); STROP_E_CALLBACK; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_filter_classes(const strop_dataset *ds,
                                                                    const int64_t *classes,
                                                                    int64_t count,
                                                                    strop_dataset **out);

/**
 * @brief A few-shot subset: exactly @p k samples of every class, drawn at random with
 *        @p seed (same seed, same subset), kept in the source's order.
 * @param[in]  ds   A classification dataset; the view shares its storage.
 * @param[in]  k    Samples per class, >= 1.
 * @param[in]  seed Seed of the draw.
 * @param[out] out  The view, owned by the caller (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, k < 1, or a class with fewer than k samples:
 *         the message names it); STROP_E_UNSUPPORTED (not a classification dataset);
 *         STROP_E_CALLBACK; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_few_shot(const strop_dataset *ds, int64_t k,
                                                              uint64_t seed, strop_dataset **out);

/** @brief Flag of strop_dataset_split(): split every class in the same proportions.
 *  @since 0.1 */
#define STROP_SPLIT_STRATIFIED 1

/**
 * @brief Splits into train / validation / test views, disjoint and together covering the set.
 *
 * Sizes are round(n * train_frac) and round(n * val_frac); test gets the rest. With
 * #STROP_SPLIT_STRATIFIED the rounding is per class, so each class's share in each part is
 * within one sample of its exact proportion. Membership is random from @p seed; each part
 * keeps the source's order.
 * @param[in]  ds         The source; the parts share its storage.
 * @param[in]  train_frac In [0, 1].
 * @param[in]  val_frac   In [0, 1]; @p train_frac + @p val_frac <= 1.
 * @param[in]  seed       Seed of the draw.
 * @param[in]  flags      0 or #STROP_SPLIT_STRATIFIED (classification datasets only).
 * @param[out] train      The training part, owned by the caller (strop_dataset_free()); may
 *                        be NULL to not receive it. Parts may be empty (size 0).
 * @param[out] val        The validation part, as @p train.
 * @param[out] test       The test part, as @p train.
 * All parts are NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL dataset, fractions out of range, unknown
 *         flags); STROP_E_UNSUPPORTED (stratified on a dataset that is not classification);
 *         STROP_E_CALLBACK; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status
strop_dataset_split(const strop_dataset *ds, float train_frac, float val_frac, uint64_t seed,
                    int flags, strop_dataset **train, strop_dataset **val, strop_dataset **test);

/**
 * @brief A view whose targets are one-hot: every class-index target value becomes
 *        num_classes floats (shape target_shape + (num_classes)).
 * @param[in]  ds  A classification dataset; the view shares its storage.
 * @param[out] out The view, owned by the caller (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_UNSUPPORTED (regression or already one-hot); STROP_E_SHAPE (a
 *         target rank that leaves no room for the class axis); STROP_E_INVALID_ARG (NULL);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_one_hot(const strop_dataset *ds,
                                                             strop_dataset **out);

/**
 * @brief A view with another per-sample input shape of the same element count (e.g. sklearn
 *        digits' 64 features as (1, 8, 8)).
 * @param[in]  ds   The source; the view shares its storage.
 * @param[in]  rank 1 .. #STROP_MAX_RANK.
 * @param[in]  dims @p rank sizes, each > 0; copied.
 * @param[out] out  The view, owned by the caller (strop_dataset_free()); NULL on failure.
 * @return STROP_OK; STROP_E_SHAPE (the counts differ); STROP_E_INVALID_ARG (NULL, a bad rank
 *         or size); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_reshape(const strop_dataset *ds, int rank,
                                                             const int64_t *dims,
                                                             strop_dataset **out);

/**
 * @brief Per-channel mean and (population) standard deviation of the inputs, in double
 *        precision. The channel is the first input dimension for inputs of rank 3 (C, H, W);
 *        inputs of other ranks have one channel.
 * @param[in]  ds       The dataset.
 * @param[in]  scale    Every value is multiplied by @p scale first (e.g. 1/255), 1 for none.
 * @param[out] mean     Room for @p cap floats.
 * @param[out] std      Room for @p cap floats.
 * @param[in]  cap      Entries available at @p mean and @p std.
 * @param[out] channels The number of channels (may exceed @p cap: then only @p cap written).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, an empty dataset); STROP_E_CALLBACK;
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_channel_stats(const strop_dataset *ds,
                                                                   float scale, float *mean,
                                                                   float *std, int64_t cap,
                                                                   int64_t *channels);

/* ------------------------------------------------------------------------------------------ */
/* Batch iteration                                                                              */
/* ------------------------------------------------------------------------------------------ */

/** @brief Flag of strop_batch_iter_create(): a new random order every epoch, a pure function
 *  of (seed, epoch). @since 0.1 */
#define STROP_ITER_SHUFFLE 1
/** @brief Flag of strop_batch_iter_create(): skip the last, partial batch of each epoch.
 *  @since 0.1 */
#define STROP_ITER_DROP_LAST 2
/** @brief Flag of strop_batch_iter_create(): prepare the next batch on a worker thread.
 *  @since 0.1 */
#define STROP_ITER_PREFETCH 4

/**
 * @brief Creates an iterator that yields batches of @p batch_size samples, epoch after epoch.
 *
 * Epoch e visits every sample once, in index order or (#STROP_ITER_SHUFFLE) in a permutation
 * drawn from (@p seed, e) alone, so a run resumed from strop_batch_iter_get_state() sees exactly
 * the batches it would have seen. Random transforms draw from (seed, epoch, position) too.
 * Buffers and the worker thread are set up by the first strop_batch_iter_next().
 * @param[in]  ds         The dataset; the iterator keeps a reference to it (the caller may
 *                        free its own handle).
 * @param[in]  batch_size >= 1.
 * @param[in]  seed       Seed of the shuffling and of random transforms.
 * @param[in]  flags      #STROP_ITER_SHUFFLE | #STROP_ITER_DROP_LAST | #STROP_ITER_PREFETCH,
 *                        or 0.
 * @param[out] out        The iterator, owned by the caller (strop_batch_iter_free()); NULL
 *                        on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, batch_size < 1, unknown flags, drop_last with a
 *         dataset smaller than one batch, an empty dataset); STROP_E_SHAPE (sample rank 8
 *         leaves no room for the batch axis); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_create(strop_dataset *ds,
                                                               int64_t batch_size, uint64_t seed,
                                                               int flags, strop_batch_iter **out);

/**
 * @brief The next batch of the current epoch.
 *
 * @param[in,out] it      The iterator.
 * @param[out]    inputs  A borrowed tensor (rows, input shape after transforms), or NULL at
 *                        the end of an epoch. It belongs to the iterator and stays valid and
 *                        unchanged until the next call of next, set_state or free on @p it.
 * @param[out]    targets A borrowed tensor (rows) of class indices, or (rows, target shape),
 *                        or NULL at the end of an epoch; same lifetime.
 * @param[out]    rows    Samples in the batch: the batch size, fewer for the last batch of an
 *                        epoch, or 0 when the epoch has ended — the call after that begins
 *                        the next epoch. Any of the three may be NULL.
 * @return STROP_OK; STROP_E_CALLBACK (a host fill callback failed: the batch is not consumed,
 *         so calling again retries it); STROP_E_INVALID_ARG (NULL iterator); on the first call
 *         also STROP_E_SHAPE (a batch's byte size overflows), STROP_E_NOMEM or
 *         STROP_E_INTERNAL (the worker thread cannot start).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_next(strop_batch_iter *it,
                                                             strop_tensor **inputs,
                                                             strop_tensor **targets,
                                                             int64_t *rows);

/**
 * @brief The padding mask of the batch strop_batch_iter_next() last returned, when the
 *        dataset carries masks (strop_dataset_set_mask()).
 * @param[in] it The iterator; only read.
 * @return A borrowed tensor [rows, T] of 1 (token) and 0 (padding), with the same lifetime as
 *         the batch's inputs; NULL when the dataset has no masks, before the first batch, at
 *         the end of an epoch, or for NULL. Not thread-safe for one iterator. @since 0.2
 */
STROP_API const strop_tensor *strop_batch_iter_mask(const strop_batch_iter *it);

/**
 * @brief The token types of the batch strop_batch_iter_next() last returned, when the dataset
 *        carries them (strop_dataset_has_token_types()): [rows, T] like the mask, cut to the
 *        same length; padding positions have type 0.
 * @param[in] it The iterator.
 * @return A tensor borrowed from the iterator, valid until its next call to
 *         strop_batch_iter_next() (or its free); NULL when the dataset has no token types,
 *         before the first batch, at the end of an epoch, or for NULL.
 * @since 0.2
 */
STROP_API const strop_tensor *strop_batch_iter_token_types(const strop_batch_iter *it);

/**
 * @brief Batches per epoch (with drop_last taken into account).
 * @param[in] it The iterator.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_batch_iter_num_batches(const strop_batch_iter *it);

/**
 * @brief Per-sample input shape of the batches (after resize and crop transforms); height and
 * width are 0 while the transforms added so far leave images of several sizes.
 * @param[in]  it   The iterator.
 * @param[out] dims Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap  Entries available at @p dims.
 * @return The rank (may exceed @p cap), or -1 for NULL.
 * @since 0.1
 */
STROP_API int strop_batch_iter_input_shape(const strop_batch_iter *it, int64_t *dims, int cap);

/**
 * @brief The iterator's position, for a checkpoint: the epoch, the samples of it already
 *        returned, and the seed.
 * @param[in]  it       The iterator.
 * @param[out] epoch    The current epoch.
 * @param[out] position Samples of the epoch already returned.
 * @param[out] seed     The bit pattern of the uint64 seed.
 * @return STROP_OK; STROP_E_INVALID_ARG (a NULL argument).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_get_state(const strop_batch_iter *it,
                                                                  int64_t *epoch,
                                                                  int64_t *position,
                                                                  int64_t *seed);

/**
 * @brief Moves the iterator to a state from strop_batch_iter_get_state(); a pending prefetch
 *        is discarded and the previously returned batch tensors become invalid.
 * @param[in,out] it       The iterator.
 * @param[in]     epoch    >= 0.
 * @param[in]     position In [0, dataset size].
 * @param[in]     seed     The seed's bit pattern, as read.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, epoch < 0, position outside [0, size]).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_set_state(strop_batch_iter *it,
                                                                  int64_t epoch, int64_t position,
                                                                  int64_t seed);

/** @brief Interpolation of strop_batch_iter_add_resize(). @since 0.1 */
typedef enum strop_resize_mode {
  STROP_RESIZE_NEAREST = 0,    /**< As PyTorch's F.interpolate(mode='nearest'). */
  STROP_RESIZE_BILINEAR = 1,   /**< As F.interpolate(mode='bilinear', align_corners=False). */
  STROP_RESIZE_BILINEAR_AA = 2 /**< As F.interpolate(mode='bilinear', align_corners=False,
                                    antialias=True): torchvision's Resize(antialias=True) on
                                    float tensors (docs/data.md says how it differs from PIL's
                                    resize). @since 0.2 */
} strop_resize_mode;

/**
 * @brief Appends a transform multiplying every input value by @p factor (1/255 for [0, 1]).
 *
 * Transforms run at batch time, on each sample, in the order they were added; they must all be
 * added before the first batch (later: STROP_E_STATE). Image transforms read inputs as (C, H, W)
 * for rank 3 and (H, W) for rank 2; other ranks are refused with STROP_E_SHAPE.
 * @param[in,out] it     The iterator.
 * @param[in]     factor A finite factor.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, non-finite factor); STROP_E_STATE;
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_scale(strop_batch_iter *it,
                                                                  float factor);

/**
 * @brief Appends (x - mean[c]) / std[c] per channel c.
 * @param[in,out] it       The iterator.
 * @param[in]     channels Number of channels of the input at this point of the pipeline (the
 *                         first dimension for rank 3, else 1).
 * @param[in]     mean     @p channels values (copied), or NULL with @p std NULL: then both
 *                         are computed now from every sample of the dataset passed through
 *                         the transforms added so far (random ones drawn from a fixed seed);
 *                         a constant channel gets std 1.
 * @param[in]     std      @p channels values > 0 (copied), or NULL with @p mean.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL iterator, one of mean and std NULL, a std <= 0
 *         or non-finite value); STROP_E_SHAPE (channel count differs); STROP_E_STATE;
 *         STROP_E_CALLBACK (computing the statistics); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_normalize(strop_batch_iter *it,
                                                                      int64_t channels,
                                                                      const float *mean,
                                                                      const float *std);

/**
 * @brief Appends a random horizontal flip (the last dimension reversed) with probability @p p.
 * @param[in,out] it The iterator.
 * @param[in]     p  Probability in [0, 1].
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, p outside [0, 1]); STROP_E_SHAPE (not an
 *         image); STROP_E_STATE; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_hflip(strop_batch_iter *it, float p);

/**
 * @brief Appends a random crop of @p height x @p width from the image zero-padded by
 *        @p padding on every side (torchvision's RandomCrop(size, padding)).
 * @param[in,out] it      The iterator.
 * @param[in]     height  >= 1.
 * @param[in]     width   >= 1.
 * @param[in]     padding 0 .. 2^20.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, sizes < 1, padding out of range);
 *         STROP_E_SHAPE (not an image, or a crop larger than the padded image); STROP_E_STATE;
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_random_crop(strop_batch_iter *it,
                                                                        int64_t height,
                                                                        int64_t width,
                                                                        int64_t padding);

/**
 * @brief Appends a resize of every image to @p height x @p width.
 * @param[in,out] it     The iterator.
 * @param[in]     height 1 .. 65536.
 * @param[in]     width  1 .. 65536.
 * @param[in]     mode   A ::strop_resize_mode.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, sizes out of range, unknown mode);
 *         STROP_E_SHAPE (not an image); STROP_E_STATE; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_resize(strop_batch_iter *it,
                                                                   int64_t height, int64_t width,
                                                                   int mode);

/**
 * @brief Appends torchvision's Resize(size) with an int size: the shorter side becomes
 * @p size and the longer int(size x longer / shorter), as torchvision computes it; when
 * @p max_size > 0 and the longer side would exceed it, both are scaled so it equals max_size.
 *
 * The output size follows each image's own size, so on images of several sizes a transform
 * that fixes the size (a centre crop, a resize to a fixed size) must follow it.
 * @param[in,out] it  The iterator, before its first batch.
 * @param[in] size     The shorter side, in [1, 65536].
 * @param[in] max_size 0 for no limit, else in (size, 65536].
 * @param[in] mode     A strop_resize_mode; STROP_RESIZE_BILINEAR_AA is torchvision's default
 *                     for Resize(antialias=True).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, sizes out of range, unknown mode);
 *         STROP_E_SHAPE (inputs not images of rank 2 or 3); STROP_E_STATE (after the first
 *         batch); STROP_E_NOMEM. On failure the iterator is unchanged.
 * One thread at a time per iterator. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_resize_shorter(strop_batch_iter *it,
                                                                           int64_t size,
                                                                           int64_t max_size,
                                                                           int mode);

/**
 * @brief Appends torchvision's CenterCrop((height, width)): the crop at offsets
 * round((H - height) / 2) and round((W - width) / 2) (Python's rounding, half to even); an
 * image smaller than the crop is zero-padded around its centre first, as torchvision pads it.
 * @param[in,out] it The iterator, before its first batch.
 * @param[in] height, width The crop, each in [1, 65536].
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_SHAPE (not images); STROP_E_STATE;
 *         STROP_E_NOMEM. On failure the iterator is unchanged. One thread at a time per
 *         iterator. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_center_crop(strop_batch_iter *it,
                                                                        int64_t height,
                                                                        int64_t width);

/**
 * @brief Appends torchvision's RandomResizedCrop((height, width), scale, ratio): a region of
 * a random share of the area in [scale_min, scale_max] and an aspect ratio whose logarithm is
 * uniform in [log ratio_min, log ratio_max] (ten tries, then the central crop of the nearest
 * allowed ratio — torchvision's rule), resized to @p height x @p width.
 *
 * The draws come from the iterator's (seed, epoch, position), so they are resumable and do
 * not depend on the number of workers; they are not torch's random numbers.
 * @param[in,out] it The iterator, before its first batch.
 * @param[in] height, width Output size, each in [1, 65536].
 * @param[in] scale_min, scale_max 0 < scale_min <= scale_max <= 1 (torchvision: 0.08, 1).
 * @param[in] ratio_min, ratio_max 0 < ratio_min <= ratio_max (torchvision: 3/4, 4/3).
 * @param[in] mode A strop_resize_mode.
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_SHAPE (not images); STROP_E_STATE;
 *         STROP_E_NOMEM. On failure the iterator is unchanged. One thread at a time per
 *         iterator. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_random_resized_crop(
    strop_batch_iter *it, int64_t height, int64_t width, float scale_min, float scale_max,
    float ratio_min, float ratio_max, int mode);

/**
 * @brief Appends torchvision's ColorJitter(brightness, contrast, saturation, hue) for float
 * images in [0, 1] (add it after a scale of 1/255): a random order of the four adjustments,
 * each with a factor uniform in [max(0, 1 - v), 1 + v] ([-hue, hue] for the hue), and every
 * result clamped to [0, 1] as torchvision clamps it. Saturation and hue leave a 1-channel
 * image unchanged, as torchvision does. A value of 0 turns its adjustment off.
 * @param[in,out] it The iterator, before its first batch; inputs of 1 or 3 channels.
 * @param[in] brightness, contrast, saturation >= 0 and finite.
 * @param[in] hue In [0, 0.5].
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_SHAPE (not images of 1 or 3 channels);
 *         STROP_E_STATE; STROP_E_NOMEM. On failure the iterator is unchanged. One thread at a
 *         time per iterator. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_color_jitter(
    strop_batch_iter *it, float brightness, float contrast, float saturation, float hue);

/**
 * @brief Sets the number of prefetch threads that prepare the next batch (decoding files,
 * running the transforms), each taking the batch's samples one at a time. The batches are the
 * same whatever the number.
 * @param[in,out] it The iterator, created with STROP_ITER_PREFETCH (needed above 1), before
 *                its first batch.
 * @param[in] workers In [1, 64]; default 1.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, out of range); STROP_E_STATE (after the first
 *         batch, or more than 1 without STROP_ITER_PREFETCH). On failure the iterator is
 *         unchanged. One thread at a time per iterator. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_set_workers(strop_batch_iter *it,
                                                                    int workers);

/**
 * @brief Stops the worker thread, frees the iterator and drops its dataset reference.
 * @param[in] it The iterator, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_batch_iter_free(strop_batch_iter *it);

STROP_END_DECLS

#endif
