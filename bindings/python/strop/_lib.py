# SPDX-License-Identifier: MIT
"""Loading libstrop and declaring every exported function for ctypes.

The library is found, in this order (the first that loads is used):
  1. ``$STROP_LIBRARY``, a path to libstrop.so*: an override; when it is set nothing else is
     tried.
  2. The build tree, only when the package is imported from the source tree's
     bindings/python: walking up from it, the first ``build*/libstrop.so*`` (``build/``
     first, then the other ``build*`` folders in name order). An installed package skips this.
  3. The folder recorded when the package was installed: ``pip install`` asks
     ``pkg-config --variable=libdir strop`` (so it honours ``PKG_CONFIG_PATH`` at install
     time) and writes the answer into ``strop/_installed.py``.
  4. The dynamic loader: ``libstrop.so.0`` by name (``LD_LIBRARY_PATH``, the ``ldconfig``
     cache, the system folders), then ``ctypes.util.find_library("strop")``.
  5. ``pkg-config --variable=libdir strop`` now (``PKG_CONFIG_PATH`` at run time).
  6. CMake's default prefix, ``/usr/local/lib`` (and its multiarch and lib64 folders): a
     ``sudo cmake --install build`` not yet followed by ``ldconfig``.
``library_path`` and ``library_source`` say which was used. Its run-time version
(strop_version_number()) must have the package's major version.

Every function listed in lib/strop.map is declared in ``_DECLS`` below with its restype and
argtypes; the test suite checks the table against the map. Conventions: handles are
``c_void_p``, ``strop_x **out`` is ``POINTER(c_void_p)``, data buffers and scalar
out-parameters are ``c_void_p`` (pass ``array.ctypes.data`` or ``ctypes.byref(x)``), strings are
``c_char_p`` (bytes) and option structs are the ``ctypes.Structure`` mirrors below.
"""
import ctypes
import ctypes.util
import glob
import os
import shutil
import subprocess
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int,
                    c_int64, c_size_t, c_uint32, c_uint64, c_void_p)

__all__ = ["lib", "load", "library_path", "library_source", "PACKAGE_VERSION",
           "LibraryNotFound", "VersionMismatch", "DECLARED"]

#: The version of these bindings; the library's major version must equal its major.
PACKAGE_VERSION = (0, 2, 0)

_OUT = POINTER(c_void_p)   # strop_x **out
_P = c_void_p              # float *, int64_t *, double *, size_t *, int * buffers/out-params
_STRV = POINTER(c_char_p)  # const char *const *

# ---- callback types (typedefs of the public headers) ------------------------------------
LOG_FN = CFUNCTYPE(None, c_int, c_char_p, c_void_p)                      # strop_log_fn
RELEASE_FN = CFUNCTYPE(None, c_void_p)                                   # strop_release_fn
FILL_FN = CFUNCTYPE(c_int, c_int64, c_void_p, c_void_p, c_void_p, c_size_t,
                    c_void_p)                                            # strop_dataset_fill_fn
TRIAL_FN = CFUNCTYPE(c_int, c_void_p, c_int64, POINTER(c_double), c_void_p)  # strop_trial_fn


# ---- size-versioned option structs (fields only appended; fill with the _init function) --
class strop_csv_options(Structure):
    _fields_ = [("size", c_size_t), ("delimiter", c_int), ("header", c_int),
                ("skip_lines", c_int64), ("sklearn_header", c_int), ("label_column", c_int64),
                ("label_name", c_char_p), ("label_mode", c_int), ("num_classes", c_int64)]


class strop_image_options(Structure):
    _fields_ = [("size", c_size_t), ("channels", c_int), ("skip_bad", c_int),
                ("max_pixels", c_int64), ("cache_bytes", c_size_t)]


class strop_text_options(Structure):
    _fields_ = [("size", c_size_t), ("format", c_int), ("task", c_int),
                ("text_field", c_char_p), ("pair_field", c_char_p), ("label_field", c_char_p),
                ("response_field", c_char_p), ("prompt_template", c_char_p),
                ("max_length", c_int64), ("truncate", c_int), ("padding", c_int),
                ("pack", c_int), ("stride", c_int64), ("num_classes", c_int64),
                ("chat", c_int), ("chat_template", c_char_p), ("cache_dir", c_char_p)]


class strop_pretrained_options(Structure):
    # every field of the C struct: its init function writes them all
    _fields_ = [("size", c_size_t), ("flags", c_int), ("image_size", c_int64),
                ("max_length", c_int64), ("seed", c_uint64), ("frozen_dtype", c_int),
                ("int8_group", c_int64)]


class strop_progress(Structure):
    _fields_ = [("size", c_size_t), ("phase", c_int), ("epoch", c_int64), ("epochs", c_int64),
                ("step", c_int64), ("steps", c_int64), ("global_step", c_int64),
                ("loss", c_double), ("metric", c_double), ("lr", c_double),
                ("samples_per_sec", c_double), ("val_loss", c_double),
                ("val_metric", c_double), ("best_epoch", c_int64), ("elapsed", c_double)]


PROGRESS_FN = CFUNCTYPE(c_int, POINTER(strop_progress), c_void_p)         # strop_progress_fn


class strop_fit_options(Structure):
    _fields_ = [("size", c_size_t), ("epochs", c_int64), ("monitor", c_int),
                ("patience", c_int64), ("min_delta", c_double), ("restore_best", c_int),
                ("checkpoint_every", c_int64), ("checkpoint_path", c_char_p),
                ("best_path", c_char_p), ("progress", PROGRESS_FN), ("user_data", c_void_p),
                ("max_steps", c_int64)]


class strop_run_event(Structure):
    _fields_ = [("size", c_size_t), ("kind", c_int), ("stage", c_int64), ("stages", c_int64),
                ("name", c_char_p), ("progress", POINTER(strop_progress)),
                ("test_loss", c_double), ("test_accuracy", c_double),
                ("trainable", c_int64), ("total", c_int64)]


RUN_FN = CFUNCTYPE(c_int, POINTER(strop_run_event), c_void_p)             # strop_run_fn


class strop_tune_event(Structure):
    _fields_ = [("size", c_size_t), ("kind", c_int), ("trial_id", c_int64),
                ("epoch", c_int64), ("value", c_double), ("status", c_int),
                ("tuner", c_void_p), ("path", c_char_p), ("key", c_char_p), ("count", c_int64)]


