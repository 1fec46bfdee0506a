/* strop — layer surgery: a plan of edits on a model (freeze, replace, insert, remove,
 * truncate, append, LoRA, parameter groups) applied as one transaction; LoRA merge and
 * PEFT-compatible adapter files; clone, summary and memory estimate of a model. */
#ifndef STROP_SURGERY_H
#define STROP_SURGERY_H

#include "common.h"
#include "error.h"
#include "model.h"

/** @file surgery.h @brief Editing pre-trained models for fine-tuning. @since 0.1 */

STROP_BEGIN_DECLS

/**
 * @brief A plan of edits on one model, applied as one transaction.
 *
 * Edits are added in order and address nodes and parameters by exact name or by glob
 * (`*` any run of characters, dots included; `?` one character; `[0-3]`, `[!ab]` a class;
 * `\` escapes). A parameter matches a glob when its full name ("features.0.weight") or its
 * node's name ("features.0") matches. Nothing happens to the model until
 * strop_surgery_apply(). The plan borrows its model: the model must outlive the plan.
 * One plan from one thread at a time.
 */
typedef struct strop_surgery strop_surgery;

/** Flags of strop_surgery_freeze() and strop_surgery_unfreeze(). @since 0.1 */
enum strop_freeze_flags {
  /** Leave the BatchNorm nodes' statistics mode alone. Without it, freezing all parameters of
   *  a BatchNorm node also keeps it in inference mode (running statistics, not updated, even
   *  in train mode) and unfreezing takes it out again — the Keras fine-tuning rule. */
  STROP_FREEZE_KEEP_BN_MODE = 1
};

/**
 * @brief Creates an empty plan on @p model (which must be finalized).
 * @param model The model to edit; borrowed, must outlive the plan.
 * @param[out] out The plan, owned by the caller (strop_surgery_free()).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (model not finalized);
 *         STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_create(strop_model *model,
                                                            strop_surgery **out);

/** @brief Frees a plan (not its model). NULL is a no-op. @since 0.1 */
STROP_API void strop_surgery_free(strop_surgery *s);

/**
 * @brief Seed for the edits that create parameters without a seed of their own (insert,
 *        append, LoRA's A matrices). Default: the model's finalize seed. Each edit draws from
 *        its own stream, so adding an edit does not change another edit's values.
 * @return STROP_OK or STROP_E_INVALID_ARG (NULL). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_set_seed(strop_surgery *s, uint64_t seed);

/** @brief Number of edits in the plan, or -1 for NULL. @since 0.1 */
STROP_API int64_t strop_surgery_num_edits(const strop_surgery *s);

