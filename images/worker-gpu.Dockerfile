# Ray worker for NVIDIA GPU nodes: vLLM (CUDA) + Ray Serve + Rota's serve_apps/.
# Build (from the repo root):  make images   (or: docker build -f images/worker-gpu.Dockerfile .)
# Built on the same Python image as the head and the CPU workers, not on vLLM's own image
# (which brings its own Python): Ray refuses a node whose Python differs from the head's,
# to the patch level. vLLM's wheel brings CUDA's user-space libraries (torch's nvidia-*
# wheels); the driver comes from the host through the NVIDIA container runtime.
# PYTHON_VERSION, RAY_VERSION and VLLM_VERSION come from pyproject.toml's [tool.rota.images].
ARG PYTHON_VERSION=3.11.14
FROM python:${PYTHON_VERSION}-slim
ARG RAY_VERSION=2.60.0
ARG VLLM_VERSION=0.32.0

# g++ + libc headers: Triton and torch.compile build small C/C++ stubs on first use.
# wget: KubeRay's readiness probes. Not pinned: Debian's versions move with the (pinned) base image, and old ones leave the mirror.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends wget g++ libc6-dev libnuma1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 ray \
    && mkdir -p /home/ray/.cache/huggingface && chown -R 1000:1000 /home/ray/.cache
# vLLM and Ray in one resolve: Ray's own dependencies (fastapi, starlette, pydantic) are
# taken at the versions vLLM pins, not moved under it.
RUN pip install --no-cache-dir "vllm==${VLLM_VERSION}" "ray[serve]==${RAY_VERSION}"

COPY serve_apps/ /opt/rota/serve_apps/
ENV PYTHONPATH=/opt/rota/serve_apps \
    HF_HOME=/home/ray/.cache/huggingface
USER 1000
WORKDIR /home/ray
# KubeRay supplies the `ray start` command; by hand:
#   docker run --gpus all --shm-size 8g rota-worker-gpu:0.1.0 ray start --address=<head>:6379 --block
CMD ["bash"]
