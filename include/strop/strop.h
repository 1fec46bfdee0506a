/* SPDX-License-Identifier: MIT */
/* strop — umbrella header: include this one. */
#ifndef STROP_H
#define STROP_H

/**
 * @file strop.h
 * @brief Includes every public strop header; a program includes this one.
 * @since 0.1
 */

/**
 * @mainpage strop — C API reference
 *
 * strop is an embeddable C library for fine-tuning pre-trained neural networks. A program
 * includes `<strop/strop.h>` and links `libstrop` (`pkg-config --cflags --libs strop`, or
 * CMake's `find_package(strop)` and `strop::strop`). The guide, the file formats and the ABI
 * policy are in the `docs/` folder of the source tree (installed in the doc directory).
 *
 * | header | what it declares |
 * |---|---|
 * | common.h | export, attribute and linkage macros |
 * | version.h | compile-time and run-time version |
 * | error.h | status codes, the per-thread error sentence, logging |
 * | runtime.h | thread count, the portable random generator |
 * | tensor.h | float32 tensors |
 * | model.h | models: build, run, inspect, parameters, metadata |
 * | io.h | YAML specs, safetensors weights, load reports, safetensors listing |
 * | surgery.h | plans of edits (freeze, replace, insert, LoRA ...) applied as a transaction |
 * | pretrained.h | torchvision and Hugging Face checkpoints |
 * | data.h | datasets, splits, batch iteration, transforms, vocabularies |
 * | optim.h | optimizers and learning-rate schedulers |
 * | train.h | the trainer: steps, evaluation, fit, checkpoints, export, prediction |
 * | recipe.h | YAML recipes: run and tune a whole fine-tuning |
 * | tune.h | hyperparameter search |
 *
 * @section conventions Conventions
 *
 * - **Status codes.** Every call that can fail returns a ::strop_status: ::STROP_OK (0) or a
 *   negative code, and leaves a sentence naming the function, the argument and the values in
 *   strop_last_error(). The statuses each function lists under "Returns" are the ones it
 *   returns; a program must treat any other negative value as a failure too (the list of
 *   codes only grows). ::STROP_E_INTERNAL (a broken invariant: a bug in strop) may come
 *   from any call and is not listed. Results go through out-parameters; what a failing call
 *   leaves in them is said by each function (a handle out-parameter is mostly set to NULL).
 * - **Ownership.** A handle returned through a `**out` parameter belongs to the caller, who
 *   frees it with the `_free` function its documentation names (every `_free` takes NULL).
 *   A pointer returned as the result is borrowed: it lives as long as the object it came
 *   from and is not restructured, and is never freed by the caller. Caller buffers and
 *   strings passed in are copied (or only read during the call) unless the function's name
 *   or documentation says `_wrap`, `_view` or "borrowed", which then says for how long the
 *   memory must stay valid.
 * - **Strings out** use the caller's buffer and capacity, snprintf-style: the result is the
 *   full length without the NUL (so a call with `cap` 0 and a NULL buffer asks for the size),
 *   the text is NUL-terminated and truncated when `cap` > 0, and -1 means failure.
 * - **Option structs** (`strop_*_options`) start with their size in bytes: fill one with its
 *   `_init` function, then change fields. Fields are only appended; the library reads the
 *   bytes the caller's size covers, so a program built against older headers keeps working.
 *   A NULL options pointer means the defaults.
 * - **Knobs** are set through typed setters with an enum key and a table of names, ranges,
 *   defaults and one-line docs (`_knob_range`, `_knob_default`, `_knob_doc` ...).
 *
 * @section threads Threads
 *
 * strop needs no global initialisation. **One handle from one thread at a time**: distinct
 * handles may be used from distinct threads at once, but two threads must not call into the
 * same handle concurrently without the host's locking. A handle that borrows another (a
 * surgery plan its model, an optimizer or trainer its model, a trainer its optimizer and
 * scheduler) counts as the same handle as what it borrows: use them from one thread at a
 * time. Reference-counted sharing is safe across threads: tensors that share storage (views)
 * and datasets that share samples (views, iterators) may be freed from different threads.
 * Functions that only read a handle (`const` arguments) may run concurrently with each other
 * on the same handle when no thread modifies it, where their documentation says so. The error
 * sentence (strop_last_error()) is per thread.
 *
 * Every function follows this rule unless its documentation says otherwise: "Thread-safe"
 * means any thread may call it at any time (version, status names, the static tables of
 * layer types and knobs); the tuner locks itself and may be shared; the log handler and the
 * thread count are process-wide settings (strop_set_log_handler(), strop_set_num_threads()).
 *
 * @section versions Versions
 *
 * `@since 0.x` on a declaration is the release that added it; a function's is the version
 * node of `lib/strop.map` that exports it (`STROP_0.1`, `STROP_0.2`), so a program that calls
 * a 0.2 function records that it needs `STROP_0.2` and the loader refuses an older library
 * with a clear message. Deprecated functions carry `@deprecated` (naming the replacement) and
 * the ::STROP_DEPRECATED attribute, and keep their symbol and behaviour until the SONAME
 * changes. docs/abi.md says what may change between releases and how old binaries keep
 * working.
 */

#include "common.h"
#include "version.h"
#include "error.h"
#include "tensor.h"
#include "runtime.h"
#include "model.h"
#include "io.h"
#include "surgery.h"
#include "data.h"
#include "optim.h"
#include "dist.h"
#include "train.h"
#include "recipe.h"
#include "tune.h"
#include "pretrained.h"
#include "text.h"
#include "generate.h"

#endif
