/* SPDX-License-Identifier: MIT */
/* strop — the image-folder source: root/<class>/<file> (torchvision's ImageFolder order) or a
 * CSV/JSONL list of path,label; headers probed at load, pixels decoded lazily per sample. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_impl.h"
#include "io/json.h"

#define FN "strop_dataset_load_images"

void strop_image_options_init(strop_image_options *opt) {
  if (!opt) return;
  memset(opt, 0, sizeof *opt);
  opt->size = sizeof *opt;
  opt->channels = 3;
  opt->skip_bad = 0;
  opt->max_pixels = STROP_IMAGE_MAX_PIXELS;
  opt->cache_bytes = 0;
}

/* ------------------------------------------------------------------ file reading ---- */

/* Reads at most cap bytes of path (all of it when cap is 0) into a new buffer. */
static strop_status read_file(const char *fn, const char *path, size_t cap, uint8_t **out,
                              size_t *len, size_t *whole) {
  *out = NULL;
  *len = 0;
  int fd;
  size_t size;
  strop_status st = strop__open_input(fn, path, &fd, &size);
  if (st) return st;
  if (whole) *whole = size;
  size_t want = cap && cap < size ? cap : size;
  uint8_t *buf = strop__malloc(want ? want : 1);
  if (!buf) {
    close(fd);
    return STROP__NOMEM(fn);
  }
  size_t got = 0;
  while (got < want) {
    ssize_t r = read(fd, buf + got, want - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      st = strop__err(STROP_E_IO, "%s: cannot read %s: %s", fn, path, strerror(errno));
      break;
    }
    if (r == 0) break; /* shrank while read: decode what is there */
    got += (size_t)r;
  }
  close(fd);
  if (st) {
    strop__free(buf);
    return st;
  }
  *out = buf;
  *len = got;
  return STROP_OK;
}

/* The header of one file: its size and stored channels. A JPEG header usually sits in the
 * first 64 kB; one that does not (large EXIF blocks) is read whole. */
static strop_status probe_file(const char *fn, const char *path, int64_t max_pixels,
                               strop__image_info *info) {
  uint8_t *buf = NULL;
  size_t len = 0, whole = 0;
  strop_status st = read_file(fn, path, 65536, &buf, &len, &whole);
  if (st) return st;
  st = strop__image_probe(fn, buf, len, path, max_pixels, info);
  if (st == STROP_E_FORMAT && whole > len) {
    strop__free(buf);
    if ((st = read_file(fn, path, 0, &buf, &len, NULL))) return st;
    st = strop__image_probe(fn, buf, len, path, max_pixels, info);
  }
  strop__free(buf);
  return st;
}

int strop__images_cache_charge(const strop_dataset *rt, size_t bytes) {
  if (!rt->img_cache) return 0;
  strop_dataset *m = (strop_dataset *)rt;
  /* taken only when it fits (an add undone after the fact would let a concurrent charge see a
   * budget spent that is not, and refuse what fits) */
  size_t used = atomic_load(&m->img_cache_used);
  do {
    if (bytes > rt->img_cache_cap || used > rt->img_cache_cap - bytes) return 0;
  } while (!atomic_compare_exchange_weak(&m->img_cache_used, &used, used + bytes));
  return 1;
}

void strop__images_cache_release(const strop_dataset *rt, size_t bytes) {
  atomic_fetch_sub(&((strop_dataset *)rt)->img_cache_used, bytes);
}

