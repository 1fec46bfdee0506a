/* SPDX-License-Identifier: MIT */
/* strop — models: a DAG of named layer nodes with PyTorch-named parameters. Every
 * strop_model_* function is declared here: build, run, inspect, parameters and gradients,
 * metadata, files, LoRA adapters, prediction. */
#ifndef STROP_MODEL_H
#define STROP_MODEL_H

#include "common.h"
#include "error.h"
#include "tensor.h"
#include "text.h"

/**
 * @file model.h
 * @brief Models: build, run, inspect nodes and layer types, parameters and gradients,
 *        metadata, copies and summaries, files (specs, weights, pre-trained checkpoints,
 *        export), LoRA adapters, prediction — every strop_model_* function.
 *
 * The types of other modules these functions take are declared here once, as typedefs of
 * incomplete structs, and completed where they belong: strop_load_report (its getters in
 * io.h), strop_pretrained_options (its fields in pretrained.h), strop_prediction (its getters
 * in train.h). Those headers include this one and do not repeat the typedefs.
 * @since 0.1
 */

STROP_BEGIN_DECLS

/**
 * @brief A neural network: named nodes in a DAG, each a layer with named parameters.
 *
 * Parameter names and layouts follow PyTorch's state_dict ("features.0.weight", linear
 * weights [out, in]). One handle from one thread at a time (@ref threads); distinct models
 * are independent.
 * @since 0.1
 */
typedef struct strop_model strop_model;

/**
 * @brief Creates an empty model whose input has the given per-sample shape (no batch dim),
 *        e.g. {1, 28, 28} for grey images or {64} for a sequence of 64 token ids.
 * @param[in]  rank        Number of per-sample dimensions, 1 .. #STROP_MAX_RANK - 1 (a
 *                         batch adds one).
 * @param[in]  input_shape @p rank sizes, each > 0; copied.
 * @param[out] out         The model, owned by the caller (strop_model_free()); NULL on
 *                         error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, bad rank or size); STROP_E_SHAPE (the element
 *         count overflows); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_create(int rank, const int64_t *input_shape,
                                                          strop_model **out);

/**
 * @brief Appends a node to a model that is not finalized yet.
 *
 * Input names are only recorded here; they are resolved by strop_model_finalize(), so a
 * node may name one added after it.
 * @param[in,out] model   The model, not finalized; unchanged on error.
 * @param[in]     name    Unique hierarchical name ("features.0", "head"): letters, digits,
 *                        '_' and '-', with '.' between parts; not "input". Copied.
 * @param[in]     type    A registered layer type ("linear", "conv2d", ...; see
 *                        strop_layer_type_name() and docs/formats.md). Copied.
 * @param[in]     options The layer's options as "key=value" pairs separated by spaces or
 *                        commas; lists in brackets: "in_channels=1 out_channels=32
 *                        kernel_size=3 padding=1", "kernel_size=[3,5]". NULL or "" for none.
 *                        Copied.
 * @param[in]     inputs  Comma-separated names of the input nodes (at most 16), "input" for
 *                        the model input; NULL or "" means the previous node (the model input
 *                        for the first node). Copied.
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown type, naming the known ones);
 *         STROP_E_INVALID_ARG (NULL model or type, a duplicate or bad name, a wrong number of
 *         inputs, a bad or unknown option: the sentence names the key); STROP_E_STATE
 *         (already finalized); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_add(strop_model *model, const char *name,
                                                       const char *type, const char *options,
                                                       const char *inputs);

/**
 * @brief Resolves the inputs, orders the nodes, infers every node's output shape, allocates
 *        the parameters and initialises them (PyTorch's default initialisers) from @p seed.
 *        The last node is the output.
 * @param[in,out] model The model, with at least one node and not yet finalized.
 * @param[in]     seed  Seed of the initialisation (and of the model's random stream, which
 *                      dropout draws from).
 * @return STROP_OK; STROP_E_NOT_FOUND (an unknown input or tie target, naming it);
 *         STROP_E_SHAPE (a shape conflict, naming nodes and shapes); STROP_E_INVALID_ARG
 *         (NULL, no nodes, a cycle, options a layer refuses for its input shape);
 *         STROP_E_STATE (already finalized); STROP_E_NOMEM. On error the model stays
 *         unfinalized (and may be freed).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_finalize(strop_model *model, uint64_t seed);

/**
 * @brief Runs the model on a batch.
 *
 * Uses the model's mode (strop_model_set_training()); a new model is in eval mode, so this
 * is inference: dropout off, BatchNorm with running statistics. In train mode BatchNorm
 * updates its running statistics, as PyTorch does. It drops a pending forward of
 * strop_trainer_forward() on this model.
 * @param[in,out] model A finalized model (its buffers change in train mode).
 * @param[in]     input [N, input shape...]: the declared per-sample shape, or another of its
 *                      rank that every layer takes (images of another size, a shorter
 *                      sequence). Only read.
 * @param[out]    out   A new tensor [N, output shape...], owned by the caller
 *                      (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_SHAPE (an input shape a layer refuses, naming both);
 *         STROP_E_STATE (not finalized); STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM. NaN
 *         inputs propagate.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_forward(strop_model *model,
                                                           const strop_tensor *input,
                                                           strop_tensor **out);

/**
 * @brief strop_model_forward() on a batch of sequences some of which are padded: @p mask says
 *        which positions are tokens (1) and which are padding (0).
 *
 * The sequence is the first per-sample dimension of @p input (token ids [N, T], or features
 * [N, T, D]); T may be any length the model's layers accept (up to the longest its position
 * embeddings cover), so batches of different lengths run through one model. Attention layers
 * give padded keys no weight, mean_pool and token_pool skip padded positions, and
 * positional_embedding with positions=mask counts only tokens: a sample's outputs at its
 * tokens are those of the sample alone, whether the batch pads it on the right or the left.
 * Outputs at padded positions are computed but mean nothing.
 * @param[in]  model The model (finalized).
 * @param[in]  input [N, T, ...]; only read.
 * @param[in]  mask  [N, T] of 1 (token) and 0 (padding), Hugging Face's attention_mask; or
 *                   NULL, which is strop_model_forward(). Only read (copied for the call).
 * @param[out] out   A new tensor [N, output shape...], owned by the caller; NULL on error.
 * @return STROP_OK; STROP_E_SHAPE (the input or the mask has a shape the model does not take,
 *         naming both, or a layer's sequence differs from the mask's length, naming the layer);
 *         STROP_E_INVALID_ARG (NULL model, input or out; a mask value other than 0 or 1,
 *         naming the sample and position); STROP_E_STATE (not finalized); STROP_E_NOMEM. The
 *         model is unchanged on error. Not thread-safe on one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_forward_masked(strop_model *model,
                                                                  const strop_tensor *input,
                                                                  const strop_tensor *mask,
                                                                  strop_tensor **out);

/**
 * @brief The per-sample side inputs of a batch of sequences, beside its inputs: the padding
 *        mask and the token types. Fill with strop_side_inputs_init(), then set the fields
 *        the batch has; fields are only ever appended (the library reads the bytes @c size
 *        covers). @since 0.2
 *
 * Both are [N, T] with T the first per-sample dimension of the input (the sequence). Token
 * types are Hugging Face's token_type_ids: the segment each token belongs to (a text pair's
 * first segment and its special tokens 0, the second 1, as the tokenizer's pair template says;
 * strop_tokenizer_encode_batch() gives them), read by a positional_embedding layer with
 * positions=types (BERT's token_type_embeddings: row = the token's type, which must be below
 * type_vocab_size). A model with no such layer (GPT-2, DistilBERT, Llama) ignores them.
 */
typedef struct strop_side_inputs {
  size_t size;                     /**< sizeof(strop_side_inputs), set by the init function. */
  const strop_tensor *mask;        /**< [N, T] of 1 (token) and 0 (padding), Hugging Face's
                                        attention_mask; NULL: no padding. */
  const strop_tensor *token_types; /**< [N, T] of integers >= 0 (stored as floats); NULL:
                                        every token has type 0. */
} strop_side_inputs;

/**
 * @brief Fills @p side with no side inputs (no mask, no token types) and sets its size.
 * @param[out] side The struct to fill; NULL is a no-op.
 * @since 0.2
 */
STROP_API void strop_side_inputs_init(strop_side_inputs *side);

/**
 * @brief strop_model_forward() on a batch with its side inputs: the padding mask (as
 *        strop_model_forward_masked()) and the token types.
 * @param[in]  model The model (finalized).
 * @param[in]  input [N, T, ...]; only read.
 * @param[in]  side  The batch's mask and token types (strop_side_inputs_init()), each NULL
 *                   when the batch has none; NULL: neither (strop_model_forward()). Only read
 *                   (copied for the call).
 * @param[out] out   A new tensor [N, output shape...], owned by the caller
 *                   (strop_tensor_free()); NULL on error.
 * @return STROP_OK; STROP_E_SHAPE (the input, the mask or the types have a shape the model
 *         does not take, naming them); STROP_E_INVALID_ARG (NULL model, input or out;
 *         side->size too small; a mask value other than 0 or 1, a token type that is not an
 *         integer >= 0, naming the sample and position; a type past a layer's table, naming
 *         the layer, the row and the value); STROP_E_STATE (not finalized); STROP_E_NOMEM. The
 *         model is unchanged on error. Not thread-safe on one model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_forward_ext(strop_model *model,
                                                               const strop_tensor *input,
                                                               const strop_side_inputs *side,
                                                               strop_tensor **out);

/**
 * @brief Switches train or eval mode (dropout, BatchNorm statistics).
 * @param[in,out] model    The model.
 * @param[in]     training Non-zero for train mode, 0 for eval mode.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_training(strop_model *model, int training);

/**
 * @brief Turns activation checkpointing on (per block) or off: a training step's forward keeps
 *        only each checkpointed block's input, and its backward runs the block's forward again
 *        before differentiating it, trading about one more forward for the block activations.
 *
 * A block is a run of consecutive nodes whose names share a dotted prefix that @p pattern
 * names: with a glob (`*`, `?`, `[...]`, as in surgery), the shortest proper prefix of the
 * node's name that the glob matches (`"transformer.h.*"` makes `transformer.h.0`,
 * `transformer.h.1`, ... blocks; `"layer?.?"` ResNet's `layer2.1`); with `"auto"`, the
 * shortest prefix whose last component is a number or ends in `_<number>` (GPT-2's
 * `transformer.h.3`, Llama's `model.layers.3`, BERT's `bert.encoder.layer.3`, ResNet's
 * `layer2.1`, MobileNet's `features.5`, ViT's `encoder.layers.encoder_layer_3`).
 * A block is checkpointed in a step when a backward goes through it, nothing after it reads
 * any of its nodes' outputs but the last one's, and it holds neither the model's output nor a
 * node whose activation the trainer caches; other blocks run as usual.
 *
 * Results are bit-identical to a step without checkpointing: the recompute draws the same
 * dropout masks (the generator's state is kept per block) and batch norm does not update its
 * running statistics a second time. Eval-mode forwards are unaffected. The setting is kept by
 * strop_model_clone() and surgery, but not saved in files.
 *
 * @param[in,out] model   The model.
 * @param[in]     pattern `"auto"`, a glob over node-name prefixes, or NULL / `""` (off, the
 *                        default). Copied.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, a pattern over 200 characters);
 *         STROP_E_NOT_FOUND (the model is finalized and @p pattern makes no block of two or
 *         more nodes; the setting is then unchanged); STROP_E_NOMEM. A forward awaiting its
 *         backward is dropped. Not thread-safe on one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_checkpointing(strop_model *model,
                                                                     const char *pattern);

/**
 * @brief The checkpointing pattern (strop_model_set_checkpointing()), "" when it is off.
 * @param[in]  model The model.
 * @param[out] buf   Receives the pattern, NUL-terminated and truncated to @p cap bytes; may be
 *                   NULL when @p cap is 0.
 * @param[in]  cap   Capacity of @p buf in bytes.
 * @return The pattern's full length (snprintf-style); -1 for a NULL model or a NULL @p buf with
 *         @p cap > 0 (strop_last_error() says which). Thread-safe on distinct models. @since 0.2
 */
