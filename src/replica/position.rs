//! Read-your-own-writes by position: after a session's write, its reads may go to a replica
//! only once that replica has replayed the write. Positions are captured and checked by the
//! sqlx front (feature `sqlx-postgres`); without it only the token type is used.
#![cfg_attr(
    not(any(
        feature = "sqlx-postgres",
        feature = "sqlx-0_8",
        feature = "sqlx-mysql"
    )),
    allow(dead_code)
)]

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

use super::session::SLOTS;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The default cap on how long a session's position keeps its reads away from replicas that
/// have not replayed it.
pub const DEFAULT_POSITION_CAP: Duration = Duration::from_secs(30);

/// The position of a write whose position could not be read: higher than any replica's, so
/// the session's reads go to the primary until the cap.
pub(crate) const UNREAD_POSITION: u64 = u64::MAX;

/// For each slot of sessions, the highest write position to read at, and until when (in
/// nanoseconds after `epoch`) it holds. Lock-free.
pub(crate) struct SessionPositions {
    cap: Duration,
    /// How long a read may wait for a replica to replay its session's position.
    wait: Duration,
    epoch: Instant,
    positions: Box<[AtomicU64]>,
    until: Box<[AtomicU64]>,
}

impl SessionPositions {
    pub(crate) fn new(cap: Duration) -> Self {
        SessionPositions {
            cap,
            wait: Duration::ZERO,
            epoch: Instant::now(),
            positions: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            until: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// With reads waiting up to `wait` for a replica to replay their session's position.
    pub(crate) fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How long a read may wait for a replica to replay its session's position.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// Records that the session in `slot` wrote up to `position`, now.
    pub(crate) fn wrote(&self, slot: usize, position: u64) {
        self.hold(slot, position, self.now().saturating_add(nanos(self.cap)));
    }

    /// The position the session in `slot` must read at, while its cap has not run out.
    pub(crate) fn required(&self, slot: usize) -> Option<u64> {
        let until = self.until[slot].load(Relaxed);
        (until != 0 && self.now() < until).then(|| self.positions[slot].load(Relaxed))
    }

    /// The session's state as a token for another process, or `None` with nothing to carry.
    pub(crate) fn token(&self, slot: usize) -> Option<Token> {
        let position = self.required(slot)?;
        let left = self.until[slot].load(Relaxed).saturating_sub(self.now());
        let expires = SystemTime::now() + Duration::from_nanos(left);
        Some(Token {
            position,
            expires_unix_ms: unix_ms(expires),
        })
    }

    /// Adopts a token from another process. It is untrusted: its expiry is cut to the cap,
    /// so a forged or replayed token can at worst keep the session on the primary that long.
    pub(crate) fn adopt(&self, slot: usize, token: &Token) {
        let left_ms = token
            .expires_unix_ms
            .saturating_sub(unix_ms(SystemTime::now()));
        let left = Duration::from_millis(left_ms).min(self.cap);
        if !left.is_zero() {
            self.hold(slot, token.position, self.now().saturating_add(nanos(left)));
        }
    }

    fn hold(&self, slot: usize, position: u64, until: u64) {
        self.positions[slot].fetch_max(position, Relaxed);
        self.until[slot].fetch_max(until.max(1), Relaxed);
    }

    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// A session's consistency state, for stateless application servers: the position its reads
/// must see and until when. Safe in a cookie or a header (`v1.<position>.<expiry>`, both hex).
///
/// It is untrusted input on the way back in: a router adopts at most its own cap of it, so a
/// forged or replayed token can at worst send that session's reads to the primary until then.
///
/// ```
/// use tower_lb::replica::{Token, TokenError};
///
/// let token: Token = "v1.16b374d848.18c4a1b2c3d".parse()?;
/// assert_eq!(token.to_string(), "v1.16b374d848.18c4a1b2c3d");
/// assert!(matches!("v2.1.2".parse::<Token>(), Err(TokenError::Version(_))));
/// assert!(matches!("v1.zz.2".parse::<Token>(), Err(TokenError::Malformed)));
/// # Ok::<(), TokenError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    position: u64,
    expires_unix_ms: u64,
}

impl Token {
    /// The write position (for PostgreSQL, a WAL LSN) the session's reads must see.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The token signed with HMAC-SHA256 under `key` (`v1.<position>.<expiry>.<signature>`),
    /// for a cookie or header the client could otherwise forge. [`verify`](Self::verify)
    /// reads it back.
    ///
    /// ```
    /// use tower_lb::replica::{Token, TokenError};
    ///
    /// let token: Token = "v1.16b374d848.18c4a1b2c3d".parse()?;
    /// let signed = token.signed(b"a key only the servers know");
    /// assert_eq!(Token::verify(&signed, b"a key only the servers know")?, token);
    /// let forged = signed.replacen("16b374d848", "ffffffffff", 1);
    /// assert_eq!(Token::verify(&forged, b"a key only the servers know"), Err(TokenError::BadSignature));
    /// # Ok::<(), TokenError>(())
    /// ```
    pub fn signed(&self, key: &[u8]) -> String {
        let body = self.to_string();
        let mut signature = String::with_capacity(64);
        for byte in mac(key, &body).finalize().into_bytes() {
            signature.push_str(&format!("{byte:02x}"));
        }
        format!("{body}.{signature}")
    }

    /// Reads a token [`signed`](Self::signed) under `key`, checking the signature in constant
    /// time.
    ///
    /// # Errors
    /// [`TokenError::BadSignature`] for a missing, malformed or wrong signature (forged,
    /// altered, or signed with another key); the errors of [`FromStr`] for the rest.
    pub fn verify(text: &str, key: &[u8]) -> Result<Token, TokenError> {
        if text.parse::<Token>().is_ok() {
            return Err(TokenError::BadSignature); // a well-formed token without a signature
        }
        let (body, signature) = text.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let token: Token = body.parse()?;
        let signature = decode_hex(signature).ok_or(TokenError::BadSignature)?;
        mac(key, body)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(token)
    }
}

fn mac(key: &[u8], body: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body.as_bytes());
    mac
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why a string is not a [`Token`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not of the form `v1.<hex>.<hex>`.
    #[error("malformed consistency token")]
    Malformed,
    /// A version this crate does not know.
    #[error("unknown consistency token version {0:?}")]
    Version(String),
    /// The signature is missing or does not match ([`Token::verify`]).
    #[error("consistency token signature does not match")]
    BadSignature,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{:x}.{:x}", self.position, self.expires_unix_ms)
    }
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(text: &str) -> Result<Self, TokenError> {
        let mut parts = text.split('.');
        let version = parts.next().ok_or(TokenError::Malformed)?;
        if version != "v1" {
            return Err(match version.strip_prefix('v') {
                Some(number)
                    if number.bytes().all(|b| b.is_ascii_digit()) && !number.is_empty() =>
                {
                    TokenError::Version(version.chars().take(16).collect())
                }
                _ => TokenError::Malformed,
            });
        }
        let mut hex = || {
            let part = parts.next().ok_or(TokenError::Malformed)?;
            // `from_str_radix` accepts a sign; a token never has one.
            if part.is_empty() || part.len() > 16 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(TokenError::Malformed);
            }
            u64::from_str_radix(part, 16).map_err(|_| TokenError::Malformed)
        };
        let token = Token {
            position: hex()?,
            expires_unix_ms: hex()?,
        };
        match parts.next() {
            None => Ok(token),
            Some(_) => Err(TokenError::Malformed),
        }
    }
}