strop_status strop__images_read(const strop_dataset *rt, const char *fn, int64_t r, float *in,
                                float scale, int keep) {
  const char *path = rt->img_paths + rt->img_off[r];
  int64_t h = rt->img_hw[2 * r], w = rt->img_hw[2 * r + 1];
  int c = rt->img_c;
  size_t npix = (size_t)h * (size_t)w;
  const uint8_t *px = rt->img_cache ? atomic_load(&rt->img_cache[r]) : NULL;
  uint8_t *own = NULL;
  if (!px) {
    uint8_t *buf = NULL;
    size_t len = 0;
    strop_status st = read_file(fn, path, 0, &buf, &len, NULL);
    if (st) return st;
    strop__image_info info;
    st = strop__image_decode(fn, buf, len, path, c, rt->img_max_pixels, &own, &info);
    strop__free(buf);
    if (st) return st;
    if (info.height != h || info.width != w) {
      strop__free(own);
      return strop__err(STROP_E_FORMAT,
                        "%s: %s: the image is now %lld x %lld pixels, it was "
                        "%lld x %lld when the dataset was loaded",
                        fn, path, (long long)info.width, (long long)info.height, (long long)w,
                        (long long)h);
    }
    px = own;
    /* keep it while the budget lasts; another thread may have stored it first */
    size_t bytes = npix * (size_t)c;
    if (keep && strop__images_cache_charge(rt, bytes)) {
      uint8_t *expect = NULL;
      if (atomic_compare_exchange_strong(&((strop_dataset *)rt)->img_cache[r], &expect, own))
        own = NULL;
      else strop__images_cache_release(rt, bytes);
    }
  }
  /* interleaved bytes -> planar floats in [0, 255], times scale (the float product a scale
   * transform would compute next) */
  if (c == 3) {
    float *d0 = in, *d1 = in + npix, *d2 = in + 2 * npix;
    for (size_t p = 0; p < npix; p++) {
      d0[p] = (float)px[3 * p] * scale;
      d1[p] = (float)px[3 * p + 1] * scale;
      d2[p] = (float)px[3 * p + 2] * scale;
    }
  } else {
    for (int k = 0; k < c; k++) {
      float *d = in + (size_t)k * npix;
      const uint8_t *s = px + k;
      for (size_t p = 0; p < npix; p++) d[p] = (float)s[p * (size_t)c] * scale;
    }
  }
  strop__free(own);
  return STROP_OK;
}

/* ------------------------------------------------------------------ the file list ---- */

typedef struct entry {
  char *path;  /* full path */
  char *label; /* the label's text (list files) */
  int64_t cls; /* folder layout: class index */
} entry;

typedef struct list {
  entry *e;
  int64_t n, cap;
} list;

static void list_free(list *l) {
  for (int64_t i = 0; i < l->n; i++) {
    strop__free(l->e[i].path);
    strop__free(l->e[i].label);
  }
  strop__free(l->e);
  memset(l, 0, sizeof *l);
}

static strop_status list_add(list *l, char *path, char *label, int64_t cls) {
  if (l->n == l->cap) {
    int64_t nc = l->cap ? 2 * l->cap : 256;
    entry *ne = strop__realloc(l->e, (size_t)nc * sizeof *ne);
    if (!ne) {
      strop__free(path);
      strop__free(label);
      return STROP__NOMEM(FN);
    }
    l->e = ne;
    l->cap = nc;
  }
  l->e[l->n++] = (entry){path, label, cls};
  return STROP_OK;
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = strop__malloc(la + lb + 2);
  if (!s) return NULL;
  memcpy(s, a, la);
  size_t k = la;
  if (la && a[la - 1] != '/') s[k++] = '/';
  memcpy(s + k, b, lb + 1);
  return s;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir (without . and ..), sorted byte-wise; *n set. */
static strop_status dir_names(const char *dir, char ***out, int64_t *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d)
    return strop__err(STROP_E_IO, "%s: cannot open the folder %s: %s", FN, dir, strerror(errno));
  char **v = NULL;
  int64_t cnt = 0, cap = 0;
  strop_status st = STROP_OK;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    if (cnt == cap) {
      int64_t nc = cap ? 2 * cap : 64;
      char **nv = strop__realloc(v, (size_t)nc * sizeof *nv);
      if (!nv) {
        st = STROP__NOMEM(FN);
        break;
      }
      v = nv;
      cap = nc;
    }
    if (!(v[cnt] = strop__strdup(de->d_name))) {
      st = STROP__NOMEM(FN);
      break;
    }
    cnt++;
  }
  closedir(d);
  if (st) {
    for (int64_t i = 0; i < cnt; i++) strop__free(v[i]);
    strop__free(v);
    return st;
  }
  if (cnt) qsort(v, (size_t)cnt, sizeof *v, cmp_str);
  *out = v;
  *n = cnt;
  return STROP_OK;
}

