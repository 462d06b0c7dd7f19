# Mirage on a CUDA GPU (one container per GPU; see deploy/ for compose, Kubernetes,
# nginx in front of several). Weights are not baked in: mount them at /app/models
# (a volume; or set MIRAGE_MODELS_DIR); see README "Weights".
#   docker build -t mirage .
#   docker run --gpus '"device=0"' -p 7860:7860 -p 50000-50099:50000-50099/udp \
#     -v $PWD/models:/app/models:ro -e MIRAGE_ICE_HOSTS=<host address> mirage
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
      libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the CUDA 12.4 index, so the extras below never pull a CPU build.
RUN pip install --upgrade pip "setuptools<81" wheel \
 && pip install torch --index-url https://download.pytorch.org/whl/cu124

COPY pyproject.toml README.md ./
COPY mirage ./mirage
COPY web ./web
COPY server.py ./
RUN pip install -e ".[gpu]"

# Run as an unprivileged user: it owns its home (caches) and the weights folder
# (a read-only mount works too), nothing else in the image.
RUN useradd --system --uid 10001 --create-home --home-dir /home/mirage \
      --shell /usr/sbin/nologin mirage \
 && mkdir -p /app/models \
 && chown mirage:mirage /app/models
VOLUME ["/app/models"]
USER mirage

# HTTP on all interfaces inside the container. Media: ICE host candidates use UDP
# ports from MIRAGE_UDP_PORTS (publish the same range); set MIRAGE_ICE_HOSTS to the
# address clients reach (the host's, with host networking) or use STUN/TURN.
ENV MIRAGE_HOST=0.0.0.0 \
    MIRAGE_PORT=7860 \
    MIRAGE_UDP_PORTS=50000-50099
EXPOSE 7860/tcp 50000-50099/udp
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${MIRAGE_PORT}/health" || exit 1
CMD ["python", "server.py"]
