/* strop — surgery internals shared by the files of lib/surgery: the glob matcher, the plan
 * runner that edits a clone, and a growable text buffer for describe and summary. */
#ifndef STROP_SURGERY_IMPL_H
#define STROP_SURGERY_IMPL_H

#include "graph/graph.h"
#include "strop/surgery.h"

/* fnmatch-like over whole names: '*' any run of characters (dots included), '?' one
 * character, "[0-3]" / "[!ab]" a class, '\' escapes. 1 on a match. */
int strop__glob_match(const char *pat, const char *s);
/* 1 if pat has any of * ? [ (so it is a pattern, not an exact name) */
int strop__glob_is_pattern(const char *pat);

/* A growable NUL-terminated string; oom is sticky. */
typedef struct strop__text {
  char *s;
  size_t len, cap;
  int oom;
} strop__text;
void strop__text_add(strop__text *t, const char *fmt, ...) STROP__PRINTF(2, 3);
void strop__text_free(strop__text *t);
/* Copies t into buf snprintf-style and returns the full length, or -1 (NOMEM) when t->oom. */
int64_t strop__text_out(const char *fn, const strop__text *t, char *buf, size_t cap);

/* Runs the plan on a clone of its model. On success *out is the edited clone (reindexed) and
 * *flags_only says whether the plan only changes flags (freeze, unfreeze, param_group). log,
 * when not NULL, receives one line per edit. On failure the error names fn, the edit and why;
 * *out is NULL. */
strop_status strop__surgery_run(const char *fn, const strop_surgery *s, strop__text *log,
                                strop_model **out, int *flags_only);
/* Moves the clone's contents into model and frees the old contents (never fails). */
void strop__model_swap_in(strop_model *model, strop_model *clone);
/* Copies trainable/lr_mult/no_decay and frozen_stats from a same-structure clone. */
void strop__model_copy_flags(strop_model *model, const strop_model *clone);

/* Number of scalar values in params (buffers excluded), trainable only if asked. */
int64_t strop__node_count(const strop__node *n, int trainable_only);

#endif