static void names_free(char **v, int64_t n) {
  if (!v) return;
  for (int64_t i = 0; i < n; i++) strop__free(v[i]);
  strop__free(v);
}

static int has_ext(const char *name, const char *const *exts) {
  size_t n = strlen(name);
  for (int i = 0; exts[i]; i++) {
    size_t m = strlen(exts[i]);
    if (n > m && !strcasecmp(name + n - m, exts[i])) return 1;
  }
  return 0;
}

static const char *const k_ours[] = {".jpg", ".jpeg", ".png", NULL};
/* torchvision reads these too: refusing them (instead of ignoring) keeps the two datasets
 * the same or tells why not */
static const char *const k_theirs[] = {".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", NULL};

static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The files of one class folder, as torchvision walks it: sorted(os.walk(dir)) visits folders
 * in the byte order of their paths, each folder's files sorted by name. */
typedef struct dirlist {
  char **dirs;
  int64_t n, cap;
} dirlist;

static strop_status collect_dirs(const char *dir, int depth, dirlist *dl) {
  if (depth > 32)
    return strop__err(STROP_E_FORMAT,
                      "%s: %s: folders nest deeper than 32 levels (a symbolic "
                      "link loop?)",
                      FN, dir);
  if (dl->n == dl->cap) {
    int64_t nc = dl->cap ? 2 * dl->cap : 16;
    char **nd = strop__realloc(dl->dirs, (size_t)nc * sizeof *nd);
    if (!nd) return STROP__NOMEM(FN);
    dl->dirs = nd;
    dl->cap = nc;
  }
  if (!(dl->dirs[dl->n] = strop__strdup(dir))) return STROP__NOMEM(FN);
  dl->n++;
  char **names = NULL;
  int64_t nn = 0;
  strop_status st = dir_names(dir, &names, &nn);
  for (int64_t i = 0; !st && i < nn; i++) {
    char *p = join(dir, names[i]);
    if (!p) {
      st = STROP__NOMEM(FN);
      break;
    }
    if (is_dir(p)) st = collect_dirs(p, depth + 1, dl);
    strop__free(p);
  }
  names_free(names, nn);
  return st;
}

static strop_status walk_class(const char *dir, int64_t cls, list *l, int64_t *ignored) {
  dirlist dl = {0};
  strop_status st = collect_dirs(dir, 0, &dl);
  if (!st && dl.n) qsort(dl.dirs, (size_t)dl.n, sizeof *dl.dirs, cmp_str);
  for (int64_t k = 0; !st && k < dl.n; k++) {
    char **names = NULL;
    int64_t nn = 0;
    if ((st = dir_names(dl.dirs[k], &names, &nn))) break;
    for (int64_t i = 0; !st && i < nn; i++) {
      char *p = join(dl.dirs[k], names[i]);
      if (!p) {
        st = STROP__NOMEM(FN);
        break;
      }
      if (is_dir(p)) {
        strop__free(p);
        continue;
      }
      if (has_ext(names[i], k_ours) || has_ext(names[i], k_theirs))
        st = list_add(l, p, NULL, cls);
      else {
        strop__free(p);
        (*ignored)++;
      }
    }
    names_free(names, nn);
  }
  names_free(dl.dirs, dl.n);
  return st;
}

static strop_status walk_root(const char *root, list *l, char ***classes, int64_t *ncls,
                              int64_t *ignored) {
  char **names = NULL;
  int64_t nn = 0;
  *classes = NULL;
  *ncls = 0;
  strop_status st = dir_names(root, &names, &nn);
  if (st) return st;
  /* class folders: the sub-folders, sorted (torchvision's find_classes) */
  int64_t m = 0;
  for (int64_t i = 0; i < nn; i++) {
    char *p = join(root, names[i]);
    if (!p) {
      for (int64_t k = i; k < nn; k++) strop__free(names[k]);
      names_free(names, m);
      return STROP__NOMEM(FN);
    }
    if (is_dir(p)) {
      names[m++] = names[i];
    } else {
      strop__free(names[i]);
      (*ignored)++;
    }
    strop__free(p);
  }
  if (m == 0) {
    names_free(names, m);
    return strop__err(STROP_E_FORMAT,
                      "%s: %s has no class folders (expected root/<class>/"
                      "<image>, e.g. root/cat/1.jpg)",
                      FN, root);
  }
  for (int64_t c = 0; c < m && !st; c++) {
    char *p = join(root, names[c]);
    if (!p) {
      st = STROP__NOMEM(FN);
      break;
    }
    int64_t before = l->n;
    st = walk_class(p, c, l, ignored);
    if (!st && l->n == before)
      st = strop__err(STROP_E_FORMAT,
                      "%s: the class folder %s holds no .jpg, .jpeg or .png "
                      "file",
                      FN, p);
    strop__free(p);
  }
  if (st) {
    names_free(names, m);
    return st;
  }
  *classes = names;
  *ncls = m;
  return STROP_OK;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    s[n - 1] = '\0';
    s++;
  }
  return s;
}

