#!/usr/bin/env bash
# The web console in a real browser: Debian's chromium, headless, driven by
# playwright-core (tests/console/browser_test.js) against a running lume —
# live points reach the charts, the tables fill, the REPL box evaluates, no
# request leaves the device; the screenshot goes to docs/console.png.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mosq.sh"

if [ ! -x /usr/bin/chromium ]; then echo "Bail out! /usr/bin/chromium is missing (make deps)"; exit 1; fi
if [ ! -d "$ROOT/tests/console/node_modules/playwright-core" ]; then
  echo "Bail out! playwright-core is missing (make deps-node)"; exit 1; fi

D="$T/dev"; make_device "$D"
mosq_free_port; PORT=$REPLY
TOKEN=it-token-$RANDOM$RANDOM
{ sed '$d' "$D/lume.conf.lua"
  echo "  console = { listen = \"127.0.0.1:$PORT\", token = \"$TOKEN\", dir = \"$ROOT/console\" },"
  echo "}"; } >"$T/console.lua"
start_bg lume "$LUME" run --config "$T/console.lua" --quiet
PID=$LAST_PID
check "lume serves the console" wait_for 10 bash -c "(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null"
SHOT=${CONSOLE_SCREENSHOT:-$ROOT/docs/console.png}
(cd "$ROOT/tests/console" && timeout 120 node browser_test.js "http://127.0.0.1:$PORT/?token=$TOKEN" "$SHOT") \
  >"$T/browser.out" 2>&1
rc=$?
while IFS= read -r line; do
  case "$line" in
    "ok "*) ok "${line#ok * - }" ;;
    "not ok "*) not_ok "${line#not ok * - }" ;;
    "#   "*) echo "$line" ;;
  esac
done <"$T/browser.out"
[ "$rc" = 0 ] || not_ok "browser_test.js exits 0" "$(tail -5 "$T/browser.out")"
check "lume is still running" kill -0 "$PID"
finish
