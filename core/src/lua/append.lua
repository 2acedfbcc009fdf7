-- Appends one batch to the log, all or nothing: per partition it touches, one entry (or several of at most
-- 2000 videos, since Lua's unpack is bounded by its C stack).
-- A script rather than MULTI/EXEC because the client drops a timed-out single command instead of sending it
-- after a reconnect; a timed-out transaction could otherwise be written later, after the caller answered 503.
--
-- A script that reaches Redis late (Redis was frozen, or slow, while the caller's command timed out and it
-- answered 503) must write nothing: ARGV[1] is the caller's deadline on Redis's clock, checked first.
--
-- KEYS: the partitions' logs. ARGV: 1 deadline (ms, Redis clock), 2 entry id ('*' or '<ms>-*'), then per key:
-- n pairs, then the pairs (video id, count). Returns the number of entries written, or -1 past the deadline.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[1]) then
  return -1
end
local i, entries = 3, 0
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  local first, last = i + 1, i + 2 * n
  for from = first, last, 4000 do
    -- The pairs go straight from ARGV: no table is built per entry.
    redis.call('XADD', KEYS[k], ARGV[2], unpack(ARGV, from, math.min(from + 3999, last)))
    entries = entries + 1
  end
  i = last + 1
end
return entries