/* A list file: CSV lines `path,label` (a first line `path,label` is a header) or JSON lines
 * {"path": ..., "label": ...}; relative paths are relative to the list's folder. */
static strop_status read_list(const char *file, list *l) {
  uint8_t *buf = NULL;
  size_t len = 0;
  strop_status st = read_file(FN, file, 0, &buf, &len, NULL);
  if (st) return st;
  char *dir = strop__strdup(file);
  if (!dir) {
    strop__free(buf);
    return STROP__NOMEM(FN);
  }
  char *slash = strrchr(dir, '/');
  if (slash) slash[1] = '\0';
  else dir[0] = '\0';
  size_t n = strlen(file);
  int jsonl = (n > 6 && !strcasecmp(file + n - 6, ".jsonl")) ||
              (n > 5 && !strcasecmp(file + n - 5, ".json"));
  char *text = (char *)buf;
  size_t pos = 0;
  int64_t line = 0;
  while (!st && pos < len) {
    size_t e = pos;
    while (e < len && text[e] != '\n') e++;
    line++;
    char *ln = strop__malloc(e - pos + 1);
    if (!ln) {
      st = STROP__NOMEM(FN);
      break;
    }
    memcpy(ln, text + pos, e - pos);
    ln[e - pos] = '\0';
    pos = e + 1;
    char *t = trim(ln);
    char *path = NULL, *label = NULL;
    if (!*t) {
      strop__free(ln);
      continue;
    }
    if (jsonl) {
      strop__json j;
      st = strop__json_parse(t, strlen(t), 0, 4, &j);
      if (st) {
        strop__err_prefix("%s: %s:%lld", FN, file, (long long)line);
        strop__free(ln);
        break;
      }
      const strop__jnode *root = &j.nodes[0];
      const strop__jnode *pn = root->type == STROP__J_OBJ ? strop__json_get(&j, root, "path")
                                                          : NULL;
      const strop__jnode *lb = root->type == STROP__J_OBJ ? strop__json_get(&j, root, "label")
                                                          : NULL;
      if (!pn || pn->type != STROP__J_STR || !lb ||
          (lb->type != STROP__J_STR && !(lb->type == STROP__J_NUM && lb->is_int))) {
        st = strop__err(STROP_E_FORMAT,
                        "%s: %s:%lld: expected {\"path\": \"...\", \"label\": "
                        "name or integer}",
                        FN, file, (long long)line);
      } else {
        path = strop__strdup(pn->str);
        label = strop__strdup(lb->str);
        if (!path || !label) st = STROP__NOMEM(FN);
      }
      strop__json_free(&j);
    } else {
      char *comma = strrchr(t, ',');
      if (!comma) {
        st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: expected `path,label`", FN, file,
                        (long long)line);
      } else {
        *comma = '\0';
        char *p = trim(t), *lab = trim(comma + 1);
        if (line == 1 && !strcasecmp(p, "path") && !strcasecmp(lab, "label")) {
          strop__free(ln);
          continue;
        }
        if (!*p || !*lab)
          st = strop__err(STROP_E_FORMAT, "%s: %s:%lld: an empty %s", FN, file, (long long)line,
                          *p ? "label" : "path");
        else {
          path = strop__strdup(p);
          label = strop__strdup(lab);
          if (!path || !label) st = STROP__NOMEM(FN);
        }
      }
    }
    strop__free(ln);
    if (!st && path[0] != '/') {
      char *full = join(dir, path);
      if (!full) st = STROP__NOMEM(FN);
      strop__free(path);
      path = full;
    }
    if (!st) st = list_add(l, path, label, -1);
    else {
      strop__free(path);
      strop__free(label);
    }
  }
  strop__free(dir);
  strop__free(buf);
  if (!st && l->n == 0) st = strop__err(STROP_E_FORMAT, "%s: %s lists no images", FN, file);
  return st;
}

