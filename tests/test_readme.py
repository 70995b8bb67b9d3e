"""The README's quickstart runs as written, and its commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quickstart_runs():
    block = re.search(r"## Quickstart\s+```python\n(.*?)```", README, re.S).group(1)
    assert len(block.strip().splitlines()) <= 12
    exec(compile(block, "README quickstart", "exec"), {})


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    test_cmd = [c for c in commands if "pytest" in c]
    assert len(test_cmd) == 1
    assert test_cmd[0] in (ROOT / ".ci" / "run").read_text()
