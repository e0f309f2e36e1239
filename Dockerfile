# vmroll's image, in three stages. The first compiles the TypeScript sources to JavaScript
# (dist/) with the dev dependencies; the second installs the production dependencies alone and
# gathers what runs: dist/, bin/, package.json and the files vmroll reads at run time; the third
# is a shell-less Node.js runtime that only receives the result. No TypeScript source, no
# TypeScript compiler and no tsx reach the image.

# The compiling and gathering stages run the same Node.js line as the runtime (the newest LTS).
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS compile
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: `prepare` (npm run build) would run before the sources are here, and no
# dependency needs an install script to compile.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY schemas/generated ./schemas/generated
COPY reconciler ./reconciler
RUN npm run build

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=compile /app/dist ./dist
COPY bin ./bin
COPY schemas/virtualmachine.schema.json schemas/vmplan.schema.json schemas/vmroll-config.schema.json ./schemas/
COPY fixtures/example-repo ./fixtures/example-repo
COPY fixtures/example-cluster ./fixtures/example-cluster
# Commands load their modules only when they run, so import every compiled module here, with
# the production dependencies alone: a dependency missing from `dependencies` fails the build
# here, not in the cluster. Then the CLI itself answers.
RUN node --input-type=module -e "import { readdirSync } from 'node:fs'; for (const f of readdirSync('dist', { recursive: true })) if (f.endsWith('.js')) await import('/app/dist/' + f);" \
 && node bin/vmroll.js --version

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app /app
# The distroless `nonroot` user, by number so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/vmroll.js"]
CMD ["run"]