/**
 * @brief Edit: freeze the parameters matching @p glob (no gradient, no optimizer update, no
 *        weight decay). Buffers are never trainable and are not counted.
 * @param glob  Parameter or node name, or a glob ("features.*", "*.bias"). Copied.
 * @param flags 0 or ::STROP_FREEZE_KEEP_BN_MODE.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or empty glob, unknown flag); STROP_E_NOMEM.
 *         When applied: STROP_E_NOT_FOUND if no parameter matches; STROP_E_INVALID_ARG if the
 *         name is a buffer. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_freeze(strop_surgery *s, const char *glob,
                                                            int flags);

/** @brief Edit: make the parameters matching @p glob trainable again (see
 *  strop_surgery_freeze() for glob, flags and statuses). @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_surgery_unfreeze(strop_surgery *s,
                                                              const char *glob, int flags);

/**
 * @brief Edit: replace node @p node by a new layer of @p type with @p options, keeping its
 *        name and inputs, its parameters freshly initialised (PyTorch's default init) from
 *        @p seed. Downstream shapes are re-inferred; a node that cannot take the new shape
 *        makes the plan fail with its name and the shapes.
 * @param node    Exact name or a glob matching exactly one node. Copied.
 * @param type    A registered layer type ("linear"). Copied.
 * @param options As strop_model_add(): "out_features=5". NULL for none. Copied.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL arguments, options that do not parse);
 *         STROP_E_NOT_FOUND (unknown type); STROP_E_NOMEM. When applied: STROP_E_NOT_FOUND (no
 *         such node), STROP_E_INVALID_ARG (several matches, wrong input count),
 *         STROP_E_SHAPE (a shape conflict). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_replace(strop_surgery *s, const char *node,
                                                             const char *type,
                                                             const char *options, uint64_t seed);

/**
 * @brief Edit: insert a new node @p new_name after @p node: it takes @p node's output and
 *        every former consumer of @p node reads the new node instead (after the output node,
 *        it becomes the output). Parameters are initialised from the plan's seed.
 * @return As strop_surgery_replace(); also STROP_E_INVALID_ARG when applied if @p new_name
 *         is taken or not a valid name. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_insert_after(strop_surgery *s,
                                                                  const char *node,
                                                                  const char *new_name,
                                                                  const char *type,
                                                                  const char *options);

/**
 * @brief Edit: insert a new node @p new_name before @p node (which must have one input): the
 *        new node reads @p node's input and @p node reads the new node.
 * @return As strop_surgery_insert_after(). @since 0.1
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
 * @return STROP_OK; STROP_E_INVALID_ARG; STROP_E_NOMEM. When applied: STROP_E_NOT_FOUND,
 *         STROP_E_INVALID_ARG (several inputs, nothing left), STROP_E_SHAPE. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_remove(strop_surgery *s, const char *node);

/**
 * @brief Edit: keep @p node and what it depends on, drop everything else; @p node becomes
 *        the output (a trunk used as a feature extractor).
 * @return As strop_surgery_remove(). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_truncate(strop_surgery *s,
                                                              const char *node);

/**
 * @brief Edit: add a node on top of the current output; it becomes the output. Parameters
 *        are initialised from the plan's seed.
 * @return As strop_surgery_insert_after(). @since 0.1
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
 * adapters is not supported (STROP_E_UNSUPPORTED when applied with @p dropout > 0), nor
 * adding adapters to a node whose adapters are merged (STROP_E_STATE).
 *
 * Each node becomes a `lora_linear` of the same name: its base `<node>.weight` and
 * `<node>.bias` keep their values and are frozen; `<node>.lora_A.weight` [rank, in]
 * (kaiming-uniform, as PEFT) and `<node>.lora_B.weight` [out, rank] (zeros) are added and
 * trainable, so the first forward equals the base exactly. The output is
 * x W^T + b + (alpha / rank) * (dropout(x) A^T) B^T, dropout in train mode only.
 * @param glob    Node name or glob; non-linear matches are skipped, but an exact name must
 *                be a linear node. Copied.
 * @param rank    r >= 1.
 * @param alpha   PEFT's lora_alpha (> 0); the scale is alpha / rank.
 * @param dropout In [0, 1).
 * @return STROP_OK; STROP_E_INVALID_ARG (bad rank, alpha or dropout); STROP_E_NOMEM. When
 *         applied: STROP_E_NOT_FOUND (no linear node matches), STROP_E_INVALID_ARG (an exact
 *         name that is not linear, or already has adapters). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_lora(strop_surgery *s, const char *glob,
                                                          int64_t rank, float alpha,
                                                          float dropout);

/**
 * @brief Edit: set the optimizer's per-parameter learning-rate multiplier and weight-decay
 *        switch for the parameters matching @p glob (e.g. 0.1 for "features.*", no decay
 *        for "*.bias").
 * @param lr_mult  Multiplier >= 0, or a negative value to leave it unchanged.
 * @param no_decay 1: no weight decay; 0: decay; negative: leave unchanged.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL glob, NaN, nothing to change); STROP_E_NOMEM.
 *         When applied: STROP_E_NOT_FOUND if no parameter matches. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_param_group(strop_surgery *s,
                                                                 const char *glob,
                                                                 float lr_mult, int no_decay);

/**
 * @brief Checks the whole plan against the model's current state without changing it
 *        (names resolved, shapes re-inferred, conflicts found).
 * @return STROP_OK, or the status of the first failing edit; strop_last_error() names the
 *         edit (1-based index and kind) and why. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_validate(const strop_surgery *s);

/**
 * @brief A dry run: what the plan would do, as text — one line per edit, then nodes added,
 *        removed and replaced, parameters added, removed, frozen and unfrozen, the output
 *        shape and the trainable count before → after. If an edit would fail, the text ends
 *        with that edit and the reason (also left in strop_last_error()). The model is not
 *        changed.
 * @param buf Caller's buffer of @p cap bytes (may be NULL when @p cap is 0); always
 *            NUL-terminated when cap > 0.
 * @return The length of the full text (excluding NUL), snprintf-style; -1 for a NULL plan
 *         or out of memory. @since 0.1
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
 * @return STROP_OK; the statuses of the edits (see each); STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_surgery_apply(strop_surgery *s);

/* ---- single-call conveniences ---- */

