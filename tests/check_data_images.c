/* SPDX-License-Identifier: MIT */
/* strop tests — image folders and torchvision's transforms: the JPEG/PNG wrappers against PIL,
 * the folder order against ImageFolder, each transform against torchvision (fixtures written at
 * test time by tests/images/gen_images.py into $STROP_IMG_FIXTURES; without it those tests
 * pass as skipped), and the error paths of every new function. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_impl.h"
#include "io/json.h"
#include "ops/resize.h"
#include "testutil.h"

static const char *fix(void) { return getenv("STROP_IMG_FIXTURES"); }

#define NEED_FIXTURES()                                                                    \
  do {                                                                                     \
    if (!fix()) {                                                                          \
      fprintf(stderr, "%s: skipped (run through tests/images/run_images.py)\n", __func__); \
      return;                                                                              \
    }                                                                                      \
  } while (0)

static char g_tmp[256];

static const char *tmpdir(void) {
  if (!g_tmp[0]) strop_test_tmpdir("img", g_tmp, sizeof g_tmp);
  return g_tmp;
}

static char *pathf(char *buf, size_t cap, const char *a, const char *b) {
  snprintf(buf, cap, "%s/%s", a, b);
  return buf;
}

static void put(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

static strop_tensor *npy(const char *dir, const char *name) {
  char p[2048];
  strop_tensor *t = NULL;
  snprintf(p, sizeof p, "%s/%s", dir, name);
  strop_test_must(strop_tensor_load_npy(p, &t), p);
  return t;
}

static uint8_t *slurp(const char *path, size_t *len) {
  char *b = strop_test_read_file(path, len);
  ck_assert_msg(b != NULL, "cannot read %s", path);
  return (uint8_t *)b;
}

/* ------------------------------------------------------------------ decoding ---- */

START_TEST(decode_equals_pil) {
  NEED_FIXTURES();
  char dir[512], list[600];
  pathf(dir, sizeof dir, fix(), "decode");
  size_t ll;
  char *cases = strop_test_read_file(pathf(list, sizeof list, dir, "cases.txt"), &ll);
  ck_assert_ptr_nonnull(cases);
  int files = 0;
  for (char *name = strtok(cases, "\n"); name; name = strtok(NULL, "\n")) {
    char p[1024];
    size_t len;
    uint8_t *buf = slurp(pathf(p, sizeof p, dir, name), &len);
    const char *modes[3] = {"L", "RGB", "RGBA"};
    const int ch[3] = {1, 3, 4};
    for (int m = 0; m < 3; m++) {
      uint8_t *px = NULL;
      strop__image_info info;
      strop_test_must(
          strop__image_decode("t", buf, len, name, ch[m], STROP_IMAGE_MAX_PIXELS, &px, &info),
          name);
      char rn[700];
      snprintf(rn, sizeof rn, "%s.%s.npy", name, modes[m]);
      strop_tensor *ref = npy(dir, rn);
      int64_t d[4];
      ck_assert_int_eq(strop_tensor_shape(ref, d, 4), 3);
      ck_assert_int_eq(d[0], info.height);
      ck_assert_int_eq(d[1], info.width);
      ck_assert_int_eq(d[2], ch[m]);
      const float *r = strop_tensor_data(ref);
      size_t n = (size_t)(d[0] * d[1] * d[2]), bad = 0;
      for (size_t k = 0; k < n; k++) bad += (float)px[k] != r[k];
      ck_assert_msg(bad == 0, "%s as %s: %zu of %zu bytes differ from PIL's", name, modes[m], bad,
                    n);
      strop_tensor_free(ref);
      strop__free(px);
    }
    free(buf);
    files++;
  }
  free(cases);
  ck_assert_int_ge(files, 12);
}
END_TEST

/* Each broken file: the status, and a sentence naming the file. */
START_TEST(decode_refuses_broken_files) {
  NEED_FIXTURES();
  struct {
    const char *file;
    int status;
    const char *says;
  } cases[] = {
      {"truncated.jpg", STROP_E_FORMAT, "not a readable JPEG"},
      {"truncated.png", STROP_E_FORMAT, "truncated"},
      {"empty.png", STROP_E_FORMAT, "empty (0 bytes)"},
      {"text.jpg", STROP_E_FORMAT, "not a JPEG or PNG"},
      {"cmyk.jpg", STROP_E_UNSUPPORTED, "CMYK"},
      {"sixteen.png", STROP_E_UNSUPPORTED, "16-bit"},
      {"bomb.png", STROP_E_FORMAT, "exceed the limit"},
      {"crc.png", STROP_E_FORMAT, "not a readable PNG"},
  };
  char dir[512];
  pathf(dir, sizeof dir, fix(), "bad");
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char p[1024];
    size_t len;
    uint8_t *buf = slurp(pathf(p, sizeof p, dir, cases[i].file), &len);
    uint8_t *px = (uint8_t *)1;
    strop__image_info info;
    int st = strop__image_decode("t", buf, len, p, 3, STROP_IMAGE_MAX_PIXELS, &px, &info);
    ck_assert_msg(st == cases[i].status, "%s: status %d, want %d (%s)", cases[i].file, st,
                  cases[i].status, strop_last_error());
    ck_assert_ptr_null(px);
    ck_assert_msg(strstr(strop_last_error(), p) && strstr(strop_last_error(), cases[i].says),
                  "%s: %s", cases[i].file, strop_last_error());
    free(buf);
  }
}
END_TEST

