//! Password hashing and checking: argon2id with the OWASP minimum parameters (m=19456 KiB, t=2,
//! p=1). Both are CPU- and memory-heavy: sign-ins check on a [`Checker`], a fixed pool of
//! threads with a bounded queue, and each of its threads reuses one argon2 memory block.
//!
//! Why the reuse: argon2 needs `m` KiB per check. Allocated afresh on whichever thread runs the
//! check, glibc serves it from that thread's arena once its mmap threshold has risen, and keeps
//! it there after the free: a burst of checks on the blocking pool left ~19 MiB per thread held
//! for good (800 sign-ins: 19 → ~800 MiB). A worker that owns its block never frees it, so what
//! checks cost in memory is `workers × m`, paid once.

use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::config::PasswordHash;

/// The cost parameters every new hash gets: memory in KiB, iterations, parallelism.
pub const PARAMS: (u32, u32, u32) = (19_456, 2, 1);

/// Longest password accepted, in bytes: longer ones cost more to hash and help nobody.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is empty.
    #[error("the password is empty")]
    Empty,
    /// The password is longer than [`MAX_PASSWORD_BYTES`].
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// argon2 refused (it does not for the parameters here).
    #[error("argon2: {0}")]
    Argon2(argon2::password_hash::Error),
}

/// An argon2id hasher with [`PARAMS`].
fn hasher() -> Argon2<'static> {
    let (m, t, p) = PARAMS;
    // The parameters are constants within argon2's bounds.
    let params = Params::new(m, t, p, None).expect("PARAMS are valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh random salt into a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash(password: &str) -> Result<PasswordHash, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let salt = SaltString::generate(&mut OsRng);
    let phc = hasher()
        .hash_password(password.as_bytes(), &salt)
        .map_err(PasswordError::Argon2)?
        .to_string();
    // What argon2 just wrote is a PHC string PasswordHash accepts.
    Ok(PasswordHash::parse(&phc).expect("argon2 writes valid PHC strings"))
}

/// True when `password` matches `hash`. Takes as long for a wrong password as for a right one.
/// Allocates the hash's memory for this one check: sign-ins use a [`Checker`] instead.
pub fn verify(hash: &PasswordHash, password: &str) -> bool {
    verify_with(&mut Vec::new(), hash, password).unwrap_or(false)
}

/// Why a hash could not be checked at all (so no argon2 work was done). `PasswordHash` is
/// checked at load, so none of these happens to a configured hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a PHC string, or one without salt or hash.
    #[error("not an argon2 PHC string with salt and hash")]
    Malformed,
    /// argon2 refused the parameters or the inputs.
    #[error("argon2 refused the hash's parameters")]
    Argon2,
}

/// As [`verify`], hashing into `memory` (grown to the hash's block count if smaller, never
/// shrunk) so that a caller checking many passwords allocates once. `Ok` means argon2 ran with
/// the hash's own parameters; `Err`, that nothing was computed.
pub fn verify_with(
    memory: &mut Vec<Block>,
    hash: &PasswordHash,
    password: &str,
) -> Result<bool, VerifyError> {
    let parsed = argon2::password_hash::PasswordHash::new(hash.as_phc())
        .map_err(|_| VerifyError::Malformed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(VerifyError::Malformed);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|_| VerifyError::Malformed)?;
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .map_err(|_| VerifyError::Malformed)?;
    let params = Params::try_from(&parsed).map_err(|_| VerifyError::Argon2)?;
    let mut salt_buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buf)
        .map_err(|_| VerifyError::Malformed)?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    let mut out_buf = [0u8; Output::MAX_LENGTH];
    let out = out_buf
        .get_mut(..expected.len())
        .ok_or(VerifyError::Malformed)?;
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
        .map_err(|_| VerifyError::Argon2)?;
    Ok(bool::from(out.ct_eq(expected.as_bytes())))
}

/// The salt of every dummy hash ("switchboarddummy").
const DUMMY_SALT: &str = "c3dpdGNoYm9hcmRkdW1teQ";