/**
 * @brief Freezes the parameters matching @p glob (a one-edit plan, applied; BatchNorm nodes
 *        whose parameters are all frozen go to inference mode).
 * @return As strop_surgery_freeze() and strop_surgery_apply(); the model is unchanged on
 *         error. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_freeze(strop_model *model, const char *glob);

/** @brief Unfreezes the parameters matching @p glob; see strop_model_freeze(). @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_model_unfreeze(strop_model *model,
                                                            const char *glob);

/**
 * @brief Whether the named parameter is trainable.
 * @return 1 trainable, 0 frozen or a buffer, -1 for NULL arguments or an unknown name.
 * @since 0.1
 */
STROP_API int strop_model_param_trainable(const strop_model *model, const char *name);

/**
 * @brief Deep copy of a model: structure, parameters, buffers, flags, mode and RNG state (not
 *        gradients or a pending step).
 * @param[out] out The copy, owned by the caller (strop_model_free()).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_clone(const strop_model *model,
                                                         strop_model **out);

/**
 * @brief A text table of the model: node name, type, output shape, parameter count and
 *        trainable (yes / no / partial / - for none; "bn-eval" marks BatchNorm kept in
 *        inference mode), then the totals.
 * @return The full length (excluding NUL), snprintf-style; -1 for NULL or out of memory.
 * @since 0.1
 */
STROP_API int64_t strop_model_summary(const strop_model *model, char *buf, size_t cap);

/**
 * @brief Estimates the memory a training step will take, in bytes.
 * @param batch           Batch size >= 1.
 * @param optimizer_slots Values of optimizer state per trainable value: 0 (SGD), 1 (SGD with
 *                        momentum), 2 (Adam, AdamW).
 * @param[out] weights     Parameters and buffers.
 * @param[out] grads       Gradients (trainable parameters only).
 * @param[out] optim_state Optimizer state (trainable parameters only).
 * @param[out] activations Every node's output for the batch, plus the output gradients of
 *                         the nodes backward visits (those with a trainable parameter at or
 *                         upstream); layer scratch such as im2col is not counted. Where
 *                         a conv2d runs the relu / maxpool2d after it (fusion), their
 *                         intermediate outputs are not stored, so this is an upper bound.
 * Any output may be NULL.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, batch < 1, slots outside 0..8);
 *         STROP_E_STATE (not finalized); STROP_E_SHAPE (a byte count overflows size_t, e.g.
 *         batch = 2^62; the outputs are then left as they were). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_memory_estimate(const strop_model *model,
                                                                   int64_t batch,
                                                                   int optimizer_slots,
                                                                   size_t *weights,
                                                                   size_t *grads,
                                                                   size_t *optim_state,
                                                                   size_t *activations);

/**
 * @brief Predicts the peak memory of one training step, in bytes, by planning the step: one
 *        forward and backward in train mode on zeros, in memory of their own, at the batch
 *        itself when it is at most 4 and otherwise at 2 and 4 samples, extrapolated linearly.
 *
 * Unlike strop_model_memory_estimate(), the step memory follows what a step really holds:
 * the activations that the backward reads (frozen parts keep only what is live, in-place
 * layers share memory, checkpointed blocks keep their inputs and recompute one block at a
 * time), the tensors layers save for their backward, the gradients of activations, layer
 * scratch, and the loss's gradient (as large as the output). The planning costs about as much
 * compute as a step on 6 samples, and changes nothing in the model (its generator, running
 * statistics, gradients stay as they were; a forward awaiting its backward is dropped).
 *
 * @param[in,out] model         A finalized model (only borrowed for the planning).
 * @param[in]     batch         Samples per step, in [1, 2^40].
 * @param[in]     sample_shape  The per-sample input shape of the steps (a sequence length or
 *                              image size the model accepts), or NULL for the model's input
 *                              shape; read only.
 * @param[in]     rank          Entries of @p sample_shape (the model's input rank); ignored
 *                              when it is NULL.
 * @param[in]     optimizer_slots Values of optimizer state per trainable value: 0 (SGD),
 *                              1 (momentum), 2 (Adam, AdamW).
 * @param[out]    activations   The step memory at @p batch (may be NULL).
 * @param[out]    peak          Weights and buffers + gradients + optimizer state + step memory
 *                              (may be NULL): what the library holds at the step's peak.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, batch or slots out of range, a dimension
 *         < 1); STROP_E_STATE (not finalized); STROP_E_SHAPE (a sample shape of another rank or
 *         that a layer refuses, naming it; a byte count overflows); STROP_E_NOMEM (the
 *         planning itself ran out of memory). Outputs are written only on success. Not
 *         thread-safe on one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_step_memory(strop_model *model, int64_t batch,
                                                               const int64_t *sample_shape,
                                                               int rank, int optimizer_slots,
                                                               size_t *activations,
                                                               size_t *peak);

/**
 * @brief Says before training whether a training step fits in @p limit bytes: as
 *        strop_model_step_memory(), and when the peak is over the limit, STROP_E_NOMEM with a
 *        sentence giving the figures (weights, gradients, optimizer state, step memory) and
 *        what would make it fit: activation checkpointing (planned again with "auto" when it
 *        is off and the model has blocks), the largest batch that fits, frozen weights in BF16
 *        or 8 bits, freezing more of the model.
 * @param limit Bytes the step may take (e.g. the cgroup's or RLIMIT_AS, less what the host
 *              holds besides).
 * @return STROP_OK when it fits; STROP_E_NOMEM with the sentence when it does not; otherwise
 *         as strop_model_step_memory(). The model is unchanged. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_check_memory(strop_model *model,
                                                                int64_t batch,
                                                                const int64_t *sample_shape,
                                                                int rank, int optimizer_slots,
                                                                size_t limit);

/* ---- LoRA adapters ---- */

