# syntax=docker/dockerfile:1
# Multi-stage: build a wheel with its dependencies, then a slim runtime with only those.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY realtime ./realtime
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="realtime" \
      org.opencontainers.image.description="Real-time push server: Kafka/HTTP in, Socket.IO/SSE out"
RUN useradd --system --uid 10001 --no-create-home realtime
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "realtime==0.1.0" && rm -rf /wheels
USER 10001
ENV REALTIME_HOST=0.0.0.0 REALTIME_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["realtime"]
CMD ["serve"]
