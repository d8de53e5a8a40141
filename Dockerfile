# The worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
# The locked dependencies first (a layer that changes only with the lock), with
# hashes and no resolver; then the project itself, without dependencies.
COPY requirements/lock.txt requirements/lock.txt
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/lock.txt
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY telemetry ./telemetry
# Its `telemetry` is a link to ../../telemetry, copied as a link; a build folder from the
# checkout would bring modules deleted since, so it goes first.
COPY packages/jobpilot-telemetry ./packages/jobpilot-telemetry
# /data holds beat's schedule file (a volume in compose); the user must own it.
RUN rm -rf packages/jobpilot-telemetry/build \
  && pip install --no-cache-dir --no-deps ./packages/jobpilot-telemetry . \
  && useradd --create-home jobpilot && install -d -o jobpilot /data
USER jobpilot
ENV METRICS_HOST=0.0.0.0
EXPOSE 9464 9466
CMD ["celery", "-A", "worker", "worker", "-Q", "agents,briefings,scraping,default", "--concurrency", "2"]
