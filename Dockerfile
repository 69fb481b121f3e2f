# syntax=docker/dockerfile:1
# Multi-stage: build wheels of the project and of its dependencies at the versions locked in
# constraints.txt (regenerate with scripts/lock.sh), then a slim runtime with only those.
FROM python:3.11.16-slim-bookworm AS build
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY realtime ./realtime
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt .

FROM python:3.11.16-slim-bookworm
LABEL org.opencontainers.image.title="realtime" \
      org.opencontainers.image.description="Real-time push server: Kafka/HTTP in, Socket.IO/SSE out"
RUN useradd --system --uid 10001 --no-create-home realtime
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /wheels /wheels
# Offline from the wheels built above: exactly the locked versions, nothing resolved anew.
RUN pip install --no-cache-dir --no-index --find-links=/wheels --constraint /tmp/constraints.txt \
      /wheels/realtime-*.whl \
 && rm -rf /wheels /tmp/constraints.txt
USER 10001
ENV REALTIME_HOST=0.0.0.0 REALTIME_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
# Probes the port the server listens on: REALTIME_PORT as set at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('REALTIME_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["realtime"]
CMD ["serve"]
