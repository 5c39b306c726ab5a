---@meta fetchstream
-- luacheck: ignore 241 (a definition file: its tables are declared, never used)

-- LuaCATS definitions of the module fetchstream, for lua-language-server.
-- This file is never loaded at run time (types/ is not on package.path); add
-- the folder to the language server's `workspace.library` to use it:
--
--   { "workspace.library": ["path/to/fetchstream/types"] }
--
-- The API is documented in README.md; this file types it as
-- lua/fetchstream/ builds it. spec/types_spec.lua checks that whatever the
-- library exposes is typed here.

-- Aliases --------------------------------------------------------------------

--- What an error is about: `err.kind`.
---@alias fetchstream.ErrorKind
---| "usage"    # bad arguments, unknown option, non-http(s) URL, CR/LF/NUL in a header, use after close
---| "http"     # a non-2xx status
---| "network"  # curl failed: refused, DNS, TLS, connection dropped mid-body
---| "timeout"  # one of the four timeouts
---| "protocol" # wrong content type, event or line too large, bad JSON
---| "api"      # an LLM API reported an error inside a 2xx stream
---| "eof"      # a chat stream ended before its end marker
---| "callback" # a Lua callback raised

--- Which timeout fired: `err.timeout` on a `timeout` error.
---@alias fetchstream.TimeoutKind
---| "connect"    # connect_timeout: TCP and TLS
---| "first_byte" # first_byte_timeout: request start to the first body byte
---| "idle"       # idle_timeout: silence once the response headers are in
---| "total"      # timeout: the whole transfer

--- How a stream ended: `s.reason` (`nil` while it runs).
---@alias fetchstream.Reason
---| "done"     # the server ended the stream normally (or a 204, or a chat end marker)
---| "aborted"  # abort(), close() or a `break` mid-transfer
---| "http"
---| "network"
---| "timeout"
---| "protocol"
---| "api"
---| "eof"
---| "callback"

--- The `http_version` option.
---@alias fetchstream.HttpVersion
---| "1.0"
---| "1.1"
---| "2"                 # HTTP/2 over TLS
---| "2-prior-knowledge" # HTTP/2 without upgrade, also over plain http://

--- The chat helper's wire format.
---@alias fetchstream.ChatFormat
---| "openai"    # OpenAI-compatible `/chat/completions` (the default)
---| "responses" # OpenAI's Responses API, `/responses`
---| "anthropic" # Anthropic's Messages events, `/messages`
---| "ollama"    # Ollama's native `/api/chat` (NDJSON)

-- Events ---------------------------------------------------------------------

--- One Server-Sent Event.
---@class fetchstream.Event
---@field event string The event type; `"message"` unless the server sent `event:`.
---@field data string The `data:` lines joined with LF.
---@field id string The last event ID in force when the event was dispatched (`""` if none).
local Event = {}

--- Decode `ev.data` with cjson; `nil, err` (kind `protocol`, quoting the
--- first bytes) when it is not JSON.
---@return any value
---@return fetchstream.Error? err
function Event:json() end

-- Errors ---------------------------------------------------------------------

--- An error object: a table whose metatable is `fetch.Error`.
--- `tostring(err)` is one line that names the request
--- (`fetchstream: http 401 from POST https://api.example.com/v1/chat/completions: invalid key`).
---@class fetchstream.Error
---@field kind fetchstream.ErrorKind For code.
---@field message string For people.
---@field url? string Every kind but `usage`: the request's URL, credentials removed.
---@field method? string Every kind but `usage`: the request's method.
---@field status? integer `http` (and a refused content type): the response status.
---@field headers? table<string, string> `http` (and a refused content type): the response headers, lower-case names.
---@field body? string `http` (and a refused content type): the first 64 KiB of the response body.
---@field json? any `http`: the body decoded, when it is JSON; `api`: the API's error object.
---@field code? integer `network`: curl's error number.
---@field curl? string `network`: curl's error name, e.g. `"COULDNT_CONNECT"`.
---@field timeout? fetchstream.TimeoutKind `timeout`: which of the four timeouts fired.
---@field cause? any `callback`: the value the callback raised.
---@field line? integer `protocol` from NDJSON: the number of the line that is not JSON.

