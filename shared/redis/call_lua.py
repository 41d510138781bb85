"""The two scripts of one paid call: everything before it, everything after it.

A call costs two Redis round trips: ``admit`` before (cache lookup, pause
flag, breaker admission, cooldown and token buckets) and ``settle`` after
(buckets settled to the usage, breaker outcome, cooldown, cache write). A
cache hit costs the one ``admit`` and reserves nothing. Both run the same Lua
functions as the bucket, cooldown and breaker scripts (``BUCKET_LIB``,
``COOLDOWN_LIB``, ``BREAKER_LIB``), with Redis ``TIME`` as the only clock.

CALL_LUA ``admit``
  KEYS   cache, paused flag, breaker hash, breaker window, cooldown, bucket 1..n
  ARGV   'admit', lookup (1|0), breaker parameters (6, as ``BREAKER_LUA``),
         rate/capacity/0 of each bucket (3n), m, the m requests' costs (m x n, row by row),
         the horizon in us (optional, 0: only grants that start now),
         pace (optional, '1': the asker is a worker's pump, see below)
  reply  {status, granted, wait_us, now_us, blocker, probe, breaker_state, cached, level 1..n,
         start 1..granted (us after now_us: a grant may be scheduled within the horizon)}
         ``cached``  the lookup found an answer (in ``cached``); nothing else done
         ``miss``    m = 0: only the lookup was asked for, and nothing was found
         ``paused``  the provider is paused: nothing granted
         ``open``    the breaker admits nothing now: nothing granted
         ``ok``      ``granted`` of the m requests, in order, took their costs and
                     the breaker's admission together (``probe`` 1: half-open
                     probes); ``wait_us``/``blocker`` say why the next one was
                     refused (blocker -1: the cooldown, as ``BUCKET_LUA``)
         ``full``    as ``ok``, but the next one was refused because the half-open
                     breaker has no probe left (the rest are unavailable)
         With pace '1', a refusal's ``wait_us`` is an appointment: the blocking
         bucket keeps (field ``a``) the latest time it told a pump to come back,
         and a pump refused for the same tokens is told to come one request's
         refill later. Pumps of several workers waiting on one bucket then take
         turns instead of all waking for each token that appears, where all but
         one found it gone (a wasted round trip each). An appointment holds no
         tokens: whoever asks first still takes what is there, so nothing is
         lost when a pump comes late or not at all.
CALL_LUA ``settle`` (once per reservation: a marker key, as the bucket's ``adjust``)
  KEYS   settle marker, breaker hash, breaker window, cooldown, cache, bucket 1..n
  ARGV   'settle', marker TTL ms, breaker parameters (6), outcome (ok|fail|'' = none),
         probe (1|0), cooldown seconds (0 = none), cache TTL ms (0 = no write),
         cache value, rate/capacity/delta of each bucket (3n)
  reply  {settled (0: settled before, nothing written), breaker state afterwards}
"""

from __future__ import annotations

from shared.redis.breaker_lua import BREAKER_LIB
from shared.redis.bucket_lua import BUCKET_LIB, COOLDOWN_LIB

CALL_LUA = (
    r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
"""
    + COOLDOWN_LIB
    + BUCKET_LIB
    + BREAKER_LIB
    + r"""
local bkeys = bucket_keys(6)
local n = #bkeys
local op = ARGV[1]

if op == 'admit' then
  if ARGV[2] == '1' then
    local hit = redis.call('GET', KEYS[1])
    if hit then return {'cached', 0, 0, now_us, 0, 0, '', hit} end
  end
  local m = tonumber(ARGV[9 + 3 * n])
  if m == 0 then return {'miss', 0, 0, now_us, 0, 0, '', ''} end
  if redis.call('GET', KEYS[2]) == '1' then return {'paused', 0, 0, now_us, 0, 0, '', ''} end
  local br = br_load(KEYS[3], KEYS[4], now_ms, ARGV, 3)
  local room, probe = br_room(br)
  if room == 0 then return {'open', 0, 0, now_us, 0, 0, br_effective(br), ''} end
  local cw = cooldown_left_us(KEYS[5], now_us)
  if cw then return {'ok', 0, cw, now_us, -1, probe, br_effective(br), ''} end
  local b = bk_load(bkeys, n, ARGV, 9, now_us)
  local horizon = tonumber(ARGV[10 + 3 * n + m * n] or '0')
  local granted, wait, blocker, starts = bk_take(b, n, ARGV, 10 + 3 * n, m, room, now_us, horizon)
  if wait > 0 and ARGV[11 + 3 * n + m * n] == '1' then
    local bk = b[blocker]
    local need = tonumber(ARGV[10 + 3 * n + granted * n + blocker - 1])
    if need > bk.cap then need = bk.cap end
    local at = now_us + wait
    if redis.call('EXISTS', bk.key) == 1 then  -- stored (a full bucket refuses nothing)
      local prev = tonumber(redis.call('HGET', bk.key, 'a') or '0') or 0
      if prev >= at then at = prev + math.ceil(need * 1000000 / bk.rate) end
      redis.call('HSET', bk.key, 'a', string.format('%.17g', at))
      wait = at - now_us
    end
  end
  br_take(br, granted)
  local status = 'ok'
  if granted < m and wait == 0 then status = 'full' end
  return bk_starts(starts, bk_levels(b, n, {status, granted, wait, now_us, blocker, probe, br_effective(br), ''}))
elseif op == 'settle' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[2])) then
    return {0, br_effective(br_load(KEYS[2], KEYS[3], now_ms, ARGV, 3))}
  end
  bk_adjust(bk_load(bkeys, n, ARGV, 14, now_us), n, now_us)
  local br = br_load(KEYS[2], KEYS[3], now_ms, ARGV, 3)
  if ARGV[9] ~= '' then br_record(br, ARGV[9] == 'ok', ARGV[10] == '1') end
  local cool = tonumber(ARGV[11])
  if cool > 0 then cooldown_extend(KEYS[4], now_ms, cool) end
  local ttl = tonumber(ARGV[12])
  if ttl > 0 then redis.call('SET', KEYS[5], ARGV[13], 'PX', ttl) end
  return {1, br_effective(br)}
end
return redis.error_reply('call: unknown op ' .. tostring(op))
"""
)
