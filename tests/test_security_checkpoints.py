"""A checkpoint is untrusted input (docs/security.md): wrong-typed entries, a head of no
class, a few-KB file holding a stretched terabyte tensor, negative BatchNorm variances and
non-finite weights are refused by `rep-accel fuse` and `compile` with one line, exit 2,
nothing written; and whatever a state_dict is edited into, loading it either works or
raises RepAccelError (a hypothesis property)."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rep_accel.checkpoints import load_checkpoint
from rep_accel.datasets import default_model_path
from rep_accel.errors import RepAccelError

from hostile import assert_user_error, snapshot


@pytest.fixture(scope="module")
def own():
    return torch.load(default_model_path(), weights_only=True)


def _save(tmp_path, obj, name="m.pt"):
    torch.save(obj, tmp_path / name)
    return tmp_path / name


def _sd_with(own, edit):
    sd = dict(own["state_dict"])
    edit(sd)
    return sd


def _first(sd, suffix):
    return next(k for k in sd if k.endswith(suffix))


CASES = {
    "extra-list": (lambda own: {**own, "extra": [1, 2]}, "'extra' must be a dict"),
    "config-str": (lambda own: {**own, "config": "A0"}, "'config' must be a dict"),
    "zero-classes": (lambda own: _sd_with(own, lambda sd: [sd.__setitem__(k, sd[k][:0]) for k in ("head.weight",
                                                                                                 "head.bias")]),
                     "0 classes"),
    "stretched": (lambda own: _sd_with(own, lambda sd: sd.__setitem__(
        _first(sd, "conv.weight"), torch.zeros(1).as_strided((65535, 65535, 3, 3), (0, 0, 0, 0)))), "GiB"),
    "negative-var": (lambda own: _sd_with(own, lambda sd: sd.__setitem__(
        _first(sd, "running_var"), -1e-5 * torch.ones_like(sd[_first(sd, "running_var")]))), "negative variances"),
    "nan-weight": (lambda own: _sd_with(own, lambda sd: sd.__setitem__(
        _first(sd, "conv.weight"), torch.full_like(sd[_first(sd, "conv.weight")], float("nan")))), "NaN"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["fuse", "compile"])
def test_hostile_checkpoint_is_refused(own, tmp_path, capsys, case, command):
    make, says = CASES[case]
    ckpt = _save(tmp_path, make(own))
    before = snapshot(tmp_path)
    out = tmp_path / ("d.pt" if command == "fuse" else "build")
    extra = [] if command == "fuse" else ["--calib", str(tmp_path / "c.npy")]
    if command == "compile":
        np.save(tmp_path / "c.npy", np.zeros((2, 1, 28, 28), np.float32))
        before = snapshot(tmp_path)
    assert_user_error(capsys, command, ckpt, "-o", out, *extra, says=says)
    assert snapshot(tmp_path) == before


_TENSORS = st.builds(
    # Built in float64 and cast, so every dtype takes every fill (inf in fp16, nan in int64...).
    lambda shape, fill, dtype: torch.full(shape, fill, dtype=torch.float64).to(dtype),
    st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
    st.sampled_from([0.0, 1.0, -1.0, 1e30, float("inf"), float("nan")]),
    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edited_state_dict_loads_or_is_refused_cleanly(own, data):
    """Property: replace, drop or add a few entries of the bundled model's state_dict;
    loading it either succeeds or raises RepAccelError, never anything else."""
    sd = dict(own["state_dict"])
    keys = sorted(sd)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["replace", "drop", "add", "rename"]))
        key = data.draw(st.sampled_from(keys))
        if action == "replace":
            sd[key] = data.draw(_TENSORS)
        elif action == "drop":
            sd.pop(key, None)
        elif action == "add":
            sd[key.rsplit(".", 1)[0] + "." + data.draw(st.sampled_from(["weight", "bias", "alpha", "x"]))] = \
                data.draw(_TENSORS)
        elif key in sd:
            sd[data.draw(st.sampled_from(["stem.", "stage9.", "backbone.", ""])) + key] = sd.pop(key)
    wrapped = data.draw(st.sampled_from(["bare", "own", "state_dict"]))
    obj = sd if wrapped == "bare" else {**own, "state_dict": sd} if wrapped == "own" else {"state_dict": sd, "epoch": 3}
    try:
        from rep_accel.checkpoints import checkpoint_from_object
        checkpoint_from_object(obj, "edited.pt")
    except RepAccelError:
        pass


def test_the_bundled_checkpoint_still_loads():
    assert load_checkpoint(default_model_path()).config.num_classes == 10
