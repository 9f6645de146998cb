"""Verification of the generated Verilog against the simulator and the golden model (cocotb).

    cases.py       runtime cases: layers, inputs, stall patterns and resets, stored in a job
                   folder (job.json + arrays.npz) that one RTL build runs many of
    tb.py          the cocotb testbench: clock and reset, stream drivers, output monitor,
                   port recorder, scoreboard (simulator bit for bit, golden model, cycles, trace)
    cocotb_top.py  the cocotb test module the HDL simulator runs: loads a job, runs it, writes
                   results.json
    runner.py      builds the RTL for given generics with Verilator or Icarus (cached by the
                   Verilog's hash) and runs a job on it through cocotb_tools.runner

`rep-accel verify` and tests/test_cocotb_*.py use runner.py; nothing here imports cocotb
except tb.py and cocotb_top.py, which run inside the HDL simulator.
"""