STROP_API int64_t strop_model_get_checkpointing(const strop_model *model, char *buf, size_t cap);

/**
 * @brief How many blocks the model's checkpointing pattern forms (0 when checkpointing is off or
 *        the model is not finalized). Whether each one is checkpointed in a step depends on the
 *        step (see strop_model_set_checkpointing()).
 * @param[in] model The model.
 * @return The count; -1 for a NULL model or out of memory (strop_last_error() says which).
 *         @since 0.2
 */
STROP_API int64_t strop_model_checkpoint_blocks(const strop_model *model);

/**
 * @brief The model's mode.
 * @param[in] model The model.
 * @return 1 in train mode, 0 in eval mode or for NULL.
 * @since 0.1
 */
STROP_API int strop_model_is_training(const strop_model *model);

/**
 * @brief Frees the model and its parameters. Tensor views of its parameters
 *        (strop_model_tensor_view()) must not be used afterwards.
 * @param[in] model The model, or NULL (a no-op).
 * @since 0.1
 */
STROP_API void strop_model_free(strop_model *model);

/**
 * @brief Per-sample input shape into @p dims (up to @p cap entries).
 * @param[in]  model The model (finalized or not).
 * @param[out] dims  Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap   Entries available at @p dims.
 * @return The rank (may exceed @p cap), or -1 for a NULL model, or NULL @p dims with
 *         @p cap > 0.
 * @since 0.1
 */
STROP_API int strop_model_input_shape(const strop_model *model, int64_t *dims, int cap);

/**
 * @brief Per-sample output shape of the finalized model into @p dims (up to @p cap).
 * @param[in]  model A finalized model.
 * @param[out] dims  Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap   Entries available at @p dims.
 * @return The rank (may exceed @p cap), or -1 when NULL or not finalized, or NULL @p dims
 *         with @p cap > 0.
 * @since 0.1
 */
STROP_API int strop_model_output_shape(const strop_model *model, int64_t *dims, int cap);

/**
 * @brief Number of nodes (a composite counts as its parts).
 * @param[in] model The model.
 * @return The count, or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_model_num_nodes(const strop_model *model);

/**
 * @brief Name (@p what = 0) or type (@p what = 1) of node @p i, snprintf-style.
 * @deprecated Since 0.2: use strop_model_node_name() or strop_model_node_type(), one getter
 *             per fact. Kept, with its symbol and behaviour, for programs built against 0.1:
 *             it calls one of them.
 * @param[in]  model The model (finalized or not).
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[in]  what  0 for the name, 1 for the layer type.
 * @param[out] buf   Receives the string, NUL-terminated and truncated to @p cap; may be NULL
 *                   when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length (excluding the NUL), or -1 (NULL model, @p i out of range, @p what
 *         not 0 or 1, NULL @p buf with @p cap > 0) with strop_last_error() set.
 * @since 0.1
 */
STROP_API STROP_DEPRECATED int64_t strop_model_node_info(const strop_model *model, int64_t i,
                                                         int what, char *buf, size_t cap);

/**
 * @brief The name of node @p i ("features.0"), in the model's order, into @p buf.
 * @param[in]  model The model (finalized or not).
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[out] buf   Receives the name, NUL-terminated and truncated to @p cap (snprintf
 *                   style); may be NULL when @p cap is 0, to ask for the length.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length (excluding the NUL), or -1 (NULL model, @p i out of range, NULL
 *         @p buf with @p cap > 0) with strop_last_error() set. Thread-safe on a model no one
 *         modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_node_name(const strop_model *model, int64_t i, char *buf,
                                        size_t cap);

/**
 * @brief The layer type of node @p i ("conv2d"), as strop_model_node_name().
 * @param[in]  model The model (finalized or not).
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[out] buf   Receives the type, snprintf-style; may be NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length, or -1 for bad arguments (as strop_model_node_name()).
 *         Thread-safe on a model no one modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_node_type(const strop_model *model, int64_t i, char *buf,
                                        size_t cap);

/**
 * @brief The options of node @p i as its layer type writes them back ("in_features=784
 *        out_features=10 bias=true": every option, defaults included, space-separated
 *        key=value pairs that strop_model_add() accepts), as strop_model_node_name().
 * @param[in]  model The model (finalized or not).
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[out] buf   Receives the text, snprintf-style; may be NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length, or -1 for bad arguments or out of memory (strop_last_error()
 *         says which). Thread-safe on a model no one modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_node_options(const strop_model *model, int64_t i, char *buf,
                                           size_t cap);

/**
 * @brief The number of inputs of node @p i.
 * @param[in] model The model (finalized or not).
 * @param[in] i     0 .. strop_model_num_nodes() - 1.
 * @return The count, or -1 for a NULL model or @p i out of range (with strop_last_error()
 *         set). Thread-safe on a model no one modifies.
 * @since 0.2
 */
STROP_API int strop_model_node_num_inputs(const strop_model *model, int64_t i);

/**
 * @brief The name of input @p j of node @p i ("input" for the model's input), as
 *        strop_model_node_name().
 * @param[in]  model The model (finalized or not).
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[in]  j     0 .. strop_model_node_num_inputs() - 1.
 * @param[out] buf   Receives the name, snprintf-style; may be NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length, or -1 for bad arguments (with strop_last_error() set).
 *         Thread-safe on a model no one modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_node_input(const strop_model *model, int64_t i, int j, char *buf,
                                         size_t cap);

/**
 * @brief Per-sample output shape of node @p i of a finalized model into @p dims (up to
 *        @p cap entries).
 * @param[in]  model A finalized model.
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[out] dims  Receives the first min(rank, @p cap) sizes; may be NULL when @p cap is 0.
 * @param[in]  cap   Entries available at @p dims.
 * @return The rank (may exceed @p cap), or -1 (NULL, not finalized, @p i out of range, NULL
 *         @p dims with @p cap > 0) with strop_last_error() set. Thread-safe on a model no one
 *         modifies.
 * @since 0.2
 */
STROP_API int strop_model_node_output_shape(const strop_model *model, int64_t i, int64_t *dims,
                                            int cap);

/**
 * @brief Gives every parameter and buffer of a finalized model the values
 *        strop_model_finalize() would give a freshly built copy with @p seed (PyTorch's
 *        reset_parameters): trainable flags as when built, no group settings, BatchNorm
 *        statistics live again; the structure, names and mode are kept. This is the
 *        from-scratch baseline of a fine-tuning comparison.
 *
 * The parameters are new memory: tensor views, optimizers and trainers made on the model
 * before must be made again (as after structural surgery).
 * @param[in,out] model A finalized model.
 * @param[in]     seed  Seed of the initialisation, as for strop_model_finalize().
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (not finalized); STROP_E_NOMEM
 *         (the model is then unchanged).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_reinit(strop_model *model, uint64_t seed);

/**
 * @brief Ties parameter @p param to the tensor @p target: weight tying, as GPT-2's
 *        lm_head.weight is transformer.wte.weight. The two are one tensor — one name in
 *        weight files (the target's), the gradients of both uses summed, one optimizer
 *        state — and a freeze of either name freezes it.
 *
 * Before strop_model_finalize() the tie is recorded and checked at finalize; after it, it
 * takes effect at once: @p param's own values are dropped and it reads @p target's. A spec
 * says the same with a node's `tie:` mapping (docs/formats.md).
 * @param[in,out] model  The model.
 * @param[in]     param  "<node>.<suffix>" of one of its nodes ("lm_head.weight"). Copied.
 * @param[in]     target The name of another parameter of the same shape. Copied.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or empty names, a cycle); STROP_E_NOT_FOUND (no
 *         node or parameter by that name, naming it); STROP_E_SHAPE (the shapes differ, naming
 *         both); STROP_E_NOMEM. On error the model is unchanged. Tensor views of @p param
 *         become invalid.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_tie(strop_model *model, const char *param,
                                                       const char *target);

/* ---- metadata: what a user of the model needs to know ---- */

/** @brief The longest metadata key, in bytes. @since 0.2 */
#define STROP_META_KEY_MAX 255
/** @brief The longest metadata value, in bytes (16 MiB). @since 0.2 */
#define STROP_META_VALUE_MAX ((size_t)16 << 20)
/** @brief The most entries a model's metadata holds. @since 0.2 */
#define STROP_META_MAX_ENTRIES 1024

