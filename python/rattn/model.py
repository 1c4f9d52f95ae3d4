"""A model trained by bin/train_tiny, loaded from its checkpoint, so that a port (NumPy, PyTorch) can be
compared logit by logit without a subprocess.

    m = rattn.load("runs/tiny.ckpt")
    logits = m.forward(b"ROMEO:")          # (T, V) float32: the logits `bin/infer --logits` writes
    m.decode(b"ROMEO:")                    # the same by constant-memory decode, token by token
    m.params["block0.attn.Wq"]             # every parameter by its checkpoint name, (rows, cols)

The checkpoint is read and checked by model/checkpoint.cpp (format: docs/usage.md); the forward is
model/model.h on the reference ops, in float32, as bin/infer runs it. The formulas and the parameter
conventions are those of `bin/infer --export` (config.json, docs/usage.md "Export a trained model").
"""
import os

import numpy as np

from . import _rattn


def _tokens(tokens, vocab):
    if isinstance(tokens, str):
        tokens = tokens.encode("utf-8")
    if isinstance(tokens, (bytes, bytearray)):
        return list(tokens)
    a = np.asarray(tokens)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"tokens must be bytes, a str or a 1-D array of integers in [0, {vocab}), "
                         f"got {a.dtype} of shape {a.shape}")
    return [int(t) for t in a]


class Model:
    """A loaded checkpoint: forward(tokens), decode(tokens), config, params, step, layers."""

    def __init__(self, checkpoint):
        path = os.fspath(checkpoint)
        self._m = _rattn.LoadedModel(path)
        self.path = path
        self.config = self._m.config()   # name -> value (str), the checkpoint's config block
        self.vocab = int(self.config.get("vocab", 256))

    def forward(self, tokens):
        """tokens (T) (bytes, str as UTF-8, or integers in [0, vocab)) -> logits (T, V) float32."""
        return self._m.forward(_tokens(tokens, self.vocab))

    def decode(self, tokens):
        """The logits of forward(tokens), by the constant-memory decode of ref/decode.h, one token at a time."""
        return self._m.decode(_tokens(tokens, self.vocab))

    @property
    def params(self):
        """Every parameter, {name: (rows, cols) float32 array} (copies), names as in model/params.h."""
        return self._m.params()

    @property
    def step(self):
        """Optimizer steps the checkpoint was trained for."""
        return self._m.step

    @property
    def layers(self):
        """The layer pattern, e.g. 'LLLG' (L local, G global)."""
        return self._m.layers

    def __repr__(self):
        return f"rattn.Model({self.path!r}: layers {self.layers}, step {self.step})"


def load(checkpoint):
    """Loads a bin/train_tiny checkpoint -> Model. A missing or bad file is a ValueError naming it."""
    return Model(checkpoint)
