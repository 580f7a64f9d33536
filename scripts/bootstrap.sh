#!/usr/bin/env bash
# Set up a checkout: .venv with ChainSight, its test tools and the optional Faust runtime (its
# tests run too; again when pyproject.toml changed), and the pages (npm ci when
# frontend/package-lock.json changed, a build when the front end changed). `--browser` also
# installs Debian's chromium and chromium-driver, which the browser tests drive, and a font with
# Chinese characters (the pages speak Chinese to a browser that asks for it). A no-op when
# everything is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing ChainSight and its dependencies into .venv (first run takes a minute)" >&2
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,faust]'
    echo "$want" > "$stamp"
fi
# Bytecode, as a pip install leaves it (Python would not write it under PYTHONDONTWRITEBYTECODE,
# and every start of an editable install would compile the package again): only what changed.
.venv/bin/python -m compileall -q chainsight

built=chainsight/api/static/.built
lock=$(sha256sum frontend/package-lock.json | cut -d' ' -f1)
sources=$(find frontend/build.mjs frontend/package.json frontend/package-lock.json frontend/src \
          -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
# the libraries whenever missing or stale, not only to build the pages: the tests read the
# EPCIS schema among them
if [ ! -f frontend/node_modules/.lock ] || [ "$(cat frontend/node_modules/.lock)" != "$lock" ]; then
    command -v npm >/dev/null || scripts/apt-install nodejs npm
    echo "bootstrap: npm ci (the pages' libraries)" >&2
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock" > frontend/node_modules/.lock
fi
if [ ! -f "$built" ] || [ "$(cat "$built")" != "$sources" ]; then
    echo "bootstrap: building the pages" >&2
    (cd frontend && npm run --silent build)
    echo "$sources" > "$built"
fi

if [ "${1:-}" = "--browser" ] && ! { command -v chromium && command -v chromedriver \
        && fc-list :lang=zh | grep -q .; } >/dev/null 2>&1; then
    scripts/apt-install chromium chromium-driver fonts-wqy-microhei
fi
