/* strop — datasets: sources (memory, callback, IDX, CSV, NPY, text), task shaping (class
 * filter, few-shot, splits, one-hot) and the seeded, resumable, prefetching batch iterator. */
#ifndef STROP_DATA_H
#define STROP_DATA_H

#include "common.h"
#include "error.h"
#include "tensor.h"

/** @file data.h
 *  @brief Datasets, splits, batch iteration and transforms. @since 0.1
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
 */

STROP_BEGIN_DECLS

/** @brief An immutable set of (input, target) samples; see the file overview. @since 0.1 */
typedef struct strop_dataset strop_dataset;

/** @brief A batch iterator over a dataset; see strop_batch_iter_create(). @since 0.1 */
typedef struct strop_batch_iter strop_batch_iter;

/** @brief A token vocabulary for text datasets; see strop_vocab_build(). @since 0.1 */
typedef struct strop_vocab strop_vocab;

/** Passed as @c num_classes: classification with (largest label + 1) classes. @since 0.1 */
#define STROP_CLASSES_INFER (-1)

/* ------------------------------------------------------------------------------------------ */
/* Sources                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief Creates a dataset holding a copy of the host's arrays.
 *
 * @param inputs      @p n samples of @p in_dims each, row-major, one after another. Copied.
 * @param targets     For classification, @p n class indices stored as floats; for regression,
 *                    @p n samples of @p tgt_dims each. Copied.
 * @param n           Number of samples, >= 1.
 * @param in_rank     Rank of one input, 1..STROP_MAX_RANK.
 * @param in_dims     @p in_rank sizes, each > 0.
 * @param tgt_rank    0 for classification (one class index per sample; @p tgt_dims may be
 *                    NULL); 1..STROP_MAX_RANK for regression.
 * @param tgt_dims    @p tgt_rank sizes for regression.
 * @param num_classes > 0: classification, every label must be an integer in [0, num_classes);
 *                    STROP_CLASSES_INFER: classification with (largest label + 1) classes;
 *                    0: regression.
 * @param[out] out    The new dataset, owned by the caller; NULL on failure.
 * @return STROP_OK; STROP_E_INVALID_ARG for NULL pointers, bad ranks/sizes, or a label that is
 *         not an integer in range (the message names the sample and the value);
 *         STROP_E_SHAPE on size overflow; STROP_E_NOMEM.
 * Thread-safe (no shared state). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_from_memory(
    const float *inputs, const float *targets, int64_t n, int in_rank, const int64_t *in_dims,
    int tgt_rank, const int64_t *tgt_dims, int64_t num_classes, strop_dataset **out);

/** @brief Releases host buffers lent to strop_dataset_wrap(). @since 0.1 */
typedef void (*strop_release_fn)(void *user_data);

/**
 * @brief Creates a dataset that borrows the host's arrays without copying.
 *
 * Arguments as strop_dataset_from_memory(). The arrays must stay valid and unchanged until
 * @p release is called, which happens once, when the last handle that shares them (the dataset,
 * its views, iterators over them) is freed. @p release may be NULL. On failure @p release is not
 * called and the buffers stay the caller's. Labels are validated once, here.
 * @return As strop_dataset_from_memory(). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_wrap(
    const float *inputs, const float *targets, int64_t n, int in_rank, const int64_t *in_dims,
    int tgt_rank, const int64_t *tgt_dims, int64_t num_classes, strop_release_fn release,
    void *user_data, strop_dataset **out);

/**
 * @brief Host callback that writes sample @p index into the given buffers.
 * @param index       0..n-1.
 * @param input       Room for one input (the element count of the input shape).
 * @param target      Room for one target (1 float for classification: the class index).
 * @param message     A buffer of @p message_cap bytes (NUL-terminated, empty on entry) where the
 *                    host may write why it failed.
 * @param message_cap Capacity of @p message, >= 256.
 * @param user_data   As given at creation.
 * @return 0 on success; anything else stops the read (the epoch, for an iterator) with
 *         STROP_E_CALLBACK and the host's message in strop_last_error().
 * It may be called on an iterator's prefetch worker thread, never concurrently for one iterator.
 */
