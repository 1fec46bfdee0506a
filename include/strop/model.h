/* strop — models: a DAG of named layer nodes with PyTorch-named parameters. Build one from
 * C, run inference on a batch, read and write its parameters by name. */
#ifndef STROP_MODEL_H
#define STROP_MODEL_H

#include "common.h"
#include "error.h"
#include "tensor.h"

/** @file model.h @brief The model graph: build, inspect, run. @since 0.1 */

STROP_BEGIN_DECLS

/**
 * @brief A neural network: named nodes in a DAG, each a layer with named parameters.
 * One handle from one thread at a time; distinct models are independent.
 */
typedef struct strop_model strop_model;

/**
 * @brief Creates an empty model whose input has the given per-sample shape (no batch dim),
 *        e.g. {1, 28, 28} for grey images or {64} for a sequence of 64 token ids.
 * @param[out] out The model, owned by the caller (strop_model_free()).
 * @return STROP_OK, STROP_E_INVALID_ARG (bad rank or dims), STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_create(int rank, const int64_t *input_shape,
                                                          strop_model **out);

/**
 * @brief Appends a node to a model that is not finalized yet.
 * @param name    Unique hierarchical name ("features.0", "head"); letters, digits, '_' and '.'.
 * @param type    A registered layer type ("linear", "conv2d", ...; see docs/formats.md).
 * @param options The layer's options as "key=value" pairs separated by spaces or commas;
 *                lists in brackets: "in_channels=1 out_channels=32 kernel_size=3 padding=1",
 *                "kernel_size=[3,5]". NULL or "" for none. Copied.
 * @param inputs  Comma-separated names of the input nodes, "input" for the model input;
 *                NULL or "" means the previous node (the model input for the first node).
 * @return STROP_OK; STROP_E_NOT_FOUND (unknown type or input name); STROP_E_INVALID_ARG
 *         (duplicate or bad name, bad or unknown option: the sentence names the key);
 *         STROP_E_STATE (already finalized); STROP_E_NOMEM. The model is unchanged on error.
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_add(strop_model *model, const char *name,
                                                       const char *type, const char *options,
                                                       const char *inputs);

/**
 * @brief Infers every node's output shape, allocates the parameters and initialises them
 *        (PyTorch's default initialisers) from @p seed. The last node is the output.
 * @return STROP_OK; STROP_E_SHAPE (a shape conflict, naming nodes and shapes);
 *         STROP_E_INVALID_ARG (a cycle, no nodes); STROP_E_STATE (already finalized);
 *         STROP_E_NOMEM. On error the model stays unfinalized and may be freed. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_finalize(strop_model *model, uint64_t seed);

/**
 * @brief Runs the model on a batch: @p input has shape [N, input shape...].
 *
 * Uses the model's mode (strop_model_set_training()); a new model is in eval mode, so this
 * is inference: dropout off, BatchNorm with running statistics. In train mode BatchNorm
 * updates its running statistics, as PyTorch does.
 * @param[out] out A new tensor [N, output shape...], owned by the caller.
 * @return STROP_OK; STROP_E_SHAPE (input shape differs, naming both); STROP_E_STATE (not
 *         finalized); STROP_E_INVALID_ARG; STROP_E_NOMEM. NaN inputs propagate. @since 0.1
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

/** @brief Switches train (1) or eval (0) mode. @return STROP_OK or STROP_E_INVALID_ARG.
 *  @since 0.1 */
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

/** @brief 1 in train mode, 0 in eval mode or for NULL. @since 0.1 */
STROP_API int strop_model_is_training(const strop_model *model);

/** @brief Frees the model and its parameters. NULL is a no-op. @since 0.1 */
STROP_API void strop_model_free(strop_model *model);

/**
 * @brief Per-sample input shape into @p dims (up to @p cap entries).
 * @return The rank, or -1 for NULL arguments. @since 0.1
 */
STROP_API int strop_model_input_shape(const strop_model *model, int64_t *dims, int cap);

/**
 * @brief Per-sample output shape of the finalized model into @p dims (up to @p cap).
 * @return The rank, or -1 when NULL or not finalized. @since 0.1
 */
STROP_API int strop_model_output_shape(const strop_model *model, int64_t *dims, int cap);

/** @brief Number of nodes, or -1 for NULL. @since 0.1 */
STROP_API int64_t strop_model_num_nodes(const strop_model *model);

/**
 * @brief Name (@p what = 0) or type (@p what = 1) of node @p i, snprintf-style.
 * @deprecated Use strop_model_node_name() or strop_model_node_type(); kept, with the same
 *             behaviour, for programs built against 0.1.
 * @return The length of the full string (excluding NUL), or -1 for bad arguments.
 * @since 0.1
 */
STROP_API int64_t strop_model_node_info(const strop_model *model, int64_t i, int what, char *buf,
                                        size_t cap);

