/* SPDX-License-Identifier: MIT */
/* strop — the JPEG (libjpeg-turbo) and PNG (libpng) wrappers: header probes and decoding from
 * memory into 8-bit interleaved pixels, converted to 1, 3 or 4 channels as PIL converts. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "data/data_impl.h"

/* libjpeg's error and warning numbers (jerror.h's enum) */
#include <jerror.h>

int strop__image_fuzzing = 0;

int strop__image_format(const uint8_t *buf, size_t len) {
  if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return STROP__IMG_JPEG;
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (len >= 8 && !memcmp(buf, png_sig, 8)) return STROP__IMG_PNG;
  return 0;
}

static strop_status too_big(const char *fn, const char *name, int64_t w, int64_t h,
                            int64_t max_pixels) {
  return strop__err(STROP_E_FORMAT,
                    "%s: %s: %lld x %lld pixels exceed the limit of %lld pixels "
                    "(max_pixels; a decompression bomb?)",
                    fn, name, (long long)w, (long long)h, (long long)max_pixels);
}

/* ------------------------------------------------------------------ conversions ---- */

/* PIL's RGB -> L (ITU-R 601-2 luma in 16-bit fixed point, Convert.c's L24). */
static inline uint8_t luma(const uint8_t *p) {
  return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u +
                    0x8000u) >>
                   16);
}

/* Converts one row of `n` pixels of `from` interleaved channels (1 L, 2 LA, 3 RGB, 4 RGBA) to
 * `to` channels (1, 3, 4) as PIL's Image.convert does: alpha dropped or 255, grey replicated,
 * colour to luma. src and dst may not overlap. */
static void convert_row(const uint8_t *src, int from, uint8_t *dst, int to, size_t n) {
  for (size_t i = 0; i < n; i++, src += from, dst += to) {
    uint8_t r, g, b, a = 255;
    if (from <= 2) {
      r = g = b = src[0];
      if (from == 2) a = src[1];
    } else {
      r = src[0];
      g = src[1];
      b = src[2];
      if (from == 4) a = src[3];
    }
    if (to == 1) {
      dst[0] = from <= 2 ? r : luma(src);
    } else {
      dst[0] = r;
      dst[1] = g;
      dst[2] = b;
      if (to == 4) dst[3] = a;
    }
  }
}

/* ------------------------------------------------------------------------- JPEG ---- */

typedef struct jerr_ctx {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jerr_ctx;

static void jpeg_fail(j_common_ptr cinfo) {
  jerr_ctx *e = (jerr_ctx *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, e->msg);
  longjmp(e->jb, 1);
}

/* Warnings are corrupt data (a truncated file, a bad Huffman code): PIL refuses a truncated
 * file and so does strop; only stray bytes between markers, which PIL and libjpeg skip, pass. */
static void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code != JWRN_EXTRANEOUS_DATA) jpeg_fail(cinfo);
}

/* A progressive file of thousands of tiny scans costs minutes of CPU for a few kB: cap them. */
#define MAX_JPEG_SCANS 1000
static void jpeg_progress(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (cinfo->is_decompressor && d->input_scan_number > MAX_JPEG_SCANS) {
    jerr_ctx *e = (jerr_ctx *)cinfo->err;
    snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_JPEG_SCANS);
    longjmp(e->jb, 1);
  }
}

static strop_status jpeg_run(const char *fn, const uint8_t *buf, size_t len, const char *name,
                             int channels, int64_t max_pixels, uint8_t **pixels,
                             strop__image_info *info) {
  struct jpeg_decompress_struct cinfo;
  jerr_ctx err;
  struct jpeg_progress_mgr prog;
  /* volatile: changed between setjmp and a longjmp back */
  uint8_t *volatile out = NULL;
  uint8_t *volatile row = NULL;
  volatile strop_status st = STROP_OK;
  memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_fail;
  err.pub.emit_message = jpeg_message;
  err.msg[0] = '\0';
  if (setjmp(err.jb)) {
    if (st == STROP_OK)
      st = strop__err(STROP_E_FORMAT, "%s: %s: not a readable JPEG: %s", fn, name, err.msg);
    goto done;
  }
  jpeg_create_decompress(&cinfo);
  prog.progress_monitor = jpeg_progress;
  cinfo.progress = &prog;
  /* libjpeg's allocations stay bounded by what the pixel limit allows */
  cinfo.mem->max_memory_to_use = 1L << 30;
  jpeg_mem_src(&cinfo, buf, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  int64_t w = cinfo.image_width, h = cinfo.image_height;
  int stored;
  switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: stored = 1; break;
    case JCS_YCbCr:
    case JCS_RGB: stored = 3; break;
    default:
      st = strop__err(STROP_E_UNSUPPORTED,
                      "%s: %s: a %s JPEG (%d components) is not supported: "
                      "convert it to RGB or greyscale",
                      fn, name,
                      cinfo.jpeg_color_space == JCS_CMYK   ? "CMYK"
                      : cinfo.jpeg_color_space == JCS_YCCK ? "YCCK"
                                                           : "non-RGB",
                      cinfo.num_components);
      goto done;
  }
  info->format = STROP__IMG_JPEG;
  info->width = w;
  info->height = h;
  info->channels = stored;
  if (w < 1 || h < 1) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: the JPEG is %lld x %lld pixels", fn, name,
                    (long long)w, (long long)h);
    goto done;
  }
  if (w * h > max_pixels) {
    st = too_big(fn, name, w, h, max_pixels);
    goto done;
  }
  if (!pixels) goto done;
  cinfo.out_color_space = stored == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  size_t npix = (size_t)w * (size_t)h;
  out = strop__malloc(npix * (size_t)channels);
  row = strop__malloc((size_t)w * (size_t)stored);
  if (!out || !row) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    size_t y = cinfo.output_scanline;
    uint8_t *dst = out + y * (size_t)w * (size_t)channels;
    JSAMPROW rp = stored == channels ? dst : row; /* no conversion: straight into place */
    if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
      st = strop__err(STROP_E_FORMAT, "%s: %s: the JPEG ends at row %zu of %lld", fn, name, y,
                      (long long)h);
      goto done;
    }
    if (stored != channels) convert_row(row, stored, dst, channels, (size_t)w);
  }
  jpeg_finish_decompress(&cinfo);
  *pixels = out;
  out = NULL;
