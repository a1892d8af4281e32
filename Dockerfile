# weir: one image for every role (`controller`, `worker`, `api`, `up`); the command picks the role.
# Build: docker build -t weir .    Run: see docker-compose.yml.

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The lockfile's dev dependencies include the TypeScript compiler; `prepare` would build before the sources are here.
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY machines ./machines
COPY src ./src
# The console's build reads the lifecycle diagram code (scripts/) and bundles the example pipelines.
COPY scripts ./scripts
COPY examples ./examples
COPY console ./console
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY bin ./bin
COPY examples ./examples
COPY --from=build /app/dist ./dist
USER node
# `weir api` (docker-compose.yml sets WEIR_API_HOST=0.0.0.0, which needs WEIR_API_TOKEN).
EXPOSE 8000
ENTRYPOINT ["node", "bin/weir.js"]
CMD ["help"]
