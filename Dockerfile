# The worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY telemetry ./telemetry
RUN pip install --no-cache-dir . && useradd --create-home jobpilot
USER jobpilot
ENV METRICS_HOST=0.0.0.0
EXPOSE 9464
CMD ["celery", "-A", "worker", "worker", "-Q", "agents,briefings,scraping,default", "--concurrency", "2"]
