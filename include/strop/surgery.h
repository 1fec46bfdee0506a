/* SPDX-License-Identifier: MIT */
/* strop — layer surgery: a plan of edits on a model (freeze, replace, insert, remove,
 * truncate, append, LoRA, parameter groups) applied as one transaction. */
#ifndef STROP_SURGERY_H
#define STROP_SURGERY_H

#include "common.h"
#include "error.h"
#include "model.h"

/**
 * @file surgery.h
 * @brief Editing pre-trained models for fine-tuning: a plan of edits applied as one
 *        transaction.
 *
 * The one-call edits and model tools that surgery uses — strop_model_freeze(),
 * strop_model_unfreeze(), strop_model_clone(), strop_model_summary(),
 * strop_model_memory_estimate(), and LoRA's strop_model_lora_merge(), _unmerge(), _save() and
 * _load() — are declared in model.h with every other strop_model_* function.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief A plan of edits on one model, applied as one transaction.
 *
 * Edits are added in order and address nodes and parameters by exact name or by glob
 * (`*` any run of characters, dots included; `?` one character; `[0-3]`, `[!ab]` a class;
 * `\` escapes). A parameter matches a glob when its full name ("features.0.weight") or its
 * node's name ("features.0") matches. Adding an edit checks its own arguments (and parses a
 * new layer's options); names are resolved and shapes re-inferred only when the plan runs
 * (strop_surgery_validate(), strop_surgery_describe(), strop_surgery_apply()), which returns
 * the failing edit's status. Nothing happens to the model until strop_surgery_apply().
 * The plan borrows its model: the model must outlive the plan, and the two count as one
 * handle for threads (@ref threads).
 * @since 0.1
 */
typedef struct strop_surgery strop_surgery;

/** @brief Flags of strop_surgery_freeze() and strop_surgery_unfreeze(). @since 0.1 */
enum strop_freeze_flags {
  /** Leave the BatchNorm nodes' statistics mode alone. Without it, freezing all parameters of
   *  a BatchNorm node also keeps it in inference mode (running statistics, not updated, even
   *  in train mode) and unfreezing takes it out again — the Keras fine-tuning rule. */
  STROP_FREEZE_KEEP_BN_MODE = 1
};

