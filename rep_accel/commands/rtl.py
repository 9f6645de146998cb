"""`rep-accel rtl`: generate the accelerator's Verilog and a JSON description of its ports."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import RepAccelError
from ..fsutil import add_force_argument, atomic_output_dir, check_output_dir
from ..generics import (ARITHMETIC_GENERICS, LINE_DEPTH_LIMIT, MAX_CG_LIMIT, MAX_GROUP_LIMIT, ON_CHIP_BYTES_LIMIT, UNIT_KINDS,
                        HardwareGenerics)

HELP = "generate the accelerator's Verilog (Amaranth) and a JSON of its ports and generics"
DESCRIPTION = """\
Elaborate the Amaranth RTL (rep_accel.hdl) for the given hardware generics and write

  <out>/rep_accel_top.v     the Verilog top level `rep_accel_top` (ports clk, rst,
                            desc__*, params__*, act_in__*, act_out__*, busy, done, cycles)
  <out>/rep_accel_top.json  its ports (name, direction, width), generics, pipeline latency
                            and descriptor fields
  <out>/lint_waivers.vlt    the Verilator waivers the Verilog lints clean with
                            (verilator --lint-only -Wall lint_waivers.vlt rep_accel_top.v)
  <out>/MULT18X18D.v        with --dsp ecp5 only: a simulation model of the ECP5 DSP
                            primitive, for simulators and lint (never for synthesis)

--dsp chooses how the 3x3 units' multipliers are written: `generic` (default) is plain
`a * b` between registers, for any tool; `ecp5` instantiates Lattice ECP5 MULT18X18D
blocks with their own input, pipeline and output registers, which is what closes timing
on a full ECP5 (Yosys does not move registers into DSP blocks). Same cycles, same values.

--unit chooses the kind of arithmetic unit: `direct`, the 3x3 unit (9 multipliers), or `winograd`
(Winograd F(2x2,3x3) on stride-1 layers, 16 multipliers per unit, stride-2 layers in direct mode
on the same units; docs/architecture.md "Winograd scan"). --lut-multipliers N
builds the first N of the array's multipliers (9 or 16 x PI x PO, in unit order, row-major) in logic
(shift-and-add, never mapped to a DSP block) instead of DSP blocks, whatever --dsp says: same
three register stages, same values, so an array can have more multipliers than the device
has DSP blocks. Given a build, both are the build's (it records them); other values are refused.

Given a build folder (from `rep-accel compile`), the array shape PI x PO is the build's
(its parameter images are laid out for it), every layer is checked to fit, and W_MAX,
max_cg and line_depth not given on the command line are the smallest the model needs.
Generics out of range or a model that does not fit are reported before anything is written.
Limits: PI, PO <= 64; W_MAX < 4096; max_cg <= 4096; line_depth <= 65536; line and weight
buffers together <= 16 MiB. The output folder must be new, empty or an earlier
`rep-accel rtl` output (--force to write beside other files).

examples:
  rep-accel rtl -o rtl/
  rep-accel rtl -o rtl/ --pi 4 --po 4 --w-max 64 --max-cg 16 --line-depth 512
  rep-accel rtl -o rtl/ build/            # sized for the compiled model
  rep-accel rtl -o rtl/ --lint build/     # also run Verilator's lint on the result
  rep-accel rtl -o rtl/ --pi 4 --po 4 --dsp ecp5   # for rep-accel synth --target ecp5
  rep-accel rtl -o rtl/ --pi 4 --po 4 --dsp ecp5 --lut-multipliers 36   # 108 DSPs + 36 in LUTs