/**
 * @brief The name of node @p i ("features.0"), in the model's order, into @p buf.
 * @param[in]  model The model (finalized or not).
 * @param[in]  i     0 .. strop_model_num_nodes() - 1.
 * @param[out] buf   Receives the name, NUL-terminated and truncated to @p cap (snprintf
 *                   style); may be NULL when @p cap is 0, to ask for the length.
 * @param[in]  cap   Bytes available at @p buf.
 * @return The full length (excluding the NUL), or -1 (NULL model, @p i out of range, NULL
 *         @p buf with @p cap > 0) with strop_last_error() set. Thread-safe on a model no one
 *         modifies. @since 0.2
 */
STROP_API int64_t strop_model_node_name(const strop_model *model, int64_t i, char *buf,
                                        size_t cap);

/**
 * @brief The layer type of node @p i ("conv2d"), as strop_model_node_name().
 * @return The full length, or -1 for bad arguments. @since 0.2
 */
STROP_API int64_t strop_model_node_type(const strop_model *model, int64_t i, char *buf,
                                        size_t cap);

/**
 * @brief The options of node @p i as its layer type writes them back ("in_features=784
 *        out_features=10 bias=true": every option, defaults included, space-separated
 *        key=value pairs that strop_model_add() accepts), as strop_model_node_name().
 * @return The full length, or -1 for bad arguments or out of memory. @since 0.2
 */
STROP_API int64_t strop_model_node_options(const strop_model *model, int64_t i, char *buf,
                                           size_t cap);

/**
 * @brief The number of inputs of node @p i.
 * @return It, or -1 for a NULL model or @p i out of range. @since 0.2
 */
STROP_API int strop_model_node_num_inputs(const strop_model *model, int64_t i);

/**
 * @brief The name of input @p j of node @p i ("input" for the model's input), as
 *        strop_model_node_name().
 * @return The full length, or -1 for bad arguments. @since 0.2
 */
STROP_API int64_t strop_model_node_input(const strop_model *model, int64_t i, int j, char *buf,
                                         size_t cap);

/**
 * @brief Per-sample output shape of node @p i of a finalized model into @p dims (up to
 *        @p cap entries).
 * @return The rank, or -1 (NULL, not finalized, @p i out of range). @since 0.2
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
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL); STROP_E_STATE (not finalized); STROP_E_NOMEM
 *         (the model is then unchanged). Not thread-safe on the same model. @since 0.2
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
 * @param[in] model  The model.
 * @param[in] param  "<node>.<suffix>" of one of its nodes ("lm_head.weight"). Copied.
 * @param[in] target The name of another parameter of the same shape. Copied.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL or empty names, a cycle); STROP_E_NOT_FOUND (no
 *         node or parameter by that name, naming it); STROP_E_SHAPE (the shapes differ, naming
 *         both); STROP_E_NOMEM. On error the model is unchanged. Tensor views of @p param
 *         become invalid. Not thread-safe on the same model. @since 0.2
 */
STROP_API STROP_NODISCARD strop_status strop_model_tie(strop_model *model, const char *param,
                                                       const char *target);

/* ---- metadata: what a user of the model needs to know ---- */

/** The longest metadata key, in bytes. @since 0.2 */
#define STROP_META_KEY_MAX 255
/** The longest metadata value, in bytes (16 MiB). @since 0.2 */
#define STROP_META_VALUE_MAX ((size_t)16 << 20)
/** The most entries a model's metadata holds. @since 0.2 */
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
 * @param[in] key   1 to #STROP_META_KEY_MAX bytes of printable ASCII without spaces. Copied.
 * @param[in] value Valid UTF-8 of at most #STROP_META_VALUE_MAX bytes (JSON text for the
 *                  documented keys), copied; NULL removes the entry (removing an absent key
 *                  is not an error).
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL model, a bad key, a value too long or not
 *         UTF-8, a new key beyond #STROP_META_MAX_ENTRIES: the sentence names the key);
 *         STROP_E_NOMEM. On error the metadata is unchanged. Not thread-safe on the same
 *         model. @since 0.2
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
 *         strop_last_error() saying which. Thread-safe on a model no one modifies. @since 0.2
 */
STROP_API int64_t strop_model_get_meta(const strop_model *model, const char *key, char *buf,
                                       size_t cap);

/**
 * @brief The number of metadata entries.
 * @param[in] model The model.
 * @return It (0 .. #STROP_META_MAX_ENTRIES), or -1 for NULL. Thread-safe on a model no one
 *         modifies. @since 0.2
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
 *         @since 0.2
 */
STROP_API int64_t strop_model_meta_key(const strop_model *model, int64_t i, char *buf,
                                       size_t cap);

/* ---- the layer types a model is built from ---- */

/**
 * @brief The number of registered layer types (composites such as transformer_block
 *        included). Constant for the library's lifetime. Thread-safe. @since 0.2
 */