/* A chunk claiming more bytes than the file holds is refused before libpng allocates its
 * buffer: the fuzzer's 43-byte file whose sPLT claims 0x73000300 bytes asked for 1.9 GB (here
 * with the header's CRC right, so libpng itself would reach the sPLT). */
START_TEST(decode_refuses_a_chunk_longer_than_the_file) {
  static const uint8_t png[] = {0x89, 'P',  'N',  'G',  '\r', '\n', 0x1a, '\n', 0x00, 0x00, 0x00,
                                0x0d, 'I',  'H',  'D',  'R',  0x00, 0x00, 0x0d, 0x00, 0x00, 0x00,
                                0x00, 0x09, 0x08, 0x03, 0x00, 0x00, 0x00, 0xe0, 0xce, 0x90, 0xef,
                                0x73, 0x00, 0x03, 0x00, 's',  'P',  'L',  'T',  0xff, 0x02};
  strop__alloc_peak_reset();
  int64_t before = strop__alloc_peak();
  strop__image_info info;
  uint8_t *px = (uint8_t *)1;
  int st = strop__image_decode("t", png, sizeof png, "claims.png", 3, STROP_IMAGE_MAX_PIXELS, &px,
                               &info);
  ck_assert_int_eq(st, STROP_E_FORMAT);
  ck_assert_ptr_null(px);
  ck_assert_msg(strstr(strop_last_error(), "claims.png") &&
                    strstr(strop_last_error(), "chunk 'sPLT' at byte 33 claims 1929380608 bytes"),
                "%s", strop_last_error());
  ck_assert_int_lt(strop__alloc_peak() - before, 1 << 20);
}
END_TEST

/* ------------------------------------------------------------------ the source ---- */

START_TEST(folder_order_is_imagefolders) {
  NEED_FIXTURES();
  char root[512], jp[512];
  pathf(root, sizeof root, fix(), "folder");
  size_t len;
  char *text = strop_test_read_file(pathf(jp, sizeof jp, fix(), "folder.json"), &len);
  strop__json j;
  strop_test_must(strop__json_parse(text, len, 0, 8, &j), "folder.json");
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_images(root, NULL, &ds), "load");
  const strop__jnode *cls = strop__json_get(&j, &j.nodes[0], "classes");
  const strop__jnode *smp = strop__json_get(&j, &j.nodes[0], "samples");
  ck_assert_int_eq(strop_dataset_num_classes(ds), cls->count);
  int k = 0;
  for (const strop__jnode *c = strop__json_at(&j, cls->child); c;
       c = strop__json_at(&j, c->next)) {
    char name[64];
    ck_assert_int_eq(strop_dataset_class_name(ds, k++, name, sizeof name), (int)c->len);
    ck_assert_str_eq(name, c->str);
  }
  ck_assert_int_eq(strop_dataset_size(ds), smp->count);
  ck_assert_int_eq(strop_dataset_varies(ds), 1);
  int64_t i = 0;
  for (const strop__jnode *s = strop__json_at(&j, smp->child); s;
       s = strop__json_at(&j, s->next), i++) {
    const strop__jnode *rel = strop__json_at(&j, s->child), *lab = strop__json_at(&j, rel->next);
    char want[1024], got[1024];
    snprintf(want, sizeof want, "%s/%s", root, rel->str);
    ck_assert_int_ge(strop_dataset_image_path(ds, i, got, sizeof got), 1);
    ck_assert_str_eq(got, want);
    float t = -1;
    int64_t d[3], bound[3];
    ck_assert_int_eq(strop_dataset_sample_shape(ds, i, d, 3), 3);
    ck_assert_int_eq(strop_dataset_input_shape(ds, bound, 3), 3);
    ck_assert_int_eq(d[0], 3);
    ck_assert_int_le(d[1], bound[1]);
    ck_assert_int_le(d[2], bound[2]);
    size_t n = (size_t)(d[0] * d[1] * d[2]);
    float *x = malloc(n * sizeof *x);
    strop_test_must(strop_dataset_get(ds, i, x, n, &t, 1), "get");
    ck_assert_int_eq((int64_t)t, lab->ival);
    free(x);
  }
  /* the images differ in size: the iterator needs a transform that fixes it */
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 4, 1, 0, &it), "iter");
  int64_t rows;
  strop_tensor *bx = NULL;
  ck_assert_int_eq(strop_batch_iter_next(it, &bx, NULL, &rows), STROP_E_SHAPE);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "differ in size"));
  strop_batch_iter_free(it);
  strop_dataset_free(ds);
  strop__json_free(&j);
  free(text);
}
END_TEST

/* The same epoch, batch for batch, from 0, 1 and 3 prefetch workers, through a random resized
 * crop and a flip; and again after a resume. */
