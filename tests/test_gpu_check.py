"""``benchmarks/gpu_check.sh --dry-run``: the GPU check's code paths (tests and timings) on the CPU
under Triton's interpreter, so the script is known to run before a GPU is lent."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(tmp_path, **env):
    """``gpu_check.sh --dry-run`` into ``tmp_path`` (its $OUT), with ``env`` set (the stages' timeouts)."""
    pytest.importorskip("triton")
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, TRITON_INTERPRET="1", **env)
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                          text=True, env=env, timeout=900, cwd=ROOT)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bash script, Linux CI")
def test_gpu_check_dry_run(tmp_path):
    r = _dry_run(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the lent GPU machine sends back at most 8 files from $OUT: a ninth would be left there
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu.json", "gpu_host.json", "gpu_host.md", "gpu_results.md", "gpu_run.log", "gpu_summary.md",
        "gpu_tests.xml", "gpu_tuning.json"]
    log = (tmp_path / "gpu_run.log").read_text()  # every stage's output, in order
    assert log.index(" passed") < log.index("bench_gpu.py") < log.index("host_profile.py")
    res = json.loads((tmp_path / "gpu.json").read_text())
    assert res["meta"]["dry_run"] and len(res["results"]) == 19  # every workload row and dtype of bench_gpu.py
    assert {r["workload"] for r in res["results"]} >= {"segmentation", "LVIS", "RetinaNet", "latency softmax",
                                                       "RetinaNet indices", "VFL 16 x 8400 anchors",
                                                       "DFL 16 x 8400 x 4 sides"}
    flat = [r for r in res["results"] if r["workload"] == "flattened segmentation"]
    assert flat and all("focalkit tiles" in r["ms"] for r in flat)  # the row loop against the tile table
    seg = [r for r in res["results"] if r["workload"] == "segmentation"]
    assert seg and all("focalkit loop" in r["ms"] for r in seg)  # the spatial loop against the spatial tiles
    host = json.loads((tmp_path / "gpu_host.json").read_text())  # the host's time per step taken apart
    assert len(host["rows"]) == 3 and all(r["n_launches"] >= 2 and r["python"] > 0 for r in host["rows"].values())
    assert [r["n_launches"] for r in host["rows"].values()] == [2, 3, 2]  # one program, several, one
    assert [r.get("n_launches_last_program") for r in host["rows"].values()] == [None, 2, None]  # the A/B
    summary = (tmp_path / "gpu_summary.md").read_text()
    assert "| tests |" in summary and " 0 failed" in summary and "tests marked gpu" in summary
    assert "Host time per step, taken apart" in summary
    # the decisions: the CUDA-only test was skipped here, so the last program's finish stays off
    assert "## Decisions" in summary and "`LAST_PROGRAM_FINISH`: **stays off**" in summary
    tuning = json.loads((tmp_path / "gpu_tuning.json").read_text())
    assert tuning["last_program_finish"] is False and tuning["spatial_loop"][2] in (0, 32)
    read = subprocess.run([sys.executable, "-c", "from focalkit.backends import triton as tb; "
                           "print(tb.LAST_PROGRAM_FINISH, tb.SPATIAL_LOOP_MAX_C, tb.SPATIAL_LOOP.block_p)"],
                          capture_output=True, text=True, env=dict(os.environ, FOCALKIT_TRITON_TUNING=str(
                              tmp_path / "gpu_tuning.json")), cwd=ROOT)
    assert read.stdout.split() == ["False", str(tuning["spatial_loop"][2]), str(tuning["spatial_loop"][0])], read



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bash script, Linux CI")
def test_a_stage_timeout_keeps_what_ran(tmp_path):
    """A stage's timeout interrupts it: pytest still writes the JUnit report of the tests that ran (a plain
    ``timeout`` terminates it with no report, and the run's decisions lose every test), and the summary
    says which stage stopped. The workloads and the host profile get one second, so they stop in their
    imports: the summary and the decisions cope with their files missing."""
    r = _dry_run(tmp_path, GPU_CHECK_TEST_TIMEOUT="20", GPU_CHECK_BENCH_TIMEOUT="1", GPU_CHECK_HOST_TIMEOUT="1")
    assert r.returncode != 0
    assert "tests rc=124, bench rc=124, host rc=124" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    outcomes = _decide_module().outcomes_from_xml(tmp_path / "gpu_tests.xml")
    assert sum(v == "passed" for v in outcomes.values()) > 0 and "failed" not in outcomes.values()
    summary = (tmp_path / "gpu_summary.md").read_text()
    for line in ("tests: stopped at their 20 s timeout", "workloads: stopped at their 1 s timeout",
                 "host_profile.py: stopped at its 1 s timeout"):
        assert line in summary
    assert "passed, 0 failed" in summary and "(rc 124)" in summary and "## Decisions" in summary
    assert json.loads((tmp_path / "gpu_tuning.json").read_text())["last_program_finish"] is False


