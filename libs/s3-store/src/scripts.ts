/**
 * The Lua scripts of the Redis index. Every script touches the keys of one mailbox only, and all
 * of them share the hash tag `{m:<mailboxId>}`, so each runs in one Cluster slot.
 *
 * Keys of a mailbox (`<prefix>{m:<id>}` then):
 *   :idx      HASH  message id -> canonical size (the listing; ids sort in delivery order)
 *   :tot      HASH  count, octets (quota totals), fence (highest fencing token handed out)
 *   :lock     STRING token of the session holding the maildrop, with a PX expiry
 *   :pending  SET   ids committed deleted whose objects may still exist in S3
 *   :done     STRING token of the last accepted commit (PX), so a retried commit is answered
 *   :login    STRING the last login (LOGIN-DELAY), PX the delay
 *
 * Every script is idempotent for the same arguments, so a command re-sent after a reconnect (or
 * retried after a timeout) cannot apply twice.
 */

/**
 * Late-arrival guard: a script queued while Redis was unreachable (ioredis resends after a
 * reconnect) may reach Redis after the caller gave up and answered its client (`451`, `-ERR
 * [SYS/TEMP]`). Such a script must change nothing, or a delivery the MTA will retry would be
 * indexed anyway, and a QUIT the client saw fail would still delete. The caller passes the time
 * (ms, Unix) after which it no longer waits; 0 means no deadline. Clocks of the gateways and
 * Redis are assumed to agree to well within a command timeout (NTP).
 */
const LATE = (arg: string): string => `
if tonumber(${arg}) > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(${arg}) then return -1 end
end`;

export interface ScriptDefinition {
  readonly numberOfKeys: number;
  readonly lua: string;
}

/**
 * Take the maildrop lock and return the index snapshot in the same round trip.
 * KEYS: lock, tot, idx. ARGV: token, ttl ms, deadline (see LATE).
 * Returns -1 past the deadline, nil when someone else holds the lock, else { fence, { id, size, id, size, ... } }.
 * Re-sent with a token that already holds the lock (reconnect), it answers the same way again.
 */
export const ACQUIRE: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `${LATE('ARGV[3]')}
local holder = redis.call('GET', KEYS[1])
local fence
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  fence = redis.call('HINCRBY', KEYS[2], 'fence', 1)
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  fence = tonumber(redis.call('HGET', KEYS[2], 'fence'))
else
  return false
end
return { fence, redis.call('HGETALL', KEYS[3]) }
`,
};

/** Compare-and-PEXPIRE. KEYS: lock. ARGV: token, ttl ms. Returns 1 when renewed, 0 when not ours. */
export const RENEW: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`,
};

/** Compare-and-delete. KEYS: lock. ARGV: token. Returns 1 when released, 0 when not ours. */
export const RELEASE: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`,
};

/**
 * QUIT: check the lease, move the DELE'd ids from the index to the pending set, adjust the
 * totals and release the lock, atomically.
 * KEYS: lock, tot, idx, pending, done. ARGV: token, fence, done ttl ms, deadline (see LATE), ids...
 * An empty token means an unfenced commit (a lease from another lock manager): no lock checks.
 * Returns 1 when applied, 2 when this token's commit was applied before (a retry), 0 when the
 * lock or the fence is not ours (nothing changed), -1 past the deadline (nothing changed).
 */
export const COMMIT: ScriptDefinition = {
  numberOfKeys: 5,
  lua: `
local fenced = ARGV[1] ~= ''
if fenced then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    if redis.call('GET', KEYS[5]) == ARGV[1] then return 2 end
    return 0
  end
  if tonumber(redis.call('HGET', KEYS[2], 'fence')) ~= tonumber(ARGV[2]) then return 0 end
end
${LATE('ARGV[4]')}
local n = 0
local octets = 0
for i = 5, #ARGV do
  local size = redis.call('HGET', KEYS[3], ARGV[i])
  if size then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('SADD', KEYS[4], ARGV[i])
    n = n + 1
    octets = octets + tonumber(size)
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[2], 'count', -n)
  redis.call('HINCRBY', KEYS[2], 'octets', -octets)
end
if fenced then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[3])
end
return 1
`,
};

/**
 * Delivery: index one stored object, checking the quota atomically.
 * KEYS: idx, tot. ARGV: id, size, max octets (0: none), max messages (0: none), deadline (see LATE).
 * Returns 1 when indexed (or already indexed: a retry), 0 when over quota (nothing changed), -1
 * past the deadline (nothing changed).
 */
export const INDEX: ScriptDefinition = {
  numberOfKeys: 2,
  lua: `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
${LATE('ARGV[5]')}
local count = tonumber(redis.call('HGET', KEYS[2], 'count') or '0')
local octets = tonumber(redis.call('HGET', KEYS[2], 'octets') or '0')
local size = tonumber(ARGV[2])
local maxOctets = tonumber(ARGV[3])
local maxMessages = tonumber(ARGV[4])
if maxMessages > 0 and count + 1 > maxMessages then return 0 end
if maxOctets > 0 and octets + size > maxOctets then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('HINCRBY', KEYS[2], 'octets', size)
return 1
`,
};

/**
 * Orphan check for the sweeper: of these ids (objects found in S3), the ones neither indexed nor
 * pending. Nothing while the maildrop lock is held (a rebuild may be indexing).
 * KEYS: idx, pending, lock. ARGV: ids...
 */
export const ORPHANS: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local out = {}
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 and redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 0 then
    out[#out + 1] = ARGV[i]
  end
end
return out
`,
};

/**
 * Rebuild, one batch of listed objects: index those neither indexed nor pending, while the
 * rebuild's own lease holds the lock. KEYS: lock, idx, pending. ARGV: token, id, size, id, size...
 * Returns the number added, or -1 when the lock is not ours.
 */
export const REBUILD_ADD: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local added = 0
for i = 2, #ARGV, 2 do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 0 then
    added = added + redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return added
`,
};

/**
 * Rebuild, last step: recompute the totals from the index, and raise the fence to at least the
 * server time in microseconds, so fencing tokens handed out after a rebuild are above any handed
 * out before, even when the whole index (fence included) was lost. KEYS: lock, idx, tot.
 * ARGV: token. Returns { count, octets }, or nil when the lock is not ours.
 */
export const REBUILD_TOTALS: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local sizes = redis.call('HVALS', KEYS[2])
local octets = 0
for i = 1, #sizes do octets = octets + tonumber(sizes[i]) end
redis.call('HSET', KEYS[3], 'count', #sizes, 'octets', octets)
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
if tonumber(redis.call('HGET', KEYS[3], 'fence') or '0') < floor then
  redis.call('HSET', KEYS[3], 'fence', string.format('%.0f', floor))
end
return { #sizes, octets }
`,
};

export const SCRIPTS = {
  posternAcquire: ACQUIRE,
  posternRenew: RENEW,
  posternRelease: RELEASE,
  posternCommit: COMMIT,
  posternIndex: INDEX,
  posternOrphans: ORPHANS,
  posternRebuildAdd: REBUILD_ADD,
  posternRebuildTotals: REBUILD_TOTALS,
} as const;

export type ScriptName = keyof typeof SCRIPTS;
