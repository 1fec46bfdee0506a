/* strop — models: a DAG of named layer nodes with PyTorch-named parameters. Build one from
 * C, run inference on a batch, read and write its parameters by name. */
#ifndef STROP_MODEL_H
#define STROP_MODEL_H

#include "common.h"
#include "error.h"
#include "tensor.h"

/**
 * @file model.h
 * @brief The model graph: build, run, inspect nodes and layer types, parameters, metadata.
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
 * @param[in]  rank        Number of per-sample dimensions, 1 .. #STROP_MAX_RANK.
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
 * @brief Switches train or eval mode (dropout, BatchNorm statistics).
 * @param[in,out] model    The model.
 * @param[in]     training Non-zero for train mode, 0 for eval mode.
 * @return STROP_OK; STROP_E_INVALID_ARG (NULL).
 * @since 0.1
 */
STROP_API STROP_NODISCARD strop_status strop_model_set_training(strop_model *model, int training);

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
STROP_API STROP_DEPRECATED int64_t
    strop_model_node_info(const strop_model *model, int64_t i, int what, char *buf, size_t cap);

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
 * (surgery, strop_model_reinit(), a tie, weight loading that changes shapes); writes through
 * it change the model.
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
                                                              const char *name,
                                                              const float *data, size_t count);

STROP_END_DECLS

#endif