/**
 * @brief Sets (or, with @p value NULL, removes) the metadata entry @p key of @p model.
 *
 * Every model carries a string -> string dictionary that travels with it: strop_model_clone()
 * and surgery copy it, strop_model_save_weights() writes it into the safetensors header
 * (`__metadata__` entries "strop.meta.<key>"), a strict strop_model_load_weights() restores it,
 * and strop_model_export() keeps it. The recipe runner records there what its data section did
 * to the inputs and the names of the classes (docs/formats.md lists the keys strop writes and
 * reads; their values are JSON text). Other keys are the host's.
 * @param[in,out] model The model (finalized or not).
 * @param[in]     key   1 to #STROP_META_KEY_MAX bytes of printable ASCII without spaces.
 *                      Copied.
 * @param[in]     value Valid UTF-8 of at most #STROP_META_VALUE_MAX bytes (JSON text for the
 *                      documented keys), copied; NULL removes the entry (removing an absent
 *                      key is not an error).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, a bad key, a value too long or not
 *         UTF-8, a new key beyond #STROP_META_MAX_ENTRIES: the sentence names the key);
 *         STROP_E_NOMEM. On error the metadata is unchanged.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_meta(strop_model *model, const char *key,
                                                            const char *value);

/**
 * @brief The value of metadata entry @p key into @p buf, snprintf-style.
 * @param[in]  model The model.
 * @param[in]  key   The key.
 * @param[out] buf   Receives the value, NUL-terminated and truncated to @p cap; may be NULL
 *                   when @p cap is 0, to ask for the length.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The value's full length (excluding the NUL), or -1 when the model has no such entry
 *         or for bad arguments (NULL model or key, NULL @p buf with @p cap > 0), with
 *         strop_last_error() saying which. Thread-safe on a model no one modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_get_meta(const strop_model *model, const char *key, char *buf,
                                       size_t cap);

/**
 * @brief The number of metadata entries.
 * @param[in] model The model.
 * @return It (0 .. #STROP_META_MAX_ENTRIES), or -1 for NULL. Thread-safe on a model no one
 *         modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_meta_count(const strop_model *model);

/**
 * @brief The key of metadata entry @p i (entries are in byte order of their keys), as
 *        strop_model_get_meta() returns a value.
 * @param[in]  model The model.
 * @param[in]  i     0 .. strop_model_meta_count() - 1.
 * @param[out] buf   Receives the key (snprintf style; may be NULL when @p cap is 0).
 * @param[in]  cap   Bytes available at @p buf.
 * @return The key's full length, or -1 (NULL model, @p i out of range, NULL @p buf with
 *         @p cap > 0) with strop_last_error() set. Thread-safe on a model no one modifies.
 * @since 0.2
 */
STROP_API int64_t strop_model_meta_key(const strop_model *model, int64_t i, char *buf,
                                       size_t cap);

/* ---- the layer types a model is built from ---- */

/**
 * @brief The number of registered layer types (composites such as transformer_block
 *        included).
 * @return The count; constant for the library's lifetime. Thread-safe.
 * @since 0.2
 */
STROP_API int strop_layer_type_count(void);

/**
 * @brief The name of layer type @p i.
 * @param[in] i 0 .. strop_layer_type_count() - 1.
 * @return A static string ("linear"), or NULL out of range. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_type_name(int i);

/**
 * @brief A one-line description of layer @p type: what it computes and its PyTorch
 *        counterpart.
 * @param[in] type A layer type name.
 * @return A static string, or NULL for an unknown type or NULL. Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_type_doc(const char *type);

/**
 * @brief Whether @p type is a composite: adding it adds its parts "<name>.<part>" (which
 *        strop_layer_type_doc() lists).
 * @param[in] type A layer type name.
 * @return 1 for a composite, 0 for a plain layer, -1 for an unknown type or NULL.
 *         Thread-safe.
 * @since 0.2
 */
STROP_API int strop_layer_type_is_composite(const char *type);

/**
 * @brief The number of options layer @p type takes.
 * @param[in] type A layer type name.
 * @return The count, or -1 for an unknown type or NULL. Thread-safe.
 * @since 0.2
 */
STROP_API int strop_layer_option_count(const char *type);

/**
 * @brief The name of option @p j of layer @p type.
 * @param[in] type A layer type name.
 * @param[in] j    0 .. strop_layer_option_count() - 1.
 * @return A static string, or NULL (unknown type, @p j out of range). Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_option_name(const char *type, int j);

/**
 * @brief Option @p j's default as strop_model_node_options() writes it ("true", "[1, 1]",
 *        "auto").
 * @param[in] type A layer type name.
 * @param[in] j    0 .. strop_layer_option_count() - 1.
 * @return A static string, or NULL when the option is required or does not exist.
 *         Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_option_default(const char *type, int j);

/**
 * @brief Option @p j's one-line description.
 * @param[in] type A layer type name.
 * @param[in] j    0 .. strop_layer_option_count() - 1.
 * @return A static string, or NULL (unknown type, @p j out of range). Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_option_doc(const char *type, int j);

/**
 * @brief Option @p j's kind ("int", "float", "bool", "enum", "int[2]", "float[4]",
 *        "int list") into @p buf, snprintf-style.
 * @param[in]  type A layer type name.
 * @param[in]  j    0 .. strop_layer_option_count() - 1.
 * @param[out] buf  Receives the kind; may be NULL when @p cap is 0.
 * @param[in]  cap  Bytes available at @p buf.
 * @return The full length, or -1 (unknown type or option, NULL @p buf with @p cap > 0) with
 *         strop_last_error() set. Thread-safe.
 * @since 0.2
 */
STROP_API int64_t strop_layer_option_kind(const char *type, int j, char *buf, size_t cap);

/**
 * @brief The values option @p j allows ("[1, 2147483647] or auto", "[0, 1)", "gelu, relu"),
 *        snprintf-style.
 * @param[in]  type A layer type name.
 * @param[in]  j    0 .. strop_layer_option_count() - 1.
 * @param[out] buf  Receives the text; may be NULL when @p cap is 0.
 * @param[in]  cap  Bytes available at @p buf.
 * @return The full length, or -1 (unknown type or option, NULL @p buf with @p cap > 0) with
 *         strop_last_error() set. Thread-safe.
 * @since 0.2
 */
STROP_API int64_t strop_layer_option_allowed(const char *type, int j, char *buf, size_t cap);

/**
 * @brief The number of parameter and buffer names layer @p type may declare (those its
 *        options switch off included).
 * @param[in] type A layer type name.
 * @return The count, or -1 for an unknown type or NULL. Thread-safe.
 * @since 0.2
 */
STROP_API int strop_layer_param_count(const char *type);

/**
 * @brief Parameter @p j of layer @p type: the suffix after the node's name ("weight",
 *        "q_proj.lora_A.weight").
 * @param[in] type A layer type name.
 * @param[in] j    0 .. strop_layer_param_count() - 1.
 * @return A static string, or NULL (unknown type, @p j out of range). Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_param_name(const char *type, int j);

/**
 * @brief Parameter @p j's description: its shape in terms of the options, and when it
 *        exists.
 * @param[in] type A layer type name.
 * @param[in] j    0 .. strop_layer_param_count() - 1.
 * @return A static string, or NULL (unknown type, @p j out of range). Thread-safe.
 * @since 0.2
 */
STROP_API const char *strop_layer_param_doc(const char *type, int j);

/**
 * @brief Number of parameter and buffer tensors (the state_dict's length).
 * @param[in] model The model.
 * @return The count (0 before finalize), or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_model_num_tensors(const strop_model *model);

/**
 * @brief Name of state tensor @p i (state_dict order) into @p buf, snprintf-style.
 * @param[in]  model A finalized model.
 * @param[in]  i     0 .. strop_model_num_tensors() - 1.
 * @param[out] buf   Receives the name; may be NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length, or -1 (NULL or unfinalized model, @p i out of range, NULL @p buf
 *         with @p cap > 0) with strop_last_error() set.
 * @since 0.1
 */
STROP_API int64_t strop_model_tensor_name(const strop_model *model, int64_t i, char *buf,
                                          size_t cap);

/**
 * @brief Number of scalar parameters (buffers excluded).
 * @param[in] model          The model.
 * @param[in] trainable_only Non-zero to count trainable parameters only.
 * @return The count (0 before finalize), or -1 for NULL.
 * @since 0.1
 */
STROP_API int64_t strop_model_param_count(const strop_model *model, int trainable_only);

/**
 * @brief A view of the named parameter or float buffer.
 *
 * The view borrows the model's memory: valid while the model lives and is not restructured
 * (surgery, strop_model_freeze() or strop_model_unfreeze(), strop_model_reinit(), a tie,
 * weight loading that changes shapes, strop_model_lora_load(), strop_model_set_frozen_dtype()
 * or strop_model_set_frozen_int8_group(): each may convert a tensor's storage and free the
 * memory a view points at); writes through it change the model.
 * @param[in,out] model A finalized model.
 * @param[in]     name  The tensor's state_dict name ("head.weight").
 * @param[out]    out   A tensor handle owned by the caller (free it with strop_tensor_free();
 *                      that does not free the model's memory); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (naming the tensor);
 *         STROP_E_UNSUPPORTED (an int64 buffer); STROP_E_STATE (not finalized);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_tensor_view(strop_model *model,
                                                               const char *name,
                                                               strop_tensor **out);

/**
 * @brief Copies @p count floats into the named parameter or buffer.
 * @param[in,out] model A finalized model.
 * @param[in]     name  The tensor's state_dict name.
 * @param[in]     data  The values, in the tensor's row-major layout; copied. An int64 buffer
 *                      (BatchNorm's num_batches_tracked) takes its one value, converted.
 * @param[in]     count Floats at @p data: the tensor's element count.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (naming the tensor);
 *         STROP_E_SHAPE (@p count differs, naming both sizes); STROP_E_STATE (not finalized).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_tensor(strop_model *model,
                                                              const char *name, const float *data,
                                                              size_t count);

/* ---- parameters: trainable or frozen, and their gradients ---- */

