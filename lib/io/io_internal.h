/* SPDX-License-Identifier: MIT */
/* strop — what the io files share with each other and with the trainer: loading a model's
 * tensors from an open safetensors file and adding them to a writer. */
#ifndef STROP_IO_INTERNAL_H
#define STROP_IO_INTERNAL_H

#include "io/safetensors.h"
#include "strop/io.h"
#include "strop/model.h"

/* Loads the model's tensors from f (names remapped from -> to when from != NULL). With
 * ignore_unexpected, file tensors that match no model tensor are skipped silently (a
 * checkpoint's other sections). Strict mode validates everything first and leaves the model
 * unchanged on failure. Errors: "<fn>: <file>: ...". */
strop_status strop__model_load_st(const char *fn, strop_model *m, const strop__st_file *f,
                                  int flags, const char *from, const char *to,
                                  int ignore_unexpected, strop_load_report **report_out);

/* How file tensor names become model names. */
typedef struct strop__load_names {
  const char *from, *to;       /* one prefix replaced (NULL from: none) */
  const char *const *prefixes; /* prefixes a file's names may carry and the model's lack, or
                                 * the other way round ("transformer."); NULL-terminated */
  const char *const *ignore;   /* globs of file tensors that are not parameters (GPT-2's
                                 * "*.attn.bias" masks), skipped when no parameter has their
                                 * name; NULL-terminated */
  int ignore_unexpected;       /* skip whatever matches no parameter (a checkpoint's other
                                 * sections) instead of reporting it */
} strop__load_names;

/* Loads the model's tensors from several files (a sharded checkpoint) as one: every model
 * tensor must come from exactly one file. Validation as strop__model_load_st; messages name
 * the shard of an unexpected tensor. nm may be NULL (names as they are). */
strop_status strop__model_load_files(const char *fn, strop_model *m,
                                     const strop__st_file *const *files, int n_files, int flags,
                                     const strop__load_names *nm, strop_load_report **report_out);

/* Adds every parameter and buffer (borrowed: the model must not change until the writer is
 * saved or freed) under its state_dict name. */
strop_status strop__model_add_to_writer(const char *fn, const strop_model *m,
                                        strop__st_writer *w);

/* The safetensors "__metadata__" prefix of the model's metadata entries ("strop.meta.classes"). */
#define STROP__META_PREFIX "strop.meta."
/* Sets the header metadata a model file carries: "format" = "strop", "strop_version", and
 * every model metadata entry as STROP__META_PREFIX "<key>". */
strop_status strop__model_meta_to_writer(const char *fn, const strop_model *m,
                                         strop__st_writer *w);

/* The model's YAML spec (what strop_model_save_spec() writes) appended to b, for writers
 * that commit it together with other files (inference export). Errors name fn. */
struct strop__sbuf;
strop_status strop__model_spec_text(const char *fn, const strop_model *m, struct strop__sbuf *b);

/* Limits of the YAML spec reader. */
#define STROP__SPEC_MAX_BYTES ((size_t)16 * 1024 * 1024)
#define STROP__SPEC_MAX_DEPTH 32
#define STROP__SPEC_MAX_NODES 200000
#define STROP__SPEC_MAX_SCALAR 4096

#endif
