# SPDX-License-Identifier: MIT
"""strop — fine-tune pre-trained neural networks: Python bindings over libstrop (ctypes).

    import numpy as np, strop
    model = strop.Model.load("base.yaml", "base.safetensors")
    with model.surgery() as s:
        s.replace("head", "linear", {"out_features": 5}).freeze("features.*").apply()
    opt = strop.Optimizer(model, "adam", lr=3e-3)
    trainer = strop.Trainer(model, opt)
    loss = trainer.step(x_batch, y_batch)          # numpy in, float out
    tok = strop.Tokenizer.from_file("gpt2/")       # tokenizer.json, .model, vocab files

See bindings/python/README.md. The library is found through $STROP_LIBRARY, the build tree (when
used from the source tree), the folder recorded at install, the dynamic loader or pkg-config
(strop._lib); importing the package fails with strop._lib.LibraryNotFound or VersionMismatch
when no usable libstrop is found. ``strop.safetensors`` works without it.
"""
from . import _lib

_lib.load()

from .data import CLASSES_INFER, BatchIterator, Dataset, Vocab, load_image  # noqa: E402
from .errors import (Cancelled, CallbackError, FormatError, InternalError,  # noqa: E402
                     InvalidArgument, NotFound, NumericError, OutOfMemory, ShapeError,
                     StateError, StropError, StropIOError, Unsupported)
from .model import LoadReport, Model, ModelMeta, Prediction, SafetensorsFile  # noqa: E402
from .optim import Optimizer, Scheduler  # noqa: E402
from .recipe import Recipe, Run, RunEvent  # noqa: E402
from .runtime import (Rng, clear_error, get_num_threads, last_error,  # noqa: E402
                      memory_available, set_log_handler, set_num_threads, status_str, version,
                      version_number)
from .surgery import Surgery  # noqa: E402
from .tensor import Tensor  # noqa: E402
from .text import Tokenizer  # noqa: E402
from .train import Metrics, Progress, Trainer  # noqa: E402
from .tune import Trial, TrialFailed, TrialPruned, Tuner  # noqa: E402

IOError = StropIOError  # noqa: A001 — strop.IOError, as the status is named; a subclass of OSError

__version__ = ".".join(map(str, _lib.PACKAGE_VERSION))
#: The libstrop file that was loaded (see strop._lib for the search order).
library_path = _lib.library_path

__all__ = ["Model", "Tensor", "Dataset", "BatchIterator", "Vocab", "Optimizer", "Scheduler",
           "Trainer", "Metrics", "Progress", "Surgery", "Recipe", "Run", "RunEvent", "Tuner",
           "Trial", "TrialPruned", "TrialFailed", "Tokenizer", "LoadReport", "SafetensorsFile", "ModelMeta",
           "Prediction", "Rng", "load_image",
           "StropError", "InvalidArgument", "OutOfMemory", "StropIOError", "IOError",
           "FormatError", "ShapeError", "NotFound", "StateError", "NumericError",
           "Unsupported", "InternalError", "CallbackError", "Cancelled", "CLASSES_INFER",
           "version", "version_number", "status_str", "last_error", "clear_error",
           "set_num_threads", "get_num_threads", "set_log_handler", "memory_available",
           "library_path", "__version__"]