/**
 * @brief Freezes the parameters matching @p glob (a one-edit plan, applied; BatchNorm nodes
 *        whose parameters are all frozen go to inference mode).
 * @param[in,out] model A finalized model; unchanged on error.
 * @param[in]     glob  Parameter or node name, or a glob, as strop_surgery_freeze() takes it.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, NULL or empty glob, a buffer's name);
 *         STROP_E_NOT_FOUND (nothing matches); STROP_E_STATE (not finalized); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_freeze(strop_model *model, const char *glob);

/**
 * @brief Unfreezes the parameters matching @p glob (and takes BatchNorm nodes out of the
 *        inference mode freezing put them in); see strop_model_freeze().
 * @param[in,out] model A finalized model; unchanged on error.
 * @param[in]     glob  Parameter or node name, or a glob.
 * @return STROP_OK; the statuses of strop_model_freeze().
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_unfreeze(strop_model *model, const char *glob);

/** @brief How a model holds its frozen weights (strop_model_set_frozen_dtype()). @since 0.2 */
typedef enum strop_dtype {
  STROP_DTYPE_F32 = 0,  /**< float32, as trainable parameters always are (the default). */
  STROP_DTYPE_BF16 = 1, /**< bfloat16: the top 16 bits of a float32, rounded to nearest even. */
  STROP_DTYPE_INT8 = 2  /**< int8 with one float32 scale per output channel (symmetric,
                             absmax / 127), or per group of an output channel's inputs
                             (strop_model_set_frozen_int8_group()): the weight is
                             q · scale. */
} strop_dtype;

/**
 * @brief Chooses how the model holds its frozen weights: the weights of `linear` and
 *        `lora_linear` nodes (a LoRA layer's base) that are frozen, not tied and not adapters
 *        are converted now to @p dtype, and so are those frozen later (strop_model_freeze(),
 *        surgery, loading weights into them); a weight unfrozen later, or every one when
 *        @p dtype is STROP_DTYPE_F32, is widened back to float32 (exactly: the values it
 *        holds, not the float32 ones it came from). Other parameters, gradients and optimizer
 *        state stay float32. Products with such a weight run on BF16 inputs with FP32 sums
 *        (vdpbf16ps) where the CPU has AVX512_BF16, else widen the weight while packing it for
 *        the float32 GEMM (STROP_BF16_FALLBACK=1 in the environment forces that path);
 *        docs/performance.md states the tolerances. strop_model_tensor_view() refuses a held
 *        weight, strop_model_set_tensor() rounds into it; saving writes float32. A model
 *        without frozen weights records the choice and converts nothing.
 * @param[in,out] model A finalized model.
 * @param[in]     dtype A ::strop_dtype value.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, @p dtype not a ::strop_dtype);
 *         STROP_E_STATE (not finalized); STROP_E_NOMEM (the model is then unchanged: every
 *         conversion is prepared before any weight is replaced).
 * Not thread-safe on one model (it replaces weights). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_frozen_dtype(strop_model *model,
                                                                    int dtype);

/**
 * @brief The model's frozen-weight dtype (strop_model_set_frozen_dtype()).
 * @param[in] model The model.
 * @return A ::strop_dtype value; -1 for NULL. Thread-safe (reads only). @since 0.2
 */
STROP_API int strop_model_frozen_dtype(const strop_model *model);

/**
 * @brief Chooses how finely frozen weights held as ::STROP_DTYPE_INT8 are scaled: one float32
 *        scale per output channel (@p group 0, the default), or one per run of @p group
 *        consecutive inputs of each output channel (the last run of a channel may be shorter;
 *        bitsandbytes and GPTQ use 32 to 128). Smaller groups follow a weight with a few large
 *        values more closely, at 4 / @p group bytes more per value. Weights held in int8 now
 *        are quantised again with the new group — from the values they hold, which were
 *        quantised once already: set the group before strop_model_set_frozen_dtype() (or a
 *        load with ::STROP_LOAD_FROZEN) to quantise from the float32 values. Weights frozen
 *        later take it. BF16 and float32 storage ignore it.
 * @param[in,out] model A finalized model.
 * @param[in]     group 0, or inputs per scale in [8, 65536].
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, @p group out of range); STROP_E_STATE
 *         (not finalized); STROP_E_NOMEM (the model is then unchanged, its group too).
 * Not thread-safe on one model (it replaces weights). @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_frozen_int8_group(strop_model *model,
                                                                         int64_t group);

/**
 * @brief The model's int8 group (strop_model_set_frozen_int8_group()).
 * @param[in] model The model.
 * @return 0 (one scale per output channel) or the inputs per scale; -1 for NULL. Thread-safe
 *         (reads only). @since 0.2
 */
STROP_API int64_t strop_model_frozen_int8_group(const strop_model *model);

/**
 * @brief Chooses the precision of the model's products (mixed-precision training): with
 *        ::STROP_DTYPE_BF16, the products of `linear` nodes and of `lora_linear` bases whose
 *        weights are held in float32 — the forward y = x W^T, the input gradient dx = dy W and
 *        the weight gradient dW = dy^T x, both weight layouts — multiply BF16 values with
 *        float32 sums (vdpbf16ps where the CPU has AVX512_BF16): x, dy and W rounded to
 *        nearest even, W through a BF16 copy made once per change of the weight (an optimizer
 *        step, a load), which strop_model_step_memory() counts; a frozen weight borrowed from
 *        a mapped file (::STROP_LOAD_MMAP) hands its file pages back once that copy is made,
 *        so the copy takes their place in memory instead of adding to them (what reads the
 *        float32 values later, a save or a float32 step, reads them from the file again,
 *        the same values). The products of `conv2d`
 *        nodes too — forward, input gradient and weight gradient, frozen or trainable (a
 *        frozen trunk's folded batch norm included): the input (its columns), dy and the
 *        weight rounded to BF16 per call, the bias added and its gradient summed in float32;
 *        depthwise convs keep their float32 stencil. The forward of a 3x3 stride-1 conv with
 *        64 or more channels in and out (where float32 runs Winograd F(4x4, 3x3)) runs as
 *        Winograd F(2x2, 3x3) instead, and where the CPU has AVX512_BF16 so does its input
 *        gradient (the forward of dy with the flipped weight): their transformed tiles and
 *        filters are what is rounded to BF16 (errors about 1.5x the direct form's;
 *        docs/performance.md; STROP_WINOGRAD=0 in the environment turns Winograd off in both
 *        precisions); the weight gradient stays direct. The
 *        float32 master weights, gradients and optimizer state are unchanged, and so are every
 *        other layer (norms, activations, attention scores, LoRA adapters) and the bias
 *        gradient, but for one thing a training step keeps: a batch norm computing batch
 *        statistics that is its input's sole reader (a ResNet's norm after its conv) reads
 *        that input in its backward as its deviations from the batch mean held in BF16 (8
 *        significant bits of x - mean, where autocast holds x itself in BF16; half the bytes
 *        kept), its forward and statistics reading the float32 values. A trainer's cross-entropy on such a model takes its exponentials in single
 *        precision (within 2 units in the last place; double otherwise) on AVX-512 CPUs, for
 *        rows without class weights that hold no NaN or infinity. Where the CPU lacks
 *        AVX512_BF16 (or STROP_BF16_FALLBACK=1 is set in the environment) the same rounded
 *        values multiply in the float32 GEMM. ::STROP_DTYPE_F32 (the default)
 *        computes everything in float32, bit for bit as before, and gives the BF16 copies back.
 *        Weights held in BF16 or int8 (strop_model_set_frozen_dtype()) compute as they did.
 *        docs/performance.md states the tolerances against float32.
 * @param[in,out] model A model (finalized or not); a forward awaiting its backward is dropped.
 * @param[in]     dtype ::STROP_DTYPE_F32 or ::STROP_DTYPE_BF16.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, @p dtype not one of the two; the model is
 *         then unchanged). Not thread-safe on one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_compute_dtype(strop_model *model,
                                                                     int dtype);

/**
 * @brief The model's compute dtype (strop_model_set_compute_dtype()).
 * @param[in] model The model.
 * @return ::STROP_DTYPE_F32 or ::STROP_DTYPE_BF16; -1 for NULL. Thread-safe (reads only).
 *         @since 0.2
 */
STROP_API int strop_model_compute_dtype(const strop_model *model);

/**
 * @brief Whether the weights that train keep their BF16 copy between products (the weight
 *        cache of a model computing in BF16, strop_model_set_compute_dtype(); PyTorch's
 *        `torch.autocast(cache_enabled=...)`). On (1, the default): every float32 weight a
 *        BF16 product reads keeps a BF16 copy, made once per change of the weight and read by
 *        the forward and the input gradient. Off (0): only frozen weights keep theirs (they
 *        never change; a frozen weight borrowed from a mapped file hands its pages back for
 *        it); a weight that trains is rounded to BF16 as each of its products packs it, the
 *        way the weight gradient's operands are. The results are the same bits either way;
 *        off takes 2 bytes per trained weight less from the forward to the backward (GPT-2
 *        small's full fine-tune: 284 MB of its 2.6 GB peak) for products a little slower
 *        (about 1% of its step on AVX512_BF16; docs/performance.md). Where the CPU lacks
 *        AVX512_BF16 the copies are kept either way: the exact fallback multiplies them.
 *        strop_model_step_memory() counts what the setting keeps. Setting 0 gives the trained
 *        weights' copies back now. Recipe key `model.weight_cache`.
 * @param[in,out] model   A model (finalized or not).
 * @param[in]     enabled 1 (keep every copy) or 0 (only the frozen weights').
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, @p enabled not 0 or 1; the model is then
 *         unchanged). Not thread-safe on one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_weight_cache(strop_model *model,
                                                                    int enabled);

/**
 * @brief The model's weight cache setting (strop_model_set_weight_cache()).
 * @param[in] model The model.
 * @return 1 or 0; -1 for NULL. Thread-safe (reads only). @since 0.2
 */
STROP_API int strop_model_weight_cache(const strop_model *model);

/** @brief How a model's attention layers compute (strop_model_set_attention()). @since 0.2 */
typedef enum strop_attention {
  STROP_ATTENTION_AUTO = 0,        /**< by speed (the default): the attention weights are
                                         kept for the backward where they are small (at most
                                         twice as many keys as a head's width, and no causal
                                         mask over several blocks), else tiled. */
  STROP_ATTENTION_TILED = 1,       /**< always tiled with the online softmax (flash
                                         attention): one block of scores per head at a time,
                                         nothing of size T x T kept for the backward, which
                                         computes the scores again (PyTorch's
                                         scaled_dot_product_attention on the CPU). */
  STROP_ATTENTION_MATERIALIZED = 2 /**< the T x T weights always kept for the backward, at
                                         every length (Hugging Face's "eager" attention). */
} strop_attention;

