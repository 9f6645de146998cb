"""Cycle mode of the simulator: the layer engine stepped clock by clock.

Every cycle evaluates the engine's ports and advances its state exactly as
docs/architecture.md describes: the controller's phases (descriptor, parameter load:
header, requantization and weight beats; scan steps; drain), the window generator of
every input lane (line buffer addressed `x * cg + g` holding rows y-1 and y-2, zero
padding generated from the position, a column delay of depth `max_cg` holding the two
previous columns of each channel group), the weight buffers of the PI x PO units, the
column accumulators, requantization (`rep_accel.numerics.requantize_value`) and the
output register. The array's and requantization's register stages are modelled as one
delay line of `generics.pipeline_latency` stages whose last stage is the output
register; the whole pipeline advances together (a global stall).

The engine reads the same streams the RTL reads: the parameter beats of
`layout.pack_group_params` (what `params.bin` holds) and the activation beats of
`layout.input_beats`, and it writes `act_out` beats of PO lanes.

Stimulus (the host side of the streams), cycle c counted from the descriptor transfer
(c = 0):

* `desc.valid` is high in cycle 0 only (one layer per run);
* `params.valid` / `act_in.valid` are high when the host still has beats to send and
  either the valid pattern `pattern[c % len(pattern)]` is 1 or the host already
  offered a beat that was not taken (the stream rule: valid never drops before its
  transfer);
* `act_out.ready` is `pattern[c % len(pattern)]`.

Default patterns are all-ones: an environment that never stalls, in which the count
equals `layout.layer_cycles`.

External memory (`rep_accel.memory`, `run_layer(..., memory=...)`): the host's beats also
wait for the memory's credit (docs/architecture.md, "External memory"), evaluated in the
same loop; `timing_cycles` replays the loop without the datapath for fast mode, and
`memory_stimulus` turns a layer's memory host into plain patterns for the RTL testbench.

Trace (`TRACE_FIELDS`): one row per cycle from the descriptor transfer (cycle 0) to the
`done` pulse (cycle `cycles`), both included: `cycle` then the valid/ready of the four
streams, `busy` (high from the cycle after the descriptor transfer to the last output
transfer, inclusive: `cycles - 1` cycles) and `done` (one-cycle pulse after the last
output transfer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from rep_accel.errors import RepAccelError
from rep_accel.generics import KERNEL_BYTES, WINDOW_TAPS, HardwareGenerics
from rep_accel.layout import (HEADER_BEATS, HEADER_FIELDS, REQUANT_FIELDS, LayerShape, as_scheduled, block_outputs,
                              field_span, group_param_beats, scan_slots)
from rep_accel.winograd import input_transform_into, output_transform_into, weight_transform_into, wrap_domain
from rep_accel.memory import UNLIMITED_ENGINE_ARGS, MemoryModel
from rep_accel.numerics import ACT_MAX, ACT_MIN, requantize_value
# The streams and the trace format are shared with the cocotb testbench (rep_accel.streams);
# they are imported here so that `sim.cycle` offers the whole cycle-mode interface.
from rep_accel.streams import (TRACE_DTYPE, TRACE_SIGNALS, Stimulus, layer_output, layer_params,  # noqa: F401
                               layer_streams, read_trace, trace_struct, write_trace)

# Where the decoder finds each parameter-beat field (layout.HEADER_FIELDS /
# REQUANT_FIELDS): (first byte, bytes), module constants the kernel compiles in.
_CG_AT, _CG_BYTES = field_span(HEADER_FIELDS, "cg")
_TILES_AT, _TILES_BYTES = field_span(HEADER_FIELDS, "tiles")
_BIAS_AT, _BIAS_BYTES = field_span(REQUANT_FIELDS, "bias")
_M0_AT, _M0_BYTES = field_span(REQUANT_FIELDS, "m0")
_N_AT, _N_BYTES = field_span(REQUANT_FIELDS, "n")
assert _N_BYTES == 1 and _BIAS_BYTES == 4
# The kernel reads a weight slot of KERNEL_BYTES as one window's WINDOW_TAPS int8 taps.
_TAPS = WINDOW_TAPS
assert KERNEL_BYTES == WINDOW_TAPS

# Controller phases.
IDLE, LOAD, SCAN, DRAIN = 0, 1, 2, 3
# Window-generator items of a step (layout.scan_slots).
NO_ITEM, FULL, STORE = 0, 1, 2

# Error codes of the engine kernel (0 = ok); `_ERRORS` turns them into messages.
(_OK, _BAD_CG, _LINE_DEPTH, _PARAMS_SHORT, _INPUT_SHORT, _OUTPUT_LONG, _INPUT_LEFT, _PARAMS_LEFT, _BAD_TILES,
 _WEIGHTS_FULL) = range(10)
_ERRORS = {
    _BAD_CG: "a tile-group header gives cg={} channel groups, outside 1..max_cg={}",
    _BAD_TILES: "a tile-group header gives {} tiles, outside 1..max_group={}",
    _WEIGHTS_FULL: "a tile group needs tiles x cg = {} kernels per unit, more than max_cg={}",
    _LINE_DEPTH: "a tile needs width x cg = {} line-buffer entries, more than line_depth={}",
    _PARAMS_SHORT: "the parameter stream ended after {} beats while the engine still loads parameters (of {} given)",
    _INPUT_SHORT: "the activation stream ended after {} beats while the engine still scans (of {} given)",
    _OUTPUT_LONG: "the engine produced more than the {1} expected output beats",
    _INPUT_LEFT: "{} of {} activation beats were never consumed: headers disagree with the tile plan",
    _PARAMS_LEFT: "{} of {} parameter beats were never consumed: headers disagree with the tile plan",
}


@njit(cache=True)
def _le(row, at, nbytes):
    """Unsigned little-endian integer of `nbytes` bytes of `row` from byte `at`."""
    v = np.int64(0)
    for k in range(nbytes):
        v |= np.int64(row[at + k]) << np.int64(8 * k)
    return v


@njit(cache=True)
def _trace_row(trace, n, a, b, c, d, e, f, g, h, i, j):
    """Store one cycle's port bits in row n (the row index is the cycle), growing the array."""
    if n >= trace.shape[0]:
        bigger = np.zeros((trace.shape[0] * 2, trace.shape[1]), dtype=trace.dtype)
        bigger[:trace.shape[0]] = trace
        trace = bigger
    row = trace[n]
    row[0] = a
    row[1] = b
    row[2] = c
    row[3] = d
    row[4] = e
    row[5] = f
    row[6] = g
    row[7] = h
    row[8] = i
    row[9] = j
    return trace


