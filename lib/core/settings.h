/* SPDX-License-Identifier: MIT */
/* strop — one settings engine for every object with knobs (optimizer, scheduler, trainer,
 * tuner): each object declares its table once; validation, messages, queries, parsing and
 * formatting come from here, and recipes, bindings and docs read the same tables. */
#ifndef STROP_SETTINGS_H
#define STROP_SETTINGS_H

#include "core/core.h"

/* What a setting holds. Every value travels as a double; INT, FLAG and ENUM values are
 * integral (exact up to 2^53). */
typedef enum strop__set_type {
  STROP__SET_FLOAT = 0, /* a real number */
  STROP__SET_INT = 1,   /* an integer */
  STROP__SET_FLAG = 2,  /* 0 or 1 (false / true) */
  STROP__SET_ENUM = 3,  /* lo, lo + 1, ...: one per word of `words` */
  STROP__SET_LIST = 4   /* a list of int64 values, each in [lo, hi] (set by the object) */
} strop__set_type;

/* Flag bits, equal to the public strop_knob_flags of strop/optim.h (checked there). A table
 * entry's `flags` holds the range flags; the type bits are added by strop__setting_flags. */
enum {
  STROP__KNOB_INT = 1,       /* integral: INT, FLAG and ENUM (the _set_int setters take them) */
  STROP__KNOB_LO_OPEN = 2,   /* the lower bound itself is refused */
  STROP__KNOB_HI_OPEN = 4,   /* the upper bound itself is refused */
  STROP__KNOB_LIST = 8,      /* a list */
  STROP__KNOB_FLAG = 16,     /* 0/1 */
  STROP__KNOB_ENUM = 32,     /* named values */
  STROP__KNOB_INF_OK = 64,   /* an infinite bound of the range is itself a value (documented) */
  STROP__KNOB_REQUIRED = 128 /* no default: unset (0) until the host sets it */
};

/* A different default (and extra flags) for some kinds of the object. */
typedef struct strop__setting_kind {
  unsigned kinds; /* bit k: kind k */
  double def;
  int flags;
} strop__setting_kind;

/* One setting. In a table, entry k describes the public key k. */
typedef struct strop__setting {
  int key;                  /* the public enum value (its index in the table) */
  const char *ident;        /* that enum's identifier, "STROP_OPT_LR" (docs) */
  const char *name;         /* "lr": messages, recipes, bindings, _knob_find */
  const char *alias;        /* another spelling _knob_find and recipes take ("t_max"), or NULL */
  int type;                 /* strop__set_type */
  unsigned kinds;           /* bit k: applies to kind k (objects without kinds: bit 0) */
  double def;               /* default (REQUIRED: 0, meaning unset; LIST: the empty list) */
  double lo, hi;            /* range; an infinite bound means "no limit" */
  int flags;                /* STROP__KNOB_LO_OPEN / _HI_OPEN / _INF_OK / _REQUIRED */
  const char *const *words; /* ENUM: the words of lo, lo + 1, ..., NULL-terminated */
  strop__setting_kind per_kind;
  const char *group; /* the part of the object it configures ("loss"), or NULL */
  const char *doc;   /* one line */
} strop__setting;

/* An object's table. */
typedef struct strop__settings {
  const char *object;            /* "optimizer": the public functions are strop_<object>_... */
  const char *const *kind_names; /* names of the kinds in messages ("SGD"), or NULL */
  int n_kinds;                   /* 1 for an object without kinds */
  const char *kind_phrase;       /* printf format naming a kind: "%s", "the %s scheduler" */
  const strop__setting *v;
  int n;
} strop__settings;

/* The entry of key, or NULL when the table has none. */
const strop__setting *strop__settings_at(const strop__settings *t, int key);
/* The entry of key for kind; errors name fn: unknown kind, unknown key, or a key the kind does
 * not use (STROP_E_INVALID_ARG). */
strop_status strop__settings_lookup(const strop__settings *t, const char *fn, int kind, int key,
                                    const strop__setting **out);

/* What a setter or getter takes. */
enum {
  STROP__WANT_FLOAT = 0,  /* FLOAT only (the _float functions) */
  STROP__WANT_INT = 1,    /* INT, FLAG, ENUM (the _int functions) */
  STROP__WANT_SCALAR = 2, /* anything but a list (the _double functions) */
  STROP__WANT_LIST = 3    /* LIST only */
};
/* STROP_OK when s's type suits `want`; else an error naming fn, the setting, its type and the
 * function to use (verb "set" or "get"). */
strop_status strop__settings_want(const strop__settings *t, const char *fn,
                                  const strop__setting *s, int want, const char *verb);

/* The public flags of s for kind (range flags, per-kind flags and the type bits). */
int strop__setting_flags(const strop__setting *s, int kind);
double strop__setting_default(const strop__setting *s, int kind);
/* 1 when name is s's name or alias. */
int strop__setting_matches(const strop__setting *s, const char *name);

/* Validates a value for s used by kind: a number (finite unless the range's infinite bound is
 * accepted), within the range, integral for INT, 0/1 for FLAG, one of the values of ENUM.
 * The error names fn, the setting, the allowed values and the value given. */
strop_status strop__setting_check(const char *fn, const strop__setting *s, int kind, double v);

/* Text <-> value, as recipes and bindings write values: FLOAT a number, INT an integer, FLAG
 * true/false (yes/no, on/off, 1/0), ENUM one of its words. parse returns 1 on success. */
int strop__setting_parse(const strop__setting *s, const char *text, double *out);
/* "a number", "an integer", "true or false", "one of cos, linear", "a list of integers". */
const char *strop__setting_form(const strop__setting *s, char *buf, size_t cap);
/* The value as text (shortest round trip for numbers, the word for FLAG and ENUM); snprintf
 * style return. */
size_t strop__setting_format(const strop__setting *s, double v, char *buf, size_t cap);
/* The allowed values as text: "[0, 1)", "(0, inf]", "0 or 1", "0 (cos) or 1 (linear)". */
size_t strop__setting_range_str(const strop__setting *s, int kind, char *buf, size_t cap);

/* Every value of kind's defaults into values[0 .. t->n) (0 for keys the kind does not use). */
void strop__settings_defaults(const strop__settings *t, int kind, double *values);

/* ---- the public queries, shared by every object (fn names the public function) ---- */
strop_status strop__settings_range(const strop__settings *t, const char *fn, int kind, int key,
                                   double *lo, double *hi, int *flags);
const char *strop__settings_name(const strop__settings *t, int key);
const char *strop__settings_doc(const strop__settings *t, int key);
/* name (or alias) -> key; STROP_E_NOT_FOUND listing the known names. */
strop_status strop__settings_find(const strop__settings *t, const char *fn, const char *name,
                                  int *key);
strop_status strop__settings_default_of(const strop__settings *t, const char *fn, int kind,
                                        int key, double *out);
/* Parses text for key (any kind); STROP_E_INVALID_ARG naming the form expected. */
strop_status strop__settings_parse(const strop__settings *t, const char *fn, int key,
                                   const char *text, double *out);

#endif