--- Where a stream is: it moves connecting -> open -> (waiting -> connecting ...) -> ended.
---@alias fetchstream.StreamState
---| "connecting" # the request is on its way, no accepted response yet
---| "open"       # the response is accepted: its body is being read
---| "waiting"    # waiting to reconnect (option `reconnect`)
---| "ended"      # for good: see `reason`

-- Options --------------------------------------------------------------------

--- Reconnection settings (option `reconnect`): as EventSource, the stream
--- reconnects after a network error, an idle or connect timeout, or a normal
--- end, sending `Last-Event-ID`; 429 and 503 honour `Retry-After`.
---@class fetchstream.ReconnectOptions
---@field retries? integer Consecutive reconnections allowed before failing (default: no limit).
---@field delay? number Seconds to wait when the server sent no `retry:` (default 3).
---@field max_delay? number Upper bound in seconds of the exponential back-off (default 30).

--- What `onreconnect` is told before each wait.
---@class fetchstream.ReconnectInfo
---@field attempt integer The number of this reconnection (1 for the first).
---@field delay number Seconds it waits before connecting again.
---@field error? fetchstream.Error What ended the last connection; nil after a normal end.

--- Options of every request (all optional). An unknown name, or a value of
--- the wrong type, raises a `usage` error before anything is sent.
---@class fetchstream.RequestOptions
---@field method? string Default `"POST"` when there is a body, else `"GET"`.
---@field headers? table<string, string|number> `{ name = value }`; CR, LF or NUL in a name or value is a `usage` error.
---@field body? string The request body.
---@field json? any A value encoded with cjson as the body; sets `content-type: application/json` unless given.
---@field connect_timeout? number Seconds for TCP and TLS (curl's default: 300).
---@field first_byte_timeout? number Seconds from the start of the request to the first body byte.
---@field idle_timeout? number Seconds of silence allowed once the response headers are in (comments count as data).
---@field timeout? number Seconds for the whole transfer.
---@field max_event_size? integer Bytes, default 16 MiB: a larger event or line is a `protocol` error.
---@field last_event_id? string Sent as `Last-Event-ID`.
---@field reconnect? boolean|fetchstream.ReconnectOptions Reconnect as EventSource does; off by default.
---@field follow_redirects? boolean|integer Default `true` (at most 10); `false`, or a number of redirects.
---@field insecure? boolean `true` turns TLS verification off (it is on by default).
---@field ca_file? string A CA bundle to verify with.
---@field proxy? string|false A proxy URL (curl's syntax); `false`: none, not even from `http_proxy` & co.
---@field http_version? fetchstream.HttpVersion `"1.0"`, `"1.1"`, `"2"` (over TLS), `"2-prior-knowledge"`.
---@field user_agent? string Default `"fetchstream/<version>"`.
---@field accept_encoding? boolean Default `true`: ask for gzip/br/zstd and decode; `false` turns it off.
---@field content_type_check? boolean Default `true` for event readers: the media type must be `text/event-stream`.
---@field onretry? fun(ms: integer, s: fetchstream.Stream) The server sent a valid `retry:` (ms).
---@field oncomment? fun(text: string, s: fetchstream.Stream) A comment: the text after `:`, one space removed.
---@field onreconnect? fun(info: fetchstream.ReconnectInfo, s: fetchstream.Stream) Before each wait to reconnect.

--- Options of `fetch.stream`: the request options plus the callbacks.
--- Exactly one of `onclose`, `onabort`, `onerror` fires, once.
---@class fetchstream.CallbackOptions : fetchstream.RequestOptions
---@field onopen? fun(s: fetchstream.Stream) An accepted response: `s.status`, `s.headers`; raising rejects it.
---@field onmessage? fun(ev: fetchstream.Event, s: fetchstream.Stream) An event with no handler in `on`.
---@field on? table<string, fun(ev: fetchstream.Event, s: fetchstream.Stream)> Handlers by event type.
---@field onchunk? fun(bytes: string, s: fetchstream.Stream) Raw body bytes as they arrive.
---@field onclose? fun(s: fetchstream.Stream) The server ended the stream normally (reason `done`).
---@field onerror? fun(err: fetchstream.Error, s: fetchstream.Stream) The stream ended with an error.
---@field onabort? fun(reason: any, s: fetchstream.Stream) Aborted; `reason`: the value given to `s:abort()`.

--- Options of `fetch.parser` (all optional).
---@class fetchstream.ParserOptions
---@field max_event_size? integer Bytes, default 16 MiB: a larger event or line raises a `protocol` error.
---@field onretry? fun(ms: integer) A valid `retry:` field (milliseconds).
---@field oncomment? fun(text: string) A comment line: the text after `:`, one leading space removed.

-- Parser ---------------------------------------------------------------------

--- An incremental SSE parser for bytes from any transport: any chunking of
--- the same bytes gives the same events.
---@class fetchstream.Parser
---@field last_event_id string The last event ID; changes when a blank line ends a block.
---@field retry? integer The last valid `retry:` in ms; `nil` until one came.
local Parser = {}

--- Feed bytes. Without `fn`: an iterator over the events this chunk
--- completed. With `fn`: calls `fn(data, event, id)` per event (no table per
--- event) and returns nothing. An event or line over `max_event_size` raises
--- a `protocol` error; the parser then stays failed until `p:reset()`.
---@param chunk string
---@return fun(): fetchstream.Event? iter
---@overload fun(self: fetchstream.Parser, chunk: string, fn: fun(data: string, event: string, id: string))
function Parser:feed(chunk) end

--- `for data, event, id in p:values(chunk) do ... end`: the events this chunk
--- completes as three strings, without a table per event.
---@param chunk string
---@return fun(): string?, string?, string? iter
function Parser:values(chunk) end

--- Start a new stream: unread input is dropped, a BOM is expected again.
function Parser:reset() end

--- Free the parser's buffers; idempotent (also `__close` and `__gc`).
function Parser:close() end

-- Streams --------------------------------------------------------------------

--- One transfer. Also a to-be-closed value: `local s <close> = ...`.
---@class fetchstream.Stream
---@field status? integer The response status (`nil` until the headers are in).
---@field headers? table<string, string> Response headers, lower-case names; repeated ones joined with `", "`.
---@field url? string The URL after redirects, credentials removed.
---@field state fetchstream.StreamState Where it is: `"connecting"`, `"open"`, `"waiting"` (to reconnect), `"ended"`.
---@field reason? fetchstream.Reason `nil` while running, then `"done"`, `"aborted"` or the ending error's kind.
---@field error? fetchstream.Error The error that ended the stream.
---@field last_event_id string The last event ID (`""` if none).
---@field retry? integer The server's last `retry:`, in ms.
---@field reconnects integer How many times the stream has reconnected (option `reconnect`); 0 before the first.
local Stream = {}

--- The next event; `nil` at the end; `nil, err` on failure. With `timeout`
--- (seconds), `nil` when no event came in time: the stream goes on and
--- `s.reason` is still `nil`.
---@param timeout? number
---@return fetchstream.Event? ev
---@return fetchstream.Error? err
function Stream:next(timeout) end

--- `for ev in s:events() do ... end`; raises the error that ends the stream.
--- A `break` does not close the stream (`<close>` or `s:close()` does).
---@return fun(s: fetchstream.Stream): fetchstream.Event? iter
---@return fetchstream.Stream state
function Stream:events() end

--- `for data, event, id in s:values() do ... end`: the same events as three
--- strings, without a table per event.
---@return fun(s: fetchstream.Stream): string?, string?, string? iter
---@return fetchstream.Stream state
function Stream:values() end

--- `for bytes in s:chunks() do ... end`: raw body bytes as they arrive.
---@return fun(s: fetchstream.Stream): string? iter
---@return fetchstream.Stream state
function Stream:chunks() end

--- `for line in s:lines() do ... end`: LF or CRLF lines, without the ending.
---@return fun(s: fetchstream.Stream): string? iter
---@return fetchstream.Stream state
function Stream:lines() end

--- Stop now, from anywhere (a callback too); `onabort(reason)` fires at
--- once. Aborting a stream that has ended does nothing.
---@param reason? any
function Stream:abort(reason) end

--- Abort a running transfer and free it; idempotent; also `__close`. A
--- stream that had ended keeps its reason.
function Stream:close() end

--- Seconds from the start of the request to the first body byte (`nil` if
--- none yet), and to now (to the end, once the stream has ended).
---@return number? ttfb
---@return number elapsed
function Stream:times() end

-- Chat -----------------------------------------------------------------------

--- A message of the conversation (OpenAI's shape; Anthropic's for `format = "anthropic"`).
---@class fetchstream.ChatMessage
---@field role string `"system"`, `"user"`, `"assistant"`, `"tool"`, ...
---@field content? string|table
---@field [string] any

--- Options of `fetch.chat`: the helper's own, the request options (except
--- `json` and `method`: the helper builds the request), and request-body
--- fields. A name that is none of these goes into the request body as is
--- (`temperature`, `tools`, ... below, and any other an API takes), unless
--- it holds a function or is a small edit away from an option
--- (`idle_timout`): those are `usage` errors ("did you mean"). `body = { }`
--- sends fields verbatim, whatever their names; `model`, `messages` and
--- the other top-level fields are laid over it. Giving `ontext`, `ondone`,
--- `onerror` or `onabort` selects the callback form, driven by `fetch.run()`;
--- `onreasoning` and `ondata` work in both forms. Every hook gets the chat
--- as its last argument. `onreconnect(info, s)` also sees each retry: a
--- request refused before the answer starts (connection refused, 408, 409,
--- 429, 5xx) is sent again up to `max_retries` times.
---@class fetchstream.ChatOptions : fetchstream.RequestOptions
---@field model? string The model name (or `body.model`); required.
---@field messages? fetchstream.ChatMessage[] The conversation so far (or `body.messages`); `"responses"`: `input`.
---@field body? table<string, any> Request-body fields sent verbatim, under the top-level ones.
---@field api_key? string Sent as a Bearer token (`x-api-key` for Anthropic); `false` or `""` is a `usage` error.
---@field stream? true The helper always streams: any other value is a `usage` error.
---@field format? fetchstream.ChatFormat Default: from the base URL's end, else `"openai"`.
---@field max_retries? integer Retries of a request refused before the answer starts (default 2).
---@field ontext? fun(text: string, chat: fetchstream.Chat) Each non-empty piece of the answer.
---@field onreasoning? fun(text: string, chat: fetchstream.Chat) Each piece of reasoning; both forms.
---@field ondata? fun(obj: any, chat: fetchstream.Chat) Every decoded payload, before it is read; both forms.
---@field ondone? fun(result: fetchstream.Chat) The end marker came: the answer is complete.
---@field onerror? fun(err: fetchstream.Error, chat: fetchstream.Chat) The chat failed (`eof`: no end marker).
---@field onabort? fun(reason: any, chat: fetchstream.Chat) The chat was aborted.
---@field stream_options? table Body: `{ include_usage = true }` asks OpenAI for `usage`.
---@field temperature? number Body: sampling temperature.
---@field top_p? number Body: nucleus sampling.
---@field max_tokens? integer Body: the longest answer (Anthropic: default 1024).
---@field stop? string|string[] Body: stop sequences (Anthropic: `stop_sequences`).
---@field seed? integer Body: sampling seed.
---@field n? integer Body: how many answers (the helper reads the first).
---@field user? string Body: an end-user id.
---@field system? string|table Body, Anthropic: the system prompt.
---@field metadata? table Body: request metadata.
---@field tools? table[] Body: the tools the model may call.
---@field tool_choice? string|table Body: `"auto"`, `"none"`, `"required"` or a tool.
---@field response_format? table Body: e.g. `{ type = "json_object" }`.
---@field input? string|table[] Body, Responses API: the input (`messages` are sent here when it is not given).
---@field instructions? string Body, Responses API: the system prompt.
---@field max_output_tokens? integer Body, Responses API: the longest answer.
---@field reasoning? table Body, Responses API and OpenRouter: e.g. `{ effort = "low", summary = "auto" }`.
---@field previous_response_id? string Body, Responses API: continue a stored response.
---@field options? table Body, Ollama: model options (`num_ctx`, `temperature`, ...).
---@field think? boolean Body, Ollama: ask a thinking model for `message.thinking`.
---@field keep_alive? string|number Body, Ollama: how long the model stays loaded.

--- A tool call of the answer, rebuilt from its streamed pieces, in the
--- shape the API takes back. OpenAI:
--- `{ id =, type = "function", ["function"] = { name =, arguments = } }`;
--- Responses: `{ type = "function_call", id =, call_id =, name =, arguments = }`;
--- Anthropic: `{ id =, type = "tool_use", name =, input = }`;
--- Ollama: as sent, `{ ["function"] = { name =, arguments = { ... } } }`.
---@class fetchstream.ToolCall
---@field id? string
---@field type? string `"function"` (OpenAI), `"function_call"` (Responses) or `"tool_use"` (Anthropic).
---@field ["function"]? { name: string, arguments: string|table } OpenAI: `arguments` is a JSON string; Ollama: a table.
---@field name? string Responses, Anthropic: the tool's name.
---@field call_id? string Responses: the id a `function_call_output` answers.
---@field arguments? string Responses: the arguments, a JSON string.
---@field input? string Anthropic: the input, a JSON string.

--- Timings of a chat answer. Both rates share one time base: from the first
--- output delta (text or reasoning) to the end of the stream (its end
--- marker, error or abort), and count what came after the first (nil below
--- two, and without output).
---@class fetchstream.ChatStats
---@field ttfb? number Seconds from the request to the first body byte (of the attempt that answered).
---@field ttft? number Seconds from `fetch.chat` to the first answer text (retries included).
---@field deltas_per_second? number Output (text and reasoning) deltas per second.
---@field tokens_per_second? number From `completion_tokens` (`output_tokens`, `eval_count`); nil without usage.
---@field deltas? integer How many text deltas came.
---@field reasoning_deltas? integer How many reasoning deltas came.
---@field total_duration? number Ollama: seconds, as the server measured them.
---@field load_duration? number Ollama: seconds loading the model.
---@field prompt_eval_duration? number Ollama: seconds reading the prompt.
---@field eval_duration? number Ollama: seconds generating the answer.

--- The outcome of a chat answer.
---@class fetchstream.ChatResult
---@field text string The whole answer (set once the chat has ended).
---@field reasoning string The model's reasoning, if it sent any (set once the chat has ended).
---@field finish_reason? string Why the model stopped (`"stop"`, `"length"`, `"tool_calls"`, `"end_turn"`, ...).
---@field usage? table The API's token counts, when it sent them.
---@field tool_calls fetchstream.ToolCall[] The tool calls the model made (empty when none).
---@field stats fetchstream.ChatStats
---@field model? string The model that answered, as the API reported it.
---@field retries integer How many times the request was sent again before an answer started.
---@field error? fetchstream.Error The error that ended the chat.

--- The chat object. `fetch.chat` returns it as the iterator of a generic
--- `for` (it is callable: each call gives the next text, `nil` at the end,
--- and raises the error that ends the chat) and as the closing value, so a
--- `break` aborts the transfer. After the loop it holds the result.
---@class fetchstream.Chat : fetchstream.ChatResult
---@field format fetchstream.ChatFormat The wire format in use.
---@field done? boolean `true` once the end marker came.
---@field stream fetchstream.Stream The underlying stream (of the last attempt).
---@field request fetchstream.ChatRequest What the helper sends.
---@overload fun(): string?
local Chat = {}

--- Abort the transfer if it still runs; idempotent; also `__close`.
function Chat:close() end

--- The request a chat sends (the same on every retry).
---@class fetchstream.ChatRequest
---@field method string `"POST"`.
---@field url string The endpoint: base URL plus the format's path.
---@field headers table<string, string> The headers, as given to the request.
---@field body string The JSON body.

--- Stop the chat now; with callbacks, `onabort(reason)` fires.
---@param reason? any
function Chat:abort(reason) end

-- Clients --------------------------------------------------------------------

--- A client: one curl multi handle driving any number of streams. The
--- `fetch.*` functions use a default client. Also a to-be-closed value.
---@class fetchstream.Client
local Client = {}

--- A stream that delivers to its callbacks; `c:run()` drives it.
---@param url string An `http://` or `https://` URL.
---@param opts? fetchstream.CallbackOptions
---@return fetchstream.Stream
function Client:stream(url, opts) end

--- A stream once the final response's headers are in, or `nil, err`
--- (`http`, `network`, `timeout`).
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fetchstream.Stream? s
---@return fetchstream.Error? err
function Client:open(url, opts) end

--- `for data, event, id in c:values(url, opts) do ... end`: the events of one SSE
--- response as three strings (data, type, id), without a table per event —
--- the fast form. A `break` aborts the transfer (the stream is the closing
--- value); the iterator raises the error that ends the stream.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): string?, string?, string? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function Client:values(url, opts) end

