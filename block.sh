lua5.4 /usr/bin/busted --lpath='stdlib/?.lua;stdlib/?/init.lua' tests/lua/stdlib_*_spec.lua
