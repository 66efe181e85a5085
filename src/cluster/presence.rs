//! Agents' availability across the cluster, and the atomic choice of the longest-idle one.
//!
//! Each node publishes the agents signed in on it who are available now, with the moment they
//! became available (wall-clock milliseconds: nodes share no monotonic clock), into one sorted
//! set per queue. A call's node takes the set's first member with one Lua script, which also
//! takes the agent out of every other queue's set and reserves it for a few seconds: two nodes
//! asking at the same instant get two different agents. Only the agent's own node rings it;
//! the reservation keeps the periodic re-publication from putting it back before it does.
//!
//! Waiting calls are shared the same way, so that each queue is served first come, first
//! served across the nodes: a call waits on one node, and gets an agent (on any node) only
//! when no older call waits in its queue anywhere.
//!
//! Keys: `switchboard:idle:<queue>` (sorted set: agent → idle-since ms),
//! `switchboard:waiting:<queue>` (sorted set: call → waiting-since ms),
//! `switchboard:waiting-node` (hash: call → node),
//! `switchboard:agent:<agent>` (hash: node, queues), `switchboard:reserved:<agent>`,
//! `switchboard:staffed:<queue>` (hash: node → agents signed in to the queue there).
//!
//! Every change that may let a waiting call be served — an agent newly available or given
//! back, a waiting call leaving the order — is announced on the channel `switchboard:floor`
//! by the script that makes it, so each node serves its waiting calls within a round trip of
//! the change rather than at its next poll ([`crate::cluster::RedisAuthority`]).

use std::time::Duration;

use redis::Script;

use super::{deadline, Cluster, ClusterError, PREFIX};
use crate::ids::WaCallId;

/// Takes the longest-idle agent of a queue whose node is alive, for a call, first come first
/// served: a new call (ARGV[3] empty) gets none while any call waits in the queue on a live
/// node, a waiting call (ARGV[3] its id) only when it is the oldest waiting there; it then
/// leaves the waiting order. Waiting calls of nodes whose lease ran out are dropped from the
/// order on the way. KEYS[1]: the queue's idle agents, KEYS[2]: its waiting calls.
/// ARGV: prefix, reservation ms, call. Returns {agent, node}; {'older', call, node} when an
/// older call waits; nil when no agent is free.
const CLAIM: &str = r#"
local prefix, call = ARGV[1], ARGV[3]
local owners = prefix .. ':waiting-node'
for _ = 1, 64 do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
  if #oldest == 0 or oldest[1] == call then break end
  local node = redis.call('HGET', owners, oldest[1])
  if node and redis.call('EXISTS', prefix .. ':lease:' .. node) == 1 then
    return {'older', oldest[1], node}
  end
  redis.call('ZREM', KEYS[2], oldest[1])
  redis.call('HDEL', owners, oldest[1])
  redis.call('PUBLISH', prefix .. ':floor', 'served')
end
for _ = 1, 64 do
  local top = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #top == 0 then return false end
  local agent = top[1]
  local info = redis.call('HMGET', prefix .. ':agent:' .. agent, 'node', 'queues')
  redis.call('ZREM', KEYS[1], agent)
  if info[2] then
    for q in string.gmatch(info[2], '[^\n]+') do
      redis.call('ZREM', prefix .. ':idle:' .. q, agent)
    end
  end
  if info[1] and redis.call('EXISTS', prefix .. ':lease:' .. info[1]) == 1 then
    redis.call('SET', prefix .. ':reserved:' .. agent, info[1], 'PX', ARGV[2])
    if call ~= '' then
      redis.call('ZREM', KEYS[2], call)
      redis.call('HDEL', owners, call)
      redis.call('PUBLISH', prefix .. ':floor', 'served')
    end
    return {agent, info[1]}
  end
end
return false
"#;

/// Publishes one available agent. KEYS: none. ARGV: prefix, node, agent, idle-since ms,
/// fresh (1: the agent just became available, so any reservation is over), queues….
/// Returns 1 when published, 0 when skipped (still reserved for a call on its way).
const OFFER: &str = r#"
local prefix, node, agent, since, fresh = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local reserved = prefix .. ':reserved:' .. agent
if fresh == '1' then
  redis.call('DEL', reserved)
elseif redis.call('EXISTS', reserved) == 1 then
  return 0
