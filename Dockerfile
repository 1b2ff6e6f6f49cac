# One image for the cloud API, the ingest workers, the migrate step and the simulators.
# The package is installed with pip, non-editable, from pyproject.toml (its pinned
# dependencies); tests/test_layout.py makes sure every package directory is in it.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/kickstand
WORKDIR /src
COPY . .
# pyproject names README.md as the readme; the build needs the file to exist.
RUN test -f README.md || echo "# Kickstand" > README.md \
 && /opt/kickstand/bin/pip install . \
 && /opt/kickstand/bin/python -c "import kickstand.cloud, kickstand.protocol, kickstand.simulators"

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/kickstand/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VAR_DIR=/app/var
COPY --from=build /opt/kickstand /opt/kickstand
RUN useradd --system --uid 10001 --home-dir /app --create-home kickstand \
 && mkdir -p /app/var && chown kickstand /app/var
USER kickstand
WORKDIR /app
EXPOSE 8000
CMD ["python", "-m", "kickstand.cloud", "api"]