/// A hash of a password nobody knows, checked against when the id is unknown so that an unknown
/// id costs what a wrong password costs: its memory, iterations, lanes and output length are
/// each the largest among `hashes` (with none, [`PARAMS`]). An unknown id then costs at least
/// as much as any configured person's wrong password, and exactly as much when, as
/// `switchboard hash-password` makes them, all hashes share their parameters.
pub fn dummy_for<'a>(hashes: impl IntoIterator<Item = &'a PasswordHash>) -> PasswordHash {
    let mut largest: Option<(u32, u32, u32, usize)> = None;
    for h in hashes {
        let Ok(parsed) = argon2::password_hash::PasswordHash::new(h.as_phc()) else {
            continue;
        };
        let Ok(p) = Params::try_from(&parsed) else {
            continue;
        };
        let len = p.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let (m, t, l, o) = largest.unwrap_or((0, 0, 0, 0));
        largest = Some((
            m.max(p.m_cost()),
            t.max(p.t_cost()),
            l.max(p.p_cost()),
            o.max(len),
        ));
    }
    let (m, t, p) = PARAMS;
    let (m, t, p, len) = largest.unwrap_or((m, t, p, Params::DEFAULT_OUTPUT_LEN));
    // Any output length argon2 accepts encodes; 0x5a bytes are no hash anyone will produce
    // knowingly.
    let output = Output::new(&[0x5a; Output::MAX_LENGTH][..len.min(Output::MAX_LENGTH)])
        .map_or_else(|_| String::new(), |o| o.to_string());
    let phc = format!("$argon2id$v=19$m={m},t={t},p={p}${DUMMY_SALT}${output}");
    // Each parameter is one of a valid hash's, and m ≥ 8·p holds for the largest of each as it
    // holds for the hash with the most lanes: the string is valid.
    PasswordHash::parse(&phc).expect("a dummy hash of valid parameters parses")
}

/// The answer of a password check.
pub type Answer = oneshot::Receiver<bool>;

/// The queue of a [`Checker`] is full: answer "busy, try again".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks waiting")]
pub struct QueueFull;

struct Job {
    hash: PasswordHash,
    password: String,
    answer: oneshot::Sender<bool>,
}

