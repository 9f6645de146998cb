"""benchmarks/synth_sweep.py through Ray: two configurations as Ray tasks on a local
2-CPU cluster give the same table and rows as the serial path (only the tools' seconds
differ). The smallest arrays (1x1, 1x2, buffers for nano 3x16x16) on the generic flow
(Yosys alone) keep it to a minute or two; it is marked slow."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from rep_accel.testing import REPO_ROOT

ray = pytest.importorskip("ray")

ARGS = ["--configs", "1x1,1x2", "--target", "generic", "--model", "nano", "--input-size", "3,16,16", "--doc", ""]


@pytest.fixture(scope="module")
def sweep_module():
    spec = importlib.util.spec_from_file_location("synth_sweep", REPO_ROOT / "benchmarks" / "synth_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth_sweep"] = module  # its dataclass looks its module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("synth_sweep", None)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _without_seconds(row: dict) -> dict:
    row = dict(row, result=dict(row["result"]))
    row.pop("rtl_seconds")
    row["result"].pop("seconds")
    row["result"].pop("tools")  # tool versions: the same, but probed with timings inside
    # The git state of hdl/ and rep_accel/ when the configuration started: in a working tree
    # that others edit, it may change between the serial and the Ray run.
    row.pop("rtl_source")
    return row


def _table_without_seconds(text: str) -> list[str]:
    return ["|".join(line.split("|")[:-2]) for line in text.strip().splitlines() if line.startswith("|")]


@pytest.mark.slow
def test_sweep_on_ray_equals_serial(sweep_module, cluster, tmp_path, capsys):
    assert sweep_module.main([*ARGS, "--out", str(tmp_path / "serial"), "--serial"]) == 0
    serial_out = capsys.readouterr()
    assert sweep_module.main([*ARGS, "--out", str(tmp_path / "ray")]) == 0
    ray_out = capsys.readouterr()
    assert "on Ray (already running in this process), 2 CPU(s)" in ray_out.err
    assert "on serial" in serial_out.err
    serial_table, ray_table = _table_without_seconds(serial_out.out), _table_without_seconds(ray_out.out)
    assert len(serial_table) == 4 and serial_table == ray_table
    for cfg in ("1x1", "1x2"):
        a = json.loads((tmp_path / "serial" / f"row_{cfg}.json").read_text())
        b = json.loads((tmp_path / "ray" / f"row_{cfg}.json").read_text())
        assert a["status"] == b["status"] == "ok" and a["result"]["summary"]["gates"] > 0
        # The rows name their own folders; apart from those and the seconds they are equal.
        for r in (a, b):
            for k in ("rtl_command", "synth_command"):
                r[k] = r[k].replace(str(tmp_path / "serial"), "OUT").replace(str(tmp_path / "ray"), "OUT")
        assert _without_seconds(a) == _without_seconds(b)


def test_configuration_specs(sweep_module):
    """PIxPO[+N][@DEVICE]: the LUT multipliers go to `rep-accel rtl`, the device to `synth`."""
    c = sweep_module.Config.parse("2x2+8@25k")
    assert (c.pi, c.po, c.lut_multipliers, c.device, c.name) == (2, 2, 8, "25k", "2x2_lut8_25k")
    assert sweep_module.Config.parse("4x4").name == "4x4" and sweep_module.Config.parse("4x4").device is None
    with pytest.raises(ValueError, match="device '99k'"):
        sweep_module.Config.parse("1x1@99k")
    w = sweep_module.Config.parse("w3x4+36")
    assert (w.unit, w.pi, w.po, w.lut_multipliers, w.name, w.label) == \
        ("winograd", 3, 4, 36, "w3x4_lut36", "Winograd 3x4 +36 LUT mult.")
    from rep_accel.generics import HardwareGenerics
    g = HardwareGenerics(pi=2, po=2, lut_multipliers=8)
    assert sweep_module.rtl_command(Path("r"), g)[-4:] == ["--lut-multipliers", "8", "--dsp", "ecp5"]
    gw = HardwareGenerics(pi=2, po=2, unit="winograd")
    assert sweep_module.rtl_command(Path("r"), gw)[-4:] == ["--unit", "winograd", "--dsp", "ecp5"]
    cmd = sweep_module.synth_command(Path("r"), Path("s"), sweep_module.Sweep(Path(".")), "25k")
    assert cmd[cmd.index("--device") + 1] == "25k"
    rows = [{"pi": 1, "po": 1, "device": "25k", "frames_per_second": 3.0, "result": {"fits": True, "fmax_mhz": 150.0}},
            {"pi": 2, "po": 2, "device": "25k", "frames_per_second": 5.0, "result": {"fits": False, "fmax_mhz": 150.0}},
            {"pi": 2, "po": 2, "device": "85k", "frames_per_second": 4.0, "result": {"fits": True, "fmax_mhz": 140.0}}]
    assert sweep_module.best_per_device(rows).splitlines() == [
        "Best on the LFE5U-25F: 1x1, 3.00 frames/s at 150.0 MHz.", "Best on the LFE5U-85F: 2x2, 4.00 frames/s at 140.0 MHz."]
