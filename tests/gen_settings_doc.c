/* SPDX-License-Identifier: MIT */
/* strop tests — the knob tables of docs/optim.md, docs/tune.md and docs/recipes.md, generated
 * from the settings tables (lib/optim, lib/train, lib/tune): --check fails when a committed
 * table differs from the generated one, --write puts the generated ones in place.
 *
 *   gen_settings_doc --check DOCS_DIR   (the CTest test settings_docs)
 *   gen_settings_doc --write DOCS_DIR   (after changing a table)
 *   gen_settings_doc --print NAME       (optimizer, scheduler, trainer, tuner, or recipe:SECTION
 *                                        such as recipe:tune: a section's own keys)
 *
 * A table sits between "<!-- BEGIN settings:NAME ... -->" and "<!-- END settings:NAME -->". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/settings.h"
#include "optim/optim.h"
#include "recipe/recipe_impl.h"
#include "train/train_impl.h"
#include "tune/tune_impl.h"

typedef struct text {
  char *s;
  size_t n, cap;
} text;

static void put(text *t, const char *fmt, ...) STROP__PRINTF(2, 3);
static void put(text *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) abort();
    if (t->s && t->n + (size_t)k < t->cap) {
      t->n += (size_t)k;
      return;
    }
    t->cap = (t->cap + (size_t)k + 1) * 2;
    t->s = realloc(t->s, t->cap);
    if (!t->s) abort();
    t->s[t->n] = '\0';
  }
}

static const char *type_name(const strop__setting *d) {
  switch (d->type) {
    case STROP__SET_FLOAT: return "float";
    case STROP__SET_INT: return "int";
    case STROP__SET_FLAG: return "flag";
    case STROP__SET_ENUM: return "enum";
    default: return "int64 list";
  }
}

/* `name` and its other spelling. */
static void put_names(text *t, const strop__setting *d) {
  put(t, "`%s`", d->name);
  if (d->alias) put(t, " (`%s`)", d->alias);
}

static void put_range(text *t, const strop__setting *d, int kind) {
  char r[256];
  int f = strop__setting_flags(d, kind);
  if (d->type == STROP__SET_ENUM) {
    for (int i = 0; d->words[i]; i++) put(t, "%s`%s`", i ? ", " : "", d->words[i]);
    return;
  }
  strop__setting_range_str(d, kind, r, sizeof r);
  put(t, "%s%s", r, (f & STROP__KNOB_INF_OK) ? ", +inf accepted" : "");
  if (d->type == STROP__SET_LIST) put(t, ", increasing");
}

static void put_default(text *t, const strop__setting *d, int kind) {
  char v[64];
  if (strop__setting_flags(d, kind) & STROP__KNOB_REQUIRED) {
    put(t, "required");
  } else if (d->type == STROP__SET_LIST) {
    put(t, "empty");
  } else {
    strop__setting_format(d, strop__setting_default(d, kind), v, sizeof v);
    put(t, "%s", v);
  }
}

/* Optimizer: one default column per kind. */
static void gen_optimizer(text *t) {
  const strop__settings *s = &strop__optimizer_settings;
  put(t, "| knob | name | type |");
  for (int k = 0; k < s->n_kinds; k++) put(t, " %s |", s->kind_names[k]);
  put(t, " range | meaning |\n|---|---|---|");
  for (int k = 0; k < s->n_kinds; k++) put(t, "---|");
  put(t, "---|---|\n");
  for (int key = 0; key < s->n; key++) {
    const strop__setting *d = strop__settings_at(s, key);
    if (!d) continue;
    put(t, "| `%s` | ", d->ident);
    put_names(t, d);
    put(t, " | %s |", type_name(d));
    int first = -1;
    for (int k = 0; k < s->n_kinds; k++) {
      put(t, " ");
      if (d->kinds & (1u << k)) {
        put_default(t, d, k);
        if (first < 0) first = k;
      }
      put(t, " |");
    }
    put(t, " ");
    put_range(t, d, first);
    put(t, " | %s |\n", d->doc);
  }
}