/// A fixed pool of threads checking passwords, with a bounded queue of checks waiting. Each
/// thread keeps one argon2 memory block for every check it runs (see the module's docs).
/// Dropping the checker lets the threads finish the check in hand and end; the drop waits for
/// them.
pub struct Checker {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("workers", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Checker {
    /// `workers` threads, and at most `queue` checks waiting for one.
    pub fn new(workers: NonZeroUsize, queue: NonZeroUsize) -> Checker {
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.get());
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..workers.get())
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("password-{i}"))
                    .spawn(move || work(&rx))
                    .ok()
            })
            .collect();
        Checker {
            jobs: Some(tx),
            threads,
        }
    }

    /// Queues a check of `password` against `hash`; the answer comes on the receiver (closed
    /// without one only if argon2 panicked). Refused at once when the queue is full.
    pub fn submit(&self, hash: PasswordHash, password: String) -> Result<Answer, QueueFull> {
        let (answer, rx) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or(QueueFull)?;
        match jobs.try_send(Job {
            hash,
            password,
            answer,
        }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(QueueFull),
        }
    }

    /// How many threads check passwords.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        // Closing the queue ends each thread after the check in hand.
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One worker: takes checks until the queue closes, hashing each into its own memory.
fn work(jobs: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            // A poisoned lock still guards a valid receiver (nothing panics holding it).
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(job) = job else {
            return;
        };
        if job.answer.is_closed() {
            // The sign-in gave up waiting (its connection went): no check for nobody.
            continue;
        }
        let checked = catch_unwind(AssertUnwindSafe(|| {
            verify_with(&mut memory, &job.hash, &job.password)
        }));
        match checked {
            Ok(right) => {
                let _ = job.answer.send(right.unwrap_or(false));
            }
            // A panic in argon2 is a bug; the memory may be half-written, which is harmless
            // (every check overwrites what it reads), and the sign-in sees the answer dropped.
            Err(_) => drop(job.answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_with_the_owasp_parameters() {
        let h = hash("correct horse").unwrap();
        assert!(
            h.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.as_phc()
        );
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horse "));
        assert!(!format!("{h:?}").contains("argon2id$"));
        assert!(matches!(hash(""), Err(PasswordError::Empty)));
    }

    /// (m, t, p, output length) of a hash.
    fn params_of(h: &PasswordHash) -> (u32, u32, u32, usize) {
        let parsed = argon2::password_hash::PasswordHash::new(h.as_phc()).unwrap();
        let p = Params::try_from(&parsed).unwrap();
        (p.m_cost(), p.t_cost(), p.p_cost(), p.output_len().unwrap())
    }

    fn hash_with(m: u32, t: u32, p: u32, len: usize) -> PasswordHash {
        let params = Params::new(m, t, p, Some(len)).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        PasswordHash::parse(&phc).unwrap()
    }

    #[test]
    fn the_dummy_hash_has_the_largest_parameters_in_use() {
        // No configured hash: the parameters `hash` uses.
        assert_eq!(
            params_of(&dummy_for(std::iter::empty())),
            (19_456, 2, 1, 32)
        );
        // Hashes made elsewhere, each the largest in one parameter.
        let hashes = [
            hash_with(64, 5, 1, 32),
            hash_with(256, 1, 2, 16),
            hash_with(128, 2, 4, 48),
        ];
        let d = dummy_for(&hashes);
        assert_eq!(params_of(&d), (256, 5, 4, 48));
        // It costs a real check: argon2 ran with all of its memory, and nothing matches.
        let mut memory = Vec::new();
        assert_eq!(verify_with(&mut memory, &d, "pw"), Ok(false));
        assert_eq!(memory.len(), 256);
        assert_eq!(verify_with(&mut memory, &d, ""), Ok(false));
        // One person with the default hash: exactly its parameters.
        let one = [hash("x").unwrap()];
        assert_eq!(params_of(&dummy_for(&one)), params_of(&one[0]));
    }

    #[test]
    fn reused_memory_checks_hashes_of_any_parameters() {
        let mut memory = Vec::new();
        let small = hash_with(64, 3, 1, 32);
        let large = hash_with(512, 1, 2, 32);
        for _ in 0..2 {
            assert_eq!(verify_with(&mut memory, &large, "pw"), Ok(true));
            assert_eq!(verify_with(&mut memory, &small, "pw"), Ok(true));
            assert_eq!(verify_with(&mut memory, &small, "pw "), Ok(false));
        }
        assert_eq!(memory.len(), 512, "grown to the largest, never shrunk");
    }

    #[tokio::test]
    async fn the_checker_answers_and_refuses_past_its_queue() {
        let one = NonZeroUsize::MIN;
        let checker = Checker::new(one, one);
        assert_eq!(checker.workers(), 1);
        let h = hash_with(64, 1, 1, 32);
        let right = checker.submit(h.clone(), "pw".into()).unwrap();
        assert!(right.await.unwrap());
        let wrong = checker.submit(h.clone(), "no".into()).unwrap();
        assert!(!wrong.await.unwrap());
        // One check running and one waiting fill a queue of one: submitting faster than a
        // check takes (milliseconds each, here) is refused before long.
        let h = hash_with(4096, 2, 1, 32);
        let mut held = Vec::new();
        let refused = (0..1000).any(|_| match checker.submit(h.clone(), "pw".into()) {
            Ok(rx) => {
                held.push(rx);
                false
            }
            Err(QueueFull) => true,
        });
        assert!(refused, "a queue of one is full at some point");
        for rx in held {
            assert!(rx.await.unwrap());
        }
    }

    #[test]
    fn phc_strings_other_than_argon2id_are_refused() {
        for bad in [
            "",
            "hunter2",
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$argon2id$v=16$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
