"""The two Triton switches that stay off until a GPU has measured them, decided from what
``gpu_check.sh`` wrote, by rules fixed before the run:

* ``LAST_PROGRAM_FINISH`` (the last program of several finishes the reduction, one launch fewer) goes on
  if every case of ``test_last_program_finish_on_cuda``,
  ``test_last_program_of_several_finishes_as_the_finishing_kernel`` and
  ``test_the_partials_sum_over_several_chunks`` ran and passed, and in every
  ``host_profile.py`` row with several programs the step with it on took less host time than without.
* ``SPATIAL_LOOP_MAX_C = 32`` (N-D positions of up to 32 classes in the loop over their classes) if every
  case of ``test_softmax_positions_of_few_classes_in_the_spatial_loop`` ran and passed, and on every
  segmentation row of ``bench_gpu.py`` the loop's step ("focalkit loop") was faster than the default's.

A missing file, a skipped or failed test, or a missing row keeps a switch off. Writes
``DEST/gpu_tuning.json``, a ``FOCALKIT_TRITON_TUNING`` file holding the decisions (to time again with,
before the defaults in ``backends/triton.py`` change), and prints them as Markdown (the summary's last
part).

    python benchmarks/gpu_decide.py DEST
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

LOOP_LIMIT = 32  # the candidate SPATIAL_LOOP_MAX_C
LAST_TESTS = ("test_last_program_finish_on_cuda", "test_last_program_of_several_finishes_as_the_finishing_kernel",
              "test_the_partials_sum_over_several_chunks")
LOOP_TESTS = ("test_softmax_positions_of_few_classes_in_the_spatial_loop",)


def outcomes_from_xml(xml_path: Path) -> dict:
    """{"class name::test case name": "passed" | "failed" | "skipped"} from pytest's JUnit XML ({} without
    one; the class name keeps tests of one name in two files apart)."""
    out = {}
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return out
    for case in root.iter("testcase"):
        kids = {c.tag for c in case}
        out[f'{case.get("classname", "")}::{case.get("name", "")}'] = "failed" if kids & {"failure", "error"} else \
            "skipped" if "skipped" in kids else "passed"
    return out


def _tests_pass(outcomes: dict, names: tuple) -> tuple[bool, str]:
    for name in names:
        cases = {k: v for k, v in outcomes.items() if k.split("::")[-1].split("[")[0] == name}
        if not cases:
            return False, f"`{name}` did not run"
        bad = sorted(k for k, v in cases.items() if v != "passed")
        if bad:
            return False, f"`{name}`: {len(bad)} of {len(cases)} not passed ({outcomes[bad[0]]}: {bad[0]})"
    return True, "its tests passed (" + ", ".join(f"`{n}`" for n in names) + ")"


def decide(outcomes: dict, gpu_rows: list, host_rows: dict, spatial_loop: tuple) -> tuple[dict, list]:
    """(the tuning file's content, Markdown lines saying why). ``spatial_loop``: the table's (BLOCK_P,
    num_warps) of the loop, written back with the decided limit."""
    lines = ["## Decisions (`benchmarks/gpu_decide.py`)", ""]
    ok, why = _tests_pass(outcomes, LAST_TESTS)
    ab = [(name, r["step"], r["step_last_program"]) for name, r in host_rows.items() if "step_last_program" in r]
    if ok and not ab:
        ok, why = False, "no host_profile.py row with several programs"
    elif ok:
        ok = all(lp < step for _, step, lp in ab)
        why += "; host us per step, off -> on: " + ", ".join(f"{n} {s:.1f} -> {lp:.1f}" for n, s, lp in ab)
    last = ok
    lines.append(f"* `LAST_PROGRAM_FINISH`: **{'on' if last else 'stays off'}**: {why}.")
    ok, why = _tests_pass(outcomes, LOOP_TESTS)
    seg = [r for r in gpu_rows if r.get("workload") == "segmentation" and "focalkit loop" in r.get("ms", {})]
    if ok and not seg:
        ok, why = False, "no segmentation row with the loop's time"
    elif ok:
        ok = all(r["ms"]["focalkit loop"] < r["ms"]["focalkit"] for r in seg)
        why += "; segmentation ms, tiles -> loop: " + ", ".join(
            f"{r['dtype']} {r['ms']['focalkit']:.3f} -> {r['ms']['focalkit loop']:.3f}" for r in seg)
    loop = ok
    lines.append(f"* `SPATIAL_LOOP_MAX_C`: **{LOOP_LIMIT if loop else 0}**: {why}.")
    tuning = {"last_program_finish": last, "spatial_loop": [*spatial_loop, LOOP_LIMIT if loop else 0]}
    lines += ["", f"`gpu_tuning.json` (a `FOCALKIT_TRITON_TUNING` file): `{json.dumps(tuning)}`"]
    return tuning, lines


def _load(path: Path, key: str, default):
    try:
        return json.loads(path.read_text())[key]
    except (OSError, ValueError, KeyError):
        return default


def main(dest: str) -> None:
    from focalkit.backends import triton as tb

    d = Path(dest)
    tuning, lines = decide(outcomes_from_xml(d / "gpu_tests.xml"), _load(d / "gpu.json", "results", []),
                           _load(d / "gpu_host.json", "rows", {}),
                           (tb.SPATIAL_LOOP.block_p, tb.SPATIAL_LOOP.num_warps))
    (d / "gpu_tuning.json").write_text(json.dumps(tuning) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