"""

VERILOG = "rep_accel_top.v"
DESCRIPTION_JSON = "rep_accel_top.json"
WAIVERS = "lint_waivers.vlt"


def add_arguments(p) -> None:
    p.add_argument("build", nargs="?", help="optional build folder written by `rep-accel compile`")
    p.add_argument("-o", "--out", required=True, help="output folder for the Verilog and JSON")
    d = HardwareGenerics()
    p.add_argument("--pi", type=int, help=f"array rows = input lanes (default {d.pi}, or the build's)")
    p.add_argument("--po", type=int, help=f"array columns = output lanes (default {d.po}, or the build's)")
    p.add_argument("--w-max", type=int, help=f"widest input row in pixels (default {d.w_max}, or the model's)")
    p.add_argument("--max-cg", type=int,
                   help=f"weight-buffer depth in channel groups per tile, 1..{MAX_CG_LIMIT} "
                        f"(default {d.max_cg}, or the model's)")
    p.add_argument("--line-depth", type=int,
                   help=f"line-buffer entries per lane, width x channel groups, 1..{LINE_DEPTH_LIMIT} "
                        f"(default {d.line_depth}, or the model's; buffers together <= "
                        f"{ON_CHIP_BYTES_LIMIT >> 20} MiB)")
    add_group_argument(p, "{}, or the build's")
    from ..families import DSP_STYLES
    p.add_argument("--dsp", choices=DSP_STYLES, default="generic",
                   help="multiplier style: generic (any tool) or ecp5 (MULT18X18D with its registers); default generic")
    add_arithmetic_arguments(p, "{}, or the build's")
    p.add_argument("--lint", action="store_true", help="run verilator --lint-only -Wall on the result; fail on warnings")
    add_force_argument(p)


def add_group_argument(p, default: str = "{}") -> None:
    """--max-group, the most tiles per tile group (docs/architecture.md, "Tile groups");
    `default` as for add_arithmetic_arguments."""
    d = HardwareGenerics()
    p.add_argument("--max-group", type=int, metavar="K",
                   help=f"most tiles of PO output channels that share one pass over the input, 1..{MAX_GROUP_LIMIT}: "
                        f"the depth of the output columns' accumulator and requantization tables; the weight buffer "
                        f"then holds K x cg kernels (default {default.format(d.max_group)})")


def add_arithmetic_arguments(p, default: str = "{}") -> None:
    """--unit and --lut-multipliers, the arithmetic generics (generics.ARITHMETIC_GENERICS);
    `default` says what an option not given means, "{}" standing for HardwareGenerics'
    value, e.g. "{}, or the build's" or "the build's"."""
    d = HardwareGenerics()
    p.add_argument("--unit", choices=tuple(UNIT_KINDS),
                   help=f"kind of arithmetic unit: {', '.join(UNIT_KINDS)} (default {default.format(d.unit)})")
    p.add_argument("--lut-multipliers", type=int, metavar="N",
                   help=f"multipliers built in logic instead of DSP blocks, 0 .. 9 x PI x PO, the first in unit "
                        f"order (default {default.format(d.lut_multipliers)})")


def arithmetic_options(args) -> dict:
    """The arithmetic generics given on the command line, {name: value} (absent: not given)."""
    return {name: getattr(args, name) for name in ARITHMETIC_GENERICS if getattr(args, name, None) is not None}


def check_arithmetic_options(args, generics: HardwareGenerics, holder: str, remedy: str) -> None:
    """Refuse --unit / --lut-multipliers other than `generics`', those of `holder` (e.g.
    "the build b/"); `remedy` makes one with the given value (e.g. "recompile with")."""
    check_arithmetic(arithmetic_options(args), generics, holder, remedy)


def check_arithmetic(given: dict, generics: HardwareGenerics, holder: str, remedy: str) -> None:
    """check_arithmetic_options for a dict of the arithmetic generics given {name: value}."""
    for name, value in given.items():
        own = getattr(generics, name)
        if value != own:
            flag = "--" + name.replace("_", "-")
            raise RepAccelError(f"{flag} {value} differs from {name}={own} of {holder}; drop {flag} or {remedy} "
                                f"{flag} {value}")


def check_build_options(args, build) -> None:
    """Refuse --unit / --lut-multipliers other than what the build folder `build` records."""
    check_arithmetic_options(args, build.generics, f"the build {build.path}", "recompile it with rep-accel compile ...")


#: The generics `rep-accel rtl` (and verify) take as options, by option name.
GENERIC_OPTIONS = ("pi", "po", "w_max", "max_cg", "line_depth", "max_group", *ARITHMETIC_GENERICS)
#: Of those, the ones a build's parameter images are laid out for: with a build, the RTL has the build's.
LAYOUT_GENERICS = ("pi", "po", "max_group")


def resolve_generics(args) -> tuple[HardwareGenerics, object]:
    """generics_for the command line's build and generics options."""
    return generics_for(args.build, **{name: getattr(args, name, None) for name in GENERIC_OPTIONS})


