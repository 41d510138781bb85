# One image for every sluice service; the command picks the service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SLUICE_LOG_FORMAT=json
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY devtools ./devtools
COPY bench ./bench
RUN pip install --no-cache-dir . && useradd --system --uid 10001 sluice
USER sluice
ENTRYPOINT ["sluice"]