end
local queues = {}
for i = 6, #ARGV do queues[#queues + 1] = ARGV[i] end
redis.call('HSET', prefix .. ':agent:' .. agent, 'node', node, 'queues', table.concat(queues, '\n'), 'since', since)
local added = 0
for _, q in ipairs(queues) do
  added = added + redis.call('ZADD', prefix .. ':idle:' .. q, since, agent)
end
if added > 0 then redis.call('PUBLISH', prefix .. ':floor', 'agent') end
return 1
"#;

/// Takes an agent out of the sets, if this node published it (a person who moved to another
/// node is that node's now). ARGV: prefix, node, agent.
const WITHDRAW: &str = r#"
local prefix, node, agent = ARGV[1], ARGV[2], ARGV[3]
local key = prefix .. ':agent:' .. agent
local info = redis.call('HMGET', key, 'node', 'queues')
if info[1] ~= node then return 0 end
if info[2] then
  for q in string.gmatch(info[2], '[^\n]+') do
    redis.call('ZREM', prefix .. ':idle:' .. q, agent)
  end
end
redis.call('DEL', key)
return 1
"#;

/// Puts back an agent claimed for a call that did not take it, with the idle time it had.
/// ARGV: prefix, agent. Returns 1 when put back.
const GIVE_BACK: &str = r#"
local prefix, agent = ARGV[1], ARGV[2]
if redis.call('DEL', prefix .. ':reserved:' .. agent) == 0 then return 0 end
local info = redis.call('HMGET', prefix .. ':agent:' .. agent, 'node', 'queues', 'since')
if not info[1] or not info[3] then return 0 end
if redis.call('EXISTS', prefix .. ':lease:' .. info[1]) == 0 then return 0 end
for q in string.gmatch(info[2] or '', '[^\n]+') do
  redis.call('ZADD', prefix .. ':idle:' .. q, info[3], agent)
end
redis.call('PUBLISH', prefix .. ':floor', 'agent')
return 1
"#;

/// Withdraws a waiting call, if this node published it. KEYS[1]: the queue's waiting calls.
/// ARGV: prefix, node, call.
const WITHDRAW_WAITING: &str = r#"
local owners = ARGV[1] .. ':waiting-node'
if redis.call('HGET', owners, ARGV[3]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('HDEL', owners, ARGV[3])
redis.call('PUBLISH', ARGV[1] .. ':floor', 'served')
return 1
"#;

/// How long a claimed agent stays out of the sets while the call travels to its node.
pub const RESERVATION: Duration = Duration::from_secs(3);

/// One available agent as its node publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// The agent.
    pub agent: String,
    /// When they became available, in UNIX milliseconds.
    pub since_ms: u64,
    /// The queues they take calls from.
    pub queues: Vec<String>,
}

/// What a waiting call got from [`Cluster::claim_agent_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// An agent, taken for it.
    Agent(Claimed),
    /// No agent is free in its queue on any node.
    NoAgent,
    /// An older call waits in its queue, on `node`: that one first.
    Older {
        /// The older call.
        call: WaCallId,
        /// Its node.
        node: String,
    },
}

/// The agent chosen for a call, and the node it is signed in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The agent.
    pub agent: String,
    /// Its node.
    pub node: String,
}

