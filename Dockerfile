# htcgrid's image: the `htcgrid` command (server, agent, and the clients of examples/).
#   docker build -t REGISTRY/htcgrid:TAG .                        # PostgreSQL and Redis backends
#   docker build --build-arg EXTRAS=postgres,redis,quantlib -t REGISTRY/htcgrid:TAG .
# Runs as a non-root user with a read-only root filesystem: mount writable volumes at /tmp and
# at the agent's --cache-dir (deploy/kubernetes does both).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=postgres,redis
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY htcgrid ./htcgrid
RUN python -m venv /opt/htcgrid \
    && /opt/htcgrid/bin/pip install ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --gid 10001 htcgrid \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin htcgrid
COPY --from=build /opt/htcgrid /opt/htcgrid
COPY examples /opt/htcgrid/examples
ENV PATH=/opt/htcgrid/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["htcgrid"]
CMD ["--help"]