typedef int (*strop_dataset_fill_fn)(int64_t index, float *input, float *target, char *message,
                                     size_t message_cap, void *user_data);

/**
 * @brief Creates a dataset whose samples the host produces on demand.
 *
 * Shape arguments as strop_dataset_from_memory(); @p num_classes must be 0 or > 0 here
 * (STROP_CLASSES_INFER is refused: nothing is read up front). Class-based operations (class
 * counts, filters, few-shot, stratified splits) call @p fill for every sample to learn labels.
 * @param n    Number of samples, >= 1.
 * @param fill The callback; @p user_data is passed back to it and never dereferenced.
 * @return STROP_OK, STROP_E_INVALID_ARG, STROP_E_NOMEM. @since 0.1
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
 * @param images_path Path of the images file.
 * @param labels_path Path of the labels file: rank 1, integer type, N entries.
 * @param num_classes As in strop_dataset_from_memory(); > 0 makes a label >= num_classes an
 *                    error. For Fashion-MNIST pass 10 (or STROP_CLASSES_INFER).
 * @param[out] out    The new dataset, owned by the caller.
 * @return STROP_OK; STROP_E_IO (cannot open/read; gzip stream broken); STROP_E_FORMAT (bad
 *         magic, unknown type, truncated or oversized payload, count mismatch between the files,
 *         a label out of range) — the message names the file and the values;
 *         STROP_E_INVALID_ARG; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_idx(const char *images_path,
                                                              const char *labels_path,
                                                              int64_t num_classes,
                                                              strop_dataset **out);

/** How the label column of a CSV file is read. @since 0.1 */
typedef enum strop_csv_label_mode {
  STROP_CSV_LABEL_INDEX = 0,       /**< Integer class indices (sklearn's files). */
  STROP_CSV_LABEL_NAMES = 1,       /**< Strings, numbered in order of first appearance. */
  STROP_CSV_LABEL_NAMES_SORTED = 2, /**< Strings, numbered in byte-wise sorted order. */
  STROP_CSV_LABEL_REGRESSION = 3   /**< A number: the target is shape (1). */
} strop_csv_label_mode;

/**
 * @brief Options of strop_dataset_load_csv(). Fill with strop_csv_options_init(), then change
 * fields; fields are only ever appended. @since 0.1
 */
typedef struct strop_csv_options {
  size_t size;              /**< sizeof(strop_csv_options), set by the init function. */
  int delimiter;            /**< Field separator byte, default ','. ' ' splits on runs of
                                 blanks and tabs. */
  int header;               /**< 1: the first line (after skipped ones) names the columns. */
  int64_t skip_lines;       /**< Lines ignored at the top, default 0. */
  int sklearn_header;       /**< 1: the first line is sklearn's `n_samples,n_features,class
                                 names...`: checked against the data and its names become the
                                 class names. Default 0. */
  int64_t label_column;     /**< Column index of the label; negative counts from the end.
                                 Default -1 (last). */
  const char *label_name;   /**< When non-NULL, the label column by header name (needs
                                 header = 1); overrides label_column. Default NULL. */
  int label_mode;           /**< A strop_csv_label_mode, default STROP_CSV_LABEL_INDEX. */
  int64_t num_classes;      /**< For STROP_CSV_LABEL_INDEX: as in strop_dataset_from_memory();
                                 default STROP_CLASSES_INFER. */
} strop_csv_options;

/** @brief Fills @p opt with the defaults listed in strop_csv_options. NULL is a no-op.
 *  @since 0.1 */
STROP_API void strop_csv_options_init(strop_csv_options *opt);