impl Cluster {
    /// Publishes an available agent of this node. `fresh`: they have just become available
    /// (ends any reservation); otherwise a reserved agent is left out.
    pub async fn offer_agent(&self, idle: &Idle, fresh: bool) -> Result<bool, ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(OFFER);
        let mut inv = script.prepare_invoke();
        inv.arg(PREFIX)
            .arg(&self.node)
            .arg(&idle.agent)
            .arg(idle.since_ms)
            .arg(if fresh { "1" } else { "0" });
        for q in &idle.queues {
            inv.arg(q);
        }
        let n: i64 = deadline(inv.invoke_async(&mut conn)).await??;
        Ok(n == 1)
    }

    /// Withdraws an agent this node published (no longer available, or signed out).
    pub async fn withdraw_agent(&self, agent: &str) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(WITHDRAW);
        let _: i64 = deadline(
            script
                .prepare_invoke()
                .arg(PREFIX)
                .arg(&self.node)
                .arg(agent)
                .invoke_async(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Takes the longest-idle available agent of `queue` across the cluster for one call:
    /// atomically, so no other call can take it too.
    /// For a new call: none while calls wait in the queue on any node (they come first).
    pub async fn claim_agent(&self, queue: &str) -> Result<Option<Claimed>, ClusterError> {
        Ok(match self.claim_for(queue, "").await? {
            Claim::Agent(c) => Some(c),
            _ => None,
        })
    }

    /// Takes the longest-idle available agent of `queue` across the cluster for the waiting
    /// `call`, if no older call waits in that queue on a live node; the call then leaves the
    /// waiting order.
    pub async fn claim_agent_for(
        &self,
        queue: &str,
        call: &WaCallId,
    ) -> Result<Claim, ClusterError> {
        self.claim_for(queue, &call.0).await
    }

    async fn claim_for(&self, queue: &str, call: &str) -> Result<Claim, ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(CLAIM);
        let got: Option<Vec<String>> = deadline(
            script
                .key(idle_key(queue))
                .key(waiting_key(queue))
                .arg(PREFIX)
                .arg(RESERVATION.as_millis() as u64)
                .arg(call)
                .invoke_async(&mut conn),
        )
        .await??;
        Ok(match got.as_deref() {
            Some([agent, node]) => Claim::Agent(Claimed {
                agent: agent.clone(),
                node: node.clone(),
            }),
            Some([_, call, node]) => Claim::Older {
                call: WaCallId(call.clone()),
                node: node.clone(),
            },
            _ => Claim::NoAgent,
        })
    }

    /// Publishes a call waiting in `queue` on this node since `since_ms` (UNIX ms).
    pub async fn offer_waiting(
        &self,
        queue: &str,
        call: &WaCallId,
        since_ms: u64,
    ) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        deadline(
            redis::pipe()
                .atomic()
                .cmd("ZADD")
                .arg(waiting_key(queue))
                .arg(since_ms)
                .arg(&call.0)
                .ignore()
                .cmd("HSET")
                .arg(owners_key())
                .arg(&call.0)
                .arg(&self.node)
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Withdraws a waiting call this node published (answered, handed over or ended).
    pub async fn withdraw_waiting(&self, queue: &str, call: &WaCallId) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(WITHDRAW_WAITING);
        let _: i64 = deadline(
            script
                .key(waiting_key(queue))
                .arg(PREFIX)
                .arg(&self.node)
                .arg(&call.0)
                .invoke_async(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Puts back an agent claimed for a call that did not take it (the call was no longer
    /// waiting, or could not be handed over), with the idle time it had: it is next in line
    /// again at once rather than after its reservation and the next re-publication.
    pub async fn give_back(&self, agent: &str) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let script = Script::new(GIVE_BACK);
        let _: i64 = deadline(
            script
                .prepare_invoke()
                .arg(PREFIX)
                .arg(agent)
                .invoke_async(&mut conn),
        )
        .await??;
        Ok(())
    }

    /// Says how many agents of `queue` are signed in on this node (0 removes the entry).
    pub async fn set_staffed(&self, queue: &str, agents: usize) -> Result<(), ClusterError> {
        let mut conn = self.conn();
        let cmd = if agents == 0 {
            let mut c = redis::cmd("HDEL");
            c.arg(staffed_key(queue)).arg(&self.node);
            c
        } else {
            let mut c = redis::cmd("HSET");
            c.arg(staffed_key(queue)).arg(&self.node).arg(agents);
            c
        };
        deadline(cmd.query_async::<()>(&mut conn)).await??;
        Ok(())
    }

    /// The live node with the most agents signed in to `queue` (this node on a tie), if any
    /// has one: where a call no agent is free for waits.
    pub async fn most_staffed(&self, queue: &str) -> Result<Option<String>, ClusterError> {
        let mut conn = self.conn();
        let all: Vec<(String, u64)> = deadline(
            redis::cmd("HGETALL")
                .arg(staffed_key(queue))
                .query_async(&mut conn),
        )
        .await??;
        let mut best: Option<(u64, bool, String)> = None;
        for (node, n) in all {
            if n == 0 {
                continue;
            }
            let mine = node == self.node;
            if !mine && !self.alive(&node).await? {
                continue;
            }
            if best.as_ref().is_none_or(|b| (n, mine) > (b.0, b.1)) {
                best = Some((n, mine, node));
            }
        }
        Ok(best.map(|b| b.2))
    }
}

fn idle_key(queue: &str) -> String {
    format!("{PREFIX}:idle:{queue}")
}

fn waiting_key(queue: &str) -> String {
    format!("{PREFIX}:waiting:{queue}")
}

fn owners_key() -> String {
    format!("{PREFIX}:waiting-node")
}

fn staffed_key(queue: &str) -> String {
    format!("{PREFIX}:staffed:{queue}")
}
