#!/usr/bin/env bash
# The action's install step: rolloutctl from $INSTALL (a pip requirement, e.g.
# "rolloutctl==0.2.0"), or from the action's own checkout ($ACTION_PATH), with $EXTRAS.
set -euo pipefail
target="${INSTALL:-${ACTION_PATH:?}}"
if [[ -n "${EXTRAS:-}" ]]; then
  target="${target}[${EXTRAS}]"
fi
python3 -m pip install --quiet "$target"
rolloutctl --version
