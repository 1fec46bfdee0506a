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

/** @brief Switches train (1) or eval (0) mode. @return STROP_OK or STROP_E_INVALID_ARG.
 *  @since 0.1 */
STROP_API STROP_NODISCARD strop_status strop_model_set_training(strop_model *model, int training);

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
 * @return The length of the full string (excluding NUL), or -1 for bad arguments.
 * @since 0.1
 */
STROP_API int64_t strop_model_node_info(const strop_model *model, int64_t i, int what, char *buf,
                                        size_t cap);

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