/**
 * @brief Loads a CSV table: every column but the label is a numeric feature.
 *
 * gzip-compressed files are detected by their magic bytes. Blank lines are skipped; fields may
 * be double-quoted; spaces around fields are ignored; CRLF line ends are accepted.
 * @param path Path of the file.
 * @param opt  Options, or NULL for the defaults.
 * @param[out] out The new dataset (inputs of shape (features)), owned by the caller.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT for a ragged row, an empty, non-numeric or
 *         non-finite cell, a bad label or a header mismatch (the message names file, line and
 *         column); STROP_E_NOT_FOUND for an unknown label_name; STROP_E_INVALID_ARG;
 *         STROP_E_NOMEM. @since 0.1
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
 * @param x_path      Inputs file.
 * @param y_path      Targets file, first dimension N. For classification it holds N integer
 *                    labels (shape (N) or (N, 1)); for regression (@p num_classes 0) targets
 *                    are shape dims[1:] ((1) for rank 1).
 * @param num_classes As in strop_dataset_from_memory().
 * @param[out] out    The new dataset, owned by the caller.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT (bad magic, bad header, truncated data, count
 *         mismatch, bad labels); STROP_E_UNSUPPORTED (big-endian or other dtypes, object
 *         arrays); STROP_E_INVALID_ARG; STROP_E_NOMEM. @since 0.1
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
 *         format version); STROP_E_NOMEM.
 * Thread safety: touches no shared state; call it from any thread. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_tensor_load_npy(const char *path,
                                                             strop_tensor **out);

/* ------------------------------------------------------------------------------------------ */
/* Images                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/** Default of strop_image_options.max_pixels: PIL's decompression-bomb limit (89,478,485
 *  pixels, about 9459 x 9459). @since 0.2 */
#define STROP_IMAGE_MAX_PIXELS ((int64_t)89478485)

/**
 * @brief Options of strop_dataset_load_images(). Fill with strop_image_options_init(), then
 * change fields; fields are only ever appended. @since 0.2
 */
typedef struct strop_image_options {
  size_t size;          /**< sizeof(strop_image_options), set by the init function. */
  int channels;         /**< Channels of every sample: 3 (RGB, default), 1 (greyscale, PIL's
                             luma L = (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point) or
                             4 (RGBA). Files are converted as PIL's Image.convert() does:
                             greyscale replicated, alpha dropped or 255, a palette expanded
                             (its transparency becomes alpha). */
  int skip_bad;         /**< 0 (default): a file that cannot be read is an error naming it.
                             1: such files are left out at load and listed by
                             strop_dataset_skipped(). */
  int64_t max_pixels;   /**< Width x height above which a file is refused before anything is
                             allocated for its pixels (decompression bombs); default
                             STROP_IMAGE_MAX_PIXELS, at most 2^34. */
  size_t cache_bytes;   /**< Decoded pixels (1 byte per channel) kept in memory, up to this
                             many bytes, so later epochs skip decoding; default 0 (none). */
} strop_image_options;

/** @brief Fills @p opt with the defaults listed in strop_image_options. NULL is a no-op.
 *  @since 0.2 */
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
 * @brief Number of files strop_dataset_load_images() skipped (skip_bad), 0 for datasets of
 * other sources, -1 for NULL. Views report their source's count. @since 0.2
 */
STROP_API int64_t strop_dataset_skipped_count(const strop_dataset *ds);

/**
 * @brief Why skipped file @p i was left out: the error sentence naming the file, snprintf
 * style into @p buf (always NUL-terminated when @p cap > 0; may be NULL when @p cap is 0).
 * @return The sentence's length without the NUL, or -1 for NULL or @p i out of range.
 * Reads only @p ds. @since 0.2
 */
STROP_API int strop_dataset_skipped(const strop_dataset *ds, int64_t i, char *buf, size_t cap);

/**
 * @brief The file of sample @p index of an image dataset (or a view of one), snprintf style.
 * @return The path's length without the NUL, or -1 for NULL, an index out of range or a
 *         dataset of another source. Reads only @p ds. @since 0.2
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

/** Tokenisation of text. @since 0.1 */
typedef enum strop_token_mode {
  STROP_TOKENS_BYTES = 0, /**< One token per byte; the vocabulary is always the 256 bytes. */
  STROP_TOKENS_CHARS = 1  /**< One token per UTF-8 character (invalid bytes read as U+FFFD);
                               token 0 is `<unk>` for characters outside the vocabulary. */
} strop_token_mode;

