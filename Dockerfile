# GenRL app for a GPU box: `genrl serve` (REST API + UI) on the shipped walker bundle.
#   docker build -t genrl .
#   docker run --gpus all -p 7860:7860 -v genrl-data:/data genrl
# The CUDA runtime ships inside the torch wheel (PyPI's Linux torch build is the CUDA one), so a
# slim Python base is enough; the NVIDIA container toolkit mounts the driver, including its EGL
# library when NVIDIA_DRIVER_CAPABILITIES has "graphics", which MuJoCo uses for headless rendering.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MUJOCO_GL=egl \
    PYOPENGL_PLATFORM=egl \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    GRADIO_ANALYTICS_ENABLED=False \
    GENRL_DEVICE=auto \
    GENRL_RUNS=/data \
    GENRL_DB=/data/jobs.sqlite

# EGL/GL loaders (libglvnd) for MuJoCo; Mesa as the CPU fallback when no GPU is given.
# Versions come from the pinned Debian release of the base image (bookworm).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libegl1 libgl1 libglvnd0 libegl-mesa0 libgl1-mesa-dri libosmesa6 \
    && rm -rf /var/lib/apt/lists/*

# The vendor file that points glvnd at the driver's EGL library (the toolkit mounts the library).
RUN mkdir -p /usr/share/glvnd/egl_vendor.d \
    && printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libEGL_nvidia.so.0"}}\n' \
        > /usr/share/glvnd/egl_vendor.d/10_nvidia.json

RUN useradd --create-home --uid 1000 genrl \
    && mkdir -p /data && chown genrl:genrl /data
WORKDIR /opt/genrl

# Dependencies first: this layer is rebuilt only when the pins change.
COPY requirements.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements.txt
ENV PATH=/opt/venv/bin:$PATH

COPY pyproject.toml README.md ./
COPY genrl_core ./genrl_core
COPY app ./app
COPY checkpoints ./checkpoints
# Editable, so genrl_core finds checkpoints/experts (normalised scores) beside it in /opt/genrl.
RUN pip install --no-deps -e . \
    && python -c "import app.main, genrl_core.agent"

USER 1000:1000
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/health', timeout=4)"]
# Set GENRL_API_TOKEN to require a token for starting and cancelling jobs on a public box.
ENTRYPOINT ["genrl", "serve", "--host", "0.0.0.0", "--port", "7860"]
CMD []