def test_the_host_profile_keeps_its_rows_when_interrupted(tmp_path):
    """host_profile.py writes gpu_host.json after every row, as bench_gpu.py writes gpu.json: interrupted
    after its first row (as a stage timeout does), the row is on disk."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "host_profile.py"), "--dry-run", "--out",
                          str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                         cwd=ROOT)
    try:
        first = p.stdout.readline()  # the first row, printed once it is written
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)
    finally:
        p.kill()
    assert first.startswith("softmax 256 x 10 {"), first
    host = json.loads((tmp_path / "gpu_host.json").read_text())
    assert list(host["rows"])[0] == "softmax 256 x 10" and host["rows"]["softmax 256 x 10"]["n_launches"] == 2
    assert "| softmax 256 x 10 |" in (tmp_path / "gpu_host.md").read_text()


def _decide_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_decide", ROOT / "benchmarks" / "gpu_decide.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(mod, outcome="passed", lp=(120.0, 100.0), loop=(7.0, 5.0), drop=()):
    """decide() on a made-up GPU run: every switch's tests at ``outcome``; one host row with several
    programs (step off, on); segmentation rows (tiles, loop) in fp32 and bf16; ``drop``: test names absent."""
    outcomes = {f"tests.m::{n}[a]": outcome for n in mod.LAST_TESTS + mod.LOOP_TESTS if n not in drop}
    outcomes["tests.m::test_something_else"] = "failed"  # other tests do not decide these switches
    host = {"softmax 256 x 10": {"step": 90.0}, "sigmoid 36 x 80": {"step": lp[0], "step_last_program": lp[1]}}
    rows = [{"workload": "segmentation", "dtype": dt, "ms": {"focalkit": loop[0], "focalkit loop": loop[1]}}
            for dt in ("float32", "bfloat16")]
    rows.append({"workload": "LVIS", "dtype": "float32", "ms": {"focalkit": 1.0}})
    return mod.decide(outcomes, rows, host, (256, 4))


def test_the_gpu_run_decides_the_switches_by_its_rules():
    """``benchmarks/gpu_decide.py``: a switch goes on only where its tests ran and passed on the device and
    its measurement favours it; anything missing keeps it off."""
    mod = _decide_module()
    tuning, lines = _run(mod)
    assert tuning == {"last_program_finish": True, "spatial_loop": [256, 4, 32]}
    assert "120.0 -> 100.0" in "\n".join(lines) and "float32 7.000 -> 5.000" in "\n".join(lines)
    assert _run(mod, lp=(100.0, 100.0))[0]["last_program_finish"] is False  # not faster: off
    assert _run(mod, loop=(5.0, 5.5))[0]["spatial_loop"] == [256, 4, 0]
    for outcome in ("skipped", "failed"):  # on a CPU the CUDA test is skipped: nothing goes on
        assert _run(mod, outcome=outcome)[0] == {"last_program_finish": False, "spatial_loop": [256, 4, 0]}
    tuning, lines = _run(mod, drop=("test_last_program_finish_on_cuda",))
    assert tuning["last_program_finish"] is False and "`test_last_program_finish_on_cuda` did not run" in lines[2]
    assert mod.decide({}, [], {}, (256, 4))[0] == {"last_program_finish": False, "spatial_loop": [256, 4, 0]}


def test_outcomes_are_read_from_pytest_junit_xml(tmp_path):
    mod = _decide_module()
    xml = tmp_path / "t.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="t.m" name="a[1]"/><testcase classname="t.m" name="b">'
                   '<skipped/></testcase><testcase classname="t.n" name="b"><failure/></testcase>'
                   '<testcase classname="t.n" name="d"><error/></testcase></testsuite></testsuites>')
    assert mod.outcomes_from_xml(xml) == {"t.m::a[1]": "passed", "t.m::b": "skipped", "t.n::b": "failed",
                                          "t.n::d": "failed"}
    assert mod._tests_pass(mod.outcomes_from_xml(xml), ("b",))[0] is False  # one of two b's failed
    assert mod.outcomes_from_xml(tmp_path / "missing.xml") == {}
