"""The circuit-breaker Lua script: same state machine as ``breaker_logic``.

KEYS[1]  breaker hash: state, open_until_ms, opened_ms, closed_ms, probes, probe_deadline_ms,
         reason (why it last opened: failure_rate | probe_failed | the trip's reason; "" closed)
KEYS[2]  window hash: field "<sec>" = calls in that second, "<sec>:f" = failures
ARGV[1]  op: ``allow`` | ``record`` | ``state`` | ``trip``
ARGV[2]  ok (1|0; record only)      ARGV[3]  probe (1|0; record only)
ARGV[4..9]  window_s, min_requests, failure_threshold, open_ms, half_open_probes, probe_ms
ARGV[10] reason (trip only)

Reply: {allowed (1|0), probe (1|0), state, now_ms, open_until_ms, calls, failures, reason}
  allow   admission (may store open -> half_open and take a probe slot)
  record  the effective state afterwards (calls/failures: the window when closed)
  state   effective state (open past open_until_ms reads as half_open); nothing written
  trip    forced open with ARGV[10] (already open: only the reason changes);
          allowed = 1 when this call opened it
The window hash expires window_s + 1 s after the last outcome.
"""

from __future__ import annotations

BREAKER_LUA = r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local B, W = KEYS[1], KEYS[2]
local op = ARGV[1]
local ok = ARGV[2] == '1'
local probe = ARGV[3] == '1'
local window_s = tonumber(ARGV[4])
local min_req = tonumber(ARGV[5])
local threshold = tonumber(ARGV[6])
local open_ms = tonumber(ARGV[7])
local max_probes = tonumber(ARGV[8])
local probe_ms = tonumber(ARGV[9])

local h = redis.call('HMGET', B, 'state', 'open_until_ms', 'probes', 'probe_deadline_ms', 'reason')
local state = h[1] or 'closed'
local open_until = tonumber(h[2] or '0') or 0
local probes = tonumber(h[3] or '0') or 0
local probe_deadline = tonumber(h[4] or '0') or 0
local reason = h[5] or ''
local calls, fails = 0, 0

local function effective()
  if state == 'open' and now >= open_until then return 'half_open' end
  return state
end

local function reply(allowed, is_probe)
  return {allowed, is_probe, effective(), now, open_until, calls, fails, reason}
end

local function count(prune)
  local sec = math.floor(now / 1000)
  local all = redis.call('HGETALL', W)
  local stale = {}
  calls, fails = 0, 0
  for i = 1, #all, 2 do
    local f = all[i]
    local s = tonumber(string.match(f, '^(%d+)'))
    if s == nil or s <= sec - window_s then
      stale[#stale + 1] = f
    elseif string.find(f, ':f', 1, true) then
      fails = fails + tonumber(all[i + 1])
    else
      calls = calls + tonumber(all[i + 1])
    end
  end
  if prune and #stale > 0 then redis.call('HDEL', W, unpack(stale)) end
end

local function open(why)
  state, open_until, probes, reason = 'open', now + open_ms, 0, why
  redis.call('HSET', B, 'state', 'open', 'open_until_ms', open_until, 'opened_ms', now, 'probes', 0,
             'reason', why)
  redis.call('DEL', W)
  calls, fails = 0, 0
end

local function close()
  state, probes, reason = 'closed', 0, ''
  redis.call('HSET', B, 'state', 'closed', 'probes', 0, 'closed_ms', now, 'reason', '')
  redis.call('DEL', W)
end

if op == 'state' then
  if state == 'closed' then count(false) end
  return reply(0, 0)
elseif op == 'allow' then
  if state == 'closed' then return reply(1, 0) end
  if state == 'open' then
    if now < open_until then return reply(0, 0) end
    state, probes = 'half_open', 0
    redis.call('HSET', B, 'state', 'half_open', 'probes', 0)
  end
  if probes > 0 and now >= probe_deadline then probes = 0 end
  if probes < max_probes then
    probes = probes + 1
    redis.call('HSET', B, 'probes', probes, 'probe_deadline_ms', now + probe_ms)
    return reply(1, 1)
  end
  return reply(0, 0)
elseif op == 'record' then
  if state == 'closed' then
    local sec = math.floor(now / 1000)
    redis.call('HINCRBY', W, tostring(sec), 1)
    if not ok then redis.call('HINCRBY', W, sec .. ':f', 1) end
    count(true)
    redis.call('PEXPIRE', W, window_s * 1000 + 1000)
    if (not ok) and calls >= min_req and fails >= threshold * calls then open('failure_rate') end
  elseif state == 'half_open' and probe then
    if ok then close() else open('probe_failed') end
  end
  return reply(1, 0)
elseif op == 'trip' then
  if effective() == 'open' then
    reason = ARGV[10]
    redis.call('HSET', B, 'reason', reason)
    return reply(0, 0)
  end
  open(ARGV[10])
  return reply(1, 0)
end
return redis.error_reply('breaker: unknown op ' .. tostring(op))
"""
