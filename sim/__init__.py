"""The Numba bit- and cycle-accurate simulator of the accelerator (installed as rep_accel.sim)."""