/// A PostgreSQL WAL position (`16/B374D848`) as a number.
#[cfg_attr(
    not(any(feature = "sqlx-postgres", feature = "sqlx-0_8")),
    allow(dead_code)
)]
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = u32::from_str_radix(high, 16).ok()?;
    let low = u32::from_str_radix(low, 16).ok()?;
    Some(u64::from(high) << 32 | u64::from(low))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_typed_errors() {
        let token = Token {
            position: parse_lsn("16/B374D848").unwrap(),
            expires_unix_ms: 1_700_000_000_000,
        };
        assert_eq!(token.to_string().parse::<Token>(), Ok(token));
        for bad in [
            "",
            "v1",
            "v1.",
            "v1.1",
            "v1.1.",
            "v1.1.2.3",
            "v1.-1.2",
            "v1.+1.2",
            "x1.1.2",
            "v1.12345678901234567.1",
        ] {
            assert_eq!(bad.parse::<Token>(), Err(TokenError::Malformed), "{bad}");
        }
        assert_eq!(
            "v9.1.2".parse::<Token>(),
            Err(TokenError::Version("v9".into()))
        );
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn positions_hold_for_the_cap_and_tokens_are_cut_to_it() {
        let positions = SessionPositions::new(Duration::from_secs(30));
        assert_eq!(positions.required(3), None);
        positions.wrote(3, 100);
        positions.wrote(3, 90);
        assert_eq!(
            positions.required(3),
            Some(100),
            "the highest position holds"
        );
        let token = positions.token(3).unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(positions.required(3), None, "the cap is over");

        // A forged token that claims a year is held for the cap only.
        let forged = Token {
            position: u64::MAX,
            expires_unix_ms: unix_ms(SystemTime::now()) + 365 * 86_400_000,
        };
        positions.adopt(4, &forged);
        assert_eq!(positions.required(4), Some(u64::MAX));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(positions.required(4), None);
        assert_eq!(token.position(), 100);
    }

    #[test]
    fn signatures_reject_forgery_and_other_keys() {
        let token = Token {
            position: 42,
            expires_unix_ms: 7,
        };
        let signed = token.signed(b"key");
        assert_eq!(Token::verify(&signed, b"key"), Ok(token));
        assert_eq!(
            Token::verify(&signed, b"other key"),
            Err(TokenError::BadSignature)
        );
        let altered = Token {
            position: 43,
            expires_unix_ms: 7,
        };
        let (_, signature) = signed.rsplit_once('.').unwrap();
        let forged = format!("{altered}.{signature}");
        assert_eq!(
            Token::verify(&forged, b"key"),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            Token::verify(&token.to_string(), b"key"),
            Err(TokenError::BadSignature),
            "unsigned"
        );
        assert_eq!(
            Token::verify(&format!("{token}.zz"), b"key"),
            Err(TokenError::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_an_error(text in ".{0,100}") {
            let _ = text.parse::<Token>();
            let _ = Token::verify(&text, b"key");
        }
    }
}