START_TEST(workers_give_the_same_batches) {
  NEED_FIXTURES();
  char root[512];
  pathf(root, sizeof root, fix(), "folder");
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_images(root, NULL, &ds), "load");
  float *first = NULL;
  size_t per = 0;
  for (int variant = 0; variant < 3; variant++) {
    strop_batch_iter *it = NULL;
    int flags = STROP_ITER_SHUFFLE | (variant ? STROP_ITER_PREFETCH : 0);
    strop_test_must(strop_batch_iter_create(ds, 3, 42, flags, &it), "iter");
    strop_test_must(strop_batch_iter_add_scale(it, 1.0f / 255.0f), "scale");
    strop_test_must(strop_batch_iter_add_random_resized_crop(
                        it, 20, 24, 0.08f, 1.0f, 0.75f, 4.0f / 3.0f, STROP_RESIZE_BILINEAR_AA),
                    "rrc");
    strop_test_must(strop_batch_iter_add_hflip(it, 0.5f), "flip");
    strop_test_must(strop_batch_iter_add_color_jitter(it, 0.4f, 0.4f, 0.4f, 0.1f), "jitter");
    if (variant == 2) strop_test_must(strop_batch_iter_set_workers(it, 3), "workers");
    per = 3 * 20 * 24;
    if (!first) first = malloc(sizeof(float) * per * 7 * 2);
    size_t at = 0;
    for (int e = 0; e < 2; e++)
      for (;;) {
        strop_tensor *x = NULL;
        int64_t rows = 0;
        strop_test_must(strop_batch_iter_next(it, &x, NULL, &rows), "next");
        if (!rows) break;
        const float *p = strop_tensor_data(x);
        if (variant == 0) memcpy(first + at, p, (size_t)rows * per * sizeof(float));
        else
          ck_assert_msg(!memcmp(first + at, p, (size_t)rows * per * sizeof(float)),
                        "variant %d differs at %zu", variant, at);
        at += (size_t)rows * per;
      }
    ck_assert_uint_eq(at, per * 7 * 2);
    strop_batch_iter_free(it);
  }
  free(first);
  strop_dataset_free(ds);
}
END_TEST

/* The in-memory cache: the same batches with no cache, a cache too small for every image, and
 * one that holds them all, over three epochs and two workers reading it at once. The resize and
 * centre crop draw nothing, so what the iterator keeps is their output (3 x 12 x 12 floats and
 * a header: 1752 bytes), not the decoded pixels: 3 of them fit in 6000 bytes and are taken 2
 * epochs more (6 hits, and the prefetch's), all 7 in the large cache (14 hits), nothing decoded is kept beside
 * them; with a flip first nothing can be kept but the decoded pixels. */
START_TEST(cache_gives_the_same_batches) {
  NEED_FIXTURES();
  char root[512];
  pathf(root, sizeof root, fix(), "folder");
  const size_t caps[3] = {0, 6000, (size_t)1 << 24};
  float *first = NULL;
  size_t per = 3 * 12 * 12, total = per * 7 * 3;
  for (int v = 0; v < 3; v++) {
    strop_image_options o;
    strop_image_options_init(&o);
    o.cache_bytes = caps[v];
    strop_dataset *ds = NULL;
    strop_test_must(strop_dataset_load_images(root, &o, &ds), "load");
    strop_batch_iter *it = NULL;
    strop_test_must(
        strop_batch_iter_create(ds, 2, 5, STROP_ITER_SHUFFLE | STROP_ITER_PREFETCH, &it), "iter");
    strop_test_must(strop_batch_iter_set_workers(it, 2), "workers");
    strop_test_must(strop_batch_iter_add_resize_shorter(it, 14, 0, STROP_RESIZE_BILINEAR_AA),
                    "r");
    strop_test_must(strop_batch_iter_add_center_crop(it, 12, 12), "c");
    if (!first) first = malloc(total * sizeof *first);
    size_t at = 0;
    for (int e = 0; e < 3; e++)
      for (;;) {
        strop_tensor *x = NULL;
        int64_t rows = 0;
        strop_test_must(strop_batch_iter_next(it, &x, NULL, &rows), "next");
        if (!rows) break;
        if (v == 0) memcpy(first + at, strop_tensor_data(x), (size_t)rows * per * sizeof(float));
        else
          ck_assert_msg(
              !memcmp(first + at, strop_tensor_data(x), (size_t)rows * per * sizeof(float)),
              "cache %zu differs at %zu", caps[v], at);
        at += (size_t)rows * per;
      }
    ck_assert_uint_eq(at, total);
    const size_t entry = 1752; /* kept's header and 3 x 12 x 12 floats */
    /* (the prefetch may have read the next epoch's first batch of 2 already) */
    const int64_t hits = strop__batch_iter_cache_hits(it), want = v == 0 ? 0 : v == 1 ? 6 : 14;
    ck_assert_msg(hits >= want && hits <= want + (v ? 2 : 0), "%lld samples from the cache",
                  (long long)hits);
    ck_assert_uint_eq(atomic_load(&ds->img_cache_used), v == 0   ? 0
                                                        : v == 1 ? 3 * entry
                                                                 : 7 * entry);
    for (int64_t r = 0; v && r < ds->n; r++) ck_assert_ptr_null(atomic_load(&ds->img_cache[r]));
    strop_batch_iter_free(it);
    ck_assert_uint_eq(atomic_load(&ds->img_cache_used), 0); /* given back with the iterator */
    strop_dataset_free(ds);
  }
  free(first);
  /* a flip first: the decoded pixels are kept, the iterator keeps nothing */
  strop_image_options o;
  strop_image_options_init(&o);
  o.cache_bytes = (size_t)1 << 24;
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_load_images(root, &o, &ds), "load");
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 2, 5, 0, &it), "iter");
  strop_test_must(strop_batch_iter_add_hflip(it, 0.5f), "flip");
  strop_test_must(strop_batch_iter_add_resize_shorter(it, 14, 0, STROP_RESIZE_BILINEAR_AA), "r");
  strop_test_must(strop_batch_iter_add_center_crop(it, 12, 12), "c");
  for (int e = 0; e < 2; e++)
    for (;;) {
      strop_tensor *x = NULL;
      int64_t rows = 0;
      strop_test_must(strop_batch_iter_next(it, &x, NULL, &rows), "next");
      if (!rows) break;
    }
  ck_assert_int_eq(strop__batch_iter_cache_hits(it), 0);
  for (int64_t r = 0; r < ds->n; r++) ck_assert_ptr_nonnull(atomic_load(&ds->img_cache[r]));
  strop_batch_iter_free(it);
  strop_dataset_free(ds);
}
END_TEST

