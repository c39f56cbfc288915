# syntax=docker/dockerfile:1
# extjob service image: `docker build -t extjob .` then `docker run extjob serve`.
# Three stages: compile TypeScript, install production dependencies only, and a small
# runtime image that runs as the unprivileged `node` user.

ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    EXTJOB_HTTP_HOST=0.0.0.0 \
    EXTJOB_HTTP_PORT=8080
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist/src ./dist/src
# The Redis scripts are read at start from src/broker/lua beside dist/.
COPY --chown=root:root src/broker/lua ./src/broker/lua
COPY --chown=root:root package.json ./
USER node
EXPOSE 8080
# The service stops gracefully on SIGTERM within EXTJOB_SHUTDOWN_TIMEOUT_SECONDS (default 30).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.EXTJOB_HTTP_PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve"]
