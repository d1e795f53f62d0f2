# Fake Voice Workbench: one image for the Streamlit app, the training worker and the HTTP API.
# The pinned torch wheel in requirements.txt is the CUDA build; with the NVIDIA container toolkit on
# the host (`docker compose` reserves the GPU for the worker), training uses the GPU automatically.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FAKEVOICE_DATA_DIR=/data/app \
    FAKEVOICE_DATASET_DIR=/data/datasets

# Debian's speech packages (the demo dataset's real voices), curl for the health check, and the
# libraries PyAV, soundfile and espeak-ng need at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722 \
        asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 \
        fillets-ng-data-cs fillets-ng-data-nl \
        curl libsndfile1 libgomp1 procps tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin fakevoice \
    && mkdir -p /data/app /data/datasets && chown -R fakevoice:fakevoice /data

WORKDIR /app
COPY requirements.txt pyproject.toml ./
RUN pip install -r requirements.txt
COPY . .
RUN pip install --no-deps --no-build-isolation . && chown -R fakevoice:fakevoice /app

USER fakevoice
VOLUME ["/data"]
EXPOSE 8501 8000

# The app's own health endpoint; the worker and API services override it in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8501/_stcore/health || exit 1

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["streamlit", "run", "app.py", "--server.port", "8501", "--server.address", "0.0.0.0", \
     "--server.headless", "true", "--browser.gatherUsageStats", "false"]
