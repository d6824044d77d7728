# Switchboard's image: the hub (receiver, worker) and the sandbox fakes, installed with pip.
# Kafka is not in here: docker-compose.yml runs the official apache/kafka image beside it.
#   docker build -t switchboard .      (or: docker compose up --build)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README.m[d]: copied when present (pyproject names it as the readme), without failing when not
COPY pyproject.toml README.m[d] ./
COPY hub ./hub
COPY connectors ./connectors
COPY sandbox ./sandbox
COPY topics ./topics
COPY schemas ./schemas
RUN pip install . \
 && useradd --create-home --uid 10001 switchboard \
 && mkdir -p /data && chown switchboard /data

USER switchboard
# faust table state (RocksDB); a cache that the worker rebuilds from Kafka when it is lost
ENV SWITCHBOARD_DATA_DIR=/data
CMD ["switchboard", "--help"]