--- `for ev in c:events(url, opts) do ... end`: the events of one SSE
--- response. A `break` aborts the transfer; the iterator raises the error
--- that ends the stream.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): fetchstream.Event? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function Client:events(url, opts) end

--- `c:each(url, opts, function(ev, s) ... end)`: the events of one SSE
--- response, each handed to the function. It returning `false`, or raising,
--- aborts the transfer at once — the form to prefer on LuaJIT, where a
--- `break` cannot close a stream. `true` when the response ended or the
--- function stopped it; `nil, err` when the stream failed; what the function
--- raised is raised again.
---@param url string
---@param opts? fetchstream.RequestOptions
---@param fn fun(ev: fetchstream.Event, s: fetchstream.Stream): boolean?
---@return true? ok
---@return fetchstream.Error? err
function Client:each(url, opts, fn) end

--- `for bytes in c:chunks(url, opts) do ... end`: raw body bytes.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): string? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function Client:chunks(url, opts) end

--- `for line in c:lines(url, opts) do ... end`: LF or CRLF lines, without
--- the ending; a last line without LF is kept.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): string? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function Client:lines(url, opts) end

--- `for value in c:ndjson(url, opts) do ... end`: one decoded JSON value per
--- line, blank lines skipped. A line that is not JSON ends the stream with
--- a `protocol` error (`err.line` is its number), raised by the iterator.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): any iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function Client:ndjson(url, opts) end