TUNE_FN = CFUNCTYPE(c_int, POINTER(strop_tune_event), c_void_p)           # strop_tune_fn


class strop_tune_options(Structure):
    _fields_ = [("size", c_size_t), ("trials", c_int64), ("epochs_cap", c_int64),
                ("resume", c_int), ("on_event", TUNE_FN), ("user_data", c_void_p),
                ("time_budget", c_double), ("dist", c_void_p)]


class strop_tokenizer_options(Structure):
    _fields_ = [("size", c_size_t), ("lowercase", c_int), ("add_prefix_space", c_int),
                ("add_bos", c_int), ("add_eos", c_int)]


class strop_encode_options(Structure):
    _fields_ = [("size", c_size_t), ("add_special_tokens", c_int), ("max_length", c_int64),
                ("truncation", c_int), ("truncation_side", c_int), ("padding", c_int),
                ("padding_side", c_int), ("pad_to_multiple_of", c_int64), ("pad_id", c_int64),
                ("pad_type_id", c_int64)]


class strop_bpe_train_options(Structure):
    _fields_ = [("size", c_size_t), ("vocab_size", c_int64), ("min_frequency", c_int64),
                ("special_tokens", POINTER(c_char_p)), ("num_special_tokens", c_int64),
                ("add_prefix_space", c_int), ("max_token_length", c_int64)]


TOKEN_FN = CFUNCTYPE(c_int, c_int64, c_void_p)                           # strop_token_callback
ROW_TOKEN_FN = CFUNCTYPE(c_int, c_int64, c_int64, c_void_p)       # strop_row_token_callback


class strop_generate_options(Structure):
    _fields_ = [("size", c_size_t), ("max_new_tokens", c_int64), ("temperature", c_float),
                ("top_k", c_int64), ("top_p", c_float), ("repetition_penalty", c_float),
                ("seed", c_uint64), ("stop_ids", c_void_p), ("num_stop_ids", c_int64),
                ("stop_strings", POINTER(c_char_p)), ("num_stop_strings", c_int64),
                ("tokenizer", c_void_p), ("on_token", TOKEN_FN), ("user_data", c_void_p),
                ("on_row_token", ROW_TOKEN_FN), ("num_beams", c_int64),
                ("length_penalty", c_float), ("early_stopping", c_int)]


class strop_side_inputs(Structure):
    _fields_ = [("size", c_size_t), ("mask", c_void_p), ("token_types", c_void_p)]


class strop_run_options(Structure):
    _fields_ = [("size", c_size_t), ("mode", c_int), ("write_outputs", c_int),
                ("baselines", c_int), ("base_model", c_void_p), ("on_event", RUN_FN),
                ("user_data", c_void_p), ("epochs_cap", c_int64), ("resume", c_int),
                ("dist", c_void_p)]


# strop_dist_ops: a host's collectives (include/strop/dist.h)
DIST_INT_FN = CFUNCTYPE(c_int, c_void_p)
DIST_SUM_FLOAT_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), c_int64)
DIST_SUM_DOUBLE_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_double), c_int64)
DIST_BCAST_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, c_int)
DIST_ABORT_FN = CFUNCTYPE(None, c_void_p, c_int)
DIST_DESTROY_FN = CFUNCTYPE(None, c_void_p)
DIST_ISUM_FLOAT_FN = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), c_int64, POINTER(c_void_p))
DIST_TEST_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, POINTER(c_int))
DIST_WAIT_FN = CFUNCTYPE(c_int, c_void_p, c_void_p)


class strop_dist_ops(Structure):
    # the whole C layout (strop_dist_ops_init writes sizeof of it), appended members included
    _fields_ = [("size", c_size_t), ("rank", DIST_INT_FN), ("world_size", DIST_INT_FN),
                ("allreduce_sum_float", DIST_SUM_FLOAT_FN),
                ("allreduce_sum_double", DIST_SUM_DOUBLE_FN), ("broadcast", DIST_BCAST_FN),
                ("barrier", DIST_INT_FN), ("abort_all", DIST_ABORT_FN),
                ("destroy", DIST_DESTROY_FN), ("iallreduce_sum_float", DIST_ISUM_FLOAT_FN),
                ("test", DIST_TEST_FN), ("wait", DIST_WAIT_FN)]


