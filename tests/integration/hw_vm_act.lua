-- tests/integration/hw_vm_act.lua — the script of the real-kernel test
-- (test_hw_vm.sh) that drives the board's outputs (hw_vm_board.lua): each
-- set once at load, away from its fail-safe. The VM's init makes the broken
-- version by appending an error: the same sets, then a failure at load, so
-- lume rolls it back and writes the fail-safes. Lines ending in
-- "-- gpio-sim" go when the kernel has no gpio-sim, as in the board.
assert(assert(lume.output("setpoint")):set(21.5))
assert(assert(lume.output("led")):set(1)) -- gpio-sim
assert(assert(lume.output("valve")):set(0)) -- gpio-sim