/* Scheduler, trainer, tuner: the kinds that use a knob and their defaults in one column. */
static void gen_by_kind(text *t, const strop__settings *s) {
  int groups = 0;
  for (int key = 0; key < s->n; key++) groups |= strop__settings_at(s, key)->group != NULL;
  put(t, "| knob | name |%s type | %s | range | meaning |\n|---|---|%s---|---|---|---|\n",
      groups ? " group |" : "", s->kind_names ? "kinds: default" : "default",
      groups ? "---|" : "");
  for (int key = 0; key < s->n; key++) {
    const strop__setting *d = strop__settings_at(s, key);
    if (!d) continue;
    put(t, "| `%s` | ", d->ident);
    put_names(t, d);
    if (groups) put(t, " | %s", d->group ? d->group : "");
    put(t, " | %s | ", type_name(d));
    int first = -1, all = 1;
    for (int k = 0; k < s->n_kinds; k++) all &= (d->kinds >> k) & 1;
    if (!s->kind_names) {
      put_default(t, d, 0);
      first = 0;
    } else if (all) {
      put(t, "all: ");
      put_default(t, d, 0);
      first = 0;
      if (d->per_kind.kinds)
        for (int k = 0; k < s->n_kinds; k++)
          if (d->per_kind.kinds & (1u << k)) {
            put(t, "; %s: ", s->kind_names[k]);
            put_default(t, d, k);
          }
    } else {
      for (int k = 0; k < s->n_kinds; k++) {
        if (!(d->kinds & (1u << k))) continue;
        put(t, "%s%s: ", first < 0 ? "" : "; ", s->kind_names[k]);
        put_default(t, d, k);
        if (first < 0) first = k;
      }
    }
    put(t, " | ");
    put_range(t, d, first);
    if (d->per_kind.flags && s->kind_names) {
      for (int k = 0; k < s->n_kinds; k++)
        if (d->per_kind.kinds & (1u << k)) {
          put(t, "; %s: ", s->kind_names[k]);
          put_range(t, d, k);
        }
    }
    put(t, " | %s |\n", d->doc);
  }
}

/* A recipe section's own keys ("recipe:tune"): the schema's keys and types joined with their
 * lines (strop__tune_key_docs); a key without a line, or a line without a key, is an error. */
static void gen_recipe_keys(text *t, const char *section) {
  const strop__key_doc *docs = strop__tune_key_docs;
  put(t, "| key | type | meaning |\n|---|---|---|\n");
  const char *key, *type;
  const char *const *words;
  int n = 0;
  for (int i = 0; strop__recipe_schema_key(section, i, &key, &type, &words) == 1; i++, n++) {
    const char *doc = NULL;
    for (int k = 0; docs[k].key; k++)
      if (!strcmp(docs[k].section, section) && !strcmp(docs[k].key, key)) doc = docs[k].doc;
    if (!doc) {
      fprintf(stderr,
              "gen_settings_doc: the recipe key '%s.%s' has no line in "
              "lib/recipe/tune.c's strop__tune_key_docs\n",
              section, key);
      exit(2);
    }
    put(t, "| `%s` | ", key);
    if (words)
      for (int w = 0; words[w]; w++) put(t, "%s`%s`", w ? ", " : "", words[w]);
    else put(t, "%s", type);
    put(t, " | %s |\n", doc);
  }
  if (n == 0) {
    fprintf(stderr, "gen_settings_doc: no recipe section '%s'\n", section);
    exit(2);
  }
  for (int k = 0; docs[k].key; k++) {
    int found = 0;
    for (int i = 0; !found && strop__recipe_schema_key(section, i, &key, &type, &words) == 1; i++)
      found = !strcmp(docs[k].key, key);
    if (!strcmp(docs[k].section, section) && !found) {
      fprintf(stderr,
              "gen_settings_doc: strop__tune_key_docs documents '%s.%s', which the "
              "recipe schema does not have\n",
              section, docs[k].key);
      exit(2);
    }
  }
}

