"""Helpers of the hostile-input tests (tests/test_security_*.py).

Each test hands a command a damaged or malicious input made in the test and asserts what
the security model (docs/security.md) promises: exit status 2, one line on stderr naming
the problem, no traceback, nothing written or changed outside the output, the user's
files untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rep_accel import cli, images


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(capsys, *argv, says: str | tuple = ()) -> str:
    """Run the CLI; assert exit 2, exactly one stderr line `rep-accel <cmd>: error: ...`
    containing every string of `says`, no traceback. Returns that line."""
    rc, out, err = run_cli(capsys, *argv)
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2, f"exit {rc}, stderr {err!r}"
    assert len(lines) == 1, f"expected one line, got {lines!r}"
    assert lines[0].startswith(f"rep-accel {argv[0]}: error: "), lines[0]
    assert "Traceback" not in err + out
    for s in (says,) if isinstance(says, str) else says:
        assert s in lines[0], f"{s!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(*roots) -> dict:
    """{path: (kind, sha256 or link target)} of every entry under `roots` (links not followed)."""
    state = {}
    for root in map(Path, roots):
        if not root.exists() and not root.is_symlink():
            continue
        entries = [root] if not root.is_dir() or root.is_symlink() else [root, *root.rglob("*")]
        for p in entries:
            if p.is_symlink():
                state[str(p)] = ("link", os.readlink(p))
            elif p.is_file():
                st = p.stat()
                # Huge (sparse) files of a test are compared by size and time, not read.
                state[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 1 << 26
                                 else (st.st_size, st.st_mtime_ns))
            else:
                state[str(p)] = ("dir", None)
    return state


def small_build(root: Path, pi: int, po: int, seed: int) -> Path:
    """A build of a random 'tiny' RepVGG at 16x16 under root/build (PI x PO array), one
    input root/x.npy (float32 1 x C x 16 x 16) and calibration digits root/calib.npy."""
    import numpy as np

    from rep_accel.generics import HardwareGenerics
    from rep_accel.sim import synthetic

    qnet = synthetic.random_zoo_qnetwork("tiny", 16, seed=seed)
    images.write_build(qnet, HardwareGenerics(pi=pi, po=po, w_max=16), root / "build")
    rng = np.random.default_rng(seed)
    np.save(root / "x.npy", rng.normal(0, 1, (1,) + tuple(qnet.input_size)).astype(np.float32))
    np.save(root / "calib.npy", rng.normal(0, 1, (8, 1, 28, 28)).astype(np.float32))
    return root


def rewrite_manifest(build: Path, edit) -> None:
    """Apply `edit(manifest)` to a build's manifest and recompute its checksum, as an
    attacker who knows the format would (so only the loader's own checks can catch it)."""
    path = build / images.MANIFEST
    manifest = json.loads(path.read_text())
    edit(manifest)
    manifest.pop("manifest_sha256", None)
    # The attacker's own canonical form, which also takes NaN and infinities.
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    manifest["manifest_sha256"] = images._sha256(body)
    path.write_text(json.dumps(manifest))


def file_entry(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": images._sha256(data)}
