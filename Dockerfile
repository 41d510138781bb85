# One image for every sluice service; the command picks the service:
#   docker build -t sluice .                  the runtime image (the last stage)
#   docker run sluice ingest|enrich|router|sequencer|admin|fakellm|topics create ...
#   docker build --target demo -t sluice:demo .   the same plus devtools, for `sluice tickets`
#
# Stages: `build` installs the dependencies into a virtualenv from pyproject.toml alone (a
# layer that changes only with the dependency list), then sluice's own code on top; the
# runtime image copies that virtualenv and nothing else: no compiler, no pip cache, no tests,
# no bench, no devtools. No HEALTHCHECK here: the one image runs six services on different
# ports, so each deployment checks its own (compose.yaml: /healthz of admin and fakellm,
# /metrics of the stages; the chart: /healthz and /readyz probes).
# Lint: tests/unit/test_dockerfile.py (hadolint from scripts/hadolint.sh).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/sluice/bin:$PATH
RUN python -m venv /opt/sluice
WORKDIR /src
# The dependencies only: `project.dependencies` of pyproject.toml as a requirements file.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip install --no-cache-dir --requirement requirements.txt
# sluice itself: the runtime packages (setuptools finds only what is copied in).
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --no-deps .

# The demo's producer (`sluice tickets`) lives in devtools, which the runtime image leaves out.
FROM build AS build-demo
COPY devtools ./devtools
RUN pip install --no-cache-dir --no-deps --force-reinstall .

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/sluice/bin:$PATH SLUICE_LOG_FORMAT=json
RUN groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent sluice
WORKDIR /app

FROM base AS demo
COPY --from=build-demo /opt/sluice /opt/sluice
USER 10001:10001
ENTRYPOINT ["sluice"]
CMD ["--help"]

# Last, so a plain `docker build .` (and compose's `build: .`) makes the runtime image.
FROM base AS runtime
COPY --from=build /opt/sluice /opt/sluice
USER 10001:10001
ENTRYPOINT ["sluice"]
CMD ["--help"]
