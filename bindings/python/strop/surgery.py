# SPDX-License-Identifier: MIT
"""Surgery: a plan of edits on one model, validated as a whole and applied as one transaction."""
import ctypes

from . import _lib
from ._handle import Handle, handle_of
from ._util import checked_string, enc
from .errors import check

__all__ = ["Surgery", "KEEP_BN_MODE"]

KEEP_BN_MODE = 1  # STROP_FREEZE_KEEP_BN_MODE


def _opts(options):
    if isinstance(options, dict):
        from .model import _opt
        return " ".join(f"{k}={_opt(v)}" for k, v in options.items())
    return options


class Surgery(Handle):
    """A plan of edits (strop_surgery) on ``model``; it keeps the model alive. Edits chain::

        with model.surgery() as s:
            s.replace("head", "linear", {"out_features": 5}, seed=1).freeze("features.*")
            print(s.describe())
            s.apply()

    Nothing changes until ``apply()``: then every edit takes effect or none does. After a
    restructuring plan, Tensor views taken from the model before become stale.
    """

    def __init__(self, model, seed=None):
        out = ctypes.c_void_p()
        from .model import Model
        check(_lib.lib.strop_surgery_create(handle_of(model, Model, "Surgery: model"),
                                            ctypes.byref(out)))
        self._own(out.value, _lib.lib.strop_surgery_free, parents=(model._box,))
        self.model = model
        if seed is not None:
            self.set_seed(seed)

    def set_seed(self, seed):
        check(_lib.lib.strop_surgery_set_seed(self._h, int(seed)))
        return self

    def __len__(self):
        return _lib.lib.strop_surgery_num_edits(self._h)

    def freeze(self, glob, keep_bn_mode=False):
        check(_lib.lib.strop_surgery_freeze(self._h, enc(glob), KEEP_BN_MODE if keep_bn_mode else 0))
        return self

    def unfreeze(self, glob, keep_bn_mode=False):
        check(_lib.lib.strop_surgery_unfreeze(self._h, enc(glob),
                                              KEEP_BN_MODE if keep_bn_mode else 0))
        return self

    def replace(self, node, type, options=None, seed=0):
        check(_lib.lib.strop_surgery_replace(self._h, enc(node), enc(type), enc(_opts(options)),
                                             int(seed)))
        return self

    def insert_after(self, node, new_name, type, options=None):
        check(_lib.lib.strop_surgery_insert_after(self._h, enc(node), enc(new_name), enc(type),
                                                  enc(_opts(options))))
        return self

    def insert_before(self, node, new_name, type, options=None):
        check(_lib.lib.strop_surgery_insert_before(self._h, enc(node), enc(new_name), enc(type),
                                                   enc(_opts(options))))
        return self

    def remove(self, node):
        check(_lib.lib.strop_surgery_remove(self._h, enc(node)))
        return self

    def truncate(self, node):
        check(_lib.lib.strop_surgery_truncate(self._h, enc(node)))
        return self

    def append(self, new_name, type, options=None):
        check(_lib.lib.strop_surgery_append(self._h, enc(new_name), enc(type),
                                            enc(_opts(options))))
        return self

    def lora(self, glob, rank=8, alpha=16.0, dropout=0.0):
        check(_lib.lib.strop_surgery_lora(self._h, enc(glob), int(rank), float(alpha),
                                          float(dropout)))
        return self

    def param_group(self, glob, lr_mult=-1.0, no_decay=-1):
        """lr_mult < 0 and no_decay < 0 leave that setting unchanged."""
        nd = no_decay if isinstance(no_decay, int) and not isinstance(no_decay, bool) and \
            no_decay < 0 else int(bool(no_decay))
        check(_lib.lib.strop_surgery_param_group(self._h, enc(glob), float(lr_mult), nd))
        return self

    def validate(self):
        check(_lib.lib.strop_surgery_validate(self._h))

    def describe(self):
        """The dry run as text (the model is not changed)."""
        return checked_string(_lib.lib.strop_surgery_describe, self._h)

    def apply(self):
        self.model._check_raw_views("surgery")
        st = _lib.lib.strop_surgery_apply(self._h)
        check(st)
        self.model._restructured()