/**
 * @brief Chooses how the model's attention layers (`attention`, `multihead_attention` and the
 *        transformer blocks built on them) compute their weights: a memory-for-speed trade of
 *        the training step. Materialized, the softmax weights [batch, heads, T, T] of every
 *        layer are kept from the forward to the backward (BERT-base at 8 x 128 tokens: 75 MB
 *        in FP32); tiled, a layer keeps two numbers per query and its backward computes the
 *        scores again (BERT-base: about 2% more per step; docs/performance.md). The two give
 *        the same function but not the same bits (the tiled softmax sums in blocks): losses
 *        agree to about 1e-3. Decoding (strop_generate) is not affected. The setting is kept
 *        by strop_model_clone() and surgery, not saved in files; strop_model_step_memory()
 *        plans with it, and strop_model_check_memory() names it when it would help. Recipe
 *        key `model.attention`.
 * @param[in,out] model A model (finalized or not).
 * @param[in]     mode  ::STROP_ATTENTION_AUTO, ::STROP_ATTENTION_TILED or
 *                      ::STROP_ATTENTION_MATERIALIZED.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, another @p mode; the model is then
 *         unchanged). A forward awaiting its backward keeps the choice it ran with. Not
 *         thread-safe on one model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_attention(strop_model *model, int mode);

/**
 * @brief The model's attention setting (strop_model_set_attention()).
 * @param[in] model The model.
 * @return A ::strop_attention value; -1 for NULL. Thread-safe (reads only). @since 0.2
 */
STROP_API int strop_model_attention(const strop_model *model);

/**
 * @brief Whether the named parameter is trainable.
 * @param[in] model The model.
 * @param[in] name  A parameter's state_dict name.
 * @return 1 trainable, 0 frozen or a buffer, -1 for NULL arguments or an unknown name (no
 *         error sentence).
 * @since 0.1
 */
STROP_API int strop_model_param_trainable(const strop_model *model, const char *name);

/**
 * @brief Copies the gradient of a trainable parameter: what the backwards of the current
 *        window have added up (strop_trainer_backward(), strop_trainer_step() before its
 *        update) and the host has written (strop_model_set_grad()). Zero before any backward
 *        and after an update (the trainer and strop_optimizer_zero_grad() clear them).
 *
 * A copy rather than a view: the trainer clears gradients lazily and reuses their memory
 * during an update, and a training step keeps them, from its backward to the next forward, in
 * the step's memory (the next forward moves those that hold values into memory of their own
 * before it reuses it), so a pointer into them would change meaning under the host.
 * @param[in]  model The model; only read.
 * @param[in]  name  A parameter's name as strop_model_tensor_name() gives it ("head.weight").
 * @param[out] out   Receives @p count floats (the parameter's layout); unchanged on error.
 * @param[in]  count The parameter's number of values.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (not finalized; the parameter is
 *         frozen or a buffer: it has no gradient); STROP_E_NOT_FOUND (no such parameter, naming
 *         it); STROP_E_SHAPE (@p count differs, naming both). Thread-safe while no other
 *         thread changes the model.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_get_grad(const strop_model *model,
                                                            const char *name, float *out,
                                                            size_t count);

/**
 * @brief Replaces the gradient of a trainable parameter with @p count floats of the host: a
 *        gradient made outside strop, or a backward's gradient changed (a penalty's term
 *        added) before strop_trainer_apply() or strop_optimizer_step() applies it.
 *
 * The trainer starts each accumulation window from zero gradients at its first forward, so
 * write them after the backward of a window and before its apply; strop_optimizer_step() on
 * its own applies whatever is there. Values are stored as given: the trainer's guard checks
 * them at the apply, strop_optimizer_step() does not.
 * @param[in,out] model The model.
 * @param[in]     name  A trainable parameter's name.
 * @param[in]     data  @p count floats in the parameter's layout; copied.
 * @param[in]     count The parameter's number of values.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (not finalized; frozen or a
 *         buffer); STROP_E_NOT_FOUND; STROP_E_SHAPE; STROP_E_NOMEM (the first gradient of the
 *         model could not be allocated). On error the model is unchanged.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_grad(strop_model *model, const char *name,
                                                            const float *data, size_t count);

/* ---- copies, summaries, memory ---- */

/**
 * @brief Deep copy of a model: structure, parameters, buffers, flags, ties, metadata, mode
 *        and RNG state (not gradients or a pending step).
 * @param[in]  model The model (finalized or not); only read.
 * @param[out] out   The copy, owned by the caller (strop_model_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_clone(const strop_model *model,
                                                         strop_model **out);

/**
 * @brief A text table of the model: node name, type, output shape ("?" before finalize),
 *        parameter count and trainable (yes / no / partial / - for none; "bn-eval" marks
 *        BatchNorm kept in inference mode), then the totals.
 * @param[in]  model The model; only read.
 * @param[out] buf   Receives the table, snprintf-style; may be NULL when @p cap is 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length (excluding NUL); -1 for a NULL model, a NULL @p buf with
 *         @p cap > 0, or out of memory.
 * @since 0.1
 */
STROP_API int64_t strop_model_summary(const strop_model *model, char *buf, size_t cap);

/**
 * @brief Estimates the memory a training step will take, in bytes: the four figures add up to
 *        the peak strop_model_step_memory() predicts for the model's input shape.
 * @param[in]  model           A finalized model. With @p activations, its step is planned as
 *                             strop_model_step_memory() plans it, which leaves the model as it
 *                             was (a forward awaiting its backward is dropped); not thread-safe
 *                             on one model.
 * @param[in]  batch           Batch size >= 1.
 * @param[in]  optimizer_slots Values of optimizer state per trainable value, 0 .. 8: 0 (SGD),
 *                             1 (SGD with momentum), 2 (Adam, AdamW).
 * @param[out] weights         Parameters and buffers, as they are held (a frozen weight in
 *                             BF16 takes 2 bytes a value, in int8 1 byte plus a float32
 *                             scale per output channel: strop_model_set_frozen_dtype());
 *                             may be NULL.
 * @param[out] grads           Gradients (trainable parameters only); may be NULL.
 * @param[out] optim_state     Optimizer state (trainable parameters only); may be NULL.
 * @param[out] activations     The rest of the step's peak, planned by running a step of the
 *                             model's input shape on zeros (strop_model_step_memory()): the
 *                             step memory (activations the backward reads, tensors layers save,
 *                             gradients of activations, layer scratch, the loss's gradient or,
 *                             for an LM head run with its cross-entropy, one chunk of its
 *                             rows, GEMM buffers) and the copies of weights a step makes and
 *                             keeps (frozen batch norms folded into convolutions, BF16 copies
 *                             under a BF16 compute dtype), less what the gradients save by
 *                             lying, in a training step, in memory the backward has given
 *                             back (so that weights + grads + optim_state + activations is the
 *                             peak). Before 0.2 it was every node's output plus the gradients
 *                             backward visits, a bound. May be NULL (nothing is planned).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, batch < 1, slots outside 0..8);
 *         STROP_E_STATE (not finalized); STROP_E_SHAPE (a byte count overflows size_t, e.g.
 *         batch = 2^62: do not use the outputs; or a layer refuses the input shape);
 *         STROP_E_NOMEM (a model of more than 256 nodes needs a scratch array, or the planning
 *         ran out of memory). Outputs are written only on success.
 * @since 0.1 (@p activations planned since 0.2)
 */
STROP_API STROP_NODISCARD strop_status strop_model_memory_estimate(
    const strop_model *model, int64_t batch, int optimizer_slots, size_t *weights, size_t *grads,
    size_t *optim_state, size_t *activations);

/**
 * @brief Predicts the peak memory of one training step, in bytes, by planning the step: one
 *        forward and backward in train mode on zeros, in memory of their own, at the batch
 *        itself when it is at most 4 and otherwise at 2 and 4 samples, extrapolated linearly.
 *
 * strop_model_memory_estimate() gives the same peak, in four parts, at the model's input shape.
 * The step memory follows what a step really holds:
 * the activations that the backward reads (frozen parts keep only what is live, in-place
 * layers share memory, checkpointed blocks keep their inputs and recompute one block at a
 * time), the tensors layers save for their backward, the gradients of activations, layer
 * scratch, and the loss's gradient (as large as the output) — or, where the model's last node
 * is a linear layer (an LM head) that the trainer runs fused with its cross-entropy, the
 * default loss, one chunk of that layer's output rows and no gradient of the whole: the
 * prediction assumes the cross-entropy (`STROP_FUSED_LOSS=0` in the environment turns the
 * fusion off, for the trainer and the prediction alike). A training step plans the gradients
 * of trainable parameters with its activations (each from the backward that first writes it
 * to the step's end, in memory the activations have given back by then), and so does the
 * prediction: the step memory is what the step holds beyond the gradients, which count apart
 * (not once a trainer of the model accumulates several micro-batches a window:
 * ::STROP_TRAIN_ACCUM_STEPS above 1 keeps its gradients apart, and the prediction follows).
 * strop_trainer_step_memory() plans the step as a given trainer runs it: its optimizer, its
 * loss and its accumulation.
 * The planning costs about as much
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
                                                               size_t *activations, size_t *peak);

/**
 * @brief Says before training whether a training step fits in @p limit bytes: as
 *        strop_model_step_memory(), and when the peak is over the limit, STROP_E_NOMEM with a
 *        sentence giving the figures (weights, gradients, optimizer state, step memory) and
 *        what would make it fit: activation checkpointing (planned again with "auto" when it
 *        is off and the model has blocks), the largest batch that fits and the fewest
 *        micro-batches accumulated to the same samples an update that fit (a step not yet
 *        accumulating), frozen weights in BF16 or 8 bits, freezing more of the model.
 * @param[in,out] model           A finalized model (only borrowed for the planning).
 * @param[in]     batch           Samples per step, in [1, 2^40].
 * @param[in]     sample_shape    The per-sample input shape, or NULL for the model's; read only.
 * @param[in]     rank            Entries of @p sample_shape; ignored when it is NULL.
 * @param[in]     optimizer_slots Values of optimizer state per trainable value (0, 1, 2, ...).
 * @param[in]     limit           Bytes the step may take (e.g. the cgroup's or RLIMIT_AS, less
 *                                what the host holds besides), or 0 for the machine's limit:
 *                                the room strop_memory_available() finds plus the weights and
 *                                buffers the model already holds (so they are not counted
 *                                twice); the sentence then names the limit's source and size
 *                                ("RLIMIT_AS 1.50 GB: 1.2 GB left, and the 102 MB the model
 *                                holds").
 * @return STROP_OK when it fits; STROP_E_NOMEM with the sentence when it does not; otherwise
 *         as strop_model_step_memory(), and with @p limit 0 as strop_memory_available() when
 *         no limit can be read. The model is unchanged. Not thread-safe on one model.
 * @since 0.2 (@p limit 0: the machine's limit, since 0.2 as well; before, 0 refused every
 *        step)
 */