/* A list file (CSV and JSON lines, names and integers), skip_bad and the report, a file broken
 * past its header failing the batch that reads it. */
START_TEST(lists_and_bad_files) {
  NEED_FIXTURES();
  char p[1024], q[1024];
  const char *t = tmpdir();
  char csv[4096];
  snprintf(csv, sizeof csv,
           "path,label\n%s/decode/rgb.png,zebra\n%s/decode/grey.jpg, ant \n"
           "%s/bad/text.jpg,ant\n%s/bad/bomb.png,zebra\n%s/bad/empty.png,ant\n",
           fix(), fix(), fix(), fix(), fix());
  put(pathf(p, sizeof p, t, "list.csv"), csv, strlen(csv));
  strop_dataset *ds = NULL;
  ck_assert_int_eq(strop_dataset_load_images(p, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_null(ds);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "text.jpg"));
  strop_image_options o;
  strop_image_options_init(&o);
  o.skip_bad = 1;
  o.channels = 1;
  strop_test_must(strop_dataset_load_images(p, &o, &ds), "skip");
  ck_assert_int_eq(strop_dataset_size(ds), 2);
  ck_assert_int_eq(strop_dataset_skipped_count(ds), 3);
  char why[512];
  ck_assert_int_gt(strop_dataset_skipped(ds, 1, why, sizeof why), 0);
  ck_assert_ptr_nonnull(strstr(why, "bomb.png"));
  ck_assert_int_eq(strop_dataset_skipped(ds, 3, why, sizeof why), -1);
  char name[16];
  ck_assert_int_eq(strop_dataset_class_name(ds, 0, name, sizeof name), 3);
  ck_assert_str_eq(name, "ant");
  strop_dataset_free(ds);

  const char *jl = "{\"path\": \"../PLACEHOLDER\", \"label\": 2}\n";
  (void)jl;
  char jsonl[2048];
  snprintf(jsonl, sizeof jsonl,
           "{\"path\": \"%s/decode/rgb.png\", \"label\": 2}\n\n"
           "{\"path\": \"%s/bad/truncated.jpg\", \"label\": 0}\n",
           fix(), fix());
  put(pathf(q, sizeof q, t, "list.jsonl"), jsonl, strlen(jsonl));
  strop_test_must(strop_dataset_load_images(q, NULL, &ds), "jsonl");
  ck_assert_int_eq(strop_dataset_num_classes(ds), 3);
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 2, 1, 0, &it), "iter");
  strop_test_must(strop_batch_iter_add_resize(it, 8, 8, STROP_RESIZE_BILINEAR_AA), "resize");
  int64_t rows;
  ck_assert_int_eq(strop_batch_iter_next(it, NULL, NULL, &rows), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "truncated.jpg"));
  strop_batch_iter_free(it);
  strop_dataset_free(ds);

  put(q, "{\"path\": 3, \"label\": 1}\n", 24);
  ck_assert_int_eq(strop_dataset_load_images(q, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "list.jsonl:1"));
}
END_TEST

/* ------------------------------------------------------------------ transforms ---- */

/* Runs one transform set on x (a [3, 120, 160] image in [0, 1]) and compares with ref. */
typedef strop_status (*add_fn)(strop_batch_iter *it);

static double run_on_x(add_fn add, const char *ref_name) {
  char dir[512];
  pathf(dir, sizeof dir, fix(), "transforms");
  strop_tensor *x = npy(dir, "x.npy"), *ref = npy(dir, ref_name);
  float t = 0;
  int64_t d[3] = {3, 120, 160};
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(strop_tensor_data(x), &t, 1, 3, d, 0, NULL, 1, &ds),
                  "ds");
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 1, 1, 0, &it), "iter");
  strop_test_must(add(it), ref_name);
  strop_tensor *bx = NULL;
  int64_t rows;
  strop_test_must(strop_batch_iter_next(it, &bx, NULL, &rows), "next");
  int64_t od[4], rd[4];
  int orank = strop_tensor_shape(bx, od, 4), rrank = strop_tensor_shape(ref, rd, 4);
  ck_assert_int_eq(orank, rrank + 1);
  for (int k = 0; k < rrank; k++) ck_assert_int_eq(od[k + 1], rd[k]);
  const float *a = strop_tensor_data(bx), *b = strop_tensor_data(ref);
  double worst = 0;
  for (size_t k = 0; k < (size_t)strop_tensor_numel(ref); k++)
    if (fabs((double)a[k] - b[k]) > worst) worst = fabs((double)a[k] - b[k]);
  strop_batch_iter_free(it);
  strop_dataset_free(ds);
  strop_tensor_free(x);
  strop_tensor_free(ref);
  return worst;
}

