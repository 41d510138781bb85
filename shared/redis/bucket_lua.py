"""The token-bucket Lua script: one script, one round trip per operation.

Same arithmetic as :mod:`shared.redis.bucket_math` (same float operations in
the same order), with Redis ``TIME`` (microseconds) as the only clock.

KEYS[1]       cooldown key: integer ms (Redis TIME) until which nothing may start
KEYS[2..n+1]  bucket hashes, fields ``l`` (level, "%.17g") and ``t`` (ts_us)
ARGV[1]       op: ``reserve_many`` | ``adjust`` | ``peek``
ARGV[3i-1], ARGV[3i], ARGV[3i+1]  for bucket i (1-based): rate_per_s, capacity,
              amount (adjust: delta, > 0 gives back, < 0 takes more;
              peek, reserve_many: ignored)
ARGV[3n+2]    reserve_many only: m, the number of requests of the batch, followed
              by their costs row by row: ARGV[3n+2 + (j-1)*n + i] = cost of
              request j (1-based) in bucket i

Reply: {granted, wait_us, now_us, blocker, level_1, ..., level_n}
  reserve_many  cooldown active: {0, remaining_us, now_us, -1} (no levels);
           else granted = how many of the m requests, in order, were taken,
           each from every bucket (the first that does not fit in all of them
           stops the batch); wait_us = how long that first refused one waits,
           blocker = index of the bucket that waits longest for it; levels
           after the takes, as strings (stored only when granted > 0).
  adjust   {1, 0, now_us, 0, levels...}: level + delta, capped at capacity.
           With ARGV[3n+2] = a TTL in ms, KEYS[1] is the reservation's settle
           marker instead of the cooldown key: set (NX, that TTL) with the
           write, and when it already exists nothing is written and the reply
           is {0, 0, now_us, 0, levels...} (settled before).
  peek     refilled levels, nothing written.
Written buckets get PEXPIRE = time until they would be full again + 1 s, so an
idle bucket disappears exactly when it is indistinguishable from a missing one.
"""

from __future__ import annotations

BUCKET_LUA = r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local n = #KEYS - 1

local function load(i)
  local rate = tonumber(ARGV[3 * i - 1])
  local cap = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local v = redis.call('HMGET', KEYS[i + 1], 'l', 't')
  local level = cap
  if v[1] then
    local dt = now - tonumber(v[2])
    if dt < 0 then dt = 0 end
    level = tonumber(v[1]) + dt * rate / 1000000
    if level > cap then level = cap end
  end
  return {rate, cap, amount, level}
end

local function store(i, s, level)
  redis.call('HSET', KEYS[i + 1], 'l', string.format('%.17g', level), 't', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[i + 1], math.ceil((s[2] - level) * 1000 / s[1]) + 1000)
end

-- Microseconds left of the provider's cooldown, or nil when there is none.
local function cooldown_wait()
  local until_ms = tonumber(redis.call('GET', KEYS[1]) or '')
  if until_ms and now / 1000 < until_ms then
    return until_ms * 1000 - now
  end
  return nil
end

if op == 'reserve_many' then
  local cw = cooldown_wait()
  if cw then return {0, cw, now, -1} end
  local m = tonumber(ARGV[3 * n + 2])
  local st = {}
  local levels = {}
  for i = 1, n do
    st[i] = load(i)
    levels[i] = st[i][4]
  end
  local granted, wait, blocker = 0, 0, 0
  for j = 1, m do
    local base = 3 * n + 2 + (j - 1) * n
    for i = 1, n do
      local need = tonumber(ARGV[base + i])
      if need > st[i][2] then need = st[i][2] end
      if levels[i] < need then
        local w = math.ceil((need - levels[i]) * 1000000 / st[i][1])
        if w > wait then wait = w; blocker = i end
      end
    end
    if wait > 0 then break end
    for i = 1, n do
      levels[i] = levels[i] - tonumber(ARGV[base + i])
    end
    granted = granted + 1
  end
  local out = {granted, wait, now, blocker}
  for i = 1, n do
    if granted > 0 then store(i, st[i], levels[i]) end
    out[4 + i] = string.format('%.17g', levels[i])
  end
  return out
elseif op == 'adjust' then
  -- With a TTL, KEYS[1] is the reservation's settle marker: settle it once only,
  -- even when a retry follows a reply that was lost after the write.
  local mark_ttl = tonumber(ARGV[3 * n + 2] or '')
  if mark_ttl and not redis.call('SET', KEYS[1], '1', 'NX', 'PX', mark_ttl) then
    local out = {0, 0, now, 0}
    for i = 1, n do
      out[4 + i] = string.format('%.17g', load(i)[4])
    end
    return out
  end
  local out = {1, 0, now, 0}
  for i = 1, n do
    local s = load(i)
    local level = s[4] + s[3]
    if level > s[2] then level = s[2] end
    store(i, s, level)
    out[4 + i] = string.format('%.17g', level)
  end
  return out
elseif op == 'peek' then
  local out = {1, 0, now, 0}
  for i = 1, n do
    out[4 + i] = string.format('%.17g', load(i)[4])
  end
  return out
end
return redis.error_reply('bucket: unknown op ' .. tostring(op))
"""
