-- Appends one batch to the log, all or nothing: one entry per partition it touches, whose one field holds the
-- partition's `<video id> <count>` lines (see core/src/batch.rs).
-- A script rather than MULTI/EXEC because the client drops a timed-out single command instead of sending it
-- after a reconnect; a timed-out transaction could otherwise be written later, after the caller answered 503.
--
-- A script that reaches Redis late (Redis was frozen, or slow, while the caller's command timed out and it
-- answered 503) must write nothing: ARGV[1] is the caller's deadline on Redis's clock, checked first.
--
-- KEYS: the partitions' logs. ARGV: 1 deadline (ms, Redis clock), 2 entry id ('*' or '<ms>-*'), 3 the entries'
-- field name, then per key its lines. Returns the number of entries written, or -1 past the deadline.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[1]) then
  return -1
end
for k = 1, #KEYS do
  redis.call('XADD', KEYS[k], ARGV[2], ARGV[3], ARGV[3 + k])
end
return #KEYS
