#!/usr/bin/env bash
# Every command and sub-command that `lume help` lists answers --help (and
# -h) with exit 0 and a usage line on stdout; a family named without its
# sub-command lists them; an unknown sub-command is a usage error (exit 2).
. "$(dirname "$0")/lib.sh"

"$LUME" help >"$T/help.out"
check "lume help: exit 0" test $? -eq 0
"$LUME" --help >"$T/help2.out"
check "lume --help: the same, exit 0" cmp -s "$T/help.out" "$T/help2.out"
# the command lines: "  NAME [SUB] ...", SUB a lower-case word
sed -n '/^commands:/,/^$/p' "$T/help.out" | awk 'NF && $1 != "commands:" {
  if ($2 ~ /^[a-z]+$/) print $1 " " $2; else print $1 }' | sort -u >"$T/cmds"
check "lume help lists commands and sub-commands" sh -c "[ \$(wc -l <'$T/cmds') -ge 15 ] && grep -qx 'twin set' '$T/cmds' && grep -qx 'fleet status' '$T/cmds' && grep -qx rollout '$T/cmds'"
while read -r cmd; do
  for h in --help -h; do
    # shellcheck disable=SC2086
    "$LUME" $cmd $h >"$T/out" 2>"$T/err"
    rc=$?
    check "lume $cmd $h: exit 0, a usage line on stdout" sh -c "[ $rc -eq 0 ] && grep -q '^usage: lume ${cmd%% *}' '$T/out'"
  done
done <"$T/cmds"
for fam in twin fleet outbox; do
  "$LUME" $fam --help >"$T/out"
  check "lume $fam --help lists its sub-commands" sh -c "[ $? -eq 0 ] && grep -q '^subcommands:' '$T/out'"
  "$LUME" $fam bogus >"$T/out" 2>"$T/err"
  check "lume $fam bogus: exit 2, naming it" sh -c "[ $? -eq 2 ] && grep -q \"unknown subcommand 'bogus'\" '$T/err'"
done
finish
