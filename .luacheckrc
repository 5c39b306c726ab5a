std = "lua54"
unused_args = false
max_line_length = 120
files["spec"] = { std = "+busted" }
exclude_files = { "bench/node_modules", "bench/corpus" }
-- Scripts that run inside Neovim (LuaJIT, with the vim global).
files["spec/hosts"] = { std = "luajit", read_globals = { "vim" } }
-- The Neovim example runs inside the editor (vim.bo[buf].x = ... sets options).
files["examples/nvim_chat.lua"] = { std = "luajit", globals = { "vim" } }
