# SPDX-License-Identifier: MIT
"""The README's complete example runs (with a few steps) and produces the files it claims."""
import os
import re
import subprocess
import sys

import pytest

from conftest import FASHION_DATA, PKG_ROOT, ROOT, load_strop

strop = load_strop()


def test_readme_example_runs(tmp_path):
    if not os.path.isdir(FASHION_DATA):
        pytest.skip("Fashion-MNIST not installed in " + FASHION_DATA)
    text = open(os.path.join(PKG_ROOT, "README.md")).read()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ, STROP_ROOT=ROOT, STROP_EXAMPLE_STEPS="80",
               STROP_EXAMPLE_OUT=str(tmp_path / "out"),
               PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test accuracy" in r.stdout
    acc = float(re.search(r"test accuracy ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.3, r.stdout  # above chance (0.2) after a few steps
    m = strop.Model.load(tmp_path / "out" / "model.yaml", tmp_path / "out" / "model.safetensors")
    assert m.output_shape == (5,)
