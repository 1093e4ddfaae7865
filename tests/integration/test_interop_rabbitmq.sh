#!/usr/bin/env bash
# The interop smoke (interop_smoke.sh) against rabbitmq.
LUME_TEST_BROKER=rabbitmq
. "$(dirname "$0")/interop_smoke.sh"
