# syntax=docker/dockerfile:1.7
# CPU image by default. For a CUDA image build with:
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 \
#                --build-arg FAISS_PACKAGE=faiss-gpu-cu12 .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS runtime

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG FAISS_PACKAGE=faiss-cpu

# NUMBA_CACHE_DIR: the lexicon's compiled top-k kernel (models/bm25_maxscore.py) is cached in the
# data volume, which the service user can write (site-packages it cannot), so it compiles once.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DATA_DIR=/data \
    DEFAULT_MATCHER=/app/artefacts/default-matcher \
    NUMBA_CACHE_DIR=/data/.numba-cache \
    PORT=8000

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 productmatch

WORKDIR /app
# torch first and pinned, from the CPU (or CUDA) wheel index, so the project's range never pulls another build.
RUN python -m pip install --no-cache-dir "pip==25.3" \
    && python -m pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY models ./models
COPY training ./training
COPY migrations ./migrations
# The shipped default matcher (artefacts/default-matcher/README.md): served at start-up when no
# matcher is promoted; the installed package cannot find it beside app/, hence DEFAULT_MATCHER.
COPY artefacts ./artefacts
# The project depends on faiss-cpu; a GPU image swaps it for the CUDA build (same module name).
# hadolint ignore=DL3013
RUN python -m pip install --no-cache-dir . \
    && if [ "${FAISS_PACKAGE}" != "faiss-cpu" ]; then \
         python -m pip uninstall -y faiss-cpu && python -m pip install --no-cache-dir "${FAISS_PACKAGE}"; \
       fi \
    && mkdir -p /data && chown productmatch:productmatch /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${PORT}/healthz || exit 1"]
CMD ["sh", "-c", "productmatch serve --host 0.0.0.0 --port ${PORT}"]
