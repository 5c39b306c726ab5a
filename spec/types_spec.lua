-- types/fetchstream.lua (the LuaCATS definitions for lua-language-server)
-- must keep up with the library: whatever the module, its C method tables,
-- its option checks and the README expose is typed, on the right class.
-- Only that direction is checked: the definitions may type more (what
-- DESIGN.md promises and is not built yet, such as fetch.chat).
local h = require "spec.helpers"

local TYPES = "types/fetchstream.lua"

local read = h.read

-- A small reader of LuaCATS: classes with their parents, fields and
-- functions (with the doc block above each function), and string aliases.
local function parse_types(text)
  local model = { classes = {}, aliases = {} }
  local vars = {}        -- local name -> class it was declared as
  local class, block = nil, {}
  local pending_class    -- a ---@class waiting for its `local X = {}`
  local alias            -- the alias whose `---|` lines follow

  local function get_class(name)
    local c = model.classes[name]
    if not c then
      c = { name = name, fields = {}, functions = {} }
      model.classes[name] = c
    end
    return c
  end

  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    if line:find("^%-%-%-") then
      block[#block + 1] = line
      local name, parent = line:match("^%-%-%-@class%s+([%w_.]+)%s*:?%s*([%w_.]*)")
      if name then
        class, alias = get_class(name), nil
        if parent ~= "" then class.parent = parent end
        pending_class = name
      end
      local fname, opt, ftype = line:match("^%-%-%-@field%s+([%a_][%w_]*)(%??)%s+(.*)$")
      if not fname then
        fname, opt, ftype = line:match('^%-%-%-@field%s+%["([^"]+)"%](%??)%s+(.*)$')
      end
      if fname and class then
        class.fields[fname] = { type = ftype, optional = opt == "?" }
      end
      local aname, inline = line:match("^%-%-%-@alias%s+([%w_.]+)%s*(.*)$")
      if aname then
        alias = { literals = {} }
        model.aliases[aname] = alias
        for lit in inline:gmatch('"([^"]*)"') do alias.literals[lit] = true end
      end
      local lit = line:match('^%-%-%-|%s*"([^"]*)"')
      if lit and alias then alias.literals[lit] = true end
    else
      local var = line:match("^local%s+([%a_][%w_]*)%s*=%s*{%s*}")
      if var and pending_class then vars[var] = pending_class end
      local owner, sep, fn = line:match("^function%s+([%a_][%w_]*)([.:])([%a_][%w_]*)%s*%(")
      if owner and vars[owner] then
        get_class(vars[owner]).functions[fn] = { method = sep == ":", doc = block }
      end
      if line:find("%S") then
        pending_class, block = nil, {}
        if not line:find("^%-%-") then alias = nil end
      end
    end
  end
  return model
end

-- Look a field or function up on a class and its parents.
local function lookup(model, class_name, kind, name)
  local c = model.classes[class_name]
  while c do
    if c[kind][name] then return c[kind][name], c.name end
    c = c.parent and model.classes[c.parent]
  end
  return nil
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function upvalue(fn, wanted)
  for i = 1, math.huge do
    local name, value = debug.getupvalue(fn, i)
    if name == nil then return nil end
    if name == wanted then return value end
  end
end

-- The names of a `local NAME = { key = ..., }` table in a Lua source file,
-- for when the table cannot be reached at run time.
local function table_keys_in_source(path, name)
  local src = read(path)
  local body = src:match("\nlocal%s+" .. name .. "%s*=%s*(%b{})")
  assert(body, ("no table %s in %s"):format(name, path))
  local keys = {}
  for key in body:gmatch("\n%s*([%a_][%w_]*)%s*=") do keys[key] = true end
  return keys
end

local function module_path(name)
  return assert(package.searchpath(name, package.path))
end

describe("types/fetchstream.lua", function()
  local fetch, core, text, model

  setup(function()
    fetch = require "fetchstream"
    core = require "fetchstream.core"
    text = read(TYPES)
    model = parse_types(text)
  end)

  local function class(name)
    local c = model.classes[name]
    assert(c, "types/fetchstream.lua has no ---@class " .. name)
    return c
  end

  -- Assert that `name` is typed as a method (function C:name) on the class.
  local function assert_method(class_name, name)
    class(class_name)
    local fn, owner = lookup(model, class_name, "functions", name)
    assert(fn, ("%s:%s is not typed"):format(class_name, name))
    assert(fn.method, ("%s.%s is typed with '.': make it %s:%s"):format(owner, name, owner, name))
  end

  local function assert_field(class_name, name)
    class(class_name)
    assert(lookup(model, class_name, "fields", name),
      ("%s has no ---@field %s"):format(class_name, name))
  end

  it("is valid Lua and a ---@meta file that cannot shadow the module", function()
    local chunk, err = loadfile(TYPES, "t")
    assert(chunk, err)
    assert.are.equal("---@meta fetchstream", text:match("^[^\n]*"))
    -- Running it only declares tables and empty functions.
    assert.are.equal("table", type(chunk()))
    -- The module found on package.path is the real one, not types/.
    assert.is_nil(module_path("fetchstream"):find("types/", 1, true))
  end)

  it("types everything the module exports", function()
    local mod = class("fetchstream")
    local missing = {}
    for _, name in ipairs(sorted_keys(fetch)) do
      local fn, field = mod.functions[name], mod.fields[name]
      if type(fetch[name]) == "function" then
        if fn then
          assert.is_false(fn.method, "fetchstream." .. name .. " is a function, not a method")
        elseif not field then
          missing[#missing + 1] = name
        end
      elseif not field then
        missing[#missing + 1] = name
      end
    end
    assert.are.same({}, missing, "exported by fetchstream but not typed")
  end)

  it("types every method of the Stream and Client classes", function()
    local Stream = require("fetchstream.stream").Stream
    local Client = getmetatable(fetch.client()).__index
    for _, spec in ipairs({ { Stream, "fetchstream.Stream" }, { Client, "fetchstream.Client" } }) do
      local methods, class_name = spec[1], spec[2]
      assert.is_true(next(methods) ~= nil, class_name .. " has no methods at run time?")
      for _, name in ipairs(sorted_keys(methods)) do
        if not name:find("^_") and type(methods[name]) == "function" then -- _start, __close: not API
          assert_method(class_name, name)
        end
      end
    end
  end)

  it("types every method of the parser and of events", function()
    local p = fetch.parser()
    local index = getmetatable(p).__index
    local methods = type(index) == "table" and index or select(2, debug.getupvalue(index, 1))
    assert.are.equal("table", type(methods), "cannot reach the parser's methods")
    for _, name in ipairs(sorted_keys(methods)) do assert_method("fetchstream.Parser", name) end
    assert_field("fetchstream.Parser", "last_event_id")
    assert_field("fetchstream.Parser", "retry")

    for _, name in ipairs(sorted_keys(core.Event.__index)) do assert_method("fetchstream.Event", name) end
    local seen = 0
    for ev in p:feed("event: e\nid: 1\ndata: x\n\n") do
      for key in pairs(ev) do assert_field("fetchstream.Event", key) end
      seen = seen + 1
    end
    assert.are.equal(1, seen)
    p:close()
  end)

  -- The option checks of fetch.open/events/... (PULL_SPEC) and fetch.stream
  -- (CALLBACK_SPEC): reached through request.build's upvalues, else read
  -- from request.lua's source.
  local function option_specs()
    local request = require "fetchstream.request"
    local pull = request.REQUEST_OPTIONS or upvalue(request.build, "PULL_SPEC")
    local callbacks = request.CALLBACK_OPTIONS
    if type(pull) ~= "table" then
      pull = table_keys_in_source(module_path("fetchstream.request"), "REQUEST_OPTIONS")
    end
    if type(callbacks) ~= "table" then
      callbacks = table_keys_in_source(module_path("fetchstream.request"), "CALLBACK_OPTIONS")
    end
    return pull, callbacks
  end

  it("types every request option on RequestOptions", function()
    local pull = option_specs()
    assert.is_true(next(pull) ~= nil)
    for _, name in ipairs(sorted_keys(pull)) do
      local field, owner = lookup(model, "fetchstream.RequestOptions", "fields", name)
      assert(field, "option '" .. name .. "' is not typed on fetchstream.RequestOptions")
      assert.are.equal("fetchstream.RequestOptions", owner)
      assert.is_true(field.optional, "option '" .. name .. "' must be optional (name?)")
    end
    -- The fields of `reconnect = { ... }`, when its check keeps them in a table.
    local fields = type(pull.reconnect) == "function" and upvalue(pull.reconnect, "RECONNECT_FIELDS")
    for _, name in ipairs(sorted_keys(type(fields) == "table" and fields or {})) do
      assert_field("fetchstream.ReconnectOptions", name)
    end
  end)

  it("types every callback option on CallbackOptions, not on RequestOptions", function()
    local _, callbacks = option_specs()
    assert.is_true(next(callbacks) ~= nil)
    local parent = class("fetchstream.CallbackOptions").parent
    assert.are.equal("fetchstream.RequestOptions", parent, "CallbackOptions must extend RequestOptions")
    for _, name in ipairs(sorted_keys(callbacks)) do
      local field, owner = lookup(model, "fetchstream.CallbackOptions", "fields", name)
      assert(field, "callback option '" .. name .. "' is not typed on fetchstream.CallbackOptions")
      -- fetch.open & co. reject these: they must not be typed as request options.
      assert.are.equal("fetchstream.CallbackOptions", owner, "'" .. name .. "' is typed on " .. owner)
      assert.is_true(field.optional, "option '" .. name .. "' must be optional (name?)")
    end
  end)

  it("types every parser option on ParserOptions", function()
    local opts = upvalue(fetch.parser, "PARSER_OPTIONS")
    if type(opts) ~= "table" then
      opts = table_keys_in_source(module_path("fetchstream"), "PARSER_OPTIONS")
    end
    assert.is_true(next(opts) ~= nil)
    for _, name in ipairs(sorted_keys(opts)) do assert_field("fetchstream.ParserOptions", name) end
  end)

  it("gives each option the type its check accepts", function()
    local options = require "fetchstream.options"
    local expected = {
      [options.seconds] = "^number",
      [options.string] = "^string",
      [options.boolean] = "^boolean",
      [options.positive_integer] = "^integer",
      [options.callable] = "^fun%(",
    }
    local specs = { { "fetchstream.CallbackOptions", upvalue(require("fetchstream.request").build, "CALLBACK_SPEC") },
                    { "fetchstream.ParserOptions", upvalue(fetch.parser, "PARSER_OPTIONS") } }
    local checked = 0
    for _, spec in ipairs(specs) do
      local class_name, checks = spec[1], spec[2]
      for name, check in pairs(type(checks) == "table" and checks or {}) do
        local pattern = expected[check]
        local field = lookup(model, class_name, "fields", name)
        if pattern and field then
          assert(field.type:find(pattern), ("%s.%s is typed %q; its check wants %s"):format(
            class_name, name, field.type:match("^%S+"), pattern))
          checked = checked + 1
        end
      end
    end
    if checked == 0 then pending("the option checks are not reachable at run time") end
  end)

  it("types the iterators as the 4 values of a generic for, as the library returns them", function()
    local c = fetch.client()
    local names = { "events", "chunks", "lines" }
    if c.ndjson then names[#names + 1] = "ndjson" end
    local items = { events = "fetchstream.Event?", chunks = "string?", lines = "string?", ndjson = "any" }
    for _, name in ipairs(names) do
      -- Port 1 refuses at once; the stream is closed before anything is read.
      local r = table.pack(c[name](c, "http://127.0.0.1:1/"))
      local iter, s, control, closing = table.unpack(r, 1, 4)
      assert.are.equal(4, r.n)
      assert.are.equal("function", type(iter))
      assert.are.equal(s, closing)
      assert.is_nil(control)
      s:close()
      for _, owner in ipairs({ "fetchstream", "fetchstream.Client" }) do
        local fn = assert(model.classes[owner].functions[name], owner .. "." .. name)
        local returns = {}
        for _, line in ipairs(fn.doc) do
          local ret = line:match("^%-%-%-@return%s+(.-)%s*$")
          if ret then returns[#returns + 1] = ret end
        end
        assert.are.equal(4, #returns, owner .. "." .. name .. " must type 4 returns")
        assert.are.equal("fun(s: fetchstream.Stream): " .. items[name] .. " iter", returns[1])
        assert.are.equal("fetchstream.Stream state", returns[2])
        assert.are.equal("fetchstream.Stream closing", returns[4])
      end
    end
    c:close()
    for _, name in ipairs({ "events", "chunks", "lines" }) do
      local fn = class("fetchstream.Stream").functions[name]
      local first
      for _, line in ipairs(fn.doc) do first = first or line:match("^%-%-%-@return%s+(.-)%s*$") end
      assert.are.equal("fun(s: fetchstream.Stream): " .. (name == "events" and "fetchstream.Event?" or "string?")
        .. " iter", first)
    end
  end)

  it("types every public field the Lua layer sets on a stream", function()
    local found = 0
    for _, name in ipairs({ "fetchstream.stream", "fetchstream.client" }) do
      for line in read(module_path(name)):gmatch("[^\n]+") do
        -- `s.a = ...` and `s.a, s.b = ...`; `s` is a stream in these files.
        local lhs = line:match("^%s*(s%.[%w_%.,%s]-)%s*=[^=]")
        for key in (lhs or ""):gmatch("%f[%w_]s%.([%a_][%w_]*)") do
          found = found + 1
          if not key:find("^_") then assert_field("fetchstream.Stream", key) end
        end
        -- the fields the constructor lists: `    name = value, -- ...`
        local field = name == "fetchstream.stream" and line:match("^    ([%a][%w_]*) = .*,")
        if field then
          found = found + 1
          assert_field("fetchstream.Stream", field)
        end
      end
    end
    assert.is_true(found > 5, "no stream fields found in stream.lua and client.lua")
  end)

  it("types the chat helper's options, methods and fields", function()
    if not package.searchpath("fetchstream.chat", package.path) then
      return pending("no fetchstream.chat yet")
    end
    local chat_mod = require "fetchstream.chat"
    local chat_opts, Chat = upvalue(chat_mod.chat, "CHAT_OPTIONS"), upvalue(chat_mod.chat, "Chat")
    if type(chat_opts) ~= "table" then
      chat_opts = table_keys_in_source(module_path("fetchstream.chat"), "CHAT_OPTIONS")
    end
    for _, name in ipairs(sorted_keys(chat_opts)) do assert_field("fetchstream.ChatOptions", name) end
    for _, name in ipairs(sorted_keys(type(Chat) == "table" and Chat or {})) do
      if type(Chat[name]) == "function" and not name:find("^_") then assert_method("fetchstream.Chat", name) end
    end

    -- The fields of a chat object, as made, and as chat.lua assigns them.
    local c = fetch.client()
    local r = table.pack(c:chat("http://127.0.0.1:1/v1", { model = "m", messages = {} }))
    local chat, closing = r[1], r[4]
    assert.are.equal(4, r.n)
    assert.are.equal(chat, closing)
    for key in pairs(chat) do
      if not tostring(key):find("^_") then assert_field("fetchstream.Chat", key) end
    end
    chat:close()
    c:close()
    local src = read(module_path("fetchstream.chat"))
    for key in src:gmatch("%f[%w_]chat%.([%a_][%w_]*)%s*=[^=]") do
      if not key:find("^_") then assert_field("fetchstream.Chat", key) end
    end
    for key in src:gmatch("%f[%w_]chat%.stats%.([%a_][%w_]*)%s*=[^=]") do assert_field("fetchstream.ChatStats", key) end
    if src:find("local st = chat.stats", 1, true) then
      for key in src:gmatch("%f[%w_]st%.([%a_][%w_]*)%s*=[^=]") do assert_field("fetchstream.ChatStats", key) end
    end
  end)

  it("types every error kind and extra field the Lua layer makes", function()
    local kinds = assert(model.aliases["fetchstream.ErrorKind"], "no ---@alias fetchstream.ErrorKind").literals
    local dir = module_path("fetchstream"):match("^(.*)/init%.lua$")
    local found = 0
    local p = assert(io.popen("ls " .. dir .. "/*.lua"))
    for path in p:lines() do
      for args in read(path):gmatch("core%.error(%b())") do
        found = found + 1
        local kind = args:match('^%(%s*"([^"]*)"')
        if kind then assert.is_true(kinds[kind], path .. " makes a '" .. kind .. "' error: not in ErrorKind") end
        local fields = args:match("(%b{})%s*%)$")
        for key in (fields or ""):gmatch("[{,]%s*([%a_][%w_]*)%s*=") do
          assert_field("fetchstream.Error", key)
        end
      end
    end
    p:close()
    assert.is_true(found > 5, "no core.error calls found in " .. dir)
  end)

  it("types what the README names: functions, methods, fields", function()
    local readme = read("README.md")
    local where = {
      { "fetch", ".", "fetchstream" },
      { "s", ":", "fetchstream.Stream" }, { "s", ".", "fetchstream.Stream" },
      { "c", ":", "fetchstream.Client" },
      { "p", ":", "fetchstream.Parser" }, { "p", ".", "fetchstream.Parser" },
      { "ev", ":", "fetchstream.Event" }, { "ev", ".", "fetchstream.Event" },
      { "err", ".", "fetchstream.Error" },
    }
    local count = 0
    for _, w in ipairs(where) do
      local var, sep, class_name = w[1], w[2], w[3]
      for name in readme:gmatch("%f[%w_.]" .. var .. "%" .. sep .. "([%a_][%w_]*)") do
        count = count + 1
        if sep == ":" then
          assert_method(class_name, name)
        else
          assert(lookup(model, class_name, "fields", name) or lookup(model, class_name, "functions", name),
            ("README names %s.%s; %s does not type it"):format(var, name, class_name))
        end
      end
    end
    assert.is_true(count > 20, "the README's names were not found")
  end)

  it("types every option in the README's table", function()
    local readme = read("README.md")
    local section = assert(readme:match("\n## Options\n(.-)\n## "), "README has no Options section")
    local names = {}
    for cell in section:gmatch("\n| ([^|\n]+) |") do
      for name in cell:gmatch("`([%a_][%w_]*)`") do names[#names + 1] = name end
    end
    assert.is_true(#names > 15)
    for _, name in ipairs(names) do assert_field("fetchstream.CallbackOptions", name) end
  end)

  it("has the README's Options table name exactly the options request.lua takes", function()
    local request = require "fetchstream.request"
    local section = assert(read("README.md"):match("\n## Options\n(.-)\n## "), "README has no Options section")
    local in_readme = {}
    for cell in section:gmatch("\n| ([^|\n]+) |") do
      for name in cell:gmatch("`([%a_][%w_]*)`") do in_readme[name] = true end
    end
    local taken = {}
    for name in pairs(request.OPTIONS) do taken[name] = true end
    for name in pairs(request.CALLBACK_OPTIONS) do taken[name] = true end
    assert.are.same(sorted_keys(taken), sorted_keys(in_readme))
    -- each option that reaches C has a C field and is typed as a request option
    for name, o in pairs(request.OPTIONS) do
      assert.are.equal("function", type(o.check), name)
      if o.field then assert.are.equal("string", type(o.field), name) end
      assert_field("fetchstream.RequestOptions", name)
    end
  end)

  it("types every error kind and extra field of the README's table", function()
    local readme = read("README.md")
    local section = assert(readme:match("\n## Errors\n(.-)\n## "), "README has no Errors section")
    local kinds = assert(model.aliases["fetchstream.ErrorKind"], "no ---@alias fetchstream.ErrorKind").literals
    local timeouts = assert(model.aliases["fetchstream.TimeoutKind"], "no ---@alias fetchstream.TimeoutKind").literals
    local reasons = assert(model.aliases["fetchstream.Reason"], "no ---@alias fetchstream.Reason").literals
    assert.are.equal("fetchstream.ErrorKind", class("fetchstream.Error").fields.kind.type:match("^%S+"))
    local rows = 0
    for kind, extra in section:gmatch("\n| `([%a_]+)` |[^|\n]*| ([^|\n]*) |") do
      rows = rows + 1
      assert.is_true(kinds[kind], "kind '" .. kind .. "' is not in fetchstream.ErrorKind")
      if kind ~= "usage" then -- usage errors are raised: no stream ends with one
        assert.is_true(reasons[kind], "kind '" .. kind .. "' is not in fetchstream.Reason")
      end
      local fields, values = extra:gsub("%b()", ""):match("^([^:]*):?(.*)$")
      for name in fields:gmatch("`([%a_][%w_]*)`") do assert_field("fetchstream.Error", name) end
      if kind == "timeout" then
        for value in values:gmatch("`([%a_]+)`") do
          assert.is_true(timeouts[value], "timeout '" .. value .. "' is not in fetchstream.TimeoutKind")
        end
      end
    end
    assert.is_true(rows >= 6, "the README's error table was not found")
    assert.is_true(reasons.done and reasons.aborted)
  end)
end)

describe("types/fetchstream/sse.lua", function()
  it("types every function and field fetchstream.sse exports", function()
    local sse = require "fetchstream.sse"
    local text = read("types/fetchstream/sse.lua")
    assert.is_truthy(text:find("^%-%-%-@meta fetchstream%.sse\n"), "not a ---@meta fetchstream.sse file")
    for name, value in pairs(sse) do
      local typed = type(value) == "function" and text:find("\nfunction sse%." .. name .. "%(")
        or text:find("\nsse%." .. name .. " = ")
      assert.is_truthy(typed, "fetchstream.sse." .. name .. " is not typed")
    end
  end)
end)


describe("types/fetchstream/uv.lua", function()
  local text
  setup(function() text = read("types/fetchstream/uv.lua") end)

  it("is a ---@meta fetchstream.uv file that types every function fetchstream.uv exports", function()
    local fuv = require "fetchstream.uv"
    assert.is_truthy(text:find("^%-%-%-@meta fetchstream%.uv\n"), "not a ---@meta fetchstream.uv file")
    assert(loadfile("types/fetchstream/uv.lua", "t"))
    for name, value in pairs(fuv) do
      local typed = type(value) == "function" and text:find("\nfunction uv%." .. name .. "%(")
        or text:find("\nuv%." .. name .. " = ")
      assert.is_truthy(typed, "fetchstream.uv." .. name .. " is not typed")
    end
  end)

  it("types the handle's methods and fields, and the options of attach and spawn", function()
    local fuv = require "fetchstream.uv"
    local model = parse_types(text)
    local handle_class = assert(model.classes["fetchstream.uv.Handle"], "no ---@class fetchstream.uv.Handle")
    local c = require("fetchstream").client()
    local handle = fuv.attach(c, (require "luv"))
    for name, value in pairs(getmetatable(handle).__index) do
      if type(value) == "function" and not name:find("^_") then
        assert(handle_class.functions[name], "Handle:" .. name .. " is not typed")
      end
    end
    for key in pairs(handle) do
      if not key:find("^_") then assert(handle_class.fields[key], "handle." .. key .. " is not typed") end
    end
    handle:detach()
    c:close()
    for _, spec in ipairs({ { fuv.attach, "ATTACH_OPTIONS", "fetchstream.AttachOptions" },
                            { fuv.spawn, "SPAWN_OPTIONS", "fetchstream.SpawnOptions" } }) do
      local opts = upvalue(spec[1], spec[2])
      assert.are.equal("table", type(opts), spec[2] .. " is not reachable")
      local class_ = assert(model.classes[spec[3]], "no ---@class " .. spec[3])
      for name in pairs(opts) do
        assert(class_.fields[name], spec[3] .. " has no ---@field " .. name)
      end
    end
  end)
end)