done:
  jpeg_destroy_decompress(&cinfo);
  strop__free(out);
  strop__free(row);
  return st;
}

/* -------------------------------------------------------------------------- PNG ---- */

typedef struct png_src {
  const uint8_t *buf;
  size_t len, pos;
  int oom; /* an allocation failed (libpng then reports "out of memory" as an error) */
  char msg[256];
} png_src;

static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
  png_src *s = png_get_io_ptr(png);
  if (n > s->len - s->pos) {
    snprintf(s->msg, sizeof s->msg, "the file ends early (truncated)");
    png_longjmp(png, 1);
  }
  memcpy(dst, s->buf + s->pos, n);
  s->pos += n;
}

static void png_fail(png_structp png, png_const_charp msg) {
  png_src *s = png_get_error_ptr(png);
  if (!s->msg[0]) snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void png_warn(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* ancillary-chunk trouble: libpng skips the chunk, as PIL does */
}

/* libpng's allocations go through strop's allocator, so the failure sweep reaches them */
static png_voidp png_alloc(png_structp png, png_alloc_size_t n) {
  void *p = strop__malloc(n ? n : 1);
  if (!p) ((png_src *)png_get_mem_ptr(png))->oom = 1;
  return p;
}
static void png_dealloc(png_structp png, png_voidp p) {
  (void)png;
  strop__free(p);
}

/* libpng allocates a chunk's buffer from the length the chunk claims before it reads the
 * bytes, so a 43-byte file whose sPLT claims 1.9 GB asked for 1.9 GB. Every chunk up to IEND
 * must fit in the file; what follows a file that simply stops is libpng's to judge. */
static strop_status png_chunks_fit(const char *fn, const uint8_t *buf, size_t len,
                                   const char *name) {
  size_t pos = 8;
  while (len - pos >= 8) {
    const uint8_t *c = buf + pos;
    uint64_t n = (uint64_t)c[0] << 24 | (uint64_t)c[1] << 16 | (uint64_t)c[2] << 8 | c[3];
    uint64_t left = len - pos - 8;
    char type[5] = {0};
    for (int i = 0; i < 4; i++)
      type[i] = c[4 + i] > 0x20 && c[4 + i] < 0x7f ? (char)c[4 + i] : '?';
    if (n > left)
      return strop__err(STROP_E_FORMAT,
                        "%s: %s: not a readable PNG: chunk '%s' at byte %zu claims %llu bytes "
                        "but the file has %llu after its header (truncated or corrupt)",
                        fn, name, type, pos, (unsigned long long)n, (unsigned long long)left);
    if (!memcmp(c + 4, "IEND", 4)) break;
    if (n + 4 > left) break; /* the last chunk's CRC is cut off: libpng reports it */
    pos += 12 + (size_t)n;
  }
  return STROP_OK;
}

static strop_status png_run(const char *fn, const uint8_t *buf, size_t len, const char *name,
                            int channels, int64_t max_pixels, uint8_t **pixels,
                            strop__image_info *info) {
  strop_status fit = png_chunks_fit(fn, buf, len, name);
  if (fit != STROP_OK) return fit;
  png_src src = {buf, len, 0, 0, {0}};
  png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &src, png_fail, png_warn,
                                             &src, png_alloc, png_dealloc);
  png_infop pinfo = png ? png_create_info_struct(png) : NULL;
  uint8_t *volatile out = NULL;
  uint8_t *volatile tmp = NULL;
  png_bytep *volatile rows = NULL;
  volatile strop_status st = STROP_OK;
  if (!png || !pinfo) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    return STROP__NOMEM(fn);
  }
  if (setjmp(png_jmpbuf(png))) {
    if (st == STROP_OK && src.oom) st = STROP__NOMEM(fn);
    if (st == STROP_OK)
      st = strop__err(STROP_E_FORMAT, "%s: %s: not a readable PNG: %s", fn, name,
                      src.msg[0] ? src.msg : "broken data");
    goto done;
  }
  png_set_read_fn(png, &src, png_read_mem);
  /* a fuzzer's mutations would otherwise stop at the first CRC */
  if (strop__image_fuzzing) png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
  /* libpng refuses larger headers itself; the pixel limit below is the real bound */
  png_set_user_limits(png, 1u << 24, 1u << 24);
  png_set_chunk_malloc_max(png, (png_alloc_size_t)64 << 20);
  png_read_info(png, pinfo);
  png_uint_32 w32 = 0, h32 = 0;
  int depth = 0, ctype = 0, interlace = 0;
  png_get_IHDR(png, pinfo, &w32, &h32, &depth, &ctype, &interlace, NULL, NULL);
  int64_t w = w32, h = h32;
  int stored = ctype == PNG_COLOR_TYPE_GRAY         ? 1
               : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
               : ctype == PNG_COLOR_TYPE_RGB        ? 3
               : ctype == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                                                    : 3;
  int trns = png_get_valid(png, pinfo, PNG_INFO_tRNS) != 0;
  info->format = STROP__IMG_PNG;
  info->width = w;
  info->height = h;
  info->channels = stored;
  if (depth == 16) {
    st = strop__err(STROP_E_UNSUPPORTED,
                    "%s: %s: a 16-bit PNG is not supported: save it with "
                    "8 bits per channel",
                    fn, name);
    goto done;
  }
  if (w * h > max_pixels) {
    st = too_big(fn, name, w, h, max_pixels);
    goto done;
  }
  if (!pixels) goto done;
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  /* a tRNS key becomes alpha; convert_row drops it again unless alpha is wanted (PIL:
   * convert("RGBA") uses it, convert("RGB") and convert("L") ignore it) */
  if (trns) png_set_tRNS_to_alpha(png);
  (void)png_set_interlace_handling(png);
  png_read_update_info(png, pinfo);
  int got = png_get_channels(png, pinfo);
  if (got < 1 || got > 4 || png_get_bit_depth(png, pinfo) != 8) {
    st = strop__err(STROP_E_FORMAT, "%s: %s: unexpected PNG layout after expansion", fn, name);
    goto done;
  }
  size_t rowbytes = png_get_rowbytes(png, pinfo);
  size_t npix = (size_t)w * (size_t)h;
  tmp = strop__malloc(rowbytes * (size_t)h);
  rows = strop__malloc((size_t)h * sizeof *rows);
  if (!tmp || !rows) {
    st = STROP__NOMEM(fn);
    goto done;
  }
  for (int64_t y = 0; y < h; y++) rows[y] = tmp + (size_t)y * rowbytes;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  if (got == channels) {
    out = tmp;
    tmp = NULL;
  } else {
    out = strop__malloc(npix * (size_t)channels);
    if (!out) {
      st = STROP__NOMEM(fn);
      goto done;
    }
    for (int64_t y = 0; y < h; y++)
      convert_row(tmp + (size_t)y * rowbytes, got, out + (size_t)y * (size_t)w * (size_t)channels,
                  channels, (size_t)w);
  }
  *pixels = out;
  out = NULL;