static const float k_mean[3] = {0.485f, 0.456f, 0.406f}, k_std[3] = {0.229f, 0.224f, 0.225f};
static strop_status a_short64(strop_batch_iter *it) {
  return strop_batch_iter_add_resize_shorter(it, 64, 0, STROP_RESIZE_BILINEAR_AA);
}
static strop_status a_short200(strop_batch_iter *it) {
  return strop_batch_iter_add_resize_shorter(it, 200, 0, STROP_RESIZE_BILINEAR_AA);
}
static strop_status a_short64max80(strop_batch_iter *it) {
  return strop_batch_iter_add_resize_shorter(it, 64, 80, STROP_RESIZE_BILINEAR_AA);
}
static strop_status a_fixed37x91(strop_batch_iter *it) {
  return strop_batch_iter_add_resize(it, 37, 91, STROP_RESIZE_BILINEAR_AA);
}
static strop_status a_fixed120x41(strop_batch_iter *it) {
  return strop_batch_iter_add_resize(it, 120, 41, STROP_RESIZE_BILINEAR_AA);
}
static strop_status a_cc57x91(strop_batch_iter *it) {
  return strop_batch_iter_add_center_crop(it, 57, 91);
}
static strop_status a_cc150x170(strop_batch_iter *it) {
  return strop_batch_iter_add_center_crop(it, 150, 170);
}
static strop_status a_r64c56(strop_batch_iter *it) {
  strop_status st = strop_batch_iter_add_resize_shorter(it, 64, 0, STROP_RESIZE_BILINEAR_AA);
  return st ? st : strop_batch_iter_add_center_crop(it, 56, 56);
}
static strop_status a_norm(strop_batch_iter *it) {
  return strop_batch_iter_add_normalize(it, 3, k_mean, k_std);
}
static strop_status a_eval(strop_batch_iter *it) {
  strop_status st = strop_batch_iter_add_resize_shorter(it, 96, 0, STROP_RESIZE_BILINEAR_AA);
  if (!st) st = strop_batch_iter_add_center_crop(it, 80, 80);
  return st ? st : strop_batch_iter_add_normalize(it, 3, k_mean, k_std);
}

START_TEST(transforms_equal_torchvision) {
  NEED_FIXTURES();
  struct {
    add_fn add;
    const char *ref;
  } cases[] = {
      {a_short64, "resize_shorter_64.npy"},
      {a_short200, "resize_shorter_200.npy"},
      {a_short64max80, "resize_shorter_64_max80.npy"},
      {a_fixed37x91, "resize_fixed_37x91.npy"},
      {a_fixed120x41, "resize_fixed_120x41.npy"},
      {a_cc57x91, "center_crop_57x91.npy"},
      {a_cc150x170, "center_crop_150x170.npy"},
      {a_r64c56, "resize64_crop56.npy"},
      {a_norm, "normalize.npy"},
      {a_eval, "eval_preset.npy"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    double e = run_on_x(cases[i].add, cases[i].ref);
    if (getenv("STROP_IMG_VERBOSE")) fprintf(stderr, "%-32s max |diff| %.3g\n", cases[i].ref, e);
    ck_assert_msg(e <= 1e-6, "%s: max |diff| %g > 1e-6", cases[i].ref, e);
  }
}
END_TEST

/* resized_crop at given boxes, through the kernel the random resized crop uses */
START_TEST(resized_crop_equals_torchvision) {
  NEED_FIXTURES();
  char dir[512];
  pathf(dir, sizeof dir, fix(), "transforms");
  strop_tensor *x = npy(dir, "x.npy");
  int64_t boxes[3][6] = {
      {3, 7, 50, 90, 32, 32}, {0, 0, 120, 160, 24, 40}, {60, 100, 11, 9, 33, 33}};
  for (int b = 0; b < 3; b++) {
    int64_t *q = boxes[b];
    char name[128];
    snprintf(name, sizeof name, "rrc_%lld_%lld_%lld_%lld_%lld_%lld.npy", (long long)q[0],
             (long long)q[1], (long long)q[2], (long long)q[3], (long long)q[4], (long long)q[5]);
    strop_tensor *ref = npy(dir, name);
    strop__resize_aa_args a = {3, 120, 160, q[0], q[1], q[2], q[3], q[4], q[5], 0, 0, q[4], q[5]};
    float *work = malloc(strop__resize_aa_work(&a) * sizeof(float));
    float *out = malloc((size_t)(3 * q[4] * q[5]) * sizeof(float));
    strop__resize_bilinear_aa(strop_tensor_data(x), &a, out, work);
    double worst = 0;
    const float *r = strop_tensor_data(ref);
    for (size_t k = 0; k < (size_t)strop_tensor_numel(ref); k++)
      if (fabs((double)out[k] - r[k]) > worst) worst = fabs((double)out[k] - r[k]);
    ck_assert_msg(worst <= 1e-6, "%s: max |diff| %g", name, worst);
    free(work);
    free(out);
    strop_tensor_free(ref);
  }
  strop_tensor_free(x);
}
END_TEST

START_TEST(color_jitter_equals_torchvision) {
  NEED_FIXTURES();
  char dir[512];
  pathf(dir, sizeof dir, fix(), "transforms");
  strop_tensor *x = npy(dir, "x.npy");
  struct {
    const char *name;
    int which;
    float f;
  } cases[] = {{"brightness_1.3", 0, 1.3f}, {"brightness_0.6", 0, 0.6f},
               {"contrast_1.4", 1, 1.4f},   {"contrast_0.5", 1, 0.5f},
               {"saturation_1.5", 2, 1.5f}, {"saturation_0.3", 2, 0.3f},
               {"hue_0.2", 3, 0.2f},        {"hue_-0.37", 3, -0.37f}};
  size_t n = (size_t)strop_tensor_numel(x);
  float *img = malloc(n * sizeof *img), *grey = malloc(n / 3 * sizeof *grey);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char rn[128];
    snprintf(rn, sizeof rn, "jitter_%s.npy", cases[i].name);
    strop_tensor *ref = npy(dir, rn);
    memcpy(img, strop_tensor_data(x), n * sizeof *img);
    /* torchvision gets the factor as a Python float: the float of the literal here */
    strop__color_jitter_step(img, 3, 120, 160, cases[i].which, cases[i].f, grey);
    const float *r = strop_tensor_data(ref);
    double worst = 0;
    for (size_t k = 0; k < n; k++)
      if (fabs((double)img[k] - r[k]) > worst) worst = fabs((double)img[k] - r[k]);
    if (getenv("STROP_IMG_VERBOSE"))
      fprintf(stderr, "jitter %-16s max |diff| %.3g\n", cases[i].name, worst);
    ck_assert_msg(worst <= (cases[i].which == 3 ? 2e-6 : 1e-6), "%s: max |diff| %g", rn, worst);
    strop_tensor_free(ref);
  }
  free(img);
  free(grey);
  strop_tensor_free(x);
}
END_TEST

