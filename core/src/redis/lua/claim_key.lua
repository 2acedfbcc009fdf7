-- Claims an `Idempotency-Key` for one batch, on Redis Cluster, before any part of the batch is appended
-- (core/src/redis/writer/append_cluster.rs). The claim lives on a partition chosen by the key alone, so the same key with
-- another batch is refused whatever partitions the two batches touch, and of two requests racing under one
-- key with different batches exactly one goes on: the other stores nothing. A retry of the same batch finds
-- its own claim and renews it. (On one node, lua/append.lua does the same in the append itself.)
--
-- KEYS: 1 the claim. ARGV: 1 the batch's fingerprint, 2 the key's retention in ms.
-- Returns 1 when the key is this batch's, 0 when another batch holds it.
local seen = redis.call('GET', KEYS[1])
if seen and seen ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