static void generate(const char *name, text *t) {
  if (!strncmp(name, "recipe:", 7)) gen_recipe_keys(t, name + 7);
  else if (!strcmp(name, "optimizer")) gen_optimizer(t);
  else if (!strcmp(name, "scheduler")) gen_by_kind(t, &strop__scheduler_settings);
  else if (!strcmp(name, "trainer")) gen_by_kind(t, &strop__trainer_settings);
  else if (!strcmp(name, "tuner")) gen_by_kind(t, &strop__tuner_settings);
  else {
    fprintf(stderr, "gen_settings_doc: unknown table '%s'\n", name);
    exit(2);
  }
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  text t = {0};
  char buf[4096];
  size_t k;
  put(&t, "%c", ' ');
  t.n = 0; /* an empty, allocated string */
  while ((k = fread(buf, 1, sizeof buf, f)) > 0) put(&t, "%.*s", (int)k, buf);
  fclose(f);
  return t.s;
}

static const struct {
  const char *file, *table;
} BLOCKS[] = {{"optim.md", "optimizer"},         {"optim.md", "scheduler"},
              {"recipes.md", "trainer"},         {"tune.md", "recipe:tune"},
              {"tune.md", "recipe:tune.params"}, {"tune.md", "tuner"}};

/* Replaces (or compares) every generated table of one file. Returns the number that differ. */
static int one_file(const char *dir, const char *file, int write) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  char *doc = read_all(path);
  if (!doc) {
    fprintf(stderr, "gen_settings_doc: cannot read %s\n", path);
    exit(2);
  }
  int differ = 0;
  for (size_t b = 0; b < sizeof BLOCKS / sizeof BLOCKS[0]; b++) {
    if (strcmp(BLOCKS[b].file, file)) continue;
    char begin[128], end[128];
    snprintf(begin, sizeof begin, "<!-- BEGIN settings:%s ", BLOCKS[b].table);
    snprintf(end, sizeof end, "<!-- END settings:%s -->", BLOCKS[b].table);
    char *a = strstr(doc, begin), *z = a ? strstr(a, end) : NULL;
    char *body = a ? strstr(a, "-->\n") : NULL;
    if (!a || !z || !body || body > z) {
      fprintf(stderr,
              "gen_settings_doc: %s has no generated '%s' table (between '%s...-->' "
              "and '%s')\n",
              path, BLOCKS[b].table, begin, end);
      exit(2);
    }
    body += 4;
    text g = {0};
    generate(BLOCKS[b].table, &g);
    if ((size_t)(z - body) == g.n && !memcmp(body, g.s, g.n)) {
      free(g.s);
      continue;
    }
    differ++;
    if (!write) {
      fprintf(stderr,
              "%s: the '%s' knob table differs from lib's settings table; the generated "
              "one is:\n%s",
              path, BLOCKS[b].table, g.s);
    } else {
      text out = {0};
      put(&out, "%.*s%s%s", (int)(body - doc), doc, g.s, z);
      free(doc);
      doc = out.s;
    }
    free(g.s);
  }
  if (write && differ) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(doc, f) == EOF || fclose(f) != 0) {
      fprintf(stderr, "gen_settings_doc: cannot write %s\n", path);
      exit(2);
    }
    printf("gen_settings_doc: rewrote %d table(s) in %s\n", differ, path);
  }
  free(doc);
  return differ;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--print")) {
    text g = {0};
    generate(argv[2], &g);
    fputs(g.s, stdout);
    free(g.s);
    return 0;
  }
  if (argc != 3 || (strcmp(argv[1], "--check") && strcmp(argv[1], "--write"))) {
    fprintf(stderr, "usage: gen_settings_doc --check|--write DOCS_DIR | --print TABLE\n");
    return 2;
  }
  const int write = !strcmp(argv[1], "--write");
  int differ = 0;
  static const char *const files[] = {"optim.md", "recipes.md", "tune.md"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    differ += one_file(argv[2], files[i], write);
  if (differ && !write) {
    fprintf(stderr,
            "gen_settings_doc: %d knob table(s) in %s are out of date; regenerate them "
            "with: build/tests/gen_settings_doc --write docs\n",
            differ, argv[2]);
    return 1;
  }
  return 0;
}
