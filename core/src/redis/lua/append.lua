-- Appends a group of batches to the log: one entry per partition, whose one field holds the `<video id>
-- <count>` lines (core/src/lines.rs) of every batch of the group that touches the partition; views their
-- producer dated go into one more entry per partition and 5-second slice, with the slice's start beside the
-- lines (field ARGV[8], core/src/batch.rs), so the workers count them at their own time. The receiver
-- groups the batches that arrive together (core/src/redis/writer/append.rs), so each partition gets one entry
-- per group rather than one per batch. On one node the script is given every partition the group touches
-- and stores what it writes whole or not at all; on Redis Cluster it is given the partitions one primary
-- serves (writer/nodes.rs), or one partition, and each batch's key makes the batch whole across partitions.
--
-- Keys of several slots: Redis Cluster refuses a call whose declared keys span slots, but lets a script
-- without a shebang (so without flags) touch undeclared keys of any slot its node serves. Such a call declares
-- one key (for routing) and names every key in ARGV; before writing anything it reads each of them (the logs,
-- and every guard, looked up whatever the caller asked), because a key the node does not serve now (its slot
-- moved, or it is missing while its slot migrates) fails the script at that command, and what was written
-- before it would stay. Failing at a read writes nothing, and the caller sends the partitions again one by
-- one.
-- A script rather than MULTI/EXEC because the client drops a timed-out single command instead of sending it
-- after a reconnect; a timed-out transaction could otherwise be written later, after the caller answered 503.
--
-- A script that reaches Redis late (Redis was frozen, or slow, while the caller's command timed out and it
-- answered 503) must write nothing: ARGV[1] is the caller's deadline on Redis's clock, checked first.
--
-- A batch may have a guard: the record of its `Idempotency-Key` (its fingerprint, the SHA-1 of the whole
-- batch, kept ARGV[4] ms). On one node that is the key's claim for the whole batch (lua/claim_key.lua says
-- why it lives on a partition of its own); on a cluster, the key's record on this partition: a string of its
-- own, or for the keys topk generated for one group append, a field of a hash the group's batches share (one
-- key and one write per partition for the whole group, keys.rs). When asked to
-- check it (a key that may have been used before), a guard that holds another fingerprint refuses the batch
-- (nothing of it written), and one that holds this batch's says it is stored already (its lines are skipped,
-- the record's expiry renewed: a write that makes a following WAIT cover the earlier entry). Each guard is
-- written with the entry that carries its batch.
--
-- KEYS: the partitions' logs, then the guards; or, for keys of several slots, one key that routes the call.
-- ARGV: 1 deadline (ms, Redis clock), 2 entry id ('*' or '<ms>-*'), 3 the entries' field name, 4 the guards'
-- retention in ms, 5 '1' when the caller will wait for replicas, 6 the number of logs, 7 the number of
-- batches, 8 the event time's field name, 9 n: 0 when KEYS names the keys, else the number of keys named next
-- (in the order KEYS would hold them), then per batch: its fingerprint, its guard's index in the keys (0:
-- none), '1' to check the guard first, its field in the guard ('' when the guard is a string), its number of
-- parts, then per part the index of its log in the keys, its event time in ms ('' when undated) and its lines.
-- Returns {-1} past the deadline (nothing written), else {1, this primary's replication ID when ARGV[5] is
-- '1' (the caller checks the replicas of the very primary that ran the script) or '', then per batch 1
-- (stored), 0 (stored before) or -2 (its key holds another batch)}.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[1]) then
  return {-1}
end
local nlogs, nbatches = tonumber(ARGV[6]), tonumber(ARGV[7])
local K = KEYS
local named = tonumber(ARGV[9])
if named > 0 then
  K = {}
  for k = 1, named do K[k] = ARGV[9 + k] end
  -- Every key read before any write: the logs here, the guards by their lookup below.
  for k = 1, nlogs do redis.call('EXISTS', K[k]) end
end
-- Each batch's arguments.
local batches = {}
local i = 10 + named
for b = 1, nbatches do
  local nparts = tonumber(ARGV[i + 4])
  batches[b] = {fingerprint = ARGV[i], guard = tonumber(ARGV[i + 1]), check = ARGV[i + 2], field = ARGV[i + 3],
    nparts = nparts, first = i + 5}
  i = i + 5 + 3 * nparts
