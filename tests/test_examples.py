"""The Python example runs as a user runs it, on the demo data."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_example(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(REPO, "examples", "quickstart.py"),
                          "--data-path", str(tmp_path / "data"), "--results-dir", str(tmp_path / "res")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("RunResult(BRMRS on demo, 1/1 combinations")
    assert lines[1].startswith("valid recall@20 0.")
    assert [ln.split(":")[0] for ln in lines[2:5]] == ["user 0", "user 1", "user 2"]
    assert all(len(ln.split(", ")) == 5 for ln in lines[2:5])
    assert lines[5].startswith("fused vectors: (1000, 128) (500, 128)")
