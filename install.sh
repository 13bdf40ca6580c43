#!/usr/bin/env bash
# The README's install command: everything its test command needs, as CI installs it (.ci/run runs this
# script, then the README's test command). Run it from anywhere; it installs into the current Python.
set -euo pipefail
cd "$(dirname "$0")"
# torch first, pinned as CI runs it (the package itself takes any torch >= 2.4: keep your CUDA build elsewhere)
pip install torch==2.13.0
pip install -e ".[dev]"
# lmms-eval and VLMEvalKit go in without their requirements, which pull torchvision (several GB of CUDA
# torch); what they import is in the [lmms] and [vlmeval] extras, part of [dev]
pip install --no-deps lmms-eval==0.7.3 ms-vlmeval==0.0.20
# the browser test drives the system's Chromium (Playwright's own download needs more than the registries)
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null) \
        || echo "could not install Chromium: the browser test will be skipped" >&2
fi