done:
  png_destroy_read_struct(&png, &pinfo, NULL);
  strop__free(out);
  strop__free(tmp);
  strop__free(rows);
  return st;
}

/* ------------------------------------------------------------------------ entry ---- */

static strop_status run(const char *fn, const uint8_t *buf, size_t len, const char *name,
                        int channels, int64_t max_pixels, uint8_t **pixels,
                        strop__image_info *info) {
  memset(info, 0, sizeof *info);
  if (pixels) *pixels = NULL;
  if (len == 0)
    return strop__err(STROP_E_FORMAT, "%s: %s: the file is empty (0 bytes)", fn, name);
  switch (strop__image_format(buf, len)) {
    case STROP__IMG_JPEG: return jpeg_run(fn, buf, len, name, channels, max_pixels, pixels, info);
    case STROP__IMG_PNG: return png_run(fn, buf, len, name, channels, max_pixels, pixels, info);
    default:
      return strop__err(STROP_E_FORMAT,
                        "%s: %s: not a JPEG or PNG file (it starts with "
                        "%02x %02x %02x %02x)",
                        fn, name, len > 0 ? buf[0] : 0, len > 1 ? buf[1] : 0,
                        len > 2 ? buf[2] : 0, len > 3 ? buf[3] : 0);
  }
}

strop_status strop__image_probe(const char *fn, const uint8_t *buf, size_t len, const char *name,
                                int64_t max_pixels, strop__image_info *info) {
  return run(fn, buf, len, name, 3, max_pixels, NULL, info);
}

strop_status strop__image_decode(const char *fn, const uint8_t *buf, size_t len, const char *name,
                                 int channels, int64_t max_pixels, uint8_t **pixels,
                                 strop__image_info *info) {
  if (channels != 1 && channels != 3 && channels != 4)
    return strop__err(STROP_E_INVALID_ARG, "%s: channels must be 1, 3 or 4, got %d", fn,
                      channels);
  return run(fn, buf, len, name, channels, max_pixels, pixels, info);
}