--- `for text in c:chat(base_url, opts) do ... end`: see `fetch.chat`.
---@param base_url string
---@param opts fetchstream.ChatOptions
---@return fetchstream.Chat chat
---@return nil
---@return nil
---@return fetchstream.Chat? closing
function Client:chat(base_url, opts) end

--- Drive every callback stream of this client until all have ended: `true`,
--- or `false` when `timeout` seconds passed first. Calling it from a
--- callback is a `usage` error; it raises an error thrown by `onclose`,
--- `onerror` or `onabort`, after that stream has ended.
---@param timeout? number
---@return boolean done
function Client:run(timeout) end

--- Do all the work that can be done now without blocking — curl, timeouts,
--- reconnect waits, callbacks — and return: for a host event loop, with
--- `c:fileno()` and `c:timeout()`. A `usage` error inside a callback.
function Client:step() end

--- A descriptor that is readable whenever one of the client's transfers has
--- network activity (the epoll set), or `nil` where there is none (then a
--- host steps on a timer).
---@return integer? fd
function Client:fileno() end

--- Seconds until the next step is needed (curl's timer, a stream's deadline,
--- a reconnect wait), or `nil` when nothing is pending.
---@return number? seconds
function Client:timeout() end

--- Abort every stream of the client (each callback stream's `onabort` fires
--- once) and free it; idempotent.
function Client:close() end