STROP_API STROP_NODISCARD strop_status strop_model_check_memory(strop_model *model, int64_t batch,
                                                                const int64_t *sample_shape,
                                                                int rank, int optimizer_slots,
                                                                size_t limit);

/* ---- files: architecture specs, weights, pre-trained checkpoints, export ---- */

/** @brief Load flags of strop_model_load_weights() and its variants. @since 0.1 */
enum {
  /** Default: every model tensor must be in the file with its shape, and nothing else. */
  STROP_LOAD_STRICT = 0,
  /** PyTorch's strict=False: load what matches by name and shape, report the rest. */
  STROP_LOAD_PARTIAL = 1,
  /** Memory without copies (@since 0.2): a parameter that is frozen when it is loaded, whose
   *  tensor in the file has the dtype the parameter is held in (F32, or BF16 when the model's
   *  frozen dtype is BF16 and the weight is [out, in]) and is aligned to its element size,
   *  points straight into the read-only memory-mapped file: nothing is copied and no memory
   *  is resident until the values are read. The mapping lives as long as any parameter uses
   *  it. Whatever writes such a weight (unfreezing it, merging LoRA, strop_model_set_tensor(),
   *  strop_model_tensor_view(), a later load) copies it first. Other parameters are copied as
   *  without the flag; buffers always are; with strop_model_load_weights_mem() it has no
   *  effect. Like every user of mmap: the file must not be truncated or rewritten in place
   *  while the model uses it (a read past its new end is a SIGBUS); replacing it by a rename,
   *  as strop's own writers do, is safe. docs/performance.md, "Memory without copies". */
  STROP_LOAD_MMAP = 2,
  /** strop_model_load_pretrained() only (@since 0.2): every parameter is built frozen (buffers
   *  as with strop_model_freeze() on "*"), so that with ::STROP_LOAD_MMAP the whole base is
   *  borrowed from the file; unfreeze the parts to train (a head) afterwards. */
  STROP_LOAD_FROZEN = 4,
  /** strop_model_load_pretrained() only (@since 0.2): read no weights — the folder needs only
   *  config.json — and draw every parameter as the family's Hugging Face class draws a fresh
   *  model (PreTrainedModel._init_weights): Linear / Conv1D and Embedding weights
   *  N(0, initializer_range), biases 0, LayerNorm / RMSNorm weights 1, an embedding's
   *  padding row (pad_token_id) 0, GPT-2's c_proj weights N(0, initializer_range /
   *  sqrt(2 n_layer)); reproducible from the options' seed (strop's random stream, not
   *  torch's). For the transformers families (GPT-2, Llama, BERT, RoBERTa, DistilBERT);
   *  not with ::STROP_LOAD_PARTIAL or ::STROP_LOAD_MMAP. */
  STROP_LOAD_FRESH = 8
};

/**
 * @brief What a weight load found: missing, unexpected, mismatched and loaded tensor names.
 *
 * Read-only once made: its getters may run on several threads at once.
 * Owned by the caller once returned; free with strop_load_report_free().
 * @since 0.1
 */
typedef struct strop_load_report strop_load_report;

/**
 * @brief Loads a model architecture from a YAML spec file and finalizes it.
 *
 * The spec gives the per-sample `input:` shape, an optional `seed:` (default 0) and the
 * `layers:` list; see docs/formats.md. Parameters are freshly initialised from the seed.
 * Errors name the file, line and column and what was expected, e.g.
 * "strop_model_load_spec: model.yaml:14:9: layer 'head': unknown option 'out_feature'".
 * Hostile input is bounded: YAML aliases are refused, nesting depth, node count, scalar
 * length and file size (16 MiB) are limited.
 * @param[in]  path The spec file; read during the call.
 * @param[out] out  The finalized model, owned by the caller (strop_model_free()); NULL on
 *                  error.
 * @return STROP_OK; STROP_E_IO (cannot read the file); STROP_E_FORMAT (not YAML, wrong
 *         structure, limits exceeded); STROP_E_INVALID_ARG (NULL, a layer's options or
 *         name) / STROP_E_NOT_FOUND (an unknown type or input) / STROP_E_SHAPE (a shape
 *         conflict), as strop_model_add() and strop_model_finalize() return them;
 *         STROP_E_NOMEM. Thread-safe (it touches no shared state).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_spec(const char *path, strop_model **out);

/**
 * @brief As strop_model_load_spec(), from a NUL-terminated YAML string; errors name
 *        "<string>" as the file.
 * @param[in]  yaml The spec text, at most 16 MiB; only read during the call.
 * @param[out] out  The finalized model, owned by the caller (strop_model_free()); NULL on
 *                  error.
 * @return STROP_OK; the statuses of strop_model_load_spec() but STROP_E_IO (STROP_E_FORMAT
 *         also for a string over the limit). Thread-safe.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_spec_string(const char *yaml,
                                                                    strop_model **out);

/**
 * @brief Writes the model's architecture (input shape, seed, every node with its type, inputs,
 *        ties and all options, defaults included) as a YAML spec, atomically (temporary file
 *        in the same folder, fsync, rename). Loading the result gives a model with the same
 *        nodes, options and shapes. Weights are not part of a spec (strop_model_save_weights()).
 * @param[in] model A model with at least one node (finalized or not); only read.
 * @param[in] path  The file to write.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, no nodes); STROP_E_IO (naming the path; the
 *         old file, if any, is intact); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_spec(const strop_model *model,
                                                             const char *path);

/**
 * @brief The model's YAML spec (as strop_model_save_spec() writes it) into the caller's
 *        buffer, snprintf-style.
 * @param[in]  model A model with at least one node (finalized or not); only read.
 * @param[out] buf   Buffer of @p cap bytes (may be NULL when @p cap is 0); always
 *                   NUL-terminated when @p cap > 0.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length of the spec (excluding the NUL), or -1 on error (NULL model, no
 *         nodes, NULL @p buf with @p cap > 0, out of memory; strop_last_error() says which).
 * @since 0.1
 */
STROP_API int64_t strop_model_spec_string(const strop_model *model, char *buf, size_t cap);

/**
 * @brief Loads parameters and buffers from a safetensors file by PyTorch name.
 *
 * Float tensors may be stored as F32, F16, BF16 or F64 (converted to float32); int64
 * buffers (BatchNorm's num_batches_tracked) as I64 or I32. Everything is validated
 * before the model is touched: in strict mode any missing, unexpected or mismatched tensor
 * fails the call naming the first few, and the model is unchanged. The file is memory-mapped
 * during the call.
 *
 * Model metadata (strop_model_set_meta()): a strict load of a file that has
 * "strop.meta.<key>" entries replaces the model's metadata by them (the file describes the
 * whole model now); a file without such entries (PyTorch's, strop 0.1's) and every partial
 * load leave the model's metadata as it was. An entry a strict load cannot take (a key or
 * value outside strop_model_set_meta()'s bounds) fails the load with STROP_E_FORMAT.
 * @param[in,out] model      A finalized model; unchanged on error.
 * @param[in]     path       A safetensors file.
 * @param[in]     flags      ::STROP_LOAD_STRICT or ::STROP_LOAD_PARTIAL, optionally | ::STROP_LOAD_MMAP.
 * @param[out]    report_out Optional (NULL to ignore): the report, owned by the caller
 *                           (strop_load_report_free()); set when the file's tensors were
 *                           matched against the model (on success, and when a strict load
 *                           fails on names or shapes), else NULL.
 * @return STROP_OK; STROP_E_IO (the file cannot be opened or mapped); STROP_E_FORMAT (a
 *         malformed file or metadata entry: the sentence says what); STROP_E_NOT_FOUND
 *         (strict: missing or unexpected tensors); STROP_E_SHAPE (strict: a shape or dtype
 *         mismatch); STROP_E_STATE (not finalized); STROP_E_INVALID_ARG (NULL, unknown
 *         flags); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights(strop_model *model,
                                                                const char *path, int flags,
                                                                strop_load_report **report_out);

/**
 * @brief As strop_model_load_weights(), from a safetensors file image in memory (a host that
 *        embeds or downloads its model): the same checks (header bounds, dtypes, offsets,
 *        strict or partial, metadata), with errors naming "<memory>" where the file's path
 *        would be.
 * @param[in,out] model      A finalized model; unchanged on error.
 * @param[in]     data       The file's bytes. Read during the call only, never kept or
 *                           written: the caller may free it as soon as the call returns. Any
 *                           alignment.
 * @param[in]     size       Bytes at @p data.
 * @param[in]     flags      ::STROP_LOAD_STRICT or ::STROP_LOAD_PARTIAL.
 * @param[out]    report_out Optional (NULL to ignore), as for strop_model_load_weights().
 * @return STROP_OK; STROP_E_FORMAT (not a valid safetensors image: the sentence says what);
 *         STROP_E_NOT_FOUND / STROP_E_SHAPE (strict: missing, unexpected or mismatched
 *         tensors); STROP_E_STATE (not finalized); STROP_E_INVALID_ARG (NULL model or data,
 *         unknown flags); STROP_E_NOMEM. Thread-safe for distinct models (the buffer may be
 *         shared).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights_mem(
    strop_model *model, const void *data, size_t size, int flags, strop_load_report **report_out);

/**
 * @brief As strop_model_load_weights(), renaming file tensors first: a name starting with
 *        @p from_prefix has that prefix replaced by @p to_prefix ("features." -> "backbone."
 *        loads features.0.weight into backbone.0.weight). Other names are kept.
 * @param[in,out] model       A finalized model; unchanged on error.
 * @param[in]     path        A safetensors file.
 * @param[in]     flags       ::STROP_LOAD_STRICT or ::STROP_LOAD_PARTIAL, optionally | ::STROP_LOAD_MMAP.
 * @param[in]     from_prefix Prefix in the file ("" matches every name).
 * @param[in]     to_prefix   Replacement (may be "").
 * @param[out]    report_out  Optional (NULL to ignore), as for strop_model_load_weights();
 *                            its names are the model's (after renaming).
 * @return STROP_OK; the statuses of strop_model_load_weights() (STROP_E_INVALID_ARG also for
 *         a NULL prefix).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_weights_remap(
    strop_model *model, const char *path, int flags, const char *from_prefix,
    const char *to_prefix, strop_load_report **report_out);

/**
 * @brief Saves every parameter and buffer as a safetensors file (float tensors as F32, int64
 *        buffers as I64, PyTorch names and layouts; metadata "format" = "strop",
 *        "strop_version" and, since 0.2, every model metadata entry as "strop.meta.<key>"),
 *        atomically: a failure leaves any old file intact.
 * @param[in] model A finalized model; only read.
 * @param[in] path  The file to write.
 * @return STROP_OK; STROP_E_IO (naming the path); STROP_E_STATE (not finalized);
 *         STROP_E_INVALID_ARG (NULL); STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_weights(const strop_model *model,
                                                                const char *path);

/**
 * @brief Options of strop_model_load_pretrained(); the struct and its init function are
 *        defined in pretrained.h.
 * @since 0.2
 */
