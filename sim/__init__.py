"""The Numba bit- and cycle-accurate simulator of the accelerator (installed as rep_accel.sim).

Modules:
  fast       fast mode: exact outputs (an independent Numba convolution), cycles from the
             schedule formula (`layout.layer_cycles`), or under an external-memory model
             (`rep_accel.memory`) from the engine's timing replay (`cycle.timing_cycles`)
  cycle      cycle mode: the layer engine stepped clock by clock on the real parameter and
             activation streams, with stall patterns and a per-cycle port trace
  network    whole networks (`NetworkSimulator`, `simulate`, `schedule_report`)
  report     per-layer and total figures: cycles, utilization, bottleneck, buffers, traffic
  synthetic  integer networks with random weights, for tests and benchmarks

docs/architecture.md, section "Simulator", describes the modes, the stall model, the
trace format and the report's definitions.
"""