-- The module -----------------------------------------------------------------

--- `local fetch = require "fetchstream"`
---@class fetchstream
---@field _VERSION string The module's version, e.g. `"0.1.0"`.
---@field Error metatable The metatable of every error object: `getmetatable(err) == fetch.Error`.
---@field DEFAULT_MAX_EVENT_SIZE integer The default `max_event_size`: 16 MiB (16777216).
local fetchstream = {}

--- Make an error object: `fetch.error("http", "invalid key", { status = 401 })`.
--- `fields` are copied into it.
---@param kind fetchstream.ErrorKind
---@param message string
---@param fields? table
---@return fetchstream.Error
function fetchstream.error(kind, message, fields) end

--- Whether `v` is a fetchstream error object.
---@param v any
---@return boolean
function fetchstream.is_error(v) end

--- An SSE parser for bytes from any transport.
---@param opts? fetchstream.ParserOptions
---@return fetchstream.Parser
function fetchstream.parser(opts) end

--- A stream once the final response's headers are in, or `nil, err`
--- (`http` for a non-2xx status, `network`, `timeout`).
---@param url string An `http://` or `https://` URL.
---@param opts? fetchstream.RequestOptions
---@return fetchstream.Stream? s
---@return fetchstream.Error? err
function fetchstream.open(url, opts) end