/**
 * @brief Builds a vocabulary from text files.
 * @param paths  @p count file paths (UTF-8 text; gzip accepted).
 * @param count  Number of paths, >= 1 (for STROP_TOKENS_BYTES the files are not read).
 * @param mode   A strop_token_mode.
 * @param[out] out The vocabulary (characters sorted by code point after `<unk>`), owned by the
 *             caller; free with strop_vocab_free().
 * @return STROP_OK, STROP_E_IO, STROP_E_INVALID_ARG, STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_build(const char *const *paths, int64_t count,
                                                         int mode, strop_vocab **out);

/**
 * @brief Loads a vocabulary written by strop_vocab_save().
 * @return STROP_OK, STROP_E_IO, STROP_E_FORMAT (names the line), STROP_E_INVALID_ARG,
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_load(const char *path, strop_vocab **out);

/**
 * @brief Saves the vocabulary as text: a line `strop-vocab 1 <bytes|chars> <size>`, then one
 * token per line (`<unk>` or `U+XXXX`). Written to a temporary file and renamed.
 * @return STROP_OK, STROP_E_IO, STROP_E_INVALID_ARG. Reads only @p vocab. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_save(const strop_vocab *vocab,
                                                        const char *path);

/** @brief Number of tokens, or -1 for NULL. @since 0.1 */
STROP_API int64_t strop_vocab_size(const strop_vocab *vocab);

/**
 * @brief Turns UTF-8 text into token ids.
 * @param text  @p len bytes.
 * @param ids   Room for @p cap ids; may be NULL when @p cap is 0.
 * @param[out] count The number of tokens of the text (may exceed @p cap: then only @p cap were
 *             written).
 * @return STROP_OK or STROP_E_INVALID_ARG. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_vocab_encode(const strop_vocab *vocab,
                                                          const char *text, size_t len,
                                                          int64_t *ids, int64_t cap,
                                                          int64_t *count);

/**
 * @brief Turns token ids back into UTF-8 text (`<unk>` becomes U+FFFD), snprintf style.
 * @param buf A buffer of @p cap bytes, always NUL-terminated when @p cap > 0; may be NULL when
 *            @p cap is 0.
 * @return The length the full text needs (without the NUL), or -1 for NULL arguments or an id
 *         out of range (strop_last_error() says which). @since 0.1
 */
STROP_API int64_t strop_vocab_decode(const strop_vocab *vocab, const int64_t *ids, int64_t n,
                                     char *buf, size_t cap);

/** @brief Frees the vocabulary; NULL is a no-op. Datasets built with it keep no pointer to it.
 *  @since 0.1 */
STROP_API void strop_vocab_free(strop_vocab *vocab);

/**
 * @brief A language-modelling dataset from one text file.
 *
 * The file becomes token ids t[0..T); sample i has input t[s..s+L) and target t[s+1..s+L+1)
 * with s = i * @p stride, both stored as float ids of shape (L). num_classes is the vocabulary
 * size.
 * @param path    A UTF-8 text file (gzip accepted).
 * @param vocab   The vocabulary (read only; not retained).
 * @param seq_len L, >= 1.
 * @param stride  Offset between samples, >= 1 (L for non-overlapping windows).
 * @param[out] out The dataset, owned by the caller.
 * @return STROP_OK; STROP_E_IO; STROP_E_FORMAT when the text has fewer than L + 1 tokens;
 *         STROP_E_INVALID_ARG; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_text(const char *path,
                                                               const strop_vocab *vocab,
                                                               int64_t seq_len, int64_t stride,
                                                               strop_dataset **out);

/**
 * @brief A text-classification dataset: each file is cut into windows of L tokens (every
 * @p stride tokens; a file shorter than L gives one window padded with token 0), each labelled
 * with its file's class.
 * @param paths   @p count files.
 * @param labels  @p count class indices, >= 0; num_classes is the largest + 1.
 * @param count   >= 1.
 * @param vocab, seq_len, stride As strop_dataset_load_text().
 * @return STROP_OK, STROP_E_IO, STROP_E_FORMAT (an empty file), STROP_E_INVALID_ARG,
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_load_text_classes(
    const char *const *paths, const int64_t *labels, int64_t count, const strop_vocab *vocab,
    int64_t seq_len, int64_t stride, strop_dataset **out);

/**
 * @brief Gives the samples of a dataset padding masks: which positions of each sample's
 *        sequence are tokens (1) and which are padding (0), Hugging Face's attention_mask.
 *
 * Batches of the dataset (and of every view made from it: splits, subsets, few-shot
 * selections) then carry their rows' masks (strop_batch_iter_mask()), which strop_trainer_fit()
 * and strop_trainer_eval() pass to the model as strop_trainer_step_masked() does. Set them
 * before making iterators over the dataset or its views.
 * @param ds    A dataset made by a source (not a view); changed.
 * @param mask  n x T values, 0 or 1, T the first dimension of a sample's input shape (its
 *              sequence); copied. NULL removes the masks.
 * @param count The number of values at @p mask: n x T.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL @p ds, a view, a value other than 0 or 1,
 *         naming the sample and position); STROP_E_SHAPE (@p count is not n x T, naming
 *         both); STROP_E_NOMEM. On error the dataset is unchanged. Not thread-safe for the
 *         dataset and its views. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_set_mask(strop_dataset *ds, const float *mask,
                                                              size_t count);

/** @brief 1 when the dataset's samples carry padding masks (strop_dataset_set_mask()), 0
 *  otherwise or for NULL. Thread-safe. @since 0.2 */