/* Labels of a list: all non-negative integers are class indices; otherwise every label is a
 * class name, numbered in byte-wise sorted order. */
static strop_status list_labels(const char *file, list *l, char ***names, int64_t *ncls) {
  *names = NULL;
  *ncls = 0;
  int ints = 1;
  int64_t mx = -1;
  for (int64_t i = 0; i < l->n && ints; i++) {
    char *end;
    errno = 0;
    long long v = strtoll(l->e[i].label, &end, 10);
    if (*end || end == l->e[i].label || errno || v < 0 || v >= STROP__MAX_CLASSES) ints = 0;
    else {
      l->e[i].cls = v;
      if (v > mx) mx = v;
    }
  }
  if (ints) {
    *ncls = mx + 1;
    return STROP_OK;
  }
  char **v = strop__malloc((size_t)l->n * sizeof *v);
  if (!v) return STROP__NOMEM(FN);
  for (int64_t i = 0; i < l->n; i++) v[i] = l->e[i].label;
  qsort(v, (size_t)l->n, sizeof *v, cmp_str);
  int64_t m = 0;
  for (int64_t i = 0; i < l->n; i++)
    if (m == 0 || strcmp(v[m - 1], v[i])) v[m++] = v[i];
  if (m > STROP__MAX_CLASSES) {
    strop__free(v);
    return strop__err(STROP_E_FORMAT, "%s: %s names %lld classes, more than 2^24", FN, file,
                      (long long)m);
  }
  char **out = strop__calloc((size_t)m, sizeof *out);
  if (!out) {
    strop__free(v);
    return STROP__NOMEM(FN);
  }
  for (int64_t k = 0; k < m; k++)
    if (!(out[k] = strop__strdup(v[k]))) {
      names_free(out, m);
      strop__free(v);
      return STROP__NOMEM(FN);
    }
  for (int64_t i = 0; i < l->n; i++) {
    char **hit = bsearch(&l->e[i].label, out, (size_t)m, sizeof *out, cmp_str);
    l->e[i].cls = hit - out;
  }
  strop__free(v);
  *names = out;
  *ncls = m;
  return STROP_OK;
}

/* ------------------------------------------------------------------ the source ---- */

