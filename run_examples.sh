#!/usr/bin/env bash
# Runs the numbered examples in examples2/ (same as `cargo xtask examples`); arguments are passed on.
set -euo pipefail
cd "$(dirname "$0")"
exec cargo xtask examples "$@"
