std = "lua54"
unused_args = false
max_line_length = 120
files["spec"] = { std = "+busted" }
exclude_files = { "bench/node_modules", "bench/corpus" }
-- Scripts that run inside Neovim (LuaJIT, with the vim global).
files["spec/hosts"] = { std = "luajit", read_globals = { "vim" } }