/**
 * @brief Folds every LoRA adapter into its base weight (W += scale · B A) so inference costs
 *        a plain linear; the adapters are kept, so strop_model_lora_unmerge() restores the
 *        split (to float rounding). Merged adapters get no gradient. Adapters already merged
 *        are left as they are.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (no LoRA node). @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_merge(strop_model *model);

/** @brief Takes merged adapters back out of the base weights (W -= scale · B A).
 *  @return As strop_model_lora_merge(). @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_unmerge(strop_model *model);

/**
 * @brief Saves the LoRA adapters alone in Hugging Face PEFT's layout: @p dir /
 *        `adapter_model.safetensors` (tensors `base_model.model.<node>.lora_A.weight` and
 *        `.lora_B.weight`, F32) and `adapter_config.json` (r, lora_alpha, target_modules,
 *        lora_dropout, peft_type "LORA", bias "none"; rank_pattern / alpha_pattern when nodes
 *        differ). Each file is written atomically.
 *
 * Since 0.2 it also writes PEFT's `modules_to_save`: the nodes the model's metadata
 * "lora.modules_to_save" lists — each node a surgery `replace` made, such as a new head — are
 * saved whole (every parameter and buffer but the adapters, as `base_model.model.<name>`, the
 * names PEFT writes) and listed in `adapter_config.json`, so base model + folder gives back
 * the fine-tuned model (strop_model_lora_load()). @p dir and its missing parents are created.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (no LoRA node, or
 *         "lora.modules_to_save" names a node the model lacks); STROP_E_FORMAT (that entry
 *         is not a JSON list of names); STROP_E_IO (naming the folder or file); STROP_E_NOMEM.
 *         @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_save(const strop_model *model,
                                                             const char *dir);

/**
 * @brief Applies adapters saved by strop_model_lora_save() or by PEFT to a base model: each
 *        module named in the file gets LoRA (rank from the tensors, alpha and dropout from the
 *        config) and the saved A and B, as one transaction.
 *
 * Since 0.2 the config's `modules_to_save` are applied too: each listed module (a node of the
 * model) takes the file's full weights; a linear node whose weights in the file have another
 * shape (a classifier head for other classes) is first made anew as a linear of that shape.
 * Those nodes are then listed in the model's "lora.modules_to_save" metadata.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_IO (missing files); STROP_E_FORMAT
 *         (bad JSON or safetensors, tensors not in pairs, a tensor of no listed module);
 *         STROP_E_NOT_FOUND (a module the model lacks); STROP_E_SHAPE (a tensor that does not
 *         fit its module, a module_to_save of another shape that is not a linear);
 *         STROP_E_NOMEM. The model is unchanged on error. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_load(strop_model *model,
                                                             const char *dir);

STROP_END_DECLS

#endif
