#!/bin/sh
# Generates the Prisma client (prisma/schema.prisma -> generated/client) offline.
#
# Every Prisma CLI command first makes sure the schema-engine binary is present and
# downloads it otherwise, which fails without network access. `prisma generate` never runs
# that binary, so pointing PRISMA_SCHEMA_ENGINE_BINARY at a stub skips the download.
# Quiet on success; prints the CLI's output and fails otherwise.
set -eu
cd "$(dirname "$0")"
stub="$(pwd)/node_modules/.cache/schema-engine-stub"
mkdir -p "$(dirname "$stub")"
printf '#!/bin/sh\necho "schema-engine stub (tests/e2e/prisma/generate.sh): not available offline" >&2\nexit 1\n' >"$stub"
chmod +x "$stub"
out=$(PRISMA_SCHEMA_ENGINE_BINARY="$stub" PRISMA_HIDE_UPDATE_MESSAGE=1 \
      CHECKPOINT_DISABLE=1 PRISMA_DISABLE_WARNINGS=1 \
      node node_modules/prisma/build/index.js generate --schema prisma/schema.prisma 2>&1) || {
  printf '%s\n' "$out" >&2
  echo "prisma generate failed (tests/e2e/prisma/generate.sh)" >&2
  exit 1
}
test -f generated/client/index.js || {
  printf '%s\n' "$out" >&2
  echo "prisma generate did not write generated/client/index.js" >&2
  exit 1
}
