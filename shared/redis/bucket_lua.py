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
              request j (1-based) in bucket i, then (optional, default 0) the
              horizon in microseconds: how far ahead a grant may start

Reply: {granted, wait_us, now_us, blocker, level_1, ..., level_n}
  reserve_many  cooldown active: {0, remaining_us, now_us, -1} (no levels);
           else granted = how many of the m requests, in order, were taken,
           each from every bucket at its start (the first that does not start
           within the horizon stops the batch); wait_us = how long until that
           first refused one would, blocker = index of the bucket that waits
           longest for it; levels after the takes, as strings (stored only when
           granted > 0); then each grant's start, us after now_us.
  adjust   {1, 0, now_us, 0, levels...}: level + delta, capped at capacity.
           With ARGV[3n+2] = a TTL in ms, KEYS[1] is the reservation's settle
           marker instead of the cooldown key: set (NX, that TTL) with the
           write, and when it already exists nothing is written and the reply
           is {0, 0, now_us, 0, levels...} (settled before).
  peek     refilled levels, nothing written.
A bucket is stored with its time: now, or the start of the last grant scheduled
ahead (see :mod:`shared.redis.bucket_math`). Written buckets get PEXPIRE = time
until they would be full again + 1 s, so an idle bucket disappears exactly when
it is indistinguishable from a missing one.

``BUCKET_LIB`` holds the arithmetic as Lua functions (``bk_load``,
``bk_take``, ``bk_adjust``, ``bk_levels``) and ``COOLDOWN_LIB`` the
cooldown's, so the scripts that admit and settle a call
(:mod:`shared.redis.call_lua`) run the same code in their one round trip.
"""

from __future__ import annotations

COOLDOWN_LIB = r"""
-- Microseconds left of a provider's cooldown (key: integer ms of Redis TIME), or nil.
local function cooldown_left_us(key, now_us)
  local until_ms = tonumber(redis.call('GET', key) or '')
  if until_ms and now_us / 1000 < until_ms then
    return until_ms * 1000 - now_us
  end
  return nil
end

-- No call starts for at least `seconds` from now_ms (never shortened); returns until_ms.
local function cooldown_extend(key, now_ms, seconds)
  local want = now_ms + math.ceil(seconds * 1000)
  local until_ms = tonumber(redis.call('GET', key) or '0') or 0
  if want > until_ms then
    until_ms = want
    redis.call('SET', key, string.format('%.17g', want), 'PX', want - now_ms + 1000)
  end
  return until_ms
end
"""

BUCKET_LIB = r"""
-- The bucket keys: KEYS from index `first` on.
local function bucket_keys(first)
  local out = {}
  for i = first, #KEYS do out[#out + 1] = KEYS[i] end
  return out
end

-- n buckets: keys[i], with rate_per_s, capacity, amount at argv[at + 3(i-1) ..], each
-- refilled to its time t: now (us), or its stored time when that lies ahead (scheduled).
local function bk_load(keys, n, argv, at, now)
  local b = {}
  for i = 1, n do
    local j = at + 3 * (i - 1)
    local rate, cap, amount = tonumber(argv[j]), tonumber(argv[j + 1]), tonumber(argv[j + 2])
    local v = redis.call('HMGET', keys[i], 'l', 't')
    local level, t = cap, now
    if v[1] then
      local ts = tonumber(v[2])
      if ts > now then t = ts end
      local dt = t - ts
      level = tonumber(v[1]) + dt * rate / 1000000
      if level > cap then level = cap end
    end
    b[i] = {key = keys[i], rate = rate, cap = cap, amount = amount, level = level, t = t}
  end
  return b
end

-- Store a bucket's level at its time t (ahead of now when scheduled); it expires when
-- it would be full again, plus 1 s.
local function bk_store(bucket, level, t, now)
  bucket.level = level
  bucket.t = t
  redis.call('HSET', bucket.key, 'l', string.format('%.17g', level), 't', string.format('%.17g', t))
  redis.call('PEXPIRE', bucket.key,
    math.ceil((bucket.cap - level) * 1000 / bucket.rate) + math.ceil((t - now) / 1000) + 1000)
