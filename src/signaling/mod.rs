//! The browsers' edge: who is signing in, and the versioned protocol on `/ws`.
//!
//! **Owns**
//! - [`auth`]: the directory of people (from `[[people]]`, or the sandbox's demo people), the
//!   sign-in sessions (tokens), the sign-in throttle, the `/api/login`, `/api/logout`,
//!   `/api/me` and `/api/people` routes, and the [`auth::Authenticated`] extractor every other
//!   `/api/*` route and `/ws` use.
//! - [`tokens`]: the pure session table, time passed in.
//! - [`throttle`]: the pure sign-in throttle, time passed in.
//! - [`protocol`]: the typed messages of `/ws` (documented in `docs/protocol.md`).
//! - [`ws`]: one task per WebSocket session, translating messages to the call centre's commands
//!   and its notices back; it decides nothing itself.
//!
//! **Does not touch**: calls, queues, presence or media. A person's queues are names here; what
//! a queue is, and who gets the next call, is `routing`'s.
//!
//! **Invariants**
//! - A password is checked only against an argon2id hash, on a fixed pool of threads that each
//!   reuse one argon2 memory block, behind a bounded queue (503 past it); an unknown id costs
//!   the same check against a dummy hash with the largest configured parameters and gets the
//!   same answer as a wrong password.
//! - A name's sign-in block stops only the addresses that failed for that name.
//! - A token is 256 random bits, handed out once; only its SHA-256 is kept. It expires after
//!   the session lifetime and is gone at sign-out.
//! - Everything held is bounded: sessions per person and in total, throttle entries, password
//!   checks running and waiting, request bodies.
//! - Passwords, tokens and password hashes never reach a log line or a `Debug` print.
//! - Time is read in one place ([`auth::AuthHandle`]); the cores take `now`.

pub mod auth;
pub mod password;
pub mod protocol;
pub mod throttle;
pub mod tokens;
pub mod ws;