--- `for data, event, id in fetch.values(url, opts) do ... end`: the events of one SSE
--- response as three strings (data, type, id), without a table per event —
--- the fast form. A `break` aborts the transfer (the stream is the closing
--- value); the iterator raises the error that ends the stream.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): string?, string?, string? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function fetchstream.values(url, opts) end

--- `for ev in fetch.events(url, opts) do ... end`: the events of one SSE
--- response. The stream is the loop's closing value: a `break`, or an error
--- in the body, aborts the transfer. Raises the error that ends the stream.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): fetchstream.Event? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function fetchstream.events(url, opts) end

--- `fetch.each(url, opts, function(ev, s) ... end)`: the events of one SSE
--- response, each handed to the function. It returning `false`, or raising,
--- aborts the transfer at once — the form to prefer on LuaJIT, where a
--- `break` cannot close a stream. `true` when the response ended or the
--- function stopped it; `nil, err` when the stream failed; what the function
--- raised is raised again.
---@param url string
---@param opts? fetchstream.RequestOptions
---@param fn fun(ev: fetchstream.Event, s: fetchstream.Stream): boolean?
---@return true? ok
---@return fetchstream.Error? err
function fetchstream.each(url, opts, fn) end

--- `for bytes in fetch.chunks(url, opts) do ... end`: raw body bytes as
--- they arrive; any content type.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): string? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function fetchstream.chunks(url, opts) end

