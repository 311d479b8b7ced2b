# One instance of Server Jobs. It needs a PostgreSQL server (DATABASE_URL): in a container the
# embedded one is no use, since its data would die with the container. See docker-compose.yml.
FROM node:20-slim

WORKDIR /app
# Dependencies first, so that editing the sources does not reinstall them. patches/ comes with
# them: npm ci's postinstall (patch-package, a production dependency) applies the postgres.js
# patch, and without the directory it would apply nothing and the image would run the unpatched
# driver, which crashes on a database restart (test/patches.test.ts checks an install has it).
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev && npm cache clean --force
COPY . .
# The JavaScript `npm start` runs (dist/, from src/), built now: at start the build finds it current
# and writes nothing (the service runs as `node`, who could not write here).
RUN npm run build

# In a container the API must listen beyond loopback; publish its port to 127.0.0.1 only on the
# host while the API has no authentication (see docker-compose.yml).
ENV HOST=0.0.0.0 \
    PORT=4000
EXPOSE 4000
USER node

# What `npm start` runs, without npm (whose `sh -c` would not pass SIGTERM on): the Node version
# check, the build if the sources changed (never, in the image), then `exec`, so that node
# replaces the shell and `docker stop` reaches the service, which drains its runs
# (SHUTDOWN_GRACE_SECONDS) before it exits. Run with an init (compose: `init: true`) to reap
# processes.
CMD ["sh", "-c", "node src/check-node.mjs && node scripts/build.mjs --if-stale && exec node --enable-source-maps dist/main.js"]