STROP_API int strop_dataset_has_mask(const strop_dataset *ds);

/* ------------------------------------------------------------------------------------------ */
/* Accessors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/** @brief Number of samples (may be 0 for a view), or -1 for NULL. Thread-safe. @since 0.1 */
STROP_API int64_t strop_dataset_size(const strop_dataset *ds);

/**
 * @brief Copies the per-sample input shape into @p dims (up to @p cap entries).
 * @return The rank (may exceed @p cap), or -1 for NULL. @since 0.1
 */
STROP_API int strop_dataset_input_shape(const strop_dataset *ds, int64_t *dims, int cap);

/**
 * @brief Copies the per-sample target shape into @p dims (up to @p cap entries).
 * @return The rank: 0 for a class index, or -1 for NULL. @since 0.1
 */
STROP_API int strop_dataset_target_shape(const strop_dataset *ds, int64_t *dims, int cap);

/**
 * @brief Copies the input shape of sample @p index into @p dims (up to @p cap entries): the
 * dataset's input shape, except for images that differ in size, where it is that image's
 * (C, H, W).
 * @return The rank (may exceed @p cap), or -1 for NULL or an index out of range.
 * Reads only @p ds. @since 0.2
 */
STROP_API int strop_dataset_sample_shape(const strop_dataset *ds, int64_t index, int64_t *dims,
                                         int cap);

/**
 * @brief 1 when the samples differ in shape (images of several sizes: the input shape is then
 * a bound, see strop_dataset_load_images()), 0 when they all have the input shape, -1 for
 * NULL. @since 0.2
 */
STROP_API int strop_dataset_varies(const strop_dataset *ds);

/** @brief Number of classes; 0 for regression; -1 for NULL. @since 0.1 */
STROP_API int64_t strop_dataset_num_classes(const strop_dataset *ds);

/**
 * @brief The name of class @p cls (CSV label strings, sklearn class names), snprintf style.
 * @return The length of the name (without the NUL), or -1 when the class has no name or @p cls
 *         is out of range. @since 0.1
 */
STROP_API int strop_dataset_class_name(const strop_dataset *ds, int64_t cls, char *buf,
                                       size_t cap);

