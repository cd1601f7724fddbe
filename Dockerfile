# tezgah: API (and, with the job system, workers) on Debian with FreeCAD from Debian.
# Not built in this project's CI (no Docker engine on its machines); kept small on purpose.
FROM python:3.11-slim-bookworm

# FreeCAD 0.20 from Debian: the CAM engine runs inside worker processes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends freecad-python3 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 tezgah
WORKDIR /app

COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
# Editable: Alembic finds migrations/ next to src/, as in a checkout.
RUN pip install --no-cache-dir -e ".[tracing]"

USER tezgah
ENV TEZGAH_VAR_DIR=/home/tezgah/var \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["sh", "-c", "tezgah db upgrade && exec tezgah serve --host 0.0.0.0 --port 8000 --workers ${TEZGAH_WORKERS:-2} --proxy-headers"]
