-- Appends one batch, or one partition's part of it, to the log: one entry per partition, whose one field
-- holds the partition's `<video id> <count>` lines (see core/src/lines.rs). The script stores what it is given
-- whole or not at all; on Redis Cluster it is given one partition (every key of a script must share a slot),
-- and the batch's key makes it whole (core/src/redis/append.rs).
-- A script rather than MULTI/EXEC because the client drops a timed-out single command instead of sending it
-- after a reconnect; a timed-out transaction could otherwise be written later, after the caller answered 503.
--
-- A script that reaches Redis late (Redis was frozen, or slow, while the caller's command timed out and it
-- answered 503) must write nothing: ARGV[1] is the caller's deadline on Redis's clock, checked first.
--
-- With an `Idempotency-Key` (ARGV[4] > 0), each partition's entry is written together with the key's record
-- on that partition: the batch's fingerprint (ARGV[5], the SHA-1 of the whole batch), kept ARGV[4] ms. A
-- partition that already holds the record is skipped, so a batch sent again is stored once; its record's
-- expiry is renewed, a write that makes a following WAIT cover the earlier entry. The same key with another
-- batch is refused before anything is written.
--
-- On one node the key is also claimed for the whole batch first (ARGV[7] = '1', the claim the last KEY; see
-- lua/claim_key.lua): the same key with another batch is refused even when the two share no partition. On a
-- cluster the caller claims it with lua/claim_key.lua before the parts.
--
-- KEYS: the partitions' logs, then (with a key) the key's record on each of them, in the same order, then
-- the key's claim when ARGV[7] is '1'.
-- ARGV: 1 deadline (ms, Redis clock), 2 entry id ('*' or '<ms>-*'), 3 the entries' field name, 4 the key's
-- retention in ms (0: no key), 5 the batch's fingerprint (with a key), 6 '1' when the caller will wait for
-- replicas, 7 '1' when the last KEY is the key's claim, then per partition its lines.
-- Returns {the entries written (0: every partition already had this batch), -1 past the deadline, or -2 when
-- the key was used for another batch}, followed, when ARGV[6] is '1' and something may need replicating, by
-- this primary's replication ID (the caller checks the replicas of the very primary that ran the script).
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[1]) then
  return {-1}
end
local n = #ARGV - 7
local keyed = tonumber(ARGV[4]) > 0
local stored = {}
if ARGV[7] == '1' then
  local claim = KEYS[#KEYS]
  local holder = redis.call('GET', claim)
  if holder and holder ~= ARGV[5] then
    return {-2}
  end
  redis.call('SET', claim, ARGV[5], 'PX', ARGV[4])
end
if keyed then
  for k = 1, n do
    local seen = redis.call('GET', KEYS[n + k])
    if seen then
      if seen ~= ARGV[5] then
        return {-2}
      end
      stored[k] = true
    end
  end
end
local written = 0
for k = 1, n do
  if stored[k] then
    redis.call('PEXPIRE', KEYS[n + k], ARGV[4])
  else
    redis.call('XADD', KEYS[k], ARGV[2], ARGV[3], ARGV[7 + k])
    if keyed then
      redis.call('SET', KEYS[n + k], ARGV[5], 'PX', ARGV[4])
    end
    written = written + 1
  end
end
if ARGV[6] == '1' then
  return {written, string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')}
end
return {written}