/**
 * @brief Reads sample @p index into the caller's buffers.
 * @param input  Room for @p input_cap floats (>= the input element count; for images that
 *               differ in size, >= this sample's, see strop_dataset_sample_shape()), or NULL.
 * @param target Room for @p target_cap floats (>= the target element count), or NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (index out of range, capacity too small);
 *         STROP_E_CALLBACK (the host's fill callback failed; its message is included).
 * Thread-safe for datasets without a callback. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_get(const strop_dataset *ds, int64_t index,
                                                         float *input, size_t input_cap,
                                                         float *target, size_t target_cap);

/**
 * @brief Counts samples per class into @p counts[0..num_classes).
 * @param cap Capacity of @p counts, >= num_classes.
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_UNSUPPORTED for a dataset whose target is
 *         not one class index; STROP_E_CALLBACK; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_class_counts(const strop_dataset *ds,
                                                                  int64_t *counts, int64_t cap);

/**
 * @brief Drops a reference. The storage is released (and a wrap's release callback called)
 * when the last dataset, view or iterator sharing it is freed. NULL is a no-op. @since 0.1
 */
STROP_API void strop_dataset_free(strop_dataset *ds);

/* ------------------------------------------------------------------------------------------ */
/* Shaping the task: views sharing the source's storage                                         */
/* ------------------------------------------------------------------------------------------ */

/**
 * @brief A view of the samples at @p indices, in that order (repeats allowed).
 * @return STROP_OK, STROP_E_INVALID_ARG (index out of range: names its position),
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_subset(const strop_dataset *ds,
                                                            const int64_t *indices,
                                                            int64_t count, strop_dataset **out);

/**
 * @brief Keeps the samples of the listed classes and renumbers them: class @p classes[i]
 * becomes class i (e.g. {5,6,7,8,9} keeps classes 5–9 as 0–4). Order of samples is kept.
 * @param classes @p count distinct class indices, each in [0, num_classes).
 * @return STROP_OK; STROP_E_INVALID_ARG (a class out of range or repeated);
 *         STROP_E_UNSUPPORTED (not a classification dataset); STROP_E_CALLBACK; STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_filter_classes(const strop_dataset *ds,
                                                                    const int64_t *classes,
                                                                    int64_t count,
                                                                    strop_dataset **out);

/**
 * @brief A few-shot subset: exactly @p k samples of every class, drawn at random with
 * @p seed (same seed, same subset), kept in the source's order.
 * @return STROP_OK; STROP_E_INVALID_ARG (k < 1, or a class with fewer than k samples: the
 *         message names it); STROP_E_UNSUPPORTED; STROP_E_CALLBACK; STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_few_shot(const strop_dataset *ds, int64_t k,
                                                              uint64_t seed,
                                                              strop_dataset **out);

/** Flags of strop_dataset_split(). @since 0.1 */
#define STROP_SPLIT_STRATIFIED 1 /**< Split every class in the same proportions. */

/**
 * @brief Splits into train / validation / test views, disjoint and together covering the set.
 *
 * Sizes are round(n * train_frac) and round(n * val_frac); test gets the rest. With
 * STROP_SPLIT_STRATIFIED the rounding is per class, so each class's share in each part is within
 * one sample of its exact proportion. Membership is random from @p seed; each part keeps the
 * source's order.
 * @param train_frac, val_frac In [0, 1], summing to at most 1.
 * @param flags 0 or STROP_SPLIT_STRATIFIED (classification datasets only).
 * @param[out] train, val, test The parts, owned by the caller; any may be NULL to not receive
 *             that part. Parts may be empty (size 0). All NULL on failure.
 * @return STROP_OK, STROP_E_INVALID_ARG, STROP_E_UNSUPPORTED, STROP_E_CALLBACK, STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_split(const strop_dataset *ds,
                                                           float train_frac, float val_frac,
                                                           uint64_t seed, int flags,
                                                           strop_dataset **train,
                                                           strop_dataset **val,
                                                           strop_dataset **test);

/**
 * @brief A view whose targets are one-hot: every class-index target value becomes
 * num_classes floats (shape target_shape + (num_classes)).
 * @return STROP_OK, STROP_E_UNSUPPORTED (regression or already one-hot), STROP_E_INVALID_ARG,
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_one_hot(const strop_dataset *ds,
                                                             strop_dataset **out);

/**
 * @brief A view with another per-sample input shape of the same element count (e.g. sklearn
 * digits' 64 features as (1, 8, 8)).
 * @return STROP_OK, STROP_E_SHAPE (counts differ), STROP_E_INVALID_ARG, STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_reshape(const strop_dataset *ds, int rank,
                                                             const int64_t *dims,
                                                             strop_dataset **out);

/**
 * @brief Per-channel mean and (population) standard deviation of the inputs, in double
 * precision. The channel is the first input dimension for inputs of rank 3 (C, H, W); inputs
 * of other ranks have one channel.
 * @param scale Every value is multiplied by @p scale first (e.g. 1/255), 1 for none.
 * @param mean, std Room for @p cap floats each.
 * @param[out] channels The number of channels (may exceed @p cap: then only @p cap written).
 * @return STROP_OK, STROP_E_INVALID_ARG (empty dataset), STROP_E_CALLBACK. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_dataset_channel_stats(const strop_dataset *ds,
                                                                   float scale, float *mean,
                                                                   float *std, int64_t cap,
                                                                   int64_t *channels);

/* ------------------------------------------------------------------------------------------ */
/* Batch iteration                                                                              */
/* ------------------------------------------------------------------------------------------ */