/**
 * @brief Creates an empty plan on @p model.
 * @param[in,out] model The model to edit, finalized; borrowed, must outlive the plan.
 * @param[out]    out   The plan, owned by the caller (strop_surgery_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (model not finalized);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_create(strop_model *model,
                                                            strop_surgery **out);

/**
 * @brief Frees a plan (not its model).
 * @param[in] s The plan, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_surgery_free(strop_surgery *s);

/**
 * @brief Seed for the edits that create parameters without a seed of their own (insert,
 *        append, LoRA's A matrices). Default: the model's finalize seed. Each edit draws from
 *        its own stream, so adding an edit does not change another edit's values.
 * @param[in,out] s    The plan.
 * @param[in]     seed The seed.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_set_seed(strop_surgery *s, uint64_t seed);

/**
 * @brief Number of edits in the plan.
 * @param[in] s The plan.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_surgery_num_edits(const strop_surgery *s);

/**
 * @brief Edit: freeze the parameters matching @p glob (no gradient, no optimizer update, no
 *        weight decay). Buffers are never trainable and are not counted.
 * @param[in,out] s     The plan.
 * @param[in]     glob  Parameter or node name, or a glob ("features.*", "*.bias"). Copied.
 * @param[in]     flags 0 or ::STROP_FREEZE_KEEP_BN_MODE.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL plan, NULL or empty glob, unknown flag);
 *         STROP_E_NOMEM. When the plan runs, this edit fails with STROP_E_NOT_FOUND if no
 *         parameter matches, STROP_E_INVALID_ARG if the name is a buffer.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_freeze(strop_surgery *s, const char *glob,
                                                            int flags);

/**
 * @brief Edit: make the parameters matching @p glob trainable again.
 * @param[in,out] s     The plan.
 * @param[in]     glob  Parameter or node name, or a glob. Copied.
 * @param[in]     flags 0 or ::STROP_FREEZE_KEEP_BN_MODE.
 * @return STROP_OK and the statuses of strop_surgery_freeze(), when added and when run.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_unfreeze(strop_surgery *s, const char *glob,
                                                              int flags);

/**
 * @brief Edit: replace node @p node by a new layer of @p type with @p options, keeping its
 *        name and inputs, its parameters freshly initialised (PyTorch's default init) from
 *        @p seed. Downstream shapes are re-inferred; a node that cannot take the new shape
 *        makes the plan fail with its name and the shapes.
 * @param[in,out] s       The plan.
 * @param[in]     node    Exact name or a glob matching exactly one node. Copied.
 * @param[in]     type    A registered layer type ("linear"). Copied.
 * @param[in]     options As strop_model_add(): "out_features=5". NULL for none. Copied;
 *                        parsed now.
 * @param[in]     seed    Seed of the new parameters.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL plan, NULL or empty node or type, options that
 *         do not parse); STROP_E_NOT_FOUND (unknown type); STROP_E_NOMEM. When the plan
 *         runs: STROP_E_NOT_FOUND (no such node), STROP_E_INVALID_ARG (several matches, a
 *         wrong input count), STROP_E_SHAPE (a shape conflict).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_replace(strop_surgery *s, const char *node,
                                                             const char *type,
                                                             const char *options, uint64_t seed);

/**
 * @brief Edit: insert a new node @p new_name after @p node: it takes @p node's output and
 *        every former consumer of @p node reads the new node instead (after the output node,
 *        it becomes the output). Parameters are initialised from the plan's seed.
 * @param[in,out] s        The plan.
 * @param[in]     node     Exact name or a glob matching exactly one node. Copied.
 * @param[in]     new_name The new node's name. Copied.
 * @param[in]     type     A registered layer type. Copied.
 * @param[in]     options  As strop_model_add(); NULL for none. Copied; parsed now.
 * @return STROP_OK; otherwise as strop_surgery_replace() (STROP_E_INVALID_ARG also for a
 *         NULL or empty @p new_name); when the plan runs, also STROP_E_INVALID_ARG if
 *         @p new_name is taken or not a valid name.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_insert_after(strop_surgery *s,
                                                                  const char *node,
                                                                  const char *new_name,
                                                                  const char *type,
                                                                  const char *options);

/**
 * @brief Edit: insert a new node @p new_name before @p node (which must have one input): the
 *        new node reads @p node's input and @p node reads the new node.
 * @param[in,out] s        The plan.
 * @param[in]     node     Exact name or a glob matching exactly one node. Copied.
 * @param[in]     new_name The new node's name. Copied.
 * @param[in]     type     A registered layer type. Copied.
 * @param[in]     options  As strop_model_add(); NULL for none. Copied; parsed now.
 * @return STROP_OK; otherwise as strop_surgery_insert_after().
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_insert_before(strop_surgery *s,
                                                                   const char *node,
                                                                   const char *new_name,
                                                                   const char *type,
                                                                   const char *options);

/**
 * @brief Edit: remove the node(s) matching @p node; each must have one input, and its
 *        consumers are reconnected to that input (the shapes must allow it). Removing the
 *        output node makes its input the output when that input is the node before it.
 * @param[in,out] s    The plan.
 * @param[in]     node Exact name or a glob. Copied.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL plan, NULL or empty @p node); STROP_E_NOMEM.
 *         When the plan runs: STROP_E_NOT_FOUND (no match), STROP_E_INVALID_ARG (several
 *         inputs, nothing left), STROP_E_SHAPE (a consumer cannot take the input's shape).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_remove(strop_surgery *s, const char *node);

/**
 * @brief Edit: keep @p node and what it depends on, drop everything else; @p node becomes
 *        the output (a trunk used as a feature extractor).
 * @param[in,out] s    The plan.
 * @param[in]     node Exact name or a glob matching exactly one node. Copied.
 * @return STROP_OK; otherwise as strop_surgery_remove().
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_truncate(strop_surgery *s, const char *node);

/**
 * @brief Edit: add a node on top of the current output; it becomes the output. Parameters
 *        are initialised from the plan's seed.
 * @param[in,out] s        The plan.
 * @param[in]     new_name The new node's name. Copied.
 * @param[in]     type     A registered layer type. Copied.
 * @param[in]     options  As strop_model_add(); NULL for none. Copied; parsed now.
 * @return STROP_OK; otherwise as strop_surgery_insert_after().
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_append(strop_surgery *s,
                                                            const char *new_name,
                                                            const char *type,
                                                            const char *options);

/**
 * @brief Edit: add LoRA adapters to the linear nodes and attention projections matching
 *        @p glob.
 *
 * A multihead_attention node's projections are addressed as `<node>.q_proj`, `<node>.k_proj`,
 * `<node>.v_proj` and `<node>.out_proj` (e.g. "blocks.*.attn.q_proj", "*.v_proj"); each
 * matching projection gets `<node>.<proj>.lora_A.weight` [rank, D] and `.lora_B.weight`
 * [D, rank] (B zero) and the node's base projections are frozen. Dropout on attention
 * adapters is not supported (STROP_E_UNSUPPORTED when the plan runs with @p dropout > 0), nor
 * adding adapters to a node whose adapters are merged (STROP_E_STATE).
 *
 * Each linear node becomes a `lora_linear` of the same name: its base `<node>.weight` and
 * `<node>.bias` keep their values and are frozen; `<node>.lora_A.weight` [rank, in]
 * (kaiming-uniform, as PEFT) and `<node>.lora_B.weight` [out, rank] (zeros) are added and
 * trainable, so the first forward equals the base exactly. The output is
 * x W^T + b + (alpha / rank) * (dropout(x) A^T) B^T, dropout in train mode only.
 *
 * An embedding node named exactly (since 0.2; a glob never matches one, so patterns adapt the
 * nodes they did in 0.1) becomes a `lora_embedding` (PEFT's lora.Embedding): its `<node>.weight`
 * [V, D] is frozen; `<node>.lora_embedding_A` [rank, V] (zeros) and `<node>.lora_embedding_B`
 * [D, rank] (N(0, 1)) train; token id i looks up weight[i] + (alpha / rank) B A[:, i]. As in
 * PEFT, no dropout applies to it (@p dropout is kept for the adapter file). An embedding whose
 * weight another node shares (GPT-2's lm_head) cannot be merged: strop_model_lora_merge()
 * refuses it.
 * @param[in,out] s       The plan.
 * @param[in]     glob    Node name or glob; non-linear matches are skipped, but an exact name
 *                        must be a linear or embedding node or a projection. Copied.
 * @param[in]     rank    r >= 1.
 * @param[in]     alpha   PEFT's lora_alpha (> 0, finite); the scale is alpha / rank.
 * @param[in]     dropout In [0, 1).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL plan or glob, bad rank, alpha or dropout);
 *         STROP_E_NOMEM. When the plan runs: STROP_E_NOT_FOUND (no linear node matches),
 *         STROP_E_INVALID_ARG (an exact name that is neither linear nor an embedding, or
 *         already has adapters),
 *         STROP_E_UNSUPPORTED and STROP_E_STATE (above).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_lora(strop_surgery *s, const char *glob,
                                                          int64_t rank, float alpha,
                                                          float dropout);

/**
 * @brief Edit: set the optimizer's per-parameter learning-rate multiplier and weight-decay
 *        switch for the parameters matching @p glob (e.g. 0.1 for "features.*", no decay
 *        for "*.bias").
 * @param[in,out] s        The plan.
 * @param[in]     glob     Parameter or node name, or a glob. Copied.
 * @param[in]     lr_mult  Multiplier >= 0, or a negative value to leave it unchanged.
 * @param[in]     no_decay 1: no weight decay; 0: decay; negative: leave unchanged.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL plan or glob, a non-finite @p lr_mult,
 *         @p no_decay > 1, nothing to change); STROP_E_NOMEM. When the plan runs:
 *         STROP_E_NOT_FOUND if no parameter matches.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_param_group(strop_surgery *s,
                                                                 const char *glob, float lr_mult,
                                                                 int no_decay);

/**
 * @brief Runs the whole plan on a copy of the model, checking it against the model's current
 *        state without changing it (names resolved, shapes re-inferred, conflicts found).
 * @param[in] s The plan.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL), or the status of the first failing edit (see
 *         each edit) with strop_last_error() naming the edit (1-based index and kind) and
 *         why; STROP_E_NOMEM (the copy).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_validate(const strop_surgery *s);

/**
 * @brief A dry run: what the plan would do, as text — one line per edit, then nodes added,
 *        removed and replaced, parameters added, removed, frozen and unfrozen, the output
 *        shape and the trainable count before → after. If an edit would fail, the text ends
 *        with that edit and the reason (also left in strop_last_error()). The model is not
 *        changed.
 * @param[in]  s   The plan.
 * @param[out] buf Caller's buffer of @p cap bytes (may be NULL when @p cap is 0); always
 *                 NUL-terminated when @p cap > 0.
 * @param[in]  cap Bytes available at @p buf.
 * @return The length of the full text (excluding NUL), snprintf-style; -1 for a NULL plan, a
 *         NULL @p buf with @p cap > 0, or out of memory.
 * @since 0.1
 */
STROP_API int64_t strop_surgery_describe(const strop_surgery *s, char *buf, size_t cap);

/**
 * @brief Applies every edit, in order, as one transaction.
 *
 * The edits run on a deep copy of the model; only when all succeed does the copy replace
 * the model's contents. On any failure the model is exactly as it was (weights, flags,
 * structure) and strop_last_error() names the edit and why. Parameters of untouched nodes
 * keep their values bit for bit. A plan of only freeze/unfreeze/param_group edits changes
 * flags in place; any other plan restructures the model behind the same handle: tensor views
 * made before must be made again (optimizers match parameters by name at their next step).
 * The plan is kept (it can be described, not usefully re-applied).
 * @param[in,out] s The plan; its model is changed.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL plan); the statuses of the edits when the plan
 *         runs (see each: STROP_E_NOT_FOUND, STROP_E_INVALID_ARG, STROP_E_SHAPE,
 *         STROP_E_STATE, STROP_E_UNSUPPORTED); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_apply(strop_surgery *s);

STROP_END_DECLS

#endif
