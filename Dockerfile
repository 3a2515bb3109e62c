# Placeholder until the app issue: a CUDA-ready image that can run the `genrl` CLI on a GPU box.
# The app issue turns this into a served image (non-root user, healthcheck, `genrl serve`).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive MUJOCO_GL=egl PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/genrl
COPY requirements.txt pyproject.toml README.md ./
COPY genrl_core ./genrl_core
COPY app ./app
COPY checkpoints ./checkpoints
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps -e .
ENV PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["genrl"]
CMD ["envs"]