def generics_for(build_path=None, **given) -> tuple[HardwareGenerics, object]:
    """The hardware generics, from the given ones (pi, po, w_max, max_cg, line_depth,
    max_group, unit, lut_multipliers; None = not given) and the optional build folder: with
    a build, PI, PO, max_group and the arithmetic are the build's and the buffers not given
    are the smallest its layers need (layout.size_generics), and every layer must be
    scheduled in the same tile groups as the build's images. Returns (generics, build or
    None). Raises RepAccelError for generics out of range, a model that does not fit, or
    options that contradict the build."""
    unknown = set(given) - set(GENERIC_OPTIONS)
    if unknown:
        raise TypeError(f"unknown generics {sorted(unknown)}")
    given = {name: given.get(name) for name in GENERIC_OPTIONS}
    for name in ("pi", "po", "w_max", "max_cg", "line_depth", "max_group"):
        value = given[name]
        if value is not None and value < 1:
            raise RepAccelError(f"--{name.replace('_', '-')} {value}: must be a positive integer")
    arithmetic = {name: given[name] for name in ARITHMETIC_GENERICS if given[name] is not None}
    sizes = {name: given[name] for name in ("pi", "po", "w_max", "max_cg", "line_depth", "max_group")}
    if not build_path:
        return HardwareGenerics(**{k: v for k, v in sizes.items() if v is not None}, **arithmetic), None
    from ..images import load_build
    build = load_build(build_path)
    check_arithmetic(arithmetic, build.generics, f"the build {build.path}", "recompile it with rep-accel compile ...")
    bg = build.generics
    for name in LAYOUT_GENERICS:
        own = getattr(bg, name)
        flag = "--" + name.replace("_", "-")
        if sizes[name] is not None and sizes[name] != own:
            raise RepAccelError(
                f"{flag} {sizes[name]} differs from the build's {name}={own} ({build_path} is laid out for a "
                f"{bg.pi}x{bg.po} array with tile groups of up to {bg.max_group} tiles); drop {flag} or recompile "
                f"with {flag} {sizes[name]}")
        sizes[name] = own
    from ..layout import schedule_layer, size_generics
    layers = build.qnet.layers
    names = [f"{build_path}: layer {l.name}" for l in layers]
    # The weight buffer the build's tile groups need (its images are laid out in them):
    # max K * cg over its groups, which schedules every layer in the same groups again.
    group_kernels = max(j.cg * len(j.tiles) for i in range(len(layers)) for j in build.schedule(i).groups)
    generics = size_generics([l.shape for l in layers], sizes["pi"], sizes["po"], "smallest", names=names,
                             w_max=sizes["w_max"], max_cg=sizes["max_cg"] or group_kernels,
                             line_depth=sizes["line_depth"], max_group=sizes["max_group"])
    generics = generics.replace(**{name: getattr(bg, name) for name in ARITHMETIC_GENERICS})
    for layer, name in zip(layers, names):
        ours = [len(j.tiles) for j in schedule_layer(layer.shape, generics, name).groups]
        theirs = [len(j.tiles) for j in build.schedule(layer.name).groups]
        if ours != theirs:
            raise RepAccelError(f"{name}: with max_cg={generics.max_cg} the layer runs in tile groups of {ours} tiles, "
                                f"the build's images in groups of {theirs}; drop --max-cg or give at least "
                                f"{max(j.cg * len(j.tiles) for j in build.schedule(layer.name).groups)}")
    return generics, build


def lint(folder: Path, models: list[str] = ()) -> str:
    """Run Verilator's lint on a generated folder (with its simulation models, file names in
    `folder`); return its messages (empty if clean)."""
    from ..tools import verilator_command, verilator_env
    r = subprocess.run([*verilator_command(), "--lint-only", "-Wall", "--top-module", "rep_accel_top", WAIVERS, *models, VERILOG],
                       cwd=folder, env=verilator_env(), capture_output=True, text=True)
    if r.returncode != 0:
        return (r.stdout + r.stderr).strip() or f"verilator exited with {r.returncode}"
    return ""


def write_rtl(out, generics: HardwareGenerics, dsp: str = "generic", *, lint_it: bool = False, force: bool = False,
              build=None, build_path=None) -> dict:
    """Generate the Verilog of `generics` with multipliers in style `dsp` and write the
    folder `out` (Verilog, its JSON description, the lint waivers, the primitives' models)
    atomically; with lint_it, Verilator's lint must be clean or nothing is written. Returns
    the description (dict). The function API of `rep-accel rtl` (demo, notebooks)."""
    out = check_output_dir(out)
    if build_path is not None and Path(build_path).resolve() == out.resolve():
        raise RepAccelError(f"-o {out} is the build folder given as input; write the Verilog to another folder")
    from ..hdl.verilog import describe_json, generate, simulation_models, waivers_path
    text, desc = generate(generics, dsp)
    desc["lint_waivers"] = WAIVERS
    if build is not None:
        desc["build"] = {"path": str(build_path), "layers": len(build.qnet.layers)}
    with atomic_output_dir(out, "rtl", force) as tmp:
        (tmp / VERILOG).write_text(text)
        (tmp / DESCRIPTION_JSON).write_text(describe_json(desc))
        (tmp / WAIVERS).write_text(waivers_path().read_text())
        for model in simulation_models(dsp):
            (tmp / model.name).write_text(model.read_text())
        if lint_it:
            messages = lint(tmp, desc["simulation_models"])
            if messages:
                raise RepAccelError(f"the generated Verilog does not lint clean; nothing written:\n{messages}")
    return desc


def run(args) -> int:
    out = check_output_dir(args.out)
    generics, build = resolve_generics(args)
    from ..hdl.verilog import TOP_NAME
    dsp = args.dsp
    write_rtl(out, generics, dsp, lint_it=args.lint, force=args.force, build=build, build_path=args.build)
    g = generics
    print(f"wrote {out / VERILOG} (module {TOP_NAME}) and {out / DESCRIPTION_JSON}")
    print(f"  array {g.pi}x{g.po}, w_max {g.w_max}, max_cg {g.max_cg}, line_depth {g.line_depth}; "
          f"pipeline latency {g.pipeline_latency} cycles; multipliers: {dsp}")
    print(f"  unit {g.unit}: {g.multipliers} multipliers, {g.lut_multipliers} of them in logic (LUT multipliers)")
    print(f"  line buffers {g.line_buffer_bytes} B, weight buffers {g.weight_buffer_bytes} B")
    if build is not None:
        print(f"  fits all {len(build.qnet.layers)} layers of {args.build}")
    if args.lint:
        print("  verilator --lint-only -Wall: clean (with lint_waivers.vlt)")
    return 0

