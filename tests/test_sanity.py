"""ansible-test sanity over the whole collection is part of the test command."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # ansible-test over a copy of the collection: about a minute


def test_ansible_test_sanity_is_clean():
    env = dict(os.environ, VENV=str(Path(sys.executable).parent.parent))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "sanity.sh")], capture_output=True, text=True,
                            timeout=1800, env=env, check=False)
    errors = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if line.startswith("ERROR:")]
    assert result.returncode == 0, "\n".join(errors[-60:]) or result.stderr[-3000:]