strop_status strop_dataset_load_images(const char *path, const strop_image_options *user,
                                       strop_dataset **out) {
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", FN);
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", FN);
  strop_image_options o;
  strop_image_options_init(&o);
  if (user) {
    if (user->size < sizeof(size_t) || user->size > 4096)
      return strop__err(STROP_E_INVALID_ARG,
                        "%s: opt->size is %zu; fill the options with "
                        "strop_image_options_init",
                        FN, user->size);
    memcpy(&o, user, user->size < sizeof o ? user->size : sizeof o);
    o.size = sizeof o;
  }
  if (o.channels != 1 && o.channels != 3 && o.channels != 4)
    return strop__err(STROP_E_INVALID_ARG, "%s: channels must be 1, 3 or 4, got %d", FN,
                      o.channels);
  if (o.max_pixels < 1 || o.max_pixels > ((int64_t)1 << 34))
    return strop__err(STROP_E_INVALID_ARG, "%s: max_pixels must be in [1, 2^34], got %lld", FN,
                      (long long)o.max_pixels);
  if (o.skip_bad != 0 && o.skip_bad != 1)
    return strop__err(STROP_E_INVALID_ARG, "%s: skip_bad must be 0 or 1, got %d", FN, o.skip_bad);

  list l = {0};
  char **classes = NULL;
  int64_t ncls = 0, ignored = 0;
  strop_status st;
  struct stat sb;
  if (stat(path, &sb) != 0)
    return strop__err(STROP_E_IO, "%s: cannot open %s: %s", FN, path, strerror(errno));
  if (S_ISDIR(sb.st_mode)) {
    st = walk_root(path, &l, &classes, &ncls, &ignored);
  } else {
    st = read_list(path, &l);
    if (!st) st = list_labels(path, &l, &classes, &ncls);
  }
  if (st) {
    list_free(&l);
    names_free(classes, ncls);
    return st;
  }
  /* probe every header: size, and whether the file is an image strop reads */
  int32_t *hw = strop__malloc((size_t)l.n * 2 * sizeof *hw);
  int8_t *ok = strop__malloc((size_t)l.n);
  char **skipped = NULL;
  int64_t nskip = 0, nkeep = 0, maxh = 0, maxw = 0, maxpix = 0;
  if (!hw || !ok) st = STROP__NOMEM(FN);
  for (int64_t i = 0; !st && i < l.n; i++) {
    strop__image_info info;
    ok[i] = 0;
    strop_status ps;
    if (has_ext(l.e[i].path, k_theirs))
      ps = strop__err(STROP_E_UNSUPPORTED, "%s: %s: only JPEG and PNG images are read", FN,
                      l.e[i].path);
    else ps = probe_file(FN, l.e[i].path, o.max_pixels, &info);
    if (ps == STROP_E_NOMEM || (ps && !o.skip_bad)) {
      st = ps;
      break;
    }
    if (ps) {
      char **ns = strop__realloc(skipped, (size_t)(nskip + 1) * sizeof *ns);
      char *msg = strop__strdup(strop_last_error());
      if (!ns || !msg) {
        strop__free(msg);
        if (ns) skipped = ns;
        st = STROP__NOMEM(FN);
        break;
      }
      skipped = ns;
      skipped[nskip++] = msg;
      continue;
    }
    ok[i] = 1;
    hw[2 * i] = (int32_t)info.height;
    hw[2 * i + 1] = (int32_t)info.width;
    if (info.height > maxh) maxh = info.height;
    if (info.width > maxw) maxw = info.width;
    if (info.height * info.width > maxpix) maxpix = info.height * info.width;
    nkeep++;
  }
  if (!st && nkeep == 0)
    st = strop__err(STROP_E_FORMAT, "%s: %s: none of the %lld image files could be read%s%s", FN,
                    path, (long long)l.n, nskip ? "; the first: " : "", nskip ? skipped[0] : "");
  strop_dataset *ds = NULL;
  if (!st) {
    int64_t dims[3] = {o.channels, maxh, maxw};
    int var = 0;
    for (int64_t i = 0; i < l.n && !var; i++)
      if (ok[i] && (hw[2 * i] != maxh || hw[2 * i + 1] != maxw)) var = 1;
    st = strop__ds_new_root(FN, STROP__DS_IMAGES, nkeep, 3, dims, 0, NULL, ncls, &ds);
    /* sizes vary: the shape is a bound per axis, and the element count a bound of any
     * sample's (C x the most pixels of one image) */
    if (!st && var) {
      ds->var_size = 1;
      ds->in_numel = (size_t)o.channels * (size_t)maxpix;
    }
  }
  size_t blob = 0;
  for (int64_t i = 0; !st && i < l.n; i++)
    if (ok[i]) blob += strlen(l.e[i].path) + 1;
  if (!st) {
    ds->img_paths = strop__malloc(blob);
    ds->img_off = strop__malloc((size_t)nkeep * sizeof *ds->img_off);
    ds->img_hw = strop__malloc((size_t)nkeep * 2 * sizeof *ds->img_hw);
    ds->y_owned = strop__malloc((size_t)nkeep * sizeof *ds->y_owned);
    if (o.cache_bytes > 0) ds->img_cache = strop__calloc((size_t)nkeep, sizeof *ds->img_cache);
    if (!ds->img_paths || !ds->img_off || !ds->img_hw || !ds->y_owned ||
        (o.cache_bytes > 0 && !ds->img_cache))
      st = STROP__NOMEM(FN);
  }
  if (!st) {
    size_t at = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < l.n; i++) {
      if (!ok[i]) continue;
      size_t m = strlen(l.e[i].path) + 1;
      memcpy(ds->img_paths + at, l.e[i].path, m);
      ds->img_off[k] = (int64_t)at;
      at += m;
      ds->img_hw[2 * k] = hw[2 * i];
      ds->img_hw[2 * k + 1] = hw[2 * i + 1];
      ds->y_owned[k] = (float)l.e[i].cls;
      k++;
    }
    ds->y = ds->y_owned;
    ds->img_c = o.channels;
    ds->img_max_pixels = o.max_pixels;
    ds->img_cache_cap = o.cache_bytes;
    atomic_init(&ds->img_cache_used, 0);
    ds->class_names = classes;
    classes = NULL;
    ds->img_skipped = skipped;
    ds->img_nskipped = nskip;
    ds->img_ignored = ignored;
    skipped = NULL;
    nskip = 0;
  }
  strop__free(hw);
  strop__free(ok);
  names_free(skipped, nskip);
  names_free(classes, ncls);
  list_free(&l);
  if (st) {
    strop_dataset_free(ds);
    return st;
  }
  *out = ds;
  return STROP_OK;
}