typedef struct strop_pretrained_options strop_pretrained_options;

/**
 * @brief Builds a pre-trained network from its checkpoint, with the checkpoint's own tensor
 *        names and layouts, and loads its weights.
 *
 * @p path is either a Hugging Face model folder (config.json with "architectures" or
 * "model_type", and model.safetensors or the shards model.safetensors.index.json lists) or
 * one safetensors file (a torchvision state_dict: name the architecture). The result is a
 * finalized model in eval mode like any other: surgery, training, strop_model_save_weights()
 * (which writes the same names and layouts back, so PyTorch loads the file with
 * strict=True). Float tensors may be stored as F32, F16, BF16 or F64. With ::STROP_LOAD_FRESH
 * in the options' flags no weights are read: a folder with config.json is enough, and the
 * parameters are drawn as the family's Hugging Face class draws a fresh model (the
 * transformers families only). The list of architectures: strop_pretrained_arch_count(),
 * strop_pretrained_arch_name(), and docs/pretrained.md.
 * @param[in]  path       A folder or a .safetensors file; read during the call.
 * @param[in]  arch       An architecture name ("resnet18"), or NULL to take it from
 *                        config.json.
 * @param[in]  opt        Options (strop_pretrained_options_init()), or NULL for the defaults;
 *                        only read.
 * @param[out] out        The model, owned by the caller (strop_model_free()); NULL on error.
 * @param[out] report_out Optional (NULL to ignore): what the load matched, as for
 *                        strop_model_load_weights(); owned by the caller
 *                        (strop_load_report_free()); NULL with ::STROP_LOAD_FRESH.
 * @return STROP_OK; STROP_E_IO (a file cannot be read: the sentence names it, and for a
 *         sharded folder the missing shard); STROP_E_FORMAT (a malformed config.json or file,
 *         a config field missing or out of range: the sentence names the file and key);
 *         STROP_E_UNSUPPORTED (an architecture strop does not know, naming those it does;
 *         ::STROP_LOAD_FRESH for one without a Hugging Face initialisation);
 *         STROP_E_NOT_FOUND / STROP_E_SHAPE (strict: missing, unexpected or mismatched
 *         tensors, named); STROP_E_INVALID_ARG (NULL @p path or @p out, an uninitialised
 *         @p opt, unknown flags, image_size or max_length out of range, no architecture named
 *         for a single file or a folder without config.json, ::STROP_LOAD_FRESH with a file
 *         or with ::STROP_LOAD_PARTIAL or ::STROP_LOAD_MMAP); STROP_E_NOMEM. Nothing is
 *         returned half-loaded. Thread-safe (it touches no shared state).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_load_pretrained(
    const char *path, const char *arch, const strop_pretrained_options *opt, strop_model **out,
    strop_load_report **report_out);

/**
 * @brief Writes a model loaded from a Hugging Face folder (and fine-tuned, changed by surgery,
 *        given LoRA adapters) back as one: @p dir/config.json and @p dir/model.safetensors,
 *        which transformers' from_pretrained (and strop_model_load_pretrained()) load.
 *
 * The weights carry the checkpoint's own names and layouts (Conv1D [in, out], packed q/k/v),
 * float32, tied weights once under the name the checkpoint stores them by (GPT-2's
 * transformer.wte.weight, no lm_head.weight), and the safetensors metadata "format": "pt"
 * that transformers requires. LoRA adapters are folded into their base weights in the file
 * (the model itself keeps them as they are), as PEFT's merge_and_unload would; to save the
 * adapters alone use strop_model_lora_save(). config.json is the one the load read (kept in
 * the model's metadata as "pretrained.config"), with torch_dtype "float32" and, for a
 * classifier whose head now has another number of classes, id2label / label2id of LABEL_i.
 * @p dir is created when missing; each file is replaced atomically (weights first), so a
 * crash leaves the old file or the new one, never a torn file.
 * @param[in] model The model; only read.
 * @param[in] dir   The folder.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or empty); STROP_E_STATE (not finalized, or not
 *         loaded from a Hugging Face folder: use strop_model_save_weights()); STROP_E_IO (the
 *         folder or a file cannot be written, naming it); STROP_E_NOMEM. The model is unchanged
 *         in every case. Thread-safe while no other thread changes the model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_save_pretrained(const strop_model *model,
                                                                   const char *dir);

/**
 * @brief Gives a text model loaded by strop_model_load_pretrained() (GPT-2, the Llama family,
 *        the BERT family) a sequence-classification head in place of whatever follows its last
 *        hidden state (an LM head, a pooler, a classifier): a pooling layer that reads the
 *        batch's padding mask, dropout when @p dropout > 0, and a linear layer of @p classes
 *        outputs named as the family's *ForSequenceClassification names it — `score` (no bias)
 *        for GPT-2 and Llama, `classifier` for the BERT family — so PEFT's modules_to_save and
 *        strop_model_save_pretrained() keep those names.
 *
 * It is a surgery plan (truncate at the hidden state, append pool, dropout and linear), with
 * the new nodes `pool`, `dropout` and the head. The hidden state's node is the model's
 * metadata "pretrained.hidden" (BERT's pooler output "pretrained.pooled"). When the head is
 * the one the family's Hugging Face class has (GPT-2, Llama: `last`; BERT loaded as
 * bert_cls or with a pooler: `cls`, through the pooler), the model's architecture becomes that
 * class (gpt2_cls, llama_cls, bert_cls) and strop_model_save_pretrained() writes it
 * ("architectures", LABEL_i labels); with another pooling, saving a Hugging Face folder is
 * refused (STROP_E_UNSUPPORTED) and strop_model_save_weights() keeps it.
 * @param[in,out] model   A finalized model loaded by strop_model_load_pretrained().
 * @param[in]     pool    "cls": the first token the padding mask keeps (BERT's [CLS]; through
 *                        BERT's pooler when it has one); "mean": the mean over the tokens the
 *                        mask keeps; "last": the last token the mask keeps (a decoder's, left
 *                        or right padding); NULL or "default": the family's own (last for
 *                        decoders, cls for encoders).
 * @param[in]     classes Outputs of the head, >= 1.
 * @param[in]     dropout Dropout before the head, in [0, 1); 0: none.
 * @param[in]     seed    Initialises the head's weights.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, an unknown pool word, classes < 1,
 *         dropout out of range); STROP_E_UNSUPPORTED (a model without a token sequence or not
 *         loaded by strop_model_load_pretrained, named); STROP_E_STATE (model not
 *         finalized); STROP_E_NOMEM. On error the model is unchanged. The model is used by one
 *         thread at a time.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_add_classifier_head(
    strop_model *model, const char *pool, int64_t classes, float dropout, uint64_t seed);

/** @brief Flags of strop_model_export(); combine with |. @since 0.1 */
typedef enum strop_export_flags {
  STROP_EXPORT_DEFAULT = 0,     /**< Merge LoRA, drop dropout, fold BatchNorm. */
  STROP_EXPORT_NO_FOLD = 1,     /**< Keep BatchNorm nodes as they are. */
  STROP_EXPORT_KEEP_DROPOUT = 2 /**< Keep dropout nodes (identity in eval mode anyway). */
} strop_export_flags;

/**
 * @brief Saves a fine-tuned model for inference as a YAML spec plus a safetensors weights
 *        file that strop_model_load_spec() + strop_model_load_weights() (strict) or PyTorch
 *        load without the trainer.
 *
 * Works on a copy; @p model is not changed. On the copy:
 * - LoRA adapters are merged into the base weights and every `lora_linear` node becomes a
 *   plain `linear` of the same name (its `lora_A`/`lora_B` tensors are not written); a
 *   `multihead_attention` node with adapters on its projections is written without them
 *   (`lora_r` all 0), their products merged into the projection weights;
 * - `dropout` nodes are removed and their consumers read the dropout's input (unless
 *   ::STROP_EXPORT_KEEP_DROPOUT); a dropout that is the model's output is kept when its input
 *   cannot become the output;
 * - a `batchnorm2d` right after a `conv2d`, or a `batchnorm1d` on a [C] input right after a
 *   `linear`, is folded into that layer with its eval-mode affine map
 *   (y = (x - running_mean) / sqrt(running_var + eps) * weight + bias): the conv or linear
 *   gets a bias if it had none and the BatchNorm node is removed. Folding needs running
 *   statistics and a conv/linear whose output feeds only that BatchNorm; other BatchNorm
 *   nodes stay (as they do with ::STROP_EXPORT_NO_FOLD);
 * - the mode is eval.
 *
 * The weights file carries the model's metadata (strop_model_set_meta(), since 0.2), so the
 * exported model keeps its preprocessing and class names. Outputs of the exported model equal
 * the eval-mode outputs of @p model up to float rounding.
 *
 * Both files are written atomically (temporary file beside each, fsync, rename): the spec's
 * temporary file is written first, then the weights are committed, then the spec. Any
 * failure before that last rename leaves both paths as they were and no temporary file.
 * @param[in] model        A finalized model; only read.
 * @param[in] spec_path    The YAML spec to write.
 * @param[in] weights_path The safetensors file to write (must differ from @p spec_path).
 * @param[in] flags        ::STROP_EXPORT_DEFAULT or a combination of ::strop_export_flags.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, empty or equal paths, unknown flags);
 *         STROP_E_STATE (not finalized); STROP_E_UNSUPPORTED (since 0.2: a LoRA adapter on a
 *         weight tied to another tensor, as strop_model_lora_merge() refuses; nothing is
 *         written); STROP_E_IO naming the path; STROP_E_NOMEM.
 *         Thread-safe for distinct paths while no other thread modifies @p model.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_export(const strop_model *model,
                                                          const char *spec_path,
                                                          const char *weights_path, int flags);

/* ---- LoRA adapters (added by surgery: strop_surgery_lora()) ---- */

