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

``BREAKER_LIB`` holds the state machine as Lua functions over one breaker
(``br_load`` ... ``br_trip``, with ``br_room``/``br_take`` as in
``breaker_logic``), so the scripts that admit and settle a call
(:mod:`shared.redis.call_lua`) run the same code in their one round trip.
"""

from __future__ import annotations

BREAKER_LIB = r"""
-- One breaker: B its state hash, W its window hash, now in ms (Redis TIME),
-- parameters argv[at .. at + 5] (window_s, min_requests, failure_threshold,
-- open_ms, half_open_probes, probe_ms).
local function br_load(B, W, now, argv, at)
  local h = redis.call('HMGET', B, 'state', 'open_until_ms', 'probes', 'probe_deadline_ms', 'reason')
  return {B = B, W = W, now = now,
          window_s = tonumber(argv[at]), min_req = tonumber(argv[at + 1]),
          threshold = tonumber(argv[at + 2]), open_ms = tonumber(argv[at + 3]),
          max_probes = tonumber(argv[at + 4]), probe_ms = tonumber(argv[at + 5]),
          state = h[1] or 'closed', open_until = tonumber(h[2] or '0') or 0,
          probes = tonumber(h[3] or '0') or 0, probe_deadline = tonumber(h[4] or '0') or 0,
          reason = h[5] or '', calls = 0, fails = 0}
end

local function br_effective(br)
  if br.state == 'open' and br.now >= br.open_until then return 'half_open' end
  return br.state
end

local function br_reply(br, allowed, is_probe)
  return {allowed, is_probe, br_effective(br), br.now, br.open_until, br.calls, br.fails, br.reason}
end

local function br_count(br, prune)
  local sec = math.floor(br.now / 1000)
  local all = redis.call('HGETALL', br.W)
  local stale = {}
  br.calls, br.fails = 0, 0
  for i = 1, #all, 2 do
    local f = all[i]
    local s = tonumber(string.match(f, '^(%d+)'))
    if s == nil or s <= sec - br.window_s then
      stale[#stale + 1] = f
    elseif string.find(f, ':f', 1, true) then
      br.fails = br.fails + tonumber(all[i + 1])
    else
      br.calls = br.calls + tonumber(all[i + 1])
    end
  end
  if prune and #stale > 0 then redis.call('HDEL', br.W, unpack(stale)) end
end

local function br_open(br, why)
  br.state, br.open_until, br.probes, br.reason = 'open', br.now + br.open_ms, 0, why
  redis.call('HSET', br.B, 'state', 'open', 'open_until_ms', br.open_until, 'opened_ms', br.now,
             'probes', 0, 'reason', why)
  redis.call('DEL', br.W)
  br.calls, br.fails = 0, 0
end

local function br_close(br)
  br.state, br.probes, br.reason = 'closed', 0, ''
  redis.call('HSET', br.B, 'state', 'closed', 'probes', 0, 'closed_ms', br.now, 'reason', '')
  redis.call('DEL', br.W)
end

-- How many calls may start now (-1: no bound) and whether they are probes (1|0);
-- nothing written.
local function br_room(br)
  if br.state == 'closed' then return -1, 0 end
  if br.state == 'open' and br.now < br.open_until then return 0, 0 end
  local probes = br.probes
  if br.state == 'open' then probes = 0 end
  if probes > 0 and br.now >= br.probe_deadline then probes = 0 end
  local room = br.max_probes - probes
  if room < 0 then room = 0 end
  return room, 1
end

-- Admit k calls (at most br_room): half-open counts them as probes.
local function br_take(br, k)
  if br.state == 'closed' or k <= 0 then return end
  if br.state == 'open' then br.state, br.probes = 'half_open', 0 end
  if br.probes > 0 and br.now >= br.probe_deadline then br.probes = 0 end
  br.probes = br.probes + k
  br.probe_deadline = br.now + br.probe_ms
  redis.call('HSET', br.B, 'state', br.state, 'probes', br.probes,
             'probe_deadline_ms', br.probe_deadline)
end

-- Account one outcome (ok, probe: booleans).
local function br_record(br, ok, probe)
  if br.state == 'closed' then
    local sec = math.floor(br.now / 1000)
    redis.call('HINCRBY', br.W, tostring(sec), 1)
    if not ok then redis.call('HINCRBY', br.W, sec .. ':f', 1) end
    br_count(br, true)
    redis.call('PEXPIRE', br.W, br.window_s * 1000 + 1000)
    if (not ok) and br.calls >= br.min_req and br.fails >= br.threshold * br.calls then
      br_open(br, 'failure_rate')
    end
  elseif br.state == 'half_open' and probe then
    if ok then br_close(br) else br_open(br, 'probe_failed') end
  end
end

-- Force it open with a reason; 1 when this opened it (already open: only the reason changes).
local function br_trip(br, why)
  if br_effective(br) == 'open' then
    br.reason = why
    redis.call('HSET', br.B, 'reason', why)
    return 0
  end
  br_open(br, why)
  return 1
end
"""

BREAKER_LUA = (
    r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
    + BREAKER_LIB
    + r"""
local br = br_load(KEYS[1], KEYS[2], now, ARGV, 4)
local op = ARGV[1]
if op == 'state' then
  if br.state == 'closed' then br_count(br, false) end
  return br_reply(br, 0, 0)
elseif op == 'allow' then
  local room, probe = br_room(br)
  if room == 0 then return br_reply(br, 0, 0) end
  br_take(br, 1)
  return br_reply(br, 1, probe)
elseif op == 'record' then
  br_record(br, ARGV[2] == '1', ARGV[3] == '1')
  return br_reply(br, 1, 0)
elseif op == 'trip' then
  return br_reply(br, br_trip(br, ARGV[10]), 0)
end
return redis.error_reply('breaker: unknown op ' .. tostring(op))
"""
)