end
-- The guards looked up, every one before anything is written: a string guard with GET, the fields a hash
-- guard holds for this call's batches (a group's generated keys) with one HMGET.
local asked, hashes = {}, {}
for _, batch in ipairs(batches) do
  if batch.guard > 0 and (batch.check == '1' or named > 0) then
    if batch.field == '' then
      batch.seen = redis.call('GET', K[batch.guard])
    else
      local fields = asked[batch.guard]
      if not fields then
        fields = {}
        asked[batch.guard] = fields
        hashes[#hashes + 1] = batch.guard
      end
      fields[#fields + 1] = batch
    end
  end
end
for _, g in ipairs(hashes) do
  local fields = asked[g]
  for from = 1, #fields, 1000 do
    local to = math.min(from + 999, #fields)
    local names = {}
    for j = from, to do names[j - from + 1] = fields[j].field end
    local got = redis.call('HMGET', K[g], unpack(names))
    for j = from, to do fields[j].seen = got[j - from + 1] end
  end
end
-- Per log, the undated lines; per log and event time, the dated ones (in the order first seen).
local lines, dated, order = {}, {}, {}
for k = 1, nlogs do lines[k] = {} end
local results, strings, touched, fields_of = {}, {}, {}, {}
-- The guards to renew or to set fields of, each written once for all its batches (`fields_of[g]`: the field
-- and value pairs to set).
local function touch(g)
  if not fields_of[g] then
    fields_of[g] = {}
    touched[#touched + 1] = g
  end
  return fields_of[g]
end
-- What each guard holds once the batches before in this call are taken (guard index and field -> fingerprint):
-- a key sent twice in one group (a producer's retry while its first request still waited to be appended) is
-- stored once, and the same key with another batch is refused, as in two calls.
local holds = {}
for b, batch in ipairs(batches) do
  local id, seen = batch.guard .. ' ' .. batch.field, batch.seen
  if holds[id] ~= nil then seen = holds[id] end
  local outcome = 1
  if seen == batch.fingerprint then
    outcome = 0
  elseif seen then
    outcome = -2
  end
  if batch.guard > 0 then holds[id] = seen or batch.fingerprint end
  if outcome == 0 then
    touch(batch.guard)
  elseif outcome == 1 then
    local at0 = batch.first
    for part = 0, batch.nparts - 1 do
      local log, at = tonumber(ARGV[at0 + 3 * part]), ARGV[at0 + 3 * part + 1]
      local into = lines[log]
      if at ~= '' then
        local slot = log .. ' ' .. at
        into = dated[slot]
        if not into then
          into = {}
          dated[slot] = into
          order[#order + 1] = {log, at, into}
        end
      end
      into[#into + 1] = ARGV[at0 + 3 * part + 2]
    end
    if batch.guard > 0 then
      if batch.field == '' then
        strings[#strings + 1] = batch
      else
        local set = touch(batch.guard)
        set[#set + 1] = batch.field
        set[#set + 1] = batch.fingerprint
      end
    end
  end
  results[b] = outcome
end
for k = 1, nlogs do
  if #lines[k] > 0 then
    redis.call('XADD', K[k], ARGV[2], ARGV[3], table.concat(lines[k]))
  end
end
for _, d in ipairs(order) do
  redis.call('XADD', K[d[1]], ARGV[2], ARGV[3], table.concat(d[3]), ARGV[8], d[2])
end
for _, batch in ipairs(strings) do
  redis.call('SET', K[batch.guard], batch.fingerprint, 'PX', ARGV[4])
end
-- A hash guard's new fields, and the expiry of every guard touched: renewed for the retention, or kept when
-- longer (a hash holds other batches' records, which a caller with a shorter retention must not cut short).
-- The renewal is a write even for a batch found stored before, so that a following WAIT covers the earlier
-- entry.
for _, g in ipairs(touched) do
  local set = fields_of[g]
  for from = 1, #set, 2000 do
    redis.call('HSET', K[g], unpack(set, from, math.min(from + 1999, #set)))
  end
  redis.call('PEXPIRE', K[g], math.max(tonumber(ARGV[4]), redis.call('PTTL', K[g])))
end
local replid = ''
if ARGV[5] == '1' then
  replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
end
local reply = {1, replid}
for b = 1, nbatches do reply[b + 2] = results[b] end
return reply
