"""Checkpoint format of rep-accel (loader follows)."""

from __future__ import annotations

import io

import torch

from .fsutil import atomic_write_bytes
from .models import RepVGG

#: The `format` tag of this package's checkpoints and its version.
FORMAT_TAG = "rep_accel"
FORMAT_VERSION = 1


def _to_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def model_checkpoint(model: RepVGG, extra: dict | None = None) -> dict:
    """This package's checkpoint of a rep_accel.models.RepVGG: a plain dict
    {format, version, kind ('train' or 'deploy'), variant, config, state_dict, extra}
    that torch.load(..., weights_only=True) reads."""
    return {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "kind": "deploy" if model.deploy else "train",
        "variant": model.name,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }


def save_model(model: RepVGG, path, extra: dict | None = None) -> None:
    """Write `model_checkpoint(model, extra)` to `path` atomically."""
    atomic_write_bytes(path, _to_bytes(model_checkpoint(model, extra)))
