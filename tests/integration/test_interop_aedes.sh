#!/usr/bin/env bash
# The interop smoke (interop_smoke.sh) against aedes.
LUME_TEST_BROKER=aedes
. "$(dirname "$0")/interop_smoke.sh"
