#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""strop — the image suite against PIL and torchvision, end to end: gen_images.py writes
images, PIL's decodes, torchvision's transforms and ImageFolder's order into a temporary folder,
then check_data_images runs with STROP_IMG_FIXTURES pointing there. Exits 77 (CTest: skipped)
when PIL, torch or torchvision is missing (`bash .ci/deps --full` installs them).
Usage: run_images.py CHECK_DATA_IMAGES_BINARY"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        print(f"skipped: {e} (bash .ci/deps --full installs python3-pil and python3-torchvision)")
        return 77
    tmp = tempfile.mkdtemp(prefix="strop_img_")
    try:
        subprocess.run([sys.executable, os.path.join(HERE, "gen_images.py"), tmp], check=True)
        env = dict(os.environ, STROP_IMG_FIXTURES=tmp, STROP_IMG_VERBOSE="1")
        return 0 if subprocess.run([sys.argv[1]], env=env).returncode == 0 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
