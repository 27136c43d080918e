# syntax=docker/dockerfile:1
# One image for every service; the entrypoint is `onduty`, the command picks the service:
#   docker run IMAGE ingest | processor | topics
# The same `onduty …` commands that `onduty up` runs on a machine without Docker (onduty/stack.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependency layer: rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md ./
COPY schemas ./schemas
COPY onduty ./onduty
COPY ingest ./ingest
COPY processors ./processors
RUN pip install --no-deps . && rm -rf build *.egg-info

# Non-root; the data directories exist in the image so named volumes mounted there inherit the ownership.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin onduty \
    && mkdir -p /data/ingest-spool /data/processor \
    && chown -R onduty:onduty /data
USER onduty
WORKDIR /data
ENV ONDUTY_SPOOL_DIR=/data/ingest-spool \
    ONDUTY_PROCESSOR_DATA_DIR=/data/processor

EXPOSE 8080 6066
ENTRYPOINT ["onduty"]
CMD ["ingest"]
