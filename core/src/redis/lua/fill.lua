-- One step of a leader-set refill (see leaders.lua): HSCAN a chunk of the window's hash and add every video
-- counted at or above the lowered threshold. Each step is short, so Redis never blocks on a large window.
--
-- KEYS: 1 leader state, 2 window hash, 3 leader set
-- ARGV: 1 window name, 2 HSCAN COUNT, 3-5 leader caps (min, keep, max), 6 '1' to scan from the start
-- Returns 0 when no refill is left to run, 1 when the caller must call again.
local L = leaders_open(KEYS[1], ARGV[1], KEYS[2], KEYS[3],
  {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])})
if leaders_fill_step(L, tonumber(ARGV[2]), ARGV[6] == '1') then return 0 end
return 1
