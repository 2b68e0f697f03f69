"""`make install-cpu` on a fresh machine: the CPU torch (a `+cpu` local version, which PyPI
does not serve) comes from PyTorch's CPU index when the configured index lacks it. Run
against two local indexes, with the real Makefile recipe and stand-in packages."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from support.procs import REPO


def wheel(index: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A minimal pure-Python wheel in a PEP 503 file index."""
    folder = index / name
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}.dist-info/METADATA": meta,
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{f},,\n" for f in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for f, text in {**files, f"{dist}.dist-info/RECORD": record}.items():
            z.writestr(f, text)
    links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in sorted(folder.glob("*.whl")))
    (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


FALLBACK = "the CPU torch is not on the configured index: trying again with "


def install_cpu(tmp_path: Path, name: str, index: Path, torch_index: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The Makefile's install-cpu recipe into a new venv, pip configured with ``index`` only."""
    venv = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (venv / ".rota-base").touch()  # the control plane's own install is not what is tested here
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": index.as_uri(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cmd = [
        "make",
        "-C",
        str(REPO),
        "install-cpu",
        f"VENV={venv}",
        "CPU_REQS=rota-fake-vllm-cpu",
        f"TORCH_CPU_INDEX={torch_index}",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300), venv


def torch_in(venv: Path) -> str:
    code = "import rota_fake_torch as t; print(t.VERSION)"
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True).stdout.strip()


def said(run: subprocess.CompletedProcess, line: str) -> bool:
    return any(out.startswith(line) for out in run.stdout.splitlines())  # not make's echo of the recipe


def test_the_cpu_torch_falls_back_to_the_pytorch_index(tmp_path):
    default, cpu = tmp_path / "default-index", tmp_path / "pytorch-cpu-index"
    wheel(default, "rota-fake-vllm-cpu", "1.0", ("rota-fake-torch==2.13.0+cpu",))
    wheel(default, "rota-fake-torch", "2.13.0")  # what PyPI has: no +cpu build
    wheel(cpu, "rota-fake-torch", "2.13.0+cpu")
    run, venv = install_cpu(tmp_path, "fresh", default, cpu.as_uri())
    assert run.returncode == 0, run.stdout + run.stderr
    assert said(run, FALLBACK) and torch_in(venv) == "2.13.0+cpu" and (venv / ".rota-cpu").exists()

    # Where the configured index (or a local wheel folder) has it, no fallback is taken.
    wheel(default, "rota-fake-torch", "2.13.0+cpu")
    run, venv = install_cpu(tmp_path, "local-wheel", default, "file:///nowhere")
    assert run.returncode == 0 and not said(run, FALLBACK), run.stdout + run.stderr
    assert torch_in(venv) == "2.13.0+cpu"

    # Neither has it: the install fails, and says so (no stamp: the next make tries again).
    run, venv = install_cpu(tmp_path, "nowhere", tmp_path / "empty", "file:///nowhere")
    assert run.returncode != 0 and said(run, FALLBACK) and not (venv / ".rota-cpu").exists()