/* RandomResizedCrop.get_params' rule, fed torch's own draws: the same boxes */
typedef struct replay {
  const strop__json *j;
  const strop__jnode *d;
} replay;

static double replay_draw(void *ctx, float s0, float s1, float l0, float l1, float *sv,
                          float *av) {
  (void)s0;
  (void)s1;
  (void)l0;
  replay *r = ctx;
  ck_assert_ptr_nonnull(r->d);
  const strop__jnode *kind = strop__json_at(r->j, r->d->child);
  const strop__jnode *v = strop__json_at(r->j, kind->next);
  if (!sv) {
    ck_assert_str_eq(kind->str, "i");
    ck_assert_int_eq(strop__json_at(r->j, v->next)->ival, (int64_t)l1);
    r->d = strop__json_at(r->j, r->d->next);
    return (double)v->ival;
  }
  ck_assert_str_eq(kind->str, "u");
  *sv = (float)strtod(v->str, NULL);
  r->d = strop__json_at(r->j, r->d->next);
  ck_assert_str_eq(strop__json_at(r->j, r->d->child)->str, "u");
  r->d = strop__json_at(r->j, r->d->next);
  kind = strop__json_at(r->j, r->d->child);
  ck_assert_str_eq(kind->str, "e");
  *av = (float)strtod(strop__json_at(r->j, kind->next)->str, NULL);
  r->d = strop__json_at(r->j, r->d->next);
  return 0;
}

START_TEST(rrc_rule_equals_torchvision) {
  NEED_FIXTURES();
  char p[600];
  size_t len;
  char *text = strop_test_read_file(pathf(p, sizeof p, fix(), "transforms/rrc_params.json"),
                                    &len);
  strop__json j;
  strop_test_must(strop__json_parse(text, len, 0, 8, &j), "rrc_params.json");
  int cases = 0, fallbacks = 0;
  for (const strop__jnode *c = strop__json_at(&j, j.nodes[0].child); c;
       c = strop__json_at(&j, c->next), cases++) {
    int64_t h = strop__json_get(&j, c, "h")->ival, w = strop__json_get(&j, c, "w")->ival;
    const strop__jnode *sc = strop__json_get(&j, c, "scale"),
                       *ra = strop__json_get(&j, c, "ratio");
    float scale[2], ratio[2];
    scale[0] = (float)strtod(strop__json_at(&j, sc->child)->str, NULL);
    scale[1] = (float)strtod(strop__json_at(&j, strop__json_at(&j, sc->child)->next)->str, NULL);
    ratio[0] = (float)strtod(strop__json_at(&j, ra->child)->str, NULL);
    ratio[1] = (float)strtod(strop__json_at(&j, strop__json_at(&j, ra->child)->next)->str, NULL);
    replay r = {&j, strop__json_at(&j, strop__json_get(&j, c, "draws")->child)};
    int64_t box[4];
    strop__rrc_params(h, w, scale, ratio, replay_draw, &r, box);
    ck_assert_ptr_null(r.d); /* every draw used */
    const strop__jnode *want = strop__json_at(&j, strop__json_get(&j, c, "box")->child);
    for (int k = 0; k < 4; k++, want = strop__json_at(&j, want->next))
      ck_assert_msg(box[k] == want->ival, "case %d (%lld x %lld): box[%d] %lld, torchvision %lld",
                    cases, (long long)h, (long long)w, k, (long long)box[k],
                    (long long)want->ival);
    if (strop__json_get(&j, c, "draws")->count == 30) fallbacks++;
  }
  ck_assert_int_eq(cases, 200);
  ck_assert_int_gt(fallbacks, 0);
  strop__json_free(&j);
  free(text);
}
END_TEST

/* ------------------------------------------------------------------ errors ---- */

