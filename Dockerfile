# vmroll's image. vmroll runs its TypeScript sources through tsx (a runtime dependency), so
# there is nothing to compile: the first stage installs the production dependencies and checks
# that every module loads with them alone; the second is a shell-less Node.js runtime that
# only receives the result.

ARG NODE_MAJOR=20

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json ./
COPY bin ./bin
COPY schemas ./schemas
COPY fixtures ./fixtures
COPY reconciler ./reconciler
# `run --help` imports every command and what they import: a dependency missing from
# `dependencies` fails the build here, not in the cluster.
RUN node bin/vmroll.js run --help > /dev/null

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app /app
# The distroless `nonroot` user, by number so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/vmroll.js"]
CMD ["run"]