int64_t strop_dataset_skipped_count(const strop_dataset *ds) {
  if (!ds) return -1;
  return strop__ds_root(ds)->img_nskipped;
}

int strop_dataset_skipped(const strop_dataset *ds, int64_t i, char *buf, size_t cap) {
  if (!ds) return -1;
  const strop_dataset *rt = strop__ds_root(ds);
  if (i < 0 || i >= rt->img_nskipped) return -1;
  const char *s = rt->img_skipped[i];
  size_t n = strlen(s);
  if (buf && cap) {
    size_t m = n < cap - 1 ? n : cap - 1;
    memcpy(buf, s, m);
    buf[m] = '\0';
  }
  return (int)(n > INT32_MAX ? INT32_MAX : n);
}

int strop_dataset_image_path(const strop_dataset *ds, int64_t index, char *buf, size_t cap) {
  if (!ds || index < 0 || index >= ds->n) return -1;
  const strop_dataset *rt = strop__ds_root(ds);
  if (rt->kind != STROP__DS_IMAGES) return -1;
  int64_t r = ds->idx ? ds->idx[index] : index;
  const char *s = rt->img_paths + rt->img_off[r];
  size_t n = strlen(s);
  if (buf && cap) {
    size_t m = n < cap - 1 ? n : cap - 1;
    memcpy(buf, s, m);
    buf[m] = '\0';
  }
  return (int)(n > INT32_MAX ? INT32_MAX : n);
}

strop_status strop_image_load(const char *path, int channels, strop_tensor **out) {
  static const char fn[] = "strop_image_load";
  if (!out) return strop__err(STROP_E_INVALID_ARG, "%s: out is NULL", fn);
  *out = NULL;
  if (!path) return strop__err(STROP_E_INVALID_ARG, "%s: path is NULL", fn);
  if (channels != 1 && channels != 3 && channels != 4)
    return strop__err(STROP_E_INVALID_ARG, "%s: channels must be 1, 3 or 4, got %d", fn,
                      channels);
  uint8_t *buf = NULL, *px = NULL;
  size_t len = 0;
  strop_status st = read_file(fn, path, 0, &buf, &len, NULL);
  if (st) return st;
  strop__image_info info;
  st = strop__image_decode(fn, buf, len, path, channels, STROP_IMAGE_MAX_PIXELS, &px, &info);
  strop__free(buf);
  if (st) return st;
  int64_t dims[3] = {channels, info.height, info.width};
  strop_tensor *t = NULL;
  if ((st = strop_tensor_create(3, dims, &t))) {
    strop__free(px);
    strop__err_prefix("%s", fn);
    return st;
  }
  float *d = strop_tensor_data(t);
  size_t npix = (size_t)info.height * (size_t)info.width;
  for (int k = 0; k < channels; k++)
    for (size_t p = 0; p < npix; p++)
      d[(size_t)k * npix + p] = (float)px[p * (size_t)channels + (size_t)k];
  strop__free(px);
  *out = t;
  return STROP_OK;
}