/**
 * @brief Folds every LoRA adapter into its base weight (W += scale · B A) so inference costs
 *        a plain linear; the adapters are kept, so strop_model_lora_unmerge() restores the
 *        split (to float rounding). Merged adapters get no gradient. Adapters already merged
 *        are left as they are. Base weights held in BF16 or int8 are widened to float32 first
 *        and the model's frozen dtype becomes STROP_DTYPE_F32 (since 0.2: a base rounded again
 *        after the merge would not unmerge exactly).
 * @param[in,out] model The model.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (no LoRA node);
 *         STROP_E_UNSUPPORTED (since 0.2: an adapted base weight is tied to another tensor —
 *         a LoRA on GPT-2's lm_head or on its token embedding `transformer.wte`, which share
 *         one weight — which merging would change too; nothing is merged); STROP_E_NOMEM (widening a held base; the model is
 *         then unchanged).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_merge(strop_model *model);

/**
 * @brief Takes merged adapters back out of the base weights (W -= scale · B A); adapters
 *        not merged are left as they are.
 * @param[in,out] model The model.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (no LoRA node).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_unmerge(strop_model *model);

/**
 * @brief Saves the LoRA adapters alone in Hugging Face PEFT's layout: @p dir /
 *        `adapter_model.safetensors` (tensors `base_model.model.<node>.lora_A.weight` and
 *        `.lora_B.weight`, F32) and `adapter_config.json` (r, lora_alpha, target_modules,
 *        lora_dropout, peft_type "LORA", bias "none"; rank_pattern / alpha_pattern when nodes
 *        differ). Each file is written atomically.
 *
 * Since 0.2 an embedding's adapter is saved under PEFT's names
 * `base_model.model.<node>.lora_embedding_A` [r, V] and `.lora_embedding_B` [D, r].
 *
 * Since 0.2 it also writes PEFT's `modules_to_save`: the nodes the model's metadata
 * "lora.modules_to_save" lists — each node a surgery `replace` made, such as a new head — are
 * saved whole (every parameter and buffer but the adapters, as `base_model.model.<name>`, the
 * names PEFT writes) and listed in `adapter_config.json`, so base model + folder gives back
 * the fine-tuned model (strop_model_lora_load()). @p dir and its missing parents are created.
 *
 * Since 0.2 a node without adapters whose own parameters train (a LayerNorm unfrozen beside
 * the adapters, say) is saved whole and listed in `modules_to_save` too, after the listed ones:
 * the base model's values of it are not the trained ones.
 *
 * Since 0.2 the bias of an adapted module that trains (unfrozen after LoRA) is saved as PEFT's
 * `bias: "lora_only"` saves it, `base_model.model.<module>.base_layer.bias`, and the config
 * says `"bias": "lora_only"`. Any other own parameter of an adapted node that trains (its base
 * weight) has no place in the folder: the save is refused, nothing written.
 * @param[in] model The model with adapters; only read.
 * @param[in] dir   The folder to write.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_NOT_FOUND (no LoRA node, or
 *         "lora.modules_to_save" names a node the model lacks); STROP_E_FORMAT (that entry
 *         is not a JSON list of names); STROP_E_UNSUPPORTED (an adapted node's base weight
 *         trains); STROP_E_IO (naming the folder or file); STROP_E_NOMEM.
 * @since 0.1
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
 * Those nodes are then listed in the model's "lora.modules_to_save" metadata. Since 0.2 an
 * embedding's adapter (`lora_embedding_A` / `lora_embedding_B`) is applied to the embedding
 * node of that name. Since 0.2 the config's `bias` is read: with "lora_only" (or "all") the
 * file's biases of adapted modules (`<module>.base_layer.bias`, or `<module>.bias` as older
 * PEFT wrote them) replace the base's, and with "all" so do biases of other nodes; the loaded
 * biases are trainable, so a new save writes them again.
 * @param[in,out] model A finalized base model; unchanged on error.
 * @param[in]     dir   The adapter folder.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_IO (missing or unreadable files);
 *         STROP_E_FORMAT (bad JSON or safetensors, a bad lora_alpha or lora_dropout, tensors
 *         not in pairs, a tensor of no listed module, an embedding's adapter names on a
 *         linear node or the other way round, a `bias` other than "none", "lora_only" or
 *         "all", a bias tensor the config's `bias` does not admit); STROP_E_UNSUPPORTED (a peft_type other
 *         than LORA, an adapter variant strop does not implement, dropout on attention
 *         adapters); STROP_E_NOT_FOUND (a module or bias the model lacks); STROP_E_SHAPE (a
 *         tensor that does not fit its module or bias, a module_to_save of another shape that is not a
 *         linear); STROP_E_STATE (not finalized, or a module whose adapters are merged);
 *         STROP_E_NOMEM.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_lora_load(strop_model *model, const char *dir);

/* ---- applying a trained classifier ---- */

/**
 * @brief The top classes a classifier gave each row of a batch (strop_model_predict()):
 *        output index, source label, name and probability, best first.
 *
 * Read-only once made: its getters may run on several threads at once. Free with
 * strop_prediction_free().
 * @since 0.2
 */
typedef struct strop_prediction strop_prediction;

/**
 * @brief Applies a classifier to raw inputs as its training data were prepared, and returns
 *        the @p k most likely classes of every row with their names and probabilities.
 *
 * What the model's metadata says (docs/formats.md, model metadata; the recipe runner writes
 * it) is applied to @p input in the data pipeline's order and with its code: each sample has
 * the shape "input.shape" (default: the model's input shape), is multiplied by "input.scale",
 * resized as "input.resize" says and normalized by "input.normalize" — e.g. uint8 images
 * 0-255 as they come. The model then runs in eval mode (its mode is restored afterwards), its
 * outputs are taken as logits, and a softmax gives the probabilities. "classes" maps output
 * index i to its source label and name; without it the label is i and there is no name.
 * @param[in,out] model A finalized model whose output is one score per class ([C]); its
 *                      forward state is used, so not const.
 * @param[in]     input N samples: a float32 tensor whose element count is N times a sample's;
 *                      when its rank is 2 or more its first dimension must be N ([N, 28, 28]
 *                      and [N, 1, 28, 28] both hold [1, 28, 28] samples). Every value finite.
 *                      Only read.
 * @param[in]     k     Classes per row, >= 1; more than the model has gives all of them.
 * @param[out]    out   The prediction, owned by the caller (strop_prediction_free()); NULL
 *                      on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL, k < 1, a NaN or infinite input value: the
 *         sentence names the row); STROP_E_SHAPE (the input does not hold whole samples, or
 *         the prepared samples do not fit the model, naming both shapes); STROP_E_STATE (not
 *         finalized); STROP_E_UNSUPPORTED (the output is not one score per class);
 *         STROP_E_FORMAT (a metadata entry strop reads here is not what docs/formats.md says,
 *         naming it); STROP_E_NUMERIC (the model gives a non-finite score: broken weights);
 *         STROP_E_NOMEM. The model is unchanged (but for its forward state).
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_predict(strop_model *model,
                                                           const strop_tensor *input, int k,
                                                           strop_prediction **out);

/**
 * @brief strop_model_predict() on raw texts: a text classifier trained by a recipe encodes
 *        them with the tokenizer it was trained with, and returns the @p k most likely
 *        classes of every text with their names and probabilities.
 *
 * The model's "input.tokenizer" metadata (written by a recipe run on text data:
 * docs/formats.md, model metadata) names the tokenizer file, the sequence length L
 * ("max_length") and the padding ("padding": "longest", the default, or "max_length"). Each
 * text (with its pair) is encoded with the tokenizer's special tokens, truncated to L
 * (longest first) and padded with the tokenizer's pad id (else 0), as the recipe's data were;
 * the model runs in eval mode on the ids with their attention mask
 * (strop_model_forward_masked()), and a softmax of its outputs gives the probabilities.
 * @param[in,out] model A finalized classifier ([C] scores per row) of token ids [L].
 * @param[in,out] tok   The tokenizer to encode with (its cache changes), or NULL: the one
 *                      "input.tokenizer" names, loaded for the call. With a tokenizer the
 *                      metadata may be absent (L is then the model's input length).
 * @param[in]     texts @p n NUL-terminated UTF-8 texts (invalid bytes read as U+FFFD).
 * @param[in]     pairs NULL, or @p n second texts (an entry may be NULL).
 * @param[in]     n     Number of texts, >= 1.
 * @param[in]     k     Classes per text, >= 1; more than the model has gives all of them.
 * @param[out]    out   The prediction (row i: texts[i]), owned by the caller
 *                      (strop_prediction_free()); NULL on error.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL arguments, n < 1, k < 1, a text that encodes to
 *         no token: an empty text, naming its index); STROP_E_NOT_FOUND (no
 *         tokenizer given and no "input.tokenizer" metadata: the sentence says so); STROP_E_IO,
 *         STROP_E_FORMAT or STROP_E_UNSUPPORTED (the tokenizer "input.tokenizer" names does not
 *         load: the sentence names the file and why; malformed metadata, naming the key);
 *         STROP_E_UNSUPPORTED (the metadata's task is not "classify", or the model's output is
 *         not one score per class); STROP_E_STATE (not finalized); STROP_E_SHAPE (the ids do
 *         not fit the model); STROP_E_NUMERIC; STROP_E_NOMEM. The model is unchanged (but for
 *         its forward state). Not thread-safe on one model or one tokenizer.
 * @since 0.2
 */
STROP_API STROP_NODISCARD strop_status
strop_model_predict_text(strop_model *model, strop_tokenizer *tok, const char *const *texts,
                         const char *const *pairs, int64_t n, int k, strop_prediction **out);

STROP_END_DECLS

#endif