/** Flags of strop_batch_iter_create(). @since 0.1 */
#define STROP_ITER_SHUFFLE 1   /**< A new random order every epoch, a pure function of
                                    (seed, epoch). */
#define STROP_ITER_DROP_LAST 2 /**< Skip the last, partial batch of each epoch. */
#define STROP_ITER_PREFETCH 4  /**< Prepare the next batch on a worker thread. */

/**
 * @brief Creates an iterator that yields batches of @p batch_size samples, epoch after epoch.
 *
 * Epoch e visits every sample once, in index order or (STROP_ITER_SHUFFLE) in a permutation
 * drawn from (@p seed, e) alone, so a run resumed from strop_batch_iter_get_state() sees exactly
 * the batches it would have seen. Random transforms draw from (seed, epoch, position) too. The
 * iterator keeps @p ds alive.
 * @param ds         The dataset.
 * @param batch_size >= 1.
 * @param seed       Seed of the shuffling and of random transforms.
 * @param flags      STROP_ITER_SHUFFLE | STROP_ITER_DROP_LAST | STROP_ITER_PREFETCH, or 0.
 * @param[out] out   The iterator, owned by the caller; free with strop_batch_iter_free().
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, batch_size < 1, unknown flags, drop_last with a
 *         dataset smaller than one batch, an empty dataset); STROP_E_SHAPE (sample rank 8
 *         leaves no room for the batch axis); STROP_E_NOMEM.
 * Buffers and the worker thread are set up by the first strop_batch_iter_next(). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_create(strop_dataset *ds,
                                                               int64_t batch_size, uint64_t seed,
                                                               int flags,
                                                               strop_batch_iter **out);

/**
 * @brief The next batch of the current epoch.
 *
 * @param[out] inputs  A borrowed tensor (rows, input shape after transforms), or NULL at the
 *                     end of an epoch. It belongs to the iterator and stays valid and
 *                     unchanged until the next call of next, set_state or free on @p it.
 * @param[out] targets A borrowed tensor (rows) of class indices, or (rows, target shape), or
 *                     NULL at the end of an epoch; same lifetime.
 * @param[out] rows    Samples in the batch: @p batch_size, fewer for the last batch of an
 *                     epoch, or 0 when the epoch has ended — the call after that begins the
 *                     next epoch. Any of the three may be NULL.
 * @return STROP_OK; STROP_E_CALLBACK (a host fill callback failed: the batch is not consumed,
 *         so calling again retries it); STROP_E_INVALID_ARG; STROP_E_NOMEM or
 *         STROP_E_INTERNAL (worker thread cannot start) on the first call. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_next(strop_batch_iter *it,
                                                             strop_tensor **inputs,
                                                             strop_tensor **targets,
                                                             int64_t *rows);

/**
 * @brief The padding mask of the batch strop_batch_iter_next() last returned, when the
 *        dataset carries masks (strop_dataset_set_mask()).
 * @param it The iterator; only read.
 * @return A borrowed tensor [rows, T] of 1 (token) and 0 (padding), with the same lifetime as
 *         the batch's inputs; NULL when the dataset has no masks, before the first batch, at
 *         the end of an epoch, or for NULL. Not thread-safe for one iterator. @since 0.2
 */
