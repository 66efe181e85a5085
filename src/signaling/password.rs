//! Password hashing and checking: argon2id with the OWASP minimum parameters (m=19456 KiB, t=2,
//! p=1). Both functions are CPU- and memory-heavy: call them on the blocking pool.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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
pub fn verify(hash: &PasswordHash, password: &str) -> bool {
    let Ok(parsed) = argon2::password_hash::PasswordHash::new(hash.as_phc()) else {
        return false;
    };
    // The hash's own parameters are used, whatever they are (checked at load).
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash of a password nobody knows, with [`PARAMS`]: checked against when the id is unknown,
/// so that an unknown id costs as much as a wrong password.
pub(crate) const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3dpdGNoYm9hcmRkdW1teQ$7zG0cGmV8v3rT3X4cN2t0m0G0yW4kS8b2n0uQy1dY0Q";

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

    #[test]
    fn the_dummy_hash_parses_and_matches_nothing_likely() {
        let d = PasswordHash::parse(DUMMY_PHC).unwrap();
        assert!(!verify(&d, ""));
        assert!(!verify(&d, "password"));
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