end

-- Take for the longest prefix of m requests that each start within `horizon` us of now
-- in every bucket, at most `most` of them (-1: no bound); request j costs
-- argv[at + (j-1)n + i-1] of bucket i. A request starts when its last bucket has its
-- tokens; it is taken from every bucket at that start. Returns granted, the wait (us)
-- until the first refused request would start within the horizon (0: none refused),
-- the index of the bucket it waits longest for, and each grant's start (us after now).
local function bk_take(b, n, argv, at, m, most, now, horizon)
  local levels, times = {}, {}
  for i = 1, n do levels[i] = b[i].level; times[i] = b[i].t end
  local granted, wait, blocker, starts = 0, 0, 0, {}
  for j = 1, m do
    if granted == most then break end
    local base = at - 1 + (j - 1) * n
    local start, first = now, 0
    for i = 1, n do
      local need = tonumber(argv[base + i])
      if need > b[i].cap then need = b[i].cap end
      local e = times[i]
      if levels[i] < need then
        e = e + math.ceil((need - levels[i]) * 1000000 / b[i].rate)
      end
      if e > start then start = e; first = i end
    end
    if start - now > horizon then
      wait = start - now - horizon; blocker = first
      break
    end
    for i = 1, n do
      local level = levels[i]
      if start > times[i] then
        level = level + (start - times[i]) * b[i].rate / 1000000
        if level > b[i].cap then level = b[i].cap end
      end
      levels[i] = level - tonumber(argv[base + i])
      times[i] = start
    end
    granted = granted + 1
    starts[granted] = start - now
  end
  for i = 1, n do
    if granted > 0 then bk_store(b[i], levels[i], times[i], now) else b[i].level = levels[i] end
  end
  return granted, wait, blocker, starts
end

-- Each bucket's level + its amount at its time, capped at capacity.
local function bk_adjust(b, n, now)
  for i = 1, n do
    local level = b[i].level + b[i].amount
    if level > b[i].cap then level = b[i].cap end
    bk_store(b[i], level, b[i].t, now)
  end
end

-- The grants' starts, as integers, appended to out.
local function bk_starts(starts, out)
  for j = 1, #starts do out[#out + 1] = starts[j] end
  return out
end

-- The levels, as strings, appended to out.
local function bk_levels(b, n, out)
  for i = 1, n do
    out[#out + 1] = string.format('%.17g', b[i].level)
  end
  return out
end
"""

BUCKET_LUA = (
    r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""
    + COOLDOWN_LIB
    + BUCKET_LIB
    + r"""
local op = ARGV[1]
local bkeys = bucket_keys(2)
local n = #bkeys

if op == 'reserve_many' then
  local cw = cooldown_left_us(KEYS[1], now)
  if cw then return {0, cw, now, -1} end
  local b = bk_load(bkeys, n, ARGV, 2, now)
  local m = tonumber(ARGV[3 * n + 2])
  local horizon = tonumber(ARGV[3 * n + 3 + m * n] or '0')
  local granted, wait, blocker, starts = bk_take(b, n, ARGV, 3 * n + 3, m, -1, now, horizon)
  return bk_starts(starts, bk_levels(b, n, {granted, wait, now, blocker}))
elseif op == 'adjust' then
  -- With a TTL, KEYS[1] is the reservation's settle marker: settle it once only,
  -- even when a retry follows a reply that was lost after the write.
  local mark_ttl = tonumber(ARGV[3 * n + 2] or '')
  local b = bk_load(bkeys, n, ARGV, 2, now)
  if mark_ttl and not redis.call('SET', KEYS[1], '1', 'NX', 'PX', mark_ttl) then
    return bk_levels(b, n, {0, 0, now, 0})
  end
  bk_adjust(b, n, now)
  return bk_levels(b, n, {1, 0, now, 0})
elseif op == 'peek' then
  return bk_levels(bk_load(bkeys, n, ARGV, 2, now), n, {1, 0, now, 0})
end
return redis.error_reply('bucket: unknown op ' .. tostring(op))
"""
)