STROP_API const strop_tensor *strop_batch_iter_mask(const strop_batch_iter *it);

/** @brief Batches per epoch (with drop_last taken into account), or -1 for NULL. @since 0.1 */
STROP_API int64_t strop_batch_iter_num_batches(const strop_batch_iter *it);

/**
 * @brief Per-sample input shape of the batches (after resize and crop transforms); height and
 * width are 0 while the transforms added so far leave images of several sizes.
 * @return The rank (may exceed @p cap), or -1 for NULL. @since 0.1
 */
STROP_API int strop_batch_iter_input_shape(const strop_batch_iter *it, int64_t *dims, int cap);

/**
 * @brief The iterator's position, for a checkpoint: the epoch, the samples of it already
 * returned, and the seed (bit pattern of the uint64 seed).
 * @return STROP_OK or STROP_E_INVALID_ARG. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_get_state(const strop_batch_iter *it,
                                                                  int64_t *epoch,
                                                                  int64_t *position,
                                                                  int64_t *seed);

/**
 * @brief Moves the iterator to a state from strop_batch_iter_get_state(); a pending prefetch
 * is discarded and the previously returned batch tensors become invalid.
 * @return STROP_OK; STROP_E_INVALID_ARG (epoch < 0, position outside [0, size]). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_set_state(strop_batch_iter *it,
                                                                  int64_t epoch,
                                                                  int64_t position,
                                                                  int64_t seed);

/** Interpolation of strop_batch_iter_add_resize(). @since 0.1 */
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
 * @return STROP_OK, STROP_E_INVALID_ARG (NULL, non-finite factor), STROP_E_STATE,
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_scale(strop_batch_iter *it,
                                                                  float factor);

/**
 * @brief Appends (x - mean[c]) / std[c] per channel c.
 * @param channels Number of channels of the input at this point of the pipeline (the first
 *                 dimension for rank 3, else 1).
 * @param mean, std @p channels values each; std > 0. Both NULL: computed now from every sample
 *                 of the dataset passed through the transforms added so far (random ones drawn
 *                 from a fixed seed); a constant channel gets std 1.
 * @return STROP_OK, STROP_E_INVALID_ARG, STROP_E_SHAPE (channel count differs), STROP_E_STATE,
 *         STROP_E_CALLBACK, STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_normalize(strop_batch_iter *it,
                                                                      int64_t channels,
                                                                      const float *mean,
                                                                      const float *std);

/**
 * @brief Appends a random horizontal flip (the last dimension reversed) with probability @p p.
 * @return STROP_OK, STROP_E_INVALID_ARG (p outside [0, 1]), STROP_E_SHAPE, STROP_E_STATE,
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_hflip(strop_batch_iter *it, float p);

/**
 * @brief Appends a random crop of @p height x @p width from the image zero-padded by
 * @p padding on every side (torchvision's RandomCrop(size, padding)).
 * @return STROP_OK, STROP_E_INVALID_ARG (sizes < 1, padding < 0), STROP_E_SHAPE (crop larger
 *         than the padded image), STROP_E_STATE, STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_random_crop(strop_batch_iter *it,
                                                                        int64_t height,
                                                                        int64_t width,
                                                                        int64_t padding);

/**
 * @brief Appends a resize of every image to @p height x @p width.
 * @param mode A strop_resize_mode.
 * @return STROP_OK, STROP_E_INVALID_ARG, STROP_E_SHAPE, STROP_E_STATE, STROP_E_NOMEM.
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
STROP_API STROP_NODISCARD strop_status strop_batch_iter_add_color_jitter(strop_batch_iter *it,
                                                                         float brightness,
                                                                         float contrast,
                                                                         float saturation,
                                                                         float hue);

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

/** @brief Stops the worker thread, frees the iterator and drops its dataset reference.
 *  NULL is a no-op. @since 0.1 */
STROP_API void strop_batch_iter_free(strop_batch_iter *it);

STROP_END_DECLS

#endif
