-- /etc/lume/lume.conf.lua — the configuration of the lume service
-- (lume.service runs `lume run --config /etc/lume/lume.conf.lua --store
-- /var/lib/lume`). Every key, its default and meaning: `lume config`.
-- Relative paths here are relative to this file's folder (/etc/lume).
-- `make install` writes this file only when there is none; the .deb ships it
-- as a conffile (your edits survive upgrades).
return {
  -- device_id = "pump-7",          -- default: the host name
  board = "sim",                    -- boards_dir/NAME.lua, or a path ("boards/mine.lua")
  -- boards_dir, stdlib_dir, scripts_dir: default to the installed ones
  -- (DATADIR/boards, DATADIR/stdlib, DATADIR/scripts; `lume config` shows DATADIR).
  -- Your own edge scripts, in /etc/lume/scripts:
  -- scripts_dir = "scripts",
  status_interval_ms = 0,           -- no status line: systemd's STATUS= has it
  -- net = { url = "mqtts://broker.example.com:8883", ca_file = "ca.pem" },
}
