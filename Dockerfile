# Mirage on a CUDA GPU. Weights are not baked in: mount them at /app/models
# (or set MIRAGE_MODELS_DIR); see README "Weights".
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
      libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip "setuptools<81" wheel \
 && pip install torch --index-url https://download.pytorch.org/whl/cu124

COPY pyproject.toml README.md ./
COPY mirage ./mirage
COPY web ./web
COPY server.py ./
RUN pip install -e ".[gpu]"

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:7860/health || exit 1
# Expose on all interfaces inside the container; ICE host = the pod/host address.
CMD ["python", "server.py", "--host", "0.0.0.0"]
