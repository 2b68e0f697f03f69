"""`platform/` holds the package but must never shadow the stdlib `platform` module."""

import subprocess
import sys

from support.procs import REPO


def test_platform_is_stdlib_in_this_process():
    import platform

    assert hasattr(platform, "python_version")
    assert "site-packages" not in (platform.__file__ or "") and not platform.__file__.startswith(str(REPO))


def test_platform_is_stdlib_from_repo_root():
    # The repo root first on sys.path, as with `python -m`, pytest or Ray's working_dir.
    code = "import sys; sys.path.insert(0, '.'); import platform; print(platform.__file__); platform.python_version()"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert not out.stdout.strip().startswith(str(REPO)), out.stdout
    assert not (REPO / "platform" / "__init__.py").exists()