STROP_API int strop_layer_type_count(void);

/**
 * @brief The name of layer type @p i (0 .. strop_layer_type_count() - 1), or NULL out of
 *        range. A static string. Thread-safe. @since 0.2
 */
STROP_API const char *strop_layer_type_name(int i);

/**
 * @brief A one-line description of layer @p type (what it computes and its PyTorch
 *        counterpart), or NULL for an unknown type. A static string. Thread-safe. @since 0.2
 */
STROP_API const char *strop_layer_type_doc(const char *type);

/**
 * @brief 1 when @p type is a composite: adding it adds its parts "<name>.<part>" (which
 *        strop_layer_type_doc() lists); 0 for a plain layer; -1 for an unknown type.
 * @since 0.2
 */
STROP_API int strop_layer_type_is_composite(const char *type);

/**
 * @brief The number of options layer @p type takes, or -1 for an unknown type. @since 0.2
 */
STROP_API int strop_layer_option_count(const char *type);

/**
 * @brief Option @p j of layer @p type: its name, or NULL (unknown type, @p j out of range).
 *        A static string. @since 0.2
 */
STROP_API const char *strop_layer_option_name(const char *type, int j);

/**
 * @brief Option @p j's default as strop_model_node_options() writes it ("true", "[1, 1]",
 *        "auto"), or NULL when the option is required or does not exist. A static string.
 * @since 0.2
 */
STROP_API const char *strop_layer_option_default(const char *type, int j);

/**
 * @brief Option @p j's one-line description, or NULL. A static string. @since 0.2
 */
STROP_API const char *strop_layer_option_doc(const char *type, int j);

/**
 * @brief Option @p j's kind ("int", "float", "bool", "enum", "int[2]", "float[4]",
 *        "int list") into @p buf, snprintf-style.
 * @return The full length, or -1 (unknown type or option, NULL @p buf with @p cap > 0).
 * @since 0.2
 */
STROP_API int64_t strop_layer_option_kind(const char *type, int j, char *buf, size_t cap);

/**
 * @brief The values option @p j allows ("[1, 2147483647] or auto", "[0, 1)", "gelu, relu"),
 *        snprintf-style.
 * @return The full length, or -1 for bad arguments. @since 0.2
 */
STROP_API int64_t strop_layer_option_allowed(const char *type, int j, char *buf, size_t cap);

/**
 * @brief The number of parameter and buffer names layer @p type may declare (those its
 *        options switch off included), or -1 for an unknown type. @since 0.2
 */
STROP_API int strop_layer_param_count(const char *type);

/**
 * @brief Parameter @p j of layer @p type: the suffix after the node's name ("weight",
 *        "q_proj.lora_A.weight"), or NULL. A static string. @since 0.2
 */
STROP_API const char *strop_layer_param_name(const char *type, int j);

/**
 * @brief Parameter @p j's description (its shape in terms of the options, and when it
 *        exists), or NULL. A static string. @since 0.2
 */
STROP_API const char *strop_layer_param_doc(const char *type, int j);

/** @brief Number of parameter and buffer tensors (the state_dict's length); -1 for NULL.
 *  @since 0.1 */
STROP_API int64_t strop_model_num_tensors(const strop_model *model);

/**
 * @brief Name of state tensor @p i (state_dict order) into @p buf, snprintf-style.
 * @return The full length, or -1 for bad arguments. @since 0.1
 */
STROP_API int64_t strop_model_tensor_name(const strop_model *model, int64_t i, char *buf,
                                          size_t cap);

/**
 * @brief Number of scalar parameters (buffers excluded); trainable ones only if
 *        @p trainable_only. -1 for NULL. @since 0.1
 */
STROP_API int64_t strop_model_param_count(const strop_model *model, int trainable_only);

/**
 * @brief A view of the named parameter or float buffer.
 *
 * The view borrows the model's memory: valid while the model lives and is not restructured
 * (surgery, weight loading that changes shapes); writes through it change the model.
 * @param[out] out A tensor handle owned by the caller (free it with strop_tensor_free();
 *                 that does not free the model's memory).
 * @return STROP_OK; STROP_E_NOT_FOUND (naming the tensor); STROP_E_UNSUPPORTED (an int64
 *         buffer); STROP_E_STATE (not finalized); STROP_E_NOMEM. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_tensor_view(strop_model *model,
                                                               const char *name,
                                                               strop_tensor **out);

/**
 * @brief Copies @p count floats into the named parameter or buffer.
 * @return STROP_OK; STROP_E_NOT_FOUND; STROP_E_SHAPE (count differs, naming both sizes);
 *         STROP_E_INVALID_ARG. @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_tensor(strop_model *model,
                                                              const char *name,
                                                              const float *data, size_t count);

STROP_END_DECLS

#endif