START_TEST(load_errors) {
  strop_dataset *ds = (strop_dataset *)1;
  ck_assert_int_eq(strop_dataset_load_images(NULL, NULL, &ds), STROP_E_INVALID_ARG);
  ck_assert_ptr_null(ds);
  ck_assert_int_eq(strop_dataset_load_images("/nonexistent", NULL, NULL), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_dataset_load_images("/nonexistent/x", NULL, &ds), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "/nonexistent/x"));
  strop_image_options o;
  strop_image_options_init(&o);
  o.channels = 2;
  ck_assert_int_eq(strop_dataset_load_images(tmpdir(), &o, &ds), STROP_E_INVALID_ARG);
  strop_image_options_init(&o);
  o.max_pixels = 0;
  ck_assert_int_eq(strop_dataset_load_images(tmpdir(), &o, &ds), STROP_E_INVALID_ARG);
  strop_image_options_init(&o);
  o.size = 1;
  ck_assert_int_eq(strop_dataset_load_images(tmpdir(), &o, &ds), STROP_E_INVALID_ARG);
  strop_image_options_init(NULL);
  /* a folder without class folders, a class folder without images */
  char root[512], p[1024];
  pathf(root, sizeof root, tmpdir(), "noclass");
  mkdir(root, 0755);
  put(pathf(p, sizeof p, root, "a.png"), "x", 1);
  ck_assert_int_eq(strop_dataset_load_images(root, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "no class folders"));
  mkdir(pathf(p, sizeof p, root, "cls"), 0755);
  put(pathf(p, sizeof p, root, "cls/readme.txt"), "x", 1);
  ck_assert_int_eq(strop_dataset_load_images(root, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "holds no .jpg"));
  /* a zero-byte image and a non-image among images: named; skipped with skip_bad, and a set
   * of nothing but such files fails */
  put(pathf(p, sizeof p, root, "cls/zero.png"), "", 0);
  ck_assert_int_eq(strop_dataset_load_images(root, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "zero.png: the file is empty"));
  put(pathf(p, sizeof p, root, "cls/text.jpg"), "hello", 5);
  o.skip_bad = 1;
  strop_image_options_init(&o);
  o.skip_bad = 1;
  ck_assert_int_eq(strop_dataset_load_images(root, &o, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "none of the 2 image files"));
  o.skip_bad = 2;
  ck_assert_int_eq(strop_dataset_load_images(root, &o, &ds), STROP_E_INVALID_ARG);
  /* torchvision's other formats are refused, not ignored */
  put(pathf(p, sizeof p, root, "cls/pic.webp"), "RIFF", 4);
  ck_assert_int_eq(strop_dataset_load_images(root, NULL, &ds), STROP_E_UNSUPPORTED);
  /* list files: an empty one, a line without a label, an unreadable path */
  put(pathf(p, sizeof p, tmpdir(), "empty.csv"), "path,label\n", 11);
  ck_assert_int_eq(strop_dataset_load_images(p, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "lists no images"));
  put(p, "a.png\n", 6);
  ck_assert_int_eq(strop_dataset_load_images(p, NULL, &ds), STROP_E_FORMAT);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "empty.csv:1"));
  put(p, "missing.png,1\n", 14);
  ck_assert_int_eq(strop_dataset_load_images(p, NULL, &ds), STROP_E_IO);
  ck_assert_ptr_nonnull(strstr(strop_last_error(), "missing.png"));
  ck_assert_ptr_null(ds);
  /* accessors on NULL and on datasets of other sources */
  ck_assert_int_eq(strop_dataset_skipped_count(NULL), -1);
  ck_assert_int_eq(strop_dataset_skipped(NULL, 0, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_image_path(NULL, 0, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_sample_shape(NULL, 0, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_varies(NULL), -1);
  float x[4] = {0}, y = 0;
  int64_t d[1] = {4};
  strop_test_must(strop_dataset_from_memory(x, &y, 1, 1, d, 0, NULL, 1, &ds), "mem");
  ck_assert_int_eq(strop_dataset_skipped_count(ds), 0);
  ck_assert_int_eq(strop_dataset_image_path(ds, 0, NULL, 0), -1);
  ck_assert_int_eq(strop_dataset_varies(ds), 0);
  ck_assert_int_eq(strop_dataset_sample_shape(ds, 1, d, 1), -1);
  ck_assert_int_eq(strop_dataset_sample_shape(ds, 0, d, 1), 1);
  ck_assert_int_eq(d[0], 4);
  strop_dataset_free(ds);
}
END_TEST

START_TEST(transform_errors) {
  float x[2 * 2 * 6 * 5] = {0}, y[2] = {0, 1};
  int64_t d[3] = {2, 6, 5}, shape[4];
  strop_dataset *ds = NULL;
  strop_test_must(strop_dataset_from_memory(x, y, 2, 3, d, 0, NULL, 2, &ds), "mem");
  strop_batch_iter *it = NULL;
  strop_test_must(strop_batch_iter_create(ds, 2, 1, 0, &it), "iter");
  ck_assert_int_eq(strop_batch_iter_add_resize_shorter(NULL, 4, 0, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_resize_shorter(it, 0, 0, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_resize_shorter(it, 4, 4, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_resize_shorter(it, 4, 0, 9), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_center_crop(NULL, 2, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_center_crop(it, 0, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_random_resized_crop(NULL, 2, 2, 0.1f, 1, 0.5f, 2, 2),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_random_resized_crop(it, 2, 2, 0, 1, 0.5f, 2, 2),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_random_resized_crop(it, 2, 2, 0.5f, 0.4f, 0.5f, 2, 2),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_random_resized_crop(it, 2, 2, 0.1f, 1, 2, 1, 2),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_random_resized_crop(it, 2, 2, 0.1f, 1, 0.5f, 2, 7),
                   STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_color_jitter(NULL, 0.1f, 0, 0, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_add_color_jitter(it, 0.1f, 0, 0, 0),
                   STROP_E_SHAPE); /* 2 ch */
  ck_assert_int_eq(strop_batch_iter_set_workers(NULL, 2), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_set_workers(it, 0), STROP_E_INVALID_ARG);
  ck_assert_int_eq(strop_batch_iter_set_workers(it, 2), STROP_E_STATE); /* no prefetch */
  ck_assert_int_gt((int)strlen(strop_last_error()), 0);
  /* nothing above changed the iterator */
  ck_assert_int_eq(strop_batch_iter_input_shape(it, shape, 4), 3);
  ck_assert_int_eq(shape[1], 6);
  ck_assert_int_eq(shape[2], 5);
  strop_test_must(strop_batch_iter_add_center_crop(it, 4, 4), "crop");
  int64_t rows;
  strop_test_must(strop_batch_iter_next(it, NULL, NULL, &rows), "next");
  ck_assert_int_eq(strop_batch_iter_add_center_crop(it, 2, 2), STROP_E_STATE);
  ck_assert_int_eq(strop_batch_iter_add_resize_shorter(it, 2, 0, 2), STROP_E_STATE);
  ck_assert_int_eq(strop_batch_iter_add_random_resized_crop(it, 2, 2, 0.1f, 1, 0.5f, 2, 2),
                   STROP_E_STATE);
  ck_assert_int_eq(strop_batch_iter_add_color_jitter(it, 0.1f, 0, 0, 0), STROP_E_STATE);
  ck_assert_int_eq(strop_batch_iter_set_workers(it, 1), STROP_E_STATE);
  strop_batch_iter_free(it);
  /* rank-1 inputs are not images */
  int64_t flat[1] = {60};
  strop_dataset *f = NULL;
  strop_test_must(strop_dataset_reshape(ds, 1, flat, &f), "flat");
  strop_test_must(strop_batch_iter_create(f, 2, 1, 0, &it), "iter");
  ck_assert_int_eq(strop_batch_iter_add_center_crop(it, 2, 2), STROP_E_SHAPE);
  ck_assert_int_eq(strop_batch_iter_add_resize_shorter(it, 2, 0, 2), STROP_E_SHAPE);
  strop_batch_iter_free(it);
  strop_dataset_free(f);
  strop_dataset_free(ds);
}
END_TEST

/* ------------------------------------------------------------------ allocation failures ---- */

static const char *g_load_path;
static strop_dataset *g_loaded;
static int op_load(void *ctx) {
  (void)ctx;
  int st = strop_dataset_load_images(g_load_path, NULL, &g_loaded);
  if (st) return st;
  float *x = malloc(3 * 4 * 4 * sizeof *x), t;
  strop_batch_iter *it = NULL;
  /* no prefetch: a worker preparing the next batch would fail allocations nobody waits for */
  st = strop_batch_iter_create(g_loaded, 2, 1, 0, &it);
  if (!st) st = strop_batch_iter_add_resize_shorter(it, 5, 0, STROP_RESIZE_BILINEAR_AA);
  if (!st) st = strop_batch_iter_add_center_crop(it, 4, 4);
  int64_t rows;
  if (!st) st = strop_batch_iter_next(it, NULL, NULL, &rows);
  strop_batch_iter_free(it);
  (void)t;
  free(x);
  if (st) {
    strop_dataset_free(g_loaded);
    g_loaded = NULL;
  }
  return st;
}
static void free_loaded(void *ctx) {
  (void)ctx;
  strop_dataset_free(g_loaded);
  g_loaded = NULL;
}

START_TEST(alloc_failures) {
  NEED_FIXTURES();
  char root[512];
  g_load_path = pathf(root, sizeof root, fix(), "folder");
  ck_assert_int_ge(strop_test_alloc_sweep(op_load, free_loaded, NULL), 10);
}
END_TEST

int main(void) {
  Suite *s = suite_create("data_images");
  TCase *tc = tcase_create("decode");
  tcase_add_test(tc, decode_equals_pil);
  tcase_add_test(tc, decode_refuses_broken_files);
  tcase_add_test(tc, decode_refuses_a_chunk_longer_than_the_file);
  suite_add_tcase(s, tc);
  tc = tcase_create("source");
  tcase_add_test(tc, folder_order_is_imagefolders);
  tcase_add_test(tc, workers_give_the_same_batches);
  tcase_add_test(tc, cache_gives_the_same_batches);
  tcase_add_test(tc, lists_and_bad_files);
  suite_add_tcase(s, tc);
  tc = tcase_create("transforms");
  tcase_add_test(tc, transforms_equal_torchvision);
  tcase_add_test(tc, resized_crop_equals_torchvision);
  tcase_add_test(tc, color_jitter_equals_torchvision);
  tcase_add_test(tc, rrc_rule_equals_torchvision);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, load_errors);
  tcase_add_test(tc, transform_errors);
  tcase_add_test(tc, alloc_failures);
  suite_add_tcase(s, tc);
  return strop_test_run(s);
}