--- `for line in fetch.lines(url, opts) do ... end`: LF or CRLF lines,
--- without the ending; a last line without LF is kept.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): string? iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function fetchstream.lines(url, opts) end

--- `for value in fetch.ndjson(url, opts) do ... end`: one decoded JSON value per
--- line, blank lines skipped. A line that is not JSON ends the stream with
--- a `protocol` error (`err.line` is its number), raised by the iterator.
---@param url string
---@param opts? fetchstream.RequestOptions
---@return fun(s: fetchstream.Stream): any iter
---@return fetchstream.Stream state
---@return nil control
---@return fetchstream.Stream closing
function fetchstream.ndjson(url, opts) end

--- A stream that delivers to its callbacks; `fetch.run()` drives it.
---@param url string
---@param opts? fetchstream.CallbackOptions
---@return fetchstream.Stream
function fetchstream.stream(url, opts) end

--- Drive every callback stream of the default client until all have ended:
--- `true`, or `false` when `timeout` seconds passed first. Calling it from
--- a callback is a `usage` error; it raises an error thrown by `onclose`,
--- `onerror` or `onabort`, after that stream has ended.
---@param timeout? number
---@return boolean done
function fetchstream.run(timeout) end

--- A separate client (one curl multi handle) with the same functions as methods.
---@return fetchstream.Client
function fetchstream.client() end

--- An LLM chat answer as it arrives:
---
---     local chat <close> = fetch.chat(base_url, { model =, messages =, api_key = })
---     for text in chat do io.write(text) end
---     print(chat.finish_reason, chat.stats.deltas_per_second)
---
--- `base_url` is the API root (`.../v1`); `/chat/completions` is appended
--- (`/responses`, `/messages`, `/api/chat` for `format = "responses"`,
--- `"anthropic"`, `"ollama"`, whose root is the host) unless it already
--- ends with it; trailing slashes are dropped and a query string stays at
--- the end. Only non-empty answer text is yielded (reasoning goes to
--- `chat.reasoning` and `onreasoning`). A request refused before the answer
--- starts is sent again, up to `max_retries` (2) times.
--- Returns the chat object as iterator, state and closing value; with any of
--- `ontext`, `ondone`, `onerror`, `onabort` it returns the chat alone and
--- `fetch.run()` drives it.
---@param base_url string
---@param opts fetchstream.ChatOptions
---@return fetchstream.Chat chat
---@return nil
---@return nil
---@return fetchstream.Chat? closing
function fetchstream.chat(base_url, opts) end

return fetchstream
