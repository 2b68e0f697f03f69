# Ray worker for GPU nodes: CUDA vLLM + Ray Serve + Rota's serve_apps/.
# Build (from the repo root):  docker build -f images/worker-gpu.Dockerfile -t rota-worker-gpu .
# The base image ships CUDA, PyTorch and vLLM built for it; only Ray and the apps are added.
FROM vllm/vllm-openai:v0.32.0

# Same versions as pyproject.toml's `gpu` extra and the control plane. vLLM is named with
# Ray so that pip resolves Ray's dependencies (fastapi, starlette, pydantic) against
# vLLM's pins instead of moving them under it.
RUN pip install --no-cache-dir "vllm==0.32.0" "ray[serve]==2.60.0"

COPY serve_apps/ /opt/rota/serve_apps/
# Ray Serve imports `serve:app` by module name: serve_apps/ must be on the path of every worker.
ENV PYTHONPATH=/opt/rota/serve_apps
WORKDIR /opt/rota
ENTRYPOINT []
# KubeRay supplies the `ray start` command; by hand:
#   docker run --gpus all --shm-size 8g rota-worker-gpu ray start --address=<head>:6379 --block
CMD ["bash"]