# ---- every exported function: (name, restype, argtypes), in lib/strop.map order ------------
_DECLS = [
    # core: version, errors, logging, threads, rng
    ("strop_clear_error", None, []),
    ("strop_get_num_threads", c_int, []),
    ("strop_last_error", c_char_p, []),
    ("strop_rng_create", c_int, [c_uint64, _OUT]),
    ("strop_rng_free", None, [c_void_p]),
    ("strop_rng_next_u32", c_uint32, [c_void_p]),
    ("strop_rng_normal", c_int, [c_void_p, c_float, c_float, _P, c_size_t]),
    ("strop_rng_permutation", c_int, [c_void_p, c_int64, _P]),
    ("strop_rng_uniform", c_int, [c_void_p, c_float, c_float, _P, c_size_t]),
    ("strop_set_log_handler", None, [LOG_FN, c_int, c_void_p]),
    ("strop_set_num_threads", c_int, [c_int]),
    ("strop_status_str", c_char_p, [c_int]),
    ("strop_version", c_char_p, []),
    ("strop_version_number", c_int, []),
    # tensor
    ("strop_tensor_copy", c_int, [c_void_p, _OUT]),
    ("strop_tensor_copy_from", c_int, [c_void_p, _P, c_size_t]),
    ("strop_tensor_copy_to", c_int, [c_void_p, _P, c_size_t]),
    ("strop_tensor_create", c_int, [c_int, _P, _OUT]),
    ("strop_tensor_data", _P, [c_void_p]),
    ("strop_tensor_data_const", _P, [c_void_p]),
    ("strop_tensor_dim", c_int64, [c_void_p, c_int]),
    ("strop_tensor_fill", c_int, [c_void_p, c_float]),
    ("strop_tensor_free", None, [c_void_p]),
    ("strop_tensor_from_data", c_int, [_P, c_size_t, c_int, _P, _OUT]),
    ("strop_tensor_numel", c_int64, [c_void_p]),
    ("strop_tensor_rank", c_int, [c_void_p]),
    ("strop_tensor_reshape", c_int, [c_void_p, c_int, _P, _OUT]),
    ("strop_tensor_shape", c_int, [c_void_p, _P, c_int]),
    ("strop_tensor_wrap", c_int, [_P, c_size_t, c_int, _P, _OUT]),
    # model (graph, layers)
    ("strop_model_add", c_int, [c_void_p, c_char_p, c_char_p, c_char_p, c_char_p]),
    ("strop_model_create", c_int, [c_int, _P, _OUT]),
    ("strop_model_finalize", c_int, [c_void_p, c_uint64]),
    ("strop_model_forward", c_int, [c_void_p, c_void_p, _OUT]),
    ("strop_model_forward_masked", c_int, [c_void_p, c_void_p, c_void_p, _OUT]),
    ("strop_side_inputs_init", None, [c_void_p]),
    ("strop_model_forward_ext", c_int, [c_void_p, c_void_p, c_void_p, _OUT]),
    ("strop_model_free", None, [c_void_p]),
    ("strop_model_get_meta", c_int64, [c_void_p, c_char_p, c_char_p, c_size_t]),
    ("strop_model_input_shape", c_int, [c_void_p, _P, c_int]),
    ("strop_model_is_training", c_int, [c_void_p]),
    ("strop_model_meta_count", c_int64, [c_void_p]),
    ("strop_model_meta_key", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_model_node_info", c_int64, [c_void_p, c_int64, c_int, c_char_p, c_size_t]),
    ("strop_model_node_input", c_int64, [c_void_p, c_int64, c_int, c_char_p, c_size_t]),
    ("strop_model_node_name", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_model_node_num_inputs", c_int, [c_void_p, c_int64]),
    ("strop_model_node_options", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_model_node_output_shape", c_int, [c_void_p, c_int64, _P, c_int]),
    ("strop_model_node_type", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_model_num_nodes", c_int64, [c_void_p]),
    ("strop_model_num_tensors", c_int64, [c_void_p]),
    ("strop_model_output_shape", c_int, [c_void_p, _P, c_int]),
    ("strop_model_param_count", c_int64, [c_void_p, c_int]),
    ("strop_model_reinit", c_int, [c_void_p, c_uint64]),
    ("strop_model_tie", c_int, [c_void_p, c_char_p, c_char_p]),
    ("strop_model_set_meta", c_int, [c_void_p, c_char_p, c_char_p]),
    ("strop_model_set_tensor", c_int, [c_void_p, c_char_p, _P, c_size_t]),
    ("strop_model_set_training", c_int, [c_void_p, c_int]),
    ("strop_model_set_checkpointing", c_int, [c_void_p, c_char_p]),
    ("strop_model_get_checkpointing", c_int64, [c_void_p, c_char_p, c_size_t]),
    ("strop_model_checkpoint_blocks", c_int64, [c_void_p]),
    ("strop_model_tensor_name", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_model_tensor_view", c_int, [c_void_p, c_char_p, _OUT]),
    ("strop_layer_option_allowed", c_int64, [c_char_p, c_int, c_char_p, c_size_t]),
    ("strop_layer_option_count", c_int, [c_char_p]),
    ("strop_layer_option_default", c_char_p, [c_char_p, c_int]),
    ("strop_layer_option_doc", c_char_p, [c_char_p, c_int]),
    ("strop_layer_option_kind", c_int64, [c_char_p, c_int, c_char_p, c_size_t]),
    ("strop_layer_option_name", c_char_p, [c_char_p, c_int]),
    ("strop_layer_param_count", c_int, [c_char_p]),
    ("strop_layer_param_doc", c_char_p, [c_char_p, c_int]),
    ("strop_layer_param_name", c_char_p, [c_char_p, c_int]),
    ("strop_layer_type_count", c_int, []),
    ("strop_layer_type_doc", c_char_p, [c_char_p]),
    ("strop_layer_type_is_composite", c_int, [c_char_p]),
    ("strop_layer_type_name", c_char_p, [c_int]),
    # io (specs, safetensors, checkpoints)
    ("strop_load_report_count", c_int64, [c_void_p, c_int]),
    ("strop_load_report_detail", c_int64, [c_void_p, c_int, c_int64, c_char_p, c_size_t]),
    ("strop_load_report_free", None, [c_void_p]),
    ("strop_load_report_name", c_int64, [c_void_p, c_int, c_int64, c_char_p, c_size_t]),
    ("strop_model_load_spec", c_int, [c_char_p, _OUT]),
    ("strop_model_load_spec_string", c_int, [c_char_p, _OUT]),
    ("strop_model_load_weights", c_int, [c_void_p, c_char_p, c_int, _OUT]),
    ("strop_model_load_weights_mem", c_int, [c_void_p, c_void_p, c_size_t, c_int, _OUT]),
    ("strop_pretrained_options_init", None, [POINTER(strop_pretrained_options)]),
    ("strop_model_load_pretrained", c_int, [c_char_p, c_char_p,
                                            POINTER(strop_pretrained_options), _OUT, _OUT]),
    ("strop_model_save_pretrained", c_int, [c_void_p, c_char_p]),
    ("strop_model_add_classifier_head", c_int, [c_void_p, c_char_p, c_int64, c_float, c_uint64]),
    ("strop_pretrained_arch_count", c_int, []),
    ("strop_pretrained_arch_name", c_char_p, [c_int]),
    ("strop_pretrained_arch_doc", c_char_p, [c_char_p]),
    ("strop_model_load_weights_remap", c_int, [c_void_p, c_char_p, c_int, c_char_p, c_char_p, _OUT]),
    ("strop_model_save_spec", c_int, [c_void_p, c_char_p]),
    ("strop_model_save_weights", c_int, [c_void_p, c_char_p]),
    ("strop_model_spec_string", c_int64, [c_void_p, c_char_p, c_size_t]),
    ("strop_st_file_count", c_int64, [c_void_p]),
    ("strop_st_file_dtype", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_st_file_find", c_int64, [c_void_p, c_char_p]),
    ("strop_st_file_free", None, [c_void_p]),
    ("strop_st_file_meta_count", c_int64, [c_void_p]),
    ("strop_st_file_meta_key", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_st_file_meta_value", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_st_file_name", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_st_file_open", c_int, [c_char_p, _OUT]),
    ("strop_st_file_read_f32", c_int, [c_void_p, c_int64, _P, c_size_t]),
    ("strop_st_file_shape", c_int, [c_void_p, c_int64, _P, c_int]),
    # surgery
    ("strop_model_clone", c_int, [c_void_p, _OUT]),
    ("strop_model_freeze", c_int, [c_void_p, c_char_p]),
    ("strop_model_frozen_dtype", c_int, [c_void_p]),
    ("strop_model_set_frozen_dtype", c_int, [c_void_p, c_int]),
    ("strop_model_frozen_int8_group", c_int64, [c_void_p]),
    ("strop_model_set_frozen_int8_group", c_int, [c_void_p, c_int64]),
    ("strop_model_compute_dtype", c_int, [c_void_p]),
    ("strop_model_set_compute_dtype", c_int, [c_void_p, c_int]),
    ("strop_model_weight_cache", c_int, [c_void_p]),
    ("strop_model_set_weight_cache", c_int, [c_void_p, c_int]),
    ("strop_model_attention", c_int, [c_void_p]),
    ("strop_model_set_attention", c_int, [c_void_p, c_int]),
    ("strop_model_lora_load", c_int, [c_void_p, c_char_p]),
    ("strop_model_lora_merge", c_int, [c_void_p]),
    ("strop_model_lora_save", c_int, [c_void_p, c_char_p]),
    ("strop_model_lora_unmerge", c_int, [c_void_p]),
    ("strop_model_memory_estimate", c_int, [c_void_p, c_int64, c_int, _P, _P, _P, _P]),
    ("strop_model_step_memory", c_int, [c_void_p, c_int64, _P, c_int, c_int, _P, _P]),
    ("strop_model_check_memory", c_int, [c_void_p, c_int64, _P, c_int, c_int, c_size_t]),
    ("strop_model_param_trainable", c_int, [c_void_p, c_char_p]),
    ("strop_model_summary", c_int64, [c_void_p, c_char_p, c_size_t]),
    ("strop_model_unfreeze", c_int, [c_void_p, c_char_p]),
    ("strop_surgery_append", c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    ("strop_surgery_apply", c_int, [c_void_p]),
    ("strop_surgery_create", c_int, [c_void_p, _OUT]),
    ("strop_surgery_describe", c_int64, [c_void_p, c_char_p, c_size_t]),
    ("strop_surgery_free", None, [c_void_p]),
    ("strop_surgery_freeze", c_int, [c_void_p, c_char_p, c_int]),
    ("strop_surgery_insert_after", c_int, [c_void_p, c_char_p, c_char_p, c_char_p, c_char_p]),
    ("strop_surgery_insert_before", c_int, [c_void_p, c_char_p, c_char_p, c_char_p, c_char_p]),
    ("strop_surgery_lora", c_int, [c_void_p, c_char_p, c_int64, c_float, c_float]),
    ("strop_surgery_num_edits", c_int64, [c_void_p]),
    ("strop_surgery_param_group", c_int, [c_void_p, c_char_p, c_float, c_int]),
    ("strop_surgery_remove", c_int, [c_void_p, c_char_p]),
    ("strop_surgery_replace", c_int, [c_void_p, c_char_p, c_char_p, c_char_p, c_uint64]),
    ("strop_surgery_set_seed", c_int, [c_void_p, c_uint64]),
    ("strop_surgery_truncate", c_int, [c_void_p, c_char_p]),
    ("strop_surgery_unfreeze", c_int, [c_void_p, c_char_p, c_int]),
    ("strop_surgery_validate", c_int, [c_void_p]),
    # data
    ("strop_batch_iter_add_center_crop", c_int, [c_void_p, c_int64, c_int64]),
    ("strop_batch_iter_add_color_jitter", c_int, [c_void_p, c_float, c_float, c_float, c_float]),
    ("strop_batch_iter_add_hflip", c_int, [c_void_p, c_float]),
    ("strop_batch_iter_add_normalize", c_int, [c_void_p, c_int64, _P, _P]),
    ("strop_batch_iter_add_random_crop", c_int, [c_void_p, c_int64, c_int64, c_int64]),
    ("strop_batch_iter_add_random_resized_crop", c_int, [c_void_p, c_int64, c_int64, c_float, c_float, c_float, c_float, c_int]),
    ("strop_batch_iter_add_resize", c_int, [c_void_p, c_int64, c_int64, c_int]),
    ("strop_batch_iter_add_resize_shorter", c_int, [c_void_p, c_int64, c_int64, c_int]),
    ("strop_batch_iter_add_scale", c_int, [c_void_p, c_float]),
    ("strop_batch_iter_create", c_int, [c_void_p, c_int64, c_uint64, c_int, _OUT]),
    ("strop_batch_iter_free", None, [c_void_p]),
    ("strop_batch_iter_get_state", c_int, [c_void_p, _P, _P, _P]),
    ("strop_batch_iter_input_shape", c_int, [c_void_p, _P, c_int]),
    ("strop_batch_iter_next", c_int, [c_void_p, _OUT, _OUT, _P]),
    ("strop_batch_iter_mask", c_void_p, [c_void_p]),
    ("strop_batch_iter_token_types", c_void_p, [c_void_p]),
    ("strop_batch_iter_num_batches", c_int64, [c_void_p]),
    ("strop_batch_iter_set_state", c_int, [c_void_p, c_int64, c_int64, c_int64]),
    ("strop_batch_iter_set_workers", c_int, [c_void_p, c_int]),
    ("strop_csv_options_init", None, [POINTER(strop_csv_options)]),
    ("strop_dataset_channel_stats", c_int, [c_void_p, c_float, _P, _P, c_int64, _P]),
    ("strop_dataset_class_counts", c_int, [c_void_p, _P, c_int64]),
    ("strop_dataset_class_name", c_int, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_dataset_few_shot", c_int, [c_void_p, c_int64, c_uint64, _OUT]),
    ("strop_dataset_filter_classes", c_int, [c_void_p, _P, c_int64, _OUT]),
    ("strop_dataset_free", None, [c_void_p]),
    ("strop_dataset_set_mask", c_int, [c_void_p, _P, c_size_t]),
    ("strop_dataset_has_mask", c_int, [c_void_p]),
    ("strop_dataset_set_token_types", c_int, [c_void_p, _P, c_size_t]),
    ("strop_dataset_has_token_types", c_int, [c_void_p]),
    ("strop_dataset_from_callback", c_int, [c_int64, c_int, _P, c_int, _P, c_int64, FILL_FN, c_void_p, _OUT]),
    ("strop_dataset_from_memory", c_int, [_P, _P, c_int64, c_int, _P, c_int, _P, c_int64, _OUT]),
    ("strop_dataset_get", c_int, [c_void_p, c_int64, _P, c_size_t, _P, c_size_t]),
    ("strop_dataset_image_path", c_int, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_dataset_input_shape", c_int, [c_void_p, _P, c_int]),
    ("strop_dataset_load_csv", c_int, [c_char_p, POINTER(strop_csv_options), _OUT]),
    ("strop_dataset_load_idx", c_int, [c_char_p, c_char_p, c_int64, _OUT]),
    ("strop_dataset_load_images", c_int, [c_char_p, POINTER(strop_image_options), _OUT]),
    ("strop_dataset_load_text_file", c_int, [c_char_p, c_void_p, POINTER(strop_text_options),
                                             _OUT]),
    ("strop_text_options_init", None, [POINTER(strop_text_options)]),
    ("strop_dataset_load_npy", c_int, [c_char_p, c_char_p, c_int64, _OUT]),
    ("strop_dataset_load_text", c_int, [c_char_p, c_void_p, c_int64, c_int64, _OUT]),
    ("strop_dataset_load_text_classes", c_int, [_STRV, _P, c_int64, c_void_p, c_int64, c_int64, _OUT]),
    ("strop_dataset_num_classes", c_int64, [c_void_p]),
    ("strop_dataset_one_hot", c_int, [c_void_p, _OUT]),
    ("strop_dataset_reshape", c_int, [c_void_p, c_int, _P, _OUT]),
    ("strop_dataset_sample_shape", c_int, [c_void_p, c_int64, _P, c_int]),
    ("strop_dataset_size", c_int64, [c_void_p]),
    ("strop_dataset_skipped", c_int, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_dataset_skipped_count", c_int64, [c_void_p]),
    ("strop_dataset_split", c_int, [c_void_p, c_float, c_float, c_uint64, c_int, _OUT, _OUT, _OUT]),
    ("strop_dataset_subset", c_int, [c_void_p, _P, c_int64, _OUT]),
    ("strop_dataset_target_shape", c_int, [c_void_p, _P, c_int]),
    ("strop_dataset_varies", c_int, [c_void_p]),
    ("strop_image_load", c_int, [c_char_p, c_int, _OUT]),
    ("strop_image_options_init", None, [POINTER(strop_image_options)]),
    # data-parallel training (issue 22)
    ("strop_dist_abort", c_int, [c_void_p, c_int]),
    ("strop_dist_barrier", c_int, [c_void_p]),
    ("strop_dist_custom", c_int, [POINTER(strop_dist_ops), c_void_p, _OUT]),
    ("strop_dist_free", None, [c_void_p]),
    ("strop_dist_init_mpi", c_int, [c_void_p, _OUT]),
    ("strop_dist_ops_init", None, [POINTER(strop_dist_ops)]),
    ("strop_dist_rank", c_int, [c_void_p]),
    ("strop_dist_size", c_int, [c_void_p]),
    ("strop_trainer_set_dist", c_int, [c_void_p, c_void_p]),
    # text generation
    ("strop_generate_batch", c_int, [c_void_p, _P, _P, c_int64, POINTER(strop_generate_options),
                                     _P, c_int64, _P]),
    ("strop_generate", c_int, [c_void_p, _P, c_int64, POINTER(strop_generate_options), _P,
                               c_int64, _P]),
    ("strop_generate_options_init", None, [POINTER(strop_generate_options)]),
    ("strop_dataset_wrap", c_int, [_P, _P, c_int64, c_int, _P, c_int, _P, c_int64, RELEASE_FN, c_void_p, _OUT]),
    ("strop_vocab_build", c_int, [_STRV, c_int64, c_int, _OUT]),
    ("strop_vocab_decode", c_int64, [c_void_p, _P, c_int64, c_char_p, c_size_t]),
    ("strop_vocab_encode", c_int, [c_void_p, c_char_p, c_size_t, _P, c_int64, _P]),
    ("strop_vocab_free", None, [c_void_p]),
    ("strop_vocab_load", c_int, [c_char_p, _OUT]),
    ("strop_vocab_save", c_int, [c_void_p, c_char_p]),
    ("strop_vocab_size", c_int64, [c_void_p]),
    # optim
    ("strop_optimizer_create", c_int, [c_void_p, c_int, _OUT]),
    ("strop_optimizer_free", None, [c_void_p]),
    ("strop_optimizer_get_double", c_int, [c_void_p, c_int, _P]),
    ("strop_optimizer_get_float", c_int, [c_void_p, c_int, _P]),
    ("strop_optimizer_get_int", c_int, [c_void_p, c_int, _P]),
    ("strop_optimizer_get_kind", c_int, [c_void_p]),
    ("strop_optimizer_knob_default", c_int, [c_int, c_int, _P]),
    ("strop_optimizer_knob_doc", c_char_p, [c_int]),
    ("strop_optimizer_knob_find", c_int, [c_char_p, _P]),
    ("strop_optimizer_knob_name", c_char_p, [c_int]),
    ("strop_optimizer_knob_parse", c_int, [c_int, c_char_p, _P]),
    ("strop_optimizer_knob_range", c_int, [c_int, c_int, _P, _P, _P]),
    ("strop_optimizer_set_double", c_int, [c_void_p, c_int, c_double]),
    ("strop_optimizer_set_float", c_int, [c_void_p, c_int, c_float]),
    ("strop_optimizer_set_int", c_int, [c_void_p, c_int, c_int]),
    ("strop_optimizer_step", c_int, [c_void_p]),
    ("strop_optimizer_step_count", c_int64, [c_void_p]),
    ("strop_optimizer_sync", c_int, [c_void_p]),
    ("strop_optimizer_zero_grad", c_int, [c_void_p]),
    ("strop_scheduler_create", c_int, [c_void_p, c_int, _OUT]),
    ("strop_scheduler_free", None, [c_void_p]),
    ("strop_scheduler_get_double", c_int, [c_void_p, c_int, _P]),
    ("strop_scheduler_get_float", c_int, [c_void_p, c_int, _P]),
    ("strop_scheduler_get_int", c_int, [c_void_p, c_int, _P]),
    ("strop_scheduler_get_ints", c_int, [c_void_p, c_int, _P, c_int, _P]),
    ("strop_scheduler_get_lr", c_double, [c_void_p]),
    ("strop_scheduler_knob_default", c_int, [c_int, c_int, _P]),
    ("strop_scheduler_knob_doc", c_char_p, [c_int]),
    ("strop_scheduler_knob_find", c_int, [c_char_p, _P]),
    ("strop_scheduler_knob_name", c_char_p, [c_int]),
    ("strop_scheduler_knob_parse", c_int, [c_int, c_char_p, _P]),
    ("strop_scheduler_knob_range", c_int, [c_int, c_int, _P, _P, _P]),
    ("strop_scheduler_last_step", c_int64, [c_void_p]),
    ("strop_scheduler_set_double", c_int, [c_void_p, c_int, c_double]),
    ("strop_scheduler_set_float", c_int, [c_void_p, c_int, c_float]),
    ("strop_scheduler_set_int", c_int, [c_void_p, c_int, c_int]),
    ("strop_scheduler_set_ints", c_int, [c_void_p, c_int, _P, c_int]),
    ("strop_scheduler_step", c_int, [c_void_p]),
    ("strop_scheduler_step_metric", c_int, [c_void_p, c_double]),
    # train
    ("strop_fit_options_init", None, [POINTER(strop_fit_options)]),
    ("strop_metrics_class", c_double, [c_void_p, c_int64, c_int]),
    ("strop_metrics_confusion", c_int64, [c_void_p, _P, c_int64]),
    ("strop_metrics_free", None, [c_void_p]),
    ("strop_metrics_get", c_double, [c_void_p, c_int]),
    ("strop_metrics_num_classes", c_int64, [c_void_p]),
    ("strop_model_export", c_int, [c_void_p, c_char_p, c_char_p, c_int]),
    ("strop_model_predict", c_int, [c_void_p, c_void_p, c_int, _OUT]),
    ("strop_model_predict_text", c_int, [c_void_p, c_void_p, _STRV, _STRV, c_int64, c_int,
                                         _OUT]),
    ("strop_prediction_class", c_int64, [c_void_p, c_int64, c_int]),
    ("strop_prediction_free", None, [c_void_p]),
    ("strop_prediction_k", c_int, [c_void_p]),
    ("strop_prediction_label", c_int64, [c_void_p, c_int64, c_int]),
    ("strop_prediction_name", c_int64, [c_void_p, c_int64, c_int, c_char_p, c_size_t]),
    ("strop_prediction_prob", c_double, [c_void_p, c_int64, c_int]),
    ("strop_prediction_rows", c_int64, [c_void_p]),
    ("strop_model_get_grad", c_int, [c_void_p, c_char_p, _P, c_size_t]),
    ("strop_model_set_grad", c_int, [c_void_p, c_char_p, _P, c_size_t]),
    ("strop_trainer_apply", c_int, [c_void_p]),
    ("strop_trainer_backward", c_int, [c_void_p, c_void_p]),
    ("strop_trainer_best_epoch", c_int64, [c_void_p]),
    ("strop_trainer_create", c_int, [c_void_p, c_void_p, _OUT]),
    ("strop_trainer_discard_forward", None, [c_void_p]),
    ("strop_trainer_eval", c_int, [c_void_p, c_void_p, _OUT]),
    ("strop_trainer_eval_dataset", c_int, [c_void_p, c_void_p, c_int64, _OUT]),
    ("strop_trainer_fit", c_int, [c_void_p, c_void_p, c_void_p, POINTER(strop_fit_options)]),
    ("strop_trainer_forward", c_int, [c_void_p, c_void_p, _OUT]),
    ("strop_trainer_forward_masked", c_int, [c_void_p, c_void_p, c_void_p, _OUT]),
    ("strop_trainer_forward_ext", c_int, [c_void_p, c_void_p, c_void_p, _OUT]),
    ("strop_trainer_free", None, [c_void_p]),
    ("strop_trainer_get_double", c_int, [c_void_p, c_int, _P]),
    ("strop_trainer_get_float", c_int, [c_void_p, c_int, _P]),
    ("strop_trainer_get_int", c_int, [c_void_p, c_int, _P]),
    ("strop_trainer_global_step", c_int64, [c_void_p]),
    ("strop_trainer_history", c_double, [c_void_p, c_int64, c_int]),
    ("strop_trainer_history_len", c_int64, [c_void_p]),
    ("strop_trainer_knob_default", c_int, [c_int, _P]),
    ("strop_trainer_knob_doc", c_char_p, [c_int]),
    ("strop_trainer_knob_find", c_int, [c_char_p, _P]),
    ("strop_trainer_knob_name", c_char_p, [c_int]),
    ("strop_trainer_knob_parse", c_int, [c_int, c_char_p, _P]),
    ("strop_trainer_knob_range", c_int, [c_int, _P, _P, _P]),
    ("strop_trainer_load_checkpoint", c_int, [c_void_p, c_char_p]),
    ("strop_trainer_save_checkpoint", c_int, [c_void_p, c_char_p]),
    ("strop_trainer_set_class_weights", c_int, [c_void_p, _P, c_int64]),
    ("strop_trainer_set_double", c_int, [c_void_p, c_int, c_double]),
    ("strop_trainer_set_float", c_int, [c_void_p, c_int, c_double]),
    ("strop_trainer_set_int", c_int, [c_void_p, c_int, c_int64]),
    ("strop_trainer_set_scheduler", c_int, [c_void_p, c_void_p]),
    ("strop_trainer_skipped_steps", c_int64, [c_void_p]),
    ("strop_trainer_step", c_int, [c_void_p, c_void_p, c_void_p, _P]),
    ("strop_trainer_step_masked", c_int, [c_void_p, c_void_p, c_void_p, c_void_p, _P]),
    ("strop_trainer_step_ext", c_int, [c_void_p, c_void_p, c_void_p, c_void_p, _P]),
    ("strop_trainer_step_memory", c_int, [c_void_p, c_int64, _P, c_int, _P, _P]),
    ("strop_trainer_check_memory", c_int, [c_void_p, c_int64, _P, c_int, c_size_t]),
    # recipe
    ("strop_recipe_clone", c_int, [c_void_p, _OUT]),
    ("strop_recipe_evaluate", c_int, [c_void_p, c_void_p, c_int, _OUT]),
    ("strop_recipe_free", None, [c_void_p]),
    ("strop_recipe_get", c_int64, [c_void_p, c_char_p, c_char_p, c_size_t]),
    ("strop_recipe_load", c_int, [c_char_p, _OUT]),
    ("strop_recipe_load_string", c_int, [c_char_p, c_char_p, _OUT]),
    ("strop_recipe_run", c_int, [c_void_p, POINTER(strop_run_options), _OUT]),
    ("strop_recipe_save", c_int, [c_void_p, c_char_p]),
    ("strop_recipe_set", c_int, [c_void_p, c_char_p, c_char_p]),
    ("strop_recipe_to_string", c_int64, [c_void_p, c_char_p, c_size_t]),
    ("strop_run_free", None, [c_void_p]),
    ("strop_run_history", c_double, [c_void_p, c_int64, c_int]),
    ("strop_run_info", c_int64, [c_void_p, c_int]),
    ("strop_run_model", c_void_p, [c_void_p]),
    ("strop_run_options_init", None, [POINTER(strop_run_options)]),
    ("strop_run_seconds", c_double, [c_void_p]),
    ("strop_run_stage_is_baseline", c_int, [c_void_p, c_int64]),
    ("strop_run_stage_metric", c_double, [c_void_p, c_int64, c_int]),
    ("strop_tune_options_init", None, [POINTER(strop_tune_options)]),
    ("strop_recipe_tune", c_int, [c_void_p, POINTER(strop_tune_options), _OUT]),
    ("strop_run_stage_name", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    # tune
    ("strop_tuner_add_categorical", c_int, [c_void_p, c_char_p, _STRV, c_int64]),
    ("strop_tuner_add_float", c_int, [c_void_p, c_char_p, c_double, c_double, c_int]),
    ("strop_tuner_add_int", c_int, [c_void_p, c_char_p, c_int64, c_int64, c_int]),
    ("strop_tuner_ask", c_int, [c_void_p, _P]),
    ("strop_tuner_best", c_int, [c_void_p, _P, _P]),
    ("strop_tuner_create", c_int, [c_int, c_uint64, c_int, _OUT]),
    ("strop_tuner_free", None, [c_void_p]),
    ("strop_tuner_get_double", c_int, [c_void_p, c_int, _P]),
    ("strop_tuner_get_float", c_int, [c_void_p, c_int, _P]),
    ("strop_tuner_get_int", c_int, [c_void_p, c_int, _P]),
    ("strop_tuner_grid_size", c_int64, [c_void_p]),
    ("strop_tuner_is_exhausted", c_int, [c_void_p]),
    ("strop_tuner_knob_default", c_int, [c_int, _P]),
    ("strop_tuner_knob_doc", c_char_p, [c_int]),
    ("strop_tuner_knob_find", c_int, [c_char_p, _P]),
    ("strop_tuner_knob_name", c_char_p, [c_int]),
    ("strop_tuner_knob_parse", c_int, [c_int, c_char_p, _P]),
    ("strop_tuner_knob_range", c_int, [c_int, _P, _P, _P]),
    ("strop_tuner_num_params", c_int64, [c_void_p]),
    ("strop_tuner_num_trials", c_int64, [c_void_p]),
    ("strop_tuner_param_kind", c_int, [c_void_p, c_int64]),
    ("strop_tuner_param_name", c_char_p, [c_void_p, c_int64]),
    ("strop_tuner_report", c_int, [c_void_p, c_int64, c_int64, c_double, _P]),
    ("strop_tuner_resume", c_int, [c_void_p, c_char_p]),
    ("strop_tuner_run", c_int, [c_void_p, c_int64, TRIAL_FN, c_void_p]),
    ("strop_tuner_set_double", c_int, [c_void_p, c_int, c_double]),
    ("strop_tuner_set_float", c_int, [c_void_p, c_int, c_double]),
    ("strop_tuner_set_int", c_int, [c_void_p, c_int, c_int64]),
    ("strop_tuner_set_log", c_int, [c_void_p, c_char_p]),
    ("strop_tuner_tell", c_int, [c_void_p, c_int64, c_double, c_int]),
    ("strop_tuner_trial_categorical", c_int, [c_void_p, c_int64, c_char_p, _P, c_char_p, c_size_t, _P]),
    ("strop_tuner_trial_float", c_int, [c_void_p, c_int64, c_char_p, _P]),
    ("strop_tuner_trial_id", c_int64, [c_void_p, c_int64]),
    ("strop_tuner_trial_int", c_int, [c_void_p, c_int64, c_char_p, _P]),
    ("strop_tuner_trial_report_at", c_int, [c_void_p, c_int64, c_int64, _P, _P]),
    ("strop_tuner_trial_result", c_int, [c_void_p, c_int64, _P, _P, _P, _P]),
    ("strop_tuner_trial_value", c_int, [c_void_p, c_int64, c_int64, _P]),
    # STROP_0.2
    ("strop_tensor_load_npy", c_int, [c_char_p, _OUT]),
    # the machine's memory limits
    ("strop_memory_available", c_int, [POINTER(c_size_t), c_char_p, c_size_t]),
    # text: tokenizers
    ("strop_bpe_train_options_init", None, [POINTER(strop_bpe_train_options)]),
    ("strop_encode_options_init", None, [POINTER(strop_encode_options)]),
    ("strop_tokenizer_add_token", c_int, [c_void_p, c_char_p, c_int, _P]),
    ("strop_tokenizer_apply_chat_template", c_int, [c_void_p, c_char_p, _STRV, _STRV, c_int64,
                                                    c_int, c_char_p, c_size_t,
                                                    POINTER(c_size_t)]),
    ("strop_tokenizer_decode", c_int64, [c_void_p, _P, c_int64, c_int, c_char_p, c_size_t]),
    ("strop_tokenizer_encode", c_int, [c_void_p, c_char_p, c_size_t,
                                       POINTER(strop_encode_options), _P, c_int64, _P]),
    ("strop_tokenizer_encode_batch", c_int, [c_void_p, _STRV, _STRV, c_int64,
                                             POINTER(strop_encode_options), _P, _P, _P, _P,
                                             c_int64, _P]),
    ("strop_tokenizer_free", None, [c_void_p]),
    ("strop_tokenizer_id_to_token", c_int64, [c_void_p, c_int64, c_char_p, c_size_t]),
    ("strop_tokenizer_load", c_int, [c_char_p, POINTER(strop_tokenizer_options), _OUT]),
    ("strop_tokenizer_options_init", None, [POINTER(strop_tokenizer_options)]),
    ("strop_tokenizer_save", c_int, [c_void_p, c_char_p]),
    ("strop_tokenizer_set_special_id", c_int, [c_void_p, c_int, c_int64]),
    ("strop_tokenizer_special_id", c_int64, [c_void_p, c_int]),
    ("strop_tokenizer_token_flags", c_int, [c_void_p, c_int64]),
    ("strop_tokenizer_token_to_id", c_int64, [c_void_p, c_char_p]),
    ("strop_tokenizer_train_bpe", c_int, [_STRV, c_int64, POINTER(strop_bpe_train_options),
                                          _OUT]),
    ("strop_tokenizer_vocab_size", c_int64, [c_void_p]),
]

#: Names of every declared function (the test compares them with lib/strop.map).
DECLARED = frozenset(d[0] for d in _DECLS)


class LibraryNotFound(OSError):
    """libstrop could not be found or loaded."""


class VersionMismatch(ImportError):
    """The loaded libstrop has another major version than these bindings."""


def _missing(name):
    def stub(*args):
        from .errors import Unsupported
        raise Unsupported(f"{name}: not exported by the loaded libstrop (older than the "
                          f"bindings {'.'.join(map(str, PACKAGE_VERSION))}?)")
    return stub


_SONAME = "libstrop.so.0"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _in_source_tree():
    """True when this package is the source tree's bindings/python/strop (not installed)."""
    parent = os.path.dirname(_PACKAGE_DIR)
    return os.path.isfile(os.path.join(parent, "_build", "strop_build.py"))


def _build_tree():
    d = _PACKAGE_DIR
    while True:
        builds = sorted(glob.glob(os.path.join(d, "build*")),
                        key=lambda p: (os.path.basename(p) != "build", p))
        for b in builds:
            for name in ("libstrop.so", _SONAME):
                p = os.path.join(b, name)
                if os.path.exists(p):
                    yield p
                    break
        parent = os.path.dirname(d)
        if parent == d:
            return
        d = parent


def _in_dir(libdir):
    if libdir:
        p = os.path.join(libdir, _SONAME)
        if os.path.exists(p):
            yield p


def pkg_config_libdir():
    """``pkg-config --variable=libdir strop``, or None (no pkg-config, or no strop.pc)."""
    exe = shutil.which("pkg-config")
    if not exe:
        return None
    try:
        r = subprocess.run([exe, "--variable=libdir", "strop"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() or None


def _recorded():
    try:
        from . import _installed  # written by the build backend when the package is installed
    except ImportError:
        return
    yield from _in_dir(getattr(_installed, "LIBDIR", None))


def _loader():
    yield _SONAME
    found = ctypes.util.find_library("strop")
    if found and found != _SONAME:
        yield found


def _default_prefix():
    for d in ("/usr/local/lib", "/usr/local/lib64") + tuple(
            sorted(glob.glob("/usr/local/lib/*-linux-gnu*"))):
        yield from _in_dir(d)


def _candidates():
    """(source, path) pairs in the documented order; see the module's docstring."""
    env = os.environ.get("STROP_LIBRARY")
    if env:
        yield "STROP_LIBRARY", env
        return  # an explicit choice is never overridden
    if _in_source_tree():
        for p in _build_tree():
            yield "build tree", p
    for p in _recorded():
        yield "recorded at install", p
    for p in _loader():
        yield "dynamic loader", p
    for p in _in_dir(pkg_config_libdir()):
        yield "pkg-config", p
    for p in _default_prefix():
        yield "/usr/local", p


def _checked(base, bits, signed):
    """base (a ctypes integer type) as an argument type that raises OverflowError for a
    Python int out of its range instead of passing its low bits (2**64 + 8 would reach the
    library as 8); ctypes reports it as ArgumentError naming the argument."""
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    kind = f"{'a signed' if signed else 'an unsigned'} {bits}-bit integer"

    class Checked(base):
        @classmethod
        def from_param(cls, v):
            if isinstance(v, int) and not lo <= v <= hi:
                raise OverflowError(f"{v} does not fit {kind}")
            return base.from_param(v)

    Checked.__name__ = f"checked_{base.__name__}"
    return Checked


_CHECKED = {t: _checked(t, ctypes.sizeof(t) * 8, t(-1).value < 0)
            for t in (c_int, c_int64, c_size_t, c_uint32, c_uint64)}


def _declare(cdll):
    from ._handle import guard
    for name, restype, argtypes in _DECLS:
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            setattr(cdll, name, _missing(name))
            continue
        fn.restype = restype
        fn.argtypes = [_CHECKED.get(a, a) for a in argtypes]
        setattr(cdll, name, guard(fn))
    return cdll


lib = None
library_path = None
library_source = None


def load(path=None):
    """Loads (once) and returns the declared library; raises LibraryNotFound or
    VersionMismatch."""
    global lib, library_path, library_source
    if lib is not None and path is None:
        return lib
    tried = []
    for how, cand in ([("argument", path)] if path else _candidates()):
        try:
            cdll = ctypes.CDLL(cand)
        except OSError as e:
            tried.append(f"{cand} ({how}): {e}")
            continue
        _declare(cdll)
        got = cdll.strop_version_number()
        if got // 10000 != PACKAGE_VERSION[0]:
            raise VersionMismatch(
                f"libstrop at {cand} is version {cdll.strop_version().decode()} but these "
                f"bindings are {'.'.join(map(str, PACKAGE_VERSION))}: the major versions "
                f"differ; install matching versions or point STROP_LIBRARY at another library")
        lib, library_path, library_source = cdll, cand, how
        return lib
    raise LibraryNotFound(
        "libstrop not found: install it (cmake --install build --prefix P) and reinstall this "
        "package with PKG_CONFIG_PATH=P/lib/pkgconfig so that it records where, or set "
        "STROP_LIBRARY to the path of libstrop.so.0"
        + ("; tried: " + "; ".join(tried) if tried else "")
        + "; see bindings/python/README.md")
