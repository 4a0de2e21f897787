"""A runtime-only install (no sandbox extra) gets one line naming the fix from `demo`, not a
raw ModuleNotFoundError traceback (issue 10 leftover)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = (
    "import sys, runpy\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('starlette', 'uvicorn'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = ['starter.py', 'demo']\n"
    "runpy.run_path('starter.py', run_name='__main__')\n"
)


def test_demo_without_the_sandbox_extra_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "sandbox extra" in lines[0] and "pip install" in lines[0], lines