@njit(cache=True)
def engine(height, width, slots, input_signed, n_groups, outputs_per_tile, pi, po, max_cg, line_depth, max_group,
           latency, params, act_in, params_pat, act_in_pat, act_out_pat, act_out, record, trace_capacity,
           mem_num, mem_den, mem_cap, mem_latency, datapath, winograd):
    """Run one layer, one clock per loop iteration.

    height, width, input_signed, n_groups: the descriptor fields the engine uses; slots:
    int64 (slots, 5), the scan of a group (`layout.scan_slots` of height, width, stride);
    outputs_per_tile: H_out * W_out (a group of K tiles is done after K times as many
    output beats).
    pi, po, max_cg, line_depth, max_group, latency: hardware generics (latency =
    pipeline_latency).
    params: uint8 (beats, 9 * pi) parameter stream; act_in: uint8 (beats, pi) activation
    stream (bytes; int8 lanes when input_signed); *_pat: uint8 valid/ready patterns;
    act_out: uint8 (max beats, po), filled with the output beats in transfer order.
    mem_num, mem_den, mem_cap, mem_latency: the external-memory host
    (`rep_accel.memory.MemoryModel.engine_args`; mem_den = 0: none, the patterns alone):
    credit in 1/mem_den bytes grows by mem_num per cycle from cycle mem_latency on, up to
    mem_cap; a beat is offered only when the pattern allows it and the credit covers it.
    datapath: False skips the window generator, the array and requantization (nothing
    they compute decides a cycle), so the count is the same at a fraction of the cost:
    fast mode's timing replay; act_in is then never read and act_out never written.
    winograd: the layer runs as Winograd F(2x2,3x3) tiles (`layout.uses_winograd`; slots
    from `scan_slots(..., winograd=True)`, docs/architecture.md "Winograd scan"): line
    entries of three rows, a column delay of three columns, 4x4 tiles transformed at the
    window register, kernels transformed as they load, 16 Winograd-domain sums per tile and
    lane (`rep_accel.winograd`), and a block's output beats sent on the next slot's steps.
    Returns (cycles, output beats, error code, error arg 0, error arg 1, trace) where
    trace is uint8 (rows, 10), row = cycle, columns TRACE_SIGNALS, when `record` (else empty).
    """
    L = latency
    nine = _TAPS
    # ---- state: window generator, units, accumulators, requantization, pipeline ----
    # Winograd layers: entries of 3 rows, 3 delayed columns of 4 rows, 16 values per window
    # and kernel (the transformed tile V and kernel U).
    line_rows = 3 if winograd else 2
    side = 4 if winograd else 3
    taps = 16 if winograd else nine
    line = np.zeros((pi, line_depth, line_rows), dtype=np.int32)  # (row y-1, row y-2[, row y-3]) per entry
    coldelay = np.zeros((pi, max_cg, side - 1, side), dtype=np.int32)  # [lane, g, column x-1 / x-2 .., row y / y-1 ..]
    weights = np.zeros((max_cg, po, pi * taps), dtype=np.int32)  # unit (i, o) kernel of tile t at address t*cg + g
    win = np.zeros(pi * taps, dtype=np.int32)   # the window register: held over a position's K steps
    cur = np.zeros(side, dtype=np.int32)
    tile_in = np.zeros(16, dtype=np.int64)     # Winograd: one lane's 4x4 tile, its transform, a kernel's
    tile_v = np.zeros(16, dtype=np.int64)
    kernel_g = np.zeros(nine, dtype=np.int64)
    kernel_u = np.zeros(16, dtype=np.int64)
    macc = np.zeros((max_group, po, 16), dtype=np.int64)   # Winograd-domain sums of each tile and lane
    block_y = np.zeros(4, dtype=np.int64)
    # Winograd output beats: the results of a slot (K tiles x its block's pixels x PO), sent
    # one per step during the next slot; two buffers (the slot computing, the slot sending).
    results = np.zeros((2, max_group, 4, po), dtype=np.uint8)
    cur_buf = 0
    pending = 0      # beats of the previous slot still to send, of `pending_kept` pixels per tile
    pending_kept = 1
    sent = 0
    extra = False    # steps after a slot's own, until its predecessor's beats are sent
    flush = False    # after the last slot: the last slot's beats
    # The columns' tables, one entry per tile of the group.
    bias = np.zeros((max_group, po), dtype=np.int64)
    m0 = np.zeros((max_group, po), dtype=np.int64)
    nsh = np.full((max_group, po), 31, dtype=np.int64)
    acc = np.zeros((max_group, po), dtype=np.int64)
    ring_valid = np.zeros(L, dtype=np.uint8)
    ring = np.zeros((L, po), dtype=np.uint8)
    # The delay line is a ring: `head` (= advances mod L) is the output register's slot;
    # an advance writes the slot it leaves behind. Counters instead of `%`, for speed.
    head = 0
    trace = np.zeros((trace_capacity if record else 0, 10), dtype=np.uint8)
    n_trace = 0


    n_params = params.shape[0]
    n_in = act_in.shape[0]
    p_next = 0
    in_next = 0
    p_held = False
    in_held = False
    out_beats = 0
    group_outputs = 0

    phase = IDLE
    group = 0
    k = 0
    cg = 1
    tiles = 1    # K, tiles of the current group
    # The scan: slot si of `slots` (layout.scan_slots), channel group g, step kt of the slot.
    n_slots = slots.shape[0]
    si = 0
    g = 0
    kt = 0         # step within the slot's channel group; the array computes tile kt if kt < k_here
    sy = 0         # the slot's row, first column, FULL and STORE items, output
    sx0 = 0
    n_full = 1
    n_store = 0
    has_out = False
    k_here = 1     # K at a slot with an output, else 1
    slot_len = 1   # steps per channel group: max(k_here, items)
    done_next = False
    finished = False
    cycles = 0
    # External memory: credit in 1/mem_den bytes; a beat's cost in the same unit.
    memory = mem_den > 0
    credit = np.int64(0)
    p_cost = np.int64(nine * pi) * mem_den
    in_cost = np.int64(pi) * mem_den
    out_cost = np.int64(po) * mem_den
    c = 0
    c_out = 0  # c mod len(pattern) of each pattern
    c_p = 0
    c_in = 0
    while True:
        ovalid = ring_valid[head] != 0
        # ---- host side: the write first, then params, then act_in (rep_accel.memory) ----
        desc_valid = c == 0
        oready = act_out_pat[c_out] != 0
        p_offer = params_pat[c_p] != 0
        in_offer = act_in_pat[c_in] != 0
        c_out = c_out + 1 if c_out + 1 < act_out_pat.shape[0] else 0
        c_p = c_p + 1 if c_p + 1 < params_pat.shape[0] else 0
        c_in = c_in + 1 if c_in + 1 < act_in_pat.shape[0] else 0
        if memory:
            if c >= mem_latency:
                credit = min(credit + mem_num, mem_cap)
            oready = oready and credit >= out_cost
            if ovalid and oready:
                credit -= out_cost
            p_offer = p_offer and not p_held and p_next < n_params and credit >= p_cost
            if p_offer:
                credit -= p_cost
            in_offer = in_offer and not in_held and in_next < n_in and credit >= in_cost
            if in_offer:
                credit -= in_cost
        pv = p_next < n_params and (p_held or p_offer)
        iv = in_next < n_in and (in_held or in_offer)
        # ---- engine outputs (functions of the state and, for ready, of the stall) ----
        out_block = ovalid and not oready
        # The current step's window-generator item (slot si, step kt of channel group g).
        item = NO_ITEM
        yi = sy
        xi = sx0 + kt
        load = False
        if phase == SCAN and not (extra or flush):
            if kt < n_full:
                item = FULL
                load = kt == 0   # the slot's first FULL item (its output position if it has one)
            elif kt < n_full + n_store:
                item = STORE
                yi = sy + 1
                xi = sx0 + kt - n_full
        needs_input = item != NO_ITEM and yi < height and xi < width   # a Winograd STORE of row H: zeros
        desc_ready = phase == IDLE
        p_ready = phase == LOAD
        in_ready = needs_input and not out_block
        busy = phase != IDLE
        done = done_next
        desc_t = desc_valid and desc_ready
        p_t = pv and p_ready
        in_t = iv and in_ready
        out_t = ovalid and oready
        if record:
            trace = _trace_row(trace, n_trace, desc_valid, desc_ready, pv, p_ready, iv, in_ready,
                               ovalid, oready, busy, done)
            n_trace += 1
        if finished:
            break
        # Deadlock guards: the engine waits for a stream the host has exhausted.
        if phase == LOAD and p_next >= n_params:
            return cycles, out_beats, _PARAMS_SHORT, p_next, n_params, trace[:n_trace]
        if needs_input and in_next >= n_in:
            return cycles, out_beats, _INPUT_SHORT, in_next, n_in, trace[:n_trace]
        p_held = pv and not p_t
        in_held = iv and not in_t
        done_next = False

        # ---- output register: a transfer empties it (it may refill below) ----
        if out_t:
            if out_beats >= act_out.shape[0]:
                return cycles, out_beats, _OUTPUT_LONG, out_beats, act_out.shape[0], trace[:n_trace]
            if datapath:
                for o in range(po):
                    act_out[out_beats, o] = ring[head, o]
            out_beats += 1
            group_outputs += 1
            ring_valid[head] = 0

        # ---- controller ----
        if phase == IDLE:
            if desc_t:
                phase = LOAD
                group = 0
                k = 0
        elif phase == LOAD:
            if p_t:
                row = params[p_next]
                p_next += 1
                if k == 0:
                    cg = _le(row, _CG_AT, _CG_BYTES)
                    if cg < 1 or cg > max_cg:
                        return cycles, out_beats, _BAD_CG, cg, max_cg, trace[:n_trace]
                    if width * cg > line_depth:
                        return cycles, out_beats, _LINE_DEPTH, width * cg, line_depth, trace[:n_trace]
                    tiles = _le(row, _TILES_AT, _TILES_BYTES)
                    if tiles < 1 or tiles > max_group:
                        return cycles, out_beats, _BAD_TILES, tiles, max_group, trace[:n_trace]
                    if tiles * cg > max_cg:
                        return cycles, out_beats, _WEIGHTS_FULL, tiles * cg, max_cg, trace[:n_trace]
                elif not datapath:
                    pass
                elif k <= tiles * po:
                    j = k - HEADER_BEATS   # beat 1 + t*PO + o
                    t, o = j // po, j % po
                    b = _le(row, _BIAS_AT, _BIAS_BYTES)
                    bias[t, o] = b - (np.int64(1) << 32) if b >= (np.int64(1) << 31) else b
                    m0[t, o] = _le(row, _M0_AT, _M0_BYTES)
                    nsh[t, o] = row[_N_AT]
                else:
                    j = k - HEADER_BEATS - tiles * po   # weight beat (t, o, g), tile-major
                    t = j // (po * cg)
                    o = (j // cg) % po
                    gg = j % cg
                    for i in range(pi):
                        for tap in range(nine):
                            v = np.int32(row[nine * i + tap])
                            kernel_g[tap] = v - 256 if v >= 128 else v
                        if winograd:   # the transform as the kernel loads (U = G' g G'^T)
                            weight_transform_into(kernel_g, kernel_u)
                            for e in range(16):
                                weights[t * cg + gg, o, 16 * i + e] = kernel_u[e]
                        else:
                            for tap in range(nine):
                                weights[t * cg + gg, o, nine * i + tap] = kernel_g[tap]
                k += 1
                if k == HEADER_BEATS + tiles * po * (1 + cg):
                    phase = SCAN
                    si = 0
                    g = 0
                    kt = 0
                    sy, sx0, n_full, n_store, has_out = (slots[0, 0], slots[0, 1], slots[0, 2], slots[0, 3],
                                                         slots[0, 4] != 0)
                    k_here = tiles if has_out else 1
                    slot_len = max(k_here, n_full + n_store)
                    group_outputs = 0
                    pending = 0
                    sent = 0
                    extra = False
                    flush = False
        elif phase == SCAN:
            issue = in_t if needs_input else not out_block
            if issue and datapath and item != NO_ITEM:
                # -- window generator, per lane: one item (docs/architecture.md, "The schedule
                # of one tile group"); the slot's first FULL item loads the window register,
                # which holds it over the slot's other steps --
                inside_col = xi < width
                addr = xi * cg + g
                for i in range(pi):
                    v = np.int32(0)
                    if needs_input:
                        v = np.int32(act_in[in_next, i])
                        if input_signed and v >= 128:
                            v -= 256
                    if item == STORE:   # row y+1 into the entry, which then holds rows y+1, y[, y-1]
                        for r in range(line_rows - 1, 0, -1):
                            line[i, addr, r] = line[i, addr, r - 1]
                        line[i, addr, 0] = v
                        continue
                    cur[0] = v
                    for r in range(1, side):
                        cur[r] = line[i, addr, r - 1] if inside_col and yi >= r else 0
                    if needs_input:
                        for r in range(line_rows):
                            line[i, addr, r] = cur[r]
                    if winograd:
                        if load:   # the 4x4 tile ending at (yi, xi), transformed: V = B^T d B
                            for ky in range(4):
                                r = 3 - ky  # tile row ky is image row y - 3 + ky
                                for kx in range(3):
                                    tile_in[ky * 4 + kx] = 0 if xi == 0 else coldelay[i, g, 2 - kx, r]
                                tile_in[ky * 4 + 3] = cur[r]
                            input_transform_into(tile_in, tile_v)
                            for e in range(16):
                                win[16 * i + e] = tile_v[e]
                        for col in range(side - 2, 0, -1):
                            for r in range(side):
                                coldelay[i, g, col, r] = 0 if xi == 0 else coldelay[i, g, col - 1, r]
                        for r in range(side):
                            coldelay[i, g, 0, r] = cur[r]
                        continue
                    if load:
                        wb = i * nine
                        for ky in range(3):
                            r = 2 - ky  # window row ky is image row y - 2 + ky
                            if xi == 0:
                                win[wb + ky * 3] = 0
                                win[wb + ky * 3 + 1] = 0
                            else:
                                win[wb + ky * 3] = coldelay[i, g, 1, r]
                                win[wb + ky * 3 + 1] = coldelay[i, g, 0, r]
                            win[wb + ky * 3 + 2] = cur[r]
                    for r in range(3):
                        coldelay[i, g, 1, r] = 0 if xi == 0 else coldelay[i, g, 0, r]
                        coldelay[i, g, 0, r] = cur[r]
            computes = not (extra or flush) and kt < k_here
            if issue and datapath and computes and winograd:
                # -- Winograd: tile kt's 16 products per lane, summed over the lanes, into its
                # Winograd-domain sums (modulo 2^34); at the last channel group of an output
                # slot, the output transform and requantization of the block's pixels --
                wbase = kt * cg + g
                for o in range(po):
                    wrow = weights[wbase, o]
                    for e in range(16):
                        s64 = np.int64(0)
                        for i in range(pi):
                            s64 += np.int64(wrow[16 * i + e]) * np.int64(win[16 * i + e])
                        macc[kt, o, e] = wrap_domain(s64 if g == 0 else macc[kt, o, e] + s64)
                    if g == cg - 1 and has_out:
                        output_transform_into(macc[kt, o], block_y)
                        j = 0
                        for dy in range(2):
                            for dx in range(2):
                                if sy - 2 + dy < height and sx0 - 2 + dx < width:
                                    results[cur_buf, kt, j, o] = requantize_value(
                                        block_y[dy * 2 + dx] + bias[kt, o], m0[kt, o], nsh[kt, o], ACT_MIN, ACT_MAX)
                                    j += 1
            if issue and datapath and computes and not winograd:
                # -- the array: tile kt's partial sums of this channel group, its accumulators --
                for o in range(po):
                    # int32 products and sums, as the hardware's adder tree (|sum| < 2^31)
                    s = np.int32(0)
                    wrow = weights[kt * cg + g, o]
                    for tap in range(pi * nine):
                        s = np.int32(s + np.int32(np.int32(wrow[tap]) * np.int32(win[tap])))
                    acc[kt, o] = s if g == 0 else acc[kt, o] + s
            if issue:
                if needs_input:
                    in_next += 1
                # -- requantization enters the pipeline at the position's last step --
                slot = head
                head = head + 1 if head + 1 < L else 0
                if winograd:
                    # -- one beat of the previous slot's block per step, while it has beats --
                    if sent < pending:
                        if datapath:
                            t = sent // pending_kept
                            for o in range(po):
                                ring[slot, o] = results[cur_buf ^ 1, t, sent % pending_kept, o]
                        ring_valid[slot] = 1
                        sent += 1
                    else:
                        ring_valid[slot] = 0
                elif g == cg - 1 and has_out and kt < k_here:
                    if datapath:
                        for o in range(po):
                            ring[slot, o] = requantize_value(acc[kt, o] + bias[kt, o], m0[kt, o], nsh[kt, o],
                                                             ACT_MIN, ACT_MAX)
                    ring_valid[slot] = 1
                else:
                    ring_valid[slot] = 0
                # -- next step: a slot's steps, then the channel groups, then the slots (a
                # Winograd slot also lasts until its predecessor's beats are sent) --
                slot_done = False
                if flush:
                    if sent == pending:
                        phase = DRAIN
                elif extra:
                    slot_done = sent == pending
                else:
                    kt += 1
                    if kt == slot_len:
                        kt = 0
                        g += 1
                        if g == cg:
                            g = 0
                            if sent < pending:
                                extra = True
                            else:
                                slot_done = True
                if slot_done:
                    extra = False
                    if winograd:   # this slot's beats go out during the next one
                        bo = block_outputs(sy, sx0, height, width) if has_out else 0
                        pending = tiles * bo
                        pending_kept = max(1, bo)
                        sent = 0
                        cur_buf ^= 1
                    si += 1
                    if si == n_slots:
                        if pending > 0:
                            flush = True
                        else:
                            phase = DRAIN
                    else:
                        sy, sx0, n_full, n_store, has_out = (slots[si, 0], slots[si, 1], slots[si, 2],
                                                             slots[si, 3], slots[si, 4] != 0)
                        k_here = tiles if has_out else 1
                        slot_len = max(k_here, n_full + n_store)
        else:  # DRAIN
            if not out_block:
                ring_valid[head] = 0
                head = head + 1 if head + 1 < L else 0
        # ---- end of group / layer: the group's last output beat transferred ----
        if out_t and group_outputs == tiles * outputs_per_tile and phase == DRAIN:
            group += 1
            if group == n_groups:
                phase = IDLE
                done_next = True
                finished = True
                cycles = c + 1
            else:
                phase = LOAD
                k = 0
        c += 1
    if in_next != n_in:
        return cycles, out_beats, _INPUT_LEFT, n_in - in_next, n_in, trace[:n_trace]
    if p_next != n_params:
        return cycles, out_beats, _PARAMS_LEFT, n_params - p_next, n_params, trace[:n_trace]
    return cycles, out_beats, _OK, 0, 0, trace[:n_trace]


# ----------------------------------------------------------------------------------
# Python side: streams, stimulus, results, traces.
# ----------------------------------------------------------------------------------

@dataclass
class CycleResult:
    """One layer run in cycle mode: output uint8 (C_out, H_out, W_out), cycles (descriptor
    transfer to last output transfer inclusive) and the port trace (TRACE_DTYPE) or None."""

    output: np.ndarray
    cycles: int
    trace: np.ndarray | None = field(default=None, repr=False)


def _memory_args(memory: MemoryModel | None, generics: HardwareGenerics) -> tuple[int, int, int, int]:
    if memory is None:
        return UNLIMITED_ENGINE_ARGS
    memory.check_beats(generics)
    return memory.engine_args()


def run_layer(x: np.ndarray, shape: LayerShape, params: np.ndarray, generics: HardwareGenerics,
              stimulus: Stimulus | None = None, trace: bool = False, name: str = "layer",
              memory: MemoryModel | None = None) -> CycleResult:
    """Run one layer on one picture x: int8/uint8 (C_in, H, W), with its parameter beats
    params: uint8 (beats, 9 * PI), on hardware `generics`; the host's streams come from
    `memory` (`rep_accel.memory`; None: only the stimulus patterns limit them)."""
    x = np.asarray(x)
    if x.shape != (shape.cin, shape.height, shape.width):
        raise RepAccelError(f"{name}: input shape {x.shape} does not match ({shape.cin}, {shape.height}, {shape.width})")
    g = generics
    params = np.ascontiguousarray(params, dtype=np.uint8)
    if params.ndim != 2 or params.shape[1] != g.param_beat_bytes:
        raise RepAccelError(f"{name}: parameter beats {params.shape} are not (beats, {g.param_beat_bytes}) for PI={g.pi}")
    scheduled = as_scheduled(shape, g, name)
    act = layer_streams(x, scheduled, g)
    ho, wo = shape.out_height, shape.out_width
    beats = np.zeros((scheduled.output_beats, g.po), dtype=np.uint8)
    pp, pi_, po_ = (stimulus or Stimulus()).arrays()
    # Room for a run without stalls; the kernel doubles the trace when stalls need more.
    capacity = scheduled.cycles + 1 if trace else 0
    cycles, n_out, err, a0, a1, rows_ = engine(
        shape.height, shape.width, scan_slots(shape.height, shape.width, shape.stride, scheduled.winograd),
        bool(shape.input_signed), len(scheduled.groups), ho * wo, g.pi, g.po,
        g.max_cg, g.line_depth, g.max_group, g.pipeline_latency, params, act, pp, pi_, po_, beats, bool(trace), max(capacity, 1),
        *_memory_args(memory, g), True, scheduled.winograd)
    if err != _OK:
        raise RepAccelError(f"{name}: cycle simulation stopped: " + _ERRORS[err].format(a0, a1))
    return CycleResult(layer_output(beats, scheduled, g), int(cycles), trace_struct(rows_) if trace else None)


def run_layer_q(layer, x: np.ndarray, generics: HardwareGenerics, stimulus: Stimulus | None = None,
                trace: bool = False, memory: MemoryModel | None = None) -> CycleResult:
    """`run_layer` for a QuantizedLayer, its parameter beats packed by `layout.pack_group_params`."""
    return run_layer(x, layer.shape, layer_params(layer, generics), generics, stimulus, trace, layer.name, memory)


def memory_stimulus(x: np.ndarray, shape: LayerShape, params: np.ndarray, generics: HardwareGenerics,
                    memory: MemoryModel, stimulus: Stimulus | None = None) -> Stimulus:
    """The memory model's stall pattern for this layer as plain patterns (a `Stimulus` of
    one entry per cycle): params_valid / act_in_valid / act_out_ready of the host that
    `memory` (and `stimulus`) give, from a cycle-mode run with the port trace. A host that
    replays patterns (the cocotb testbench, `run_layer` without `memory`) then drives an
    engine exactly as the memory model does, as long as the engine answers as the
    simulator does: the memory host reacts only to the engine's valid/ready, so an engine
    that differs shows it in its trace, which the verification compares row by row."""
    t = run_layer(x, shape, params, generics, stimulus, trace=True, memory=memory).trace
    return Stimulus(t["params_valid"].copy(), t["act_in_valid"].copy(), t["act_out_ready"].copy())


def timing_cycles(shape: LayerShape, generics: HardwareGenerics, memory: MemoryModel | None = None,
                  stimulus: Stimulus | None = None, name: str = "layer") -> int:
    """The cycles `run_layer` counts for this layer under `memory` and `stimulus`, without
    the data: the engine's control and host replayed with the datapath off (`engine`'s
    `datapath=False`). No value the datapath computes decides a cycle, so this is exact;
    the parameter stream carries only its tile-group headers, the activation stream zeros
    (allocated, never read). Fast mode's cycle count under a memory model. shape: a
    LayerShape or ScheduledLayer."""
    g = generics
    scheduled = as_scheduled(shape, g, name)
    shape = scheduled.shape
    params = np.zeros((scheduled.param_beats, g.param_beat_bytes), dtype=np.uint8)
    at = 0
    for j in scheduled.groups:
        for field_name, value in (("cg", j.cg), ("tiles", j.count)):
            first, nbytes = field_span(HEADER_FIELDS, field_name)
            params[at, first:first + nbytes] = np.frombuffer(value.to_bytes(nbytes, "little"), np.uint8)
        at += group_param_beats(j, g)
    act = np.zeros((scheduled.input_beats, g.pi), dtype=np.uint8)
    beats = np.zeros((scheduled.output_beats, g.po), dtype=np.uint8)
    pp, pi_, po_ = (stimulus or Stimulus()).arrays()
    cycles, _, err, a0, a1, _ = engine(
        shape.height, shape.width, scan_slots(shape.height, shape.width, shape.stride, scheduled.winograd),
        bool(shape.input_signed), len(scheduled.groups), shape.out_height * shape.out_width, g.pi, g.po, g.max_cg,
        g.line_depth, g.max_group, g.pipeline_latency, params, act,
        pp, pi_, po_, beats, False, 1, *_memory_args(memory, g), False, scheduled.winograd)
    if err != _OK:
        raise RepAccelError(f"{name}: timing replay stopped: " + _ERRORS[err].format(a0, a1))
    return int(cycles)
