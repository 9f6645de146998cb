"""Amaranth RTL of the accelerator (installed as rep_accel.hdl)."""
